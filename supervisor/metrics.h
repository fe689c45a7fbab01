/*
 * supervisor/metrics.h: heavyd's metrics, in Prometheus' text exposition
 * format 0.0.4, from a small registry of its own (no C client library is
 * maintained in Debian).  Everything runs on the event loop's thread.
 *
 * Every family has fixed label names.  The values of an open label (one
 * that comes from outside: a model, an HTTP method) are kept up to
 * max_label_values distinct ones per family; later ones are counted under
 * "other", so a client that names a new model per call cannot grow the
 * scrape without bound.
 *
 * Values are integers in a unit of the family's: counts, microseconds
 * (rendered as seconds) or micro-dollars (rendered as dollars), so that
 * sums stay exact and a scrape formats no floating point.
 */
#ifndef HEAVY_METRICS_H
#define HEAVY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define METRICS_MAX_LABELS		3
#define METRICS_MAX_BUCKETS		16
#define METRICS_MAX_LABEL_BYTES		256	/* longer values are cut */
#define METRICS_DEFAULT_LABEL_VALUES	32
#define METRICS_OTHER			"other"

/* ---- The registry ---- */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_spec {
	const char	*name;		/* heavyd_..., _total for a counter */
	const char	*help;
	enum metric_type type;
	int		 scale;		/* 0: integers; 6: value / 1e6 */
	const char	*labels[METRICS_MAX_LABELS];	/* NULL-ended */
	unsigned	 open;		/* bit i: label i is capped */
	int64_t		 buckets[METRICS_MAX_BUCKETS];	/* upper bounds, in
					 * the family's unit, rising; 0 ends */
};
struct metric_family;

/* The registry with heavyd's families; max_label_values <= 0: the default.
 * The commit goes into heavyd_build_info. */
void	 metrics_init(int max_label_values, const char *commit);
void	 metrics_free(void);
bool	 metrics_enabled(void);
/* Another family (tests, the bench); NULL if the name is taken. */
struct metric_family *metrics_family(const struct metric_spec *);
/* values: one per label of the family, in its order. */
void	 metrics_add(struct metric_family *, const char *const *values,
	    int64_t delta);
void	 metrics_set(struct metric_family *, const char *const *values,
	    int64_t value);
void	 metrics_observe(struct metric_family *, const char *const *values,
	    int64_t value);
/* The value of a counter or gauge series, or a histogram's count; 0 when
 * the series does not exist. */
int64_t	 metrics_value(struct metric_family *, const char *const *values);
struct metric_family *metrics_find(const char *name);
/* Sample lines a scrape renders now (each histogram bucket is one). */
size_t	 metrics_samples(void);
/* Appends the whole registry, as GET /metrics serves it (Content-Type:
 * text/plain; version=0.0.4; charset=utf-8). */
void	 metrics_render(struct evbuffer *);

/* ---- What heavyd counts, where it happens ---- */

/* registry.c and task.c */
void	 metrics_task_started(const char *tool);
void	 metrics_task_ended(const char *tool, const char *status);
void	 metrics_tasks_running(int);
void	 metrics_budget_stop(const char *budget);	/* tokens, cost */

/* workers.c: a worker moves between states (NULL: created or freed), and
 * how it ended. */
void	 metrics_worker_move(const char *from, const char *to);
void	 metrics_worker_exit(const char *cause);
/* One LLM HTTP request (an attempt: a retry is another), as its worker
 * reported it. */
struct metrics_llm {
	const char	*model;
	const char	*outcome;	/* 2xx, 4xx, ..., transport_error */
	bool		 retry;		/* a retry of a failed attempt */
	int64_t		 duration_us;
	uint64_t	 prompt_tokens;
	uint64_t	 completion_tokens;
	uint64_t	 cost_micro_usd;
	uint32_t	 retries;	/* retries made before this attempt */
	uint32_t	 hedged;	/* egress hedged it (0 or 1) */
	uint32_t	 hedges_won;	/* and the hedge answered first */
};
void	 metrics_llm_request(const struct metrics_llm *);

/* store.c: one write (insert, put, update, begin, commit, sweep). */
void	 metrics_store_write(const char *op, int64_t duration_us, bool ok);
/* pgconn.c: the PostgreSQL store is connected; queries it holds. */
void	 metrics_store_link(bool connected, int queued);

/* spawner.c */
void	 metrics_zygote_spares(int);
void	 metrics_zygote_up(bool);
void	 metrics_zygote_restart(void);
void	 metrics_egress_up(bool);
void	 metrics_egress_restart(void);
void	 metrics_egress_cancelled(uint64_t);	/* more since the last */
void	 metrics_egress_breaker(const char *upstream, const char *state);

/* For the HTTP transport. */
void	 metrics_http_request(const char *method, int code);
void	 metrics_sessions(int);		/* MCP sessions open now */
void	 metrics_sse_streams(int);	/* SSE streams open now */
/* Log lines dropped so far (common/log.c's count, when it keeps one):
 * call before metrics_render. */
void	 metrics_log_dropped(uint64_t total);

#endif

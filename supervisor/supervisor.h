/* supervisor/: the MCP server, its tasks, and the worker processes it runs. */
#ifndef HEAVY_SUPERVISOR_H
#define HEAVY_SUPERVISOR_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdbool.h>
#include <time.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "../common/common.h"
#include "../proto/proto.h"
#include "store.h"
#include "taskresult.h"

extern struct event_base	*ev_base;
/*
 * The loop's priorities: the zygote's reports run before anything else
 * ready in the same turn, so a spare's new label (sent before the spare
 * has its job) is applied before any line that job writes is relayed.
 */
#define EV_PRIO_ZYGOTE	0
#define EV_PRIO_NORMAL	1	/* libevent's default with two */
#define EV_NPRIO	2

/* server.c */
int		 server_key_check(const struct heavy_config *, char **key,
		    char *why, size_t len);
void		 server_shutdown(void);
/* The same setup without MCP (heavyd ask): stop() runs at shutdown. */
void		 server_start(struct heavy_config *, void (*stop)(void), bool mcp);
void		 server_loop(void (*after)(void));
void		 server_exit_hold(void);
void		 server_exit_release(void);
int		 server_signal(void);	/* the signal that stopped us, or 0 */
/*
 * systemd and reload.  server_ready: READY=1 (and the status line) once
 * heavyd can serve.  server_listen_fds: the sockets of socket activation.
 * server_config: the configuration in force (the started one, or the last
 * reload's); server_on_reload: fn(arg, config) after each reload that
 * loaded, config valid until the next one (config_dup what you keep).
 */
typedef int	(*server_load_fn)(struct heavy_config *, char *err,
		    size_t errlen);
typedef void	(*server_reload_fn)(void *arg, const struct heavy_config *);
void		 server_ready(void);
int		 server_listen_fds(const struct listen_fd **);
const struct heavy_config *server_config(void);
void		 server_set_loader(server_load_fn);
void		 server_on_reload(server_reload_fn, void *arg);
void		 server_reload(void);

/* workspace.c: per-task directories under the state directory. */
void	 workspace_init(const struct heavy_config *);
void	 workspace_stop(void);
int	 workspace_open(const char *state_dir, int ttl_s, char *err,
	    size_t errlen);
void	 workspace_close(void);
int	 workspace_check(const char *state_dir, char *err, size_t errlen);
char	*workspace_create(const char *task_id, char *err, size_t errlen);
char	*workspace_adopt(const char *task_id, char *err, size_t errlen);
void	 workspace_release(const char *task_id);
int	 workspace_sweep(time_t now);

/* features.c: the workers' confinement on this host, probed at startup. */
int	 features_init(const struct heavy_config *, bool setup, char *err,
	    size_t errlen);
void	 features_sandbox(struct sandbox *);
void	 features_egress_sandbox(struct sandbox *);
void	 features_print(FILE *);
void	 features_log(void);
void	 features_result(struct task_result *);	/* its "sandbox" */
int	 features_landlock(void);	/* the ABI workers use; 0: none */
int	 features_ports(const struct heavy_config *, struct sandbox *,
	    char *err, size_t errlen);
int	 features_cgroup_path(const char *text, char *out, size_t outlen);
int	 features_cgroup2_mount(const char *text, char *out, size_t outlen);
bool	 features_has_controllers(const char *line, const char *need);

/* spawner.c: our handle on the zygote that forks workers. */
int	 spawner_start(const char *worker_path, int spares, bool html);
int	 spawner_spawn(uint32_t id, int fd, const char *label);
void	 spawner_stop(void);
bool	 spawner_up(void);

/* relay.c: workers' stderr, relayed to ours */
void	 relay_init(void);
void	 relay_add(pid_t, int, const char *);
void	 relay_label(pid_t, const char *);
void	 relay_stop(void);

/* egressctl.c: our handle on heavyd-egress. */
struct egress_attach;
int	 egressctl_start(const char *egress_path, const char *api_key,
	    const char *search_key, const struct heavy_config *);
int	 egressctl_attach(const struct egress_attach *);
uint64_t egressctl_identity(const char *owner);
bool	 egressctl_exited(pid_t, int status);
bool	 egressctl_up(void);
void	 egressctl_stop(void);

/* workers.c: every worker process, in one table. */
enum worker_state {
	WORKER_QUEUED,		/* waiting for a free slot */
	WORKER_SPAWNING,	/* asked the zygote; no pid yet */
	WORKER_RUNNING,		/* pid known, job sent */
	WORKER_FINISHING,	/* pipe closed or exit seen; waiting for the other */
};
enum worker_outcome {
	OUTCOME_OK,		/* MSG_JOB_DONE and a clean exit */
	OUTCOME_FAILED,		/* MSG_JOB_FAILED, or died without a result */
	OUTCOME_TIMEOUT,	/* killed at its deadline */
	OUTCOME_KILLED,		/* died by a signal we did not send */
};
struct worker_result {
	enum worker_outcome	 outcome;
	int			 signal;
	uint32_t		 flags;
	char			**texts;
	uint32_t		 ntexts;
	uint32_t		 error_kind;
	uint32_t		 http_status;
	char			*error;
	struct usage		 usage;
	int64_t			 elapsed_ms;
};
struct worker;
typedef void (*worker_done_fn)(void *arg, struct worker_result *);
typedef void (*worker_step_fn)(void *arg, const char *note);
typedef void (*worker_usage_fn)(void *arg, const struct usage *delta,
	    const struct job_call *call);
struct worker_req {
	const char		*label;	/* "task <id> agent 2": its log lines */
	const char		*task_id;	/* its task's, for the journal */
	const char		*owner;		/* its task's; may be NULL */
	const struct sandbox	*sandbox;
	const struct job	*job;
	int64_t			 deadline_ms;
	worker_done_fn		 done;
	worker_step_fn		 step;
	worker_usage_fn		 usage;	/* may be NULL */
	void			*arg;
	void			*usage_arg;
};
void	 workers_init(const struct heavy_config *);
struct worker *worker_start(const struct worker_req *);
void	 worker_cancel(struct worker *);
void	 worker_cut(struct worker *);	/* cancel, counted as cut_for_latency */
void	 workers_kill_all(void);
int	 workers_queued(void);		/* waiting for a free slot */
int	 workers_running(void);		/* holding a slot */
void	 workers_free_all(void);
void	 workers_spawned(uint32_t id, pid_t, int pidfd, int err);
void	 workers_exited(uint32_t id, pid_t, int status, uint32_t flags);
void	 workers_lost(void);
void	 worker_result_clear(struct worker_result *);
const char *signal_name(int);

/* prompt.c: the texts sent to the planner and synthesis. */
char	*prompt_render(const char *tmpl, const char *const *keys,
	    const char *const *values, size_t n);
char	*prompt_planner(const struct heavy_config *, const char *query,
	    int num_agents);
char	*prompt_fallback_question(const char *query, int index);
char	*prompt_synthesis(const struct heavy_config *,
	    const char *const *answers, int n, size_t budget, int *dropped);

char	*prompt_synthesis_ranked(const struct heavy_config *,
	    const char *const *answers, const int *ranks, int n, size_t budget,
	    int *dropped);
char	*prompt_draft(const struct heavy_config *, const char *const *answers,
	    int n, int total, size_t budget, int *dropped);
char	*prompt_synthesis_draft(const struct heavy_config *,
	    const char *const *answers, int n, size_t budget, int *dropped,
	    const char *draft, int covered);
char	*prompt_review(const char *query, const char *const *answers, int n,
	    size_t budget);

/* ranking.c: peer review's labels, shuffles and aggregate ranking. */
struct ranking_review {
	int	n;				/* answers shown */
	int	order[HEAVY_MAX_AGENTS];	/* agent indexes, best first */
};
struct ranking_tally {
	int	rank;		/* 1 is best; 0: no valid review showed it */
	double	score;		/* 1: first in every review, 0: last */
	int	reviews;	/* valid reviews that showed it */
};
void	 ranking_shuffle(int *, int n);
int	 ranking_labels(char *const *texts, uint32_t ntexts, int n,
	    int *labels);
void	 ranking_tally(const struct ranking_review *, int nreviews,
	    int nagents, struct ranking_tally *);

/* task.c: one orchestration: planner, agents, synthesis. */
struct task_params {
	char	*query;
	int	 num_agents;
	double	 timeout_s;
	char	*model;		/* NULL: the configured models per role */
	char	*strategy;	/* NULL: the configured aggregation_strategy */
	char	**fallbacks;	/* fallback_models; NULL: the configured */
	int	 nfallbacks;
	uint64_t max_total_tokens;	/* 0: no token budget */
	double	 max_cost_usd;		/* 0: no cost budget */
	int	 min_agents;		/* quorum; 0: wait for every agent */
	double	 straggler_grace_s;	/* after the quorum, before the cut */
	int	 hedge_after_ms;	/* egress hedges an LLM call with no
					   first byte this long; 0: never */
	bool	 ask_cost;		/* the provider's cost, whatever
					 * ask_cost says (a USD quota) */
	char	*owner;		/* who started it (NULL: nobody known):
				   egress's fairness across identities */
	double	 incremental_interval_s; /* incremental: between drafts */
	bool	 resume;	/* resumed, not failed, if its heavyd dies */
};
struct task;
typedef void (*task_progress_fn)(void *arg, double progress, double total,
	    const char *message);
/* What a finished task amounts to, for whoever keeps or counts it: typed,
 * so that nobody reads it back out of the result's JSON. */
struct task_outcome {
	bool		 failed;	/* the result is an error */
	const char	*error;		/* then its text, else NULL */
	bool		 cacheable;	/* a clean answer, worth serving again */
	struct usage	 usage;		/* every LLM call's, as reported */
};
/* The result is the callee's to keep or free (taskresult_free). */
typedef void (*task_done_fn)(void *arg, const struct task_outcome *,
	    struct task_result *result);
struct task *task_start(const struct heavy_config *, struct task_params *,
	    task_progress_fn, task_done_fn, void *arg);
/* What a resumed task keeps of its first run (task_resume). */
struct task_seed_agent {
	const char	*question;	/* NULL: the planner runs again */
	const char	*status;	/* as it was: ok failed ... running */
	const char	*answer;
	const char	*error;
	int64_t		 elapsed_ms;
};
struct task_seed {
	const char		*id;		/* the task keeps its id */
	int64_t			 deadline_ms;	/* wall clock */
	const char		*from;		/* who ran it: a process, a node */
	const char		*why;		/* why it stopped there */
	/* What its first run spent, as last stored: the resumed task's usage
	 * (its budget, its quota charge, its result) counts on from there. */
	struct usage		 usage;
	struct task_seed_agent	 agents[HEAVY_MAX_AGENTS];
};
struct task *task_resume(const struct heavy_config *, struct task_params *,
	    const struct task_seed *, task_progress_fn, task_done_fn,
	    void *arg);
const char *task_id(const struct task *);	/* 32 hex digits, 128 random bits */
void	 task_cancel(struct task *);
typedef void (*task_usage_fn)(void *arg, const struct usage *total);
void	 task_on_usage(struct task *, task_usage_fn, void *arg);
void	 task_budget_stop(struct task *, const char *why);
void	 task_params_clear(struct task_params *);
/* What a task is doing now; the strings are the task's, valid until the
 * event loop runs again. */
struct task_agent_view {
	int		 index;		/* 1-based */
	const char	*question;	/* NULL until the planner is done */
	const char	*status;	/* pending running ok failed timed_out killed
					   cut_for_latency */
	const char	*step;		/* its last worker note ("search_web") */
	const char	*error;
	const char	*answer;	/* once it has one */
	int64_t		 elapsed_ms;	/* once it has finished */
};
/* incremental: the latest finished draft (n 0: none yet). */
struct task_draft_view {
	int		 n;		/* 1-based: the n-th draft started */
	int		 answers;	/* the answers it was written from */
	int		 of;		/* num_agents */
	int64_t		 made_ms;	/* when it finished, since the start */
	const char	*text;
};
struct task_view {
	const char		*phase;	/* planning, agents, synthesis, done */
	const char		*query;
	int			 num_agents;
	int64_t			 elapsed_ms;
	struct usage		 usage;	/* so far */
	struct task_agent_view	 agents[HEAVY_MAX_AGENTS];
	struct task_draft_view	 draft;
};
void	 task_snapshot(const struct task *, struct task_view *);
uint32_t task_tool_features(const struct heavy_config *);
void	 task_new_id(char id[33]);	/* 128 random bits, in hex */
void	 task_keys(const char *api_key, const char *search_key,
	    const char *no_key);
const char *task_no_key(void);	/* NULL, or why there is no API key */

/* draft.c: incremental's drafts, rebuilt as the answers come in. */
struct drafts;
typedef struct worker *(*drafts_spawn_fn)(void *arg, struct drafts *,
	    int n, int *answers);	/* draft n, 1-based */
typedef void (*drafts_note_fn)(void *arg, const char *msg);
struct drafts *drafts_new(const char *task_id, int num_agents,
	    int64_t start_ms, double interval_s, drafts_spawn_fn,
	    drafts_note_fn, void *arg);
void	 drafts_free(struct drafts *);
void	 drafts_answer(struct drafts *, int answers);
void	 drafts_done(void *, struct worker_result *);
void	 drafts_usage(struct drafts *, const struct usage *);
void	 drafts_stop(struct drafts *);
const char *drafts_take(struct drafts *, int *answers);
void	 drafts_view(const struct drafts *, struct task_draft_view *);
void	 drafts_result(const struct drafts *, int64_t elapsed_ms,
	    struct tr_drafts *);

/* registry.c: this process's running orchestrations, for their owners. */
enum task_status {
	TASK_INITIALIZED,	/* accepted; the planner writes the questions */
	TASK_RUNNING,		/* the agents, then the synthesis, at work */
	TASK_COMPLETED,
	TASK_FAILED,
	TASK_CANCELLED,
};
struct registry_owner;
/* The record ended without its task's result: why says why. */
typedef void (*record_cancel_fn)(void *arg, const char *why);
struct task_record {
	char			 id[33];
	char			*owner;
	const char		*tool;		/* the tool that started it */
	struct task		*task;		/* while it runs, else NULL */
	bool			 finished;
	bool			 mcp_task;	/* a task-augmented tools/call */
	enum task_status	 status;	/* once finished */
	int64_t			 created_ms, finished_ms;	/* monotonic */
	int64_t			 start_time_ms;	/* wall clock */
	int64_t			 updated_ms;	/* wall clock: its last change */
	int64_t			 ttl_ms;	/* kept this long from its start */
	struct json_object	*params;	/* its effective arguments */
	char			*cache_key;	/* NULL: never served from cache */
	struct store_args	 args;		/* typed, for a resume */
	struct task_result	*result;	/* once finished, if any */
	struct store_progress	 progress;	/* the last, once over */
	char			*error;
	struct usage		 usage;		/* once finished */
	bool			 cacheable;	/* once finished: a clean answer */
	record_cancel_fn	 cancelled;	/* tells the starter of a stop */
	void			*arg;
	/* Once every watcher has heard of its end (the store first, which
	 * may hold the rest until its write is done): */
	record_cancel_fn	 stopped;	/* a stop, told why */
	void			*stopped_arg;
	void			(*ended)(void *, struct task_record *);
	void			*ended_arg;
	int			 holds, next_watcher;
	bool			 watching;	/* a watcher runs */
	struct registry_owner	*own;
	TAILQ_ENTRY(task_record) active_entry;	/* its owner's running ones */
};
typedef void (*registry_watch_fn)(struct task_record *);
/*
 * The watchers, in the order they hear of a change: the store first, so
 * that a task's end is written before a reply, a notification or a waiter
 * hears of it; then the sessions (subscriptions, MCP Tasks).
 */
enum registry_watcher {
	REGISTRY_WATCH_STORE,
	REGISTRY_WATCH_SESSIONS,
	REGISTRY_WATCH_OTHER,		/* tests */
	REGISTRY_NWATCHERS
};
void	 registry_watch(enum registry_watcher, registry_watch_fn);
void	 registry_touch(struct task_record *);
void	 registry_hold(struct task_record *);
void	 registry_release(struct task_record *);
void	 registry_init(void);
void	 registry_free(void);
struct task_record *registry_new(const char *owner, const char *tool);
void	 registry_discard(struct task_record *);
void	 registry_add(struct task_record *, struct task *, const char *id,
	    int64_t now);
struct task_record *registry_find(const char *id, const char *owner);
void	 registry_finish(struct task_record *, const struct task_outcome *,
	    struct task_result *result,
	    int64_t now);
void	 registry_cancel(struct task_record *, const char *why, int64_t now);
void	 registry_interrupt(struct task_record *, const char *why,
	    int64_t now);
int	 registry_admit(const struct heavy_config *, const char *owner,
	    int queued_workers, char *err, size_t errlen);
int	 registry_nactive(void);
int	 registry_owner_active(const char *owner);
int	 registry_owner_agents(const char *owner);
enum task_status registry_status(const struct task_record *);
const char *registry_status_name(enum task_status);
void	 registry_progress(const struct task_record *,
	    struct store_progress *);
struct json_object *registry_ids(const char *owner, const char *prefix);

/* service.c: how an orchestration starts, for whoever asks. */
/* Why a start gave no running task, for a transport that answers each
 * differently (HTTP: 503 and Retry-After when draining). */
enum service_refusal {
	SERVICE_STARTED,		/* not refused (or a cache hit) */
	SERVICE_REFUSED_NO_KEY,
	SERVICE_REFUSED_BUSY,		/* admission: retry later */
	SERVICE_REFUSED_TOO_LONG,	/* the query, for max_frame_bytes */
	SERVICE_REFUSED_STORE,		/* the store cannot write */
	SERVICE_REFUSED_DRAINING,	/* "shutting down, retry later" */
	SERVICE_REFUSED_RATE,		/* a rate quota: retry after */
	SERVICE_REFUSED_QUOTA,		/* a daily budget quota reached */
};
struct service_hooks {
	/* How the start went, once: the record, in the store (r NULL:
	 * refused, how and why; a rate says when to retry, in seconds).
	 * A refused call hears nothing more. */
	void	(*started)(void *arg, struct task_record *,
		    enum service_refusal how, const char *why,
		    int retry_after_s);
	/* The task moved on (may be NULL). */
	void	(*progress)(void *arg, struct task_record *, double progress,
		    double total, const char *message);
	/* It ended; ran is false for an answer from the cache or a refusal
	 * (result NULL: render outcome->error).  Called before the store
	 * and the watchers hear of the end: the result may still be added
	 * to, nothing may be sent yet. */
	void	(*done)(void *arg, struct task_record *,
		    const struct task_outcome *, struct task_result *result,
		    bool ran);
	/* Then, once the store has the end: the answer may go out. */
	void	(*answer)(void *arg, const struct task_outcome *,
		    const struct task_result *result);
	/* It was stopped before it had a result (may be NULL). */
	void	(*stopped)(void *arg, const char *why);
};
struct service_req {
	const char			*owner;
	const struct heavy_config	*cfg;	/* the caller's defaults */
	const char			*tool;	/* the tool that starts it */
	bool				 mcp_task;	/* refusals become tasks */
	int64_t				 ttl_ms;	/* 0: the default */
	const struct service_hooks	*hooks;
	void				*arg;
};
void	 service_start(const struct service_req *, struct task_params *);
void	 service_drain(void (*idle)(void));
bool	 service_draining(void);
int	 service_running(void);
void	 service_refused(const struct service_req *, const char *failed);
void	 service_abandon(struct task_record *, const char *why);
void	 service_resume(const struct heavy_config *,
	    const struct store_task *, const char *from, const char *why);
int64_t	 service_ttl_ms(const struct heavy_config *, double timeout_s,
	    int64_t requested);

/*
 * auth.c: who calls over HTTP (the tokens file's identities, or OAuth's
 * verifier), their limits, and the sliding windows that rate them.
 */
#define AUTH_OWNER_PREFIX	"id:"
#define AUTH_ANONYMOUS		"http:anonymous"	/* auth off */
/* An identity's name: a tokens file's (TOKEN_NAME_MAX), or the claim of a
 * verified OAuth token (OAUTH_MAX_IDENTITY); an owner is it, prefixed. */
#define AUTH_NAME_MAX		256
#define AUTH_LIMITS_MAX		512	/* an OAuth limits claim */
#define AUTH_OWNER_MAX		(sizeof AUTH_OWNER_PREFIX + AUTH_NAME_MAX)
struct auth_window {
	int64_t	*stamps;	/* a ring of the hits in the window */
	int	 cap, head, n;
};
/* What to answer a request that is refused: 401, 403, 429 or 503. */
struct auth_denial {
	int	 status;
	int	 retry_after_s;		/* 429, 503: Retry-After */
	char	 www_authenticate[1024]; /* 401, 403: WWW-Authenticate */
	char	 message[192];
	bool	 pending;	/* 503 unless the transport waits for the
				   verifier (auth_oauth_wait) and asks again */
};
/* auth.mode: oauth's verifier: 0 and the identity's name (namelen is
 * AUTH_NAME_MAX + 1), or -1 and the denial (its WWW-Authenticate with
 * resource_metadata and scope).  token is NULL when none came. */
typedef int	(*auth_verify_fn)(const char *token, size_t len, char *name,
		    size_t namelen, char *limits, size_t limitslen,
		    struct auth_denial *);
void	 auth_window_init(struct auth_window *, int cap);
void	 auth_window_free(struct auth_window *);
int	 auth_window_count(struct auth_window *, int64_t now, int64_t width);
int64_t	 auth_window_hit(struct auth_window *, int64_t now, int64_t width);
int	 auth_retry_after_s(int64_t ms);
bool	 auth_configured(const struct heavy_config *);
int	 auth_init(const struct heavy_config *, char *err, size_t errlen);
void	 auth_reload(void *arg, const struct heavy_config *);
bool	 auth_enabled(void);
void	 auth_set_verifier(auth_verify_fn);
void	 auth_stop(void);
const struct token_limits *auth_limits(const char *owner);
int	 auth_request(const char *authorization, const char *addr,
	    int64_t now, char *owner, size_t ownerlen, struct auth_denial *);
int	 auth_admit(const char *owner, int num_agents, double timeout_s,
	    int active, int agents, char *why, size_t len);
void	 auth_fit_defaults(const char *owner, const struct heavy_config *,
	    int *num_agents, double *timeout_s);

/*
 * auth_oauth.c: auth.mode oauth wired in -- the resource server's state
 * (oauth.h), the verifier auth.c calls, SIGHUP's new keys and settings,
 * and the RFC 9728 metadata the HTTP transport serves.
 */
int	 auth_oauth_start(const struct heavy_config *, char *err, size_t len);
void	 auth_oauth_reload(void *arg, const struct heavy_config *);
void	 auth_oauth_stop(void);
bool	 auth_oauth_metadata_path(const char *path);
char	*auth_oauth_metadata(void);
int	 auth_oauth_wait(void (*fn)(void *), void *arg);
void	 auth_oauth_unwait(void (*fn)(void *), void *arg);

/*
 * quota.c: the persistent per-identity quotas (the tokens file's
 * orchestrations_per_hour, tokens_per_day, usd_per_day), counted in the
 * task store per fixed UTC window.
 */
enum quota_kind {
	QUOTA_ORCHESTRATIONS,		/* per hour: a rate */
	QUOTA_TOKENS,			/* per day: a budget */
	QUOTA_USD,			/* per day, in micro-USD: a budget */
	QUOTA_NKINDS
};
enum quota_verdict {
	QUOTA_OK,
	QUOTA_RATE,		/* 429 and Retry-After over HTTP */
	QUOTA_BUDGET,		/* a tool error naming the quota */
	QUOTA_ERROR,		/* the store could not say */
};
struct quota_decision {
	enum quota_verdict	 verdict;
	enum quota_kind		 kind;		/* the quota reached */
	int64_t			 used, limit;	/* in the counters' unit */
	int64_t			 resets_s;	/* its window's end (epoch) */
	int			 retry_after_s;
};
typedef void	(*quota_checked_fn)(void *arg, const struct quota_decision *);
typedef void	(*quota_stop_fn)(void *arg, const char *why);
struct quota_run;
struct usage;
void	 quota_set_clock(int64_t (*)(void));
int64_t	 quota_now_ms(void);
const char *quota_kind_name(enum quota_kind);
const char *quota_limit_name(enum quota_kind);
int64_t	 quota_window(enum quota_kind, int64_t now_ms);
int64_t	 quota_window_end(enum quota_kind, int64_t now_ms);
int	 quota_retry_after_s(enum quota_kind, int64_t now_ms);
bool	 quota_limit(const struct token_limits *, enum quota_kind, int64_t *);
bool	 quota_wants_cost(const char *owner);
void	 quota_decide(const struct token_limits *,
	    const int64_t used[QUOTA_NKINDS], int64_t now_ms,
	    struct quota_decision *);
void	 quota_time_text(int64_t s, char *buf, size_t len);
void	 quota_text(const struct quota_decision *, char *buf, size_t len);
void	 quota_check(const char *owner, quota_checked_fn, void *arg);
struct quota_run *quota_run_start(const char *owner, const char *task_id,
	    quota_stop_fn, void *arg);
void	 quota_run_usage(struct quota_run *, const struct usage *);
void	 quota_run_end(struct quota_run *, const struct usage *);
/* quotacmd.c: heavyd quota NAME. */
int	 quotacmd_run(const struct heavy_config *, int argc, char **argv);

/* resources.c: heavy:// resources and their subscriptions. */
struct mcp_session;
struct json_object *resources_list(void);
struct json_object *resources_templates(void);
struct rpc_msg;
void	 resources_rpc_list(struct mcp_session *, struct rpc_msg *);
void	 resources_rpc_templates(struct mcp_session *, struct rpc_msg *);
void	 resources_rpc_read(struct mcp_session *, struct rpc_msg *);
void	 resources_rpc_subscribe(struct mcp_session *, struct rpc_msg *);
void	 resources_rpc_unsubscribe(struct mcp_session *, struct rpc_msg *);
void	 resources_changed(struct mcp_session *, struct task_record *);

/* complete.c: completion/complete for prompt arguments and task ids. */
void	 complete_rpc(struct mcp_session *, struct rpc_msg *);

/* tool.c: the MCP tools and their arguments. */
struct json_object *tool_list(void);
int	 tool_orchestrate_args(const struct heavy_config *, struct json_object *,
	    struct task_params *, char *err, size_t errlen);
struct json_object *tool_error_result(const char *text);

/* result.c: a task's result, rendered for MCP clients (the one place). */
struct json_object *result_render(const struct task_result *);
struct json_object *result_structured(const struct task_result *);
char	*result_text(const struct task_result *);	/* the content's */
struct json_object *result_status_json(const struct store_task *);

/* rpc.c: JSON-RPC 2.0 messages. */
#define RPC_PARSE_ERROR		-32700
#define RPC_INVALID_REQUEST	-32600
#define RPC_METHOD_NOT_FOUND	-32601
#define RPC_INVALID_PARAMS	-32602
#define RPC_INTERNAL_ERROR	-32603
#define RPC_RESOURCE_NOT_FOUND	-32002	/* MCP's, for resources/read */
#define RPC_RATE_LIMITED	-32029	/* heavyd's: a rate quota reached;
					 * data.retryAfter, HTTP 429 */
/* json-c's nesting limit, raised from 32; deeper is refused under its id. */
#define RPC_MAX_DEPTH		256
#define RPC_MAX_DEPTH_TEXT	"256"
/* RPC_DROPPED: a notification json-c cannot hold exactly, not acted on. */
enum rpc_kind { RPC_REQUEST, RPC_NOTIFICATION, RPC_RESPONSE, RPC_DROPPED,
	RPC_INVALID };
struct rpc_msg {
	enum rpc_kind		 kind;
	struct json_object	*root;		/* owned */
	struct json_object	*id;		/* borrowed from root */
	const char		*method;
	struct json_object	*params;	/* borrowed, may be NULL */
	int			 error_code;	/* when RPC_INVALID */
	const char		*error;
};
int	 rpc_parse(const char *line, size_t len, struct rpc_msg *);
void	 rpc_msg_clear(struct rpc_msg *);
struct json_object *rpc_result(struct json_object *id, struct json_object *);
struct json_object *rpc_error(struct json_object *id, int code,
	    const char *message);
struct json_object *rpc_notification(const char *method, struct json_object *);
char	*rpc_id_key(struct json_object *id);
size_t	 rpc_utf8_char(const char *, size_t);
bool	 rpc_utf8_valid(const char *, size_t);

/* prompts.c: MCP prompts that call heavy_orchestrate well. */
struct json_object *prompts_list(void);
struct json_object *prompts_get(const char *name, struct json_object *args,
	    char *err, size_t errlen);
struct json_object *prompts_complete(const char *name, const char *arg,
	    const char *typed);
void	 prompts_rpc_list(struct mcp_session *, struct rpc_msg *);
void	 prompts_rpc_get(struct mcp_session *, struct rpc_msg *);

/* store.c: the task store, behind its backends (store.h, included
 * above: a record keeps the store's typed progress). */

/* durable.c: every task written through to the store; lookups fall back
 * to it. */
void	 durable_init(const struct heavy_config *);
typedef void (*durable_resume_fn)(const struct heavy_config *,
	    const struct store_task *, const char *from, const char *why);
void	 durable_on_resume(durable_resume_fn);
void	 durable_stop(void);
void	 durable_close(void);
void	 durable_when_idle(void (*)(void));
void	 durable_when_stored(const char *id, void (*)(void *, bool stored),
	    void *arg);
void	 durable_row(const struct task_record *, struct store_task *);
/* A task, or none (rc); live: its record when it runs in this process. */
typedef void (*durable_get_cb)(void *arg, int rc, const struct store_task *,
	    struct task_record *live);
typedef void (*durable_list_cb)(void *arg, struct json_object *list);
void	 durable_get(const char *id, const char *owner, durable_get_cb,
	    void *arg);
void	 durable_fresh(const struct store_task *, const char *owner,
	    struct store_task *out);
bool	 durable_terminal(const struct store_task *);
enum task_status durable_mkh_status(const struct store_task *);
double	 durable_execution_time(const struct store_task *);
const char *durable_error(const struct store_task *);
struct json_object *durable_progress_json(const struct store_task *);
struct json_object *durable_task_json(const struct store_task *, int poll_ms);
void	 durable_active(const char *owner, durable_list_cb, void *arg);
void	 durable_ids(const char *owner, const char *prefix, durable_list_cb,
	    void *arg);

/* cache.c: the opt-in result cache (HEAVY_CACHE_TTL). */
char	*cache_canonical(const struct heavy_config *,
	    const struct task_params *);
char	*cache_key(const struct heavy_config *, const struct task_params *);
struct task_result *cache_result(const struct store_task *);

/*
 * mcp.c: MCP sessions and the dispatch of their messages, whatever
 * carries them.  A transport (stdio.c, http.c) makes a session, hands it
 * each message it reads, and is handed back every message for it: a reply
 * or a notification that belongs to a request names that request (its
 * id, as rpc_id_key makes it), so HTTP can write it on that request's
 * stream; final marks the reply that ends it.  Session-wide news (a
 * resource updated, a task's status) names none.  owner is who calls:
 * the local user over stdio ("uid:1000"), an identity over HTTP.  cfg is
 * the session's own copy: its defaults, which only configure_orchestrator
 * changes and every task copies when it starts.  A session is counted:
 * its calls and waiters hold it, and closing it (the transport is gone)
 * stops every message for it but frees it only when the last lets go.
 */
struct mcp_session;
struct evbuffer;
/* One message for a client, as its transport gets it. */
struct mcp_out {
	const char	*related;	/* its request's id key; NULL: none */
	bool		 final;		/* that request's reply */
	int		 error;		/* the reply's error code, or 0 */
	struct evbuffer	*msg;		/* serialized JSON-RPC, UTF-8 */
	int		 retry_after_s;	/* RPC_RATE_LIMITED: data.retryAfter */
};
struct mcp_transport {
	const char	*name;
	/* Moves out->msg out to the client. */
	void		(*send)(void *arg, const struct mcp_out *out);
	/* May be NULL: the request (its id key) was taken and its reply
	 * will be a while (HTTP starts its stream). */
	void		(*taken)(void *arg, const char *related);
};
struct mcp_defaults;
struct mcp_session {
	char			*owner;
	struct heavy_config	*cfg;		/* shared until written */
	struct mcp_defaults	*defaults;	/* what it shares */
	bool			 cfg_own;
	struct lh_table		*calls;		/* heavy_orchestrate in flight */
	const struct mcp_transport *tp;
	void			*tp_arg;
	const char		*version;	/* negotiated; NULL before */
	bool			 initialized, closed;
	bool			 local;		/* the local user: all logs */
	bool			 modern;	/* 2026-07-28: no handshake */
	/* What the request being dispatched asked for (2026-07-28). */
	const char		*cacheable;	/* its result's cacheScope */
	bool			 task_ext;	/* tasks extension declared */
	int			 refs;
	int			 log_level;	/* -1: no log messages */
	struct lh_table		*subs;		/* subscribed uri -> last update */
	struct usage		 usage;		/* its tasks' usage, summed */
	int			 usage_tasks;	/* ... over this many tasks */
	TAILQ_ENTRY(mcp_session) entry;
};
/* How an orchestration's start went, for the request that asked: the
 * record, or NULL and the isError result of why not (the callee's). */
struct mcp_req;
typedef void (*mcp_started_fn)(struct mcp_req *, struct task_record *,
	    struct json_object *error, void *arg);
/* How mcp_run runs an orchestration for a session's request. */
struct mcp_run {
	const char		*tool;		/* the tool that starts it */
	bool			 blocking;	/* answered at its end */
	struct json_object	*progress_token;	/* may be NULL */
	bool			 mcp_task;	/* task-augmented tools/call */
	int64_t			 ttl_ms;	/* 0: the default */
	int			 log_level;	/* 2026-07-28 _meta; -1: none */
	mcp_started_fn		 started;
	void			*started_arg;
};
void	 mcp_run(struct mcp_session *, struct rpc_msg *, const struct mcp_run *,
	    struct task_params *);
void	 mcp_run_result(struct mcp_session *, struct rpc_msg *,
	    const struct mcp_run *, const char *failed);
void	 mcp_reply(struct mcp_session *, struct json_object *id,
	    struct json_object *result);
void	 mcp_error(struct mcp_session *, struct json_object *id, int code,
	    const char *message);
void	 mcp_notify(struct mcp_session *, const char *method,
	    struct json_object *params);
void	 mcp_notify_related(struct mcp_session *, const char *key,
	    const char *method, struct json_object *params);
void	 mcp_taken(struct mcp_session *, const char *related);
void	 mcp_reply_error(struct mcp_session *, struct json_object *error);
bool	 mcp_bad_cursor(struct mcp_session *, struct rpc_msg *);
/* A request answered later: mcp_req_begin() before the answer, then
 * mcp_req_end(); q->s and q->m are as the handler had them. */
struct mcp_req {
	struct mcp_session	*s;
	struct rpc_msg		 m;
	const char		*cacheable, *was_cacheable;
	bool			 task_ext, was_task_ext;
};
struct mcp_req *mcp_req_hold(struct mcp_session *, struct rpc_msg *);
void	 mcp_req_begin(struct mcp_req *);
void	 mcp_req_end(struct mcp_req *);
/* session.c: the session object, and how anything is sent to it. */
struct mcp_session *mcp_session_new(const struct mcp_transport *, void *arg,
	    const char *owner, bool local);
void	 mcp_session_ref(struct mcp_session *);
void	 mcp_session_unref(struct mcp_session *);
void	 mcp_session_unlink(struct mcp_session *);
struct mcp_session *mcp_session_first(void);
struct mcp_session *mcp_session_next(struct mcp_session *);
int	 mcp_session_count(void);
void	 mcp_session_defaults(const struct heavy_config *);
void	 mcp_session_own_cfg(struct mcp_session *);
int	 mcp_log_level(const char *name);	/* MCP's name; -1: none */
void	 mcp_notify_log(struct mcp_session *, const char *related,
	    enum log_level, const char *msg);
struct json_object *mcp_instructions(const struct mcp_session *);
struct json_object *mcp_capabilities(const struct mcp_session *);
struct json_object *mcp_server_info(void);

/* mcp.c: the dispatch; what the transports call. */
void	 mcp_init(const struct heavy_config *);
void	 mcp_fini(void);
void	 mcp_close(void);
void	 mcp_session_close(struct mcp_session *);
void	 mcp_session_abort(struct mcp_session *);
void	 mcp_session_line(struct mcp_session *, const char *, size_t);
void	 mcp_session_dispatch(struct mcp_session *, struct rpc_msg *);

/* toolcall.c: tools/list and tools/call. */
struct json_object *toolcall_list(const struct heavy_config *);
void	 mcp_tools_list(struct mcp_session *, struct rpc_msg *);
void	 mcp_tools_call(struct mcp_session *, struct rpc_msg *);

/* calls.c: a session's orchestrations, run by the task service. */
void	 mcp_calls_orchestrate(struct mcp_session *, struct rpc_msg *,
	    struct json_object *args);
bool	 mcp_calls_cancel(struct mcp_session *, const char *key,
	    const char *why);
void	 mcp_calls_abort(struct mcp_session *, const char *why);
void	 mcp_calls_log(struct mcp_session *, enum log_level,
	    const char *task_id, const char *msg);

/*
 * modern.c: MCP 2026-07-28, stateless: no handshake, every request says
 * its version and the client's capabilities in _meta; server/discover,
 * subscriptions/listen, the tasks extension.  Both transports serve it
 * beside the handshake era.
 */
#define MODERN_VERSION	"2026-07-28"
#define RPC_HEADER_MISMATCH	-32020
#define RPC_MISSING_CAPABILITY	-32021
#define RPC_UNSUPPORTED_VERSION	-32022
bool	 modern_is(const struct rpc_msg *);
int	 modern_check(const struct rpc_msg *, struct json_object **error);
struct json_object *modern_unsupported(struct json_object *id,
	    const char *requested);
bool	 modern_known(const char *method);
void	 modern_request(struct mcp_session *, struct rpc_msg *);
void	 modern_changed(struct mcp_session *, struct task_record *);
bool	 modern_cancelled(struct mcp_session *, const char *key);
void	 modern_session_closed(struct mcp_session *);
void	 modern_stop(void);
int	 mcp_negotiate_version(const char *requested, const char **chosen);
bool	 mcp_has_tasks(const struct mcp_session *);

/* stdio.c, http.c: the transports; serve.c: serving MCP over them. */
int	 stdio_start(const struct heavy_config *, void (*gone)(void));
void	 stdio_stop(void);
int	 http_start(const struct heavy_config *, const struct listen_fd *,
	    int nfds, bool (*ready)(void), char *err, size_t len);
void	 http_stop(void);

/* sessionid.c: Mcp-Session-Id values a node can tell apart: its own, a
 * session of another node under the shared key, or bad. */
#define SESSIONID_TAG_MAX	64
#define SESSIONID_MAX		(SESSIONID_TAG_MAX + 1 + 64 + 1)
enum sessionid_kind { SESSIONID_BAD, SESSIONID_OURS, SESSIONID_FOREIGN };
int	 sessionid_init(const struct heavy_config *, char *err, size_t len);
void	 sessionid_new(char *id);
enum sessionid_kind sessionid_check(const char *id, char *node, size_t len);
const char *sessionid_brief(const char *id);
int	 serve_run(struct heavy_config *);

/* mcptasks.c: MCP Tasks: task-augmented tools/call, the tasks methods. */
void	 mcptasks_call(struct mcp_session *, struct rpc_msg *,
	    const char *name, struct json_object *args, struct json_object *task);
void	 mcptasks_rpc_get(struct mcp_session *, struct rpc_msg *);
void	 mcptasks_rpc_result(struct mcp_session *, struct rpc_msg *);
void	 mcptasks_rpc_list(struct mcp_session *, struct rpc_msg *);
void	 mcptasks_rpc_cancel(struct mcp_session *, struct rpc_msg *);
void	 mcptasks_changed(struct mcp_session *, struct task_record *);
bool	 mcptasks_request_cancelled(struct mcp_session *, const char *key);
void	 mcptasks_session_closed(struct mcp_session *);
void	 mcptasks_rpc_update(struct mcp_session *, struct rpc_msg *);
struct json_object *mcptasks_modern_status(struct mcp_session *,
	    struct task_record *);
void	 mcptasks_stop(void);

/* mkh.c: make-it-heavy's task-id tools, over the registry and the store. */
void	 mkh_tools(struct json_object *tools);
bool	 mkh_has(const struct heavy_config *, const char *name);
bool	 mkh_call(struct mcp_session *, struct rpc_msg *, const char *name,
	    struct json_object *args);

#ifdef HEAVY_TEST_FIXTURES
/* fixtures.c: the conformance suite's fixtures, in the test build only:
 * what they add to the lists, and whether a call, read or get is theirs. */
void	 fixtures_tools(struct json_object *tools);
bool	 fixtures_call(struct mcp_session *, struct rpc_msg *,
	    const char *name, struct json_object *args);
void	 fixtures_resources(struct json_object *list);
void	 fixtures_templates(struct json_object *list);
struct json_object *fixtures_read(const char *uri);
bool	 fixtures_subscribable(const char *uri);
void	 fixtures_prompts(struct json_object *list);
bool	 fixtures_prompt(struct mcp_session *, struct rpc_msg *,
	    const char *name, struct json_object *args);
struct json_object *fixtures_complete(const char *prompt, const char *arg,
	    const char *typed);
#endif

/* token.c: heavyd token add|list|revoke; argv[0] is "token". */
int	 token_run(const struct heavy_config *, int argc, char **argv);

/* ask.c: heavyd ask, one orchestration from the shell. */
#define ASK_EXIT_OK		0
#define ASK_EXIT_FAILED		1	/* the LLM calls or the configuration */
#define ASK_EXIT_USAGE		2
#define ASK_EXIT_TIMEOUT	124	/* as timeout(1) */
void	 ask_options(int argc, char **argv, const char **config);
int	 ask_run(struct heavy_config *);

#endif

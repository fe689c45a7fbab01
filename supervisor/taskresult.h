/*
 * A task's result, typed: what an orchestration amounts to, filled by the
 * engine (task.c) and handed up as it is (task_done_fn, the registry, the
 * task service's hooks).  Only the MCP edge renders it as a
 * CallToolResult (result.c); nothing below reads JSON back out of it.
 * Every string is the result's own (taskresult_free frees them).
 */
#ifndef HEAVY_TASKRESULT_H
#define HEAVY_TASKRESULT_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/common.h"
#include "../proto/proto.h"

/* One fallback a step took: from a model to the next, and why. */
struct tr_fallback {
	char	*from;
	char	*to;
	char	*reason;		/* job_fallback_name's */
};

/* The model that answered a step, and each fallback on the way. */
struct tr_route {
	char			*model;	/* NULL: none answered (a planner
					   or synthesis that never did) */
	int			 nfallbacks;
	struct tr_fallback	 fallbacks[HEAVY_MAX_FALLBACKS];
};

struct tr_agent {
	int		 index;		/* 1-based */
	char		*question;
	char		*status;	/* ok failed timed_out killed
					   cut_for_latency pending running */
	int64_t		 elapsed_ms;
	char		*error;		/* NULL: none */
	char		*signal;	/* "SIGKILL"; NULL: none */
	struct usage	 usage;
	struct tr_route	 route;
	int		 rank;		/* 0: not ranked */
	bool		 rerun;		/* resumed: it ran again */
};

/* The aggregate ranking of one agent's answer. */
struct tr_rank {
	int		 agent;		/* 1-based */
	int		 rank;
	double		 score;		/* rounded to 4 decimals */
	int		 reviews;
};

/* A peer review that gave no usable ranking. */
struct tr_review_error {
	int		 reviewer;	/* 1-based agent index */
	char		*model;
	char		*status;
	char		*error;
};

/* incremental: one draft, and all of them. */
struct tr_draft {
	int		 n;		/* 1-based */
	int		 answers;
	char		*status;
	int64_t		 started_ms, ended_ms; /* since the task's start */
	uint64_t	 tokens;
};
struct tr_drafts {
	double		 interval_s;
	uint64_t	 tokens;
	uint32_t	 llm_calls;
	uint64_t	 cost_micro_usd;
	int64_t		 first_draft_ms;	/* -1: none finished */
	int64_t		 answer_ms;
	int		 synthesis_from;	/* 0: none taken */
	int		 n;		/* drafts started */
	struct tr_draft	 list[HEAVY_MAX_AGENTS];
};

enum tr_kind {
	TR_ORCHESTRATION,	/* an orchestration's: text and details */
	TR_TEXT,		/* the text alone (a fixture's, a refusal's) */
};

struct task_result {
	enum tr_kind		 kind;
	char			*answer;	/* the answer, or the error */
	bool			 failed;	/* isError */

	/* TR_ORCHESTRATION only, from here on. */
	bool			 synthesized, planner_fallback, planner_reasked;
	char			*planner_error, *synthesis_error;
	int			 synthesis_truncated;
	struct tr_route		 planner, synthesis;
	int			 nagents;
	struct tr_agent		 agents[HEAVY_MAX_AGENTS];
	struct usage		 usage;
	int64_t			 elapsed_ms;
	char			*strategy;
	char			*strategy_fallback;
	bool			 ranked;	/* else ranking is null */
	int			 nranking;
	struct tr_rank		 ranking[HEAVY_MAX_AGENTS];	/* best first */
	int			 nreview_errors;
	struct tr_review_error	 review_errors[HEAVY_MAX_AGENTS];
	uint64_t		 max_total_tokens;	/* 0: no budget */
	double			 max_cost_usd;		/* 0: no budget */
	char			*budget_stop;	/* why the budget stopped it */
	int			 min_agents;	/* the quorum; 0: none */
	double			 straggler_grace_s;
	bool			 has_resumed;	/* task_resume's: */
	char			*resumed_from;	/* who ran it first */
	char			*resumed_why;	/* why it stopped there */
	bool			 resumed_planner; /* the planner ran again */
	bool			 has_drafts;	/* incremental */
	struct tr_drafts	 drafts;
	char			*workspace;	/* "" if none */
	char			*confinement;	/* the sandbox, in a few words */
	int			 nweaker;
	char			*weaker[3];	/* what it does not confine */

	/* The MCP edge's, for whoever asked (calls.c): */
	bool			 cached;	/* served from the cache ... */
	char			*cached_from;	/* ... of this task */
	bool			 has_session;	/* the session's usage is set */
	struct usage		 session_usage;
	int			 session_tasks;
};

struct task_result *taskresult_new(enum tr_kind);
struct task_result *taskresult_text(const char *text, bool failed);
struct task_result *taskresult_copy(const struct task_result *);
void	 taskresult_free(struct task_result *);
void	 taskresult_route_clear(struct tr_route *);

/*
 * How the store keeps a result, for every backend alike: its scalars as
 * columns of task_results, each agent's as columns of task_result_agents
 * (both named and typed here), and its lists as rows of task_result_items.
 */
enum tr_type { TRC_TEXT, TRC_INT, TRC_BOOL, TRC_I64, TRC_U64, TRC_U32,
	TRC_REAL };
struct tr_column {
	const char	*name;
	enum tr_type	 type;
	size_t		 off;		/* in struct task_result or tr_agent */
};
extern const struct tr_column	taskresult_columns[];
extern const int		taskresult_ncolumns;
extern const struct tr_column	taskresult_agent_columns[];
extern const int		taskresult_nagent_columns;
/* A column's value in base (a result or an agent); TRC_TEXT may be NULL. */
const char *taskresult_col_text(const void *, const struct tr_column *);
int64_t	 taskresult_col_int(const void *, const struct tr_column *);
double	 taskresult_col_real(const void *, const struct tr_column *);
void	 taskresult_col_set_text(void *, const struct tr_column *,
	    const char *);
void	 taskresult_col_set_int(void *, const struct tr_column *, int64_t);
void	 taskresult_col_set_real(void *, const struct tr_column *, double);

/*
 * One row of a list: a fallback (owner 0 the planner's, -1 the
 * synthesis', else that agent's), a rank, a review error, a draft or a
 * weaker part of the sandbox; n is its place in its list, from 0.
 */
struct tr_item {
	const char	*list;	/* fallback rank review_error draft weaker */
	int		 owner;
	int		 n;
	int64_t		 a, b, c, d;
	double		 x;
	const char	*s1, *s2, *s3;
};
int	 taskresult_items(const struct task_result *, struct tr_item **);
int	 taskresult_item_add(struct task_result *, const struct tr_item *);

#endif

/*
 * The task store, behind a backend chosen by name (smtpd's queue_backend
 * is the model): store.c is the front every caller uses, a backend is one
 * file that fills in struct store_backend.  SQLite (store_sqlite.c) is the
 * embedded default.
 *
 * Every call answers through a callback, because a backend may have to
 * wait for its server: a caller must be correct whether the callback runs
 * before the call returns (SQLite does) or on a later turn of the loop.
 * A row handed to a callback is the backend's: it is valid during the
 * callback only (store_task_copy keeps one).
 */
#ifndef HEAVY_STORE_H
#define HEAVY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "taskresult.h"

/*
 * One agent of a task, as the store keeps it (a row of task_agents): the
 * question the planner gave it and its answer, both whole, since a task
 * resumed elsewhere needs them.
 */
struct store_agent {
	int		 index;		/* 1-based */
	char		*question;	/* NULL until the planner is done */
	char		*status;	/* pending running ok failed timed_out
					   killed cut_for_latency cancelled
					   interrupted */
	char		*step;		/* its last worker note */
	char		*error;
	char		*answer;	/* once it has one */
	int64_t		 elapsed_ms;	/* once it has finished, else -1 */
};

/* incremental: a task's latest finished draft. */
struct store_draft {
	int		 n;		/* 1-based; 0: none yet */
	int		 answers;	/* the answers it was written from */
	int		 of;		/* num_agents */
	int64_t		 made_ms;	/* when it finished, since the start */
	char		*text;
};

/* What a task is doing: its phase, how long it has run, its agents, its
 * draft.  A task's agents only grow in number (none until it starts). */
struct store_progress {
	char			*phase;	/* planning agents review synthesis
					   done cancelled interrupted; NULL:
					   none recorded */
	int64_t			 elapsed_ms;
	int			 nagents;
	struct store_agent	*agents;
	struct store_draft	 draft;
};

/*
 * What an orchestration was started with, typed, so that it can be
 * started again (resumed) with the same arguments.  A row without them (of
 * an older heavyd, or of a tool that is no orchestration) has set false.
 */
struct store_args {
	bool		 set;
	double		 timeout_s;
	char		*model;		/* NULL: the configured */
	char		*strategy;	/* NULL: the configured */
	char		**fallbacks;	/* NULL: the configured */
	int		 nfallbacks;
	int64_t		 max_total_tokens;	/* 0: none */
	double		 max_cost_usd;		/* 0: none */
	int		 min_agents;
	double		 straggler_grace_s;
	int		 hedge_after_ms;
	bool		 ask_cost;
	double		 incremental_interval_s;
	bool		 resume;	/* resumed, not failed, if its runner dies */
	int64_t		 deadline_ms;	/* wall clock: it fails past this */
};

/* One task, as the store keeps it. */
struct store_task {
	char		 id[33];
	char		*owner;
	char		*tool;		/* the tool that started it */
	char		*status;	/* working, completed, failed, cancelled */
	char		*status_message;
	char		*params;	/* JSON: the call's effective arguments,
					   kept as a record, never read back */
	char		*query;		/* typed, from them: what was asked */
	int		 num_agents;	/* ... and of how many agents */
	struct store_args args;		/* ... and with what */
	struct store_progress progress;
	struct task_result *result;	/* once terminal, if it had one (get
					   and cache_find read it; a list's
					   rows have none) */
	struct usage	 usage;		/* so far, or all once ended */
	bool		 has_usage;	/* ... when it is known */
	char		*cache_key;
	int64_t		 created_ms, updated_ms, ttl_ms;	/* wall clock */
	pid_t		 pid;		/* the heavyd that ran it */
	bool		 ours;		/* ... is this process */
	bool		 orphaned;	/* ... is gone, mid-task */
};

/* What a call found or did. */
enum store_rc {
	STORE_OK = 0,
	STORE_NOT_FOUND = 1,	/* also: another owner's row */
	STORE_TERMINAL = 1,	/* put: the row had ended; it stays so */
	STORE_EXPIRED = 2,
	STORE_ERROR = -1,	/* store_error() says why */
	STORE_BAD_CURSOR = -2,
};

/* What happened to a task in some process (store_watch). */
enum store_event {
	STORE_EVENT_END,	/* its row became terminal */
	STORE_EVENT_CANCEL,	/* a cancel was asked for (store_cancel) */
	STORE_EVENT_LOST,	/* this process's lease on it was lost */
};
typedef void (*store_event_fn)(enum store_event, const char *id);
/*
 * A task whose runner died that this process has claimed, to resume it:
 * the row as it was (its args set), who ran it (a pid, a node) and why it
 * stopped.  The row is the backend's, for the call only.
 */
typedef void (*store_resume_fn)(const struct store_task *, const char *from,
	    const char *why);

/* A write (or several, in one transaction) is done. */
typedef void (*store_done_cb)(void *arg, int rc);
/* One row, or none (rc). */
typedef void (*store_row_cb)(void *arg, int rc, const struct store_task *);
/* A page of rows; next is the cursor of the page after it, or NULL.  For
 * store_ids, n rows of which only the id is set, of total matches. */
typedef void (*store_rows_cb)(void *arg, int rc, const struct store_task *,
	    int n, int total, const char *next);
/* A quota counter's total (rc STORE_OK), or STORE_ERROR. */
typedef void (*store_total_cb)(void *arg, int rc, int64_t total);

struct store_options {
	const char	*state_dir;
	const char	*url;		/* NULL: the embedded default */
	int		 busy_ms;	/* how long to wait for a lock */
	bool		 sync_full;	/* survive a power cut, not just a crash */
	/* A server's link (0: the backend's defaults): */
	int		 max_queue;	/* writes held while it is away */
	int		 pipeline;	/* queries in flight at once */
	int		 prepared;	/* statements kept prepared (< 0: none) */
	int		 connect_timeout_ms;
	int		 retry_max_ms;	/* the longest pause between tries */
	/* Several nodes on one server: */
	const char	*node_id;	/* NULL: hostname:pid-starttime */
	int		 lease_ttl_ms;	/* a running task's lease (0: 30 s) */
};

struct store_backend {
	const char	*name;
	/* Whether it serves this URL (the embedded one: NULL). */
	bool		(*serves)(const char *url);
	int		(*open)(const struct store_options *, char *err,
			    size_t errlen);
	void		(*close)(void);
	const char	*(*error)(void);
	/* Rows of this process's tasks, as they are now, in one transaction:
	 * each inserted, or updated unless its stored row has ended.  rc:
	 * STORE_OK, STORE_TERMINAL (every row had ended) or STORE_ERROR. */
	void		(*put)(const struct store_task *, int n, store_done_cb,
			    void *);
	/* By id for its owner (owner NULL: any, for our own bookkeeping). */
	void		(*get)(const char *id, const char *owner, store_row_cb,
			    void *);
	/* The owner's tasks newest first, a page of limit after cursor. */
	void		(*list)(const char *owner, const char *cursor, int limit,
			    store_rows_cb, void *);
	/* The owner's running tasks, in any live process, oldest first. */
	void		(*active)(const char *owner, store_rows_cb, void *);
	/* The owner's ids starting with prefix: running first, then newest. */
	void		(*ids)(const char *owner, const char *prefix, int limit,
			    store_rows_cb, void *);
	/* The newest completed row with this cache key, under max_age. */
	void		(*cache_find)(const char *owner, const char *key,
			    int64_t max_age_ms, store_row_cb, void *);
	/* Rows whose process is gone: resumed by this one (store_resume),
	 * or failed, with the reason (rc: how many). */
	void		(*settle)(store_done_cb, void *);
	/* Expired rows, then the oldest ended ones beyond max_rows (rc: how
	 * many went). */
	void		(*sweep)(int max_rows, store_done_cb, void *);
	/* How durable a write is: 1 a crash, 2 also a power cut. */
	int		(*durability)(void);
	/*
	 * Quota counters, per identity, kind and window (its start, seconds
	 * since the epoch).  A window's total is the sum of its charges,
	 * one per source (a task): a charge sets its source's amount, which
	 * only grows, so the same charge twice counts once.  Answers the
	 * window's total after the charge.
	 */
	void		(*quota_charge)(const char *identity, const char *kind,
			    int64_t window, const char *source, int64_t amount,
			    store_total_cb, void *);
	void		(*quota_total)(const char *identity, const char *kind,
			    int64_t window, store_total_cb, void *);
	/* Windows that started before this (rc: the charges deleted). */
	void		(*quota_sweep)(int64_t before, store_done_cb, void *);
	/* Whether its server is there and its queue has room, and why not
	 * (NULL: an embedded store, always). */
	bool		(*ready)(char *why, size_t len);
	/* Tells fn of every row that ends and every cancel asked for, in
	 * any process on the store, soon after (NULL: no such news). */
	void		(*watch)(store_event_fn fn);
	/* Asks the process that runs a task to cancel it (rc: STORE_OK, or
	 * STORE_TERMINAL when it is not running; NULL: not possible). */
	void		(*cancel)(const char *id, const char *owner,
			    store_done_cb, void *);
};

extern const struct store_backend store_sqlite;
extern const struct store_backend store_pg;

/* store.c: the front. */
int	 store_open(const struct store_options *, char *err, size_t errlen);
void	 store_close(void);
const char *store_backend_name(void);
const char *store_error(void);
int	 store_durability(void);
bool	 store_ready(char *why, size_t len);
void	 store_watch(store_event_fn);
bool	 store_cancel(const char *id, const char *owner);
void	 store_put(const struct store_task *, int n, store_done_cb, void *);
void	 store_get(const char *id, const char *owner, store_row_cb, void *);
void	 store_list(const char *owner, const char *cursor, int limit,
	    store_rows_cb, void *);
void	 store_active(const char *owner, store_rows_cb, void *);
void	 store_ids(const char *owner, const char *prefix, int limit,
	    store_rows_cb, void *);
void	 store_cache_find(const char *owner, const char *key,
	    int64_t max_age_ms, store_row_cb, void *);
void	 store_settle(store_done_cb, void *);
void	 store_sweep(int max_rows, store_done_cb, void *);
void	 store_quota_charge(const char *identity, const char *kind,
	    int64_t window, const char *source, int64_t amount,
	    store_total_cb, void *);
void	 store_quota_total(const char *identity, const char *kind,
	    int64_t window, store_total_cb, void *);
void	 store_quota_sweep(int64_t before, store_done_cb, void *);

/* store_row.c: what the backends share.  "starttime@boot_id" of a process
 * ("" when it is gone), and whether the process a row names still runs
 * it. */
void	 store_task_copy(struct store_task *, const struct store_task *);
void	 store_task_clear(struct store_task *);
void	 store_progress_copy(struct store_progress *,
	    const struct store_progress *);
void	 store_progress_clear(struct store_progress *);
void	 store_progress_stop(struct store_progress *, const char *how);
void	 store_self_init(void);
void	 store_proc_start(pid_t, char *out, size_t len);
const char *store_self_start(void);
bool	 store_proc_alive(pid_t, const char *start);
extern const char store_interrupted[];
void	 store_task_interrupt(struct store_task *);
void	 store_args_copy(struct store_args *, const struct store_args *);
void	 store_args_clear(struct store_args *);
bool	 store_resumable(const struct store_task *, int64_t now);
/* Who hears of the rows this process claims to resume (NULL: nobody;
 * then every backend fails them as before). */
void	 store_resume(store_resume_fn);
bool	 store_resuming(void);
void	 store_resume_tell(const struct store_task *, const char *from,
	    const char *why);

#endif

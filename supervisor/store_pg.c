/*
 * The PostgreSQL task store backend (store.url: postgresql://...), on one
 * asynchronous connection (pgconn.c): every call is one statement queued
 * there, and answers on a later turn of the loop.  While the server is
 * away, writes wait in pgconn's bounded queue and are sent again once it
 * is back; past the queue's bound a call fails with the reason, on the
 * next turn of the loop too.
 * Every statement is idempotent, as pgconn asks: a put is an upsert that
 * never touches an ended row, a settle only ends a running one.
 *
 * Opening migrates the schema (pgschema.c) on a connection of its own,
 * waited for, so that heavyd does not start on a database it cannot use.
 *
 * A row names the process that ran it, as with SQLite.  Only a row of
 * this host (its boot id) whose process is gone counts as interrupted:
 * the rows of other nodes wait for the leases of issue 12.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>
#include <json-c/linkhash.h>
#include <libpq-fe.h>

#include "supervisor.h"
#include "pgconn.h"

#define PG_OPEN_MS	30000	/* for the server at startup */
#define PG_CLOSE_MS	10000	/* for the last writes, at exit */
/* "end ID" when a row becomes terminal, "cancel ID" when a cancel is
 * asked for: every node LISTENs. */
#define PG_CHANNEL	"heavyd_tasks"

static struct pgconn		*pg;
static char			 pg_last_error[512];
static int			 pg_durable = -1;
static store_event_fn		 pg_watcher;

/*
 * Leases.  Every running row names the node that runs it (node_id) and
 * holds a lease until lease_expires_at, on the database's clock; this node
 * renews its rows' leases every quarter of the lease's length, and takes
 * over the running rows whose lease expired, lease_epoch bumped: a row that
 * asked to be resumed, within its deadline, is claimed (its node_id this
 * node's, its new epoch remembered in pg_epochs) and handed up to be run
 * again (store_resume); any other is failed, as interrupted.  Every write
 * of a row is fenced by node_id and the epoch this node holds it at (0
 * from its insert), so a node presumed dead cannot overwrite what the node
 * that took over wrote.  A row this node runs and did not get back from a
 * renewal, or all of them once no renewal was answered for a whole lease,
 * is lost: its task is stopped here (STORE_EVENT_LOST).
 */
static const char	 pg_taken_over[] = "interrupted: its node stopped "
	"renewing its lease";
struct pg_lease {
	char		 id[33];
	unsigned	 gen;		/* pg_gen when it started */
	bool		 cancel_told;	/* its cancel_requested_ms, heard */
	int64_t		 epoch;		/* its lease_epoch */
};
/* The epochs of rows this node claimed (not 0), until their end is in. */
static struct lh_table	*pg_epochs;	/* id -> struct pg_epoch */
struct pg_epoch {
	char		 id[33];
	int64_t		 epoch;
};
static char		 pg_node[256];
static int		 pg_lease_ms;
static struct lh_table	*pg_held;	/* id -> struct pg_lease */
static unsigned		 pg_gen;	/* renewals sent */
static int64_t		 pg_renewed_ms;	/* monotonic: the last one answered */
static struct event	*pg_lease_timer;
static void		 pg_lease_init(const struct store_options *);

/* One call under way: whom to answer, and what it needs then. */
struct pg_op {
	store_done_cb	 done;
	store_row_cb	 row;
	store_rows_cb	 rows;
	store_total_cb	 total;
	void		*arg;
	int		 limit;
	char		(*ended)[33];	/* put: the rows it ends */
	int		 nended;
	struct store_task *found;	/* a row waiting for its result */
	int		 nfound;
};

struct pgconn *
store_pg_conn(void)
{
	return pg;
}

static void
pg_failed(const char *why)
{
	snprintf(pg_last_error, sizeof pg_last_error, "%s", why);
	log_warnx("task store: %s", why);
}

static const char *
pg_error(void)
{
	return pg_last_error[0] != '\0' ? pg_last_error : "unknown error";
}

static bool
pg_serves(const char *url)
{
	return url != NULL && (strncmp(url, "postgresql://", 13) == 0 ||
	    strncmp(url, "postgres://", 11) == 0);
}

static int
pg_durability(void)
{
	return pg != NULL ? pg_durable : -1;
}

/* Not while the server is away or the queue is full: writes would wait,
 * or be refused. */
static bool
pg_ready(char *why, size_t len)
{
	struct pgconn_status	st;

	if (pg == NULL) {
		snprintf(why, len, "the task store is not open");
		return false;
	}
	pgconn_status(pg, &st);
	if (st.state != PGCONN_CONNECTED) {
		snprintf(why, len, "PostgreSQL is %s%s%s (%d queries wait)",
		    pgconn_state_name(st.state), st.error[0] ? ": " : "",
		    st.error, st.queued);
		return false;
	}
	if (st.queued >= st.max_queue) {
		snprintf(why, len, "the task store's queue is full (%d queries)",
		    st.queued);
		return false;
	}
	return true;
}

static struct pg_op *
pg_op_new(void *arg)
{
	struct pg_op	*op = xcalloc(1, sizeof *op);

	op->arg = arg;
	return op;
}

/*
 * Calls the queue refused, answered on the next turn of the loop like
 * every other answer: never inside the call, whose caller may be in the
 * middle of a change that the failure undoes (a task's progress write
 * that fails its first write's waiter, which stops the task).
 */
struct pg_refusal {
	TAILQ_ENTRY(pg_refusal)	 entry;
	pgconn_result_fn	 fn;
	struct pg_op		*op;
	char			 err[256];
};
static TAILQ_HEAD(, pg_refusal)	 pg_refusals =
    TAILQ_HEAD_INITIALIZER(pg_refusals);
static struct event		*pg_refusal_ev;

static void
pg_refusals_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_refusal	*r;

	(void)fd; (void)what; (void)arg;
	while ((r = TAILQ_FIRST(&pg_refusals)) != NULL) {
		TAILQ_REMOVE(&pg_refusals, r, entry);
		r->fn(r->op, NULL, r->err);
		free(r);
	}
}

/* Queues a statement; when the queue refuses it, the call fails soon. */
static void
pg_send(const char *sql, int n, const char *const *params,
    pgconn_result_fn fn, struct pg_op *op)
{
	struct pg_refusal	*r;
	struct timeval		 now = { 0, 0 };
	char			 err[256];

	if (pg == NULL) {	/* closed: the loop may not turn again */
		fn(op, NULL, "the task store is not open");
		return;
	}
	if (pgconn_query(pg, sql, n, params, fn, op, err, sizeof err) == 0)
		return;
	r = xcalloc(1, sizeof *r);
	r->fn = fn;
	r->op = op;
	snprintf(r->err, sizeof r->err, "%s", err);
	TAILQ_INSERT_TAIL(&pg_refusals, r, entry);
	if (pg_refusal_ev == NULL)
		pg_refusal_ev = evtimer_new(ev_base, pg_refusals_cb, NULL);
	evtimer_add(pg_refusal_ev, &now);
}

/* ---- Opening: the schema, waited for on a loop of its own ---- */

struct pg_opening {
	int	version;	/* 0: not yet answered */
	char	error[512];
	int	durable;
};

static void
pg_migrated(void *arg, int version, const char *error)
{
	struct pg_opening	*o = arg;

	o->version = version;
	if (error != NULL)
		snprintf(o->error, sizeof o->error, "%s", error);
}

static void
pg_sync_setting(void *arg, PGresult *res, const char *error)
{
	struct pg_opening	*o = arg;

	/* synchronous_commit off: a crash of the server may lose the last
	 * commits; on (or remote_*): not even a power cut. */
	o->durable = error == NULL && PQntuples(res) == 1 &&
	    strcmp(PQgetvalue(res, 0, 0), "off") == 0 ? 1 : 2;
}

static void
pg_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* The migrations and the durability, on a connection we wait for. */
static int
pg_migrate(const struct pgconn_config *cfg, char *err, size_t errlen)
{
	struct event_base	*base = event_base_new();
	struct event		*tick;
	struct pgconn		*c;
	struct pg_opening	 o = { 0 };
	struct pgconn_status	 st;
	struct timeval		 tv = { 0, 100000 };
	int64_t			 deadline = now_ms() + PG_OPEN_MS;

	if (base == NULL)
		fatalx("event_base_new");
	/* Wakes the wait now and then, so that its limit is checked. */
	if ((tick = event_new(base, -1, EV_PERSIST, pg_tick, NULL)) == NULL ||
	    event_add(tick, &tv) == -1)
		fatalx("event_new");
	c = pgconn_new(base, cfg);
	if (pgschema_migrate(c, pg_migrated, &o, err, errlen) == -1 ||
	    pgconn_query(c, "SELECT current_setting('synchronous_commit')", 0,
	    NULL, pg_sync_setting, &o, err, errlen) == -1) {
		pgconn_free(c);
		event_free(tick);
		event_base_free(base);
		return -1;
	}
	while (o.durable == 0 && o.version != -1 && now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	pgconn_status(c, &st);
	pgconn_free(c);
	event_free(tick);
	event_base_free(base);
	pg_durable = o.durable;
	if (o.version == -1)
		snprintf(err, errlen, "%s", o.error);
	else if (o.durable == 0)
		snprintf(err, errlen, "task store: PostgreSQL did not answer "
		    "in %d s (%s)", PG_OPEN_MS / 1000, st.error[0] ? st.error :
		    pgconn_state_name(st.state));
	return o.durable != 0 && o.version > 0 ? 0 : -1;
}

/* A URL libpq cannot read is refused at once, not retried for 30 s. */
static int
pg_url_check(const char *url, char *err, size_t errlen)
{
	PQconninfoOption	*opts;
	char			*why = NULL, *shown;

	secret_add_url(url);
	if ((opts = PQconninfoParse(url, &why)) != NULL) {
		PQconninfoFree(opts);
		return 0;
	}
	shown = pgconn_url_display(url);
	if (why != NULL)
		why[strcspn(why, "\n")] = '\0';
	snprintf(err, errlen, "task store: %s: %s", shown, why ? why :
	    "out of memory");
	free(shown);
	PQfreemem(why);
	return -1;
}

/* A node's news of a task: a row that ended, a cancel asked for. */
static void
pg_notified(void *arg, const char *channel, const char *payload)
{
	const char	*id;

	(void)arg;
	if (pg_watcher == NULL || strcmp(channel, PG_CHANNEL) != 0 ||
	    (id = strchr(payload, ' ')) == NULL || strlen(++id) != 32)
		return;
	if (strncmp(payload, "end ", 4) == 0)
		pg_watcher(STORE_EVENT_END, id);
	else if (strncmp(payload, "cancel ", 7) == 0)
		pg_watcher(STORE_EVENT_CANCEL, id);
}

static void
pg_watch(store_event_fn fn)
{
	pg_watcher = fn;
}

static int
pg_open(const struct store_options *o, char *err, size_t errlen)
{
	struct pgconn_config	cfg = { .max_queue = o->max_queue,
	    .pipeline = o->pipeline, .prepared = o->prepared,
	    .connect_timeout_ms = o->connect_timeout_ms,
	    .backoff_max_ms = o->retry_max_ms };

	if (ev_base == NULL) {
		snprintf(err, errlen, "task store: no event loop yet");
		return -1;
	}
	if (pg_url_check(o->url, err, errlen) == -1)
		return -1;
	cfg.url = o->url;
	if (pg_migrate(&cfg, err, errlen) == -1)
		return -1;
	cfg.metrics = true;
	pg = pgconn_new(ev_base, &cfg);
	pg_last_error[0] = '\0';
	pgconn_on_notify(pg, pg_notified, NULL);
	if (pgconn_listen(pg, PG_CHANNEL, err, errlen) == -1)
		fatalx("task store: LISTEN %s: %s", PG_CHANNEL, err);
	pg_lease_init(o);
	return 0;
}

static void
pg_close(void)
{
	if (pg_lease_timer != NULL)
		event_free(pg_lease_timer);
	pg_lease_timer = NULL;
	/* The last writes (durable_stop's) land before we exit. */
	if (pg != NULL && pgconn_finish(pg, PG_CLOSE_MS) == -1)
		log_warnx("task store: PostgreSQL did not take every write "
		    "before exit");
	pgconn_free(pg);
	pg = NULL;
	pg_refusals_cb(-1, 0, NULL);	/* those still owed their answer */
	if (pg_refusal_ev != NULL)
		event_free(pg_refusal_ev);
	pg_refusal_ev = NULL;
	if (pg_held != NULL)
		lh_table_free(pg_held);
	pg_held = NULL;
	if (pg_epochs != NULL)
		lh_table_free(pg_epochs);
	pg_epochs = NULL;
}

/* ---- Rows ---- */

#define PG_COLUMNS "id, owner, tool, status, status_message, params::text, " \
	"phase, progress_ms, NULL, NULL, cache_key, " \
	"created_ms, updated_ms, ttl_ms, pid, proc_start, draft_n, " \
	"draft_answers, draft_of, draft_made_ms, draft_text, query, " \
	"num_agents, timeout_s, model, strategy, max_total_tokens, " \
	"max_cost_usd, min_agents, straggler_grace_s, hedge_after_ms, " \
	"ask_cost, incremental_interval_s, resume, deadline_ms, " \
	"prompt_tokens, completion_tokens, total_tokens, llm_calls, " \
	"retries, cost_micro_usd, hedged_calls, hedges_won"
#define PG_NCOLUMNS	43
/*
 * The tasks that "where" selects, in the order "order" (which "where" ends
 * with, with its LIMIT if any), each followed by its agents: one result
 * row per agent (or one with no agent), the task's columns, its rank, then
 * the agent's columns.  pg_rows puts them together again.
 */
#define PG_SELECT(where, order) "WITH t AS (SELECT " PG_COLUMNS ", " \
	"row_number() OVER (ORDER BY " order ") AS rn FROM tasks WHERE " \
	where ") SELECT t.*, a.idx, a.question, a.status, a.step, a.error, " \
	"a.answer, a.elapsed_ms FROM t LEFT JOIN task_agents a ON " \
	"a.task_id = t.id ORDER BY t.rn, a.idx"

static char *
pg_value(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL :
	    xstrdup(PQgetvalue(res, row, col));
}

/* Another host's process is not ours to judge: its row waits for the
 * leases (issue 12).  "starttime@boot_id": the same boot id, this host. */
static bool
pg_this_host(const char *start)
{
	const char	*a = strchr(start, '@'), *b = strchr(store_self_start(),
	    '@');

	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static double
pg_double(const PGresult *res, int row, int col)
{
	return strtod(PQgetvalue(res, row, col), NULL);
}

/* The arguments from column c on, if the row has them (its fallback
 * models are read apart, for a resume only). */
static void
pg_args(const PGresult *res, int i, int c, struct store_args *a)
{
	if (PQgetisnull(res, i, c) || PQgetisnull(res, i, c + 11))
		return;
	a->set = true;
	a->timeout_s = pg_double(res, i, c);
	a->model = pg_value(res, i, c + 1);
	a->strategy = pg_value(res, i, c + 2);
	a->max_total_tokens = strtoll(PQgetvalue(res, i, c + 3), NULL, 10);
	a->max_cost_usd = pg_double(res, i, c + 4);
	a->min_agents = atoi(PQgetvalue(res, i, c + 5));
	a->straggler_grace_s = pg_double(res, i, c + 6);
	a->hedge_after_ms = atoi(PQgetvalue(res, i, c + 7));
	a->ask_cost = strcmp(PQgetvalue(res, i, c + 8), "t") == 0;
	a->incremental_interval_s = pg_double(res, i, c + 9);
	a->resume = strcmp(PQgetvalue(res, i, c + 10), "t") == 0;
	a->deadline_ms = strtoll(PQgetvalue(res, i, c + 11), NULL, 10);
}

/* The usage from column c on, if the row has it. */
static void
pg_usage(const PGresult *res, int i, int c, struct store_task *t)
{
	struct usage	*u = &t->usage;

	if (!(t->has_usage = !PQgetisnull(res, i, c)))
		return;
	u->prompt_tokens = strtoull(PQgetvalue(res, i, c), NULL, 10);
	u->completion_tokens = strtoull(PQgetvalue(res, i, c + 1), NULL, 10);
	u->total_tokens = strtoull(PQgetvalue(res, i, c + 2), NULL, 10);
	u->llm_calls = (uint32_t)strtoul(PQgetvalue(res, i, c + 3), NULL, 10);
	u->retries = (uint32_t)strtoul(PQgetvalue(res, i, c + 4), NULL, 10);
	u->cost_micro_usd = strtoull(PQgetvalue(res, i, c + 5), NULL, 10);
	u->hedged_calls = (uint32_t)strtoul(PQgetvalue(res, i, c + 6), NULL,
	    10);
	u->hedges_won = (uint32_t)strtoul(PQgetvalue(res, i, c + 7), NULL, 10);
}

static void
pg_row(const PGresult *res, int i, struct store_task *t)
{
	const char	*start = PQgetvalue(res, i, 15);

	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%s", PQgetvalue(res, i, 0));
	t->owner = pg_value(res, i, 1);
	t->tool = pg_value(res, i, 2);
	t->status = pg_value(res, i, 3);
	t->status_message = pg_value(res, i, 4);
	t->params = pg_value(res, i, 5);
	t->progress.phase = pg_value(res, i, 6);
	t->progress.elapsed_ms = strtoll(PQgetvalue(res, i, 7), NULL, 10);
	pg_usage(res, i, 35, t);
	t->cache_key = pg_value(res, i, 10);
	t->created_ms = strtoll(PQgetvalue(res, i, 11), NULL, 10);
	t->updated_ms = strtoll(PQgetvalue(res, i, 12), NULL, 10);
	t->ttl_ms = strtoll(PQgetvalue(res, i, 13), NULL, 10);
	t->pid = (pid_t)atoi(PQgetvalue(res, i, 14));
	t->progress.draft.n = atoi(PQgetvalue(res, i, 16));
	if (t->progress.draft.n > 0) {
		t->progress.draft.answers = atoi(PQgetvalue(res, i, 17));
		t->progress.draft.of = atoi(PQgetvalue(res, i, 18));
		t->progress.draft.made_ms = strtoll(PQgetvalue(res, i, 19),
		    NULL, 10);
		t->progress.draft.text = pg_value(res, i, 20);
	}
	t->query = pg_value(res, i, 21);
	t->num_agents = atoi(PQgetvalue(res, i, 22));
	pg_args(res, i, 23, &t->args);
	t->ours = t->pid == getpid() && strcmp(start, store_self_start()) == 0;
	t->orphaned = strcmp(t->status, "working") == 0 && !t->ours &&
	    pg_this_host(start) && !store_proc_alive(t->pid, start);
}

static void
pg_rows_free(struct store_task *rows, int n)
{
	for (int i = 0; i < n; i++)
		store_task_clear(&rows[i]);
	free(rows);
}

/* The agent on result row i (PG_SELECT), if it has one. */
static void
pg_agent(const PGresult *res, int i, struct store_task *t)
{
	struct store_progress	*p = &t->progress;
	struct store_agent	*a;
	int			 c = PG_NCOLUMNS + 1;

	if (PQgetisnull(res, i, c))
		return;
	p->agents = xrealloc(p->agents, (size_t)(p->nagents + 1) * sizeof *a);
	a = &p->agents[p->nagents++];
	a->index = atoi(PQgetvalue(res, i, c));
	a->question = pg_value(res, i, c + 1);
	a->status = pg_value(res, i, c + 2);
	a->step = pg_value(res, i, c + 3);
	a->error = pg_value(res, i, c + 4);
	a->answer = pg_value(res, i, c + 5);
	a->elapsed_ms = PQgetisnull(res, i, c + 6) ? -1 :
	    strtoll(PQgetvalue(res, i, c + 6), NULL, 10);
}

/* The first max tasks of a PG_SELECT, each with its agents. */
static struct store_task *
pg_rows(const PGresult *res, int max, int *n)
{
	struct store_task	*rows;
	int			 nres = PQntuples(res);

	rows = xcalloc((size_t)nres + 1, sizeof *rows);
	*n = 0;
	for (int i = 0; i < nres; i++) {
		if (*n == 0 || strcmp(rows[*n - 1].id,
		    PQgetvalue(res, i, 0)) != 0) {
			if (*n == max)
				break;
			pg_row(res, i, &rows[(*n)++]);
		}
		pg_agent(res, i, &rows[*n - 1]);
	}
	return rows;
}

static bool
pg_expired(const struct store_task *t, int64_t now)
{
	return strcmp(t->status, "working") != 0 &&
	    t->created_ms + t->ttl_ms < now;
}

static void
pg_settled(void *arg, PGresult *res, const char *error)
{
	(void)arg;
	(void)res;
	if (error != NULL)
		pg_failed(error);
}

/* A row whose process died mid-task: failed, with that reason; queued
 * before anything read after it. */
static void
pg_settle_orphan(struct store_task *t)
{
	char		 updated[32], err[256];
	const char	*p[5];

	/* One to resume waits for its lease to run out: the takeover. */
	if (!t->orphaned || store_resumable(t, wall_ms()))
		return;
	store_task_interrupt(t);
	snprintf(updated, sizeof updated, "%lld", (long long)t->updated_ms);
	p[0] = t->id;
	p[1] = t->status;
	p[2] = t->status_message;
	p[3] = t->progress.phase;
	p[4] = updated;
	if (pgconn_query(pg, "WITH up AS (UPDATE tasks SET status = $2, "
	    "status_message = $3, phase = $4, updated_ms = $5 WHERE id = $1 "
	    "AND status = 'working' RETURNING id) UPDATE task_agents SET "
	    "status = 'interrupted' WHERE task_id IN (SELECT id FROM up) AND "
	    "status IN ('pending', 'running')", 5, p, pg_settled, NULL, err,
	    sizeof err) == -1)
		pg_failed(err);
}

/* ---- Leases ---- */

/* The epoch this node holds a row at: 0 from its insert, else its
 * claim's. */
static int64_t
pg_epoch(const char *id)
{
	struct lh_entry	*e;

	if (pg_epochs == NULL || (e = lh_table_lookup_entry(pg_epochs,
	    id)) == NULL)
		return 0;
	return ((const struct pg_epoch *)lh_entry_v(e))->epoch;
}

/* The rows of a put: a running one is held (and its lease renewed) from
 * now, an ended one no more. */
static void
pg_lease_track(const struct store_task *t, int n)
{
	struct pg_lease	*l;

	for (int i = 0; i < n; i++) {
		if (strcmp(t[i].status, "working") != 0) {
			lh_table_delete(pg_held, t[i].id);
			continue;
		}
		if (lh_table_lookup_entry(pg_held, t[i].id) != NULL)
			continue;
		l = xcalloc(1, sizeof *l);
		memcpy(l->id, t[i].id, sizeof l->id);
		l->gen = pg_gen;
		l->epoch = pg_epoch(l->id);
		lh_table_insert(pg_held, l->id, l);
	}
}

static void
pg_lease_free(struct lh_entry *e)
{
	free(lh_entry_v(e));
}

/* A row this node ran is no longer its own: the task stops here. */
static void
pg_lease_lost(struct pg_lease *l, const char *why)
{
	char	id[33];

	memcpy(id, l->id, sizeof id);
	log_warnx("task store: lost the lease on task %s (%s); stopping it",
	    id, why);
	lh_table_delete(pg_held, id);	/* frees l */
	if (pg_watcher != NULL)
		pg_watcher(STORE_EVENT_LOST, id);
}

/* Whether the renewal returned the row at the epoch this node holds. */
static bool
pg_returned(const PGresult *res, const struct pg_lease *l, bool *cancel)
{
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), l->id) == 0 &&
		    strtoll(PQgetvalue(res, i, 2), NULL, 10) == l->epoch) {
			*cancel = strcmp(PQgetvalue(res, i, 1), "t") == 0;
			return true;
		}
	return false;
}

/*
 * The renewal's answer: the rows held since before it was sent and not in
 * it are lost; a cancel asked for while this node was not listening is
 * heard here.
 */
static void
pg_renewed(void *arg, PGresult *res, const char *error)
{
	unsigned	 gen = (unsigned)(uintptr_t)arg;
	struct lh_entry	*e, *tmp;
	struct pg_lease	*l;
	bool		 cancel;

	if (error != NULL || pg_held == NULL)
		return;
	pg_renewed_ms = now_ms();
	lh_foreach_safe(pg_held, e, tmp) {
		l = lh_entry_v(e);
		if (l->gen >= gen)
			continue;
		if (!pg_returned(res, l, &cancel))
			pg_lease_lost(l, "another node took it over");
		else if (cancel && !l->cancel_told && pg_watcher != NULL) {
			l->cancel_told = true;
			pg_watcher(STORE_EVENT_CANCEL, l->id);
		}
	}
}

/* A row this node claimed, read whole to be resumed: its fallback models
 * first, then the row (one connection answers in order). */
struct pg_claim {
	char		 id[33];
	char		*from;
	char		**fallbacks;
	int		 nfallbacks;
};

static void
pg_claim_free(struct pg_claim *c)
{
	config_strv_free(&c->fallbacks, &c->nfallbacks);
	free(c->from);
	free(c);
}

static void	pg_claim_row(void *, PGresult *, const char *);

/* Its fallback models; then the row. */
static void
pg_claim_fallbacks(void *arg, PGresult *res, const char *error)
{
	struct pg_claim	*c = arg;
	const char	*p[] = { c->id };
	char		 err[256];

	if (error != NULL) {
		pg_claim_row(c, NULL, error);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++)
		config_strv_add(&c->fallbacks, &c->nfallbacks,
		    PQgetvalue(res, i, 0));
	if (pgconn_query(pg, PG_SELECT("id = $1", "id"), 1, p, pg_claim_row,
	    c, err, sizeof err) == -1)
		pg_claim_row(c, NULL, err);
}

/* A claimed row that could not be read is failed as interrupted, fenced
 * by the claim: nothing runs it. */
static void
pg_claim_drop(struct pg_claim *c)
{
	char		 epoch[32], now[32], err[256];
	const char	*p[] = { c->id, pg_taken_over, pg_node, epoch, now };

	snprintf(epoch, sizeof epoch, "%lld", (long long)pg_epoch(c->id));
	snprintf(now, sizeof now, "%lld", (long long)wall_ms());
	lh_table_delete(pg_held, c->id);
	if (pgconn_query(pg, "UPDATE tasks SET status = 'failed', "
	    "status_message = $2, updated_ms = $5, lease_expires_at = NULL "
	    "WHERE id = $1 AND node_id = $3 AND lease_epoch = $4 AND status = "
	    "'working' RETURNING pg_notify('" PG_CHANNEL "', 'end ' || id)",
	    5, p, pg_settled, NULL, err, sizeof err) == -1)
		pg_failed(err);
	lh_table_delete(pg_epochs, c->id);
}

/* The row claimed: handed up to be run again. */
static void
pg_claim_row(void *arg, PGresult *res, const char *error)
{
	struct pg_claim		*c = arg;
	struct store_task	*t;
	int			 n;

	if (error != NULL || res == NULL || PQntuples(res) == 0) {
		if (error != NULL)
			pg_failed(error);
		pg_claim_drop(c);
		pg_claim_free(c);
		return;
	}
	t = pg_rows(res, 1, &n);
	t->args.fallbacks = c->fallbacks;
	t->args.nfallbacks = c->nfallbacks;
	c->fallbacks = NULL;
	c->nfallbacks = 0;
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = c->id },
	    "task %s: its node %s stopped renewing its lease; resumed here",
	    c->id, c->from);
	store_resume_tell(t, c->from, "its node stopped renewing its lease");
	pg_rows_free(t, n);
	pg_claim_free(c);
}

/* A row taken over for this node: held at its new epoch from now (its
 * lease renewed), and read. */
static void
pg_claim(const char *id, int64_t epoch, const char *was)
{
	struct pg_claim	*c = xcalloc(1, sizeof *c);
	struct pg_epoch	*e = xcalloc(1, sizeof *e);
	struct pg_lease	*l = xcalloc(1, sizeof *l);
	const char	*p[] = { id };
	char		 err[256];

	snprintf(e->id, sizeof e->id, "%s", id);
	e->epoch = epoch;
	lh_table_delete(pg_epochs, e->id);
	lh_table_insert(pg_epochs, e->id, e);
	memcpy(l->id, e->id, sizeof l->id);
	l->gen = pg_gen;
	l->epoch = epoch;
	lh_table_delete(pg_held, l->id);
	lh_table_insert(pg_held, l->id, l);
	memcpy(c->id, e->id, sizeof c->id);
	c->from = xasprintf("node %s", was);
	if (pgconn_query(pg, "SELECT f FROM tasks, unnest(fallbacks) WITH "
	    "ORDINALITY AS u(f, n) WHERE id = $1 ORDER BY n", 1, p,
	    pg_claim_fallbacks, c, err, sizeof err) == -1)
		pg_claim_row(c, NULL, err);
}

/* The takeover's answer: the rows failed, and those claimed to resume. */
static void
pg_taken(void *arg, PGresult *res, const char *error)
{
	int	failed = 0;

	(void)arg;
	if (error != NULL) {
		pg_failed(error);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 1), "claimed") != 0) {
			failed++;
			continue;
		}
		pg_claim(PQgetvalue(res, i, 0), strtoll(PQgetvalue(res, i, 2),
		    NULL, 10), PQgetvalue(res, i, 3));
	}
	if (failed > 0)
		log_info("task store: %d task(s) of nodes that stopped renewing "
		    "their leases marked failed", failed);
}

/*
 * The takeover: the running rows whose lease expired, locked (of several
 * nodes, one takes each), the epoch bumped.  One that asked to be resumed,
 * within its deadline, with its arguments kept, is claimed when this node
 * resumes tasks ($4): this node's, this process's, with a fresh lease.
 * Any other is failed as interrupted, and every node hears of its end.
 */
#define PG_TAKEOVER "WITH t AS (SELECT id, node_id AS was, (resume IS " \
	"TRUE AND deadline_ms > $3::bigint AND timeout_s IS NOT NULL AND " \
	"query IS NOT NULL AND num_agents > 0 AND $4::boolean) AS again " \
	"FROM tasks WHERE status = 'working' AND lease_expires_at < now() " \
	"FOR UPDATE SKIP LOCKED), " \
	"up AS (UPDATE tasks SET status = 'failed', status_message = $2, " \
	"lease_epoch = tasks.lease_epoch + 1, node_id = $1, updated_ms = " \
	"$3, lease_expires_at = NULL FROM t WHERE tasks.id = t.id AND NOT " \
	"t.again RETURNING tasks.id), " \
	"cl AS (UPDATE tasks SET lease_epoch = tasks.lease_epoch + 1, " \
	"node_id = $1, pid = $5::integer, proc_start = $6, updated_ms = $3, " \
	"lease_expires_at = now() + $7::bigint * interval '1 millisecond' " \
	"FROM t WHERE tasks.id = t.id AND t.again RETURNING tasks.id, " \
	"tasks.lease_epoch, t.was) " \
	"SELECT id, 'failed', 0::bigint, ''::text FROM up, LATERAL (SELECT " \
	"pg_notify('" PG_CHANNEL "', 'end ' || up.id)) n UNION ALL " \
	"SELECT id, 'claimed', lease_epoch, coalesce(was, '') FROM cl"

/* This node's leases renewed, then the expired ones of others taken. */
static void
pg_lease_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn_status	 st;
	struct lh_entry		*e, *tmp;
	char			 ttl[16], now[32], pid[16], err[256];
	const char		*renew[] = { pg_node, ttl, pid,
	    store_self_start() };
	const char		*take[] = { pg_node, pg_taken_over, now,
	    store_resuming() ? "t" : "f", pid, store_self_start(), ttl };

	(void)fd; (void)what; (void)arg;
	pgconn_status(pg, &st);
	if (st.state != PGCONN_CONNECTED) {
		/* Not renewed for a lease's length: others may have them. */
		if (now_ms() - pg_renewed_ms > pg_lease_ms)
			lh_foreach_safe(pg_held, e, tmp)
				pg_lease_lost(lh_entry_v(e), "PostgreSQL "
				    "unreachable for longer than the lease");
		return;
	}
	snprintf(ttl, sizeof ttl, "%d", pg_lease_ms);
	snprintf(now, sizeof now, "%lld", (long long)wall_ms());
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	if (pgconn_query(pg, "UPDATE tasks SET lease_expires_at = now() + "
	    "$2::bigint * interval '1 millisecond' WHERE node_id = $1 AND "
	    "pid = $3::integer AND proc_start = $4 AND status = 'working' "
	    "RETURNING id, cancel_requested_ms IS NOT NULL, lease_epoch", 4,
	    renew, pg_renewed,
	    (void *)(uintptr_t)++pg_gen, err, sizeof err) == -1 ||
	    pgconn_query(pg, PG_TAKEOVER, 7, take, pg_taken, NULL, err,
	    sizeof err) == -1)
		pg_failed(err);
}

/* hostname:pid-starttime, unless the configuration names the node. */
static void
pg_lease_init(const struct store_options *o)
{
	struct timeval	 tv;
	char		 host[200] = "localhost";
	const char	*start = store_self_start();

	if (o->node_id != NULL && *o->node_id != '\0')
		snprintf(pg_node, sizeof pg_node, "%s", o->node_id);
	else {
		gethostname(host, sizeof host - 1);
		snprintf(pg_node, sizeof pg_node, "%s:%d-%.*s", host,
		    (int)getpid(), (int)strcspn(start, "@"), start);
	}
	pg_lease_ms = o->lease_ttl_ms > 0 ? o->lease_ttl_ms : 30000;
	pg_held = lh_kchar_table_new(64, pg_lease_free);
	pg_epochs = lh_kchar_table_new(16, pg_lease_free);
	pg_renewed_ms = now_ms();
	tv.tv_sec = pg_lease_ms / 4 / 1000;
	tv.tv_usec = pg_lease_ms / 4 % 1000 * 1000;
	pg_lease_timer = event_new(ev_base, -1, EV_PERSIST, pg_lease_tick,
	    NULL);
	event_add(pg_lease_timer, &tv);
	log_info("task store: node %s, leases of %d ms", pg_node, pg_lease_ms);
}

/* ---- Writes ---- */

/* The put answered: a claimed row whose end is in needs its epoch no
 * more. */
static void
pg_put_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op	*op = arg;

	if (error != NULL)
		pg_failed(error);
	else if (pg_epochs != NULL)
		for (int i = 0; i < op->nended; i++)
			lh_table_delete(pg_epochs, op->ended[i]);
	op->done(op->arg, error != NULL ? STORE_ERROR :
	    PQntuples(res) == 0 ? STORE_TERMINAL : STORE_OK);
	free(op->ended);
	free(op);
}

static void	pg_json_str(struct json_object *, const char *, const char *);

/* The arguments of a row, typed columns from JSON (none: NULL). */
static void
pg_put_args(struct json_object *o, const struct store_args *a)
{
	struct json_object	*fb;

	if (!a->set)
		return;
	json_object_object_add(o, "timeout_s",
	    json_object_new_double(a->timeout_s));
	pg_json_str(o, "model", a->model);
	pg_json_str(o, "strategy", a->strategy);
	fb = json_object_new_array();
	for (int i = 0; i < a->nfallbacks; i++)
		json_object_array_add(fb,
		    json_object_new_string(a->fallbacks[i]));
	json_object_object_add(o, "fallbacks", fb);
	json_object_object_add(o, "max_total_tokens",
	    json_object_new_int64(a->max_total_tokens));
	json_object_object_add(o, "max_cost_usd",
	    json_object_new_double(a->max_cost_usd));
	json_object_object_add(o, "min_agents",
	    json_object_new_int(a->min_agents));
	json_object_object_add(o, "straggler_grace_s",
	    json_object_new_double(a->straggler_grace_s));
	json_object_object_add(o, "hedge_after_ms",
	    json_object_new_int(a->hedge_after_ms));
	json_object_object_add(o, "ask_cost",
	    json_object_new_boolean(a->ask_cost));
	json_object_object_add(o, "incremental_interval_s",
	    json_object_new_double(a->incremental_interval_s));
	json_object_object_add(o, "resume", json_object_new_boolean(a->resume));
	json_object_object_add(o, "deadline_ms",
	    json_object_new_int64(a->deadline_ms));
}

static void
pg_json_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

/* The agents of a row, as JSON objects for jsonb_to_recordset. */
static void
pg_put_agents(struct json_object *list, const struct store_task *t)
{
	const struct store_agent	*a;
	struct json_object		*o;

	for (int i = 0; i < t->progress.nagents; i++) {
		a = &t->progress.agents[i];
		o = json_object_new_object();
		pg_json_str(o, "task_id", t->id);
		json_object_object_add(o, "idx", json_object_new_int(a->index));
		pg_json_str(o, "question", a->question);
		pg_json_str(o, "status", a->status ? a->status : "pending");
		pg_json_str(o, "step", a->step);
		pg_json_str(o, "error", a->error);
		pg_json_str(o, "answer", a->answer);
		json_object_object_add(o, "elapsed_ms", a->elapsed_ms >= 0 ?
		    json_object_new_int64(a->elapsed_ms) : NULL);
		json_object_array_add(list, o);
	}
}

/* A draft's fields (none but its number 0 before the first). */
static void
pg_put_draft(struct json_object *o, const struct store_draft *d)
{
	json_object_object_add(o, "draft_n", json_object_new_int(d->n));
	if (d->n == 0)
		return;
	json_object_object_add(o, "draft_answers",
	    json_object_new_int(d->answers));
	json_object_object_add(o, "draft_of", json_object_new_int(d->of));
	json_object_object_add(o, "draft_made_ms",
	    json_object_new_int64(d->made_ms));
	pg_json_str(o, "draft_text", d->text);
}

/* The usage's columns (null: none known). */
static void
pg_put_usage(struct json_object *o, const struct store_task *t)
{
	const char	*k[] = { "prompt_tokens", "completion_tokens",
	    "total_tokens", "llm_calls", "retries", "cost_micro_usd",
	    "hedged_calls", "hedges_won" };
	const uint64_t	 v[] = { t->usage.prompt_tokens,
	    t->usage.completion_tokens, t->usage.total_tokens,
	    t->usage.llm_calls, t->usage.retries, t->usage.cost_micro_usd,
	    t->usage.hedged_calls, t->usage.hedges_won };

	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
		json_object_object_add(o, k[i], t->has_usage ?
		    json_object_new_int64((int64_t)v[i]) : NULL);
}

/* Columns of a result or an agent, by the names taskresult.h gives. */
static struct json_object *
pg_put_columns(const char *id, const void *base,
    const struct tr_column *cols, int n)
{
	struct json_object	*o = json_object_new_object();

	pg_json_str(o, "task_id", id);
	for (int k = 0; k < n; k++) {
		if (cols[k].type == TRC_TEXT)
			pg_json_str(o, cols[k].name,
			    taskresult_col_text(base, &cols[k]));
		else if (cols[k].type == TRC_REAL)
			json_object_object_add(o, cols[k].name,
			    json_object_new_double(taskresult_col_real(base,
			    &cols[k])));
		else
			json_object_object_add(o, cols[k].name,
			    json_object_new_int64(taskresult_col_int(base,
			    &cols[k])));
	}
	return o;
}

/* A result as rows for jsonb_to_recordset: its own, its agents', its
 * lists'. */
static void
pg_put_result(struct json_object *res[3], const char *id,
    const struct task_result *r)
{
	struct json_object	*o;
	struct tr_item		*items;
	int			 n;

	json_object_array_add(res[0], pg_put_columns(id, r,
	    taskresult_columns, taskresult_ncolumns));
	for (int i = 0; i < r->nagents; i++)
		json_object_array_add(res[1], pg_put_columns(id, &r->agents[i],
		    taskresult_agent_columns, taskresult_nagent_columns));
	n = taskresult_items(r, &items);
	for (int i = 0; i < n; i++) {
		o = json_object_new_object();
		pg_json_str(o, "task_id", id);
		pg_json_str(o, "list", items[i].list);
		json_object_object_add(o, "owner",
		    json_object_new_int(items[i].owner));
		json_object_object_add(o, "n", json_object_new_int(items[i].n));
		json_object_object_add(o, "a",
		    json_object_new_int64(items[i].a));
		json_object_object_add(o, "b",
		    json_object_new_int64(items[i].b));
		json_object_object_add(o, "c",
		    json_object_new_int64(items[i].c));
		json_object_object_add(o, "d",
		    json_object_new_int64(items[i].d));
		json_object_object_add(o, "x",
		    json_object_new_double(items[i].x));
		pg_json_str(o, "s1", items[i].s1);
		pg_json_str(o, "s2", items[i].s2);
		pg_json_str(o, "s3", items[i].s3);
		json_object_array_add(res[2], o);
	}
	free(items);
}

static char *
pg_json_release(struct json_object *a)
{
	char	*s;

	s = xstrdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
	json_object_put(a);
	return s;
}

/*
 * The rows as one JSON array, the last of each id only, and their agents
 * as another: the parameters of one statement (PostgreSQL reads them with
 * jsonb_to_recordset; heavyd never reads them back).
 */
static char *
pg_put_json(const struct store_task *t, int n, char **agents,
    char *results[3])
{
	struct json_object	*a = json_object_new_array(), *o;
	struct json_object	*ag = json_object_new_array();
	struct json_object	*res[3] = { json_object_new_array(),
	    json_object_new_array(), json_object_new_array() };
	bool			 later;

	for (int i = 0; i < n; i++) {
		later = false;
		for (int j = i + 1; j < n && !later; j++)
			later = strcmp(t[i].id, t[j].id) == 0;
		if (later)
			continue;
		o = json_object_new_object();
		pg_json_str(o, "id", t[i].id);
		pg_json_str(o, "owner", t[i].owner);
		pg_json_str(o, "tool", t[i].tool ? t[i].tool :
		    "heavy_orchestrate");
		pg_json_str(o, "status", t[i].status);
		pg_json_str(o, "status_message", t[i].status_message);
		pg_json_str(o, "params", t[i].params ? t[i].params : "{}");
		pg_json_str(o, "query", t[i].query);
		json_object_object_add(o, "num_agents",
		    json_object_new_int(t[i].num_agents));
		pg_json_str(o, "phase", t[i].progress.phase);
		json_object_object_add(o, "progress_ms",
		    json_object_new_int64(t[i].progress.elapsed_ms));
		pg_put_draft(o, &t[i].progress.draft);
		pg_put_usage(o, &t[i]);
		pg_json_str(o, "cache_key", t[i].cache_key);
		json_object_object_add(o, "created_ms",
		    json_object_new_int64(t[i].created_ms));
		json_object_object_add(o, "updated_ms",
		    json_object_new_int64(t[i].updated_ms));
		json_object_object_add(o, "ttl_ms",
		    json_object_new_int64(t[i].ttl_ms));
		json_object_object_add(o, "expires_ms",
		    json_object_new_int64(t[i].created_ms + t[i].ttl_ms));
		json_object_object_add(o, "pid",
		    json_object_new_int((int)getpid()));
		pg_json_str(o, "proc_start", store_self_start());
		pg_json_str(o, "node_id", pg_node);
		json_object_object_add(o, "lease_epoch",
		    json_object_new_int64(pg_epoch(t[i].id)));
		pg_put_args(o, &t[i].args);
		json_object_array_add(a, o);
		pg_put_agents(ag, &t[i]);
		if (t[i].result != NULL)
			pg_put_result(res, t[i].id, t[i].result);
	}
	*agents = pg_json_release(ag);
	for (int k = 0; k < 3; k++)
		results[k] = pg_json_release(res[k]);
	return pg_json_release(a);
}

/* "name type, ..." of columns, for jsonb_to_recordset; or "r.name, ...". */
static void
pg_column_list(struct buf *b, const struct tr_column *cols, int n,
    bool types)
{
	for (int k = 0; k < n; k++) {
		buf_printf(b, ", %s%s", types ? "" : "r.", cols[k].name);
		if (types)
			buf_addstr(b, cols[k].type == TRC_TEXT ? " text" :
			    cols[k].type == TRC_REAL ? " double precision" :
			    " bigint");
	}
}

/* The CTE that writes rows of a result table out of parameter p, for the
 * tasks written (a write sent again changes nothing). */
static void
pg_put_table(struct buf *b, const char *cte, const char *table, int p,
    const struct tr_column *cols, int n)
{
	buf_printf(b, ", %s AS (INSERT INTO %s (task_id", cte, table);
	for (int k = 0; k < n; k++)
		buf_printf(b, ", %s", cols[k].name);
	buf_addstr(b, ") SELECT r.task_id");
	pg_column_list(b, cols, n, false);
	buf_printf(b, " FROM jsonb_to_recordset($%d) AS r(task_id text", p);
	pg_column_list(b, cols, n, true);
	buf_addstr(b, ") WHERE r.task_id IN (SELECT id FROM up) ON CONFLICT "
	    "DO NOTHING)");
}

#define PG_USAGE "prompt_tokens, completion_tokens, total_tokens, " \
	"llm_calls, retries, cost_micro_usd, hedged_calls, hedges_won"
#define PG_USAGE_TYPES "prompt_tokens bigint, completion_tokens bigint, " \
	"total_tokens bigint, llm_calls bigint, retries bigint, " \
	"cost_micro_usd bigint, hedged_calls bigint, hedges_won bigint"

/*
 * The put's statement, made once: fenced, only the node (and the process)
 * that inserted the row, at its epoch, writes it again; each write renews
 * the lease.  Then the agents of the rows written, and of no other, and
 * their results' rows.
 */
static const char *
pg_put_sql(void)
{
	static char		*sql;
	static const struct tr_column items[] = {
		{ "list", TRC_TEXT, 0 }, { "owner", TRC_INT, 0 },
		{ "n", TRC_INT, 0 }, { "a", TRC_I64, 0 }, { "b", TRC_I64, 0 },
		{ "c", TRC_I64, 0 }, { "d", TRC_I64, 0 },
		{ "x", TRC_REAL, 0 }, { "s1", TRC_TEXT, 0 },
		{ "s2", TRC_TEXT, 0 }, { "s3", TRC_TEXT, 0 },
	};
	struct buf		 b;

	if (sql != NULL)
		return sql;
	buf_init(&b, 0);
	buf_addstr(&b, "WITH up AS (INSERT INTO tasks (id, owner, tool, status, "
	    "status_message, params, query, num_agents, phase, progress_ms, "
	    "draft_n, draft_answers, draft_of, draft_made_ms, draft_text, "
	    PG_USAGE ", cache_key, created_ms, updated_ms, ttl_ms, "
	    "expires_ms, pid, proc_start, node_id, lease_epoch, "
	    "lease_expires_at, timeout_s, model, strategy, fallbacks, "
	    "max_total_tokens, max_cost_usd, min_agents, straggler_grace_s, "
	    "hedge_after_ms, ask_cost, incremental_interval_s, resume, "
	    "deadline_ms) SELECT id, owner, tool, status, status_message, "
	    "params::jsonb, query, num_agents, phase, progress_ms, draft_n, "
	    "draft_answers, draft_of, draft_made_ms, draft_text, "
	    PG_USAGE ", cache_key, created_ms, updated_ms, "
	    "ttl_ms, expires_ms, pid, proc_start, node_id, lease_epoch, "
	    "now() + $2::bigint * interval '1 millisecond', timeout_s, model, "
	    "strategy, fallbacks, max_total_tokens, max_cost_usd, min_agents, "
	    "straggler_grace_s, hedge_after_ms, ask_cost, "
	    "incremental_interval_s, resume, deadline_ms FROM "
	    "jsonb_to_recordset($1) AS r(id text, owner text, tool text, "
	    "status text, status_message text, params text, query text, "
	    "num_agents integer, phase text, progress_ms bigint, draft_n "
	    "integer, draft_answers integer, draft_of integer, draft_made_ms "
	    "bigint, draft_text text, " PG_USAGE_TYPES ", cache_key text, "
	    "created_ms bigint, updated_ms bigint, ttl_ms bigint, expires_ms "
	    "bigint, pid integer, proc_start text, node_id text, lease_epoch "
	    "bigint, timeout_s double precision, model text, strategy text, "
	    "fallbacks text[], max_total_tokens bigint, max_cost_usd double "
	    "precision, min_agents integer, straggler_grace_s double "
	    "precision, hedge_after_ms integer, ask_cost boolean, "
	    "incremental_interval_s double precision, resume boolean, "
	    "deadline_ms bigint) "
	    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
	    "status_message = excluded.status_message, phase = "
	    "excluded.phase, progress_ms = excluded.progress_ms, draft_n = "
	    "excluded.draft_n, draft_answers = excluded.draft_answers, "
	    "draft_of = excluded.draft_of, draft_made_ms = "
	    "excluded.draft_made_ms, draft_text = excluded.draft_text, "
	    "prompt_tokens = excluded.prompt_tokens, completion_tokens = "
	    "excluded.completion_tokens, total_tokens = excluded.total_tokens, "
	    "llm_calls = excluded.llm_calls, retries = excluded.retries, "
	    "cost_micro_usd = excluded.cost_micro_usd, hedged_calls = "
	    "excluded.hedged_calls, hedges_won = excluded.hedges_won, "
	    "cache_key = "
	    "excluded.cache_key, updated_ms = excluded.updated_ms, "
	    "lease_expires_at = excluded.lease_expires_at "
	    "WHERE tasks.node_id = excluded.node_id AND tasks.lease_epoch = "
	    "excluded.lease_epoch AND tasks.pid = excluded.pid AND "
	    "tasks.proc_start = excluded.proc_start AND (tasks.status = "
	    "'working' OR (tasks.status = excluded.status AND "
	    "tasks.updated_ms = excluded.updated_ms)) RETURNING id, status), "
	    /* the agents of the rows written, and of no other */
	    "ag AS (INSERT INTO task_agents (task_id, idx, question, status, "
	    "step, error, answer, elapsed_ms) SELECT a.task_id, a.idx, "
	    "a.question, a.status, a.step, a.error, a.answer, a.elapsed_ms "
	    "FROM jsonb_to_recordset($3) AS a(task_id text, idx integer, "
	    "question text, status text, step text, error text, answer text, "
	    "elapsed_ms bigint) WHERE a.task_id IN (SELECT id FROM up) "
	    "ON CONFLICT (task_id, idx) DO UPDATE SET question = "
	    "excluded.question, status = excluded.status, step = "
	    "excluded.step, error = excluded.error, answer = excluded.answer, "
	    "elapsed_ms = excluded.elapsed_ms)");
	pg_put_table(&b, "rs", "task_results", 4, taskresult_columns,
	    taskresult_ncolumns);
	pg_put_table(&b, "ra", "task_result_agents", 5,
	    taskresult_agent_columns, taskresult_nagent_columns);
	pg_put_table(&b, "ri", "task_result_items", 6, items,
	    (int)(sizeof items / sizeof items[0]));
	/* every node hears of an end (at commit): tasks/result wakes */
	buf_addstr(&b, " SELECT up.id FROM up LEFT JOIN LATERAL "
	    "(SELECT pg_notify('" PG_CHANNEL "', 'end ' || up.id) WHERE "
	    "up.status <> 'working') n ON true");
	return sql = buf_release(&b);
}

/*
 * Rows of this process in one statement (so one transaction): each
 * inserted, or updated while its stored row runs in this process.  The
 * same write again (pgconn resends one whose answer was lost) finds its
 * own values and counts as written, not as an ended row.
 */
static void
pg_put(const struct store_task *t, int n, store_done_cb cb, void *arg)
{
	struct pg_op	*op;
	const char	*p[6];
	char		*rows, *agents, *results[3], lease[16];

	if (n == 0) {
		cb(arg, STORE_TERMINAL);
		return;
	}
	op = pg_op_new(arg);
	op->done = cb;
	op->ended = xcalloc((size_t)n, sizeof *op->ended);
	for (int i = 0; i < n; i++)
		if (strcmp(t[i].status, "working") != 0)
			memcpy(op->ended[op->nended++], t[i].id, 33);
	p[0] = rows = pg_put_json(t, n, &agents, results);
	pg_lease_track(t, n);
	snprintf(lease, sizeof lease, "%d", pg_lease_ms);
	p[1] = lease;
	p[2] = agents;
	for (int k = 0; k < 3; k++)
		p[3 + k] = results[k];
	pg_send(pg_put_sql(), 6, p, pg_put_answer, op);
	free(rows);
	free(agents);
	for (int k = 0; k < 3; k++)
		free(results[k]);
}

/* ---- Reads ---- */

/* Text columns from i on into base (a result or an agent). */
static void
pg_columns(const PGresult *res, int row, int i, void *base,
    const struct tr_column *cols, int n)
{
	const char	*v;

	for (int k = 0; k < n; k++) {
		v = PQgetisnull(res, row, i + k) ? NULL :
		    PQgetvalue(res, row, i + k);
		if (cols[k].type == TRC_TEXT)
			taskresult_col_set_text(base, &cols[k], v);
		else if (cols[k].type == TRC_REAL)
			taskresult_col_set_real(base, &cols[k],
			    v ? strtod(v, NULL) : 0);
		else
			taskresult_col_set_int(base, &cols[k],
			    v ? strtoll(v, NULL, 10) : 0);
	}
}

/* "SELECT part, k1, k2, k3, the columns as text (padded to width) FROM
 * table WHERE task_id = $1". */
static void
pg_result_part(struct buf *b, int part, const char *keys, const char *table,
    const struct tr_column *cols, int n, int width)
{
	buf_printf(b, "%sSELECT %d, %s", part ? " UNION ALL " : "", part,
	    keys);
	for (int k = 0; k < width; k++)
		buf_printf(b, k < n ? ", %s::text" : ", NULL", k < n ?
		    cols[k].name : "");
	buf_printf(b, " FROM %s WHERE task_id = $1", table);
}

static const struct tr_column pg_item_columns[] = {
	{ "a", TRC_I64, 0 }, { "b", TRC_I64, 0 }, { "c", TRC_I64, 0 },
	{ "d", TRC_I64, 0 }, { "x", TRC_REAL, 0 }, { "s1", TRC_TEXT, 0 },
	{ "s2", TRC_TEXT, 0 }, { "s3", TRC_TEXT, 0 },
};
#define PG_NITEM_COLUMNS \
	((int)(sizeof pg_item_columns / sizeof pg_item_columns[0]))

/* A task's result in one query: its row (part 0), its agents' (1) and
 * its lists' (2), in order; made once. */
static const char *
pg_result_sql(void)
{
	static char	*sql;
	struct buf	 b;
	int		 w = taskresult_ncolumns;

	if (sql != NULL)
		return sql;
	buf_init(&b, 0);
	pg_result_part(&b, 0, "0, '', 0", "task_results", taskresult_columns,
	    taskresult_ncolumns, w);
	pg_result_part(&b, 1, "idx, '', 0", "task_result_agents",
	    taskresult_agent_columns, taskresult_nagent_columns, w);
	pg_result_part(&b, 2, "owner, list, n", "task_result_items",
	    pg_item_columns, PG_NITEM_COLUMNS, w);
	buf_addstr(&b, " ORDER BY 1, 3, 2, 4");
	return sql = buf_release(&b);
}

/* One row of pg_result_sql into the result. */
static void
pg_result_row(const PGresult *res, int i, struct task_result **r)
{
	struct tr_item	it = { 0 };
	int		part = atoi(PQgetvalue(res, i, 0));

	if (part == 0) {
		*r = taskresult_new(TR_ORCHESTRATION);
		pg_columns(res, i, 4, *r, taskresult_columns,
		    taskresult_ncolumns);
	} else if (*r == NULL)
		return;
	else if (part == 1 && (*r)->nagents < HEAVY_MAX_AGENTS)
		pg_columns(res, i, 4, &(*r)->agents[(*r)->nagents++],
		    taskresult_agent_columns, taskresult_nagent_columns);
	else if (part == 2) {
		it.list = PQgetvalue(res, i, 2);
		it.owner = atoi(PQgetvalue(res, i, 1));
		it.n = atoi(PQgetvalue(res, i, 3));
		it.a = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		it.b = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		it.c = strtoll(PQgetvalue(res, i, 6), NULL, 10);
		it.d = strtoll(PQgetvalue(res, i, 7), NULL, 10);
		it.x = strtod(PQgetvalue(res, i, 8), NULL);
		it.s1 = PQgetisnull(res, i, 9) ? NULL : PQgetvalue(res, i, 9);
		it.s2 = PQgetisnull(res, i, 10) ? NULL : PQgetvalue(res, i, 10);
		it.s3 = PQgetisnull(res, i, 11) ? NULL : PQgetvalue(res, i, 11);
		taskresult_item_add(*r, &it);
	}
}

/* The row is answered with its result. */
static void
pg_result_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op	*op = arg;

	if (error != NULL) {
		pg_failed(error);
		op->row(op->arg, STORE_ERROR, NULL);
	} else {
		for (int i = 0; i < PQntuples(res); i++)
			pg_result_row(res, i, &op->found->result);
		op->row(op->arg, STORE_OK, op->found);
	}
	pg_rows_free(op->found, op->nfound);
	free(op);
}

/* One row or none, expired rows as none, orphans settled first; an ended
 * row is answered once its result is read too. */
static void
pg_row_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op		*op = arg;
	struct store_task	*t;
	const char		*p[1];
	int			 n;

	if (error != NULL) {
		pg_failed(error);
		op->row(op->arg, STORE_ERROR, NULL);
	} else if (PQntuples(res) == 0)
		op->row(op->arg, STORE_NOT_FOUND, NULL);
	else {
		t = pg_rows(res, 1, &n);
		pg_settle_orphan(t);
		if (pg_expired(t, wall_ms()))
			op->row(op->arg, STORE_EXPIRED, NULL);
		else if (strcmp(t->status, "working") != 0) {
			op->found = t;
			op->nfound = n;
			p[0] = t->id;
			pg_send(pg_result_sql(), 1, p, pg_result_answer, op);
			return;
		} else
			op->row(op->arg, STORE_OK, t);
		pg_rows_free(t, n);
	}
	free(op);
}

static void
pg_get(const char *id, const char *owner, store_row_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	const char	*p[] = { id, owner };

	op->row = cb;
	pg_send(PG_SELECT("id = $1 AND ($2::text IS NULL OR owner = $2)",
	    "id"), 2, p, pg_row_answer, op);
}

static void
pg_cache_find(const char *owner, const char *key, int64_t max_age_ms,
    store_row_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	int64_t		 now = wall_ms();
	char		 since[32], at[32];
	const char	*p[] = { key, owner, since, at };

	op->row = cb;
	snprintf(since, sizeof since, "%lld", (long long)(now - max_age_ms));
	snprintf(at, sizeof at, "%lld", (long long)now);
	pg_send(PG_SELECT("cache_key = $1 AND owner = $2 AND status = "
	    "'completed' AND created_ms >= $3 AND expires_ms >= $4 ORDER BY "
	    "created_ms DESC LIMIT 1", "created_ms DESC"), 4, p,
	    pg_row_answer, op);
}

/* A page: limit + 1 rows were asked for; the extra one makes a cursor. */
static void
pg_list_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op		*op = arg;
	struct store_task	*rows;
	char			*next = NULL;
	int			 n;

	if (error != NULL) {
		pg_failed(error);
		op->rows(op->arg, STORE_ERROR, NULL, 0, 0, NULL);
		free(op);
		return;
	}
	rows = pg_rows(res, op->limit + 1, &n);
	if (n > op->limit) {
		store_task_clear(&rows[--n]);
		next = xasprintf("%lld.%s", (long long)rows[n - 1].created_ms,
		    rows[n - 1].id);
	}
	for (int i = 0; i < n; i++)
		pg_settle_orphan(&rows[i]);
	op->rows(op->arg, STORE_OK, rows, n, n, next);
	free(next);
	pg_rows_free(rows, n);
	free(op);
}

/* The cursor is the last row's "created_ms.id", as with SQLite; ids
 * compare byte by byte (COLLATE "C"), whatever the database's locale. */
static void
pg_list(const char *owner, const char *cursor, int limit, store_rows_cb cb,
    void *arg)
{
	struct pg_op	*op;
	long long	 c_ms = INT64_MAX;
	char		 c_id[33] = "~", ms[32], lim[16], now[32];
	const char	*p[] = { owner, ms, c_id, lim, now };

	if (cursor != NULL && (sscanf(cursor, "%lld.%32[0-9a-f]", &c_ms,
	    c_id) != 2 || strlen(c_id) != 32)) {
		cb(arg, STORE_BAD_CURSOR, NULL, 0, 0, NULL);
		return;
	}
	op = pg_op_new(arg);
	op->rows = cb;
	op->limit = limit;
	snprintf(ms, sizeof ms, "%lld", c_ms);
	snprintf(lim, sizeof lim, "%d", limit + 1);
	snprintf(now, sizeof now, "%lld", (long long)wall_ms());
	pg_send(PG_SELECT("owner = $1 AND (created_ms < $2 OR (created_ms = $2 "
	    "AND id COLLATE \"C\" < $3)) AND (status = 'working' OR "
	    "expires_ms >= $5) ORDER BY created_ms DESC, id COLLATE \"C\" "
	    "DESC LIMIT $4", "created_ms DESC, id COLLATE \"C\" DESC"), 5, p,
	    pg_list_answer, op);
}

static void
pg_active_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op		*op = arg;
	struct store_task	*rows;
	int			 n, kept = 0;

	if (error != NULL) {
		pg_failed(error);
		op->rows(op->arg, STORE_ERROR, NULL, 0, 0, NULL);
		free(op);
		return;
	}
	rows = pg_rows(res, INT32_MAX, &n);
	for (int i = 0; i < n; i++) {
		pg_settle_orphan(&rows[i]);
		if (strcmp(rows[i].status, "working") != 0)
			store_task_clear(&rows[i]);	/* interrupted */
		else
			rows[kept++] = rows[i];
	}
	op->rows(op->arg, STORE_OK, rows, kept, kept, NULL);
	pg_rows_free(rows, kept);
	free(op);
}

static void
pg_active(const char *owner, store_rows_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	const char	*p[] = { owner };

	op->rows = cb;
	pg_send(PG_SELECT("owner = $1 AND status = 'working'",
	    "created_ms, id COLLATE \"C\""), 1, p, pg_active_answer, op);
}

static void
pg_ids_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op		*op = arg;
	struct store_task	*rows;
	int			 n, total;

	if (error != NULL) {
		pg_failed(error);
		op->rows(op->arg, STORE_ERROR, NULL, 0, 0, NULL);
		free(op);
		return;
	}
	n = PQntuples(res);
	total = n > 0 ? atoi(PQgetvalue(res, 0, 1)) : 0;
	rows = xcalloc((size_t)n + 1, sizeof *rows);
	for (int i = 0; i < n; i++)
		snprintf(rows[i].id, sizeof rows[i].id, "%s",
		    PQgetvalue(res, i, 0));
	op->rows(op->arg, STORE_OK, rows, n, total, NULL);
	free(rows);
	free(op);
}

/* The owner's ids that start with prefix (any case): running first, then
 * the newest; at most limit, all of them counted. */
static void
pg_ids(const char *owner, const char *prefix, int limit, store_rows_cb cb,
    void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	char		*low = xstrdup(prefix ? prefix : ""), lim[16], now[32];
	const char	*p[] = { owner, low, now, lim };

	for (char *c = low; *c != '\0'; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
	op->rows = cb;
	snprintf(lim, sizeof lim, "%d", limit);
	snprintf(now, sizeof now, "%lld", (long long)wall_ms());
	pg_send("SELECT id, count(*) OVER () FROM tasks WHERE owner = $1 AND "
	    "left(id, length($2)) = $2 AND (status = 'working' OR "
	    "expires_ms >= $3) ORDER BY status = 'working' DESC, "
	    "created_ms DESC LIMIT $4", 4, p, pg_ids_answer, op);
	free(low);
}

static void
pg_settle_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op		*op = arg;
	struct store_task	*rows;
	int			 n, settled = 0;

	if (error != NULL) {
		pg_failed(error);
		op->done(op->arg, STORE_ERROR);
		free(op);
		return;
	}
	rows = pg_rows(res, INT32_MAX, &n);
	for (int i = 0; i < n; i++) {
		settled += rows[i].orphaned &&
		    !store_resumable(&rows[i], wall_ms());
		pg_settle_orphan(&rows[i]);
	}
	pg_rows_free(rows, n);
	op->done(op->arg, settled);
	free(op);
}

/* Running rows of this host whose process is gone: failed, with the
 * reason.  rc: how many. */
static void
pg_settle(store_done_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);

	op->done = cb;
	pg_send(PG_SELECT("status = 'working'", "id"), 0, NULL,
	    pg_settle_answer, op);
}

static void
pg_count_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op	*op = arg;

	if (error != NULL)
		pg_failed(error);
	op->done(op->arg, error != NULL ? STORE_ERROR :
	    atoi(PQgetvalue(res, 0, 0)));
	free(op);
}

/* Expired rows, then the oldest ended ones beyond max_rows, in one
 * statement (the two sets are apart).  rc: the rows deleted. */
static void
pg_sweep(int max_rows, store_done_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	char		 now[32], max[16];
	const char	*p[] = { now, max };

	op->done = cb;
	snprintf(now, sizeof now, "%lld", (long long)wall_ms());
	snprintf(max, sizeof max, "%d", max_rows);
	pg_send("WITH expired AS (DELETE FROM tasks WHERE expires_ms < $1 AND "
	    "status <> 'working' RETURNING id), beyond AS (DELETE FROM tasks "
	    "WHERE id IN (SELECT id FROM tasks WHERE status <> 'working' AND "
	    "expires_ms >= $1 ORDER BY created_ms DESC OFFSET $2) RETURNING "
	    "id) SELECT (SELECT count(*) FROM expired) + (SELECT count(*) "
	    "FROM beyond)", 2, p, pg_count_answer, op);
}

/* ---- Quota counters ---- */

static void
pg_total_answer(void *arg, PGresult *res, const char *error)
{
	struct pg_op	*op = arg;

	if (error != NULL)
		pg_failed(error);
	if (error != NULL || PQntuples(res) != 1)
		op->total(op->arg, STORE_ERROR, 0);
	else
		op->total(op->arg, STORE_OK, strtoll(PQgetvalue(res, 0, 0),
		    NULL, 10));
	free(op);
}

/*
 * The source's charge becomes amount unless it was more (so the same
 * charge resent counts once), and the window's total with it: the
 * others' charges as the statement found them, plus this one as written
 * (a statement does not see its own CTE's rows).
 */
static void
pg_quota_charge(const char *identity, const char *kind, int64_t window,
    const char *source, int64_t amount, store_total_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	char		 w[32], a[32];
	const char	*p[] = { identity, kind, w, source, a };

	op->total = cb;
	snprintf(w, sizeof w, "%lld", (long long)window);
	snprintf(a, sizeof a, "%lld", (long long)(amount < 0 ? 0 : amount));
	pg_send("WITH up AS (INSERT INTO quota_charges (identity, kind, "
	    "window_start, source, amount) VALUES ($1, $2, $3, $4, $5) "
	    "ON CONFLICT (identity, kind, window_start, source) DO UPDATE SET "
	    "amount = greatest(quota_charges.amount, excluded.amount) "
	    "RETURNING amount) SELECT (SELECT amount FROM up) + coalesce(("
	    "SELECT sum(amount) FROM quota_charges WHERE identity = $1 AND "
	    "kind = $2 AND window_start = $3 AND source <> $4), 0)", 5, p,
	    pg_total_answer, op);
}

static void
pg_quota_total(const char *identity, const char *kind, int64_t window,
    store_total_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	char		 w[32];
	const char	*p[] = { identity, kind, w };

	op->total = cb;
	snprintf(w, sizeof w, "%lld", (long long)window);
	pg_send("SELECT coalesce(sum(amount), 0) FROM quota_charges WHERE "
	    "identity = $1 AND kind = $2 AND window_start = $3", 3, p,
	    pg_total_answer, op);
}

static void
pg_quota_sweep(int64_t before, store_done_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	char		 b[32];
	const char	*p[] = { b };

	op->done = cb;
	snprintf(b, sizeof b, "%lld", (long long)before);
	pg_send("WITH gone AS (DELETE FROM quota_charges WHERE window_start "
	    "< $1 RETURNING 1) SELECT count(*) FROM gone", 1, p,
	    pg_count_answer, op);
}

/* A cancel for a task another node runs: recorded in its row (for a node
 * that missed the notification: pg_sweep) and that node notified. */
static void
pg_cancel(const char *id, const char *owner, store_done_cb cb, void *arg)
{
	struct pg_op	*op = pg_op_new(arg);
	char		 now[32];
	const char	*p[] = { id, owner, now };

	op->done = cb;
	snprintf(now, sizeof now, "%lld", (long long)wall_ms());
	pg_send("WITH c AS (UPDATE tasks SET cancel_requested_ms = "
	    "coalesce(cancel_requested_ms, $3) WHERE id = $1 AND owner = $2 "
	    "AND status = 'working' RETURNING id) SELECT c.id, pg_notify('"
	    PG_CHANNEL "', 'cancel ' || c.id) FROM c", 3, p, pg_put_answer,
	    op);
}

const struct store_backend store_pg = {
	.name = "postgresql",
	.serves = pg_serves,
	.open = pg_open,
	.close = pg_close,
	.error = pg_error,
	.put = pg_put,
	.get = pg_get,
	.list = pg_list,
	.active = pg_active,
	.ids = pg_ids,
	.cache_find = pg_cache_find,
	.settle = pg_settle,
	.sweep = pg_sweep,
	.durability = pg_durability,
	.quota_charge = pg_quota_charge,
	.quota_total = pg_quota_total,
	.quota_sweep = pg_quota_sweep,
	.ready = pg_ready,
	.watch = pg_watch,
	.cancel = pg_cancel,
};

/*
 * The PostgreSQL task store backend (supervisor/store_pg.c) against a
 * throw-away cluster each test starts and removes: the SQLite store's
 * promises (owners, pages, expiry, terminal rows, the row cap, the cache,
 * interrupted rows) answered on later turns of the loop, a write resent
 * after a lost answer counted once, writes held while the server is
 * away, the schema's version checked at open, and the quota counters.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/metrics.h"
#include "../../supervisor/pgconn.h"
#include "pgtest.h"
#include "store_sync.h"
#include "result_fill.h"

#define HANG_MS		PGTEST_HANG_MS

static struct pgtest	 pg;
static struct event	*tick;
static struct pgconn	*raw;	/* the test's own connection */


#define WAIT_FOR(cond, what)	PGTEST_WAIT(ev_base, cond, what)

static int
pg_open_url(const char *url, char *err, size_t errlen)
{
	struct store_options	o = { .url = url, .retry_max_ms = 200 };

	store_self_init();
	return store_pg.open(&o, err, errlen);
}

static void
setup(void)
{
	struct pgconn_config	cfg = { 0 };
	char			err[512];

	ev_base = event_base_new();
	tick = pgtest_tick(ev_base);
	pgtest_init(&pg);
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), 0, "%s", err);
	cfg.url = pg.url;
	raw = pgconn_new(ev_base, &cfg);
}

static void
teardown(void)
{
	if (raw != NULL)
		pgconn_free(raw);
	store_pg.close();
	pgtest_destroy(&pg);
	if (tick != NULL)
		event_free(tick);
	if (ev_base != NULL)
		event_base_free(ev_base);
	ev_base = NULL;
}

TestSuite(store_pg, .init = setup, .fini = teardown, .timeout = 300);

/* ---- The calls, waited for ---- */

static int
put_rows(const struct store_task *t, int n)
{
	struct sync_answer	a = { 0 };

	store_pg.put(t, n, sync_done_cb, &a);
	WAIT_FOR(a.done, "put");
	return a.rc;
}

static int
get(const char *id, const char *owner, struct store_task *t)
{
	struct sync_answer	a = { 0 };

	store_pg.get(id, owner, sync_row_cb, &a);
	WAIT_FOR(a.done, "get");
	*t = a.row;
	return a.rc;
}

static int
list(const char *owner, const char *cursor, int limit,
    struct sync_answer *a)
{
	memset(a, 0, sizeof *a);
	store_pg.list(owner, cursor, limit, sync_rows_cb, a);
	WAIT_FOR(a->done, "list");
	return a->rc;
}

static void
answer_clear(struct sync_answer *a)
{
	for (int i = 0; i < a->n; i++)
		store_task_clear(&a->rows[i]);
	free(a->rows);
	free(a->next);
	memset(a, 0, sizeof *a);
}

static int
done_call(void (*fn)(store_done_cb, void *))
{
	struct sync_answer	a = { 0 };

	fn(sync_done_cb, &a);
	WAIT_FOR(a.done, "the call");
	return a.rc;
}

static int
sweep(int max_rows)
{
	struct sync_answer	a = { 0 };

	store_pg.sweep(max_rows, sync_done_cb, &a);
	WAIT_FOR(a.done, "sweep");
	return a.rc;
}

/* SQL of the test's own, for what heavyd never writes itself. */
static void
raw_cb(void *arg, PGresult *res, const char *error)
{
	int	*done = arg;

	(void)res;
	cr_assert_null(error, "%s", error);
	*done = 1;
}

static void
sql(const char *text)
{
	int	done = 0;

	cr_assert_eq(pgconn_exec(raw, text, raw_cb, &done, NULL, 0), 0);
	WAIT_FOR(done, text);
}

struct raw_int {
	int		done;
	long long	v;
};

static void
raw_int_cb(void *arg, PGresult *res, const char *error)
{
	struct raw_int	*r = arg;

	cr_assert_null(error, "%s", error);
	r->v = PQntuples(res) > 0 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) :
	    -1;
	r->done = 1;
}

/* The first column of the first row of a query of the test's own. */
static long long
sql_int(const char *text)
{
	struct raw_int	r = { 0, -1 };

	cr_assert_eq(pgconn_exec(raw, text, raw_int_cb, &r, NULL, 0), 0);
	WAIT_FOR(r.done, text);
	return r.v;
}

/* Two agents of a task in its agents phase: one done, one under way. */
static struct store_agent	two_agents[] = {
	{ .index = 1, .question = (char *)"q1", .status = (char *)"ok",
	    .step = (char *)"search_web", .answer = (char *)"a1",
	    .elapsed_ms = 1200 },
	{ .index = 2, .question = (char *)"q2", .status = (char *)"running",
	    .step = (char *)"read_url", .elapsed_ms = -1 },
};
static const struct store_progress	agents_phase = { .phase =
    (char *)"agents", .elapsed_ms = 1500, .nagents = 2,
    .agents = two_agents };

static void
assert_agent(const struct store_agent *g, const struct store_agent *w)
{
	cr_assert_eq(g->index, w->index);
	cr_assert_eq(g->elapsed_ms, w->elapsed_ms, "agent %d", w->index);
	cr_assert_str_eq(g->status, w->status);
	cr_assert_str_eq(g->question, w->question);
	cr_assert_str_eq(g->step, w->step);
	cr_assert((g->answer == NULL) == (w->answer == NULL));
	if (w->answer != NULL)
		cr_assert_str_eq(g->answer, w->answer);
	cr_assert_null(g->error);
}

static void
row(struct store_task *t, const char *id, const char *owner,
    const char *status, int64_t created, int64_t ttl)
{
	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%.32s", id);
	t->owner = (char *)owner;
	t->status = (char *)status;
	t->params = (char *)"{\"query\":\"q\"}";
	t->created_ms = t->updated_ms = created;
	t->ttl_ms = ttl;
}

#define ID(n)	"000000000000000000000000000000" #n

Test(store_pg, put_get_owners_and_terminal_rows)
{
	struct store_task	t, got;
	int64_t			now = wall_ms();

	row(&t, ID(01), "alice", "working", now, 3600000);
	t.progress = agents_phase;
	t.progress.draft = (struct store_draft){ .n = 2, .answers = 1,
	    .of = 2, .made_ms = 900, .text = (char *)"draft two" };
	t.query = (char *)"what is heavy?";
	t.num_agents = 2;
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	cr_assert_eq(get(ID(01), "alice", &got), STORE_OK);
	cr_assert_str_eq(got.status, "working");
	cr_assert(got.ours && !got.orphaned);
	cr_assert_eq(got.created_ms, now);
	cr_assert_eq(got.ttl_ms, 3600000);
	cr_assert_str_eq(got.tool, "heavy_orchestrate");
	cr_assert_str_eq(got.query, "what is heavy?");
	cr_assert_eq(got.num_agents, 2);
	cr_assert_str_eq(got.progress.phase, "agents");
	cr_assert_eq(got.progress.elapsed_ms, 1500);
	cr_assert_eq(got.progress.nagents, 2);
	assert_agent(&got.progress.agents[0], &two_agents[0]);
	assert_agent(&got.progress.agents[1], &two_agents[1]);
	cr_assert_eq(got.progress.draft.n, 2);
	cr_assert_eq(got.progress.draft.answers, 1);
	cr_assert_eq(got.progress.draft.of, 2);
	cr_assert_eq(got.progress.draft.made_ms, 900);
	cr_assert_str_eq(got.progress.draft.text, "draft two");
	store_task_clear(&got);
	cr_assert_eq(get(ID(01), "mallory", &got), STORE_NOT_FOUND,
	    "another owner's row is not there");
	cr_assert_eq(get(ID(01), NULL, &got), STORE_OK, "any owner: ours");
	store_task_clear(&got);

	/* The end, then a late progress write: the end stays. */
	t.status = (char *)"completed";
	t.result = taskresult_text("the answer", false);
	t.updated_ms = now + 1;
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	cr_assert_eq(put_rows(&t, 1), STORE_OK, "the same write again is "
	    "written, not an ended row (a resent write)");
	t.status = (char *)"working";
	taskresult_free(t.result);
	t.result = NULL;
	t.updated_ms = now + 2;
	t.progress.nagents = 1;	/* nor are its agents written */
	two_agents[0].status = (char *)"failed";
	cr_assert_eq(put_rows(&t, 1), STORE_TERMINAL);
	two_agents[0].status = (char *)"ok";
	cr_assert_eq(get(ID(01), "alice", &got), STORE_OK);
	cr_assert_str_eq(got.status, "completed");
	cr_assert_not_null(got.result);
	cr_assert_str_eq(got.result->answer, "the answer");
	cr_assert_eq(got.progress.nagents, 2);
	assert_agent(&got.progress.agents[0], &two_agents[0]);
	store_task_clear(&got);
	/* A task's agents go with it. */
	cr_assert_eq(sql_int("SELECT count(*) FROM task_agents"), 2);
	sql("DELETE FROM tasks");
	cr_assert_eq(sql_int("SELECT count(*) FROM task_agents"), 0);
}

Test(store_pg, several_rows_in_one_transaction)
{
	struct store_task	t[3];
	struct store_task	got;
	int64_t			now = wall_ms();

	row(&t[0], ID(01), "o", "working", now, 60000);
	row(&t[1], ID(02), "o", "working", now, 60000);
	row(&t[2], ID(01), "o", "failed", now, 60000);	/* the last wins */
	t[2].updated_ms = now + 5;
	cr_assert_eq(put_rows(t, 3), STORE_OK);
	cr_assert_eq(get(ID(01), "o", &got), STORE_OK);
	cr_assert_str_eq(got.status, "failed");
	store_task_clear(&got);
	/* One bad row (params that are no JSON): none of them is written. */
	row(&t[0], ID(03), "o", "working", now, 60000);
	row(&t[1], ID(04), "o", "working", now, 60000);
	t[1].params = (char *)"{not json";
	cr_assert_eq(put_rows(t, 2), STORE_ERROR);
	cr_assert(strstr(store_pg.error(), "json") != NULL, "%s",
	    store_pg.error());
	cr_assert_eq(get(ID(03), "o", &got), STORE_NOT_FOUND);
}

Test(store_pg, pages_expiry_and_sweep)
{
	struct store_task	t, got;
	struct sync_answer	a;
	int64_t			now = wall_ms();
	char			id[33];

	/* Five rows a millisecond apart, one long expired, one running. */
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof id, "%032d", i + 1);
		row(&t, id, "o", "completed", now - 10 + i, 3600000);
		cr_assert_eq(put_rows(&t, 1), STORE_OK);
	}
	row(&t, ID(90), "o", "completed", now - 7200000, 60000);
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	row(&t, ID(91), "o", "working", now - 7200000, 60000);
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	cr_assert_eq(get(ID(90), "o", &got), STORE_EXPIRED);

	cr_assert_eq(list("o", NULL, 4, &a), STORE_OK);
	cr_assert_eq(a.n, 4);
	cr_assert_str_eq(a.rows[0].id, "00000000000000000000000000000005");
	cr_assert_str_eq(a.rows[3].id, "00000000000000000000000000000002");
	cr_assert_not_null(a.next);
	char *next = xstrdup(a.next);
	answer_clear(&a);
	cr_assert_eq(list("o", next, 4, &a), STORE_OK);
	free(next);
	cr_assert_eq(a.n, 2, "the first row and the running one; not the "
	    "expired one");
	cr_assert_str_eq(a.rows[0].id, "00000000000000000000000000000001");
	cr_assert_str_eq(a.rows[1].id, ID(91));
	cr_assert_null(a.next);
	answer_clear(&a);
	cr_assert_eq(list("o", "garbage", 4, &a), STORE_BAD_CURSOR);
	answer_clear(&a);

	/* The expired row, then the oldest ended beyond 3. */
	cr_assert_eq(sweep(3), 3);
	cr_assert_eq(list("o", NULL, 10, &a), STORE_OK);
	cr_assert_eq(a.n, 4, "three ended rows and the running one");
	answer_clear(&a);
	cr_assert_eq(get(ID(91), "o", &got), STORE_OK, "running: kept");
	store_task_clear(&got);
}

Test(store_pg, active_ids_and_cache)
{
	struct store_task	t, got;
	struct sync_answer	a = { 0 };
	int64_t			now = wall_ms();

	row(&t, "abc00000000000000000000000000001", "o", "working", now - 2,
	    60000);
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	row(&t, "abc00000000000000000000000000002", "o", "completed", now - 1,
	    60000);
	t.cache_key = (char *)"k1";
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	row(&t, "abd00000000000000000000000000003", "o", "working", now,
	    60000);
	cr_assert_eq(put_rows(&t, 1), STORE_OK);

	store_pg.active("o", sync_rows_cb, &a);
	WAIT_FOR(a.done, "active");
	cr_assert_eq(a.n, 2);
	cr_assert_str_eq(a.rows[0].id, "abc00000000000000000000000000001",
	    "oldest first");
	answer_clear(&a);

	store_pg.ids("o", "ABC", 1, sync_rows_cb, &a);
	WAIT_FOR(a.done, "ids");
	cr_assert_eq(a.rc, STORE_OK);
	cr_assert_eq(a.n, 1);
	cr_assert_eq(a.total, 2, "every match counted");
	cr_assert_str_eq(a.rows[0].id, "abc00000000000000000000000000001",
	    "running first");
	answer_clear(&a);

	store_pg.cache_find("o", "k1", 60000, sync_row_cb, &a);
	WAIT_FOR(a.done, "cache_find");
	cr_assert_eq(a.rc, STORE_OK);
	cr_assert_str_eq(a.row.id, "abc00000000000000000000000000002");
	store_task_clear(&a.row);
	memset(&a, 0, sizeof a);
	store_pg.cache_find("other", "k1", 60000, sync_row_cb, &a);
	WAIT_FOR(a.done, "cache_find");
	cr_assert_eq(a.rc, STORE_NOT_FOUND, "another owner's answer");
	(void)got;
}

/* A row of a process of this host that is gone is settled; one of
 * another host (another boot id) is left to its node. */
Test(store_pg, interrupted_rows_of_this_host_only)
{
	struct store_task	got;
	char			stmt[1024], boot[64];
	const char		*at = strchr(store_self_start(), '@');
	pid_t			child;

	if ((child = fork()) == 0)
		_exit(0);
	cr_assert_gt(child, 0);
	waitpid(child, NULL, 0);
	cr_assert_not_null(at);
	snprintf(boot, sizeof boot, "%s", at);
	snprintf(stmt, sizeof stmt, "INSERT INTO tasks (id, owner, tool, "
	    "status, params, phase, progress_ms, created_ms, updated_ms, "
	    "ttl_ms, expires_ms, pid, proc_start) VALUES ('%s', 'o', "
	    "'heavy_orchestrate', 'working', '{}', 'agents', 5, 1, 1, "
	    "%d, %d, %d, '12345%s'), ('%s', 'o', 'heavy_orchestrate', "
	    "'working', '{}', NULL, NULL, 1, 1, %d, %d, %d, "
	    "'12345@another-host'); INSERT INTO task_agents (task_id, idx, "
	    "status, elapsed_ms) VALUES ('%s', 1, 'ok', 3), ('%s', 2, "
	    "'running', NULL)", ID(71), 3600000, 3600001, (int)child, boot,
	    ID(72), 3600000, 3600001, (int)child, ID(71), ID(71));
	sql(stmt);
	cr_assert_eq(done_call(store_pg.settle), 1);
	cr_assert_eq(get(ID(71), "o", &got), STORE_EXPIRED,
	    "settled, hence ended, and created in 1970");
	sql("UPDATE tasks SET created_ms = 0, expires_ms = 9000000000000, "
	    "ttl_ms = 9000000000000");
	cr_assert_eq(get(ID(71), "o", &got), STORE_OK);
	cr_assert_str_eq(got.status, "failed");
	cr_assert_str_eq(got.status_message, store_interrupted);
	cr_assert_str_eq(got.progress.phase, "interrupted");
	cr_assert_eq(got.progress.nagents, 2);
	cr_assert_str_eq(got.progress.agents[0].status, "ok");
	cr_assert_eq(got.progress.agents[0].elapsed_ms, 3);
	cr_assert_str_eq(got.progress.agents[1].status, "interrupted");
	cr_assert_eq(got.progress.agents[1].elapsed_ms, -1);
	store_task_clear(&got);
	cr_assert_eq(sql_int("SELECT count(*) FROM task_agents WHERE "
	    "status = 'interrupted'"), 1, "settled in the store too");
	cr_assert_eq(get(ID(72), "o", &got), STORE_OK);
	cr_assert_str_eq(got.status, "working", "another host's row");
	cr_assert_not(got.orphaned);
	store_task_clear(&got);
}

/* The server stops with writes queued; they land once it is back, each
 * answered once. */
Test(store_pg, writes_held_while_the_server_is_away)
{
	struct store_task	t[10], got;
	struct sync_answer	a[10] = { 0 };
	char			ids[10][33];
	int64_t			now = wall_ms();
	struct pgconn_status	st;

	metrics_init(0, "test");
	pgtest_stop(&pg);
	for (int i = 0; i < 10; i++) {
		snprintf(ids[i], sizeof ids[i], "%032d", 500 + i);
		row(&t[i], ids[i], "o", "working", now, 60000);
		store_pg.put(&t[i], 1, sync_done_cb, &a[i]);
	}
	WAIT_FOR((pgconn_status(store_pg_conn(), &st), st.state ==
	    PGCONN_DOWN && st.error[0] != '\0'), "the link down");
	cr_assert_eq(st.queued, 10);
	cr_assert_eq(metrics_value(metrics_find("heavyd_store_connected"), NULL),
	    0);
	cr_assert_eq(metrics_value(metrics_find("heavyd_store_queued"), NULL),
	    10);
	for (int i = 0; i < 10; i++)
		cr_assert_not(a[i].done, "no answer while the server is away");
	pgtest_start(&pg);
	WAIT_FOR(a[9].done, "the held writes");
	for (int i = 0; i < 10; i++)
		cr_assert(a[i].done && a[i].rc == STORE_OK, "put %d: %d", i,
		    a[i].rc);
	cr_assert_eq(get(ids[9], "o", &got), STORE_OK);
	store_task_clear(&got);
	cr_assert_eq(metrics_value(metrics_find("heavyd_store_connected"), NULL),
	    1);
	cr_assert_eq(metrics_value(metrics_find("heavyd_store_queued"), NULL),
	    0);
	metrics_free();
	cr_assert_eq(store_pg.durability(), 1,
	    "the test cluster runs with synchronous_commit off");
}

/*
 * A write past the queue's bound fails on a later turn of the loop, never
 * inside the call: its caller (a task reporting its progress) may be in
 * the middle of a change that the failure undoes.
 */
Test(store_pg, a_refused_write_answers_on_a_later_turn)
{
	struct store_options	o = { .url = pg.url, .retry_max_ms = 200,
	    .max_queue = 2 };
	struct store_task	t[3];
	struct sync_answer	a[3] = { 0 };
	char			ids[3][33], err[512];
	int64_t			now = wall_ms();

	store_pg.close();
	cr_assert_eq(store_pg.open(&o, err, sizeof err), 0, "%s", err);
	pgtest_stop(&pg);
	for (int i = 0; i < 3; i++) {
		snprintf(ids[i], sizeof ids[i], "%032d", 700 + i);
		row(&t[i], ids[i], "o", "working", now, 60000);
		store_pg.put(&t[i], 1, sync_done_cb, &a[i]);
		cr_assert_not(a[i].done, "put %d answered inside the call", i);
	}
	WAIT_FOR(a[2].done, "the refusal");
	cr_assert_eq(a[2].rc, STORE_ERROR);
	cr_assert(strstr(store_pg.error(), "queue is full") != NULL, "%s",
	    store_pg.error());
	cr_assert_not(a[0].done || a[1].done, "the held writes wait");
	pgtest_start(&pg);
	WAIT_FOR(a[1].done, "the held writes");
	cr_assert(a[0].rc == STORE_OK && a[1].rc == STORE_OK);
}

/* ---- Several nodes: fences, notifications, cancels, /readyz ---- */

struct value {
	bool	done;
	char	text[256];
};

static void
value_cb(void *arg, PGresult *res, const char *error)
{
	struct value	*v = arg;

	cr_assert_null(error, "%s", error);
	snprintf(v->text, sizeof v->text, "%s", PQntuples(res) > 0 ?
	    PQgetvalue(res, 0, 0) : "");
	v->done = true;
}

/* The first column of the first row of a query of the test's own. */
static const char *
value(const char *q)
{
	static struct value	v;

	memset(&v, 0, sizeof v);
	cr_assert_eq(pgconn_query(raw, q, 0, NULL, value_cb, &v, NULL, 0), 0);
	WAIT_FOR(v.done, q);
	return v.text;
}

static int		 events, last_event;
static char		 last_event_id[33];

static void
event_cb(enum store_event ev, const char *id)
{
	events++;
	last_event = ev;
	snprintf(last_event_id, sizeof last_event_id, "%s", id);
}

Test(store_pg, fenced_by_node_and_epoch_notified_and_cancelled)
{
	struct store_task	t, u;
	struct sync_answer	a = { 0 };
	char			why[256] = "", host[200] = "";
	int64_t			now = wall_ms();

	WAIT_FOR(store_pg.ready(why, sizeof why), "the link up (/readyz)");
	store_pg.watch(event_cb);
	row(&t, ID(71), "o", "working", now, 60000);
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	gethostname(host, sizeof host - 1);
	cr_assert_eq(strncmp(value("SELECT node_id FROM tasks WHERE id = '"
	    ID(71) "'"), host, strlen(host)), 0, "hostname:pid-starttime");
	cr_assert_str_eq(value("SELECT lease_epoch || ' ' || (lease_expires_at "
	    "> now()) FROM tasks WHERE id = '" ID(71) "'"), "0 true");

	/* Another node took it over (the row still running): every write
	 * of ours is refused by the fence. */
	sql("UPDATE tasks SET node_id = 'other', lease_epoch = 1 WHERE id = '"
	    ID(71) "'");
	t.updated_ms = now + 1;
	cr_assert_eq(put_rows(&t, 1), STORE_TERMINAL);
	t.status = (char *)"completed";
	cr_assert_eq(put_rows(&t, 1), STORE_TERMINAL);
	cr_assert_str_eq(value("SELECT status || ' ' || node_id FROM tasks "
	    "WHERE id = '" ID(71) "'"), "working other");

	/* An end is notified, to this node too; a progress write is not. */
	row(&u, ID(72), "o", "working", now, 60000);
	cr_assert_eq(put_rows(&u, 1), STORE_OK);
	cr_assert_eq(events, 0, "no notice of a running row");
	u.status = (char *)"failed";
	u.updated_ms = now + 1;
	cr_assert_eq(put_rows(&u, 1), STORE_OK);
	WAIT_FOR(events == 1, "the notice of the end");
	cr_assert_eq(last_event, STORE_EVENT_END);
	cr_assert_str_eq(last_event_id, ID(72));

	/* A cancel: recorded for a running row of its owner, notified. */
	row(&u, ID(73), "o", "working", now, 60000);
	cr_assert_eq(put_rows(&u, 1), STORE_OK);
	store_pg.cancel(ID(73), "mallory", sync_done_cb, &a);
	WAIT_FOR(a.done, "another owner's cancel");
	cr_assert_eq(a.rc, STORE_TERMINAL, "another owner's: nothing to do");
	memset(&a, 0, sizeof a);
	store_pg.cancel(ID(73), "o", sync_done_cb, &a);
	WAIT_FOR(a.done && events == 2, "the cancel and its notice");
	cr_assert_eq(a.rc, STORE_OK);
	cr_assert_eq(last_event, STORE_EVENT_CANCEL);
	cr_assert_str_eq(last_event_id, ID(73));
	cr_assert_str_eq(value("SELECT cancel_requested_ms IS NOT NULL FROM "
	    "tasks WHERE id = '" ID(73) "'"), "t");
	store_pg.watch(NULL);
}

/* ---- Quota counters ---- */

struct pg_total {
	bool	done;
	int	rc;
	int64_t	v;
};

static void
pg_total_cb(void *arg, int rc, int64_t v)
{
	struct pg_total	*t = arg;

	t->done = true;
	t->rc = rc;
	t->v = v;
}

static int64_t
qcharge(const char *who, int64_t w, const char *src, int64_t amount)
{
	struct pg_total	t = { 0 };

	store_pg.quota_charge(who, "tokens", w, src, amount, pg_total_cb, &t);
	WAIT_FOR(t.done, "quota_charge");
	cr_assert_eq(t.rc, STORE_OK);
	return t.v;
}

static int64_t
qtotal(const char *who, int64_t w)
{
	struct pg_total	t = { 0 };

	store_pg.quota_total(who, "tokens", w, pg_total_cb, &t);
	WAIT_FOR(t.done, "quota_total");
	cr_assert_eq(t.rc, STORE_OK);
	return t.v;
}

/*
 * A charge sets its source's amount (only upward), so one resent after a
 * lost answer counts once; a window's total is the sum; the counters
 * outlive the connection; old windows are swept.
 */
Test(store_pg, quota_charges_once_each_across_a_reopen)
{
	struct sync_answer	a = { 0 };
	char			err[512];

	cr_assert_eq(qcharge("id:a", 3600, "t1", 100), 100);
	cr_assert_eq(qcharge("id:a", 3600, "t1", 100), 100, "sent twice");
	cr_assert_eq(qcharge("id:a", 3600, "t2", 50), 150);
	cr_assert_eq(qcharge("id:a", 3600, "t1", 40), 150, "never less");
	cr_assert_eq(qcharge("id:a", 3600, "t1", 130), 180);
	cr_assert_eq(qcharge("id:a", 7200, "t1", 5), 5, "another window");
	cr_assert_eq(qcharge("id:b", 3600, "t3", 9), 9, "another identity");
	store_pg.close();
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), 0, "%s", err);
	cr_assert_eq(qtotal("id:a", 3600), 180);
	cr_assert_eq(qtotal("id:a", 0), 0, "an empty window");
	store_pg.quota_sweep(7200, sync_done_cb, &a);
	WAIT_FOR(a.done, "quota_sweep");
	cr_assert_eq(a.rc, 3, "the charges of the windows before 7200");
	cr_assert_eq(qtotal("id:a", 3600), 0);
	cr_assert_eq(qtotal("id:a", 7200), 5);
}

/* Opening migrates; a database of a newer heavyd is refused. */
Test(store_pg, open_refuses_a_newer_schema)
{
	char	err[512];

	sql("INSERT INTO schema_version (version) VALUES (7)");
	store_pg.close();
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), -1);
	cr_assert(strstr(err, "schema version 7") != NULL, "%s", err);
	sql("DELETE FROM schema_version WHERE version = 7");
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), 0, "%s", err);
}

/*
 * Migration 4 converts the JSON progress of migration 1's column agents
 * into the phase and the agents' rows, a damaged one into none, and drops
 * the column: a database as migration 3 left it, opened again.
 */
Test(store_pg, migration_4_converts_the_progress)
{
	struct store_task	got;
	char			err[512];

	store_pg.close();
	sql("DELETE FROM schema_version WHERE version = 4; DROP TABLE "
	    "task_agents; ALTER TABLE tasks DROP COLUMN phase, DROP COLUMN "
	    "progress_ms, DROP COLUMN query, DROP COLUMN num_agents, "
	    "DROP COLUMN draft_n, DROP COLUMN draft_answers, DROP COLUMN "
	    "draft_of, DROP COLUMN draft_made_ms, DROP COLUMN draft_text, "
	    "ADD COLUMN agents jsonb");
	sql("INSERT INTO tasks (id, owner, tool, status, params, agents, "
	    "created_ms, updated_ms, ttl_ms, expires_ms, pid, proc_start) "
	    "VALUES ('" ID(81) "', 'o', 'heavy_orchestrate', 'completed', "
	    "'{\"query\":\"what\",\"num_agents\":2}', '{\"phase\":\"done\",\"elapsed_ms\":1500,\"agents\":"
	    "[{\"index\":1,\"question\":\"q1\",\"status\":\"ok\","
	    "\"step\":\"search_web\",\"error\":null,\"elapsed_ms\":1200,"
	    "\"answer\":\"a1\"},{\"index\":2,\"question\":\"q2\","
	    "\"status\":\"running\",\"step\":\"read_url\",\"error\":"
	    "null,\"elapsed_ms\":null,\"answer\":null}],\"draft\":{\"n\":1,"
	    "\"answers\":1,\"of\":2,\"made_ms\":800,\"text\":\"d1\"}}', 0, 1, "
	    "9000000000000, 9000000000000, 1, '1@x'), ('" ID(82) "', 'o', "
	    "'heavy_orchestrate', 'completed', '{}', '[1,2]', 0, 1, "
	    "9000000000000, 9000000000000, 1, '1@x'), ('" ID(83) "', 'o', "
	    "'heavy_orchestrate', 'completed', '{}', '{\"agents\":[1,\"x\","
	    "null]}', 0, 1, 9000000000000, 9000000000000, 1, '1@x'), ('"
	    ID(84) "', 'o', 'heavy_orchestrate', 'completed', '{}', NULL, 0, "
	    "1, 9000000000000, 9000000000000, 1, '1@x')");
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sql_int("SELECT count(*) FROM schema_version WHERE "
	    "version = 4"), 1);
	cr_assert_eq(sql_int("SELECT count(*) FROM information_schema.columns "
	    "WHERE table_name = 'tasks' AND column_name = 'agents'"), 0);
	cr_assert_eq(get(ID(81), "o", &got), STORE_OK);
	cr_assert_str_eq(got.progress.phase, "done");
	cr_assert_str_eq(got.query, "what");
	cr_assert_eq(got.num_agents, 2);
	cr_assert_eq(got.progress.draft.n, 1);
	cr_assert_eq(got.progress.draft.answers, 1);
	cr_assert_eq(got.progress.draft.of, 2);
	cr_assert_eq(got.progress.draft.made_ms, 800);
	cr_assert_str_eq(got.progress.draft.text, "d1");
	cr_assert_eq(got.progress.elapsed_ms, 1500);
	cr_assert_eq(got.progress.nagents, 2);
	assert_agent(&got.progress.agents[0], &two_agents[0]);
	assert_agent(&got.progress.agents[1], &two_agents[1]);
	store_task_clear(&got);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(get(i == 0 ? ID(82) : i == 1 ? ID(83) : ID(84),
		    "o", &got), STORE_OK);
		cr_assert_null(got.progress.phase);
		cr_assert_eq(got.progress.nagents, 0);
		cr_assert_null(got.query);
		cr_assert_eq(got.num_agents, 0);
		store_task_clear(&got);
	}
}

/* A result is kept typed and read back whole: it renders as it did. */
Test(store_pg, a_result_and_the_usage_are_kept_typed)
{
	struct store_task	 t, got;
	int64_t			 now = wall_ms();
	char			*want, *have;

	row(&t, ID(91), "alice", "completed", now, 60000);
	t.result = filled_edge();
	t.has_usage = true;
	t.usage = t.result->usage;
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	cr_assert_eq(put_rows(&t, 1), STORE_OK, "the same write again");
	cr_assert_eq(get(ID(91), "alice", &got), STORE_OK);
	cr_assert_not_null(got.result);
	want = rendered(t.result);
	have = rendered(got.result);
	cr_assert_str_eq(have, want);
	cr_assert(got.has_usage);
	cr_assert_eq(got.usage.cost_micro_usd, 12345);
	free(want);
	free(have);
	store_task_clear(&got);
	taskresult_free(t.result);
	cr_assert_eq(sql_int("SELECT count(*) FROM task_result_items"), 7);
	cr_assert_eq(sql_int("SELECT count(*) FROM information_schema.columns "
	    "WHERE table_name = 'tasks' AND column_name IN ('result', "
	    "'usage')"), 0, "no JSON columns");
	sql("DELETE FROM tasks");
	cr_assert_eq(sql_int("SELECT count(*) FROM task_result_items"), 0,
	    "a result goes with its task");
}

/* SQL text of a JSON document (its quotes doubled), allocated. */
static char *
literal(const char *s)
{
	char	*out = xmalloc(2 * strlen(s) + 3), *p = out;

	*p++ = '\'';
	for (; *s != '\0'; s++)
		if ((*p++ = *s) == '\'')
			*p++ = '\'';
	*p++ = '\'';
	*p = '\0';
	return out;
}

/*
 * Migration 6 converts the jsonb result and usage of a task into typed
 * rows that render as the JSON did, a result that is no object into none,
 * values of the wrong type into none; then the columns go: a database as
 * migration 5 left it, opened again.
 */
Test(store_pg, migration_6_types_the_result)
{
	struct task_result	*full = filled_edge(), *text;
	struct store_task	 got;
	char			*texts[2], *lit, *have, err[512], q[16384];
	static const char *const damaged[] = { "[1,2]", "7",
	    "{\"structuredContent\":{\"agents\":3,\"ranking\":\"x\","
	    "\"drafts\":{\"list\":7},\"sandbox\":{\"weaker\":\"w\"},"
	    "\"usage\":{\"prompt_tokens\":\"x\"},\"elapsed_ms\":\"y\","
	    "\"planner_fallbacks\":{}}}" };

	text = taskresult_text("it failed", true);
	texts[0] = rendered(full);
	texts[1] = rendered(text);
	store_pg.close();
	sql("DELETE FROM schema_version WHERE version = 6; DROP TABLE "
	    "task_result_items; DROP TABLE task_result_agents; DROP TABLE "
	    "task_results; ALTER TABLE tasks DROP COLUMN prompt_tokens, "
	    "DROP COLUMN completion_tokens, DROP COLUMN total_tokens, DROP "
	    "COLUMN llm_calls, DROP COLUMN retries, DROP COLUMN "
	    "cost_micro_usd, DROP COLUMN hedged_calls, DROP COLUMN "
	    "hedges_won, ADD COLUMN result jsonb, ADD COLUMN usage jsonb");
	for (int i = 0; i < 5; i++) {
		lit = literal(i < 2 ? texts[i] : damaged[i - 2]);
		snprintf(q, sizeof q, "INSERT INTO tasks (id, owner, tool, "
		    "status, params, result, usage, created_ms, updated_ms, "
		    "ttl_ms, expires_ms, pid, proc_start) VALUES ('%.30s%02d', "
		    "'o', 'heavy_orchestrate', 'completed', '{}', %s, %s, 0, 1, "
		    "9000000000000, 9000000000000, 1, '1@x')", ID(00), 70 + i,
		    lit, i == 0 ? "'{\"total_tokens\":11,\"cost_usd\":0.25}'" :
		    i == 1 ? "'\"x\"'" : "NULL");
		free(lit);
		sql(q);
	}
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sql_int("SELECT max(version) FROM schema_version"), 6);
	cr_assert_eq(sql_int("SELECT count(*) FROM information_schema.columns "
	    "WHERE table_name = 'tasks' AND column_name IN ('result', "
	    "'usage')"), 0, "the JSON columns stayed");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(get(i == 0 ? ID(70) : ID(71), "o", &got),
		    STORE_OK);
		cr_assert_not_null(got.result);
		have = rendered(got.result);
		cr_assert_str_eq(have, texts[i]);
		free(have);
		cr_assert_eq(got.has_usage, i == 0);
		if (i == 0) {
			cr_assert_eq(got.usage.total_tokens, 11);
			cr_assert_eq(got.usage.cost_micro_usd, 250000);
		}
		store_task_clear(&got);
		free(texts[i]);
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(get(i == 0 ? ID(72) : i == 1 ? ID(73) : ID(74), "o",
		    &got), STORE_OK);
		if (i == 2) {	/* an object of the wrong shape */
			cr_assert_not_null(got.result);
			cr_assert_eq(got.result->nagents, 0);
			cr_assert_eq(got.result->elapsed_ms, 0);
			cr_assert_eq(got.result->drafts.n, 0);
			cr_assert_eq(got.result->nweaker, 0);
			have = rendered(got.result);
			free(have);
		} else
			cr_assert_null(got.result, "%s", damaged[i]);
		store_task_clear(&got);
	}
	taskresult_free(full);
	taskresult_free(text);
}

Test(store_pg, serves_postgresql_urls_only)
{
	cr_assert(store_pg.serves("postgresql://h/db"));
	cr_assert(store_pg.serves("postgres://h/db"));
	cr_assert_not(store_pg.serves(NULL));
	cr_assert_not(store_pg.serves("sqlite:"));
}

/* A URL libpq cannot read fails the open at once, its password masked. */
Test(store_pg, a_bad_url_is_refused_at_once)
{
	char	err[512];

	cr_assert_eq(pg_open_url("postgresql://heavyd:s3cretpass@127.0.0.1:"
	    "notaport/heavyd?nosuchoption=1", err, sizeof err), -1);
	cr_assert(strstr(err, "nosuchoption") != NULL ||
	    strstr(err, "port") != NULL, "%s", err);
	cr_assert(strstr(err, "s3cretpass") == NULL, "%s", err);
	cr_assert(strstr(err, "did not answer") == NULL, "refused by its "
	    "parse, not after retries: %s", err);
}

/* ---- Resumption ---- */

/*
 * Migration 5 adds the typed arguments: a database as migration 4 left it,
 * opened again, gets their columns; its rows have none (never resumed).
 */
Test(store_pg, migration_5_adds_the_arguments)
{
	struct store_task	t, got;
	char			err[512];

	row(&t, ID(85), "o", "completed", wall_ms(), 60000);
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	store_pg.close();
	sql("DELETE FROM schema_version WHERE version = 5; ALTER TABLE tasks "
	    "DROP COLUMN timeout_s, DROP COLUMN model, DROP COLUMN strategy, "
	    "DROP COLUMN fallbacks, DROP COLUMN max_total_tokens, DROP COLUMN "
	    "max_cost_usd, DROP COLUMN min_agents, DROP COLUMN "
	    "straggler_grace_s, DROP COLUMN hedge_after_ms, DROP COLUMN "
	    "ask_cost, DROP COLUMN incremental_interval_s, DROP COLUMN "
	    "resume, DROP COLUMN deadline_ms");
	cr_assert_eq(pg_open_url(pg.url, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sql_int("SELECT count(*) FROM schema_version WHERE "
	    "version = 5"), 1);
	cr_assert_eq(sql_int("SELECT count(*) FROM information_schema.columns "
	    "WHERE table_name = 'tasks' AND column_name IN ('timeout_s', "
	    "'model', 'strategy', 'fallbacks', 'max_total_tokens', "
	    "'max_cost_usd', 'min_agents', 'straggler_grace_s', "
	    "'hedge_after_ms', 'ask_cost', 'incremental_interval_s', "
	    "'resume', 'deadline_ms')"), 13);
	cr_assert_eq(get(ID(85), "o", &got), STORE_OK);
	cr_assert_not(got.args.set);
	store_task_clear(&got);
}

static struct store_task	claimed;
static char			claimed_from[300], claimed_why[64];
static int			nclaimed;

static void
claimed_cb(const struct store_task *t, const char *from, const char *why)
{
	nclaimed++;
	store_task_clear(&claimed);
	store_task_copy(&claimed, t);
	snprintf(claimed_from, sizeof claimed_from, "%s", from);
	snprintf(claimed_why, sizeof claimed_why, "%s", why);
}

static char	*fallbacks2[] = { (char *)"fb/one", (char *)"fb/two", NULL };

/*
 * A row whose node stopped renewing its lease, and that asked to be
 * resumed within its deadline, is claimed by this node at the next
 * takeover (its node, process and a new epoch) and handed up whole, its
 * fallback models included; this node's writes of it pass the fence at
 * that epoch.  One with resume false is failed as before.
 */
Test(store_pg, an_expired_lease_is_claimed_to_resume)
{
	struct store_args	a = { .set = true, .timeout_s = 300,
	    .model = (char *)"m/x", .fallbacks = fallbacks2, .nfallbacks = 2,
	    .max_total_tokens = 5000, .min_agents = 1, .hedge_after_ms = 700,
	    .ask_cost = true, .resume = true,
	    .deadline_ms = wall_ms() + 300000 };
	struct store_task	t, u, got;
	char			err[512];
	int64_t			now = wall_ms();

	store_pg.close();
	{
		struct store_options	o = { .url = pg.url,
		    .retry_max_ms = 200, .lease_ttl_ms = 400 };

		cr_assert_eq(store_pg.open(&o, err, sizeof err), 0, "%s", err);
	}
	row(&t, ID(86), "o", "working", now, 600000);
	t.query = (char *)"q";
	t.num_agents = 2;
	t.progress = agents_phase;
	t.args = a;
	u = t;
	snprintf(u.id, sizeof u.id, "%s", ID(87));
	u.args.resume = false;
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	cr_assert_eq(put_rows(&u, 1), STORE_OK);
	/* Their node died: another's, its lease run out. */
	sql("UPDATE tasks SET node_id = 'dead-node', pid = 1, lease_expires_at "
	    "= now() - interval '1 second'");
	nclaimed = 0;
	store_resume(claimed_cb);
	WAIT_FOR(nclaimed == 1 && sql_int("SELECT count(*) FROM tasks WHERE "
	    "status = 'failed'") == 1, "the takeover");
	store_resume(NULL);
	cr_assert_str_eq(claimed.id, ID(86));
	cr_assert_str_eq(claimed_from, "node dead-node");
	cr_assert_str_eq(claimed_why, "its node stopped renewing its lease");
	cr_assert(claimed.args.set && claimed.args.resume);
	cr_assert_str_eq(claimed.args.model, "m/x");
	cr_assert_eq(claimed.args.nfallbacks, 2);
	cr_assert_str_eq(claimed.args.fallbacks[0], "fb/one");
	cr_assert_str_eq(claimed.args.fallbacks[1], "fb/two");
	cr_assert_eq(claimed.args.max_total_tokens, 5000);
	cr_assert_eq(claimed.args.min_agents, 1);
	cr_assert_eq(claimed.args.hedge_after_ms, 700);
	cr_assert(claimed.args.ask_cost);
	cr_assert_eq(claimed.args.timeout_s, 300);
	cr_assert_eq(claimed.args.deadline_ms, a.deadline_ms);
	cr_assert_eq(claimed.progress.nagents, 2);
	assert_agent(&claimed.progress.agents[0], &two_agents[0]);
	store_task_clear(&claimed);
	snprintf(err, sizeof err, "working 1 %d", (int)getpid());
	cr_assert_str_eq(value("SELECT status || ' ' || lease_epoch || ' ' || "
	    "pid FROM tasks WHERE id = '" ID(86) "'"), err, "this process's");
	cr_assert_eq(sql_int("SELECT count(*) FROM tasks WHERE id = '" ID(86)
	    "' AND node_id <> 'dead-node'"), 1, "this node's now");
	cr_assert_str_eq(value("SELECT status || ' ' || status_message FROM "
	    "tasks WHERE id = '" ID(87) "'"), "failed interrupted: its node "
	    "stopped renewing its lease");
	/* Its end, written by this node at the new epoch, passes the fence. */
	t.status = (char *)"completed";
	t.updated_ms = now + 1;
	cr_assert_eq(put_rows(&t, 1), STORE_OK);
	cr_assert_eq(get(ID(86), "o", &got), STORE_OK);
	cr_assert_str_eq(got.status, "completed");
	store_task_clear(&got);
}

/*
 * The PostgreSQL link (supervisor/pgconn.c) and the store's migrations
 * (pgschema.c), against a throw-away cluster each test starts and removes
 * (tests/unit/pgtest.h, scripts/pg-cluster): queries, parameters, errors,
 * migrations run twice and at once, a newer database refused, the server
 * stopped with queries queued and in flight (every callback once, every
 * write landed after the reconnect), a full queue, LISTEN/NOTIFY across a
 * restart, the pipeline (a full one whose backend is killed, sent again in
 * order; multi-statement strings between pipelined queries; a pipeline of
 * one) and prepared statements.  Waits are for events, bounded only to
 * catch a hang.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/pgconn.h"
#include "pgtest.h"

#define HANG_MS		PGTEST_HANG_MS

static struct pgtest		 pg;
static struct event_base	*base;
static struct event		*tick;

static void
setup(void)
{
	base = event_base_new();
	cr_assert_not_null(base);
	tick = pgtest_tick(base);
	pgtest_init(&pg);
}

static void
teardown(void)
{
	pgtest_destroy(&pg);
	if (tick != NULL)
		event_free(tick);
	if (base != NULL)
		event_base_free(base);
}

TestSuite(pgconn, .init = setup, .fini = teardown, .timeout = 300);

#define WAIT_FOR(cond, what)	PGTEST_WAIT(base, cond, what)

static struct pgconn *
connect_pg(int max_queue)
{
	struct pgconn_config	cfg = { .url = pg.url, .max_queue = max_queue,
	    .backoff_min_ms = 20, .backoff_max_ms = 200 };

	return pgconn_new(base, &cfg);
}

/* One answer: its first value (or the error), and how often it came. */
struct answer {
	int	calls;
	bool	ok;
	char	value[256];
	char	error[256];
};

static void
answer_cb(void *arg, PGresult *res, const char *error)
{
	struct answer	*a = arg;

	a->calls++;
	a->ok = error == NULL;
	if (error != NULL)
		snprintf(a->error, sizeof a->error, "%s", error);
	else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
		snprintf(a->value, sizeof a->value, "%s", PQgetvalue(res, 0, 0));
}

/* A query answered, run to its end: its first value. */
static void
query(struct pgconn *pc, const char *sql, int n, const char *const *params,
    struct answer *a)
{
	char	err[256];

	memset(a, 0, sizeof *a);
	cr_assert_eq(pgconn_query(pc, sql, n, params, answer_cb, a, err,
	    sizeof err), 0, "%s", err);
	WAIT_FOR(a->calls > 0, sql);
	cr_assert_eq(a->calls, 1);
}

static void
query_ok(struct pgconn *pc, const char *sql, struct answer *a)
{
	query(pc, sql, 0, NULL, a);
	cr_assert(a->ok, "%s: %s", sql, a->error);
}

Test(pgconn, query_params_and_errors)
{
	struct pgconn		*pc = connect_pg(0);
	struct pgconn_status	 st;
	struct answer		 a;
	const char		*params[] = { "41", NULL };

	query(pc, "SELECT $1::int + 1, $2::text IS NULL", 2, params, &a);
	cr_assert(a.ok, "%s", a.error);
	cr_assert_str_eq(a.value, "42");
	pgconn_status(pc, &st);
	cr_assert_eq(st.state, PGCONN_CONNECTED);
	cr_assert_eq(st.queued, 0);
	cr_assert_eq(st.connects, 1);
	cr_assert_str_eq(pgconn_state_name(st.state), "connected");

	/* The server's error reaches the caller; the link stays up. */
	query(pc, "SELECT 1 / 0", 0, NULL, &a);
	cr_assert_not(a.ok);
	cr_assert(strstr(a.error, "division by zero") != NULL, "%s", a.error);
	query_ok(pc, "SELECT 'still here'", &a);
	cr_assert_str_eq(a.value, "still here");
	pgconn_status(pc, &st);
	cr_assert_eq(st.connects, 1, "an SQL error is no reason to reconnect");

	/* Several statements in one transaction: the last one's result. */
	memset(&a, 0, sizeof a);
	cr_assert_eq(pgconn_exec(pc, "CREATE TABLE x (n int); INSERT INTO x "
	    "VALUES (7); SELECT n * 6 FROM x", answer_cb, &a, NULL, 0), 0);
	WAIT_FOR(a.calls > 0, "exec");
	cr_assert(a.ok, "%s", a.error);
	cr_assert_str_eq(a.value, "42");
	/* A failed statement rolls back the whole string. */
	memset(&a, 0, sizeof a);
	cr_assert_eq(pgconn_exec(pc, "INSERT INTO x VALUES (8); SELECT 1 / 0",
	    answer_cb, &a, NULL, 0), 0);
	WAIT_FOR(a.calls > 0, "exec");
	cr_assert_not(a.ok);
	query_ok(pc, "SELECT count(*) FROM x", &a);
	cr_assert_str_eq(a.value, "1");
	pgconn_free(pc);
}

/* pgconn_free answers what it still holds, once each. */
Test(pgconn, free_answers_what_is_held)
{
	struct pgconn	*pc = connect_pg(0);
	struct answer	 a[3] = { 0 };

	for (int i = 0; i < 3; i++)
		cr_assert_eq(pgconn_query(pc, "SELECT pg_sleep(0)", 0, NULL,
		    answer_cb, &a[i], NULL, 0), 0);
	pgconn_free(pc);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(a[i].calls, 1);
		cr_assert_not(a[i].ok);
		cr_assert(strstr(a[i].error, "closed") != NULL);
	}
}

struct migration {
	int	calls;
	int	version;
	char	error[512];
};

static void
migrated(void *arg, int version, const char *error)
{
	struct migration	*m = arg;

	m->calls++;
	m->version = version;
	snprintf(m->error, sizeof m->error, "%s", error ? error : "");
}

Test(pgconn, migrations_idempotent_and_concurrent)
{
	struct pgconn		*p1 = connect_pg(0), *p2 = connect_pg(0);
	struct migration	 m1 = { 0 }, m2 = { 0 }, m3 = { 0 };
	struct answer		 a;
	char			 err[256];

	/* Two nodes on an empty database at once: one migrates. */
	cr_assert_eq(pgschema_migrate(p1, migrated, &m1, err, sizeof err), 0);
	cr_assert_eq(pgschema_migrate(p2, migrated, &m2, err, sizeof err), 0);
	WAIT_FOR(m1.calls && m2.calls, "both migrations");
	cr_assert_eq(m1.version, PGSCHEMA_VERSION, "%s", m1.error);
	cr_assert_eq(m2.version, PGSCHEMA_VERSION, "%s", m2.error);
	/* And again: nothing to do. */
	cr_assert_eq(pgschema_migrate(p1, migrated, &m3, err, sizeof err), 0);
	WAIT_FOR(m3.calls, "a third migration");
	cr_assert_eq(m3.version, PGSCHEMA_VERSION, "%s", m3.error);
	cr_assert_eq(m1.calls + m2.calls + m3.calls, 3);
	query_ok(p1, "SELECT count(*) FROM schema_version", &a);
	cr_assert_eq(atoi(a.value), PGSCHEMA_VERSION, "one row a migration");

	/* The tables as migration 1 made them, leases and quotas too. */
	query_ok(p1, "SELECT string_agg(table_name || '.' || column_name, ',' "
	    "ORDER BY table_name, column_name) FROM information_schema.columns "
	    "WHERE table_schema = 'public' AND column_name IN ('node_id', "
	    "'lease_epoch', 'lease_expires_at', 'identity', 'window_kind', "
	    "'window_start', 'count', 'proc_start', 'expires_ms')", &a);
	cr_assert_str_eq(a.value, "quota_charges.identity,"
	    "quota_charges.window_start,"
	    "quota_counters.count,quota_counters.identity,"
	    "quota_counters.window_kind,quota_counters.window_start,"
	    "tasks.expires_ms,tasks.lease_epoch,tasks.lease_expires_at,"
	    "tasks.node_id,tasks.proc_start");
	query_ok(p1, "INSERT INTO tasks (id, owner, tool, status, params, "
	    "created_ms, updated_ms, ttl_ms, expires_ms, pid, proc_start) "
	    "VALUES ('t1', 'o', 'heavy_orchestrate', 'working', '{\"q\":1}', "
	    "1, 1, 10, 11, 1, 's') RETURNING lease_epoch", &a);
	cr_assert_str_eq(a.value, "0");

	/* A database a newer heavyd migrated is refused, and left alone. */
	query_ok(p2, "INSERT INTO schema_version (version) VALUES (99)", &a);
	memset(&m3, 0, sizeof m3);
	cr_assert_eq(pgschema_migrate(p2, migrated, &m3, err, sizeof err), 0);
	WAIT_FOR(m3.calls, "the refusal");
	cr_assert_eq(m3.version, -1);
	cr_assert(strstr(m3.error, "schema version 99") != NULL &&
	    strstr(m3.error, "newer heavyd") != NULL, "%s", m3.error);
	query_ok(p2, "SELECT count(*) FROM tasks", &a);
	cr_assert_str_eq(a.value, "1");
	pgconn_free(p1);
	pgconn_free(p2);
}

/* The restart test: the server stops after a few answers, is started
 * again once the link saw it go, and every insert lands once answered. */
#define RESTART_N	40
static struct answer	 inserts[RESTART_N];
static int		 downs, answered;

static void
insert_cb(void *arg, PGresult *res, const char *error)
{
	answer_cb(arg, res, error);
	if (++answered == 5)
		pgtest_stop(&pg);	/* with 35 queued, one soon in flight */
}

static void
restart_on_down(void *arg, const struct pgconn_status *st)
{
	(void)arg;
	if (st->state == PGCONN_DOWN && downs++ == 0) {
		cr_assert_gt(st->queued, 0);
		pgtest_start(&pg);
	}
}

Test(pgconn, server_restart_mid_queue)
{
	struct pgconn		*pc = connect_pg(0);
	struct pgconn_status	 st;
	struct answer		 a;
	char			 v[RESTART_N][16], err[256];
	const char		*params[1];

	query_ok(pc, "CREATE TABLE t (n int PRIMARY KEY)", &a);
	pgconn_on_state(pc, restart_on_down, NULL);
	for (int i = 0; i < RESTART_N; i++) {
		snprintf(v[i], sizeof v[i], "%d", i);
		params[0] = v[i];
		cr_assert_eq(pgconn_query(pc, "INSERT INTO t VALUES ($1) "
		    "ON CONFLICT DO NOTHING", 1, params, insert_cb, &inserts[i],
		    err, sizeof err), 0, "%s", err);
	}
	WAIT_FOR(answered == RESTART_N, "every insert answered");
	cr_assert_eq(downs, 1, "the link went down once");
	for (int i = 0; i < RESTART_N; i++) {
		cr_assert_eq(inserts[i].calls, 1, "insert %d answered %d times",
		    i, inserts[i].calls);
		cr_assert(inserts[i].ok, "insert %d: %s", i, inserts[i].error);
	}
	pgconn_status(pc, &st);
	cr_assert_eq(st.connects, 2);
	cr_assert_eq(st.queued, 0);
	query_ok(pc, "SELECT count(*) FROM t", &a);
	cr_assert_str_eq(a.value, "40");
	pgconn_free(pc);
}

Test(pgconn, queue_full_is_refused)
{
	struct pgconn		*pc;
	struct pgconn_status	 st;
	struct answer		 a[5] = { 0 };
	char			 err[256] = "";

	pgtest_stop(&pg);
	pc = connect_pg(4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pgconn_query(pc, "SELECT 1", 0, NULL, answer_cb,
		    &a[i], err, sizeof err), 0, "%s", err);
	WAIT_FOR((pgconn_status(pc, &st), st.state == PGCONN_DOWN &&
	    st.error[0] != '\0'), "the failed connection");
	cr_assert_eq(pgconn_query(pc, "SELECT 1", 0, NULL, answer_cb, &a[4],
	    err, sizeof err), -1);
	cr_assert(strstr(err, "queue is full") != NULL &&
	    strstr(err, "4 queries") != NULL && strstr(err, "down") != NULL,
	    "%s", err);
	pgconn_status(pc, &st);
	cr_assert_eq(st.queued, 4);
	cr_assert_eq(st.max_queue, 4);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(a[i].calls, 0);

	/* The server comes: the four are answered, room again. */
	pgtest_start(&pg);
	WAIT_FOR(a[0].calls && a[1].calls && a[2].calls && a[3].calls,
	    "the held queries");
	for (int i = 0; i < 4; i++) {
		cr_assert(a[i].ok && a[i].calls == 1, "%s", a[i].error);
		cr_assert_str_eq(a[i].value, "1");
	}
	cr_assert_eq(a[4].calls, 0, "the refused query never runs");
	query_ok(pc, "SELECT 2", &a[4]);
	pgconn_free(pc);
}

struct heard {
	int	n;
	char	channel[64];
	char	payload[64];
};

static void
notify_cb(void *arg, const char *channel, const char *payload)
{
	struct heard	*h = arg;

	h->n++;
	snprintf(h->channel, sizeof h->channel, "%s", channel);
	snprintf(h->payload, sizeof h->payload, "%s", payload);
}

static void
start_on_down(void *arg, const struct pgconn_status *st)
{
	int	*n = arg;

	if (st->state == PGCONN_DOWN && (*n)++ == 0)
		pgtest_start(&pg);
}

Test(pgconn, listen_notify_across_restart)
{
	struct pgconn		*rx = connect_pg(0), *tx = connect_pg(0);
	struct heard		 h = { 0 };
	struct answer		 a;
	struct pgconn_status	 st;
	char			 err[256];
	int			 down = 0;

	pgconn_on_notify(rx, notify_cb, &h);
	cr_assert_eq(pgconn_listen(rx, "heavyd tasks\"", err, sizeof err), 0,
	    "%s", err);
	/* Queries run in order: once this is answered, LISTEN is in force. */
	query_ok(rx, "SELECT 1", &a);
	query_ok(tx, "SELECT pg_notify('heavyd tasks\"', 'hello')", &a);
	WAIT_FOR(h.n == 1, "the notification");
	cr_assert_str_eq(h.channel, "heavyd tasks\"");
	cr_assert_str_eq(h.payload, "hello");

	/* The server restarts: the receiver listens again on its own. */
	pgconn_on_state(rx, start_on_down, &down);
	pgtest_stop(&pg);
	WAIT_FOR((pgconn_status(rx, &st), down > 0 &&
	    st.state == PGCONN_CONNECTED), "the receiver back");
	query_ok(rx, "SELECT 1", &a);
	query_ok(tx, "SELECT pg_notify('heavyd tasks\"', 'again')", &a);
	WAIT_FOR(h.n == 2, "the notification after the restart");
	cr_assert_str_eq(h.payload, "again");
	pgconn_free(rx);
	pgconn_free(tx);
}

Test(pgconn_url, password_masked)
{
	char	*s;

	s = pgconn_url_display("postgresql://heavy:s3cretpass@db:5432/h?"
	    "sslmode=require&password=other-secret&x=1");
	cr_assert(strstr(s, "s3cretpass") == NULL, "%s", s);
	cr_assert(strstr(s, "other-secret") == NULL, "%s", s);
	cr_assert(strstr(s, "db:5432/h?sslmode=require&password=[redacted]"
	    "&x=1") != NULL, "%s", s);
	free(s);
	s = pgconn_url_display("postgresql://db/h");
	cr_assert_str_eq(s, "postgresql://db/h");
	free(s);
}

/* The pid of a backend that waits for advisory lock 1, other than the
 * pid not (a killed backend shows until it has exited), polled from b
 * (each poll is one query answered: no clock involved). */
static void
await_lock_waiter(struct pgconn *b, const char *not, char *pid, size_t len)
{
	struct answer	a;
	int64_t		deadline = now_ms() + HANG_MS;
	const char	*params[] = { not };

	do {
		query(b, "SELECT pid FROM pg_stat_activity WHERE "
		    "wait_event_type = 'Lock' AND query LIKE "
		    "'%pg_advisory_lock(1)%' AND pid <> pg_backend_pid() "
		    "AND pid::text <> $1", 1, params, &a);
		cr_assert(a.ok, "%s", a.error);
	} while (a.value[0] == '\0' && now_ms() < deadline);
	cr_assert(a.value[0] != '\0', "no backend waits for the lock");
	snprintf(pid, len, "%s", a.value);
}

/*
 * A query in flight when its connection dies is sent again on the next
 * one, and answered once: a waits for a lock b holds, b kills a's
 * backend, a reconnects and waits again, b lets go.
 */
Test(pgconn, in_flight_query_replayed_once)
{
	struct pgconn		*a = connect_pg(0), *b = connect_pg(0);
	struct pgconn_status	 st;
	struct answer		 r, x;
	char			 pid[256], again[256], sql[320];

	query_ok(b, "SELECT pg_advisory_lock(1)", &x);
	memset(&r, 0, sizeof r);
	cr_assert_eq(pgconn_query(a, "SELECT pg_advisory_lock(1), 'mine'", 0,
	    NULL, answer_cb, &r, NULL, 0), 0);
	await_lock_waiter(b, "", pid, sizeof pid);
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid);
	query_ok(b, sql, &x);
	cr_assert_str_eq(x.value, "t");
	await_lock_waiter(b, pid, again, sizeof again);
	cr_assert_str_neq(again, pid, "a new backend, the same query");
	pgconn_status(a, &st);
	cr_assert_eq(st.connects, 2);
	cr_assert_eq(st.queued, 1);
	cr_assert_eq(r.calls, 0, "no answer for the query the server lost");
	query_ok(b, "SELECT pg_advisory_unlock(1)", &x);
	WAIT_FOR(r.calls > 0, "the replayed query");
	cr_assert_eq(r.calls, 1);
	cr_assert(r.ok, "%s", r.error);
	pgconn_free(a);
	pgconn_free(b);
}

/* A server that accepts but never speaks: the attempt is given up at the
 * connect timeout, and the queue keeps its query for the next one. */
Test(pgconn, connect_timeout)
{
	struct pgconn_config	 cfg = { .connect_timeout_ms = 200,
	    .backoff_min_ms = 20, .backoff_max_ms = 50 };
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	struct pgconn		*pc;
	struct pgconn_status	 st;
	struct answer		 a = { 0 };
	socklen_t		 len = sizeof sin;
	char			 url[128];
	int			 fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), -1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(fd, 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(url, sizeof url, "postgresql://heavyd@127.0.0.1:%d/heavyd",
	    ntohs(sin.sin_port));
	cfg.url = url;
	pc = pgconn_new(base, &cfg);
	cr_assert_eq(pgconn_query(pc, "SELECT 1", 0, NULL, answer_cb, &a,
	    NULL, 0), 0);
	WAIT_FOR((pgconn_status(pc, &st), strstr(st.error, "timed out") !=
	    NULL), "the connect timeout");
	cr_assert_neq(st.state, PGCONN_CONNECTED);
	cr_assert_eq(st.queued, 1);
	cr_assert_eq(a.calls, 0);
	pgconn_free(pc);
	cr_assert_eq(a.calls, 1);
	close(fd);
}

/* At exit, with no loop: pgconn_finish sends and answers what is held. */
Test(pgconn, finish_without_the_loop)
{
	struct pgconn		*pc = connect_pg(0);
	struct answer		 a, got[20];
	char			 v[20][16];
	const char		*params[1];

	query_ok(pc, "CREATE TABLE f (n int PRIMARY KEY)", &a);
	memset(got, 0, sizeof got);
	for (int i = 0; i < 20; i++) {
		snprintf(v[i], sizeof v[i], "%d", i);
		params[0] = v[i];
		cr_assert_eq(pgconn_query(pc, "INSERT INTO f VALUES ($1) "
		    "ON CONFLICT DO NOTHING RETURNING n", 1, params, answer_cb,
		    &got[i], NULL, 0), 0);
	}
	cr_assert_eq(got[0].calls, 0, "nothing is answered before the loop");
	cr_assert_eq(pgconn_finish(pc, HANG_MS), 0);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(got[i].calls, 1);
		cr_assert(got[i].ok, "%s", got[i].error);
		cr_assert_str_eq(got[i].value, v[i]);
	}
	query_ok(pc, "SELECT count(*) FROM f", &a);
	cr_assert_str_eq(a.value, "20");
	pgconn_free(pc);
}

/*
 * The pipeline: answers in the order sent, one callback each, and every
 * query sent and unanswered when the link dies sent again in order.
 */
#define PIPE_N		100
#define PIPE_DEPTH	64
#define PIPE_LOCK	10	/* the query that waits for a lock */
static struct answer	 piped[PIPE_N];
static int		 pipe_order[PIPE_N], pipe_answered;

static void
pipe_cb(void *arg, PGresult *res, const char *error)
{
	struct answer	*a = arg;

	answer_cb(a, res, error);
	pipe_order[pipe_answered++] = (int)(a - piped);
}

static struct pgconn *
connect_piped(int max_queue, int pipeline)
{
	struct pgconn_config	cfg = { .url = pg.url, .max_queue = max_queue,
	    .pipeline = pipeline, .backoff_min_ms = 20, .backoff_max_ms = 200 };

	return pgconn_new(base, &cfg);
}

/* Query i of the run: an insert that notes the row inserted before it
 * (a plain INSERT: run twice, its second run fails on the key), or, at
 * PIPE_LOCK, a wait for the lock another link holds. */
static void
pipe_queue(struct pgconn *pc, int i)
{
	char		 v[16], err[256];
	const char	*params[] = { v };

	snprintf(v, sizeof v, "%d", i);
	memset(&piped[i], 0, sizeof piped[i]);
	cr_assert_eq(pgconn_query(pc, i == PIPE_LOCK ? "SELECT "
	    "pg_advisory_xact_lock(1), $1::int" : "INSERT INTO seen SELECT "
	    "$1::int, (SELECT max(n) FROM seen)", 1, params, pipe_cb,
	    &piped[i], err, sizeof err), 0, "query %d: %s", i, err);
}

/* The pid of a's backend once it waits for advisory lock 1, other than
 * not (polled from b: each poll is one query answered). */
static void
pipe_waiter(struct pgconn *b, const char *not, char *pid, size_t len)
{
	struct answer	a;
	int64_t		deadline = now_ms() + HANG_MS;
	const char	*params[] = { not };

	do {
		query(b, "SELECT pid FROM pg_stat_activity WHERE "
		    "wait_event_type = 'Lock' AND query LIKE "
		    "'%pg_advisory_xact_lock(1)%' AND pid <> pg_backend_pid() "
		    "AND pid::text <> $1", 1, params, &a);
		cr_assert(a.ok, "%s", a.error);
	} while (a.value[0] == '\0' && now_ms() < deadline);
	cr_assert(a.value[0] != '\0', "no backend waits for the lock");
	snprintf(pid, len, "%s", a.value);
}

Test(pgconn, pipeline_killed_mid_flight)
{
	struct pgconn		*a = connect_piped(PIPE_N, PIPE_DEPTH);
	struct pgconn		*b = connect_pg(0);
	struct pgconn_status	 st;
	struct answer		 x;
	char			 pid[256], again[256], sql[320], err[256];

	query_ok(b, "CREATE TABLE seen (n int PRIMARY KEY, after int)", &x);
	query_ok(b, "SELECT pg_advisory_lock(1)", &x);
	pipe_answered = 0;
	for (int i = 0; i < PIPE_N; i++)
		pipe_queue(a, i);
	/* The queue's bound counts what is in flight. */
	cr_assert_eq(pgconn_query(a, "SELECT 1", 0, NULL, answer_cb, &x, err,
	    sizeof err), -1);
	cr_assert(strstr(err, "queue is full") != NULL, "%s", err);

	/* Those before the lock answered; the pipeline full behind it. */
	pipe_waiter(b, "", pid, sizeof pid);
	WAIT_FOR((pgconn_status(a, &st), st.in_flight == PIPE_DEPTH),
	    "a full pipeline");
	cr_assert_eq(pipe_answered, PIPE_LOCK);
	cr_assert_eq(st.queued, PIPE_N - PIPE_LOCK);

	/* Its backend killed: all of it again, on a new one, in order. */
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)", pid);
	query_ok(b, sql, &x);
	cr_assert_str_eq(x.value, "t");
	pipe_waiter(b, pid, again, sizeof again);
	WAIT_FOR((pgconn_status(a, &st), st.in_flight == PIPE_DEPTH &&
	    st.connects == 2), "the pipeline sent again");
	cr_assert_eq(pipe_answered, PIPE_LOCK, "no answer for what was lost");
	query_ok(b, "SELECT pg_advisory_unlock(1)", &x);
	WAIT_FOR(pipe_answered == PIPE_N, "every query answered");

	for (int i = 0; i < PIPE_N; i++) {
		cr_assert_eq(piped[i].calls, 1, "query %d answered %d times",
		    i, piped[i].calls);
		cr_assert(piped[i].ok, "query %d: %s", i, piped[i].error);
		cr_assert_eq(pipe_order[i], i, "answer %d was query %d", i,
		    pipe_order[i]);
	}
	pgconn_status(a, &st);
	cr_assert_eq(st.queued, 0);
	cr_assert_eq(st.in_flight, 0);
	/* Each insert ran once, after the one before it. */
	query_ok(b, "SELECT count(*) FILTER (WHERE after IS DISTINCT FROM "
	    "CASE n WHEN 0 THEN NULL WHEN 11 THEN 9 ELSE n - 1 END) || '/' || "
	    "count(*) FROM seen", &x);
	cr_assert_str_eq(x.value, "0/99");
	pgconn_free(a);
	pgconn_free(b);
}

/*
 * A multi-statement query between single ones: out of the pipeline and
 * back, in order; an error answers its own query only.
 */
Test(pgconn, pipeline_with_exec_and_errors)
{
	struct pgconn	*pc = connect_piped(0, 8);
	struct answer	 a[6] = { 0 }, x;

	query_ok(pc, "CREATE TABLE o (k serial, v text)", &x);
	cr_assert_eq(pgconn_query(pc, "INSERT INTO o (v) VALUES ('a')", 0,
	    NULL, answer_cb, &a[0], NULL, 0), 0);
	cr_assert_eq(pgconn_query(pc, "SELECT 1 / 0", 0, NULL, answer_cb,
	    &a[1], NULL, 0), 0);
	cr_assert_eq(pgconn_exec(pc, "INSERT INTO o (v) VALUES ('b'); "
	    "INSERT INTO o (v) VALUES ('c'); SELECT count(*) FROM o",
	    answer_cb, &a[2], NULL, 0), 0);
	cr_assert_eq(pgconn_query(pc, "INSERT INTO o (v) VALUES ('d')", 0,
	    NULL, answer_cb, &a[3], NULL, 0), 0);
	cr_assert_eq(pgconn_exec(pc, "INSERT INTO o (v) VALUES ('x'); "
	    "SELECT 1 / 0", answer_cb, &a[4], NULL, 0), 0);
	cr_assert_eq(pgconn_query(pc, "SELECT string_agg(v, '' ORDER BY k) "
	    "FROM o", 0, NULL, answer_cb, &a[5], NULL, 0), 0);
	WAIT_FOR(a[5].calls > 0, "the last query");
	for (int i = 0; i < 6; i++)
		cr_assert_eq(a[i].calls, 1, "query %d", i);
	cr_assert(a[0].ok && a[2].ok && a[3].ok && a[5].ok);
	cr_assert(strstr(a[1].error, "division by zero") != NULL, "%s",
	    a[1].error);
	cr_assert_not(a[4].ok);
	cr_assert_str_eq(a[2].value, "3", "the exec saw the insert before it");
	cr_assert_str_eq(a[5].value, "abcd");
	pgconn_free(pc);
}

/* pipeline 1: one query in flight at a time, as before pipelining. */
Test(pgconn, pipeline_of_one)
{
	struct pgconn		*a = connect_piped(0, 1), *b = connect_pg(0);
	struct pgconn_status	 st;
	struct answer		 x;
	char			 pid[256];

	query_ok(b, "CREATE TABLE seen (n int PRIMARY KEY, after int)", &x);
	query_ok(b, "SELECT pg_advisory_lock(1)", &x);
	pipe_answered = 0;
	for (int i = 0; i < 20; i++)
		pipe_queue(a, i);
	pipe_waiter(b, "", pid, sizeof pid);
	WAIT_FOR(pipe_answered == PIPE_LOCK, "those before the lock");
	pgconn_status(a, &st);
	cr_assert_eq(st.in_flight, 1);
	cr_assert_eq(st.queued, 20 - PIPE_LOCK);
	query_ok(b, "SELECT pg_advisory_unlock(1)", &x);
	WAIT_FOR(pipe_answered == 20, "every query answered");
	for (int i = 0; i < 20; i++)
		cr_assert(piped[i].ok && pipe_order[i] == i, "%d: %s", i,
		    piped[i].error);
	pgconn_free(a);
	pgconn_free(b);
}

/*
 * Statements are prepared once a connection, and run by name: their
 * count in pg_prepared_statements (a statement of this very session).  A
 * statement whose first run failed is forgotten, so the same text runs
 * once what it needs is there; a link with prepared < 0 prepares none.
 */
Test(pgconn, prepared_statements)
{
	struct pgconn_config	 cfg = { .url = pg.url, .prepared = -1 };
	struct pgconn		*pc = connect_pg(0), *none;
	struct answer		 a;
	const char		*count = "SELECT count(*) FROM "
	    "pg_prepared_statements WHERE name LIKE 'heavyd%'";
	const char		*late = "SELECT count(*) FROM late";

	for (int i = 0; i < 3; i++)
		query_ok(pc, "SELECT 1", &a);
	query_ok(pc, count, &a);
	cr_assert_str_eq(a.value, "2", "SELECT 1 once, and this one");
	query(pc, late, 0, NULL, &a);
	cr_assert_not(a.ok);
	cr_assert(strstr(a.error, "\"late\" does not exist") != NULL, "%s",
	    a.error);
	query_ok(pc, count, &a);
	cr_assert_str_eq(a.value, "2", "the failed one was not kept");
	query_ok(pc, "CREATE TABLE late (n int)", &a);
	query_ok(pc, late, &a);
	cr_assert_str_eq(a.value, "0");
	query_ok(pc, count, &a);
	cr_assert_str_eq(a.value, "4");
	/* One that parses but fails when run stays prepared, once. */
	for (int i = 0; i < 3; i++) {
		query(pc, "SELECT 1 / n FROM (SELECT 0 AS n) z", 0, NULL, &a);
		cr_assert(strstr(a.error, "division by zero") != NULL, "%s",
		    a.error);
	}
	query_ok(pc, count, &a);
	cr_assert_str_eq(a.value, "5");
	pgconn_free(pc);

	none = pgconn_new(base, &cfg);
	query_ok(none, "SELECT 1", &a);
	query_ok(none, count, &a);
	cr_assert_str_eq(a.value, "0");
	pgconn_free(none);
}

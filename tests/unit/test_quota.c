/*
 * The per-identity quotas (supervisor/quota.c) on a fake clock: the
 * windows' edges to the millisecond (UTC hours and days), the decision
 * and its Retry-After, the check and the charges of a running task
 * against a real SQLite store with identities from a tokens file, a
 * daily budget reached mid-task, a task that runs across midnight; and
 * the store's counters (store_sqlite.c): a charge sent twice counting
 * once, totals across a reopen, the sweep, and a version 1 file upgraded
 * in place.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"
#include "store_sync.h"

#define DEC5	1796428800LL	/* 2026-12-05T00:00:00Z */
#define DEC6	1796515200LL	/* 2026-12-06T00:00:00Z */
#define MS(s)	((s) * 1000LL)

static int64_t		 fake_now;
static char		 dir[256], file[300];
static struct heavy_config cfg;

static int64_t
fake_clock(void)
{
	return fake_now;
}

/* ---- windows, on the fake clock's values ---- */

Test(quota_window, an_hour_ends_at_its_last_millisecond)
{
	int64_t	last = MS(DEC5 + 3600) - 1;	/* 00:59:59.999 */

	cr_assert_eq(quota_window(QUOTA_ORCHESTRATIONS, last), DEC5);
	cr_assert_eq(quota_window_end(QUOTA_ORCHESTRATIONS, last), DEC5 + 3600);
	cr_assert_eq(quota_retry_after_s(QUOTA_ORCHESTRATIONS, last), 1);
	cr_assert_eq(quota_window(QUOTA_ORCHESTRATIONS, last + 1), DEC5 + 3600);
	cr_assert_eq(quota_retry_after_s(QUOTA_ORCHESTRATIONS, last + 1), 3600);
	cr_assert_eq(quota_retry_after_s(QUOTA_ORCHESTRATIONS,
	    MS(DEC5 + 3599)), 1, "one second left: 1");
	cr_assert_eq(quota_retry_after_s(QUOTA_ORCHESTRATIONS,
	    MS(DEC5 + 3598) + 1), 2, "a part of a second rounds up");
	cr_assert_eq(quota_window(QUOTA_ORCHESTRATIONS, MS(DEC5)), DEC5);
}

Test(quota_window, a_day_is_a_utc_day)
{
	int64_t	last = MS(DEC6) - 1;		/* 23:59:59.999 */

	for (int k = QUOTA_TOKENS; k <= QUOTA_USD; k++) {
		cr_assert_eq(quota_window(k, last), DEC5);
		cr_assert_eq(quota_window_end(k, last), DEC6);
		cr_assert_eq(quota_retry_after_s(k, last), 1);
		cr_assert_eq(quota_window(k, last + 1), DEC6);
		cr_assert_eq(quota_retry_after_s(k, last + 1), 86400);
		cr_assert_eq(quota_window(k, MS(DEC5) + 12 * 3600000), DEC5,
		    "noon is in its day");
	}
}

Test(quota_window, before_the_epoch_floors)
{
	cr_assert_eq(quota_window(QUOTA_ORCHESTRATIONS, -1), -3600);
	cr_assert_eq(quota_window(QUOTA_TOKENS, -1), -86400);
	cr_assert_eq(quota_window(QUOTA_TOKENS, 0), 0);
}

static void
limits(struct token_limits *l, double orch, double tokens, double usd)
{
	memset(l, 0, sizeof *l);
	if (orch >= 0) {
		l->set[TOKEN_ORCHESTRATIONS_PER_HOUR] = true;
		l->v[TOKEN_ORCHESTRATIONS_PER_HOUR] = orch;
	}
	if (tokens >= 0) {
		l->set[TOKEN_TOKENS_PER_DAY] = true;
		l->v[TOKEN_TOKENS_PER_DAY] = tokens;
	}
	if (usd >= 0) {
		l->set[TOKEN_USD_PER_DAY] = true;
		l->v[TOKEN_USD_PER_DAY] = usd;
	}
}

Test(quota_decide, the_first_quota_reached_with_its_reset)
{
	struct token_limits	l;
	struct quota_decision	d;
	int64_t			used[QUOTA_NKINDS] = { 2, 999, 2499999 };
	int64_t			v;
	char			why[512];

	limits(&l, 3, 1000, 2.5);
	cr_assert(quota_limit(&l, QUOTA_USD, &v));
	cr_assert_eq(v, 2500000, "USD in micro-USD");
	quota_decide(&l, used, MS(DEC5 + 1800), &d);
	cr_assert_eq(d.verdict, QUOTA_OK, "one under each limit");
	used[QUOTA_TOKENS] = 1000;
	quota_decide(&l, used, MS(DEC5 + 1800), &d);
	cr_assert_eq(d.verdict, QUOTA_BUDGET, "at the limit: reached");
	cr_assert_eq(d.kind, QUOTA_TOKENS);
	cr_assert_eq(d.resets_s, DEC6);
	cr_assert_eq(d.retry_after_s, 86400 - 1800);
	quota_text(&d, why, sizeof why);
	cr_assert_str_eq(why, "quota tokens_per_day reached: 1000 of 1000 "
	    "tokens today (UTC); it resets at 2026-12-06T00:00:00Z, in "
	    "84600 s");
	used[QUOTA_ORCHESTRATIONS] = 3;
	quota_decide(&l, used, MS(DEC5 + 3599) + 500, &d);
	cr_assert_eq(d.verdict, QUOTA_RATE, "the rate first");
	cr_assert_eq(d.retry_after_s, 1);
	quota_text(&d, why, sizeof why);
	cr_assert_str_eq(why, "quota orchestrations_per_hour reached: 3 of 3 "
	    "orchestrations this hour (UTC); it resets at "
	    "2026-12-05T01:00:00Z, in 1 s");
	used[QUOTA_ORCHESTRATIONS] = 0;
	used[QUOTA_TOKENS] = 0;
	used[QUOTA_USD] = 2500000;
	quota_decide(&l, used, MS(DEC5), &d);
	cr_assert_eq(d.kind, QUOTA_USD);
	quota_text(&d, why, sizeof why);
	cr_assert(strstr(why, "quota usd_per_day reached: $2.500000 of "
	    "$2.500000 USD today") == why, "%s", why);
	limits(&l, -1, -1, -1);
	used[QUOTA_ORCHESTRATIONS] = 1000000;
	quota_decide(&l, used, MS(DEC5), &d);
	cr_assert_eq(d.verdict, QUOTA_OK, "no limit: no quota");
	limits(&l, 0, -1, -1);
	used[QUOTA_ORCHESTRATIONS] = 0;
	quota_decide(&l, used, MS(DEC5), &d);
	cr_assert_eq(d.verdict, QUOTA_RATE, "a limit of 0 allows none");
}

/* ---- the store's counters ---- */

static void
store_setup(void)
{
	char	err[256];

	unit_tmp(dir, sizeof dir, "heavyd-quota");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
}

static void
store_teardown(void)
{
	char	cmd[320];

	store_close();
	quota_set_clock(NULL);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

struct total {
	bool	done;
	int	rc;
	int64_t	v;
};

static void
total_cb(void *arg, int rc, int64_t v)
{
	struct total	*t = arg;

	t->done = true;
	t->rc = rc;
	t->v = v;
}

static int64_t
charge(const char *who, const char *kind, int64_t w, const char *src,
    int64_t amount)
{
	struct total	t = { 0 };

	store_quota_charge(who, kind, w, src, amount, total_cb, &t);
	cr_assert(t.done && t.rc == STORE_OK, "charged");
	return t.v;
}

static int64_t
total(const char *who, const char *kind, int64_t w)
{
	struct total	t = { 0 };

	store_quota_total(who, kind, w, total_cb, &t);
	cr_assert(t.done && t.rc == STORE_OK, "read");
	return t.v;
}

TestSuite(quota_store, .init = store_setup, .fini = store_teardown);

Test(quota_store, charges_sum_per_window_once_each_and_survive_a_reopen)
{
	struct sync_answer	a = { 0 };
	char			err[256];

	cr_assert_eq(charge("id:a", "tokens", DEC5, "t1", 100), 100);
	cr_assert_eq(charge("id:a", "tokens", DEC5, "t1", 100), 100,
	    "the same charge again counts once");
	cr_assert_eq(charge("id:a", "tokens", DEC5, "t1", 150), 150);
	cr_assert_eq(charge("id:a", "tokens", DEC5, "t2", 50), 200);
	cr_assert_eq(charge("id:a", "tokens", DEC5, "t1", 120), 200,
	    "a late, smaller charge takes nothing back");
	cr_assert_eq(charge("id:a", "tokens", DEC6, "t1", 7), 7,
	    "another window");
	cr_assert_eq(charge("id:b", "tokens", DEC5, "t3", 9), 9,
	    "another identity");
	cr_assert_eq(charge("id:a", "micro_usd", DEC5, "t1", 11), 11,
	    "another kind");
	store_close();
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(total("id:a", "tokens", DEC5), 200);
	cr_assert_eq(total("id:a", "tokens", DEC6), 7);
	cr_assert_eq(total("id:a", "orchestrations", DEC5), 0, "none yet");
	store_quota_sweep(DEC6, sync_done_cb, &a);
	cr_assert(a.done);
	cr_assert_eq(a.rc, 4, "the windows before DEC6 went");
	cr_assert_eq(total("id:a", "tokens", DEC5), 0);
	cr_assert_eq(total("id:a", "tokens", DEC6), 7);
}

/* The version 1 schema, as heavyd before the quotas wrote it. */
static const char *v1_schema =
"CREATE TABLE tasks (id TEXT PRIMARY KEY, owner TEXT NOT NULL, tool TEXT "
"NOT NULL, status TEXT NOT NULL, status_message TEXT, params TEXT NOT NULL, "
"agents TEXT, result TEXT, usage TEXT, cache_key TEXT, created_ms INTEGER "
"NOT NULL, updated_ms INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, "
"expires_ms INTEGER NOT NULL, pid INTEGER NOT NULL, proc_start TEXT NOT "
"NULL);"
"CREATE INDEX tasks_by_owner ON tasks(owner, created_ms, id);"
"CREATE INDEX tasks_by_created ON tasks(created_ms);"
"CREATE INDEX tasks_by_expiry ON tasks(expires_ms);"
"CREATE INDEX tasks_by_cache ON tasks(cache_key) WHERE cache_key IS NOT "
"NULL;"
"CREATE INDEX tasks_running ON tasks(status) WHERE status = 'working';"
"INSERT INTO tasks VALUES ('0123456789abcdef0123456789abcdef', 'id:a', "
"'heavy_orchestrate', 'completed', NULL, '{}', NULL, '{\"content\":[]}', "
"NULL, NULL, 1, 1, 9000000000000, 9000000000001, 1, '');"
"PRAGMA user_version = 1;";

static int
user_version(const char *path)
{
	sqlite3		*db;
	sqlite3_stmt	*st;
	int		 v = -1;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st,
	    NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

Test(quota_store, a_version_1_file_is_upgraded_in_place)
{
	struct store_task	 t;
	sqlite3			*db;
	char			 path[320], err[256];

	store_close();
	snprintf(path, sizeof path, "%s/tasks.db", dir);
	unlink(path);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(user_version(path), 1);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(user_version(path), 5, "upgraded to the current version");
	cr_assert_eq(sync_get("0123456789abcdef0123456789abcdef", "id:a", &t),
	    STORE_OK, "the old row is kept");
	cr_assert_str_eq(t.status, "completed");
	store_task_clear(&t);
	cr_assert_eq(charge("id:a", "orchestrations", DEC5, "t1", 1), 1);
	store_close();
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(total("id:a", "orchestrations", DEC5), 1);
}

/* ---- the check and a task's charges, on the fake clock ---- */

static void
service_setup(void)
{
	struct token_limits	l;
	struct token_ident	id = { .name = "alice" };
	struct buf		text;
	char			err[512];
	int			fd;

	store_setup();
	ev_base = event_base_new();
	snprintf(file, sizeof file, "%s/tokens", dir);
	limits(&l, 2, 1000, 0.5);
	id.lim = l;
	token_digest("hvd_alice", 9, id.digest);
	buf_init(&text, 0);
	token_format(&id, &text);
	cr_assert((fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) != -1);
	cr_assert_eq(write(fd, buf_cstr(&text), strlen(buf_cstr(&text))),
	    (ssize_t)strlen(buf_cstr(&text)));
	close(fd);
	buf_free(&text);
	config_defaults(&cfg);
	cfg.auth_tokens_file = xstrdup(file);
	cr_assert_eq(auth_init(&cfg, err, sizeof err), 0, "%s", err);
	quota_set_clock(fake_clock);
}

static void
service_teardown(void)
{
	auth_stop();
	config_clear(&cfg);
	store_teardown();
	event_base_free(ev_base);
	ev_base = NULL;
}

TestSuite(quota, .init = service_setup, .fini = service_teardown);

struct checked {
	bool			 done;
	struct quota_decision	 d;
};

static void
checked_cb(void *arg, const struct quota_decision *d)
{
	struct checked	*c = arg;

	c->done = true;
	c->d = *d;
}

static struct quota_decision
check(const char *owner)
{
	struct checked	c = { 0 };

	quota_check(owner, checked_cb, &c);
	cr_assert(c.done, "SQLite answers at once");
	return c.d;
}

struct stopped {
	int	n;
	char	why[512];
};

static void
stop_cb(void *arg, const char *why)
{
	struct stopped	*s = arg;

	s->n++;
	snprintf(s->why, sizeof s->why, "%s", why);
}

Test(quota, the_hourly_rate_refuses_until_the_next_hour)
{
	struct quota_decision	d;
	struct stopped		s = { 0 };

	fake_now = MS(DEC5 + 3600) - 1000;	/* 00:59:59.000 */
	cr_assert_eq(check("id:alice").verdict, QUOTA_OK);
	quota_run_end(quota_run_start("id:alice", "t1", stop_cb, &s), NULL);
	quota_run_end(quota_run_start("id:alice", "t2", stop_cb, &s), NULL);
	d = check("id:alice");
	cr_assert_eq(d.verdict, QUOTA_RATE);
	cr_assert_eq(d.retry_after_s, 1);
	cr_assert_eq(d.used, 2);
	fake_now += 999;			/* 00:59:59.999 */
	cr_assert_eq(check("id:alice").verdict, QUOTA_RATE);
	fake_now += 1;				/* 01:00:00.000 */
	cr_assert_eq(check("id:alice").verdict, QUOTA_OK, "a new hour");
	cr_assert_eq(check("uid:1000").verdict, QUOTA_OK, "no identity");
	cr_assert_null(quota_run_start("uid:1000", "t3", stop_cb, &s),
	    "nothing charged without an identity");
	cr_assert_eq(s.n, 0);
}

static void
usage_of(struct usage *u, uint64_t tokens, uint64_t micro_usd)
{
	memset(u, 0, sizeof *u);
	u->total_tokens = tokens;
	u->cost_micro_usd = micro_usd;
}

Test(quota, a_daily_budget_reached_mid_task_stops_it_on_the_next_turn)
{
	struct quota_run	*qr;
	struct stopped		 s = { 0 };
	struct usage		 u;

	fake_now = MS(DEC5) + 5000;
	qr = quota_run_start("id:alice", "t1", stop_cb, &s);
	usage_of(&u, 600, 100);
	quota_run_usage(qr, &u);
	event_base_loop(ev_base, EVLOOP_NONBLOCK);
	cr_assert_eq(s.n, 0, "under the budget");
	usage_of(&u, 1000, 200);
	quota_run_usage(qr, &u);
	cr_assert_eq(s.n, 0, "not from inside the usage report");
	event_base_loop(ev_base, EVLOOP_NONBLOCK);
	cr_assert_eq(s.n, 1);
	cr_assert(strncmp(s.why, "quota tokens_per_day reached: 1000 of 1000 "
	    "tokens today (UTC); it resets at 2026-12-06T00:00:00Z", 96) == 0,
	    "%s", s.why);
	quota_run_end(qr, &u);
	cr_assert_eq(check("id:alice").verdict, QUOTA_BUDGET);
	cr_assert_eq(total("id:alice", "micro_usd", DEC5), 200);
	fake_now = MS(DEC6);
	cr_assert_eq(check("id:alice").verdict, QUOTA_OK, "a new day");
}

Test(quota, a_task_across_midnight_charges_each_day_its_share)
{
	struct quota_run	*qr;
	struct stopped		 s = { 0 };
	struct usage		 u;

	fake_now = MS(DEC6) - 1;		/* 23:59:59.999 */
	qr = quota_run_start("id:alice", "t1", stop_cb, &s);
	usage_of(&u, 500, 0);
	quota_run_usage(qr, &u);
	fake_now = MS(DEC6);			/* 00:00:00.000 */
	usage_of(&u, 800, 0);
	quota_run_usage(qr, &u);
	quota_run_end(qr, &u);
	event_base_loop(ev_base, EVLOOP_NONBLOCK);
	cr_assert_eq(total("id:alice", "tokens", DEC5), 500);
	cr_assert_eq(total("id:alice", "tokens", DEC6), 300);
	cr_assert_eq(total("id:alice", "orchestrations", DEC5 + 23 * 3600), 1,
	    "started in the day's last hour");
	cr_assert_eq(s.n, 0);
}

Test(quota, an_ended_task_is_never_stopped)
{
	struct quota_run	*qr;
	struct stopped		 s = { 0 };
	struct usage		 u;

	fake_now = MS(DEC5);
	qr = quota_run_start("id:alice", "t1", stop_cb, &s);
	usage_of(&u, 5000, 0);
	quota_run_end(qr, &u);		/* over, but ended with it */
	event_base_loop(ev_base, EVLOOP_NONBLOCK);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(total("id:alice", "tokens", DEC5), 5000);
}

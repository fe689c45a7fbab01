/*
 * The durable half of the tasks (supervisor/durable.c) over a PostgreSQL
 * store that is away: whoever waits for a task's first write (a task is
 * announced only once its row is stored) hears that write's answer, not
 * the answer of a later write of the same task refused by a full queue.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/pgconn.h"
#include "pgtest.h"

#define HANG_MS		PGTEST_HANG_MS

static struct pgtest		 pg;
static struct heavy_config	 cfg;
static struct event		*tick;
static char			 dir[PATH_MAX];


#define WAIT_FOR(cond, what)	PGTEST_WAIT(ev_base, cond, what)

static int
queued(void)
{
	struct pgconn_status	st;

	pgconn_status(store_pg_conn(), &st);
	return st.queued;
}

static void
setup(void)
{

	ev_base = event_base_new();
	tick = pgtest_tick(ev_base);
	pgtest_init(&pg);
	config_defaults(&cfg);
	unit_tmp(dir, sizeof dir, "heavyd-durable");
	cr_assert_not_null(mkdtemp(dir));
	config_set_str(&cfg.state_dir, dir);
	config_set_str(&cfg.store_url, pg.url);
	cfg.store_max_queue = 2;	/* opening needs two; two tasks fill it */
	cfg.store_write_ms = 0;		/* a change is written at once */
	cfg.store_retry_max_ms = 200;
	cfg.store_lease_ttl_ms = 600000;	/* no renewal in the queue */
	registry_init();
	durable_init(&cfg);
	/* Opening settles and sweeps: let those be answered first. */
	WAIT_FOR(queued() == 0, "the store's opening queries");
}

static void
teardown(void)
{
	char	cmd[PATH_MAX + 16];

	registry_free();
	durable_stop();
	durable_close();
	pgtest_destroy(&pg);
	config_clear(&cfg);
	event_free(tick);
	event_base_free(ev_base);
	ev_base = NULL;
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

struct told {
	int	n;
	bool	stored;
};

static void
told_cb(void *arg, bool stored)
{
	struct told	*t = arg;

	t->n++;
	t->stored = stored;
}

Test(durable_pg, the_first_write_is_told_its_own_answer, .init = setup,
    .fini = teardown, .timeout = 300)
{
	struct task_record	*r, *other;
	struct told		 t = { 0 };
	const char		*id = "0123456789abcdef0123456789abcdef";

	pgtest_stop(&pg);
	r = registry_new("uid:1000", "heavy_orchestrate");
	r->ttl_ms = 600000;
	registry_add(r, NULL, id, now_ms());	/* its first write, held */
	durable_when_stored(id, told_cb, &t);
	other = registry_new("uid:1000", "heavy_orchestrate");
	other->ttl_ms = 600000;
	registry_add(other, NULL, "fedcba9876543210fedcba9876543210", now_ms());
	cr_assert_eq(queued(), 2, "both first writes wait: the queue is full");
	registry_touch(r);			/* a second write: refused */
	WAIT_FOR(strstr(store_error(), "queue is full") != NULL,
	    "the second write refused");
	/* A few more turns: an answer misattributed would arrive now. */
	for (int i = 0; i < 10; i++)
		event_base_loop(ev_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	cr_assert_eq(t.n, 0, "the refusal of a later write said nothing of "
	    "the first (told %s)", t.stored ? "stored" : "not stored");
	pgtest_start(&pg);
	WAIT_FOR(t.n > 0, "the first write's answer");
	cr_assert_eq(t.n, 1);
	cr_assert(t.stored, "the first write was stored once the server "
	    "came back, and its waiter heard so");
	WAIT_FOR(queued() == 0, "the queue drained");	/* room for the ends */
}

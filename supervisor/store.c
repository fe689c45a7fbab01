/*
 * The task store's front: it picks the backend (by the URL's scheme; no
 * URL, the embedded SQLite file) and times every write for the metrics.
 * What every backend shares is in store_row.c.
 *
 * A row names the process that ran its task (pid, start time, boot id),
 * so a task counts as interrupted only when its own process is gone, never
 * because another heavyd started.  Only that process writes a task's row,
 * and a terminal row never changes again.  A finished row expires at
 * created + ttl: lookups skip it at once, the sweep deletes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"
#include "metrics.h"

static const struct store_backend *const store_backends[] = {
	&store_sqlite,
	&store_pg,
};
static const struct store_backend *sb;	/* the one open */
#define STORE_WATCHERS	4
static store_event_fn	 store_watchers[STORE_WATCHERS];
static void	store_event(enum store_event, const char *);

#ifdef HEAVY_TEST_STORE_DEFER
/*
 * A test build, build/defer/heavyd, holds every answer back to a later
 * turn of the loop, as a backend that waits for its server does: the
 * callers must be right either way, and the integration tests run against
 * both (scripts/deferred-integration).
 */
#include "store_defer.h"
#else
#define STORE_DEFER_DONE(cb, arg)	do { } while (0)
#define STORE_DEFER_ROW(cb, arg)	do { } while (0)
#define STORE_DEFER_ROWS(cb, arg)	do { } while (0)
#define STORE_DEFER_TOTAL(cb, arg)	do { } while (0)
#endif

/* The backend that serves url (NULL: the embedded one), or NULL. */
static const struct store_backend *
store_backend_for(const char *url)
{
	for (size_t i = 0; i < sizeof store_backends / sizeof store_backends[0];
	    i++)
		if (store_backends[i]->serves(url))
			return store_backends[i];
	return NULL;
}

int
store_open(const struct store_options *o, char *err, size_t errlen)
{
	const struct store_backend	*b;

	store_self_init();
	if ((b = store_backend_for(o->url)) == NULL) {
		snprintf(err, errlen, "task store: no backend in this heavyd "
		    "serves %.*s (known: sqlite, the default; postgresql)",
		    (int)strcspn(o->url, ":"), o->url);
		return -1;
	}
	if (b->open(o, err, errlen) == -1)
		return -1;
	sb = b;
	if (store_watchers[0] != NULL && sb->watch != NULL)
		sb->watch(store_event);
	return 0;
}

void
store_close(void)
{
	if (sb != NULL)
		sb->close();
	sb = NULL;
}

const char *
store_backend_name(void)
{
	return sb != NULL ? sb->name : "none";
}

/* Why the last call that failed did. */
const char *
store_error(void)
{
	return sb != NULL ? sb->error() : "the task store is not open";
}

int
store_durability(void)
{
	return sb != NULL ? sb->durability() : -1;
}

/*
 * For /readyz: a backend whose server is away, or whose queue of writes
 * is full, takes no new work (why says which).
 */
bool
store_ready(char *why, size_t len)
{
	if (sb == NULL) {
		snprintf(why, len, "the task store is not open");
		return false;
	}
	return sb->ready == NULL || sb->ready(why, len);
}

static void
store_event(enum store_event ev, const char *id)
{
	for (int i = 0; i < STORE_WATCHERS && store_watchers[i] != NULL; i++)
		store_watchers[i](ev, id);
}

/*
 * fn hears of the tasks that end and the cancels asked for in any process
 * on the store, when the backend can tell (a server's notifications);
 * else never, and whoever waits polls.
 */
void
store_watch(store_event_fn fn)
{
	int	i;

	for (i = 0; i < STORE_WATCHERS && store_watchers[i] != NULL; i++)
		if (store_watchers[i] == fn)
			return;
	if (i == STORE_WATCHERS)
		fatalx("store_watch: more than %d watchers", STORE_WATCHERS);
	store_watchers[i] = fn;
	if (i == 0 && sb != NULL && sb->watch != NULL)
		sb->watch(store_event);
}

/*
 * A cancel for a task another process runs: recorded, and that process
 * told (a failure is logged).  False when the backend cannot.
 */
static void
store_cancel_done(void *arg, int rc)
{
	char	*id = arg;

	if (rc == STORE_ERROR)
		log_warnx("task %s: the cancel could not be recorded: %s", id,
		    store_error());
	free(id);
}

bool
store_cancel(const char *id, const char *owner)
{
	store_done_cb	 cb = store_cancel_done;
	void		*arg;

	if (sb == NULL || sb->cancel == NULL)
		return false;
	arg = xstrdup(id);
	STORE_DEFER_DONE(cb, arg);
	sb->cancel(id, owner, cb, arg);
	return true;
}

/* A write in flight: timed from its start to its callback. */
struct store_write {
	const char	*op;
	int64_t		 t0;
	store_done_cb	 cb;
	void		*arg;
};

static void
store_write_done(void *arg, int rc)
{
	struct store_write	*w = arg;

	metrics_store_write(w->op, now_us() - w->t0, rc != STORE_ERROR);
	if (w->cb != NULL)
		w->cb(w->arg, rc);
	free(w);
}

static struct store_write *
store_write_new(const char *op, store_done_cb cb, void *arg)
{
	struct store_write	*w = xmalloc(sizeof *w);

	w->op = op;
	w->t0 = now_us();
	w->cb = cb;
	w->arg = arg;
	return w;
}

void
store_put(const struct store_task *t, int n, store_done_cb cb, void *arg)
{
	STORE_DEFER_DONE(cb, arg);
	if (sb == NULL) {
		cb(arg, STORE_ERROR);
		return;
	}
	sb->put(t, n, store_write_done, store_write_new("put", cb, arg));
}

void
store_sweep(int max_rows, store_done_cb cb, void *arg)
{
	STORE_DEFER_DONE(cb, arg);
	if (sb == NULL) {
		cb(arg, STORE_ERROR);
		return;
	}
	sb->sweep(max_rows, store_write_done, store_write_new("sweep", cb,
	    arg));
}

void
store_settle(store_done_cb cb, void *arg)
{
	STORE_DEFER_DONE(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR);
	else
		sb->settle(cb, arg);
}

void
store_get(const char *id, const char *owner, store_row_cb cb, void *arg)
{
	STORE_DEFER_ROW(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR, NULL);
	else
		sb->get(id, owner, cb, arg);
}

void
store_list(const char *owner, const char *cursor, int limit,
    store_rows_cb cb, void *arg)
{
	STORE_DEFER_ROWS(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
	else
		sb->list(owner, cursor, limit, cb, arg);
}

void
store_active(const char *owner, store_rows_cb cb, void *arg)
{
	STORE_DEFER_ROWS(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
	else
		sb->active(owner, cb, arg);
}

void
store_ids(const char *owner, const char *prefix, int limit,
    store_rows_cb cb, void *arg)
{
	STORE_DEFER_ROWS(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
	else
		sb->ids(owner, prefix, limit, cb, arg);
}

void
store_cache_find(const char *owner, const char *key, int64_t max_age_ms,
    store_row_cb cb, void *arg)
{
	STORE_DEFER_ROW(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR, NULL);
	else
		sb->cache_find(owner, key, max_age_ms, cb, arg);
}


/* A charge is a write: timed as one. */
struct store_charge {
	int64_t		 t0;
	store_total_cb	 cb;
	void		*arg;
};

static void
store_charge_done(void *arg, int rc, int64_t total)
{
	struct store_charge	*w = arg;

	metrics_store_write("quota", now_us() - w->t0, rc != STORE_ERROR);
	w->cb(w->arg, rc, total);
	free(w);
}

void
store_quota_charge(const char *identity, const char *kind, int64_t window,
    const char *source, int64_t amount, store_total_cb cb, void *arg)
{
	struct store_charge	*w;

	STORE_DEFER_TOTAL(cb, arg);
	if (sb == NULL) {
		cb(arg, STORE_ERROR, 0);
		return;
	}
	w = xmalloc(sizeof *w);
	w->t0 = now_us();
	w->cb = cb;
	w->arg = arg;
	sb->quota_charge(identity, kind, window, source, amount,
	    store_charge_done, w);
}

void
store_quota_total(const char *identity, const char *kind, int64_t window,
    store_total_cb cb, void *arg)
{
	STORE_DEFER_TOTAL(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR, 0);
	else
		sb->quota_total(identity, kind, window, cb, arg);
}

void
store_quota_sweep(int64_t before, store_done_cb cb, void *arg)
{
	STORE_DEFER_DONE(cb, arg);
	if (sb == NULL)
		cb(arg, STORE_ERROR);
	else
		sb->quota_sweep(before, cb, arg);
}

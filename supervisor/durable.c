/*
 * The durable half of the tasks.  Every task of this process is written
 * through to the task store (store.c) by a registry watcher: inserted when
 * it starts, updated as it moves on, and written with its result when it
 * ends.  Every lookup that misses this process's registry falls back to
 * the store, so a client that restarts heavyd gets its earlier tasks
 * back, and the tasks of another live heavyd of the same owner are
 * visible.  The registry is the live cache; the store is the one place
 * where finished tasks are kept, expire and are evicted.
 *
 * A task's start, its questions, each agent's end (done, failed, timed
 * out) and the task's end are written at once, before the supervisor does
 * anything else, so a kill -9 never loses one and no id is announced
 * before its row exists.  Everything else (notes, heartbeats, the later
 * phases) is throttled to one write every store_write_ms, and the writes
 * that fall due in one turn of the loop share one transaction.  A final
 * write that fails is kept here and retried, so a finished task is never
 * lost while this process lives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

#define DURABLE_SIG	(2 * HEAVY_MAX_AGENTS + 2)

/* One running task of this process, as the store last saw it. */
struct durable_entry {
	char			 id[33];
	struct task_record	*r;
	int64_t			 last_ms;	/* monotonic: its last write */
	char			 sig[DURABLE_SIG];	/* what it showed */
	struct event		*timer;		/* a write put off */
	bool			 failing;	/* its last write failed */
	bool			 stored;	/* a write of it succeeded */
	bool			 sent;		/* its first write went out */
	bool			 answered;	/* ... and was answered */
	bool			 dirty;		/* in the next flush */
	/* Told once the first write is done (durable_when_stored). */
	void			(*on_stored)(void *, bool);
	void			*on_stored_arg;
	TAILQ_ENTRY(durable_entry) dirty_entry;
};
static TAILQ_HEAD(, durable_entry) dur_dirty = TAILQ_HEAD_INITIALIZER(dur_dirty);
static struct event	*dur_flush;	/* at the end of this turn */

static struct lh_table	*dur_live;	/* id -> entry */
static struct lh_table	*dur_pending;	/* id -> final row not yet stored */
static struct event	*dur_sweep;
static int		 dur_write_ms, dur_max_rows, dur_ends, dur_busy_ms;
static void		(*dur_idle)(void);	/* at shutdown: no write in flight */

/* A task claimed to resume, started on the next turn of the loop (the
 * store's call is not the place to start one). */
struct durable_resume {
	struct store_task	 row;
	char			*from, *why;
	struct event		*ev;
	TAILQ_ENTRY(durable_resume) entry;
};
static TAILQ_HEAD(, durable_resume) dur_resumes =
    TAILQ_HEAD_INITIALIZER(dur_resumes);
static durable_resume_fn	 dur_resume;	/* NULL: none resumed */
static struct heavy_config	*dur_cfg;	/* what a resumed task runs by */
static struct event	*dur_idle_limit;

static const char *
json_text(struct json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
}

static const char *
durable_status(const struct task_record *r)
{
	static const char	*names[] = { "working", "working", "completed",
	    "failed", "cancelled" };

	return r->finished ? names[r->status] : "working";
}

static bool
durable_running(const char *status)
{
	return strcmp(status, "pending") == 0 || strcmp(status, "running") == 0;
}

/* What a running task is doing, in a few words, for statusMessage. */
static char *
durable_doing(const struct store_progress *p)
{
	const char	*phase = p->phase;
	int		 done = 0;

	for (int i = 0; i < p->nagents; i++)
		done += p->agents[i].status != NULL &&
		    !durable_running(p->agents[i].status);
	if (phase == NULL || strcmp(phase, "planning") == 0)
		return xstrdup("planning: writing the sub-questions");
	if (strcmp(phase, "agents") == 0)
		return xasprintf("agents: %d of %d finished", done, p->nagents);
	if (strcmp(phase, "review") == 0)
		return xstrdup("peer review: the agents rank the answers");
	if (strcmp(phase, "synthesis") == 0)
		return xstrdup("synthesis: merging the answers");
	return xstrdup("finishing");
}

/* The task's usage: its sum once it ended, else the running sum. */
static void
durable_usage(const struct task_record *r, struct store_task *t)
{
	struct task_view	 v;

	if (r->finished)
		t->usage = r->usage;
	else if (r->task != NULL) {
		task_snapshot(r->task, &v);
		t->usage = v.usage;
	} else
		return;
	t->has_usage = true;
}

/* What was asked and of how many agents, typed, from the arguments the
 * record holds (an object, never text read back). */
static void
durable_asked(const struct task_record *r, struct store_task *t)
{
	struct json_object	*v;

	if (r->params == NULL)
		return;
	if (json_object_object_get_ex(r->params, "query", &v) &&
	    json_object_is_type(v, json_type_string))
		t->query = xstrdup(json_object_get_string(v));
	if (json_object_object_get_ex(r->params, "num_agents", &v))
		t->num_agents = json_object_get_int(v);
}

/* The row of a record, as it is now. */
void
durable_row(const struct task_record *r, struct store_task *t)
{
	memset(t, 0, sizeof *t);
	registry_progress(r, &t->progress);
	snprintf(t->id, sizeof t->id, "%s", r->id);
	t->owner = xstrdup(r->owner);
	t->tool = xstrdup(r->tool);
	t->status = xstrdup(durable_status(r));
	if (!r->finished)
		t->status_message = durable_doing(&t->progress);
	else if (r->error != NULL)
		t->status_message = xstrdup(r->error);
	t->params = xstrdup(r->params ? json_text(r->params) : "{}");
	durable_asked(r, t);
	store_args_copy(&t->args, &r->args);
	if (r->finished)
		t->result = taskresult_copy(r->result);
	durable_usage(r, t);
	if (r->cache_key != NULL && (!r->finished || r->cacheable))
		t->cache_key = xstrdup(r->cache_key);
	t->created_ms = r->start_time_ms;
	t->updated_ms = r->updated_ms;
	t->ttl_ms = r->ttl_ms;
	t->pid = getpid();
	t->ours = true;
}

/*
 * Each agent's status and whether it has its question yet: a change here
 * (the questions ready, an agent's end) is written at once.
 */
static void
durable_sig(const struct task_record *r, char *sig)
{
	struct task_view	v;
	int			i;

	if (r->task == NULL) {
		snprintf(sig, DURABLE_SIG, "-");
		return;
	}
	task_snapshot(r->task, &v);
	for (i = 0; i < v.num_agents; i++) {
		sig[2 * i] = v.agents[i].status[0] == 't' ? 'T' :
		    v.agents[i].status[0];
		sig[2 * i + 1] = v.agents[i].question != NULL ? 'q' : '-';
	}
	sig[2 * i] = '\0';
}

/* Whoever waits for the task's first write hears how it went. */
static void
durable_tell_stored(struct durable_entry *e)
{
	void	(*fn)(void *, bool) = e->on_stored;

	if (fn == NULL)
		return;
	e->on_stored = NULL;
	fn(e->on_stored_arg, e->stored);
}

/* Entries are looked up by id when a write is done: the task may have
 * ended meanwhile, when the store answers on a later turn. */
static void
durable_written(const char *id, bool first, int rc)
{
	struct durable_entry	*e;
	struct lh_entry		*le;

	if (dur_live == NULL || (le = lh_table_lookup_entry(dur_live,
	    id)) == NULL)
		return;
	e = lh_entry_v(le);
	if (rc == STORE_ERROR && !e->failing)
		log_with(LOG_LVL_WARN, &(struct log_fields){ .task_id = e->id },
		    "task store: cannot record task %s yet; retrying with its "
		    "next change", e->id);
	e->failing = rc == STORE_ERROR;
	e->stored = e->stored || rc != STORE_ERROR;
	/* Only the first write's answer: a later one refused (a full queue)
	 * says nothing of the first, which may still be written. */
	if (first) {
		e->answered = true;
		durable_tell_stored(e);
	}
}

/* The ids of rows in one write. */
struct durable_batch {
	int	n;
	struct {
		char	id[33];
		bool	first;		/* the entry's first write */
	}	rows[];
};

static void
durable_batch_done(void *arg, int rc)
{
	struct durable_batch	*b = arg;

	for (int i = 0; i < b->n; i++)
		durable_written(b->rows[i].id, b->rows[i].first, rc);
	free(b);
}

/* The rows of these entries, as they are now, in one write. */
static void
durable_write(struct durable_entry **es, int n)
{
	struct store_task	*rows = xcalloc((size_t)n, sizeof *rows);
	struct durable_batch	*b = xmalloc(sizeof *b + (size_t)n *
	    sizeof b->rows[0]);

	b->n = n;
	for (int i = 0; i < n; i++) {
		durable_row(es[i]->r, &rows[i]);
		memcpy(b->rows[i].id, es[i]->id, sizeof b->rows[i].id);
		b->rows[i].first = !es[i]->sent;
		es[i]->sent = true;
	}
	store_put(rows, n, durable_batch_done, b);
	for (int i = 0; i < n; i++)
		store_task_clear(&rows[i]);
	free(rows);
}

/* Every task written since the last flush, in one transaction. */
static void
durable_flush_cb(evutil_socket_t fd, short events, void *arg)
{
	struct durable_entry	*e, **es = NULL;
	int			 n = 0;

	(void)fd; (void)events; (void)arg;
	while ((e = TAILQ_FIRST(&dur_dirty)) != NULL) {
		TAILQ_REMOVE(&dur_dirty, e, dirty_entry);
		e->dirty = false;
		es = xrealloc(es, (size_t)(n + 1) * sizeof *es);
		es[n++] = e;
	}
	if (n > 0)	/* none: they ended first, and were written then */
		durable_write(es, n);
	free(es);
}

/* Written now, ahead of anything a throttled write had due. */
static void
durable_write_now(struct durable_entry *e)
{
	evtimer_del(e->timer);
	if (e->dirty) {
		TAILQ_REMOVE(&dur_dirty, e, dirty_entry);
		e->dirty = false;
	}
	durable_write(&e, 1);
	e->last_ms = now_ms();
	durable_sig(e->r, e->sig);
}

/* Written at the end of this turn of the loop. */
static void
durable_mark(struct durable_entry *e)
{
	struct timeval	now = { 0, 0 };

	e->last_ms = now_ms();
	durable_sig(e->r, e->sig);
	if (e->dirty)
		return;
	e->dirty = true;
	TAILQ_INSERT_TAIL(&dur_dirty, e, dirty_entry);
	if (!evtimer_pending(dur_flush, NULL))
		evtimer_add(dur_flush, &now);
}

static void
durable_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	durable_mark(arg);
}

static struct durable_entry *
durable_entry(struct task_record *r)
{
	struct durable_entry	*e;
	struct lh_entry		*le;

	if ((le = lh_table_lookup_entry(dur_live, r->id)) != NULL)
		return lh_entry_v(le);
	e = xcalloc(1, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", r->id);
	e->r = r;
	e->timer = evtimer_new(ev_base, durable_timer_cb, e);
	lh_table_insert(dur_live, e->id, e);
	return e;
}

static void
durable_entry_free(struct durable_entry *e)
{
	if (e->dirty)
		TAILQ_REMOVE(&dur_dirty, e, dirty_entry);
	lh_table_delete(dur_live, e->id);
	event_free(e->timer);
	free(e);
}

/*
 * A task's final row, from its end until the store has it: lookups find
 * it here meanwhile, and a write that failed is tried again.
 */
struct durable_final {
	struct store_task	 row;
	bool			 inflight;	/* a write of it is under way */
	bool			 failed;	/* one did not succeed */
	bool			 orphan;	/* durable_stop let go of it */
	struct task_record	*held;		/* until its first write is done */
	/* The task ended before its first write was answered: whoever
	 * waited for that hears once the end is written or kept here. */
	void			(*on_stored)(void *, bool);
	void			*on_stored_arg;
};

static void
durable_final_free(struct durable_final *f)
{
	store_task_clear(&f->row);
	free(f);
}

static void
durable_pending_free(struct lh_entry *le)
{
	struct durable_final	*f = lh_entry_v(le);

	free((void *)lh_entry_k(le));
	if (f->inflight)
		f->orphan = true;	/* its write's callback frees it */
	else
		durable_final_free(f);
}

static void	durable_check_idle(void);

/* A final row's write is done: kept (and retried) until it succeeds. */
static void
durable_final_done(void *arg, int rc)
{
	struct durable_final	*f = arg;
	struct task_record	*held = f->held;
	struct log_fields	 lf = { .task_id = f->row.id };
	void			(*stored)(void *, bool) = f->on_stored;

	f->inflight = false;
	f->held = NULL;
	f->on_stored = NULL;
	/* Announced before the end goes out; served from here if the
	 * write failed, so the task is there either way. */
	if (stored != NULL)
		stored(f->on_stored_arg, true);
	if (f->orphan)
		durable_final_free(f);
	else if (rc == STORE_ERROR && !f->failed) {
		f->failed = true;
		log_with(LOG_LVL_WARN, &lf, "task store: cannot record the end "
		    "of task %s; keeping it in memory and retrying", f->row.id);
	} else if (rc != STORE_ERROR) {
		if (rc == STORE_TERMINAL)
			log_with(LOG_LVL_INFO, &lf, "task store: the end of task "
			    "%s was refused: its row had already ended (another "
			    "node took it over)", f->row.id);
		if (f->failed)
			log_with(LOG_LVL_INFO, &lf, "task store: recorded the "
			    "end of task %s", f->row.id);
		lh_table_delete(dur_pending, f->row.id);	/* frees f */
	}
	if (held != NULL)	/* written, or kept here: the others hear */
		registry_release(held);
	durable_check_idle();
}

static void
durable_final_write(struct durable_final *f)
{
	f->inflight = true;
	store_put(&f->row, 1, durable_final_done, f);
}

/* Final rows whose write failed: again, until they are written. */
static void
durable_retry(void)
{
	struct lh_entry		*le, *tmp;
	struct durable_final	*f;

	lh_foreach_safe(dur_pending, le, tmp) {
		f = lh_entry_v(le);
		if (!f->inflight && f->failed)
			durable_final_write(f);
	}
}

static void
durable_swept(void *arg, int n)
{
	(void)arg;
	if (n > 0)
		log_debug("task store: %d expired or excess task(s) deleted", n);
}

static void	durable_settled(void *, int);

/* The rows of dead processes are settled (resumed or failed) here too:
 * another heavyd on the store may have died since the start. */
static void
durable_sweep(void)
{
	dur_ends = 0;
	durable_retry();
	store_sweep(dur_max_rows, durable_swept, NULL);
	if (dur_resume != NULL)
		store_settle(durable_settled, NULL);
}

static void
durable_resume_free(struct durable_resume *dr)
{
	TAILQ_REMOVE(&dur_resumes, dr, entry);
	event_free(dr->ev);
	store_task_clear(&dr->row);
	free(dr->from);
	free(dr->why);
	free(dr);
}

static void
durable_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	struct durable_resume	*dr = arg;

	(void)fd; (void)events;
	dur_resume(dur_cfg, &dr->row, dr->from, dr->why);
	durable_resume_free(dr);
}

/* The store claimed a task of a dead heavyd for this one. */
static void
durable_resumed(const struct store_task *row, const char *from,
    const char *why)
{
	struct durable_resume	*dr = xcalloc(1, sizeof *dr);
	struct timeval		 now = { 0, 0 };

	store_task_copy(&dr->row, row);
	dr->from = xstrdup(from);
	dr->why = xstrdup(why);
	dr->ev = evtimer_new(ev_base, durable_resume_cb, dr);
	TAILQ_INSERT_TAIL(&dur_resumes, dr, entry);
	evtimer_add(dr->ev, &now);
}

/*
 * Who starts again the tasks of dead heavyds that this one claims (the
 * task service, told from above); before durable_init.  Without it they
 * are failed as interrupted.
 */
void
durable_on_resume(durable_resume_fn fn)
{
	dur_resume = fn;
}

static void
durable_sweep_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	durable_sweep();
}

/*
 * The task ended: its final row, now, and nobody else hears of the end
 * until the store has answered (written, or failed: then the row stays
 * here, served and retried).  The row cap is applied every max_rows/100
 * ends (and at every sweep), so it costs little per task.
 */
static void
durable_end(struct durable_entry *e)
{
	struct durable_final	*f = xcalloc(1, sizeof *f);

	evtimer_del(e->timer);
	durable_row(e->r, &f->row);
	f->held = e->r;
	f->on_stored = e->on_stored;	/* NULL once told */
	f->on_stored_arg = e->on_stored_arg;
	registry_hold(e->r);
	durable_entry_free(e);
	lh_table_insert(dur_pending, xstrdup(f->row.id), f);
	durable_final_write(f);
	if (++dur_ends >= (dur_max_rows / 100 > 1 ? dur_max_rows / 100 : 1))
		durable_sweep();
}

/* The watcher: every start, step and end of a record of this process. */
static void
durable_watch(struct task_record *r)
{
	struct durable_entry	*e = durable_entry(r);
	struct timeval		 tv;
	char			 sig[DURABLE_SIG];
	int64_t			 wait;

	if (r->finished) {
		durable_end(e);
		return;
	}
	durable_sig(r, sig);
	wait = e->last_ms + dur_write_ms - now_ms();
	if (e->last_ms == 0 || strcmp(sig, e->sig) != 0)
		durable_write_now(e);
	else if (wait <= 0) {
		evtimer_del(e->timer);
		durable_mark(e);
	} else if (!evtimer_pending(e->timer, NULL)) {
		tv.tv_sec = wait / 1000;
		tv.tv_usec = (wait % 1000) * 1000;
		evtimer_add(e->timer, &tv);
	}
}

/*
 * News from the store about a task of this process: a cancel asked for on
 * another node (as a tasks/cancel here would do), or the lease on it lost
 * (another node took it over: its workers stop at once, and its end is
 * refused by the store's fence).
 */
static void
durable_store_event(enum store_event ev, const char *id)
{
	struct durable_entry	*e;
	struct lh_entry		*le;

	if (ev == STORE_EVENT_END || dur_live == NULL ||
	    (le = lh_table_lookup_entry(dur_live, id)) == NULL)
		return;
	e = lh_entry_v(le);
	if (ev == STORE_EVENT_LOST) {
		registry_interrupt(e->r, "interrupted: this node lost its lease "
		    "on the task", now_ms());
		return;
	}
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = e->id },
	    "task %s cancelled from another node", e->id);
	registry_cancel(e->r, "cancelled from another node: its workers were "
	    "killed", now_ms());
}

static void
durable_settled(void *arg, int n)
{
	(void)arg;
	if (n > 0)
		log_info("task store: %d interrupted task(s) marked failed", n);
}

/*
 * Opens <state_dir>/tasks.db (fatal if it cannot be opened or created; a
 * corrupt one is moved aside), marks the tasks of dead processes failed,
 * sweeps, and watches the registry as its first watcher
 * (REGISTRY_WATCH_STORE), so the store has a task's end before anyone
 * hears of it.
 */
void
durable_init(const struct heavy_config *cfg)
{
	struct store_options	o = { .state_dir = cfg->state_dir,
	    .url = cfg->store_url, .busy_ms = cfg->store_busy_ms,
	    .sync_full = strcmp(cfg->store_synchronous, "full") == 0,
	    .max_queue = cfg->store_max_queue,
	    .pipeline = cfg->store_pipeline,
	    .prepared = cfg->store_prepared > 0 ? cfg->store_prepared : -1,
	    .connect_timeout_ms = cfg->store_connect_timeout_s * 1000,
	    .retry_max_ms = cfg->store_retry_max_ms,
	    .node_id = cfg->node_id, .lease_ttl_ms = cfg->store_lease_ttl_ms };
	struct timeval		tv = { cfg->store_sweep_s, 0 };
	char			err[512];

	if (store_open(&o, err, sizeof err) == -1)
		fatalx("%s", err);
	dur_write_ms = cfg->store_write_ms;
	dur_busy_ms = cfg->store_busy_ms;
	dur_max_rows = cfg->max_retained_tasks;
	dur_live = lh_kchar_table_new(64, NULL);
	dur_pending = lh_kchar_table_new(16, durable_pending_free);
	if (dur_resume != NULL) {
		dur_cfg = config_dup(cfg);
		store_resume(durable_resumed);
	}
	store_settle(durable_settled, NULL);
	durable_sweep();
	dur_sweep = event_new(ev_base, -1, EV_PERSIST, durable_sweep_cb, NULL);
	event_add(dur_sweep, &tv);
	dur_flush = evtimer_new(ev_base, durable_flush_cb, NULL);
	registry_watch(REGISTRY_WATCH_STORE, durable_watch);
	store_watch(durable_store_event);
}

/*
 * fn hears whether the task's row is in the store, once its first write
 * is done: a task is announced only once it is, so that an id a client
 * holds outlives this process.
 */
void
durable_when_stored(const char *id, void (*fn)(void *, bool), void *arg)
{
	struct durable_entry	*e;
	struct lh_entry		*le;

	if (dur_live == NULL || (le = lh_table_lookup_entry(dur_live,
	    id)) == NULL) {
		fn(arg, false);
		return;
	}
	e = lh_entry_v(le);
	e->on_stored = fn;
	e->on_stored_arg = arg;
	if (e->answered)
		durable_tell_stored(e);
}

/* Final rows whose write has yet to be answered. */
static bool
durable_inflight(void)
{
	struct lh_entry	*le;

	lh_foreach(dur_pending, le)
		if (((struct durable_final *)lh_entry_v(le))->inflight)
			return true;
	return false;
}

static void
durable_drain_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	*(bool *)arg = true;
}

/*
 * The loop turns until the store has answered every final write in
 * flight, or for the store's busy timeout at most: a backend that waits
 * for its server answers on a later turn.
 */
static void
durable_drain(void)
{
	struct timeval	 tv = { dur_busy_ms / 1000, (dur_busy_ms % 1000) * 1000 };
	struct event	*limit;
	bool		 over = false;

	if (!durable_inflight())
		return;
	limit = evtimer_new(ev_base, durable_drain_cb, &over);
	evtimer_add(limit, &tv);
	while (!over && durable_inflight())
		event_base_loop(ev_base, EVLOOP_ONCE);
	event_free(limit);
}

/* Whoever waits for no write in flight hears, once. */
static void
durable_idle_now(void)
{
	void	(*fn)(void) = dur_idle;

	dur_idle = NULL;
	if (dur_idle_limit != NULL) {
		event_free(dur_idle_limit);
		dur_idle_limit = NULL;
	}
	if (fn != NULL)
		fn();
}

static void
durable_check_idle(void)
{
	if (dur_idle != NULL && !durable_inflight())
		durable_idle_now();
}

static void
durable_idle_limit_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	log_warnx("task store: writes still unanswered after %d ms; going on",
	    dur_busy_ms);
	durable_idle_now();
}

/*
 * At shutdown, once the tasks have ended: fn runs when the store has
 * answered every final write in flight (their replies and notices have
 * then gone to the transports), or after the store's busy timeout.
 */
void
durable_when_idle(void (*fn)(void))
{
	struct timeval	tv = { dur_busy_ms / 1000, (dur_busy_ms % 1000) * 1000 };

	dur_idle = fn;
	if (dur_pending == NULL || !durable_inflight()) {
		durable_idle_now();
		return;
	}
	dur_idle_limit = evtimer_new(ev_base, durable_idle_limit_cb, NULL);
	evtimer_add(dur_idle_limit, &tv);
}

/*
 * At shutdown, after the registry has ended every task: the ends still
 * held in memory get a last try; durable_close() waits for the answers.
 */
void
durable_stop(void)
{
	if (dur_live == NULL)
		return;
	durable_retry();
	evtimer_del(dur_sweep);
}

/*
 * After the loop, the last thing before the exit: the store answers the
 * writes still in flight (on turns of the loop run here, within the
 * store's busy timeout), the exit says which ends were lost, and the
 * store closes.
 */
void
durable_close(void)
{
	struct lh_entry	*le, *tmp;

	if (dur_live == NULL)
		return;
	durable_drain();
	lh_foreach(dur_pending, le)
		log_with(LOG_LVL_WARN, &(struct log_fields){
		    .task_id = lh_entry_k(le) }, "task store: could not record "
		    "the end of task %s before exiting (%s); its result is lost",
		    (const char *)lh_entry_k(le), store_error());
	lh_foreach_safe(dur_live, le, tmp)
		durable_entry_free(lh_entry_v(le));
	while (!TAILQ_EMPTY(&dur_resumes))	/* resumed by the next heavyd */
		durable_resume_free(TAILQ_FIRST(&dur_resumes));
	store_resume(NULL);
	config_free(dur_cfg);
	dur_cfg = NULL;
	lh_table_free(dur_live);
	lh_table_free(dur_pending);
	event_free(dur_sweep);
	event_free(dur_flush);
	dur_live = dur_pending = NULL;
	dur_sweep = dur_flush = NULL;
	store_close();
}

/* A lookup that went to the store. */
struct durable_lookup {
	durable_get_cb	 cb;
	void		*arg;
};

static void
durable_got(void *arg, int rc, const struct store_task *t)
{
	struct durable_lookup	*l = arg;

	l->cb(l->arg, rc, t, NULL);
	free(l);
}

/*
 * A task by id, for its owner: live from the registry, else a final row
 * still on its way to the store, else the store.  cb gets STORE_OK and the
 * row (with the record when the task runs in this process), or
 * STORE_NOT_FOUND (also another owner's), STORE_EXPIRED or STORE_ERROR.
 */
void
durable_get(const char *id, const char *owner, durable_get_cb cb, void *arg)
{
	struct durable_lookup	*l;
	struct durable_final	*f;
	struct task_record	*r;
	struct store_task	 t;
	struct lh_entry		*le;

	if ((r = registry_find(id, owner)) != NULL) {
		durable_row(r, &t);
		cb(arg, STORE_OK, &t, r);
		store_task_clear(&t);
		return;
	}
	if (dur_pending != NULL &&
	    (le = lh_table_lookup_entry(dur_pending, id)) != NULL &&
	    strcmp((f = lh_entry_v(le))->row.owner, owner) == 0) {
		cb(arg, STORE_OK, &f->row, NULL);
		return;
	}
	l = xmalloc(sizeof *l);
	l->cb = cb;
	l->arg = arg;
	store_get(id, owner, durable_got, l);
}

/* A row from the store, or this process's running task as it is now. */
void
durable_fresh(const struct store_task *t, const char *owner,
    struct store_task *out)
{
	struct task_record	*r;

	if ((r = registry_find(t->id, owner)) != NULL)
		durable_row(r, out);
	else
		store_task_copy(out, t);
}

bool
durable_terminal(const struct store_task *t)
{
	return strcmp(t->status, "working") != 0;
}

static struct json_object *
durable_str_or_null(const char *s)
{
	return s == NULL ? NULL : json_object_new_string(s);
}

static struct json_object *
durable_agent_json(const struct store_agent *a)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "index", json_object_new_int(a->index));
	json_object_object_add(o, "question", durable_str_or_null(a->question));
	json_object_object_add(o, "status", durable_str_or_null(a->status));
	json_object_object_add(o, "step", durable_str_or_null(a->step));
	json_object_object_add(o, "error", durable_str_or_null(a->error));
	json_object_object_add(o, "elapsed_ms", a->elapsed_ms >= 0 ?
	    json_object_new_int64(a->elapsed_ms) : NULL);
	json_object_object_add(o, "answer", durable_str_or_null(a->answer));
	return o;
}

/* incremental: {n, answers, of, made_ms, text}; null before the first
 * (and for the other strategies). */
static struct json_object *
durable_draft_json(const struct store_draft *d)
{
	struct json_object	*o;

	if (d->n == 0)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "n", json_object_new_int(d->n));
	json_object_object_add(o, "answers", json_object_new_int(d->answers));
	json_object_object_add(o, "of", json_object_new_int(d->of));
	json_object_object_add(o, "made_ms", json_object_new_int64(d->made_ms));
	json_object_object_add(o, "text", json_object_new_string(d->text ?
	    d->text : ""));
	return o;
}

/*
 * The progress of a row, {phase, elapsed_ms, agents[], draft}, for live
 * and stored tasks alike (the one renderer of it); a row that recorded
 * none (its task had not started) is planning, or done once it ended,
 * without agents or a draft.
 */
struct json_object *
durable_progress_json(const struct store_task *t)
{
	const struct store_progress	*p = &t->progress;
	struct json_object		*o = json_object_new_object(), *list;

	json_object_object_add(o, "phase", json_object_new_string(
	    p->phase != NULL ? p->phase : durable_terminal(t) ? "done" :
	    "planning"));
	json_object_object_add(o, "elapsed_ms", json_object_new_int64(
	    p->phase != NULL ? p->elapsed_ms : t->updated_ms - t->created_ms));
	list = json_object_new_array();
	for (int i = 0; i < p->nagents; i++)
		json_object_array_add(list, durable_agent_json(&p->agents[i]));
	json_object_object_add(o, "agents", list);
	if (p->phase != NULL)
		json_object_object_add(o, "draft", durable_draft_json(&p->draft));
	return o;
}

/* make-it-heavy's status: INITIALIZED while planning, then RUNNING, ... */
enum task_status
durable_mkh_status(const struct store_task *t)
{
	const char	*phase = t->progress.phase;

	if (strcmp(t->status, "completed") == 0)
		return TASK_COMPLETED;
	if (strcmp(t->status, "failed") == 0)
		return TASK_FAILED;
	if (strcmp(t->status, "cancelled") == 0)
		return TASK_CANCELLED;
	return phase == NULL || strcmp(phase, "planning") == 0 ?
	    TASK_INITIALIZED : TASK_RUNNING;
}

double
durable_execution_time(const struct store_task *t)
{
	return ((durable_terminal(t) ? t->updated_ms : wall_ms()) -
	    t->created_ms) / 1000.0;
}

/* The error of a failed or cancelled task, else NULL. */
const char *
durable_error(const struct store_task *t)
{
	return strcmp(t->status, "failed") == 0 ||
	    strcmp(t->status, "cancelled") == 0 ? (t->status_message ?
	    t->status_message : t->status) : NULL;
}

/* RFC 3339 (ISO 8601) in UTC, to the millisecond. */
static struct json_object *
durable_iso(int64_t ms)
{
	time_t		secs = (time_t)(ms / 1000);
	struct tm	tm;
	char		buf[64], out[80];

	gmtime_r(&secs, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, sizeof out, "%s.%03dZ", buf, (int)(ms % 1000));
	return json_object_new_string(out);
}

/* The MCP Task of a row (tasks/get, tasks/list, tasks/cancel, status). */
struct json_object *
durable_task_json(const struct store_task *t, int poll_ms)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "taskId", json_object_new_string(t->id));
	json_object_object_add(o, "status", json_object_new_string(t->status));
	if (t->status_message != NULL)
		json_object_object_add(o, "statusMessage",
		    json_object_new_string(t->status_message));
	json_object_object_add(o, "createdAt", durable_iso(t->created_ms));
	json_object_object_add(o, "lastUpdatedAt", durable_iso(t->updated_ms));
	json_object_object_add(o, "ttl", json_object_new_int64(t->ttl_ms));
	if (!durable_terminal(t))
		json_object_object_add(o, "pollInterval",
		    json_object_new_int(poll_ms));
	return o;
}

/* The first 200 bytes of the query, cut on a UTF-8 character boundary. */
static struct json_object *
durable_query_json(const char *query)
{
	size_t	n;

	if (query == NULL)
		return NULL;
	if ((n = strlen(query)) > 200) {
		n = 200;
		while (n > 0 && ((unsigned char)query[n] & 0xc0) == 0x80)
			n--;
	}
	return json_object_new_string_len(query, (int)n);
}

static struct json_object *
durable_entry_json(const struct store_task *t)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "task_id", json_object_new_string(t->id));
	json_object_object_add(o, "status", json_object_new_string(
	    registry_status_name(durable_mkh_status(t))));
	json_object_object_add(o, "tool", json_object_new_string(t->tool));
	json_object_object_add(o, "query", durable_query_json(t->query));
	json_object_object_add(o, "agent_count",
	    json_object_new_int(t->num_agents));
	json_object_object_add(o, "start_time",
	    json_object_new_double(t->created_ms / 1000.0));
	json_object_object_add(o, "execution_time",
	    json_object_new_double(durable_execution_time(t)));
	return o;
}

/* A list for its owner, once the store has answered. */
struct durable_listing {
	char		*owner;
	char		*prefix;
	durable_list_cb	 cb;
	void		*arg;
};

static struct durable_listing *
durable_listing_new(const char *owner, const char *prefix, durable_list_cb cb,
    void *arg)
{
	struct durable_listing	*l = xcalloc(1, sizeof *l);

	l->owner = xstrdup(owner);
	l->prefix = prefix != NULL ? xstrdup(prefix) : NULL;
	l->cb = cb;
	l->arg = arg;
	return l;
}

static void
durable_listing_done(struct durable_listing *l, struct json_object *list)
{
	l->cb(l->arg, list);
	free(l->owner);
	free(l->prefix);
	free(l);
}

static bool
durable_row_in(const char *id, const struct store_task *rows, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(rows[i].id, id) == 0)
			return true;
	return false;
}

static void
durable_active_rows(void *arg, int rc, const struct store_task *rows, int n,
    int total, const char *next)
{
	struct durable_listing	*l = arg;
	struct json_object	*list = json_object_new_array(), *live;
	struct task_record	*r;
	struct store_task	 t;
	const char		*id;

	(void)total; (void)next;
	if (rc != STORE_OK)
		n = 0;
	for (int i = 0; i < n; i++) {
		durable_fresh(&rows[i], l->owner, &t);
		json_object_array_add(list, durable_entry_json(&t));
		store_task_clear(&t);
	}
	/* Running here but not (yet) in the store: a write failed. */
	live = registry_ids(l->owner, "");
	for (size_t i = 0; i < json_object_array_length(live); i++) {
		id = json_object_get_string(json_object_array_get_idx(live, i));
		if (durable_row_in(id, rows, n) ||
		    (r = registry_find(id, l->owner)) == NULL)
			continue;
		durable_row(r, &t);
		json_object_array_add(list, durable_entry_json(&t));
		store_task_clear(&t);
	}
	json_object_put(live);
	durable_listing_done(l, list);
}

/*
 * The owner's running tasks, oldest first: those of this process and
 * those of every other live heavyd on the state directory.
 */
void
durable_active(const char *owner, durable_list_cb cb, void *arg)
{
	store_active(owner, durable_active_rows, durable_listing_new(owner,
	    NULL, cb, arg));
}

static void
durable_ids_rows(void *arg, int rc, const struct store_task *rows, int n,
    int total, const char *next)
{
	struct durable_listing	*l = arg;
	struct json_object	*ids = registry_ids(l->owner, l->prefix);
	bool			 dup;

	(void)total; (void)next;
	for (int i = 0; i < (rc == STORE_OK ? n : 0); i++) {
		dup = false;
		for (size_t k = 0; k < json_object_array_length(ids) && !dup;
		    k++)
			dup = strcmp(rows[i].id, json_object_get_string(
			    json_object_array_get_idx(ids, k))) == 0;
		if (!dup)
			json_object_array_add(ids,
			    json_object_new_string(rows[i].id));
	}
	durable_listing_done(l, ids);
}

/* The owner's task ids that start with prefix: running here first, then
 * the store's (running anywhere, then the newest). */
void
durable_ids(const char *owner, const char *prefix, durable_list_cb cb,
    void *arg)
{
	store_ids(owner, prefix, 1000, durable_ids_rows, durable_listing_new(
	    owner, prefix ? prefix : "", cb, arg));
}

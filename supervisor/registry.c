/*
 * The task registry: this process's running orchestrations, from every
 * orchestrate tool, under their random ids, with their owners.  It is the
 * live cache; the task store (durable.c, store.c) is the durable copy and
 * the one place where finished tasks are kept, expire and are evicted.
 * A lookup is one hash probe, and a record of another owner answers
 * exactly like an unknown id.  Whoever watches (the store, subscriptions,
 * MCP Tasks) hears of every step of a record and of its end; once the
 * watchers have seen the end, the record goes.  Each owner's running
 * records sit in the owner's own list, so listing them and admission do
 * not walk anyone else's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/linkhash.h>

#include "supervisor.h"
#include "metrics.h"

struct registry_owner {
	char				*name;
	int				 nactive;
	TAILQ_HEAD(, task_record)	 active;
};

static struct lh_table		*reg_ids;	/* id -> running record */
static struct lh_table		*reg_owners;	/* name -> owner */
static int			 reg_nactive;

static const char *status_names[] = {
	"INITIALIZED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
};
/* The same, as heavyd_tasks_ended_total's status label. */
static const char *status_labels[] = {
	"initialized", "running", "completed", "failed", "cancelled",
};

/* Who hears of every change of a record, one per place, called in the
 * order of enum registry_watcher (see supervisor.h). */
static registry_watch_fn	 reg_watchers[REGISTRY_NWATCHERS];

void
registry_watch(enum registry_watcher place, registry_watch_fn fn)
{
	if (reg_watchers[place] != NULL && reg_watchers[place] != fn)
		fatalx("registry: watcher %d is taken", (int)place);
	reg_watchers[place] = fn;
}

/*
 * The watchers from the one at from on, in their order; false when one
 * held the record (registry_hold): the others hear when it lets go.
 */
static bool
registry_run_watchers(struct task_record *r, int from)
{
	for (int i = from; i < REGISTRY_NWATCHERS; i++) {
		r->watching = true;
		if (reg_watchers[i] != NULL)
			reg_watchers[i](r);
		r->watching = false;
		if (r->holds > 0) {
			r->next_watcher = i + 1;
			return false;
		}
	}
	return true;
}

/* The task started, moved on (a step, a note) or, when finished, ended. */
void
registry_touch(struct task_record *r)
{
	r->updated_ms = wall_ms();
	registry_run_watchers(r, 0);
}

const char *
registry_status_name(enum task_status s)
{
	return status_names[s];
}

void
registry_init(void)
{
	reg_ids = lh_kchar_table_new(64, NULL);
	reg_owners = lh_kchar_table_new(16, NULL);
}

static struct registry_owner *
registry_owner(const char *name)
{
	struct registry_owner	*o;
	struct lh_entry		*e;

	if ((e = lh_table_lookup_entry(reg_owners, name)) != NULL)
		return (struct registry_owner *)lh_entry_v(e);
	o = xcalloc(1, sizeof *o);
	o->name = xstrdup(name);
	TAILQ_INIT(&o->active);
	lh_table_insert(reg_owners, o->name, o);
	return o;
}

/* A running record leaves its owner's list; an owner with none goes. */
static void
registry_unlink_active(struct task_record *r)
{
	struct registry_owner	*o = r->own;

	TAILQ_REMOVE(&o->active, r, active_entry);
	lh_table_delete(reg_ids, r->id);
	r->own = NULL;
	reg_nactive--;
	if (--o->nactive > 0)
		return;
	lh_table_delete(reg_owners, o->name);
	free(o->name);
	free(o);
}

static void
registry_record_free(struct task_record *r)
{
	taskresult_free(r->result);
	store_progress_clear(&r->progress);
	json_object_put(r->params);
	free(r->cache_key);
	store_args_clear(&r->args);
	free(r->error);
	free(r->owner);
	free(r);
}

/* A record not yet registered: the task it is for starts next. */
struct task_record *
registry_new(const char *owner, const char *tool)
{
	struct task_record	*r = xcalloc(1, sizeof *r);

	r->owner = xstrdup(owner);
	r->tool = tool;
	r->status = TASK_INITIALIZED;
	return r;
}

/* The task did not start after all. */
void
registry_discard(struct task_record *r)
{
	registry_record_free(r);
}

/* Registers the record under the started task's id; watchers hear of it. */
void
registry_add(struct task_record *r, struct task *t, const char *id,
    int64_t now)
{
	snprintf(r->id, sizeof r->id, "%s", id);
	r->task = t;
	r->created_ms = now;
	r->start_time_ms = wall_ms();
	r->own = registry_owner(r->owner);
	TAILQ_INSERT_TAIL(&r->own->active, r, active_entry);
	r->own->nactive++;
	reg_nactive++;
	lh_table_insert(reg_ids, r->id, r);
	metrics_task_started(r->tool);
	metrics_tasks_running(reg_nactive);
	registry_touch(r);
}

/* A running record of this owner, or NULL. */
struct task_record *
registry_find(const char *id, const char *owner)
{
	struct lh_entry		*e;
	struct task_record	*r;

	if (reg_ids == NULL || (e = lh_table_lookup_entry(reg_ids, id)) == NULL)
		return NULL;
	r = (struct task_record *)lh_entry_v(e);
	return strcmp(r->owner, owner) == 0 ? r : NULL;
}

/*
 * Every watcher has heard of the end: whoever started the task is told
 * (a stop: why; an end: the service's answer), and the record goes.
 */
static void
registry_settled(struct task_record *r)
{
	record_cancel_fn	 stopped = r->stopped;
	void			*arg = r->stopped_arg;

	if (stopped != NULL)
		stopped(arg, r->error);
	if (r->ended != NULL)
		r->ended(r->ended_arg, r);
	registry_record_free(r);
}

/*
 * A watcher (the store's) keeps the rest from hearing of a record's end
 * until it lets go: the store has a task's end before any reply or
 * notification about it is queued, however long its write takes.
 */
void
registry_hold(struct task_record *r)
{
	if (!r->finished)
		fatalx("registry: only an end is held");
	r->holds++;
}

void
registry_release(struct task_record *r)
{
	/* Let go by the watcher that held it, before it returned (a store
	 * that answered at once): the loop over the watchers goes on. */
	if (--r->holds > 0 || r->watching)
		return;
	if (registry_run_watchers(r, r->next_watcher))
		registry_settled(r);
}

/* A record has ended: out of the registry, and every watcher hears; then
 * it goes (registry_settled), at once or once the store has the end. */
static void
registry_retire(struct task_record *r, enum task_status status, int64_t now)
{
	r->status = status;
	r->finished = true;
	r->finished_ms = now;
	r->task = NULL;
	r->cancelled = NULL;
	r->arg = NULL;
	registry_unlink_active(r);
	metrics_task_ended(r->tool, status_labels[status]);
	metrics_tasks_running(reg_nactive);
	r->updated_ms = wall_ms();
	if (registry_run_watchers(r, 0))
		registry_settled(r);
}

/* The task ended with this result (the registry takes it). */
void
registry_finish(struct task_record *r, const struct task_outcome *o,
    struct task_result *result, int64_t now)
{
	if (r->task != NULL)
		registry_progress(r, &r->progress);
	r->result = result;
	r->error = o->failed ? xstrdup(o->error ? o->error : "failed") : NULL;
	r->usage = o->usage;
	r->cacheable = o->cacheable;
	registry_retire(r, o->failed ? TASK_FAILED : TASK_COMPLETED, now);
}

/*
 * Kills the task's workers (task_cancel), records why (it has no result:
 * those who answer for it render why as an error), and tells whoever
 * started it: a blocking heavy_orchestrate answers so.
 */
static void
registry_stop(struct task_record *r, enum task_status status,
    const char *why, int64_t now)
{
	record_cancel_fn	 fn = r->cancelled;
	void			*arg = r->arg;
	struct task_view	 v;

	if (r->finished)
		return;
	if (r->task != NULL) {
		registry_progress(r, &r->progress);
		store_progress_stop(&r->progress, status == TASK_CANCELLED ?
		    "cancelled" : "interrupted");
		task_snapshot(r->task, &v);
		r->usage = v.usage;	/* what it spent before it stopped */
		task_cancel(r->task);
	}
	r->error = xstrdup(why);	/* no result: the edge renders why */
	r->stopped = fn;		/* told once every watcher has heard */
	r->stopped_arg = arg;
	registry_retire(r, status, now);
}

void
registry_cancel(struct task_record *r, const char *why, int64_t now)
{
	registry_stop(r, TASK_CANCELLED, why, now);
}

/* Stopped without anyone asking (the server shuts down): failed. */
void
registry_interrupt(struct task_record *r, const char *why, int64_t now)
{
	registry_stop(r, TASK_FAILED, why, now);
}

/*
 * Admission, for every orchestrate tool: fail fast rather than queue
 * without bound.  The server's running tasks, the caller's own (so one
 * client cannot starve the others) and the workers already waiting for a
 * slot are each capped.
 */
/* How many orchestrations owner runs in this process now. */
int
registry_owner_active(const char *owner)
{
	struct lh_entry	*e = lh_table_lookup_entry(reg_owners, owner);

	return e ? ((struct registry_owner *)lh_entry_v(e))->nactive : 0;
}

/* The workers owner's running orchestrations may hold at once: each
 * runs at most its num_agents (agents, reviewers) together. */
int
registry_owner_agents(const char *owner)
{
	struct lh_entry		*e = lh_table_lookup_entry(reg_owners, owner);
	struct task_record	*r;
	struct json_object	*n;
	int			 sum = 0;

	if (e == NULL)
		return 0;
	TAILQ_FOREACH(r, &((struct registry_owner *)lh_entry_v(e))->active,
	    active_entry)
		if (json_object_object_get_ex(r->params, "num_agents", &n))
			sum += json_object_get_int(n);
	return sum;
}

int
registry_admit(const struct heavy_config *cfg, const char *owner,
    int queued_workers, char *err, size_t errlen)
{
	struct lh_entry	*e = lh_table_lookup_entry(reg_owners, owner);
	int		 mine = e ? ((struct registry_owner *)lh_entry_v(e))->nactive : 0;

	if (reg_nactive >= cfg->max_tasks)
		snprintf(err, errlen, "busy: %d orchestrations are running "
		    "(max_tasks); retry later", cfg->max_tasks);
	else if (mine >= cfg->max_session_tasks)
		snprintf(err, errlen, "busy: this session already runs %d "
		    "orchestrations (max_session_tasks); retry later", mine);
	else if (queued_workers >= cfg->max_queued_workers)
		snprintf(err, errlen, "busy: %d workers are waiting for a free "
		    "slot (max_queued_workers); retry later", queued_workers);
	else
		return 0;
	return -1;
}

int
registry_nactive(void)
{
	return reg_nactive;
}

/* A running task is INITIALIZED while its planner works, then RUNNING. */
enum task_status
registry_status(const struct task_record *r)
{
	struct task_view	v;

	if (r->finished || r->task == NULL)
		return r->status;
	task_snapshot(r->task, &v);
	return strcmp(v.phase, "planning") == 0 ? TASK_INITIALIZED :
	    TASK_RUNNING;
}

static char *
registry_dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
registry_agent(struct store_agent *to, const struct task_agent_view *a)
{
	to->index = a->index;
	to->question = registry_dup(a->question);
	to->status = xstrdup(a->status);
	to->step = registry_dup(a->step);
	to->error = registry_dup(a->error);
	to->answer = registry_dup(a->answer);
	to->elapsed_ms = strcmp(a->status, "pending") != 0 &&
	    strcmp(a->status, "running") != 0 ? a->elapsed_ms : -1;
}

/* incremental: the latest draft (n 0: none yet, and for the other
 * strategies). */
static void
registry_draft(struct store_draft *to, const struct task_draft_view *d)
{
	to->n = d->n;
	if (d->n == 0)
		return;
	to->answers = d->answers;
	to->of = d->of;
	to->made_ms = d->made_ms;
	to->text = registry_dup(d->text);
}

/*
 * The progress, typed, into out (what it held is freed): live while the
 * task runs, else its last; none (phase NULL) before its task started.
 * Each agent has its question, status, last step, error and, once it has
 * one, its answer; incremental's latest draft comes with them.
 */
void
registry_progress(const struct task_record *r, struct store_progress *out)
{
	struct task_view	 v;
	struct store_progress	 p;

	memset(&p, 0, sizeof p);
	if (r->task == NULL)
		store_progress_copy(&p, &r->progress);
	else {
		task_snapshot(r->task, &v);
		p.phase = xstrdup(v.phase);
		p.elapsed_ms = v.elapsed_ms;
		p.nagents = v.num_agents;
		p.agents = v.num_agents > 0 ? xcalloc((size_t)v.num_agents,
		    sizeof *p.agents) : NULL;
		for (int i = 0; i < v.num_agents; i++)
			registry_agent(&p.agents[i], &v.agents[i]);
		registry_draft(&p.draft, &v.draft);
	}
	store_progress_clear(out);
	*out = p;
}

/* The owner's running task ids that start with prefix (any case). */
struct json_object *
registry_ids(const char *owner, const char *prefix)
{
	struct json_object	*ids = json_object_new_array();
	struct task_record	*r;
	struct lh_entry		*e;
	size_t			 n = prefix ? strlen(prefix) : 0;

	if (reg_owners != NULL &&
	    (e = lh_table_lookup_entry(reg_owners, owner)) != NULL)
		TAILQ_FOREACH(r, &((struct registry_owner *)lh_entry_v(e))->active,
		    active_entry)
			if (strncasecmp(r->id, prefix ? prefix : "", n) == 0)
				json_object_array_add(ids,
				    json_object_new_string(r->id));
	return ids;
}

/* At shutdown: every running task is interrupted (and recorded so), every
 * record freed. */
void
registry_free(void)
{
	struct lh_entry		*e;
	struct registry_owner	*o;

	if (reg_ids == NULL)
		return;
	while ((e = lh_table_head(reg_owners)) != NULL) {
		o = (struct registry_owner *)lh_entry_v(e);
		registry_interrupt(TAILQ_FIRST(&o->active), "interrupted by "
		    "shutdown: the heavyd process that ran this task stopped "
		    "before it ended", now_ms());
	}
	lh_table_free(reg_ids);
	lh_table_free(reg_owners);
	reg_ids = reg_owners = NULL;
}

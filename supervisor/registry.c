/*
 * The task registry: every orchestration, from either orchestrate tool,
 * under its random id, with its owner.  A lookup is one hash probe, and a
 * record of another owner answers exactly like an unknown id.  A record
 * outlives its task: once the task ends it keeps the result for task_ttl
 * seconds, and at most max_retained_tasks finished records are kept,
 * oldest finished first out.  Finished records sit in one list in finish
 * order, so expiry and eviction only ever look at its head; each owner's
 * running records sit in the owner's own list, so listing them does not
 * walk anyone else's.  Times are passed in, so the tests need no loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

struct registry_owner {
	char				*name;
	int				 nactive;
	TAILQ_HEAD(, task_record)	 active;
};

static struct lh_table		*reg_ids;	/* id -> record */
static struct lh_table		*reg_owners;	/* name -> owner */
static TAILQ_HEAD(task_records, task_record) reg_finished =
    TAILQ_HEAD_INITIALIZER(reg_finished);
static int			 reg_nfinished, reg_nactive;
static int64_t			 reg_ttl_ms;
static int			 reg_max_retained;
static struct event		*reg_sweep;

static const char *status_names[] = {
	"INITIALIZED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
};

static void	registry_arm(int64_t now);

/* Who hears of every change of a record: the store, subscriptions. */
#define REGISTRY_MAX_WATCHERS	4
static registry_watch_fn	 reg_watchers[REGISTRY_MAX_WATCHERS];
static int			 reg_nwatchers;

void
registry_watch(registry_watch_fn fn)
{
	if (reg_nwatchers == REGISTRY_MAX_WATCHERS)
		fatalx("registry: too many watchers");
	reg_watchers[reg_nwatchers++] = fn;
}

/* The task moved on (a step, a note) or, when finished is set, ended. */
void
registry_touch(struct task_record *r)
{
	for (int i = 0; i < reg_nwatchers; i++)
		reg_watchers[i](r);
}

const char *
registry_status_name(enum task_status s)
{
	return status_names[s];
}

static void
registry_sweep_cb(evutil_socket_t fd, short events, void *arg)
{
	int64_t	now = now_ms();

	int	before = reg_nfinished;

	(void)fd; (void)events; (void)arg;
	registry_expire(now);
	log_debug("registry: %d finished tasks expired, %d kept",
	    before - reg_nfinished, reg_nfinished);
	registry_arm(now);
}

/* base NULL: no sweep timer; lookups still never see an expired record. */
void
registry_init(int ttl_s, int max_retained, struct event_base *base)
{
	reg_ids = lh_kchar_table_new(64, NULL);
	reg_owners = lh_kchar_table_new(16, NULL);
	reg_ttl_ms = (int64_t)ttl_s * 1000;
	reg_max_retained = max_retained;
	if (base != NULL)
		reg_sweep = evtimer_new(base, registry_sweep_cb, NULL);
}

/* The sweep fires when the oldest finished record expires. */
static void
registry_arm(int64_t now)
{
	struct task_record	*r = TAILQ_FIRST(&reg_finished);
	int64_t			 left;
	struct timeval		 tv;

	if (reg_sweep == NULL || r == NULL || evtimer_pending(reg_sweep, NULL))
		return;
	left = r->finished_ms + reg_ttl_ms - now;
	if (left < 0)
		left = 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000 + 1000;	/* not a hair early */
	evtimer_add(reg_sweep, &tv);
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
	json_object_put(r->result);
	json_object_put(r->progress);
	free(r->error);
	free(r->owner);
	free(r);
}

/* Forgets a finished record. */
static void
registry_drop(struct task_record *r)
{
	TAILQ_REMOVE(&reg_finished, r, finished_entry);
	reg_nfinished--;
	lh_table_delete(reg_ids, r->id);
	registry_record_free(r);
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

/* Registers the record under the started task's id. */
void
registry_add(struct task_record *r, struct task *t, const char *id,
    int64_t now)
{
	struct timespec		 ts;

	snprintf(r->id, sizeof r->id, "%s", id);
	r->task = t;
	r->created_ms = now;
	clock_gettime(CLOCK_REALTIME, &ts);
	r->start_time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	r->own = registry_owner(r->owner);
	TAILQ_INSERT_TAIL(&r->own->active, r, active_entry);
	r->own->nactive++;
	reg_nactive++;
	lh_table_insert(reg_ids, r->id, r);
}

/* Expired records go first, so none is ever found. */
struct task_record *
registry_find(const char *id, const char *owner, int64_t now)
{
	struct lh_entry		*e;
	struct task_record	*r;

	if (reg_ids == NULL)
		return NULL;
	registry_expire(now);
	if ((e = lh_table_lookup_entry(reg_ids, id)) == NULL)
		return NULL;
	r = (struct task_record *)lh_entry_v(e);
	return strcmp(r->owner, owner) == 0 ? r : NULL;
}

void
registry_expire(int64_t now)
{
	struct task_record	*r;

	while ((r = TAILQ_FIRST(&reg_finished)) != NULL &&
	    r->finished_ms + reg_ttl_ms <= now)
		registry_drop(r);
}

/* A record is finished: keep it, in finish order, within the cap. */
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
	TAILQ_INSERT_TAIL(&reg_finished, r, finished_entry);
	reg_nfinished++;
	registry_touch(r);
	while (reg_nfinished > reg_max_retained)
		registry_drop(TAILQ_FIRST(&reg_finished));
	registry_arm(now);
}

/* The error of a failed result: the text it gives. */
static char *
registry_result_error(struct json_object *result)
{
	struct json_object	*v, *c;

	if (!json_object_object_get_ex(result, "isError", &v) ||
	    !json_object_get_boolean(v))
		return NULL;
	if (!json_object_object_get_ex(result, "content", &c) ||
	    json_object_array_length(c) == 0)
		return xstrdup("failed");
	c = json_object_array_get_idx(c, 0);
	return xstrdup(json_object_get_string(json_object_object_get(c,
	    "text")) ?: "failed");
}

/* The task ended with this CallToolResult (the registry takes it). */
void
registry_finish(struct task_record *r, struct json_object *result,
    int64_t now)
{
	if (r->task != NULL)
		r->progress = registry_progress(r, now);
	r->result = result;
	r->error = registry_result_error(result);
	registry_retire(r, r->error != NULL ? TASK_FAILED : TASK_COMPLETED,
	    now);
}

/* Marks the agents that had not finished as cancelled. */
static void
registry_mark_cancelled(struct json_object *progress)
{
	struct json_object	*agents, *a;
	const char		*st;

	if (!json_object_object_get_ex(progress, "agents", &agents))
		return;
	for (size_t i = 0; i < json_object_array_length(agents); i++) {
		a = json_object_array_get_idx(agents, i);
		st = json_object_get_string(json_object_object_get(a,
		    "status"));
		if (st != NULL && (strcmp(st, "pending") == 0 ||
		    strcmp(st, "running") == 0))
			json_object_object_add(a, "status",
			    json_object_new_string("cancelled"));
	}
}

/*
 * Kills the task's workers (task_cancel), records why, and tells whoever
 * started it (a blocking heavy_orchestrate answers that it was cancelled).
 */
void
registry_cancel(struct task_record *r, const char *why, int64_t now)
{
	record_cancel_fn	 fn = r->cancelled;
	void			*arg = r->arg;

	if (r->finished)
		return;
	if (r->task != NULL) {
		r->progress = registry_progress(r, now);
		json_object_object_add(r->progress, "phase",
		    json_object_new_string("cancelled"));
		registry_mark_cancelled(r->progress);
		task_cancel(r->task);
	}
	r->error = xstrdup(why);
	registry_retire(r, TASK_CANCELLED, now);
	if (fn != NULL)
		fn(arg);
}

/*
 * Admission, for both orchestrate tools: fail fast rather than queue
 * without bound.  The server's running tasks, the caller's own (so one
 * client cannot starve the others) and the workers already waiting for a
 * slot are each capped.
 */
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

int
registry_nfinished(void)
{
	return reg_nfinished;
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

double
registry_execution_time(const struct task_record *r, int64_t now)
{
	return ((r->finished ? r->finished_ms : now) - r->created_ms) / 1000.0;
}

static struct json_object *
json_str_or_null(const char *s)
{
	return s == NULL ? NULL : json_object_new_string(s);
}

static struct json_object *
registry_agent_json(const struct task_agent_view *a)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "index", json_object_new_int(a->index));
	json_object_object_add(o, "question", json_str_or_null(a->question));
	json_object_object_add(o, "status", json_object_new_string(a->status));
	json_object_object_add(o, "step", json_str_or_null(a->step));
	json_object_object_add(o, "error", json_str_or_null(a->error));
	json_object_object_add(o, "elapsed_ms", strcmp(a->status, "pending") &&
	    strcmp(a->status, "running") ? json_object_new_int64(a->elapsed_ms) :
	    NULL);
	return o;
}

/* {phase, elapsed_ms, agents[]}: live while the task runs, else its last. */
struct json_object *
registry_progress(const struct task_record *r, int64_t now)
{
	struct json_object	*o, *agents;
	struct task_view	 v;

	if (r->task == NULL) {
		if (r->progress != NULL)
			return json_object_get(r->progress);
		o = json_object_new_object();
		json_object_object_add(o, "phase", json_object_new_string(
		    r->finished ? "done" : "planning"));
		json_object_object_add(o, "elapsed_ms", json_object_new_int64(
		    (r->finished ? r->finished_ms : now) - r->created_ms));
		json_object_object_add(o, "agents", json_object_new_array());
		return o;
	}
	task_snapshot(r->task, &v);
	o = json_object_new_object();
	json_object_object_add(o, "phase", json_object_new_string(v.phase));
	json_object_object_add(o, "elapsed_ms",
	    json_object_new_int64(v.elapsed_ms));
	agents = json_object_new_array();
	for (int i = 0; i < v.num_agents; i++)
		json_object_array_add(agents, registry_agent_json(&v.agents[i]));
	json_object_object_add(o, "agents", agents);
	return o;
}

/* What get_task_progress reports and heavy://tasks/{id} holds. */
struct json_object *
registry_status_json(const struct task_record *r, int64_t now)
{
	struct json_object	*sc = json_object_new_object(), *result = NULL;

	json_object_object_add(sc, "task_id", json_object_new_string(r->id));
	json_object_object_add(sc, "status", json_object_new_string(
	    registry_status_name(registry_status(r))));
	json_object_object_add(sc, "tool", json_object_new_string(r->tool));
	json_object_object_add(sc, "progress", registry_progress(r, now));
	if (r->result != NULL &&
	    json_object_object_get_ex(r->result, "structuredContent", &result))
		json_object_get(result);
	json_object_object_add(sc, "result", result);
	json_object_object_add(sc, "error", r->error != NULL ?
	    json_object_new_string(r->error) : NULL);
	json_object_object_add(sc, "execution_time",
	    json_object_new_double(registry_execution_time(r, now)));
	return sc;
}

/* The first 200 bytes of the query, cut on a UTF-8 character boundary. */
static struct json_object *
registry_query_json(const char *query)
{
	size_t	n = strlen(query);

	if (n > 200) {
		n = 200;
		while (n > 0 && ((unsigned char)query[n] & 0xc0) == 0x80)
			n--;
	}
	return json_object_new_string_len(query, (int)n);
}

static struct json_object *
registry_entry_json(const struct task_record *r, int64_t now)
{
	struct json_object	*o = json_object_new_object();
	struct task_view	 v = { .num_agents = 0 };

	if (r->task != NULL)
		task_snapshot(r->task, &v);
	json_object_object_add(o, "task_id", json_object_new_string(r->id));
	json_object_object_add(o, "status", json_object_new_string(
	    registry_status_name(registry_status(r))));
	json_object_object_add(o, "tool", json_object_new_string(r->tool));
	json_object_object_add(o, "query", v.query != NULL ?
	    registry_query_json(v.query) : NULL);
	json_object_object_add(o, "agent_count",
	    json_object_new_int(v.num_agents));
	json_object_object_add(o, "start_time",
	    json_object_new_double(r->start_time_ms / 1000.0));
	json_object_object_add(o, "execution_time",
	    json_object_new_double(registry_execution_time(r, now)));
	return o;
}

/* The owner's running tasks, oldest first; never anyone else's. */
struct json_object *
registry_list(const char *owner, int64_t now)
{
	struct json_object	*list = json_object_new_array();
	struct task_record	*r;
	struct lh_entry		*e;
	struct registry_owner	*o;

	if (reg_owners == NULL ||
	    (e = lh_table_lookup_entry(reg_owners, owner)) == NULL)
		return list;
	o = (struct registry_owner *)lh_entry_v(e);
	TAILQ_FOREACH(r, &o->active, active_entry)
		json_object_array_add(list, registry_entry_json(r, now));
	return list;
}

/* The owner's task ids that start with prefix, running ones first: for
 * completion, which may walk the retained records (they are capped). */
struct json_object *
registry_ids(const char *owner, const char *prefix, int64_t now)
{
	struct json_object	*ids = json_object_new_array();
	struct task_record	*r;
	struct lh_entry		*e;
	size_t			 n = prefix ? strlen(prefix) : 0;

	registry_expire(now);
	if (reg_owners != NULL &&
	    (e = lh_table_lookup_entry(reg_owners, owner)) != NULL)
		TAILQ_FOREACH(r, &((struct registry_owner *)lh_entry_v(e))->active,
		    active_entry)
			if (strncasecmp(r->id, prefix ? prefix : "", n) == 0)
				json_object_array_add(ids,
				    json_object_new_string(r->id));
	TAILQ_FOREACH_REVERSE(r, &reg_finished, task_records, finished_entry)
		if (strcmp(r->owner, owner) == 0 &&
		    strncasecmp(r->id, prefix ? prefix : "", n) == 0)
			json_object_array_add(ids, json_object_new_string(r->id));
	return ids;
}

/* At shutdown: every running task is cancelled, every record freed. */
void
registry_free(void)
{
	struct lh_entry		*e;
	struct registry_owner	*o;

	if (reg_ids == NULL)
		return;
	while ((e = lh_table_head(reg_owners)) != NULL) {
		o = (struct registry_owner *)lh_entry_v(e);
		registry_cancel(TAILQ_FIRST(&o->active), "the server is "
		    "shutting down", now_ms());
	}
	while (!TAILQ_EMPTY(&reg_finished))
		registry_drop(TAILQ_FIRST(&reg_finished));
	if (reg_sweep != NULL)
		event_free(reg_sweep);
	reg_sweep = NULL;
	lh_table_free(reg_ids);
	lh_table_free(reg_owners);
	reg_ids = reg_owners = NULL;
}

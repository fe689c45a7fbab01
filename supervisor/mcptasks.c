/*
 * MCP Tasks (2025-11-25).  A tools/call of heavy_orchestrate with
 * params.task answers CreateTaskResult at once and runs in the
 * background; tasks/get, tasks/result (which blocks until the task ends
 * and returns exactly the CallToolResult the blocking call would have
 * returned), tasks/list (paginated, the caller's tasks only) and
 * tasks/cancel follow it; notifications/tasks/status tells the requestor
 * when its task's status changes, and the request's progressToken keeps
 * receiving progress until then.
 *
 * Every task of the owner is such a task, whichever tool started it and
 * whichever heavyd on the state directory runs it: the task store is the
 * shared truth.  A task that another live heavyd runs can be read and
 * waited for here (the store is polled), but only that process can
 * cancel it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

#define MT_RELATED_TASK		"io.modelcontextprotocol/related-task"
#define MT_IMMEDIATE		"io.modelcontextprotocol/model-immediate-response"

/* A tasks/result waiting for its task to end. */
struct mt_waiter {
	struct mcp_session	*s;
	struct json_object	*id;		/* the request's */
	char			*key;
	char			 task_id[33];
	struct event		*poll;		/* another heavyd runs it */
	bool			 cancel;	/* tasks/cancel: the task, ended */
	bool			 asking;	/* the store has yet to answer */
	bool			 gone;		/* ... and nobody waits now */
	TAILQ_ENTRY(mt_waiter)	 entry;
};
static TAILQ_HEAD(, mt_waiter) mt_waiters = TAILQ_HEAD_INITIALIZER(mt_waiters);

/*
 * A session that negotiated a version before MCP Tasks was not offered
 * them: to it, the tasks/ methods do not exist.
 */
static bool
mt_refused(struct mcp_session *s, struct rpc_msg *m)
{
	if (mcp_has_tasks(s) || s->modern)
		return false;
	mcp_error(s, m->id, RPC_METHOD_NOT_FOUND, "Method not found");
	return true;
}

/* The taskId parameter, lower case; -1 after answering -32602. */
static int
mt_task_id(struct mcp_session *s, struct rpc_msg *m, char id[33])
{
	struct json_object	*v;
	const char		*str;

	if (!json_object_object_get_ex(m->params, "taskId", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: taskId (string) is required");
		return -1;
	}
	str = json_object_get_string(v);
	for (int i = 0; i < 32; i++) {
		if (!isxdigit((unsigned char)str[i])) {
			mcp_error(s, m->id, RPC_INVALID_PARAMS, "Failed to "
			    "retrieve task: Task not found (a task id is 32 "
			    "hex digits)");
			return -1;
		}
		id[i] = (char)tolower((unsigned char)str[i]);
	}
	id[32] = '\0';
	if (str[32] == '\0')
		return 0;
	mcp_error(s, m->id, RPC_INVALID_PARAMS, "Failed to retrieve task: "
	    "Task not found (a task id is 32 hex digits)");
	return -1;
}

/* What a lookup's request does with the task it found. */
typedef void (*mt_found_fn)(struct mcp_req *, const struct store_task *,
	    struct task_record *live);
struct mt_lookup {
	struct mcp_req	*q;
	mt_found_fn	 fn;
	char		 id[33];
};

/* The answer to a lookup that found nothing. */
static void
mt_lookup_failed(struct mcp_req *q, const char *id, int rc)
{
	char	msg[160];

	if (rc == STORE_ERROR) {
		mcp_error(q->s, q->m.id, RPC_INTERNAL_ERROR, "Internal error: "
		    "the task store could not be read; see heavyd's log");
		return;
	}
	snprintf(msg, sizeof msg, "Failed to retrieve task: %s (%s)",
	    rc == STORE_EXPIRED ? "Task has expired" : "Task not found", id);
	mcp_error(q->s, q->m.id, RPC_INVALID_PARAMS, msg);
}

static void
mt_lookup_done(void *arg, int rc, const struct store_task *t,
    struct task_record *live)
{
	struct mt_lookup	*l = arg;

	mcp_req_begin(l->q);
	if (rc == STORE_OK)
		l->fn(l->q, t, live);
	else
		mt_lookup_failed(l->q, l->id, rc);
	mcp_req_end(l->q);
	free(l);
}

/* The caller's task, then fn; or the error, answered. */
static void
mt_lookup(struct mcp_session *s, struct rpc_msg *m, mt_found_fn fn)
{
	struct mt_lookup	*l;
	char			 id[33];

	if (mt_task_id(s, m, id) == -1)
		return;
	l = xmalloc(sizeof *l);
	l->q = mcp_req_hold(s, m);
	l->fn = fn;
	memcpy(l->id, id, sizeof l->id);
	durable_get(id, s->owner, mt_lookup_done, l);
}

/* The task's CallToolResult, marked as related to it; a task stopped
 * before it had one (cancelled, interrupted) gets an error saying why. */
static struct json_object *
mt_related(struct json_object *copy, const char *why, const char *id)
{
	struct json_object	*meta, *rel;

	if (copy == NULL)
		copy = tool_error_result(why != NULL ? why :
		    "the task ended without a result");
	if (!json_object_object_get_ex(copy, "_meta", &meta)) {
		meta = json_object_new_object();
		json_object_object_add(copy, "_meta", meta);
	}
	rel = json_object_new_object();
	json_object_object_add(rel, "taskId", json_object_new_string(id));
	json_object_object_add(meta, MT_RELATED_TASK, rel);
	return copy;
}

/* The result as it is, for 2026-07-28's inline one: the task it belongs
 * to is the object around it, so no related-task _meta. */
static struct json_object *
mt_row_plain(const struct store_task *t)
{
	const char		*why = durable_error(t);

	return t->result != NULL ? result_render(t->result) :
	    tool_error_result(why != NULL ? why :
	    "the task ended without a result");
}

static struct json_object *
mt_row_result(const struct store_task *t)
{
	return mt_related(t->result != NULL ? result_render(t->result) : NULL,
	    durable_error(t), t->id);
}

/*
 * The task as the tasks extension of 2026-07-28 has it: ttlMs and
 * pollIntervalMs, and (tasks/get, notifications/tasks) once it has ended
 * its result inline, or the error that failed it.
 */
static struct json_object *
mt_modern(const struct store_task *t, int poll_ms, bool detailed)
{
	struct json_object	*o = durable_task_json(t, poll_ms), *v, *e;
	const char		*why;

	if (json_object_object_get_ex(o, "ttl", &v)) {
		json_object_object_add(o, "ttlMs", json_object_get(v));
		json_object_object_del(o, "ttl");
	}
	if (json_object_object_get_ex(o, "pollInterval", &v)) {
		json_object_object_add(o, "pollIntervalMs", json_object_get(v));
		json_object_object_del(o, "pollInterval");
	}
	if (!detailed || !durable_terminal(t))
		return o;
	if (strcmp(t->status, "failed") == 0 && t->result != NULL) {
		/* The orchestration answered, with isError: the tool's error
		 * is a result; "failed" is for a task that has none. */
		json_object_object_add(o, "status",
		    json_object_new_string("completed"));
		json_object_object_del(o, "statusMessage");
	}
	if (strcmp(json_object_get_string(json_object_object_get(o,
	    "status")), "completed") == 0)
		json_object_object_add(o, "result", mt_row_plain(t));
	else if (strcmp(t->status, "failed") == 0) {
		why = durable_error(t);
		e = json_object_new_object();
		json_object_object_add(e, "code",
		    json_object_new_int(RPC_INTERNAL_ERROR));
		json_object_object_add(e, "message", json_object_new_string(
		    why != NULL ? why : "the orchestration failed"));
		json_object_object_add(e, "data", mt_row_plain(t));
		json_object_object_add(o, "error", e);
	}
	return o;
}

/* notifications/tasks for a subscriptions/listen of 2026-07-28. */
struct json_object *
mcptasks_modern_status(struct mcp_session *s, struct task_record *r)
{
	struct store_task	 t;
	struct json_object	*o;

	durable_row(r, &t);
	o = mt_modern(&t, s->cfg->poll_interval_ms, true);
	store_task_clear(&t);
	return o;
}

static void
mt_get_found(struct mcp_req *q, const struct store_task *t,
    struct task_record *live)
{
	struct mcp_session	*s = q->s;

	(void)live;
	mcp_reply(s, q->m.id, s->modern ? mt_modern(t,
	    s->cfg->poll_interval_ms, true) :
	    durable_task_json(t, s->cfg->poll_interval_ms));
}

void
mcptasks_rpc_get(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mt_refused(s, m))
		mt_lookup(s, m, mt_get_found);
}

/*
 * tasks/update (2026-07-28): input for a task that asked for some.  A
 * heavyd task never does (it is never input_required), so a known task's
 * update is acknowledged and ignored, as the extension says of responses
 * to requests that are not outstanding.
 */
static void
mt_update_found(struct mcp_req *q, const struct store_task *t,
    struct task_record *live)
{
	(void)t; (void)live;
	mcp_reply(q->s, q->m.id, json_object_new_object());
}

void
mcptasks_rpc_update(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(m->params, "inputResponses", &v) ||
	    !json_object_is_type(v, json_type_object)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "inputResponses (object) is required");
		return;
	}
	mt_lookup(s, m, mt_update_found);
}

static void
mt_waiter_free(struct mt_waiter *w)
{
	if (w->gone)
		return;
	TAILQ_REMOVE(&mt_waiters, w, entry);
	w->gone = true;
	if (w->asking)
		return;		/* the store's answer frees it */
	if (w->poll != NULL)
		event_free(w->poll);
	json_object_put(w->id);
	free(w->key);
	free(w);
}

static void
mt_poll_arm(struct mt_waiter *w)
{
	int		ms = w->s->cfg->poll_interval_ms;
	struct timeval	tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(w->poll, &tv);
}

/* The store on a task another heavyd runs: it ended (or its process died,
 * which ends it as interrupted), or it is polled again. */
static void
mt_polled(void *arg, int rc, const struct store_task *t)
{
	struct mt_waiter	*w = arg;
	char			 msg[160];

	w->asking = false;
	if (w->gone) {
		w->gone = false;
		TAILQ_INSERT_TAIL(&mt_waiters, w, entry);
		mt_waiter_free(w);
		return;
	}
	if (rc == STORE_OK && !durable_terminal(t)) {
		mt_poll_arm(w);
		return;
	}
	if (rc == STORE_OK && w->cancel)
		mcp_reply(w->s, w->id, durable_task_json(t,
		    w->s->cfg->poll_interval_ms));
	else if (rc == STORE_OK)
		mcp_reply(w->s, w->id, mt_row_result(t));
	else {
		snprintf(msg, sizeof msg, "Failed to retrieve task: %s (%s)",
		    rc == STORE_EXPIRED ? "Task has expired" :
		    rc == STORE_NOT_FOUND ? "Task not found" :
		    "the task store could not be read", w->task_id);
		mcp_error(w->s, w->id, rc == STORE_ERROR ? RPC_INTERNAL_ERROR :
		    RPC_INVALID_PARAMS, msg);
	}
	mt_waiter_free(w);
}

static void
mt_poll_cb(evutil_socket_t fd, short events, void *arg)
{
	struct mt_waiter	*w = arg;

	(void)fd; (void)events;
	w->asking = true;
	store_get(w->task_id, w->s->owner, mt_polled, w);
}

/*
 * A task of another heavyd ended (the store's news, when it has any):
 * whoever waits for it asks the store now rather than at the next poll,
 * which stays as the backstop.
 */
static void
mt_store_event(enum store_event ev, const char *id)
{
	struct mt_waiter	*w, *tmp;

	if (ev != STORE_EVENT_END)
		return;
	for (w = TAILQ_FIRST(&mt_waiters); w != NULL; w = tmp) {
		tmp = TAILQ_NEXT(w, entry);
		if (w->poll == NULL || w->asking || strcmp(w->task_id, id) != 0)
			continue;
		evtimer_del(w->poll);
		mt_poll_cb(-1, 0, w);
	}
}

/* A request that waits for the end of a task (live: of this process;
 * else the store is polled, and its news heard). */
static struct mt_waiter *
mt_waiter_new(struct mcp_req *q, const char *task_id,
    struct task_record *live)
{
	struct mt_waiter	*w = xcalloc(1, sizeof *w);

	w->s = q->s;
	w->id = json_object_get(q->m.id);
	w->key = rpc_id_key(q->m.id);
	snprintf(w->task_id, sizeof w->task_id, "%s", task_id);
	TAILQ_INSERT_TAIL(&mt_waiters, w, entry);
	if (live == NULL) {
		store_watch(mt_store_event);
		w->poll = evtimer_new(ev_base, mt_poll_cb, w);
		mt_poll_arm(w);
	}
	return w;
}

/* tasks/result: at once for an ended task, else when it ends. */
static void
mt_result_found(struct mcp_req *q, const struct store_task *t,
    struct task_record *live)
{
	if (durable_terminal(t)) {
		mcp_reply(q->s, q->m.id, mt_row_result(t));
		return;
	}
	mt_waiter_new(q, t->id, live);
}

void
mcptasks_rpc_result(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mt_refused(s, m))
		mt_lookup(s, m, mt_result_found);
}

static void
mt_listed(void *arg, int rc, const struct store_task *rows, int n, int total,
    const char *next)
{
	struct mcp_req		*q = arg;
	struct mcp_session	*s = q->s;
	struct json_object	*res, *list;
	struct store_task	 t;

	(void)total;
	mcp_req_begin(q);
	if (rc != STORE_OK)
		mcp_error(s, q->m.id, rc == STORE_BAD_CURSOR ?
		    RPC_INVALID_PARAMS : RPC_INTERNAL_ERROR, rc ==
		    STORE_BAD_CURSOR ? "Invalid params: cursor is not one that "
		    "tasks/list returned" : "Internal error: the task store "
		    "could not be read; see heavyd's log");
	else {
		list = json_object_new_array();
		for (int i = 0; i < n; i++) {
			durable_fresh(&rows[i], s->owner, &t);
			json_object_array_add(list, durable_task_json(&t,
			    s->cfg->poll_interval_ms));
			store_task_clear(&t);
		}
		res = json_object_new_object();
		json_object_object_add(res, "tasks", list);
		if (next != NULL)
			json_object_object_add(res, "nextCursor",
			    json_object_new_string(next));
		mcp_reply(s, q->m.id, res);
	}
	mcp_req_end(q);
}

/* tasks/list: the caller's tasks, newest first, a page at a time. */
void
mcptasks_rpc_list(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v = NULL;
	const char		*cursor = NULL;

	if (mt_refused(s, m))
		return;
	if (json_object_object_get_ex(m->params, "cursor", &v) && v != NULL) {
		if (!json_object_is_type(v, json_type_string)) {
			mcp_error(s, m->id, RPC_INVALID_PARAMS,
			    "Invalid params: cursor must be a string");
			return;
		}
		cursor = json_object_get_string(v);
	}
	store_list(s->owner, cursor, s->cfg->tasks_page_size, mt_listed,
	    mcp_req_hold(s, m));
}

/* The cancelled task read back: 2025-11-25 answers with it. */
static void
mt_cancel_read(struct mcp_req *q, const struct store_task *t,
    struct task_record *live)
{
	(void)live;
	mcp_reply(q->s, q->m.id, durable_task_json(t,
	    q->s->cfg->poll_interval_ms));
}

/*
 * A task another heavyd runs: the cancel is recorded in the store, which
 * tells that heavyd; 2025-11-25 is answered with the task once it has
 * ended.  False when the store cannot pass a cancel on.
 */
static bool
mt_cancel_elsewhere(struct mcp_req *q, const struct store_task *t)
{
	struct mt_waiter	*w;

	if (!store_cancel(t->id, q->s->owner))
		return false;
	log_info("task %s: cancel asked of the heavyd that runs it (pid %d)",
	    t->id, (int)t->pid);
	if (q->s->modern) {	/* 2026-07-28: an empty acknowledgement */
		mcp_reply(q->s, q->m.id, json_object_new_object());
		return true;
	}
	w = mt_waiter_new(q, t->id, NULL);
	w->cancel = true;
	return true;
}

static void
mt_cancel_found(struct mcp_req *q, const struct store_task *t,
    struct task_record *live)
{
	struct mcp_session	*s = q->s;
	char			 msg[256];

	if (live == NULL && s->modern && durable_terminal(t)) {
		/* 2026-07-28: acknowledged all the same */
		mcp_reply(s, q->m.id, json_object_new_object());
		return;
	}
	if (live == NULL && !durable_terminal(t) && mt_cancel_elsewhere(q, t))
		return;
	if (live == NULL) {
		if (durable_terminal(t))
			snprintf(msg, sizeof msg, "Cannot cancel task: already "
			    "in terminal status '%s'", t->status);
		else
			snprintf(msg, sizeof msg, "Cannot cancel task: it runs in "
			    "another heavyd process (pid %d) on this state "
			    "directory; only that process can cancel it",
			    (int)t->pid);
		mcp_error(s, q->m.id, RPC_INVALID_PARAMS, msg);
		return;
	}
	log_info("task %s cancelled by tasks/cancel", t->id);
	registry_cancel(live, "cancelled by tasks/cancel: its workers were "
	    "killed", now_ms());
	if (s->modern)	/* 2026-07-28: an empty acknowledgement */
		mcp_reply(s, q->m.id, json_object_new_object());
	else
		mt_lookup(s, &q->m, mt_cancel_read);
}

/*
 * tasks/cancel: the workers are killed and the task is cancelled (in the
 * store too) before the answer; a task that has ended, or that another
 * heavyd runs, is refused with -32602 and the reason.
 */
void
mcptasks_rpc_cancel(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mt_refused(s, m))
		mt_lookup(s, m, mt_cancel_found);
}

/* A record ended: its waiters get the result, its requestor the news. */
void
mcptasks_changed(struct mcp_session *s, struct task_record *r)
{
	struct mt_waiter	*w, *tmp;
	struct store_task	 t;

	if (!r->finished || strcmp(r->owner, s->owner) != 0)
		return;
	for (w = TAILQ_FIRST(&mt_waiters); w != NULL; w = tmp) {
		tmp = TAILQ_NEXT(w, entry);
		if (w->s != s || strcmp(w->task_id, r->id) != 0)
			continue;
		mcp_reply(s, w->id, mt_related(r->result != NULL ?
		    result_render(r->result) : NULL, r->error, r->id));
		mt_waiter_free(w);
	}
	if (!r->mcp_task)
		return;
	durable_row(r, &t);
	mcp_notify(s, "notifications/tasks/status", durable_task_json(&t,
	    s->cfg->poll_interval_ms));
	store_task_clear(&t);
}

/* notifications/cancelled for a tasks/result: it waits no more. */
bool
mcptasks_request_cancelled(struct mcp_session *s, const char *key)
{
	struct mt_waiter	*w;

	TAILQ_FOREACH(w, &mt_waiters, entry)
		if (w->s == s && strcmp(w->key, key) == 0) {
			mt_waiter_free(w);
			return true;
		}
	return false;
}

/* The session is gone: its tasks/result requests wait no more. */
void
mcptasks_session_closed(struct mcp_session *s)
{
	struct mt_waiter	*w, *next;

	for (w = TAILQ_FIRST(&mt_waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->s == s)
			mt_waiter_free(w);
	}
}

/*
 * At shutdown, after every task of ours has ended (and answered its
 * waiters): a tasks/result still waiting is for a task another heavyd
 * runs.  It is answered all the same, so that no request goes unanswered.
 */
void
mcptasks_stop(void)
{
	struct mt_waiter	*w;

	while ((w = TAILQ_FIRST(&mt_waiters)) != NULL) {
		mcp_error(w->s, w->id, RPC_INTERNAL_ERROR, "heavyd is shutting "
		    "down; ask for this task's result again");
		mt_waiter_free(w);
	}
}

/* task.ttl: absent (-1), or milliseconds; -1 after answering -32602. */
static int
mt_requested_ttl(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *task, int64_t *ttl)
{
	struct json_object	*v;
	double			 d;

	*ttl = -1;
	if (!json_object_is_type(task, json_type_object)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: task must be an object");
		return -1;
	}
	if (!json_object_object_get_ex(task, "ttl", &v) || v == NULL)
		return 0;
	d = json_object_get_double(v);
	if ((!json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double)) || !(d >= 0) ||
	    d > 1e15) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "task.ttl must be a number of milliseconds, 0 or more");
		return -1;
	}
	*ttl = (int64_t)d;
	return 0;
}

/* CreateTaskResult: the task as it starts, and a line for the model. */
static struct json_object *
mt_created(struct mcp_session *s, struct task_record *r)
{
	struct json_object	*res = json_object_new_object(), *meta;
	struct store_task	 t;
	char			 line[256];

	durable_row(r, &t);
	if (s->modern) {	/* 2026-07-28: the task itself, flat */
		json_object_put(res);
		res = mt_modern(&t, s->cfg->poll_interval_ms, false);
		json_object_object_add(res, "resultType",
		    json_object_new_string("task"));
		store_task_clear(&t);
		return res;
	}
	json_object_object_add(res, "task", durable_task_json(&t,
	    s->cfg->poll_interval_ms));
	store_task_clear(&t);
	snprintf(line, sizeof line, "heavy_orchestrate is running as task %s; "
	    "its answer will come from tasks/result.", r->id);
	meta = json_object_new_object();
	json_object_object_add(meta, MT_IMMEDIATE,
	    json_object_new_string(line));
	json_object_object_add(res, "_meta", meta);
	return res;
}

/* The task exists (in the store): CreateTaskResult.  Refused only when
 * the store cannot write: then it was never announced. */
static void
mt_call_started(struct mcp_req *q, struct task_record *r,
    struct json_object *error, void *arg)
{
	char	msg[512];

	(void)arg;
	if (r == NULL) {
		json_object_put(error);
		snprintf(msg, sizeof msg, "Internal error: the task store "
		    "cannot write: %s; retry later", store_error());
		mcp_error(q->s, q->m.id, RPC_INTERNAL_ERROR, msg);
		return;
	}
	log_debug("task %s created by a task-augmented tools/call", r->id);
	mcp_reply(q->s, q->m.id, mt_created(q->s, r));
}

/*
 * A task-augmented tools/call.  Only heavy_orchestrate takes one
 * (execution.taskSupport "optional"); the others are -32601, as the spec
 * says.  Bad arguments, "busy" and the like still make a task: it fails
 * at once with the result the blocking call would have given.
 */
void
mcptasks_call(struct mcp_session *s, struct rpc_msg *m, const char *name,
    struct json_object *args, struct json_object *task)
{
	struct mcp_run		 run = { .tool = "heavy_orchestrate",
	    .mcp_task = true, .log_level = -1, .started = mt_call_started };
	struct task_params	 p;
	struct json_object	*v;
	int64_t			 ttl;
	char			 msg[256];
	bool			 known;

	if (strcmp(name, "heavy_orchestrate") != 0) {
		known = mkh_has(s->cfg, name);
		snprintf(msg, sizeof msg, known ? "Method not found: tool "
		    "%.100s does not support task-augmented calls (its "
		    "execution.taskSupport is forbidden)" :
		    "Unknown tool: %.100s", name);
		mcp_error(s, m->id, known ? RPC_METHOD_NOT_FOUND :
		    RPC_INVALID_PARAMS, msg);
		return;
	}
	if (mt_requested_ttl(s, m, task, &ttl) == -1)
		return;
	if (json_object_object_get_ex(m->params, "_meta", &v) &&
	    json_object_object_get_ex(v, "progressToken", &v) &&
	    (json_object_is_type(v, json_type_string) ||
	    json_object_is_type(v, json_type_int)))
		run.progress_token = v;
	if (tool_orchestrate_args(s->cfg, args, &p, msg, sizeof msg) == -1) {
		run.ttl_ms = service_ttl_ms(s->cfg, s->cfg->task_timeout_s, ttl);
		mcp_run_result(s, m, &run, msg);
	} else {
		run.ttl_ms = service_ttl_ms(s->cfg, p.timeout_s, ttl);
		mcp_run(s, m, &run, &p);
	}
}

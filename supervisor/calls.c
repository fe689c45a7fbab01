/*
 * The orchestrations of a session.  Each runs through the task service
 * (service.c) as an mcp_call: a blocking call (answered at its
 * end; notifications/cancelled, cancel_task or, in 2026-07-28 over HTTP, a
 * closed stream stop it), a task-augmented one (mcptasks.c) or
 * grok_heavy_orchestrate's background task.  Its hooks send its progress
 * and its answer, and add its usage to the session's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

#define MCP_RELATED_TASK	"io.modelcontextprotocol/related-task"

/*
 * One orchestration of the session, which the task service runs
 * (service.c): a blocking call (id set: answered at its end), a
 * task-augmented call or a background task; where its progress goes, and
 * whose usage it adds to.
 */
struct mcp_call {
	struct mcp_session	*s;
	char			*key;		/* blocking: its id, as a key */
	struct json_object	*id;
	struct json_object	*progress_token;
	struct task_record	*rec;
	int			 log_level;	/* -1: no log lines */
	/* Until the task service says how the start went: */
	struct mcp_req		*q;		/* the request that asked */
	mcp_started_fn		 started;
	void			*started_arg;
	char			*abandoned;	/* cancelled meanwhile: why */
};


static void
mcp_call_free(struct mcp_call *c)
{
	if (c->q != NULL)
		mcp_req_end(c->q);
	mcp_session_unref(c->s);
	json_object_put(c->id);
	json_object_put(c->progress_token);
	free(c->abandoned);
	free(c->key);
	free(c);
}

static void
mcp_call_progress(void *arg, struct task_record *r, double progress,
    double total, const char *msg)
{
	struct mcp_call		*c = arg;
	struct json_object	*params, *meta, *rel;

	if (c->progress_token == NULL)
		return;
	params = json_object_new_object();
	json_object_object_add(params, "progressToken",
	    json_object_get(c->progress_token));
	json_object_object_add(params, "progress",
	    json_object_new_double(progress));
	json_object_object_add(params, "total", json_object_new_double(total));
	json_object_object_add(params, "message", json_object_new_string(msg));
	if (r->mcp_task) {
		rel = json_object_new_object();
		json_object_object_add(rel, "taskId",
		    json_object_new_string(r->id));
		meta = json_object_new_object();
		json_object_object_add(meta, MCP_RELATED_TASK, rel);
		json_object_object_add(params, "_meta", meta);
	}
	/* A blocking call's progress belongs to its request. */
	mcp_notify_related(c->s, c->id != NULL ? c->key : NULL,
	    "notifications/progress", params);
}

/*
 * Every result also reports session_usage: the usage of this session's
 * tasks that have ended so far, this one included (add: NULL for an
 * answer from the cache, which costs nothing, or a call refused before it
 * ran), and whether it was cached.
 */
static void
mcp_session_usage(struct mcp_session *s, struct task_result *result,
    const struct usage *add)
{
	if (add != NULL) {
		usage_add(&s->usage, add);
		s->usage_tasks++;
	}
	result->has_session = true;
	result->session_usage = s->usage;
	result->session_tasks = s->usage_tasks;
}

/* The task ended: its usage counts for the session (the result says so,
 * and the store keeps it so). */
static void
mcp_call_done(void *arg, struct task_record *r, const struct task_outcome *o,
    struct task_result *result, bool ran)
{
	struct mcp_call	*c = arg;

	(void)r;
	if (result == NULL)
		return;
	mcp_session_usage(c->s, result, ran ? &o->usage : NULL);
}

/* The store has the end: a blocking call is answered (a refusal has no
 * result: its reason is the answer), and the call is forgotten. */
static void
mcp_call_answer(void *arg, const struct task_outcome *o,
    const struct task_result *result)
{
	struct mcp_call	*c = arg;

	if (c->id != NULL) {
		mcp_reply(c->s, c->id, result != NULL ?
		    result_render(result) : tool_error_result(o->error));
		lh_table_delete(c->s->calls, c->key);
	}
	mcp_call_free(c);
}

/* The task was stopped (cancel_task, tasks/cancel, shutdown): a blocking
 * call answers with an error result that says why. */
static void
mcp_call_stopped(void *arg, const char *why)
{
	struct mcp_call	*c = arg;

	if (c->id != NULL) {
		mcp_reply(c->s, c->id, tool_error_result(why));
		lh_table_delete(c->s->calls, c->key);
	}
	mcp_call_free(c);
}

/* A rate quota reached: not a tool's error but the request's, which HTTP
 * answers 429 with Retry-After (http.c). */
static struct json_object *
mcp_calls_rate_error(struct json_object *id, const char *why,
    int retry_after_s)
{
	struct json_object	*e = rpc_error(id, RPC_RATE_LIMITED, why);
	struct json_object	*data = json_object_new_object(), *err;

	json_object_object_add(data, "retryAfter",
	    json_object_new_int(retry_after_s));
	if (json_object_object_get_ex(e, "error", &err))
		json_object_object_add(err, "data", data);
	else
		json_object_put(data);
	return e;
}

/*
 * The task service says how the start went: a blocking call is now
 * answered at its end; whoever asked hears of the record, or of the
 * refusal with its isError result (theirs to send), but for a rate quota,
 * answered here as a JSON-RPC error.
 */
static void
mcp_call_started(void *arg, struct task_record *r, enum service_refusal how,
    const char *why, int retry_after_s)
{
	struct mcp_call		*c = arg;
	struct mcp_req		*q = c->q;
	mcp_started_fn		 fn = c->started;
	void			*fn_arg = c->started_arg;

	c->q = NULL;
	if (c->abandoned != NULL) {	/* cancelled while it started */
		if (r != NULL)
			service_abandon(r, c->abandoned);
		mcp_req_end(q);
		mcp_call_free(c);
		return;
	}
	if (r == NULL && c->id != NULL)
		lh_table_delete(c->s->calls, c->key);
	if (r == NULL && how == SERVICE_REFUSED_RATE) {
		mcp_call_free(c);
		mcp_req_begin(q);
		mcp_reply_error(q->s, mcp_calls_rate_error(q->m.id, why,
		    retry_after_s));
		mcp_req_end(q);
		return;
	}
	if ((c->rec = r) == NULL)
		mcp_call_free(c);
	else if (c->id != NULL)	/* its stream may start: it runs */
		mcp_taken(c->s, c->key);
	mcp_req_begin(q);
	fn(q, r, r == NULL ? tool_error_result(why) : NULL, fn_arg);
	mcp_req_end(q);
}

static const struct service_hooks mcp_call_hooks = {
	mcp_call_started, mcp_call_progress, mcp_call_done, mcp_call_answer,
	mcp_call_stopped,
};

static struct json_object *
mcp_progress_token(struct json_object *params)
{
	struct json_object	*meta, *tok;

	if (!json_object_object_get_ex(params, "_meta", &meta) ||
	    !json_object_object_get_ex(meta, "progressToken", &tok))
		return NULL;
	if (!json_object_is_type(tok, json_type_string) &&
	    !json_object_is_type(tok, json_type_int))
		return NULL;
	return json_object_get(tok);
}

static struct mcp_call *
mcp_call_new(struct mcp_session *s, struct rpc_msg *m,
    const struct mcp_run *run)
{
	struct mcp_call	*c = xcalloc(1, sizeof *c);

	c->s = s;
	mcp_session_ref(s);
	if (run->blocking) {
		c->id = json_object_get(m->id);
		c->key = rpc_id_key(m->id);
	}
	c->progress_token = json_object_get(run->progress_token);
	c->log_level = run->log_level;
	c->q = mcp_req_hold(s, m);
	c->started = run->started;
	c->started_arg = run->started_arg;
	if (c->id != NULL)	/* cancellable from now on, answered at its end */
		lh_table_insert(s->calls, c->key, c);
	return c;
}

/* The task service's request for a call of this session. */
static void
mcp_service_req(struct mcp_session *s, const struct mcp_run *run,
    struct mcp_call *c, struct service_req *req)
{
	req->owner = s->owner;
	req->cfg = s->cfg;
	req->tool = run->tool;
	req->mcp_task = run->mcp_task;
	req->ttl_ms = run->ttl_ms;
	req->hooks = &mcp_call_hooks;
	req->arg = c;
}

/* A task-augmented call refused before it ran: a task all the same,
 * failed with the reason the blocking call would have been given. */
void
mcp_run_result(struct mcp_session *s, struct rpc_msg *m,
    const struct mcp_run *run, const char *failed)
{
	struct mcp_call		*c = mcp_call_new(s, m, run);
	struct service_req	 req;

	mcp_service_req(s, run, c, &req);
	service_refused(&req, failed);
}

/*
 * Runs an orchestration for the request m through the task service; takes
 * the params.  run->started hears how the start went, once: the record,
 * or the isError result of why not (no API key; busy; a query too long;
 * the store cannot write) -- a task-augmented call that is refused for
 * any reason but the store becomes a failed task instead.
 */
void
mcp_run(struct mcp_session *s, struct rpc_msg *m, const struct mcp_run *run,
    struct task_params *p)
{
	struct mcp_call		*c = mcp_call_new(s, m, run);
	struct service_req	 req;

	mcp_service_req(s, run, c, &req);
	service_start(&req, p);
}

/* 2026-07-28: the level a request asks for in _meta; -1: none. */
static int
mcp_calls_log_level(struct json_object *params)
{
	struct json_object	*meta, *v;

	if (!json_object_object_get_ex(params, "_meta", &meta) ||
	    !json_object_object_get_ex(meta, "io.modelcontextprotocol/logLevel",
	    &v) || !json_object_is_type(v, json_type_string))
		return -1;
	return mcp_log_level(json_object_get_string(v));
}

/* A blocking call that was refused is answered with why. */
static void
mcp_calls_started(struct mcp_req *q, struct task_record *r,
    struct json_object *error, void *arg)
{
	(void)r; (void)arg;
	if (error != NULL)
		mcp_reply(q->s, q->m.id, error);
}

void
mcp_calls_orchestrate(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *args)
{
	struct mcp_run		 run = { .tool = "heavy_orchestrate",
	    .blocking = true, .started = mcp_calls_started };
	struct task_params	 p;
	char			 msg[256];

	if (tool_orchestrate_args(s->cfg, args, &p, msg, sizeof msg) == -1) {
		mcp_reply(s, m->id, tool_error_result(msg));
		return;
	}
	run.progress_token = mcp_progress_token(m->params);
	run.log_level = s->modern ? mcp_calls_log_level(m->params) : -1;
	mcp_run(s, m, &run, &p);
	json_object_put(run.progress_token);
}




/* A call the client cancelled, never answered: its task is stopped. */
static void
mcp_call_abandon(struct mcp_call *c, const char *why)
{
	service_abandon(c->rec, why);
	mcp_call_free(c);
}

/* A log line about a task: to the blocking call running it, on its
 * stream, if its request asked for lines of that level. */
void
mcp_calls_log(struct mcp_session *s, enum log_level level, const char *task_id,
    const char *msg)
{
	struct lh_entry		*e;
	struct mcp_call		*c;

	lh_foreach(s->calls, e) {
		c = (struct mcp_call *)lh_entry_v(e);
		if (c->rec != NULL && strcmp(c->rec->id, task_id) == 0 &&
		    (int)level <= c->log_level)
			mcp_notify_log(s, c->key, level, msg);
	}
}

/* notifications/cancelled of a blocking call: its task is stopped, and
 * the call never answered.  false: no such call (ended, or not one). */
bool
mcp_calls_cancel(struct mcp_session *s, const char *key, const char *why)
{
	struct lh_entry	*e;
	struct mcp_call	*c;

	if ((e = lh_table_lookup_entry(s->calls, key)) == NULL)
		return false;
	c = (struct mcp_call *)lh_entry_v(e);
	lh_table_delete_entry(s->calls, e);
	log_info("request %s %s", c->key, why);
	if (c->rec == NULL)	/* still starting: its start stops it */
		c->abandoned = xstrdup(why);
	else
		mcp_call_abandon(c, why);
	return true;
}

/* Every blocking call of the session is stopped, unanswered. */
void
mcp_calls_abort(struct mcp_session *s, const char *why)
{
	struct lh_entry	*e;

	while ((e = s->calls->head) != NULL)
		mcp_calls_cancel(s, (const char *)lh_entry_k(e), why);
}

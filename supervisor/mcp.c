/*
 * MCP sessions, whatever transport carries them (stdio.c, http.c), and the
 * dispatch of their messages to the methods.  Every
 * orchestration becomes a task, registered and stored whichever way it
 * was asked for: a blocking tools/call of heavy_orchestrate (answered at
 * its end; notifications/cancelled or cancel_task kills it), a
 * task-augmented one (MCP Tasks, mcptasks.c) or grok_heavy_orchestrate.
 * What a session owns is in its struct mcp_session: who calls, its own
 * defaults, its calls in flight, the usage of its tasks.
 */
#include <sys/stat.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <json-c/linkhash.h>

#include "supervisor.h"

#define MCP_LATEST	"2025-11-25"
#define MCP_TASKS_SINCE	"2025-11-25"	/* MCP Tasks came with it */
#define MCP_RELATED_TASK	"io.modelcontextprotocol/related-task"
#define MCP_FLUSH_STALL_MS	10000	/* a reader this slow at exit is gone */

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
};

static TAILQ_HEAD(, mcp_session) mcp_sessions =
    TAILQ_HEAD_INITIALIZER(mcp_sessions);
static int			 mcp_nsessions;
static struct heavy_config	*mcp_config;	/* new sessions copy it */


static const char *mcp_versions[] = { MCP_LATEST, "2025-06-18",
    "2025-03-26" };

/*
 * Adds text to out with every byte that is not part of a UTF-8 character
 * replaced by U+FFFD.  json-c writes its structure in ASCII and copies
 * string bytes as they are, so a bad byte (a message cut by %.100s, a
 * worker's text) can only be inside a string, where U+FFFD is fine.
 */
static void
mcp_add_utf8(struct evbuffer *out, const char *text, size_t len)
{
	size_t	n, good;

	while (len > 0) {
		for (good = 0; good < len; good += n)	/* ASCII at once */
			if ((n = (unsigned char)text[good] < 0x80 ? 1 :
			    rpc_utf8_char(text + good, len - good)) == 0)
				break;
		evbuffer_add(out, text, good);
		if (good == len)
			return;
		evbuffer_add(out, "\xef\xbf\xbd", 3);
		text += good + 1;
		len -= good + 1;
	}
}

/*
 * Hands one message, always UTF-8, to the session's transport; takes msg.
 * related is the request it belongs to (NULL: the session's), final marks
 * that request's reply.  A closed session's messages go nowhere.
 */
static void
mcp_send_related(struct mcp_session *s, const char *related, bool final,
    struct json_object *msg)
{
	struct evbuffer	*out;
	size_t		 len;
	const char	*text;

	if (!s->closed) {
		out = evbuffer_new();
		text = json_object_to_json_string_length(msg,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		    &len);
		mcp_add_utf8(out, text, len);
		s->tp->send(s->tp_arg, related, final, out);
		evbuffer_free(out);
	}
	json_object_put(msg);
}

/* The reply (a result or an error) to the request id; takes msg. */
static void
mcp_send(struct mcp_session *s, struct json_object *msg)
{
	struct json_object	*id = NULL, *res;
	char			*key;

	if (s->modern && json_object_object_get_ex(msg, "result", &res))
		modern_decorate(s, res);
	if (!json_object_object_get_ex(msg, "id", &id) || id == NULL) {
		mcp_send_related(s, NULL, true, msg);
		return;
	}
	key = rpc_id_key(id);
	mcp_send_related(s, key, true, msg);
	free(key);
}

/* For the methods served in other files: a result, an error, a notice. */
void
mcp_reply(struct mcp_session *s, struct json_object *id,
    struct json_object *result)
{
	mcp_send(s, rpc_result(id, result));
}

/*
 * An error with no id to give (a parse error) has "id": null in JSON-RPC
 * 2.0 and in the MCP revisions before 2025-11-25 (whose schemas require
 * an id, and none fits); from 2025-11-25 the schema makes the id optional
 * and forbids null, so it is left out, also before initialize.
 */
void
mcp_error(struct mcp_session *s, struct json_object *id, int code,
    const char *message)
{
	struct json_object	*e = rpc_error(id, code, message);

	if (id == NULL && (s->version == NULL ||
	    strcmp(s->version, "2025-11-25") >= 0))
		json_object_object_del(e, "id");
	mcp_send(s, e);
}

/* A notification that belongs to a request (its id key): its stream. */
void
mcp_notify_related(struct mcp_session *s, const char *key, const char *method,
    struct json_object *params)
{
	mcp_send_related(s, key, false, rpc_notification(method, params));
}

/* A whole error response, made elsewhere; takes it. */
void
mcp_reply_error(struct mcp_session *s, struct json_object *error)
{
	mcp_send(s, error);
}

void
mcp_notify(struct mcp_session *s, const char *method,
    struct json_object *params)
{
	mcp_send_related(s, NULL, false, rpc_notification(method, params));
}

int
mcp_negotiate_version(const char *requested, const char **chosen)
{
	for (size_t i = 0; i < sizeof mcp_versions / sizeof *mcp_versions; i++)
		if (requested != NULL && strcmp(requested, mcp_versions[i]) == 0) {
			*chosen = mcp_versions[i];
			return 0;
		}
	*chosen = MCP_LATEST;	/* the client decides whether it can cope */
	return -1;
}

/*
 * Whether the session negotiated MCP Tasks.  An older client is not told
 * of them, and its task-augmented tools/call is served as a plain one, as
 * the spec asks of a receiver that did not declare the capability.
 * Versions are dates, so they compare as strings.
 */
bool
mcp_has_tasks(const struct mcp_session *s)
{
	return !s->modern && s->version != NULL &&
	    strcmp(s->version, MCP_TASKS_SINCE) >= 0;
}

/* What a model reads about the server: when to call it, and how. */
struct json_object *
mcp_instructions(const struct mcp_session *s)
{
	struct json_object	*o;
	struct buf		 b;
	char			*text;

	buf_init(&b, 0);
	buf_printf(&b, "heavyd answers a hard question with several LLM "
	    "agents: a planner splits the query into sub-questions, agents "
	    "answer them in parallel with tools, and one call merges their "
	    "answers. "
	    "Use heavy_orchestrate when a deep, many-sided answer is worth "
	    "tens of seconds to minutes and several model calls; a simple "
	    "question does not need it. It sends progress notifications "
	    "while it works (pass a progressToken).");
	if (mcp_has_tasks(s))
		buf_printf(&b, " It can also run as an MCP task (tasks/get, "
		    "tasks/result, tasks/cancel).");
	else if (s->modern)
		buf_printf(&b, " To a client that declares the tasks extension "
		    "it answers with a task (tasks/get, tasks/cancel).");
	if (s->cfg->tools_compat)
		buf_printf(&b, " If your client cuts calls short, start it "
		    "with grok_heavy_orchestrate, which returns a task_id at "
		    "once, follow it with get_task_progress and stop it with "
		    "cancel_task.");
	text = buf_release(&b);
	o = json_object_new_string(text);
	free(text);
	return o;
}

struct json_object *
mcp_capabilities(const struct mcp_session *s)
{
	struct json_object	*caps = json_object_new_object();

	json_object_object_add(caps, "tools", json_tokener_parse(
	    "{\"listChanged\":false}"));
	json_object_object_add(caps, "logging", json_object_new_object());
	json_object_object_add(caps, "resources", json_tokener_parse(
	    "{\"subscribe\":true,\"listChanged\":false}"));
	json_object_object_add(caps, "prompts", json_tokener_parse(
	    "{\"listChanged\":false}"));
	json_object_object_add(caps, "completions", json_object_new_object());
	if (mcp_has_tasks(s))
		json_object_object_add(caps, "tasks", json_tokener_parse(
		    "{\"list\":{},\"cancel\":{},\"requests\":{\"tools\":"
		    "{\"call\":{}}}}"));
	return caps;
}

struct json_object *
mcp_server_info(void)
{
	struct json_object	*info = json_object_new_object();

	json_object_object_add(info, "name", json_object_new_string(HEAVY_NAME));
	json_object_object_add(info, "version",
	    json_object_new_string(HEAVY_VERSION));
	json_object_object_add(info, "description", json_object_new_string(
	    "Multi-agent heavy analysis: parallel agents in killable, "
	    "isolated worker processes"));
	return info;
}

static void
mcp_initialize(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v, *res;
	const char		*version;

	if (!json_object_object_get_ex(m->params, "protocolVersion", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: protocolVersion (string) is required");
		return;
	}
	mcp_negotiate_version(json_object_get_string(v), &version);
	s->version = version;
	res = json_object_new_object();
	json_object_object_add(res, "protocolVersion",
	    json_object_new_string(version));
	json_object_object_add(res, "capabilities", mcp_capabilities(s));
	json_object_object_add(res, "serverInfo", mcp_server_info());
	json_object_object_add(res, "instructions", mcp_instructions(s));
	s->initialized = true;
	mcp_send(s, rpc_result(m->id, res));
}

static void
mcp_ping(struct mcp_session *s, struct rpc_msg *m)
{
	mcp_send(s, rpc_result(m->id, json_object_new_object()));
}

/*
 * A list that is never paginated hands out no cursor, so any cursor is
 * bogus: -32602, as MCP says a server SHOULD.  A null one is no cursor.
 */
bool
mcp_bad_cursor(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(m->params, "cursor", &v) || v == NULL)
		return false;
	mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: cursor is "
	    "not one this server gave (this list has a single page)");
	return true;
}

void
mcp_tools_list(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mcp_bad_cursor(s, m))
		mcp_send(s, rpc_result(m->id, tool_list(s->cfg)));
}

/* MCP's syslog levels, mapped onto ours. */
static int
mcp_level(const char *name)
{
	static const struct { const char *name; int level; } levels[] = {
		{ "debug", LOG_LVL_DEBUG }, { "info", LOG_LVL_INFO },
		{ "notice", LOG_LVL_INFO }, { "warning", LOG_LVL_WARN },
		{ "error", LOG_LVL_ERROR }, { "critical", LOG_LVL_ERROR },
		{ "alert", LOG_LVL_ERROR }, { "emergency", LOG_LVL_ERROR },
	};

	for (size_t i = 0; name != NULL && i < sizeof levels / sizeof *levels;
	    i++)
		if (strcmp(name, levels[i].name) == 0)
			return levels[i].level;
	return -1;
}

/*
 * A log line goes to the sessions that asked for its level and may read
 * it: the local user's, who runs this heavyd and reads its stderr anyway.
 * A remote session is told nothing of the server's, or another owner's,
 * affairs.
 */
static void
mcp_log_hook(enum log_level level, const char *msg)
{
	static const char	*names[] = { "error", "warning", "info", "debug" };
	struct mcp_session	*s;
	struct json_object	*params;

	TAILQ_FOREACH(s, &mcp_sessions, entry) {
		if (!s->local || s->closed || (int)level > s->log_level)
			continue;
		params = json_object_new_object();
		json_object_object_add(params, "level",
		    json_object_new_string(names[level]));
		json_object_object_add(params, "logger",
		    json_object_new_string(HEAVY_NAME));
		json_object_object_add(params, "data",
		    json_object_new_string(msg));
		mcp_notify(s, "notifications/message", params);
	}
}

static void
mcp_set_level(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v = NULL;
	int			 level;

	json_object_object_get_ex(m->params, "level", &v);
	if ((level = mcp_level(json_object_get_string(v))) == -1) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "level must be one of debug, info, notice, warning, error, "
		    "critical, alert, emergency");
		return;
	}
	s->log_level = level;
	mcp_send(s, rpc_result(m->id, json_object_new_object()));
}

static void
mcp_call_free(struct mcp_call *c)
{
	mcp_session_unref(c->s);
	json_object_put(c->id);
	json_object_put(c->progress_token);
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
	mcp_send_related(c->s, c->id != NULL ? c->key : NULL, false,
	    rpc_notification("notifications/progress", params));
}

/*
 * Every result also reports session_usage: the usage of this session's
 * tasks that have ended so far, this one included (add: NULL for an
 * answer from the cache, which costs nothing, or a call refused before it
 * ran), and whether it was cached.
 */
static void
mcp_session_usage(struct mcp_session *s, struct json_object *result,
    const struct usage *add)
{
	struct json_object	*sc, *su;

	if (!json_object_object_get_ex(result, "structuredContent", &sc))
		return;
	if (add != NULL) {
		usage_add(&s->usage, add);
		s->usage_tasks++;
	}
	if (!json_object_object_get_ex(sc, "cached", NULL)) {
		json_object_object_add(sc, "cached",
		    json_object_new_boolean(0));
		json_object_object_add(sc, "cached_from", NULL);
	}
	su = task_usage_json(&s->usage);
	json_object_object_add(su, "tasks",
	    json_object_new_int(s->usage_tasks));
	json_object_object_add(sc, "session_usage", su);
}

/* The task ended: its usage counts for the session (the result says so). */
static void
mcp_call_done(void *arg, struct task_record *r, const struct task_outcome *o,
    struct json_object *result, bool ran)
{
	struct mcp_call	*c = arg;

	(void)r;
	if (result != NULL)
		mcp_session_usage(c->s, result, ran ? &o->usage : NULL);
}

/* The store has the end: a blocking call is answered (a refusal has no
 * result: its reason is the answer), and the call is forgotten. */
static void
mcp_call_answer(void *arg, const struct task_outcome *o,
    struct json_object *result)
{
	struct mcp_call	*c = arg;

	if (c->id != NULL) {
		mcp_send(c->s, rpc_result(c->id, result != NULL ?
		    json_object_get(result) : tool_error_result(o->error)));
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
		mcp_send(c->s, rpc_result(c->id, tool_error_result(why)));
		lh_table_delete(c->s->calls, c->key);
	}
	mcp_call_free(c);
}

static const struct service_hooks mcp_call_hooks = {
	mcp_call_progress, mcp_call_done, mcp_call_answer, mcp_call_stopped,
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
mcp_call_new(struct mcp_session *s, const struct mcp_run *run)
{
	struct mcp_call	*c = xcalloc(1, sizeof *c);

	c->s = s;
	mcp_session_ref(s);
	if (run->id != NULL) {
		c->id = json_object_get(run->id);
		c->key = rpc_id_key(run->id);
	}
	c->progress_token = json_object_get(run->progress_token);
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

/* The record, or NULL and *error, the isError result of why not. */
static struct task_record *
mcp_call_started(struct mcp_call *c, struct task_record *r, const char *why,
    struct json_object **error)
{
	if ((c->rec = r) == NULL) {
		mcp_call_free(c);
		*error = tool_error_result(why);
		return NULL;
	}
	if (c->id != NULL)	/* a blocking call, answered at its end */
		lh_table_insert(c->s->calls, c->key, c);
	return r;
}

/* A task-augmented call refused before it ran: a task all the same,
 * failed with the reason the blocking call would have been given. */
struct task_record *
mcp_run_result(struct mcp_session *s, const struct mcp_run *run,
    const char *failed, struct json_object **error)
{
	struct mcp_call		*c = mcp_call_new(s, run);
	struct service_req	 req;
	char			 why[512];

	mcp_service_req(s, run, c, &req);
	*error = NULL;
	return mcp_call_started(c, service_refused(&req, failed, why,
	    sizeof why), why, error);
}

/*
 * Runs an orchestration for the session through the task service; takes
 * the params.  Returns the record, or NULL and *error, the isError result
 * (no API key; busy; a query too long; the store cannot write) -- a
 * task-augmented call that is refused for any reason but the store
 * becomes a failed task instead.
 */
struct task_record *
mcp_run(struct mcp_session *s, const struct mcp_run *run,
    struct task_params *p, struct json_object **error)
{
	struct mcp_call		*c = mcp_call_new(s, run);
	struct service_req	 req;
	char			 why[512];

	mcp_service_req(s, run, c, &req);
	*error = NULL;
	return mcp_call_started(c, service_start(&req, p, why, sizeof why),
	    why, error);
}

static void
mcp_orchestrate(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *args)
{
	struct mcp_run		 run = { .tool = "heavy_orchestrate" };
	struct task_params	 p;
	struct json_object	*err;
	char			 msg[256];

	if (tool_orchestrate_args(s->cfg, args, &p, msg, sizeof msg) == -1) {
		mcp_send(s, rpc_result(m->id, tool_error_result(msg)));
		return;
	}
	run.id = m->id;
	run.progress_token = mcp_progress_token(m->params);
	if (mcp_run(s, &run, &p, &err) == NULL)
		mcp_send(s, rpc_result(m->id, err));
	json_object_put(run.progress_token);
}

/* An unknown tool, named up to 100 bytes cut on a character boundary. */
static void
mcp_unknown_tool(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *name)
{
	const char	*text = json_object_get_string(name);
	char		 msg[160];
	size_t		 len = strlen(text);

	if (len != (size_t)json_object_get_string_len(name)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Unknown tool: a name with a NUL character");
		return;
	}
	if (len > 100)		/* back to the start of a character */
		for (len = 100; len > 0 &&
		    ((unsigned char)text[len] & 0xc0) == 0x80; len--)
			;
	snprintf(msg, sizeof msg, "Unknown tool: %.*s", (int)len, text);
	mcp_error(s, m->id, RPC_INVALID_PARAMS, msg);
}

/* name, a string without a NUL (else no tool's), and arguments, an object. */
static int
mcp_call_params(struct mcp_session *s, struct rpc_msg *m,
    struct json_object **name, struct json_object **args)
{
	*args = NULL;
	if (!json_object_object_get_ex(m->params, "name", name) ||
	    !json_object_is_type(*name, json_type_string)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: name (string) is required");
		return -1;
	}
	if (json_object_object_get_ex(m->params, "arguments", args) &&
	    !json_object_is_type(*args, json_type_object)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: arguments must be an object");
		return -1;
	}
	if (strlen(json_object_get_string(*name)) !=
	    (size_t)json_object_get_string_len(*name)) {
		mcp_unknown_tool(s, m, *name);
		return -1;
	}
	return 0;
}

void
mcp_tools_call(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*name, *args, *res, *task = NULL;
	char			*key;
	bool			 dup;

	if (mcp_call_params(s, m, &name, &args) == -1)
		return;
	if (json_object_object_get_ex(m->params, "task", &task) &&
	    task != NULL && mcp_has_tasks(s)) {
		mcptasks_call(s, m, json_object_get_string(name), args, task);
		return;
	}
	if (strcmp(json_object_get_string(name), "heavy_orchestrate") != 0) {
		if ((res = mkh_call(s, json_object_get_string(name),
		    args)) != NULL) {
			mcp_send(s, rpc_result(m->id, res));
			return;
		}
		mcp_unknown_tool(s, m, name);
		return;
	}
	key = rpc_id_key(m->id);
	dup = lh_table_lookup_entry(s->calls, key) != NULL;
	free(key);
	if (dup) {
		mcp_error(s, m->id, RPC_INVALID_REQUEST,
		    "Invalid Request: id is already in use by a running call");
		return;
	}
	mcp_orchestrate(s, m, args);
}

/* A call the client cancelled, never answered: its task is stopped. */
static void
mcp_call_abandon(struct mcp_call *c, const char *why)
{
	service_abandon(c->rec, why);
	mcp_call_free(c);
}

/* notifications/cancelled: kill the task's workers, send nothing. */
static void
mcp_cancelled(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*id;
	struct lh_entry		*e;
	struct mcp_call		*c;
	char			*key;

	if (!json_object_object_get_ex(m->params, "requestId", &id) ||
	    (!json_object_is_type(id, json_type_string) &&
	    !json_object_is_type(id, json_type_int)))
		return;
	key = rpc_id_key(id);
	e = lh_table_lookup_entry(s->calls, key);
	if (e == NULL) {
		if (!modern_cancelled(s, key))	/* subscriptions/listen */
			mcptasks_request_cancelled(s, key); /* tasks/result */
		free(key);
		return;		/* finished already, or never ours */
	}
	free(key);
	c = (struct mcp_call *)lh_entry_v(e);
	lh_table_delete_entry(s->calls, e);
	log_info("request %s cancelled by the client", c->key);
	mcp_call_abandon(c, "cancelled by the client");
}

static const struct {
	const char	*method;
	void		(*fn)(struct mcp_session *, struct rpc_msg *);
	bool		 before_init;
} mcp_methods[] = {
	{ "initialize", mcp_initialize, true },
	{ "ping", mcp_ping, true },
	{ "tools/list", mcp_tools_list, false },
	{ "tools/call", mcp_tools_call, false },
	{ "logging/setLevel", mcp_set_level, false },
	{ "resources/list", resources_rpc_list, false },
	{ "resources/templates/list", resources_rpc_templates, false },
	{ "resources/read", resources_rpc_read, false },
	{ "resources/subscribe", resources_rpc_subscribe, false },
	{ "resources/unsubscribe", resources_rpc_unsubscribe, false },
	{ "prompts/list", prompts_rpc_list, false },
	{ "prompts/get", prompts_rpc_get, false },
	{ "completion/complete", complete_rpc, false },
	{ "tasks/get", mcptasks_rpc_get, false },
	{ "tasks/result", mcptasks_rpc_result, false },
	{ "tasks/list", mcptasks_rpc_list, false },
	{ "tasks/cancel", mcptasks_rpc_cancel, false },
};

static void
mcp_request(struct mcp_session *s, struct rpc_msg *m)
{
	if (modern_is(m)) {
		modern_request(s, m);
		return;
	}
	for (size_t i = 0; i < sizeof mcp_methods / sizeof *mcp_methods; i++) {
		if (strcmp(m->method, mcp_methods[i].method) != 0)
			continue;
		if (!s->initialized && !mcp_methods[i].before_init)
			mcp_error(s, m->id, RPC_INVALID_REQUEST,
			    "Invalid Request: send initialize first");
		else if (s->initialized && strcmp(m->method, "initialize") == 0)
			mcp_error(s, m->id, RPC_INVALID_REQUEST,
			    "Invalid Request: already initialized");
		else
			mcp_methods[i].fn(s, m);
		return;
	}
	mcp_error(s, m->id, RPC_METHOD_NOT_FOUND, "Method not found");
}

/* One message the transport parsed (HTTP looks at it first). */
void
mcp_session_dispatch(struct mcp_session *s, struct rpc_msg *m)
{
	if (m->kind == RPC_REQUEST)
		mcp_request(s, m);
	else if (m->kind == RPC_NOTIFICATION &&
	    strcmp(m->method, "notifications/cancelled") == 0)
		mcp_cancelled(s, m);
	/* responses to us and other notices: ignored */
}

/* One line of newline-delimited JSON-RPC (stdio). */
void
mcp_session_line(struct mcp_session *s, const char *line, size_t len)
{
	struct rpc_msg	m;

	if (len == 0)
		return;
	if (rpc_parse(line, len, &m) == -1)
		mcp_error(s, m.id, m.error_code, m.error);
	else
		mcp_session_dispatch(s, &m);
	rpc_msg_clear(&m);
}

/* A record changed: the sessions' subscriptions and tasks hear of it. */
static void
mcp_watch(struct task_record *r)
{
	struct mcp_session	*s;

	TAILQ_FOREACH(s, &mcp_sessions, entry) {
		if (s->modern)
			modern_changed(s, r);
		if (!s->initialized)
			continue;
		resources_changed(s, r);
		mcptasks_changed(s, r);
	}
}

struct mcp_session *
mcp_session_new(const struct mcp_transport *tp, void *arg, const char *owner,
    bool local)
{
	struct mcp_session	*s = xcalloc(1, sizeof *s);

	s->owner = xstrdup(owner);
	s->cfg = config_dup(mcp_config);
	s->calls = lh_kchar_table_new(64, NULL);
	s->log_level = -1;
	s->tp = tp;
	s->tp_arg = arg;
	s->local = local;
	s->refs = 1;		/* the transport's */
	TAILQ_INSERT_TAIL(&mcp_sessions, s, entry);
	mcp_nsessions++;
	return s;
}

void
mcp_session_ref(struct mcp_session *s)
{
	s->refs++;
}

void
mcp_session_unref(struct mcp_session *s)
{
	if (--s->refs > 0)
		return;
	lh_table_free(s->calls);	/* each call held a reference */
	if (s->subs != NULL)
		lh_table_free(s->subs);
	config_free(s->cfg);
	free(s->owner);
	free(s);
}

/*
 * The transport is gone (stdin closed, DELETE, the session expired).
 * Nothing is sent to the session any more; its tasks run on (a
 * disconnect is not a cancellation: their results stay in the store),
 * its tasks/result waiters are dropped, and it is freed once its last
 * running call ends.
 */
void
mcp_session_close(struct mcp_session *s)
{
	if (s->closed)
		return;
	s->closed = true;
	TAILQ_REMOVE(&mcp_sessions, s, entry);
	mcp_nsessions--;
	mcptasks_session_closed(s);
	modern_session_closed(s);
	mcp_session_unref(s);
}

/*
 * 2026-07-28 over HTTP: the stream of the session's one request closed,
 * which cancels it.  Its calls are stopped (their workers killed), then
 * the session is closed.
 */
void
mcp_session_abort(struct mcp_session *s)
{
	struct lh_entry		*e;
	struct mcp_call		*c;

	while ((e = s->calls->head) != NULL) {
		c = (struct mcp_call *)lh_entry_v(e);
		lh_table_delete_entry(s->calls, e);
		log_info("request %s cancelled: its client closed the stream",
		    c->key);
		mcp_call_abandon(c, "cancelled: the client closed the stream");
	}
	mcp_session_close(s);
}

int
mcp_session_count(void)
{
	return mcp_nsessions;
}

/* What every session shares: the registry, the store, the log hook. */
void
mcp_init(const struct heavy_config *cfg)
{
	mcp_config = config_dup(cfg);
	registry_init();
	durable_init(cfg);
	registry_watch(REGISTRY_WATCH_SESSIONS, mcp_watch);
	log_set_hook(mcp_log_hook);
}

/*
 * Stops every task (killing their workers; the store records them
 * interrupted), frees the registry and closes the store.  The tasks end
 * first: a blocking call is answered with the result that says why, and
 * every watcher hears of the end while the sessions' tables (their
 * calls, their subscriptions) still exist.  The transports then write
 * out what they were given, and close their sessions.
 */
void
mcp_fini(void)
{
	if (mcp_config == NULL)
		return;
	registry_free();
	mcptasks_stop();
	modern_stop();
	durable_stop();
	log_set_hook(NULL);
	config_free(mcp_config);
	mcp_config = NULL;
}

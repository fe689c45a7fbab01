/*
 * The dispatch of a session's messages, whatever transport carries them
 * (stdio.c, http.c): the handshake era's methods (initialize, ping,
 * logging/setLevel, and the table of the others), notifications from the
 * client, and a request of 2026-07-28 handed to modern.c.  What happens
 * to the server's tasks reaches the sessions from here, as does its log.
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

static bool	mcp_started;

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
	mcp_reply(s, m->id, res);
}

static void
mcp_ping(struct mcp_session *s, struct rpc_msg *m)
{
	mcp_reply(s, m->id, json_object_new_object());
}

/*
 * Whether a session may read a log line: the local user's reads them all
 * (it runs this heavyd, and reads its stderr anyway); any other only the
 * lines about a task of its own owner -- never the server's affairs (the
 * audit lines among them), nor another owner's.
 */
static bool
mcp_log_reader(struct mcp_session *s, const struct log_fields *f)
{
	if (s->local)
		return true;
	if (f != NULL && f->audit)
		return false;	/* the operator's */
	return f != NULL && f->task_id != NULL &&
	    registry_find(f->task_id, s->owner) != NULL;
}

/* A log line goes to the handshake-era sessions that asked for its level
 * (logging/setLevel) and may read it; in 2026-07-28, to the call whose
 * request asked for it (_meta logLevel), on its stream. */
static void
mcp_log_hook(enum log_level level, const struct log_fields *f,
    const char *msg)
{
	struct mcp_session	*s;

	for (s = mcp_session_first(); s != NULL; s = mcp_session_next(s)) {
		if (s->closed || !mcp_log_reader(s, f))
			continue;
		if (s->modern) {	/* 2026-07-28: per request, in _meta */
			if (f != NULL && f->task_id != NULL)
				mcp_calls_log(s, level, f->task_id, msg);
			continue;
		}
		if ((int)level <= s->log_level)
			mcp_notify_log(s, NULL, level, msg);
	}
}

static void
mcp_set_level(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v = NULL;
	int			 level;

	json_object_object_get_ex(m->params, "level", &v);
	if ((level = mcp_log_level(json_object_get_string(v))) == -1) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "level must be one of debug, info, notice, warning, error, "
		    "critical, alert, emergency");
		return;
	}
	s->log_level = level;
	mcp_reply(s, m->id, json_object_new_object());
}

/* notifications/cancelled: kill the task's workers, send nothing. */
static void
mcp_cancelled(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*id;
	char			*key;

	if (!json_object_object_get_ex(m->params, "requestId", &id) ||
	    (!json_object_is_type(id, json_type_string) &&
	    !json_object_is_type(id, json_type_int)))
		return;
	key = rpc_id_key(id);
	if (!mcp_calls_cancel(s, key, "cancelled by the client") &&
	    !modern_cancelled(s, key))		/* subscriptions/listen */
		mcptasks_request_cancelled(s, key);	/* tasks/result */
	free(key);
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

	for (s = mcp_session_first(); s != NULL; s = mcp_session_next(s)) {
		if (s->modern)
			modern_changed(s, r);
		if (!s->initialized)
			continue;
		resources_changed(s, r);
		mcptasks_changed(s, r);
	}
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
	mcp_session_unlink(s);
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
	mcp_calls_abort(s, "cancelled: its client closed the stream");
	mcp_session_close(s);
}

/* What every session shares: the registry, the store, the log hook. */
void
mcp_init(const struct heavy_config *cfg)
{
	mcp_started = true;
	mcp_session_defaults(cfg);
	registry_init();
	durable_on_resume(service_resume);
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
/* After the loop: the store has the last writes, and closes. */
void
mcp_close(void)
{
	durable_close();
}

void
mcp_fini(void)
{
	if (!mcp_started)
		return;
	mcp_started = false;
	registry_free();
	mcptasks_stop();
	modern_stop();
	durable_stop();
	log_set_hook(NULL);
	mcp_session_defaults(NULL);
}

/*
 * The MCP session over stdio: newline-delimited JSON-RPC on stdin and
 * stdout.  stdout carries MCP messages and nothing else.  Each tools/call
 * of heavy_orchestrate becomes a task, registered like those of
 * grok_heavy_orchestrate; notifications/cancelled or cancel_task kills it.
 * What a session owns is in its struct mcp_session: who calls, its own
 * defaults, its calls in flight.
 */
#include <sys/stat.h>

#include <errno.h>
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

/* One heavy_orchestrate call in flight. */
struct mcp_call {
	struct mcp_session	*s;
	char			*key;
	struct json_object	*id;
	struct json_object	*progress_token;
	struct task_record	*rec;
};

static struct mcp_session	*mcp_stdio;	/* the one stdio session */

static const char *mcp_versions[] = { MCP_LATEST, "2025-06-18",
    "2025-03-26" };

/* Writes one message; stdout is ours alone. */
static void
mcp_send(struct mcp_session *s, struct json_object *msg)
{
	struct evbuffer	*out = bufferevent_get_output(s->out);
	size_t		 len;
	const char	*text;

	text = json_object_to_json_string_length(msg, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	evbuffer_add(out, text, len);
	evbuffer_add(out, "\n", 1);
	json_object_put(msg);
}

static void
mcp_reply_error(struct mcp_session *s, struct json_object *id, int code,
    const char *message)
{
	mcp_send(s, rpc_error(id, code, message));
}

/* For the methods served in other files: a result, an error, a notice. */
void
mcp_reply(struct mcp_session *s, struct json_object *id,
    struct json_object *result)
{
	mcp_send(s, rpc_result(id, result));
}

void
mcp_error(struct mcp_session *s, struct json_object *id, int code,
    const char *message)
{
	mcp_send(s, rpc_error(id, code, message));
}

void
mcp_notify(struct mcp_session *s, const char *method,
    struct json_object *params)
{
	mcp_send(s, rpc_notification(method, params));
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

static void
mcp_initialize(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v, *res, *caps, *info;
	const char		*version;

	if (!json_object_object_get_ex(m->params, "protocolVersion", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		mcp_reply_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: protocolVersion (string) is required");
		return;
	}
	mcp_negotiate_version(json_object_get_string(v), &version);
	caps = json_object_new_object();
	json_object_object_add(caps, "tools", json_tokener_parse(
	    "{\"listChanged\":false}"));
	json_object_object_add(caps, "logging", json_object_new_object());
	json_object_object_add(caps, "resources", json_tokener_parse(
	    "{\"subscribe\":true,\"listChanged\":false}"));
	json_object_object_add(caps, "prompts", json_tokener_parse(
	    "{\"listChanged\":false}"));
	json_object_object_add(caps, "completions", json_object_new_object());
	info = json_object_new_object();
	json_object_object_add(info, "name", json_object_new_string(HEAVY_NAME));
	json_object_object_add(info, "version",
	    json_object_new_string(HEAVY_VERSION));
	json_object_object_add(info, "description", json_object_new_string(
	    "Multi-agent heavy analysis: parallel agents in killable, "
	    "isolated worker processes"));
	res = json_object_new_object();
	json_object_object_add(res, "protocolVersion",
	    json_object_new_string(version));
	json_object_object_add(res, "capabilities", caps);
	json_object_object_add(res, "serverInfo", info);
	s->initialized = true;
	mcp_send(s, rpc_result(m->id, res));
}

static void
mcp_ping(struct mcp_session *s, struct rpc_msg *m)
{
	mcp_send(s, rpc_result(m->id, json_object_new_object()));
}

static void
mcp_tools_list(struct mcp_session *s, struct rpc_msg *m)
{
	mcp_send(s, rpc_result(m->id, tool_list()));
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

static void
mcp_log_hook(enum log_level level, const char *msg)
{
	static const char	*names[] = { "error", "warning", "info", "debug" };
	struct mcp_session	*s = mcp_stdio;
	struct json_object	*params;

	if (s == NULL || s->out == NULL || (int)level > s->log_level)
		return;
	params = json_object_new_object();
	json_object_object_add(params, "level",
	    json_object_new_string(names[level]));
	json_object_object_add(params, "logger",
	    json_object_new_string(HEAVY_NAME));
	json_object_object_add(params, "data", json_object_new_string(msg));
	mcp_send(s, rpc_notification("notifications/message", params));
}

static void
mcp_set_level(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v = NULL;
	int			 level;

	json_object_object_get_ex(m->params, "level", &v);
	if ((level = mcp_level(json_object_get_string(v))) == -1) {
		mcp_reply_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
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
	json_object_put(c->id);
	json_object_put(c->progress_token);
	free(c->key);
	free(c);
}

static void
mcp_call_progress(void *arg, double progress, double total, const char *msg)
{
	struct mcp_call		*c = arg;
	struct json_object	*params;

	registry_touch(c->rec);
	if (c->progress_token == NULL)
		return;
	params = json_object_new_object();
	json_object_object_add(params, "progressToken",
	    json_object_get(c->progress_token));
	json_object_object_add(params, "progress",
	    json_object_new_double(progress));
	json_object_object_add(params, "total", json_object_new_double(total));
	json_object_object_add(params, "message", json_object_new_string(msg));
	mcp_send(c->s, rpc_notification("notifications/progress", params));
}

/* The task ended: answer, record, and forget the call (the task frees
 * itself). */
static void
mcp_call_done(void *arg, struct json_object *result)
{
	struct mcp_call	*c = arg;

	mcp_send(c->s, rpc_result(c->id, json_object_get(result)));
	registry_finish(c->rec, result, now_ms());
	lh_table_delete(c->s->calls, c->key);
	mcp_call_free(c);
}

/* cancel_task killed the call's task: the blocking call learns it. */
static void
mcp_call_cancelled(void *arg)
{
	struct mcp_call	*c = arg;

	mcp_send(c->s, rpc_result(c->id, tool_error_result("cancelled: "
	    "cancel_task killed this orchestration's workers")));
	lh_table_delete(c->s->calls, c->key);
	mcp_call_free(c);
}

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

static void
mcp_orchestrate(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *args)
{
	struct task_params	 p;
	struct mcp_call		*c;
	struct task		*t;
	char			 err[256];

	if (tool_orchestrate_args(s->cfg, args, &p, err, sizeof err) == -1) {
		mcp_send(s, rpc_result(m->id, tool_error_result(err)));
		return;
	}
	if (registry_admit(s->cfg, s->owner, workers_queued(), err,
	    sizeof err) == -1) {
		task_params_clear(&p);
		mcp_send(s, rpc_result(m->id, tool_error_result(err)));
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->s = s;
	c->key = rpc_id_key(m->id);
	c->id = json_object_get(m->id);
	c->progress_token = mcp_progress_token(m->params);
	c->rec = registry_new(s->owner, "heavy_orchestrate");
	t = task_start(s->cfg, &p, mcp_call_progress, mcp_call_done, c);
	if (t == NULL) {
		task_params_clear(&p);
		mcp_send(s, rpc_result(m->id, tool_error_result("invalid argument "
		    "'query': too long for max_frame_bytes")));
		registry_discard(c->rec);
		mcp_call_free(c);
		return;
	}
	registry_add(c->rec, t, task_id(t), now_ms());
	c->rec->cancelled = mcp_call_cancelled;
	c->rec->arg = c;
	lh_table_insert(s->calls, c->key, c);
}

static void
mcp_tools_call(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*name, *args = NULL, *res;
	char			*key, msg[160];
	bool			 dup;

	if (!json_object_object_get_ex(m->params, "name", &name) ||
	    !json_object_is_type(name, json_type_string)) {
		mcp_reply_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: name (string) is required");
		return;
	}
	json_object_object_get_ex(m->params, "arguments", &args);
	if (strcmp(json_object_get_string(name), "heavy_orchestrate") != 0) {
		if ((res = mkh_call(s, json_object_get_string(name),
		    args)) != NULL) {
			mcp_send(s, rpc_result(m->id, res));
			return;
		}
		snprintf(msg, sizeof msg, "Unknown tool: %.100s",
		    json_object_get_string(name));
		mcp_reply_error(s, m->id, RPC_INVALID_PARAMS, msg);
		return;
	}
	key = rpc_id_key(m->id);
	dup = lh_table_lookup_entry(s->calls, key) != NULL;
	free(key);
	if (dup) {
		mcp_reply_error(s, m->id, RPC_INVALID_REQUEST,
		    "Invalid Request: id is already in use by a running call");
		return;
	}
	mcp_orchestrate(s, m, args);
}

/* A call the server will not answer: its task is cancelled, no hook. */
static void
mcp_call_abandon(struct mcp_call *c, const char *why)
{
	c->rec->cancelled = NULL;
	registry_cancel(c->rec, why, now_ms());
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
	free(key);
	if (e == NULL)
		return;		/* finished already, or never ours */
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
};

static void
mcp_request(struct mcp_session *s, struct rpc_msg *m)
{
	for (size_t i = 0; i < sizeof mcp_methods / sizeof *mcp_methods; i++) {
		if (strcmp(m->method, mcp_methods[i].method) != 0)
			continue;
		if (!s->initialized && !mcp_methods[i].before_init)
			mcp_reply_error(s, m->id, RPC_INVALID_REQUEST,
			    "Invalid Request: send initialize first");
		else if (s->initialized && strcmp(m->method, "initialize") == 0)
			mcp_reply_error(s, m->id, RPC_INVALID_REQUEST,
			    "Invalid Request: already initialized");
		else
			mcp_methods[i].fn(s, m);
		return;
	}
	mcp_reply_error(s, m->id, RPC_METHOD_NOT_FOUND, "Method not found");
}

static void
mcp_line(struct mcp_session *s, const char *line, size_t len)
{
	struct rpc_msg	m;

	if (len == 0)
		return;
	if (rpc_parse(line, len, &m) == -1) {
		mcp_reply_error(s, m.id, m.error_code, m.error);
	} else if (m.kind == RPC_REQUEST) {
		mcp_request(s, &m);
	} else if (m.kind == RPC_NOTIFICATION) {
		if (strcmp(m.method, "notifications/cancelled") == 0)
			mcp_cancelled(s, &m);
	}
	rpc_msg_clear(&m);	/* responses to us and other notices: ignored */
}

static void
mcp_too_long(struct mcp_session *s)
{
	char	msg[128];

	snprintf(msg, sizeof msg, "Invalid Request: message exceeds "
	    "max_line_bytes (%zu bytes)", s->cfg->max_line_bytes);
	mcp_reply_error(s, NULL, RPC_INVALID_REQUEST, msg);
}

/* A final line that ended at EOF without its newline still counts. */
static void
mcp_line_tail(struct mcp_session *s, struct evbuffer *in)
{
	size_t	 len = evbuffer_get_length(in);
	char	*line;

	if (len > s->cfg->max_line_bytes) {
		mcp_too_long(s);
		evbuffer_drain(in, len);
		return;
	}
	line = xmalloc(len + 1);
	evbuffer_remove(in, line, len);
	line[len] = '\0';
	if (!s->discarding)
		mcp_line(s, line, len);
	free(line);
}

/* Stops reading while the client is slow to read what we wrote. */
static bool
mcp_output_full(struct mcp_session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->out)) >
	    4 * s->cfg->max_line_bytes;
}

static void
mcp_read_cb(struct bufferevent *bev, void *arg)
{
	struct mcp_session	*s = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 eol;
	size_t			 eol_len, len;
	char			*line;

	while (!mcp_output_full(s)) {
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (evbuffer_get_length(in) > s->cfg->max_line_bytes) {
				if (!s->discarding)
					mcp_too_long(s);
				s->discarding = true;
				evbuffer_drain(in, evbuffer_get_length(in));
			}
			return;
		}
		len = (size_t)eol.pos;
		if (s->discarding || len > s->cfg->max_line_bytes) {
			if (!s->discarding)
				mcp_too_long(s);
			s->discarding = false;
			evbuffer_drain(in, len + eol_len);
			continue;
		}
		line = xmalloc(len + 1);
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		mcp_line(s, line, len);
		free(line);
	}
	bufferevent_disable(s->in, EV_READ);
}

static void
mcp_write_cb(struct bufferevent *bev, void *arg)
{
	struct mcp_session	*s = arg;

	(void)bev;
	if (!(bufferevent_get_enabled(s->in) & EV_READ)) {
		bufferevent_enable(s->in, EV_READ);
		mcp_read_cb(s->in, s);	/* lines already buffered */
	}
}

static void
mcp_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct mcp_session	*s = arg;

	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (bev == s->in) {
		mcp_read_cb(bev, s);	/* a last line without a newline */
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			mcp_line_tail(s, bufferevent_get_input(bev));
		log_debug("stdin closed; shutting down");
	} else
		log_warnx("stdout closed; shutting down");
	server_shutdown();
}

/* A record changed: the session's subscriptions hear of it. */
static void
mcp_watch(struct task_record *r)
{
	if (mcp_stdio != NULL && mcp_stdio->initialized)
		resources_changed(mcp_stdio, r);
}

/* Over stdio the caller is the local user. */
static char *
mcp_local_owner(void)
{
	return xasprintf("uid:%u", (unsigned)getuid());
}

int
mcp_start(const struct heavy_config *cfg)
{
	struct mcp_session	*s = xcalloc(1, sizeof *s);

	mcp_stdio = s;
	s->owner = mcp_local_owner();
	s->cfg = config_dup(cfg);
	s->calls = lh_kchar_table_new(64, NULL);
	s->log_level = -1;
	registry_init(cfg->task_ttl_s, cfg->max_retained_tasks, ev_base);
	registry_watch(mcp_watch);
	if (fd_set_nonblock(STDIN_FILENO, 1) == -1 ||
	    fd_set_nonblock(STDOUT_FILENO, 1) == -1)
		return -1;
	s->in = bufferevent_socket_new(ev_base, STDIN_FILENO, 0);
	s->out = bufferevent_socket_new(ev_base, STDOUT_FILENO, 0);
	if (s->in == NULL || s->out == NULL)
		return -1;
	bufferevent_setcb(s->in, mcp_read_cb, NULL, mcp_event_cb, s);
	bufferevent_setcb(s->out, NULL, mcp_write_cb, mcp_event_cb, s);
	bufferevent_setwatermark(s->out, EV_WRITE, cfg->max_line_bytes, 0);
	bufferevent_enable(s->in, EV_READ);
	bufferevent_enable(s->out, EV_WRITE);
	log_set_hook(mcp_log_hook);
	return 0;
}

/* Writes what is left for the client, blocking: we are about to exit. */
static void
mcp_flush(struct mcp_session *s)
{
	struct evbuffer	*out = bufferevent_get_output(s->out);

	bufferevent_disable(s->out, EV_WRITE);
	fd_set_nonblock(STDOUT_FILENO, 0);
	while (evbuffer_get_length(out) > 0)
		if (evbuffer_write(out, STDOUT_FILENO) <= 0 && errno != EINTR)
			break;
}

/*
 * Cancels every call in flight and every task in the background (killing
 * their workers), frees the registry, and flushes stdout.
 */
void
mcp_stop(void)
{
	struct mcp_session	*s = mcp_stdio;
	struct lh_entry		*e, *tmp;
	struct mcp_call		*c;

	if (s == NULL)
		return;
	lh_foreach_safe(s->calls, e, tmp) {
		c = (struct mcp_call *)lh_entry_v(e);
		lh_table_delete_entry(s->calls, e);
		mcp_call_abandon(c, "the server is shutting down");
	}
	lh_table_free(s->calls);
	if (s->subs != NULL)
		lh_table_free(s->subs);
	registry_free();
	log_set_hook(NULL);
	if (s->out != NULL) {
		mcp_flush(s);
		bufferevent_free(s->out);
	}
	if (s->in != NULL)
		bufferevent_free(s->in);
	fd_set_nonblock(STDIN_FILENO, 0);
	config_free(s->cfg);
	free(s->owner);
	free(s);
	mcp_stdio = NULL;
}

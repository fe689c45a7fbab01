/*
 * The MCP session over stdio: newline-delimited JSON-RPC on stdin and
 * stdout.  stdout carries MCP messages and nothing else.  Each tools/call
 * of heavy_orchestrate becomes a task; notifications/cancelled kills it.
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

/* One tools/call in flight. */
struct mcp_call {
	char			*key;
	struct json_object	*id;
	struct json_object	*progress_token;
	struct task		*task;
};

static const struct heavy_config	*mcp_cfg;
static struct bufferevent		*mcp_in, *mcp_out;
static struct lh_table			*mcp_calls;	/* id key -> call */
static bool				 mcp_initialized, mcp_discarding;
static int				 mcp_log_level = -1;	/* off */

static const char *mcp_versions[] = { MCP_LATEST, "2025-06-18",
    "2025-03-26" };

/* Writes one message; stdout is ours alone. */
static void
mcp_send(struct json_object *msg)
{
	struct evbuffer	*out = bufferevent_get_output(mcp_out);
	size_t		 len;
	const char	*s;

	s = json_object_to_json_string_length(msg, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	evbuffer_add(out, s, len);
	evbuffer_add(out, "\n", 1);
	json_object_put(msg);
}

static void
mcp_reply_error(struct json_object *id, int code, const char *message)
{
	mcp_send(rpc_error(id, code, message));
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
mcp_initialize(struct rpc_msg *m)
{
	struct json_object	*v, *res, *caps, *info;
	const char		*version;

	if (!json_object_object_get_ex(m->params, "protocolVersion", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		mcp_reply_error(m->id, RPC_INVALID_PARAMS,
		    "Invalid params: protocolVersion (string) is required");
		return;
	}
	mcp_negotiate_version(json_object_get_string(v), &version);
	caps = json_object_new_object();
	json_object_object_add(caps, "tools", json_tokener_parse(
	    "{\"listChanged\":false}"));
	json_object_object_add(caps, "logging", json_object_new_object());
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
	mcp_initialized = true;
	mcp_send(rpc_result(m->id, res));
}

static void
mcp_ping(struct rpc_msg *m)
{
	mcp_send(rpc_result(m->id, json_object_new_object()));
}

static void
mcp_tools_list(struct rpc_msg *m)
{
	mcp_send(rpc_result(m->id, tool_list()));
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
	struct json_object	*params;

	if (mcp_out == NULL || (int)level > mcp_log_level)
		return;
	params = json_object_new_object();
	json_object_object_add(params, "level",
	    json_object_new_string(names[level]));
	json_object_object_add(params, "logger",
	    json_object_new_string(HEAVY_NAME));
	json_object_object_add(params, "data", json_object_new_string(msg));
	mcp_send(rpc_notification("notifications/message", params));
}

static void
mcp_set_level(struct rpc_msg *m)
{
	struct json_object	*v = NULL;
	int			 level;

	json_object_object_get_ex(m->params, "level", &v);
	if ((level = mcp_level(json_object_get_string(v))) == -1) {
		mcp_reply_error(m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "level must be one of debug, info, notice, warning, error, "
		    "critical, alert, emergency");
		return;
	}
	mcp_log_level = level;
	mcp_send(rpc_result(m->id, json_object_new_object()));
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

	if (c->progress_token == NULL)
		return;
	params = json_object_new_object();
	json_object_object_add(params, "progressToken",
	    json_object_get(c->progress_token));
	json_object_object_add(params, "progress",
	    json_object_new_double(progress));
	json_object_object_add(params, "total", json_object_new_double(total));
	json_object_object_add(params, "message", json_object_new_string(msg));
	mcp_send(rpc_notification("notifications/progress", params));
}

/* The task ended: answer, and forget the call (the task frees itself). */
static void
mcp_call_done(void *arg, struct json_object *result)
{
	struct mcp_call	*c = arg;

	mcp_send(rpc_result(c->id, result));
	lh_table_delete(mcp_calls, c->key);
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
mcp_orchestrate(struct rpc_msg *m, struct json_object *args)
{
	struct task_params	 p;
	struct mcp_call		*c;
	char			 err[256];

	if (tool_orchestrate_args(mcp_cfg, args, &p, err, sizeof err) == -1) {
		mcp_send(rpc_result(m->id, tool_error_result(err)));
		return;
	}
	if (lh_table_length(mcp_calls) >= mcp_cfg->max_tasks) {
		task_params_clear(&p);
		snprintf(err, sizeof err, "busy: %d orchestrations are running "
		    "(max_tasks); retry later", mcp_cfg->max_tasks);
		mcp_send(rpc_result(m->id, tool_error_result(err)));
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->key = rpc_id_key(m->id);
	c->id = json_object_get(m->id);
	c->progress_token = mcp_progress_token(m->params);
	c->task = task_start(mcp_cfg, &p, mcp_call_progress, mcp_call_done, c);
	if (c->task == NULL) {
		task_params_clear(&p);
		mcp_send(rpc_result(m->id, tool_error_result("invalid argument "
		    "'query': too long for max_frame_bytes")));
		mcp_call_free(c);
		return;
	}
	lh_table_insert(mcp_calls, c->key, c);
}

static void
mcp_tools_call(struct rpc_msg *m)
{
	struct json_object	*name, *args = NULL;
	char			*key, msg[160];
	bool			 dup;

	if (!json_object_object_get_ex(m->params, "name", &name) ||
	    !json_object_is_type(name, json_type_string)) {
		mcp_reply_error(m->id, RPC_INVALID_PARAMS,
		    "Invalid params: name (string) is required");
		return;
	}
	if (strcmp(json_object_get_string(name), "heavy_orchestrate") != 0) {
		snprintf(msg, sizeof msg, "Unknown tool: %.100s",
		    json_object_get_string(name));
		mcp_reply_error(m->id, RPC_INVALID_PARAMS, msg);
		return;
	}
	key = rpc_id_key(m->id);
	dup = lh_table_lookup_entry(mcp_calls, key) != NULL;
	free(key);
	if (dup) {
		mcp_reply_error(m->id, RPC_INVALID_REQUEST,
		    "Invalid Request: id is already in use by a running call");
		return;
	}
	json_object_object_get_ex(m->params, "arguments", &args);
	mcp_orchestrate(m, args);
}

/* notifications/cancelled: kill the task's workers, send nothing. */
static void
mcp_cancelled(struct rpc_msg *m)
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
	e = lh_table_lookup_entry(mcp_calls, key);
	free(key);
	if (e == NULL)
		return;		/* finished already, or never ours */
	c = (struct mcp_call *)lh_entry_v(e);
	lh_table_delete_entry(mcp_calls, e);
	log_info("request %s cancelled by the client", c->key);
	task_cancel(c->task);
	mcp_call_free(c);
}

static const struct {
	const char	*method;
	void		(*fn)(struct rpc_msg *);
	bool		 before_init;
} mcp_methods[] = {
	{ "initialize", mcp_initialize, true },
	{ "ping", mcp_ping, true },
	{ "tools/list", mcp_tools_list, false },
	{ "tools/call", mcp_tools_call, false },
	{ "logging/setLevel", mcp_set_level, false },
};

static void
mcp_request(struct rpc_msg *m)
{
	for (size_t i = 0; i < sizeof mcp_methods / sizeof *mcp_methods; i++) {
		if (strcmp(m->method, mcp_methods[i].method) != 0)
			continue;
		if (!mcp_initialized && !mcp_methods[i].before_init)
			mcp_reply_error(m->id, RPC_INVALID_REQUEST,
			    "Invalid Request: send initialize first");
		else if (mcp_initialized && strcmp(m->method, "initialize") == 0)
			mcp_reply_error(m->id, RPC_INVALID_REQUEST,
			    "Invalid Request: already initialized");
		else
			mcp_methods[i].fn(m);
		return;
	}
	mcp_reply_error(m->id, RPC_METHOD_NOT_FOUND, "Method not found");
}

static void
mcp_line(const char *line, size_t len)
{
	struct rpc_msg	m;

	if (len == 0)
		return;
	if (rpc_parse(line, len, &m) == -1) {
		mcp_reply_error(m.id, m.error_code, m.error);
	} else if (m.kind == RPC_REQUEST) {
		mcp_request(&m);
	} else if (m.kind == RPC_NOTIFICATION) {
		if (strcmp(m.method, "notifications/cancelled") == 0)
			mcp_cancelled(&m);
	}
	rpc_msg_clear(&m);	/* responses to us and other notices: ignored */
}

static void
mcp_too_long(void)
{
	char	msg[128];

	snprintf(msg, sizeof msg, "Invalid Request: message exceeds "
	    "max_line_bytes (%zu bytes)", mcp_cfg->max_line_bytes);
	mcp_reply_error(NULL, RPC_INVALID_REQUEST, msg);
}

/* A final line that ended at EOF without its newline still counts. */
static void
mcp_line_tail(struct evbuffer *in)
{
	size_t	 len = evbuffer_get_length(in);
	char	*line;

	if (len > mcp_cfg->max_line_bytes) {
		mcp_too_long();
		evbuffer_drain(in, len);
		return;
	}
	line = xmalloc(len + 1);
	evbuffer_remove(in, line, len);
	line[len] = '\0';
	if (!mcp_discarding)
		mcp_line(line, len);
	free(line);
}

/* Stops reading while the client is slow to read what we wrote. */
static bool
mcp_output_full(void)
{
	return evbuffer_get_length(bufferevent_get_output(mcp_out)) >
	    4 * mcp_cfg->max_line_bytes;
}

static void
mcp_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 eol;
	size_t			 eol_len, len;
	char			*line;

	(void)arg;
	while (!mcp_output_full()) {
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (evbuffer_get_length(in) > mcp_cfg->max_line_bytes) {
				if (!mcp_discarding)
					mcp_too_long();
				mcp_discarding = true;
				evbuffer_drain(in, evbuffer_get_length(in));
			}
			return;
		}
		len = (size_t)eol.pos;
		if (mcp_discarding || len > mcp_cfg->max_line_bytes) {
			if (!mcp_discarding)
				mcp_too_long();
			mcp_discarding = false;
			evbuffer_drain(in, len + eol_len);
			continue;
		}
		line = xmalloc(len + 1);
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		mcp_line(line, len);
		free(line);
	}
	bufferevent_disable(mcp_in, EV_READ);
}

static void
mcp_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev; (void)arg;
	if (!(bufferevent_get_enabled(mcp_in) & EV_READ)) {
		bufferevent_enable(mcp_in, EV_READ);
		mcp_read_cb(mcp_in, NULL);	/* lines already buffered */
	}
}

static void
mcp_event_cb(struct bufferevent *bev, short events, void *arg)
{
	(void)arg;
	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (bev == mcp_in) {
		mcp_read_cb(bev, NULL);	/* a last line without a newline */
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			mcp_line_tail(bufferevent_get_input(bev));
		log_debug("stdin closed; shutting down");
	} else
		log_warnx("stdout closed; shutting down");
	server_shutdown();
}

int
mcp_start(const struct heavy_config *cfg)
{
	mcp_cfg = cfg;
	mcp_calls = lh_kchar_table_new(64, NULL);
	if (fd_set_nonblock(STDIN_FILENO, 1) == -1 ||
	    fd_set_nonblock(STDOUT_FILENO, 1) == -1)
		return -1;
	mcp_in = bufferevent_socket_new(ev_base, STDIN_FILENO, 0);
	mcp_out = bufferevent_socket_new(ev_base, STDOUT_FILENO, 0);
	if (mcp_in == NULL || mcp_out == NULL)
		return -1;
	bufferevent_setcb(mcp_in, mcp_read_cb, NULL, mcp_event_cb, NULL);
	bufferevent_setcb(mcp_out, NULL, mcp_write_cb, mcp_event_cb, NULL);
	bufferevent_setwatermark(mcp_out, EV_WRITE, cfg->max_line_bytes, 0);
	bufferevent_enable(mcp_in, EV_READ);
	bufferevent_enable(mcp_out, EV_WRITE);
	log_set_hook(mcp_log_hook);
	return 0;
}

/* Writes what is left for the client, blocking: we are about to exit. */
static void
mcp_flush(void)
{
	struct evbuffer	*out = bufferevent_get_output(mcp_out);

	bufferevent_disable(mcp_out, EV_WRITE);
	fd_set_nonblock(STDOUT_FILENO, 0);
	while (evbuffer_get_length(out) > 0)
		if (evbuffer_write(out, STDOUT_FILENO) <= 0 && errno != EINTR)
			break;
}

/* Cancels every call in flight (killing its workers) and flushes stdout. */
void
mcp_stop(void)
{
	struct lh_entry	*e, *tmp;
	struct mcp_call	*c;

	if (mcp_calls == NULL)
		return;
	lh_foreach_safe(mcp_calls, e, tmp) {
		c = (struct mcp_call *)lh_entry_v(e);
		lh_table_delete_entry(mcp_calls, e);
		task_cancel(c->task);
		mcp_call_free(c);
	}
	lh_table_free(mcp_calls);
	mcp_calls = NULL;
	log_set_hook(NULL);
	mcp_flush();
	bufferevent_free(mcp_in);
	bufferevent_free(mcp_out);
	mcp_in = mcp_out = NULL;
	fd_set_nonblock(STDIN_FILENO, 0);
}

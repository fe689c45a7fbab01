/*
 * An MCP session, whatever transport carries it and whichever era it
 * speaks: who calls, its own defaults, its calls in flight, the usage of
 * its tasks (struct mcp_session), and the one way anything is sent to it.
 * A reply or a notification goes to the session's transport with the
 * request it belongs to; the methods (mcp.c, modern.c, the handlers)
 * answer through these functions and nothing else.  Sessions are counted:
 * a call that outlives its transport holds its session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/linkhash.h>

#include "supervisor.h"
#include "metrics.h"

#define MCP_LATEST	"2025-11-25"
#define MCP_TASKS_SINCE	"2025-11-25"	/* MCP Tasks came with it */
#define META_SERVER	"io.modelcontextprotocol/serverInfo"
#define MCP_CACHE_TTL_MS	300000	/* lists change only with the config */

/*
 * The defaults every session starts from, shared (a session copies them
 * only once configure_orchestrator changes its own): ten thousand idle
 * sessions do not need ten thousand copies of the prompts.  A reload
 * makes new ones; sessions keep those they started with.
 */
struct mcp_defaults {
	int			 refs;
	struct heavy_config	*cfg;
};

static TAILQ_HEAD(, mcp_session) mcp_sessions =
    TAILQ_HEAD_INITIALIZER(mcp_sessions);
static int			 mcp_nsessions;
static struct mcp_defaults	*mcp_defaults;	/* new sessions take them */

static const char *mcp_versions[] = { MCP_LATEST, "2025-06-18",
    "2025-03-26" };

static void	mcp_decorate(struct mcp_session *, struct json_object *);

static void
mcp_defaults_unref(struct mcp_defaults *d)
{
	if (d == NULL || --d->refs > 0)
		return;
	config_free(d->cfg);
	free(d);
}

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
	struct mcp_out		 out = { related, final, 0, NULL, 0 };
	struct json_object	*e = NULL, *data, *after;
	size_t			 len;
	const char		*text;

	if (!s->closed) {
		if (final && json_object_object_get_ex(msg, "error", &e))
			out.error = json_object_get_int(
			    json_object_object_get(e, "code"));
		if (out.error == RPC_RATE_LIMITED &&
		    json_object_object_get_ex(e, "data", &data) &&
		    json_object_object_get_ex(data, "retryAfter", &after))
			out.retry_after_s = json_object_get_int(after);
		out.msg = evbuffer_new();
		text = json_object_to_json_string_length(msg,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		    &len);
		mcp_add_utf8(out.msg, text, len);
		s->tp->send(s->tp_arg, &out);
		evbuffer_free(out.msg);
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
		mcp_decorate(s, res);
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

/* The request of this id key was taken; its reply comes later. */
void
mcp_taken(struct mcp_session *s, const char *related)
{
	if (!s->closed && s->tp->taken != NULL)
		s->tp->taken(s->tp_arg, related);
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

struct mcp_session *
mcp_session_new(const struct mcp_transport *tp, void *arg, const char *owner,
    bool local)
{
	struct mcp_session	*s = xcalloc(1, sizeof *s);

	s->owner = xstrdup(owner);
	s->defaults = mcp_defaults;
	s->defaults->refs++;
	s->cfg = s->defaults->cfg;
	s->calls = lh_kchar_table_new(8, NULL);
	s->log_level = -1;
	s->tp = tp;
	s->tp_arg = arg;
	s->local = local;
	s->refs = 1;		/* the transport's */
	TAILQ_INSERT_TAIL(&mcp_sessions, s, entry);
	metrics_sessions(++mcp_nsessions);
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
	if (s->cfg_own)
		config_free(s->cfg);
	mcp_defaults_unref(s->defaults);
	free(s->owner);
	free(s);
}

/* Before a session changes its defaults: its own copy of them. */
void
mcp_session_own_cfg(struct mcp_session *s)
{
	if (s->cfg_own)
		return;
	s->cfg = config_dup(s->cfg);
	s->cfg_own = true;
}

int
mcp_session_count(void)
{
	return mcp_nsessions;
}

/*
 * 2026-07-28: every result says its resultType and who answered; a list
 * or a read (s->cacheable, set while its method runs) how long it keeps.
 */
static void
mcp_decorate(struct mcp_session *s, struct json_object *result)
{
	struct json_object	*meta;

	if (!json_object_is_type(result, json_type_object))
		return;
	if (!json_object_object_get_ex(result, "resultType", NULL))
		json_object_object_add(result, "resultType",
		    json_object_new_string("complete"));
	if (!json_object_object_get_ex(result, "_meta", &meta)) {
		meta = json_object_new_object();
		json_object_object_add(result, "_meta", meta);
	}
	json_object_object_add(meta, META_SERVER, mcp_server_info());
	if (s->cacheable == NULL)
		return;
	json_object_object_add(result, "ttlMs", json_object_new_int(
	    strcmp(s->cacheable, "public") == 0 ? MCP_CACHE_TTL_MS : 0));
	json_object_object_add(result, "cacheScope",
	    json_object_new_string(s->cacheable));
}

/* MCP's syslog levels, mapped onto ours. */
int
mcp_log_level(const char *name)
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

/* A log line as notifications/message: related to a request (its key),
 * or to the session (NULL). */
void
mcp_notify_log(struct mcp_session *s, const char *related,
    enum log_level level, const char *msg)
{
	static const char	*names[] = { "error", "warning", "info", "debug" };
	struct json_object	*params = json_object_new_object();

	json_object_object_add(params, "level",
	    json_object_new_string(names[level]));
	json_object_object_add(params, "logger",
	    json_object_new_string(HEAVY_NAME));
	json_object_object_add(params, "data", json_object_new_string(msg));
	mcp_notify_related(s, related, "notifications/message", params);
}

/* Unlinks a session whose transport is gone; nothing is sent to it. */
void
mcp_session_unlink(struct mcp_session *s)
{
	s->closed = true;
	TAILQ_REMOVE(&mcp_sessions, s, entry);
	metrics_sessions(--mcp_nsessions);
}

struct mcp_session *
mcp_session_first(void)
{
	return TAILQ_FIRST(&mcp_sessions);
}

struct mcp_session *
mcp_session_next(struct mcp_session *s)
{
	return TAILQ_NEXT(s, entry);
}

/* The defaults a new session takes (at start, and after a reload). */
void
mcp_session_defaults(const struct heavy_config *cfg)
{
	struct mcp_defaults	*d = NULL;

	if (cfg != NULL) {
		d = xcalloc(1, sizeof *d);
		d->refs = 1;
		d->cfg = config_dup(cfg);
	}
	mcp_defaults_unref(mcp_defaults);
	mcp_defaults = d;
}

/*
 * A request whose answer waits (for the task store): it holds the session
 * and the message, and what the dispatch had set for it, so that the reply
 * comes out as it would have at once.
 */
struct mcp_req *
mcp_req_hold(struct mcp_session *s, struct rpc_msg *m)
{
	struct mcp_req	*q = xcalloc(1, sizeof *q);

	q->s = s;
	mcp_session_ref(s);
	q->m = *m;
	json_object_get(m->root);
	q->cacheable = s->cacheable;
	q->task_ext = s->task_ext;
	return q;
}

/* Its answer is being made: the session is as it was at dispatch. */
void
mcp_req_begin(struct mcp_req *q)
{
	q->was_cacheable = q->s->cacheable;
	q->was_task_ext = q->s->task_ext;
	q->s->cacheable = q->cacheable;
	q->s->task_ext = q->task_ext;
}

/* Answered: the session as it was, and the request let go. */
void
mcp_req_end(struct mcp_req *q)
{
	q->s->cacheable = q->was_cacheable;
	q->s->task_ext = q->was_task_ext;
	json_object_put(q->m.root);
	mcp_session_unref(q->s);
	free(q);
}

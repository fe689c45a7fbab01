/*
 * The fixtures of the official MCP conformance suite
 * (tests/conformance/FIXTURES.md): tools, resources, a resource template,
 * prompts and completion values under the names its scenarios call.  Only
 * the test build has them (build/test/heavyd, compiled with
 * HEAVY_TEST_FIXTURES); the shipped heavyd has none of this file.
 *
 * They answer through the session like every method handler, so what the
 * suite checks around them is heavyd's own: each revision's wire, the
 * streams a reply and its notifications take, the log level, the 2026-07-28
 * envelope, and the tasks extension.  A fixture task is a registry record
 * with no orchestration behind it: written to the store before its id is
 * given out, read by tasks/get, stopped by tasks/cancel and interrupted at
 * shutdown like any other.  Multi-round-trip tools (SEP-2322) keep their
 * round in a requestState signed with a key of this process.
 */
#include <sys/random.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hmac.h>

#include "supervisor.h"

#define FX_META_CAPS	"io.modelcontextprotocol/clientCapabilities"
#define FX_META_LEVEL	"io.modelcontextprotocol/logLevel"
#define FX_EXT_TASKS	"io.modelcontextprotocol/tasks"
#define FX_MISSING_CAPS	-32021	/* MissingRequiredClientCapabilityError */
#define FX_STEP_MS	50	/* between a tool's notifications */
#define FX_JOB_MS	1000	/* failing_job and protocol_error_job */
#define FX_MAX_SECONDS	600	/* slow_compute's longest sleep */

/* 1x1 PNG and a WAV of 8 silent samples (8 kHz, 8 bits), in base64. */
static const char fx_png[] = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
static const char fx_wav[] = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAAB"
    "AAgAZGF0YQgAAACAgICAgICAgA==";

/* ---- content and results ---------------------------------------------- */

static struct json_object *
fx_text(const char *text)
{
	struct json_object	*c = json_object_new_object();

	json_object_object_add(c, "type", json_object_new_string("text"));
	json_object_object_add(c, "text", json_object_new_string(text));
	return c;
}

/* An image or audio item. */
static struct json_object *
fx_media(const char *type, const char *data, const char *mime)
{
	struct json_object	*c = json_object_new_object();

	json_object_object_add(c, "type", json_object_new_string(type));
	json_object_object_add(c, "data", json_object_new_string(data));
	json_object_object_add(c, "mimeType", json_object_new_string(mime));
	return c;
}

/* An embedded resource: its text, or (blob) base64 data. */
static struct json_object *
fx_resource(const char *uri, const char *mime, const char *text, bool blob)
{
	struct json_object	*c = json_object_new_object(), *r;

	r = json_object_new_object();
	json_object_object_add(r, "uri", json_object_new_string(uri));
	json_object_object_add(r, "mimeType", json_object_new_string(mime));
	json_object_object_add(r, blob ? "blob" : "text",
	    json_object_new_string(text));
	json_object_object_add(c, "type", json_object_new_string("resource"));
	json_object_object_add(c, "resource", r);
	return c;
}

/* A CallToolResult of one item, or two when second is not NULL. */
static struct json_object *
fx_result(struct json_object *first, struct json_object *second)
{
	struct json_object	*res = json_object_new_object(), *l;

	l = json_object_new_array();
	json_object_array_add(l, first);
	if (second != NULL)
		json_object_array_add(l, second);
	json_object_object_add(res, "content", l);
	return res;
}

/* ---- what a request says ---------------------------------------------- */

static struct json_object *
fx_meta(struct rpc_msg *m, const char *key)
{
	struct json_object	*meta, *v;

	if (!json_object_object_get_ex(m->params, "_meta", &meta) ||
	    !json_object_object_get_ex(meta, key, &v))
		return NULL;
	return v;
}

/* Whether a 2026-07-28 request's client declared a capability; a
 * session of the handshake era is taken at its word. */
static bool
fx_client_has(struct mcp_session *s, struct rpc_msg *m, const char *cap)
{
	struct json_object	*caps = fx_meta(m, FX_META_CAPS);

	if (!s->modern)
		return true;
	return json_object_is_type(caps, json_type_object) &&
	    json_object_object_get_ex(caps, cap, NULL);
}

/* MissingRequiredClientCapabilityError naming what was missing. */
static void
fx_missing(struct mcp_session *s, struct rpc_msg *m, const char *caps)
{
	struct json_object	*msg, *e, *data = json_object_new_object();

	msg = rpc_error(m->id, FX_MISSING_CAPS,
	    "Missing required client capability");
	json_object_object_add(data, "requiredCapabilities",
	    json_tokener_parse(caps));
	json_object_object_get_ex(msg, "error", &e);
	json_object_object_add(e, "data", data);
	mcp_reply_error(s, msg);
}

/* Whether log messages at info may go to this request's client: the
 * session's level, or (2026-07-28) the request's own, if it has one. */
static bool
fx_log_info(struct mcp_session *s, struct rpc_msg *m)
{
	if (!s->modern)
		return s->log_level >= LOG_LVL_INFO;
	return mcp_log_level(json_object_get_string(fx_meta(m,
	    FX_META_LEVEL))) >= LOG_LVL_INFO;
}

static const char *
fx_string_arg(struct json_object *args, const char *name, const char *def)
{
	struct json_object	*v;

	if (json_object_object_get_ex(args, name, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return def;
}

/* ---- calls that answer later ------------------------------------------ */

struct fx_call;
typedef void (*fx_note_fn)(struct fx_call *, int step);

/*
 * A call that sends nsteps notifications gap_ms apart, then its result.
 * It holds its session: a client that went away meanwhile (its stream
 * closed) makes the rest go nowhere.
 */
struct fx_call {
	struct mcp_session	*s;
	struct json_object	*id;
	char			*key;
	struct json_object	*token;		/* progressToken, or NULL */
	struct json_object	*result;
	struct event		*timer;
	fx_note_fn		 note;
	int			 step, nsteps, gap_ms;
	bool			 log;		/* log messages may go */
};

static void
fx_call_free(struct fx_call *c)
{
	event_free(c->timer);
	json_object_put(c->id);
	json_object_put(c->token);
	json_object_put(c->result);
	free(c->key);
	mcp_session_unref(c->s);
	free(c);
}

static void
fx_after(struct event *ev, int64_t ms)
{
	struct timeval	tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* The next notification, or the result once they are all out. */
static void
fx_call_cb(evutil_socket_t fd, short events, void *arg)
{
	struct fx_call	*c = arg;

	(void)fd; (void)events;
	if (c->s->closed) {
		fx_call_free(c);
		return;
	}
	if (c->step < c->nsteps) {
		c->note(c, c->step++);
		if (c->step < c->nsteps) {
			fx_after(c->timer, c->gap_ms);
			return;
		}
	}
	mcp_reply(c->s, c->id, c->result);
	c->result = NULL;
	fx_call_free(c);
}

/* Starts a call; its first notification goes out at once.  Takes result. */
static void
fx_call_start(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *result, fx_note_fn note, int nsteps, int gap_ms)
{
	struct fx_call		*c = xcalloc(1, sizeof *c);
	struct json_object	*token = fx_meta(m, "progressToken");

	c->s = s;
	mcp_session_ref(s);
	c->id = json_object_get(m->id);
	c->key = rpc_id_key(m->id);
	c->token = token != NULL ? json_object_get(token) : NULL;
	c->result = result;
	c->note = note;
	c->nsteps = nsteps;
	c->gap_ms = gap_ms;
	c->log = fx_log_info(s, m);
	c->timer = evtimer_new(ev_base, fx_call_cb, c);
	if (nsteps > 0)
		fx_call_cb(-1, 0, c);
	else
		fx_after(c->timer, gap_ms);
}

static void
fx_note_progress(struct fx_call *c, int step)
{
	struct json_object	*p;

	if (c->token == NULL)
		return;
	p = json_object_new_object();
	json_object_object_add(p, "progressToken", json_object_get(c->token));
	json_object_object_add(p, "progress", json_object_new_int(step * 50));
	json_object_object_add(p, "total", json_object_new_int(100));
	mcp_notify_related(c->s, c->key, "notifications/progress", p);
}

static void
fx_note_log(struct fx_call *c, int step)
{
	static const char	*lines[] = { "Tool execution started",
	    "Tool processing data", "Tool execution completed" };
	struct json_object	*p;

	if (!c->log)
		return;
	p = json_object_new_object();
	json_object_object_add(p, "level", json_object_new_string("info"));
	json_object_object_add(p, "logger",
	    json_object_new_string("conformance-fixtures"));
	json_object_object_add(p, "data", json_object_new_string(lines[step]));
	mcp_notify_related(c->s, c->key, "notifications/message", p);
}

/* ---- fixture tasks (the tasks extension) ------------------------------ */

/* A fixture task: when its timer fires it ends with result, or fails
 * with why. */
struct fx_task {
	struct task_record	*rec;
	struct event		*timer;
	struct task_result	*result;
	char			*why;
	int64_t			 ms;	/* it ends this long after its start */
	struct mcp_req		*q;	/* until the store has it */
};

static void
fx_task_free(struct fx_task *t)
{
	event_free(t->timer);
	taskresult_free(t->result);
	free(t->why);
	free(t);
}

static void
fx_task_cb(evutil_socket_t fd, short events, void *arg)
{
	struct fx_task		*t = arg;
	struct task_outcome	 o = { .failed = t->why != NULL,
	    .error = t->why };

	(void)fd; (void)events;
	registry_finish(t->rec, &o, t->result, now_ms());	/* takes it */
	t->result = NULL;
	fx_task_free(t);
}

/* Cancelled (tasks/cancel) or interrupted (shutdown) before its end. */
static void
fx_task_stopped(void *arg, const char *why)
{
	(void)why;
	fx_task_free(arg);
}

static void
fx_task_stored(void *arg, bool stored)
{
	struct fx_task		*t = arg;
	struct mcp_req		*q = t->q;
	struct task_record	*r = t->rec;
	struct json_object	*res;

	t->q = NULL;
	mcp_req_begin(q);
	if (!stored) {
		r->mcp_task = false;
		registry_interrupt(r, "the task store cannot write", now_ms());
		mcp_error(q->s, q->m.id, RPC_INTERNAL_ERROR, "Internal error: "
		    "the task store cannot write");
	} else {
		fx_after(t->timer, t->ms);
		res = mcptasks_modern_status(q->s, r);
		json_object_object_add(res, "resultType",
		    json_object_new_string("task"));
		mcp_reply(q->s, q->m.id, res);
	}
	mcp_req_end(q);
}

/*
 * Creates a task that ends after ms, and answers with its
 * CreateTaskResult once the store has it.  Takes result.
 */
static void
fx_task_start(struct mcp_session *s, struct rpc_msg *m, const char *tool,
    struct json_object *args, int64_t ms, struct task_result *result,
    const char *why)
{
	struct fx_task		*t = xcalloc(1, sizeof *t);
	struct task_record	*r = registry_new(s->owner, tool);
	char			 id[33];

	r->mcp_task = true;
	r->params = args != NULL ? json_object_get(args) :
	    json_object_new_object();
	r->ttl_ms = service_ttl_ms(s->cfg, (double)ms / 1000, -1);
	r->cancelled = fx_task_stopped;
	r->arg = t;
	t->rec = r;
	t->result = result;
	t->why = why != NULL ? xstrdup(why) : NULL;
	t->timer = evtimer_new(ev_base, fx_task_cb, t);
	t->ms = ms;
	t->q = mcp_req_hold(s, m);
	task_new_id(id);
	registry_add(r, NULL, id, now_ms());
	durable_when_stored(r->id, fx_task_stored, t);
}

/* ---- multi-round-trip requests (SEP-2322) ----------------------------- */

static uint8_t	fx_state_key[32];
static bool	fx_state_keyed;

/* requestState: "<tool>:<round>.<HMAC-SHA256 of that, in hex>". */
static char *
fx_state(const char *tool, int round)
{
	struct hmac_sha256_ctx	 ctx;
	uint8_t			 mac[SHA256_DIGEST_SIZE];
	char			*payload = xasprintf("%s:%d", tool, round);
	struct buf		 out;

	if (!fx_state_keyed) {
		if (getrandom(fx_state_key, sizeof fx_state_key, 0) !=
		    (ssize_t)sizeof fx_state_key)
			fatal("getrandom");
		fx_state_keyed = true;
	}
	hmac_sha256_set_key(&ctx, sizeof fx_state_key, fx_state_key);
	hmac_sha256_update(&ctx, strlen(payload), (uint8_t *)payload);
	hmac_sha256_digest(&ctx, sizeof mac, mac);
	buf_init(&out, 0);
	buf_printf(&out, "%s.", payload);
	for (size_t i = 0; i < sizeof mac; i++)
		buf_printf(&out, "%02x", mac[i]);
	free(payload);
	return buf_release(&out);
}

/*
 * The round a request's requestState says it is for: 0 without one, -1
 * (after answering -32602) for one this process did not sign for tool.
 */
static int
fx_state_round(struct mcp_session *s, struct rpc_msg *m, const char *tool)
{
	struct json_object	*v;
	const char		*got, *colon;
	char			*want;
	int			 round;
	bool			 ok;

	if (!json_object_object_get_ex(m->params, "requestState", &v) ||
	    v == NULL)
		return 0;
	got = json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : "";
	colon = strrchr(got, ':');
	round = colon != NULL ? atoi(colon + 1) : 0;
	want = round > 0 ? fx_state(tool, round) : NULL;
	ok = want != NULL && strcmp(got, want) == 0;
	free(want);
	if (ok)
		return round;
	mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
	    "requestState failed its integrity check");
	return -1;
}

/* params.inputResponses: NULL when absent; -1 (answered) when not an
 * object. */
static int
fx_responses(struct mcp_session *s, struct rpc_msg *m,
    struct json_object **out)
{
	*out = NULL;
	if (!json_object_object_get_ex(m->params, "inputResponses", out))
		return 0;
	if (json_object_is_type(*out, json_type_object))
		return 0;
	mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
	    "inputResponses must be an object");
	return -1;
}

static struct json_object *
fx_ask(const char *method, const char *params)
{
	struct json_object	*r = json_object_new_object();

	json_object_object_add(r, "method", json_object_new_string(method));
	json_object_object_add(r, "params", json_tokener_parse(params));
	return r;
}

static struct json_object *
fx_ask_elicit(const char *message, const char *field, const char *type)
{
	char	params[512];

	snprintf(params, sizeof params, "{\"message\":\"%s\","
	    "\"requestedSchema\":{\"type\":\"object\",\"properties\":"
	    "{\"%s\":{\"type\":\"%s\"}},\"required\":[\"%s\"]}}",
	    message, field, type, field);
	return fx_ask("elicitation/create", params);
}

static struct json_object *
fx_ask_sampling(void)
{
	return fx_ask("sampling/createMessage", "{\"messages\":[{\"role\":"
	    "\"user\",\"content\":{\"type\":\"text\",\"text\":\"What is the "
	    "capital of France?\"}}],\"maxTokens\":100}");
}

/* InputRequiredResult: what is asked, and the state of round (0: none). */
static void
fx_input_required(struct mcp_session *s, struct rpc_msg *m, const char *tool,
    struct json_object *asks, int round)
{
	struct json_object	*res = json_object_new_object();
	char			*state;

	json_object_object_add(res, "resultType",
	    json_object_new_string("input_required"));
	json_object_object_add(res, "inputRequests", asks);
	if (round > 0) {
		state = fx_state(tool, round);
		json_object_object_add(res, "requestState",
		    json_object_new_string(state));
		free(state);
	}
	mcp_reply(s, m->id, res);
}

/* An accepted elicitation's field (a string), or NULL. */
static const char *
fx_elicited(struct json_object *responses, const char *key,
    const char *field)
{
	struct json_object	*r, *action, *content, *v;

	if (!json_object_object_get_ex(responses, key, &r) ||
	    !json_object_object_get_ex(r, "action", &action) ||
	    strcmp(json_object_get_string(action), "accept") != 0 ||
	    !json_object_object_get_ex(r, "content", &content) ||
	    !json_object_object_get_ex(content, field, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Whether responses answer key as method asks: an object of the shape
 * of that method's result. */
static bool
fx_answered(struct json_object *responses, const char *key,
    const char *method)
{
	struct json_object	*r;
	const char		*field = strcmp(method, "roots/list") == 0 ?
	    "roots" : strcmp(method, "elicitation/create") == 0 ? "action" :
	    "content";

	return json_object_object_get_ex(responses, key, &r) &&
	    json_object_is_type(r, json_type_object) &&
	    json_object_object_get_ex(r, field, NULL);
}

/* ---- the tools -------------------------------------------------------- */

struct fx_tool;
typedef void (*fx_call_fn)(struct mcp_session *, struct rpc_msg *,
	    const struct fx_tool *, struct json_object *args);

struct fx_tool {
	const char	*name;
	const char	*description;
	const char	*schema;	/* inputSchema; NULL: no arguments */
	const char	*task_support;	/* execution.taskSupport, or NULL */
	fx_call_fn	 call;
};

static void
fx_simple_text(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, fx_result(fx_text("This is a simple text "
	    "response for testing."), NULL));
}

static void
fx_image(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, fx_result(fx_media("image", fx_png, "image/png"),
	    NULL));
}

static void
fx_audio(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, fx_result(fx_media("audio", fx_wav, "audio/wav"),
	    NULL));
}

static void
fx_embedded(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, fx_result(fx_resource("test://embedded-resource",
	    "text/plain", "This is an embedded resource content.", false),
	    NULL));
}

static void
fx_mixed(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	struct json_object	*res = fx_result(fx_text("Multiple content "
	    "types test:"), fx_media("image", fx_png, "image/png")), *l;

	(void)t; (void)args;
	json_object_object_get_ex(res, "content", &l);
	json_object_array_add(l, fx_resource("test://mixed-content-resource",
	    "application/json", "{\"test\":\"data\",\"value\":123}", false));
	mcp_reply(s, m->id, res);
}

static void
fx_error(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, tool_error_result("This tool intentionally "
	    "returns an error for testing"));
}

static void
fx_progress(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	fx_call_start(s, m, fx_result(fx_text("Progress test completed"),
	    NULL), fx_note_progress, 3, FX_STEP_MS);
}

static void
fx_logging(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	fx_call_start(s, m, fx_result(fx_text("Logging test completed"),
	    NULL), fx_note_log, 3, FX_STEP_MS);
}

/*
 * test_reconnection: answers after the stream has become SSE (the
 * keep-alive interval turns a quiet request into a stream, with its
 * priming event and retry field).  Closing the stream before the result,
 * which the scenario would then resume, is not something a method
 * handler can do: the result comes on the POST's stream.
 */
static void
fx_reconnection(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	(void)t; (void)args;
	fx_call_start(s, m, fx_result(fx_text("Reconnection test completed"),
	    NULL), NULL, 0, s->cfg->sse_keepalive_s * 1000 + 500);
}

static void
fx_schema_tool(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, fx_result(fx_text("JSON Schema 2020-12 tool "
	    "called"), NULL));
}

static void
fx_missing_capability(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	(void)t; (void)args;
	if (!fx_client_has(s, m, "sampling"))
		fx_missing(s, m, "{\"sampling\":{}}");
	else
		mcp_reply(s, m->id, fx_result(fx_text("The client declared "
		    "sampling"), NULL));
}

static void
fx_streaming(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)t; (void)args;
	mcp_reply(s, m->id, fx_result(fx_text("No request was sent to the "
	    "client on this stream"), NULL));
}

/* One log message, if the request's level lets it through, then a result. */
static void
fx_log_tool(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	struct json_object	*p;
	char			*key;

	(void)t; (void)args;
	if (fx_log_info(s, m)) {
		p = json_object_new_object();
		json_object_object_add(p, "level",
		    json_object_new_string("info"));
		json_object_object_add(p, "data",
		    json_object_new_string("test_logging_tool ran"));
		key = rpc_id_key(m->id);
		mcp_notify_related(s, key, "notifications/message", p);
		free(key);
	}
	mcp_reply(s, m->id, fx_result(fx_text("Logged as the request's "
	    "logLevel allows"), NULL));
}

static void
fx_greet(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	char	*text = xasprintf("Hello, %s!", fx_string_arg(args, "name",
	    "World"));

	(void)t;
	mcp_reply(s, m->id, fx_result(fx_text(text), NULL));
	free(text);
}

/* Sleeps seconds, as a task for a client of the tasks extension. */
static void
fx_slow_compute(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	struct json_object	*v;
	double			 sec = 0;
	char			*text;

	if (json_object_object_get_ex(args, "seconds", &v) &&
	    (json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_double)))
		sec = json_object_get_double(v);
	if (!(sec >= 0 && sec <= FX_MAX_SECONDS)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "seconds must be from 0 to 600");
		return;
	}
	text = xasprintf("slow_compute %s: done after %g s",
	    fx_string_arg(args, "label", "(no label)"), sec);
	if (s->task_ext)
		fx_task_start(s, m, t->name, args, (int64_t)(sec * 1000),
		    taskresult_text(text, false), NULL);
	else
		fx_call_start(s, m, fx_result(fx_text(text), NULL), NULL, 0,
		    (int)(sec * 1000));
	free(text);
}

static void
fx_failing_job(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	if (!s->task_ext) {
		fx_missing(s, m, "{\"extensions\":{\"" FX_EXT_TASKS "\":{}}}");
		return;
	}
	fx_task_start(s, m, t->name, args, FX_JOB_MS, taskresult_text(
	    "failing_job failed, as it always does", true), NULL);
}

static void
fx_protocol_error_job(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	if (!s->task_ext) {
		mcp_error(s, m->id, RPC_INTERNAL_ERROR, "Internal error: "
		    "protocol_error_job fails, as it always does");
		return;
	}
	fx_task_start(s, m, t->name, args, FX_JOB_MS, NULL,
	    "protocol_error_job fails, as it always does");
}

/* Asks for a name first (MRTR, no task yet), then greets as a task. */
static void
fx_tool_with_task(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	struct json_object	*in, *asks;
	const char		*name;
	char			*text;

	if (!s->task_ext) {
		fx_missing(s, m, "{\"extensions\":{\"" FX_EXT_TASKS "\":{}}}");
		return;
	}
	if (fx_responses(s, m, &in) == -1)
		return;
	if ((name = fx_elicited(in, "user_name", "name")) == NULL) {
		asks = json_object_new_object();
		json_object_object_add(asks, "user_name", fx_ask_elicit(
		    "What is your name?", "name", "string"));
		fx_input_required(s, m, t->name, asks, 0);
		return;
	}
	text = xasprintf("Hello, %s!", name);
	fx_task_start(s, m, t->name, args, FX_STEP_MS,
	    taskresult_text(text, false), NULL);
	free(text);
}

/* Asks for a name until it has one; an answer of the wrong shape is an
 * error, unknown extra answers are ignored. */
static void
fx_ir_elicitation(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	struct json_object	*in, *asks;
	const char		*name;
	char			*text;

	(void)args;
	if (fx_responses(s, m, &in) == -1)
		return;
	if (in != NULL && json_object_object_get_ex(in, "user_name", NULL)) {
		if ((name = fx_elicited(in, "user_name", "name")) == NULL) {
			mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid "
			    "params: inputResponses.user_name is not an "
			    "accepted elicitation with a name");
			return;
		}
		text = xasprintf("Hello, %s!", name);
		mcp_reply(s, m->id, fx_result(fx_text(text), NULL));
		free(text);
		return;
	}
	if (!fx_client_has(s, m, "elicitation")) {
		fx_missing(s, m, "{\"elicitation\":{}}");
		return;
	}
	asks = json_object_new_object();
	json_object_object_add(asks, "user_name", fx_ask_elicit("What is "
	    "your name?", "name", "string"));
	fx_input_required(s, m, t->name, asks, 0);
}

/* One request of one method under key, until it is answered. */
static void
fx_ir_single(struct mcp_session *s, struct rpc_msg *m, const char *tool,
    const char *cap, const char *key, struct json_object *ask)
{
	struct json_object	*in, *asks;
	const char		*method = json_object_get_string(
	    json_object_object_get(ask, "method"));
	char			 caps[64];

	if (fx_responses(s, m, &in) == -1) {
		json_object_put(ask);
		return;
	}
	if (fx_answered(in, key, method)) {
		json_object_put(ask);
		mcp_reply(s, m->id, fx_result(fx_text("The client answered "
		    "the input request"), NULL));
		return;
	}
	if (!fx_client_has(s, m, cap)) {
		json_object_put(ask);
		snprintf(caps, sizeof caps, "{\"%s\":{}}", cap);
		fx_missing(s, m, caps);
		return;
	}
	asks = json_object_new_object();
	json_object_object_add(asks, key, ask);
	fx_input_required(s, m, tool, asks, 0);
}

static void
fx_ir_sampling(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	(void)args;
	fx_ir_single(s, m, t->name, "sampling", "capital_question",
	    fx_ask_sampling());
}

static void
fx_ir_roots(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	(void)args;
	fx_ir_single(s, m, t->name, "roots", "client_roots",
	    fx_ask("roots/list", "{}"));
}

/*
 * Round 1 asks for a confirmation and hands out a signed state; a second
 * call must bring both back (request_state, tampered_state).
 */
static void
fx_ir_state(struct mcp_session *s, struct rpc_msg *m, const struct fx_tool *t,
    struct json_object *args)
{
	struct json_object	*in, *asks;
	int			 round;

	(void)args;
	if ((round = fx_state_round(s, m, t->name)) == -1 ||
	    fx_responses(s, m, &in) == -1)
		return;
	if (round == 1 && fx_answered(in, "confirm", "elicitation/create")) {
		mcp_reply(s, m->id, fx_result(fx_text("state-ok"), NULL));
		return;
	}
	asks = json_object_new_object();
	json_object_object_add(asks, "confirm", fx_ask_elicit("Confirm to "
	    "continue", "ok", "boolean"));
	fx_input_required(s, m, t->name, asks, 1);
}

/* Three requests of three methods; what is still unanswered is asked
 * again. */
static void
fx_ir_multiple(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	static const char	*keys[] = { "user_name", "capital_question",
	    "client_roots" };
	static const char	*methods[] = { "elicitation/create",
	    "sampling/createMessage", "roots/list" };
	struct json_object	*in, *asks = json_object_new_object(), *ask;

	(void)args;
	if (fx_state_round(s, m, t->name) == -1 ||
	    fx_responses(s, m, &in) == -1) {
		json_object_put(asks);
		return;
	}
	for (size_t i = 0; i < 3; i++) {
		if (fx_answered(in, keys[i], methods[i]))
			continue;
		ask = i == 0 ? fx_ask_elicit("What is your name?", "name",
		    "string") : i == 1 ? fx_ask_sampling() :
		    fx_ask("roots/list", "{}");
		json_object_object_add(asks, keys[i], ask);
	}
	if (json_object_object_length(asks) == 0) {
		json_object_put(asks);
		mcp_reply(s, m->id, fx_result(fx_text("All three inputs "
		    "arrived"), NULL));
		return;
	}
	fx_input_required(s, m, t->name, asks, 1);
}

/* step1, then step2 under a new state, then done. */
static void
fx_ir_multi_round(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	struct json_object	*in, *asks;
	int			 round;

	(void)args;
	if ((round = fx_state_round(s, m, t->name)) == -1 ||
	    fx_responses(s, m, &in) == -1)
		return;
	if (round == 2 && fx_answered(in, "step2", "elicitation/create")) {
		mcp_reply(s, m->id, fx_result(fx_text("Both rounds answered"),
		    NULL));
		return;
	}
	round = round == 1 && fx_answered(in, "step1", "elicitation/create") ?
	    2 : 1;
	asks = json_object_new_object();
	json_object_object_add(asks, round == 1 ? "step1" : "step2",
	    fx_ask_elicit(round == 1 ? "Step 1: your name?" :
	    "Step 2: your city?", round == 1 ? "name" : "city", "string"));
	fx_input_required(s, m, t->name, asks, round);
}

/* Asks only what the client can answer; with nothing to ask, it is done. */
static void
fx_ir_capabilities(struct mcp_session *s, struct rpc_msg *m,
    const struct fx_tool *t, struct json_object *args)
{
	struct json_object	*in, *asks;

	(void)args;
	if (fx_responses(s, m, &in) == -1)
		return;
	asks = json_object_new_object();
	if (in == NULL && fx_client_has(s, m, "elicitation"))
		json_object_object_add(asks, "user_name", fx_ask_elicit(
		    "What is your name?", "name", "string"));
	if (in == NULL && fx_client_has(s, m, "sampling"))
		json_object_object_add(asks, "capital_question",
		    fx_ask_sampling());
	if (in == NULL && fx_client_has(s, m, "roots"))
		json_object_object_add(asks, "client_roots",
		    fx_ask("roots/list", "{}"));
	if (json_object_object_length(asks) == 0) {
		json_object_put(asks);
		mcp_reply(s, m->id, fx_result(fx_text("Nothing left to ask"),
		    NULL));
		return;
	}
	fx_input_required(s, m, t->name, asks, 0);
}

#define FX_NO_ARGS	"{\"type\":\"object\",\"properties\":{}}"

static const char fx_schema_2020_12[] =
"{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
"\"type\":\"object\","
"\"$defs\":{\"address\":{\"$anchor\":\"addressDef\",\"type\":\"object\","
"\"properties\":{\"street\":{\"type\":\"string\"},"
"\"city\":{\"type\":\"string\"}}}},"
"\"properties\":{\"name\":{\"type\":\"string\"},"
"\"address\":{\"$ref\":\"#/$defs/address\"},"
"\"contactMethod\":{\"type\":\"string\",\"enum\":[\"phone\",\"email\"]},"
"\"phone\":{\"type\":\"string\"},\"email\":{\"type\":\"string\"}},"
"\"allOf\":[{\"anyOf\":[{\"required\":[\"phone\"]},"
"{\"required\":[\"email\"]}]}],"
"\"if\":{\"properties\":{\"contactMethod\":{\"const\":\"phone\"}},"
"\"required\":[\"contactMethod\"]},"
"\"then\":{\"required\":[\"phone\"]},"
"\"else\":{\"required\":[\"email\"]},"
"\"additionalProperties\":false}";

static const struct fx_tool fx_tools[] = {
	{ "test_simple_text", "Returns simple text content", NULL, NULL,
	  fx_simple_text },
	{ "test_image_content", "Returns image content (a 1x1 PNG)", NULL,
	  NULL, fx_image },
	{ "test_audio_content", "Returns audio content (a short WAV)", NULL,
	  NULL, fx_audio },
	{ "test_embedded_resource", "Returns an embedded resource", NULL,
	  NULL, fx_embedded },
	{ "test_multiple_content_types", "Returns text, image and resource "
	  "content", NULL, NULL, fx_mixed },
	{ "test_error_handling", "Always returns a tool error (isError)",
	  NULL, NULL, fx_error },
	{ "test_tool_with_progress", "Reports progress 0, 50 and 100 of 100, "
	  "50 ms apart", NULL, NULL, fx_progress },
	{ "test_tool_with_logging", "Logs three info messages, 50 ms apart",
	  NULL, NULL, fx_logging },
	{ "test_reconnection", "Answers once its stream has become SSE",
	  NULL, NULL, fx_reconnection },
	{ "json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features",
	  fx_schema_2020_12, NULL, fx_schema_tool },
	{ "test_missing_capability", "Needs the client's sampling capability",
	  NULL, NULL, fx_missing_capability },
	{ "test_streaming_elicitation", "Answers on its response stream, "
	  "sending the client no request", NULL, NULL, fx_streaming },
	{ "test_logging_tool", "Logs one message only if the request set a "
	  "logLevel", NULL, NULL, fx_log_tool },
	{ "greet", "Greets by name (never a task)",
	  "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},"
	  "\"required\":[\"name\"]}", NULL, fx_greet },
	{ "slow_compute", "Sleeps for seconds, as a task when the client has "
	  "the tasks extension", "{\"type\":\"object\",\"properties\":"
	  "{\"seconds\":{\"type\":\"number\"},\"label\":{\"type\":\"string\"}}}",
	  "optional", fx_slow_compute },
	{ "failing_job", "A task that ends with a tool error after 1 s", NULL,
	  "required", fx_failing_job },
	{ "protocol_error_job", "A task that fails with a protocol error "
	  "after 1 s", NULL, "optional", fx_protocol_error_job },
	{ "test_tool_with_task", "Asks for a name, then greets as a task",
	  NULL, "required", fx_tool_with_task },
	{ "test_input_required_result_elicitation", "Asks for a name by "
	  "elicitation (SEP-2322)", NULL, NULL, fx_ir_elicitation },
	{ "test_input_required_result_sampling", "Asks the client's model "
	  "(SEP-2322)", NULL, NULL, fx_ir_sampling },
	{ "test_input_required_result_list_roots", "Asks for the client's "
	  "roots (SEP-2322)", NULL, NULL, fx_ir_roots },
	{ "test_input_required_result_request_state", "Asks for a "
	  "confirmation, keeping a signed requestState (SEP-2322)", NULL,
	  NULL, fx_ir_state },
	{ "test_input_required_result_multiple_inputs", "Asks three things "
	  "of three kinds at once (SEP-2322)", NULL, NULL, fx_ir_multiple },
	{ "test_input_required_result_multi_round", "Asks in two rounds "
	  "(SEP-2322)", NULL, NULL, fx_ir_multi_round },
	{ "test_input_required_result_tampered_state", "Refuses a "
	  "requestState it did not sign (SEP-2322)", NULL, NULL, fx_ir_state },
	{ "test_input_required_result_capabilities", "Asks only what the "
	  "client declared it can answer (SEP-2322)", NULL, NULL,
	  fx_ir_capabilities },
};
#define FX_NTOOLS	(sizeof fx_tools / sizeof fx_tools[0])

/* tools/list: the fixtures after heavyd's own tools. */
void
fixtures_tools(struct json_object *tools)
{
	struct json_object	*t, *e;

	for (size_t i = 0; i < FX_NTOOLS; i++) {
		t = json_object_new_object();
		json_object_object_add(t, "name",
		    json_object_new_string(fx_tools[i].name));
		json_object_object_add(t, "description",
		    json_object_new_string(fx_tools[i].description));
		json_object_object_add(t, "inputSchema", json_tokener_parse(
		    fx_tools[i].schema ? fx_tools[i].schema : FX_NO_ARGS));
		if (fx_tools[i].task_support != NULL) {
			e = json_object_new_object();
			json_object_object_add(e, "taskSupport",
			    json_object_new_string(fx_tools[i].task_support));
			json_object_object_add(t, "execution", e);
		}
		json_object_array_add(tools, t);
	}
}

/* tools/call of a fixture: true when name is one (and it answered). */
bool
fixtures_call(struct mcp_session *s, struct rpc_msg *m, const char *name,
    struct json_object *args)
{
	for (size_t i = 0; i < FX_NTOOLS; i++)
		if (strcmp(fx_tools[i].name, name) == 0) {
			fx_tools[i].call(s, m, &fx_tools[i], args);
			return true;
		}
	return false;
}

/* ---- resources -------------------------------------------------------- */

#define FX_TEMPLATE	"test://template/{id}/data"

static const struct {
	const char	*uri, *name, *description, *mime, *text;
	bool		 blob;
} fx_resources[] = {
	{ "test://static-text", "static-text", "A static text resource",
	  "text/plain", "This is the content of the static text resource.",
	  false },
	{ "test://static-binary", "static-binary", "A static binary resource "
	  "(a 1x1 PNG)", "image/png", fx_png, true },
	{ "test://watched-resource", "watched-resource", "A resource to "
	  "subscribe to (it never changes)", "text/plain", "This resource is "
	  "watched.", false },
};
#define FX_NRESOURCES	(sizeof fx_resources / sizeof fx_resources[0])

static struct json_object *
fx_res_entry(const char *key, const char *uri, const char *name,
    const char *description, const char *mime)
{
	struct json_object	*r = json_object_new_object();

	json_object_object_add(r, key, json_object_new_string(uri));
	json_object_object_add(r, "name", json_object_new_string(name));
	json_object_object_add(r, "description",
	    json_object_new_string(description));
	json_object_object_add(r, "mimeType", json_object_new_string(mime));
	return r;
}

void
fixtures_resources(struct json_object *list)
{
	for (size_t i = 0; i < FX_NRESOURCES; i++)
		json_object_array_add(list, fx_res_entry("uri",
		    fx_resources[i].uri, fx_resources[i].name,
		    fx_resources[i].description, fx_resources[i].mime));
}

void
fixtures_templates(struct json_object *list)
{
	json_object_array_add(list, fx_res_entry("uriTemplate", FX_TEMPLATE,
	    "template-data", "Data for an id", "application/json"));
}

static struct json_object *
fx_contents(const char *uri, const char *mime, const char *text, bool blob)
{
	struct json_object	*res = json_object_new_object(), *l, *c;

	c = json_object_new_object();
	json_object_object_add(c, "uri", json_object_new_string(uri));
	json_object_object_add(c, "mimeType", json_object_new_string(mime));
	json_object_object_add(c, blob ? "blob" : "text",
	    json_object_new_string(text));
	l = json_object_new_array();
	json_object_array_add(l, c);
	json_object_object_add(res, "contents", l);
	return res;
}

/* "test://template/<id>/data" with an id of letters, digits, - and _. */
static struct json_object *
fx_read_template(const char *uri)
{
	static const char	 pre[] = "test://template/";
	struct json_object	*res;
	const char		*id = uri + sizeof pre - 1, *end;
	char			*text;

	if (strncmp(uri, pre, sizeof pre - 1) != 0 ||
	    (end = strchr(id, '/')) == NULL || end == id ||
	    strcmp(end, "/data") != 0)
		return NULL;
	for (const char *p = id; p < end; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return NULL;
	text = xasprintf("{\"id\":\"%.*s\",\"templateTest\":true,"
	    "\"data\":\"Data for ID: %.*s\"}", (int)(end - id), id,
	    (int)(end - id), id);
	res = fx_contents(uri, "application/json", text, false);
	free(text);
	return res;
}

/* resources/read of a fixture's uri; NULL for any other. */
struct json_object *
fixtures_read(const char *uri)
{
	for (size_t i = 0; i < FX_NRESOURCES; i++)
		if (strcmp(fx_resources[i].uri, uri) == 0)
			return fx_contents(uri, fx_resources[i].mime,
			    fx_resources[i].text, fx_resources[i].blob);
	return fx_read_template(uri);
}

bool
fixtures_subscribable(const char *uri)
{
	for (size_t i = 0; i < FX_NRESOURCES; i++)
		if (strcmp(fx_resources[i].uri, uri) == 0)
			return true;
	return false;
}

/* ---- prompts and completion ------------------------------------------- */

static const struct {
	const char	*name, *description;
	const char	*args[2];	/* required string arguments */
} fx_prompts[] = {
	{ "test_simple_prompt", "A simple prompt without arguments",
	  { NULL, NULL } },
	{ "test_prompt_with_arguments", "A prompt with two required "
	  "arguments", { "arg1", "arg2" } },
	{ "test_prompt_with_embedded_resource", "A prompt with an embedded "
	  "resource", { "resourceUri", NULL } },
	{ "test_prompt_with_image", "A prompt with an image",
	  { NULL, NULL } },
	{ "test_input_required_result_prompt", "A prompt that asks for "
	  "context first (SEP-2322)", { NULL, NULL } },
};
#define FX_NPROMPTS	(sizeof fx_prompts / sizeof fx_prompts[0])

void
fixtures_prompts(struct json_object *list)
{
	struct json_object	*p, *args, *a;

	for (size_t i = 0; i < FX_NPROMPTS; i++) {
		p = json_object_new_object();
		json_object_object_add(p, "name",
		    json_object_new_string(fx_prompts[i].name));
		json_object_object_add(p, "description",
		    json_object_new_string(fx_prompts[i].description));
		args = json_object_new_array();
		for (size_t j = 0; j < 2 && fx_prompts[i].args[j]; j++) {
			a = json_object_new_object();
			json_object_object_add(a, "name", json_object_new_string(
			    fx_prompts[i].args[j]));
			json_object_object_add(a, "description",
			    json_object_new_string("Any text"));
			json_object_object_add(a, "required",
			    json_object_new_boolean(1));
			json_object_array_add(args, a);
		}
		json_object_object_add(p, "arguments", args);
		json_object_array_add(list, p);
	}
}

/* A GetPromptResult of the user's messages (one, or two). */
static struct json_object *
fx_messages(struct json_object *first, struct json_object *second)
{
	struct json_object	*res = json_object_new_object(), *l, *msg;
	struct json_object	*c[2] = { first, second };

	l = json_object_new_array();
	for (size_t i = 0; i < 2 && c[i] != NULL; i++) {
		msg = json_object_new_object();
		json_object_object_add(msg, "role",
		    json_object_new_string("user"));
		json_object_object_add(msg, "content", c[i]);
		json_object_array_add(l, msg);
	}
	json_object_object_add(res, "messages", l);
	return res;
}

/* The MRTR prompt: context first, then the prompt. */
static void
fx_prompt_ir(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*in, *asks;
	const char		*context;
	char			*text;

	if (fx_responses(s, m, &in) == -1)
		return;
	if ((context = fx_elicited(in, "user_context", "context")) == NULL) {
		asks = json_object_new_object();
		json_object_object_add(asks, "user_context", fx_ask_elicit(
		    "What context should the prompt use?", "context",
		    "string"));
		fx_input_required(s, m, "test_input_required_result_prompt",
		    asks, 0);
		return;
	}
	text = xasprintf("Prompt with the context: %s", context);
	mcp_reply(s, m->id, fx_messages(fx_text(text), NULL));
	free(text);
}

static struct json_object *
fx_prompt_result(size_t i, const char *const vals[2])
{
	char			*text;
	struct json_object	*res;

	switch (i) {
	case 0:
		return fx_messages(fx_text("This is a simple prompt for "
		    "testing."), NULL);
	case 1:
		text = xasprintf("Prompt with arguments: arg1='%s', "
		    "arg2='%s'", vals[0], vals[1]);
		res = fx_messages(fx_text(text), NULL);
		free(text);
		return res;
	case 2:
		return fx_messages(fx_resource(vals[0], "text/plain",
		    "Embedded resource content for testing.", false),
		    fx_text("Please process the embedded resource above."));
	default:
		return fx_messages(fx_media("image", fx_png, "image/png"),
		    fx_text("Please analyze the image above."));
	}
}

/* prompts/get of a fixture: true when name is one (and it answered). */
bool
fixtures_prompt(struct mcp_session *s, struct rpc_msg *m, const char *name,
    struct json_object *args)
{
	const char	*vals[2] = { NULL, NULL };
	size_t		 i;

	for (i = 0; i < FX_NPROMPTS; i++)
		if (strcmp(fx_prompts[i].name, name) == 0)
			break;
	if (i == FX_NPROMPTS)
		return false;
	if (i == FX_NPROMPTS - 1) {
		fx_prompt_ir(s, m);
		return true;
	}
	for (size_t j = 0; j < 2 && fx_prompts[i].args[j]; j++)
		if ((vals[j] = fx_string_arg(args, fx_prompts[i].args[j],
		    NULL)) == NULL) {
			mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid "
			    "params: a required argument is missing");
			return true;
		}
	mcp_reply(s, m->id, fx_prompt_result(i, vals));
	return true;
}

/* completion/complete of a fixture prompt's argument; NULL for others. */
struct json_object *
fixtures_complete(const char *prompt, const char *arg, const char *typed)
{
	static const char	*values[] = { "test", "testValue1",
	    "testValue2", "other" };
	struct json_object	*l;
	size_t			 n = typed != NULL ? strlen(typed) : 0;

	if (prompt == NULL || arg == NULL ||
	    strcmp(prompt, "test_prompt_with_arguments") != 0 ||
	    (strcmp(arg, "arg1") != 0 && strcmp(arg, "arg2") != 0))
		return NULL;
	l = json_object_new_array();
	for (size_t i = 0; i < sizeof values / sizeof *values; i++)
		if (strncmp(values[i], typed ? typed : "", n) == 0)
			json_object_array_add(l,
			    json_object_new_string(values[i]));
	return l;
}

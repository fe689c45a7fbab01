/*
 * mockllm: an OpenAI-compatible chat-completions server for tests, the demo
 * and benchmarks, on libevent's evhttp, bound to 127.0.0.1 only.
 *
 * Markers in the messages' text steer it: [[scope:action]], or [[action]]
 * for scope "all".  Scopes: planner, agent, aN (agent N), synth, all.  The
 * planner copies markers into its sub-questions (aN becomes agent in
 * question N only) and agents copy synth/all markers into their answers,
 * so one user query can steer every step.  Nothing blocks: delays are
 * evtimers, and a hang simply never answers.
 *
 * Peer reviews (the phrase "Rank the responses") see the user query, so
 * scope "review" steers them: [[review:prefer:WORD]] ranks responses
 * containing WORD first, the rest by their "Answer N" number;
 * [[review:invalid]] always and [[review:invalid-once]] until re-asked
 * reply with a ranking that misses a label; [[review:hang-model:M]] and
 * [[review:invalid-model:M]] do so only for reviewers using model M.  A
 * synthesis told a ranking says in which order it saw the answers.
 * [[usage:N]] makes a call report N tokens; a request that asks for usage
 * cost ({"usage":{"include":true}}, as of OpenRouter) gets a micro-dollar
 * a token.
 * /stats counts requests by kind, and the models each kind asked for.
 *
 * [[model-fail:CODE:NAME]] fails every call to model NAME with CODE (a
 * 404 says "No endpoints found for NAME", as OpenRouter does);
 * [[model-notools:NAME]] answers calls to NAME with OpenRouter's 400 "No
 * endpoints found that support tool use": the fallback_models tests.
 *
 * [[tool:NAME:ARGS]] makes an agent call NAME with the JSON ARGS (one call
 * per marker, in order), e.g. [[a1:tool:read_file:{"path":"a.txt"}]].
 *
 * Heavy-tailed latency, for the benchmarks of tail latency: -L MEDIAN:SIGMA
 * (or MOCKLLM_LOGNORMAL, or [[lognormal:MEDIAN:SIGMA]] per call) draws
 * each chat call's latency from a lognormal distribution with that median
 * (ms) and sigma, capped at 10 minutes.  The draw is a function of the seed
 * (-S, MOCKLLM_SEED; default 1) and of the call (its kind and its
 * messages' text), not of the order calls arrive in: the
 * same orchestration meets the same latencies in every run, whatever runs
 * beside it.  The reply's X-Mock-Latency-Ms header says what was drawn.
 * A request repeated (a retry, or heavyd-egress's hedge: the same text)
 * draws again: the Nth arrival of one text has its own draw, so a hedge
 * may be lucky where its first transfer was not.  [[first-latency:MS]]
 * holds only the first arrival of a text for MS ms; its repeats answer
 * at once (or after -l, -L): a hedge that always wins, unless
 * [[repeat-status:CODE]] fails the repeats with CODE.  /stats counts
 * the chat calls whose client went away before their reply ("cancelled":
 * a hedge's loser, a killed worker's call).
 *
 * [[gate]] holds a reply until POST /open (then it goes, after any
 * latency, and later gated calls answer at once until POST /reset): a test
 * sees a task running for as long as it needs, on any machine.  /stats
 * counts the replies "held" now, and by gate in "held_gates".
 * [[gate:NAME]] is a gate of its own, opened by POST /open/NAME (and by
 * POST /open), so a test can let one step go and hold another.
 *
 * A draft (heavyd's incremental strategy: a synthesis prompt saying how
 * many agents "have answered so far") is a kind and a scope of its own,
 * "draft"; it answers which "Answer N" it saw.  /stats keeps the last 64
 * synthesis and draft prompts ("synthesis_prompts", newest last).
 *
 * It is also a search backend for search_web: GET /search?q=..&format=json
 * (SearXNG) and GET /brave/search?q=.. (Brave; needs X-Subscription-Token)
 * answer with results pointing at pages it serves: /page/N (HTML with a
 * script and a style to strip), /redirect/K (K redirects, then /page/1),
 * /big (2 MiB), /binary and /hang (never answers).  A query holding
 * "paths=/a,/b" gets results for exactly those paths; otherwise /page/1
 * to /page/3.  GET /stats
 * shows which tools agents were offered ("offered": name -> requests),
 * the tool messages agents sent back ("tool_messages", newest last), the
 * search and page requests, and any that carried an Authorization header.
 *
 * -t FILE serves TLS with a self-signed certificate it writes to FILE
 * (mocktls.c); /stats counts the connections (each a full handshake).
 */
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <json-c/linkhash.h>

#include "../../common/common.h"
#include "mocktls.h"

#define MOCK_MAX_BODY	(16 << 20)
#define MOCK_MAX_MARKS	64
#define MOCK_FLAKY_MAX	4096

enum kind { KIND_PLANNER, KIND_AGENT, KIND_SYNTH, KIND_REVIEW, KIND_DRAFT };
static const char *kind_names[] = { "planner", "agent", "synthesis",
    "review", "draft" };

struct mark {
	char	scope[16];	/* planner, agent, synth, all, aN */
	char	action[1024];
};

struct chat {
	struct json_object	*root;
	struct json_object	*messages;
	const char		*model;
	enum kind		 kind;
	struct buf		 text;
	struct mark		 marks[MOCK_MAX_MARKS];
	int			 nmarks;
	int			 tool_msgs;
	int			 assistant_msgs;
	const char		*token;		/* the bearer token it came with */
	long			 nth;		/* arrivals of its text before it */
};

/* A response built now and sent now or after a delay. */
struct reply {
	struct evhttp_request		*req;
	struct evhttp_connection	*conn;
	struct event			*timer;
	struct event			*watch;	/* the client going away */
	int				 code;
	char				*body;
	const char			*type;	/* NULL: application/json */
	char				 retry_after[32];
	char				 reset[32];
	char				 remaining[32];	/* ratelimit: */
	char				 reset_requests[32];
	int				 latency;	/* once let through a gate */
	char				 gate[32];	/* its gate's name; "" */
	int				 drawn;		/* lognormal, or -1 */
};

static struct event_base	*base;

/* [[gate]]: the replies held until POST /open. */
static struct reply	**held;
static size_t		  nheld, held_cap;
static bool		  gate_open;
static struct json_object *gates_open;	/* names opened by POST /open/NAME */
static struct lh_table		*flaky;		/* text key -> times failed */
static struct lh_table		*repeats;	/* text key -> arrivals */
static int			 default_latency;
static double			 ln_median, ln_sigma;	/* ms; 0: off */
static uint64_t			 ln_seed = 1;
static unsigned long long	 seq;
static struct {
	long long	requests, planner, agent, synthesis, errors, hangs;
	long long	review;
	long long	searches, pages, search_auth;
	long long	limited;	/* -r: answered 429 over the budget */
	long long	draft;
	long long	cancelled;	/* the client went before the reply */
} stats;
static struct json_object	*arrivals;	/* "kind" or "kind:tag", in order */

/* -r N[:WINDOW_MS]: N chat calls a window (sliding), 429 beyond. */
static int			 rl_max, rl_window_ms = 60000;
static int64_t			*rl_at;		/* ring: the last rl_max */
static int			 rl_n, rl_head;
static struct json_object	*models;	/* kind -> model -> count */
static struct json_object	*offered;	/* tool name -> agent requests */
static struct json_object	*tool_msgs;	/* tool messages, newest last */
static struct json_object	*synth_prompts;	/* {kind, text}, newest last */
static char			 brave_token[128];

#define MOCK_MAX_TOOL_MSGS	256
#define MOCK_MAX_PROMPTS	64

/* ---- markers ---- */

static void
mark_add(struct chat *c, const char *p, size_t len)
{
	struct mark	*m;
	const char	*colon = memchr(p, ':', len);
	size_t		 slen = colon ? (size_t)(colon - p) : 0;
	int		 scoped = 0;

	if (c->nmarks == MOCK_MAX_MARKS || len >= sizeof m->action)
		return;
	m = &c->marks[c->nmarks++];
	if (colon != NULL && slen < sizeof m->scope) {
		snprintf(m->scope, sizeof m->scope, "%.*s", (int)slen, p);
		scoped = strcmp(m->scope, "planner") == 0 ||
		    strcmp(m->scope, "agent") == 0 ||
		    strcmp(m->scope, "synth") == 0 ||
		    strcmp(m->scope, "all") == 0 ||
		    strcmp(m->scope, "review") == 0 ||
		    strcmp(m->scope, "draft") == 0 ||
		    (m->scope[0] == 'a' && isdigit((unsigned char)m->scope[1]));
	}
	if (!scoped)
		snprintf(m->scope, sizeof m->scope, "all");
	snprintf(m->action, sizeof m->action, "%.*s",
	    (int)(scoped ? len - slen - 1 : len), scoped ? colon + 1 : p);
}

static void
marks_scan(struct chat *c)
{
	const char	*p = buf_cstr(&c->text), *end;

	while ((p = strstr(p, "[[")) != NULL &&
	    (end = strstr(p + 2, "]]")) != NULL) {
		mark_add(c, p + 2, (size_t)(end - p - 2));
		p = end + 2;
	}
}

static int
mark_applies(const struct chat *c, const struct mark *m)
{
	return strcmp(m->scope, "all") == 0 ||
	    (c->kind == KIND_PLANNER && strcmp(m->scope, "planner") == 0) ||
	    (c->kind == KIND_AGENT && strcmp(m->scope, "agent") == 0) ||
	    (c->kind == KIND_SYNTH && strcmp(m->scope, "synth") == 0) ||
	    (c->kind == KIND_REVIEW && strcmp(m->scope, "review") == 0) ||
	    (c->kind == KIND_DRAFT && strcmp(m->scope, "draft") == 0);
}

/* The argument after "name:" of the first applying marker, "" for a bare
 * "name", or NULL when no applying marker has that action. */
static const char *
chat_action(const struct chat *c, const char *name)
{
	size_t	len = strlen(name);

	for (int i = 0; i < c->nmarks; i++) {
		const char	*a = c->marks[i].action;

		if (!mark_applies(c, &c->marks[i]) || strncmp(a, name, len))
			continue;
		if (a[len] == '\0')
			return "";
		if (a[len] == ':')
			return a + len + 1;
	}
	return NULL;
}

/* Appends the markers with one of the given scopes, re-written as scope. */
static void
marks_emit(const struct chat *c, struct buf *out, const char *keep,
    const char *agent_n)
{
	for (int i = 0; i < c->nmarks; i++) {
		const struct mark	*m = &c->marks[i];
		const char		*scope = m->scope;

		if (agent_n != NULL && strcmp(scope, agent_n) == 0)
			scope = "agent";
		else if (strstr(keep, scope) == NULL || (scope[0] == 'a' &&
		    isdigit((unsigned char)scope[1])))
			continue;
		buf_printf(out, " [[%s:%s]]", scope, m->action);
	}
}

/* ---- replies ---- */

static void
reply_send(struct reply *r)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(r->req);
	struct evbuffer		*out = evbuffer_new();

	evhttp_add_header(h, "Content-Type", r->type ? r->type :
	    "application/json");
	if (r->retry_after[0] != '\0')
		evhttp_add_header(h, "Retry-After", r->retry_after);
	if (r->reset[0] != '\0')
		evhttp_add_header(h, "X-RateLimit-Reset", r->reset);
	if (r->remaining[0] != '\0')
		evhttp_add_header(h, "x-ratelimit-remaining-requests",
		    r->remaining);
	if (r->reset_requests[0] != '\0')
		evhttp_add_header(h, "x-ratelimit-reset-requests",
		    r->reset_requests);
	if (r->drawn >= 0) {
		char	v[32];

		snprintf(v, sizeof v, "%d", r->drawn);
		evhttp_add_header(h, "X-Mock-Latency-Ms", v);
	}
	evbuffer_add(out, r->body, strlen(r->body));
	evhttp_send_reply(r->req, r->code, r->code == 200 ? "OK" : "Error", out);
	evbuffer_free(out);
}

static void
reply_free(struct reply *r)
{
	if (r->watch != NULL)
		event_free(r->watch);
	if (r->timer != NULL)
		event_free(r->timer);
	free(r->body);
	free(r);
}

/* The client went away while we waited: forget its request. */
static void
reply_conn_closed(struct evhttp_connection *conn, void *arg)
{
	struct reply	*r = arg;

	(void)conn;
	stats.cancelled++;
	reply_free(r);
}

/*
 * evhttp reads nothing while a reply is pending, so it would see the
 * client go only when it writes: the socket is watched here, and its end
 * frees the connection, which runs the close callback (counted).
 */
static void
reply_peer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct reply	*r = arg;
	char		 c;
	ssize_t		 n;

	(void)events;
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
		event_add(r->watch, NULL);
		return;
	}
	if (n > 0)
		return;		/* more from the client: evhttp's business */
	evhttp_connection_free(r->conn);	/* frees r */
}

static void
reply_watch(struct reply *r)
{
	evutil_socket_t	fd = bufferevent_getfd(
	    evhttp_connection_get_bufferevent(r->conn));

	if (fd == -1)
		return;
	r->watch = event_new(base, fd, EV_READ, reply_peer_cb, r);
	event_add(r->watch, NULL);
}

static void
reply_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct reply	*r = arg;

	(void)fd; (void)events;
	evhttp_connection_set_closecb(r->conn, NULL, NULL);
	reply_send(r);
	reply_free(r);
}

static void
reply_finish(struct reply *r, int latency_ms)
{
	struct timeval	tv = { latency_ms / 1000, (latency_ms % 1000) * 1000 };

	if (r->code != 200)
		stats.errors++;
	if (latency_ms <= 0) {
		reply_send(r);
		reply_free(r);
		return;
	}
	r->conn = evhttp_request_get_connection(r->req);
	evhttp_connection_set_closecb(r->conn, reply_conn_closed, r);
	r->timer = evtimer_new(base, reply_timer_cb, r);
	evtimer_add(r->timer, &tv);
	reply_watch(r);
}

static char *
json_take(struct json_object *o)
{
	char	*s = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	json_object_put(o);
	return s;
}

static char *
error_body(int code, const char *msg)
{
	struct json_object	*o = json_object_new_object(), *e;

	e = json_object_new_object();
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(o, "error", e);
	return json_take(o);
}

static const char *
error_message(int code)
{
	switch (code) {
	case 400: return "Bad request";
	case 401: return "Invalid API key";
	case 402: return "Insufficient credits";
	case 404: return "Model not found";
	case 408: return "Request timeout";
	case 429: return "Rate limit exceeded";
	default: return code >= 500 ? "Upstream provider error" : "Error";
	}
}

/* "CODE[:retry-after=S][:reset=MS]" into r; -1 if it is not that. */
static int
reply_failure(struct reply *r, const char *spec)
{
	char	*end;
	long	 code = strtol(spec, &end, 10);

	if (code < 400 || code > 599)
		return -1;
	r->code = (int)code;
	r->body = error_body(r->code, error_message(r->code));
	for (; *end == ':'; end += strcspn(end + 1, ":") + 1) {
		if (strncmp(end, ":retry-after=", 13) == 0)
			snprintf(r->retry_after, sizeof r->retry_after, "%.*s",
			    (int)strcspn(end + 13, ":"), end + 13);
		else if (strncmp(end, ":reset=", 7) == 0)
			snprintf(r->reset, sizeof r->reset, "%lld",
			    (long long)time(NULL) * 1000 + atoll(end + 7));
	}
	return 0;
}

static struct json_object *
usage_json(size_t prompt, size_t completion)
{
	struct json_object	*u = json_object_new_object();

	json_object_object_add(u, "prompt_tokens",
	    json_object_new_int64((int64_t)prompt / 4 + 1));
	json_object_object_add(u, "completion_tokens",
	    json_object_new_int64((int64_t)completion / 4 + 1));
	json_object_object_add(u, "total_tokens", json_object_new_int64(
	    (int64_t)prompt / 4 + (int64_t)completion / 4 + 2));
	return u;
}

/* [[usage:N]]: this call reports N tokens in all, whatever its length. */
static void
usage_steer(const struct chat *c, struct json_object *u)
{
	const char	*n = chat_action(c, "usage");

	if (n == NULL)
		return;
	json_object_object_add(u, "completion_tokens",
	    json_object_new_int64(atoll(n) - 1));
	json_object_object_add(u, "total_tokens", json_object_new_int64(
	    atoll(n)));
	json_object_object_add(u, "prompt_tokens", json_object_new_int64(1));
}

/* OpenRouter's cost when the request asked for it: a micro-dollar a token. */
static void
usage_cost(const struct chat *c, struct json_object *u)
{
	struct json_object	*ask, *inc, *total;

	if (!json_object_object_get_ex(c->root, "usage", &ask) ||
	    !json_object_object_get_ex(ask, "include", &inc) ||
	    !json_object_get_boolean(inc) ||
	    !json_object_object_get_ex(u, "total_tokens", &total))
		return;
	json_object_object_add(u, "cost", json_object_new_double(
	    (double)json_object_get_int64(total) * 1e-6));
}

/* A completion around an assistant message. */
static char *
completion_body(const struct chat *c, struct json_object *msg, size_t clen,
    const char *finish)
{
	struct json_object	*o = json_object_new_object(), *ch, *choices;
	char			 id[32];


	snprintf(id, sizeof id, "mock-%llu", ++seq);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object",
	    json_object_new_string("chat.completion"));
	json_object_object_add(o, "created", json_object_new_int64(time(NULL)));
	json_object_object_add(o, "model", json_object_new_string(c->model));
	ch = json_object_new_object();
	json_object_object_add(ch, "index", json_object_new_int(0));
	json_object_object_add(ch, "message", msg);
	json_object_object_add(ch, "finish_reason",
	    json_object_new_string(finish));
	choices = json_object_new_array();
	json_object_array_add(choices, ch);
	json_object_object_add(o, "choices", choices);
	json_object_object_add(o, "usage", usage_json(c->text.len, clen));
	usage_steer(c, json_object_object_get(o, "usage"));
	usage_cost(c, json_object_object_get(o, "usage"));
	return json_take(o);
}

static char *
text_body(const struct chat *c, const char *content)
{
	struct json_object	*m = json_object_new_object();

	json_object_object_add(m, "role", json_object_new_string("assistant"));
	json_object_object_add(m, "content", json_object_new_string(content));
	return completion_body(c, m, strlen(content), "stop");
}

static char *
tool_call_body(const struct chat *c, const char *name, const char *args)
{
	struct json_object	*m = json_object_new_object(), *calls, *call, *fn;

	fn = json_object_new_object();
	json_object_object_add(fn, "name", json_object_new_string(name));
	json_object_object_add(fn, "arguments", json_object_new_string(args));
	call = json_object_new_object();
	json_object_object_add(call, "id", json_object_new_string(
	    c->tool_msgs == 0 ? "call_0" : "call_n"));
	json_object_object_add(call, "type", json_object_new_string("function"));
	json_object_object_add(call, "function", fn);
	calls = json_object_new_array();
	json_object_array_add(calls, call);
	json_object_object_add(m, "role", json_object_new_string("assistant"));
	json_object_object_add(m, "content", NULL);
	json_object_object_add(m, "tool_calls", calls);
	return completion_body(c, m, strlen(args), "tool_calls");
}

/* ---- flaky: the first K identical requests fail ---- */

static void
flaky_free_key(struct lh_entry *e)
{
	free((void *)(uintptr_t)lh_entry_k(e));
}

static uint64_t
text_hash(const struct chat *c)
{
	uint64_t	h = 1469598103934665603ULL ^ (uint64_t)c->kind;

	for (size_t i = 0; i < c->text.len; i++)
		h = (h ^ (unsigned char)c->text.data[i]) * 1099511628211ULL;
	return h;
}

/* Counts one more request with this text in *t; returns how many came
 * before. */
static long
text_seen(struct lh_table **t, const struct chat *c)
{
	struct lh_entry	*e;
	char		 key[32];
	long		 n;

	snprintf(key, sizeof key, "%016llx", (unsigned long long)text_hash(c));
	if ((e = lh_table_lookup_entry(*t, key)) != NULL) {
		n = (long)(intptr_t)lh_entry_v(e);
		lh_entry_set_val(e, (void *)(intptr_t)(n + 1));
		return n;
	}
	if (lh_table_length(*t) >= MOCK_FLAKY_MAX) {
		lh_table_free(*t);
		*t = lh_kchar_table_new(256, flaky_free_key);
	}
	lh_table_insert(*t, xstrdup(key), (void *)(intptr_t)1);
	return 0;
}

static long
flaky_seen(const struct chat *c)
{
	return text_seen(&flaky, c);
}

/* ---- the three kinds of call ---- */

static int
planner_count(const struct chat *c)
{
	const char	*p = strstr(buf_cstr(&c->text), "exactly "), *k;
	int		 n = p ? atoi(p + 8) : 4;

	if ((k = chat_action(c, "count")) != NULL)
		n = atoi(k);
	return n < 0 || n > 1000 ? 4 : (n == 0 && !k ? 4 : n);
}

static char *
planner_body(struct chat *c)
{
	struct json_object	*qs;
	struct buf		 q;
	char			 an[16], *body;
	int			 n = planner_count(c);

	/* garbage-once: garbage until the planner has been asked again. */
	if (chat_action(c, "garbage") != NULL ||
	    (chat_action(c, "garbage-once") != NULL && c->assistant_msgs == 0))
		return text_body(c, "I think these are good questions: first, "
		    "what the topic is; second, why it matters.");
	qs = json_object_new_array();
	for (int i = 1; i <= n; i++) {
		buf_init(&q, 0);
		buf_printf(&q, "Sub-question %d: angle %d on the user's topic",
		    i, i);
		snprintf(an, sizeof an, "a%d", i);
		marks_emit(c, &q, "agent,synth,draft,all", an);
		json_object_array_add(qs, json_object_new_string(buf_cstr(&q)));
		buf_free(&q);
	}
	body = text_body(c, json_object_to_json_string_ext(qs,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(qs);
	return body;
}

/* The last user message, markers removed, cut to 40 bytes. */
static void
agent_topic(const struct chat *c, char *out, size_t outlen)
{
	const char	*u = "", *p;
	size_t		 n = 0;

	for (size_t i = 0; i < json_object_array_length(c->messages); i++) {
		struct json_object	*m = json_object_array_get_idx(
		    c->messages, i);

		if (strcmp(json_object_get_string(json_object_object_get(m,
		    "role")) ?: "", "user") == 0)
			u = json_object_get_string(json_object_object_get(m,
			    "content")) ?: "";
	}
	for (p = u; *p != '\0' && n < outlen - 1 && n < 40; p++) {
		if (p[0] == '[' && p[1] == '[' && strstr(p, "]]") != NULL) {
			p = strstr(p, "]]") + 1;
			continue;
		}
		out[n++] = *p;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

static void
agent_tool_results(const struct chat *c, struct buf *out)
{
	int	first = 1;

	for (size_t i = 0; i < json_object_array_length(c->messages); i++) {
		struct json_object	*m = json_object_array_get_idx(
		    c->messages, i);
		const char		*role = json_object_get_string(
		    json_object_object_get(m, "role"));

		if (role == NULL || strcmp(role, "tool") != 0)
			continue;
		buf_printf(out, "%s%s", first ? " tool results: " : " | ",
		    json_object_get_string(json_object_object_get(m,
		    "content")) ?: "");
		first = 0;
	}
}

/* The k-th applying tool:NAME:ARGS marker, split; -1 if there is none. */
static int
agent_tool_mark(const struct chat *c, int k, char *name, size_t namelen,
    const char **args)
{
	for (int i = 0; i < c->nmarks; i++) {
		const char	*a = c->marks[i].action, *colon;

		if (!mark_applies(c, &c->marks[i]) || strncmp(a, "tool:", 5))
			continue;
		if (k-- > 0)
			continue;
		colon = strchr(a + 5, ':');
		snprintf(name, namelen, "%.*s", colon ? (int)(colon - a - 5) :
		    (int)strlen(a + 5), a + 5);
		*args = colon ? colon + 1 : "{}";
		return 0;
	}
	return -1;
}

static char *
agent_body(struct chat *c)
{
	const char	*p = strstr(buf_cstr(&c->text), "Sub-question "), *args;
	char		 topic[64], name[64], *body;
	struct buf	 a;
	int		 ntools = 0;

	while (agent_tool_mark(c, ntools, name, sizeof name, &args) == 0)
		ntools++;
	if (c->tool_msgs < ntools) {
		agent_tool_mark(c, c->tool_msgs, name, sizeof name, &args);
		return tool_call_body(c, name, args);
	}
	agent_topic(c, topic, sizeof topic);
	buf_init(&a, 0);
	buf_printf(&a, "Answer %d: findings for %s", p ? atoi(p + 13) : 0, topic);
	agent_tool_results(c, &a);
	if (chat_action(c, "echo-model") != NULL)
		buf_printf(&a, " (model: %s)", c->model);
	marks_emit(c, &a, "synth,draft,all", NULL);
	if (chat_action(c, "complete") != NULL && c->tool_msgs == ntools) {
		struct json_object	*o = json_object_new_object();

		json_object_object_add(o, "task_summary",
		    json_object_new_string("done"));
		json_object_object_add(o, "completion_message",
		    json_object_new_string(buf_cstr(&a)));
		body = tool_call_body(c, "mark_task_complete", json_object_to_json_string(o));
		json_object_put(o);
	} else
		body = text_body(c, buf_cstr(&a));
	buf_free(&a);
	return body;
}

static char *
synth_body(struct chat *c)
{
	const char	*p = buf_cstr(&c->text);
	char		 text[96];
	struct buf	 order;
	char		*body;
	int		 n = 0;

	buf_init(&order, 0);
	while ((p = strstr(p, "Answer ")) != NULL) {
		p += 7;
		if (isdigit((unsigned char)*p))
			buf_printf(&order, "%s%d", n++ ? ", " : "", atoi(p));
	}
	snprintf(text, sizeof text, "Synthesized answer over %d responses.", n);
	if (chat_action(c, "echo-model") != NULL)
		snprintf(text + strlen(text), sizeof text - strlen(text),
		    " (model: %.40s)", c->model);
	if (strstr(buf_cstr(&c->text), "peer-review rank") != NULL) {
		buf_printf(&order, ".");
		body = xasprintf("%s Ranked order: %s", text, buf_cstr(&order));
	} else
		body = xstrdup(text);
	buf_free(&order);
	p = body;
	body = text_body(c, p);
	free((char *)p);
	return body;
}

/* A draft (heavyd's incremental strategy): which answers it saw. */
static char *
draft_body(struct chat *c)
{
	const char	*p = buf_cstr(&c->text);
	struct buf	 seen;
	char		*body;
	int		 n = 0;

	buf_init(&seen, 0);
	while ((p = strstr(p, "Answer ")) != NULL) {
		p += 7;
		if (isdigit((unsigned char)*p))
			buf_printf(&seen, "%s%d", n++ ? ", " : "", atoi(p));
	}
	buf_printf(&seen, ".");
	p = xasprintf("Draft synthesis over answers %s", buf_cstr(&seen));
	buf_free(&seen);
	body = text_body(c, p);
	free((char *)p);
	return body;
}

/* Whether an applying marker is exactly name:value. */
static int
chat_action_is(const struct chat *c, const char *name, const char *value)
{
	size_t	len = strlen(name);

	for (int i = 0; i < c->nmarks; i++) {
		const char	*a = c->marks[i].action;

		if (mark_applies(c, &c->marks[i]) && strncmp(a, name, len) == 0 &&
		    a[len] == ':' && strcmp(a + len + 1, value) == 0)
			return 1;
	}
	return 0;
}

/* One labelled response of a review request. */
struct shown {
	char	label;
	int	answer;		/* its "Answer N", or INT_MAX */
	int	preferred;
};

static int
shown_cmp(const void *a, const void *b)
{
	const struct shown	*x = a, *y = b;

	if (x->preferred != y->preferred)
		return y->preferred - x->preferred;
	if (x->answer != y->answer)
		return x->answer < y->answer ? -1 : 1;
	return x->label - y->label;
}

/* The responses shown, each with what the ranking goes by. */
static int
review_shown(const struct chat *c, struct shown *out, int max)
{
	const char	*p = buf_cstr(&c->text), *next, *a, *prefer;
	char		*section;
	int		 n = 0;

	prefer = chat_action(c, "prefer");
	while (n < max && (p = strstr(p, "=== Response ")) != NULL) {
		out[n].label = p[13];
		p += 14;
		if ((next = strstr(p, "=== Response ")) == NULL &&
		    (next = strstr(p, "Rank the responses")) == NULL)
			next = p + strlen(p);
		section = xstrndup(p, (size_t)(next - p));
		a = strstr(section, "Answer ");
		out[n].answer = a && isdigit((unsigned char)a[7]) ?
		    atoi(a + 7) : INT_MAX;
		out[n].preferred = prefer && *prefer &&
		    strstr(section, prefer) != NULL;
		free(section);
		n++;
	}
	return n;
}

static char *
review_body(struct chat *c)
{
	struct shown	 shown[32];
	struct buf	 r;
	char		*body;
	int		 n = review_shown(c, shown, 32);

	qsort(shown, (size_t)n, sizeof *shown, shown_cmp);
	if (chat_action(c, "invalid") != NULL ||
	    chat_action_is(c, "invalid-model", c->model) ||
	    (chat_action(c, "invalid-once") != NULL && c->assistant_msgs == 0))
		n--;	/* a label goes missing */
	buf_init(&r, 0);
	buf_addstr(&r, "My ranking, best first:\n```json\n[");
	for (int i = 0; i < n; i++)
		buf_printf(&r, "%s\"%c\"", i ? ", " : "", shown[i].label);
	buf_addstr(&r, "]\n```");
	body = text_body(c, buf_cstr(&r));
	buf_free(&r);
	return body;
}

/* ---- requests ---- */

/* Parses exactly len bytes: the body in the evbuffer has no NUL. */
static struct json_object *
json_parse(const char *p, size_t len)
{
	struct json_tokener	*tok = json_tokener_new();
	struct json_object	*o = NULL;

	if (len <= INT32_MAX)
		o = json_tokener_parse_ex(tok, p, (int)len);
	json_tokener_free(tok);
	return o;
}

/* Reads and checks the request; a reason when it is not one. */
static const char *
chat_parse(struct chat *c, struct evhttp_request *req)
{
	struct evbuffer		*in = evhttp_request_get_input_buffer(req);
	size_t			 len = evbuffer_get_length(in);
	struct json_object	*v, *tools;
	const char		*auth;

	auth = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0')
		return "401 No auth credentials found";
	c->token = auth + 7;
	c->root = json_parse(len ? (char *)evbuffer_pullup(in, len) : "", len);
	if (!json_object_is_type(c->root, json_type_object))
		return "400 body is not a JSON object";
	if (!json_object_object_get_ex(c->root, "model", &v) ||
	    !json_object_is_type(v, json_type_string))
		return "400 model (string) is required";
	c->model = json_object_get_string(v);
	if (!json_object_object_get_ex(c->root, "messages", &c->messages) ||
	    !json_object_is_type(c->messages, json_type_array) ||
	    json_object_array_length(c->messages) == 0)
		return "400 messages (non-empty array) is required";
	if (json_object_object_get_ex(c->root, "tools", &tools) &&
	    json_object_array_length(tools) == 0)
		return "400 tools must not be empty";
	c->kind = tools != NULL ? KIND_AGENT : KIND_SYNTH;
	return NULL;
}

static void
chat_text(struct chat *c)
{
	buf_init(&c->text, 0);
	for (size_t i = 0; i < json_object_array_length(c->messages); i++) {
		struct json_object	*m = json_object_array_get_idx(
		    c->messages, i), *v;
		const char		*role;

		if (json_object_object_get_ex(m, "content", &v) &&
		    json_object_is_type(v, json_type_string))
			buf_printf(&c->text, "%s\n", json_object_get_string(v));
		role = json_object_get_string(json_object_object_get(m, "role"));
		c->tool_msgs += role != NULL && strcmp(role, "tool") == 0;
		c->assistant_msgs += role != NULL &&
		    strcmp(role, "assistant") == 0;
	}
	if (c->kind == KIND_SYNTH &&
	    strstr(buf_cstr(&c->text), "Rank the responses"))
		c->kind = KIND_REVIEW;
	else if (c->kind == KIND_SYNTH &&
	    strstr(buf_cstr(&c->text), "have answered so far"))
		c->kind = KIND_DRAFT;
	else if (c->kind == KIND_SYNTH &&
	    strstr(buf_cstr(&c->text), "JSON array"))
		c->kind = KIND_PLANNER;
	marks_scan(c);
}

/* [[model-fail:CODE:NAME]], [[model-notools:NAME]]: 1 when one fails
 * this call's model (each marker names one model; any may apply). */
static int
chat_model_failure(struct chat *c, struct reply *r)
{
	const char	*a, *name;
	char		*msg;

	for (int i = 0; i < c->nmarks; i++) {
		a = c->marks[i].action;
		if (!mark_applies(c, &c->marks[i]))
			continue;
		if (strncmp(a, "model-notools:", 14) == 0 &&
		    strcmp(a + 14, c->model) == 0) {
			r->code = 400;
			r->body = error_body(400, "No endpoints found that "
			    "support tool use. To learn more about provider "
			    "routing, visit: https://openrouter.ai/docs/"
			    "provider-routing");
			return 1;
		}
		if (strncmp(a, "model-fail:", 11) != 0 ||
		    (name = strchr(a + 11, ':')) == NULL ||
		    strcmp(name + 1, c->model) != 0 ||
		    reply_failure(r, a + 11) == -1)
			continue;
		if (r->code == 404) {
			free(r->body);
			msg = xasprintf("No endpoints found for %s.", c->model);
			r->body = error_body(404, msg);
			free(msg);
		}
		return 1;
	}
	return 0;
}

/* Failure markers first: the caller's retry and error paths. */
static int
chat_failure(struct chat *c, struct reply *r)
{
	const char	*a;
	char		*end;
	long		 k, n;

	if (chat_model_failure(c, r))
		return 1;
	if (c->nth > 0 && (a = chat_action(c, "repeat-status")) != NULL)
		return reply_failure(r, a) == 0;
	if ((a = chat_action(c, "status")) != NULL)
		return reply_failure(r, a) == 0;
	if ((a = chat_action(c, "flaky")) != NULL) {
		k = strtol(a + strcspn(a, ":") + (a[strcspn(a, ":")] ? 1 : 0),
		    &end, 10);
		n = flaky_seen(c);
		return n < k && reply_failure(r, a) == 0;
	}
	r->code = 200;
	if (chat_action(c, "truncated") != NULL)
		r->body = xstrdup("{\"id\":\"mock\",\"choices\":[{\"message\":"
		    "{\"role\":\"assist");
	else if (chat_action(c, "malformed") != NULL)
		r->body = xstrdup("this is not json {");
	else if (chat_action(c, "sse") != NULL) {
		r->type = "text/event-stream";
		r->body = xstrdup("data: {\"choices\":[{\"delta\":{\"content\":"
		    "\"hi\"}}]}\n\ndata: [DONE]\n\n");
	} else if (chat_action(c, "echokey") != NULL) {
		/* As some providers do: the rejected key, verbatim. */
		char	*msg = xasprintf("Incorrect API key provided: %s",
		    c->token);

		r->code = 401;
		r->body = error_body(401, msg);
		free(msg);
	} else if (chat_action(c, "error200") != NULL)
		r->body = xstrdup("{\"error\":{\"message\":\"Provider returned "
		    "error\",\"code\":502}}");
	else if ((a = chat_action(c, "oversize")) != NULL) {
		size_t	 size = *a ? strtoul(a, NULL, 10) : 8388608;
		char	*x = xmalloc(size + 1);

		memset(x, 'x', size);
		x[size] = '\0';
		r->body = text_body(c, x);
		free(x);
	}
	return r->body != NULL;
}

/* What an agent request shows: the tools it offers, its new tool messages
 * (those after the last assistant message). */
static void
chat_record(struct chat *c)
{
	struct json_object	*tools, *m, *name, *n;
	size_t			 i, first;

	json_object_object_get_ex(c->root, "tools", &tools);
	for (i = 0; i < json_object_array_length(tools); i++) {
		name = json_object_object_get(json_object_object_get(
		    json_object_array_get_idx(tools, i), "function"), "name");
		if (!json_object_is_type(name, json_type_string))
			continue;
		n = json_object_object_get(offered, json_object_get_string(name));
		json_object_object_add(offered, json_object_get_string(name),
		    json_object_new_int64(json_object_get_int64(n) + 1));
	}
	for (first = json_object_array_length(c->messages); first > 0; first--) {
		m = json_object_array_get_idx(c->messages, first - 1);
		if (strcmp(json_object_get_string(json_object_object_get(m,
		    "role")) ?: "", "tool") != 0)
			break;
	}
	for (i = first; i < json_object_array_length(c->messages); i++) {
		m = json_object_array_get_idx(c->messages, i);
		if (json_object_array_length(tool_msgs) >= MOCK_MAX_TOOL_MSGS)
			json_object_array_del_idx(tool_msgs, 0, 1);
		json_object_array_add(tool_msgs, json_object_get(
		    json_object_object_get(m, "content")));
	}
}

/* A synthesis's or draft's prompt, for tests of what it was told. */
static void
prompt_record(const struct chat *c)
{
	struct json_object	*o = json_object_new_object();

	if (json_object_array_length(synth_prompts) >= MOCK_MAX_PROMPTS)
		json_object_array_del_idx(synth_prompts, 0, 1);
	json_object_object_add(o, "kind", json_object_new_string(
	    kind_names[c->kind]));
	json_object_object_add(o, "text", json_object_new_string(
	    buf_cstr(&c->text)));
	json_object_array_add(synth_prompts, o);
}

static void
chat_respond(struct chat *c, struct reply *r)
{
	if (c->kind == KIND_AGENT)
		chat_record(c);
	if (c->kind == KIND_SYNTH || c->kind == KIND_DRAFT)
		prompt_record(c);
	stats.draft += c->kind == KIND_DRAFT;
	stats.planner += c->kind == KIND_PLANNER;
	stats.agent += c->kind == KIND_AGENT;
	stats.synthesis += c->kind == KIND_SYNTH;
	stats.review += c->kind == KIND_REVIEW;
	if (chat_failure(c, r))
		return;
	r->code = 200;
	r->body = c->kind == KIND_PLANNER ? planner_body(c) :
	    c->kind == KIND_AGENT ? agent_body(c) :
	    c->kind == KIND_REVIEW ? review_body(c) :
	    c->kind == KIND_DRAFT ? draft_body(c) : synth_body(c);
}

/* One more request of this kind for this model. */
static void
models_count(const struct chat *c)
{
	struct json_object	*kind, *n;

	if (!json_object_object_get_ex(models, kind_names[c->kind], &kind)) {
		kind = json_object_new_object();
		json_object_object_add(models, kind_names[c->kind], kind);
	}
	n = json_object_object_get(kind, c->model);
	json_object_object_add(kind, c->model, json_object_new_int64(
	    (n ? json_object_get_int64(n) : 0) + 1));
}

/* A held reply's client went away: forget it. */
static void
held_conn_closed(struct evhttp_connection *conn, void *arg)
{
	struct reply	*r = arg;

	(void)conn;
	stats.cancelled++;
	for (size_t i = 0; i < nheld; i++)
		if (held[i] == r) {
			held[i] = held[--nheld];
			break;
		}
	reply_free(r);
}

static void
hold(struct reply *r, int latency, const char *gate)
{
	snprintf(r->gate, sizeof r->gate, "%s", gate);
	if (nheld == held_cap) {
		held_cap = held_cap ? 2 * held_cap : 16;
		held = xrealloc(held, held_cap * sizeof *held);
	}
	r->latency = latency;
	r->conn = evhttp_request_get_connection(r->req);
	evhttp_connection_set_closecb(r->conn, held_conn_closed, r);
	held[nheld++] = r;
	reply_watch(r);
}

/* POST /open: every held reply goes; gated calls no longer wait.  POST
 * /release: the held replies go, and the gate stays shut for later ones.
 * POST /open/NAME: only gate NAME's replies go, and it stays open. */
static void
gate_release(bool open, const char *name)
{
	struct reply	*r;

	if (name != NULL)
		json_object_object_add(gates_open, name,
		    json_object_new_boolean(1));
	else
		gate_open = open;
	for (size_t i = nheld; i > 0; i--) {
		r = held[i - 1];
		if (name != NULL && strcmp(r->gate, name) != 0)
			continue;
		held[i - 1] = held[--nheld];
		evhttp_connection_set_closecb(r->conn, NULL, NULL);
		if (r->watch != NULL) {
			event_free(r->watch);
			r->watch = NULL;
		}
		reply_finish(r, r->latency);
	}
}

/* [[gate]] or [[gate:NAME]], not yet opened: the reply waits. */
static bool
gate_holds(const struct chat *c)
{
	const char	*name = chat_action(c, "gate");

	return name != NULL && !gate_open &&
	    (*name == '\0' || !json_object_object_get_ex(gates_open, name,
	    NULL));
}

/* How many replies each gate holds now. */
static struct json_object *
held_gates(void)
{
	struct json_object	*o = json_object_new_object(), *n;

	for (size_t i = 0; i < nheld; i++) {
		n = json_object_object_get(o, held[i]->gate);
		json_object_object_add(o, held[i]->gate, json_object_new_int64(
		    (n ? json_object_get_int64(n) : 0) + 1));
	}
	return o;
}

/* ---- heavy-tailed latency ---- */

#define LN_CAP_MS	600000

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* "MEDIAN:SIGMA" in ms; -1 when it is not that. */
static int
lognormal_parse(const char *v, double *median, double *sigma)
{
	char	*end;

	*median = strtod(v, &end);
	if (end == v || *end != ':' || !(*median >= 0))
		return -1;
	*sigma = strtod(end + 1, &end);
	if (*end != '\0' || !(*sigma >= 0) || *sigma > 10)
		return -1;
	return 0;
}

/* What identifies a call across runs: its kind and every message's text
 * (heavyd's prompts hold no task id, and the mock's answers no counter). */
static uint64_t
chat_key(const struct chat *c)
{
	uint64_t	 h = 1469598103934665603ULL ^ ln_seed;

	for (const char *p = buf_cstr(&c->text); *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (h ^ (uint64_t)c->kind) * 1099511628211ULL;
}

/* A lognormal latency (Box-Muller from two uniforms of the call's key and
 * of how many times it came before), or -1 when neither -L nor a
 * [[lognormal]] marker asks for one. */
static int
lognormal_draw(const struct chat *c, long nth)
{
	double		 median = ln_median, sigma = ln_sigma, u1, u2, z, ms;
	const char	*v = chat_action(c, "lognormal");
	uint64_t	 x = chat_key(c) ^ ((uint64_t)nth * 0xd6e8feb86659fd93ULL);

	if (v != NULL && lognormal_parse(v, &median, &sigma) == -1)
		return -1;
	if (v == NULL && median == 0)
		return -1;
	u1 = ((double)(splitmix64(&x) >> 11) + 1) / 9007199254740993.0;
	u2 = (double)(splitmix64(&x) >> 11) / 9007199254740992.0;
	z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
	ms = median * exp(sigma * z);
	return ms > LN_CAP_MS ? LN_CAP_MS : (int)(ms + 0.5);
}

static int64_t
mono_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -r: whether this call is over the budget; if so r is its 429, with a
 * Retry-After for when the oldest call leaves the window. */
static bool
rate_limited(struct reply *r)
{
	int64_t	now = mono_ms(), wait;

	if (rl_max == 0)
		return false;
	if (rl_n == rl_max && rl_at[rl_head] + rl_window_ms > now) {
		wait = rl_at[rl_head] + rl_window_ms - now;
		snprintf(r->retry_after, sizeof r->retry_after, "%lld",
		    (long long)((wait + 999) / 1000));
		r->code = 429;
		r->body = error_body(429, "Rate limit exceeded (mockllm -r)");
		stats.limited++;
		return true;
	}
	rl_at[rl_head] = now;
	rl_head = (rl_head + 1) % rl_max;
	if (rl_n < rl_max)
		rl_n++;
	return false;
}

/* ratelimit:N:DURATION: OpenAI's remaining-budget headers on the reply. */
static void
ratelimit_headers(const struct chat *c, struct reply *r)
{
	const char	*a = chat_action(c, "ratelimit");
	size_t		 n;

	if (a == NULL)
		return;
	n = strcspn(a, ":");
	snprintf(r->remaining, sizeof r->remaining, "%.*s", (int)n, a);
	if (a[n] == ':')
		snprintf(r->reset_requests, sizeof r->reset_requests, "%s",
		    a + n + 1);
}

/* The order calls came in, for tests of the governor's fairness. */
static void
arrival_note(const struct chat *c)
{
	const char	*tag = chat_action(c, "tag");
	char		*s = xasprintf("%s%s%s", kind_names[c->kind],
	    tag != NULL ? ":" : "", tag != NULL ? tag : "");

	json_object_array_add(arrivals, json_object_new_string(s));
	free(s);
}

static void
handle_chat(struct evhttp_request *req)
{
	struct chat	 c;
	struct reply	*r = xcalloc(1, sizeof *r);
	const char	*bad, *lat;
	int		 latency = default_latency;
	long		 nth;

	memset(&c, 0, sizeof c);
	r->req = req;
	r->drawn = -1;
	stats.requests++;
	if ((bad = chat_parse(&c, req)) != NULL) {
		r->code = atoi(bad);
		r->body = error_body(r->code, bad + 4);
	} else if (rate_limited(r)) {
		latency = 0;
	} else {
		chat_text(&c);
		arrival_note(&c);
		models_count(&c);
		nth = c.nth = text_seen(&repeats, &c);
		if ((lat = chat_action(&c, "latency")) != NULL)
			latency = atoi(lat);
		else if ((lat = chat_action(&c, "first-latency")) != NULL &&
		    nth == 0)
			latency = atoi(lat);
		else if ((r->drawn = lognormal_draw(&c, nth)) >= 0)
			latency = r->drawn;
		/* stall-once: the first call of this text never answers. */
		if (chat_action(&c, "hang") != NULL ||
		    chat_action_is(&c, "hang-model", c.model) ||
		    (chat_action(&c, "stall-once") != NULL &&
		    flaky_seen(&c) == 0)) {
			stats.hangs++;	/* evhttp frees it when the client goes */
			free(r);
			r = NULL;
		} else {
			chat_respond(&c, r);
			ratelimit_headers(&c, r);
			if (gate_holds(&c)) {
				hold(r, latency, chat_action(&c, "gate"));
				r = NULL;
			}
		}
	}
	if (r != NULL)
		reply_finish(r, latency);
	json_object_put(c.root);
	buf_free(&c.text);
}

static void
handle_stats(struct evhttp_request *req)
{
	struct reply		*r = xcalloc(1, sizeof *r);
	struct json_object	*o = json_object_new_object();
	const struct { const char *name; long long v; } n[] = {
		{ "requests", stats.requests }, { "planner", stats.planner },
		{ "agent", stats.agent }, { "synthesis", stats.synthesis },
		{ "errors", stats.errors }, { "hangs", stats.hangs },
		{ "searches", stats.searches }, { "pages", stats.pages },
		{ "search_auth", stats.search_auth }, { "review", stats.review },
		{ "held", (long long)nheld }, { "limited", stats.limited },
		{ "draft", stats.draft },
		{ "cancelled", stats.cancelled },
	};

	for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
		json_object_object_add(o, n[i].name,
		    json_object_new_int64(n[i].v));
	mocktls_stats(o);
	json_object_object_add(o, "offered", json_object_get(offered));
	json_object_object_add(o, "tool_messages", json_object_get(tool_msgs));
	json_object_object_add(o, "brave_token",
	    json_object_new_string(brave_token));
	json_object_object_add(o, "models", json_object_get(models));
	json_object_object_add(o, "arrivals", json_object_get(arrivals));
	json_object_object_add(o, "held_gates", held_gates());
	json_object_object_add(o, "synthesis_prompts",
	    json_object_get(synth_prompts));
	r->req = req;
	r->code = 200;
	r->body = json_take(o);
	reply_finish(r, 0);
}

/* ---- a search backend and the pages its results point to ---- */

static void
send_body(struct evhttp_request *req, int code, const char *type,
    const char *body, size_t len)
{
	struct evbuffer	*out = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", type);
	evbuffer_add(out, body, len);
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
	evbuffer_free(out);
}

/* The value of one query parameter, decoded; NULL if absent. */
static char *
query_param(struct evhttp_request *req, const char *name)
{
	struct evkeyvalq	 q;
	const char		*v, *query = evhttp_uri_get_query(
	    evhttp_request_get_evhttp_uri(req));
	char			*out = NULL;

	if (query == NULL || evhttp_parse_query_str(query, &q) == -1)
		return NULL;
	if ((v = evhttp_find_header(&q, name)) != NULL)
		out = xstrdup(v);
	evhttp_clear_headers(&q);
	return out;
}

/* One search result per path: "paths=/a,/b" in q, else three pages. */
static struct json_object *
search_results(struct evhttp_request *req, const char *q, const char *snip)
{
	struct json_object	*list = json_object_new_array(), *r;
	const char		*host = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Host");
	const char		*paths = strstr(q, "paths="), *p;
	char			 path[256], *url;
	size_t			 len;
	int			 k = 0;

	p = paths ? paths + 6 : "/page/1,/page/2,/page/3";
	for (; *p != '\0' && *p != ' ' && k < 32; p += len + (p[len] == ',')) {
		len = strcspn(p, ", ");
		snprintf(path, sizeof path, "%.*s", (int)len, p);
		url = xasprintf("http://%s%s", host ? host : "127.0.0.1", path);
		r = json_object_new_object();
		json_object_object_add(r, "title", json_object_new_string(path));
		json_object_object_add(r, "url", json_object_new_string(url));
		json_object_object_add(r, snip, json_object_new_string(
		    "A <strong>snippet</strong> about the query &amp; more"));
		json_object_array_add(list, r);
		free(url);
		k++;
	}
	return list;
}

static void
search_auth_seen(struct evhttp_request *req)
{
	if (evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization") != NULL)
		stats.search_auth++;
}

static void
handle_search(struct evhttp_request *req, bool brave)
{
	struct json_object	*o = json_object_new_object(), *web;
	const char		*tok = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "X-Subscription-Token");
	char			*q = query_param(req, "q"), *fmt, *body;

	stats.searches++;
	search_auth_seen(req);
	fmt = query_param(req, "format");
	if (brave && tok != NULL)
		snprintf(brave_token, sizeof brave_token, "%s", tok);
	if (q == NULL || (brave ? tok == NULL :
	    fmt == NULL || strcmp(fmt, "json") != 0)) {
		body = error_body(brave ? 401 : 400, brave ? "missing token" :
		    "q and format=json are required");
		send_body(req, brave ? 401 : 400, "application/json", body,
		    strlen(body));
	} else {
		json_object_object_add(o, "query", json_object_new_string(q));
		if (brave) {
			web = json_object_new_object();
			json_object_object_add(web, "results",
			    search_results(req, q, "description"));
			json_object_object_add(o, "web", web);
		} else
			json_object_object_add(o, "results",
			    search_results(req, q, "content"));
		body = json_take(json_object_get(o));
		send_body(req, 200, "application/json", body, strlen(body));
	}
	json_object_put(o);
	free(body);
	free(fmt);
	free(q);
}

static void
handle_page(struct evhttp_request *req, const char *path)
{
	char	*body;
	int	 k;

	stats.pages++;
	search_auth_seen(req);
	if (strncmp(path, "/redirect/", 10) == 0) {
		k = atoi(path + 10);
		body = k > 0 ? xasprintf("/redirect/%d", k - 1) :
		    xstrdup("/page/1");
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Location", body);
		evhttp_send_reply(req, 302, "Found", NULL);
	} else if (strcmp(path, "/big") == 0) {
		body = xmalloc(2 << 20);
		memset(body, 'x', 2 << 20);
		send_body(req, 200, "text/html", body, 2 << 20);
	} else if (strcmp(path, "/binary") == 0) {
		body = xstrdup("%PDF-1.4\n\x01\x02\x03");
		send_body(req, 200, "application/pdf", body, strlen(body));
	} else {
		body = xasprintf("<!DOCTYPE html><html><head><title>Page %d"
		    "</title><style>.hidden { color: red }</style><script>var "
		    "secret = \"SCRIPT-TEXT\";</script></head><body><h1>Page "
		    "%d</h1>\n<p>Body   text\tof  <b>page</b>\n\n%d &amp; "
		    "more.</p><noscript>NOSCRIPT-TEXT</noscript><p>Caf&eacute; "
		    "cr\xc3\xa8me</p></body></html>", atoi(path + 6),
		    atoi(path + 6), atoi(path + 6));
		send_body(req, 200, "text/html; charset=utf-8", body,
		    strlen(body));
	}
	free(body);
}

static void
handle(struct evhttp_request *req, void *arg)
{
	const char	*path = evhttp_request_get_uri(req);
	size_t		 len = strlen(path);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	(void)arg;
	if (cmd == EVHTTP_REQ_POST && len >= 17 &&
	    strcmp(path + len - 17, "/chat/completions") == 0)
		handle_chat(req);
	else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/stats") == 0)
		handle_stats(req);
	else if (cmd == EVHTTP_REQ_GET && strncmp(path, "/search?", 8) == 0)
		handle_search(req, false);
	else if (cmd == EVHTTP_REQ_GET &&
	    strncmp(path, "/brave/search?", 14) == 0)
		handle_search(req, true);
	else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/hang") == 0)
		stats.pages++;	/* never answered; evhttp frees it on close */
	else if (cmd == EVHTTP_REQ_GET && (strncmp(path, "/page/", 6) == 0 ||
	    strncmp(path, "/redirect/", 10) == 0 || strcmp(path, "/big") == 0 ||
	    strcmp(path, "/binary") == 0))
		handle_page(req, evhttp_uri_get_path(
		    evhttp_request_get_evhttp_uri(req)));
	else if (cmd == EVHTTP_REQ_POST && (strcmp(path, "/open") == 0 ||
	    strcmp(path, "/release") == 0)) {
		gate_release(strcmp(path, "/open") == 0, NULL);
		evhttp_send_reply(req, 200, "OK", NULL);
	} else if (cmd == EVHTTP_REQ_POST && strncmp(path, "/open/", 6) == 0 &&
	    path[6] != '\0' && strlen(path + 6) < 32) {
		gate_release(true, path + 6);
		evhttp_send_reply(req, 200, "OK", NULL);
	} else if (cmd == EVHTTP_REQ_POST && strcmp(path, "/reset") == 0) {
		gate_open = false;
		memset(&stats, 0, sizeof stats);
		mocktls_reset();
		json_object_put(models);
		models = json_object_new_object();
		json_object_put(arrivals);
		arrivals = json_object_new_array();
		json_object_put(gates_open);
		gates_open = json_object_new_object();
		json_object_put(synth_prompts);
		synth_prompts = json_object_new_array();
		rl_n = rl_head = 0;
		json_object_put(offered);
		json_object_put(tool_msgs);
		offered = json_object_new_object();
		tool_msgs = json_object_new_array();
		brave_token[0] = '\0';
		lh_table_free(flaky);
		flaky = lh_kchar_table_new(256, flaky_free_key);
		lh_table_free(repeats);
		repeats = lh_kchar_table_new(256, flaky_free_key);
		evhttp_send_reply(req, 200, "OK", NULL);
	} else
		evhttp_send_error(req, 404, "Not Found");
}

static void
mock_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	(void)sig; (void)events; (void)arg;
	event_base_loopbreak(base);
}

static void
write_port_file(const char *path, int port)
{
	char	*tmp = xasprintf("%s.tmp", path);
	FILE	*f = fopen(tmp, "w");

	if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) == -1)
		fatal("port file %s", path);
	free(tmp);
}

static const struct option long_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static void
rate_parse(const char *s)
{
	char	*end;

	rl_max = (int)strtol(s, &end, 10);
	if (*end == ':')
		rl_window_ms = (int)strtol(end + 1, &end, 10);
	if (*end != '\0' || rl_max < 1 || rl_max > 1000000 ||
	    rl_window_ms < 1)
		fatalx("-r: expected N[:WINDOW_MS]");
	rl_at = xcalloc((size_t)rl_max, sizeof *rl_at);
}

static void __attribute__((noreturn))
usage(FILE *f, int status)
{
	fputs(
"usage: mockllm [-p port] [-f portfile] [-l latency_ms]\n"
"               [-L median_ms:sigma] [-S seed] [-r n[:window_ms]]\n"
"               [-t certfile]\n"
"       mockllm -h | --help\n"
"An OpenAI-compatible chat-completions mock for tests, the demo and\n"
"benchmarks, bound to 127.0.0.1 only. Point heavyd at it with\n"
"HEAVY_BASE_URL=http://127.0.0.1:PORT/v1 (any API key will do).\n"
"\n"
"  -p port        listen on this port (default 0: the kernel picks one;\n"
"                 the port is logged on stderr)\n"
"  -f portfile    write the port to this file once listening\n"
"  -l latency_ms  answer each chat call after this many ms (default 0)\n"
"  -L median_ms:sigma\n"
"                 heavy-tailed: a lognormal latency for each chat call\n"
"                 (also MOCKLLM_LOGNORMAL); the reply's X-Mock-Latency-Ms\n"
"                 says what was drawn\n"
"  -S seed        the draws' seed (also MOCKLLM_SEED; default 1): one seed\n"
"                 and one call always give one latency\n"
"  -r n[:window_ms]\n"
"                 a rate limit: n chat calls a window (sliding; default\n"
"                 60000 ms), and a 429 with Retry-After beyond it\n"
"  -t certfile    serve HTTPS: a self-signed certificate for 127.0.0.1\n"
"                 and localhost, made now and written to certfile (PEM)\n"
"                 for clients to trust (HEAVY_CA_FILE); no TLS session\n"
"                 resumption, so /stats' \"connections\" are handshakes\n"
"  -h, --help     print this and exit\n"
"\n"
"Markers in a query steer it: [[scope:action]], or [[action]] for every\n"
"step. Scopes: planner, agent, aN (agent N only), synth, draft, review,\n"
"all.\n"
"  gate, gate:NAME        hold the reply until POST /open (or /open/NAME)\n"
"  latency:MS             answer after MS ms instead of -l\n"
"  lognormal:MEDIAN:SIGMA a lognormal latency instead of -l or -L (a\n"
"                         repeat of a request draws again)\n"
"  first-latency:MS       only the first identical request waits MS ms\n"
"  repeat-status:CODE     the repeats of an identical request get CODE\n"
"  hang, hang-model:M     never answer (only for model M)\n"
"  stall-once             the first identical request never answers\n"
"  status:CODE[:retry-after=S][:reset=MS]\n"
"                         answer with HTTP error CODE (400-599)\n"
"  flaky:CODE:K           the first K identical requests get CODE\n"
"  model-fail:CODE:M      every call to model M gets CODE (404: no endpoints)\n"
"  model-notools:M        calls to model M get a 400 \"No endpoints found that\n"
"                         support tool use\"\n"
"  truncated, malformed, error200, oversize[:BYTES]\n"
"                         a cut body, non-JSON, an error in a 200, a huge answer\n"
"  sse                    an SSE stream (text/event-stream) instead of JSON\n"
"  echokey                a 401 whose message repeats the API key\n"
"  count:N                the planner writes N sub-questions\n"
"  garbage, garbage-once  the planner answers prose (once: until re-asked)\n"
"  tool:NAME:ARGS         an agent calls tool NAME with JSON ARGS first\n"
"  complete               an agent answers through mark_task_complete\n"
"  echo-model             an answer names the model it was asked with\n"
"  usage:N                a call reports N tokens\n"
"  tag:NAME               /stats' arrivals name the call kind:NAME\n"
"  ratelimit:N:DURATION   x-ratelimit-remaining-requests: N and\n"
"                         x-ratelimit-reset-requests: DURATION (\"1m30s\")\n"
"  review:prefer:WORD     reviewers rank answers holding WORD first\n"
"  review:invalid, review:invalid-once, review:invalid-model:M\n"
"                         reviewers reply with an invalid ranking\n"
"\n"
"It also serves: POST .../chat/completions; GET /stats, POST /reset;\n"
"POST /open (the gate opens) and /release (the held calls go, the gate\n"
"stays shut); POST /open/NAME (gate NAME opens);\n"
"search backends GET /search?q=..&format=json (SearXNG) and\n"
"GET /brave/search?q=.. (Brave); pages /page/N, /redirect/K, /big,\n"
"/binary and /hang.\n", f);
	exit(status);
}

int
main(int argc, char **argv)
{
	struct evhttp			*http;
	struct evhttp_bound_socket	*sock;
	struct event			*sigterm, *sigint;
	struct event_config		*ec;
	const char			*portfile = NULL, *certfile = NULL, *v;
	int				 ch, port = 0;
	struct sockaddr_storage		 ss;
	socklen_t			 sslen = sizeof ss;

	log_init("mockllm", LOG_LVL_INFO);
	if ((v = getenv("MOCKLLM_LOGNORMAL")) != NULL && *v != '\0' &&
	    lognormal_parse(v, &ln_median, &ln_sigma) == -1)
		fatalx("MOCKLLM_LOGNORMAL: expected MEDIAN_MS:SIGMA");
	if ((v = getenv("MOCKLLM_SEED")) != NULL && *v != '\0')
		ln_seed = strtoull(v, NULL, 10);
	while ((ch = getopt_long(argc, argv, "p:f:l:L:S:r:t:h", long_opts,
	    NULL)) != -1) {
		if (ch == 'p')
			port = atoi(optarg);
		else if (ch == 'f')
			portfile = optarg;
		else if (ch == 'l')
			default_latency = atoi(optarg);
		else if (ch == 'L') {
			if (lognormal_parse(optarg, &ln_median, &ln_sigma) == -1)
				fatalx("-L: expected MEDIAN_MS:SIGMA");
		} else if (ch == 'S')
			ln_seed = strtoull(optarg, NULL, 10);
		else if (ch == 'r')
			rate_parse(optarg);
		else if (ch == 't')
			certfile = optarg;
		else if (ch == 'h')
			usage(stdout, 0);
		else
			usage(stderr, 2);
	}
	if (optind < argc) {
		fprintf(stderr, "mockllm: unexpected argument: %s\n",
		    argv[optind]);
		usage(stderr, 2);
	}
	signal(SIGPIPE, SIG_IGN);
	/* A precise timer, so latency:100 means 100 ms and not up to 101. */
	ec = event_config_new();
	event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	flaky = lh_kchar_table_new(256, flaky_free_key);
	repeats = lh_kchar_table_new(256, flaky_free_key);
	models = json_object_new_object();
	arrivals = json_object_new_array();
	gates_open = json_object_new_object();
	synth_prompts = json_object_new_array();
	offered = json_object_new_object();
	tool_msgs = json_object_new_array();
	http = evhttp_new(base);
	evhttp_set_max_body_size(http, MOCK_MAX_BODY);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(http, handle, NULL);
	mocktls_init(http, certfile);	/* before the port file: both ready */
	if ((sock = evhttp_bind_socket_with_handle(http, "127.0.0.1",
	    (ev_uint16_t)port)) == NULL)
		fatalx("cannot bind 127.0.0.1:%d", port);
	getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss,
	    &sslen);
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (portfile != NULL)
		write_port_file(portfile, port);
	log_info("listening on 127.0.0.1:%d", port);
	sigterm = evsignal_new(base, SIGTERM, mock_signal_cb, NULL);
	sigint = evsignal_new(base, SIGINT, mock_signal_cb, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	event_base_dispatch(base);
	event_free(sigterm);
	event_free(sigint);
	evhttp_free(http);
	mocktls_free();
	lh_table_free(flaky);
	lh_table_free(repeats);
	json_object_put(models);
	json_object_put(arrivals);
	json_object_put(gates_open);
	json_object_put(synth_prompts);
	free(rl_at);
	json_object_put(offered);
	json_object_put(tool_msgs);
	event_base_free(base);
	return 0;
}

/*
 * The Streamable HTTP transport (MCP 2025-03-26, 2025-06-18, 2025-11-25)
 * on heavyd's own HTTP/1.1 server (h1.c): one endpoint (http.path,
 * "/mcp") where a POST carries one JSON-RPC message, a GET opens the
 * session's stream of server-initiated messages, and a DELETE ends the
 * session.
 *
 * A request's reply goes back as application/json when nothing else
 * comes first, or as an SSE stream when a notification of that request
 * (progress, a log line) does, or when it has been quiet for a keep-alive
 * interval (so that no proxy cuts a long orchestration).  Every SSE event
 * has an id, "<stream>-<seq>"; the last http.resume_events of a session
 * are kept, so that a client whose stream dropped can ask for the rest
 * with Last-Event-ID, and go on reading that stream where it left off.
 * A dropped stream is not a cancellation: the call runs on as a task.
 *
 * With identities (auth.c) every request to the endpoint is authenticated
 * once its path and Origin are let in: 401 or 429 otherwise (in OAuth
 * mode 403 for a scope missing, 503 without keys; its RFC 9728 metadata is
 * served without authentication).  Its identity
 * owns the sessions it makes; another identity naming one gets 404.
 *
 * h1.c bounds sizes and the time to read a request (http.max_header_bytes,
 * http.max_headers, max_line_bytes, http.request_timeout,
 * http.idle_timeout, http.max_open_connections), and sees a client hang
 * up while its request waits or its stream runs (its close callback); a
 * slow reader whose backlog passes http.max_output_bytes is disconnected.
 */
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <poll.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <json-c/linkhash.h>
#include <nettle/base64.h>

#include "supervisor.h"
#include "h1.h"
#include "metrics.h"

#define HTTP_RETRY_MS		2000	/* SSE retry: a reconnect's wait */
#define HTTP_BUSY_RETRY_S	"5"	/* Retry-After when at a bound */
#define RPC_SESSION_GONE	-32001	/* as the SDKs say it */
#define HTTP_FLUSH_MS		5000	/* to write out what is owed, at exit */
#define HTTP_FOREIGN_LOG_MS	10000	/* a foreign session is logged at most so often */

/* One event kept for Last-Event-ID: the stream and place it had. */
struct http_event {
	uint32_t		 stream;
	uint64_t		 seq;
	char			*data;		/* the SSE event, whole */
	size_t			 len;
	TAILQ_ENTRY(http_event)	 entry;
};

/* A TCP connection that has sent a request, and its request in wait. */
struct http_conn {
	struct h1_conn		*hc;
	struct http_stream	*stream;
	struct http_held	*held;
};

/*
 * A request held before it is let in: its token names a key the
 * authorization server's JWKS URL is being fetched for (auth.mode oauth).
 * It is routed again when the fetch ends; a copy of its Authorization
 * header (the request's own is wiped at once) is wiped when it goes.
 */
struct http_held {
	struct h1_req		*req;
	struct http_conn	*conn;
	char			*authorization;
};

/*
 * A response in progress: a POST's (related: its request's id key) or
 * the session's GET stream.  Once its connection drops mid-stream, a
 * POST's stream lives on without one (req NULL) until its reply, so that
 * what it would have carried is kept for Last-Event-ID.
 */
struct http_stream {
	struct http_session	*hs;
	struct h1_req		*req;		/* NULL: dropped, resumable */
	struct http_conn	*conn;
	struct event		*keepalive;
	char			*related;	/* NULL: the GET stream */
	uint32_t		 id;
	uint64_t		 seq;		/* its last event's */
	bool			 sse, accepts_sse, accepts_json;
	bool			 done;		/* its reply has been sent */
	TAILQ_ENTRY(http_stream) entry;
};

struct http_session {
	char			 id[SESSIONID_MAX];	/* Mcp-Session-Id */
	struct mcp_session	*s;
	bool			 stateless;	/* 2026-07-28: one request */
	bool			 cancelled;	/* ... whose stream closed */
	bool			 ending;
	TAILQ_HEAD(, http_stream) streams;
	int			 live;		/* streams with a connection */
	struct http_stream	*get;		/* the GET stream, if open */
	uint32_t		 next_stream;
	TAILQ_HEAD(, http_event) events;	/* kept for Last-Event-ID */
	int			 nevents;
	struct event		*idle;
};

static struct {
	const struct heavy_config *cfg;
	struct h1_server	*h1;
	struct lh_table		*sessions;	/* id -> struct http_session */
	struct lh_table		*conns;		/* h1_conn -> struct http_conn */
	int			 nsessions;
	int			 nsse;		/* SSE streams with a client */
	char			**unix_paths;	/* to unlink at exit */
	int			 nunix;
	bool			(*ready)(void);	/* for /readyz */
} http;

/* What table t holds under key, or NULL. */
static void *
http_lookup(struct lh_table *t, const void *key)
{
	void	*v;

	return lh_table_lookup_ex(t, key, &v) ? v : NULL;
}

static void	http_stream_free(struct http_stream *);
static void	http_stream_orphan(struct http_stream *);
static void	http_stream_arm(struct http_stream *);
static void	http_session_end(struct http_session *);
static void	http_held_free(struct http_held *);
static void	http_held_cb(void *);
static void	http_route(struct h1_req *, struct http_held *);

/* --- replies that are not MCP messages -------------------------------- */

/* An HTTP error with a JSON-RPC error body, under the request's id when
 * it has one (2026-07-28 wants it), as the SDKs send them. */
static void
http_fail_id(struct h1_req *req, int status, struct json_object *id,
    int code, const char *msg)
{
	struct json_object	*e = rpc_error(id, code, msg);
	const char		*reason, *body;

	reason = status == 400 ? "Bad Request" : status == 401 ?
	    "Unauthorized" : status == 403 ? "Forbidden" :
	    status == 404 ? "Not Found" : status == 405 ?
	    "Method Not Allowed" : status == 406 ? "Not Acceptable" :
	    status == 409 ? "Conflict" : status == 413 ? "Payload Too Large" :
	    status == 415 ? "Unsupported Media Type" : status == 429 ?
	    "Too Many Requests" : status == 503 ? "Service Unavailable" :
	    "Error";
	body = json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	h1_req_add_header(req, "Content-Type", "application/json");
	if ((status == 503 || status == 429) &&
	    !h1_req_has_out_header(req, "Retry-After"))
		h1_req_add_header(req, "Retry-After", HTTP_BUSY_RETRY_S);
	if (status == 405)
		h1_req_add_header(req, "Allow", "GET, POST, DELETE");
	h1_reply(req, status, reason, body, strlen(body));
	json_object_put(e);
}

static void
http_fail(struct h1_req *req, int status, int code, const char *msg)
{
	http_fail_id(req, status, NULL, code, msg);
}

static void
http_plain(struct h1_req *req, int status, const char *reason,
    const char *text)
{
	char	*body = xasprintf("%s\n", text);

	h1_req_add_header(req, "Content-Type", "text/plain; charset=utf-8");
	h1_reply(req, status, reason, body, strlen(body));
	free(body);
}

/* --- the request's headers -------------------------------------------- */

static const char *
http_header(struct h1_req *req, const char *name)
{
	return h1_req_header(req, name);
}

/* Whether Accept (a) lets in type ("text/event-stream"); none lets in all. */
static bool
http_accepts_in(const char *a, const char *type)
{
	char	major[32];

	if (a == NULL || strstr(a, "*/*") != NULL || strcasestr(a, type))
		return true;
	snprintf(major, sizeof major, "%.*s/*", (int)strcspn(type, "/"), type);
	return strcasestr(a, major) != NULL;
}

/*
 * The request being routed, with what is asked of its headers more than
 * once (a ping asked a dozen times).  Valid only inside http_route.
 */
struct http_view {
	struct h1_req	*req;
	const char		*version;	/* MCP-Protocol-Version */
	bool			 json, sse;	/* what Accept lets in */
};
static struct http_view	http_view;

static void
http_view_set(struct h1_req *req)
{
	const char	*a = http_header(req, "Accept");

	http_view.req = req;
	http_view.version = http_header(req, "MCP-Protocol-Version");
	http_view.json = http_accepts_in(a, "application/json");
	http_view.sse = http_accepts_in(a, "text/event-stream");
}

static bool
http_accepts(struct h1_req *req, const char *type)
{
	if (req == http_view.req && strcmp(type, "application/json") == 0)
		return http_view.json;
	if (req == http_view.req && strcmp(type, "text/event-stream") == 0)
		return http_view.sse;
	return http_accepts_in(http_header(req, "Accept"), type);
}

static const char *
http_version(struct h1_req *req)
{
	return req == http_view.req ? http_view.version :
	    http_header(req, "MCP-Protocol-Version");
}

/* An Origin of a loopback host on the port asked for, or a listed one. */
static bool
http_origin_ok(struct h1_req *req)
{
	const char	*o = http_header(req, "Origin"), *host;
	static const char *loops[] = { "http://127.0.0.1", "http://localhost",
	    "http://[::1]" };
	char		 want[300];

	if (o == NULL)
		return true;		/* not a browser's request */
	for (int i = 0; i < http.cfg->nhttp_origins; i++)
		if (strcmp(o, http.cfg->http_origins[i]) == 0)
			return true;
	if ((host = http_header(req, "Host")) == NULL)
		return false;
	for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
		if (strncmp(host, loops[i] + 7, strlen(loops[i]) - 7) != 0)
			continue;
		snprintf(want, sizeof want, "http://%s", host);
		if (strcmp(o, want) == 0)
			return true;
	}
	return false;
}

/* MCP-Protocol-Version: absent (2025-03-26), or one heavyd speaks. */
static bool
http_version_ok(struct h1_req *req)
{
	const char	*v = http_version(req), *chosen;

	return v == NULL || mcp_negotiate_version(v, &chosen) == 0 ||
	    strcmp(v, MODERN_VERSION) == 0;
}

/* A request of the stateless revision, by its header. */
static bool
http_is_modern(struct h1_req *req)
{
	const char	*v = http_version(req);

	return v != NULL && strcmp(v, MODERN_VERSION) == 0;
}

static bool
http_is_json(struct h1_req *req)
{
	const char	*t = http_header(req, "Content-Type");

	return t != NULL && strncasecmp(t, "application/json", 16) == 0 &&
	    (t[16] == '\0' || t[16] == ';' || t[16] == ' ');
}

/* --- connections ------------------------------------------------------ */

/*
 * The connection is going (the client hung up, a timeout, or we drop
 * it): a request of it that waits is let go of.
 */
static void
http_conn_closed(struct h1_conn *hc, void *arg)
{
	struct http_conn	*c = arg;
	struct http_stream	*st = c->stream;

	if (c->held != NULL) {
		if (http.h1 != NULL)	/* (not heavyd stopping) */
			log_info("http: a client hung up while its request "
			    "waited for the authorization server's keys");
		http_held_free(c->held);
		c->held = NULL;
	}
	if (st != NULL) {
		st->req = NULL;
		if (st->hs->stateless)
			st->hs->cancelled = !st->done;	/* 2026-07-28 */
		if (st->sse && !st->done && !st->hs->stateless)
			http_stream_orphan(st);	/* kept for Last-Event-ID */
		else
			http_stream_free(st);
	}
	lh_table_delete(http.conns, hc);
	free(c);
}

static struct http_conn *
http_conn_get(struct h1_req *req)
{
	struct h1_conn	*hc = h1_req_conn(req);
	struct http_conn *c;

	if ((c = http_lookup(http.conns, hc)) != NULL)
		return c;
	c = xcalloc(1, sizeof *c);
	c->hc = hc;
	lh_table_insert(http.conns, hc, c);
	h1_conn_set_closecb(hc, http_conn_closed, c);
	return c;
}

/* Drops the stream's connection, outside whatever called us. */
static void
http_stream_drop(struct http_stream *st)
{
	if (st->conn != NULL)
		h1_conn_drop(st->conn->hc);
}

/* --- streams ---------------------------------------------------------- */

static struct http_stream *
http_stream_find(struct http_session *hs, const char *related)
{
	struct http_stream	*st;

	TAILQ_FOREACH(st, &hs->streams, entry)
		if (st->related != NULL && strcmp(st->related, related) == 0)
			return st;
	return NULL;
}

/* A session with no stream open is ended after http.session_idle. */
static void
http_session_idle_arm(struct http_session *hs)
{
	struct timeval	tv = { http.cfg->http_session_idle_s, 0 };

	if (hs->live == 0)
		evtimer_add(hs->idle, &tv);
}

/* Its connection dropped mid-stream: what it would carry is kept. */
static void
http_stream_orphan(struct http_stream *st)
{
	metrics_sse_streams(--http.nsse);
	st->conn->stream = NULL;
	st->conn = NULL;
	if (st->keepalive != NULL)
		event_del(st->keepalive);
	st->hs->live--;
	http_session_idle_arm(st->hs);
}

static void
http_stream_free(struct http_stream *st)
{
	struct http_session	*hs = st->hs;

	if (st->conn != NULL) {
		st->conn->stream = NULL;
		hs->live--;
		if (st->sse)
			metrics_sse_streams(--http.nsse);
	}
	if (hs->get == st)
		hs->get = NULL;
	TAILQ_REMOVE(&hs->streams, st, entry);
	if (st->keepalive != NULL)
		event_free(st->keepalive);
	free(st->related);
	free(st);
	if (hs->stateless && !hs->ending)
		http_session_end(hs);	/* its one request is over */
	else
		http_session_idle_arm(hs);
}

/* The stream's reply is complete: its connection serves the next. */
static void
http_stream_end(struct http_stream *st)
{
	struct h1_req	*req = st->req;

	st->done = true;
	if (req != NULL) {
		st->req = NULL;
		h1_reply_end(req);
	}
	http_stream_free(st);
}

/* Keeps an event for Last-Event-ID, dropping the oldest past the bound. */
static void
http_keep(struct http_session *hs, struct http_stream *st, struct evbuffer *ev)
{
	struct http_event	*e;

	if (http.cfg->http_resume_events == 0)
		return;
	e = xcalloc(1, sizeof *e);
	e->stream = st->id;
	e->seq = st->seq;
	e->len = evbuffer_get_length(ev);
	e->data = xmalloc(e->len);
	evbuffer_copyout(ev, e->data, e->len);
	TAILQ_INSERT_TAIL(&hs->events, e, entry);
	if (++hs->nevents > http.cfg->http_resume_events) {
		e = TAILQ_FIRST(&hs->events);
		TAILQ_REMOVE(&hs->events, e, entry);
		free(e->data);
		free(e);
		hs->nevents--;
	}
}

/* Writes out, unless the reader is too far behind: then it is dropped. */
static void
http_stream_write(struct http_stream *st, struct evbuffer *buf)
{
	if (st->req == NULL)
		return;
	h1_reply_chunk(st->req, buf);
	if (h1_conn_backlog(st->conn->hc) > http.cfg->http_max_output_bytes) {
		log_warnx("http: a client reads too slowly (over %zu bytes "
		    "behind); dropping its stream",
		    http.cfg->http_max_output_bytes);
		http_stream_drop(st);
	}
}

/* One SSE event: "id: S-N", the message as its data, kept for resuming. */
static void
http_sse_event(struct http_stream *st, struct evbuffer *msg)
{
	struct evbuffer	*ev = evbuffer_new();

	st->seq++;
	if (!st->hs->stateless)	/* 2026-07-28 has no resumption */
		evbuffer_add_printf(ev, "id: %" PRIu32 "-%" PRIu64 "\n",
		    st->id, st->seq);
	evbuffer_add(ev, "data: ", 6);
	evbuffer_add_buffer(ev, msg);
	evbuffer_add(ev, "\n\n", 2);
	if (!st->hs->stateless)
		http_keep(st->hs, st, ev);
	http_stream_write(st, ev);
	evbuffer_free(ev);
}

/* The SSE headers, and (2025-11-25) an id with empty data at once. */
static void
http_sse_start(struct http_stream *st, bool prime)
{
	struct evbuffer		*ev = evbuffer_new();
	const char		*v = st->hs->s->version;

	st->sse = true;
	metrics_sse_streams(++http.nsse);
	h1_req_add_header(st->req, "Content-Type", "text/event-stream");
	h1_req_add_header(st->req, "Cache-Control", "no-cache, no-transform");
	h1_req_add_header(st->req, "X-Accel-Buffering", "no");
	h1_reply_start(st->req, 200, "OK");
	if (prime && v != NULL && strcmp(v, "2025-11-25") >= 0) {
		evbuffer_add_printf(ev, "id: %" PRIu32 "-%" PRIu64 "\nretry: "
		    "%d\ndata: \n\n", st->id, st->seq, HTTP_RETRY_MS);
		http_stream_write(st, ev);
	}
	evbuffer_free(ev);
	http_stream_arm(st);
}

/*
 * A quiet stream gets a comment every sse_keepalive seconds; a request
 * still waiting for its reply becomes a stream then, if it may.
 */
static void
http_keepalive_cb(evutil_socket_t fd, short events, void *arg)
{
	struct http_stream	*st = arg;
	struct evbuffer		*ev;
	struct timeval		 tv = { http.cfg->sse_keepalive_s, 0 };

	(void)fd; (void)events;
	if (st->req == NULL)
		return;
	if (!st->sse) {
		if (st->accepts_sse)
			http_sse_start(st, true);
		else
			event_add(st->keepalive, &tv);
		return;
	}
	ev = evbuffer_new();
	evbuffer_add_printf(ev, ": keep-alive\n\n");
	http_stream_write(st, ev);
	evbuffer_free(ev);
	event_add(st->keepalive, &tv);
}

static struct http_stream *
http_stream_new(struct http_session *hs, struct h1_req *req,
    const char *related)
{
	struct http_stream	*st = xcalloc(1, sizeof *st);

	st->hs = hs;
	st->req = req;
	st->conn = http_conn_get(req);
	st->conn->stream = st;
	st->related = related != NULL ? xstrdup(related) : NULL;
	st->id = ++hs->next_stream;
	st->accepts_sse = http_accepts(req, "text/event-stream");
	st->accepts_json = http_accepts(req, "application/json");
	TAILQ_INSERT_TAIL(&hs->streams, st, entry);
	hs->live++;
	evtimer_del(hs->idle);
	return st;
}

/*
 * A stream that waits: a quiet one gets its keep-alive (h1.c watches for
 * its client's hang-up).  A request answered at once (most are) never
 * needs it, so it is made only here.
 */
static void
http_stream_arm(struct http_stream *st)
{
	struct timeval		 tv = { http.cfg->sse_keepalive_s, 0 };

	if (st->conn == NULL)
		return;
	if (st->keepalive == NULL)
		st->keepalive = evtimer_new(ev_base, http_keepalive_cb, st);
	if (!evtimer_pending(st->keepalive, NULL))
		evtimer_add(st->keepalive, &tv);
}

/* After a dispatch: a request not answered at once is armed. */
static void
http_stream_pending(struct mcp_session *s, struct http_session *hs,
    const char *key)
{
	struct http_stream	*st;

	if (!s->closed && (st = http_stream_find(hs, key)) != NULL)
		http_stream_arm(st);
}

/* --- what the MCP layer sends ----------------------------------------- */

/*
 * The whole reply, as application/json: nothing came before it.  In
 * 2026-07-28 some errors have their own status: an unknown method 404, a
 * missing capability, a version or a header 400; in every era a rate
 * quota reached is 429 with Retry-After.
 */
static void
http_json_reply(struct http_stream *st, const struct mcp_out *out)
{
	int			 status = 200;
	const char		*reason = "OK";
	char			 retry[16];

	if (st->hs->stateless && out->error == RPC_METHOD_NOT_FOUND) {
		status = 404;
		reason = "Not Found";
	} else if (out->error == RPC_RATE_LIMITED) {	/* a rate quota */
		status = 429;
		reason = "Too Many Requests";
		snprintf(retry, sizeof retry, "%d", out->retry_after_s > 0 ?
		    out->retry_after_s : 1);
		h1_req_add_header(st->req, "Retry-After", retry);
	} else if (st->hs->stateless && (out->error == RPC_MISSING_CAPABILITY ||
	    out->error == RPC_UNSUPPORTED_VERSION ||
	    out->error == RPC_HEADER_MISMATCH)) {
		status = 400;
		reason = "Bad Request";
	}
	h1_req_add_header(st->req, "Content-Type", "application/json");
	st->done = true;
	h1_reply_buf(st->req, status, reason, out->msg);
	st->req = NULL;
	http_stream_free(st);
}

static void
http_send(void *arg, const struct mcp_out *out)
{
	struct http_session	*hs = arg;
	struct http_stream	*st;

	st = out->related != NULL ? http_stream_find(hs, out->related) :
	    hs->get;
	if (st == NULL)
		return;		/* no GET stream, or the client is gone */
	if (!st->sse && st->req != NULL) {
		if (out->final && st->accepts_json) {
			http_json_reply(st, out);
			return;
		}
		if (!st->accepts_sse)
			return;		/* it cannot have notifications */
		http_sse_start(st, true);
	}
	http_sse_event(st, out->msg);
	if (out->final)
		http_stream_end(st);
}

/* An orchestration started: its stream starts (it was held back, so that
 * a refusal could have its own status). */
static void
http_taken(void *arg, const char *related)
{
	struct http_session	*hs = arg;
	struct http_stream	*st;

	if (related != NULL && (st = http_stream_find(hs, related)) != NULL &&
	    !st->sse && st->req != NULL && st->accepts_sse)
		http_sse_start(st, true);
}

static const struct mcp_transport http_transport = { "http", http_send,
    http_taken };

/* --- sessions --------------------------------------------------------- */

static void
http_idle_cb(evutil_socket_t fd, short events, void *arg)
{
	struct http_session	*hs = arg;

	(void)fd; (void)events;
	if (hs->live > 0)
		return;
	log_info("http: session %.8s... unused for %d s; ended",
	    sessionid_brief(hs->id),
	    http.cfg->http_session_idle_s);
	http_session_end(hs);
}

static struct http_session *
http_session_new(const char *owner)
{
	struct http_session	*hs = xcalloc(1, sizeof *hs);

	sessionid_new(hs->id);
	TAILQ_INIT(&hs->streams);
	TAILQ_INIT(&hs->events);
	hs->idle = evtimer_new(ev_base, http_idle_cb, hs);
	hs->s = mcp_session_new(&http_transport, hs, owner, false);
	lh_table_insert(http.sessions, hs->id, hs);
	http.nsessions++;
	http_session_idle_arm(hs);
	return hs;
}

/*
 * DELETE, idle, or shutdown: its streams end (a request still waiting is
 * told the session is gone), its kept events go, and the MCP session is
 * closed; its tasks run on.
 */
static void
http_session_end(struct http_session *hs)
{
	struct http_stream	*st;
	struct http_event	*e;

	hs->ending = true;
	while ((st = TAILQ_FIRST(&hs->streams)) != NULL) {
		if (st->req != NULL && !st->sse) {
			http_fail(st->req, 404, RPC_SESSION_GONE,
			    "Session ended before the reply");
			st->req = NULL;
			http_stream_free(st);
		} else
			http_stream_end(st);
	}
	while ((e = TAILQ_FIRST(&hs->events)) != NULL) {
		TAILQ_REMOVE(&hs->events, e, entry);
		free(e->data);
		free(e);
	}
	if (!hs->stateless) {
		lh_table_delete(http.sessions, hs->id);
		http.nsessions--;
	}
	event_free(hs->idle);
	if (hs->cancelled)
		mcp_session_abort(hs->s);	/* its workers are killed */
	else
		mcp_session_close(hs->s);
	free(hs);
}

/*
 * A session another node made (its id's signature holds under the shared
 * key): still 404, so that the client starts a new session as the MCP
 * transport says, but the body and the log name the node, since the
 * balancer should have sent the client there.
 */
static void
http_session_foreign(struct h1_req *req, const char *node)
{
	static int64_t	 logged = -HTTP_FOREIGN_LOG_MS;
	char		 msg[256];

	snprintf(msg, sizeof msg, "Session not found: a session of node %s, "
	    "not this one (is the balancer's stickiness on Mcp-Session-Id "
	    "off?)", node);
	if (now_ms() - logged >= HTTP_FOREIGN_LOG_MS) {
		log_warnx("http: %s", msg);
		logged = now_ms();
	}
	http_fail(req, 404, RPC_SESSION_GONE, msg);
}

/*
 * The session a request names: 400 without one, 404 for an unknown one,
 * or one another identity made (it is not told the session exists).
 */
static struct http_session *
http_session_of(struct h1_req *req, const char *owner)
{
	const char		*sid = http_header(req, "Mcp-Session-Id");
	struct http_session	*hs = NULL;
	char			 node[SESSIONID_MAX];

	if (sid == NULL) {
		http_fail(req, 400, RPC_INVALID_REQUEST,
		    "Bad Request: Mcp-Session-Id header is required");
		return NULL;
	}
	switch (sessionid_check(sid, node, sizeof node)) {
	case SESSIONID_FOREIGN:
		http_session_foreign(req, node);
		return NULL;
	case SESSIONID_OURS:
		hs = http_lookup(http.sessions, sid);
		break;
	case SESSIONID_BAD:
		break;
	}
	if (hs == NULL || strcmp(hs->s->owner, owner) != 0) {
		http_fail(req, 404, RPC_SESSION_GONE, "Session not found");
		return NULL;
	}
	return hs;
}

/* --- POST, GET, DELETE ------------------------------------------------ */

/* initialize makes a session; it names it in Mcp-Session-Id. */
static struct http_session *
http_post_session(struct h1_req *req, const struct rpc_msg *m,
    const char *owner)
{
	struct http_session	*hs;

	if (m->kind != RPC_REQUEST || strcmp(m->method, "initialize") != 0)
		return http_session_of(req, owner);
	if (http_header(req, "Mcp-Session-Id") != NULL) {
		http_fail(req, 400, RPC_INVALID_REQUEST, "Bad Request: "
		    "initialize starts a session; send it without "
		    "Mcp-Session-Id");
		return NULL;
	}
	if (http.nsessions >= http.cfg->http_max_sessions) {
		http_fail(req, 503, RPC_INTERNAL_ERROR, "Service Unavailable: "
		    "too many sessions (http.max_sessions); retry later");
		return NULL;
	}
	hs = http_session_new(owner);
	h1_req_add_header(req, "Mcp-Session-Id", hs->id);
	return hs;
}

/* A tools/call of a tool that starts an orchestration (and may meet its
 * identity's quotas). */
static bool
http_starts_task(const struct rpc_msg *m)
{
	struct json_object	*name;
	const char		*n;

	if (strcmp(m->method, "tools/call") != 0 || m->params == NULL ||
	    !json_object_object_get_ex(m->params, "name", &name) ||
	    (n = json_object_get_string(name)) == NULL)
		return false;
	return strcmp(n, "heavy_orchestrate") == 0 ||
	    strcmp(n, "grok_heavy_orchestrate") == 0;
}

/* A request: its reply (and what comes before it) on its own stream. */
static void
http_post_request(struct h1_req *req, struct http_session *hs,
    struct rpc_msg *m)
{
	struct http_stream	*st;
	struct mcp_session	*s;
	char			*key = rpc_id_key(m->id);
	bool			 init = strcmp(m->method, "initialize") == 0;

	if (http_stream_find(hs, key) != NULL)
		http_fail(req, 409, RPC_INVALID_REQUEST, "Conflict: a request "
		    "with this id is in progress in this session");
	else if (hs->live >= http.cfg->http_max_streams)
		http_fail(req, 429, RPC_INTERNAL_ERROR, "Too Many Requests: "
		    "the session has http.max_streams streams open");
	else {
		st = http_stream_new(hs, req, key);
		/* A call may run for minutes: its stream starts at once (the
		 * client hears that it was taken, and a proxy sees bytes); an
		 * orchestration's once it has started (http_taken), so that
		 * a rate quota's refusal can still be a 429. */
		if (strcmp(m->method, "tools/call") == 0 && st->accepts_sse &&
		    !http_starts_task(m))
			http_sse_start(st, true);
		s = hs->s;
		mcp_session_ref(s);
		mcp_session_dispatch(s, m);
		if (init && !s->initialized)
			http_session_end(hs);	/* refused: no session */
		else
			http_stream_pending(s, hs, key);
		mcp_session_unref(s);
	}
	free(key);
}

/* Mcp-Name, decoded from its =?base64?...?= form when it has one. */
static char *
http_name_header(struct h1_req *req)
{
	const char			*v = http_header(req, "Mcp-Name");
	struct base64_decode_ctx	 ctx;
	size_t				 len, n;
	char				*out;

	if (v == NULL)
		return NULL;
	len = strlen(v);
	if (len < 11 || strncmp(v, "=?base64?", 9) != 0 ||
	    strcmp(v + len - 2, "?=") != 0)
		return xstrdup(v);
	out = xmalloc(BASE64_DECODE_LENGTH(len) + 1);
	base64_decode_init(&ctx);
	if (!base64_decode_update(&ctx, &n, (uint8_t *)out, len - 11,
	    v + 9) || !base64_decode_final(&ctx) || memchr(out, '\0', n)) {
		free(out);
		return xstrdup("");	/* matches no name */
	}
	out[n] = '\0';
	return out;
}

/*
 * The headers of a 2026-07-28 request against its body: MCP-Protocol-
 * Version, Mcp-Method always, Mcp-Name for a call, a read or a prompt.
 * NULL, or what does not match (for -32020).
 */
static const char *
http_modern_headers(struct h1_req *req, const struct rpc_msg *m)
{
	const char		*method = http_header(req, "Mcp-Method");
	struct json_object	*meta, *v;
	const char		*key = NULL;
	char			*name;
	bool			 ok;

	if (!http_is_modern(req))
		return "MCP-Protocol-Version must be " MODERN_VERSION;
	if (json_object_object_get_ex(m->params, "_meta", &meta) &&
	    json_object_object_get_ex(meta, "io.modelcontextprotocol/"
	    "protocolVersion", &v) && strcmp(json_object_get_string(v),
	    MODERN_VERSION) != 0)
		return "MCP-Protocol-Version does not match the body's";
	if (method == NULL || strcmp(method, m->method) != 0)
		return "Mcp-Method is missing or does not match the method";
	if (strcmp(m->method, "tools/call") == 0 ||
	    strcmp(m->method, "prompts/get") == 0)
		key = "name";
	else if (strcmp(m->method, "resources/read") == 0)
		key = "uri";
	else if (strncmp(m->method, "tasks/", 6) == 0)
		key = "taskId";
	if (key == NULL)
		return NULL;
	if ((name = http_name_header(req)) == NULL)
		return "Mcp-Name is required for this method";
	ok = json_object_object_get_ex(m->params, key, &v) &&
	    json_object_is_type(v, json_type_string) &&
	    strcmp(json_object_get_string(v), name) == 0;
	free(name);
	return ok ? NULL : "Mcp-Name does not match the body's";
}

/* An error response that is already a whole JSON-RPC message; takes e. */
static void
http_fail_msg(struct h1_req *req, int status, struct json_object *e)
{
	const char	*body = json_object_to_json_string_ext(e,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	h1_req_add_header(req, "Content-Type", "application/json");
	h1_reply(req, status, status == 404 ? "Not Found" : "Bad Request",
	    body, strlen(body));
	json_object_put(e);
}

/*
 * 2026-07-28: no session.  The request is served on a session of its own,
 * which ends with its reply; closing its stream cancels it.
 */
static void
http_post_modern(struct h1_req *req, struct rpc_msg *m,
    const char *owner)
{
	struct http_session	*hs;
	struct mcp_session	*s;
	struct json_object	*e;
	const char		*why;
	char			*key, msg[160];

	if (m->kind != RPC_REQUEST) {
		h1_reply(req, 202, "Accepted", NULL, 0);
		return;
	}
	if (!modern_known(m->method)) {	/* removed ones too: first */
		http_fail_id(req, 404, m->id, RPC_METHOD_NOT_FOUND,
		    "Method not found");
		return;
	}
	if (!http_version_ok(req)) {
		http_fail_msg(req, 400, modern_unsupported(m->id,
		    http_header(req, "MCP-Protocol-Version")));
		return;
	}
	if ((why = http_modern_headers(req, m)) != NULL) {
		snprintf(msg, sizeof msg, "Header mismatch: %s", why);
		http_fail_id(req, 400, m->id, RPC_HEADER_MISMATCH, msg);
		return;
	}
	if (modern_check(m, &e) == -1) {
		http_fail_msg(req, 400, e);
		return;
	}
	hs = xcalloc(1, sizeof *hs);
	hs->stateless = true;
	TAILQ_INIT(&hs->streams);
	TAILQ_INIT(&hs->events);
	hs->idle = evtimer_new(ev_base, http_idle_cb, hs);
	hs->s = mcp_session_new(&http_transport, hs, owner, false);
	key = rpc_id_key(m->id);
	http_stream_new(hs, req, key);
	s = hs->s;
	mcp_session_ref(s);	/* a reply made at once ends hs, not s */
	mcp_session_dispatch(s, m);
	http_stream_pending(s, hs, key);
	mcp_session_unref(s);
	free(key);
}

static void
http_post(struct h1_req *req, const char *owner)
{
	struct http_session	*hs;
	struct rpc_msg		 m;
	const char		*body;
	size_t			 len;

	if (!http_is_json(req)) {
		http_fail(req, 415, RPC_INVALID_REQUEST, "Unsupported Media "
		    "Type: Content-Type must be application/json");
		return;
	}
	if (!http_accepts(req, "application/json") &&
	    !http_accepts(req, "text/event-stream")) {
		http_fail(req, 406, RPC_INVALID_REQUEST, "Not Acceptable: "
		    "Accept must allow application/json and text/event-stream");
		return;
	}
	body = h1_req_body(req, &len);	/* NUL-ended, as rpc_parse wants */
	if (rpc_parse(body, len, &m) == -1)
		http_fail(req, 400, m.error_code, m.error);
	else if (http_is_modern(req) || (m.kind == RPC_REQUEST &&
	    modern_is(&m)))
		http_post_modern(req, &m, owner);
	else if (!http_version_ok(req))
		http_fail_msg(req, 400, modern_unsupported(m.id,
		    http_header(req, "MCP-Protocol-Version")));
	else if ((hs = http_post_session(req, &m, owner)) == NULL)
		;			/* answered */
	else if (m.kind == RPC_REQUEST)
		http_post_request(req, hs, &m);
	else {
		mcp_session_dispatch(hs->s, &m);
		h1_reply(req, 202, "Accepted", NULL, 0);
	}
	rpc_msg_clear(&m);
}

/* Replays the kept events of stream id after seq. */
static void
http_replay(struct http_session *hs, struct http_stream *to, uint32_t id,
    uint64_t seq)
{
	struct http_event	*e;
	struct evbuffer		*buf = evbuffer_new();

	TAILQ_FOREACH(e, &hs->events, entry)
		if (e->stream == id && e->seq > seq)
			evbuffer_add(buf, e->data, e->len);
	http_stream_write(to, buf);
	evbuffer_free(buf);
}

/* Takes up a dropped stream on a new connection. */
static void
http_stream_attach(struct http_stream *st, struct h1_req *req)
{
	st->req = req;
	st->conn = http_conn_get(req);
	st->conn->stream = st;
	st->hs->live++;
	evtimer_del(st->hs->idle);
	http_stream_arm(st);
}

/*
 * GET with Last-Event-ID "S-N": what stream S carried after event N, and
 * then, if S is still to get its reply, the rest of it as it comes.
 */
static void
http_resume(struct h1_req *req, struct http_session *hs,
    const char *last)
{
	struct http_stream	*st;
	uint32_t		 id;
	uint64_t		 seq;
	int			 n = 0;

	if (sscanf(last, "%" SCNu32 "-%" SCNu64 "%n", &id, &seq, &n) != 2 ||
	    last[n] != '\0') {
		http_fail(req, 400, RPC_INVALID_REQUEST, "Bad Request: "
		    "Last-Event-ID is not one this server gave");
		return;
	}
	TAILQ_FOREACH(st, &hs->streams, entry)
		if (st->id == id)
			break;
	if (st != NULL && st->req != NULL) {
		http_fail(req, 409, RPC_INVALID_REQUEST,
		    "Conflict: that stream is still open");
		return;
	}
	if (st == NULL) {	/* it ended: what is kept of it, then the end */
		st = http_stream_new(hs, req, NULL);
		http_sse_start(st, false);
		http_replay(hs, st, id, seq);
		http_stream_end(st);
		return;
	}
	http_stream_attach(st, req);
	http_sse_start(st, false);
	http_replay(hs, st, id, seq);
}

static void
http_get(struct h1_req *req, const char *owner)
{
	struct http_session	*hs;
	const char		*last = http_header(req, "Last-Event-ID");

	if ((hs = http_session_of(req, owner)) == NULL)
		return;
	if (!http_accepts(req, "text/event-stream"))
		http_fail(req, 406, RPC_INVALID_REQUEST, "Not Acceptable: "
		    "Accept must allow text/event-stream");
	else if (hs->live >= http.cfg->http_max_streams)
		http_fail(req, 429, RPC_INTERNAL_ERROR, "Too Many Requests: "
		    "the session has http.max_streams streams open");
	else if (last != NULL)
		http_resume(req, hs, last);
	else if (hs->get != NULL && hs->get->req != NULL)
		http_fail(req, 409, RPC_INVALID_REQUEST, "Conflict: this "
		    "session already has a GET stream open");
	else {
		if (hs->get != NULL)	/* dropped, and not resumed */
			http_stream_free(hs->get);
		hs->get = http_stream_new(hs, req, NULL);
		http_sse_start(hs->get, true);
	}
}

static void
http_delete(struct h1_req *req, const char *owner)
{
	struct http_session	*hs;

	if ((hs = http_session_of(req, owner)) == NULL)
		return;
	log_info("http: session %.8s... ended by its client",
	    sessionid_brief(hs->id));
	http_session_end(hs);
	h1_reply(req, 200, "OK", NULL, 0);
}

/* --- the endpoint ----------------------------------------------------- */

/* Prometheus's text format 0.0.4. */
static void
http_metrics(struct h1_req *req)
{
	struct evbuffer	*body = evbuffer_new();

	metrics_render(body);
	h1_req_add_header(req, "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	h1_reply_buf(req, 200, "OK", body);
	evbuffer_free(body);
}

static bool
http_probe(struct h1_req *req, const char *path)
{
	if (strcmp(path, "/metrics") == 0)
		http_metrics(req);
	else if (strcmp(path, "/healthz") == 0)
		http_plain(req, 200, "OK", "ok");
	else if (strcmp(path, "/readyz") == 0) {
		if (http.ready())
			http_plain(req, 200, "OK", "ready");
		else
			http_plain(req, 503, "Service Unavailable",
			    "not ready");
	} else
		return false;
	return true;
}

/*
 * RFC 9728: auth.mode oauth's protected-resource metadata, where an MCP
 * client learns which authorization server issues tokens for heavyd.
 * Open to all (it is how a client without a token finds its way), GET
 * only.
 */
static void
http_metadata(struct h1_req *req)
{
	char	*json;

	if (h1_req_method(req) != H1_GET) {
		h1_req_add_header(req, "Allow", "GET");
		http_plain(req, 405, "Method Not Allowed", "GET only");
		return;
	}
	json = auth_oauth_metadata();
	h1_req_add_header(req, "Content-Type", "application/json");
	h1_req_add_header(req, "Cache-Control", "max-age=300");
	h1_reply(req, 200, "OK", json, strlen(json));
	free(json);
}

/* Every answered request counts, by method and status. */
static void
http_complete_cb(struct h1_req *req, void *arg)
{
	(void)arg;
	metrics_http_request(h1_req_method_name(req), h1_req_status(req));
}

/* A refused authentication: 401 or 403 with its challenge, 429 or 503
 * with Retry-After. */
static void
http_deny(struct h1_req *req, const struct auth_denial *d)
{
	char			 retry[16];

	if (d->www_authenticate[0] != '\0')
		h1_req_add_header(req, "WWW-Authenticate", d->www_authenticate);
	if (d->retry_after_s > 0) {
		snprintf(retry, sizeof retry, "%d", d->retry_after_s);
		h1_req_add_header(req, "Retry-After", retry);
	}
	http_fail(req, d->status, RPC_INVALID_REQUEST, d->message);
}

/* --- a request held for the verifier ---------------------------------- */

/* (Its connection forgets it first.) */
static void
http_held_free(struct http_held *h)
{
	auth_oauth_unwait(http_held_cb, h);
	if (h->authorization != NULL) {
		explicit_bzero(h->authorization, strlen(h->authorization));
		free(h->authorization);
	}
	free(h);
}

/* The fetch has ended: the request is routed again, once (its
 * connection may go meanwhile: it is let go of first). */
static void
http_held_cb(void *arg)
{
	struct http_held	*h = arg;

	h->conn->held = NULL;
	http_route(h->req, h);
	http_held_free(h);
}

/*
 * Holds req until the verifier's fetch ends (h1.c watches for its
 * client's hang-up); false when there is no fetch to wait for.
 */
static bool
http_hold(struct h1_req *req, const char *authorization)
{
	struct http_held	*h = xcalloc(1, sizeof *h);

	if (auth_oauth_wait(http_held_cb, h) == -1) {
		free(h);
		return false;
	}
	h->req = req;
	h->conn = http_conn_get(req);
	h->conn->held = h;
	h->authorization = authorization != NULL ? xstrdup(authorization) :
	    NULL;
	return true;
}

/*
 * Who sends the request (auth.c): owner, or a refusal sent, or the
 * request held (false, and nothing sent).  The token is wiped from the
 * request's headers as soon as it has been looked at; a held request is
 * asked about again with its copy (held).
 */
static bool
http_auth(struct h1_req *req, struct http_held *held, char *owner,
    size_t len)
{
	const char		*a = h1_req_header(req, "Authorization");
	const char		*peer = h1_conn_peer(h1_req_conn(req));
	struct auth_denial	 d;
	int			 rc;
	bool			 hold;

	if (held != NULL)
		a = held->authorization;
	rc = auth_request(a, *peer != '\0' ? peer : "unix", now_ms(), owner,
	    len, &d);
	hold = rc == -1 && d.pending && held == NULL && http_hold(req, a);
	if (a != NULL && held == NULL)
		h1_req_wipe_header(req, "Authorization");
	if (rc == -1 && !hold)
		http_deny(req, &d);
	explicit_bzero(&d, sizeof d);
	return rc == 0;
}

/* A request, new or held (then asked about again with its copy). */
static void
http_route_view(struct h1_req *req, struct http_held *held)
{
	const char	*path;
	char		 owner[AUTH_OWNER_MAX];

	path = h1_req_path(req);
	if (h1_req_method(req) == H1_GET &&
	    http_probe(req, path))
		return;
	if (auth_oauth_metadata_path(path))
		http_metadata(req);
	else if (strcmp(path, http.cfg->http_path) != 0)
		http_plain(req, 404, "Not Found", "no such endpoint");
	else if (!http_origin_ok(req))
		http_fail(req, 403, RPC_INVALID_REQUEST,
		    "Forbidden: this Origin is not allowed (http.allowed_origins)");
	else if (!http_auth(req, held, owner, sizeof owner))
		;		/* answered (401, 403, 429, 503), or held */
	else if (!http_version_ok(req) &&	/* a POST: under its id */
	    h1_req_method(req) != H1_POST)
		http_fail_msg(req, 400, modern_unsupported(NULL,
		    http_header(req, "MCP-Protocol-Version")));
	else if (service_draining())
		http_fail(req, 503, RPC_INTERNAL_ERROR, "Service Unavailable: "
		    "heavyd is shutting down; retry later");
	else if (http_lookup(http.conns, h1_req_conn(req)) == NULL &&
	    http.conns->count >= http.cfg->http_max_connections)
		http_fail(req, 503, RPC_INTERNAL_ERROR, "Service Unavailable: "
		    "too many connections (http.max_connections); retry later");
	else if (h1_req_method(req) == H1_POST)
		http_post(req, owner);
	else if (http_is_modern(req))
		http_fail(req, 405, RPC_INVALID_REQUEST, "Method Not Allowed: "
		    MODERN_VERSION " is POST only");
	else if (h1_req_method(req) == H1_GET)
		http_get(req, owner);
	else if (h1_req_method(req) == H1_DELETE)
		http_delete(req, owner);
	else
		http_fail(req, 405, RPC_INVALID_REQUEST,
		    "Method Not Allowed: use POST, GET or DELETE");
}

static void
http_route(struct h1_req *req, struct http_held *held)
{
	struct http_view	outer = http_view;	/* (routes do not nest) */

	http_view_set(req);
	http_route_view(req, held);
	http_view = outer;
}

static void
http_request_cb(struct h1_req *req, void *arg)
{
	(void)arg;
	http_route(req, NULL);
}

/* --- listeners -------------------------------------------------------- */

/* Binds and listens on a new non-blocking socket; -1 and why. */
static int
http_socket(const struct sockaddr *sa, socklen_t salen, char *err, size_t len)
{
	int	fd, on = 1;

	if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, len, "socket: %s", strerror(errno));
		return -1;
	}
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	if (bind(fd, sa, salen) == -1 || listen(fd, 511) == -1) {
		snprintf(err, len, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* unix:/path -- a stale socket file is replaced, a live one is not. */
static int
http_listen_unix(const char *path, char *err, size_t len)
{
	struct sockaddr_un	sun = { .sun_family = AF_UNIX };
	struct stat		st;
	int			fd;

	if (path[0] != '/' || strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, len, "unix:%s: expected an absolute path of at "
		    "most %zu bytes", path, sizeof sun.sun_path - 1);
		return -1;
	}
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd != -1 && connect(fd, (struct sockaddr *)&sun,
		    sizeof sun) == 0) {
			close(fd);
			snprintf(err, len, "unix:%s: another server listens "
			    "there", path);
			return -1;
		}
		if (fd != -1)
			close(fd);
		unlink(path);
	}
	if ((fd = http_socket((struct sockaddr *)&sun, sizeof sun, err,
	    len)) == -1)
		return -1;
	config_strv_add(&http.unix_paths, &http.nunix, path);
	return fd;
}

/*
 * HOST:PORT or [HOST]:PORT, a numeric address: a loopback one, unless
 * heavyd tells its callers apart (auth.c); without that it serves this
 * machine only.
 */
static int
http_listen_inet(const char *addr, struct sockaddr_storage *ss,
    socklen_t *sslen, char *err, size_t len)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	const char		*colon = strrchr(addr, ':');
	char			 host[64], *end;
	long			 port;
	size_t			 hlen;

	if (colon == NULL || (hlen = (size_t)(colon - addr)) == 0 ||
	    hlen >= sizeof host)
		goto bad;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
		goto bad;
	memset(ss, 0, sizeof *ss);
	if (addr[0] == '[' && colon[-1] == ']') {
		snprintf(host, sizeof host, "%.*s", (int)hlen - 2, addr + 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof *sin6;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad;
		if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) && !auth_enabled())
			goto remote;
		return 0;
	}
	snprintf(host, sizeof host, "%.*s", (int)hlen, addr);
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*sslen = sizeof *sin;
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		goto bad;
	if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127 && !auth_enabled())
		goto remote;
	return 0;
bad:
	snprintf(err, len, "%s: expected 127.0.0.1:PORT, [::1]:PORT or "
	    "unix:/PATH", addr);
	return -1;
remote:
	snprintf(err, len, "%s: not a loopback address; serving other "
	    "machines needs authentication: give heavyd a tokens file "
	    "(auth.tokens_file; heavyd token add NAME) or an authorization "
	    "server (auth.mode: oauth), or listen on 127.0.0.1, [::1] or a "
	    "unix socket", addr);
	return -1;
}

/* The address a socket got (its port, when 0 was asked), for the log. */
static void
http_log_listening(int fd, const char *addr)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof ss;
	char			host[INET6_ADDRSTRLEN];
	int			port;

	if (strncmp(addr, "unix:", 5) == 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
		log_info("listening on %s (MCP at %s)", addr,
		    http.cfg->http_path);
		return;
	}
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		    host, sizeof host);
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		log_info("listening on http://[%s]:%d%s", host, port,
		    http.cfg->http_path);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
		    host, sizeof host);
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		log_info("listening on http://%s:%d%s", host, port,
		    http.cfg->http_path);
	}
}

static int
http_listen(const char *addr, char *err, size_t len)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen;
	char			why[256];
	int			fd;

	if (strncmp(addr, "unix:", 5) == 0)
		fd = http_listen_unix(addr + 5, err, len);
	else if (http_listen_inet(addr, &ss, &sslen, err, len) == -1)
		return -1;
	else if ((fd = http_socket((struct sockaddr *)&ss, sslen, why,
	    sizeof why)) == -1)
		snprintf(err, len, "%s: %s", addr, why);
	if (fd == -1)
		return -1;
	if (h1_listen_fd(http.h1, fd) == -1) {
		snprintf(err, len, "%s: %s", addr, strerror(errno));
		close(fd);
		return -1;
	}
	http_log_listening(fd, addr);
	return 0;
}

/*
 * A socket systemd handed over (socket activation): its address is the
 * socket unit's, held to the rule of http.listen (loopback or unix only).
 * It is already non-blocking and close-on-exec.
 */
static int
http_adopt(const struct listen_fd *l, char *err, size_t len)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen = sizeof ss;
	bool			local;

	if (getsockname(l->fd, (struct sockaddr *)&ss, &sslen) == -1) {
		snprintf(err, len, "socket activation (%s): %s", l->name,
		    strerror(errno));
		return -1;
	}
	local = ss.ss_family == AF_UNIX || (ss.ss_family == AF_INET &&
	    (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) ==
	    127) || (ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(
	    &((struct sockaddr_in6 *)&ss)->sin6_addr));
	if (!local && !auth_enabled()) {
		snprintf(err, len, "socket activation (%s): not a loopback "
		    "address; serving other machines needs authentication "
		    "(auth.tokens_file, or auth.mode: oauth)", l->name);
		return -1;
	}
	if (h1_listen_fd(http.h1, l->fd) == -1) {
		snprintf(err, len, "socket activation (%s): %s", l->name,
		    strerror(errno));
		return -1;
	}
	http_log_listening(l->fd, ss.ss_family == AF_UNIX ? "unix:" :
	    "systemd");
	return 0;
}

/* Serves MCP on every address of http.listen, and on the sockets systemd
 * handed over; -1 and why. */
int
http_start(const struct heavy_config *cfg, const struct listen_fd *fds,
    int nfds, bool (*ready)(void), char *err, size_t len)
{
	struct h1_limits	lim;

	http.cfg = cfg;
	http.ready = ready;
	if (sessionid_init(cfg, err, len) == -1)
		return -1;
	http.sessions = lh_kchar_table_new(64, NULL);
	http.conns = lh_kptr_table_new(64, NULL);
	lim.max_header_bytes = cfg->http_max_header_bytes;
	lim.max_headers = cfg->http_max_headers;
	lim.max_body_bytes = cfg->max_line_bytes;
	lim.request_timeout_s = cfg->http_request_timeout_s;
	lim.idle_timeout_s = cfg->http_idle_timeout_s;
	lim.max_conns = cfg->http_max_open_connections;
	http.h1 = h1_new(ev_base, &lim, http_request_cb, http_complete_cb,
	    NULL);
	if ((event_base_get_features(ev_base) & EV_FEATURE_EARLY_CLOSE) == 0)
		log_warnx("http: this event backend cannot see a client hang "
		    "up before its reply starts");
	for (int i = 0; i < nfds; i++)
		if (http_adopt(&fds[i], err, len) == -1)
			return -1;
	for (int i = 0; i < cfg->nhttp_listen; i++)
		if (http_listen(cfg->http_listen[i], err, len) == -1)
			return -1;
	return 0;
}

/* After mcp_fini: every session ends, what is owed is written, every
 * connection closes. */
void
http_stop(void)
{
	struct lh_entry		*e;
	struct h1_server	*h1;
	int64_t			 deadline = now_ms() + HTTP_FLUSH_MS;

	if (http.h1 == NULL)
		return;
	while ((e = http.sessions->head) != NULL)
		http_session_end((struct http_session *)lh_entry_v(e));
	h1 = http.h1;
	http.h1 = NULL;
	h1_flush(h1, deadline);		/* the last replies of a drain */
	h1_free(h1);
	lh_table_free(http.sessions);
	lh_table_free(http.conns);
	for (int i = 0; i < http.nunix; i++)
		unlink(http.unix_paths[i]);
	config_strv_free(&http.unix_paths, &http.nunix);
}

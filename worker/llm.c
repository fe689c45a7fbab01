/*
 * The LLM client: OpenAI-compatible chat completions, made by heavyd-egress
 * (egress_client.c), which holds the key.  A call
 * is retried only where a retry can help (408/429/5xx, transport errors,
 * a retryable error object in a 200), with full-jitter backoff that honours
 * the server's hints, and never when it could not finish by the deadline.
 */
#include <sys/random.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "worker.h"

#define LLM_DEFAULT_CAP		(4u << 20)
#define LLM_CONNECT_MS		10000
#define LLM_MIN_ATTEMPT_MS	250
#define LLM_BACKSTOP_MS		1000	/* past the deadline the supervisor kills us */

/*
 * Which of the job's models this worker's calls go to: 0 the job's model,
 * n its fallback n.  Once a model has failed for good, every later call of
 * the run (the agent's next turn, say) goes to the next one; a worker runs
 * one job, so the process is the run.
 */
struct llm_route {
	uint32_t	at;
	uint32_t	why;		/* enum job_fallback: why we moved to at,
					   until the first request there is
					   reported */
};
static struct llm_route	llm_route;

struct llm_xfer {
	struct buf	body;
	bool		final;		/* egress is gone: no retry can help */
	long		status;		/* the HTTP status; 0: none came */
	char		retry_after[64];
	char		reset[64];
	uint32_t	hedge;		/* enum egress_hedge */
};

static void
llm_fail(struct llm_error *e, enum job_error kind, long status,
    const char *fmt, ...) PRINTF(4, 5);

static void
llm_fail(struct llm_error *e, enum job_error kind, long status,
    const char *fmt, ...)
{
	va_list	ap;

	e->kind = kind;
	e->http_status = status;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

/* Copies a provider's message, cut short and with control bytes replaced. */
static void
llm_clean(char *out, size_t outlen, const char *in)
{
	size_t	i;

	for (i = 0; in != NULL && in[i] != '\0' && i < outlen - 1 && i < 200;
	    i++)
		out[i] = iscntrl((unsigned char)in[i]) ? ' ' : in[i];
	out[i] = '\0';
}

static const char *
llm_error_message(struct json_object *root)
{
	struct json_object	*err, *msg;

	if (!json_object_object_get_ex(root, "error", &err))
		return NULL;
	if (json_object_is_type(err, json_type_string))
		return json_object_get_string(err);
	if (json_object_object_get_ex(err, "message", &msg))
		return json_object_get_string(msg);
	return "unknown error";
}

/* One JSON value, or NULL and why not (json_tokener_continue: cut). */
static struct json_object *
llm_parse_json(const char *body, size_t len, enum json_tokener_error *why)
{
	struct json_tokener	*tok = json_tokener_new();
	struct json_object	*obj;

	obj = len > INT32_MAX ? NULL : json_tokener_parse_ex(tok, body, (int)len);
	*why = len > INT32_MAX ? json_tokener_error_size :
	    json_tokener_get_error(tok);
	if (obj == NULL || *why != json_tokener_success) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/*
 * A 200 body that is not one JSON value, named by what it is: an SSE
 * stream (the endpoint streams, or a proxy turned it on), a body cut
 * short, or something else that is not JSON.
 */
static void
llm_bad_body(const char *body, size_t len, enum json_tokener_error why,
    struct llm_error *e)
{
	while (len > 0 && isspace((unsigned char)*body)) {
		body++;
		len--;
	}
	if ((len >= 5 && strncmp(body, "data:", 5) == 0) ||
	    (len >= 6 && strncmp(body, "event:", 6) == 0) ||
	    (len >= 1 && body[0] == ':'))
		llm_fail(e, JOB_ERR_RESPONSE, 200, "an SSE stream "
		    "(text/event-stream) where a JSON body was expected");
	else if (why == json_tokener_continue && len > 0)
		llm_fail(e, JOB_ERR_RESPONSE, 200, "truncated response: the "
		    "JSON body ends after %zu bytes", len);
	else
		llm_fail(e, JOB_ERR_RESPONSE, 200, "malformed JSON in response: "
		    "%s", len == 0 ? "an empty body" :
		    json_tokener_error_desc(why));
}

static void
llm_add_usage(struct json_object *root, struct usage *u)
{
	struct json_object	*usage, *v;

	if (!json_object_object_get_ex(root, "usage", &usage))
		return;
	if (json_object_object_get_ex(usage, "prompt_tokens", &v))
		u->prompt_tokens += (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(usage, "completion_tokens", &v))
		u->completion_tokens += (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(usage, "total_tokens", &v))
		u->total_tokens += (uint64_t)json_object_get_int64(v);
	/* OpenRouter's cost, in credits (USD), when asked for. */
	if (json_object_object_get_ex(usage, "cost", &v) &&
	    json_object_get_double(v) > 0 && json_object_get_double(v) < 1e6)
		u->cost_micro_usd += (uint64_t)llround(
		    json_object_get_double(v) * 1e6);
}

int
llm_parse_body(const char *body, size_t len, struct llm_reply *reply,
    struct usage *u, struct llm_error *e)
{
	struct json_object	*root, *choices, *msg, *v, *calls = NULL;
	enum json_tokener_error	 why;
	char			 clean[256];
	int			 rc = -1;

	memset(reply, 0, sizeof *reply);
	if ((root = llm_parse_json(body, len, &why)) == NULL) {
		llm_bad_body(body, len, why, e);
		return -1;
	}
	if (json_object_object_get_ex(root, "error", &v)) {
		llm_clean(clean, sizeof clean, llm_error_message(root));
		llm_fail(e, JOB_ERR_API, json_object_object_get_ex(v, "code", &v) ?
		    json_object_get_int(v) : 0, "provider error: %s", clean);
		goto out;
	}
	llm_add_usage(root, u);
	choices = json_object_object_get(root, "choices");
	msg = NULL;
	if (json_object_is_type(choices, json_type_array))
		msg = json_object_object_get(
		    json_object_array_get_idx(choices, 0), "message");
	if (!json_object_is_type(msg, json_type_object)) {
		llm_fail(e, JOB_ERR_RESPONSE, 200, "response has no message");
		goto out;
	}
	v = json_object_object_get(msg, "content");
	if (json_object_object_get_ex(msg, "tool_calls", &calls) &&
	    (!json_object_is_type(calls, json_type_array) ||
	    json_object_array_length(calls) == 0))
		calls = NULL;
	if (!json_object_is_type(v, json_type_string) && calls == NULL) {
		llm_fail(e, JOB_ERR_RESPONSE, 200, "empty response");
		goto out;
	}
	reply->message = json_object_get(msg);
	reply->tool_calls = calls;
	if (json_object_is_type(v, json_type_string))
		reply->content = xstrdup(json_object_get_string(v));
	rc = 0;
out:
	json_object_put(root);
	return rc;
}

void
llm_reply_clear(struct llm_reply *r)
{
	free(r->content);
	json_object_put(r->message);
	memset(r, 0, sizeof *r);
}

/* A failed HTTP status, with its cause and the provider's own words. */
static void
llm_http_error(long status, struct llm_xfer *x, struct llm_error *e)
{
	struct json_object	*root;
	enum json_tokener_error	 why;
	const char		*cause, *msg = NULL;
	char			 clean[256] = "";

	cause = status == 400 ? "bad request" :
	    status == 401 ? "invalid or missing API key" :
	    status == 402 ? "insufficient credits" :
	    status == 403 ? "forbidden" :
	    status == 404 ? "model not found" :
	    status == 408 ? "request timeout" :
	    status == 429 ? "rate limited" :
	    status >= 500 ? "provider error" : "unexpected status";
	root = llm_parse_json(x->body.data ? x->body.data : "", x->body.len,
	    &why);
	if (root != NULL && (msg = llm_error_message(root)) != NULL)
		llm_clean(clean, sizeof clean, msg);
	llm_fail(e, JOB_ERR_HTTP, status, "HTTP %ld: %s%s%s", status, cause,
	    clean[0] ? ": " : "", clean);
	json_object_put(root);
}

/* How egress's answer ended, as an error; -1 when no status came. */
static int
llm_egress_result(const struct job *job, int64_t t0, int64_t deadline,
    const struct egress_resp *s, struct llm_xfer *x, struct llm_error *e)
{
	switch (s->result) {
	case EGRESS_OK:
		x->status = s->status;
		return 0;
	case EGRESS_OVER:
		llm_fail(e, JOB_ERR_RESPONSE, 0, "response body exceeds %zu "
		    "bytes", x->body.max);
		break;
	case 0:			/* no answer by our own deadline */
	case EGRESS_TIMEOUT:
		if (now_ms() >= deadline)
			llm_fail(e, JOB_ERR_TIMEOUT, 0, "deadline reached "
			    "waiting for the LLM");
		else if (job->stall_s > 0 &&
		    now_ms() - t0 >= (int64_t)job->stall_s * 1000)
			llm_fail(e, JOB_ERR_TRANSPORT, 0, "stalled: no data "
			    "from the LLM for %u s (stall_timeout)", job->stall_s);
		else
			llm_fail(e, JOB_ERR_TRANSPORT, 0, "transport error: %s",
			    s->error ? s->error : "timed out");
		break;
	case EGRESS_PARTIAL:
		llm_fail(e, JOB_ERR_TRANSPORT, 0, "truncated response: the "
		    "connection closed after %zu bytes of a longer body",
		    s->body_len);
		break;
	case EGRESS_CONNECT:
		llm_fail(e, JOB_ERR_CONNECT, 0, "%s", s->os_errno != 0 ?
		    strerror((int)s->os_errno) : s->error);
		break;
	case EGRESS_OPEN:
		x->final = true;	/* failed fast: a retry would too */
		llm_fail(e, JOB_ERR_TRANSPORT, 0, "not sent: %s", s->error);
		break;
	case EGRESS_DENIED:
		x->final = true;
		llm_fail(e, JOB_ERR_INTERNAL, 0, "heavyd-egress refused the "
		    "request: %s", s->error);
		break;
	default:
		llm_fail(e, JOB_ERR_TRANSPORT, 0, "transport error: %s",
		    s->error);
	}
	return -1;
}

/*
 * One HTTP attempt, made by heavyd-egress (which adds the key); -1 with e
 * set when no status came back.
 */
static int
llm_attempt(const struct job *job, int64_t deadline, const char *body,
    struct llm_xfer *x, struct llm_error *e)
{
	struct egress_req	q = { .kind = EGRESS_LLM, .target = "" };
	struct egress_resp	s;
	int64_t			t0 = now_ms(), left = deadline - t0;
	char			err[400];
	int			rc;

	q.body = (char *)body;
	q.body_len = strlen(body);
	q.timeout_ms = (uint32_t)(left + LLM_BACKSTOP_MS);
	q.connect_ms = (uint32_t)(left < LLM_CONNECT_MS ? left : LLM_CONNECT_MS);
	q.stall_s = job->stall_s;
	q.max_body = x->body.max;
	if (egress_calls(&q, &s, 1, deadline + LLM_BACKSTOP_MS, err,
	    sizeof err) == -1) {
		x->final = true;
		llm_fail(e, JOB_ERR_TRANSPORT, 0, "%s", err);
		return -1;
	}
	if (s.body_len > 0 && buf_add(&x->body, s.body, s.body_len) == -1)
		s.result = EGRESS_OVER;
	snprintf(x->retry_after, sizeof x->retry_after, "%s",
	    s.retry_after ? s.retry_after : "");
	snprintf(x->reset, sizeof x->reset, "%s", s.reset ? s.reset : "");
	x->hedge = s.hedge;
	rc = llm_egress_result(job, t0, deadline, &s, x, e);
	egress_resp_clear(&s);
	return rc;
}

/*
 * The request's JSON.  The tools come as text, made once per agent
 * (agent.c), and go in as the last member: no json-c tree of every tool's
 * schema is held while the call waits.
 */
static char *
llm_request_body(const struct job *job, const char *model,
    struct json_object *messages, const char *tools)
{
	struct json_object	*req = json_object_new_object();
	const char		*s;
	char			*body;
	size_t			 len;

	json_object_object_add(req, "model", json_object_new_string(model));
	json_object_object_add(req, "messages", json_object_get(messages));
	if (job->flags & JOB_ASK_COST)
		json_object_object_add(req, "usage", json_tokener_parse(
		    "{\"include\":true}"));
	s = json_object_to_json_string_ext(req,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(s);	/* an object: ends with '}' */
	if (tools == NULL || len < 2 || s[len - 1] != '}')
		body = xstrdup(s);
	else
		body = xasprintf("%.*s,\"tools\":%s}", (int)(len - 1), s, tools);
	json_object_put(req);
	return body;
}

static char *
llm_url(const struct job *job)
{
	size_t	len = strlen(job->base_url);

	while (len > 0 && job->base_url[len - 1] == '/')
		len--;
	return xasprintf("%.*s/chat/completions", (int)len, job->base_url);
}

static void
llm_sleep(int64_t ms)
{
	struct timespec	ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* How long to wait before retry `attempt`: the server's hint, or jitter. */
static int64_t
llm_retry_delay(const struct job *job, int attempt, struct llm_xfer *x)
{
	int64_t		hint = backoff_hint_ms(x->retry_after, x->reset,
	    time(NULL));
	uint32_t	rnd = 0;

	if (hint >= 0)
		return hint;
	if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
		rnd = (uint32_t)now_ms();
	return backoff_delay_ms(attempt, (int)job->retry_base_ms,
	    (int)job->retry_max_ms, rnd);
}

/*
 * A call egress hedged: counted, and so are the tokens of the transfer it
 * cancelled.  That one returned no usage, but the upstream may bill its
 * prompt: it is counted as the winner's prompt (the same request).
 */
static void
llm_hedge_count(const struct llm_xfer *x, struct usage *u, uint64_t prompt)
{
	if (x->hedge == EGRESS_HEDGE_NONE)
		return;
	u->hedged_calls++;
	if (x->hedge == EGRESS_HEDGE_WON)
		u->hedges_won++;
	u->prompt_tokens += prompt;
	u->total_tokens += prompt;
}

/* One attempt, classified: 0 done, 1 retryable failure, -1 final failure. */
static int
llm_try(const struct job *job, int64_t deadline, const char *url,
    const char *body, struct llm_xfer *x, struct llm_reply *reply,
    struct usage *u, struct llm_error *e)
{
	long		status;
	uint64_t	prompt0 = u->prompt_tokens;
	int		rc;

	u->llm_calls++;
	/* A refusal may heal (a proxy restarting): retried like the rest;
	 * a gone egress does not. */
	(void)url;
	if (llm_attempt(job, deadline, body, x, e) == -1) {
		llm_hedge_count(x, u, 0);
		return !x->final && (e->kind == JOB_ERR_TRANSPORT ||
		    e->kind == JOB_ERR_CONNECT) ? 1 : -1;
	}
	status = x->status;
	if (status / 100 == 2) {
		rc = llm_parse_body(x->body.data ? x->body.data : "",
		    x->body.len, reply, u, e);
		llm_hedge_count(x, u, u->prompt_tokens - prompt0);
		if (rc == 0)
			return 0;
		return e->kind == JOB_ERR_API &&
		    backoff_retryable_status(e->http_status) ? 1 : -1;
	}
	llm_hedge_count(x, u, 0);
	llm_http_error(status, x, e);
	return backoff_retryable_status(status) ? 1 : -1;
}

/*
 * How one attempt went, reported with its usage: its error (0: none), its
 * status, how long it took.  Kept within what the supervisor's decoder
 * accepts, whatever the server sent.
 */
static void
llm_report(const struct usage *u, int rc, const struct llm_error *e,
    const struct llm_xfer *x, int64_t us, uint32_t attempt,
    const struct llm_route *rt)
{
	struct job_call	c = { 0 };

	c.model = rt->at;
	c.fallback = rt->why;

	c.error_kind = rc == 0 ? 0 : e->kind;
	c.http_status = x->status >= 100 && x->status <= 999 ?
	    (uint32_t)x->status : 0;
	if (c.error_kind == JOB_ERR_HTTP && c.http_status == 0)
		c.error_kind = JOB_ERR_RESPONSE;	/* a status curl took */
	c.duration_us = us < 0 ? 0 : (uint64_t)us > JOB_CALL_MAX_US ?
	    JOB_CALL_MAX_US : (uint64_t)us;
	c.attempt = attempt < JOB_CALL_MAX_ATTEMPT ? attempt :
	    JOB_CALL_MAX_ATTEMPT;
	worker_report_usage(u, &c);
}

/* The retry note: "retrying in 0.5 s after: <cause> (<URL>)". */
static void
llm_retry_note(const struct llm_error *e, const char *url, int64_t delay)
{
	worker_step(JOB_RETRY_NOTE "%.1f s after: %s%s (%s)", delay / 1000.0,
	    e->kind == JOB_ERR_CONNECT ? "cannot connect: " : "", e->msg, url);
}

/* The final error of an unreachable endpoint names it. */
static void
llm_connect_msg(struct llm_error *e, const char *url)
{
	char	why[sizeof e->msg];

	if (e->kind != JOB_ERR_CONNECT)
		return;
	memcpy(why, e->msg, sizeof why);
	snprintf(e->msg, sizeof e->msg, "cannot connect to %.240s: %.240s",
	    url, why);
}

/*
 * Whether a call's final error moves it to the next model, and why (the
 * same rule for the agent loop, the planner and the synthesis): a 404 from
 * the chat endpoint (OpenRouter's "no endpoints found"), a 402, a 400 that
 * says the model does not support tools, or a 429/5xx still failing once
 * the retries ran out.  An error object in a 2xx body counts by its code.
 */
enum job_fallback
llm_fallback_reason(const struct llm_error *e, bool retries_out)
{
	long	st = e->http_status;

	if (e->kind != JOB_ERR_HTTP && e->kind != JOB_ERR_API)
		return JOB_FB_NONE;
	if (st == 404)
		return JOB_FB_NOT_FOUND;
	if (st == 402)
		return JOB_FB_PAYMENT;
	if (st == 400 && strcasestr(e->msg, "support") != NULL &&
	    strcasestr(e->msg, "tool") != NULL)
		return JOB_FB_NO_TOOLS;
	if (retries_out && (st == 429 || (st >= 500 && st <= 599)))
		return JOB_FB_EXHAUSTED;
	return JOB_FB_NONE;
}

const char *
llm_route_model(const struct job *job, uint32_t at)
{
	return at == 0 || at > job->nfallbacks ? job->model :
	    job->fallbacks[at - 1];
}

/* One call to one model, retried; 0, or -1 with e set and *out telling
 * whether the retries ran out on a retryable error. */
static int
llm_chat_model(const struct job *job, int64_t deadline, const char *body,
    const char *url, struct llm_reply *reply, struct usage *u,
    struct llm_error *e, bool *out)
{
	struct llm_xfer	 x;
	int64_t		 t0, took_us, took, delay;
	int		 rc = -1;

	*out = false;
	for (uint32_t attempt = 0;; attempt++) {
		if (now_ms() >= deadline) {
			llm_fail(e, JOB_ERR_TIMEOUT, 0, "deadline reached");
			break;
		}
		memset(&x, 0, sizeof x);
		buf_init(&x.body, job->max_response_bytes ?
		    job->max_response_bytes : LLM_DEFAULT_CAP);
		t0 = now_us();
		rc = llm_try(job, deadline, url, body, &x, reply, u, e);
		took_us = now_us() - t0;
		llm_report(u, rc, e, &x, took_us, attempt, &llm_route);
		llm_route.why = JOB_FB_NONE;	/* told once, with the first
						   request to the new model */
		took = took_us / 1000;
		if (rc != 1 || attempt >= job->max_retries) {
			buf_free(&x.body);
			*out = rc == 1;
			if (rc != 0)
				llm_connect_msg(e, url);
			break;
		}
		delay = llm_retry_delay(job, (int)attempt, &x);
		buf_free(&x.body);
		if (now_ms() + delay + (took > LLM_MIN_ATTEMPT_MS ? took :
		    LLM_MIN_ATTEMPT_MS) > deadline) {
			llm_connect_msg(e, url);
			strncat(e->msg, " (no time left to retry)",
			    sizeof e->msg - strlen(e->msg) - 1);
			break;
		}
		llm_retry_note(e, url, delay);
		llm_sleep(delay);
		u->retries++;
	}
	return rc == 0 ? 0 : -1;
}

/* The last model failed too: the error names every model the run tried
 * (an earlier call may have tried the first ones). */
static void
llm_all_failed(const struct job *job, struct llm_error *e)
{
	char	last[sizeof e->msg], tried[301] = "";

	memcpy(last, e->msg, sizeof last);
	for (uint32_t i = 0; i <= llm_route.at; i++)
		snprintf(tried + strlen(tried), sizeof tried - strlen(tried),
		    "%s%s", i > 0 ? ", " : "", llm_route_model(job, i));
	/* The names first: they are what the caller must act on. */
	snprintf(e->msg, sizeof e->msg, "every model failed (tried %.300s); "
	    "last: %.170s", tried, last);
}

int
llm_chat(const struct job *job, int64_t deadline, struct json_object *messages,
    const char *tools, struct llm_reply *reply, struct usage *u,
    struct llm_error *e)
{
	char			*url = llm_url(job), *body;
	const char		*model;
	enum job_fallback	 why;
	bool			 out;
	int			 rc;

	for (;;) {
		model = llm_route_model(job, llm_route.at);
		body = llm_request_body(job, model, messages, tools);
		rc = llm_chat_model(job, deadline, body, url, reply, u, e, &out);
		free(body);
		if (rc == 0 || (why = llm_fallback_reason(e, out)) ==
		    JOB_FB_NONE || job->nfallbacks == 0)
			break;
		if (llm_route.at >= job->nfallbacks) {
			llm_all_failed(job, e);
			break;
		}
		llm_route.at++;
		llm_route.why = why;
		worker_step("model %.200s failed (%s): falling back to %.200s",
		    model, job_fallback_name(why),
		    llm_route_model(job, llm_route.at));
	}
	free(url);
	return rc;
}

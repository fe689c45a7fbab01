/* The LLM client's parsing and its retry policy. */
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../worker/worker.h"

Test(backoff, retryable_statuses_exactly)
{
	static const long yes[] = { 408, 429, 500, 502, 503, 504 };
	static const long no[] = { 200, 400, 401, 402, 403, 404, 422, 501 };

	for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
		cr_assert(backoff_retryable_status(yes[i]), "%ld", yes[i]);
	for (size_t i = 0; i < sizeof no / sizeof *no; i++)
		cr_assert(!backoff_retryable_status(no[i]), "%ld", no[i]);
}

Test(backoff, full_jitter_bounds)
{
	for (uint32_t r = 0; r < 100000; r += 7) {
		cr_assert_leq(backoff_delay_ms(0, 500, 20000, r), 500);
		cr_assert_leq(backoff_delay_ms(3, 500, 20000, r), 4000);
		cr_assert_leq(backoff_delay_ms(100, 500, 20000, r), 20000);
		cr_assert_geq(backoff_delay_ms(100, 500, 20000, r), 0);
	}
	cr_assert_eq(backoff_delay_ms(3, 500, 20000, 4000), 4000, "cap reached");
	cr_assert_eq(backoff_delay_ms(100, 500, 20000, UINT32_MAX),
	    UINT32_MAX % 20001);
}

Test(backoff, server_hints)
{
	time_t	now = 1700000000;

	cr_assert_eq(backoff_hint_ms("3", NULL, now), 3000);
	cr_assert_eq(backoff_hint_ms("0", NULL, now), 0);
	cr_assert_eq(backoff_hint_ms("Tue, 14 Nov 2023 22:13:30 GMT", NULL, now),
	    10000, "HTTP-date 10 s ahead");
	cr_assert_eq(backoff_hint_ms("Tue, 14 Nov 2023 22:00:00 GMT", NULL, now),
	    0, "a date in the past");
	cr_assert_eq(backoff_hint_ms(NULL, "1700000002500", now), 2500, "ms");
	cr_assert_eq(backoff_hint_ms(NULL, "1700000004", now), 4000, "s");
	cr_assert_eq(backoff_hint_ms("soon", NULL, now), -1);
	cr_assert_eq(backoff_hint_ms("-5", NULL, now), -1);
	cr_assert_eq(backoff_hint_ms(NULL, NULL, now), -1);
	cr_assert_eq(backoff_hint_ms("999999999", NULL, now), 24LL * 3600000);
}

static int
parse(const char *body, size_t len, struct llm_reply *r, struct usage *u,
    struct llm_error *e)
{
	memset(u, 0, sizeof *u);
	memset(e, 0, sizeof *e);
	return llm_parse_body(body, len, r, u, e);
}

Test(llm, normal_reply_with_usage)
{
	const char	*b = "{\"choices\":[{\"message\":{\"role\":\"assistant\","
	    "\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":3,"
	    "\"completion_tokens\":2,\"total_tokens\":5}}";
	struct llm_reply r;
	struct usage	 u;
	struct llm_error e;

	cr_assert_eq(parse(b, strlen(b), &r, &u, &e), 0);
	cr_assert_str_eq(r.content, "hi");
	cr_assert_null(r.tool_calls);
	cr_assert_eq(u.total_tokens, 5);
	llm_reply_clear(&r);
}

Test(llm, openrouter_cost_is_summed_in_micro_dollars)
{
	const char	*b = "{\"choices\":[{\"message\":{\"role\":\"assistant\","
	    "\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":3,"
	    "\"completion_tokens\":2,\"total_tokens\":5,\"cost\":0.0125}}";
	struct llm_reply r;
	struct usage	 u;
	struct llm_error e;

	cr_assert_eq(parse(b, strlen(b), &r, &u, &e), 0);
	cr_assert_eq(u.cost_micro_usd, 12500);
	llm_reply_clear(&r);
	cr_assert_eq(llm_parse_body(b, strlen(b), &r, &u, &e), 0);
	cr_assert_eq(u.cost_micro_usd, 25000, "added up over calls");
	llm_reply_clear(&r);
}

Test(llm, tool_calls_with_null_content)
{
	const char	*b = "{\"choices\":[{\"message\":{\"content\":null,"
	    "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":"
	    "{\"name\":\"calculate\",\"arguments\":\"{}\"}}]}}]}";
	struct llm_reply r;
	struct usage	 u;
	struct llm_error e;

	cr_assert_eq(parse(b, strlen(b), &r, &u, &e), 0);
	cr_assert_null(r.content);
	cr_assert_eq(json_object_array_length(r.tool_calls), 1);
	llm_reply_clear(&r);
}

Test(llm, errors_classified)
{
	struct {
		const char	*body;
		enum job_error	 kind;
		const char	*needle;
	} cases[] = {
		{ "{\"error\":{\"message\":\"Provider returned error\","
		  "\"code\":502}}", JOB_ERR_API, "Provider returned error" },
		{ "this is not json {", JOB_ERR_RESPONSE, "malformed JSON" },
		{ "", JOB_ERR_RESPONSE, "malformed JSON in response: an empty" },
		{ "{\"choices\":[{\"mess", JOB_ERR_RESPONSE,
		  "truncated response: the JSON body ends after 18 bytes" },
		{ "data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
		  JOB_ERR_RESPONSE, "an SSE stream (text/event-stream)" },
		{ "\n: keep-alive\n\n", JOB_ERR_RESPONSE, "an SSE stream" },
		{ "{\"id\":1}", JOB_ERR_RESPONSE, "no message" },
		{ "{\"choices\":[{\"message\":{}}]}", JOB_ERR_RESPONSE, "empty" },
	};
	struct llm_reply r;
	struct usage	 u;
	struct llm_error e;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		cr_assert_eq(parse(cases[i].body, strlen(cases[i].body), &r,
		    &u, &e), -1, "%s", cases[i].body);
		cr_assert_eq(e.kind, cases[i].kind, "%s", cases[i].body);
		cr_assert(strstr(e.msg, cases[i].needle) != NULL, "%s", e.msg);
	}
	parse(cases[0].body, strlen(cases[0].body), &r, &u, &e);
	cr_assert_eq(e.http_status, 502, "the code decides the retry");
}

Test(llm, body_not_nul_terminated)
{
	char		 b[] = "{\"choices\":[{\"message\":{\"content\":\"ok\"}}]}XXXX";
	struct llm_reply r;
	struct usage	 u;
	struct llm_error e;

	cr_assert_eq(parse(b, strlen(b) - 4, &r, &u, &e), 0);
	cr_assert_str_eq(r.content, "ok");
	llm_reply_clear(&r);
}

Test(llm, choices_of_the_wrong_type)
{
	const char	*b = "{\"choices\":{\"message\":{\"content\":\"x\"}}}";
	struct llm_reply r;
	struct usage	 u;
	struct llm_error e;

	cr_assert_eq(parse(b, strlen(b), &r, &u, &e), -1);
	cr_assert_eq(e.kind, JOB_ERR_RESPONSE);
}

/* A loopback port nothing listens on: bound, then closed. */
static int
closed_port(void)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t		len = sizeof sin;
	int			fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

/*
 * A real heavyd-egress (the one built beside these tests, run with
 * --egress), configured and attached as heavyd does it, for a worker
 * whose job uses base_url: this process's calls go through it.
 */
static pid_t
egress_spawn(const char *base_url, int *ctl)
{
	struct egress_config	 c = { .api_key = "test-key-123456",
	    .search_api_key = "", .max_body = 1 << 20 };
	struct egress_attach	 a = { .worker_id = 1, .base_url =
	    (char *)base_url, .search_url = "", .user_agent = "t" };
	struct sandbox		 sb = { .workspace = "", .fs = SANDBOX_FS_NONE,
	    .flags = SANDBOX_SECCOMP, .uid = SANDBOX_KEEP_ID,
	    .gid = SANDBOX_KEEP_ID };
	struct buf		 f;
	char			 self[PATH_MAX], path[PATH_MAX + 32];
	ssize_t			 n = readlink("/proc/self/exe", self,
	    sizeof self - 1);
	int			 sv[2], wp[2];
	pid_t			 pid;

	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(path, sizeof path, "%s/heavyd-egress", dirname(self));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv),
	    0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, wp), 0);
	if ((pid = fork()) == 0) {
		dup2(sv[1], 3);
		execl(path, "heavyd-egress", "--egress", (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	m_create(&f, MSG_EGRESS_CONFIG);
	egress_config_encode(&f, &c);
	m_close(&f, SIZE_MAX);
	cr_assert_eq(fd_send(sv[0], f.data, f.len, -1, 0), 0);
	buf_free(&f);
	/* Its seccomp filter, no more: these tests' hosts vary. */
	m_create(&f, MSG_EGRESS_SANDBOX);
	sandbox_encode(&f, &sb);
	m_add_u32(&f, 0);
	m_close(&f, SIZE_MAX);
	cr_assert_eq(fd_send(sv[0], f.data, f.len, -1, 0), 0);
	buf_free(&f);
	m_create(&f, MSG_EGRESS_ATTACH);
	egress_attach_encode(&f, &a);
	m_close(&f, SIZE_MAX);
	cr_assert_eq(fd_send(sv[0], f.data, f.len, wp[1], 0), 0);
	buf_free(&f);
	close(wp[1]);
	egress_client_set(wp[0]);
	*ctl = sv[0];
	return pid;
}

static void
egress_reap(pid_t pid, int ctl)
{
	int	status;

	close(ctl);		/* egress exits when heavyd's socket closes */
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "egress ended with status %#x", status);
}

Test(llm, unreachable_endpoint_is_a_connect_error_after_retries)
{
	struct job		 job = { .role = ROLE_PLANNER, .max_retries = 2,
	    .retry_base_ms = 1, .retry_max_ms = 1, .api_key = "k",
	    .model = "m" };
	struct json_object	*msgs = json_object_new_array();
	struct llm_reply	 r;
	struct usage		 u = { 0 };
	struct llm_error	 e = { 0 };
	char			 url[64], want[128];

	int			 ctl;
	pid_t			 pid;

	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", closed_port());
	job.base_url = url;
	pid = egress_spawn(url, &ctl);
	cr_assert_eq(llm_chat(&job, now_ms() + 30000, msgs, NULL, &r, &u, &e),
	    -1);
	egress_reap(pid, ctl);
	cr_assert_eq(e.kind, JOB_ERR_CONNECT, "%d: %s", e.kind, e.msg);
	snprintf(want, sizeof want, "cannot connect to %s/chat/completions: "
	    "Connection refused", url);
	cr_assert_str_eq(e.msg, want);
	cr_assert_eq(u.retries, 2, "a refusal is retried like the rest");
	cr_assert_eq(u.llm_calls, 3);
	json_object_put(msgs);
}

/* Without egress a worker has no way out, and says so, without retrying. */
Test(llm, no_egress_fails_at_once_naming_it)
{
	struct job		 job = { .role = ROLE_PLANNER, .max_retries = 5,
	    .retry_base_ms = 1, .retry_max_ms = 1, .model = "m",
	    .base_url = "http://127.0.0.1:9/v1" };
	struct json_object	*msgs = json_object_new_array();
	struct llm_reply	 r;
	struct usage		 u = { 0 };
	struct llm_error	 e = { 0 };

	egress_client_set(-1);
	cr_assert_eq(llm_chat(&job, now_ms() + 30000, msgs, NULL, &r, &u, &e),
	    -1);
	cr_assert_eq(e.kind, JOB_ERR_TRANSPORT, "%d: %s", e.kind, e.msg);
	cr_assert(strstr(e.msg, "heavyd-egress") != NULL, "%s", e.msg);
	cr_assert_eq(u.retries, 0);
	json_object_put(msgs);
}

/* One call's final error, as llm_chat has it. */
static struct llm_error
fb_err(enum job_error kind, long status, const char *msg)
{
	struct llm_error	e = { .kind = kind, .http_status = status };

	snprintf(e.msg, sizeof e.msg, "%s", msg);
	return e;
}

/* Which errors move a call to the next fallback model, and which never. */
Test(fallback, reasons)
{
	struct llm_error	e;

	e = fb_err(JOB_ERR_HTTP, 404, "HTTP 404: model not found: No "
	    "endpoints found for x/y.");
	cr_assert_eq(llm_fallback_reason(&e, false), JOB_FB_NOT_FOUND);
	e = fb_err(JOB_ERR_HTTP, 402, "HTTP 402: insufficient credits");
	cr_assert_eq(llm_fallback_reason(&e, false), JOB_FB_PAYMENT);
	e = fb_err(JOB_ERR_HTTP, 400, "HTTP 400: bad request: No endpoints "
	    "found that SUPPORT Tool use.");
	cr_assert_eq(llm_fallback_reason(&e, false), JOB_FB_NO_TOOLS);
	e = fb_err(JOB_ERR_HTTP, 400, "HTTP 400: bad request: this model "
	    "does not support tools");
	cr_assert_eq(llm_fallback_reason(&e, false), JOB_FB_NO_TOOLS);
	e = fb_err(JOB_ERR_HTTP, 429, "HTTP 429: rate limited");
	cr_assert_eq(llm_fallback_reason(&e, true), JOB_FB_EXHAUSTED);
	e = fb_err(JOB_ERR_HTTP, 503, "HTTP 503: provider error");
	cr_assert_eq(llm_fallback_reason(&e, true), JOB_FB_EXHAUSTED);
	/* An error object in a 200 body counts by its code. */
	e = fb_err(JOB_ERR_API, 502, "provider error: Provider returned error");
	cr_assert_eq(llm_fallback_reason(&e, true), JOB_FB_EXHAUSTED);
	e = fb_err(JOB_ERR_API, 402, "provider error: out of credits");
	cr_assert_eq(llm_fallback_reason(&e, false), JOB_FB_PAYMENT);
}

Test(fallback, not_reasons)
{
	static const struct { enum job_error k; long st; const char *msg;
	    bool out; } no[] = {
		{ JOB_ERR_HTTP, 400, "HTTP 400: bad request: messages[0] is "
		    "missing", false },
		{ JOB_ERR_HTTP, 400, "HTTP 400: bad request: tool_choice "
		    "invalid", false },	/* "tool" without "support" */
		{ JOB_ERR_HTTP, 401, "HTTP 401: invalid or missing API key",
		    false },
		{ JOB_ERR_HTTP, 403, "HTTP 403: forbidden", false },
		{ JOB_ERR_HTTP, 429, "HTTP 429: rate limited", false },
		{ JOB_ERR_HTTP, 503, "HTTP 503: provider error", false },
		{ JOB_ERR_HTTP, 408, "HTTP 408: request timeout", true },
		{ JOB_ERR_TRANSPORT, 0, "transport error: reset", true },
		{ JOB_ERR_CONNECT, 0, "cannot connect", true },
		{ JOB_ERR_TIMEOUT, 0, "deadline reached", true },
		{ JOB_ERR_RESPONSE, 200, "empty response", true },
		{ JOB_ERR_INTERNAL, 0, "refused", true },
	};
	struct llm_error	e;

	for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
		e = fb_err(no[i].k, no[i].st, no[i].msg);
		cr_assert_eq(llm_fallback_reason(&e, no[i].out), JOB_FB_NONE,
		    "case %zu: %s", i, no[i].msg);
	}
}

Test(fallback, route_model)
{
	char		*fb[] = { "b", "c" };
	struct job	j = { .model = "a", .fallbacks = { fb[0], fb[1] },
	    .nfallbacks = 2 };

	cr_assert_str_eq(llm_route_model(&j, 0), "a");
	cr_assert_str_eq(llm_route_model(&j, 1), "b");
	cr_assert_str_eq(llm_route_model(&j, 2), "c");
	cr_assert_str_eq(llm_route_model(&j, 3), "a", "out of range: its own");
}

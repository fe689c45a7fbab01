/* Configuration: built-in defaults (make-it-heavy's), then the environment. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"

#define DEFAULT_SYSTEM_PROMPT \
"You are a helpful research assistant. Use the tools available to find " \
"relevant information and provide comprehensive answers.\n\n" \
"IMPORTANT: When you have fully satisfied the user's request and provided " \
"a complete answer, you MUST call the mark_task_complete tool with a " \
"summary of what was accomplished and a final message for the user."

#define DEFAULT_QUESTION_PROMPT \
"You are an orchestrator that needs to create {num_agents} different " \
"questions to thoroughly analyze this topic from multiple angles.\n\n" \
"Original user query: {user_input}\n\n" \
"Generate exactly {num_agents} different, specific questions that will " \
"help gather comprehensive information about this topic.\n" \
"Each question should approach the topic from a different angle " \
"(research, analysis, verification, alternatives, etc.).\n\n" \
"Return your response as a JSON array of strings, like this:\n" \
"[\"question 1\", \"question 2\", \"question 3\", \"question 4\"]\n\n" \
"Only return the JSON array, nothing else."

#define DEFAULT_SYNTHESIS_PROMPT \
"You have {num_responses} different AI agents that analyzed the same " \
"query from different perspectives.\nYour job is to synthesize their " \
"responses into ONE comprehensive final answer.\n\n" \
"Here are all the agent responses:\n\n{agent_responses}\n\n" \
"IMPORTANT: Just synthesize these into ONE final comprehensive answer " \
"that combines the best information from all agents.\nDo NOT call " \
"mark_task_complete or any other tools. Do NOT mention that you are " \
"synthesizing multiple responses.\nSimply provide the final synthesized " \
"answer directly as your response."

/*
 * auth.mode: oauth (supervisor/oauth.c): the resource server's settings,
 * kept together so that the other modes' keys merge beside them.
 */
static void
config_auth_defaults(struct heavy_config *c)
{
	c->auth_clock_skew_s = 60;
	c->auth_max_token_bytes = 8192;
	c->auth_jwks_max_age_s = 3600;
	c->auth_jwks_min_refetch_s = 60;
	c->auth_jwks_timeout_s = 10;
	c->auth_max_jwks_bytes = 1 << 20;
}

static void
config_auth_clear(struct heavy_config *c)
{
	free(c->auth_mode);
	free(c->auth_issuer);
	free(c->auth_audience);
	free(c->auth_jwks_file);
	free(c->auth_jwks_url);
	free(c->auth_identity_claim);
	free(c->auth_limits_claim);
	config_strv_free(&c->auth_scopes, &c->nauth_scopes);
}

/* A scope token of RFC 6749 3.3: printable ASCII but space, '"' and '\'. */
static bool
config_scope_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s <= 0x20 || *s >= 0x7f || *s == '"' || *s == '\\')
			return false;
	return true;
}

/* auth.scopes: "a b" is two scopes, as in a token's scope claim. */
static void
config_auth_split_scopes(struct heavy_config *c)
{
	char	**v = NULL, *item;
	int	  n = 0;

	for (int i = 0; i < c->nauth_scopes; i++)
		for (const char *p = c->auth_scopes[i]; *p != '\0';) {
			p += strspn(p, " ");
			if (*p == '\0')
				break;
			item = xstrndup(p, strcspn(p, " "));
			config_strv_add(&v, &n, item);
			p += strlen(item);
			free(item);
		}
	config_strv_free(&c->auth_scopes, &c->nauth_scopes);
	c->auth_scopes = v;
	c->nauth_scopes = n;
}

/* The keys decide who gets in: fetched over https, or plain http only
 * from this machine (a test's issuer, a local sidecar). */
static bool
config_jwks_url_ok(const char *url)
{
	static const char	*local[] = { "http://127.0.0.1", "http://localhost",
	    "http://[::1]" };
	size_t			 n;

	if (config_url_error(url) != NULL)
		return false;
	if (strncasecmp(url, "https://", 8) == 0)
		return true;
	for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
		n = strlen(local[i]);
		if (strncasecmp(url, local[i], n) == 0 &&
		    strchr(":/", url[n]) != NULL)	/* or the end: "" */
			return true;
	}
	return false;
}

/* What oauth mode needs: who issues, for whom, and where the keys are. */
static int
config_auth_check(struct heavy_config *c, char *err, size_t errlen)
{
	const char	*m = c->auth_mode;

	config_auth_split_scopes(c);

	if (m != NULL && strcmp(m, "none") != 0 && strcmp(m, "tokens") != 0 &&
	    strcmp(m, "oauth") != 0) {
		snprintf(err, errlen, "auth.mode: expected none, tokens or "
		    "oauth, got \"%.64s\"", m);
		return -1;
	}
	for (int i = 0; i < c->nauth_scopes; i++)
		if (!config_scope_ok(c->auth_scopes[i])) {
			snprintf(err, errlen, "auth.scopes: \"%.64s\" is no "
			    "scope (printable, no space, no quote)",
			    c->auth_scopes[i]);
			return -1;
		}
	if (m == NULL || strcmp(m, "oauth") != 0)
		return 0;
	if (c->auth_identity_claim != NULL && *c->auth_identity_claim == '\0') {
		snprintf(err, errlen, "auth.identity_claim: expected a claim "
		    "name such as sub");
		return -1;
	}
	if (c->auth_limits_claim != NULL && *c->auth_limits_claim == '\0') {
		snprintf(err, errlen, "auth.limits_claim: expected a claim "
		    "name such as heavyd_limits");
		return -1;
	}
	if (c->auth_issuer == NULL || *c->auth_issuer == '\0' ||
	    c->auth_audience == NULL ||
	    config_url_error(c->auth_audience) != NULL) {
		snprintf(err, errlen, "auth.mode oauth needs auth.issuer and "
		    "auth.audience (this server's resource URI, an http(s) "
		    "URL)");
		return -1;
	}
	if ((c->auth_jwks_file == NULL) == (c->auth_jwks_url == NULL)) {
		snprintf(err, errlen, "auth.mode oauth needs one of "
		    "auth.jwks_file or auth.jwks_url");
		return -1;
	}
	if (c->auth_jwks_url != NULL && !config_jwks_url_ok(c->auth_jwks_url)) {
		snprintf(err, errlen, "auth.jwks_url: expected an https:// URL "
		    "(http:// only on loopback), got \"%.64s\"",
		    c->auth_jwks_url);
		return -1;
	}
	return 0;
}

static void
config_print_strv(FILE *, const char *, char **, int, const char *);

static void
config_auth_print(const struct heavy_config *c, FILE *f)
{
	if (c->auth_mode == NULL || strcmp(c->auth_mode, "oauth") != 0)
		return;
	config_yaml_line(f, "auth.issuer", c->auth_issuer, NULL);
	config_yaml_line(f, "auth.audience", c->auth_audience, NULL);
	if (c->auth_jwks_file != NULL)
		config_yaml_line(f, "auth.jwks_file", c->auth_jwks_file, NULL);
	if (c->auth_jwks_url != NULL)
		config_yaml_line(f, "auth.jwks_url", c->auth_jwks_url, NULL);
	config_yaml_line(f, "auth.identity_claim", c->auth_identity_claim ?
	    c->auth_identity_claim : "sub", NULL);
	config_yaml_line(f, "auth.limits_claim", c->auth_limits_claim ?
	    c->auth_limits_claim : "none", c->auth_limits_claim ? NULL :
	    "auth.defaults for every identity");
	config_print_strv(f, "auth.scopes", c->auth_scopes, c->nauth_scopes,
	    c->nauth_scopes ? NULL : "none required");
}

void
config_defaults(struct heavy_config *c)
{
	memset(c, 0, sizeof *c);
	c->base_url = xstrdup(HEAVY_DEFAULT_BASE_URL);
	c->model = xstrdup(HEAVY_DEFAULT_MODEL);
	c->system_prompt = xstrdup(DEFAULT_SYSTEM_PROMPT);
	c->question_prompt = xstrdup(DEFAULT_QUESTION_PROMPT);
	c->synthesis_prompt = xstrdup(DEFAULT_SYNTHESIS_PROMPT);
	c->aggregation_strategy = xstrdup("consensus");
	c->search_user_agent = xstrdup("Mozilla/5.0 (compatible; heavyd)");
	c->search_max_results = 5;
	c->max_iterations = 10;
	c->num_agents = 4;
	c->task_timeout_s = 300;
	c->planner_timeout_s = 60;
	c->synthesis_reserve_s = 60;
	c->heartbeat_s = 10;
	c->max_retries = 4;
	c->stall_timeout_s = 120;
	c->retry_base_ms = 500;
	c->retry_max_ms = 20000;
	c->max_line_bytes = 4 << 20;
	c->http_path = xstrdup("/mcp");
	c->http_max_connections = 1024;
	c->http_max_sessions = 1024;
	c->http_session_idle_s = 3600;
	c->http_max_header_bytes = 16 << 10;
	c->http_request_timeout_s = 30;
	c->http_max_headers = 100;
	c->http_idle_timeout_s = 30;
	c->http_max_open_connections = 16384;
	c->http_max_streams = 32;
	c->http_resume_events = 256;
	c->sse_keepalive_s = 15;
	c->http_max_output_bytes = 16 << 20;
	c->max_frame_bytes = 8 << 20;
	c->max_response_bytes = 4 << 20;
	c->max_transcript_bytes = 1 << 20;
	c->max_tool_output_bytes = 64 << 10;
	c->max_answer_bytes = 256 << 10;
	c->max_synthesis_input_bytes = 512 << 10;
	c->max_workers = 0;		/* auto: sized to the host */
	c->worker_cost = 1 << 20;	/* 5x a waiting worker's PSS */
	c->incremental_interval_s = 10;	/* a draft costs a synthesis */
	c->max_tasks = 1024;
	c->spares = 4;
	c->egress_max_body = 64 << 20;
	c->egress_max_host_conns = 0;
	c->egress_idle_conns = 256;
	c->egress_breaker_cooldown_s = 30;
	c->ask_cost = 2;
	c->resume = 1;
	c->task_ttl_s = 3600;
	c->max_retained_tasks = 10000;
	c->max_session_tasks = 512;
	c->max_queued_workers = 8192;
	c->max_read_bytes = 1 << 20;
	c->max_write_bytes = 1 << 20;
	c->max_page_bytes = 1 << 20;
	c->max_extract_bytes = 4 << 10;
	c->search_timeout_s = 20;
	c->worker_memory = (size_t)1 << 30;
	c->worker_cpu = 600;
	c->worker_nofile = 256;
	c->worker_fsize = 64 << 20;
	c->worker_pids = 32;
	c->worker_uid = 65534;	/* nobody */
	c->worker_gid = 65534;	/* nogroup */
	c->egress_uid = 65533;	/* Debian's reserved range: no one's */
	c->egress_gid = 65533;
	c->max_task_ttl_s = 604800;
	c->poll_interval_ms = 1000;
	c->tasks_page_size = 50;
	c->store_write_ms = 500;
	c->store_sweep_s = 60;
	c->store_busy_ms = 5000;
	c->store_max_queue = 1024;
	c->store_pipeline = 32;
	c->store_prepared = 64;
	c->store_connect_timeout_s = 10;
	c->store_retry_max_ms = 10000;
	c->store_lease_ttl_ms = 30000;
	c->cache_ttl_s = 0;
	c->store_synchronous = xstrdup("normal");
	c->tools_compat = 1;
	c->sandbox_require = 1;
	c->landlock_abi_max = -1;	/* the kernel's */
	c->metrics_max_label_values = 32;
	c->drain_timeout_s = 30;
	c->log_format = xstrdup("text");
	config_auth_defaults(c);
	c->auth_fail_max = 10;
	c->auth_fail_window_s = 60;
	c->auth_max_clients = 4096;
}

void
config_set_str(char **slot, const char *value)
{
	free(*slot);
	*slot = xstrdup(value);
}

/* Every numeric knob: its environment variable, its field and its range. */
#define INT_KNOB(env, field, lo, hi) \
	{ env, offsetof(struct heavy_config, field), sizeof(int), lo, hi }
#define SIZE_KNOB(env, field, lo, hi) \
	{ env, offsetof(struct heavy_config, field), sizeof(size_t), lo, hi }
static const struct knob {
	const char	*env;
	size_t		 offset;
	size_t		 size;
	long long	 min, max;
} knobs[] = {
	INT_KNOB("HEAVY_MAX_ITERATIONS", max_iterations, 1, 100),
	INT_KNOB("HEAVY_NUM_AGENTS", num_agents, 1, HEAVY_MAX_AGENTS),
	INT_KNOB("HEAVY_TASK_TIMEOUT", task_timeout_s, 1, 86400),
	INT_KNOB("HEAVY_PLANNER_TIMEOUT", planner_timeout_s, 1, 86400),
	INT_KNOB("HEAVY_SYNTHESIS_RESERVE", synthesis_reserve_s, 0, 86400),
	INT_KNOB("HEAVY_HEARTBEAT", heartbeat_s, 1, 3600),
	INT_KNOB("HEAVY_MIN_AGENTS", min_agents, 0, HEAVY_MAX_AGENTS),
	INT_KNOB("HEAVY_HEDGE_AFTER_MS", hedge_after_ms, 0, HEAVY_MAX_HEDGE_MS),
	INT_KNOB("HEAVY_MAX_RETRIES", max_retries, 0, 20),
	INT_KNOB("HEAVY_STALL_TIMEOUT", stall_timeout_s, 0, 86400),
	INT_KNOB("HEAVY_RETRY_BASE_MS", retry_base_ms, 1, 600000),
	INT_KNOB("HEAVY_RETRY_MAX_MS", retry_max_ms, 1, 3600000),
	SIZE_KNOB("HEAVY_MAX_LINE_BYTES", max_line_bytes, 1024, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_FRAME_BYTES", max_frame_bytes, 65536, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_RESPONSE_BYTES", max_response_bytes, 1024,
	    1LL << 30),
	SIZE_KNOB("HEAVY_MAX_TRANSCRIPT_BYTES", max_transcript_bytes, 1024,
	    1LL << 30),
	SIZE_KNOB("HEAVY_MAX_TOOL_OUTPUT_BYTES", max_tool_output_bytes, 256,
	    1LL << 30),
	SIZE_KNOB("HEAVY_MAX_ANSWER_BYTES", max_answer_bytes, 256, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_SYNTHESIS_INPUT_BYTES", max_synthesis_input_bytes,
	    1024, 1LL << 30),
	INT_KNOB("HEAVY_MAX_WORKERS", max_workers, 0, 65535),	/* 0: auto */
	SIZE_KNOB("HEAVY_WORKER_COST", worker_cost, 16 << 10, 1LL << 30),
	INT_KNOB("HEAVY_MAX_TASKS", max_tasks, 1, 1 << 20),
	INT_KNOB("HEAVY_SPARES", spares, 0, 64),
	SIZE_KNOB("HEAVY_EGRESS_MAX_BODY", egress_max_body, 1024, 256 << 20),
	INT_KNOB("HEAVY_EGRESS_MAX_HOST_CONNS", egress_max_host_conns, 0, 65535),
	INT_KNOB("HEAVY_EGRESS_IDLE_CONNS", egress_idle_conns, 1, 65535),
	INT_KNOB("HEAVY_EGRESS_MAX_CALLS", egress_max_calls, 0, 65535),
	INT_KNOB("HEAVY_EGRESS_BREAKER_FAILURES", egress_breaker_failures, 0,
	    1000),
	INT_KNOB("HEAVY_EGRESS_BREAKER_COOLDOWN", egress_breaker_cooldown_s, 1,
	    3600),
	INT_KNOB("HEAVY_EGRESS_RPM", egress_rpm, 0, 100000),
	INT_KNOB("HEAVY_EGRESS_TPM", egress_tpm, 0, 1000000000),
	INT_KNOB("HEAVY_ASK_COST", ask_cost, 0, 2),
	SIZE_KNOB("HEAVY_MAX_TOTAL_TOKENS", max_total_tokens, 0, 1LL << 40),
	INT_KNOB("HEAVY_TASK_TTL", task_ttl_s, 60, 2592000),
	INT_KNOB("HEAVY_MAX_RETAINED_TASKS", max_retained_tasks, 1, 1 << 20),
	INT_KNOB("HEAVY_MAX_SESSION_TASKS", max_session_tasks, 1, 1 << 20),
	INT_KNOB("HEAVY_MAX_QUEUED_WORKERS", max_queued_workers, 0, 1 << 24),
	SIZE_KNOB("HEAVY_MAX_READ_BYTES", max_read_bytes, 1024, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_WRITE_BYTES", max_write_bytes, 1024, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_PAGE_BYTES", max_page_bytes, 1024, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_EXTRACT_BYTES", max_extract_bytes, 256, 1LL << 20),
	INT_KNOB("HEAVY_SEARCH_TIMEOUT", search_timeout_s, 1, 600),
	SIZE_KNOB("HEAVY_WORKER_MEMORY", worker_memory, 32 << 20, 1LL << 40),
	INT_KNOB("HEAVY_WORKER_CPU", worker_cpu, 1, 86400),
	INT_KNOB("HEAVY_WORKER_NOFILE", worker_nofile, 32, 65536),
	SIZE_KNOB("HEAVY_WORKER_FSIZE", worker_fsize, 4096, 1LL << 40),
	INT_KNOB("HEAVY_WORKER_PIDS", worker_pids, 2, 4096),
	INT_KNOB("HEAVY_WORKER_UID", worker_uid, 1, 2147483646),
	INT_KNOB("HEAVY_WORKER_GID", worker_gid, 1, 2147483646),
	INT_KNOB("HEAVY_EGRESS_UID", egress_uid, 1, 2147483646),
	INT_KNOB("HEAVY_EGRESS_GID", egress_gid, 1, 2147483646),
	INT_KNOB("HEAVY_LANDLOCK_ABI", landlock_abi_max, -1, 64),
	INT_KNOB("HEAVY_MAX_TASK_TTL", max_task_ttl_s, 1, 31536000),
	INT_KNOB("HEAVY_POLL_INTERVAL_MS", poll_interval_ms, 10, 3600000),
	INT_KNOB("HEAVY_TASKS_PAGE_SIZE", tasks_page_size, 1, 1000),
	INT_KNOB("HEAVY_STORE_WRITE_MS", store_write_ms, 0, 60000),
	INT_KNOB("HEAVY_STORE_SWEEP", store_sweep_s, 1, 86400),
	INT_KNOB("HEAVY_STORE_BUSY_MS", store_busy_ms, 1, 600000),
	INT_KNOB("HEAVY_STORE_MAX_QUEUE", store_max_queue, 1, 1 << 20),
	INT_KNOB("HEAVY_STORE_PIPELINE", store_pipeline, 1, 1024),
	INT_KNOB("HEAVY_STORE_PREPARED", store_prepared, 0, 1024),
	INT_KNOB("HEAVY_STORE_CONNECT_TIMEOUT", store_connect_timeout_s, 1, 600),
	INT_KNOB("HEAVY_STORE_RETRY_MAX_MS", store_retry_max_ms, 100, 600000),
	INT_KNOB("HEAVY_STORE_LEASE_TTL_MS", store_lease_ttl_ms, 1000, 3600000),
	INT_KNOB("HEAVY_CACHE_TTL", cache_ttl_s, 0, 2592000),
	INT_KNOB("HEAVY_HTTP_MAX_CONNECTIONS", http_max_connections, 1,
	    1 << 20),
	INT_KNOB("HEAVY_HTTP_MAX_SESSIONS", http_max_sessions, 1, 1 << 20),
	INT_KNOB("HEAVY_HTTP_SESSION_IDLE", http_session_idle_s, 1, 2592000),
	SIZE_KNOB("HEAVY_HTTP_MAX_HEADER_BYTES", http_max_header_bytes, 1024,
	    1 << 20),
	INT_KNOB("HEAVY_HTTP_REQUEST_TIMEOUT", http_request_timeout_s, 1, 3600),
	INT_KNOB("HEAVY_HTTP_MAX_HEADERS", http_max_headers, 8, 10000),
	INT_KNOB("HEAVY_HTTP_IDLE_TIMEOUT", http_idle_timeout_s, 1, 86400),
	INT_KNOB("HEAVY_HTTP_MAX_OPEN_CONNECTIONS", http_max_open_connections,
	    1, 1 << 20),
	INT_KNOB("HEAVY_HTTP_MAX_STREAMS", http_max_streams, 1, 1 << 16),
	INT_KNOB("HEAVY_HTTP_RESUME_EVENTS", http_resume_events, 0, 1 << 20),
	INT_KNOB("HEAVY_SSE_KEEPALIVE", sse_keepalive_s, 1, 3600),
	SIZE_KNOB("HEAVY_HTTP_MAX_OUTPUT_BYTES", http_max_output_bytes, 65536,
	    1LL << 32),
	INT_KNOB("HEAVY_METRICS_MAX_LABEL_VALUES", metrics_max_label_values, 1,
	    10000),
	INT_KNOB("HEAVY_DRAIN_TIMEOUT", drain_timeout_s, 0, 86400),
	/* auth.mode: oauth */
	INT_KNOB("HEAVY_AUTH_CLOCK_SKEW", auth_clock_skew_s, 0, 3600),
	SIZE_KNOB("HEAVY_AUTH_MAX_TOKEN_BYTES", auth_max_token_bytes, 256,
	    1 << 20),
	INT_KNOB("HEAVY_AUTH_JWKS_MAX_AGE", auth_jwks_max_age_s, 1, 604800),
	INT_KNOB("HEAVY_AUTH_JWKS_MIN_REFETCH", auth_jwks_min_refetch_s, 0,
	    86400),
	INT_KNOB("HEAVY_AUTH_JWKS_TIMEOUT", auth_jwks_timeout_s, 1, 300),
	SIZE_KNOB("HEAVY_AUTH_MAX_JWKS_BYTES", auth_max_jwks_bytes, 1024,
	    64 << 20),
	INT_KNOB("HEAVY_AUTH_FAIL_MAX", auth_fail_max, 1, 1 << 20),
	INT_KNOB("HEAVY_AUTH_FAIL_WINDOW", auth_fail_window_s, 1, 86400),
	INT_KNOB("HEAVY_AUTH_MAX_CLIENTS", auth_max_clients, 16, 1 << 20),
};

/* Whether a number's text starts as one: a digit or a sign, no space. */
bool
config_number_start(const char *v)
{
	return isdigit((unsigned char)v[0]) || ((v[0] == '-' || v[0] == '+') &&
	    isdigit((unsigned char)v[1]));
}

/* Sets one knob from text; -1 with a message naming it when bad. */
static int
config_set_knob(struct heavy_config *c, const struct knob *k, const char *v,
    char *err, size_t errlen)
{
	char		*end;
	long long	 n;

	errno = 0;
	n = strtoll(v, &end, 10);
	/* strtoll skips leading spaces; " 4" is as wrong as "4 ". */
	if (errno != 0 || end == v || *end != '\0' || !config_number_start(v) ||
	    n < k->min || n > k->max) {
		snprintf(err, errlen, "%s: expected an integer from %lld to "
		    "%lld, got \"%.64s\"", k->env, k->min, k->max, v);
		return -1;
	}
	if (k->size == sizeof(int))
		*(int *)((char *)c + k->offset) = (int)n;
	else
		*(size_t *)((char *)c + k->offset) = (size_t)n;
	return 0;
}

/* The knobs that are decimals, not integers: dollars and seconds. */
static const struct decimal_knob {
	const char	*env;
	size_t		 offset;
	double		 max;
	const char	*what;		/* "expected WHAT from 0 ..." */
} decimal_knobs[] = {
	{ "HEAVY_MAX_COST_USD", offsetof(struct heavy_config, max_cost_usd),
	  1e6, "US dollars from 0 (no budget) to 1000000" },
	{ "HEAVY_STRAGGLER_GRACE",
	  offsetof(struct heavy_config, straggler_grace_s), 86400,
	  "seconds from 0 to 86400" },
	{ "HEAVY_INCREMENTAL_INTERVAL",
	  offsetof(struct heavy_config, incremental_interval_s), 86400,
	  "seconds from 0 to 86400" },
};
#define NDECIMAL	(sizeof decimal_knobs / sizeof decimal_knobs[0])

static int
config_set_decimal(struct heavy_config *c, const struct decimal_knob *k,
    const char *v, char *err, size_t errlen)
{
	char	*end;
	double	 d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !config_number_start(v) ||
	    !(d >= 0) || d > k->max) {
		snprintf(err, errlen, "%s: expected %s, got \"%.64s\"", k->env,
		    k->what, v);
		return -1;
	}
	*(double *)((char *)c + k->offset) = d;
	return 0;
}

/* HEAVY_MAX_WORKERS also takes "auto": sized to the host at startup. */
static int
config_set_workers(struct heavy_config *c, const struct knob *k,
    const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "auto") == 0) {
		c->max_workers = 0;
		return 0;
	}
	if (config_set_knob(c, k, v, err, errlen) == -1 ||
	    c->max_workers == 0) {
		snprintf(err, errlen, "%s: expected an integer from 1 to %lld "
		    "or auto, got \"%.64s\"", k->env, k->max, v);
		return -1;
	}
	return 0;
}

/* Knob i's name under "limits:" (HEAVY_MAX_LINE_BYTES: max_line_bytes),
 * the decimal ones after the integers; NULL past the last. */
const char *
config_knob_name(size_t i, char *buf, size_t len)
{
	size_t		 j, n = sizeof knobs / sizeof knobs[0];
	const char	*env;

	if (i >= n + NDECIMAL || len == 0)
		return NULL;
	env = i < n ? knobs[i].env : decimal_knobs[i - n].env;
	for (j = 0; env[6 + j] != '\0' && j < len - 1; j++)
		buf[j] = (char)tolower((unsigned char)env[6 + j]);
	buf[j] = '\0';
	return buf;
}

static int
config_set_env_knob(struct heavy_config *c, const char *env, const char *v,
    char *err, size_t errlen)
{
	for (size_t i = 0; i < NDECIMAL; i++)
		if (strcmp(decimal_knobs[i].env, env) == 0)
			return config_set_decimal(c, &decimal_knobs[i], v, err,
			    errlen);
	for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
		if (strcmp(knobs[i].env, env) != 0)
			continue;
		if (knobs[i].offset == offsetof(struct heavy_config,
		    max_workers))
			return config_set_workers(c, &knobs[i], v, err, errlen);
		return config_set_knob(c, &knobs[i], v, err, errlen);
	}
	return -2;	/* no such knob */
}

/* A knob by its file name: HEAVY_MAX_LINE_BYTES is max_line_bytes. */
int
config_set_knob_named(struct heavy_config *c, const char *name,
    const char *value, char *err, size_t errlen)
{
	char	env[64];
	size_t	i;

	if (snprintf(env, sizeof env, "HEAVY_%s", name) >= (int)sizeof env)
		return -2;
	for (i = 6; env[i] != '\0'; i++)
		env[i] = (char)toupper((unsigned char)env[i]);
	return config_set_env_knob(c, env, value, err, errlen);
}

/*
 * Whether YAML reads s, unquoted, as this very string: no indicator first,
 * nothing a resolver could take for a number, a date, a null or a boolean.
 */
static bool
config_yaml_plain(const char *s)
{
	static const char	*words[] = { "~", "null", "true", "false",
	    "yes", "no", "on", "off", "y", "n" };
	size_t			 len = strlen(s);

	if (len == 0 || strchr("-?:,[]{}#&*!|>'\"%@` .+", s[0]) != NULL ||
	    isdigit((unsigned char)s[0]) ||
	    s[len - 1] == ' ' || s[len - 1] == ':' || strstr(s, ": ") != NULL ||
	    strstr(s, " #") != NULL)
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if (iscntrl((unsigned char)*p))
			return false;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strcasecmp(s, words[i]) == 0)
			return false;
	return true;
}

/* s as a YAML scalar: plain when that reads back the same, else quoted
 * (escaped as JSON escapes, which YAML's double quotes understand too);
 * always quoted in a flow sequence, where a comma ends a plain one. */
static void
config_yaml_scalar(FILE *f, const char *s, bool flow)
{
	if (!flow && config_yaml_plain(s)) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if (iscntrl((unsigned char)*s))
			fprintf(f, "\\u%04x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void
config_yaml_str(FILE *f, const char *s)
{
	config_yaml_scalar(f, s, false);
}

/* "key: value", the value a YAML string; a comment, when given, after it. */
void
config_yaml_line(FILE *f, const char *key, const char *value,
    const char *comment)
{
	fprintf(f, "%s: ", key);
	config_yaml_str(f, value);
	fprintf(f, "%s%s\n", comment ? "  # " : "", comment ? comment : "");
}

/* The model of each role, saying which ones fall back to the main model. */
static void
config_print_models(const struct heavy_config *c, FILE *f)
{
	const char	*main_model = "the main model";

	config_yaml_line(f, "planner_model", c->planner_model ?
	    c->planner_model : c->model, c->planner_model ? NULL : main_model);
	config_yaml_line(f, "synthesis_model", c->synthesis_model ?
	    c->synthesis_model : c->model, c->synthesis_model ? NULL :
	    main_model);
	fprintf(f, "agent_models: [");
	if (c->nagent_models == 0)
		config_yaml_scalar(f, c->model, true);
	for (int i = 0; i < c->nagent_models; i++) {
		fprintf(f, "%s", i ? ", " : "");
		config_yaml_scalar(f, c->agent_models[i], true);
	}
	fprintf(f, "]  # %s\n", c->nagent_models ? "round-robin" : main_model);
	config_print_strv(f, "fallback_models", c->fallback_models,
	    c->nfallback_models, c->nfallback_models ? NULL : "none");
	config_print_strv(f, "planner_fallback_models", c->planner_fallbacks,
	    c->nplanner_fallbacks, c->nplanner_fallbacks ? NULL :
	    "fallback_models");
	config_print_strv(f, "synthesis_fallback_models",
	    c->synthesis_fallbacks, c->nsynthesis_fallbacks,
	    c->nsynthesis_fallbacks ? NULL : "fallback_models");
}

/* The agent tools' settings: the state directory and search backend. */
static void
config_print_tools(const struct heavy_config *c, FILE *f)
{
	const char	*env = getenv("HEAVY_SEARCH_API_KEY");
	char		*url, cred[4096];

	config_yaml_line(f, "state_dir", c->state_dir ? c->state_dir :
	    "(unset)", NULL);
	config_yaml_line(f, "search.backend", c->search_backend ?
	    c->search_backend : "none", c->search_backend ? NULL :
	    "search_web is not offered");
	if (c->search_backend == NULL)
		return;
	url = secret_url(c->search_url ? c->search_url : "");
	config_yaml_line(f, "search.url", url, NULL);
	free(url);
	config_yaml_line(f, "search.api_key", env != NULL && *env != '\0' ?
	    "(set in HEAVY_SEARCH_API_KEY, masked)" :
	    config_credential(HEAVY_CRED_SEARCH_KEY, cred, sizeof cred) ?
	    "(from the credential " HEAVY_CRED_SEARCH_KEY ", masked)" :
	    c->search_api_key ?
	    "(set in the file, masked)" : c->search_api_key_file ?
	    "(from search.api_key_file, masked)" : "(not set)", NULL);
	if (c->search_api_key_file != NULL)
		config_yaml_line(f, "search.api_key_file",
		    c->search_api_key_file, NULL);
	fprintf(f, "search.allow_private: %s\n", c->search_allow_private ?
	    "true" : "false");
}

/* A list as a YAML flow sequence. */
static void
config_print_strv(FILE *f, const char *key, char **v, int n,
    const char *comment)
{
	fprintf(f, "%s: [", key);
	for (int i = 0; i < n; i++) {
		fprintf(f, "%s", i ? ", " : "");
		config_yaml_scalar(f, v[i], true);
	}
	fprintf(f, "]%s%s\n", comment ? "  # " : "", comment ? comment : "");
}

/* Where heavyd serves MCP. */
static void
config_print_http(const struct heavy_config *c, FILE *f)
{
	config_print_strv(f, "http.listen", c->http_listen, c->nhttp_listen,
	    c->nhttp_listen ? NULL : "none: MCP on stdin/stdout");
	config_yaml_line(f, "http.path", c->http_path, NULL);
	config_yaml_line(f, "http.session_key_file",
	    c->http_session_key_file ? c->http_session_key_file : "(none)",
	    c->http_session_key_file ? NULL :
	    "the credential " HEAVY_CRED_SESSION_KEY ", else a key of its own");
	config_print_strv(f, "http.allowed_origins", c->http_origins,
	    c->nhttp_origins, "and same-origin loopback");
}

/* max_workers: a number, or auto and what it came to on this host. */
static void
config_print_workers(const struct heavy_config *c, FILE *f)
{
	if (c->max_workers_why[0] != '\0')
		fprintf(f, "limits.max_workers: %d  # auto: %s\n",
		    c->max_workers, c->max_workers_why);
	else if (c->max_workers == 0)
		fprintf(f, "limits.max_workers: auto\n");
	else
		fprintf(f, "limits.max_workers: %d\n", c->max_workers);
}

/* Who may call over HTTP. */
static void
config_print_auth(const struct heavy_config *c, FILE *f)
{
	char		 cred[4096];
	const char	*file = tokens_path(c, cred, sizeof cred);

	config_yaml_line(f, "auth.mode", c->auth_mode ? c->auth_mode :
	    file ? "tokens" : "none", NULL);
	config_yaml_line(f, "auth.tokens_file", file ? file : "(none)", NULL);
	config_yaml_line(f, "auth.defaults", c->auth_defaults ?
	    c->auth_defaults : "", c->auth_defaults ? NULL : "no limits");
}

/* The knobs, as limits.NAME: N. */
static void
config_print_limits(const struct heavy_config *c, FILE *f)
{
	char	name[64];

	for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
		const char	*p = (const char *)c + knobs[i].offset;
		long long	 v = knobs[i].size == sizeof(int) ?
		    *(const int *)p : (long long)*(const size_t *)p;

		if (knobs[i].offset == offsetof(struct heavy_config,
		    max_workers)) {
			config_print_workers(c, f);
			continue;
		}
		fprintf(f, "limits.%s: %lld\n", config_knob_name(i, name,
		    sizeof name), v);
	}
	for (size_t i = 0; i < NDECIMAL; i++)
		fprintf(f, "limits.%s: %g\n", config_knob_name(i +
		    sizeof knobs / sizeof knobs[0], name, sizeof name),
		    *(const double *)((const char *)c +
		    decimal_knobs[i].offset));
}

/*
 * The effective configuration, secrets masked, for --check-config and
 * heavy://config: YAML (served as text/yaml), one "key: value" a line.
 */
void
config_print(const struct heavy_config *c, const char *source, FILE *f)
{
	const char	*env = getenv("OPENROUTER_API_KEY");
	char		*url, cred[4096];

	fprintf(f, "# effective configuration (file: %.*s)\n",
	    (int)strcspn(source, "\r\n"), source);
	url = secret_url(c->base_url);
	config_yaml_line(f, "base_url", url, NULL);
	free(url);
	if (c->ca_file != NULL)
		config_yaml_line(f, "ca_file", c->ca_file, NULL);
	config_yaml_line(f, "model", c->model, NULL);
	fprintf(f, "api_key: %s\n", env && *env ?
	    "(set in OPENROUTER_API_KEY, masked)" :
	    config_credential(HEAVY_CRED_API_KEY, cred, sizeof cred) ?
	    "(from the credential " HEAVY_CRED_API_KEY ", masked)" :
	    c->api_key && *c->api_key ?
	    "(set in the file, masked)" : c->api_key_file ?
	    "(from api_key_file, masked)" : "(not set)");
	if (c->api_key_file != NULL)
		config_yaml_line(f, "api_key_file", c->api_key_file, NULL);
	config_yaml_line(f, "aggregation_strategy", c->aggregation_strategy,
	    NULL);
	fprintf(f, "search.max_results: %d\n", c->search_max_results);
	config_yaml_line(f, "search.user_agent", c->search_user_agent, NULL);
	config_print_models(c, f);
	config_print_limits(c, f);
	fprintf(f, "system_prompt: %zu bytes\nquestion_generation_prompt: %zu "
	    "bytes\nsynthesis_prompt: %zu bytes\n", strlen(c->system_prompt),
	    strlen(c->question_prompt), strlen(c->synthesis_prompt));
	config_print_tools(c, f);
	config_print_http(c, f);
	fprintf(f, "tools.compat: %s\n", c->tools_compat ? "true" : "false");
	fprintf(f, "sandbox.require: %s\n", c->sandbox_require ? "true" :
	    "false");
	config_yaml_line(f, "store.synchronous", c->store_synchronous, NULL);
	url = c->store_url ? secret_url(c->store_url) : NULL;
	config_yaml_line(f, "store.url", url ? url : "(none)", url ? NULL :
	    "SQLite in the state directory");
	free(url);
	config_yaml_line(f, "log.format", c->log_format, NULL);
	fprintf(f, "log.queries: %s\n", c->log_queries ? "true" : "false");
	fprintf(f, "orchestrator.resume: %s\n", c->resume ? "true" : "false");
	config_print_auth(c, f);
	config_auth_print(c, f);
}

/*
 * A systemd credential (LoadCredential=): $CREDENTIALS_DIRECTORY/name in
 * buf when it exists, else NULL.
 */
const char *
config_credential(const char *name, char *buf, size_t len)
{
	const char	*dir = getenv("CREDENTIALS_DIRECTORY");

	if (dir == NULL || *dir != '/' ||
	    (size_t)snprintf(buf, len, "%s/%s", dir, name) >= len ||
	    access(buf, F_OK) == -1)
		return NULL;
	return buf;
}

/* The strategy and the models per role; empty variables are unset. */
static int
config_roles_from_env(struct heavy_config *c, char *err, size_t errlen)
{
	static const char	*names[] = { "HEAVY_PLANNER_MODEL",
	    "HEAVY_SYNTHESIS_MODEL" };
	char			**slots[] = { &c->planner_model,
	    &c->synthesis_model };
	const char		*v, *why;

	if ((v = getenv("HEAVY_AGGREGATION_STRATEGY")) != NULL && *v != '\0') {
		if (config_strategy(v) == -1) {
			snprintf(err, errlen, "HEAVY_AGGREGATION_STRATEGY: "
			    "expected one of %s, got \"%.64s\"",
			    HEAVY_STRATEGIES, v);
			return -1;
		}
		config_set_str(&c->aggregation_strategy, v);
	}
	for (int i = 0; i < 2; i++) {
		if ((v = getenv(names[i])) == NULL || *v == '\0')
			continue;
		if ((why = config_model_error(v)) != NULL) {
			snprintf(err, errlen, "%s: %s", names[i], why);
			return -1;
		}
		config_set_str(slots[i], v);
	}
	if ((v = getenv("HEAVY_AGENT_MODELS")) != NULL && *v != '\0' &&
	    config_agent_models_csv(c, v, err, errlen) == -1)
		return -1;
	return 0;
}

/*
 * What is wrong with an LLM endpoint's URL, or NULL.  Checked where it is
 * set, so that the message names the variable or the key the user wrote;
 * features_ports checks it again, fully, with libevent's parser.
 */
const char *
config_url_error(const char *url)
{
	const char	*host;

	if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else
		return "expected an http:// or https:// URL";
	if (strchr("/:?#", *host) != NULL)
		return "expected a host after the scheme "
		    "(http(s)://host[:port]/...)";
	for (; *url != '\0'; url++)
		if (iscntrl((unsigned char)*url) || *url == ' ')
			return "a URL has no spaces or control characters";
	return NULL;
}

int
config_from_env(struct heavy_config *c, char *err, size_t errlen)
{
	const char	*v, *why;
	char		*url;

	if ((v = getenv("HEAVY_BASE_URL")) != NULL && *v != '\0') {
		if ((why = config_url_error(v)) != NULL) {
			url = secret_url(v);
			snprintf(err, errlen, "HEAVY_BASE_URL: %s, got "
			    "\"%.200s\"", why, url);
			free(url);
			return -1;
		}
		config_set_str(&c->base_url, v);
	}
	if ((v = getenv("HEAVY_MODEL")) != NULL && *v != '\0')
		config_set_str(&c->model, v);
	if (config_roles_from_env(c, err, errlen) == -1)
		return -1;
	for (size_t i = 0; i < NDECIMAL; i++)
		if ((v = getenv(decimal_knobs[i].env)) != NULL && *v != '\0' &&
		    config_set_decimal(c, &decimal_knobs[i], v, err,
		    errlen) == -1)
			return -1;
	if ((v = getenv("HEAVY_STATE_DIR")) != NULL && *v != '\0')
		config_set_str(&c->state_dir, v);
	if ((v = getenv("HEAVY_SEARCH_BACKEND")) != NULL && *v != '\0')
		config_set_str(&c->search_backend, v);
	if ((v = getenv("HEAVY_SEARCH_URL")) != NULL && *v != '\0')
		config_set_str(&c->search_url, v);
	if ((v = getenv("HEAVY_CA_FILE")) != NULL && *v != '\0')
		config_set_str(&c->ca_file, v);
	if ((v = getenv("HEAVY_SEARCH_ALLOW_PRIVATE")) != NULL && *v != '\0' &&
	    config_parse_bool(v, &c->search_allow_private) == -1) {
		snprintf(err, errlen, "HEAVY_SEARCH_ALLOW_PRIVATE: expected 1 or "
		    "0 (true or false), got \"%.64s\"", v);
		return -1;
	}
	if ((v = getenv("HEAVY_TOOLS_COMPAT")) != NULL && *v != '\0' &&
	    config_parse_bool(v, &c->tools_compat) == -1) {
		snprintf(err, errlen, "HEAVY_TOOLS_COMPAT: expected 1 or 0 "
		    "(true or false), got \"%.64s\"", v);
		return -1;
	}
	if ((v = getenv("HEAVY_STORE_SYNCHRONOUS")) != NULL && *v != '\0')
		config_set_str(&c->store_synchronous, v);
	if ((v = getenv("HEAVY_STORE_URL")) != NULL && *v != '\0')
		config_set_str(&c->store_url, v);
	if ((v = getenv("HEAVY_NODE_ID")) != NULL && *v != '\0')
		config_set_str(&c->node_id, v);
	if ((v = getenv("HEAVY_HTTP_SESSION_KEY_FILE")) != NULL && *v != '\0')
		config_set_str(&c->http_session_key_file, v);
	if ((v = getenv("HEAVY_LOG_FORMAT")) != NULL && *v != '\0')
		config_set_str(&c->log_format, v);
	if ((v = getenv("HEAVY_AUTH_MODE")) != NULL && *v != '\0')
		config_set_str(&c->auth_mode, v);
	if ((v = getenv("HEAVY_AUTH_TOKENS_FILE")) != NULL && *v != '\0')
		config_set_str(&c->auth_tokens_file, v);
	if ((v = getenv("HEAVY_AUTH_DEFAULTS")) != NULL && *v != '\0')
		config_set_str(&c->auth_defaults, v);
	if ((v = getenv("HEAVY_LOG_QUERIES")) != NULL && *v != '\0' &&
	    config_parse_bool(v, &c->log_queries) == -1) {
		snprintf(err, errlen, "HEAVY_LOG_QUERIES: expected 1 or 0 "
		    "(true or false), got \"%.64s\"", v);
		return -1;
	}
	if ((v = getenv("HEAVY_RESUME")) != NULL && *v != '\0' &&
	    config_parse_bool(v, &c->resume) == -1) {
		snprintf(err, errlen, "HEAVY_RESUME: expected 1 or 0 "
		    "(true or false), got \"%.64s\"", v);
		return -1;
	}
	if ((v = getenv("HEAVY_SANDBOX_REQUIRE")) != NULL && *v != '\0' &&
	    config_parse_bool(v, &c->sandbox_require) == -1) {
		snprintf(err, errlen, "HEAVY_SANDBOX_REQUIRE: expected 1 or 0 "
		    "(true or false), got \"%.64s\"", v);
		return -1;
	}
	for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
		if ((v = getenv(knobs[i].env)) == NULL || *v == '\0')
			continue;
		if (config_set_env_knob(c, knobs[i].env, v, err, errlen) == -1)
			return -1;
	}
	return 0;
}

struct heavy_config *
config_dup(const struct heavy_config *c)
{
	struct heavy_config	*d = xmalloc(sizeof *d);

	*d = *c;
	d->fallback_models = d->planner_fallbacks = d->synthesis_fallbacks =
	    NULL;
	d->nfallback_models = d->nplanner_fallbacks =
	    d->nsynthesis_fallbacks = 0;
	for (int i = 0; i < c->nfallback_models; i++)
		config_strv_add(&d->fallback_models, &d->nfallback_models,
		    c->fallback_models[i]);
	for (int i = 0; i < c->nplanner_fallbacks; i++)
		config_strv_add(&d->planner_fallbacks, &d->nplanner_fallbacks,
		    c->planner_fallbacks[i]);
	for (int i = 0; i < c->nsynthesis_fallbacks; i++)
		config_strv_add(&d->synthesis_fallbacks,
		    &d->nsynthesis_fallbacks, c->synthesis_fallbacks[i]);
	d->base_url = xstrdup(c->base_url);
	d->model = xstrdup(c->model);
	d->system_prompt = xstrdup(c->system_prompt);
	d->question_prompt = xstrdup(c->question_prompt);
	d->synthesis_prompt = xstrdup(c->synthesis_prompt);
	d->aggregation_strategy = xstrdup(c->aggregation_strategy);
	d->search_user_agent = xstrdup(c->search_user_agent);
	d->planner_model = c->planner_model ? xstrdup(c->planner_model) : NULL;
	d->synthesis_model = c->synthesis_model ?
	    xstrdup(c->synthesis_model) : NULL;
	d->agent_models = NULL;
	d->nagent_models = 0;
	if (c->nagent_models > 0) {
		d->agent_models = xcalloc((size_t)c->nagent_models,
		    sizeof *d->agent_models);
		for (int i = 0; i < c->nagent_models; i++)
			d->agent_models[i] = xstrdup(c->agent_models[i]);
		d->nagent_models = c->nagent_models;
	}
	d->api_key = NULL;		/* never copied into a task */
	d->api_key_file = NULL;
	d->state_dir = c->state_dir ? xstrdup(c->state_dir) : NULL;
	d->search_backend = c->search_backend ? xstrdup(c->search_backend) :
	    NULL;
	d->search_url = c->search_url ? xstrdup(c->search_url) : NULL;
	d->ca_file = c->ca_file ? xstrdup(c->ca_file) : NULL;
	d->store_synchronous = xstrdup(c->store_synchronous);
	d->store_url = c->store_url ? xstrdup(c->store_url) : NULL;
	d->node_id = c->node_id ? xstrdup(c->node_id) : NULL;
	d->log_format = xstrdup(c->log_format);
	d->search_api_key = NULL;	/* the server holds it, as api_key */
	d->search_api_key_file = NULL;
	d->http_listen = d->http_origins = NULL;	/* the server's */
	d->nhttp_listen = d->nhttp_origins = 0;
	d->http_path = xstrdup(c->http_path);
	d->http_session_key_file = NULL;	/* the server's */
	d->auth_mode = d->auth_issuer = d->auth_audience = NULL;  /* the */
	d->auth_jwks_file = d->auth_jwks_url = NULL;		  /* server's */
	d->auth_identity_claim = NULL;
	d->auth_limits_claim = NULL;
	d->auth_scopes = NULL;
	d->nauth_scopes = 0;
	d->auth_tokens_file = NULL;
	d->auth_defaults = NULL;
	return d;
}

void
config_clear(struct heavy_config *c)
{
	free(c->base_url);
	free(c->model);
	free(c->system_prompt);
	free(c->question_prompt);
	free(c->synthesis_prompt);
	free(c->aggregation_strategy);
	free(c->search_user_agent);
	if (c->api_key != NULL)
		explicit_bzero(c->api_key, strlen(c->api_key));
	free(c->api_key);
	free(c->api_key_file);
	free(c->planner_model);
	free(c->synthesis_model);
	config_set_agent_models(c, NULL, 0);
	free(c->state_dir);
	free(c->search_backend);
	free(c->search_url);
	free(c->ca_file);
	free(c->store_synchronous);
	if (c->store_url != NULL)
		explicit_bzero(c->store_url, strlen(c->store_url));
	free(c->store_url);
	free(c->node_id);
	free(c->log_format);
	if (c->search_api_key != NULL)
		explicit_bzero(c->search_api_key, strlen(c->search_api_key));
	free(c->search_api_key);
	free(c->search_api_key_file);
	config_strv_free(&c->http_listen, &c->nhttp_listen);
	config_strv_free(&c->http_origins, &c->nhttp_origins);
	config_strv_free(&c->fallback_models, &c->nfallback_models);
	config_strv_free(&c->planner_fallbacks, &c->nplanner_fallbacks);
	config_strv_free(&c->synthesis_fallbacks, &c->nsynthesis_fallbacks);
	free(c->http_path);
	free(c->http_session_key_file);
	config_auth_clear(c);
	free(c->auth_tokens_file);
	free(c->auth_defaults);
	memset(c, 0, sizeof *c);
}

void
config_free(struct heavy_config *c)
{
	if (c == NULL)
		return;
	config_clear(c);
	free(c);
}

static const char	*strategy_names[] = { "consensus", "ranked", "best",
    "incremental" };

int
config_strategy(const char *name)
{
	for (int i = 0; i < (int)(sizeof strategy_names /
	    sizeof strategy_names[0]); i++)
		if (strcmp(name, strategy_names[i]) == 0)
			return i;
	return -1;
}

const char *
config_strategy_name(int strategy)
{
	return strategy_names[strategy];
}

/* What is wrong with a model id, or NULL: it goes into a JSON body as is. */
const char *
config_model_error(const char *s)
{
	if (*s == '\0')
		return "expected a model id, got an empty string";
	if (strlen(s) > HEAVY_MAX_MODEL)
		return "a model id is at most 256 bytes";
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s) || *s == ' ')
			return "a model id has no spaces or control characters";
	return NULL;
}

/* A fallback_models list: at most HEAVY_MAX_FALLBACKS model ids. */
int
config_fallbacks_error(const char *key, char **v, int n, char *err,
    size_t errlen)
{
	const char	*why;

	if (n > HEAVY_MAX_FALLBACKS) {
		snprintf(err, errlen, "%s: at most %d models, got %d", key,
		    HEAVY_MAX_FALLBACKS, n);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if ((why = config_model_error(v[i])) != NULL) {
			snprintf(err, errlen, "%s[%d]: %s", key, i, why);
			return -1;
		}
	return 0;
}

/* A list of strings (listen addresses, origins): one more, copied. */
void
config_strv_add(char ***v, int *n, const char *s)
{
	*v = xrealloc(*v, ((size_t)*n + 1) * sizeof **v);
	(*v)[(*n)++] = xstrdup(s);
}

void
config_strv_free(char ***v, int *n)
{
	for (int i = 0; i < *n; i++)
		free((*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

/* Replaces the agents' models by the n given ones, which it takes. */
void
config_set_agent_models(struct heavy_config *c, char **models, int n)
{
	for (int i = 0; i < c->nagent_models; i++)
		free(c->agent_models[i]);
	free(c->agent_models);
	c->agent_models = models;
	c->nagent_models = n;
}

/* HEAVY_AGENT_MODELS: "a, b,c"; an empty item is an error. */
int
config_agent_models_csv(struct heavy_config *c, const char *csv, char *err,
    size_t errlen)
{
	char		**models = NULL, *item;
	const char	*p = csv, *why;
	size_t		 len;
	int		 n = 0;

	for (;;) {
		p += strspn(p, " \t");
		len = strcspn(p, ",");
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		item = xstrndup(p, len);
		models = xrealloc(models, (size_t)(n + 1) * sizeof *models);
		models[n++] = item;
		if ((why = config_model_error(item)) != NULL) {
			snprintf(err, errlen, "HEAVY_AGENT_MODELS: item %d: %s",
			    n, why);
			while (n > 0)
				free(models[--n]);
			free(models);
			return -1;
		}
		p += strcspn(p, ",");
		if (*p++ == '\0')
			break;
	}
	config_set_agent_models(c, models, n);
	return 0;
}

/* YAML's and the environment's booleans: true/false, yes/no, on/off, 1/0. */
int
config_parse_bool(const char *v, int *out)
{
	static const char	*yes[] = { "true", "yes", "on", "1" };
	static const char	*no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* auth.mode: none, tokens (with a tokens file) or oauth. */
static int
config_check_auth(struct heavy_config *c, char *err, size_t errlen)
{
	const char	*m = c->auth_mode;
	char		 cred[4096], why[256];
	struct token_limits lim;

	if (c->auth_defaults != NULL &&
	    token_limits_parse(c->auth_defaults, &lim, why, sizeof why) == -1) {
		snprintf(err, errlen, "auth.defaults: %s", why);
		return -1;
	}
	if (m == NULL || strcmp(m, "none") == 0 || strcmp(m, "oauth") == 0)
		return 0;
	if (strcmp(m, "tokens") != 0) {
		snprintf(err, errlen, "auth.mode: expected none, tokens or "
		    "oauth, got \"%.64s\"", m);
		return -1;
	}
	if (tokens_path(c, cred, sizeof cred) == NULL) {
		snprintf(err, errlen, "auth.mode: tokens needs auth.tokens_file "
		    "(or the systemd credential " HEAVY_CRED_TOKENS ")");
		return -1;
	}
	return 0;
}

/*
 * store.url: a libpq URI.  Its password goes in user:password@, which
 * secret_url masks wherever it is shown, or in a password file
 * (PGPASSFILE); a password= parameter would be shown as it is.
 */
static int
config_store_url_check(const char *url, char *err, size_t errlen)
{
	const char	*name = getenv("HEAVY_STORE_URL") &&
	    *getenv("HEAVY_STORE_URL") ? "HEAVY_STORE_URL" : "store.url";
	const char	*q;

	if (url == NULL)
		return 0;
	if (strncmp(url, "postgresql://", 13) != 0 &&
	    strncmp(url, "postgres://", 11) != 0) {
		snprintf(err, errlen, "%s: expected a postgresql:// URL", name);
		return -1;
	}
	for (const char *p = url; *p != '\0'; p++)
		if (iscntrl((unsigned char)*p) || *p == ' ') {
			snprintf(err, errlen, "%s: a URL has no spaces or "
			    "control characters", name);
			return -1;
		}
	if ((q = strchr(url, '?')) != NULL && (strncmp(q + 1, "password=", 9) ==
	    0 || strstr(q, "&password=") != NULL)) {
		snprintf(err, errlen, "%s: put the password in "
		    "postgresql://user:password@host/..., or in a password file "
		    "(PGPASSFILE), not in a password= parameter", name);
		return -1;
	}
	return 0;
}

/* What only makes sense together: the search backend, its URL, its key. */
/*
 * ca_file, read by heavyd-egress inside its sandbox, whose rules name it:
 * a path that cannot be read fails here, now, and a relative one becomes
 * absolute.
 */
static int
config_ca_file_check(struct heavy_config *c, char *err, size_t errlen)
{
	char	*abs;

	if (c->ca_file == NULL)
		return 0;
	if (access(c->ca_file, R_OK) == -1 ||
	    (abs = realpath(c->ca_file, NULL)) == NULL) {
		snprintf(err, errlen, "%s: %.200s: %s", getenv("HEAVY_CA_FILE") &&
		    *getenv("HEAVY_CA_FILE") ? "HEAVY_CA_FILE" : "ca_file",
		    c->ca_file, strerror(errno));
		return -1;
	}
	free(c->ca_file);
	c->ca_file = abs;
	return 0;
}

int
config_check(struct heavy_config *c, char *err, size_t errlen)
{
	const char	*b, *env;
	enum log_format	 format;
	char		 cred[4096];

	if (log_format_parse(c->log_format, &format) == -1) {
		snprintf(err, errlen, "%s: expected text or json, got \"%.64s\"",
		    getenv("HEAVY_LOG_FORMAT") && *getenv("HEAVY_LOG_FORMAT") ?
		    "HEAVY_LOG_FORMAT" : "log.format", c->log_format);
		return -1;
	}
	if (strcmp(c->store_synchronous, "normal") != 0 &&
	    strcmp(c->store_synchronous, "full") != 0) {
		snprintf(err, errlen, "%s: expected normal or full, got "
		    "\"%.64s\"", getenv("HEAVY_STORE_SYNCHRONOUS") ?
		    "HEAVY_STORE_SYNCHRONOUS" : "store.synchronous",
		    c->store_synchronous);
		return -1;
	}
	if (config_store_url_check(c->store_url, err, errlen) == -1 ||
	    config_fallbacks_error("orchestrator.fallback_models",
	    c->fallback_models, c->nfallback_models, err, errlen) == -1 ||
	    config_fallbacks_error("orchestrator.planner_fallback_models",
	    c->planner_fallbacks, c->nplanner_fallbacks, err, errlen) == -1 ||
	    config_fallbacks_error("orchestrator.synthesis_fallback_models",
	    c->synthesis_fallbacks, c->nsynthesis_fallbacks, err, errlen) == -1)
		return -1;
	if (c->http_path[0] != '/' || strpbrk(c->http_path, "?# ") != NULL) {
		snprintf(err, errlen, "http.path: expected a path such as "
		    "/mcp, got \"%.64s\"", c->http_path);
		return -1;
	}
	if (config_auth_check(c, err, errlen) == -1 ||
	    config_check_auth(c, err, errlen) == -1)
		return -1;
	if (config_ca_file_check(c, err, errlen) == -1)
		return -1;
	if (c->search_backend != NULL && strcmp(c->search_backend, "none") == 0) {
		free(c->search_backend);
		c->search_backend = NULL;
	}
	b = c->search_backend;
	if (b == NULL)
		return 0;
	if (strcmp(b, "searxng") != 0 && strcmp(b, "brave") != 0) {
		snprintf(err, errlen, "search.backend: expected searxng, brave "
		    "or none, got \"%.64s\"", b);
		return -1;
	}
	if (c->search_url == NULL && strcmp(b, "brave") == 0)
		c->search_url = xstrdup(HEAVY_DEFAULT_BRAVE_URL);
	if (c->search_url == NULL) {
		snprintf(err, errlen, "search.url: the searxng backend needs "
		    "the URL of a SearXNG instance (HEAVY_SEARCH_URL)");
		return -1;
	}
	if (strncmp(c->search_url, "http://", 7) != 0 &&
	    strncmp(c->search_url, "https://", 8) != 0) {
		snprintf(err, errlen, "search.url: expected an http:// or "
		    "https:// URL, got \"%.64s\"", c->search_url);
		return -1;
	}
	env = getenv("HEAVY_SEARCH_API_KEY");
	if (strcmp(b, "brave") == 0 && (env == NULL || *env == '\0') &&
	    config_credential(HEAVY_CRED_SEARCH_KEY, cred, sizeof cred) ==
	    NULL && c->search_api_key == NULL &&
	    c->search_api_key_file == NULL) {
		snprintf(err, errlen, "search.api_key: the brave backend needs "
		    "a key (HEAVY_SEARCH_API_KEY, the credential "
		    HEAVY_CRED_SEARCH_KEY ", search.api_key or "
		    "search.api_key_file)");
		return -1;
	}
	return 0;
}

/*
 * Where workspaces live, when neither --state-dir, HEAVY_STATE_DIR nor the
 * file named it: systemd's $STATE_DIRECTORY (its first entry), else
 * $XDG_STATE_HOME/heavyd, else ~/.local/state/heavyd.
 */
int
config_resolve_state_dir(struct heavy_config *c, char *err, size_t errlen)
{
	const char	*v;

	if (c->state_dir != NULL)
		return 0;
	if ((v = getenv("STATE_DIRECTORY")) != NULL && *v != '\0')
		c->state_dir = xstrndup(v, strcspn(v, ":"));
	else if ((v = getenv("XDG_STATE_HOME")) != NULL && *v == '/')
		c->state_dir = xasprintf("%s/heavyd", v);
	else if ((v = getenv("HOME")) != NULL && *v == '/')
		c->state_dir = xasprintf("%s/.local/state/heavyd", v);
	else {
		snprintf(err, errlen, "no state directory: HOME is not set; "
		    "use --state-dir DIR or HEAVY_STATE_DIR");
		return -1;
	}
	return 0;
}

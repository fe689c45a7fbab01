/* common/: logging, bounded buffers, time and configuration shared by both processes. */
#ifndef HEAVY_COMMON_H
#define HEAVY_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HEAVY_NAME	"heavyd"
#define HEAVY_VERSION	"0.2.0"
#ifndef HEAVY_COMMIT		/* the Makefile passes git's short commit */
#define HEAVY_COMMIT	"unknown"
#endif

#define PRINTF(a, b)	__attribute__((format(printf, a, b)))

/*
 * log.c: everything goes to stderr (or, under journald, to the journal);
 * stdout of the supervisor belongs to MCP.
 */
enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
#define LOG_FORMAT_ENV	"HEAVY_LOG_FORMAT"	/* heavyd tells its zygote */
/* What an event is about: journal fields HEAVYD_TASK_ID, HEAVYD_WORKER_PID,
 * HEAVYD_IDENTITY (JSON: task_id, worker_pid, identity); NULL or 0: none. */
struct log_fields {
	const char	*task_id;
	int		 worker_pid;
	const char	*identity;
	bool		 audit;		/* the operator's: never sent to a client */
};
struct log_fields;
typedef void (*log_hook_fn)(enum log_level, const struct log_fields *,
    const char *msg);
void	log_init(const char *progname, enum log_level level);
void	log_set_level(enum log_level level);
void	log_set_format(enum log_format);
int	log_format_parse(const char *, enum log_format *);
const char *log_format_name(void);
void	log_set_nonblocking(void);	/* the supervisor: drop, never block */
void	log_set_hook(log_hook_fn hook);
void	log_set_journal_path(const char *);	/* tests; NULL: the real one */
uint64_t log_dropped(void);		/* lines lost to a full stderr */
void	log_set_drop_hook(void (*)(uint64_t total));
const char *log_destination(void);
void	log_flush(int timeout_ms);
void	log_with(enum log_level, const struct log_fields *, const char *fmt,
	    ...) PRINTF(3, 4);
void	log_relay(int pid, const char *label, const char *text);
int	log_relay_try(int pid, const char *label, const char *text);
void	log_child(void);
void	fatal(const char *fmt, ...) PRINTF(1, 2) __attribute__((noreturn));
void	fatalx(const char *fmt, ...) PRINTF(1, 2) __attribute__((noreturn));
void	log_warn(const char *fmt, ...) PRINTF(1, 2);
void	log_warnx(const char *fmt, ...) PRINTF(1, 2);
void	log_info(const char *fmt, ...) PRINTF(1, 2);
void	log_debug(const char *fmt, ...) PRINTF(1, 2);

/*
 * sdnotify.c: systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1...),
 * one datagram to $NOTIFY_SOCKET; every call is a no-op when it is unset.
 */
int	 sdnotify_init(char *err, size_t errlen);
void	 sdnotify_close(void);
bool	 sdnotify_enabled(void);
uint64_t sdnotify_watchdog_usec(void);	/* 0: no watchdog for us */
int	 sdnotify_send(const char *fmt, ...) PRINTF(1, 2);
int	 sdnotify_ready(const char *status);	/* status may be NULL */
int	 sdnotify_status(const char *status);
int	 sdnotify_reloading(void);	/* RELOADING=1, MONOTONIC_USEC= */
int	 sdnotify_stopping(const char *status);	/* status may be NULL */
int	 sdnotify_watchdog(void);

/*
 * listenfds.c: sockets handed over by systemd's socket activation
 * (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), from fd 3 on, each made
 * non-blocking and close-on-exec, with its FileDescriptorName=.
 */
#define LISTENFDS_START		3
#define LISTENFDS_MAX		1024
struct listen_fd {
	int	 fd;
	char	*name;		/* "unknown" when systemd gave none */
};
int	 listenfds_take(struct listen_fd **, int *n, char *err, size_t errlen);
int	 listenfds_take_at(int first, struct listen_fd **, int *n, char *err,
	    size_t errlen);
void	 listenfds_free(struct listen_fd *, int n);	/* does not close */

/* buf.c: a growable byte buffer that refuses to grow past its cap. */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 size;
	size_t	 max;		/* cap on len; 0 means SIZE_MAX */
};
void	 buf_init(struct buf *, size_t max);
int	 buf_add(struct buf *, const void *, size_t);
int	 buf_addstr(struct buf *, const char *);
int	 buf_printf(struct buf *, const char *fmt, ...) PRINTF(2, 3);
const char *buf_cstr(const struct buf *);	/* NUL-terminated view, "" when empty */
char	*buf_release(struct buf *);	/* caller owns the NUL-terminated data */
void	 buf_reset(struct buf *);
void	 buf_free(struct buf *);

/* secret.c: the keys heavyd holds, masked out of text from outside. */
void	 secret_add(const char *);	/* ignored when shorter than 8 */
void	 secret_clear(void);
void	 secret_redact(char **text);	/* may replace *text */
void	 secret_mask_bytes(char *, size_t);	/* in place, NULs allowed */
void	 secret_add_url(const char *url);	/* its user:password@ */
char	*secret_url(const char *url);	/* a copy, credentials masked */

/* util.c: an allocation that fails exits with this status (a worker's
 * RLIMIT_AS reached), so its supervisor can say "out of memory". */
#define HEAVY_EXIT_NOMEM	75

/* util.c */
int64_t	 now_ms(void);			/* CLOCK_MONOTONIC */
int64_t	 now_us(void);			/* CLOCK_MONOTONIC */
int64_t	 wall_ms(void);			/* CLOCK_REALTIME */
char	**env_keep(const char *const *keep, size_t nkeep, size_t room,
	    size_t *n);
void	 env_free(char **);
void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
char	*xasprintf(const char *fmt, ...) PRINTF(1, 2);
int	 fd_set_cloexec(int fd);
int	 fd_set_nonblock(int fd, int on);

/*
 * config.c: every knob, with its default.  Each task takes its own copy
 * (config_dup) so nothing is shared or mutated across tasks.
 */
#define HEAVY_DEFAULT_BASE_URL	"https://openrouter.ai/api/v1"
#define HEAVY_DEFAULT_MODEL	"moonshotai/kimi-k2"
#define HEAVY_MAX_AGENTS	16
#define HEAVY_MAX_HEDGE_MS	600000	/* hedge_after_ms: 10 minutes at most */

struct heavy_config {
	char	*base_url;
	char	*model;
	char	*system_prompt;
	char	*question_prompt;	/* {num_agents} {user_input} */
	char	*synthesis_prompt;	/* {num_responses} {agent_responses} */
	char	*aggregation_strategy;	/* "consensus" */
	char	*search_user_agent;
	int	 search_max_results;
	char	*api_key;		/* from the file; heavyd takes it out */
	char	*api_key_file;
	const char *config_file;	/* read, or where one is looked for;
					   for messages, not owned */

	int	 max_iterations;	/* agent tool-loop turns */
	int	 num_agents;		/* default for heavy_orchestrate */
	int	 task_timeout_s;	/* default for heavy_orchestrate */
	int	 planner_timeout_s;	/* cap on the planner's share */
	int	 synthesis_reserve_s;	/* time kept back for synthesis */
	int	 heartbeat_s;		/* progress heartbeat interval */
	int	 min_agents;		/* quorum: 0 waits for every agent */
	double	 straggler_grace_s;	/* after the quorum, before the cut */
	double	 incremental_interval_s; /* incremental: between drafts */
	int	 hedge_after_ms;	/* hedge an LLM call with no first byte
					   this long; 0: never */

	int	 max_retries;		/* per LLM call */
	int	 stall_timeout_s;	/* an LLM call silent this long is retried */
	int	 retry_base_ms;
	int	 retry_max_ms;

	size_t	 max_line_bytes;	/* one MCP message */
	size_t	 max_frame_bytes;	/* one supervisor<->worker frame */
	size_t	 max_response_bytes;	/* one LLM HTTP response body */
	size_t	 max_transcript_bytes;	/* an agent's conversation */
	size_t	 max_tool_output_bytes;	/* one tool result */
	size_t	 max_answer_bytes;	/* one agent answer kept */
	size_t	 max_synthesis_input_bytes;
	int	 max_workers;		/* live worker processes; 0: auto */
	char	 max_workers_why[192];	/* auto: how it was sized, else "" */
	size_t	 worker_cost;		/* bytes a live worker is counted for auto */
	int	 max_tasks;		/* concurrent orchestrations */
	int	 spares;		/* pre-forked workers the zygote keeps */
	int	 ask_cost;		/* 0 never, 1 always, 2 for openrouter.ai */
	size_t	 max_total_tokens;	/* a task's token budget; 0: none */
	double	 max_cost_usd;		/* a task's cost budget; 0: none */

	/* Models per role; NULL (or no list) means the main model. */
	char	*planner_model;
	char	*synthesis_model;
	char	**agent_models;		/* assigned to agents round-robin */
	int	 nagent_models;
	char	**fallback_models;	/* tried in order when a model fails */
	int	 nfallback_models;
	char	**planner_fallbacks;	/* none: fallback_models */
	int	 nplanner_fallbacks;
	char	**synthesis_fallbacks;	/* none: fallback_models */
	int	 nsynthesis_fallbacks;
	int	 task_ttl_s;		/* a task is kept its timeout + this */
	int	 max_retained_tasks;	/* rows of finished tasks in the store */
	int	 max_session_tasks;	/* one session's concurrent tasks */
	int	 max_queued_workers;	/* workers waiting for a slot */

	/* Agent tools: the workspace, and search_web's backend. */
	char	*state_dir;		/* NULL until resolved */
	size_t	 max_read_bytes;	/* read_file */
	size_t	 max_write_bytes;	/* write_file */
	size_t	 max_page_bytes;	/* one fetched search result page */
	size_t	 max_extract_bytes;	/* its text sent to the model */
	int	 search_timeout_s;	/* one search_web call */
	char	*search_backend;	/* "searxng", "brave", or NULL */
	char	*search_url;
	char	*ca_file;		/* PEM CAs for the LLM and search URLs */
	char	*search_api_key;	/* from the file; heavyd takes it out */
	char	*search_api_key_file;
	int	 search_allow_private;	/* fetch pages on private addresses */

	/* The worker sandbox's limits. */
	size_t	 worker_memory;		/* RLIMIT_AS and memory.max of a worker */
	int	 worker_cpu;		/* RLIMIT_CPU of a worker, seconds */
	int	 worker_nofile;		/* RLIMIT_NOFILE of a worker */
	size_t	 worker_fsize;		/* RLIMIT_FSIZE of a worker */
	int	 worker_pids;		/* pids.max of a worker's cgroup */
	size_t	 egress_max_body;	/* heavyd-egress: any response body */
	int	 egress_max_host_conns;	/* heavyd-egress: per host; 0 no cap */
	int	 egress_idle_conns;	/* heavyd-egress: kept open for reuse */
	int	 egress_max_calls;	/* LLM calls in flight per upstream */
	int	 egress_breaker_failures;	/* in a row opens it; 0 off */
	int	 egress_breaker_cooldown_s;	/* open this long, then a probe */
	int	 egress_rpm;		/* LLM calls a minute per upstream */
	int	 egress_tpm;		/* LLM tokens a minute per upstream */
	int	 worker_uid;		/* workers' uid and gid when heavyd */
	int	 worker_gid;		/* ... runs as root */
	int	 egress_uid;		/* heavyd-egress's, likewise; never */
	int	 egress_gid;		/* ... the workers' */

	/* The task store and MCP Tasks. */
	int	 max_task_ttl_s;	/* cap on a requested ttl */
	int	 poll_interval_ms;	/* pollInterval suggested to clients */
	int	 tasks_page_size;	/* tasks/list */
	int	 store_write_ms;	/* least gap between a task's writes */
	int	 store_sweep_s;		/* expired rows swept this often */
	int	 store_busy_ms;		/* wait for another heavyd's write */
	int	 store_max_queue;	/* PostgreSQL: queries held while it is away */
	int	 store_pipeline;	/* PostgreSQL: queries in flight at once */
	int	 store_prepared;	/* PostgreSQL: statements kept prepared; 0: none */
	int	 store_connect_timeout_s;	/* PostgreSQL: one connection attempt */
	int	 store_retry_max_ms;	/* PostgreSQL: the backoff's cap */
	int	 store_lease_ttl_ms;	/* PostgreSQL: a running task's lease */
	int	 cache_ttl_s;		/* result cache; 0: off */
	char	*store_synchronous;	/* "normal": a crash loses nothing
					 * written; "full": a power cut neither */
	char	*store_url;		/* postgresql://...: the PostgreSQL store;
					 * NULL: SQLite in the state directory */
	char	*node_id;		/* this node, in leases; NULL:
					 * hostname:pid-starttime */

	int	 tools_compat;		/* offer make-it-heavy's six tools */
	int	 sandbox_require;	/* refuse to run workers unconfined */
	int	 landlock_abi_max;	/* use at most this ABI; 0: none, -1:
					 * the kernel's */

	/* Streamable HTTP: where it listens (none: stdio), and its bounds.
	 * The lists stay in the server's config: config_dup leaves them. */
	char	**http_listen;		/* "127.0.0.1:8080", "unix:/path" */
	int	 nhttp_listen;
	char	*http_path;		/* the MCP endpoint */
	char	**http_origins;		/* Origin values let in */
	int	 nhttp_origins;
	int	 http_max_connections;	/* with a request in progress */
	int	 http_max_sessions;
	int	 http_session_idle_s;	/* an unused session ends */
	char	*http_session_key_file;	/* signs session ids; NULL: the
					 * credential, else a key of our own */
	size_t	 http_max_header_bytes;
	int	 http_request_timeout_s;	/* to read a request */
	int	 http_max_headers;	/* header lines of a request */
	int	 http_idle_timeout_s;	/* a kept-alive connection, unused */
	int	 http_max_open_connections;	/* open at once; then 503 */
	int	 http_max_streams;	/* open streams of one session */
	int	 http_resume_events;	/* kept per session for Last-Event-ID */
	int	 sse_keepalive_s;	/* a comment on a quiet stream */
	size_t	 http_max_output_bytes;	/* a slow reader's backlog */
	int	 metrics_max_label_values;	/* per open label (models) */

	int	 drain_timeout_s;	/* SIGTERM: running tasks' time to end */
	char	*log_format;		/* "text" or "json" */
	int	 log_queries;		/* the audit log shows queries */
	int	 resume;		/* a task whose process or node died
					   is resumed, not failed (the
					   default of its resume argument) */

	/* auth.mode: oauth, the resource server (supervisor/oauth.h); the
	 * server's, like the lists above: config_dup leaves them. */
	char	*auth_mode;		/* none, tokens, oauth; NULL: tokens
					   when a tokens file is found */
	char	*auth_issuer;		/* iss, exactly */
	char	*auth_audience;		/* aud: this server's resource URI */
	char	*auth_jwks_file;	/* the issuer's keys: a file, */
	char	*auth_jwks_url;		/* ... or its jwks_uri */
	char	*auth_identity_claim;	/* NULL: "sub" */
	char	*auth_limits_claim;	/* NULL: limits from auth.defaults only */
	char	**auth_scopes;		/* each one required */
	int	 nauth_scopes;
	int	 auth_clock_skew_s;	/* leeway on exp and nbf */
	size_t	 auth_max_token_bytes;
	int	 auth_jwks_max_age_s;	/* a fetched JWKS is fetched again */
	int	 auth_jwks_min_refetch_s;	/* least gap between fetches */
	int	 auth_jwks_timeout_s;	/* one fetch */
	size_t	 auth_max_jwks_bytes;

	/* Who may call over HTTP (tokens.c; supervisor/auth.c). */
	char	*auth_tokens_file;
	char	*auth_defaults;		/* limits of an identity that sets none */
	int	 auth_fail_max;		/* failed attempts per address ... */
	int	 auth_fail_window_s;	/* ... in this window, then 429 */
	int	 auth_max_clients;	/* addresses whose failures are kept */
};

#define HEAVY_DEFAULT_BRAVE_URL	"https://api.search.brave.com/res/v1/web/search"

void	 config_defaults(struct heavy_config *);
int	 config_from_env(struct heavy_config *, char *err, size_t errlen);
int	 config_set_knob_named(struct heavy_config *, const char *name,
	    const char *value, char *err, size_t errlen);
void	 config_set_str(char **, const char *);
void	 config_print(const struct heavy_config *, const char *source, FILE *);
bool	 config_number_start(const char *);
const char *config_knob_name(size_t, char *buf, size_t len);
const char *config_url_error(const char *);	/* NULL when usable */
void	 config_yaml_str(FILE *, const char *);
void	 config_yaml_line(FILE *, const char *key, const char *value,
	    const char *comment);
int	 config_check(struct heavy_config *, char *err, size_t errlen);
int	 config_resolve_state_dir(struct heavy_config *, char *err,
	    size_t errlen);
int	 config_parse_bool(const char *, int *);
void	 config_strv_add(char ***, int *, const char *);
void	 config_strv_free(char ***, int *);
/* systemd credentials (LoadCredential=) heavyd reads its keys from. */
#define HEAVY_CRED_API_KEY	"openrouter_api_key"
#define HEAVY_CRED_SEARCH_KEY	"search_api_key"
#define HEAVY_CRED_TOKENS	"tokens"
#define HEAVY_CRED_SESSION_KEY	"session_key"
const char *config_credential(const char *name, char *buf, size_t len);

/* config.c: aggregation strategies and model ids, checked. */
enum aggregation { AGG_CONSENSUS, AGG_RANKED, AGG_BEST, AGG_INCREMENTAL };
#define HEAVY_STRATEGIES	"consensus, ranked, best, incremental"
#define HEAVY_MAX_MODEL		256	/* bytes in a model id */
#define HEAVY_MAX_FALLBACKS	8	/* fallback models per role */
int	 config_strategy(const char *);	/* an enum aggregation, or -1 */
const char *config_strategy_name(int);
int	 config_fallbacks_error(const char *key, char **, int, char *err,
	    size_t errlen);
const char *config_model_error(const char *);	/* NULL when usable */
void	 config_set_agent_models(struct heavy_config *, char **, int);
int	 config_agent_models_csv(struct heavy_config *, const char *csv,
	    char *err, size_t errlen);

/* capacity.c: max_workers auto, sized to the host. */
struct capacity_host {
	uint64_t	 mem_bytes;	/* 0: unknown */
	const char	*mem_from;	/* "physical memory", "cgroup memory.max" */
	uint64_t	 pids;		/* 0: unknown */
	const char	*pids_from;
};
uint64_t capacity_parse_limit(const char *);	/* "max": UINT64_MAX */
const char *capacity_cgroup_path(const char *proc_self_cgroup, char *buf,
	    size_t len);
void	 capacity_probe(struct capacity_host *);
int	 capacity_workers(const struct capacity_host *, size_t cost,
	    char *why, size_t len);
void	 config_resolve_workers(struct heavy_config *);

/* configfile.c: the YAML file, make-it-heavy's keys and heavyd's own. */
const char *config_find_file(const char *explicit_path, char *buf, size_t);
const char *config_file_key(size_t);	/* the i-th key a file may set */
int	 config_load_file(struct heavy_config *, const char *path, char *err,
	    size_t errlen);
struct heavy_config *config_dup(const struct heavy_config *);
void	 config_free(struct heavy_config *);
void	 config_clear(struct heavy_config *);

/*
 * tokens.c: the tokens file, one identity a line: its name, the SHA-256
 * of its bearer token, its limits.  Enforced in memory today: concurrent
 * tasks, live workers, requests per minute, num_agents and timeout maxima;
 * parsed and kept for the quotas to come: orchestrations_per_hour,
 * tokens_per_day, usd_per_day.
 */
#define TOKEN_PREFIX		"hvd_"
#define TOKEN_NAME_MAX		64
#define TOKEN_DIGEST_LEN	32
#define TOKEN_RANDOM_BYTES	32		/* 256 bits */
#define TOKEN_MAX_RATE		100000		/* requests_per_minute */
enum token_limit {
	TOKEN_CONCURRENT_TASKS,
	TOKEN_LIVE_WORKERS,
	TOKEN_REQUESTS_PER_MINUTE,
	TOKEN_MAX_NUM_AGENTS,
	TOKEN_MAX_TIMEOUT,		/* seconds */
	TOKEN_ORCHESTRATIONS_PER_HOUR,
	TOKEN_TOKENS_PER_DAY,
	TOKEN_USD_PER_DAY,
	TOKEN_NLIMITS
};
struct token_limits {
	bool	 set[TOKEN_NLIMITS];	/* unset: no limit of that kind */
	double	 v[TOKEN_NLIMITS];
};
struct token_ident {
	char			name[TOKEN_NAME_MAX + 1];
	uint8_t			digest[TOKEN_DIGEST_LEN];
	struct token_limits	lim;
};
struct tokens {
	struct token_ident	*v;
	int			 n;
};
const char *token_limit_name(int);
bool	 token_name_valid(const char *, size_t);
void	 token_digest(const char *token, size_t len,
	    uint8_t out[TOKEN_DIGEST_LEN]);
int	 token_limit_parse(const char *kv, size_t len, struct token_limits *,
	    char *err, size_t errlen);
int	 tokens_parse(const char *text, size_t len, const char *file,
	    struct tokens *, char *err, size_t errlen);
int	 tokens_load(const char *path, struct tokens *, char *err,
	    size_t errlen);
void	 tokens_free(struct tokens *);
void	 token_format(const struct token_ident *, struct buf *);
void	 token_limit_text(int, double, char *buf, size_t len);
int	 token_limits_parse(const char *, struct token_limits *, char *err,
	    size_t errlen);
const char *tokens_path(const struct heavy_config *, char *buf, size_t len);

#endif

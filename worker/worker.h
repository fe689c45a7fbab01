/* worker/: the zygote, and the worker process that runs one LLM-calling job. */
#ifndef HEAVY_WORKER_H
#define HEAVY_WORKER_H

#include <sys/types.h>

#include <stdint.h>
#include <stdbool.h>
#include <time.h>

#include <json-c/json.h>

#include "../common/common.h"
#include "../proto/proto.h"

/* The fd the supervisor passes to the zygote it executes. */
#define ZYGOTE_FD	3
#define ZYGOTE_MAX_SPARES	64	/* HEAVY_SPARES' upper bound */

/* zygote.c */
int	zygote_main(int fd);

/* worker.c: run one job on fd and exit. */
void	worker_main(int fd) __attribute__((noreturn));
void	worker_step(const char *fmt, ...) PRINTF(1, 2);
void	worker_report_usage(const struct usage *, const struct job_call *);
int	worker_workspace(void);	/* O_PATH fd of the task's directory, or -1 */
#ifdef HEAVY_TEST_HOOKS
void	worker_send_raw(const void *, size_t);
#endif

struct json_object *worker_messages(const struct job *, const char *user);
void	worker_message_add(struct json_object *, const char *role,
	    const char *text);

/* llm.c: one chat completion, retried within the deadline. */
struct llm_reply {
	char			*content;	/* assistant text, may be NULL */
	struct json_object	*message;	/* the assistant message, owned */
	struct json_object	*tool_calls;	/* borrowed from message, or NULL */
};
struct llm_error {
	enum job_error	kind;
	long		http_status;
	char		msg[512];
};
int	llm_chat(const struct job *, int64_t deadline_ms,
	    struct json_object *messages, const char *tools,
	    struct llm_reply *, struct usage *, struct llm_error *);
void	llm_reply_clear(struct llm_reply *);
enum job_fallback llm_fallback_reason(const struct llm_error *,
	    bool retries_out);
const char *llm_route_model(const struct job *, uint32_t);
int	llm_parse_body(const char *body, size_t len, struct llm_reply *,
	    struct usage *, struct llm_error *);

/* egress_client.c: requests through heavyd-egress. */
void	egress_client_set(int fd);
int	egress_calls(struct egress_req *, struct egress_resp *, size_t n,
	    int64_t deadline_ms, char *err, size_t errlen);

/* backoff.c: when and whether to retry. */
int	backoff_retryable_status(long status);
int64_t	backoff_delay_ms(int attempt, int base_ms, int max_ms, uint32_t rnd);
int64_t	backoff_hint_ms(const char *retry_after, const char *ratelimit_reset,
	    time_t now);

/* calc.c: safe arithmetic; -1 with a message in err on any error. */
int	calc_eval(const char *expr, double *out, char *err, size_t errlen);

/* plan.c: the planner's output, validated strictly. */
struct json_object *json_first_array(const char *text);
int	plan_parse(const char *text, unsigned n, char ***questions,
	    char *err, size_t errlen);
void	plan_free(char **questions, unsigned n);

/* review.c: a peer review's ranking, validated strictly. */
int	review_parse(const char *text, unsigned n, unsigned *order,
	    char *err, size_t errlen);
int	review_run(const struct job *, int64_t deadline, unsigned *order,
	    uint32_t *flags, struct usage *, struct llm_error *);
/* schema.c: tool arguments against a tool's JSON Schema. */
int	schema_validate(struct json_object *schema, struct json_object *v,
	    char *err, size_t errlen);

/* files.c: read_file and write_file, beneath the workspace fd. */
int	files_read(int root, const char *path, unsigned long head,
	    unsigned long tail, size_t max, struct buf *out);
int	files_write(int root, const char *path, const char *content,
	    size_t len, size_t max, struct buf *out);
int	text_utf8(const char *, size_t, size_t *whole);
size_t	text_fit(const char *, size_t len, size_t max);
int	text_add_capped(struct buf *, const char *, size_t);

/* html.c: a page's text; 1 if cut at max, -1 if unparseable. */
int	html_load(void);
int	html_to_text(const char *html, size_t len, const char *charset,
	    size_t max, struct buf *out);

/* search.c: search_web over the job's backend. */
struct search_result {
	char	*title;
	char	*url;
	char	*snippet;
};
struct sockaddr;
int	search_web(const struct job *, int64_t deadline, const char *query,
	    unsigned max_results, struct buf *out);
int	search_parse(uint32_t backend, const char *body, size_t len,
	    unsigned max, struct search_result **, unsigned *n, char *err,
	    size_t errlen);
void	search_results_free(struct search_result *, unsigned n);

/* tools.c: the agent's tools. */
struct tool {
	const char	*name;
	const char	*description;
	const char	*schema;	/* JSON Schema of the arguments */
	int		(*run)(struct json_object *, struct buf *, int *);
};
/* testtools.c: misbehaving tools, in the HEAVY_TEST_HOOKS build only. */
extern const struct tool	testtools[];
extern const size_t		ntesttools;
uint32_t tools_features(const struct job *);
struct json_object *tools_definitions(uint32_t features);
void	 tools_prepare(void);		/* in the zygote, before any fork */
const char *tools_json(uint32_t features);	/* the request's "tools" */
int	tools_call(const char *name, const char *arguments,
	    const struct job *, int64_t deadline, struct buf *out,
	    int *complete);

/* sandbox.c: the confinement a worker enters before it reads its job. */
extern const char *const sandbox_reads[];	/* read-only paths */
extern const char *const sandbox_read_env[];	/* variables naming more */
void	sandbox_zygote(void);
void	sandbox_prepare(void);
int	sandbox_enter(const struct sandbox *, int workspace_fd, char *err,
	    size_t errlen);
void	sandbox_oom_adj(void);
int	sandbox_drop_privs(const struct sandbox *, char *err, size_t errlen);

/* egress_sandbox.c: heavyd-egress's own profile. */
int	egress_sandbox_enter(const struct sandbox *, char *err, size_t errlen);
#ifdef HEAVY_TEST_HOOKS
void	egress_sandbox_probe(const char *what, char *out, size_t len);
#endif

/* landlock.c */
int	landlock_abi(void);		/* 0: none */
void	landlock_set_max(int);		/* use no newer ABI than this */
void	landlock_prepare(void);
void	landlock_release(void);
int	landlock_enter(const struct sandbox *, int workspace_fd, char *err,
	    size_t errlen);
int	landlock_enter_egress(char *err, size_t errlen);

/* mountns.c: the fallback without Landlock. */
int	mountns_enter(const struct sandbox *, int workspace_fd, char *err,
	    size_t errlen);

/* seccomp.c: the system call allowlist, compiled once in the zygote. */
int	seccomp_allowlist_build(char *err, size_t errlen);
int	seccomp_allowlist_prepare(char *err, size_t errlen);
int	seccomp_allowlist_enter(bool dns, char *err, size_t errlen);

/* cgroup.c: a cgroup v2 per worker, when the supervisor delegates one. */
void	cgroup_init(const char *dir);
bool	cgroup_enabled(void);
int	cgroup_enter_child(void);
int	cgroup_limits(const struct sandbox *, char *err, size_t errlen);
uint32_t cgroup_reap(pid_t);

/* agent.c: the tool-calling loop. */
int	agent_run(const struct job *, int64_t deadline_ms, struct buf *answer,
	    uint32_t *flags, struct usage *, struct llm_error *);

#endif

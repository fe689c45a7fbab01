/* supervisor/: the MCP server, its tasks, and the worker processes it runs. */
#ifndef HEAVY_SUPERVISOR_H
#define HEAVY_SUPERVISOR_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdbool.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "../common/common.h"
#include "../proto/proto.h"

extern struct event_base	*ev_base;

/* server.c */
int		 server_run(struct heavy_config *);
const char	*server_api_key(void);
void		 server_shutdown(void);

/* features.c: the workers' confinement on this host, probed at startup. */
int	 features_init(const struct heavy_config *, bool setup, char *err,
	    size_t errlen);
void	 features_sandbox(struct sandbox *);
void	 features_print(FILE *);
void	 features_log(void);
int	 features_ports(const struct heavy_config *, struct sandbox *,
	    char *err, size_t errlen);
int	 features_cgroup_path(const char *text, char *out, size_t outlen);
int	 features_cgroup2_mount(const char *text, char *out, size_t outlen);
bool	 features_has_controllers(const char *line, const char *need);

/* spawner.c: our handle on the zygote that forks workers. */
int	 spawner_start(const char *worker_path, int spares);
int	 spawner_spawn(uint32_t id, int fd);
void	 spawner_stop(void);

/* workers.c: every worker process, in one table. */
enum worker_state {
	WORKER_QUEUED,		/* waiting for a free slot */
	WORKER_SPAWNING,	/* asked the zygote; no pid yet */
	WORKER_RUNNING,		/* pid known, job sent */
	WORKER_FINISHING,	/* pipe closed or exit seen; waiting for the other */
};
enum worker_outcome {
	OUTCOME_OK,		/* MSG_JOB_DONE and a clean exit */
	OUTCOME_FAILED,		/* MSG_JOB_FAILED, or died without a result */
	OUTCOME_TIMEOUT,	/* killed at its deadline */
	OUTCOME_KILLED,		/* died by a signal we did not send */
};
struct worker_result {
	enum worker_outcome	 outcome;
	int			 signal;
	uint32_t		 flags;
	char			**texts;
	uint32_t		 ntexts;
	uint32_t		 error_kind;
	uint32_t		 http_status;
	char			*error;
	struct usage		 usage;
	int64_t			 elapsed_ms;
};
struct worker;
typedef void (*worker_done_fn)(void *arg, struct worker_result *);
typedef void (*worker_step_fn)(void *arg, const char *note);
struct worker_req {
	const struct sandbox	*sandbox;
	const struct job	*job;
	int64_t			 deadline_ms;
	worker_done_fn		 done;
	worker_step_fn		 step;
	void			*arg;
};
void	 workers_init(const struct heavy_config *);
struct worker *worker_start(const struct worker_req *);
void	 worker_cancel(struct worker *);
void	 workers_kill_all(void);
void	 workers_free_all(void);
void	 workers_spawned(uint32_t id, pid_t, int pidfd, int err);
void	 workers_exited(uint32_t id, pid_t, int status, uint32_t flags);
void	 workers_lost(void);
void	 worker_result_clear(struct worker_result *);
const char *signal_name(int);

/* prompt.c: the texts sent to the planner and synthesis. */
char	*prompt_render(const char *tmpl, const char *const *keys,
	    const char *const *values, size_t n);
char	*prompt_planner(const struct heavy_config *, const char *query,
	    int num_agents);
char	*prompt_fallback_question(const char *query, int index);
char	*prompt_synthesis(const struct heavy_config *,
	    const char *const *answers, int n, size_t budget, int *dropped);

/* task.c: one orchestration: planner, agents, synthesis. */
struct task_params {
	char	*query;
	int	 num_agents;
	double	 timeout_s;
	char	*model;		/* NULL: the configured models per role */
	char	*strategy;	/* NULL: the configured aggregation_strategy */
};
struct task;
typedef void (*task_progress_fn)(void *arg, double progress, double total,
	    const char *message);
typedef void (*task_done_fn)(void *arg, struct json_object *result);
struct task *task_start(const struct heavy_config *, struct task_params *,
	    task_progress_fn, task_done_fn, void *arg);
const char *task_id(const struct task *);	/* 32 hex digits, 128 random bits */
void	 task_cancel(struct task *);
void	 task_params_clear(struct task_params *);

/* tool.c: the MCP tools and their arguments. */
struct json_object *tool_list(void);
int	 tool_orchestrate_args(const struct heavy_config *, struct json_object *,
	    struct task_params *, char *err, size_t errlen);
struct json_object *tool_error_result(const char *text);

/* rpc.c: JSON-RPC 2.0 messages. */
#define RPC_PARSE_ERROR		-32700
#define RPC_INVALID_REQUEST	-32600
#define RPC_METHOD_NOT_FOUND	-32601
#define RPC_INVALID_PARAMS	-32602
#define RPC_INTERNAL_ERROR	-32603
enum rpc_kind { RPC_REQUEST, RPC_NOTIFICATION, RPC_RESPONSE, RPC_INVALID };
struct rpc_msg {
	enum rpc_kind		 kind;
	struct json_object	*root;		/* owned */
	struct json_object	*id;		/* borrowed from root */
	const char		*method;
	struct json_object	*params;	/* borrowed, may be NULL */
	int			 error_code;	/* when RPC_INVALID */
	const char		*error;
};
int	 rpc_parse(const char *line, size_t len, struct rpc_msg *);
void	 rpc_msg_clear(struct rpc_msg *);
struct json_object *rpc_result(struct json_object *id, struct json_object *);
struct json_object *rpc_error(struct json_object *id, int code,
	    const char *message);
struct json_object *rpc_notification(const char *method, struct json_object *);
char	*rpc_id_key(struct json_object *id);

/* mcp.c: the MCP session over stdio. */
int	 mcp_start(const struct heavy_config *);
void	 mcp_stop(void);
int	 mcp_negotiate_version(const char *requested, const char **chosen);

#endif

/*
 * make-it-heavy's task-id tools, for clients that cut every call at about
 * a minute: grok_heavy_orchestrate starts a task and returns its id at
 * once, get_task_progress and cancel_task follow it, list_active_tasks,
 * get_agent_tools and configure_orchestrator complete the set.  Same names
 * and arguments as the original, without its defects: ids are 128 random
 * bits, a task of another owner answers like an unknown id, finished tasks
 * expire, configure_orchestrator changes only its own session's defaults,
 * and every task runs on its own copy of the configuration.  They read the
 * same task store as MCP Tasks: a task started before a restart, or by
 * another heavyd of the same owner, is found all the same.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

#define STRATEGIES_SCHEMA \
"{\"type\":\"string\",\"enum\":[\"consensus\",\"ranked\",\"best\"," \
"\"incremental\"],\"description\":\"consensus: one synthesis of every " \
"answer; ranked: the agents rank each other's answers first; best: the " \
"top-ranked answer; incremental: drafts from the answers in so far, " \
"then a synthesis from the last draft and every answer.\"}"
#define STATUS_SCHEMA \
"{\"type\":\"string\",\"enum\":[\"INITIALIZED\",\"RUNNING\",\"COMPLETED\"," \
"\"FAILED\",\"CANCELLED\"]}"
#define TASK_ID_SCHEMA \
"{\"type\":\"object\",\"properties\":{\"task_id\":{\"type\":\"string\"," \
"\"pattern\":\"^[0-9a-f]{32}$\",\"description\":\"The id " \
"grok_heavy_orchestrate returned.\"}},\"required\":[\"task_id\"]," \
"\"additionalProperties\":false}"
#define NO_ARGS_SCHEMA \
"{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}"
#define CONFIG_SCHEMA \
"{\"type\":\"object\",\"properties\":{" \
"\"parallel_agents\":{\"type\":\"integer\"}," \
"\"task_timeout\":{\"type\":\"integer\"}," \
"\"aggregation_strategy\":{\"type\":\"string\"}}," \
"\"required\":[\"parallel_agents\",\"task_timeout\"," \
"\"aggregation_strategy\"]}"

/*
 * Annotations: the readers are read-only and look only at this heavyd's
 * task store (a closed world); an orchestration spends money on an outside
 * LLM; a cancellation kills work that cannot be got back, and cancelling
 * twice changes nothing more.
 */
#define READER_HINTS \
"{\"readOnlyHint\":true,\"openWorldHint\":false}"
#define START_HINTS \
"{\"readOnlyHint\":false,\"destructiveHint\":false," \
"\"idempotentHint\":false,\"openWorldHint\":true}"
#define CONFIGURE_HINTS \
"{\"readOnlyHint\":false,\"destructiveHint\":false," \
"\"idempotentHint\":true,\"openWorldHint\":false}"
#define CANCEL_HINTS \
"{\"readOnlyHint\":false,\"destructiveHint\":true," \
"\"idempotentHint\":true,\"openWorldHint\":false}"

static const struct mkh_tool {
	const char	*name;
	const char	*title;
	const char	*description;
	const char	*input;
	const char	*output;
	const char	*annotations;
} mkh_defs[] = {
	{ "grok_heavy_orchestrate", "Start a heavy analysis in the background",
	  "Starts the same multi-agent analysis as heavy_orchestrate and "
	  "returns its task_id at once; follow it with get_task_progress. "
	  "Defaults come from this session (configure_orchestrator).",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"query\":{\"type\":\"string\",\"minLength\":1,\"description\":"
	  "\"The question or task to analyze in depth.\"},"
	  "\"num_agents\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":16,"
	  "\"default\":4},"
	  "\"timeout\":{\"type\":\"number\",\"minimum\":1,\"maximum\":86400,"
	  "\"default\":300,\"description\":\"Seconds the orchestration may "
	  "take.\"},"
	  "\"aggregation_strategy\":" STRATEGIES_SCHEMA ","
	  "\"resume\":{\"type\":\"boolean\",\"description\":\"Whether the "
	  "task is resumed, not failed, when the heavyd running it dies "
	  "before its deadline. Default: true (orchestrator.resume).\"}},"
	  "\"required\":[\"query\"],\"additionalProperties\":false}",
	  "{\"type\":\"object\",\"properties\":{\"task_id\":{\"type\":"
	  "\"string\"},\"status\":" STATUS_SCHEMA ",\"message\":{\"type\":"
	  "\"string\"}},\"required\":[\"task_id\",\"status\"]}",
	  START_HINTS },
	{ "get_task_progress", "Progress and result of a task",
	  "Status (INITIALIZED while the planner writes the questions, "
	  "RUNNING, COMPLETED, FAILED, CANCELLED), each agent's progress, and "
	  "once finished the result (heavy_orchestrate's structured result), "
	  "error and execution_time in seconds.",
	  TASK_ID_SCHEMA,
	  "{\"type\":\"object\",\"properties\":{\"task_id\":{\"type\":"
	  "\"string\"},\"status\":" STATUS_SCHEMA ","
	  "\"progress\":{\"type\":\"object\",\"properties\":{"
	  "\"phase\":{\"type\":\"string\"},\"elapsed_ms\":{\"type\":"
	  "\"integer\"},\"agents\":{\"type\":\"array\",\"items\":{\"type\":"
	  "\"object\",\"properties\":{\"index\":{\"type\":\"integer\"},"
	  "\"question\":{\"type\":[\"string\",\"null\"]},"
	  "\"status\":{\"type\":\"string\"},"
	  "\"step\":{\"type\":[\"string\",\"null\"]},"
	  "\"error\":{\"type\":[\"string\",\"null\"]},"
	  "\"elapsed_ms\":{\"type\":[\"integer\",\"null\"]}},"
	  "\"required\":[\"index\",\"status\"]}},"
	  "\"draft\":{\"type\":[\"object\",\"null\"],\"description\":"
	  "\"incremental: the latest draft\",\"properties\":{"
	  "\"n\":{\"type\":\"integer\"},\"answers\":{\"type\":\"integer\"},"
	  "\"of\":{\"type\":\"integer\"},\"made_ms\":{\"type\":"
	  "\"integer\"},\"text\":{\"type\":\"string\"}}}},"
	  "\"required\":[\"phase\",\"agents\"]},"
	  "\"result\":{\"type\":[\"object\",\"null\"]},"
	  "\"error\":{\"type\":[\"string\",\"null\"]},"
	  "\"execution_time\":{\"type\":\"number\"},"
	  "\"tool\":{\"type\":\"string\"}},"
	  "\"required\":[\"task_id\",\"status\",\"progress\",\"result\","
	  "\"error\",\"execution_time\"]}",
	  READER_HINTS },
	{ "list_active_tasks", "Your running tasks",
	  "The tasks of this caller that are still INITIALIZED or RUNNING; "
	  "never another identity's.",
	  NO_ARGS_SCHEMA,
	  "{\"type\":\"object\",\"properties\":{\"active_tasks\":{\"type\":"
	  "\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
	  "\"task_id\":{\"type\":\"string\"},\"status\":" STATUS_SCHEMA ","
	  "\"tool\":{\"type\":\"string\"},"
	  "\"query\":{\"type\":[\"string\",\"null\"]},"
	  "\"agent_count\":{\"type\":\"integer\"},"
	  "\"start_time\":{\"type\":\"number\"},"
	  "\"execution_time\":{\"type\":\"number\"}},"
	  "\"required\":[\"task_id\",\"status\"]}},"
	  "\"total_active\":{\"type\":\"integer\"}},"
	  "\"required\":[\"active_tasks\",\"total_active\"]}",
	  READER_HINTS },
	{ "get_agent_tools", "The agents' tools",
	  "The tools the agents are actually offered, with their descriptions "
	  "and argument schemas.",
	  NO_ARGS_SCHEMA,
	  "{\"type\":\"object\",\"properties\":{\"available_tools\":{\"type\":"
	  "\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
	  "\"name\":{\"type\":\"string\"},\"description\":{\"type\":"
	  "\"string\"},\"inputSchema\":{\"type\":\"object\"}},"
	  "\"required\":[\"name\",\"description\",\"inputSchema\"]}},"
	  "\"total_tools\":{\"type\":\"integer\"}},"
	  "\"required\":[\"available_tools\",\"total_tools\"]}",
	  READER_HINTS },
	{ "configure_orchestrator", "This session's defaults",
	  "Changes the defaults of this session's next orchestrations; "
	  "running tasks and other sessions keep theirs. With no argument, "
	  "shows them.",
	  "{\"type\":\"object\",\"properties\":{"
	  "\"parallel_agents\":{\"type\":[\"integer\",\"null\"],\"minimum\":1,"
	  "\"maximum\":16},"
	  "\"task_timeout\":{\"type\":[\"integer\",\"null\"],\"minimum\":1,"
	  "\"maximum\":86400,\"description\":\"Seconds.\"},"
	  "\"aggregation_strategy\":{\"type\":[\"string\",\"null\"],\"enum\":"
	  "[\"consensus\",\"ranked\",\"best\",\"incremental\",null]}},"
	  "\"additionalProperties\":false}",
	  "{\"type\":\"object\",\"properties\":{\"message\":{\"type\":"
	  "\"string\"},\"updates\":{\"type\":\"object\"},"
	  "\"current_config\":" CONFIG_SCHEMA "},"
	  "\"required\":[\"updates\",\"current_config\"]}",
	  CONFIGURE_HINTS },
	{ "cancel_task", "Cancel a task",
	  "Kills the task's workers and marks it CANCELLED; a task that has "
	  "finished is left as it is.",
	  TASK_ID_SCHEMA,
	  "{\"type\":\"object\",\"properties\":{\"task_id\":{\"type\":"
	  "\"string\"},\"status\":" STATUS_SCHEMA ",\"cancelled\":{\"type\":"
	  "\"boolean\"},\"message\":{\"type\":\"string\"}},"
	  "\"required\":[\"task_id\",\"status\",\"cancelled\"]}",
	  CANCEL_HINTS },
};
#define MKH_NTOOLS	(sizeof mkh_defs / sizeof mkh_defs[0])

/* The hints, with the title as MCP's annotations also carry it. */
static struct json_object *
mkh_annotations(const struct mkh_tool *d)
{
	struct json_object	*a = json_tokener_parse(d->annotations);

	json_object_object_add(a, "title", json_object_new_string(d->title));
	return a;
}

void
mkh_tools(struct json_object *tools)
{
	struct json_object	*t;

	for (size_t i = 0; i < MKH_NTOOLS; i++) {
		t = json_object_new_object();
		json_object_object_add(t, "name",
		    json_object_new_string(mkh_defs[i].name));
		json_object_object_add(t, "title",
		    json_object_new_string(mkh_defs[i].title));
		json_object_object_add(t, "description",
		    json_object_new_string(mkh_defs[i].description));
		json_object_object_add(t, "inputSchema",
		    json_tokener_parse(mkh_defs[i].input));
		json_object_object_add(t, "outputSchema",
		    json_tokener_parse(mkh_defs[i].output));
		json_object_object_add(t, "annotations",
		    mkh_annotations(&mkh_defs[i]));
		json_object_array_add(tools, t);
	}
}

/* The structured result, and the same JSON as text for older clients. */
static struct json_object *
mkh_result(struct json_object *sc)
{
	struct json_object	*res = json_object_new_object(), *content, *c;

	c = json_object_new_object();
	json_object_object_add(c, "type", json_object_new_string("text"));
	json_object_object_add(c, "text", json_object_new_string(
	    json_object_to_json_string_ext(sc, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE)));
	content = json_object_new_array();
	json_object_array_add(content, c);
	json_object_object_add(res, "content", content);
	json_object_object_add(res, "structuredContent", sc);
	return res;
}

static struct json_object *mkh_error(const char *, ...) PRINTF(1, 2);

static struct json_object *
mkh_error(const char *fmt, ...)
{
	char	msg[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return tool_error_result(msg);
}

/* NULL when every argument is one of known; else the error result. */
static struct json_object *
mkh_check_keys(struct json_object *args, const char *const *known, size_t n,
    const char *expected)
{
	bool	ok;

	if (args == NULL)
		return NULL;
	if (!json_object_is_type(args, json_type_object))
		return mkh_error("invalid argument 'arguments': must be an "
		    "object");
	json_object_object_foreach(args, key, val) {
		(void)val;
		ok = false;
		for (size_t i = 0; i < n; i++)
			ok = ok || strcmp(key, known[i]) == 0;
		if (!ok)
			return mkh_error("invalid argument '%.100s': unknown "
			    "argument; expected %s", key, expected);
	}
	return NULL;
}

/* A strategy argument: NULL (absent or null) or a valid name. */
static struct json_object *
mkh_strategy_arg(struct json_object *args, const char *name, const char **out)
{
	struct json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(args, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return NULL;
	if (!json_object_is_type(v, json_type_string) ||
	    config_strategy(json_object_get_string(v)) == -1)
		return mkh_error("invalid argument '%s': expected "
		    HEAVY_STRATEGIES, name);
	*out = json_object_get_string(v);
	return NULL;
}

/* heavy_orchestrate's own checks, on the arguments it shares. */
static struct json_object *
mkh_orchestrate_params(struct mcp_session *s, struct json_object *args,
    struct task_params *p)
{
	static const char *const known[] = { "query", "num_agents", "timeout",
	    "aggregation_strategy", "resume" };
	struct json_object	*err, *shared;
	const char		*strategy;
	char			 msg[256];
	int			 rc;

	if ((err = mkh_check_keys(args, known, 5, "query, num_agents, "
	    "timeout, aggregation_strategy, resume")) != NULL ||
	    (err = mkh_strategy_arg(args, "aggregation_strategy",
	    &strategy)) != NULL)
		return err;
	shared = json_object_new_object();
	if (args != NULL) {
		json_object_object_foreach(args, key, val)
			if (strcmp(key, "aggregation_strategy") != 0)
				json_object_object_add(shared, key,
				    json_object_get(val));
	}
	rc = tool_orchestrate_args(s->cfg, shared, p, msg, sizeof msg);
	json_object_put(shared);
	if (rc == -1)
		return tool_error_result(msg);
	if (strategy != NULL) {
		free(p->strategy);
		p->strategy = xstrdup(strategy);
	}
	return NULL;
}

/* The task is in the store (or it was refused): its id, or why not. */
static void
mkh_started(struct mcp_req *q, struct task_record *rec,
    struct json_object *error, void *arg)
{
	struct json_object	*sc;
	char			 msg[256];

	if (rec == NULL) {
		mcp_reply(q->s, q->m.id, error);
		return;
	}
	sc = json_object_new_object();
	json_object_object_add(sc, "task_id", json_object_new_string(rec->id));
	json_object_object_add(sc, "status", json_object_new_string(
	    registry_status_name(registry_status(rec))));
	if (rec->task == NULL)
		snprintf(msg, sizeof msg, "Answered from the cache "
		    "(HEAVY_CACHE_TTL); get_task_progress has the result");
	else
		snprintf(msg, sizeof msg, "Started orchestration with %d "
		    "agents; follow it with get_task_progress",
		    (int)(intptr_t)arg);
	json_object_object_add(sc, "message", json_object_new_string(msg));
	mcp_reply(q->s, q->m.id, mkh_result(sc));
}

static struct json_object *
mkh_orchestrate(struct mcp_req *q, struct json_object *args)
{
	struct mcp_run		 run = { .tool = "grok_heavy_orchestrate",
	    .log_level = -1, .started = mkh_started };
	struct task_params	 p;
	struct json_object	*err;

	if ((err = mkh_orchestrate_params(q->s, args, &p)) != NULL)
		return err;
	run.started_arg = (void *)(intptr_t)p.num_agents;
	mcp_run(q->s, &q->m, &run, &p);	/* holds the request itself */
	mcp_req_end(q);
	return NULL;
}

/* What a tool does with the task its task_id names. */
typedef struct json_object *(*mkh_found_fn)(struct mcp_session *,
	    const struct store_task *, struct task_record *live);
struct mkh_lookup {
	struct mcp_req	*q;
	mkh_found_fn	 fn;
	char		 id[33];
};

static void
mkh_lookup_done(void *arg, int rc, const struct store_task *t,
    struct task_record *live)
{
	struct mkh_lookup	*l = arg;
	struct json_object	*res;

	mcp_req_begin(l->q);
	if (rc == STORE_OK)
		res = l->fn(l->q->s, t, live);
	else if (rc == STORE_EXPIRED)
		res = mkh_error("unknown task_id %s: the task expired (it was "
		    "kept for its ttl from its creation)", l->id);
	else if (rc == STORE_NOT_FOUND)
		res = mkh_error("unknown task_id %s: no such task, or it "
		    "expired and was deleted", l->id);
	else
		res = mkh_error("task_id %s: the task store could not be "
		    "read; see heavyd's log", l->id);
	mcp_reply(l->q->s, l->q->m.id, res);
	mcp_req_end(l->q);
	free(l);
}

/*
 * The task of a task_id argument, live or stored, then fn answers with it
 * (NULL); or the error result, at once.
 */
static struct json_object *
mkh_lookup(struct mcp_req *q, struct json_object *args, mkh_found_fn fn)
{
	static const char *const known[] = { "task_id" };
	struct mkh_lookup	*l;
	struct json_object	*v, *err;
	const char		*str;
	size_t			 len;

	if ((err = mkh_check_keys(args, known, 1, "task_id")) != NULL)
		return err;
	if (args == NULL || !json_object_object_get_ex(args, "task_id", &v))
		return tool_error_result("invalid argument 'task_id': "
		    "required");
	str = json_object_get_string(v);
	len = json_object_is_type(v, json_type_string) ? strlen(str) : 0;
	for (size_t i = 0; i < len && len == 32; i++)
		if (!isxdigit((unsigned char)str[i]))
			len = 0;
	if (len != 32)
		return tool_error_result("invalid argument 'task_id': expected "
		    "the 32 hex digits grok_heavy_orchestrate returned");
	l = xmalloc(sizeof *l);
	for (size_t i = 0; i <= 32; i++)
		l->id[i] = (char)tolower((unsigned char)str[i]);
	l->q = q;
	l->fn = fn;
	durable_get(l->id, q->s->owner, mkh_lookup_done, l);
	return NULL;
}

static struct json_object *
mkh_progress_found(struct mcp_session *s, const struct store_task *t,
    struct task_record *live)
{
	(void)s; (void)live;
	return mkh_result(result_status_json(t));
}

static struct json_object *
mkh_progress(struct mcp_req *q, struct json_object *args)
{
	return mkh_lookup(q, args, mkh_progress_found);
}

static struct json_object *
mkh_cancel_found(struct mcp_session *s, const struct store_task *t,
    struct task_record *live)
{
	struct json_object	*sc;
	enum task_status	 st;
	char			 msg[160];

	if (live == NULL && !durable_terminal(t) && store_cancel(t->id,
	    s->owner)) {
		log_info("task %s: cancel asked of the heavyd that runs it (pid "
		    "%d)", t->id, (int)t->pid);
		sc = json_object_new_object();
		json_object_object_add(sc, "task_id",
		    json_object_new_string(t->id));
		json_object_object_add(sc, "status", json_object_new_string(
		    registry_status_name(durable_mkh_status(t))));
		json_object_object_add(sc, "cancelled",
		    json_object_new_boolean(1));
		json_object_object_add(sc, "message", json_object_new_string(
		    "cancel asked of the heavyd that runs it; its workers are "
		    "killed there"));
		return mkh_result(sc);
	}
	if (live == NULL && !durable_terminal(t))
		return mkh_error("task %s runs in another heavyd process (pid "
		    "%d) on this state directory; only that process can cancel "
		    "it: call cancel_task through the client connected to it",
		    t->id, (int)t->pid);
	sc = json_object_new_object();
	json_object_object_add(sc, "task_id", json_object_new_string(t->id));
	if (live != NULL) {
		log_info("task %s cancelled by cancel_task", t->id);
		registry_cancel(live, "cancelled by cancel_task: its workers "
		    "were killed", now_ms());
		st = TASK_CANCELLED;
		snprintf(msg, sizeof msg, "cancelled; its workers were killed");
	} else {
		st = durable_mkh_status(t);
		snprintf(msg, sizeof msg, "the task had already finished (%s); "
		    "nothing to cancel", registry_status_name(st));
	}
	json_object_object_add(sc, "status", json_object_new_string(
	    registry_status_name(st)));
	json_object_object_add(sc, "cancelled",
	    json_object_new_boolean(live != NULL));
	json_object_object_add(sc, "message", json_object_new_string(msg));
	return mkh_result(sc);
}

static struct json_object *
mkh_cancel(struct mcp_req *q, struct json_object *args)
{
	return mkh_lookup(q, args, mkh_cancel_found);
}

static void
mkh_listed(void *arg, struct json_object *list)
{
	struct mcp_req		*q = arg;
	struct json_object	*sc = json_object_new_object();

	json_object_object_add(sc, "total_active", json_object_new_int(
	    (int)json_object_array_length(list)));
	json_object_object_add(sc, "active_tasks", list);
	mcp_req_begin(q);
	mcp_reply(q->s, q->m.id, mkh_result(sc));
	mcp_req_end(q);
}

static struct json_object *
mkh_list(struct mcp_req *q, struct json_object *args)
{
	struct json_object	*err;

	if ((err = mkh_check_keys(args, NULL, 0, "no arguments")) != NULL)
		return err;
	durable_active(q->s->owner, mkh_listed, q);
	return NULL;
}

static struct json_object *
mkh_agent_tools(struct mcp_req *q, struct json_object *args)
{
	struct mcp_session	*s = q->s;
	struct json_object	*err, *sc, *list;

	if ((err = mkh_check_keys(args, NULL, 0, "no arguments")) != NULL)
		return err;
	list = tooldefs_list(task_tool_features(s->cfg));
	sc = json_object_new_object();
	json_object_object_add(sc, "total_tools", json_object_new_int(
	    (int)json_object_array_length(list)));
	json_object_object_add(sc, "available_tools", list);
	return mkh_result(sc);
}

/* An optional integer argument in [lo, hi]; null counts as absent. */
static struct json_object *
mkh_int_arg(struct json_object *args, const char *name, int lo, int hi,
    int *out)
{
	struct json_object	*v;
	int64_t			 n = INT64_MIN;
	double			 d;

	if (!json_object_object_get_ex(args, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return NULL;
	if (json_object_is_type(v, json_type_int))
		n = json_object_get_int64(v);
	else if (json_object_is_type(v, json_type_double)) {
		d = json_object_get_double(v);	/* 4.0 is an integer too */
		if (d == floor(d) && fabs(d) < 1e15)
			n = (int64_t)d;
	}
	if (n < lo || n > hi)
		return mkh_error("invalid argument '%s': expected an integer "
		    "from %d to %d", name, lo, hi);
	*out = (int)n;
	return NULL;
}

static struct json_object *
mkh_config_json(const struct heavy_config *c)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "parallel_agents",
	    json_object_new_int(c->num_agents));
	json_object_object_add(o, "task_timeout",
	    json_object_new_int(c->task_timeout_s));
	json_object_object_add(o, "aggregation_strategy",
	    json_object_new_string(c->aggregation_strategy));
	return o;
}

/* Checks every argument before it changes any: all or nothing. */
static struct json_object *
mkh_configure(struct mcp_req *q, struct json_object *args)
{
	struct mcp_session	*s = q->s;
	static const char *const known[] = { "parallel_agents",
	    "task_timeout", "aggregation_strategy" };
	struct json_object	*err, *sc, *updates;
	int			 agents = 0, timeout = 0;
	const char		*strategy;

	if ((err = mkh_check_keys(args, known, 3, "parallel_agents, "
	    "task_timeout, aggregation_strategy")) != NULL ||
	    (err = mkh_int_arg(args, "parallel_agents", 1, HEAVY_MAX_AGENTS,
	    &agents)) != NULL ||
	    (err = mkh_int_arg(args, "task_timeout", 1, 86400,
	    &timeout)) != NULL ||
	    (err = mkh_strategy_arg(args, "aggregation_strategy",
	    &strategy)) != NULL)
		return err;
	mcp_session_own_cfg(s);
	updates = json_object_new_object();
	if (agents != 0) {
		s->cfg->num_agents = agents;
		json_object_object_add(updates, "parallel_agents",
		    json_object_new_int(agents));
	}
	if (timeout != 0) {
		s->cfg->task_timeout_s = timeout;
		json_object_object_add(updates, "task_timeout",
		    json_object_new_int(timeout));
	}
	if (strategy != NULL) {
		config_set_str(&s->cfg->aggregation_strategy, strategy);
		json_object_object_add(updates, "aggregation_strategy",
		    json_object_new_string(strategy));
	}
	sc = json_object_new_object();
	json_object_object_add(sc, "message", json_object_new_string(
	    json_object_object_length(updates) ? "This session's defaults "
	    "are updated; running tasks and other sessions keep theirs." :
	    "No change; these are this session's defaults."));
	json_object_object_add(sc, "updates", updates);
	json_object_object_add(sc, "current_config", mkh_config_json(s->cfg));
	return mkh_result(sc);
}

static const struct {
	const char		*name;
	/* The result now, or NULL: it answers q later, and ends it. */
	struct json_object	*(*fn)(struct mcp_req *q,
				    struct json_object *);
} mkh_calls[] = {
	{ "grok_heavy_orchestrate", mkh_orchestrate },
	{ "get_task_progress", mkh_progress },
	{ "list_active_tasks", mkh_list },
	{ "get_agent_tools", mkh_agent_tools },
	{ "configure_orchestrator", mkh_configure },
	{ "cancel_task", mkh_cancel },
};

/* With tools.compat off, these tools do not exist for the client. */
bool
mkh_has(const struct heavy_config *cfg, const char *name)
{
	if (!cfg->tools_compat)
		return false;
	for (size_t i = 0; i < sizeof mkh_calls / sizeof mkh_calls[0]; i++)
		if (strcmp(name, mkh_calls[i].name) == 0)
			return true;
	return false;
}

/* Answers a call of one of these tools; false when name is none of them. */
bool
mkh_call(struct mcp_session *s, struct rpc_msg *m, const char *name,
    struct json_object *args)
{
	struct json_object	*res;
	struct mcp_req		*q;

	if (!mkh_has(s->cfg, name))
		return false;
	for (size_t i = 0; i < sizeof mkh_calls / sizeof mkh_calls[0]; i++) {
		if (strcmp(name, mkh_calls[i].name) != 0)
			continue;
		q = mcp_req_hold(s, m);
		if ((res = mkh_calls[i].fn(q, args)) != NULL) {
			mcp_reply(s, m->id, res);
			mcp_req_end(q);
		}
		return true;
	}
	return false;
}

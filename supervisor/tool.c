/* The MCP tool heavy_orchestrate: its schemas and its arguments, checked. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "supervisor.h"

#define TOOL_MAX_TIMEOUT	86400
#define TOOL_MAX_MODEL		256

static const char *tool_input_schema =
"{\"type\":\"object\",\"properties\":{"
"\"query\":{\"type\":\"string\",\"minLength\":1,"
"\"description\":\"The question or task to analyze in depth.\"},"
"\"num_agents\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":16,"
"\"default\":4,\"description\":\"How many agents answer sub-questions in "
"parallel.\"},"
"\"timeout\":{\"type\":\"number\",\"minimum\":1,\"maximum\":86400,"
"\"default\":300,\"description\":\"Seconds the whole orchestration may "
"take; agents still running near the end are stopped.\"},"
"\"max_total_tokens\":{\"type\":\"integer\",\"minimum\":1,"
"\"description\":\"Stop the agents once the task has used this many "
"tokens; the answer is what finished by then.\"},"
"\"max_cost_usd\":{\"type\":\"number\",\"exclusiveMinimum\":0,"
"\"description\":\"Stop the agents once the provider reports this much "
"spent (US dollars; OpenRouter reports cost).\"},"
"\"model\":{\"type\":\"string\",\"description\":\"Model id for every step, "
"instead of the configured one.\"},"
"\"fallback_models\":{\"type\":\"array\",\"maxItems\":8,\"items\":"
"{\"type\":\"string\",\"minLength\":1,\"maxLength\":256},"
"\"description\":\"Models to move to, in order, when a step's model "
"fails for good: a 404 (no endpoints), a 402, a 400 saying the model "
"does not support tools, or a 429/5xx still failing after the retries. "
"heavyd falls back itself (OpenRouter's own models list is not used), "
"and each agent's result names the model that answered and every "
"fallback with its reason. Default: the configured fallback_models.\"},"
"\"aggregation_strategy\":{\"type\":\"string\","
"\"enum\":[\"consensus\",\"ranked\",\"best\",\"incremental\"],"
"\"description\":\"How the "
"answers become one: consensus (one synthesis call), ranked (the agents "
"rank each other's answers anonymously, then a synthesis told the "
"ranking), best (the same ranking, then the top answer unsynthesized), "
"incremental (as consensus, but a draft synthesis is rebuilt from the "
"answers in so far while the others work, shown in progress, and the "
"final synthesis starts from the last draft). "
"Default: the configured strategy.\"},"
"\"incremental_interval\":{\"type\":\"number\",\"minimum\":0,"
"\"maximum\":86400,\"description\":\"incremental: the least seconds "
"from one draft's start to the next's; a draft starts only when an "
"answer came in since the last, and one at a time. Default: the "
"configured incremental_interval (10).\"},"
"\"min_agents\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":16,"
"\"description\":\"Quorum: once this many agents have answered and "
"straggler_grace has passed, the agents still running are killed and "
"the answers in are synthesized (they are listed as cut_for_latency). "
"At most num_agents; 0 waits for every agent. Default: the configured "
"min_agents (0).\"},"
"\"straggler_grace\":{\"type\":\"number\",\"minimum\":0,"
"\"maximum\":86400,\"description\":\"Seconds the stragglers get once "
"min_agents answers are in; one that answers within it is kept. "
"Default: the configured straggler_grace (0).\"},"
"\"hedge_after_ms\":{\"type\":\"integer\",\"minimum\":0,"
"\"maximum\":600000,\"description\":\"Hedging: an LLM call with no "
"first byte after this many milliseconds is sent a second time, within "
"the upstream's rate limits; the first to answer is kept and the other "
"cancelled (usage counts hedged_calls and hedges_won, and the cancelled "
"one's prompt tokens). 0: never. Default: the configured hedge_after_ms "
"(0).\"},"
"\"resume\":{\"type\":\"boolean\",\"description\":\"Whether the task "
"is resumed, rather than failed as interrupted, when the heavyd running it "
"dies (its process, or on a shared store its node) before its deadline: "
"the planner's questions and every finished agent's answer are kept, only "
"the unfinished agents run again, and the result's resumed says which and "
"why. Default: the configured orchestrator.resume (true).\"}},"
"\"required\":[\"query\"],\"additionalProperties\":false}";

#define USAGE_SCHEMA \
"{\"type\":\"object\",\"properties\":{" \
"\"prompt_tokens\":{\"type\":\"integer\"}," \
"\"completion_tokens\":{\"type\":\"integer\"}," \
"\"total_tokens\":{\"type\":\"integer\"}," \
"\"llm_calls\":{\"type\":\"integer\"}," \
"\"retries\":{\"type\":\"integer\"}," \
"\"hedged_calls\":{\"type\":\"integer\"}," \
"\"hedges_won\":{\"type\":\"integer\"}," \
"\"cost_usd\":{\"type\":\"number\"}}}"

/* The fallbacks a step took, in order (fallback_models). */
#define FALLBACKS_SCHEMA \
"{\"type\":\"array\",\"items\":{\"type\":\"object\"," \
"\"properties\":{\"from\":{\"type\":\"string\"}," \
"\"to\":{\"type\":\"string\"},\"reason\":{\"type\":\"string\"}}," \
"\"required\":[\"from\",\"to\",\"reason\"]}}"

static const char *tool_output_schema =
"{\"type\":\"object\",\"properties\":{"
"\"answer\":{\"type\":\"string\"},"
"\"synthesized\":{\"type\":\"boolean\"},"
"\"planner_fallback\":{\"type\":\"boolean\"},"
"\"planner_reasked\":{\"type\":\"boolean\"},"
"\"planner_error\":{\"type\":[\"string\",\"null\"]},"
"\"synthesis_error\":{\"type\":[\"string\",\"null\"]},"
"\"synthesis_truncated\":{\"type\":\"integer\"},"
"\"planner_model\":{\"type\":[\"string\",\"null\"],\"description\":"
"\"the model that answered the planner; null when none did\"},"
"\"planner_fallbacks\":" FALLBACKS_SCHEMA ","
"\"synthesis_model\":{\"type\":[\"string\",\"null\"]},"
"\"synthesis_fallbacks\":" FALLBACKS_SCHEMA ","
"\"agents\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
"\"properties\":{\"index\":{\"type\":\"integer\"},"
"\"question\":{\"type\":\"string\"},"
"\"status\":{\"type\":\"string\",\"enum\":[\"ok\",\"failed\",\"timed_out\","
"\"killed\",\"cut_for_latency\",\"pending\",\"running\"]},"
"\"elapsed_ms\":{\"type\":\"integer\"},"
"\"error\":{\"type\":[\"string\",\"null\"]},"
"\"signal\":{\"type\":[\"string\",\"null\"]},"
"\"usage\":" USAGE_SCHEMA ","
"\"model\":{\"type\":\"string\",\"description\":\"the model that "
"answered\"},"
"\"fallbacks\":" FALLBACKS_SCHEMA ","
"\"rank\":{\"type\":[\"integer\",\"null\"]}},"
"\"required\":[\"index\",\"question\",\"status\",\"elapsed_ms\",\"error\"]}},"
"\"usage\":" USAGE_SCHEMA ","
"\"elapsed_ms\":{\"type\":\"integer\"},"
"\"cut_for_latency\":{\"type\":\"array\",\"items\":{\"type\":"
"\"integer\"},\"description\":\"the agents (1-based) killed once the "
"quorum was in and the straggler grace had passed\"},"
"\"quorum\":{\"type\":[\"object\",\"null\"],\"description\":\"null "
"when the task waited for every agent\",\"properties\":{"
"\"min_agents\":{\"type\":\"integer\"},"
"\"straggler_grace\":{\"type\":\"number\"}}},"
"\"strategy\":{\"type\":\"string\",\"enum\":[\"consensus\",\"ranked\","
"\"best\",\"incremental\"]},"
"\"resumed\":{\"type\":\"object\",\"description\":\"only when the "
"heavyd that ran the task died and another (or the next) resumed it\","
"\"properties\":{\"from\":{\"type\":\"string\",\"description\":\"who "
"ran it: a process, a node\"},\"why\":{\"type\":\"string\"},"
"\"planner_rerun\":{\"type\":\"boolean\",\"description\":\"its "
"questions were not all written: the planner ran again\"},"
"\"rerun\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
"\"description\":\"the agents (1-based) that ran again: unfinished "
"when it stopped\"},\"kept\":{\"type\":\"array\",\"items\":"
"{\"type\":\"integer\"},\"description\":\"the agents whose end was "
"kept from the first run\"}}},"
"\"drafts\":{\"type\":\"object\",\"description\":\"incremental only: "
"the drafts; their tokens are in usage too\",\"properties\":{"
"\"interval\":{\"type\":\"number\"},"
"\"calls\":{\"type\":\"integer\",\"description\":\"drafts started\"},"
"\"tokens\":{\"type\":\"integer\"},"
"\"llm_calls\":{\"type\":\"integer\"},"
"\"cost_usd\":{\"type\":\"number\"},"
"\"first_draft_ms\":{\"type\":[\"integer\",\"null\"],\"description\":"
"\"from the task's start to the first draft's end\"},"
"\"answer_ms\":{\"type\":\"integer\",\"description\":\"from the "
"task's start to the final answer\"},"
"\"synthesis_from\":{\"type\":[\"integer\",\"null\"],\"description\":"
"\"the draft the final synthesis started from\"},"
"\"list\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
"\"properties\":{\"n\":{\"type\":\"integer\"},"
"\"answers\":{\"type\":\"integer\"},\"status\":{\"type\":\"string\","
"\"enum\":[\"running\",\"ok\",\"failed\",\"timed_out\",\"killed\"]},"
"\"started_ms\":{\"type\":\"integer\"},"
"\"ended_ms\":{\"type\":\"integer\"},"
"\"tokens\":{\"type\":\"integer\"}}}}}},"
"\"strategy_fallback\":{\"type\":[\"string\",\"null\"]},"
"\"budget\":{\"type\":\"object\",\"properties\":{"
"\"max_total_tokens\":{\"type\":[\"integer\",\"null\"]},"
"\"max_cost_usd\":{\"type\":[\"number\",\"null\"]},"
"\"stopped\":{\"type\":[\"string\",\"null\"]}}},"
"\"ranking\":{\"type\":[\"array\",\"null\"],\"items\":{\"type\":\"object\","
"\"properties\":{\"agent\":{\"type\":\"integer\"},"
"\"rank\":{\"type\":\"integer\"},\"score\":{\"type\":\"number\"},"
"\"reviews\":{\"type\":\"integer\"}},"
"\"required\":[\"agent\",\"rank\",\"score\",\"reviews\"]}},"
"\"review_errors\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
"\"properties\":{\"reviewer\":{\"type\":\"integer\"},"
"\"model\":{\"type\":\"string\"},\"status\":{\"type\":\"string\"},"
"\"error\":{\"type\":\"string\"}},"
"\"required\":[\"reviewer\",\"status\",\"error\"]}},"
"\"workspace\":{\"type\":\"string\",\"description\":\"the task's "
"directory, where its agents' read_file and write_file work\"},"
"\"sandbox\":{\"type\":\"object\",\"description\":\"the confinement "
"its workers had, and what it lacked (filesystem, network, seccomp)\","
"\"properties\":{\"confinement\":{\"type\":\"string\"},"
"\"weaker\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}},"
"\"session_usage\":{\"type\":\"object\",\"description\":\"usage summed over "
"this session's tasks that have ended, this one included\",\"properties\":{"
"\"prompt_tokens\":{\"type\":\"integer\"},"
"\"completion_tokens\":{\"type\":\"integer\"},"
"\"total_tokens\":{\"type\":\"integer\"},"
"\"llm_calls\":{\"type\":\"integer\"},"
"\"retries\":{\"type\":\"integer\"},"
"\"hedged_calls\":{\"type\":\"integer\"},"
"\"hedges_won\":{\"type\":\"integer\"},"
"\"cost_usd\":{\"type\":\"number\"},"
"\"tasks\":{\"type\":\"integer\"}}},"
"\"cached\":{\"type\":\"boolean\",\"description\":\"answered from the "
"result cache (HEAVY_CACHE_TTL)\"},"
"\"cached_from\":{\"type\":[\"string\",\"null\"],\"description\":\"the task "
"whose answer this is, when cached\"}},"
"\"required\":[\"answer\",\"synthesized\",\"planner_fallback\",\"agents\","
"\"usage\",\"elapsed_ms\",\"strategy\"]}";

/*
 * Hints for a client deciding what to confirm with its user.  It spends
 * money on an outside LLM (open world), a second call runs and costs
 * again (not idempotent), and it destroys nothing.
 */
static const char *tool_annotations =
"{\"title\":\"Heavy multi-agent analysis\",\"readOnlyHint\":false,"
"\"destructiveHint\":false,\"idempotentHint\":false,"
"\"openWorldHint\":true}";

/* tools/list's heavy_orchestrate (toolcall.c adds make-it-heavy's). */
struct json_object *
tool_list(void)
{
	struct json_object	*res = json_object_new_object(), *tools, *t;

	t = json_object_new_object();
	json_object_object_add(t, "name",
	    json_object_new_string("heavy_orchestrate"));
	json_object_object_add(t, "title",
	    json_object_new_string("Heavy multi-agent analysis"));
	json_object_object_add(t, "description", json_object_new_string(
	    "Deep analysis of a query: a planner writes num_agents "
	    "sub-questions, that many tool-using agents answer them in "
	    "parallel, and a final call synthesizes one answer. Slow "
	    "(tens of seconds to minutes); sends progress notifications."));
	json_object_object_add(t, "inputSchema",
	    json_tokener_parse(tool_input_schema));
	json_object_object_add(t, "outputSchema",
	    json_tokener_parse(tool_output_schema));
	/* MCP Tasks: it may run as a task; the other tools may not. */
	json_object_object_add(t, "execution", json_tokener_parse(
	    "{\"taskSupport\":\"optional\"}"));
	json_object_object_add(t, "annotations",
	    json_tokener_parse(tool_annotations));
	tools = json_object_new_array();
	json_object_array_add(tools, t);
	json_object_object_add(res, "tools", tools);
	return res;
}

struct json_object *
tool_error_result(const char *text)
{
	struct json_object	*res = json_object_new_object(), *content, *c;

	c = json_object_new_object();
	json_object_object_add(c, "type", json_object_new_string("text"));
	json_object_object_add(c, "text", json_object_new_string(text));
	content = json_object_new_array();
	json_object_array_add(content, c);
	json_object_object_add(res, "content", content);
	json_object_object_add(res, "isError", json_object_new_boolean(1));
	return res;
}

static int
tool_bad(char *err, size_t errlen, const char *arg, const char *why)
{
	snprintf(err, errlen, "invalid argument '%s': %s", arg, why);
	return -1;
}

/* A JSON number that is a whole number, as json-c may read 4.0 as double. */
static bool
tool_integer(struct json_object *v, int64_t *out)
{
	double	d;

	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return true;
	}
	if (!json_object_is_type(v, json_type_double))
		return false;
	d = json_object_get_double(v);
	if (d != floor(d) || fabs(d) > 1e15)
		return false;
	*out = (int64_t)d;
	return true;
}

static int
tool_check_keys(struct json_object *args, char *err, size_t errlen)
{
	static const char	*known[] = { "query", "num_agents", "timeout",
	    "model", "aggregation_strategy", "max_total_tokens",
	    "max_cost_usd", "min_agents", "straggler_grace",
	    "fallback_models", "incremental_interval",
	    "hedge_after_ms", "resume" };
	bool			 ok;

	json_object_object_foreach(args, key, val) {
		(void)val;
		ok = false;
		for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
			ok = ok || strcmp(key, known[i]) == 0;
		if (!ok)
			return tool_bad(err, errlen, key, "unknown argument; "
			    "expected query, num_agents, timeout, model, "
			    "aggregation_strategy, max_total_tokens, "
			    "max_cost_usd, min_agents, straggler_grace, "
			    "fallback_models, incremental_interval, "
			    "hedge_after_ms, resume");
	}
	return 0;
}

static int
tool_query(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_object_get_ex(args, "query", &v))
		return tool_bad(err, errlen, "query", "required");
	if (!json_object_is_type(v, json_type_string))
		return tool_bad(err, errlen, "query", "must be a string");
	for (s = json_object_get_string(v); isspace((unsigned char)*s); s++)
		;
	if (*s == '\0')
		return tool_bad(err, errlen, "query", "must not be empty");
	p->query = xstrdup(json_object_get_string(v));
	return 0;
}

static int
tool_numbers(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;
	int64_t			 n;

	if (json_object_object_get_ex(args, "num_agents", &v)) {
		if (!tool_integer(v, &n) || n < 1 || n > HEAVY_MAX_AGENTS)
			return tool_bad(err, errlen, "num_agents",
			    "expected an integer from 1 to 16");
		p->num_agents = (int)n;
	}
	if (json_object_object_get_ex(args, "timeout", &v)) {
		if ((!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double)) ||
		    json_object_get_double(v) < 1 ||
		    json_object_get_double(v) > TOOL_MAX_TIMEOUT)
			return tool_bad(err, errlen, "timeout",
			    "expected a number of seconds from 1 to 86400");
		p->timeout_s = json_object_get_double(v);
	}
	return 0;
}

static int
tool_model(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_object_get_ex(args, "model", &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return tool_bad(err, errlen, "model", "must be a string");
	s = json_object_get_string(v);
	if (*s == '\0' || strlen(s) > TOOL_MAX_MODEL)
		return tool_bad(err, errlen, "model",
		    "must be a model id of 1 to 256 characters");
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s) || *s == ' ')
			return tool_bad(err, errlen, "model",
			    "must not contain spaces or control characters");
	p->model = xstrdup(json_object_get_string(v));
	return 0;
}

/* fallback_models: up to HEAVY_MAX_FALLBACKS model ids; absent or null:
 * the configured lists. */
static int
tool_fallbacks(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v, *m;
	const char		*why;
	char			 key[40];
	size_t			 n;

	if (!json_object_object_get_ex(args, "fallback_models", &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_array) ||
	    (n = json_object_array_length(v)) > HEAVY_MAX_FALLBACKS)
		return tool_bad(err, errlen, "fallback_models", "expected an "
		    "array of at most 8 model ids");
	for (size_t i = 0; i < n; i++) {
		m = json_object_array_get_idx(v, i);
		snprintf(key, sizeof key, "fallback_models[%zu]", i);
		if (!json_object_is_type(m, json_type_string))
			return tool_bad(err, errlen, key, "must be a string");
		if ((why = config_model_error(json_object_get_string(m))) !=
		    NULL)
			return tool_bad(err, errlen, key, why);
		config_strv_add(&p->fallbacks, &p->nfallbacks,
		    json_object_get_string(m));
	}
	return 0;
}

/* aggregation_strategy: one of the strategies; absent or null: the
 * configured one (the task resolves NULL). */
static int
tool_strategy(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(args, "aggregation_strategy", &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string) ||
	    config_strategy(json_object_get_string(v)) == -1)
		return tool_bad(err, errlen, "aggregation_strategy",
		    "expected one of " HEAVY_STRATEGIES);
	p->strategy = xstrdup(json_object_get_string(v));
	return 0;
}

/* incremental_interval: seconds; absent: the configured one. */
static int
tool_interval(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(args, "incremental_interval", &v))
		return 0;
	if ((!json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double)) ||
	    !(json_object_get_double(v) >= 0) ||
	    json_object_get_double(v) > TOOL_MAX_TIMEOUT)
		return tool_bad(err, errlen, "incremental_interval",
		    "expected a number of seconds from 0 to 86400");
	p->incremental_interval_s = json_object_get_double(v);
	return 0;
}

/* Budgets: absent means the configured default (0, none, unless set). */
static int
tool_budgets(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;
	int64_t			 n;

	if (json_object_object_get_ex(args, "max_total_tokens", &v)) {
		if (!tool_integer(v, &n) || n < 1)
			return tool_bad(err, errlen, "max_total_tokens",
			    "expected a positive integer");
		p->max_total_tokens = (uint64_t)n;
	}
	if (json_object_object_get_ex(args, "max_cost_usd", &v)) {
		if ((!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double)) ||
		    !(json_object_get_double(v) > 0) ||
		    json_object_get_double(v) > 1e6)
			return tool_bad(err, errlen, "max_cost_usd",
			    "expected a positive number of US dollars");
		p->max_cost_usd = json_object_get_double(v);
	}
	return 0;
}

/*
 * The quorum.  An explicit min_agents above num_agents is an error; the
 * configured one is a default for every call, so a call with fewer agents
 * than it simply waits for all of them.
 */
static int
tool_quorum(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;
	int64_t			 n;
	char			 why[128];

	if (json_object_object_get_ex(args, "straggler_grace", &v)) {
		if ((!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double)) ||
		    !(json_object_get_double(v) >= 0) ||
		    json_object_get_double(v) > TOOL_MAX_TIMEOUT)
			return tool_bad(err, errlen, "straggler_grace",
			    "expected a number of seconds from 0 to 86400");
		p->straggler_grace_s = json_object_get_double(v);
	}
	if (!json_object_object_get_ex(args, "min_agents", &v)) {
		if (p->min_agents > p->num_agents)
			p->min_agents = 0;
		return 0;
	}
	if (!tool_integer(v, &n) || n < 0 || n > HEAVY_MAX_AGENTS)
		return tool_bad(err, errlen, "min_agents",
		    "expected an integer from 0 (wait for every agent) to 16");
	if (n > p->num_agents) {
		snprintf(why, sizeof why, "%lld is larger than num_agents (%d): "
		    "the quorum could never be reached", (long long)n,
		    p->num_agents);
		return tool_bad(err, errlen, "min_agents", why);
	}
	p->min_agents = (int)n;
	return 0;
}

/* Hedging: the delay after which egress sends an LLM call again. */
static int
tool_hedge(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;
	int64_t			 n;

	if (!json_object_object_get_ex(args, "hedge_after_ms", &v))
		return 0;
	if (!tool_integer(v, &n) || n < 0 || n > HEAVY_MAX_HEDGE_MS)
		return tool_bad(err, errlen, "hedge_after_ms", "expected an "
		    "integer of milliseconds from 0 (never) to 600000");
	p->hedge_after_ms = (int)n;
	return 0;
}

/* Whether a task whose heavyd died is resumed. */
static int
tool_resume(struct json_object *args, struct task_params *p, char *err,
    size_t errlen)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(args, "resume", &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return tool_bad(err, errlen, "resume", "expected true or false");
	p->resume = json_object_get_boolean(v);
	return 0;
}

int
tool_orchestrate_args(const struct heavy_config *cfg, struct json_object *args,
    struct task_params *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof *p);
	p->num_agents = cfg->num_agents;
	p->timeout_s = cfg->task_timeout_s;
	p->max_total_tokens = cfg->max_total_tokens;
	p->max_cost_usd = cfg->max_cost_usd;
	p->min_agents = cfg->min_agents;
	p->straggler_grace_s = cfg->straggler_grace_s;
	p->incremental_interval_s = cfg->incremental_interval_s;
	p->hedge_after_ms = cfg->hedge_after_ms;
	p->resume = cfg->resume != 0;
	if (args == NULL)
		return tool_bad(err, errlen, "query", "required");
	if (!json_object_is_type(args, json_type_object))
		return tool_bad(err, errlen, "arguments", "must be an object");
	if (tool_check_keys(args, err, errlen) == -1 ||
	    tool_query(args, p, err, errlen) == -1 ||
	    tool_numbers(args, p, err, errlen) == -1 ||
	    tool_model(args, p, err, errlen) == -1 ||
	    tool_fallbacks(args, p, err, errlen) == -1 ||
	    tool_strategy(args, p, err, errlen) == -1 ||
	    tool_interval(args, p, err, errlen) == -1 ||
	    tool_budgets(args, p, err, errlen) == -1 ||
	    tool_quorum(args, p, err, errlen) == -1 ||
	    tool_hedge(args, p, err, errlen) == -1 ||
	    tool_resume(args, p, err, errlen) == -1) {
		task_params_clear(p);
		return -1;
	}
	return 0;
}

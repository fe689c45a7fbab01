/*
 * The MCP edge's one renderer of a task's result (taskresult.h): the
 * CallToolResult a client sees, its answer as text and the details as
 * structuredContent.  Live tasks and stored ones go through here alike;
 * the engine below never builds the JSON.
 */
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

static struct json_object *
result_string(const char *s)
{
	return s == NULL ? NULL : json_object_new_string(s);
}

/* A string that must be one (a stored row may lack it). */
static struct json_object *
result_text_of(const char *s)
{
	return json_object_new_string(s != NULL ? s : "");
}

static struct json_object *
result_usage(const struct usage *u)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "prompt_tokens",
	    json_object_new_int64((int64_t)u->prompt_tokens));
	json_object_object_add(o, "completion_tokens",
	    json_object_new_int64((int64_t)u->completion_tokens));
	json_object_object_add(o, "total_tokens",
	    json_object_new_int64((int64_t)u->total_tokens));
	json_object_object_add(o, "llm_calls",
	    json_object_new_int64(u->llm_calls));
	json_object_object_add(o, "retries", json_object_new_int64(u->retries));
	json_object_object_add(o, "hedged_calls",
	    json_object_new_int64(u->hedged_calls));
	json_object_object_add(o, "hedges_won",
	    json_object_new_int64(u->hedges_won));
	json_object_object_add(o, "cost_usd",
	    json_object_new_double(u->cost_micro_usd / 1e6));
	return o;
}

/* A step's model (key_model) and each fallback it took (key_fb). */
static void
result_route(const struct tr_route *rt, struct json_object *o,
    const char *key_model, const char *key_fb)
{
	struct json_object	*fbs = json_object_new_array(), *f;

	for (int i = 0; i < rt->nfallbacks; i++) {
		f = json_object_new_object();
		json_object_object_add(f, "from",
		    result_text_of(rt->fallbacks[i].from));
		json_object_object_add(f, "to",
		    result_text_of(rt->fallbacks[i].to));
		json_object_object_add(f, "reason",
		    result_text_of(rt->fallbacks[i].reason));
		json_object_array_add(fbs, f);
	}
	json_object_object_add(o, key_model, result_string(rt->model));
	json_object_object_add(o, key_fb, fbs);
}

static struct json_object *
result_agent(const struct tr_agent *a)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "index", json_object_new_int(a->index));
	json_object_object_add(o, "question", json_object_new_string(
	    a->question ? a->question : ""));
	json_object_object_add(o, "status", result_text_of(a->status));
	json_object_object_add(o, "elapsed_ms",
	    json_object_new_int64(a->elapsed_ms));
	json_object_object_add(o, "error", result_string(a->error));
	json_object_object_add(o, "signal", result_string(a->signal));
	json_object_object_add(o, "usage", result_usage(&a->usage));
	result_route(&a->route, o, "model", "fallbacks");
	json_object_object_add(o, "rank", a->rank ?
	    json_object_new_int(a->rank) : NULL);
	return o;
}

/* The aggregate ranking, best first; null when nothing was ranked. */
static struct json_object *
result_ranking(const struct task_result *r)
{
	struct json_object	*arr, *o;
	const struct tr_rank	*k;

	if (!r->ranked)
		return NULL;
	arr = json_object_new_array();
	for (int i = 0; i < r->nranking; i++) {
		k = &r->ranking[i];
		o = json_object_new_object();
		json_object_object_add(o, "agent",
		    json_object_new_int(k->agent));
		json_object_object_add(o, "rank", json_object_new_int(k->rank));
		json_object_object_add(o, "score",
		    json_object_new_double(k->score));
		json_object_object_add(o, "reviews",
		    json_object_new_int(k->reviews));
		json_object_array_add(arr, o);
	}
	return arr;
}

/* The reviews that gave no usable ranking, and why. */
static struct json_object *
result_review_errors(const struct task_result *r)
{
	struct json_object		*arr = json_object_new_array(), *o;
	const struct tr_review_error	*e;

	for (int i = 0; i < r->nreview_errors; i++) {
		e = &r->review_errors[i];
		o = json_object_new_object();
		json_object_object_add(o, "reviewer",
		    json_object_new_int(e->reviewer));
		json_object_object_add(o, "model", result_text_of(e->model));
		json_object_object_add(o, "status", result_text_of(e->status));
		json_object_object_add(o, "error", result_text_of(e->error));
		json_object_array_add(arr, o);
	}
	return arr;
}

static struct json_object *
result_budget(const struct task_result *r)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "max_total_tokens", r->max_total_tokens ?
	    json_object_new_int64((int64_t)r->max_total_tokens) : NULL);
	json_object_object_add(o, "max_cost_usd", r->max_cost_usd > 0 ?
	    json_object_new_double(r->max_cost_usd) : NULL);
	json_object_object_add(o, "stopped", result_string(r->budget_stop));
	return o;
}

/* The agents cut for latency (1-based), and the quorum asked for. */
static void
result_quorum(const struct task_result *r, struct json_object *o)
{
	struct json_object	*cut = json_object_new_array(), *q = NULL;

	for (int i = 0; i < r->nagents; i++)
		if (r->agents[i].status != NULL &&
		    strcmp(r->agents[i].status, "cut_for_latency") == 0)
			json_object_array_add(cut,
			    json_object_new_int(r->agents[i].index));
	json_object_object_add(o, "cut_for_latency", cut);
	if (r->min_agents > 0) {
		q = json_object_new_object();
		json_object_object_add(q, "min_agents",
		    json_object_new_int(r->min_agents));
		json_object_object_add(q, "straggler_grace",
		    json_object_new_double(r->straggler_grace_s));
	}
	json_object_object_add(o, "quorum", q);
}

/* A resumed task's: from where, why, which agents ran again and which
 * were kept, and whether the planner ran again. */
static struct json_object *
result_resumed(const struct task_result *r)
{
	struct json_object	*o = json_object_new_object(), *rerun, *kept;

	rerun = json_object_new_array();
	kept = json_object_new_array();
	for (int i = 0; i < r->nagents; i++)
		json_object_array_add(r->agents[i].rerun ? rerun : kept,
		    json_object_new_int(r->agents[i].index));
	json_object_object_add(o, "from", result_text_of(r->resumed_from));
	json_object_object_add(o, "why", result_text_of(r->resumed_why));
	json_object_object_add(o, "planner_rerun",
	    json_object_new_boolean(r->resumed_planner));
	json_object_object_add(o, "rerun", rerun);
	json_object_object_add(o, "kept", kept);
	return o;
}

/* incremental's drafts: how many, their cost, each one, and the one the
 * final synthesis started from. */
static struct json_object *
result_drafts(const struct tr_drafts *d)
{
	struct json_object	*o = json_object_new_object(), *list, *e;
	const struct tr_draft	*x;

	list = json_object_new_array();
	for (int i = 0; i < d->n; i++) {
		x = &d->list[i];
		e = json_object_new_object();
		json_object_object_add(e, "n", json_object_new_int(x->n));
		json_object_object_add(e, "answers",
		    json_object_new_int(x->answers));
		json_object_object_add(e, "status", result_text_of(x->status));
		json_object_object_add(e, "started_ms",
		    json_object_new_int64(x->started_ms));
		json_object_object_add(e, "ended_ms",
		    json_object_new_int64(x->ended_ms));
		json_object_object_add(e, "tokens",
		    json_object_new_int64((int64_t)x->tokens));
		json_object_array_add(list, e);
	}
	json_object_object_add(o, "interval",
	    json_object_new_double(d->interval_s));
	json_object_object_add(o, "calls", json_object_new_int(d->n));
	json_object_object_add(o, "tokens",
	    json_object_new_int64((int64_t)d->tokens));
	json_object_object_add(o, "llm_calls",
	    json_object_new_int64(d->llm_calls));
	json_object_object_add(o, "cost_usd",
	    json_object_new_double(d->cost_micro_usd / 1e6));
	json_object_object_add(o, "first_draft_ms", d->first_draft_ms == -1 ?
	    NULL : json_object_new_int64(d->first_draft_ms));
	json_object_object_add(o, "answer_ms",
	    json_object_new_int64(d->answer_ms));
	json_object_object_add(o, "synthesis_from", d->synthesis_from ?
	    json_object_new_int(d->synthesis_from) : NULL);
	json_object_object_add(o, "list", list);
	return o;
}

static struct json_object *
result_sandbox(const struct task_result *r)
{
	struct json_object	*o = json_object_new_object(), *l;

	json_object_object_add(o, "confinement",
	    json_object_new_string(r->confinement ? r->confinement : ""));
	l = json_object_new_array();
	for (int i = 0; i < r->nweaker; i++)
		json_object_array_add(l, result_text_of(r->weaker[i]));
	json_object_object_add(o, "weaker", l);
	return o;
}

/* What the edge adds for whoever asked: whether it came from the cache,
 * and the usage of the session's tasks so far. */
static void
result_edge(const struct task_result *r, struct json_object *sc)
{
	struct json_object	*su;

	json_object_object_add(sc, "cached",
	    json_object_new_boolean(r->cached));
	json_object_object_add(sc, "cached_from",
	    result_string(r->cached_from));
	if (!r->has_session)
		return;
	su = result_usage(&r->session_usage);
	json_object_object_add(su, "tasks",
	    json_object_new_int(r->session_tasks));
	json_object_object_add(sc, "session_usage", su);
}

static void
result_details(const struct task_result *r, struct json_object *o)
{
	struct json_object	*agents = json_object_new_array();

	for (int i = 0; i < r->nagents; i++)
		json_object_array_add(agents, result_agent(&r->agents[i]));
	json_object_object_add(o, "agents", agents);
	json_object_object_add(o, "usage", result_usage(&r->usage));
	json_object_object_add(o, "elapsed_ms",
	    json_object_new_int64(r->elapsed_ms));
	json_object_object_add(o, "strategy", result_string(r->strategy));
	json_object_object_add(o, "strategy_fallback",
	    result_string(r->strategy_fallback));
	json_object_object_add(o, "ranking", result_ranking(r));
	json_object_object_add(o, "review_errors", result_review_errors(r));
	json_object_object_add(o, "budget", result_budget(r));
	result_quorum(r, o);
	if (r->has_resumed)
		json_object_object_add(o, "resumed", result_resumed(r));
	if (r->has_drafts)
		json_object_object_add(o, "drafts", result_drafts(&r->drafts));
	json_object_object_add(o, "workspace", json_object_new_string(
	    r->workspace ? r->workspace : ""));
	json_object_object_add(o, "sandbox", result_sandbox(r));
}

/* An orchestration's structuredContent. */
static struct json_object *
result_structured_new(const struct task_result *r)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "answer", json_object_new_string(
	    r->answer ? r->answer : ""));
	json_object_object_add(o, "synthesized",
	    json_object_new_boolean(r->synthesized));
	json_object_object_add(o, "planner_fallback",
	    json_object_new_boolean(r->planner_fallback));
	json_object_object_add(o, "planner_reasked",
	    json_object_new_boolean(r->planner_reasked));
	json_object_object_add(o, "planner_error",
	    result_string(r->planner_error));
	json_object_object_add(o, "synthesis_error",
	    result_string(r->synthesis_error));
	json_object_object_add(o, "synthesis_truncated",
	    json_object_new_int(r->synthesis_truncated));
	result_route(&r->planner, o, "planner_model", "planner_fallbacks");
	result_route(&r->synthesis, o, "synthesis_model",
	    "synthesis_fallbacks");
	result_details(r, o);
	return o;
}

/* The text a client sees: a text-only client must see that the answer
 * is partial, and why. */
char *
result_text(const struct task_result *r)
{
	return r->kind == TR_ORCHESTRATION && r->budget_stop != NULL &&
	    !r->failed ? xasprintf("(Stopped early, %s.)\n\n%s",
	    r->budget_stop, r->answer) : xstrdup(r->answer ? r->answer : "");
}

static struct json_object *
result_content(const struct task_result *r)
{
	struct json_object	*content = json_object_new_array(), *c;
	char			*text = result_text(r);

	c = json_object_new_object();
	json_object_object_add(c, "type", json_object_new_string("text"));
	json_object_object_add(c, "text", json_object_new_string(text));
	free(text);
	json_object_array_add(content, c);
	return content;
}

/*
 * The structuredContent of an orchestration's result (NULL for a text
 * result), with the edge's additions: what heavyd ask --json prints.
 */
struct json_object *
result_structured(const struct task_result *r)
{
	struct json_object	*sc;

	if (r->kind != TR_ORCHESTRATION)
		return NULL;
	sc = result_structured_new(r);
	if (r->cached || r->has_session)
		result_edge(r, sc);
	return sc;
}

/* The CallToolResult: the answer as text, the details as
 * structuredContent, and whether it is an error. */
struct json_object *
result_render(const struct task_result *r)
{
	struct json_object	*res = json_object_new_object(), *sc;

	json_object_object_add(res, "content", result_content(r));
	if ((sc = result_structured(r)) != NULL)
		json_object_object_add(res, "structuredContent", sc);
	if (r->kind == TR_ORCHESTRATION || r->failed)
		json_object_object_add(res, "isError",
		    json_object_new_boolean(r->failed));
	return res;
}

/* What get_task_progress reports and heavy://tasks/{id} holds: the
 * task's status, progress and, once it ended, its result's details. */
struct json_object *
result_status_json(const struct store_task *t)
{
	struct json_object	*sc = json_object_new_object();
	const char		*err = durable_error(t);

	json_object_object_add(sc, "task_id", json_object_new_string(t->id));
	json_object_object_add(sc, "status", json_object_new_string(
	    registry_status_name(durable_mkh_status(t))));
	json_object_object_add(sc, "tool", json_object_new_string(t->tool));
	json_object_object_add(sc, "progress", durable_progress_json(t));
	json_object_object_add(sc, "result", t->result != NULL ?
	    result_structured(t->result) : NULL);
	json_object_object_add(sc, "error", err != NULL ?
	    json_object_new_string(err) : NULL);
	json_object_object_add(sc, "execution_time",
	    json_object_new_double(durable_execution_time(t)));
	return sc;
}

/*
 * A typed result with every part set, and its rendering as text: what the
 * renderer's tests compare exactly and the store's tests keep and read
 * back (tests/unit/test_result.c, test_store.c, test_store_pg.c).
 */
#ifndef HEAVY_TEST_RESULT_FILL_H
#define HEAVY_TEST_RESULT_FILL_H

#include <stdlib.h>

#include "../../supervisor/supervisor.h"

static const struct usage	u1 __attribute__((unused)) = { 100, 20, 120, 2, 1, 12345, 1, 0 };

static inline void
route(struct tr_route *rt, const char *model, const char *from,
    const char *to)
{
	rt->model = model ? xstrdup(model) : NULL;
	if (from == NULL)
		return;
	rt->fallbacks[0].from = xstrdup(from);
	rt->fallbacks[0].to = xstrdup(to);
	rt->fallbacks[0].reason = xstrdup("rate_limited");
	rt->nfallbacks = 1;
}

static inline void
agent(struct tr_agent *a, int index, const char *status, const char *error,
    const char *sig, int rank)
{
	a->index = index;
	a->question = index == 2 ? NULL : xasprintf("q%d", index);
	a->status = xstrdup(status);
	a->elapsed_ms = 1000 * index;
	a->error = error ? xstrdup(error) : NULL;
	a->signal = sig ? xstrdup(sig) : NULL;
	a->usage = u1;
	route(&a->route, "m/a", index == 1 ? "m/a0" : NULL, "m/a");
	a->rank = rank;
}

/* Every part of an orchestration's result set. */
static inline struct task_result *
filled(void)
{
	struct task_result	*r = taskresult_new(TR_ORCHESTRATION);

	r->answer = xstrdup("The answer \"quoted\" / slashed");
	r->synthesized = true;
	r->planner_reasked = true;
	r->synthesis_error = xstrdup("synthesis truncated");
	r->synthesis_truncated = 2;
	route(&r->planner, "m/p", NULL, NULL);
	route(&r->synthesis, NULL, "m/s", "m/s2");
	agent(&r->agents[0], 1, "ok", NULL, NULL, 1);
	agent(&r->agents[1], 2, "timed_out", "deadline", "SIGKILL", 0);
	agent(&r->agents[2], 3, "cut_for_latency", NULL, NULL, 0);
	r->nagents = 3;
	r->usage = u1;
	r->elapsed_ms = 4321;
	r->strategy = xstrdup("peer_review");
	r->ranked = true;
	r->ranking[0] = (struct tr_rank){ 1, 1, 0.75, 2 };
	r->nranking = 1;
	r->review_errors[0] = (struct tr_review_error){ 2, xstrdup("m/r"),
	    xstrdup("failed"), xstrdup("no ranking") };
	r->nreview_errors = 1;
	r->max_total_tokens = 5000;
	r->max_cost_usd = 0.5;
	r->budget_stop = xstrdup("the token budget of 5000 was reached");
	r->min_agents = 2;
	r->straggler_grace_s = 1.5;
	r->has_resumed = true;
	r->resumed_from = xstrdup("node-a");
	r->resumed_why = xstrdup("its node died");
	r->agents[1].rerun = true;
	r->has_drafts = true;
	r->drafts.interval_s = 2;
	r->drafts.tokens = 300;
	r->drafts.llm_calls = 2;
	r->drafts.cost_micro_usd = 250000;
	r->drafts.first_draft_ms = 900;
	r->drafts.answer_ms = 4321;
	r->drafts.synthesis_from = 2;
	r->drafts.list[0] = (struct tr_draft){ 1, 1, xstrdup("ok"), 100, 900,
	    100 };
	r->drafts.list[1] = (struct tr_draft){ 2, 2, xstrdup("ok"), 1000, 2000,
	    200 };
	r->drafts.n = 2;
	r->workspace = xstrdup("/ws/1");
	r->confinement = xstrdup("Landlock ABI 4, seccomp");
	r->weaker[0] = xstrdup("filesystem");
	r->nweaker = 1;
	return r;
}

/* The CallToolResult of r as a client would get its bytes. */
static inline char *
rendered(const struct task_result *r)
{
	struct json_object	*o = result_render(r);
	char			*s = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	json_object_put(o);
	return s;
}

/* filled() as the MCP edge leaves it: the session's usage added. */
static inline struct task_result *
filled_edge(void)
{
	struct task_result	*r = filled();

	r->has_session = true;
	r->session_usage = u1;
	r->session_tasks = 3;
	return r;
}

#endif

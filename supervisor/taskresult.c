/*
 * A task's typed result (taskresult.h): made and freed here, below every
 * layer that holds one (the engine fills it, the registry keeps it, the
 * MCP edge renders it in result.c).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "taskresult.h"

struct task_result *
taskresult_new(enum tr_kind kind)
{
	struct task_result	*r = xcalloc(1, sizeof *r);

	r->kind = kind;
	r->drafts.first_draft_ms = -1;
	return r;
}

/* A result of one text: a fixture's answer, or an error to show. */
struct task_result *
taskresult_text(const char *text, bool failed)
{
	struct task_result	*r = taskresult_new(TR_TEXT);

	r->answer = xstrdup(text);
	r->failed = failed;
	return r;
}

void
taskresult_route_clear(struct tr_route *rt)
{
	for (int i = 0; i < rt->nfallbacks; i++) {
		free(rt->fallbacks[i].from);
		free(rt->fallbacks[i].to);
		free(rt->fallbacks[i].reason);
	}
	free(rt->model);
	rt->model = NULL;
	rt->nfallbacks = 0;
}

static void
taskresult_agent_clear(struct tr_agent *a)
{
	free(a->question);
	free(a->status);
	free(a->error);
	free(a->signal);
	taskresult_route_clear(&a->route);
}

void
taskresult_free(struct task_result *r)
{
	if (r == NULL)
		return;
	free(r->answer);
	free(r->planner_error);
	free(r->synthesis_error);
	taskresult_route_clear(&r->planner);
	taskresult_route_clear(&r->synthesis);
	for (int i = 0; i < r->nagents; i++)
		taskresult_agent_clear(&r->agents[i]);
	free(r->strategy);
	free(r->strategy_fallback);
	for (int i = 0; i < r->nreview_errors; i++) {
		free(r->review_errors[i].model);
		free(r->review_errors[i].status);
		free(r->review_errors[i].error);
	}
	free(r->budget_stop);
	free(r->resumed_from);
	free(r->resumed_why);
	for (int i = 0; i < r->drafts.n; i++)
		free(r->drafts.list[i].status);
	free(r->workspace);
	free(r->confinement);
	for (int i = 0; i < r->nweaker; i++)
		free(r->weaker[i]);
	free(r->cached_from);
	free(r);
}

static char *
tr_dup(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

static void
taskresult_route_copy(struct tr_route *rt)
{
	rt->model = tr_dup(rt->model);
	for (int i = 0; i < rt->nfallbacks; i++) {
		rt->fallbacks[i].from = tr_dup(rt->fallbacks[i].from);
		rt->fallbacks[i].to = tr_dup(rt->fallbacks[i].to);
		rt->fallbacks[i].reason = tr_dup(rt->fallbacks[i].reason);
	}
}

/* A copy of its own: every string duplicated. */
struct task_result *
taskresult_copy(const struct task_result *from)
{
	struct task_result	*r;
	struct tr_agent		*a;

	if (from == NULL)
		return NULL;
	r = xmalloc(sizeof *r);
	memcpy(r, from, sizeof *r);
	r->answer = tr_dup(r->answer);
	r->planner_error = tr_dup(r->planner_error);
	r->synthesis_error = tr_dup(r->synthesis_error);
	taskresult_route_copy(&r->planner);
	taskresult_route_copy(&r->synthesis);
	for (int i = 0; i < r->nagents; i++) {
		a = &r->agents[i];
		a->question = tr_dup(a->question);
		a->status = tr_dup(a->status);
		a->error = tr_dup(a->error);
		a->signal = tr_dup(a->signal);
		taskresult_route_copy(&a->route);
	}
	r->strategy = tr_dup(r->strategy);
	r->strategy_fallback = tr_dup(r->strategy_fallback);
	for (int i = 0; i < r->nreview_errors; i++) {
		r->review_errors[i].model = tr_dup(r->review_errors[i].model);
		r->review_errors[i].status = tr_dup(r->review_errors[i].status);
		r->review_errors[i].error = tr_dup(r->review_errors[i].error);
	}
	r->budget_stop = tr_dup(r->budget_stop);
	r->resumed_from = tr_dup(r->resumed_from);
	r->resumed_why = tr_dup(r->resumed_why);
	for (int i = 0; i < r->drafts.n; i++)
		r->drafts.list[i].status = tr_dup(r->drafts.list[i].status);
	r->workspace = tr_dup(r->workspace);
	r->confinement = tr_dup(r->confinement);
	for (int i = 0; i < r->nweaker; i++)
		r->weaker[i] = tr_dup(r->weaker[i]);
	r->cached_from = tr_dup(r->cached_from);
	return r;
}

/* ---- the store's columns ---- */

#define R(f)	offsetof(struct task_result, f)
#define U(f)	offsetof(struct usage, f)
#define USAGE(p, base) \
	{ p "prompt_tokens", TRC_U64, base + U(prompt_tokens) }, \
	{ p "completion_tokens", TRC_U64, base + U(completion_tokens) }, \
	{ p "total_tokens", TRC_U64, base + U(total_tokens) }, \
	{ p "llm_calls", TRC_U32, base + U(llm_calls) }, \
	{ p "retries", TRC_U32, base + U(retries) }, \
	{ p "cost_micro_usd", TRC_U64, base + U(cost_micro_usd) }, \
	{ p "hedged_calls", TRC_U32, base + U(hedged_calls) }, \
	{ p "hedges_won", TRC_U32, base + U(hedges_won) }

_Static_assert(sizeof(enum tr_kind) == sizeof(int), "kind is kept as an int");

/* Their order is the order of the columns in both backends' statements. */
const struct tr_column taskresult_columns[] = {
	{ "kind", TRC_INT, R(kind) },
	{ "answer", TRC_TEXT, R(answer) },
	{ "failed", TRC_BOOL, R(failed) },
	{ "synthesized", TRC_BOOL, R(synthesized) },
	{ "planner_fallback", TRC_BOOL, R(planner_fallback) },
	{ "planner_reasked", TRC_BOOL, R(planner_reasked) },
	{ "planner_error", TRC_TEXT, R(planner_error) },
	{ "synthesis_error", TRC_TEXT, R(synthesis_error) },
	{ "synthesis_truncated", TRC_INT, R(synthesis_truncated) },
	{ "planner_model", TRC_TEXT, R(planner.model) },
	{ "synthesis_model", TRC_TEXT, R(synthesis.model) },
	USAGE("", R(usage)),
	{ "elapsed_ms", TRC_I64, R(elapsed_ms) },
	{ "strategy", TRC_TEXT, R(strategy) },
	{ "strategy_fallback", TRC_TEXT, R(strategy_fallback) },
	{ "ranked", TRC_BOOL, R(ranked) },
	{ "max_total_tokens", TRC_U64, R(max_total_tokens) },
	{ "max_cost_usd", TRC_REAL, R(max_cost_usd) },
	{ "budget_stop", TRC_TEXT, R(budget_stop) },
	{ "min_agents", TRC_INT, R(min_agents) },
	{ "straggler_grace_s", TRC_REAL, R(straggler_grace_s) },
	{ "has_resumed", TRC_BOOL, R(has_resumed) },
	{ "resumed_from", TRC_TEXT, R(resumed_from) },
	{ "resumed_why", TRC_TEXT, R(resumed_why) },
	{ "resumed_planner", TRC_BOOL, R(resumed_planner) },
	{ "has_drafts", TRC_BOOL, R(has_drafts) },
	{ "drafts_interval_s", TRC_REAL, R(drafts.interval_s) },
	{ "drafts_tokens", TRC_U64, R(drafts.tokens) },
	{ "drafts_llm_calls", TRC_U32, R(drafts.llm_calls) },
	{ "drafts_cost_micro_usd", TRC_U64, R(drafts.cost_micro_usd) },
	{ "drafts_first_ms", TRC_I64, R(drafts.first_draft_ms) },
	{ "drafts_answer_ms", TRC_I64, R(drafts.answer_ms) },
	{ "drafts_synthesis_from", TRC_INT, R(drafts.synthesis_from) },
	{ "workspace", TRC_TEXT, R(workspace) },
	{ "confinement", TRC_TEXT, R(confinement) },
	{ "cached", TRC_BOOL, R(cached) },
	{ "cached_from", TRC_TEXT, R(cached_from) },
	{ "has_session", TRC_BOOL, R(has_session) },
	USAGE("session_", R(session_usage)),
	{ "session_tasks", TRC_INT, R(session_tasks) },
};
const int taskresult_ncolumns =
    (int)(sizeof taskresult_columns / sizeof taskresult_columns[0]);

#define A(f)	offsetof(struct tr_agent, f)
const struct tr_column taskresult_agent_columns[] = {
	{ "idx", TRC_INT, A(index) },
	{ "question", TRC_TEXT, A(question) },
	{ "status", TRC_TEXT, A(status) },
	{ "elapsed_ms", TRC_I64, A(elapsed_ms) },
	{ "error", TRC_TEXT, A(error) },
	{ "signal", TRC_TEXT, A(signal) },
	{ "model", TRC_TEXT, A(route.model) },
	{ "rank", TRC_INT, A(rank) },
	{ "rerun", TRC_BOOL, A(rerun) },
	USAGE("", A(usage)),
};
const int taskresult_nagent_columns =
    (int)(sizeof taskresult_agent_columns / sizeof taskresult_agent_columns[0]);

const char *
taskresult_col_text(const void *base, const struct tr_column *c)
{
	return *(char *const *)((const char *)base + c->off);
}

int64_t
taskresult_col_int(const void *base, const struct tr_column *c)
{
	const char	*p = (const char *)base + c->off;

	switch (c->type) {
	case TRC_INT:
		return *(const int *)p;
	case TRC_BOOL:
		return *(const bool *)p;
	case TRC_I64:
		return *(const int64_t *)p;
	case TRC_U64:
		return (int64_t)*(const uint64_t *)p;
	case TRC_U32:
		return *(const uint32_t *)p;
	default:
		return 0;
	}
}

double
taskresult_col_real(const void *base, const struct tr_column *c)
{
	return *(const double *)((const char *)base + c->off);
}

void
taskresult_col_set_text(void *base, const struct tr_column *c, const char *v)
{
	char	**p = (char **)((char *)base + c->off);

	free(*p);
	*p = tr_dup(v);
}

void
taskresult_col_set_int(void *base, const struct tr_column *c, int64_t v)
{
	char	*p = (char *)base + c->off;

	switch (c->type) {
	case TRC_INT:
		*(int *)p = (int)v;
		break;
	case TRC_BOOL:
		*(bool *)p = v != 0;
		break;
	case TRC_I64:
		*(int64_t *)p = v;
		break;
	case TRC_U64:
		*(uint64_t *)p = (uint64_t)v;
		break;
	case TRC_U32:
		*(uint32_t *)p = (uint32_t)v;
		break;
	default:
		break;
	}
}

void
taskresult_col_set_real(void *base, const struct tr_column *c, double v)
{
	*(double *)((char *)base + c->off) = v;
}

/* ---- the store's rows of lists ---- */

static struct tr_item *
tr_item_next(struct tr_item **items, int *n, const char *list, int owner,
    int pos)
{
	struct tr_item	*it;

	*items = xrealloc(*items, (size_t)(*n + 1) * sizeof **items);
	it = &(*items)[(*n)++];
	memset(it, 0, sizeof *it);
	it->list = list;
	it->owner = owner;
	it->n = pos;
	return it;
}

static void
tr_route_items(const struct tr_route *rt, int owner, struct tr_item **items,
    int *n)
{
	struct tr_item	*it;

	for (int i = 0; i < rt->nfallbacks; i++) {
		it = tr_item_next(items, n, "fallback", owner, i);
		it->s1 = rt->fallbacks[i].from;
		it->s2 = rt->fallbacks[i].to;
		it->s3 = rt->fallbacks[i].reason;
	}
}

/* The result's lists as rows (their strings the result's); how many. */
int
taskresult_items(const struct task_result *r, struct tr_item **out)
{
	struct tr_item	*items = NULL, *it;
	int		 n = 0;

	tr_route_items(&r->planner, 0, &items, &n);
	tr_route_items(&r->synthesis, -1, &items, &n);
	for (int i = 0; i < r->nagents; i++)
		tr_route_items(&r->agents[i].route, r->agents[i].index, &items,
		    &n);
	for (int i = 0; i < r->nranking; i++) {
		it = tr_item_next(&items, &n, "rank", 0, i);
		it->a = r->ranking[i].agent;
		it->b = r->ranking[i].rank;
		it->c = r->ranking[i].reviews;
		it->x = r->ranking[i].score;
	}
	for (int i = 0; i < r->nreview_errors; i++) {
		it = tr_item_next(&items, &n, "review_error", 0, i);
		it->a = r->review_errors[i].reviewer;
		it->s1 = r->review_errors[i].model;
		it->s2 = r->review_errors[i].status;
		it->s3 = r->review_errors[i].error;
	}
	for (int i = 0; i < r->drafts.n; i++) {
		it = tr_item_next(&items, &n, "draft", 0, i);
		it->a = r->drafts.list[i].answers;
		it->b = r->drafts.list[i].started_ms;
		it->c = r->drafts.list[i].ended_ms;
		it->d = (int64_t)r->drafts.list[i].tokens;
		it->s1 = r->drafts.list[i].status;
	}
	for (int i = 0; i < r->nweaker; i++)
		tr_item_next(&items, &n, "weaker", 0, i)->s1 = r->weaker[i];
	*out = items;
	return n;
}

/* The route an item of "fallback" belongs to, or NULL. */
static struct tr_route *
tr_item_route(struct task_result *r, int owner)
{
	if (owner == 0)
		return &r->planner;
	if (owner == -1)
		return &r->synthesis;
	for (int i = 0; i < r->nagents; i++)
		if (r->agents[i].index == owner)
			return &r->agents[i].route;
	return NULL;
}

/*
 * One row of a list back into the result, its agents already there; the
 * rows come in order of n within each list.  -1 for a row that fits
 * nowhere (it is left out).
 */
int
taskresult_item_add(struct task_result *r, const struct tr_item *it)
{
	struct tr_route		*rt;
	struct tr_fallback	*f;
	struct tr_review_error	*e;
	struct tr_draft		*d;

	if (strcmp(it->list, "fallback") == 0) {
		if ((rt = tr_item_route(r, it->owner)) == NULL ||
		    rt->nfallbacks == HEAVY_MAX_FALLBACKS)
			return -1;
		f = &rt->fallbacks[rt->nfallbacks++];
		f->from = tr_dup(it->s1 ? it->s1 : "");
		f->to = tr_dup(it->s2 ? it->s2 : "");
		f->reason = tr_dup(it->s3 ? it->s3 : "");
	} else if (strcmp(it->list, "rank") == 0) {
		if (r->nranking == HEAVY_MAX_AGENTS)
			return -1;
		r->ranking[r->nranking++] = (struct tr_rank){ (int)it->a,
		    (int)it->b, it->x, (int)it->c };
	} else if (strcmp(it->list, "review_error") == 0) {
		if (r->nreview_errors == HEAVY_MAX_AGENTS)
			return -1;
		e = &r->review_errors[r->nreview_errors++];
		e->reviewer = (int)it->a;
		e->model = tr_dup(it->s1 ? it->s1 : "");
		e->status = tr_dup(it->s2 ? it->s2 : "failed");
		e->error = tr_dup(it->s3 ? it->s3 : "");
	} else if (strcmp(it->list, "draft") == 0) {
		if (r->drafts.n == HEAVY_MAX_AGENTS)
			return -1;
		d = &r->drafts.list[r->drafts.n++];
		d->n = r->drafts.n;
		d->answers = (int)it->a;
		d->status = tr_dup(it->s1 ? it->s1 : "ok");
		d->started_ms = it->b;
		d->ended_ms = it->c;
		d->tokens = (uint64_t)it->d;
	} else if (strcmp(it->list, "weaker") == 0) {
		if (r->nweaker == 3)
			return -1;
		r->weaker[r->nweaker++] = tr_dup(it->s1 ? it->s1 : "");
	} else
		return -1;
	return 0;
}

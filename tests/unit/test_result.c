/*
 * The MCP edge's renderer of a task's typed result (supervisor/result.c):
 * a filled result renders to exactly the CallToolResult clients have
 * always seen, key for key and in the same order.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "../../supervisor/supervisor.h"
#include "result_fill.h"

#define USAGE1 "{\"prompt_tokens\":100,\"completion_tokens\":20," \
	"\"total_tokens\":120,\"llm_calls\":2,\"retries\":1," \
	"\"hedged_calls\":1,\"hedges_won\":0,\"cost_usd\":0.012345}"
#define AGENT(i, q, st, err, sig, fbs, rank) "{\"index\":" i \
	",\"question\":" q ",\"status\":\"" st "\",\"elapsed_ms\":" i "000," \
	"\"error\":" err ",\"signal\":" sig ",\"usage\":" USAGE1 "," \
	"\"model\":\"m/a\",\"fallbacks\":" fbs ",\"rank\":" rank "}"

static const char *filled_json =
	"{\"content\":[{\"type\":\"text\",\"text\":\"(Stopped early, the "
	"token budget of 5000 was reached.)\\n\\nThe answer \\\"quoted\\\" "
	"/ slashed\"}],\"structuredContent\":{"
	"\"answer\":\"The answer \\\"quoted\\\" / slashed\","
	"\"synthesized\":true,\"planner_fallback\":false,"
	"\"planner_reasked\":true,\"planner_error\":null,"
	"\"synthesis_error\":\"synthesis truncated\","
	"\"synthesis_truncated\":2,"
	"\"planner_model\":\"m/p\",\"planner_fallbacks\":[],"
	"\"synthesis_model\":null,\"synthesis_fallbacks\":[{\"from\":"
	"\"m/s\",\"to\":\"m/s2\",\"reason\":\"rate_limited\"}],"
	"\"agents\":["
	AGENT("1", "\"q1\"", "ok", "null", "null", "[{\"from\":\"m/a0\","
	    "\"to\":\"m/a\",\"reason\":\"rate_limited\"}]", "1") ","
	AGENT("2", "\"\"", "timed_out", "\"deadline\"", "\"SIGKILL\"", "[]",
	    "null") ","
	AGENT("3", "\"q3\"", "cut_for_latency", "null", "null", "[]", "null")
	"],\"usage\":" USAGE1 ",\"elapsed_ms\":4321,"
	"\"strategy\":\"peer_review\",\"strategy_fallback\":null,"
	"\"ranking\":[{\"agent\":1,\"rank\":1,\"score\":0.75,\"reviews\":2}],"
	"\"review_errors\":[{\"reviewer\":2,\"model\":\"m/r\",\"status\":"
	"\"failed\",\"error\":\"no ranking\"}],"
	"\"budget\":{\"max_total_tokens\":5000,\"max_cost_usd\":0.5,"
	"\"stopped\":\"the token budget of 5000 was reached\"},"
	"\"cut_for_latency\":[3],"
	"\"quorum\":{\"min_agents\":2,\"straggler_grace\":1.5},"
	"\"resumed\":{\"from\":\"node-a\",\"why\":\"its node died\","
	"\"planner_rerun\":false,\"rerun\":[2],\"kept\":[1,3]},"
	"\"drafts\":{\"interval\":2.0,\"calls\":2,\"tokens\":300,"
	"\"llm_calls\":2,\"cost_usd\":0.25,\"first_draft_ms\":900,"
	"\"answer_ms\":4321,\"synthesis_from\":2,\"list\":["
	"{\"n\":1,\"answers\":1,\"status\":\"ok\",\"started_ms\":100,"
	"\"ended_ms\":900,\"tokens\":100},"
	"{\"n\":2,\"answers\":2,\"status\":\"ok\",\"started_ms\":1000,"
	"\"ended_ms\":2000,\"tokens\":200}]},"
	"\"workspace\":\"/ws/1\","
	"\"sandbox\":{\"confinement\":\"Landlock ABI 4, seccomp\","
	"\"weaker\":[\"filesystem\"]}"
	"%s},\"isError\":false}";

static char *
text(struct json_object *o)
{
	char	*s = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	json_object_put(o);
	return s;
}

static void
expect(const struct task_result *r, const char *edge)
{
	char	*want = xasprintf(filled_json, edge), *got;

	got = rendered(r);
	cr_assert_str_eq(got, want);
	free(got);
	free(want);
}

Test(result, a_filled_result_renders_exactly)
{
	struct task_result	*r = filled();

	expect(r, "");
	taskresult_free(r);
}

Test(result, the_edge_adds_cached_and_the_sessions_usage)
{
	struct task_result	*r = filled_edge();

	expect(r, ",\"cached\":false,\"cached_from\":null,\"session_usage\":"
	    "{\"prompt_tokens\":100,\"completion_tokens\":20,"
	    "\"total_tokens\":120,\"llm_calls\":2,\"retries\":1,"
	    "\"hedged_calls\":1,\"hedges_won\":0,\"cost_usd\":0.012345,"
	    "\"tasks\":3}");
	taskresult_free(r);
}

Test(result, a_failed_one_shows_its_error_as_is)
{
	struct task_result	*r = taskresult_new(TR_ORCHESTRATION);
	char			*got;

	r->answer = xstrdup("All 2 agents failed");
	r->failed = true;
	r->budget_stop = xstrdup("the cost budget");	/* not prefixed */
	r->strategy = xstrdup("synthesis");
	got = text(result_render(r));
	cr_assert(strncmp(got, "{\"content\":[{\"type\":\"text\",\"text\":"
	    "\"All 2 agents failed\"}],", 45) == 0, "%s", got);
	cr_assert(strstr(got, "\"planner_model\":null") != NULL, "%s", got);
	cr_assert(strstr(got, ",\"quorum\":null,\"workspace\":\"\"") != NULL,
	    "no drafts, no quorum: %s", got);
	cr_assert(strstr(got, "\"ranking\":null") != NULL, "%s", got);
	cr_assert(strstr(got, "}},\"isError\":true}") != NULL, "%s", got);
	free(got);
	taskresult_free(r);
}

Test(result, a_text_result_is_the_text_alone)
{
	struct task_result	*r = taskresult_text("done after 1 s", false);
	char			*got, *want;

	got = text(result_render(r));
	cr_assert_str_eq(got, "{\"content\":[{\"type\":\"text\",\"text\":"
	    "\"done after 1 s\"}]}");
	free(got);
	cr_assert_null(result_structured(r));
	taskresult_free(r);
	r = taskresult_text("it failed", true);
	got = text(result_render(r));
	want = text(tool_error_result("it failed"));
	cr_assert_str_eq(got, want, "as tool_error_result has it");
	free(got);
	free(want);
	taskresult_free(r);
}

/* A copy renders as the original, and its lists go to rows and back. */
Test(result, a_copy_and_its_rows_render_as_the_original)
{
	struct task_result	*r = filled_edge(), *c, *back;
	struct tr_item		*items;
	char			*a, *b;
	int			 n;

	c = taskresult_copy(r);
	a = rendered(r);
	taskresult_free(r);
	b = rendered(c);
	cr_assert_str_eq(b, a);
	free(b);
	/* The scalars and agents as the store's columns, the lists as rows. */
	back = taskresult_new(TR_ORCHESTRATION);
	for (int k = 0; k < taskresult_ncolumns; k++) {
		if (taskresult_columns[k].type == TRC_TEXT)
			taskresult_col_set_text(back, &taskresult_columns[k],
			    taskresult_col_text(c, &taskresult_columns[k]));
		else if (taskresult_columns[k].type == TRC_REAL)
			taskresult_col_set_real(back, &taskresult_columns[k],
			    taskresult_col_real(c, &taskresult_columns[k]));
		else
			taskresult_col_set_int(back, &taskresult_columns[k],
			    taskresult_col_int(c, &taskresult_columns[k]));
	}
	for (int i = 0; i < c->nagents; i++)
		for (int k = 0; k < taskresult_nagent_columns; k++) {
			const struct tr_column *col = &taskresult_agent_columns[k];

			if (col->type == TRC_TEXT)
				taskresult_col_set_text(&back->agents[i], col,
				    taskresult_col_text(&c->agents[i], col));
			else
				taskresult_col_set_int(&back->agents[i], col,
				    taskresult_col_int(&c->agents[i], col));
		}
	back->nagents = c->nagents;
	n = taskresult_items(c, &items);
	cr_assert_eq(n, 7, "2 fallbacks, a rank, a review error, 2 drafts and "
	    "a weaker part: %d", n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(taskresult_item_add(back, &items[i]), 0);
	free(items);
	b = rendered(back);
	cr_assert_str_eq(b, a);
	free(a);
	free(b);
	taskresult_free(c);
	taskresult_free(back);
}

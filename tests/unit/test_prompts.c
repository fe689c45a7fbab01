/* MCP prompts: arguments checked, optional lines dropped, completion. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../supervisor/supervisor.h"

static const char *
text_of(struct json_object *res)
{
	struct json_object	*m = json_object_array_get_idx(
	    json_object_object_get(res, "messages"), 0);

	return json_object_get_string(json_object_object_get(
	    json_object_object_get(m, "content"), "text"));
}

Test(prompts, list_names_every_prompt_with_its_arguments)
{
	struct json_object	*l = prompts_list(), *p;

	p = json_object_object_get(l, "prompts");
	cr_assert_eq(json_object_array_length(p), 3);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(p, 0), "name")), "deep_analysis");
	json_object_put(l);
}

Test(prompts, deep_analysis_fills_the_query_and_agents)
{
	struct json_object	*a = json_tokener_parse(
	    "{\"topic\":\"tidal power\",\"depth\":\"deep\"}"), *r;
	char			 err[256];

	r = prompts_get("deep_analysis", a, err, sizeof err);
	cr_assert_not_null(r, "%s", err);
	cr_assert(strstr(text_of(r), "num_agents 8") != NULL);
	cr_assert(strstr(text_of(r), "analysis of: tidal power") != NULL);
	cr_assert(strstr(text_of(r), "Weigh this aspect") == NULL,
	    "no focus given, no focus line");
	json_object_put(r);
	json_object_put(a);
}

Test(prompts, optional_lines_appear_when_given)
{
	struct json_object	*a = json_tokener_parse("{\"options\":\"a, b\","
	    "\"criteria\":\"cost\"}"), *r;
	char			 err[256];

	r = prompts_get("compare_options", a, err, sizeof err);
	cr_assert_not_null(r, "%s", err);
	cr_assert(strstr(text_of(r), "Judge them on: cost.") != NULL);
	cr_assert(strstr(text_of(r), "context of the decision") == NULL);
	json_object_put(r);
	json_object_put(a);
}

Test(prompts, bad_input_gets_a_clear_error)
{
	struct json_object	*a;
	char			 err[256];

	cr_assert_null(prompts_get("nope", NULL, err, sizeof err));
	cr_assert(strstr(err, "unknown prompt 'nope'") != NULL);
	cr_assert_null(prompts_get("fact_check", NULL, err, sizeof err));
	cr_assert(strstr(err, "'claim' is required") != NULL);
	a = json_tokener_parse("{\"claim\":42}");
	cr_assert_null(prompts_get("fact_check", a, err, sizeof err));
	cr_assert(strstr(err, "'claim' must be a string") != NULL);
	json_object_put(a);
	a = json_tokener_parse("{\"topic\":\"x\",\"depth\":\"huge\"}");
	cr_assert_null(prompts_get("deep_analysis", a, err, sizeof err));
	cr_assert(strstr(err, "quick, standard or deep") != NULL);
	json_object_put(a);
}

Test(prompts, completion_offers_matching_choices)
{
	struct json_object	*v;

	v = prompts_complete("deep_analysis", "depth", "st");
	cr_assert_eq(json_object_array_length(v), 1);
	cr_assert_str_eq(json_object_get_string(
	    json_object_array_get_idx(v, 0)), "standard");
	json_object_put(v);
	v = prompts_complete("compare_options", "criteria", "cost, SEC");
	cr_assert_eq(json_object_array_length(v), 1);
	cr_assert_str_eq(json_object_get_string(
	    json_object_array_get_idx(v, 0)), "security");
	json_object_put(v);
	v = prompts_complete("fact_check", "claim", "x");
	cr_assert_eq(json_object_array_length(v), 0);
	json_object_put(v);
	cr_assert_null(prompts_complete("fact_check", "nope", ""));
	cr_assert_null(prompts_complete("nope", "claim", ""));
}

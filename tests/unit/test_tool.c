/* heavy_orchestrate's arguments and the prompts built from them. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../supervisor/supervisor.h"

static struct heavy_config	cfg;

static void setup(void) { config_defaults(&cfg); }
static void teardown(void) { config_clear(&cfg); }

static int
args(const char *json, struct task_params *p, char *err)
{
	struct json_object	*a = json_tokener_parse(json);
	int			 rc;

	rc = tool_orchestrate_args(&cfg, a, p, err, 256);
	json_object_put(a);
	return rc;
}

Test(tool, defaults_apply, .init = setup, .fini = teardown)
{
	struct task_params	p;
	char			err[256];

	cr_assert_eq(args("{\"query\":\"why?\"}", &p, err), 0);
	cr_assert_eq(p.num_agents, 4);
	cr_assert_float_eq(p.timeout_s, 300, 1e-9);
	cr_assert_null(p.model);
	task_params_clear(&p);
}

Test(tool, every_argument_accepted, .init = setup, .fini = teardown)
{
	struct task_params	p;
	char			err[256];

	cr_assert_eq(args("{\"query\":\"q\",\"num_agents\":16,\"timeout\":2.5,"
	    "\"model\":\"openai/gpt-4o\"}", &p, err), 0, "%s", err);
	cr_assert_eq(p.num_agents, 16);
	cr_assert_float_eq(p.timeout_s, 2.5, 1e-9);
	cr_assert_str_eq(p.model, "openai/gpt-4o");
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"fallback_models\":[\"a/b\","
	    "\"c/d:free\"]}", &p, err), 0, "%s", err);
	cr_assert_eq(p.nfallbacks, 2);
	cr_assert_str_eq(p.fallbacks[0], "a/b");
	cr_assert_str_eq(p.fallbacks[1], "c/d:free");
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"fallback_models\":null}", &p,
	    err), 0, "%s", err);
	cr_assert_eq(p.nfallbacks, 0, "null: the configured lists");
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"hedge_after_ms\":1500}", &p,
	    err), 0, "%s", err);
	cr_assert_eq(p.hedge_after_ms, 1500);
	task_params_clear(&p);
}

/* hedge_after_ms: off unless configured; the call's own overrides it. */
Test(tool, hedge_after_ms_defaults_to_the_configured, .init = setup,
    .fini = teardown)
{
	struct task_params	p;
	char			err[256];

	cr_assert_eq(args("{\"query\":\"q\"}", &p, err), 0);
	cr_assert_eq(p.hedge_after_ms, 0, "off by default");
	task_params_clear(&p);
	cfg.hedge_after_ms = 800;
	cr_assert_eq(args("{\"query\":\"q\"}", &p, err), 0);
	cr_assert_eq(p.hedge_after_ms, 800);
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"hedge_after_ms\":0}", &p, err),
	    0);
	cr_assert_eq(p.hedge_after_ms, 0, "the call turns it off");
	task_params_clear(&p);
}

/* resume: on unless configured off; the call's own overrides it; a
 * boolean only. */
Test(tool, resume_defaults_to_the_configured, .init = setup, .fini = teardown)
{
	struct task_params	p;
	char			err[256];

	cr_assert_eq(args("{\"query\":\"q\"}", &p, err), 0);
	cr_assert(p.resume, "on by default");
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"resume\":false}", &p, err), 0,
	    "%s", err);
	cr_assert_not(p.resume, "the call turns it off");
	task_params_clear(&p);
	cfg.resume = 0;
	cr_assert_eq(args("{\"query\":\"q\"}", &p, err), 0);
	cr_assert_not(p.resume, "configured off");
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"resume\":true}", &p, err), 0);
	cr_assert(p.resume, "the call turns it on");
	task_params_clear(&p);
	cr_assert_eq(args("{\"query\":\"q\",\"resume\":1}", &p, err), -1);
	cr_assert(strstr(err, "'resume'") != NULL, "%s", err);
}

struct bad { const char *json; const char *needle; };

Test(tool, bad_arguments_name_the_argument, .init = setup, .fini = teardown)
{
	static const struct bad cases[] = {
		{ "{}", "'query': required" },
		{ "{\"query\":\"  \"}", "'query': must not be empty" },
		{ "{\"query\":5}", "'query': must be a string" },
		{ "{\"query\":\"q\",\"num_agents\":0}", "'num_agents'" },
		{ "{\"query\":\"q\",\"num_agents\":17}", "'num_agents'" },
		{ "{\"query\":\"q\",\"num_agents\":\"4\"}", "'num_agents'" },
		{ "{\"query\":\"q\",\"num_agents\":2.5}", "'num_agents'" },
		{ "{\"query\":\"q\",\"timeout\":-1}", "'timeout'" },
		{ "{\"query\":\"q\",\"timeout\":0.5}", "'timeout'" },
		{ "{\"query\":\"q\",\"timeout\":\"soon\"}", "'timeout'" },
		{ "{\"query\":\"q\",\"model\":\"\"}", "'model'" },
		{ "{\"query\":\"q\",\"model\":\"a b\"}", "'model'" },
		{ "{\"query\":\"q\",\"agents\":3}", "'agents': unknown argument" },
		{ "{\"query\":\"q\",\"fallback_models\":\"m\"}",
		    "'fallback_models': expected an array of at most 8" },
		{ "{\"query\":\"q\",\"fallback_models\":[\"1\",\"2\",\"3\","
		    "\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", "at most 8 model ids" },
		{ "{\"query\":\"q\",\"fallback_models\":[\"a\",5]}",
		    "'fallback_models[1]': must be a string" },
		{ "{\"query\":\"q\",\"fallback_models\":[\"\"]}",
		    "'fallback_models[0]': expected a model id" },
		{ "{\"query\":\"q\",\"hedge_after_ms\":-1}", "'hedge_after_ms'" },
		{ "{\"query\":\"q\",\"hedge_after_ms\":600001}",
		    "'hedge_after_ms': expected an integer of milliseconds" },
		{ "{\"query\":\"q\",\"hedge_after_ms\":2.5}", "'hedge_after_ms'" },
		{ "{\"query\":\"q\",\"hedge_after_ms\":\"1s\"}", "'hedge_after_ms'" },
	};
	struct task_params	p;
	char			err[256];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		cr_assert_eq(args(cases[i].json, &p, err), -1, "%s accepted",
		    cases[i].json);
		cr_assert(strstr(err, cases[i].needle) != NULL,
		    "%s: \"%s\" lacks \"%s\"", cases[i].json, err,
		    cases[i].needle);
		cr_assert_null(p.query, "nothing kept on error");
	}
	cr_assert_eq(tool_orchestrate_args(&cfg, NULL, &p, err, sizeof err), -1);
}

Test(tool, list_has_both_schemas, .init = setup, .fini = teardown)
{
	struct json_object	*l = toolcall_list(&cfg), *t, *v;

	t = json_object_array_get_idx(json_object_object_get(l, "tools"), 0);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(t,
	    "name")), "heavy_orchestrate");
	cr_assert(json_object_object_get_ex(t, "inputSchema", &v) &&
	    json_object_is_type(v, json_type_object));
	cr_assert(json_object_object_get_ex(t, "outputSchema", &v) &&
	    json_object_is_type(v, json_type_object), "outputSchema parses");
	json_object_put(l);
}

/* Every tool's annotations parse (they are C string literals). */
Test(tool, every_tool_has_annotations, .init = setup, .fini = teardown)
{
	struct json_object	*l = toolcall_list(&cfg), *tools, *t, *a;

	tools = json_object_object_get(l, "tools");
	cr_assert_eq(json_object_array_length(tools), 7);
	for (size_t i = 0; i < 7; i++) {
		t = json_object_array_get_idx(tools, i);
		cr_assert(json_object_object_get_ex(t, "annotations", &a) &&
		    json_object_is_type(a, json_type_object), "tool %zu", i);
		cr_assert(json_object_object_get_ex(a, "openWorldHint", NULL));
	}
	json_object_put(l);
}

Test(tool, compat_off_lists_heavy_orchestrate_alone, .init = setup,
    .fini = teardown)
{
	struct json_object	*l;

	cfg.tools_compat = 0;
	l = toolcall_list(&cfg);
	cr_assert_eq(json_object_array_length(json_object_object_get(l,
	    "tools")), 1);
	cr_assert(!mkh_has(&cfg, "get_task_progress"));
	json_object_put(l);
	cfg.tools_compat = 1;
	cr_assert(mkh_has(&cfg, "get_task_progress"));
}

Test(prompt, render_replaces_known_keys_only)
{
	const char	*keys[] = { "a", "bb" };
	const char	*vals[] = { "1", "{a}" };
	char		*s = prompt_render("{a}-{bb}-{c}-{a", keys, vals, 2);

	cr_assert_str_eq(s, "1-{a}-{c}-{a", "values are not re-expanded");
	free(s);
}

Test(prompt, planner_uses_make_it_heavy_placeholders, .init = setup,
    .fini = teardown)
{
	char	*s = prompt_planner(&cfg, "Is C fast?", 3);

	cr_assert(strstr(s, "create 3 different questions") != NULL);
	cr_assert(strstr(s, "Original user query: Is C fast?") != NULL);
	free(s);
}

Test(prompt, fallback_questions_are_distinct)
{
	char	*q[6];

	for (int i = 0; i < 6; i++)
		q[i] = prompt_fallback_question("topic", i);
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(q[i], q[j]);
	for (int i = 0; i < 6; i++)
		free(q[i]);
}

Test(prompt, synthesis_within_budget_says_what_was_cut, .init = setup,
    .fini = teardown)
{
	char			 big[5000];
	const char		*in[3] = { "short answer", big, big };
	char			*s;
	int			 dropped;

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	s = prompt_synthesis(&cfg, in, 3, 2000, &dropped);
	cr_assert_eq(dropped, 2);
	cr_assert(strstr(s, "short answer") != NULL, "short answers kept whole");
	cr_assert(strstr(s, "[truncated: 994 of 4999 bytes kept]") != NULL,
	    "%s", s);
	cr_assert(strstr(s, "=== AGENT 3 RESPONSE ===") != NULL);
	cr_assert(strstr(s, "You have 3 different AI agents") != NULL);
	free(s);
	s = prompt_synthesis(&cfg, in, 1, 2000, &dropped);
	cr_assert_eq(dropped, 0);
	free(s);
}

/* incremental: a draft says how many answered; the final synthesis is
 * told to start from the draft, which gets one answer's share at most. */
Test(prompt, drafts_and_the_synthesis_that_starts_from_one, .init = setup,
    .fini = teardown)
{
	char			 big[5000];
	const char		*in[3] = { "first answer", "second answer", big };
	char			*s;
	int			 dropped;

	memset(big, 'd', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	s = prompt_draft(&cfg, in, 2, 4, 2000, &dropped);
	cr_assert(strstr(s, "Only 2 of the 4 agents have answered so far") !=
	    NULL, "%s", s);
	cr_assert(strstr(s, "second answer") != NULL);
	cr_assert_eq(dropped, 0);
	free(s);
	s = prompt_synthesis_draft(&cfg, in, 2, 3000, &dropped,
	    "the draft text", 1);
	cr_assert(strstr(s, "=== EARLY DRAFT (from 1 of 2 responses) ===\n"
	    "the draft text\n") != NULL, "%s", s);
	cr_assert(strstr(s, "written from the first 1 of these 2") != NULL);
	cr_assert(strstr(s, "have answered so far") == NULL, "not a draft");
	free(s);
	/* A huge draft is cut to a third of 3000 bytes beside two answers. */
	s = prompt_synthesis_draft(&cfg, in, 2, 3000, &dropped, big, 1);
	cr_assert(strstr(s, "[truncated: 1000 of 4999 bytes kept]") != NULL,
	    "%s", s);
	cr_assert_eq(dropped, 0, "the answers fit in the rest");
	free(s);
}

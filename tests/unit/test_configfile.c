/* The YAML file: make-it-heavy's config loads; mistakes name file:line:key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"
#include "tmpdir.h"

/* make-it-heavy's own file (MIT), copied unchanged; run from the repository. */
#define MAKE_IT_HEAVY	"tests/fixtures/make-it-heavy/config.yaml"

static char	path[256];

static const char *
write_yaml(const char *text)
{
	int	fd;

	unit_tmp(path, sizeof path, "heavyd-conf");
	fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static int
load(const char *text, struct heavy_config *c, char *err)
{
	int	rc;

	config_defaults(c);
	rc = config_load_file(c, write_yaml(text), err, 512);
	unlink(path);
	return rc;
}

Test(configfile, make_it_heavy_config_loads_unchanged)
{
	struct heavy_config	c;
	char			err[512];

	cr_assert_eq(access(MAKE_IT_HEAVY, R_OK), 0, "%s: %s (run the tests "
	    "from the repository's top directory)", MAKE_IT_HEAVY, strerror(errno));
	config_defaults(&c);
	cr_assert_eq(config_load_file(&c, MAKE_IT_HEAVY, err, sizeof err), 0,
	    "%s", err);
	cr_assert_str_eq(c.model, "moonshotai/kimi-k2");
	cr_assert_str_eq(c.search_user_agent,
	    "Mozilla/5.0 (compatible; OpenRouter Agent)");
	cr_assert(strstr(c.question_prompt, "{num_agents}") != NULL);
	cr_assert(strstr(c.synthesis_prompt, "{agent_responses}") != NULL);
	cr_assert(strstr(c.system_prompt, "mark_task_complete") != NULL);
	cr_assert_eq(c.num_agents, 4);
	cr_assert_eq(c.task_timeout_s, 300);
	config_clear(&c);
}

Test(configfile, values_and_limits_apply)
{
	struct heavy_config	c;
	char			err[512];

	cr_assert_eq(load("openrouter:\n  model: \"a/b\"\n  api_key: sk-x\n"
	    "agent:\n  max_iterations: 3\norchestrator:\n  parallel_agents: 7\n"
	    "limits:\n  max_line_bytes: 4096\n  max_workers: 9\n", &c, err), 0,
	    "%s", err);
	cr_assert_str_eq(c.model, "a/b");
	cr_assert_str_eq(c.api_key, "sk-x");
	cr_assert_eq(c.max_iterations, 3);
	cr_assert_eq(c.num_agents, 7);
	cr_assert_eq(c.max_line_bytes, 4096);
	cr_assert_eq(c.max_workers, 9);
	config_clear(&c);
}

Test(configfile, environment_overrides_the_file)
{
	struct heavy_config	c;
	char			err[512];

	cr_assert_eq(load("openrouter:\n  model: file/model\n", &c, err), 0);
	setenv("HEAVY_MODEL", "env/model", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0);
	unsetenv("HEAVY_MODEL");
	cr_assert_str_eq(c.model, "env/model");
	config_clear(&c);
}

struct bad { const char *yaml; const char *needle; };

Test(configfile, mistakes_name_file_line_and_key)
{
	static const struct bad cases[] = {
		{ "openrouter:\n  modle: x\n", ":2: openrouter.modle: unknown key" },
		{ "agent:\n  max_iterations: lots\n",
		  ":2: agent.max_iterations: expected an integer" },
		{ "orchestrator:\n  parallel_agents: 99\n",
		  ":2: orchestrator.parallel_agents: expected an integer from 1 to 16" },
		{ "orchestrator:\n  aggregation_strategy: voting\n",
		  "aggregation_strategy: expected one of consensus, ranked, best" },
		{ "limits:\n  max_bananas: 3\n", ":2: limits.max_bananas: unknown limit" },
		{ "search: [1, 2]\n", ":1: search: expected a mapping" },
		{ "system_prompt:\n  nested: x\n", ":2: system_prompt: expected a single" },
		{ "openrouter: {model: \"x\"\n", ":2: did not find expected" },
		{ "openrouter:\n  model: a/b\n  model: c/d\n",
		  ":3: openrouter.model: duplicate key, first at line 2" },
		{ "limits:\n  max_workers: 3\nagent: {}\n"
		  "limits:\n  spares: 1\n",
		  ":4: limits: duplicate key, first at line 1" },
		{ "openrouter:\n  modle: x\n",
		  "did you mean `openrouter.model`?" },
		{ "model: x\n", ":1: model: unknown key; did you mean "
		  "`openrouter.model`?" },
		{ "orchestrater:\n  parallel_agents: 4\n",
		  ":1: orchestrater: unknown key; did you mean `orchestrator`?" },
		{ "limits:\n  max_worker: 3\n", "unknown limit; did you mean "
		  "`limits.max_workers`?" },
		{ "agent:\n  max_iterations: \" 4\"\n",
		  ":2: agent.max_iterations: expected an integer" },
		{ "limits:\n  max_workers: \"4 \"\n",
		  ":2: limits.max_workers: expected an integer" },
		{ "search:\n  max_results: \" 4\"\n",
		  ":2: search.max_results: expected an integer" },
		{ "openrouter:\n  base_url: not-a-url\n",
		  ":2: openrouter.base_url: expected an http:// or "
		  "https:// URL" },
	};
	struct heavy_config	c;
	char			err[512];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		cr_assert_eq(load(cases[i].yaml, &c, err), -1, "accepted: %s",
		    cases[i].yaml);
		cr_assert(strstr(err, cases[i].needle) != NULL,
		    "\"%s\" lacks \"%s\"", err, cases[i].needle);
		cr_assert(strncmp(err, path, strlen(path)) == 0,
		    "the file is named: %s", err);
		config_clear(&c);
	}
}

/* Far from every known key: no suggestion, rather than a wrong one. */
Test(configfile, a_far_unknown_key_gets_no_suggestion)
{
	struct heavy_config	c;
	char			err[512];

	cr_assert_eq(load("banana: 1\n", &c, err), -1);
	cr_assert(strstr(err, ":1: banana: unknown key") != NULL, "%s", err);
	cr_assert(strstr(err, "did you mean") == NULL, "%s", err);
	config_clear(&c);
}

Test(configfile, missing_file_is_an_error)
{
	struct heavy_config	c;
	char			err[512];

	config_defaults(&c);
	cr_assert_eq(config_load_file(&c, "/nonexistent/heavyd.yaml", err,
	    sizeof err), -1);
	cr_assert(strncmp(err, "config file /nonexistent/heavyd.yaml: No such "
	    "file", 44) == 0, "%s", err);
	config_clear(&c);
}

/* The fallback lists: a string or a list; checked by config_check, which
 * names the key and the item. */
Test(configfile, fallback_models_per_role)
{
	struct heavy_config	c, *d;
	char			err[512];

	cr_assert_eq(load("orchestrator:\n  fallback_models: [a/b, \"c/d:free\"]\n"
	    "  synthesis_fallback_models: s/x\n", &c, err), 0, "%s", err);
	cr_assert_eq(c.nfallback_models, 2);
	cr_assert_str_eq(c.fallback_models[1], "c/d:free");
	cr_assert_eq(c.nplanner_fallbacks, 0);
	cr_assert_eq(c.nsynthesis_fallbacks, 1);
	cr_assert_eq(config_fallbacks_error("k", c.fallback_models,
	    c.nfallback_models, err, sizeof err), 0);
	d = config_dup(&c);
	cr_assert_neq(d->fallback_models, c.fallback_models, "a copy");
	cr_assert_str_eq(d->fallback_models[0], "a/b");
	config_free(d);
	config_clear(&c);
	cr_assert_eq(load("orchestrator:\n  planner_fallback_models: "
	    "[a, b, c, d, e, f, g, h, i]\n", &c, err), 0, "%s", err);
	cr_assert_eq(config_fallbacks_error("orchestrator.planner_fallback_models",
	    c.planner_fallbacks, c.nplanner_fallbacks, err, sizeof err), -1);
	cr_assert_str_eq(err, "orchestrator.planner_fallback_models: at most 8 "
	    "models, got 9");
	config_clear(&c);
}

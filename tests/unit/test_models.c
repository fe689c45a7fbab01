/* The aggregation strategy and the models per role: file, environment,
 * copies and mistakes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"
#include "tmpdir.h"

static char	path[256];

static int
load(const char *text, struct heavy_config *c, char *err)
{
	int	fd, rc;

	unit_tmp(path, sizeof path, "heavyd-models");
	cr_assert_neq(fd = mkstemp(path), -1);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	config_defaults(c);
	rc = config_load_file(c, path, err, 512);
	unlink(path);
	return rc;
}

Test(models, defaults_follow_the_main_model)
{
	struct heavy_config	c;

	config_defaults(&c);
	cr_assert_null(c.planner_model);
	cr_assert_null(c.synthesis_model);
	cr_assert_eq(c.nagent_models, 0);
	cr_assert_str_eq(c.aggregation_strategy, "consensus");
	config_clear(&c);
}

Test(models, file_keys_load_and_copies_carry_them)
{
	struct heavy_config	c, *d;
	char			err[512];

	cr_assert_eq(load("orchestrator:\n  aggregation_strategy: ranked\n"
	    "  planner_model: p/one\n  synthesis_model: \"s/two\"\n"
	    "  agent_models:\n    - a/x\n    - 'a/y'\n    - a/z\n", &c, err), 0,
	    "%s", err);
	cr_assert_str_eq(c.aggregation_strategy, "ranked");
	cr_assert_str_eq(c.planner_model, "p/one");
	cr_assert_str_eq(c.synthesis_model, "s/two");
	cr_assert_eq(c.nagent_models, 3);
	cr_assert_str_eq(c.agent_models[1], "a/y");
	d = config_dup(&c);
	config_clear(&c);	/* the copy owns its own strings */
	cr_assert_str_eq(d->planner_model, "p/one");
	cr_assert_str_eq(d->synthesis_model, "s/two");
	cr_assert_eq(d->nagent_models, 3);
	cr_assert_str_eq(d->agent_models[2], "a/z");
	config_free(d);
}

Test(models, a_later_list_replaces_the_earlier_one)
{
	struct heavy_config	c;
	char			err[512];

	cr_assert_eq(load("orchestrator:\n  agent_models: [a, b]\n", &c, err),
	    0, "%s", err);
	setenv("HEAVY_AGENT_MODELS", " e/1 ,e/2", 1);
	setenv("HEAVY_PLANNER_MODEL", "e/p", 1);
	setenv("HEAVY_AGGREGATION_STRATEGY", "best", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	unsetenv("HEAVY_AGENT_MODELS");
	unsetenv("HEAVY_PLANNER_MODEL");
	unsetenv("HEAVY_AGGREGATION_STRATEGY");
	cr_assert_eq(c.nagent_models, 2);
	cr_assert_str_eq(c.agent_models[0], "e/1");
	cr_assert_str_eq(c.agent_models[1], "e/2");
	cr_assert_str_eq(c.planner_model, "e/p");
	cr_assert_null(c.synthesis_model);
	cr_assert_str_eq(c.aggregation_strategy, "best");
	config_clear(&c);
}

struct bad { const char *yaml; const char *needle; };

Test(models, file_mistakes_name_line_and_key)
{
	static const struct bad cases[] = {
		{ "orchestrator:\n  agent_models: []\n",
		  ":2: orchestrator.agent_models: expected a non-empty list" },
		{ "orchestrator:\n  agent_models: a/b\n",
		  ":2: orchestrator.agent_models: expected a list of model ids" },
		{ "orchestrator:\n  agent_models:\n    - a/b\n    - 42\n",
		  ":4: orchestrator.agent_models[1]: expected a model id (a "
		  "string; quote it), got 42" },
		{ "orchestrator:\n  agent_models:\n    - {x: 1}\n",
		  ":3: orchestrator.agent_models[0]: expected a model id" },
		{ "orchestrator:\n  agent_models: [a, \"\"]\n",
		  ":2: orchestrator.agent_models[1]: expected a model id, got an "
		  "empty string" },
		{ "orchestrator:\n  agent_models: [true]\n",
		  "agent_models[0]: expected a model id (a string" },
		{ "orchestrator:\n  planner_model: \"\"\n",
		  ":2: orchestrator.planner_model: expected a model id, got an "
		  "empty string" },
		{ "orchestrator:\n  synthesis_model:\n",
		  ":2: orchestrator.synthesis_model: expected a model id" },
		{ "orchestrator:\n  synthesis_model: [a]\n",
		  ":2: orchestrator.synthesis_model: expected a single value" },
		{ "orchestrator:\n  planner_model: \"two words\"\n",
		  "planner_model: a model id has no spaces" },
		{ "orchestrator:\n  aggregation_strategy: voting\n",
		  ":2: orchestrator.aggregation_strategy: expected one of "
		  "consensus, ranked, best" },
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

Test(models, environment_mistakes_name_the_variable)
{
	static const struct { const char *var, *value, *needle; } cases[] = {
		{ "HEAVY_AGENT_MODELS", "a,,b", "HEAVY_AGENT_MODELS: item 2: "
		  "expected a model id, got an empty string" },
		{ "HEAVY_AGENT_MODELS", "a,", "HEAVY_AGENT_MODELS: item 2:" },
		{ "HEAVY_SYNTHESIS_MODEL", "a b", "HEAVY_SYNTHESIS_MODEL: a model "
		  "id has no spaces" },
		{ "HEAVY_AGGREGATION_STRATEGY", "Ranked",
		  "HEAVY_AGGREGATION_STRATEGY: expected one of consensus, "
		  "ranked, best, incremental, got \"Ranked\"" },
	};
	struct heavy_config	c;
	char			err[512];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		config_defaults(&c);
		setenv(cases[i].var, cases[i].value, 1);
		cr_assert_eq(config_from_env(&c, err, sizeof err), -1,
		    "accepted %s=%s", cases[i].var, cases[i].value);
		unsetenv(cases[i].var);
		cr_assert(strstr(err, cases[i].needle) != NULL,
		    "\"%s\" lacks \"%s\"", err, cases[i].needle);
		cr_assert_eq(c.nagent_models, 0, "nothing half-set");
		config_clear(&c);
	}
}

Test(models, check_config_prints_every_role)
{
	struct heavy_config	c;
	char			*out = NULL;
	size_t			 len = 0;
	FILE			*f;

	config_defaults(&c);
	config_set_str(&c.model, "main/m");
	config_set_str(&c.aggregation_strategy, "best");
	c.synthesis_model = strdup("s/m");
	cr_assert_eq(config_agent_models_csv(&c, "a/1,a/2", NULL, 0), 0);
	cr_assert_not_null(f = open_memstream(&out, &len));
	config_print(&c, "test", f);
	fclose(f);
	cr_assert(strstr(out, "aggregation_strategy: best\n") != NULL, "%s", out);
	cr_assert(strstr(out, "planner_model: main/m  # the main model\n") !=
	    NULL, "%s", out);
	cr_assert(strstr(out, "synthesis_model: s/m\n") != NULL, "%s", out);
	cr_assert(strstr(out, "agent_models: [\"a/1\", \"a/2\"]  # round-robin\n")
	    != NULL, "%s", out);
	free(out);
	config_clear(&c);
}

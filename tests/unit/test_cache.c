/* The result cache: its key (SHA-256 of a canonical text), what it serves. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"
#include "store_sync.h"

static struct heavy_config	cfg;
static struct task_params	p;

static void
setup(void)
{
	config_defaults(&cfg);
	cfg.cache_ttl_s = 60;
	memset(&p, 0, sizeof p);
	p.query = xstrdup("What is heavy?");
	p.num_agents = 4;
	p.timeout_s = 300;
}

static void
teardown(void)
{
	task_params_clear(&p);
	config_clear(&cfg);
}

TestSuite(cache, .init = setup, .fini = teardown);

static char *
key(void)
{
	return cache_key(&cfg, &p);
}

Test(cache, off_means_no_key)
{
	cfg.cache_ttl_s = 0;
	cr_assert_null(key());
}

Test(cache, the_key_is_the_sha256_of_the_canonical_text)
{
	char	*k = key(), *text = cache_canonical(&cfg, &p), path[256],
		 cmd[320], out[80] = "";
	FILE	*f;
	int	 fd;

	cr_assert_eq(strlen(k), 64);
	unit_tmp(path, sizeof path, "heavyd-cache");
	cr_assert_neq(fd = mkstemp(path), -1);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof cmd, "sha256sum %s", path);
	cr_assert_not_null(f = popen(cmd, "r"));
	cr_assert_not_null(fgets(out, sizeof out, f));
	pclose(f);
	unlink(path);
	cr_assert(strncmp(out, k, 64) == 0, "%s vs %s", out, k);
	cr_assert(strstr(text, "\"query\":\"What is heavy?\"") != NULL, "%s",
	    text);
	free(text);
	free(k);
}

/* Changes one thing and expects another key; then puts it back. */
#define DIFFERS(change, undo) do {					\
	char	*a = key(), *b;						\
	change;								\
	b = key();							\
	cr_assert_str_neq(a, b, "same key after: %s", #change);		\
	undo;								\
	free(b);							\
	b = key();							\
	cr_assert_str_eq(a, b, "not deterministic after: %s", #undo);	\
	free(a);							\
	free(b);							\
} while (0)

Test(cache, every_setting_that_shapes_an_answer_is_in_the_key)
{
	char	*keep;

	DIFFERS(p.num_agents = 3, p.num_agents = 4);
	DIFFERS(p.timeout_s = 60, p.timeout_s = 300);
	DIFFERS(p.query[0] = 'w', p.query[0] = 'W');
	DIFFERS(p.model = xstrdup("m/x"), (free(p.model), p.model = NULL));
	DIFFERS(p.strategy = xstrdup("ranked"),
	    (free(p.strategy), p.strategy = NULL));
	DIFFERS(p.max_total_tokens = 10, p.max_total_tokens = 0);
	DIFFERS(cfg.max_iterations = 3, cfg.max_iterations = 10);
	DIFFERS(cfg.planner_model = xstrdup("m/p"),
	    (free(cfg.planner_model), cfg.planner_model = NULL));
	keep = cfg.base_url;
	DIFFERS(cfg.base_url = "http://elsewhere/v1", cfg.base_url = keep);
	keep = cfg.system_prompt;
	DIFFERS(cfg.system_prompt = "Be terse.", cfg.system_prompt = keep);
	DIFFERS(cfg.search_backend = "searxng", cfg.search_backend = NULL);
	DIFFERS(cfg.max_answer_bytes = 1024, cfg.max_answer_bytes = 256 << 10);
	DIFFERS(config_strv_add(&p.fallbacks, &p.nfallbacks, "m/f"),
	    config_strv_free(&p.fallbacks, &p.nfallbacks));
	DIFFERS(config_strv_add(&cfg.fallback_models, &cfg.nfallback_models,
	    "m/f"), config_strv_free(&cfg.fallback_models,
	    &cfg.nfallback_models));
	DIFFERS(config_strv_add(&cfg.synthesis_fallbacks,
	    &cfg.nsynthesis_fallbacks, "m/f"),
	    config_strv_free(&cfg.synthesis_fallbacks,
	    &cfg.nsynthesis_fallbacks));
}

Test(cache, the_default_strategy_named_is_the_same_call)
{
	char	*a = key(), *b;

	p.strategy = xstrdup("consensus");	/* the configured default */
	b = key();
	cr_assert_str_eq(a, b);
	free(a);
	free(b);
}

/* What the task service does with a call's key: the store's newest
 * answer, flagged as cached. */
static struct json_object *
lookup(const struct heavy_config *c, const char *owner, const char *k)
{
	struct store_task	 t;
	struct task_result	*hit;
	struct json_object	*res = NULL;

	if (sync_cache_find(owner, k, (int64_t)c->cache_ttl_s * 1000, &t) !=
	    STORE_OK)
		return NULL;
	if ((hit = cache_result(&t)) != NULL)
		res = result_render(hit);
	taskresult_free(hit);
	store_task_clear(&t);
	return res;
}

Test(cache, lookups_are_the_owners_and_within_the_ttl)
{
	struct store_task	 t = { 0 };
	struct json_object	*hit, *sc;
	char			 dir[256], err[256], cmd[320], *k = key();

	unit_tmp(dir, sizeof dir, "heavyd-cachedb");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	snprintf(t.id, sizeof t.id, "%032x", 7);
	t.owner = (char *)"uid:1";
	t.status = (char *)"completed";
	t.params = (char *)"{}";
	t.result = taskresult_new(TR_ORCHESTRATION);
	t.result->answer = xstrdup("A");
	t.result->has_session = true;	/* as the edge left it */
	t.cache_key = k;
	t.created_ms = t.updated_ms = wall_ms() - 5000;
	t.ttl_ms = 3600000;
	cr_assert_eq(sync_put(&t), 0);
	cr_assert_not_null(hit = lookup(&cfg, "uid:1", k));
	sc = json_object_object_get(hit, "structuredContent");
	cr_assert(json_object_get_boolean(json_object_object_get(sc, "cached")));
	cr_assert_str_eq(json_object_get_string(json_object_object_get(sc,
	    "cached_from")), t.id);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(sc,
	    "answer")), "A");
	json_object_put(hit);
	taskresult_free(t.result);
	cr_assert_null(lookup(&cfg, "uid:2", k), "another owner's");
	cfg.cache_ttl_s = 4;	/* the answer is 5 s old */
	cr_assert_null(lookup(&cfg, "uid:1", k));
	store_close();
	free(k);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/*
 * The opt-in result cache (HEAVY_CACHE_TTL seconds; 0, the default, is
 * off).  The same query under the same effective configuration, within
 * the TTL, is answered from the task store without running anything, and
 * the answer says so (cached, cached_from).  The key is the SHA-256
 * (Nettle's) of one canonical JSON text of everything that shapes an
 * answer: the call's arguments, the models of every role, the prompts,
 * the limits the workers get, the search settings, the endpoint and
 * heavyd's version.  Lookups are by owner: nobody is served another
 * caller's answer.  Only clean answers are served again (the task says
 * which: task_outcome.cacheable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "supervisor.h"

static void
add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

static void
add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void
add_strv(struct json_object *o, const char *k, char **v, int n)
{
	struct json_object	*a = json_object_new_array();

	for (int i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	json_object_object_add(o, k, a);
}

/* The models of every role, as the task would pick them, and their
 * fallbacks: an answer one fell back to is another model's answer. */
static void
cache_models(struct json_object *o, const struct heavy_config *c,
    const struct task_params *p)
{
	struct json_object	*agents = json_object_new_array();

	add_str(o, "model", p->model);
	add_str(o, "main_model", c->model);
	add_str(o, "planner_model", c->planner_model);
	add_str(o, "synthesis_model", c->synthesis_model);
	for (int i = 0; i < c->nagent_models; i++)
		json_object_array_add(agents,
		    json_object_new_string(c->agent_models[i]));
	json_object_object_add(o, "agent_models", agents);
	add_strv(o, "fallback_models_arg", p->fallbacks, p->nfallbacks);
	add_strv(o, "fallback_models", c->fallback_models, c->nfallback_models);
	add_strv(o, "planner_fallback_models", c->planner_fallbacks,
	    c->nplanner_fallbacks);
	add_strv(o, "synthesis_fallback_models", c->synthesis_fallbacks,
	    c->nsynthesis_fallbacks);
}

/* What the workers are told, and how they search. */
static void
cache_limits(struct json_object *o, const struct heavy_config *c)
{
	add_int(o, "max_iterations", c->max_iterations);
	add_int(o, "planner_timeout", c->planner_timeout_s);
	add_int(o, "synthesis_reserve", c->synthesis_reserve_s);
	add_int(o, "max_response_bytes", (int64_t)c->max_response_bytes);
	add_int(o, "max_transcript_bytes", (int64_t)c->max_transcript_bytes);
	add_int(o, "max_tool_output_bytes", (int64_t)c->max_tool_output_bytes);
	add_int(o, "max_answer_bytes", (int64_t)c->max_answer_bytes);
	add_int(o, "max_synthesis_input_bytes",
	    (int64_t)c->max_synthesis_input_bytes);
	add_int(o, "max_read_bytes", (int64_t)c->max_read_bytes);
	add_int(o, "max_write_bytes", (int64_t)c->max_write_bytes);
	add_str(o, "search_backend", c->search_backend);
	add_str(o, "search_url", c->search_url);
	add_str(o, "search_user_agent", c->search_user_agent);
	add_int(o, "search_max_results", c->search_max_results);
	add_int(o, "search_allow_private", c->search_allow_private);
	add_int(o, "search_timeout", c->search_timeout_s);
	add_int(o, "max_page_bytes", (int64_t)c->max_page_bytes);
	add_int(o, "max_extract_bytes", (int64_t)c->max_extract_bytes);
}

/* The canonical text: fixed keys in a fixed order, json-c's plain form. */
char *
cache_canonical(const struct heavy_config *c, const struct task_params *p)
{
	struct json_object	*o = json_object_new_object();
	char			*text;

	add_str(o, "heavyd", HEAVY_VERSION);
	add_str(o, "query", p->query);
	add_int(o, "num_agents", p->num_agents);
	json_object_object_add(o, "timeout", json_object_new_double(
	    p->timeout_s));
	add_str(o, "strategy", p->strategy ? p->strategy :
	    c->aggregation_strategy);
	add_int(o, "max_total_tokens", (int64_t)p->max_total_tokens);
	json_object_object_add(o, "max_cost_usd", json_object_new_double(
	    p->max_cost_usd));
	add_str(o, "base_url", c->base_url);
	cache_models(o, c, p);
	add_str(o, "system_prompt", c->system_prompt);
	add_str(o, "question_prompt", c->question_prompt);
	add_str(o, "synthesis_prompt", c->synthesis_prompt);
	cache_limits(o, c);
	text = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

/* The key of a call (hex SHA-256), or NULL when the cache is off. */
char *
cache_key(const struct heavy_config *c, const struct task_params *p)
{
	struct sha256_ctx	 ctx;
	uint8_t			 md[SHA256_DIGEST_SIZE];
	char			*text, *hex;

	if (c->cache_ttl_s == 0)
		return NULL;
	text = cache_canonical(c, p);
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(text), (const uint8_t *)text);
	sha256_digest(&ctx, sizeof md, md);
	free(text);
	hex = xmalloc(2 * sizeof md + 1);
	for (size_t i = 0; i < sizeof md; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return hex;
}

/* The answer of a cached task, flagged as such, or NULL. */
struct task_result *
cache_result(const struct store_task *t)
{
	struct task_result	*r;

	if (t->result == NULL || t->result->kind != TR_ORCHESTRATION)
		return NULL;
	r = taskresult_copy(t->result);
	r->cached = true;
	free(r->cached_from);
	r->cached_from = xstrdup(t->id);
	return r;
}

/* Configuration: built-in defaults (make-it-heavy's), then the environment. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define DEFAULT_SYSTEM_PROMPT \
"You are a helpful research assistant. Use the tools available to find " \
"relevant information and provide comprehensive answers.\n\n" \
"IMPORTANT: When you have fully satisfied the user's request and provided " \
"a complete answer, you MUST call the mark_task_complete tool with a " \
"summary of what was accomplished and a final message for the user."

#define DEFAULT_QUESTION_PROMPT \
"You are an orchestrator that needs to create {num_agents} different " \
"questions to thoroughly analyze this topic from multiple angles.\n\n" \
"Original user query: {user_input}\n\n" \
"Generate exactly {num_agents} different, specific questions that will " \
"help gather comprehensive information about this topic.\n" \
"Each question should approach the topic from a different angle " \
"(research, analysis, verification, alternatives, etc.).\n\n" \
"Return your response as a JSON array of strings, like this:\n" \
"[\"question 1\", \"question 2\", \"question 3\", \"question 4\"]\n\n" \
"Only return the JSON array, nothing else."

#define DEFAULT_SYNTHESIS_PROMPT \
"You have {num_responses} different AI agents that analyzed the same " \
"query from different perspectives.\nYour job is to synthesize their " \
"responses into ONE comprehensive final answer.\n\n" \
"Here are all the agent responses:\n\n{agent_responses}\n\n" \
"IMPORTANT: Just synthesize these into ONE final comprehensive answer " \
"that combines the best information from all agents.\nDo NOT call " \
"mark_task_complete or any other tools. Do NOT mention that you are " \
"synthesizing multiple responses.\nSimply provide the final synthesized " \
"answer directly as your response."

void
config_defaults(struct heavy_config *c)
{
	memset(c, 0, sizeof *c);
	c->base_url = xstrdup(HEAVY_DEFAULT_BASE_URL);
	c->model = xstrdup(HEAVY_DEFAULT_MODEL);
	c->system_prompt = xstrdup(DEFAULT_SYSTEM_PROMPT);
	c->question_prompt = xstrdup(DEFAULT_QUESTION_PROMPT);
	c->synthesis_prompt = xstrdup(DEFAULT_SYNTHESIS_PROMPT);
	c->aggregation_strategy = xstrdup("consensus");
	c->search_user_agent = xstrdup("Mozilla/5.0 (compatible; heavyd)");
	c->search_max_results = 5;
	c->max_iterations = 10;
	c->num_agents = 4;
	c->task_timeout_s = 300;
	c->planner_timeout_s = 60;
	c->synthesis_reserve_s = 60;
	c->heartbeat_s = 10;
	c->max_retries = 4;
	c->retry_base_ms = 500;
	c->retry_max_ms = 20000;
	c->max_line_bytes = 4 << 20;
	c->max_frame_bytes = 8 << 20;
	c->max_response_bytes = 4 << 20;
	c->max_transcript_bytes = 1 << 20;
	c->max_tool_output_bytes = 64 << 10;
	c->max_answer_bytes = 256 << 10;
	c->max_synthesis_input_bytes = 512 << 10;
	c->max_workers = 256;
	c->max_tasks = 1024;
	c->spares = 4;
	c->worker_memory = (size_t)1 << 30;
	c->worker_cpu = 600;
	c->worker_nofile = 256;
	c->worker_fsize = 64 << 20;
	c->worker_pids = 32;
}

void
config_set_str(char **slot, const char *value)
{
	free(*slot);
	*slot = xstrdup(value);
}

/* Every numeric knob: its environment variable, its field and its range. */
#define INT_KNOB(env, field, lo, hi) \
	{ env, offsetof(struct heavy_config, field), sizeof(int), lo, hi }
#define SIZE_KNOB(env, field, lo, hi) \
	{ env, offsetof(struct heavy_config, field), sizeof(size_t), lo, hi }
static const struct knob {
	const char	*env;
	size_t		 offset;
	size_t		 size;
	long long	 min, max;
} knobs[] = {
	INT_KNOB("HEAVY_MAX_ITERATIONS", max_iterations, 1, 100),
	INT_KNOB("HEAVY_NUM_AGENTS", num_agents, 1, HEAVY_MAX_AGENTS),
	INT_KNOB("HEAVY_TASK_TIMEOUT", task_timeout_s, 1, 86400),
	INT_KNOB("HEAVY_PLANNER_TIMEOUT", planner_timeout_s, 1, 86400),
	INT_KNOB("HEAVY_SYNTHESIS_RESERVE", synthesis_reserve_s, 0, 86400),
	INT_KNOB("HEAVY_HEARTBEAT", heartbeat_s, 1, 3600),
	INT_KNOB("HEAVY_MAX_RETRIES", max_retries, 0, 20),
	INT_KNOB("HEAVY_RETRY_BASE_MS", retry_base_ms, 1, 600000),
	INT_KNOB("HEAVY_RETRY_MAX_MS", retry_max_ms, 1, 3600000),
	SIZE_KNOB("HEAVY_MAX_LINE_BYTES", max_line_bytes, 1024, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_FRAME_BYTES", max_frame_bytes, 65536, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_RESPONSE_BYTES", max_response_bytes, 1024,
	    1LL << 30),
	SIZE_KNOB("HEAVY_MAX_TRANSCRIPT_BYTES", max_transcript_bytes, 1024,
	    1LL << 30),
	SIZE_KNOB("HEAVY_MAX_TOOL_OUTPUT_BYTES", max_tool_output_bytes, 256,
	    1LL << 30),
	SIZE_KNOB("HEAVY_MAX_ANSWER_BYTES", max_answer_bytes, 256, 1LL << 30),
	SIZE_KNOB("HEAVY_MAX_SYNTHESIS_INPUT_BYTES", max_synthesis_input_bytes,
	    1024, 1LL << 30),
	INT_KNOB("HEAVY_MAX_WORKERS", max_workers, 1, 65535),
	INT_KNOB("HEAVY_MAX_TASKS", max_tasks, 1, 1 << 20),
	INT_KNOB("HEAVY_SPARES", spares, 0, 64),
	SIZE_KNOB("HEAVY_WORKER_MEMORY", worker_memory, 32 << 20, 1LL << 40),
	INT_KNOB("HEAVY_WORKER_CPU", worker_cpu, 1, 86400),
	INT_KNOB("HEAVY_WORKER_NOFILE", worker_nofile, 32, 65536),
	SIZE_KNOB("HEAVY_WORKER_FSIZE", worker_fsize, 4096, 1LL << 40),
	INT_KNOB("HEAVY_WORKER_PIDS", worker_pids, 2, 4096),
};

/* Sets one knob from text; -1 with a message naming it when bad. */
static int
config_set_knob(struct heavy_config *c, const struct knob *k, const char *v,
    char *err, size_t errlen)
{
	char		*end;
	long long	 n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < k->min || n > k->max) {
		snprintf(err, errlen, "%s: expected an integer from %lld to "
		    "%lld, got \"%.64s\"", k->env, k->min, k->max, v);
		return -1;
	}
	if (k->size == sizeof(int))
		*(int *)((char *)c + k->offset) = (int)n;
	else
		*(size_t *)((char *)c + k->offset) = (size_t)n;
	return 0;
}

/* A knob by its file name: HEAVY_MAX_LINE_BYTES is max_line_bytes. */
int
config_set_knob_named(struct heavy_config *c, const char *name,
    const char *value, char *err, size_t errlen)
{
	char	env[64];
	size_t	i;

	if (snprintf(env, sizeof env, "HEAVY_%s", name) >= (int)sizeof env)
		return -2;
	for (i = 6; env[i] != '\0'; i++)
		env[i] = (char)toupper((unsigned char)env[i]);
	for (i = 0; i < sizeof knobs / sizeof knobs[0]; i++)
		if (strcmp(knobs[i].env, env) == 0)
			return config_set_knob(c, &knobs[i], value, err, errlen);
	return -2;	/* no such knob */
}

/* The effective configuration, secrets masked, for --check-config. */
void
config_print(const struct heavy_config *c, const char *source, FILE *f)
{
	fprintf(f, "# effective configuration (file: %s)\n", source);
	fprintf(f, "base_url: %s\nmodel: %s\n", c->base_url, c->model);
	fprintf(f, "api_key: %s\n", c->api_key ? "(set in the file, masked)" :
	    getenv("OPENROUTER_API_KEY") ? "(set in OPENROUTER_API_KEY, masked)" :
	    c->api_key_file ? "(from api_key_file, masked)" : "(not set)");
	if (c->api_key_file != NULL)
		fprintf(f, "api_key_file: %s\n", c->api_key_file);
	fprintf(f, "aggregation_strategy: %s\nsearch.max_results: %d\n"
	    "search.user_agent: %s\n", c->aggregation_strategy,
	    c->search_max_results, c->search_user_agent);
	for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
		const char	*p = (const char *)c + knobs[i].offset;
		long long	 v = knobs[i].size == sizeof(int) ?
		    *(const int *)p : (long long)*(const size_t *)p;
		char		 name[64];
		size_t		 j;

		for (j = 0; knobs[i].env[6 + j] != '\0' && j < sizeof name - 1;
		    j++)
			name[j] = (char)tolower((unsigned char)knobs[i].env[6 + j]);
		name[j] = '\0';
		fprintf(f, "limits.%s: %lld\n", name, v);
	}
	fprintf(f, "system_prompt: %zu bytes\nquestion_generation_prompt: %zu "
	    "bytes\nsynthesis_prompt: %zu bytes\n", strlen(c->system_prompt),
	    strlen(c->question_prompt), strlen(c->synthesis_prompt));
}

int
config_from_env(struct heavy_config *c, char *err, size_t errlen)
{
	const char	*v;

	if ((v = getenv("HEAVY_BASE_URL")) != NULL && *v != '\0')
		config_set_str(&c->base_url, v);
	if ((v = getenv("HEAVY_MODEL")) != NULL && *v != '\0')
		config_set_str(&c->model, v);
	for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
		if ((v = getenv(knobs[i].env)) == NULL || *v == '\0')
			continue;
		if (config_set_knob(c, &knobs[i], v, err, errlen) == -1)
			return -1;
	}
	return 0;
}

struct heavy_config *
config_dup(const struct heavy_config *c)
{
	struct heavy_config	*d = xmalloc(sizeof *d);

	*d = *c;
	d->base_url = xstrdup(c->base_url);
	d->model = xstrdup(c->model);
	d->system_prompt = xstrdup(c->system_prompt);
	d->question_prompt = xstrdup(c->question_prompt);
	d->synthesis_prompt = xstrdup(c->synthesis_prompt);
	d->aggregation_strategy = xstrdup(c->aggregation_strategy);
	d->search_user_agent = xstrdup(c->search_user_agent);
	d->api_key = NULL;		/* never copied into a task */
	d->api_key_file = NULL;
	return d;
}

void
config_clear(struct heavy_config *c)
{
	free(c->base_url);
	free(c->model);
	free(c->system_prompt);
	free(c->question_prompt);
	free(c->synthesis_prompt);
	free(c->aggregation_strategy);
	free(c->search_user_agent);
	if (c->api_key != NULL)
		explicit_bzero(c->api_key, strlen(c->api_key));
	free(c->api_key);
	free(c->api_key_file);
	memset(c, 0, sizeof *c);
}

void
config_free(struct heavy_config *c)
{
	if (c == NULL)
		return;
	config_clear(c);
	free(c);
}

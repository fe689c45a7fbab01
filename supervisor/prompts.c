/*
 * MCP prompts: ready-made heavy analyses that ask the client's model to
 * call heavy_orchestrate well (a sharp query, a sensible number of agents),
 * and completion of their arguments.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "supervisor.h"

#define PROMPT_MAX_ARG	(64 << 10)

struct prompt_arg {
	const char	*name;
	const char	*description;
	bool		 required;
	const char	*const *choices;	/* completion values, or NULL */
};

struct prompt {
	const char		*name;
	const char		*title;
	const char		*description;
	struct prompt_arg	 args[3];
	const char		*tmpl;	/* {name} placeholders; [name] for optional lines */
};

static const char *const no_choices[] = { NULL };
static const char *const depth_choices[] = { "quick", "standard", "deep",
    NULL };
static const char *const criteria_choices[] = { "cost", "performance",
    "reliability", "security", "simplicity", "maintainability",
    "time to market", "scalability", NULL };

static const int depth_agents[] = { 2, 4, 8 };	/* per depth_choices */

static const struct prompt prompts[] = {
	{ "deep_analysis", "Deep analysis",
	  "Analyze a topic from several angles with parallel agents, then "
	  "merge their findings into one answer.",
	  { { "topic", "What to analyze", true, NULL },
	    { "focus", "An aspect to weigh most (optional)", false, NULL },
	    { "depth", "quick (2 agents), standard (4) or deep (8)", false,
	      depth_choices } },
	  "Call the heavy_orchestrate tool with num_agents {agents} and this "
	  "query:\n\nGive a thorough, well-sourced analysis of: {topic}\n"
	  "[focus]Weigh this aspect most: {focus}\n"
	  "\nWhen it returns, present its answer, and say which points the "
	  "agents disagreed on." },
	{ "compare_options", "Compare options",
	  "Compare alternatives against criteria; each agent studies them from "
	  "a different angle.",
	  { { "options", "The options, comma-separated", true, NULL },
	    { "criteria", "What matters, comma-separated (optional)", false,
	      criteria_choices },
	    { "context", "The situation the choice is for (optional)", false,
	      NULL } },
	  "Call the heavy_orchestrate tool with num_agents {agents} and this "
	  "query:\n\nCompare these options: {options}.\n"
	  "[criteria]Judge them on: {criteria}.\n"
	  "[context]The context of the decision: {context}\n"
	  "End with a recommendation and the conditions under which another "
	  "option would win.\n\nWhen it returns, present the comparison as a "
	  "table followed by the recommendation." },
	{ "fact_check", "Fact check",
	  "Check a claim: agents look for support and for contradiction "
	  "independently.",
	  { { "claim", "The claim to check", true, NULL },
	    { "source", "Where the claim came from (optional)", false, NULL } },
	  "Call the heavy_orchestrate tool with num_agents {agents} and this "
	  "query:\n\nFact-check this claim: {claim}\n"
	  "[source]It comes from: {source}\n"
	  "Look for evidence for and against it, rate it (true, mostly true, "
	  "mixed, mostly false, false, unverifiable) and explain why.\n"
	  "\nWhen it returns, give the rating first, then the evidence." },
};
#define NPROMPTS	(sizeof prompts / sizeof prompts[0])

static const struct prompt *
prompt_find(const char *name)
{
	for (size_t i = 0; name != NULL && i < NPROMPTS; i++)
		if (strcmp(prompts[i].name, name) == 0)
			return &prompts[i];
	return NULL;
}

struct json_object *
prompts_list(void)
{
	struct json_object	*list = json_object_new_array(), *p, *args, *a;
	const struct prompt_arg	*pa;

	for (size_t i = 0; i < NPROMPTS; i++) {
		p = json_object_new_object();
		json_object_object_add(p, "name",
		    json_object_new_string(prompts[i].name));
		json_object_object_add(p, "title",
		    json_object_new_string(prompts[i].title));
		json_object_object_add(p, "description",
		    json_object_new_string(prompts[i].description));
		args = json_object_new_array();
		for (pa = prompts[i].args; pa < prompts[i].args + 3 &&
		    pa->name != NULL; pa++) {
			a = json_object_new_object();
			json_object_object_add(a, "name",
			    json_object_new_string(pa->name));
			json_object_object_add(a, "description",
			    json_object_new_string(pa->description));
			json_object_object_add(a, "required",
			    json_object_new_boolean(pa->required));
			json_object_array_add(args, a);
		}
		json_object_object_add(p, "arguments", args);
		json_object_array_add(list, p);
	}
#ifdef HEAVY_TEST_FIXTURES
	fixtures_prompts(list);
#endif
	p = json_object_new_object();
	json_object_object_add(p, "prompts", list);
	return p;
}

/* An argument's value, or NULL; -1 when it is there but not a string. */
static int
prompt_arg(struct json_object *args, const struct prompt_arg *pa,
    const char **out, char *err, size_t errlen)
{
	struct json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(args, pa->name, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) > PROMPT_MAX_ARG) {
		snprintf(err, errlen, "Invalid params: argument '%s' must be a "
		    "string of at most %d bytes", pa->name, PROMPT_MAX_ARG);
		return -1;
	}
	*out = json_object_get_string(v);
	while (isspace((unsigned char)**out))
		(*out)++;
	if (**out == '\0')
		*out = NULL;
	return 0;
}

/* The number of agents a depth asks for; -1 for an unknown depth. */
static int
prompt_agents(const char *depth)
{
	if (depth == NULL)
		depth = "standard";
	for (size_t i = 0; depth_choices[i] != NULL; i++)
		if (strcmp(depth_choices[i], depth) == 0)
			return depth_agents[i];
	return -1;
}

/* Fills the template: "[x]" lines only when x was given. */
static char *
prompt_fill(const struct prompt *p, const char *const *vals, int agents)
{
	const char	*keys[4], *values[4];
	char		 n[16], *text;
	struct buf	 out;
	size_t		 k = 0;

	buf_init(&out, 0);
	for (const char *s = p->tmpl, *eol; *s != '\0'; s = eol) {
		eol = strchr(s, '\n');
		eol = eol ? eol + 1 : s + strlen(s);
		if (*s == '[') {
			const char	*close = strchr(s, ']');
			bool		 have = false;

			for (size_t i = 0; i < 3 && p->args[i].name; i++)
				if (strlen(p->args[i].name) ==
				    (size_t)(close - s - 1) && strncmp(s + 1,
				    p->args[i].name, close - s - 1) == 0)
					have = vals[i] != NULL;
			if (have)
				buf_add(&out, close + 1, eol - close - 1);
			continue;
		}
		buf_add(&out, s, eol - s);
	}
	snprintf(n, sizeof n, "%d", agents);
	keys[k] = "agents";
	values[k++] = n;
	for (size_t i = 0; i < 3 && p->args[i].name; i++) {
		keys[k] = p->args[i].name;
		values[k++] = vals[i] ? vals[i] : "";
	}
	text = prompt_render(buf_cstr(&out), keys, values, k);
	buf_free(&out);
	return text;
}

static struct json_object *
prompt_result(const struct prompt *p, char *text)
{
	struct json_object	*res = json_object_new_object(), *msgs, *m, *c;

	c = json_object_new_object();
	json_object_object_add(c, "type", json_object_new_string("text"));
	json_object_object_add(c, "text", json_object_new_string(text));
	m = json_object_new_object();
	json_object_object_add(m, "role", json_object_new_string("user"));
	json_object_object_add(m, "content", c);
	msgs = json_object_new_array();
	json_object_array_add(msgs, m);
	json_object_object_add(res, "description",
	    json_object_new_string(p->description));
	json_object_object_add(res, "messages", msgs);
	free(text);
	return res;
}

/* prompts/get: NULL with a message in err for a bad name or argument. */
struct json_object *
prompts_get(const char *name, struct json_object *args, char *err,
    size_t errlen)
{
	const struct prompt	*p = prompt_find(name);
	const char		*vals[3] = { NULL, NULL, NULL };
	int			 agents = 4;

	if (p == NULL) {
		snprintf(err, errlen, "Invalid params: unknown prompt '%.64s'",
		    name ? name : "");
		return NULL;
	}
	if (args != NULL && !json_object_is_type(args, json_type_object)) {
		snprintf(err, errlen, "Invalid params: arguments must be an "
		    "object");
		return NULL;
	}
	for (size_t i = 0; i < 3 && p->args[i].name; i++) {
		if (prompt_arg(args, &p->args[i], &vals[i], err, errlen) == -1)
			return NULL;
		if (vals[i] == NULL && p->args[i].required) {
			snprintf(err, errlen, "Invalid params: argument '%s' "
			    "is required", p->args[i].name);
			return NULL;
		}
		if (p->args[i].choices == depth_choices &&
		    (agents = prompt_agents(vals[i])) == -1) {
			snprintf(err, errlen, "Invalid params: argument 'depth' "
			    "must be quick, standard or deep");
			return NULL;
		}
	}
	return prompt_result(p, prompt_fill(p, vals, agents));
}

/*
 * completion/complete for a prompt argument: the choices that start with
 * what was typed (the last comma-separated item, for lists).  NULL when
 * the prompt or argument is unknown.
 */
struct json_object *
prompts_complete(const char *name, const char *arg, const char *typed)
{
	const struct prompt	*p = prompt_find(name);
	const char		*const *c = NULL, *word;
	struct json_object	*values;

	for (size_t i = 0; p != NULL && i < 3 && p->args[i].name; i++)
		if (arg != NULL && strcmp(p->args[i].name, arg) == 0)
			c = p->args[i].choices ? p->args[i].choices :
			    no_choices;
	if (c == NULL)
		return NULL;
	word = strrchr(typed ? typed : "", ',');
	word = word ? word + 1 : typed ? typed : "";
	while (isspace((unsigned char)*word))
		word++;
	values = json_object_new_array();
	for (; *c != NULL; c++)
		if (strncasecmp(*c, word, strlen(word)) == 0)
			json_object_array_add(values,
			    json_object_new_string(*c));
	return values;
}

void
prompts_rpc_list(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mcp_bad_cursor(s, m))
		mcp_reply(s, m->id, prompts_list());
}

void
prompts_rpc_get(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*name = NULL, *args = NULL, *res;
	char			 err[256];

	json_object_object_get_ex(m->params, "name", &name);
	json_object_object_get_ex(m->params, "arguments", &args);
	if (!json_object_is_type(name, json_type_string)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: name (string) is required");
		return;
	}
#ifdef HEAVY_TEST_FIXTURES
	if (fixtures_prompt(s, m, json_object_get_string(name), args))
		return;
#endif
	if ((res = prompts_get(json_object_get_string(name), args, err,
	    sizeof err)) == NULL)
		mcp_error(s, m->id, RPC_INVALID_PARAMS, err);
	else
		mcp_reply(s, m->id, res);
}

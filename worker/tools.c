/*
 * The agent's tools.  Arguments are checked against the tool's schema
 * first; each tool answers with text for a tool message, and a tool error
 * is text for the model too, never a crash.  A tool that needs what the
 * job lacks (a workspace, a search backend) is neither offered nor run.
 * HEAVY_TEST_HOOKS builds add tools that misbehave on purpose, so tests
 * can prove a runaway or crashing worker is contained.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

/* The call being run: the runners keep tooldefs' one signature. */
static const struct job	*call_job;
static int64_t		 call_deadline;

static int
tool_calculate(struct json_object *args, struct buf *out, int *complete)
{
	struct json_object	*expr;
	char			 err[256];
	double			 v;

	(void)complete;
	expr = json_object_object_get(args, "expression");
	if (calc_eval(json_object_get_string(expr), &v, err, sizeof err) == -1) {
		buf_printf(out, "error: %s", err);
		return -1;
	}
	if (v == floor(v) && fabs(v) < 1e15)
		buf_printf(out, "%.0f", v);
	else
		buf_printf(out, "%.15g", v);
	return 0;
}

static int
tool_mark_complete(struct json_object *args, struct buf *out, int *complete)
{
	struct json_object	*msg;

	msg = json_object_object_get(args, "completion_message");
	buf_addstr(out, json_object_get_string(msg));
	*complete = 1;
	return 0;
}


/* A string argument whole: a NUL inside would cut it silently. */
static const char *
tool_string(struct json_object *args, const char *key, struct buf *out)
{
	struct json_object	*v = json_object_object_get(args, key);
	const char		*s = json_object_get_string(v);

	if (strlen(s) != (size_t)json_object_get_string_len(v)) {
		buf_printf(out, "error: argument '%s' contains a NUL character",
		    key);
		return NULL;
	}
	return s;
}

static unsigned long
tool_count(struct json_object *args, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(args, key, &v))
		return 0;
	return (unsigned long)json_object_get_int64(v);
}

static int
tool_read_file(struct json_object *args, struct buf *out, int *complete)
{
	const char	*path = tool_string(args, "path", out);
	unsigned long	 head = tool_count(args, "head");
	unsigned long	 tail = tool_count(args, "tail");

	(void)complete;
	if (path == NULL)
		return -1;
	if (head > 0 && tail > 0) {
		buf_printf(out, "error: give head or tail, not both");
		return -1;
	}
	return files_read(worker_workspace(), path, head, tail,
	    call_job->max_read_bytes, out);
}

static int
tool_write_file(struct json_object *args, struct buf *out, int *complete)
{
	struct json_object	*content = json_object_object_get(args,
	    "content");
	const char		*path = tool_string(args, "path", out);

	(void)complete;
	if (path == NULL)
		return -1;
	return files_write(worker_workspace(), path,
	    json_object_get_string(content),
	    (size_t)json_object_get_string_len(content),
	    call_job->max_write_bytes, out);
}

static int
tool_search_web(struct json_object *args, struct buf *out, int *complete)
{
	const char	*query = tool_string(args, "query", out);

	(void)complete;
	if (query == NULL)
		return -1;
	return search_web(call_job, call_deadline, query,
	    (unsigned)tool_count(args, "max_results"), out);
}

/* The runners of proto/tooldefs.c's tools; their texts live there. */
static const struct tool tools[] = {
	{ "calculate", NULL, NULL, tool_calculate },
	{ "mark_task_complete", NULL, NULL, tool_mark_complete },
	{ "read_file", NULL, NULL, tool_read_file },
	{ "write_file", NULL, NULL, tool_write_file },
	{ "search_web", NULL, NULL, tool_search_web },
};
#define NTOOLS	(sizeof tools / sizeof tools[0])

/* The i-th tool: ours, then the test build's misbehaving ones. */
static const struct tool *
tools_nth(size_t i)
{
	if (i < NTOOLS)
		return &tools[i];
	i -= NTOOLS;
	return i < ntesttools ? &testtools[i] : NULL;
}

/* A tool's description, schema and needs: shared ones from tooldefs. */
static void
tools_texts(const struct tool *t, const char **desc, const char **schema,
    uint32_t *needs)
{
	const struct tooldef	*d = tooldef_find(t->name);

	*desc = d != NULL ? d->description : t->description;
	*schema = d != NULL ? d->schema : t->schema;
	*needs = d != NULL ? d->needs : 0;
}

/* What this job can offer: what the supervisor gave, and we could open. */
uint32_t
tools_features(const struct job *job)
{
	uint32_t	f = job->features;

	if (worker_workspace() == -1)
		f &= ~(uint32_t)TOOL_NEEDS_WORKSPACE;
	if (job->search_backend == SEARCH_BACKEND_NONE ||
	    job->search_url == NULL || job->search_url[0] == '\0')
		f &= ~(uint32_t)TOOL_NEEDS_SEARCH;
	return f;
}

/* The tools offered to the model, in the chat completions' shape. */
struct json_object *
tools_definitions(uint32_t features)
{
	struct json_object	*defs = json_object_new_array(), *t, *f;
	const struct tool	*tl;
	const char		*desc, *schema;
	uint32_t		 needs;

	for (size_t i = 0; (tl = tools_nth(i)) != NULL; i++) {
		tools_texts(tl, &desc, &schema, &needs);
		if ((needs & features) != needs)
			continue;
		f = json_object_new_object();
		json_object_object_add(f, "name",
		    json_object_new_string(tl->name));
		json_object_object_add(f, "description",
		    json_object_new_string(desc));
		json_object_object_add(f, "parameters",
		    json_tokener_parse(schema));
		t = json_object_new_object();
		json_object_object_add(t, "type",
		    json_object_new_string("function"));
		json_object_object_add(t, "function", f);
		json_object_array_add(defs, t);
	}
	return defs;
}

/*
 * The same as the request's JSON text, or NULL when no tool is offered.
 * tools_prepare makes every combination of features once, in the zygote
 * before any fork: every worker then reads a text it shares, and neither
 * builds it nor writes a page of it.
 */
#define TOOLS_COMBOS	(TOOL_NEEDS_WORKSPACE | TOOL_NEEDS_SEARCH)
static char	*tools_json_made[TOOLS_COMBOS + 1];
static bool	 tools_prepared;

static char *
tools_json_make(uint32_t features)
{
	struct json_object	*defs = tools_definitions(features);
	char			*text = NULL;

	if (json_object_array_length(defs) > 0)
		text = xstrdup(json_object_to_json_string_ext(defs,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(defs);
	return text;
}

void
tools_prepare(void)
{
	for (uint32_t f = 0; f <= TOOLS_COMBOS; f++)
		tools_json_made[f] = tools_json_make(f);
	tools_prepared = true;
}

/* Without tools_prepare (a unit test), made now and kept. */
const char *
tools_json(uint32_t features)
{
	uint32_t	f = features & TOOLS_COMBOS;

	if (!tools_prepared)
		tools_prepare();
	return tools_json_made[f];
}

/* The arguments as JSON, checked against the tool's schema. */
static struct json_object *
tools_arguments(const char *schema_text, const char *arguments,
    struct buf *out)
{
	struct json_object	*args, *schema;
	char			 err[512];

	args = json_tokener_parse(arguments[0] == '\0' ? "{}" : arguments);
	if (args == NULL) {
		buf_printf(out, "error: the arguments are not valid JSON");
		return NULL;
	}
	schema = json_tokener_parse(schema_text);
	if (schema_validate(schema, args, err, sizeof err) == -1) {
		buf_printf(out, "error: %s", err);
		json_object_put(args);
		args = NULL;
	}
	json_object_put(schema);
	return args;
}

int
tools_call(const char *name, const char *arguments, const struct job *job,
    int64_t deadline, struct buf *out, int *complete)
{
	struct json_object	*args;
	const struct tool	*t;
	const char		*desc, *schema;
	uint32_t		 needs = 0, features = tools_features(job);
	int			 rc;

	for (size_t i = 0; (t = tools_nth(i)) != NULL; i++) {
		tools_texts(t, &desc, &schema, &needs);
		if (strcmp(t->name, name) == 0)
			break;
	}
	if (t == NULL || (needs & features) != needs) {
		buf_printf(out, "error: unknown tool '%.64s'", name);
		return -1;
	}
	if ((args = tools_arguments(schema, arguments, out)) == NULL)
		return -1;
	call_job = job;
	call_deadline = deadline;
	rc = t->run(args, out, complete);
	call_job = NULL;
	json_object_put(args);
	return rc;
}

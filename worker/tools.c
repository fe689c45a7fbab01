/*
 * The agent's tools.  Each validates its arguments against its schema and
 * answers with text for a tool message; a tool error is text for the model
 * too, never a crash.  HEAVY_TEST_HOOKS builds add tools that misbehave on
 * purpose, so tests can prove a runaway or crashing worker is contained.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

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


/* The runners of proto/tooldefs.c's tools; their texts live there. */
static const struct tool tools[] = {
	{ "calculate", NULL, NULL, tool_calculate },
	{ "mark_task_complete", NULL, NULL, tool_mark_complete },
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

/* A tool's description and schema: shared ones from tooldefs. */
static void
tools_texts(const struct tool *t, const char **desc, const char **schema)
{
	const struct tooldef	*d = tooldef_find(t->name);

	*desc = d != NULL ? d->description : t->description;
	*schema = d != NULL ? d->schema : t->schema;
}

struct json_object *
tools_definitions(void)
{
	struct json_object	*defs = json_object_new_array(), *t, *f;
	const struct tool	*tl;
	const char		*desc, *schema;

	for (size_t i = 0; (tl = tools_nth(i)) != NULL; i++) {
		tools_texts(tl, &desc, &schema);
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

/* Checks args against the schema's "required" list of string properties. */
static int
tools_validate(const struct tool *t, struct json_object *args, struct buf *out)
{
	struct json_object	*schema, *req, *v;
	const char		*key, *desc, *text;
	int			 rc = 0;

	if (!json_object_is_type(args, json_type_object)) {
		buf_printf(out, "error: arguments must be a JSON object");
		return -1;
	}
	tools_texts(t, &desc, &text);
	schema = json_tokener_parse(text);
	/* No "required" list (json-c asserts on a NULL array) means none. */
	req = json_object_object_get(schema, "required");
	for (size_t i = 0; rc == 0 && json_object_is_type(req, json_type_array) &&
	    i < json_object_array_length(req); i++) {
		key = json_object_get_string(json_object_array_get_idx(req, i));
		v = json_object_object_get(args, key);
		if (!json_object_is_type(v, json_type_string)) {
			buf_printf(out, "error: argument '%s' must be a string",
			    key);
			rc = -1;
		}
	}
	json_object_put(schema);
	return rc;
}

int
tools_call(const char *name, const char *arguments, const struct job *job,
    struct buf *out, int *complete)
{
	struct json_object	*args;
	const struct tool	*t;
	int			 rc;
	size_t			 i;

	(void)job;
	for (i = 0; (t = tools_nth(i)) != NULL; i++)
		if (strcmp(t->name, name) == 0)
			break;
	if (t == NULL) {
		buf_printf(out, "error: unknown tool '%.64s'", name);
		return -1;
	}
	args = json_tokener_parse(arguments[0] == '\0' ? "{}" : arguments);
	if (tools_validate(t, args, out) == -1)
		rc = -1;
	else
		rc = t->run(args, out, complete);
	json_object_put(args);
	return rc;
}

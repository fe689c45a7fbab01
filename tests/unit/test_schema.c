/*
 * Tool arguments against the tools' JSON Schemas: every keyword of the
 * subset, the errors the model sees, and which tools a job offers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../worker/worker.h"

/* Validates args (JSON text) against a schema (JSON text). */
static int
check(const char *schema_text, const char *args_text, char *err)
{
	struct json_object	*schema = json_tokener_parse(schema_text);
	struct json_object	*args = json_tokener_parse(args_text);
	int			 rc;

	cr_assert_not_null(schema, "%s", schema_text);
	err[0] = '\0';
	rc = schema_validate(schema, args, err, 512);
	json_object_put(schema);
	json_object_put(args);
	return rc;
}

static const char *
tool_schema(const char *name)
{
	const struct tooldef	*d = tooldef_find(name);

	cr_assert_not_null(d, "%s", name);
	return d->schema;
}

struct tcase {
	const char	*tool;
	const char	*args;
	const char	*error;		/* NULL: valid */
};

Test(schema, tool_arguments)
{
	static char long_path[1100], wide_path[2100];
	static const struct tcase cases[] = {
		{ "read_file", "{\"path\":\"a.txt\"}", NULL },
		{ "read_file", "{\"path\":\"a\",\"head\":3}", NULL },
		{ "read_file", "{\"path\":\"a\",\"tail\":2.0}", NULL },
		{ "read_file", "{}", "argument 'path' is required" },
		{ "read_file", "{\"path\":5}", "argument 'path' must be a string" },
		{ "read_file", "{\"path\":null}", "argument 'path' must be a string" },
		{ "read_file", "{\"path\":\"\"}", "argument 'path' must not be empty" },
		{ "read_file", "{\"path\":\"a\",\"head\":0}",
		  "argument 'head' must be at least 1" },
		{ "read_file", "{\"path\":\"a\",\"head\":-3}",
		  "argument 'head' must be at least 1" },
		{ "read_file", "{\"path\":\"a\",\"head\":1.5}",
		  "argument 'head' must be an integer" },
		{ "read_file", "{\"path\":\"a\",\"head\":\"3\"}",
		  "argument 'head' must be an integer" },
		{ "read_file", "{\"path\":\"a\",\"tail\":true}",
		  "argument 'tail' must be an integer" },
		{ "read_file", "{\"path\":\"a\",\"tail\":1000001}",
		  "argument 'tail' must be at most 1000000" },
		{ "read_file", "{\"path\":\"a\",\"mode\":\"r\"}",
		  "argument 'mode' is not accepted; the arguments are: path, "
		  "head, tail" },
		{ "read_file", "[\"a.txt\"]", "arguments must be an object" },
		{ "read_file", "\"a.txt\"", "arguments must be an object" },
		{ "write_file", "{\"path\":\"a\",\"content\":\"\"}", NULL },
		{ "write_file", "{\"path\":\"a\"}", "argument 'content' is required" },
		{ "write_file", "{\"path\":\"a\",\"content\":{\"x\":1}}",
		  "argument 'content' must be a string" },
		{ "search_web", "{\"query\":\"cats\",\"max_results\":20}", NULL },
		{ "search_web", "{\"query\":\"cats\",\"max_results\":21}",
		  "argument 'max_results' must be at most 20" },
		{ "search_web", "{\"query\":\"\"}", "argument 'query' must not be empty" },
		{ "calculate", "{\"expression\":\"1+1\"}", NULL },
		{ "calculate", "{\"expression\":[1]}",
		  "argument 'expression' must be a string" },
		{ "mark_task_complete", "{\"task_summary\":\"s\"}",
		  "argument 'completion_message' is required" },
		{ "read_file", long_path, "argument 'path' must be at most 1024 "
		  "characters long" },
		{ "read_file", wide_path, NULL },
	};
	char	err[512];
	int	rc;

	/* 1025 characters; then 1024 two-byte characters (2048 bytes). */
	snprintf(long_path, sizeof long_path, "{\"path\":\"%01025d\"}", 0);
	strcpy(wide_path, "{\"path\":\"");
	for (int i = 0; i < 1024; i++)
		strcat(wide_path, "\xc3\xa9");
	strcat(wide_path, "\"}");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc = check(tool_schema(cases[i].tool), cases[i].args, err);
		if (cases[i].error == NULL)
			cr_assert_eq(rc, 0, "%s %.80s: %s", cases[i].tool,
			    cases[i].args, err);
		else {
			cr_assert_eq(rc, -1, "%s %.80s accepted", cases[i].tool,
			    cases[i].args);
			cr_assert_str_eq(err, cases[i].error, "%s %.80s",
			    cases[i].tool, cases[i].args);
		}
	}
}

Test(schema, enum_type_lists_and_nesting)
{
	const char	*s = "{\"type\":\"object\",\"properties\":{"
	    "\"mode\":{\"enum\":[\"fast\",\"slow\"]},"
	    "\"note\":{\"type\":[\"string\",\"null\"]},"
	    "\"n\":{\"type\":\"number\",\"minimum\":0.5,\"maximum\":2.5},"
	    "\"opt\":{\"type\":\"object\",\"properties\":{\"depth\":{\"type\":"
	    "\"integer\",\"maximum\":3}},\"required\":[\"depth\"],"
	    "\"additionalProperties\":false}}}";
	char		 err[512];

	cr_assert_eq(check(s, "{\"mode\":\"fast\",\"note\":null,\"n\":1,"
	    "\"opt\":{\"depth\":3},\"anything\":[1,2]}", err), 0, "%s", err);
	cr_assert_eq(check(s, "{\"mode\":\"medium\"}", err), -1);
	cr_assert_str_eq(err, "argument 'mode' must be one of [\"fast\",\"slow\"]");
	cr_assert_eq(check(s, "{\"note\":3}", err), -1);
	cr_assert_str_eq(err, "argument 'note' must be one of the types "
	    "[\"string\",\"null\"]");
	cr_assert_eq(check(s, "{\"n\":0.25}", err), -1);
	cr_assert_str_eq(err, "argument 'n' must be at least 0.5");
	cr_assert_eq(check(s, "{\"n\":2.75}", err), -1);
	cr_assert_str_eq(err, "argument 'n' must be at most 2.5");
	cr_assert_eq(check(s, "{\"n\":\"1\"}", err), -1);
	cr_assert_str_eq(err, "argument 'n' must be a number");
	cr_assert_eq(check(s, "{\"opt\":{}}", err), -1);
	cr_assert_str_eq(err, "argument 'opt.depth' is required");
	cr_assert_eq(check(s, "{\"opt\":{\"depth\":4}}", err), -1);
	cr_assert_str_eq(err, "argument 'opt.depth' must be at most 3");
	cr_assert_eq(check(s, "{\"opt\":{\"depth\":1,\"x\":0}}", err), -1);
	cr_assert_str_eq(err, "argument 'opt.x' is not accepted; the arguments "
	    "are: depth");
}

/* Every tool schema the worker offers is one the validator understands. */
Test(schema, every_tool_schema_accepts_its_own_minimal_call)
{
	static const char *minimal[][2] = {
		{ "calculate", "{\"expression\":\"1\"}" },
		{ "mark_task_complete", "{\"task_summary\":\"a\","
		  "\"completion_message\":\"b\"}" },
		{ "read_file", "{\"path\":\"p\"}" },
		{ "write_file", "{\"path\":\"p\",\"content\":\"c\"}" },
		{ "search_web", "{\"query\":\"q\"}" },
	};
	char	err[512];

	cr_assert_eq(ntooldefs, sizeof minimal / sizeof minimal[0]);
	for (size_t i = 0; i < ntooldefs; i++) {
		cr_assert_eq(check(tool_schema(minimal[i][0]), minimal[i][1],
		    err), 0, "%s: %s", minimal[i][0], err);
		cr_assert_eq(check(tool_schema(minimal[i][0]), "{\"zzz\":1}",
		    err), -1, "%s takes unknown arguments", minimal[i][0]);
	}
}

static char *
names(struct json_object *defs, bool mcp)
{
	struct buf	b;
	struct json_object *t;

	buf_init(&b, 0);
	for (size_t i = 0; i < json_object_array_length(defs); i++) {
		t = json_object_array_get_idx(defs, i);
		if (!mcp)
			t = json_object_object_get(t, "function");
		buf_printf(&b, "%s%s", i ? "," : "", json_object_get_string(
		    json_object_object_get(t, "name")));
	}
	json_object_put(defs);
	return buf_release(&b);
}

Test(schema, tools_are_offered_only_with_what_they_need)
{
	char	*s;

	s = names(tools_definitions(0), false);
	cr_assert_str_eq(s, "calculate,mark_task_complete");
	free(s);
	s = names(tools_definitions(TOOL_NEEDS_WORKSPACE), false);
	cr_assert_str_eq(s, "calculate,mark_task_complete,read_file,write_file");
	free(s);
	s = names(tools_definitions(TOOL_NEEDS_WORKSPACE | TOOL_NEEDS_SEARCH),
	    false);
	cr_assert_str_eq(s, "calculate,mark_task_complete,read_file,write_file,"
	    "search_web");
	free(s);
	s = names(tooldefs_list(TOOL_NEEDS_WORKSPACE), true);
	cr_assert_str_eq(s, "calculate,mark_task_complete,read_file,write_file");
	free(s);
}

Test(schema, a_call_gets_its_arguments_checked_and_only_enabled_tools_run)
{
	struct job	job = { 0 };
	struct buf	out;
	int		complete = 0;

	/* No workspace was opened here: worker_workspace() is -1. */
	job.features = TOOL_NEEDS_WORKSPACE | TOOL_NEEDS_SEARCH;
	cr_assert_eq(tools_features(&job), 0);
	buf_init(&out, 4096);
	cr_assert_eq(tools_call("read_file", "{\"path\":\"a\"}", &job, 0, &out,
	    &complete), -1);
	cr_assert_str_eq(buf_cstr(&out), "error: unknown tool 'read_file'");
	buf_reset(&out);
	cr_assert_eq(tools_call("calculate", "{\"expression\":2}", &job, 0, &out,
	    &complete), -1);
	cr_assert_str_eq(buf_cstr(&out), "error: argument 'expression' must be "
	    "a string");
	buf_reset(&out);
	cr_assert_eq(tools_call("calculate", "{\"expression\":", &job, 0, &out,
	    &complete), -1);
	cr_assert_str_eq(buf_cstr(&out), "error: the arguments are not valid "
	    "JSON");
	buf_reset(&out);
	cr_assert_eq(tools_call("calculate", "{\"expression\":\"6*7\"}", &job, 0,
	    &out, &complete), 0);
	cr_assert_str_eq(buf_cstr(&out), "42");
	buf_free(&out);
}

/*
 * tools/list and tools/call: the one table of the tools a session is
 * offered -- heavy_orchestrate (tool.c has its schemas and arguments) and,
 * with tools.compat, make-it-heavy's (mkh.c) -- and where each call goes:
 * a task-augmented one to MCP Tasks, heavy_orchestrate to a call of the
 * task service (calls.c), the others to mkh.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

/* Every tool offered: make-it-heavy's only when tools.compat is on. */
struct json_object *
toolcall_list(const struct heavy_config *cfg)
{
	struct json_object	*res = tool_list(), *tools;

	if (cfg->tools_compat &&
	    json_object_object_get_ex(res, "tools", &tools))
		mkh_tools(tools);
#ifdef HEAVY_TEST_FIXTURES
	if (json_object_object_get_ex(res, "tools", &tools))
		fixtures_tools(tools);
#endif
	return res;
}

void
mcp_tools_list(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mcp_bad_cursor(s, m))
		mcp_reply(s, m->id, toolcall_list(s->cfg));
}

/* An unknown tool, named up to 100 bytes cut on a character boundary. */
static void
mcp_unknown_tool(struct mcp_session *s, struct rpc_msg *m,
    struct json_object *name)
{
	const char	*text = json_object_get_string(name);
	char		 msg[160];
	size_t		 len = strlen(text);

	if (len != (size_t)json_object_get_string_len(name)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Unknown tool: a name with a NUL character");
		return;
	}
	if (len > 100)		/* back to the start of a character */
		for (len = 100; len > 0 &&
		    ((unsigned char)text[len] & 0xc0) == 0x80; len--)
			;
	snprintf(msg, sizeof msg, "Unknown tool: %.*s", (int)len, text);
	mcp_error(s, m->id, RPC_INVALID_PARAMS, msg);
}

/* name, a string without a NUL (else no tool's), and arguments, an object. */
static int
mcp_call_params(struct mcp_session *s, struct rpc_msg *m,
    struct json_object **name, struct json_object **args)
{
	*args = NULL;
	if (!json_object_object_get_ex(m->params, "name", name) ||
	    !json_object_is_type(*name, json_type_string)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: name (string) is required");
		return -1;
	}
	if (json_object_object_get_ex(m->params, "arguments", args) &&
	    !json_object_is_type(*args, json_type_object)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: arguments must be an object");
		return -1;
	}
	if (strlen(json_object_get_string(*name)) !=
	    (size_t)json_object_get_string_len(*name)) {
		mcp_unknown_tool(s, m, *name);
		return -1;
	}
	return 0;
}

/*
 * The audit log's line for a tool call: who, which tool, the task it
 * names (the make-it-heavy tools), its models; its query only with
 * log.queries (a query may be private, the log is not).
 */
static void
toolcall_audit(struct mcp_session *s, const char *tool,
    struct json_object *args)
{
	struct json_object	*v;
	const char		*task = NULL, *model = NULL, *query = NULL;

	if (json_object_object_get_ex(args, "task_id", &v) &&
	    json_object_is_type(v, json_type_string))
		task = json_object_get_string(v);
	if (json_object_object_get_ex(args, "model", &v) &&
	    json_object_is_type(v, json_type_string))
		model = json_object_get_string(v);
	if (s->cfg->log_queries && json_object_object_get_ex(args, "query",
	    &v) && json_object_is_type(v, json_type_string))
		query = json_object_get_string(v);
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = task,
	    .identity = s->owner, .audit = true }, "audit: tool call: identity=%s tool=%.64s "
	    "task=%.64s model=%.256s%s%.4096s%s", s->owner, tool,
	    task ? task : "-", model ? model : "default", query ?
	    " query=\"" : "", query ? query : "", query ? "\"" : "");
}

void
mcp_tools_call(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*name, *args, *task = NULL;
	char			*key;
	bool			 dup;

	if (mcp_call_params(s, m, &name, &args) == -1)
		return;
	toolcall_audit(s, json_object_get_string(name), args);
#ifdef HEAVY_TEST_FIXTURES
	if (fixtures_call(s, m, json_object_get_string(name), args))
		return;
#endif
	if (json_object_object_get_ex(m->params, "task", &task) &&
	    task != NULL && mcp_has_tasks(s)) {
		mcptasks_call(s, m, json_object_get_string(name), args, task);
		return;
	}
	if (s->task_ext && strcmp(json_object_get_string(name),
	    "heavy_orchestrate") == 0) {	/* 2026-07-28: a task */
		task = json_object_new_object();
		mcptasks_call(s, m, "heavy_orchestrate", args, task);
		json_object_put(task);
		return;
	}
	if (strcmp(json_object_get_string(name), "heavy_orchestrate") != 0) {
		if (mkh_call(s, m, json_object_get_string(name), args))
			return;
		mcp_unknown_tool(s, m, name);
		return;
	}
	key = rpc_id_key(m->id);
	dup = lh_table_lookup_entry(s->calls, key) != NULL;
	free(key);
	if (dup) {
		mcp_error(s, m->id, RPC_INVALID_REQUEST,
		    "Invalid Request: id is already in use by a running call");
		return;
	}
	mcp_calls_orchestrate(s, m, args);
}

/*
 * The agent tools, as both sides know them: the worker offers and runs
 * them, the supervisor lists them (get_agent_tools, heavy://tools).  A tool
 * that needs a workspace or a search backend is offered only when the job
 * has one, so the model never sees a tool it cannot use.
 */
#include <string.h>

#include <json-c/json.h>

#include "proto.h"

const struct tooldef tooldefs[] = {
	{ "calculate", "Evaluate an arithmetic expression: + - * / % ^, "
	  "parentheses, sqrt sin cos tan log log10 exp abs round min max, "
	  "pi and e.",
	  "{\"type\":\"object\",\"properties\":{\"expression\":{\"type\":"
	  "\"string\",\"description\":\"e.g. (2+3)*sqrt(16)\"}},"
	  "\"required\":[\"expression\"],\"additionalProperties\":false}", 0 },
	{ "mark_task_complete", "Call when the task is fully answered, with a "
	  "summary and the final message for the user.",
	  "{\"type\":\"object\",\"properties\":{\"task_summary\":{\"type\":"
	  "\"string\"},\"completion_message\":{\"type\":\"string\"}},"
	  "\"required\":[\"task_summary\",\"completion_message\"],"
	  "\"additionalProperties\":false}", 0 },
	{ "read_file", "Read a text file from this task's workspace: the "
	  "whole file, or only its first (head) or last (tail) N lines. Paths "
	  "are relative to the workspace and cannot leave it.",
	  "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":"
	  "\"string\",\"minLength\":1,\"maxLength\":1024,\"description\":"
	  "\"e.g. notes/summary.md\"},\"head\":{\"type\":\"integer\","
	  "\"minimum\":1,\"maximum\":1000000,\"description\":\"only the "
	  "first N lines\"},\"tail\":{\"type\":\"integer\",\"minimum\":1,"
	  "\"maximum\":1000000,\"description\":\"only the last N lines\"}},"
	  "\"required\":[\"path\"],\"additionalProperties\":false}",
	  TOOL_NEEDS_WORKSPACE },
	{ "write_file", "Write a text file in this task's workspace, replacing "
	  "it atomically if it exists; missing directories are created. Paths "
	  "are relative to the workspace and cannot leave it.",
	  "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":"
	  "\"string\",\"minLength\":1,\"maxLength\":1024,\"description\":"
	  "\"e.g. notes/summary.md\"},\"content\":{\"type\":\"string\","
	  "\"description\":\"the whole new content of the file\"}},"
	  "\"required\":[\"path\",\"content\"],"
	  "\"additionalProperties\":false}", TOOL_NEEDS_WORKSPACE },
	{ "search_web", "Search the web. Returns, for each result, its title, "
	  "URL, snippet and a plain-text extract of the page.",
	  "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":"
	  "\"string\",\"minLength\":1,\"maxLength\":1000,\"description\":"
	  "\"what to search for\"},\"max_results\":{\"type\":\"integer\","
	  "\"minimum\":1,\"maximum\":20,\"description\":\"how many results "
	  "(at most the configured search.max_results)\"}},"
	  "\"required\":[\"query\"],\"additionalProperties\":false}",
	  TOOL_NEEDS_SEARCH },
};
const size_t ntooldefs = sizeof tooldefs / sizeof tooldefs[0];

const struct tooldef *
tooldef_find(const char *name)
{
	for (size_t i = 0; i < ntooldefs; i++)
		if (strcmp(tooldefs[i].name, name) == 0)
			return &tooldefs[i];
	return NULL;
}

/* The tools a job with these features offers: [{name, description,
 * inputSchema}], MCP's shape (the worker wraps them for the LLM). */
struct json_object *
tooldefs_list(uint32_t features)
{
	struct json_object	*list = json_object_new_array(), *t;

	for (size_t i = 0; i < ntooldefs; i++) {
		if ((tooldefs[i].needs & features) != tooldefs[i].needs)
			continue;
		t = json_object_new_object();
		json_object_object_add(t, "name",
		    json_object_new_string(tooldefs[i].name));
		json_object_object_add(t, "description",
		    json_object_new_string(tooldefs[i].description));
		json_object_object_add(t, "inputSchema",
		    json_tokener_parse(tooldefs[i].schema));
		json_object_array_add(list, t);
	}
	return list;
}

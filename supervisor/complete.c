/*
 * completion/complete: the arguments of our prompts, and the {id} of the
 * heavy://tasks/ templates (the caller's own task ids, by prefix: running
 * here, then in the store, so tasks of earlier or other heavyds too).
 */
#include <string.h>

#include "supervisor.h"

#define COMPLETE_MAX	100	/* values in one answer, as MCP allows */

static struct json_object *
complete_result(struct json_object *values)
{
	struct json_object	*res = json_object_new_object(), *c, *cut;
	size_t			 n = json_object_array_length(values);

	if (n > COMPLETE_MAX) {
		cut = json_object_new_array();
		for (size_t i = 0; i < COMPLETE_MAX; i++)
			json_object_array_add(cut, json_object_get(
			    json_object_array_get_idx(values, i)));
		json_object_put(values);
		values = cut;
	}
	c = json_object_new_object();
	json_object_object_add(c, "values", values);
	json_object_object_add(c, "total", json_object_new_int64((int64_t)n));
	json_object_object_add(c, "hasMore",
	    json_object_new_boolean(n > COMPLETE_MAX));
	json_object_object_add(res, "completion", c);
	return res;
}

static void
complete_ids(void *arg, struct json_object *ids)
{
	struct mcp_req	*q = arg;

	mcp_req_begin(q);
	mcp_reply(q->s, q->m.id, complete_result(ids));
	mcp_req_end(q);
}

/* For ref/resource: only the task templates have an {id}, answered once
 * the store has said which ids there are.  false: nothing to complete. */
static bool
complete_resource(struct mcp_session *s, struct rpc_msg *m, const char *uri,
    const char *arg, const char *typed)
{
	if (uri == NULL || arg == NULL || strcmp(arg, "id") != 0 ||
	    (strcmp(uri, "heavy://tasks/{id}") != 0 &&
	    strcmp(uri, "heavy://tasks/{id}/result") != 0))
		return false;
	durable_ids(s->owner, typed, complete_ids, mcp_req_hold(s, m));
	return true;
}

void
complete_rpc(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*ref = NULL, *arg = NULL, *values = NULL;
	const char		*type, *name, *value;

	json_object_object_get_ex(m->params, "ref", &ref);
	json_object_object_get_ex(m->params, "argument", &arg);
	type = json_object_get_string(json_object_object_get(ref, "type"));
	name = json_object_get_string(json_object_object_get(arg, "name"));
	value = json_object_get_string(json_object_object_get(arg, "value"));
	if (type != NULL && strcmp(type, "ref/prompt") == 0)
		values = prompts_complete(json_object_get_string(
		    json_object_object_get(ref, "name")), name, value);
#ifdef HEAVY_TEST_FIXTURES
	if (values == NULL && type != NULL && strcmp(type, "ref/prompt") == 0)
		values = fixtures_complete(json_object_get_string(
		    json_object_object_get(ref, "name")), name, value);
#endif
	if (values == NULL && type != NULL &&
	    strcmp(type, "ref/resource") == 0 && complete_resource(s, m,
	    json_object_get_string(json_object_object_get(ref, "uri")), name,
	    value))
		return;
	if (values == NULL) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "nothing to complete for that ref and argument (prompts: "
		    "their arguments; resources: the {id} of heavy://tasks/)");
		return;
	}
	mcp_reply(s, m->id, complete_result(values));
}

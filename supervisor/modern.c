/*
 * MCP 2026-07-28, the stateless revision, beside the handshake era on the
 * same session (stdio) or endpoint (HTTP): a request that carries
 * _meta["io.modelcontextprotocol/protocolVersion"] (or is server/discover)
 * is served on its own, with no initialize.  Its version and the client's
 * capabilities are checked on every request; every result says its
 * resultType and who answered; list and read results say how long they
 * may be cached.  ping, logging/setLevel, resources/subscribe and the
 * handshake-era tasks/result and tasks/list do not exist here:
 * subscriptions/listen and the tasks extension take their place.
 *
 * A client that declares the tasks extension gets heavy_orchestrate as a
 * task (CreateTaskResult, resultType "task"); one that does not gets the
 * blocking call.  heavyd sends no notifications/message in this era: the
 * server's log is not its clients' business (and stays on stderr).
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

#define META_VERSION	"io.modelcontextprotocol/protocolVersion"
#define META_CAPS	"io.modelcontextprotocol/clientCapabilities"
#define META_SUB	"io.modelcontextprotocol/subscriptionId"
#define EXT_TASKS	"io.modelcontextprotocol/tasks"

/* A subscriptions/listen in progress: what it asked for, where it goes. */
struct modern_listen {
	struct mcp_session	*s;
	struct json_object	*id;
	char			*key;
	int			 sub;		/* its subscriptionId */
	struct json_object	*uris;		/* resourceSubscriptions */
	struct json_object	*tasks;		/* taskIds */
	TAILQ_ENTRY(modern_listen) entry;
};
static TAILQ_HEAD(, modern_listen) modern_listens =
    TAILQ_HEAD_INITIALIZER(modern_listens);
static int	modern_next_sub;

static const char *modern_versions[] = { MODERN_VERSION, "2025-11-25",
    "2025-06-18", "2025-03-26" };

static struct json_object *
modern_meta(const struct rpc_msg *m)
{
	struct json_object	*meta;

	return m->params != NULL &&
	    json_object_object_get_ex(m->params, "_meta", &meta) &&
	    json_object_is_type(meta, json_type_object) ? meta : NULL;
}

/* A request of this era: it names its version, or asks for them. */
bool
modern_is(const struct rpc_msg *m)
{
	struct json_object	*meta = modern_meta(m);

	return strcmp(m->method, "server/discover") == 0 ||
	    (meta != NULL && json_object_object_get_ex(meta, META_VERSION,
	    NULL));
}

static struct json_object *
modern_error(const struct rpc_msg *m, int code, const char *message)
{
	return rpc_error(m->id, code, message);
}

static struct json_object *
modern_version_list(void)
{
	struct json_object	*list = json_object_new_array();

	for (size_t i = 0; i < sizeof modern_versions / sizeof *modern_versions;
	    i++)
		json_object_array_add(list,
		    json_object_new_string(modern_versions[i]));
	return list;
}

/* UnsupportedProtocolVersionError: what was asked, what heavyd speaks. */
struct json_object *
modern_unsupported(struct json_object *id, const char *requested)
{
	struct json_object	*msg, *e, *data = json_object_new_object();

	msg = rpc_error(id, RPC_UNSUPPORTED_VERSION,
	    "Unsupported protocol version");
	json_object_object_add(data, "supported", modern_version_list());
	json_object_object_add(data, "requested",
	    json_object_new_string(requested));
	json_object_object_get_ex(msg, "error", &e);
	json_object_object_add(e, "data", data);
	return msg;
}

/*
 * The version and the client's capabilities, on every request: 0, or -1
 * and *error, the JSON-RPC error to answer with (-32022 names the versions
 * heavyd speaks; -32602 a missing field).
 */
int
modern_check(const struct rpc_msg *m, struct json_object **error)
{
	struct json_object	*meta = modern_meta(m), *v;

	if (meta == NULL || !json_object_object_get_ex(meta, META_VERSION, &v) ||
	    !json_object_is_type(v, json_type_string)) {
		*error = modern_error(m, RPC_INVALID_PARAMS, "Invalid params: "
		    "_meta[\"" META_VERSION "\"] (string) is required");
		return -1;
	}
	if (strcmp(json_object_get_string(v), MODERN_VERSION) != 0) {
		*error = modern_unsupported(m->id, json_object_get_string(v));
		return -1;
	}
	if (!json_object_object_get_ex(meta, META_CAPS, &v) ||
	    !json_object_is_type(v, json_type_object)) {
		*error = modern_error(m, RPC_INVALID_PARAMS, "Invalid params: "
		    "_meta[\"" META_CAPS "\"] (object) is required");
		return -1;
	}
	return 0;
}

/* Whether the request's client declared the tasks extension. */
static bool
modern_client_tasks(const struct rpc_msg *m)
{
	struct json_object	*caps, *ext;

	return json_object_object_get_ex(modern_meta(m), META_CAPS, &caps) &&
	    json_object_object_get_ex(caps, "extensions", &ext) &&
	    json_object_is_type(ext, json_type_object) &&
	    json_object_object_get_ex(ext, EXT_TASKS, NULL);
}

static void
modern_discover(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*res = json_object_new_object(), *caps;

	json_object_object_add(res, "supportedVersions", modern_version_list());
	caps = mcp_capabilities(s);
	json_object_object_del(caps, "logging");	/* none in this era */
	json_object_object_add(caps, "extensions", json_tokener_parse(
	    "{\"" EXT_TASKS "\":{}}"));
	json_object_object_add(res, "capabilities", caps);
	json_object_object_add(res, "instructions", mcp_instructions(s));
	mcp_reply(s, m->id, res);
}

static void
modern_listen_free(struct modern_listen *l)
{
	TAILQ_REMOVE(&modern_listens, l, entry);
	json_object_put(l->id);
	json_object_put(l->uris);
	json_object_put(l->tasks);
	free(l->key);
	free(l);
}

/* A list of strings the filter may hold under key; NULL when absent. */
static int
modern_strings(struct json_object *filter, const char *key,
    struct json_object **out)
{
	struct json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(filter, key, &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return -1;
	for (size_t i = 0; i < json_object_array_length(v); i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i),
		    json_type_string))
			return -1;
	*out = json_object_get(v);
	return 0;
}

/* The notification that starts a listen: what heavyd will send. */
static void
modern_acknowledge(struct modern_listen *l)
{
	struct json_object	*params = json_object_new_object(), *f, *meta;

	f = json_object_new_object();
	json_object_object_add(f, "toolsListChanged",
	    json_object_new_boolean(0));
	json_object_object_add(f, "promptsListChanged",
	    json_object_new_boolean(0));
	json_object_object_add(f, "resourcesListChanged",
	    json_object_new_boolean(0));
	if (l->uris != NULL)
		json_object_object_add(f, "resourceSubscriptions",
		    json_object_get(l->uris));
	if (l->tasks != NULL)
		json_object_object_add(f, "taskIds", json_object_get(l->tasks));
	json_object_object_add(params, "notifications", f);
	meta = json_object_new_object();
	json_object_object_add(meta, META_SUB, json_object_new_int(l->sub));
	json_object_object_add(params, "_meta", meta);
	mcp_notify_related(l->s, l->key, "notifications/subscriptions/"
	    "acknowledged", params);
}

/*
 * subscriptions/listen: a stream of the changes asked for, until the
 * client closes it (HTTP), cancels it (stdio), or heavyd stops.  heavyd's
 * lists never change, so only resource and task subscriptions are kept.
 */
static void
modern_listen(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*filter, *uris, *tasks;
	struct modern_listen	*l;

	if (!json_object_object_get_ex(m->params, "notifications", &filter) ||
	    !json_object_is_type(filter, json_type_object)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: notifications (object) is required");
		return;
	}
	if (modern_strings(filter, "resourceSubscriptions", &uris) == -1 ||
	    modern_strings(filter, "taskIds", &tasks) == -1) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS, "Invalid params: "
		    "resourceSubscriptions and taskIds are lists of strings");
		return;
	}
	l = xcalloc(1, sizeof *l);
	l->s = s;
	l->id = json_object_get(m->id);
	l->key = rpc_id_key(m->id);
	l->sub = ++modern_next_sub;
	l->uris = uris;
	l->tasks = tasks;
	TAILQ_INSERT_TAIL(&modern_listens, l, entry);
	modern_acknowledge(l);
}

static bool
modern_has(struct json_object *list, const char *s)
{
	for (size_t i = 0; list != NULL && i < json_object_array_length(list);
	    i++)
		if (strcmp(json_object_get_string(
		    json_object_array_get_idx(list, i)), s) == 0)
			return true;
	return false;
}

static void
modern_tagged(struct modern_listen *l, const char *method,
    struct json_object *params)
{
	struct json_object	*meta;

	if (!json_object_object_get_ex(params, "_meta", &meta)) {
		meta = json_object_new_object();
		json_object_object_add(params, "_meta", meta);
	}
	json_object_object_add(meta, META_SUB, json_object_new_int(l->sub));
	mcp_notify_related(l->s, l->key, method, params);
}

/* A task of the session's owner changed: its listens hear of it. */
void
modern_changed(struct mcp_session *s, struct task_record *r)
{
	struct modern_listen	*l;
	struct json_object	*p;
	char			 uri[64];

	if (strcmp(r->owner, s->owner) != 0)
		return;
	snprintf(uri, sizeof uri, "heavy://tasks/%s", r->id);
	TAILQ_FOREACH(l, &modern_listens, entry) {
		if (l->s != s)
			continue;
		if (modern_has(l->uris, uri)) {
			p = json_object_new_object();
			json_object_object_add(p, "uri",
			    json_object_new_string(uri));
			modern_tagged(l, "notifications/resources/updated", p);
		}
		if (modern_has(l->tasks, r->id))
			modern_tagged(l, "notifications/tasks",
			    mcptasks_modern_status(s, r));
	}
}

/* notifications/cancelled of a listen (stdio): it stops, unanswered. */
bool
modern_cancelled(struct mcp_session *s, const char *key)
{
	struct modern_listen	*l;

	TAILQ_FOREACH(l, &modern_listens, entry)
		if (l->s == s && strcmp(l->key, key) == 0) {
			modern_listen_free(l);
			return true;
		}
	return false;
}

void
modern_session_closed(struct mcp_session *s)
{
	struct modern_listen	*l, *next;

	for (l = TAILQ_FIRST(&modern_listens); l != NULL; l = next) {
		next = TAILQ_NEXT(l, entry);
		if (l->s == s)
			modern_listen_free(l);
	}
}

/* heavyd stops: each listen is answered, which ends its stream. */
void
modern_stop(void)
{
	struct modern_listen	*l;
	struct json_object	*res, *meta;

	while ((l = TAILQ_FIRST(&modern_listens)) != NULL) {
		res = json_object_new_object();
		meta = json_object_new_object();
		json_object_object_add(meta, META_SUB,
		    json_object_new_int(l->sub));
		json_object_object_add(res, "_meta", meta);
		mcp_reply(l->s, l->id, res);
		modern_listen_free(l);
	}
}

static const struct {
	const char	*method;
	void		(*fn)(struct mcp_session *, struct rpc_msg *);
	const char	*cache;		/* cacheScope of its result */
} modern_methods[] = {
	{ "server/discover", modern_discover, "public" },
	{ "tools/list", mcp_tools_list, "public" },
	{ "tools/call", mcp_tools_call, NULL },
	{ "resources/list", resources_rpc_list, "public" },
	{ "resources/templates/list", resources_rpc_templates, "public" },
	{ "resources/read", resources_rpc_read, "private" },
	{ "prompts/list", prompts_rpc_list, "public" },
	{ "prompts/get", prompts_rpc_get, NULL },
	{ "completion/complete", complete_rpc, NULL },
	{ "subscriptions/listen", modern_listen, NULL },
	{ "tasks/get", mcptasks_rpc_get, NULL },
	{ "tasks/update", mcptasks_rpc_update, NULL },
	{ "tasks/cancel", mcptasks_rpc_cancel, NULL },
};

bool
modern_known(const char *method)
{
	for (size_t i = 0; i < sizeof modern_methods / sizeof *modern_methods;
	    i++)
		if (strcmp(method, modern_methods[i].method) == 0)
			return true;
	return false;
}

/* The tasks methods are for a client that declared the extension. */
static bool
modern_needs_tasks(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*e, *data;

	if (strncmp(m->method, "tasks/", 6) != 0 || modern_client_tasks(m))
		return false;
	e = rpc_error(m->id, RPC_MISSING_CAPABILITY, "Missing required client "
	    "capability: declare the " EXT_TASKS " extension to use tasks");
	data = json_tokener_parse("{\"requiredCapabilities\":{\"extensions\":"
	    "{\"" EXT_TASKS "\":{}}}}");
	json_object_object_add(json_object_object_get(e, "error"), "data",
	    data);
	mcp_reply_error(s, e);
	return true;
}

void
modern_request(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*error;

	if (modern_check(m, &error) == -1) {
		mcp_reply_error(s, error);
		return;
	}
	s->modern = true;
	if (modern_needs_tasks(s, m))
		return;
	for (size_t i = 0; i < sizeof modern_methods / sizeof *modern_methods;
	    i++) {
		if (strcmp(m->method, modern_methods[i].method) != 0)
			continue;
		s->cacheable = modern_methods[i].cache;
		s->task_ext = modern_client_tasks(m);
		modern_methods[i].fn(s, m);
		s->cacheable = NULL;
		s->task_ext = false;
		return;
	}
	mcp_error(s, m->id, RPC_METHOD_NOT_FOUND, "Method not found");
}

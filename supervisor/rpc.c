/* JSON-RPC 2.0: one message per line, validated before anything acts on it. */
#include <ctype.h>
#include <string.h>

#include "supervisor.h"

static int
rpc_invalid(struct rpc_msg *m, int code, const char *error)
{
	m->kind = RPC_INVALID;
	m->error_code = code;
	m->error = error;
	return -1;
}

static bool
rpc_id_valid(struct json_object *id)
{
	return json_object_is_type(id, json_type_string) ||
	    json_object_is_type(id, json_type_int);
}

/* Parses exactly one JSON value from a NUL-terminated line of len bytes. */
static struct json_object *
rpc_parse_json(const char *line, size_t len)
{
	struct json_tokener	*tok = json_tokener_new();
	struct json_object	*obj;
	size_t			 end;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	/* len + 1 feeds the NUL, which ends a bare top-level number. */
	obj = json_tokener_parse_ex(tok, line, (int)len + 1);
	end = json_tokener_get_parse_end(tok);
	if (obj != NULL) {
		for (; end < len; end++)
			if (!isspace((unsigned char)line[end]))
				break;
		if (end < len) {	/* trailing bytes after the value */
			json_object_put(obj);
			obj = NULL;
		}
	}
	json_tokener_free(tok);
	return obj;
}

int
rpc_parse(const char *line, size_t len, struct rpc_msg *m)
{
	struct json_object	*v, *id;
	bool			 has_id;

	memset(m, 0, sizeof *m);
	if (len > INT32_MAX - 1 || (m->root = rpc_parse_json(line, len)) == NULL)
		return rpc_invalid(m, RPC_PARSE_ERROR, "Parse error");
	if (json_object_is_type(m->root, json_type_array))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: batches are not supported");
	if (!json_object_is_type(m->root, json_type_object))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: not a JSON object");
	has_id = json_object_object_get_ex(m->root, "id", &id);
	if (has_id && rpc_id_valid(id))
		m->id = id;
	if (!json_object_object_get_ex(m->root, "jsonrpc", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "2.0") != 0)
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: jsonrpc must be \"2.0\"");
	if (has_id && m->id == NULL)
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: id must be a string or an integer");
	if (!json_object_object_get_ex(m->root, "method", &v)) {
		if (has_id && (json_object_object_get_ex(m->root, "result",
		    NULL) || json_object_object_get_ex(m->root, "error", NULL))) {
			m->kind = RPC_RESPONSE;
			return 0;
		}
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: no method");
	}
	if (!json_object_is_type(v, json_type_string))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: method must be a string");
	m->method = json_object_get_string(v);
	if (json_object_object_get_ex(m->root, "params", &m->params) &&
	    !json_object_is_type(m->params, json_type_object))
		return rpc_invalid(m, RPC_INVALID_PARAMS,
		    "Invalid params: params must be an object");
	m->kind = has_id ? RPC_REQUEST : RPC_NOTIFICATION;
	return 0;
}

void
rpc_msg_clear(struct rpc_msg *m)
{
	json_object_put(m->root);
	memset(m, 0, sizeof *m);
}

static struct json_object *
rpc_envelope(struct json_object *id)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(o, "id", json_object_get(id));
	return o;
}

struct json_object *
rpc_result(struct json_object *id, struct json_object *result)
{
	struct json_object	*o = rpc_envelope(id);

	json_object_object_add(o, "result", result);
	return o;
}

struct json_object *
rpc_error(struct json_object *id, int code, const char *message)
{
	struct json_object	*o = rpc_envelope(id), *e;

	e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(o, "error", e);
	return o;
}

struct json_object *
rpc_notification(const char *method, struct json_object *params)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(o, "method", json_object_new_string(method));
	if (params != NULL)
		json_object_object_add(o, "params", params);
	return o;
}

/* A key under which "7" and 7 stay different requests. */
char *
rpc_id_key(struct json_object *id)
{
	if (json_object_is_type(id, json_type_string))
		return xasprintf("s:%s", json_object_get_string(id));
	return xasprintf("i:%lld", (long long)json_object_get_int64(id));
}

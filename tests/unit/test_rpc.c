/* JSON-RPC: every malformed message gets the right error code and id. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../supervisor/supervisor.h"

static int
parse(const char *line, struct rpc_msg *m)
{
	return rpc_parse(line, strlen(line), m);
}

Test(rpc, request_and_notification)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}",
	    &m), 0);
	cr_assert_eq(m.kind, RPC_REQUEST);
	cr_assert_str_eq(m.method, "ping");
	cr_assert_eq(json_object_get_int(m.id), 7);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/"
	    "initialized\"}", &m), 0);
	cr_assert_eq(m.kind, RPC_NOTIFICATION);
	rpc_msg_clear(&m);
}

Test(rpc, parse_error_has_null_id)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("not json", &m), -1);
	cr_assert_eq(m.error_code, RPC_PARSE_ERROR);
	cr_assert_null(m.id);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"} junk",
	    &m), -1, "trailing bytes");
	cr_assert_eq(m.error_code, RPC_PARSE_ERROR);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"a\":\"\xff\xfe\"}", &m), -1, "invalid UTF-8");
	cr_assert_eq(m.error_code, RPC_PARSE_ERROR);
	rpc_msg_clear(&m);
}

Test(rpc, batch_and_non_objects_are_invalid_requests)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
	    &m), -1);
	cr_assert_eq(m.error_code, RPC_INVALID_REQUEST);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("5", &m), -1);
	cr_assert_eq(m.error_code, RPC_INVALID_REQUEST, "a bare number is JSON");
	rpc_msg_clear(&m);
}

Test(rpc, envelope_checks)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("{\"id\":1,\"method\":\"ping\"}", &m), -1);
	cr_assert_eq(m.error_code, RPC_INVALID_REQUEST);
	cr_assert_eq(json_object_get_int(m.id), 1, "the id is kept for the reply");
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
	    &m), -1);
	cr_assert_null(m.id);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":3}", &m), -1);
	cr_assert_eq(m.error_code, RPC_INVALID_REQUEST);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"x\","
	    "\"params\":[1]}", &m), -1);
	cr_assert_eq(m.error_code, RPC_INVALID_PARAMS);
	rpc_msg_clear(&m);
}

Test(rpc, responses_are_recognised)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}",
	    &m), 0);
	cr_assert_eq(m.kind, RPC_RESPONSE);
	rpc_msg_clear(&m);
}

Test(rpc, id_keys_keep_types_apart)
{
	struct json_object	*s = json_object_new_string("7");
	struct json_object	*i = json_object_new_int(7);
	char			*ks = rpc_id_key(s), *ki = rpc_id_key(i);

	cr_assert_str_neq(ks, ki);
	free(ks);
	free(ki);
	json_object_put(s);
	json_object_put(i);
}

Test(rpc, error_message_shape)
{
	struct json_object	*id = json_object_new_int(3);
	struct json_object	*e = rpc_error(id, RPC_METHOD_NOT_FOUND, "nope");

	cr_assert_str_eq(json_object_to_json_string_ext(e,
	    JSON_C_TO_STRING_PLAIN), "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":"
	    "{\"code\":-32601,\"message\":\"nope\"}}");
	json_object_put(e);
	json_object_put(id);
	e = rpc_error(NULL, RPC_PARSE_ERROR, "Parse error");
	cr_assert_str_eq(json_object_to_json_string_ext(e,
	    JSON_C_TO_STRING_PLAIN), "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":"
	    "{\"code\":-32700,\"message\":\"Parse error\"}}");
	json_object_put(e);
}

Test(rpc, version_negotiation)
{
	const char	*v;

	cr_assert_eq(mcp_negotiate_version("2025-06-18", &v), 0);
	cr_assert_str_eq(v, "2025-06-18");
	cr_assert_eq(mcp_negotiate_version("2025-03-26", &v), 0);
	cr_assert_str_eq(v, "2025-03-26");
	cr_assert_eq(mcp_negotiate_version("1999-01-01", &v), -1);
	cr_assert_str_eq(v, "2025-11-25", "unknown: answer with the latest");
}

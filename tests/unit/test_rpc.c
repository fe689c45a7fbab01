/* JSON-RPC: every malformed message gets the right error code and id. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
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

/* An error for line: its code, and its id as JSON ("null": none). */
static void
expect_error(const char *line, int code, const char *id)
{
	struct rpc_msg	m;

	cr_assert_eq(parse(line, &m), -1, "accepted: %s", line);
	cr_assert_eq(m.error_code, code, "code %d for %s", m.error_code, line);
	cr_assert_str_eq(m.id ? json_object_to_json_string(m.id) : "null", id,
	    "id for %s", line);
	rpc_msg_clear(&m);
}

Test(rpc, utf8_is_strict)
{
	static const char *bad[] = { "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf",
	    "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf",
	    "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
	    "\xff", "\x80", "\xe2\x82", "\xc3" };
	static const char *good[] = { "a", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80",
	    "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
	    "\xf4\x8f\xbf\xbf", "\xe2\x82\xac" };
	char	line[128];

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_assert(!rpc_utf8_valid(bad[i], strlen(bad[i])), "bad %zu", i);
		snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":1,"
		    "\"method\":\"x%s\"}", bad[i]);
		expect_error(line, RPC_PARSE_ERROR, "null");
	}
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		cr_assert(rpc_utf8_valid(good[i], strlen(good[i])), "good %zu", i);
}

Test(rpc, strict_json)
{
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\","
	    "\"params\":{\"t\":NaN}}", RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\","
	    "\"params\":{\"t\":Infinity}}", RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\","
	    "\"params\":{\"t\":-Infinity}}", RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\tb\"}",
	    RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":01,\"method\":\"x\"}",
	    RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",}",
	    RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\x\"}",
	    RPC_PARSE_ERROR, "null");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1.,\"method\":\"x\"}",
	    RPC_PARSE_ERROR, "null");
	expect_error("", RPC_PARSE_ERROR, "null");
	expect_error(" \t", RPC_PARSE_ERROR, "null");
	cr_assert_eq(rpc_parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}"
	    "\0", 38, &(struct rpc_msg){ 0 }), -1, "a raw NUL after the value");
}

Test(rpc, ids_are_exact_or_refused)
{
	static const char *exact[] = { "9223372036854775807",
	    "9223372036854775808", "18446744073709551615",
	    "-9223372036854775808", "\"\\ud83d\\ude00\"", "\"\\u00e9\"" };
	static const char *refused[] = { "18446744073709551616",
	    "-9223372036854775809", "100000000000000000000000",
	    "\"\\ud800\"", "\"\\udc00\"", "\"a\\ud800\\u0041\"",
	    "\"\\ud800\\ud800\"" };
	struct rpc_msg	m;
	char		line[160];

	for (size_t i = 0; i < sizeof exact / sizeof *exact; i++) {
		snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":%s,"
		    "\"method\":\"ping\"}", exact[i]);
		cr_assert_eq(parse(line, &m), 0, "%s", line);
		if (exact[i][0] != '"')
			cr_assert_str_eq(json_object_to_json_string(m.id),
			    exact[i]);
		rpc_msg_clear(&m);
	}
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
		snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":%s,"
		    "\"method\":\"ping\"}", refused[i]);
		expect_error(line, RPC_INVALID_REQUEST, "null");
	}
	/* Elsewhere in the message: refused under the id, which is exact. */
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\",\"params\":"
	    "{\"_meta\":{\"progressToken\":\"\\ud800\"}}}", RPC_INVALID_REQUEST,
	    "3");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\",\"params\":"
	    "{\"n\":1e400}}", RPC_INVALID_REQUEST, "3");
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\",\"params\":"
	    "{\"a\\u0000b\":1}}", RPC_INVALID_REQUEST, "3");
	/* The last of two ids is the one json-c keeps. */
	expect_error("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":\"\\ud800\","
	    "\"method\":\"x\"}", RPC_INVALID_REQUEST, "null");
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":\"\\ud800\",\"id\":2,"
	    "\"method\":\"ping\"}", &m), 0);
	cr_assert_eq(json_object_get_int(m.id), 2);
	rpc_msg_clear(&m);
}

Test(rpc, a_nul_in_a_method_matches_nothing)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":1,"
	    "\"method\":\"ping\\u0000junk\"}", &m), 0);
	cr_assert_str_neq(m.method, "ping");
	rpc_msg_clear(&m);
}

static char *
nested(const char *head, int levels, const char *tail)
{
	size_t	 hl = strlen(head), tl = strlen(tail);
	char	*s = malloc(hl + 2 * (size_t)levels + tl + 1);

	memcpy(s, head, hl);
	memset(s + hl, '[', (size_t)levels);
	memset(s + hl + levels, ']', (size_t)levels);
	memcpy(s + hl + 2 * levels, tail, tl + 1);
	return s;
}

Test(rpc, deep_nesting)
{
	struct rpc_msg	m;
	char		*s;

	/* The message, params, then arrays: RPC_MAX_DEPTH levels parse. */
	s = nested("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":"
	    "{\"a\":", RPC_MAX_DEPTH - 2, "}}");
	cr_assert_eq(parse(s, &m), 0);
	rpc_msg_clear(&m);
	free(s);
	s = nested("{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"a\":",
	    100000, "},\"\\u0069d\":\"deep\"}");
	expect_error(s, RPC_INVALID_REQUEST, "\"deep\"");
	free(s);
	s = nested("{\"jsonrpc\":\"2.0\",\"id\":[", 1000, "],\"method\":\"x\"}");
	expect_error(s, RPC_INVALID_REQUEST, "null");
	free(s);
	s = nested("{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":", 1000, "}");
	cr_assert_eq(parse(s, &m), 0);
	cr_assert_eq(m.kind, RPC_RESPONSE);
	rpc_msg_clear(&m);
	free(s);
	s = nested("", 1000000, "");
	expect_error(s, RPC_INVALID_REQUEST, "null");
	free(s);
}

Test(rpc, responses_without_an_id_are_responses)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,"
	    "\"message\":\"x\"}}", &m), 0);
	cr_assert_eq(m.kind, RPC_RESPONSE);
	rpc_msg_clear(&m);
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{}}", &m),
	    0);
	cr_assert_eq(m.kind, RPC_RESPONSE);
	rpc_msg_clear(&m);
}

/* Two requests whose ids differ must never share a key (and so a call). */
static void
keys_differ(const char *line1, const char *line2)
{
	struct rpc_msg	a, b;
	char		*ka, *kb;

	cr_assert_eq(parse(line1, &a), 0, "%s", line1);
	cr_assert_eq(parse(line2, &b), 0, "%s", line2);
	ka = rpc_id_key(a.id);
	kb = rpc_id_key(b.id);
	cr_assert_str_neq(ka, kb, "%s and %s share a key", line1, line2);
	free(ka);
	free(kb);
	rpc_msg_clear(&a);
	rpc_msg_clear(&b);
}

Test(rpc, id_keys_stay_apart)
{
	keys_differ("{\"jsonrpc\":\"2.0\",\"id\":9223372036854775808,\"method\":\"x\"}",
	    "{\"jsonrpc\":\"2.0\",\"id\":9223372036854775809,\"method\":\"x\"}");
	keys_differ("{\"jsonrpc\":\"2.0\",\"id\":\"a\\u0000b\",\"method\":\"x\"}",
	    "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"x\"}");
}

Test(rpc, a_lossy_notification_is_dropped)
{
	struct rpc_msg	m;

	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/"
	    "cancelled\",\"params\":{\"requestId\":18446744073709551616}}", &m),
	    0);
	cr_assert_eq(m.kind, RPC_DROPPED);
	rpc_msg_clear(&m);
}

/* JSON-RPC 2.0: one message per line, validated before anything acts on it. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
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

/*
 * The length of the UTF-8 character at s, or 0 if it is not one: the
 * well-formed sequences of Unicode's table 3-7, so no overlong form, no
 * encoded surrogate, nothing past U+10FFFF.  (json-c's
 * JSON_TOKENER_VALIDATE_UTF8 only counts continuation bytes.)
 */
size_t
rpc_utf8_char(const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	unsigned char		 lo = 0x80, hi = 0xbf;
	size_t			 len, i;

	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	len = p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++, lo = 0x80, hi = 0xbf)
		if (p[i] < lo || p[i] > hi)
			return 0;
	return len;
}

bool
rpc_utf8_valid(const char *s, size_t n)
{
	size_t	k;

	for (; n > 0; s += k, n -= k)
		if ((k = rpc_utf8_char(s, n)) == 0)
			return false;
	return true;
}

/*
 * A strict JSON scan of a line before json-c parses it.  json-c 0.16
 * takes NaN, Infinity and raw control characters in strict mode, and
 * bytes that are not UTF-8: the scan refuses them (not JSON).  json-c
 * also changes some JSON it takes: a lone surrogate escape becomes
 * U+FFFD, an integer past int64 or uint64 is clamped, a number past
 * DBL_MAX becomes infinite, a key is cut at \u0000.  The scan flags
 * those as lossy, apart when in the top-level "id", whose raw text it
 * keeps so that a request nested too deep for json-c can still be
 * answered under its id.  It is iterative: nesting is bounded only by the
 * line.
 */
struct rpc_scan {
	const char	*p, *end;
	uint8_t		*objs;		/* a bit per level: object, or array */
	size_t		 depth, max_depth;
	const char	*id;		/* the top-level "id" value, raw */
	size_t		 idlen;
	bool		 next_is_id, in_id, nul;
	bool		 lossy, id_lossy;
	bool		 has_method, has_outcome;	/* result or error */
};

static void
scan_ws(struct rpc_scan *sc)
{
	while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' ||
	    *sc->p == '\n' || *sc->p == '\r'))
		sc->p++;
}

static bool
scan_is(struct rpc_scan *sc, char c)
{
	return sc->p < sc->end && *sc->p == c;
}

static void
scan_lossy(struct rpc_scan *sc)
{
	if (sc->in_id)
		sc->id_lossy = true;
	else
		sc->lossy = true;
}

static int
scan_hex4(const char *p, const char *end, unsigned *u)
{
	*u = 0;
	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return -1;
		*u = *u << 4 | (unsigned)(isdigit((unsigned char)p[i]) ?
		    p[i] - '0' : (tolower((unsigned char)p[i]) - 'a' + 10));
	}
	return 0;
}

/* One escape; a surrogate is fine only as a high one and its low one. */
static int
scan_escape(struct rpc_scan *sc)
{
	unsigned	u, lo;

	if (sc->end - sc->p < 2)
		return -1;
	if (sc->p[1] != '\0' && strchr("\"\\/bfnrt", sc->p[1]) != NULL) {
		sc->p += 2;
		return 0;
	}
	if (sc->p[1] != 'u' || scan_hex4(sc->p + 2, sc->end, &u) == -1)
		return -1;
	sc->p += 6;
	if (u == 0)
		sc->nul = true;
	if (u < 0xd800 || u > 0xdfff)
		return 0;
	if (u < 0xdc00 && sc->end - sc->p >= 6 && sc->p[0] == '\\' &&
	    sc->p[1] == 'u' && scan_hex4(sc->p + 2, sc->end, &lo) == 0 &&
	    lo >= 0xdc00 && lo <= 0xdfff) {
		sc->p += 6;
		return 0;
	}
	scan_lossy(sc);
	return 0;
}

static int
scan_string(struct rpc_scan *sc)
{
	size_t	n;

	sc->nul = false;
	for (sc->p++; sc->p < sc->end; ) {
		if (*sc->p == '"') {
			sc->p++;
			return 0;
		}
		if ((unsigned char)*sc->p < 0x20)
			return -1;
		if (*sc->p == '\\') {
			if (scan_escape(sc) == -1)
				return -1;
			continue;
		}
		if ((n = rpc_utf8_char(sc->p, (size_t)(sc->end - sc->p))) == 0)
			return -1;
		sc->p += n;
	}
	return -1;
}

static size_t
scan_digits(struct rpc_scan *sc)
{
	const char	*p = sc->p;

	while (sc->p < sc->end && isdigit((unsigned char)*sc->p))
		sc->p++;
	return (size_t)(sc->p - p);
}

/* Whether json-c holds an integer exactly: int64 below 0, else uint64. */
static bool
scan_int_exact(bool neg, const char *digits, size_t n)
{
	const char	*max = neg ? "9223372036854775808" :
	    "18446744073709551615";
	size_t		 mlen = strlen(max);

	return n < mlen || (n == mlen && memcmp(digits, max, n) <= 0);
}

/* The line is NUL-terminated, so strtod stops at the number's end. */
static int
scan_number(struct rpc_scan *sc)
{
	const char	*start = sc->p, *digits;
	bool		 neg = scan_is(sc, '-'), integer = true;
	size_t		 n;

	if (neg)
		sc->p++;
	digits = sc->p;
	if (scan_is(sc, '0'))
		n = (sc->p++, 1);
	else if ((n = scan_digits(sc)) == 0)
		return -1;
	if (scan_is(sc, '.')) {
		sc->p++;
		integer = false;
		if (scan_digits(sc) == 0)
			return -1;
	}
	if (scan_is(sc, 'e') || scan_is(sc, 'E')) {
		sc->p++;
		integer = false;
		if (scan_is(sc, '+') || scan_is(sc, '-'))
			sc->p++;
		if (scan_digits(sc) == 0)
			return -1;
	}
	if (integer ? !scan_int_exact(neg, digits, n) :
	    isinf(strtod(start, NULL)))
		scan_lossy(sc);
	return 0;
}

static int
scan_word(struct rpc_scan *sc, const char *word)
{
	size_t	n = strlen(word);

	if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
		return -1;
	sc->p += n;
	return 0;
}

static bool
scan_in_object(struct rpc_scan *sc)
{
	return sc->objs[sc->depth / 8] & (1 << sc->depth % 8);
}

static void
scan_push(struct rpc_scan *sc, bool obj)
{
	sc->depth++;
	if (sc->depth > sc->max_depth)
		sc->max_depth = sc->depth;
	if (obj)
		sc->objs[sc->depth / 8] |= 1 << sc->depth % 8;
	else
		sc->objs[sc->depth / 8] &= ~(1 << sc->depth % 8);
}

/* A top-level key, as json-c would see it (escapes are rare there). */
static bool
scan_key_is(const char *key, size_t len, const char *name)
{
	struct json_object	*o;
	char			*copy;
	bool			 is;

	if (len == strlen(name) + 2 && memcmp(key + 1, name, len - 2) == 0)
		return true;
	if (memchr(key, '\\', len) == NULL || len > 64)
		return false;
	copy = xmalloc(len + 1);
	memcpy(copy, key, len);
	copy[len] = '\0';
	o = json_tokener_parse(copy);
	is = json_object_is_type(o, json_type_string) &&
	    strcmp(json_object_get_string(o), name) == 0;
	json_object_put(o);
	free(copy);
	return is;
}

/* "key": -- at the top level, noting the members that matter. */
static int
scan_key(struct rpc_scan *sc)
{
	const char	*k;
	size_t		 len;

	scan_ws(sc);
	if (!scan_is(sc, '"'))
		return -1;
	k = sc->p;
	if (scan_string(sc) == -1)
		return -1;
	if (sc->nul)	/* json-c cuts a key there */
		scan_lossy(sc);
	len = (size_t)(sc->p - k);
	if (sc->depth == 1) {
		sc->next_is_id = scan_key_is(k, len, "id");
		sc->has_method |= scan_key_is(k, len, "method");
		sc->has_outcome |= scan_key_is(k, len, "result") ||
		    scan_key_is(k, len, "error");
	}
	scan_ws(sc);
	if (!scan_is(sc, ':'))
		return -1;
	sc->p++;
	return 1;
}

/* An object or array: 1 when a value follows, 0 when it closed at once. */
static int
scan_open(struct rpc_scan *sc)
{
	bool	obj = *sc->p == '{';

	sc->p++;
	scan_push(sc, obj);
	scan_ws(sc);
	if (scan_is(sc, obj ? '}' : ']')) {
		sc->p++;
		sc->depth--;
		return 0;
	}
	return obj ? scan_key(sc) : 1;
}

/* After a value: 1 when another follows, 0 at the line's end. */
static int
scan_after(struct rpc_scan *sc)
{
	for (;;) {
		if (sc->in_id && sc->depth == 1) {
			sc->idlen = (size_t)(sc->p - sc->id);
			sc->in_id = false;
		}
		scan_ws(sc);
		if (sc->depth == 0)
			return sc->p == sc->end ? 0 : -1;
		if (scan_is(sc, ',')) {
			sc->p++;
			return scan_in_object(sc) ? scan_key(sc) : 1;
		}
		if (!scan_is(sc, scan_in_object(sc) ? '}' : ']'))
			return -1;
		sc->p++;
		sc->depth--;
	}
}

static int
scan_value(struct rpc_scan *sc)
{
	scan_ws(sc);
	if (sc->p >= sc->end)
		return -1;
	if (sc->next_is_id) {
		sc->next_is_id = false;
		sc->in_id = true;
		sc->id_lossy = false;
		sc->id = sc->p;
	}
	switch (*sc->p) {
	case '{':
	case '[':
		return scan_open(sc);
	case '"':
		return scan_string(sc);
	case 't':
		return scan_word(sc, "true");
	case 'f':
		return scan_word(sc, "false");
	case 'n':
		return scan_word(sc, "null");
	default:
		return scan_number(sc);
	}
}

/* 0 when the line is one JSON value, else -1. */
static int
rpc_scan(const char *line, size_t len, struct rpc_scan *sc)
{
	uint8_t	small[256];		/* a bit a level: lines up to 2 KB */
	size_t	n = len / 8 + 2;
	int	rc;

	memset(sc, 0, sizeof *sc);
	sc->p = line;
	sc->end = line + len;
	if (n <= sizeof small)
		sc->objs = memset(small, 0, n);
	else
		sc->objs = xcalloc(n, 1);
	do {
		if ((rc = scan_value(sc)) == 0)
			rc = scan_after(sc);
	} while (rc == 1);
	if (sc->objs != small)
		free(sc->objs);
	sc->objs = NULL;
	return rc;
}

/*
 * Parses one JSON value that rpc_scan accepted, len bytes and a NUL.  One
 * tokener serves every parse: a new one allocates and clears its whole
 * stack (RPC_MAX_DEPTH levels, 8 KB), which cost a ping more than its
 * parse.  The supervisor is single-threaded.
 */
static struct json_object *
rpc_parse_json(const char *line, size_t len)
{
	static struct json_tokener	*tok;

	if (tok == NULL) {
		if ((tok = json_tokener_new_ex(RPC_MAX_DEPTH + 1)) == NULL)
			return NULL;
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	}
	json_tokener_reset(tok);
	/* len + 1 feeds the NUL, which ends a bare top-level number. */
	return json_tokener_parse_ex(tok, line, (int)len + 1);
}

/*
 * Valid JSON nested deeper than json-c parses: refused, under its id
 * when the raw id parses on its own; a response is still ignored.
 */
static int
rpc_too_deep(struct rpc_msg *m, const struct rpc_scan *sc)
{
	char	*raw;

	if (!sc->has_method && sc->has_outcome) {
		m->kind = RPC_RESPONSE;
		return 0;
	}
	if (sc->id != NULL && !sc->id_lossy) {
		raw = xmalloc(sc->idlen + 1);
		memcpy(raw, sc->id, sc->idlen);
		raw[sc->idlen] = '\0';
		m->root = rpc_parse_json(raw, sc->idlen);
		free(raw);
		if (rpc_id_valid(m->root))
			m->id = m->root;
	}
	return rpc_invalid(m, RPC_INVALID_REQUEST, "Invalid Request: nested "
	    "deeper than " RPC_MAX_DEPTH_TEXT " levels");
}

/* A response to us (we send no requests yet): never answered, id or not. */
static bool
rpc_is_response(struct json_object *root)
{
	return !json_object_object_get_ex(root, "method", NULL) &&
	    (json_object_object_get_ex(root, "result", NULL) ||
	    json_object_object_get_ex(root, "error", NULL));
}

/* A method name with a NUL inside is no method's name. */
static const char *
rpc_method(struct json_object *v)
{
	const char	*s = json_object_get_string(v);

	return strlen(s) != (size_t)json_object_get_string_len(v) ? "" : s;
}

/* A request or a notification: its envelope, its id, its method. */
static int
rpc_request(struct rpc_msg *m, const struct rpc_scan *sc)
{
	struct json_object	*v, *id;
	bool			 has_id;

	has_id = json_object_object_get_ex(m->root, "id", &id);
	if (has_id && rpc_id_valid(id) && !sc->id_lossy)
		m->id = id;
	if (!json_object_object_get_ex(m->root, "jsonrpc", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "2.0") != 0)
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: jsonrpc must be \"2.0\"");
	if (has_id && m->id == NULL)
		return rpc_invalid(m, RPC_INVALID_REQUEST, sc->id_lossy ?
		    "Invalid Request: id cannot be echoed exactly (a lone "
		    "surrogate, or an integer out of range)" :
		    "Invalid Request: id must be a string or an integer");
	if (!json_object_object_get_ex(m->root, "method", &v))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: no method");
	if (!json_object_is_type(v, json_type_string))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: method must be a string");
	m->method = rpc_method(v);
	if (sc->lossy && !has_id) {	/* never answered, and unsafe to act on */
		m->kind = RPC_DROPPED;
		return 0;
	}
	if (sc->lossy)
		return rpc_invalid(m, RPC_INVALID_REQUEST, "Invalid Request: "
		    "holds a lone surrogate escape, a number out of range or "
		    "a key with \\u0000");
	if (json_object_object_get_ex(m->root, "params", &m->params) &&
	    !json_object_is_type(m->params, json_type_object))
		return rpc_invalid(m, RPC_INVALID_PARAMS,
		    "Invalid params: params must be an object");
	m->kind = has_id ? RPC_REQUEST : RPC_NOTIFICATION;
	return 0;
}

int
rpc_parse(const char *line, size_t len, struct rpc_msg *m)
{
	struct rpc_scan	sc;

	memset(m, 0, sizeof *m);
	if (len > INT32_MAX - 1 || rpc_scan(line, len, &sc) == -1)
		return rpc_invalid(m, RPC_PARSE_ERROR, "Parse error");
	if (sc.max_depth > RPC_MAX_DEPTH)
		return rpc_too_deep(m, &sc);
	if ((m->root = rpc_parse_json(line, len)) == NULL)
		return rpc_invalid(m, RPC_PARSE_ERROR, "Parse error");
	if (json_object_is_type(m->root, json_type_array))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: batches are not supported");
	if (!json_object_is_type(m->root, json_type_object))
		return rpc_invalid(m, RPC_INVALID_REQUEST,
		    "Invalid Request: not a JSON object");
	if (rpc_is_response(m->root)) {
		m->kind = RPC_RESPONSE;
		return 0;
	}
	return rpc_request(m, &sc);
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

/*
 * A key under which "7" and 7 stay different requests: the id as JSON, so
 * that integers past int64 and strings with a NUL stay apart too.
 */
char *
rpc_id_key(struct json_object *id)
{
	const char	*json;
	char		*key;
	size_t		 len;

	json = json_object_to_json_string_length(id, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	key = xmalloc(len + 3);		/* (xasprintf allocates twice) */
	key[0] = json_object_is_type(id, json_type_string) ? 's' : 'i';
	key[1] = ':';
	memcpy(key + 2, json, len + 1);
	return key;
}

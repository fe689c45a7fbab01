/*
 * Tool arguments checked against the tool's JSON Schema, for the subset
 * the schemas in proto/tooldefs.c use: type, properties, required,
 * additionalProperties: false, minimum/maximum, minLength/maxLength (in
 * characters, as JSON Schema counts them) and enum.  The error names the
 * argument and what it must be, so the model can correct its call.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "worker.h"

struct check {
	char	*err;
	size_t	 errlen;
};

static int	schema_check(struct check *, struct json_object *schema,
		    struct json_object *v, const char *where);

static int
schema_fail(struct check *c, const char *where, const char *what)
{
	if (where[0] == '\0')
		snprintf(c->err, c->errlen, "arguments %s", what);
	else
		snprintf(c->err, c->errlen, "argument '%.100s' %s", where, what);
	return -1;
}

/* A JSON number with no fractional part (json-c may read 4.0 as double). */
static bool
schema_is_integer(struct json_object *v)
{
	double	d;

	if (json_object_is_type(v, json_type_int))
		return true;
	if (!json_object_is_type(v, json_type_double))
		return false;
	d = json_object_get_double(v);
	return isfinite(d) && d == floor(d);
}

static bool
schema_type_is(struct json_object *v, const char *type)
{
	if (strcmp(type, "integer") == 0)
		return schema_is_integer(v);
	if (strcmp(type, "number") == 0)
		return json_object_is_type(v, json_type_int) ||
		    json_object_is_type(v, json_type_double);
	if (strcmp(type, "string") == 0)
		return json_object_is_type(v, json_type_string);
	if (strcmp(type, "object") == 0)
		return json_object_is_type(v, json_type_object);
	if (strcmp(type, "array") == 0)
		return json_object_is_type(v, json_type_array);
	if (strcmp(type, "boolean") == 0)
		return json_object_is_type(v, json_type_boolean);
	if (strcmp(type, "null") == 0)
		return v == NULL;
	return false;
}

/* "type": one name or a list of names. */
static int
schema_check_type(struct check *c, struct json_object *type,
    struct json_object *v, const char *where)
{
	char	what[128];
	size_t	i, n;

	if (json_object_is_type(type, json_type_string)) {
		if (schema_type_is(v, json_object_get_string(type)))
			return 0;
		snprintf(what, sizeof what, "must be %s %s", strchr("aeiou",
		    json_object_get_string(type)[0]) ? "an" : "a",
		    json_object_get_string(type));
		return schema_fail(c, where, what);
	}
	n = json_object_is_type(type, json_type_array) ?
	    json_object_array_length(type) : 0;
	for (i = 0; i < n; i++)
		if (schema_type_is(v, json_object_get_string(
		    json_object_array_get_idx(type, i))))
			return 0;
	snprintf(what, sizeof what, "must be one of the types %.100s",
	    json_object_to_json_string_ext(type, JSON_C_TO_STRING_PLAIN));
	return n == 0 ? 0 : schema_fail(c, where, what);
}

static int
schema_check_number(struct check *c, struct json_object *schema,
    struct json_object *v, const char *where)
{
	struct json_object	*lim;
	char			 what[96];
	double			 d;

	if (!json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double))
		return 0;
	d = json_object_get_double(v);
	if (json_object_object_get_ex(schema, "minimum", &lim) &&
	    d < json_object_get_double(lim)) {
		snprintf(what, sizeof what, "must be at least %.15g",
		    json_object_get_double(lim));
		return schema_fail(c, where, what);
	}
	if (json_object_object_get_ex(schema, "maximum", &lim) &&
	    d > json_object_get_double(lim)) {
		snprintf(what, sizeof what, "must be at most %.15g",
		    json_object_get_double(lim));
		return schema_fail(c, where, what);
	}
	return 0;
}

/* Characters, not bytes: every byte that does not continue a sequence. */
static size_t
schema_chars(const char *s, size_t len)
{
	size_t	n = 0;

	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

static int
schema_check_string(struct check *c, struct json_object *schema,
    struct json_object *v, const char *where)
{
	struct json_object	*lim;
	char			 what[96];
	size_t			 n;

	if (!json_object_is_type(v, json_type_string))
		return 0;
	n = schema_chars(json_object_get_string(v),
	    (size_t)json_object_get_string_len(v));
	if (json_object_object_get_ex(schema, "minLength", &lim) &&
	    n < (size_t)json_object_get_int64(lim)) {
		if (n == 0)
			return schema_fail(c, where, "must not be empty");
		snprintf(what, sizeof what, "must be at least %lld characters "
		    "long", (long long)json_object_get_int64(lim));
		return schema_fail(c, where, what);
	}
	if (json_object_object_get_ex(schema, "maxLength", &lim) &&
	    n > (size_t)json_object_get_int64(lim)) {
		snprintf(what, sizeof what, "must be at most %lld characters "
		    "long", (long long)json_object_get_int64(lim));
		return schema_fail(c, where, what);
	}
	return 0;
}

static int
schema_check_enum(struct check *c, struct json_object *list,
    struct json_object *v, const char *where)
{
	char	what[256];

	for (size_t i = 0; i < json_object_array_length(list); i++)
		if (json_object_equal(json_object_array_get_idx(list, i), v))
			return 0;
	snprintf(what, sizeof what, "must be one of %.200s",
	    json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN));
	return schema_fail(c, where, what);
}

/* The names an object may have, for the error about one it may not. */
static void
schema_known(struct json_object *props, char *out, size_t outlen)
{
	size_t	n = 0;

	out[0] = '\0';
	json_object_object_foreach(props, key, val) {
		(void)val;
		n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0,
		    "%s%s", n ? ", " : "", key);
		if (n >= outlen)
			break;
	}
}

static int
schema_check_object(struct check *c, struct json_object *schema,
    struct json_object *v, const char *where)
{
	struct json_object	*props, *req, *sub, *extra;
	char			 path[256], what[384], known[256];
	const char		*key;

	if (!json_object_is_type(v, json_type_object))
		return 0;
	props = json_object_object_get(schema, "properties");
	req = json_object_object_get(schema, "required");
	for (size_t i = 0; json_object_is_type(req, json_type_array) &&
	    i < json_object_array_length(req); i++) {
		key = json_object_get_string(json_object_array_get_idx(req, i));
		if (key != NULL && !json_object_object_get_ex(v, key, NULL)) {
			snprintf(path, sizeof path, "%s%s%s", where,
			    where[0] ? "." : "", key);
			return schema_fail(c, path, "is required");
		}
	}
	extra = json_object_object_get(schema, "additionalProperties");
	json_object_object_foreach(v, k, val) {
		snprintf(path, sizeof path, "%s%s%s", where, where[0] ? "." : "",
		    k);
		if (json_object_object_get_ex(props, k, &sub)) {
			if (schema_check(c, sub, val, path) == -1)
				return -1;
		} else if (json_object_is_type(extra, json_type_boolean) &&
		    !json_object_get_boolean(extra)) {
			schema_known(props, known, sizeof known);
			snprintf(what, sizeof what, "is not accepted; the "
			    "arguments are: %s", known);
			return schema_fail(c, path, what);
		}
	}
	return 0;
}

static int
schema_check(struct check *c, struct json_object *schema,
    struct json_object *v, const char *where)
{
	struct json_object	*kw;

	if (json_object_object_get_ex(schema, "type", &kw) &&
	    schema_check_type(c, kw, v, where) == -1)
		return -1;
	if (json_object_object_get_ex(schema, "enum", &kw) &&
	    json_object_is_type(kw, json_type_array) &&
	    schema_check_enum(c, kw, v, where) == -1)
		return -1;
	if (schema_check_number(c, schema, v, where) == -1 ||
	    schema_check_string(c, schema, v, where) == -1)
		return -1;
	return schema_check_object(c, schema, v, where);
}

/* 0 if v satisfies schema; -1 with a message naming the argument. */
int
schema_validate(struct json_object *schema, struct json_object *v, char *err,
    size_t errlen)
{
	struct check	c = { err, errlen };

	return schema_check(&c, schema, v, "");
}

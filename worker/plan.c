/*
 * The planner's output: a JSON array of exactly N distinct, non-empty
 * question strings.  Code fences and prose around the array are tolerated;
 * anything else is rejected with a reason the re-ask can quote.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "worker.h"

#define PLAN_MAX_QUESTION	4096	/* bytes in one question */
#define PLAN_MAX_STARTS		64	/* '[' positions tried */

/* Parses the first well-formed JSON array in text, or NULL: models wrap
 * arrays in prose and code fences. */
struct json_object *
json_first_array(const char *text)
{
	struct json_tokener	*tok = json_tokener_new();
	struct json_object	*obj = NULL;
	const char		*p = text;

	for (int tries = 0; tries < PLAN_MAX_STARTS; tries++) {
		if ((p = strchr(p, '[')) == NULL)
			break;
		json_tokener_reset(tok);
		obj = json_tokener_parse_ex(tok, p, (int)strlen(p));
		if (obj != NULL && json_object_is_type(obj, json_type_array))
			break;
		json_object_put(obj);
		obj = NULL;
		p++;
	}
	json_tokener_free(tok);
	return obj;
}

static char *
plan_trim(const char *s)
{
	size_t	len;

	while (isspace((unsigned char)*s))
		s++;
	len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	return xstrndup(s, len);
}

/* Checks item i; returns its trimmed copy or NULL with a reason. */
static char *
plan_item(struct json_object *arr, unsigned i, char **qs, char *err,
    size_t errlen)
{
	struct json_object	*item = json_object_array_get_idx(arr, i);
	char			*q;

	if (!json_object_is_type(item, json_type_string)) {
		snprintf(err, errlen, "item %u is not a string", i + 1);
		return NULL;
	}
	q = plan_trim(json_object_get_string(item));
	if (*q == '\0' || strlen(q) > PLAN_MAX_QUESTION) {
		snprintf(err, errlen, "item %u is %s", i + 1,
		    *q == '\0' ? "empty" : "too long");
		free(q);
		return NULL;
	}
	for (unsigned j = 0; j < i; j++) {
		if (strcasecmp(qs[j], q) == 0) {
			snprintf(err, errlen, "item %u repeats item %u",
			    i + 1, j + 1);
			free(q);
			return NULL;
		}
	}
	return q;
}

int
plan_parse(const char *text, unsigned n, char ***questions, char *err,
    size_t errlen)
{
	struct json_object	*arr;
	char			**qs;
	size_t			 len;

	if ((arr = json_first_array(text)) == NULL) {
		snprintf(err, errlen, "no JSON array found");
		return -1;
	}
	len = json_object_array_length(arr);
	if (len != n) {
		snprintf(err, errlen, "expected %u questions, got %zu", n, len);
		json_object_put(arr);
		return -1;
	}
	qs = xcalloc(n, sizeof *qs);
	for (unsigned i = 0; i < n; i++) {
		if ((qs[i] = plan_item(arr, i, qs, err, errlen)) == NULL) {
			plan_free(qs, i);
			json_object_put(arr);
			return -1;
		}
	}
	json_object_put(arr);
	*questions = qs;
	return 0;
}

void
plan_free(char **qs, unsigned n)
{
	if (qs == NULL)
		return;
	for (unsigned i = 0; i < n; i++)
		free(qs[i]);
	free(qs);
}

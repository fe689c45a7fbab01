/*
 * A peer review: one tool-free call that ranks the anonymous answers the
 * supervisor labelled "Response A", "Response B", ...  The reply must be a
 * JSON array naming every shown label exactly once, best first; prose and
 * code fences around it are tolerated, anything else is re-asked once.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "worker.h"

/* "B", "b" or "Response B", spaces around allowed: the label's number. */
static int
review_label(const char *s, unsigned n)
{
	size_t	len;

	while (isspace((unsigned char)*s))
		s++;
	if (strncasecmp(s, "response", 8) == 0 && isspace((unsigned char)s[8]))
		for (s += 8; isspace((unsigned char)*s); s++)
			;
	len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len != 1 || !isalpha((unsigned char)*s))
		return -1;
	if ((unsigned)(toupper((unsigned char)*s) - 'A') >= n)
		return -1;
	return toupper((unsigned char)*s) - 'A';
}

/* Item i of the array: a label not seen before; -1 with a reason. */
static int
review_item(struct json_object *arr, unsigned i, unsigned n, const int *seen,
    char *err, size_t errlen)
{
	struct json_object	*item = json_object_array_get_idx(arr, i);
	int			 label;

	if (!json_object_is_type(item, json_type_string)) {
		snprintf(err, errlen, "item %u is not a string", i + 1);
		return -1;
	}
	if ((label = review_label(json_object_get_string(item), n)) == -1) {
		snprintf(err, errlen, "item %u \"%.32s\" is not one of the "
		    "labels A to %c", i + 1, json_object_get_string(item),
		    REVIEW_LABEL(n - 1));
		return -1;
	}
	if (seen[label]) {
		snprintf(err, errlen, "label %c appears twice",
		    REVIEW_LABEL(label));
		return -1;
	}
	return label;
}

int
review_parse(const char *text, unsigned n, unsigned *order, char *err,
    size_t errlen)
{
	struct json_object	*arr;
	int			 seen[HEAVY_MAX_AGENTS] = { 0 }, label;
	size_t			 len;

	if (n < 2 || n > HEAVY_MAX_AGENTS) {
		snprintf(err, errlen, "cannot rank %u answers", n);
		return -1;
	}
	if ((arr = json_first_array(text)) == NULL) {
		snprintf(err, errlen, "no JSON array found");
		return -1;
	}
	len = json_object_array_length(arr);
	for (unsigned i = 0; i < len; i++) {
		if (i == n) {
			snprintf(err, errlen, "expected %u labels, got %zu",
			    n, len);
			goto fail;
		}
		if ((label = review_item(arr, i, n, seen, err, errlen)) == -1)
			goto fail;
		seen[label] = 1;
		order[i] = (unsigned)label;
	}
	for (unsigned k = 0; k < n; k++)
		if (!seen[k]) {
			snprintf(err, errlen, len == 0 ? "the array is empty" :
			    "label %c is missing", REVIEW_LABEL(k));
			goto fail;
		}
	json_object_put(arr);
	return 0;
fail:
	json_object_put(arr);
	return -1;
}

/* The re-ask: what was wrong, and the labels to use. */
static void
review_reask(struct json_object *msgs, const char *reply, unsigned n,
    const char *why)
{
	char	ask[512], labels[64];
	size_t	off = 0;

	for (unsigned k = 0; k < n; k++)
		off += (size_t)snprintf(labels + off, sizeof labels - off,
		    "%s\"%c\"", k ? ", " : "", REVIEW_LABEL(k));
	worker_message_add(msgs, "assistant", reply);
	snprintf(ask, sizeof ask, "That reply was not usable (%s). Reply with "
	    "only a JSON array of the labels %s, each exactly once, best "
	    "first.", why, labels);
	worker_message_add(msgs, "user", ask);
}

/* One ranking: order[k] is the label ranked k-th; one re-ask at most. */
int
review_run(const struct job *job, int64_t deadline, unsigned *order,
    uint32_t *flags, struct usage *u, struct llm_error *e)
{
	struct json_object	*msgs = worker_messages(job, job->prompt);
	struct llm_reply	 reply;
	char			 err[256];
	int			 rc = -1;

	for (int attempt = 0; attempt < 2 && rc == -1; attempt++) {
		if (llm_chat(job, deadline, msgs, NULL, &reply, u, e) == -1)
			break;
		if (review_parse(reply.content ? reply.content : "",
		    job->num_questions, order, err, sizeof err) == 0) {
			*flags = attempt ? JOB_DONE_REASKED : 0;
			rc = 0;
		} else {
			review_reask(msgs, reply.content ? reply.content : "",
			    job->num_questions, err);
			e->kind = JOB_ERR_PARSE;
			snprintf(e->msg, sizeof e->msg, "invalid ranking: %s",
			    err);
			if (attempt == 0)
				worker_step("invalid ranking (%s); asking again",
				    err);
		}
		llm_reply_clear(&reply);
	}
	json_object_put(msgs);
	return rc;
}

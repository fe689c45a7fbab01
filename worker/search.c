/*
 * search_web: one query to the configured backend (SearXNG's JSON API or
 * the Brave Search API), then every result's page fetched in parallel,
 * each turned into a capped plain-text extract.  heavyd-egress makes the
 * requests: it builds the backend's URL and adds its key, and it fences
 * the pages (http and https only, redirects too, at most 3 redirects, no
 * proxy, no loopback, private, link-local or otherwise internal address
 * unless the operator allows it: egress_fence.c).  Here: the size cap,
 * the search's deadline, and the text.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker.h"

#define SEARCH_MAX_REDIRS	3L
#define SEARCH_CONNECT_MS	10000
#define SEARCH_SNIPPET_BYTES	1024
#define SEARCH_TITLE_BYTES	300


/* ---- answers ---- */

/* Why a fetch has no usable body, in words for the model. */
static void
search_fetch_error(const struct egress_resp *f, size_t max, char *out,
    size_t len)
{
	switch (f->result) {
	case EGRESS_REFUSED:
		snprintf(out, len, "refused: the page's address %s is "
		    "loopback, private or link-local", f->error);
		break;
	case EGRESS_OVER:
		snprintf(out, len, "larger than %zu bytes", max);
		break;
	case EGRESS_REDIRECTS:
		snprintf(out, len, "more than %ld redirects", SEARCH_MAX_REDIRS);
		break;
	case 0:
	case EGRESS_TIMEOUT:
		snprintf(out, len, "no answer within the search's time limit");
		break;
	case EGRESS_OK:
		snprintf(out, len, "HTTP %u", f->status);
		break;
	default:
		snprintf(out, len, "%s", f->error);
	}
}

static bool
search_fetch_ok(const struct egress_resp *f)
{
	return f->result == EGRESS_OK && f->status / 100 == 2;
}

/* A request with the search's limits, sent by heavyd-egress. */
static void
search_req(struct egress_req *q, uint32_t kind, const char *target,
    int64_t deadline, size_t max)
{
	int64_t	left = deadline - now_ms();

	memset(q, 0, sizeof *q);
	q->kind = kind;
	q->target = (char *)target;
	q->body = "";
	q->timeout_ms = (uint32_t)(left > 1 ? left : 1);
	q->connect_ms = (uint32_t)(left < SEARCH_CONNECT_MS ?
	    (left > 1 ? left : 1) : SEARCH_CONNECT_MS);
	q->max_body = max;
}

/* ---- the backend ---- */

/* The backend's answer, in f; -1 with a message in err.  egress builds
 * its URL and adds its key: neither is the worker's to choose or see. */
static int
search_ask(const struct job *job, const char *query, unsigned n,
    int64_t deadline, struct egress_resp *f, char *err, size_t errlen)
{
	struct egress_req	q;

	search_req(&q, EGRESS_SEARCH, query, deadline, job->max_page_bytes);
	q.count = n;
	if (egress_calls(&q, f, 1, deadline, err, errlen) == -1)
		return -1;
	if (search_fetch_ok(f))
		return 0;
	search_fetch_error(f, job->max_page_bytes, err, errlen);
	return -1;
}

static const char *
search_field(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/*
 * The results in a backend's JSON: SearXNG's {"results": [{title, url,
 * content}]} or Brave's {"web": {"results": [{title, url, description}]}}.
 * Keeps at most max, and only those with an http(s) URL.
 */
int
search_parse(uint32_t backend, const char *body, size_t len, unsigned max,
    struct search_result **out, unsigned *n, char *err, size_t errlen)
{
	struct json_tokener	*tok = json_tokener_new();
	struct json_object	*root, *list, *r;
	const char		*url, *snip;
	size_t			 whole;

	*out = NULL;
	*n = 0;
	root = len > INT32_MAX ? NULL : json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	list = backend == SEARCH_BACKEND_BRAVE ? json_object_object_get(
	    json_object_object_get(root, "web"), "results") :
	    json_object_object_get(root, "results");
	if (!json_object_is_type(list, json_type_array)) {
		snprintf(err, errlen, "the search backend's answer is not %s",
		    root == NULL ? "JSON" : "a list of results");
		json_object_put(root);
		return -1;
	}
	*out = xcalloc(max, sizeof **out);
	for (size_t i = 0; i < json_object_array_length(list) && *n < max; i++) {
		r = json_object_array_get_idx(list, i);
		url = search_field(r, "url");
		if (url == NULL || (strncasecmp(url, "http://", 7) != 0 &&
		    strncasecmp(url, "https://", 8) != 0) ||
		    !text_utf8(url, strlen(url), &whole) || whole != strlen(url))
			continue;
		snip = search_field(r, backend == SEARCH_BACKEND_BRAVE ?
		    "description" : "content");
		(*out)[*n].url = xstrdup(url);
		(*out)[*n].title = xstrdup(search_field(r, "title") ?: "");
		(*out)[*n].snippet = xstrdup(snip ? snip : "");
		(*n)++;
	}
	json_object_put(root);
	return 0;
}

void
search_results_free(struct search_result *rs, unsigned n)
{
	for (unsigned i = 0; rs != NULL && i < n; i++) {
		free(rs[i].title);
		free(rs[i].url);
		free(rs[i].snippet);
	}
	free(rs);
}

/* ---- pages ---- */

/* The charset parameter of a Content-Type, into cs; NULL if none. */
static const char *
search_charset(const char *type, char *cs, size_t len)
{
	const char	*p = type ? strcasestr(type, "charset=") : NULL;
	size_t		 n;

	if (p == NULL)
		return NULL;
	p += 8;
	p += *p == '"';
	n = strcspn(p, "\"; \t");
	if (n == 0 || n >= len)
		return NULL;
	snprintf(cs, len, "%.*s", (int)n, p);
	return cs;
}

/* A fetched page as text: HTML parsed, plain text checked, else named. */
static void
search_page_text(const struct job *job, struct egress_resp *f,
    struct buf *out)
{
	const char	*type = f->content_type[0] ? f->content_type : NULL, *cs;
	char		 csbuf[64];
	size_t		 whole, n;

	cs = search_charset(type, csbuf, sizeof csbuf);
	if (type == NULL || strncasecmp(type, "text/html", 9) == 0 ||
	    strncasecmp(type, "application/xhtml", 17) == 0) {
		switch (html_to_text(f->body, f->body_len, cs,
		    job->max_extract_bytes, out)) {
		case 1:
			buf_addstr(out, " [extract cut]");
			break;
		case -1:
			buf_addstr(out, "(the page could not be parsed)");
			break;
		}
	} else if (strncasecmp(type, "text/plain", 10) == 0 &&
	    text_utf8(f->body, f->body_len, &whole)) {
		n = text_fit(f->body, whole, job->max_extract_bytes);
		buf_add(out, f->body, n);
		if (n < f->body_len)
			buf_addstr(out, " [extract cut]");
	} else
		buf_printf(out, "(not a text page: %.64s)", type);
}

/* Short text from the backend (it may hold markup or entities) as text. */
static void
search_clean(const char *s, size_t max, struct buf *out)
{
	if (s[0] != '\0' && html_to_text(s, strlen(s), NULL, max, out) == 1)
		buf_addstr(out, "...");
}

static void
search_format(const struct job *job, const char *query,
    struct search_result *rs, struct egress_resp *fs, unsigned n,
    struct buf *out)
{
	struct buf	one;
	char		why[256];

	buf_printf(out, "Search results for \"%.200s\" (%u):\n", query, n);
	for (unsigned i = 0; i < n; i++) {
		buf_init(&one, 0);
		buf_printf(&one, "\n%u. ", i + 1);
		search_clean(rs[i].title, SEARCH_TITLE_BYTES, &one);
		buf_printf(&one, "\nURL: %s\nSnippet: ", rs[i].url);
		search_clean(rs[i].snippet, SEARCH_SNIPPET_BYTES, &one);
		buf_addstr(&one, "\nPage: ");
		if (search_fetch_ok(&fs[i]))
			search_page_text(job, &fs[i], &one);
		else {
			search_fetch_error(&fs[i], job->max_page_bytes, why,
			    sizeof why);
			buf_printf(&one, "(not fetched: %s)", why);
		}
		buf_addstr(&one, "\n");
		if (text_add_capped(out, one.data, one.len)) {
			buf_printf(out, "\n[search_web: cut at the tool output "
			    "cap of %zu bytes]", out->max);
			i = n;
		}
		buf_free(&one);
	}
}

/* Every result's page, fetched in parallel within the deadline. */
static struct egress_resp *
search_pages(const struct job *job, struct search_result *rs, unsigned n,
    int64_t deadline)
{
	struct egress_req	*qs = xcalloc(n, sizeof *qs);
	struct egress_resp	*fs = xcalloc(n, sizeof *fs);
	char			 err[400];

	for (unsigned i = 0; i < n; i++)
		search_req(&qs[i], EGRESS_PAGE, rs[i].url, deadline,
		    job->max_page_bytes);
	if (egress_calls(qs, fs, n, deadline, err, sizeof err) == -1)
		for (unsigned i = 0; i < n; i++) {
			fs[i].result = EGRESS_TRANSPORT;
			fs[i].error = xstrdup(err);
		}
	free(qs);
	return fs;
}

/* search_web: -1 with an error in out when there is nothing to show. */
int
search_web(const struct job *job, int64_t deadline, const char *query,
    unsigned want, struct buf *out)
{
	struct search_result	*rs;
	struct egress_resp	 api, *fs;
	unsigned		 n, max = job->search_max_results;
	char			 err[256];

	if (job->search_timeout_ms > 0 &&
	    now_ms() + job->search_timeout_ms < deadline)
		deadline = now_ms() + job->search_timeout_ms;
	max = max == 0 || max > 20 ? 20 : max;
	if (want == 0 || want > max)
		want = max;
	memset(&api, 0, sizeof api);
	if (search_ask(job, query, want, deadline, &api, err, sizeof err) == -1 ||
	    search_parse(job->search_backend, api.body ? api.body : "",
	    api.body_len, want, &rs, &n, err, sizeof err) == -1) {
		egress_resp_clear(&api);
		buf_printf(out, "error: search failed: %s", err);
		return -1;
	}
	egress_resp_clear(&api);
	if (n == 0) {
		free(rs);
		buf_printf(out, "No results for \"%.200s\".", query);
		return 0;
	}
	fs = search_pages(job, rs, n, deadline);
	search_format(job, query, rs, fs, n, out);
	for (unsigned i = 0; i < n; i++)
		egress_resp_clear(&fs[i]);
	free(fs);
	search_results_free(rs, n);
	return 0;
}

/*
 * One worker request as a libcurl easy handle, in heavyd-egress.  What a
 * worker may ask is narrow: a chat completion at its task's base_url, a
 * query to its task's search backend, or a result page.  The URL of the
 * first two is built here from what heavyd attached, so a key goes to its
 * own upstream and nowhere else, whatever a worker writes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker.h"
#include "egress.h"

#define EGRESS_MAX_REDIRS	3L
#define EGRESS_DEFAULT_MS	600000	/* a request that names no time */

static size_t
egress_write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct egress_sink	*k = arg;

	if (buf_add(&k->body, p, size * n) == -1) {
		k->over = true;
		return 0;	/* fails the transfer */
	}
	return size * n;
}

/* Keeps the value of a header that matters, trimmed and clean. */
static void
egress_header_value(const char *line, size_t len, size_t skip, char *out)
{
	size_t	i = skip, n = 0;

	while (i < len && isspace((unsigned char)line[i]))
		i++;
	while (i < len && line[i] != '\r' && line[i] != '\n' &&
	    n < EGRESS_MAX_HEADER - 1)
		out[n++] = iscntrl((unsigned char)line[i]) ? ' ' : line[i++];
	out[n] = '\0';
}

static size_t
egress_header_cb(char *p, size_t size, size_t n, void *arg)
{
	struct egress_sink	*k = arg;
	size_t			 len = size * n;
	const char		*sp;

	/* A final status line (not 100 Continue) is the first byte, for
	 * hedging. */
	if (len > 5 && strncmp(p, "HTTP/", 5) == 0 &&
	    (sp = memchr(p, ' ', len)) != NULL && sp + 1 < p + len &&
	    sp[1] != '1')
		k->started = true;
	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
		egress_header_value(p, len, 12, k->retry_after);
	else if (len > 18 && strncasecmp(p, "X-RateLimit-Reset:", 18) == 0)
		egress_header_value(p, len, 18, k->reset);
	else if (len > 22 && strncasecmp(p, "X-RateLimit-Remaining:", 22) == 0)
		egress_header_value(p, len, 22, k->remaining);
	else if (len > 31 && strncasecmp(p, "x-ratelimit-remaining-requests:",
	    31) == 0)
		egress_header_value(p, len, 31, k->remaining);
	else if (len > 27 && strncasecmp(p, "x-ratelimit-reset-requests:",
	    27) == 0)
		egress_header_value(p, len, 27, k->reset_requests);
	return len;
}

static char *
egress_trimmed(const char *url)
{
	size_t	len = strlen(url);

	while (len > 0 && url[len - 1] == '/')
		len--;
	return xstrndup(url, len);
}

static bool
egress_http_url(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 ||
	    strncasecmp(url, "https://", 8) == 0;
}

/* The chat completion: its URL and key are the task's, not the worker's. */
static int
egress_llm(CURL *c, const struct egress_attach *a,
    const struct egress_config *cfg, const struct egress_req *q,
    struct curl_slist **h, char **url, char *why, size_t whylen)
{
	char	*base, *auth;

	if (a->base_url[0] == '\0') {
		snprintf(why, whylen, "no LLM endpoint for this worker");
		return -1;
	}
	base = egress_trimmed(a->base_url);
	*url = xasprintf("%s/chat/completions", base);
	free(base);
	*h = curl_slist_append(*h, "Content-Type: application/json");
	if (cfg->api_key[0] != '\0') {
		auth = xasprintf("Authorization: Bearer %s", cfg->api_key);
		*h = curl_slist_append(*h, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	*h = curl_slist_append(*h, "X-Title: heavyd");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)q->body_len);
	return 0;
}

/* The search backend: SearXNG's JSON API or Brave's, with its key. */
static int
egress_search(CURL *c, const struct egress_attach *a,
    const struct egress_config *cfg, const struct egress_req *q,
    struct curl_slist **h, char **url, char *why, size_t whylen)
{
	char	*base, *esc, *token;

	if (a->search_backend == SEARCH_BACKEND_NONE || a->search_url[0] == '\0') {
		snprintf(why, whylen, "no search backend for this worker");
		return -1;
	}
	base = egress_trimmed(a->search_url);
	esc = curl_easy_escape(c, q->target, 0);
	if (a->search_backend == SEARCH_BACKEND_BRAVE)
		*url = xasprintf("%s?q=%s&count=%u", base, esc, q->count);
	else
		*url = xasprintf("%s/search?q=%s&format=json", base, esc);
	curl_free(esc);
	free(base);
	*h = curl_slist_append(*h, "Accept: application/json");
	if (a->search_backend == SEARCH_BACKEND_BRAVE) {
		token = xasprintf("X-Subscription-Token: %s",
		    cfg->search_api_key);
		*h = curl_slist_append(*h, token);
		explicit_bzero(token, strlen(token));
		free(token);
	}
	return 0;
}

/* A result page: anywhere on the web, behind the fence. */
static int
egress_page(CURL *c, const struct egress_attach *a,
    const struct egress_req *q, struct egress_fence *f, char **url,
    char *why, size_t whylen)
{
	if (a->search_backend == SEARCH_BACKEND_NONE) {
		snprintf(why, whylen, "no search backend for this worker");
		return -1;
	}
	if (!egress_http_url(q->target)) {
		snprintf(why, whylen, "not an http(s) URL");
		return -1;
	}
	*url = xstrdup(q->target);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, EGRESS_MAX_REDIRS);
	f->allow_private = a->allow_private != 0;
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, egress_opensocket);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, f);
	/*
	 * The fence sees only new connections: a page must not ride on a
	 * pooled one to the LLM or the search backend (loopback, private),
	 * nor leave its own for a request fenced otherwise.
	 */
	curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
	return 0;
}

/* What every request has: limits, callbacks, no proxy for pages. */
static void
egress_common(CURL *c, const struct egress_attach *a,
    const struct egress_config *cfg, const struct egress_req *q,
    struct egress_sink *k)
{
	uint64_t	max = cfg->max_body;

	if (q->max_body > 0 && q->max_body < max)
		max = q->max_body;
	buf_init(&k->body, (size_t)max);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	/* ca_file verifies the configured endpoints; pages, the system's. */
	if (egress_ca != NULL && q->kind != EGRESS_PAGE)
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, egress_ca);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(q->timeout_ms > 0 ?
	    q->timeout_ms : EGRESS_DEFAULT_MS));
	if (q->connect_ms > 0)
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
		    (long)q->connect_ms);
	/* A stalled connection (no byte for stall_s) is cut. */
	if (q->stall_s > 0) {
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)q->stall_s);
	}
	if (q->kind != EGRESS_LLM) {
		curl_easy_setopt(c, CURLOPT_PROXY, "");
		curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
		curl_easy_setopt(c, CURLOPT_USERAGENT, a->user_agent);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, egress_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, egress_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
}

int
egress_setup(CURL *c, const struct egress_attach *a,
    const struct egress_config *cfg, const struct egress_req *q,
    struct egress_sink *k, struct egress_fence *f, struct curl_slist **h,
    char **url, char *why, size_t whylen)
{
	int	rc;

	egress_common(c, a, cfg, q, k);
	switch (q->kind) {
	case EGRESS_LLM:
		rc = egress_llm(c, a, cfg, q, h, url, why, whylen);
		break;
	case EGRESS_SEARCH:
		rc = egress_search(c, a, cfg, q, h, url, why, whylen);
		break;
	default:
		rc = egress_page(c, a, q, f, url, why, whylen);
		break;
	}
	if (rc == -1)
		return -1;
	curl_easy_setopt(c, CURLOPT_URL, *url);
	if (*h != NULL)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, *h);
	return 0;
}

/* How a transfer ended, in the words workers know. */
enum egress_result
egress_classify(CURLcode rc, bool over, bool refused)
{
	if (refused)
		return EGRESS_REFUSED;
	if (over)
		return EGRESS_OVER;
	switch (rc) {
	case CURLE_OK:
		return EGRESS_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return EGRESS_TIMEOUT;
	case CURLE_PARTIAL_FILE:
		return EGRESS_PARTIAL;
	case CURLE_TOO_MANY_REDIRECTS:
		return EGRESS_REDIRECTS;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return EGRESS_CONNECT;
	default:
		return EGRESS_TRANSPORT;
	}
}

/*
 * A body with every secret egress holds masked (common/secret.c): a
 * provider that echoes the key gives it to no worker.  Text goes through
 * secret_redact; a body with NUL bytes is masked in place, byte for byte.
 */
char *
egress_redact(const char *body, size_t *len)
{
	char	*out = xmalloc(*len + 1);

	memcpy(out, body, *len);
	out[*len] = '\0';
	if (memchr(out, '\0', *len) == NULL) {
		secret_redact(&out);
		*len = strlen(out);
		return out;
	}
	secret_mask_bytes(out, *len);
	return out;
}

void
egress_log_format(void)
{
	enum log_format	 format;
	const char	*v = getenv(LOG_FORMAT_ENV);

	if (v != NULL && log_format_parse(v, &format) == 0)
		log_set_format(format);
}

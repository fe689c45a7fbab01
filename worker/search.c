/*
 * search_web: one query to the configured backend (SearXNG's JSON API or
 * the Brave Search API), then every result's page fetched in parallel
 * over one curl multi handle and turned into a capped plain-text extract.
 *
 * Pages come from anywhere on the web, so their fetches are fenced: http
 * and https only (redirects too), at most 3 redirects, a size cap, the
 * search's deadline, no proxy, and no connection to a loopback, private,
 * link-local or otherwise internal address, checked on the address curl
 * is about to connect to (after DNS, so a name that resolves inward is
 * caught) unless the operator allows it.  The search backend itself is
 * the operator's choice and is not fenced; its key goes only to it, and
 * the LLM key never reaches this file.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "worker.h"

#define SEARCH_MAX_REDIRS	3L
#define SEARCH_CONNECT_MS	10000
#define SEARCH_SNIPPET_BYTES	1024
#define SEARCH_TITLE_BYTES	300

struct fetch {
	CURL		*easy;
	struct buf	 body;
	bool		 over;		/* the body passed its cap */
	bool		 allow_private;
	char		 refused[INET6_ADDRSTRLEN];	/* an address we refused */
	CURLcode	 rc;
	bool		 done;
};

/* ---- addresses ---- */

struct prefix {
	int		family;
	uint8_t		addr[16];
	unsigned	bits;
};

/* Where a page may not be: not public, or not really an address at all. */
static const struct prefix search_inward[] = {
	{ AF_INET, { 0 }, 8 },				/* "this network" */
	{ AF_INET, { 10 }, 8 },
	{ AF_INET, { 100, 64 }, 10 },			/* carrier-grade NAT */
	{ AF_INET, { 127 }, 8 },
	{ AF_INET, { 169, 254 }, 16 },
	{ AF_INET, { 172, 16 }, 12 },
	{ AF_INET, { 192, 0, 0 }, 24 },
	{ AF_INET, { 192, 168 }, 16 },
	{ AF_INET, { 198, 18 }, 15 },			/* benchmarking */
	{ AF_INET, { 224 }, 3 },			/* multicast, reserved */
	{ AF_INET6, { 0 }, 127 },			/* :: and ::1 */
	{ AF_INET6, { 0xfc }, 7 },			/* unique local */
	{ AF_INET6, { 0xfe, 0x80 }, 10 },		/* link-local */
	{ AF_INET6, { 0xfe, 0xc0 }, 10 },		/* site-local */
	{ AF_INET6, { 0xff }, 8 },			/* multicast */
};

static bool
search_prefix_has(const struct prefix *p, const uint8_t *a)
{
	unsigned	whole = p->bits / 8, rest = p->bits % 8;

	if (memcmp(p->addr, a, whole) != 0)
		return false;
	return rest == 0 ||
	    ((p->addr[whole] ^ a[whole]) & (0xff << (8 - rest))) == 0;
}

static bool
search_inward4(const uint8_t *a)
{
	for (size_t i = 0; i < sizeof search_inward / sizeof search_inward[0];
	    i++)
		if (search_inward[i].family == AF_INET &&
		    search_prefix_has(&search_inward[i], a))
			return true;
	return false;
}

/* Whether a connection to sa would reach inward: loopback, private,
 * link-local, multicast, or an IPv4 one of those inside IPv6. */
bool
search_addr_inward(const struct sockaddr *sa)
{
	static const uint8_t	mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const uint8_t	nat64[12] = { 0, 0x64, 0xff, 0x9b };
	const uint8_t		*a;

	if (sa->sa_family == AF_INET)
		return search_inward4((const uint8_t *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr);
	if (sa->sa_family != AF_INET6)
		return true;
	a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return search_inward4(a + 12);
	if (a[0] == 0x20 && a[1] == 0x02)		/* 6to4 */
		return search_inward4(a + 2);
	for (size_t i = 0; i < sizeof search_inward / sizeof search_inward[0];
	    i++)
		if (search_inward[i].family == AF_INET6 &&
		    search_prefix_has(&search_inward[i], a))
			return true;
	return false;
}

/* curl asks us for each socket it would connect: the fence is here. */
static curl_socket_t
search_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct fetch	*f = arg;
	const void	*in;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	if (!f->allow_private && search_addr_inward(&a->addr)) {
		in = a->family == AF_INET6 ?
		    (const void *)&((struct sockaddr_in6 *)(void *)
		    &a->addr)->sin6_addr :
		    (const void *)&((struct sockaddr_in *)(void *)
		    &a->addr)->sin_addr;
		if (inet_ntop(a->family, in, f->refused, sizeof f->refused) ==
		    NULL)
			snprintf(f->refused, sizeof f->refused, "?");
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- transfers ---- */

static size_t
search_write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct fetch	*f = arg;

	if (buf_add(&f->body, p, size * n) == -1) {
		f->over = true;
		return 0;
	}
	return size * n;
}

/* A GET with our limits; the caller adds what is particular to it. */
static CURL *
search_easy(struct fetch *f, const struct job *job, const char *url,
    int64_t deadline, size_t max)
{
	int64_t	left = deadline - now_ms();
	CURL	*c;

	if ((c = curl_easy_init()) == NULL)
		fatalx("curl_easy_init");
	buf_init(&f->body, max);
	f->easy = c;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(c, CURLOPT_USERAGENT, job->search_user_agent);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left : 1));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(left < SEARCH_CONNECT_MS ? (left > 1 ? left : 1) :
	    SEARCH_CONNECT_MS));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, search_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(c, CURLOPT_PRIVATE, f);
	return c;
}

static void
search_fetch_clear(struct fetch *f)
{
	if (f->easy != NULL)
		curl_easy_cleanup(f->easy);
	buf_free(&f->body);
	memset(f, 0, sizeof *f);
}

/* Why a fetch has no usable body, in words for the model. */
static void
search_fetch_error(const struct fetch *f, size_t max, char *out, size_t len)
{
	long	status = 0;

	if (f->refused[0] != '\0')
		snprintf(out, len, "refused: the page's address %s is "
		    "loopback, private or link-local", f->refused);
	else if (f->over)
		snprintf(out, len, "larger than %zu bytes", max);
	else if (f->rc == CURLE_TOO_MANY_REDIRECTS)
		snprintf(out, len, "more than %ld redirects", SEARCH_MAX_REDIRS);
	else if (f->rc == CURLE_OPERATION_TIMEDOUT || !f->done)
		snprintf(out, len, "no answer within the search's time limit");
	else if (f->rc != CURLE_OK)
		snprintf(out, len, "%s", curl_easy_strerror(f->rc));
	else {
		curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
		snprintf(out, len, "HTTP %ld", status);
	}
}

static bool
search_fetch_ok(const struct fetch *f)
{
	long	status = 0;

	if (!f->done || f->rc != CURLE_OK)
		return false;
	curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
	return status / 100 == 2;
}

/* How long to wait for activity: until the deadline, 200 ms at most. */
static int
search_wait_ms(int64_t deadline)
{
	int64_t	left = deadline - now_ms();

	return left <= 0 ? 0 : left > 200 ? 200 : (int)left;
}

/* Runs every transfer at once until all are done or the deadline. */
static void
search_run(struct fetch *fs, size_t n, int64_t deadline)
{
	CURLM		*m = curl_multi_init();
	CURLMsg		*msg;
	struct fetch	*f;
	int		 running = 1, left;

	for (size_t i = 0; i < n; i++)
		if (fs[i].easy != NULL)
			curl_multi_add_handle(m, fs[i].easy);
	while (running > 0 && now_ms() < deadline) {
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &f);
			f->rc = msg->data.result;
			f->done = true;
		}
		if (running > 0)
			curl_multi_poll(m, NULL, 0, search_wait_ms(deadline),
			    NULL);
	}
	for (size_t i = 0; i < n; i++)
		if (fs[i].easy != NULL)
			curl_multi_remove_handle(m, fs[i].easy);
	curl_multi_cleanup(m);
}

/* ---- the backend ---- */

static char *
search_backend_url(const struct job *job, CURL *c, const char *query,
    unsigned n)
{
	char	*q = curl_easy_escape(c, query, 0), *url;
	size_t	 len = strlen(job->search_url);

	while (len > 0 && job->search_url[len - 1] == '/')
		len--;
	if (job->search_backend == SEARCH_BACKEND_BRAVE)
		url = xasprintf("%.*s?q=%s&count=%u", (int)len, job->search_url,
		    q, n);
	else
		url = xasprintf("%.*s/search?q=%s&format=json", (int)len,
		    job->search_url, q);
	curl_free(q);
	return url;
}

/* The backend's answer, body in f; -1 with a message in err. */
static int
search_ask(const struct job *job, const char *query, unsigned n,
    int64_t deadline, struct fetch *f, char *err, size_t errlen)
{
	struct curl_slist	*h = NULL;
	char			*url, *token = NULL;
	CURL			*c;

	c = search_easy(f, job, "", deadline, job->max_page_bytes);
	url = search_backend_url(job, c, query, n);
	curl_easy_setopt(c, CURLOPT_URL, url);
	/* No redirects: a header with the key must not follow one. */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	h = curl_slist_append(h, "Accept: application/json");
	if (job->search_backend == SEARCH_BACKEND_BRAVE) {
		token = xasprintf("X-Subscription-Token: %s",
		    job->search_api_key);
		h = curl_slist_append(h, token);
		explicit_bzero(token, strlen(token));
		free(token);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	f->allow_private = true;	/* the operator's own backend */
	search_run(f, 1, deadline);
	for (struct curl_slist *l = h; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));	/* the key */
	curl_slist_free_all(h);		/* the transfer is over */
	free(url);
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
search_page_text(const struct job *job, struct fetch *f, struct buf *out)
{
	const char	*type = NULL, *cs;
	char		 csbuf[64];
	size_t		 whole, n;

	curl_easy_getinfo(f->easy, CURLINFO_CONTENT_TYPE, &type);
	cs = search_charset(type, csbuf, sizeof csbuf);
	if (type == NULL || strncasecmp(type, "text/html", 9) == 0 ||
	    strncasecmp(type, "application/xhtml", 17) == 0) {
		switch (html_to_text(buf_cstr(&f->body), f->body.len, cs,
		    job->max_extract_bytes, out)) {
		case 1:
			buf_addstr(out, " [extract cut]");
			break;
		case -1:
			buf_addstr(out, "(the page could not be parsed)");
			break;
		}
	} else if (strncasecmp(type, "text/plain", 10) == 0 &&
	    text_utf8(buf_cstr(&f->body), f->body.len, &whole)) {
		n = text_fit(buf_cstr(&f->body), whole, job->max_extract_bytes);
		buf_add(out, buf_cstr(&f->body), n);
		if (n < f->body.len)
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
    struct search_result *rs, struct fetch *fs, unsigned n, struct buf *out)
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
static struct fetch *
search_pages(const struct job *job, struct search_result *rs, unsigned n,
    int64_t deadline)
{
	struct fetch	*fs = xcalloc(n, sizeof *fs);
	CURL		*c;

	for (unsigned i = 0; i < n; i++) {
		c = search_easy(&fs[i], job, rs[i].url, deadline,
		    job->max_page_bytes);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS, SEARCH_MAX_REDIRS);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION,
		    search_opensocket);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &fs[i]);
		fs[i].allow_private = job->search_allow_private != 0;
	}
	search_run(fs, n, deadline);
	return fs;
}

/* search_web: -1 with an error in out when there is nothing to show. */
int
search_web(const struct job *job, int64_t deadline, const char *query,
    unsigned want, struct buf *out)
{
	struct search_result	*rs;
	struct fetch		 api, *fs;
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
	    search_parse(job->search_backend, buf_cstr(&api.body), api.body.len,
	    want, &rs, &n, err, sizeof err) == -1) {
		search_fetch_clear(&api);
		buf_printf(out, "error: search failed: %s", err);
		return -1;
	}
	search_fetch_clear(&api);
	if (n == 0) {
		free(rs);
		buf_printf(out, "No results for \"%.200s\".", query);
		return 0;
	}
	fs = search_pages(job, rs, n, deadline);
	search_format(job, query, rs, fs, n, out);
	for (unsigned i = 0; i < n; i++)
		search_fetch_clear(&fs[i]);
	free(fs);
	search_results_free(rs, n);
	return 0;
}

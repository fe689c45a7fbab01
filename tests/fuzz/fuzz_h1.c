/*
 * h1.c's request parser (h1_parse), on its own: a head parsed in place,
 * and what it says held to account.  Whatever it takes, written out again
 * (request line, headers) is taken again to the same request; a prefix of
 * the input that is a whole head is the same head in the whole input.
 * The connection around it (bodies, pipelining, replies) is driven by
 * fuzz_http, through a socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "../../supervisor/supervisor.h"
#include "../../supervisor/h1.h"

static const struct h1_limits	fz_lim = { .max_header_bytes = 2048,
    .max_headers = 24, .max_body_bytes = 1 << 20 };

static const char *fz_methods[] = { "GET", "POST", "DELETE", "PUT", "PATCH",
    "HEAD", "OPTIONS", "X" };

/* Parses a copy of len bytes of data; the copy is the caller's to free. */
static int
fz_parse(const uint8_t *data, size_t len, struct h1_head *h, size_t *used,
    char **copy)
{
	const char	*why;
	int		 rc;

	*copy = malloc(len + 1);
	if (*copy == NULL)
		abort();
	memcpy(*copy, data, len);
	rc = h1_parse(*copy, len, &fz_lim, h, used, &why);
	if (rc != H1_PARSE_MORE && rc != 1 && (why == NULL || rc < 400 ||
	    rc > 599))
		abort();
	if (rc == 1 && (*used > len || h->path == NULL ||
	    (h->path[0] != '/' && h->path[0] != '*') || h->minor > 1 ||
	    h->nhdrs > fz_lim.max_headers))
		abort();
	return rc;
}

/* The head written out again: the same request. */
static void
fz_again(const struct h1_head *h)
{
	struct h1_head	 again = { 0 };
	char		*s, *copy;
	size_t		 len = 0, cap = 64 + strlen(h->path), used;

	for (int i = 0; i < h->nhdrs; i++)
		cap += strlen(h->hdrs[i].name) + strlen(h->hdrs[i].value) + 4;
	if ((s = malloc(cap)) == NULL)
		abort();
	len += (size_t)snprintf(s, cap, "%s %s HTTP/1.%d\r\n",
	    fz_methods[h->method], h->path, h->minor);
	for (int i = 0; i < h->nhdrs; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s: %s\r\n",
		    h->hdrs[i].name, h->hdrs[i].value);
	len += (size_t)snprintf(s + len, cap - len, "\r\n");
	if (len < fz_lim.max_header_bytes &&
	    fz_parse((uint8_t *)s, len, &again, &used, &copy) != 1)
		abort();
	if (len < fz_lim.max_header_bytes && (used != len ||
	    again.method != h->method || strcmp(again.path, h->path) != 0 ||
	    again.nhdrs != h->nhdrs || again.clen != h->clen ||
	    again.keepalive != h->keepalive))
		abort();
	for (int i = 0; len < fz_lim.max_header_bytes && i < h->nhdrs; i++)
		if (strcmp(again.hdrs[i].name, h->hdrs[i].name) != 0 ||
		    strcmp(again.hdrs[i].value, h->hdrs[i].value) != 0 ||
		    again.hdrs[i].nlen != strlen(h->hdrs[i].name))
			abort();
	if (len < fz_lim.max_header_bytes)
		free(copy);
	h1_head_clear(&again);
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct h1_head	 whole = { 0 }, part = { 0 };
	size_t		 used, pused, k;
	char		*copy, *pcopy;
	int		 rc, prc;

	rc = fz_parse(data, len, &whole, &used, &copy);
	if (rc == 1)
		fz_again(&whole);
	k = len > 0 ? data[0] % (len + 1) : 0;	/* as if it came in two */
	prc = fz_parse(data, k, &part, &pused, &pcopy);
	if (prc == 1 && (rc != 1 || pused != used || part.nhdrs != whole.nhdrs))
		abort();
	free(pcopy);
	free(copy);
	h1_head_clear(&part);
	h1_head_clear(&whole);
	return 0;
}

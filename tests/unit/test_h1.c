/* h1.c's request parser: what it takes, what it refuses, with which status. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/h1.h"

static const struct h1_limits	lim = { .max_header_bytes = 256,
    .max_headers = 4, .max_body_bytes = 100 };

/* Parses a copy of s (kept in buf): the status, 1, or 0 for more. */
static int
parse(const char *s, char *buf, struct h1_head *h, size_t *used)
{
	const char	*why;

	snprintf(buf, 1024, "%s", s);
	return h1_parse(buf, strlen(buf), &lim, h, used, &why);
}

static const char *
header(const struct h1_head *h, const char *name)
{
	for (int i = 0; i < h->nhdrs; i++)
		if (strcasecmp(h->hdrs[i].name, name) == 0)
			return h->hdrs[i].value;
	return NULL;
}

Test(h1, a_request_and_what_follows_it)
{
	struct h1_head	h = { 0 };
	char		buf[1024];
	size_t		used;
	const char	*req = "POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\n"
	    "content-length:  2 \r\nAccept:\t*/*\r\n\r\n{}GET / HTTP/1.1\r\n";

	cr_assert_eq(parse(req, buf, &h, &used), 1);
	cr_assert_eq(h.method, H1_POST);
	cr_assert_str_eq(h.path, "/mcp");
	cr_assert_eq(h.minor, 1);
	cr_assert_eq(h.nhdrs, 3);
	cr_assert_eq(h.clen, 2);
	cr_assert(h.keepalive);
	cr_assert_str_eq(header(&h, "Accept"), "*/*");
	cr_assert_str_eq(header(&h, "Content-Length"), "2");
	cr_assert_eq(used, strstr(req, "{}") - req);
	h1_head_clear(&h);
}

Test(h1, a_head_in_pieces_is_not_taken_until_whole)
{
	struct h1_head	h = { 0 };
	char		buf[1024];
	size_t		used;

	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\n", buf, &h, &used),
	    H1_PARSE_MORE);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\n\r", buf, &h, &used),
	    H1_PARSE_MORE);
	cr_assert_eq(parse("\r\nGET / HTTP/1.0\nHost: a\n\n", buf, &h, &used),
	    1);
	cr_assert_eq(h.minor, 0);
	cr_assert(!h.keepalive);
	cr_assert_str_eq(header(&h, "host"), "a");
	h1_head_clear(&h);
}

Test(h1, connection_and_expect)
{
	struct h1_head	h = { 0 };
	char		buf[1024];
	size_t		used;

	cr_assert_eq(parse("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n",
	    buf, &h, &used), 1);
	cr_assert(!h.keepalive);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	    buf, &h, &used), 1);
	cr_assert(h.keepalive);
	cr_assert_eq(parse("PUT http://a:1 HTTP/1.1\r\nExpect: 100-continue\r\n"
	    "\r\n", buf, &h, &used), 1);
	cr_assert(h.expect_continue);
	cr_assert_eq(h.method, H1_PUT);
	cr_assert_str_eq(h.path, "/");
	cr_assert_eq(parse("GET / HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\r\n\r\n",
	    buf, &h, &used), 1, "obs-text in a value");
	cr_assert_str_eq(header(&h, "user-agent"), "caf\xc3\xa9");
	h1_head_clear(&h);
}

Test(h1, refusals_and_their_status)
{
	static const struct { const char *req; int status; } cases[] = {
		{ "GET / HTTP/2.0\r\n\r\n", 400 },
		{ "GET  / HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/1.1 \r\n\r\n", 400 },
		{ "G(T / HTTP/1.1\r\n\r\n", 400 },
		{ "GET nope HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nNo Colon\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n: empty\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nA: a\x01" "b\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
		    "\r\n", 400 },
		{ "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n"
		    "\r\n", 400 },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411 },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
		    "Content-Length: 2\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
		    431 },
	};
	struct h1_head	h = { 0 };
	char		buf[1024], big[600];
	size_t		used;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		cr_expect_eq(parse(cases[i].req, buf, &h, &used),
		    cases[i].status, "%s", cases[i].req);
	memset(big, 'a', sizeof big - 1);	/* no end: past the bound */
	big[sizeof big - 1] = '\0';
	cr_assert_eq(parse(big, buf, &h, &used), 431);
	h1_head_clear(&h);
}

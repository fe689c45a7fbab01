/*
 * search_web's parts: the backends' answers parsed (and hostile ones
 * refused), the addresses a page may not be fetched from, and HTML turned
 * into capped plain text.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <criterion/criterion.h>
#include <string.h>

#include "../../worker/worker.h"
#include "../../worker/egress.h"

static int
parse(uint32_t backend, const char *body, unsigned max,
    struct search_result **rs, unsigned *n, char *err)
{
	return search_parse(backend, body, strlen(body), max, rs, n, err, 256);
}

Test(search, searxng_results)
{
	struct search_result	*rs;
	unsigned		 n;
	char			 err[256];

	cr_assert_eq(parse(SEARCH_BACKEND_SEARXNG, "{\"query\":\"q\",\"results\":["
	    "{\"title\":\"One\",\"url\":\"https://one.example/\",\"content\":\"c1\"},"
	    "{\"title\":\"Bad\",\"url\":\"javascript:alert(1)\",\"content\":\"x\"},"
	    "{\"title\":\"File\",\"url\":\"file:///etc/passwd\"},"
	    "{\"title\":\"NoUrl\"},"
	    "{\"title\":7,\"url\":\"HTTP://two.example/a\"},"
	    "{\"title\":\"Latin\",\"url\":\"http://caf\xe9.example/\"},"
	    "{\"title\":\"Three\",\"url\":\"http://three.example/\"},"
	    "\"not an object\"]}", 3, &rs, &n, err), 0, "%s", err);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(rs[0].title, "One");
	cr_assert_str_eq(rs[0].url, "https://one.example/");
	cr_assert_str_eq(rs[0].snippet, "c1");
	cr_assert_str_eq(rs[1].title, "");
	cr_assert_str_eq(rs[1].url, "HTTP://two.example/a");
	cr_assert_str_eq(rs[1].snippet, "");
	cr_assert_str_eq(rs[2].url, "http://three.example/");
	search_results_free(rs, n);

	cr_assert_eq(parse(SEARCH_BACKEND_SEARXNG, "{\"results\":[{\"url\":"
	    "\"https://a/\"},{\"url\":\"https://b/\"}]}", 1, &rs, &n, err), 0);
	cr_assert_eq(n, 1, "max_results is a cap");
	search_results_free(rs, n);
}

Test(search, brave_results)
{
	struct search_result	*rs;
	unsigned		 n;
	char			 err[256];

	cr_assert_eq(parse(SEARCH_BACKEND_BRAVE, "{\"type\":\"search\",\"web\":"
	    "{\"results\":[{\"title\":\"B\",\"url\":\"https://b.example/\","
	    "\"description\":\"A <strong>bold</strong> claim\"}]}}", 5, &rs,
	    &n, err), 0, "%s", err);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(rs[0].snippet, "A <strong>bold</strong> claim");
	search_results_free(rs, n);
	/* SearXNG's shape is not Brave's. */
	cr_assert_eq(parse(SEARCH_BACKEND_BRAVE, "{\"results\":[]}", 5, &rs, &n,
	    err), -1);
	cr_assert_str_eq(err, "the search backend's answer is not a list of "
	    "results");
}

Test(search, hostile_answers_are_errors)
{
	static const char *bad[] = { "", "<html>rate limited</html>", "[]",
	    "{\"results\":{}}", "{\"results\":\"x\"}", "null",
	    "{\"results\":[" };
	struct search_result	*rs;
	unsigned		 n;
	char			 err[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(parse(SEARCH_BACKEND_SEARXNG, bad[i], 5, &rs, &n,
		    err), -1, "%s", bad[i]);
		cr_assert_null(rs);
		cr_assert_eq(n, 0);
		cr_assert(strncmp(err, "the search backend's answer is not",
		    34) == 0, "%s", err);
	}
	cr_assert_eq(parse(SEARCH_BACKEND_SEARXNG, "{\"results\":[]}", 5, &rs,
	    &n, err), 0);
	cr_assert_eq(n, 0);
	search_results_free(rs, n);
}

static bool
inward(const char *text)
{
	struct sockaddr_in6	a6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in	a4 = { .sin_family = AF_INET };

	if (inet_pton(AF_INET, text, &a4.sin_addr) == 1)
		return egress_addr_inward((struct sockaddr *)&a4);
	cr_assert_eq(inet_pton(AF_INET6, text, &a6.sin6_addr), 1, "%s", text);
	return egress_addr_inward((struct sockaddr *)&a6);
}

Test(search, inward_addresses)
{
	static const char *in[] = { "127.0.0.1", "127.255.0.9", "10.1.2.3",
	    "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
	    "0.0.0.0", "100.64.0.1", "192.0.0.8", "198.18.0.1", "224.0.0.1",
	    "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
	    "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
	    "64:ff9b::a00:1", "2002:7f00:1::1", "2002:c0a8:101::1" };
	static const char *out[] = { "8.8.8.8", "1.1.1.1", "172.32.0.1",
	    "172.15.255.255", "100.128.0.1", "192.169.0.1", "93.184.216.34",
	    "2001:4860:4860::8888", "2606:4700::1111", "::ffff:8.8.8.8",
	    "2002:808:808::1" };

	for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
		cr_assert(inward(in[i]), "%s must be refused", in[i]);
	for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
		cr_assert(!inward(out[i]), "%s must be allowed", out[i]);
}

static char *
text(const char *html, const char *charset, size_t max, int *rc)
{
	struct buf	b;

	buf_init(&b, 0);
	*rc = html_to_text(html, strlen(html), charset, max, &b);
	return buf_release(&b);
}

#define TEXT_EQ(html, want) do {					\
	int	 rc_;							\
	char	*s_ = text(html, NULL, 4096, &rc_);			\
	cr_assert_eq(rc_, 0, "%s", html);				\
	cr_assert_str_eq(s_, want, "%s", html);				\
	free(s_);							\
} while (0)

Test(search, html_to_text)
{
	TEXT_EQ("<html><head><title>T</title><style>p{color:red}</style>"
	    "<script>var x = 1;</script></head><body><p>Hello,\n\t  world"
	    "</p><script type=\"module\">alert(2)</script><noscript>NS"
	    "</noscript><p>Bye</p></body></html>", "Hello, world Bye");
	TEXT_EQ("<p>one</p><p>two</p><div>three<br>four</div>",
	    "one two three four");
	TEXT_EQ("in<b>line</b> <i>words</i>", "inline words");
	TEXT_EQ("Caf&eacute; &amp; cr&#232;me&nbsp;br&ucirc;l&eacute;e",
	    "Caf\xc3\xa9 & cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e");
	TEXT_EQ("<p>unclosed <b>tags <td>everywhere", "unclosed tags everywhere");
	TEXT_EQ("<svg><text>drawn</text></svg><p>real</p>", "real");
	TEXT_EQ("", "");
	TEXT_EQ("<script>only()</script>", "");
}

Test(search, html_charsets)
{
	int	 rc;
	char	*s;

	/* Latin-1, named by HTTP, and then by the page itself. */
	s = text("<p>caf\xe9</p>", "ISO-8859-1", 100, &rc);
	cr_assert_str_eq(s, "caf\xc3\xa9");
	free(s);
	s = text("<html><head><meta charset=\"windows-1252\"></head><body><p>"
	    "\x93quoted\x94</p></body></html>", NULL, 100, &rc);
	cr_assert_str_eq(s, "\xe2\x80\x9cquoted\xe2\x80\x9d");
	free(s);
	/* UTF-8 with no charset anywhere is read as UTF-8. */
	s = text("<p>na\xc3\xafve</p>", NULL, 100, &rc);
	cr_assert_str_eq(s, "na\xc3\xafve");
	free(s);
}

Test(search, html_cap_keeps_whole_characters)
{
	struct buf	b;
	int		rc;
	char		*s;

	buf_init(&b, 0);
	buf_addstr(&b, "<p>");
	for (int i = 0; i < 1000; i++)
		buf_addstr(&b, "\xe2\x82\xac");
	buf_addstr(&b, "</p>");
	s = text(b.data, NULL, 100, &rc);
	cr_assert_eq(rc, 1, "a cut extract says so");
	cr_assert_eq(strlen(s), 99, "33 whole characters of 3 bytes");
	free(s);
	buf_free(&b);
}

Test(search, html_deep_nesting_and_huge_pages)
{
	struct buf	b;
	int		rc;
	char		*s;

	buf_init(&b, 0);
	for (int i = 0; i < 20000; i++)
		buf_addstr(&b, "<div><span>");
	buf_addstr(&b, "deep");
	s = text(b.data, NULL, 4096, &rc);
	cr_assert_neq(rc, -1);
	free(s);
	buf_reset(&b);
	for (int i = 0; i < 100000; i++)
		buf_addstr(&b, "<p>word</p>");
	s = text(b.data, NULL, 4096, &rc);
	cr_assert_eq(rc, 1);
	cr_assert_leq(strlen(s), 4096);
	cr_assert_eq(strncmp(s, "word word word", 14), 0);
	free(s);
	buf_free(&b);
}

/* The search settings and key reach the worker in its job frame. */
Test(search, job_fields_round_trip)
{
	struct job	in = { 0 }, out;
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;

	in.role = ROLE_AGENT;
	in.features = TOOL_NEEDS_WORKSPACE | TOOL_NEEDS_SEARCH;
	in.search_backend = SEARCH_BACKEND_BRAVE;
	in.search_max_results = 7;
	in.search_allow_private = 1;
	in.search_timeout_ms = 20000;
	in.max_read_bytes = 1 << 20;
	in.max_extract_bytes = 4096;
	in.search_url = "https://api.search.brave.com/res/v1/web/search";
	in.search_api_key = "brave-key";
	in.search_user_agent = "ua";
	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	cr_assert_eq(m_close(&b, 1 << 20), 0);
	cr_assert_eq(m_frame_check(b.data, b.len, 1 << 20, &hdr), FRAME_OK);
	m_reader_init(&r, b.data + PROTO_HDR_LEN, hdr.len);
	cr_assert_eq(job_decode(&r, &out), 0);
	cr_assert_eq(m_end(&r), 0);
	cr_assert_eq(out.features, in.features);
	cr_assert_eq(out.search_backend, SEARCH_BACKEND_BRAVE);
	cr_assert_eq(out.search_max_results, 7);
	cr_assert_eq(out.search_timeout_ms, 20000);
	cr_assert_eq(out.max_extract_bytes, 4096);
	cr_assert_null(out.search_api_key, "the key stays with heavyd-egress");
	cr_assert_null(memmem(b.data, b.len, "brave-key", 9),
	    "the search key is not in the MSG_JOB_RUN frame");
	cr_assert_str_eq(out.search_url, in.search_url);
	job_clear(&out);
	buf_free(&b);

	in.search_backend = 9;	/* no such backend: the frame is refused */
	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	m_close(&b, 1 << 20);
	m_frame_check(b.data, b.len, 1 << 20, &hdr);
	m_reader_init(&r, b.data + PROTO_HDR_LEN, hdr.len);
	cr_assert_eq(job_decode(&r, &out), -1);
	buf_free(&b);
}

/*
 * The tokens file's strict parser (common/tokens.c), the sliding windows
 * of auth.c at their edges on a clock of our own, and auth_request: 401
 * with its challenge, the brute-force limit per address, an identity's
 * requests_per_minute, a reload that revokes, and the admission limits;
 * auth.mode oauth through the verifier seam.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"

#define DIGEST_A "d74916763850244c160e560957aa3ea4fe550508ee93a169066603d948b35512"
#define DIGEST_B "6629438f8100659e675c1747d0b524fec6147e702b162bd331d49cb9ff456225"

static int
parse(const char *text, struct tokens *t, char *err, size_t len)
{
	return tokens_parse(text, strlen(text), "tokens", t, err, len);
}

/* The parse error of text, which must fail. */
static const char *
parse_err(const char *text)
{
	static char	err[512];
	struct tokens	t;

	cr_assert_eq(parse(text, &t, err, sizeof err), -1, "%s", text);
	cr_assert_eq(t.n, 0);
	cr_assert_null(t.v);
	return err;
}

Test(tokens, parses_names_digests_limits_comments)
{
	struct tokens	t;
	char		err[512];

	cr_assert_eq(parse("# who may call\n\nalice " DIGEST_A
	    " requests_per_minute=60 usd_per_day=2.5\n  \t\n"
	    "bob.x-1_y\t" DIGEST_B "\tconcurrent_tasks=0", &t, err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(t.n, 2);
	cr_assert_str_eq(t.v[0].name, "alice");
	cr_assert_eq(t.v[0].digest[0], 0xd7);
	cr_assert_eq(t.v[0].digest[31], 0x12);
	cr_assert(t.v[0].lim.set[TOKEN_REQUESTS_PER_MINUTE]);
	cr_assert_eq(t.v[0].lim.v[TOKEN_REQUESTS_PER_MINUTE], 60);
	cr_assert_eq(t.v[0].lim.v[TOKEN_USD_PER_DAY], 2.5);
	cr_assert_not(t.v[0].lim.set[TOKEN_CONCURRENT_TASKS]);
	cr_assert_str_eq(t.v[1].name, "bob.x-1_y");
	cr_assert(t.v[1].lim.set[TOKEN_CONCURRENT_TASKS]);
	cr_assert_eq(t.v[1].lim.v[TOKEN_CONCURRENT_TASKS], 0);
	tokens_free(&t);
}

Test(tokens, errors_name_the_line)
{
	cr_assert_str_eq(parse_err("alice " DIGEST_A "\n\nbob\n"),
	    "tokens:3: bob: expected the token's SHA-256 in 64 lowercase hex "
	    "digits after the name");
	cr_assert(strstr(parse_err("-x " DIGEST_A "\n"), "tokens:1: expected "
	    "a name") != NULL);
	cr_assert(strstr(parse_err("alice " DIGEST_A "\nalice " DIGEST_B),
	    "tokens:2: alice: a second line for this name") != NULL);
	cr_assert(strstr(parse_err("alice " DIGEST_A "\nbob " DIGEST_A),
	    "tokens:2: bob: the same token as alice") != NULL);
	cr_assert(strstr(parse_err("a " DIGEST_A " colour=blue"),
	    "tokens:1: \"colour=blue\": expected KEY=VALUE") != NULL);
	cr_assert(strstr(parse_err("a " DIGEST_A " max_timeout=1 "
	    "max_timeout=2"), "max_timeout: set twice") != NULL);
	cr_assert(strstr(parse_err("a " DIGEST_A " requests_per_minute=0"),
	    "requests_per_minute: expected a whole number from 1 to 100000, "
	    "got \"0\"") != NULL);
	cr_assert(strstr(parse_err("a " DIGEST_A " max_num_agents=17"),
	    "max_num_agents") != NULL);
}

Test(tokens, refuses_odd_bytes_and_forms)
{
	static const char *bad[] = {
		"alice " DIGEST_A "\r\n",		/* CR */
		"alice D74916763850244C160E560957AA3EA4FE550508EE93A169066603D948B35512",
		"alice " DIGEST_A "0",			/* 65 digits */
		"alice d7491676",
		"alice " DIGEST_A " concurrent_tasks=-1",
		"alice " DIGEST_A " concurrent_tasks=+1",
		"alice " DIGEST_A " concurrent_tasks=0x10",
		"alice " DIGEST_A " usd_per_day=1e3",
		"alice " DIGEST_A " usd_per_day=",
		"alice " DIGEST_A " usd_per_day",
		"alice " DIGEST_A " =3",
	};
	char		nul[] = "alice " DIGEST_A "\0 x";
	struct tokens	t;
	char		err[512];

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert(strncmp(parse_err(bad[i]), "tokens:1: ", 10) == 0,
		    "%s", bad[i]);
	cr_assert_eq(tokens_parse(nul, sizeof nul - 1, "tokens", &t, err,
	    sizeof err), -1);
	cr_assert_str_eq(err, "tokens:1: a NUL or carriage return");
}

/* What token_format writes, tokens_parse reads back the same. */
Test(tokens, format_reads_back)
{
	struct token_ident	id = { .name = "carol" };
	struct tokens		t;
	struct buf		b;
	char			err[512];

	token_digest("hvd_secret", 10, id.digest);
	id.lim.set[TOKEN_MAX_TIMEOUT] = true;
	id.lim.v[TOKEN_MAX_TIMEOUT] = 600;
	id.lim.set[TOKEN_USD_PER_DAY] = true;
	id.lim.v[TOKEN_USD_PER_DAY] = 0.125;
	buf_init(&b, 0);
	token_format(&id, &b);
	cr_assert_eq(parse(buf_cstr(&b), &t, err, sizeof err), 0, "%s", err);
	cr_assert_eq(t.n, 1);
	cr_assert_eq(memcmp(&t.v[0], &id, sizeof id), 0, "%s", buf_cstr(&b));
	cr_assert_null(strstr(buf_cstr(&b), "hvd_secret"));
	tokens_free(&t);
	buf_free(&b);
}

/* SHA-256 of "abc" (FIPS 180-2's example). */
Test(tokens, digest_is_sha256)
{
	uint8_t	d[TOKEN_DIGEST_LEN];

	token_digest("abc", 3, d);
	cr_assert_eq(d[0], 0xba);
	cr_assert_eq(d[1], 0x78);
	cr_assert_eq(d[31], 0xad);
}

/* --- the sliding window, on our clock --------------------------------- */

Test(window, exact_at_the_edges)
{
	struct auth_window	w;
	const int64_t		minute = 60000, t0 = 1000000;

	auth_window_init(&w, 3);
	cr_assert_eq(auth_window_hit(&w, t0, minute), 0);
	cr_assert_eq(auth_window_hit(&w, t0 + 10, minute), 0);
	cr_assert_eq(auth_window_hit(&w, t0 + 20, minute), 0);
	/* Full: the oldest leaves the window (t - 60 s, t] at t0 + 60 s. */
	cr_assert_eq(auth_window_hit(&w, t0 + 30, minute), minute - 30);
	cr_assert_eq(auth_window_hit(&w, t0 + minute - 1, minute), 1);
	cr_assert_eq(auth_window_count(&w, t0 + minute - 1, minute), 3);
	cr_assert_eq(auth_window_hit(&w, t0 + minute, minute), 0);
	/* Refused hits were not counted: the next frees at t0 + 10 + 60 s. */
	cr_assert_eq(auth_window_hit(&w, t0 + minute + 9, minute), 1);
	cr_assert_eq(auth_window_hit(&w, t0 + minute + 10, minute), 0);
	cr_assert_eq(auth_window_count(&w, t0 + 3 * minute, minute), 0);
	cr_assert_eq(auth_window_hit(&w, t0 + 3 * minute, minute), 0);
	auth_window_free(&w);
}

Test(window, no_cap_is_no_limit)
{
	struct auth_window	w;

	auth_window_init(&w, 0);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(auth_window_hit(&w, 5, 60000), 0);
	auth_window_free(&w);
}

Test(window, retry_after_rounds_up)
{
	cr_assert_eq(auth_retry_after_s(1), 1);
	cr_assert_eq(auth_retry_after_s(1000), 1);
	cr_assert_eq(auth_retry_after_s(1001), 2);
	cr_assert_eq(auth_retry_after_s(60000), 60);
}

/* --- auth_request, on a tokens file ----------------------------------- */

static char			dir[256], file[300];
static struct heavy_config	cfg;

static void
write_file(const char *text)
{
	FILE	*f = fopen(file, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* alice: "hvd_alice", 2 requests a minute; bob: "hvd_bob", limits;
 * carol: live_workers. */
static void
setup(void)
{
	struct token_ident	a = { .name = "alice" }, b = { .name = "bob" };
	struct token_ident	c = { .name = "carol" };
	struct buf		text;
	char			err[512];

	cr_assert_not_null(mkdtemp((char *)unit_tmp(dir, sizeof dir, "auth")));
	snprintf(file, sizeof file, "%s/tokens", dir);
	token_digest("hvd_alice", 9, a.digest);
	a.lim.set[TOKEN_REQUESTS_PER_MINUTE] = true;
	a.lim.v[TOKEN_REQUESTS_PER_MINUTE] = 2;
	token_digest("hvd_bob", 7, b.digest);
	b.lim.set[TOKEN_MAX_NUM_AGENTS] = b.lim.set[TOKEN_MAX_TIMEOUT] =
	    b.lim.set[TOKEN_CONCURRENT_TASKS] = true;
	b.lim.v[TOKEN_MAX_NUM_AGENTS] = 2;
	b.lim.v[TOKEN_MAX_TIMEOUT] = 60;
	b.lim.v[TOKEN_CONCURRENT_TASKS] = 1;
	token_digest("hvd_carol", 9, c.digest);
	c.lim.set[TOKEN_LIVE_WORKERS] = true;
	c.lim.v[TOKEN_LIVE_WORKERS] = 5;
	buf_init(&text, 0);
	token_format(&a, &text);
	token_format(&b, &text);
	token_format(&c, &text);
	write_file(buf_cstr(&text));
	buf_free(&text);
	config_defaults(&cfg);
	cfg.auth_tokens_file = xstrdup(file);
	cfg.auth_fail_max = 3;
	cfg.auth_fail_window_s = 10;
	cr_assert_eq(auth_init(&cfg, err, sizeof err), 0, "%s", err);
}

static void
teardown(void)
{
	auth_stop();
	config_clear(&cfg);
	unlink(file);
	rmdir(dir);
}

static int
req(const char *h, const char *addr, int64_t now, char *owner,
    struct auth_denial *d)
{
	return auth_request(h, addr, now, owner, 96, d);
}

TestSuite(auth, .init = setup, .fini = teardown);

Test(auth, bearer_tokens_become_owners)
{
	struct auth_denial	d;
	char			owner[96];

	cr_assert(auth_enabled());
	cr_assert_eq(req("Bearer hvd_bob", "10.0.0.1", 0, owner, &d), 0);
	cr_assert_str_eq(owner, "id:bob");
	cr_assert_eq(req("bearer   hvd_alice", "10.0.0.1", 0, owner, &d), 0);
	cr_assert_str_eq(owner, "id:alice");
	cr_assert_eq(req(NULL, "10.0.0.1", 0, owner, &d), -1);
	cr_assert_eq(d.status, 401);
	cr_assert_str_eq(d.www_authenticate, "Bearer realm=\"heavyd\"");
	cr_assert_null(strstr(d.www_authenticate, "resource_metadata"));
	cr_assert_eq(req("Bearer hvd_mallory", "10.0.0.2", 0, owner, &d), -1);
	cr_assert_eq(d.status, 401);
	cr_assert_eq(req("Basic aHZkX2JvYg==", "10.0.0.3", 0, owner, &d), -1);
	cr_assert_eq(req("Bearer hvd_bob x", "10.0.0.3", 0, owner, &d), -1);
	cr_assert_eq(d.status, 401);
}

/* auth.fail_max failures in auth.fail_window: 429 for that address only,
 * even with a good token, until the oldest failure leaves the window. */
Test(auth, failures_per_address)
{
	struct auth_denial	d;
	char			owner[96];

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(req("Bearer nope", "10.0.0.9", 1000 + i, owner,
		    &d), -1);
		cr_assert_eq(d.status, 401);
	}
	cr_assert_eq(req("Bearer hvd_bob", "10.0.0.9", 2000, owner, &d), -1);
	cr_assert_eq(d.status, 429);
	cr_assert_eq(d.retry_after_s, 9);	/* 1000 + 10 s - 2000 */
	cr_assert_eq(req("Bearer hvd_bob", "10.0.0.8", 2000, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_bob", "10.0.0.9", 10999, owner, &d), -1);
	cr_assert_eq(d.status, 429);
	cr_assert_eq(d.retry_after_s, 1);
	cr_assert_eq(req("Bearer hvd_bob", "10.0.0.9", 11000, owner, &d), 0);
}

/* A reload with a larger auth.fail_max holds addresses to it at once. */
Test(auth, fail_max_reloaded)
{
	struct auth_denial	d;
	char			owner[96];

	for (int i = 0; i < 2; i++)
		cr_assert_eq(req("Bearer nope", "x", i, owner, &d), -1);
	cfg.auth_fail_max = 4;
	auth_reload(NULL, &cfg);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(req("Bearer nope", "x", 10 + i, owner, &d), -1);
		cr_assert_eq(d.status, 401, "failure %d", i + 1);
	}
	cr_assert_eq(req("Bearer hvd_bob", "x", 20, owner, &d), -1);
	cr_assert_eq(d.status, 429);
}

Test(auth, requests_per_minute)
{
	struct auth_denial	d;
	char			owner[96];

	cr_assert_eq(req("Bearer hvd_alice", "a", 0, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_alice", "a", 30000, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_alice", "a", 59999, owner, &d), -1);
	cr_assert_eq(d.status, 429);
	cr_assert_eq(d.retry_after_s, 1);
	cr_assert(strstr(d.message, "requests_per_minute") != NULL);
	cr_assert_eq(req("Bearer hvd_bob", "a", 59999, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_alice", "a", 60000, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_alice", "a", 60001, owner, &d), -1);
	cr_assert_eq(d.retry_after_s, 30);	/* 30000 + 60 s - 60001 */
}

/* SIGHUP: a revoked token is refused from the next request; a rate
 * window survives for an identity whose limit did not change. */
Test(auth, reload_revokes)
{
	struct auth_denial	d;
	struct token_ident	a = { .name = "alice" };
	struct buf		text;
	char			owner[96];

	cr_assert_eq(req("Bearer hvd_alice", "a", 0, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_alice", "a", 1, owner, &d), 0);
	token_digest("hvd_alice", 9, a.digest);
	a.lim.set[TOKEN_REQUESTS_PER_MINUTE] = true;
	a.lim.v[TOKEN_REQUESTS_PER_MINUTE] = 2;
	buf_init(&text, 0);
	token_format(&a, &text);
	write_file(buf_cstr(&text));
	buf_free(&text);
	auth_reload(NULL, &cfg);
	cr_assert_eq(req("Bearer hvd_bob", "b", 2, owner, &d), -1);
	cr_assert_eq(d.status, 401);
	cr_assert_eq(req("Bearer hvd_alice", "a", 3, owner, &d), -1);
	cr_assert_eq(d.status, 429, "the window was kept");
	write_file("alice nothex\n");	/* broken: the table in force stays */
	auth_reload(NULL, &cfg);
	cr_assert_eq(req("Bearer hvd_alice", "a", 60001, owner, &d), 0);
}

Test(auth, admission_limits)
{
	char	why[256];

	cr_assert_eq(auth_admit("id:bob", 2, 60, 0, 0, why, sizeof why), 0);
	cr_assert_eq(auth_admit("id:bob", 3, 60, 0, 0, why, sizeof why), -1);
	cr_assert_str_eq(why, "num_agents 3 is over this identity's limit "
	    "(max_num_agents=2)");
	cr_assert_eq(auth_admit("id:bob", 2, 61, 0, 0, why, sizeof why), -1);
	cr_assert_str_eq(why, "timeout 61 s is over this identity's limit "
	    "(max_timeout=60)");
	cr_assert_eq(auth_admit("id:bob", 1, 10, 1, 0, why, sizeof why), -1);
	cr_assert_str_eq(why, "busy: this identity already runs 1 "
	    "orchestrations (concurrent_tasks=1); retry later");
	cr_assert_eq(auth_admit("id:alice", 16, 86400, 100, 0, why, sizeof why),
	    0);
	cr_assert_eq(auth_admit("uid:1000", 16, 86400, 100, 0, why, sizeof why),
	    0);
	cr_assert_null(auth_limits("uid:1000"));
	/* carol: live_workers=5, counted as her running tasks' agents. */
	cr_assert_eq(auth_admit("id:carol", 2, 10, 3, 3, why, sizeof why), 0);
	cr_assert_eq(auth_admit("id:carol", 3, 10, 3, 3, why, sizeof why), -1);
	cr_assert_str_eq(why, "busy: this identity's orchestrations would run "
	    "6 workers at once, over its limit (live_workers=5); retry later "
	    "or ask for fewer agents");
	cr_assert_null(auth_limits("id:nobody"));
}

/* auth.defaults: the limits of an identity whose line sets none; a
 * line's own value wins.  A bad one keeps the identities in force. */
Test(auth, config_defaults)
{
	struct auth_denial	d;
	char			owner[96], why[256];

	cfg.auth_defaults = xstrdup("requests_per_minute=1 max_timeout=5");
	auth_reload(NULL, &cfg);
	cr_assert_eq(auth_admit("id:bob", 1, 60, 0, 0, why, sizeof why), 0,
	    "bob's own max_timeout=60 wins over the default 5");
	cr_assert_eq(auth_admit("id:alice", 1, 6, 0, 0, why, sizeof why), -1);
	cr_assert_str_eq(why, "timeout 6 s is over this identity's limit "
	    "(max_timeout=5)");
	cr_assert_eq(req("Bearer hvd_bob", "a", 0, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_bob", "a", 1, owner, &d), -1);
	cr_assert_eq(d.status, 429);
	cr_assert_eq(req("Bearer hvd_alice", "a", 1, owner, &d), 0);
	cr_assert_eq(req("Bearer hvd_alice", "a", 2, owner, &d), 0);
	free(cfg.auth_defaults);
	cfg.auth_defaults = xstrdup("colour=blue");
	auth_reload(NULL, &cfg);
	cr_assert_eq(auth_admit("id:alice", 1, 6, 0, 0, why, sizeof why), -1);
}

/* The defaults a call did not override fit under the maxima; a value
 * asked for is left as asked, for auth_admit to refuse. */
Test(auth, defaults_fit_the_maxima)
{
	int	n = cfg.num_agents;		/* 4 */
	double	timeout = cfg.task_timeout_s;	/* 300 */

	auth_fit_defaults("id:bob", &cfg, &n, &timeout);
	cr_assert_eq(n, 2);
	cr_assert_eq(timeout, 60);
	n = 3;
	timeout = 61;
	auth_fit_defaults("id:bob", &cfg, &n, &timeout);
	cr_assert_eq(n, 3);
	cr_assert_eq(timeout, 61);
	n = cfg.num_agents;
	timeout = cfg.task_timeout_s;
	auth_fit_defaults("id:alice", &cfg, &n, &timeout);
	cr_assert_eq(n, 4);
	cr_assert_eq(timeout, 300);
}

/* Without a tokens file, every HTTP caller is the one anonymous owner. */
Test(auth_off, anonymous)
{
	struct heavy_config	c;
	struct auth_denial	d;
	char			owner[96], err[256];

	config_defaults(&c);
	unsetenv("CREDENTIALS_DIRECTORY");
	cr_assert_not(auth_configured(&c));
	cr_assert_eq(auth_init(&c, err, sizeof err), 0);
	cr_assert_not(auth_enabled());
	cr_assert_eq(auth_request(NULL, "x", 0, owner, sizeof owner, &d), 0);
	cr_assert_str_eq(owner, AUTH_ANONYMOUS);
	auth_stop();
	config_clear(&c);
}

/*
 * auth.mode oauth through the verifier seam, with a verifier of our own:
 * "ok.NAME" is NAME, "scope" a 403, "fetching" a pending 503, anything
 * else (or none) a 401 with the verifier's challenge.
 */
static int
fake_verify(const char *token, size_t len, char *name, size_t namelen,
    char *limits, size_t limitslen, struct auth_denial *d)
{
	const char	*plus;

	memset(d, 0, sizeof *d);
	limits[0] = '\0';
	if (token != NULL && len > 3 && strncmp(token, "ok.", 3) == 0) {
		snprintf(name, namelen, "%.*s", (int)len - 3, token + 3);
		return 0;
	}
	/* "lim.NAME+KEY=VALUE+...": a token whose claim states limits. */
	if (token != NULL && len > 4 && strncmp(token, "lim.", 4) == 0 &&
	    (plus = memchr(token, '+', len)) != NULL) {
		snprintf(name, namelen, "%.*s", (int)(plus - token - 4),
		    token + 4);
		snprintf(limits, limitslen, "%.*s", (int)(token + len - plus -
		    1), plus + 1);
		for (char *p = limits; *p != '\0'; p++)
			if (*p == '+')
				*p = ' ';
		return 0;
	}
	if (token != NULL && len == 5 && strncmp(token, "scope", 5) == 0) {
		d->status = 403;
		snprintf(d->www_authenticate, sizeof d->www_authenticate,
		    "Bearer error=\"insufficient_scope\"");
	} else if (token != NULL && len == 8 &&
	    strncmp(token, "fetching", 8) == 0) {
		d->status = 503;
		d->pending = true;
		d->retry_after_s = 2;
	} else {
		d->status = 401;
		snprintf(d->www_authenticate, sizeof d->www_authenticate,
		    "Bearer error=\"invalid_token\"");
	}
	snprintf(d->message, sizeof d->message, "refused");
	return -1;
}

static void
oauth_setup(void)
{
	char	err[512];

	config_defaults(&cfg);
	cfg.auth_mode = xstrdup("oauth");
	cfg.auth_defaults = xstrdup("requests_per_minute=2 concurrent_tasks=1");
	cfg.auth_fail_max = 3;
	cfg.auth_fail_window_s = 10;
	cfg.auth_max_clients = 16;
	auth_set_verifier(fake_verify);
	cr_assert_eq(auth_init(&cfg, err, sizeof err), 0, "%s", err);
}

static void
oauth_teardown(void)
{
	auth_stop();
	config_clear(&cfg);
}

static int
oreq(const char *h, const char *addr, int64_t now, char *owner,
    struct auth_denial *d)
{
	return auth_request(h, addr, now, owner, AUTH_OWNER_MAX, d);
}

TestSuite(auth_oauth, .init = oauth_setup, .fini = oauth_teardown);

/* The verified name, whole (longer than a tokens file's), is the owner;
 * the verifier's 401 counts as a failure of the address, its 403 and 503
 * do not, and pass through as they are. */
Test(auth_oauth, owners_and_refusals)
{
	struct auth_denial	d;
	char			owner[AUTH_OWNER_MAX], h[300], want[201];

	memset(want, 'x', 200);
	want[200] = '\0';
	snprintf(h, sizeof h, "Bearer ok.%s", want);
	cr_assert_eq(oreq(h, "a", 0, owner, &d), 0);
	cr_assert_eq(strncmp(owner, "id:", 3), 0);
	cr_assert_str_eq(owner + 3, want);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(oreq("Bearer scope", "a", 1, owner, &d), -1);
		cr_assert_eq(d.status, 403);
		cr_assert_str_eq(d.www_authenticate,
		    "Bearer error=\"insufficient_scope\"");
		cr_assert_eq(oreq("Bearer fetching", "a", 1, owner, &d), -1);
		cr_assert_eq(d.status, 503);
		cr_assert(d.pending);
	}
	cr_assert_eq(oreq(NULL, "a", 2, owner, &d), -1);
	cr_assert_eq(d.status, 401);
	cr_assert_str_eq(d.www_authenticate, "Bearer error=\"invalid_token\"");
	cr_assert_eq(oreq("Bearer forged", "a", 3, owner, &d), -1);
	cr_assert_eq(oreq("Basic x", "a", 4, owner, &d), -1);
	cr_assert_eq(d.status, 401);
	cr_assert_eq(oreq("Bearer ok.bob", "a", 5, owner, &d), -1);
	cr_assert_eq(d.status, 429, "the third failure blocks the address");
	cr_assert_eq(oreq("Bearer ok.bob", "b", 5, owner, &d), 0);
}

/* Every OAuth identity has auth.defaults: its limits, and a request
 * window of its own; a reload with another rate starts them afresh. */
Test(auth_oauth, defaults_are_every_identitys_limits)
{
	const struct token_limits	*l = auth_limits("id:anyone");
	struct auth_denial		 d;
	char				 owner[AUTH_OWNER_MAX];

	cr_assert_not_null(l);
	cr_assert(l->set[TOKEN_CONCURRENT_TASKS]);
	cr_assert_eq(l->v[TOKEN_CONCURRENT_TASKS], 1);
	cr_assert_null(auth_limits("uid:1000"));
	cr_assert_eq(oreq("Bearer ok.alice", "a", 0, owner, &d), 0);
	cr_assert_eq(oreq("Bearer ok.alice", "a", 1, owner, &d), 0);
	cr_assert_eq(oreq("Bearer ok.alice", "a", 2, owner, &d), -1);
	cr_assert_eq(d.status, 429);
	cr_assert_eq(d.retry_after_s, 60);
	cr_assert_eq(oreq("Bearer ok.bob", "a", 2, owner, &d), 0);
	cr_assert_eq(oreq("Bearer ok.alice", "a", 60000, owner, &d), 0);
	free(cfg.auth_defaults);
	cfg.auth_defaults = xstrdup("requests_per_minute=1");
	auth_reload(NULL, &cfg);
	cr_assert_not(auth_limits("id:x")->set[TOKEN_CONCURRENT_TASKS]);
	cr_assert_eq(oreq("Bearer ok.alice", "a", 60001, owner, &d), 0);
	cr_assert_eq(oreq("Bearer ok.alice", "a", 60002, owner, &d), -1);
	free(cfg.auth_defaults);
	cfg.auth_defaults = NULL;
	auth_reload(NULL, &cfg);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(oreq("Bearer ok.alice", "a", 60003, owner, &d), 0);
}

/* A token's limits claim overrides auth.defaults key by key, for that
 * identity alone, as its latest request states them. */
Test(auth_oauth, a_claims_limits_override_the_defaults)
{
	const struct token_limits	*l;
	struct auth_denial		 d;
	char				 owner[AUTH_OWNER_MAX];

	for (int i = 0; i < 3; i++)
		cr_assert_eq(oreq("Bearer lim.carol+max_num_agents=1+"
		    "requests_per_minute=3", "a", i, owner, &d), 0, "%d", i);
	cr_assert_str_eq(owner, "id:carol");
	cr_assert_eq(oreq("Bearer lim.carol+max_num_agents=1+"
	    "requests_per_minute=3", "a", 3, owner, &d), -1);
	cr_assert_eq(d.status, 429, "the claim's rate, not the default 2");
	l = auth_limits("id:carol");
	cr_assert(l->set[TOKEN_MAX_NUM_AGENTS]);
	cr_assert_eq(l->v[TOKEN_MAX_NUM_AGENTS], 1);
	cr_assert(l->set[TOKEN_CONCURRENT_TASKS], "a default it kept");
	cr_assert_eq(l->v[TOKEN_CONCURRENT_TASKS], 1);
	cr_assert_not(auth_limits("id:dave")->set[TOKEN_MAX_NUM_AGENTS],
	    "another identity has the defaults");
	cr_assert_eq(oreq("Bearer ok.carol", "a", 60000, owner, &d), 0);
	cr_assert_not(auth_limits("id:carol")->set[TOKEN_MAX_NUM_AGENTS],
	    "a token without the claim: the defaults again");
}

/* At most auth.max_clients windows: one with no request left in the
 * minute goes first, else the oldest (whose count starts afresh). */
Test(auth_oauth, windows_bounded)
{
	struct auth_denial	d;
	char			owner[AUTH_OWNER_MAX], h[64];

	for (int i = 0; i < 16; i++) {
		snprintf(h, sizeof h, "Bearer ok.u%d", i);
		cr_assert_eq(oreq(h, "a", i * 1000, owner, &d), 0);
		cr_assert_eq(oreq(h, "a", i * 1000, owner, &d), 0);
		cr_assert_eq(oreq(h, "a", i * 1000, owner, &d), -1);
	}
	cr_assert_eq(oreq("Bearer ok.new", "a", 30000, owner, &d), 0);
	cr_assert_eq(oreq("Bearer ok.u0", "a", 30000, owner, &d), 0,
	    "u0, the oldest, was forgotten (and u1 goes for it)");
	cr_assert_eq(oreq("Bearer ok.u2", "a", 30000, owner, &d), -1);
	/* u2's requests have left the minute: it goes; u3's have not. */
	cr_assert_eq(oreq("Bearer ok.late", "a", 62000, owner, &d), 0);
	cr_assert_eq(oreq("Bearer ok.u3", "a", 62000, owner, &d), -1);
	cr_assert_eq(d.status, 429);
}

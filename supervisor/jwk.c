/*
 * The authorization server's keys: a JWKS (RFC 7517) parsed into Nettle's
 * public keys, and the signature check of one algorithm with one key.  A
 * key heavyd cannot use (another kty, curve or use, a short RSA modulus)
 * is skipped, as RFC 7517 5 asks; a document with no usable key is an
 * error.  Also strict base64url, which both the JWKS and the JWT need.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gmp.h>
#include <json-c/json.h>
#include <nettle/bignum.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <nettle/eddsa.h>
#include <nettle/rsa.h>
#include <nettle/sha2.h>

#include "supervisor.h"
#include "oauth.h"

#define JWK_MAX_RSA_BYTES	1024	/* an 8192-bit modulus */
#define JWK_MAX_KEYS		256
#define JWK_MAX_KID		256
#define JWK_JSON_DEPTH		16

struct oauth_key {
	char			*kid;		/* NULL when the JWK has none */
	unsigned		 alg;		/* the one OAUTH_ALG_* it serves */
	struct rsa_public_key	 rsa;
	struct ecc_point	 ec;
	unsigned char		 ed[ED25519_KEY_SIZE];
};

struct oauth_jwks {
	struct oauth_key	*keys;
	int			 n;
};

static const signed char b64url_value[256] = {
#define X -1
	X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
	X,X,X,X,X,X,X,X,X,X,X,X,X,62,X,X,			/* '-' */
	52,53,54,55,56,57,58,59,60,61,X,X,X,X,X,X,		/* 0-9 */
	X,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,			/* A-O */
	15,16,17,18,19,20,21,22,23,24,25,X,X,X,X,63,		/* P-Z _ */
	X,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,		/* a-o */
	41,42,43,44,45,46,47,48,49,50,51,X,X,X,X,X,		/* p-z */
	X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
	X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
	X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
	X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
#undef X
};

/*
 * Strict base64url: one spelling per byte string, so a token cannot be
 * altered without changing its signing input.  No '=', no whitespace, a
 * length that is not 1 mod 4, and the bits a last partial group leaves
 * over all zero.
 */
long
oauth_b64url_decode(const char *in, size_t inlen, unsigned char *out)
{
	unsigned long	acc = 0;
	size_t		i, o = 0;
	int		v, bits = 0;

	if (inlen % 4 == 1 || inlen > (size_t)LONG_MAX / 3)
		return -1;
	for (i = 0; i < inlen; i++) {
		if ((v = b64url_value[(unsigned char)in[i]]) < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1UL << bits) - 1;
		}
	}
	if (acc != 0)		/* non-canonical: leftover bits set */
		return -1;
	return (long)o;
}

char *
oauth_b64url_encode(const void *data, size_t len)
{
	static const char	 abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char	*p = data;
	char			*out = xmalloc(len / 3 * 4 + 4 + 1), *q = out;
	unsigned long		 acc = 0;
	int			 bits = 0;

	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | p[i];
		for (bits += 8; bits >= 6; bits -= 6)
			*q++ = abc[(acc >> (bits - 6)) & 63];
		acc &= (1UL << bits) - 1;
	}
	if (bits > 0)
		*q++ = abc[(acc << (6 - bits)) & 63];
	*q = '\0';
	return out;
}

/* A base64url member of a JWK, decoded: its length, or -1 when it is
 * missing, bad, empty or longer than max. */
static long
jwk_member(struct json_object *jwk, const char *name, unsigned char *out,
    size_t max)
{
	struct json_object	*v;
	const char		*s;
	size_t			 len;

	if (!json_object_object_get_ex(jwk, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len == 0 || len / 4 * 3 + 2 > max)
		return -1;
	return oauth_b64url_decode(s, len, out);
}

/* A string member, NULL when absent or of another type. */
static const char *
jwk_str(struct json_object *o, const char *name)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, name, &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) !=
	    (size_t)json_object_get_string_len(v))	/* a NUL inside */
		return NULL;
	return json_object_get_string(v);
}

static const char *
jwk_rsa(struct oauth_key *k, struct json_object *jwk)
{
	unsigned char	n[JWK_MAX_RSA_BYTES + 2], e[16];
	long		nlen, elen;

	if ((nlen = jwk_member(jwk, "n", n, sizeof n)) <= 0 ||
	    (elen = jwk_member(jwk, "e", e, sizeof e)) <= 0 ||
	    nlen > JWK_MAX_RSA_BYTES || elen > 8)
		return "an RSA key needs n and e";
	rsa_public_key_init(&k->rsa);
	nettle_mpz_set_str_256_u(k->rsa.n, (size_t)nlen, n);
	nettle_mpz_set_str_256_u(k->rsa.e, (size_t)elen, e);
	if (mpz_sizeinbase(k->rsa.n, 2) < OAUTH_RSA_MIN_BITS) {
		rsa_public_key_clear(&k->rsa);
		return "an RSA key shorter than 2048 bits";
	}
	if (!rsa_public_key_prepare(&k->rsa)) {
		rsa_public_key_clear(&k->rsa);
		return "an unusable RSA key";
	}
	k->alg = OAUTH_ALG_RS256;
	return NULL;
}

static const char *
jwk_ec(struct oauth_key *k, struct json_object *jwk)
{
	unsigned char	x[40], y[40];
	const char	*crv = jwk_str(jwk, "crv");
	mpz_t		 mx, my;
	int		 ok;

	if (crv == NULL || strcmp(crv, "P-256") != 0)
		return "an EC key not on P-256";
	if (jwk_member(jwk, "x", x, sizeof x) != 32 ||
	    jwk_member(jwk, "y", y, sizeof y) != 32)
		return "a P-256 key needs x and y of 32 bytes";
	mpz_init(mx);
	mpz_init(my);
	nettle_mpz_set_str_256_u(mx, 32, x);
	nettle_mpz_set_str_256_u(my, 32, y);
	ecc_point_init(&k->ec, nettle_get_secp_256r1());
	ok = ecc_point_set(&k->ec, mx, my);	/* 0 when off the curve */
	mpz_clear(mx);
	mpz_clear(my);
	if (!ok) {
		ecc_point_clear(&k->ec);
		return "a P-256 key off the curve";
	}
	k->alg = OAUTH_ALG_ES256;
	return NULL;
}

static const char *
jwk_okp(struct oauth_key *k, struct json_object *jwk)
{
	unsigned char	x[40];
	const char	*crv = jwk_str(jwk, "crv");

	if (crv == NULL || strcmp(crv, "Ed25519") != 0)
		return "an OKP key not on Ed25519";
	if (jwk_member(jwk, "x", x, sizeof x) != ED25519_KEY_SIZE)
		return "an Ed25519 key needs x of 32 bytes";
	memcpy(k->ed, x, sizeof k->ed);
	k->alg = OAUTH_ALG_EDDSA;
	return NULL;
}

/* Whether the JWK says it is for verifying signatures, or says nothing. */
static bool
jwk_for_signatures(struct json_object *jwk)
{
	struct json_object	*ops, *op;
	const char		*use = jwk_str(jwk, "use");
	size_t			 i;

	if (json_object_object_get_ex(jwk, "use", NULL) &&
	    (use == NULL || strcmp(use, "sig") != 0))
		return false;
	if (!json_object_object_get_ex(jwk, "key_ops", &ops))
		return true;
	if (!json_object_is_type(ops, json_type_array))
		return false;
	for (i = 0; i < json_object_array_length(ops); i++) {
		op = json_object_array_get_idx(ops, i);
		if (json_object_is_type(op, json_type_string) &&
		    strcmp(json_object_get_string(op), "verify") == 0)
			return true;
	}
	return false;
}

static void
jwk_clear(struct oauth_key *k)
{
	if (k->alg == OAUTH_ALG_RS256)
		rsa_public_key_clear(&k->rsa);
	else if (k->alg == OAUTH_ALG_ES256)
		ecc_point_clear(&k->ec);
	free(k->kid);
	memset(k, 0, sizeof *k);
}

/* One JWK into k; the reason it is skipped, or NULL. */
static const char *
jwk_parse(struct oauth_key *k, struct json_object *jwk)
{
	static const struct { const char *name; unsigned alg; } algs[] = {
		{ "RS256", OAUTH_ALG_RS256 }, { "ES256", OAUTH_ALG_ES256 },
		{ "EdDSA", OAUTH_ALG_EDDSA } };
	const char	*kty = jwk_str(jwk, "kty"), *alg = jwk_str(jwk, "alg");
	const char	*kid = jwk_str(jwk, "kid"), *why;
	unsigned	 want = 0;

	if (!json_object_is_type(jwk, json_type_object) || kty == NULL)
		return "not a JWK";
	if (!jwk_for_signatures(jwk))
		return "not a signature key";
	if (json_object_object_get_ex(jwk, "kid", NULL) &&
	    (kid == NULL || strlen(kid) > JWK_MAX_KID))
		return "a kid that is no short string";
	for (size_t i = 0; alg != NULL && i < sizeof algs / sizeof algs[0]; i++)
		if (strcmp(alg, algs[i].name) == 0)
			want = algs[i].alg;
	if (json_object_object_get_ex(jwk, "alg", NULL) && want == 0)
		return "an algorithm heavyd does not verify";
	memset(k, 0, sizeof *k);
	if (strcmp(kty, "RSA") == 0)
		why = jwk_rsa(k, jwk);
	else if (strcmp(kty, "EC") == 0)
		why = jwk_ec(k, jwk);
	else if (strcmp(kty, "OKP") == 0)
		why = jwk_okp(k, jwk);
	else
		why = "a key type heavyd does not verify";
	if (why == NULL && want != 0 && want != k->alg) {
		jwk_clear(k);
		why = "an alg that does not fit its key type";
	}
	if (why == NULL && kid != NULL)
		k->kid = xstrdup(kid);
	return why;
}

/* The whole document: strict JSON (all of it, not too deep), an object. */
static struct json_object *
jwk_json(const char *json, size_t len, char *err, size_t errlen)
{
	struct json_tokener	*tok;
	struct json_object	*o;
	size_t			 end;

	if (len > INT32_MAX || memchr(json, '\0', len) != NULL) {
		snprintf(err, errlen, "the JWKS is no JSON text");
		return NULL;
	}
	if ((tok = json_tokener_new_ex(JWK_JSON_DEPTH)) == NULL)
		fatalx("out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, json, (int)len);
	end = o != NULL ? json_tokener_get_parse_end(tok) : 0;
	/* A file may end in a newline; nothing else may follow. */
	while (end < len && strchr(" \t\r\n", json[end]) != NULL)
		end++;
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    end != len || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "the JWKS is no JSON object");
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

struct oauth_jwks *
oauth_jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
	struct json_object	*o, *keys;
	struct oauth_jwks	*s;
	const char		*why = NULL;
	size_t			 i, n;

	if ((o = jwk_json(json, len, err, errlen)) == NULL)
		return NULL;
	if (!json_object_object_get_ex(o, "keys", &keys) ||
	    !json_object_is_type(keys, json_type_array)) {
		snprintf(err, errlen, "the JWKS has no \"keys\" array");
		json_object_put(o);
		return NULL;
	}
	n = json_object_array_length(keys);
	s = xcalloc(1, sizeof *s);
	s->keys = xcalloc(n < JWK_MAX_KEYS ? n + 1 : JWK_MAX_KEYS,
	    sizeof *s->keys);
	for (i = 0; i < n && s->n < JWK_MAX_KEYS; i++) {
		const char *w = jwk_parse(&s->keys[s->n],
		    json_object_array_get_idx(keys, i));

		if (w == NULL)
			s->n++;
		else if (why == NULL)
			why = w;
	}
	json_object_put(o);
	if (s->n == 0) {
		snprintf(err, errlen, "the JWKS has no usable key%s%s", why ?
		    ": " : "", why ? why : "");
		oauth_jwks_free(s);
		return NULL;
	}
	if (why != NULL)
		log_debug("jwks: %d usable key(s); one skipped: %s", s->n, why);
	return s;
}

/* The file, read whole (at most max bytes), then parsed. */
struct oauth_jwks *
oauth_jwks_load_file(const char *path, size_t max, char *err, size_t errlen)
{
	struct oauth_jwks	*s;
	struct buf		 b;
	char			 chunk[8192];
	ssize_t			 r;
	int			 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf_init(&b, max);
	while ((r = read(fd, chunk, sizeof chunk)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 || buf_add(&b, chunk, (size_t)r) == -1) {
			snprintf(err, errlen, "%s: %s", path, r == -1 ?
			    strerror(errno) : "larger than the JWKS limit");
			close(fd);
			buf_free(&b);
			return NULL;
		}
	}
	close(fd);
	s = oauth_jwks_parse(buf_cstr(&b), b.len, err, errlen);
	if (s == NULL && strlen(err) + strlen(path) + 3 < errlen) {
		memmove(err + strlen(path) + 2, err, strlen(err) + 1);
		memcpy(err, path, strlen(path));
		memcpy(err + strlen(path), ": ", 2);
	}
	buf_free(&b);
	return s;
}

void
oauth_jwks_free(struct oauth_jwks *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < s->n; i++)
		jwk_clear(&s->keys[i]);
	free(s->keys);
	free(s);
}

int
oauth_jwks_count(const struct oauth_jwks *s)
{
	return s == NULL ? 0 : s->n;
}

/*
 * A token's key: the one with its kid and algorithm.  Without a kid, the
 * only key of that algorithm (an issuer with one key need not name it);
 * with several, none: guessing would try keys an attacker chose among.
 */
const struct oauth_key *
oauth_jwks_find(const struct oauth_jwks *s, const char *kid, unsigned alg)
{
	const struct oauth_key	*found = NULL;

	for (int i = 0; s != NULL && i < s->n; i++) {
		if (s->keys[i].alg != alg)
			continue;
		if (kid != NULL && s->keys[i].kid != NULL &&
		    strcmp(kid, s->keys[i].kid) == 0)
			return &s->keys[i];
		if (kid == NULL) {
			if (found != NULL)
				return NULL;
			found = &s->keys[i];
		}
	}
	return found;
}

static bool
jwk_verify_rs256(const struct oauth_key *k, const unsigned char *digest,
    const unsigned char *sig, size_t siglen)
{
	mpz_t	s;
	int	ok;

	if (siglen != k->rsa.size)	/* RFC 8017 8.2.2: exactly k bytes */
		return false;
	mpz_init(s);
	nettle_mpz_set_str_256_u(s, siglen, sig);
	ok = rsa_sha256_verify_digest(&k->rsa, digest, s);
	mpz_clear(s);
	return ok == 1;
}

/* ES256's JWS form is r || s, 32 bytes each (RFC 7518 3.4), not DER. */
static bool
jwk_verify_es256(const struct oauth_key *k, const unsigned char *digest,
    const unsigned char *sig, size_t siglen)
{
	struct dsa_signature	ds;
	int			ok;

	if (siglen != 64)
		return false;
	dsa_signature_init(&ds);
	nettle_mpz_set_str_256_u(ds.r, 32, sig);
	nettle_mpz_set_str_256_u(ds.s, 32, sig + 32);
	ok = ecdsa_verify(&k->ec, SHA256_DIGEST_SIZE, digest, &ds);
	dsa_signature_clear(&ds);
	return ok == 1;
}

bool
oauth_key_verify(const struct oauth_key *k, unsigned alg, const void *msg,
    size_t msglen, const unsigned char *sig, size_t siglen)
{
	struct sha256_ctx	ctx;
	unsigned char		digest[SHA256_DIGEST_SIZE];

	if (k == NULL || k->alg != alg)
		return false;
	if (alg == OAUTH_ALG_EDDSA)
		return siglen == ED25519_SIGNATURE_SIZE &&
		    ed25519_sha512_verify(k->ed, msglen, msg, sig) == 1;
	sha256_init(&ctx);
	sha256_update(&ctx, msglen, msg);
	sha256_digest(&ctx, sizeof digest, digest);
	if (alg == OAUTH_ALG_RS256)
		return jwk_verify_rs256(k, digest, sig, siglen);
	if (alg == OAUTH_ALG_ES256)
		return jwk_verify_es256(k, digest, sig, siglen);
	return false;
}

static size_t
jwk_fetch_write(char *data, size_t size, size_t n, void *arg)
{
	struct buf	*b = arg;

	return buf_add(b, data, size * n) == -1 ? 0 : size * n;
}

/*
 * One GET of the JWKS into b: over http(s) only, no redirect followed (the
 * issuer's jwks_uri is where its keys are), within timeout_s.
 */
static CURL *
jwk_easy(const char *url, int timeout_s, struct buf *b)
{
	static bool	 ready;
	CURL		*c;

	if (!ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	ready = true;
	if ((c = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout_s);
	curl_easy_setopt(c, CURLOPT_USERAGENT, HEAVY_NAME "/" HEAVY_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, jwk_fetch_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	return c;
}

/* What went wrong with a fetch, or "" when it brought a 200. */
static void
jwk_fetch_error(CURL *c, CURLcode rc, char *err, size_t errlen)
{
	long	status = 0;

	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (rc == CURLE_OK && status == 200)
		err[0] = '\0';
	else if (rc == CURLE_OK)
		snprintf(err, errlen, "jwks_url: HTTP status %ld", status);
	else
		snprintf(err, errlen, "jwks_url: %s", rc == CURLE_WRITE_ERROR ?
		    "larger than the JWKS limit" : curl_easy_strerror(rc));
}

/*
 * The JWKS at url, at most max bytes, within timeout_s, blocking: for the
 * start (nothing is served yet), SIGHUP, and where there is no event loop.
 */
char *
oauth_jwks_fetch(const char *url, int timeout_s, size_t max, size_t *len,
    char *err, size_t errlen)
{
	struct buf	 b;
	CURL		*c;

	buf_init(&b, max);
	c = jwk_easy(url, timeout_s, &b);
	jwk_fetch_error(c, curl_easy_perform(c), err, errlen);
	curl_easy_cleanup(c);
	if (err[0] != '\0') {
		buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return buf_release(&b);
}

/*
 * The same on the event loop (ev_base), for the fetches a request brings
 * about: libcurl's multi interface on libevent, so that a slow issuer
 * never holds up heavyd.  One transfer per fetch; done is called once, on
 * a turn of the loop of its own, unless the fetch is cancelled first.
 */
#define JWK_FETCH_SOCKETS	8	/* happy eyeballs needs two */

struct oauth_fetch {
	CURLM			*multi;
	CURL			*easy;
	struct event		*timer;		/* libcurl's */
	struct event		*finish;	/* ours: the transfer is over */
	struct event		*watch[JWK_FETCH_SOCKETS];	/* or NULL */
	struct buf		 body;
	CURLcode		 rc;
	bool			 over;
	oauth_fetch_cb		 done;
	void			*arg;
};

static void	jwk_fetch_check(struct oauth_fetch *);

static void
jwk_socket_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct oauth_fetch	*f = arg;
	int			 running;

	curl_multi_socket_action(f->multi, fd, ((kind & EV_READ) ?
	    CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0),
	    &running);
	jwk_fetch_check(f);
}

static void
jwk_timeout_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct oauth_fetch	*f = arg;
	int			 running;

	(void)fd;
	(void)kind;
	curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	jwk_fetch_check(f);
}

/* Forgets a socket's event; kept in f too, so that none outlives f. */
static void
jwk_unwatch(struct oauth_fetch *f, struct event *ev)
{
	for (int i = 0; ev != NULL && i < JWK_FETCH_SOCKETS; i++)
		if (f->watch[i] == ev) {
			event_free(ev);
			f->watch[i] = NULL;
		}
}

/* libcurl says which sockets to watch, and for what. */
static int
jwk_watch(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct oauth_fetch	*f = arg;
	struct event		*ev = NULL;
	int			 i;

	(void)e;
	jwk_unwatch(f, sockp);
	if (what != CURL_POLL_REMOVE) {
		for (i = 0; i < JWK_FETCH_SOCKETS && f->watch[i] != NULL; i++)
			;
		if (i == JWK_FETCH_SOCKETS)
			return -1;	/* the transfer fails */
		ev = f->watch[i] = event_new(ev_base, s, EV_PERSIST |
		    ((what & CURL_POLL_IN) ? EV_READ : 0) |
		    ((what & CURL_POLL_OUT) ? EV_WRITE : 0), jwk_socket_cb, f);
		event_add(ev, NULL);
	}
	curl_multi_assign(f->multi, s, ev);
	return 0;
}

static int
jwk_timer(CURLM *m, long ms, void *arg)
{
	struct oauth_fetch	*f = arg;
	struct timeval		 tv = { ms / 1000, (ms % 1000) * 1000 };

	(void)m;
	if (ms < 0)
		evtimer_del(f->timer);
	else
		evtimer_add(f->timer, &tv);
	return 0;
}

/* Stops the transfer and frees it all (done is not called). */
void
oauth_jwks_fetch_cancel(struct oauth_fetch *f)
{
	if (f == NULL)
		return;
	curl_multi_remove_handle(f->multi, f->easy);
	curl_easy_cleanup(f->easy);
	curl_multi_cleanup(f->multi);
	for (int i = 0; i < JWK_FETCH_SOCKETS; i++)
		if (f->watch[i] != NULL)
			event_free(f->watch[i]);
	event_free(f->timer);
	event_free(f->finish);
	buf_free(&f->body);
	free(f);
}

/* After the transfer, outside libcurl's and the socket's callbacks. */
static void
jwk_fetch_finish(evutil_socket_t fd, short kind, void *arg)
{
	struct oauth_fetch	*f = arg;
	oauth_fetch_cb		 done = f->done;
	void			*done_arg = f->arg;
	char			 err[256], *body;
	size_t			 len = f->body.len;

	(void)fd;
	(void)kind;
	jwk_fetch_error(f->easy, f->rc, err, sizeof err);
	body = err[0] == '\0' ? buf_release(&f->body) : NULL;
	oauth_jwks_fetch_cancel(f);
	done(done_arg, body, len, err);
	free(body);
}

static void
jwk_fetch_check(struct oauth_fetch *f)
{
	struct timeval	 now = { 0, 0 };
	CURLMsg		*m;
	int		 left;

	while (!f->over && (m = curl_multi_info_read(f->multi, &left)) !=
	    NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		f->rc = m->data.result;
		f->over = true;
		evtimer_add(f->finish, &now);
	}
}

struct oauth_fetch *
oauth_jwks_fetch_start(const char *url, int timeout_s, size_t max,
    oauth_fetch_cb done, void *arg)
{
	struct oauth_fetch	*f = xcalloc(1, sizeof *f);

	buf_init(&f->body, max);
	f->done = done;
	f->arg = arg;
	f->easy = jwk_easy(url, timeout_s, &f->body);
	curl_easy_setopt(f->easy, CURLOPT_FORBID_REUSE, 1L);
	if ((f->multi = curl_multi_init()) == NULL ||
	    (f->timer = evtimer_new(ev_base, jwk_timeout_cb, f)) == NULL ||
	    (f->finish = evtimer_new(ev_base, jwk_fetch_finish, f)) == NULL)
		fatalx("oauth: cannot start a JWKS fetch");
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, jwk_watch);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, jwk_timer);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	curl_multi_add_handle(f->multi, f->easy);	/* sets a timer */
	return f;
}

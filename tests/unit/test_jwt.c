/*
 * The OAuth resource server's JWT verifier (supervisor/oauth.c, jwk.c):
 * the RFC 7515 A.2/A.3 and RFC 8037 A.4 vectors, then tokens signed here
 * with keys generated here (RSA 2048, P-256, Ed25519), good and bad; the
 * JWKS parser, its file and its URL (a loopback server in a thread); the
 * RFC 9728 metadata, the challenges, and the auth.* configuration.
 */
#include <criterion/criterion.h>

#include <sys/random.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>
#include <nettle/bignum.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <nettle/eddsa.h>
#include <nettle/hmac.h>
#include <nettle/rsa.h>
#include <nettle/sha2.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/oauth.h"
#include "tmpdir.h"

#define NOW		1800000000
#define ISSUER		"https://as.example.com"
#define AUDIENCE	"https://heavyd.example.com/mcp"

/* RFC 7515 A.1's payload, used by A.2 and A.3: {"iss":"joe",
 * "exp":1300819380,"http://example.com/is_root":true} with CRLFs. */
#define RFC7515_PAYLOAD	"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6" \
	"Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
#define A2_TOKEN	"eyJhbGciOiJSUzI1NiJ9." RFC7515_PAYLOAD "." \
	"cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7" \
	"AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4" \
	"BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K" \
	"0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv" \
	"hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB" \
	"p0igcN_IoypGlUPQGe77Rw"
#define A2_JWKS	"{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"" \
	"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp" \
	"-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOW" \
	"vG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUs" \
	"LA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9k" \
	"G4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2" \
	"PAcDTW9gb54h4FRWyuXpoQ\"}]}"
#define A3_TOKEN	"eyJhbGciOiJFUzI1NiJ9." RFC7515_PAYLOAD "." \
	"DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA" \
	"pmWQxfKTUJqPP3-Kg6NU1Q"
#define A3_JWKS	"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\"," \
	"\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\"," \
	"\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}"
/* RFC 8037 A.4: "Example of Ed25519 signing" (no JSON claims). */
#define A4_INPUT	"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
#define A4_SIG		"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4" \
	"iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
#define A4_X		"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
#define A4_D		"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"

static void
rnd(void *ctx, size_t len, uint8_t *out)
{
	(void)ctx;
	cr_assert_eq(getrandom(out, len, 0), (ssize_t)len);
}

/* The test's own authorization server: three keys, generated per test. */
static struct rsa_public_key	rsa_pub;
static struct rsa_private_key	rsa_key;
static struct ecc_point		ec_pub;
static struct ecc_scalar	ec_key;
static uint8_t			ed_pub[ED25519_KEY_SIZE], ed_key[ED25519_KEY_SIZE];
static char			*scopes_req[] = { "mcp:tools" };
static struct oauth_config	cfg;
static struct oauth_jwks	*jwks;

static char *
b64(const void *p, size_t n)
{
	return oauth_b64url_encode(p, n);
}

static char *
mpz_b64(const mpz_t x, size_t len)
{
	uint8_t	buf[512];

	if (len == 0)
		len = nettle_mpz_sizeinbase_256_u(x);
	nettle_mpz_get_str_256(len, buf, x);
	return b64(buf, len);
}

/* The JWKS of the three keys, kids "rsa1", "ec1", "ed1". */
static char *
test_jwks_json(void)
{
	mpz_t	x, y;
	char	*n = mpz_b64(rsa_pub.n, 0), *e = mpz_b64(rsa_pub.e, 0), *ex, *ey;
	char	*ed = b64(ed_pub, sizeof ed_pub), *s;

	mpz_init(x);
	mpz_init(y);
	ecc_point_get(&ec_pub, x, y);
	ex = mpz_b64(x, 32);
	ey = mpz_b64(y, 32);
	s = xasprintf("{\"keys\":["
	    "{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"use\":\"sig\",\"alg\":\"RS256\","
	    "\"n\":\"%s\",\"e\":\"%s\"},"
	    "{\"kty\":\"EC\",\"kid\":\"ec1\",\"crv\":\"P-256\",\"x\":\"%s\","
	    "\"y\":\"%s\"},"
	    "{\"kty\":\"OKP\",\"kid\":\"ed1\",\"crv\":\"Ed25519\",\"x\":\"%s\"}]}",
	    n, e, ex, ey, ed);
	mpz_clear(x);
	mpz_clear(y);
	free(n), free(e), free(ex), free(ey), free(ed);
	return s;
}

static void
setup(void)
{
	char	err[256], *json;

	rsa_public_key_init(&rsa_pub);
	rsa_private_key_init(&rsa_key);
	mpz_set_ui(rsa_pub.e, 65537);
	cr_assert(rsa_generate_keypair(&rsa_pub, &rsa_key, NULL, rnd, NULL,
	    NULL, 2048, 0));
	ecc_point_init(&ec_pub, nettle_get_secp_256r1());
	ecc_scalar_init(&ec_key, nettle_get_secp_256r1());
	ecdsa_generate_keypair(&ec_pub, &ec_key, NULL, rnd);
	rnd(NULL, sizeof ed_key, ed_key);
	ed25519_sha512_public_key(ed_pub, ed_key);

	memset(&cfg, 0, sizeof cfg);
	cfg.issuer = ISSUER;
	cfg.audience = AUDIENCE;
	cfg.clock_skew_s = 60;
	cfg.max_token_bytes = 8192;
	json = test_jwks_json();
	jwks = oauth_jwks_parse(json, strlen(json), err, sizeof err);
	cr_assert_not_null(jwks, "%s", err);
	cr_assert_eq(oauth_jwks_count(jwks), 3);
	free(json);
}

static void
teardown(void)
{
	oauth_jwks_free(jwks);
	rsa_public_key_clear(&rsa_pub);
	rsa_private_key_clear(&rsa_key);
	ecc_point_clear(&ec_pub);
	ecc_scalar_clear(&ec_key);
}

TestSuite(jwt, .init = setup, .fini = teardown);

/* The signature of alg over the signing input, base64url. */
static char *
sign(const char *alg, const char *input)
{
	struct sha256_ctx	ctx;
	struct dsa_signature	ds;
	uint8_t			digest[SHA256_DIGEST_SIZE], sig[512];
	mpz_t			s;
	char			*out;

	sha256_init(&ctx);
	sha256_update(&ctx, strlen(input), (const uint8_t *)input);
	sha256_digest(&ctx, sizeof digest, digest);
	if (strcmp(alg, "RS256") == 0) {
		mpz_init(s);
		cr_assert(rsa_sha256_sign_digest_tr(&rsa_pub, &rsa_key, NULL,
		    rnd, digest, s));
		nettle_mpz_get_str_256(rsa_pub.size, sig, s);
		mpz_clear(s);
		return b64(sig, rsa_pub.size);
	}
	if (strcmp(alg, "ES256") == 0) {
		dsa_signature_init(&ds);
		ecdsa_sign(&ec_key, NULL, rnd, sizeof digest, digest, &ds);
		nettle_mpz_get_str_256(32, sig, ds.r);
		nettle_mpz_get_str_256(32, sig + 32, ds.s);
		dsa_signature_clear(&ds);
		return b64(sig, 64);
	}
	ed25519_sha512_sign(ed_pub, ed_key, strlen(input),
	    (const uint8_t *)input, sig);
	out = b64(sig, ED25519_SIGNATURE_SIZE);
	return out;
}

/* A token: the header and claims as given, signed with alg's key. */
static char *
mint_raw(const char *header, const char *claims, const char *alg)
{
	char	*h = b64(header, strlen(header)), *c = b64(claims, strlen(claims));
	char	*input = xasprintf("%s.%s", h, c), *sig = sign(alg, input);
	char	*tok = xasprintf("%s.%s", input, sig);

	free(h), free(c), free(input), free(sig);
	return tok;
}

static const char *
kid_of(const char *alg)
{
	return strcmp(alg, "RS256") == 0 ? "rsa1" : strcmp(alg, "ES256") == 0 ?
	    "ec1" : "ed1";
}

/* A good token of alg, but for the claims given after the standard ones
 * (a claim given twice: json-c keeps the last). */
static char *
mint(const char *alg, const char *extra)
{
	char	*h = xasprintf("{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"at+jwt\"}",
	    alg, kid_of(alg));
	char	*c = xasprintf("{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"alice\","
	    "\"client_id\":\"cli\",\"exp\":%d,\"iat\":%d,\"scope\":\"mcp:tools\""
	    "%s%s}", ISSUER, AUDIENCE, NOW + 300, NOW, extra ? "," : "",
	    extra ? extra : "");
	char	*t = mint_raw(h, c, alg);

	free(h), free(c);
	return t;
}

static enum oauth_result
verify(const char *token, struct oauth_identity *id)
{
	struct oauth_identity	dummy;
	char			err[256];

	return oauth_verify(&cfg, jwks, token, NOW, id ? id : &dummy, err,
	    sizeof err);
}

static enum oauth_result
verify_claims(const char *alg, const char *extra)
{
	char			*t = mint(alg, extra);
	enum oauth_result	 r = verify(t, NULL);

	free(t);
	return r;
}

static const char	*algs[] = { "RS256", "ES256", "EdDSA" };

/* The token with one bit of its (decoded) signature flipped. */
static char *
flip_signature(const char *token)
{
	const char	*dot = strrchr(token, '.');
	unsigned char	 sig[1024];
	long		 n;
	char		*s, *out;

	n = oauth_b64url_decode(dot + 1, strlen(dot + 1), sig);
	cr_assert_gt(n, 0);
	sig[n / 2] ^= 0x08;
	s = b64(sig, (size_t)n);
	out = xasprintf("%.*s.%s", (int)(dot - token), token, s);
	free(s);
	return out;
}

/* ---- the RFCs' vectors ---- */

static struct oauth_jwks *
parse(const char *json)
{
	char			 err[256];
	struct oauth_jwks	*k = oauth_jwks_parse(json, strlen(json), err,
	    sizeof err);

	cr_assert_not_null(k, "%s", err);
	return k;
}

/* Through the verifier: the signature passes, then iss passes, then the
 * RFC's token has no aud: refused for that, not for its signature. */
static void
rfc_vector(const char *token, const char *jwks_json)
{
	struct oauth_jwks	*k = parse(jwks_json);
	struct oauth_config	 c = cfg;
	struct oauth_identity	 id;
	char			 err[256], *bad = flip_signature(token);

	c.issuer = "joe";
	cr_assert_eq(oauth_verify(&c, k, token, 1300819000, &id, err,
	    sizeof err), OAUTH_WRONG_AUDIENCE, "%s", err);
	cr_assert_eq(oauth_verify(&c, k, bad, 1300819000, &id, err,
	    sizeof err), OAUTH_BAD_SIGNATURE, "%s", err);
	free(bad);
	oauth_jwks_free(k);
}

Test(jwt, rfc7515_a2_rs256)
{
	rfc_vector(A2_TOKEN, A2_JWKS);
}

Test(jwt, rfc7515_a3_es256)
{
	rfc_vector(A3_TOKEN, A3_JWKS);
}

Test(jwt, rfc8037_a4_ed25519)
{
	struct oauth_jwks	*k = parse("{\"keys\":[{\"kty\":\"OKP\","
	    "\"crv\":\"Ed25519\",\"x\":\"" A4_X "\"}]}");
	unsigned char		 sig[64], d[32], pub[32], x[32], again[64];
	struct oauth_identity	 id;
	char			 err[256];

	cr_assert_eq(oauth_b64url_decode(A4_SIG, strlen(A4_SIG), sig), 64);
	cr_assert(oauth_key_verify(oauth_jwks_find(k, NULL, OAUTH_ALG_EDDSA),
	    OAUTH_ALG_EDDSA, A4_INPUT, strlen(A4_INPUT), sig, sizeof sig));
	sig[10] ^= 0x40;
	cr_assert_not(oauth_key_verify(oauth_jwks_find(k, NULL,
	    OAUTH_ALG_EDDSA), OAUTH_ALG_EDDSA, A4_INPUT, strlen(A4_INPUT), sig,
	    sizeof sig));
	/* A.1's private key gives A.1's public key and A.4's signature. */
	cr_assert_eq(oauth_b64url_decode(A4_D, strlen(A4_D), d), 32);
	cr_assert_eq(oauth_b64url_decode(A4_X, strlen(A4_X), x), 32);
	ed25519_sha512_public_key(pub, d);
	cr_assert_eq(memcmp(pub, x, 32), 0);
	ed25519_sha512_sign(pub, d, strlen(A4_INPUT),
	    (const uint8_t *)A4_INPUT, again);
	sig[10] ^= 0x40;
	cr_assert_eq(memcmp(again, sig, 64), 0);
	/* Whole: signed right, but its payload is no claims set. */
	cr_assert_eq(oauth_verify(&cfg, k, A4_INPUT "." A4_SIG, NOW, &id, err,
	    sizeof err), OAUTH_MALFORMED, "%s", err);
	oauth_jwks_free(k);
}

/* ---- tokens signed here ---- */

Test(jwt, good_tokens_of_each_algorithm)
{
	struct oauth_identity	id;

	for (size_t i = 0; i < 3; i++) {
		char	*t = mint(algs[i], NULL);

		cr_assert_eq(verify(t, &id), OAUTH_OK, "%s", algs[i]);
		cr_assert_str_eq(id.name, "alice");
		cr_assert_str_eq(id.client_id, "cli");
		cr_assert_eq(id.expires, NOW + 300);
		free(t);
	}
}

Test(jwt, expired_with_the_skew)
{
	char	claim[64];

	for (size_t i = 0; i < 3; i++) {
		snprintf(claim, sizeof claim, "\"exp\":%d", NOW - 61);
		cr_assert_eq(verify_claims(algs[i], claim), OAUTH_EXPIRED);
		snprintf(claim, sizeof claim, "\"exp\":%d", NOW - 60);
		cr_assert_eq(verify_claims(algs[i], claim), OAUTH_EXPIRED,
		    "exp + skew == now is past");
		snprintf(claim, sizeof claim, "\"exp\":%d", NOW - 59);
		cr_assert_eq(verify_claims(algs[i], claim), OAUTH_OK,
		    "within the skew");
	}
	cr_assert_eq(verify_claims("RS256", "\"exp\":1.7e9"), OAUTH_EXPIRED);
	cr_assert_eq(verify_claims("RS256", "\"exp\":1.9e9"), OAUTH_OK,
	    "a date may be a decimal");
	cr_assert_eq(verify_claims("RS256", "\"exp\":\"1900000000\""),
	    OAUTH_MALFORMED, "a date as a string");
}

Test(jwt, exp_is_required)
{
	char	*t = mint_raw("{\"alg\":\"ES256\",\"kid\":\"ec1\"}",
	    "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\",\"sub\":\"a\"}",
	    "ES256");

	cr_assert_eq(verify(t, NULL), OAUTH_MALFORMED);
	free(t);
}

Test(jwt, not_yet_valid)
{
	char	claim[64];

	snprintf(claim, sizeof claim, "\"nbf\":%d", NOW + 61);
	cr_assert_eq(verify_claims("EdDSA", claim), OAUTH_NOT_YET_VALID);
	snprintf(claim, sizeof claim, "\"nbf\":%d", NOW + 60);
	cr_assert_eq(verify_claims("EdDSA", claim), OAUTH_OK);
	cfg.clock_skew_s = 0;
	snprintf(claim, sizeof claim, "\"nbf\":%d", NOW + 1);
	cr_assert_eq(verify_claims("EdDSA", claim), OAUTH_NOT_YET_VALID);
}

Test(jwt, wrong_audience)
{
	cr_assert_eq(verify_claims("RS256", "\"aud\":\"https://other.example\""),
	    OAUTH_WRONG_AUDIENCE);
	cr_assert_eq(verify_claims("RS256", "\"aud\":\"" AUDIENCE "/\""),
	    OAUTH_WRONG_AUDIENCE, "compared exactly");
	cr_assert_eq(verify_claims("RS256", "\"aud\":[\"x\",\"" AUDIENCE "\"]"),
	    OAUTH_OK, "in a list");
	cr_assert_eq(verify_claims("RS256", "\"aud\":[\"x\",\"y\"]"),
	    OAUTH_WRONG_AUDIENCE);
	cr_assert_eq(verify_claims("RS256", "\"aud\":[]"),
	    OAUTH_WRONG_AUDIENCE);
	cr_assert_eq(verify_claims("RS256", "\"aud\":null"),
	    OAUTH_WRONG_AUDIENCE);
	cr_assert_eq(verify_claims("RS256", "\"aud\":[\"" AUDIENCE "\\u0000\"]"),
	    OAUTH_WRONG_AUDIENCE);
}

Test(jwt, wrong_issuer)
{
	cr_assert_eq(verify_claims("ES256", "\"iss\":\"https://evil.example\""),
	    OAUTH_WRONG_ISSUER);
	cr_assert_eq(verify_claims("ES256", "\"iss\":\"" ISSUER "/\""),
	    OAUTH_WRONG_ISSUER);
	cr_assert_eq(verify_claims("ES256", "\"iss\":7"), OAUTH_WRONG_ISSUER);
	cr_assert_eq(verify_claims("ES256", "\"iss\":\"" ISSUER "\\u0000x\""),
	    OAUTH_WRONG_ISSUER, "equal up to a NUL is not equal");
}

/* One bit flipped anywhere: in the signature, the claims, the header. */
Test(jwt, bad_signature)
{
	for (size_t i = 0; i < 3; i++) {
		char	*t = mint(algs[i], NULL), *flipped = flip_signature(t);

		cr_assert_eq(verify(t, NULL), OAUTH_OK);
		cr_assert_eq(verify(flipped, NULL), OAUTH_BAD_SIGNATURE, "%s",
		    algs[i]);
		free(flipped);
		free(t);
	}
}

Test(jwt, altered_claims_fail_the_signature)
{
	char	*good = mint("RS256", NULL), *sig = strrchr(good, '.');
	char	*c = xasprintf("{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"mallory\","
	    "\"exp\":%d,\"scope\":\"mcp:tools\"}", ISSUER, AUDIENCE, NOW + 300);
	char	*h = b64("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"at+jwt\"}",
	    strlen("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"at+jwt\"}"));
	char	*cb = b64(c, strlen(c)), *t = xasprintf("%s.%s%s", h, cb, sig);

	cr_assert_eq(verify(t, NULL), OAUTH_BAD_SIGNATURE);
	free(good), free(c), free(h), free(cb), free(t);
}

Test(jwt, alg_none_is_refused)
{
	const char	*claims = "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
	    "\",\"sub\":\"a\",\"exp\":1900000000}";
	char		*h = b64("{\"alg\":\"none\"}", 14);
	char		*c = b64(claims, strlen(claims));
	char		*t = xasprintf("%s.%s.", h, c);
	char		*t2 = xasprintf("%s.%s.AAAA", h, c);

	cr_assert_eq(verify(t, NULL), OAUTH_MALFORMED, "an empty signature");
	cr_assert_eq(verify(t2, NULL), OAUTH_BAD_ALG);
	free(t), free(t2), free(h);
	h = b64("{\"alg\":\"None\"}", 14);
	t = xasprintf("%s.%s.AAAA", h, c);
	cr_assert_eq(verify(t, NULL), OAUTH_BAD_ALG);
	free(t), free(h), free(c);
}

/* The classic confusion: HS256 keyed with the RSA public key (its JWK
 * n and e, as a library that takes "the key" as a string would). */
Test(jwt, hs256_with_the_public_key_is_refused)
{
	struct hmac_sha256_ctx	 ctx;
	const char		*claims = "{\"iss\":\"" ISSUER "\",\"aud\":\""
	    AUDIENCE "\",\"sub\":\"a\",\"exp\":1900000000}";
	const char		*hdr = "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}";
	char			*h = b64(hdr, strlen(hdr));
	char			*c = b64(claims, strlen(claims));
	char			*input = xasprintf("%s.%s", h, c), *pub, *s, *t;
	uint8_t			 mac[SHA256_DIGEST_SIZE];

	pub = mpz_b64(rsa_pub.n, 0);
	hmac_sha256_set_key(&ctx, strlen(pub), (const uint8_t *)pub);
	hmac_sha256_update(&ctx, strlen(input), (const uint8_t *)input);
	hmac_sha256_digest(&ctx, sizeof mac, mac);
	s = b64(mac, sizeof mac);
	t = xasprintf("%s.%s", input, s);
	cr_assert_eq(verify(t, NULL), OAUTH_BAD_ALG);
	free(h), free(c), free(input), free(pub), free(s), free(t);
}

Test(jwt, algorithm_and_key_must_agree)
{
	/* An ES256 token naming the RSA key, an RS256 one naming the EC key. */
	char	*t = mint_raw("{\"alg\":\"ES256\",\"kid\":\"rsa1\"}",
	    "{\"sub\":\"a\"}", "ES256");

	cr_assert_eq(verify(t, NULL), OAUTH_UNKNOWN_KEY);
	free(t);
	t = mint_raw("{\"alg\":\"RS256\",\"kid\":\"ec1\"}", "{\"sub\":\"a\"}",
	    "RS256");
	cr_assert_eq(verify(t, NULL), OAUTH_UNKNOWN_KEY);
	free(t);
	/* An algorithm the operator did not allow. */
	cfg.algs = OAUTH_ALG_ES256;
	t = mint("EdDSA", NULL);
	cr_assert_eq(verify(t, NULL), OAUTH_BAD_ALG);
	free(t);
}

Test(jwt, crit_and_typ)
{
	const char	*claims = "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
	    "\",\"sub\":\"a\",\"exp\":1900000000}";
	char		*t;

	t = mint_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed1\",\"crit\":[\"exp\"],"
	    "\"exp\":1}", claims, "EdDSA");
	cr_assert_eq(verify(t, NULL), OAUTH_BAD_ALG);
	free(t);
	t = mint_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed1\",\"typ\":\"dpop+jwt\"}",
	    claims, "EdDSA");
	cr_assert_eq(verify(t, NULL), OAUTH_BAD_ALG);
	free(t);
	t = mint_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed1\",\"typ\":\"JWT\"}",
	    claims, "EdDSA");
	cr_assert_eq(verify(t, NULL), OAUTH_OK);
	free(t);
	t = mint_raw("{\"alg\":\"EdDSA\",\"kid\":7}", claims, "EdDSA");
	cr_assert_eq(verify(t, NULL), OAUTH_MALFORMED);
	free(t);
}

Test(jwt, missing_scope)
{
	cfg.scopes = scopes_req;
	cfg.nscopes = 1;
	cr_assert_eq(verify_claims("ES256", NULL), OAUTH_OK);
	cr_assert_eq(verify_claims("ES256", "\"scope\":\"read mcp:tools  x\""),
	    OAUTH_OK);
	cr_assert_eq(verify_claims("ES256", "\"scope\":\"read write\""),
	    OAUTH_INSUFFICIENT_SCOPE);
	cr_assert_eq(verify_claims("ES256", "\"scope\":\"mcp:tool mcp:toolsx\""),
	    OAUTH_INSUFFICIENT_SCOPE, "whole words only");
	cr_assert_eq(verify_claims("ES256", "\"scope\":null,"
	    "\"scp\":[\"a\",\"mcp:tools\"]"), OAUTH_OK, "scp, a list");
	cr_assert_eq(verify_claims("ES256", "\"scope\":null,"
	    "\"scp\":\"mcp:tools\""), OAUTH_OK, "scp, a string");
	cr_assert_eq(verify_claims("ES256", "\"scope\":null"),
	    OAUTH_INSUFFICIENT_SCOPE);
	cr_assert_eq(oauth_http_status(OAUTH_INSUFFICIENT_SCOPE), 403);
	cr_assert_eq(oauth_http_status(OAUTH_EXPIRED), 401);
}

Test(jwt, unknown_kid)
{
	char	*t = mint_raw("{\"alg\":\"RS256\",\"kid\":\"rsa2\"}",
	    "{\"sub\":\"a\"}", "RS256");

	cr_assert_eq(verify(t, NULL), OAUTH_UNKNOWN_KEY);
	free(t);
	/* No kid: the one RSA key of the set. */
	t = mint_raw("{\"alg\":\"RS256\"}", "{\"iss\":\"" ISSUER "\",\"aud\":\""
	    AUDIENCE "\",\"sub\":\"a\",\"exp\":1900000000}", "RS256");
	cr_assert_eq(verify(t, NULL), OAUTH_OK);
	cr_assert_eq(oauth_verify(&cfg, NULL, t, NOW,
	    &(struct oauth_identity){ 0 }, (char[64]){ 0 }, 64), OAUTH_NO_KEYS);
	free(t);
}

Test(jwt, no_kid_with_two_keys_of_the_algorithm)
{
	char			 err[256], *json = test_jwks_json(), *two, *t;
	struct oauth_jwks	*k;

	/* The same set twice over, under other kids. */
	json[strlen(json) - 2] = '\0';
	two = xasprintf("%s,%s]}", json, strchr(json, '[') + 1);
	k = oauth_jwks_parse(two, strlen(two), err, sizeof err);
	cr_assert_not_null(k, "%s", err);
	cr_assert_eq(oauth_jwks_count(k), 6);
	t = mint_raw("{\"alg\":\"RS256\"}", "{\"iss\":\"" ISSUER "\",\"aud\":\""
	    AUDIENCE "\",\"sub\":\"a\",\"exp\":1900000000}", "RS256");
	cr_assert_eq(oauth_verify(&cfg, k, t, NOW, &(struct oauth_identity){ 0 },
	    err, sizeof err), OAUTH_UNKNOWN_KEY);
	free(t), free(two), free(json);
	oauth_jwks_free(k);
}

Test(jwt, malformed_base64_and_shapes)
{
	char	*t = mint("EdDSA", NULL), *bad;
	size_t	 hlen = strcspn(t, ".");

	/* '=' padding, a '+', a space, a line break: each refused. */
	bad = xasprintf("%.*s=%s", (int)hlen, t, t + hlen);
	cr_assert_eq(verify(bad, NULL), OAUTH_MALFORMED);
	free(bad);
	bad = xstrdup(t);
	bad[3] = '+';
	cr_assert_eq(verify(bad, NULL), OAUTH_MALFORMED);
	bad[3] = ' ';
	cr_assert_eq(verify(bad, NULL), OAUTH_MALFORMED);
	free(bad);
	bad = xasprintf("%s\n", t);
	cr_assert_eq(verify(bad, NULL), OAUTH_MALFORMED);
	free(bad);
	bad = xasprintf("%s.x", t);
	cr_assert_eq(verify(bad, NULL), OAUTH_MALFORMED, "four parts");
	free(bad);
	cr_assert_eq(verify("abc", NULL), OAUTH_MALFORMED);
	cr_assert_eq(verify("..", NULL), OAUTH_MALFORMED);
	cr_assert_eq(verify("", NULL), OAUTH_NO_TOKEN);
	cr_assert_eq(verify(NULL, NULL), OAUTH_NO_TOKEN);
	/* A header that is no object, or has JSON after it. */
	free(t);
	t = mint_raw("[\"alg\"]", "{}", "EdDSA");
	cr_assert_eq(verify(t, NULL), OAUTH_MALFORMED);
	free(t);
	t = mint_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed1\"}{}", "{}", "EdDSA");
	cr_assert_eq(verify(t, NULL), OAUTH_MALFORMED);
	free(t);
}

Test(jwt, strict_base64url)
{
	unsigned char	out[16];

	cr_assert_eq(oauth_b64url_decode("QQ", 2, out), 1);
	cr_assert_eq(out[0], 'A');
	cr_assert_eq(oauth_b64url_decode("QR", 2, out), -1, "unused bits set");
	cr_assert_eq(oauth_b64url_decode("QUI", 3, out), 2);
	cr_assert_eq(oauth_b64url_decode("QUJ", 3, out), -1);
	cr_assert_eq(oauth_b64url_decode("QQ==", 4, out), -1);
	cr_assert_eq(oauth_b64url_decode("Q", 1, out), -1);
	cr_assert_eq(oauth_b64url_decode("_-8", 3, out), 2);
	cr_assert_eq(out[0], 0xff);
	cr_assert_eq(out[1], 0xef);
	cr_assert_eq(oauth_b64url_decode("/+8", 3, out), -1, "base64, not url");
	cr_assert_eq(oauth_b64url_decode("QU\0I", 4, out), -1);
}

Test(jwt, oversize)
{
	char	*big = xmalloc(9000);

	memset(big, 'A', 8999);
	big[8999] = '\0';
	cr_assert_eq(verify(big, NULL), OAUTH_TOO_LARGE);
	free(big);
	cfg.max_token_bytes = 256;
	cr_assert_eq(verify_claims("RS256", NULL), OAUTH_TOO_LARGE,
	    "an RS256 token is over 256 bytes");
	cr_assert_eq(verify_claims("EdDSA", NULL), OAUTH_TOO_LARGE);
}

Test(jwt, identity_claim)
{
	struct oauth_identity	id;
	char			*t;

	cr_assert_eq(verify_claims("ES256", "\"sub\":\"\""), OAUTH_NO_IDENTITY);
	cr_assert_eq(verify_claims("ES256", "\"sub\":\"a\\nb\""),
	    OAUTH_NO_IDENTITY, "no control bytes: it goes into logs");
	cr_assert_eq(verify_claims("ES256", "\"sub\":12"), OAUTH_NO_IDENTITY);
	cr_assert_eq(verify_claims("ES256", "\"sub\":\"alice\\u0000x\""),
	    OAUTH_NO_IDENTITY, "a NUL would cut the name short");
	cr_assert_eq(verify_claims("ES256", "\"sub\":\"\xff\xfe\""),
	    OAUTH_MALFORMED, "no UTF-8");
	cfg.identity_claim = "email";
	cr_assert_eq(verify_claims("ES256", NULL), OAUTH_NO_IDENTITY);
	t = mint("ES256", "\"email\":\"alice@example.com\"");
	cr_assert_eq(verify(t, &id), OAUTH_OK);
	cr_assert_str_eq(id.name, "alice@example.com");
	free(t);
}

/* auth.limits_claim: the issuer's limits for the identity, checked as a
 * tokens file's; unusable ones refuse the token. */
Test(jwt, limits_claim)
{
	struct oauth_identity	id;
	char			*t;

	t = mint("ES256", "\"heavyd_limits\":\"max_num_agents=2\"");
	cr_assert_eq(verify(t, &id), OAUTH_OK);
	cr_assert_str_eq(id.limits, "", "read only when configured");
	free(t);
	cfg.limits_claim = "heavyd_limits";
	t = mint("ES256", "\"heavyd_limits\":\"max_num_agents=2 "
	    "tokens_per_day=5000\"");
	cr_assert_eq(verify(t, &id), OAUTH_OK);
	cr_assert_str_eq(id.limits, "max_num_agents=2 tokens_per_day=5000");
	free(t);
	cr_assert_eq(verify_claims("ES256", NULL), OAUTH_OK, "none: fine");
	cr_assert_eq(verify_claims("ES256", "\"heavyd_limits\":\"cores=9\""),
	    OAUTH_MALFORMED, "an unknown limit");
	cr_assert_eq(verify_claims("ES256", "\"heavyd_limits\":\"max_num_"
	    "agents=-1\""), OAUTH_MALFORMED);
	cr_assert_eq(verify_claims("ES256", "\"heavyd_limits\":7"),
	    OAUTH_MALFORMED, "not a string");
	cfg.limits_claim = NULL;
}

/* Whether text holds any 12 bytes of the token in a row. */
static bool
holds_part_of(const char *text, const char *token)
{
	for (size_t i = 0; i + 12 <= strlen(token); i++)
		if (memmem(text, strlen(text), token + i, 12) != NULL)
			return true;
	return false;
}

static struct buf	logged;

static void
log_capture(enum log_level level, const struct log_fields *f,
    const char *msg)
{
	(void)level;
	(void)f;
	buf_printf(&logged, "%s\n", msg);
}

/* Neither a refusal's reason nor the log (the JWKS fetch's included)
 * carries any part of a token. */
Test(jwt, no_token_in_errors_or_logs)
{
	const char		*extras[] = { NULL, "\"exp\":1", "\"nbf\":4000000000",
	    "\"aud\":\"x\"", "\"iss\":\"y\"", "\"sub\":\"\"",
	    "\"scope\":\"none\"" };
	struct oauth_identity	 id;
	struct oauth		*o;
	char			 err[512], *t, *bad;

	cfg.scopes = scopes_req;
	cfg.nscopes = 1;
	buf_init(&logged, 0);
	log_set_hook(log_capture);
	cfg.jwks_url = "http://127.0.0.1:1/jwks";	/* nothing listens */
	cfg.jwks_min_refetch_s = 0;
	o = oauth_new(&cfg, err, sizeof err);
	cr_assert_not_null(o, "%s", err);
	for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
		t = mint(algs[i % 3], extras[i]);
		bad = flip_signature(t);
		cr_assert_neq(oauth_verify(&cfg, jwks, bad, NOW, &id, err,
		    sizeof err), OAUTH_OK);
		cr_assert_not(holds_part_of(err, bad), "%s", err);
		oauth_verify(&cfg, jwks, t, NOW, &id, err, sizeof err);
		cr_assert_not(holds_part_of(err, t), "%s", err);
		/* Through the state, which fetches (and fails, and logs). */
		cr_assert_neq(oauth_check(o, t, NOW, &id, err, sizeof err),
		    OAUTH_OK);
		cr_assert_not(holds_part_of(err, t), "%s", err);
		cr_assert_not(holds_part_of(buf_cstr(&logged), t), "%s",
		    buf_cstr(&logged));
		cr_assert_not(holds_part_of(buf_cstr(&logged), bad));
		free(t), free(bad);
	}
	log_set_hook(NULL);
	cr_assert(strstr(buf_cstr(&logged), "jwks_url") != NULL,
	    "the failed fetches were logged: %s", buf_cstr(&logged));
	buf_free(&logged);
	oauth_free(o);
}

/* ---- the JWKS ---- */

static const char *
jwks_error(const char *json)
{
	static char		 err[256];
	struct oauth_jwks	*k = oauth_jwks_parse(json, strlen(json), err,
	    sizeof err);

	oauth_jwks_free(k);
	return k ? NULL : err;
}

/* A JWKS of a fresh 1024-bit RSA key: its error. */
static const char *
short_rsa_error(void)
{
	struct rsa_public_key	 pub;
	struct rsa_private_key	 key;
	char			*n, *json;
	const char		*err;

	rsa_public_key_init(&pub);
	rsa_private_key_init(&key);
	mpz_set_ui(pub.e, 65537);
	cr_assert(rsa_generate_keypair(&pub, &key, NULL, rnd, NULL, NULL,
	    1024, 0));
	n = mpz_b64(pub.n, 0);
	json = xasprintf("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\","
	    "\"n\":\"%s\"}]}", n);
	err = jwks_error(json);
	free(n), free(json);
	rsa_public_key_clear(&pub);
	rsa_private_key_clear(&key);
	return err;
}

Test(jwt, jwks_refusals)
{
	cr_assert_not_null(jwks_error("{\"keys\":[]}"));
	cr_assert_not_null(jwks_error("{\"keys\":{}}"));
	cr_assert_not_null(jwks_error("[]"));
	cr_assert_null(jwks_error(A3_JWKS " \n"), "a newline after is fine");
	cr_assert_not_null(jwks_error(A3_JWKS "x"), "junk after");
	cr_assert_not_null(jwks_error("{\"keys\":[{\"kty\":\"oct\","
	    "\"k\":\"AAAA\"}]}"), "a shared secret is no key here");
	cr_assert_not_null(short_rsa_error(), "a 1024-bit modulus");
	/* y changed: off the curve. */
	cr_assert_not_null(jwks_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
	    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
	    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1\"}]}"));
	cr_assert_not_null(jwks_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\","
	    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
	    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}"));
	cr_assert_not_null(jwks_error("{\"keys\":[{\"kty\":\"OKP\","
	    "\"crv\":\"Ed25519\",\"use\":\"enc\",\"x\":\"" A4_X "\"}]}"));
	cr_assert_not_null(jwks_error("{\"keys\":[{\"kty\":\"OKP\","
	    "\"crv\":\"Ed25519\",\"alg\":\"ES256\",\"x\":\"" A4_X "\"}]}"),
	    "an alg that does not fit the key");
	cr_assert_null(jwks_error("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"},"
	    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"key_ops\":[\"verify\"],"
	    "\"x\":\"" A4_X "\"}]}"), "unusable keys are skipped");
}

static char	jwks_path[256];

static void
write_jwks(const char *json)
{
	FILE	*f = fopen(jwks_path, "w");

	cr_assert_not_null(f);
	fputs(json, f);
	fclose(f);
}

/* The file, re-read on SIGHUP (oauth_reload): a rotated key is taken,
 * a broken file leaves the keys in use. */
Test(jwt, jwks_file_and_reload)
{
	struct oauth_identity	 id;
	struct oauth		*o;
	char			 err[256], *json = test_jwks_json(), *t;
	int			 fd;

	unit_tmp(jwks_path, sizeof jwks_path, "heavyd-jwks");
	cr_assert_neq(fd = mkstemp(jwks_path), -1);
	close(fd);
	write_jwks(A3_JWKS);
	cfg.jwks_file = jwks_path;
	o = oauth_new(&cfg, err, sizeof err);
	cr_assert_not_null(o, "%s", err);
	t = mint("EdDSA", NULL);
	cr_assert_eq(oauth_check(o, t, NOW, &id, err, sizeof err),
	    OAUTH_UNKNOWN_KEY);
	write_jwks(json);
	cr_assert_eq(oauth_reload(o, err, sizeof err), 0, "%s", err);
	cr_assert_eq(oauth_check(o, t, NOW, &id, err, sizeof err), OAUTH_OK,
	    "%s", err);
	write_jwks("{\"keys\":");
	cr_assert_eq(oauth_reload(o, err, sizeof err), -1);
	cr_assert_eq(oauth_check(o, t, NOW, &id, err, sizeof err), OAUTH_OK,
	    "the keys in use stay");
	unlink(jwks_path);
	cr_assert_eq(oauth_reload(o, err, sizeof err), -1);
	cr_assert_null(oauth_new(&cfg, err, sizeof err), "no file, no start");
	free(t), free(json);
	oauth_free(o);
}

/* SIGHUP's new configuration: its settings are copied (the old
 * configuration is freed), a file that does not load keeps the old ones. */
Test(jwt, update_with_new_settings)
{
	struct oauth_identity	 id;
	struct oauth_config	 c = cfg;
	struct oauth		*o;
	char			 err[256], *json = test_jwks_json(), *t;
	char			*aud = xstrdup(AUDIENCE), *file;
	int			 fd;

	unit_tmp(jwks_path, sizeof jwks_path, "heavyd-jwks");
	cr_assert_neq(fd = mkstemp(jwks_path), -1);
	close(fd);
	write_jwks(json);
	file = xstrdup(jwks_path);
	c.jwks_file = file;
	c.audience = aud;
	cr_assert_not_null(o = oauth_new(&c, err, sizeof err), "%s", err);
	free(aud);	/* as a reload frees the configuration */
	free(file);
	t = mint("ES256", NULL);
	cr_assert_eq(oauth_check(o, t, NOW, &id, err, sizeof err), OAUTH_OK,
	    "%s", err);
	c.jwks_file = jwks_path;
	c.audience = "https://elsewhere.example/mcp";
	cr_assert_eq(oauth_update(o, &c, err, sizeof err), 0, "%s", err);
	cr_assert_eq(oauth_check(o, t, NOW, &id, err, sizeof err),
	    OAUTH_WRONG_AUDIENCE);
	c.audience = AUDIENCE;
	c.jwks_file = "/nonexistent/jwks.json";
	cr_assert_eq(oauth_update(o, &c, err, sizeof err), -1);
	cr_assert_eq(oauth_check(o, t, NOW, &id, err, sizeof err),
	    OAUTH_WRONG_AUDIENCE, "the settings in force stay");
	unlink(jwks_path);
	free(t), free(json);
	oauth_free(o);
}

/* A loopback HTTP server in a thread: each connection gets body. */
static int	 srv_fd, srv_count;
static char	*srv_body;
static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;

static void *
srv_main(void *arg)
{
	char	req[4096], *resp;
	int	c;

	(void)arg;
	while ((c = accept4(srv_fd, NULL, NULL, SOCK_CLOEXEC)) != -1) {
		/* Read the request's head (a GET has no body). */
		size_t	n = 0;
		ssize_t	r;

		while (n < sizeof req - 1 && (r = read(c, req + n,
		    sizeof req - 1 - n)) > 0) {
			n += (size_t)r;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n") != NULL)
				break;
		}
		pthread_mutex_lock(&srv_lock);
		srv_count++;
		resp = xasprintf("HTTP/1.1 200 OK\r\nContent-Type: "
		    "application/json\r\nContent-Length: %zu\r\nConnection: "
		    "close\r\n\r\n%s", strlen(srv_body), srv_body);
		pthread_mutex_unlock(&srv_lock);
		(void)!write(c, resp, strlen(resp));
		free(resp);
		close(c);
	}
	return NULL;
}

static void
srv_set(const char *body)
{
	pthread_mutex_lock(&srv_lock);
	free(srv_body);
	srv_body = xstrdup(body);
	pthread_mutex_unlock(&srv_lock);
}

static int
srv_fetches(void)
{
	int	n;

	pthread_mutex_lock(&srv_lock);
	n = srv_count;
	pthread_mutex_unlock(&srv_lock);
	return n;
}

static pthread_t	srv_thread;

/* The server, listening on a free loopback port: its JWKS URL in url. */
static void
srv_start(const char *body, char *url, size_t len)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET };
	socklen_t		slen = sizeof sin;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(srv_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    -1);
	cr_assert_eq(bind(srv_fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(srv_fd, 8), 0);
	cr_assert_eq(getsockname(srv_fd, (struct sockaddr *)&sin, &slen), 0);
	snprintf(url, len, "http://127.0.0.1:%d/jwks", ntohs(sin.sin_port));
	srv_set(body);
	cr_assert_eq(pthread_create(&srv_thread, NULL, srv_main, NULL), 0);
}

static void
srv_stop(void)
{
	shutdown(srv_fd, SHUT_RDWR);	/* accept() returns */
	close(srv_fd);
	pthread_join(srv_thread, NULL);
	free(srv_body);
	srv_body = NULL;
}

/*
 * The URL: fetched at the start; a token naming a key not seen yet fetches
 * again (the issuer rotated), but not more than every jwks_min_refetch_s;
 * keys older than jwks_max_age_s are fetched again.
 */
Test(jwt, jwks_url_refetch_on_unknown_kid)
{
	struct oauth_identity	 id;
	struct oauth		*o;
	char			 err[256], url[64], *json = test_jwks_json(), *t;
	time_t			 now = time(NULL);

	srv_start(A3_JWKS, url, sizeof url);
	cfg.jwks_url = url;
	cfg.jwks_max_age_s = 3600;
	cfg.jwks_min_refetch_s = 60;
	cfg.jwks_timeout_s = 30;
	o = oauth_new(&cfg, err, sizeof err);
	cr_assert_not_null(o, "%s", err);
	cr_assert_eq(srv_fetches(), 1);
	cr_assert_eq(oauth_jwks_count(o->jwks), 1);

	/* Rotated: the token's kid is new; within the minimum gap, no fetch. */
	srv_set(json);
	t = mint_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed1\"}", "{\"iss\":\"" ISSUER
	    "\",\"aud\":\"" AUDIENCE "\",\"sub\":\"bob\",\"exp\":4000000000}",
	    "EdDSA");
	cr_assert_eq(oauth_check(o, t, now + 10, &id, err, sizeof err),
	    OAUTH_UNKNOWN_KEY);
	cr_assert_eq(srv_fetches(), 1, "rate-limited");
	cr_assert_eq(oauth_check(o, t, now + 61, &id, err, sizeof err),
	    OAUTH_OK, "%s", err);
	cr_assert_str_eq(id.name, "bob");
	cr_assert_eq(srv_fetches(), 2);
	/* Known keys need no fetch, until they age out. */
	cr_assert_eq(oauth_check(o, t, now + 200, &id, err, sizeof err),
	    OAUTH_OK);
	cr_assert_eq(srv_fetches(), 2);
	cr_assert_eq(oauth_check(o, t, now + 61 + 3600, &id, err, sizeof err),
	    OAUTH_OK);
	cr_assert_eq(srv_fetches(), 3, "aged out");

	srv_stop();
	/* The server gone: the keys in use stay, and the fetch error shows. */
	cr_assert_eq(oauth_reload(o, err, sizeof err), -1);
	cr_assert_eq(oauth_check(o, t, now + 61 + 3600, &id, err, sizeof err),
	    OAUTH_OK);
	free(t), free(json);
	oauth_free(o);
}

static bool	woke, hung;

static void
wake(void *arg)
{
	(void)arg;
	woke = true;
	event_base_loopbreak(ev_base);
}

/* A waiter that must never be called. */
static void
never(void *arg)
{
	(void)arg;
	hung = true;
}

static void
hang_cb(evutil_socket_t fd, short kind, void *arg)
{
	(void)fd, (void)kind, (void)arg;
	hung = true;
	event_base_loopbreak(ev_base);
}

/* The loop, until a waiter is woken (the 60 s only catch a hang). */
static void
run_until_woken(void)
{
	struct event	*guard = evtimer_new(ev_base, hang_cb, NULL);
	struct timeval	 limit = { 60, 0 };

	hung = false;
	evtimer_add(guard, &limit);
	while (!woke && !hung)
		event_base_loop(ev_base, EVLOOP_ONCE);
	event_free(guard);
	cr_assert(woke, "the fetch never ended");
	woke = false;
}

/*
 * On the event loop, a fetch never holds up a request: oauth_check answers
 * with the keys it has, and who waits for the fetch is told when it ends.
 */
Test(jwt, jwks_url_fetch_on_the_event_loop)
{
	struct oauth_identity	 id;
	struct oauth		*o;
	char			 err[256], url[64], *json = test_jwks_json(), *t;
	char			*t9;
	time_t			 now = time(NULL);

	srv_start(A3_JWKS, url, sizeof url);
	cfg.jwks_url = url;
	cfg.jwks_max_age_s = 3600;
	cfg.jwks_min_refetch_s = 60;
	cfg.jwks_timeout_s = 30;
	o = oauth_new(&cfg, err, sizeof err);	/* at the start: blocking */
	cr_assert_not_null(o, "%s", err);
	cr_assert_eq(srv_fetches(), 1);
	cr_assert_not_null(ev_base = event_base_new());

	srv_set(json);
	t = mint("EdDSA", NULL);
	cr_assert_eq(oauth_check(o, t, now + 61, &id, err, sizeof err),
	    OAUTH_UNKNOWN_KEY, "answered before the fetch");
	cr_assert(oauth_fetching(o));
	cr_assert_eq(oauth_wait(o, wake, NULL), 0);
	run_until_woken();
	cr_assert_not(oauth_fetching(o));
	cr_assert_eq(srv_fetches(), 2);
	cr_assert_eq(oauth_check(o, t, now + 61, &id, err, sizeof err),
	    OAUTH_OK, "%s", err);

	/* Another unknown kid, too soon: no fetch, nothing to wait for. */
	t9 = mint_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed9\"}", "{}", "EdDSA");
	cr_assert_eq(oauth_check(o, t9, now + 62, &id, err, sizeof err),
	    OAUTH_UNKNOWN_KEY);
	cr_assert_not(oauth_fetching(o));
	cr_assert_eq(oauth_wait(o, wake, NULL), -1);

	/* Aged out: the token passes at once, and the keys are renewed. */
	cr_assert_eq(oauth_check(o, t, now + 61 + 3600, &id, err, sizeof err),
	    OAUTH_OK);
	cr_assert(oauth_fetching(o));
	cr_assert_eq(oauth_wait(o, wake, NULL), 0);
	cr_assert_eq(oauth_wait(o, never, NULL), 0);
	oauth_unwait(o, never, NULL);		/* its request went away */
	run_until_woken();
	cr_assert_not(hung, "a waiter that left was called");
	cr_assert_eq(srv_fetches(), 3);

	/* A fetch that fails keeps the keys. */
	srv_stop();
	cr_assert_eq(oauth_check(o, t, now + 61 + 7200, &id, err, sizeof err),
	    OAUTH_OK);
	cr_assert_eq(oauth_wait(o, wake, NULL), 0);
	run_until_woken();
	cr_assert_eq(oauth_check(o, t, now + 61 + 7201, &id, err, sizeof err),
	    OAUTH_OK);

	/* Freed while a fetch runs: it is cancelled, never called back. */
	cr_assert_eq(oauth_check(o, t, now + 61 + 10800, &id, err, sizeof err),
	    OAUTH_OK);
	cr_assert(oauth_fetching(o));
	cr_assert_eq(oauth_wait(o, never, NULL), 0);
	oauth_free(o);
	cr_assert_eq(event_base_loop(ev_base, EVLOOP_NONBLOCK), 1,
	    "no event is left");
	cr_assert_not(hung);
	event_base_free(ev_base);
	ev_base = NULL;
	free(t), free(t9), free(json);
}

Test(jwt, jwks_fetch_size_cap_and_status)
{
	char	err[256];
	size_t	len;

	cr_assert_null(oauth_jwks_fetch("file:///etc/passwd", 5, 1 << 20, &len,
	    err, sizeof err), "http(s) only");
	cr_assert_null(oauth_jwks_fetch("http://127.0.0.1:1/jwks", 5, 1 << 20,
	    &len, err, sizeof err));
	cr_assert(strncmp(err, "jwks_url: ", 10) == 0, "%s", err);
}

/* ---- what a refusal says ---- */

Test(jwt, www_authenticate)
{
	char	buf[512];
	char	*scopes[] = { "mcp:tools", "mcp:read" };
	const char *meta = "https://heavyd.example.com/.well-known/"
	    "oauth-protected-resource/mcp";

	cr_assert_eq(oauth_www_authenticate(&cfg, OAUTH_NO_TOKEN, meta, buf,
	    sizeof buf), 0);
	cr_assert_str_eq(buf, "Bearer resource_metadata=\"https://heavyd."
	    "example.com/.well-known/oauth-protected-resource/mcp\"");
	cfg.scopes = scopes;
	cfg.nscopes = 2;
	oauth_www_authenticate(&cfg, OAUTH_EXPIRED, meta, buf, sizeof buf);
	cr_assert_str_eq(buf, "Bearer error=\"invalid_token\", "
	    "resource_metadata=\"https://heavyd.example.com/.well-known/"
	    "oauth-protected-resource/mcp\", scope=\"mcp:tools mcp:read\"");
	oauth_www_authenticate(&cfg, OAUTH_INSUFFICIENT_SCOPE, meta, buf,
	    sizeof buf);
	cr_assert_str_eq(buf, "Bearer error=\"insufficient_scope\", "
	    "resource_metadata=\"https://heavyd.example.com/.well-known/"
	    "oauth-protected-resource/mcp\", scope=\"mcp:tools mcp:read\"");
	cfg.nscopes = 0;
	oauth_www_authenticate(&cfg, OAUTH_NO_TOKEN, NULL, buf, sizeof buf);
	cr_assert_str_eq(buf, "Bearer");
	cr_assert_eq(oauth_www_authenticate(&cfg, OAUTH_EXPIRED, meta, buf, 20),
	    -1, "does not fit");
}

Test(jwt, protected_resource_metadata)
{
	char			*scopes[] = { "mcp:tools" };
	struct json_object	*o, *v;
	char			*s;

	cfg.scopes = scopes;
	cfg.nscopes = 1;
	s = oauth_metadata_json(&cfg);
	o = json_tokener_parse(s);
	cr_assert_not_null(o, "%s", s);
	cr_assert(json_object_object_get_ex(o, "resource", &v));
	cr_assert_str_eq(json_object_get_string(v), AUDIENCE);
	cr_assert(json_object_object_get_ex(o, "authorization_servers", &v));
	cr_assert_eq(json_object_array_length(v), 1);
	cr_assert_str_eq(json_object_get_string(
	    json_object_array_get_idx(v, 0)), ISSUER);
	cr_assert(json_object_object_get_ex(o, "scopes_supported", &v));
	cr_assert_str_eq(json_object_get_string(
	    json_object_array_get_idx(v, 0)), "mcp:tools");
	cr_assert(json_object_object_get_ex(o, "bearer_methods_supported", &v));
	cr_assert_str_eq(json_object_to_json_string_ext(v,
	    JSON_C_TO_STRING_PLAIN), "[\"header\"]");
	json_object_put(o);
	free(s);
}

Test(jwt, metadata_url)
{
	struct { const char *resource, *url, *path; } cases[] = {
		{ "https://h.example/mcp", "https://h.example/.well-known/"
		  "oauth-protected-resource/mcp",
		  "/.well-known/oauth-protected-resource/mcp" },
		{ "https://h.example:8443", "https://h.example:8443/.well-known/"
		  "oauth-protected-resource",
		  "/.well-known/oauth-protected-resource" },
		{ "http://127.0.0.1:8080/", "http://127.0.0.1:8080/.well-known/"
		  "oauth-protected-resource",
		  "/.well-known/oauth-protected-resource" },
		{ "https://h.example/a/mcp?x=1", "https://h.example/.well-known/"
		  "oauth-protected-resource/a/mcp?x=1",
		  "/.well-known/oauth-protected-resource/a/mcp?x=1" },
	};
	char	*s;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		s = oauth_metadata_url(cases[i].resource, false);
		cr_assert_str_eq(s, cases[i].url);
		free(s);
		s = oauth_metadata_url(cases[i].resource, true);
		cr_assert_str_eq(s, cases[i].path);
		free(s);
	}
	cr_assert_null(oauth_metadata_url("ftp://h/mcp", false));
	cr_assert_null(oauth_metadata_url("https://h/mcp#f", false));
	cr_assert_null(oauth_metadata_url("https:///mcp", false));
}

/* ---- the configuration ---- */

static int
load_config(const char *yaml, struct heavy_config *c, char *err, size_t len)
{
	char	path[256];
	int	fd, rc;

	unit_tmp(path, sizeof path, "heavyd-authconf");
	cr_assert_neq(fd = mkstemp(path), -1);
	cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	config_defaults(c);
	rc = config_load_file(c, path, err, len);
	unlink(path);
	if (rc == 0)
		rc = config_check(c, err, len);
	return rc;
}

Test(jwt, auth_config_keys)
{
	struct heavy_config	c;
	struct oauth_config	o;
	char			err[512];

	cr_assert_eq(load_config("auth:\n  mode: oauth\n"
	    "  issuer: https://as.example.com\n"
	    "  audience: https://heavyd.example.com/mcp\n"
	    "  jwks_url: https://as.example.com/jwks\n"
	    "  identity_claim: email\n"
	    "  scopes: \"mcp:tools  mcp:read\"\n"
	    "  clock_skew: 30\n  max_token_bytes: 4096\n  jwks_max_age: 600\n",
	    &c, err, sizeof err), 0, "%s", err);
	oauth_config_from(&o, &c);
	cr_assert_str_eq(o.issuer, "https://as.example.com");
	cr_assert_str_eq(o.audience, "https://heavyd.example.com/mcp");
	cr_assert_str_eq(o.jwks_url, "https://as.example.com/jwks");
	cr_assert_null(o.jwks_file);
	cr_assert_str_eq(o.identity_claim, "email");
	cr_assert_eq(o.nscopes, 2);
	cr_assert_str_eq(o.scopes[0], "mcp:tools");
	cr_assert_str_eq(o.scopes[1], "mcp:read");
	cr_assert_eq(o.clock_skew_s, 30);
	cr_assert_eq(o.max_token_bytes, 4096);
	cr_assert_eq(o.jwks_max_age_s, 600);
	cr_assert_eq(o.jwks_min_refetch_s, 60, "the default");
	config_clear(&c);

	config_defaults(&c);
	cr_assert_eq(c.auth_clock_skew_s, 60);
	cr_assert_null(c.auth_mode);
	config_clear(&c);
}

Test(jwt, auth_config_mistakes)
{
	struct heavy_config	c;
	char			err[512];

	cr_assert_eq(load_config("auth:\n  mode: oauth\n"
	    "  audience: https://h/mcp\n  jwks_file: /x\n", &c, err,
	    sizeof err), -1);
	cr_assert(strstr(err, "auth.issuer") != NULL, "%s", err);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  mode: oauth\n  issuer: x\n"
	    "  audience: https://h/mcp\n", &c, err, sizeof err), -1);
	cr_assert(strstr(err, "jwks") != NULL, "%s", err);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  mode: oauth\n  issuer: x\n"
	    "  audience: https://h/mcp\n  jwks_file: /x\n"
	    "  jwks_url: https://h/j\n", &c, err, sizeof err), -1,
	    "one of the two");
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  mode: oauth\n  issuer: x\n"
	    "  audience: not-a-url\n  jwks_file: /x\n", &c, err, sizeof err),
	    -1);
	config_clear(&c);
	/* Keys over plain http from elsewhere: anyone on the path could
	 * hand heavyd their own. */
	cr_assert_eq(load_config("auth:\n  mode: oauth\n  issuer: x\n"
	    "  audience: https://h/mcp\n  jwks_url: http://as.example/jwks\n",
	    &c, err, sizeof err), -1);
	cr_assert(strstr(err, "https") != NULL, "%s", err);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  mode: oauth\n  issuer: x\n"
	    "  audience: https://h/mcp\n  jwks_url: http://127.0.0.1.evil/j\n",
	    &c, err, sizeof err), -1);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  mode: oauth\n  issuer: x\n"
	    "  audience: https://h/mcp\n  jwks_url: http://127.0.0.1:9/jwks\n",
	    &c, err, sizeof err), 0, "%s", err);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  mode: magic\n", &c, err, sizeof err),
	    -1);
	cr_assert(strstr(err, "auth.mode") != NULL, "%s", err);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  scopes: [\"a\\\"b\"]\n", &c, err,
	    sizeof err), -1);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  clock_skew: 99999\n", &c, err,
	    sizeof err), -1);
	config_clear(&c);
	cr_assert_eq(load_config("auth:\n  issuerr: x\n", &c, err, sizeof err),
	    -1);
	cr_assert(strstr(err, "auth.issuer") != NULL, "did you mean: %s", err);
	config_clear(&c);
}

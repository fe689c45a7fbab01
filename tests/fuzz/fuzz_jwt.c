/*
 * The OAuth resource server's parsers (supervisor/oauth.c, jwk.c).  The
 * first byte picks what the rest is:
 *   0: a JWKS document;
 *   1: a bearer token, checked against RFC 7515 A.3's and RFC 8037's keys;
 *   2: a JOSE header, a newline, a claims set: signed here with RFC 8037's
 *      Ed25519 key, so the claims checks run behind a valid signature.
 */
#include <time.h>

#include <nettle/eddsa.h>

#include "fuzz.h"

#include "../../common/common.h"
#include "../../supervisor/oauth.h"

#define JWKS	"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec\"," \
	"\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\"," \
	"\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}," \
	"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\"," \
	"\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}"
#define ED_D	"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"

static struct oauth_jwks	*keys;
static unsigned char		 ed_d[32], ed_x[32];
static char			*scopes[] = { "mcp:tools" };
static const struct oauth_config cfg = {
	.issuer = "https://as.example", .audience = "https://rs.example/mcp",
	.scopes = scopes, .nscopes = 1, .clock_skew_s = 60,
	.max_token_bytes = 8192,
};

static void
fuzz_init(void)
{
	char	err[256];

	keys = oauth_jwks_parse(JWKS, strlen(JWKS), err, sizeof err);
	if (keys == NULL ||
	    oauth_b64url_decode(ED_D, strlen(ED_D), ed_d) != 32)
		abort();
	ed25519_sha512_public_key(ed_x, ed_d);
}

static void
fuzz_token(const char *token)
{
	struct oauth_identity	id;
	char			err[256], hdr[512];

	oauth_verify(&cfg, keys, token, 1800000000, &id, err, sizeof err);
	oauth_www_authenticate(&cfg, oauth_verify(&cfg, keys, token,
	    1800000000, &id, err, sizeof err), "https://rs.example/.well-known/"
	    "oauth-protected-resource/mcp", hdr, sizeof hdr);
}

/* header '\n' claims, signed with the Ed25519 key. */
static void
fuzz_signed(const char *s, size_t len)
{
	const char	*nl = memchr(s, '\n', len);
	unsigned char	 sig[ED25519_SIGNATURE_SIZE];
	char		*h, *c, *input, *sb, *token;

	if (nl == NULL)
		return;
	h = oauth_b64url_encode(s, (size_t)(nl - s));
	c = oauth_b64url_encode(nl + 1, len - (size_t)(nl + 1 - s));
	input = xasprintf("%s.%s", h, c);
	ed25519_sha512_sign(ed_x, ed_d, strlen(input), (uint8_t *)input, sig);
	sb = oauth_b64url_encode(sig, sizeof sig);
	token = xasprintf("%s.%s", input, sb);
	fuzz_token(token);
	free(h), free(c), free(input), free(sb), free(token);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct oauth_jwks	*k;
	char			 err[256], *s;

	if (keys == NULL)
		fuzz_init();
	if (len == 0)
		return 0;
	s = fuzz_cstr(data + 1, len - 1);
	switch (data[0] % 3) {
	case 0:
		k = oauth_jwks_parse(s, len - 1, err, sizeof err);
		oauth_jwks_free(k);
		break;
	case 1:
		fuzz_token(s);
		break;
	default:
		fuzz_signed(s, len - 1);
		break;
	}
	free(s);
	return 0;
}

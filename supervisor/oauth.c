/*
 * heavyd as an OAuth 2.1 resource server: a JWT access token (RFC 9068,
 * RFC 7519) checked against the authorization server's keys, its claims
 * against the configuration; the protected-resource metadata (RFC 9728)
 * and the WWW-Authenticate challenges (RFC 6750) of a refusal.  The
 * signature is checked before any claim is read.  A token never reaches a
 * log or an error message; the buffers it was decoded into are wiped.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "supervisor.h"
#include "oauth.h"

#define OAUTH_JSON_DEPTH	8	/* a JOSE header or a claims set */
#define OAUTH_DEFAULT_MAX_TOKEN	8192

/* A token cut at its dots, the parts decoded as they are needed. */
struct jwt {
	const char		*token;
	size_t			 len;
	size_t			 dot1, dot2;	/* header.payload.signature */
	unsigned char		*scratch;	/* decoded parts, wiped */
	size_t			 scratch_size;
	struct json_object	*header;
	struct json_object	*claims;
	unsigned		 alg;
	const char		*kid;
};

static enum oauth_result
oauth_fail(enum oauth_result r, char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s: %s", oauth_result_name(r), why);
	return r;
}

/* A JSON object from base64url text: all of it, strictly, not too deep. */
static struct json_object *
oauth_json_part(struct jwt *t, const char *b64, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*o;
	long			 n;

	if ((n = oauth_b64url_decode(b64, len, t->scratch)) <= 0 ||
	    memchr(t->scratch, '\0', (size_t)n) != NULL)
		return NULL;
	if ((tok = json_tokener_new_ex(OAUTH_JSON_DEPTH)) == NULL)
		fatalx("out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, (const char *)t->scratch, (int)n);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != (size_t)n ||
	    !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	explicit_bzero(t->scratch, (size_t)n);
	return o;
}

/* header.payload.signature: three non-empty parts, two dots. */
static enum oauth_result
oauth_split(struct jwt *t, const struct oauth_config *cfg, const char *token,
    char *err, size_t errlen)
{
	size_t	max = cfg->max_token_bytes ? cfg->max_token_bytes :
	    OAUTH_DEFAULT_MAX_TOKEN;
	const char	*d1, *d2;

	memset(t, 0, sizeof *t);
	if (token == NULL || *token == '\0')
		return oauth_fail(OAUTH_NO_TOKEN, err, errlen, "no token");
	t->token = token;
	if ((t->len = strnlen(token, max + 1)) > max)
		return oauth_fail(OAUTH_TOO_LARGE, err, errlen, "larger than "
		    "auth.max_token_bytes");
	if ((d1 = memchr(token, '.', t->len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', t->len - (size_t)(d1 + 1 - token))) ==
	    NULL || memchr(d2 + 1, '.', t->len - (size_t)(d2 + 1 - token)))
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "not a JWS in "
		    "compact form (three parts)");
	t->dot1 = (size_t)(d1 - token);
	t->dot2 = (size_t)(d2 - token);
	if (t->dot1 == 0 || t->dot2 == t->dot1 + 1 || t->dot2 + 1 == t->len)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "an empty part");
	t->scratch_size = t->len;
	t->scratch = xmalloc(t->scratch_size);
	return OAUTH_OK;
}

static void
oauth_jwt_clear(struct jwt *t)
{
	if (t->scratch != NULL)
		explicit_bzero(t->scratch, t->scratch_size);
	free(t->scratch);
	json_object_put(t->header);
	json_object_put(t->claims);
	memset(t, 0, sizeof *t);
}

/* A JSON string as a C string; NULL when it is none, or holds a NUL
 * ("alice\u0000x" must not pass for "alice"). */
static const char *
oauth_cstr(struct json_object *v)
{
	const char	*s;

	if (!json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	return strlen(s) == (size_t)json_object_get_string_len(v) ? s : NULL;
}

static const char *
oauth_str(struct json_object *o, const char *name)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, name, &v))
		return NULL;
	return oauth_cstr(v);
}

/* An access token's typ, when it has one (RFC 9068 2.1; "JWT" too, which
 * many issuers still send): not an ID token's or a DPoP proof's. */
static bool
oauth_typ_ok(const char *typ)
{
	return strcasecmp(typ, "at+jwt") == 0 ||
	    strcasecmp(typ, "application/at+jwt") == 0 ||
	    strcasecmp(typ, "JWT") == 0;
}

/*
 * The JOSE header: alg among those allowed (never "none", never an HMAC:
 * a public key is no shared secret), no crit (no extension is understood
 * here, RFC 7515 4.1.11), an access token's typ.
 */
static enum oauth_result
oauth_header(struct jwt *t, const struct oauth_config *cfg, char *err,
    size_t errlen)
{
	static const struct { const char *name; unsigned alg; } algs[] = {
		{ "RS256", OAUTH_ALG_RS256 }, { "ES256", OAUTH_ALG_ES256 },
		{ "EdDSA", OAUTH_ALG_EDDSA } };
	unsigned	 allowed = cfg->algs ? cfg->algs : OAUTH_ALG_ALL;
	const char	*alg, *typ;

	if ((t->header = oauth_json_part(t, t->token, t->dot1)) == NULL)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "the header is "
		    "no base64url JSON object");
	if ((alg = oauth_str(t->header, "alg")) == NULL)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "no alg");
	for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
		if (strcmp(alg, algs[i].name) == 0)
			t->alg = algs[i].alg & allowed;
	if (t->alg == 0)
		return oauth_fail(OAUTH_BAD_ALG, err, errlen, "an algorithm "
		    "not allowed (RS256, ES256 and EdDSA are)");
	if (json_object_object_get_ex(t->header, "crit", NULL))
		return oauth_fail(OAUTH_BAD_ALG, err, errlen, "a crit header");
	if (json_object_object_get_ex(t->header, "typ", NULL) &&
	    ((typ = oauth_str(t->header, "typ")) == NULL || !oauth_typ_ok(typ)))
		return oauth_fail(OAUTH_BAD_ALG, err, errlen, "a typ that is "
		    "no access token's");
	if (json_object_object_get_ex(t->header, "kid", NULL) &&
	    (t->kid = oauth_str(t->header, "kid")) == NULL)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "a kid that is "
		    "no string");
	return OAUTH_OK;
}

/* The signature over header.payload, by the key the header names. */
static enum oauth_result
oauth_signature(struct jwt *t, const struct oauth_jwks *keys, char *err,
    size_t errlen)
{
	const struct oauth_key	*k;
	long			 n;
	bool			 ok;

	if (oauth_jwks_count(keys) == 0)
		return oauth_fail(OAUTH_NO_KEYS, err, errlen, "no keys loaded");
	if ((k = oauth_jwks_find(keys, t->kid, t->alg)) == NULL)
		return oauth_fail(OAUTH_UNKNOWN_KEY, err, errlen, t->kid ?
		    "no key of the JWKS has this kid and algorithm" :
		    "no kid, and not one key of its algorithm");
	n = oauth_b64url_decode(t->token + t->dot2 + 1,
	    t->len - t->dot2 - 1, t->scratch);
	if (n <= 0)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "the signature "
		    "is no base64url");
	ok = oauth_key_verify(k, t->alg, t->token, t->dot2, t->scratch,
	    (size_t)n);
	explicit_bzero(t->scratch, (size_t)n);
	if (!ok)
		return oauth_fail(OAUTH_BAD_SIGNATURE, err, errlen, "the "
		    "signature does not verify");
	return OAUTH_OK;
}

/* A NumericDate claim (RFC 7519 2), seconds; -1 when of another type. */
static int
oauth_date(struct json_object *claims, const char *name, int64_t *out,
    bool *present)
{
	struct json_object	*v;
	double			 d;

	*present = json_object_object_get_ex(claims, name, &v);
	if (!*present)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_double))
		return -1;
	d = json_object_get_double(v);
	if (!isfinite(d) || d < -1e15 || d > 1e15)
		return -1;
	*out = (int64_t)d;
	if ((double)*out > d)		/* rounded toward zero: floor it */
		(*out)--;
	return 0;
}

/* exp (required, RFC 9068 2.2) and nbf, each with the skew allowed. */
static enum oauth_result
oauth_times(struct json_object *claims, const struct oauth_config *cfg,
    time_t now, struct oauth_identity *id, char *err, size_t errlen)
{
	int64_t	exp = 0, nbf = 0, skew = cfg->clock_skew_s;
	bool	has_exp, has_nbf;

	if (oauth_date(claims, "exp", &exp, &has_exp) == -1 || !has_exp ||
	    oauth_date(claims, "nbf", &nbf, &has_nbf) == -1)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "exp missing, "
		    "or exp or nbf not a number");
	/* Saturate: a date near INT64_MAX must not wrap round. */
	if (exp > INT64_MAX / 2)
		exp = INT64_MAX / 2;
	if (nbf < INT64_MIN / 2)
		nbf = INT64_MIN / 2;
	if ((int64_t)now >= exp + skew)
		return oauth_fail(OAUTH_EXPIRED, err, errlen, "exp has passed");
	if (has_nbf && (int64_t)now + skew < nbf)
		return oauth_fail(OAUTH_NOT_YET_VALID, err, errlen, "nbf is "
		    "still to come");
	id->expires = (time_t)exp;
	return OAUTH_OK;
}

/* aud: this server's resource URI, alone or in a list (RFC 7519 4.1.3). */
static bool
oauth_audience_ok(struct json_object *claims, const char *want)
{
	struct json_object	*aud, *a;

	const char		*s;

	if (!json_object_object_get_ex(claims, "aud", &aud))
		return false;
	if ((s = oauth_cstr(aud)) != NULL)
		return strcmp(s, want) == 0;
	if (!json_object_is_type(aud, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(aud); i++) {
		a = json_object_array_get_idx(aud, i);
		if ((s = oauth_cstr(a)) != NULL && strcmp(s, want) == 0)
			return true;
	}
	return false;
}

/* Whether a space-separated list holds the word. */
static bool
oauth_word_in(const char *list, const char *word)
{
	size_t	wl = strlen(word), n;

	for (const char *p = list; *p != '\0'; p += n) {
		p += strspn(p, " ");
		n = strcspn(p, " ");
		if (n == wl && n > 0 && strncmp(p, word, n) == 0)
			return true;
	}
	return false;
}

/* A scope granted: in "scope" (RFC 9068 2.2.3) or in "scp", a list or a
 * string, as some issuers send it. */
static bool
oauth_has_scope(struct json_object *claims, const char *want)
{
	struct json_object	*scp, *s;
	const char		*scope = oauth_str(claims, "scope"), *v;

	if (scope != NULL && oauth_word_in(scope, want))
		return true;
	if (!json_object_object_get_ex(claims, "scp", &scp))
		return false;
	if ((v = oauth_cstr(scp)) != NULL)
		return oauth_word_in(v, want);
	if (!json_object_is_type(scp, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(scp); i++) {
		s = json_object_array_get_idx(scp, i);
		if ((v = oauth_cstr(s)) != NULL && strcmp(v, want) == 0)
			return true;
	}
	return false;
}

/* A name fit for logs and the store: 1 to 256 bytes, no control byte. */
static bool
oauth_name_ok(const char *s)
{
	size_t	len = strlen(s);

	if (len == 0 || len > OAUTH_MAX_IDENTITY)
		return false;
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s))
			return false;
	return true;
}

/*
 * The identity's limits, when the issuer states them in a claim
 * (auth.limits_claim): a string as a tokens file's limits.  A token whose
 * claim is there but unusable is refused: its limits cannot be known.
 */
static enum oauth_result
oauth_limits(struct json_object *claims, const struct oauth_config *cfg,
    struct oauth_identity *id, char *err, size_t errlen)
{
	struct token_limits	 lim;
	struct json_object	*v;
	const char		*text;
	char			 why[160];

	id->limits[0] = '\0';
	if (cfg->limits_claim == NULL ||
	    !json_object_object_get_ex(claims, cfg->limits_claim, &v))
		return OAUTH_OK;
	if ((text = oauth_cstr(v)) == NULL || strlen(text) > OAUTH_MAX_LIMITS ||
	    token_limits_parse(text, &lim, why, sizeof why) == -1)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "the limits "
		    "claim is no list of KEY=VALUE limits");
	snprintf(id->limits, sizeof id->limits, "%s", text);
	return OAUTH_OK;
}

/* Who the token is: the identity claim (sub by default), its client. */
static enum oauth_result
oauth_identity(struct json_object *claims, const struct oauth_config *cfg,
    struct oauth_identity *id, char *err, size_t errlen)
{
	const char	*claim = cfg->identity_claim ? cfg->identity_claim :
	    "sub";
	const char	*name = oauth_str(claims, claim);
	const char	*client = oauth_str(claims, "client_id");

	if (name == NULL || !oauth_name_ok(name))
		return oauth_fail(OAUTH_NO_IDENTITY, err, errlen, "the identity "
		    "claim is missing, or no string of 1 to 256 printable "
		    "bytes");
	snprintf(id->name, sizeof id->name, "%s", name);
	if (client != NULL && oauth_name_ok(client))
		snprintf(id->client_id, sizeof id->client_id, "%s", client);
	return oauth_limits(claims, cfg, id, err, errlen);
}

/* The claims of a token whose signature verified. */
static enum oauth_result
oauth_claims(struct jwt *t, const struct oauth_config *cfg, time_t now,
    struct oauth_identity *id, char *err, size_t errlen)
{
	const char		*iss;
	enum oauth_result	 r;

	if ((t->claims = oauth_json_part(t, t->token + t->dot1 + 1,
	    t->dot2 - t->dot1 - 1)) == NULL)
		return oauth_fail(OAUTH_MALFORMED, err, errlen, "the payload is "
		    "no base64url JSON object");
	iss = oauth_str(t->claims, "iss");
	if (cfg->issuer == NULL || iss == NULL || strcmp(iss, cfg->issuer) != 0)
		return oauth_fail(OAUTH_WRONG_ISSUER, err, errlen, "iss is not "
		    "auth.issuer");
	if (cfg->audience == NULL ||
	    !oauth_audience_ok(t->claims, cfg->audience))
		return oauth_fail(OAUTH_WRONG_AUDIENCE, err, errlen, "aud does "
		    "not name auth.audience");
	if ((r = oauth_times(t->claims, cfg, now, id, err, errlen)) != OAUTH_OK ||
	    (r = oauth_identity(t->claims, cfg, id, err, errlen)) != OAUTH_OK)
		return r;
	for (int i = 0; i < cfg->nscopes; i++)
		if (!oauth_has_scope(t->claims, cfg->scopes[i]))
			return oauth_fail(OAUTH_INSUFFICIENT_SCOPE, err, errlen,
			    "a required scope is not granted");
	return OAUTH_OK;
}

enum oauth_result
oauth_verify(const struct oauth_config *cfg, const struct oauth_jwks *keys,
    const char *token, time_t now, struct oauth_identity *out, char *err,
    size_t errlen)
{
	struct oauth_identity	id;
	struct jwt		t;
	enum oauth_result	r;

	memset(&id, 0, sizeof id);
	memset(out, 0, sizeof *out);
	if ((r = oauth_split(&t, cfg, token, err, errlen)) == OAUTH_OK &&
	    (r = oauth_header(&t, cfg, err, errlen)) == OAUTH_OK &&
	    (r = oauth_signature(&t, keys, err, errlen)) == OAUTH_OK &&
	    (r = oauth_claims(&t, cfg, now, &id, err, errlen)) == OAUTH_OK) {
		*out = id;
		snprintf(err, errlen, "ok");
	}
	oauth_jwt_clear(&t);
	return r;
}

static const char *const oauth_names[] = {
	[OAUTH_OK] = "ok",
	[OAUTH_NO_TOKEN] = "no token",
	[OAUTH_MALFORMED] = "malformed token",
	[OAUTH_TOO_LARGE] = "token too large",
	[OAUTH_BAD_ALG] = "algorithm or header refused",
	[OAUTH_UNKNOWN_KEY] = "unknown key",
	[OAUTH_BAD_SIGNATURE] = "bad signature",
	[OAUTH_EXPIRED] = "expired",
	[OAUTH_NOT_YET_VALID] = "not yet valid",
	[OAUTH_WRONG_ISSUER] = "wrong issuer",
	[OAUTH_WRONG_AUDIENCE] = "wrong audience",
	[OAUTH_NO_IDENTITY] = "no identity",
	[OAUTH_INSUFFICIENT_SCOPE] = "insufficient scope",
	[OAUTH_NO_KEYS] = "no keys",
};

const char *
oauth_result_name(enum oauth_result r)
{
	if ((size_t)r >= sizeof oauth_names / sizeof oauth_names[0])
		return "unknown";
	return oauth_names[r];
}

/* 403 for a valid token short of a scope (RFC 6750 3.1); 503 when heavyd
 * has no keys to check with (its fault, not the client's); else 401. */
int
oauth_http_status(enum oauth_result r)
{
	switch (r) {
	case OAUTH_OK:
		return 200;
	case OAUTH_INSUFFICIENT_SCOPE:
		return 403;
	case OAUTH_NO_KEYS:
		return 503;
	default:
		return 401;
	}
}

/* A value fit for a quoted-string in a challenge: printable, no quote. */
static bool
oauth_quotable(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20 ||
		    (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

int
oauth_www_authenticate(const struct oauth_config *cfg, enum oauth_result r,
    const char *metadata_url, char *out, size_t len)
{
	struct buf	b;
	int		rc = 0;

	if (len == 0)
		return -1;
	buf_init(&b, len - 1);
	rc |= buf_addstr(&b, "Bearer");
	if (r == OAUTH_INSUFFICIENT_SCOPE)
		rc |= buf_addstr(&b, " error=\"insufficient_scope\",");
	else if (r != OAUTH_OK && r != OAUTH_NO_TOKEN)
		rc |= buf_addstr(&b, " error=\"invalid_token\",");
	if (metadata_url != NULL && oauth_quotable(metadata_url))
		rc |= buf_printf(&b, " resource_metadata=\"%s\",",
		    metadata_url);
	if (cfg->nscopes > 0) {
		rc |= buf_addstr(&b, " scope=\"");
		for (int i = 0; i < cfg->nscopes; i++)
			if (oauth_quotable(cfg->scopes[i]))
				rc |= buf_printf(&b, "%s%s", i ? " " : "",
				    cfg->scopes[i]);
		rc |= buf_addstr(&b, "\",");
	}
	if (rc == 0) {
		if (b.data[b.len - 1] == ',')	/* the last parameter's */
			b.len--;
		memcpy(out, b.data, b.len);
		out[b.len] = '\0';
	}
	buf_free(&b);
	return rc == 0 ? 0 : -1;
}

static struct json_object *
oauth_json_strv(char * const *v, int n)
{
	struct json_object	*a = json_object_new_array();

	for (int i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

/* RFC 9728 2: the resource, who issues its tokens, the scopes it knows,
 * and that a token comes in the Authorization header only. */
char *
oauth_metadata_json(const struct oauth_config *cfg)
{
	struct json_object	*o = json_object_new_object();
	char			*issuer = (char *)cfg->issuer, *text;
	const char		*header = "header";

	json_object_object_add(o, "resource",
	    json_object_new_string(cfg->audience ? cfg->audience : ""));
	json_object_object_add(o, "authorization_servers",
	    oauth_json_strv(&issuer, issuer != NULL));
	if (cfg->nscopes > 0)
		json_object_object_add(o, "scopes_supported",
		    oauth_json_strv(cfg->scopes, cfg->nscopes));
	json_object_object_add(o, "bearer_methods_supported",
	    oauth_json_strv((char **)&header, 1));
	text = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

/*
 * RFC 9728 3.1: the well-known path goes between the host and the
 * resource's path: https://h/mcp -> https://h/.well-known/
 * oauth-protected-resource/mcp; https://h or https://h/ -> https://h/
 * .well-known/oauth-protected-resource.
 */
char *
oauth_metadata_url(const char *resource, bool path_only)
{
	const char	*host, *path;

	if (resource == NULL)
		return NULL;
	if (strncasecmp(resource, "https://", 8) == 0)
		host = resource + 8;
	else if (strncasecmp(resource, "http://", 7) == 0)
		host = resource + 7;
	else
		return NULL;
	path = host + strcspn(host, "/?#");
	if (path == host || *path == '#' || strchr(path, '#') != NULL)
		return NULL;
	return xasprintf("%.*s/.well-known/oauth-protected-resource%s",
	    path_only ? 0 : (int)(path - resource), resource,
	    strcmp(path, "/") == 0 ? "" : path);
}

/* Keys from the file, or fetched from the URL now. */
static struct oauth_jwks *
oauth_load(struct oauth *o, time_t now, char *err, size_t errlen)
{
	struct oauth_jwks	*k;
	size_t			 max = o->cfg.max_jwks_bytes ?
	    o->cfg.max_jwks_bytes : 1 << 20, len;
	char			*body;

	if (o->cfg.jwks_file != NULL)
		return oauth_jwks_load_file(o->cfg.jwks_file, max, err, errlen);
	if (o->cfg.jwks_url == NULL) {
		snprintf(err, errlen, "neither auth.jwks_file nor "
		    "auth.jwks_url is set");
		return NULL;
	}
	o->tried = now;
	if ((body = oauth_jwks_fetch(o->cfg.jwks_url, o->cfg.jwks_timeout_s > 0 ?
	    o->cfg.jwks_timeout_s : 10, max, &len, err, errlen)) == NULL)
		return NULL;
	k = oauth_jwks_parse(body, len, err, errlen);
	free(body);
	if (k != NULL)
		o->fetched = now;
	return k;
}

/* The settings, their strings copied: a reload frees the configuration
 * they came from. */
static void
oauth_cfg_copy(struct oauth_config *d, const struct oauth_config *s)
{
	char	**scopes = xcalloc((size_t)s->nscopes + 1, sizeof *scopes);

	*d = *s;
#define DUP(f)	d->f = s->f != NULL ? xstrdup(s->f) : NULL
	DUP(issuer);
	DUP(audience);
	DUP(identity_claim);
	DUP(limits_claim);
	DUP(jwks_file);
	DUP(jwks_url);
#undef DUP
	for (int i = 0; i < s->nscopes; i++)
		scopes[i] = xstrdup(s->scopes[i]);
	d->scopes = scopes;
}

static void
oauth_cfg_free(struct oauth_config *c)
{
	free((char *)c->issuer);
	free((char *)c->audience);
	free((char *)c->identity_claim);
	free((char *)c->limits_claim);
	free((char *)c->jwks_file);
	free((char *)c->jwks_url);
	for (int i = 0; i < c->nscopes; i++)
		free(c->scopes[i]);
	free((char **)c->scopes);
	memset(c, 0, sizeof *c);
}

/*
 * Fails when the JWKS file cannot be used (a mistake to fix before
 * serving).  An issuer that does not answer yet is no mistake: heavyd
 * starts, answers 503 and fetches again jwks_min_refetch_s later.
 */
struct oauth *
oauth_new(const struct oauth_config *cfg, char *err, size_t errlen)
{
	struct oauth	*o = xcalloc(1, sizeof *o);

	oauth_cfg_copy(&o->cfg, cfg);
	if ((o->jwks = oauth_load(o, time(NULL), err, errlen)) != NULL)
		return o;
	if (cfg->jwks_file != NULL || cfg->jwks_url == NULL) {
		oauth_free(o);
		return NULL;
	}
	log_warnx("oauth: %s; tokens are refused until the keys come", err);
	return o;
}

void
oauth_free(struct oauth *o)
{
	if (o == NULL)
		return;
	oauth_jwks_fetch_cancel(o->fetch);
	free(o->waiters);
	oauth_jwks_free(o->jwks);
	oauth_cfg_free(&o->cfg);
	free(o);
}

bool
oauth_fetching(const struct oauth *o)
{
	return o->fetch != NULL;
}

int
oauth_wait(struct oauth *o, void (*fn)(void *), void *arg)
{
	if (o->fetch == NULL)
		return -1;
	o->waiters = xrealloc(o->waiters, ((size_t)o->nwaiters + 1) *
	    sizeof *o->waiters);
	o->waiters[o->nwaiters++] = (struct oauth_waiter){ fn, arg };
	return 0;
}

void
oauth_unwait(struct oauth *o, void (*fn)(void *), void *arg)
{
	for (int i = 0; i < o->nwaiters; i++)
		if (o->waiters[i].fn == fn && o->waiters[i].arg == arg) {
			o->waiters[i] = o->waiters[--o->nwaiters];
			return;
		}
}

/* The fetch on the loop has ended, or given way to newer keys: whoever
 * waits tries again (a waiter may wait anew: the list is taken first). */
static void
oauth_fetch_ended(struct oauth *o)
{
	struct oauth_waiter	*w = o->waiters;
	int			 n = o->nwaiters;

	oauth_jwks_fetch_cancel(o->fetch);
	o->fetch = NULL;
	o->waiters = NULL;
	o->nwaiters = 0;
	for (int i = 0; i < n; i++)
		w[i].fn(w[i].arg);
	free(w);
}

/* SIGHUP with a new configuration: its settings, and the keys read again
 * from where it says (with the old settings and keys kept on failure). */
int
oauth_update(struct oauth *o, const struct oauth_config *cfg, char *err,
    size_t errlen)
{
	struct oauth	*n = xcalloc(1, sizeof *n);

	oauth_cfg_copy(&n->cfg, cfg);
	if ((n->jwks = oauth_load(n, time(NULL), err, errlen)) == NULL) {
		oauth_free(n);
		return -1;
	}
	oauth_jwks_free(o->jwks);
	oauth_cfg_free(&o->cfg);
	o->cfg = n->cfg;
	o->jwks = n->jwks;
	o->fetched = n->fetched;
	o->tried = n->tried;
	free(n);
	log_info("oauth: %d key(s) from %s", oauth_jwks_count(o->jwks),
	    o->cfg.jwks_file ? "auth.jwks_file" : "auth.jwks_url");
	if (o->fetch != NULL)
		oauth_fetch_ended(o);	/* the old settings' */
	return 0;
}

int
oauth_reload(struct oauth *o, char *err, size_t errlen)
{
	struct oauth_jwks	*k;

	if ((k = oauth_load(o, time(NULL), err, errlen)) == NULL)
		return -1;
	oauth_jwks_free(o->jwks);
	o->jwks = k;
	log_info("oauth: %d key(s) from %s", oauth_jwks_count(k),
	    o->cfg.jwks_file ? "auth.jwks_file" : "auth.jwks_url");
	if (o->fetch != NULL)
		oauth_fetch_ended(o);	/* these keys are newer */
	return 0;
}

int
oauth_set_jwks(struct oauth *o, const char *body, size_t len, time_t now,
    char *err, size_t errlen)
{
	struct oauth_jwks	*k;

	if ((k = oauth_jwks_parse(body, len, err, errlen)) == NULL)
		return -1;
	oauth_jwks_free(o->jwks);
	o->jwks = k;
	o->fetched = o->tried = now;
	return 0;
}

/* The end of a fetch on the loop: the keys it brought, or the old ones. */
static void
oauth_fetched(void *arg, const char *body, size_t len, const char *err)
{
	struct oauth		*o = arg;
	struct oauth_jwks	*k = NULL;
	char			 perr[256];

	o->fetch = NULL;	/* it freed itself */
	if (body == NULL)
		log_warnx("oauth: fetching the keys: %s", err);
	else if ((k = oauth_jwks_parse(body, len, perr, sizeof perr)) == NULL)
		log_warnx("oauth: the keys fetched: %s", perr);
	else {
		oauth_jwks_free(o->jwks);
		o->jwks = k;
		o->fetched = o->tried;
		log_info("oauth: %d key(s) fetched", oauth_jwks_count(k));
	}
	oauth_fetch_ended(o);
}

/* A fetch from the URL, unless one runs or one was tried too recently; the
 * old keys stay when it fails.  On the event loop when there is one. */
static void
oauth_refetch(struct oauth *o, time_t now, const char *why)
{
	struct oauth_jwks	*k;
	char			 err[256];

	if (o->cfg.jwks_url == NULL || o->fetch != NULL || (o->tried != 0 &&
	    now - o->tried < o->cfg.jwks_min_refetch_s))
		return;
	if (ev_base != NULL) {
		o->tried = now;
		o->fetch = oauth_jwks_fetch_start(o->cfg.jwks_url,
		    o->cfg.jwks_timeout_s > 0 ? o->cfg.jwks_timeout_s : 10,
		    o->cfg.max_jwks_bytes ? o->cfg.max_jwks_bytes : 1 << 20,
		    oauth_fetched, o);
		log_info("oauth: fetching the keys (%s)", why);
		return;
	}
	if ((k = oauth_load(o, now, err, sizeof err)) == NULL) {
		log_warnx("oauth: fetching the keys (%s): %s", why, err);
		return;
	}
	oauth_jwks_free(o->jwks);
	o->jwks = k;
	log_info("oauth: %d key(s) fetched (%s)", oauth_jwks_count(k), why);
}

enum oauth_result
oauth_check(struct oauth *o, const char *token, time_t now,
    struct oauth_identity *out, char *err, size_t errlen)
{
	enum oauth_result	r;

	if (o->cfg.jwks_url != NULL && (o->jwks == NULL ||
	    now - o->fetched >= o->cfg.jwks_max_age_s))
		oauth_refetch(o, now, o->jwks ? "they aged out" : "none yet");
	r = oauth_verify(&o->cfg, o->jwks, token, now, out, err, errlen);
	if (r == OAUTH_UNKNOWN_KEY && o->cfg.jwks_url != NULL) {
		/* The issuer may have rotated its keys since. */
		oauth_refetch(o, now, "a token names an unknown key");
		r = oauth_verify(&o->cfg, o->jwks, token, now, out, err,
		    errlen);
	}
	return r;
}

void
oauth_config_from(struct oauth_config *o, const struct heavy_config *c)
{
	memset(o, 0, sizeof *o);
	o->issuer = c->auth_issuer;
	o->audience = c->auth_audience;
	o->identity_claim = c->auth_identity_claim;
	o->limits_claim = c->auth_limits_claim;
	o->scopes = c->auth_scopes;
	o->nscopes = c->nauth_scopes;
	o->clock_skew_s = c->auth_clock_skew_s;
	o->max_token_bytes = c->auth_max_token_bytes;
	o->algs = OAUTH_ALG_ALL;
	o->jwks_file = c->auth_jwks_file;
	o->jwks_url = c->auth_jwks_url;
	o->jwks_max_age_s = c->auth_jwks_max_age_s;
	o->jwks_min_refetch_s = c->auth_jwks_min_refetch_s;
	o->jwks_timeout_s = c->auth_jwks_timeout_s;
	o->max_jwks_bytes = c->auth_max_jwks_bytes;
}

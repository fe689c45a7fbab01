/*
 * oauth.c, jwk.c: heavyd as an OAuth 2.1 resource server (auth.mode: oauth).
 * A request's bearer token is a JWT access token (RFC 9068) signed by the
 * authorization server with RS256, ES256 or EdDSA (Ed25519); its keys come
 * from a JWKS (RFC 7517), a file or a URL.  Verified with Nettle/Hogweed and
 * json-c only.  Nothing here logs a token or keeps one: buffers that held
 * one are wiped.
 *
 * How the HTTP transport uses it:
 *
 *	struct oauth_config cfg;
 *	oauth_config_from(&cfg, config);		at startup, auth.mode oauth
 *	struct oauth *o = oauth_new(&cfg, err, sizeof err);	(copies cfg)
 *	oauth_config_from(&cfg, new_config);		on SIGHUP
 *	oauth_update(o, &cfg, err, sizeof err);
 *
 *	per request with "Authorization: Bearer TOKEN":
 *	struct oauth_identity id;
 *	enum oauth_result r = oauth_check(o, token, time(NULL), &id, err, len);
 *	if (r != OAUTH_OK) {
 *		oauth_www_authenticate(o->cfg, r, metadata_url, hdr, sizeof hdr);
 *		reply oauth_http_status(r) (401 or 403) with
 *		"WWW-Authenticate: hdr"; err is safe to log (no token in it)
 *	}
 *	without a token at all: the same with r = OAUTH_NO_TOKEN (401).
 *
 *	GET /.well-known/oauth-protected-resource (and that path followed by
 *	the MCP path, oauth_metadata_path): 200, application/json,
 *	oauth_metadata_json(o->cfg).
 */
#ifndef HEAVY_OAUTH_H
#define HEAVY_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct heavy_config;

/* Why a token was refused; OAUTH_OK when it was not. */
enum oauth_result {
	OAUTH_OK = 0,
	OAUTH_NO_TOKEN,			/* none presented: 401, no error= */
	OAUTH_MALFORMED,		/* not a JWS compact JWT, bad base64url,
					   bad JSON, a claim of the wrong type */
	OAUTH_TOO_LARGE,		/* over max_token_bytes */
	OAUTH_BAD_ALG,			/* none, not allowed, crit, a typ that is
					   no access token, alg/key mismatch */
	OAUTH_UNKNOWN_KEY,		/* no key of the JWKS has that kid */
	OAUTH_BAD_SIGNATURE,
	OAUTH_EXPIRED,			/* exp (with the skew) passed, or none */
	OAUTH_NOT_YET_VALID,		/* nbf (with the skew) to come */
	OAUTH_WRONG_ISSUER,
	OAUTH_WRONG_AUDIENCE,
	OAUTH_NO_IDENTITY,		/* the identity claim missing or unusable */
	OAUTH_INSUFFICIENT_SCOPE,	/* valid, but a required scope missing: 403 */
	OAUTH_NO_KEYS,			/* no JWKS could be loaded */
};

/* Algorithms, as a mask in oauth_config.algs. */
#define OAUTH_ALG_RS256		0x1
#define OAUTH_ALG_ES256		0x2
#define OAUTH_ALG_EDDSA		0x4
#define OAUTH_ALG_ALL		(OAUTH_ALG_RS256 | OAUTH_ALG_ES256 | \
				 OAUTH_ALG_EDDSA)

#define OAUTH_MAX_IDENTITY	256	/* bytes of an identity's name */
#define OAUTH_MAX_LIMITS	512	/* bytes of a limits claim */
#define OAUTH_RSA_MIN_BITS	2048	/* RFC 7518 3.3 */

/* What a token must be; the strings are borrowed (from heavy_config). */
struct oauth_config {
	const char	*issuer;	/* iss, exactly */
	const char	*audience;	/* in aud; this server's resource URI */
	const char	*identity_claim;	/* "sub" when NULL */
	const char	*limits_claim;	/* NULL: none read */
	char * const	*scopes;	/* all required */
	int		 nscopes;
	int		 clock_skew_s;	/* leeway on exp and nbf */
	size_t		 max_token_bytes;
	unsigned	 algs;		/* OAUTH_ALG_*; 0 means all */
	const char	*jwks_file;	/* one of the two */
	const char	*jwks_url;
	int		 jwks_max_age_s;	/* a fetched JWKS is kept this long */
	int		 jwks_min_refetch_s;	/* least gap between two fetches */
	int		 jwks_timeout_s;	/* one fetch */
	size_t		 max_jwks_bytes;
};

/* Who a valid token speaks for. */
struct oauth_identity {
	char	name[OAUTH_MAX_IDENTITY + 1];	/* the identity claim */
	char	client_id[OAUTH_MAX_IDENTITY + 1];	/* "" when absent */
	time_t	expires;			/* exp */
	/* The limits claim, checked: "KEY=VALUE ..." as in a tokens file
	 * ("" when none). */
	char	limits[OAUTH_MAX_LIMITS + 1];
};

/* jwk.c: a parsed JWKS, its keys by kid. */
struct oauth_jwks;
struct oauth_key;
struct oauth_jwks *oauth_jwks_parse(const char *json, size_t len, char *err,
	    size_t errlen);
struct oauth_jwks *oauth_jwks_load_file(const char *path, size_t max,
	    char *err, size_t errlen);
void	 oauth_jwks_free(struct oauth_jwks *);
int	 oauth_jwks_count(const struct oauth_jwks *);
/* The key a token's header names (kid may be NULL: then the only key that
 * fits alg); NULL when there is none. */
const struct oauth_key *oauth_jwks_find(const struct oauth_jwks *,
	    const char *kid, unsigned alg);
/* Whether sig is key's signature, by alg, of the signing input msg. */
bool	 oauth_key_verify(const struct oauth_key *, unsigned alg,
	    const void *msg, size_t msglen, const unsigned char *sig,
	    size_t siglen);
/* GET url with libcurl (blocking, timeout_s at most, max bytes at most):
 * the body, NUL-terminated, or NULL with err. */
char	*oauth_jwks_fetch(const char *url, int timeout_s, size_t max,
	    size_t *len, char *err, size_t errlen);
/* The same on the event loop (ev_base): done(arg, body or NULL, len, err)
 * on a later turn of the loop, unless cancelled first. */
struct oauth_fetch;
typedef void (*oauth_fetch_cb)(void *arg, const char *body, size_t len,
	    const char *err);
struct oauth_fetch *oauth_jwks_fetch_start(const char *url, int timeout_s,
	    size_t max, oauth_fetch_cb done, void *arg);
void	 oauth_jwks_fetch_cancel(struct oauth_fetch *);

/* oauth.c: strict base64url (RFC 7515 2: no padding, no other byte, the
 * unused bits zero); the decoded length, or -1.  out has room for
 * inlen * 3 / 4 bytes. */
long	 oauth_b64url_decode(const char *in, size_t inlen, unsigned char *out);
char	*oauth_b64url_encode(const void *, size_t);	/* for the tests */

/* One token against one JWKS: the verifier, without any state. */
enum oauth_result oauth_verify(const struct oauth_config *,
	    const struct oauth_jwks *, const char *token, time_t now,
	    struct oauth_identity *out, char *err, size_t errlen);

/* The resource server's state: its settings (their strings its own
 * copies), keys and their age, the fetch on the event loop if one runs. */
struct oauth_waiter {
	void	(*fn)(void *);
	void	*arg;
};
struct oauth {
	struct oauth_config	 cfg;
	struct oauth_jwks	*jwks;
	time_t			 fetched;	/* the URL's keys, when */
	time_t			 tried;		/* the last fetch, done or not */
	struct oauth_fetch	*fetch;		/* on the event loop, or NULL */
	struct oauth_waiter	*waiters;	/* told when it ends */
	int			 nwaiters;
};
struct oauth *oauth_new(const struct oauth_config *, char *err, size_t);
void	 oauth_free(struct oauth *);
/* Re-reads the JWKS file or fetches the URL again (SIGHUP); on failure the
 * keys in use stay. */
int	 oauth_reload(struct oauth *, char *err, size_t errlen);
/* The same with new settings (SIGHUP's new configuration: oauth_config_from
 * it); on failure the settings and keys in use stay. */
int	 oauth_update(struct oauth *, const struct oauth_config *, char *err,
	    size_t errlen);
/* The keys from a body fetched at now (what oauth_reload does with the
 * URL's answer; the tests give it their own). */
int	 oauth_set_jwks(struct oauth *, const char *body, size_t len,
	    time_t now, char *err, size_t errlen);
/*
 * oauth_verify with the keys kept fresh: a fetched JWKS older than its max
 * age is fetched again, and an unknown kid fetches it once more (at most
 * every jwks_min_refetch_s).  With an event loop (ev_base) those fetches
 * run on it and oauth_check answers at once, with the keys it has: a token
 * signed by a key the fetch brings is OAUTH_UNKNOWN_KEY (or OAUTH_NO_KEYS
 * before the first keys) until the fetch ends.  A transport that would
 * rather hold such a request asks oauth_fetching(), waits with
 * oauth_wait(fn, arg) (fn(arg) once, when the fetch has ended, either way)
 * and calls oauth_check again; a request that goes away first calls
 * oauth_unwait.  Without an event loop the fetch blocks, as at the start.
 */
enum oauth_result oauth_check(struct oauth *, const char *token, time_t now,
	    struct oauth_identity *out, char *err, size_t errlen);
bool	 oauth_fetching(const struct oauth *);
int	 oauth_wait(struct oauth *, void (*fn)(void *), void *arg); /* -1: none */
void	 oauth_unwait(struct oauth *, void (*fn)(void *), void *arg);

/* From the configuration (auth.*): the settings, borrowing its strings. */
void	 oauth_config_from(struct oauth_config *, const struct heavy_config *);

/* The answer to give: 401, or 403 for OAUTH_INSUFFICIENT_SCOPE. */
int	 oauth_http_status(enum oauth_result);
const char *oauth_result_name(enum oauth_result);
/* The WWW-Authenticate value for a refusal (RFC 6750 3, RFC 9728 5.1):
 *   Bearer resource_metadata="URL", scope="a b"			no token
 *   Bearer error="invalid_token", resource_metadata="URL", scope="a b"
 *   Bearer error="insufficient_scope", resource_metadata=..., scope=...
 * metadata_url may be NULL (then no resource_metadata).  -1 when it does
 * not fit in len. */
int	 oauth_www_authenticate(const struct oauth_config *, enum oauth_result,
	    const char *metadata_url, char *buf, size_t len);
/* RFC 9728 protected-resource metadata: a JSON document, to free. */
char	*oauth_metadata_json(const struct oauth_config *);
/* Where it is served for a resource URI: https://h/mcp gives
 * https://h/.well-known/oauth-protected-resource/mcp (RFC 9728 3.1); the
 * path alone (for the HTTP router) with path_only.  To free; NULL when
 * resource is no http(s) URL. */
char	*oauth_metadata_url(const char *resource, bool path_only);

#endif

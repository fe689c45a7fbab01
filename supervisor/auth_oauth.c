/*
 * auth.mode: oauth, wired in.  heavyd is the OAuth resource server of
 * oauth.c: this file holds its state, hands auth.c the verifier for every
 * request to the MCP endpoint, takes SIGHUP's new keys and settings, and
 * answers the RFC 9728 metadata that tells an MCP client which
 * authorization server to ask for a token.
 *
 * A token is copied out of its header only to be checked, then wiped; the
 * name of the identity it speaks for (its sub, or auth.identity_claim) is
 * all that leaves here.  A token whose key the issuer's JWKS URL is being
 * fetched for is a pending denial (503, Retry-After): the HTTP transport
 * holds the request with auth_oauth_wait and asks again when the fetch has
 * ended, once; a request it cannot hold gets the 503.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supervisor.h"
#include "oauth.h"

#define AUTH_OAUTH_FETCH_RETRY_S	2	/* Retry-After: keys on the way */
#define AUTH_OAUTH_WELL_KNOWN		"/.well-known/oauth-protected-resource"

static struct {
	struct oauth	*o;		/* NULL: auth.mode is not oauth */
	char		*metadata_url;	/* for resource_metadata= */
	char		*metadata_path;	/* ... and its path, for the router */
} ao;

/* Where the metadata is, from auth.audience (the resource URI). */
static void
auth_oauth_urls(const char *audience)
{
	free(ao.metadata_url);
	free(ao.metadata_path);
	ao.metadata_url = oauth_metadata_url(audience, false);
	ao.metadata_path = oauth_metadata_url(audience, true);
}

/* 503 for want of keys; else 401 or 403 with the challenge. */
static void
auth_oauth_deny(enum oauth_result r, const char *why, struct auth_denial *d)
{
	memset(d, 0, sizeof *d);
	d->status = oauth_http_status(r);
	if ((r == OAUTH_UNKNOWN_KEY || r == OAUTH_NO_KEYS) &&
	    oauth_fetching(ao.o)) {
		d->status = 503;
		d->pending = true;
		d->retry_after_s = AUTH_OAUTH_FETCH_RETRY_S;
		snprintf(d->message, sizeof d->message, "Service Unavailable: "
		    "the authorization server's keys are being fetched; retry "
		    "in %d s", d->retry_after_s);
		return;
	}
	if (d->status == 503) {
		d->retry_after_s = ao.o->cfg.jwks_min_refetch_s > 0 ?
		    ao.o->cfg.jwks_min_refetch_s : AUTH_OAUTH_FETCH_RETRY_S;
		snprintf(d->message, sizeof d->message, "Service Unavailable: "
		    "heavyd has no keys to check tokens with yet");
		return;
	}
	if (oauth_www_authenticate(&ao.o->cfg, r, ao.metadata_url,
	    d->www_authenticate, sizeof d->www_authenticate) == -1)
		(void)oauth_www_authenticate(&ao.o->cfg, r, NULL,
		    d->www_authenticate, sizeof d->www_authenticate);
	if (r == OAUTH_NO_TOKEN)
		snprintf(d->message, sizeof d->message, "Unauthorized: an "
		    "Authorization: Bearer token is required");
	else
		snprintf(d->message, sizeof d->message, "%s: %.160s",
		    d->status == 403 ? "Forbidden" : "Unauthorized", why);
}

/* auth.c's verifier: the token (len bytes, NULL for none) to a name. */
static int
auth_oauth_verify(const char *token, size_t len, char *name, size_t namelen,
    char *limits, size_t limitslen, struct auth_denial *d)
{
	struct oauth_identity	 id;
	enum oauth_result	 r;
	char			*tok = NULL, why[256];

	if (token != NULL) {
		tok = xmalloc(len + 1);
		memcpy(tok, token, len);
		tok[len] = '\0';
	}
	r = oauth_check(ao.o, tok, time(NULL), &id, why, sizeof why);
	if (tok != NULL) {
		explicit_bzero(tok, len);
		free(tok);
	}
	if (r == OAUTH_OK && (strlen(id.name) >= namelen ||
	    strlen(id.limits) >= limitslen))
		r = OAUTH_NO_IDENTITY;		/* cannot be: the sizes agree */
	if (r == OAUTH_OK) {
		snprintf(name, namelen, "%s", id.name);
		snprintf(limits, limitslen, "%s", id.limits);
	}
	else
		auth_oauth_deny(r, why, d);
	explicit_bzero(&id, sizeof id);
	return r == OAUTH_OK ? 0 : -1;
}

/*
 * At the start, when auth.mode is oauth: the keys loaded (a JWKS file
 * that does not load stops heavyd), the verifier set for auth_init.
 */
int
auth_oauth_start(const struct heavy_config *cfg, char *err, size_t len)
{
	struct oauth_config	oc;

	if (cfg->auth_mode == NULL || strcmp(cfg->auth_mode, "oauth") != 0)
		return 0;
	oauth_config_from(&oc, cfg);
	if ((ao.o = oauth_new(&oc, err, len)) == NULL)
		return -1;
	auth_oauth_urls(cfg->auth_audience);
	auth_set_verifier(auth_oauth_verify);
	if (ao.o->jwks != NULL)
		log_info("oauth: resource %s, issuer %s, keys from %s",
		    cfg->auth_audience, cfg->auth_issuer, cfg->auth_jwks_file ?
		    cfg->auth_jwks_file : cfg->auth_jwks_url);
	return 0;
}

/*
 * SIGHUP: the settings of the new configuration (auth.mode itself waits
 * for a restart) and the keys read again; when they do not load, the
 * settings and keys in force stay.
 */
void
auth_oauth_reload(void *arg, const struct heavy_config *cfg)
{
	struct oauth_config	oc;
	char			err[1024];

	(void)arg;
	if (ao.o == NULL)
		return;
	oauth_config_from(&oc, cfg);
	if (oauth_update(ao.o, &oc, err, sizeof err) == -1) {
		log_warnx("oauth: reload: %s; the keys and settings in force "
		    "stay", err);
		return;
	}
	auth_oauth_urls(ao.o->cfg.audience);
}

void
auth_oauth_stop(void)
{
	oauth_free(ao.o);
	ao.o = NULL;
	auth_oauth_urls(NULL);
}

/* Whether the router's path is where the metadata is (RFC 9728 3): the
 * well-known path, and that path followed by the resource's. */
bool
auth_oauth_metadata_path(const char *path)
{
	if (ao.o == NULL)
		return false;
	return strcmp(path, AUTH_OAUTH_WELL_KNOWN) == 0 ||
	    (ao.metadata_path != NULL && strcmp(path, ao.metadata_path) == 0);
}

/* The metadata document, to free. */
char *
auth_oauth_metadata(void)
{
	return oauth_metadata_json(&ao.o->cfg);
}

/* fn(arg) once the fetch of the keys in flight has ended; -1 when none
 * is. */
int
auth_oauth_wait(void (*fn)(void *), void *arg)
{
	return ao.o != NULL ? oauth_wait(ao.o, fn, arg) : -1;
}

void
auth_oauth_unwait(void (*fn)(void *), void *arg)
{
	if (ao.o != NULL)
		oauth_unwait(ao.o, fn, arg);
}

/*
 * Who calls over HTTP: the identities of the tokens file (common/tokens.c),
 * looked up by the SHA-256 of the bearer token a request carries, and what
 * each may do.  An identity owns its tasks and sessions as "id:NAME"
 * (AUTH_OWNER_PREFIX); stdio's owner stays the local user ("uid:N").
 *
 * auth_request is the one check: it answers an owner, or the HTTP error
 * to send (401 for a missing, unknown or revoked token; 429 and
 * Retry-After for an address that failed too often, or an identity over
 * its requests_per_minute).  auth.mode picks how a token becomes an
 * identity: "tokens" looks it up here; "oauth" hands it to the verifier
 * set with auth_set_verifier (supervisor/oauth.c), which answers a name
 * or its own denial.
 *
 * The rates are sliding windows (auth_window): a request at time t is let
 * in when fewer than cap were let in during (t - width, t].  Exact at the
 * edges, and pure: the tests drive them with their own clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/linkhash.h>
#include <nettle/memops.h>

#include "supervisor.h"

#define AUTH_REALM	"Bearer realm=\"heavyd\""
#define AUTH_MINUTE_MS	60000
#define AUTH_NO_TOKEN	"no bearer token"

/* An identity and its request window. */
struct auth_ident {
	struct token_ident	t;
	struct auth_window	rate;
};

/* An OAuth identity seen lately: its request window.  Its limits are
 * auth.defaults' (auth.oauth_lim), as for a token of no limits of its own. */
struct auth_seen {
	char			name[AUTH_NAME_MAX + 1];
	struct auth_window	rate;
	struct token_limits	lim;	/* auth.defaults, then its claim's */
};

/* A client address with failed attempts. */
struct auth_client {
	char			addr[64];
	struct auth_window	fails;
};

static struct {
	bool			 on;		/* fixed at the start */
	bool			 oauth;
	auth_verify_fn		 verify;
	struct auth_ident	*ids;
	int			 nids;
	struct lh_table		*clients;	/* addr -> struct auth_client */
	struct token_limits	 oauth_lim;	/* an OAuth identity's */
	struct lh_table		*seen;		/* name -> struct auth_seen */
	int			 fail_max;
	int64_t			 fail_window_ms;
	int			 max_clients;
} auth;

/* --- sliding windows -------------------------------------------------- */

void
auth_window_init(struct auth_window *w, int cap)
{
	memset(w, 0, sizeof *w);
	w->cap = cap;
	if (cap > 0)
		w->stamps = xcalloc((size_t)cap, sizeof *w->stamps);
}

void
auth_window_free(struct auth_window *w)
{
	free(w->stamps);
	memset(w, 0, sizeof *w);
}

/* Forgets what left the window (t - width, t]. */
static void
auth_window_expire(struct auth_window *w, int64_t now, int64_t width)
{
	while (w->n > 0 && w->stamps[w->head] <= now - width) {
		w->head = (w->head + 1) % w->cap;
		w->n--;
	}
}

/* How many are in the window at now. */
int
auth_window_count(struct auth_window *w, int64_t now, int64_t width)
{
	if (w->cap == 0)
		return 0;
	auth_window_expire(w, now, width);
	return w->n;
}

/*
 * A hit at now: 0 when the window had room (it is counted), else the
 * milliseconds until it has (the oldest leaves), and it is not counted.
 */
int64_t
auth_window_hit(struct auth_window *w, int64_t now, int64_t width)
{
	if (w->cap == 0)
		return 0;
	auth_window_expire(w, now, width);
	if (w->n == w->cap)
		return w->stamps[w->head] + width - now;
	w->stamps[(w->head + w->n) % w->cap] = now;
	w->n++;
	return 0;
}

/* Milliseconds as a Retry-After: whole seconds, rounded up, at least 1. */
int
auth_retry_after_s(int64_t ms)
{
	return ms <= 1000 ? 1 : (int)((ms + 999) / 1000);
}

/* --- the identity table ----------------------------------------------- */

static void
auth_ids_free(struct auth_ident *ids, int n)
{
	for (int i = 0; i < n; i++)
		auth_window_free(&ids[i].rate);
	if (ids != NULL)
		explicit_bzero(ids, (size_t)n * sizeof *ids);
	free(ids);
}

/* The request window of a new table's identity: the old one's, when it
 * has the same limit, so that a reload does not reset the count. */
static void
auth_ident_window(struct auth_ident *id)
{
	int	cap = id->t.lim.set[TOKEN_REQUESTS_PER_MINUTE] ?
	    (int)id->t.lim.v[TOKEN_REQUESTS_PER_MINUTE] : 0;

	for (int i = 0; i < auth.nids; i++) {
		if (strcmp(auth.ids[i].t.name, id->t.name) != 0 ||
		    auth.ids[i].rate.cap != cap)
			continue;
		id->rate = auth.ids[i].rate;
		memset(&auth.ids[i].rate, 0, sizeof auth.ids[i].rate);
		return;
	}
	auth_window_init(&id->rate, cap);
}

/* The tokens file read again; the table in force stays when it fails. */
static int
auth_load(const struct heavy_config *cfg, char *err, size_t errlen)
{
	struct tokens		 t;
	struct token_limits	 def = { 0 };
	struct auth_ident	*ids;
	const char		*path;
	char			 cred[4096];

	if ((path = tokens_path(cfg, cred, sizeof cred)) == NULL) {
		snprintf(err, errlen, "no tokens file (auth.tokens_file)");
		return -1;
	}
	if (cfg->auth_defaults != NULL && token_limits_parse(
	    cfg->auth_defaults, &def, err, errlen) == -1)
		return -1;
	if (tokens_load(path, &t, err, errlen) == -1)
		return -1;
	ids = xcalloc((size_t)t.n + 1, sizeof *ids);
	for (int i = 0; i < t.n; i++) {
		ids[i].t = t.v[i];
		for (int k = 0; k < TOKEN_NLIMITS; k++)
			if (!ids[i].t.lim.set[k] && def.set[k]) {
				ids[i].t.lim.set[k] = true;
				ids[i].t.lim.v[k] = def.v[k];
			}
		auth_ident_window(&ids[i]);
	}
	auth_ids_free(auth.ids, auth.nids);
	auth.ids = ids;
	auth.nids = t.n;
	tokens_free(&t);
	log_info("auth: %d identit%s from %s", auth.nids, auth.nids == 1 ?
	    "y" : "ies", path);
	return 0;
}

/* Every address's failures forgotten. */
static void
auth_clients_clear(void)
{
	struct lh_entry		*e;
	struct auth_client	*c;

	while (auth.clients != NULL && (e = auth.clients->head) != NULL) {
		c = (struct auth_client *)lh_entry_v(e);
		lh_table_delete_entry(auth.clients, e);
		auth_window_free(&c->fails);
		free(c);
	}
}

/* The knobs; a new auth.fail_max starts every address's count afresh
 * (each window holds at most that many). */
static void
auth_knobs(const struct heavy_config *cfg)
{
	if (auth.fail_max != cfg->auth_fail_max)
		auth_clients_clear();
	auth.fail_max = cfg->auth_fail_max;
	auth.fail_window_ms = (int64_t)cfg->auth_fail_window_s * 1000;
	auth.max_clients = cfg->auth_max_clients;
}

/* Whether cfg asks for authentication: auth.mode, else a tokens file. */
bool
auth_configured(const struct heavy_config *cfg)
{
	char	cred[4096];

	if (cfg->auth_mode != NULL)
		return strcmp(cfg->auth_mode, "none") != 0;
	return tokens_path(cfg, cred, sizeof cred) != NULL;
}

static void
auth_seen_drop(struct lh_entry *e)
{
	struct auth_seen	*n = (struct auth_seen *)lh_entry_v(e);

	lh_table_delete_entry(auth.seen, e);
	auth_window_free(&n->rate);
	free(n);
}

/* Every OAuth identity's request window forgotten. */
static void
auth_seen_clear(void)
{
	while (auth.seen != NULL && auth.seen->head != NULL)
		auth_seen_drop(auth.seen->head);
}

/* auth.mode oauth: every identity's limits are auth.defaults; a new
 * requests_per_minute starts the windows afresh. */
static int
auth_oauth_limits(const struct heavy_config *cfg, char *err, size_t errlen)
{
	struct token_limits	l = { 0 };
	int			k = TOKEN_REQUESTS_PER_MINUTE;

	if (cfg->auth_defaults != NULL && token_limits_parse(
	    cfg->auth_defaults, &l, err, errlen) == -1)
		return -1;
	if (l.set[k] != auth.oauth_lim.set[k] || l.v[k] != auth.oauth_lim.v[k])
		auth_seen_clear();
	auth.oauth_lim = l;
	return 0;
}

/* At the start: the mode is fixed from now on; the table loaded. */
int
auth_init(const struct heavy_config *cfg, char *err, size_t errlen)
{
	auth_knobs(cfg);
	auth.on = auth_configured(cfg);
	auth.oauth = cfg->auth_mode != NULL &&
	    strcmp(cfg->auth_mode, "oauth") == 0;
	auth.clients = lh_kchar_table_new(64, NULL);
	if (!auth.on)
		return 0;
	if (auth.oauth) {
		if (auth.verify == NULL) {
			snprintf(err, errlen, "auth.mode: oauth: this heavyd "
			    "has no OAuth verifier");
			return -1;
		}
		auth.seen = lh_kchar_table_new(64, NULL);
		return auth_oauth_limits(cfg, err, errlen);
	}
	return auth_load(cfg, err, errlen);
}

/* SIGHUP: the knobs and the file again; a revoked token is refused from
 * the next request. */
void
auth_reload(void *arg, const struct heavy_config *cfg)
{
	char	err[1024];

	(void)arg;
	auth_knobs(cfg);
	if (auth.on && auth.oauth && auth_oauth_limits(cfg, err,
	    sizeof err) == -1)
		log_warnx("auth: reload: %s; the limits in force stay", err);
	if (!auth.on || auth.oauth)
		return;
	if (auth_load(cfg, err, sizeof err) == -1)
		log_warnx("auth: reload: %s; the identities in force stay", err);
}

bool
auth_enabled(void)
{
	return auth.on;
}

/* The seam for auth.mode: oauth. */
void
auth_set_verifier(auth_verify_fn fn)
{
	auth.verify = fn;
}

void
auth_stop(void)
{
	auth_ids_free(auth.ids, auth.nids);
	auth.ids = NULL;
	auth.nids = 0;
	auth_clients_clear();
	if (auth.clients != NULL)
		lh_table_free(auth.clients);
	auth.clients = NULL;
	auth_seen_clear();
	if (auth.seen != NULL)
		lh_table_free(auth.seen);
	auth.seen = NULL;
	memset(&auth.oauth_lim, 0, sizeof auth.oauth_lim);
	auth.fail_max = 0;
}

/* --- lookups ---------------------------------------------------------- */

/* The identity whose digest this is: every one compared, in constant
 * time, so that the time taken says nothing of which matched. */
static struct auth_ident *
auth_by_digest(const uint8_t digest[TOKEN_DIGEST_LEN])
{
	struct auth_ident	*found = NULL;

	for (int i = 0; i < auth.nids; i++)
		if (memeql_sec(auth.ids[i].t.digest, digest, TOKEN_DIGEST_LEN))
			found = &auth.ids[i];
	return found;
}

static struct auth_ident *
auth_by_owner(const char *owner)
{
	size_t	plen = strlen(AUTH_OWNER_PREFIX);

	if (owner == NULL || strncmp(owner, AUTH_OWNER_PREFIX, plen) != 0)
		return NULL;
	for (int i = 0; i < auth.nids; i++)
		if (strcmp(auth.ids[i].t.name, owner + plen) == 0)
			return &auth.ids[i];
	return NULL;
}

/* An identity's limits; NULL for an owner that is none (stdio's).  An
 * OAuth identity has auth.defaults'. */
/* An OAuth owner's limits: its claim's when it stated some, else
 * auth.defaults'. */
static const struct token_limits *
auth_oauth_owner_limits(const char *owner)
{
	size_t	plen = strlen(AUTH_OWNER_PREFIX);
	void	*v;

	if (owner == NULL || strncmp(owner, AUTH_OWNER_PREFIX, plen) != 0)
		return NULL;
	if (auth.seen != NULL && lh_table_lookup_ex(auth.seen, owner + plen,
	    &v))
		return &((struct auth_seen *)v)->lim;
	return &auth.oauth_lim;
}

const struct token_limits *
auth_limits(const char *owner)
{
	struct auth_ident	*id;

	if (auth.oauth)
		return auth_oauth_owner_limits(owner);
	id = auth_by_owner(owner);
	return id != NULL ? &id->t.lim : NULL;
}

/* --- failed attempts, per client address ------------------------------ */

/* Room for one more address: those with no failure left in the window
 * go first; when all have some, the oldest entry. */
static void
auth_clients_room(int64_t now)
{
	struct lh_entry		*e, *next;
	struct auth_client	*c;

	if (auth.clients->count < auth.max_clients)
		return;
	for (e = auth.clients->head; e != NULL; e = next) {
		next = e->next;
		c = (struct auth_client *)lh_entry_v(e);
		if (auth_window_count(&c->fails, now, auth.fail_window_ms) > 0)
			continue;
		lh_table_delete_entry(auth.clients, e);
		auth_window_free(&c->fails);
		free(c);
	}
	if (auth.clients->count >= auth.max_clients &&
	    (e = auth.clients->head) != NULL) {
		c = (struct auth_client *)lh_entry_v(e);
		lh_table_delete_entry(auth.clients, e);
		auth_window_free(&c->fails);
		free(c);
	}
}

static struct auth_client *
auth_client(const char *addr, bool make, int64_t now)
{
	struct auth_client	*c;
	void			*v;

	if (lh_table_lookup_ex(auth.clients, addr, &v))
		return v;
	if (!make)
		return NULL;
	auth_clients_room(now);
	c = xcalloc(1, sizeof *c);
	snprintf(c->addr, sizeof c->addr, "%s", addr);
	auth_window_init(&c->fails, auth.fail_max);
	lh_table_insert(auth.clients, c->addr, c);
	return c;
}

static void
auth_deny(struct auth_denial *d, int status, int retry_s, const char *msg)
{
	memset(d, 0, sizeof *d);
	d->status = status;
	d->retry_after_s = retry_s;
	snprintf(d->message, sizeof d->message, "%s", msg);
	if (status == 401)
		snprintf(d->www_authenticate, sizeof d->www_authenticate,
		    "%s", AUTH_REALM);
}

/* A failed attempt from addr: counted, logged (never the token), 401. */
static void
auth_failed(const char *addr, const char *why, int64_t now,
    struct auth_denial *d)
{
	struct auth_client	*c = auth_client(addr, true, now);
	int			 n;

	(void)auth_window_hit(&c->fails, now, auth.fail_window_ms);
	n = c->fails.n;
	log_warnx("auth: %s from %s: failure %d in %d s%s", why, addr, n,
	    (int)(auth.fail_window_ms / 1000), n >= auth.fail_max ?
	    "; further requests from it are refused (auth.fail_max)" : "");
	auth_deny(d, 401, 0, strcmp(why, AUTH_NO_TOKEN) == 0 ?
	    "Unauthorized: an Authorization: Bearer token is required" :
	    "Unauthorized: the token is not valid");
}

/* An address at auth.fail_max: 429 until its oldest failure leaves. */
static bool
auth_blocked(const char *addr, int64_t now, struct auth_denial *d)
{
	struct auth_client	*c = auth_client(addr, false, now);
	char			 msg[160];
	int64_t			 wait;

	if (c == NULL || auth_window_count(&c->fails, now,
	    auth.fail_window_ms) < auth.fail_max)
		return false;
	wait = c->fails.stamps[c->fails.head] + auth.fail_window_ms - now;
	snprintf(msg, sizeof msg, "Too Many Requests: too many failed "
	    "authentications from this address; retry in %d s",
	    auth_retry_after_s(wait));
	auth_deny(d, 429, auth_retry_after_s(wait), msg);
	return true;
}

/* --- a request -------------------------------------------------------- */

/* "Bearer TOKEN": the token's place and length; -1 if not that form. */
static int
auth_bearer(const char *h, const char **tok, size_t *len)
{
	static const char	tchars[] = "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/=";
	size_t			n;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return -1;
	h += 7;
	while (*h == ' ')
		h++;
	n = strspn(h, tchars);
	if (n == 0 || h[n] != '\0')
		return -1;
	*tok = h;
	*len = n;
	return 0;
}

/* tokens mode: the identity of the token, or NULL. */
static struct auth_ident *
auth_token_ident(const char *tok, size_t len)
{
	uint8_t			 digest[TOKEN_DIGEST_LEN];
	struct auth_ident	*id;

	token_digest(tok, len, digest);
	id = auth_by_digest(digest);
	explicit_bzero(digest, sizeof digest);
	return id;
}

/* The identity's requests_per_minute: 429 when it is over. */
static bool
auth_over_rate(struct auth_window *rate, const char *name, int64_t now,
    struct auth_denial *d)
{
	char	msg[160];
	int64_t	wait;

	if ((wait = auth_window_hit(rate, now, AUTH_MINUTE_MS)) == 0)
		return false;
	snprintf(msg, sizeof msg, "Too Many Requests: over this identity's "
	    "requests_per_minute (%d); retry in %d s", rate->cap,
	    auth_retry_after_s(wait));
	auth_deny(d, 429, auth_retry_after_s(wait), msg);
	log_with(LOG_LVL_INFO, &(struct log_fields){ .identity = name },
	    "auth: %s is over its requests_per_minute (%d)", name, rate->cap);
	return true;
}

/*
 * An OAuth identity's request window, made on its first request.  At most
 * auth.max_clients are kept: those with no request left in the window go
 * first (they lose nothing), then the oldest.
 */
static struct auth_seen *
auth_seen(const char *name, int64_t now)
{
	struct lh_entry		*e, *next;
	struct auth_seen	*n;
	void			*v;

	if (lh_table_lookup_ex(auth.seen, name, &v))
		return v;
	for (e = auth.seen->head; e != NULL &&
	    auth.seen->count >= auth.max_clients; e = next) {
		next = e->next;
		n = (struct auth_seen *)lh_entry_v(e);
		if (auth_window_count(&n->rate, now, AUTH_MINUTE_MS) == 0)
			auth_seen_drop(e);
	}
	if (auth.seen->count >= auth.max_clients && auth.seen->head != NULL)
		auth_seen_drop(auth.seen->head);
	n = xcalloc(1, sizeof *n);
	snprintf(n->name, sizeof n->name, "%s", name);
	n->lim = auth.oauth_lim;
	auth_window_init(&n->rate, (int)n->lim.v[TOKEN_REQUESTS_PER_MINUTE]);
	lh_table_insert(auth.seen, n->name, n);
	return n;
}

/*
 * An OAuth identity's limits: auth.defaults, each overridden by the one
 * its token's limits claim states (checked by the verifier), as its last
 * request said.  A changed requests_per_minute starts its window afresh.
 */
static void
auth_seen_limits(struct auth_seen *n, const char *claim)
{
	struct token_limits	lim = auth.oauth_lim, c;
	char			why[160];

	if (claim[0] != '\0' && token_limits_parse(claim, &c, why,
	    sizeof why) == 0)
		for (int k = 0; k < TOKEN_NLIMITS; k++)
			if (c.set[k]) {
				lim.set[k] = true;
				lim.v[k] = c.v[k];
			}
	if (lim.set[TOKEN_REQUESTS_PER_MINUTE] !=
	    n->lim.set[TOKEN_REQUESTS_PER_MINUTE] ||
	    lim.v[TOKEN_REQUESTS_PER_MINUTE] !=
	    n->lim.v[TOKEN_REQUESTS_PER_MINUTE]) {
		auth_window_free(&n->rate);
		auth_window_init(&n->rate,
		    (int)lim.v[TOKEN_REQUESTS_PER_MINUTE]);
	}
	n->lim = lim;
}

/*
 * auth.mode: oauth: the verifier says who the token is, or how to refuse
 * (given no token, it makes its own challenge); a 401 counts as a failure
 * of the address all the same.  The identity is held to auth.defaults'
 * requests_per_minute.
 */
static int
auth_oauth(const char *authorization, const char *addr, int64_t now,
    char *owner, size_t ownerlen, struct auth_denial *d)
{
	struct auth_denial	 mine;
	struct auth_seen	*n;
	const char		*tok = NULL;
	char			 name[AUTH_NAME_MAX + 1], limits[AUTH_LIMITS_MAX + 1];
	size_t			 len = 0;

	(void)auth_bearer(authorization, &tok, &len);
	if (auth.verify(tok, len, name, sizeof name, limits, sizeof limits,
	    d) == 0) {
		n = auth_seen(name, now);
		auth_seen_limits(n, limits);
		if (n->lim.set[TOKEN_REQUESTS_PER_MINUTE] &&
		    auth_over_rate(&n->rate, name, now, d))
			return -1;
		if ((size_t)snprintf(owner, ownerlen, AUTH_OWNER_PREFIX "%s",
		    name) >= ownerlen)
			fatalx("auth: an owner buffer shorter than "
			    "AUTH_OWNER_MAX");
		return 0;
	}
	if (d->status == 401)
		auth_failed(addr, tok == NULL ? AUTH_NO_TOKEN : d->message,
		    now, &mine);
	else if (d->status == 403)
		log_warnx("auth: %s from %s", d->message, addr);
	return -1;
}

/*
 * One HTTP request: its Authorization header (NULL: none), its client's
 * address, the time (monotonic ms).  0 and the owner ("id:NAME"), or -1
 * and the denial to send.  Without auth every caller is HTTP_ANONYMOUS.
 */
int
auth_request(const char *authorization, const char *addr, int64_t now,
    char *owner, size_t ownerlen, struct auth_denial *d)
{
	struct auth_ident	*id;
	const char		*tok;
	size_t			 len;

	if (!auth.on) {
		snprintf(owner, ownerlen, "%s", AUTH_ANONYMOUS);
		return 0;
	}
	if (auth_blocked(addr, now, d))
		return -1;
	if (auth.oauth)
		return auth_oauth(authorization, addr, now, owner, ownerlen, d);
	if (auth_bearer(authorization, &tok, &len) == -1) {
		auth_failed(addr, authorization == NULL ? AUTH_NO_TOKEN :
		    "a malformed Authorization header", now, d);
		return -1;
	}
	if ((id = auth_token_ident(tok, len)) == NULL) {
		auth_failed(addr, "an unknown or revoked token", now, d);
		return -1;
	}
	if (auth_over_rate(&id->rate, id->t.name, now, d))
		return -1;
	snprintf(owner, ownerlen, AUTH_OWNER_PREFIX "%s", id->t.name);
	return 0;
}

/* --- admission -------------------------------------------------------- */

/*
 * A call that left num_agents or timeout to the defaults is not refused
 * for them: an identity whose maxima are below the configured defaults
 * gets its maxima instead.  A value asked for is held to them (below).
 */
void
auth_fit_defaults(const char *owner, const struct heavy_config *cfg,
    int *num_agents, double *timeout_s)
{
	const struct token_limits	*l = auth_limits(owner);

	if (l == NULL)
		return;
	if (l->set[TOKEN_MAX_NUM_AGENTS] && *num_agents == cfg->num_agents &&
	    *num_agents > l->v[TOKEN_MAX_NUM_AGENTS])
		*num_agents = (int)l->v[TOKEN_MAX_NUM_AGENTS];
	if (l->set[TOKEN_MAX_TIMEOUT] && *timeout_s == cfg->task_timeout_s &&
	    *timeout_s > l->v[TOKEN_MAX_TIMEOUT])
		*timeout_s = l->v[TOKEN_MAX_TIMEOUT];
}

/*
 * Whether an identity may start this orchestration: its num_agents and
 * timeout maxima, its concurrent tasks (active: those it runs now), its
 * live workers (agents: the most its running ones hold at once).  0, or
 * -1 and a tool error's text naming the limit.
 */
int
auth_admit(const char *owner, int num_agents, double timeout_s, int active,
    int agents, char *why, size_t len)
{
	const struct token_limits	*l = auth_limits(owner);

	if (l == NULL)
		return 0;
	if (l->set[TOKEN_MAX_NUM_AGENTS] &&
	    num_agents > l->v[TOKEN_MAX_NUM_AGENTS])
		snprintf(why, len, "num_agents %d is over this identity's "
		    "limit (max_num_agents=%.0f)", num_agents,
		    l->v[TOKEN_MAX_NUM_AGENTS]);
	else if (l->set[TOKEN_MAX_TIMEOUT] &&
	    timeout_s > l->v[TOKEN_MAX_TIMEOUT])
		snprintf(why, len, "timeout %g s is over this identity's limit "
		    "(max_timeout=%.0f)", timeout_s, l->v[TOKEN_MAX_TIMEOUT]);
	else if (l->set[TOKEN_CONCURRENT_TASKS] &&
	    active >= l->v[TOKEN_CONCURRENT_TASKS])
		snprintf(why, len, "busy: this identity already runs %d "
		    "orchestrations (concurrent_tasks=%.0f); retry later",
		    active, l->v[TOKEN_CONCURRENT_TASKS]);
	else if (l->set[TOKEN_LIVE_WORKERS] &&
	    agents + num_agents > l->v[TOKEN_LIVE_WORKERS])
		snprintf(why, len, "busy: this identity's orchestrations would "
		    "run %d workers at once, over its limit (live_workers=%.0f); "
		    "retry later or ask for fewer agents", agents + num_agents,
		    l->v[TOKEN_LIVE_WORKERS]);
	else
		return 0;
	return -1;
}

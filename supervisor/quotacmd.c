/*
 * heavyd quota NAME: an identity's use of its quotas (quota.c) against
 * its limits (the tokens file), as the task store counts them now: the
 * SQLite file of the state directory, or store.url.  It reads; it never
 * charges.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "supervisor.h"

#define QUOTACMD_EXIT_OK	0
#define QUOTACMD_EXIT_FAILED	1
#define QUOTACMD_EXIT_USAGE	2
#define QUOTACMD_WAIT_MS	30000	/* for a store's server */

struct quotacmd_read {
	int	rc;		/* 1: not answered yet */
	int64_t	total;
};

static void
quotacmd_total(void *arg, int rc, int64_t total)
{
	struct quotacmd_read	*r = arg;

	r->rc = rc;
	r->total = total;
}

static void
quotacmd_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
}

/* What its line leaves unset comes from auth.defaults, as in auth.c. */
static int
quotacmd_defaults(const struct heavy_config *cfg, struct token_limits *lim)
{
	struct token_limits	def = { 0 };
	char			err[512];

	if (cfg->auth_defaults != NULL && token_limits_parse(
	    cfg->auth_defaults, &def, err, sizeof err) == -1) {
		fprintf(stderr, "%s: auth.defaults: %s\n", HEAVY_NAME, err);
		return -1;
	}
	for (int k = 0; k < TOKEN_NLIMITS; k++)
		if (!lim->set[k] && def.set[k]) {
			lim->set[k] = true;
			lim->v[k] = def.v[k];
		}
	return 0;
}

/* The identity's limits from the tokens file (and auth.defaults); -1
 * (said why) when the file cannot be read. */
static int
quotacmd_limits(const struct heavy_config *cfg, const char *name,
    struct token_limits *lim)
{
	struct tokens	 t;
	char		 cred[4096], err[4608];
	const char	*path = tokens_path(cfg, cred, sizeof cred);
	int		 found = 0;

	memset(lim, 0, sizeof *lim);
	if (path == NULL) {
		fprintf(stderr, "%s: quota: no tokens file: set "
		    "auth.tokens_file, or HEAVY_AUTH_TOKENS_FILE\n", HEAVY_NAME);
		return -1;
	}
	if (tokens_load(path, &t, err, sizeof err) == -1) {
		fprintf(stderr, "%s: %s\n", HEAVY_NAME, err);
		return -1;
	}
	for (int i = 0; i < t.n && !found; i++)
		if (strcmp(t.v[i].name, name) == 0) {
			*lim = t.v[i].lim;
			found = 1;
		}
	tokens_free(&t);
	if (!found) {
		fprintf(stderr, "%s: quota: %s is not in %s; its counters "
		    "are shown without limits\n", HEAVY_NAME, name, path);
		return 0;
	}
	return quotacmd_defaults(cfg, lim);
}

/* Every window's total, waited for (a server answers on the loop). */
static int
quotacmd_read(const char *owner, int64_t now, struct quotacmd_read *r)
{
	struct event	*tick;
	struct timeval	 tv = { 0, 100000 };
	int64_t		 deadline = now_ms() + QUOTACMD_WAIT_MS;
	bool		 waiting = true;

	tick = event_new(ev_base, -1, EV_PERSIST, quotacmd_tick, NULL);
	event_add(tick, &tv);
	for (int k = 0; k < QUOTA_NKINDS; k++) {
		r[k].rc = 1;
		store_quota_total(owner, quota_kind_name(k), quota_window(k,
		    now), quotacmd_total, &r[k]);
	}
	while (waiting && now_ms() < deadline) {
		waiting = false;
		for (int k = 0; k < QUOTA_NKINDS; k++)
			waiting |= r[k].rc == 1;
		if (waiting)
			event_base_loop(ev_base, EVLOOP_ONCE);
	}
	event_free(tick);
	for (int k = 0; k < QUOTA_NKINDS; k++)
		if (r[k].rc != STORE_OK) {
			fprintf(stderr, "%s: quota: the task store did not "
			    "answer: %s\n", HEAVY_NAME, r[k].rc == 1 ?
			    "no answer in time" : store_error());
			return -1;
		}
	return 0;
}

static void
quotacmd_amount(enum quota_kind k, int64_t v, char *buf, size_t len)
{
	if (k == QUOTA_USD)
		snprintf(buf, len, "%.6f", (double)v / 1e6);
	else
		snprintf(buf, len, "%" PRId64, v);
}

/* One line a quota: its key, used, limit ("-": none), the window's
 * start and end (UTC). */
static void
quotacmd_print(const char *name, const struct token_limits *lim, int64_t now,
    const struct quotacmd_read *r)
{
	char	used[32], limit[32], from[32], to[32];
	int64_t	l;

	printf("identity %s (id:%s), at ", name, name);
	quota_time_text(now / 1000, from, sizeof from);
	printf("%s\n%-24s %14s %14s  %-20s  %s\n", from, "quota", "used",
	    "limit", "window (UTC)", "resets");
	for (int k = 0; k < QUOTA_NKINDS; k++) {
		quotacmd_amount(k, r[k].total, used, sizeof used);
		if (quota_limit(lim, k, &l))
			quotacmd_amount(k, l, limit, sizeof limit);
		else
			snprintf(limit, sizeof limit, "-");
		quota_time_text(quota_window(k, now), from, sizeof from);
		quota_time_text(quota_window_end(k, now), to, sizeof to);
		printf("%-24s %14s %14s  %-20s  %s\n", quota_limit_name(k),
		    used, limit, from, to);
	}
}

int
quotacmd_run(const struct heavy_config *cfg, int argc, char **argv)
{
	struct store_options	 o = { .state_dir = cfg->state_dir,
	    .url = cfg->store_url, .busy_ms = cfg->store_busy_ms,
	    .max_queue = cfg->store_max_queue,
	    .pipeline = cfg->store_pipeline,
	    .prepared = cfg->store_prepared > 0 ? cfg->store_prepared : -1,
	    .connect_timeout_ms = cfg->store_connect_timeout_s * 1000,
	    .retry_max_ms = cfg->store_retry_max_ms };
	struct quotacmd_read	 r[QUOTA_NKINDS];
	struct token_limits	 lim;
	char			 owner[TOKEN_NAME_MAX + 8], err[512];
	int64_t			 now = quota_now_ms();
	int			 rc;

	if (argc != 2 || !token_name_valid(argv[1], strlen(argv[1]))) {
		fprintf(stderr, "usage: heavyd [--config FILE] [--state-dir "
		    "DIR] quota NAME\n");
		return QUOTACMD_EXIT_USAGE;
	}
	if (quotacmd_limits(cfg, argv[1], &lim) == -1)
		return QUOTACMD_EXIT_FAILED;
	if ((ev_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	if (store_open(&o, err, sizeof err) == -1) {
		fprintf(stderr, "%s: %s\n", HEAVY_NAME, err);
		event_base_free(ev_base);
		return QUOTACMD_EXIT_FAILED;
	}
	snprintf(owner, sizeof owner, "%s%s", AUTH_OWNER_PREFIX, argv[1]);
	rc = quotacmd_read(owner, now, r);
	if (rc == 0)
		quotacmd_print(argv[1], &lim, now, r);
	store_close();
	event_base_free(ev_base);
	ev_base = NULL;
	return rc == 0 ? QUOTACMD_EXIT_OK : QUOTACMD_EXIT_FAILED;
}

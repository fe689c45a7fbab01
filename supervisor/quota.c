/*
 * The persistent per-identity quotas: orchestrations per hour (a rate:
 * over it, 429 and Retry-After over HTTP), LLM tokens per day and USD per
 * day (budgets: a tool error naming the quota, and a running task stopped
 * when one is reached).  The limits are the identity's, from the tokens
 * file (auth_limits); the counters are the task store's (store.h's quota
 * calls), so every heavyd of a store counts together and a restart
 * forgets nothing.
 *
 * Windows are fixed and in UTC: an hour from hh:00:00, a day from
 * 00:00:00, both as the epoch counts them (no leap seconds), so one
 * window is one row key everywhere.  A window's use is charged per task:
 * one orchestration when it starts, and its tokens and micro-USD as its
 * workers report them, each charge the task's running total in that
 * window (a charge only grows, so a charge sent twice counts once).
 *
 * The check before a start reads the store, so it answers through a
 * callback, perhaps on a later turn of the loop.  It is not a
 * reservation: two starts checked at once by two heavyds may both pass at
 * the edge; the charges then show the overshoot, and the next start is
 * refused.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supervisor.h"

#define QUOTA_HOUR_S		3600
#define QUOTA_DAY_S		86400
#define QUOTA_KEEP_S		(2 * QUOTA_DAY_S)	/* then swept */
#define QUOTA_SWEEP_EVERY_MS	(3600 * 1000)

static const struct {
	const char	*store;		/* the store's kind */
	const char	*limit;		/* the tokens file's key */
	int		 token;		/* ... its index */
	int		 width_s;
	const char	*unit;
} quota_kinds[QUOTA_NKINDS] = {
	[QUOTA_ORCHESTRATIONS] = { "orchestrations", "orchestrations_per_hour",
	    TOKEN_ORCHESTRATIONS_PER_HOUR, QUOTA_HOUR_S, "orchestrations" },
	[QUOTA_TOKENS] = { "tokens", "tokens_per_day", TOKEN_TOKENS_PER_DAY,
	    QUOTA_DAY_S, "tokens" },
	[QUOTA_USD] = { "micro_usd", "usd_per_day", TOKEN_USD_PER_DAY,
	    QUOTA_DAY_S, "USD" },
};

static int64_t	(*quota_clock)(void) = wall_ms;
static int64_t	  quota_swept_ms;

/* Tests move time: fn gives the wall clock in ms (NULL: the real one). */
void
quota_set_clock(int64_t (*fn)(void))
{
	quota_clock = fn != NULL ? fn : wall_ms;
}

int64_t
quota_now_ms(void)
{
	return quota_clock();
}

const char *
quota_kind_name(enum quota_kind k)
{
	return quota_kinds[k].store;
}

const char *
quota_limit_name(enum quota_kind k)
{
	return quota_kinds[k].limit;
}

/* Floor division, right for times before the epoch too. */
static int64_t
quota_floor(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The start of the window that holds now_ms, in seconds. */
int64_t
quota_window(enum quota_kind k, int64_t now_ms)
{
	int64_t	w = quota_kinds[k].width_s;

	return quota_floor(quota_floor(now_ms, 1000), w) * w;
}

/* Its end: the first second of the next window. */
int64_t
quota_window_end(enum quota_kind k, int64_t now_ms)
{
	return quota_window(k, now_ms) + quota_kinds[k].width_s;
}

/* Whole seconds until the window ends, rounded up: at least 1. */
int
quota_retry_after_s(enum quota_kind k, int64_t now_ms)
{
	int64_t	ms = quota_window_end(k, now_ms) * 1000 - now_ms;

	return (int)((ms + 999) / 1000);
}

/* The identity's limit of a kind in the counters' unit (micro-USD for
 * USD); false when it sets none. */
bool
quota_limit(const struct token_limits *l, enum quota_kind k, int64_t *limit)
{
	int	i = quota_kinds[k].token;

	if (l == NULL || !l->set[i])
		return false;
	/* The file's values are never negative: + 0.5 rounds them. */
	*limit = (int64_t)((k == QUOTA_USD ? l->v[i] * 1e6 : l->v[i]) + 0.5);
	return true;
}

/* A USD quota counts only what the provider reports: its tasks ask. */
bool
quota_wants_cost(const char *owner)
{
	int64_t	limit;

	return quota_limit(auth_limits(owner), QUOTA_USD, &limit);
}

/*
 * Whether a start may go, given what each window has used: the first
 * quota reached (used at its limit or over), the rate first.
 */
void
quota_decide(const struct token_limits *l, const int64_t used[QUOTA_NKINDS],
    int64_t now_ms, struct quota_decision *d)
{
	int64_t	limit;

	memset(d, 0, sizeof *d);
	d->verdict = QUOTA_OK;
	for (int k = 0; k < QUOTA_NKINDS; k++) {
		if (!quota_limit(l, k, &limit) || used[k] < limit)
			continue;
		d->verdict = k == QUOTA_ORCHESTRATIONS ? QUOTA_RATE :
		    QUOTA_BUDGET;
		d->kind = k;
		d->used = used[k];
		d->limit = limit;
		d->resets_s = quota_window_end(k, now_ms);
		d->retry_after_s = quota_retry_after_s(k, now_ms);
		return;
	}
}

/* An amount in the kind's unit, for people. */
static void
quota_amount(enum quota_kind k, int64_t v, char *buf, size_t len)
{
	if (k == QUOTA_USD)
		snprintf(buf, len, "$%.6f", (double)v / 1e6);
	else
		snprintf(buf, len, "%" PRId64, v);
}

/* "2026-12-05T01:00:00Z" */
void
quota_time_text(int64_t s, char *buf, size_t len)
{
	time_t		t = (time_t)s;
	struct tm	tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Why a start is refused, or a task stopped: the quota, its use, when it
 * resets. */
void
quota_text(const struct quota_decision *d, char *buf, size_t len)
{
	char	used[32], limit[32], at[32];

	quota_amount(d->kind, d->used, used, sizeof used);
	quota_amount(d->kind, d->limit, limit, sizeof limit);
	quota_time_text(d->resets_s, at, sizeof at);
	if (d->verdict == QUOTA_ERROR)
		snprintf(buf, len, "the quota counters cannot be read: %s; "
		    "retry later", store_error());
	else
		snprintf(buf, len, "quota %s reached: %s of %s %s %s (UTC); it "
		    "resets at %s, in %d s", quota_kinds[d->kind].limit, used,
		    limit, quota_kinds[d->kind].unit,
		    d->kind == QUOTA_ORCHESTRATIONS ? "this hour" : "today", at,
		    d->retry_after_s);
}

/* ---- The check before a start ---- */

struct quota_check {
	struct token_limits		 limits;	/* a copy: a reload may
							 * free the identity's */
	int64_t				 now_ms;
	int64_t				 used[QUOTA_NKINDS];
	int				 pending;	/* answers to come, + 1
							 * while asking */
	bool				 failed;
	quota_checked_fn		 fn;
	void				*arg;
};

static void
quota_check_answer(struct quota_check *qc)
{
	struct quota_decision	d;

	if (--qc->pending > 0)
		return;
	if (qc->failed) {
		memset(&d, 0, sizeof d);
		d.verdict = QUOTA_ERROR;
	} else
		quota_decide(&qc->limits, qc->used, qc->now_ms, &d);
	qc->fn(qc->arg, &d);
	free(qc);
}

struct quota_read {
	struct quota_check	*qc;
	enum quota_kind		 kind;
};

static void
quota_check_total(void *arg, int rc, int64_t total)
{
	struct quota_read	*r = arg;

	if (rc == STORE_OK)
		r->qc->used[r->kind] = total;
	else
		r->qc->failed = true;
	quota_check_answer(r->qc);
	free(r);
}

/*
 * Whether owner may start an orchestration now: fn hears the decision,
 * at once when the owner has no quota, else once the store has answered
 * for each window it limits.
 */
void
quota_check(const char *owner, quota_checked_fn fn, void *arg)
{
	struct quota_check	*qc = xcalloc(1, sizeof *qc);
	const struct token_limits *l = auth_limits(owner);
	struct quota_read	*r;
	int64_t			 limit;

	if (l != NULL)
		qc->limits = *l;
	qc->now_ms = quota_clock();
	qc->fn = fn;
	qc->arg = arg;
	qc->pending = 1;
	for (int k = 0; k < QUOTA_NKINDS; k++) {
		if (!quota_limit(l, k, &limit))
			continue;
		r = xcalloc(1, sizeof *r);
		r->qc = qc;
		r->kind = k;
		qc->pending++;
		store_quota_total(owner, quota_kinds[k].store,
		    quota_window(k, qc->now_ms), quota_check_total, r);
	}
	quota_check_answer(qc);
}

/* ---- A running task's charges ---- */

struct quota_run {
	char		*owner;
	char		 id[33];
	int		 refs;		/* this + the charges in flight */
	bool		 ended;
	quota_stop_fn	 stop;
	void		*arg;
	struct event	*stop_ev;	/* the stop, on the next turn */
	char		*why;
	/* Per kind: the window charged last, and the task's total when it
	 * began (what went to earlier windows). */
	int64_t		 window[QUOTA_NKINDS], base[QUOTA_NKINDS];
	int64_t		 total[QUOTA_NKINDS];	/* charged so far */
};

static void
quota_run_unref(struct quota_run *qr)
{
	if (--qr->refs > 0)
		return;
	event_free(qr->stop_ev);
	free(qr->why);
	free(qr->owner);
	free(qr);
}

/* Stops the task outside the charge's callback, which may run inside the
 * task's own usage report. */
static void
quota_stop_cb(evutil_socket_t fd, short events, void *arg)
{
	struct quota_run	*qr = arg;

	(void)fd; (void)events;
	if (!qr->ended && qr->stop != NULL)
		qr->stop(qr->arg, qr->why);
}

struct quota_charge {
	struct quota_run	*qr;
	enum quota_kind		 kind;
};

/* A budget reached mid-task (the limit read now: a reload counts). */
static void
quota_charged(void *arg, int rc, int64_t total)
{
	struct quota_charge	*ch = arg;
	struct quota_run	*qr = ch->qr;
	struct quota_decision	 d = { .verdict = QUOTA_BUDGET };
	struct timeval		 now = { 0, 0 };
	char			 why[512];
	int64_t			 t = quota_clock();

	if (rc != STORE_OK)
		log_warnx("task %s: quota %s not charged: %s", qr->id,
		    quota_kinds[ch->kind].limit, store_error());
	else if (!qr->ended && qr->why == NULL && ch->kind != QUOTA_ORCHESTRATIONS &&
	    quota_limit(auth_limits(qr->owner), ch->kind, &d.limit) &&
	    total >= d.limit) {
		d.kind = ch->kind;
		d.used = total;
		d.resets_s = quota_window_end(ch->kind, t);
		d.retry_after_s = quota_retry_after_s(ch->kind, t);
		quota_text(&d, why, sizeof why);
		qr->why = xstrdup(why);
		evtimer_add(qr->stop_ev, &now);
	}
	quota_run_unref(qr);
	free(ch);
}

/* The task's total of a kind, charged to the window of now. */
static void
quota_charge(struct quota_run *qr, enum quota_kind k, int64_t total,
    int64_t now)
{
	struct quota_charge	*ch;
	int64_t			 w = quota_window(k, now);

	if (w != qr->window[k]) {	/* a new window: from here on */
		qr->window[k] = w;
		qr->base[k] = qr->total[k];
	}
	if (total <= qr->total[k])	/* nothing new to charge */
		return;
	qr->total[k] = total;
	ch = xcalloc(1, sizeof *ch);
	ch->qr = qr;
	ch->kind = k;
	qr->refs++;
	store_quota_charge(qr->owner, quota_kinds[k].store, w, qr->id,
	    total - qr->base[k], quota_charged, ch);
}

static void
quota_sweep_done(void *arg, int rc)
{
	(void)arg;
	if (rc > 0)
		log_debug("quota: %d old charge(s) swept", rc);
}

/*
 * A task of owner started: its orchestration is charged, and stop will
 * hear why if a daily budget is reached while it runs.  NULL when the
 * owner is not an identity with limits (the local user over stdio).
 */
struct quota_run *
quota_run_start(const char *owner, const char *task_id, quota_stop_fn stop,
    void *arg)
{
	struct quota_run	*qr;
	int64_t			 now = quota_clock();

	if (auth_limits(owner) == NULL)
		return NULL;
	qr = xcalloc(1, sizeof *qr);
	qr->owner = xstrdup(owner);
	snprintf(qr->id, sizeof qr->id, "%s", task_id);
	qr->refs = 1;
	qr->stop = stop;
	qr->arg = arg;
	qr->stop_ev = evtimer_new(ev_base, quota_stop_cb, qr);
	for (int k = 0; k < QUOTA_NKINDS; k++)
		qr->window[k] = quota_window(k, now);
	quota_charge(qr, QUOTA_ORCHESTRATIONS, 1, now);
	if (now - quota_swept_ms >= QUOTA_SWEEP_EVERY_MS) {
		quota_swept_ms = now;
		store_quota_sweep(now / 1000 - QUOTA_KEEP_S, quota_sweep_done,
		    NULL);
	}
	return qr;
}

/* The task's usage so far (every LLM call's, as reported). */
void
quota_run_usage(struct quota_run *qr, const struct usage *u)
{
	int64_t	now = quota_clock();

	if (qr == NULL || qr->ended)
		return;
	quota_charge(qr, QUOTA_TOKENS, (int64_t)u->total_tokens, now);
	quota_charge(qr, QUOTA_USD, (int64_t)u->cost_micro_usd, now);
}

/* The task ended: its last usage (if known) is charged, and stop is not
 * called any more. */
void
quota_run_end(struct quota_run *qr, const struct usage *u)
{
	if (qr == NULL)
		return;
	if (u != NULL)
		quota_run_usage(qr, u);
	qr->ended = true;
	qr->stop = NULL;
	evtimer_del(qr->stop_ev);
	quota_run_unref(qr);
}

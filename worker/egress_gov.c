/*
 * The governor of heavyd-egress: every LLM call of every worker of every
 * task to one upstream (its base_url) waits here for a permit.  A cap on
 * the calls in flight (HEAVY_EGRESS_MAX_CALLS) and one pause for all: a
 * 429 with Retry-After (or X-RateLimit-Reset) holds back every call to
 * that upstream until then, not only the worker that got it, so N agents
 * do not hammer a rate-limited key independently.  Permits go in arrival
 * order.  A call that waits past its own time is answered as timed out.
 *
 * A circuit breaker (off unless limits.egress_breaker_failures is set):
 * after that many failures in a row (5xx, or no answer at all), calls to
 * the upstream fail fast for limits.egress_breaker_cooldown seconds; then
 * one call goes as a probe (half-open): its success closes the breaker,
 * its failure opens it again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker.h"
#include "egress.h"

#define GOV_MAX_PAUSE_MS	600000	/* a hint longer than this is capped */

enum gov_breaker { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };
static const char *const gov_breaker_names[] = { "closed", "open",
	"half-open" };

struct egress_upstream {
	char				*base_url;
	uint32_t			 running;
	int64_t				 paused_until;	/* ms; 0: not paused */
	enum gov_breaker		 breaker;
	uint32_t			 failures;	/* in a row */
	int64_t				 open_until;	/* ms, while open */
	bool				 probing;	/* half-open: one out */
	TAILQ_HEAD(, gov_wait)		 queue;
	TAILQ_ENTRY(egress_upstream)	 entry;
};

static TAILQ_HEAD(, egress_upstream)	gov_upstreams =
    TAILQ_HEAD_INITIALIZER(gov_upstreams);
static uint32_t				gov_max_calls;
static uint32_t				gov_breaker_failures;
static int64_t				gov_cooldown_ms;

void
gov_init(uint32_t max_calls, uint32_t breaker_failures, uint32_t cooldown_s)
{
	gov_max_calls = max_calls;
	gov_breaker_failures = breaker_failures;
	gov_cooldown_ms = (int64_t)cooldown_s * 1000;
}

static void
gov_breaker_set(struct egress_upstream *u, enum gov_breaker b)
{
	if (u->breaker == b)
		return;
	u->breaker = b;
	if (b == BREAKER_OPEN)
		u->open_until = now_ms() + gov_cooldown_ms;
	log_info("upstream %s: circuit breaker %s%s", u->base_url,
	    gov_breaker_names[b], b == BREAKER_OPEN ? " after failures in a "
	    "row; calls fail fast until a probe succeeds" : "");
}

/*
 * Whether a new call may go at all: -1 to fail it fast (the breaker is
 * open, or half-open with its probe out); else 0, and *probe when it is
 * the half-open breaker's probe.
 */
int
gov_admit(struct egress_upstream *u, bool *probe, char *why, size_t len)
{
	*probe = false;
	if (u->breaker == BREAKER_OPEN && now_ms() >= u->open_until)
		gov_breaker_set(u, BREAKER_HALF_OPEN);
	if (u->breaker == BREAKER_HALF_OPEN && !u->probing) {
		u->probing = *probe = true;
		return 0;
	}
	if (u->breaker == BREAKER_CLOSED)
		return 0;
	snprintf(why, len, "the circuit breaker of %s is %s after %u failures "
	    "in a row (limits.egress_breaker_failures); calls fail fast for "
	    "up to %lld s", u->base_url, gov_breaker_names[u->breaker],
	    gov_breaker_failures, (long long)(gov_cooldown_ms / 1000));
	return -1;
}

/* A call's outcome, for the breaker: failed is a 5xx or no answer. */
static void
gov_breaker_outcome(struct egress_upstream *u, bool probe, bool failed)
{
	if (gov_breaker_failures == 0)
		return;
	if (probe)
		u->probing = false;
	if (!failed) {
		u->failures = 0;
		gov_breaker_set(u, BREAKER_CLOSED);
		return;
	}
	if (u->failures < UINT32_MAX)
		u->failures++;
	if (probe || u->failures >= gov_breaker_failures) {
		u->breaker = BREAKER_CLOSED;	/* so that it logs, and re-arms */
		gov_breaker_set(u, BREAKER_OPEN);
	}
}

/* The upstream of base_url, made on first use (a handful at most). */
struct egress_upstream *
gov_upstream(const char *base_url)
{
	struct egress_upstream	*u;

	TAILQ_FOREACH(u, &gov_upstreams, entry)
		if (strcmp(u->base_url, base_url) == 0)
			return u;
	u = xcalloc(1, sizeof *u);
	u->base_url = xstrdup(base_url);
	TAILQ_INIT(&u->queue);
	TAILQ_INSERT_TAIL(&gov_upstreams, u, entry);
	return u;
}

static bool	gov_may_start(const struct egress_upstream *, int64_t);

void
gov_submit(struct gov_wait *w, struct egress_upstream *u, int64_t expires)
{
	int64_t	now = now_ms();

	if (!TAILQ_EMPTY(&u->queue) || !gov_may_start(u, now))
		log_debug("an LLM call to %s waits for a permit: %u in flight "
		    "(limits.egress_max_calls %u)%s", u->base_url, u->running,
		    gov_max_calls, now < u->paused_until ? ", paused after a "
		    "429" : "");
	w->up = u;
	w->expires = expires;
	w->state = GOV_QUEUED;
	TAILQ_INSERT_TAIL(&u->queue, w, entry);
}

/* Its worker went away: a queued call leaves the line, a running one
 * frees its permit. */
void
gov_cancel(struct gov_wait *w)
{
	if (w->state == GOV_QUEUED)
		TAILQ_REMOVE(&w->up->queue, w, entry);
	else if (w->state == GOV_RUNNING)
		w->up->running--;
	if (w->state != GOV_NONE && w->probe)
		w->up->probing = false;	/* the next call probes */
	w->state = GOV_NONE;
}

/* A call ended: its permit back; a 429's hint pauses the upstream. */
void
gov_finished(struct gov_wait *w, long status, bool answered,
    const char *retry_after, const char *reset)
{
	struct egress_upstream	*u = w->up;
	int64_t			 hint, until;

	if (w->state != GOV_RUNNING)
		return;
	u->running--;
	w->state = GOV_NONE;
	gov_breaker_outcome(u, w->probe, !answered || status >= 500);
	if (status != 429 ||
	    (hint = backoff_hint_ms(retry_after, reset, time(NULL))) <= 0)
		return;
	until = now_ms() + (hint > GOV_MAX_PAUSE_MS ? GOV_MAX_PAUSE_MS : hint);
	if (until <= u->paused_until)
		return;
	u->paused_until = until;
	log_info("upstream %s answered 429: every call to it waits %.1f s",
	    u->base_url, (double)(until - now_ms()) / 1000);
}

static bool
gov_may_start(const struct egress_upstream *u, int64_t now)
{
	return now >= u->paused_until &&
	    (gov_max_calls == 0 || u->running < gov_max_calls);
}

/* The first call in u's line whose time ran out, or NULL. */
static struct gov_wait *
gov_expired(struct egress_upstream *u, int64_t now)
{
	struct gov_wait	*w;

	TAILQ_FOREACH(w, &u->queue, entry)
		if (now >= w->expires)
			return w;
	return NULL;
}

/*
 * Starts what may start, and expires what waited too long.  Either may
 * close a worker's socket and so free its other calls: each step looks
 * at the line afresh.
 */
void
gov_pump(void (*start)(struct gov_wait *), void (*expire)(struct gov_wait *))
{
	struct egress_upstream	*u;
	struct gov_wait		*w;
	int64_t			 now = now_ms();

	TAILQ_FOREACH(u, &gov_upstreams, entry) {
		while ((w = gov_expired(u, now)) != NULL) {
			TAILQ_REMOVE(&u->queue, w, entry);
			w->state = GOV_NONE;
			expire(w);
		}
		while ((w = TAILQ_FIRST(&u->queue)) != NULL &&
		    gov_may_start(u, now)) {
			TAILQ_REMOVE(&u->queue, w, entry);
			w->state = GOV_RUNNING;
			u->running++;
			start(w);
		}
	}
}

/* When gov_pump has something to do by the clock: -1 never. */
int64_t
gov_next(void)
{
	struct egress_upstream	*u;
	struct gov_wait		*w;
	int64_t			 next = -1, t;

	TAILQ_FOREACH(u, &gov_upstreams, entry)
		TAILQ_FOREACH(w, &u->queue, entry) {
			t = w->expires;
			if (u->paused_until > 0 && u->paused_until < t)
				t = u->paused_until;
			if (next == -1 || t < next)
				next = t;
		}
	return next;
}

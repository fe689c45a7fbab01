/*
 * The governor of heavyd-egress: every LLM call of every worker of every
 * task to one upstream (its base_url) waits here for a permit.  A cap on
 * the calls in flight (HEAVY_EGRESS_MAX_CALLS) and one pause for all: a
 * 429 with Retry-After (or X-RateLimit-Reset) holds back every call to
 * that upstream until then, not only the worker that got it, so N agents
 * do not hammer a rate-limited key independently.  Permits go in arrival
 * order.  A call that waits past its own time is answered as timed out.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker.h"
#include "egress.h"

#define GOV_MAX_PAUSE_MS	600000	/* a hint longer than this is capped */

struct egress_upstream {
	char				*base_url;
	uint32_t			 running;
	int64_t				 paused_until;	/* ms; 0: not paused */
	TAILQ_HEAD(, gov_wait)		 queue;
	TAILQ_ENTRY(egress_upstream)	 entry;
};

static TAILQ_HEAD(, egress_upstream)	gov_upstreams =
    TAILQ_HEAD_INITIALIZER(gov_upstreams);
static uint32_t				gov_max_calls;

void
gov_init(uint32_t max_calls)
{
	gov_max_calls = max_calls;
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
		log_debug("an LLM call to %s waits: %s", u->base_url,
		    now < u->paused_until ? "paused after a 429" :
		    !TAILQ_EMPTY(&u->queue) ? "others wait before it" :
		    "the cap on calls in flight (limits.egress_max_calls)");
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
	w->state = GOV_NONE;
}

/* A call ended: its permit back; a 429's hint pauses the upstream. */
void
gov_finished(struct gov_wait *w, long status, const char *retry_after,
    const char *reset)
{
	struct egress_upstream	*u = w->up;
	int64_t			 hint, until;

	if (w->state != GOV_RUNNING)
		return;
	u->running--;
	w->state = GOV_NONE;
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

/* Starts what may start, and expires what waited too long. */
void
gov_pump(void (*start)(struct gov_wait *), void (*expire)(struct gov_wait *))
{
	struct egress_upstream	*u;
	struct gov_wait		*w, *next;
	int64_t			 now = now_ms();

	TAILQ_FOREACH(u, &gov_upstreams, entry) {
		for (w = TAILQ_FIRST(&u->queue); w != NULL; w = next) {
			next = TAILQ_NEXT(w, entry);
			if (now < w->expires)
				continue;
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

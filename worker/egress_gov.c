/*
 * The governor of heavyd-egress: every LLM call of every worker of every
 * task to one upstream (its base_url) waits here for a permit.  A cap on
 * the calls in flight (HEAVY_EGRESS_MAX_CALLS) and one pause for all: a
 * 429 with Retry-After (or X-RateLimit-Reset) holds back every call to
 * that upstream until then, not only the worker that got it, so N agents
 * do not hammer a rate-limited key independently.  A budget of calls a
 * minute (limits.egress_rpm) holds calls back before the upstream has to
 * say 429.  Its window is sliding and cautious: a call counts from its
 * permit until a minute after its answer, for egress cannot know when
 * within that time the upstream counted it; so however late a request
 * reaches the upstream, no more than rpm fall in any 60 s there.  Where
 * the upstream sends its remaining budget (x-ratelimit-remaining-requests
 * with x-ratelimit-reset-requests, OpenAI's; X-RateLimit-Remaining with
 * X-RateLimit-Reset, OpenRouter's), a remaining of 0 pauses it until the
 * reset.  A budget of tokens a minute (limits.egress_tpm), counted from
 * each answer's usage (prompt and completion), holds every call back while
 * the answers of the last 60 s used that many or more; a call's tokens are
 * known only at its end, so the calls in flight do not count.
 *
 * Permits go round-robin across identities (the tasks' owners, an opaque
 * key heavyd sends in MSG_EGRESS_ATTACH), then across that identity's
 * tasks: the next goes to the identity served longest ago, and within it
 * to its task served longest ago (in arrival order among equals).  So one
 * identity with 10 tasks cannot starve another with 1, nor a 16-agent task
 * a 2-agent one.  A call that waits past its own time is answered as timed
 * out.  Whatever holds a call, and each change of it, is told to its
 * worker (gov_set_note), which says so in its task's progress.
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

#include <json-c/json.h>

#include "worker.h"
#include "egress.h"

#define GOV_MAX_PAUSE_MS	600000	/* a hint longer than this is capped */
#define GOV_WINDOW_MS		60000	/* limits.egress_rpm's minute */

/* An identity with calls waiting or running on one upstream. */
struct gov_ident {
	uint64_t		 key;
	uint64_t		 served;	/* the upstream's serial then */
	uint32_t		 refs;		/* its tasks there */
	TAILQ_ENTRY(gov_ident)	 entry;
};

/* A task with calls waiting or running on one upstream. */
struct gov_task {
	char			*key;
	struct gov_ident	*ident;		/* its owner's */
	uint64_t		 served;	/* the upstream's serial then */
	uint32_t		 refs;		/* its calls queued or running */
	TAILQ_ENTRY(gov_task)	 entry;
};

/* Tokens an answer used, and when: limits.egress_tpm's window. */
struct gov_spend {
	int64_t		 at;
	uint64_t	 tokens;
};

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
	int64_t				*ends;	/* ring: answers of the
							   last minute, oldest
							   at first */
	uint32_t			 nends, first;
	uint32_t			 counted;	/* in flight, in rpm */
	struct gov_spend		*spent;	/* oldest first, from
						   spent0; nspent of them */
	uint32_t			 spent0, nspent, spentcap;
	uint64_t			 tokens;	/* their sum */
	uint64_t			 serial;	/* permits given */
	TAILQ_HEAD(, gov_ident)		 idents;
	TAILQ_HEAD(, gov_task)		 tasks;
	TAILQ_HEAD(, gov_wait)		 queue;
	TAILQ_ENTRY(egress_upstream)	 entry;
};

static TAILQ_HEAD(, egress_upstream)	gov_upstreams =
    TAILQ_HEAD_INITIALIZER(gov_upstreams);
static uint32_t				gov_max_calls;
static uint32_t				gov_breaker_failures;
static int64_t				gov_cooldown_ms;
static uint32_t				gov_rpm;
static uint32_t				gov_tpm;
static gov_report_fn			gov_report;
static gov_note_fn			gov_note;

void
gov_init(uint32_t max_calls, uint32_t breaker_failures, uint32_t cooldown_s,
    uint32_t rpm, gov_report_fn report)
{
	gov_max_calls = max_calls;
	gov_breaker_failures = breaker_failures;
	gov_cooldown_ms = (int64_t)cooldown_s * 1000;
	gov_rpm = rpm;
	gov_report = report;
}

/* limits.egress_tpm: 0 for no budget. */
void
gov_set_tpm(uint32_t tpm)
{
	gov_tpm = tpm;
}

/* Who hears that a call waits, why, and each change of it; and what the
 * breaker does to a call (gov_admit_wait). */
void
gov_set_note(gov_note_fn note)
{
	gov_note = note;
}

/* Whole seconds from now to at, rounded up; 0 when past. */
static uint32_t
gov_seconds(int64_t at, int64_t now)
{
	if (at <= now)
		return 0;
	return (uint32_t)((at - now + 999) / 1000);
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
	if (gov_report != NULL)
		gov_report(u->base_url, gov_breaker_names[b]);
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

/*
 * gov_admit for w, which its worker hears of: failed fast by an open
 * breaker (for how long yet) or a half-open one whose probe is out, or
 * sent as the probe.
 */
int
gov_admit_wait(struct gov_wait *w, struct egress_upstream *u, char *why,
    size_t len)
{
	int	rc = gov_admit(u, &w->probe, why, len);

	if (gov_note == NULL)
		return rc;
	if (rc == -1 && u->breaker == BREAKER_OPEN)
		gov_note(w, EGRESS_HOLD_OPEN, gov_seconds(u->open_until,
		    now_ms()));
	else if (rc == -1)
		gov_note(w, EGRESS_HOLD_HALF_OPEN, 0);
	else if (w->probe)
		gov_note(w, EGRESS_HOLD_PROBE, 0);
	return rc;
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
	if (gov_rpm > 0)
		u->ends = xcalloc(gov_rpm, sizeof *u->ends);
	TAILQ_INIT(&u->idents);
	TAILQ_INIT(&u->tasks);
	TAILQ_INIT(&u->queue);
	TAILQ_INSERT_TAIL(&gov_upstreams, u, entry);
	if (gov_breaker_failures > 0 && gov_report != NULL)
		gov_report(u->base_url, gov_breaker_names[u->breaker]);
	return u;
}

/* The identity of key on u, made with its first task there. */
static struct gov_ident *
gov_ident_ref(struct egress_upstream *u, uint64_t key)
{
	struct gov_ident	*i;

	TAILQ_FOREACH(i, &u->idents, entry)
		if (i->key == key)
			break;
	if (i == NULL) {
		i = xcalloc(1, sizeof *i);
		i->key = key;
		TAILQ_INSERT_TAIL(&u->idents, i, entry);
	}
	i->refs++;
	return i;
}

static void
gov_ident_unref(struct egress_upstream *u, struct gov_ident *i)
{
	if (--i->refs > 0)
		return;
	TAILQ_REMOVE(&u->idents, i, entry);
	free(i);
}

/* The task of key (of identity ident) on u, made when it has its first
 * call there. */
static struct gov_task *
gov_task_ref(struct egress_upstream *u, uint64_t ident, const char *key)
{
	struct gov_task	*t;

	TAILQ_FOREACH(t, &u->tasks, entry)
		if (t->ident->key == ident && strcmp(t->key, key) == 0)
			break;
	if (t == NULL) {
		t = xcalloc(1, sizeof *t);
		t->key = xstrdup(key);
		t->ident = gov_ident_ref(u, ident);
		TAILQ_INSERT_TAIL(&u->tasks, t, entry);
	}
	t->refs++;
	return t;
}

/* A call of its task is done with u: a task with none left is forgotten,
 * an identity with no task left too, and one that comes back starts
 * afresh, like any new one. */
static void
gov_task_unref(struct egress_upstream *u, struct gov_wait *w)
{
	struct gov_task	*t = w->task;

	w->task = NULL;
	if (t == NULL || --t->refs > 0)
		return;
	TAILQ_REMOVE(&u->tasks, t, entry);
	gov_ident_unref(u, t->ident);
	free(t->key);
	free(t);
}

/* Whether the rpm budget has room now: the calls in flight and those
 * answered in the last minute are fewer than rpm. */
static bool
gov_window_open(struct egress_upstream *u, int64_t now)
{
	if (gov_rpm == 0)
		return true;
	while (u->nends > 0 && u->ends[u->first] + GOV_WINDOW_MS <= now) {
		u->first = (u->first + 1) % gov_rpm;
		u->nends--;
	}
	return u->counted + u->nends < gov_rpm;
}

static void
gov_window_add(struct egress_upstream *u)
{
	if (gov_rpm > 0)
		u->counted++;
}

/* A call with a permit ended (answered, failed, or its worker gone): it
 * counts for a minute from now.  counted + nends <= rpm, so it fits. */
static void
gov_window_end(struct egress_upstream *u)
{
	if (gov_rpm == 0 || u->counted == 0)
		return;
	u->counted--;
	u->ends[(u->first + u->nends) % gov_rpm] = now_ms();
	u->nends++;
}

/* limits.egress_tpm's window: the answers of the last minute, oldest
 * first; those older leave it. */
static void
gov_tokens_prune(struct egress_upstream *u, int64_t now)
{
	struct gov_spend	*s;

	while (u->nspent > 0) {
		s = &u->spent[u->spent0];
		if (s->at + GOV_WINDOW_MS > now)
			break;
		u->tokens -= s->tokens;
		u->spent0++;
		u->nspent--;
	}
	if (u->nspent == 0)
		u->spent0 = 0;
}

/* Whether the token budget has room: the last minute's answers used
 * fewer than tpm. */
static bool
gov_tokens_open(struct egress_upstream *u, int64_t now)
{
	if (gov_tpm == 0)
		return true;
	gov_tokens_prune(u, now);
	return u->tokens < gov_tpm;
}

/* An answer used n tokens: they count for a minute from now.  The array
 * grows with the answers of one minute, and no further. */
static void
gov_tokens_add(struct egress_upstream *u, uint64_t n)
{
	if (gov_tpm == 0 || n == 0)
		return;
	gov_tokens_prune(u, now_ms());
	if (u->spent0 + u->nspent == u->spentcap && u->spent0 > 0) {
		memmove(u->spent, u->spent + u->spent0, u->nspent *
		    sizeof *u->spent);
		u->spent0 = 0;
	}
	if (u->nspent == u->spentcap) {
		u->spentcap = u->spentcap ? 2 * u->spentcap : 16;
		u->spent = xrealloc(u->spent, u->spentcap *
		    sizeof *u->spent);
	}
	u->spent[u->spent0 + u->nspent++] = (struct gov_spend){ now_ms(), n };
	u->tokens += n;
}

/* When the last minute's tokens fall below tpm again: -1 if they are
 * below now. */
static int64_t
gov_tokens_when(struct egress_upstream *u, int64_t now)
{
	uint64_t	left;

	if (gov_tokens_open(u, now))
		return -1;
	left = u->tokens;
	for (uint32_t i = u->spent0; i < u->spent0 + u->nspent; i++) {
		left -= u->spent[i].tokens;
		if (left < gov_tpm)
			return u->spent[i].at + GOV_WINDOW_MS;
	}
	return -1;	/* not reached: the sum is the entries' */
}

#define GOV_MAX_TOKENS		(1LL << 40)	/* one answer's, at most */

/* usage's field name, clamped to [0, GOV_MAX_TOKENS]; 0 if missing. */
static int64_t
gov_usage_field(struct json_object *usage, const char *name)
{
	struct json_object	*v;
	int64_t			 n;

	if (!json_object_object_get_ex(usage, name, &v))
		return 0;
	n = json_object_get_int64(v);
	return n < 0 ? 0 : n > GOV_MAX_TOKENS ? GOV_MAX_TOKENS : n;
}

/*
 * The tokens an answer's usage counts (OpenAI's usage.prompt_tokens and
 * completion_tokens, or total_tokens where those are missing); 0 for a
 * body with none, or no JSON.
 */
uint64_t
gov_usage_tokens(const char *body, size_t len)
{
	struct json_tokener	*tok;
	struct json_object	*root, *usage;
	int64_t			 n = 0;

	if (len == 0 || len > INT32_MAX || (tok = json_tokener_new()) == NULL)
		return 0;
	root = json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	if (root != NULL && json_object_object_get_ex(root, "usage", &usage) &&
	    json_object_is_type(usage, json_type_object)) {
		n = gov_usage_field(usage, "prompt_tokens") +
		    gov_usage_field(usage, "completion_tokens");
		if (n == 0)
			n = gov_usage_field(usage, "total_tokens");
	}
	json_object_put(root);
	return (uint64_t)n;
}

static const char *const gov_hold_names[] = {
	[EGRESS_HOLD_PAUSE] = "paused after a 429 or an exhausted budget",
	[EGRESS_HOLD_RPM] = "limits.egress_rpm spent",
	[EGRESS_HOLD_TPM] = "limits.egress_tpm spent",
	[EGRESS_HOLD_CAP] = "limits.egress_max_calls reached",
};

/*
 * What holds u's calls back now, with ahead calls in line before the one
 * asked about (they go first): a pause, the rpm budget, the token budget,
 * the cap; 0 for nothing.
 */
static enum egress_hold
gov_hold(struct egress_upstream *u, int64_t now, uint32_t ahead)
{
	if (now < u->paused_until)
		return EGRESS_HOLD_PAUSE;
	if (!gov_window_open(u, now) ||
	    (gov_rpm > 0 && u->counted + u->nends + ahead >= gov_rpm))
		return EGRESS_HOLD_RPM;
	if (!gov_tokens_open(u, now))
		return EGRESS_HOLD_TPM;
	if (gov_max_calls > 0 && u->running + ahead >= gov_max_calls)
		return EGRESS_HOLD_CAP;
	return 0;
}

/* How long hold may last yet, in whole seconds; 0 when unknown. */
static uint32_t
gov_hold_seconds(struct egress_upstream *u, enum egress_hold hold,
    int64_t now)
{
	switch (hold) {
	case EGRESS_HOLD_PAUSE:
		return gov_seconds(u->paused_until, now);
	case EGRESS_HOLD_RPM:
		if (u->counted + u->nends >= gov_rpm && u->nends > 0)
			return gov_seconds(u->ends[u->first] + GOV_WINDOW_MS,
			    now);
		return 0;
	case EGRESS_HOLD_TPM:
		return gov_seconds(gov_tokens_when(u, now), now);
	default:
		return 0;
	}
}

/*
 * Into u's line, for task of identity (0: none); true when it has to wait
 * there (a pause, a budget, the cap once those ahead of it have their
 * permits).  Calls that came in the same turn with no limit in the way do
 * not wait: they all start when the line is pumped.
 */
bool
gov_submit_as(struct gov_wait *w, struct egress_upstream *u, uint64_t identity,
    const char *task, int64_t expires)
{
	int64_t			 now = now_ms();
	uint32_t		 ahead = 0;
	struct gov_wait		*q;
	enum egress_hold	 hold;

	TAILQ_FOREACH(q, &u->queue, entry)
		ahead++;
	if ((hold = gov_hold(u, now, ahead)) != 0)
		log_debug("an LLM call to %s waits for a permit: %u in flight "
		    "(limits.egress_max_calls %u), %s", u->base_url, u->running,
		    gov_max_calls, gov_hold_names[hold]);
	w->up = u;
	w->task = gov_task_ref(u, identity, task != NULL ? task : "");
	w->expires = expires;
	w->state = GOV_QUEUED;
	w->hold = 0;	/* gov_pump tells what holds it */
	TAILQ_INSERT_TAIL(&u->queue, w, entry);
	return hold != 0;
}

/* gov_submit_as for no identity (all such tasks are one). */
bool
gov_submit(struct gov_wait *w, struct egress_upstream *u, const char *task,
    int64_t expires)
{
	return gov_submit_as(w, u, 0, task, expires);
}

/* Its worker went away: a queued call leaves the line, a running one
 * frees its permit. */
void
gov_cancel(struct gov_wait *w)
{
	if (w->state == GOV_QUEUED)
		TAILQ_REMOVE(&w->up->queue, w, entry);
	else if (w->state == GOV_RUNNING) {
		w->up->running--;
		gov_window_end(w->up);
	}
	if (w->state != GOV_NONE && w->probe)
		w->up->probing = false;	/* the next call probes */
	if (w->up != NULL)
		gov_task_unref(w->up, w);
	w->state = GOV_NONE;
}

/* Go's durations, as OpenAI sends x-ratelimit-reset-requests ("1s",
 * "6m0s", "20ms", "1h2m3.5s"), or plain seconds: ms, or -1. */
int64_t
gov_duration_ms(const char *s)
{
	double	 total = 0, v;
	char	*end;

	if (s == NULL || *s == '\0')
		return -1;
	while (*s != '\0') {
		if (*s < '0' || *s > '9')
			return -1;
		v = strtod(s, &end);
		s = end;
		if (strncmp(s, "ms", 2) == 0) {
			total += v;
			s += 2;
		} else if (*s == 's' || *s == '\0') {
			total += v * 1000;
			s += *s == 's';
		} else if (*s == 'm') {
			total += v * 60000;
			s++;
		} else if (*s == 'h') {
			total += v * 3600000;
			s++;
		} else
			return -1;
	}
	return total > GOV_MAX_PAUSE_MS ? GOV_MAX_PAUSE_MS : (int64_t)total;
}

/* How long the upstream's headers say to hold back: a 429's Retry-After
 * or reset, or a remaining budget of 0 until its reset; 0 for none. */
static int64_t
gov_hint_ms(long status, const struct egress_sink *k)
{
	int64_t	hint;
	char	*end;
	long	remaining;

	if (status == 429)
		return backoff_hint_ms(k->retry_after, k->reset, time(NULL));
	if (k->remaining[0] == '\0')
		return 0;
	remaining = strtol(k->remaining, &end, 10);
	if (end == k->remaining || *end != '\0' || remaining != 0)
		return 0;
	if ((hint = gov_duration_ms(k->reset_requests)) > 0)
		return hint;
	return backoff_hint_ms(NULL, k->reset, time(NULL));
}

/* A call ended: its permit back; a 429's hint, or a spent budget,
 * pauses the upstream. */
void
gov_finished(struct gov_wait *w, long status, bool answered,
    const struct egress_sink *k)
{
	struct egress_upstream	*u = w->up;
	int64_t			 hint, until;

	if (w->state != GOV_RUNNING)
		return;
	u->running--;
	w->state = GOV_NONE;
	gov_window_end(u);
	gov_task_unref(u, w);
	gov_breaker_outcome(u, w->probe, !answered || status >= 500);
	if (gov_tpm > 0 && answered && status >= 200 && status < 300)
		gov_tokens_add(u, gov_usage_tokens(k->body.data, k->body.len));
	if ((hint = gov_hint_ms(status, k)) <= 0)
		return;
	until = now_ms() + (hint > GOV_MAX_PAUSE_MS ? GOV_MAX_PAUSE_MS : hint);
	if (until <= u->paused_until)
		return;
	u->paused_until = until;
	log_info("upstream %s %s: every call to it waits %.1f s", u->base_url,
	    status == 429 ? "answered 429" : "has no requests left in its "
	    "budget", (double)(until - now_ms()) / 1000);
}

static bool
gov_may_start(struct egress_upstream *u, int64_t now)
{
	return gov_hold(u, now, 0) == 0;
}

/*
 * The next permit's: of the identity served longest ago, of its task
 * served longest ago, the call first in line (round-robin across
 * identities, then across their tasks; arrival order among equals).
 */
static struct gov_wait *
gov_fairest(struct egress_upstream *u)
{
	struct gov_wait	*w, *best = NULL;

	TAILQ_FOREACH(w, &u->queue, entry) {
		if (best == NULL ||
		    w->task->ident->served < best->task->ident->served)
			best = w;
		else if (w->task->ident == best->task->ident &&
		    w->task->served < best->task->served)
			best = w;
	}
	return best;
}

/* Tells each waiting call of u what holds it, once and at each change
 * (a note frees nothing: gov_note_fn). */
static void
gov_notes(struct egress_upstream *u, int64_t now)
{
	enum egress_hold	 hold;
	struct gov_wait		*w;

	if (gov_note == NULL || TAILQ_EMPTY(&u->queue))
		return;
	if ((hold = gov_hold(u, now, 0)) == 0)
		return;		/* they wait for their time only */
	TAILQ_FOREACH(w, &u->queue, entry)
		if (w->hold != hold) {
			w->hold = hold;
			gov_note(w, hold, gov_hold_seconds(u, hold, now));
		}
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
		while (!TAILQ_EMPTY(&u->queue) && gov_may_start(u, now)) {
			w = gov_fairest(u);
			TAILQ_REMOVE(&u->queue, w, entry);
			w->state = GOV_RUNNING;
			u->running++;
			w->task->served = w->task->ident->served = ++u->serial;
			gov_window_add(u);
			start(w);
		}
		gov_notes(u, now);
	}
}

/*
 * A hedge's permit (egress.c), at once or never: not while the breaker is
 * anything but closed or the upstream is paused, not past the cap or the
 * rpm or tpm budget, and not ahead of a call already waiting in line.  It
 * counts like any call's.
 */
bool
gov_take(struct gov_wait *w, struct egress_upstream *u, uint64_t identity,
    const char *task)
{
	int64_t	now = now_ms();

	if (u->breaker != BREAKER_CLOSED || !TAILQ_EMPTY(&u->queue) ||
	    !gov_may_start(u, now))
		return false;
	w->up = u;
	w->task = gov_task_ref(u, identity, task != NULL ? task : "");
	w->expires = now;
	w->state = GOV_RUNNING;
	u->running++;
	w->task->served = w->task->ident->served = ++u->serial;
	gov_window_add(u);
	return true;
}

/* When u's line may move by the clock (a pause or a window ends): -1 for
 * no such time.  Only times to come: one past would spin the loop. */
static int64_t
gov_upstream_next(struct egress_upstream *u, int64_t now)
{
	int64_t	t = -1, at;

	if (u->paused_until > now)
		t = u->paused_until;
	if (gov_rpm > 0 && u->nends > 0 && u->counted + u->nends >= gov_rpm &&
	    (at = u->ends[u->first] + GOV_WINDOW_MS) > now &&
	    (t == -1 || at < t))
		t = at;
	if (gov_tpm > 0 && (at = gov_tokens_when(u, now)) >= 0 &&
	    (t == -1 || at < t))
		t = at;
	return t;
}

/* When gov_pump has something to do by the clock: -1 never. */
int64_t
gov_next(void)
{
	struct egress_upstream	*u;
	struct gov_wait		*w;
	int64_t			 next = -1, t, now = now_ms();

	TAILQ_FOREACH(u, &gov_upstreams, entry) {
		if (TAILQ_EMPTY(&u->queue))
			continue;
		t = gov_upstream_next(u, now);
		TAILQ_FOREACH(w, &u->queue, entry)
			if (t == -1 || w->expires < t)
				t = w->expires;
		if (next == -1 || t < next)
			next = t;
	}
	return next;
}

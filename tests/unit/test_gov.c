/*
 * The governor of heavyd-egress (worker/egress_gov.c), driven directly:
 * the rpm and token budgets, the remaining-budget headers, round-robin
 * across identities and tasks, the notes of what holds a call and of the
 * breaker, and OpenAI's reset durations.  Each test runs in its own process, so
 * the governor's upstreams start empty.
 */
#include <netinet/in.h>

#include <criterion/criterion.h>
#include <string.h>

#include "../../worker/worker.h"
#include "../../worker/egress.h"

#define FAR	(now_ms() + 3600000)

static struct gov_wait	*started[16];
static int		 nstarted;

static void
on_start(struct gov_wait *w)
{
	started[nstarted++] = w;
}

static void
on_expire(struct gov_wait *w)
{
	(void)w;
	cr_assert_fail("a call expired");
}

static struct {
	struct gov_wait		*w;
	enum egress_hold	 hold;
	uint32_t		 seconds;
}			 notes[16];
static int		 nnotes;

static void
on_note(struct gov_wait *w, enum egress_hold hold, uint32_t seconds)
{
	cr_assert_lt(nnotes, 16);
	notes[nnotes].w = w;
	notes[nnotes].hold = hold;
	notes[nnotes++].seconds = seconds;
}

/* A 200 whose body says it used prompt + completion tokens. */
static void
finish_usage(struct gov_wait *w, int prompt, int completion)
{
	struct egress_sink	k;
	char			body[128];

	memset(&k, 0, sizeof k);
	snprintf(body, sizeof body, "{\"choices\":[],\"usage\":{"
	    "\"prompt_tokens\":%d,\"completion_tokens\":%d}}", prompt,
	    completion);
	buf_init(&k.body, 0);
	buf_addstr(&k.body, body);
	gov_finished(w, 200, true, &k);
	buf_free(&k.body);
}

static void
finish(struct gov_wait *w, const char *remaining, const char *reset)
{
	struct egress_sink	k;

	memset(&k, 0, sizeof k);
	snprintf(k.remaining, sizeof k.remaining, "%s", remaining);
	snprintf(k.reset_requests, sizeof k.reset_requests, "%s", reset);
	gov_finished(w, 200, true, &k);
}

Test(gov, reset_durations)
{
	cr_assert_eq(gov_duration_ms("1s"), 1000);
	cr_assert_eq(gov_duration_ms("6m0s"), 360000);
	cr_assert_eq(gov_duration_ms("20ms"), 20);
	cr_assert_eq(gov_duration_ms("1m3.5s"), 63500);
	cr_assert_eq(gov_duration_ms("2"), 2000);
	cr_assert_eq(gov_duration_ms("2h"), 600000, "capped at 600 s");
	cr_assert_eq(gov_duration_ms(""), -1);
	cr_assert_eq(gov_duration_ms("soon"), -1);
	cr_assert_eq(gov_duration_ms("5q"), -1);
}

/* rpm 2: two calls start, the third waits though none is in flight. */
Test(gov, rpm_budget_holds_the_third_call)
{
	struct gov_wait			w[3];
	struct egress_upstream		*u;

	memset(w, 0, sizeof w);
	gov_init(0, 0, 30, 2, NULL);
	u = gov_upstream("http://up/v1");
	for (int i = 0; i < 3; i++)
		gov_submit(&w[i], u, "t", FAR);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2);
	finish(&w[0], "", "");
	finish(&w[1], "", "");
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2, "the budget is per minute, not in flight");
	cr_assert_eq(w[2].state, GOV_QUEUED);
	cr_assert_gt(gov_next(), now_ms(), "it waits for the window");
	gov_cancel(&w[2]);
}

/* An answer with no requests left pauses the upstream until its reset. */
Test(gov, remaining_zero_pauses)
{
	struct gov_wait			w[2];
	struct egress_upstream		*u;

	memset(w, 0, sizeof w);
	gov_init(0, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_pump(on_start, on_expire);
	finish(&w[0], "0", "10m0s");
	cr_assert(gov_submit(&w[1], u, "t", FAR), "it does not wait");
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 1);
	cr_assert_gt(gov_next(), now_ms() + 500000);
	gov_cancel(&w[1]);
}

/* A remaining budget above 0 changes nothing. */
Test(gov, remaining_above_zero_goes_on)
{
	struct gov_wait			w[2];
	struct egress_upstream		*u;

	memset(w, 0, sizeof w);
	gov_init(0, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_pump(on_start, on_expire);
	finish(&w[0], "3", "10m0s");
	cr_assert_not(gov_submit(&w[1], u, "t", FAR));
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2);
	finish(&w[1], "", "");
}

/* One at a time: task A's line of three, then B's one call goes next. */
Test(gov, permits_round_robin_across_tasks)
{
	struct gov_wait			a[3], b;
	struct egress_upstream		*u;

	memset(a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	gov_init(1, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	for (int i = 0; i < 3; i++)
		gov_submit(&a[i], u, "A", FAR);
	gov_pump(on_start, on_expire);
	gov_submit(&b, u, "B", FAR);
	finish(started[0], "", "");
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2);
	cr_assert_eq(started[1], &b, "task B waited behind all of task A");
	finish(started[1], "", "");
	gov_pump(on_start, on_expire);
	cr_assert_eq(started[2], &a[1]);
	finish(started[2], "", "");
	gov_pump(on_start, on_expire);
	cr_assert_eq(started[3], &a[2]);
	finish(started[3], "", "");
}

/*
 * Two-level fairness, one call at a time: identity A has three tasks (two
 * calls each), B one task with one call that comes after all of A's.
 * After A's first call, B goes next (its identity was never served), then
 * A's other tasks in turn, each once before any goes twice.
 */
Test(gov, permits_round_robin_across_identities_then_tasks)
{
	struct gov_wait			a[6], b;
	struct egress_upstream		*u;
	const char			*tasks[] = { "A1", "A1", "A2", "A2",
	    "A3", "A3" };

	memset(a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	gov_init(1, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	for (int i = 0; i < 6; i++)
		gov_submit_as(&a[i], u, 7, tasks[i], FAR);
	cr_assert(gov_submit_as(&b, u, 9, "B1", FAR), "B waits behind A");
	gov_pump(on_start, on_expire);
	cr_assert_eq(started[0], &a[0]);
	for (int n = 1; n < 7; n++) {
		finish(started[n - 1], "", "");
		gov_pump(on_start, on_expire);
		cr_assert_eq(nstarted, n + 1);
	}
	cr_assert_eq(started[1], &b, "identity B waited behind A's tasks");
	cr_assert_eq(started[2], &a[2], "then A's task never served");
	cr_assert_eq(started[3], &a[4]);
	cr_assert_eq(started[4], &a[1], "then A's first task again");
	cr_assert_eq(started[5], &a[3]);
	cr_assert_eq(started[6], &a[5]);
	finish(started[6], "", "");
}

/* The same task name under two identities is two tasks. */
Test(gov, a_task_belongs_to_its_identity)
{
	struct gov_wait			w[3];
	struct egress_upstream		*u;

	memset(w, 0, sizeof w);
	gov_init(1, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	gov_submit_as(&w[0], u, 1, "T", FAR);
	gov_submit_as(&w[1], u, 1, "T", FAR);
	gov_submit_as(&w[2], u, 2, "T", FAR);
	gov_pump(on_start, on_expire);
	finish(started[0], "", "");
	gov_pump(on_start, on_expire);
	cr_assert_eq(started[1], &w[2], "identity 2 goes before 1's second");
	finish(started[1], "", "");
	gov_pump(on_start, on_expire);
	cr_assert_eq(started[2], &w[1]);
	finish(started[2], "", "");
}

Test(gov, usage_tokens)
{
	const char	*both = "{\"usage\":{\"prompt_tokens\":12,"
	    "\"completion_tokens\":30,\"total_tokens\":42}}";
	const char	*total = "{\"usage\":{\"total_tokens\":7}}";
	const char	*none = "{\"choices\":[]}";
	const char	*bad = "{\"usage\":{\"prompt_tokens\":-5}}";

	cr_assert_eq(gov_usage_tokens(both, strlen(both)), 42);
	cr_assert_eq(gov_usage_tokens(total, strlen(total)), 7);
	cr_assert_eq(gov_usage_tokens(none, strlen(none)), 0);
	cr_assert_eq(gov_usage_tokens(bad, strlen(bad)), 0);
	cr_assert_eq(gov_usage_tokens("not json", 8), 0);
	cr_assert_eq(gov_usage_tokens("", 0), 0);
}

/*
 * limits.egress_tpm 100: two calls go; their answers use 60 and 50
 * tokens, 110 in the last minute, so the third waits, told why, until the
 * first answer's tokens leave the window (a minute on: gov_next).
 */
Test(gov, tpm_budget_holds_calls_and_says_so)
{
	struct gov_wait			w[3];
	struct egress_upstream		*u;
	int64_t				 t0 = now_ms();

	memset(w, 0, sizeof w);
	gov_init(0, 0, 30, 0, NULL);
	gov_set_tpm(100);
	gov_set_note(on_note);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_submit(&w[1], u, "t", FAR);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2);
	finish_usage(&w[0], 40, 20);
	cr_assert_not(gov_submit(&w[2], u, "t", FAR), "60 < 100: no wait");
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 3);
	finish_usage(&w[1], 30, 20);
	finish(&w[2], "", "");
	memset(&w[2], 0, sizeof w[2]);
	cr_assert(gov_submit(&w[2], u, "t", FAR), "110 >= 100: it waits");
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 3);
	cr_assert_eq(nnotes, 1);
	cr_assert_eq(notes[0].w, &w[2]);
	cr_assert_eq(notes[0].hold, EGRESS_HOLD_TPM);
	cr_assert(notes[0].seconds >= 59 && notes[0].seconds <= 60);
	cr_assert_geq(gov_next(), t0 + 60000, "until 60's tokens leave");
	cr_assert_lt(gov_next(), now_ms() + 61000);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nnotes, 1, "told once, not at every turn");
	gov_cancel(&w[2]);
}

/* What holds a waiting call is told once, and again when it changes:
 * the cap, then a 429's pause. */
Test(gov, a_wait_is_told_and_each_change)
{
	struct gov_wait			w[2];
	struct egress_upstream		*u;
	struct egress_sink		k;

	memset(w, 0, sizeof w);
	memset(&k, 0, sizeof k);
	gov_init(1, 0, 30, 0, NULL);
	gov_set_note(on_note);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_submit(&w[1], u, "t", FAR);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nnotes, 1);
	cr_assert_eq(notes[0].w, &w[1]);
	cr_assert_eq(notes[0].hold, EGRESS_HOLD_CAP);
	snprintf(k.retry_after, sizeof k.retry_after, "120");
	gov_finished(&w[0], 429, true, &k);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 1);
	cr_assert_eq(nnotes, 2);
	cr_assert_eq(notes[1].hold, EGRESS_HOLD_PAUSE);
	cr_assert(notes[1].seconds >= 119 && notes[1].seconds <= 120);
	gov_cancel(&w[1]);
}

/* An open breaker fails a call fast, and its worker hears for how long
 * yet; a closed one says nothing. */
Test(gov, breaker_open_is_told)
{
	struct gov_wait			w[2];
	struct egress_upstream		*u;
	struct egress_sink		k;
	char				why[256];

	memset(w, 0, sizeof w);
	memset(&k, 0, sizeof k);
	gov_init(0, 1, 30, 0, NULL);
	gov_set_note(on_note);
	u = gov_upstream("http://up/v1");
	cr_assert_eq(gov_admit_wait(&w[0], u, why, sizeof why), 0);
	cr_assert_eq(nnotes, 0, "a closed breaker says nothing");
	gov_submit(&w[0], u, "t", FAR);
	gov_pump(on_start, on_expire);
	gov_finished(&w[0], 503, true, &k);
	cr_assert_eq(gov_admit_wait(&w[1], u, why, sizeof why), -1);
	cr_assert_eq(nnotes, 1);
	cr_assert_eq(notes[0].w, &w[1]);
	cr_assert_eq(notes[0].hold, EGRESS_HOLD_OPEN);
	cr_assert(notes[0].seconds >= 29 && notes[0].seconds <= 30);
}

/* No cooldown: the next call after the failure is the half-open
 * breaker's probe, and says so; one more while it is out fails fast. */
Test(gov, breaker_probe_is_told)
{
	struct gov_wait			w[3];
	struct egress_upstream		*u;
	struct egress_sink		k;
	char				why[256];

	memset(w, 0, sizeof w);
	memset(&k, 0, sizeof k);
	gov_init(0, 1, 0, 0, NULL);
	gov_set_note(on_note);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_pump(on_start, on_expire);
	gov_finished(&w[0], 503, true, &k);
	cr_assert_eq(gov_admit_wait(&w[1], u, why, sizeof why), 0);
	cr_assert(w[1].probe);
	cr_assert_eq(gov_admit_wait(&w[2], u, why, sizeof why), -1);
	cr_assert_eq(nnotes, 2);
	cr_assert_eq(notes[0].w, &w[1]);
	cr_assert_eq(notes[0].hold, EGRESS_HOLD_PROBE);
	cr_assert_eq(notes[1].w, &w[2]);
	cr_assert_eq(notes[1].hold, EGRESS_HOLD_HALF_OPEN);
	gov_submit(&w[1], u, "t", FAR);
	gov_pump(on_start, on_expire);
	gov_finished(&w[1], 200, true, &k);
	cr_assert_eq(gov_admit_wait(&w[2], u, why, sizeof why), 0,
	    "the probe's success closed it");
	cr_assert_eq(nnotes, 2);
}

/* MSG_EGRESS_ATTACH carries the identity; MSG_EGRESS_WAITING the hold. */
Test(gov, frames)
{
	struct egress_attach	a = { .worker_id = 3, .base_url = "http://u",
	    .search_url = "", .user_agent = "", .task = "T",
	    .identity = 0x0123456789abcdefULL }, d;
	struct egress_note	n = { 5, EGRESS_HOLD_TPM, 42 }, m;
	struct buf		b;

	buf_init(&b, 0);
	egress_attach_encode(&b, &a);
	cr_assert_eq(egress_attach_decode(b.data, b.len, &d), 0);
	cr_assert_eq(d.identity, a.identity);
	cr_assert_str_eq(d.task, "T");
	egress_attach_clear(&d);
	buf_reset(&b);
	egress_note_encode(&b, &n);
	cr_assert_eq(egress_note_decode(b.data, b.len, &m), 0);
	cr_assert_eq(m.id, 5);
	cr_assert_eq(m.hold, EGRESS_HOLD_TPM);
	cr_assert_eq(m.seconds, 42);
	n.hold = EGRESS_HOLD_LAST + 1;
	buf_reset(&b);
	egress_note_encode(&b, &n);
	cr_assert_eq(egress_note_decode(b.data, b.len, &m), -1);
	buf_free(&b);
}

/*
 * A hedge's permit (gov_take): at once or never.  It counts against the
 * cap and the rpm budget like any call, and none is given while a call
 * waits in line, the upstream is paused or its breaker is not closed.
 */
Test(gov, hedge_takes_a_permit_like_any_call)
{
	struct gov_wait			w[3], h[3];
	struct egress_upstream		*u;

	memset(w, 0, sizeof w);
	memset(h, 0, sizeof h);
	gov_init(2, 0, 30, 3, NULL);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_pump(on_start, on_expire);
	cr_assert(gov_take(&h[0], u, 0, "t"), "a permit is free");
	cr_assert_eq(h[0].state, GOV_RUNNING);
	cr_assert_not(gov_take(&h[1], u, 0, "t"), "past the cap of 2");
	cr_assert_eq(h[1].state, GOV_NONE);
	gov_cancel(&h[0]);	/* the loser: its permit back, in the window */
	gov_submit(&w[1], u, "t", FAR);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2);
	cr_assert_not(gov_take(&h[1], u, 0, "t"), "rpm 3: 2 in flight and the "
	    "cancelled hedge's minute");
	finish(&w[0], "", "");
	finish(&w[1], "", "");
	cr_assert_not(gov_take(&h[1], u, 0, "t"), "still in the minute");
}

Test(gov, no_hedge_ahead_of_the_line)
{
	struct gov_wait			w[2], h;
	struct egress_upstream		*u;

	memset(w, 0, sizeof w);
	memset(&h, 0, sizeof h);
	gov_init(1, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_submit(&w[1], u, "t", FAR);
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 1);
	finish(&w[0], "", "");
	cr_assert_not(gov_take(&h, u, 0, "t"), "w[1] waits for the permit");
	gov_pump(on_start, on_expire);
	cr_assert_eq(nstarted, 2);
	gov_cancel(&w[1]);
	cr_assert(gov_take(&h, u, 0, "t"));
	gov_cancel(&h);
}

Test(gov, no_hedge_while_paused)
{
	struct gov_wait			w, h;
	struct egress_upstream		*u;

	memset(&w, 0, sizeof w);
	memset(&h, 0, sizeof h);
	gov_init(0, 0, 30, 0, NULL);
	u = gov_upstream("http://up/v1");
	gov_submit(&w, u, "t", FAR);
	gov_pump(on_start, on_expire);
	finish(&w, "0", "30s");
	cr_assert_not(gov_take(&h, u, 0, "t"), "paused for 30 s");
}

Test(gov, no_hedge_unless_the_breaker_is_closed)
{
	struct gov_wait			w[2], h;
	struct egress_upstream		*u;
	struct egress_sink		k;
	bool				probe;
	char				why[256];

	memset(w, 0, sizeof w);
	memset(&h, 0, sizeof h);
	memset(&k, 0, sizeof k);
	gov_init(0, 1, 0, 0, NULL);	/* open after 1 failure, for 0 s */
	u = gov_upstream("http://up/v1");
	gov_submit(&w[0], u, "t", FAR);
	gov_pump(on_start, on_expire);
	gov_finished(&w[0], 503, true, &k);
	cr_assert_not(gov_take(&h, u, 0, "t"), "open");
	cr_assert_eq(gov_admit(u, &probe, why, sizeof why), 0);
	cr_assert(probe, "half-open after its cooldown");
	gov_submit(&w[1], u, "t", FAR);
	w[1].probe = true;
	gov_pump(on_start, on_expire);
	cr_assert_not(gov_take(&h, u, 0, "t"), "half-open: only the probe goes");
	gov_finished(&w[1], 200, true, &k);
	cr_assert(gov_take(&h, u, 0, "t"), "closed again");
	gov_cancel(&h);
}

/*
 * The governor of heavyd-egress (worker/egress_gov.c), driven directly:
 * the rpm budget, the remaining-budget headers, round-robin across tasks,
 * and OpenAI's reset durations.  Each test runs in its own process, so
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

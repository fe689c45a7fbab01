/*
 * The metrics registry: the text format 0.0.4 as rendered (HELP, TYPE,
 * samples, histograms), label escaping, the cap on an open label's values,
 * and heavyd's families.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/metrics.h"
#include "tmpdir.h"
#include "store_sync.h"

#define V(...)	((const char *const []){ __VA_ARGS__ })

static void teardown(void) { metrics_free(); }

TestSuite(metrics, .fini = teardown);

/* The whole scrape, as a string the caller frees. */
static char *
scrape(void)
{
	struct evbuffer	*evb = evbuffer_new();
	size_t		 len;
	char		*text;

	metrics_render(evb);
	len = evbuffer_get_length(evb);
	text = xmalloc(len + 1);
	evbuffer_remove(evb, text, len);
	text[len] = '\0';
	evbuffer_free(evb);
	return text;
}

static void
assert_has(const char *text, const char *line)
{
	cr_assert_not_null(strstr(text, line), "missing:\n%s\nin:\n%s", line,
	    text);
}

static void
assert_lacks(const char *text, const char *line)
{
	cr_assert_null(strstr(text, line), "unexpected:\n%s\nin:\n%s", line,
	    text);
}

Test(metrics, counter_and_gauge_exactly)
{
	struct metric_spec	 c = { "t_requests_total", "Requests.",
	    METRIC_COUNTER, 0, { "a", "b" }, 0, { 0 } };
	struct metric_spec	 g = { "t_open", "Open now.", METRIC_GAUGE, 0,
	    { NULL }, 0, { 0 } };
	struct metric_family	*fc = metrics_family(&c), *fg = metrics_family(&g);
	char			*text;

	cr_assert_not_null(fc);
	cr_assert_not_null(fg);
	metrics_add(fc, V("x", "1"), 2);
	metrics_add(fc, V("y", "1"), 1);
	metrics_add(fc, V("x", "1"), 3);
	metrics_set(fg, NULL, 7);
	metrics_add(fg, NULL, -9);
	text = scrape();
	cr_assert_str_eq(text,
	    "# HELP t_requests_total Requests.\n"
	    "# TYPE t_requests_total counter\n"
	    "t_requests_total{a=\"x\",b=\"1\"} 5\n"
	    "t_requests_total{a=\"y\",b=\"1\"} 1\n"
	    "# HELP t_open Open now.\n"
	    "# TYPE t_open gauge\n"
	    "t_open -2\n");
	cr_assert_eq(metrics_value(fc, V("x", "1")), 5);
	cr_assert_eq(metrics_value(fc, V("z", "1")), 0);
	cr_assert_eq(metrics_samples(), 3);
	free(text);
}

Test(metrics, histogram_buckets_sum_and_count)
{
	struct metric_spec	 h = { "t_wait_seconds", "Waits.",
	    METRIC_HISTOGRAM, 6, { "op" }, 0, { 1000, 250000, 1000000 } };
	struct metric_family	*f = metrics_family(&h);
	char			*text;

	cr_assert_not_null(f);
	metrics_observe(f, V("put"), 1000);	/* on a bound: that bucket */
	metrics_observe(f, V("put"), 1001);
	metrics_observe(f, V("put"), 0);
	metrics_observe(f, V("put"), 2500000);	/* past every bound */
	metrics_observe(f, V("sweep"), 1);
	text = scrape();
	cr_assert_str_eq(text,
	    "# HELP t_wait_seconds Waits.\n"
	    "# TYPE t_wait_seconds histogram\n"
	    "t_wait_seconds_bucket{op=\"put\",le=\"0.001\"} 2\n"
	    "t_wait_seconds_bucket{op=\"put\",le=\"0.25\"} 3\n"
	    "t_wait_seconds_bucket{op=\"put\",le=\"1\"} 3\n"
	    "t_wait_seconds_bucket{op=\"put\",le=\"+Inf\"} 4\n"
	    "t_wait_seconds_sum{op=\"put\"} 2.502001\n"
	    "t_wait_seconds_count{op=\"put\"} 4\n"
	    "t_wait_seconds_bucket{op=\"sweep\",le=\"0.001\"} 1\n"
	    "t_wait_seconds_bucket{op=\"sweep\",le=\"0.25\"} 1\n"
	    "t_wait_seconds_bucket{op=\"sweep\",le=\"1\"} 1\n"
	    "t_wait_seconds_bucket{op=\"sweep\",le=\"+Inf\"} 1\n"
	    "t_wait_seconds_sum{op=\"sweep\"} 0.000001\n"
	    "t_wait_seconds_count{op=\"sweep\"} 1\n");
	cr_assert_eq(metrics_value(f, V("put")), 4);
	cr_assert_eq(metrics_samples(), 12);
	free(text);
}

Test(metrics, unlabelled_histogram)
{
	struct metric_spec	 h = { "t_size", "Sizes.", METRIC_HISTOGRAM, 0,
	    { NULL }, 0, { 10 } };
	char			*text;

	metrics_observe(metrics_family(&h), NULL, 11);
	text = scrape();
	assert_has(text, "\nt_size_bucket{le=\"10\"} 0\n"
	    "t_size_bucket{le=\"+Inf\"} 1\nt_size_sum 11\nt_size_count 1\n");
	free(text);
}

Test(metrics, fixed_point_values)
{
	struct metric_spec	 s = { "t_usd_total", "Dollars.",
	    METRIC_COUNTER, 6, { "k" }, 0, { 0 } };
	struct metric_family	*f = metrics_family(&s);
	char			*text;

	metrics_add(f, V("a"), 1500000);
	metrics_add(f, V("b"), 1);
	metrics_add(f, V("c"), 0);
	metrics_add(f, V("d"), 12000000);
	metrics_add(f, V("e"), -250000);
	metrics_add(f, V("f"), INT64_MAX);
	text = scrape();
	assert_has(text, "t_usd_total{k=\"a\"} 1.5\n");
	assert_has(text, "t_usd_total{k=\"b\"} 0.000001\n");
	assert_has(text, "t_usd_total{k=\"c\"} 0\n");
	assert_has(text, "t_usd_total{k=\"d\"} 12\n");
	assert_has(text, "t_usd_total{k=\"e\"} -0.25\n");
	assert_has(text, "t_usd_total{k=\"f\"} 9223372036854.775807\n");
	free(text);
}

Test(metrics, escaping)
{
	struct metric_spec	 s = { "t_esc_total", "Back\\slash and\nnewline "
	    "\"quoted\".", METRIC_COUNTER, 0, { "v" }, 0, { 0 } };
	struct metric_family	*f = metrics_family(&s);
	char			*text;

	metrics_add(f, V("a\\b\"c\nd"), 1);
	metrics_add(f, V("bad\xff\xc3x-utf8\xe2\x82"), 1);
	metrics_add(f, V("caf\xc3\xa9 \xe2\x82\xac"), 1);
	metrics_add(f, V("\xed\xa0\x80 \xc0\xaf"), 1);	/* surrogate, overlong */
	metrics_add(f, V(NULL), 1);
	text = scrape();
	assert_has(text, "# HELP t_esc_total Back\\\\slash and\\nnewline "
	    "\"quoted\".\n");
	assert_has(text, "t_esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
	assert_has(text, "t_esc_total{v=\"bad??x-utf8??\"} 1\n");
	assert_has(text, "t_esc_total{v=\"caf\xc3\xa9 \xe2\x82\xac\"} 1\n");
	assert_has(text, "t_esc_total{v=\"??? ??\"} 1\n");
	assert_has(text, "t_esc_total{v=\"\"} 1\n");
	free(text);
}

/* A long value is cut at a character boundary, and cut values that
 * agree count as one. */
Test(metrics, long_values_cut)
{
	struct metric_spec	 s = { "t_long_total", "Long.",
	    METRIC_COUNTER, 0, { "v" }, 0, { 0 } };
	struct metric_family	*f = metrics_family(&s);
	char			 v[600], want[METRICS_MAX_LABEL_BYTES + 64];
	char			*text;

	memset(v, 'x', sizeof v);
	v[0] = 'a';
	memcpy(v + METRICS_MAX_LABEL_BYTES - 1, "\xc3\xa9", 2);	/* é across */
	v[sizeof v - 1] = '\0';
	metrics_add(f, V(v), 1);
	v[500] = '\0';
	metrics_add(f, V(v), 1);
	text = scrape();
	snprintf(want, sizeof want, "t_long_total{v=\"a%.*s\"} 2\n",
	    METRICS_MAX_LABEL_BYTES - 2, v + 1);
	assert_has(text, want);
	cr_assert_eq(metrics_samples(), 1);
	free(text);
}

Test(metrics, bad_families_refused)
{
	struct metric_spec	 ok = { "t_ok_total", "", METRIC_COUNTER, 0,
	    { NULL }, 0, { 0 } };
	struct metric_spec	 s;

	cr_assert_not_null(metrics_family(&ok));
	cr_assert_null(metrics_family(&ok), "a name taken twice");
	s = ok;
	s.name = "t-dash";
	cr_assert_null(metrics_family(&s));
	s.name = "9lives";
	cr_assert_null(metrics_family(&s));
	s = ok;
	s.name = "t_le";
	s.labels[0] = "le";
	cr_assert_null(metrics_family(&s), "le is the histograms'");
	s.labels[0] = "__x";
	cr_assert_null(metrics_family(&s), "__ is reserved");
	s = ok;
	s.name = "t_h";
	s.type = METRIC_HISTOGRAM;
	s.buckets[0] = 5;
	s.buckets[1] = 5;
	cr_assert_null(metrics_family(&s), "bounds must rise");
	cr_assert_not_null(metrics_find("t_ok_total"));
	cr_assert_null(metrics_find("t_h"));
}

/* An open label keeps max_label_values values; the rest are "other",
 * summed there.  Closed labels keep every value. */
Test(metrics, open_label_capped)
{
	const char	*models[] = { "m1", "m2", "m3", "m4", "m5", "m2" };
	struct metrics_llm m = { .outcome = "2xx", .duration_us = 1000,
	    .prompt_tokens = 10, .completion_tokens = 1 };
	char		*text;

	metrics_init(3, "abc1234");
	for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
		m.model = models[i];
		metrics_llm_request(&m);
	}
	for (int i = 0; i < 12; i++)	/* more causes than the cap */
		metrics_worker_exit("crash");
	text = scrape();
	assert_has(text, "heavyd_llm_requests_total{model=\"m1\",outcome=\"2xx\","
	    "retry=\"false\"} 1\n");
	assert_has(text, "heavyd_llm_requests_total{model=\"m2\",outcome=\"2xx\","
	    "retry=\"false\"} 2\n");
	assert_has(text, "heavyd_llm_requests_total{model=\"other\","
	    "outcome=\"2xx\",retry=\"false\"} 2\n");
	assert_has(text, "heavyd_llm_tokens_total{model=\"other\","
	    "kind=\"prompt\"} 20\n");
	assert_has(text, "heavyd_llm_request_duration_seconds_count"
	    "{model=\"other\"} 2\n");
	assert_lacks(text, "m4");
	assert_lacks(text, "m5");
	assert_has(text, "heavyd_worker_exits_total{cause=\"lost\"} 0\n");
	assert_has(text, "heavyd_worker_exits_total{cause=\"crash\"} 12\n");
	free(text);
}

/* A model named "other" is one of the kept values, and the overflow joins
 * it rather than making a second series. */
Test(metrics, other_is_one_series)
{
	struct metric_spec	 s = { "t_o_total", "O.", METRIC_COUNTER, 0,
	    { "m" }, 0x1, { 0 } };
	struct metric_family	*f;

	metrics_init(2, NULL);
	f = metrics_family(&s);
	metrics_add(f, V("other"), 1);
	metrics_add(f, V("a"), 1);
	metrics_add(f, V("b"), 1);
	metrics_add(f, V("c"), 1);
	cr_assert_eq(metrics_value(f, V("a")), 1);
	cr_assert_eq(metrics_value(f, V("b")), 1);
	cr_assert_eq(metrics_value(f, V("other")), 2);
	cr_assert_eq(metrics_value(f, V("c")), 2, "c is counted as other");
}

/* Many series of one family: each keeps its own value (the hash grows). */
Test(metrics, many_series)
{
	struct metric_spec	 s = { "t_many_total", "M.", METRIC_COUNTER, 0,
	    { "a", "b" }, 0, { 0 } };
	struct metric_family	*f = metrics_family(&s);
	char			 a[16], b[16];

	for (int round = 1; round <= 2; round++)
		for (int i = 0; i < 40; i++)
			for (int k = 0; k < 30; k++) {
				snprintf(a, sizeof a, "a%d", i);
				snprintf(b, sizeof b, "b%d", k);
				metrics_add(f, V(a, b), i * 100 + k);
			}
	cr_assert_eq(metrics_samples(), 1200);
	for (int i = 0; i < 40; i++)
		for (int k = 0; k < 30; k++) {
			snprintf(a, sizeof a, "a%d", i);
			snprintf(b, sizeof b, "b%d", k);
			cr_assert_eq(metrics_value(f, V(a, b)), 2 * (i * 100 + k));
		}
}

Test(metrics, heavyd_families_at_start)
{
	char	*text;

	metrics_init(0, "abc1234");
	text = scrape();
	assert_has(text, "# TYPE heavyd_build_info gauge\nheavyd_build_info{"
	    "version=\"" HEAVY_VERSION "\",commit=\"abc1234\"} 1\n");
	assert_has(text, "heavyd_workers{state=\"queued\"} 0\n");
	assert_has(text, "heavyd_workers{state=\"finishing\"} 0\n");
	assert_has(text, "heavyd_tasks_running 0\n");
	assert_has(text, "heavyd_zygote_up 0\n");
	assert_has(text, "heavyd_egress_up 0\n");
	assert_has(text, "heavyd_egress_cancelled_total 0\n");
	assert_has(text, "# TYPE heavyd_llm_request_duration_seconds "
	    "histogram\n");
	assert_has(text, "# TYPE heavyd_http_requests_total counter\n");
	free(text);
}

Test(metrics, heavyd_families_count)
{
	struct metrics_llm	 m = { .model = "openai/gpt-4o", .outcome = "5xx",
	    .retry = true, .duration_us = 1750000, .prompt_tokens = 100,
	    .completion_tokens = 20, .cost_micro_usd = 1234, .retries = 1 };
	char			*text;

	metrics_init(0, "abc1234");
	metrics_task_started("heavy_orchestrate");
	metrics_task_ended("heavy_orchestrate", "completed");
	metrics_tasks_running(3);
	metrics_budget_stop("cost");
	metrics_worker_move(NULL, "queued");
	metrics_worker_move("queued", "spawning");
	metrics_worker_move(NULL, "queued");
	metrics_llm_request(&m);
	metrics_store_write("put", 700, true);
	metrics_store_write("commit", 30, false);
	metrics_zygote_spares(4);
	metrics_zygote_up(true);
	metrics_zygote_restart();
	metrics_egress_up(true);
	metrics_egress_restart();
	metrics_egress_cancelled(2);
	metrics_egress_cancelled(1);
	metrics_http_request("POST", 200);
	metrics_http_request("GET", 404);
	metrics_sessions(2);
	metrics_sse_streams(1);
	metrics_log_dropped(17);
	text = scrape();
	assert_has(text, "heavyd_tasks_started_total{tool=\"heavy_orchestrate\"}"
	    " 1\n");
	assert_has(text, "heavyd_tasks_ended_total{tool=\"heavy_orchestrate\","
	    "status=\"completed\"} 1\n");
	assert_has(text, "heavyd_tasks_running 3\n");
	assert_has(text, "heavyd_budget_stops_total{budget=\"cost\"} 1\n");
	assert_has(text, "heavyd_budget_stops_total{budget=\"tokens\"} 0\n");
	assert_has(text, "heavyd_workers{state=\"queued\"} 1\n");
	assert_has(text, "heavyd_workers{state=\"spawning\"} 1\n");
	assert_has(text, "heavyd_llm_requests_total{model=\"openai/gpt-4o\","
	    "outcome=\"5xx\",retry=\"true\"} 1\n");
	assert_has(text, "heavyd_llm_request_duration_seconds_bucket{model="
	    "\"openai/gpt-4o\",le=\"1\"} 0\n");
	assert_has(text, "heavyd_llm_request_duration_seconds_bucket{model="
	    "\"openai/gpt-4o\",le=\"2.5\"} 1\n");
	assert_has(text, "heavyd_llm_request_duration_seconds_sum{model="
	    "\"openai/gpt-4o\"} 1.75\n");
	assert_has(text, "heavyd_llm_tokens_total{model=\"openai/gpt-4o\","
	    "kind=\"completion\"} 20\n");
	assert_has(text, "heavyd_llm_cost_usd_total{model=\"openai/gpt-4o\"} "
	    "0.001234\n");
	assert_has(text, "heavyd_llm_retries_total{model=\"openai/gpt-4o\"} 1\n");
	assert_has(text, "heavyd_store_write_duration_seconds_bucket{op=\"put\","
	    "le=\"0.001\"} 1\n");
	assert_has(text, "heavyd_store_write_errors_total{op=\"commit\"} 1\n");
	assert_has(text, "heavyd_zygote_spares 4\n");
	assert_has(text, "heavyd_zygote_up 1\n");
	assert_has(text, "heavyd_zygote_restarts_total 1\n");
	assert_has(text, "heavyd_egress_up 1\n");
	assert_has(text, "heavyd_egress_restarts_total 1\n");
	assert_has(text, "heavyd_egress_cancelled_total 3\n");
	assert_has(text, "heavyd_http_requests_total{method=\"POST\","
	    "code=\"200\"} 1\n");
	assert_has(text, "heavyd_http_requests_total{method=\"GET\","
	    "code=\"404\"} 1\n");
	assert_has(text, "heavyd_sessions 2\n");
	assert_has(text, "heavyd_sse_streams 1\n");
	assert_has(text, "heavyd_log_lines_dropped_total 17\n");
	free(text);
}

/* heavyd_llm_hedges_total: a call's hedge, by which transfer answered. */
Test(metrics, hedges_counted_by_result)
{
	struct metrics_llm	 won = { .model = "m", .outcome = "2xx",
	    .hedged = 1, .hedges_won = 1 }, lost = { .model = "m",
	    .outcome = "2xx", .hedged = 1 }, none = { .model = "m",
	    .outcome = "2xx" };
	char			*text;

	metrics_init(0, "abc1234");
	metrics_llm_request(&won);
	metrics_llm_request(&lost);
	metrics_llm_request(&lost);
	metrics_llm_request(&none);
	text = scrape();
	assert_has(text, "# TYPE heavyd_llm_hedges_total counter\n");
	assert_has(text, "heavyd_llm_hedges_total{model=\"m\",result=\"won\"} "
	    "1\n");
	assert_has(text, "heavyd_llm_hedges_total{model=\"m\",result=\"lost\"} "
	    "2\n");
	free(text);
}

/* Before metrics_init (a unit test of another module, heavyd ask before
 * its start) every event is ignored, and nothing is allocated. */
Test(metrics, quiet_before_init)
{
	char	*text;

	metrics_task_started("heavy_orchestrate");
	metrics_worker_exit("ok");
	metrics_http_request("GET", 200);
	cr_assert(!metrics_enabled());
	text = scrape();
	cr_assert_str_eq(text, "");
	free(text);
}

/* A scrape larger than the render buffer arrives whole and in order. */
Test(metrics, large_scrape)
{
	struct metric_spec	 s = { "t_big_total", "Big.", METRIC_COUNTER, 0,
	    { "v" }, 0, { 0 } };
	struct metric_family	*f = metrics_family(&s);
	char			 v[METRICS_MAX_LABEL_BYTES + 1], line[400];
	char			*text, *p;

	for (int i = 0; i < 1000; i++) {
		snprintf(v, sizeof v, "%0200d", i);
		metrics_add(f, V(v), i);
	}
	text = scrape();
	cr_assert_gt(strlen(text), 200000);
	p = text;
	for (int i = 0; i < 1000; i++) {
		snprintf(line, sizeof line, "t_big_total{v=\"%0200d\"} %d\n", i,
		    i);
		cr_assert_not_null(p = strstr(p, line), "line %d", i);
	}
	free(text);
}

/* A worker's figures are untrusted: sums stop at the largest value rather
 * than wrap. */
Test(metrics, sums_saturate)
{
	struct metrics_llm	m = { .model = "m", .outcome = "2xx",
	    .duration_us = INT64_MAX, .prompt_tokens = UINT64_MAX };
	char			*text;

	metrics_init(0, NULL);
	metrics_llm_request(&m);
	metrics_llm_request(&m);
	text = scrape();
	assert_has(text, "heavyd_llm_tokens_total{model=\"m\",kind=\"prompt\"} "
	    "9223372036854775807\n");
	assert_has(text, "heavyd_llm_request_duration_seconds_sum{model=\"m\"} "
	    "9223372036854.775807\n");
	assert_has(text, "heavyd_llm_request_duration_seconds_count{model="
	    "\"m\"} 2\n");
	free(text);
}

/* ---- heavyd's own modules, counted ---- */

static int64_t
value(const char *family, const char *const *labels)
{
	return metrics_value(metrics_find(family), labels);
}

static void
rsetup(void)
{
	metrics_init(0, NULL);
	registry_init();
}

static void
rteardown(void)
{
	registry_free();
	metrics_free();
}

TestSuite(metrics_registry, .init = rsetup, .fini = rteardown);

static struct task_record *
record(int n, const char *tool)
{
	struct task_record	*r = registry_new("uid:1000", tool);
	char			 id[33];

	snprintf(id, sizeof id, "%032x", n);
	registry_add(r, NULL, id, now_ms());
	return r;
}

/* Started, running and ended by tool and status, as the registry sees
 * each task; what is left at shutdown ends as failed. */
Test(metrics_registry, tasks_counted)
{
	struct task_outcome	 ok = { .failed = false };
	struct task_outcome	 bad = { .failed = true, .error = "no" };
	const char		*mkh = "grok_heavy_orchestrate";

	record(1, "heavy_orchestrate");
	record(2, "heavy_orchestrate");
	record(3, mkh);
	record(4, mkh);
	cr_assert_eq(value("heavyd_tasks_running", NULL), 4);
	cr_assert_eq(value("heavyd_tasks_started_total",
	    V("heavy_orchestrate")), 2);
	registry_finish(registry_find("00000000000000000000000000000001",
	    "uid:1000"), &ok, taskresult_text("x", true), now_ms());
	registry_finish(registry_find("00000000000000000000000000000002",
	    "uid:1000"), &bad, taskresult_text("x", true), now_ms());
	registry_cancel(registry_find("00000000000000000000000000000003",
	    "uid:1000"), "asked", now_ms());
	cr_assert_eq(value("heavyd_tasks_running", NULL), 1);
	cr_assert_eq(value("heavyd_tasks_ended_total", V("heavy_orchestrate",
	    "completed")), 1);
	cr_assert_eq(value("heavyd_tasks_ended_total", V("heavy_orchestrate",
	    "failed")), 1);
	cr_assert_eq(value("heavyd_tasks_ended_total", V(mkh, "cancelled")), 1);
	registry_free();
	cr_assert_eq(value("heavyd_tasks_running", NULL), 0);
	cr_assert_eq(value("heavyd_tasks_ended_total", V(mkh, "failed")), 1);
	registry_init();	/* for the teardown */
}

/* Every write to the store is timed, and one that fails is counted. */
Test(metrics_registry, store_writes_timed)
{
	struct store_task	 t = { .owner = (char *)"o",
	    .status = (char *)"working", .ttl_ms = 60000 };
	char			 dir[256], err[256], cmd[320];

	unit_tmp(dir, sizeof dir, "heavyd-metrics");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	snprintf(t.id, sizeof t.id, "%032x", 1);
	t.created_ms = t.updated_ms = wall_ms();
	cr_assert_eq(sync_put(&t), STORE_OK);
	t.status = (char *)"completed";
	cr_assert_eq(sync_put(&t), STORE_OK);
	cr_assert_eq(sync_put(&t), STORE_TERMINAL, "ended: it stays so");
	cr_assert(sync_sweep(10) >= 0);
	store_close();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(value("heavyd_store_write_duration_seconds", V("put")),
	    3);
	cr_assert_eq(value("heavyd_store_write_errors_total", V("put")), 0);
	cr_assert_eq(value("heavyd_store_write_duration_seconds",
	    V("sweep")), 1);
}

/* A write the store refuses is counted as an error of its kind. */
Test(metrics_registry, store_write_errors_counted)
{
	struct store_task	 t = { .owner = NULL,
	    .status = (char *)"working", .ttl_ms = 60000 };
	char			 dir[256], err[256], cmd[320];

	unit_tmp(dir, sizeof dir, "heavyd-metrics");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	snprintf(t.id, sizeof t.id, "%032x", 1);
	t.created_ms = t.updated_ms = wall_ms();
	cr_assert_eq(sync_put(&t), STORE_ERROR, "owner is NOT NULL");
	store_close();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(value("heavyd_store_write_errors_total", V("put")), 1);
	cr_assert_eq(value("heavyd_store_write_duration_seconds", V("put")),
	    1);
}

/* Asking for a value adds no label value: it cannot use up the cap. */
Test(metrics, lookups_take_no_room)
{
	struct metric_spec	 s = { "t_l_total", "L.", METRIC_COUNTER, 0,
	    { "m" }, 0x1, { 0 } };
	struct metric_family	*f;

	metrics_init(2, NULL);
	f = metrics_family(&s);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(metrics_value(f, V("nobody")), 0);
	metrics_add(f, V("a"), 1);
	metrics_add(f, V("b"), 1);
	cr_assert_eq(metrics_value(f, V("a")), 1);
	cr_assert_eq(metrics_value(f, V("b")), 1);
	cr_assert_eq(metrics_value(f, V("other")), 0);
}

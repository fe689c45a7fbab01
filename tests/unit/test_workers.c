/*
 * The worker table with a real zygote and real workers (the heavyd-worker
 * built beside these tests), against an LLM endpoint served here, on this
 * process's event loop: what the metrics say once a worker has ended.  A
 * worker's LLM requests reach them only through its MSG_JOB_USAGE frames,
 * and the zygote's spares through MSG_ZYGOTE_SPARES, so these go through
 * the protocol end to end.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "../../supervisor/supervisor.h"
#include "../../supervisor/metrics.h"
#include "engine.h"

#define V(...)	((const char *const []){ __VA_ARGS__ })
#define HANG_S	60	/* only a hang takes this long */

/* What the endpoint answers, request after request; then the last again. */
static const char	*answers[4];
static int		 nanswers, requests;
static struct evhttp	*http;
static int		 port;
static struct heavy_config cfg;
static bool		 hung, got_result;
static enum worker_outcome outcome;

static void
llm_cb(struct evhttp_request *req, void *arg)
{
	const char	*a = answers[requests < nanswers ? requests : nanswers - 1];
	struct evbuffer	*out = evbuffer_new();

	(void)arg;
	requests++;
	if (strcmp(a, "hold") == 0) {	/* never answered: the worker waits */
		evbuffer_free(out);
		return;
	}
	evbuffer_add_printf(out, "%s", strchr(a, ' ') + 1);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, atoi(a), "x", out);
	evbuffer_free(out);
}

static void
setup(void)
{
	ev_base = event_base_new();
	metrics_init(0, "test");
	config_defaults(&cfg);
	workers_init(&cfg);
	port = engine_llm(&http, llm_cb);
	engine_start(&cfg);
	requests = nanswers = 0;
	hung = got_result = false;
}

static void
teardown(void)
{
	spawner_stop();
	egressctl_stop();
	workers_free_all();
	evhttp_free(http);
	event_base_free(ev_base);
	ev_base = NULL;
	config_clear(&cfg);
	metrics_free();
}

TestSuite(workers, .init = setup, .fini = teardown, .timeout = 2 * HANG_S);

static void
hang_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	hung = true;
}

/* Runs the loop until fn says so; only a hang stops it otherwise. */
static void
run_until(bool (*fn)(void), const char *what)
{
	struct timeval	 tv = { HANG_S, 0 };
	struct event	*hang = evtimer_new(ev_base, hang_cb, NULL);

	evtimer_add(hang, &tv);
	while (!fn() && !hung)
		event_base_loop(ev_base, EVLOOP_ONCE);
	event_free(hang);
	cr_assert(!hung, "still waiting after %d s for %s", HANG_S, what);
}

static int64_t
value(const char *family, const char *const *labels)
{
	return metrics_value(metrics_find(family), labels);
}

static bool spare_ready(void) { return value("heavyd_zygote_spares", NULL) == 1; }

/* It asks the LLM, and the zygote's report of its pid has arrived (the
 * two come in either order). */
static bool
waiting_on_llm(void)
{
	return requests > 0 && value("heavyd_workers", V("running")) == 1;
}

static int64_t
exits(const char *cause)
{
	return value("heavyd_worker_exits_total", V(cause));
}

static int64_t
total_exits(void)
{
	static const char *const causes[] = { "ok", "failed", "deadline",
	    "cancel", "crash", "protocol_violation", "spawn_failed" };
	int64_t	n = 0;

	for (size_t i = 0; i < sizeof causes / sizeof *causes; i++)
		n += exits(causes[i]);
	return n;
}

static bool one_exit(void) { return total_exits() == 1; }

static void
done_cb(void *arg, struct worker_result *res)
{
	(void)arg;
	got_result = true;
	outcome = res->outcome;
}

/*
 * A planner job for the endpoint here, with quick retries.  Its own budget
 * may be longer than the deadline it is killed at, so that only the kill
 * can end a worker that waits.
 */
static struct worker *
start_planner(int64_t deadline_ms, int64_t budget_ms, int max_retries)
{
	struct sandbox		sb = { .workspace = "", .fs = SANDBOX_FS_NONE,
	    .memory = 1 << 30, .cpu_s = 60, .nofile = 64, .fsize = 1 << 20,
	    .uid = SANDBOX_KEEP_ID, .gid = SANDBOX_KEEP_ID };
	struct job		job = { .role = ROLE_PLANNER, .num_questions = 2,
	    .budget_ms = (uint32_t)budget_ms, .max_retries = max_retries,
	    .retry_base_ms = 1, .retry_max_ms = 1,
	    .max_response_bytes = 1 << 20, .api_key = "test-key",
	    .model = "test/model", .system_prompt = "", .prompt = "split it" };
	struct worker_req	req = { .label = "test planner", .sandbox = &sb,
	    .job = &job, .deadline_ms = now_ms() + deadline_ms,
	    .done = done_cb };
	char			url[64];
	struct worker		*w;

	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
	job.base_url = url;
	/* The zygote has said it holds its spare: its report arrived. */
	run_until(spare_ready, "the zygote's spare");
	cr_assert_not_null(w = worker_start(&req));
	return w;
}

static void
assert_no_workers(void)
{
	static const char *const states[] = { "queued", "spawning", "running",
	    "finishing" };

	for (size_t i = 0; i < sizeof states / sizeof *states; i++)
		cr_assert_eq(value("heavyd_workers", V(states[i])), 0, "%s",
		    states[i]);
}

#define PLAN	"200 {\"choices\":[{\"message\":{\"role\":\"assistant\"," \
	"\"content\":\"[\\\"a?\\\", \\\"b?\\\"]\"}}],\"usage\":{" \
	"\"prompt_tokens\":7,\"completion_tokens\":5,\"total_tokens\":12," \
	"\"cost\":0.0025}}"

/* A 503, retried, then an answer: two requests, one retry, the tokens and
 * cost of the answer, a worker that ended well. */
Test(workers, llm_requests_counted)
{
	const char	*m = "test/model";

	answers[0] = "503 {\"error\":{\"message\":\"busy\"}}";
	answers[1] = PLAN;
	nanswers = 2;
	start_planner(30000, 30000, 1);
	run_until(one_exit, "the worker's end");
	cr_assert(got_result);
	cr_assert_eq(outcome, OUTCOME_OK);
	cr_assert_eq(requests, 2);
	cr_assert_eq(exits("ok"), 1);
	cr_assert_eq(value("heavyd_llm_requests_total", V(m, "5xx", "false")),
	    1);
	cr_assert_eq(value("heavyd_llm_requests_total", V(m, "2xx", "true")),
	    1);
	cr_assert_eq(value("heavyd_llm_retries_total", V(m)), 1);
	cr_assert_eq(value("heavyd_llm_request_duration_seconds", V(m)), 2);
	cr_assert_eq(value("heavyd_llm_tokens_total", V(m, "prompt")), 7);
	cr_assert_eq(value("heavyd_llm_tokens_total", V(m, "completion")), 5);
	cr_assert_eq(value("heavyd_llm_cost_usd_total", V(m)), 2500);
	assert_no_workers();
	cr_assert_eq(value("heavyd_zygote_up", NULL), 1);
	/* It took the spare; the zygote forks another and says so. */
	run_until(spare_ready, "the spare refilled");
}

/* Nothing listens: a connect error, reported, and a failed job. */
Test(workers, connect_error_counted)
{
	int	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;

	/* A port that was free a moment ago and has no listener. */
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	port = ntohs(sin.sin_port);
	start_planner(30000, 30000, 0);
	run_until(one_exit, "the worker's end");
	cr_assert_eq(outcome, OUTCOME_FAILED);
	cr_assert_eq(exits("failed"), 1);
	cr_assert_eq(value("heavyd_llm_requests_total", V("test/model",
	    "connect_error", "false")), 1);
	cr_assert_eq(value("heavyd_llm_tokens_total", V("test/model",
	    "prompt")), 0);
	assert_no_workers();
}

/* A request that never comes back: the worker is killed at its deadline. */
Test(workers, deadline_counted)
{
	answers[0] = "hold";
	nanswers = 1;
	start_planner(1000, 120000, 0);
	run_until(one_exit, "the worker's end");
	cr_assert_eq(outcome, OUTCOME_TIMEOUT);
	cr_assert_eq(exits("deadline"), 1);
	assert_no_workers();
}

/* Its owner lets it go while it waits on the LLM. */
Test(workers, cancel_counted)
{
	struct worker	*w;

	answers[0] = "hold";
	nanswers = 1;
	w = start_planner(30000, 30000, 0);
	run_until(waiting_on_llm, "the worker's request");
	worker_cancel(w);
	run_until(one_exit, "the worker's end");
	cr_assert(!got_result);
	cr_assert_eq(exits("cancel"), 1);
	assert_no_workers();
}

/*
 * task_resume, the engine's side of resumption, with a real zygote, real
 * workers and heavyd-egress, against an LLM endpoint served here that
 * counts its requests: the questions kept skip the planner, a finished
 * agent is not run again, the synthesis runs once, and the result's
 * resumed says which agents ran again.
 */
#include <sys/stat.h>

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
#include "tmpdir.h"

#define HANG_S	60	/* only a hang takes this long */
#define ANSWER	"{\"choices\":[{\"message\":{\"role\":\"assistant\"," \
	"\"content\":\"An answer.\"}}],\"usage\":{\"prompt_tokens\":7," \
	"\"completion_tokens\":5,\"total_tokens\":12}}"

static struct evhttp	*http;
static struct heavy_config cfg;
static char		 dir[256], url[64];
static int		 requests;
static bool		 hung, done;
static bool		 failed;
static struct json_object *result;

/* Every chat call answered at once, with text: an agent's final answer,
 * the synthesis's merge. */
static void
llm_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*out = evbuffer_new();

	(void)arg;
	requests++;
	evbuffer_add_printf(out, "%s", ANSWER);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void
setup(void)
{
	char	err[512];

	ev_base = event_base_new();
	metrics_init(0, "test");
	config_defaults(&cfg);
	unit_tmp(dir, sizeof dir, "heavyd-resume");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(chmod(dir, 0711), 0);	/* workers' uid reaches in */
	config_set_str(&cfg.state_dir, dir);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1",
	    engine_llm(&http, llm_cb));
	config_set_str(&cfg.base_url, url);
	cr_assert_eq(features_init(&cfg, false, err, sizeof err), 0, "%s",
	    err);
	workspace_init(&cfg);
	workers_init(&cfg);
	engine_start(&cfg);
	task_keys(ENGINE_KEY, NULL, NULL);
	requests = 0;
	hung = done = failed = false;
	result = NULL;
}

static void
teardown(void)
{
	char	cmd[320];

	json_object_put(result);
	spawner_stop();
	egressctl_stop();
	workers_free_all();
	workspace_stop();
	evhttp_free(http);
	event_base_free(ev_base);
	ev_base = NULL;
	config_clear(&cfg);
	metrics_free();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(resume, .init = setup, .fini = teardown, .timeout = 2 * HANG_S);

static void
hang_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	hung = true;
}

/* The task's end, rendered as a client gets it (result.c). */
static void
done_cb(void *arg, const struct task_outcome *o, struct task_result *r)
{
	(void)arg;
	done = true;
	failed = o->failed;
	result = result_render(r);
	taskresult_free(r);
}

/* Runs the task to its end; only a hang stops it otherwise. */
static void
run_to_end(void)
{
	struct timeval	 tv = { HANG_S, 0 };
	struct event	*hang = evtimer_new(ev_base, hang_cb, NULL);

	evtimer_add(hang, &tv);
	while (!done && !hung)
		event_base_loop(ev_base, EVLOOP_ONCE);
	event_free(hang);
	cr_assert(!hung, "still waiting after %d s for the task's end",
	    HANG_S);
}

static struct json_object *
get(struct json_object *o, const char *key)
{
	struct json_object	*v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no %s", key);
	return v;
}

/* The 1-based indices of a JSON array, as "1,3". */
static void
indices(struct json_object *a, char *out, size_t len)
{
	size_t	n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(a); i++)
		n += (size_t)snprintf(out + n, len - n, "%s%d", i ? "," : "",
		    json_object_get_int(json_object_array_get_idx(a, i)));
}

static struct task *
resume(const struct task_seed *seed, int n)
{
	struct task_params	p = { .query = xstrdup("what?"),
	    .num_agents = n, .timeout_s = 120, .resume = true };

	return task_resume(&cfg, &p, seed, NULL, done_cb, NULL);
}

/*
 * Three agents: 1 and 3 had answered, 2 was running.  Only agent 2 asks
 * the LLM, then the synthesis: two requests, no planner's.
 */
Test(resume, only_the_unfinished_agent_runs_again)
{
	struct task_seed	 seed = { .id = "0123456789abcdef0123456789abcdef",
	    .deadline_ms = wall_ms() + 120000, .from = "process 1 on this host",
	    .why = "its process died", .agents = {
		{ "q1", "ok", "Kept answer one.", NULL, 1200 },
		{ "q2", "running", NULL, NULL, -1 },
		{ "q3", "ok", "Kept answer three.", NULL, 900 } } };
	struct json_object	*sc, *rs, *agents;
	char			 got[32];

	cr_assert_not_null(resume(&seed, 3));
	run_to_end();
	cr_assert_not(failed);
	cr_assert_eq(requests, 2, "agent 2 and the synthesis: %d", requests);
	sc = get(result, "structuredContent");
	rs = get(sc, "resumed");
	cr_assert_str_eq(json_object_get_string(get(rs, "from")),
	    "process 1 on this host");
	cr_assert_str_eq(json_object_get_string(get(rs, "why")),
	    "its process died");
	cr_assert_not(json_object_get_boolean(get(rs, "planner_rerun")));
	indices(get(rs, "rerun"), got, sizeof got);
	cr_assert_str_eq(got, "2");
	indices(get(rs, "kept"), got, sizeof got);
	cr_assert_str_eq(got, "1,3");
	agents = get(sc, "agents");
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(json_object_get_string(get(
		    json_object_array_get_idx(agents, i), "status")), "ok");
	cr_assert_str_eq(json_object_get_string(get(
	    json_object_array_get_idx(agents, 1), "question")), "q2");
	cr_assert(json_object_get_boolean(get(sc, "synthesized")));
}

/* Every agent had finished (one failed): none runs, the synthesis once. */
Test(resume, finished_agents_are_all_kept)
{
	struct task_seed	 seed = { .id = "0123456789abcdef0123456789abcde0",
	    .deadline_ms = wall_ms() + 120000, .from = "node n1",
	    .why = "its node stopped renewing its lease", .agents = {
		{ "q1", "ok", "Kept answer one.", NULL, 1200 },
		{ "q2", "failed", NULL, "it failed before", 300 },
		{ "q3", "ok", "Kept answer three.", NULL, 900 } } };
	struct json_object	*sc, *a2;
	char			 got[32];

	cr_assert_not_null(resume(&seed, 3));
	run_to_end();
	cr_assert_not(failed);
	cr_assert_eq(requests, 1, "the synthesis alone: %d", requests);
	sc = get(result, "structuredContent");
	indices(get(get(sc, "resumed"), "rerun"), got, sizeof got);
	cr_assert_str_eq(got, "");
	a2 = json_object_array_get_idx(get(sc, "agents"), 1);
	cr_assert_str_eq(json_object_get_string(get(a2, "status")), "failed");
	cr_assert_str_eq(json_object_get_string(get(a2, "error")),
	    "it failed before");
}

/* No questions kept (the planner had not answered): it runs again, then
 * every agent; the result says so. */
Test(resume, without_questions_the_planner_runs_again)
{
	struct task_seed	 seed = { .id = "0123456789abcdef0123456789abcde1",
	    .deadline_ms = wall_ms() + 120000, .from = "process 1 on this host",
	    .why = "its process died" };
	struct json_object	*rs;
	char			 got[32];

	cr_assert_not_null(resume(&seed, 2));
	run_to_end();
	rs = get(get(result, "structuredContent"), "resumed");
	cr_assert(json_object_get_boolean(get(rs, "planner_rerun")));
	indices(get(rs, "rerun"), got, sizeof got);
	cr_assert_str_eq(got, "1,2");
	/* The planner (its answer is no list: maybe asked again), two
	 * agents, the synthesis. */
	cr_assert_geq(requests, 4, "%d", requests);
}

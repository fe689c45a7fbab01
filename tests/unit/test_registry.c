/* The task registry (the live cache), and the make-it-heavy tools over it
 * and the task store. */
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"

static void setup(void) { registry_init(); }
static void teardown(void) { registry_free(); }

static struct task_record *
add(int n, const char *owner, int64_t now)
{
	struct task_record	*r = registry_new(owner, "grok_heavy_orchestrate");
	char			 id[33];

	snprintf(id, sizeof id, "%032x", n);
	r->ttl_ms = 60000;
	registry_add(r, NULL, id, now);
	return r;
}

static const char *
id(int n)
{
	static char	buf[4][33];
	static int	k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%032x", n);
	return buf[k];
}

/* A result like heavy_orchestrate's. */
static struct task_result *
result(bool failed, const char *text)
{
	struct task_result	*r = taskresult_new(TR_ORCHESTRATION);

	r->answer = xstrdup(text);
	r->failed = failed;
	return r;
}

/* The end of a task as task.c reports it: its outcome, and the result. */
static void
finish(struct task_record *r, bool failed, const char *text, int64_t now)
{
	struct task_outcome	o = { .failed = failed,
	    .error = failed ? text : NULL };

	registry_finish(r, &o, result(failed, text), now);
}

/* What a watcher saw: every touch, and the last end. */
static int		 seen_touches, seen_ends;
static enum task_status	 seen_status;
static char		 seen_error[128], seen_result[256];

static void
watcher(struct task_record *r)
{
	seen_touches++;
	if (!r->finished)
		return;
	seen_ends++;
	seen_status = r->status;
	snprintf(seen_error, sizeof seen_error, "%s", r->error ? r->error : "");
	snprintf(seen_result, sizeof seen_result, "%s", r->result ?
	    r->result->answer : "");
}

static void
wsetup(void)
{
	setup();
	registry_watch(REGISTRY_WATCH_OTHER, watcher);
	seen_touches = seen_ends = 0;
}

Test(registry, lookup_by_id_and_owner, .init = setup, .fini = teardown)
{
	struct task_record	*a = add(1, "uid:1", 0), *b = add(2, "uid:1", 0);

	cr_assert_eq(registry_find(id(1), "uid:1"), a);
	cr_assert_eq(registry_find(id(2), "uid:1"), b);
	cr_assert_null(registry_find(id(3), "uid:1"));
	cr_assert_null(registry_find("", "uid:1"));
	cr_assert_eq(registry_nactive(), 2);
	cr_assert_eq(registry_status(a), TASK_INITIALIZED);
	cr_assert_str_eq(registry_status_name(registry_status(a)),
	    "INITIALIZED");
}

Test(registry, another_owner_sees_nothing, .init = setup, .fini = teardown)
{
	struct task_record	*r = add(7, "uid:1000", 0);
	struct json_object	*mine, *theirs;

	cr_assert_null(registry_find(id(7), "uid:1001"));
	cr_assert_null(registry_find(id(7), "uid:100"));
	cr_assert_eq(registry_find(id(7), "uid:1000"), r);
	mine = registry_ids("uid:1000", "");
	theirs = registry_ids("uid:1001", "");
	cr_assert_eq(json_object_array_length(mine), 1);
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(mine,
	    0)), id(7));
	cr_assert_eq(json_object_array_length(theirs), 0);
	json_object_put(mine);
	json_object_put(theirs);
}

Test(registry, ids_by_prefix_in_any_case, .init = setup, .fini = teardown)
{
	struct json_object	*l;

	add(0xab1, "uid:1", 0);
	add(0xab2, "uid:1", 0);
	add(0xcd3, "uid:1", 0);
	l = registry_ids("uid:1", "00000000000000000000000000000AB");
	cr_assert_eq(json_object_array_length(l), 2);
	json_object_put(l);
}

Test(registry, watchers_hear_the_start_each_step_and_the_end,
    .init = wsetup, .fini = teardown)
{
	struct task_record	*r = add(1, "uid:1", 0);

	cr_assert_eq(seen_touches, 1, "the start");
	cr_assert(r->updated_ms > 0 && r->start_time_ms > 0);
	registry_touch(r);
	cr_assert_eq(seen_touches, 2);
	finish(r, false, "answer", 5);
	cr_assert_eq(seen_ends, 1);
	cr_assert_eq(seen_status, TASK_COMPLETED);
	/* Once the watchers have it, the record is gone from the cache. */
	cr_assert_null(registry_find(id(1), "uid:1"));
	cr_assert_eq(registry_nactive(), 0);
}

Test(registry, failed_result_keeps_its_error, .init = wsetup,
    .fini = teardown)
{
	struct task_record	*r = add(1, "uid:1", 1000);

	finish(r, true, "All 4 agents failed", 3500);
	cr_assert_eq(seen_status, TASK_FAILED);
	cr_assert_str_eq(seen_error, "All 4 agents failed");
	cr_assert(strstr(seen_result, "All 4 agents failed") != NULL);
}

static int			 hook_calls;
static char			 hook_text[128];
static void
hook(void *arg, const char *why)
{
	hook_calls += arg == &hook_calls;
	snprintf(hook_text, sizeof hook_text, "%s", why);
}

Test(registry, cancel_tells_the_starter_once_and_why,
    .init = wsetup, .fini = teardown)
{
	struct task_record	*r = add(1, "uid:1", 0);

	hook_calls = 0;
	r->cancelled = hook;
	r->arg = &hook_calls;
	registry_cancel(r, "cancelled by cancel_task", 10);
	cr_assert_eq(hook_calls, 1);
	cr_assert_str_eq(hook_text, "cancelled by cancel_task");
	cr_assert_eq(seen_status, TASK_CANCELLED);
	cr_assert_str_eq(seen_error, "cancelled by cancel_task");
	cr_assert_str_eq(seen_result, "", "a stopped task has no result");
	cr_assert_eq(registry_nactive(), 0);
	cr_assert_null(registry_find(id(1), "uid:1"));
}

Test(registry, interrupted_is_failed_not_cancelled, .init = wsetup,
    .fini = teardown)
{
	struct task_record	*r = add(1, "uid:1", 0);

	registry_interrupt(r, "interrupted by shutdown", 10);
	cr_assert_eq(seen_status, TASK_FAILED);
	cr_assert_str_eq(seen_error, "interrupted by shutdown");
}

Test(registry, admission_counts_running_tasks, .init = setup,
    .fini = teardown)
{
	struct task_record	*a = add(1, "uid:1", 0);
	struct heavy_config	 c;
	char			 err[128];

	config_defaults(&c);
	add(2, "uid:2", 0);
	c.max_tasks = 3;
	cr_assert_eq(registry_admit(&c, "uid:1", 0, err, sizeof err), 0);
	c.max_tasks = 2;
	cr_assert_eq(registry_admit(&c, "uid:1", 0, err, sizeof err), -1);
	cr_assert(strstr(err, "busy") && strstr(err, "(max_tasks); retry later"),
	    "%s", err);
	finish(a, false, "x", 1);
	cr_assert_eq(registry_admit(&c, "uid:1", 0, err, sizeof err), 0);
	config_clear(&c);
}

Test(registry, admission_caps_each_session_and_the_worker_queue,
    .init = setup, .fini = teardown)
{
	struct heavy_config	 c;
	char			 err[128];

	config_defaults(&c);
	c.max_session_tasks = 2;
	c.max_queued_workers = 10;
	add(1, "uid:1", 0);
	add(2, "uid:1", 0);
	cr_assert_eq(registry_admit(&c, "uid:1", 0, err, sizeof err), -1);
	cr_assert(strstr(err, "this session already runs 2 orchestrations "
	    "(max_session_tasks); retry later") != NULL, "%s", err);
	cr_assert_eq(registry_admit(&c, "uid:2", 0, err, sizeof err), 0,
	    "another session is not starved");
	cr_assert_eq(registry_admit(&c, "uid:2", 10, err, sizeof err), -1);
	cr_assert(strstr(err, "10 workers are waiting") != NULL, "%s", err);
	config_clear(&c);
}

Test(registry, free_interrupts_what_still_runs, .init = wsetup)
{
	struct task_record	*r = add(1, "uid:1", 0);

	add(2, "uid:2", 0);
	hook_calls = 0;
	r->cancelled = hook;
	r->arg = &hook_calls;
	registry_free();
	cr_assert_eq(hook_calls, 1);
	cr_assert(strstr(hook_text, "interrupted by shutdown") != NULL, "%s",
	    hook_text);
	cr_assert_eq(seen_ends, 2);
	cr_assert_eq(seen_status, TASK_FAILED);
	cr_assert_eq(registry_nactive(), 0);
}

/* ---- the make-it-heavy tools over the registry and a real store ---- */

static struct heavy_config	mcfg;
static struct mcp_session	sess;
static char			mdir[256];

/* The replies the tools send, as a client would read them. */
static struct json_object	*replies[8];
static int			 nreplies;

static void
capture_send(void *arg, const struct mcp_out *out)
{
	size_t	len = evbuffer_get_length(out->msg);
	char	*text = malloc(len + 1);

	(void)arg;
	evbuffer_remove(out->msg, text, len);
	text[len] = '\0';
	cr_assert_lt(nreplies, 8);
	replies[nreplies++] = json_tokener_parse(text);
	free(text);
}

static const struct mcp_transport capture_tp = { "test", capture_send,
    NULL };

static void
msetup(void)
{
	setup();
	config_defaults(&mcfg);
	unit_tmp(mdir, sizeof mdir, "heavyd-mkh");
	cr_assert_not_null(mkdtemp(mdir));
	config_set_str(&mcfg.state_dir, mdir);
	ev_base = event_base_new();
	durable_init(&mcfg);
	sess.owner = "uid:1000";
	sess.cfg = &mcfg;
	sess.cfg_own = true;	/* the test's own: configure changes it */
	sess.tp = &capture_tp;
	sess.refs = 1;		/* the test's: never freed */
}

static void
mteardown(void)
{
	char	cmd[320];

	teardown();
	durable_stop();
	durable_close();
	event_base_free(ev_base);
	ev_base = NULL;
	config_clear(&mcfg);
	snprintf(cmd, sizeof cmd, "rm -rf %s", mdir);
	cr_assert_eq(system(cmd), 0);
}

/* A tools/call request of name, as the dispatch hands it over. */
static bool
tcall_raw(const char *name, const char *args)
{
	struct rpc_msg	m = { 0 };
	bool		known;

	m.root = json_object_new_object();
	json_object_object_add(m.root, "id", json_object_new_int(1));
	m.id = json_object_object_get(m.root, "id");
	m.params = args ? json_tokener_parse(args) : NULL;
	json_object_object_add(m.root, "params", m.params);
	known = mkh_call(&sess, &m, name, m.params);
	json_object_put(m.root);
	return known;
}

/* Calls the tool; returns its result (the store answered before the call
 * returned), *text its first text. */
static struct json_object *
tcall(const char *name, const char *args, const char **text)
{
	struct json_object	*r;

	nreplies = 0;
	cr_assert(tcall_raw(name, args), "%s is not a tool", name);
	cr_assert_eq(nreplies, 1, "%s answered once", name);
	r = json_object_get(json_object_object_get(replies[0], "result"));
	json_object_put(replies[0]);
	cr_assert_not_null(r, "%s answered with a result", name);
	*text = json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(json_object_object_get(r, "content"), 0),
	    "text"));
	return r;
}

static bool
is_error(struct json_object *r)
{
	return json_object_get_boolean(json_object_object_get(r, "isError"));
}

Test(mkh, unknown_tool_is_not_ours, .init = msetup, .fini = mteardown)
{
	cr_assert(!tcall_raw("heavy_orchestrate", NULL));
	cr_assert(!tcall_raw("nope", NULL));
}

Test(mkh, agent_tools_are_the_enabled_ones, .init = msetup,
    .fini = mteardown)
{
	const char		*text;
	struct json_object	*r = tcall("get_agent_tools", "{}", &text);
	struct json_object	*sc = json_object_object_get(r,
	    "structuredContent"), *list;

	cr_assert(!is_error(r), "%s", text);
	list = json_object_object_get(sc, "available_tools");
	cr_assert_eq(json_object_get_int(json_object_object_get(sc,
	    "total_tools")), (int)json_object_array_length(list));
	cr_assert(strstr(text, "\"calculate\"") != NULL, "%s", text);
	cr_assert(strstr(text, "\"mark_task_complete\"") != NULL, "%s", text);
	json_object_put(r);
	r = tcall("get_agent_tools", "{\"verbose\":true}", &text);
	cr_assert(is_error(r));
	cr_assert(strstr(text, "'verbose'") != NULL, "%s", text);
	json_object_put(r);
}

Test(mkh, configure_changes_this_session_all_or_nothing, .init = msetup,
    .fini = mteardown)
{
	const char		*text;
	struct json_object	*r;

	r = tcall("configure_orchestrator", "{\"parallel_agents\":2,"
	    "\"task_timeout\":30,\"aggregation_strategy\":\"best\"}", &text);
	cr_assert(!is_error(r), "%s", text);
	cr_assert_eq(mcfg.num_agents, 2);
	cr_assert_eq(mcfg.task_timeout_s, 30);
	cr_assert_str_eq(mcfg.aggregation_strategy, "best");
	json_object_put(r);

	r = tcall("configure_orchestrator", "{\"task_timeout\":10,"
	    "\"aggregation_strategy\":\"majority\"}", &text);
	cr_assert(is_error(r));
	cr_assert(strstr(text, "'aggregation_strategy'") != NULL, "%s", text);
	cr_assert_eq(mcfg.task_timeout_s, 30, "a rejected call changed it");
	json_object_put(r);

	r = tcall("configure_orchestrator", "{\"parallel_agents\":17}", &text);
	cr_assert(is_error(r));
	cr_assert(strstr(text, "'parallel_agents'") != NULL, "%s", text);
	cr_assert_eq(mcfg.num_agents, 2);
	json_object_put(r);

	r = tcall("configure_orchestrator", "{\"parallel_agents\":null}", &text);
	cr_assert(!is_error(r), "%s", text);
	cr_assert(strstr(text, "\"parallel_agents\":2") != NULL, "%s", text);
	json_object_put(r);
}

Test(mkh, task_ids_malformed_unknown_and_foreign, .init = msetup,
    .fini = mteardown)
{
	const char		*text;
	struct json_object	*r, *r2;
	char			 args[64], foreign[256], *p;

	r = tcall("get_task_progress", "{\"task_id\":\"../etc\"}", &text);
	cr_assert(is_error(r));
	cr_assert(strstr(text, "invalid argument 'task_id'") != NULL, "%s", text);
	json_object_put(r);
	r = tcall("cancel_task", "{}", &text);
	cr_assert(is_error(r));
	cr_assert(strstr(text, "'task_id'") != NULL, "%s", text);
	json_object_put(r);

	/* Another owner's task answers exactly like an unknown id. */
	add(5, "uid:1001", 0);
	snprintf(args, sizeof args, "{\"task_id\":\"%s\"}", id(5));
	r = tcall("get_task_progress", args, &text);
	cr_assert(is_error(r));
	snprintf(foreign, sizeof foreign, "%s", text);
	while ((p = strstr(foreign, id(5))) != NULL)
		memcpy(p, id(6), 32);	/* the message names the id asked */
	snprintf(args, sizeof args, "{\"task_id\":\"%s\"}", id(6));
	r2 = tcall("get_task_progress", args, &text);
	cr_assert(is_error(r2));
	cr_assert_str_eq(foreign, text);
	cr_assert(strstr(text, "unknown task_id") != NULL, "%s", text);
	json_object_put(r);
	json_object_put(r2);
	r = tcall("cancel_task", "{\"task_id\":\"00000000000000000000000000000005\"}",
	    &text);
	cr_assert(is_error(r), "cancelled another owner's task: %s", text);
	cr_assert_eq(registry_nactive(), 1);
	json_object_put(r);
}

Test(mkh, progress_of_a_finished_task, .init = msetup, .fini = mteardown)
{
	const char		*text;
	struct json_object	*r, *sc;
	struct task_record	*t = add(9, "uid:1000", now_ms());
	char			 a[64];

	/* Finished, it lives on in the store alone. */
	usleep(300000);
	finish(t, false, "fine", now_ms());
	cr_assert_null(registry_find(id(9), "uid:1000"));
	snprintf(a, sizeof a, "{\"task_id\":\"%s\"}", id(9));
	r = tcall("get_task_progress", a, &text);
	cr_assert(!is_error(r), "%s", text);
	sc = json_object_object_get(r, "structuredContent");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(sc,
	    "status")), "COMPLETED");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(
	    json_object_object_get(sc, "result"), "answer")), "fine");
	cr_assert(json_object_get_double(json_object_object_get(sc,
	    "execution_time")) >= 0.3);
	json_object_put(r);
	r = tcall("cancel_task", a, &text);
	cr_assert(!is_error(r), "%s", text);
	cr_assert(strstr(text, "already finished") != NULL, "%s", text);
	cr_assert(strstr(text, "\"cancelled\":false") != NULL, "%s", text);
	json_object_put(r);
}

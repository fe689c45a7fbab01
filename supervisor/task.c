/*
 * One orchestration: a planner worker writes N questions, N agent workers
 * answer them in parallel, a synthesis worker merges the answers.  Every
 * step has a deadline inside the task's; a step that misses it is killed
 * and the task goes on with what it has.  A task owns its own copy of the
 * configuration, so nothing is shared or mutated across tasks.
 */
#include <sys/random.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

enum task_state { TASK_PLANNING, TASK_AGENTS, TASK_SYNTHESIS, TASK_DONE };
enum agent_status {
	AGENT_PENDING, AGENT_RUNNING, AGENT_OK, AGENT_FAILED, AGENT_TIMED_OUT,
	AGENT_KILLED,
};
static const char *agent_status_names[] = {
	"pending", "running", "ok", "failed", "timed_out", "killed",
};

struct agent {
	struct task		*task;
	int			 index;
	char			*question;
	enum agent_status	 status;
	int64_t			 elapsed_ms;
	char			*answer;
	char			*error;
	int			 signal;
	struct usage		 usage;
	struct worker		*worker;
	int64_t			 last_note_ms;
};

struct task {
	char			 id[33];
	char			*workspace;	/* "" until file tools exist */
	struct heavy_config	*cfg;
	struct task_params	 p;
	enum task_state		 state;
	int64_t			 start_ms, deadline_ms, last_note_ms;
	struct worker		*planner, *synth;
	struct agent		 agents[HEAVY_MAX_AGENTS];
	int			 running;
	bool			 planner_fallback, planner_reasked;
	char			*planner_error;
	bool			 synthesized, failed;
	char			*synthesis_error;
	int			 synthesis_truncated;
	char			*answer;
	struct usage		 usage;
	int			 step, substep;
	struct event		*heartbeat;
	task_progress_fn	 progress;
	task_done_fn		 done;
	void			*arg;
};

static void	task_after_agents(struct task *);
static void	task_finish(struct task *);

static void
task_report(struct task *t, const char *msg)
{
	double	p = t->step + 1.0 - 1.0 / (t->substep + 1);

	if (t->progress != NULL)
		t->progress(t->arg, t->substep == 0 ? t->step : p,
		    t->p.num_agents + 2, msg);
}

/* A finished step: progress moves to the next whole number. */
static void
task_step(struct task *t, const char *msg)
{
	t->step++;
	t->substep = 0;
	task_report(t, msg);
}

/* Something happened within a step: progress grows, but stays below it. */
static void
task_note(struct task *t, const char *msg)
{
	t->substep++;
	task_report(t, msg);
}

static void
task_heartbeat_cb(evutil_socket_t fd, short events, void *arg)
{
	struct task	*t = arg;
	char		 msg[128];
	int64_t		 secs = (now_ms() - t->start_ms) / 1000;

	(void)fd; (void)events;
	if (t->state == TASK_PLANNING)
		snprintf(msg, sizeof msg, "working: planning (%llds)",
		    (long long)secs);
	else if (t->state == TASK_AGENTS)
		snprintf(msg, sizeof msg, "working: %d of %d agents running "
		    "(%llds)", t->running, t->p.num_agents, (long long)secs);
	else
		snprintf(msg, sizeof msg, "working: synthesizing (%llds)",
		    (long long)secs);
	task_note(t, msg);
}

/* Fills a job whose strings are borrowed from the task. */
static struct worker *
task_spawn(struct task *t, enum job_role role, int index, char *system,
    char *prompt, int64_t deadline, worker_done_fn done, worker_step_fn step,
    void *arg)
{
	struct worker_req	req;
	struct sandbox		sb;
	struct job		job = { 0 };
	int64_t			left = deadline - now_ms();

	features_sandbox(&sb);
	sb.workspace = t->workspace;
	job.role = role;
	job.index = (uint32_t)index;
	job.num_questions = (uint32_t)t->p.num_agents;
	job.max_iterations = (uint32_t)t->cfg->max_iterations;
	job.budget_ms = left > 0 ? (uint32_t)left : 0;
	job.max_retries = (uint32_t)t->cfg->max_retries;
	job.retry_base_ms = (uint32_t)t->cfg->retry_base_ms;
	job.retry_max_ms = (uint32_t)t->cfg->retry_max_ms;
	job.max_response_bytes = t->cfg->max_response_bytes;
	job.max_transcript_bytes = t->cfg->max_transcript_bytes;
	job.max_tool_output_bytes = t->cfg->max_tool_output_bytes;
	job.max_answer_bytes = t->cfg->max_answer_bytes;
	job.api_key = (char *)server_api_key();
	job.base_url = t->cfg->base_url;
	job.model = t->p.model != NULL ? t->p.model : t->cfg->model;
	job.system_prompt = system;
	job.prompt = prompt;
	req.sandbox = &sb;
	req.job = &job;
	req.deadline_ms = deadline;
	req.done = done;
	req.step = step;
	req.arg = arg;
	return worker_start(&req);
}

static char *
task_describe(const struct worker_result *r)
{
	if (r->outcome == OUTCOME_OK)
		return xstrdup("returned an unusable result");
	return xstrdup(r->error != NULL ? r->error : "failed");
}

/* Worker notes (a tool call, a retry) become progress, at most 20 a
 * second from each worker, so one agent cannot flood the client. */
static void
task_worker_note(struct task *t, int64_t *last, const char *who,
    const char *note)
{
	char	msg[600];
	int64_t	now = now_ms();

	if (now - *last < 50)
		return;
	*last = now;
	snprintf(msg, sizeof msg, "%s: %s", who, note);
	task_note(t, msg);
}

static void
task_planner_step(void *arg, const char *note)
{
	struct task	*t = arg;

	task_worker_note(t, &t->last_note_ms, "planner", note);
}

static void
task_synth_step(void *arg, const char *note)
{
	struct task	*t = arg;

	task_worker_note(t, &t->last_note_ms, "synthesis", note);
}

static void
task_agent_step(void *arg, const char *note)
{
	struct agent	*a = arg;
	char		 who[32];

	snprintf(who, sizeof who, "agent %d", a->index + 1);
	task_worker_note(a->task, &a->last_note_ms, who, note);
}

static void
task_agent_done(void *arg, struct worker_result *r)
{
	struct agent	*a = arg;
	struct task	*t = a->task;
	char		 msg[640];

	a->worker = NULL;
	a->elapsed_ms = r->elapsed_ms;
	a->usage = r->usage;
	usage_add(&t->usage, &r->usage);
	a->signal = r->signal;
	if (r->outcome == OUTCOME_OK && r->ntexts == 1) {
		a->status = AGENT_OK;
		a->answer = r->texts[0];
		r->texts[0] = NULL;
		snprintf(msg, sizeof msg, "agent %d done", a->index + 1);
	} else {
		a->status = r->outcome == OUTCOME_TIMEOUT ||
		    r->error_kind == JOB_ERR_TIMEOUT ? AGENT_TIMED_OUT :
		    r->outcome == OUTCOME_KILLED ? AGENT_KILLED : AGENT_FAILED;
		a->error = task_describe(r);
		snprintf(msg, sizeof msg, "agent %d %s: %.500s", a->index + 1,
		    a->status == AGENT_TIMED_OUT ? "timed out" :
		    a->status == AGENT_KILLED ? "killed" : "failed", a->error);
	}
	t->running--;
	task_step(t, msg);
	if (t->running == 0)
		task_after_agents(t);
}

/* Agents must end early enough to leave the synthesis its share. */
static int64_t
task_agents_deadline(struct task *t)
{
	int64_t	total = t->deadline_ms - t->start_ms;
	int64_t	reserve = (int64_t)t->cfg->synthesis_reserve_s * 1000;

	if (reserve > total / 4)
		reserve = total / 4;
	return t->deadline_ms - reserve;
}

static void
task_start_agents(struct task *t)
{
	int64_t		 deadline = task_agents_deadline(t);
	struct agent	*a;

	t->state = TASK_AGENTS;
	for (int i = 0; i < t->p.num_agents; i++) {
		a = &t->agents[i];
		a->worker = task_spawn(t, ROLE_AGENT, i, t->cfg->system_prompt,
		    a->question, deadline, task_agent_done, task_agent_step, a);
		if (a->worker == NULL) {
			a->status = AGENT_FAILED;
			a->error = xstrdup("job exceeds max_frame_bytes");
			continue;
		}
		a->status = AGENT_RUNNING;
		t->running++;
	}
	if (t->running == 0)
		task_after_agents(t);
}

/* A key, credit or model error: every other call would fail the same way. */
static bool
task_fatal_cause(const struct worker_result *r)
{
	return r->outcome == OUTCOME_FAILED && r->error_kind == JOB_ERR_HTTP &&
	    (r->http_status == 401 || r->http_status == 402 ||
	    r->http_status == 403 || r->http_status == 404);
}

static void
task_stop_early(struct task *t, const char *cause)
{
	for (int i = 0; i < t->p.num_agents; i++) {
		t->agents[i].status = AGENT_FAILED;
		t->agents[i].error = xasprintf("not started: %s", cause);
	}
	t->failed = true;
	t->planner_error = xstrdup(cause);
	t->answer = xasprintf("The orchestration stopped: the planner's LLM "
	    "call failed with %s; every other call would fail the same way.",
	    cause);
	task_finish(t);
}

static void
task_planner_done(void *arg, struct worker_result *r)
{
	struct task	*t = arg;
	int		 n = t->p.num_agents;

	t->planner = NULL;
	usage_add(&t->usage, &r->usage);
	if (task_fatal_cause(r)) {
		task_stop_early(t, r->error);
		return;
	}
	if (r->outcome == OUTCOME_OK && r->ntexts == (uint32_t)n) {
		for (int i = 0; i < n; i++) {
			t->agents[i].question = r->texts[i];
			r->texts[i] = NULL;
		}
		t->planner_reasked = r->flags & JOB_DONE_REASKED;
		task_step(t, "questions ready");
	} else {
		t->planner_fallback = true;
		t->planner_error = task_describe(r);
		for (int i = 0; i < n; i++)
			t->agents[i].question = prompt_fallback_question(
			    t->p.query, i);
		task_step(t, "questions ready (fallback questions: the "
		    "planner failed)");
	}
	task_start_agents(t);
}

/* The answers side by side, when there is no synthesis to merge them. */
static char *
task_concatenate(struct task *t)
{
	struct buf	out;

	buf_init(&out, 0);
	for (int i = 0; i < t->p.num_agents; i++) {
		if (t->agents[i].status != AGENT_OK)
			continue;
		buf_printf(&out, "%s## Agent %d\n\n%s\n", out.len ? "\n" : "",
		    i + 1, t->agents[i].answer);
	}
	return buf_release(&out);
}

static void
task_synth_done(void *arg, struct worker_result *r)
{
	struct task	*t = arg;

	t->synth = NULL;
	usage_add(&t->usage, &r->usage);
	if (r->outcome == OUTCOME_OK && r->ntexts == 1) {
		t->answer = r->texts[0];
		r->texts[0] = NULL;
		t->synthesized = true;
	} else {
		t->synthesis_error = task_describe(r);
		t->answer = task_concatenate(t);
	}
	task_finish(t);
}

/* Why every agent failed, one line each. */
static char *
task_all_failed(struct task *t)
{
	struct buf	out;

	buf_init(&out, 0);
	buf_printf(&out, "All %d agents failed:", t->p.num_agents);
	for (int i = 0; i < t->p.num_agents; i++)
		buf_printf(&out, "\n- agent %d (%s): %s", i + 1,
		    agent_status_names[t->agents[i].status],
		    t->agents[i].error ? t->agents[i].error : "no answer");
	return buf_release(&out);
}

static void
task_start_synthesis(struct task *t)
{
	const char		*answers[HEAVY_MAX_AGENTS];
	char			*prompt;
	int			 n = 0;

	for (int i = 0; i < t->p.num_agents; i++) {
		if (t->agents[i].status != AGENT_OK)
			continue;
		answers[n++] = t->agents[i].answer;
	}
	prompt = prompt_synthesis(t->cfg, answers, n,
	    t->cfg->max_synthesis_input_bytes, &t->synthesis_truncated);
	t->state = TASK_SYNTHESIS;
	t->synth = task_spawn(t, ROLE_SYNTHESIS, 0, "", prompt, t->deadline_ms,
	    task_synth_done, task_synth_step, t);
	free(prompt);
	if (t->synth == NULL) {
		t->synthesis_error = xstrdup("synthesis input exceeds "
		    "max_frame_bytes");
		t->answer = task_concatenate(t);
		task_finish(t);
		return;
	}
	task_note(t, "synthesizing");
}

static void
task_after_agents(struct task *t)
{
	int	ok = 0, last = -1;

	for (int i = 0; i < t->p.num_agents; i++)
		if (t->agents[i].status == AGENT_OK) {
			ok++;
			last = i;
		}
	if (ok == 0) {
		t->failed = true;
		t->answer = task_all_failed(t);
	} else if (ok == 1) {
		t->answer = xstrdup(t->agents[last].answer);
	} else {
		task_start_synthesis(t);
		return;
	}
	task_finish(t);
}

static struct json_object *
json_string_or_null(const char *s)
{
	return s == NULL ? NULL : json_object_new_string(s);
}

static struct json_object *
task_usage_json(const struct usage *u)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "prompt_tokens",
	    json_object_new_int64((int64_t)u->prompt_tokens));
	json_object_object_add(o, "completion_tokens",
	    json_object_new_int64((int64_t)u->completion_tokens));
	json_object_object_add(o, "total_tokens",
	    json_object_new_int64((int64_t)u->total_tokens));
	json_object_object_add(o, "llm_calls",
	    json_object_new_int64(u->llm_calls));
	json_object_object_add(o, "retries", json_object_new_int64(u->retries));
	return o;
}

static struct json_object *
task_agent_json(const struct agent *a)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "index", json_object_new_int(a->index + 1));
	json_object_object_add(o, "question", json_object_new_string(
	    a->question ? a->question : ""));
	json_object_object_add(o, "status", json_object_new_string(
	    agent_status_names[a->status]));
	json_object_object_add(o, "elapsed_ms",
	    json_object_new_int64(a->elapsed_ms));
	json_object_object_add(o, "error", json_string_or_null(a->error));
	json_object_object_add(o, "signal", a->signal ?
	    json_object_new_string(signal_name(a->signal)) : NULL);
	json_object_object_add(o, "usage", task_usage_json(&a->usage));
	return o;
}

static struct json_object *
task_structured(struct task *t)
{
	struct json_object	*o = json_object_new_object(), *agents;

	json_object_object_add(o, "answer", json_object_new_string(t->answer));
	json_object_object_add(o, "synthesized",
	    json_object_new_boolean(t->synthesized));
	json_object_object_add(o, "planner_fallback",
	    json_object_new_boolean(t->planner_fallback));
	json_object_object_add(o, "planner_reasked",
	    json_object_new_boolean(t->planner_reasked));
	json_object_object_add(o, "planner_error",
	    json_string_or_null(t->planner_error));
	json_object_object_add(o, "synthesis_error",
	    json_string_or_null(t->synthesis_error));
	json_object_object_add(o, "synthesis_truncated",
	    json_object_new_int(t->synthesis_truncated));
	agents = json_object_new_array();
	for (int i = 0; i < t->p.num_agents; i++)
		json_object_array_add(agents, task_agent_json(&t->agents[i]));
	json_object_object_add(o, "agents", agents);
	json_object_object_add(o, "usage", task_usage_json(&t->usage));
	json_object_object_add(o, "elapsed_ms",
	    json_object_new_int64(now_ms() - t->start_ms));
	return o;
}

/* The CallToolResult: the answer as text, the details as structuredContent. */
static struct json_object *
task_result(struct task *t)
{
	struct json_object	*res = json_object_new_object(), *content, *c;

	content = json_object_new_array();
	c = json_object_new_object();
	json_object_object_add(c, "type", json_object_new_string("text"));
	json_object_object_add(c, "text", json_object_new_string(t->answer));
	json_object_array_add(content, c);
	json_object_object_add(res, "content", content);
	json_object_object_add(res, "structuredContent", task_structured(t));
	json_object_object_add(res, "isError",
	    json_object_new_boolean(t->failed));
	return res;
}

static void
task_free(struct task *t)
{
	worker_cancel(t->planner);
	worker_cancel(t->synth);
	for (int i = 0; i < t->p.num_agents; i++) {
		worker_cancel(t->agents[i].worker);
		free(t->agents[i].question);
		free(t->agents[i].answer);
		free(t->agents[i].error);
	}
	if (t->heartbeat != NULL)
		event_free(t->heartbeat);
	free(t->planner_error);
	free(t->synthesis_error);
	free(t->answer);
	free(t->workspace);
	task_params_clear(&t->p);
	config_free(t->cfg);
	free(t);
}

static void
task_finish(struct task *t)
{
	struct json_object	*result;

	t->state = TASK_DONE;
	event_del(t->heartbeat);
	t->step = t->p.num_agents + 1;
	task_step(t, t->failed ? "failed" : "done");
	result = task_result(t);
	t->done(t->arg, result);
	task_free(t);
}

/* 128 random bits, in hex: unguessable, so an id is no way into a task. */
static void
task_new_id(char id[33])
{
	uint8_t	raw[16];

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		fatal("getrandom");
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
}

/* Starts the planner; takes the params.  NULL if the query cannot fit. */
struct task *
task_start(const struct heavy_config *cfg, struct task_params *p,
    task_progress_fn progress, task_done_fn done, void *arg)
{
	struct task	*t = xcalloc(1, sizeof *t);
	struct timeval	 beat = { cfg->heartbeat_s, 0 };
	int64_t		 total, planner_ms;
	char		*prompt;

	task_new_id(t->id);
	t->workspace = xstrdup("");
	t->cfg = config_dup(cfg);
	t->p = *p;
	memset(p, 0, sizeof *p);
	t->progress = progress;
	t->done = done;
	t->arg = arg;
	t->start_ms = now_ms();
	total = (int64_t)(t->p.timeout_s * 1000);
	t->deadline_ms = t->start_ms + total;
	for (int i = 0; i < t->p.num_agents; i++) {
		t->agents[i].task = t;
		t->agents[i].index = i;
	}
	t->heartbeat = event_new(ev_base, -1, EV_PERSIST, task_heartbeat_cb, t);
	event_add(t->heartbeat, &beat);
	planner_ms = (int64_t)t->cfg->planner_timeout_s * 1000;
	if (planner_ms > total / 4)
		planner_ms = total / 4;
	prompt = prompt_planner(t->cfg, t->p.query, t->p.num_agents);
	t->planner = task_spawn(t, ROLE_PLANNER, 0, "", prompt,
	    t->start_ms + planner_ms, task_planner_done, task_planner_step, t);
	free(prompt);
	if (t->planner == NULL) {	/* the query does not fit in a frame */
		task_free(t);
		return NULL;
	}
	return t;
}

const char *
task_id(const struct task *t)
{
	return t->id;
}

/* Kills every worker of the task at once and forgets it: no response. */
void
task_cancel(struct task *t)
{
	task_free(t);
}

void
task_params_clear(struct task_params *p)
{
	free(p->query);
	free(p->model);
	free(p->strategy);
	memset(p, 0, sizeof *p);
}

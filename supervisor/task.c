/*
 * One orchestration: a planner worker writes N questions, N agent workers
 * answer them in parallel, a synthesis worker merges the answers.  Every
 * step has a deadline inside the task's; a step that misses it is killed
 * and the task goes on with what it has.  A task owns its own copy of the
 * configuration, so nothing is shared or mutated across tasks.
 */
#include <sys/random.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"
#include "metrics.h"

enum task_state { TASK_PLANNING, TASK_AGENTS, TASK_SYNTHESIS, TASK_DONE,
    TASK_REVIEW };
enum agent_status {
	AGENT_PENDING, AGENT_RUNNING, AGENT_OK, AGENT_FAILED, AGENT_TIMED_OUT,
	AGENT_KILLED, AGENT_CUT,
};
static const char *agent_status_names[] = {
	"pending", "running", "ok", "failed", "timed_out", "killed",
	"cut_for_latency",
};

/* Which of a step's models answered, and why it fell back to each. */
struct route {
	bool			 answered;
	uint32_t		 at;		/* 0 its own model, n fallback n */
	uint32_t		 why[HEAVY_MAX_FALLBACKS + 1]; /* enum job_fallback:
						   why it moved to model n */
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
	struct route		 route;
	struct worker		*worker;
	int64_t			 last_note_ms;
	char			*note;		/* its last worker note */
};

/* One peer review: the model of agent `reviewer` ranks the answers shown. */
struct review {
	struct task		*task;
	int			 reviewer;	/* an agent index */
	int			 shown[HEAVY_MAX_AGENTS];	/* label -> agent */
	int			 nshown;
	struct worker		*worker;
	bool			 ok;
	struct ranking_review	 ranking;	/* when ok */
	char			*error;		/* when not */
	const char		*status;	/* when not */
	int64_t			 last_note_ms;
};

struct task {
	char			 id[33];
	char			*workspace;	/* its directory; "" if none */
	struct heavy_config	*cfg;
	struct task_params	 p;
	enum task_state		 state;
	int64_t			 start_ms, deadline_ms, last_note_ms;
	struct worker		*planner, *synth;
	struct agent		 agents[HEAVY_MAX_AGENTS];
	int			 running;
	bool			 planner_fallback, planner_reasked;
	char			*planner_error;
	struct route		 planner_route, synth_route;
	bool			 synthesized, failed;
	char			*synthesis_error;
	int			 synthesis_truncated;
	char			*answer;
	struct usage		 usage;		/* every LLM call's, as reported */
	char			*budget_stop;	/* why the budget stopped it */
	int			 step, substep;
	struct event		*heartbeat;
	struct event		*fail_ev;	/* a task that cannot start */
	struct event		*grace_ev;	/* the quorum's straggler grace */
	int64_t			 agents_start_ms;
	int			 ncut;		/* agents cut for latency */
	task_progress_fn	 progress;
	task_done_fn		 done;
	void			*arg;
	task_usage_fn		 usage_fn;	/* hears the usage as it grows */
	void			*usage_arg;

	/* The post-agent stage: peer review, when the strategy asks for it. */
	char			*strategy_fallback;	/* why it was not applied */
	struct review		 reviews[HEAVY_MAX_AGENTS];
	int			 nreviews, reviews_running, reviews_in;
	bool			 ranked;
	struct ranking_tally	 tally[HEAVY_MAX_AGENTS];

	struct drafts		*drafts;	/* incremental's; else NULL */

	struct resumption	*resumed;	/* task_resume's; else NULL */
	struct event		*resume_ev;	/* its agents start */
};

/* A task resumed after its runner died: from where, why, what ran again. */
struct resumption {
	char			*from;
	char			*why;
	bool			 planner;	/* the planner ran again */
	bool			 rerun[HEAVY_MAX_AGENTS];
};

/* The keys the jobs carry: heavyd's own, handed down once at startup;
 * without an API key, why (and how to give one). */
static const char	*task_api_key, *task_search_key, *task_why_no_key;

static void	task_after_agents(struct task *);
static void	task_finish(struct task *);
static void	task_usage(void *, const struct usage *,
	    const struct job_call *);
static void	task_agent_usage(void *, const struct usage *,
	    const struct job_call *);
static void	task_planner_usage(void *, const struct usage *,
	    const struct job_call *);
static void	task_synth_usage(void *, const struct usage *,
	    const struct job_call *);
static void	task_check_quorum(struct task *);
static void	task_draft_usage(void *, const struct usage *,
	    const struct job_call *);
static int64_t	task_agents_deadline(struct task *);
static void	task_resumption_free(struct task *);
static void	task_resumed_fill(const struct task *, struct task_result *);
static int	task_ok_agents(struct task *, int *);

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
	else if (t->state == TASK_REVIEW)
		snprintf(msg, sizeof msg, "working: reviewing, %d of %d "
		    "rankings in (%llds)", t->reviews_in, t->nreviews,
		    (long long)secs);
	else
		snprintf(msg, sizeof msg, "working: synthesizing (%llds)",
		    (long long)secs);
	task_note(t, msg);
}

/* The model of a role: the call's model, else the role's, else the main
 * one.  Agents take agent_models round-robin; a reviewer is an agent. */
static const char *
task_model(const struct task *t, enum job_role role, int index)
{
	const struct heavy_config	*c = t->cfg;

	if (t->p.model != NULL)
		return t->p.model;
	if (role == ROLE_PLANNER)
		return c->planner_model ? c->planner_model : c->model;
	if (role == ROLE_SYNTHESIS)
		return c->synthesis_model ? c->synthesis_model : c->model;
	if (c->nagent_models > 0)
		return c->agent_models[index % c->nagent_models];
	return c->model;
}

/* The fallback models of a role, borrowed into fb: the call's list, else
 * the role's, else the agents' (orchestrator.fallback_models). */
static int
task_fallbacks(const struct task *t, enum job_role role, const char **fb)
{
	const struct heavy_config	*c = t->cfg;
	char				**v = c->fallback_models;
	int				 n = c->nfallback_models;

	if (t->p.nfallbacks > 0) {
		v = t->p.fallbacks;
		n = t->p.nfallbacks;
	} else if (role == ROLE_PLANNER && c->nplanner_fallbacks > 0) {
		v = c->planner_fallbacks;
		n = c->nplanner_fallbacks;
	} else if (role == ROLE_SYNTHESIS && c->nsynthesis_fallbacks > 0) {
		v = c->synthesis_fallbacks;
		n = c->nsynthesis_fallbacks;
	}
	if (n > HEAVY_MAX_FALLBACKS)
		n = HEAVY_MAX_FALLBACKS;
	for (int i = 0; i < n; i++)
		fb[i] = v[i];
	return n;
}

static int
task_strategy(const struct task *t)
{
	int	s = config_strategy(t->p.strategy ? t->p.strategy :
	    t->cfg->aggregation_strategy);

	return s == -1 ? AGG_CONSENSUS : s;
}

/* The agent tools the job offers, and their settings (borrowed). */
static void
task_job_tools(struct task *t, struct job *job)
{
	const char	*b = t->cfg->search_backend;

	job->features = t->workspace[0] != '\0' ? TOOL_NEEDS_WORKSPACE : 0;
	job->search_backend = b == NULL ? SEARCH_BACKEND_NONE :
	    strcmp(b, "brave") == 0 ? SEARCH_BACKEND_BRAVE :
	    SEARCH_BACKEND_SEARXNG;
	if (job->search_backend != SEARCH_BACKEND_NONE)
		job->features |= TOOL_NEEDS_SEARCH;
	job->search_max_results = (uint32_t)t->cfg->search_max_results;
	job->search_allow_private = (uint32_t)t->cfg->search_allow_private;
	job->search_timeout_ms = (uint32_t)t->cfg->search_timeout_s * 1000;
	job->max_read_bytes = t->cfg->max_read_bytes;
	job->max_write_bytes = t->cfg->max_write_bytes;
	job->max_page_bytes = t->cfg->max_page_bytes;
	job->max_extract_bytes = t->cfg->max_extract_bytes;
	job->search_url = t->cfg->search_url;
	job->search_api_key = (char *)task_search_key;
	job->search_user_agent = t->cfg->search_user_agent;
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
	char			label[64];

	features_sandbox(&sb);
	sb.workspace = t->workspace;
	job.role = role;
	job.index = (uint32_t)index;
	job.num_questions = role == ROLE_REVIEW ?
	    (uint32_t)((struct review *)arg)->nshown : (uint32_t)t->p.num_agents;
	job.max_iterations = (uint32_t)t->cfg->max_iterations;
	job.budget_ms = left > 0 ? (uint32_t)left : 0;
	job.max_retries = (uint32_t)t->cfg->max_retries;
	job.stall_s = (uint32_t)t->cfg->stall_timeout_s;
	job.hedge_ms = (uint32_t)t->p.hedge_after_ms;
	job.retry_base_ms = (uint32_t)t->cfg->retry_base_ms;
	job.retry_max_ms = (uint32_t)t->cfg->retry_max_ms;
	job.max_response_bytes = t->cfg->max_response_bytes;
	job.max_transcript_bytes = t->cfg->max_transcript_bytes;
	job.max_tool_output_bytes = t->cfg->max_tool_output_bytes;
	job.max_answer_bytes = t->cfg->max_answer_bytes;
	job.api_key = (char *)task_api_key;
	job.base_url = t->cfg->base_url;
	job.model = (char *)task_model(t, role, index);
	job.nfallbacks = (uint32_t)task_fallbacks(t, role,
	    (const char **)job.fallbacks);
	job.system_prompt = system;
	job.prompt = prompt;
	if (t->cfg->ask_cost == 1 || t->p.max_cost_usd > 0 || t->p.ask_cost ||
	    (t->cfg->ask_cost == 2 &&
	    strstr(t->cfg->base_url, "://openrouter.ai/") != NULL))
		job.flags |= JOB_ASK_COST;
	task_job_tools(t, &job);
	/* What its stderr lines are prefixed with, in heavyd's log. */
	snprintf(label, sizeof label, "task %.8s %s %d", t->id,
	    role == ROLE_PLANNER ? "planner" : role == ROLE_SYNTHESIS ?
	    (arg == t ? "synthesis" : "draft") : role == ROLE_REVIEW ?
	    "review" : "agent", index + 1);
	req.label = label;
	req.task_id = t->id;
	req.owner = t->p.owner;
	req.sandbox = &sb;
	req.job = &job;
	req.deadline_ms = deadline;
	req.done = done;
	req.step = step;
	/* Usage arrives after every LLM call, so budgets bind mid-step. */
	req.usage = role == ROLE_AGENT ? task_agent_usage :
	    role == ROLE_PLANNER ? task_planner_usage :
	    role == ROLE_SYNTHESIS && arg == t ? task_synth_usage :
	    role == ROLE_SYNTHESIS ? task_draft_usage : task_usage;
	req.usage_arg = role == ROLE_AGENT ? arg : t;
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
 * second from each worker, so one agent cannot flood the client.  A retry
 * is logged as well: it is how an operator sees a failing endpoint. */
static void
task_worker_note(struct task *t, int64_t *last, const char *who,
    const char *note)
{
	char	msg[600];
	int64_t	now = now_ms();

	if (strncmp(note, JOB_RETRY_NOTE, strlen(JOB_RETRY_NOTE)) == 0)
		log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = t->id },
		    "task %s: %s: %s", t->id, who, note);
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

	free(a->note);
	a->note = xstrdup(note);	/* kept even when not shown as progress */
	snprintf(who, sizeof who, "agent %d", a->index + 1);
	task_worker_note(a->task, &a->last_note_ms, who, note);
}

/*
 * incremental: a draft synthesis of the answers in so far, a worker of
 * its own whose end and usage go to the drafts; it must end before the
 * agents' deadline, as the agents must.
 */
static struct worker *
task_draft_spawn(void *arg, struct drafts *d, int nth, int *covered)
{
	struct task	*t = arg;
	const char	*answers[HEAVY_MAX_AGENTS];
	int		 ok[HEAVY_MAX_AGENTS], n, dropped;
	struct worker	*w;
	char		*prompt;

	n = task_ok_agents(t, ok);
	for (int i = 0; i < n; i++)
		answers[i] = t->agents[ok[i]].answer;
	prompt = prompt_draft(t->cfg, answers, n, t->p.num_agents,
	    t->cfg->max_synthesis_input_bytes, &dropped);
	w = task_spawn(t, ROLE_SYNTHESIS, nth - 1, "", prompt,
	    task_agents_deadline(t), drafts_done, NULL, d);
	free(prompt);
	*covered = n;
	return w;
}

static void
task_draft_note(void *arg, const char *msg)
{
	task_note(arg, msg);
}

/* A draft's LLM call: counted in the task's usage, and apart. */
static void
task_draft_usage(void *arg, const struct usage *delta,
    const struct job_call *call)
{
	struct task	*t = arg;

	drafts_usage(t->drafts, delta);
	task_usage(t, delta, call);
}

/* An answer came in and agents still run: maybe a draft now. */
static void
task_draft_answer(struct task *t)
{
	int	ok = 0;

	if (t->state != TASK_AGENTS)
		return;
	for (int i = 0; i < t->p.num_agents; i++)
		ok += t->agents[i].status == AGENT_OK;
	drafts_answer(t->drafts, ok);
}

static void
task_agent_done(void *arg, struct worker_result *r)
{
	struct agent	*a = arg;
	struct task	*t = a->task;
	char		 msg[640];

	a->worker = NULL;
	a->elapsed_ms = r->elapsed_ms;
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
	if (t->running == 0) {
		task_after_agents(t);
		return;
	}
	if (a->status == AGENT_OK && t->drafts != NULL)
		task_draft_answer(t);
	if (a->status == AGENT_OK)
		task_check_quorum(t);
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

/*
 * The quorum is in: every agent still running is a straggler.  Its worker
 * is killed through the worker table (SIGKILL to its process group, as at
 * a deadline) and the answers in go on to the synthesis.
 */
static void
task_cut_stragglers(struct task *t)
{
	struct agent	*a;
	char		 msg[160];
	int		 ok = t->p.num_agents - t->running;

	for (int i = 0; i < t->p.num_agents; i++) {
		a = &t->agents[i];
		if (a->worker == NULL)
			continue;
		worker_cut(a->worker);
		a->worker = NULL;
		a->status = AGENT_CUT;
		a->signal = SIGKILL;
		a->elapsed_ms = now_ms() - t->agents_start_ms;
		a->error = xasprintf("cut for latency: %d of %d agents had "
		    "finished (min_agents %d) and the straggler grace of %g s "
		    "had passed; killed with SIGKILL", ok, t->p.num_agents,
		    t->p.min_agents, t->p.straggler_grace_s);
		t->running--;
		t->ncut++;
	}
	snprintf(msg, sizeof msg, "quorum: %d agent%s cut for latency",
	    t->ncut, t->ncut == 1 ? "" : "s");
	task_note(t, msg);
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = t->id },
	    "task %s: %s", t->id, msg);
	task_after_agents(t);
}

static void
task_grace_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	task_cut_stragglers(arg);
}

/* After each answer: min_agents answers in starts the straggler grace
 * (once); a straggler that answers within it is kept. */
static void
task_check_quorum(struct task *t)
{
	int64_t		grace_us = (int64_t)(t->p.straggler_grace_s * 1e6);
	struct timeval	tv = { grace_us / 1000000, grace_us % 1000000 };
	char		msg[160];
	int		ok = 0;

	if (t->p.min_agents == 0 || t->state != TASK_AGENTS ||
	    t->grace_ev != NULL)
		return;
	for (int i = 0; i < t->p.num_agents; i++)
		ok += t->agents[i].status == AGENT_OK;
	if (ok < t->p.min_agents)
		return;
	if (grace_us <= 0) {
		task_cut_stragglers(t);
		return;
	}
	snprintf(msg, sizeof msg, "quorum: %d of %d answers in; the "
	    "stragglers have %g s", ok, t->p.num_agents,
	    t->p.straggler_grace_s);
	task_note(t, msg);
	t->grace_ev = evtimer_new(ev_base, task_grace_cb, t);
	evtimer_add(t->grace_ev, &tv);
}

static void
task_start_agents(struct task *t)
{
	int64_t		 deadline = task_agents_deadline(t);
	struct agent	*a;

	t->state = TASK_AGENTS;
	t->agents_start_ms = now_ms();
	for (int i = 0; i < t->p.num_agents; i++) {
		a = &t->agents[i];
		if (a->status != AGENT_PENDING)	/* kept from before a resume */
			continue;
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

/*
 * A key, credit or model error, or an endpoint that cannot be reached
 * (after the planner's own retries): every other call would fail the same
 * way, so agents would only repeat the failure, retries and all.
 */
static bool
task_fatal_cause(const struct worker_result *r)
{
	if (r->outcome != OUTCOME_FAILED)
		return false;
	if (r->error_kind == JOB_ERR_CONNECT)
		return true;
	return r->error_kind == JOB_ERR_HTTP && (r->http_status == 401 ||
	    r->http_status == 402 || r->http_status == 403 ||
	    r->http_status == 404);
}

static char *
task_fatal_answer(const struct worker_result *r)
{
	if (r->error_kind == JOB_ERR_CONNECT)
		return xasprintf("The orchestration stopped: %s. No agent was "
		    "started, as each would fail the same way; check base_url "
		    "(HEAVY_BASE_URL) and the network.", r->error);
	return xasprintf("The orchestration stopped: the planner's LLM call "
	    "failed with %s; every other call would fail the same way.",
	    r->error);
}

/* The planner's step ended the task: no agent starts. */
static void
task_stop_early(struct task *t, const char *cause, char *answer)
{
	for (int i = 0; i < t->p.num_agents; i++) {
		t->agents[i].status = AGENT_FAILED;
		t->agents[i].error = xasprintf("not started: %s", cause);
	}
	t->failed = true;
	t->planner_error = xstrdup(cause);
	t->answer = answer;
	task_finish(t);
}

static void
task_planner_done(void *arg, struct worker_result *r)
{
	struct task	*t = arg;
	int		 n = t->p.num_agents;

	t->planner = NULL;
	if (task_fatal_cause(r)) {
		log_with(LOG_LVL_WARN, &(struct log_fields){ .task_id = t->id },
		    "task %s stopped: the planner failed: %s", t->id, r->error);
		task_stop_early(t, r->error, task_fatal_answer(r));
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

/* The successful agents, best-ranked first once peer review ranked them;
 * ties and unranked ones keep the agents' order. */
static int
task_ok_agents(struct task *t, int *out)
{
	int	n = 0, j, ri, rj;

	for (int i = 0; i < t->p.num_agents; i++) {
		if (t->agents[i].status != AGENT_OK)
			continue;
		ri = t->ranked && t->tally[i].rank ? t->tally[i].rank : INT_MAX;
		for (j = n; j > 0; j--) {
			rj = t->ranked && t->tally[out[j - 1]].rank ?
			    t->tally[out[j - 1]].rank : INT_MAX;
			if (rj <= ri)
				break;
			out[j] = out[j - 1];
		}
		out[j] = i;
		n++;
	}
	return n;
}

static void
task_start_synthesis(struct task *t)
{
	const char		*answers[HEAVY_MAX_AGENTS], *draft;
	int			 ok[HEAVY_MAX_AGENTS], ranks[HEAVY_MAX_AGENTS];
	char			*prompt;
	int			 n, covered;

	n = task_ok_agents(t, ok);
	for (int i = 0; i < n; i++) {
		answers[i] = t->agents[ok[i]].answer;
		ranks[i] = t->tally[ok[i]].rank;
	}
	if (t->drafts != NULL && (draft = drafts_take(t->drafts,
	    &covered)) != NULL)
		prompt = prompt_synthesis_draft(t->cfg, answers, n,
		    t->cfg->max_synthesis_input_bytes, &t->synthesis_truncated,
		    draft, covered);
	else
		prompt = prompt_synthesis_ranked(t->cfg, answers, t->ranked ?
		    ranks : NULL, n, t->cfg->max_synthesis_input_bytes,
		    &t->synthesis_truncated);
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

/*
 * After the reviews: aggregate the valid rankings.  ranked synthesizes
 * with the ranking, best returns the top answer as it is; with no valid
 * ranking at all, ranked synthesizes plainly and best concatenates.
 */
static void
task_after_reviews(struct task *t)
{
	struct ranking_review	 valid[HEAVY_MAX_AGENTS];
	int			 n = 0, strategy = task_strategy(t);

	for (int i = 0; i < t->nreviews; i++)
		if (t->reviews[i].ok)
			valid[n++] = t->reviews[i].ranking;
	if (n > 0) {
		ranking_tally(valid, n, t->p.num_agents, t->tally);
		t->ranked = true;
	} else
		t->strategy_fallback = xstrdup(strategy == AGG_RANKED ?
		    "every review failed: plain consensus synthesis" :
		    "every review failed: the answers are concatenated");
	if (strategy == AGG_RANKED) {
		task_start_synthesis(t);
		return;
	}
	for (int i = 0; n > 0 && i < t->p.num_agents; i++)
		if (t->tally[i].rank == 1)
			t->answer = xstrdup(t->agents[i].answer);
	if (t->answer == NULL)
		t->answer = task_concatenate(t);
	task_finish(t);
}

static void
task_review_step(void *arg, const char *note)
{
	struct review	*rv = arg;
	char		 who[32];

	snprintf(who, sizeof who, "reviewer %d", rv->reviewer + 1);
	task_worker_note(rv->task, &rv->last_note_ms, who, note);
}

static void
task_review_done(void *arg, struct worker_result *r)
{
	struct review	*rv = arg;
	struct task	*t = rv->task;
	int		 labels[HEAVY_MAX_AGENTS];
	char		 msg[640];

	rv->worker = NULL;
	t->reviews_running--;
	if (r->outcome == OUTCOME_OK && ranking_labels(r->texts, r->ntexts,
	    rv->nshown, labels) == 0) {
		rv->ok = true;
		rv->ranking.n = rv->nshown;
		for (int k = 0; k < rv->nshown; k++)
			rv->ranking.order[k] = rv->shown[labels[k]];
		t->reviews_in++;
		snprintf(msg, sizeof msg, "reviewing: %d of %d rankings in",
		    t->reviews_in, t->nreviews);
	} else {
		rv->error = task_describe(r);
		rv->status = r->outcome == OUTCOME_TIMEOUT ||
		    r->error_kind == JOB_ERR_TIMEOUT ? "timed_out" :
		    r->outcome == OUTCOME_KILLED ? "killed" :
		    r->outcome == OUTCOME_OK || r->error_kind == JOB_ERR_PARSE ?
		    "invalid" : "failed";
		snprintf(msg, sizeof msg, "reviewing: reviewer %d failed "
		    "(%.400s); %d of %d rankings in", rv->reviewer + 1,
		    rv->error, t->reviews_in, t->nreviews);
	}
	task_note(t, msg);
	if (t->reviews_running == 0)
		task_after_reviews(t);
}

#define TASK_BEST_MARGIN_MS	250	/* best keeps this to answer in */

/* The reviews' share of the time the agents left: half for ranked (the
 * synthesis gets the rest), all but a margin for best. */
static int64_t
task_reviews_deadline(struct task *t)
{
	int64_t	now = now_ms(), left = t->deadline_ms - now, margin;

	if (left <= 0)
		return t->deadline_ms;
	if (task_strategy(t) == AGG_RANKED)
		return now + left / 2;
	margin = left / 10 < TASK_BEST_MARGIN_MS ? left / 10 :
	    TASK_BEST_MARGIN_MS;
	return t->deadline_ms - margin;
}

/* A reviewer sees the answers in its own random order, labelled A, B, ... */
static void
task_spawn_review(struct task *t, struct review *rv, int64_t deadline)
{
	const char	*answers[HEAVY_MAX_AGENTS];
	char		*prompt;

	ranking_shuffle(rv->shown, rv->nshown);
	for (int k = 0; k < rv->nshown; k++)
		answers[k] = t->agents[rv->shown[k]].answer;
	prompt = prompt_review(t->p.query, answers, rv->nshown,
	    t->cfg->max_synthesis_input_bytes);
	rv->worker = task_spawn(t, ROLE_REVIEW, rv->reviewer, "", prompt,
	    deadline, task_review_done, task_review_step, rv);
	free(prompt);
	if (rv->worker == NULL) {
		rv->error = xstrdup("review input exceeds max_frame_bytes");
		rv->status = "failed";
	}
	else
		t->reviews_running++;
}

/*
 * Each successful agent's model reviews the other successful answers.
 * With exactly two answers a reviewer would see one, which ranks nothing,
 * so then each of the two reviewers ranks both.
 */
static void
task_start_reviews(struct task *t)
{
	int64_t		 deadline = task_reviews_deadline(t);
	int		 ok[HEAVY_MAX_AGENTS], n;
	struct review	*rv;
	char		 msg[64];

	n = task_ok_agents(t, ok);
	t->state = TASK_REVIEW;
	for (int i = 0; i < n; i++) {
		rv = &t->reviews[t->nreviews++];
		rv->task = t;
		rv->reviewer = ok[i];
		for (int j = 0; j < n; j++)
			if (n == 2 || j != i)
				rv->shown[rv->nshown++] = ok[j];
		task_spawn_review(t, rv, deadline);
	}
	snprintf(msg, sizeof msg, "reviewing: 0 of %d rankings in",
	    t->nreviews);
	task_note(t, msg);
	if (t->reviews_running == 0)
		task_after_reviews(t);
}

static void
task_after_agents(struct task *t)
{
	int	ok = 0, last = -1;

	if (t->grace_ev != NULL)
		event_del(t->grace_ev);	/* every agent is in, or stopped */
	if (t->drafts != NULL)
		drafts_stop(t->drafts);

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
		if (task_strategy(t) != AGG_CONSENSUS &&
		    task_strategy(t) != AGG_INCREMENTAL)
			t->strategy_fallback = xstrdup("one successful answer: "
			    "nothing to rank");
	} else if (t->budget_stop != NULL) {
		t->answer = task_concatenate(t);
	} else if (task_strategy(t) == AGG_CONSENSUS ||
	    task_strategy(t) == AGG_INCREMENTAL) {
		task_start_synthesis(t);
		return;
	} else {
		task_start_reviews(t);
		return;
	}
	task_finish(t);
}

/* The first budget the task's usage has reached, as a reason, or NULL;
 * *which is "tokens" or "cost". */
static char *
task_budget_reached(const struct task *t, const char **which)
{
	const struct usage	*u = &t->usage;

	*which = "tokens";
	if (t->p.max_total_tokens > 0 &&
	    u->total_tokens >= t->p.max_total_tokens)
		return xasprintf("token budget reached: %llu tokens used of "
		    "max_total_tokens %llu", (unsigned long long)u->total_tokens,
		    (unsigned long long)t->p.max_total_tokens);
	*which = "cost";
	if (t->p.max_cost_usd > 0 &&
	    (double)u->cost_micro_usd >= t->p.max_cost_usd * 1e6)
		return xasprintf("cost budget reached: $%.6f spent of "
		    "max_cost_usd $%.6f", u->cost_micro_usd / 1e6,
		    t->p.max_cost_usd);
	return NULL;
}

/* Every running agent stops; it keeps the usage it reported. */
static void
task_stop_agents(struct task *t)
{
	struct agent	*a;

	for (int i = 0; i < t->p.num_agents; i++) {
		a = &t->agents[i];
		if (a->worker == NULL)
			continue;
		worker_cancel(a->worker);
		a->worker = NULL;
		a->status = AGENT_FAILED;
		a->error = xasprintf("stopped: %s", t->budget_stop);
		t->running--;
	}
}

static void
task_stop_reviews(struct task *t)
{
	struct review	*rv;

	for (int i = 0; i < t->nreviews; i++) {
		rv = &t->reviews[i];
		if (rv->worker == NULL)
			continue;
		worker_cancel(rv->worker);
		rv->worker = NULL;
		rv->status = "failed";
		rv->error = xasprintf("stopped: %s", t->budget_stop);
		t->reviews_running--;
	}
}

/*
 * A budget is reached: its workers are killed and no further LLM call
 * starts.  The task ends with the answers it has, side by side.
 */
static void
task_over_budget(struct task *t)
{
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = t->id },
	    "task %s: %s; stopping it", t->id, t->budget_stop);
	switch (t->state) {
	case TASK_PLANNING:
		worker_cancel(t->planner);
		t->planner = NULL;
		task_stop_early(t, t->budget_stop, xasprintf("The "
		    "orchestration stopped: %s.", t->budget_stop));
		return;
	case TASK_AGENTS:
		task_stop_agents(t);
		task_after_agents(t);
		return;
	case TASK_REVIEW:
		task_stop_reviews(t);
		break;
	case TASK_SYNTHESIS:
		worker_cancel(t->synth);
		t->synth = NULL;
		t->synthesis_error = xasprintf("stopped: %s", t->budget_stop);
		break;
	case TASK_DONE:
		return;
	}
	t->answer = task_concatenate(t);
	task_finish(t);
}

/* Reported after every LLM call of the task's workers. */
static void
task_usage(void *arg, const struct usage *delta, const struct job_call *call)
{
	struct task	*t = arg;
	const char	*which;

	(void)call;
	usage_add(&t->usage, delta);
	if (t->usage_fn != NULL && t->state != TASK_DONE)
		t->usage_fn(t->usage_arg, &t->usage);
	if (t->budget_stop == NULL && t->state != TASK_DONE &&
	    (t->budget_stop = task_budget_reached(t, &which)) != NULL) {
		metrics_budget_stop(which);
		task_over_budget(t);
	}
}

/* fn hears the task's usage after every LLM call; it must not stop the
 * task from inside (task_budget_stop, on a later turn, does). */
void
task_on_usage(struct task *t, task_usage_fn fn, void *arg)
{
	t->usage_fn = fn;
	t->usage_arg = arg;
}

/*
 * A budget kept outside the task (an identity's daily quota) is reached:
 * the task stops as at its own max_cost_usd, why in its result.
 */
void
task_budget_stop(struct task *t, const char *why)
{
	if (t->budget_stop != NULL || t->state == TASK_DONE)
		return;
	t->budget_stop = xstrdup(why);
	metrics_budget_stop("quota");
	task_over_budget(t);
}

/* A step's LLM request: the model it went to, and why if it fell back. */
static void
task_route_note(struct route *rt, const struct job_call *call)
{
	if (call->model > HEAVY_MAX_FALLBACKS)
		return;		/* job_call_decode refuses it */
	if (call->fallback != JOB_FB_NONE)
		rt->why[call->model] = call->fallback;
	if (call->error_kind == 0) {
		rt->answered = true;
		rt->at = call->model;
	}
}

/* An agent's LLM request: its usage, and which model it went to and why. */
static void
task_agent_usage(void *arg, const struct usage *delta,
    const struct job_call *call)
{
	struct agent	*a = arg;

	task_route_note(&a->route, call);
	usage_add(&a->usage, delta);
	task_usage(a->task, delta, call);
}

static void
task_planner_usage(void *arg, const struct usage *delta,
    const struct job_call *call)
{
	struct task	*t = arg;

	task_route_note(&t->planner_route, call);
	task_usage(t, delta, call);
}

static void
task_synth_usage(void *arg, const struct usage *delta,
    const struct job_call *call)
{
	struct task	*t = arg;

	task_route_note(&t->synth_route, call);
	task_usage(t, delta, call);
}

static char *
task_dup(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

/*
 * The model that answered a step (its own until one answered; NULL for a
 * planner or synthesis that never did) and each fallback it took.
 */
static void
task_route_fill(const struct task *t, const struct route *rt,
    enum job_role role, int index, struct tr_route *out)
{
	struct tr_fallback	*f;
	const char		*fb[HEAVY_MAX_FALLBACKS];
	const char		*own = task_model(t, role, index);
	int			 n = task_fallbacks(t, role, fb);

	for (int i = 1; i <= n; i++) {
		if (rt->why[i] == JOB_FB_NONE)
			continue;
		f = &out->fallbacks[out->nfallbacks++];
		f->from = xstrdup(i == 1 ? own : fb[i - 2]);
		f->to = xstrdup(fb[i - 1]);
		f->reason = xstrdup(job_fallback_name(rt->why[i]));
	}
	if (rt->answered || role == ROLE_AGENT)
		out->model = xstrdup(rt->at == 0 || (int)rt->at > n ? own :
		    fb[rt->at - 1]);
}

static void
task_agent_fill(const struct agent *a, struct tr_agent *out)
{
	const struct task	*t = a->task;

	out->index = a->index + 1;
	out->question = task_dup(a->question);
	out->status = xstrdup(agent_status_names[a->status]);
	out->elapsed_ms = a->elapsed_ms;
	out->error = task_dup(a->error);
	out->signal = a->signal ? xstrdup(signal_name(a->signal)) : NULL;
	out->usage = a->usage;
	task_route_fill(t, &a->route, ROLE_AGENT, a->index, &out->route);
	out->rank = t->ranked ? t->tally[a->index].rank : 0;
}

/* The aggregate ranking, best first, and the reviews that gave none. */
static void
task_ranking_fill(struct task *t, struct task_result *r)
{
	struct tr_rank		*k;
	struct tr_review_error	*e;
	struct review		*rv;
	int			 ok[HEAVY_MAX_AGENTS], n, a;

	r->ranked = t->ranked;
	n = t->ranked ? task_ok_agents(t, ok) : 0;
	for (int i = 0; i < n; i++) {
		if (t->tally[a = ok[i]].rank == 0)
			continue;
		k = &r->ranking[r->nranking++];
		k->agent = a + 1;
		k->rank = t->tally[a].rank;
		/* Four decimals are plenty; the score is never negative. */
		k->score = (double)(int64_t)(t->tally[a].score * 10000 + 0.5) /
		    10000;
		k->reviews = t->tally[a].reviews;
	}
	for (int i = 0; i < t->nreviews; i++) {
		if ((rv = &t->reviews[i])->ok)
			continue;
		e = &r->review_errors[r->nreview_errors++];
		e->reviewer = rv->reviewer + 1;
		e->model = xstrdup(task_model(t, ROLE_REVIEW, rv->reviewer));
		e->status = xstrdup(rv->status ? rv->status : "failed");
		e->error = xstrdup(rv->error ? rv->error : "no ranking");
	}
}

/* What the task amounts to: the answer and every detail of how it came. */
static struct task_result *
task_result(struct task *t)
{
	struct task_result	*r = taskresult_new(TR_ORCHESTRATION);

	r->answer = xstrdup(t->answer);
	r->failed = t->failed;
	r->synthesized = t->synthesized;
	r->planner_fallback = t->planner_fallback;
	r->planner_reasked = t->planner_reasked;
	r->planner_error = task_dup(t->planner_error);
	r->synthesis_error = task_dup(t->synthesis_error);
	r->synthesis_truncated = t->synthesis_truncated;
	task_route_fill(t, &t->planner_route, ROLE_PLANNER, 0, &r->planner);
	task_route_fill(t, &t->synth_route, ROLE_SYNTHESIS, 0, &r->synthesis);
	for (int i = 0; i < t->p.num_agents; i++)
		task_agent_fill(&t->agents[i], &r->agents[i]);
	r->nagents = t->p.num_agents;
	r->usage = t->usage;
	r->elapsed_ms = now_ms() - t->start_ms;
	r->strategy = xstrdup(config_strategy_name(task_strategy(t)));
	r->strategy_fallback = task_dup(t->strategy_fallback);
	task_ranking_fill(t, r);
	r->max_total_tokens = t->p.max_total_tokens;
	r->max_cost_usd = t->p.max_cost_usd;
	r->budget_stop = task_dup(t->budget_stop);
	r->min_agents = t->p.min_agents;
	r->straggler_grace_s = t->p.straggler_grace_s;
	task_resumed_fill(t, r);
	if ((r->has_drafts = t->drafts != NULL))
		drafts_result(t->drafts, r->elapsed_ms, &r->drafts);
	r->workspace = xstrdup(t->workspace);
	features_result(r);
	return r;
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
		free(t->agents[i].note);
	}
	for (int i = 0; i < t->nreviews; i++) {
		worker_cancel(t->reviews[i].worker);
		free(t->reviews[i].error);
	}
	free(t->strategy_fallback);
	drafts_free(t->drafts);
	if (t->heartbeat != NULL)
		event_free(t->heartbeat);
	if (t->fail_ev != NULL)
		event_free(t->fail_ev);
	if (t->grace_ev != NULL)
		event_free(t->grace_ev);
	task_resumption_free(t);
	if (t->workspace[0] != '\0')
		workspace_release(t->id);
	free(t->planner_error);
	free(t->synthesis_error);
	free(t->answer);
	free(t->budget_stop);
	free(t->workspace);
	task_params_clear(&t->p);
	config_free(t->cfg);
	free(t);
}

/* A clean answer: every agent answered, the synthesis did not fail and
 * no budget stopped the task.  Only such an answer is served again. */
static bool
task_cacheable(const struct task *t)
{
	if (t->failed || t->synthesis_error != NULL || t->budget_stop != NULL ||
	    t->p.num_agents == 0)
		return false;
	for (int i = 0; i < t->p.num_agents; i++)
		if (t->agents[i].status != AGENT_OK)
			return false;
	return true;
}

static void
task_finish(struct task *t)
{
	struct task_result	*result;
	struct task_outcome	 o;

	t->state = TASK_DONE;
	event_del(t->heartbeat);
	t->step = t->p.num_agents + 1;
	task_step(t, t->failed ? "failed" : "done");
	result = task_result(t);
	o.failed = t->failed;
	o.error = t->failed ? t->answer : NULL;
	o.cacheable = task_cacheable(t);
	o.usage = t->usage;
	t->done(t->arg, &o, result);
	task_free(t);
}

/* The server hands down its keys (NULL: none) before any task starts. */
void
task_keys(const char *api_key, const char *search_key, const char *no_key)
{
	task_api_key = api_key;
	task_search_key = search_key;
	task_why_no_key = api_key == NULL ? no_key : NULL;
}

/* Why no orchestration can run, when the server has no API key. */
const char *
task_no_key(void)
{
	return task_why_no_key;
}

/* 128 random bits, in hex: unguessable, so an id is no way into a task. */
void
task_new_id(char id[33])
{
	uint8_t	raw[16];

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		fatal("getrandom");
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
}

static void
task_fail_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	task_finish(arg);
}

/* A task without a workspace does not run: it fails on the next turn of
 * the loop, once the caller holds it. */
static struct task *
task_cannot_start(struct task *t, const char *why)
{
	struct timeval	now = { 0, 0 };

	t->workspace = xstrdup("");
	for (int i = 0; i < t->p.num_agents; i++) {
		t->agents[i].status = AGENT_FAILED;
		t->agents[i].error = xasprintf("not started: %s", why);
	}
	t->failed = true;
	t->answer = xasprintf("The orchestration could not start: cannot "
	    "create the task's workspace: %s", why);
	t->fail_ev = evtimer_new(ev_base, task_fail_cb, t);
	evtimer_add(t->fail_ev, &now);
	return t;
}

/* A task, its deadline from now, its heartbeat; takes the params. */
static struct task *
task_new(const struct heavy_config *cfg, struct task_params *p,
    const char *id, task_progress_fn progress, task_done_fn done, void *arg)
{
	struct task	*t = xcalloc(1, sizeof *t);
	struct timeval	 beat = { cfg->heartbeat_s, 0 };
	char		 err[512];

	if (id != NULL) {
		snprintf(t->id, sizeof t->id, "%s", id);
		t->workspace = workspace_adopt(t->id, err, sizeof err);
	} else {
		task_new_id(t->id);
		t->workspace = workspace_create(t->id, err, sizeof err);
	}
	if (t->workspace == NULL)
		t->planner_error = xstrdup(err);	/* task_cannot_start's */
	t->cfg = config_dup(cfg);
	t->p = *p;
	memset(p, 0, sizeof *p);
	t->progress = progress;
	t->done = done;
	t->arg = arg;
	t->start_ms = now_ms();
	t->deadline_ms = t->start_ms + (int64_t)(t->p.timeout_s * 1000);
	for (int i = 0; i < t->p.num_agents; i++) {
		t->agents[i].task = t;
		t->agents[i].index = i;
	}
	t->heartbeat = event_new(ev_base, -1, EV_PERSIST, task_heartbeat_cb, t);
	event_add(t->heartbeat, &beat);
	return t;
}

/* incremental's drafts, once the task's start is known. */
static void
task_new_drafts(struct task *t)
{
	if (task_strategy(t) == AGG_INCREMENTAL)
		t->drafts = drafts_new(t->id, t->p.num_agents, t->start_ms,
		    t->p.incremental_interval_s, task_draft_spawn,
		    task_draft_note, t);
}

/* The planner, with its share of the time left; false if the query does
 * not fit in a frame. */
static bool
task_start_planner(struct task *t)
{
	int64_t		 planner_ms, left = t->deadline_ms - now_ms();
	char		*prompt;

	planner_ms = (int64_t)t->cfg->planner_timeout_s * 1000;
	if (planner_ms > left / 4)
		planner_ms = left / 4;
	prompt = prompt_planner(t->cfg, t->p.query, t->p.num_agents);
	t->planner = task_spawn(t, ROLE_PLANNER, 0, "", prompt,
	    now_ms() + planner_ms, task_planner_done, task_planner_step, t);
	free(prompt);
	return t->planner != NULL;
}

/* Its drafts, and its workspace: else it ends at once, saying why (the
 * task is then the caller's to return, already finishing). */
static bool
task_ready(struct task *t)
{
	char	*why;

	task_new_drafts(t);
	if (t->workspace != NULL)
		return true;
	why = t->planner_error;
	t->planner_error = NULL;
	task_cannot_start(t, why);
	free(why);
	return false;
}

/* Starts the planner; takes the params.  NULL if the query cannot fit. */
struct task *
task_start(const struct heavy_config *cfg, struct task_params *p,
    task_progress_fn progress, task_done_fn done, void *arg)
{
	struct task	*t = task_new(cfg, p, NULL, progress, done, arg);

	if (!task_ready(t))
		return t;
	if (!task_start_planner(t)) {	/* the query does not fit */
		task_free(t);
		return NULL;
	}
	return t;
}

/* A status a finished agent was kept with; AGENT_PENDING: run it again. */
static enum agent_status
task_seed_status(const struct task_seed_agent *s)
{
	if (s->status == NULL || s->question == NULL)
		return AGENT_PENDING;
	for (int i = AGENT_OK; i <= AGENT_CUT; i++)
		if (strcmp(s->status, agent_status_names[i]) == 0)
			return i == AGENT_OK && s->answer == NULL ?
			    AGENT_PENDING : (enum agent_status)i;
	return AGENT_PENDING;	/* pending, running, interrupted */
}

/* What the first run left: its questions, if the planner had given them
 * all, and the agents that had finished.  Whether the planner is done. */
static bool
task_seed_agents(struct task *t, const struct task_seed *seed)
{
	const struct task_seed_agent	*s;
	struct agent			*a;

	for (int i = 0; i < t->p.num_agents; i++)
		if (seed->agents[i].question == NULL)
			return false;
	for (int i = 0; i < t->p.num_agents; i++) {
		s = &seed->agents[i];
		a = &t->agents[i];
		a->question = xstrdup(s->question);
		a->status = task_seed_status(s);
		t->resumed->rerun[i] = a->status == AGENT_PENDING;
		if (a->status == AGENT_PENDING)
			continue;
		a->answer = s->answer != NULL ? xstrdup(s->answer) : NULL;
		a->error = s->error != NULL ? xstrdup(s->error) : NULL;
		a->elapsed_ms = s->elapsed_ms;
	}
	return true;
}

static void
task_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	struct task	*t = arg;

	(void)fd; (void)events;
	task_step(t, "resumed: questions kept");
	task_start_agents(t);
}

/*
 * Starts again a task whose runner died (task_start's, with what its
 * first run left): the same id and deadline, its questions kept when the
 * planner had given them (else it runs again), and every agent that had
 * finished kept as it was; only the others run, and the synthesis once
 * they are in.  NULL if the query cannot fit.
 */
struct task *
task_resume(const struct heavy_config *cfg, struct task_params *p,
    const struct task_seed *seed, task_progress_fn progress,
    task_done_fn done, void *arg)
{
	struct task	*t = task_new(cfg, p, seed->id, progress, done, arg);
	struct timeval	 now = { 0, 0 };

	t->deadline_ms = t->start_ms + (seed->deadline_ms - wall_ms());
	t->start_ms = t->deadline_ms - (int64_t)(t->p.timeout_s * 1000);
	t->resumed = xcalloc(1, sizeof *t->resumed);
	t->resumed->from = xstrdup(seed->from);
	t->resumed->why = xstrdup(seed->why);
	t->usage = seed->usage;
	if (!task_ready(t))
		return t;
	if (task_seed_agents(t, seed)) {
		t->resume_ev = evtimer_new(ev_base, task_resume_cb, t);
		evtimer_add(t->resume_ev, &now);
		return t;
	}
	t->resumed->planner = true;
	for (int i = 0; i < t->p.num_agents; i++)
		t->resumed->rerun[i] = true;
	if (!task_start_planner(t)) {
		task_free(t);
		return NULL;
	}
	return t;
}

static void
task_resumption_free(struct task *t)
{
	if (t->resume_ev != NULL)
		event_free(t->resume_ev);
	if (t->resumed == NULL)
		return;
	free(t->resumed->from);
	free(t->resumed->why);
	free(t->resumed);
}

/* The result's resumed: from where, why, whether the planner ran again,
 * and which agents did (the others were kept). */
static void
task_resumed_fill(const struct task *t, struct task_result *r)
{
	if ((r->has_resumed = t->resumed != NULL) == false)
		return;
	r->resumed_from = xstrdup(t->resumed->from);
	r->resumed_why = xstrdup(t->resumed->why);
	r->resumed_planner = t->resumed->planner;
	for (int i = 0; i < t->p.num_agents; i++)
		r->agents[i].rerun = t->resumed->rerun[i];
}

const char *
task_id(const struct task *t)
{
	return t->id;
}

static const char *
task_phase(const struct task *t)
{
	switch (t->state) {
	case TASK_PLANNING:
		return "planning";
	case TASK_AGENTS:
		return "agents";
	case TASK_REVIEW:
		return "review";
	case TASK_DONE:
		return "done";
	default:
		return "synthesis";
	}
}

/* What the task is doing now, for get_task_progress and heavyd ask. */
void
task_snapshot(const struct task *t, struct task_view *v)
{
	const struct agent	*a;

	memset(v, 0, sizeof *v);
	v->phase = task_phase(t);
	v->query = t->p.query;
	v->num_agents = t->p.num_agents;
	v->elapsed_ms = now_ms() - t->start_ms;
	v->usage = t->usage;
	for (int i = 0; i < t->p.num_agents; i++) {
		a = &t->agents[i];
		v->agents[i].index = i + 1;
		v->agents[i].question = a->question;
		v->agents[i].status = agent_status_names[a->status];
		v->agents[i].step = a->note;
		v->agents[i].error = a->error;
		v->agents[i].answer = a->answer;
		v->agents[i].elapsed_ms = a->elapsed_ms;
	}
	drafts_view(t->drafts, &v->draft);
}

/*
 * The TOOL_NEEDS_* features a task's agents get, so get_agent_tools and
 * heavy://tools list exactly the tools they are offered: every task has a
 * workspace; search needs a backend.
 */
uint32_t
task_tool_features(const struct heavy_config *cfg)
{
	return TOOL_NEEDS_WORKSPACE |
	    (cfg->search_backend != NULL ? TOOL_NEEDS_SEARCH : 0);
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
	free(p->owner);
	config_strv_free(&p->fallbacks, &p->nfallbacks);
	memset(p, 0, sizeof *p);
}

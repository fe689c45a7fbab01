/*
 * Early answers (aggregation_strategy incremental): while the agents work,
 * a draft synthesis is rebuilt from the answers in so far.  A draft starts
 * when an answer came in that no draft has seen, no draft is running, and
 * at least incremental_interval has passed since the last one started;
 * otherwise a timer or the running draft's end looks again.  The latest
 * finished draft is kept for the task's progress and for the final
 * synthesis, which starts from it.  Once the agents are in, a draft still
 * running is killed.
 *
 * The task owns the worker's job: drafts_spawn_fn builds the prompt from
 * the answers in and starts a synthesis worker whose end comes back to
 * drafts_done, so this file calls nothing of task.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

/* One draft started: what it covers and how it ended. */
struct draft_rec {
	int		 answers;
	int64_t		 started_ms, ended_ms;	/* since the task's start */
	const char	*status;	/* running ok failed timed_out killed */
	struct usage	 usage;
};

struct drafts {
	char			 task_id[33];
	int			 num_agents;
	int64_t			 start_ms;	/* the task's */
	int64_t			 interval_ms;
	drafts_spawn_fn		 spawn;
	drafts_note_fn		 note;
	void			*arg;

	struct worker		*worker;	/* the draft running, if any */
	struct event		*timer;		/* the interval, when it holds one */
	int			 answers;	/* answers in now */
	int			 asked;		/* answers the last draft started from */
	bool			 stopped;	/* the agents are in */
	struct draft_rec	 recs[HEAVY_MAX_AGENTS];
	int			 nrecs;		/* drafts started */

	char			*text;		/* the latest finished draft */
	int			 text_n;	/* its number, 1-based; 0: none */
	bool			 used;		/* the final synthesis took it */
	struct usage		 usage;		/* every draft's */
};

static void	drafts_consider(struct drafts *);

struct drafts *
drafts_new(const char *task_id, int num_agents, int64_t start_ms,
    double interval_s, drafts_spawn_fn spawn, drafts_note_fn note, void *arg)
{
	struct drafts	*d = xcalloc(1, sizeof *d);

	snprintf(d->task_id, sizeof d->task_id, "%s", task_id);
	d->num_agents = num_agents;
	d->start_ms = start_ms;
	d->interval_ms = (int64_t)(interval_s * 1000);
	d->spawn = spawn;
	d->note = note;
	d->arg = arg;
	return d;
}

void
drafts_free(struct drafts *d)
{
	if (d == NULL)
		return;
	worker_cancel(d->worker);
	if (d->timer != NULL)
		event_free(d->timer);
	free(d->text);
	free(d);
}

static void
drafts_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	drafts_consider(arg);
}

/* Holds the next draft until the interval since the last start is over. */
static void
drafts_wait(struct drafts *d, int64_t wait_ms)
{
	struct timeval	tv = { wait_ms / 1000, (wait_ms % 1000) * 1000 };

	if (d->timer == NULL)
		d->timer = evtimer_new(ev_base, drafts_timer_cb, d);
	if (!evtimer_pending(d->timer, NULL))
		evtimer_add(d->timer, &tv);
}

static void
drafts_start(struct drafts *d)
{
	struct draft_rec	*rec = &d->recs[d->nrecs++];
	int			 covered = 0;

	rec->started_ms = now_ms() - d->start_ms;
	rec->status = "running";
	d->worker = d->spawn(d->arg, d, d->nrecs, &covered);
	rec->answers = covered;
	d->asked = d->answers;	/* tried: not again for these answers */
	if (d->worker == NULL) {
		rec->status = "failed";
		rec->ended_ms = rec->started_ms;
		log_with(LOG_LVL_WARN, &(struct log_fields){ .task_id =
		    d->task_id }, "task %s: draft %d not started: its input "
		    "exceeds max_frame_bytes", d->task_id, d->nrecs);
	}
}

/* A draft starts if an answer is new to the drafts, none runs, and the
 * interval since the last start is over (else the timer comes back). */
static void
drafts_consider(struct drafts *d)
{
	int64_t	wait;

	if (d->stopped || d->worker != NULL || d->answers <= d->asked ||
	    d->nrecs == HEAVY_MAX_AGENTS)
		return;
	wait = d->nrecs == 0 ? 0 : d->start_ms +
	    d->recs[d->nrecs - 1].started_ms + d->interval_ms - now_ms();
	if (wait > 0) {
		drafts_wait(d, wait);
		return;
	}
	drafts_start(d);
}

/* One more agent answered: answers are in now. */
void
drafts_answer(struct drafts *d, int answers)
{
	d->answers = answers;
	drafts_consider(d);
}

/* The running draft's worker ended (worker_done_fn, arg the drafts). */
void
drafts_done(void *arg, struct worker_result *r)
{
	struct drafts		*d = arg;
	struct draft_rec	*rec = &d->recs[d->nrecs - 1];
	char			 msg[640];

	d->worker = NULL;
	rec->ended_ms = now_ms() - d->start_ms;
	if (r->outcome == OUTCOME_OK && r->ntexts == 1) {
		rec->status = "ok";
		free(d->text);
		d->text = r->texts[0];
		r->texts[0] = NULL;
		d->text_n = d->nrecs;
		snprintf(msg, sizeof msg, "draft %d from %d of %d answers",
		    d->nrecs, rec->answers, d->num_agents);
	} else {
		rec->status = r->outcome == OUTCOME_TIMEOUT ||
		    r->error_kind == JOB_ERR_TIMEOUT ? "timed_out" : "failed";
		snprintf(msg, sizeof msg, "draft %d failed: %.500s", d->nrecs,
		    r->error != NULL ? r->error : "an unusable result");
	}
	d->note(d->arg, msg);
	drafts_consider(d);
}

/* A running draft's LLM call reported its usage. */
void
drafts_usage(struct drafts *d, const struct usage *delta)
{
	usage_add(&d->usage, delta);
	if (d->nrecs > 0)
		usage_add(&d->recs[d->nrecs - 1].usage, delta);
}

/* The agents are in (or stopped): no draft starts, a running one dies. */
void
drafts_stop(struct drafts *d)
{
	d->stopped = true;
	if (d->timer != NULL)
		evtimer_del(d->timer);
	if (d->worker == NULL)
		return;
	worker_cancel(d->worker);
	d->worker = NULL;
	d->recs[d->nrecs - 1].status = "killed";
	d->recs[d->nrecs - 1].ended_ms = now_ms() - d->start_ms;
}

/* The latest finished draft for the final synthesis, which takes it;
 * NULL when there is none. */
const char *
drafts_take(struct drafts *d, int *answers)
{
	if (d->text_n == 0)
		return NULL;
	d->used = true;
	*answers = d->recs[d->text_n - 1].answers;
	return d->text;
}

void
drafts_view(const struct drafts *d, struct task_draft_view *v)
{
	const struct draft_rec	*rec;

	memset(v, 0, sizeof *v);
	if (d == NULL || d->text_n == 0)
		return;
	rec = &d->recs[d->text_n - 1];
	v->n = d->text_n;
	v->answers = rec->answers;
	v->of = d->num_agents;
	v->made_ms = rec->ended_ms;
	v->text = d->text;
}

/*
 * The result's "drafts": how many started (calls), their tokens, LLM
 * calls and cost, apart from the task's usage that counts them too, the
 * time to the first draft and to the answer (elapsed_ms, the task's own),
 * each draft, and the one the final synthesis started from.
 */
void
drafts_result(const struct drafts *d, int64_t elapsed_ms,
    struct tr_drafts *out)
{
	struct tr_draft	*x;

	out->first_draft_ms = -1;
	for (int i = 0; i < d->nrecs; i++) {
		x = &out->list[i];
		x->n = i + 1;
		x->answers = d->recs[i].answers;
		x->status = xstrdup(d->recs[i].status);
		x->started_ms = d->recs[i].started_ms;
		x->ended_ms = d->recs[i].ended_ms;
		x->tokens = d->recs[i].usage.total_tokens;
		if (out->first_draft_ms == -1 &&
		    strcmp(d->recs[i].status, "ok") == 0)
			out->first_draft_ms = d->recs[i].ended_ms;
	}
	out->n = d->nrecs;
	out->interval_s = d->interval_ms / 1000.0;
	out->tokens = d->usage.total_tokens;
	out->llm_calls = d->usage.llm_calls;
	out->cost_micro_usd = d->usage.cost_micro_usd;
	out->answer_ms = elapsed_ms;
	out->synthesis_from = d->used ? d->text_n : 0;
}

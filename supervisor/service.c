/*
 * The task service: how an orchestration starts, whoever asks for it.  It
 * is refused without an API key; answered from the result cache when it
 * can be; admitted or refused as busy; started; registered; and written
 * to the store before anyone is given its id.  A task-augmented call that
 * is refused still becomes a task, failed with the reason, so its id
 * leads to that reason.  Those who asked hear of the task through typed
 * hooks: its progress, its end (its outcome and result), or why it was
 * stopped.  Nothing here knows of MCP.
 *
 * At shutdown the service drains: it takes no new work (every start is
 * refused, "shutting down, retry later"), and says when the last call in
 * flight has ended, so the server can stop before its drain timeout.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

#define SERVICE_MIN_TTL_MS	1000	/* a task must live to be polled */
#define SERVICE_DRAINING	"shutting down, retry later"

static int			 service_ncalls;	/* in flight */
static bool			 service_closed;	/* draining */
static void			(*service_idle)(void);

/* One started orchestration; an instant one already has its end. */
struct service_call {
	struct task_record		*rec;
	const struct service_hooks	*hooks;
	void				*arg;
	struct event			*instant;
	struct task_result		*instant_result; /* the cache's */
	char				*instant_why;	/* else why it failed */
	struct quota_run		*quota;	/* its identity's charges */
};

static void
service_call_free(struct service_call *c)
{
	quota_run_end(c->quota, NULL);
	if (c->instant != NULL)
		event_free(c->instant);
	taskresult_free(c->instant_result);
	free(c->instant_why);
	free(c);
	if (--service_ncalls == 0 && service_closed && service_idle != NULL)
		service_idle();
}

static void
service_progress(void *arg, double progress, double total, const char *msg)
{
	struct service_call	*c = arg;

	registry_touch(c->rec);
	if (c->hooks->progress != NULL)
		c->hooks->progress(c->arg, c->rec, progress, total, msg);
}

/* The store has the end, and every watcher has heard: the answer goes. */
static void
service_answer(void *arg, struct task_record *r)
{
	struct service_call	*c = arg;
	struct task_outcome	 o = { .failed = r->status != TASK_COMPLETED,
	    .error = r->error, .usage = r->usage, .cacheable = r->cacheable };

	c->hooks->answer(c->arg, &o, r->result);
	service_call_free(c);
}

/*
 * The audit log's line for a task's end: who, which task and tool, its
 * models, tokens and cost, how it ended and how long it took.  Never the
 * query (that is the tool call's line, and only with log.queries).
 */
static void
service_audit(const struct task_record *r, const char *outcome,
    const struct usage *u)
{
	struct json_object	*m = NULL;
	const char		*model = "default";

	if (r->params != NULL && json_object_object_get_ex(r->params, "model",
	    &m) && json_object_is_type(m, json_type_string))
		model = json_object_get_string(m);
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = r->id,
	    .identity = r->owner, .audit = true }, "audit: task end: identity=%s task=%s "
	    "tool=%s model=%s tokens=%" PRIu64 " cost_usd=%.6f outcome=%s "
	    "duration_ms=%" PRId64, r->owner, r->id, r->tool ? r->tool : "-",
	    model, u->total_tokens, (double)u->cost_micro_usd / 1e6, outcome,
	    now_ms() - r->created_ms);
}

/*
 * The task ended.  Whoever asked adds what it must to the result; then the
 * record ends, and once the store has the end (its watcher is the first,
 * and holds the others until its write is done) the answer goes.
 */
static void
service_done(void *arg, const struct task_outcome *o,
    struct task_result *result)
{
	struct service_call	*c = arg;

	quota_run_end(c->quota, &o->usage);
	c->quota = NULL;
	c->hooks->done(c->arg, c->rec, o, result, c->instant == NULL);
	service_audit(c->rec, o->failed ? "failed" : c->instant != NULL &&
	    c->instant_why == NULL ? "cached" : "completed", &o->usage);
	c->rec->ended = service_answer;
	c->rec->ended_arg = c;
	registry_finish(c->rec, o, result, now_ms());
}

/* Stopped before it had a result (cancelled, interrupted): why. */
static void
service_stopped(void *arg, const char *why)
{
	struct service_call	*c = arg;

	quota_run_end(c->quota, &c->rec->usage);
	c->quota = NULL;
	service_audit(c->rec, "cancelled", &c->rec->usage);
	if (c->hooks->stopped != NULL)
		c->hooks->stopped(c->arg, why);
	service_call_free(c);
}

static void
service_instant_cb(evutil_socket_t fd, short events, void *arg)
{
	struct service_call	*c = arg;
	struct task_result	*result = c->instant_result;
	struct task_outcome	 o = { .failed = c->instant_why != NULL,
	    .error = c->instant_why };

	(void)fd; (void)events;
	c->instant_result = NULL;
	service_done(c, &o, result);
}

/* The effective arguments of a task, as the store keeps them. */
static struct json_object *
service_params_json(const struct heavy_config *cfg,
    const struct task_params *p)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "query", json_object_new_string(p->query));
	json_object_object_add(o, "num_agents",
	    json_object_new_int(p->num_agents));
	json_object_object_add(o, "timeout",
	    json_object_new_double(p->timeout_s));
	json_object_object_add(o, "model", p->model ?
	    json_object_new_string(p->model) : NULL);
	json_object_object_add(o, "aggregation_strategy",
	    json_object_new_string(p->strategy ? p->strategy :
	    cfg->aggregation_strategy));
	json_object_object_add(o, "max_total_tokens", p->max_total_tokens ?
	    json_object_new_int64((int64_t)p->max_total_tokens) : NULL);
	json_object_object_add(o, "max_cost_usd", p->max_cost_usd > 0 ?
	    json_object_new_double(p->max_cost_usd) : NULL);
	json_object_object_add(o, "min_agents", p->min_agents > 0 ?
	    json_object_new_int(p->min_agents) : NULL);
	json_object_object_add(o, "straggler_grace", p->min_agents > 0 ?
	    json_object_new_double(p->straggler_grace_s) : NULL);
	if (config_strategy(p->strategy ? p->strategy :
	    cfg->aggregation_strategy) == AGG_INCREMENTAL)
		json_object_object_add(o, "incremental_interval",
		    json_object_new_double(p->incremental_interval_s));
	json_object_object_add(o, "hedge_after_ms", p->hedge_after_ms > 0 ?
	    json_object_new_int(p->hedge_after_ms) : NULL);
	return o;
}

/*
 * How long a task is kept, from its creation.  Asked for (milliseconds):
 * within [1 s, max_task_ttl].  Else its timeout plus task_ttl, so a
 * finished task is kept at least task_ttl after it ends.
 */
int64_t
service_ttl_ms(const struct heavy_config *cfg, double timeout_s,
    int64_t requested)
{
	int64_t	max = (int64_t)cfg->max_task_ttl_s * 1000;

	if (requested < 0)
		return (int64_t)(timeout_s * 1000) + (int64_t)cfg->task_ttl_s *
		    1000;
	return requested < SERVICE_MIN_TTL_MS ? SERVICE_MIN_TTL_MS :
	    requested > max ? max : requested;
}

static struct service_call *
service_call_new(const struct service_req *req, struct json_object *params,
    int64_t ttl_ms)
{
	struct service_call	*c = xcalloc(1, sizeof *c);

	service_ncalls++;
	c->hooks = req->hooks;
	c->arg = req->arg;
	c->rec = registry_new(req->owner, req->tool);
	c->rec->mcp_task = req->mcp_task;
	c->rec->params = params;
	c->rec->ttl_ms = ttl_ms;
	c->rec->cancelled = service_stopped;
	c->rec->arg = c;
	return c;
}

/*
 * A task is given out only once its row is in the store, so that an id a
 * client holds, or a result it was given, outlives this process.  A call
 * whose first write failed (a full disk) is stopped before anyone hears
 * of it, and refused with the store's reason.
 */
static void
service_stored(void *arg, bool stored)
{
	struct service_call		*c = arg;
	const struct service_hooks	*hooks = c->hooks;
	void				*harg = c->arg;
	struct timeval			 now = { 0, 0 };
	char				 why[512];

	if (stored) {
		if (c->instant != NULL)	/* it ends after this is answered */
			evtimer_add(c->instant, &now);
		hooks->started(harg, c->rec, SERVICE_STARTED, NULL, 0);
		return;
	}
	snprintf(why, sizeof why, "the task store cannot write: %s; retry "
	    "later", store_error());
	log_with(LOG_LVL_WARN, &(struct log_fields){ .task_id = c->rec->id },
	    "task %s refused: %s", c->rec->id, why);
	quota_run_end(c->quota, NULL);
	c->quota = NULL;
	c->rec->mcp_task = false;	/* no status notice for it */
	c->rec->cancelled = NULL;	/* the caller answers, with why */
	registry_interrupt(c->rec, why, now_ms());
	service_call_free(c);
	hooks->started(harg, NULL, SERVICE_REFUSED_STORE, why, 0);
}

/*
 * A task that already has its end: the cache's answer (result), or an
 * error (failed: why); it ends on the next turn of the loop after its
 * creation has been answered.
 */
static void
service_instant(const struct service_req *req, struct json_object *params,
    int64_t ttl_ms, struct task_result *result, const char *failed)
{
	struct service_call	*c = service_call_new(req, params, ttl_ms);
	char			 id[33];

	c->instant_result = result;
	c->instant_why = failed != NULL ? xstrdup(failed) : NULL;
	c->instant = evtimer_new(ev_base, service_instant_cb, c);
	task_new_id(id);
	registry_add(c->rec, NULL, id, now_ms());
	durable_when_stored(c->rec->id, service_stored, c);
}

/* A task-augmented call refused before it ran: a task all the same,
 * failed with the reason the blocking call would have been given. */
void
service_refused(const struct service_req *req, const char *failed)
{
	service_instant(req, json_object_new_object(), req->ttl_ms ?
	    req->ttl_ms : service_ttl_ms(req->cfg, req->cfg->task_timeout_s,
	    -1), NULL, failed);
}

/* A start on its way: the cache is asked first. */
struct service_start {
	struct service_req	 req;
	char			*owner;
	struct task_params	 p;
	struct json_object	*params;
	int64_t			 ttl;
	char			*key;
};

static void
service_start_free(struct service_start *st)
{
	free(st->key);
	free(st->owner);
	task_params_clear(&st->p);
	json_object_put(st->params);
	free(st);
}

/* Refused (why; a rate: retry after seconds): a task-augmented call
 * still becomes a failed task. */
static void
service_refuse_after(struct service_start *st, enum service_refusal how,
    const char *why, int retry_after_s)
{
	if (st->req.mcp_task && how != SERVICE_REFUSED_STORE) {
		service_instant(&st->req, st->params, st->ttl, NULL, why);
		st->params = NULL;
	} else
		st->req.hooks->started(st->req.arg, NULL, how, why,
		    retry_after_s);
	service_start_free(st);
}

static void
service_refuse(struct service_start *st, enum service_refusal how,
    const char *why)
{
	service_refuse_after(st, how, why, 0);
}

/* The usage of a task so far: its identity's daily budgets are charged. */
static void
service_usage(void *arg, const struct usage *u)
{
	struct service_call	*c = arg;

	quota_run_usage(c->quota, u);
}

/* A daily budget of its identity was reached mid-task: it stops, as at
 * its own max_cost_usd, with why. */
static void
service_quota_stop(void *arg, const char *why)
{
	struct service_call	*c = arg;

	if (c->rec->task != NULL && !c->rec->finished)
		task_budget_stop(c->rec->task, why);
}

/* The arguments a task was started with, typed, as the store keeps them
 * so that it can be resumed; its deadline on the wall clock. */
static void
service_args(const struct task_params *p, int64_t deadline_ms,
    struct store_args *a)
{
	store_args_clear(a);
	a->set = true;
	a->timeout_s = p->timeout_s;
	a->model = p->model != NULL ? xstrdup(p->model) : NULL;
	a->strategy = p->strategy != NULL ? xstrdup(p->strategy) : NULL;
	for (int i = 0; i < p->nfallbacks; i++)
		config_strv_add(&a->fallbacks, &a->nfallbacks, p->fallbacks[i]);
	a->max_total_tokens = (int64_t)p->max_total_tokens;
	a->max_cost_usd = p->max_cost_usd;
	a->min_agents = p->min_agents;
	a->straggler_grace_s = p->straggler_grace_s;
	a->hedge_after_ms = p->hedge_after_ms;
	a->ask_cost = p->ask_cost;
	a->incremental_interval_s = p->incremental_interval_s;
	a->resume = p->resume;
	a->deadline_ms = deadline_ms;
}

/* Admitted and started, or refused (busy, the query too long). */
static void
service_admit(struct service_start *st)
{
	struct service_call	*c;
	struct task		*t;
	char			 why[512];

	if (registry_admit(st->req.cfg, st->owner, workers_queued(), why,
	    sizeof why) == -1 || auth_admit(st->owner, st->p.num_agents,
	    st->p.timeout_s, registry_owner_active(st->owner),
	    registry_owner_agents(st->owner), why, sizeof why) == -1) {
		service_refuse(st, SERVICE_REFUSED_BUSY, why);
		return;
	}
	c = service_call_new(&st->req, st->params, st->ttl);
	service_args(&st->p, wall_ms() + (int64_t)(st->p.timeout_s * 1000),
	    &c->rec->args);
	st->p.owner = xstrdup(st->owner);	/* egress's fairness */
	if ((t = task_start(st->req.cfg, &st->p, service_progress,
	    service_done, c)) == NULL) {
		c->rec->params = NULL;	/* still ours */
		registry_discard(c->rec);
		service_call_free(c);
		service_refuse(st, SERVICE_REFUSED_TOO_LONG, "invalid argument "
		    "'query': too long for max_frame_bytes");
		return;
	}
	st->params = NULL;
	c->rec->cache_key = st->key;
	st->key = NULL;
	registry_add(c->rec, t, task_id(t), now_ms());
	c->quota = quota_run_start(st->owner, task_id(t), service_quota_stop,
	    c);
	task_on_usage(t, service_usage, c);
	service_start_free(st);
	durable_when_stored(c->rec->id, service_stored, c);
}

/* The identity's quotas, as the store counts them: a rate reached is a
 * refusal with when to retry, a daily budget one with when it resets. */
static void
service_quota_checked(void *arg, const struct quota_decision *d)
{
	struct service_start	*st = arg;
	char			 why[512];

	if (d->verdict == QUOTA_OK) {
		service_admit(st);
		return;
	}
	quota_text(d, why, sizeof why);
	log_with(LOG_LVL_INFO, &(struct log_fields){ .identity = st->owner },
	    "quota: %s refused: %s", st->owner, why);
	service_refuse_after(st, d->verdict == QUOTA_RATE ?
	    SERVICE_REFUSED_RATE : d->verdict == QUOTA_BUDGET ?
	    SERVICE_REFUSED_QUOTA : SERVICE_REFUSED_BUSY, why,
	    d->retry_after_s);
}

/* The quotas first (they may wait for the store), then admission. */
static void
service_run(struct service_start *st)
{
	quota_check(st->owner, service_quota_checked, st);
}

static void
service_cache_found(void *arg, int rc, const struct store_task *t)
{
	struct service_start	*st = arg;
	struct task_result	*hit;

	if (rc != STORE_OK || (hit = cache_result(t)) == NULL) {
		service_run(st);
		return;
	}
	log_debug("cache: answered from task %s", t->id);
	service_instant(&st->req, st->params, st->ttl, hit, NULL);
	st->params = NULL;
	service_start_free(st);
}

/*
 * Runs an orchestration; takes the params.  From the cache when it can,
 * else admitted and started.  The hooks' started says how it went, once:
 * the record, or why not (no API key, busy, the query too long, the store
 * cannot write).  A task-augmented call refused for any reason but the
 * store becomes a failed task instead.
 */
void
service_start(const struct service_req *req, struct task_params *p)
{
	struct service_start	*st = xcalloc(1, sizeof *st);

	st->req = *req;
	st->owner = xstrdup(req->owner);
	st->req.owner = st->owner;
	st->p = *p;
	memset(p, 0, sizeof *p);
	auth_fit_defaults(st->owner, req->cfg, &st->p.num_agents,
	    &st->p.timeout_s);
	st->p.ask_cost = quota_wants_cost(st->owner);
	st->params = service_params_json(req->cfg, &st->p);
	st->ttl = req->ttl_ms ? req->ttl_ms : service_ttl_ms(req->cfg,
	    st->p.timeout_s, -1);
	st->key = cache_key(req->cfg, &st->p);
	if (service_closed)
		service_refuse(st, SERVICE_REFUSED_DRAINING, SERVICE_DRAINING);
	else if (task_no_key() != NULL)
		service_refuse(st, SERVICE_REFUSED_NO_KEY, task_no_key());
	else if (st->key != NULL)
		store_cache_find(st->owner, st->key,
		    (int64_t)req->cfg->cache_ttl_s * 1000, service_cache_found,
		    st);
	else
		service_run(st);
}

/* Whoever asked will not be told: the task stops (a client cancelled). */
void
service_abandon(struct task_record *r, const char *why)
{
	struct service_call	*c = r->arg;

	r->cancelled = NULL;
	registry_cancel(r, why, now_ms());
	quota_run_end(c->quota, &r->usage);	/* what it spent */
	c->quota = NULL;
	service_call_free(c);
}

/*
 * Shutdown: no new work from now on; idle runs once the calls in flight
 * have all ended (at once when there are none).  It runs from inside the
 * end of a call: it must only schedule what follows.
 */
void
service_drain(void (*idle)(void))
{
	service_closed = true;
	service_idle = idle;
	if (service_ncalls == 0 && idle != NULL)
		idle();
}

bool
service_draining(void)
{
	return service_closed;
}

/* Calls in flight: started (or instant) and not yet ended. */
int
service_running(void)
{
	return service_ncalls;
}

/*
 * Resumption: a task whose heavyd died, claimed by this one (store_resume).
 * Nobody is waiting on a call for it: whoever holds its id reads it from
 * the registry or the store, as of any task.
 */
static void
service_resumed_started(void *arg, struct task_record *r,
    enum service_refusal how, const char *why, int retry_after_s)
{
	(void)arg; (void)r; (void)how; (void)why; (void)retry_after_s;
}

static void
service_resumed_done(void *arg, struct task_record *r,
    const struct task_outcome *o, struct task_result *result, bool ran)
{
	(void)arg; (void)r; (void)o; (void)result; (void)ran;
}

static void
service_resumed_answer(void *arg, const struct task_outcome *o,
    const struct task_result *result)
{
	(void)arg; (void)o; (void)result;
}

static const struct service_hooks service_resumed_hooks = {
	.started = service_resumed_started,
	.done = service_resumed_done,
	.answer = service_resumed_answer,
};

/* The params of a stored task, from its typed columns. */
static void
service_resume_params(const struct store_task *row, struct task_params *p)
{
	const struct store_args	*a = &row->args;

	memset(p, 0, sizeof *p);
	p->query = xstrdup(row->query);
	p->num_agents = row->num_agents;
	p->timeout_s = a->timeout_s;
	p->model = a->model != NULL ? xstrdup(a->model) : NULL;
	p->strategy = a->strategy != NULL ? xstrdup(a->strategy) : NULL;
	for (int i = 0; i < a->nfallbacks; i++)
		config_strv_add(&p->fallbacks, &p->nfallbacks, a->fallbacks[i]);
	p->max_total_tokens = (uint64_t)a->max_total_tokens;
	p->max_cost_usd = a->max_cost_usd;
	p->min_agents = a->min_agents;
	p->straggler_grace_s = a->straggler_grace_s;
	p->hedge_after_ms = a->hedge_after_ms;
	p->ask_cost = a->ask_cost;
	p->incremental_interval_s = a->incremental_interval_s;
	p->resume = a->resume;
	p->owner = xstrdup(row->owner);
}

/* What the first run left, for task_resume: the row's, valid while it is. */
static void
service_resume_seed(const struct store_task *row, const char *from,
    const char *why, struct task_seed *seed)
{
	const struct store_agent	*a;
	int				 i;

	memset(seed, 0, sizeof *seed);
	seed->id = row->id;
	seed->deadline_ms = row->args.deadline_ms;
	if (row->has_usage)
		seed->usage = row->usage;
	seed->from = from;
	seed->why = why;
	for (int k = 0; k < row->progress.nagents; k++) {
		a = &row->progress.agents[k];
		if ((i = a->index - 1) < 0 || i >= row->num_agents ||
		    i >= HEAVY_MAX_AGENTS)
			continue;
		seed->agents[i].question = a->question;
		seed->agents[i].status = a->status;
		seed->agents[i].answer = a->answer;
		seed->agents[i].error = a->error;
		seed->agents[i].elapsed_ms = a->elapsed_ms;
	}
}

/*
 * Starts again, under its own id, owner and deadline, a task whose heavyd
 * died.  It is neither admitted nor charged again: its quota charge has
 * the task as its source, so the same charge counts once.  Its row is
 * ours already (the store claimed it).
 */
void
service_resume(const struct heavy_config *cfg, const struct store_task *row,
    const char *from, const char *why)
{
	struct service_req	 req = { .owner = row->owner, .cfg = cfg,
	    .tool = strcmp(row->tool, "grok_heavy_orchestrate") == 0 ?
	    "grok_heavy_orchestrate" : "heavy_orchestrate",
	    .hooks = &service_resumed_hooks };
	struct service_call	*c;
	struct task_params	 p;
	struct task_seed	 seed;
	struct task		*t;

	if (service_closed) {	/* its row stays ours: the next heavyd's */
		log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = row->id },
		    "task %s: not resumed: shutting down", row->id);
		return;
	}
	service_resume_params(row, &p);
	service_resume_seed(row, from, why, &seed);
	c = service_call_new(&req, service_params_json(cfg, &p), row->ttl_ms);
	service_args(&p, row->args.deadline_ms, &c->rec->args);
	if ((t = task_resume(cfg, &p, &seed, service_progress, service_done,
	    c)) == NULL) {	/* its query no longer fits: failed, as before */
		task_params_clear(&p);
		registry_add(c->rec, NULL, row->id, now_ms());
		c->rec->cancelled = NULL;
		registry_interrupt(c->rec, "interrupted: could not be resumed: "
		    "its query is too long for max_frame_bytes", now_ms());
		service_call_free(c);
		return;
	}
	c->rec->cache_key = row->cache_key ? xstrdup(row->cache_key) : NULL;
	registry_add(c->rec, t, row->id, now_ms());
	c->rec->start_time_ms = row->created_ms;
	c->quota = quota_run_start(row->owner, row->id, service_quota_stop, c);
	task_on_usage(t, service_usage, c);
	durable_when_stored(c->rec->id, service_stored, c);
}

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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

#define SERVICE_MIN_TTL_MS	1000	/* a task must live to be polled */
#define SERVICE_DRAINING	"shutting down, retry later"

static int			 service_ncalls;	/* in flight */
static bool			 service_closed;	/* draining */
static void			(*service_idle)(void);
static enum service_refusal	 service_why;	/* the last start's */

/* One started orchestration; an instant one already has its end. */
struct service_call {
	struct task_record		*rec;
	const struct service_hooks	*hooks;
	void				*arg;
	struct event			*instant;
	struct json_object		*instant_result;	/* the cache's */
	char				*instant_why;	/* else why it failed */
};

static void
service_call_free(struct service_call *c)
{
	if (c->instant != NULL)
		event_free(c->instant);
	json_object_put(c->instant_result);
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

/*
 * The task ended.  Whoever asked adds what it must to the result; then the
 * record ends, so the store has the end (its watcher is the first) before
 * any answer or notification about it is queued; then the answer goes.
 */
static void
service_done(void *arg, const struct task_outcome *o,
    struct json_object *result)
{
	struct service_call	*c = arg;

	c->hooks->done(c->arg, c->rec, o, result, c->instant == NULL);
	json_object_get(result);	/* the record takes one reference */
	registry_finish(c->rec, o, result, now_ms());
	c->hooks->answer(c->arg, o, result);
	json_object_put(result);
	service_call_free(c);
}

/* Stopped before it had a result (cancelled, interrupted): why. */
static void
service_stopped(void *arg, const char *why)
{
	struct service_call	*c = arg;

	if (c->hooks->stopped != NULL)
		c->hooks->stopped(c->arg, why);
	service_call_free(c);
}

static void
service_instant_cb(evutil_socket_t fd, short events, void *arg)
{
	struct service_call	*c = arg;
	struct json_object	*result = c->instant_result;
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
static int
service_stored(struct service_call *c, char *why, size_t len)
{
	if (durable_stored(c->rec->id))
		return 0;
	service_why = SERVICE_REFUSED_STORE;
	snprintf(why, len, "the task store cannot write: %s; retry later",
	    store_error());
	log_with(LOG_LVL_WARN, &(struct log_fields){ .task_id = c->rec->id },
	    "task %s refused: %s", c->rec->id, why);
	c->rec->mcp_task = false;	/* no status notice for it */
	c->rec->cancelled = NULL;	/* the caller answers, with why */
	registry_interrupt(c->rec, why, now_ms());
	service_call_free(c);
	return -1;
}

/*
 * A task that already has its end: the cache's answer (result), or an
 * error (failed: why); it ends on the next turn of the loop, once its
 * creation has been answered.
 */
static struct task_record *
service_instant(const struct service_req *req, struct json_object *params,
    int64_t ttl_ms, struct json_object *result, const char *failed,
    char *why, size_t len)
{
	struct service_call	*c = service_call_new(req, params, ttl_ms);
	struct timeval		 now = { 0, 0 };
	char			 id[33];

	c->instant_result = result;
	c->instant_why = failed != NULL ? xstrdup(failed) : NULL;
	c->instant = evtimer_new(ev_base, service_instant_cb, c);
	task_new_id(id);
	registry_add(c->rec, NULL, id, now_ms());
	if (service_stored(c, why, len) == -1)
		return NULL;
	evtimer_add(c->instant, &now);
	return c->rec;
}

/* A task-augmented call refused before it ran: a task all the same,
 * failed with the reason the blocking call would have been given. */
struct task_record *
service_refused(const struct service_req *req, const char *failed,
    char *why, size_t len)
{
	return service_instant(req, json_object_new_object(), req->ttl_ms ?
	    req->ttl_ms : service_ttl_ms(req->cfg, req->cfg->task_timeout_s,
	    -1), NULL, failed, why, len);
}

/*
 * Admitted and started: 0 and *out; 1 and why when refused (busy, the
 * query too long: params and *key are still the caller's); -1 and why
 * when the store could not take it (both are gone with the record).
 */
static int
service_run(const struct service_req *req, struct task_params *p,
    struct json_object *params, int64_t ttl, char **key,
    struct task_record **out, char *why, size_t len)
{
	struct service_call	*c;
	struct task		*t;

	if (registry_admit(req->cfg, req->owner, workers_queued(), why,
	    len) == -1) {
		service_why = SERVICE_REFUSED_BUSY;
		return 1;
	}
	c = service_call_new(req, params, ttl);
	if ((t = task_start(req->cfg, p, service_progress, service_done,
	    c)) == NULL) {
		c->rec->params = NULL;	/* still the caller's */
		registry_discard(c->rec);
		service_call_free(c);
		snprintf(why, len, "invalid argument 'query': too long for "
		    "max_frame_bytes");
		service_why = SERVICE_REFUSED_TOO_LONG;
		return 1;
	}
	c->rec->cache_key = *key;
	*key = NULL;
	registry_add(c->rec, t, task_id(t), now_ms());
	if (service_stored(c, why, len) == -1)
		return -1;
	*out = c->rec;
	return 0;
}

/*
 * Runs an orchestration; takes the params.  From the cache when it can,
 * else admitted and started.  Returns the record; or NULL and why (no API
 * key, busy, the query too long, the store cannot write).  A task-augmented
 * call refused for any reason but the store becomes a failed task instead.
 */
struct task_record *
service_start(const struct service_req *req, struct task_params *p,
    char *why, size_t len)
{
	struct json_object	*params = service_params_json(req->cfg, p), *hit;
	int64_t			 ttl = req->ttl_ms ? req->ttl_ms :
	    service_ttl_ms(req->cfg, p->timeout_s, -1);
	char			*key = cache_key(req->cfg, p);
	struct task_record	*r = NULL;
	int			 rc;

	service_why = SERVICE_STARTED;
	if (service_closed) {
		service_why = SERVICE_REFUSED_DRAINING;
		snprintf(why, len, "%s", SERVICE_DRAINING);
	} else if (task_no_key() != NULL) {
		service_why = SERVICE_REFUSED_NO_KEY;
		snprintf(why, len, "%s", task_no_key());
	} else if ((hit = cache_lookup(req->cfg, req->owner, key)) != NULL) {
		free(key);
		task_params_clear(p);
		return service_instant(req, params, ttl, hit, NULL, why, len);
	} else if ((rc = service_run(req, p, params, ttl, &key, &r, why,
	    len)) <= 0)
		return r;	/* started, or not stored (NULL) */
	free(key);
	task_params_clear(p);
	if (!req->mcp_task) {
		json_object_put(params);
		return NULL;
	}
	return service_instant(req, params, ttl, NULL, why, why, len);
}

/* Whoever asked will not be told: the task stops (a client cancelled). */
void
service_abandon(struct task_record *r, const char *why)
{
	struct service_call	*c = r->arg;

	r->cancelled = NULL;
	registry_cancel(r, why, now_ms());
	service_call_free(c);
}

/* Why the last service_start returned no running task (SERVICE_STARTED:
 * it did; a task-augmented refusal is a failed task, and says why here). */
enum service_refusal
service_last_refusal(void)
{
	return service_why;
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

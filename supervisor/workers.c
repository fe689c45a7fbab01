/*
 * Every worker process, in one table.  A worker is started with a job and a
 * deadline; at the deadline its process group gets SIGKILL.  It finishes
 * when both its socket has closed and the zygote has reported its wait
 * status, so the outcome (answer, error, deadline, signal) is always known.
 * A frame that fails validation kills that worker, never the supervisor.
 */
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "supervisor.h"
#include "metrics.h"

struct worker {
	uint32_t		 id;		/* generation << 16 | slot */
	enum worker_state	 state;
	pid_t			 pid;
	int			 pidfd;
	struct bufferevent	*bev;
	struct event		*deadline_ev;
	struct buf		 confine;	/* MSG_JOB_SANDBOX, until launched */
	struct buf		 frame;		/* the job, until launched */
	struct egress_attach	 egress;	/* what egress may do for it */
	int64_t			 start_ms;
	worker_done_fn		 done;
	worker_step_fn		 step;
	worker_usage_fn		 usage;
	void			*arg, *usage_arg;
	char			*fallbacks[HEAVY_MAX_FALLBACKS]; /* the job's */
	uint32_t		 nfallbacks;
	bool			 io_done, exit_done, got_result;
	bool			 kill_pending, timed_out, launch_failed;
	bool			 result_failed;	/* the result was FAILED */
	bool			 cancelled, violated, spawn_failed, lost;
	bool			 cut;		/* by its task's quorum */
	int			 status;
	uint32_t		 exit_flags;	/* EXITED_* from the zygote */
	char			*problem;	/* why it ended without a result */
	char			*label;		/* prefixes its stderr lines */
	char			*model;		/* its job's, for its metrics */
	char			 task_id[33];	/* its task's, for the journal */
	struct worker_result	 result;
	TAILQ_ENTRY(worker)	 entry;
};

static struct worker		**table;
static uint32_t			 table_size, generation;
static uint32_t			*free_slots, nfree;
static TAILQ_HEAD(, worker)	 queue = TAILQ_HEAD_INITIALIZER(queue);
static int			 nqueued;
static size_t			 max_frame;
static const struct heavy_config *limits;	/* for the causes of deaths */

static void	worker_launch(struct worker *);
static void	worker_finish(struct worker *);
static void	worker_deliver(struct worker *);

/* heavyd_workers' state label, for each enum worker_state. */
static const char *const worker_state_names[] = {
	"queued", "spawning", "running", "finishing",
};

static void
worker_set_state(struct worker *w, enum worker_state state)
{
	metrics_worker_move(worker_state_names[w->state],
	    worker_state_names[state]);
	w->state = state;
}

void
workers_init(const struct heavy_config *cfg)
{
	struct capacity_host	h;
	char			why[192];

	table_size = (uint32_t)cfg->max_workers;
	if (table_size == 0) {	/* auto, not resolved by the caller */
		capacity_probe(&h);
		table_size = (uint32_t)capacity_workers(&h, cfg->worker_cost,
		    why, sizeof why);
	}
	if (table_size > 0xffff)
		table_size = 0xffff;
	table = xcalloc(table_size, sizeof *table);
	free_slots = xcalloc(table_size, sizeof *free_slots);
	for (nfree = 0; nfree < table_size; nfree++)
		free_slots[nfree] = table_size - 1 - nfree;
	max_frame = cfg->max_frame_bytes;
	limits = cfg;
	if (cfg->max_workers_why[0] != '\0')
		log_info("max_workers: auto, %u (%s)", table_size,
		    cfg->max_workers_why);
}

const char *
signal_name(int sig)
{
	static char	name[32];
	const char	*abbrev = sigabbrev_np(sig);

	if (abbrev != NULL)
		snprintf(name, sizeof name, "SIG%s", abbrev);
	else
		snprintf(name, sizeof name, "signal %d", sig);
	return name;
}

static struct worker *
worker_lookup(uint32_t id)
{
	uint32_t	slot = id & 0xffff;

	if (slot >= table_size || table[slot] == NULL || table[slot]->id != id)
		return NULL;
	return table[slot];
}

/* SIGKILL to the whole process group; race-free for the leader via pidfd. */
static void
worker_kill(struct worker *w)
{
	if (w->exit_done)
		return;
	if (w->pid <= 0) {
		w->kill_pending = true;
		return;
	}
	if (w->pidfd != -1)
		pidfd_send_signal(w->pidfd, SIGKILL, NULL, 0);
	kill(-w->pid, SIGKILL);
}

static void
worker_violation(struct worker *w, const char *why)
{
	if (w->problem == NULL) {
		log_with(LOG_LVL_WARN, &(struct log_fields){
		    .task_id = w->task_id[0] ? w->task_id : NULL,
		    .worker_pid = (int)w->pid }, "worker %d: %s; killing it",
		    (int)w->pid, why);
		w->problem = xasprintf("protocol violation: %s", why);
	}
	w->violated = true;
	w->got_result = false;
	worker_kill(w);
	/* Nothing it sends now matters: close, and finish from the loop. */
	bufferevent_free(w->bev);
	w->bev = NULL;
	w->io_done = true;
	worker_set_state(w, WORKER_FINISHING);
	if (w->exit_done)
		event_active(w->deadline_ev, EV_TIMEOUT, 0);
}

/* The result frame's fields become the worker's result. */
static void
worker_take_result(struct worker *w, struct job_report *rep)
{
	struct worker_result	*res = &w->result;

	res->flags = rep->flags;
	res->texts = rep->texts;
	res->ntexts = rep->ntexts;
	res->error_kind = rep->error_kind;
	res->http_status = rep->http_status;
	res->error = rep->error;
	res->usage = rep->usage;
	if (rep->type == MSG_JOB_FAILED)
		res->outcome = OUTCOME_FAILED;
	w->result_failed = rep->type == MSG_JOB_FAILED;
	rep->texts = NULL;
	rep->ntexts = 0;
	rep->error = NULL;
}

/* heavyd_llm_requests_total's outcome: the status class, or why none. */
static const char *
worker_llm_outcome(const struct job_call *c)
{
	static const char	*classes[] = { "1xx", "2xx", "3xx", "4xx",
	    "5xx", "6xx", "7xx", "8xx", "9xx" };

	switch (c->error_kind) {
	case 0:
	case JOB_ERR_HTTP:	/* job_call_decode: 100 to 999 */
		return classes[c->http_status / 100 - 1];
	case JOB_ERR_API:
		return "api_error";
	case JOB_ERR_RESPONSE:
		return "invalid_response";
	case JOB_ERR_TRANSPORT:
		return "transport_error";
	case JOB_ERR_CONNECT:
		return "connect_error";
	default:
		return "timeout";
	}
}

/* One LLM request the worker made, with the usage it reported after it. */
static void
worker_llm_metrics(const struct worker *w, const struct job_report *rep)
{
	struct metrics_llm	m;

	m.model = rep->call.model == 0 ||
	    rep->call.model > w->nfallbacks ? w->model :
	    w->fallbacks[rep->call.model - 1];
	m.outcome = worker_llm_outcome(&rep->call);
	m.retry = rep->call.attempt > 0;
	m.duration_us = (int64_t)rep->call.duration_us;
	m.prompt_tokens = rep->usage.prompt_tokens;
	m.completion_tokens = rep->usage.completion_tokens;
	m.cost_micro_usd = rep->usage.cost_micro_usd;
	m.retries = rep->usage.retries;
	m.hedged = rep->usage.hedged_calls;
	m.hedges_won = rep->usage.hedges_won;
	metrics_llm_request(&m);
}

/* Handles one frame; -1 when it is anything but what its type says. */
static int
worker_dispatch(struct worker *w, const struct msg_hdr *hdr,
    const uint8_t *payload)
{
	struct job_report	rep;

	if (w->got_result)
		return -1;	/* nothing may follow the result */
	if (job_report_decode(hdr->type, payload, hdr->len, &rep) == -1)
		return -1;
	/* A worker's text may quote a provider that echoed our key. */
	secret_redact(&rep.note);
	secret_redact(&rep.error);
	for (uint32_t i = 0; i < rep.ntexts; i++)
		secret_redact(&rep.texts[i]);
	switch (rep.type) {
	case MSG_JOB_STEP:
		if (w->step != NULL)
			w->step(w->arg, rep.note);
		break;
	case MSG_JOB_USAGE:
		worker_llm_metrics(w, &rep);
		if (w->usage != NULL)
			w->usage(w->usage_arg, &rep.usage, &rep.call);
		break;
	default:
		w->got_result = true;
		worker_take_result(w, &rep);
		break;
	}
	job_report_clear(&rep);
	return 0;
}

static void
worker_read_cb(struct bufferevent *bev, void *arg)
{
	struct worker	*w = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct msg_hdr	 hdr;
	uint8_t		 h[PROTO_HDR_LEN];
	size_t		 avail;

	while ((avail = evbuffer_get_length(in)) >= PROTO_HDR_LEN &&
	    w->problem == NULL) {
		evbuffer_copyout(in, h, sizeof h);
		/* m_frame_check reads the header only; avail sizes the rest. */
		switch (m_frame_check(h, avail, max_frame, &hdr)) {
		case FRAME_INCOMPLETE:
			return;
		case FRAME_INVALID:
			worker_violation(w, "invalid frame header");
			return;
		case FRAME_OK:
			break;
		}
		if (worker_dispatch(w, &hdr, evbuffer_pullup(in,
		    PROTO_HDR_LEN + hdr.len) + PROTO_HDR_LEN) == -1) {
			worker_violation(w, "malformed message");
			return;
		}
		evbuffer_drain(in, PROTO_HDR_LEN + hdr.len);
		/* The answer goes to the task now; the process is reaped later. */
		if (w->got_result)
			worker_deliver(w);
	}
}

static void
worker_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct worker	*w = arg;

	(void)bev;
	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	worker_read_cb(w->bev, w);	/* whatever arrived before the close */
	if (w->bev == NULL)
		return;			/* a violation closed it */
	bufferevent_free(w->bev);
	w->bev = NULL;
	w->io_done = true;
	worker_set_state(w, WORKER_FINISHING);
	if (w->exit_done)
		worker_finish(w);
}

static void
worker_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker	*w = arg;

	(void)fd; (void)events;
	if (w->launch_failed || (w->io_done && w->exit_done)) {
		worker_finish(w);
		return;
	}
	if (w->state == WORKER_QUEUED) {
		TAILQ_REMOVE(&queue, w, entry);
		nqueued--;
		w->timed_out = true;
		w->problem = xstrdup("deadline passed while waiting for a "
		    "free worker slot");
		worker_finish(w);
		return;
	}
	if (!w->got_result)
		w->timed_out = true;
	worker_kill(w);		/* also one that answered but never exits */
}

/* The upstreams its job may use, which egress holds it to. */
static void
worker_egress_policy(struct worker *w, const struct job *job)
{
	w->egress.search_backend = job->search_backend;
	w->egress.allow_private = job->search_allow_private != 0;
	w->egress.hedge_ms = job->hedge_ms;
	w->egress.base_url = xstrdup(job->base_url ? job->base_url : "");
	w->egress.search_url = xstrdup(job->search_url ? job->search_url : "");
	w->egress.user_agent = xstrdup(job->search_user_agent ?
	    job->search_user_agent : "");
}

/*
 * The first frame, MSG_JOB_EGRESS, with the worker's socket to egress
 * (none when egress is down: its calls will say so).  The socket is new
 * and empty, so this send does not block.
 */
static void
worker_send_egress(struct worker *w, int sock)
{
	struct buf	frame;
	int		efd;

	w->egress.worker_id = w->id;
	free(w->egress.task);
	w->egress.task = xstrdup(w->task_id);	/* the governor's fairness */
	efd = egressctl_attach(&w->egress);
	m_create(&frame, MSG_JOB_EGRESS);
	m_close(&frame, SIZE_MAX);
	if (fd_send(sock, frame.data, frame.len, efd, 0) == -1)
		log_warn("worker %u: cannot pass its egress socket", w->id);
	buf_free(&frame);
	if (efd != -1)
		close(efd);
	egress_attach_clear(&w->egress);
}

struct worker *
worker_start(const struct worker_req *req)
{
	struct worker	*w;
	struct timeval	 tv;
	int64_t		 left = req->deadline_ms - now_ms();

	w = xcalloc(1, sizeof *w);
	m_create(&w->confine, MSG_JOB_SANDBOX);
	sandbox_encode(&w->confine, req->sandbox);
	m_create(&w->frame, MSG_JOB_RUN);
	job_encode(&w->frame, req->job);
	if (m_close(&w->confine, max_frame) == -1 ||
	    m_close(&w->frame, max_frame) == -1) {
		explicit_bzero(w->frame.data, w->frame.len);
		buf_free(&w->frame);
		buf_free(&w->confine);
		free(w);
		return NULL;
	}
	w->pidfd = -1;
	worker_egress_policy(w, req->job);
	w->egress.identity = egressctl_identity(req->owner);
	w->label = xstrdup(req->label ? req->label : "worker");
	w->model = xstrdup(req->job->model ? req->job->model : "");
	for (; w->nfallbacks < req->job->nfallbacks &&
	    w->nfallbacks < HEAVY_MAX_FALLBACKS; w->nfallbacks++)
		w->fallbacks[w->nfallbacks] =
		    xstrdup(req->job->fallbacks[w->nfallbacks]);
	snprintf(w->task_id, sizeof w->task_id, "%s",
	    req->task_id ? req->task_id : "");
	w->done = req->done;
	w->step = req->step;
	w->usage = req->usage;
	w->arg = req->arg;
	w->usage_arg = req->usage_arg;
	w->start_ms = now_ms();
	w->deadline_ev = evtimer_new(ev_base, worker_deadline_cb, w);
	tv.tv_sec = left > 0 ? left / 1000 : 0;
	tv.tv_usec = left > 0 ? (left % 1000) * 1000 : 0;
	evtimer_add(w->deadline_ev, &tv);
	w->state = WORKER_QUEUED;
	metrics_worker_move(NULL, worker_state_names[w->state]);
	if (nfree > 0) {
		worker_launch(w);
	} else {
		TAILQ_INSERT_TAIL(&queue, w, entry);
		nqueued++;
	}
	return w;
}

/* Finishes later, from the event loop, so callers never see re-entry. */
static void
worker_fail_launch(struct worker *w, const char *why)
{
	w->problem = xstrdup(why);
	w->launch_failed = true;
	event_active(w->deadline_ev, EV_TIMEOUT, 0);
}

static void
worker_launch(struct worker *w)
{
	uint32_t	slot = free_slots[--nfree];
	int		sv[2];

	w->id = (++generation & 0xffff) << 16 | slot;
	table[slot] = w;
	worker_set_state(w, WORKER_SPAWNING);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		worker_fail_launch(w, "could not create the worker's socket");
		return;
	}
	worker_send_egress(w, sv[0]);
	if (spawner_spawn(w->id, sv[1], w->label) == -1) {
		close(sv[0]);
		close(sv[1]);
		worker_fail_launch(w, "worker spawner unavailable");
		return;
	}
	fd_set_nonblock(sv[0], 1);
	w->bev = bufferevent_socket_new(ev_base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(w->bev, worker_read_cb, NULL, worker_event_cb, w);
	bufferevent_setwatermark(w->bev, EV_READ, 0, max_frame);
	bufferevent_enable(w->bev, EV_READ);
	bufferevent_write(w->bev, w->confine.data, w->confine.len);
	bufferevent_write(w->bev, w->frame.data, w->frame.len);
	/* Now, not at the next turn of the loop: a spare is up already. */
	evbuffer_write(bufferevent_get_output(w->bev), sv[0]);
	explicit_bzero(w->frame.data, w->frame.len);	/* the prompts */
	buf_free(&w->frame);
	buf_free(&w->confine);
}

/* The zygote forked it (or could not). */
void
workers_spawned(uint32_t id, pid_t pid, int pidfd, int err)
{
	struct worker	*w = worker_lookup(id);

	/* A fast worker's socket may close before this report arrives. */
	if (w == NULL || w->pid > 0 || w->exit_done) {
		if (pidfd != -1)
			close(pidfd);
		return;
	}
	if (err != 0 || pid <= 0) {
		w->problem = xstrdup(err == EAGAIN ?
		    "could not fork a worker: process limit reached" :
		    "could not fork a worker");
		w->spawn_failed = true;
		w->exit_done = true;	/* there is no process to wait for */
		if (pidfd != -1)
			close(pidfd);
		return;
	}
	w->pid = pid;
	w->pidfd = pidfd;
	if (w->state == WORKER_SPAWNING)
		worker_set_state(w, WORKER_RUNNING);
	if (w->kill_pending)
		worker_kill(w);
}

void
workers_exited(uint32_t id, pid_t pid, int status, uint32_t flags)
{
	struct worker	*w = worker_lookup(id);

	if (w == NULL || w->pid != pid || w->exit_done)
		return;
	w->exit_done = true;
	w->status = status;
	w->exit_flags = flags;
	worker_set_state(w, WORKER_FINISHING);
	if (w->io_done)
		worker_finish(w);
}

/* The zygote died: its workers died with it (PR_SET_PDEATHSIG). */
void
workers_lost(void)
{
	for (uint32_t i = 0; i < table_size; i++) {
		struct worker	*w = table[i];

		if (w == NULL || w->exit_done || w->launch_failed)
			continue;
		w->exit_done = true;
		w->lost = true;
		if (w->problem == NULL)
			w->problem = xstrdup("worker lost: its zygote died");
		if (w->io_done)
			worker_finish(w);
	}
}

/* Why a signal killed a worker: the sandbox's limits have their names. */
static char *
worker_signal_cause(const struct worker *w, int sig)
{
	switch (sig) {
	case SIGSYS:
		return xstrdup("killed by SIGSYS: a forbidden system call "
		    "(seccomp)");
	case SIGXCPU:
		return xasprintf("CPU limit reached: killed by SIGXCPU after "
		    "%d s of CPU time (RLIMIT_CPU)", limits->worker_cpu);
	case SIGXFSZ:
		return xasprintf("file size limit reached: killed by SIGXFSZ "
		    "(RLIMIT_FSIZE, %zu bytes)", limits->worker_fsize);
	case SIGKILL:
		if (w->exit_flags & EXITED_OOM)
			return xasprintf("out of memory: killed by SIGKILL from "
			    "its cgroup's OOM killer (memory.max %zu MiB)",
			    limits->worker_memory >> 20);
		break;
	}
	return xasprintf("worker killed by %s", signal_name(sig));
}

/* Decides how the worker ended, from what it sent and how it exited. */
static void
worker_outcome(struct worker *w)
{
	struct worker_result	*res = &w->result;
	int			 st = w->status;

	if (w->got_result && w->problem == NULL)
		return;		/* DONE (OUTCOME_OK) or FAILED, as sent */
	worker_result_clear(res);
	if (w->timed_out) {
		res->outcome = OUTCOME_TIMEOUT;
		res->signal = SIGKILL;
		res->error = xstrdup(w->problem ? w->problem :
		    "deadline reached; killed with SIGKILL");
	} else if (w->problem != NULL) {
		res->outcome = OUTCOME_FAILED;
		res->error = xstrdup(w->problem);
	} else if (WIFSIGNALED(st)) {
		res->outcome = OUTCOME_KILLED;
		res->signal = WTERMSIG(st);
		res->error = worker_signal_cause(w, res->signal);
	} else if (WIFEXITED(st) && WEXITSTATUS(st) == HEAVY_EXIT_NOMEM) {
		res->outcome = OUTCOME_FAILED;
		res->error = xasprintf("out of memory: an allocation failed at "
		    "the worker's memory limit (%zu MiB, RLIMIT_AS)",
		    limits->worker_memory >> 20);
	} else {
		res->outcome = OUTCOME_FAILED;
		res->error = xasprintf("worker exited with status %d without "
		    "a result", WIFEXITED(st) ? WEXITSTATUS(st) : st);
	}
}

/*
 * How a worker ended, for heavyd_worker_exits_total: the result it sent,
 * else why it has none (the order of worker_outcome's causes), else how
 * its process died.
 */
static const char *
worker_exit_cause(const struct worker *w)
{
	int	st = w->status;

	if (w->got_result)
		return w->result_failed ? "failed" : "ok";
	if (w->cut)
		return "cut_for_latency";
	if (w->cancelled)
		return "cancel";
	if (w->violated)
		return "protocol_violation";
	if (w->timed_out)
		return "deadline";
	if (w->launch_failed || w->spawn_failed)
		return "spawn_failed";
	if (w->lost)
		return "lost";
	if (WIFSIGNALED(st)) {
		switch (WTERMSIG(st)) {
		case SIGSYS:
			return "sigsys";
		case SIGXCPU:
			return "cpu_limit";
		case SIGXFSZ:
			return "file_size_limit";
		case SIGKILL:
			if (w->exit_flags & EXITED_OOM)
				return "oom";
			break;
		}
	} else if (WIFEXITED(st) && WEXITSTATUS(st) == HEAVY_EXIT_NOMEM)
		return "oom";
	return "crash";
}

static void
worker_free(struct worker *w)
{
	metrics_worker_move(worker_state_names[w->state], NULL);
	if (w->bev != NULL)
		bufferevent_free(w->bev);
	if (w->pidfd != -1)
		close(w->pidfd);
	event_free(w->deadline_ev);
	worker_result_clear(&w->result);
	buf_free(&w->frame);
	buf_free(&w->confine);
	egress_attach_clear(&w->egress);
	free(w->problem);
	free(w->label);
	free(w->model);
	for (uint32_t i = 0; i < w->nfallbacks; i++)
		free(w->fallbacks[i]);
	free(w);
}

static void
workers_pump(void)
{
	struct worker	*w;

	while (nfree > 0 && (w = TAILQ_FIRST(&queue)) != NULL) {
		TAILQ_REMOVE(&queue, w, entry);
		nqueued--;
		worker_launch(w);
	}
}

/* Hands the outcome to the owner, once. */
static void
worker_deliver(struct worker *w)
{
	worker_done_fn	done = w->done;

	w->done = NULL;
	w->step = NULL;
	w->usage = NULL;
	if (done == NULL)
		return;
	worker_outcome(w);
	w->result.elapsed_ms = now_ms() - w->start_ms;
	done(w->arg, &w->result);
	worker_result_clear(&w->result);
}

/* Both the socket and the process are gone: free the slot. */
static void
worker_finish(struct worker *w)
{
	metrics_worker_exit(worker_exit_cause(w));
	if (w->state != WORKER_QUEUED) {
		table[w->id & 0xffff] = NULL;
		free_slots[nfree++] = w->id & 0xffff;
	}
	worker_deliver(w);
	worker_free(w);
	workers_pump();
}

/* The owner no longer wants it: no callback will run; the process dies. */
void
worker_cancel(struct worker *w)
{
	if (w == NULL)
		return;
	w->done = NULL;
	w->step = NULL;
	w->usage = NULL;
	w->cancelled = true;
	if (w->state == WORKER_QUEUED && !w->launch_failed) {
		TAILQ_REMOVE(&queue, w, entry);
		nqueued--;
		explicit_bzero(w->frame.data, w->frame.len);
		metrics_worker_exit(w->cut ? "cut_for_latency" : "cancel");
		worker_free(w);
		return;
	}
	worker_kill(w);
}

/*
 * Its task's quorum is in and it is a straggler: killed like a cancelled
 * worker (SIGKILL to its process group, the slot freed once the zygote
 * has reaped it), but counted apart, as the latency it saved.
 */
void
worker_cut(struct worker *w)
{
	if (w == NULL)
		return;
	w->cut = true;
	worker_cancel(w);
}

int
workers_queued(void)
{
	return nqueued;
}

/* Workers holding a slot: spawning, running or finishing. */
int
workers_running(void)
{
	return (int)(table_size - nfree);
}

void
workers_kill_all(void)
{
	struct worker	*w;

	while ((w = TAILQ_FIRST(&queue)) != NULL)
		worker_cancel(w);
	for (uint32_t i = 0; i < table_size; i++)
		if (table[i] != NULL)
			worker_cancel(table[i]);
}

void
worker_result_clear(struct worker_result *res)
{
	for (uint32_t i = 0; i < res->ntexts; i++)
		free(res->texts[i]);
	free(res->texts);
	free(res->error);
	memset(res, 0, sizeof *res);
}

/* At exit, after the zygote has killed and reaped every process. */
void
workers_free_all(void)
{
	struct worker	*w;

	while ((w = TAILQ_FIRST(&queue)) != NULL) {
		TAILQ_REMOVE(&queue, w, entry);
		nqueued--;
		worker_free(w);
	}
	for (uint32_t i = 0; i < table_size; i++)
		if (table[i] != NULL)
			worker_free(table[i]);
	free(table);
	free(free_slots);
	table = NULL;
	free_slots = NULL;
	table_size = nfree = 0;
}

/*
 * heavyd-egress: the one process that talks to the network (OpenBSD's
 * privilege separation, for the upstream).  heavyd executes it beside the
 * zygote with a SOCK_SEQPACKET pair on fd 3: MSG_EGRESS_CONFIG (the keys)
 * first, then a MSG_EGRESS_ATTACH per worker with that worker's socket.
 * Workers send MSG_EGRESS_REQUEST frames and get MSG_EGRESS_RESPONSE back.
 *
 * Every transfer runs on one libcurl multi handle driven by epoll, so the
 * connections to each upstream are pooled and kept alive (HTTP/2
 * multiplexed where offered).  The keys are added here, and only to their
 * own upstream; secrets are masked out of what comes back here; result
 * pages are fenced here (egress_fence.c).  A worker's socket that closes
 * (it exited, or was killed at its deadline) cancels its transfers at once.
 */
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "worker.h"
#include "egress.h"

#define EGRESS_MAX_REQ_FRAME	(64u << 20)	/* a transcript, at most */
#define EGRESS_READ_CHUNK	(64u << 10)

enum watch_type { WATCH_CONTROL, WATCH_CONN, WATCH_CURL, WATCH_DEAD };
struct watch {
	enum watch_type	 type;
	int		 fd;
	void		*p;
	uint32_t	 events;	/* WATCH_CURL: what epoll has now */
};

struct econn;
struct exfer {
	CURL			*easy;
	struct econn		*conn;
	uint32_t		 id;
	struct egress_req	 req;
	struct egress_sink	 sink;
	struct egress_fence	 fence;
	struct curl_slist	*headers;
	char			*url;
	char			 errbuf[CURL_ERROR_SIZE];
	struct gov_wait		 gov;		/* LLM calls: the governor's */
	struct exfer		*twin;		/* a hedged call's other transfer,
						   while both run */
	bool			 hedge;		/* this is the hedge */
	bool			 hedged;	/* its call was hedged */
	int64_t			 hedge_at;	/* ms; 0: no hedge due */
	TAILQ_ENTRY(exfer)	 entry;
	TAILQ_ENTRY(exfer)	 hentry;	/* egress_hedges, while due */
};
#define GOV_XFER(w)	((struct exfer *)(void *)((char *)(w) - \
			    offsetof(struct exfer, gov)))

struct econn {
	struct watch		 w;
	struct egress_attach	 policy;
	struct buf		 in;
	struct buf		 out;
	size_t			 out_off;
	bool			 writing;
	TAILQ_HEAD(, exfer)	 xfers;
	TAILQ_ENTRY(econn)	 entry;
};

static int			 egress_epfd = -1;
static struct watch		 egress_control = { WATCH_CONTROL, -1, NULL, 0 };
static CURLM			*egress_multi;
static struct egress_config	 egress_cfg;
static int64_t			 egress_timer_at = -1;	/* ms; -1: none */
static uint64_t			 egress_cancelled;
/* The LLM transfers a hedge is due for, soonest first (hedge_ms). */
static TAILQ_HEAD(exfer_list, exfer) egress_hedges =
    TAILQ_HEAD_INITIALIZER(egress_hedges);
/* Every worker's socket: epoll holds them too, but only we can free them. */
static TAILQ_HEAD(, econn)	 egress_conns =
    TAILQ_HEAD_INITIALIZER(egress_conns);
/* What an event of this epoll batch may still point to is freed after it. */
static void			**egress_dead;
static size_t			 egress_ndead, egress_dead_cap;

static void	egress_conn_close(struct econn *);
static int	egress_add(struct exfer *);
static void	egress_hedge_disarm(struct exfer *);
static void	egress_govern(struct exfer *, struct egress_upstream *);

static void
egress_bury(struct watch *w, void *p)
{
	w->type = WATCH_DEAD;
	if (egress_ndead == egress_dead_cap) {
		egress_dead_cap = egress_dead_cap ? 2 * egress_dead_cap : 16;
		egress_dead = xrealloc(egress_dead, egress_dead_cap *
		    sizeof *egress_dead);
	}
	egress_dead[egress_ndead++] = p;
}

static void
egress_bury_flush(void)
{
	for (size_t i = 0; i < egress_ndead; i++)
		free(egress_dead[i]);
	egress_ndead = 0;
}

/* Drops the first n bytes of b. */
static void
egress_consume(struct buf *b, size_t n)
{
	if (n == 0)
		return;
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

static void
egress_epoll(int op, struct watch *w, uint32_t events)
{
	struct epoll_event	ev = { .events = events, .data.ptr = w };

	if (epoll_ctl(egress_epfd, op, w->fd, &ev) == -1 && op != EPOLL_CTL_DEL)
		fatal("egress: epoll_ctl");
}

/* ---- curl's sockets and timer ---- */

static int
egress_socket_cb(CURL *e, curl_socket_t s, int what, void *arg, void *sp)
{
	struct watch	*w = sp;
	uint32_t	 ev = 0;

	(void)e; (void)arg;
	if (what == CURL_POLL_REMOVE) {
		if (w != NULL) {
			egress_epoll(EPOLL_CTL_DEL, w, 0);
			curl_multi_assign(egress_multi, s, NULL);
			egress_bury(w, w);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (w == NULL) {
		w = xcalloc(1, sizeof *w);
		w->type = WATCH_CURL;
		w->fd = s;
		w->events = ev;
		curl_multi_assign(egress_multi, s, w);
		egress_epoll(EPOLL_CTL_ADD, w, ev);
	} else if (w->events != ev) {
		w->events = ev;
		egress_epoll(EPOLL_CTL_MOD, w, ev);
	}
	return 0;
}

static int
egress_timer_cb(CURLM *m, long ms, void *arg)
{
	(void)m; (void)arg;
	egress_timer_at = ms < 0 ? -1 : now_ms() + ms;
	return 0;
}

/* ---- frames to a worker ---- */

static void
egress_conn_flush(struct econn *c)
{
	ssize_t	n;

	while (c->out_off < c->out.len) {
		n = send(c->w.fd, c->out.data + c->out_off,
		    c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			egress_conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out.len) {
		buf_reset(&c->out);
		c->out_off = 0;
	}
	if (c->writing != (c->out.len > 0)) {
		c->writing = c->out.len > 0;
		egress_epoll(EPOLL_CTL_MOD, &c->w, EPOLLIN |
		    (c->writing ? EPOLLOUT : 0));
	}
}

static void
egress_conn_send(struct econn *c, const struct egress_resp *s)
{
	struct buf	frame;

	m_create(&frame, MSG_EGRESS_RESPONSE);
	egress_resp_encode(&frame, s);
	m_close(&frame, SIZE_MAX);
	if (buf_add(&c->out, frame.data, frame.len) == -1)
		fatalx("egress: output buffer");
	buf_free(&frame);
	egress_conn_flush(c);
}

/*
 * MSG_EGRESS_WAITING: the worker's call waits for a permit (and why), or
 * its breaker fails it or probes with it.  Queued, not sent: the governor
 * calls this amid its line, which a send that fails (and so closes the
 * socket, and frees its calls) must not change; epoll's next turn sends.
 */
static void
egress_gov_note(struct gov_wait *w, enum egress_hold hold, uint32_t seconds)
{
	struct exfer		*x = GOV_XFER(w);
	struct econn		*c = x->conn;
	struct egress_note	 n = { x->id, hold, seconds };
	struct buf		 frame;

	m_create(&frame, MSG_EGRESS_WAITING);
	egress_note_encode(&frame, &n);
	m_close(&frame, SIZE_MAX);
	if (buf_add(&c->out, frame.data, frame.len) == -1)
		fatalx("egress: output buffer");
	buf_free(&frame);
	if (!c->writing) {
		c->writing = true;
		egress_epoll(EPOLL_CTL_MOD, &c->w, EPOLLIN | EPOLLOUT);
	}
}

/* An upstream's breaker changed: heavyd's metrics gauge. */
static void
egress_report_breaker(const char *base_url, const char *state)
{
	struct buf	frame;

	m_create(&frame, MSG_EGRESS_BREAKER);
	m_add_str(&frame, base_url);
	m_add_str(&frame, state);
	if (m_close(&frame, EGRESS_MAX_TARGET + 64) == 0)
		(void)send(egress_control.fd, frame.data, frame.len,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
	buf_free(&frame);
}

/* The total of cancelled transfers, for heavyd's metrics and tests; a
 * lost report is made good by the next, which carries the total. */
static void
egress_report_cancelled(void)
{
	struct buf	frame;

	m_create(&frame, MSG_EGRESS_CANCELLED);
	m_add_u64(&frame, egress_cancelled);
	m_close(&frame, SIZE_MAX);
	(void)send(egress_control.fd, frame.data, frame.len,
	    MSG_NOSIGNAL | MSG_DONTWAIT);
	buf_free(&frame);
}

/* ---- transfers ---- */

static void
egress_xfer_free(struct exfer *x)
{
	egress_hedge_disarm(x);
	if (x->twin != NULL)
		x->twin->twin = NULL;
	gov_cancel(&x->gov);
	if (x->easy != NULL) {
		curl_multi_remove_handle(egress_multi, x->easy);
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->headers);
	free(x->url);
	buf_free(&x->sink.body);
	egress_req_clear(&x->req);
	free(x);
}

/* A denial, answered at once without a transfer. */
static void
egress_deny(struct econn *c, uint32_t id, const char *why)
{
	struct egress_resp	s = { .id = id, .result = EGRESS_DENIED };

	s.error = (char *)why;
	s.retry_after = s.reset = s.content_type = s.body = "";
	egress_conn_send(c, &s);
}

static void
egress_answer(struct exfer *x, CURLcode rc)
{
	struct egress_resp	 s = { .id = x->id };
	long			 status = 0, oserr = 0;
	const char		*type = NULL;
	char			*body;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &type);
	s.status = status >= 100 && status <= 999 ? (uint32_t)status : 0;
	s.hedge = !x->hedged ? EGRESS_HEDGE_NONE : x->hedge ? EGRESS_HEDGE_WON :
	    EGRESS_HEDGE_LOST;
	s.result = egress_classify(rc, x->sink.over,
	    x->fence.refused[0] != '\0');
	if (s.result == EGRESS_CONNECT &&
	    curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr) == CURLE_OK &&
	    oserr > 0 && oserr < 4096)
		s.os_errno = (uint32_t)oserr;
	s.error = s.result == EGRESS_REFUSED ? x->fence.refused :
	    x->errbuf[0] != '\0' ? x->errbuf : (char *)curl_easy_strerror(rc);
	s.retry_after = x->sink.retry_after;
	s.reset = x->sink.reset;
	s.content_type = type != NULL && strlen(type) < 1024 ? (char *)type : "";
	s.body_len = x->sink.body.len;
	body = egress_redact(buf_cstr(&x->sink.body), &s.body_len);
	s.body = body;
	egress_conn_send(x->conn, &s);
	free(body);
}

/* ---- hedging (MSG_EGRESS_ATTACH's hedge_ms) ---- */

/* An LLM transfer just started: its hedge is due in hedge_ms, unless a
 * first byte comes first. */
static void
egress_hedge_arm(struct exfer *x)
{
	struct exfer	*y;

	if (x->conn->policy.hedge_ms == 0 || x->hedge || x->hedged)
		return;
	x->hedge_at = now_ms() + x->conn->policy.hedge_ms;
	TAILQ_FOREACH_REVERSE(y, &egress_hedges, exfer_list, hentry)
		if (y->hedge_at <= x->hedge_at)
			break;
	if (y == NULL)
		TAILQ_INSERT_HEAD(&egress_hedges, x, hentry);
	else
		TAILQ_INSERT_AFTER(&egress_hedges, y, x, hentry);
}

static void
egress_hedge_disarm(struct exfer *x)
{
	if (x->hedge_at == 0)
		return;
	TAILQ_REMOVE(&egress_hedges, x, hentry);
	x->hedge_at = 0;
}

static void
egress_req_copy(struct egress_req *to, const struct egress_req *q)
{
	*to = *q;
	to->target = xstrdup(q->target != NULL ? q->target : "");
	to->body = xmalloc(q->body_len + 1);
	if (q->body_len > 0)
		memcpy(to->body, q->body, q->body_len);
	to->body[q->body_len] = '\0';
}

/*
 * The same request again, beside x, with x's own time left.  Its permit is
 * the governor's like any call's, but only if one is free now: a hedge
 * never waits, breaks the cap or the rpm budget, nor goes while the
 * upstream is paused or its breaker is not closed.
 */
static void
egress_hedge(struct exfer *x)
{
	struct econn	*c = x->conn;
	struct exfer	*h = xcalloc(1, sizeof *h);
	int64_t		 left = x->gov.expires - now_ms();
	char		 why[256];

	if (left <= 0 || !gov_take(&h->gov, x->gov.up, c->policy.identity,
	    c->policy.task)) {
		log_debug("worker %u: no hedge for call %u: %s",
		    c->policy.worker_id, x->id, left <= 0 ? "no time left" :
		    "the governor has no permit free");
		free(h);
		return;
	}
	h->conn = c;
	h->id = x->id;
	h->hedge = h->hedged = true;
	egress_req_copy(&h->req, &x->req);
	if ((h->easy = curl_easy_init()) == NULL)
		fatalx("egress: curl_easy_init");
	if (egress_setup(h->easy, &c->policy, &egress_cfg, &h->req, &h->sink,
	    &h->fence, &h->headers, &h->url, why, sizeof why) == -1) {
		egress_xfer_free(h);
		return;
	}
	curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(h->easy, CURLOPT_PRIVATE, h);
	curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, (long)left);
	if (curl_multi_add_handle(egress_multi, h->easy) != CURLM_OK) {
		egress_xfer_free(h);
		return;
	}
	TAILQ_INSERT_TAIL(&c->xfers, h, entry);
	h->twin = x;
	x->twin = h;
	x->hedged = true;
	log_debug("worker %u: call %u hedged after %u ms without a first "
	    "byte", c->policy.worker_id, x->id, c->policy.hedge_ms);
}

/* The hedges due now, for calls that still have no first byte. */
static void
egress_hedge_pump(void)
{
	struct exfer	*x;
	int64_t		 now = now_ms();

	while ((x = TAILQ_FIRST(&egress_hedges)) != NULL &&
	    x->hedge_at <= now) {
		egress_hedge_disarm(x);
		if (!x->sink.started && x->twin == NULL)
			egress_hedge(x);
	}
}

/* One of a hedged pair ended without an answer worth keeping (no status,
 * a 5xx, a 429) while the other still runs: that one answers instead. */
static bool
egress_hedge_failed(const struct exfer *x, CURLcode rc, long status)
{
	if ((rc != CURLE_OK && !x->sink.over) || status >= 500 ||
	    status == 429) {
		log_debug("worker %u: call %u's %s failed; the other transfer "
		    "answers", x->conn->policy.worker_id, x->id, x->hedge ?
		    "hedge" : "first transfer");
		return true;
	}
	return false;
}

/* The other of a hedged pair answered first: this one goes at once. */
static void
egress_hedge_cancel(struct exfer *loser, const struct exfer *winner)
{
	log_debug("worker %u: call %u answered by its %s; the other transfer "
	    "is cancelled", winner->conn->policy.worker_id, winner->id,
	    winner->hedge ? "hedge" : "first transfer");
	TAILQ_REMOVE(&loser->conn->xfers, loser, entry);
	egress_xfer_free(loser);
}

static void
egress_done(void)
{
	CURLMsg		*msg;
	struct exfer	*x;
	struct econn	*c;
	long		 status;
	int		 left;

	while ((msg = curl_multi_info_read(egress_multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &x);
		c = x->conn;
		TAILQ_REMOVE(&c->xfers, x, entry);
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		gov_finished(&x->gov, status, msg->data.result == CURLE_OK ||
		    x->sink.over, &x->sink);
		if (x->twin != NULL && egress_hedge_failed(x, msg->data.result,
		    status)) {
			egress_xfer_free(x);	/* its twin answers */
			continue;
		}
		if (x->twin != NULL)
			egress_hedge_cancel(x->twin, x);
		egress_answer(x, msg->data.result);	/* may close c */
		egress_xfer_free(x);
	}
}

static void
egress_start(struct econn *c, struct egress_req *q)
{
	struct exfer	*x = xcalloc(1, sizeof *x);
	char		 why[256];

#ifdef HEAVY_TEST_HOOKS
	if (q->kind == EGRESS_PAGE && strncmp(q->target, "heavy-test-probe:",
	    17) == 0) {
		egress_sandbox_probe(q->target + 17, why, sizeof why);
		egress_deny(c, q->id, why);
		egress_req_clear(q);
		free(x);
		return;
	}
#endif
	x->conn = c;
	x->id = q->id;
	x->req = *q;
	memset(q, 0, sizeof *q);
	if ((x->easy = curl_easy_init()) == NULL)
		fatalx("egress: curl_easy_init");
	if (egress_setup(x->easy, &c->policy, &egress_cfg, &x->req, &x->sink,
	    &x->fence, &x->headers, &x->url, why, sizeof why) == -1) {
		egress_deny(c, x->id, why);
		egress_xfer_free(x);
		return;
	}
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	TAILQ_INSERT_TAIL(&c->xfers, x, entry);
	/* An LLM call waits for its upstream's permit (egress_gov.c). */
	if (x->req.kind == EGRESS_LLM) {
		egress_govern(x, gov_upstream(c->policy.base_url));
		return;
	}
	egress_add(x);
}

/* Into the governor's line, or failed fast by its breaker. */
static void
egress_govern(struct exfer *x, struct egress_upstream *u)
{
	struct egress_resp	s = { .id = x->id, .result = EGRESS_OPEN };
	char			why[512];

	if (gov_admit_wait(&x->gov, u, why, sizeof why) == -1) {
		s.error = why;
		s.retry_after = s.reset = s.content_type = s.body = "";
		TAILQ_REMOVE(&x->conn->xfers, x, entry);
		egress_conn_send(x->conn, &s);
		egress_xfer_free(x);
		return;
	}
	/* gov_pump tells the worker if it waits, and why. */
	gov_submit_as(&x->gov, u, x->conn->policy.identity,
	    x->conn->policy.task, now_ms() + (x->req.timeout_ms > 0 ?
	    x->req.timeout_ms : 600000));
}

/* Into the multi handle: the transfer begins; -1 when it could not
 * (answered, and x freed). */
static int
egress_add(struct exfer *x)
{
	if (curl_multi_add_handle(egress_multi, x->easy) != CURLM_OK) {
		TAILQ_REMOVE(&x->conn->xfers, x, entry);
		egress_deny(x->conn, x->id, "egress could not start the "
		    "transfer");
		egress_xfer_free(x);
		return -1;
	}
	return 0;
}

/* The governor's permit: the time spent waiting counts against the
 * request's own. */
static void
egress_gov_start(struct gov_wait *w)
{
	struct exfer	*x = GOV_XFER(w);
	int64_t		 left = w->expires - now_ms();

	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)(left > 1 ?
	    left : 1));
	if (egress_add(x) == 0)
		egress_hedge_arm(x);
}

/* Its time ran out in the governor's line. */
static void
egress_gov_expire(struct gov_wait *w)
{
	struct exfer		*x = GOV_XFER(w);
	struct egress_resp	 s = { .id = x->id, .result = EGRESS_TIMEOUT };

	s.error = "the request's time ran out waiting for the upstream's "
	    "governor (its rate limit or its cap on calls)";
	s.retry_after = s.reset = s.content_type = s.body = "";
	TAILQ_REMOVE(&x->conn->xfers, x, entry);
	egress_conn_send(x->conn, &s);
	egress_xfer_free(x);
}

/* ---- a worker's socket ---- */

static void
egress_conn_close(struct econn *c)
{
	struct exfer	*x;
	unsigned	 n = 0;

	while ((x = TAILQ_FIRST(&c->xfers)) != NULL) {
		TAILQ_REMOVE(&c->xfers, x, entry);
		egress_xfer_free(x);
		n++;
	}
	if (n > 0) {
		egress_cancelled += n;
		log_info("worker %u went away: %u transfer%s cancelled",
		    c->policy.worker_id, n, n == 1 ? "" : "s");
		egress_report_cancelled();
	}
	egress_epoll(EPOLL_CTL_DEL, &c->w, 0);
	close(c->w.fd);
	c->w.fd = -1;
	TAILQ_REMOVE(&egress_conns, c, entry);
	egress_attach_clear(&c->policy);
	buf_free(&c->in);
	buf_free(&c->out);
	egress_bury(&c->w, c);
}

/* Every whole frame in c->in: 0, 1 when c was closed meanwhile (an answer
 * it could not take), -1 when a frame is invalid. */
static int
egress_conn_frames(struct econn *c)
{
	struct msg_hdr		hdr;
	struct egress_req	q;
	size_t			off = 0;

	for (;;) {
		switch (m_frame_check(c->in.data + off, c->in.len - off,
		    EGRESS_MAX_REQ_FRAME, &hdr)) {
		case FRAME_INVALID:
			return -1;
		case FRAME_INCOMPLETE:
			egress_consume(&c->in, off);
			return 0;
		case FRAME_OK:
			break;
		}
		if (hdr.type != MSG_EGRESS_REQUEST ||
		    egress_req_decode(c->in.data + off + PROTO_HDR_LEN, hdr.len,
		    &q) == -1)
			return -1;
		off += PROTO_HDR_LEN + hdr.len;
		egress_start(c, &q);
		if (c->w.type == WATCH_DEAD)
			return 1;
	}
}

static void
egress_conn_read(struct econn *c)
{
	char	chunk[EGRESS_READ_CHUNK];
	ssize_t	n;
	int	rc;

	for (;;) {
		n = recv(c->w.fd, chunk, sizeof chunk, MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			egress_conn_close(c);
			return;
		}
		rc = buf_add(&c->in, chunk, (size_t)n) == -1 ? -1 :
		    egress_conn_frames(c);
		if (rc == 1)
			return;		/* closed already */
		if (rc == -1) {
			log_warnx("worker %u sent an invalid frame; its socket "
			    "is closed", c->policy.worker_id);
			egress_conn_close(c);
			return;
		}
	}
}

/* ---- heavyd's socket ---- */

static void
egress_attach(const void *p, size_t len, int fd)
{
	struct econn	*c = xcalloc(1, sizeof *c);

	if (fd == -1 || egress_attach_decode(p, len, &c->policy) == -1)
		fatalx("egress: heavyd sent an invalid attach frame");
	c->w.type = WATCH_CONN;
	c->w.fd = fd;
	c->w.p = c;
	buf_init(&c->in, EGRESS_MAX_REQ_FRAME + EGRESS_READ_CHUNK);
	buf_init(&c->out, 0);
	TAILQ_INIT(&c->xfers);
	TAILQ_INSERT_TAIL(&egress_conns, c, entry);
	egress_epoll(EPOLL_CTL_ADD, &c->w, EPOLLIN);
}

/* heavyd's frames; its socket closing means heavyd is gone: so are we. */
static void
egress_control_read(void)
{
	static uint8_t	 data[64 << 10];
	struct msg_hdr	 hdr;
	ssize_t		 n;
	int		 fd;

	for (;;) {
		n = fd_recv(egress_control.fd, data, sizeof data, &fd,
		    MSG_DONTWAIT);
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0)
			exit(0);
		if (m_frame_check(data, (size_t)n, (size_t)n, &hdr) != FRAME_OK ||
		    (size_t)n != PROTO_HDR_LEN + hdr.len ||
		    hdr.type != MSG_EGRESS_ATTACH)
			fatalx("egress: heavyd sent an invalid frame");
		egress_attach(data + PROTO_HDR_LEN, hdr.len, fd);
	}
}

const struct curl_blob	*egress_ca;
static struct curl_blob	 egress_ca_blob;

/*
 * ca_file (HEAVY_CA_FILE from heavyd), read whole before the sandbox: its
 * own uid and its rules need not reach the file, and a transfer verifies
 * against the bytes (CURLOPT_CAINFO_BLOB).
 */
static void
egress_read_ca(void)
{
	const char	*path = getenv("HEAVY_CA_FILE");
	struct buf	 b;
	char		 chunk[8192];
	ssize_t		 n;
	int		 fd;

	if (path == NULL || *path == '\0')
		return;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		fatal("egress: ca_file %s", path);
	buf_init(&b, EGRESS_CA_MAX);
	while ((n = read(fd, chunk, sizeof chunk)) > 0)
		if (buf_add(&b, chunk, (size_t)n) == -1)
			fatalx("egress: ca_file %s: larger than %d bytes", path,
			    EGRESS_CA_MAX);
	if (n == -1)
		fatal("egress: ca_file %s", path);
	close(fd);
	egress_ca_blob.data = b.data;	/* kept for the process's life */
	egress_ca_blob.len = b.len;
	egress_ca_blob.flags = CURL_BLOB_NOCOPY;
	egress_ca = &egress_ca_blob;
}

/* The first frame, blocking: the keys and caps. */
static void
egress_read_config(void)
{
	static uint8_t	 data[64 << 10];
	struct msg_hdr	 hdr;
	ssize_t		 n;
	int		 fd;

	n = fd_recv(egress_control.fd, data, sizeof data, &fd, 0);
	if (n <= 0 || fd != -1 ||
	    m_frame_check(data, (size_t)n, (size_t)n, &hdr) != FRAME_OK ||
	    (size_t)n != PROTO_HDR_LEN + hdr.len ||
	    hdr.type != MSG_EGRESS_CONFIG ||
	    egress_config_decode(data + PROTO_HDR_LEN, hdr.len,
	    &egress_cfg) == -1)
		fatalx("egress: heavyd sent no valid configuration");
	explicit_bzero(data, (size_t)n);
	secret_add(egress_cfg.api_key);
	secret_add(egress_cfg.search_api_key);
}

/* The second frame, blocking: the sandbox to enter once initialised. */
static void
egress_read_sandbox(struct sandbox *sb)
{
	static uint8_t	 data[4096];
	struct msg_hdr	 hdr;
	struct mreader	 r;
	uint32_t	 abi;
	ssize_t		 n;
	int		 fd;

	n = fd_recv(egress_control.fd, data, sizeof data, &fd, 0);
	if (n <= 0 || fd != -1 ||
	    m_frame_check(data, (size_t)n, (size_t)n, &hdr) != FRAME_OK ||
	    (size_t)n != PROTO_HDR_LEN + hdr.len ||
	    hdr.type != MSG_EGRESS_SANDBOX)
		fatalx("egress: heavyd sent no sandbox");
	m_reader_init(&r, data + PROTO_HDR_LEN, hdr.len);
	if (sandbox_decode(&r, sb) == -1 || m_get_u32(&r, &abi) == -1 ||
	    m_end(&r) == -1)
		fatalx("egress: heavyd sent an invalid sandbox");
	landlock_set_max((int)abi);
}

/* Once everything is open and initialised; never less than heavyd said. */
static void
egress_confine(struct sandbox *sb)
{
	char	err[256];

	if (egress_sandbox_enter(sb, err, sizeof err) == -1)
		fatalx("egress: its sandbox: %s", err);
	log_debug("sandboxed: uid %d, %s%s", (int)getuid(),
	    sb->fs == SANDBOX_FS_LANDLOCK ? "Landlock" : sb->fs ==
	    SANDBOX_FS_MOUNT ? "mount namespace" : "no filesystem confinement",
	    sb->flags & SANDBOX_SECCOMP ? ", seccomp" : "");
	sandbox_clear(sb);
}

static void
egress_setup_process(int fd)
{
	struct sandbox	sb;
	int		type;
	socklen_t	len = sizeof type;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_SEQPACKET)
		fatalx("heavyd-egress: started by heavyd, not by hand");
	prctl(PR_SET_NAME, "heavyd-egress");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		fatal("egress: PR_SET_PDEATHSIG");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);	/* heavyd decides; see the zygote */
	signal(SIGHUP, SIG_IGN);
	egress_control.fd = fd;
	egress_read_config();
	egress_read_ca();
	egress_read_sandbox(&sb);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (egress_multi = curl_multi_init()) == NULL)
		fatalx("egress: libcurl initialisation failed");
	curl_multi_setopt(egress_multi, CURLMOPT_SOCKETFUNCTION,
	    egress_socket_cb);
	curl_multi_setopt(egress_multi, CURLMOPT_TIMERFUNCTION, egress_timer_cb);
	curl_multi_setopt(egress_multi, CURLMOPT_PIPELINING,
	    (long)CURLPIPE_MULTIPLEX);
	gov_init(egress_cfg.max_calls, egress_cfg.breaker_failures,
	    egress_cfg.breaker_cooldown_s, egress_cfg.rpm,
	    egress_report_breaker);
	gov_set_tpm(egress_cfg.tpm);
	gov_set_note(egress_gov_note);
	/* Kept connections skip the handshakes; libcurl's default keeps 4 per
	 * transfer running, so the pool shrinks between bursts. */
	if (egress_cfg.idle_conns > 0)
		curl_multi_setopt(egress_multi, CURLMOPT_MAXCONNECTS,
		    (long)egress_cfg.idle_conns);
	if (egress_cfg.max_host_conns > 0)
		curl_multi_setopt(egress_multi, CURLMOPT_MAX_HOST_CONNECTIONS,
		    (long)egress_cfg.max_host_conns);
	if ((egress_epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("egress: epoll_create1");
	egress_epoll(EPOLL_CTL_ADD, &egress_control, EPOLLIN);
	egress_confine(&sb);
}

static int
egress_wait_ms(void)
{
	int64_t	left, at = egress_timer_at, gov = gov_next();

	if (gov >= 0 && (at < 0 || gov < at))
		at = gov;
	if (!TAILQ_EMPTY(&egress_hedges) &&
	    (at < 0 || TAILQ_FIRST(&egress_hedges)->hedge_at < at))
		at = TAILQ_FIRST(&egress_hedges)->hedge_at;
	if (at < 0)
		return -1;
	left = at - now_ms();
	return left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

static void
egress_event(struct watch *w, uint32_t ev)
{
	int	running, what = 0;

	switch (w->type) {
	case WATCH_CONTROL:
		if (w == &egress_control)
			egress_control_read();
		break;
	case WATCH_CONN:
		if (ev & EPOLLOUT)
			egress_conn_flush(w->p);
		if (w->type == WATCH_CONN && (ev & ~EPOLLOUT))
			egress_conn_read(w->p);
		break;
	case WATCH_DEAD:
		break;
	case WATCH_CURL:
		if (ev & EPOLLIN)
			what |= CURL_CSELECT_IN;
		if (ev & EPOLLOUT)
			what |= CURL_CSELECT_OUT;
		if (ev & (EPOLLERR | EPOLLHUP))
			what |= CURL_CSELECT_ERR;
		curl_multi_socket_action(egress_multi, w->fd, what, &running);
		egress_done();
		break;
	}
}

int
egress_main(int fd)
{
	struct epoll_event	evs[64];
	int			n, running;

	log_init("heavyd-egress", getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	egress_log_format();
	egress_setup_process(fd);
	for (;;) {
		n = epoll_wait(egress_epfd, evs, 64, egress_wait_ms());
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			fatal("egress: epoll_wait");
		/* One event's handling may end another's watch: it is
		 * marked dead, and freed after the batch. */
		for (int i = 0; i < n; i++)
			egress_event(evs[i].data.ptr, evs[i].events);
		egress_bury_flush();
		if (egress_timer_at >= 0 && now_ms() >= egress_timer_at) {
			egress_timer_at = -1;
			curl_multi_socket_action(egress_multi,
			    CURL_SOCKET_TIMEOUT, 0, &running);
			egress_done();
			egress_bury_flush();
		}
		gov_pump(egress_gov_start, egress_gov_expire);
		egress_bury_flush();
		egress_hedge_pump();
	}
}

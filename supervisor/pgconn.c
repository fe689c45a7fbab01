/*
 * One asynchronous libpq connection inside the event loop: a non-blocking
 * connect (PQconnectStartParams, PQconnectPoll), non-blocking sends
 * flushed on write readiness, answers read on read readiness, so a slow
 * or absent database never stalls the loop.  Queries wait in a bounded
 * queue.  In libpq's pipeline mode, up to `pipeline' of them at its head
 * are sent without waiting for the answers of those before, each followed
 * by a sync (so each is its own implicit transaction, and one's error
 * does not abort the next); the server runs them in order, one after the
 * other, and a query leaves the queue only once answered.  So when the
 * link dies, every query sent and unanswered is still at the head, and it
 * and everything after it are sent again, in order, once a new connection
 * is up (after a backoff that doubles up to a cap).  Several statements
 * in one string (pgconn_exec) cannot go through the pipeline (the
 * extended protocol takes one): such a query goes alone, outside it,
 * once those before it are answered.  A single statement is prepared on
 * its connection the first time it goes out (its Parse in the same sync
 * as its first run), and run by name after that, so the server plans a
 * store's statement once a connection rather than at every write.
 * LISTEN channels are listened to again on every new connection.  See
 * pgconn.h for the contract.
 *
 * libpq resolves a host name in PQconnectPoll, synchronously: a URL with
 * an address (or hostaddr=) keeps a slow resolver off the loop.
 */
#include <sys/queue.h>

#include <poll.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <json-c/linkhash.h>
#include <libpq-fe.h>

#include "supervisor.h"
#include "metrics.h"
#include "pgconn.h"

#define PGCONN_MAX_QUEUE	1024
#define PGCONN_PIPELINE		32
#define PGCONN_PREPARED		64
#define PGCONN_BACKOFF_MIN_MS	100
#define PGCONN_BACKOFF_MAX_MS	10000
#define PGCONN_CONNECT_MS	10000
#define PGCONN_MAX_CHANNELS	16

struct pgq {
	TAILQ_ENTRY(pgq)	 entry;
	char			*sql;
	char			**params;
	int			 nparams;
	bool			 multi;		/* PQsendQuery: several statements */
	bool			 internal;	/* our LISTEN: no callback, not counted */
	bool			 preparing;	/* its statement's Parse went with it */
	pgconn_result_fn	 cb;
	void			*arg;
};
TAILQ_HEAD(pgq_list, pgq);

struct pgconn {
	struct event_base	*base;
	char			*url;
	char			*shown;		/* url, password masked */
	int			 max_queue;
	int			 pipeline;	/* queries in flight at most */
	int			 max_prepared;	/* statements kept; < 0: none */
	int			 backoff_min_ms;
	int			 backoff_max_ms;
	int			 connect_timeout_ms;
	bool			 metrics;

	PGconn			*conn;
	enum pgconn_state	 state;
	struct event		*ev_poll;	/* connecting: one step */
	struct event		*ev_read;	/* connected */
	struct event		*ev_write;	/* connected, a send not flushed */
	struct event		*ev_timer;	/* connect timeout, or the retry */

	struct pgq_list		 queue;		/* the first inflight are sent */
	int			 queued;	/* the callers' queries */
	int			 inflight;	/* sent, not answered yet */
	bool			 piped;		/* in libpq's pipeline mode */
	struct lh_table		*prepared;	/* sql -> struct pgstmt, this link's */
	unsigned		 stmts;		/* statements named so far */
	PGresult		*last;		/* the head's last result so far */
	char			*first_error;	/* the head's first error */
	bool			 aborted;	/* the head's run was not: its Parse
						 * failed */
	int			 in_cb;		/* inside a caller's callback */

	char			*channels[PGCONN_MAX_CHANNELS];
	int			 nchannels;
	unsigned		 connects;
	unsigned		 failures;	/* attempts failed in a row */
	char			 error[256];

	pgconn_notify_fn	 notify;
	void			*notify_arg;
	pgconn_state_fn		 on_state;
	void			*state_arg;
};

static void	pgconn_connect(struct pgconn *);
static void	pgconn_kick(struct pgconn *);
static void	pgconn_poll_cb(evutil_socket_t, short, void *);

const char *
pgconn_state_name(enum pgconn_state s)
{
	switch (s) {
	case PGCONN_CONNECTED:
		return "connected";
	case PGCONN_CONNECTING:
		return "connecting";
	case PGCONN_DOWN:
		break;
	}
	return "down";
}

/*
 * For logs: the URL with its credentials masked, user:password@ as
 * common/secret.c masks it, and a password= parameter as well.
 */
char *
pgconn_url_display(const char *url)
{
	char	*s = secret_url(url), *p, *q, *out;
	size_t	 end;

	if ((q = strchr(s, '?')) == NULL || (p = strstr(q, "password=")) ==
	    NULL || (p[-1] != '?' && p[-1] != '&'))
		return s;
	p += strlen("password=");
	end = strcspn(p, "&#");
	out = xasprintf("%.*s[redacted]%s", (int)(p - s), s, p + end);
	free(s);
	return out;
}

void
pgconn_status(const struct pgconn *pc, struct pgconn_status *st)
{
	memset(st, 0, sizeof *st);
	st->state = pc->state;
	st->queued = pc->queued;
	st->max_queue = pc->max_queue;
	st->in_flight = pc->inflight;
	st->connects = pc->connects;
	snprintf(st->error, sizeof st->error, "%s", pc->error);
}

/* The state or the queue changed: the metrics and whoever watches. */
static void
pgconn_changed(struct pgconn *pc)
{
	struct pgconn_status	st;

	if (pc->metrics)
		metrics_store_link(pc->state == PGCONN_CONNECTED, pc->queued);
	if (pc->on_state == NULL)
		return;
	pgconn_status(pc, &st);
	pc->on_state(pc->state_arg, &st);
}

static void
pgconn_set_state(struct pgconn *pc, enum pgconn_state s)
{
	if (pc->state == s)
		return;
	pc->state = s;
	pgconn_changed(pc);
}

/* libpq's message, on one line. */
static void
pgconn_set_error(struct pgconn *pc, const char *why)
{
	snprintf(pc->error, sizeof pc->error, "%s", why && *why ? why :
	    "unknown error");
	for (char *p = pc->error; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = *(p + 1) == '\0' ? '\0' : ' ';
}

static void
pgq_free(struct pgq *q)
{
	free(q->sql);
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q);
}

/* The connection and its events, gone; the queue stays. */
static void
pgconn_teardown(struct pgconn *pc)
{
	struct pgq	*q, *next;

	if (pc->ev_poll != NULL)
		event_free(pc->ev_poll);
	if (pc->ev_read != NULL)
		event_free(pc->ev_read);
	if (pc->ev_write != NULL)
		event_free(pc->ev_write);
	pc->ev_poll = pc->ev_read = pc->ev_write = NULL;
	if (pc->conn != NULL)
		PQfinish(pc->conn);
	pc->conn = NULL;
	pc->inflight = 0;	/* those sent are sent again */
	pc->piped = false;
	if (pc->prepared != NULL)	/* gone with their session */
		lh_table_free(pc->prepared);
	pc->prepared = NULL;
	PQclear(pc->last);
	pc->last = NULL;
	free(pc->first_error);
	pc->first_error = NULL;
	pc->aborted = false;
	/* Our LISTENs are made again on the next connection. */
	for (q = TAILQ_FIRST(&pc->queue); q != NULL; q = next) {
		next = TAILQ_NEXT(q, entry);
		if (q->internal) {
			TAILQ_REMOVE(&pc->queue, q, entry);
			pgq_free(q);
		}
	}
}

/* The next attempt after a backoff that doubles, with jitter (several
 * nodes that lost one server do not come back in step). */
static void
pgconn_retry(struct pgconn *pc, const char *why)
{
	int64_t		delay = pc->backoff_min_ms;
	struct timeval	tv;

	pgconn_set_error(pc, why);	/* why may be libpq's, freed below */
	pgconn_teardown(pc);
	for (unsigned i = 0; i < pc->failures && delay < pc->backoff_max_ms; i++)
		delay *= 2;
	if (delay > pc->backoff_max_ms)
		delay = pc->backoff_max_ms;
	delay = delay / 2 + arc4random_uniform((uint32_t)(delay / 2) + 1);
	if (pc->failures++ == 0)
		log_warnx("task store: PostgreSQL at %s: %s; %d queries held, "
		    "trying again", pc->shown, pc->error, pc->queued);
	else
		log_debug("task store: PostgreSQL at %s: %s; again in %lld ms",
		    pc->shown, pc->error, (long long)delay);
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(pc->ev_timer, &tv);
	pgconn_set_state(pc, PGCONN_DOWN);
}

static void
pgconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn	*pc = arg;

	(void)fd;
	(void)what;
	if (pc->state == PGCONN_CONNECTING)
		pgconn_retry(pc, "timed out connecting");
	else if (pc->state == PGCONN_DOWN)
		pgconn_connect(pc);
}

/* Waits for the socket as PQconnectPoll asked (it may change sockets). */
static void
pgconn_poll_wait(struct pgconn *pc, PostgresPollingStatusType want)
{
	if (pc->ev_poll != NULL)
		event_free(pc->ev_poll);
	pc->ev_poll = event_new(pc->base, PQsocket(pc->conn),
	    want == PGRES_POLLING_READING ? EV_READ : EV_WRITE,
	    pgconn_poll_cb, pc);
	if (pc->ev_poll == NULL || event_add(pc->ev_poll, NULL) == -1)
		fatalx("pgconn: cannot watch the PostgreSQL socket");
}

static void
pgconn_read_cb(evutil_socket_t fd, short what, void *arg);
static void
pgconn_write_cb(evutil_socket_t fd, short what, void *arg);

/* Queues a LISTEN of ours at the head (before what waits to be sent). */
static void
pgconn_queue_listen(struct pgconn *pc, const char *channel, bool head)
{
	struct pgq	*q = xcalloc(1, sizeof *q);
	struct buf	 b;

	/* An identifier, quoted: "" doubles a quote inside. */
	buf_init(&b, 0);
	buf_addstr(&b, "LISTEN \"");
	for (const char *p = channel; *p != '\0'; p++) {
		if (*p == '"')
			buf_addstr(&b, "\"\"");
		else
			buf_add(&b, p, 1);
	}
	buf_addstr(&b, "\"");
	q->sql = buf_release(&b);
	q->internal = true;
	if (head)
		TAILQ_INSERT_HEAD(&pc->queue, q, entry);
	else
		TAILQ_INSERT_TAIL(&pc->queue, q, entry);
}

static void
pgconn_connected(struct pgconn *pc)
{
	int	fd = PQsocket(pc->conn);

	event_del(pc->ev_timer);
	if (pc->ev_poll != NULL)
		event_free(pc->ev_poll);
	pc->ev_poll = NULL;
	if (PQsetnonblocking(pc->conn, 1) == -1) {
		pgconn_retry(pc, PQerrorMessage(pc->conn));
		return;
	}
	fd_set_cloexec(fd);
	pc->ev_read = event_new(pc->base, fd, EV_READ | EV_PERSIST,
	    pgconn_read_cb, pc);
	pc->ev_write = event_new(pc->base, fd, EV_WRITE | EV_PERSIST,
	    pgconn_write_cb, pc);
	if (pc->ev_read == NULL || pc->ev_write == NULL ||
	    event_add(pc->ev_read, NULL) == -1)
		fatalx("pgconn: cannot watch the PostgreSQL socket");
	for (int i = pc->nchannels - 1; i >= 0; i--)
		pgconn_queue_listen(pc, pc->channels[i], true);
	if (pc->failures > 0 || pc->connects > 0)
		log_info("task store: PostgreSQL at %s is back; sending the %d "
		    "queries held", pc->shown, pc->queued);
	pc->connects++;
	pc->failures = 0;
	pc->error[0] = '\0';
	pgconn_set_state(pc, PGCONN_CONNECTED);
	pgconn_kick(pc);
}

static void
pgconn_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn			*pc = arg;
	PostgresPollingStatusType	 r;

	(void)fd;
	(void)what;
	switch ((r = PQconnectPoll(pc->conn))) {
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		pgconn_poll_wait(pc, r);
		break;
	case PGRES_POLLING_OK:
		pgconn_connected(pc);
		break;
	default:
		pgconn_retry(pc, PQerrorMessage(pc->conn));
		break;
	}
}

/* The server's notices (NOTICE: ... already exists, skipping; the FATAL
 * that ends an idle connection) go to the log, not to stderr. */
static void
pgconn_notice(void *arg, const char *message)
{
	struct pgconn	*pc = arg;

	log_debug("task store: PostgreSQL at %s: %.*s", pc->shown,
	    (int)strcspn(message, "\n"), message);
}

/* A new connection, bounded by connect_timeout_ms. */
static void
pgconn_connect(struct pgconn *pc)
{
	/*
	 * Before dbname (the URL), so that the URL may say otherwise: a peer
	 * that vanished without a word (a partition, a power cut) is found
	 * by TCP keepalives in about 25 s, not the kernel's two hours.
	 */
	const char *const	 keys[] = { "application_name", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
	    "dbname", NULL };
	const char *const	 values[] = { "heavyd", "10", "5", "3", "30000",
	    pc->url, NULL };
	struct timeval		 tv;

	pgconn_set_state(pc, PGCONN_CONNECTING);
	pc->conn = PQconnectStartParams(keys, values, 1);
	if (pc->conn == NULL)
		fatalx("pgconn: out of memory");
	PQsetNoticeProcessor(pc->conn, pgconn_notice, pc);
	if (PQstatus(pc->conn) == CONNECTION_BAD) {
		pgconn_retry(pc, PQerrorMessage(pc->conn));
		return;
	}
	tv.tv_sec = pc->connect_timeout_ms / 1000;
	tv.tv_usec = (pc->connect_timeout_ms % 1000) * 1000;
	evtimer_add(pc->ev_timer, &tv);
	pgconn_poll_wait(pc, PGRES_POLLING_WRITING);
}

/* Sends what libpq holds; watches for write readiness until it is out. */
static int
pgconn_flush(struct pgconn *pc)
{
	switch (PQflush(pc->conn)) {
	case 0:
		event_del(pc->ev_write);
		return 0;
	case 1:
		event_add(pc->ev_write, NULL);
		return 0;
	}
	pgconn_retry(pc, PQerrorMessage(pc->conn));
	return -1;
}

/* A statement prepared on this connection. */
struct pgstmt {
	char	*sql;
	char	 name[24];
};

static void
pgstmt_free(struct lh_entry *e)
{
	struct pgstmt	*st = lh_entry_v(e);

	free(st->sql);
	free(st);
}

/*
 * q's statement by name: prepared before, or now (its Parse queued ahead
 * of it, in its sync); "" unprepared (none kept, or no room); NULL when
 * libpq failed.  Each statement gets a name never used before on this
 * session, so one forgotten after an error never clashes.
 */
static const char *
pgconn_prepare(struct pgconn *pc, struct pgq *q)
{
	struct lh_entry	*e;
	struct pgstmt	*st;

	if (pc->max_prepared < 0)
		return "";
	if (pc->prepared == NULL)
		pc->prepared = lh_kchar_table_new(64, pgstmt_free);
	if ((e = lh_table_lookup_entry(pc->prepared, q->sql)) != NULL)
		return ((struct pgstmt *)lh_entry_v(e))->name;
	if (pc->prepared->count >= pc->max_prepared)
		return "";
	st = xcalloc(1, sizeof *st);
	st->sql = xstrdup(q->sql);
	snprintf(st->name, sizeof st->name, "heavyd_%u", ++pc->stmts);
	if (PQsendPrepare(pc->conn, st->name, st->sql, q->nparams, NULL) != 1) {
		free(st->sql);
		free(st);
		return NULL;
	}
	lh_table_insert(pc->prepared, st->sql, st);
	q->preparing = true;
	return st->name;
}

/*
 * One query out.  A single statement goes in the pipeline with a sync of
 * its own; several statements in one string, outside it (the caller sends
 * such a query alone).
 */
static int
pgconn_send(struct pgconn *pc, struct pgq *q)
{
	const char	*name;

	if (q->multi) {
		if (pc->piped && PQexitPipelineMode(pc->conn) != 1)
			return -1;
		pc->piped = false;
		return PQsendQuery(pc->conn, q->sql) == 1 ? 0 : -1;
	}
	if (!pc->piped && PQenterPipelineMode(pc->conn) != 1)
		return -1;
	pc->piped = true;
	q->preparing = false;
	if ((name = pgconn_prepare(pc, q)) == NULL)
		return -1;
	if ((*name != '\0' ? PQsendQueryPrepared(pc->conn, name, q->nparams,
	    (const char *const *)q->params, NULL, NULL, 0) :
	    PQsendQueryParams(pc->conn, q->sql, q->nparams, NULL,
	    (const char *const *)q->params, NULL, NULL, 0)) != 1 ||
	    PQpipelineSync(pc->conn) != 1)
		return -1;
	return 0;
}

/*
 * Sends what waits after the queries in flight, while the link is up and
 * the pipeline has room.  A multi-statement query waits until nothing is
 * in flight, and nothing follows it until it is answered.
 */
static void
pgconn_kick(struct pgconn *pc)
{
	struct pgq	*q = TAILQ_FIRST(&pc->queue);
	int		 sent = 0;

	if (pc->state != PGCONN_CONNECTED)
		return;
	for (int i = 0; q != NULL && i < pc->inflight; i++)
		q = TAILQ_NEXT(q, entry);
	for (; q != NULL && pc->inflight < pc->pipeline;
	    q = TAILQ_NEXT(q, entry)) {
		if (pc->inflight > 0 && (q->multi || !pc->piped))
			break;
		if (pgconn_send(pc, q) == -1) {
			pgconn_retry(pc, PQerrorMessage(pc->conn));
			return;
		}
		pc->inflight++;
		sent++;
	}
	if (sent > 0)
		pgconn_flush(pc);
}

static void
pgconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pgconn_flush(arg);
}

/*
 * The server's error says the connection, not the query, failed (class
 * 08, connection exception; 57P01-03, shut down or starting): the query
 * is sent again on the next connection rather than failed.
 */
static bool
pgconn_link_error(const PGresult *res)
{
	const char	*state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state == NULL || strncmp(state, "08", 2) == 0 ||
	    strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
	    strcmp(state, "57P03") == 0;
}

/* The head was answered: its callback, once, then the next query. */
static void
pgconn_complete(struct pgconn *pc)
{
	struct pgq	*q = TAILQ_FIRST(&pc->queue);
	PGresult	*res = pc->last;
	char		*error = pc->first_error;

	TAILQ_REMOVE(&pc->queue, q, entry);
	pc->inflight--;
	pc->last = NULL;
	pc->first_error = NULL;
	/* Its Parse failed (its run, after it in its sync, was aborted): the
	 * statement is forgotten, and prepared again at its next use (those
	 * sent after it by its name fail, as the same text would have).  A
	 * run that failed after a good Parse keeps it: prepared again, it
	 * would pile up on the server. */
	if (pc->aborted && q->preparing && pc->prepared != NULL)
		lh_table_delete(pc->prepared, q->sql);
	pc->aborted = false;
	if (q->internal) {
		if (error != NULL)
			log_warnx("task store: %s: %s", q->sql, error);
	} else {
		pc->queued--;
		pc->in_cb++;
		q->cb(q->arg, error ? NULL : res, error);
		pc->in_cb--;
		pgconn_changed(pc);
	}
	PQclear(res);
	free(error);
	pgq_free(q);
}

/*
 * Takes every result libpq has whole; -1 when the link failed.  In the
 * pipeline a query's results end with NULL, then its sync's
 * PGRES_PIPELINE_SYNC: answered then (libpq is idle between two syncs,
 * as leaving pipeline mode wants).  Outside it, NULL ends the query.
 */
static int
pgconn_results(struct pgconn *pc)
{
	PGresult	*res;
	ExecStatusType	 st;

	while (pc->state == PGCONN_CONNECTED && pc->inflight > 0 &&
	    !PQisBusy(pc->conn)) {
		if ((res = PQgetResult(pc->conn)) == NULL) {
			if (!pc->piped)
				pgconn_complete(pc);
			continue;
		}
		if ((st = PQresultStatus(res)) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			pgconn_complete(pc);
			continue;
		}
		if (st == PGRES_FATAL_ERROR && pgconn_link_error(res)) {
			pgconn_retry(pc, PQresultErrorMessage(res));
			PQclear(res);
			return -1;
		}
		if (st == PGRES_PIPELINE_ABORTED)
			pc->aborted = true;
		if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE ||
		    st == PGRES_PIPELINE_ABORTED) && pc->first_error == NULL) {
			pc->first_error = xstrdup(st == PGRES_PIPELINE_ABORTED ?
			    "not run: the pipeline was aborted" :
			    PQresultErrorMessage(res));
			pc->first_error[strcspn(pc->first_error, "\n")] = '\0';
		}
		PQclear(pc->last);
		pc->last = res;
	}
	return pc->state == PGCONN_CONNECTED ? 0 : -1;
}

static void
pgconn_notifies(struct pgconn *pc)
{
	PGnotify	*n;

	while (pc->conn != NULL && (n = PQnotifies(pc->conn)) != NULL) {
		if (pc->notify != NULL) {
			pc->in_cb++;
			pc->notify(pc->notify_arg, n->relname, n->extra);
			pc->in_cb--;
		}
		PQfreemem(n);
	}
}

static void
pgconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn	*pc = arg;

	(void)fd;
	(void)what;
	if (!PQconsumeInput(pc->conn)) {
		pgconn_retry(pc, PQerrorMessage(pc->conn));
		return;
	}
	pgconn_notifies(pc);
	if (pgconn_results(pc) == -1)
		return;
	pgconn_notifies(pc);
	if (PQstatus(pc->conn) == CONNECTION_BAD) {
		pgconn_retry(pc, PQerrorMessage(pc->conn));
		return;
	}
	pgconn_kick(pc);
}

/* A query into the queue, or -1 and why when it is full. */
static int
pgconn_enqueue(struct pgconn *pc, struct pgq *q, char *err, size_t errlen)
{
	if (pc->queued >= pc->max_queue) {
		snprintf(err, errlen, "the task store's queue is full (%d "
		    "queries wait for PostgreSQL, which is %s%s%s)",
		    pc->queued, pgconn_state_name(pc->state),
		    pc->error[0] ? ": " : "", pc->error);
		pgq_free(q);
		return -1;
	}
	TAILQ_INSERT_TAIL(&pc->queue, q, entry);
	pc->queued++;
	pgconn_changed(pc);
	if (pc->in_cb == 0)
		pgconn_kick(pc);
	return 0;
}

int
pgconn_query(struct pgconn *pc, const char *sql, int nparams,
    const char *const *params, pgconn_result_fn cb, void *arg, char *err,
    size_t errlen)
{
	struct pgq	*q = xcalloc(1, sizeof *q);

	q->sql = xstrdup(sql);
	q->nparams = nparams;
	if (nparams > 0)
		q->params = xcalloc((size_t)nparams, sizeof *q->params);
	for (int i = 0; i < nparams; i++)
		q->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	q->cb = cb;
	q->arg = arg;
	return pgconn_enqueue(pc, q, err, errlen);
}

int
pgconn_exec(struct pgconn *pc, const char *sql, pgconn_result_fn cb,
    void *arg, char *err, size_t errlen)
{
	struct pgq	*q = xcalloc(1, sizeof *q);

	q->sql = xstrdup(sql);
	q->multi = true;
	q->cb = cb;
	q->arg = arg;
	return pgconn_enqueue(pc, q, err, errlen);
}

int
pgconn_listen(struct pgconn *pc, const char *channel, char *err,
    size_t errlen)
{
	if (*channel == '\0' || strlen(channel) >= 64) {
		snprintf(err, errlen, "a channel name has 1 to 63 bytes");
		return -1;
	}
	for (int i = 0; i < pc->nchannels; i++)
		if (strcmp(pc->channels[i], channel) == 0)
			return 0;
	if (pc->nchannels == PGCONN_MAX_CHANNELS) {
		snprintf(err, errlen, "at most %d channels", PGCONN_MAX_CHANNELS);
		return -1;
	}
	pc->channels[pc->nchannels++] = xstrdup(channel);
	if (pc->state == PGCONN_CONNECTED) {
		pgconn_queue_listen(pc, channel, false);
		if (pc->in_cb == 0)
			pgconn_kick(pc);
	}
	return 0;
}

void
pgconn_on_notify(struct pgconn *pc, pgconn_notify_fn fn, void *arg)
{
	pc->notify = fn;
	pc->notify_arg = arg;
}

void
pgconn_on_state(struct pgconn *pc, pgconn_state_fn fn, void *arg)
{
	pc->on_state = fn;
	pc->state_arg = arg;
}

/* Starts connecting at once; queries may be queued before it is up. */
struct pgconn *
pgconn_new(struct event_base *base, const struct pgconn_config *cfg)
{
	struct pgconn	*pc = xcalloc(1, sizeof *pc);

	pc->base = base;
	pc->url = xstrdup(cfg->url);
	pc->shown = pgconn_url_display(cfg->url);
	secret_add_url(cfg->url);
	pc->max_queue = cfg->max_queue > 0 ? cfg->max_queue :
	    PGCONN_MAX_QUEUE;
	pc->pipeline = cfg->pipeline > 0 ? cfg->pipeline : PGCONN_PIPELINE;
	pc->max_prepared = cfg->prepared != 0 ? cfg->prepared :
	    PGCONN_PREPARED;
	pc->backoff_min_ms = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms :
	    PGCONN_BACKOFF_MIN_MS;
	pc->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms :
	    PGCONN_BACKOFF_MAX_MS;
	if (pc->backoff_max_ms < pc->backoff_min_ms)
		pc->backoff_max_ms = pc->backoff_min_ms;
	pc->connect_timeout_ms = cfg->connect_timeout_ms > 0 ?
	    cfg->connect_timeout_ms : PGCONN_CONNECT_MS;
	pc->metrics = cfg->metrics;
	TAILQ_INIT(&pc->queue);
	if ((pc->ev_timer = evtimer_new(base, pgconn_timer_cb, pc)) == NULL)
		fatalx("pgconn: evtimer_new");
	pc->state = PGCONN_DOWN;
	pgconn_connect(pc);
	return pc;
}

void
pgconn_free(struct pgconn *pc)
{
	struct pgq	*q;

	if (pc == NULL)
		return;
	pgconn_teardown(pc);
	event_free(pc->ev_timer);
	while ((q = TAILQ_FIRST(&pc->queue)) != NULL) {
		TAILQ_REMOVE(&pc->queue, q, entry);
		if (!q->internal)
			q->cb(q->arg, NULL, "the task store's connection was "
			    "closed before PostgreSQL answered");
		pgq_free(q);
	}
	for (int i = 0; i < pc->nchannels; i++)
		free(pc->channels[i]);
	pc->state = PGCONN_DOWN;
	pc->queued = 0;
	if (pc->metrics)
		metrics_store_link(false, 0);
	explicit_bzero(pc->url, strlen(pc->url));
	free(pc->url);
	free(pc->shown);
	free(pc);
}

/*
 * At exit, with the loop no longer running: what is held goes out and is
 * answered, driven by poll(2), for at most timeout_ms.  Only a link that
 * is up is used (no new connection); what is left then is answered with
 * an error by pgconn_free.  0 when the queue emptied.
 */
int
pgconn_finish(struct pgconn *pc, int timeout_ms)
{
	int64_t		deadline = now_ms() + timeout_ms;
	struct pollfd	pfd;
	int		wait;

	while (pc->state == PGCONN_CONNECTED && !TAILQ_EMPTY(&pc->queue) &&
	    (wait = (int)(deadline - now_ms())) > 0) {
		pgconn_kick(pc);
		if (pc->state != PGCONN_CONNECTED)
			break;
		pfd.fd = PQsocket(pc->conn);
		pfd.events = POLLIN | (event_pending(pc->ev_write, EV_WRITE,
		    NULL) ? POLLOUT : 0);
		if (poll(&pfd, 1, wait) <= 0)
			continue;
		if ((pfd.revents & POLLOUT) && pgconn_flush(pc) == -1)
			break;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
			pgconn_read_cb(pfd.fd, EV_READ, pc);
	}
	return TAILQ_EMPTY(&pc->queue) ? 0 : -1;
}

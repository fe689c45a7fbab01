/*
 * Workers' stderr, relayed on heavyd's event loop.  The zygote makes each
 * worker's stderr pipe and passes its read end here at once (a
 * MSG_ZYGOTE_STDERR), keeping no copy: a fork of the zygote then inherits
 * no worker's pipe, where it used to inherit (and close) every live one.
 *
 * Each line goes to our stderr behind the label the job was given
 * ("heavyd-worker[pid] task 1a2b3c4d agent 2: ..."), control bytes made
 * visible, cut at RELAY_LINE, and no more than RELAY_MAX in all, so a
 * hostile worker can neither forge heavyd's own lines nor flood its log.
 * A line our log cannot take now (a full stderr, journald behind) is held
 * and the pipe left unread until it goes: the worker waits on its pipe, as
 * it did on the zygote's blocking writes, and heavyd's loop never does.
 * A pipe is closed at its end of file: when the worker (and anything it
 * forked) has exited and its last bytes are relayed.
 */
#include <sys/resource.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

#define RELAY_LINE	1024		/* a line longer than this is cut */
#define RELAY_MAX	(64 << 10)	/* a worker's whole say; the rest is dropped */
#define RELAY_LABEL	64

#define RELAY_RETRY_MS	10		/* a refused line, tried again */

struct relay {
	pid_t		 pid;
	int		 fd;			/* the pipe's read end */
	struct event	*ev, *retry;
	char		 label[RELAY_LABEL];
	char		 line[RELAY_LINE];
	size_t		 len;
	bool		 ready;			/* line is whole, to emit */
	bool		 eof;
	bool		 capped;		/* the cap was said */
	size_t		 total;			/* bytes relayed */
	const char	*src;			/* read, not yet split */
	char		*rest;			/* its copy, when a line is held */
	size_t		 off, clen;
	TAILQ_ENTRY(relay) entry;
};

static TAILQ_HEAD(, relay)	 relays = TAILQ_HEAD_INITIALIZER(relays);
static struct lh_table		*relay_pids;	/* pid -> its newest relay */
static bool			 relay_stopping;	/* drop, never hold */
/* One buffer for every read: 1,600 live pipes hold only their line. */
static char			 relay_buf[4096];

static unsigned long
relay_hash(const void *k)
{
	return (unsigned long)(uintptr_t)k * 2654435761u;
}

static int
relay_equal(const void *a, const void *b)
{
	return a == b;
}

static int
relay_say(struct relay *r, const char *text)
{
	if (relay_stopping) {
		log_relay((int)r->pid, r->label, text);
		return 0;
	}
	return log_relay_try((int)r->pid, r->label, text);
}

/*
 * One line, as one event of the worker's own (log_relay), made safe; -1
 * when our log cannot take it now (it is kept, to be tried again).
 */
static int
relay_emit(struct relay *r)
{
	char	text[RELAY_LINE + 1], more[64];

	if (r->total >= RELAY_MAX) {
		snprintf(more, sizeof more, "(its further output is dropped: "
		    "%d KiB said)", RELAY_MAX >> 10);
		if (!r->capped && relay_say(r, more) == -1)
			return -1;
		r->capped = true;
		r->len = 0;
		return 0;
	}
	for (size_t i = 0; i < r->len; i++)
		if ((unsigned char)r->line[i] < 0x20 && r->line[i] != '\t')
			r->line[i] = '?';	/* no \r, no escapes: no forgery */
	memcpy(text, r->line, r->len);
	text[r->len] = '\0';
	if (relay_say(r, text) == -1)
		return -1;
	r->total += r->len;
	r->len = 0;
	/* At the cap, its notice next (the same call, or a retry). */
	return r->total >= RELAY_MAX ? relay_emit(r) : 0;
}

/* The newest relay of pid, or NULL. */
static struct relay *
relay_find(pid_t pid)
{
	struct lh_entry	*e;

	if (relay_pids == NULL ||
	    (e = lh_table_lookup_entry(relay_pids, (void *)(intptr_t)pid)) ==
	    NULL)
		return NULL;
	return (struct relay *)lh_entry_v(e);
}

static void
relay_free(struct relay *r)
{
	if (relay_find(r->pid) == r)
		lh_table_delete(relay_pids, (void *)(intptr_t)r->pid);
	TAILQ_REMOVE(&relays, r, entry);
	event_free(r->ev);
	if (r->retry != NULL)
		event_free(r->retry);
	free(r->rest);
	close(r->fd);
	free(r);
}

static void	relay_retry_cb(evutil_socket_t, short, void *);

/* Our log refused a line: the pipe waits (and its worker), not the line. */
static void
relay_hold(struct relay *r)
{
	struct timeval	tv = { 0, RELAY_RETRY_MS * 1000 };

	event_del(r->ev);
	if (r->retry == NULL)
		r->retry = evtimer_new(ev_base, relay_retry_cb, r);
	evtimer_add(r->retry, &tv);
}

/*
 * Splits what was read into lines and emits them: 1 when one is held,
 * -1 when the pipe is done (closed and freed), else 0.
 */
static int
relay_run(struct relay *r)
{
	char	c;

	for (;;) {
		if (r->ready) {
			if (relay_emit(r) == -1) {
				relay_hold(r);
				return 1;
			}
			r->ready = false;
		}
		if (r->off == r->clen)
			break;
		c = r->src[r->off++];
		if (c != '\n')
			r->line[r->len++] = c;
		if (c == '\n' || r->len == RELAY_LINE)
			r->ready = true;
	}
	if (r->eof && r->len > 0) {	/* its last words, unended */
		r->ready = true;
		return relay_run(r);
	}
	if (r->eof) {
		relay_free(r);
		return -1;
	}
	free(r->rest);
	r->rest = NULL;
	r->src = NULL;
	r->off = r->clen = 0;
	return 0;
}

/* Reads once and relays: as relay_run, and 0 when nothing waited. */
static int
relay_read(struct relay *r)
{
	ssize_t	n;

	int	rc;

	n = read(r->fd, relay_buf, sizeof relay_buf);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	r->src = relay_buf;
	r->off = 0;
	r->clen = n > 0 ? (size_t)n : 0;
	r->eof = n <= 0;
	if ((rc = relay_run(r)) == 1) {		/* the shared buffer: copied */
		r->rest = xmalloc(r->clen - r->off + 1);
		memcpy(r->rest, r->src + r->off, r->clen - r->off);
		r->clen -= r->off;
		r->off = 0;
		r->src = r->rest;
	}
	return rc;
}

/*
 * What a worker wrote.  One read a turn, so a worker that floods its
 * stderr takes its turn with the MCP input, not the loop; past RELAY_MAX
 * it is still read (and dropped), so the worker never blocks on it.
 */
static void
relay_read_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	relay_read(arg);
}

/* A held line, tried again; then the pipe is read again. */
static void
relay_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct relay	*r = arg;

	(void)fd; (void)events;
	if (relay_run(r) == 0)
		event_add(r->ev, NULL);
}

/* A worker's stderr (pid's), from the zygote; the fd is ours from now. */
void
relay_add(pid_t pid, int fd, const char *label)
{
	struct relay	*r;

	if (relay_pids == NULL)
		relay_pids = lh_table_new(256, NULL, relay_hash, relay_equal);
	fd_set_nonblock(fd, 1);
	r = xcalloc(1, sizeof *r);
	r->pid = pid;
	r->fd = fd;
	snprintf(r->label, sizeof r->label, "%s", label);
	r->ev = event_new(ev_base, fd, EV_READ | EV_PERSIST, relay_read_cb, r);
	event_add(r->ev, NULL);
	TAILQ_INSERT_TAIL(&relays, r, entry);
	/* A pid reused while its old pipe drains: the new one is named. */
	lh_table_insert(relay_pids, (void *)(intptr_t)pid, r);
}

/* A spare took a job: its lines are the job's from now. */
void
relay_label(pid_t pid, const char *label)
{
	struct relay	*r;

	if ((r = relay_find(pid)) == NULL)
		return;
	snprintf(r->label, sizeof r->label, "%s", label);
}

/*
 * heavyd holds a pipe per live worker, beside its pidfd and socket: as
 * many descriptors as the hard limit allows.
 */
void
relay_init(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* At shutdown, the workers gone: what is left in each pipe, then close. */
void
relay_stop(void)
{
	struct relay	*r;
	int		 n, rc;

	relay_stopping = true;
	/* Bounded: a worker still alive may still be writing. */
	while ((r = TAILQ_FIRST(&relays)) != NULL) {
		n = 0;
		rc = relay_run(r);
		while (rc == 0 && ++n < RELAY_MAX / 4096 + 2 &&
		    (rc = relay_read(r)) == 0 && !r->eof && r->clen > 0)
			;
		if (rc != -1)
			relay_free(r);
	}
	relay_stopping = false;
	if (relay_pids != NULL)
		lh_table_free(relay_pids);
	relay_pids = NULL;
}

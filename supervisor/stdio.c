/*
 * The stdio transport: newline-delimited JSON-RPC on stdin and stdout, one
 * session, the local user's.  stdout carries MCP messages and nothing
 * else.  While the client is slow to read what we wrote, we stop reading
 * what it sends.  When stdin ends, every line left is answered and heavyd
 * shuts down.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "supervisor.h"

#define STDIO_FLUSH_STALL_MS	10000	/* a reader this slow at exit is gone */

struct stdio_peer {
	struct mcp_session	*s;
	struct bufferevent	*in, *out;
	size_t			 max_line;
	bool			 discarding;	/* the rest of a long line */
	void			(*gone)(void);	/* the client went away */
};
static struct stdio_peer	*stdio_peer;

/* Every message is one line; which request it belongs to does not matter. */
static void
stdio_send(void *arg, const struct mcp_out *m)
{
	struct stdio_peer	*p = arg;
	struct evbuffer		*out = bufferevent_get_output(p->out);

	evbuffer_add_buffer(out, m->msg);
	evbuffer_add(out, "\n", 1);
}

static const struct mcp_transport stdio_transport = { "stdio", stdio_send,
    NULL };

static void
stdio_too_long(struct stdio_peer *p)
{
	char	msg[128];

	snprintf(msg, sizeof msg, "Invalid Request: message exceeds "
	    "max_line_bytes (%zu bytes)", p->max_line);
	mcp_error(p->s, NULL, RPC_INVALID_REQUEST, msg);
}

/* Stops reading while the client is slow to read what we wrote. */
static bool
stdio_output_full(struct stdio_peer *p)
{
	return evbuffer_get_length(bufferevent_get_output(p->out)) >
	    4 * p->max_line;
}

/* Takes a line of len bytes and eol_len more; a CR before the LF goes. */
static void
stdio_take_line(struct stdio_peer *p, struct evbuffer *in, size_t len,
    size_t eol_len)
{
	char	*line = xmalloc(len + 1);

	evbuffer_remove(in, line, len);
	evbuffer_drain(in, eol_len);
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	mcp_session_line(p->s, line, len);
	free(line);
}

/*
 * Handles the next complete line of the input; false when there is none.
 * An over-long line is refused once, and dropped up to its newline.
 */
static bool
stdio_next_line(struct stdio_peer *p, struct evbuffer *in)
{
	struct evbuffer_ptr	 eol;
	size_t			 eol_len, len;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		if (evbuffer_get_length(in) > p->max_line) {
			if (!p->discarding)
				stdio_too_long(p);
			p->discarding = true;
			evbuffer_drain(in, evbuffer_get_length(in));
		}
		return false;
	}
	len = (size_t)eol.pos;
	if (p->discarding || len > p->max_line) {
		if (!p->discarding)
			stdio_too_long(p);
		p->discarding = false;
		evbuffer_drain(in, len + eol_len);
		return true;
	}
	stdio_take_line(p, in, len, eol_len);
	return true;
}

static void
stdio_read_cb(struct bufferevent *bev, void *arg)
{
	struct stdio_peer	*p = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);

	while (!stdio_output_full(p))
		if (!stdio_next_line(p, in))
			return;
	bufferevent_disable(p->in, EV_READ);
}

static void
stdio_write_cb(struct bufferevent *bev, void *arg)
{
	struct stdio_peer	*p = arg;

	(void)bev;
	if (!(bufferevent_get_enabled(p->in) & EV_READ)) {
		bufferevent_enable(p->in, EV_READ);
		stdio_read_cb(p->in, p);	/* lines already buffered */
	}
}

/*
 * Writes what is left for the client: we are about to exit.  A socket
 * bufferevent keeps the front of its output frozen (only its own write
 * callback drains it), so evbuffer_write would fail here and the tail be
 * lost: its writing is stopped and the front thawed.  A write or wait cut
 * by a signal is retried; a reader that takes nothing for
 * STDIO_FLUSH_STALL_MS, or is gone, gets nothing more.
 */
static void
stdio_flush(struct stdio_peer *p)
{
	static bool	 gone;	/* once, then every later flush drops */
	struct evbuffer	*out = bufferevent_get_output(p->out);
	struct pollfd	 pfd = { .fd = STDOUT_FILENO, .events = POLLOUT };
	int		 n;

	bufferevent_disable(p->out, EV_WRITE);
	evbuffer_unfreeze(out, 1);
	while (!gone && evbuffer_get_length(out) > 0) {
		errno = 0;
		if ((n = evbuffer_write(out, STDOUT_FILENO)) > 0 ||
		    (n == -1 && errno == EINTR))
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
		    ((n = poll(&pfd, 1, STDIO_FLUSH_STALL_MS)) > 0 ||
		    (n == -1 && errno == EINTR)))
			continue;
		gone = true;
	}
	evbuffer_drain(out, evbuffer_get_length(out));
}

/*
 * stdin ended: every line left is answered, the last one even without
 * its newline, the output written out whenever it fills.
 */
static void
stdio_eof(struct stdio_peer *p)
{
	struct evbuffer	*in = bufferevent_get_input(p->in);
	size_t		 len;

	while (stdio_next_line(p, in))
		if (stdio_output_full(p))
			stdio_flush(p);
	len = evbuffer_get_length(in);
	if (p->discarding)	/* the end of an over-long line */
		evbuffer_drain(in, len);
	else if (len > 0)
		stdio_take_line(p, in, len, 0);
}

static void
stdio_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct stdio_peer	*p = arg;

	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (bev == p->in) {
		stdio_eof(p);
		log_debug("stdin closed; shutting down");
	} else
		log_warnx("stdout closed; shutting down");
	p->gone();
}

/* Over stdio the caller is the local user; gone() runs when it leaves. */
int
stdio_start(const struct heavy_config *cfg, void (*gone)(void))
{
	struct stdio_peer	*p = xcalloc(1, sizeof *p);
	char			*owner;

	stdio_peer = p;
	p->max_line = cfg->max_line_bytes;
	p->gone = gone;
	owner = xasprintf("uid:%u", (unsigned)getuid());
	p->s = mcp_session_new(&stdio_transport, p, owner, true);
	free(owner);
	if (fd_set_nonblock(STDIN_FILENO, 1) == -1 ||
	    fd_set_nonblock(STDOUT_FILENO, 1) == -1)
		return -1;
	p->in = bufferevent_socket_new(ev_base, STDIN_FILENO, 0);
	p->out = bufferevent_socket_new(ev_base, STDOUT_FILENO, 0);
	if (p->in == NULL || p->out == NULL)
		return -1;
	bufferevent_setcb(p->in, stdio_read_cb, NULL, stdio_event_cb, p);
	bufferevent_setcb(p->out, NULL, stdio_write_cb, stdio_event_cb, p);
	bufferevent_setwatermark(p->out, EV_WRITE, cfg->max_line_bytes, 0);
	bufferevent_enable(p->in, EV_READ);
	bufferevent_enable(p->out, EV_WRITE);
	return 0;
}

/* After mcp_fini: every reply is in the output; it is written out. */
void
stdio_stop(void)
{
	struct stdio_peer	*p = stdio_peer;

	if (p == NULL)
		return;
	if (p->out != NULL) {
		stdio_flush(p);
		bufferevent_free(p->out);
	}
	if (p->in != NULL)
		bufferevent_free(p->in);
	fd_set_nonblock(STDIN_FILENO, 0);
	fd_set_nonblock(STDOUT_FILENO, 0);
	mcp_session_close(p->s);
	free(p);
	stdio_peer = NULL;
}

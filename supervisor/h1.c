/*
 * heavyd's own HTTP/1.1 server, in place of evhttp, whose copies of every
 * header, printf-formatted heads and per-request allocations were half of
 * a ping's instructions.  A connection reads into one flat buffer; a
 * request's head is parsed there in place (h1_parse: strict, every size
 * bounded), its body is read after it (Content-Length only: a chunked
 * request body gets 411, any other transfer coding 501), and the request
 * is handed over whole.  One request of a connection is served at a time:
 * pipelined ones wait in the buffer, in order.  Replies are whole
 * (Content-Length) or streamed (chunked; close-delimited to HTTP/1.0).
 *
 * The socket is watched for EV_READ|EV_CLOSED the whole time, so a ping
 * costs no epoll change at all; while a request waits for its reply, what
 * the client sends more is buffered up to the buffer's size, and then
 * only a hang-up is watched for.  A hang-up while a request waits, a
 * timeout, or a drop ends the connection and tells its owner (the close
 * callback).  A connection closed on our side (an error, Connection:
 * close, HTTP/1.0) is shut for writing once its reply is out and read to
 * its end for a moment, so that the client reads that reply rather than
 * a reset.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>

#include "supervisor.h"
#include "h1.h"

#define H1_INBUF_MIN	1024		/* most heads fit; 10,000 streams hold it */
#define H1_INBUF_KEEP	16384		/* past it, an emptied buffer shrinks */
#define H1_LINGER_S	2		/* reading a closed connection to its end */
#define H1_ACCEPT_BATCH	64
#define H1_ACCEPT_PAUSE_MS 500		/* out of descriptors: a pause */
#define H1_READ_CHUNK	16384

enum h1_state {
	H1_IDLE,		/* between requests */
	H1_READING,		/* a request is arriving */
	H1_WAITING,		/* a request is with its owner */
	H1_STREAMING,		/* its reply is being streamed */
	H1_CLOSING		/* written out, then shut and lingered */
};

/* Text made up in place, its room kept from one request to the next. */
struct h1_text {
	char			*p;
	size_t			 len, cap;
	bool			 stack;		/* p is the caller's, not to free */
};

struct h1_req {
	struct h1_conn		*conn;
	struct h1_head		 head;
	char			*body;
	size_t			 blen;
	struct h1_text		 out;		/* the reply's headers, added */
	int			 status;
	bool			 chunked;	/* a streamed reply's framing */
};

struct h1_conn {
	struct h1_server	*srv;
	int			 fd;
	struct event		*rev;		/* EV_READ|EV_CLOSED, or EV_CLOSED */
	struct event		*wev;
	struct event		*timer;		/* its timeouts, and its drop */
	char			*in;
	size_t			 inlen, incap;
	size_t			 used;		/* the request's bytes in in */
	char			 saved;		/* what the body's NUL covers */
	bool			 readclosed;	/* rev watches EV_CLOSED only */
	bool			 eof, dead, lingering;
	int			 busy;		/* callbacks on the stack */
	enum h1_state		 state;
	bool			 headdone;	/* parsed, its body on its way */
	struct evbuffer		*out;
	struct h1_req		*req;		/* with its owner: &r */
	struct h1_req		 r;		/* the one being read */
	h1_close_cb		 closecb;
	void			*closearg;
	struct sockaddr_storage	 peer;
	char			 peername[INET6_ADDRSTRLEN];
	TAILQ_ENTRY(h1_conn)	 entry;
};

struct h1_listener {
	int			 fd;
	struct event		*ev;
};

struct h1_server {
	struct event_base	*base;
	struct h1_limits	 lim;
	h1_request_cb		 cb, donecb;
	void			*arg;
	struct h1_listener	*ls;
	int			 nls;
	struct event		*resume;	/* accepting again after EMFILE */
	TAILQ_HEAD(, h1_conn)	 conns;
	int			 nconns;
};

static void	h1_conn_close(struct h1_conn *);
static void	h1_conn_input(struct h1_conn *);
static void	h1_conn_write(struct h1_conn *);
static void	h1_conn_timer(struct h1_conn *);
static void	h1_conn_grow(struct h1_conn *, size_t);
static void	h1_read_cb(evutil_socket_t, short, void *);

/* ------------------------------------------------------------ parsing */

static const struct { const char *name; size_t len; enum h1_method m; }
    h1_methods[] = {
	{ "GET", 3, H1_GET }, { "POST", 4, H1_POST },
	{ "DELETE", 6, H1_DELETE }, { "PUT", 3, H1_PUT },
	{ "PATCH", 5, H1_PATCH }, { "HEAD", 4, H1_HEAD },
	{ "OPTIONS", 7, H1_OPTIONS },
};

/* RFC 9110's tchar, by table: a header name is checked byte by byte. */
static const uint8_t h1_tchars[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
	['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1,
};

static bool
h1_tchar(unsigned char c)
{
	return h1_tchars[c] != 0;
}

/* The end of the line at p (its CR or LF), or NULL past end. */
static char *
h1_eol(char *p, char *end)
{
	char	*lf = memchr(p, '\n', (size_t)(end - p));

	if (lf == NULL)
		return NULL;
	return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

/* Where the head ends (past its empty line), or 0. */
static size_t
h1_head_end(const char *buf, size_t len)
{
	const char	*p = buf, *end = buf + len, *lf;

	while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf + 1 < end && lf[1] == '\n')
			return (size_t)(lf + 2 - buf);
		if (lf + 2 < end && lf[1] == '\r' && lf[2] == '\n')
			return (size_t)(lf + 3 - buf);
		p = lf + 1;
	}
	return 0;
}

/* METHOD SP target SP HTTP/1.x: 0, or a status. */
static int
h1_parse_line(char *p, char *eol, struct h1_head *h, const char **why)
{
	char	*sp, *target, *q;
	size_t	 mlen;

	*why = "a malformed request line";
	if ((sp = memchr(p, ' ', (size_t)(eol - p))) == NULL || sp == p)
		return 400;
	mlen = (size_t)(sp - p);
	for (char *c = p; c < sp; c++)
		if (!h1_tchar((unsigned char)*c))
			return 400;
	h->method = H1_OTHER;
	for (size_t i = 0; i < sizeof h1_methods / sizeof *h1_methods; i++)
		if (mlen == h1_methods[i].len &&
		    memcmp(p, h1_methods[i].name, mlen) == 0)
			h->method = h1_methods[i].m;
	target = sp + 1;
	if ((sp = memchr(target, ' ', (size_t)(eol - target))) == NULL ||
	    sp == target || eol - sp != 9 || memcmp(sp + 1, "HTTP/1.", 7) != 0 ||
	    (sp[8] != '0' && sp[8] != '1'))
		return 400;
	h->minor = sp[8] - '0';
	for (q = target; q < sp; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return 400;
	if (strncasecmp(target, "http://", 7) == 0 ||
	    strncasecmp(target, "https://", 8) == 0) {	/* absolute-form */
		target = memchr(target, '/', (size_t)(sp - target)) + 2;
		if ((target = memchr(target, '/', (size_t)(sp - target))) ==
		    NULL)
			target = sp - 1, *target = '/';	/* (its space: kept) */
	} else if (*target != '/' && !(sp - target == 1 && *target == '*'))
		return 400;
	if ((q = memchr(target, '?', (size_t)(sp - target))) != NULL)
		sp = q;
	*sp = '\0';
	h->path = target;
	return 0;
}

/* A Content-Length: digits only, and the same when repeated. */
static int
h1_parse_clen(const char *v, struct h1_head *h, bool *seen, const char **why)
{
	uint64_t	n = 0;

	*why = "a bad Content-Length";
	if (*v == '\0')
		return 400;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > (UINT64_MAX - 9) / 10)
			return 400;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	if (*seen && n != h->clen)
		return 400;
	*seen = true;
	h->clen = n;
	return 0;
}

/* Whether the comma-separated list v has token t. */
static bool
h1_list_has(const char *v, const char *t)
{
	size_t	tlen = strlen(t), n;

	while (*v != '\0') {
		v += strspn(v, " \t,");
		n = strcspn(v, ",");
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == tlen && strncasecmp(v, t, n) == 0)
			return true;
		v += strcspn(v, ",");
	}
	return false;
}

/* What the headers that frame the request say; 0 or a status. */
static int
h1_parse_framing(struct h1_head *h, const char **why)
{
	bool		 seen = false, te = false, close = false, ka = false;
	const char	*v;

	for (int i = 0; i < h->nhdrs; i++) {
		v = h->hdrs[i].value;
		switch (h->hdrs[i].nlen) {
		case 6:
			if (strcasecmp(h->hdrs[i].name, "Expect") == 0)
				h->expect_continue = strcasecmp(v,
				    "100-continue") == 0;
			break;
		case 10:
			if (strcasecmp(h->hdrs[i].name, "Connection") == 0) {
				close |= h1_list_has(v, "close");
				ka |= h1_list_has(v, "keep-alive");
			}
			break;
		case 14:
			if (strcasecmp(h->hdrs[i].name, "Content-Length") == 0 &&
			    h1_parse_clen(v, h, &seen, why) != 0)
				return 400;
			break;
		case 17:
			if (strcasecmp(h->hdrs[i].name, "Transfer-Encoding") ==
			    0)
				te = true;
			break;
		}
	}
	h->keepalive = !close && (h->minor == 1 || ka);
	if (te) {
		*why = "a chunked or otherwise encoded request body (send "
		    "Content-Length)";
		return seen ? 400 : 411;
	}
	return 0;
}

/* name: OWS value OWS, in place; 0 or a status. */
static int
h1_parse_header(char *p, char *eol, struct h1_hdr *hd, const char **why)
{
	char	*colon, *v, *e = eol;

	*why = "a malformed header";
	if ((colon = memchr(p, ':', (size_t)(eol - p))) == NULL || colon == p)
		return 400;
	for (char *c = p; c < colon; c++)
		if (!h1_tchar((unsigned char)*c))
			return 400;
	for (v = colon + 1; v < e && (*v == ' ' || *v == '\t'); v++)
		;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	for (unsigned char *c = (unsigned char *)v; c < (unsigned char *)e; c++)
		if ((*c < ' ' && *c != '\t') || *c == 0x7f)
			return 400;	/* (obs-text, 0x80 and up, is let in) */
	*colon = '\0';
	*e = '\0';
	hd->name = p;
	hd->nlen = (size_t)(colon - p);
	hd->value = v;
	return 0;
}

/*
 * Parses the head at buf (len bytes so far) in place: H1_PARSE_MORE when
 * it is not all there, 1 when it is (*used: its length), or an HTTP
 * status and why.  Strings in h point into buf.
 */
int
h1_parse(char *buf, size_t len, const struct h1_limits *lim,
    struct h1_head *h, size_t *used, const char **why)
{
	char	*p = buf, *end, *eol, *next;
	size_t	 n;
	int	 rc;

	*why = NULL;
	h->nhdrs = 0;
	h->clen = 0;
	h->expect_continue = h->keepalive = false;
	while (len > 0 && (*p == '\r' || *p == '\n'))	/* RFC 9112 2.2 */
		p++, len--;
	if ((n = h1_head_end(p, len)) == 0) {
		*why = "the request's headers are too large";
		return len > lim->max_header_bytes ? 431 : H1_PARSE_MORE;
	}
	*why = "the request's headers are too large";
	if (n > lim->max_header_bytes)
		return 431;
	end = p + n;
	*used = (size_t)(end - buf);
	eol = h1_eol(p, end);
	if ((rc = h1_parse_line(p, eol, h, why)) != 0)
		return rc;
	for (p = eol + (*eol == '\r' ? 2 : 1); p < end && *p != '\r' &&
	    *p != '\n'; p = next) {
		eol = h1_eol(p, end);
		next = eol + (*eol == '\r' ? 2 : 1);	/* (before the NULs) */
		if (*p == ' ' || *p == '\t') {
			*why = "a folded header line";
			return 400;
		}
		if (h->nhdrs == lim->max_headers) {
			*why = "too many header lines";
			return 431;
		}
		if (h->nhdrs == h->hcap) {
			h->hcap = h->hcap == 0 ? 16 : h->hcap * 2;
			h->hdrs = xrealloc(h->hdrs, (size_t)h->hcap *
			    sizeof *h->hdrs);
		}
		if ((rc = h1_parse_header(p, eol, &h->hdrs[h->nhdrs], why)) !=
		    0)
			return rc;
		h->nhdrs++;
	}
	return (rc = h1_parse_framing(h, why)) != 0 ? rc : 1;
}

void
h1_head_clear(struct h1_head *h)
{
	free(h->hdrs);
	memset(h, 0, sizeof *h);
}

/* ------------------------------------------------------------ replies */

/* Date, made once a second (RFC 1123, whatever the locale). */
static const char *
h1_date(struct h1_server *srv)
{
	static time_t	 when = -1;
	static char	 date[64] = "Thu, 01 Jan 1970 00:00:00 GMT";
	struct timeval	 tv;
	struct tm	 tm;

	if (event_base_gettimeofday_cached(srv->base, &tv) == 0 &&
	    tv.tv_sec != when && gmtime_r(&tv.tv_sec, &tm) != NULL &&
	    evutil_date_rfc1123(date, sizeof date, &tm) > 0)
		when = tv.tv_sec;
	return date;
}

static void
h1_text_add(struct h1_text *t, const char *s, size_t n)
{
	char	*p;

	if (n == 0)
		return;		/* (s may be NULL: no headers added) */
	if (t->len + n > t->cap) {
		t->cap = t->len + n < 256 ? 256 : 2 * (t->len + n);
		p = xrealloc(t->stack ? NULL : t->p, t->cap);
		if (t->stack)
			memcpy(p, t->p, t->len);
		t->p = p;
		t->stack = false;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
}

static void
h1_add_str(struct h1_text *t, const char *s)
{
	h1_text_add(t, s, strlen(s));
}

/* A number's digits, without printf: they end at end. */
static char *
h1_fmt_num(char *end, uint64_t n, unsigned base)
{
	do {
		*--end = "0123456789abcdef"[n % base];
		n /= base;
	} while (n != 0);
	return end;
}

static void
h1_add_num(struct h1_text *t, uint64_t n)
{
	char	d[24], *p = h1_fmt_num(d + sizeof d, n, 10);

	h1_text_add(t, p, (size_t)(d + sizeof d - p));
}

/*
 * The reply's head: status, Date, the headers its owner added, framing
 * (clen; -1: streamed), and Connection when it is not HTTP/1.x's default.
 */
static void
h1_head_out(struct h1_req *req, int status, const char *reason,
    int64_t clen, bool keep)
{
	struct h1_conn	*c = req->conn;
	char		 buf[1024];
	struct h1_text	 t = { buf, 0, sizeof buf, true }, *o = &t;

	req->status = status;
	h1_text_add(o, "HTTP/1.1 ", 9);
	h1_add_num(o, (uint64_t)status);
	h1_text_add(o, " ", 1);
	h1_add_str(o, reason);
	h1_text_add(o, "\r\nDate: ", 8);
	h1_add_str(o, h1_date(c->srv));
	h1_text_add(o, "\r\n", 2);
	h1_text_add(o, req->out.p, req->out.len);
	if (clen >= 0) {
		h1_text_add(o, "Content-Length: ", 16);
		h1_add_num(o, (uint64_t)clen);
		h1_text_add(o, "\r\n", 2);
	} else if (req->chunked)
		h1_add_str(o, "Transfer-Encoding: chunked\r\n");
	if (!keep)
		h1_add_str(o, "Connection: close\r\n");
	else if (req->head.minor == 0)
		h1_add_str(o, "Connection: keep-alive\r\n");
	h1_text_add(o, "\r\n", 2);
	evbuffer_add(c->out, o->p, o->len);
	if (!o->stack)
		free(o->p);
	req->out.len = 0;
}

void
h1_req_add_header(struct h1_req *req, const char *name, const char *value)
{
	h1_add_str(&req->out, name);
	h1_text_add(&req->out, ": ", 2);
	h1_add_str(&req->out, value);
	h1_text_add(&req->out, "\r\n", 2);
}

/* Whether the reply has header name yet (a rare question: searched). */
bool
h1_req_has_out_header(const struct h1_req *req, const char *name)
{
	size_t		 len = strlen(name);
	const char	*p = req->out.p, *end, *eol;

	if (req->out.len == 0)
		return false;
	for (end = p + req->out.len; p < end; p = eol + 1) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		if ((size_t)(eol - p) > len && p[len] == ':' &&
		    strncasecmp(p, name, len) == 0)
			return true;
	}
	return false;
}

/* The request is answered: the connection turns to the next one. */
static void
h1_req_done(struct h1_req *req, bool keep)
{
	struct h1_conn	*c = req->conn;
	size_t		 n = c->used + req->blen;

	if (c->srv->donecb != NULL)
		c->srv->donecb(req, c->srv->arg);
	c->req = NULL;
	c->in[n] = c->saved;
	memmove(c->in, c->in + n, c->inlen - n);
	c->inlen -= n;
	c->used = 0;
	c->headdone = false;
	if (c->incap > H1_INBUF_KEEP && c->inlen < H1_INBUF_MIN)
		h1_conn_grow(c, H1_INBUF_MIN);	/* (a large body's room) */
	req->out.len = 0;
	c->state = keep && !c->eof ? H1_IDLE : H1_CLOSING;
	if (c->readclosed) {
		c->readclosed = false;
		event_del(c->rev);
		event_assign(c->rev, c->srv->base, c->fd, EV_READ | EV_CLOSED |
		    EV_PERSIST, h1_read_cb, c);
		event_add(c->rev, NULL);
	}
	h1_conn_timer(c);
	h1_conn_write(c);
	if (c->state == H1_IDLE && c->inlen > 0 && c->busy == 0)
		event_active(c->rev, EV_READ, 1);	/* a pipelined one */
}

static bool
h1_keep(const struct h1_req *req)
{
	return req->head.keepalive && !req->conn->eof;
}

/* A whole reply, its body len bytes at body. */
void
h1_reply(struct h1_req *req, int status, const char *reason,
    const void *body, size_t len)
{
	bool	keep = h1_keep(req);

	h1_head_out(req, status, reason, (int64_t)len, keep);
	if (req->head.method != H1_HEAD && len > 0)
		evbuffer_add(req->conn->out, body, len);
	h1_req_done(req, keep);
}

/* A whole reply, its body in body (NULL: none), which it empties. */
void
h1_reply_buf(struct h1_req *req, int status, const char *reason,
    struct evbuffer *body)
{
	size_t	len = body != NULL ? evbuffer_get_length(body) : 0;
	bool	keep = h1_keep(req);

	h1_head_out(req, status, reason, (int64_t)len, keep);
	if (req->head.method != H1_HEAD && len > 0)
		evbuffer_add_buffer(req->conn->out, body);
	h1_req_done(req, keep);
}

/* A streamed reply's head: chunked, or close-delimited to HTTP/1.0. */
void
h1_reply_start(struct h1_req *req, int status, const char *reason)
{
	struct h1_conn	*c = req->conn;

	req->chunked = req->head.minor == 1;
	h1_head_out(req, status, reason, -1, req->chunked && h1_keep(req));
	c->state = H1_STREAMING;
	h1_conn_timer(c);
	h1_conn_write(c);
}

/* More of a streamed reply (buf emptied); nothing for nothing. */
void
h1_reply_chunk(struct h1_req *req, struct evbuffer *buf)
{
	struct evbuffer	*o = req->conn->out;
	size_t		 len = evbuffer_get_length(buf);
	char		 d[24], *p;

	if (len == 0 || req->head.method == H1_HEAD)
		return;
	if (req->chunked) {
		d[sizeof d - 2] = '\r';
		d[sizeof d - 1] = '\n';
		p = h1_fmt_num(d + sizeof d - 2, len, 16);
		evbuffer_add(o, p, (size_t)(d + sizeof d - p));
	}
	evbuffer_add_buffer(o, buf);
	if (req->chunked)
		evbuffer_add(o, "\r\n", 2);
	h1_conn_write(req->conn);
}

void
h1_reply_end(struct h1_req *req)
{
	if (req->chunked && req->head.method != H1_HEAD)
		evbuffer_add(req->conn->out, "0\r\n\r\n", 5);
	h1_req_done(req, req->chunked && h1_keep(req));
}

/* ------------------------------------------------------------ a request */

enum h1_method
h1_req_method(const struct h1_req *req)
{
	return req->head.method;
}

const char *
h1_req_method_name(const struct h1_req *req)
{
	for (size_t i = 0; i < sizeof h1_methods / sizeof *h1_methods; i++)
		if (h1_methods[i].m == req->head.method)
			return h1_methods[i].name;
	return "other";
}

const char *
h1_req_path(const struct h1_req *req)
{
	return req->head.path;
}

/* The first header name has (any case), or NULL. */
const char *
h1_req_header(const struct h1_req *req, const char *name)
{
	size_t	len = strlen(name);

	for (int i = 0; i < req->head.nhdrs; i++)
		if (req->head.hdrs[i].nlen == len &&
		    strcasecmp(req->head.hdrs[i].name, name) == 0)
			return req->head.hdrs[i].value;
	return NULL;
}

/* Wipes every header name has (a secret seen), and forgets it. */
void
h1_req_wipe_header(struct h1_req *req, const char *name)
{
	struct h1_hdr	*h;
	size_t		 len = strlen(name);

	for (int i = 0; i < req->head.nhdrs; i++) {
		h = &req->head.hdrs[i];
		if (h->nlen != len || strcasecmp(h->name, name) != 0)
			continue;
		explicit_bzero((char *)(uintptr_t)h->value, strlen(h->value));
		memmove(h, h + 1, (size_t)(req->head.nhdrs - i - 1) *
		    sizeof *h);
		req->head.nhdrs--;
		i--;
	}
}

/* Its body, NUL-ended. */
const char *
h1_req_body(const struct h1_req *req, size_t *len)
{
	*len = req->blen;
	return req->body;
}

int
h1_req_status(const struct h1_req *req)
{
	return req->status;
}

struct h1_conn *
h1_req_conn(const struct h1_req *req)
{
	return req->conn;
}

/* ------------------------------------------------------------ connections */

void
h1_conn_set_closecb(struct h1_conn *c, h1_close_cb cb, void *arg)
{
	c->closecb = cb;
	c->closearg = arg;
}

/* The peer's address, "" for a unix socket's. */
const char *
h1_conn_peer(struct h1_conn *c)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&c->peer;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&c->peer;

	if (c->peername[0] != '\0')
		return c->peername;
	if (c->peer.ss_family == AF_INET)
		inet_ntop(AF_INET, &sin->sin_addr, c->peername,
		    sizeof c->peername);
	else if (c->peer.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &sin6->sin6_addr, c->peername,
		    sizeof c->peername);
	return c->peername;
}

/* What it has still to write. */
size_t
h1_conn_backlog(const struct h1_conn *c)
{
	return evbuffer_get_length(c->out);
}

/* Ends it, outside whatever called us (its close callback runs then). */
void
h1_conn_drop(struct h1_conn *c)
{
	if (!c->dead) {
		c->dead = true;
		event_active(c->timer, EV_TIMEOUT, 1);	/* h1_timer_cb */
	}
}

/* Its owner is told, and it goes. */
static void
h1_conn_close(struct h1_conn *c)
{
	struct h1_server	*srv = c->srv;

	if (c->closecb != NULL)
		c->closecb(c, c->closearg);
	event_free(c->rev);
	event_free(c->wev);
	event_free(c->timer);
	close(c->fd);
	evbuffer_free(c->out);
	free(c->r.out.p);
	h1_head_clear(&c->r.head);
	free(c->in);
	TAILQ_REMOVE(&srv->conns, c, entry);
	srv->nconns--;
	free(c);
}

/*
 * The timeout its state has: to read a request once it started, to be
 * idle between requests, to write a whole reply, to linger; none while a
 * request waits or a reply streams.
 */
static void
h1_conn_timer(struct h1_conn *c)
{
	struct timeval	tv = { c->srv->lim.request_timeout_s, 0 };

	if (c->dead)
		return;		/* its drop is pending on the timer */
	switch (c->state) {
	case H1_WAITING:
	case H1_STREAMING:
		evtimer_del(c->timer);
		return;
	case H1_IDLE:
		if (evbuffer_get_length(c->out) == 0)
			tv.tv_sec = c->srv->lim.idle_timeout_s;
		break;
	case H1_CLOSING:
		if (c->lingering)
			tv.tv_sec = H1_LINGER_S;
		break;
	case H1_READING:
		break;
	}
	evtimer_add(c->timer, &tv);
}

static void
h1_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct h1_conn	*c = arg;

	(void)fd; (void)events;
	if (c->dead) {
		h1_conn_close(c);	/* dropped */
		return;
	}
	if (c->state == H1_READING)
		log_debug("http: a request not read whole in %d s; closed",
		    c->srv->lim.request_timeout_s);
	if (c->state != H1_WAITING && c->state != H1_STREAMING)
		h1_conn_close(c);
}

/* Reading stops but for a hang-up (on), or goes on (off). */
static void
h1_conn_readclosed(struct h1_conn *c, bool on)
{
	if (c->readclosed == on)
		return;
	c->readclosed = on;
	event_del(c->rev);
	event_assign(c->rev, c->srv->base, c->fd, (on ? 0 : EV_READ) |
	    EV_CLOSED | EV_PERSIST, h1_read_cb, c);
	event_add(c->rev, NULL);
}

/* Writes what it can; the rest when the socket takes it.  Written out, a
 * closing connection is shut for writing and read to its end. */
static void
h1_conn_write(struct h1_conn *c)
{
	struct iovec	 iov[16];
	struct evbuffer_iovec v[16];
	struct msghdr	 mh = { .msg_iov = iov };
	ssize_t		 n;
	int		 nv;

	while (!c->dead && evbuffer_get_length(c->out) > 0) {
		nv = evbuffer_peek(c->out, -1, NULL, v, 16);
		if (nv > 16)
			nv = 16;
		for (int i = 0; i < nv; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
		}
		mh.msg_iovlen = (size_t)nv;
		if ((n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) > 0) {
			evbuffer_drain(c->out, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(c->wev, NULL);
			if (c->state == H1_IDLE || c->state == H1_CLOSING)
				h1_conn_timer(c);
			return;
		}
		h1_conn_drop(c);	/* the client is gone */
		return;
	}
	if (event_pending(c->wev, EV_WRITE, NULL))
		event_del(c->wev);
	if (c->state == H1_CLOSING && c->eof)
		h1_conn_drop(c);	/* it hung up: nothing to linger for */
	else if (c->state == H1_CLOSING && !c->lingering && !c->dead) {
		shutdown(c->fd, SHUT_WR);
		c->lingering = true;
		h1_conn_readclosed(c, false);
		h1_conn_timer(c);
	}
}

static void
h1_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct h1_conn	*c = arg;

	(void)fd; (void)events;
	h1_conn_write(c);
	if (c->state == H1_IDLE && evbuffer_get_length(c->out) == 0)
		h1_conn_timer(c);	/* now idle, not writing */
}

/* A refusal before the request is let in; the connection closes after. */
static void
h1_conn_refuse(struct h1_conn *c, int status, const char *why)
{
	static const struct { int status; const char *reason; } reasons[] = {
		{ 400, "Bad Request" }, { 411, "Length Required" },
		{ 413, "Payload Too Large" },
		{ 431, "Request Header Fields Too Large" },
		{ 501, "Not Implemented" } };
	const char	*reason = "Error";

	for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
		if (reasons[i].status == status)
			reason = reasons[i].reason;
	log_debug("http: %d %s: %s", status, reason, why);
	c->r.conn = c;
	c->r.head.minor = 1;
	c->r.head.method = H1_OTHER;
	h1_req_add_header(&c->r, "Content-Type", "text/plain; charset=utf-8");
	h1_head_out(&c->r, status, reason, (int64_t)strlen(why) + 1, false);
	evbuffer_add(c->out, why, strlen(why));
	evbuffer_add(c->out, "\n", 1);
	c->state = H1_CLOSING;
	c->inlen = c->used = 0;
	c->headdone = false;
	h1_conn_write(c);
	h1_conn_timer(c);
}

/* Grows the input buffer to cap; the parsed head's strings move along
 * (as offsets while it moves). */
static void
h1_conn_grow(struct h1_conn *c, size_t cap)
{
	struct h1_head	*h = &c->r.head;
	uintptr_t	 base = (uintptr_t)c->in;

	if (c->headdone) {
		h->path = (const char *)((uintptr_t)h->path - base);
		for (int i = 0; i < h->nhdrs; i++) {
			h->hdrs[i].name = (const char *)
			    ((uintptr_t)h->hdrs[i].name - base);
			h->hdrs[i].value = (const char *)
			    ((uintptr_t)h->hdrs[i].value - base);
		}
	}
	c->in = xrealloc(c->in, cap);
	c->incap = cap;
	if (!c->headdone)
		return;
	base = (uintptr_t)c->in;
	h->path = (const char *)((uintptr_t)h->path + base);
	for (int i = 0; i < h->nhdrs; i++) {
		h->hdrs[i].name = (const char *)((uintptr_t)h->hdrs[i].name +
		    base);
		h->hdrs[i].value = (const char *)((uintptr_t)h->hdrs[i].value +
		    base);
	}
}

/*
 * Reads what the socket has.  Until a head is parsed the buffer grows to
 * hold one; a parsed head has it sized for its body; while a request is
 * with its owner it does not grow (its strings point into it), and once
 * it is full only a hang-up is watched for.
 */
static void
h1_conn_read(struct h1_conn *c)
{
	size_t	room, cap = c->srv->lim.max_header_bytes + 2;
	ssize_t	n;

	room = c->incap - c->inlen - 1;		/* a NUL after a body */
	if (room == 0 && !c->headdone && c->state != H1_WAITING &&
	    c->state != H1_STREAMING && c->incap < cap) {
		h1_conn_grow(c, c->incap * 2 < cap ? c->incap * 2 : cap);
		room = c->incap - c->inlen - 1;
	}
	if (room == 0) {
		h1_conn_readclosed(c, true);
		return;
	}
	if ((n = read(c->fd, c->in + c->inlen, room)) > 0)
		c->inlen += (size_t)n;
	else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR))
		c->eof = true;
}

/* The request is all there: its owner has it. */
static void
h1_conn_dispatch(struct h1_conn *c)
{
	struct h1_req	*req = &c->r;
	size_t		 end = c->used + req->head.clen;

	req->conn = c;
	req->body = c->in + c->used;
	req->blen = req->head.clen;
	req->status = 0;
	req->chunked = false;
	c->saved = c->in[end];
	c->in[end] = '\0';
	c->state = H1_WAITING;
	c->req = req;
	evtimer_del(c->timer);
	c->srv->cb(req, c->srv->arg);
}

/* Its head parsed: sized for its body, which may be asked for. */
static int
h1_conn_head(struct h1_conn *c)
{
	struct h1_head	*h = &c->r.head;

	if (h->clen > c->srv->lim.max_body_bytes) {
		h1_conn_refuse(c, 413, "the request's body is too large");
		return -1;
	}
	c->headdone = true;
	if (c->used + h->clen + 1 > c->incap)
		h1_conn_grow(c, c->used + h->clen + 1);
	if (h->expect_continue && h->minor == 1 &&
	    c->inlen < c->used + h->clen) {
		evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		h1_conn_write(c);
	}
	return 0;
}

/* Parses and serves the requests it has, in order, one at a time. */
static void
h1_conn_input(struct h1_conn *c)
{
	const char	*why;
	int		 rc;

	while (!c->dead && (c->state == H1_IDLE || c->state == H1_READING)) {
		if (c->inlen == 0)
			return;
		if (c->state == H1_IDLE) {
			c->state = H1_READING;
			h1_conn_timer(c);
		}
		if (!c->headdone) {
			rc = h1_parse(c->in, c->inlen, &c->srv->lim, &c->r.head,
			    &c->used, &why);
			if (rc == H1_PARSE_MORE && c->inlen + 2 >=
			    c->srv->lim.max_header_bytes + 2)
				rc = 431;
			if (rc == H1_PARSE_MORE)
				return;
			if (rc != 1) {
				h1_conn_refuse(c, rc, why);
				return;
			}
			if (h1_conn_head(c) == -1)
				return;
		}
		if (c->inlen < c->used + c->r.head.clen)
			return;
		h1_conn_dispatch(c);
	}
}

/* What the client sent, or its hang-up. */
static void
h1_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct h1_conn	*c = arg;
	char		 buf[4096];
	ssize_t		 n;

	if (c->dead)
		return;
	if (c->lingering) {	/* read to its end, then closed */
		while ((n = read(fd, buf, sizeof buf)) > 0)
			;
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			h1_conn_close(c);
		return;
	}
	if (!c->readclosed && (events & EV_READ))
		h1_conn_read(c);
	else if (events & EV_CLOSED)
		c->eof = true;
	c->busy++;
	h1_conn_input(c);
	c->busy--;
	if (c->dead || !c->eof)
		return;
	if ((c->state == H1_IDLE || c->state == H1_CLOSING) &&
	    evbuffer_get_length(c->out) > 0) {
		c->state = H1_CLOSING;		/* written out, then closed */
		event_del(c->rev);
		return;
	}
	h1_conn_close(c);	/* a hang-up, or the end */
}

/* ------------------------------------------------------------ the server */

static void
h1_conn_new(struct h1_server *srv, int fd, const struct sockaddr_storage *ss)
{
	struct h1_conn	*c = xcalloc(1, sizeof *c);
	int		 one = 1;

	/* A reply goes in a few pieces (a stream's head, its events):
	 * without this, Nagle holds one for the client's delayed ACK. */
	if (ss->ss_family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->srv = srv;
	c->fd = fd;
	c->peer = *ss;
	c->incap = H1_INBUF_MIN;
	c->in = xmalloc(c->incap);
	c->out = evbuffer_new();
	c->r.conn = c;
	c->rev = event_new(srv->base, fd, EV_READ | EV_CLOSED | EV_PERSIST,
	    h1_read_cb, c);
	c->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, h1_write_cb,
	    c);
	c->timer = evtimer_new(srv->base, h1_timer_cb, c);
	if (c->out == NULL || c->rev == NULL || c->wev == NULL ||
	    c->timer == NULL)
		fatalx("h1: out of memory");
	TAILQ_INSERT_TAIL(&srv->conns, c, entry);
	srv->nconns++;
	event_add(c->rev, NULL);
	h1_conn_timer(c);
}

/* Past the bound of open connections: told so, and closed. */
#define H1_BUSY_BODY	"too many connections (http.max_open_connections); " \
	"retry later\n"
static void
h1_busy(int fd)
{
	char	msg[256];
	int	n;

	n = snprintf(msg, sizeof msg, "HTTP/1.1 503 Service Unavailable\r\n"
	    "Retry-After: 5\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    sizeof H1_BUSY_BODY - 1, H1_BUSY_BODY);
	(void)send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void
h1_pause(struct h1_server *srv, bool paused)
{
	struct timeval	tv = { 0, H1_ACCEPT_PAUSE_MS * 1000 };

	for (int i = 0; i < srv->nls; i++)
		if (paused)
			event_del(srv->ls[i].ev);
		else
			event_add(srv->ls[i].ev, NULL);
	if (paused)
		evtimer_add(srv->resume, &tv);
}

static void
h1_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events;
	h1_pause(arg, false);
}

/* New connections, a batch at a time; out of descriptors, a pause. */
static void
h1_accept_cb(evutil_socket_t lfd, short events, void *arg)
{
	struct h1_server	*srv = arg;
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	int			 fd;

	(void)events;
	for (int i = 0; i < H1_ACCEPT_BATCH; i++) {
		len = sizeof ss;
		memset(&ss, 0, sizeof ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK |
		    SOCK_CLOEXEC);
		if (fd == -1 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd == -1 && (errno == EMFILE || errno == ENFILE ||
		    errno == ENOBUFS || errno == ENOMEM)) {
			log_warn("http: accept (paused %d ms)",
			    H1_ACCEPT_PAUSE_MS);
			h1_pause(srv, true);
			return;
		}
		if (fd == -1)
			return;		/* EAGAIN, or the peer's error */
		if (srv->nconns >= srv->lim.max_conns)
			h1_busy(fd);
		else
			h1_conn_new(srv, fd, &ss);
	}
}

struct h1_server *
h1_new(struct event_base *base, const struct h1_limits *lim,
    h1_request_cb cb, h1_request_cb donecb, void *arg)
{
	struct h1_server	*srv = xcalloc(1, sizeof *srv);

	srv->base = base;
	srv->lim = *lim;
	srv->cb = cb;
	srv->donecb = donecb;
	srv->arg = arg;
	TAILQ_INIT(&srv->conns);
	srv->resume = evtimer_new(base, h1_resume_cb, srv);
	return srv;
}

/* Takes connections on the listening socket fd (made non-blocking). */
int
h1_listen_fd(struct h1_server *srv, int fd)
{
	struct h1_listener	*l;
	int			 fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	srv->ls = xrealloc(srv->ls, (size_t)(srv->nls + 1) * sizeof *srv->ls);
	l = &srv->ls[srv->nls++];
	l->fd = fd;
	l->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, h1_accept_cb,
	    srv);
	event_add(l->ev, NULL);
	return 0;
}

/*
 * Writes out what every connection still holds, waiting until deadline
 * at most: we are about to exit, and the loop will not run again.
 */
void
h1_flush(struct h1_server *srv, int64_t deadline)
{
	struct h1_conn	*c;
	struct pollfd	 pfd = { .events = POLLOUT };
	int		 n;

	TAILQ_FOREACH(c, &srv->conns, entry) {
		pfd.fd = c->fd;
		while (!c->dead && evbuffer_get_length(c->out) > 0) {
			h1_conn_write(c);
			if (c->dead || evbuffer_get_length(c->out) == 0 ||
			    now_ms() >= deadline)
				break;
			n = poll(&pfd, 1, (int)(deadline - now_ms()));
			if (n == 0 || (n == -1 && errno != EINTR))
				break;
		}
	}
}

/* Closes every connection (their owners told) and listener. */
void
h1_free(struct h1_server *srv)
{
	struct h1_conn	*c;

	while ((c = TAILQ_FIRST(&srv->conns)) != NULL)
		h1_conn_close(c);
	for (int i = 0; i < srv->nls; i++) {
		event_free(srv->ls[i].ev);
		close(srv->ls[i].fd);
	}
	free(srv->ls);
	event_free(srv->resume);
	free(srv);
}

/*
 * heavyd-bench-http: load for an MCP server's Streamable HTTP endpoint, the
 * same for heavyd and for the SDK peer (tests/bench/http-peer.mjs).
 * scripts/bench http runs every scenario against both.
 *   bench-http ping URL SECONDS CONNS [PID]
 *                                       CONNS keep-alive clients, one
 *                                       session each, pinging: requests/s
 *                                       (and process PID's CPU for each)
 *   bench-http ttfb URL N AGENTS        N tools/call heavy_orchestrate with
 *                                       a progressToken, one at a time: time
 *                                       to the response headers and to the
 *                                       first SSE byte
 *   bench-http idle URL N SECONDS PID   N sessions, each holding a GET SSE
 *                                       stream, for SECONDS: RSS and CPU of
 *                                       process PID
 *   bench-http hangup URL RUNS AGENTS PID
 *                                       2026-07-28 (stateless) tools/call
 *                                       with hanging agents; once AGENTS
 *                                       heavyd-worker processes run under
 *                                       PID, hang up: time to the last one
 *                                       reaped
 *   bench-http workers PID              how many heavyd-worker processes
 *                                       run under PID now
 * Each prints human lines and, for scripts/bench, "@ key value" lines.
 * Loopback only: the URL must be http:// to 127.0.0.1, localhost or [::1].
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../../common/common.h"

#define HANG_MS		60000	/* a wait this long is a hang, not a figure */
#define PROTO_STATEFUL	"2025-11-25"
#define PROTO_STATELESS	"2026-07-28"

/* ------------------------------------------------------------ the URL */

static struct sockaddr_storage	srv_addr;
static socklen_t		srv_len;
static char			srv_host[128], srv_path[256];

static void
url_parse(const char *url)
{
	struct sockaddr_in	*in = (struct sockaddr_in *)&srv_addr;
	struct sockaddr_in6	*in6 = (struct sockaddr_in6 *)&srv_addr;
	char			 host[64];
	const char		*p, *slash;
	int			 port;

	if (strncmp(url, "http://", 7) != 0)
		fatalx("%s: only http:// URLs", url);
	p = url + 7;
	slash = strchr(p, '/');
	snprintf(srv_path, sizeof srv_path, "%s", slash ? slash : "/");
	snprintf(srv_host, sizeof srv_host, "%.*s",
	    (int)(slash ? (size_t)(slash - p) : strlen(p)), p);
	if (srv_host[0] == '[') {
		if (sscanf(srv_host, "[%63[^]]]:%d", host, &port) != 2)
			fatalx("%s: no port", url);
	} else if (sscanf(srv_host, "%63[^:]:%d", host, &port) != 2)
		fatalx("%s: no port", url);
	memset(&srv_addr, 0, sizeof srv_addr);
	if (strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		srv_len = sizeof *in;
	} else if (strcmp(host, "::1") == 0) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		in6->sin6_addr = in6addr_loopback;
		srv_len = sizeof *in6;
	} else
		fatalx("%s: loopback only (127.0.0.1, localhost, [::1])", url);
}

static int
conn_open(void)
{
	int	fd, one = 1;

	fd = socket(srv_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		fatal("socket");
	if (connect(fd, (struct sockaddr *)&srv_addr, srv_len) == -1)
		fatal("connect %s", srv_host);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* ------------------------------------------------- HTTP/1.1 responses */

enum rstate { R_HEAD, R_BODY_LEN, R_BODY_EOF, R_CHUNK_SIZE, R_CHUNK_DATA,
    R_CHUNK_CRLF, R_TRAILER, R_DONE };

/* One response, parsed as bytes arrive. */
struct resp {
	enum rstate	 state;
	struct buf	 head;
	struct buf	 body;
	int		 status;
	long long	 left;		/* of the body or of this chunk */
	int		 crlf;		/* of the \r\n\r\n ending the head */
	char		 session[160];
	bool		 sse;
	int64_t		 t_head, t_body;	/* when they began, us */
};

static void
resp_init(struct resp *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->head, 1 << 16);
	buf_init(&r->body, 0);
}

static void
resp_free(struct resp *r)
{
	buf_free(&r->head);
	buf_free(&r->body);
}

/* The value of header name in a NUL-terminated header block, or NULL. */
static const char *
head_value(const char *head, const char *name, char *out, size_t outlen)
{
	const char	*p = head;
	size_t		 n = strlen(name), len;

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, n) != 0 || p[n] != ':')
			continue;
		p += n + 1;
		while (*p == ' ' || *p == '\t')
			p++;
		len = strcspn(p, "\r");
		snprintf(out, outlen, "%.*s", (int)len, p);
		return out;
	}
	return NULL;
}

static void
resp_head_done(struct resp *r)
{
	const char	*h = buf_cstr(&r->head);
	char		 v[160];

	r->t_head = now_us();
	if (sscanf(h, "HTTP/1.%*d %d", &r->status) != 1)
		fatalx("not an HTTP response: %.40s", h);
	if (head_value(h, "Mcp-Session-Id", v, sizeof v) != NULL)
		snprintf(r->session, sizeof r->session, "%s", v);
	r->sse = head_value(h, "Content-Type", v, sizeof v) != NULL &&
	    strstr(v, "text/event-stream") != NULL;
	if (head_value(h, "Transfer-Encoding", v, sizeof v) != NULL &&
	    strcasestr(v, "chunked") != NULL)
		r->state = R_CHUNK_SIZE;
	else if (head_value(h, "Content-Length", v, sizeof v) != NULL) {
		r->left = atoll(v);
		r->state = r->left > 0 ? R_BODY_LEN : R_DONE;
	} else
		r->state = r->status == 202 || r->status == 204 ? R_DONE :
		    R_BODY_EOF;
}

static void
resp_body(struct resp *r, const char *p, size_t n)
{
	if (n > 0 && r->t_body == 0)
		r->t_body = now_us();
	buf_add(&r->body, p, n);
}

/* A line of the chunked framing, from p; its length with CRLF, or 0. */
static size_t
chunk_line(const char *p, size_t n, char *line, size_t linelen)
{
	const char	*nl = memchr(p, '\n', n);

	if (nl == NULL)
		return 0;
	snprintf(line, linelen, "%.*s", (int)(nl - p), p);
	return (size_t)(nl - p) + 1;
}

/* Feeds n bytes; returns how many it used (the rest is the next reply). */
static size_t
resp_feed(struct resp *r, const char *p, size_t n)
{
	size_t	used = 0, k;
	char	line[64];

	while (used < n && r->state != R_DONE) {
		const char	*q = p + used;
		size_t		 m = n - used;

		switch (r->state) {
		case R_HEAD:		/* up to the blank line */
			for (k = 0; k < m && r->crlf < 4; k++)
				r->crlf = q[k] == "\r\n\r\n"[r->crlf] ?
				    r->crlf + 1 : q[k] == '\r';
			buf_add(&r->head, q, k);
			used += k;
			if (r->crlf == 4)
				resp_head_done(r);
			break;
		case R_BODY_LEN:
			k = m < (size_t)r->left ? m : (size_t)r->left;
			resp_body(r, q, k);
			used += k;
			if ((r->left -= (long long)k) == 0)
				r->state = R_DONE;
			break;
		case R_BODY_EOF:
			resp_body(r, q, m);
			used += m;
			break;
		case R_CHUNK_SIZE:
		case R_CHUNK_CRLF:
		case R_TRAILER:
			if ((k = chunk_line(q, m, line, sizeof line)) == 0)
				return used;	/* wait for the whole line */
			used += k;
			if (r->state == R_CHUNK_CRLF)
				r->state = R_CHUNK_SIZE;
			else if (r->state == R_TRAILER)
				r->state = line[0] == '\r' || line[0] == '\0' ?
				    R_DONE : R_TRAILER;
			else if ((r->left = strtoll(line, NULL, 16)) == 0)
				r->state = R_TRAILER;
			else
				r->state = R_CHUNK_DATA;
			break;
		case R_CHUNK_DATA:
			k = m < (size_t)r->left ? m : (size_t)r->left;
			resp_body(r, q, k);
			used += k;
			if ((r->left -= (long long)k) == 0)
				r->state = R_CHUNK_CRLF;
			break;
		case R_DONE:
			break;
		}
	}
	return used;
}

/* ------------------------------------------------------------- requests */

/* A POST; extra is more header lines ("Name: value\r\n"), or "". */
static char *
req_post(const char *session, const char *proto, const char *extra,
    const char *body)
{
	char	sh[200] = "", ph[64] = "";

	if (session != NULL)
		snprintf(sh, sizeof sh, "Mcp-Session-Id: %s\r\n", session);
	if (proto != NULL)
		snprintf(ph, sizeof ph, "MCP-Protocol-Version: %s\r\n", proto);
	return xasprintf("POST %s HTTP/1.1\r\nHost: %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Accept: application/json, text/event-stream\r\n%s%s%s"
	    "Content-Length: %zu\r\n\r\n%s", srv_path, srv_host, sh, ph,
	    extra, strlen(body), body);
}

static void
write_all(int fd, const char *p, size_t n)
{
	ssize_t	w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			fatal("write");
		}
		p += w;
		n -= (size_t)w;
	}
}

/*
 * Reads one response from a blocking socket; with head_only, only its
 * headers (a stream that does not end).  We never pipeline, so a byte past
 * the response is the server's error.
 */
static int
read_resp(int fd, struct resp *r, bool head_only)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	char		b[16384];
	ssize_t		n;
	int64_t		t0 = now_ms();

	while (r->state != R_DONE && !(head_only && r->state != R_HEAD)) {
		if (poll(&pfd, 1, 1000) == 0) {
			if (now_ms() - t0 > HANG_MS)
				fatalx("no complete response in %d ms", HANG_MS);
			continue;
		}
		if ((n = read(fd, b, sizeof b)) == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return r->state == R_BODY_EOF ? 0 : -1;
		if (resp_feed(r, b, (size_t)n) != (size_t)n)
			fatalx("bytes past a response we did not pipeline");
	}
	return 0;
}

/* One request, one response, on a blocking socket. */
static void
roundtrip(int fd, const char *req, struct resp *r)
{
	resp_init(r);
	write_all(fd, req, strlen(req));
	if (read_resp(fd, r, false) == -1)
		fatalx("the server closed the connection mid-response");
}

static const char *init_body = "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":"
    "\"initialize\",\"params\":{\"protocolVersion\":\"" PROTO_STATEFUL "\","
    "\"capabilities\":{},\"clientInfo\":{\"name\":\"bench-http\","
    "\"version\":\"1\"}}}";

/* initialize and initialized on fd: the new session's id in sid. */
static void
session_open(int fd, char *sid, size_t sidlen)
{
	struct resp	 r;
	char		*req = req_post(NULL, NULL, "", init_body);

	roundtrip(fd, req, &r);
	free(req);
	if (r.status != 200 || r.session[0] == '\0')
		fatalx("initialize: HTTP %d, session id '%s'", r.status,
		    r.session);
	snprintf(sid, sidlen, "%s", r.session);
	resp_free(&r);
	req = req_post(sid, PROTO_STATEFUL, "", "{\"jsonrpc\":\"2.0\","
	    "\"method\":\"notifications/initialized\"}");
	roundtrip(fd, req, &r);
	free(req);
	if (r.status != 202 && r.status != 200)
		fatalx("notifications/initialized: HTTP %d", r.status);
	resp_free(&r);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t	x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Prints median, p90, p99 and max of n microsecond figures, and @ lines. */
static void
report(const char *what, const char *key, int64_t *us, int n)
{
	qsort(us, (size_t)n, sizeof *us, cmp_i64);
	printf("%s: n=%d median=%.3f ms p90=%.3f ms p99=%.3f ms max=%.3f ms\n",
	    what, n, us[n / 2] / 1000.0, us[n * 9 / 10] / 1000.0,
	    us[n * 99 / 100] / 1000.0, us[n - 1] / 1000.0);
	printf("@ %s_median_ms %.3f\n@ %s_p99_ms %.3f\n", key, us[n / 2] / 1000.0,
	    key, us[n * 99 / 100] / 1000.0);
}

/* ----------------------------------------------------------------- ping */

struct pinger {
	int		 fd;
	char		 sid[160];
	char		*req;
	struct resp	 r;
};

static void
ping_send(struct pinger *c)
{
	resp_free(&c->r);
	resp_init(&c->r);
	write_all(c->fd, c->req, strlen(c->req));
}

/*
 * Reads what is there; counts a whole answer and sends the next ping.
 * Once an answer is whole nothing else can be there (one request at a
 * time), so no read is spent on learning that: the load generator shares
 * the cores with the server it measures.
 */
static int
ping_read(struct pinger *c, long long *ok, long long *bad)
{
	char	b[16384];
	ssize_t	n;

	while ((n = read(c->fd, b, sizeof b)) > 0) {
		if (resp_feed(&c->r, b, (size_t)n) != (size_t)n)
			fatalx("ping: bytes past a response");
		if (c->r.state != R_DONE)
			continue;
		if (c->r.status == 200 &&
		    strstr(buf_cstr(&c->r.body), "\"result\"") != NULL)
			(*ok)++;
		else
			(*bad)++;
		ping_send(c);
		return 0;
	}
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
		return -1;
	return 0;
}

static long long	proc_cpu_ticks(pid_t);

/* This process's CPU so far (user + system), us. */
static int64_t
self_cpu_us(void)
{
	struct rusage	ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/*
 * conns keep-alive clients, a session each, for secs after 1 s warm-up;
 * with a pid (the server's), also the CPU it spent on each answer, which
 * a machine busy with other work changes less than the rate.
 */
static void
bench_ping(int secs, int conns, pid_t pid)
{
	struct pinger		*cs = xcalloc((size_t)conns, sizeof *cs);
	struct epoll_event	 ev, evs[64];
	long long		 ok = 0, bad = 0, ok0 = 0, cpu0 = 0;
	int64_t			 t0, t1 = 0, start, self0 = 0;
	int			 ep = epoll_create1(EPOLL_CLOEXEC);

	for (int i = 0; i < conns; i++) {
		cs[i].fd = conn_open();
		session_open(cs[i].fd, cs[i].sid, sizeof cs[i].sid);
		cs[i].req = req_post(cs[i].sid, PROTO_STATEFUL, "",
		    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
		fd_set_nonblock(cs[i].fd, 1);
		ev.events = EPOLLIN;
		ev.data.ptr = &cs[i];
		epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
		resp_init(&cs[i].r);
	}
	for (int i = 0; i < conns; i++)
		ping_send(&cs[i]);
	start = now_us();
	t0 = start + 1000000;		/* warm-up: the first second */
	while ((t1 = now_us()) < t0 + (int64_t)secs * 1000000) {
		int n = epoll_wait(ep, evs, 64, 1000);

		if (ok0 == 0 && t1 >= t0) {
			ok0 = ok > 0 ? ok : -1;
			cpu0 = pid > 0 ? proc_cpu_ticks(pid) : 0;
			self0 = self_cpu_us();
		}
		for (int i = 0; i < n; i++)
			if (ping_read(evs[i].data.ptr, &ok, &bad) == -1)
				fatalx("ping: the server closed a connection");
	}
	ok0 = ok0 < 0 ? 0 : ok0;
	printf("ping over HTTP: %d keep-alive clients (a session each), %d s "
	    "after 1 s warm-up: %lld answered = %.0f per second; %lld not OK\n",
	    conns, secs, ok - ok0, (ok - ok0) / ((t1 - t0) / 1e6), bad);
	printf("@ ping_per_s %.0f\n", (ok - ok0) / ((t1 - t0) / 1e6));
	if (ok > ok0)
		printf("  load generator CPU: %.1f us an answer\n",
		    (self_cpu_us() - self0) / (double)(ok - ok0));
	if (pid > 0 && ok > ok0) {
		double us = (proc_cpu_ticks(pid) - cpu0) * 1e6 /
		    sysconf(_SC_CLK_TCK) / (double)(ok - ok0);

		printf("  server CPU (user + system, all its threads): %.1f us "
		    "an answer\n@ ping_cpu_us %.1f\n", us, us);
	}
	for (int i = 0; i < conns; i++) {
		close(cs[i].fd);
		free(cs[i].req);
		resp_free(&cs[i].r);
	}
	close(ep);
	free(cs);
}

/* ------------------------------------------------------------- ttfb */

/* n calls, one at a time on one session: headers, first SSE byte, end. */
static void
bench_ttfb(int n, int agents)
{
	int64_t		*head = xcalloc((size_t)n, sizeof *head);
	int64_t		*first = xcalloc((size_t)n, sizeof *first);
	int64_t		*all = xcalloc((size_t)n, sizeof *all), t0;
	char		 sid[160], body[512], *req;
	struct resp	 r;
	int		 fd = conn_open(), failed = 0, sse = 0;

	session_open(fd, sid, sizeof sid);
	for (int i = -1; i < n; i++) {	/* call -1 warms up */
		snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,"
		    "\"method\":\"tools/call\",\"params\":{\"name\":"
		    "\"heavy_orchestrate\",\"arguments\":{\"query\":\"bench "
		    "query %d\",\"num_agents\":%d},\"_meta\":{\"progressToken\":"
		    "%d}}}", i + 10, i, agents, i + 10);
		req = req_post(sid, PROTO_STATEFUL, "", body);
		resp_init(&r);
		t0 = now_us();
		write_all(fd, req, strlen(req));
		if (read_resp(fd, &r, false) == -1)
			fatalx("ttfb: the server closed the connection");
		free(req);
		if (i >= 0) {
			head[i] = r.t_head - t0;
			first[i] = (r.t_body ? r.t_body : r.t_head) - t0;
			all[i] = now_us() - t0;
			sse += r.sse;
			failed += r.status != 200 || strstr(buf_cstr(&r.body),
			    "\"isError\":true") != NULL ||
			    strstr(buf_cstr(&r.body), "\"result\"") == NULL;
		}
		resp_free(&r);
	}
	close(fd);
	printf("%d tools/call heavy_orchestrate (%d agents, progressToken), "
	    "one at a time on one session: %d answered as SSE, %d failed\n",
	    n, agents, sse, failed);
	report("  request to response headers", "ttfb_headers", head, n);
	report("  request to first SSE byte", "ttfb_first_byte", first, n);
	report("  request to the whole answer", "call_total", all, n);
	free(head);
	free(first);
	free(all);
}

/* --------------------------------------------------- the server in /proc */

static long
proc_status_kb(pid_t pid, const char *key)
{
	char	path[64], line[256];
	long	kb = -1;
	size_t	len = strlen(key);
	FILE	*f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		fatal("%s", path);
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, key, len) == 0 && line[len] == ':') {
			kb = atol(line + len + 1);
			break;
		}
	fclose(f);
	return kb;
}

/* utime + stime of pid, in clock ticks. */
static long long
proc_cpu_ticks(pid_t pid)
{
	char		path[64], buf[1024], *p;
	unsigned long	ut, st;
	int		fd;
	ssize_t		n;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		fatal("%s", path);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2,
	    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		fatalx("%s: unreadable", path);
	return (long long)ut + (long long)st;
}

/* One /proc/PID/stat: its parent and its name; -1 if it is gone. */
static int
proc_stat(pid_t x, pid_t *ppid, char *name, size_t namelen)
{
	char	path[64], buf[512], *p, *q;
	ssize_t	len;
	int	fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)x);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	len = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[len > 0 ? len : 0] = '\0';
	if ((p = strchr(buf, '(')) == NULL || (q = strrchr(buf, ')')) == NULL ||
	    sscanf(q + 2, "%*c %d", ppid) != 1)
		return -1;
	snprintf(name, namelen, "%.*s", (int)(q - p - 1), p + 1);
	return 0;
}

/*
 * The pids of pid's descendants named comm, in out (at most max); how
 * many.  A zombie still counts: it is gone once its parent reaped it.
 */
static int
proc_descendants(pid_t pid, const char *comm, pid_t *out, int max)
{
	struct proc { pid_t pid, ppid; char name[16]; bool mine; };
	static struct proc	*ps;
	static size_t		 cap;
	struct dirent		*d;
	DIR			*dir;
	size_t			 np = 0;
	bool			 changed = true;
	pid_t			 x;
	int			 n = 0;

	if ((dir = opendir("/proc")) == NULL)
		fatal("/proc");
	while ((d = readdir(dir)) != NULL) {
		if ((x = atoi(d->d_name)) <= 0)
			continue;
		if (np == cap) {
			cap = cap ? cap * 2 : 1024;
			ps = xrealloc(ps, cap * sizeof *ps);
		}
		ps[np].pid = x;
		ps[np].mine = false;
		if (proc_stat(x, &ps[np].ppid, ps[np].name,
		    sizeof ps[np].name) == 0)
			np++;
	}
	closedir(dir);
	while (changed) {		/* until no new descendant turns up */
		changed = false;
		for (size_t i = 0; i < np; i++) {
			if (ps[i].mine)
				continue;
			for (size_t j = 0; j < np && !ps[i].mine; j++)
				ps[i].mine = ps[i].ppid == pid ||
				    (ps[j].mine && ps[i].ppid == ps[j].pid);
			changed |= ps[i].mine;
		}
	}
	for (size_t i = 0; i < np; i++)
		if (ps[i].mine && strcmp(ps[i].name, comm) == 0 && n < max)
			out[n++] = ps[i].pid;
	return n;
}

/* ------------------------------------------------------------- idle */

static void
raise_nofile(int want)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		fatal("getrlimit");
	if (rl.rlim_cur < (rlim_t)want && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)want ? rl.rlim_max :
		    (rlim_t)want;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < (rlim_t)want)
		fatalx("%d streams need %d descriptors; ulimit -n allows %llu "
		    "(raise the hard limit)", want - 64, want,
		    (unsigned long long)rl.rlim_cur);
}

/* A session holding its GET stream, on its own connection. */
static int
stream_open(void)
{
	char		 sid[160], *req;
	struct resp	 r;
	int		 fd = conn_open();

	session_open(fd, sid, sizeof sid);
	req = xasprintf("GET %s HTTP/1.1\r\nHost: %s\r\n"
	    "Accept: text/event-stream\r\nMcp-Session-Id: %s\r\n"
	    "MCP-Protocol-Version: " PROTO_STATEFUL "\r\n\r\n", srv_path,
	    srv_host, sid);
	resp_init(&r);
	write_all(fd, req, strlen(req));
	free(req);
	if (read_resp(fd, &r, true) == -1 || r.status != 200 || !r.sse)
		fatalx("GET stream: HTTP %d%s", r.status, r.sse ? "" :
		    ", not text/event-stream");
	resp_free(&r);
	return fd;
}

/* Reads and drops what streams send (keep-alive comments); counts EOFs. */
static int
streams_drain(int ep, int ms)
{
	struct epoll_event	evs[256];
	char			b[4096];
	int			n, closed = 0;

	n = epoll_wait(ep, evs, 256, ms);
	for (int i = 0; i < n; i++) {
		ssize_t	k = read(evs[i].data.fd, b, sizeof b);

		if (k == 0 || (k == -1 && errno != EAGAIN && errno != EINTR)) {
			epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
			closed++;
		}
	}
	return closed;
}

static void
bench_idle(int n, int secs, pid_t pid)
{
	int			*fds = xcalloc((size_t)n, sizeof *fds);
	int			 ep = epoll_create1(EPOLL_CLOEXEC), closed = 0;
	long			 rss0, rss1, rss2;
	long long		 cpu0, cpu1;
	struct epoll_event	 ev = { .events = EPOLLIN };
	int64_t			 t0, t1;

	raise_nofile(n + 64);
	rss0 = proc_status_kb(pid, "VmRSS");
	t0 = now_us();
	for (int i = 0; i < n; i++) {
		fds[i] = stream_open();
		fd_set_nonblock(fds[i], 1);
		ev.data.fd = fds[i];
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
		if ((i + 1) % 1000 == 0)
			fprintf(stderr, "idle: %d streams open\n", i + 1);
	}
	printf("idle: %d sessions, each with its GET SSE stream, opened in "
	    "%.1f s\n", n, (now_us() - t0) / 1e6);
	closed += streams_drain(ep, 1000);	/* let it settle */
	rss1 = proc_status_kb(pid, "VmRSS");
	cpu0 = proc_cpu_ticks(pid);
	t0 = now_us();
	while ((t1 = now_us()) < t0 + (int64_t)secs * 1000000)
		closed += streams_drain(ep, 200);
	cpu1 = proc_cpu_ticks(pid);
	rss2 = proc_status_kb(pid, "VmRSS");
	printf("  server RSS: %.1f MB before, %.1f MB with the streams open, "
	    "%.1f MB after %d s idle (peak %.1f MB)\n", rss0 / 1024.0,
	    rss1 / 1024.0, rss2 / 1024.0, secs,
	    proc_status_kb(pid, "VmHWM") / 1024.0);
	printf("  server CPU while idle: %.2f%% of one core over %.1f s; "
	    "streams the server closed: %d\n", 100.0 * (cpu1 - cpu0) /
	    sysconf(_SC_CLK_TCK) / ((t1 - t0) / 1e6), (t1 - t0) / 1e6, closed);
	printf("@ idle_rss_mb %.1f\n@ idle_cpu_pct %.2f\n@ idle_closed %d\n",
	    rss2 / 1024.0, 100.0 * (cpu1 - cpu0) / sysconf(_SC_CLK_TCK) /
	    ((t1 - t0) / 1e6), closed);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(ep);
	free(fds);
}

/* ----------------------------------------------------------- hang-up */

/*
 * Waits until want workers run under pid; their pids in out.  An answer
 * arriving on fd first (an error: a call with hanging agents cannot end)
 * is fatal, and says what it was.
 */
static int
workers_wait(pid_t pid, int want, int fd, pid_t *out, int max)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	struct resp	r;
	char		b[4096];
	ssize_t		k;
	int64_t		t0 = now_ms();
	int		n;

	resp_init(&r);
	while ((n = proc_descendants(pid, "heavyd-worker", out, max)) < want) {
		if (now_ms() - t0 > HANG_MS)
			fatalx("hangup: %d of %d workers after %d ms", n, want,
			    HANG_MS);
		if (poll(&pfd, 1, 1) == 1) {
			if ((k = read(fd, b, sizeof b)) <= 0)
				fatalx("hangup: the server closed the connection");
			resp_feed(&r, b, (size_t)k);
			if (r.state == R_DONE || (r.status >= 300 && r.body.len))
				fatalx("hangup: answered before the workers ran: "
				    "HTTP %d %.300s", r.status, buf_cstr(&r.body));
		}
	}
	resp_free(&r);
	return n;
}

/* Until every pid in ws is gone (reaped), polling every 200 us. */
static void
workers_gone(pid_t *ws, int n)
{
	int64_t	t0 = now_ms();

	for (int i = 0; i < n; i++)
		while (kill(ws[i], 0) == 0 || errno != ESRCH) {
			if (now_ms() - t0 > HANG_MS)
				fatalx("hangup: worker %d still there after "
				    "%d ms", (int)ws[i], HANG_MS);
			usleep(200);
		}
}

static void
bench_hangup(int runs, int agents, pid_t pid)
{
	int64_t	*us = xcalloc((size_t)runs, sizeof *us), t0;
	pid_t	 ws[64];
	char	 body[1024], *req;
	int	 fd, n, left = 0;

	for (int i = 0; i < runs; i++) {
		snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,"
		    "\"method\":\"tools/call\",\"params\":{\"name\":"
		    "\"heavy_orchestrate\",\"arguments\":{\"query\":\"[[agent:"
		    "hang]] hang-up %d\",\"num_agents\":%d,\"timeout\":60},"
		    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\""
		    PROTO_STATELESS "\",\"io.modelcontextprotocol/"
		    "clientCapabilities\":{},\"progressToken\":%d}}}", i + 1, i,
		    agents, i + 1);
		req = req_post(NULL, PROTO_STATELESS, "Mcp-Method: tools/call\r\n"
		    "Mcp-Name: heavy_orchestrate\r\n", body);
		fd = conn_open();
		write_all(fd, req, strlen(req));
		free(req);
		n = workers_wait(pid, agents, fd, ws, 64);
		t0 = now_us();
		close(fd);			/* the hang-up */
		workers_gone(ws, n);
		us[i] = now_us() - t0;
	}
	usleep(100 * 1000);
	left = proc_descendants(pid, "heavyd-worker", ws, 64);
	printf("hang-up (2026-07-28) with %d hanging agents, %d runs: workers "
	    "left afterwards: %d\n", agents, runs, left);
	report("  hang-up to the last worker reaped", "hangup", us, runs);
	free(us);
}

int
main(int argc, char **argv)
{
	log_init("bench-http", LOG_LVL_INFO);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "workers") == 0) {
		pid_t	ws[1024];

		printf("%d\n", proc_descendants(atoi(argv[2]), "heavyd-worker",
		    ws, 1024));
		return 0;
	}
	if (argc < 3)
		fatalx("usage: bench-http ping|ttfb|idle|hangup URL ...");
	url_parse(argv[2]);
	if (strcmp(argv[1], "ping") == 0 && (argc == 5 || argc == 6))
		bench_ping(atoi(argv[3]), atoi(argv[4]), argc == 6 ?
		    atoi(argv[5]) : 0);
	else if (strcmp(argv[1], "ttfb") == 0 && argc == 5)
		bench_ttfb(atoi(argv[3]), atoi(argv[4]));
	else if (strcmp(argv[1], "idle") == 0 && argc == 6)
		bench_idle(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	else if (strcmp(argv[1], "hangup") == 0 && argc == 6)
		bench_hangup(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	else
		fatalx("usage: bench-http ping URL SECONDS CONNS [PID] | ttfb URL N "
		    "AGENTS | idle URL N SECONDS PID | hangup URL RUNS AGENTS PID");
	return 0;
}

/*
 * Logging: one event, one line on stderr (or one journal entry), with an
 * optional hook that mirrors messages elsewhere (MCP).
 *
 * Where a line goes is chosen at log_init and log_set_format:
 * - log.format json: one JSON object per line on stderr, for log shippers;
 * - under journald (JOURNAL_STREAM names stderr's device and inode): one
 *   native journal datagram per event to /run/systemd/journal/socket, with
 *   PRIORITY, MESSAGE, SYSLOG_IDENTIFIER and heavyd's own fields (the task,
 *   the worker) -- without libsystemd; when that socket is missing, lines
 *   with a "<N>" priority prefix, which journald reads off the stream;
 * - else plain text: "heavyd[pid]: level: message".
 * In the supervisor (log_set_nonblocking) a write never blocks its event
 * loop: a line that cannot go at once is dropped and counted (log_dropped);
 * the tail of a line cut short waits for the next one.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define LOG_MSG_MAX	2048		/* one message, cut beyond */
#define LOG_LINE_MAX	(8 * LOG_MSG_MAX)	/* its line, escaped */
#define LOG_JOURNAL	"/run/systemd/journal/socket"

enum log_sink { LOG_SINK_TEXT, LOG_SINK_JSON, LOG_SINK_PRIORITY,
    LOG_SINK_JOURNAL };

static const char	*log_prog = HEAVY_NAME;
static enum log_level	 log_level = LOG_LVL_INFO;
static enum log_format	 log_format = LOG_FORMAT_TEXT;
static log_hook_fn	 log_hook;
static int		 log_in_hook;	/* a hook that logs must not recurse */

static enum log_sink	 log_sink = LOG_SINK_TEXT;
static struct sockaddr_un log_journal_addr;	/* where the journal is */
static const char	*log_journal_hook;	/* tests: log_set_journal_path */
static int		 log_jfd = -1;	/* the journal's datagram socket */
static bool		 log_nonblock;	/* never block: drop instead */
static int		 log_fd = STDERR_FILENO;	/* or stderr reopened */
static bool		 log_fd_sock;	/* stderr is a socket */
static uint64_t		 log_ndropped;
static char		 log_pending[LOG_LINE_MAX];	/* a line's tail */
static size_t		 log_npending;
static bool		 log_last_words;	/* fatal: wait a little */
static void		(*log_drop_fn)(uint64_t total);	/* metrics */
static bool		 log_trying;	/* log_relay_try: not lost, refused */
static bool		 log_refused;

/* A line lost: counted, and whoever counts it told (the metrics). */
static void
log_drop(void)
{
	if (log_trying) {
		log_refused = true;
		return;
	}
	log_ndropped++;
	if (log_drop_fn != NULL)
		log_drop_fn(log_ndropped);
}

/* Whether stderr is the stream journald gave us ("dev:inode"). */
static bool
log_stderr_is_journal(void)
{
	const char		*v = getenv("JOURNAL_STREAM");
	unsigned long long	 dev, ino;
	struct stat		 st;
	int			 used = 0;

	if (v == NULL || sscanf(v, "%llu:%llu%n", &dev, &ino, &used) != 2 ||
	    v[used] != '\0' || fstat(STDERR_FILENO, &st) == -1)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/*
 * The journal's socket, when it exists: a datagram socket to reach it.
 * Tests name another (log_set_journal_path, or HEAVY_JOURNAL_SOCKET for
 * heavyd and its zygote as a whole).
 */
static int
log_journal_open(void)
{
	const char	*env = getenv("HEAVY_JOURNAL_SOCKET"), *path;
	struct stat	 st;

	path = log_journal_hook != NULL ? log_journal_hook :
	    env != NULL && *env == '/' ? env : LOG_JOURNAL;
	log_journal_addr.sun_family = AF_UNIX;
	if ((size_t)snprintf(log_journal_addr.sun_path,
	    sizeof log_journal_addr.sun_path, "%s", path) >=
	    sizeof log_journal_addr.sun_path ||
	    stat(path, &st) == -1 || !S_ISSOCK(st.st_mode))
		return -1;
	return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

/* Chooses where lines go (see the top of this file). */
static void
log_setup(void)
{
	if (log_jfd != -1)
		close(log_jfd);
	log_jfd = -1;
	if (log_format == LOG_FORMAT_JSON)
		log_sink = LOG_SINK_JSON;
	else if (!log_stderr_is_journal())
		log_sink = LOG_SINK_TEXT;
	else if ((log_jfd = log_journal_open()) != -1)
		log_sink = LOG_SINK_JOURNAL;
	else
		log_sink = LOG_SINK_PRIORITY;
}

void
log_init(const char *progname, enum log_level level)
{
	log_prog = progname;
	log_level = level;
	log_setup();
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

void
log_set_format(enum log_format format)
{
	log_format = format;
	log_setup();
}

/* "text" or "json"; -1 for anything else. */
int
log_format_parse(const char *name, enum log_format *out)
{
	if (strcmp(name, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcmp(name, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return -1;
	return 0;
}

const char *
log_format_name(void)
{
	return log_format == LOG_FORMAT_JSON ? "json" : "text";
}

/* Tests: another journal socket (NULL: the real one). */
void
log_set_journal_path(const char *path)
{
	log_journal_hook = path;
	log_setup();
}

void
log_set_hook(log_hook_fn hook)
{
	log_hook = hook;
}

uint64_t
log_dropped(void)
{
	return log_ndropped;
}

/* fn(total) after each line lost (it must not log). */
void
log_set_drop_hook(void (*fn)(uint64_t total))
{
	log_drop_fn = fn;
}

/* Where lines go, for --check-config and tests. */
const char *
log_destination(void)
{
	static const char	*names[] = { "stderr", "stderr, JSON lines",
	    "stderr, journald priority prefixes", "the journal" };

	return names[log_sink];
}

/*
 * The supervisor: its own description of stderr, non-blocking, so that a
 * stalled reader never stalls the event loop (fd 2's flags are shared
 * with every process that has it; a pipe or terminal reopened through
 * /proc gets flags of its own; a socket takes MSG_DONTWAIT).  A regular
 * file is left as it is: it never blocks, and reopening it would lose
 * its offset.
 */
void
log_set_nonblocking(void)
{
	struct stat	st;
	int		fd;

	log_nonblock = true;
	if (fstat(STDERR_FILENO, &st) == -1)
		return;
	log_fd_sock = S_ISSOCK(st.st_mode);
	if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
		return;
	fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC |
	    O_NOCTTY);
	if (fd != -1)
		log_fd = fd;
}

/* One write of what may be; -1 and errno, or what went. */
static ssize_t
log_write_some(const char *p, size_t len)
{
	ssize_t	n;

	do {
		if (log_fd_sock)
			n = send(log_fd, p, len, MSG_NOSIGNAL |
			    (log_nonblock ? MSG_DONTWAIT : 0));
		else
			n = write(log_fd, p, len);
	} while (n == -1 && errno == EINTR);
	if (n == -1 && errno == ENOTSOCK) {
		log_fd_sock = false;
		return log_write_some(p, len);
	}
	return n;
}

/* The tail of a line cut short; -1 while some of it is left. */
static int
log_flush_pending(void)
{
	ssize_t	n;

	while (log_npending > 0) {
		if ((n = log_write_some(log_pending, log_npending)) <= 0) {
			if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK)
				log_npending = 0;	/* the reader is gone */
			return -1;
		}
		memmove(log_pending, log_pending + n, log_npending - (size_t)n);
		log_npending -= (size_t)n;
	}
	return 0;
}

/* Before exit: what is pending, waiting up to timeout_ms for the reader. */
void
log_flush(int timeout_ms)
{
	struct pollfd	pfd = { .fd = log_fd, .events = POLLOUT };

	while (log_flush_pending() == -1 && log_npending > 0)
		if (poll(&pfd, 1, timeout_ms) <= 0)
			break;
}

/* Only for the last words: stderr writable within a second. */
static bool
log_wait_writable(void)
{
	struct pollfd	pfd = { .fd = log_fd, .events = POLLOUT };

	return log_last_words && poll(&pfd, 1, 1000) == 1;
}

/*
 * One whole line, or nothing (dropped and counted); a line cut short keeps
 * its tail for later, so lines never mix.  Without log_nonblock, a write
 * blocks as any write to stderr would.
 */
static void
log_write_line(const char *line, size_t len)
{
	ssize_t	n;

	if (log_flush_pending() == -1) {
		log_drop();
		return;
	}
	while (len > 0) {
		if ((n = log_write_some(line, len)) == -1) {
			if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
			    (log_nonblock && !log_wait_writable())) {
				log_drop();
				return;
			}
			continue;
		}
		line += n;
		len -= (size_t)n;
		if (len > 0 && log_nonblock) {
			memcpy(log_pending, line, len);
			log_npending = len;
			return;
		}
	}
}

static int
log_priority(enum log_level level)
{
	static const int	prio[] = { 3, 4, 6, 7 };	/* syslog's */

	return prio[level];
}

static const char *
log_level_name(enum log_level level)
{
	static const char	*names[] = { "error", "warning", "info",
	    "debug" };

	return names[level];
}

/* The length of the UTF-8 character at s (1 to 4), or 0 if it is not one. */
static size_t
log_utf8_char(const unsigned char *s, size_t left)
{
	size_t		n = s[0] < 0x80 ? 1 : s[0] < 0xc2 ? 0 : s[0] < 0xe0 ?
	    2 : s[0] < 0xf0 ? 3 : s[0] < 0xf5 ? 4 : 0;
	uint32_t	c;

	if (n <= 1)
		return n;
	if (n > left)
		return 0;
	c = s[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (n == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return n;
}

/* s as a JSON string; bytes that are not UTF-8 become U+FFFD. */
static void
log_json_str(struct buf *b, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 left = strlen(s), n;

	buf_addstr(b, "\"");
	while (left > 0) {
		if ((n = log_utf8_char(p, left)) == 0) {
			buf_addstr(b, "\\ufffd");
			n = 1;
		} else if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p == '\n')
			buf_addstr(b, "\\n");
		else if (*p == '\t')
			buf_addstr(b, "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			buf_printf(b, "\\u%04x", *p);
		else
			buf_add(b, p, n);
		p += n;
		left -= n;
	}
	buf_addstr(b, "\"");
}

/* One event: heavyd's own, or a worker's line that the zygote relays. */
struct log_event {
	enum log_level			 level;
	const char			*prog;
	int				 pid;
	const char			*label;	/* a relayed line's, else NULL */
	const struct log_fields		*f;
	const char			*msg;
};

static void
log_json_line(struct buf *b, const struct log_event *e)
{
	const struct log_fields	*f = e->f;
	struct timespec		 ts;
	struct tm		 tm;
	char			 when[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	buf_printf(b, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":",
	    when, ts.tv_nsec / 1000000, log_level_name(e->level));
	log_json_str(b, e->prog);
	buf_printf(b, ",\"pid\":%d,\"msg\":", e->pid);
	log_json_str(b, e->msg);
	if (e->label != NULL) {
		buf_addstr(b, ",\"label\":");
		log_json_str(b, e->label);
	}
	if (f != NULL && f->task_id != NULL) {
		buf_addstr(b, ",\"task_id\":");
		log_json_str(b, f->task_id);
	}
	if (f != NULL && f->worker_pid > 0)
		buf_printf(b, ",\"worker_pid\":%d", f->worker_pid);
	if (f != NULL && f->identity != NULL) {
		buf_addstr(b, ",\"identity\":");
		log_json_str(b, f->identity);
	}
	buf_addstr(b, "}\n");
}

/* One journal field: KEY=value, or binary-safe when value has a newline. */
static void
log_journal_field(struct buf *b, const char *key, const char *value)
{
	uint64_t	len = strlen(value);
	unsigned char	le[8];

	if (strchr(value, '\n') == NULL) {
		buf_printf(b, "%s=%s\n", key, value);
		return;
	}
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(len >> (8 * i));
	buf_printf(b, "%s\n", key);
	buf_add(b, le, sizeof le);
	buf_add(b, value, (size_t)len);
	buf_addstr(b, "\n");
}

static void
log_journal_fields(struct buf *b, const struct log_event *e)
{
	const struct log_fields	*f = e->f;
	char			 num[32];

	snprintf(num, sizeof num, "%d", log_priority(e->level));
	log_journal_field(b, "PRIORITY", num);
	log_journal_field(b, "SYSLOG_IDENTIFIER", e->prog);
	if (e->label != NULL) {		/* journald's _PID is the zygote's */
		snprintf(num, sizeof num, "%d", e->pid);
		log_journal_field(b, "SYSLOG_PID", num);
		log_journal_field(b, "HEAVYD_LABEL", e->label);
	}
	log_journal_field(b, "MESSAGE", e->msg);
	if (f != NULL && f->task_id != NULL)
		log_journal_field(b, "HEAVYD_TASK_ID", f->task_id);
	if (f != NULL && f->worker_pid > 0) {
		snprintf(num, sizeof num, "%d", f->worker_pid);
		log_journal_field(b, "HEAVYD_WORKER_PID", num);
	}
	if (f != NULL && f->identity != NULL)
		log_journal_field(b, "HEAVYD_IDENTITY", f->identity);
}

/*
 * One datagram to the journal; -1 when it is gone (then a line instead).
 * As with stderr, only the supervisor's never waits (but for its last
 * words); the workers' relay holds a line journald refused, and retries.
 */
static int
log_journal_send(const struct log_event *e)
{
	struct buf	b;
	ssize_t		n;

	buf_init(&b, 0);
	log_journal_fields(&b, e);
	do
		n = sendto(log_jfd, b.data, b.len, MSG_NOSIGNAL |
		    (log_nonblock && !log_last_words ? MSG_DONTWAIT : 0),
		    (struct sockaddr *)&log_journal_addr,
		    sizeof log_journal_addr);
	while (n == -1 && errno == EINTR);
	buf_free(&b);
	if (n >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
		log_drop();
		return 0;
	}
	return -1;
}

/* A line of text: heavyd's "prog[pid]: level: msg"; a worker's, as the
 * zygote always relayed it, "heavyd-worker[pid] label: msg". */
static void
log_text_line(struct buf *b, const struct log_event *e)
{
	if (e->label != NULL)
		buf_printf(b, "%s[%d] %s: %s\n", e->prog, e->pid, e->label,
		    e->msg);
	else
		buf_printf(b, "%s[%d]: %s: %s\n", e->prog, e->pid,
		    log_level_name(e->level), e->msg);
}

static void
log_line(const struct log_event *e)
{
	struct buf	b;

	buf_init(&b, LOG_LINE_MAX);
	switch (log_sink) {
	case LOG_SINK_JSON:
		log_json_line(&b, e);
		break;
	case LOG_SINK_JOURNAL:
		if (log_journal_send(e) == 0) {
			buf_free(&b);
			return;
		}
		/* the journal has gone: its stream reads this */
		__attribute__((fallthrough));
	case LOG_SINK_PRIORITY:
		buf_printf(&b, "<%d>", log_priority(e->level));
		if (e->label != NULL)
			log_text_line(&b, e);
		else
			buf_printf(&b, "%s\n", e->msg);
		break;
	case LOG_SINK_TEXT:
		log_text_line(&b, e);
		break;
	}
	if (b.len > 0 && b.data[b.len - 1] != '\n')	/* cut at the cap */
		b.data[b.len - 1] = '\n';
	log_write_line(b.data, b.len);
	buf_free(&b);
}

/*
 * A line a worker wrote on its stderr, relayed by heavyd (text made safe
 * there: supervisor/relay.c): an event of the worker's own, with its pid and the label
 * heavyd gave its job.
 */
void
log_relay(int pid, const char *label, const char *text)
{
	struct log_event	e = { LOG_LVL_INFO, HEAVY_NAME "-worker", pid,
	    label, &(struct log_fields){ .worker_pid = pid }, text };

	log_line(&e);
}

/*
 * log_relay, but a line that cannot go now is not dropped: -1, and the
 * caller holds it and stops reading the worker (which then waits on its
 * full pipe) until it can.  A worker's flood must not cost heavyd's lines.
 */
int
log_relay_try(int pid, const char *label, const char *text)
{
	log_trying = true;
	log_refused = false;
	log_relay(pid, label, text);
	log_trying = false;
	return log_refused ? -1 : 0;
}

/*
 * A process forked from one that logs, about to be given another stderr
 * (a worker): it must not keep the journal's socket, nor stderr reopened.
 */
void
log_child(void)
{
	if (log_jfd != -1)
		close(log_jfd);
	log_jfd = -1;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
	log_fd_sock = false;
	log_nonblock = false;
	log_npending = 0;
	log_format = LOG_FORMAT_TEXT;
	log_sink = LOG_SINK_TEXT;
}

static void
log_emit(enum log_level level, const struct log_fields *f, int err,
    const char *fmt, va_list ap)
{
	char	msg[LOG_MSG_MAX];
	int	n;

	n = vsnprintf(msg, sizeof msg, fmt, ap);
	if (n >= 0 && err != 0 && (size_t)n < sizeof msg)
		snprintf(msg + n, sizeof msg - n, ": %s", strerror(err));
	if (level <= log_level)
		log_line(&(struct log_event){ level, log_prog, (int)getpid(),
		    NULL, f, msg });
	if (log_hook != NULL && !log_in_hook) {
		log_in_hook = 1;
		log_hook(level, f, msg);
		log_in_hook = 0;
	}
}

#define LOG_BODY(level, f, err) do {		\
	va_list ap;				\
	va_start(ap, fmt);			\
	log_emit(level, f, err, fmt, ap);	\
	va_end(ap);				\
} while (0)

/* The last words wait a little for a slow reader, rather than be lost. */
static void
log_final(void)
{
	log_last_words = true;
	log_flush(1000);
}

static void __attribute__((noreturn))
log_exit(void)
{
	log_flush(1000);
	exit(1);
}

void fatal(const char *fmt, ...)	{ int e = errno; log_final(); LOG_BODY(LOG_LVL_ERROR, NULL, e); log_exit(); }
void fatalx(const char *fmt, ...)	{ log_final(); LOG_BODY(LOG_LVL_ERROR, NULL, 0); log_exit(); }
void log_warn(const char *fmt, ...)	{ int e = errno; LOG_BODY(LOG_LVL_WARN, NULL, e); }
void log_warnx(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_WARN, NULL, 0); }
void log_info(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_INFO, NULL, 0); }
void log_debug(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_DEBUG, NULL, 0); }

/* A message about a task or a worker: those fields go with it. */
void
log_with(enum log_level level, const struct log_fields *f, const char *fmt,
    ...)
{
	LOG_BODY(level, f, 0);
}

/*
 * Where log lines go: plain text; native journal datagrams (to a socket
 * the test binds) when JOURNAL_STREAM names stderr; "<N>" prefixes when
 * that socket is missing; JSON lines; and, in the supervisor's mode, no
 * write that blocks, a full stderr counted in log_dropped.  Each test
 * puts its own pipe or socket on fd 2 (criterion runs each in a process
 * of its own).
 */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../../common/common.h"
#include "tmpdir.h"

static int	saved_stderr = -1;
static int	reader = -1;		/* the other end of our stderr */
static char	dir[256], jpath[300];
static int	journal = -1;

static void
teardown(void)
{
	if (saved_stderr != -1)
		dup2(saved_stderr, STDERR_FILENO);
	if (reader != -1)
		close(reader);
	if (journal != -1)
		close(journal);
	if (jpath[0] != '\0')
		unlink(jpath);
	if (dir[0] != '\0')
		rmdir(dir);
	unsetenv("JOURNAL_STREAM");
}

TestSuite(log, .fini = teardown, .timeout = 60);

/* fd 2 becomes a pipe (or a stream socket, as journald's); reader reads it. */
static void
stderr_to(bool socket_pair)
{
	int	p[2];

	saved_stderr = dup(STDERR_FILENO);
	if (socket_pair)
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    p), 0);
	else
		cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	reader = socket_pair ? p[1] : p[0];
	cr_assert_eq(dup2(socket_pair ? p[0] : p[1], STDERR_FILENO),
	    STDERR_FILENO);
	close(socket_pair ? p[0] : p[1]);
	fd_set_nonblock(reader, 1);
}

/* What stderr got so far. */
static char *
stderr_text(void)
{
	static char	text[1 << 20];
	size_t		len = 0;
	ssize_t		n;

	while (len < sizeof text - 1 &&
	    (n = read(reader, text + len, sizeof text - 1 - len)) > 0)
		len += (size_t)n;
	text[len] = '\0';
	return text;
}

/* JOURNAL_STREAM naming what fd 2 is now (or, when other, something else). */
static void
journal_stream(bool other)
{
	struct stat	st;
	char		v[64];

	cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
	snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino + (other ? 1 : 0));
	setenv("JOURNAL_STREAM", v, 1);
}

/* A datagram socket in the test's directory, standing for the journal's. */
static void
journal_bind(void)
{
	struct sockaddr_un	sa = { .sun_family = AF_UNIX };

	cr_assert_not_null(mkdtemp((char *)unit_tmp(dir, sizeof dir, "log")));
	snprintf(jpath, sizeof jpath, "%s/journal", dir);
	strcpy(sa.sun_path, jpath);
	journal = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(journal, (struct sockaddr *)&sa, sizeof sa), 0);
	log_set_journal_path(jpath);
}

Test(log, plain_text_without_journald)
{
	char	want[128];

	stderr_to(false);
	log_init("unit", LOG_LVL_INFO);
	cr_assert_str_eq(log_destination(), "stderr");
	log_warnx("hello %d", 1);
	log_debug("not at info level");
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = "t1" },
	    "about a task");
	snprintf(want, sizeof want, "unit[%d]: warning: hello 1\n"
	    "unit[%d]: info: about a task\n", (int)getpid(), (int)getpid());
	cr_assert_str_eq(stderr_text(), want);
}

Test(log, journal_stream_of_another_file_is_not_journald)
{
	stderr_to(true);
	journal_stream(true);
	journal_bind();
	log_init("unit", LOG_LVL_INFO);
	cr_assert_str_eq(log_destination(), "stderr");
	log_info("x");
	cr_assert(strstr(stderr_text(), "unit[") != NULL);
}

/* The fields of one native journal datagram, the binary form decoded. */
static struct json_object *
journal_next(void)
{
	struct json_object	*o = json_object_new_object();
	struct pollfd		 pfd = { .fd = journal, .events = POLLIN };
	static char		 d[65536];
	ssize_t			 n;
	char			*p, *end, *nl, *eq;
	uint64_t		 len = 0;

	cr_assert_eq(poll(&pfd, 1, 30000), 1, "no datagram");
	n = recv(journal, d, sizeof d, 0);
	cr_assert_gt(n, 0);
	for (p = d, end = d + n; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		cr_assert_not_null(nl, "a field without its newline");
		*nl = '\0';
		if ((eq = strchr(p, '=')) != NULL) {
			*eq = '\0';
			json_object_object_add(o, p,
			    json_object_new_string(eq + 1));
			continue;
		}
		for (int i = 7; i >= 0; i--)
			len = len << 8 | (unsigned char)nl[1 + i];
		cr_assert_leq(nl + 9 + len + 1, end);
		json_object_object_add(o, p, json_object_new_string_len(nl + 9,
		    (int)len));
		nl += 9 + len;
		cr_assert_eq(*nl, '\n', "binary field not ended by a newline");
	}
	return o;
}

static const char *
field(struct json_object *o, const char *key)
{
	struct json_object	*v;

	return json_object_object_get_ex(o, key, &v) ?
	    json_object_get_string(v) : NULL;
}

Test(log, under_journald_native_datagrams_with_heavyd_fields)
{
	struct json_object	*o;

	stderr_to(true);
	journal_stream(false);
	journal_bind();
	log_init("unit", LOG_LVL_INFO);
	cr_assert_str_eq(log_destination(), "the journal");
	log_with(LOG_LVL_WARN, &(struct log_fields){ .task_id = "0123abcd",
	    .worker_pid = 4242 }, "worker %d: %s", 4242, "first\nsecond");
	o = journal_next();
	cr_assert_str_eq(field(o, "PRIORITY"), "4");
	cr_assert_str_eq(field(o, "SYSLOG_IDENTIFIER"), "unit");
	cr_assert_str_eq(field(o, "MESSAGE"), "worker 4242: first\nsecond");
	cr_assert_str_eq(field(o, "HEAVYD_TASK_ID"), "0123abcd");
	cr_assert_str_eq(field(o, "HEAVYD_WORKER_PID"), "4242");
	cr_assert_null(field(o, "HEAVYD_IDENTITY"));
	json_object_put(o);

	log_info("plain");
	o = journal_next();
	cr_assert_str_eq(field(o, "PRIORITY"), "6");
	cr_assert_str_eq(field(o, "MESSAGE"), "plain");
	cr_assert_null(field(o, "HEAVYD_TASK_ID"));
	json_object_put(o);
	cr_assert_str_eq(stderr_text(), "", "a line went to stderr as well");
}

Test(log, journald_without_its_socket_gets_priority_prefixes)
{
	stderr_to(true);
	journal_stream(false);
	log_set_journal_path("/nonexistent/journal/socket");
	log_init("unit", LOG_LVL_DEBUG);
	cr_assert_str_eq(log_destination(),
	    "stderr, journald priority prefixes");
	log_warnx("careful");
	log_info("fine");
	log_debug("detail");
	cr_assert_str_eq(stderr_text(), "<4>careful\n<6>fine\n<7>detail\n");
}

Test(log, a_journal_gone_later_falls_back_to_the_stream)
{
	stderr_to(true);
	journal_stream(false);
	journal_bind();
	log_init("unit", LOG_LVL_INFO);
	close(journal);
	journal = -1;
	unlink(jpath);
	log_warnx("after journald went");
	cr_assert_str_eq(stderr_text(), "<4>after journald went\n");
}

Test(log, json_lines_for_log_shippers)
{
	struct json_object	*o, *v;
	char			*text, *nl;

	stderr_to(false);
	journal_stream(false);	/* json wins even under journald */
	log_init("unit", LOG_LVL_INFO);
	log_set_format(LOG_FORMAT_JSON);
	cr_assert_str_eq(log_destination(), "stderr, JSON lines");
	log_with(LOG_LVL_ERROR, &(struct log_fields){ .task_id = "t\"1",
	    .worker_pid = 7, .identity = "alice" }, "bad \xff byte,\n\"quoted\"");
	text = stderr_text();
	nl = strchr(text, '\n');
	cr_assert_not_null(nl);
	cr_assert_eq(nl[1], '\0', "one event, one line: %s", text);
	o = json_tokener_parse(text);
	cr_assert_not_null(o, "not JSON: %s", text);
	cr_assert_str_eq(field(o, "level"), "error");
	cr_assert_str_eq(field(o, "prog"), "unit");
	cr_assert_str_eq(field(o, "msg"), "bad \xef\xbf\xbd byte,\n\"quoted\"");
	cr_assert_str_eq(field(o, "task_id"), "t\"1");
	cr_assert_str_eq(field(o, "identity"), "alice");
	cr_assert(json_object_object_get_ex(o, "worker_pid", &v));
	cr_assert_eq(json_object_get_int(v), 7);
	cr_assert(json_object_object_get_ex(o, "pid", &v));
	cr_assert_eq(json_object_get_int(v), (int)getpid());
	cr_assert_eq(strlen(field(o, "time")), 24, "%s", field(o, "time"));
	cr_assert_eq(field(o, "time")[23], 'Z');
	json_object_put(o);

	log_info("no fields");
	o = json_tokener_parse(stderr_text());
	cr_assert_not_null(o);
	cr_assert_null(field(o, "task_id"));
	cr_assert_null(field(o, "worker_pid"));
	json_object_put(o);
}

Test(log, format_names)
{
	enum log_format	f;

	cr_assert_eq(log_format_parse("json", &f), 0);
	cr_assert_eq(f, LOG_FORMAT_JSON);
	cr_assert_eq(log_format_parse("text", &f), 0);
	cr_assert_eq(f, LOG_FORMAT_TEXT);
	cr_assert_eq(log_format_parse("JSON", &f), -1);
	cr_assert_eq(log_format_parse("", &f), -1);
}

/* Every line of text is whole: "unit[pid]: info: line N <padding>". */
static int
whole_lines(const char *text)
{
	const char	*p = text, *nl;
	int		 n = 0;
	char		 want[64];

	snprintf(want, sizeof want, "unit[%d]: info: line ", (int)getpid());
	for (; *p != '\0'; p = nl + 1, n++) {
		nl = strchr(p, '\n');
		cr_assert_not_null(nl, "a cut line at the end: %.80s", p);
		cr_assert(strncmp(p, want, strlen(want)) == 0, "a broken line: "
		    "%.80s", p);
		cr_assert_eq(nl - p, (long)strlen(want) + 6 + 300, "a line of %ld "
		    "bytes: %.80s", (long)(nl - p), p);
	}
	return n;
}

static uint64_t	hook_total;
static int	hook_calls;

static void
drop_hook(uint64_t total)
{
	hook_total = total;
	hook_calls++;
}

/* A reader that reads nothing: the writes go on, the losses are counted
 * (and the metrics told of each), and what did arrive is whole lines. */
static void
full_stderr(bool socket_pair)
{
	char		pad[301], *text, *all;
	int		got;
	uint64_t	before;

	memset(pad, 'x', 300);
	pad[300] = '\0';
	stderr_to(socket_pair);
	log_init("unit", LOG_LVL_INFO);
	log_set_nonblocking();
	log_set_drop_hook(drop_hook);
	before = log_dropped();
	for (int i = 0; i < 20000; i++)
		log_info("line %05d %s", i, pad);
	cr_assert_gt(log_dropped(), before, "nothing was dropped");
	cr_assert_eq(hook_total, log_dropped(), "the hook's total");
	cr_assert_eq((uint64_t)hook_calls, log_dropped() - before,
	    "the hook heard of every drop");
	/* Read out; the tail of a cut line goes with the next one. */
	text = xstrdup(stderr_text());
	log_info("line %05d %s", 99999, pad);
	all = xasprintf("%s%s", text, stderr_text());
	got = whole_lines(all);
	free(text);
	free(all);
	cr_assert_gt(got, 0);
	cr_assert_eq((uint64_t)got + log_dropped() - before, 20001,
	    "%d written, %llu dropped", got,
	    (unsigned long long)(log_dropped() - before));
}

Test(log, a_full_pipe_drops_lines_without_blocking)
{
	full_stderr(false);
	/* fd 2 itself stays blocking for the other processes that share it. */
	cr_assert_eq(fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK, 0);
}

Test(log, a_full_socket_drops_lines_without_blocking_or_cutting_one)
{
	full_stderr(true);
}

Test(log, a_relayed_worker_line_is_the_workers_event)
{
	struct json_object	*o, *v;
	char			 want[128];

	stderr_to(false);
	log_init("heavyd-zygote", LOG_LVL_INFO);
	log_relay(4242, "task 0123abcd agent 2", "?forged");
	snprintf(want, sizeof want, "heavyd-worker[4242] task 0123abcd agent 2: "
	    "?forged\n");
	cr_assert_str_eq(stderr_text(), want, "the relay's text line changed");
	log_set_format(LOG_FORMAT_JSON);
	log_relay(4242, "task 0123abcd agent 2", "?forged");
	o = json_tokener_parse(stderr_text());
	cr_assert_not_null(o);
	cr_assert_str_eq(field(o, "prog"), "heavyd-worker");
	cr_assert_str_eq(field(o, "label"), "task 0123abcd agent 2");
	cr_assert_str_eq(field(o, "msg"), "?forged");
	cr_assert(json_object_object_get_ex(o, "pid", &v));
	cr_assert_eq(json_object_get_int(v), 4242);
	cr_assert(json_object_object_get_ex(o, "worker_pid", &v));
	cr_assert_eq(json_object_get_int(v), 4242);
	json_object_put(o);
}

Test(log, a_relayed_line_in_the_journal_and_a_child_without_its_socket)
{
	struct json_object	*o;
	bool			 open_before[256];
	int			 jfd = -1;

	stderr_to(true);
	journal_stream(false);
	for (int fd = 0; fd < 256; fd++)
		open_before[fd] = fcntl(fd, F_GETFD) != -1;
	journal_bind();
	log_init("heavyd-zygote", LOG_LVL_INFO);
	for (int fd = 0; fd < 256 && jfd == -1; fd++)
		if (!open_before[fd] && fd != journal &&
		    fcntl(fd, F_GETFD) != -1)
			jfd = fd;
	cr_assert_neq(jfd, -1, "no socket for the journal");
	cr_assert(fcntl(jfd, F_GETFD) & FD_CLOEXEC);
	log_relay(77, "task 0123abcd agent 1", "hello");
	o = journal_next();
	cr_assert_str_eq(field(o, "SYSLOG_IDENTIFIER"), "heavyd-worker");
	cr_assert_str_eq(field(o, "SYSLOG_PID"), "77");
	cr_assert_str_eq(field(o, "HEAVYD_WORKER_PID"), "77");
	cr_assert_str_eq(field(o, "HEAVYD_LABEL"), "task 0123abcd agent 1");
	cr_assert_str_eq(field(o, "MESSAGE"), "hello");
	json_object_put(o);
	/* A forked worker: its logging goes to its own stderr, as text. */
	log_child();
	cr_assert_eq(fcntl(jfd, F_GETFD), -1, "the child kept the socket");
	cr_assert_str_eq(log_destination(), "stderr");
	log_info("from the child");
	cr_assert_eq(poll(&(struct pollfd){ .fd = journal, .events = POLLIN },
	    1, 0), 0, "the child still reached the journal");
	cr_assert(strstr(stderr_text(), "]: info: from the child\n") != NULL);
}

/*
 * Agent tools that misbehave on purpose, only in the test build of the
 * worker (HEAVY_TEST_HOOKS): tests use them to prove that a crashing,
 * spinning, blocking or lying worker is contained, and that a hostile one
 * (a fork bomb, a memory or descriptor hog, a write outside the workspace,
 * a shell, a connection to an unconfigured port) is stopped by its
 * sandbox.  The production build has none.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

#ifdef HEAVY_TEST_HOOKS
static int
tool_test_crash(struct json_object *args, struct buf *out, int *complete)
{
	static const char	last[] = "test_crash: last words, unended";
	ssize_t			n;

	(void)args; (void)out; (void)complete;
	/* No newline: the relay must still say it, once the pipe closes. */
	n = write(STDERR_FILENO, last, sizeof last - 1);
	(void)n;		/* it crashes all the same */
	raise(SIGSEGV);
	return -1;
}

static int
tool_test_spin(struct json_object *args, struct buf *out, int *complete)
{
	volatile unsigned long	n = 0;

	(void)args; (void)out; (void)complete;
	for (;;)
		n++;
	return -1;
}

static int
tool_test_bad_frame(struct json_object *args, struct buf *out, int *complete)
{
	static const char	bad[] = "\x09\x00\x02\x00\x00\x00\x00\x00";

	(void)args; (void)out; (void)complete;
	worker_send_raw(bad, sizeof bad - 1);	/* protocol version 9 */
	for (;;)
		pause();	/* the supervisor must kill us */
	return -1;
}

static int
tool_test_block(struct json_object *args, struct buf *out, int *complete)
{
	int	fds[2];
	char	c;

	(void)args; (void)out; (void)complete;
	if (pipe(fds) == 0)
		for (;;)
			(void)read(fds[0], &c, 1);	/* no writer ever writes */
	return -1;
}

/* Text for the model: what the kernel answered, by errno name. */
static int
tool_test_errno(struct buf *out, const char *what, int err)
{
	buf_printf(out, "error: %s: %s (%s)", what, strerrorname_np(err),
	    strerror(err));
	return -1;
}

/* Forks until it cannot: a bounded bomb, so an unconfined one is seen
 * (64 sleeping children) rather than taking the machine down. */
static int
tool_test_fork_bomb(struct json_object *args, struct buf *out, int *complete)
{
	pid_t	pid;

	(void)args; (void)complete;
	for (int i = 0; i < 64; i++) {
		if ((pid = fork()) == 0)
			for (;;)
				pause();
		if (pid == -1)
			return tool_test_errno(out, "fork", errno);
	}
	buf_printf(out, "forked 64 processes");
	return 0;
}

/* Allocates and touches memory, 1 MiB at a time, up to 4 GiB. */
static int
tool_test_memory_hog(struct json_object *args, struct buf *out, int *complete)
{
	size_t	mib;
	char	*p;

	(void)args; (void)complete;
	for (mib = 0; mib < 4096; mib++) {
		p = xmalloc(1 << 20);	/* at the limit: exit, out of memory */
		memset(p, 0xa5, 1 << 20);
	}
	buf_printf(out, "allocated %zu MiB without reaching a limit", mib);
	return 0;
}

/* One file of 16 MiB in the workspace; mib counts what was written. */
static int
tool_test_fill_file(int i, int *mib)
{
	static char	chunk[1 << 20];
	char		name[32];
	int		fd, err = 0;

	memset(chunk, 0xa5, sizeof chunk);
	snprintf(name, sizeof name, "fill-%d", i);
	if ((fd = openat(worker_workspace(), name, O_WRONLY | O_CREAT |
	    O_TRUNC | O_CLOEXEC, 0600)) == -1)
		return -1;
	for (int j = 0; j < 16 && err == 0; j++) {
		errno = 0;
		if (write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk)
			(*mib)++;
		else
			err = errno ? errno : ENOSPC;	/* short: full */
	}
	close(fd);
	errno = err;
	return err ? -1 : 0;
}

/*
 * Writes 16 MiB files into its workspace, up to 4 GiB.  Where the workspace
 * is a tmpfs, their pages are memory that RLIMIT_AS never sees: only the
 * cgroup's memory.max stops it.
 */
static int
tool_test_fill_workspace(struct json_object *args, struct buf *out,
    int *complete)
{
	int	mib = 0;

	(void)args; (void)complete;
	for (int i = 0; i < 256; i++)
		if (tool_test_fill_file(i, &mib) == -1) {
			buf_printf(out, "wrote %d MiB; ", mib);
			return tool_test_errno(out, "write", errno);
		}
	buf_printf(out, "wrote %d MiB without reaching a limit", mib);
	return 0;
}

/* A thread of the bomb: blocks in read on a pipe no one writes to (pause
 * is not in the workers' allowlist). */
static void *
tool_test_thread_wait(void *arg)
{
	int	fd = *(int *)arg;
	char	c;

	for (;;)
		(void)read(fd, &c, 1);
	return NULL;
}

/*
 * Starts threads until refused, at most 256, on small stacks so that
 * RLIMIT_AS is not what stops them.  seccomp kills a fork at once, but
 * threads it allows: the cgroup's pids.max, which counts them, is their
 * limit.  They wait until the worker exits.
 */
static int
tool_test_thread_bomb(struct json_object *args, struct buf *out,
    int *complete)
{
	static int	fds[2];
	pthread_attr_t	attr;
	pthread_t	t;
	int		n, rc = 0;

	(void)args; (void)complete;
	if (pipe2(fds, O_CLOEXEC) == -1)
		return tool_test_errno(out, "pipe2", errno);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (n = 0; n < 256; n++)
		if ((rc = pthread_create(&t, &attr, tool_test_thread_wait,
		    &fds[0])) != 0)
			break;
	pthread_attr_destroy(&attr);
	buf_printf(out, "started %d threads", n);
	if (rc == 0)
		return 0;
	buf_printf(out, "; ");
	return tool_test_errno(out, "pthread_create", rc);
}

/* Opens descriptors until the kernel refuses; keeps them. */
static int
tool_test_fd_hog(struct json_object *args, struct buf *out, int *complete)
{
	int	n = 0;

	(void)args; (void)complete;
	while (n < (1 << 20) && dup(STDERR_FILENO) != -1)
		n++;
	buf_printf(out, "opened %d descriptors; ", n);
	return tool_test_errno(out, "dup", errno);
}

/* open(2) of a path outside the workspace, past the file tools. */
static int
tool_test_write_outside(struct json_object *args, struct buf *out,
    int *complete)
{
	const char	*path = json_object_get_string(
	    json_object_object_get(args, "path"));
	int		 fd;

	(void)complete;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		return tool_test_errno(out, path, errno);
	if (write(fd, "escaped\n", 8) != 8)
		buf_printf(out, "short write; ");
	close(fd);
	buf_printf(out, "wrote %s", path);
	return 0;
}

/* A shell that would create path. */
static int
tool_test_exec_shell(struct json_object *args, struct buf *out, int *complete)
{
	const char	*path = json_object_get_string(
	    json_object_object_get(args, "path"));
	char		 cmd[512];

	(void)complete;
	snprintf(cmd, sizeof cmd, "echo escaped > '%s'", path);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	return tool_test_errno(out, "execl /bin/sh", errno);
}

/* 127.0.0.1 at the "port" argument. */
static struct sockaddr_in
tool_test_loopback(struct json_object *args)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET };

	sin.sin_port = htons((uint16_t)json_object_get_int(
	    json_object_object_get(args, "port")));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

/* A TCP connection to a loopback port. */
static int
tool_test_connect(struct json_object *args, struct buf *out, int *complete)
{
	struct sockaddr_in	sin = tool_test_loopback(args);
	int			fd;

	(void)complete;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return tool_test_errno(out, "socket", errno);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == -1) {
		close(fd);
		return tool_test_errno(out, "connect", errno);
	}
	close(fd);
	buf_printf(out, "connected to 127.0.0.1:%d", ntohs(sin.sin_port));
	return 0;
}

/* SIGKILL to a process named by pid: heavyd, the zygote, another worker. */
static int
tool_test_signal(struct json_object *args, struct buf *out, int *complete)
{
	int	pid;

	(void)complete;
	pid = json_object_get_int(json_object_object_get(args, "pid"));
	if (kill((pid_t)pid, SIGKILL) == -1)
		return tool_test_errno(out, "kill", errno);
	buf_printf(out, "killed %d", pid);
	return 0;
}

/* A UDP datagram to a loopback port. */
static int
tool_test_udp(struct json_object *args, struct buf *out, int *complete)
{
	struct sockaddr_in	sin = tool_test_loopback(args);
	int			fd;

	(void)complete;
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return tool_test_errno(out, "socket", errno);
	if (sendto(fd, "escaped", 7, 0, (struct sockaddr *)&sin,
	    sizeof sin) == -1) {
		close(fd);
		return tool_test_errno(out, "sendto", errno);
	}
	close(fd);
	buf_printf(out, "sent to 127.0.0.1:%d", ntohs(sin.sin_port));
	return 0;
}

/* A connection to a listening unix socket by its path (docker.sock). */
static int
tool_test_unix(struct json_object *args, struct buf *out, int *complete)
{
	struct sockaddr_un	sun = { .sun_family = AF_UNIX };
	const char		*path;
	int			fd;

	(void)complete;
	path = json_object_get_string(json_object_object_get(args, "path"));
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path ? path : "");
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return tool_test_errno(out, "socket", errno);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		close(fd);
		return tool_test_errno(out, "connect", errno);
	}
	close(fd);
	buf_printf(out, "connected to %s", sun.sun_path);
	return 0;
}

/* A line that looks like heavyd's own, then a flood: 4 MiB of lines. */
static int
tool_test_stderr(struct json_object *args, struct buf *out, int *complete)
{
	char	line[129];

	(void)args; (void)complete;
	dprintf(STDERR_FILENO, "\rheavyd[1]: error: forged by a worker\n");
	memset(line, 'x', sizeof line - 1);
	line[sizeof line - 1] = '\n';
	for (int i = 0; i < (4 << 20) / (int)sizeof line; i++)
		if (write(STDERR_FILENO, line, sizeof line) == -1)
			break;
	buf_printf(out, "wrote to stderr");
	return 0;
}

/* Who the worker runs as. */
static int
tool_test_ids(struct json_object *args, struct buf *out, int *complete)
{
	(void)args; (void)complete;
	buf_printf(out, "uid=%d gid=%d groups=%d", (int)getuid(), (int)getgid(),
	    getgroups(0, NULL));
	return 0;
}

/* The names in the environment the worker's code sees. */
static int
tool_test_env(struct json_object *args, struct buf *out, int *complete)
{
	(void)args; (void)complete;
	for (char **e = environ; *e != NULL; e++)
		buf_printf(out, "%s%.*s", e == environ ? "" : " ",
		    (int)strcspn(*e, "="), *e);
	return 0;
}

/*
 * Asks heavyd-egress (its test build) to try something its sandbox must
 * refuse: "write:PATH", "read:PATH", "bind", "signal:PID", "exec",
 * "fork".  Its answer is the tool's result; egress killed answers none.
 */
static int
tool_test_egress(struct json_object *args, struct buf *out, int *complete)
{
	struct egress_req	q = { .kind = EGRESS_PAGE, .body = "" };
	struct egress_resp	s;
	char			err[256];

	(void)complete;
	q.target = (char *)json_object_get_string(
	    json_object_object_get(args, "probe"));
	q.timeout_ms = 30000;
	if (q.target == NULL || strlen(q.target) > 900)
		return -1;
	q.target = xasprintf("heavy-test-probe:%s", q.target);
	if (egress_calls(&q, &s, 1, now_ms() + 30000, err, sizeof err) == -1)
		buf_printf(out, "egress probe: %s", err);
	else if (s.result == 0)
		buf_printf(out, "egress probe: no answer");
	else
		buf_printf(out, "egress probe: %s", s.error);
	if (s.result != 0)
		egress_resp_clear(&s);
	free(q.target);
	return 0;
}

#define NO_ARGS	"{\"type\":\"object\",\"properties\":{}}"
#define PROBE_ARG "{\"type\":\"object\",\"properties\":{\"probe\":" \
	"{\"type\":\"string\"}},\"required\":[\"probe\"]}"
#define PATH_ARG "{\"type\":\"object\",\"properties\":{\"path\":" \
	"{\"type\":\"string\"}},\"required\":[\"path\"]}"
#define PORT_ARG "{\"type\":\"object\",\"properties\":{\"port\":" \
	"{\"type\":\"integer\"}}}"
#define PID_ARG "{\"type\":\"object\",\"properties\":{\"pid\":" \
	"{\"type\":\"integer\"}}}"
const struct tool testtools[] = {
	{ "test_crash", "Test only: crash with SIGSEGV.", NO_ARGS,
	  tool_test_crash },
	{ "test_spin", "Test only: spin the CPU forever.", NO_ARGS,
	  tool_test_spin },
	{ "test_block", "Test only: block forever in read.", NO_ARGS,
	  tool_test_block },
	{ "test_bad_frame", "Test only: send an invalid frame.", NO_ARGS,
	  tool_test_bad_frame },
	{ "test_fork_bomb", "Test only: fork until refused.", NO_ARGS,
	  tool_test_fork_bomb },
	{ "test_memory_hog", "Test only: allocate memory until refused.",
	  NO_ARGS, tool_test_memory_hog },
	{ "test_fd_hog", "Test only: open descriptors until refused.",
	  NO_ARGS, tool_test_fd_hog },
	{ "test_fill_workspace", "Test only: fill the workspace with files.",
	  NO_ARGS, tool_test_fill_workspace },
	{ "test_thread_bomb", "Test only: start threads until refused.",
	  NO_ARGS, tool_test_thread_bomb },
	{ "test_write_outside", "Test only: open(2) a path for writing.",
	  PATH_ARG, tool_test_write_outside },
	{ "test_exec_shell", "Test only: exec a shell that writes path.",
	  PATH_ARG, tool_test_exec_shell },
	{ "test_connect", "Test only: connect to a loopback TCP port.",
	  PORT_ARG, tool_test_connect },
	{ "test_env", "Test only: list the environment's names.", NO_ARGS,
	  tool_test_env },
	{ "test_stderr", "Test only: forge and flood heavyd's log.", NO_ARGS,
	  tool_test_stderr },
	{ "test_ids", "Test only: the worker's uid, gid and groups.", NO_ARGS,
	  tool_test_ids },
	{ "test_signal", "Test only: SIGKILL a process by pid.", PID_ARG,
	  tool_test_signal },
	{ "test_udp", "Test only: send a UDP datagram to a loopback port.",
	  PORT_ARG, tool_test_udp },
	{ "test_unix", "Test only: connect to a unix socket by path.",
	  PATH_ARG, tool_test_unix },
	{ "test_egress", "Test only: make heavyd-egress try a forbidden "
	  "thing.", PROBE_ARG, tool_test_egress },
};
const size_t ntesttools = sizeof testtools / sizeof testtools[0];
#else
const struct tool testtools[1];
const size_t ntesttools = 0;
#endif

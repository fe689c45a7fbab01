/*
 * The zygote: a pre-initialised template process that holds no task data.
 * heavyd executes it once; it sets up what workers share (no network: that
 * is heavyd-egress's), then forks one worker per MSG_ZYGOTE_SPAWN, passes
 * the worker's pidfd back, and reaps every child,
 * reporting each wait status.  Forking this small process costs a fraction
 * of a fork+exec of a binary that loads 34 shared libraries.
 *
 * A worker's stderr is a pipe whose read end goes to heavyd at once
 * (MSG_ZYGOTE_STDERR), which relays its lines (supervisor/relay.c): the
 * zygote keeps none, so no later fork inherits a live worker's pipe (with
 * 1,600 live workers each fork copied, and each child closed, 1,600).
 */
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/linkhash.h>

#include "worker.h"

static int		 zygote_fd;
static int		 zygote_sigfd;
static pid_t		 zygote_pid;
static struct lh_table	*zygote_children;	/* pid -> worker id */
/* Workers forked ahead of need, each waiting for its job's fd. */
static pid_t		 spare_pid[ZYGOTE_MAX_SPARES];
static int		 spare_sock[ZYGOTE_MAX_SPARES];
static int		 nspares, want_spares = 4;	/* HEAVY_SPARES */
static bool		 refill = true;	/* off after a failed fork, until a request */
#define ZYGOTE_QUIET_MS		5	/* requests quiet this long: refill */
static int64_t		 last_request_ms;

/* One epoll set for the socket and the signals. */
static int		 zygote_epfd = -1;
#define ZYGOTE_EVENTS	16
#define ZYGOTE_LABEL	64		/* as heavyd keeps it (relay.c) */

static unsigned long
pid_hash(const void *k)
{
	return (unsigned long)(uintptr_t)k * 2654435761u;
}

static int
pid_equal(const void *a, const void *b)
{
	return a == b;
}

static void	zygote_exit(void) __attribute__((noreturn));

/* Sends one frame to the supervisor, which always reads while it lives;
 * a closed socket means it is gone (it may close while we report). */
static void
zygote_send(struct buf *frame, int fd)
{
	if (fd_send(zygote_fd, frame->data, frame->len, fd, 0) == -1) {
		if (errno == EPIPE || errno == ECONNRESET)
			zygote_exit();
		fatal("zygote: sendmsg");
	}
	buf_free(frame);
}

/* A pipe for a child's stderr; else both -1 (out of descriptors: the
 * child writes to /dev/null). */
static void
zlog_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) == -1)
		p[0] = p[1] = -1;
}

/*
 * Gives heavyd pid's stderr (fd, which we close: no later fork inherits
 * it), or with fd -1 the label a spare takes with its job.
 */
static void
zlog_pass(pid_t pid, int fd, const char *label)
{
	struct buf	frame;
	char		short_label[ZYGOTE_LABEL];

	snprintf(short_label, sizeof short_label, "%s", label);
	m_create(&frame, MSG_ZYGOTE_STDERR);
	m_add_u32(&frame, (uint32_t)pid);
	m_add_str(&frame, short_label);
	m_close(&frame, SIZE_MAX);
	zygote_send(&frame, fd);
	if (fd != -1)
		close(fd);
}

/* In a forked child: a worker in its own process group. */
static void
zygote_child_setup(const int err[2])
{
	sigset_t	none;
	int		errfd = err[1];

	close(zygote_fd);
	close(zygote_sigfd);
	close(zygote_epfd);
	for (int i = 0; i < nspares; i++)
		close(spare_sock[i]);
	/* Never heavyd's stderr: the relay, or nothing at all. */
	if (errfd == -1)
		errfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (errfd == -1 || dup2(errfd, STDERR_FILENO) == -1)
		_exit(1);
	close(errfd);
	log_child();	/* not the journal's socket: only the relay */
	if (err[0] != -1)
		close(err[0]);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGINT, SIG_DFL);	/* the zygote's choice, not theirs */
	signal(SIGHUP, SIG_DFL);
	setpgid(0, 0);
	prctl(PR_SET_NAME, "heavyd-worker");
	/* Die with the zygote; check the parent did not die before this. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != zygote_pid)
		_exit(1);
	if (cgroup_enter_child() == -1) {
		log_warn("worker %d: entering its cgroup", (int)getpid());
		_exit(1);
	}
	sandbox_oom_adj();
	sandbox_prepare();
}

/*
 * A spare: forked ahead of need, so a spawn request costs a sendmsg and
 * not a fork.  It holds no task data until its job arrives on its fd.
 */
static int
zygote_spare_fork(void)
{
	int	sv[2], err[2], fd;
	pid_t	pid;
	char	byte;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	zlog_pipe(err);
	if ((pid = fork()) == 0) {
		close(sv[0]);
		zygote_child_setup(err);
		prctl(PR_SET_NAME, "heavyd-spare");	/* no task's worker yet */
		if (fd_recv(sv[1], &byte, 1, &fd, 0) <= 0 || fd == -1)
			_exit(0);		/* the zygote went away */
		close(sv[1]);
		prctl(PR_SET_NAME, "heavyd-worker");
		worker_main(fd);
	}
	close(sv[1]);
	if (err[1] != -1)
		close(err[1]);
	if (pid == -1) {
		close(sv[0]);
		if (err[0] != -1)
			close(err[0]);
		return -1;
	}
	setpgid(pid, pid);
	/* Held before heavyd hears of it: a send that finds heavyd gone
	 * leaves through zygote_exit, which must kill it. */
	spare_pid[nspares] = pid;
	spare_sock[nspares++] = sv[0];
	if (err[0] != -1)
		zlog_pass(pid, err[0], "spare");
	return 0;
}

/* Forgets spare i (killing it when kill is set). */
static void
zygote_spare_drop(int i, int kill_it)
{
	if (kill_it)
		kill(-spare_pid[i], SIGKILL);
	close(spare_sock[i]);
	spare_pid[i] = spare_pid[--nspares];
	spare_sock[i] = spare_sock[nspares];
}

/*
 * The spare takes fd, or a fresh fork does; the pid, or -1 with errno.
 * A spare's pipe heavyd has: it is told the new label here, before the
 * spare has its job.  A fork's pipe is *errfd (else -1): the caller
 * passes it once the worker is among zygote_children, which zygote_exit
 * kills.
 */
static pid_t
zygote_take_worker(int fd, const char *label, int *errfd)
{
	pid_t	pid;
	int	err[2];

	*errfd = -1;
	while (nspares > 0) {
		pid = spare_pid[nspares - 1];
		/* Its label first: heavyd reads our reports before any line
		 * ready beside them (EV_PRIO_ZYGOTE), so the job's lines are
		 * never relayed as a spare's. */
		zlog_pass(pid, -1, label);
		if (fd_send(spare_sock[nspares - 1], "j", 1, fd, 0) == 0) {
			zygote_spare_drop(nspares - 1, 0);
			return pid;
		}
		zygote_spare_drop(nspares - 1, 1);
	}
	zlog_pipe(err);
	if ((pid = fork()) == 0) {
		zygote_child_setup(err);
		worker_main(fd);
	}
	if (err[1] != -1)
		close(err[1]);
	if (pid > 0) {
		setpgid(pid, pid);	/* both sides, so no kill(-pid) races it */
		*errfd = err[0];
	} else if (err[0] != -1)
		close(err[0]);
	return pid;
}

static void
zygote_fork(uint32_t id, int fd, const char *label)
{
	struct buf	frame;
	pid_t		pid;
	int		pidfd = -1, err = 0, errfd;

	pid = zygote_take_worker(fd, label, &errfd);
	if (pid == -1)
		err = errno;
	else {
		if ((pidfd = pidfd_open(pid, 0)) == -1)
			err = errno;
		lh_table_insert(zygote_children, (void *)(intptr_t)pid,
		    (void *)(uintptr_t)id);
		if (errfd != -1)	/* a fork's pipe, with its label */
			zlog_pass(pid, errfd, label);
	}
	close(fd);
	m_create(&frame, MSG_ZYGOTE_SPAWNED);
	m_add_u32(&frame, id);
	m_add_u32(&frame, pid == -1 ? 0 : (uint32_t)pid);
	m_add_u32(&frame, (uint32_t)err);
	m_close(&frame, SIZE_MAX);
	zygote_send(&frame, pidfd);
	if (pidfd != -1)
		close(pidfd);
}

/* The spares held, told to the supervisor when that changed (its metrics). */
static void
zygote_report_spares(void)
{
	static int	reported = -1;
	struct buf	frame;

	if (nspares == reported)
		return;
	m_create(&frame, MSG_ZYGOTE_SPARES);
	m_add_u32(&frame, (uint32_t)nspares);
	m_close(&frame, SIZE_MAX);
	zygote_send(&frame, -1);
	reported = nspares;
}

/* Reads one spawn request; anything malformed means a broken supervisor. */
static int
zygote_read(void)
{
	uint8_t		 data[256];
	struct msg_hdr	 hdr;
	struct mreader	 r;
	ssize_t		 n;
	uint32_t	 id;
	char		*label = NULL;
	int		 fd;

	if ((n = fd_recv(zygote_fd, data, sizeof data, &fd, 0)) <= 0)
		return -1;
	if (fd == -1 || m_frame_check(data, (size_t)n, sizeof data, &hdr) !=
	    FRAME_OK || hdr.type != MSG_ZYGOTE_SPAWN)
		fatalx("zygote: invalid spawn request");
	m_reader_init(&r, data + PROTO_HDR_LEN, hdr.len);
	if (m_get_u32(&r, &id) == -1 || m_get_str(&r, &label) == -1 ||
	    m_end(&r) == -1)
		fatalx("zygote: invalid spawn request");
	zygote_fork(id, fd, label);
	free(label);
	return 0;
}

/* The supervisor is gone: kill and reap every worker, then leave. */
static void
zygote_exit(void)
{
	struct lh_entry	*e;
	pid_t		 pid;

	while (nspares > 0)
		zygote_spare_drop(nspares - 1, 1);
	lh_foreach(zygote_children, e)
		kill(-(pid_t)(intptr_t)lh_entry_k(e), SIGKILL);
	while ((pid = waitpid(-1, NULL, 0)) > 0 || errno == EINTR)
		if (pid > 0)
			cgroup_reap(pid);
	_exit(0);
}

/* Reaps every exited child and tells the supervisor how it ended. */
static void
zygote_reap(void)
{
	struct signalfd_siginfo	 si;
	struct lh_entry		*e;
	struct buf		 frame;
	struct rusage		 ru;
	pid_t			 pid;
	uint32_t		 flags;
	int			 status;

	while (read(zygote_sigfd, &si, sizeof si) > 0)
		if (si.ssi_signo == SIGTERM)
			zygote_exit();
	while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
		log_debug("worker %d: %ld us user, %ld us system, %ld minor "
		    "faults", (int)pid, ru.ru_utime.tv_sec * 1000000L +
		    ru.ru_utime.tv_usec, ru.ru_stime.tv_sec * 1000000L +
		    ru.ru_stime.tv_usec, ru.ru_minflt);
		flags = cgroup_reap(pid);
		for (int i = 0; i < nspares; i++)
			if (spare_pid[i] == pid) {	/* it died waiting */
				zygote_spare_drop(i, 0);
				break;
			}
		e = lh_table_lookup_entry(zygote_children, (void *)(intptr_t)pid);
		if (e == NULL)
			continue;
		m_create(&frame, MSG_ZYGOTE_EXITED);
		m_add_u32(&frame, (uint32_t)(uintptr_t)lh_entry_v(e));
		m_add_u32(&frame, (uint32_t)pid);
		m_add_u32(&frame, (uint32_t)status);
		m_add_u32(&frame, flags);
		m_close(&frame, SIZE_MAX);
		lh_table_delete_entry(zygote_children, e);
		zygote_send(&frame, -1);
	}
}

/* Keeps only what libcurl and the resolver may read; drops every secret. */
static void
zygote_scrub_env(void)
{
	static const char	*keep[] = { "PATH", "TZ", "LANG", "LC_ALL",
	    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "HOME" };
	char			*saved[sizeof keep / sizeof keep[0]];
	size_t			 i;

	for (i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		saved[i] = getenv(keep[i]);
		saved[i] = saved[i] == NULL ? NULL : xstrdup(saved[i]);
	}
	clearenv();
	for (i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		if (saved[i] != NULL)
			setenv(keep[i], saved[i], 1);
		free(saved[i]);
	}
}

static void
zygote_setup(int fd)
{
	sigset_t	chld;
	int		type;
	socklen_t	len = sizeof type;
	char		err[256];

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_SEQPACKET)
		fatalx("heavyd-worker: started by heavyd, not by hand");
	zygote_fd = fd;
	zygote_pid = getpid();
	prctl(PR_SET_NAME, "heavyd-zygote");
	/* SIGTERM, not SIGKILL: we reap our workers before we go. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		fatal("zygote: PR_SET_PDEATHSIG");
	signal(SIGPIPE, SIG_IGN);
	/*
	 * A terminal's ^C and hangup reach the whole process group, which
	 * the zygote shares with heavyd: heavyd decides what they mean, and
	 * stops the zygote by closing its socket.
	 */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigaddset(&chld, SIGTERM);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	zygote_sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (zygote_sigfd == -1)
		fatal("zygote: signalfd");
	zygote_children = lh_table_new(256, NULL, pid_hash, pid_equal);
	/* heavyd checked the value; the zygote only clamps it. */
	if (getenv("HEAVY_SPARES") != NULL)
		want_spares = atoi(getenv("HEAVY_SPARES"));
	if (want_spares < 0 || want_spares > ZYGOTE_MAX_SPARES)
		want_spares = 4;
	cgroup_init(getenv("HEAVY_CGROUP"));	/* made by heavyd, or unset */
	if (getenv("HEAVY_LANDLOCK_ABI") != NULL)
		landlock_set_max(atoi(getenv("HEAVY_LANDLOCK_ABI")));
	/* Opened once here, so the workers that search inherit it. */
	if (getenv("HEAVY_ZYGOTE_HTML") != NULL && html_load() == -1)
		log_warnx("zygote: cannot open libxml2: search_web pages "
		    "will have no text extracts");
	zygote_scrub_env();
	if (seccomp_allowlist_build(err, sizeof err) == -1)
		fatalx("zygote: %s", err);
	tools_prepare();	/* the agents' tools, as text, shared */
	sandbox_zygote();	/* what every worker inherits */
}

/*
 * How long poll may sleep: forever with the pool full, else until the
 * requests have been quiet for ZYGOTE_QUIET_MS.  Requests come in bursts
 * (a task's agents all at once): a refill fork in the middle of one would
 * hold back the rest of the burst, and take a CPU from the workers just
 * started, a fork's time for each.
 */
static int
zygote_refill_wait(void)
{
	int64_t	left;

	if (!refill || nspares >= want_spares)
		return -1;
	left = last_request_ms + ZYGOTE_QUIET_MS - now_ms();
	return left > 0 ? (int)left : 0;
}

static void
zygote_events_init(void)
{
	struct epoll_event	ev = { .events = EPOLLIN };

	if ((zygote_epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("zygote: epoll_create1");
	ev.data.fd = zygote_fd;
	if (epoll_ctl(zygote_epfd, EPOLL_CTL_ADD, zygote_fd, &ev) == -1)
		fatal("zygote: epoll_ctl");
	ev.data.fd = zygote_sigfd;
	if (epoll_ctl(zygote_epfd, EPOLL_CTL_ADD, zygote_sigfd, &ev) == -1)
		fatal("zygote: epoll_ctl");
}

int
zygote_main(int fd)
{
	struct epoll_event	 ev[ZYGOTE_EVENTS];
	bool			 ctl, sig;
	int			 n;

	enum log_format		format;
	const char		*v = getenv(LOG_FORMAT_ENV);

	/* As heavyd logs; before the scrub takes JOURNAL_STREAM away. */
	log_init("heavyd-zygote", getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	if (v != NULL && log_format_parse(v, &format) == 0)
		log_set_format(format);
	zygote_setup(fd);
	zygote_events_init();
	for (;;) {
		zygote_report_spares();
		n = epoll_wait(zygote_epfd, ev, ZYGOTE_EVENTS,
		    zygote_refill_wait());
		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal("zygote: epoll_wait");
		}
		if (n == 0) {
			refill = zygote_spare_fork() == 0;
			continue;
		}
		/* The exits, then new requests. */
		ctl = sig = false;
		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd == zygote_fd)
				ctl = true;
			else if (ev[i].data.fd == zygote_sigfd)
				sig = true;
		}
		if (sig)
			zygote_reap();
		if (ctl) {
			if (zygote_read() == -1)
				zygote_exit();
			refill = true;
			last_request_ms = now_ms();
		}
	}
}

/*
 * The zygote: a pre-initialised template process that holds no task data.
 * heavyd executes it once; it loads libcurl, then forks one worker per
 * MSG_ZYGOTE_SPAWN, passes the worker's pidfd back, and reaps every child,
 * reporting each wait status.  Forking this small process costs a fraction
 * of a fork+exec of a binary that loads 34 shared libraries.
 */
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <poll.h>
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

/* Sends one frame and at most one fd; the supervisor always reads. */
static void
zygote_send(struct buf *frame, int fd)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsg;

	memset(&msg, 0, sizeof msg);
	iov.iov_base = frame->data;
	iov.iov_len = frame->len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cmsg, 0, sizeof cmsg);
		msg.msg_control = cmsg.buf;
		msg.msg_controllen = sizeof cmsg.buf;
		cmsg.hdr.cmsg_level = SOL_SOCKET;
		cmsg.hdr.cmsg_type = SCM_RIGHTS;
		cmsg.hdr.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&cmsg.hdr), &fd, sizeof fd);
	}
	while (sendmsg(zygote_fd, &msg, MSG_NOSIGNAL) == -1) {
		if (errno != EINTR)
			fatal("zygote: sendmsg");
	}
	buf_free(frame);
}

/* In the child: become a worker in its own process group. */
static void __attribute__((noreturn))
zygote_become_worker(int fd)
{
	sigset_t	none;

	close(zygote_fd);
	close(zygote_sigfd);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	prctl(PR_SET_NAME, "heavyd-worker");
	/* Die with the zygote; check the parent did not die before this. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != zygote_pid)
		_exit(1);
	worker_main(fd);
}

static void
zygote_fork(uint32_t id, int fd)
{
	struct buf	frame;
	pid_t		pid;
	int		pidfd = -1, err = 0;

	pid = fork();
	if (pid == 0)
		zygote_become_worker(fd);
	if (pid == -1)
		err = errno;
	else {
		setpgid(pid, pid);	/* both sides, so no kill(-pid) races it */
		if ((pidfd = pidfd_open(pid, 0)) == -1)
			err = errno;
		lh_table_insert(zygote_children, (void *)(intptr_t)pid,
		    (void *)(uintptr_t)id);
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

/* Reads one spawn request; anything malformed means a broken supervisor. */
static int
zygote_read(void)
{
	uint8_t		 data[64];
	struct msghdr	 msg;
	struct iovec	 iov = { data, sizeof data };
	struct cmsghdr	*c;
	struct msg_hdr	 hdr;
	struct mreader	 r;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsg;
	ssize_t		 n;
	uint32_t	 id;
	int		 fd = -1;

	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsg.buf;
	msg.msg_controllen = sizeof cmsg.buf;
	if ((n = recvmsg(zygote_fd, &msg, MSG_CMSG_CLOEXEC)) <= 0)
		return n == -1 && errno == EINTR ? 0 : -1;
	c = CMSG_FIRSTHDR(&msg);
	if (c != NULL && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof fd);
	if (fd == -1 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    m_frame_check(data, n, sizeof data, &hdr) != FRAME_OK ||
	    hdr.type != MSG_ZYGOTE_SPAWN)
		fatalx("zygote: invalid spawn request");
	m_reader_init(&r, data + PROTO_HDR_LEN, hdr.len);
	if (m_get_u32(&r, &id) == -1 || m_end(&r) == -1)
		fatalx("zygote: invalid spawn request");
	zygote_fork(id, fd);
	return 0;
}

/* The supervisor is gone: kill and reap every worker, then leave. */
static void __attribute__((noreturn))
zygote_exit(void)
{
	struct lh_entry	*e;

	lh_foreach(zygote_children, e)
		kill(-(pid_t)(intptr_t)lh_entry_k(e), SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	_exit(0);
}

/* Reaps every exited child and tells the supervisor how it ended. */
static void
zygote_reap(void)
{
	struct signalfd_siginfo	 si;
	struct lh_entry		*e;
	struct buf		 frame;
	pid_t			 pid;
	int			 status;

	while (read(zygote_sigfd, &si, sizeof si) > 0)
		if (si.ssi_signo == SIGTERM)
			zygote_exit();
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		e = lh_table_lookup_entry(zygote_children, (void *)(intptr_t)pid);
		if (e == NULL)
			continue;
		m_create(&frame, MSG_ZYGOTE_EXITED);
		m_add_u32(&frame, (uint32_t)(uintptr_t)lh_entry_v(e));
		m_add_u32(&frame, (uint32_t)pid);
		m_add_u32(&frame, (uint32_t)status);
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
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigaddset(&chld, SIGTERM);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	zygote_sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (zygote_sigfd == -1)
		fatal("zygote: signalfd");
	zygote_children = lh_table_new(256, NULL, pid_hash, pid_equal);
	zygote_scrub_env();
	if (llm_init() == -1)
		fatalx("zygote: libcurl initialisation failed");
}

int
zygote_main(int fd)
{
	struct pollfd	pfd[2];

	log_init("heavyd-zygote", getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	zygote_setup(fd);
	for (;;) {
		pfd[0].fd = zygote_fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = zygote_sigfd;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			fatal("zygote: poll");
		}
		if (pfd[1].revents & POLLIN)
			zygote_reap();
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (zygote_read() == -1)
				zygote_exit();
		}
	}
}

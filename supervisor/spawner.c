/*
 * Our handle on the zygote: heavyd-worker executed once with a scrubbed
 * environment (no API key), fed spawn requests over a SOCK_SEQPACKET pair.
 * If it dies, its workers die with it (PR_SET_PDEATHSIG); we fail them and
 * start a new one.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"
#include "metrics.h"
#include "../worker/worker.h"

struct spawn_req {
	uint32_t			id;
	int				fd;
	char				*label;
	TAILQ_ENTRY(spawn_req)		entry;
};

static char			*spawner_path;
static int			 spawner_spares;
static bool			 spawner_html;	/* the zygote opens libxml2 */
static int			 spawner_fd = -1;
static pid_t			 spawner_pid = -1;
static struct event		*spawner_rev, *spawner_wev, *spawner_chld;
static struct event		*spawner_retry;
static TAILQ_HEAD(, spawn_req)	 spawner_queue =
    TAILQ_HEAD_INITIALIZER(spawner_queue);

static void	spawner_lost(void);

/*
 * The zygote's environment: what libcurl may read, never a secret; and
 * how to log, as heavyd does (JOURNAL_STREAM: its stderr is heavyd's).
 */
static char **
spawner_env(void)
{
	static const char *const keep[] = { "PATH", "TZ", "LANG", "LC_ALL",
	    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "HOME",
	    "HEAVY_DEBUG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
	    "HEAVY_CGROUP", "JOURNAL_STREAM", "HEAVY_JOURNAL_SOCKET" };
	size_t			 k;
	char			**env = env_keep(keep, sizeof keep / sizeof keep[0],
	    4, &k);

	env[k++] = xasprintf("HEAVY_SPARES=%d", spawner_spares);	/* checked */
	/* The ABI the report names, which may be below the kernel's. */
	env[k++] = xasprintf("HEAVY_LANDLOCK_ABI=%d", features_landlock());
	env[k++] = xasprintf("%s=%s", LOG_FORMAT_ENV, log_format_name());
	if (spawner_html)
		env[k] = xstrdup("HEAVY_ZYGOTE_HTML=1");
	return env;
}

/* posix_spawn (vfork-fast) with the zygote's socket on fd 3, stdio on null. */
static pid_t
spawner_exec(int fd)
{
	posix_spawn_file_actions_t	 fa;
	char				*argv[] = { "heavyd-zygote", "--zygote", NULL };
	char				**env = spawner_env();
	pid_t				 pid;
	int				 rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fd, ZYGOTE_FD);
	argv[0] = "heavyd-worker";
	rc = posix_spawn(&pid, spawner_path, &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	env_free(env);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return pid;
}

/* One non-blocking send of a spawn request with the worker's fd. */
static int
spawner_send(uint32_t id, int fd, const char *label)
{
	struct buf	frame;
	int		rc;

	m_create(&frame, MSG_ZYGOTE_SPAWN);
	m_add_u32(&frame, id);
	m_add_str(&frame, label);
	m_close(&frame, SIZE_MAX);
	rc = fd_send(spawner_fd, frame.data, frame.len, fd, MSG_DONTWAIT);
	buf_free(&frame);
	return rc;
}

/* Sends what waited for room in the socket, in order. */
static void
spawner_flush(void)
{
	struct spawn_req	*r;

	while ((r = TAILQ_FIRST(&spawner_queue)) != NULL) {
		if (spawner_send(r->id, r->fd, r->label) == -1) {
			if (errno == EAGAIN || errno == ENOBUFS)
				event_add(spawner_wev, NULL);
			else
				spawner_lost();
			return;
		}
		TAILQ_REMOVE(&spawner_queue, r, entry);
		close(r->fd);
		free(r->label);
		free(r);
	}
}

/*
 * Hands fd to the zygote for worker id; the fd is ours to close after.
 * The label prefixes what the worker writes to its stderr, which we
 * relay (relay.c) from the pipe the zygote passes back.
 */
int
spawner_spawn(uint32_t id, int fd, const char *label)
{
	struct spawn_req	*r;

	if (spawner_fd == -1)
		return -1;
	if (TAILQ_EMPTY(&spawner_queue) && spawner_send(id, fd, label) == 0) {
		close(fd);
		return 0;
	}
	if (errno != EAGAIN && errno != ENOBUFS && TAILQ_EMPTY(&spawner_queue))
		return -1;
	r = xmalloc(sizeof *r);
	r->id = id;
	r->fd = fd;
	r->label = xstrdup(label);
	TAILQ_INSERT_TAIL(&spawner_queue, r, entry);
	event_add(spawner_wev, NULL);
	return 0;
}

static void
spawner_write_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	spawner_flush();
}

/* The zygote's spares, as it counts them: a metric. */
static int
spawner_spares_report(struct mreader *r, int passed_fd)
{
	uint32_t	n;

	if (m_get_u32(r, &n) == -1 || m_end(r) == -1 || passed_fd != -1 ||
	    n > ZYGOTE_MAX_SPARES)
		return -1;
	metrics_zygote_spares((int)n);
	return 0;
}

/*
 * A worker's stderr, whose read end the zygote passed and closed (or a
 * spare's new label, with none): relayed here, so no fork of the zygote
 * inherits it.
 */
static int
spawner_stderr(struct mreader *r, int passed_fd)
{
	uint32_t	 pid;
	char		*label = NULL;

	if (m_get_u32(r, &pid) == -1 || m_get_str(r, &label) == -1 ||
	    m_end(r) == -1 || pid == 0 || pid > INT32_MAX) {
		free(label);
		return -1;
	}
	if (passed_fd != -1)
		relay_add((pid_t)pid, passed_fd, label);
	else
		relay_label((pid_t)pid, label);
	free(label);
	return 0;
}

/* Takes one SPAWNED, EXITED, SPARES or STDERR frame, and the fd that may
 * come with it. */
static int
spawner_dispatch(const uint8_t *data, ssize_t n, int passed_fd)
{
	struct msg_hdr	hdr;
	struct mreader	r;
	uint32_t	id, pid, v, flags = 0;

	if (m_frame_check(data, (size_t)n, (size_t)n, &hdr) != FRAME_OK ||
	    (size_t)n != PROTO_HDR_LEN + hdr.len)
		return -1;
	m_reader_init(&r, data + PROTO_HDR_LEN, hdr.len);
	if (hdr.type == MSG_ZYGOTE_SPARES)
		return spawner_spares_report(&r, passed_fd);
	if (hdr.type == MSG_ZYGOTE_STDERR)
		return spawner_stderr(&r, passed_fd);
	m_get_u32(&r, &id);
	m_get_u32(&r, &pid);
	m_get_u32(&r, &v);
	if (hdr.type == MSG_ZYGOTE_EXITED)
		m_get_u32(&r, &flags);
	if (m_end(&r) == -1 || pid > INT32_MAX)
		return -1;
	if (hdr.type == MSG_ZYGOTE_SPAWNED)
		workers_spawned(id, (pid_t)pid, passed_fd, (int)v);
	else if (hdr.type == MSG_ZYGOTE_EXITED && passed_fd == -1)
		workers_exited(id, (pid_t)pid, (int)v, flags);
	else
		return -1;
	return 0;
}

/* 1 when a report was handled, 0 when none waits, -1 when broken. */
static int
spawner_recv(void)
{
	uint8_t	data[256];	/* a STDERR frame's label: under 64 */
	ssize_t	n;
	int	fd;

	n = fd_recv(spawner_fd, data, sizeof data, &fd, MSG_DONTWAIT);
	if (n == -1 && errno == EAGAIN)
		return 0;
	if (n <= 0)
		return -1;
	if (spawner_dispatch(data, n, fd) == -1) {
		if (fd != -1)
			close(fd);
		log_warnx("zygote sent an invalid frame");
		return -1;
	}
	return 1;
}

static void
spawner_read_cb(evutil_socket_t fd, short events, void *arg)
{
	int	rc;

	(void)fd; (void)events; (void)arg;
	/* Bounded, so a flood of reports cannot starve the MCP input. */
	for (int i = 0; i < 256; i++) {
		if ((rc = spawner_recv()) == -1) {
			spawner_lost();
			return;
		}
		if (rc == 0)
			return;
	}
}

static void
spawner_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	if (spawner_fd == -1 && spawner_start(NULL, 0, false) == -1)
		log_warnx("zygote restart failed; retrying in 1 s");
}

/* The zygote died or broke: fail its workers and start another, later. */
static void
spawner_lost(void)
{
	struct spawn_req	*r;
	struct timeval		 one = { 1, 0 };

	if (spawner_fd == -1)
		return;
	log_warnx("zygote lost; failing its workers and restarting it");
	metrics_zygote_up(false);
	metrics_zygote_spares(0);
	metrics_zygote_restart();
	if (spawner_pid > 0)
		kill(spawner_pid, SIGKILL);
	event_free(spawner_rev);
	event_free(spawner_wev);
	close(spawner_fd);
	spawner_fd = -1;
	while ((r = TAILQ_FIRST(&spawner_queue)) != NULL) {
		TAILQ_REMOVE(&spawner_queue, r, entry);
		close(r->fd);
		free(r->label);
		free(r);
	}
	workers_lost();
	event_add(spawner_retry, &one);
}

/* Reaps the zygote and heavyd-egress, our only direct children. */
static void
spawner_chld_cb(evutil_socket_t sig, short events, void *arg)
{
	pid_t	pid;
	int	status;

	(void)sig; (void)events; (void)arg;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid != spawner_pid) {
			egressctl_exited(pid, status);
			continue;
		}
		spawner_pid = -1;
		if (spawner_fd != -1) {
			log_warnx("zygote exited (status %d)", status);
			spawner_lost();
		}
	}
}

int
spawner_start(const char *worker_path, int spares, bool html)
{
	int	sv[2], fd;

	if (worker_path != NULL) {
		spawner_spares = spares;
		spawner_html = html;
		free(spawner_path);
		spawner_path = xstrdup(worker_path);
		spawner_chld = evsignal_new(ev_base, SIGCHLD, spawner_chld_cb,
		    NULL);
		evsignal_add(spawner_chld, NULL);
		relay_init();
		spawner_retry = evtimer_new(ev_base, spawner_retry_cb, NULL);
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	fd = sv[1];
	if (fd == ZYGOTE_FD) {	/* dup2 onto itself would keep FD_CLOEXEC */
		fd = fcntl(sv[1], F_DUPFD_CLOEXEC, ZYGOTE_FD + 1);
		close(sv[1]);
	}
	spawner_pid = spawner_exec(fd);
	close(fd);
	if (spawner_pid == -1) {
		close(sv[0]);
		event_add(spawner_retry, &(struct timeval){ 1, 0 });
		return -1;
	}
	spawner_fd = sv[0];
	fd_set_nonblock(spawner_fd, 1);
	spawner_rev = event_new(ev_base, spawner_fd, EV_READ | EV_PERSIST,
	    spawner_read_cb, NULL);
	spawner_wev = event_new(ev_base, spawner_fd, EV_WRITE,
	    spawner_write_cb, NULL);
	event_priority_set(spawner_rev, EV_PRIO_ZYGOTE);
	event_add(spawner_rev, NULL);
	metrics_zygote_up(true);
	log_debug("zygote started, pid %d", (int)spawner_pid);
	return 0;
}

/* Whether the zygote is there to fork workers (for readiness). */
bool
spawner_up(void)
{
	return spawner_fd != -1;
}

/* Gives the zygote 2 s to kill and reap its workers, then kills it. */
static void
spawner_wait_exit(void)
{
	struct timespec	ten_ms = { 0, 10 * 1000 * 1000 };

	for (int i = 0; i < 200; i++) {
		if (waitpid(spawner_pid, NULL, WNOHANG) != 0) {
			spawner_pid = -1;
			return;
		}
		nanosleep(&ten_ms, NULL);
	}
	kill(spawner_pid, SIGKILL);
	waitpid(spawner_pid, NULL, 0);
	spawner_pid = -1;
}

/* Closing the socket makes the zygote exit, and its workers with it. */
void
spawner_stop(void)
{
	struct spawn_req	*r;

	while ((r = TAILQ_FIRST(&spawner_queue)) != NULL) {
		TAILQ_REMOVE(&spawner_queue, r, entry);
		close(r->fd);
		free(r->label);
		free(r);
	}
	if (spawner_fd != -1) {
		event_free(spawner_rev);
		event_free(spawner_wev);
		close(spawner_fd);
		spawner_fd = -1;
	}
	metrics_zygote_up(false);
	metrics_zygote_spares(0);
	if (spawner_pid > 0)
		spawner_wait_exit();
	relay_stop();	/* the workers gone with the zygote: their last lines */
	if (spawner_chld != NULL)
		event_free(spawner_chld);
	if (spawner_retry != NULL)
		event_free(spawner_retry);
	spawner_chld = spawner_retry = NULL;
	free(spawner_path);
	spawner_path = NULL;
}

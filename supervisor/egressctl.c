/*
 * Our handle on heavyd-egress: the program beside heavyd-worker, executed
 * with --egress, the one process that holds the keys and talks to the
 * network.  Its first
 * frame is MSG_EGRESS_CONFIG (the keys, the caps); then each worker gets
 * a socket pair, one end attached here (MSG_EGRESS_ATTACH, with the
 * upstreams the worker's job may use), the other passed to the worker.
 * If egress dies, the workers' calls in flight fail (their sockets close,
 * and they say why); we start another at once for the workers after.
 * Each attach names the worker's task and its owner's identity, as an
 * opaque key, for the governor's fairness: egress need not know names.
 */
#include <sys/queue.h>
#include <sys/random.h>
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

#include <nettle/hmac.h>

#include "supervisor.h"
#include "metrics.h"
#include "../worker/worker.h"

struct egress_pending {
	struct buf			frame;
	int				fd;
	TAILQ_ENTRY(egress_pending)	entry;
};

static char			*egressctl_path;
static char			*egressctl_ca_file;	/* ca_file, or NULL */
static struct egress_config	 egressctl_cfg;
static int			 egressctl_fd = -1;
static pid_t			 egressctl_pid = -1;
static int64_t			 egressctl_started;	/* ms */
static pid_t			 egressctl_dying = -1;	/* lost, not reaped */
static struct event		*egressctl_rev, *egressctl_wev, *egressctl_retry;
static uint64_t			 egressctl_cancelled;
static uint8_t			 egressctl_id_key[32];	/* identities' */
static bool			 egressctl_id_keyed;
static TAILQ_HEAD(, egress_pending) egressctl_queue =
    TAILQ_HEAD_INITIALIZER(egressctl_queue);

#define EGRESSCTL_RETRY_MS	1000

static int	egressctl_spawn(void);

/* What libcurl may read, how to log and the CAs to trust (ca_file, as
 * HEAVY_CA_FILE); never a secret. */
static char **
egressctl_env(void)
{
	static const char *const keep[] = { "PATH", "TZ", "LANG", "LC_ALL",
	    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "HOME",
	    "HEAVY_DEBUG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
	    "JOURNAL_STREAM", "HEAVY_JOURNAL_SOCKET" };
	size_t			 k;
	char			**env = env_keep(keep, sizeof keep / sizeof keep[0],
	    2, &k);

	env[k++] = xasprintf("%s=%s", LOG_FORMAT_ENV, log_format_name());
	if (egressctl_ca_file != NULL)
		env[k] = xasprintf("HEAVY_CA_FILE=%s", egressctl_ca_file);
	return env;
}

static pid_t
egressctl_exec(int fd)
{
	posix_spawn_file_actions_t	 fa;
	char				*argv[] = { "heavyd-egress", "--egress",
	    NULL };
	char				**env = egressctl_env();
	pid_t				 pid;
	int				 rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fd, ZYGOTE_FD);
	rc = posix_spawn(&pid, egressctl_path, &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	env_free(env);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return pid;
}

static void
egressctl_pending_free(struct egress_pending *p)
{
	close(p->fd);
	buf_free(&p->frame);
	free(p);
}

/* Attaches what waited for room in the socket, in order. */
static void
egressctl_flush(void)
{
	struct egress_pending	*p;

	while ((p = TAILQ_FIRST(&egressctl_queue)) != NULL) {
		if (fd_send(egressctl_fd, p->frame.data, p->frame.len, p->fd,
		    MSG_DONTWAIT) == -1) {
			if (errno == EAGAIN || errno == ENOBUFS)
				event_add(egressctl_wev, NULL);
			return;		/* else the read side sees it die */
		}
		TAILQ_REMOVE(&egressctl_queue, p, entry);
		egressctl_pending_free(p);
	}
}

/*
 * A socket to egress for one worker, whose job may use the upstreams in
 * a: the worker's end, or -1 when egress is down (the worker's calls then
 * fail, saying so).
 */
int
egressctl_attach(const struct egress_attach *a)
{
	struct egress_pending	*p;
	int			 sv[2];

	if (egressctl_fd == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	p = xcalloc(1, sizeof *p);
	m_create(&p->frame, MSG_EGRESS_ATTACH);
	egress_attach_encode(&p->frame, a);
	m_close(&p->frame, SIZE_MAX);
	p->fd = sv[1];
	TAILQ_INSERT_TAIL(&egressctl_queue, p, entry);
	egressctl_flush();
	return sv[0];
}

/*
 * An owner's opaque key for egress (0 for none): a keyed hash, HMAC-SHA256
 * under a key of this process's, so a name chosen to collide with another
 * identity's key cannot be found from outside.  The same for the life of
 * heavyd, egress restarts and all.
 */
uint64_t
egressctl_identity(const char *owner)
{
	struct hmac_sha256_ctx	ctx;
	uint8_t			mac[SHA256_DIGEST_SIZE];
	uint64_t		key;

	if (owner == NULL || *owner == '\0')
		return 0;
	if (!egressctl_id_keyed) {
		if (getrandom(egressctl_id_key, sizeof egressctl_id_key, 0) !=
		    (ssize_t)sizeof egressctl_id_key)
			fatal("getrandom");
		egressctl_id_keyed = true;
	}
	hmac_sha256_set_key(&ctx, sizeof egressctl_id_key, egressctl_id_key);
	hmac_sha256_update(&ctx, strlen(owner), (const uint8_t *)owner);
	hmac_sha256_digest(&ctx, sizeof mac, mac);
	memcpy(&key, mac, sizeof key);
	return key != 0 ? key : 1;
}

static void
egressctl_write_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	egressctl_flush();
}

/* egress died or broke: its workers' calls fail by themselves. */
static void
egressctl_lost(const char *why)
{
	struct egress_pending	*p;

	if (egressctl_fd == -1)
		return;
	log_warnx("heavyd-egress %s; the upstream calls in flight fail; "
	    "restarting it", why);
	metrics_egress_up(false);
	metrics_egress_restart();
	if (egressctl_pid > 0) {
		kill(egressctl_pid, SIGKILL);
		egressctl_dying = egressctl_pid;	/* its cause, once reaped */
		egressctl_pid = -1;
	}
	event_free(egressctl_rev);
	event_free(egressctl_wev);
	close(egressctl_fd);
	egressctl_fd = -1;
	while ((p = TAILQ_FIRST(&egressctl_queue)) != NULL) {
		TAILQ_REMOVE(&egressctl_queue, p, entry);
		egressctl_pending_free(p);
	}
	/* One that dies as it starts would otherwise be restarted in a
	 * tight loop. */
	if (now_ms() - egressctl_started < EGRESSCTL_RETRY_MS)
		event_add(egressctl_retry, &(struct timeval){ 1, 0 });
	else
		event_active(egressctl_retry, EV_TIMEOUT, 0);
}

/* MSG_EGRESS_BREAKER: an upstream's breaker, for the metrics' gauge. */
static int
egressctl_breaker(struct mreader *r)
{
	char	*url = NULL, *state = NULL;
	int	 rc = -1;

	if (m_get_str(r, &url) == 0 && m_get_str(r, &state) == 0 &&
	    m_end(r) == 0 && (strcmp(state, "closed") == 0 ||
	    strcmp(state, "open") == 0 || strcmp(state, "half-open") == 0)) {
		metrics_egress_breaker(url, state);
		rc = 0;
	}
	free(url);
	free(state);
	return rc;
}

/* MSG_EGRESS_CANCELLED: the total of transfers cut for a gone worker. */
static int
egressctl_dispatch(const uint8_t *data, ssize_t n, int fd)
{
	struct msg_hdr	hdr;
	struct mreader	r;
	uint64_t	total;

	if (fd != -1 || m_frame_check(data, (size_t)n, (size_t)n, &hdr) !=
	    FRAME_OK || (size_t)n != PROTO_HDR_LEN + hdr.len ||
	    (hdr.type != MSG_EGRESS_CANCELLED &&
	    hdr.type != MSG_EGRESS_BREAKER))
		return -1;
	m_reader_init(&r, data + PROTO_HDR_LEN, hdr.len);
	if (hdr.type == MSG_EGRESS_BREAKER)
		return egressctl_breaker(&r);
	if (m_get_u64(&r, &total) == -1 || m_end(&r) == -1)
		return -1;
	/* A total per egress process; one that restarted counts from 0. */
	if (total > egressctl_cancelled)
		metrics_egress_cancelled(total - egressctl_cancelled);
	egressctl_cancelled = total;
	return 0;
}

static void
egressctl_read_cb(evutil_socket_t sock, short events, void *arg)
{
	uint8_t	data[EGRESS_MAX_TARGET + 128];
	ssize_t	n;
	int	fd;

	(void)sock; (void)events; (void)arg;
	for (int i = 0; i < 64; i++) {
		n = fd_recv(egressctl_fd, data, sizeof data, &fd, MSG_DONTWAIT);
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			egressctl_lost("went away");
			return;
		}
		if (egressctl_dispatch(data, n, fd) == -1) {
			if (fd != -1)
				close(fd);
			egressctl_lost("sent an invalid frame");
			return;
		}
	}
}

static void
egressctl_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	if (egressctl_fd == -1 && egressctl_spawn() == -1) {
		log_warnx("heavyd-egress restart failed; retrying in 1 s");
		event_add(egressctl_retry, &(struct timeval){ 1, 0 });
	}
}

/* Why egress ended, by name: SIGSYS is its seccomp filter's doing. */
static void
egressctl_why(int status, char *why, size_t len)
{
	int	sig;

	if (WIFEXITED(status)) {
		snprintf(why, len, "exited with status %d", WEXITSTATUS(status));
		return;
	}
	sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	if (sig == SIGSYS)
		snprintf(why, len, "was killed by SIGSYS: a forbidden system "
		    "call (its seccomp filter)");
	else
		snprintf(why, len, "was killed by SIG%s",
		    sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
}

/* Whether pid was egress: reaped by the SIGCHLD handler in spawner.c. */
bool
egressctl_exited(pid_t pid, int status)
{
	char	why[128];

	if (pid != egressctl_pid && pid != egressctl_dying)
		return false;
	egressctl_why(status, why, sizeof why);
	if (pid == egressctl_dying) {
		/* Its socket closed first, which was said: now the cause. */
		egressctl_dying = -1;
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			log_warnx("heavyd-egress[%d] %s", (int)pid, why);
		return true;
	}
	egressctl_pid = -1;
	egressctl_lost(why);
	return true;
}

/* The keys go in the first frame, blocking: nothing else is queued. */
static int
egressctl_send_config(int fd)
{
	struct buf	frame;
	int		rc;

	m_create(&frame, MSG_EGRESS_CONFIG);
	egress_config_encode(&frame, &egressctl_cfg);
	m_close(&frame, SIZE_MAX);
	rc = fd_send(fd, frame.data, frame.len, -1, 0);
	explicit_bzero(frame.data, frame.len);
	buf_free(&frame);
	return rc;
}

/* Then its sandbox (egress_sandbox.c), entered once it has initialised. */
static int
egressctl_send_sandbox(int fd)
{
	struct sandbox	sb;
	struct buf	frame;
	int		rc;

	features_egress_sandbox(&sb);
	m_create(&frame, MSG_EGRESS_SANDBOX);
	sandbox_encode(&frame, &sb);
	m_add_u32(&frame, (uint32_t)features_landlock());
	m_close(&frame, SIZE_MAX);
	rc = fd_send(fd, frame.data, frame.len, -1, 0);
	buf_free(&frame);
	return rc;
}

static int
egressctl_spawn(void)
{
	int	sv[2], fd;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	fd = sv[1];
	if (fd == ZYGOTE_FD) {	/* dup2 onto itself would keep FD_CLOEXEC */
		fd = fcntl(sv[1], F_DUPFD_CLOEXEC, ZYGOTE_FD + 1);
		close(sv[1]);
	}
	egressctl_pid = egressctl_exec(fd);
	close(fd);
	egressctl_started = now_ms();
	if (egressctl_pid == -1 || egressctl_send_config(sv[0]) == -1 ||
	    egressctl_send_sandbox(sv[0]) == -1) {
		close(sv[0]);
		return -1;
	}
	egressctl_fd = sv[0];
	fd_set_nonblock(egressctl_fd, 1);
	egressctl_rev = event_new(ev_base, egressctl_fd, EV_READ | EV_PERSIST,
	    egressctl_read_cb, NULL);
	egressctl_wev = event_new(ev_base, egressctl_fd, EV_WRITE,
	    egressctl_write_cb, NULL);
	event_add(egressctl_rev, NULL);
	egressctl_cancelled = 0;	/* the new process counts from 0 */
	metrics_egress_up(true);
	log_debug("heavyd-egress started, pid %d", (int)egressctl_pid);
	return 0;
}

int
egressctl_start(const char *egress_path, const char *api_key,
    const char *search_key, const struct heavy_config *cfg)
{
	egressctl_path = xstrdup(egress_path);
	egressctl_ca_file = cfg->ca_file ? xstrdup(cfg->ca_file) : NULL;
	egressctl_cfg.api_key = xstrdup(api_key ? api_key : "");
	egressctl_cfg.search_api_key = xstrdup(search_key ? search_key : "");
	egressctl_cfg.max_body = cfg->egress_max_body;
	egressctl_cfg.max_host_conns = (uint32_t)cfg->egress_max_host_conns;
	egressctl_cfg.idle_conns = (uint32_t)cfg->egress_idle_conns;
	egressctl_cfg.max_calls = (uint32_t)cfg->egress_max_calls;
	egressctl_cfg.breaker_failures = (uint32_t)cfg->egress_breaker_failures;
	egressctl_cfg.breaker_cooldown_s =
	    (uint32_t)cfg->egress_breaker_cooldown_s;
	egressctl_cfg.rpm = (uint32_t)cfg->egress_rpm;
	egressctl_cfg.tpm = (uint32_t)cfg->egress_tpm;
	egressctl_retry = evtimer_new(ev_base, egressctl_retry_cb, NULL);
	return egressctl_spawn();
}

/* Whether egress is there (for readiness, and tests). */
bool
egressctl_up(void)
{
	return egressctl_fd != -1;
}

/* Closing its socket makes egress exit; then it is reaped. */
void
egressctl_stop(void)
{
	struct egress_pending	*p;

	while ((p = TAILQ_FIRST(&egressctl_queue)) != NULL) {
		TAILQ_REMOVE(&egressctl_queue, p, entry);
		egressctl_pending_free(p);
	}
	if (egressctl_fd != -1) {
		event_free(egressctl_rev);
		event_free(egressctl_wev);
		close(egressctl_fd);
		egressctl_fd = -1;
	}
	metrics_egress_up(false);
	if (egressctl_pid > 0) {
		kill(egressctl_pid, SIGKILL);
		waitpid(egressctl_pid, NULL, 0);
		egressctl_pid = -1;
	}
	if (egressctl_retry != NULL)
		event_free(egressctl_retry);
	egressctl_retry = NULL;
	egress_config_clear(&egressctl_cfg);
	free(egressctl_path);
	egressctl_path = NULL;
	free(egressctl_ca_file);
	egressctl_ca_file = NULL;
}

/*
 * The server: the event loop, the API key, and an orderly shutdown; under
 * systemd, its notices (READY, STATUS, WATCHDOG, RELOADING, STOPPING),
 * the sockets it hands over, a reload on SIGHUP and a drain on SIGTERM.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "supervisor.h"
#include "metrics.h"

static char			*api_key;	/* NULL: see key_why */
static char			 key_why[PATH_MAX + 512];
static char			*search_key;	/* NULL: no key */
static bool			 shutting_down;
static bool			 serving;	/* MCP, not heavyd ask */
static void			(*server_stop)(void);
static int			 server_exit_holds;	/* stop has yet to finish */
static bool			 server_exited;
static void			 server_exit(void);
static struct event		*server_sigterm, *server_sigint;
static struct event		*server_sighup;
static int			 server_sig;

/* The configuration: as started, and as a reload made it (else NULL). */
static struct heavy_config	*server_boot, *server_current;
static server_load_fn		 server_loader;
#define SERVER_MAX_HOOKS	8
static struct {
	server_reload_fn	 fn;
	void			*arg;
} server_hooks[SERVER_MAX_HOOKS];
static int			 server_nhooks;

/* systemd: the notices, the sockets it handed over, the drain. */
static struct event		*server_watchdog_ev, *server_status_ev;
static struct event		*server_drain_ev, *server_drained_ev;
static char			 server_status_sent[256];
static bool			 server_stopping_sent;
static struct listen_fd		*server_lfds;
static int			 server_nlfds;

/* The first line of a key file, without its newline; NULL and why. */
static char *
server_read_key_file(const char *what, const char *path, char *why,
    size_t len)
{
	char	line[4096];
	FILE	*f = fopen(path, "r");

	if (f == NULL) {
		snprintf(why, len, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if (fgets(line, sizeof line, f) == NULL)
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (line[0] == '\0') {
		snprintf(why, len, "%s %s is empty", what, path);
		return NULL;
	}
	return xstrdup(line);
}

/*
 * The LLM key: OPENROUTER_API_KEY, else the systemd credential
 * openrouter_api_key ($CREDENTIALS_DIRECTORY, LoadCredential=), else
 * openrouter.api_key, else api_key_file; an empty one is none.  0 and the
 * key in *key (when key is not NULL), or -1 and why, with the fix, naming
 * the config file.
 */
int
server_key_check(const struct heavy_config *c, char **key, char *why,
    size_t len)
{
	const char	*v = getenv("OPENROUTER_API_KEY"), *cred;
	char		 problem[PATH_MAX + 64] = "", *k = NULL;
	char		 buf[PATH_MAX];

	if (v != NULL && *v != '\0')
		k = xstrdup(v);
	else if ((cred = config_credential(HEAVY_CRED_API_KEY, buf,
	    sizeof buf)) != NULL)
		k = server_read_key_file("the credential", cred, problem,
		    sizeof problem);
	else if (c->api_key != NULL && *c->api_key != '\0')
		k = xstrdup(c->api_key);
	else if (c->api_key_file != NULL)
		k = server_read_key_file("api_key_file", c->api_key_file,
		    problem, sizeof problem);
	if (k == NULL) {
		snprintf(why, len, "no API key%s%s%s: set OPENROUTER_API_KEY, "
		    "the credential " HEAVY_CRED_API_KEY ", "
		    "`openrouter.api_key` or `api_key_file` in %s",
		    problem[0] ? " (" : "", problem, problem[0] ? ")" : "",
		    c->config_file ? c->config_file : "the config file");
		return -1;
	}
	if (key != NULL)
		*key = k;
	else {
		explicit_bzero(k, strlen(k));
		free(k);
	}
	return 0;
}

/* Why orchestrations are refused (no key), or NULL. */
static const char *
server_key_error(void)
{
	return api_key == NULL ? key_why : NULL;
}

/*
 * The key leaves the environment and the configuration: only this process
 * and the job frames it writes hold it.  Without one the server still
 * starts, so that a client can connect and read why; orchestrations are
 * refused with that reason (mcp_run).
 */
static void
server_take_key(struct heavy_config *c)
{
	char	*v = getenv("OPENROUTER_API_KEY");

	if (server_key_check(c, &api_key, key_why, sizeof key_why) == -1)
		log_warnx("%s; until then every orchestration fails with this",
		    key_why);
	if (v != NULL)
		explicit_bzero(v, strlen(v));
	unsetenv("OPENROUTER_API_KEY");
	if (c->api_key != NULL)
		explicit_bzero(c->api_key, strlen(c->api_key));
	free(c->api_key);
	c->api_key = NULL;
}

/*
 * The search backend's key, the same way: HEAVY_SEARCH_API_KEY, else the
 * credential search_api_key, else search.api_key, else
 * search.api_key_file; it too reaches a worker only inside its job frame.
 * Without a backend there is no key to keep.
 */
static void
server_take_search_key(struct heavy_config *c)
{
	char		*v = getenv("HEAVY_SEARCH_API_KEY"), why[PATH_MAX + 64];
	char		 buf[PATH_MAX];
	const char	*cred = config_credential(HEAVY_CRED_SEARCH_KEY, buf,
	    sizeof buf);
	bool		 env = v != NULL && *v != '\0';

	if (c->search_backend != NULL && env)
		search_key = xstrdup(v);
	else if (c->search_backend != NULL && cred != NULL) {
		if ((search_key = server_read_key_file("the credential", cred,
		    why, sizeof why)) == NULL)
			fatalx("%s", why);
	} else if (c->search_backend != NULL && c->search_api_key != NULL &&
	    *c->search_api_key != '\0')
		search_key = xstrdup(c->search_api_key);
	else if (c->search_backend != NULL && c->search_api_key_file != NULL &&
	    (search_key = server_read_key_file("search.api_key_file",
	    c->search_api_key_file, why, sizeof why)) == NULL)
		fatalx("%s", why);
	if (v != NULL)
		explicit_bzero(v, strlen(v));
	unsetenv("HEAVY_SEARCH_API_KEY");
	if (c->search_api_key != NULL)
		explicit_bzero(c->search_api_key, strlen(c->search_api_key));
	free(c->search_api_key);
	c->search_api_key = NULL;
}

#ifndef HEAVY_LIBEXECDIR
#define HEAVY_LIBEXECDIR	"/usr/local/libexec/heavyd"
#endif

/*
 * The worker binary: HEAVY_WORKER, else heavyd-worker beside heavyd (a
 * build tree), else where make install put it.
 */
static char *
server_worker_path(void)
{
	char	 self[PATH_MAX], *slash, *path;
	ssize_t	 n;

	if ((path = getenv("HEAVY_WORKER")) != NULL && *path != '\0')
		path = xstrdup(path);
	else {
		if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) == -1)
			fatal("readlink /proc/self/exe");
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
			*slash = '\0';
		path = xasprintf("%s/heavyd-worker", self);
		if (access(path, X_OK) == -1) {
			free(path);
			path = xstrdup(HEAVY_LIBEXECDIR "/heavyd-worker");
		}
	}
	if (access(path, X_OK) == -1)
		fatal("worker binary %s", path);
	return path;
}

/* heavyd-egress: beside the worker binary, wherever that came from. */
static char *
server_egress_path(const char *worker_path)
{
	const char	*slash = strrchr(worker_path, '/');
	char		*path;

	path = xasprintf("%.*s/heavyd-egress", slash == NULL ? 1 :
	    (int)(slash - worker_path), slash == NULL ? "." : worker_path);
	if (access(path, X_OK) == -1)
		fatal("egress binary %s", path);
	return path;
}

/*
 * epoll watches only pipes, sockets and some devices (not files, not
 * /dev/null); serving stdio, use poll unless stdin and stdout are pipes or
 * sockets.  Over HTTP stdin is not read, and epoll sees hang-ups early.
 * Over HTTP, epoll's changes are made once a loop, not one by one: a
 * write watch added and removed in the same turn (a reply the socket did
 * not take whole at once) costs no epoll_ctl.  It is unsafe for a
 * watched descriptor that is a dup() of another, which stdio's 0 and 1
 * may be; over HTTP none is (connections, pipes and socketpairs of our
 * own, children started by posix_spawn).
 */
static struct event_base *
server_event_base(bool stdio)
{
	struct event_config	*ec = event_config_new();
	struct event_base	*base;
	struct stat		 st;

	for (int fd = 0; stdio && fd <= 1; fd++)
		if (fstat(fd, &st) == 0 && !S_ISFIFO(st.st_mode) &&
		    !S_ISSOCK(st.st_mode))
			event_config_avoid_method(ec, "epoll");
	if (!stdio)
		event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL)
		fatalx("libevent: no usable event backend");
	if (event_base_priority_init(base, EV_NPRIO) == -1)
		fatalx("libevent: cannot set the loop's priorities");
	return base;
}

/* ------------------------------------------------------------ systemd */

/* "3 tasks, 12 workers, 2 sessions", "draining: " first while draining. */
static void
server_status_text(char *buf, size_t len)
{
	int	t = registry_nactive(), w = workers_running();
	int	s = mcp_session_count();

	snprintf(buf, len, "%s%d task%s, %d worker%s, %d session%s",
	    service_draining() ? "draining: " : "", t, t == 1 ? "" : "s", w,
	    w == 1 ? "" : "s", s, s == 1 ? "" : "s");
}

/* The status line, when it changed (once a second at most). */
static void
server_status_cb(evutil_socket_t fd, short events, void *arg)
{
	char	text[sizeof server_status_sent];

	(void)fd; (void)events; (void)arg;
	server_status_text(text, sizeof text);
	if (strcmp(text, server_status_sent) == 0)
		return;
	if (sdnotify_status(text) == 0)
		snprintf(server_status_sent, sizeof server_status_sent, "%s",
		    text);
}

/* The loop turns: systemd's watchdog is petted from inside it, so a
 * stalled loop stops petting and gets the service restarted. */
static void
server_watchdog_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	sdnotify_watchdog();
}

/* The timers of the status line and of the watchdog (every half of
 * WATCHDOG_USEC), when systemd listens. */
static void
server_notify_start(void)
{
	uint64_t	usec = sdnotify_watchdog_usec() / 2;
	struct timeval	tv = { 1, 0 };

	if (!sdnotify_enabled())
		return;
	if (usec == 0 && sdnotify_watchdog_usec() > 0)
		usec = 1;	/* WATCHDOG_USEC=1: as often as we can */
	server_status_ev = event_new(ev_base, -1, EV_PERSIST,
	    server_status_cb, NULL);
	event_add(server_status_ev, &tv);
	if (usec == 0)
		return;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	server_watchdog_ev = event_new(ev_base, -1, EV_PERSIST,
	    server_watchdog_cb, NULL);
	event_add(server_watchdog_ev, &tv);
	sdnotify_watchdog();
	log_debug("systemd watchdog: petted every %llu ms",
	    (unsigned long long)usec / 1000);
}

/*
 * READY=1, with the status line: the store is open, the zygote is up, and
 * (once the transports bind theirs) the listeners take connections.  Also
 * the end of a reload.
 */
void
server_ready(void)
{
	server_status_text(server_status_sent, sizeof server_status_sent);
	sdnotify_ready(server_status_sent);
}

static void
server_stopping(void)
{
	char	text[sizeof server_status_sent];

	if (server_stopping_sent)
		return;
	server_stopping_sent = true;
	server_status_text(text, sizeof text);
	sdnotify_stopping(text);
}

/* The sockets systemd handed over (heavyd.socket): the fds are the
 * caller's to bind and close; the array stays the server's. */
int
server_listen_fds(const struct listen_fd **fds)
{
	*fds = server_lfds;
	return server_nlfds;
}

/* -------------------------------------------------------------- reload */

const struct heavy_config *
server_config(void)
{
	return server_current != NULL ? server_current : server_boot;
}

void
server_set_loader(server_load_fn load)
{
	server_loader = load;
}

/* fn(arg, config) after each successful reload, in registration order. */
void
server_on_reload(server_reload_fn fn, void *arg)
{
	if (server_nhooks == SERVER_MAX_HOOKS)
		fatalx("server_on_reload: more than %d hooks", SERVER_MAX_HOOKS);
	server_hooks[server_nhooks].fn = fn;
	server_hooks[server_nhooks++].arg = arg;
}

/*
 * What this process set up once, at its start (the worker table, the
 * zygote, the sandbox, the store, the stdio buffers, the keys, the log
 * format the zygote shares, the listeners): a reload names them when they
 * change, and they keep the values in force until heavyd restarts.
 */
static const char *server_restart_keys[] = {
	"state_dir", "search.backend", "sandbox.require", "store.synchronous",
	"store.url",
	"log.format", "http.listen", "http.path", "http.session_key_file",
	"auth.mode",
	"api_key_file", "search.api_key_file", "limits.max_workers",
	"limits.spares", "limits.max_frame_bytes", "limits.max_line_bytes",
	"limits.worker_memory", "limits.worker_cpu", "limits.worker_nofile",
	"limits.worker_fsize", "limits.worker_pids", "limits.worker_uid",
	"limits.worker_gid", "limits.landlock_abi", "limits.store_write_ms",
	"limits.store_sweep", "limits.store_busy_ms",
	"limits.store_max_queue", "limits.store_pipeline",
	"limits.store_prepared",
	"limits.store_connect_timeout",
	"limits.store_retry_max_ms", "limits.store_lease_ttl_ms", "node_id",
	"limits.max_retained_tasks", "limits.egress_max_body",
	"limits.egress_max_host_conns", "limits.egress_idle_conns",
	"limits.egress_max_calls",
	"limits.egress_breaker_failures", "limits.egress_breaker_cooldown",
	"limits.egress_rpm", "limits.egress_tpm", "limits.egress_uid",
	"limits.egress_gid",
};

static bool
server_restart_key(const char *line, size_t keylen)
{
	for (size_t i = 0; i < sizeof server_restart_keys /
	    sizeof server_restart_keys[0]; i++)
		if (strlen(server_restart_keys[i]) == keylen &&
		    strncmp(line, server_restart_keys[i], keylen) == 0)
			return true;
	return false;
}

static char *
server_config_text(const struct heavy_config *c)
{
	char	*text = NULL;
	size_t	 len = 0;
	FILE	*f = open_memstream(&text, &len);

	if (f == NULL)
		fatal("open_memstream");
	config_print(c, "", f);
	fclose(f);
	return text;
}

/* Whether text has this line, whole. */
static bool
server_has_line(const char *text, const char *line, size_t len)
{
	for (const char *p = text; *p != '\0'; p += strcspn(p, "\n"),
	    p += *p == '\n')
		if (strncmp(p, line, len) == 0 &&
		    (p[len] == '\n' || p[len] == '\0'))
			return true;
	return false;
}

/* Logs the keys that changed, as --check-config prints them, and which
 * of them wait for a restart. */
static void
server_reload_diff(const struct heavy_config *old, const struct heavy_config *c)
{
	char		*was = server_config_text(old), *now = server_config_text(c);
	struct buf	 changed, later, *b;
	size_t		 len, key;

	buf_init(&changed, 4096);
	buf_init(&later, 4096);
	for (const char *line = now; *line != '\0'; line += len,
	    line += *line == '\n') {
		len = strcspn(line, "\n");
		key = strcspn(line, ":");
		if (line[0] == '#' || key >= len ||
		    server_has_line(was, line, len))
			continue;
		b = server_restart_key(line, key) ? &later : &changed;
		buf_printf(b, "%s%.*s", b->len ? ", " : "", (int)key, line);
	}
	log_info("reload: %s%s", changed.len ? "changed: " : "nothing changed",
	    buf_cstr(&changed));
	if (later.len > 0)
		log_warnx("reload: in force only after a restart: %s",
		    buf_cstr(&later));
	buf_free(&changed);
	buf_free(&later);
	free(was);
	free(now);
}

static void
server_keep_str(char **slot, const char *boot)
{
	free(*slot);
	*slot = boot != NULL ? xstrdup(boot) : NULL;
}

/* The restart-only settings (server_restart_keys) stay as started, so
 * that what tasks copy agrees with the process they run in. */
static void
server_keep_boot(struct heavy_config *c, const struct heavy_config *b)
{
	server_keep_str(&c->state_dir, b->state_dir);
	server_keep_str(&c->search_backend, b->search_backend);
	server_keep_str(&c->store_synchronous, b->store_synchronous);
	server_keep_str(&c->store_url, b->store_url);
	server_keep_str(&c->node_id, b->node_id);
	server_keep_str(&c->log_format, b->log_format);
	server_keep_str(&c->http_path, b->http_path);
	server_keep_str(&c->auth_mode, b->auth_mode);
	config_strv_free(&c->http_listen, &c->nhttp_listen);
	for (int i = 0; i < b->nhttp_listen; i++)
		config_strv_add(&c->http_listen, &c->nhttp_listen,
		    b->http_listen[i]);
	c->sandbox_require = b->sandbox_require;
	c->max_workers = b->max_workers;
	c->spares = b->spares;
	c->max_frame_bytes = b->max_frame_bytes;
	c->max_line_bytes = b->max_line_bytes;
	c->worker_memory = b->worker_memory;
	c->worker_cpu = b->worker_cpu;
	c->worker_nofile = b->worker_nofile;
	c->worker_fsize = b->worker_fsize;
	c->worker_pids = b->worker_pids;
	c->egress_max_body = b->egress_max_body;
	c->egress_max_host_conns = b->egress_max_host_conns;
	c->egress_idle_conns = b->egress_idle_conns;
	c->egress_max_calls = b->egress_max_calls;
	c->egress_breaker_failures = b->egress_breaker_failures;
	c->egress_breaker_cooldown_s = b->egress_breaker_cooldown_s;
	c->egress_rpm = b->egress_rpm;
	c->egress_tpm = b->egress_tpm;
	c->worker_uid = b->worker_uid;
	c->worker_gid = b->worker_gid;
	c->egress_uid = b->egress_uid;
	c->egress_gid = b->egress_gid;
	c->landlock_abi_max = b->landlock_abi_max;
	c->store_write_ms = b->store_write_ms;
	c->store_sweep_s = b->store_sweep_s;
	c->store_busy_ms = b->store_busy_ms;
	c->store_max_queue = b->store_max_queue;
	c->store_pipeline = b->store_pipeline;
	c->store_prepared = b->store_prepared;
	c->store_connect_timeout_s = b->store_connect_timeout_s;
	c->store_retry_max_ms = b->store_retry_max_ms;
	c->store_lease_ttl_ms = b->store_lease_ttl_ms;
	c->max_retained_tasks = b->max_retained_tasks;
}

/* Keys are read once, at the start: a reload does not hold them. */
static void
server_drop_keys(struct heavy_config *c)
{
	char	**keys[] = { &c->api_key, &c->search_api_key };

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (*keys[i] != NULL)
			explicit_bzero(*keys[i], strlen(*keys[i]));
		free(*keys[i]);
		*keys[i] = NULL;
	}
}

/* The new configuration is in force: for what this process reads live,
 * for new tasks, and for every hook (the sessions' defaults). */
static void
server_apply(struct heavy_config *c)
{
	server_drop_keys(c);
	server_reload_diff(server_config(), c);
	server_keep_boot(c, server_boot);
	secret_add_url(c->base_url);
	secret_add_url(c->search_url);
	config_free(server_current);
	server_current = c;
	for (int i = 0; i < server_nhooks; i++)
		server_hooks[i].fn(server_hooks[i].arg, c);
}

/*
 * SIGHUP: the configuration read again, as at the start (the file, then
 * the environment, then the flags).  A file that does not load is logged
 * with its FILE:LINE: key: why, and the configuration in force stays.
 * Running tasks keep the settings they started with (each has its copy).
 */
void
server_reload(void)
{
	struct heavy_config	*c;
	char			 err[PATH_MAX + 512];

	sdnotify_reloading();
	if (server_loader == NULL) {
		log_warnx("reload: nothing to reload from");
		server_ready();
		return;
	}
	c = xcalloc(1, sizeof *c);
	if (server_loader(c, err, sizeof err) == -1) {
		log_warnx("reload failed: %s; the configuration in force stays",
		    err);
		server_drop_keys(c);
		config_free(c);
	} else
		server_apply(c);
	server_ready();
}

/* --------------------------------------------------------------- drain */

static void
server_drained_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	log_info("drained: every task has ended");
	server_shutdown();
}

/* The last call in flight ended (from inside it): stop on the next turn. */
static void
server_drain_idle(void)
{
	event_active(server_drained_ev, EV_TIMEOUT, 0);
}

static void
server_drain_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	log_warnx("drain timeout (%d s): interrupting %d running task(s)",
	    server_config()->drain_timeout_s, registry_nactive());
	server_shutdown();
}

/*
 * SIGTERM while serving: no new work ("shutting down, retry later"); the
 * running tasks have drain_timeout seconds to end, then what is left is
 * killed and recorded "interrupted by shutdown".  The sessions stay up
 * meanwhile, to answer the calls that end.
 */
static void
server_drain(void)
{
	int		t = server_config()->drain_timeout_s;
	struct timeval	tv = { t, 0 };

	log_info("SIGTERM received; draining: no new tasks, %d running, "
	    "%d s at most (a second SIGTERM stops at once)", registry_nactive(),
	    t);
	if (t == 0) {
		server_shutdown();
		return;
	}
	server_drained_ev = evtimer_new(ev_base, server_drained_cb, NULL);
	server_drain_ev = evtimer_new(ev_base, server_drain_timeout_cb, NULL);
	evtimer_add(server_drain_ev, &tv);
	service_drain(server_drain_idle);
	server_stopping();	/* its status says "draining" */
}

/* ------------------------------------------------------------- signals */

static void
server_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	(void)events; (void)arg;
	if (server_sig == 0)
		server_sig = (int)sig;
	if (sig == SIGTERM && serving && server_drained_ev == NULL &&
	    !shutting_down) {
		server_drain();
		return;
	}
	log_info("%s received; %s", signal_name((int)sig),
	    server_drained_ev != NULL ? "stopping at once" : "shutting down");
	server_shutdown();
}

/*
 * SIGHUP reloads the configuration, unless heavyd is stopping (systemd
 * would take READY=1 for a service back up); heavyd ask, whose terminal
 * has gone, stops as at ^C.
 */
static void
server_sighup_cb(evutil_socket_t sig, short events, void *arg)
{
	if (!serving) {
		server_signal_cb(sig, events, arg);
		return;
	}
	if (server_drained_ev != NULL || shutting_down) {
		log_info("SIGHUP received while stopping; not reloading");
		return;
	}
	log_info("SIGHUP received; reloading the configuration");
	server_reload();
}

int
server_signal(void)
{
	return server_sig;
}

/* Cancels every task, kills and reaps every worker, then leaves the loop. */
void
server_shutdown(void)
{
	if (shutting_down)
		return;
	shutting_down = true;
	server_stopping();
	if (server_stop != NULL)
		server_stop();
	if (server_exit_holds == 0)
		server_exit();
}
/* The stop callback has finished: the workers go, and the loop ends. */
static void
server_exit(void)
{
	if (server_exited)
		return;
	server_exited = true;
	workers_kill_all();
	spawner_stop();
	egressctl_stop();
	event_base_loopbreak(ev_base);
}

/* A stop that takes turns of the loop (the store answers its last
 * writes) holds the exit until it lets go. */
void
server_exit_hold(void)
{
	server_exit_holds++;
}

void
server_exit_release(void)
{
	if (--server_exit_holds == 0 && shutting_down)
		server_exit();
}

/*
 * Serving: the sockets of socket activation, taken before any child could
 * inherit them; and stderr that never blocks the loop.
 */
static void
server_systemd_sockets(void)
{
	char	err[512];

	log_set_nonblocking();
	if (listenfds_take(&server_lfds, &server_nlfds, err, sizeof err) == -1)
		fatalx("socket activation: %s", err);
	for (int i = 0; i < server_nlfds; i++)
		log_info("socket activation: descriptor %d, named %s",
		    server_lfds[i].fd, server_lfds[i].name);
}

/*
 * The key, the zygote, the worker table and the signals: what serving MCP
 * and heavyd ask share.  stop() runs first at shutdown, to cancel tasks.
 */
void
server_start(struct heavy_config *config, void (*stop)(void), bool mcp)
{
	char	*worker_path, *egress_path, err[512];

	serving = mcp;
	server_stop = stop;
	server_boot = config;
	log_set_drop_hook(metrics_log_dropped);	/* heavyd_log_lines_dropped */
	if (mcp)
		server_systemd_sockets();
	/* Before any child: none may speak to systemd for us. */
	if (sdnotify_init(err, sizeof err) == -1)
		fatalx("%s", err);
	server_take_key(config);
	server_take_search_key(config);
	secret_add(api_key);
	secret_add(search_key);
	task_keys(api_key, search_key, server_key_error());
	secret_add_url(config->base_url);
	secret_add_url(config->search_url);
	worker_path = server_worker_path();
	egress_path = server_egress_path(worker_path);
	/* Before the zygote starts: it is placed in heavyd's cgroup leaf. */
	if (features_init(config, true, err, sizeof err) == -1)
		fatalx("%s", err);
	features_log();
	ev_base = server_event_base(!mcp ||
	    (config->nhttp_listen == 0 && server_nlfds == 0));
	workspace_init(config);
	workers_init(config);
	/* Pages are turned into text only for search_web. */
	if (spawner_start(worker_path, config->spares,
	    config->search_backend != NULL) == -1)
		fatal("cannot start %s", worker_path);
	/* The keys go to egress, the only process that uses them. */
	if (egressctl_start(egress_path, api_key, search_key, config) == -1)
		fatal("cannot start %s --egress", egress_path);
	free(worker_path);
	free(egress_path);
	server_sigterm = evsignal_new(ev_base, SIGTERM, server_signal_cb, NULL);
	server_sigint = evsignal_new(ev_base, SIGINT, server_signal_cb, NULL);
	server_sighup = evsignal_new(ev_base, SIGHUP, server_sighup_cb, NULL);
	evsignal_add(server_sigterm, NULL);
	evsignal_add(server_sigint, NULL);
	evsignal_add(server_sighup, NULL);
	server_notify_start();
}

static void
server_event_free(struct event **ev)
{
	if (*ev != NULL)
		event_free(*ev);
	*ev = NULL;
}

/* Runs until server_shutdown, then frees what server_start made. */
void
server_loop(void (*after)(void))
{
	event_base_dispatch(ev_base);
	if (after != NULL)
		after();	/* the loop may turn again, for the store */

	/* Stopping already: a late SIGTERM or SIGHUP (systemd's, a second
	 * kill) must not turn a clean exit into death by signal. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	workers_free_all();
	workspace_stop();
	event_free(server_sigterm);
	event_free(server_sigint);
	event_free(server_sighup);
	server_event_free(&server_status_ev);
	server_event_free(&server_watchdog_ev);
	server_event_free(&server_drain_ev);
	server_event_free(&server_drained_ev);
	event_base_free(ev_base);
	libevent_global_shutdown();
	secret_clear();
	if (api_key != NULL)
		explicit_bzero(api_key, strlen(api_key));
	free(api_key);
	if (search_key != NULL)
		explicit_bzero(search_key, strlen(search_key));
	free(search_key);
	config_free(server_current);
	server_current = NULL;
	listenfds_free(server_lfds, server_nlfds);
	server_lfds = NULL;
	server_nlfds = 0;
	sdnotify_close();
	log_set_drop_hook(NULL);	/* the metrics go next */
	log_flush(1000);
}

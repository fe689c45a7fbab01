/* The server: the event loop, the API key, and an orderly shutdown. */
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

static char			*api_key;	/* NULL: see key_why */
static char			 key_why[PATH_MAX + 512];
static char			*search_key;	/* NULL: no key */
static bool			 shutting_down;
static bool			 serving;	/* MCP, not heavyd ask */
static void			(*server_stop)(void);
static struct event		*server_sigterm, *server_sigint;
static struct event		*server_sighup;
static int			 server_sig;

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
 * The LLM key: OPENROUTER_API_KEY, else openrouter.api_key, else
 * api_key_file; an empty one is none.  0 and the key in *key (when key is
 * not NULL), or -1 and why, with the fix, naming the config file.
 */
int
server_key_check(const struct heavy_config *c, char **key, char *why,
    size_t len)
{
	const char	*v = getenv("OPENROUTER_API_KEY");
	char		 problem[PATH_MAX + 64] = "", *k = NULL;

	if (v != NULL && *v != '\0')
		k = xstrdup(v);
	else if (c->api_key != NULL && *c->api_key != '\0')
		k = xstrdup(c->api_key);
	else if (c->api_key_file != NULL)
		k = server_read_key_file("api_key_file", c->api_key_file,
		    problem, sizeof problem);
	if (k == NULL) {
		snprintf(why, len, "no API key%s%s%s: set OPENROUTER_API_KEY, "
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
 * The search backend's key, the same way: HEAVY_SEARCH_API_KEY, else
 * search.api_key, else search.api_key_file; it too reaches a worker only
 * inside its job frame.  Without a backend there is no key to keep.
 */
static void
server_take_search_key(struct heavy_config *c)
{
	char	*v = getenv("HEAVY_SEARCH_API_KEY"), why[PATH_MAX + 64];
	bool	 env = v != NULL && *v != '\0';

	if (c->search_backend != NULL && env)
		search_key = xstrdup(v);
	else if (c->search_backend != NULL && c->search_api_key != NULL &&
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

/* epoll watches only pipes, sockets and some devices (not files, not
 * /dev/null); serving stdio, use poll unless stdin and stdout are pipes or
 * sockets.  Over HTTP stdin is not read, and epoll sees hang-ups early. */
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
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL)
		fatalx("libevent: no usable event backend");
	return base;
}

static void
server_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	(void)events; (void)arg;
	log_info("%s received; shutting down", signal_name((int)sig));
	if (server_sig == 0)
		server_sig = (int)sig;
	server_shutdown();
}

/*
 * Until reload exists, a hangup (an operator's "reload") must not kill the
 * server silently, as its default would.  heavyd ask, whose terminal has
 * gone, stops as at ^C.
 */
static void
server_sighup_cb(evutil_socket_t sig, short events, void *arg)
{
	if (!serving) {
		server_signal_cb(sig, events, arg);
		return;
	}
	log_info("SIGHUP received; reload is not supported yet, ignoring");
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
	if (server_stop != NULL)
		server_stop();
	workers_kill_all();
	spawner_stop();
	event_base_loopbreak(ev_base);
}

/*
 * The key, the zygote, the worker table and the signals: what serving MCP
 * and heavyd ask share.  stop() runs first at shutdown, to cancel tasks.
 */
void
server_start(struct heavy_config *config, void (*stop)(void), bool mcp)
{
	char	*worker_path, err[512];

	serving = mcp;
	server_stop = stop;
	server_take_key(config);
	server_take_search_key(config);
	secret_add(api_key);
	secret_add(search_key);
	task_keys(api_key, search_key, server_key_error());
	secret_add_url(config->base_url);
	secret_add_url(config->search_url);
	worker_path = server_worker_path();
	/* Before the zygote starts: it is placed in heavyd's cgroup leaf. */
	if (features_init(config, true, err, sizeof err) == -1)
		fatalx("%s", err);
	features_log();
	ev_base = server_event_base(!mcp || config->nhttp_listen == 0);
	workspace_init(config);
	workers_init(config);
	/* Pages are turned into text only for search_web. */
	if (spawner_start(worker_path, config->spares,
	    config->search_backend != NULL) == -1)
		fatal("cannot start %s", worker_path);
	free(worker_path);
	server_sigterm = evsignal_new(ev_base, SIGTERM, server_signal_cb, NULL);
	server_sigint = evsignal_new(ev_base, SIGINT, server_signal_cb, NULL);
	server_sighup = evsignal_new(ev_base, SIGHUP, server_sighup_cb, NULL);
	evsignal_add(server_sigterm, NULL);
	evsignal_add(server_sigint, NULL);
	evsignal_add(server_sighup, NULL);
}

/* Runs until server_shutdown, then frees what server_start made. */
void
server_loop(void)
{
	event_base_dispatch(ev_base);

	workers_free_all();
	workspace_stop();
	event_free(server_sigterm);
	event_free(server_sigint);
	event_free(server_sighup);
	event_base_free(ev_base);
	libevent_global_shutdown();
	secret_clear();
	if (api_key != NULL)
		explicit_bzero(api_key, strlen(api_key));
	free(api_key);
	if (search_key != NULL)
		explicit_bzero(search_key, strlen(search_key));
	free(search_key);
}

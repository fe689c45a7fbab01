/*
 * Serving MCP: the engine (server.c), the sessions (mcp.c), and the
 * transports that carry them -- stdio, or the HTTP listeners when there
 * are any.  At shutdown the tasks end first, so that every reply is
 * handed to its transport before the transports write out and close.
 */
#include <stdlib.h>

#include "supervisor.h"

static bool	serve_stopping;

/* The store has every end: the transports write out and close. */
static void
serve_stop_transports(void)
{
	stdio_stop();
	http_stop();
	auth_stop();
	auth_oauth_stop();
	server_exit_release();
}

static void
serve_stop(void)
{
	serve_stopping = true;
	mcp_fini();
	server_exit_hold();
	durable_when_idle(serve_stop_transports);
}

/*
 * /readyz: the zygote is up, the store takes writes (its server is there
 * and its queue has room: a load balancer sends new work elsewhere
 * meanwhile), and we are neither draining nor stopping.  A change of the
 * store's answer is logged once.
 */
static bool
serve_ready(void)
{
	static int	 was = -1;
	char		 why[512] = "";
	bool		 store = store_ready(why, sizeof why);

	if (store != was && was != -1) {
		if (store)
			log_info("task store: ready again");
		else
			log_warnx("task store: not ready: %s", why);
	}
	was = store;
	return !serve_stopping && !service_draining() && spawner_up() && store;
}

/* A reload's defaults are those of the sessions that start after it. */
static void
serve_reload(void *arg, const struct heavy_config *cfg)
{
	(void)arg;
	mcp_session_defaults(cfg);
}

/*
 * Serves stdio, or with listen addresses HTTP (and never reads stdin);
 * runs until stdin closes or a signal asks us to stop.
 */
int
serve_run(struct heavy_config *config)
{
	const struct listen_fd	*fds;
	char			*url, err[512];
	int			 nfds;

	server_start(config, serve_stop, true);
	nfds = server_listen_fds(&fds);		/* systemd's, if any */
	mcp_init(config);
	server_on_reload(serve_reload, NULL);
	if (config->nhttp_listen == 0 && nfds == 0) {
		if (stdio_start(config, server_shutdown) == -1)
			fatal("stdio");
	} else if (auth_oauth_start(config, err, sizeof err) == -1)
		fatalx("oauth: %s", err);
	else if (auth_init(config, err, sizeof err) == -1)
		fatalx("auth: %s", err);
	else if (http_start(config, fds, nfds, serve_ready, err,
	    sizeof err) == -1)
		fatalx("http.listen %s", err);
	server_on_reload(auth_reload, NULL);
	server_on_reload(auth_oauth_reload, NULL);
	url = secret_url(config->base_url);
	log_debug("serving MCP on %s; model %s at %s", config->nhttp_listen ||
	    nfds ? "HTTP" : "stdio", config->model, url);
	free(url);
	server_ready();		/* systemd: the store is open, the zygote up */
	server_loop(mcp_close);
	return 0;
}

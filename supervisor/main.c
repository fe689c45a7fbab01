/*
 * heavyd: an MCP server over stdio that runs heavy multi-agent analysis,
 * one killable worker process per LLM-calling step.
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

struct event_base		*ev_base;
static char			*api_key;
static struct heavy_config	 config;
static bool			 shutting_down;

const char *
supervisor_api_key(void)
{
	return api_key;
}

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: heavyd [--version] [--help]\n"
	    "Serves MCP over stdin/stdout; MCP clients start it.\n"
	    "Environment: OPENROUTER_API_KEY (required), HEAVY_BASE_URL, "
	    "HEAVY_MODEL, HEAVY_WORKER, HEAVY_DEBUG; see README.md.\n");
	exit(status);
}

/* Takes the key out of the environment so no child can inherit it. */
static void
supervisor_take_key(void)
{
	char	*v = getenv("OPENROUTER_API_KEY");

	if (v == NULL || *v == '\0')
		fatalx("OPENROUTER_API_KEY is not set: export the API key of "
		    "your OpenRouter (or other OpenAI-compatible) provider");
	api_key = xstrdup(v);
	explicit_bzero(v, strlen(v));
	unsetenv("OPENROUTER_API_KEY");
}

/* The worker binary: HEAVY_WORKER, else heavyd-worker beside heavyd. */
static char *
supervisor_worker_path(void)
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
	}
	if (access(path, X_OK) == -1)
		fatal("worker binary %s", path);
	return path;
}

/* epoll cannot watch regular files; fall back to poll when stdio is one. */
static struct event_base *
supervisor_event_base(void)
{
	struct event_config	*ec = event_config_new();
	struct event_base	*base;
	struct stat		 st;

	for (int fd = 0; fd <= 1; fd++)
		if (fstat(fd, &st) == 0 && !S_ISFIFO(st.st_mode) &&
		    !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode))
			event_config_avoid_method(ec, "epoll");
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL)
		fatalx("libevent: no usable event backend");
	return base;
}

static void
supervisor_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	(void)events; (void)arg;
	log_info("%s received; shutting down", signal_name((int)sig));
	supervisor_shutdown();
}

/* Cancels every task, kills and reaps every worker, then leaves the loop. */
void
supervisor_shutdown(void)
{
	if (shutting_down)
		return;
	shutting_down = true;
	mcp_stop();
	workers_kill_all();
	spawner_stop();
	event_base_loopbreak(ev_base);
}

static void
supervisor_options(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--version") == 0) {
			printf("%s %s\n", HEAVY_NAME, HEAVY_VERSION);
			exit(0);
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			usage(0);
		fprintf(stderr, "heavyd: unknown option: %s\n", argv[i]);
		usage(2);
	}
}

int
main(int argc, char **argv)
{
	struct event	*sigterm, *sigint;
	char		 err[256], *worker_path;

	log_init(HEAVY_NAME, getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	supervisor_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	config_defaults(&config);
	if (config_from_env(&config, err, sizeof err) == -1)
		fatalx("%s", err);
	supervisor_take_key();
	worker_path = supervisor_worker_path();

	ev_base = supervisor_event_base();
	workers_init(&config);
	if (spawner_start(worker_path) == -1)
		fatal("cannot start %s", worker_path);
	free(worker_path);
	if (mcp_start(&config) == -1)
		fatal("stdio");
	sigterm = evsignal_new(ev_base, SIGTERM, supervisor_signal_cb, NULL);
	sigint = evsignal_new(ev_base, SIGINT, supervisor_signal_cb, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	log_debug("serving MCP on stdio; model %s at %s", config.model,
	    config.base_url);

	event_base_dispatch(ev_base);

	workers_free_all();
	event_free(sigterm);
	event_free(sigint);
	event_base_free(ev_base);
	libevent_global_shutdown();
	explicit_bzero(api_key, strlen(api_key));
	free(api_key);
	config_clear(&config);
	return 0;
}

/*
 * heavyd: an MCP server over stdio that runs heavy multi-agent analysis,
 * one killable worker process per LLM-calling step.
 */
#include <sys/prctl.h>

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"
#include "metrics.h"
#include "oauth.h"

static const char	*opt_config;
static const char	*opt_state_dir;
static bool		 opt_check_config;
static int		 opt_ask;	/* argv index of "ask", or 0 */
static int		 opt_token;	/* argv index of "token", or 0 */
static int		 opt_quota;	/* argv index of "quota", or 0 */
static char		**opt_listen;	/* --listen, in order */
static int		 opt_nlisten;

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: heavyd [--config FILE] [--state-dir DIR] [--listen ADDR]... "
	    "[--check-config]\n              [-V] [--help]\n"
	    "       heavyd [--config FILE] ask [options] \"query\"   "
	    "(heavyd ask --help)\n"
	    "       heavyd [--config FILE] token add NAME [KEY=VALUE...] | "
	    "list | revoke NAME\n"
	    "       heavyd [--config FILE] [--state-dir DIR] quota NAME\n"
	    "Serves MCP over stdin/stdout (MCP clients start it), or with "
	    "--listen over\nStreamable HTTP.\n"
	    "  --config FILE   read FILE (else HEAVY_CONFIG, "
	    "$XDG_CONFIG_HOME/heavyd/config.yaml,\n"
	    "                  /etc/heavyd/config.yaml)\n"
	    "  --state-dir DIR task workspaces live in DIR/workspaces (else "
	    "HEAVY_STATE_DIR,\n"
	    "                  state_dir, $STATE_DIRECTORY, "
	    "~/.local/state/heavyd)\n"
	    "  --listen ADDR   serve HTTP on ADDR: 127.0.0.1:PORT, [::1]:PORT "
	    "or unix:/PATH\n"
	    "                  (repeatable; else http.listen); stdin is not "
	    "read\n"
	    "  --check-config  validate, print the effective configuration "
	    "(YAML, secrets\n"
	    "                  masked); exit 1 if the server could not work "
	    "(no API key,\n"
	    "                  no usable state directory)\n"
	    "  -V, --version   print the version and the commit built from\n"
	    "Environment: OPENROUTER_API_KEY, HEAVY_BASE_URL, HEAVY_MODEL, "
	    "HEAVY_* limits; see README.md.\n");
	exit(status);
}

static void
main_options(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--version") == 0 ||
		    strcmp(argv[i], "-V") == 0) {
			printf("%s %s (%s)\n", HEAVY_NAME, HEAVY_VERSION,
			    HEAVY_COMMIT);
			exit(0);
		} else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			usage(0);
		else if (strcmp(argv[i], "--check-config") == 0)
			opt_check_config = true;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			opt_config = argv[++i];
		else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc &&
		    argv[i + 1][0] != '\0')
			config_strv_add(&opt_listen, &opt_nlisten, argv[++i]);
		else if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc &&
		    argv[i + 1][0] != '\0')
			opt_state_dir = argv[++i];
		else if (strcmp(argv[i], "ask") == 0) {
			opt_ask = i;
			break;
		} else if (strcmp(argv[i], "token") == 0) {
			opt_token = i;
			break;
		} else if (strcmp(argv[i], "quota") == 0) {
			opt_quota = i;
			break;
		} else {
			fprintf(stderr, "heavyd: %s: %s\n", strcmp(argv[i],
			    "--config") == 0 ? "missing FILE after" :
			    strcmp(argv[i], "--state-dir") == 0 ?
			    "missing DIR after" : strcmp(argv[i], "--listen") ==
			    0 ? "missing ADDR after" : "unknown option", argv[i]);
			usage(2);
		}
	}
}

/* The tokens file, when auth.mode is tokens, reads without an error. */
static int
main_check_tokens(const struct heavy_config *c, char *err, size_t len)
{
	struct tokens	 t;
	char		 cred[4096];
	const char	*path = tokens_path(c, cred, sizeof cred);

	if (!auth_configured(c) || (c->auth_mode != NULL &&
	    strcmp(c->auth_mode, "tokens") != 0))
		return 0;
	if (path == NULL) {
		snprintf(err, len, "auth.mode: tokens needs auth.tokens_file");
		return -1;
	}
	if (tokens_load(path, &t, err, len) == -1)
		return -1;
	tokens_free(&t);
	return 0;
}

/* auth.mode oauth: the JWKS file loads, as heavyd would at its start (a
 * JWKS URL is not fetched here). */
static int
main_check_oauth(const struct heavy_config *c, char *err, size_t len)
{
	struct oauth_jwks	*k;

	if (c->auth_mode == NULL || strcmp(c->auth_mode, "oauth") != 0 ||
	    c->auth_jwks_file == NULL)
		return 0;
	if ((k = oauth_jwks_load_file(c->auth_jwks_file,
	    c->auth_max_jwks_bytes, err, len)) == NULL)
		return -1;
	oauth_jwks_free(k);
	return 0;
}

/*
 * --check-config: the configuration as YAML on stdout, then 1 and why on
 * stderr when the server could not do its job (it would start, but every
 * orchestration would fail): no API key, no usable state directory.
 */
static int
main_check_config(struct heavy_config *c, const char *file)
{
	char	err[PATH_MAX + 512];
	int	rc = 0;

	if (features_init(c, false, err, sizeof err) == -1)
		fatalx("%s", err);
	config_print(c, file ? file : "none, built-in defaults", stdout);
	features_print(stdout);
	fflush(stdout);
	if (server_key_check(c, NULL, err, sizeof err) == -1) {
		fprintf(stderr, "%s: %s\n", HEAVY_NAME, err);
		rc = 1;
	}
	if (workspace_check(c->state_dir, err, sizeof err) == -1) {
		fprintf(stderr, "%s: %s (set --state-dir DIR or "
		    "HEAVY_STATE_DIR)\n", HEAVY_NAME, err);
		rc = 1;
	}
	if (main_check_tokens(c, err, sizeof err) == -1 ||
	    main_check_oauth(c, err, sizeof err) == -1) {
		fprintf(stderr, "%s: %s\n", HEAVY_NAME, err);
		rc = 1;
	}
	return rc;
}

/*
 * Defaults, then the file, then the environment; flags chose the file.
 * 0, or -1 and why (a file's FILE:LINE: key: why).  At the start and at
 * each reload (SIGHUP); c->config_file points into buf, which every load
 * fills alike (the flags and the environment do not change).
 */
static int
main_load(struct heavy_config *c, char *err, size_t errlen)
{
	static char	 buf[4096];
	const char	*file, *given = opt_config;

	if (given == NULL && getenv("HEAVY_CONFIG") && *getenv("HEAVY_CONFIG"))
		given = getenv("HEAVY_CONFIG");
	config_defaults(c);
	file = config_find_file(given, buf, sizeof buf);
	c->config_file = file ? file : buf[0] ? buf : "/etc/heavyd/config.yaml";
	if ((file != NULL && config_load_file(c, file, err, errlen) == -1) ||
	    config_from_env(c, err, errlen) == -1)
		return -1;
	if (opt_state_dir != NULL)
		config_set_str(&c->state_dir, opt_state_dir);
	if (opt_nlisten > 0) {		/* the flags replace the file's */
		config_strv_free(&c->http_listen, &c->nhttp_listen);
		for (int i = 0; i < opt_nlisten; i++)	/* kept for a reload */
			config_strv_add(&c->http_listen, &c->nhttp_listen,
			    opt_listen[i]);
	}
	if (config_check(c, err, errlen) == -1 ||
	    config_resolve_state_dir(c, err, errlen) == -1)
		return -1;
	config_resolve_workers(c);
	if (file != NULL)
		log_debug("configuration from %s", file);
	return 0;
}

static void
main_config(struct heavy_config *c)
{
	char		err[PATH_MAX + 512];
	enum log_format	format;

	if (main_load(c, err, sizeof err) == -1)
		fatalx("%s", err);
	if (log_format_parse(c->log_format, &format) == 0)
		log_set_format(format);
	if (opt_check_config)
		exit(main_check_config(c, c->config_file != NULL &&
		    access(c->config_file, F_OK) == 0 ? c->config_file : NULL));
	server_set_loader(main_load);
}

int
main(int argc, char **argv)
{
	struct heavy_config	config;
	int			rc;

	log_init(HEAVY_NAME, getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	/* The API keys and the clients' bearer tokens pass through this
	 * process's memory: no core dump, and no ptrace by another process
	 * of the same user. */
	if (prctl(PR_SET_DUMPABLE, 0) == -1)
		fatal("prctl PR_SET_DUMPABLE");
	main_options(argc, argv);
	if (opt_ask)
		ask_options(argc - opt_ask, argv + opt_ask, &opt_config);
	signal(SIGPIPE, SIG_IGN);
	main_config(&config);
	if (opt_token)
		exit(token_run(&config, argc - opt_token, argv + opt_token));
	if (opt_quota)
		exit(quotacmd_run(&config, argc - opt_quota, argv + opt_quota));
	metrics_init(config.metrics_max_label_values, HEAVY_COMMIT);
	rc = opt_ask ? ask_run(&config) : serve_run(&config);
	metrics_free();
	config_clear(&config);
	config_strv_free(&opt_listen, &opt_nlisten);
	return rc;
}

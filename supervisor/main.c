/*
 * heavyd: an MCP server over stdio that runs heavy multi-agent analysis,
 * one killable worker process per LLM-calling step.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

static const char	*opt_config;
static bool		 opt_check_config;

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: heavyd [--config FILE] [--check-config] [--version] "
	    "[--help]\n"
	    "Serves MCP over stdin/stdout; MCP clients start it.\n"
	    "  --config FILE   read FILE (else HEAVY_CONFIG, "
	    "$XDG_CONFIG_HOME/heavyd/config.yaml,\n"
	    "                  /etc/heavyd/config.yaml)\n"
	    "  --check-config  validate, print the effective configuration "
	    "(secrets masked), exit\n"
	    "Environment: OPENROUTER_API_KEY, HEAVY_BASE_URL, HEAVY_MODEL, "
	    "HEAVY_* limits; see README.md.\n");
	exit(status);
}

static void
main_options(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--version") == 0) {
			printf("%s %s\n", HEAVY_NAME, HEAVY_VERSION);
			exit(0);
		} else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			usage(0);
		else if (strcmp(argv[i], "--check-config") == 0)
			opt_check_config = true;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			opt_config = argv[++i];
		else {
			fprintf(stderr, "heavyd: %s: %s\n", strcmp(argv[i],
			    "--config") == 0 ? "missing FILE after" :
			    "unknown option", argv[i]);
			usage(2);
		}
	}
}

/* Defaults, then the file, then the environment; flags chose the file. */
static void
main_config(struct heavy_config *c)
{
	const char	*file, *given = opt_config;
	char		 buf[4096], err[512];

	if (given == NULL && getenv("HEAVY_CONFIG") && *getenv("HEAVY_CONFIG"))
		given = getenv("HEAVY_CONFIG");
	config_defaults(c);
	file = config_find_file(given, buf, sizeof buf);
	if (file != NULL && config_load_file(c, file, err, sizeof err) == -1)
		fatalx("%s", err);
	if (config_from_env(c, err, sizeof err) == -1)
		fatalx("%s", err);
	if (opt_check_config) {
		if (features_init(c, false, err, sizeof err) == -1)
			fatalx("%s", err);
		config_print(c, file ? file : "none, built-in defaults", stdout);
		features_print(stdout);
		exit(0);
	}
	if (file != NULL)
		log_debug("configuration from %s", file);
}

int
main(int argc, char **argv)
{
	struct heavy_config	config;
	int			rc;

	log_init(HEAVY_NAME, getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	main_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	main_config(&config);
	rc = server_run(&config);
	config_clear(&config);
	return rc;
}

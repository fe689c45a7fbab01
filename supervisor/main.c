/*
 * heavyd: an MCP server over stdio that runs heavy multi-agent analysis,
 * one killable worker process per LLM-calling step.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

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

static void
main_options(int argc, char **argv)
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
	struct heavy_config	config;
	char			err[256];
	int			rc;

	log_init(HEAVY_NAME, getenv("HEAVY_DEBUG") ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	main_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	config_defaults(&config);
	if (config_from_env(&config, err, sizeof err) == -1)
		fatalx("%s", err);
	rc = server_run(&config);
	config_clear(&config);
	return rc;
}

/*
 * Serving MCP: the engine (server.c), the sessions (mcp.c), and the
 * transports that carry them -- stdio, or the HTTP listeners when there
 * are any.  At shutdown the tasks end first, so that every reply is
 * handed to its transport before the transports write out and close.
 */
#include <stdlib.h>

#include "supervisor.h"

static void
serve_stop(void)
{
	mcp_fini();
	stdio_stop();
}

/* Runs until stdin closes or a signal asks us to stop. */
int
serve_run(struct heavy_config *config)
{
	char	*url;

	server_start(config, serve_stop, true);
	mcp_init(config);
	if (stdio_start(config) == -1)
		fatal("stdio");
	url = secret_url(config->base_url);
	log_debug("serving MCP on stdio; model %s at %s", config->model, url);
	free(url);
	server_loop();
	return 0;
}

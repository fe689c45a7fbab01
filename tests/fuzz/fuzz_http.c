/*
 * heavyd's HTTP endpoint as a client drives it: each input is written, as
 * raw bytes, to a new connection to `heavyd --listen unix:...` (a socket
 * in a temporary directory), the writing side shut, and the event loop run
 * until heavyd closes the connection or has nothing left to do.  This
 * takes the input through h1.c's connection and request parsing (bodies,
 * pipelining, refusals) and into http.c: the
 * headers heavyd reads (Accept, Origin, MCP-Protocol-Version,
 * Mcp-Session-Id, Mcp-Method, Mcp-Name and its base64 form,
 * Last-Event-ID), the JSON-RPC body, both eras' dispatch, sessions,
 * streams and their ends.  There is no API key and no zygote: nothing
 * leaves the machine.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/event.h>

#include "fuzz.h"

#include "../../supervisor/supervisor.h"

int	LLVMFuzzerInitialize(int *, char ***);

static char	fz_dir[4096], fz_sock[4200];

static void
fz_cleanup(void)
{
	char	cmd[4200];

	http_stop();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
	if (fz_dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "fuzz_http: could not remove %s\n", fz_dir);
}

static bool
fz_ready(void)
{
	return true;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static struct heavy_config	cfg;
	char				err[512], *listen;
	const char			*tmp;

	(void)argc; (void)argv;
	log_init("heavyd-fuzz", LOG_LVL_ERROR);
	tmp = getenv("TMPDIR");
	snprintf(fz_dir, sizeof fz_dir, "%s/heavyd-fuzz-XXXXXX",
	    tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
	if (mkdtemp(fz_dir) == NULL)
		abort();
	atexit(fz_cleanup);
	unsetenv("OPENROUTER_API_KEY");
	config_defaults(&cfg);
	config_set_str(&cfg.state_dir, fz_dir);
	snprintf(fz_sock, sizeof fz_sock, "%s/h.sock", fz_dir);
	listen = xasprintf("unix:%s", fz_sock);
	config_strv_add(&cfg.http_listen, &cfg.nhttp_listen, listen);
	free(listen);
	if ((ev_base = event_base_new()) == NULL)
		abort();
	workspace_init(&cfg);
	workers_init(&cfg);
	if (features_init(&cfg, false, err, sizeof err) == -1) {
		fprintf(stderr, "fuzz_http: %s\n", err);
		abort();
	}
	mcp_init(&cfg);
	if (http_start(&cfg, NULL, 0, fz_ready, err, sizeof err) == -1) {
		fprintf(stderr, "fuzz_http: %s\n", err);
		abort();
	}
	return 0;
}

/* One connection: the input, then EOF; the loop runs until heavyd is done. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct sockaddr_un	 sun = { .sun_family = AF_UNIX };
	char			 buf[65536];
	ssize_t			 n;
	int			 fd, idle = 0;

	if (len > 60000)	/* the socket buffer takes it at once */
		return 0;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", fz_sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		abort();
	if (len > 0 && write(fd, data, len) != (ssize_t)len)
		abort();
	shutdown(fd, SHUT_WR);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	/* Until heavyd closes it, or a thousand rounds pass with nothing. */
	while (idle < 1000) {
		event_base_loop(ev_base, EVLOOP_NONBLOCK);
		n = read(fd, buf, sizeof buf);
		if (n == 0)
			break;
		idle = n > 0 ? 0 : idle + 1;
	}
	close(fd);
	event_base_loop(ev_base, EVLOOP_NONBLOCK);	/* its close */
	return 0;
}

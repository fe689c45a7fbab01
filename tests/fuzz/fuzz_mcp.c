/*
 * MCP over stdio as a client drives it: each input is written to the
 * server's stdin (a pipe) with a newline, and the event loop runs until
 * the line is read and answered; what it writes to stdout (another pipe)
 * is read and dropped.  This takes the input through the line framing,
 * JSON-RPC parsing and the method dispatch into every handler, with a real
 * registry and task store (in a temporary state directory).  There is no
 * API key and no zygote, so an orchestration is refused or fails to spawn:
 * nothing leaves the machine.
 */
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/event.h>

#include "fuzz.h"

#include "../../supervisor/supervisor.h"

int	LLVMFuzzerInitialize(int *, char ***);

static int	fz_in = -1, fz_out = -1;	/* our ends of stdin, stdout */
static char	fz_dir[4096];

static void
fz_cleanup(void)
{
	char	cmd[4200];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
	if (fz_dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "fuzz_mcp: could not remove %s\n", fz_dir);
}

/* stdin and stdout become pipes whose other ends are ours. */
static void
fz_stdio(void)
{
	int	in[2], out[2];

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
	    dup2(in[0], STDIN_FILENO) == -1 || dup2(out[1], STDOUT_FILENO) == -1)
		abort();
	close(in[0]);
	close(out[1]);
	fz_in = in[1];
	fz_out = out[0];
	fd_set_nonblock(fz_out, 1);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static struct heavy_config	cfg;
	char				err[512];
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
	fz_stdio();
	if ((ev_base = event_base_new()) == NULL)
		abort();
	workspace_init(&cfg);
	workers_init(&cfg);
	if (features_init(&cfg, false, err, sizeof err) == -1) {
		fprintf(stderr, "fuzz_mcp: %s\n", err);
		abort();
	}
	mcp_init(&cfg);
	if (stdio_start(&cfg, server_shutdown) == -1)
		abort();
	return 0;
}

/* Reads and drops what the server wrote. */
static void
fz_drain(void)
{
	char	buf[65536];

	while (read(fz_out, buf, sizeof buf) > 0)
		;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	int	left;

	/* A line longer than the pipe would block us: the framing is the
	 * same at any length, and max_line_bytes is tested elsewhere. */
	if (len > 60000 || memchr(data, '\n', len) != NULL)
		return 0;
	if (write(fz_in, data, len) != (ssize_t)len || write(fz_in, "\n", 1) != 1)
		abort();
	do {
		event_base_loop(ev_base, EVLOOP_NONBLOCK);
		fz_drain();
	} while (ioctl(STDIN_FILENO, FIONREAD, &left) == 0 && left > 0);
	event_base_loop(ev_base, EVLOOP_NONBLOCK);	/* what is due now */
	fz_drain();
	return 0;
}

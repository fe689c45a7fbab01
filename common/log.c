/* Logging to stderr, with an optional hook that mirrors messages elsewhere (MCP). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static const char	*log_prog = HEAVY_NAME;
static enum log_level	 log_level = LOG_LVL_INFO;
static log_hook_fn	 log_hook;
static int		 log_in_hook;	/* a hook that logs must not recurse */

void
log_init(const char *progname, enum log_level level)
{
	log_prog = progname;
	log_level = level;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

void
log_set_hook(log_hook_fn hook)
{
	log_hook = hook;
}

static void
log_emit(enum log_level level, int err, const char *fmt, va_list ap)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char	msg[2048];
	int	n;

	n = vsnprintf(msg, sizeof msg, fmt, ap);
	if (n >= 0 && err != 0 && (size_t)n < sizeof msg)
		snprintf(msg + n, sizeof msg - n, ": %s", strerror(err));
	if (level <= log_level)
		dprintf(STDERR_FILENO, "%s[%d]: %s: %s\n", log_prog,
		    (int)getpid(), names[level], msg);
	if (log_hook != NULL && !log_in_hook) {
		log_in_hook = 1;
		log_hook(level, msg);
		log_in_hook = 0;
	}
}

#define LOG_BODY(level, err) do {		\
	va_list ap;				\
	va_start(ap, fmt);			\
	log_emit(level, err, fmt, ap);		\
	va_end(ap);				\
} while (0)

void fatal(const char *fmt, ...)	{ int e = errno; LOG_BODY(LOG_LVL_ERROR, e); exit(1); }
void fatalx(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_ERROR, 0); exit(1); }
void log_warn(const char *fmt, ...)	{ int e = errno; LOG_BODY(LOG_LVL_WARN, e); }
void log_warnx(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_WARN, 0); }
void log_info(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_INFO, 0); }
void log_debug(const char *fmt, ...)	{ LOG_BODY(LOG_LVL_DEBUG, 0); }

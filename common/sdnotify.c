/*
 * systemd's notify protocol, without libsystemd: one datagram of
 * "KEY=value" lines to the AF_UNIX socket named in $NOTIFY_SOCKET (a path,
 * or an abstract name written with a leading '@').  systemd documents the
 * protocol as stable (sd_notify(3)).  Mapping libsystemd would bring its
 * own six libraries into heavyd and, through the zygote, into every
 * worker.  The variables are taken out of the environment at once, so no
 * child (the zygote, its workers) can speak for us.  A send never blocks:
 * a full socket loses that one notice.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static int			 sdn_fd = -1;
static struct sockaddr_un	 sdn_addr;
static socklen_t		 sdn_addrlen;
static uint64_t			 sdn_watchdog_usec;

/* A decimal number, all of it; -1 when v is not one or is too large. */
static int
sdnotify_number(const char *v, uint64_t max, uint64_t *out)
{
	uint64_t	n = 0;

	if (v == NULL || *v == '\0')
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > (max - (uint64_t)(*v - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return 0;
}

/* $NOTIFY_SOCKET as an address: "/path" or "@abstract". */
static int
sdnotify_address(const char *v, char *err, size_t errlen)
{
	size_t	len = strlen(v);

	memset(&sdn_addr, 0, sizeof sdn_addr);
	sdn_addr.sun_family = AF_UNIX;
	if ((v[0] != '/' && v[0] != '@') || len < 2) {
		snprintf(err, errlen, "NOTIFY_SOCKET: expected an absolute path "
		    "or an @abstract name, got \"%.64s\"", v);
		return -1;
	}
	if (len > sizeof sdn_addr.sun_path - (v[0] == '/')) {
		snprintf(err, errlen, "NOTIFY_SOCKET: longer than %zu bytes",
		    sizeof sdn_addr.sun_path - 1);
		return -1;
	}
	memcpy(sdn_addr.sun_path, v, len);
	if (v[0] == '@')	/* abstract: a leading NUL, no trailing one */
		sdn_addr.sun_path[0] = '\0';
	sdn_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    (v[0] == '/'));
	return 0;
}

/*
 * WATCHDOG_USEC, for us when WATCHDOG_PID is unset or names this process
 * (a parent's watchdog is not ours to pet).
 */
static int
sdnotify_watchdog_env(char *err, size_t errlen)
{
	const char	*usec = getenv("WATCHDOG_USEC");
	const char	*pid = getenv("WATCHDOG_PID");
	uint64_t	 n, p = 0;

	sdn_watchdog_usec = 0;
	if (usec == NULL)
		return 0;
	if (sdnotify_number(usec, UINT64_MAX, &n) == -1 || n == 0) {
		snprintf(err, errlen, "WATCHDOG_USEC: expected a positive "
		    "number of microseconds, got \"%.64s\"", usec);
		return -1;
	}
	if (pid != NULL && (sdnotify_number(pid, INT32_MAX, &p) == -1 ||
	    p == 0)) {
		snprintf(err, errlen, "WATCHDOG_PID: expected a process id, "
		    "got \"%.64s\"", pid);
		return -1;
	}
	if (pid == NULL || p == (uint64_t)getpid())
		sdn_watchdog_usec = n;
	return 0;
}

/*
 * Takes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID out of the
 * environment and opens the socket.  0 (not under systemd: every notice is
 * then a no-op), or -1 and why when a variable is malformed.
 */
int
sdnotify_init(char *err, size_t errlen)
{
	const char	*v = getenv("NOTIFY_SOCKET");
	int		 rc = 0;

	sdnotify_close();
	if (v != NULL && sdnotify_address(v, err, errlen) == -1)
		rc = -1;
	else if (sdnotify_watchdog_env(err, errlen) == -1)
		rc = -1;
	else if (v != NULL && (sdn_fd = socket(AF_UNIX, SOCK_DGRAM |
	    SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s",
		    strerror(errno));
		rc = -1;
	}
	if (sdn_fd == -1)
		sdn_watchdog_usec = 0;	/* nobody to pet */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return rc;
}

void
sdnotify_close(void)
{
	if (sdn_fd != -1)
		close(sdn_fd);
	sdn_fd = -1;
	sdn_watchdog_usec = 0;
}

bool
sdnotify_enabled(void)
{
	return sdn_fd != -1;
}

/* The watchdog's period in microseconds, or 0 when there is none. */
uint64_t
sdnotify_watchdog_usec(void)
{
	return sdn_watchdog_usec;
}

/* One datagram, the lines given; 0 sent (or nobody listens), -1 lost. */
int
sdnotify_send(const char *fmt, ...)
{
	char	msg[1024];
	va_list	ap;
	int	n;

	if (sdn_fd == -1)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	if (sendto(sdn_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
	    (struct sockaddr *)&sdn_addr, sdn_addrlen) != n)
		return -1;
	return 0;
}

/* A STATUS= value is one line: a newline would start another field. */
static void
sdnotify_line(char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

int
sdnotify_ready(const char *status)
{
	char	line[512];

	if (status == NULL)
		return sdnotify_send("READY=1");
	snprintf(line, sizeof line, "%s", status);
	sdnotify_line(line);
	return sdnotify_send("READY=1\nSTATUS=%s", line);
}

int
sdnotify_status(const char *status)
{
	char	line[512];

	snprintf(line, sizeof line, "%s", status);
	sdnotify_line(line);
	return sdnotify_send("STATUS=%s", line);
}

/* systemd's own clock for RELOADING=1: CLOCK_MONOTONIC in microseconds. */
int
sdnotify_reloading(void)
{
	return sdnotify_send("RELOADING=1\nMONOTONIC_USEC=%lld",
	    (long long)now_us());
}

int
sdnotify_stopping(const char *status)
{
	char	line[512];

	if (status == NULL)
		return sdnotify_send("STOPPING=1");
	snprintf(line, sizeof line, "%s", status);
	sdnotify_line(line);
	return sdnotify_send("STOPPING=1\nSTATUS=%s", line);
}

int
sdnotify_watchdog(void)
{
	return sdnotify_send("WATCHDOG=1");
}

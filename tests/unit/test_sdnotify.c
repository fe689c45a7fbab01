/* systemd's notify protocol, against a datagram socket the test binds. */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../common/common.h"
#include "tmpdir.h"

static char	dir[256], path[300];
static int	sink = -1;

/* A datagram socket at a path of the test's own directory. */
static void
sink_bind_path(void)
{
	struct sockaddr_un	sa = { .sun_family = AF_UNIX };

	cr_assert_not_null(mkdtemp((char *)unit_tmp(dir, sizeof dir, "sdn")));
	snprintf(path, sizeof path, "%s/notify", dir);
	cr_assert_lt(strlen(path), sizeof sa.sun_path);
	strcpy(sa.sun_path, path);
	sink = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(sink, 0);
	cr_assert_eq(bind(sink, (struct sockaddr *)&sa, sizeof sa), 0, "%s",
	    strerror(errno));
	setenv("NOTIFY_SOCKET", path, 1);
}

static void
teardown(void)
{
	sdnotify_close();
	if (sink != -1)
		close(sink);
	sink = -1;
	if (path[0] != '\0')
		unlink(path);
	if (dir[0] != '\0')
		rmdir(dir);
	path[0] = dir[0] = '\0';
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

TestSuite(sdnotify, .fini = teardown, .timeout = 60);

/* The next datagram, as a string; fails the test after a long wait. */
static char *
sink_next(void)
{
	static char	 msg[2048];
	struct pollfd	 pfd = { .fd = sink, .events = POLLIN };
	ssize_t		 n;

	cr_assert_eq(poll(&pfd, 1, 30000), 1, "no datagram came");
	n = recv(sink, msg, sizeof msg - 1, 0);
	cr_assert_geq(n, 0);
	msg[n] = '\0';
	return msg;
}

static void
init_ok(void)
{
	char	err[256];

	cr_assert_eq(sdnotify_init(err, sizeof err), 0, "%s", err);
}

Test(sdnotify, each_notice_is_one_datagram_to_the_path)
{
	sink_bind_path();
	init_ok();
	cr_assert(sdnotify_enabled());
	cr_assert_null(getenv("NOTIFY_SOCKET"), "a child would inherit it");
	cr_assert_eq(sdnotify_ready("3 tasks, 12 workers, 2 sessions"), 0);
	cr_assert_str_eq(sink_next(),
	    "READY=1\nSTATUS=3 tasks, 12 workers, 2 sessions");
	cr_assert_eq(sdnotify_ready(NULL), 0);
	cr_assert_str_eq(sink_next(), "READY=1");
	cr_assert_eq(sdnotify_status("draining\n2 tasks"), 0);
	cr_assert_str_eq(sink_next(), "STATUS=draining 2 tasks",
	    "a newline in a status would start another field");
	cr_assert_eq(sdnotify_watchdog(), 0);
	cr_assert_str_eq(sink_next(), "WATCHDOG=1");
	cr_assert_eq(sdnotify_stopping("draining 1 task"), 0);
	cr_assert_str_eq(sink_next(), "STOPPING=1\nSTATUS=draining 1 task");
}

Test(sdnotify, reloading_carries_the_monotonic_clock)
{
	struct timespec		 a, b;
	unsigned long long	 usec, lo, hi;
	char			*m;

	sink_bind_path();
	init_ok();
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(sdnotify_reloading(), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	m = sink_next();
	cr_assert_eq(sscanf(m, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec), 1,
	    "%s", m);
	lo = (unsigned long long)a.tv_sec * 1000000 + a.tv_nsec / 1000;
	hi = (unsigned long long)b.tv_sec * 1000000 + b.tv_nsec / 1000;
	cr_assert(usec >= lo && usec <= hi, "%llu not in [%llu, %llu]", usec,
	    lo, hi);
}

Test(sdnotify, an_abstract_name_is_reached)
{
	struct sockaddr_un	sa = { .sun_family = AF_UNIX };
	char			name[64];
	int			len;

	len = snprintf(name, sizeof name, "@heavyd-unit-%d-%ld", (int)getpid(),
	    (long)time(NULL));
	memcpy(sa.sun_path + 1, name + 1, (size_t)len - 1);	/* leading NUL */
	sink = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(sink, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0,
	    "%s", strerror(errno));
	setenv("NOTIFY_SOCKET", name, 1);
	init_ok();
	cr_assert_eq(sdnotify_send("READY=1\nSTATUS=%s", "abstract"), 0);
	cr_assert_str_eq(sink_next(), "READY=1\nSTATUS=abstract");
}

Test(sdnotify, without_notify_socket_every_notice_is_a_no_op)
{
	init_ok();
	cr_assert_not(sdnotify_enabled());
	cr_assert_eq(sdnotify_ready("x"), 0);
	cr_assert_eq(sdnotify_watchdog(), 0);
	cr_assert_eq(sdnotify_watchdog_usec(), 0);
}

Test(sdnotify, a_malformed_socket_is_refused_with_why)
{
	char	err[256];

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	cr_assert_eq(sdnotify_init(err, sizeof err), -1);
	cr_assert(strstr(err, "NOTIFY_SOCKET") != NULL, "%s", err);
	cr_assert_not(sdnotify_enabled());
	cr_assert_null(getenv("NOTIFY_SOCKET"));
	setenv("NOTIFY_SOCKET", "@", 1);
	cr_assert_eq(sdnotify_init(err, sizeof err), -1);
	memset(path, 'a', 200);
	path[0] = '/';
	path[200] = '\0';
	setenv("NOTIFY_SOCKET", path, 1);
	cr_assert_eq(sdnotify_init(err, sizeof err), -1);
	cr_assert(strstr(err, "longer than") != NULL, "%s", err);
	path[0] = '\0';
}

Test(sdnotify, the_watchdog_is_ours_only_when_its_pid_is)
{
	char	pid[32], err[256];

	sink_bind_path();
	setenv("WATCHDOG_USEC", "30000000", 1);
	init_ok();
	cr_assert_eq(sdnotify_watchdog_usec(), 30000000);
	cr_assert_null(getenv("WATCHDOG_USEC"));

	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "20000000", 1);
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	init_ok();
	cr_assert_eq(sdnotify_watchdog_usec(), 20000000);
	cr_assert_null(getenv("WATCHDOG_PID"));

	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "20000000", 1);
	snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	init_ok();
	cr_assert_eq(sdnotify_watchdog_usec(), 0, "a parent's watchdog");

	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "30s", 1);
	cr_assert_eq(sdnotify_init(err, sizeof err), -1);
	cr_assert(strstr(err, "WATCHDOG_USEC") != NULL, "%s", err);
	setenv("WATCHDOG_USEC", "1000", 1);
	setenv("WATCHDOG_PID", "12x", 1);
	cr_assert_eq(sdnotify_init(err, sizeof err), -1);
	cr_assert(strstr(err, "WATCHDOG_PID") != NULL, "%s", err);
}

/* A receiver that reads nothing: sends fail at once instead of blocking. */
Test(sdnotify, a_full_socket_loses_notices_without_blocking)
{
	int	lost = 0, sent = 0;

	sink_bind_path();
	init_ok();
	for (int i = 0; i < 100000 && lost == 0; i++) {
		if (sdnotify_status("a status line of some length, repeated") == 0)
			sent++;
		else
			lost++;
	}
	cr_assert_gt(sent, 0);
	cr_assert_eq(lost, 1, "the queue never filled (%d sent)", sent);
	cr_assert_str_eq(sink_next(), "STATUS=a status line of some length, "
	    "repeated");
}

Test(sdnotify, a_receiver_gone_is_a_lost_notice_not_an_error)
{
	sink_bind_path();
	init_ok();
	close(sink);
	sink = -1;
	unlink(path);
	cr_assert_eq(sdnotify_ready(NULL), -1);
	cr_assert(sdnotify_enabled());
}

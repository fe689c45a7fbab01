/*
 * Socket activation: the variables read strictly, the descriptors made
 * non-blocking and close-on-exec, the variables gone afterwards.  The
 * descriptors sit at 200 on (listenfds_take_at), clear of criterion's.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"

#define FIRST	200

static void
teardown(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	for (int fd = FIRST; fd < FIRST + 3; fd++)
		close(fd);
}

TestSuite(listenfds, .fini = teardown);

/* n listening sockets at FIRST.., blocking and inheritable, as systemd
 * hands them over. */
static void
handed_over(int n)
{
	for (int i = 0; i < n; i++) {
		int	s = socket(AF_INET, SOCK_STREAM, 0);

		cr_assert_geq(s, 0);
		cr_assert_eq(listen(s, 4), 0);
		cr_assert_eq(dup2(s, FIRST + i), FIRST + i);
		close(s);
	}
}

static void
env(const char *pid, const char *fds, const char *names)
{
	char	self[32];

	if (pid != NULL && strcmp(pid, "self") == 0) {
		snprintf(self, sizeof self, "%d", (int)getpid());
		pid = self;
	}
	if (pid)
		setenv("LISTEN_PID", pid, 1);
	if (fds)
		setenv("LISTEN_FDS", fds, 1);
	if (names)
		setenv("LISTEN_FDNAMES", names, 1);
}

static void
assert_env_gone(void)
{
	cr_assert_null(getenv("LISTEN_PID"));
	cr_assert_null(getenv("LISTEN_FDS"));
	cr_assert_null(getenv("LISTEN_FDNAMES"));
}

Test(listenfds, named_descriptors_are_taken_nonblocking_and_cloexec)
{
	struct listen_fd	*fds;
	char			 err[256];
	int			 n;

	handed_over(2);
	cr_assert_eq(fcntl(FIRST, F_GETFL) & O_NONBLOCK, 0);
	env("self", "2", "http:metrics");
	cr_assert_eq(listenfds_take_at(FIRST, &fds, &n, err, sizeof err), 0,
	    "%s", err);
	cr_assert_eq(n, 2);
	cr_assert_eq(fds[0].fd, FIRST);
	cr_assert_str_eq(fds[0].name, "http");
	cr_assert_eq(fds[1].fd, FIRST + 1);
	cr_assert_str_eq(fds[1].name, "metrics");
	for (int i = 0; i < n; i++) {
		cr_assert(fcntl(fds[i].fd, F_GETFL) & O_NONBLOCK);
		cr_assert(fcntl(fds[i].fd, F_GETFD) & FD_CLOEXEC);
	}
	assert_env_gone();
	listenfds_free(fds, n);
}

Test(listenfds, without_names_each_is_unknown)
{
	struct listen_fd	*fds;
	char			 err[256];
	int			 n;

	handed_over(1);
	env("self", "1", NULL);
	cr_assert_eq(listenfds_take_at(FIRST, &fds, &n, err, sizeof err), 0,
	    "%s", err);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(fds[0].name, "unknown");
	listenfds_free(fds, n);
}

Test(listenfds, not_activated_or_for_another_process_is_none)
{
	struct listen_fd	*fds;
	char			 err[256];
	int			 n = -1;

	cr_assert_eq(listenfds_take_at(FIRST, &fds, &n, err, sizeof err), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(fds);

	handed_over(1);
	env("1", "1", "http");		/* init's, inherited by mistake */
	cr_assert_eq(listenfds_take_at(FIRST, &fds, &n, err, sizeof err), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(fcntl(FIRST, F_GETFL) & O_NONBLOCK, 0, "touched");
	assert_env_gone();

	env("self", "0", NULL);
	cr_assert_eq(listenfds_take_at(FIRST, &fds, &n, err, sizeof err), 0);
	cr_assert_eq(n, 0);
}

/* One malformed environment: refused, naming the variable, and gone. */
static void
refused(const char *pid, const char *fds, const char *names, const char *why)
{
	struct listen_fd	*out;
	char			 err[256] = "";
	int			 n = -1;

	env(pid, fds, names);
	cr_assert_eq(listenfds_take_at(FIRST, &out, &n, err, sizeof err), -1,
	    "accepted LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s", pid, fds,
	    names);
	cr_assert_eq(n, 0);
	cr_assert_null(out);
	cr_assert(strstr(err, why) != NULL, "\"%s\" does not say %s", err, why);
	assert_env_gone();
}

Test(listenfds, malformed_variables_are_errors_that_name_them)
{
	handed_over(2);
	refused("abc", "1", NULL, "LISTEN_PID: expected a process id");
	refused("0", "1", NULL, "LISTEN_PID");
	refused(" 12", "1", NULL, "LISTEN_PID");
	refused("99999999999999999999", "1", NULL, "LISTEN_PID");
	refused("self", "-1", NULL, "LISTEN_FDS: expected a number");
	refused("self", "2x", NULL, "LISTEN_FDS");
	refused("self", "", NULL, "LISTEN_FDS");
	refused("self", "1025", NULL, "from 0 to 1024");
	refused(NULL, "1", NULL, "LISTEN_FDS is set without LISTEN_PID");
	refused("self", NULL, NULL, "LISTEN_PID is set without LISTEN_FDS");
	refused("self", "2", "http", "expected 2 names");
	refused("self", "1", "http:metrics", "expected 1 name");
	refused("self", "2", "http:metrics:x", "expected 2 names");
	refused("self", "1", "ht\ttp", "name 1 is not a descriptor name");
}

Test(listenfds, a_descriptor_that_is_not_open_is_an_error)
{
	handed_over(1);
	refused("self", "2", NULL, "descriptor 201 is not open");
	/* The one that was open is left as it was. */
	cr_assert_eq(fcntl(FIRST, F_GETFL) & O_NONBLOCK, 0);
}

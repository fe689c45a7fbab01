/*
 * A throw-away PostgreSQL cluster for a unit test, by scripts/pg-cluster
 * (run from the repository's root, as make check-unit does): in a
 * directory of the test's own under $TMPDIR, on 127.0.0.1, stopped and
 * removed by pgtest_destroy (in the test's .fini, so a failed assertion
 * too leaves nothing).  A test process that dies before then is covered
 * by the script's guard (PG_OWNER_PID), which destroys the cluster.
 */
#ifndef HEAVYD_TESTS_PGTEST_H
#define HEAVYD_TESTS_PGTEST_H

#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "tmpdir.h"

#define PGTEST_SCRIPT	"scripts/pg-cluster"

struct pgtest {
	char	dir[PATH_MAX];
	char	url[256];
	bool	made;
};

/* scripts/pg-cluster VERB DIR; its stdout (the URL of init) in out. */
static inline int
pgtest_run(struct pgtest *pg, const char *verb, char *out, size_t outlen)
{
	int	 p[2], status;
	pid_t	 pid;
	ssize_t	 n;
	size_t	 len = 0;
	char	 owner[32], scratch[512];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	snprintf(owner, sizeof owner, "%d", (int)getpid());
	if ((pid = fork()) == 0) {
		dup2(p[1], 1);
		setenv("PG_OWNER_PID", owner, 1);
		execl(PGTEST_SCRIPT, PGTEST_SCRIPT, verb, pg->dir, (char *)NULL);
		_exit(127);
	}
	cr_assert_gt(pid, 0, "fork: %s", strerror(errno));
	close(p[1]);
	/* Read to the end (the script writes only init's URL), keeping the
	 * first line. */
	for (;;) {
		n = read(p[0], scratch, sizeof scratch);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; out != NULL && i < n && len + 1 < outlen; i++)
			out[len++] = scratch[i];
	}
	if (out != NULL) {
		out[len] = '\0';
		out[strcspn(out, "\n")] = '\0';
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* A fresh cluster with the database "heavyd", accepting connections. */
static inline void
pgtest_init(struct pgtest *pg)
{
	memset(pg, 0, sizeof *pg);
	unit_tmp(pg->dir, sizeof pg->dir, "pgtest");
	cr_assert_not_null(mkdtemp(pg->dir), "mkdtemp: %s", strerror(errno));
	pg->made = true;
	cr_assert_eq(pgtest_run(pg, "init", pg->url, sizeof pg->url), 0,
	    "scripts/pg-cluster init failed (is postgresql installed? "
	    "scripts/install-deps)");
	cr_assert(strncmp(pg->url, "postgresql://", 13) == 0, "url %s",
	    pg->url);
}

/* The server goes down (its data stays) and comes back on its port. */
static inline void
pgtest_stop(struct pgtest *pg)
{
	cr_assert_eq(pgtest_run(pg, "stop", NULL, 0), 0);
}

static inline void
pgtest_start(struct pgtest *pg)
{
	cr_assert_eq(pgtest_run(pg, "start", NULL, 0), 0);
}

/*
 * The tests' event loops: a timer wakes a loop now and then (so a wait's
 * hang limit is checked even when nothing else happens), and a wait turns
 * the loop until its condition holds, failing only at PGTEST_HANG_MS:
 * a limit that catches a hang, never a measure of speed.
 */
#define PGTEST_HANG_MS	60000

static inline void
pgtest_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static inline struct event *
pgtest_tick(struct event_base *base)
{
	struct timeval	 tv = { 0, 100000 };
	struct event	*ev = event_new(base, -1, EV_PERSIST, pgtest_tick_cb,
	    NULL);

	cr_assert_not_null(ev);
	event_add(ev, &tv);
	return ev;
}

#define PGTEST_WAIT(base, cond, what) do {				\
	int64_t	deadline_ = now_ms() + PGTEST_HANG_MS;			\
	while (!(cond) && now_ms() < deadline_)				\
		event_base_loop((base), EVLOOP_ONCE);			\
	cr_assert((cond), "waited %d ms for %s", PGTEST_HANG_MS, what);	\
} while (0)

/* For .fini: no cluster, no directory; safe when init never ran. */
static inline void
pgtest_destroy(struct pgtest *pg)
{
	if (!pg->made)
		return;
	pg->made = false;
	if (pgtest_run(pg, "destroy", NULL, 0) != 0 || rmdir(pg->dir) == -1)
		cr_log_error("pgtest: %s was not removed", pg->dir);
}

#endif

/*
 * Socket activation without libsystemd (sd_listen_fds(3)): systemd binds
 * the sockets of heavyd.socket and hands them over from fd 3 on, saying
 * how many in LISTEN_FDS, for which process in LISTEN_PID, and what each
 * is called (FileDescriptorName=) in LISTEN_FDNAMES.  The variables are
 * read strictly: a malformed one is an error that names it, not a guess,
 * since serving on the wrong descriptor would be worse than not starting.
 * They leave the environment whatever their content, so no child takes
 * the sockets for its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define LISTENFDS_NAME_MAX	255	/* systemd's FDNAME_MAX */

/* A whole decimal number from 0 to max, or -1. */
static long
listenfds_number(const char *v, long max)
{
	long	n = 0;

	if (*v == '\0')
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > (max - (*v - '0')) / 10)
			return -1;
		n = n * 10 + (*v - '0');
	}
	return n;
}

/*
 * Whether systemd would have written this name (fdname_is_valid):
 * printable ASCII but ':', the separator, at most 255 bytes; it allows
 * an empty one.
 */
static bool
listenfds_name_valid(const char *s, size_t len)
{
	if (len > LISTENFDS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < ' ' || s[i] >= 0x7f || s[i] == ':')
			return false;
	return true;
}

/* LISTEN_FDNAMES, exactly one name per descriptor; without it, "unknown". */
static int
listenfds_names(const char *names, struct listen_fd *fds, int n, char *err,
    size_t errlen)
{
	const char	*p = names;
	size_t		 len;

	for (int i = 0; i < n; i++) {
		if (names == NULL) {
			fds[i].name = xstrdup("unknown");
			continue;
		}
		len = strcspn(p, ":");
		if (!listenfds_name_valid(p, len)) {
			snprintf(err, errlen, "LISTEN_FDNAMES: name %d is not a "
			    "descriptor name (at most %d printable characters, "
			    "no ':'), in \"%.128s\"", i + 1, LISTENFDS_NAME_MAX,
			    names);
			return -1;
		}
		fds[i].name = xstrndup(p, len);
		p += len;
		if (i + 1 < n ? *p++ != ':' : *p != '\0') {
			snprintf(err, errlen, "LISTEN_FDNAMES: expected %d "
			    "name%s (LISTEN_FDS), got \"%.128s\"", n, n == 1 ?
			    "" : "s", names);
			return -1;
		}
	}
	return 0;
}

/*
 * Each descriptor open (all of them checked before any is changed), then
 * made close-on-exec and non-blocking.
 */
static int
listenfds_prepare(struct listen_fd *fds, int n, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++)
		if (fcntl(fds[i].fd, F_GETFD) == -1) {
			snprintf(err, errlen, "LISTEN_FDS=%d, but descriptor %d "
			    "is not open: %s", n, fds[i].fd, strerror(errno));
			return -1;
		}
	for (int i = 0; i < n; i++)
		if (fd_set_cloexec(fds[i].fd) == -1 ||
		    fd_set_nonblock(fds[i].fd, 1) == -1) {
			snprintf(err, errlen, "descriptor %d (LISTEN_FDS): %s",
			    fds[i].fd, strerror(errno));
			return -1;
		}
	return 0;
}

/* The variables, checked; *n is 0 when they are not for this process. */
static int
listenfds_env(int *n, char *err, size_t errlen)
{
	const char	*pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");
	long		 p, k;

	*n = 0;
	if (pid == NULL && count == NULL)
		return 0;
	if (pid == NULL || count == NULL) {
		snprintf(err, errlen, "%s is set without %s", pid ? "LISTEN_PID" :
		    "LISTEN_FDS", pid ? "LISTEN_FDS" : "LISTEN_PID");
		return -1;
	}
	if ((p = listenfds_number(pid, INT32_MAX)) <= 0) {
		snprintf(err, errlen, "LISTEN_PID: expected a process id, got "
		    "\"%.64s\"", pid);
		return -1;
	}
	if ((k = listenfds_number(count, LISTENFDS_MAX)) == -1) {
		snprintf(err, errlen, "LISTEN_FDS: expected a number of "
		    "descriptors from 0 to %d, got \"%.64s\"", LISTENFDS_MAX,
		    count);
		return -1;
	}
	if (p == (long)getpid())	/* else meant for another process */
		*n = (int)k;
	return 0;
}

/*
 * The descriptors handed over from first on (LISTENFDS_START but in
 * tests), with their names, in *fds (free with listenfds_free; the caller
 * owns the descriptors).  0 and *n (0: not socket-activated), or -1 and
 * why; the variables are gone from the environment either way.
 */
int
listenfds_take_at(int first, struct listen_fd **out, int *n, char *err,
    size_t errlen)
{
	struct listen_fd	*fds = NULL;
	int			 k, rc = -1;

	*out = NULL;
	*n = 0;
	if (listenfds_env(&k, err, errlen) == -1)
		goto done;
	rc = 0;
	if (k == 0)
		goto done;
	fds = xcalloc((size_t)k, sizeof *fds);
	for (int i = 0; i < k; i++)
		fds[i].fd = first + i;
	if (listenfds_names(getenv("LISTEN_FDNAMES"), fds, k, err,
	    errlen) == -1 || listenfds_prepare(fds, k, err, errlen) == -1) {
		listenfds_free(fds, k);
		rc = -1;
		goto done;
	}
	*out = fds;
	*n = k;
done:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}

int
listenfds_take(struct listen_fd **out, int *n, char *err, size_t errlen)
{
	return listenfds_take_at(LISTENFDS_START, out, n, err, errlen);
}

void
listenfds_free(struct listen_fd *fds, int n)
{
	if (fds == NULL)
		return;
	for (int i = 0; i < n; i++)
		free(fds[i].name);
	free(fds);
}

/*
 * A cgroup v2 per worker, under the directory the supervisor delegated to
 * its workers (HEAVY_CGROUP): a forked child moves itself into w<pid>
 * before it runs anything, the worker writes its memory.max, pids.max and
 * memory.oom.group from its sandbox, and the zygote reads memory.events
 * after the reap (an OOM kill is reported as out of memory) and removes it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

static char	cgroup_dir[PATH_MAX - 64];	/* "" without a delegated cgroup */

/* In the zygote, from HEAVY_CGROUP before the environment is scrubbed. */
void
cgroup_init(const char *dir)
{
	if (dir == NULL || dir[0] != '/' ||
	    strlen(dir) >= sizeof cgroup_dir)
		cgroup_dir[0] = '\0';
	else
		snprintf(cgroup_dir, sizeof cgroup_dir, "%s", dir);
}

bool
cgroup_enabled(void)
{
	return cgroup_dir[0] != '\0';
}

static void
cgroup_path(char *buf, size_t len, pid_t pid, const char *file)
{
	snprintf(buf, len, "%s/w%d%s%s", cgroup_dir, (int)pid,
	    file ? "/" : "", file ? file : "");
}

static int
cgroup_write(pid_t pid, const char *file, const char *value)
{
	char	path[PATH_MAX];
	size_t	len = strlen(value);
	int	fd, rc;

	cgroup_path(path, sizeof path, pid, file);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	rc = write(fd, value, len) == (ssize_t)len ? 0 : -1;
	close(fd);
	return rc;
}

/* In a freshly forked child, first: its own cgroup, entered. */
int
cgroup_enter_child(void)
{
	char	path[PATH_MAX];

	if (!cgroup_enabled())
		return 0;
	cgroup_path(path, sizeof path, getpid(), NULL);
	if (mkdir(path, 0755) == -1 && errno != EEXIST)
		return -1;
	return cgroup_write(getpid(), "cgroup.procs", "0");
}

/* In the worker, before it drops its privileges: the limits. */
int
cgroup_limits(const struct sandbox *sb, char *err, size_t errlen)
{
	char	v[32];

	if (!cgroup_enabled())
		return 0;
	snprintf(v, sizeof v, "%" PRIu64, sb->memory);
	if (cgroup_write(getpid(), "memory.max", v) == -1)
		goto fail;
	/* No swap to hide in; absent when the kernel has no swap accounting. */
	if (cgroup_write(getpid(), "memory.swap.max", "0") == -1 &&
	    errno != ENOENT)
		goto fail;
	snprintf(v, sizeof v, "%" PRIu32, sb->pids);
	if (cgroup_write(getpid(), "pids.max", v) == -1 ||
	    cgroup_write(getpid(), "memory.oom.group", "1") == -1)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "cgroup %s/w%d: %s", cgroup_dir, (int)getpid(),
	    strerror(errno));
	return -1;
}

/* How many OOM kills memory.events counts; 0 when it cannot be read. */
static long
cgroup_oom_kills(pid_t pid)
{
	char	path[PATH_MAX], line[128];
	long	n, kills = 0;
	FILE	*f;

	cgroup_path(path, sizeof path, pid, "memory.events");
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "oom_kill %ld", &n) == 1 ||
		    sscanf(line, "oom_group_kill %ld", &n) == 1)
			kills += n;
	fclose(f);
	return kills;
}

/* In the zygote, after pid was reaped: EXITED_* flags; the cgroup goes. */
uint32_t
cgroup_reap(pid_t pid)
{
	char		path[PATH_MAX];
	uint32_t	flags = 0;

	if (!cgroup_enabled())
		return 0;
	if (cgroup_oom_kills(pid) > 0)
		flags |= EXITED_OOM;
	cgroup_path(path, sizeof path, pid, NULL);
	/* Threads of a dead worker are gone; anything left is killed. */
	if (rmdir(path) == -1 && errno == EBUSY) {
		cgroup_write(pid, "cgroup.kill", "1");
		if (rmdir(path) == -1)
			log_warn("rmdir %s", path);
	}
	return flags;
}

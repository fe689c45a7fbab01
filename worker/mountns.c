/*
 * The filesystem confinement where the kernel has no Landlock: a private
 * mount namespace whose root is a small read-only tmpfs that holds
 * read-only binds of what the LLM client must read and the workspace,
 * read-write.  It needs CAP_SYS_ADMIN, so it comes before capabilities
 * are dropped; it has no TCP port rules (the startup report says so).
 */
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

/* The new root is built on a tmpfs mounted here, in our namespace only. */
#define MOUNTNS_ROOT	"/tmp"
#define MOUNTNS_MAX	48

struct mountns_bind {
	char	path[PATH_MAX];		/* where it appears in the new root */
	int	fd;			/* O_PATH: the source, opened first */
	bool	rw;
};

static int
mountns_fail(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "mount namespace: %s%s%s: %s", what,
	    path ? " " : "", path ? path : "", strerror(errno));
	return -1;
}

/* Opens a source in the new namespace (a bind from another fails) but
 * before the tmpfs hides anything; ENOENT is no error. */
static void
mountns_add(struct mountns_bind *b, int *n, const char *path, bool rw)
{
	int	fd;

	size_t	len;

	if (*n == MOUNTNS_MAX || path[0] != '/' ||
	    strlen(path) >= sizeof b->path)
		return;
	/* Beneath a read-only bind already (a CA file in /etc/ssl)? */
	for (int i = 0; !rw && i < *n; i++) {
		len = strlen(b[i].path);
		if (strncmp(path, b[i].path, len) == 0 &&
		    (path[len] == '/' || path[len] == '\0'))
			return;
	}
	if ((fd = open(path, O_PATH | O_CLOEXEC)) == -1)
		return;
	snprintf(b[*n].path, sizeof b[*n].path, "%s", path);
	b[*n].fd = fd;
	b[(*n)++].rw = rw;
}

/* mkdir -p of path's parents under the new root, then the mount point. */
static int
mountns_target(const char *target, bool dir)
{
	char	buf[PATH_MAX + 8];
	int	fd;

	snprintf(buf, sizeof buf, "%.*s", PATH_MAX + 7, target);
	for (char *p = buf + strlen(MOUNTNS_ROOT) + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (dir)
		return mkdir(buf, 0755) == -1 && errno != EEXIST ? -1 : 0;
	if ((fd = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) == -1)
		return -1;
	close(fd);
	return 0;
}

static int
mountns_bind(const struct mountns_bind *b, char *err, size_t errlen)
{
	char		target[PATH_MAX + 8], src[64];
	struct stat	st;
	unsigned long	flags = MS_REMOUNT | MS_BIND | MS_NOSUID;

	if (fstat(b->fd, &st) == -1)
		return mountns_fail(err, errlen, "fstat", b->path);
	snprintf(target, sizeof target, "%s%.*s", MOUNTNS_ROOT, PATH_MAX - 1,
	    b->path);
	snprintf(src, sizeof src, "/proc/self/fd/%d", b->fd);
	if (mountns_target(target, S_ISDIR(st.st_mode)) == -1)
		return mountns_fail(err, errlen, "mount point", target);
	if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) == -1)
		return mountns_fail(err, errlen, "bind", b->path);
	/* Devices (/dev/null) must stay devices; nothing else is one. */
	if (!S_ISCHR(st.st_mode))
		flags |= MS_NODEV;
	if (!b->rw)
		flags |= MS_RDONLY;
	if (mount(NULL, target, NULL, flags, NULL) == -1)
		return mountns_fail(err, errlen, "remount", b->path);
	return 0;
}

static int
mountns_collect(struct mountns_bind *b, const struct sandbox *sb)
{
	const char	*v;
	int		 n = 0;

	for (size_t i = 0; sandbox_reads[i] != NULL; i++)
		mountns_add(b, &n, sandbox_reads[i], false);
	for (size_t i = 0; sandbox_read_env[i] != NULL; i++)
		if ((v = getenv(sandbox_read_env[i])) != NULL)
			mountns_add(b, &n, v, false);
	mountns_add(b, &n, "/dev/null", false);
#ifdef __SANITIZE_ADDRESS__
	mountns_add(b, &n, "/proc", false);	/* the sanitizer's maps */
#endif
	if (sb->workspace[0] == '/')
		mountns_add(b, &n, sb->workspace, true);
	return n;
}

/*
 * The workspace fd was opened in the old namespace: its ".." leads back
 * into the old root.  It is replaced by the workspace as seen from here.
 */
static int
mountns_reopen(const struct sandbox *sb, int workspace_fd, char *err,
    size_t errlen)
{
	int	fd;

	if (workspace_fd == -1)
		return 0;
	if ((fd = open(sb->workspace, O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    dup3(fd, workspace_fd, O_CLOEXEC) == -1) {
		if (fd != -1)
			close(fd);
		return mountns_fail(err, errlen, "workspace", sb->workspace);
	}
	close(fd);
	return 0;
}

/* Swaps the root for the tmpfs and lets go of the old one. */
static int
mountns_pivot(char *err, size_t errlen)
{
	if (chdir(MOUNTNS_ROOT) == -1 ||
	    syscall(SYS_pivot_root, ".", ".") == -1 ||
	    umount2(".", MNT_DETACH) == -1 || chdir("/") == -1)
		return mountns_fail(err, errlen, "pivot_root", NULL);
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID |
	    MS_NODEV | MS_NOEXEC, NULL) == -1)
		return mountns_fail(err, errlen, "read-only root", NULL);
	return 0;
}

int
mountns_enter(const struct sandbox *sb, int workspace_fd, char *err,
    size_t errlen)
{
	struct mountns_bind	b[MOUNTNS_MAX];
	int			n = 0, rc = -1, i;

	if (unshare(CLONE_NEWNS) == -1 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
		return mountns_fail(err, errlen, "unshare", NULL);
	n = mountns_collect(b, sb);
	if (mount("tmpfs", MOUNTNS_ROOT, "tmpfs", MS_NOSUID | MS_NODEV,
	    "size=64k,mode=0755") == -1) {
		mountns_fail(err, errlen, "new root", NULL);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (mountns_bind(&b[i], err, errlen) == -1)
			goto out;
	if (mountns_pivot(err, errlen) == 0)
		rc = mountns_reopen(sb, workspace_fd, err, errlen);
out:
	for (i = 0; i < n; i++)
		close(b[i].fd);
	return rc;
}

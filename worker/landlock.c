/*
 * Landlock: the worker's filesystem is its workspace (read-write) and, read
 * only, what the LLM client must read (CA certificates, resolver and NSS
 * files, shared libraries); no TCP connect or bind at all (the network is
 * heavyd-egress's); no signals to processes outside the sandbox.
 * Every right this kernel's ABI knows is handled, so anything not granted
 * here is denied (EACCES), not killed.
 */
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/landlock.h>

#include "worker.h"

/* Debian 12's headers (Linux 6.1) stop at ABI 2; later ABIs, by hand. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE		(1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV		(1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP		(1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP		(1ULL << 1)
#define LANDLOCK_RULE_NET_PORT			2
struct landlock_net_port_attr {
	__u64	allowed_access;
	__u64	port;
};
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET	(1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL			(1ULL << 1)
#endif

/* The ruleset attribute as of ABI 6; older kernels accept it zero-tailed. */
struct ll_ruleset_attr {
	__u64	handled_access_fs;
	__u64	handled_access_net;
	__u64	scoped;
};

#define FS_READ		(LANDLOCK_ACCESS_FS_READ_FILE | \
			 LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_WRITE	(LANDLOCK_ACCESS_FS_WRITE_FILE | \
			 LANDLOCK_ACCESS_FS_REMOVE_DIR | \
			 LANDLOCK_ACCESS_FS_REMOVE_FILE | \
			 LANDLOCK_ACCESS_FS_MAKE_DIR | \
			 LANDLOCK_ACCESS_FS_MAKE_REG | \
			 LANDLOCK_ACCESS_FS_REFER | \
			 LANDLOCK_ACCESS_FS_TRUNCATE)
/* Rights that apply to a file (not a directory) in a rule. */
#define FS_FILE		(LANDLOCK_ACCESS_FS_EXECUTE | \
			 LANDLOCK_ACCESS_FS_WRITE_FILE | \
			 LANDLOCK_ACCESS_FS_READ_FILE | \
			 LANDLOCK_ACCESS_FS_TRUNCATE | \
			 LANDLOCK_ACCESS_FS_IOCTL_DEV)

#ifdef __SANITIZE_ADDRESS__
/* The sanitizer reads its maps, and symbolizes from the binary. */
static const char *const ro_sanitizer[] = { "/proc/self", "/proc/self/exe" };
#endif

static int
ll_create_ruleset(const struct ll_ruleset_attr *attr, size_t size,
    uint32_t flags)
{
	return (int)syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

static int
ll_add_rule(int fd, int type, const void *attr)
{
	return (int)syscall(SYS_landlock_add_rule, fd, type, attr, 0);
}

static int
ll_restrict_self(int fd)
{
	return (int)syscall(SYS_landlock_restrict_self, fd, 0);
}

/* The kernel's Landlock ABI version, or 0 when it has none. */
/* The ABI heavyd reported for its workers; 0: the kernel's. */
static int	ll_max;

void
landlock_set_max(int max)
{
	ll_max = max > 0 ? max : 0;
}

int
landlock_abi(void)
{
	int	abi = ll_create_ruleset(NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);

	if (abi < 0)
		return 0;
	return ll_max > 0 && abi > ll_max ? ll_max : abi;
}

/* The filesystem rights an ABI version knows. */
static uint64_t
ll_fs_rights(int abi)
{
	uint64_t	fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;

	if (abi >= 2)
		fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return fs;
}

/* A directory's rights, or the share of them that applies to a file. */
static uint64_t
ll_rights_for(int fd, uint64_t access)
{
	struct stat	st;

	if (fstat(fd, &st) == -1)
		return 0;
	return S_ISDIR(st.st_mode) ? access : access & FS_FILE;
}

/* One rule on an open fd. */
static int
ll_add_fd(int rfd, int fd, uint64_t access, uint64_t handled)
{
	struct landlock_path_beneath_attr	pb;

	pb.allowed_access = access & handled;
	pb.parent_fd = fd;
	return pb.allowed_access == 0 ? 0 :
	    ll_add_rule(rfd, LANDLOCK_RULE_PATH_BENEATH, &pb);
}

/* The read-only paths, opened ahead: a spare pays for the path walks
 * before its job, not after. */
#define LL_MAX_READS	48
static struct {
	int		fd;
	uint64_t	access;
} ll_reads[LL_MAX_READS];
static int	ll_nreads = -1;		/* -1: not prepared */
/* The ruleset with those rules, built ahead too; the fds then go. */
static int	ll_rfd = -1;

/* A path this system lacks (or we cannot open) is one no rule grants. */
static void
ll_prepare_path(const char *path, uint64_t access)
{
	int	fd;

	if (ll_nreads == LL_MAX_READS ||
	    (fd = open(path, O_PATH | O_CLOEXEC)) == -1)
		return;
	ll_reads[ll_nreads].fd = fd;
	ll_reads[ll_nreads++].access = ll_rights_for(fd, access);
}

/* /etc/resolv.conf is often a link into a directory rewritten by
 * renaming (systemd-resolved, resolvconf): that directory, read only. */
static void
ll_prepare_resolv_dir(void)
{
	char	path[PATH_MAX], *slash;

	if (realpath("/etc/resolv.conf", path) == NULL ||
	    strncmp(path, "/etc/", 5) == 0 || (slash = strrchr(path, '/')) ==
	    NULL || slash == path)
		return;
	*slash = '\0';
	ll_prepare_path(path, FS_READ);
}

/* Every right this ABI knows, handled. */
static void
ll_attr(struct ll_ruleset_attr *attr, int abi)
{
	memset(attr, 0, sizeof *attr);
	attr->handled_access_fs = ll_fs_rights(abi);
	if (abi >= 4)
		attr->handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP |
		    LANDLOCK_ACCESS_NET_CONNECT_TCP;
	if (abi >= 6)
		attr->scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET |
		    LANDLOCK_SCOPE_SIGNAL;
}

static int	ll_add_reads(int, uint64_t);

/*
 * The ruleset with the read-only rules, ahead of the job: only the
 * workspace and the ports are left for landlock_enter().  What fails here
 * is done again there, where a failure is reported.
 */
static void
ll_prebuild(void)
{
	struct ll_ruleset_attr	attr;
	int			abi = landlock_abi();

	if (abi < 1)
		return;
	ll_attr(&attr, abi);
	if ((ll_rfd = ll_create_ruleset(&attr, sizeof attr, 0)) == -1)
		return;
	if (ll_add_reads(ll_rfd, attr.handled_access_fs) == -1) {
		close(ll_rfd);
		ll_rfd = -1;
		return;
	}
	for (int i = 0; i < ll_nreads; i++)	/* the rules hold them */
		close(ll_reads[i].fd);
	ll_nreads = 0;
}

/* The read-only paths, opened; every fd stays until landlock_release(). */
static void
ll_open_reads(void)
{
	const char	*v;

	if (ll_nreads != -1)
		return;
	ll_nreads = 0;
	for (size_t i = 0; sandbox_reads[i] != NULL; i++)
		ll_prepare_path(sandbox_reads[i], FS_READ);
	for (size_t i = 0; sandbox_read_env[i] != NULL; i++)
		if ((v = getenv(sandbox_read_env[i])) != NULL && v[0] == '/')
			ll_prepare_path(v, FS_READ);
#ifdef __SANITIZE_ADDRESS__
	for (size_t i = 0; i < sizeof ro_sanitizer / sizeof *ro_sanitizer; i++)
		ll_prepare_path(ro_sanitizer[i], FS_READ);
#endif
	/* Writing to /dev/null is how libraries discard output. */
	ll_prepare_path("/dev/null", LANDLOCK_ACCESS_FS_READ_FILE |
	    LANDLOCK_ACCESS_FS_WRITE_FILE);
	ll_prepare_resolv_dir();
}

void
landlock_prepare(void)
{
	if (ll_nreads != -1)
		return;
	ll_open_reads();
	ll_prebuild();
}

/* The prepared fds are not needed once the rules hold them. */
void
landlock_release(void)
{
	for (int i = 0; i < ll_nreads; i++)
		close(ll_reads[i].fd);
	ll_nreads = -1;
	if (ll_rfd != -1)
		close(ll_rfd);
	ll_rfd = -1;
}

static int
ll_add_reads(int rfd, uint64_t handled)
{
	landlock_prepare();
	for (int i = 0; i < ll_nreads; i++)
		if (ll_add_fd(rfd, ll_reads[i].fd, ll_reads[i].access,
		    handled) == -1)
			return -1;
	return 0;
}

static int
ll_fail(char *err, size_t errlen, const char *what, int rfd)
{
	snprintf(err, errlen, "landlock: %s: %s", what, strerror(errno));
	if (rfd != -1)
		close(rfd);
	return -1;
}

/* Confines this process; needs no_new_privs (or CAP_SYS_ADMIN). */
int
landlock_enter(const struct sandbox *sb, int workspace_fd, char *err,
    size_t errlen)
{
	struct ll_ruleset_attr	attr;
	int			abi = landlock_abi(), rfd;

	if (abi < 1) {
		snprintf(err, errlen, "landlock: not available in this kernel");
		return -1;
	}
	ll_attr(&attr, abi);
	landlock_prepare();
	rfd = ll_rfd;
	ll_rfd = -1;
	if (rfd == -1) {	/* not built ahead: again, to say why */
		if ((rfd = ll_create_ruleset(&attr, sizeof attr, 0)) == -1)
			return ll_fail(err, errlen, "create_ruleset", -1);
		if (ll_add_reads(rfd, attr.handled_access_fs) == -1)
			return ll_fail(err, errlen, "read-only rules", rfd);
	}
	if (workspace_fd != -1 && ll_add_fd(rfd, workspace_fd,
	    ll_rights_for(workspace_fd, FS_READ | FS_WRITE),
	    attr.handled_access_fs) == -1)
		return ll_fail(err, errlen, "workspace rule", rfd);
	/* No TCP port rule: with ABI 4 every connect and bind is denied;
	 * the network is heavyd-egress's. */
	(void)sb;
	if (ll_restrict_self(rfd) == -1)
		return ll_fail(err, errlen, "restrict_self", rfd);
	close(rfd);
	landlock_release();
	return 0;
}

/*
 * heavyd-egress's ruleset: the same read-only paths and nothing writable
 * (not even /dev/null: its stdio was opened before); TCP bind handled and
 * never granted, connect left alone (the network is its job); no signal
 * or abstract socket outside itself.
 */
int
landlock_enter_egress(char *err, size_t errlen)
{
	struct ll_ruleset_attr	attr;
	int			abi = landlock_abi(), rfd;

	if (abi < 1) {
		snprintf(err, errlen, "landlock: not available in this kernel");
		return -1;
	}
	ll_attr(&attr, abi);
	attr.handled_access_net &= ~(uint64_t)LANDLOCK_ACCESS_NET_CONNECT_TCP;
	ll_open_reads();
	if ((rfd = ll_create_ruleset(&attr, sizeof attr, 0)) == -1)
		return ll_fail(err, errlen, "create_ruleset", -1);
	for (int i = 0; i < ll_nreads; i++)
		if (ll_reads[i].access != (LANDLOCK_ACCESS_FS_READ_FILE |
		    LANDLOCK_ACCESS_FS_WRITE_FILE) && ll_add_fd(rfd,
		    ll_reads[i].fd, ll_reads[i].access & FS_READ,
		    attr.handled_access_fs) == -1)
			return ll_fail(err, errlen, "read-only rules", rfd);
	if (ll_restrict_self(rfd) == -1)
		return ll_fail(err, errlen, "restrict_self", rfd);
	close(rfd);
	landlock_release();
	return 0;
}

/*
 * The worker's confinement, entered after MSG_JOB_SANDBOX and before the
 * job is read, in minijail_enter()'s order: no_new_privs; the mount
 * namespace (the fallback, which still needs privilege); the cgroup's
 * limits; every capability dropped; rlimits; Landlock; the seccomp
 * allowlist last.  What does not depend on the job is done ahead: once in
 * the zygote (no_new_privs, the bounding set, the first seccomp filter),
 * or in a spare before its job (the read-only paths opened).  A step that
 * fails fails the worker: it never runs a job with less confinement than
 * the supervisor reported at startup.
 */
#include <sys/prctl.h>
#include <sys/resource.h>

#include <grp.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/capability.h>

#include "worker.h"

/* What the LLM client must read: CA certificates, resolver and NSS
 * files, time zones and the shared libraries it may load. */
const char *const sandbox_reads[] = {
	"/etc/ssl", "/etc/ca-certificates", "/usr/share/ca-certificates",
	"/usr/local/share/ca-certificates", "/etc/pki",
	"/etc/resolv.conf", "/etc/hosts", "/etc/host.conf",
	"/etc/nsswitch.conf", "/etc/gai.conf", "/etc/services",
	"/etc/protocols", "/etc/localtime", "/usr/share/zoneinfo",
	"/etc/ld.so.cache", "/lib", "/lib64", "/usr/lib", "/usr/lib64",
	"/usr/local/lib", "/dev/urandom", "/dev/random",
	NULL
};
/* Variables that may name a CA bundle elsewhere (the zygote keeps them). */
const char *const sandbox_read_env[] = {
	"SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", NULL
};

static bool	sandbox_filtered, sandbox_bound_dropped, sandbox_nnp;

#ifdef __SANITIZE_ADDRESS__
/* LeakSanitizer's exit check needs ptrace and a forked tracer, which the
 * filters forbid: a filtered zygote or worker is not leak-checked. */
int	__lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
	return sandbox_filtered;
}
#endif

static int
sandbox_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(errno));
	return -1;
}

static bool
sandbox_has_cap(cap_value_t cap)
{
	cap_flag_value_t	v = CAP_CLEAR;
	cap_t			caps = cap_get_proc();

	if (caps != NULL)
		cap_get_flag(caps, cap, CAP_EFFECTIVE, &v);
	cap_free(caps);
	return v == CAP_SET;
}

/* The bounding set shrinks only with CAP_SETPCAP; without it, no
 * capability could come back anyway (no_new_privs, no execve). */
static int
sandbox_drop_bound(char *err, size_t errlen)
{
	if (sandbox_bound_dropped)
		return 0;
	if (sandbox_has_cap(CAP_SETPCAP))
		for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++)
			if (cap_drop_bound(c) == -1)
				return sandbox_fail(err, errlen,
				    "dropping the bounding set");
	sandbox_bound_dropped = true;
	return 0;
}

/* Every capability: effective, permitted, inheritable, ambient, bounding. */
/*
 * Under a root heavyd, the worker's own unprivileged uid and gid, no
 * supplementary groups.  The kernel clears the parent-death signal on a
 * change of credentials: it is set again, and a zygote that died in
 * between is noticed.
 */
static int
sandbox_drop_ids(const struct sandbox *sb, char *err, size_t errlen)
{
	pid_t	parent = getppid();

	if (sb->uid == SANDBOX_KEEP_ID)
		return 0;
	if (setgroups(0, NULL) == -1)
		return sandbox_fail(err, errlen, "setgroups");
	if (setresgid(sb->gid, sb->gid, sb->gid) == -1)
		return sandbox_fail(err, errlen, "setresgid");
	if (setresuid(sb->uid, sb->uid, sb->uid) == -1)
		return sandbox_fail(err, errlen, "setresuid");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		return sandbox_fail(err, errlen, "PR_SET_PDEATHSIG");
	return 0;
}

/* The bounding set first (that needs CAP_SETPCAP), then the ids, then
 * whatever capabilities remain. */
static int
sandbox_drop_caps(const struct sandbox *sb, char *err, size_t errlen)
{
	cap_t	none;
	int	rc;

	if (sandbox_drop_bound(err, errlen) == -1 ||
	    sandbox_drop_ids(sb, err, errlen) == -1)
		return -1;
	if (cap_reset_ambient() == -1 && errno != EINVAL)
		return sandbox_fail(err, errlen, "clearing ambient capabilities");
	if ((none = cap_init()) == NULL)
		return sandbox_fail(err, errlen, "cap_init");
	rc = cap_set_proc(none);
	cap_free(none);
	return rc == -1 ? sandbox_fail(err, errlen, "dropping capabilities") : 0;
}

/* Sets a limit, never above the hard limit we were given. */
static int
sandbox_rlimit(int resource, rlim_t soft, rlim_t hard)
{
	struct rlimit	rl;

	if (getrlimit(resource, &rl) == -1)
		return -1;
	if (hard > rl.rlim_max)
		hard = rl.rlim_max;
	if (soft > hard)
		soft = hard;
	rl.rlim_cur = soft;
	rl.rlim_max = hard;
	return setrlimit(resource, &rl);
}

static int
sandbox_rlimits(const struct sandbox *sb, char *err, size_t errlen)
{
#ifndef __SANITIZE_ADDRESS__
	/* Under ASan the shadow memory alone is terabytes of address space. */
	if (sandbox_rlimit(RLIMIT_AS, sb->memory, sb->memory) == -1)
		return sandbox_fail(err, errlen, "RLIMIT_AS");
#endif
	/* SIGXCPU at the soft limit names the cause; SIGKILL a second on. */
	if (sandbox_rlimit(RLIMIT_CPU, sb->cpu_s, (rlim_t)sb->cpu_s + 1) == -1)
		return sandbox_fail(err, errlen, "RLIMIT_CPU");
	if (sandbox_rlimit(RLIMIT_NOFILE, sb->nofile, sb->nofile) == -1)
		return sandbox_fail(err, errlen, "RLIMIT_NOFILE");
	if (sandbox_rlimit(RLIMIT_FSIZE, sb->fsize, sb->fsize) == -1)
		return sandbox_fail(err, errlen, "RLIMIT_FSIZE");
	if (sandbox_rlimit(RLIMIT_CORE, 0, 0) == -1)
		return sandbox_fail(err, errlen, "RLIMIT_CORE");
	return 0;
}

/*
 * heavyd-egress's share of the way in (egress_sandbox.c): no_new_privs,
 * its own ids, every capability dropped, no core file (it holds the
 * keys).  Its filter follows, which forbids LeakSanitizer's exit check.
 */
int
sandbox_drop_privs(const struct sandbox *sb, char *err, size_t errlen)
{
	if (!sandbox_nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return sandbox_fail(err, errlen, "PR_SET_NO_NEW_PRIVS");
	sandbox_nnp = true;
	if (sandbox_drop_caps(sb, err, errlen) == -1)
		return -1;
	if (sandbox_rlimit(RLIMIT_CORE, 0, 0) == -1)
		return sandbox_fail(err, errlen, "RLIMIT_CORE");
	sandbox_filtered = true;
	return 0;
}

/* In a forked child: the first process the OOM killer picks. */
void
sandbox_oom_adj(void)
{
	int	fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd == -1)
		return;
	if (write(fd, "1000", 4) != 4)
		log_warn("oom_score_adj");
	close(fd);
}

/*
 * In the zygote, once, for every process it forks: no_new_privs, the
 * bounding set emptied, and the first seccomp filter (the allowlist and
 * what the zygote and the way in need).  What fails here is done again,
 * or reported, by each worker's sandbox_enter().
 */
void
sandbox_zygote(void)
{
	char	err[256];

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return;
	sandbox_nnp = true;
	if (sandbox_drop_bound(err, sizeof err) == -1 ||
	    seccomp_allowlist_prepare(err, sizeof err) == -1)
		log_warnx("zygote: %s", err);
	else
		sandbox_filtered = true;
}

/* In a fresh worker, before its job's fd arrives (a spare does this ahead
 * of need): the read-only paths, opened. */
void
sandbox_prepare(void)
{
	landlock_prepare();
}

/* The supervisor lets workers reach port 53 only when an endpoint is a
 * name the resolver must look up; only then do they need UDP. */
static bool
sandbox_needs_dns(const struct sandbox *sb)
{
	for (uint32_t i = 0; i < sb->nports; i++)
		if (sb->ports[i] == 53)
			return true;
	return false;
}

int
sandbox_enter(const struct sandbox *sb, int workspace_fd, char *err,
    size_t errlen)
{
	if (!sandbox_nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return sandbox_fail(err, errlen, "PR_SET_NO_NEW_PRIVS");
	sandbox_nnp = true;
	/* The cgroup's files first: past pivot_root they are out of reach. */
	if (cgroup_limits(sb, err, errlen) == -1)
		return -1;
	if (sb->fs == SANDBOX_FS_MOUNT &&
	    mountns_enter(sb, workspace_fd, err, errlen) == -1)
		return -1;
	if (sandbox_drop_caps(sb, err, errlen) == -1 ||
	    sandbox_rlimits(sb, err, errlen) == -1)
		return -1;
	if (sb->fs == SANDBOX_FS_LANDLOCK &&
	    landlock_enter(sb, workspace_fd, err, errlen) == -1)
		return -1;
	landlock_release();
	sandbox_filtered = true;
	if ((sb->flags & SANDBOX_SECCOMP) &&
	    seccomp_allowlist_enter(sandbox_needs_dns(sb), err, errlen) == -1)
		return -1;
	return 0;
}

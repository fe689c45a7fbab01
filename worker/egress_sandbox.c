/*
 * heavyd-egress's sandbox, the tightest it can work in.  It holds the keys
 * and is the one process with the network, so it gets a profile of its
 * own rather than the workers': no_new_privs; under a root heavyd its own
 * unprivileged uid and gid (not the workers', so no worker can signal or
 * trace it); no capabilities; no core file; Landlock with the read-only
 * paths libcurl, OpenSSL and the resolver read and nothing writable, TCP
 * bind denied and connect left to it (or, without Landlock, the workers'
 * mount namespace); and last a seccomp allowlist for a libcurl multi loop
 * on epoll with the glibc resolver: TCP, UDP, unix and netlink routing
 * sockets, threads but no processes, no execve, no file opened for
 * writing, no bind.  It is entered once the process has initialised
 * (the keys read, curl_global_init, the epoll set made), so nothing it
 * needs later must be opened for writing or created.
 *
 * heavyd says what to apply (MSG_EGRESS_SANDBOX): the modes it reported
 * for its workers.  A step that fails is fatal: egress never runs with
 * less than heavyd reported.
 */
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <seccomp.h>

#include "worker.h"

/* Allowed whatever their arguments. */
static const char *const egress_allow[] = {
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* descriptors and the files it reads (Landlock decides which) */
	"read", "write", "readv", "writev", "pread64", "close", "lseek",
	"fstat", "stat", "lstat", "newfstatat", "statx", "fstatfs", "statfs",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat",
	"getdents64", "fcntl", "dup", "dup3", "pipe2", "getcwd",
	/* the network */
	"connect", "getsockname", "getpeername", "setsockopt", "getsockopt",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
	"shutdown", "socketpair", "poll", "ppoll", "select", "pselect6",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
	"epoll_pwait2", "eventfd2",
	/* time */
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
	"gettimeofday", "time",
	/* threads (the resolver's; clone is below), signals, identity */
	"futex", "set_robust_list", "get_robust_list", "rseq",
	"set_tid_address", "sched_yield", "sched_getaffinity", "exit",
	"exit_group", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
	"sigaltstack", "restart_syscall", "getpid", "gettid", "getppid",
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
	"getgroups", "getrandom", "getrlimit", "getrusage", "sysinfo", "uname",
#ifdef __SANITIZE_ADDRESS__
	/* the sanitizer runtime: its reports and stack unwinding */
	"mincore", "sched_getparam", "personality",
#endif
};

/* Read-only ioctls: FIONREAD, isatty(), the resolver's interface names. */
static const unsigned long egress_ioctls[] = {
	TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, SIOCGIFINDEX,
	SIOCGIFNAME,
};

/* What makes an open a write; each is refused (EACCES), whatever the path. */
static const int egress_open_write[] = {
	O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_TMPFILE & ~O_DIRECTORY,
};

static int
egress_rules_names(scmp_filter_ctx ctx)
{
	int	nr;

	for (size_t i = 0; i < sizeof egress_allow / sizeof *egress_allow; i++) {
		if ((nr = seccomp_syscall_resolve_name(egress_allow[i])) ==
		    __NR_SCMP_ERROR)
			continue;	/* not on this architecture */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0)
			return -1;
	}
	return 0;
}

/* One open call, its flags in argument arg: reading only. */
static int
egress_rules_open_call(scmp_filter_ctx ctx, int nr, unsigned arg)
{
	scmp_datum_t	all = 0, m;

	for (size_t i = 0; i < sizeof egress_open_write /
	    sizeof *egress_open_write; i++) {
		m = (scmp_datum_t)egress_open_write[i];
		all |= m;
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), nr, 1,
		    SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, m, m)) != 0)
			return -1;
	}
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
	    SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, all, 0)) != 0 ? -1 : 0;
}

/* Opens for reading only; openat2's flags are out of a filter's sight. */
static int
egress_rules_open(scmp_filter_ctx ctx)
{
	if (egress_rules_open_call(ctx, SCMP_SYS(openat), 2) == -1 ||
	    egress_rules_open_call(ctx, SCMP_SYS(open), 1) == -1)
		return -1;
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS),
	    SCMP_SYS(openat2), 0) != 0 ? -1 : 0;
}

/*
 * Sockets: TCP and UDP over IPv4 and IPv6 (the upstreams, DNS), unix
 * (nscd's probe, the journal's) and netlink routing (getaddrinfo's
 * AI_ADDRCONFIG).  No raw socket, no other family: EACCES.  bind is
 * refused too (nothing here listens or picks a port); listen and accept
 * are not allowed at all.
 */
static int
egress_rules_socket(scmp_filter_ctx ctx)
{
	static const int	ip[] = { AF_INET, AF_INET6 };
	static const int	types[] = { SOCK_STREAM, SOCK_DGRAM };
	const scmp_datum_t	mask = 0xf;	/* the type, not its flags */

	for (size_t i = 0; i < 2; i++)
		for (size_t j = 0; j < 2; j++)
			if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW,
			    SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_EQ,
			    (scmp_datum_t)ip[i]), SCMP_A1(SCMP_CMP_MASKED_EQ,
			    mask, (scmp_datum_t)types[j])) != 0)
				return -1;
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
	    SCMP_A0(SCMP_CMP_EQ, AF_UNIX)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
	    SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
	    SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE)) != 0)
		return -1;
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(bind),
	    0) != 0 ? -1 : 0;
}

/*
 * Threads, never processes: clone only with CLONE_THREAD (clone3 hides
 * its flags: ENOSYS makes glibc fall back to clone).  Signals only to
 * itself (abort(), raise()), EPERM for any other; limits read, never set; prctl only to name a
 * thread or read.  ioctl only the read-only few.
 */
static int
egress_rules_process(scmp_filter_ctx ctx)
{
	static const int	prctls[] = { PR_SET_NAME, PR_GET_NAME,
	    PR_GET_DUMPABLE, PR_GET_SECCOMP, PR_GET_NO_NEW_PRIVS };
	const scmp_datum_t	self = (scmp_datum_t)getpid();

	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3),
	    0) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
	    SCMP_A0(SCMP_CMP_EQ, self)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
	    SCMP_A0(SCMP_CMP_EQ, self)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(kill), 1,
	    SCMP_A0(SCMP_CMP_NE, self)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(tgkill), 1,
	    SCMP_A0(SCMP_CMP_NE, self)) != 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
	    SCMP_A2(SCMP_CMP_EQ, 0)) != 0)
		return -1;
	for (size_t i = 0; i < sizeof prctls / sizeof *prctls; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
		    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctls[i])) != 0)
			return -1;
	for (size_t i = 0; i < sizeof egress_ioctls / sizeof *egress_ioctls;
	    i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		    SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
		    (scmp_datum_t)egress_ioctls[i])) != 0)
			return -1;
	return 0;
}

/* Compiled and loaded here: egress is one long-lived process, nothing
 * forks from it to share the pages libseccomp dirties. */
static int
egress_seccomp(char *err, size_t errlen)
{
	scmp_filter_ctx	ctx;
	int		rc = -1;

	if ((ctx = seccomp_init(SCMP_ACT_KILL_PROCESS)) == NULL) {
		snprintf(err, errlen, "seccomp: seccomp_init failed");
		return -1;
	}
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_KILL_PROCESS) != 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) != 0 ||
	    egress_rules_names(ctx) == -1 || egress_rules_open(ctx) == -1 ||
	    egress_rules_socket(ctx) == -1 || egress_rules_process(ctx) == -1)
		snprintf(err, errlen, "seccomp: building the filter failed");
	else if ((rc = seccomp_load(ctx)) != 0)
		snprintf(err, errlen, "seccomp: loading the filter: %s",
		    strerror(-rc));
	seccomp_release(ctx);
	return rc == 0 ? 0 : -1;
}

/*
 * In minijail_enter()'s order: the mount namespace (while privileged),
 * the ids and capabilities, Landlock, the filter last.
 */
int
egress_sandbox_enter(const struct sandbox *sb, char *err, size_t errlen)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s",
		    strerror(errno));
		return -1;
	}
	if (sb->fs == SANDBOX_FS_MOUNT && mountns_enter(sb, -1, err,
	    errlen) == -1)
		return -1;
	if (sandbox_drop_privs(sb, err, errlen) == -1)
		return -1;
	if (sb->fs == SANDBOX_FS_LANDLOCK && landlock_enter_egress(err,
	    errlen) == -1)
		return -1;
	if ((sb->flags & SANDBOX_SECCOMP) && egress_seccomp(err, errlen) == -1)
		return -1;
	return 0;
}

#ifdef HEAVY_TEST_HOOKS
/* One forbidden thing, tried for a test; what the kernel said, in out. */
static int
egress_probe_try(const char *what)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char *const		argv[] = { "true", NULL };
	int			fd;

	if (strncmp(what, "write:", 6) == 0)
		fd = open(what + 6, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0600);
	else if (strncmp(what, "read:", 5) == 0)
		fd = open(what + 5, O_RDONLY | O_CLOEXEC);
	else if (strcmp(what, "bind") == 0) {
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) != -1 &&
		    bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1) {
			close(fd);
			fd = -1;
		}
	} else if (strncmp(what, "signal:", 7) == 0)
		fd = kill((pid_t)atoi(what + 7), 0) == -1 ? -1 : 0;
	else if (strcmp(what, "exec") == 0)
		fd = execve("/bin/true", argv, argv + 1);
	else if (strcmp(what, "fork") == 0) {
		if ((fd = fork()) == 0)
			_exit(0);
	} else {
		errno = EINVAL;
		fd = -1;
	}
	return fd;
}

void
egress_sandbox_probe(const char *what, char *out, size_t len)
{
	int	fd = egress_probe_try(what);

	if (fd == -1) {
		snprintf(out, len, "%s: refused: %s", what,
		    strerrorname_np(errno));
		return;
	}
	snprintf(out, len, "%s: allowed", what);
	if (fd > 2)
		close(fd);
}
#endif

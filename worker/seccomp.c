/*
 * The seccomp allowlist: the system calls the LLM client (libcurl, OpenSSL,
 * the glibc resolver), json-c, libxml2 and the agent's tools need, and
 * nothing else.  Anything else kills the whole worker with SIGSYS, which the
 * supervisor reports by name.  The zygote compiles it once with libseccomp,
 * in two programs.  The first, installed on the zygote itself and so
 * inherited by every fork for free, is the allowlist plus what the zygote
 * and the way into the sandbox need (fork, wait4, Landlock, capset,
 * setrlimit, the mount namespace).  The second, small, is installed by
 * each worker once inside and kills exactly those.  Stacked, the two allow
 * the allowlist and nothing else.
 *
 * The second filter also confines what the first allows broadly, by
 * argument: signals reach only the worker itself (on kernels without
 * Landlock's signal scoping a worker could otherwise kill heavyd), and no
 * socket of any family can be made: no TCP, no UDP, no unix socket path
 * (docker.sock, D-Bus); a worker's requests go to heavyd-egress.  Its own
 * pid is not known when the zygote compiles it, so the program carries a
 * placeholder that each worker replaces with its pid before installing it.
 */
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <seccomp.h>

#include "worker.h"

/* Allowed whatever their arguments. */
static const char *const allow_always[] = {
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* descriptors and files (Landlock decides which paths) */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
	"pwritev", "preadv2", "pwritev2", "close", "close_range", "lseek",
	"open", "openat", "openat2", "fstat", "stat", "lstat", "newfstatat",
	"statx", "fstatfs", "statfs", "access", "faccessat", "faccessat2",
	"readlink", "readlinkat", "getdents", "getdents64", "mkdir", "mkdirat",
	"rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir",
	"fsync", "fdatasync", "ftruncate", "fadvise64", "fcntl", "flock",
	"dup", "dup2", "dup3", "pipe", "pipe2", "getcwd", "umask",
	/* network (Landlock decides which TCP ports) */
	"connect", "bind", "getsockname", "getpeername", "setsockopt",
	"getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
	"recvmmsg", "shutdown", "socketpair",
	"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
	"epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd",
	"eventfd2",
	/* time */
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
	"gettimeofday", "time",
	/* threads (clone is below), signals, identity, limits */
	"futex", "set_robust_list", "get_robust_list", "rseq",
	"set_tid_address", "sched_yield", "sched_getaffinity", "arch_prctl",
	"exit", "exit_group", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
	"sigaltstack", "restart_syscall", "kill", "tgkill", "tkill",
	"getpid", "gettid", "getppid", "getuid", "geteuid", "getgid",
	"getegid", "getresuid", "getresgid", "getgroups", "getrandom",
	"getrlimit", "getrusage", "times", "sysinfo", "uname",
#ifdef __SANITIZE_ADDRESS__
	/* the sanitizer runtime: its reports and stack unwinding */
	"mincore", "sched_getparam", "personality",
#endif
};

/* What the zygote and the way into the sandbox need, and no worker after:
 * the second filter kills these. */
static const char *const allow_setup[] = {
	"wait4", "waitid", "pidfd_open", "signalfd4", "setpgid",
	"capget", "capset", "setrlimit", "landlock_create_ruleset",
	"landlock_add_rule", "landlock_restrict_self", "seccomp", "unshare",
	"mount", "umount2", "pivot_root", "chdir", "setgroups", "setresuid",
	"setresgid",
};
static const int setup_prctls[] = {
	PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT,
};

/* The read-only ioctls libraries use: isatty(), FIONREAD, the resolver's
 * interface lookups. */
static const unsigned long allow_ioctls[] = {
	TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX,
	SIOCGIFINDEX, SIOCGIFNAME,
};

/* prctl options that read, or name a thread. */
static const int allow_prctls[] = {
	PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_GET_SECCOMP,
	PR_GET_NO_NEW_PRIVS, PR_CAPBSET_READ,
};

/* Stands for the worker's pid in the second program: above PID_MAX_LIMIT
 * (2^22), so no pid, syscall number or flag compared there equals it. */
#define SECCOMP_SELF	0x3ffffff1u

static struct sock_fprog	seccomp_first, seccomp_second, seccomp_second_dns;
static bool			seccomp_first_in;

/* One action for every named call; a name this architecture lacks is not
 * needed here. */
static int
seccomp_rules_names(scmp_filter_ctx ctx, uint32_t action,
    const char *const *names, size_t n)
{
	int	nr;

	for (size_t i = 0; i < n; i++) {
		if ((nr = seccomp_syscall_resolve_name(names[i])) ==
		    __NR_SCMP_ERROR)
			continue;
		if (seccomp_rule_add(ctx, action, nr, 0) != 0)
			return -1;
	}
	return 0;
}

static int
seccomp_rules_prctl(scmp_filter_ctx ctx, uint32_t action, const int *opts,
    size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (seccomp_rule_add(ctx, action, SCMP_SYS(prctl), 1,
		    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)opts[i])) != 0)
			return -1;
	return 0;
}

/* The zygote forks; the second filter lets workers clone threads only. */
static int
seccomp_rules_clone(scmp_filter_ctx ctx)
{
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0) != 0)
		return -1;
	/* clone3 passes its flags in memory, out of a filter's sight: ENOSYS
	 * makes glibc's pthread_create fall back to clone. */
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3),
	    0);
}

/* Sockets: IP, unix (the resolver's nscd probe, curl's socketpair) and
 * netlink routing (getaddrinfo's address sorting). */
static int
seccomp_rules_socket(scmp_filter_ctx ctx)
{
	static const int	families[] = { AF_UNIX, AF_INET, AF_INET6 };

	for (size_t i = 0; i < sizeof families / sizeof *families; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
		    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i])) != 0)
			return -1;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
	    SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
	    SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE));
}

/* ioctl and prctl: only what reads or names (and, while entering, sets
 * up); prlimit64 any way (the second filter lets it only read). */
static int
seccomp_rules_options(scmp_filter_ctx ctx)
{
	for (size_t i = 0; i < sizeof allow_ioctls / sizeof *allow_ioctls; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		    SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
		    (scmp_datum_t)allow_ioctls[i])) != 0)
			return -1;
	if (seccomp_rules_prctl(ctx, SCMP_ACT_ALLOW, allow_prctls,
	    sizeof allow_prctls / sizeof *allow_prctls) == -1 ||
	    seccomp_rules_prctl(ctx, SCMP_ACT_ALLOW, setup_prctls,
	    sizeof setup_prctls / sizeof *setup_prctls) == -1)
		return -1;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 0);
}

/* The first filter: the allowlist, and what the zygote and the way into
 * the sandbox need. */
static int
seccomp_rules_first(scmp_filter_ctx ctx)
{
	if (seccomp_rules_names(ctx, SCMP_ACT_ALLOW, allow_always,
	    sizeof allow_always / sizeof *allow_always) == -1 ||
	    seccomp_rules_names(ctx, SCMP_ACT_ALLOW, allow_setup,
	    sizeof allow_setup / sizeof *allow_setup) == -1 ||
	    seccomp_rules_clone(ctx) == -1 || seccomp_rules_socket(ctx) == -1)
		return -1;
	return seccomp_rules_options(ctx);
}

/* kill and tgkill only for the worker itself (pid == SECCOMP_SELF): any
 * other target, a process group or -1 included, is EPERM. */
static int
seccomp_rules_signals(scmp_filter_ctx ctx)
{
	static const int	calls[] = { SCMP_SYS(kill), SCMP_SYS(tgkill) };

	for (size_t i = 0; i < sizeof calls / sizeof *calls; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), calls[i], 1,
		    SCMP_A0(SCMP_CMP_GT, SECCOMP_SELF)) != 0 ||
		    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), calls[i], 1,
		    SCMP_A0(SCMP_CMP_LT, SECCOMP_SELF)) != 0)
			return -1;
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(tkill),
	    0);
}

/*
 * No new socket of any family (socketpair still makes a connected pair):
 * a worker's only way out is the socket to heavyd-egress it was handed.
 * EACCES: libraries take it as "not here".  (udp is no longer used: the
 * two variants are the same program.)
 */
static int
seccomp_rules_sockets(scmp_filter_ctx ctx, bool udp)
{
	(void)udp;
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket),
	    0) != 0 ? -1 : 0;
}

/* The second filter: the way in, closed behind the worker.  Threads,
 * never processes: clone only with CLONE_THREAD. */
static int
seccomp_rules_second_common(scmp_filter_ctx ctx)
{
	if (seccomp_rules_names(ctx, SCMP_ACT_KILL_PROCESS, allow_setup,
	    sizeof allow_setup / sizeof *allow_setup) == -1 ||
	    seccomp_rules_prctl(ctx, SCMP_ACT_KILL_PROCESS, setup_prctls,
	    sizeof setup_prctls / sizeof *setup_prctls) == -1 ||
	    seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
	    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0)) != 0)
		return -1;
	/* Reading a limit is fine; raising one is not. */
	if (seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(prlimit64),
	    1, SCMP_A2(SCMP_CMP_NE, 0)) != 0)
		return -1;
	return seccomp_rules_signals(ctx);
}

static int
seccomp_rules_second(scmp_filter_ctx ctx)
{
	if (seccomp_rules_second_common(ctx) == -1)
		return -1;
	return seccomp_rules_sockets(ctx, false);
}

/* The same, for workers whose endpoints are names: UDP for the resolver. */
static int
seccomp_rules_second_dns(scmp_filter_ctx ctx)
{
	if (seccomp_rules_second_common(ctx) == -1)
		return -1;
	return seccomp_rules_sockets(ctx, true);
}

/* Compiles one filter (its default action, its rules) into fd as BPF. */
static int
seccomp_compile(uint32_t def, int (*rules)(scmp_filter_ctx), int fd)
{
	scmp_filter_ctx	ctx;
	int		rc = -1;

	if ((ctx = seccomp_init(def)) == NULL)
		return -1;
	/* A binary tree of syscall numbers, not a chain: a shorter walk for
	 * every call, and for the kernel's per-syscall cache at install. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_KILL_PROCESS) == 0 &&
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) == 0 &&
	    rules(ctx) == 0 && seccomp_export_bpf(ctx, fd) == 0)
		rc = 0;
	seccomp_release(ctx);
	return rc;
}

/* One program, read to its end; a few KiB, below a pipe's 64 KiB. */
static int
seccomp_read(int fd, struct sock_fprog *prog)
{
	struct sock_filter	buf[BPF_MAXINSNS + 1];
	size_t			len = 0;
	ssize_t			n;

	while (len < sizeof buf &&
	    (n = read(fd, (char *)buf + len, sizeof buf - len)) > 0)
		len += (size_t)n;
	if (len == 0 || len % sizeof *buf != 0 || len / sizeof *buf >
	    BPF_MAXINSNS)
		return -1;
	prog->filter = xmalloc(len);
	memcpy(prog->filter, buf, len);
	prog->len = (unsigned short)(len / sizeof *buf);
	return 0;
}

/*
 * In the zygote, once: the filters, compiled in a child.  libseccomp's
 * working memory never touches the zygote's heap, whose every page a
 * worker would otherwise copy on write.
 */
int
seccomp_allowlist_build(char *err, size_t errlen)
{
	static int	(*const rules[3])(scmp_filter_ctx) = {
	    seccomp_rules_first, seccomp_rules_second, seccomp_rules_second_dns };
	static struct sock_fprog *const progs[3] = { &seccomp_first,
	    &seccomp_second, &seccomp_second_dns };
	int	p[3][2], status, ok;
	pid_t	pid;

	if (seccomp_second.filter != NULL)
		return 0;
	for (int i = 0; i < 3; i++)
		if (pipe2(p[i], O_CLOEXEC) == -1) {
			while (i-- > 0) {
				close(p[i][0]);
				close(p[i][1]);
			}
			goto fail;
		}
	if ((pid = fork()) == 0) {
		for (int i = 0; i < 3; i++)
			if (seccomp_compile(i == 0 ? SCMP_ACT_KILL_PROCESS :
			    SCMP_ACT_ALLOW, rules[i], p[i][1]) == -1)
				_exit(1);
		_exit(0);
	}
	for (int i = 0; i < 3; i++)
		close(p[i][1]);
	ok = pid != -1 && waitpid(pid, &status, 0) == pid &&
	    WIFEXITED(status) && WEXITSTATUS(status) == 0;
	for (int i = 0; i < 3; i++) {
		ok = ok && seccomp_read(p[i][0], progs[i]) == 0;
		close(p[i][0]);
	}
	if (ok)
		return 0;
	for (int i = 0; i < 3; i++) {
		free(progs[i]->filter);
		memset(progs[i], 0, sizeof *progs[i]);
	}
fail:
	snprintf(err, errlen, "seccomp: compiling the filters failed");
	return -1;
}

static int
seccomp_install(const struct sock_fprog *prog, char *err, size_t errlen)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) == -1) {
		snprintf(err, errlen, "seccomp: installing the filter: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* In the zygote (needs no_new_privs): the first filter, for it and every
 * process it forks. */
int
seccomp_allowlist_prepare(char *err, size_t errlen)
{
	if (seccomp_first_in)
		return 0;
	if (seccomp_allowlist_build(err, errlen) == -1 ||
	    seccomp_install(&seccomp_first, err, errlen) == -1)
		return -1;
	seccomp_first_in = true;
	return 0;
}

/*
 * The second program with this worker's pid for SECCOMP_SELF, in place
 * (the worker's own copy of the zygote's pages).  -1 if the placeholder is
 * not there: a libseccomp that compiled it otherwise must not leave
 * signals unconfined.
 */
static int
seccomp_patch_self(struct sock_fprog *prog)
{
	int	n = 0;

	for (unsigned i = 0; i < prog->len; i++)
		if (prog->filter[i].k == SECCOMP_SELF) {
			prog->filter[i].k = (uint32_t)getpid();
			n++;
		}
	return n > 0 ? 0 : -1;
}

/*
 * In a worker, last: from here on only the allowlist runs, signals reach
 * only this process, and UDP exists only if dns (the endpoints' names need
 * the resolver).
 */
int
seccomp_allowlist_enter(bool dns, char *err, size_t errlen)
{
	struct sock_fprog	*prog = dns ? &seccomp_second_dns :
	    &seccomp_second;

	if (seccomp_allowlist_prepare(err, errlen) == -1)
		return -1;
	if (seccomp_patch_self(prog) == -1) {
		snprintf(err, errlen, "seccomp: the signal rules lack their "
		    "pid placeholder");
		return -1;
	}
	return seccomp_install(prog, err, errlen);
}

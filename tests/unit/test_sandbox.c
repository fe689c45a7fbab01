/*
 * The sandbox: its wire form, the endpoint ports, the cgroup probe's
 * parsers, and (in forked children) what seccomp, Landlock, the mount
 * namespace and sandbox_enter() actually let a process do.
 */
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "../../worker/worker.h"

/* ---- the wire form ---- */

Test(sandbox, round_trip_and_bad_values)
{
	struct sandbox	in = { .workspace = "/w", .fs = SANDBOX_FS_LANDLOCK,
	    .flags = SANDBOX_SECCOMP, .memory = 1ULL << 30, .cpu_s = 7,
	    .nofile = 64, .fsize = 4096, .pids = 9, .uid = 1000, .gid = 1001,
	    .nports = 2, .ports = { 443, 53 } }, out;
	struct mreader	r;
	struct buf	b;

	buf_init(&b, 0);
	sandbox_encode(&b, &in);
	m_reader_init(&r, b.data, b.len);
	cr_assert_eq(sandbox_decode(&r, &out), 0);
	cr_assert_eq(m_end(&r), 0);
	cr_assert_str_eq(out.workspace, "/w");
	cr_assert_eq(out.fs, SANDBOX_FS_LANDLOCK);
	cr_assert_eq(out.memory, 1ULL << 30);
	cr_assert_eq(out.uid, 1000);
	cr_assert_eq(out.gid, 1001);
	cr_assert_eq(out.nports, 2);
	cr_assert_eq(out.ports[1], 53);
	sandbox_clear(&out);
	buf_free(&b);

	struct sandbox	bad[5] = { in, in, in, in, in };
	bad[0].fs = 0;			/* no such mode */
	bad[1].ports[0] = 0;		/* port 0 */
	bad[2].fs = SANDBOX_FS_NONE + 1;
	bad[3].uid = 0;			/* a worker never becomes root */
	bad[4].gid = 0;
	for (int i = 0; i < 5; i++) {
		buf_init(&b, 0);
		sandbox_encode(&b, &bad[i]);
		m_reader_init(&r, b.data, b.len);
		cr_assert_eq(sandbox_decode(&r, &out), -1, "bad[%d] accepted", i);
		buf_free(&b);
	}
}

Test(sandbox, too_many_ports_is_rejected)
{
	struct sandbox	s = { .workspace = "", .fs = SANDBOX_FS_NONE,
	    .uid = SANDBOX_KEEP_ID, .gid = SANDBOX_KEEP_ID };
	struct mreader	r;
	struct buf	b;

	buf_init(&b, 0);
	sandbox_encode(&b, &s);
	/* Rewrite nports (the last field) past the maximum. */
	b.len -= 5;
	m_add_u32(&b, SANDBOX_MAX_PORTS + 1);
	m_reader_init(&r, b.data, b.len);
	cr_assert_eq(sandbox_decode(&r, &s), -1);
	buf_free(&b);
}

/* ---- endpoint ports ---- */

static int
ports_of(const char *url, struct sandbox *sb)
{
	struct heavy_config	c;
	char			err[256];
	int			rc;

	config_defaults(&c);
	config_set_str(&c.base_url, url);
	memset(sb, 0, sizeof *sb);
	rc = features_ports(&c, sb, err, sizeof err);
	if (rc == -1)
		cr_assert(strstr(err, "base_url") != NULL, "%s", err);
	config_clear(&c);
	return rc;
}

Test(sandbox, ports_from_urls)
{
	struct sandbox	sb;

	cr_assert_eq(ports_of("https://openrouter.ai/api/v1", &sb), 0);
	cr_assert_eq(sb.nports, 2);
	cr_assert_eq(sb.ports[0], 443);
	cr_assert_eq(sb.ports[1], 53, "a host name needs the resolver");
	cr_assert_eq(ports_of("http://127.0.0.1:8080/v1", &sb), 0);
	cr_assert_eq(sb.nports, 1);
	cr_assert_eq(sb.ports[0], 8080);
	cr_assert_eq(ports_of("http://[::1]:9/v1", &sb), 0);
	cr_assert_eq(sb.nports, 1);
	cr_assert_eq(sb.ports[0], 9);
	cr_assert_eq(ports_of("HTTP://example.com/v1", &sb), 0);
	cr_assert_eq(sb.ports[0], 80);
	cr_assert_eq(ports_of("https://example.com:53/v1", &sb), 0);
	cr_assert_eq(sb.nports, 1, "53 once");
	cr_assert_eq(ports_of("ftp://example.com/", &sb), -1);
	cr_assert_eq(ports_of("ftp://example.com:21/", &sb), -1);
	cr_assert_eq(ports_of("not a url", &sb), -1);
	cr_assert_eq(ports_of("http:///v1", &sb), -1);
}

/* ---- the cgroup probe's parsers ---- */

Test(sandbox, cgroup_path_from_proc_self_cgroup)
{
	char	out[256];

	cr_assert_eq(features_cgroup_path("0::/system.slice/heavyd.service\n",
	    out, sizeof out), 0);
	cr_assert_str_eq(out, "/system.slice/heavyd.service");
	cr_assert_eq(features_cgroup_path("9:name=systemd:/\n4:memory:/x\n"
	    "0::/\n", out, sizeof out), 0);
	cr_assert_str_eq(out, "/");
	cr_assert_eq(features_cgroup_path("4:memory:/x\n1:cpu:/\n", out,
	    sizeof out), -1, "v1 only");
	cr_assert_eq(features_cgroup_path("0::/a/b\n", out, 4), -1, "too long");
}

Test(sandbox, cgroup2_mount_from_mountinfo)
{
	char	out[256];
	const char *hybrid =
	    "30 25 0:26 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw\n"
	    "35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	    "40 30 0:36 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 "
	    "cgroup2 rw,nsdelegate\n";

	cr_assert_eq(features_cgroup2_mount(hybrid, out, sizeof out), 0);
	cr_assert_str_eq(out, "/sys/fs/cgroup/unified");
	cr_assert_eq(features_cgroup2_mount("25 1 0:22 / /sys/fs/cgroup rw - "
	    "cgroup2 cgroup2 rw\n", out, sizeof out), 0);
	cr_assert_str_eq(out, "/sys/fs/cgroup");
	cr_assert_eq(features_cgroup2_mount("30 25 0:26 / /sys/fs/cgroup rw - "
	    "tmpfs tmpfs rw\n", out, sizeof out), -1, "no cgroup2");
}

Test(sandbox, controllers_are_whole_words)
{
	cr_assert(features_has_controllers("cpuset cpu io memory pids\n",
	    "memory pids"));
	cr_assert(!features_has_controllers("hugetlb\n", "memory pids"));
	cr_assert(!features_has_controllers("memory hugetlb\n", "memory pids"));
	cr_assert(!features_has_controllers("memoryx pids_foo\n", "memory pids"));
	cr_assert(!features_has_controllers("", "memory"));
}

/* ---- what a confined child can do ---- */

/* Runs fn in a child; its wait status, and in msg what it wrote. */
static int
in_child(void (*fn)(int out), char *msg, size_t len)
{
	int	p[2], status;
	ssize_t	n;
	pid_t	pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	if ((pid = fork()) == 0) {
		close(p[0]);
		fn(p[1]);
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], msg, len - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(p[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/* In a child: reports a failed expectation and exits 1. */
#define EXPECT(out, cond, ...) do {					\
	if (!(cond)) {							\
		dprintf(out, __VA_ARGS__);				\
		_exit(1);						\
	}								\
} while (0)

static void
enter_seccomp(int out)
{
	char	err[256];

	EXPECT(out, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "nnp");
	EXPECT(out, seccomp_allowlist_enter(true, err, sizeof err) == 0, "%s", err);
}

static void *
thread_fn(void *arg)
{
	return arg;
}

static void
child_threads_and_files(int out)
{
	pthread_t	t;
	void		*ret;
	char		 buf[64];
	int		 fd, pair[2];

	enter_seccomp(out);
	EXPECT(out, syscall(SYS_clone3, NULL, 0) == -1 && errno == ENOSYS,
	    "clone3: %s", strerror(errno));
	EXPECT(out, pthread_create(&t, NULL, thread_fn, buf) == 0, "thread");
	EXPECT(out, pthread_join(t, &ret) == 0 && ret == buf, "join");
	fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
	EXPECT(out, fd != -1 && read(fd, buf, sizeof buf) > 0, "read");
	close(fd);
	/* No socket of any family: a worker's way out is heavyd-egress. */
	EXPECT(out, socket(AF_INET6, SOCK_DGRAM, 0) == -1 && errno == EACCES,
	    "UDP socket: %s", strerror(errno));
	EXPECT(out, socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EACCES,
	    "TCP socket: %s", strerror(errno));
	EXPECT(out, socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0,
	    "socketpair: %s", strerror(errno));
	EXPECT(out, getrlimit(RLIMIT_NOFILE, &(struct rlimit){ 0 }) == 0,
	    "getrlimit");
}

Test(sandbox, seccomp_allows_threads_files_and_sockets)
{
	char	msg[256];
	int	st = in_child(child_threads_and_files, msg, sizeof msg);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %s", st,
	    msg);
}

static void child_fork(int out)	{ enter_seccomp(out); fork(); }
static void child_exec(int out)
{
	enter_seccomp(out);
	execl("/bin/true", "true", (char *)NULL);
}
static void child_ptrace(int out)
{
	enter_seccomp(out);
	ptrace(PTRACE_TRACEME, 0, NULL, NULL);
}
static void child_mount(int out)
{
	enter_seccomp(out);
	syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, NULL);
}
static void child_raise_limit(int out)
{
	struct rlimit	rl = { 1, 1 };

	enter_seccomp(out);
	setrlimit(RLIMIT_CORE, &rl);
}
static void child_listen(int out)
{
	int	fd;

	enter_seccomp(out);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	listen(fd, 1);
}
static void child_packet(int out)
{
	enter_seccomp(out);
	socket(AF_PACKET, SOCK_RAW, 0);
}
/* The way in (allowed by the first filter) is closed by the second. */
static void child_landlock_again(int out)
{
	enter_seccomp(out);
	syscall(SYS_landlock_create_ruleset, NULL, 0, 1);
}
static void child_capset(int out)
{
	cap_t	none = cap_init();

	enter_seccomp(out);
	cap_set_proc(none);
}
static void child_nnp_again(int out)
{
	enter_seccomp(out);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* Before the second filter, the way in is open: the first alone. */
static void
child_first_filter_only(int out)
{
	char	err[256];
	pid_t	pid;
	int	st;

	EXPECT(out, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "nnp");
	EXPECT(out, seccomp_allowlist_prepare(err, sizeof err) == 0, "%s", err);
	EXPECT(out, syscall(SYS_landlock_create_ruleset, NULL, 0, 1) != -1 ||
	    errno == EOPNOTSUPP || errno == ENOSYS, "landlock");
	EXPECT(out, setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 }) == 0,
	    "setrlimit");
	/* The zygote's filter: it forks and reaps. */
	EXPECT(out, (pid = fork()) != -1, "fork");
	if (pid == 0)
		_exit(0);
	EXPECT(out, waitpid(pid, &st, 0) == pid && WIFEXITED(st), "wait");
	EXPECT(out, seccomp_allowlist_enter(true, err, sizeof err) == 0, "%s", err);
	EXPECT(out, getpid() > 0, "after");
}

Test(sandbox, seccomp_first_filter_lets_the_way_in)
{
	char	msg[256];
	int	st = in_child(child_first_filter_only, msg, sizeof msg);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %s", st,
	    msg);
}

Test(sandbox, seccomp_kills_what_is_not_allowed)
{
	void	(*fns[])(int) = { child_fork, child_exec, child_ptrace,
	    child_mount, child_raise_limit, child_listen, child_packet,
	    child_landlock_again, child_capset, child_nnp_again };
	char	msg[256];
	int	st;

	for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
		st = in_child(fns[i], msg, sizeof msg);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
		    "case %zu: status %#x: %s", i, st, msg);
	}
}

/* Landlock: a workspace, a listener on an allowed port and one not. */
static char	ws[64] = "/tmp/heavyd-unit-ws-XXXXXX";
static char	outside[64] = "/tmp/heavyd-unit-out-XXXXXX";
static int	lfd[2];
static uint16_t	lport[2];

static uint16_t
listen_loopback(int *fd)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET };
	socklen_t		len = sizeof sin;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(*fd != -1);
	cr_assert_eq(bind(*fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(*fd, 4), 0);
	getsockname(*fd, (struct sockaddr *)&sin, &len);
	return ntohs(sin.sin_port);
}

static void
landlock_setup(void)
{
	cr_assert_neq(mkdtemp(ws), NULL);
	cr_assert_neq(mkdtemp(outside), NULL);
	lport[0] = listen_loopback(&lfd[0]);
	lport[1] = listen_loopback(&lfd[1]);
}

static void
landlock_teardown(void)
{
	char	cmd[256];

	snprintf(cmd, sizeof cmd, "rm -rf %s %s", ws, outside);
	cr_expect_eq(system(cmd), 0);
	close(lfd[0]);
	close(lfd[1]);
}

static int
connect_to(uint16_t port)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET };
	int			fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
	close(fd);
	return rc == -1 ? errno : 0;
}

static void
child_landlock(int out)
{
	struct sandbox		 sb = { .workspace = ws, .fs = SANDBOX_FS_LANDLOCK,
	    .nports = 1, .ports = { lport[0] } };
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	char			 err[256], path[128];
	int			 wfd = open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int			 fd;

	EXPECT(out, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "nnp");
	EXPECT(out, landlock_enter(&sb, wfd, err, sizeof err) == 0, "%s", err);
	snprintf(path, sizeof path, "%s/inside", ws);
	EXPECT(out, (fd = open(path, O_WRONLY | O_CREAT, 0600)) != -1,
	    "write inside: %s", strerror(errno));
	close(fd);
	EXPECT(out, mkdirat(wfd, "dir", 0700) == 0, "mkdir inside");
	EXPECT(out, renameat(wfd, "inside", wfd, "dir/moved") == 0,
	    "rename inside: %s", strerror(errno));
	snprintf(path, sizeof path, "%s/escaped", outside);
	EXPECT(out, open(path, O_WRONLY | O_CREAT, 0600) == -1 &&
	    errno == EACCES, "write outside: %s", strerror(errno));
	EXPECT(out, openat(wfd, "../../etc/passwd", O_RDONLY) == -1 &&
	    errno == EACCES, "../ from the workspace: %s", strerror(errno));
	EXPECT(out, (fd = open("/etc/hosts", O_RDONLY)) != -1, "read hosts");
	close(fd);
	EXPECT(out, open("/etc/hosts", O_WRONLY) == -1 && errno == EACCES,
	    "write hosts");
	/* The sandbox's ports are no longer granted: no TCP at all. */
	EXPECT(out, connect_to(lport[0]) == EACCES, "a listed port: %s",
	    strerror(connect_to(lport[0])));
	EXPECT(out, connect_to(lport[1]) == EACCES, "other port: %s",
	    strerror(connect_to(lport[1])));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	EXPECT(out, bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 &&
	    errno == EACCES, "bind: %s", strerror(errno));
	EXPECT(out, kill(getppid(), 0) == -1 && errno == EPERM,
	    "signal outside the sandbox: %s", strerror(errno));
}

Test(sandbox, landlock_confines_files_ports_and_signals,
    .init = landlock_setup, .fini = landlock_teardown)
{
	char	msg[256], path[128];
	int	st;

	if (landlock_abi() < 6)
		cr_skip_test("Landlock ABI %d: ports need 4, signal scope 6",
		    landlock_abi());
	st = in_child(child_landlock, msg, sizeof msg);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", msg);
	snprintf(path, sizeof path, "%s/dir/moved", ws);
	cr_assert_eq(access(path, F_OK), 0);
}

static void
child_mountns(int out)
{
	struct sandbox	sb = { .workspace = ws, .fs = SANDBOX_FS_MOUNT };
	char		err[256], path[128];
	int		wfd = open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC), fd;

	EXPECT(out, mountns_enter(&sb, wfd, err, sizeof err) == 0, "%s", err);
	EXPECT(out, (fd = openat(wfd, "inside", O_WRONLY | O_CREAT, 0600)) !=
	    -1, "write inside: %s", strerror(errno));
	close(fd);
	snprintf(path, sizeof path, "%s/escaped", outside);
	EXPECT(out, open(path, O_WRONLY | O_CREAT, 0600) == -1, "outside");
	EXPECT(out, open("/etc/ssl/escaped", O_WRONLY | O_CREAT, 0600) == -1 &&
	    errno == EROFS, "read-only: %s", strerror(errno));
	EXPECT(out, openat(wfd, "../../../etc/passwd", O_RDONLY) == -1,
	    "../ from the workspace reached the old root");
	EXPECT(out, (fd = open("/etc/hosts", O_RDONLY)) != -1, "read hosts");
	close(fd);
}

Test(sandbox, mount_namespace_confines_files,
    .init = landlock_setup, .fini = landlock_teardown)
{
	char	msg[256], path[128];
	int	st;

	if (!CAP_IS_SUPPORTED(CAP_SYS_ADMIN) || geteuid() != 0)
		cr_skip_test("a mount namespace needs CAP_SYS_ADMIN");
	st = in_child(child_mountns, msg, sizeof msg);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", msg);
	snprintf(path, sizeof path, "%s/inside", ws);
	cr_assert_eq(access(path, F_OK), 0);
}

static void
child_enter(int out)
{
	struct sandbox	sb = { .workspace = "", .fs = SANDBOX_FS_NONE,
	    .memory = 512 << 20, .cpu_s = 30, .nofile = 40, .fsize = 8192 };
	struct rlimit	rl;
	cap_t		caps, none;
	char		err[256];
	int		sig = 0;
	bool		root = geteuid() == 0;

	/* As root, the worker's ids are given up as a root heavyd's are. */
	sb.uid = root ? 65534 : SANDBOX_KEEP_ID;
	sb.gid = root ? 65534 : SANDBOX_KEEP_ID;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	EXPECT(out, sandbox_enter(&sb, -1, err, sizeof err) == 0, "%s", err);
	EXPECT(out, !root || (getuid() == 65534 && geteuid() == 65534 &&
	    getgid() == 65534 && getgroups(0, NULL) == 0), "ids kept: uid %d",
	    (int)getuid());
	prctl(PR_GET_PDEATHSIG, &sig);
	EXPECT(out, sig == SIGKILL, "the parent-death signal was lost");
	EXPECT(out, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs");
	caps = cap_get_proc();
	none = cap_init();
	EXPECT(out, cap_compare(caps, none) == 0, "capabilities left");
	EXPECT(out, prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN) != 1, "bounding set");
	getrlimit(RLIMIT_NOFILE, &rl);
	EXPECT(out, rl.rlim_cur == 40 && rl.rlim_max == 40, "NOFILE");
	getrlimit(RLIMIT_CPU, &rl);
	EXPECT(out, rl.rlim_cur == 30 && rl.rlim_max == 31, "CPU");
	getrlimit(RLIMIT_FSIZE, &rl);
	EXPECT(out, rl.rlim_cur == 8192, "FSIZE");
	getrlimit(RLIMIT_CORE, &rl);
	EXPECT(out, rl.rlim_cur == 0 && rl.rlim_max == 0, "CORE");
#ifndef __SANITIZE_ADDRESS__
	getrlimit(RLIMIT_AS, &rl);
	EXPECT(out, rl.rlim_cur == 512 << 20, "AS");
#endif
}

Test(sandbox, enter_drops_privileges_and_sets_limits)
{
	char	msg[256];
	int	st = in_child(child_enter, msg, sizeof msg);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", msg);
}

/* ---- the limits are knobs ---- */

Test(sandbox, worker_limits_are_checked_knobs)
{
	struct heavy_config	c;
	char			err[256];

	config_defaults(&c);
	cr_assert_eq(c.worker_memory, (size_t)1 << 30);
	cr_assert_eq(c.worker_cpu, 600);
	cr_assert_eq(config_set_knob_named(&c, "worker_cpu", "5", err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(c.worker_cpu, 5);
	cr_assert_eq(config_set_knob_named(&c, "worker_memory", "1024", err,
	    sizeof err), -1, "1 KiB of memory accepted");
	cr_assert(strstr(err, "HEAVY_WORKER_MEMORY") != NULL, "%s", err);
	cr_assert_eq(config_set_knob_named(&c, "worker_nofile", "8", err,
	    sizeof err), -1, "8 descriptors accepted");
	cr_assert_eq(config_set_knob_named(&c, "worker_pids", "64", err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(c.worker_pids, 64);
	config_clear(&c);
}

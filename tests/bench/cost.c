/*
 * What heavyd's process tree costs (scripts/bench cost):
 *   bench pss CALLS       CALLS 4-agent calls whose agents the mock holds
 *                         ([[agent:gate]]; HEAVY_BASE_URL names the mock):
 *                         PSS of each kind of process in the tree, and per
 *                         waiting worker; then the gate opens
 *   bench cpu N CONC      N 4-agent calls, CONC at a time, on one server,
 *                         which then stops: the CPU of the whole process
 *                         tree, less that of a server that served nothing,
 *                         per orchestration
 *
 * CPU of the tree: this process becomes a child subreaper, so whatever
 * the server leaves behind is reparented here, and reaps every descendant;
 * then getrusage(RUSAGE_CHILDREN) holds the user and system time of every
 * process of the tree, each one reaped by its parent (workers and spares by
 * the zygote, the zygote and egress by heavyd, heavyd and any orphan by
 * us).  A server's own start and stop is measured alone and subtracted.
 * Just before the stop, /proc's utime, stime, cutime and cstime of heavyd,
 * the zygote and egress split the figure by process (clock ticks).
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../../common/common.h"
#include "bench.h"

#define COST_MAXP	(1 << 22)	/* pid_max's ceiling */

struct proc {
	pid_t	pid;
	pid_t	ppid;
	char	comm[16];
};

/* ------------------------------------------------------------ /proc */

static int
proc_read(pid_t pid, const char *what, char *buf, size_t len)
{
	char	path[64];
	ssize_t	n;
	int	fd;

	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* Every process whose ancestor is root, root first; a malloc'd array. */
static struct proc *
tree_list(pid_t root, int *np)
{
	static pid_t	*ppid, last_max;
	static bool	*mine;
	struct proc	*ps;
	struct dirent	*d;
	DIR		*dir;
	char		 buf[512], *p;
	pid_t		 pid, maxpid = root;
	int		 n = 0, changed = 1;

	if (ppid == NULL) {
		ppid = xcalloc(COST_MAXP, sizeof *ppid);
		mine = xcalloc(COST_MAXP, sizeof *mine);
	}
	memset(ppid, 0, ((size_t)last_max + 1) * sizeof *ppid);
	memset(mine, 0, ((size_t)last_max + 1) * sizeof *mine);
	if ((dir = opendir("/proc")) == NULL)
		fatal("/proc");
	while ((d = readdir(dir)) != NULL) {
		if ((pid = atoi(d->d_name)) <= 0 || pid >= COST_MAXP)
			continue;
		mine[pid] = pid == root;
		if (proc_read(pid, "stat", buf, sizeof buf) == 0 &&
		    (p = strrchr(buf, ')')) != NULL)
			ppid[pid] = atoi(p + 4);	/* ") S PPID" */
		maxpid = pid > maxpid ? pid : maxpid;
	}
	closedir(dir);
	last_max = maxpid;
	while (changed) {	/* a child may have a smaller pid */
		changed = 0;
		for (pid = 1; pid <= maxpid; pid++)
			if (!mine[pid] && ppid[pid] > 0 && mine[ppid[pid]])
				changed = mine[pid] = true;
	}
	ps = xcalloc((size_t)maxpid + 1, sizeof *ps);
	ps[n++] = (struct proc){ root, 0, "" };
	for (pid = 1; pid <= maxpid; pid++)
		if (mine[pid] && pid != root)
			ps[n++] = (struct proc){ pid, ppid[pid], "" };
	for (int i = 0; i < n; i++)
		if (proc_read(ps[i].pid, "comm", buf, sizeof buf) == 0)
			snprintf(ps[i].comm, sizeof ps[i].comm, "%.*s",
			    (int)strcspn(buf, "\n"), buf);
	*np = n;
	return ps;
}

/* One line of smaps_rollup ("Pss", "Pss_Anon", ...) in kB; -1 if none. */
static long
proc_smaps_kb(pid_t pid, const char *key)
{
	char	buf[4096], want[32], *p;

	if (proc_read(pid, "smaps_rollup", buf, sizeof buf) == -1)
		return -1;
	snprintf(want, sizeof want, "\n%s:", key);
	if ((p = strstr(buf, want)) == NULL)
		return -1;
	return atol(p + strlen(want));
}

long
tree_pss_kb(pid_t root, int *nprocs)
{
	struct proc	*ps;
	long		 kb = 0, v;
	int		 n;

	ps = tree_list(root, &n);
	for (int i = 0; i < n; i++)
		if ((v = proc_smaps_kb(ps[i].pid, "Pss")) > 0)
			kb += v;
	free(ps);
	*nprocs = n;
	return kb;
}

/* ------------------------------------------------------------ the mock */

/* A request to the mock of HEAVY_BASE_URL (http://127.0.0.1:PORT/...);
 * its body, malloc'd. */
static char *
mock_call(const char *method, const char *path)
{
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	const char		*url = getenv("HEAVY_BASE_URL");
	char			 req[256], *out = xcalloc(1, 65536);
	size_t			 len = 0;
	ssize_t			 n;
	int			 fd, port;

	if (url == NULL || sscanf(url, "http://127.0.0.1:%d", &port) != 1)
		fatalx("bench pss: HEAVY_BASE_URL must be http://127.0.0.1:PORT");
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof sin) == -1)
		fatal("the mock");
	snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
	    "Content-Length: 0\r\n\r\n", method, path);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		fatal("the mock");
	while (len < 65535 && (n = read(fd, out + len, 65535 - len)) > 0)
		len += (size_t)n;
	close(fd);
	return out;
}

static int
mock_held(void)
{
	char	*body = mock_call("GET", "/stats"), *p;
	int	 held = -1;

	if ((p = strstr(body, "\"held\"")) != NULL)
		held = atoi(p + strcspn(p, "0123456789"));
	free(body);
	return held;
}

/* ------------------------------------------------------------ PSS */

struct pss_sum {
	const char	*comm;
	int		 n;
	long		 pss, anon, file;
};

static void
pss_add(struct pss_sum *s, pid_t pid)
{
	s->n++;
	s->pss += proc_smaps_kb(pid, "Pss");
	s->anon += proc_smaps_kb(pid, "Pss_Anon");
	s->file += proc_smaps_kb(pid, "Pss_File");
}

static void
pss_print(const struct pss_sum *s)
{
	if (s->n == 0)
		return;
	printf("  %-14s n=%-5d PSS %8ld kB (anon %ld, file %ld); per process "
	    "%.1f kB\n", s->comm, s->n, s->pss, s->anon, s->file,
	    (double)s->pss / s->n);
}

/* The tree while every agent waits at the mock's gate. */
static void
pss_report(pid_t root, int calls)
{
	struct pss_sum	 sums[] = { { "heavyd", 0, 0, 0, 0 },
	    { "heavyd-zygote", 0, 0, 0, 0 }, { "heavyd-egress", 0, 0, 0, 0 },
	    { "heavyd-spare", 0, 0, 0, 0 }, { "heavyd-worker", 0, 0, 0, 0 } };
	struct proc	*ps;
	long		 total = 0;
	int		 n, k;

	ps = tree_list(root, &n);
	for (int i = 0; i < n; i++) {
		for (k = 1; k < 5; k++)
			if (strcmp(ps[i].comm, sums[k].comm) == 0)
				break;
		pss_add(&sums[i == 0 ? 0 : k < 5 ? k : 0], ps[i].pid);
	}
	printf("%d calls, %d agents waiting at the gate: %d processes\n",
	    calls, 4 * calls, n);
	for (k = 0; k < 5; k++) {
		pss_print(&sums[k]);
		total += sums[k].pss;
	}
	printf("  whole tree     PSS %ld kB\n", total);
	if (sums[4].n > 0)
		printf("PSS per waiting worker: %.1f kB (target <= 150 kB)\n",
		    (double)sums[4].pss / sums[4].n);
	printf("@ pss_worker_kb %.1f\n@ pss_tree_kb %ld\n",
	    sums[4].n ? (double)sums[4].pss / sums[4].n : -1.0, total);
	free(ps);
}

void
bench_pss(int calls)
{
	struct server	 s;
	int64_t		 t0;
	int		 failed;

	server_start(&s);
	server_initialize(&s);
	for (int i = 1; i <= calls; i++)
		send_orchestrate(&s, i, "cost [[agent:gate]]", 120);
	t0 = now_ms();
	while (mock_held() < 4 * calls) {
		if (now_ms() - t0 > 60000)
			fatalx("bench pss: %d of %d agents at the gate after "
			    "60 s", mock_held(), 4 * calls);
		usleep(20 * 1000);
	}
	usleep(500 * 1000);	/* the zygote's spares refilled, settled */
	pss_report(s.pid, calls);
	free(mock_call("POST", "/open"));
	failed = await_results(&s, calls, NULL);
	free(mock_call("POST", "/reset"));
	server_stop(&s);
	printf("  then the gate opened: %d of %d calls failed\n", failed,
	    calls);
}

/* ------------------------------------------------------------ CPU */

static double
rusage_children_ms(void)
{
	struct rusage	ru;

	getrusage(RUSAGE_CHILDREN, &ru);
	return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
	    ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}

/* utime+stime, and cutime+cstime, of one process, in ms. */
static void
proc_cpu_ms(pid_t pid, double *self, double *kids)
{
	char			 buf[1024], *p;
	unsigned long long	 ut, st;
	long long		 cut, cst;
	double			 tick = 1e3 / (double)sysconf(_SC_CLK_TCK);

	*self = *kids = 0;
	if (proc_read(pid, "stat", buf, sizeof buf) == -1 ||
	    (p = strrchr(buf, ')')) == NULL || sscanf(p + 2,
	    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
	    &ut, &st, &cut, &cst) != 4)
		return;
	*self = (double)(ut + st) * tick;
	*kids = (double)(cut + cst) * tick;
}

struct cpu_split {
	double	total, heavyd, zygote, workers, egress;
};

/* By process, from /proc, while the server still runs. */
static void
cpu_split_read(pid_t root, struct cpu_split *c)
{
	struct proc	*ps;
	double		 self, kids;
	int		 n;

	proc_cpu_ms(root, &c->heavyd, &kids);
	ps = tree_list(root, &n);
	for (int i = 1; i < n; i++) {
		proc_cpu_ms(ps[i].pid, &self, &kids);
		if (strcmp(ps[i].comm, "heavyd-zygote") == 0) {
			c->zygote += self;
			c->workers += kids;
		} else if (strcmp(ps[i].comm, "heavyd-egress") == 0)
			c->egress += self;
		else if (ps[i].ppid != root ||
		    strcmp(ps[i].comm, "heavyd-worker") == 0)
			c->workers += self;	/* live workers and spares */
	}
	free(ps);
}

/* Reaps every child: the server and whatever it left to us. */
static void
reap_all(void)
{
	while (waitpid(-1, NULL, 0) != -1 || errno == EINTR)
		;
}

/* One server: n calls, conc at a time, then stopped; the tree's CPU. */
static void
cpu_run(int n, int conc, struct cpu_split *c)
{
	struct server	 s;
	double		 before = rusage_children_ms();
	int		 sent = 0, failed = 0, batch;

	memset(c, 0, sizeof *c);
	server_start(&s);
	server_initialize(&s);
	while (sent < n) {
		batch = n - sent < conc ? n - sent : conc;
		for (int i = 0; i < batch; i++)
			send_orchestrate(&s, ++sent, "cost query", 60);
		failed += await_results(&s, batch, NULL);
	}
	usleep(300 * 1000);	/* the last workers reaped, spares refilled */
	cpu_split_read(s.pid, c);
	server_stop(&s);
	reap_all();
	c->total = rusage_children_ms() - before;
	if (failed > 0)
		fatalx("bench cpu: %d of %d calls failed", failed, n);
}

void
bench_cpu(int n, int conc, int base_runs)
{
	struct cpu_split	 b = { 0 }, one, l;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		fatal("PR_SET_CHILD_SUBREAPER");
	for (int i = 0; i < base_runs; i++) {	/* a server that serves nothing */
		cpu_run(0, 1, &one);
		b.total += one.total / base_runs;
		b.heavyd += one.heavyd / base_runs;
		b.zygote += one.zygote / base_runs;
		b.workers += one.workers / base_runs;
		b.egress += one.egress / base_runs;
	}
	cpu_run(n, conc, &l);
	printf("%d 4-agent calls, %d at a time: whole tree %.1f ms of CPU, "
	    "a server serving nothing %.1f ms (mean of %d)\n", n, conc, l.total,
	    b.total, base_runs);
	printf("  per orchestration: heavyd %.2f, zygote %.2f, workers and "
	    "spares %.2f, egress %.2f ms (from /proc, 10 ms ticks)\n",
	    (l.heavyd - b.heavyd) / n, (l.zygote - b.zygote) / n,
	    (l.workers - b.workers) / n, (l.egress - b.egress) / n);
	printf("CPU per orchestration, whole process tree: %.2f ms (target "
	    "<= 5 ms)\n@ cpu_per_orch_ms %.3f\n", (l.total - b.total) / n,
	    (l.total - b.total) / n);
}

/* ------------------------------------------------------------ sampling */

/* A child that samples the tree's PSS every second and reports its peak
 * when told to stop: the memory of a whole run under load. */
static pid_t	sampler_pid;
static int	sampler_fd;

static volatile sig_atomic_t	sampler_done;

static void
sampler_sigterm(int sig)
{
	(void)sig;
	sampler_done = 1;
}

void
sampler_start(pid_t root)
{
	long	peak = 0, kb;
	int	p[2], n, peak_n = 0;
	char	line[64];

	if (pipe2(p, O_CLOEXEC) == -1)
		fatal("pipe");
	if ((sampler_pid = fork()) == -1)
		fatal("fork");
	if (sampler_pid > 0) {
		close(p[1]);
		sampler_fd = p[0];
		return;
	}
	close(p[0]);
	signal(SIGTERM, sampler_sigterm);
	while (!sampler_done) {
		if ((kb = tree_pss_kb(root, &n)) > peak) {
			peak = kb;
			peak_n = n;
		}
		usleep(500 * 1000);
	}
	snprintf(line, sizeof line, "%ld %d\n", peak, peak_n);
	_exit(write(p[1], line, strlen(line)) > 0 ? 0 : 1);
}

long
sampler_stop(int *nprocs)
{
	char	line[64] = "";
	long	peak = -1;

	kill(sampler_pid, SIGTERM);
	if (read(sampler_fd, line, sizeof line - 1) > 0)
		sscanf(line, "%ld %d", &peak, nprocs);
	close(sampler_fd);
	waitpid(sampler_pid, NULL, 0);
	return peak;
}

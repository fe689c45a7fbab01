/*
 * heavyd-bench: drives build/heavyd over its stdio, as an MCP client would,
 * and prints measurements.  scripts/bench runs every scenario.
 *   bench startup N            spawn to initialize answered
 *   bench ping N               pipelined pings per second
 *   bench orchestrate N CALLS  N calls of 4 agents, CALLS at once, timed
 *                              (each with BENCH_TIMEOUT, default 60 s)
 *   bench sequential N CRIT_US N calls one after another on one server
 *   bench deadline N           tool result time for all-hanging agents
 *   bench quorum N CONC MIN [MARK [HEDGE_MS]]
 *                              N 4-agent calls, CONC at a time, with
 *                              min_agents MIN (0: wait for all): p50 and
 *                              p95 of each call's time, and the tokens;
 *                              MARK ends each query (a mock marker);
 *                              HEDGE_MS is each call's hedge_after_ms
 *   bench incremental N CONC STRATEGY [INTERVAL]
 *                              N 4-agent calls, CONC at a time, with
 *                              aggregation_strategy STRATEGY (and
 *                              incremental_interval INTERVAL, default 0):
 *                              the time to the first draft, to the first
 *                              text (that draft, else the answer) and to
 *                              the answer (heavyd's clock, p50 and p95),
 *                              the call time, and the tokens, drafts' apart
 *   bench soak N CONC          N calls on one server, CONC at a time: its
 *                              RSS, fds and zombies at the start and end
 *                              (BENCH_TREE_PSS: and the peak PSS of the
 *                              server's whole process tree)
 *   bench pss CALLS, bench cpu N CONC [BASE]
 *                              a worker's memory, the tree's CPU (cost.c)
 *   bench metrics N [SAMPLES]  N scrapes of a registry of SAMPLES series
 *                              (default 1000), in this process
 *   bench metrics-sample       such a scrape, on stdout (for promtool)
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "../../common/common.h"
#include "../../supervisor/metrics.h"
#include "bench.h"

extern char	**environ;

static const char *heavyd = "build/heavyd";

/* BENCH_SERVER, split on blanks, runs instead of heavyd (the SDK peer). */
static void
server_argv(char **argv, int max)
{
	static char	*cmd;
	const char	*v = getenv("BENCH_SERVER");
	int		 n = 0;

	argv[0] = (char *)heavyd;
	argv[1] = NULL;
	if (v == NULL || *v == '\0')
		return;
	if (cmd == NULL)
		cmd = xstrdup(v);
	else
		strcpy(cmd, v);	/* strtok wrote NULs in the last copy */
	for (char *w = strtok(cmd, " \t"); w != NULL && n < max - 1;
	    w = strtok(NULL, " \t"))
		argv[n++] = w;
	argv[n] = NULL;
}

void
server_start(struct server *s)
{
	posix_spawn_file_actions_t	fa;
	int				in[2], out[2];
	char				*argv[16];

	server_argv(argv, 16);

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		fatal("pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	/* heavyd's log lines (the startup report) are not figures. */
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&s->pid, argv[0], &fa, NULL, argv, environ) != 0)
		fatal("spawn %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	s->in = in[1];
	s->out = out[0];
	s->len = 0;
}

/* Closes stdin and waits: heavyd exits 0 on EOF. */
int
server_stop(struct server *s)
{
	int	status;

	close(s->in);
	close(s->out);
	waitpid(s->pid, &status, 0);
	return status;
}

void
server_write(struct server *s, const char *line)
{
	size_t	len = strlen(line);

	if (write(s->in, line, len) != (ssize_t)len)
		fatal("write");
}

/* Reads one line into a malloc'd string; NULL at EOF. */
char *
server_read_line(struct server *s)
{
	char	*nl, *line;
	ssize_t	 n;

	for (;;) {
		if ((nl = memchr(s->buf, '\n', s->len)) != NULL) {
			line = xstrndup(s->buf, (size_t)(nl - s->buf));
			s->len -= (size_t)(nl - s->buf) + 1;
			memmove(s->buf, nl + 1, s->len);
			return line;
		}
		if (s->len == sizeof s->buf)
			fatalx("line too long");
		n = read(s->out, s->buf + s->len, sizeof s->buf - s->len);
		if (n <= 0)
			return NULL;
		s->len += (size_t)n;
	}
}

/* Reads lines until the response to id arrives; skips notifications. */
struct json_object *
server_response(struct server *s, int id)
{
	struct json_object	*msg, *v;
	char			*line;

	while ((line = server_read_line(s)) != NULL) {
		msg = json_tokener_parse(line);
		free(line);
		if (json_object_object_get_ex(msg, "id", &v) &&
		    json_object_get_int(v) == id)
			return msg;
		json_object_put(msg);
	}
	fatalx("server closed its stdout");
}

static const char *init_line = "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":"
    "\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\","
    "\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":"
    "\"1\"}}}\n";

void
server_initialize(struct server *s)
{
	server_write(s, init_line);
	json_object_put(server_response(s, 0));
	server_write(s, "{\"jsonrpc\":\"2.0\",\"method\":"
	    "\"notifications/initialized\"}\n");
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t	x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void
report(const char *what, int64_t *us, int n)
{
	qsort(us, (size_t)n, sizeof *us, cmp_i64);
	printf("%s: n=%d median=%.3f ms p90=%.3f ms min=%.3f ms max=%.3f ms\n",
	    what, n, us[n / 2] / 1000.0, us[n * 9 / 10] / 1000.0,
	    us[0] / 1000.0, us[n - 1] / 1000.0);
}

static void
bench_startup(int n)
{
	struct server	s;
	int64_t		*us = xcalloc((size_t)n, sizeof *us), t0;

	for (int i = 0; i < n; i++) {
		t0 = now_us();
		server_start(&s);
		server_write(&s, init_line);
		json_object_put(server_response(&s, 0));
		us[i] = now_us() - t0;
		server_stop(&s);
	}
	report("spawn to initialize answered", us, n);
	free(us);
}

/* Writes all pings from a child so the pipe never deadlocks both ways. */
static void
bench_ping(int n)
{
	struct server	 s;
	char		*line;
	int64_t		 t0, dt;
	pid_t		 writer;
	int		 got = 0;

	server_start(&s);
	server_initialize(&s);
	t0 = now_us();
	if ((writer = fork()) == 0) {
		char	chunk[1 << 16];
		size_t	len = 0;

		for (int i = 1; i <= n; i++) {
			len += (size_t)snprintf(chunk + len, sizeof chunk - len,
			    "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}\n",
			    i);
			if (len > sizeof chunk - 128 || i == n) {
				if (write(s.in, chunk, len) != (ssize_t)len)
					_exit(1);
				len = 0;
			}
		}
		_exit(0);
	}
	while (got < n && (line = server_read_line(&s)) != NULL) {
		got += strstr(line, "\"result\"") != NULL;
		free(line);
	}
	dt = now_us() - t0;
	waitpid(writer, NULL, 0);
	printf("pipelined ping: %d in %.1f ms = %.0f per second\n", got,
	    dt / 1000.0, got / (dt / 1e6));
	server_stop(&s);
}

static long
server_peak_rss_kb(struct server *s)
{
	char	path[64], line[256];
	long	kb = -1;
	FILE	*f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

void
send_orchestrate(struct server *s, int id, const char *query, int timeout)
{
	char	line[512];

	snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
	    "\"tools/call\",\"params\":{\"name\":\"heavy_orchestrate\","
	    "\"arguments\":{\"query\":\"%s\",\"num_agents\":4,\"timeout\":%d}}}\n",
	    id, query, timeout);
	server_write(s, line);
}

/* Counts responses until `calls` have arrived; returns how many failed. */
int
await_results(struct server *s, int calls, int64_t *task_ms)
{
	struct json_object	*msg, *res, *v, *sc;
	char			*line;
	int			 got = 0, failed = 0;

	while (got < calls && (line = server_read_line(s)) != NULL) {
		msg = json_tokener_parse(line);
		free(line);
		if (json_object_object_get_ex(msg, "result", &res) &&
		    json_object_object_get_ex(msg, "id", &v)) {
			got++;
			if (!json_object_object_get_ex(res, "isError", &v) ||
			    json_object_get_boolean(v))
				failed++;
			if (task_ms != NULL &&
			    json_object_object_get_ex(res, "structuredContent",
			    &sc) && json_object_object_get_ex(sc, "elapsed_ms", &v))
				*task_ms = json_object_get_int64(v);
		}
		json_object_put(msg);
	}
	return failed + (calls - got);
}

/* runs x CALLS concurrent 4-agent orchestrations, each on a fresh server. */
static void
bench_orchestrate(int runs, int calls, int critical_ms)
{
	struct server	 s;
	int64_t		*us = xcalloc((size_t)runs, sizeof *us), t0;
	int		 failed = 0;
	long		 rss = 0;

	const char	*v = getenv("BENCH_TIMEOUT");
	int		 timeout = v != NULL && atoi(v) > 0 ? atoi(v) : 60;

	bool		 tree = getenv("BENCH_TREE_PSS") != NULL;
	long		 pss = 0, kb;
	int		 nprocs = 0, np;

	for (int r = 0; r < runs; r++) {
		server_start(&s);
		server_initialize(&s);
		if (tree)
			sampler_start(s.pid);
		t0 = now_us();
		for (int i = 1; i <= calls; i++)
			send_orchestrate(&s, i, "bench query", timeout);
		failed += await_results(&s, calls, NULL);
		us[r] = now_us() - t0 - (int64_t)critical_ms * 1000;
		if (tree && (kb = sampler_stop(&np)) > pss) {
			pss = kb;
			nprocs = np;
		}
		if (server_peak_rss_kb(&s) > rss)
			rss = server_peak_rss_kb(&s);
		server_stop(&s);
	}
	printf("%d x %d concurrent 4-agent orchestrations: failed=%d "
	    "supervisor peak RSS=%.1f MB\n", runs, calls, failed, rss / 1024.0);
	if (tree)	/* sampled every 0.5 s */
		printf("  whole process tree: peak PSS %.1f MB (%d processes)\n"
		    "@ tree_pss_kb %ld\n@ server_hwm_kb %ld\n", pss / 1024.0,
		    nprocs, pss, rss);
	report(critical_ms ? "  first call, over the critical path" :
	    "  wall time", us, runs);
	free(us);
}

/* Sends call i (1-based) of the quorum run.  Its number rides in a marker
 * that the mock copies into every step's text, so each call meets its own
 * latencies, the same ones in every run of one seed. */
static const char	*quorum_mark = "";
static int		 quorum_hedge_ms;	/* hedge_after_ms; 0: none */

static void
send_quorum_call(struct server *s, int i, int min_agents)
{
	char	line[1024];

	snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
	    "\"tools/call\",\"params\":{\"name\":\"heavy_orchestrate\","
	    "\"arguments\":{\"query\":\"tail query [[call-%d]]%s\","
	    "\"num_agents\":4,\"hedge_after_ms\":%d,"
	    "\"timeout\":600,\"min_agents\":%d,\"straggler_grace\":0}}}\n",
	    i, i, quorum_mark, quorum_hedge_ms, min_agents);
	server_write(s, line);
}

static int64_t
json_int_at(struct json_object *o, const char *k)
{
	struct json_object	*v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) :
	    0;
}

/* One response of the quorum run: its failure, cut agents, tokens
 * (tokens[0]) and hedges (tokens[1]: hedged calls, [2]: hedges won). */
static int
quorum_result(struct json_object *msg, int64_t *tokens, int *cut)
{
	struct json_object	*res, *v, *sc, *u;

	if (!json_object_object_get_ex(msg, "result", &res))
		return 1;
	if (json_object_object_get_ex(res, "structuredContent", &sc)) {
		if (json_object_object_get_ex(sc, "usage", &u)) {
			tokens[0] += json_int_at(u, "total_tokens");
			tokens[1] += json_int_at(u, "hedged_calls");
			tokens[2] += json_int_at(u, "hedges_won");
		}
		if (json_object_object_get_ex(sc, "cut_for_latency", &v))
			*cut += (int)json_object_array_length(v);
	}
	return !json_object_object_get_ex(res, "isError", &v) ||
	    json_object_get_boolean(v);
}

/*
 * n calls on one server, conc at a time, against a heavy-tailed mock:
 * each call's time from its request to its response, on this clock.
 */
static void
bench_quorum(int n, int conc, int min_agents)
{
	struct server		 s;
	struct json_object	*msg, *v;
	int64_t			*us = xcalloc((size_t)n, sizeof *us);
	int64_t			*t0 = xcalloc((size_t)n + 1, sizeof *t0);
	int64_t			 tokens[3] = { 0 }, start;
	int			 sent = 0, got = 0, failed = 0, cut = 0, id;
	char			*line;

	server_start(&s);
	server_initialize(&s);
	start = now_us();
	while (got < n) {
		while (sent < n && sent - got < conc) {
			t0[++sent] = now_us();
			send_quorum_call(&s, sent, min_agents);
		}
		if ((line = server_read_line(&s)) == NULL)
			fatalx("server closed its stdout");
		msg = json_tokener_parse(line);
		free(line);
		if (json_object_object_get_ex(msg, "id", &v) &&
		    (id = json_object_get_int(v)) >= 1 && id <= n) {
			us[got++] = now_us() - t0[id];
			failed += quorum_result(msg, tokens, &cut);
		}
		json_object_put(msg);
	}
	printf("%d 4-agent calls, %d at a time, min_agents %d, hedge_after_ms "
	    "%d: failed=%d cut=%d tokens=%lld hedged=%lld won=%lld "
	    "wall=%.1f s\n", n, conc, min_agents, quorum_hedge_ms, failed, cut,
	    (long long)tokens[0], (long long)tokens[1], (long long)tokens[2],
	    (now_us() - start) / 1e6);
	qsort(us, (size_t)n, sizeof *us, cmp_i64);
	printf("  call time: p50=%.0f ms p95=%.0f ms max=%.0f ms\n",
	    us[n / 2] / 1000.0, us[n * 95 / 100] / 1000.0, us[n - 1] / 1000.0);
	server_stop(&s);
	free(us);
	free(t0);
}

/* What the incremental run keeps of each call, in ms (-1: none). */
struct incr_stats {
	int64_t	*first, *answer, *call, *text;	/* text: the first text
						   a client can show */
	int	 nfirst, n, failed;
	int64_t	 tokens, draft_tokens, drafts;
};

/* Call i of the incremental run: as the quorum run's, with a strategy. */
static void
send_incr_call(struct server *s, int i, const char *strategy,
    double interval)
{
	char	line[1024];

	snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
	    "\"tools/call\",\"params\":{\"name\":\"heavy_orchestrate\","
	    "\"arguments\":{\"query\":\"tail query [[call-%d]]\","
	    "\"num_agents\":4,\"timeout\":600,\"aggregation_strategy\":"
	    "\"%s\",\"incremental_interval\":%g}}}\n", i, i, strategy,
	    interval);
	server_write(s, line);
}

static int64_t
json_path_int(struct json_object *o, const char *a, const char *b)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, a, &v) || (b != NULL &&
	    !json_object_object_get_ex(v, b, &v)) || v == NULL)
		return -1;
	return json_object_get_int64(v);
}

static void
incr_result(struct json_object *msg, struct incr_stats *st)
{
	struct json_object	*res, *sc, *v;
	int64_t			 first;

	if (!json_object_object_get_ex(msg, "result", &res) ||
	    !json_object_object_get_ex(res, "structuredContent", &sc) ||
	    (json_object_object_get_ex(res, "isError", &v) &&
	    json_object_get_boolean(v))) {
		st->failed++;
		return;
	}
	st->tokens += json_path_int(sc, "usage", "total_tokens");
	st->answer[st->n - 1] = json_path_int(sc, "elapsed_ms", NULL);
	st->text[st->n - 1] = st->answer[st->n - 1];
	if (!json_object_object_get_ex(sc, "drafts", &v))
		return;
	st->draft_tokens += json_path_int(sc, "drafts", "tokens");
	st->drafts += json_path_int(sc, "drafts", "calls");
	if ((first = json_path_int(sc, "drafts", "first_draft_ms")) >= 0) {
		st->first[st->nfirst++] = first;
		st->text[st->n - 1] = first;
	}
}

static void
incr_report(const char *what, int64_t *v, int n)
{
	if (n == 0) {
		printf("  %s: none\n", what);
		return;
	}
	qsort(v, (size_t)n, sizeof *v, cmp_i64);
	printf("  %s: p50=%lld ms p95=%lld ms (n=%d)\n", what,
	    (long long)v[n / 2], (long long)v[n * 95 / 100], n);
}

/*
 * n calls on one server, conc at a time: heavyd's time from a task's start
 * to its first draft and to its answer, the client's time per call, and
 * the tokens, with the drafts' apart.
 */
static void
bench_incremental(int n, int conc, const char *strategy, double interval)
{
	struct incr_stats	 st = { 0 };
	struct server		 s;
	struct json_object	*msg, *v;
	int64_t			*t0 = xcalloc((size_t)n + 1, sizeof *t0);
	int			 sent = 0, id;
	char			*line;

	st.first = xcalloc((size_t)n, sizeof *st.first);
	st.answer = xcalloc((size_t)n, sizeof *st.answer);
	st.call = xcalloc((size_t)n, sizeof *st.call);
	st.text = xcalloc((size_t)n, sizeof *st.text);
	server_start(&s);
	server_initialize(&s);
	while (st.n < n) {
		while (sent < n && sent - st.n < conc) {
			t0[++sent] = now_us();
			send_incr_call(&s, sent, strategy, interval);
		}
		if ((line = server_read_line(&s)) == NULL)
			fatalx("server closed its stdout");
		msg = json_tokener_parse(line);
		free(line);
		if (json_object_object_get_ex(msg, "id", &v) &&
		    (id = json_object_get_int(v)) >= 1 && id <= n) {
			st.call[st.n++] = (now_us() - t0[id]) / 1000;
			incr_result(msg, &st);
		}
		json_object_put(msg);
	}
	printf("%d 4-agent calls, %d at a time, %s: failed=%d tokens=%lld "
	    "drafts=%lld draft_tokens=%lld\n", n, conc, strategy, st.failed,
	    (long long)st.tokens, (long long)st.drafts,
	    (long long)st.draft_tokens);
	incr_report("first draft", st.first, st.nfirst);
	incr_report("first text ", st.text, st.n);
	incr_report("answer     ", st.answer, st.n);
	incr_report("call time  ", st.call, st.n);
	server_stop(&s);
	free(st.first);
	free(st.answer);
	free(st.call);
	free(st.text);
	free(t0);
}

/* One server, one call after another: the steady state a client sees.
 * critical_us is the critical path as measured against this mock. */
static void
bench_sequential(int runs, int64_t critical_us)
{
	struct server	 s;
	int64_t		*us = xcalloc((size_t)runs, sizeof *us), t0;
	int		 failed = 0;

	server_start(&s);
	server_initialize(&s);
	send_orchestrate(&s, 1, "warm-up", 60);
	failed += await_results(&s, 1, NULL);
	for (int r = 0; r < runs; r++) {
		t0 = now_us();
		send_orchestrate(&s, r + 2, "bench query", 60);
		failed += await_results(&s, 1, NULL);
		us[r] = now_us() - t0 - critical_us;
	}
	server_stop(&s);
	printf("%d sequential 4-agent orchestrations on one server: "
	    "failed=%d\n", runs, failed);
	report("  over the critical path", us, runs);
	free(us);
}

/* Every agent hangs; agents die at T - T/4 = 3 s into a 4 s call. */
static void
bench_deadline(int runs)
{
	struct server	 s;
	int64_t		*us = xcalloc((size_t)runs, sizeof *us), task_ms = 0;
	int64_t		*in = xcalloc((size_t)runs, sizeof *in), t0;

	for (int r = 0; r < runs; r++) {
		server_start(&s);
		server_initialize(&s);
		t0 = now_us();
		send_orchestrate(&s, 1, "[[agent:hang]]", 4);
		await_results(&s, 1, &task_ms);
		us[r] = now_us() - t0 - 3000000;
		in[r] = (task_ms - 3000) * 1000;
		server_stop(&s);
	}
	report("deadline to tool result, client clock", us, runs);
	report("deadline to last worker reaped, server clock (1 ms steps)",
	    in, runs);
	free(us);
	free(in);
}

static long
server_status_kb(struct server *s, const char *key)
{
	char	path[64], line[256];
	long	kb = -1;
	size_t	len = strlen(key);
	FILE	*f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, key, len) == 0 && line[len] == ':') {
			kb = atol(line + len + 1);
			break;
		}
	fclose(f);
	return kb;
}

static int
server_fds(struct server *s)
{
	char		 path[64];
	struct dirent	*d;
	DIR		*dir;
	int		 n = 0;

	snprintf(path, sizeof path, "/proc/%d/fd", (int)s->pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL)
		n += d->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* The server's descendants, and how many of them are zombies. */
static int
server_descendants(struct server *s, int *zombies)
{
	enum { MAXP = 1 << 16 };
	static pid_t	 ppid[MAXP];
	static char	 state[MAXP];
	static bool	 mine[MAXP];
	char		 path[64], buf[512], *p;
	struct dirent	*d;
	DIR		*dir = opendir("/proc");
	int		 n = 0, fd, changed = 1;
	pid_t		 pid;
	ssize_t		 len;

	memset(ppid, 0, sizeof ppid);
	while (dir != NULL && (d = readdir(dir)) != NULL) {
		if ((pid = atoi(d->d_name)) <= 0 || pid >= MAXP)
			continue;
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		if ((fd = open(path, O_RDONLY)) == -1)
			continue;
		len = read(fd, buf, sizeof buf - 1);
		close(fd);
		buf[len > 0 ? len : 0] = '\0';
		if ((p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 2, "%c %d", &state[pid], &ppid[pid]) == 2)
			continue;
		ppid[pid] = 0;
	}
	if (dir != NULL)
		closedir(dir);
	memset(mine, 0, sizeof mine);
	mine[s->pid] = true;
	while (changed) {		/* until no new descendant turns up */
		changed = 0;
		for (pid = 1; pid < MAXP; pid++)
			if (!mine[pid] && ppid[pid] > 0 && mine[ppid[pid]]) {
				mine[pid] = true;
				changed = 1;
			}
	}
	*zombies = 0;
	for (pid = 1; pid < MAXP; pid++)
		if (mine[pid] && pid != s->pid) {
			n++;
			*zombies += state[pid] == 'Z';
		}
	return n;
}

/*
 * One server, n orchestrations, conc in flight at a time: the server must
 * end within a small bound of where it started, with no zombie left.
 */
static int
bench_soak(int n, int conc)
{
	struct server	 s;
	long		 rss0, rss1 = -1, rss2;
	int		 fd0, fd1 = -1, fd2, sent = 0, failed = 0, batch;
	int		 warm = n / 100 > conc ? n / 100 : conc, kids = 0, zombies = 0;
	int64_t		 t0;

	server_start(&s);
	server_initialize(&s);
	usleep(200 * 1000);		/* the zygote and its spares */
	rss0 = server_status_kb(&s, "VmRSS");
	fd0 = server_fds(&s);
	t0 = now_us();
	while (sent < n) {
		batch = n - sent < conc ? n - sent : conc;
		for (int i = 0; i < batch; i++)
			send_orchestrate(&s, ++sent, "soak query", 60);
		failed += await_results(&s, batch, NULL);
		if (rss1 == -1 && sent >= warm) {
			rss1 = server_status_kb(&s, "VmRSS");
			fd1 = server_fds(&s);
		}
		if (sent % 1000 == 0)
			fprintf(stderr, "soak: %d done, RSS %ld kB, %d fds\n",
			    sent, server_status_kb(&s, "VmRSS"), server_fds(&s));
	}
	printf("soak: %d 4-agent orchestrations, %d at a time, on one server "
	    "in %.1f s: failed=%d\n", n, conc, (now_us() - t0) / 1e6, failed);
	for (int i = 0; i < 100; i++) {	/* the last exits, reaps, closes */
		kids = server_descendants(&s, &zombies);
		if (zombies == 0 && server_fds(&s) <= fd0)
			break;
		usleep(20 * 1000);
	}
	rss2 = server_status_kb(&s, "VmRSS");
	fd2 = server_fds(&s);
	printf("  supervisor RSS: %ld kB at the start, %ld kB after %d calls, "
	    "%ld kB at the end (peak %ld kB)\n", rss0, rss1, warm, rss2,
	    server_status_kb(&s, "VmHWM"));
	printf("  supervisor open fds: %d at the start, %d after warm-up, %d at "
	    "the end\n", fd0, fd1, fd2);
	printf("  at the end: %d descendants (zygote and spares), %d zombies\n",
	    kids, zombies);
	server_stop(&s);
	/* Bounds: fds back where they were, RSS within 2 MiB of the
	 * warmed-up server, nothing left unreaped. */
	return failed == 0 && fd2 == fd0 && rss2 - rss1 <= 2048 &&
	    zombies == 0 ? 0 : 1;
}

/*
 * A registry as a busy heavyd has it, through the calls heavyd makes:
 * tasks of both tools, workers in every state, requests to many models
 * (one with a quote and a backslash in its id) with every outcome, HTTP
 * requests, store writes; models are added until it has `samples` series
 * (each histogram bucket is one).
 */
static void
metrics_fill(size_t samples)
{
	static const char	*outcomes[] = { "2xx", "4xx", "5xx",
	    "transport_error", "connect_error", "invalid_response" };
	static const char	*causes[] = { "ok", "failed", "deadline",
	    "cancel", "crash" };
	static const char	*ops[] = { "insert", "put", "update", "begin",
	    "commit", "sweep" };
	static const char	*methods[] = { "GET", "POST", "DELETE" };
	static const int	 codes[] = { 200, 202, 400, 401, 404, 429, 503 };
	struct metrics_llm	 m = { 0 };
	char			 model[64];

	metrics_init(4096, "bench");
	for (int i = 0; i < 50; i++) {
		metrics_task_started(i % 3 ? "heavy_orchestrate" :
		    "grok_heavy_orchestrate");
		metrics_task_ended(i % 3 ? "heavy_orchestrate" :
		    "grok_heavy_orchestrate", i % 5 ? "completed" : "failed");
		metrics_worker_exit(causes[i % 5]);
		metrics_store_write(ops[i % 6], 40 + i * 97, i % 17 != 0);
		metrics_http_request(methods[i % 3], codes[i % 7]);
	}
	metrics_tasks_running(12);
	metrics_worker_move(NULL, "running");
	metrics_budget_stop("tokens");
	metrics_zygote_up(true);
	metrics_zygote_spares(4);
	metrics_sessions(3);
	metrics_sse_streams(2);
	for (int k = 0; metrics_samples() < samples; k++) {
		if (k == 0)
			snprintf(model, sizeof model, "vendor/\"odd\\model\"");
		else
			snprintf(model, sizeof model, "vendor-%d/model-%d-instruct",
			    k % 7, k);
		m.model = model;
		for (int i = 0; i < 12 && metrics_samples() < samples; i++) {
			m.outcome = outcomes[i % 6];
			m.retry = i >= 6;
			m.duration_us = 30000 + (int64_t)i * 700000 + k;
			m.prompt_tokens = 900 + (uint64_t)i;
			m.completion_tokens = 300;
			m.cost_micro_usd = 1234;
			m.retries = m.retry;
			metrics_llm_request(&m);
		}
	}
}

/* The time of one scrape into a fresh evbuffer, as a server would. */
static void
bench_metrics(int n, size_t samples)
{
	int64_t		*us = xcalloc((size_t)n, sizeof *us), t0;
	struct evbuffer	*evb;
	size_t		 bytes = 0;
	char		 what[128];

	metrics_fill(samples);
	for (int i = 0; i < n; i++) {
		t0 = now_us();
		evb = evbuffer_new();
		metrics_render(evb);
		bytes = evbuffer_get_length(evb);
		evbuffer_free(evb);
		us[i] = now_us() - t0;
	}
	snprintf(what, sizeof what, "metrics scrape, %zu series, %zu bytes",
	    metrics_samples(), bytes);
	report(what, us, n);
	metrics_free();
	free(us);
}

static void
bench_metrics_sample(void)
{
	struct evbuffer	*evb = evbuffer_new();

	metrics_fill(1000);
	metrics_render(evb);
	while (evbuffer_get_length(evb) > 0)
		if (evbuffer_write(evb, STDOUT_FILENO) == -1)
			fatal("stdout");
	evbuffer_free(evb);
	metrics_free();
}

int
main(int argc, char **argv)
{
	int	n = argc > 2 ? atoi(argv[2]) : 10;

	log_init("heavyd-bench", LOG_LVL_INFO);
	signal(SIGPIPE, SIG_IGN);
	if (getenv("HEAVYD") != NULL)
		heavyd = getenv("HEAVYD");
	if (argc < 2)
		fatalx("usage: bench startup|ping|orchestrate|sequential|deadline|"
		    "soak|metrics|metrics-sample|quorum|incremental|pss|cpu [N ...]");
	if (strcmp(argv[1], "startup") == 0)
		bench_startup(n);
	else if (strcmp(argv[1], "ping") == 0)
		bench_ping(n);
	else if (strcmp(argv[1], "orchestrate") == 0)
		bench_orchestrate(n, argc > 3 ? atoi(argv[3]) : 1,
		    argc > 4 ? atoi(argv[4]) : 0);
	else if (strcmp(argv[1], "sequential") == 0)
		bench_sequential(n, argc > 3 ? atoll(argv[3]) : 0);
	else if (strcmp(argv[1], "deadline") == 0)
		bench_deadline(n);
	else if (strcmp(argv[1], "quorum") == 0 && (quorum_mark = argc > 5 ?
	    argv[5] : "") != NULL && (quorum_hedge_ms = argc > 6 ?
	    atoi(argv[6]) : 0) >= 0)
		bench_quorum(n, argc > 3 ? atoi(argv[3]) : 10,
		    argc > 4 ? atoi(argv[4]) : 0);
	else if (strcmp(argv[1], "incremental") == 0 && argc > 4)
		bench_incremental(n, atoi(argv[3]), argv[4],
		    argc > 5 ? atof(argv[5]) : 0);
	else if (strcmp(argv[1], "soak") == 0)
		return bench_soak(n, argc > 3 ? atoi(argv[3]) : 50);
	else if (strcmp(argv[1], "pss") == 0)
		bench_pss(n);
	else if (strcmp(argv[1], "cpu") == 0)
		bench_cpu(n, argc > 3 ? atoi(argv[3]) : 10,
		    argc > 4 ? atoi(argv[4]) : 3);
	else if (strcmp(argv[1], "metrics") == 0)
		bench_metrics(n, argc > 3 ? (size_t)atoi(argv[3]) : 1000);
	else if (strcmp(argv[1], "metrics-sample") == 0)
		bench_metrics_sample();
	else
		fatalx("unknown scenario %s", argv[1]);
	return 0;
}

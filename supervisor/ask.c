/*
 * heavyd ask "query": one orchestration from the shell, in this process,
 * with the server's configuration, key handling, zygote and workers but
 * no MCP.  On a terminal, stderr shows one line per agent, redrawn in
 * place; on a pipe, short progress lines only.  The answer goes to stdout.
 * Exit codes: 0 answered, 1 the LLM calls or the configuration failed,
 * 2 usage, 124 every agent that failed ran out of time, 128+N signal N.
 */
#include <sys/ioctl.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"

#define ASK_REDRAW_MS	100

static struct {
	const char		*num_agents, *timeout, *model, *strategy;
	char			*query;
	bool			 json;
	struct task		*task;
	struct task_result	*result;
	bool			 live;		/* redraw on a terminal */
	int			 drawn;		/* lines drawn last time */
	struct event		*redraw;
	int64_t			 start_ms;
} ask;

static void __attribute__((noreturn))
ask_usage(int status, const char *fmt, const char *arg)
{
	if (fmt != NULL) {
		fprintf(stderr, "heavyd ask: ");
		fprintf(stderr, fmt, arg);
		fprintf(stderr, "\n");
	}
	fprintf(status ? stderr : stdout,
	    "usage: heavyd [--config FILE] ask [--num-agents N] [--timeout S] "
	    "[--model M]\n"
	    "                  [--strategy consensus|ranked|best|incremental] [--json] "
	    "\"query\"\n"
	    "Runs one orchestration and prints the answer.  Exit status: 0 "
	    "answered,\n"
	    "1 the LLM calls or the configuration failed, 2 usage, 124 timed "
	    "out,\n"
	    "128+N killed by signal N (130 for SIGINT).\n");
	exit(status);
}

/* "--name VALUE" or "--name=VALUE"; NULL when argv[*i] is not --name. */
static const char *
ask_value(int argc, char **argv, int *i, const char *name)
{
	size_t	len = strlen(name);

	if (strncmp(argv[*i], name, len) != 0)
		return NULL;
	if (argv[*i][len] == '=')
		return argv[*i] + len + 1;
	if (argv[*i][len] != '\0')
		return NULL;
	if (*i + 1 >= argc)
		ask_usage(ASK_EXIT_USAGE, "%s needs a value", name);
	return argv[++*i];
}

static void
ask_check_options(void)
{
	char	*end;
	long	 n;
	double	 d;

	if (ask.num_agents != NULL) {
		n = strtol(ask.num_agents, &end, 10);
		if (!config_number_start(ask.num_agents) || *end != '\0' ||
		    n < 1 || n > HEAVY_MAX_AGENTS)
			ask_usage(ASK_EXIT_USAGE, "--num-agents: expected an "
			    "integer from 1 to 16, got \"%s\"", ask.num_agents);
	}
	if (ask.timeout != NULL) {
		d = strtod(ask.timeout, &end);
		if (!config_number_start(ask.timeout) || *end != '\0' ||
		    !(d >= 1) || d > 86400)
			ask_usage(ASK_EXIT_USAGE, "--timeout: expected seconds "
			    "from 1 to 86400, got \"%s\"", ask.timeout);
	}
	if (ask.strategy != NULL && config_strategy(ask.strategy) == -1)
		ask_usage(ASK_EXIT_USAGE, "--strategy: expected consensus, "
		    "ranked, best or incremental, got \"%s\"", ask.strategy);
	if (ask.query == NULL || strspn(ask.query, " \t\r\n") ==
	    strlen(ask.query))
		ask_usage(ASK_EXIT_USAGE, "%s", "no query given");
}

/* argv[0] is "ask".  The words left over make up the query. */
void
ask_options(int argc, char **argv, const char **config)
{
	struct buf	 q;
	const char	*v;
	bool		 words = false;

	buf_init(&q, 0);
	for (int i = 1; i < argc; i++) {
		if (!words && strcmp(argv[i], "--") == 0)
			words = true;
		else if (words || argv[i][0] != '-' || argv[i][1] == '\0')
			buf_printf(&q, "%s%s", q.len ? " " : "", argv[i]);
		else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			ask_usage(0, NULL, NULL);
		else if (strcmp(argv[i], "--json") == 0)
			ask.json = true;
		else if ((v = ask_value(argc, argv, &i, "--num-agents")))
			ask.num_agents = v;
		else if ((v = ask_value(argc, argv, &i, "--timeout")))
			ask.timeout = v;
		else if ((v = ask_value(argc, argv, &i, "--model")))
			ask.model = v;
		else if ((v = ask_value(argc, argv, &i, "--strategy")))
			ask.strategy = v;
		else if ((v = ask_value(argc, argv, &i, "--config")))
			*config = v;
		else
			ask_usage(ASK_EXIT_USAGE, "unknown option %s", argv[i]);
	}
	ask.query = q.len ? buf_release(&q) : NULL;
	buf_free(&q);
	ask_check_options();
}

/* The options as heavy_orchestrate arguments, checked by the same code. */
static int
ask_params(const struct heavy_config *cfg, struct task_params *p)
{
	struct json_object	*args = json_object_new_object();
	char			 err[256];
	int			 rc;

	json_object_object_add(args, "query", json_object_new_string(
	    ask.query));
	if (ask.num_agents != NULL)
		json_object_object_add(args, "num_agents",
		    json_object_new_int(atoi(ask.num_agents)));
	if (ask.timeout != NULL)
		json_object_object_add(args, "timeout",
		    json_object_new_double(strtod(ask.timeout, NULL)));
	if (ask.model != NULL)
		json_object_object_add(args, "model",
		    json_object_new_string(ask.model));
	rc = tool_orchestrate_args(cfg, args, p, err, sizeof err);
	json_object_put(args);
	if (rc == -1) {
		fprintf(stderr, "heavyd ask: %s\n", err);
		return -1;
	}
	if (ask.strategy != NULL)
		p->strategy = xstrdup(ask.strategy);
	return 0;
}

/* Columns of the terminal, so no line wraps and breaks the redraw. */
static int
ask_columns(void)
{
	struct winsize	ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		return ws.ws_col;
	return 80;
}

/* Adds s, cut to what is left of cols characters, without control bytes. */
static void
ask_add_fit(struct buf *line, const char *s, int cols, int *used)
{
	for (; *s != '\0' && *used < cols - 1; s++) {
		if (((unsigned char)*s & 0xc0) == 0x80) {
			buf_add(line, s, 1);	/* continues a character */
			continue;
		}
		buf_add(line, (unsigned char)*s < 0x20 ? " " : s, 1);
		(*used)++;
	}
	while (((unsigned char)*s & 0xc0) == 0x80)	/* finish the last one */
		buf_add(line, s++, 1);
}

static void
ask_agent_line(struct buf *out, const struct task_agent_view *a, int cols)
{
	struct buf	 line;
	char		 head[96];
	int		 used = 0;
	const char	*st = a->status, *detail = "";

	if (strcmp(st, "pending") == 0)
		st = "queued";
	else if (strcmp(st, "running") == 0)
		detail = a->step != NULL ? a->step : "thinking";
	else if (strcmp(st, "ok") == 0)
		st = "done";
	else
		detail = a->error != NULL ? a->error : "";
	if (strcmp(st, "queued") == 0 || strcmp(a->status, "running") == 0)
		snprintf(head, sizeof head, "  agent %-2d %-9s ", a->index, st);
	else
		snprintf(head, sizeof head, "  agent %-2d %-9s %5.1fs ",
		    a->index, strcmp(st, "timed_out") == 0 ? "timed out" :
		    strcmp(st, "cut_for_latency") == 0 ? "cut" : st,
		    a->elapsed_ms / 1000.0);
	buf_init(&line, 0);
	ask_add_fit(&line, head, cols, &used);
	ask_add_fit(&line, detail, cols, &used);
	if (a->question != NULL && used < cols - 8) {
		ask_add_fit(&line, *detail ? "  " : "", cols, &used);
		ask_add_fit(&line, a->question, cols, &used);
	}
	buf_printf(out, "\r\033[2K%s\n", buf_cstr(&line));
	buf_free(&line);
}

/* incremental: the latest draft, on one line. */
static void
ask_draft_line(struct buf *out, const struct task_draft_view *d, int cols)
{
	struct buf	 line;
	char		 head[96];
	int		 used = 0;

	snprintf(head, sizeof head, "  draft %-2d from %d of %d answers %5.1fs ",
	    d->n, d->answers, d->of, d->made_ms / 1000.0);
	buf_init(&line, 0);
	ask_add_fit(&line, head, cols, &used);
	ask_add_fit(&line, d->text, cols, &used);
	buf_printf(out, "\r\033[2K%s\n", buf_cstr(&line));
	buf_free(&line);
}

/* One header line and one line per agent, drawn over the last ones; the
 * latest draft under them, once there is one. */
static void
ask_draw(const struct task_view *v, const char *phase)
{
	struct buf	out;
	int		cols = ask_columns();

	buf_init(&out, 0);
	if (ask.drawn > 0)
		buf_printf(&out, "\033[%dA", ask.drawn);
	buf_printf(&out, "\r\033[2Kheavyd: %s, %d agent%s, %.1fs\n", phase,
	    v->num_agents, v->num_agents == 1 ? "" : "s",
	    (now_ms() - ask.start_ms) / 1000.0);
	for (int i = 0; i < v->num_agents; i++)
		ask_agent_line(&out, &v->agents[i], cols);
	ask.drawn = v->num_agents + 1;
	if (v->draft.n > 0) {
		ask_draft_line(&out, &v->draft, cols);
		ask.drawn++;
	}
	if (write(STDERR_FILENO, out.data, out.len) < 0)
		ask.live = false;	/* the terminal is gone */
	buf_free(&out);
}

static void
ask_redraw_cb(evutil_socket_t fd, short events, void *arg)
{
	struct task_view	v;

	(void)fd; (void)events; (void)arg;
	if (ask.task == NULL || !ask.live)
		return;
	task_snapshot(ask.task, &v);
	ask_draw(&v, v.phase);
}

/* On a pipe: one short line per progress message, no escape codes. */
static void
ask_progress(void *arg, double progress, double total, const char *msg)
{
	(void)arg; (void)progress; (void)total;
	if (!ask.live)
		fprintf(stderr, "[%6.1fs] %s\n", (now_ms() - ask.start_ms) /
		    1000.0, msg);
}

static void
ask_shutdown_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	server_shutdown();
}

/* The task ended (it frees itself after this): keep the result, stop. */
static void
ask_done(void *arg, const struct task_outcome *o, struct task_result *result)
{
	struct task_view	v;
	struct timeval		now = { 0, 0 };

	(void)arg; (void)o;
	if (ask.live) {
		task_snapshot(ask.task, &v);
		ask_draw(&v, "done");
	}
	ask.task = NULL;
	ask.result = result;
	event_base_once(ev_base, -1, EV_TIMEOUT, ask_shutdown_cb, NULL, &now);
}

/* At shutdown (a signal, or the task is done): kill what still runs. */
static void
ask_stop(void)
{
	struct task_view	v;

	if (ask.task != NULL) {
		if (ask.live) {
			task_snapshot(ask.task, &v);
			for (int i = 0; i < v.num_agents; i++)
				if (strcmp(v.agents[i].status, "pending") == 0 ||
				    strcmp(v.agents[i].status, "running") == 0)
					v.agents[i].status = "cancelled";
			ask_draw(&v, "interrupted");
		}
		task_cancel(ask.task);
		ask.task = NULL;
	}
	if (ask.redraw != NULL)
		event_free(ask.redraw);
	ask.redraw = NULL;
}

/* 124 when every agent that failed ran out of time, else 1. */
static int
ask_failure_code(const struct task_result *r)
{
	int	timed_out = 0;

	for (int i = 0; i < r->nagents; i++) {
		if (strcmp(r->agents[i].status, "ok") == 0)
			continue;
		if (strcmp(r->agents[i].status, "timed_out") != 0)
			return ASK_EXIT_FAILED;
		timed_out++;
	}
	return timed_out > 0 ? ASK_EXIT_TIMEOUT : ASK_EXIT_FAILED;
}

/* Prints the answer (or, with --json, the structured result). */
static int
ask_report(const struct task_result *r)
{
	struct json_object	*sc;
	char			*text = result_text(r);
	int			 rc = ASK_EXIT_OK;

	if (ask.json) {
		sc = result_structured(r);
		printf("%s\n", json_object_to_json_string_ext(sc,
		    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(sc);
	} else if (!r->failed)
		printf("%s\n", text);
	if (r->failed) {
		fprintf(stderr, "heavyd ask: %s\n", text);
		rc = ask_failure_code(r);
	}
	free(text);
	return rc;
}

int
ask_run(struct heavy_config *cfg)
{
	struct task_params	 p;
	struct timeval		 tv = { 0, ASK_REDRAW_MS * 1000 };
	int			 rc;
	char			 why[PATH_MAX + 512];

	if (getenv("HEAVY_DEBUG") == NULL)
		log_set_level(LOG_LVL_WARN);	/* stderr is for progress */
	if (ask_params(cfg, &p) == -1)
		return ASK_EXIT_USAGE;
	if (server_key_check(cfg, NULL, why, sizeof why) == -1) {
		fprintf(stderr, "heavyd ask: %s\n", why);
		task_params_clear(&p);
		free(ask.query);
		return ASK_EXIT_FAILED;
	}
	server_start(cfg, ask_stop, false);
	ask.live = isatty(STDERR_FILENO) && getenv("TERM") != NULL &&
	    strcmp(getenv("TERM"), "dumb") != 0;
	ask.start_ms = now_ms();
	if ((ask.task = task_start(cfg, &p, ask_progress, ask_done,
	    NULL)) == NULL) {
		task_params_clear(&p);
		free(ask.query);
		fprintf(stderr, "heavyd ask: the query is too long for "
		    "max_frame_bytes\n");
		event_base_once(ev_base, -1, EV_TIMEOUT, ask_shutdown_cb, NULL,
		    &tv);
		server_loop(NULL);
		return ASK_EXIT_USAGE;
	}
	if (ask.live) {
		ask.redraw = event_new(ev_base, -1, EV_PERSIST, ask_redraw_cb,
		    NULL);
		event_add(ask.redraw, &tv);
		ask_redraw_cb(-1, 0, NULL);
	}
	server_loop(NULL);
	free(ask.query);
	if (ask.result == NULL) {
		fprintf(stderr, "heavyd ask: interrupted by %s; the workers "
		    "were killed\n", signal_name(server_signal()));
		return 128 + (server_signal() ? server_signal() : SIGTERM);
	}
	fflush(stderr);
	rc = ask_report(ask.result);
	taskresult_free(ask.result);
	return rc;
}

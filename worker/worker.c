/*
 * A worker: reads one MSG_JOB_RUN, runs it (planner, agent or synthesis),
 * answers with MSG_JOB_DONE or MSG_JOB_FAILED and exits.  It never needs to
 * be told to stop: the supervisor SIGKILLs its process group at the deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

/* A job frame is bounded by the supervisor's caps; this is the last guard. */
#define WORKER_MAX_JOB_FRAME	(64u << 20)

static int	worker_fd = -1;
static int	worker_workspace_fd = -1;

static int
worker_read_full(void *p, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = read(worker_fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p = (char *)p + n;
		len -= (size_t)n;
	}
	return 0;
}

/* A supervisor that stopped reading is gone; there is no one to answer. */
static void
worker_send(struct buf *frame)
{
	const char	*p = frame->data;
	size_t		 left = frame->len;
	ssize_t		 n;

	if (m_close(frame, SIZE_MAX) == -1)
		_exit(3);
	while (left > 0) {
		n = write(worker_fd, p, left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(3);
		p += n;
		left -= (size_t)n;
	}
	buf_free(frame);
}

#ifdef HEAVY_TEST_HOOKS
/* Test only: bytes that are not a frame, to prove the supervisor's guard. */
void
worker_send_raw(const void *p, size_t len)
{
	if (write(worker_fd, p, len) != (ssize_t)len)
		_exit(3);
}
#endif

void
worker_step(const char *fmt, ...)
{
	struct buf	frame;
	char		note[512];
	va_list		ap;

	if (worker_fd == -1)
		return;
	va_start(ap, fmt);
	vsnprintf(note, sizeof note, fmt, ap);
	va_end(ap);
	m_create(&frame, MSG_JOB_STEP);
	m_add_str(&frame, note);
	worker_send(&frame);
}

/*
 * After an LLM request: the usage of the calls made since the last report
 * (u is this job's running total), which the supervisor holds the task's
 * budgets against, and how the request went, for its metrics.
 */
void
worker_report_usage(const struct usage *u, const struct job_call *call)
{
	static struct usage	reported;
	struct usage		delta;
	struct buf		frame;

	if (worker_fd == -1)
		return;
	delta.prompt_tokens = u->prompt_tokens - reported.prompt_tokens;
	delta.completion_tokens = u->completion_tokens -
	    reported.completion_tokens;
	delta.total_tokens = u->total_tokens - reported.total_tokens;
	delta.llm_calls = u->llm_calls - reported.llm_calls;
	delta.retries = u->retries - reported.retries;
	delta.cost_micro_usd = u->cost_micro_usd - reported.cost_micro_usd;
	delta.hedged_calls = u->hedged_calls - reported.hedged_calls;
	delta.hedges_won = u->hedges_won - reported.hedges_won;
	reported = *u;
	m_create(&frame, MSG_JOB_USAGE);
	usage_encode(&frame, &delta);
	job_call_encode(&frame, call);
	worker_send(&frame);
}

/* One frame of the given type from the supervisor; the payload is ours. */
static int
worker_read_frame(enum msg_type type, char **payload, size_t *len)
{
	uint8_t		 hdrbuf[PROTO_HDR_LEN];
	struct msg_hdr	 hdr;

	if (worker_read_full(hdrbuf, sizeof hdrbuf) == -1 ||
	    m_frame_check(hdrbuf, sizeof hdrbuf, WORKER_MAX_JOB_FRAME, &hdr) ==
	    FRAME_INVALID || hdr.type != type)
		return -1;
	*payload = xmalloc(hdr.len + 1);
	*len = hdr.len;
	if (worker_read_full(*payload, hdr.len) == -1) {
		free(*payload);
		return -1;
	}
	return 0;
}

static int
worker_read_job(struct job *job)
{
	struct mreader	 r;
	char		*payload;
	size_t		 len;
	int		 rc;

	if (worker_read_frame(MSG_JOB_RUN, &payload, &len) == -1)
		return -1;
	m_reader_init(&r, payload, len);
	rc = job_decode(&r, job) == -1 || m_end(&r) == -1 ? -1 : 0;
	if (rc == -1)
		job_clear(job);
	explicit_bzero(payload, len);	/* the prompts */
	free(payload);
	return rc;
}

static void	worker_send_failed(const struct llm_error *,
		    const struct usage *);

/*
 * The first frame: no payload, and the worker's socket to heavyd-egress
 * passed with it (none when egress is down: the calls then fail, saying
 * so).  The only way out of the sandbox to the network.
 */
static int
worker_read_egress(void)
{
	uint8_t		hdrbuf[PROTO_HDR_LEN];
	struct msg_hdr	hdr;
	ssize_t		n;
	int		fd;

	n = fd_recv(worker_fd, hdrbuf, sizeof hdrbuf, &fd, 0);
	if (n > 0 && (size_t)n < sizeof hdrbuf &&
	    worker_read_full(hdrbuf + n, sizeof hdrbuf - (size_t)n) == 0)
		n = sizeof hdrbuf;
	if (n != sizeof hdrbuf || m_frame_check(hdrbuf, sizeof hdrbuf,
	    PROTO_HDR_LEN, &hdr) != FRAME_OK || hdr.type != MSG_JOB_EGRESS) {
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (fd != -1)
		fd_set_nonblock(fd, 0);
	egress_client_set(fd);
	return 0;
}

/*
 * The confinement comes first, so nothing of the job is read outside it.
 * The workspace is opened here, once, as the root of every file tool.
 */
static int
worker_enter_sandbox(void)
{
	struct sandbox	 sb;
	struct mreader	 r;
	struct llm_error e = { .kind = JOB_ERR_INTERNAL };
	struct usage	 u = { 0 };
	char		*payload, why[400];
	size_t		 len;
	int		 rc;

	if (worker_read_frame(MSG_JOB_SANDBOX, &payload, &len) == -1)
		return -1;
	m_reader_init(&r, payload, len);
	rc = sandbox_decode(&r, &sb) == -1 || m_end(&r) == -1 ? -1 : 0;
	free(payload);
	if (rc == -1)
		return -1;
	if (sb.workspace[0] != '\0' && (worker_workspace_fd = open(sb.workspace,
	    O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1)
		rc = -1;
	if (rc == 0 && sandbox_enter(&sb, worker_workspace_fd, why,
	    sizeof why) == -1) {
		snprintf(e.msg, sizeof e.msg, "sandbox: %s", why);
		worker_send_failed(&e, &u);	/* the task says why */
		rc = -1;
	}
	sandbox_clear(&sb);
	return rc;
}

int
worker_workspace(void)
{
	return worker_workspace_fd;
}

static void
worker_send_done(uint32_t flags, char **texts, uint32_t n,
    const struct usage *u)
{
	struct buf	frame;

	m_create(&frame, MSG_JOB_DONE);
	m_add_u32(&frame, flags);
	m_add_u32(&frame, n);
	for (uint32_t i = 0; i < n; i++)
		m_add_str(&frame, texts[i]);
	usage_encode(&frame, u);
	worker_send(&frame);
}

static void
worker_send_failed(const struct llm_error *e, const struct usage *u)
{
	struct buf	frame;

	m_create(&frame, MSG_JOB_FAILED);
	m_add_u32(&frame, e->kind);
	m_add_u32(&frame, (uint32_t)e->http_status);
	m_add_str(&frame, e->msg);
	usage_encode(&frame, u);
	worker_send(&frame);
}

/* Appends a role/content message to a conversation. */
void
worker_message_add(struct json_object *msgs, const char *role,
    const char *text)
{
	struct json_object	*m = json_object_new_object();

	json_object_object_add(m, "role", json_object_new_string(role));
	json_object_object_add(m, "content", json_object_new_string(text));
	json_object_array_add(msgs, m);
}

/* A conversation: the system prompt (when there is one), then user. */
struct json_object *
worker_messages(const struct job *job, const char *user)
{
	struct json_object	*msgs = json_object_new_array();

	if (job->system_prompt[0] != '\0')
		worker_message_add(msgs, "system", job->system_prompt);
	worker_message_add(msgs, "user", user);
	return msgs;
}


/* The planner: one tool-free call, strictly validated, one re-ask. */
static void
worker_run_planner(const struct job *job, int64_t deadline)
{
	struct json_object	*msgs = worker_messages(job, job->prompt);
	struct llm_reply	 reply;
	struct llm_error	 e = { 0 };
	struct usage		 u = { 0 };
	char			 err[256], ask[512], **qs;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (llm_chat(job, deadline, msgs, NULL, &reply, &u, &e) == -1)
			break;
		if (plan_parse(reply.content ? reply.content : "",
		    job->num_questions, &qs, err, sizeof err) == 0) {
			worker_send_done(attempt ? JOB_DONE_REASKED : 0, qs,
			    job->num_questions, &u);
			plan_free(qs, job->num_questions);
			llm_reply_clear(&reply);
			json_object_put(msgs);
			return;
		}
		worker_message_add(msgs, "assistant",
		    reply.content ? reply.content : "");
		llm_reply_clear(&reply);
		snprintf(ask, sizeof ask, "That reply was not usable (%s). "
		    "Reply with only a JSON array of exactly %u strings.",
		    err, job->num_questions);
		worker_message_add(msgs, "user", ask);
		e.kind = JOB_ERR_PARSE;
		snprintf(e.msg, sizeof e.msg, "planner output invalid: %s", err);
		if (attempt == 0)
			worker_step("planner output invalid (%s); asking again",
			    err);
	}
	json_object_put(msgs);
	worker_send_failed(&e, &u);
}

static void
worker_run_synthesis(const struct job *job, int64_t deadline)
{
	struct json_object	*msgs = worker_messages(job, job->prompt);
	struct llm_reply	 reply;
	struct llm_error	 e = { 0 };
	struct usage		 u = { 0 };
	char			*text;
	int			 rc;

	rc = llm_chat(job, deadline, msgs, NULL, &reply, &u, &e);
	json_object_put(msgs);
	if (rc == -1) {
		worker_send_failed(&e, &u);
		return;
	}
	if (reply.content == NULL || reply.content[0] == '\0') {
		e.kind = JOB_ERR_RESPONSE;
		snprintf(e.msg, sizeof e.msg, "synthesis returned no text");
		worker_send_failed(&e, &u);
	} else {
		text = reply.content;
		worker_send_done(0, &text, 1, &u);
	}
	llm_reply_clear(&reply);
}

static void
worker_run_agent(const struct job *job, int64_t deadline)
{
	struct buf		 answer;
	struct llm_error	 e = { 0 };
	struct usage		 u = { 0 };
	uint32_t		 flags = 0;
	char			*text;

	buf_init(&answer, job->max_answer_bytes);
	if (agent_run(job, deadline, &answer, &flags, &u, &e) == -1)
		worker_send_failed(&e, &u);
	else {
		text = (char *)buf_cstr(&answer);
		worker_send_done(flags, &text, 1, &u);
	}
	buf_free(&answer);
}

/* A review: the labels it ranked, best first, one text each. */
static void
worker_run_review(const struct job *job, int64_t deadline)
{
	struct llm_error	 e = { 0 };
	struct usage		 u = { 0 };
	unsigned		 order[HEAVY_MAX_AGENTS];
	uint32_t		 flags = 0;
	char			 labels[HEAVY_MAX_AGENTS][2], *texts[HEAVY_MAX_AGENTS];

	if (review_run(job, deadline, order, &flags, &u, &e) == -1) {
		worker_send_failed(&e, &u);
		return;
	}
	for (uint32_t k = 0; k < job->num_questions; k++) {
		labels[k][0] = REVIEW_LABEL(order[k]);
		labels[k][1] = '\0';
		texts[k] = labels[k];
	}
	worker_send_done(flags, texts, job->num_questions, &u);
}

void
worker_main(int fd)
{
	struct job	job;
	int64_t		deadline;

	worker_fd = fd;
	fd_set_nonblock(fd, 0);
	if (worker_read_egress() == -1 || worker_enter_sandbox() == -1 ||
	    worker_read_job(&job) == -1)
		_exit(2);
	deadline = now_ms() + job.budget_ms;
	switch (job.role) {
	case ROLE_PLANNER:
		worker_run_planner(&job, deadline);
		break;
	case ROLE_AGENT:
		worker_run_agent(&job, deadline);
		break;
	case ROLE_REVIEW:
		worker_run_review(&job, deadline);
		break;
	default:
		worker_run_synthesis(&job, deadline);
		break;
	}
	job_clear(&job);
	_exit(0);
}

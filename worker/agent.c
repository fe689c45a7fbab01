/*
 * The agent: a tool-calling loop of at most max_iterations model turns that
 * ends on a plain-text answer or on mark_task_complete.
 */
#include <stdio.h>
#include <string.h>

#include "worker.h"

static void
agent_fail(struct llm_error *e, enum job_error kind, const char *msg)
{
	e->kind = kind;
	e->http_status = 0;
	snprintf(e->msg, sizeof e->msg, "%s", msg);
}

static void
agent_tool_message(struct json_object *msgs, const char *id, const char *text)
{
	struct json_object	*m = json_object_new_object();

	json_object_object_add(m, "role", json_object_new_string("tool"));
	json_object_object_add(m, "tool_call_id", json_object_new_string(id));
	json_object_object_add(m, "content", json_object_new_string(text));
	json_object_array_add(msgs, m);
}

/* Runs every tool call of one turn; returns 1 when the task is complete. */
static int
agent_run_tools(const struct job *job, int64_t deadline,
    struct json_object *calls, struct json_object *msgs, struct buf *answer)
{
	struct json_object	*call, *fn;
	struct buf		 out;
	const char		*name, *id;
	int			 complete = 0, done = 0;

	for (size_t i = 0; i < json_object_array_length(calls); i++) {
		call = json_object_array_get_idx(calls, i);
		fn = json_object_object_get(call, "function");
		name = json_object_get_string(json_object_object_get(fn, "name"));
		id = json_object_get_string(json_object_object_get(call, "id"));
		if (name == NULL)
			name = "";
		worker_step("%s", name);
		buf_init(&out, job->max_tool_output_bytes);
		tools_call(name, json_object_get_string(
		    json_object_object_get(fn, "arguments")) ?: "",
		    job, deadline, &out, &complete);
		agent_tool_message(msgs, id ? id : "", buf_cstr(&out));
		if (complete && !done) {
			buf_reset(answer);
			buf_addstr(answer, buf_cstr(&out));
			done = 1;
		}
		buf_free(&out);
	}
	return done;
}

/* Keeps the last text the model wrote, within the answer's cap. */
static void
agent_keep_text(struct buf *answer, const char *content)
{
	if (content == NULL || content[0] == '\0')
		return;
	buf_reset(answer);
	if (buf_addstr(answer, content) == -1)
		buf_add(answer, content, answer->max);	/* truncate at the cap */
}

int
agent_run(const struct job *job, int64_t deadline, struct buf *answer,
    uint32_t *flags, struct usage *u, struct llm_error *e)
{
	struct json_object	*msgs;
	struct llm_reply	 reply;
	const char		*tools;
	int			 rc = -1, done = 0;

	msgs = worker_messages(job, job->prompt);
	/* As the request's JSON text, made by the zygote: a waiting agent
	 * holds no tree of every tool's schema, nor a copy of its own. */
	tools = tools_json(tools_features(job));

	for (uint32_t turn = 0; !done && turn < job->max_iterations; turn++) {
		if (llm_chat(job, deadline, msgs, tools, &reply, u, e) == -1)
			goto out;
		json_object_array_add(msgs, json_object_get(reply.message));
		agent_keep_text(answer, reply.content);
		if (reply.tool_calls == NULL)
			done = 1;
		else if (agent_run_tools(job, deadline, reply.tool_calls, msgs,
		    answer)) {
			*flags |= JOB_DONE_COMPLETED;
			done = 1;
		}
		llm_reply_clear(&reply);
		if (!done && job->max_transcript_bytes > 0 &&
		    strlen(json_object_to_json_string(msgs)) >
		    job->max_transcript_bytes) {
			agent_fail(e, JOB_ERR_LIMIT, "agent transcript exceeds "
			    "max_transcript_bytes");
			goto out;
		}
	}
	if (!done) {
		*flags |= JOB_DONE_MAXITER;
		if (answer->len == 0) {
			agent_fail(e, JOB_ERR_LIMIT, "agent reached "
			    "max_iterations without an answer");
			goto out;
		}
	}
	rc = 0;
out:
	json_object_put(msgs);
	return rc;
}

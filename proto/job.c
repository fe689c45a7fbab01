/* The job a worker runs and the usage it reports, in wire form. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

void
job_encode(struct buf *b, const struct job *j)
{
	/* No key goes on the wire: heavyd-egress adds it to the requests. */
	m_add_u32(b, j->role);
	m_add_u32(b, j->index);
	m_add_u32(b, j->num_questions);
	m_add_u32(b, j->max_iterations);
	m_add_u32(b, j->budget_ms);
	m_add_u32(b, j->max_retries);
	m_add_u32(b, j->retry_base_ms);
	m_add_u32(b, j->retry_max_ms);
	m_add_u64(b, j->max_response_bytes);
	m_add_u64(b, j->max_transcript_bytes);
	m_add_u64(b, j->max_tool_output_bytes);
	m_add_u64(b, j->max_answer_bytes);
	m_add_u32(b, j->stall_s);
	m_add_str(b, j->base_url);
	m_add_str(b, j->model);
	m_add_u32(b, j->nfallbacks);
	for (uint32_t i = 0; i < j->nfallbacks && i < HEAVY_MAX_FALLBACKS; i++)
		m_add_str(b, j->fallbacks[i]);
	m_add_str(b, j->system_prompt);
	m_add_str(b, j->prompt);
	m_add_u32(b, j->flags);
	m_add_u32(b, j->features);
	m_add_u32(b, j->search_backend);
	m_add_u32(b, j->search_max_results);
	m_add_u32(b, j->search_allow_private);
	m_add_u32(b, j->search_timeout_ms);
	m_add_u64(b, j->max_read_bytes);
	m_add_u64(b, j->max_write_bytes);
	m_add_u64(b, j->max_page_bytes);
	m_add_u64(b, j->max_extract_bytes);
	m_add_str(b, j->search_url);
	m_add_str(b, j->search_user_agent);
	m_add_u32(b, j->hedge_ms);
}

/* A model id as config_model_error takes it (not linked into workers). */
static bool
job_model_ok(const char *s)
{
	size_t	len = strlen(s);

	if (len == 0 || len > HEAVY_MAX_MODEL)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* The fallback models: at most HEAVY_MAX_FALLBACKS valid model ids. */
static int
job_decode_fallbacks(struct mreader *r, struct job *j)
{
	uint32_t	n;

	if (m_get_u32(r, &n) == -1 || n > HEAVY_MAX_FALLBACKS)
		return -1;
	for (j->nfallbacks = 0; j->nfallbacks < n; j->nfallbacks++)
		if (m_get_str(r, &j->fallbacks[j->nfallbacks]) == -1 ||
		    !job_model_ok(j->fallbacks[j->nfallbacks])) {
			j->nfallbacks++;	/* freed by job_clear */
			return -1;
		}
	return 0;
}

/* Decodes a job and checks its values; the reader is left for m_end(). */
int
job_decode(struct mreader *r, struct job *j)
{
	memset(j, 0, sizeof *j);
	m_get_u32(r, &j->role);
	m_get_u32(r, &j->index);
	m_get_u32(r, &j->num_questions);
	m_get_u32(r, &j->max_iterations);
	m_get_u32(r, &j->budget_ms);
	m_get_u32(r, &j->max_retries);
	m_get_u32(r, &j->retry_base_ms);
	m_get_u32(r, &j->retry_max_ms);
	m_get_u64(r, &j->max_response_bytes);
	m_get_u64(r, &j->max_transcript_bytes);
	m_get_u64(r, &j->max_tool_output_bytes);
	m_get_u64(r, &j->max_answer_bytes);
	m_get_u32(r, &j->stall_s);
	if (m_get_str(r, &j->base_url) == -1 ||
	    m_get_str(r, &j->model) == -1 ||
	    job_decode_fallbacks(r, j) == -1 ||
	    m_get_str(r, &j->system_prompt) == -1 ||
	    m_get_str(r, &j->prompt) == -1 ||
	    m_get_u32(r, &j->flags) == -1)
		goto fail;
	m_get_u32(r, &j->features);
	m_get_u32(r, &j->search_backend);
	m_get_u32(r, &j->search_max_results);
	m_get_u32(r, &j->search_allow_private);
	m_get_u32(r, &j->search_timeout_ms);
	m_get_u64(r, &j->max_read_bytes);
	m_get_u64(r, &j->max_write_bytes);
	m_get_u64(r, &j->max_page_bytes);
	m_get_u64(r, &j->max_extract_bytes);
	if (m_get_str(r, &j->search_url) == -1 ||
	    m_get_str(r, &j->search_user_agent) == -1 ||
	    m_get_u32(r, &j->hedge_ms) == -1)
		goto fail;
	if (j->search_backend > SEARCH_BACKEND_BRAVE)
		goto fail;
	if (j->role < ROLE_PLANNER || j->role > ROLE_REVIEW ||
	    (j->role == ROLE_PLANNER &&
	    (j->num_questions < 1 || j->num_questions > HEAVY_MAX_AGENTS)) ||
	    (j->role == ROLE_REVIEW &&
	    (j->num_questions < 2 || j->num_questions > HEAVY_MAX_AGENTS)))
		goto fail;
	return 0;
fail:
	r->bad = 1;
	job_clear(j);
	return -1;
}

void
job_clear(struct job *j)
{
	if (j->api_key != NULL)
		explicit_bzero(j->api_key, strlen(j->api_key));
	free(j->api_key);
	free(j->base_url);
	free(j->model);
	for (uint32_t i = 0; i < j->nfallbacks && i < HEAVY_MAX_FALLBACKS; i++)
		free(j->fallbacks[i]);
	free(j->system_prompt);
	free(j->prompt);
	if (j->search_api_key != NULL)
		explicit_bzero(j->search_api_key, strlen(j->search_api_key));
	free(j->search_api_key);
	free(j->search_url);
	free(j->search_user_agent);
	memset(j, 0, sizeof *j);
}

void
usage_encode(struct buf *b, const struct usage *u)
{
	m_add_u64(b, u->prompt_tokens);
	m_add_u64(b, u->completion_tokens);
	m_add_u64(b, u->total_tokens);
	m_add_u32(b, u->llm_calls);
	m_add_u32(b, u->retries);
	m_add_u64(b, u->cost_micro_usd);
	m_add_u32(b, u->hedged_calls);
	m_add_u32(b, u->hedges_won);
}

int
usage_decode(struct mreader *r, struct usage *u)
{
	m_get_u64(r, &u->prompt_tokens);
	m_get_u64(r, &u->completion_tokens);
	m_get_u64(r, &u->total_tokens);
	m_get_u32(r, &u->llm_calls);
	m_get_u32(r, &u->retries);
	m_get_u64(r, &u->cost_micro_usd);
	m_get_u32(r, &u->hedged_calls);
	return m_get_u32(r, &u->hedges_won);
}

void
usage_add(struct usage *to, const struct usage *u)
{
	to->prompt_tokens += u->prompt_tokens;
	to->completion_tokens += u->completion_tokens;
	to->total_tokens += u->total_tokens;
	to->llm_calls += u->llm_calls;
	to->retries += u->retries;
	to->cost_micro_usd += u->cost_micro_usd;
	to->hedged_calls += u->hedged_calls;
	to->hedges_won += u->hedges_won;
}

void
job_call_encode(struct buf *b, const struct job_call *c)
{
	m_add_u32(b, c->error_kind);
	m_add_u32(b, c->http_status);
	m_add_u64(b, c->duration_us);
	m_add_u32(b, c->attempt);
	m_add_u32(b, c->model);
	m_add_u32(b, c->fallback);
}

const char *
job_fallback_name(uint32_t why)
{
	switch (why) {
	case JOB_FB_NOT_FOUND:
		return "model not found (404)";
	case JOB_FB_PAYMENT:
		return "payment required (402)";
	case JOB_FB_NO_TOOLS:
		return "model does not support tools (400)";
	case JOB_FB_EXHAUSTED:
		return "retries exhausted";
	default:
		return "none";
	}
}

/* Whether an attempt's error and status agree, as llm.c sends them. */
static int
job_call_valid(const struct job_call *c)
{
	uint32_t	st = c->http_status;
	bool		ok2xx = st >= 200 && st <= 299;

	switch (c->error_kind) {
	case 0:
	case JOB_ERR_API:	/* an error object in a 2xx body */
		return ok2xx;
	case JOB_ERR_HTTP:
		return st >= 100 && st <= 999 && !ok2xx;
	case JOB_ERR_RESPONSE:	/* a bad 2xx body, or one cut at its cap */
		return st == 0 || ok2xx;
	case JOB_ERR_TRANSPORT:
	case JOB_ERR_TIMEOUT:
	case JOB_ERR_CONNECT:
		return st == 0;
	default:		/* not an attempt's */
		return 0;
	}
}

/* Decodes and checks one LLM request; the reader is left for m_end(). */
int
job_call_decode(struct mreader *r, struct job_call *c)
{
	memset(c, 0, sizeof *c);
	m_get_u32(r, &c->error_kind);
	m_get_u32(r, &c->http_status);
	m_get_u64(r, &c->duration_us);
	m_get_u32(r, &c->attempt);
	m_get_u32(r, &c->model);
	if (m_get_u32(r, &c->fallback) == -1 || !job_call_valid(c) ||
	    c->model > HEAVY_MAX_FALLBACKS || c->fallback > JOB_FB_LAST ||
	    (c->fallback != JOB_FB_NONE && c->model == 0) ||
	    c->duration_us > JOB_CALL_MAX_US ||
	    c->attempt > JOB_CALL_MAX_ATTEMPT) {
		r->bad = 1;
		return -1;
	}
	return 0;
}

void
sandbox_encode(struct buf *b, const struct sandbox *s)
{
	m_add_str(b, s->workspace);
	m_add_u32(b, s->fs);
	m_add_u32(b, s->flags);
	m_add_u64(b, s->memory);
	m_add_u32(b, s->cpu_s);
	m_add_u32(b, s->nofile);
	m_add_u64(b, s->fsize);
	m_add_u32(b, s->pids);
	m_add_u32(b, s->uid);
	m_add_u32(b, s->gid);
	m_add_u32(b, s->nports);
	for (uint32_t i = 0; i < s->nports && i < SANDBOX_MAX_PORTS; i++)
		m_add_u32(b, s->ports[i]);
}

/* Decodes and checks a sandbox; the reader is left for m_end(). */
int
sandbox_decode(struct mreader *r, struct sandbox *s)
{
	uint32_t	port;

	memset(s, 0, sizeof *s);
	if (m_get_str(r, &s->workspace) == -1)
		goto fail;
	m_get_u32(r, &s->fs);
	m_get_u32(r, &s->flags);
	m_get_u64(r, &s->memory);
	m_get_u32(r, &s->cpu_s);
	m_get_u32(r, &s->nofile);
	m_get_u64(r, &s->fsize);
	m_get_u32(r, &s->pids);
	m_get_u32(r, &s->uid);
	m_get_u32(r, &s->gid);
	/* Never root: a worker changes ids only to give privilege up. */
	if (s->uid == 0 || s->gid == 0)
		goto fail;
	if (m_get_u32(r, &s->nports) == -1 || s->nports > SANDBOX_MAX_PORTS ||
	    s->fs < SANDBOX_FS_LANDLOCK || s->fs > SANDBOX_FS_NONE)
		goto fail;
	for (uint32_t i = 0; i < s->nports; i++) {
		if (m_get_u32(r, &port) == -1 || port == 0 || port > 65535)
			goto fail;
		s->ports[i] = (uint16_t)port;
	}
	return 0;
fail:
	r->bad = 1;
	sandbox_clear(s);
	return -1;
}

void
sandbox_clear(struct sandbox *s)
{
	free(s->workspace);
	memset(s, 0, sizeof *s);
}

/*
 * A worker's report to the supervisor (MSG_JOB_STEP, _USAGE, _DONE or
 * _FAILED), read strictly: -1 for another type, a field out of place, a
 * value out of range or bytes left over.  A worker is untrusted, so this
 * is all that stands between its bytes and the supervisor.
 */
int
job_report_decode(uint16_t type, const void *payload, size_t len,
    struct job_report *rep)
{
	struct mreader	r;
	uint32_t	n;

	memset(rep, 0, sizeof *rep);
	rep->type = type;
	m_reader_init(&r, payload, len);
	switch (type) {
	case MSG_JOB_STEP:
		m_get_str(&r, &rep->note);
		break;
	case MSG_JOB_USAGE:
		usage_decode(&r, &rep->usage);
		job_call_decode(&r, &rep->call);
		break;
	case MSG_JOB_DONE:
		m_get_u32(&r, &rep->flags);
		if (m_get_u32(&r, &n) == -1 || n > HEAVY_MAX_AGENTS)
			break;
		rep->texts = xcalloc(n ? n : 1, sizeof *rep->texts);
		for (rep->ntexts = 0; rep->ntexts < n; rep->ntexts++)
			if (m_get_str(&r, &rep->texts[rep->ntexts]) == -1)
				break;
		usage_decode(&r, &rep->usage);
		break;
	case MSG_JOB_FAILED:
		m_get_u32(&r, &rep->error_kind);
		m_get_u32(&r, &rep->http_status);
		m_get_str(&r, &rep->error);
		usage_decode(&r, &rep->usage);
		if (rep->error_kind < JOB_ERR_HTTP || rep->error_kind > JOB_ERR_LAST)
			r.bad = 1;
		break;
	default:
		r.bad = 1;
	}
	if (m_end(&r) == 0)
		return 0;
	job_report_clear(rep);
	return -1;
}

void
job_report_clear(struct job_report *rep)
{
	for (uint32_t i = 0; i < rep->ntexts; i++)
		free(rep->texts[i]);
	free(rep->texts);
	free(rep->error);
	free(rep->note);
	memset(rep, 0, sizeof *rep);
}

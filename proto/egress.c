/*
 * The frames of heavyd-egress, in wire form.  Each decoder takes a whole
 * payload and is strict like job_report_decode: every field of its type,
 * values in range, nothing left over.  egress_req_decode reads what a
 * worker (untrusted) sends; egress_resp_decode what egress answers.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static void
egress_zero_free(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
	free(s);
}

void
egress_config_encode(struct buf *b, const struct egress_config *c)
{
	m_add_str(b, c->api_key);
	m_add_str(b, c->search_api_key);
	m_add_u64(b, c->max_body);
	m_add_u32(b, c->max_host_conns);
	m_add_u32(b, c->max_calls);
	m_add_u32(b, c->breaker_failures);
	m_add_u32(b, c->breaker_cooldown_s);
	m_add_u32(b, c->rpm);
	m_add_u32(b, c->tpm);
	m_add_u32(b, c->idle_conns);
}

int
egress_config_decode(const void *p, size_t len, struct egress_config *c)
{
	struct mreader	r;

	memset(c, 0, sizeof *c);
	m_reader_init(&r, p, len);
	if (m_get_str(&r, &c->api_key) == 0)
		m_get_str(&r, &c->search_api_key);
	m_get_u64(&r, &c->max_body);
	m_get_u32(&r, &c->max_host_conns);
	m_get_u32(&r, &c->max_calls);
	m_get_u32(&r, &c->breaker_failures);
	m_get_u32(&r, &c->breaker_cooldown_s);
	m_get_u32(&r, &c->rpm);
	m_get_u32(&r, &c->tpm);
	m_get_u32(&r, &c->idle_conns);
	if (m_end(&r) == 0 && c->max_body > 0 &&
	    c->max_body <= EGRESS_MAX_BODY)
		return 0;
	egress_config_clear(c);
	return -1;
}

void
egress_config_clear(struct egress_config *c)
{
	egress_zero_free(c->api_key);
	egress_zero_free(c->search_api_key);
	memset(c, 0, sizeof *c);
}

void
egress_attach_encode(struct buf *b, const struct egress_attach *a)
{
	m_add_u32(b, a->worker_id);
	m_add_u32(b, a->search_backend);
	m_add_u32(b, a->allow_private);
	m_add_str(b, a->base_url);
	m_add_str(b, a->search_url);
	m_add_str(b, a->user_agent);
	m_add_str(b, a->task);
	m_add_u64(b, a->identity);
	m_add_u32(b, a->hedge_ms);
}

int
egress_attach_decode(const void *p, size_t len, struct egress_attach *a)
{
	struct mreader	r;

	memset(a, 0, sizeof *a);
	m_reader_init(&r, p, len);
	m_get_u32(&r, &a->worker_id);
	m_get_u32(&r, &a->search_backend);
	m_get_u32(&r, &a->allow_private);
	if (m_get_str(&r, &a->base_url) == 0 &&
	    m_get_str(&r, &a->search_url) == 0 &&
	    m_get_str(&r, &a->user_agent) == 0)
		m_get_str(&r, &a->task);
	m_get_u64(&r, &a->identity);
	m_get_u32(&r, &a->hedge_ms);
	if (m_end(&r) == 0 && a->search_backend <= SEARCH_BACKEND_BRAVE &&
	    a->allow_private <= 1)
		return 0;
	egress_attach_clear(a);
	return -1;
}

void
egress_attach_clear(struct egress_attach *a)
{
	free(a->base_url);
	free(a->search_url);
	free(a->user_agent);
	free(a->task);
	memset(a, 0, sizeof *a);
}

void
egress_req_encode(struct buf *b, const struct egress_req *q)
{
	m_add_u32(b, q->id);
	m_add_u32(b, q->kind);
	m_add_str(b, q->target);
	m_add_data(b, q->body, q->body_len);
	m_add_u32(b, q->count);
	m_add_u32(b, q->timeout_ms);
	m_add_u32(b, q->connect_ms);
	m_add_u32(b, q->stall_s);
	m_add_u64(b, q->max_body);
}

/* A worker's request: only the kinds there are, a target that fits. */
int
egress_req_decode(const void *p, size_t len, struct egress_req *q)
{
	struct mreader	r;

	memset(q, 0, sizeof *q);
	m_reader_init(&r, p, len);
	m_get_u32(&r, &q->id);
	m_get_u32(&r, &q->kind);
	if (m_get_str(&r, &q->target) == 0)
		m_get_data(&r, &q->body, &q->body_len, EGRESS_MAX_BODY);
	m_get_u32(&r, &q->count);
	m_get_u32(&r, &q->timeout_ms);
	m_get_u32(&r, &q->connect_ms);
	m_get_u32(&r, &q->stall_s);
	m_get_u64(&r, &q->max_body);
	if (m_end(&r) == 0 && q->kind >= EGRESS_LLM &&
	    q->kind <= EGRESS_PAGE && strlen(q->target) <= EGRESS_MAX_TARGET &&
	    q->count <= 100 && q->max_body <= EGRESS_MAX_BODY)
		return 0;
	egress_req_clear(q);
	return -1;
}

void
egress_req_clear(struct egress_req *q)
{
	free(q->target);
	free(q->body);
	memset(q, 0, sizeof *q);
}

void
egress_resp_encode(struct buf *b, const struct egress_resp *s)
{
	m_add_u32(b, s->id);
	m_add_u32(b, s->result);
	m_add_u32(b, s->os_errno);
	m_add_u32(b, s->status);
	m_add_u32(b, s->hedge);
	m_add_str(b, s->error);
	m_add_str(b, s->retry_after);
	m_add_str(b, s->reset);
	m_add_str(b, s->content_type);
	m_add_data(b, s->body, s->body_len);
}

static int
egress_resp_strs(struct mreader *r, struct egress_resp *s)
{
	char	**f[] = { &s->error, &s->retry_after, &s->reset,
	    &s->content_type };

	for (size_t i = 0; i < sizeof f / sizeof *f; i++)
		if (m_get_str(r, f[i]) == -1 || strlen(*f[i]) > 1024)
			return -1;
	return 0;
}

int
egress_resp_decode(const void *p, size_t len, struct egress_resp *s)
{
	struct mreader	r;

	memset(s, 0, sizeof *s);
	m_reader_init(&r, p, len);
	m_get_u32(&r, &s->id);
	m_get_u32(&r, &s->result);
	m_get_u32(&r, &s->os_errno);
	m_get_u32(&r, &s->status);
	m_get_u32(&r, &s->hedge);
	if (egress_resp_strs(&r, s) == -1)
		r.bad = 1;
	m_get_data(&r, &s->body, &s->body_len, EGRESS_MAX_BODY);
	if (m_end(&r) == 0 && s->result >= EGRESS_OK &&
	    s->result <= EGRESS_RESULT_LAST && s->status <= 999 &&
	    s->hedge <= EGRESS_HEDGE_WON &&
	    s->os_errno < 4096)
		return 0;
	egress_resp_clear(s);
	return -1;
}

void
egress_resp_clear(struct egress_resp *s)
{
	free(s->error);
	free(s->retry_after);
	free(s->reset);
	free(s->content_type);
	free(s->body);
	memset(s, 0, sizeof *s);
}

void
egress_note_encode(struct buf *b, const struct egress_note *n)
{
	m_add_u32(b, n->id);
	m_add_u32(b, n->hold);
	m_add_u32(b, n->seconds);
}

int
egress_note_decode(const void *p, size_t len, struct egress_note *n)
{
	struct mreader	r;

	memset(n, 0, sizeof *n);
	m_reader_init(&r, p, len);
	m_get_u32(&r, &n->id);
	m_get_u32(&r, &n->hold);
	m_get_u32(&r, &n->seconds);
	if (m_end(&r) == 0 && n->hold >= EGRESS_HOLD_PAUSE &&
	    n->hold <= EGRESS_HOLD_LAST)
		return 0;
	memset(n, 0, sizeof *n);
	return -1;
}

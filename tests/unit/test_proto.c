/* proto: frames round-trip, and every malformed frame is rejected. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../proto/proto.h"

static struct job
sample_job(void)
{
	struct job	j = { 0 };

	j.role = ROLE_AGENT;
	j.index = 3;
	j.num_questions = 4;
	j.max_iterations = 10;
	j.budget_ms = 1234;
	j.max_response_bytes = 1 << 20;
	j.api_key = "sk-secret";
	j.base_url = "http://127.0.0.1:1/v1";
	j.model = "m";
	j.system_prompt = "";
	j.prompt = "why?";
	return j;
}

static struct mreader
payload_of(struct buf *b, struct msg_hdr *hdr)
{
	struct mreader	r;

	cr_assert_eq(m_frame_check(b->data, b->len, 1 << 20, hdr), FRAME_OK);
	m_reader_init(&r, b->data + PROTO_HDR_LEN, hdr->len);
	return r;
}

Test(proto, job_round_trip)
{
	struct job	in = sample_job(), out;
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;

	in.hedge_ms = 750;
	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	cr_assert_eq(m_close(&b, 1 << 20), 0);
	r = payload_of(&b, &hdr);
	cr_assert_eq(hdr.type, MSG_JOB_RUN);
	cr_assert_eq(job_decode(&r, &out), 0);
	cr_assert_eq(m_end(&r), 0);
	cr_assert_eq(out.index, 3);
	cr_assert_eq(out.hedge_ms, 750);
	cr_assert_eq(out.budget_ms, 1234);
	cr_assert_null(out.api_key, "the key stays with heavyd-egress");
	cr_assert_null(memmem(b.data, b.len, "sk-secret", 9),
	    "the key is not in the MSG_JOB_RUN frame");
	cr_assert_str_eq(out.prompt, "why?");
	cr_assert_str_eq(out.system_prompt, "");
	job_clear(&out);
	buf_free(&b);
}

Test(proto, incomplete_until_whole)
{
	struct buf	b;
	struct msg_hdr	hdr;

	m_create(&b, MSG_JOB_STEP);
	m_add_str(&b, "calculate");
	m_close(&b, 1 << 20);
	for (size_t n = 0; n < b.len; n++)
		cr_assert_eq(m_frame_check(b.data, n, 1 << 20, &hdr),
		    FRAME_INCOMPLETE, "prefix of %zu bytes", n);
	cr_assert_eq(m_frame_check(b.data, b.len, 1 << 20, &hdr), FRAME_OK);
	buf_free(&b);
}

Test(proto, bad_headers_rejected)
{
	struct buf	b;
	struct msg_hdr	hdr;

	m_create(&b, MSG_JOB_STEP);
	m_add_str(&b, "x");
	m_close(&b, 1 << 20);
	b.data[0] = PROTO_VERSION + 1;	/* version */
	cr_assert_eq(m_frame_check(b.data, b.len, 1 << 20, &hdr), FRAME_INVALID);
	b.data[0] = PROTO_VERSION;
	b.data[2] = MSG_TYPE_MAX;	/* type */
	cr_assert_eq(m_frame_check(b.data, b.len, 1 << 20, &hdr), FRAME_INVALID);
	b.data[2] = 0;
	cr_assert_eq(m_frame_check(b.data, b.len, 1 << 20, &hdr), FRAME_INVALID);
	b.data[2] = MSG_JOB_STEP;
	/* a length past the cap is refused before any payload arrives */
	cr_assert_eq(m_frame_check(b.data, PROTO_HDR_LEN, 10, &hdr),
	    FRAME_INVALID);
	buf_free(&b);
}

Test(proto, m_close_enforces_cap)
{
	struct buf	b;

	m_create(&b, MSG_JOB_STEP);
	m_add_str(&b, "0123456789");
	cr_assert_eq(m_close(&b, 12), -1);
	cr_assert_eq(m_close(&b, 1 << 20), 0);
	buf_free(&b);
}

Test(proto, reader_rejects_wrong_tag_and_leftovers)
{
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;
	uint32_t	v;
	char		*s = NULL;

	m_create(&b, MSG_JOB_STEP);
	m_add_u32(&b, 7);
	m_add_u32(&b, 8);
	m_close(&b, 1 << 20);
	r = payload_of(&b, &hdr);
	cr_assert_eq(m_get_str(&r, &s), -1, "a u32 read as a string");
	cr_assert_eq(m_get_u32(&r, &v), -1, "a poisoned reader stays poisoned");
	r = payload_of(&b, &hdr);
	cr_assert_eq(m_get_u32(&r, &v), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(m_end(&r), -1, "one u32 left over");
	buf_free(&b);
}

Test(proto, string_with_nul_or_short_length_rejected)
{
	uint8_t		p1[] = { 3, 3, 0, 0, 0, 'a', 0, 'b' };
	uint8_t		p2[] = { 3, 9, 0, 0, 0, 'a', 'b' };
	struct mreader	r;
	char		*s;

	m_reader_init(&r, p1, sizeof p1);
	cr_assert_eq(m_get_str(&r, &s), -1);
	m_reader_init(&r, p2, sizeof p2);
	cr_assert_eq(m_get_str(&r, &s), -1);
}

Test(proto, job_with_bad_role_rejected)
{
	struct job	in = sample_job(), out;
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;

	in.role = 9;
	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	m_close(&b, 1 << 20);
	r = payload_of(&b, &hdr);
	cr_assert_eq(job_decode(&r, &out), -1);
	buf_free(&b);
}

Test(proto, truncated_job_rejected_at_every_length)
{
	struct job	in = sample_job(), out;
	struct buf	b;
	struct mreader	r;
	size_t		plen;

	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	m_close(&b, 1 << 20);
	plen = b.len - PROTO_HDR_LEN;
	for (size_t n = 0; n < plen; n++) {
		m_reader_init(&r, b.data + PROTO_HDR_LEN, n);
		cr_assert(job_decode(&r, &out) == -1 || m_end(&r) == -1,
		    "payload cut at %zu accepted", n);
	}
	buf_free(&b);
}

/* A MSG_JOB_USAGE payload: the usage delta and one LLM request. */
static struct buf
usage_frame(const struct job_call *c)
{
	struct usage	u = { .prompt_tokens = 7, .completion_tokens = 5,
	    .total_tokens = 12, .llm_calls = 1, .retries = 1,
	    .cost_micro_usd = 900 };
	struct buf	b;

	buf_init(&b, 0);
	usage_encode(&b, &u);
	job_call_encode(&b, c);
	return b;
}

static int
usage_decodes(const struct job_call *c, struct job_report *rep)
{
	struct buf	b = usage_frame(c);
	int		rc = job_report_decode(MSG_JOB_USAGE, b.data, b.len, rep);

	buf_free(&b);
	return rc;
}

Test(proto, usage_report_carries_the_request)
{
	struct job_call		c = { 0, 200, 1234567, 2, 0, 0 };
	struct job_report	rep;

	cr_assert_eq(usage_decodes(&c, &rep), 0);
	cr_assert_eq(rep.usage.prompt_tokens, 7);
	cr_assert_eq(rep.usage.cost_micro_usd, 900);
	cr_assert_eq(rep.call.error_kind, 0);
	cr_assert_eq(rep.call.http_status, 200);
	cr_assert_eq(rep.call.duration_us, 1234567);
	cr_assert_eq(rep.call.attempt, 2);
	job_report_clear(&rep);
}

/* Each kind of attempt with the status it comes with is taken. */
Test(proto, usage_report_kinds_accepted)
{
	const struct job_call	ok[] = {
		{ 0, 204, 0, 0, 0, 0 },
		{ JOB_ERR_HTTP, 429, 10, 1, 0, 0 },
		{ JOB_ERR_HTTP, 503, 10, 0, 0, 0 },
		{ JOB_ERR_HTTP, 101, 10, 0, 0, 0 },
		{ JOB_ERR_HTTP, 999, 10, 0, 0, 0 },
		{ JOB_ERR_API, 200, 10, 0, 0, 0 },
		{ JOB_ERR_RESPONSE, 200, 10, 0, 0, 0 },
		{ JOB_ERR_RESPONSE, 0, 10, 0, 0, 0 },
		{ JOB_ERR_TRANSPORT, 0, 10, 0, 0, 0 },
		{ JOB_ERR_TIMEOUT, 0, 10, 0, 0, 0 },
		{ JOB_ERR_CONNECT, 0, JOB_CALL_MAX_US, JOB_CALL_MAX_ATTEMPT, 0, 0 },
	};
	struct job_report	rep;

	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		cr_assert_eq(usage_decodes(&ok[i], &rep), 0, "case %zu", i);
		job_report_clear(&rep);
	}
}

/* A request whose error and status disagree, or out of range, is a
 * malformed frame (and its worker is killed). */
Test(proto, usage_report_bad_requests_rejected)
{
	const struct job_call	bad[] = {
		{ 0, 500, 10, 0, 0, 0 },		/* no error, not a 2xx */
		{ 0, 0, 10, 0, 0, 0 },
		{ JOB_ERR_HTTP, 200, 10, 0, 0, 0 },	/* an HTTP error that is 2xx */
		{ JOB_ERR_HTTP, 0, 10, 0, 0, 0 },
		{ JOB_ERR_HTTP, 1000, 10, 0, 0, 0 },
		{ JOB_ERR_HTTP, 99, 10, 0, 0, 0 },
		{ JOB_ERR_API, 500, 10, 0, 0, 0 },
		{ JOB_ERR_RESPONSE, 404, 10, 0, 0, 0 },
		{ JOB_ERR_TRANSPORT, 200, 10, 0, 0, 0 },
		{ JOB_ERR_CONNECT, 502, 10, 0, 0, 0 },
		{ JOB_ERR_TIMEOUT, 408, 10, 0, 0, 0 },
		{ JOB_ERR_PARSE, 0, 10, 0, 0, 0 },	/* not an attempt's errors */
		{ JOB_ERR_LIMIT, 0, 10, 0, 0, 0 },
		{ JOB_ERR_INTERNAL, 0, 10, 0, 0, 0 },
		{ JOB_ERR_LAST + 1, 0, 10, 0, 0, 0 },
		{ 0, 200, JOB_CALL_MAX_US + 1, 0, 0, 0 },
		{ 0, 200, 10, JOB_CALL_MAX_ATTEMPT + 1, 0, 0 },
	};
	struct job_report	rep;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(usage_decodes(&bad[i], &rep), -1, "case %zu", i);
}

/* Version 5's usage report (no request) and every cut of version 6's are
 * refused; so is one with a field more. */
Test(proto, usage_report_exact)
{
	struct job_call		c = { JOB_ERR_HTTP, 503, 10, 0, 0, 0 };
	struct buf		b = usage_frame(&c);
	struct job_report	rep;

	for (size_t n = 0; n < b.len; n++)
		cr_assert_eq(job_report_decode(MSG_JOB_USAGE, b.data, n, &rep),
		    -1, "cut at %zu", n);
	m_add_u32(&b, 0);
	cr_assert_eq(job_report_decode(MSG_JOB_USAGE, b.data, b.len, &rep), -1);
	buf_free(&b);
}

Test(proto, job_fallbacks_round_trip)
{
	struct job	in = sample_job(), out;
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;

	in.fallbacks[0] = "second/m";
	in.fallbacks[1] = "third/m:free";
	in.nfallbacks = 2;
	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	cr_assert_eq(m_close(&b, 1 << 20), 0);
	r = payload_of(&b, &hdr);
	cr_assert_eq(job_decode(&r, &out), 0);
	cr_assert_eq(m_end(&r), 0);
	cr_assert_eq(out.nfallbacks, 2);
	cr_assert_str_eq(out.fallbacks[0], "second/m");
	cr_assert_str_eq(out.fallbacks[1], "third/m:free");
	cr_assert_str_eq(out.prompt, "why?");
	job_clear(&out);
	buf_free(&b);
}

/* Too many fallbacks, or one that is no model id, is a malformed job. */
Test(proto, job_bad_fallbacks_rejected)
{
	static char	*bad[] = { "", "a b", "a\nb" };
	struct job	in = sample_job(), out;
	struct buf	b;
	struct msg_hdr	hdr;
	struct mreader	r;

	for (size_t i = 0; i <= sizeof bad / sizeof *bad; i++) {
		in = sample_job();
		if (i < sizeof bad / sizeof *bad) {
			in.fallbacks[0] = bad[i];
			in.nfallbacks = 1;
		} else {
			/* A count past the limit (encoded, not its strings). */
			for (int k = 0; k < HEAVY_MAX_FALLBACKS; k++)
				in.fallbacks[k] = "x";
			in.nfallbacks = HEAVY_MAX_FALLBACKS + 1;
		}
		m_create(&b, MSG_JOB_RUN);
		job_encode(&b, &in);
		m_close(&b, 1 << 20);
		r = payload_of(&b, &hdr);
		cr_assert_eq(job_decode(&r, &out), -1, "case %zu", i);
		buf_free(&b);
	}
}

Test(proto, usage_report_names_the_model_and_fallback)
{
	struct job_call		c = { 0, 200, 10, 0, 2, JOB_FB_PAYMENT };
	struct job_call		bad[] = {
		{ 0, 200, 10, 0, HEAVY_MAX_FALLBACKS + 1, 0 },
		{ 0, 200, 10, 0, 1, JOB_FB_LAST + 1 },
		{ 0, 200, 10, 0, 0, JOB_FB_NOT_FOUND },	/* a fallback to 0 */
	};
	struct job_report	rep;

	cr_assert_eq(usage_decodes(&c, &rep), 0);
	cr_assert_eq(rep.call.model, 2);
	cr_assert_eq(rep.call.fallback, JOB_FB_PAYMENT);
	job_report_clear(&rep);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(usage_decodes(&bad[i], &rep), -1, "case %zu", i);
}

/* Hedging (proto 9): the hedges in the usage, hedge_ms in the attach and
 * the job, and which transfer answered in egress's response, bounded. */
Test(proto, hedges_on_the_wire)
{
	struct usage		u = { .prompt_tokens = 2, .hedged_calls = 3,
	    .hedges_won = 2 }, got;
	struct egress_attach	a = { .worker_id = 1, .base_url = "b",
	    .search_url = "", .user_agent = "", .task = "t", .hedge_ms = 250 },
				ga;
	struct egress_resp	s = { .id = 1, .result = EGRESS_OK,
	    .status = 200, .hedge = EGRESS_HEDGE_WON, .error = "",
	    .retry_after = "", .reset = "", .content_type = "", .body = "{}",
	    .body_len = 2 }, gs;
	struct mreader		r;
	struct buf		b;

	buf_init(&b, 0);
	usage_encode(&b, &u);
	m_reader_init(&r, b.data, b.len);
	cr_assert_eq(usage_decode(&r, &got), 0);
	cr_assert_eq(m_end(&r), 0);
	cr_assert_eq(got.hedged_calls, 3);
	cr_assert_eq(got.hedges_won, 2);
	buf_reset(&b);
	egress_attach_encode(&b, &a);
	cr_assert_eq(egress_attach_decode(b.data, b.len, &ga), 0);
	cr_assert_eq(ga.hedge_ms, 250);
	egress_attach_clear(&ga);
	buf_reset(&b);
	egress_resp_encode(&b, &s);
	cr_assert_eq(egress_resp_decode(b.data, b.len, &gs), 0);
	cr_assert_eq(gs.hedge, EGRESS_HEDGE_WON);
	egress_resp_clear(&gs);
	buf_reset(&b);
	s.hedge = EGRESS_HEDGE_WON + 1;
	egress_resp_encode(&b, &s);
	cr_assert_eq(egress_resp_decode(b.data, b.len, &gs), -1,
	    "no such hedge outcome");
	buf_free(&b);
}

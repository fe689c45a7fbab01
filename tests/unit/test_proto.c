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

	m_create(&b, MSG_JOB_RUN);
	job_encode(&b, &in);
	cr_assert_eq(m_close(&b, 1 << 20), 0);
	r = payload_of(&b, &hdr);
	cr_assert_eq(hdr.type, MSG_JOB_RUN);
	cr_assert_eq(job_decode(&r, &out), 0);
	cr_assert_eq(m_end(&r), 0);
	cr_assert_eq(out.index, 3);
	cr_assert_eq(out.budget_ms, 1234);
	cr_assert_str_eq(out.api_key, "sk-secret");
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
	b.data[0] = 9;			/* version */
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

/*
 * The frames of heavyd-egress: a worker's request (what egress reads from
 * a hostile worker), egress's answer and its notes of what holds a call
 * (what a worker reads), and heavyd's attach and configuration frames.
 * The first byte picks the decoder; a request, an answer or a note that
 * decodes is encoded again and must give the same bytes.
 */
#include "fuzz.h"

#include "../../proto/proto.h"

static void
fuzz_same(const struct buf *b, const uint8_t *p, size_t len)
{
	if (b->len != len || memcmp(b->data, p, len) != 0)
		abort();	/* decode and encode disagree */
}

static void
fuzz_req(const uint8_t *p, size_t len)
{
	struct egress_req	q;
	struct buf		b;

	if (egress_req_decode(p, len, &q) == -1)
		return;
	if (q.kind < EGRESS_LLM || q.kind > EGRESS_PAGE ||
	    strlen(q.target) > EGRESS_MAX_TARGET)
		abort();	/* accepted what it must refuse */
	buf_init(&b, 0);
	egress_req_encode(&b, &q);
	fuzz_same(&b, p, len);
	buf_free(&b);
	egress_req_clear(&q);
}

static void
fuzz_resp(const uint8_t *p, size_t len)
{
	struct egress_resp	s;
	struct buf		b;

	if (egress_resp_decode(p, len, &s) == -1)
		return;
	if (s.result < EGRESS_OK || s.result > EGRESS_RESULT_LAST ||
	    s.body[s.body_len] != '\0')
		abort();
	buf_init(&b, 0);
	egress_resp_encode(&b, &s);
	fuzz_same(&b, p, len);
	buf_free(&b);
	egress_resp_clear(&s);
}

static void
fuzz_note(const uint8_t *p, size_t len)
{
	struct egress_note	n;
	struct buf		b;

	if (egress_note_decode(p, len, &n) == -1)
		return;
	if (n.hold < EGRESS_HOLD_PAUSE || n.hold > EGRESS_HOLD_LAST)
		abort();
	buf_init(&b, 0);
	egress_note_encode(&b, &n);
	fuzz_same(&b, p, len);
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct egress_attach	a;
	struct egress_config	c;

	if (len < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		fuzz_req(data + 1, len - 1);
		break;
	case 1:
		fuzz_resp(data + 1, len - 1);
		break;
	case 2:
		if (egress_attach_decode(data + 1, len - 1, &a) == 0)
			egress_attach_clear(&a);
		break;
	case 3:
		if (egress_config_decode(data + 1, len - 1, &c) == 0)
			egress_config_clear(&c);
		break;
	default:
		fuzz_note(data + 1, len - 1);
		break;
	}
	return 0;
}

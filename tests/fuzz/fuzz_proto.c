/*
 * Frames between the processes: the header check, then the typed readers
 * both sides use (a job and its sandbox, as the zygote and a worker read
 * them; a worker's reports, as the supervisor reads them: a hostile
 * worker writes these).  The first byte picks the reader; a job that
 * decodes is encoded again and must give the same bytes.
 */
#include "fuzz.h"

#include "../../proto/proto.h"

static void
fuzz_job(const uint8_t *p, size_t len)
{
	struct mreader	r;
	struct job	job;
	struct buf	b;

	memset(&job, 0, sizeof job);
	m_reader_init(&r, p, len);
	if (job_decode(&r, &job) == 0 && m_end(&r) == 0) {
		buf_init(&b, 0);
		job_encode(&b, &job);
		if (b.len != len || memcmp(b.data, p, len) != 0)
			abort();	/* decode and encode disagree */
		buf_free(&b);
	}
	job_clear(&job);
}

static void
fuzz_sandbox(const uint8_t *p, size_t len)
{
	struct mreader	r;
	struct sandbox	sb;

	memset(&sb, 0, sizeof sb);
	m_reader_init(&r, p, len);
	if (sandbox_decode(&r, &sb) == 0)
		m_end(&r);
	sandbox_clear(&sb);
}

static void
fuzz_usage(const uint8_t *p, size_t len)
{
	struct mreader	r;
	struct usage	u;
	char		*s = NULL;

	m_reader_init(&r, p, len);
	usage_decode(&r, &u);
	m_get_str(&r, &s);
	free(s);
	m_end(&r);
}

/* The second byte picks the message type, the rest is its payload. */
static void
fuzz_report(const uint8_t *p, size_t len)
{
	struct job_report	rep;

	if (len < 1)
		return;
	if (job_report_decode(p[0] % 10, p + 1, len - 1, &rep) == 0)
		job_report_clear(&rep);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct msg_hdr	hdr;

	if (len < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		if (m_frame_check(data + 1, len - 1, 1 << 20, &hdr) == FRAME_OK
		    && hdr.len > len - 1 - PROTO_HDR_LEN)
			abort();	/* a frame said complete past the data */
		break;
	case 1:
		fuzz_job(data + 1, len - 1);
		break;
	case 2:
		fuzz_sandbox(data + 1, len - 1);
		break;
	case 4:
		fuzz_report(data + 1, len - 1);
		break;
	default:
		fuzz_usage(data + 1, len - 1);
		break;
	}
	return 0;
}

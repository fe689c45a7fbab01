/*
 * A worker's side of heavyd-egress: its requests go out as frames on the
 * socket heavyd passed it (MSG_JOB_EGRESS), and the answers come back on
 * it.  A worker has no other way out: its sandbox denies socket().  When
 * egress dies, the socket closes and every call in flight fails, saying
 * so; heavyd starts another egress for the workers after.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

#define EGRESS_CLIENT_MAX_FRAME	(EGRESS_MAX_BODY + (64u << 10))

static int	egress_fd = -1;
static bool	egress_gone;
static uint32_t	egress_next_id;

void
egress_client_set(int fd)
{
	egress_fd = fd;
}

static int
egress_write_all(const char *p, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = write(egress_fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Reads len bytes: 0, -1 at EOF or an error, 1 when the deadline passed
 * before the first byte.  Once a byte has come the rest is waited for
 * without a deadline (egress writes whole frames), so the stream stays in
 * step for the next call.
 */
static int
egress_read_all(void *p, size_t len, int64_t deadline)
{
	struct pollfd	pfd = { .fd = egress_fd, .events = POLLIN };
	int64_t		left;
	bool		begun = false;
	ssize_t		n;

	while (len > 0) {
		left = begun ? 60000 : deadline - now_ms();
		if (left <= 0)
			return 1;
		if (poll(&pfd, 1, left > 60000 ? 60000 : (int)left) <= 0)
			continue;
		n = read(egress_fd, p, len);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -1;
		begun = true;
		p = (char *)p + n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * MSG_EGRESS_WAITING: the call waits in the governor's line (the wait
 * counts against this step's deadline), or its upstream's breaker failed
 * it fast or sends it as its probe; the task's progress says which.
 */
static int
egress_waiting(const char *payload, size_t len)
{
	struct egress_note	n;
	char			about[48] = "";

	if (egress_note_decode(payload, len, &n) == -1)
		return -1;
	if (n.seconds > 0)
		snprintf(about, sizeof about, ", about %u s", n.seconds);
	switch (n.hold) {
	case EGRESS_HOLD_PAUSE:
		worker_step("waiting for the rate limit (the upstream asked "
		    "for a pause%s)", about);
		break;
	case EGRESS_HOLD_RPM:
		worker_step("waiting for the rate limit (limits.egress_rpm "
		    "spent%s)", about);
		break;
	case EGRESS_HOLD_CAP:
		worker_step("waiting for the rate limit (heavyd-egress holds "
		    "the call for a permit to its upstream: "
		    "limits.egress_max_calls in flight)");
		break;
	case EGRESS_HOLD_TPM:
		worker_step("waiting for the token budget (limits.egress_tpm "
		    "spent in the last minute%s)", about);
		break;
	case EGRESS_HOLD_OPEN:
		worker_step("upstream failing: circuit open for %u s (calls "
		    "fail fast, unsent, until a probe succeeds)", n.seconds);
		break;
	case EGRESS_HOLD_HALF_OPEN:
		worker_step("upstream failing: circuit half-open, its probe "
		    "not answered yet (this call fails fast, unsent)");
		break;
	case EGRESS_HOLD_PROBE:
		worker_step("upstream failing: circuit half-open, this call "
		    "is its probe");
		break;
	}
	return 2;
}

/* One answer: 0, 1 at the deadline, 2 for a note (no answer yet), -1 when
 * egress is gone or broke. */
static int
egress_read_resp(struct egress_resp *s, int64_t deadline)
{
	uint8_t		 hdrbuf[PROTO_HDR_LEN];
	struct msg_hdr	 hdr;
	char		*payload;
	int		 rc;

	if ((rc = egress_read_all(hdrbuf, sizeof hdrbuf, deadline)) != 0)
		return rc;
	if (m_frame_check(hdrbuf, sizeof hdrbuf, EGRESS_CLIENT_MAX_FRAME,
	    &hdr) == FRAME_INVALID || (hdr.type != MSG_EGRESS_RESPONSE &&
	    hdr.type != MSG_EGRESS_WAITING))
		return -1;
	payload = xmalloc(hdr.len + 1);
	/* A frame begun is read whole: the stream stays in step. */
	rc = hdr.len == 0 ? 0 : egress_read_all(payload, hdr.len, INT64_MAX);
	if (rc == 0 && hdr.type == MSG_EGRESS_WAITING)
		rc = egress_waiting(payload, hdr.len);
	else if (rc == 0 && egress_resp_decode(payload, hdr.len, s) == -1)
		rc = -1;
	free(payload);
	return rc;
}

static int
egress_send(struct egress_req *q)
{
	struct buf	frame;
	int		rc;

	q->id = ++egress_next_id;
	m_create(&frame, MSG_EGRESS_REQUEST);
	egress_req_encode(&frame, q);
	if (m_close(&frame, EGRESS_CLIENT_MAX_FRAME) == -1) {
		buf_free(&frame);
		return -1;
	}
	rc = egress_write_all(frame.data, frame.len);
	buf_free(&frame);
	return rc;
}

static void
egress_lost(char *err, size_t errlen)
{
	egress_gone = true;
	snprintf(err, errlen, "heavyd-egress, the process that makes every "
	    "upstream request, %s", egress_fd == -1 ? "was not running when "
	    "this worker started" : "went away during the call (heavyd "
	    "restarts it)");
}

/*
 * Sends n requests at once and waits for their answers until deadline.
 * An answer that did not come has result 0.  -1 with err when egress is
 * gone: no answer will come, now or for a later call.
 */
int
egress_calls(struct egress_req *qs, struct egress_resp *ss, size_t n,
    int64_t deadline, char *err, size_t errlen)
{
	struct egress_resp	s;
	size_t			got = 0;
	int			rc;

	memset(ss, 0, n * sizeof *ss);
	if (egress_fd == -1 || egress_gone) {
		egress_lost(err, errlen);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (egress_send(&qs[i]) == -1) {
			egress_lost(err, errlen);
			return -1;
		}
	while (got < n) {
		if ((rc = egress_read_resp(&s, deadline)) == 1)
			return 0;
		if (rc == 2)
			continue;
		if (rc == -1) {
			egress_lost(err, errlen);
			return -1;
		}
		for (size_t i = 0; i < n; i++)
			if (qs[i].id == s.id && ss[i].result == 0) {
				ss[i] = s;
				memset(&s, 0, sizeof s);
				got++;
				break;
			}
		egress_resp_clear(&s);	/* a late answer to an older call */
	}
	return 0;
}

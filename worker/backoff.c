/* When, and whether, to retry an LLM call. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker.h"

#define HINT_MAX_MS	(24LL * 3600 * 1000)

int
backoff_retryable_status(long status)
{
	switch (status) {
	case 408: case 429: case 500: case 502: case 503: case 504:
		return 1;
	default:
		return 0;
	}
}

/* Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
int64_t
backoff_delay_ms(int attempt, int base_ms, int max_ms, uint32_t rnd)
{
	int64_t	cap = base_ms;

	for (int i = 0; i < attempt && cap < max_ms; i++)
		cap *= 2;
	if (cap > max_ms)
		cap = max_ms;
	if (cap < 0)
		cap = 0;
	return (int64_t)(rnd % (uint64_t)(cap + 1));
}

static int64_t
hint_clamp(int64_t ms)
{
	if (ms < 0)
		return 0;
	return ms > HINT_MAX_MS ? HINT_MAX_MS : ms;
}

/* A whole non-negative decimal number, or -1. */
static long long
hint_number(const char *s)
{
	char		*end;
	long long	 v;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	return errno != 0 || *end != '\0' ? -1 : v;
}

/* Retry-After (seconds or HTTP-date), else X-RateLimit-Reset (epoch s/ms). */
int64_t
backoff_hint_ms(const char *retry_after, const char *ratelimit_reset,
    time_t now)
{
	struct tm	 tm;
	long long	 v;
	const char	*end;

	if (retry_after != NULL && *retry_after != '\0') {
		if ((v = hint_number(retry_after)) >= 0)
			return hint_clamp(v > HINT_MAX_MS / 1000 ? HINT_MAX_MS :
			    v * 1000);
		memset(&tm, 0, sizeof tm);
		end = strptime(retry_after, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (end != NULL && *end == '\0')
			return hint_clamp(((int64_t)timegm(&tm) - now) * 1000);
		return -1;
	}
	if (ratelimit_reset != NULL && *ratelimit_reset != '\0') {
		if ((v = hint_number(ratelimit_reset)) < 0)
			return -1;
		if (v > 100000000000LL)		/* milliseconds since the epoch */
			return hint_clamp(v - (int64_t)now * 1000);
		return hint_clamp((v - (int64_t)now) * 1000);
	}
	return -1;
}

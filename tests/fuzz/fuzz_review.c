/* A peer reviewer's ranking: labels best first, each shown once. */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	unsigned	 order[HEAVY_MAX_AGENTS], n;
	char		*text, err[256];

	if (len < 1)
		return 0;
	n = 1 + data[0] % HEAVY_MAX_AGENTS;
	text = fuzz_cstr(data + 1, len - 1);
	review_parse(text, n, order, err, sizeof err);
	free(text);
	return 0;
}

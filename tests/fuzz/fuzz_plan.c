/* The planner's output: a JSON array of n questions, found in prose. */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char		*text, **questions, err[256];
	unsigned	 n;

	if (len < 1)
		return 0;
	n = 1 + data[0] % HEAVY_MAX_AGENTS;
	text = fuzz_cstr(data + 1, len - 1);
	if (plan_parse(text, n, &questions, err, sizeof err) == 0)
		plan_free(questions, n);
	free(text);
	return 0;
}

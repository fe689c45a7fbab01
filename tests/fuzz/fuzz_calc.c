/* The calculate tool's expressions, as a model writes them. */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char	*expr = fuzz_cstr(data, len), err[256];
	double	 out;

	calc_eval(expr, &out, err, sizeof err);
	free(expr);
	return 0;
}

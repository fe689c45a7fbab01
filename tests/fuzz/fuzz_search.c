/* A search backend's answer (SearXNG or Brave JSON), first byte picks. */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct search_result	*res;
	unsigned		 n, max;
	uint32_t		 backend;
	char			*body, err[256];

	if (len < 2)
		return 0;
	backend = data[0] & 1 ? SEARCH_BACKEND_BRAVE : SEARCH_BACKEND_SEARXNG;
	max = 1 + data[1] % 20;
	body = fuzz_cstr(data + 2, len - 2);
	if (search_parse(backend, body, len - 2, max, &res, &n, err,
	    sizeof err) == 0)
		search_results_free(res, n);
	free(body);
	return 0;
}

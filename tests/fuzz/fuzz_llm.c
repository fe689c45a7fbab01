/* An LLM provider's response body: the reply, usage and error objects. */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct llm_reply	 reply;
	struct llm_error	 err;
	struct usage		 u;
	char			*body = fuzz_cstr(data, len);

	memset(&reply, 0, sizeof reply);
	memset(&err, 0, sizeof err);
	memset(&u, 0, sizeof u);
	if (llm_parse_body(body, len, &reply, &u, &err) == 0)
		llm_reply_clear(&reply);
	free(body);
	return 0;
}

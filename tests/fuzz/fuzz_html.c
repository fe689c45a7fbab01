/* A fetched page, turned into text by libxml2's HTML parser. */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static int	 loaded;
	struct buf	 out;

	if (!loaded) {
		if (html_load() == -1)
			abort();	/* the harness is useless without it */
		loaded = 1;
	}
	buf_init(&out, 0);
	html_to_text((const char *)data, len, len % 2 ? "utf-8" : NULL,
	    4096, &out);
	buf_free(&out);
	return 0;
}

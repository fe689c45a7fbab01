/* The tokens file (auth.tokens_file): its strict parser, and each identity
 * it accepts written back by token_format and read again the same. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "../../common/common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct tokens	t, again;
	struct buf	b;
	char		err[512];

	if (tokens_parse((const char *)data, len, "fuzz", &t, err,
	    sizeof err) == -1)
		return 0;
	buf_init(&b, 0);
	for (int i = 0; i < t.n; i++)
		token_format(&t.v[i], &b);
	if (tokens_parse(b.data ? b.data : "", b.len, "again", &again, err,
	    sizeof err) == -1 || again.n != t.n)
		abort();
	for (int i = 0; i < t.n; i++)
		if (strcmp(again.v[i].name, t.v[i].name) != 0 ||
		    memcmp(again.v[i].digest, t.v[i].digest,
		    TOKEN_DIGEST_LEN) != 0 ||
		    memcmp(again.v[i].lim.set, t.v[i].lim.set,
		    sizeof t.v[i].lim.set) != 0)
			abort();
	/* (A dollar figure may lose digits past the ninth decimal.) */
	tokens_free(&again);
	tokens_free(&t);
	buf_free(&b);
	return 0;
}

/*
 * A model's tool-call arguments against the tool's JSON Schema: the first
 * byte picks the agent tool, the rest is the arguments' JSON text.
 */
#include "fuzz.h"

#include "../../worker/worker.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct json_object	*schemas[64];
	struct json_object		*args;
	const struct tooldef		*t;
	char				*text, err[256];

	if (len < 1 || ntooldefs == 0)
		return 0;
	t = &tooldefs[data[0] % ntooldefs];
	if (schemas[data[0] % ntooldefs] == NULL &&
	    (schemas[data[0] % ntooldefs] = json_tokener_parse(t->schema)) ==
	    NULL)
		abort();	/* our own schema must parse */
	text = fuzz_cstr(data + 1, len - 1);
	if ((args = json_tokener_parse(text)) != NULL) {
		schema_validate(schemas[data[0] % ntooldefs], args, err,
		    sizeof err);
		json_object_put(args);
	}
	free(text);
	return 0;
}

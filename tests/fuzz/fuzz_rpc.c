/* JSON-RPC lines from an MCP client: rpc_parse and the id key. */
#include "fuzz.h"

#include "../../supervisor/supervisor.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct rpc_msg	 m;
	char		*line = fuzz_cstr(data, len), *key;

	if (rpc_parse(line, len, &m) == 0 && m.id != NULL) {
		key = rpc_id_key(m.id);
		free(key);
	}
	rpc_msg_clear(&m);
	free(line);
	return 0;
}

/* heavyd-worker: executed by heavyd as its zygote; by hand, only --version.
 * heavyd-egress is another program (egress_main.c): no libcurl here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--zygote") == 0)
		return zygote_main(ZYGOTE_FD);
	/* heavyd runs the worker beside it: a mismatch is worth seeing. */
	if (argc == 2 && (strcmp(argv[1], "--version") == 0 ||
	    strcmp(argv[1], "-V") == 0)) {
		printf("heavyd-worker %s (%s)\n", HEAVY_VERSION, HEAVY_COMMIT);
		return 0;
	}
	fprintf(stderr, "heavyd-worker: started by heavyd, not by hand\n");
	return 2;
}

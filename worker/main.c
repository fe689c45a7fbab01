/* heavyd-worker: executed by heavyd as its zygote; never run by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--zygote") == 0)
		return zygote_main(ZYGOTE_FD);
	fprintf(stderr, "heavyd-worker: started by heavyd, not by hand\n");
	return 2;
}

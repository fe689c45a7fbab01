/*
 * heavyd-egress: executed by heavyd (with --egress, as before it was a
 * binary of its own); by hand, only --version.  A program apart from
 * heavyd-worker so that only this one process maps libcurl and the TLS
 * stack it pulls in (OpenSSL, GnuTLS, Kerberos, LDAP, SSH, ...): every
 * worker is a fork of the zygote, and each library the zygote maps is
 * copied into every fork's page tables and dirties pages of its own.
 */
#include <stdio.h>
#include <string.h>

#include "worker.h"
#include "egress.h"

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--egress") == 0)
		return egress_main(ZYGOTE_FD);
	if (argc == 2 && (strcmp(argv[1], "--version") == 0 ||
	    strcmp(argv[1], "-V") == 0)) {
		printf("heavyd-egress %s (%s)\n", HEAVY_VERSION, HEAVY_COMMIT);
		return 0;
	}
	fprintf(stderr, "heavyd-egress: started by heavyd, not by hand\n");
	return 2;
}

/*
 * Where the unit tests put their files: $TMPDIR when it is an absolute
 * path (scripts/check points it at a directory of its own, removed after
 * the run, and checks that nothing is left in it), else /tmp.
 */
#ifndef HEAVYD_TESTS_TMPDIR_H
#define HEAVYD_TESTS_TMPDIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

/* buf = "<tmpdir>/<name>-XXXXXX", for mkstemp or mkdtemp. */
static inline const char *
unit_tmp(char *buf, size_t size, const char *name)
{
	const char	*d = getenv("TMPDIR");
	int		 n;

	if (d == NULL || *d != '/')
		d = "/tmp";
	n = snprintf(buf, size, "%s/%s-XXXXXX", d, name);
	cr_assert(n > 0 && (size_t)n < size, "TMPDIR %s is too long", d);
	return buf;
}

#endif

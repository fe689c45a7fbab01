/*
 * tests/fuzz/: libFuzzer harnesses, one per parser of untrusted input.
 * Each file defines LLVMFuzzerTestOneInput and nothing else of note; they
 * are built by tests/fuzz/fuzz.mk with -fsanitize=fuzzer,address,undefined.
 */
#ifndef HEAVY_FUZZ_H
#define HEAVY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The input as a NUL-terminated string (the parsers take C strings). */
static inline char *
fuzz_cstr(const uint8_t *data, size_t len)
{
	char	*s = malloc(len + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

#endif

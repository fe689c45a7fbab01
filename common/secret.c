/*
 * The secrets heavyd holds (the LLM key, the search key), kept here so that
 * any text that came from outside can be cleaned of them before it is
 * stored, logged or returned: some providers echo the key they rejected in
 * their error message.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define SECRET_MAX		8
#define SECRET_MIN_LEN		8	/* shorter ones would cut ordinary words */
#define SECRET_MASK		"[redacted]"

static char	*secrets[SECRET_MAX];
static int	 nsecrets;

void
secret_add(const char *s)
{
	if (s == NULL || strlen(s) < SECRET_MIN_LEN || nsecrets == SECRET_MAX)
		return;
	for (int i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], s) == 0)
			return;
	secrets[nsecrets++] = xstrdup(s);
}

void
secret_clear(void)
{
	for (int i = 0; i < nsecrets; i++) {
		explicit_bzero(secrets[i], strlen(secrets[i]));
		free(secrets[i]);
	}
	nsecrets = 0;
}

/* text with one secret masked wherever it occurs; NULL if it does not. */
static char *
secret_mask(const char *text, const char *secret)
{
	const char	*p, *from = text;
	size_t		 n = strlen(secret);
	struct buf	 out;

	if (strstr(text, secret) == NULL)
		return NULL;
	buf_init(&out, 0);
	while ((p = strstr(from, secret)) != NULL) {
		buf_add(&out, from, (size_t)(p - from));
		buf_addstr(&out, SECRET_MASK);
		from = p + n;
	}
	buf_addstr(&out, from);
	return buf_release(&out);
}

/* Masks every secret in *text, replacing the string when one was there. */
void
secret_redact(char **text)
{
	char	*masked;

	for (int i = 0; *text != NULL && i < nsecrets; i++) {
		if ((masked = secret_mask(*text, secrets[i])) == NULL)
			continue;
		explicit_bzero(*text, strlen(*text));
		free(*text);
		*text = masked;
	}
}

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

/* Bytes that may hold NULs: each secret overwritten with '*' in place. */
void
secret_mask_bytes(char *p, size_t len)
{
	char	*at;
	size_t	 n;

	for (int i = 0; i < nsecrets; i++) {
		n = strlen(secrets[i]);
		for (size_t off = 0; off + n <= len; off = (size_t)(at - p) + n) {
			if ((at = memmem(p + off, len - off, secrets[i], n)) ==
			    NULL)
				break;
			memset(at, '*', n);
		}
	}
}

/*
 * A URL's credentials ("https://user:pass@host/...") are a secret like a
 * key: where url holds some, the span between "://" and the last "@"
 * before the path, or NULL.
 */
static const char *
secret_userinfo(const char *url, size_t *len)
{
	const char	*p = strstr(url, "://"), *end, *at;

	if (p == NULL)
		return NULL;
	p += 3;
	end = p + strcspn(p, "/?#");
	at = memrchr(p, '@', (size_t)(end - p));
	if (at == NULL || at == p)
		return NULL;
	*len = (size_t)(at - p);
	return p;
}

/* The URL with its credentials, if any, masked: for logs and reports. */
char *
secret_url(const char *url)
{
	const char	*info;
	size_t		 len;

	if (url == NULL)
		return NULL;
	if ((info = secret_userinfo(url, &len)) == NULL)
		return xstrdup(url);
	return xasprintf("%.*s" SECRET_MASK "%s", (int)(info - url), url,
	    info + len);
}

/* A URL's credentials become a secret, masked wherever they show up. */
void
secret_add_url(const char *url)
{
	const char	*info;
	size_t		 len;
	char		*s;

	if (url == NULL || (info = secret_userinfo(url, &len)) == NULL)
		return;
	s = xstrndup(info, len);
	secret_add(s);
	explicit_bzero(s, len);
	free(s);
}

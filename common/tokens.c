/*
 * The tokens file (auth.tokens_file): who may call heavyd over HTTP.
 * One identity a line:
 *
 *	NAME SHA256-HEX [KEY=VALUE ...]
 *
 * NAME is 1-64 of [A-Za-z0-9._-], starting with a letter or a digit; the
 * digest is the SHA-256 of the bearer token, in 64 lowercase hex digits
 * (the token itself is never written down); the limits are those of
 * token_limit_keys.  Blank lines and lines starting with '#' are skipped.
 * The parser is strict: anything else is an error naming the line.
 */
#include <sys/random.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "common.h"

#define TOKENS_MAX_LINE		4096
#define TOKENS_MAX_FILE		(4 << 20)

/* Every limit a line may set, in struct token_limits' order. */
static const struct {
	const char	*key;
	long long	 min, max;
} token_limit_keys[TOKEN_NLIMITS] = {
	[TOKEN_CONCURRENT_TASKS] =	{ "concurrent_tasks", 0, 1 << 20 },
	[TOKEN_LIVE_WORKERS] =		{ "live_workers", 0, 65535 },
	[TOKEN_REQUESTS_PER_MINUTE] =	{ "requests_per_minute", 1,
					  TOKEN_MAX_RATE },
	[TOKEN_MAX_NUM_AGENTS] =	{ "max_num_agents", 1,
					  HEAVY_MAX_AGENTS },
	[TOKEN_MAX_TIMEOUT] =		{ "max_timeout", 1, 86400 },
	[TOKEN_ORCHESTRATIONS_PER_HOUR] = { "orchestrations_per_hour", 0,
					  1 << 30 },
	[TOKEN_TOKENS_PER_DAY] =	{ "tokens_per_day", 0, 1LL << 40 },
	[TOKEN_USD_PER_DAY] =		{ "usd_per_day", 0, 1000000 },
};

const char *
token_limit_name(int i)
{
	return i >= 0 && i < TOKEN_NLIMITS ? token_limit_keys[i].key : NULL;
}

bool
token_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > TOKEN_NAME_MAX || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("._-", s[i]) == NULL)
			return false;
	return true;
}

/* SHA-256 of the token. */
void
token_digest(const char *token, size_t len, uint8_t out[TOKEN_DIGEST_LEN])
{
	struct sha256_ctx	ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, len, (const uint8_t *)token);
	sha256_digest(&ctx, TOKEN_DIGEST_LEN, out);
	explicit_bzero(&ctx, sizeof ctx);
}

static int
token_hex_digest(const char *s, size_t len, uint8_t out[TOKEN_DIGEST_LEN])
{
	static const char	hex[] = "0123456789abcdef";
	const char		*hi, *lo;

	if (len != 2 * TOKEN_DIGEST_LEN)
		return -1;
	for (size_t i = 0; i < TOKEN_DIGEST_LEN; i++) {
		if (s[2 * i] == '\0' || s[2 * i + 1] == '\0' ||
		    (hi = strchr(hex, s[2 * i])) == NULL ||
		    (lo = strchr(hex, s[2 * i + 1])) == NULL)
			return -1;
		out[i] = (uint8_t)((hi - hex) << 4 | (lo - hex));
	}
	return 0;
}

/* A value: a whole number from 0 to max (usd_per_day: a decimal). */
static int
token_limit_value(int k, const char *v, size_t len, double *out)
{
	char		 buf[32], *end;
	double		 d;

	if (len == 0 || len >= sizeof buf || !isdigit((unsigned char)v[0]))
		return -1;
	memcpy(buf, v, len);
	buf[len] = '\0';
	if (strspn(buf, k == TOKEN_USD_PER_DAY ? "0123456789." :
	    "0123456789") != len)
		return -1;		/* no sign, exponent, hex or space */
	errno = 0;
	d = k == TOKEN_USD_PER_DAY ? strtod(buf, &end) :
	    (double)strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0' ||
	    !(d >= (double)token_limit_keys[k].min) ||
	    d > (double)token_limit_keys[k].max)
		return -1;
	*out = d;
	return 0;
}

/* One KEY=VALUE into lim; -1 and why. */
int
token_limit_parse(const char *kv, size_t len, struct token_limits *lim,
    char *err, size_t errlen)
{
	const char	*eq = memchr(kv, '=', len);
	size_t		 klen = eq ? (size_t)(eq - kv) : len;
	double		 d;
	int		 k;

	for (k = 0; k < TOKEN_NLIMITS; k++)
		if (strlen(token_limit_keys[k].key) == klen &&
		    strncmp(kv, token_limit_keys[k].key, klen) == 0)
			break;
	if (eq == NULL || k == TOKEN_NLIMITS) {
		snprintf(err, errlen, "\"%.*s\": expected KEY=VALUE with KEY "
		    "one of concurrent_tasks, live_workers, requests_per_minute, "
		    "max_num_agents, max_timeout, orchestrations_per_hour, "
		    "tokens_per_day, usd_per_day", (int)(len > 64 ? 64 : len),
		    kv);
		return -1;
	}
	if (lim->set[k]) {
		snprintf(err, errlen, "%s: set twice", token_limit_keys[k].key);
		return -1;
	}
	if (token_limit_value(k, eq + 1, len - klen - 1, &d) == -1) {
		snprintf(err, errlen, "%s: expected %s from %lld to %lld, got "
		    "\"%.*s\"", token_limit_keys[k].key, k == TOKEN_USD_PER_DAY ?
		    "US dollars" : "a whole number", token_limit_keys[k].min,
		    token_limit_keys[k].max,
		    (int)(len - klen - 1 > 32 ? 32 : len - klen - 1), eq + 1);
		return -1;
	}
	lim->set[k] = true;
	lim->v[k] = d;
	return 0;
}

/* The next whitespace-separated field of [*p, end): its start and length. */
static size_t	token_field(const char **, const char *, const char **);

/* "KEY=VALUE KEY=VALUE" (auth.defaults) into lim; -1 and why. */
int
token_limits_parse(const char *text, struct token_limits *lim, char *err,
    size_t errlen)
{
	const char	*p = text, *end = text + strlen(text), *f;
	size_t		 n;

	memset(lim, 0, sizeof *lim);
	while ((n = token_field(&p, end, &f)) > 0)
		if (token_limit_parse(f, n, lim, err, errlen) == -1)
			return -1;
	return 0;
}


static size_t
token_field(const char **p, const char *end, const char **start)
{
	const char	*s = *p;

	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	*start = s;
	while (s < end && *s != ' ' && *s != '\t')
		s++;
	*p = s;
	return (size_t)(s - *start);
}

/* One identity's line; -1 and why (without the line number). */
static int
token_parse_line(const char *line, size_t len, struct token_ident *id,
    char *err, size_t errlen)
{
	const char	*p = line, *end = line + len, *f;
	size_t		 n;

	memset(id, 0, sizeof *id);
	n = token_field(&p, end, &f);
	if (!token_name_valid(f, n)) {
		snprintf(err, errlen, "expected a name of 1 to %d letters, "
		    "digits, '.', '_' or '-' (starting with a letter or a "
		    "digit) first", TOKEN_NAME_MAX);
		return -1;
	}
	memcpy(id->name, f, n);
	n = token_field(&p, end, &f);
	if (token_hex_digest(f, n, id->digest) == -1) {
		snprintf(err, errlen, "%s: expected the token's SHA-256 in 64 "
		    "lowercase hex digits after the name", id->name);
		return -1;
	}
	while ((n = token_field(&p, end, &f)) > 0)
		if (token_limit_parse(f, n, &id->lim, err, errlen) == -1)
			return -1;
	return 0;
}

/* A name or a digest already in t: -1 and why. */
static int
token_unique(const struct tokens *t, const struct token_ident *id, char *err,
    size_t errlen)
{
	for (int i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].name, id->name) == 0) {
			snprintf(err, errlen, "%s: a second line for this name",
			    id->name);
			return -1;
		}
		if (memcmp(t->v[i].digest, id->digest, TOKEN_DIGEST_LEN) == 0) {
			snprintf(err, errlen, "%s: the same token as %s",
			    id->name, t->v[i].name);
			return -1;
		}
	}
	return 0;
}

static void
tokens_add(struct tokens *t, const struct token_ident *id)
{
	t->v = xrealloc(t->v, ((size_t)t->n + 1) * sizeof *t->v);
	t->v[t->n++] = *id;
}

/* A line of [text, end), or why it cannot be one. */
static int
tokens_line(struct tokens *t, const char *line, size_t len, char *why,
    size_t whylen)
{
	struct token_ident	id;
	size_t			i = 0;

	if (len > TOKENS_MAX_LINE) {
		snprintf(why, whylen, "longer than %d bytes", TOKENS_MAX_LINE);
		return -1;
	}
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len)) {
		snprintf(why, whylen, "a NUL or carriage return");
		return -1;
	}
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len || line[i] == '#')
		return 0;
	if (token_parse_line(line + i, len - i, &id, why, whylen) == -1 ||
	    token_unique(t, &id, why, whylen) == -1)
		return -1;
	tokens_add(t, &id);
	return 0;
}

/* Parses text (not NUL-terminated); file names it in errors ("FILE:LINE:
 * why").  On error t is left empty. */
int
tokens_parse(const char *text, size_t len, const char *file,
    struct tokens *t, char *err, size_t errlen)
{
	const char	*p = text, *end = text + len, *nl;
	char		 why[512];
	int		 lineno = 0;

	memset(t, 0, sizeof *t);
	while (p < end) {
		lineno++;
		nl = memchr(p, '\n', (size_t)(end - p));
		if (tokens_line(t, p, (nl ? nl : end) - p, why,
		    sizeof why) == -1) {
			snprintf(err, errlen, "%s:%d: %s", file, lineno, why);
			tokens_free(t);
			return -1;
		}
		p = nl ? nl + 1 : end;
	}
	return 0;
}

/* The whole file, read; -1 and why. */
static char *
tokens_slurp(const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat	 st;
	char		*text;
	ssize_t		 n;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1 ||
	    fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > TOKENS_MAX_FILE) {
		snprintf(err, errlen, "%s: %s", path, fd == -1 ||
		    errno != 0 ? strerror(errno) : "not a regular file of at "
		    "most 4 MiB");
		if (fd != -1)
			close(fd);
		return NULL;
	}
	text = xmalloc((size_t)st.st_size + 1);
	n = read(fd, text, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		snprintf(err, errlen, "%s: a short read", path);
		free(text);
		return NULL;
	}
	*len = (size_t)n;
	return text;
}

int
tokens_load(const char *path, struct tokens *t, char *err, size_t errlen)
{
	size_t	 len;
	char	*text;
	int	 rc;

	memset(t, 0, sizeof *t);
	errno = 0;
	if ((text = tokens_slurp(path, &len, err, errlen)) == NULL)
		return -1;
	rc = tokens_parse(text, len, path, t, err, errlen);
	free(text);
	return rc;
}

void
tokens_free(struct tokens *t)
{
	if (t->v != NULL)
		explicit_bzero(t->v, (size_t)t->n * sizeof *t->v);
	free(t->v);
	memset(t, 0, sizeof *t);
}

/* A limit's value as the file has it: never an exponent. */
void
token_limit_text(int k, double v, char *buf, size_t len)
{
	size_t	n;

	if (k != TOKEN_USD_PER_DAY) {
		snprintf(buf, len, "%lld", (long long)v);
		return;
	}
	snprintf(buf, len, "%.9f", v);
	n = strlen(buf);
	while (n > 1 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 1 && buf[n - 1] == '.')
		buf[--n] = '\0';
}

/* id's line, as tokens_parse reads it back, into b. */
void
token_format(const struct token_ident *id, struct buf *b)
{
	char	v[64];

	buf_printf(b, "%s ", id->name);
	for (size_t i = 0; i < TOKEN_DIGEST_LEN; i++)
		buf_printf(b, "%02x", id->digest[i]);
	for (int k = 0; k < TOKEN_NLIMITS; k++) {
		if (!id->lim.set[k])
			continue;
		token_limit_text(k, id->lim.v[k], v, sizeof v);
		buf_printf(b, " %s=%s", token_limit_keys[k].key, v);
	}
	buf_addstr(b, "\n");
}

/*
 * The tokens file heavyd reads: auth.tokens_file, else under systemd the
 * credential "tokens" when it exists; NULL: none (no authentication).
 */
const char *
tokens_path(const struct heavy_config *c, char *buf, size_t len)
{
	if (c->auth_tokens_file != NULL)
		return c->auth_tokens_file;
	return config_credential(HEAVY_CRED_TOKENS, buf, len);
}

/*
 * heavyd token add NAME [KEY=VALUE...] | list | revoke NAME: the tokens
 * file (common/tokens.c) from the shell.  A new token is 256 random bits
 * (getrandom), hex, after TOKEN_PREFIX; it is printed once, on stdout, and
 * only its SHA-256 is written down.  Every change rewrites the file whole
 * into a temporary file of mode 0600 beside it, then renames it over the
 * old one, under a lock on the directory: a reader (heavyd at SIGHUP)
 * sees the old file or the new one, never half of either, and two changes
 * at once do not lose one another.
 */
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"

#define TOKEN_EXIT_OK		0
#define TOKEN_EXIT_FAILED	1
#define TOKEN_EXIT_USAGE	2

static int
token_usage(void)
{
	fprintf(stderr, "usage: heavyd [--config FILE] token add NAME "
	    "[KEY=VALUE...]\n       heavyd [--config FILE] token list\n"
	    "       heavyd [--config FILE] token revoke NAME\n"
	    "KEY: concurrent_tasks, live_workers, requests_per_minute, "
	    "max_num_agents,\n     max_timeout, orchestrations_per_hour, "
	    "tokens_per_day, usd_per_day\n"
	    "The file: auth.tokens_file (HEAVY_AUTH_TOKENS_FILE).\n");
	return TOKEN_EXIT_USAGE;
}

/* The directory of path, locked; -1 and a message printed. */
static int
token_lock(const char *path)
{
	char	 dir[PATH_MAX];
	int	 fd;

	snprintf(dir, sizeof dir, "%s", path);
	if ((fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 || flock(fd, LOCK_EX) == -1) {
		fprintf(stderr, "%s: %s: %s\n", HEAVY_NAME, dir,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

/* The file's text ("" when it does not exist yet), and its identities. */
static char *
token_read(const char *path, struct tokens *t)
{
	char	 err[PATH_MAX + 512];
	FILE	*f;
	char	*text = NULL;
	size_t	 len = 0, n;
	char	 chunk[4096];

	memset(t, 0, sizeof *t);
	if ((f = fopen(path, "re")) == NULL && errno != ENOENT) {
		fprintf(stderr, "%s: %s: %s\n", HEAVY_NAME, path,
		    strerror(errno));
		return NULL;
	}
	text = xstrdup("");
	while (f != NULL && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		text = xrealloc(text, len + n + 1);
		memcpy(text + len, chunk, n);
		text[len += n] = '\0';
	}
	if (f != NULL)
		fclose(f);
	if (tokens_parse(text, len, path, t, err, sizeof err) == -1) {
		fprintf(stderr, "%s: %s\n", HEAVY_NAME, err);
		free(text);
		return NULL;
	}
	return text;
}

/* Replaces path with text: a temporary file of mode 0600, synced, renamed. */
static int
token_write(const char *path, const char *text)
{
	char	tmp[PATH_MAX];
	size_t	len = strlen(text);
	int	fd;

	if (snprintf(tmp, sizeof tmp, "%s.new.%ld", path, (long)getpid()) >=
	    (int)sizeof tmp)
		return -1;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) == -1)
		goto fail;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) == -1) {
		close(fd);
		unlink(tmp);
		goto fail;
	}
	close(fd);
	if (rename(tmp, path) == -1) {
		unlink(tmp);
		goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "%s: %s: %s\n", HEAVY_NAME, path, strerror(errno));
	return -1;
}

/* A new token: TOKEN_PREFIX and 256 random bits in hex. */
static void
token_new(char *out, size_t len)
{
	uint8_t	raw[TOKEN_RANDOM_BYTES];
	size_t	off = (size_t)snprintf(out, len, "%s", TOKEN_PREFIX);

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		fatal("getrandom");
	for (size_t i = 0; i < sizeof raw && off + 2 < len; i++, off += 2)
		snprintf(out + off, len - off, "%02x", raw[i]);
	explicit_bzero(raw, sizeof raw);
}

/* NAME and its limits, checked; -1 and a message printed. */
static int
token_ident_args(int argc, char **argv, struct token_ident *id)
{
	char	err[256];

	memset(id, 0, sizeof *id);
	if (!token_name_valid(argv[0], strlen(argv[0]))) {
		fprintf(stderr, "%s: token add: \"%.64s\": a name is 1 to %d "
		    "letters, digits, '.', '_' or '-', starting with a letter "
		    "or a digit\n", HEAVY_NAME, argv[0], TOKEN_NAME_MAX);
		return -1;
	}
	snprintf(id->name, sizeof id->name, "%s", argv[0]);
	for (int i = 1; i < argc; i++)
		if (token_limit_parse(argv[i], strlen(argv[i]), &id->lim, err,
		    sizeof err) == -1) {
			fprintf(stderr, "%s: token add: %s\n", HEAVY_NAME, err);
			return -1;
		}
	return 0;
}

static int
token_find(const struct tokens *t, const char *name)
{
	for (int i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return i;
	return -1;
}

static int
token_add(const char *path, int argc, char **argv)
{
	struct token_ident	 id;
	struct tokens		 t;
	struct buf		 b;
	char			 tok[sizeof TOKEN_PREFIX + 2 * TOKEN_RANDOM_BYTES];
	char			*text;
	int			 rc = TOKEN_EXIT_FAILED;

	if (argc < 1)
		return token_usage();
	if (token_ident_args(argc, argv, &id) == -1)
		return TOKEN_EXIT_USAGE;
	if ((text = token_read(path, &t)) == NULL)
		return TOKEN_EXIT_FAILED;
	if (token_find(&t, id.name) != -1) {
		fprintf(stderr, "%s: token add: %s already has a token in %s "
		    "(heavyd token revoke %s first)\n", HEAVY_NAME, id.name,
		    path, id.name);
		goto out;
	}
	token_new(tok, sizeof tok);
	token_digest(tok, strlen(tok), id.digest);
	buf_init(&b, 0);
	buf_addstr(&b, text);
	if (b.len > 0 && b.data[b.len - 1] != '\n')
		buf_addstr(&b, "\n");
	token_format(&id, &b);
	if (token_write(path, buf_cstr(&b)) == 0) {
		printf("%s\n", tok);
		fprintf(stderr, "%s: added %s to %s; the token above is shown "
		    "only this once (SIGHUP heavyd to take it up)\n",
		    HEAVY_NAME, id.name, path);
		rc = TOKEN_EXIT_OK;
	}
	explicit_bzero(tok, sizeof tok);
	buf_free(&b);
out:
	tokens_free(&t);
	free(text);
	return rc;
}

static int
token_list(const char *path)
{
	struct tokens	t;
	struct buf	b;
	char		*text, v[64];

	if ((text = token_read(path, &t)) == NULL)
		return TOKEN_EXIT_FAILED;
	for (int i = 0; i < t.n; i++) {
		buf_init(&b, 0);
		for (int k = 0; k < TOKEN_NLIMITS; k++) {
			if (!t.v[i].lim.set[k])
				continue;
			token_limit_text(k, t.v[i].lim.v[k], v, sizeof v);
			buf_printf(&b, " %s=%s", token_limit_name(k), v);
		}
		printf("%s%s\n", t.v[i].name, buf_cstr(&b));
		buf_free(&b);
	}
	tokens_free(&t);
	free(text);
	return TOKEN_EXIT_OK;
}

/* text without the lines of identity name (comments and others kept). */
static char *
token_without(const char *text, const char *name)
{
	struct buf	 b;
	const char	*line, *end;
	size_t		 n = strlen(name), skip;

	buf_init(&b, 0);
	for (line = text; *line != '\0'; line = end) {
		end = line + strcspn(line, "\n");
		end += *end == '\n';
		skip = strspn(line, " \t");
		if (strncmp(line + skip, name, n) == 0 &&
		    strchr(" \t", line[skip + n]) != NULL &&
		    line[skip + n] != '\0')
			continue;
		buf_add(&b, line, (size_t)(end - line));
	}
	return buf_release(&b);
}

static int
token_revoke(const char *path, int argc, char **argv)
{
	struct tokens	 t;
	char		*text, *rest;
	int		 rc = TOKEN_EXIT_FAILED;

	if (argc != 1)
		return token_usage();
	if ((text = token_read(path, &t)) == NULL)
		return TOKEN_EXIT_FAILED;
	if (token_find(&t, argv[0]) == -1)
		fprintf(stderr, "%s: token revoke: no identity \"%.64s\" in "
		    "%s\n", HEAVY_NAME, argv[0], path);
	else {
		rest = token_without(text, argv[0]);
		if (token_write(path, rest) == 0) {
			fprintf(stderr, "%s: revoked %s in %s (SIGHUP heavyd "
			    "to refuse it from its next request)\n",
			    HEAVY_NAME, argv[0], path);
			rc = TOKEN_EXIT_OK;
		}
		free(rest);
	}
	tokens_free(&t);
	free(text);
	return rc;
}

/* argv[0] is "token"; the exit status. */
int
token_run(const struct heavy_config *cfg, int argc, char **argv)
{
	char		 cred[4096];
	const char	*path = cfg->auth_tokens_file;
	int		 lock, rc;

	if (argc < 2)
		return token_usage();
	if (path == NULL && strcmp(argv[1], "list") == 0)
		path = tokens_path(cfg, cred, sizeof cred);
	if (path == NULL) {
		fprintf(stderr, "%s: token: no tokens file: set "
		    "auth.tokens_file in the configuration, or "
		    "HEAVY_AUTH_TOKENS_FILE\n", HEAVY_NAME);
		return TOKEN_EXIT_FAILED;
	}
	if (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "list") != 0 &&
	    strcmp(argv[1], "revoke") != 0)
		return token_usage();
	if ((lock = token_lock(path)) == -1)
		return TOKEN_EXIT_FAILED;
	if (strcmp(argv[1], "add") == 0)
		rc = token_add(path, argc - 2, argv + 2);
	else if (strcmp(argv[1], "list") == 0)
		rc = argc == 2 ? token_list(path) : token_usage();
	else
		rc = token_revoke(path, argc - 2, argv + 2);
	close(lock);
	return rc;
}

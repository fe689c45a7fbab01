/* Small helpers: time, allocation that cannot return NULL, fd flags. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

int64_t
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The wall clock, for what outlives the process: a task's timestamps. */
int64_t
wall_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The process is out of memory: exit with a status that says so. */
static void __attribute__((noreturn))
nomem(const char *what, size_t n)
{
	log_warnx("out of memory: %s of %zu bytes failed", what, n);
	exit(HEAVY_EXIT_NOMEM);
}

void *
xmalloc(size_t n)
{
	void	*p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		nomem("malloc", n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void	*p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		nomem("calloc", n * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void	*q = realloc(p, n == 0 ? 1 : n);

	if (q == NULL)
		nomem("realloc", n);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int
fd_set_cloexec(int fd)
{
	int	flags = fcntl(fd, F_GETFD);

	return flags == -1 ? -1 : fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

int
fd_set_nonblock(int fd, int on)
{
	int	flags = fcntl(fd, F_GETFL);

	if (flags == -1)
		return -1;
	flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, flags);
}

char *
xasprintf(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		nomem("vasprintf", strlen(fmt));
	va_end(ap);
	return s;
}

/*
 * An environment for a child we exec: the variables of keep that are set
 * here, and room for `room` more entries after them (*n: the first free
 * one); NULL-terminated.  Nothing else of ours (a key) goes along.
 */
char **
env_keep(const char *const *keep, size_t nkeep, size_t room, size_t *n)
{
	char		**env = xcalloc(nkeep + room + 1, sizeof *env);
	const char	 *v;

	*n = 0;
	for (size_t i = 0; i < nkeep; i++)
		if ((v = getenv(keep[i])) != NULL)
			env[(*n)++] = xasprintf("%s=%s", keep[i], v);
	return env;
}

void
env_free(char **env)
{
	for (size_t i = 0; env != NULL && env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

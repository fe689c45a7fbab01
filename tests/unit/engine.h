/*
 * For the unit tests that run the engine for real: the zygote and
 * heavyd-egress built beside these tests, and an LLM endpoint served on
 * the test's own event loop (its answers are the test's callback).
 */
#ifndef HEAVYD_TESTS_ENGINE_H
#define HEAVYD_TESTS_ENGINE_H

#include <sys/socket.h>

#include <netinet/in.h>

#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/http.h>

#include "../../supervisor/supervisor.h"

#define ENGINE_KEY	"test-key-123456"

/* A program of the build these tests come from. */
static inline void
engine_program(char *out, size_t len, const char *prog)
{
	char	self[PATH_MAX];
	ssize_t	n = readlink("/proc/self/exe", self, sizeof self - 1);

	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(out, len, "%s/%s", dirname(self), prog);
	cr_assert_eq(access(out, X_OK), 0, "%s: build it (make unit)", out);
}

/* The endpoint on 127.0.0.1, answered by cb on ev_base; its port. */
static inline int
engine_llm(struct evhttp **http, void (*cb)(struct evhttp_request *, void *))
{
	struct evhttp_bound_socket	*bound;
	struct sockaddr_in		 sin;
	socklen_t			 len = sizeof sin;

	*http = evhttp_new(ev_base);
	evhttp_set_gencb(*http, cb, NULL);
	bound = evhttp_bind_socket_with_handle(*http, "127.0.0.1", 0);
	cr_assert_not_null(bound);
	cr_assert_eq(getsockname(evhttp_bound_socket_get_fd(bound),
	    (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* The zygote (one spare) and egress, with the test's key. */
static inline void
engine_start(const struct heavy_config *cfg)
{
	char	path[PATH_MAX];

	engine_program(path, sizeof path, "heavyd-worker");
	cr_assert_eq(spawner_start(path, 1, false), 0);
	engine_program(path, sizeof path, "heavyd-egress");
	cr_assert_eq(egressctl_start(path, ENGINE_KEY, NULL, cfg), 0);
}

#endif

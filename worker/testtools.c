/*
 * Agent tools that misbehave on purpose, only in the test build of the
 * worker (HEAVY_TEST_HOOKS): tests use them to prove that a crashing,
 * spinning, blocking or lying worker is contained.  The production build
 * has none.
 */
#include <signal.h>
#include <unistd.h>

#include "worker.h"

#ifdef HEAVY_TEST_HOOKS
static int
tool_test_crash(struct json_object *args, struct buf *out, int *complete)
{
	(void)args; (void)out; (void)complete;
	raise(SIGSEGV);
	return -1;
}

static int
tool_test_spin(struct json_object *args, struct buf *out, int *complete)
{
	volatile unsigned long	n = 0;

	(void)args; (void)out; (void)complete;
	for (;;)
		n++;
	return -1;
}

static int
tool_test_bad_frame(struct json_object *args, struct buf *out, int *complete)
{
	static const char	bad[] = "\x09\x00\x02\x00\x00\x00\x00\x00";

	(void)args; (void)out; (void)complete;
	worker_send_raw(bad, sizeof bad - 1);	/* protocol version 9 */
	for (;;)
		pause();	/* the supervisor must kill us */
	return -1;
}

static int
tool_test_block(struct json_object *args, struct buf *out, int *complete)
{
	int	fds[2];
	char	c;

	(void)args; (void)out; (void)complete;
	if (pipe(fds) == 0)
		for (;;)
			(void)read(fds[0], &c, 1);	/* no writer ever writes */
	return -1;
}

#define NO_ARGS	"{\"type\":\"object\",\"properties\":{}}"
const struct tool testtools[] = {
	{ "test_crash", "Test only: crash with SIGSEGV.", NO_ARGS,
	  tool_test_crash },
	{ "test_spin", "Test only: spin the CPU forever.", NO_ARGS,
	  tool_test_spin },
	{ "test_block", "Test only: block forever in read.", NO_ARGS,
	  tool_test_block },
	{ "test_bad_frame", "Test only: send an invalid frame.", NO_ARGS,
	  tool_test_bad_frame },
};
const size_t ntesttools = sizeof testtools / sizeof testtools[0];
#else
const struct tool testtools[1];
const size_t ntesttools = 0;
#endif

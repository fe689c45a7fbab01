/*
 * Only in build/defer/heavyd (store.c includes it under
 * HEAVY_TEST_STORE_DEFER): every answer of the store held back to a later
 * turn of the loop, with copies of its rows, as a backend that waits for
 * its server answers.
 */
#include <event2/event.h>

struct store_later {
	store_done_cb		 done;
	store_row_cb		 row;
	store_rows_cb		 rows;
	store_total_cb		 total_cb;
	int64_t			 sum;
	void			*arg;
	int			 rc, n, total;
	struct store_task	 one, *many;
	char			*next;
	bool			 has_one;
	struct event		*ev;
};

/* Before the loop exists (no ev_base: a unit test), answers come at once. */
static bool
store_deferred(void)
{
	return ev_base != NULL;
}

static void
store_later_cb(evutil_socket_t fd, short events, void *arg)
{
	struct store_later	*l = arg;

	(void)fd; (void)events;
	if (l->total_cb != NULL)
		l->total_cb(l->arg, l->rc, l->sum);
	else if (l->done != NULL)
		l->done(l->arg, l->rc);
	else if (l->row != NULL)
		l->row(l->arg, l->rc, l->has_one ? &l->one : NULL);
	else
		l->rows(l->arg, l->rc, l->many, l->n, l->total, l->next);
	store_task_clear(&l->one);
	for (int i = 0; i < l->n; i++)
		store_task_clear(&l->many[i]);
	free(l->many);
	free(l->next);
	event_free(l->ev);
	free(l);
}

static struct store_later *
store_later_new(void *arg)
{
	struct store_later	*l = xcalloc(1, sizeof *l);

	l->arg = arg;
	l->ev = evtimer_new(ev_base, store_later_cb, l);
	return l;
}

static void
store_later_add(struct store_later *l)
{
	struct timeval	tv = { 0, 0 };

	evtimer_add(l->ev, &tv);
}

static void
store_later_done(void *arg, int rc)
{
	struct store_later	*l = arg;

	l->rc = rc;
	store_later_add(l);
}

static void
store_later_row(void *arg, int rc, const struct store_task *t)
{
	struct store_later	*l = arg;

	l->rc = rc;
	if ((l->has_one = t != NULL))
		store_task_copy(&l->one, t);
	store_later_add(l);
}

static void
store_later_rows(void *arg, int rc, const struct store_task *rows, int n,
    int total, const char *next)
{
	struct store_later	*l = arg;

	l->rc = rc;
	l->n = n;
	l->total = total;
	l->many = xcalloc((size_t)n + 1, sizeof *l->many);
	for (int i = 0; i < n; i++)
		store_task_copy(&l->many[i], &rows[i]);
	l->next = next != NULL ? xstrdup(next) : NULL;
	store_later_add(l);
}

static void
store_later_total(void *arg, int rc, int64_t sum)
{
	struct store_later	*l = arg;

	l->rc = rc;
	l->sum = sum;
	store_later_add(l);
}

/* The callback and its argument, held back when the test asks. */
#define STORE_DEFER_DONE(cb, arg) do {					\
	if (store_deferred()) {						\
		struct store_later *l_ = store_later_new(arg);		\
		l_->done = (cb);					\
		(cb) = store_later_done;				\
		(arg) = l_;						\
	}								\
} while (0)
#define STORE_DEFER_ROW(cb, arg) do {					\
	if (store_deferred()) {						\
		struct store_later *l_ = store_later_new(arg);		\
		l_->row = (cb);						\
		(cb) = store_later_row;					\
		(arg) = l_;						\
	}								\
} while (0)
#define STORE_DEFER_ROWS(cb, arg) do {					\
	if (store_deferred()) {						\
		struct store_later *l_ = store_later_new(arg);		\
		l_->rows = (cb);					\
		(cb) = store_later_rows;				\
		(arg) = l_;						\
	}								\
} while (0)
#define STORE_DEFER_TOTAL(cb, arg) do {					\
	if (store_deferred()) {						\
		struct store_later *l_ = store_later_new(arg);		\
		l_->total_cb = (cb);					\
		(cb) = store_later_total;				\
		(arg) = l_;						\
	}								\
} while (0)

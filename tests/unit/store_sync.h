/*
 * The task store's calls, waited for: SQLite answers before a call
 * returns, and these adapters check that it did (a callback that has not
 * run is a failed assertion, never a hang).  Rows come back as copies.
 */
#ifndef HEAVY_STORE_SYNC_H
#define HEAVY_STORE_SYNC_H

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "../../supervisor/store.h"

struct sync_answer {
	bool			 done;
	int			 rc, n, total;
	struct store_task	 row;
	struct store_task	*rows;
	char			*next;
};

static inline void
sync_done_cb(void *arg, int rc)
{
	struct sync_answer	*a = arg;

	a->done = true;
	a->rc = rc;
}

static inline void
sync_row_cb(void *arg, int rc, const struct store_task *t)
{
	struct sync_answer	*a = arg;

	a->done = true;
	a->rc = rc;
	if (t != NULL)
		store_task_copy(&a->row, t);
}

static inline void
sync_rows_cb(void *arg, int rc, const struct store_task *rows, int n,
    int total, const char *next)
{
	struct sync_answer	*a = arg;

	a->done = true;
	a->rc = rc;
	a->n = n;
	a->total = total;
	a->rows = calloc((size_t)n + 1, sizeof *a->rows);
	for (int i = 0; i < n; i++)
		store_task_copy(&a->rows[i], &rows[i]);
	a->next = next != NULL ? strdup(next) : NULL;
}

static inline int
sync_open(const char *dir, bool sync_full, char *err, size_t errlen)
{
	struct store_options	o = { .state_dir = dir, .busy_ms = 5000,
	    .sync_full = sync_full };

	return store_open(&o, err, errlen);
}

static inline int
sync_put(const struct store_task *t)
{
	struct sync_answer	a = { 0 };

	store_put(t, 1, sync_done_cb, &a);
	cr_assert(a.done, "the store answered");
	return a.rc;
}

static inline int
sync_get(const char *id, const char *owner, struct store_task *t)
{
	struct sync_answer	a = { 0 };

	store_get(id, owner, sync_row_cb, &a);
	cr_assert(a.done, "the store answered");
	*t = a.row;
	return a.rc;
}

static inline int
sync_cache_find(const char *owner, const char *key, int64_t age,
    struct store_task *t)
{
	struct sync_answer	a = { 0 };

	store_cache_find(owner, key, age, sync_row_cb, &a);
	cr_assert(a.done, "the store answered");
	*t = a.row;
	return a.rc;
}

static inline int
sync_list(const char *owner, const char *cursor, int limit,
    struct store_task **rows, int *n, char **next)
{
	struct sync_answer	a = { 0 };

	store_list(owner, cursor, limit, sync_rows_cb, &a);
	cr_assert(a.done, "the store answered");
	*rows = a.rows;
	*n = a.n;
	*next = a.next;
	return a.rc;
}

static inline int
sync_active(const char *owner, struct store_task **rows, int *n)
{
	struct sync_answer	a = { 0 };

	store_active(owner, sync_rows_cb, &a);
	cr_assert(a.done, "the store answered");
	*rows = a.rows;
	*n = a.n;
	free(a.next);
	return a.rc;
}

static inline int
sync_ids(const char *owner, const char *prefix, int limit,
    struct json_object *ids, int *total)
{
	struct sync_answer	a = { 0 };

	store_ids(owner, prefix, limit, sync_rows_cb, &a);
	cr_assert(a.done, "the store answered");
	for (int i = 0; i < a.n; i++) {
		json_object_array_add(ids, json_object_new_string(
		    a.rows[i].id));
		store_task_clear(&a.rows[i]);
	}
	free(a.rows);
	free(a.next);
	*total = a.total;
	return a.rc;
}

static inline int
sync_settle(void)
{
	struct sync_answer	a = { 0 };

	store_settle(sync_done_cb, &a);
	cr_assert(a.done, "the store answered");
	return a.rc;
}

static inline int
sync_sweep(int max_rows)
{
	struct sync_answer	a = { 0 };

	store_sweep(max_rows, sync_done_cb, &a);
	cr_assert(a.done, "the store answered");
	return a.rc;
}

#endif

/* The task store: owners, pagination, expiry, interruption, corruption. */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"

static char	dir[64];

static void
setup(void)
{
	char	err[256];

	snprintf(dir, sizeof dir, "/tmp/heavyd-store-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(store_open(dir, 5000, err, sizeof err), 0, "%s", err);
}

static void
teardown(void)
{
	char	cmd[128];

	store_close();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(store, .init = setup, .fini = teardown);

static void
put(const char *id, const char *owner, const char *status, int64_t created,
    int64_t ttl)
{
	struct store_task	t = { 0 };

	snprintf(t.id, sizeof t.id, "%s", id);
	t.owner = (char *)owner;
	t.status = (char *)status;
	t.params = (char *)"{\"query\":\"q\"}";
	t.created_ms = t.updated_ms = created;
	t.ttl_ms = ttl;
	cr_assert_eq(store_insert(&t), 0);
}

static const char *
hexid(int n)
{
	static char	id[33];

	snprintf(id, sizeof id, "%032x", n);
	return id;
}

Test(store, another_owners_task_is_not_found)
{
	struct store_task	t;

	put(hexid(1), "uid:1", "working", wall_ms(), 60000);
	cr_assert_eq(store_get(hexid(1), "uid:1", &t), 0);
	cr_assert_str_eq(t.status, "working");
	cr_assert(t.ours);
	store_task_clear(&t);
	cr_assert_eq(store_get(hexid(1), "uid:2", &t), 1);
	cr_assert_eq(store_get(hexid(2), "uid:1", &t), 1);
}

Test(store, a_terminal_task_never_changes_again)
{
	struct store_task	t;

	put(hexid(1), "o", "working", wall_ms(), 60000);
	cr_assert_eq(store_update(hexid(1), "cancelled", "by request", NULL,
	    "{\"isError\":true}", NULL), 0);
	cr_assert_eq(store_update(hexid(1), "completed", NULL, NULL,
	    "{\"late\":1}", NULL), 1);
	cr_assert_eq(store_get(hexid(1), "o", &t), 0);
	cr_assert_str_eq(t.status, "cancelled");
	cr_assert_str_eq(t.result, "{\"isError\":true}");
	store_task_clear(&t);
}

Test(store, list_pages_newest_first_and_only_the_owners)
{
	struct store_task	*rows;
	char			*next, *cursor = NULL;
	int			 n, seen = 0, expect = 5;

	for (int i = 0; i < 5; i++)
		put(hexid(i), "me", "completed", 1000 + i, 1LL << 50);
	put(hexid(99), "other", "completed", 2000, 1LL << 50);
	for (;;) {
		cr_assert_eq(store_list("me", cursor, 2, &rows, &n, &next), 0);
		for (int i = 0; i < n; i++) {
			cr_assert_str_eq(rows[i].id, hexid(--expect));
			store_task_clear(&rows[i]);
		}
		seen += n;
		free(rows);
		free(cursor);
		if ((cursor = next) == NULL)
			break;
		cr_assert_eq(n, 2);
	}
	cr_assert_eq(seen, 5);
	cr_assert_eq(store_list("me", "garbage", 2, &rows, &n, &next), -2);
}

/* A child heavyd that records a running task and waits on a pipe. */
static pid_t
child_with_task(const char *id, int *hold)
{
	int	fds[2];
	pid_t	pid;
	char	err[256], c;

	cr_assert_eq(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		store_close();
		close(fds[1]);
		if (store_open(dir, 5000, err, sizeof err) != 0)
			_exit(1);
		put(id, "me", "working", wall_ms(), 60000);
		store_close();
		(void)read(fds[0], &c, 1);	/* until the parent says */
		_exit(0);
	}
	close(fds[0]);
	*hold = fds[1];
	return pid;
}

static void
wait_row(const char *id)
{
	struct store_task	t;

	for (int i = 0; i < 500; i++) {
		if (store_get_any(id, &t) == 0) {
			store_task_clear(&t);
			return;
		}
		usleep(10000);
	}
	cr_assert_fail("the child never stored its task");
}

Test(store, running_in_a_live_process_is_not_interrupted)
{
	struct store_task	t;
	int			hold, status;
	pid_t			pid = child_with_task(hexid(7), &hold);

	wait_row(hexid(7));
	cr_assert_eq(store_settle_interrupted(), 0);
	cr_assert_eq(store_get(hexid(7), "me", &t), 0);
	cr_assert_str_eq(t.status, "working");
	cr_assert_not(t.ours);
	store_task_clear(&t);
	close(hold);
	waitpid(pid, &status, 0);
	cr_assert_eq(store_get(hexid(7), "me", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	cr_assert(strstr(t.status_message, "interrupted by restart") != NULL);
	cr_assert(strstr(t.result, "interrupted by restart") != NULL);
	cr_assert(strstr(t.result, "\"isError\":true") != NULL);
	store_task_clear(&t);
}

Test(store, startup_settles_tasks_of_dead_processes)
{
	int	hold, status;
	pid_t	pid = child_with_task(hexid(8), &hold);

	wait_row(hexid(8));
	close(hold);
	waitpid(pid, &status, 0);
	cr_assert_eq(store_settle_interrupted(), 1);
	cr_assert_eq(store_settle_interrupted(), 0);
}

Test(store, sweep_drops_expired_and_excess_but_not_running)
{
	struct store_task	t;
	int64_t			now = wall_ms();

	put(hexid(1), "o", "completed", now - 10000, 5000);	/* expired */
	put(hexid(2), "o", "working", now - 10000, 5000);	/* running */
	for (int i = 3; i < 8; i++)
		put(hexid(i), "o", "completed", now - 100 + i, 60000);
	cr_assert_eq(store_sweep(3), 3);
	cr_assert_eq(store_get(hexid(1), "o", &t), 1);
	cr_assert_eq(store_get(hexid(2), "o", &t), 0);
	store_task_clear(&t);
	cr_assert_eq(store_get(hexid(3), "o", &t), 1);
	cr_assert_eq(store_get(hexid(4), "o", &t), 1);
	cr_assert_eq(store_get(hexid(7), "o", &t), 0);
	store_task_clear(&t);
}

Test(store, cache_finds_only_completed_young_and_own)
{
	struct store_task	t = { 0 };
	int64_t			now = wall_ms();

	snprintf(t.id, sizeof t.id, "%s", hexid(1));
	t.owner = (char *)"o";
	t.status = (char *)"working";
	t.params = (char *)"{}";
	t.cache_key = (char *)"k1";
	t.created_ms = t.updated_ms = now;
	t.ttl_ms = 60000;
	cr_assert_eq(store_insert(&t), 0);
	cr_assert_eq(store_cache_find("o", "k1", 60000, &t), 1);
	cr_assert_eq(store_update(hexid(1), "completed", NULL, NULL, "{}",
	    NULL), 0);
	cr_assert_eq(store_cache_find("o", "k1", 60000, &t), 0);
	cr_assert_str_eq(t.id, hexid(1));
	store_task_clear(&t);
	cr_assert_eq(store_cache_find("other", "k1", 60000, &t), 1);
	cr_assert_eq(store_cache_find("o", "k2", 60000, &t), 1);
}

Test(store, a_corrupt_file_is_moved_aside_and_replaced)
{
	struct store_task	 t;
	char			 path[128], err[256], junk[8192];
	struct dirent		*e;
	DIR			*d;
	int			 fd, aside = 0;

	put(hexid(1), "o", "completed", wall_ms(), 60000);
	store_close();
	snprintf(path, sizeof path, "%s/tasks.db", dir);
	memset(junk, 'x', sizeof junk);
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	close(fd);
	cr_assert_eq(store_open(dir, 5000, err, sizeof err), 0, "%s", err);
	cr_assert_eq(store_get(hexid(1), "o", &t), 1);
	put(hexid(2), "o", "completed", wall_ms(), 60000);
	cr_assert_eq(store_get(hexid(2), "o", &t), 0);
	store_task_clear(&t);
	cr_assert_not_null(d = opendir(dir));
	while ((e = readdir(d)) != NULL)
		aside += strncmp(e->d_name, "tasks.db.corrupt-", 17) == 0;
	closedir(d);
	cr_assert_eq(aside, 1);
}

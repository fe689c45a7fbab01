/* The task store: owners, pagination, expiry, interruption, corruption. */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <signal.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"
#include "store_sync.h"
#include "result_fill.h"

/* Ends as task.c reports them. */
static const struct task_outcome	clean = { .failed = false };
static const struct task_outcome	over = { .failed = true, .error = "over" };

static char	dir[256];

/* Two agents of a task in its agents phase: one done, one under way. */
static struct store_agent	two_agents[] = {
	{ .index = 1, .question = (char *)"q1", .status = (char *)"ok",
	    .step = (char *)"search_web", .answer = (char *)"a1",
	    .elapsed_ms = 1200 },
	{ .index = 2, .question = (char *)"q2", .status = (char *)"running",
	    .step = (char *)"read_url", .elapsed_ms = -1 },
};
static const struct store_progress	agents_phase = { .phase =
    (char *)"agents", .elapsed_ms = 1500, .nagents = 2,
    .agents = two_agents };
static const struct store_progress	*put_progress;	/* put()'s, if any */

static void
setup(void)
{
	char	err[256];

	unit_tmp(dir, sizeof dir, "heavyd-store");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
}

static void
teardown(void)
{
	char	cmd[320];

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
	if (put_progress != NULL)
		t.progress = *put_progress;
	cr_assert_eq(sync_put(&t), 0);
}

/* This process's task moves on: its row, read and written again. */
static int
update(const char *id, const char *status, const char *message,
    const char *result)
{
	struct store_task	t;
	int			rc;

	cr_assert_eq(sync_get(id, NULL, &t), STORE_OK);
	free(t.status);
	t.status = strdup(status);
	if (message != NULL) {
		free(t.status_message);
		t.status_message = strdup(message);
	}
	taskresult_free(t.result);
	t.result = taskresult_text(result, false);
	rc = sync_put(&t);
	store_task_clear(&t);
	return rc;
}

/* The first column of the first row of a query on the file, behind the
 * store's back, as an integer (-1: no row). */
static long long
raw_int(const char *sql)
{
	char		 path[300];
	sqlite3		*db;
	sqlite3_stmt	*st;
	long long	 v = -1;

	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
	    "%s", sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* Two progresses are the same, field by field. */
static void
assert_progress(const struct store_progress *got,
    const struct store_progress *want)
{
	cr_assert_str_eq(got->phase, want->phase);
	cr_assert_eq(got->elapsed_ms, want->elapsed_ms);
	cr_assert_eq(got->nagents, want->nagents);
	for (int i = 0; i < want->nagents; i++) {
		const struct store_agent *g = &got->agents[i],
		    *w = &want->agents[i];

		cr_assert_eq(g->index, w->index);
		cr_assert_eq(g->elapsed_ms, w->elapsed_ms, "agent %d", i + 1);
		cr_assert_str_eq(g->status, w->status);
		cr_assert((g->question == NULL) == (w->question == NULL));
		cr_assert((g->answer == NULL) == (w->answer == NULL));
		cr_assert((g->step == NULL) == (w->step == NULL));
		cr_assert((g->error == NULL) == (w->error == NULL));
		if (w->question != NULL)
			cr_assert_str_eq(g->question, w->question);
		if (w->answer != NULL)
			cr_assert_str_eq(g->answer, w->answer);
		if (w->step != NULL)
			cr_assert_str_eq(g->step, w->step);
		if (w->error != NULL)
			cr_assert_str_eq(g->error, w->error);
	}
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
	cr_assert_eq(sync_get(hexid(1), "uid:1", &t), 0);
	cr_assert_str_eq(t.status, "working");
	cr_assert(t.ours);
	store_task_clear(&t);
	cr_assert_eq(sync_get(hexid(1), "uid:2", &t), 1);
	cr_assert_eq(sync_get(hexid(2), "uid:1", &t), 1);
}

Test(store, a_terminal_task_never_changes_again)
{
	struct store_task	t;

	put(hexid(1), "o", "working", wall_ms(), 60000);
	cr_assert_eq(update(hexid(1), "cancelled", "by request",
	    "{\"isError\":true}"), STORE_OK);
	cr_assert_eq(update(hexid(1), "completed", NULL, "{\"late\":1}"),
	    STORE_TERMINAL);
	cr_assert_eq(sync_get(hexid(1), "o", &t), 0);
	cr_assert_str_eq(t.status, "cancelled");
	cr_assert_str_eq(t.result->answer, "{\"isError\":true}");
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
		cr_assert_eq(sync_list("me", cursor, 2, &rows, &n, &next), 0);
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
	cr_assert_eq(sync_list("me", "garbage", 2, &rows, &n, &next), -2);
	cr_assert_eq(n, 0);
	free(rows);
}

/* A row as this process writes it with store_put. */
static void
row(struct store_task *t, const char *id, const char *status, int64_t ttl)
{
	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%s", id);
	t->owner = (char *)"o";
	t->tool = (char *)"heavy_orchestrate";
	t->status = (char *)status;
	t->params = (char *)"{\"query\":\"q\"}";
	t->created_ms = t->updated_ms = wall_ms();
	t->ttl_ms = ttl;
}

/* The arguments the child's task is stored with (NULL: none). */
static const struct store_args	*child_args;

/* A child heavyd that records a running task and waits on a pipe. */
static pid_t
child_with_task(const char *id, int *hold)
{
	struct store_task	t;
	int			fds[2];
	pid_t			pid;
	char			err[256], c;

	cr_assert_eq(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		store_close();
		close(fds[1]);
		if (sync_open(dir, false, err, sizeof err) != 0)
			_exit(1);
		/* No assertion here: a child's would never be heard. */
		row(&t, id, "working", 60000);
		t.owner = (char *)"me";
		t.progress = agents_phase;
		t.query = (char *)"q";
		t.num_agents = 2;
		if (child_args != NULL)
			t.args = *child_args;
		if (sync_put(&t) != 0)
			_exit(2);
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
		if (sync_get(id, NULL, &t) == 0) {
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
	cr_assert_eq(sync_settle(), 0);
	cr_assert_eq(sync_get(hexid(7), "me", &t), 0);
	cr_assert_str_eq(t.status, "working");
	cr_assert_not(t.ours);
	store_task_clear(&t);
	close(hold);
	waitpid(pid, &status, 0);
	cr_assert_eq(sync_get(hexid(7), "me", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	cr_assert(strstr(t.status_message, "interrupted by restart") != NULL);
	cr_assert_null(t.result, "a stopped task has no result; its reason "
	    "is what a reader is told");
	store_task_clear(&t);
}

Test(store, startup_settles_tasks_of_dead_processes)
{
	int	hold, status;
	pid_t	pid = child_with_task(hexid(8), &hold);

	wait_row(hexid(8));
	close(hold);
	waitpid(pid, &status, 0);
	cr_assert_eq(sync_settle(), 1);
	cr_assert_eq(sync_settle(), 0);
}

Test(store, sweep_drops_expired_and_excess_but_not_running)
{
	struct store_task	t;
	int64_t			now = wall_ms();

	put(hexid(1), "o", "completed", now - 10000, 5000);	/* expired */
	put(hexid(2), "o", "working", now - 10000, 5000);	/* running */
	for (int i = 3; i < 8; i++)
		put(hexid(i), "o", "completed", now - 100 + i, 60000);
	cr_assert_eq(sync_sweep(3), 3);
	cr_assert_eq(sync_get(hexid(1), "o", &t), 1);
	cr_assert_eq(sync_get(hexid(2), "o", &t), 0);
	store_task_clear(&t);
	cr_assert_eq(sync_get(hexid(3), "o", &t), 1);
	cr_assert_eq(sync_get(hexid(4), "o", &t), 1);
	cr_assert_eq(sync_get(hexid(7), "o", &t), 0);
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
	cr_assert_eq(sync_put(&t), 0);
	cr_assert_eq(sync_cache_find("o", "k1", 60000, &t), 1);
	cr_assert_eq(update(hexid(1), "completed", NULL, "{}"), STORE_OK);
	cr_assert_eq(sync_cache_find("o", "k1", 60000, &t), 0);
	cr_assert_str_eq(t.id, hexid(1));
	store_task_clear(&t);
	cr_assert_eq(sync_cache_find("other", "k1", 60000, &t), 1);
	cr_assert_eq(sync_cache_find("o", "k2", 60000, &t), 1);
}

Test(store, a_corrupt_file_is_moved_aside_and_replaced)
{
	struct store_task	 t;
	char			 path[320], err[256], junk[8192];
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
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sync_get(hexid(1), "o", &t), 1);
	put(hexid(2), "o", "completed", wall_ms(), 60000);
	cr_assert_eq(sync_get(hexid(2), "o", &t), 0);
	store_task_clear(&t);
	cr_assert_not_null(d = opendir(dir));
	while ((e = readdir(d)) != NULL)
		aside += strncmp(e->d_name, "tasks.db.corrupt-", 17) == 0;
	closedir(d);
	cr_assert_eq(aside, 1);
}

Test(store, put_inserts_then_updates_and_never_touches_a_terminal_row)
{
	struct store_task	t, got;

	struct store_agent	done[2];
	struct store_progress	later;

	row(&t, hexid(1), "working", 60000);
	t.progress.phase = (char *)"planning";
	t.query = (char *)"what is heavy?";
	t.num_agents = 2;
	cr_assert_eq(sync_put(&t), 0, "inserted");
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	cr_assert_str_eq(got.query, "what is heavy?");
	cr_assert_eq(got.num_agents, 2);
	cr_assert_str_eq(got.progress.phase, "planning");
	cr_assert_eq(got.progress.nagents, 0);
	store_task_clear(&got);
	t.progress = agents_phase;
	cr_assert_eq(sync_put(&t), 0, "updated");
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	assert_progress(&got.progress, &agents_phase);
	cr_assert_str_eq(got.tool, "heavy_orchestrate");
	store_task_clear(&got);
	/* incremental's draft comes and goes with the progress. */
	later = agents_phase;
	later.draft = (struct store_draft){ .n = 2, .answers = 1, .of = 2,
	    .made_ms = 900, .text = (char *)"draft two" };
	t.progress = later;
	cr_assert_eq(sync_put(&t), 0, "updated");
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	cr_assert_eq(got.progress.draft.n, 2);
	cr_assert_eq(got.progress.draft.answers, 1);
	cr_assert_eq(got.progress.draft.of, 2);
	cr_assert_eq(got.progress.draft.made_ms, 900);
	cr_assert_str_eq(got.progress.draft.text, "draft two");
	store_task_clear(&got);
	/* The second agent ends: its row changes, the first stays. */
	memcpy(done, two_agents, sizeof done);
	done[1].status = (char *)"failed";
	done[1].error = (char *)"boom";
	done[1].elapsed_ms = 0;
	later = agents_phase;
	later.agents = done;
	t.progress = later;
	cr_assert_eq(sync_put(&t), 0, "updated");
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	assert_progress(&got.progress, &later);
	cr_assert_eq(got.progress.draft.n, 0, "the last write had no draft");
	cr_assert_null(got.progress.draft.text);
	store_task_clear(&got);
	t.progress = agents_phase;
	t.status = (char *)"cancelled";
	t.result = taskresult_text("stopped", true);
	cr_assert_eq(sync_put(&t), 0);
	taskresult_free(t.result);
	t.status = (char *)"completed";	/* a late finish */
	t.result = taskresult_text("late", false);
	cr_assert_eq(sync_put(&t), 1);
	taskresult_free(t.result);
	t.result = NULL;
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	cr_assert_str_eq(got.status, "cancelled");
	cr_assert_str_eq(got.result->answer, "stopped");
	cr_assert(got.result->failed);
	assert_progress(&got.progress, &agents_phase);
	store_task_clear(&got);
	t.progress = later;	/* its agents, refused with the row */
	cr_assert_eq(sync_put(&t), 1);
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	assert_progress(&got.progress, &agents_phase);
	store_task_clear(&got);
}

Test(store, put_never_changes_another_processs_row)
{
	struct store_task	t, got;
	int			hold, status;
	pid_t			pid = child_with_task(hexid(3), &hold);

	wait_row(hexid(3));
	row(&t, hexid(3), "completed", 60000);
	t.owner = (char *)"me";
	cr_assert_eq(sync_put(&t), 1, "wrote over a live process's task");
	cr_assert_eq(sync_get(hexid(3), "me", &got), 0);
	cr_assert_str_eq(got.status, "working");
	store_task_clear(&got);
	close(hold);
	waitpid(pid, &status, 0);
}

Test(store, an_expired_row_is_gone_before_the_sweep)
{
	struct store_task	 t, *rows;
	char			*next;
	int			 n;

	row(&t, hexid(1), "completed", 1);	/* 1 ms */
	t.created_ms -= 10;
	cr_assert_eq(sync_put(&t), 0);
	row(&t, hexid(2), "working", 1);	/* running: never expires */
	t.created_ms -= 10;
	cr_assert_eq(sync_put(&t), 0);
	cr_assert_eq(sync_get(hexid(1), "o", &t), 2);
	cr_assert_eq(sync_get(hexid(2), "o", &t), 0);
	store_task_clear(&t);
	cr_assert_eq(sync_list("o", NULL, 10, &rows, &n, &next), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(rows[0].id, hexid(2));
	store_task_clear(&rows[0]);
	free(rows);
	cr_assert_eq(sync_sweep(100), 1);
	cr_assert_eq(sync_get(hexid(1), "o", &t), 1);
}

Test(store, active_lists_running_tasks_of_live_processes_only)
{
	struct store_task	*rows;
	int			 n, hold, status;
	pid_t			 pid = child_with_task(hexid(5), &hold);

	wait_row(hexid(5));
	put(hexid(6), "me", "working", wall_ms(), 60000);
	put(hexid(7), "me", "completed", wall_ms(), 60000);
	put(hexid(8), "other", "working", wall_ms(), 60000);
	cr_assert_eq(sync_active("me", &rows, &n), 0);
	cr_assert_eq(n, 2);
	for (int i = 0; i < n; i++)
		store_task_clear(&rows[i]);
	free(rows);
	close(hold);
	waitpid(pid, &status, 0);
	cr_assert_eq(sync_active("me", &rows, &n), 0);
	cr_assert_eq(n, 1, "the dead child's task is no longer active");
	cr_assert_str_eq(rows[0].id, hexid(6));
	store_task_clear(&rows[0]);
	free(rows);
}

Test(store, a_zombie_counts_as_gone)
{
	struct store_task	t;
	int			hold, status;
	pid_t			pid = child_with_task(hexid(9), &hold);

	wait_row(hexid(9));
	close(hold);
	/* Dead but not reaped: its /proc entry is still there. */
	for (int i = 0; i < 500; i++) {
		if (waitid(P_PID, pid, NULL, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    kill(pid, 0) == 0) {
			char	path[64], buf[256];
			FILE	*f;

			snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
			if ((f = fopen(path, "r")) != NULL) {
				size_t	n = fread(buf, 1, sizeof buf - 1, f);

				fclose(f);
				buf[n] = '\0';
				if (strstr(buf, ") Z ") != NULL)
					break;
			}
		}
		usleep(10000);
	}
	cr_assert_eq(sync_get(hexid(9), "me", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	store_task_clear(&t);
	waitpid(pid, &status, 0);
}

Test(store, ids_by_prefix_running_first)
{
	struct json_object	*ids = json_object_new_array();
	int			 total;

	put("abc00000000000000000000000000001", "o", "completed", wall_ms(),
	    60000);
	put("abc00000000000000000000000000002", "o", "working", wall_ms() - 5,
	    60000);
	put("abd00000000000000000000000000003", "o", "completed", wall_ms(),
	    60000);
	put("abc00000000000000000000000000004", "x", "completed", wall_ms(),
	    60000);
	cr_assert_eq(sync_ids("o", "ABC", 10, ids, &total), 0);
	cr_assert_eq(total, 2);
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(ids,
	    0)), "abc00000000000000000000000000002");
	json_object_put(ids);
	ids = json_object_new_array();
	cr_assert_eq(sync_ids("o", "", 1, ids, &total), 0);
	cr_assert_eq(total, 3);
	cr_assert_eq(json_object_array_length(ids), 1);
	json_object_put(ids);
}

Test(store, an_interrupted_task_shows_where_it_stopped)
{
	struct store_task	t;
	struct store_agent	stopped[2];
	struct store_progress	want = agents_phase;
	int			hold, status;
	pid_t			pid = child_with_task(hexid(4), &hold);

	wait_row(hexid(4));
	close(hold);
	waitpid(pid, &status, 0);
	memcpy(stopped, two_agents, sizeof stopped);
	stopped[1].status = (char *)"interrupted";
	want.phase = (char *)"interrupted";
	want.agents = stopped;
	cr_assert_eq(sync_get(hexid(4), "me", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	assert_progress(&t.progress, &want);
	store_task_clear(&t);
	/* So it was written, too. */
	cr_assert_eq(sync_get(hexid(4), "me", &t), 0);
	assert_progress(&t.progress, &want);
	store_task_clear(&t);
	cr_assert_eq(raw_int("SELECT count(*) FROM task_agents WHERE "
	    "status = 'interrupted'"), 1);
}

/* A task's agents go with it. */
Test(store, the_sweep_takes_the_agents_along)
{
	int64_t	now = wall_ms();

	put_progress = &agents_phase;
	put(hexid(1), "o", "completed", now - 10000, 5000);	/* expired */
	put(hexid(2), "o", "completed", now, 60000);
	put_progress = NULL;
	cr_assert_eq(raw_int("SELECT count(*) FROM task_agents"), 4);
	cr_assert_eq(sync_sweep(10), 1);
	cr_assert_eq(raw_int("SELECT count(*) FROM task_agents"), 2);
	cr_assert_eq(raw_int("SELECT count(*) FROM task_agents WHERE "
	    "task_id = '00000000000000000000000000000002'"), 2);
}

/*
 * A file of schema version 2 kept the progress as JSON text: opening it
 * converts that into the typed columns and agent rows, a damaged JSON
 * (valid, of the wrong shape; or not JSON) into no progress, and the
 * column goes; the query and the number of agents come out of params.
 */
Test(store, a_version_2_file_is_converted)
{
	static const char *const damaged[] = { "[1,2]", "7", "{\"agents\":3}",
	    "{\"agents\":[1,\"x\",null]}", "{", NULL };
	char		 path[300], *sql, err[256];
	sqlite3		*db;
	struct store_task t;

	store_close();
	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "CREATE TABLE tasks (id TEXT PRIMARY "
	    "KEY, owner TEXT NOT NULL, tool TEXT NOT NULL, status TEXT NOT "
	    "NULL, status_message TEXT, params TEXT NOT NULL, agents TEXT, "
	    "result TEXT, usage TEXT, cache_key TEXT, created_ms INTEGER NOT "
	    "NULL, updated_ms INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, "
	    "expires_ms INTEGER NOT NULL, pid INTEGER NOT NULL, proc_start "
	    "TEXT NOT NULL); CREATE INDEX tasks_by_owner ON tasks(owner, "
	    "created_ms, id); CREATE TABLE quota_charges (identity TEXT NOT "
	    "NULL, kind TEXT NOT NULL, window_start INTEGER NOT NULL, source "
	    "TEXT NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (identity, "
	    "kind, window_start, source)) WITHOUT ROWID; "
	    "PRAGMA user_version = 2;", NULL, NULL, NULL), SQLITE_OK);
	sql = sqlite3_mprintf("INSERT INTO tasks VALUES (%Q, 'o', "
	    "'heavy_orchestrate', 'completed', NULL, '{\"query\":\"what\","
	    "\"num_agents\":2}', %Q, NULL, NULL, NULL, 1, 2, 9000000000000, "
	    "9000000000001, 1, '1@x')", hexid(1),
	    "{\"phase\":\"done\",\"elapsed_ms\":1500,\"agents\":[{"
	    "\"index\":1,\"question\":\"q1\",\"status\":\"ok\",\"step\":"
	    "\"search_web\",\"error\":null,\"elapsed_ms\":1200,\"answer\":"
	    "\"a1\"},{\"index\":2,\"question\":\"q2\",\"status\":"
	    "\"running\",\"step\":\"read_url\",\"error\":null,"
	    "\"elapsed_ms\":null,\"answer\":null}],\"draft\":{\"n\":1,"
	    "\"answers\":1,\"of\":2,\"made_ms\":800,\"text\":\"d1\"}}");
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_free(sql);
	for (int i = 0; i < 6; i++) {
		sql = sqlite3_mprintf("INSERT INTO tasks VALUES (%Q, 'o', "
		    "'heavy_orchestrate', 'completed', NULL, '{}', %Q, NULL, "
		    "NULL, NULL, 1, 2, 9000000000000, 9000000000001, 1, '1@x')",
		    hexid(10 + i), damaged[i]);
		cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL),
		    SQLITE_OK);
		sqlite3_free(sql);
	}
	sqlite3_close(db);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(raw_int("PRAGMA user_version"), 5);
	cr_assert_eq(raw_int("SELECT count(*) FROM pragma_table_info('tasks') "
	    "WHERE name = 'agents'"), 0, "the JSON column stayed");
	cr_assert_eq(sync_get(hexid(1), "o", &t), 0);
	{
		struct store_progress	want = agents_phase;

		want.phase = (char *)"done";
		assert_progress(&t.progress, &want);
	}
	cr_assert_str_eq(t.query, "what");
	cr_assert_eq(t.num_agents, 2);
	cr_assert_eq(t.progress.draft.n, 1);
	cr_assert_eq(t.progress.draft.answers, 1);
	cr_assert_eq(t.progress.draft.of, 2);
	cr_assert_eq(t.progress.draft.made_ms, 800);
	cr_assert_str_eq(t.progress.draft.text, "d1");
	store_task_clear(&t);
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(sync_get(hexid(10 + i), "o", &t), 0);
		cr_assert_null(t.progress.phase, "%s", damaged[i]);
		cr_assert_eq(t.progress.nagents, 0, "%s", damaged[i]);
		cr_assert_null(t.query);
		cr_assert_eq(t.num_agents, 0);
		store_task_clear(&t);
	}
}

/* A result is kept typed and read back whole: it renders as it did. */
Test(store, a_result_and_the_usage_are_kept_typed)
{
	struct store_task	 t, got;
	char			*want, *have;

	row(&t, hexid(1), "completed", 60000);
	t.result = filled_edge();
	t.has_usage = true;
	t.usage = t.result->usage;
	cr_assert_eq(sync_put(&t), 0);
	cr_assert_eq(sync_get(hexid(1), "o", &got), 0);
	cr_assert_not_null(got.result);
	want = rendered(t.result);
	have = rendered(got.result);
	cr_assert_str_eq(have, want);
	cr_assert(got.has_usage);
	cr_assert_eq(got.usage.cost_micro_usd, 12345);
	cr_assert_eq(got.usage.hedged_calls, 1);
	free(want);
	free(have);
	store_task_clear(&got);
	taskresult_free(t.result);
	/* A text result, and a row without usage. */
	row(&t, hexid(2), "completed", 60000);
	t.result = taskresult_text("done after 1 s", false);
	cr_assert_eq(sync_put(&t), 0);
	cr_assert_eq(sync_get(hexid(2), "o", &got), 0);
	want = rendered(t.result);
	have = rendered(got.result);
	cr_assert_str_eq(have, want);
	cr_assert_not(got.has_usage);
	free(want);
	free(have);
	store_task_clear(&got);
	taskresult_free(t.result);
	cr_assert_eq(raw_int("SELECT count(*) FROM pragma_table_info('tasks') "
	    "WHERE name IN ('result', 'usage')"), 0, "no JSON columns");
	/* A result goes with its task. */
	cr_assert_eq(raw_int("SELECT count(*) FROM task_result_items"), 7);
}

/*
 * A file of schema version 3 kept the result and the usage as JSON text:
 * opening it converts them into typed rows that render as the text did,
 * and a damaged result (not JSON, not an object) into none; a value of the
 * wrong type reads as none.  Then the columns go.
 */
Test(store, a_version_3_file_has_its_results_converted)
{
	struct task_result	*full = filled_edge(), *text, *error;
	char			*texts[3], path[300], *sql, err[256], *have;
	static const char *const damaged[] = { "{", "[1,2]", "7",
	    "{\"structuredContent\":{\"agents\":3,\"ranking\":\"x\","
	    "\"drafts\":{\"list\":7},\"sandbox\":{\"weaker\":\"w\"},"
	    "\"usage\":{\"prompt_tokens\":\"x\"},\"planner_fallbacks\":{}}}",
	    NULL };
	sqlite3			*db;
	struct store_task	 t;

	text = taskresult_text("done after 1 s", false);
	error = taskresult_text("it failed", true);
	texts[0] = rendered(full);
	texts[1] = rendered(text);
	texts[2] = rendered(error);
	store_close();
	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "CREATE TABLE tasks (id TEXT PRIMARY "
	    "KEY, owner TEXT NOT NULL, tool TEXT NOT NULL, status TEXT NOT "
	    "NULL, status_message TEXT, params TEXT NOT NULL, query TEXT, "
	    "num_agents INTEGER NOT NULL DEFAULT 0, phase TEXT, progress_ms "
	    "INTEGER, draft_n INTEGER NOT NULL DEFAULT 0, draft_answers "
	    "INTEGER, draft_of INTEGER, draft_made_ms INTEGER, draft_text "
	    "TEXT, result TEXT, usage TEXT, cache_key TEXT, created_ms "
	    "INTEGER NOT NULL, updated_ms INTEGER NOT NULL, ttl_ms INTEGER "
	    "NOT NULL, expires_ms INTEGER NOT NULL, pid INTEGER NOT NULL, "
	    "proc_start TEXT NOT NULL); CREATE TABLE task_agents (task_id "
	    "TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE, idx "
	    "INTEGER NOT NULL, question TEXT, status TEXT NOT NULL, step "
	    "TEXT, error TEXT, answer TEXT, elapsed_ms INTEGER, PRIMARY KEY "
	    "(task_id, idx)) WITHOUT ROWID; CREATE TABLE quota_charges "
	    "(identity TEXT NOT NULL, kind TEXT NOT NULL, window_start "
	    "INTEGER NOT NULL, source TEXT NOT NULL, amount INTEGER NOT NULL, "
	    "PRIMARY KEY (identity, kind, window_start, source)) WITHOUT "
	    "ROWID; PRAGMA user_version = 3;", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 8; i++) {
		sql = sqlite3_mprintf("INSERT INTO tasks (id, owner, tool, "
		    "status, params, result, usage, created_ms, updated_ms, "
		    "ttl_ms, expires_ms, pid, proc_start) VALUES (%Q, 'o', "
		    "'heavy_orchestrate', 'completed', '{}', %Q, %Q, 1, 2, "
		    "9000000000000, 9000000000001, 1, '1@x')", hexid(1 + i),
		    i < 3 ? texts[i] : damaged[i - 3], i == 0 ?
		    "{\"prompt_tokens\":5,\"completion_tokens\":6,"
		    "\"total_tokens\":11,\"llm_calls\":1,\"retries\":0,"
		    "\"hedged_calls\":0,\"hedges_won\":0,\"cost_usd\":0.25}" :
		    i == 1 ? "[" : NULL);
		cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL),
		    SQLITE_OK);
		sqlite3_free(sql);
	}
	sqlite3_close(db);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(raw_int("PRAGMA user_version"), 5);
	cr_assert_eq(raw_int("SELECT count(*) FROM pragma_table_info('tasks') "
	    "WHERE name IN ('result', 'usage')"), 0, "the JSON columns stayed");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sync_get(hexid(1 + i), "o", &t), 0);
		cr_assert_not_null(t.result, "%s", texts[i]);
		have = rendered(t.result);
		cr_assert_str_eq(have, texts[i]);
		free(have);
		if (i == 0) {
			cr_assert(t.has_usage);
			cr_assert_eq(t.usage.total_tokens, 11);
			cr_assert_eq(t.usage.cost_micro_usd, 250000);
		} else
			cr_assert_not(t.has_usage, "damaged or no usage");
		store_task_clear(&t);
		free(texts[i]);
	}
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(sync_get(hexid(4 + i), "o", &t), 0);
		if (i == 3) {	/* an object of the wrong shape */
			cr_assert_not_null(t.result);
			cr_assert_eq(t.result->nagents, 0);
			cr_assert_eq(t.result->usage.prompt_tokens, 0);
			cr_assert_eq(t.result->drafts.n, 0);
			cr_assert_eq(t.result->nweaker, 0);
			cr_assert_eq(t.result->planner.nfallbacks, 0);
			cr_assert_not(t.result->ranked);
			have = rendered(t.result);	/* it renders */
			free(have);
		} else
			cr_assert_null(t.result, "%s", damaged[i]);
		store_task_clear(&t);
	}
	taskresult_free(full);
	taskresult_free(text);
	taskresult_free(error);
}

Test(store, a_newer_schema_is_left_alone)
{
	char	path[300], cmd[400], err[256];

	store_close();
	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0);
	store_close();
	/* Written by a future heavyd: user_version 99. */
	snprintf(cmd, sizeof cmd, "printf '\\143' | dd of=%s bs=1 seek=63 "
	    "conv=notrunc status=none", path);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), -1);
	cr_assert(strstr(err, "schema version 99") != NULL, "%s", err);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), -1, "moved aside");
	snprintf(cmd, sizeof cmd, "printf '\\000' | dd of=%s bs=1 seek=63 "
	    "conv=notrunc status=none", path);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
}

Test(store, the_file_is_the_users_alone)
{
	char		path[320];
	struct stat	st;

	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
}

/* ---- durable.c: the registry written through to the store ---- */

static struct heavy_config	dcfg;

static void
dsetup(void)
{
	unit_tmp(dir, sizeof dir, "heavyd-durable");
	cr_assert_not_null(mkdtemp(dir));
	config_defaults(&dcfg);
	config_set_str(&dcfg.state_dir, dir);
	dcfg.store_write_ms = 200;
	dcfg.store_busy_ms = 20;
	dcfg.store_sweep_s = 1;
	ev_base = event_base_new();
	registry_init();
	durable_init(&dcfg);
}

static void
dteardown(void)
{
	char	cmd[320];

	registry_free();
	durable_stop();
	durable_close();
	event_base_free(ev_base);
	ev_base = NULL;
	config_clear(&dcfg);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(durable, .init = dsetup, .fini = dteardown);

static void
run_loop_ms(int ms)
{
	struct timeval	tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(ev_base, &tv);
	event_base_dispatch(ev_base);
}

/* durable_get, answered before it returns (SQLite). */
struct dget_answer {
	bool			 done;
	int			 rc;
	struct store_task	 t;
	struct task_record	*live;
};

static void
dget_cb(void *arg, int rc, const struct store_task *t,
    struct task_record *live)
{
	struct dget_answer	*a = arg;

	a->done = true;
	a->rc = rc;
	a->live = live;
	if (t != NULL)
		store_task_copy(&a->t, t);
}

static int
dget(const char *id, const char *owner, struct store_task *t,
    struct task_record **live)
{
	struct dget_answer	a = { 0 };

	durable_get(id, owner, dget_cb, &a);
	cr_assert(a.done, "answered");
	*t = a.t;
	*live = a.live;
	return a.rc;
}

/* A task started: its row is written at once. */
static struct task_record *
dadd(int n)
{
	struct task_record	*r = registry_new("o", "heavy_orchestrate");
	struct store_task	 t;

	r->ttl_ms = 60000;
	registry_add(r, NULL, hexid(n), now_ms());
	cr_assert_eq(sync_get(hexid(n), "o", &t), 0, "not written at once");
	store_task_clear(&t);
	return r;
}

static int64_t
stored_update(int n)
{
	struct store_task	t;
	int64_t			u;

	cr_assert_eq(sync_get(hexid(n), "o", &t), 0);
	u = t.updated_ms;
	store_task_clear(&t);
	return u;
}

Test(durable, a_start_is_stored_at_once_and_notes_are_throttled_not_lost)
{
	struct task_record	*r = dadd(1), *q = dadd(2);
	int64_t			 first = stored_update(1);

	usleep(20000);
	registry_touch(r);	/* notes: put off */
	registry_touch(q);
	cr_assert_eq(stored_update(1), first, "a note was written at once");
	run_loop_ms(400);	/* both due in one turn: one transaction */
	cr_assert_gt(stored_update(1), first, "the note was never written");
	cr_assert_eq(stored_update(1), r->updated_ms);
	cr_assert_eq(stored_update(2), q->updated_ms);
	usleep(250000);
	registry_touch(r);	/* past the gap: due this turn */
	cr_assert_lt(stored_update(1), r->updated_ms);
	run_loop_ms(5);
	cr_assert_eq(stored_update(1), r->updated_ms);
}

/* The progress of a get_task_progress, as text. */
static char *
progress_text(const struct store_task *t)
{
	struct json_object	*sc = result_status_json(t), *p;
	char			*text;

	cr_assert(json_object_object_get_ex(sc, "progress", &p));
	text = strdup(json_object_to_json_string_ext(p,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(sc);
	return text;
}

/* One renderer: a task's progress reads the same from the registry and
 * from its stored row, and with it its statusMessage. */
Test(durable, a_stored_row_renders_as_the_live_one)
{
	struct task_record	*r = dadd(20);
	struct store_task	 live, stored;
	char			*a, *b;

	store_progress_copy(&r->progress, &agents_phase);
	durable_row(r, &live);
	cr_assert_str_eq(live.status_message, "agents: 1 of 2 finished");
	a = progress_text(&live);
	cr_assert_str_eq(a, "{\"phase\":\"agents\",\"elapsed_ms\":1500,"
	    "\"agents\":[{\"index\":1,\"question\":\"q1\",\"status\":\"ok\","
	    "\"step\":\"search_web\",\"error\":null,\"elapsed_ms\":1200,"
	    "\"answer\":\"a1\"},{\"index\":2,\"question\":\"q2\",\"status\":"
	    "\"running\",\"step\":\"read_url\",\"error\":null,\"elapsed_ms\":"
	    "null,\"answer\":null}],\"draft\":null}");
	usleep(250000);
	registry_touch(r);	/* past the gap: written this turn */
	run_loop_ms(5);
	cr_assert_eq(sync_get(hexid(20), "o", &stored), 0);
	cr_assert_str_eq(stored.status_message, live.status_message);
	b = progress_text(&stored);
	cr_assert_str_eq(b, a);
	free(a);
	free(b);
	store_task_clear(&live);
	store_task_clear(&stored);
	registry_finish(r, &over, taskresult_text("over", true), now_ms());
}

Test(durable, a_final_write_that_fails_is_kept_served_and_retried)
{
	struct store_task	 t;
	struct task_record	*r = dadd(2), *live;
	struct task_result	*res = taskresult_text("x", false);
	sqlite3			*other;
	char			 path[320];

	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(sqlite3_open(path, &other), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	    SQLITE_OK);	/* another heavyd holds the write lock */
	registry_finish(r, &clean, res, now_ms());
	cr_assert_eq(dget(hexid(2), "o", &t, &live), STORE_OK);
	cr_assert_null(live);
	cr_assert_str_eq(t.status, "completed", "the end was lost");
	store_task_clear(&t);
	cr_assert_eq(sync_get(hexid(2), "o", &t), 0);
	cr_assert_str_eq(t.status, "working", "the write went through");
	store_task_clear(&t);
	cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	run_loop_ms(1300);	/* a sweep retries */
	cr_assert_eq(sync_get(hexid(2), "o", &t), 0);
	cr_assert_str_eq(t.status, "completed");
	store_task_clear(&t);
}

Test(durable, writes_due_in_one_turn_share_a_flush_even_when_one_ends_first)
{
	struct task_record	*r[3];
	struct store_task	 t;

	for (int i = 0; i < 3; i++)
		r[i] = dadd(10 + i);
	usleep(250000);
	for (int i = 0; i < 3; i++)
		registry_touch(r[i]);	/* due this turn */
	/* The first ends before the flush: its end is written at once. */
	registry_finish(r[0], &over, taskresult_text("over", true), now_ms());
	cr_assert_eq(sync_get(hexid(10), "o", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	store_task_clear(&t);
	run_loop_ms(5);
	for (int i = 1; i < 3; i++) {
		cr_assert_eq(sync_get(hexid(10 + i), "o", &t), 0);
		cr_assert_str_eq(t.status, "working");
		store_task_clear(&t);
	}
	registry_finish(r[1], &over, taskresult_text("over", true), now_ms());
	registry_finish(r[2], &over, taskresult_text("over", true), now_ms());
	/* Due and ended in one turn, alone: the flush finds nothing. */
	r[0] = dadd(13);
	usleep(250000);
	registry_touch(r[0]);
	registry_finish(r[0], &over, taskresult_text("over", true), now_ms());
	run_loop_ms(5);
	cr_assert_eq(sync_get(hexid(13), "o", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	store_task_clear(&t);
}

/*
 * Several heavyds starting at once on a fresh state directory: each one's
 * creation of the file, its WAL switch and the schema wait for the
 * others within the busy timeout, as any other write does, and none fails
 * with "database is locked".
 */
Test(store_start, concurrent_creation)
{
	char	fresh[256], err[256], cmd[320];
	int	status, failed = 0;
	pid_t	pids[6];

	for (int round = 0; round < 10; round++) {
		unit_tmp(fresh, sizeof fresh, "heavyd-store");
		cr_assert_not_null(mkdtemp(fresh));
		for (int i = 0; i < 6; i++)
			if ((pids[i] = fork()) == 0)
				_exit(sync_open(fresh, false, err, sizeof err) == 0 ? 0 : (fprintf(stderr,
				    "%s\n", err), 1));
		for (int i = 0; i < 6; i++) {
			cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
			failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
		}
		snprintf(cmd, sizeof cmd, "rm -rf %s", fresh);
		cr_assert_eq(system(cmd), 0);
	}
	cr_assert_eq(failed, 0, "%d of 60 starts failed", failed);
}

/* store.synchronous: full makes every commit wait for the disk. */
Test(store_start, synchronous_as_configured)
{
	char	fresh[256], err[256], cmd[320];

	unit_tmp(fresh, sizeof fresh, "heavyd-store");
	cr_assert_not_null(mkdtemp(fresh));
	cr_assert_eq(sync_open(fresh, true, err, sizeof err), 0, "%s",
	    err);
	cr_assert_eq(store_durability(), 2, "FULL");
	store_close();
	cr_assert_eq(sync_open(fresh, false, err, sizeof err), 0, "%s",
	    err);
	cr_assert_eq(store_durability(), 1, "NORMAL");
	store_close();
	snprintf(cmd, sizeof cmd, "rm -rf %s", fresh);
	cr_assert_eq(system(cmd), 0);
}

/* What the store handed up to resume, copied. */
static struct store_task	resumed_row;
static char			resumed_from[64], resumed_why[64];
static int			nresumed;

static void
resumed_cb(const struct store_task *t, const char *from, const char *why)
{
	nresumed++;
	store_task_clear(&resumed_row);
	store_task_copy(&resumed_row, t);
	snprintf(resumed_from, sizeof resumed_from, "%s", from);
	snprintf(resumed_why, sizeof resumed_why, "%s", why);
}

static char	*two_fallbacks[] = { (char *)"fb/one", (char *)"fb/two", NULL };

/* A child's task with these arguments, its child dead: settled. */
static int
settle_dead_child(const char *id, const struct store_args *a)
{
	int	hold, status, n;
	pid_t	pid;

	child_args = a;
	pid = child_with_task(id, &hold);
	child_args = NULL;
	wait_row(id);
	close(hold);
	waitpid(pid, &status, 0);
	store_resume(resumed_cb);
	n = sync_settle();
	store_resume(NULL);
	return n;
}

/*
 * A task of a dead process that asked to be resumed, within its deadline,
 * is claimed by this one (the row now names it) and handed up with its
 * arguments, questions and the answers in; it is not failed, and a
 * second settle finds nothing more to do.
 */
Test(store, a_dead_processs_task_is_resumed_here)
{
	struct store_args	a = { .set = true, .timeout_s = 300,
	    .model = (char *)"m/x", .strategy = (char *)"ranked",
	    .fallbacks = two_fallbacks, .nfallbacks = 2,
	    .max_total_tokens = 5000, .max_cost_usd = 0.5, .min_agents = 1,
	    .straggler_grace_s = 2.5, .hedge_after_ms = 700, .ask_cost = true,
	    .incremental_interval_s = 4, .resume = true,
	    .deadline_ms = wall_ms() + 300000 };
	struct store_task	t;

	nresumed = 0;
	cr_assert_eq(settle_dead_child(hexid(9), &a), 0, "none failed");
	cr_assert_eq(nresumed, 1);
	cr_assert_str_eq(resumed_row.id, hexid(9));
	cr_assert(strstr(resumed_from, "process ") == resumed_from, "%s",
	    resumed_from);
	cr_assert_str_eq(resumed_why, "its process died");
	cr_assert(resumed_row.args.set);
	cr_assert_eq(resumed_row.args.timeout_s, 300);
	cr_assert_str_eq(resumed_row.args.model, "m/x");
	cr_assert_str_eq(resumed_row.args.strategy, "ranked");
	cr_assert_eq(resumed_row.args.nfallbacks, 2);
	cr_assert_str_eq(resumed_row.args.fallbacks[0], "fb/one");
	cr_assert_str_eq(resumed_row.args.fallbacks[1], "fb/two");
	cr_assert_eq(resumed_row.args.max_total_tokens, 5000);
	cr_assert_eq(resumed_row.args.max_cost_usd, 0.5);
	cr_assert_eq(resumed_row.args.min_agents, 1);
	cr_assert_eq(resumed_row.args.straggler_grace_s, 2.5);
	cr_assert_eq(resumed_row.args.hedge_after_ms, 700);
	cr_assert(resumed_row.args.ask_cost);
	cr_assert_eq(resumed_row.args.incremental_interval_s, 4);
	cr_assert(resumed_row.args.resume);
	cr_assert_eq(resumed_row.args.deadline_ms, a.deadline_ms);
	cr_assert_str_eq(resumed_row.query, "q");
	assert_progress(&resumed_row.progress, &agents_phase);
	store_task_clear(&resumed_row);
	cr_assert_eq(sync_get(hexid(9), "me", &t), 0);
	cr_assert_str_eq(t.status, "working");
	cr_assert(t.ours, "the row is this process's now");
	cr_assert_not(t.orphaned);
	store_task_clear(&t);
	store_resume(resumed_cb);
	cr_assert_eq(sync_settle(), 0);
	store_resume(NULL);
	cr_assert_eq(nresumed, 1, "claimed once");
}

/* resume false, a deadline passed, no arguments kept, or nobody here to
 * resume: failed as interrupted, as before. */
Test(store, a_task_that_cannot_be_resumed_is_failed)
{
	struct store_args	no = { .set = true, .timeout_s = 300,
	    .resume = false, .deadline_ms = wall_ms() + 300000 };
	struct store_args	late = { .set = true, .timeout_s = 1,
	    .resume = true, .deadline_ms = wall_ms() - 1 };
	struct store_task	t;

	nresumed = 0;
	cr_assert_eq(settle_dead_child(hexid(10), &no), 1);
	cr_assert_eq(settle_dead_child(hexid(11), &late), 1);
	cr_assert_eq(settle_dead_child(hexid(12), NULL), 1);
	cr_assert_eq(nresumed, 0);
	for (int i = 10; i <= 12; i++) {
		cr_assert_eq(sync_get(hexid(i), "me", &t), 0);
		cr_assert_str_eq(t.status, "failed");
		cr_assert(strstr(t.status_message, "interrupted by restart"));
		store_task_clear(&t);
	}
}

/*
 * A reader does not fail a task that is to be resumed (the settle claims
 * it); without anyone to resume it, it does, as before.
 */
Test(store, a_reader_leaves_a_task_to_resume_alone)
{
	struct store_args	a = { .set = true, .timeout_s = 300,
	    .resume = true, .deadline_ms = wall_ms() + 300000 };
	struct store_task	t;
	int			hold, status;
	pid_t			pid;

	child_args = &a;
	pid = child_with_task(hexid(13), &hold);
	child_args = NULL;
	wait_row(hexid(13));
	close(hold);
	waitpid(pid, &status, 0);
	store_resume(resumed_cb);
	cr_assert_eq(sync_get(hexid(13), "me", &t), 0);
	cr_assert_str_eq(t.status, "working");
	store_task_clear(&t);
	store_resume(NULL);
	cr_assert_eq(sync_get(hexid(13), "me", &t), 0);
	cr_assert_str_eq(t.status, "failed");
	store_task_clear(&t);
}

/*
 * A file of schema version 3 has no typed arguments: opening it adds
 * their columns and table; its rows have none (never resumed).
 */
Test(store, a_version_3_file_gets_the_arguments)
{
	static const char *const cols[] = { "timeout_s", "model", "strategy",
	    "max_total_tokens", "max_cost_usd", "min_agents",
	    "straggler_grace_s", "hedge_after_ms", "ask_cost",
	    "incremental_interval_s", "resume", "deadline_ms", NULL };
	char		 path[300], *sql, err[256];
	sqlite3		*db;
	struct store_task t;

	put(hexid(1), "o", "completed", wall_ms(), 60000);
	store_close();
	snprintf(path, sizeof path, "%s/tasks.db", dir);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "DROP TABLE task_fallbacks",
	    NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; cols[i] != NULL; i++) {
		sql = sqlite3_mprintf("ALTER TABLE tasks DROP COLUMN %s",
		    cols[i]);
		cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL),
		    SQLITE_OK, "%s", sqlite3_errmsg(db));
		sqlite3_free(sql);
	}
	cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL,
	    NULL), SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(raw_int("SELECT count(*) FROM pragma_table_info('tasks') "
	    "WHERE name = 'deadline_ms'"), 0);
	cr_assert_eq(sync_open(dir, false, err, sizeof err), 0, "%s", err);
	cr_assert_eq(raw_int("PRAGMA user_version"), 5);
	for (int i = 0; cols[i] != NULL; i++) {
		sql = sqlite3_mprintf("SELECT count(*) FROM "
		    "pragma_table_info('tasks') WHERE name = %Q", cols[i]);
		cr_assert_eq(raw_int(sql), 1, "%s", cols[i]);
		sqlite3_free(sql);
	}
	cr_assert_eq(raw_int("SELECT count(*) FROM task_fallbacks"), 0);
	cr_assert_eq(sync_get(hexid(1), "o", &t), 0);
	cr_assert_not(t.args.set);
	cr_assert_str_eq(t.status, "completed");
	store_task_clear(&t);
}

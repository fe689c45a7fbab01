/*
 * The task store: one SQLite database (WAL) in the state directory, shared
 * by every heavyd that uses that directory (each stdio client starts its
 * own).  A row holds a task's parameters, owner, per-agent state, result,
 * usage and timestamps; it outlives the process that ran the task.  Rows
 * name that process (pid, start time, boot id), so a task counts as
 * interrupted only when its own process is gone, never because another
 * heavyd started.  Every statement is one short transaction; a busy
 * timeout absorbs the other processes' writes.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "supervisor.h"

#define STORE_FILE		"tasks.db"
#define STORE_BUSY_MS		5000
#define STORE_SCHEMA_VERSION	1

static sqlite3	*db;
static char	 self_start[96];	/* starttime@boot_id of this process */

static const char *store_schema =
"CREATE TABLE IF NOT EXISTS tasks ("
"  id TEXT PRIMARY KEY,"
"  owner TEXT NOT NULL,"
"  status TEXT NOT NULL,"		/* working, completed, failed, cancelled */
"  status_message TEXT,"
"  params TEXT NOT NULL,"		/* JSON: the call's arguments */
"  agents TEXT,"			/* JSON: questions, statuses, answers */
"  result TEXT,"			/* JSON: the CallToolResult, once terminal */
"  usage TEXT,"				/* JSON */
"  cache_key TEXT,"
"  created_ms INTEGER NOT NULL,"	/* wall clock, ms since the epoch */
"  updated_ms INTEGER NOT NULL,"
"  ttl_ms INTEGER NOT NULL,"
"  pid INTEGER NOT NULL,"
"  proc_start TEXT NOT NULL"
");"
"CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks(owner, created_ms, id);"
"CREATE INDEX IF NOT EXISTS tasks_by_expiry ON tasks(created_ms);"
"CREATE INDEX IF NOT EXISTS tasks_by_cache ON tasks(cache_key) "
"  WHERE cache_key IS NOT NULL;"
"CREATE INDEX IF NOT EXISTS tasks_running ON tasks(status) "
"  WHERE status = 'working';";

int64_t
wall_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "starttime@boot_id" of a process, or "" when it is gone. */
static void
store_proc_start(pid_t pid, char *out, size_t len)
{
	char	 path[64], buf[1024], boot[64] = "", *p;
	FILE	*f;
	size_t	 n;
	unsigned long long start = 0;

	out[0] = '\0';
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Field 22; the command name (field 2) may hold spaces, so skip it. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2,
	    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
	    "%*d %*d %*d %*d %llu", &start) != 1)
		return;
	if ((f = fopen("/proc/sys/kernel/random/boot_id", "re")) != NULL) {
		if (fgets(boot, sizeof boot, f) == NULL)
			boot[0] = '\0';
		fclose(f);
	}
	boot[strcspn(boot, "\n")] = '\0';
	snprintf(out, len, "%llu@%s", start, boot);
}

static bool
store_proc_alive(pid_t pid, const char *start)
{
	char	now[96];

	if (pid == getpid())
		return strcmp(start, self_start) == 0;
	store_proc_start(pid, now, sizeof now);
	return now[0] != '\0' && strcmp(now, start) == 0;
}

static int
store_exec(const char *sql)
{
	char	*msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	log_warnx("task store: %s", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

/* Opens and checks the file; -1 with SQLITE_CORRUPT/NOTADB in *code. */
static int
store_try_open(const char *path, int *code)
{
	sqlite3_stmt	*st;
	int		 rc;

	*code = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (*code != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, STORE_BUSY_MS);
	rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && strcmp((const char *)
		    sqlite3_column_text(st, 0), "ok") != 0)
			rc = SQLITE_CORRUPT;
		sqlite3_finalize(st);
	}
	*code = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
	if (*code != SQLITE_OK)
		return -1;
	if (store_exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") ||
	    store_exec(store_schema)) {
		*code = sqlite3_errcode(db);
		return -1;
	}
	return 0;
}

/* A damaged file is moved aside, never deleted: it may still be read. */
static void
store_move_aside(const char *path)
{
	char	aside[4200], side[4200];

	snprintf(aside, sizeof aside, "%s.corrupt-%lld", path,
	    (long long)time(NULL));
	if (rename(path, aside) == -1)
		fatal("task store %s is corrupt and cannot be moved aside", path);
	for (const char *ext = "-wal"; ext != NULL;
	    ext = strcmp(ext, "-wal") == 0 ? "-shm" : NULL) {
		snprintf(side, sizeof side, "%s%s", path, ext);
		unlink(side);
	}
	log_warnx("task store %s was corrupt; moved it to %s and started a "
	    "fresh one", path, aside);
}

int
store_open(const char *state_dir, char *err, size_t errlen)
{
	char	path[4096];
	int	code;

	store_proc_start(getpid(), self_start, sizeof self_start);
	snprintf(path, sizeof path, "%s/%s", state_dir, STORE_FILE);
	if (store_try_open(path, &code) == 0)
		return 0;
	sqlite3_close(db);
	db = NULL;
	if (code != SQLITE_CORRUPT && code != SQLITE_NOTADB) {
		snprintf(err, errlen, "task store %s: %s", path,
		    sqlite3_errstr(code));
		return -1;
	}
	store_move_aside(path);
	if (store_try_open(path, &code) == 0)
		return 0;
	snprintf(err, errlen, "task store %s: %s", path, sqlite3_errstr(code));
	sqlite3_close(db);
	db = NULL;
	return -1;
}

void
store_close(void)
{
	sqlite3_close(db);
	db = NULL;
}

static sqlite3_stmt *
store_prepare(const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_warnx("task store: %s", sqlite3_errmsg(db));
		return NULL;
	}
	return st;
}

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

/* Runs a statement that returns no rows; -1 (and a log line) on error. */
static int
store_step_done(sqlite3_stmt *st)
{
	int	rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		log_warnx("task store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* A new task, as this process runs it. */
int
store_insert(const struct store_task *t)
{
	sqlite3_stmt	*st;

	if (db == NULL || (st = store_prepare("INSERT INTO tasks (id, owner, "
	    "status, status_message, params, agents, usage, cache_key, "
	    "created_ms, updated_ms, ttl_ms, pid, proc_start) VALUES "
	    "(?,?,?,?,?,?,?,?,?,?,?,?,?)")) == NULL)
		return -1;
	bind_text(st, 1, t->id);
	bind_text(st, 2, t->owner);
	bind_text(st, 3, t->status);
	bind_text(st, 4, t->status_message);
	bind_text(st, 5, t->params);
	bind_text(st, 6, t->agents);
	bind_text(st, 7, t->usage);
	bind_text(st, 8, t->cache_key);
	sqlite3_bind_int64(st, 9, t->created_ms);
	sqlite3_bind_int64(st, 10, t->updated_ms);
	sqlite3_bind_int64(st, 11, t->ttl_ms);
	sqlite3_bind_int(st, 12, (int)getpid());
	bind_text(st, 13, self_start);
	return store_step_done(st);
}

/*
 * A change of state.  A terminal row never changes again: the WHERE
 * clause makes "cancelled stays cancelled" hold even against a late
 * finish.  NULL fields keep their value.  1 when the row was terminal.
 */
int
store_update(const char *id, const char *status, const char *message,
    const char *agents, const char *result, const char *usage)
{
	sqlite3_stmt	*st;

	if (db == NULL || (st = store_prepare("UPDATE tasks SET "
	    "status = coalesce(?2, status), "
	    "status_message = coalesce(?3, status_message), "
	    "agents = coalesce(?4, agents), result = coalesce(?5, result), "
	    "usage = coalesce(?6, usage), updated_ms = ?7 "
	    "WHERE id = ?1 AND status = 'working'")) == NULL)
		return -1;
	bind_text(st, 1, id);
	bind_text(st, 2, status);
	bind_text(st, 3, message);
	bind_text(st, 4, agents);
	bind_text(st, 5, result);
	bind_text(st, 6, usage);
	sqlite3_bind_int64(st, 7, wall_ms());
	if (store_step_done(st) == -1)
		return -1;
	return sqlite3_changes(db) == 0 ? 1 : 0;
}

static char *
column_dup(sqlite3_stmt *st, int i)
{
	const unsigned char	*s = sqlite3_column_text(st, i);

	return s == NULL ? NULL : xstrdup((const char *)s);
}

#define STORE_COLUMNS "id, owner, status, status_message, params, agents, " \
	"result, usage, cache_key, created_ms, updated_ms, ttl_ms, pid, " \
	"proc_start"

static void
store_row(sqlite3_stmt *st, struct store_task *t)
{
	const unsigned char	*id = sqlite3_column_text(st, 0);

	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%s", id ? (const char *)id : "");
	t->owner = column_dup(st, 1);
	t->status = column_dup(st, 2);
	t->status_message = column_dup(st, 3);
	t->params = column_dup(st, 4);
	t->agents = column_dup(st, 5);
	t->result = column_dup(st, 6);
	t->usage = column_dup(st, 7);
	t->cache_key = column_dup(st, 8);
	t->created_ms = sqlite3_column_int64(st, 9);
	t->updated_ms = sqlite3_column_int64(st, 10);
	t->ttl_ms = sqlite3_column_int64(st, 11);
	t->pid = (pid_t)sqlite3_column_int(st, 12);
	t->ours = t->pid == getpid() && strcmp((const char *)
	    sqlite3_column_text(st, 13), self_start) == 0;
	t->orphaned = strcmp(t->status, "working") == 0 && !t->ours &&
	    !store_proc_alive(t->pid, (const char *)sqlite3_column_text(st, 13));
}

/* The message an interrupted task gets, in the store and in its result. */
static const char	store_interrupted[] = "interrupted by restart: the "
	"heavyd process that ran this task is gone";

/* A row whose process died mid-task: now failed, with that reason. */
static void
store_settle_orphan(struct store_task *t)
{
	struct json_object	*res;

	if (!t->orphaned)
		return;
	res = tool_error_result(store_interrupted);
	free(t->result);
	t->result = xstrdup(json_object_to_json_string_ext(res,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(res);
	config_set_str(&t->status, "failed");
	config_set_str(&t->status_message, store_interrupted);
	store_update(t->id, t->status, t->status_message, NULL, t->result,
	    NULL);
	t->orphaned = false;
}

/* 0 found, 1 not found (or another owner's: the same answer), -1 error. */
int
store_get(const char *id, const char *owner, struct store_task *t)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE id = ? AND owner = ?")) == NULL)
		return -1;
	bind_text(st, 1, id);
	bind_text(st, 2, owner);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		store_row(st, t);
	else if (rc != SQLITE_DONE)
		log_warnx("task store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? 1 : -1;
	store_settle_orphan(t);
	return 0;
}

/*
 * One page of an owner's tasks, newest first.  The cursor is the last
 * row's "created_ms.id"; callers treat it as opaque.  -2 on a bad cursor.
 */
int
store_list(const char *owner, const char *cursor, int limit,
    struct store_task **out, int *n, char **next)
{
	sqlite3_stmt	*st;
	long long	 c_ms = INT64_MAX;
	char		 c_id[33] = "~";	/* sorts after every hex id */
	int		 rc;

	*out = NULL;
	*n = 0;
	*next = NULL;
	if (cursor != NULL && (sscanf(cursor, "%lld.%32[0-9a-f]", &c_ms,
	    c_id) != 2 || strlen(c_id) != 32))
		return -2;
	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE owner = ?1 AND (created_ms < ?2 OR "
	    "(created_ms = ?2 AND id < ?3)) ORDER BY created_ms DESC, id DESC "
	    "LIMIT ?4")) == NULL)
		return -1;
	bind_text(st, 1, owner);
	sqlite3_bind_int64(st, 2, c_ms);
	bind_text(st, 3, c_id);
	sqlite3_bind_int(st, 4, limit + 1);
	*out = xcalloc((size_t)limit + 1, sizeof **out);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n <= limit)
		store_row(st, &(*out)[(*n)++]);
	sqlite3_finalize(st);
	if (*n > limit) {
		store_task_clear(&(*out)[--(*n)]);
		*next = xasprintf("%lld.%s", (long long)(*out)[*n - 1].created_ms,
		    (*out)[*n - 1].id);
	}
	for (int i = 0; i < *n; i++)
		store_settle_orphan(&(*out)[i]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Rows whose process is gone, found at startup: failed, with the reason. */
int
store_settle_interrupted(void)
{
	struct store_task	 t;
	sqlite3_stmt		*st;
	char			**ids = NULL;
	size_t			 n = 0;

	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE status = 'working'")) == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		store_row(st, &t);
		if (t.orphaned) {
			ids = xrealloc(ids, (n + 1) * sizeof *ids);
			ids[n++] = xstrdup(t.id);
		}
		store_task_clear(&t);
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < n; i++) {
		if (store_get_any(ids[i], &t) == 0)
			store_task_clear(&t);	/* settled on the way */
		free(ids[i]);
	}
	free(ids);
	if (n > 0)
		log_info("task store: %zu interrupted task(s) marked failed", n);
	return (int)n;
}

/* By id alone, for this process's own bookkeeping. */
int
store_get_any(const char *id, struct store_task *t)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE id = ?")) == NULL)
		return -1;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		store_row(st, t);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? 1 : -1;
	store_settle_orphan(t);
	return 0;
}

/*
 * Expired rows go (past created + ttl, unless still running in a live
 * process), then the oldest beyond max_rows.  Returns the rows deleted.
 */
int
store_sweep(int max_rows)
{
	sqlite3_stmt	*st;
	int		 deleted;

	if (db == NULL || (st = store_prepare("DELETE FROM tasks WHERE "
	    "created_ms + ttl_ms < ?1 AND status != 'working'")) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, wall_ms());
	if (store_step_done(st) == -1)
		return -1;
	deleted = sqlite3_changes(db);
	if ((st = store_prepare("DELETE FROM tasks WHERE status != 'working' "
	    "AND id IN (SELECT id FROM tasks WHERE status != 'working' "
	    "ORDER BY created_ms DESC LIMIT -1 OFFSET ?1)")) == NULL)
		return -1;
	sqlite3_bind_int(st, 1, max_rows);
	if (store_step_done(st) == -1)
		return -1;
	return deleted + sqlite3_changes(db);
}

/* The newest completed task with this cache key, younger than max_age. */
int
store_cache_find(const char *owner, const char *key, int64_t max_age_ms,
    struct store_task *t)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE cache_key = ?1 AND owner = ?2 AND "
	    "status = 'completed' AND created_ms >= ?3 "
	    "ORDER BY created_ms DESC LIMIT 1")) == NULL)
		return -1;
	bind_text(st, 1, key);
	bind_text(st, 2, owner);
	sqlite3_bind_int64(st, 3, wall_ms() - max_age_ms);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		store_row(st, t);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

void
store_task_clear(struct store_task *t)
{
	free(t->owner);
	free(t->status);
	free(t->status_message);
	free(t->params);
	free(t->agents);
	free(t->result);
	free(t->usage);
	free(t->cache_key);
	memset(t, 0, sizeof *t);
}

/*
 * The task store: one SQLite database (WAL) in the state directory, shared
 * by every heavyd that uses that directory (each stdio client starts its
 * own).  A row holds a task's parameters, owner, per-agent state, result,
 * usage and timestamps; it outlives the process that ran the task.  Rows
 * name that process (pid, start time, boot id), so a task counts as
 * interrupted only when its own process is gone, never because another
 * heavyd started.  Only that process writes a task's row (store_put), and
 * a terminal row never changes again.  A finished row expires at created
 * + ttl: lookups skip it at once, the sweep deletes it.  Every statement
 * is one short transaction; a busy timeout absorbs the other processes'
 * writes.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "supervisor.h"
#include "metrics.h"

#define STORE_FILE		"tasks.db"
#define STORE_SCHEMA_VERSION	1

static sqlite3		*db;
static sqlite3_stmt	*st_put;	/* the hot statement, prepared once */
static char		 last_error[256];	/* why the last write failed */
static char		 self_start[96];	/* starttime@boot_id of this process */

static const char *store_schema =
"CREATE TABLE IF NOT EXISTS tasks ("
"  id TEXT PRIMARY KEY,"
"  owner TEXT NOT NULL,"
"  tool TEXT NOT NULL,"			/* the tool that started it */
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
"  expires_ms INTEGER NOT NULL,"	/* created + ttl, indexed for the sweep */
"  pid INTEGER NOT NULL,"
"  proc_start TEXT NOT NULL"
");"
"CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks(owner, created_ms, id);"
"CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created_ms);"
"CREATE INDEX IF NOT EXISTS tasks_by_expiry ON tasks(expires_ms);"
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

/* "starttime@boot_id" of a process, or "" when it is gone (a zombie is
 * gone: it runs nothing, and its parent has yet to reap it). */
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
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ' || p[2] == 'Z' ||
	    p[2] == 'X' || sscanf(p + 2,
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

/* Logs a failed statement and keeps its cause for store_error(). */
static void
store_failed(const char *msg)
{
	snprintf(last_error, sizeof last_error, "%s", msg);
	log_warnx("task store: %s", msg);
}

/* Why the last statement that failed did (SQLite's words). */
const char *
store_error(void)
{
	return last_error[0] != '\0' ? last_error : "unknown error";
}

static int
store_exec(const char *sql)
{
	char	*msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	store_failed(msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

/* The first column of a one-row statement, as text; an SQLite code. */
static int
store_pragma(const char *sql, char *out, size_t len)
{
	sqlite3_stmt		*st;
	const unsigned char	*v;
	int			 rc;

	if ((rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL)) != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	v = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
	snprintf(out, len, "%s", v ? (const char *)v : "");
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * The schema, once, in one immediate transaction: of several heavyds
 * starting at once on a fresh file, one creates it and the others, waiting
 * their turn, find it current.  A file of a newer heavyd is left alone.
 */
static int
store_schema_check(const char *path, char *err, size_t errlen)
{
	char	v[32], sql[64];
	int	rc;

	if ((rc = store_pragma("PRAGMA user_version", v, sizeof v)) != SQLITE_OK)
		return rc;
	if (atoi(v) > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "task store %s has schema version %s; this "
		    "heavyd knows version %d (a newer heavyd wrote it)", path, v,
		    STORE_SCHEMA_VERSION);
		return SQLITE_ERROR;
	}
	if (atoi(v) == STORE_SCHEMA_VERSION)
		return SQLITE_OK;	/* no write: several heavyds start at once */
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d;",
	    STORE_SCHEMA_VERSION);
	if (store_exec("BEGIN IMMEDIATE") == -1)
		return sqlite3_errcode(db);
	if (store_exec(store_schema) == -1 || store_exec(sql) == -1 ||
	    store_exec("COMMIT") == -1) {
		rc = sqlite3_errcode(db);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return SQLITE_OK;
}

/*
 * Opens and checks the file.  Returns an SQLite code: SQLITE_CORRUPT or
 * SQLITE_NOTADB for a damaged file; err says what went wrong.
 */
static int
store_try_open(const char *path, int busy_ms, bool sync_full, char *err,
    size_t errlen)
{
	char	check[64];
	int	rc, fd;

	err[0] = '\0';
	/* Ours alone (SQLite would make it 0644); -wal and -shm copy it. */
	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0600)) == -1) {
		snprintf(err, errlen, "task store %s: %s", path,
		    strerror(errno));
		return SQLITE_CANTOPEN;
	}
	close(fd);
	if ((rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL)) == SQLITE_OK) {
		sqlite3_busy_timeout(db, busy_ms);
		rc = store_pragma("PRAGMA quick_check", check, sizeof check);
		if (rc == SQLITE_OK && strcmp(check, "ok") != 0)
			rc = SQLITE_CORRUPT;
	}
	/* NORMAL survives a crash of heavyd; FULL also a power cut. */
	if (rc == SQLITE_OK && (store_exec("PRAGMA journal_mode=WAL") == -1 ||
	    store_exec(sync_full ? "PRAGMA synchronous=FULL" :
	    "PRAGMA synchronous=NORMAL") == -1))
		rc = sqlite3_errcode(db);
	if (rc == SQLITE_OK)
		rc = store_schema_check(path, err, errlen);
	if (rc != SQLITE_OK && err[0] == '\0')
		snprintf(err, errlen, "task store %s: %s", path,
		    sqlite3_errstr(rc));
	return rc;
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

/* A lock another heavyd holds; it lets go within the busy timeout. */
static bool
store_busy(int rc)
{
	return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

/*
 * Opens the file, again while another heavyd holds a lock that SQLite
 * does not wait for by itself (switching a fresh file to WAL, recovering
 * a WAL), until busy_ms have passed, as any other write waits.
 */
static int
store_open_path(const char *path, int busy_ms, bool sync_full, char *err,
    size_t errlen)
{
	int64_t	deadline = now_ms() + busy_ms;
	int	rc, pause_ms = 1;

	for (;;) {
		rc = store_try_open(path, busy_ms, sync_full, err, errlen);
		if (rc == SQLITE_OK || !store_busy(rc) || now_ms() >= deadline)
			return rc;
		sqlite3_close(db);
		db = NULL;
		usleep((useconds_t)pause_ms * 1000);
		pause_ms = pause_ms < 32 ? pause_ms * 2 : 32;
	}
}

/* <state_dir>/tasks.db; a damaged one is moved aside and replaced. */
int
store_open(const char *state_dir, int busy_ms, bool sync_full, char *err,
    size_t errlen)
{
	char	path[4096];
	int	rc;

	store_proc_start(getpid(), self_start, sizeof self_start);
	snprintf(path, sizeof path, "%s/%s", state_dir, STORE_FILE);
	rc = store_open_path(path, busy_ms, sync_full, err, errlen);
	if (rc == SQLITE_OK)
		return 0;
	sqlite3_close(db);
	db = NULL;
	if (rc != SQLITE_CORRUPT && rc != SQLITE_NOTADB)
		return -1;
	store_move_aside(path);
	if (store_open_path(path, busy_ms, sync_full, err, errlen) == SQLITE_OK)
		return 0;
	sqlite3_close(db);
	db = NULL;
	return -1;
}

/* SQLite's synchronous level on our connection: 1 NORMAL, 2 FULL. */
int
store_synchronous(void)
{
	char	v[16];

	return db != NULL && store_pragma("PRAGMA synchronous", v,
	    sizeof v) == SQLITE_OK ? atoi(v) : -1;
}

void
store_close(void)
{
	sqlite3_finalize(st_put);
	st_put = NULL;
	sqlite3_close(db);
	db = NULL;
}

static sqlite3_stmt *
store_prepare(const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_failed(sqlite3_errmsg(db));
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
		store_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

#define STORE_INSERT "INSERT INTO tasks (id, owner, tool, status, " \
	"status_message, params, agents, result, usage, cache_key, " \
	"created_ms, updated_ms, ttl_ms, expires_ms, pid, proc_start) " \
	"VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"

static void
store_bind_task(sqlite3_stmt *st, const struct store_task *t)
{
	bind_text(st, 1, t->id);
	bind_text(st, 2, t->owner);
	bind_text(st, 3, t->tool ? t->tool : "heavy_orchestrate");
	bind_text(st, 4, t->status);
	bind_text(st, 5, t->status_message);
	bind_text(st, 6, t->params ? t->params : "{}");
	bind_text(st, 7, t->agents);
	bind_text(st, 8, t->result);
	bind_text(st, 9, t->usage);
	bind_text(st, 10, t->cache_key);
	sqlite3_bind_int64(st, 11, t->created_ms);
	sqlite3_bind_int64(st, 12, t->updated_ms);
	sqlite3_bind_int64(st, 13, t->ttl_ms);
	sqlite3_bind_int64(st, 14, t->created_ms + t->ttl_ms);
	sqlite3_bind_int(st, 15, (int)getpid());
	bind_text(st, 16, self_start);
}

/* A write took this long since t0 and returned rc (-1: failed). */
static int
store_timed(const char *op, int64_t t0, int rc)
{
	metrics_store_write(op, now_us() - t0, rc != -1);
	return rc;
}

/* One transaction around several writes; -1 if it cannot start. */
int
store_begin(void)
{
	int64_t	t0 = now_us();

	if (db == NULL)
		return -1;
	return store_timed("begin", t0, store_exec("BEGIN IMMEDIATE"));
}

int
store_commit(void)
{
	int64_t	t0 = now_us();

	if (store_exec("COMMIT") == 0)
		return store_timed("commit", t0, 0);
	store_exec("ROLLBACK");	/* the rows are written again later */
	return store_timed("commit", t0, -1);
}

/* A new task, as this process runs it. */
int
store_insert(const struct store_task *t)
{
	sqlite3_stmt	*st;
	int64_t		 t0 = now_us();

	if (db == NULL || (st = store_prepare(STORE_INSERT)) == NULL)
		return -1;
	store_bind_task(st, t);
	return store_timed("insert", t0, store_step_done(st));
}

/*
 * A task of this process, as it is now: inserted the first time (so a
 * failed insert heals on the next write), else updated.  Only the process
 * that runs a task writes its row, and a terminal row never changes
 * again.  0 written, 1 the row was terminal already, -1 error.
 */
int
store_put(const struct store_task *t)
{
	int64_t	t0 = now_us();
	int	rc;

	if (db == NULL || (st_put == NULL && (st_put = store_prepare(
	    STORE_INSERT " ON CONFLICT(id) DO UPDATE SET status = "
	    "excluded.status, status_message = excluded.status_message, "
	    "agents = excluded.agents, result = excluded.result, usage = "
	    "excluded.usage, cache_key = excluded.cache_key, updated_ms = "
	    "excluded.updated_ms WHERE tasks.status = 'working' AND "
	    "tasks.pid = excluded.pid AND tasks.proc_start = "
	    "excluded.proc_start")) == NULL))
		return -1;
	store_bind_task(st_put, t);
	if ((rc = sqlite3_step(st_put)) != SQLITE_DONE)
		store_failed(sqlite3_errmsg(db));
	sqlite3_reset(st_put);
	sqlite3_clear_bindings(st_put);
	if (rc != SQLITE_DONE)
		return store_timed("put", t0, -1);
	return store_timed("put", t0, sqlite3_changes(db) == 0 ? 1 : 0);
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
	int64_t		 t0 = now_us();

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
		return store_timed("update", t0, -1);
	return store_timed("update", t0, sqlite3_changes(db) == 0 ? 1 : 0);
}

static char *
column_dup(sqlite3_stmt *st, int i)
{
	const unsigned char	*s = sqlite3_column_text(st, i);

	return s == NULL ? NULL : xstrdup((const char *)s);
}

#define STORE_COLUMNS "id, owner, tool, status, status_message, params, " \
	"agents, result, usage, cache_key, created_ms, updated_ms, ttl_ms, " \
	"pid, proc_start"

static void
store_row(sqlite3_stmt *st, struct store_task *t)
{
	const unsigned char	*id = sqlite3_column_text(st, 0);
	const char		*start = (const char *)sqlite3_column_text(st, 14);

	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%s", id ? (const char *)id : "");
	t->owner = column_dup(st, 1);
	t->tool = column_dup(st, 2);
	t->status = column_dup(st, 3);
	t->status_message = column_dup(st, 4);
	t->params = column_dup(st, 5);
	t->agents = column_dup(st, 6);
	t->result = column_dup(st, 7);
	t->usage = column_dup(st, 8);
	t->cache_key = column_dup(st, 9);
	t->created_ms = sqlite3_column_int64(st, 10);
	t->updated_ms = sqlite3_column_int64(st, 11);
	t->ttl_ms = sqlite3_column_int64(st, 12);
	t->pid = (pid_t)sqlite3_column_int(st, 13);
	t->ours = t->pid == getpid() && strcmp(start, self_start) == 0;
	t->orphaned = strcmp(t->status, "working") == 0 && !t->ours &&
	    !store_proc_alive(t->pid, start);
}

/* The message an interrupted task gets, in the store and in its result. */
static const char	store_interrupted[] = "interrupted by restart: the "
	"heavyd process that ran this task is gone";

/* The last progress of an interrupted task: what was under way stopped. */
static char *
store_interrupted_agents(const char *agents)
{
	struct json_object	*o, *list, *a;
	const char		*st;
	char			*out;

	if (agents == NULL || (o = json_tokener_parse(agents)) == NULL)
		return NULL;
	json_object_object_add(o, "phase", json_object_new_string(
	    "interrupted"));
	if (json_object_object_get_ex(o, "agents", &list))
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			a = json_object_array_get_idx(list, i);
			st = json_object_get_string(json_object_object_get(a,
			    "status"));
			if (st != NULL && (strcmp(st, "pending") == 0 ||
			    strcmp(st, "running") == 0))
				json_object_object_add(a, "status",
				    json_object_new_string("interrupted"));
		}
	out = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}

/* A row whose process died mid-task: now failed, with that reason (and
 * no result; the reason is what a reader is told). */
static void
store_settle_orphan(struct store_task *t)
{
	char	*agents;

	if (!t->orphaned)
		return;
	if ((agents = store_interrupted_agents(t->agents)) != NULL) {
		free(t->agents);
		t->agents = agents;
	}
	config_set_str(&t->status, "failed");
	config_set_str(&t->status_message, store_interrupted);
	store_update(t->id, t->status, t->status_message, t->agents, t->result,
	    NULL);
	t->updated_ms = wall_ms();
	t->orphaned = false;
}

/* A finished row past its ttl: gone, even before the sweep deletes it. */
static bool
store_expired(const struct store_task *t, int64_t now)
{
	return strcmp(t->status, "working") != 0 &&
	    t->created_ms + t->ttl_ms < now;
}

/* One row by id; 0 found, 1 not found, 2 expired, -1 error. */
static int
store_get_where(const char *sql, const char *id, const char *owner,
    struct store_task *t)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (db == NULL || (st = store_prepare(sql)) == NULL)
		return -1;
	bind_text(st, 1, id);
	if (owner != NULL)
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
	if (!store_expired(t, wall_ms()))
		return 0;
	store_task_clear(t);
	return 2;
}

/* 0 found, 1 not found (or another owner's: the same answer), 2 expired,
 * -1 error. */
int
store_get(const char *id, const char *owner, struct store_task *t)
{
	return store_get_where("SELECT " STORE_COLUMNS " FROM tasks WHERE "
	    "id = ?1 AND owner = ?2", id, owner, t);
}

/* By id alone, for this process's own bookkeeping. */
int
store_get_any(const char *id, struct store_task *t)
{
	return store_get_where("SELECT " STORE_COLUMNS " FROM tasks WHERE "
	    "id = ?1", id, NULL, t);
}

static void
store_rows_free(struct store_task **rows, int *n)
{
	for (int i = 0; i < *n; i++)
		store_task_clear(&(*rows)[i]);
	free(*rows);
	*rows = NULL;
	*n = 0;
}

/*
 * One page of an owner's tasks, newest first, expired ones left out.  The
 * cursor is the last row's "created_ms.id"; callers treat it as opaque.
 * -2 on a bad cursor.
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
	    "(created_ms = ?2 AND id < ?3)) AND (status = 'working' OR "
	    "expires_ms >= ?5) ORDER BY created_ms DESC, id DESC "
	    "LIMIT ?4")) == NULL)
		return -1;
	bind_text(st, 1, owner);
	sqlite3_bind_int64(st, 2, c_ms);
	bind_text(st, 3, c_id);
	sqlite3_bind_int(st, 4, limit + 1);
	sqlite3_bind_int64(st, 5, wall_ms());
	*out = xcalloc((size_t)limit + 1, sizeof **out);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n <= limit)
		store_row(st, &(*out)[(*n)++]);
	sqlite3_finalize(st);
	if (*n > limit) {
		store_task_clear(&(*out)[--(*n)]);
		*next = xasprintf("%lld.%s", (long long)(*out)[*n - 1].created_ms,
		    (*out)[*n - 1].id);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warnx("task store: %s", sqlite3_errmsg(db));
		store_rows_free(out, n);
		free(*next);
		*next = NULL;
		return -1;
	}
	for (int i = 0; i < *n; i++)
		store_settle_orphan(&(*out)[i]);
	return 0;
}

/* An owner's running tasks, in any live heavyd, oldest first. */
int
store_active(const char *owner, struct store_task **out, int *n)
{
	sqlite3_stmt	*st;
	struct store_task t;
	int		 rc;

	*out = NULL;
	*n = 0;
	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE owner = ?1 AND status = 'working' "
	    "ORDER BY created_ms, id")) == NULL)
		return -1;
	bind_text(st, 1, owner);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		store_row(st, &t);
		*out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
		(*out)[(*n)++] = t;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_warnx("task store: %s", sqlite3_errmsg(db));
		store_rows_free(out, n);
		return -1;
	}
	for (int i = 0, kept = 0, all = *n; i < all; i++) {
		store_settle_orphan(&(*out)[i]);
		if (strcmp((*out)[i].status, "working") != 0) {
			store_task_clear(&(*out)[i]);	/* interrupted */
			(*n)--;
		} else
			(*out)[kept++] = (*out)[i];
	}
	return 0;
}

/*
 * The owner's task ids that start with prefix (any case), running ones
 * first, then the newest; at most limit of them in ids, all counted in
 * *total.
 */
int
store_ids(const char *owner, const char *prefix, int limit,
    struct json_object *ids, int *total)
{
	sqlite3_stmt	*st;
	char		*low = xstrdup(prefix ? prefix : "");
	int		 rc;

	*total = 0;
	for (char *p = low; *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	if (db == NULL || (st = store_prepare("SELECT id FROM tasks WHERE "
	    "owner = ?1 AND substr(id, 1, length(?2)) = ?2 AND "
	    "(status = 'working' OR expires_ms >= ?3) "
	    "ORDER BY status = 'working' DESC, created_ms DESC")) == NULL) {
		free(low);
		return -1;
	}
	bind_text(st, 1, owner);
	bind_text(st, 2, low);
	sqlite3_bind_int64(st, 3, wall_ms());
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if ((*total)++ < limit)
			json_object_array_add(ids, json_object_new_string(
			    (const char *)sqlite3_column_text(st, 0)));
	sqlite3_finalize(st);
	free(low);
	return rc == SQLITE_DONE ? 0 : -1;
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

/*
 * Expired rows go (past created + ttl, unless still running in a live
 * process), then the oldest finished ones beyond max_rows.  Returns the
 * rows deleted.
 */
int
store_sweep(int max_rows)
{
	sqlite3_stmt	*st;
	int64_t		 t0 = now_us();
	int		 deleted;

	if (db == NULL || (st = store_prepare("DELETE FROM tasks WHERE "
	    "expires_ms < ?1 AND status != 'working'")) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, wall_ms());
	if (store_step_done(st) == -1)
		return store_timed("sweep", t0, -1);
	deleted = sqlite3_changes(db);
	if ((st = store_prepare("DELETE FROM tasks WHERE status != 'working' "
	    "AND id IN (SELECT id FROM tasks WHERE status != 'working' "
	    "ORDER BY created_ms DESC LIMIT -1 OFFSET ?1)")) == NULL)
		return store_timed("sweep", t0, -1);
	sqlite3_bind_int(st, 1, max_rows);
	if (store_step_done(st) == -1)
		return store_timed("sweep", t0, -1);
	return store_timed("sweep", t0, deleted + sqlite3_changes(db));
}

/* The newest completed, unexpired task with this cache key, younger than
 * max_age; 0 found, 1 none, -1 error. */
int
store_cache_find(const char *owner, const char *key, int64_t max_age_ms,
    struct store_task *t)
{
	sqlite3_stmt	*st;
	int64_t		 now = wall_ms();
	int		 rc;

	if (db == NULL || (st = store_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE cache_key = ?1 AND owner = ?2 AND "
	    "status = 'completed' AND created_ms >= ?3 AND expires_ms >= ?4 "
	    "ORDER BY created_ms DESC LIMIT 1")) == NULL)
		return -1;
	bind_text(st, 1, key);
	bind_text(st, 2, owner);
	sqlite3_bind_int64(st, 3, now - max_age_ms);
	sqlite3_bind_int64(st, 4, now);
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
	free(t->tool);
	free(t->status);
	free(t->status_message);
	free(t->params);
	free(t->agents);
	free(t->result);
	free(t->usage);
	free(t->cache_key);
	memset(t, 0, sizeof *t);
}

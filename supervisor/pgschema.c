/*
 * The PostgreSQL task store's schema, by numbered migrations.  The table
 * schema_version has one row per migration applied.  At startup one query
 * string goes to the server: with no BEGIN in it, PostgreSQL runs it as
 * one transaction, so the migrations land whole or not at all.  It takes
 * an advisory lock first, so that of several nodes starting at once on an
 * empty database one migrates and the others, waiting their turn, find it
 * done; it refuses a database that a newer heavyd migrated further.
 * Sending it twice (pgconn replays it after a lost connection) is
 * harmless: each migration runs only when its row is missing.
 *
 * Migration 1 is the SQLite store's schema (store.c) in PostgreSQL's
 * types, plus what several nodes need: a running task's lease (node_id,
 * lease_epoch, lease_expires_at, on the database's clock) and the quota
 * counters per identity and window.  Migration 2: the quota charges that
 * the store's quota calls keep (store_pg.c).  Migration 4: the progress
 * typed, as SQLite's schema version 3 has it (store_sqlite.c).  Migration
 * 5: the arguments typed, for resumption (SQLite's version 4).
 */
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"
#include "pgconn.h"

/* "heavyd" in ASCII: the advisory lock of the schema's migrations. */
#define PGSCHEMA_LOCK	"111546155754852"

/* Migration N is migrations[N - 1]; one is added, never changed. */
static const char *const migrations[] = {
/* 1: the tasks, their leases, the quota counters. */
"CREATE TABLE tasks ("
"  id text PRIMARY KEY,"
"  owner text NOT NULL,"
"  tool text NOT NULL,"
"  status text NOT NULL,"		/* working, completed, failed, cancelled */
"  status_message text,"
"  params jsonb NOT NULL,"
"  agents jsonb,"
"  result jsonb,"
"  usage jsonb,"
"  cache_key text,"
"  created_ms bigint NOT NULL,"
"  updated_ms bigint NOT NULL,"
"  ttl_ms bigint NOT NULL,"
"  expires_ms bigint NOT NULL,"
"  pid integer NOT NULL,"
"  proc_start text NOT NULL,"
"  node_id text,"			/* the node that runs it */
"  lease_epoch bigint NOT NULL DEFAULT 0,"	/* bumped by each takeover */
"  lease_expires_at timestamptz"
");"
"CREATE INDEX tasks_by_owner ON tasks (owner, created_ms, id);"
"CREATE INDEX tasks_by_created ON tasks (created_ms);"
"CREATE INDEX tasks_by_expiry ON tasks (expires_ms);"
"CREATE INDEX tasks_by_cache ON tasks (cache_key)"
"  WHERE cache_key IS NOT NULL;"
"CREATE INDEX tasks_running ON tasks (status) WHERE status = 'working';"
"CREATE INDEX tasks_by_lease ON tasks (lease_expires_at)"
"  WHERE status = 'working';"
"CREATE TABLE quota_counters ("
"  identity text NOT NULL,"
"  window_kind text NOT NULL,"		/* minute, hour, day... */
"  window_start timestamptz NOT NULL,"
"  count bigint NOT NULL DEFAULT 0 CHECK (count >= 0),"
"  PRIMARY KEY (identity, window_kind, window_start)"
");",
/* 2: the quota charges, one a source (a task) and window, so that a
 * charge sent twice (pgconn resends one whose answer was lost) counts
 * once: a window's total is their sum.  Migration 1's quota_counters,
 * one count a window, could not tell a resent charge from a new one. */
"CREATE TABLE quota_charges ("
"  identity text NOT NULL,"		/* the owner: id:NAME */
"  kind text NOT NULL,"			/* orchestrations, tokens, micro_usd */
"  window_start bigint NOT NULL,"	/* seconds since the epoch, UTC */
"  source text NOT NULL,"
"  amount bigint NOT NULL CHECK (amount >= 0),"
"  PRIMARY KEY (identity, kind, window_start, source)"
");",
/* 3: a cancel asked for on another node (its wall-clock ms). */
"ALTER TABLE tasks ADD COLUMN cancel_requested_ms bigint;",
/* 4: the progress typed: the phase on the task, a row per agent, read
 * out of the JSON column agents this once (an agent whose JSON lacks an
 * index is left out, a row whose JSON has no phase keeps no progress;
 * incremental's draft comes along); then that column goes.  The query and
 * the number of agents become columns too (list_active_tasks shows them). */
"CREATE TABLE task_agents ("
"  task_id text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,"
"  idx integer NOT NULL,"		/* 1-based */
"  question text,"
"  status text NOT NULL,"		/* pending running ok failed ... */
"  step text,"
"  error text,"
"  answer text,"
"  elapsed_ms bigint,"			/* NULL until it has finished */
"  PRIMARY KEY (task_id, idx)"
");"
"ALTER TABLE tasks ADD COLUMN phase text;"
"ALTER TABLE tasks ADD COLUMN progress_ms bigint;"
"ALTER TABLE tasks ADD COLUMN draft_n integer NOT NULL DEFAULT 0;"
"ALTER TABLE tasks ADD COLUMN draft_answers integer;"
"ALTER TABLE tasks ADD COLUMN draft_of integer;"
"ALTER TABLE tasks ADD COLUMN draft_made_ms bigint;"
"ALTER TABLE tasks ADD COLUMN draft_text text;"
"INSERT INTO task_agents (task_id, idx, question, status, step, error,"
"  answer, elapsed_ms)"
"  SELECT t.id, (a->>'index')::numeric::integer, a->>'question',"
"    coalesce(a->>'status', 'pending'), a->>'step', a->>'error',"
"    a->>'answer', (a->>'elapsed_ms')::numeric::bigint"
"  FROM tasks t, jsonb_array_elements(CASE WHEN"
"    jsonb_typeof(t.agents->'agents') = 'array' THEN t.agents->'agents'"
"    ELSE '[]'::jsonb END) a"
"  WHERE jsonb_typeof(a) = 'object' AND jsonb_typeof(a->'index') = 'number'"
"  ON CONFLICT DO NOTHING;"
"UPDATE tasks SET phase = agents->>'phase',"
"  progress_ms = coalesce((agents->>'elapsed_ms')::numeric::bigint, 0)"
"  WHERE jsonb_typeof(agents->'phase') = 'string';"
"UPDATE tasks SET draft_n = (agents#>>'{draft,n}')::numeric::integer,"
"  draft_answers = (agents#>>'{draft,answers}')::numeric::integer,"
"  draft_of = (agents#>>'{draft,of}')::numeric::integer,"
"  draft_made_ms = (agents#>>'{draft,made_ms}')::numeric::bigint,"
"  draft_text = agents#>>'{draft,text}'"
"  WHERE jsonb_typeof(agents->'phase') = 'string' AND"
"    jsonb_typeof(agents#>'{draft,n}') = 'number' AND"
"    jsonb_typeof(agents#>'{draft,text}') = 'string';"
"ALTER TABLE tasks DROP COLUMN agents;"
/* ... and what was asked, of how many agents, out of params, once. */
"ALTER TABLE tasks ADD COLUMN query text;"
"ALTER TABLE tasks ADD COLUMN num_agents integer NOT NULL DEFAULT 0;"
"UPDATE tasks SET query = CASE WHEN jsonb_typeof(params->'query') ="
"    'string' THEN params->>'query' END,"
"  num_agents = CASE WHEN jsonb_typeof(params->'num_agents') = 'number'"
"    THEN (params->>'num_agents')::numeric::integer ELSE 0 END"
"  WHERE jsonb_typeof(params) = 'object';",
/* 5: the arguments a task was started with, typed, so that a task whose
 * node died can be resumed on another; rows of before have none (NULL)
 * and are never resumed. */
"ALTER TABLE tasks ADD COLUMN timeout_s double precision;"
"ALTER TABLE tasks ADD COLUMN model text;"
"ALTER TABLE tasks ADD COLUMN strategy text;"
"ALTER TABLE tasks ADD COLUMN fallbacks text[];"
"ALTER TABLE tasks ADD COLUMN max_total_tokens bigint;"
"ALTER TABLE tasks ADD COLUMN max_cost_usd double precision;"
"ALTER TABLE tasks ADD COLUMN min_agents integer;"
"ALTER TABLE tasks ADD COLUMN straggler_grace_s double precision;"
"ALTER TABLE tasks ADD COLUMN hedge_after_ms integer;"
"ALTER TABLE tasks ADD COLUMN ask_cost boolean;"
"ALTER TABLE tasks ADD COLUMN incremental_interval_s double precision;"
"ALTER TABLE tasks ADD COLUMN resume boolean;"
"ALTER TABLE tasks ADD COLUMN deadline_ms bigint;",
};
#define PGSCHEMA_KNOWN	((int)(sizeof migrations / sizeof migrations[0]))

struct pgschema_run {
	pgschema_done_fn	 done;
	void			*arg;
};

/*
 * The whole query: the lock, the version table, the refusal of a newer
 * database, each migration in a DO block guarded by its row, and the
 * version reached.
 */
static char *
pgschema_sql(void)
{
	struct buf	b;

	buf_init(&b, 0);
	buf_printf(&b, "SELECT pg_advisory_xact_lock(%s);"
	    "CREATE TABLE IF NOT EXISTS schema_version ("
	    "  version integer PRIMARY KEY,"
	    "  applied_at timestamptz NOT NULL DEFAULT now());"
	    "DO $heavyd$ DECLARE v integer; BEGIN"
	    "  SELECT max(version) INTO v FROM schema_version;"
	    "  IF v > %d THEN RAISE EXCEPTION"
	    "    'the database has schema version %%; this heavyd knows "
	    "version %d (a newer heavyd migrated it)', v;"
	    "  END IF; END $heavyd$;", PGSCHEMA_LOCK, PGSCHEMA_KNOWN,
	    PGSCHEMA_KNOWN);
	for (int i = 0; i < PGSCHEMA_KNOWN; i++)
		buf_printf(&b, "DO $heavyd$ BEGIN"
		    "  IF NOT EXISTS (SELECT 1 FROM schema_version"
		    "    WHERE version = %d) THEN %s"
		    "    INSERT INTO schema_version (version) VALUES (%d);"
		    "  END IF; END $heavyd$;", i + 1, migrations[i], i + 1);
	buf_addstr(&b, "SELECT max(version) FROM schema_version;");
	return buf_release(&b);
}

static void
pgschema_answer(void *arg, PGresult *res, const char *error)
{
	struct pgschema_run	*run = arg;
	char			 why[512];
	int			 version = -1;

	if (error != NULL)
		snprintf(why, sizeof why, "task store schema: %s", error);
	else if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		snprintf(why, sizeof why, "task store schema: no version "
		    "after the migrations");
	else
		version = atoi(PQgetvalue(res, 0, 0));
	run->done(run->arg, version, version == -1 ? why : NULL);
	free(run);
}

int
pgschema_migrate(struct pgconn *pc, pgschema_done_fn done, void *arg,
    char *err, size_t errlen)
{
	struct pgschema_run	*run = xcalloc(1, sizeof *run);
	char			*sql = pgschema_sql();
	int			 rc;

	run->done = done;
	run->arg = arg;
	rc = pgconn_exec(pc, sql, pgschema_answer, run, err, errlen);
	free(sql);
	if (rc == -1)
		free(run);
	return rc;
}

/*
 * The embedded task store backend: one SQLite database (WAL) in the state
 * directory, shared by every heavyd that uses that directory (each stdio
 * client starts its own).  A row holds a task's parameters, owner,
 * phase, result, usage and timestamps, and each of its agents has a row of
 * task_agents (question, status, answer...); it outlives the process
 * that ran the task (store.c says what a row promises).  Every statement
 * is one short transaction, or a few writes share one; a busy timeout
 * absorbs the other processes' writes.  SQLite answers at once, so every
 * callback runs before the call returns.
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

#define STORE_FILE		"tasks.db"
#define STORE_SCHEMA_VERSION	5	/* 2: the quota charges; 3: the
					 * progress typed (task_agents); 4:
					 * the arguments typed (resumption);
					 * 5: the result and the usage typed */

static sqlite3		*db;
static sqlite3_stmt	*st_put;	/* the hot statements, prepared once */
static sqlite3_stmt	*st_agent_put, *st_agents, *st_fallback_put;
static sqlite3_stmt	*st_result_put, *st_ragent_put, *st_item_put;
static char		 last_error[256];	/* why the last write failed */

static const char *sq_schema =
"CREATE TABLE IF NOT EXISTS tasks ("
"  id TEXT PRIMARY KEY,"
"  owner TEXT NOT NULL,"
"  tool TEXT NOT NULL,"			/* the tool that started it */
"  status TEXT NOT NULL,"		/* working, completed, failed, cancelled */
"  status_message TEXT,"
"  params TEXT NOT NULL,"		/* JSON: the call's arguments */
"  query TEXT,"				/* typed, from them */
"  num_agents INTEGER NOT NULL DEFAULT 0,"
"  phase TEXT,"				/* planning agents ... (NULL: none yet) */
"  progress_ms INTEGER,"		/* how long it had run, at that phase */
"  draft_n INTEGER NOT NULL DEFAULT 0,"	/* incremental's latest draft */
"  draft_answers INTEGER,"
"  draft_of INTEGER,"
"  draft_made_ms INTEGER,"
"  draft_text TEXT,"
"  prompt_tokens INTEGER,"		/* the usage (NULL: none known) */
"  completion_tokens INTEGER,"
"  total_tokens INTEGER,"
"  llm_calls INTEGER,"
"  retries INTEGER,"
"  cost_micro_usd INTEGER,"
"  hedged_calls INTEGER,"
"  hedges_won INTEGER,"
"  cache_key TEXT,"
"  created_ms INTEGER NOT NULL,"	/* wall clock, ms since the epoch */
"  updated_ms INTEGER NOT NULL,"
"  ttl_ms INTEGER NOT NULL,"
"  expires_ms INTEGER NOT NULL,"	/* created + ttl, indexed for the sweep */
"  pid INTEGER NOT NULL,"
"  proc_start TEXT NOT NULL,"
/* 4: the arguments, typed (NULL: not kept, never resumed). */
"  timeout_s REAL,"
"  model TEXT,"
"  strategy TEXT,"
"  max_total_tokens INTEGER,"
"  max_cost_usd REAL,"
"  min_agents INTEGER,"
"  straggler_grace_s REAL,"
"  hedge_after_ms INTEGER,"
"  ask_cost INTEGER,"
"  incremental_interval_s REAL,"
"  resume INTEGER,"
"  deadline_ms INTEGER"			/* wall clock: it fails past this */
");"
"CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks(owner, created_ms, id);"
"CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created_ms);"
"CREATE INDEX IF NOT EXISTS tasks_by_expiry ON tasks(expires_ms);"
"CREATE INDEX IF NOT EXISTS tasks_by_cache ON tasks(cache_key) "
"  WHERE cache_key IS NOT NULL;"
"CREATE INDEX IF NOT EXISTS tasks_running ON tasks(status) "
"  WHERE status = 'working';"
/* 3: each agent of a task (the progress, typed), deleted with it. */
"CREATE TABLE IF NOT EXISTS task_agents ("
"  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
"  idx INTEGER NOT NULL,"		/* 1-based */
"  question TEXT,"			/* NULL until the planner is done */
"  status TEXT NOT NULL,"		/* pending running ok failed ... */
"  step TEXT,"
"  error TEXT,"
"  answer TEXT,"
"  elapsed_ms INTEGER,"			/* NULL until it has finished */
"  PRIMARY KEY (task_id, idx)"
") WITHOUT ROWID;"
/* 4: a task's fallback_models, in order, deleted with it. */
"CREATE TABLE IF NOT EXISTS task_fallbacks ("
"  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
"  pos INTEGER NOT NULL,"		/* 0-based */
"  model TEXT NOT NULL,"
"  PRIMARY KEY (task_id, pos)"
") WITHOUT ROWID;"
/* 5: a task's result, typed (taskresult.h names the columns): its
 * scalars, each agent's, and the rows of its lists. */
"CREATE TABLE IF NOT EXISTS task_results ("
"  task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,"
"  kind INTEGER NOT NULL,"
"  answer TEXT,"
"  failed INTEGER NOT NULL,"
"  synthesized INTEGER,"
"  planner_fallback INTEGER,"
"  planner_reasked INTEGER,"
"  planner_error TEXT,"
"  synthesis_error TEXT,"
"  synthesis_truncated INTEGER,"
"  planner_model TEXT,"
"  synthesis_model TEXT,"
"  prompt_tokens INTEGER,"
"  completion_tokens INTEGER,"
"  total_tokens INTEGER,"
"  llm_calls INTEGER,"
"  retries INTEGER,"
"  cost_micro_usd INTEGER,"
"  hedged_calls INTEGER,"
"  hedges_won INTEGER,"
"  elapsed_ms INTEGER,"
"  strategy TEXT,"
"  strategy_fallback TEXT,"
"  ranked INTEGER,"
"  max_total_tokens INTEGER,"
"  max_cost_usd REAL,"
"  budget_stop TEXT,"
"  min_agents INTEGER,"
"  straggler_grace_s REAL,"
"  has_drafts INTEGER,"
"  drafts_interval_s REAL,"
"  drafts_tokens INTEGER,"
"  drafts_llm_calls INTEGER,"
"  drafts_cost_micro_usd INTEGER,"
"  drafts_first_ms INTEGER,"
"  drafts_answer_ms INTEGER,"
"  drafts_synthesis_from INTEGER,"
"  workspace TEXT,"
"  confinement TEXT,"
"  cached INTEGER,"
"  cached_from TEXT,"
"  has_session INTEGER,"
"  session_prompt_tokens INTEGER,"
"  session_completion_tokens INTEGER,"
"  session_total_tokens INTEGER,"
"  session_llm_calls INTEGER,"
"  session_retries INTEGER,"
"  session_cost_micro_usd INTEGER,"
"  session_hedged_calls INTEGER,"
"  session_hedges_won INTEGER,"
"  session_tasks INTEGER,"
"  has_resumed INTEGER,"		/* task_resume's */
"  resumed_from TEXT,"
"  resumed_why TEXT,"
"  resumed_planner INTEGER"
") WITHOUT ROWID;"
"CREATE TABLE IF NOT EXISTS task_result_agents ("
"  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
"  idx INTEGER NOT NULL,"
"  question TEXT,"
"  status TEXT,"
"  elapsed_ms INTEGER,"
"  error TEXT,"
"  signal TEXT,"
"  model TEXT,"
"  rank INTEGER,"
"  rerun INTEGER,"			/* resumed: it ran again */
"  prompt_tokens INTEGER,"
"  completion_tokens INTEGER,"
"  total_tokens INTEGER,"
"  llm_calls INTEGER,"
"  retries INTEGER,"
"  cost_micro_usd INTEGER,"
"  hedged_calls INTEGER,"
"  hedges_won INTEGER,"
"  PRIMARY KEY (task_id, idx)"
") WITHOUT ROWID;"
"CREATE TABLE IF NOT EXISTS task_result_items ("
"  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
"  list TEXT NOT NULL,"	/* fallback rank review_error draft weaker */
"  owner INTEGER NOT NULL,"		/* a fallback's step */
"  n INTEGER NOT NULL,"	/* its place in its list, from 0 */
"  a INTEGER, b INTEGER, c INTEGER, d INTEGER, x REAL,"
"  s1 TEXT, s2 TEXT, s3 TEXT,"
"  PRIMARY KEY (task_id, list, owner, n)"
") WITHOUT ROWID;"
/* 2: a quota window's charges, one per source (a task), each only grows. */
"CREATE TABLE IF NOT EXISTS quota_charges ("
"  identity TEXT NOT NULL,"		/* the owner: id:NAME */
"  kind TEXT NOT NULL,"			/* orchestrations, tokens, micro_usd */
"  window_start INTEGER NOT NULL,"	/* seconds since the epoch, UTC */
"  source TEXT NOT NULL,"		/* the task charged */
"  amount INTEGER NOT NULL CHECK (amount >= 0),"
"  PRIMARY KEY (identity, kind, window_start, source)"
") WITHOUT ROWID;";

/* Logs a failed statement and keeps its cause for store_error(). */
static void
sq_failed(const char *msg)
{
	snprintf(last_error, sizeof last_error, "%s", msg);
	log_warnx("task store: %s", msg);
}

/* Why the last statement that failed did (SQLite's words). */
static const char *
sq_error(void)
{
	return last_error[0] != '\0' ? last_error : "unknown error";
}

static int
sq_exec(const char *sql)
{
	char	*msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	sq_failed(msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

/* The first column of a one-row statement, as text; an SQLite code. */
static int
sq_pragma(const char *sql, char *out, size_t len)
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
 * Version 3 from 1 or 2: the progress, kept as JSON text in tasks.agents
 * until then, becomes the typed columns phase and progress_ms and a row of
 * task_agents per agent, read out of that JSON this once, in SQL; a row
 * whose JSON is damaged keeps no progress (it reads as planning, or done
 * once ended); incremental's draft comes along.  Then the column goes.
 * The query and the number of agents are read out of the arguments
 * (params) the same way, once.
 */
static const char *sq_migrate_v3 =
"ALTER TABLE tasks ADD COLUMN phase TEXT;"
"ALTER TABLE tasks ADD COLUMN progress_ms INTEGER;"
"ALTER TABLE tasks ADD COLUMN draft_n INTEGER NOT NULL DEFAULT 0;"
"ALTER TABLE tasks ADD COLUMN draft_answers INTEGER;"
"ALTER TABLE tasks ADD COLUMN draft_of INTEGER;"
"ALTER TABLE tasks ADD COLUMN draft_made_ms INTEGER;"
"ALTER TABLE tasks ADD COLUMN draft_text TEXT;"
"ALTER TABLE tasks ADD COLUMN query TEXT;"
"ALTER TABLE tasks ADD COLUMN num_agents INTEGER NOT NULL DEFAULT 0;"
"UPDATE tasks SET query = CASE WHEN json_type(params, '$.query') = 'text'"
"    THEN json_extract(params, '$.query') END,"
"  num_agents = CASE WHEN json_type(params, '$.num_agents') = 'integer'"
"    THEN json_extract(params, '$.num_agents') ELSE 0 END"
"  WHERE CASE WHEN json_valid(params) THEN"
"    json_type(params, '$') = 'object' ELSE 0 END;"
"INSERT OR REPLACE INTO task_agents (task_id, idx, question, status, step,"
"  error, answer, elapsed_ms)"
"  WITH v AS (SELECT id, coalesce(CASE WHEN json_valid(agents) THEN"
"    CASE WHEN json_type(agents, '$.agents') = 'array' THEN agents END"
"    END, '{}') AS j FROM tasks)"
"  SELECT v.id, json_extract(a.value, '$.index'),"
"    json_extract(a.value, '$.question'),"
"    coalesce(json_extract(a.value, '$.status'), 'pending'),"
"    json_extract(a.value, '$.step'), json_extract(a.value, '$.error'),"
"    json_extract(a.value, '$.answer'),"
"    json_extract(a.value, '$.elapsed_ms')"
"  FROM v, json_each(v.j, '$.agents') AS a"
"  WHERE a.type = 'object' AND"
"    json_type(a.value, '$.index') = 'integer';"
"UPDATE tasks SET phase = json_extract(agents, '$.phase'),"
"  progress_ms = coalesce(json_extract(agents, '$.elapsed_ms'), 0)"
"  WHERE CASE WHEN json_valid(agents) THEN"
"    json_type(agents, '$.phase') = 'text' ELSE 0 END;"
"UPDATE tasks SET draft_n = json_extract(agents, '$.draft.n'),"
"  draft_answers = json_extract(agents, '$.draft.answers'),"
"  draft_of = json_extract(agents, '$.draft.of'),"
"  draft_made_ms = json_extract(agents, '$.draft.made_ms'),"
"  draft_text = json_extract(agents, '$.draft.text')"
"  WHERE CASE WHEN json_valid(agents) THEN"
"    json_type(agents, '$.phase') = 'text' AND"
"    json_type(agents, '$.draft.n') = 'integer' AND"
"    json_type(agents, '$.draft.text') = 'text' ELSE 0 END;"
"ALTER TABLE tasks DROP COLUMN agents;";

/*
 * Version 4 from 3 (or older, once converted): the arguments a task was
 * started with, typed, so that a task whose process died can be resumed.
 * Rows of before have none (NULL), and are never resumed.
 */
static const char *sq_migrate_v4 =
"ALTER TABLE tasks ADD COLUMN timeout_s REAL;"
"ALTER TABLE tasks ADD COLUMN model TEXT;"
"ALTER TABLE tasks ADD COLUMN strategy TEXT;"
"ALTER TABLE tasks ADD COLUMN max_total_tokens INTEGER;"
"ALTER TABLE tasks ADD COLUMN max_cost_usd REAL;"
"ALTER TABLE tasks ADD COLUMN min_agents INTEGER;"
"ALTER TABLE tasks ADD COLUMN straggler_grace_s REAL;"
"ALTER TABLE tasks ADD COLUMN hedge_after_ms INTEGER;"
"ALTER TABLE tasks ADD COLUMN ask_cost INTEGER;"
"ALTER TABLE tasks ADD COLUMN incremental_interval_s REAL;"
"ALTER TABLE tasks ADD COLUMN resume INTEGER;"
"ALTER TABLE tasks ADD COLUMN deadline_ms INTEGER;";

/*
 * Version 5 from 3 (or 4): the result and the usage, kept as JSON text in
 * tasks.result and tasks.usage until then, become typed: the usage columns
 * of tasks, a row of task_results, a row of task_result_agents per agent
 * and a row of task_result_items per element of its lists, read out of
 * that JSON this once, in SQL.  A row whose result is not a JSON object
 * (damaged) keeps no result, as a stopped task has none (its reason
 * stays); a value of the wrong type reads as none (0, or null).  Then the
 * columns go.
 */
static const char *sq_migrate_v5 =
"ALTER TABLE tasks ADD COLUMN prompt_tokens INTEGER;"
"ALTER TABLE tasks ADD COLUMN completion_tokens INTEGER;"
"ALTER TABLE tasks ADD COLUMN total_tokens INTEGER;"
"ALTER TABLE tasks ADD COLUMN llm_calls INTEGER;"
"ALTER TABLE tasks ADD COLUMN retries INTEGER;"
"ALTER TABLE tasks ADD COLUMN cost_micro_usd INTEGER;"
"ALTER TABLE tasks ADD COLUMN hedged_calls INTEGER;"
"ALTER TABLE tasks ADD COLUMN hedges_won INTEGER;"
"UPDATE tasks SET"
"  prompt_tokens = coalesce(json_extract(usage, '$.prompt_tokens'), 0),"
"  completion_tokens = coalesce(json_extract(usage,"
"    '$.completion_tokens'), 0),"
"  total_tokens = coalesce(json_extract(usage, '$.total_tokens'), 0),"
"  llm_calls = coalesce(json_extract(usage, '$.llm_calls'), 0),"
"  retries = coalesce(json_extract(usage, '$.retries'), 0),"
"  cost_micro_usd = CAST(round(coalesce(json_extract(usage,"
"    '$.cost_usd'), 0) * 1e6) AS INTEGER),"
"  hedged_calls = coalesce(json_extract(usage, '$.hedged_calls'), 0),"
"  hedges_won = coalesce(json_extract(usage, '$.hedges_won'), 0)"
"  WHERE CASE WHEN json_valid(usage) THEN json_type(usage) = 'object'"
"    ELSE 0 END;"
"INSERT OR REPLACE INTO task_results (task_id, kind, answer, failed,"
" synthesized, planner_fallback, planner_reasked, planner_error,"
" synthesis_error, synthesis_truncated, planner_model,"
" synthesis_model, prompt_tokens, completion_tokens, total_tokens,"
" llm_calls, retries, cost_micro_usd, hedged_calls, hedges_won,"
" elapsed_ms, strategy, strategy_fallback, ranked, max_total_tokens,"
" max_cost_usd, budget_stop, min_agents, straggler_grace_s,"
" has_drafts, drafts_interval_s, drafts_tokens, drafts_llm_calls,"
" drafts_cost_micro_usd, drafts_first_ms, drafts_answer_ms,"
" drafts_synthesis_from, workspace, confinement, cached,"
" cached_from, has_session, session_prompt_tokens,"
" session_completion_tokens, session_total_tokens,"
" session_llm_calls, session_retries, session_cost_micro_usd,"
" session_hedged_calls, session_hedges_won, session_tasks,"
" has_resumed, resumed_from, resumed_why, resumed_planner)"
"  WITH v AS (SELECT id, result AS j FROM tasks WHERE CASE WHEN"
" json_valid(result) THEN json_type(result) = 'object' ELSE 0 END)"
"  SELECT id,"
"    CASE WHEN json_type(j, '$.structuredContent') = 'object' THEN 0"
" ELSE 1 END,"
"    CASE WHEN json_type(j, '$.structuredContent') = 'object' THEN"
" json_extract(j, '$.structuredContent.answer') ELSE json_extract(j,"
" '$.content[0].text') END,"
"    CASE WHEN json_type(j, '$.isError') = 'true' THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.synthesized') ="
" 'true' THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.planner_fallback')"
" = 'true' THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.planner_reasked') ="
" 'true' THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.planner_error') ="
" 'text' THEN json_extract(j, '$.structuredContent.planner_error')"
" END,"
"    CASE WHEN json_type(j, '$.structuredContent.synthesis_error') ="
" 'text' THEN json_extract(j, '$.structuredContent.synthesis_error')"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.synthesis_truncated') IN ('integer', 'real')"
" THEN CAST(json_extract(j,"
" '$.structuredContent.synthesis_truncated') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.planner_model') ="
" 'text' THEN json_extract(j, '$.structuredContent.planner_model')"
" END,"
"    CASE WHEN json_type(j, '$.structuredContent.synthesis_model') ="
" 'text' THEN json_extract(j, '$.structuredContent.synthesis_model')"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.usage.prompt_tokens') IN ('integer', 'real')"
" THEN CAST(json_extract(j,"
" '$.structuredContent.usage.prompt_tokens') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.usage.completion_tokens') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.usage.completion_tokens') AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.usage.total_tokens') IN ('integer', 'real')"
" THEN CAST(json_extract(j,"
" '$.structuredContent.usage.total_tokens') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.usage.llm_calls')"
" IN ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.usage.llm_calls') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.usage.retries') IN"
" ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.usage.retries') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.usage.cost_usd') IN"
" ('integer', 'real') THEN CAST(round(json_extract(j,"
" '$.structuredContent.usage.cost_usd') * 1e6) AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.usage.hedged_calls') IN ('integer', 'real')"
" THEN CAST(json_extract(j,"
" '$.structuredContent.usage.hedged_calls') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.usage.hedges_won')"
" IN ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.usage.hedges_won') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.elapsed_ms') IN"
" ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.elapsed_ms') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.strategy') = 'text'"
" THEN json_extract(j, '$.structuredContent.strategy') END,"
"    CASE WHEN json_type(j, '$.structuredContent.strategy_fallback')"
" = 'text' THEN json_extract(j,"
" '$.structuredContent.strategy_fallback') END,"
"    CASE WHEN json_type(j, '$.structuredContent.ranking') = 'array'"
" THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.budget.max_total_tokens') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.budget.max_total_tokens') AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.budget.max_cost_usd') IN ('integer', 'real')"
" THEN json_extract(j, '$.structuredContent.budget.max_cost_usd')"
" ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.budget.stopped') ="
" 'text' THEN json_extract(j, '$.structuredContent.budget.stopped')"
" END,"
"    CASE WHEN json_type(j, '$.structuredContent.quorum.min_agents')"
" IN ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.quorum.min_agents') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.quorum.straggler_grace') IN ('integer',"
" 'real') THEN json_extract(j,"
" '$.structuredContent.quorum.straggler_grace') ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.drafts') = 'object'"
" THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.drafts.interval')"
" IN ('integer', 'real') THEN json_extract(j,"
" '$.structuredContent.drafts.interval') ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.drafts.tokens') IN"
" ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.drafts.tokens') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.drafts.llm_calls')"
" IN ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.drafts.llm_calls') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.drafts.cost_usd')"
" IN ('integer', 'real') THEN CAST(round(json_extract(j,"
" '$.structuredContent.drafts.cost_usd') * 1e6) AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.drafts.first_draft_ms') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.drafts.first_draft_ms') AS INTEGER) ELSE -1"
" END,"
"    CASE WHEN json_type(j, '$.structuredContent.drafts.answer_ms')"
" IN ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.drafts.answer_ms') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.drafts.synthesis_from') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.drafts.synthesis_from') AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j, '$.structuredContent.workspace') ="
" 'text' THEN json_extract(j, '$.structuredContent.workspace') END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.sandbox.confinement') = 'text' THEN"
" json_extract(j, '$.structuredContent.sandbox.confinement') END,"
"    CASE WHEN json_type(j, '$.structuredContent.cached') = 'true'"
" THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.cached_from') ="
" 'text' THEN json_extract(j, '$.structuredContent.cached_from') END,"
"    CASE WHEN json_type(j, '$.structuredContent.session_usage') ="
" 'object' THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.prompt_tokens') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.prompt_tokens') AS INTEGER)"
" ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.completion_tokens') IN"
" ('integer', 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.completion_tokens') AS INTEGER)"
" ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.total_tokens') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.total_tokens') AS INTEGER) ELSE"
" 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.llm_calls') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.llm_calls') AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.retries') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.retries') AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.cost_usd') IN ('integer',"
" 'real') THEN CAST(round(json_extract(j,"
" '$.structuredContent.session_usage.cost_usd') * 1e6) AS INTEGER)"
" ELSE 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.hedged_calls') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.hedged_calls') AS INTEGER) ELSE"
" 0 END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.hedges_won') IN ('integer',"
" 'real') THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.hedges_won') AS INTEGER) ELSE 0"
" END,"
"    CASE WHEN json_type(j,"
" '$.structuredContent.session_usage.tasks') IN ('integer', 'real')"
" THEN CAST(json_extract(j,"
" '$.structuredContent.session_usage.tasks') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.resumed') = 'object'"
" THEN 1 ELSE 0 END,"
"    CASE WHEN json_type(j, '$.structuredContent.resumed.from') ="
" 'text' THEN json_extract(j, '$.structuredContent.resumed.from') END,"
"    CASE WHEN json_type(j, '$.structuredContent.resumed.why') ="
" 'text' THEN json_extract(j, '$.structuredContent.resumed.why') END,"
"    CASE WHEN json_type(j, '$.structuredContent.resumed.planner_rerun')"
" = 'true' THEN 1 ELSE 0 END"
" FROM v;"
"INSERT OR IGNORE INTO task_result_agents (task_id, idx, question,"
" status, elapsed_ms, error, signal, model, rank, prompt_tokens,"
" completion_tokens, total_tokens, llm_calls, retries,"
" cost_micro_usd, hedged_calls, hedges_won, rerun)"
"  WITH v AS (SELECT id, result AS j FROM tasks WHERE CASE WHEN"
" json_valid(result) THEN json_type(result) = 'object' ELSE 0 END)"
"  SELECT v.id,"
"    CASE WHEN json_type(a.value, '$.index') IN ('integer', 'real')"
" THEN CAST(json_extract(a.value, '$.index') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.question') = 'text' THEN"
" json_extract(a.value, '$.question') END,"
"    CASE WHEN json_type(a.value, '$.status') = 'text' THEN"
" json_extract(a.value, '$.status') END,"
"    CASE WHEN json_type(a.value, '$.elapsed_ms') IN ('integer',"
" 'real') THEN CAST(json_extract(a.value, '$.elapsed_ms') AS"
" INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.error') = 'text' THEN"
" json_extract(a.value, '$.error') END,"
"    CASE WHEN json_type(a.value, '$.signal') = 'text' THEN"
" json_extract(a.value, '$.signal') END,"
"    CASE WHEN json_type(a.value, '$.model') = 'text' THEN"
" json_extract(a.value, '$.model') END,"
"    CASE WHEN json_type(a.value, '$.rank') IN ('integer', 'real')"
" THEN CAST(json_extract(a.value, '$.rank') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.prompt_tokens') IN"
" ('integer', 'real') THEN CAST(json_extract(a.value,"
" '$.usage.prompt_tokens') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.completion_tokens') IN"
" ('integer', 'real') THEN CAST(json_extract(a.value,"
" '$.usage.completion_tokens') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.total_tokens') IN"
" ('integer', 'real') THEN CAST(json_extract(a.value,"
" '$.usage.total_tokens') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.llm_calls') IN"
" ('integer', 'real') THEN CAST(json_extract(a.value,"
" '$.usage.llm_calls') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.retries') IN ('integer',"
" 'real') THEN CAST(json_extract(a.value, '$.usage.retries') AS"
" INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.cost_usd') IN ('integer',"
" 'real') THEN CAST(round(json_extract(a.value, '$.usage.cost_usd')"
" * 1e6) AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.hedged_calls') IN"
" ('integer', 'real') THEN CAST(json_extract(a.value,"
" '$.usage.hedged_calls') AS INTEGER) ELSE 0 END,"
"    CASE WHEN json_type(a.value, '$.usage.hedges_won') IN"
" ('integer', 'real') THEN CAST(json_extract(a.value,"
" '$.usage.hedges_won') AS INTEGER) ELSE 0 END,"
"    EXISTS (SELECT 1 FROM json_each(v.j,"
" '$.structuredContent.resumed.rerun') AS r WHERE"
" json_type(v.j, '$.structuredContent.resumed.rerun') = 'array' AND"
" r.value = json_extract(a.value, '$.index'))"
"  FROM v, json_each(v.j, '$.structuredContent.agents') AS a"
"  WHERE json_type(v.j, '$.structuredContent.agents') = 'array' AND"
"    a.type = 'object' AND json_type(a.value, '$.index') = 'integer';"
"INSERT OR IGNORE INTO task_result_items (task_id, list, owner, n,"
" a, b, c, d, x, s1, s2, s3)"
"  WITH v AS (SELECT id, result AS j FROM tasks WHERE CASE WHEN"
" json_valid(result) THEN json_type(result) = 'object' ELSE 0 END)"
"  SELECT v.id, 'fallback', 0, f.key, 0, 0, 0, 0, 0,"
" json_extract(f.value, '$.from'), json_extract(f.value, '$.to'),"
" json_extract(f.value, '$.reason') FROM v, json_each(v.j,"
" '$.structuredContent.planner_fallbacks') AS f WHERE json_type(v.j,"
" '$.structuredContent.planner_fallbacks') = 'array' AND f.type ="
" 'object'"
"  UNION ALL SELECT v.id, 'fallback', -1, f.key, 0, 0, 0, 0, 0,"
" json_extract(f.value, '$.from'), json_extract(f.value, '$.to'),"
" json_extract(f.value, '$.reason') FROM v, json_each(v.j,"
" '$.structuredContent.synthesis_fallbacks') AS f WHERE"
" json_type(v.j, '$.structuredContent.synthesis_fallbacks') ="
" 'array' AND f.type = 'object'"
"  UNION ALL SELECT v.id, 'fallback', json_extract(a.value,"
" '$.index'), f.key, 0, 0, 0, 0, 0, json_extract(f.value, '$.from'),"
" json_extract(f.value, '$.to'), json_extract(f.value, '$.reason')"
" FROM v, json_each(v.j, '$.structuredContent.agents') AS a,"
" json_each(a.value, '$.fallbacks') AS f WHERE json_type(v.j,"
" '$.structuredContent.agents') = 'array' AND a.type = 'object' AND"
" json_type(a.value, '$.index') = 'integer' AND json_type(a.value,"
" '$.fallbacks') = 'array' AND f.type = 'object'"
"  UNION ALL SELECT v.id, 'rank', 0, r.key, json_extract(r.value,"
" '$.agent'), json_extract(r.value, '$.rank'), json_extract(r.value,"
" '$.reviews'), 0, json_extract(r.value, '$.score'), NULL, NULL,"
" NULL FROM v, json_each(v.j, '$.structuredContent.ranking') AS r"
" WHERE json_type(v.j, '$.structuredContent.ranking') = 'array' AND"
" r.type = 'object'"
"  UNION ALL SELECT v.id, 'review_error', 0, e.key,"
" json_extract(e.value, '$.reviewer'), 0, 0, 0, 0,"
" json_extract(e.value, '$.model'), json_extract(e.value,"
" '$.status'), json_extract(e.value, '$.error') FROM v,"
" json_each(v.j, '$.structuredContent.review_errors') AS e WHERE"
" json_type(v.j, '$.structuredContent.review_errors') = 'array' AND"
" e.type = 'object'"
"  UNION ALL SELECT v.id, 'draft', 0, d.key, json_extract(d.value,"
" '$.answers'), json_extract(d.value, '$.started_ms'),"
" json_extract(d.value, '$.ended_ms'), json_extract(d.value,"
" '$.tokens'), 0, json_extract(d.value, '$.status'), NULL, NULL FROM"
" v, json_each(v.j, '$.structuredContent.drafts.list') AS d WHERE"
" json_type(v.j, '$.structuredContent.drafts.list') = 'array' AND"
" d.type = 'object'"
"  UNION ALL SELECT v.id, 'weaker', 0, w.key, 0, 0, 0, 0, 0,"
" w.value, NULL, NULL FROM v, json_each(v.j,"
" '$.structuredContent.sandbox.weaker') AS w WHERE json_type(v.j,"
" '$.structuredContent.sandbox.weaker') = 'array' AND w.type ="
" 'text';"
"ALTER TABLE tasks DROP COLUMN result;"
"ALTER TABLE tasks DROP COLUMN usage;";

/* Whether tasks has a column of this name. */
static int
sq_has_column(const char *name, bool *has)
{
	char	n[16], sql[128];
	int	rc;

	snprintf(sql, sizeof sql, "SELECT count(*) FROM "
	    "pragma_table_info('tasks') WHERE name = '%s'", name);
	rc = sq_pragma(sql, n, sizeof n);
	*has = rc == SQLITE_OK && atoi(n) > 0;
	return rc;
}

/* The conversions an older file needs, after sq_schema. */
static int
sq_migrate(void)
{
	bool	old, args, json;

	if (sq_has_column("agents", &old) != SQLITE_OK ||
	    (old && sq_exec(sq_migrate_v3) == -1) ||
	    sq_has_column("deadline_ms", &args) != SQLITE_OK ||
	    (!args && sq_exec(sq_migrate_v4) == -1) ||
	    sq_has_column("result", &json) != SQLITE_OK ||
	    (json && sq_exec(sq_migrate_v5) == -1))
		return -1;
	return 0;
}

/*
 * The schema, once, in one immediate transaction: of several heavyds
 * starting at once on a fresh file, one creates it and the others, waiting
 * their turn, find it current.  Every statement of it is IF NOT EXISTS, so
 * an older file (version 1: the tasks alone) gets what it lacks in place;
 * one of version 1 or 2 has its progress converted (sq_migrate_v3), one
 * of before 4 its arguments' columns added (sq_migrate_v4), one of 1
 * to 4 its result and usage converted (sq_migrate_v5).  A file of a newer
 * heavyd is left alone.
 */
static int
sq_schema_check(const char *path, char *err, size_t errlen)
{
	char	v[32], sql[64];
	int	rc;

	if ((rc = sq_pragma("PRAGMA user_version", v, sizeof v)) != SQLITE_OK)
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
	if (sq_exec("BEGIN IMMEDIATE") == -1)
		return sqlite3_errcode(db);
	if (sq_exec(sq_schema) == -1 || sq_migrate() == -1 || sq_exec(sql) == -1 ||
	    sq_exec("COMMIT") == -1) {
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
sq_try_open(const char *path, int busy_ms, bool sync_full, char *err,
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
		rc = sq_pragma("PRAGMA quick_check", check, sizeof check);
		if (rc == SQLITE_OK && strcmp(check, "ok") != 0)
			rc = SQLITE_CORRUPT;
	}
	/* NORMAL survives a crash of heavyd; FULL also a power cut. */
	if (rc == SQLITE_OK && (sq_exec("PRAGMA journal_mode=WAL") == -1 ||
	    sq_exec(sync_full ? "PRAGMA synchronous=FULL" :
	    "PRAGMA synchronous=NORMAL") == -1 ||
	    sq_exec("PRAGMA foreign_keys=ON") == -1))
		rc = sqlite3_errcode(db);
	if (rc == SQLITE_OK)
		rc = sq_schema_check(path, err, errlen);
	if (rc != SQLITE_OK && err[0] == '\0')
		snprintf(err, errlen, "task store %s: %s", path,
		    sqlite3_errstr(rc));
	return rc;
}

/* A damaged file is moved aside, never deleted: it may still be read. */
static void
sq_move_aside(const char *path)
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
sq_busy(int rc)
{
	return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

/*
 * Opens the file, again while another heavyd holds a lock that SQLite
 * does not wait for by itself (switching a fresh file to WAL, recovering
 * a WAL), until busy_ms have passed, as any other write waits.
 */
static int
sq_open_path(const char *path, int busy_ms, bool sync_full, char *err,
    size_t errlen)
{
	int64_t	deadline = now_ms() + busy_ms;
	int	rc, pause_ms = 1;

	for (;;) {
		rc = sq_try_open(path, busy_ms, sync_full, err, errlen);
		if (rc == SQLITE_OK || !sq_busy(rc) || now_ms() >= deadline)
			return rc;
		sqlite3_close(db);
		db = NULL;
		usleep((useconds_t)pause_ms * 1000);
		pause_ms = pause_ms < 32 ? pause_ms * 2 : 32;
	}
}


/* <state_dir>/tasks.db; a damaged one is moved aside and replaced. */
static int
sq_open(const struct store_options *o, char *err, size_t errlen)
{
	char	path[4096];
	int	rc;

	snprintf(path, sizeof path, "%s/%s", o->state_dir, STORE_FILE);
	rc = sq_open_path(path, o->busy_ms, o->sync_full, err, errlen);
	if (rc == SQLITE_OK)
		return 0;
	sqlite3_close(db);
	db = NULL;
	if (rc != SQLITE_CORRUPT && rc != SQLITE_NOTADB)
		return -1;
	sq_move_aside(path);
	if (sq_open_path(path, o->busy_ms, o->sync_full, err, errlen) ==
	    SQLITE_OK)
		return 0;
	sqlite3_close(db);
	db = NULL;
	return -1;
}

static bool
sq_serves(const char *url)
{
	return url == NULL || *url == '\0' || strncmp(url, "sqlite:", 7) == 0;
}

/* SQLite's synchronous level on our connection: 1 NORMAL, 2 FULL. */
static int
sq_durability(void)
{
	char	v[16];

	return db != NULL && sq_pragma("PRAGMA synchronous", v,
	    sizeof v) == SQLITE_OK ? atoi(v) : -1;
}

static void
sq_close(void)
{
	sqlite3_finalize(st_put);
	sqlite3_finalize(st_agent_put);
	sqlite3_finalize(st_agents);
	sqlite3_finalize(st_fallback_put);
	sqlite3_finalize(st_result_put);
	sqlite3_finalize(st_ragent_put);
	sqlite3_finalize(st_item_put);
	st_put = st_agent_put = st_agents = st_fallback_put = NULL;
	st_result_put = st_ragent_put = st_item_put = NULL;
	sqlite3_close(db);
	db = NULL;
}

static sqlite3_stmt *
sq_prepare(const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		sq_failed(sqlite3_errmsg(db));
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
sq_step_done(sqlite3_stmt *st)
{
	int	rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

#define STORE_USAGE "prompt_tokens, completion_tokens, total_tokens, " \
	"llm_calls, retries, cost_micro_usd, hedged_calls, hedges_won"
#define STORE_INSERT "INSERT INTO tasks (id, owner, tool, status, " \
	"status_message, params, phase, progress_ms, cache_key, " \
	"created_ms, updated_ms, ttl_ms, expires_ms, pid, " \
	"proc_start, draft_n, draft_answers, draft_of, draft_made_ms, " \
	"draft_text, query, num_agents, timeout_s, model, strategy, " \
	"max_total_tokens, max_cost_usd, min_agents, straggler_grace_s, " \
	"hedge_after_ms, ask_cost, incremental_interval_s, resume, " \
	"deadline_ms, " STORE_USAGE ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8," \
	"?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26," \
	"?27,?28,?29,?30,?31,?32,?33,?34,?35,?36,?37,?38,?39,?40,?41,?42," \
	"?43,?44)"

/* The arguments from column i on (none: NULL); written once, at the
 * insert. */
static void
sq_bind_args(sqlite3_stmt *st, int i, const struct store_args *a)
{
	if (!a->set)
		return;
	sqlite3_bind_double(st, i, a->timeout_s);
	bind_text(st, i + 1, a->model);
	bind_text(st, i + 2, a->strategy);
	sqlite3_bind_int64(st, i + 3, a->max_total_tokens);
	sqlite3_bind_double(st, i + 4, a->max_cost_usd);
	sqlite3_bind_int(st, i + 5, a->min_agents);
	sqlite3_bind_double(st, i + 6, a->straggler_grace_s);
	sqlite3_bind_int(st, i + 7, a->hedge_after_ms);
	sqlite3_bind_int(st, i + 8, a->ask_cost);
	sqlite3_bind_double(st, i + 9, a->incremental_interval_s);
	sqlite3_bind_int(st, i + 10, a->resume);
	sqlite3_bind_int64(st, i + 11, a->deadline_ms);
}

/* The usage from column i on (NULL: none known). */
static void
sq_bind_usage(sqlite3_stmt *st, int i, const struct store_task *t)
{
	const uint64_t	v[] = { t->usage.prompt_tokens,
	    t->usage.completion_tokens, t->usage.total_tokens,
	    t->usage.llm_calls, t->usage.retries, t->usage.cost_micro_usd,
	    t->usage.hedged_calls, t->usage.hedges_won };

	if (!t->has_usage)
		return;
	for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
		sqlite3_bind_int64(st, i + (int)k, (int64_t)v[k]);
}

/* A draft from column i on: its number, then the rest (NULL: none). */
static void
sq_bind_draft(sqlite3_stmt *st, int i, const struct store_draft *d)
{
	sqlite3_bind_int(st, i, d->n);
	if (d->n == 0)
		return;
	sqlite3_bind_int(st, i + 1, d->answers);
	sqlite3_bind_int(st, i + 2, d->of);
	sqlite3_bind_int64(st, i + 3, d->made_ms);
	bind_text(st, i + 4, d->text);
}

static void
sq_bind_task(sqlite3_stmt *st, const struct store_task *t)
{
	bind_text(st, 1, t->id);
	bind_text(st, 2, t->owner);
	bind_text(st, 3, t->tool ? t->tool : "heavy_orchestrate");
	bind_text(st, 4, t->status);
	bind_text(st, 5, t->status_message);
	bind_text(st, 6, t->params ? t->params : "{}");
	bind_text(st, 7, t->progress.phase);
	sqlite3_bind_int64(st, 8, t->progress.elapsed_ms);
	bind_text(st, 11, t->cache_key);
	sqlite3_bind_int64(st, 12, t->created_ms);
	sqlite3_bind_int64(st, 13, t->updated_ms);
	sqlite3_bind_int64(st, 14, t->ttl_ms);
	sqlite3_bind_int64(st, 15, t->created_ms + t->ttl_ms);
	sqlite3_bind_int(st, 16, (int)getpid());
	bind_text(st, 17, store_self_start());
	sq_bind_draft(st, 18, &t->progress.draft);
	bind_text(st, 23, t->query);
	sqlite3_bind_int(st, 24, t->num_agents);
	sq_bind_args(st, 25, &t->args);
	sq_bind_usage(st, 37, t);
}

static int	sq_step_reset(sqlite3_stmt *);

/* Its fallback models, once (a row's arguments never change). */
static int
sq_put_fallbacks(const struct store_task *t)
{
	sqlite3_stmt	*st;

	if (!t->args.set || t->args.nfallbacks == 0)
		return 0;
	if ((st = st_fallback_put) == NULL && (st = st_fallback_put =
	    sq_prepare("INSERT OR IGNORE INTO task_fallbacks (task_id, pos, "
	    "model) VALUES (?1,?2,?3)")) == NULL)
		return -1;
	for (int i = 0; i < t->args.nfallbacks; i++) {
		bind_text(st, 1, t->id);
		sqlite3_bind_int(st, 2, i);
		bind_text(st, 3, t->args.fallbacks[i]);
		if (sq_step_reset(st) == -1)
			return -1;
	}
	return 0;
}

/* Runs a prepared statement kept for reuse; -1 (logged) on error. */
static int
sq_step_reset(sqlite3_stmt *st)
{
	int	rc;

	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The agents of a row just written: each inserted or updated (a task's
 * agents only grow in number). */
static int
sq_put_agents(const struct store_task *t)
{
	const struct store_agent	*a;
	sqlite3_stmt			*st;

	if ((st = st_agent_put) == NULL && (st = st_agent_put = sq_prepare(
	    "INSERT INTO task_agents (task_id, idx, question, status, step, "
	    "error, answer, elapsed_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) "
	    "ON CONFLICT(task_id, idx) DO UPDATE SET question = "
	    "excluded.question, status = excluded.status, step = "
	    "excluded.step, error = excluded.error, answer = excluded.answer, "
	    "elapsed_ms = excluded.elapsed_ms")) == NULL)
		return -1;
	for (int i = 0; i < t->progress.nagents; i++) {
		a = &t->progress.agents[i];
		bind_text(st, 1, t->id);
		sqlite3_bind_int(st, 2, a->index);
		bind_text(st, 3, a->question);
		bind_text(st, 4, a->status ? a->status : "pending");
		bind_text(st, 5, a->step);
		bind_text(st, 6, a->error);
		bind_text(st, 7, a->answer);
		if (a->elapsed_ms >= 0)
			sqlite3_bind_int64(st, 8, a->elapsed_ms);
		if (sq_step_reset(st) == -1)
			return -1;
	}
	return 0;
}


/* A result's (or an agent's) columns as a statement's, from parameter i
 * on. */
static void
sq_bind_columns(sqlite3_stmt *st, int i, const void *base,
    const struct tr_column *cols, int n)
{
	for (int k = 0; k < n; k++) {
		if (cols[k].type == TRC_TEXT)
			bind_text(st, i + k,
			    taskresult_col_text(base, &cols[k]));
		else if (cols[k].type == TRC_REAL)
			sqlite3_bind_double(st, i + k,
			    taskresult_col_real(base, &cols[k]));
		else
			sqlite3_bind_int64(st, i + k,
			    taskresult_col_int(base, &cols[k]));
	}
}

/* "INSERT OR REPLACE INTO table (task_id, the columns) VALUES (?1, ...)",
 * prepared once. */
static sqlite3_stmt *
sq_prepare_columns(sqlite3_stmt **keep, const char *table,
    const struct tr_column *cols, int n)
{
	struct buf	b;

	if (*keep != NULL)
		return *keep;
	buf_init(&b, 0);
	buf_printf(&b, "INSERT OR REPLACE INTO %s (task_id", table);
	for (int k = 0; k < n; k++)
		buf_printf(&b, ", %s", cols[k].name);
	buf_addstr(&b, ") VALUES (?1");
	for (int k = 0; k < n; k++)
		buf_printf(&b, ", ?%d", k + 2);
	buf_addstr(&b, ")");
	*keep = sq_prepare(buf_cstr(&b));
	buf_free(&b);
	return *keep;
}

/* A task's result: its row, its agents' and its lists' (written once, when
 * the task ends). */
static int
sq_put_result(const char *id, const struct task_result *r)
{
	struct tr_item	*items;
	sqlite3_stmt	*st;
	int		 n, rc = 0;

	if ((st = sq_prepare_columns(&st_result_put, "task_results",
	    taskresult_columns, taskresult_ncolumns)) == NULL)
		return -1;
	bind_text(st, 1, id);
	sq_bind_columns(st, 2, r, taskresult_columns, taskresult_ncolumns);
	if (sq_step_reset(st) == -1 || (st = sq_prepare_columns(
	    &st_ragent_put, "task_result_agents", taskresult_agent_columns,
	    taskresult_nagent_columns)) == NULL)
		return -1;
	for (int i = 0; i < r->nagents; i++) {
		bind_text(st, 1, id);
		sq_bind_columns(st, 2, &r->agents[i], taskresult_agent_columns,
		    taskresult_nagent_columns);
		if (sq_step_reset(st) == -1)
			return -1;
	}
	if ((st = st_item_put) == NULL && (st = st_item_put = sq_prepare(
	    "INSERT OR REPLACE INTO task_result_items (task_id, list, owner, "
	    "n, a, b, c, d, x, s1, s2, s3) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,"
	    "?10,?11,?12)")) == NULL)
		return -1;
	n = taskresult_items(r, &items);
	for (int i = 0; i < n && rc == 0; i++) {
		bind_text(st, 1, id);
		bind_text(st, 2, items[i].list);
		sqlite3_bind_int(st, 3, items[i].owner);
		sqlite3_bind_int(st, 4, items[i].n);
		sqlite3_bind_int64(st, 5, items[i].a);
		sqlite3_bind_int64(st, 6, items[i].b);
		sqlite3_bind_int64(st, 7, items[i].c);
		sqlite3_bind_int64(st, 8, items[i].d);
		sqlite3_bind_double(st, 9, items[i].x);
		bind_text(st, 10, items[i].s1);
		bind_text(st, 11, items[i].s2);
		bind_text(st, 12, items[i].s3);
		rc = sq_step_reset(st);
	}
	free(items);
	return rc;
}


/*
 * One row of this process: inserted the first time (so a failed insert
 * heals on the next write), else updated, unless the stored row has ended
 * (a terminal row never changes again).  0 written, 1 terminal, -1 error.
 */
static int
sq_put_one(const struct store_task *t)
{
	if (st_put == NULL && (st_put = sq_prepare(
	    STORE_INSERT " ON CONFLICT(id) DO UPDATE SET status = "
	    "excluded.status, status_message = excluded.status_message, "
	    "phase = excluded.phase, progress_ms = excluded.progress_ms, "
	    "draft_n = excluded.draft_n, draft_answers = "
	    "excluded.draft_answers, draft_of = excluded.draft_of, "
	    "draft_made_ms = excluded.draft_made_ms, draft_text = "
	    "excluded.draft_text, "
	    "prompt_tokens = excluded.prompt_tokens, completion_tokens = "
	    "excluded.completion_tokens, total_tokens = excluded.total_tokens, "
	    "llm_calls = excluded.llm_calls, retries = excluded.retries, "
	    "cost_micro_usd = excluded.cost_micro_usd, hedged_calls = "
	    "excluded.hedged_calls, hedges_won = excluded.hedges_won, "
	    "cache_key = excluded.cache_key, updated_ms = "
	    "excluded.updated_ms WHERE tasks.status = 'working' AND "
	    "tasks.pid = excluded.pid AND tasks.proc_start = "
	    "excluded.proc_start")) == NULL)
		return -1;
	sq_bind_task(st_put, t);
	if (sq_step_reset(st_put) == -1)
		return -1;
	if (sqlite3_changes(db) == 0)
		return 1;
	if (sq_put_fallbacks(t) == -1 || sq_put_agents(t) == -1)
		return -1;
	return t->result != NULL ? sq_put_result(t->id, t->result) : 0;
}

/* Several rows share one transaction; a failed one rolls them all back. */
static void
sq_put(const struct store_task *t, int n, store_done_cb cb, void *arg)
{
	int	rc = STORE_TERMINAL, one;

	/* A row and its agents, at least. */
	if (db == NULL || sq_exec("BEGIN IMMEDIATE") == -1) {
		cb(arg, STORE_ERROR);
		return;
	}
	for (int i = 0; i < n && rc != STORE_ERROR; i++)
		if ((one = sq_put_one(&t[i])) != 1)
			rc = one;
	if (rc != STORE_ERROR && sq_exec("COMMIT") == -1)
		rc = STORE_ERROR;
	if (rc == STORE_ERROR)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	cb(arg, rc);
}

static char *
column_dup(sqlite3_stmt *st, int i)
{
	const unsigned char	*s = sqlite3_column_text(st, i);

	return s == NULL ? NULL : xstrdup((const char *)s);
}

#define STORE_COLUMNS "id, owner, tool, status, status_message, params, " \
	"phase, progress_ms, NULL, NULL, cache_key, created_ms, " \
	"updated_ms, ttl_ms, pid, proc_start, draft_n, draft_answers, " \
	"draft_of, draft_made_ms, draft_text, query, num_agents, " \
	"timeout_s, model, strategy, max_total_tokens, max_cost_usd, " \
	"min_agents, straggler_grace_s, hedge_after_ms, ask_cost, " \
	"incremental_interval_s, resume, deadline_ms, " STORE_USAGE

/* The arguments from column i on, if the row has them (its fallback
 * models are read apart: sq_fallbacks). */
static void
sq_args(sqlite3_stmt *st, int i, struct store_args *a)
{
	if (sqlite3_column_type(st, i) == SQLITE_NULL ||
	    sqlite3_column_type(st, i + 11) == SQLITE_NULL)
		return;
	a->set = true;
	a->timeout_s = sqlite3_column_double(st, i);
	a->model = column_dup(st, i + 1);
	a->strategy = column_dup(st, i + 2);
	a->max_total_tokens = sqlite3_column_int64(st, i + 3);
	a->max_cost_usd = sqlite3_column_double(st, i + 4);
	a->min_agents = sqlite3_column_int(st, i + 5);
	a->straggler_grace_s = sqlite3_column_double(st, i + 6);
	a->hedge_after_ms = sqlite3_column_int(st, i + 7);
	a->ask_cost = sqlite3_column_int(st, i + 8) != 0;
	a->incremental_interval_s = sqlite3_column_double(st, i + 9);
	a->resume = sqlite3_column_int(st, i + 10) != 0;
	a->deadline_ms = sqlite3_column_int64(st, i + 11);
}

/* A row's fallback models, in order; -1 (logged) on error. */
static int
sq_fallbacks(struct store_task *t)
{
	struct store_args	*a = &t->args;
	sqlite3_stmt		*st;
	int			 rc;

	if ((st = sq_prepare("SELECT model FROM task_fallbacks WHERE "
	    "task_id = ?1 ORDER BY pos")) == NULL)
		return -1;
	bind_text(st, 1, t->id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		a->fallbacks = xrealloc(a->fallbacks,
		    (size_t)(a->nfallbacks + 2) * sizeof *a->fallbacks);
		a->fallbacks[a->nfallbacks++] = column_dup(st, 0);
		a->fallbacks[a->nfallbacks] = NULL;
	}
	if (rc != SQLITE_DONE)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* A row's agents, in order; -1 (logged) on error. */
static int
sq_agents(struct store_task *t)
{
	struct store_agent	*a;
	sqlite3_stmt		*st;
	int			 rc;

	if ((st = st_agents) == NULL && (st = st_agents = sq_prepare(
	    "SELECT idx, question, status, step, error, answer, elapsed_ms "
	    "FROM task_agents WHERE task_id = ?1 ORDER BY idx")) == NULL)
		return -1;
	bind_text(st, 1, t->id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		t->progress.agents = xrealloc(t->progress.agents,
		    (size_t)(t->progress.nagents + 1) * sizeof *a);
		a = &t->progress.agents[t->progress.nagents++];
		a->index = sqlite3_column_int(st, 0);
		a->question = column_dup(st, 1);
		a->status = column_dup(st, 2);
		a->step = column_dup(st, 3);
		a->error = column_dup(st, 4);
		a->answer = column_dup(st, 5);
		a->elapsed_ms = sqlite3_column_type(st, 6) == SQLITE_NULL ? -1 :
		    sqlite3_column_int64(st, 6);
	}
	if (rc != SQLITE_DONE)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Columns from i on into base (a result or an agent). */
static void
sq_columns(sqlite3_stmt *st, int i, void *base,
    const struct tr_column *cols, int n)
{
	for (int k = 0; k < n; k++) {
		if (cols[k].type == TRC_TEXT)
			taskresult_col_set_text(base, &cols[k],
			    (const char *)sqlite3_column_text(st, i + k));
		else if (cols[k].type == TRC_REAL)
			taskresult_col_set_real(base, &cols[k],
			    sqlite3_column_double(st, i + k));
		else
			taskresult_col_set_int(base, &cols[k],
			    sqlite3_column_int64(st, i + k));
	}
}

/* "SELECT the columns FROM table WHERE task_id = ?1 ORDER BY order". */
static sqlite3_stmt *
sq_select_columns(const char *table, const struct tr_column *cols, int n,
    const char *order)
{
	sqlite3_stmt	*st;
	struct buf	 b;

	buf_init(&b, 0);
	buf_addstr(&b, "SELECT ");
	for (int k = 0; k < n; k++)
		buf_printf(&b, "%s%s", k ? ", " : "", cols[k].name);
	buf_printf(&b, " FROM %s WHERE task_id = ?1%s%s", table,
	    order ? " ORDER BY " : "", order ? order : "");
	st = sq_prepare(buf_cstr(&b));
	buf_free(&b);
	return st;
}

/* The agents and the lists of a result just read. */
static int
sq_result_rows(struct task_result *r, const char *id)
{
	struct tr_agent	*a;
	struct tr_item	 it;
	sqlite3_stmt	*st;
	int		 rc;

	if ((st = sq_select_columns("task_result_agents",
	    taskresult_agent_columns, taskresult_nagent_columns, "idx")) ==
	    NULL)
		return -1;
	bind_text(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW &&
	    r->nagents < HEAVY_MAX_AGENTS) {
		a = &r->agents[r->nagents++];
		sq_columns(st, 0, a, taskresult_agent_columns,
		    taskresult_nagent_columns);
	}
	sqlite3_finalize(st);
	if ((rc != SQLITE_DONE && rc != SQLITE_ROW) || (st = sq_prepare(
	    "SELECT list, owner, n, a, b, c, d, x, s1, s2, s3 FROM "
	    "task_result_items WHERE task_id = ?1 ORDER BY list, owner, n")) ==
	    NULL)
		return -1;
	bind_text(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		it = (struct tr_item){ (const char *)sqlite3_column_text(st, 0),
		    sqlite3_column_int(st, 1), sqlite3_column_int(st, 2),
		    sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
		    sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6),
		    sqlite3_column_double(st, 7),
		    (const char *)sqlite3_column_text(st, 8),
		    (const char *)sqlite3_column_text(st, 9),
		    (const char *)sqlite3_column_text(st, 10) };
		if (it.list != NULL)
			taskresult_item_add(r, &it);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* A row's result, if it has one; -1 (logged) on error. */
static int
sq_result(struct store_task *t)
{
	struct task_result	*r;
	sqlite3_stmt		*st;
	int			 rc;

	if ((st = sq_select_columns("task_results", taskresult_columns,
	    taskresult_ncolumns, NULL)) == NULL)
		return -1;
	bind_text(st, 1, t->id);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = taskresult_new(TR_ORCHESTRATION);
		sq_columns(st, 0, r, taskresult_columns, taskresult_ncolumns);
		t->result = r;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sq_failed(sqlite3_errmsg(db));
		return -1;
	}
	if (t->result != NULL && sq_result_rows(t->result, t->id) == -1) {
		sq_failed(sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* The usage from column i on, if the row has it. */
static void
sq_usage(sqlite3_stmt *st, int i, struct store_task *t)
{
	struct usage	*u = &t->usage;

	if (!(t->has_usage = sqlite3_column_type(st, i) != SQLITE_NULL))
		return;
	u->prompt_tokens = (uint64_t)sqlite3_column_int64(st, i);
	u->completion_tokens = (uint64_t)sqlite3_column_int64(st, i + 1);
	u->total_tokens = (uint64_t)sqlite3_column_int64(st, i + 2);
	u->llm_calls = (uint32_t)sqlite3_column_int64(st, i + 3);
	u->retries = (uint32_t)sqlite3_column_int64(st, i + 4);
	u->cost_micro_usd = (uint64_t)sqlite3_column_int64(st, i + 5);
	u->hedged_calls = (uint32_t)sqlite3_column_int64(st, i + 6);
	u->hedges_won = (uint32_t)sqlite3_column_int64(st, i + 7);
}

static void
sq_row(sqlite3_stmt *st, struct store_task *t)
{
	const unsigned char	*id = sqlite3_column_text(st, 0);
	const char		*start = (const char *)sqlite3_column_text(st, 15);

	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%s", id ? (const char *)id : "");
	t->owner = column_dup(st, 1);
	t->tool = column_dup(st, 2);
	t->status = column_dup(st, 3);
	t->status_message = column_dup(st, 4);
	t->params = column_dup(st, 5);
	t->progress.phase = column_dup(st, 6);
	t->progress.elapsed_ms = sqlite3_column_int64(st, 7);
	sq_usage(st, 35, t);
	t->cache_key = column_dup(st, 10);
	t->created_ms = sqlite3_column_int64(st, 11);
	t->updated_ms = sqlite3_column_int64(st, 12);
	t->ttl_ms = sqlite3_column_int64(st, 13);
	t->pid = (pid_t)sqlite3_column_int(st, 14);
	t->progress.draft.n = sqlite3_column_int(st, 16);
	if (t->progress.draft.n > 0) {
		t->progress.draft.answers = sqlite3_column_int(st, 17);
		t->progress.draft.of = sqlite3_column_int(st, 18);
		t->progress.draft.made_ms = sqlite3_column_int64(st, 19);
		t->progress.draft.text = column_dup(st, 20);
	}
	t->query = column_dup(st, 21);
	t->num_agents = sqlite3_column_int(st, 22);
	sq_args(st, 23, &t->args);
	t->ours = t->pid == getpid() && strcmp(start, store_self_start()) == 0;
	t->orphaned = strcmp(t->status, "working") == 0 && !t->ours &&
	    !store_proc_alive(t->pid, start);
}

/* A finished row past its ttl: gone, even before the sweep deletes it. */
static bool
sq_expired(const struct store_task *t, int64_t now)
{
	return strcmp(t->status, "working") != 0 &&
	    t->created_ms + t->ttl_ms < now;
}


/*
 * A row whose process died mid-task: now failed, with that reason (and no
 * result; the reason is what a reader is told).  The row is written as a
 * plain update: it is not ours, so the put's guard would refuse it.
 */
static void
sq_settle_orphan(struct store_task *t)
{
	sqlite3_stmt	*st;

	/* One to resume is left for the settle, which claims it. */
	if (!t->orphaned || store_resumable(t, wall_ms()))
		return;
	store_task_interrupt(t);
	if (sq_exec("SAVEPOINT settle") == -1)
		return;
	if ((st = sq_prepare("UPDATE tasks SET status = ?2, "
	    "status_message = ?3, phase = ?4, updated_ms = ?5 "
	    "WHERE id = ?1 AND status = 'working'")) == NULL)
		goto fail;
	bind_text(st, 1, t->id);
	bind_text(st, 2, t->status);
	bind_text(st, 3, t->status_message);
	bind_text(st, 4, t->progress.phase);
	sqlite3_bind_int64(st, 5, t->updated_ms);
	if (sq_step_done(st) == -1)
		goto fail;
	if (sqlite3_changes(db) > 0) {
		if ((st = sq_prepare("UPDATE task_agents SET status = "
		    "'interrupted' WHERE task_id = ?1 AND status IN "
		    "('pending', 'running')")) == NULL)
			goto fail;
		bind_text(st, 1, t->id);
		if (sq_step_done(st) == -1)
			goto fail;
	}
	sq_exec("RELEASE settle");
	return;
fail:
	sqlite3_exec(db, "ROLLBACK TO settle; RELEASE settle", NULL, NULL, NULL);
}

/* The row a statement finds, if any (finalized): STORE_OK and *t,
 * STORE_NOT_FOUND or STORE_ERROR. */
static int
sq_one_row(sqlite3_stmt *st, struct store_task *t)
{
	int	rc;

	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		sq_row(st, t);
	else if (rc != SQLITE_DONE)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW && (sq_agents(t) == -1 || sq_result(t) == -1)) {
		store_task_clear(t);
		return STORE_ERROR;
	}
	return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ?
	    STORE_NOT_FOUND : STORE_ERROR;
}

/* One row by id; STORE_OK, STORE_NOT_FOUND, STORE_EXPIRED, STORE_ERROR. */
static void
sq_get(const char *id, const char *owner, store_row_cb cb, void *arg)
{
	struct store_task	 t;
	sqlite3_stmt		*st;
	int			 rc;

	if (db == NULL || (st = sq_prepare("SELECT " STORE_COLUMNS " FROM "
	    "tasks WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)")) == NULL) {
		cb(arg, STORE_ERROR, NULL);
		return;
	}
	bind_text(st, 1, id);
	bind_text(st, 2, owner);
	if ((rc = sq_one_row(st, &t)) != STORE_OK) {
		cb(arg, rc, NULL);
		return;
	}
	sq_settle_orphan(&t);
	if (sq_expired(&t, wall_ms()))
		cb(arg, STORE_EXPIRED, NULL);
	else
		cb(arg, STORE_OK, &t);
	store_task_clear(&t);
}

static void	 sq_rows_free(struct store_task *, int);

/* Every row of a statement; -1 on error (rows freed). */
static int
sq_rows(sqlite3_stmt *st, int max, struct store_task **out, int *n)
{
	int	rc;

	*out = NULL;
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
		*out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
		sq_row(st, &(*out)[(*n)++]);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	for (int i = 0; i < *n && (rc == SQLITE_DONE || rc == SQLITE_ROW); i++)
		if (sq_agents(&(*out)[i]) == -1)
			rc = SQLITE_ERROR;
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	sq_rows_free(*out, *n);
	*out = NULL;
	*n = 0;
	return -1;
}

static void
sq_rows_free(struct store_task *rows, int n)
{
	for (int i = 0; i < n; i++)
		store_task_clear(&rows[i]);
	free(rows);
}

/*
 * One page of an owner's tasks, newest first, expired ones left out.  The
 * cursor is the last row's "created_ms.id"; callers treat it as opaque.
 */
static void
sq_list(const char *owner, const char *cursor, int limit, store_rows_cb cb,
    void *arg)
{
	struct store_task	*rows;
	sqlite3_stmt		*st;
	long long		 c_ms = INT64_MAX;
	char			 c_id[33] = "~", *next = NULL;	/* "~": after
								 * every id */
	int			 n;

	if (cursor != NULL && (sscanf(cursor, "%lld.%32[0-9a-f]", &c_ms,
	    c_id) != 2 || strlen(c_id) != 32)) {
		cb(arg, STORE_BAD_CURSOR, NULL, 0, 0, NULL);
		return;
	}
	if (db == NULL || (st = sq_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE owner = ?1 AND (created_ms < ?2 OR "
	    "(created_ms = ?2 AND id < ?3)) AND (status = 'working' OR "
	    "expires_ms >= ?5) ORDER BY created_ms DESC, id DESC "
	    "LIMIT ?4")) == NULL) {
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
		return;
	}
	bind_text(st, 1, owner);
	sqlite3_bind_int64(st, 2, c_ms);
	bind_text(st, 3, c_id);
	sqlite3_bind_int(st, 4, limit + 1);
	sqlite3_bind_int64(st, 5, wall_ms());
	if (sq_rows(st, limit + 1, &rows, &n) == -1) {
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
		return;
	}
	if (n > limit) {
		store_task_clear(&rows[--n]);
		next = xasprintf("%lld.%s", (long long)rows[n - 1].created_ms,
		    rows[n - 1].id);
	}
	for (int i = 0; i < n; i++)
		sq_settle_orphan(&rows[i]);
	cb(arg, STORE_OK, rows, n, n, next);
	free(next);
	sq_rows_free(rows, n);
}

/* An owner's running tasks, in any live heavyd, oldest first. */
static void
sq_active(const char *owner, store_rows_cb cb, void *arg)
{
	struct store_task	*rows;
	sqlite3_stmt		*st;
	int			 n, kept = 0;

	if (db == NULL || (st = sq_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE owner = ?1 AND status = 'working' "
	    "ORDER BY created_ms, id")) == NULL) {
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
		return;
	}
	bind_text(st, 1, owner);
	if (sq_rows(st, INT32_MAX, &rows, &n) == -1) {
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
		return;
	}
	for (int i = 0; i < n; i++) {
		sq_settle_orphan(&rows[i]);
		if (strcmp(rows[i].status, "working") != 0)
			store_task_clear(&rows[i]);	/* interrupted */
		else
			rows[kept++] = rows[i];
	}
	cb(arg, STORE_OK, rows, kept, kept, NULL);
	sq_rows_free(rows, kept);
}

/* The owner's task ids that start with prefix (any case), running ones
 * first, then the newest; at most limit, all of them counted. */
static void
sq_ids(const char *owner, const char *prefix, int limit, store_rows_cb cb,
    void *arg)
{
	struct store_task	*rows = NULL;
	sqlite3_stmt		*st;
	char			*low = xstrdup(prefix ? prefix : "");
	int			 rc, n = 0, total = 0;

	for (char *p = low; *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	if (db == NULL || (st = sq_prepare("SELECT id FROM tasks WHERE "
	    "owner = ?1 AND substr(id, 1, length(?2)) = ?2 AND "
	    "(status = 'working' OR expires_ms >= ?3) "
	    "ORDER BY status = 'working' DESC, created_ms DESC")) == NULL) {
		free(low);
		cb(arg, STORE_ERROR, NULL, 0, 0, NULL);
		return;
	}
	bind_text(st, 1, owner);
	bind_text(st, 2, low);
	sqlite3_bind_int64(st, 3, wall_ms());
	rows = xcalloc((size_t)limit + 1, sizeof *rows);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (total++ < limit)
			snprintf(rows[n++].id, sizeof rows->id, "%s",
			    (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	free(low);
	cb(arg, rc == SQLITE_DONE ? STORE_OK : STORE_ERROR, rows, n, total,
	    NULL);
	free(rows);
}

/*
 * Whether the row is still working in the process it names, and that
 * process is dead (of several heavyds settling at once, the first to
 * claim it changed that): 1, else 0; -1 on error.
 */
static int
sq_still_orphaned(const struct store_task *t)
{
	sqlite3_stmt	*st;
	int		 rc, orphaned = 0;

	if ((st = sq_prepare("SELECT pid, proc_start FROM tasks WHERE "
	    "id = ?1 AND status = 'working'")) == NULL)
		return -1;
	bind_text(st, 1, t->id);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		orphaned = (pid_t)sqlite3_column_int(st, 0) == t->pid &&
		    !store_proc_alive(t->pid,
		    (const char *)sqlite3_column_text(st, 1));
	else if (rc != SQLITE_DONE)
		sq_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? orphaned : -1;
}

/*
 * An orphaned row this process takes over to resume: checked again and
 * made ours in one immediate transaction, so that it is claimed once.
 * 1 claimed, 0 not (another heavyd was first), -1 error.
 */
static int
sq_claim(const struct store_task *t)
{
	sqlite3_stmt	*st;
	int		 claimed;

	if (sq_exec("BEGIN IMMEDIATE") == -1)
		return -1;
	if ((claimed = sq_still_orphaned(t)) == 1) {
		if ((st = sq_prepare("UPDATE tasks SET pid = ?2, proc_start = "
		    "?3, updated_ms = ?4 WHERE id = ?1")) == NULL)
			claimed = -1;
		else {
			bind_text(st, 1, t->id);
			sqlite3_bind_int(st, 2, (int)getpid());
			bind_text(st, 3, store_self_start());
			sqlite3_bind_int64(st, 4, wall_ms());
			if (sq_step_done(st) == -1)
				claimed = -1;
		}
	}
	if (claimed == -1 || sq_exec("COMMIT") == -1) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return claimed;
}

/* An orphan to resume: its fallbacks read, claimed, and handed up. */
static void
sq_resume(struct store_task *t)
{
	char	from[64];

	if (sq_fallbacks(t) == -1 || sq_claim(t) != 1)
		return;
	snprintf(from, sizeof from, "process %d on this host", (int)t->pid);
	log_with(LOG_LVL_INFO, &(struct log_fields){ .task_id = t->id },
	    "task %s: its process %d died; resumed here", t->id, (int)t->pid);
	store_resume_tell(t, from, "its process died");
}

/* Rows whose process is gone, found at startup and at each sweep: resumed
 * by this one when they can be (store_resumable), else failed, with the
 * reason.  rc: how many were failed. */
static void
sq_settle(store_done_cb cb, void *arg)
{
	struct store_task	*rows;
	sqlite3_stmt		*st;
	int64_t			 now = wall_ms();
	int			 n, settled = 0;

	if (db == NULL || (st = sq_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE status = 'working'")) == NULL ||
	    sq_rows(st, INT32_MAX, &rows, &n) == -1) {
		cb(arg, STORE_ERROR);
		return;
	}
	for (int i = 0; i < n; i++) {
		if (!rows[i].orphaned)
			continue;
		/* Not claimed: another heavyd was first, or an error that
		 * the next sweep retries. */
		if (store_resumable(&rows[i], now)) {
			sq_resume(&rows[i]);
			continue;
		}
		settled++;
		sq_settle_orphan(&rows[i]);
	}
	sq_rows_free(rows, n);
	cb(arg, settled);
}

/*
 * Expired rows go (past created + ttl, unless still running in a live
 * process), then the oldest finished ones beyond max_rows.  rc: the rows
 * deleted.
 */
static void
sq_sweep(int max_rows, store_done_cb cb, void *arg)
{
	sqlite3_stmt	*st;
	int		 deleted;

	if (db == NULL || (st = sq_prepare("DELETE FROM tasks WHERE "
	    "expires_ms < ?1 AND status != 'working'")) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, wall_ms());
	if (sq_step_done(st) == -1)
		goto fail;
	deleted = sqlite3_changes(db);
	if ((st = sq_prepare("DELETE FROM tasks WHERE status != 'working' "
	    "AND id IN (SELECT id FROM tasks WHERE status != 'working' "
	    "ORDER BY created_ms DESC LIMIT -1 OFFSET ?1)")) == NULL)
		goto fail;
	sqlite3_bind_int(st, 1, max_rows);
	if (sq_step_done(st) == -1)
		goto fail;
	cb(arg, deleted + sqlite3_changes(db));
	return;
fail:
	cb(arg, STORE_ERROR);
}

/* The newest completed, unexpired task with this cache key, younger than
 * max_age. */
static void
sq_cache_find(const char *owner, const char *key, int64_t max_age_ms,
    store_row_cb cb, void *arg)
{
	struct store_task	 t;
	sqlite3_stmt		*st;
	int64_t			 now = wall_ms();
	int			 rc;

	if (db == NULL || (st = sq_prepare("SELECT " STORE_COLUMNS
	    " FROM tasks WHERE cache_key = ?1 AND owner = ?2 AND "
	    "status = 'completed' AND created_ms >= ?3 AND expires_ms >= ?4 "
	    "ORDER BY created_ms DESC LIMIT 1")) == NULL) {
		cb(arg, STORE_ERROR, NULL);
		return;
	}
	bind_text(st, 1, key);
	bind_text(st, 2, owner);
	sqlite3_bind_int64(st, 3, now - max_age_ms);
	sqlite3_bind_int64(st, 4, now);
	if ((rc = sq_one_row(st, &t)) != STORE_OK) {
		cb(arg, rc, NULL);
		return;
	}
	cb(arg, STORE_OK, &t);
	store_task_clear(&t);
}

/* ---- Quota counters ---- */

/* The window's total: the sum of its charges.  -1 on error. */
static int64_t
sq_quota_sum(const char *identity, const char *kind, int64_t window)
{
	sqlite3_stmt	*st;
	int64_t		 sum = -1;

	if (db == NULL || (st = sq_prepare("SELECT coalesce(sum(amount), 0) "
	    "FROM quota_charges WHERE identity = ?1 AND kind = ?2 AND "
	    "window_start = ?3")) == NULL)
		return -1;
	bind_text(st, 1, identity);
	bind_text(st, 2, kind);
	sqlite3_bind_int64(st, 3, window);
	if (sqlite3_step(st) == SQLITE_ROW)
		sum = sqlite3_column_int64(st, 0);
	else
		sq_failed(sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return sum;
}

static void
sq_quota_total(const char *identity, const char *kind, int64_t window,
    store_total_cb cb, void *arg)
{
	int64_t	sum = sq_quota_sum(identity, kind, window);

	cb(arg, sum < 0 ? STORE_ERROR : STORE_OK, sum < 0 ? 0 : sum);
}

/*
 * The source's charge in the window becomes amount, unless it was more
 * already; then the window's total, read in the same transaction, so two
 * heavyds charging at once each see the other's charge or not at all.
 */
static void
sq_quota_charge(const char *identity, const char *kind, int64_t window,
    const char *source, int64_t amount, store_total_cb cb, void *arg)
{
	sqlite3_stmt	*st;
	int64_t		 sum = -1;

	if (db == NULL || sq_exec("BEGIN IMMEDIATE") == -1) {
		cb(arg, STORE_ERROR, 0);
		return;
	}
	if ((st = sq_prepare("INSERT INTO quota_charges (identity, kind, "
	    "window_start, source, amount) VALUES (?1, ?2, ?3, ?4, ?5) "
	    "ON CONFLICT DO UPDATE SET amount = max(amount, excluded.amount)"))
	    != NULL) {
		bind_text(st, 1, identity);
		bind_text(st, 2, kind);
		sqlite3_bind_int64(st, 3, window);
		bind_text(st, 4, source);
		sqlite3_bind_int64(st, 5, amount < 0 ? 0 : amount);
		if (sq_step_done(st) == 0)
			sum = sq_quota_sum(identity, kind, window);
	}
	if (sum < 0 || sq_exec("COMMIT") == -1) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		cb(arg, STORE_ERROR, 0);
		return;
	}
	cb(arg, STORE_OK, sum);
}

static void
sq_quota_sweep(int64_t before, store_done_cb cb, void *arg)
{
	sqlite3_stmt	*st;

	if (db == NULL || (st = sq_prepare("DELETE FROM quota_charges WHERE "
	    "window_start < ?1")) == NULL) {
		cb(arg, STORE_ERROR);
		return;
	}
	sqlite3_bind_int64(st, 1, before);
	if (sq_step_done(st) == -1)
		cb(arg, STORE_ERROR);
	else
		cb(arg, sqlite3_changes(db));
}

const struct store_backend store_sqlite = {
	.name = "sqlite",
	.serves = sq_serves,
	.open = sq_open,
	.close = sq_close,
	.error = sq_error,
	.put = sq_put,
	.get = sq_get,
	.list = sq_list,
	.active = sq_active,
	.ids = sq_ids,
	.cache_find = sq_cache_find,
	.settle = sq_settle,
	.sweep = sq_sweep,
	.durability = sq_durability,
	.quota_charge = sq_quota_charge,
	.quota_total = sq_quota_total,
	.quota_sweep = sq_quota_sweep,
};

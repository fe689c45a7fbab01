/*
 * MCP resources: heavy://config (the effective configuration, secrets
 * masked), heavy://tools (the agent tools), and per task
 * heavy://tasks/{id} (its status, JSON) and heavy://tasks/{id}/result (its
 * answer, Markdown).  A session may subscribe to a task's resources; it
 * hears notifications/resources/updated as the task moves on.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

#define RES_TASKS	"heavy://tasks/"
#define RES_MIN_GAP_MS	200	/* between updates of one subscription */

static struct json_object *
res_entry(const char *uri, const char *name, const char *title,
    const char *description, const char *mime)
{
	struct json_object	*r = json_object_new_object();

	json_object_object_add(r, strchr(uri, '{') ? "uriTemplate" : "uri",
	    json_object_new_string(uri));
	json_object_object_add(r, "name", json_object_new_string(name));
	json_object_object_add(r, "title", json_object_new_string(title));
	json_object_object_add(r, "description",
	    json_object_new_string(description));
	json_object_object_add(r, "mimeType", json_object_new_string(mime));
	return r;
}

struct json_object *
resources_list(void)
{
	struct json_object	*res = json_object_new_object(), *l;

	l = json_object_new_array();
	json_object_array_add(l, res_entry("heavy://config", "config",
	    "Effective configuration", "heavyd's settings as this server "
	    "uses them, secrets masked", "text/yaml"));
	json_object_array_add(l, res_entry("heavy://tools", "tools",
	    "Agent tools", "The tools the agents are offered, with their "
	    "schemas", "application/json"));
#ifdef HEAVY_TEST_FIXTURES
	fixtures_resources(l);
#endif
	json_object_object_add(res, "resources", l);
	return res;
}

struct json_object *
resources_templates(void)
{
	struct json_object	*res = json_object_new_object(), *l;

	l = json_object_new_array();
	json_object_array_add(l, res_entry(RES_TASKS "{id}", "task",
	    "Task status", "A task's status, phase and agents, as "
	    "get_task_progress reports them", "application/json"));
	json_object_array_add(l, res_entry(RES_TASKS "{id}/result",
	    "task-result", "Task result", "A finished task's answer and "
	    "its agents, in Markdown", "text/markdown"));
#ifdef HEAVY_TEST_FIXTURES
	fixtures_templates(l);
#endif
	json_object_object_add(res, "resourceTemplates", l);
	return res;
}

/*
 * The configuration as --check-config prints it.  The server took the key
 * out of its environment and configuration at startup, so the line that
 * would say where it came from says only whether there is one.
 */
static char *
res_config_text(const struct heavy_config *cfg)
{
	char	*text = NULL, *line, *end;
	size_t	 len = 0;
	FILE	*f = open_memstream(&text, &len);
	struct buf out;

	if (f == NULL)
		fatal("open_memstream");
	config_print(cfg, "as this server runs", f);
	features_print(f);
	fclose(f);
	buf_init(&out, 0);
	for (line = text; *line != '\0'; line = end) {
		end = strchr(line, '\n');
		end = end ? end + 1 : line + strlen(line);
		if (strncmp(line, "api_key:", 8) == 0)
			buf_addstr(&out, task_no_key() == NULL ?
			    "api_key: (set, masked)\n" :
			    "api_key: (not set)\n");
		else
			buf_add(&out, line, (size_t)(end - line));
	}
	free(text);
	return buf_release(&out);
}

/* "heavy://tasks/<32 hex>[/result]": the id, lower case, or -1. */
static int
res_task_uri(const char *uri, char id[33], bool *result)
{
	const char	*p = uri + strlen(RES_TASKS);

	if (strncmp(uri, RES_TASKS, strlen(RES_TASKS)) != 0)
		return -1;
	for (int i = 0; i < 32; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return -1;
		id[i] = (char)tolower((unsigned char)p[i]);
	}
	id[32] = '\0';
	*result = strcmp(p + 32, "/result") == 0;
	return *result || p[32] == '\0' ? 0 : -1;
}

/* A cell of the Markdown table, made table-safe. */
static void
res_cell(struct buf *out, const char *v)
{
	buf_addstr(out, " ");
	for (; v != NULL && *v != '\0'; v++)
		buf_add(out, *v == '|' || *v == '\n' ? " " : v, 1);
	buf_addstr(out, " |");
}

/* One agent's line of the Markdown table. */
static void
res_agent_row(struct buf *out, const struct tr_agent *a)
{
	char	index[16];

	snprintf(index, sizeof index, "%d", a->index);
	buf_addstr(out, "|");
	res_cell(out, index);
	res_cell(out, a->status);
	res_cell(out, a->route.model);
	res_cell(out, a->question);
	buf_addstr(out, "\n");
}

static char *
res_result_markdown(const struct store_task *t)
{
	const struct task_result	*r = t->result;
	struct buf			 out;
	const char			*err = durable_error(t);

	buf_init(&out, 0);
	buf_printf(&out, "# Task %s: %s\n\n", t->id,
	    registry_status_name(durable_mkh_status(t)));
	if (err != NULL)
		buf_printf(&out, "**Error:** %s\n\n", err);
	if (r == NULL || r->kind != TR_ORCHESTRATION)
		return buf_release(&out);
	buf_printf(&out, "%s\n\n", r->answer ? r->answer : "");
	if (r->nagents > 0) {
		buf_addstr(&out, "## Agents\n\n| agent | status | model | "
		    "question |\n|---|---|---|---|\n");
		for (int i = 0; i < r->nagents; i++)
			res_agent_row(&out, &r->agents[i]);
	}
	buf_printf(&out, "\nUsage: %llu tokens in %u LLM calls, $%.6f.\n",
	    (unsigned long long)r->usage.total_tokens, r->usage.llm_calls,
	    r->usage.cost_micro_usd / 1e6);
	return buf_release(&out);
}

/* A JSON document's text; the document is consumed. */
static char *
res_json_text(struct json_object *o)
{
	char	*text = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	json_object_put(o);
	return text;
}

static struct json_object *
res_contents(const char *uri, const char *mime, char *text)
{
	struct json_object	*res = json_object_new_object(), *l, *c;

	c = json_object_new_object();
	json_object_object_add(c, "uri", json_object_new_string(uri));
	json_object_object_add(c, "mimeType", json_object_new_string(mime));
	json_object_object_add(c, "text", json_object_new_string(text));
	free(text);
	l = json_object_new_array();
	json_object_array_add(l, c);
	json_object_object_add(res, "contents", l);
	return res;
}

/* A task's resource, read or subscribed to once the store has said. */
struct res_lookup {
	struct mcp_req	*q;
	char		*uri;
	char		 id[33];
	bool		 result;	/* .../result */
	bool		 subscribe;	/* else a read */
};

static void	res_subscribed(struct mcp_session *, struct rpc_msg *,
		    const char *uri);

/* The contents of a task's resource; NULL (msg) for the result of one
 * still running. */
static struct json_object *
res_task_contents(const struct res_lookup *l, const struct store_task *t,
    char *msg, size_t msglen)
{
	if (!l->result)
		return res_contents(l->uri, "application/json", res_json_text(
		    result_status_json(t)));
	if (durable_terminal(t))
		return res_contents(l->uri, "text/markdown",
		    res_result_markdown(t));
	snprintf(msg, msglen, "Resource not found: task %s has not finished; "
	    "subscribe to " RES_TASKS "%s to hear when", l->id, l->id);
	return NULL;
}

/* An unknown, expired or foreign task is not found, as one that never
 * was. */
static void
res_task_found(void *arg, int rc, const struct store_task *t,
    struct task_record *live)
{
	struct res_lookup	*l = arg;
	struct mcp_session	*s = l->q->s;
	struct json_object	*res = NULL;
	char			 msg[256];

	(void)live;
	mcp_req_begin(l->q);
	if (rc != STORE_OK)
		snprintf(msg, sizeof msg, l->subscribe ? "Resource not found: "
		    "%.200s" : "Resource not found: no task %.40s (or it "
		    "expired)", l->subscribe ? l->uri : l->id);
	else if (l->subscribe) {
		res_subscribed(s, &l->q->m, l->uri);
		goto done;
	} else
		res = res_task_contents(l, t, msg, sizeof msg);
	if (res == NULL)
		mcp_error(s, l->q->m.id, RPC_RESOURCE_NOT_FOUND, msg);
	else
		mcp_reply(s, l->q->m.id, res);
done:
	mcp_req_end(l->q);
	free(l->uri);
	free(l);
}

/* A task's resource: looked up, then answered. */
static void
res_task(struct mcp_session *s, struct rpc_msg *m, const char *uri,
    bool subscribe)
{
	struct res_lookup	*l = xcalloc(1, sizeof *l);
	char			 msg[256];

	if (res_task_uri(uri, l->id, &l->result) == -1) {
		free(l);
		if (subscribe)
			snprintf(msg, sizeof msg, "Resource not found: %.200s",
			    uri);
		else
			snprintf(msg, sizeof msg, "Resource not found: expected "
			    RES_TASKS "{id} or " RES_TASKS "{id}/result");
		mcp_error(s, m->id, RPC_RESOURCE_NOT_FOUND, msg);
		return;
	}
	l->q = mcp_req_hold(s, m);
	l->uri = xstrdup(uri);
	l->subscribe = subscribe;
	durable_get(l->id, s->owner, res_task_found, l);
}

/* A fixed resource's contents, or NULL: not one of them. */
static struct json_object *
res_read_fixed(struct mcp_session *s, const char *uri)
{
#ifdef HEAVY_TEST_FIXTURES
	struct json_object	*fx;

	if ((fx = fixtures_read(uri)) != NULL)
		return fx;
#endif
	if (strcmp(uri, "heavy://config") == 0)
		return res_contents(uri, "text/yaml", res_config_text(s->cfg));
	if (strcmp(uri, "heavy://tools") == 0)
		return res_contents(uri, "application/json", res_json_text(
		    tooldefs_list(task_tool_features(s->cfg))));
	return NULL;
}

/* ---- the methods ---- */

void
resources_rpc_list(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mcp_bad_cursor(s, m))
		mcp_reply(s, m->id, resources_list());
}

void
resources_rpc_templates(struct mcp_session *s, struct rpc_msg *m)
{
	if (!mcp_bad_cursor(s, m))
		mcp_reply(s, m->id, resources_templates());
}

/* The uri parameter, or NULL after answering -32602. */
static const char *
res_uri_param(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(m->params, "uri", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		mcp_error(s, m->id, RPC_INVALID_PARAMS,
		    "Invalid params: uri (string) is required");
		return NULL;
	}
	return json_object_get_string(v);
}

void
resources_rpc_read(struct mcp_session *s, struct rpc_msg *m)
{
	struct json_object	*res;
	const char		*uri;

	if ((uri = res_uri_param(s, m)) == NULL)
		return;
	if ((res = res_read_fixed(s, uri)) != NULL)
		mcp_reply(s, m->id, res);
	else
		res_task(s, m, uri, false);
}

static void
res_sub_free(struct lh_entry *e)
{
	free((void *)lh_entry_k(e));
	free(lh_entry_v(e));
}

static void
res_subscribed(struct mcp_session *s, struct rpc_msg *m, const char *uri)
{
	if (s->subs == NULL)
		s->subs = lh_kchar_table_new(16, res_sub_free);
	if (lh_table_lookup_entry(s->subs, uri) == NULL)
		lh_table_insert(s->subs, xstrdup(uri), xcalloc(1,
		    sizeof(int64_t)));
	mcp_reply(s, m->id, json_object_new_object());
}

/* Only a task's resources change; config and tools are fixed. */
void
resources_rpc_subscribe(struct mcp_session *s, struct rpc_msg *m)
{
	const char	*uri;

	if ((uri = res_uri_param(s, m)) == NULL)
		return;
	if (strcmp(uri, "heavy://config") == 0 ||
	    strcmp(uri, "heavy://tools") == 0
#ifdef HEAVY_TEST_FIXTURES
	    || fixtures_subscribable(uri)
#endif
	    )
		res_subscribed(s, m, uri);
	else
		res_task(s, m, uri, true);
}

void
resources_rpc_unsubscribe(struct mcp_session *s, struct rpc_msg *m)
{
	const char	*uri;

	if ((uri = res_uri_param(s, m)) == NULL)
		return;
	if (s->subs != NULL)
		lh_table_delete(s->subs, uri);
	mcp_reply(s, m->id, json_object_new_object());
}

/* One notice, at most every RES_MIN_GAP_MS unless the task ended. */
static void
res_updated(struct mcp_session *s, const char *uri, bool ended)
{
	struct lh_entry		*e;
	struct json_object	*params;
	int64_t			*last, now = now_ms();

	if (s->subs == NULL || (e = lh_table_lookup_entry(s->subs, uri)) == NULL)
		return;
	last = lh_entry_v(e);
	if (!ended && now - *last < RES_MIN_GAP_MS)
		return;
	*last = now;
	params = json_object_new_object();
	json_object_object_add(params, "uri", json_object_new_string(uri));
	mcp_notify(s, "notifications/resources/updated", params);
}

/*
 * A task moved on.  Its status resource changed; its result resource
 * exists once it ends.  A skipped notice is made up for by the next one:
 * heartbeats keep coming while a task runs, and the end is never skipped.
 */
void
resources_changed(struct mcp_session *s, struct task_record *r)
{
	char	uri[128];

	if (s->subs == NULL || strcmp(r->owner, s->owner) != 0)
		return;
	snprintf(uri, sizeof uri, RES_TASKS "%s", r->id);
	res_updated(s, uri, r->finished);
	if (r->finished) {
		snprintf(uri, sizeof uri, RES_TASKS "%s/result", r->id);
		res_updated(s, uri, true);
	}
}

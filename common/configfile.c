/*
 * The configuration file: YAML through libyaml.  make-it-heavy's config.yaml
 * loads unchanged; heavyd's own limits live under "limits:".  An unknown
 * key or a bad value is an error naming the file, the line and the key.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "common.h"

enum key_kind { KEY_STR, KEY_KNOB, KEY_INT, KEY_STRATEGY, KEY_MODEL,
    KEY_MODELS, KEY_BOOL, KEY_BACKEND, KEY_URL, KEY_STRV, KEY_LOGFORMAT };

static const struct file_key {
	const char	*path;
	enum key_kind	 kind;
	size_t		 offset;	/* KEY_STR, KEY_INT, KEY_STRATEGY */
	const char	*knob;		/* KEY_KNOB */
	size_t		 count;		/* KEY_STRV: its count's offset */
} file_keys[] = {
#define STR(p, f)	{ p, KEY_STR, offsetof(struct heavy_config, f), NULL, 0 }
#define KNOB(p, k)	{ p, KEY_KNOB, 0, k, 0 }
	{ "openrouter.base_url", KEY_URL,
	  offsetof(struct heavy_config, base_url), NULL, 0 },
	STR("openrouter.model", model),
	STR("openrouter.api_key", api_key),
	STR("api_key_file", api_key_file),
	STR("system_prompt", system_prompt),
	KNOB("agent.max_iterations", "max_iterations"),
	KNOB("orchestrator.parallel_agents", "num_agents"),
	KNOB("orchestrator.task_timeout", "task_timeout"),
	KNOB("orchestrator.min_agents", "min_agents"),
	KNOB("orchestrator.straggler_grace", "straggler_grace"),
	KNOB("orchestrator.incremental_interval", "incremental_interval"),
	KNOB("orchestrator.hedge_after_ms", "hedge_after_ms"),
	{ "orchestrator.aggregation_strategy", KEY_STRATEGY,
	  offsetof(struct heavy_config, aggregation_strategy), NULL, 0 },
	STR("orchestrator.question_generation_prompt", question_prompt),
	STR("orchestrator.synthesis_prompt", synthesis_prompt),
	{ "search.max_results", KEY_INT,
	  offsetof(struct heavy_config, search_max_results), NULL, 0 },
	STR("search.user_agent", search_user_agent),
	{ "orchestrator.planner_model", KEY_MODEL,
	  offsetof(struct heavy_config, planner_model), NULL, 0 },
	{ "orchestrator.synthesis_model", KEY_MODEL,
	  offsetof(struct heavy_config, synthesis_model), NULL, 0 },
	{ "orchestrator.agent_models", KEY_MODELS, 0, NULL, 0 },
	{ "orchestrator.fallback_models", KEY_STRV,
	  offsetof(struct heavy_config, fallback_models), NULL,
	  offsetof(struct heavy_config, nfallback_models) },
	{ "orchestrator.planner_fallback_models", KEY_STRV,
	  offsetof(struct heavy_config, planner_fallbacks), NULL,
	  offsetof(struct heavy_config, nplanner_fallbacks) },
	{ "orchestrator.synthesis_fallback_models", KEY_STRV,
	  offsetof(struct heavy_config, synthesis_fallbacks), NULL,
	  offsetof(struct heavy_config, nsynthesis_fallbacks) },
	STR("state_dir", state_dir),
	{ "search.backend", KEY_BACKEND,
	  offsetof(struct heavy_config, search_backend), NULL, 0 },
	STR("search.url", search_url),
	STR("ca_file", ca_file),
	STR("search.api_key", search_api_key),
	STR("search.api_key_file", search_api_key_file),
	{ "search.allow_private", KEY_BOOL,
	  offsetof(struct heavy_config, search_allow_private), NULL, 0 },
	{ "tools.compat", KEY_BOOL,
	  offsetof(struct heavy_config, tools_compat), NULL, 0 },
	{ "sandbox.require", KEY_BOOL,
	  offsetof(struct heavy_config, sandbox_require), NULL, 0 },
	STR("store.synchronous", store_synchronous),
	STR("store.url", store_url),
	STR("node_id", node_id),
	{ "http.listen", KEY_STRV, offsetof(struct heavy_config, http_listen),
	  NULL, offsetof(struct heavy_config, nhttp_listen) },
	STR("http.path", http_path),
	STR("http.session_key_file", http_session_key_file),
	{ "http.allowed_origins", KEY_STRV,
	  offsetof(struct heavy_config, http_origins), NULL,
	  offsetof(struct heavy_config, nhttp_origins) },
	KNOB("metrics.max_label_values", "metrics_max_label_values"),
	{ "log.format", KEY_LOGFORMAT,
	  offsetof(struct heavy_config, log_format), NULL, 0 },
	{ "log.queries", KEY_BOOL,
	  offsetof(struct heavy_config, log_queries), NULL, 0 },
	{ "orchestrator.resume", KEY_BOOL,
	  offsetof(struct heavy_config, resume), NULL, 0 },
	/* auth.mode: oauth (config_auth_check checks them together) */
	STR("auth.mode", auth_mode),
	STR("auth.issuer", auth_issuer),
	STR("auth.audience", auth_audience),
	STR("auth.jwks_file", auth_jwks_file),
	{ "auth.jwks_url", KEY_URL, offsetof(struct heavy_config, auth_jwks_url),
	  NULL, 0 },
	STR("auth.identity_claim", auth_identity_claim),
	STR("auth.limits_claim", auth_limits_claim),
	{ "auth.scopes", KEY_STRV, offsetof(struct heavy_config, auth_scopes),
	  NULL, offsetof(struct heavy_config, nauth_scopes) },
	KNOB("auth.clock_skew", "auth_clock_skew"),
	KNOB("auth.max_token_bytes", "auth_max_token_bytes"),
	KNOB("auth.jwks_max_age", "auth_jwks_max_age"),
	KNOB("auth.jwks_min_refetch", "auth_jwks_min_refetch"),
	KNOB("auth.jwks_timeout", "auth_jwks_timeout"),
	KNOB("auth.max_jwks_bytes", "auth_max_jwks_bytes"),
	STR("auth.tokens_file", auth_tokens_file),
	STR("auth.defaults", auth_defaults),
	KNOB("auth.fail_max", "auth_fail_max"),
	KNOB("auth.fail_window", "auth_fail_window"),
	KNOB("auth.max_clients", "auth_max_clients"),
#undef STR
#undef KNOB
};

/* File key i ("openrouter.model"); NULL past the last. */
const char *
config_file_key(size_t i)
{
	return i < sizeof file_keys / sizeof file_keys[0] ? file_keys[i].path :
	    NULL;
}

struct loader {
	struct heavy_config	*c;
	const char		*file;
	yaml_document_t		 doc;
	char			*err;
	size_t			 errlen;
};

static int
load_fail(struct loader *l, yaml_node_t *n, const char *key, const char *why)
{
	snprintf(l->err, l->errlen, "%s:%zu: %s%s%s", l->file,
	    n->start_mark.line + 1, key, key[0] ? ": " : "", why);
	return -1;
}

/*
 * A plain scalar that YAML reads as null, a boolean or a number is not a
 * string (make-it-heavy's PyYAML would not give a string either).
 */
static bool
load_is_string(yaml_node_t *n)
{
	static const char	*words[] = { "~", "null", "Null", "NULL", "true",
	    "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES",
	    "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y",
	    "n", "N" };
	const char		*v = (const char *)n->data.scalar.value;
	char			*end;

	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return true;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strcmp(v, words[i]) == 0)
			return false;
	if (*v == '\0')
		return false;
	(void)strtod(v, &end);
	return *end != '\0';
}

/* A model id: a non-empty string without spaces. */
static int
load_model(struct loader *l, yaml_node_t *n, const char *path)
{
	const char	*v = (const char *)n->data.scalar.value, *why;
	char		 msg[128];

	if (n->type != YAML_SCALAR_NODE)
		return load_fail(l, n, path, "expected a model id (a string)");
	if (!load_is_string(n) && *v != '\0') {
		snprintf(msg, sizeof msg, "expected a model id (a string; "
		    "quote it), got %.40s", v);
		return load_fail(l, n, path, msg);
	}
	if ((why = config_model_error(v)) != NULL)
		return load_fail(l, n, path, why);
	return 0;
}

/* http.listen, http.allowed_origins: a string, or a list of them; the
 * file's list replaces the defaults' (a flag adds to it later). */
static int
load_strv(struct loader *l, const struct file_key *k, yaml_node_t *v,
    const char *path)
{
	char			***strv = (char ***)((char *)l->c + k->offset);
	int			*n = (int *)((char *)l->c + k->count);
	yaml_node_item_t	*it;
	yaml_node_t		*item;

	config_strv_free(strv, n);
	if (v->type == YAML_SCALAR_NODE && load_is_string(v)) {
		config_strv_add(strv, n, (const char *)v->data.scalar.value);
		return 0;
	}
	if (v->type != YAML_SEQUENCE_NODE)
		return load_fail(l, v, path, "expected a string or a list of "
		    "strings");
	for (it = v->data.sequence.items.start;
	    it < v->data.sequence.items.top; it++) {
		item = yaml_document_get_node(&l->doc, *it);
		if (item == NULL || item->type != YAML_SCALAR_NODE ||
		    !load_is_string(item))
			return load_fail(l, item ? item : v, path,
			    "expected a list of strings");
		config_strv_add(strv, n, (const char *)item->data.scalar.value);
	}
	return 0;
}

/* orchestrator.agent_models: a non-empty sequence of model ids. */
static int
load_models(struct loader *l, yaml_node_t *seq, const char *path)
{
	yaml_node_item_t	*it;
	yaml_node_t		*n;
	char			**models, item[300];
	int			 count = 0;

	if (seq->type != YAML_SEQUENCE_NODE)
		return load_fail(l, seq, path, "expected a list of model ids");
	if (seq->data.sequence.items.top == seq->data.sequence.items.start)
		return load_fail(l, seq, path, "expected a non-empty list of "
		    "model ids");
	models = xcalloc((size_t)(seq->data.sequence.items.top -
	    seq->data.sequence.items.start), sizeof *models);
	for (it = seq->data.sequence.items.start;
	    it < seq->data.sequence.items.top; it++) {
		n = yaml_document_get_node(&l->doc, *it);
		snprintf(item, sizeof item, "%s[%d]", path, count);
		if (n == NULL || load_model(l, n, item) == -1) {
			while (count > 0)
				free(models[--count]);
			free(models);
			return n == NULL ? load_fail(l, seq, path,
			    "unreadable item") : -1;
		}
		models[count++] = xstrdup((const char *)n->data.scalar.value);
	}
	config_set_agent_models(l->c, models, count);
	return 0;
}

static int
load_scalar(struct loader *l, const struct file_key *k, yaml_node_t *n,
    const char *path)
{
	const char	*v = (const char *)n->data.scalar.value;
	char		 knob_err[256], *end;
	long		 i;

	if (n->type != YAML_SCALAR_NODE)
		return load_fail(l, n, path, "expected a single value");
	switch (k->kind) {
	case KEY_STR:
		config_set_str((char **)((char *)l->c + k->offset), v);
		return 0;
	case KEY_STRATEGY:
		if (config_strategy(v) == -1)
			return load_fail(l, n, path, "expected one of "
			    HEAVY_STRATEGIES);
		config_set_str((char **)((char *)l->c + k->offset), v);
		return 0;
	case KEY_MODEL:
		if (load_model(l, n, path) == -1)
			return -1;
		config_set_str((char **)((char *)l->c + k->offset), v);
		return 0;
	case KEY_MODELS:
		return load_fail(l, n, path, "expected a list of model ids");
	case KEY_STRV:
		break;		/* load_strv */
	case KEY_URL:
		if (config_url_error(v) != NULL)
			return load_fail(l, n, path, config_url_error(v));
		config_set_str((char **)((char *)l->c + k->offset), v);
		return 0;
	case KEY_INT:
		i = strtol(v, &end, 10);
		if (!config_number_start(v) || *end != '\0' || i < 1 || i > 100)
			return load_fail(l, n, path, "expected an integer from "
			    "1 to 100");
		*(int *)((char *)l->c + k->offset) = (int)i;
		return 0;
	case KEY_BOOL:
		if (config_parse_bool(v, (int *)((char *)l->c + k->offset)) == -1)
			return load_fail(l, n, path, "expected true or false");
		return 0;
	case KEY_BACKEND:
		if (strcmp(v, "searxng") != 0 && strcmp(v, "brave") != 0 &&
		    strcmp(v, "none") != 0)
			return load_fail(l, n, path, "expected searxng, brave "
			    "or none");
		config_set_str((char **)((char *)l->c + k->offset), v);
		return 0;
	case KEY_LOGFORMAT:
		if (log_format_parse(v, &(enum log_format){ 0 }) == -1)
			return load_fail(l, n, path, "expected text or json");
		config_set_str((char **)((char *)l->c + k->offset), v);
		return 0;
	case KEY_KNOB:
		break;
	}
	if (config_set_knob_named(l->c, k->knob, v, knob_err,
	    sizeof knob_err) != 0)
		return load_fail(l, n, path, strchr(knob_err, ':') ?
		    strchr(knob_err, ':') + 2 : knob_err);
	return 0;
}

/* The edit distance of a and b (Levenshtein), at most 255 bytes each. */
static size_t
load_distance(const char *a, const char *b)
{
	size_t	la = strlen(a), lb = strlen(b), row[256], diag, up, i, j;

	if (la > 255 || lb > 255)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			row[j] = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < row[j])
				row[j] = up + 1;
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			diag = up;
		}
	}
	return row[lb];
}

/* Keeps known as the suggestion for path if it is the nearest yet. */
static void
load_nearer(const char *path, const char *known, char *best, size_t len,
    size_t *dist)
{
	const char	*leaf = strrchr(path, '.');
	const char	*kleaf = strrchr(known, '.');
	size_t		 d = load_distance(path, known);

	/* "model:" at the top is "openrouter.model" in the wrong place. */
	if (strcmp(leaf ? leaf + 1 : path, kleaf ? kleaf + 1 : known) == 0)
		d = 1;
	if (d < *dist) {
		*dist = d;
		snprintf(best, len, "%s", known);
	}
}

/* An unknown key or limit, with the known one nearest to it if any is
 * near: a typo, or a key in the wrong section. */
static int
load_unknown(struct loader *l, yaml_node_t *n, const char *path,
    const char *what)
{
	char	best[128] = "", name[64], known[80], msg[256];
	size_t	dist = SIZE_MAX, i;

	for (i = 0; i < sizeof file_keys / sizeof file_keys[0]; i++) {
		load_nearer(path, file_keys[i].path, best, sizeof best, &dist);
		/* Its section too: "orchestrater:" is a typo of one. */
		snprintf(known, sizeof known, "%.*s", (int)strcspn(
		    file_keys[i].path, "."), file_keys[i].path);
		load_nearer(path, known, best, sizeof best, &dist);
	}
	for (i = 0; config_knob_name(i, name, sizeof name) != NULL; i++) {
		snprintf(known, sizeof known, "limits.%s", name);
		load_nearer(path, known, best, sizeof best, &dist);
	}
	if (best[0] == '\0' || dist > 3 || dist * 2 >= strlen(path))
		return load_fail(l, n, path, what);
	snprintf(msg, sizeof msg, "%s; did you mean `%s`?", what, best);
	return load_fail(l, n, path, msg);
}

/* A key under "limits:" names a knob directly. */
static int
load_limit(struct loader *l, yaml_node_t *n, const char *path)
{
	char	knob_err[256];
	int	rc;

	if (n->type != YAML_SCALAR_NODE)
		return load_fail(l, n, path, "expected a single value");
	rc = config_set_knob_named(l->c, path + strlen("limits."),
	    (const char *)n->data.scalar.value, knob_err, sizeof knob_err);
	if (rc == -2)
		return load_unknown(l, n, path, "unknown limit");
	if (rc != 0)
		return load_fail(l, n, path, strchr(knob_err, ':') + 2);
	return 0;
}

static int	load_mapping(struct loader *, yaml_node_t *, const char *);

static int
load_value(struct loader *l, yaml_node_t *key, yaml_node_t *v,
    const char *path)
{
	size_t	i;

	if (strncmp(path, "limits.", 7) == 0)
		return load_limit(l, v, path);
	for (i = 0; i < sizeof file_keys / sizeof file_keys[0]; i++)
		if (strcmp(file_keys[i].path, path) == 0)
			return file_keys[i].kind == KEY_MODELS ?
			    load_models(l, v, path) :
			    file_keys[i].kind == KEY_STRV ?
			    load_strv(l, &file_keys[i], v, path) :
			    load_scalar(l, &file_keys[i], v, path);
	/* A section (openrouter, agent, ..., limits) holds keys. */
	for (i = 0; i < sizeof file_keys / sizeof file_keys[0]; i++)
		if (strncmp(file_keys[i].path, path, strlen(path)) == 0 &&
		    file_keys[i].path[strlen(path)] == '.')
			return load_mapping(l, v, path);
	if (strcmp(path, "limits") == 0)
		return load_mapping(l, v, path);
	return load_unknown(l, key, path, "unknown key");
}

/* A key given twice: libyaml keeps both, and the last would silently win. */
static int
load_duplicate(struct loader *l, yaml_node_t *map, yaml_node_pair_t *pair,
    const char *path)
{
	yaml_node_t	*k = yaml_document_get_node(&l->doc, pair->key), *e;
	char		 msg[64];

	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair;
	    p++) {
		e = yaml_document_get_node(&l->doc, p->key);
		if (e == NULL || e->type != YAML_SCALAR_NODE ||
		    strcmp((char *)e->data.scalar.value,
		    (char *)k->data.scalar.value) != 0)
			continue;
		snprintf(msg, sizeof msg, "duplicate key, first at line %zu",
		    e->start_mark.line + 1);
		return load_fail(l, k, path, msg);
	}
	return 0;
}

static int
load_mapping(struct loader *l, yaml_node_t *map, const char *prefix)
{
	yaml_node_pair_t	*p;
	yaml_node_t		*k, *v;
	char			 path[256];

	if (map->type != YAML_MAPPING_NODE)
		return load_fail(l, map, prefix, "expected a mapping of keys");
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	    p++) {
		k = yaml_document_get_node(&l->doc, p->key);
		v = yaml_document_get_node(&l->doc, p->value);
		if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE)
			return load_fail(l, map, prefix, "keys must be names");
		snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "",
		    (const char *)k->data.scalar.value);
		if (load_duplicate(l, map, p, path) == -1 ||
		    load_value(l, k, v, path) == -1)
			return -1;
	}
	return 0;
}

int
config_load_file(struct heavy_config *c, const char *file, char *err,
    size_t errlen)
{
	struct loader	 l;
	yaml_parser_t	 parser;
	yaml_node_t	*root;
	FILE		*f;
	int		 rc = -1;

	memset(&l, 0, sizeof l);
	l.c = c;
	l.file = file;
	l.err = err;
	l.errlen = errlen;
	if ((f = fopen(file, "r")) == NULL) {
		snprintf(err, errlen, "config file %s: %s", file,
		    strerror(errno));
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &l.doc)) {
		snprintf(err, errlen, "%s:%zu: %s", file,
		    parser.problem_mark.line + 1, parser.problem ?
		    parser.problem : "invalid YAML");
		goto out;
	}
	root = yaml_document_get_root_node(&l.doc);
	rc = root == NULL ? 0 : load_mapping(&l, root, "");
	yaml_document_delete(&l.doc);
out:
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

#ifndef HEAVY_SYSCONFDIR
#define HEAVY_SYSCONFDIR	"/etc"
#endif

/*
 * The file to read: the one given (--config or HEAVY_CONFIG), else
 * $XDG_CONFIG_HOME/heavyd/config.yaml (~/.config), else
 * SYSCONFDIR/heavyd/config.yaml (/etc); NULL when there is none.
 */
const char *
config_find_file(const char *explicit_path, char *buf, size_t len)
{
	const char	*xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");

	if (explicit_path != NULL)
		return explicit_path;
	if (xdg != NULL && *xdg != '\0')
		snprintf(buf, len, "%s/heavyd/config.yaml", xdg);
	else if (home != NULL)
		snprintf(buf, len, "%s/.config/heavyd/config.yaml", home);
	else
		buf[0] = '\0';
	if (buf[0] != '\0' && access(buf, F_OK) == 0)
		return buf;
	if (access(HEAVY_SYSCONFDIR "/heavyd/config.yaml", F_OK) == 0)
		return HEAVY_SYSCONFDIR "/heavyd/config.yaml";
	return NULL;
}

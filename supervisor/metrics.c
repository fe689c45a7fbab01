/*
 * heavyd's metrics: a registry of families, each with fixed label names
 * and its series, rendered in Prometheus' text format 0.0.4.  A series
 * keeps its labels already escaped and joined, so a scrape is copies and
 * integer formatting into one buffer, appended to an evbuffer in large
 * pieces.  Label values are interned per family; an open label's values
 * stop at the cap, and the rest count as "other".
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "../common/common.h"
#include "metrics.h"

#define METRICS_MAX_NAME	100
#define METRICS_MAX_VALUES	60000	/* per label, whatever the cap */
#define METRICS_OUT_SIZE	65536
#define METRICS_OUT_ROOM	8192	/* more than one line can take */

/* The values one label of a family has taken, in order of arrival. */
struct metric_labelset {
	char	**v;
	int	  n, size;
	int	  nreal;	/* not counting "other" */
};

struct metric_series {
	uint16_t	 idx[METRICS_MAX_LABELS];
	char		*labels;	/* a="x",b="y": escaped, no braces */
	size_t		 labels_len;
	int64_t		 value;		/* a histogram's sum */
	uint64_t	 count;		/* a histogram's count */
	uint64_t	*counts;	/* per bucket, then +Inf; not cumulative */
};

struct metric_family {
	char			*name, *help;
	enum metric_type	 type;
	int			 scale, nlabels, nbuckets;
	unsigned		 open;
	char			*label_names[METRICS_MAX_LABELS];
	int64_t			 buckets[METRICS_MAX_BUCKETS];
	char			*le[METRICS_MAX_BUCKETS];
	struct metric_labelset	 values[METRICS_MAX_LABELS];
	struct metric_series	**series;
	size_t			 nseries, sizeseries;
	uint32_t		*hash;	/* series index + 1; 0: empty */
	size_t			 hashsize;
	char			*header;	/* # HELP and # TYPE */
	size_t			 header_len;
	struct metric_family	*next;
};

static struct metric_family	*families, **families_tail = &families;
static int			 label_cap = METRICS_DEFAULT_LABEL_VALUES;
static bool			 initialized;

/* heavyd's families. */
static struct metric_family	*f_build, *f_tasks_started, *f_tasks_ended,
				*f_tasks_running, *f_budget_stops, *f_workers,
				*f_worker_exits, *f_llm_requests, *f_llm_duration,
				*f_llm_tokens, *f_llm_cost, *f_llm_retries,
				*f_llm_hedges,
				*f_http, *f_sessions, *f_sse, *f_store_duration,
				*f_store_errors, *f_spares, *f_zygote_up,
				*f_zygote_restarts, *f_log_dropped,
				*f_store_connected, *f_store_queued,
				*f_egress_up, *f_egress_restarts,
				*f_egress_cancelled, *f_egress_breaker;

#define V(...)	((const char *const []){ __VA_ARGS__ })

/* ---- Text: numbers, escapes, UTF-8 ---- */

static size_t
fmt_u64(char *p, uint64_t v)
{
	char	tmp[20];
	size_t	n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	for (size_t i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

/* v / 10^scale, exactly, with no trailing zeros after the point. */
static size_t
fmt_value(char *p, int64_t v, int scale)
{
	uint64_t	u = v < 0 ? -(uint64_t)v : (uint64_t)v, div = 1, frac;
	size_t		n = 0;

	if (v < 0)
		p[n++] = '-';
	for (int i = 0; i < scale; i++)
		div *= 10;
	n += fmt_u64(p + n, u / div);
	if (scale == 0 || (frac = u % div) == 0)
		return n;
	p[n++] = '.';
	for (uint64_t d = div / 10; d > 0 && frac > 0; d /= 10) {
		p[n++] = (char)('0' + frac / d);
		frac %= d;
	}
	return n;
}

/* The length of the valid UTF-8 sequence at s (at most len), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t len)
{
	size_t		n;
	uint32_t	c;

	if (s[0] < 0x80)
		return 1;
	n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 && s[0] < 0xf0 ?
	    3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	if (n == 0 || n > len)
		return 0;
	c = s[0] & (0xff >> (n + 1));
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates, past U+10FFFF. */
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	return n;
}

/*
 * A label value as it is kept: valid UTF-8 (a bad byte becomes '?'), cut
 * at a character boundary to METRICS_MAX_LABEL_BYTES.
 */
static const char *
label_clean(const char *v, char *out)
{
	const unsigned char	*s = (const unsigned char *)(v ? v : "");
	size_t			 len = strlen((const char *)s), i = 0, o = 0, n;

	while (i < len) {
		n = utf8_len(s + i, len - i);
		if (o + (n ? n : 1) > METRICS_MAX_LABEL_BYTES)
			break;
		if (n == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
	return out;
}

/* Escapes a label value (\ " newline) or a HELP text (\ newline). */
static void
escape_add(struct buf *b, const char *s, bool quotes)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			buf_addstr(b, "\\\\");
		else if (*s == '\n')
			buf_addstr(b, "\\n");
		else if (*s == '"' && quotes)
			buf_addstr(b, "\\\"");
		else
			buf_add(b, s, 1);
	}
}

/* ---- Families and series ---- */

static bool
name_valid(const char *s)
{
	size_t	len = strlen(s);

	if (len == 0 || len > METRICS_MAX_NAME || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (; *s != '\0'; s++)
		if (!(*s == '_' || (*s >= 'a' && *s <= 'z') ||
		    (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

static void
family_header(struct metric_family *f)
{
	static const char	*types[] = { "counter", "gauge", "histogram" };
	struct buf		 b;

	buf_init(&b, 0);
	buf_printf(&b, "# HELP %s ", f->name);
	escape_add(&b, f->help, false);
	buf_printf(&b, "\n# TYPE %s %s\n", f->name, types[f->type]);
	f->header_len = b.len;
	f->header = buf_release(&b);
}

static int
family_labels(struct metric_family *f, const struct metric_spec *s)
{
	char	le[32];

	for (f->nlabels = 0; f->nlabels < METRICS_MAX_LABELS &&
	    s->labels[f->nlabels] != NULL; f->nlabels++) {
		if (!name_valid(s->labels[f->nlabels]) ||
		    strncmp(s->labels[f->nlabels], "__", 2) == 0 ||
		    strcmp(s->labels[f->nlabels], "le") == 0)
			return -1;
		f->label_names[f->nlabels] = xstrdup(s->labels[f->nlabels]);
	}
	for (f->nbuckets = 0; f->type == METRIC_HISTOGRAM &&
	    f->nbuckets < METRICS_MAX_BUCKETS && s->buckets[f->nbuckets] > 0;
	    f->nbuckets++) {
		if (f->nbuckets > 0 &&
		    s->buckets[f->nbuckets] <= s->buckets[f->nbuckets - 1])
			return -1;
		f->buckets[f->nbuckets] = s->buckets[f->nbuckets];
		le[fmt_value(le, s->buckets[f->nbuckets], f->scale)] = '\0';
		f->le[f->nbuckets] = xstrdup(le);
	}
	return 0;
}

static void	family_free(struct metric_family *);

struct metric_family *
metrics_family(const struct metric_spec *s)
{
	struct metric_family	*f;

	if (!name_valid(s->name) || metrics_find(s->name) != NULL ||
	    s->scale < 0 || s->scale > 9)
		return NULL;
	f = xcalloc(1, sizeof *f);
	f->name = xstrdup(s->name);
	f->help = xstrdup(s->help ? s->help : "");
	f->type = s->type;
	f->scale = s->scale;
	f->open = s->open;
	if (family_labels(f, s) == -1) {
		family_free(f);
		return NULL;
	}
	family_header(f);
	*families_tail = f;
	families_tail = &f->next;
	return f;
}

struct metric_family *
metrics_find(const char *name)
{
	for (struct metric_family *f = families; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static int
labelset_add(struct metric_labelset *ls, const char *v)
{
	if (ls->n == ls->size) {
		ls->size = ls->size ? ls->size * 2 : 8;
		ls->v = xrealloc(ls->v, (size_t)ls->size * sizeof *ls->v);
	}
	ls->v[ls->n] = xstrdup(v);
	if (strcmp(v, METRICS_OTHER) != 0)
		ls->nreal++;
	return ls->n++;
}

/*
 * The index of label i's value; a new value past the cap is "other".  -1
 * when it has none yet and create is false.
 */
static int
family_intern(struct metric_family *f, int i, const char *raw, bool create)
{
	struct metric_labelset	*ls = &f->values[i];
	char			 clean[METRICS_MAX_LABEL_BYTES + 1];
	const char		*v = label_clean(raw, clean);

	for (int k = 0; k < ls->n; k++)
		if (strcmp(ls->v[k], v) == 0)
			return k;
	if (((f->open & (1u << i)) && ls->nreal >= label_cap) ||
	    ls->nreal >= METRICS_MAX_VALUES) {
		for (int k = 0; k < ls->n; k++)
			if (strcmp(ls->v[k], METRICS_OTHER) == 0)
				return k;
		v = METRICS_OTHER;
	}
	return create ? labelset_add(ls, v) : -1;
}

static uint64_t
series_key(const uint16_t *idx)
{
	return (uint64_t)(idx[0] + 1) | (uint64_t)(idx[1] + 1) << 16 |
	    (uint64_t)(idx[2] + 1) << 32;
}

static size_t
hash_slot(const struct metric_family *f, uint64_t key)
{
	key *= 0x9e3779b97f4a7c15ull;
	return (size_t)(key >> 32) & (f->hashsize - 1);
}

static void
hash_insert(struct metric_family *f, size_t index)
{
	size_t	h = hash_slot(f, series_key(f->series[index]->idx));

	while (f->hash[h] != 0)
		h = (h + 1) & (f->hashsize - 1);
	f->hash[h] = (uint32_t)index + 1;
}

/* Keeps the table at most half full. */
static void
hash_grow(struct metric_family *f)
{
	if ((f->nseries + 1) * 2 <= f->hashsize)
		return;
	free(f->hash);
	f->hashsize = f->hashsize ? f->hashsize * 2 : 16;
	f->hash = xcalloc(f->hashsize, sizeof *f->hash);
	for (size_t i = 0; i < f->nseries; i++)
		hash_insert(f, i);
}

static struct metric_series *
series_new(struct metric_family *f, const uint16_t *idx)
{
	struct metric_series	*s = xcalloc(1, sizeof *s);
	struct buf		 b;

	memcpy(s->idx, idx, sizeof s->idx);
	buf_init(&b, 0);
	for (int i = 0; i < f->nlabels; i++) {
		buf_printf(&b, "%s%s=\"", i ? "," : "", f->label_names[i]);
		escape_add(&b, f->values[i].v[idx[i]], true);
		buf_addstr(&b, "\"");
	}
	s->labels_len = b.len;
	s->labels = b.len ? buf_release(&b) : (buf_free(&b), xstrdup(""));
	if (f->type == METRIC_HISTOGRAM)
		s->counts = xcalloc((size_t)f->nbuckets + 1, sizeof *s->counts);
	hash_grow(f);
	if (f->nseries == f->sizeseries) {
		f->sizeseries = f->sizeseries ? f->sizeseries * 2 : 8;
		f->series = xrealloc(f->series, f->sizeseries *
		    sizeof *f->series);
	}
	f->series[f->nseries] = s;
	hash_insert(f, f->nseries++);
	return s;
}

/* The series of these label values, made when first seen. */
static struct metric_series *
series_get(struct metric_family *f, const char *const *values, bool create)
{
	uint16_t	idx[METRICS_MAX_LABELS] = { 0, 0, 0 };
	size_t		h;
	uint32_t	k;
	int		v;

	for (int i = 0; i < f->nlabels; i++) {
		if ((v = family_intern(f, i, values[i], create)) == -1)
			return NULL;
		idx[i] = (uint16_t)v;
	}
	if (f->hashsize > 0)
		for (h = hash_slot(f, series_key(idx)); (k = f->hash[h]) != 0;
		    h = (h + 1) & (f->hashsize - 1))
			if (memcmp(f->series[k - 1]->idx, idx, sizeof idx) == 0)
				return f->series[k - 1];
	return create ? series_new(f, idx) : NULL;
}

/* a + b, held at the ends of int64_t: a worker's figures are untrusted. */
static int64_t
sat_add(int64_t a, int64_t b)
{
	int64_t	r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int64_t
sat_u64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

void
metrics_add(struct metric_family *f, const char *const *values, int64_t d)
{
	struct metric_series	*s;

	if (f == NULL || f->type == METRIC_HISTOGRAM)
		return;
	s = series_get(f, values, true);
	s->value = sat_add(s->value, d);
}

void
metrics_set(struct metric_family *f, const char *const *values, int64_t v)
{
	if (f != NULL && f->type != METRIC_HISTOGRAM)
		series_get(f, values, true)->value = v;
}

void
metrics_observe(struct metric_family *f, const char *const *values,
    int64_t v)
{
	struct metric_series	*s;
	int			 i;

	if (f == NULL || f->type != METRIC_HISTOGRAM)
		return;
	s = series_get(f, values, true);
	for (i = 0; i < f->nbuckets && v > f->buckets[i]; i++)
		;
	s->counts[i]++;
	s->count++;
	s->value = sat_add(s->value, v);
}

int64_t
metrics_value(struct metric_family *f, const char *const *values)
{
	struct metric_series	*s;

	if (f == NULL || (s = series_get(f, values, false)) == NULL)
		return 0;
	return f->type == METRIC_HISTOGRAM ? (int64_t)s->count : s->value;
}

size_t
metrics_samples(void)
{
	size_t	n = 0;

	for (struct metric_family *f = families; f != NULL; f = f->next)
		n += f->nseries * (f->type == METRIC_HISTOGRAM ?
		    (size_t)f->nbuckets + 3 : 1);
	return n;
}

static void
family_free(struct metric_family *f)
{
	for (size_t i = 0; i < f->nseries; i++) {
		free(f->series[i]->labels);
		free(f->series[i]->counts);
		free(f->series[i]);
	}
	for (int i = 0; i < METRICS_MAX_LABELS; i++) {
		for (int k = 0; k < f->values[i].n; k++)
			free(f->values[i].v[k]);
		free(f->values[i].v);
		free(f->label_names[i]);
	}
	for (int i = 0; i < METRICS_MAX_BUCKETS; i++)
		free(f->le[i]);
	free(f->series);
	free(f->hash);
	free(f->header);
	free(f->name);
	free(f->help);
	free(f);
}

/* ---- Rendering ---- */

/* The scrape is built here and appended in large pieces. */
struct render {
	struct evbuffer	*evb;
	size_t		 len;
	char		 buf[METRICS_OUT_SIZE];
};

static void
render_flush(struct render *r)
{
	evbuffer_add(r->evb, r->buf, r->len);
	r->len = 0;
}

static void
render_add(struct render *r, const char *s, size_t len)
{
	if (r->len + len > sizeof r->buf)
		render_flush(r);
	if (len > sizeof r->buf) {
		evbuffer_add(r->evb, s, len);
		return;
	}
	memcpy(r->buf + r->len, s, len);
	r->len += len;
}

/* name[suffix]{labels[,extra]} value\n; a line fits in METRICS_OUT_ROOM. */
static void
render_sample(struct render *r, const struct metric_family *f,
    const char *suffix, const struct metric_series *s, const char *le,
    int64_t value, int scale)
{
	char	*p;
	size_t	 n;

	if (r->len + METRICS_OUT_ROOM > sizeof r->buf)
		render_flush(r);
	p = r->buf + r->len;
	n = strlen(f->name);
	memcpy(p, f->name, n);
	for (; *suffix != '\0'; suffix++)
		p[n++] = *suffix;
	if (s->labels_len > 0 || le != NULL) {
		p[n++] = '{';
		memcpy(p + n, s->labels, s->labels_len);
		n += s->labels_len;
		if (le != NULL) {
			if (s->labels_len > 0)
				p[n++] = ',';
			memcpy(p + n, "le=\"", 4);
			n += 4;
			for (; *le != '\0'; le++)
				p[n++] = *le;
			p[n++] = '"';
		}
		p[n++] = '}';
	}
	p[n++] = ' ';
	n += fmt_value(p + n, value, scale);
	p[n++] = '\n';
	r->len += n;
}

static void
render_histogram(struct render *r, const struct metric_family *f,
    const struct metric_series *s)
{
	uint64_t	cum = 0;

	for (int i = 0; i < f->nbuckets; i++) {
		cum += s->counts[i];
		render_sample(r, f, "_bucket", s, f->le[i], (int64_t)cum, 0);
	}
	render_sample(r, f, "_bucket", s, "+Inf", (int64_t)s->count, 0);
	render_sample(r, f, "_sum", s, NULL, s->value, f->scale);
	render_sample(r, f, "_count", s, NULL, (int64_t)s->count, 0);
}

void
metrics_render(struct evbuffer *evb)
{
	static struct render	r;
	struct metric_series	*s;

	r.evb = evb;
	r.len = 0;
	for (struct metric_family *f = families; f != NULL; f = f->next) {
		render_add(&r, f->header, f->header_len);
		for (size_t i = 0; i < f->nseries; i++) {
			s = f->series[i];
			if (f->type == METRIC_HISTOGRAM)
				render_histogram(&r, f, s);
			else
				render_sample(&r, f, "", s, NULL, s->value,
				    f->scale);
		}
	}
	render_flush(&r);
	r.evb = NULL;
}

/* ---- heavyd's families ---- */

#define SECONDS	6	/* microseconds, rendered as seconds */
#define DOLLARS	6	/* micro-dollars, rendered as dollars */

static const struct {
	struct metric_family	**slot;
	struct metric_spec	  spec;
} heavyd_families[] = {
	{ &f_build, { "heavyd_build_info", "The heavyd version and the commit "
	    "it was built from; always 1.", METRIC_GAUGE, 0,
	    { "version", "commit" }, 0, { 0 } } },
	{ &f_tasks_started, { "heavyd_tasks_started_total", "Orchestrations "
	    "started (answers from the cache and refusals that became tasks "
	    "included), by the tool that started them.", METRIC_COUNTER, 0,
	    { "tool" }, 0, { 0 } } },
	{ &f_tasks_ended, { "heavyd_tasks_ended_total", "Orchestrations "
	    "ended, by tool and status (completed, failed, cancelled).",
	    METRIC_COUNTER, 0, { "tool", "status" }, 0, { 0 } } },
	{ &f_tasks_running, { "heavyd_tasks_running", "Orchestrations running "
	    "in this process now.", METRIC_GAUGE, 0, { NULL }, 0, { 0 } } },
	{ &f_budget_stops, { "heavyd_budget_stops_total", "Orchestrations "
	    "stopped by their token or cost budget.", METRIC_COUNTER, 0,
	    { "budget" }, 0, { 0 } } },
	{ &f_workers, { "heavyd_workers", "Worker processes, by state: queued "
	    "for a slot, spawning, running, finishing.", METRIC_GAUGE, 0,
	    { "state" }, 0, { 0 } } },
	{ &f_worker_exits, { "heavyd_worker_exits_total", "Workers ended, by "
	    "cause.", METRIC_COUNTER, 0, { "cause" }, 0, { 0 } } },
	{ &f_llm_requests, { "heavyd_llm_requests_total", "LLM HTTP requests "
	    "(each attempt; retry=\"true\" for a retry of a failed one), by "
	    "model and outcome: the status class, or why no status came.",
	    METRIC_COUNTER, 0, { "model", "outcome", "retry" }, 0x1, { 0 } } },
	{ &f_llm_duration, { "heavyd_llm_request_duration_seconds", "LLM HTTP "
	    "request durations, each attempt, by model.", METRIC_HISTOGRAM,
	    SECONDS, { "model" }, 0x1, { 50000, 100000, 250000, 500000,
	    1000000, 2500000, 5000000, 10000000, 20000000, 30000000, 60000000,
	    120000000, 300000000 } } },
	{ &f_llm_tokens, { "heavyd_llm_tokens_total", "Tokens the provider "
	    "reported, by model and kind (prompt, completion).",
	    METRIC_COUNTER, 0, { "model", "kind" }, 0x1, { 0 } } },
	{ &f_llm_cost, { "heavyd_llm_cost_usd_total", "Cost the provider "
	    "reported, in US dollars, by model.", METRIC_COUNTER, DOLLARS,
	    { "model" }, 0x1, { 0 } } },
	{ &f_llm_retries, { "heavyd_llm_retries_total", "LLM requests retried "
	    "after a failed attempt, by model.", METRIC_COUNTER, 0,
	    { "model" }, 0x1, { 0 } } },
	{ &f_llm_hedges, { "heavyd_llm_hedges_total", "LLM calls heavyd-egress "
	    "hedged (hedge_after_ms), by model and which transfer answered "
	    "(won: the hedge, lost: the first).", METRIC_COUNTER, 0,
	    { "model", "result" }, 0x1, { 0 } } },
	{ &f_http, { "heavyd_http_requests_total", "HTTP requests served, by "
	    "method and status code.", METRIC_COUNTER, 0, { "method", "code" },
	    0x3, { 0 } } },
	{ &f_sessions, { "heavyd_sessions", "MCP sessions open now.",
	    METRIC_GAUGE, 0, { NULL }, 0, { 0 } } },
	{ &f_sse, { "heavyd_sse_streams", "Server-sent event streams open "
	    "now.", METRIC_GAUGE, 0, { NULL }, 0, { 0 } } },
	{ &f_store_duration, { "heavyd_store_write_duration_seconds", "Task "
	    "store writes, by operation (insert, put, update, begin, commit, "
	    "sweep).",
	    METRIC_HISTOGRAM, SECONDS, { "op" }, 0, { 50, 100, 250, 500, 1000,
	    2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000 } } },
	{ &f_store_errors, { "heavyd_store_write_errors_total", "Task store "
	    "writes that failed, by operation.", METRIC_COUNTER, 0, { "op" },
	    0, { 0 } } },
	{ &f_spares, { "heavyd_zygote_spares", "Pre-forked workers the zygote "
	    "holds, as it last reported.", METRIC_GAUGE, 0, { NULL }, 0,
	    { 0 } } },
	{ &f_zygote_up, { "heavyd_zygote_up", "1 while the zygote that forks "
	    "workers is connected.", METRIC_GAUGE, 0, { NULL }, 0, { 0 } } },
	{ &f_zygote_restarts, { "heavyd_zygote_restarts_total", "Times the "
	    "zygote was lost and started again.", METRIC_COUNTER, 0, { NULL },
	    0, { 0 } } },
	{ &f_log_dropped, { "heavyd_log_lines_dropped_total", "Log lines "
	    "dropped rather than block the event loop.", METRIC_COUNTER, 0,
	    { NULL }, 0, { 0 } } },
	{ &f_store_connected, { "heavyd_store_connected", "1 while the "
	    "PostgreSQL task store is connected (absent with SQLite).",
	    METRIC_GAUGE, 0, { NULL }, 0, { 0 } } },
	{ &f_store_queued, { "heavyd_store_queued", "Queries held for the "
	    "PostgreSQL task store, sent or not, awaiting its answer.",
	    METRIC_GAUGE, 0, { NULL }, 0, { 0 } } },
	{ &f_egress_up, { "heavyd_egress_up", "1 while heavyd-egress, which "
	    "makes every upstream request, is connected.", METRIC_GAUGE, 0,
	    { NULL }, 0, { 0 } } },
	{ &f_egress_restarts, { "heavyd_egress_restarts_total", "Times "
	    "heavyd-egress was lost and started again.", METRIC_COUNTER, 0,
	    { NULL }, 0, { 0 } } },
	{ &f_egress_cancelled, { "heavyd_egress_cancelled_total", "Upstream "
	    "transfers heavyd-egress cancelled because their worker went away "
	    "(killed at its deadline, cancelled).", METRIC_COUNTER, 0,
	    { NULL }, 0, { 0 } } },
	{ &f_egress_breaker, { "heavyd_egress_breaker", "The circuit breaker "
	    "of each upstream heavyd-egress called, as it last reported: 1 for "
	    "its state now (closed, open, half-open), 0 for the others.",
	    METRIC_GAUGE, 0, { "upstream", "state" }, 0x1, { 0 } } },
};

static const char *const worker_states[] = { "queued", "spawning", "running",
	"finishing" };
static const char *const exit_causes[] = { "ok", "failed", "deadline",
	"cancel", "sigsys", "oom", "cpu_limit", "file_size_limit", "crash",
	"protocol_violation", "spawn_failed", "lost", "cut_for_latency" };

/* The series every scrape shows, at 0 until something happens. */
static void
metrics_zeros(void)
{
	for (size_t i = 0; i < sizeof worker_states / sizeof *worker_states; i++)
		metrics_add(f_workers, V(worker_states[i]), 0);
	for (size_t i = 0; i < sizeof exit_causes / sizeof *exit_causes; i++)
		metrics_add(f_worker_exits, V(exit_causes[i]), 0);
	metrics_add(f_budget_stops, V("tokens"), 0);
	metrics_add(f_budget_stops, V("cost"), 0);
	metrics_add(f_tasks_running, NULL, 0);
	metrics_add(f_sessions, NULL, 0);
	metrics_add(f_sse, NULL, 0);
	metrics_add(f_spares, NULL, 0);
	metrics_add(f_zygote_up, NULL, 0);
	metrics_add(f_zygote_restarts, NULL, 0);
	metrics_add(f_log_dropped, NULL, 0);
	metrics_add(f_egress_up, NULL, 0);
	metrics_add(f_egress_restarts, NULL, 0);
	metrics_add(f_egress_cancelled, NULL, 0);
}

void
metrics_init(int max_label_values, const char *commit)
{
	if (initialized)
		metrics_free();
	label_cap = max_label_values > 0 ? max_label_values :
	    METRICS_DEFAULT_LABEL_VALUES;
	for (size_t i = 0; i < sizeof heavyd_families /
	    sizeof *heavyd_families; i++)
		if ((*heavyd_families[i].slot = metrics_family(
		    &heavyd_families[i].spec)) == NULL)
			fatalx("metrics: bad family %s",
			    heavyd_families[i].spec.name);
	metrics_set(f_build, V(HEAVY_VERSION, commit ? commit : "unknown"), 1);
	metrics_zeros();
	initialized = true;
}

void
metrics_free(void)
{
	struct metric_family	*f;

	while ((f = families) != NULL) {
		families = f->next;
		family_free(f);
	}
	families_tail = &families;
	for (size_t i = 0; i < sizeof heavyd_families /
	    sizeof *heavyd_families; i++)
		*heavyd_families[i].slot = NULL;
	label_cap = METRICS_DEFAULT_LABEL_VALUES;
	initialized = false;
}

bool
metrics_enabled(void)
{
	return initialized;
}

/* ---- What heavyd counts (each a no-op before metrics_init) ---- */

void
metrics_task_started(const char *tool)
{
	metrics_add(f_tasks_started, V(tool ? tool : "unknown"), 1);
}

void
metrics_task_ended(const char *tool, const char *status)
{
	metrics_add(f_tasks_ended, V(tool ? tool : "unknown", status), 1);
}

void
metrics_tasks_running(int n)
{
	metrics_set(f_tasks_running, NULL, n);
}

void
metrics_budget_stop(const char *budget)
{
	metrics_add(f_budget_stops, V(budget), 1);
}

void
metrics_worker_move(const char *from, const char *to)
{
	if (from != NULL)
		metrics_add(f_workers, V(from), -1);
	if (to != NULL)
		metrics_add(f_workers, V(to), 1);
}

void
metrics_worker_exit(const char *cause)
{
	metrics_add(f_worker_exits, V(cause), 1);
}

void
metrics_llm_request(const struct metrics_llm *m)
{
	if (!initialized)
		return;
	metrics_add(f_llm_requests, V(m->model, m->outcome, m->retry ? "true" :
	    "false"), 1);
	metrics_observe(f_llm_duration, V(m->model), m->duration_us);
	metrics_add(f_llm_tokens, V(m->model, "prompt"),
	    sat_u64(m->prompt_tokens));
	metrics_add(f_llm_tokens, V(m->model, "completion"),
	    sat_u64(m->completion_tokens));
	metrics_add(f_llm_cost, V(m->model), sat_u64(m->cost_micro_usd));
	if (m->retries > 0)
		metrics_add(f_llm_retries, V(m->model), m->retries);
	if (m->hedged > m->hedges_won)
		metrics_add(f_llm_hedges, V(m->model, "lost"),
		    m->hedged - m->hedges_won);
	if (m->hedges_won > 0)
		metrics_add(f_llm_hedges, V(m->model, "won"), m->hedges_won);
}

void
metrics_store_write(const char *op, int64_t us, bool ok)
{
	metrics_observe(f_store_duration, V(op), us);
	if (!ok)
		metrics_add(f_store_errors, V(op), 1);
}

/* pgconn.c: the PostgreSQL store's link and the queries it holds. */
void
metrics_store_link(bool connected, int queued)
{
	metrics_set(f_store_connected, NULL, connected);
	metrics_set(f_store_queued, NULL, queued);
}

void
metrics_zygote_spares(int n)
{
	metrics_set(f_spares, NULL, n);
}

void
metrics_zygote_up(bool up)
{
	metrics_set(f_zygote_up, NULL, up);
}

void
metrics_zygote_restart(void)
{
	metrics_add(f_zygote_restarts, NULL, 1);
}

void
metrics_egress_up(bool up)
{
	metrics_set(f_egress_up, NULL, up);
}

void
metrics_egress_restart(void)
{
	metrics_add(f_egress_restarts, NULL, 1);
}

void
metrics_egress_breaker(const char *upstream, const char *state)
{
	static const char *const states[] = { "closed", "open", "half-open" };

	for (size_t i = 0; i < sizeof states / sizeof *states; i++)
		metrics_set(f_egress_breaker, V(upstream, states[i]),
		    strcmp(states[i], state) == 0);
}

void
metrics_egress_cancelled(uint64_t n)
{
	metrics_add(f_egress_cancelled, NULL, (int64_t)n);
}

void
metrics_http_request(const char *method, int code)
{
	char	c[16];

	if (!initialized)
		return;
	snprintf(c, sizeof c, "%d", code);
	metrics_add(f_http, V(method, c), 1);
}

void
metrics_sessions(int n)
{
	metrics_set(f_sessions, NULL, n);
}

void
metrics_sse_streams(int n)
{
	metrics_set(f_sse, NULL, n);
}

void
metrics_log_dropped(uint64_t total)
{
	metrics_set(f_log_dropped, NULL, sat_u64(total));
}

/*
 * What every task store backend shares: the identity of this process in a
 * row (pid, start time, boot id: a pid alone is reused), how a row whose
 * process died is settled, and the rows' memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"

static char	 self_start[96];	/* starttime@boot_id of this process */
static store_resume_fn store_resume_fn_set;	/* NULL: none resumed */

const char store_interrupted[] = "interrupted by restart: the heavyd "
	"process that ran this task is gone";

/* "starttime@boot_id" of a process, or "" when it is gone (a zombie is
 * gone: it runs nothing, and its parent has yet to reap it). */
void
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

/* Once, before the rows of this process are written. */
void
store_self_init(void)
{
	store_proc_start(getpid(), self_start, sizeof self_start);
}

const char *
store_self_start(void)
{
	return self_start;
}

bool
store_proc_alive(pid_t pid, const char *start)
{
	char	now[96];

	if (start == NULL)
		return false;
	if (pid == getpid())
		return strcmp(start, self_start) == 0;
	store_proc_start(pid, now, sizeof now);
	return now[0] != '\0' && strcmp(now, start) == 0;
}

static char *
dup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

void
store_progress_copy(struct store_progress *to,
    const struct store_progress *from)
{
	const struct store_agent	*f;
	struct store_agent		*a;

	*to = *from;
	to->phase = dup_or_null(from->phase);
	to->draft.text = dup_or_null(from->draft.text);
	to->agents = from->nagents > 0 ? xcalloc((size_t)from->nagents,
	    sizeof *to->agents) : NULL;
	for (int i = 0; i < from->nagents; i++) {
		f = &from->agents[i];
		a = &to->agents[i];
		*a = *f;
		a->question = dup_or_null(f->question);
		a->status = dup_or_null(f->status);
		a->step = dup_or_null(f->step);
		a->error = dup_or_null(f->error);
		a->answer = dup_or_null(f->answer);
	}
}

void
store_progress_clear(struct store_progress *p)
{
	for (int i = 0; i < p->nagents; i++) {
		free(p->agents[i].question);
		free(p->agents[i].status);
		free(p->agents[i].step);
		free(p->agents[i].error);
		free(p->agents[i].answer);
	}
	free(p->agents);
	free(p->phase);
	free(p->draft.text);
	memset(p, 0, sizeof *p);
}

/* The progress of a task that stopped (how: cancelled, interrupted):
 * that is its phase, and what was under way stopped so too. */
void
store_progress_stop(struct store_progress *p, const char *how)
{
	struct store_agent	*a;

	config_set_str(&p->phase, how);
	for (int i = 0; i < p->nagents; i++) {
		a = &p->agents[i];
		if (a->status != NULL && (strcmp(a->status, "pending") == 0 ||
		    strcmp(a->status, "running") == 0))
			config_set_str(&a->status, how);
	}
}

void
store_task_copy(struct store_task *to, const struct store_task *from)
{
	*to = *from;
	to->owner = dup_or_null(from->owner);
	to->tool = dup_or_null(from->tool);
	to->status = dup_or_null(from->status);
	to->status_message = dup_or_null(from->status_message);
	to->params = dup_or_null(from->params);
	to->query = dup_or_null(from->query);
	store_args_copy(&to->args, &from->args);
	store_progress_copy(&to->progress, &from->progress);
	to->result = taskresult_copy(from->result);
	to->cache_key = dup_or_null(from->cache_key);
}

void
store_task_clear(struct store_task *t)
{
	free(t->owner);
	free(t->tool);
	free(t->status);
	free(t->status_message);
	free(t->params);
	free(t->query);
	store_args_clear(&t->args);
	store_progress_clear(&t->progress);
	taskresult_free(t->result);
	free(t->cache_key);
	memset(t, 0, sizeof *t);
}

/* A row whose process died mid-task, as every backend settles it: failed,
 * with that reason and no result (the reason is what a reader is told);
 * its last progress says what was under way stopped.  A row that recorded
 * no progress keeps none. */
void
store_task_interrupt(struct store_task *t)
{
	if (t->progress.phase != NULL)
		store_progress_stop(&t->progress, "interrupted");
	config_set_str(&t->status, "failed");
	config_set_str(&t->status_message, store_interrupted);
	t->updated_ms = wall_ms();
	t->orphaned = false;
}

void
store_args_copy(struct store_args *to, const struct store_args *from)
{
	*to = *from;
	to->model = dup_or_null(from->model);
	to->strategy = dup_or_null(from->strategy);
	to->fallbacks = NULL;
	if (from->nfallbacks > 0) {
		to->fallbacks = xcalloc((size_t)from->nfallbacks + 1,
		    sizeof *to->fallbacks);
		for (int i = 0; i < from->nfallbacks; i++)
			to->fallbacks[i] = xstrdup(from->fallbacks[i]);
	}
}

void
store_args_clear(struct store_args *a)
{
	free(a->model);
	free(a->strategy);
	for (int i = 0; i < a->nfallbacks; i++)
		free(a->fallbacks[i]);
	free(a->fallbacks);
	memset(a, 0, sizeof *a);
}

/*
 * Whether an orphaned row (its runner died mid-task) is resumed rather
 * than failed: someone here resumes tasks, the row has its arguments (an
 * orchestration of a heavyd that keeps them), asked to be, and its
 * deadline has not passed (now: the wall clock).
 */
bool
store_resumable(const struct store_task *t, int64_t now)
{
	return store_resume_fn_set != NULL && t->args.set && t->args.resume &&
	    t->args.deadline_ms > now && t->num_agents > 0 &&
	    t->query != NULL;
}

void
store_resume(store_resume_fn fn)
{
	store_resume_fn_set = fn;
}

bool
store_resuming(void)
{
	return store_resume_fn_set != NULL;
}

/* The backend has claimed the row for this process: resume it. */
void
store_resume_tell(const struct store_task *t, const char *from,
    const char *why)
{
	if (store_resume_fn_set != NULL)
		store_resume_fn_set(t, from, why);
}

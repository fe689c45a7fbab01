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
store_task_copy(struct store_task *to, const struct store_task *from)
{
	*to = *from;
	to->owner = dup_or_null(from->owner);
	to->tool = dup_or_null(from->tool);
	to->status = dup_or_null(from->status);
	to->status_message = dup_or_null(from->status_message);
	to->params = dup_or_null(from->params);
	to->agents = dup_or_null(from->agents);
	to->result = dup_or_null(from->result);
	to->usage = dup_or_null(from->usage);
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
	free(t->agents);
	free(t->result);
	free(t->usage);
	free(t->cache_key);
	memset(t, 0, sizeof *t);
}

/* The last progress of an interrupted task: what was under way stopped. */
static char *
store_interrupted_agents(const char *agents)
{
	struct json_object	*o, *list, *a;
	const char		*st;
	char			*out;

	if (agents == NULL || (o = json_tokener_parse(agents)) == NULL)
		return NULL;
	if (!json_object_is_type(o, json_type_object)) {	/* damaged */
		json_object_put(o);
		return NULL;
	}
	json_object_object_add(o, "phase", json_object_new_string(
	    "interrupted"));
	if (json_object_object_get_ex(o, "agents", &list) &&
	    json_object_is_type(list, json_type_array))
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			a = json_object_array_get_idx(list, i);
			if (!json_object_is_type(a, json_type_object))
				continue;
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

/* A row whose process died mid-task, as every backend settles it: failed,
 * with that reason and no result (the reason is what a reader is told). */
void
store_task_interrupt(struct store_task *t)
{
	char	*agents;

	if ((agents = store_interrupted_agents(t->agents)) != NULL) {
		free(t->agents);
		t->agents = agents;
	}
	config_set_str(&t->status, "failed");
	config_set_str(&t->status_message, store_interrupted);
	t->updated_ms = wall_ms();
	t->orphaned = false;
}

/*
 * max_workers: auto.  The worker table is sized from what this host lets
 * heavyd have: its cgroup's memory.max and pids.max (cgroup v2, the
 * tightest of its cgroup and every ancestor) when set, else the physical
 * memory and the kernel's and the user's process limits.  Half of each
 * goes to workers, the rest stays for the supervisor, the zygote, the
 * page cache and whatever else runs there.
 */
#include <sys/resource.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define CAPACITY_MIN		8	/* one 4-agent task and its planner */
#define CAPACITY_MAX		65535	/* the worker table's slot field */
#define CAPACITY_FALLBACK	256	/* nothing known about the host */

/* A cgroup or /proc limit file: a number, or "max" (none: UINT64_MAX);
 * 0 when unreadable. */
uint64_t
capacity_parse_limit(const char *text)
{
	unsigned long long	 n;
	char			*end;

	if (strncmp(text, "max", 3) == 0 && (text[3] == '\0' ||
	    text[3] == '\n'))
		return UINT64_MAX;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno != 0 || end == text || (*end != '\0' && *end != '\n'))
		return 0;
	return (uint64_t)n;
}

static uint64_t
capacity_read(const char *path)
{
	char	buf[64];
	FILE	*f = fopen(path, "re");
	size_t	n;

	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return capacity_parse_limit(buf);
}

/* The cgroup v2 path in /proc/self/cgroup's text ("0::/a/b"), or NULL. */
const char *
capacity_cgroup_path(const char *text, char *buf, size_t len)
{
	const char	*p = text;

	for (; p != NULL && *p != '\0'; p = strchr(p, '\n'), p += p != NULL) {
		if (strncmp(p, "0::/", 4) != 0)
			continue;
		if (snprintf(buf, len, "%.*s", (int)strcspn(p + 3, "\n"),
		    p + 3) >= (int)len)
			return NULL;
		return buf;
	}
	return NULL;
}

/* The tightest of a limit file over the cgroup and its ancestors. */
static uint64_t
capacity_cgroup_limit(const char *cgroup, const char *file)
{
	char		 dir[1024], path[1200], *slash;
	uint64_t	 v, min = 0;

	snprintf(dir, sizeof dir, "%s", cgroup);
	for (;;) {
		snprintf(path, sizeof path, "/sys/fs/cgroup%s/%s",
		    strcmp(dir, "/") == 0 ? "" : dir, file);
		v = capacity_read(path);
		if (v != 0 && v != UINT64_MAX && (min == 0 || v < min))
			min = v;
		if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
			break;
		*slash = '\0';
	}
	return min;
}

static void
capacity_probe_cgroup(struct capacity_host *h)
{
	char		 text[4096], buf[1024];
	const char	*cg;
	FILE		*f;
	size_t		 n;
	uint64_t	 v;

	if ((f = fopen("/proc/self/cgroup", "re")) == NULL)
		return;
	n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	if ((cg = capacity_cgroup_path(text, buf, sizeof buf)) == NULL ||
	    access("/sys/fs/cgroup/cgroup.controllers", F_OK) == -1)
		return;
	if ((v = capacity_cgroup_limit(cg, "memory.max")) != 0 &&
	    (h->mem_bytes == 0 || v < h->mem_bytes)) {
		h->mem_bytes = v;
		h->mem_from = "cgroup memory.max";
	}
	if ((v = capacity_cgroup_limit(cg, "pids.max")) != 0 &&
	    (h->pids == 0 || v < h->pids)) {
		h->pids = v;
		h->pids_from = "cgroup pids.max";
	}
}

/* What the host lets heavyd have: physical memory and the kernel's and
 * the user's process limits, then a tighter cgroup's. */
void
capacity_probe(struct capacity_host *h)
{
	long		pages = sysconf(_SC_PHYS_PAGES);
	long		psize = sysconf(_SC_PAGESIZE);
	struct rlimit	rl;
	uint64_t	v;

	memset(h, 0, sizeof *h);
	if (pages > 0 && psize > 0) {
		h->mem_bytes = (uint64_t)pages * (uint64_t)psize;
		h->mem_from = "physical memory";
	}
	if ((v = capacity_read("/proc/sys/kernel/pid_max")) != 0) {
		h->pids = v;
		h->pids_from = "kernel.pid_max";
	}
	if ((v = capacity_read("/proc/sys/kernel/threads-max")) != 0 &&
	    (h->pids == 0 || v < h->pids)) {
		h->pids = v;
		h->pids_from = "kernel.threads-max";
	}
	if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (h->pids == 0 || rl.rlim_cur < h->pids)) {
		h->pids = rl.rlim_cur;
		h->pids_from = "RLIMIT_NPROC";
	}
	capacity_probe_cgroup(h);
}

/*
 * The worker count for a host: half its memory at cost bytes a worker,
 * and half its pids, whichever is less, within [8, 65535]; why says how,
 * for the startup log and --check-config.
 */
int
capacity_workers(const struct capacity_host *h, size_t cost, char *why,
    size_t len)
{
	uint64_t	by_mem = UINT64_MAX, by_pids = UINT64_MAX, n;
	int		off = 0;

	why[0] = '\0';
	if (h->mem_bytes > 0 && cost > 0) {
		by_mem = h->mem_bytes / 2 / cost;
		off = snprintf(why, len, "half of %llu MiB (%s) at %zu KiB a "
		    "worker: %llu", (unsigned long long)(h->mem_bytes >> 20),
		    h->mem_from, cost >> 10, (unsigned long long)by_mem);
	}
	if (h->pids > 0 && (size_t)off < len) {
		by_pids = h->pids / 2;
		off += snprintf(why + off, len - (size_t)off, "%shalf of %llu "
		    "pids (%s): %llu", off ? "; " : "",
		    (unsigned long long)h->pids, h->pids_from,
		    (unsigned long long)by_pids);
	}
	n = by_mem < by_pids ? by_mem : by_pids;
	if (n == UINT64_MAX) {
		snprintf(why, len, "nothing known of the host's memory or "
		    "pids: %d", CAPACITY_FALLBACK);
		return CAPACITY_FALLBACK;
	}
	return n < CAPACITY_MIN ? CAPACITY_MIN : n > CAPACITY_MAX ?
	    CAPACITY_MAX : (int)n;
}

/* max_workers auto (0): sized now, once, with how. */
void
config_resolve_workers(struct heavy_config *c)
{
	struct capacity_host	h;

	if (c->max_workers != 0)
		return;
	capacity_probe(&h);
	c->max_workers = capacity_workers(&h, c->worker_cost,
	    c->max_workers_why, sizeof c->max_workers_why);
}

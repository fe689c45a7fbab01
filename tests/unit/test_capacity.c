/*
 * max_workers auto: the sizing from a host's memory and pids (fake hosts),
 * the limit files' parser, /proc/self/cgroup's v2 line, and the knob's
 * "auto" in the environment and the file.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"

#define MiB	((uint64_t)1 << 20)
#define GiB	((uint64_t)1 << 30)

static int
size_for(uint64_t mem, uint64_t pids, size_t cost, char *why, size_t len)
{
	struct capacity_host	h = { mem, "cgroup memory.max", pids,
	    "cgroup pids.max" };

	return capacity_workers(&h, cost, why, len);
}

Test(capacity, memory_bound)
{
	char	why[192];

	/* 4 GiB, half of it at 1 MiB each: 2048; pids allow 50,000. */
	cr_assert_eq(size_for(4 * GiB, 100000, MiB, why, sizeof why), 2048);
	cr_assert(strstr(why, "half of 4096 MiB (cgroup memory.max) at 1024 "
	    "KiB a worker: 2048") != NULL, "%s", why);
	cr_assert(strstr(why, "half of 100000 pids (cgroup pids.max): 50000")
	    != NULL, "%s", why);
	/* The measured 200 KB of a waiting worker would allow five times as
	 * many: the cost is what sizes it. */
	cr_assert_eq(size_for(4 * GiB, 100000, 200 << 10, why, sizeof why),
	    10485);
}

Test(capacity, pids_bound)
{
	char	why[192];

	cr_assert_eq(size_for(64 * GiB, 1000, MiB, why, sizeof why), 500);
	cr_assert_eq(size_for(64 * GiB, 4096, MiB, why, sizeof why), 2048);
}

Test(capacity, clamped_to_the_table)
{
	char	why[192];

	/* A tiny cgroup still runs one task; a huge host stops at the
	 * table's 16-bit slot field. */
	cr_assert_eq(size_for(8 * MiB, 100000, MiB, why, sizeof why), 8);
	cr_assert_eq(size_for(1024 * GiB, 4194304, MiB, why, sizeof why),
	    65535);
}

Test(capacity, unknown_parts)
{
	struct capacity_host	none = { 0 }, mem_only = { 2 * GiB,
	    "physical memory", 0, NULL };
	char			why[192];

	cr_assert_eq(capacity_workers(&none, MiB, why, sizeof why), 256);
	cr_assert(strstr(why, "nothing known") != NULL, "%s", why);
	cr_assert_eq(capacity_workers(&mem_only, MiB, why, sizeof why), 1024);
	cr_assert(strstr(why, "pids") == NULL, "%s", why);
}

Test(capacity, limit_files)
{
	cr_assert_eq(capacity_parse_limit("max\n"), UINT64_MAX);
	cr_assert_eq(capacity_parse_limit("max"), UINT64_MAX);
	cr_assert_eq(capacity_parse_limit("536870912\n"), 536870912);
	cr_assert_eq(capacity_parse_limit("32768"), 32768);
	cr_assert_eq(capacity_parse_limit(""), 0);
	cr_assert_eq(capacity_parse_limit("maximum"), 0);
	cr_assert_eq(capacity_parse_limit("12 kB"), 0);
}

Test(capacity, cgroup_v2_line)
{
	char	buf[256];

	cr_assert_str_eq(capacity_cgroup_path("0::/system.slice/heavyd."
	    "service\n", buf, sizeof buf), "/system.slice/heavyd.service");
	cr_assert_str_eq(capacity_cgroup_path("4:memory:/a\n1:cpu:/\n0::/\n",
	    buf, sizeof buf), "/");
	/* cgroup v1 only: nothing to read. */
	cr_assert_null(capacity_cgroup_path("4:memory:/a\n1:cpu:/\n", buf,
	    sizeof buf));
	cr_assert_null(capacity_cgroup_path("0::/far/too/long/a/path", buf,
	    8));
}

Test(capacity, auto_and_numbers)
{
	struct heavy_config	c;
	char			err[256];

	config_defaults(&c);
	cr_assert_eq(c.max_workers, 0, "auto is the default");
	cr_assert_eq(config_set_knob_named(&c, "max_workers", "300", err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(c.max_workers, 300);
	config_resolve_workers(&c);
	cr_assert_eq(c.max_workers, 300, "an explicit number stays");
	cr_assert_str_eq(c.max_workers_why, "");
	cr_assert_eq(config_set_knob_named(&c, "max_workers", "auto", err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(c.max_workers, 0);
	config_resolve_workers(&c);
	cr_assert(c.max_workers >= 8 && c.max_workers <= 65535);
	cr_assert(strstr(c.max_workers_why, "half of") != NULL, "%s",
	    c.max_workers_why);
	cr_assert_eq(config_set_knob_named(&c, "max_workers", "0", err,
	    sizeof err), -1, "0 is not auto");
	cr_assert(strstr(err, "or auto") != NULL, "%s", err);
	config_clear(&c);
}

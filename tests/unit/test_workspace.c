/*
 * Task workspaces under the state directory: created private, kept after
 * their task, swept after the TTL without following links out of them;
 * and where the state directory and the search settings come from.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"

#define ID_A	"0123456789abcdef0123456789abcdef"
#define ID_B	"fedcba9876543210fedcba9876543210"

static char	top[256], state[PATH_MAX];

static void
setup(void)
{
	unit_tmp(top, sizeof top, "heavyd-ws");
	cr_assert_not_null(mkdtemp(top));
	snprintf(state, sizeof state, "%s/a/b/state", top);
}

static void
teardown(void)
{
	char	cmd[PATH_MAX + 32];

	workspace_close();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
	cr_assert_eq(system(cmd), 0);
}

static void
touch(const char *path, const char *data)
{
	FILE	*f = fopen(path, "w");

	cr_assert_not_null(f, "%s", path);
	fputs(data, f);
	fclose(f);
}

static void
age(const char *path, time_t when)
{
	struct timespec	ts[2] = { { when, 0 }, { when, 0 } };

	cr_assert_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0,
	    "%s", path);
}

static bool
exists(const char *path)
{
	struct stat	st;

	return lstat(path, &st) == 0;
}

TestSuite(workspace, .init = setup, .fini = teardown);

Test(workspace, state_and_workspaces_are_private)
{
	struct stat	 st;
	char		 err[512], p[PATH_MAX * 2], *ws;

	cr_assert_eq(workspace_open(state, 3600, err, sizeof err), 0, "%s", err);
	cr_assert_eq(stat(state, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	snprintf(p, sizeof p, "%s/workspaces", state);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	ws = workspace_create(ID_A, err, sizeof err);
	cr_assert_not_null(ws, "%s", err);
	snprintf(p, sizeof p, "%s/workspaces/" ID_A, state);
	cr_assert_str_eq(ws, p, "an absolute path");
	cr_assert_eq(stat(ws, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_null(workspace_create(ID_A, err, sizeof err), "reused");
	cr_assert(strstr(err, "File exists"), "%s", err);
	free(ws);
}

Test(workspace, a_state_dir_that_cannot_be_made_is_an_error)
{
	char	err[512], p[PATH_MAX * 2];

	snprintf(p, sizeof p, "%s/file", top);
	touch(p, "x");
	snprintf(p, sizeof p, "%s/file/state", top);
	cr_assert_eq(workspace_open(p, 3600, err, sizeof err), -1);
	cr_assert(strstr(err, "state directory") && strstr(err, "Not a "
	    "directory"), "%s", err);
	cr_assert_null(workspace_create(ID_A, err, sizeof err));
	cr_assert_str_eq(err, "no state directory");
}

Test(workspace, an_ended_task_keeps_its_files_an_empty_workspace_goes)
{
	char	err[512], p[PATH_MAX * 2], *a, *b;

	cr_assert_eq(workspace_open(state, 3600, err, sizeof err), 0, "%s", err);
	a = workspace_create(ID_A, err, sizeof err);
	b = workspace_create(ID_B, err, sizeof err);
	snprintf(p, sizeof p, "%s/notes.txt", a);
	touch(p, "keep me");
	age(a, 1000);
	workspace_release(ID_A);
	workspace_release(ID_B);
	cr_assert(exists(p), "the user's files were removed with the task");
	cr_assert(!exists(b), "an empty workspace was kept");
	{
		struct stat	st;

		cr_assert_eq(stat(a, &st), 0);
		cr_assert_geq(st.st_mtime, time(NULL) - 60,
		    "the TTL counts from the task's end");
	}
	free(a);
	free(b);
}

Test(workspace, temporaries_of_killed_writes_go_when_the_task_ends)
{
	char	err[512], p[PATH_MAX * 2], *a, *b;

	cr_assert_eq(workspace_open(state, 3600, err, sizeof err), 0, "%s", err);
	a = workspace_create(ID_A, err, sizeof err);
	snprintf(p, sizeof p, "%s/d", a);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/d/" TOOL_TMP_PREFIX "0123456789abcdef", a);
	touch(p, "half");
	snprintf(p, sizeof p, "%s/" TOOL_TMP_PREFIX "mine", a);
	touch(p, "the user's");
	b = workspace_create(ID_B, err, sizeof err);
	snprintf(p, sizeof p, "%s/" TOOL_TMP_PREFIX "fedcba9876543210", b);
	touch(p, "half");
	workspace_release(ID_A);
	workspace_release(ID_B);
	snprintf(p, sizeof p, "%s/d/" TOOL_TMP_PREFIX "0123456789abcdef", a);
	cr_assert(!exists(p), "a temporary outlived its task");
	snprintf(p, sizeof p, "%s/" TOOL_TMP_PREFIX "mine", a);
	cr_assert(exists(p), "a file that only looks like one was removed");
	cr_assert(!exists(b), "a workspace with only a temporary was kept");
	free(a);
	free(b);
}

Test(workspace, the_sweep_removes_old_trees_without_following_links)
{
	char	err[512], p[PATH_MAX * 2], keep[PATH_MAX + 16];
	char	target[PATH_MAX + 32], *old, *live;
	time_t	now = time(NULL);

	cr_assert_eq(workspace_open(state, 3600, err, sizeof err), 0, "%s", err);
	/* Outside the state directory: what links in a workspace lead to. */
	snprintf(keep, sizeof keep, "%s/precious", top);
	cr_assert_eq(mkdir(keep, 0700), 0);
	snprintf(p, sizeof p, "%s/file.txt", keep);
	touch(p, "precious");

	old = workspace_create(ID_A, err, sizeof err);
	snprintf(p, sizeof p, "mkdir -p '%s/d/e/f'", old);
	cr_assert_eq(system(p), 0);
	snprintf(p, sizeof p, "%s/d/e/f/g.txt", old);
	touch(p, "g");
	snprintf(p, sizeof p, "%s/to_dir", old);
	cr_assert_eq(symlink(keep, p), 0);
	snprintf(p, sizeof p, "%s/d/to_file", old);
	snprintf(target, sizeof target, "%s/file.txt", keep);
	cr_assert_eq(symlink(target, p), 0);
	workspace_release(ID_A);
	age(old, now - 7200);

	live = workspace_create(ID_B, err, sizeof err);	/* a running task */
	age(live, now - 7200);
	snprintf(p, sizeof p, "%s/workspaces/not-a-task", state);
	cr_assert_eq(mkdir(p, 0700), 0);
	age(p, now - 7200);

	cr_assert_eq(workspace_sweep(now), 1);
	cr_assert(!exists(old), "an expired workspace was kept");
	cr_assert(exists(live), "a running task's workspace was removed");
	cr_assert(exists(p), "a directory heavyd did not make was removed");
	snprintf(p, sizeof p, "%s/file.txt", keep);
	cr_assert(exists(p), "the sweep followed a link out of the workspace");
	cr_assert_eq(workspace_sweep(now), 0);
	free(old);
	free(live);
}

Test(workspace, young_workspaces_stay)
{
	char	err[512], p[PATH_MAX * 2], *a;

	cr_assert_eq(workspace_open(state, 60, err, sizeof err), 0, "%s", err);
	a = workspace_create(ID_A, err, sizeof err);
	snprintf(p, sizeof p, "%s/x", a);
	touch(p, "x");
	workspace_release(ID_A);
	cr_assert_eq(workspace_sweep(time(NULL) + 30), 0);
	cr_assert(exists(a));
	cr_assert_eq(workspace_sweep(time(NULL) + 61), 1);
	cr_assert(!exists(a));
	free(a);
}

static const char *
resolved(void)
{
	static char		out[512];
	struct heavy_config	c;
	char			err[256];

	config_defaults(&c);
	if (config_resolve_state_dir(&c, err, sizeof err) == -1)
		snprintf(out, sizeof out, "error: %s", err);
	else
		snprintf(out, sizeof out, "%s", c.state_dir);
	config_clear(&c);
	return out;
}

Test(workspace, where_the_state_directory_comes_from)
{
	struct heavy_config	c;
	char			err[256];

	unsetenv("STATE_DIRECTORY");
	unsetenv("XDG_STATE_HOME");
	setenv("HOME", "/home/u", 1);
	cr_assert_str_eq(resolved(), "/home/u/.local/state/heavyd");
	setenv("XDG_STATE_HOME", "relative/ignored", 1);
	cr_assert_str_eq(resolved(), "/home/u/.local/state/heavyd");
	setenv("XDG_STATE_HOME", "/xdg", 1);
	cr_assert_str_eq(resolved(), "/xdg/heavyd");
	setenv("STATE_DIRECTORY", "/var/lib/heavyd:/var/lib/other", 1);
	cr_assert_str_eq(resolved(), "/var/lib/heavyd");
	unsetenv("STATE_DIRECTORY");
	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	cr_assert(strstr(resolved(), "error: no state directory: HOME is not "
	    "set"), "%s", resolved());
	/* HEAVY_STATE_DIR (like --state-dir and the file) wins. */
	setenv("STATE_DIRECTORY", "/var/lib/heavyd", 1);
	setenv("HEAVY_STATE_DIR", "/srv/heavy", 1);
	config_defaults(&c);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0);
	cr_assert_eq(config_resolve_state_dir(&c, err, sizeof err), 0);
	cr_assert_str_eq(c.state_dir, "/srv/heavy");
	config_clear(&c);
}

static int
load(const char *yaml, struct heavy_config *c, char *err)
{
	char	path[256];
	int	fd, rc;

	unit_tmp(path, sizeof path, "heavyd-wsconf");
	cr_assert_neq(fd = mkstemp(path), -1);
	cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	config_defaults(c);
	rc = config_load_file(c, path, err, 512);
	if (rc == 0)
		rc = config_check(c, err, 512);
	unlink(path);
	return rc;
}

Test(workspace, search_and_state_keys_in_the_file)
{
	struct heavy_config	c;
	char			err[512];

	unsetenv("HEAVY_SEARCH_API_KEY");
	cr_assert_eq(load("state_dir: /srv/st\nsearch:\n  backend: brave\n"
	    "  api_key: k\n  allow_private: true\n  max_results: 7\n"
	    "limits:\n  task_ttl: 120\n  max_read_bytes: 2048\n", &c, err), 0,
	    "%s", err);
	cr_assert_str_eq(c.state_dir, "/srv/st");
	cr_assert_str_eq(c.search_backend, "brave");
	cr_assert_str_eq(c.search_url, HEAVY_DEFAULT_BRAVE_URL);
	cr_assert_str_eq(c.search_api_key, "k");
	cr_assert_eq(c.search_allow_private, 1);
	cr_assert_eq(c.task_ttl_s, 120);
	cr_assert_eq(c.max_read_bytes, 2048);
	config_clear(&c);

	cr_assert_eq(load("search:\n  backend: none\n", &c, err), 0, "%s", err);
	cr_assert_null(c.search_backend);
	config_clear(&c);

	cr_assert_eq(load("search:\n  backend: bing\n", &c, err), -1);
	cr_assert(strstr(err, ":2: search.backend: expected searxng, brave or "
	    "none"), "%s", err);
	config_clear(&c);
	cr_assert_eq(load("search:\n  allow_private: maybe\n", &c, err), -1);
	cr_assert(strstr(err, ":2: search.allow_private: expected true or "
	    "false"), "%s", err);
	config_clear(&c);
	cr_assert_eq(load("limits:\n  task_ttl: 59\n", &c, err), -1);
	cr_assert(strstr(err, "task_ttl: expected an integer from 60 to "
	    "2592000"), "%s", err);
	config_clear(&c);
	cr_assert_eq(load("search:\n  backend: searxng\n", &c, err), -1);
	cr_assert(strstr(err, "search.url: the searxng backend needs"), "%s",
	    err);
	config_clear(&c);
}

Test(workspace, tasks_never_copy_the_search_key)
{
	struct heavy_config	c, *d;

	config_defaults(&c);
	config_set_str(&c.search_backend, "brave");
	config_set_str(&c.search_api_key, "secret");
	config_set_str(&c.search_api_key_file, "/k");
	d = config_dup(&c);
	cr_assert_str_eq(d->search_backend, "brave");
	cr_assert_null(d->search_api_key);
	cr_assert_null(d->search_api_key_file);
	config_free(d);
	config_clear(&c);
}

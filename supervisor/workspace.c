/*
 * Task workspaces: <state_dir>/workspaces/<task id>, one directory (0700)
 * per task, the root that read_file and write_file cannot leave.  The
 * files are the user's, so a workspace outlives its task; it is removed
 * once it has been left alone for the task TTL.  The sweep never follows
 * a symbolic link and never crosses a mount point.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/linkhash.h>

#include "supervisor.h"

#define WORKSPACE_NOPENFD	16	/* fds nftw may hold while it removes */

static char		*ws_root;	/* absolute <state_dir>/workspaces */
static int		 ws_uid = -1, ws_gid = -1;	/* owner of new ones */
static int		 ws_fd = -1;
static int		 ws_ttl_s;
static struct lh_table	*ws_active;	/* ids of tasks still running */
static struct event	*ws_timer;

/* mkdir -p, each missing directory 0700 (the XDG spec's mode). */
static int
workspace_mkdirs(const char *path)
{
	char	*p = xstrdup(path), *s, c;
	int	 rc = 0;

	for (s = p + 1; rc == 0; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, 0700) == -1 && errno != EEXIST)
			rc = -1;
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

static void
workspace_free_entry(struct lh_entry *e)
{
	free(lh_entry_k(e));
}

/* Creates the state directory and its workspaces/; -1 with err set. */
int
workspace_open(const char *state_dir, int ttl_s, char *err, size_t errlen)
{
	char	real[PATH_MAX];
	int	dfd;

	if (workspace_mkdirs(state_dir) == -1 ||
	    realpath(state_dir, real) == NULL ||
	    (dfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "state directory %s: %s", state_dir,
		    strerror(errno));
		return -1;
	}
	if ((mkdirat(dfd, "workspaces", 0700) == -1 && errno != EEXIST) ||
	    (ws_fd = openat(dfd, "workspaces", O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "state directory %s/workspaces: %s", real,
		    strerror(errno));
		close(dfd);
		return -1;
	}
	close(dfd);
	ws_root = xasprintf("%s/workspaces", real);
	ws_ttl_s = ttl_s;
	ws_active = lh_kchar_table_new(64, workspace_free_entry);
	return 0;
}

void
workspace_close(void)
{
	if (ws_fd != -1)
		close(ws_fd);
	ws_fd = -1;
	free(ws_root);
	ws_root = NULL;
	if (ws_active != NULL)
		lh_table_free(ws_active);
	ws_active = NULL;
}

/* A task's directory, new, or (adopt) perhaps there already. */
static char *
workspace_make(const char *task_id, bool adopt, char *err, size_t errlen)
{
	char	*path, *key;

	if (ws_fd == -1) {
		snprintf(err, errlen, "no state directory");
		return NULL;
	}
	if ((mkdirat(ws_fd, task_id, 0700) == -1 && (!adopt ||
	    errno != EEXIST)) || (ws_uid != -1 &&
	    fchownat(ws_fd, task_id, (uid_t)ws_uid, (gid_t)ws_gid,
	    AT_SYMLINK_NOFOLLOW) == -1)) {
		snprintf(err, errlen, "%s/%s: %s", ws_root, task_id,
		    strerror(errno));
		return NULL;
	}
	path = xasprintf("%s/%s", ws_root, task_id);
	key = xstrdup(task_id);
	lh_table_insert(ws_active, key, key);
	return path;
}

/* The directory of a new task; NULL with err set. */
char *
workspace_create(const char *task_id, char *err, size_t errlen)
{
	return workspace_make(task_id, false, err, errlen);
}

/* A resumed task's: the one its first run left, with what its finished
 * agents wrote (or a new one). */
char *
workspace_adopt(const char *task_id, char *err, size_t errlen)
{
	return workspace_make(task_id, true, err, errlen);
}

/* A write_file temporary whose worker was killed before it could
 * remove it (at a deadline, say). */
static int
workspace_tmp_cb(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	const char	*name = path + ftw->base;

	if (flag == FTW_F && S_ISREG(st->st_mode) &&
	    strlen(name) == TOOL_TMP_NAME_LEN &&
	    strncmp(name, TOOL_TMP_PREFIX, sizeof TOOL_TMP_PREFIX - 1) == 0 &&
	    unlink(path) == -1 && errno != ENOENT)
		log_warn("removing %s", path);
	return 0;
}

/* The task ended: its workspace, unless empty, is swept a TTL from now. */
void
workspace_release(const char *task_id)
{
	struct lh_entry	*e;
	char		*path;

	if (ws_active == NULL ||
	    (e = lh_table_lookup_entry(ws_active, task_id)) == NULL)
		return;
	lh_table_delete_entry(ws_active, e);	/* frees the key */
	/* Its workers are dead: no write is under way any more. */
	path = xasprintf("%s/%s", ws_root, task_id);
	nftw(path, workspace_tmp_cb, WORKSPACE_NOPENFD, FTW_PHYS | FTW_MOUNT);
	free(path);
	if (unlinkat(ws_fd, task_id, AT_REMOVEDIR) == 0)
		return;		/* nothing was written: nothing to keep */
	if (utimensat(ws_fd, task_id, NULL, AT_SYMLINK_NOFOLLOW) == -1)
		log_warn("workspace %s", task_id);
}

static int
workspace_remove_cb(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st; (void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) == -1 &&
	    errno != ENOENT)
		log_warn("removing %s", path);
	return 0;
}

/* A name workspace_create made: 32 lower-case hex digits. */
static bool
workspace_name(const char *name)
{
	size_t	i;

	for (i = 0; name[i] != '\0'; i++)
		if (!isxdigit((unsigned char)name[i]) ||
		    isupper((unsigned char)name[i]))
			return false;
	return i == 32;
}

/* Removes one expired workspace, without following symbolic links. */
static void
workspace_remove(const char *name, const struct stat *st)
{
	char	*path;

	if (!S_ISDIR(st->st_mode)) {
		if (unlinkat(ws_fd, name, 0) == -1)
			log_warn("removing %s/%s", ws_root, name);
		return;
	}
	path = xasprintf("%s/%s", ws_root, name);
	if (nftw(path, workspace_remove_cb, WORKSPACE_NOPENFD,
	    FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == -1)
		log_warn("removing %s", path);
	free(path);
}

/* Removes workspaces untouched for the TTL; returns how many. */
int
workspace_sweep(time_t now)
{
	struct dirent	*de;
	struct stat	 st;
	DIR		*d;
	int		 fd, n = 0;

	if (ws_fd == -1 || (fd = dup(ws_fd)) == -1)
		return 0;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return 0;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!workspace_name(de->d_name) ||
		    lh_table_lookup_entry(ws_active, de->d_name) != NULL ||
		    fstatat(ws_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    now - st.st_mtime < ws_ttl_s)
			continue;
		workspace_remove(de->d_name, &st);
		n++;
	}
	closedir(d);
	if (n > 0)
		log_debug("removed %d expired workspaces", n);
	return n;
}

static void
workspace_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd; (void)events; (void)arg;
	workspace_sweep(time(NULL));
}

/*
 * For --check-config: whether the server could keep workspaces there.  It
 * creates the state directory, as the server would, and a probe in it.
 */
int
workspace_check(const char *state_dir, char *err, size_t errlen)
{
	char	probe[64];
	int	rc = 0;

	if (workspace_open(state_dir, 60, err, errlen) == -1)
		return -1;
	snprintf(probe, sizeof probe, ".check-%d", (int)getpid());
	if (mkdirat(ws_fd, probe, 0700) == -1 ||
	    unlinkat(ws_fd, probe, AT_REMOVEDIR) == -1) {
		snprintf(err, errlen, "state directory %s: %s", ws_root,
		    strerror(errno));
		rc = -1;
	}
	workspace_close();
	return rc;
}

/* At startup: the state directory, a first sweep, then one every while. */
void
workspace_init(const struct heavy_config *cfg)
{
	struct timeval	every = { cfg->task_ttl_s / 4, 0 };
	char		err[PATH_MAX + 128];

	if (workspace_open(cfg->state_dir, cfg->task_ttl_s, err,
	    sizeof err) == -1)
		fatalx("%s (set --state-dir DIR or HEAVY_STATE_DIR)", err);
	/* Workers of a root heavyd run as worker_uid: the workspace is theirs. */
	if (geteuid() == 0) {
		ws_uid = cfg->worker_uid;
		ws_gid = cfg->worker_gid;
	}
	workspace_sweep(time(NULL));
	if (every.tv_sec < 15)
		every.tv_sec = 15;
	if (every.tv_sec > 3600)
		every.tv_sec = 3600;
	ws_timer = event_new(ev_base, -1, EV_PERSIST, workspace_timer_cb, NULL);
	event_add(ws_timer, &every);
}

void
workspace_stop(void)
{
	if (ws_timer != NULL)
		event_free(ws_timer);
	ws_timer = NULL;
	workspace_close();
}

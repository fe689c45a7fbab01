/*
 * What confinement this host gives the workers, probed once at startup:
 * Landlock (its ABI, and whether TCP port rules are on), the mount
 * namespace fallback, seccomp, no_new_privs, capabilities, rlimits, and a
 * delegated cgroup v2 (set up here when there is one).  It is printed by
 * --check-config in full and logged in one short line at startup: a
 * weaker mode is always said, never silent.  The sandbox every worker
 * gets is built here.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/http.h>
#include <linux/landlock.h>
#include <sys/capability.h>

#include "supervisor.h"

#define CGROUP_NEED	"memory pids"

static struct {
	int		 landlock_abi;
	int		 landlock_errno;	/* why there is none */
	enum sandbox_fs	 fs;
	char		 fs_why[128];		/* why not Landlock */
	bool		 seccomp;
	int		 caps_held;		/* effective, in heavyd */
	char		 cgroup[PATH_MAX + 32];	/* workers' parent, or "" */
	char		 cgroup_why[PATH_MAX + 256];
	char		 cgroup_brief[64];
	bool		 landlock_capped;	/* by HEAVY_LANDLOCK_ABI */
	struct sandbox	 spec;			/* every worker's, but the workspace */
	uint32_t	 egress_uid, egress_gid;	/* or SANDBOX_KEEP_ID */
} feat;

/* The kernel's Landlock ABI, or max when that is lower (HEAVY_LANDLOCK_ABI:
 * what an older kernel, or one without Landlock, would give). */
static int
features_landlock_abi(int max)
{
	int	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);

	feat.landlock_errno = abi < 0 ? errno : 0;
	if (abi < 0)
		return 0;
	feat.landlock_capped = max >= 0 && abi > max;
	return feat.landlock_capped ? max : abi;
}

/* What the workers' confinement lacks: the filesystem, the network (no
 * TCP port rules), seccomp.  Returns how many; names them in out. */
static int
features_weaker(const char **out)
{
	int	n = 0;

	if (feat.fs == SANDBOX_FS_NONE)
		out[n++] = "filesystem";
	if (feat.fs != SANDBOX_FS_LANDLOCK || feat.landlock_abi < 4)
		out[n++] = "network";
	if (!feat.seccomp)
		out[n++] = "seccomp";
	return n;
}

static void
features_weaker_text(char *buf, size_t len)
{
	const char	*w[3];
	int		 n = features_weaker(w);

	buf[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
		    i ? ", " : "", w[i]);
}

/*
 * Workers never run without a filesystem sandbox or the system call
 * filter unless the configuration says so in so many words: the error
 * names what is missing and the setting that accepts the risk.
 */
static int
features_require(const struct heavy_config *cfg, char *err, size_t errlen)
{
	if (!cfg->sandbox_require ||
	    (feat.fs != SANDBOX_FS_NONE && feat.seccomp))
		return 0;
	snprintf(err, errlen, "the worker sandbox is incomplete: %s%s%s; "
	    "heavyd will not run workers that can read and write what it can. "
	    "Run it where Landlock is enabled or with CAP_SYS_ADMIN, or accept "
	    "the risk with sandbox.require: false (HEAVY_SANDBOX_REQUIRE=0)",
	    feat.fs == SANDBOX_FS_NONE ? "no filesystem confinement (" : "",
	    feat.fs == SANDBOX_FS_NONE ? feat.fs_why : "",
	    feat.fs == SANDBOX_FS_NONE ? (feat.seccomp ? ", and no "
	    "CAP_SYS_ADMIN for a mount namespace)" : ", and no CAP_SYS_ADMIN "
	    "for a mount namespace); no seccomp filter in this kernel") :
	    "no seccomp filter in this kernel");
	return -1;
}

/* The filter mode with kill_process, which the allowlist needs (4.14). */
static bool
features_seccomp(void)
{
	char	buf[256];
	int	fd;
	ssize_t	n;

	if (prctl(PR_GET_SECCOMP) == -1)
		return false;
	if ((fd = open("/proc/sys/kernel/seccomp/actions_avail",
	    O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return strstr(buf, "kill_process") != NULL;
}

static int
features_caps_held(bool *sys_admin)
{
	cap_flag_value_t	v;
	cap_t			caps = cap_get_proc();
	int			n = 0;

	*sys_admin = false;
	if (caps == NULL)
		return 0;
	for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++)
		if (cap_get_flag(caps, c, CAP_EFFECTIVE, &v) == 0 &&
		    v == CAP_SET) {
			n++;
			*sys_admin |= c == CAP_SYS_ADMIN;
		}
	cap_free(caps);
	return n;
}

/* Landlock where the kernel has it; else a mount namespace where we may
 * make one; else nothing, said loudly.  HEAVY_SANDBOX_FS forces a mode. */
static int
features_fs(bool sys_admin, char *err, size_t errlen)
{
	const char	*want = getenv("HEAVY_SANDBOX_FS");

	if (want == NULL || *want == '\0')
		want = "auto";
	if (strcmp(want, "auto") != 0 && strcmp(want, "landlock") != 0 &&
	    strcmp(want, "mount") != 0) {
		snprintf(err, errlen, "HEAVY_SANDBOX_FS: expected auto, "
		    "landlock or mount, got \"%.32s\"", want);
		return -1;
	}
	if (feat.landlock_abi > 0 && strcmp(want, "mount") != 0) {
		feat.fs = SANDBOX_FS_LANDLOCK;
		return 0;
	}
	if (strcmp(want, "landlock") == 0) {
		snprintf(err, errlen, "HEAVY_SANDBOX_FS=landlock: this kernel "
		    "has no Landlock");
		return -1;
	}
	snprintf(feat.fs_why, sizeof feat.fs_why, "%s",
	    feat.landlock_abi > 0 ? "HEAVY_SANDBOX_FS=mount" :
	    feat.landlock_capped ? "HEAVY_LANDLOCK_ABI=0" :
	    feat.landlock_errno == EOPNOTSUPP ? "Landlock is disabled in this "
	    "kernel: add it to the lsm= boot parameter" :
	    "no Landlock in this kernel");
	if (sys_admin) {
		feat.fs = SANDBOX_FS_MOUNT;
		return 0;
	}
	if (strcmp(want, "mount") == 0) {
		snprintf(err, errlen, "HEAVY_SANDBOX_FS=mount: a mount namespace "
		    "needs CAP_SYS_ADMIN");
		return -1;
	}
	feat.fs = SANDBOX_FS_NONE;
	return 0;
}

static bool
features_add_port(struct sandbox *sb, int port)
{
	for (uint32_t i = 0; i < sb->nports; i++)
		if (sb->ports[i] == port)
			return true;
	if (sb->nports == SANDBOX_MAX_PORTS || port <= 0 || port > 65535)
		return false;
	sb->ports[sb->nports++] = (uint16_t)port;
	return true;
}

/* An endpoint's TCP port, and 53 for the resolver's TCP fallback when its
 * host is a name; -1 when the URL is not http(s)://host[:port]/... */
static int
features_url_ports(struct sandbox *sb, const char *url)
{
	struct evhttp_uri	*u = evhttp_uri_parse(url);
	const char		*scheme, *host;
	struct in6_addr		 a6;
	struct in_addr		 a4;
	int			 port, rc = -1;

	if (u == NULL)
		return -1;
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	port = evhttp_uri_get_port(u);
	if (scheme == NULL || (strcasecmp(scheme, "https") != 0 &&
	    strcasecmp(scheme, "http") != 0))
		port = -1;
	else if (port == -1)
		port = strcasecmp(scheme, "https") == 0 ? 443 : 80;
	if (host != NULL && host[0] != '\0' && port > 0 &&
	    features_add_port(sb, port)) {
		rc = 0;
		/* IP literals need no resolver; libevent keeps v6 bracketed. */
		if (inet_pton(AF_INET, host, &a4) != 1 && host[0] != '[' &&
		    inet_pton(AF_INET6, host, &a6) != 1 &&
		    !features_add_port(sb, 53))
			rc = -1;
	}
	evhttp_uri_free(u);
	return rc;
}

/*
 * The TCP ports a worker may connect to: those of every endpoint it uses.
 * Today that is the LLM's base_url; a search backend adds its URL here
 * (and 80/443 for the pages it fetches).  -1 names the bad URL in err.
 */
int
features_ports(const struct heavy_config *cfg, struct sandbox *sb, char *err,
    size_t errlen)
{
	const char	*env = getenv("HEAVY_BASE_URL");
	char		*url;

	sb->nports = 0;
	if (features_url_ports(sb, cfg->base_url) == -1) {
		/* Named as the user set it: the variable overrides the file. */
		url = secret_url(cfg->base_url);
		snprintf(err, errlen, "%s: \"%.200s\" is not an "
		    "http(s)://host[:port]/... URL", env != NULL && *env != '\0' ?
		    "HEAVY_BASE_URL" : "openrouter.base_url", url);
		free(url);
		return -1;
	}
	if (cfg->search_backend == NULL)
		return 0;
	if (features_url_ports(sb, cfg->search_url) == -1) {
		url = secret_url(cfg->search_url);
		snprintf(err, errlen, "search.url: \"%.200s\" is not an "
		    "http(s)://host[:port]/... URL", url);
		free(url);
		return -1;
	}
	/* search_web fetches result pages from the web's usual ports only. */
	if (!features_add_port(sb, 80) || !features_add_port(sb, 443) ||
	    !features_add_port(sb, 53)) {
		snprintf(err, errlen, "too many endpoint ports");
		return -1;
	}
	return 0;
}

/* The cgroup v2 path in /proc/self/cgroup text (its "0::" line). */
int
features_cgroup_path(const char *text, char *out, size_t outlen)
{
	const char	*p = text;
	size_t		 n;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, "0::", 3) == 0) {
			p += 3;
			n = strcspn(p, "\n");
			if (n == 0 || n >= outlen || p[0] != '/')
				return -1;
			memcpy(out, p, n);
			out[n] = '\0';
			return 0;
		}
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return -1;
}

/* The mount point of the cgroup2 filesystem in /proc/self/mountinfo text:
 * "id parent maj:min root mountpoint opts [tags] - fstype source opts". */
int
features_cgroup2_mount(const char *text, char *out, size_t outlen)
{
	char		 point[PATH_MAX], fstype[64];
	const char	*p = text, *dash;

	for (; p != NULL && *p != '\0'; p = strchr(p, '\n') ?
	    strchr(p, '\n') + 1 : NULL) {
		if ((dash = strstr(p, " - ")) == NULL ||
		    (strchr(p, '\n') != NULL && dash > strchr(p, '\n')))
			continue;
		if (sscanf(dash, " - %63s", fstype) != 1 ||
		    strcmp(fstype, "cgroup2") != 0 ||
		    sscanf(p, "%*s %*s %*s %*s %4095s", point) != 1)
			continue;
		if (strlen(point) >= outlen || strchr(point, '\\') != NULL)
			return -1;	/* an escaped (odd) path: not ours */
		snprintf(out, outlen, "%s", point);
		return 0;
	}
	return -1;
}

/* Whether a cgroup.controllers line has every word of need. */
bool
features_has_controllers(const char *line, const char *need)
{
	char		 word[32];
	const char	*p = need, *q;
	size_t		 n, wl;

	while (*p != '\0') {
		n = strcspn(p, " ");
		if (n == 0 || n >= sizeof word)
			return false;
		memcpy(word, p, n);
		word[n] = '\0';
		for (q = line; (q = strstr(q, word)) != NULL; q += n) {
			wl = strcspn(q, " \n");
			if ((q == line || q[-1] == ' ') && wl == n)
				break;
		}
		if (q == NULL)
			return false;
		p += n;
		p += strspn(p, " ");
	}
	return true;
}

/* A small file's text, NUL-terminated; -1 when it cannot be read. */
static int
features_read(const char *path, char *buf, size_t len)
{
	ssize_t	n, got = 0;
	int	fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while ((n = read(fd, buf + got, len - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	buf[got] = '\0';
	return n == -1 ? -1 : 0;
}

static int
features_write(const char *dir, const char *file, const char *value)
{
	char	path[PATH_MAX + 64];
	int	fd, rc;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	rc = write(fd, value, strlen(value)) == (ssize_t)strlen(value) ? 0 : -1;
	close(fd);
	return rc;
}

/* Why there is no cgroup: in short for the startup line, and in full. */
#define CG_WHY(brief, ...)	(snprintf(feat.cgroup_brief, \
			    sizeof feat.cgroup_brief, "%s", brief), \
			    snprintf(feat.cgroup_why, sizeof feat.cgroup_why, \
			    __VA_ARGS__))

/* Whether /proc/self/cgroup text has a cgroup v1 line for controller. */
static bool
features_on_v1(const char *text, const char *controller)
{
	char	pat[64];

	snprintf(pat, sizeof pat, ":%s:", controller);
	return strstr(text, pat) != NULL;
}

/* Our cgroup v2 directory if it is delegated to us alone; -1 says why. */
static int
features_cgroup_dir(char *dir, size_t len)
{
	char	cg[4096], text[16384], mnt[PATH_MAX], rel[PATH_MAX + 32];
	char	self[32];

	if (features_read("/proc/self/cgroup", cg, sizeof cg) == -1 ||
	    features_cgroup_path(cg, rel, sizeof rel) == -1)
		return CG_WHY("no cgroup v2", "this process is in no cgroup v2 "
		    "hierarchy"), -1;
	if (features_read("/proc/self/mountinfo", text, sizeof text) == -1 ||
	    features_cgroup2_mount(text, mnt, sizeof mnt) == -1)
		return CG_WHY("no cgroup v2", "no cgroup v2 filesystem is "
		    "mounted"), -1;
	if ((size_t)snprintf(dir, len, "%s%s", mnt, strcmp(rel, "/") == 0 ?
	    "" : rel) >= len)
		return CG_WHY("path too long", "cgroup path too long"), -1;
	snprintf(rel, sizeof rel, "%s/cgroup.controllers", dir);
	if (features_read(rel, text, sizeof text) == -1)
		text[0] = '\0';
	if (!features_has_controllers(text, CGROUP_NEED))
		return CG_WHY("no delegated memory/pids controllers",
		    "cgroup v2 at %s lacks the memory and pids "
		    "controllers (it has: %.*s)%s", dir,
		    (int)strcspn(text, "\n"), text[0] ? text : "none",
		    features_on_v1(cg, "memory") ? "; memory is on cgroup v1" :
		    ""), -1;
	if (strcmp(dir, mnt) == 0)
		return CG_WHY("the root cgroup is not delegated",
		    "heavyd runs in the root cgroup of %s, which is "
		    "not delegated to it", mnt), -1;
	snprintf(rel, sizeof rel, "%s/cgroup.procs", dir);
	snprintf(self, sizeof self, "%d\n", (int)getpid());
	if (features_read(rel, text, sizeof text) == -1 ||
	    strcmp(text, self) != 0 || access(dir, W_OK) == -1)
		return CG_WHY("not delegated to heavyd alone",
		    "cgroup %s is not delegated to heavyd alone "
		    "(under systemd: Delegate=yes)", dir), -1;
	return 0;
}

/*
 * cgroup v2 allows processes only in leaves once controllers are on: heavyd
 * (and its zygote) move to DIR/heavyd, workers get DIR/workers/w<pid>.
 */
static int
features_cgroup_setup(const char *dir)
{
	char	leaf[PATH_MAX + 32], self[32];

	snprintf(leaf, sizeof leaf, "%s/heavyd", dir);
	snprintf(self, sizeof self, "%d", (int)getpid());
	if ((mkdir(leaf, 0755) == -1 && errno != EEXIST) ||
	    features_write(leaf, "cgroup.procs", self) == -1)
		return CG_WHY("setup failed", "cannot move heavyd to %s: %s",
		    leaf,
		    strerror(errno)), -1;
	if (features_write(dir, "cgroup.subtree_control", "+memory +pids") == -1)
		return CG_WHY("setup failed",
		    "cannot enable memory and pids in %s: %s", dir,
		    strerror(errno)), -1;
	snprintf(leaf, sizeof leaf, "%s/workers", dir);
	if ((mkdir(leaf, 0755) == -1 && errno != EEXIST) ||
	    features_write(leaf, "cgroup.subtree_control", "+memory +pids") ==
	    -1)
		return CG_WHY("setup failed", "cannot prepare %s: %s", leaf,
		    strerror(errno)), -1;
	snprintf(feat.cgroup, sizeof feat.cgroup, "%s", leaf);
	return 0;
}

static int	features_egress_ids(const struct heavy_config *, char *, size_t);

/* Probes the host; with setup, also prepares a delegated cgroup. */
int
features_init(const struct heavy_config *cfg, bool setup, char *err,
    size_t errlen)
{
	struct sandbox	*sb = &feat.spec;
	char		 dir[PATH_MAX];
	bool		 sys_admin;

	memset(&feat, 0, sizeof feat);
	feat.landlock_abi = features_landlock_abi(cfg->landlock_abi_max);
	feat.seccomp = features_seccomp();
	feat.caps_held = features_caps_held(&sys_admin);
	if (features_fs(sys_admin, err, errlen) == -1 ||
	    features_require(cfg, err, errlen) == -1 ||
	    features_ports(cfg, sb, err, errlen) == -1)
		return -1;
	unsetenv("HEAVY_CGROUP");	/* only ours reaches the zygote */
	if (features_cgroup_dir(dir, sizeof dir) == 0) {
		if (!setup)
			snprintf(feat.cgroup, sizeof feat.cgroup, "%s/workers",
			    dir);
		else if (features_cgroup_setup(dir) == 0)
			setenv("HEAVY_CGROUP", feat.cgroup, 1);
	}
	sb->fs = feat.fs;
	sb->flags = feat.seccomp ? SANDBOX_SECCOMP : 0;
	sb->memory = cfg->worker_memory;
	sb->cpu_s = (uint32_t)cfg->worker_cpu;
	sb->nofile = (uint32_t)cfg->worker_nofile;
	sb->fsize = cfg->worker_fsize;
	sb->pids = (uint32_t)cfg->worker_pids;
	/* A worker running as root could read or signal what root can, past
	 * any rule a kernel bug lets it slip: it gets an unprivileged uid. */
	sb->uid = geteuid() == 0 ? (uint32_t)cfg->worker_uid : SANDBOX_KEEP_ID;
	sb->gid = geteuid() == 0 ? (uint32_t)cfg->worker_gid : SANDBOX_KEEP_ID;
	return features_egress_ids(cfg, err, errlen);
}

/*
 * heavyd-egress's own unprivileged ids under a root heavyd: another uid
 * than the workers', so no worker can signal or trace the process that
 * holds the keys, even past a filter.  A non-root heavyd keeps its own.
 */
static int
features_egress_ids(const struct heavy_config *cfg, char *err,
    size_t errlen)
{
	feat.egress_uid = feat.egress_gid = SANDBOX_KEEP_ID;
	if (geteuid() != 0)
		return 0;
	if (cfg->egress_uid == cfg->worker_uid) {
		snprintf(err, errlen, "limits.egress_uid (HEAVY_EGRESS_UID) is "
		    "the workers' uid %d: heavyd-egress, which holds the keys, "
		    "needs a uid of its own", cfg->worker_uid);
		return -1;
	}
	feat.egress_uid = (uint32_t)cfg->egress_uid;
	feat.egress_gid = (uint32_t)cfg->egress_gid;
	return 0;
}

/* heavyd-egress's sandbox: the workers' confinement modes, its own ids,
 * no workspace (MSG_EGRESS_SANDBOX; egress_sandbox.c applies it). */
void
features_egress_sandbox(struct sandbox *sb)
{
	*sb = feat.spec;
	sb->workspace = "";
	sb->nports = 0;
	sb->uid = feat.egress_uid;
	sb->gid = feat.egress_gid;
	if (sb->fs == 0) {	/* not probed (unit tests): what it can */
		sb->fs = SANDBOX_FS_NONE;
		sb->uid = sb->gid = SANDBOX_KEEP_ID;
	}
}

/* A worker's sandbox: all but the workspace, which is the task's. */
void
features_sandbox(struct sandbox *sb)
{
	*sb = feat.spec;
	sb->workspace = NULL;
}

static void
features_fs_text(char *buf, size_t len)
{
	if (feat.fs == SANDBOX_FS_LANDLOCK)
		snprintf(buf, len, "Landlock ABI %d: the workspace read-write; "
		    "CA certificates, resolver files and libraries read-only; "
		    "nothing else", feat.landlock_abi);
	else if (feat.fs == SANDBOX_FS_MOUNT)
		snprintf(buf, len, "mount namespace (%s): a read-only root with "
		    "the workspace read-write; CA certificates, resolver files "
		    "and libraries read-only", feat.fs_why);
	else
		snprintf(buf, len, "NOT CONFINED (%s, and no CAP_SYS_ADMIN for a "
		    "mount namespace): workers can read and write what heavyd "
		    "can", feat.fs_why);
}

/*
 * Workers have no socket() (seccomp) and, with Landlock ABI 4, no TCP
 * connect or bind either: their requests go through heavyd-egress.
 * Without ABI 4 the second fence is missing, which still counts as weaker.
 */
static void
features_net_text(char *buf, size_t len)
{
	if (feat.fs != SANDBOX_FS_LANDLOCK || feat.landlock_abi < 4) {
		snprintf(buf, len, "NOT CONFINED: TCP port rules need Landlock "
		    "ABI 4 (this kernel: %d); seccomp still refuses socket(), "
		    "requests go through heavyd-egress", feat.landlock_abi);
		return;
	}
	snprintf(buf, len, "no TCP connect or bind, no socket(): requests go "
	    "through heavyd-egress%s", feat.landlock_abi >= 6 ? "; signals and "
	    "abstract unix sockets scoped to the worker" : "");
}

static void
features_rlimit_text(char *buf, size_t len)
{
	const struct sandbox	*sb = &feat.spec;
	char			 as[64];

#ifdef __SANITIZE_ADDRESS__
	snprintf(as, sizeof as, "AS not set (ASan build)");
#else
	snprintf(as, sizeof as, "AS %llu MiB",
	    (unsigned long long)(sb->memory >> 20));
#endif
	snprintf(buf, len, "%s, CPU %u s, NOFILE %u, FSIZE %llu MiB, CORE 0", as,
	    sb->cpu_s, sb->nofile, (unsigned long long)(sb->fsize >> 20));
}

static void
features_cgroup_text(char *buf, size_t len)
{
	if (feat.cgroup[0] != '\0')
		snprintf(buf, len, "%s/w<pid>: memory.max %llu MiB, pids.max "
		    "%u, memory.oom.group 1", feat.cgroup,
		    (unsigned long long)(feat.spec.memory >> 20), feat.spec.pids);
	else
		snprintf(buf, len, "off, rlimits only: %s", feat.cgroup_why);
}

/* heavyd-egress's confinement: the same modes, a profile of its own. */
static void
features_egress_text(char *buf, size_t len)
{
	char	ids[64], fs[96];

	if (feat.egress_uid == SANDBOX_KEEP_ID)
		snprintf(ids, sizeof ids, "heavyd's uid (heavyd is not root)");
	else
		snprintf(ids, sizeof ids, "uid %u gid %u", feat.egress_uid,
		    feat.egress_gid);
	if (feat.fs == SANDBOX_FS_LANDLOCK)
		snprintf(fs, sizeof fs, "Landlock ABI %d: nothing writable, "
		    "%s", feat.landlock_abi, feat.landlock_abi >= 4 ?
		    "no TCP bind" : "TCP bind refused by seccomp only");
	else if (feat.fs == SANDBOX_FS_MOUNT)
		snprintf(fs, sizeof fs, "mount namespace: a read-only root");
	else
		snprintf(fs, sizeof fs, "filesystem NOT CONFINED");
	snprintf(buf, len, "%s, no capabilities; %s; %s", ids, fs,
	    feat.seccomp ? "seccomp allowlist: TCP connect and DNS, no exec, "
	    "no processes, no file opened for writing" : "NO seccomp");
}

/* Each feature as (name, text), for the two reports. */
static void
features_each(void (*fn)(void *, const char *, const char *), void *arg)
{
	char	text[PATH_MAX + 1024];

	features_fs_text(text, sizeof text);
	fn(arg, "filesystem", text);
	features_net_text(text, sizeof text);
	fn(arg, "network", text);
	fn(arg, "seccomp", feat.seccomp ? "allowlist; a forbidden system call "
	    "kills the worker with SIGSYS" : "NOT AVAILABLE in this kernel: no "
	    "system call filter");
	fn(arg, "no_new_privs", "on");
	snprintf(text, sizeof text, "all dropped in workers (heavyd holds %d)",
	    feat.caps_held);
	fn(arg, "capabilities", text);
	features_rlimit_text(text, sizeof text);
	fn(arg, "rlimits", text);
	fn(arg, "oom_score_adj", "1000");
	features_cgroup_text(text, sizeof text);
	fn(arg, "cgroup", text);
	features_egress_text(text, sizeof text);
	fn(arg, "egress", text);
	features_weaker_text(text, sizeof text);
	fn(arg, "weaker", text[0] ? text : "none");
}

static void
features_print_one(void *arg, const char *name, const char *text)
{
	char	key[64];

	snprintf(key, sizeof key, "sandbox.%s", name);
	config_yaml_line(arg, key, text, NULL);
}

/* For --check-config, one line a feature. */
void
features_print(FILE *f)
{
	features_each(features_print_one, f);
}

/*
 * At startup: one short line, the full report being --check-config's.
 * Workers without filesystem confinement are worth a warning.
 */
/* The Landlock ABI workers use: the kernel's, or HEAVY_LANDLOCK_ABI. */
int
features_landlock(void)
{
	return feat.landlock_abi;
}

/* The sandbox in a few words: what the startup line and results say. */
static void
features_brief(char *buf, size_t len)
{
	char	fs[160];

	if (feat.fs == SANDBOX_FS_LANDLOCK)
		snprintf(fs, sizeof fs, "Landlock ABI %d", feat.landlock_abi);
	else if (feat.fs == SANDBOX_FS_MOUNT)
		snprintf(fs, sizeof fs, "mount namespace (%s)", feat.fs_why);
	else
		snprintf(fs, sizeof fs, "filesystem NOT CONFINED (%s)",
		    feat.fs_why);
	snprintf(buf, len, "%s%s, %s, rlimits; cgroup %s%s%s", fs,
	    feat.fs == SANDBOX_FS_LANDLOCK && feat.landlock_abi >= 4 ? "" :
	    ", network NOT CONFINED", feat.seccomp ? "seccomp" : "NO seccomp",
	    feat.cgroup[0] ? "on" : "off (", feat.cgroup[0] ? "" :
	    feat.cgroup_brief, feat.cgroup[0] ? "" : ")");
}

void
features_log(void)
{
	const char	*w[3];
	char		 line[512];

	features_brief(line, sizeof line);
	(features_weaker(w) > 0 ? log_warnx : log_info)("sandbox: %s", line);
}

/*
 * For every result's structured content: the confinement its workers had,
 * and what it lacked ([] when nothing), so a weaker sandbox is never a
 * surprise to whoever reads the answer.
 */
void
features_result(struct task_result *r)
{
	const char	*w[3];
	char		 line[512];
	int		 n = features_weaker(w);

	features_brief(line, sizeof line);
	r->confinement = xstrdup(line);
	for (int i = 0; i < n; i++)
		r->weaker[i] = xstrdup(w[i]);
	r->nweaker = n;
}

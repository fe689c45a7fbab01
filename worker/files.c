/*
 * read_file and write_file, confined to the task's workspace by the kernel:
 * every path is resolved by openat2(2) beneath the workspace's fd with
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, so "..", absolute paths and
 * symbolic links that lead outside fail in the kernel (EXDEV, ELOOP), not
 * in a string check that could be fooled.  A write goes to a temporary
 * file in the target's directory and is renamed over the target, so a
 * reader sees the old file or the new one, never half of it; on any
 * failure the temporary is removed.
 */
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

#define FILES_NOTE_ROOM	256	/* kept in the output for a closing note */

/* The only way this file opens a path. */
static int
files_openat2(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how	how;

	memset(&how, 0, sizeof how);
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	how.mode = (flags & O_CREAT) ? mode : 0;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* An errno from a path operation, in words the model can act on. */
static int
files_error(struct buf *out, const char *path, int err)
{
	const char	*why;

	switch (err) {
	case EXDEV:
		why = "path escapes the workspace (paths are relative to it; "
		    "\"..\", absolute paths and links leading outside are "
		    "refused)";
		break;
	case ELOOP:
		why = "path escapes the workspace or loops through symbolic "
		    "links";
		break;
	case ENOENT:
		why = "no such file or directory";
		break;
	case ENOTDIR:
		why = "a part of the path is not a directory";
		break;
	case EISDIR:
		why = "is a directory";
		break;
	case ENOSYS:
		why = "this kernel has no openat2(2) (Linux 5.6 or later is "
		    "needed), so file tools are unavailable";
		break;
	default:
		why = strerror(err);
	}
	buf_reset(out);
	buf_printf(out, "error: %.200s: %s", path, why);
	return -1;
}

/*
 * Whether p holds UTF-8 text with no NUL: 1, with *whole the bytes that
 * end on a character boundary (a cut may split the last character), or 0.
 * glibc's decoder rejects overlong forms, surrogates and stray bytes.
 */
int
text_utf8(const char *p, size_t len, size_t *whole)
{
	char	 sink[1024], *in = (char *)p, *o;
	size_t	 left = len, olen;
	iconv_t	 cd;
	int	 ok = 1;

	*whole = 0;
	if (memchr(p, '\0', len) != NULL)
		return 0;
	if ((cd = iconv_open("UTF-32LE", "UTF-8")) == (iconv_t)-1)
		fatal("iconv_open");
	while (left > 0) {
		o = sink;
		olen = sizeof sink;
		if (iconv(cd, &in, &left, &o, &olen) != (size_t)-1)
			break;
		if (errno == E2BIG)
			continue;
		ok = errno == EINVAL;	/* only a sequence cut at the end */
		break;
	}
	iconv_close(cd);
	*whole = len - left;
	return ok;
}

/* The longest prefix of p, at most max bytes, that does not split a
 * UTF-8 character. */
size_t
text_fit(const char *p, size_t len, size_t max)
{
	size_t	n = len < max ? len : max;

	if (n == len)
		return n;
	while (n > 0 && ((unsigned char)p[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/* Adds text, cut to leave room for a note; returns 1 if it was cut. */
int
text_add_capped(struct buf *out, const char *p, size_t len)
{
	size_t	room = out->max - out->len;

	room = room > FILES_NOTE_ROOM ? room - FILES_NOTE_ROOM : 0;
	if (len <= room) {
		buf_add(out, p, len);
		return 0;
	}
	buf_add(out, p, text_fit(p, len, room));
	return 1;
}

/* Up to len bytes from offset, until EOF; -1 with errno on error. */
static ssize_t
files_pread(int fd, char *p, size_t len, off_t off)
{
	size_t	got = 0;
	ssize_t	n;

	while (got < len) {
		n = pread(fd, p + got, len - got, off + (off_t)got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* A regular file beneath the workspace, open for reading. */
static int
files_open_read(int root, const char *path, struct stat *st, struct buf *out)
{
	int	fd;

	/* O_NONBLOCK: a FIFO must not hang us before fstat can refuse it. */
	fd = files_openat2(root, path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
	if (fd == -1)
		return files_error(out, path, errno);
	if (fstat(fd, st) == -1) {
		close(fd);
		return files_error(out, path, errno);
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		if (S_ISDIR(st->st_mode))
			return files_error(out, path, EISDIR);
		buf_printf(out, "error: %.200s: not a regular file", path);
		return -1;
	}
	return fd;
}

/* Where the last n lines of p begin (a final newline ends a line). */
static size_t
files_tail_start(const char *p, size_t len, unsigned long n, bool *all)
{
	size_t	i = len;

	if (i > 0 && p[i - 1] == '\n')
		i--;
	while (i > 0) {
		if (p[i - 1] == '\n' && --n == 0) {
			*all = true;
			return i;
		}
		i--;
	}
	*all = false;
	return 0;
}

/* Where the first n lines of p end. */
static size_t
files_head_end(const char *p, size_t len, unsigned long n, bool *all)
{
	const char	*nl = p;

	while (n-- > 0) {
		nl = memchr(nl, '\n', len - (size_t)(nl - p));
		if (nl == NULL) {
			*all = false;
			return len;
		}
		nl++;
	}
	*all = true;
	return (size_t)(nl - p);
}

/* The bytes the call wants: the start, the end or all of the file. */
static int
files_take(int fd, const struct stat *st, unsigned long tail, size_t max,
    char **data, size_t *len, off_t *off)
{
	size_t	want = (uint64_t)st->st_size < max ? (size_t)st->st_size : max;
	ssize_t	n;

	*off = tail > 0 ? st->st_size - (off_t)want : 0;
	*data = xmalloc(want + 1);
	if ((n = files_pread(fd, *data, want, *off)) == -1) {
		free(*data);
		return -1;
	}
	*len = (size_t)n;
	return 0;
}

static int
files_not_text(struct buf *out, const char *path, const struct stat *st)
{
	buf_reset(out);
	buf_printf(out, "error: %.200s is not UTF-8 text (%lld bytes; a binary "
	    "file?); read_file returns text only", path,
	    (long long)st->st_size);
	return -1;
}

/*
 * read_file: the whole file, or its first (head) or last (tail) lines.
 * At most max bytes are read; a bigger file gives its first max bytes
 * (its last, for tail) and a note that says so.
 */
int
files_read(int root, const char *path, unsigned long head, unsigned long tail,
    size_t max, struct buf *out)
{
	struct stat	 st;
	char		*data, *p;
	size_t		 len, whole, skip = 0, end;
	off_t		 off;
	bool		 cut, short_end, all = true;
	int		 fd;

	if ((fd = files_open_read(root, path, &st, out)) == -1)
		return -1;
	if (files_take(fd, &st, tail, max, &data, &len, &off) == -1) {
		close(fd);
		return files_error(out, path, errno);
	}
	close(fd);
	short_end = off + (off_t)len < st.st_size;
	cut = off > 0 || short_end;
	/* A window that starts inside a character starts after it. */
	while (off > 0 && skip < len && skip < 3 &&
	    ((unsigned char)data[skip] & 0xc0) == 0x80)
		skip++;
	p = data + skip;
	len -= skip;
	if (!text_utf8(p, len, &whole) || (whole < len && !short_end)) {
		free(data);
		return files_not_text(out, path, &st);
	}
	len = whole;
	end = len;
	if (head > 0)
		end = files_head_end(p, len, head, &all);
	else if (tail > 0) {
		skip = files_tail_start(p, len, tail, &all);
		p += skip;
		end = len - skip;
	}
	if (end == 0 && st.st_size == 0)
		buf_printf(out, "[read_file: %.200s is empty]", path);
	else if (text_add_capped(out, p, end))
		buf_printf(out, "\n[read_file: cut at the tool output cap of "
		    "%zu bytes; read fewer lines with head or tail]", out->max);
	else if (cut && (head == 0 || !all) && (tail == 0 || !all))
		buf_printf(out, "\n[read_file: the file has %lld bytes; only "
		    "the %s %zu were read (HEAVY_MAX_READ_BYTES)]",
		    (long long)st.st_size, tail > 0 ? "last" : "first", len);
	free(data);
	return 0;
}

/* One path component of dir, [start, end), made if missing. */
static int
files_step(int root, int parent, const char *dir, size_t start, size_t end)
{
	char	*prefix = xstrndup(dir, end), *name;
	int	 fd, saved;

	fd = files_openat2(root, prefix, O_PATH | O_DIRECTORY, 0);
	if (fd == -1 && errno == ENOENT) {
		name = xstrndup(dir + start, end - start);
		/* One name in a directory already resolved beneath root;
		 * mkdirat never follows a link in that last name. */
		if (mkdirat(parent, name, 0700) == 0 || errno == EEXIST)
			fd = files_openat2(root, prefix, O_PATH | O_DIRECTORY,
			    0);
		free(name);
	}
	saved = errno;
	free(prefix);
	errno = saved;
	return fd;
}

/* The directory part of a path, beneath root, missing parts created one
 * step at a time, each step resolved again by the kernel beneath root. */
static int
files_open_dir(int root, const char *dir)
{
	size_t	start, end = 0;
	int	fd, parent, saved;

	fd = files_openat2(root, dir[0] ? dir : ".", O_PATH | O_DIRECTORY, 0);
	if (fd != -1 || errno != ENOENT)
		return fd;
	if ((parent = files_openat2(root, ".", O_PATH | O_DIRECTORY, 0)) == -1)
		return -1;
	for (;;) {
		for (start = end; dir[start] == '/'; start++)
			;
		if (dir[start] == '\0')
			return parent;
		end = start + strcspn(dir + start, "/");
		fd = files_step(root, parent, dir, start, end);
		saved = errno;
		close(parent);
		errno = saved;
		if ((parent = fd) == -1)
			return -1;
	}
}

/* A fresh name for the temporary, unlikely to exist and never reused. */
static void
files_tmpname(char *name, size_t len)
{
	uint64_t	r = 0;

	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint64_t)now_ms() ^ (uint64_t)getpid() << 32;
	snprintf(name, len, TOOL_TMP_PREFIX "%016llx", (unsigned long long)r);
}

static int
files_write_all(int fd, const char *p, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The temporary, filled, then renamed over name in dfd; removed on error. */
static int
files_replace(int dfd, const char *name, const char *p, size_t len)
{
	char	tmp[64];
	int	fd, saved;

	files_tmpname(tmp, sizeof tmp);
	fd = files_openat2(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd == -1)
		return -1;
	if (files_write_all(fd, p, len) == -1) {
		saved = errno;
		close(fd);
		goto fail;
	}
	if (close(fd) == -1 || renameat(dfd, tmp, dfd, name) == -1) {
		saved = errno;
		goto fail;
	}
	return 0;
fail:
	unlinkat(dfd, tmp, 0);
	errno = saved;
	return -1;
}

/* write_file: the content replaces path atomically, within max bytes. */
int
files_write(int root, const char *path, const char *content, size_t len,
    size_t max, struct buf *out)
{
	const char	*slash = strrchr(path, '/');
	const char	*name = slash ? slash + 1 : path;
	char		*dir = xstrndup(path, slash ? (size_t)(slash - path) : 0);
	int		 dfd, rc;

	if (len > max) {
		free(dir);
		buf_printf(out, "error: the content is %zu bytes; write_file "
		    "takes at most %zu (HEAVY_MAX_WRITE_BYTES)", len, max);
		return -1;
	}
	if (name[0] == '\0' || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		free(dir);
		buf_printf(out, "error: %.200s: the path must end with a file "
		    "name", path);
		return -1;
	}
	/* "/x" has an empty directory part that is not the workspace. */
	dfd = files_open_dir(root, slash == path ? "/" : dir);
	free(dir);
	if (dfd == -1)
		return files_error(out, path, errno);
	rc = files_replace(dfd, name, content, len);
	if (rc == -1)
		files_error(out, path, errno);
	else
		buf_printf(out, "wrote %zu bytes to %.200s", len, path);
	close(dfd);
	return rc;
}

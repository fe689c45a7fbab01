/*
 * read_file and write_file against hostile paths and contents: traversal,
 * absolute paths, symbolic links out of the workspace (to a file, to a
 * directory), links that stay inside, huge and binary files, head/tail
 * edges, and writes that fail halfway leaving nothing behind.
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../worker/worker.h"
#include "tmpdir.h"

static char	top[PATH_MAX], ws[PATH_MAX + 16], outside[PATH_MAX + 16];
static int	root = -1;
static struct buf out;

static void
put(const char *dir, const char *name, const char *data, size_t len)
{
	char	p[PATH_MAX * 2];
	FILE	*f;

	snprintf(p, sizeof p, "%s/%s", dir, name);
	cr_assert_not_null(f = fopen(p, "w"), "%s", p);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void
link_in(const char *target, const char *name)
{
	char	p[PATH_MAX * 2];

	snprintf(p, sizeof p, "%s/%s", ws, name);
	cr_assert_eq(symlink(target, p), 0, "%s", p);
}

/*
 * top/ws:      inside.txt, sub/, in_link -> inside.txt, sub_link -> sub,
 *              out_abs -> top/outside/secret.txt, out_rel -> ../outside/
 *              secret.txt, out_dir -> ../outside, loop -> loop
 * top/outside: secret.txt
 */
static void
setup(void)
{
	char	p[PATH_MAX * 2];

	unit_tmp(top, sizeof top, "heavyd-files");
	cr_assert_not_null(mkdtemp(top));
	snprintf(ws, sizeof ws, "%s/ws", top);
	snprintf(outside, sizeof outside, "%s/outside", top);
	cr_assert_eq(mkdir(ws, 0700), 0);
	cr_assert_eq(mkdir(outside, 0700), 0);
	snprintf(p, sizeof p, "%s/sub", ws);
	cr_assert_eq(mkdir(p, 0700), 0);
	put(ws, "inside.txt", "hello\n", 6);
	put(outside, "secret.txt", "SECRET\n", 7);
	link_in("inside.txt", "in_link");
	link_in("sub", "sub_link");
	snprintf(p, sizeof p, "%s/secret.txt", outside);
	link_in(p, "out_abs");
	link_in("../outside/secret.txt", "out_rel");
	link_in("../outside", "out_dir");
	link_in("loop", "loop");
	root = open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC);	/* as the worker */
	cr_assert_neq(root, -1);
	buf_init(&out, 64 << 10);
}

static void
teardown(void)
{
	char	cmd[PATH_MAX + 32];

	buf_free(&out);
	close(root);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
	cr_assert_eq(system(cmd), 0);
}

static const char *
rd(const char *path, unsigned long head, unsigned long tail, size_t max,
    int *rc)
{
	buf_reset(&out);
	*rc = files_read(root, path, head, tail, max, &out);
	return buf_cstr(&out);
}

static const char *
wr(const char *path, const char *content, int *rc)
{
	buf_reset(&out);
	*rc = files_write(root, path, content, strlen(content), 1 << 20, &out);
	return buf_cstr(&out);
}

/* The names in a directory, sorted and comma-separated. */
static char *
ls(const char *dir)
{
	struct dirent	**list;
	struct buf	  b;
	int		  n = scandir(dir, &list, NULL, alphasort);

	cr_assert_neq(n, -1, "%s", dir);
	buf_init(&b, 0);
	for (int i = 0; i < n; i++) {
		if (strcmp(list[i]->d_name, ".") != 0 &&
		    strcmp(list[i]->d_name, "..") != 0)
			buf_printf(&b, "%s%s", b.len ? "," : "", list[i]->d_name);
		free(list[i]);
	}
	free(list);
	return buf_release(&b);
}

static void
assert_ls(const char *dir, const char *want)
{
	char	*names = ls(dir);

	cr_assert_str_eq(names, want, "a temporary was left behind?");
	free(names);
}

static void
assert_outside_untouched(void)
{
	char	*names = ls(outside);
	char	 p[PATH_MAX * 2], data[16] = "";
	FILE	*f;

	cr_assert_str_eq(names, "secret.txt");
	free(names);
	snprintf(p, sizeof p, "%s/secret.txt", outside);
	f = fopen(p, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(data, sizeof data, f));
	fclose(f);
	cr_assert_str_eq(data, "SECRET\n");
}

TestSuite(files, .init = setup, .fini = teardown);

Test(files, traversal_is_refused_by_the_kernel)
{
	static const char *bad[] = { "../outside/secret.txt",
	    "sub/../../outside/secret.txt", "..", "sub/../..",
	    "./../ws/../outside/secret.txt" };
	int	rc;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rd(bad[i], 0, 0, 1 << 20, &rc);
		cr_assert_eq(rc, -1, "%s", bad[i]);
		cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"),
		    "%s: %s", bad[i], buf_cstr(&out));
	}
	/* ".." that stays beneath the workspace is fine. */
	cr_assert_str_eq(rd("sub/../inside.txt", 0, 0, 1 << 20, &rc), "hello\n");
	cr_assert_eq(rc, 0);
}

Test(files, absolute_paths_are_refused_even_into_the_workspace)
{
	char	p[PATH_MAX * 2];
	int	rc;

	rd("/etc/passwd", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"));
	snprintf(p, sizeof p, "%s/inside.txt", ws);
	rd(p, 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"));
	wr("/tmp/heavyd-should-not-exist", "x", &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"));
	cr_assert_eq(access("/tmp/heavyd-should-not-exist", F_OK), -1);
}

Test(files, symlinks_leading_out_are_refused)
{
	static const char *bad[] = { "out_abs", "out_rel", "out_dir/secret.txt",
	    "sub_link/../out_rel" };
	int	rc;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rd(bad[i], 0, 0, 1 << 20, &rc);
		cr_assert_eq(rc, -1, "%s", bad[i]);
		cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"),
		    "%s: %s", bad[i], buf_cstr(&out));
		cr_assert_null(strstr(buf_cstr(&out), "SECRET"));
	}
	rd("loop", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "loops through symbolic links"),
	    "%s", buf_cstr(&out));
}

Test(files, writes_through_links_leading_out_are_refused)
{
	int	rc;

	wr("out_dir/new.txt", "x", &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"));
	wr("out_dir/deeper/new.txt", "x", &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"));
	wr("../outside/secret.txt", "pwned", &rc);
	cr_assert_eq(rc, -1);
	assert_outside_untouched();
}

Test(files, writing_over_a_link_replaces_the_link_not_its_target)
{
	char		p[PATH_MAX * 2];
	struct stat	st;
	int		rc;

	cr_assert_str_eq(wr("out_abs", "mine", &rc), "wrote 4 bytes to out_abs");
	cr_assert_eq(rc, 0);
	assert_outside_untouched();
	snprintf(p, sizeof p, "%s/out_abs", ws);
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_str_eq(rd("out_abs", 0, 0, 1 << 20, &rc), "mine");
}

Test(files, links_that_stay_inside_are_followed)
{
	int	rc;

	cr_assert_str_eq(rd("in_link", 0, 0, 1 << 20, &rc), "hello\n");
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(wr("sub_link/x.txt", "via link", &rc),
	    "wrote 8 bytes to sub_link/x.txt");
	cr_assert_str_eq(rd("sub/x.txt", 0, 0, 1 << 20, &rc), "via link");
}

Test(files, missing_directories_are_created_beneath_the_workspace)
{
	char		p[PATH_MAX * 2];
	struct stat	st;
	int		rc;

	cr_assert_str_eq(wr("a/b//c/./d.txt", "deep", &rc),
	    "wrote 4 bytes to a/b//c/./d.txt");
	cr_assert_eq(rc, 0);
	snprintf(p, sizeof p, "%s/a/b/c", ws);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_str_eq(rd("a/b/c/d.txt", 0, 0, 1 << 20, &rc), "deep");
	/* A ".." inside a missing path still cannot climb out. */
	wr("n/../../escape.txt", "x", &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "path escapes the workspace"));
	snprintf(p, sizeof p, "%s/escape.txt", top);
	cr_assert_eq(access(p, F_OK), -1);
	wr("inside.txt/x", "x", &rc);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "not a directory"), "%s",
	    buf_cstr(&out));
}

Test(files, write_paths_must_name_a_file)
{
	static const char *bad[] = { "sub/", "sub/.", "sub/..", "." };
	int	rc;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		wr(bad[i], "x", &rc);
		cr_assert_eq(rc, -1, "%s", bad[i]);
		cr_assert(strstr(buf_cstr(&out), "must end with a file name"),
		    "%s: %s", bad[i], buf_cstr(&out));
	}
	wr("sub", "x", &rc);	/* a directory is not replaced */
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "is a directory"), "%s",
	    buf_cstr(&out));
	assert_ls(ws, "in_link,inside.txt,loop,out_abs,out_dir,out_rel,sub,"
	    "sub_link");
}

Test(files, a_write_that_fails_halfway_leaves_no_temporary)
{
	struct rlimit	rl = { 1000, 1000 };
	char		big[4000];
	int		rc;

	memset(big, 'y', sizeof big);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	buf_reset(&out);
	rc = files_write(root, "inside.txt", big, sizeof big, 1 << 20, &out);
	cr_assert_eq(rc, -1);
	cr_assert(strstr(buf_cstr(&out), "too large"), "%s", buf_cstr(&out));
	assert_ls(ws, "in_link,inside.txt,loop,out_abs,out_dir,out_rel,sub,"
	    "sub_link");
	cr_assert_str_eq(rd("inside.txt", 0, 0, 1 << 20, &rc), "hello\n",
	    "the old file was damaged");
}

Test(files, write_size_cap)
{
	char	big[2048];
	int	rc;

	memset(big, 'z', sizeof big);
	buf_reset(&out);
	rc = files_write(root, "big.txt", big, sizeof big, 1024, &out);
	cr_assert_eq(rc, -1);
	cr_assert_str_eq(buf_cstr(&out), "error: the content is 2048 bytes; "
	    "write_file takes at most 1024 (HEAVY_MAX_WRITE_BYTES)");
	rd("big.txt", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1, "a refused write created the file");
	buf_reset(&out);
	cr_assert_eq(files_write(root, "big.txt", big, 1024, 1024, &out), 0);
}

Test(files, a_huge_file_gives_its_start_and_says_so)
{
	static char	big[5000];
	int		rc;

	memset(big, 'a', 5000);
	put(ws, "huge.txt", big, 5000);
	rd("huge.txt", 0, 0, 1024, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strspn(buf_cstr(&out), "a"), 1024);
	cr_assert(strstr(buf_cstr(&out), "\n[read_file: the file has 5000 "
	    "bytes; only the first 1024 were read (HEAVY_MAX_READ_BYTES)]"),
	    "%s", buf_cstr(&out) + 1024);
	/* The tool output cap is the other bound, and it says so too. */
	buf_free(&out);
	buf_init(&out, 600);
	rc = files_read(root, "huge.txt", 0, 0, 1 << 20, &out);
	cr_assert_eq(rc, 0);
	cr_assert_leq(out.len, 600);
	cr_assert(strstr(buf_cstr(&out), "cut at the tool output cap of 600"),
	    "%s", buf_cstr(&out));
}

Test(files, head_and_tail_edges)
{
	int	rc;

	put(ws, "l.txt", "a\nb\nc\n", 6);
	put(ws, "n.txt", "a\nb\nc", 5);
	put(ws, "e.txt", "", 0);
	put(ws, "blank.txt", "\n\n", 2);
	cr_assert_str_eq(rd("l.txt", 1, 0, 1 << 20, &rc), "a\n");
	cr_assert_str_eq(rd("l.txt", 2, 0, 1 << 20, &rc), "a\nb\n");
	cr_assert_str_eq(rd("l.txt", 3, 0, 1 << 20, &rc), "a\nb\nc\n");
	cr_assert_str_eq(rd("l.txt", 99, 0, 1 << 20, &rc), "a\nb\nc\n");
	cr_assert_str_eq(rd("l.txt", 0, 1, 1 << 20, &rc), "c\n");
	cr_assert_str_eq(rd("l.txt", 0, 2, 1 << 20, &rc), "b\nc\n");
	cr_assert_str_eq(rd("l.txt", 0, 99, 1 << 20, &rc), "a\nb\nc\n");
	cr_assert_str_eq(rd("n.txt", 0, 1, 1 << 20, &rc), "c");
	cr_assert_str_eq(rd("n.txt", 2, 0, 1 << 20, &rc), "a\nb\n");
	cr_assert_str_eq(rd("n.txt", 5, 0, 1 << 20, &rc), "a\nb\nc");
	cr_assert_str_eq(rd("blank.txt", 0, 1, 1 << 20, &rc), "\n");
	cr_assert_str_eq(rd("e.txt", 0, 0, 1 << 20, &rc),
	    "[read_file: e.txt is empty]");
	cr_assert_str_eq(rd("e.txt", 0, 3, 1 << 20, &rc),
	    "[read_file: e.txt is empty]");
	cr_assert_eq(rc, 0);
}

Test(files, head_and_tail_of_a_file_past_the_cap)
{
	struct buf	b;
	int		rc;

	buf_init(&b, 0);
	for (int i = 1; i <= 1000; i++)
		buf_printf(&b, "line %d\n", i);
	put(ws, "many.txt", b.data, b.len);
	/* The lines asked for fit in the cap: no note. */
	cr_assert_str_eq(rd("many.txt", 2, 0, 1024, &rc), "line 1\nline 2\n");
	cr_assert_str_eq(rd("many.txt", 0, 2, 1024, &rc),
	    "line 999\nline 1000\n");
	/* They do not: what was read, and a note. */
	rd("many.txt", 0, 900, 1024, &rc);
	cr_assert_eq(rc, 0);
	cr_assert(strstr(buf_cstr(&out), "line 1000\n\n[read_file: the file "
	    "has "), "%s", buf_cstr(&out));
	cr_assert(strstr(buf_cstr(&out), "only the last 1024 were read"));
	buf_free(&b);
}

Test(files, binary_and_non_utf8_content_is_named_not_sent)
{
	int	rc;

	put(ws, "nul.bin", "abc\0def", 7);
	put(ws, "latin1.txt", "caf\xe9\n", 5);
	put(ws, "overlong.txt", "\xc0\xaf", 2);
	put(ws, "cut.txt", "caf\xc3", 4);
	put(ws, "utf8.txt", "caf\xc3\xa9 \xe2\x82\xac\n", 10);
	rd("nul.bin", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1);
	cr_assert_str_eq(buf_cstr(&out), "error: nul.bin is not UTF-8 text "
	    "(7 bytes; a binary file?); read_file returns text only");
	rd("latin1.txt", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1);
	rd("overlong.txt", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1);
	rd("cut.txt", 0, 0, 1 << 20, &rc);
	cr_assert_eq(rc, -1, "a file that ends inside a character");
	cr_assert_str_eq(rd("utf8.txt", 0, 0, 1 << 20, &rc),
	    "caf\xc3\xa9 \xe2\x82\xac\n");
}

Test(files, a_cap_never_splits_a_character)
{
	struct buf	b;
	const char	*s;
	int		rc;

	buf_init(&b, 0);
	for (int i = 0; i < 1000; i++)
		buf_addstr(&b, "\xe2\x82\xac");		/* 3 bytes each */
	put(ws, "euro.txt", b.data, b.len);
	s = rd("euro.txt", 0, 0, 1024, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strstr(s, "\n[read_file") - s, 1023, "%s", s);
	s = rd("euro.txt", 0, 1, 1024, &rc);	/* the window starts mid-character */
	cr_assert_eq(rc, 0);
	cr_assert_eq((unsigned char)s[0], 0xe2);
	cr_assert_eq(strstr(s, "\n[read_file") - s, 1023, "%s", s);
	buf_free(&b);
}

Test(files, other_errors_say_what_is_wrong)
{
	char	p[PATH_MAX * 2];
	int	rc;

	rd("nope.txt", 0, 0, 1 << 20, &rc);
	cr_assert_str_eq(buf_cstr(&out), "error: nope.txt: no such file or "
	    "directory");
	rd("sub", 0, 0, 1 << 20, &rc);
	cr_assert_str_eq(buf_cstr(&out), "error: sub: is a directory");
	snprintf(p, sizeof p, "%s/fifo", ws);
	cr_assert_eq(mkfifo(p, 0600), 0);
	rd("fifo", 0, 0, 1 << 20, &rc);	/* must not block */
	cr_assert_str_eq(buf_cstr(&out), "error: fifo: not a regular file");
	cr_assert_eq(rc, -1);
}

Test(files, utf8_check)
{
	size_t	whole;

	cr_assert_eq(text_utf8("ascii", 5, &whole), 1);
	cr_assert_eq(whole, 5);
	cr_assert_eq(text_utf8("caf\xc3", 4, &whole), 1);
	cr_assert_eq(whole, 3, "an incomplete last character is not whole");
	cr_assert_eq(text_utf8("\xed\xa0\x80", 3, &whole), 0, "a surrogate");
	cr_assert_eq(text_utf8("\xf4\x90\x80\x80", 4, &whole), 0, "past U+10FFFF");
	cr_assert_eq(text_utf8("a\0b", 3, &whole), 0, "a NUL");
	cr_assert_eq(text_fit("a\xc3\xa9", 3, 2), 1);
	cr_assert_eq(text_fit("a\xc3\xa9", 3, 3), 3);
}

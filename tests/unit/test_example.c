/*
 * common/config.yaml.example, the configuration make install puts beside
 * heavyd's: it loads as it is, every key it shows is at its default (with
 * its "#" removed it loads to exactly the built-in configuration), and no
 * key heavyd knows is missing from it.
 */
#include <criterion/criterion.h>
#include <sys/mman.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"

#define EXAMPLE	"common/config.yaml.example"

static char *
slurp(const char *path)
{
	FILE	*f = fopen(path, "r");
	char	*text;
	long	 n;

	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = xmalloc((size_t)n + 1);
	cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* The example with each "#" key line made live; "##" lines stay prose. */
static char *
uncomment(const char *text)
{
	struct buf	out;
	const char	*line, *end;

	buf_init(&out, 0);
	for (line = text; *line != '\0'; line = end) {
		end = line + strcspn(line, "\n");
		end += *end == '\n';
		if (line[0] == '#' && line[1] != '#')
			line++;
		buf_add(&out, line, (size_t)(end - line));
	}
	return buf_release(&out);
}

/* The configuration a text loads to, as --check-config prints it. */
static char *
loaded(const char *text)
{
	struct heavy_config	c;
	char			path[64], err[512], *out = NULL;
	size_t			len = 0;
	FILE			*f;
	int			fd = memfd_create("example", MFD_CLOEXEC);

	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	config_defaults(&c);
	if (text != NULL)
		cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0,
		    "%s", err);
	close(fd);
	cr_assert_not_null(f = open_memstream(&out, &len));
	config_print(&c, "-", f);
	fclose(f);
	config_clear(&c);
	return out;
}

Test(example, loads_to_the_defaults_commented_and_not)
{
	char	*text = slurp(EXAMPLE), *live = uncomment(text);
	char	*want = loaded(""), *as_is = loaded(text), *got = loaded(live);

	cr_assert_str_eq(as_is, want, "the example as it is");
	cr_assert_str_eq(got, want, "every key shown is at its default");
	free(text);
	free(live);
	free(want);
	free(as_is);
	free(got);
}

Test(example, names_every_key)
{
	char		*text = slurp(EXAMPLE), name[64], needle[96];
	const char	*key, *leaf;

	for (size_t i = 0; config_knob_name(i, name, sizeof name) != NULL;
	    i++) {
		snprintf(needle, sizeof needle, "\n#  %s: ", name);
		cr_assert_not_null(strstr(text, needle), "limits.%s", name);
	}
	for (size_t i = 0; (key = config_file_key(i)) != NULL; i++) {
		leaf = strrchr(key, '.') ? strrchr(key, '.') + 1 : key;
		snprintf(needle, sizeof needle, "%s:", leaf);
		cr_assert_not_null(strstr(text, needle), "%s", key);
	}
	free(text);
}

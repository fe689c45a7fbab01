/* tools.compat: on by default, off from the file or the environment. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"
#include "tmpdir.h"

Test(toolscompat, on_by_default_and_off_from_the_environment)
{
	struct heavy_config	c;
	char			err[256];

	config_defaults(&c);
	cr_assert_eq(c.tools_compat, 1);
	setenv("HEAVY_TOOLS_COMPAT", "0", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.tools_compat, 0);
	setenv("HEAVY_TOOLS_COMPAT", "maybe", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "HEAVY_TOOLS_COMPAT") != NULL, "%s", err);
	unsetenv("HEAVY_TOOLS_COMPAT");
	config_clear(&c);
}

Test(toolscompat, off_from_the_file_and_shown)
{
	struct heavy_config	c;
	char			path[256], err[512];
	char			*out = NULL;
	const char		*yaml = "tools:\n  compat: false\n";
	size_t			 len = 0;
	FILE			*f;
	int			 fd;

	unit_tmp(path, sizeof path, "heavyd-compat");
	cr_assert_neq(fd = mkstemp(path), -1);
	cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	config_defaults(&c);
	cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "%s", err);
	unlink(path);
	cr_assert_eq(c.tools_compat, 0);
	cr_assert_not_null(f = open_memstream(&out, &len));
	config_print(&c, "test", f);
	fclose(f);
	cr_assert(strstr(out, "\ntools.compat: false\n") != NULL, "%s", out);
	free(out);
	config_clear(&c);
}

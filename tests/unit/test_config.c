/* Configuration from the environment: limits are settable and checked. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"

Test(config, defaults_match_make_it_heavy)
{
	struct heavy_config	c;

	config_defaults(&c);
	cr_assert_str_eq(c.base_url, "https://openrouter.ai/api/v1");
	cr_assert_str_eq(c.model, "moonshotai/kimi-k2");
	cr_assert_eq(c.max_iterations, 10);
	cr_assert_eq(c.num_agents, 4);
	cr_assert_eq(c.task_timeout_s, 300);
	config_clear(&c);
}

Test(config, env_overrides_and_limits)
{
	struct heavy_config	c;
	char			err[256];

	config_defaults(&c);
	setenv("HEAVY_BASE_URL", "http://127.0.0.1:9/v1", 1);
	setenv("HEAVY_MODEL", "mock/model", 1);
	setenv("HEAVY_MAX_LINE_BYTES", "2048", 1);
	setenv("HEAVY_MAX_WORKERS", "8", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.base_url, "http://127.0.0.1:9/v1");
	cr_assert_str_eq(c.model, "mock/model");
	cr_assert_eq(c.max_line_bytes, 2048);
	cr_assert_eq(c.max_workers, 8);
	config_clear(&c);
}

Test(config, bad_values_name_the_variable)
{
	static const char *bad[] = { "0", "-5", "12x", "", "99999999999",
	    " 4", "4 ", "\t4" };
	struct heavy_config	c;
	char			err[256];

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		config_defaults(&c);
		setenv("HEAVY_MAX_WORKERS", bad[i], 1);
		if (bad[i][0] == '\0') {	/* empty means unset */
			cr_assert_eq(config_from_env(&c, err, sizeof err), 0);
		} else {
			cr_assert_eq(config_from_env(&c, err, sizeof err), -1,
			    "%s accepted", bad[i]);
			cr_assert(strstr(err, "HEAVY_MAX_WORKERS") != NULL);
		}
		config_clear(&c);
	}
	unsetenv("HEAVY_MAX_WORKERS");
}

Test(config, stray_spaces_in_a_cost_are_refused)
{
	struct heavy_config	c;
	char			err[256];

	config_defaults(&c);
	setenv("HEAVY_MAX_COST_USD", " 1.5", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "HEAVY_MAX_COST_USD") != NULL, "%s", err);
	unsetenv("HEAVY_MAX_COST_USD");
	config_clear(&c);
}

/* The error names the variable the user set, not the internal field. */
Test(config, a_bad_base_url_is_named_by_its_variable)
{
	static const char *bad[] = { "not-a-url", "ftp://x", "http://",
	    "http:///path", "https://a b/" };
	struct heavy_config	c;
	char			err[256];

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		config_defaults(&c);
		setenv("HEAVY_BASE_URL", bad[i], 1);
		cr_assert_eq(config_from_env(&c, err, sizeof err), -1,
		    "%s accepted", bad[i]);
		cr_assert(strncmp(err, "HEAVY_BASE_URL: ", 16) == 0, "%s", err);
		config_clear(&c);
	}
	config_defaults(&c);
	setenv("HEAVY_BASE_URL", "HTTP://127.0.0.1:9/v1", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	unsetenv("HEAVY_BASE_URL");
	config_clear(&c);
}

Test(config, dup_is_independent)
{
	struct heavy_config	c, *d;

	config_defaults(&c);
	d = config_dup(&c);
	free(d->model);
	d->model = strdup("other");
	d->num_agents = 9;
	cr_assert_str_eq(c.model, "moonshotai/kimi-k2");
	cr_assert_eq(c.num_agents, 4);
	config_free(d);
	config_clear(&c);
}

/* store.url: a postgresql:// URL, its password never shown. */
Test(config, store_url_checked_and_masked)
{
	static const char	*bad[] = { "mysql://db/h", "postgresql://db/h x",
	    "postgresql://db/h?sslmode=require&password=s3cretpass" };
	struct heavy_config	c;
	char			err[256], *text = NULL;
	size_t			len = 0;
	FILE			*f;

	config_defaults(&c);
	cr_assert_null(c.store_url, "SQLite is the default");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		setenv("HEAVY_STORE_URL", bad[i], 1);
		cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
		cr_assert_eq(config_check(&c, err, sizeof err), -1, "%s", bad[i]);
		cr_assert(strncmp(err, "HEAVY_STORE_URL: ", 17) == 0, "%s", err);
		cr_assert(strstr(err, "s3cretpass") == NULL, "%s", err);
	}
	setenv("HEAVY_STORE_URL", "postgresql://heavyd:s3cretpass@db:5432/h", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	unsetenv("HEAVY_STORE_URL");
	cr_assert_eq(config_check(&c, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.store_url, "postgresql://heavyd:s3cretpass@db:5432/h");
	cr_assert_not_null(f = open_memstream(&text, &len));
	config_print(&c, "test", f);
	fclose(f);
	cr_assert(strstr(text, "s3cretpass") == NULL, "%s", text);
	cr_assert(strstr(text, "\nstore.url: postgresql://[redacted]@db:5432/h\n")
	    != NULL, "%s", text);
	free(text);
	config_clear(&c);
}

/* ca_file: a file heavyd-egress can read, else a configuration error that
 * names the variable and the file. */
Test(config, ca_file_must_be_readable)
{
	struct heavy_config	c;
	char			err[512];

	config_defaults(&c);
	cr_assert_null(c.ca_file);
	setenv("HEAVY_CA_FILE", "/nonexistent/heavyd-ca.pem", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	cr_assert_eq(config_check(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "HEAVY_CA_FILE: /nonexistent/heavyd-ca.pem: "
	    "No such file or directory") != NULL, "%s", err);
	config_clear(&c);
	config_defaults(&c);
	setenv("HEAVY_CA_FILE", "/dev/null", 1);
	cr_assert_eq(config_from_env(&c, err, sizeof err), 0, "%s", err);
	cr_assert_eq(config_check(&c, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.ca_file, "/dev/null");
	config_clear(&c);
	unsetenv("HEAVY_CA_FILE");
}

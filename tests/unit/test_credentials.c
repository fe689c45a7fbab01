/*
 * The API keys from systemd credentials ($CREDENTIALS_DIRECTORY, which
 * LoadCredential= fills): the precedence OPENROUTER_API_KEY, the
 * credential openrouter_api_key, openrouter.api_key, api_key_file; and
 * the brave backend satisfied by the credential search_api_key.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"

static char			dir[256], path[300];
static struct heavy_config	c;

static void
setup(void)
{
	cr_assert_not_null(mkdtemp((char *)unit_tmp(dir, sizeof dir,
	    "credentials")));
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	unsetenv("OPENROUTER_API_KEY");
	unsetenv("HEAVY_SEARCH_API_KEY");
	config_defaults(&c);
	c.config_file = "/etc/heavyd/config.yaml";
}

static void
teardown(void)
{
	const char	*names[] = { HEAVY_CRED_API_KEY, HEAVY_CRED_SEARCH_KEY };

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	config_clear(&c);
}

TestSuite(credentials, .init = setup, .fini = teardown);

static void
credential(const char *name, const char *text)
{
	FILE	*f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

/* The key server_key_check takes, or its error. */
static const char *
key(void)
{
	static char	 why[1024], out[256];
	char		*k = NULL;

	if (server_key_check(&c, &k, why, sizeof why) == -1)
		return why;
	snprintf(out, sizeof out, "%s", k);
	free(k);
	return out;
}

Test(credentials, the_credential_comes_after_the_environment_before_the_file)
{
	config_set_str(&c.api_key, "from-the-file");
	cr_assert_str_eq(key(), "from-the-file");
	credential(HEAVY_CRED_API_KEY, "from-the-credential\n");
	cr_assert_str_eq(key(), "from-the-credential");
	setenv("OPENROUTER_API_KEY", "from-the-environment", 1);
	cr_assert_str_eq(key(), "from-the-environment");
	unsetenv("OPENROUTER_API_KEY");
	unsetenv("CREDENTIALS_DIRECTORY");	/* not under systemd */
	cr_assert_str_eq(key(), "from-the-file");
}

Test(credentials, an_empty_credential_is_no_key_and_says_so)
{
	config_set_str(&c.api_key, "from-the-file");
	credential(HEAVY_CRED_API_KEY, "\n");
	cr_assert(strstr(key(), "no API key (the credential ") == key(),
	    "%s", key());
	cr_assert(strstr(key(), "/" HEAVY_CRED_API_KEY " is empty): set "
	    "OPENROUTER_API_KEY, the credential openrouter_api_key, ") != NULL,
	    "%s", key());
}

Test(credentials, the_brave_backend_takes_its_key_from_the_credential)
{
	char	err[512];

	config_set_str(&c.search_backend, "brave");
	cr_assert_eq(config_check(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "the credential search_api_key") != NULL, "%s",
	    err);
	credential(HEAVY_CRED_SEARCH_KEY, "token\n");
	cr_assert_eq(config_check(&c, err, sizeof err), 0, "%s", err);
}

Test(credentials, check_config_says_where_the_key_comes_from)
{
	char	*text = NULL;
	size_t	 len = 0;
	FILE	*f = open_memstream(&text, &len);

	credential(HEAVY_CRED_API_KEY, "k\n");
	config_print(&c, "-", f);
	fclose(f);
	cr_assert(strstr(text, "\napi_key: (from the credential "
	    "openrouter_api_key, masked)\n") != NULL, "%s", text);
	free(text);
}

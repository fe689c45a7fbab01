/* The secrets heavyd holds, masked out of text that came from outside. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"

static void
teardown(void)
{
	secret_clear();
}

TestSuite(secret, .fini = teardown);

static char *
redact(const char *text)
{
	char	*s = xstrdup(text);

	secret_redact(&s);
	return s;
}

Test(secret, every_occurrence_of_every_secret)
{
	char	*s;

	secret_add("sk-or-v1-0123456789abcdef");
	secret_add("brave-token-xyz");
	s = redact("key sk-or-v1-0123456789abcdef rejected; again "
	    "sk-or-v1-0123456789abcdef and brave-token-xyz.");
	cr_assert_str_eq(s, "key [redacted] rejected; again [redacted] and "
	    "[redacted].");
	free(s);
}

Test(secret, text_without_secrets_is_kept)
{
	char	*s, *before;

	secret_add("sk-or-v1-0123456789abcdef");
	before = s = xstrdup("sk-or-v1-0123 is only a prefix");
	secret_redact(&s);
	cr_assert_eq(s, before, "the string was replaced");
	free(s);
	s = NULL;
	secret_redact(&s);	/* NULL is nothing to do */
}

Test(secret, short_and_absent_secrets_are_not_registered)
{
	char	*s;

	secret_add(NULL);
	secret_add("");
	secret_add("k");	/* would cut every "k" out of an answer */
	s = redact("a kind of key");
	cr_assert_str_eq(s, "a kind of key");
	free(s);
}

Test(secret, url_credentials_masked_and_registered)
{
	char	*s;

	s = secret_url("https://alice:pa55word@example.org:8443/v1?x=@y");
	cr_assert_str_eq(s, "https://[redacted]@example.org:8443/v1?x=@y");
	free(s);
	s = secret_url("http://example.org/v1@x");	/* an @ in the path */
	cr_assert_str_eq(s, "http://example.org/v1@x");
	free(s);
	secret_add_url("https://alice:pa55word@example.org/v1");
	s = redact("cannot connect to https://alice:pa55word@example.org/v1");
	cr_assert_str_eq(s, "cannot connect to https://[redacted]@example.org/v1");
	free(s);
}

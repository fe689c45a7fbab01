/*
 * Signed session ids (sessionid.c): their form; a node under the shared
 * key tells another node's session (and names that node) from an id it
 * made itself and from one nobody made; without a shared key, or under
 * another key, every id not its own is unknown; a key too short is
 * refused, and the systemd credential session_key serves as the key file.
 */
#include <criterion/criterion.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../supervisor/supervisor.h"
#include "tmpdir.h"

static char			dir[256], keyfile[300], credfile[300];
static struct heavy_config	c;
static char			err[512];

static void
write_file(const char *path, const char *text)
{
	FILE	*f;

	cr_assert_not_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static void
setup(void)
{
	cr_assert_not_null(mkdtemp((char *)unit_tmp(dir, sizeof dir,
	    "sessionid")));
	snprintf(keyfile, sizeof keyfile, "%s/key", dir);
	snprintf(credfile, sizeof credfile, "%s/" HEAVY_CRED_SESSION_KEY, dir);
	write_file(keyfile, "0123456789abcdef0123456789abcdef0123456789abcdef\n");
	unsetenv("CREDENTIALS_DIRECTORY");
	config_defaults(&c);
}

static void
teardown(void)
{
	unlink(keyfile);
	unlink(credfile);
	rmdir(dir);
	c.node_id = NULL;
	c.http_session_key_file = NULL;
	config_clear(&c);
}

TestSuite(sessionid, .init = setup, .fini = teardown);

/* Starts as node (NULL: hostname:pid) with the key in path (NULL: none). */
static void
node(char *name, char *path)
{
	c.node_id = name;
	c.http_session_key_file = path;
	cr_assert_eq(sessionid_init(&c, err, sizeof err), 0, "%s", err);
}

Test(sessionid, form)
{
	char	 id[SESSIONID_MAX], id2[SESSIONID_MAX], who[SESSIONID_MAX];
	regex_t	 re;

	node("node 1/é", keyfile);
	sessionid_new(id);
	sessionid_new(id2);
	cr_assert_str_neq(id, id2);
	cr_assert_eq(regcomp(&re, "^node_1__+\\.[0-9a-f]{64}$", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, id, 0, NULL, 0), 0, "%s", id);
	regfree(&re);
	for (const char *p = id; *p != '\0'; p++)
		cr_assert(*p >= 0x21 && *p <= 0x7e, "visible ASCII: %s", id);
	cr_assert_eq(sessionid_check(id, who, sizeof who), SESSIONID_OURS);
	cr_assert_str_eq(sessionid_brief(id), id + strlen(id) - 64);
}

Test(sessionid, long_node_ids_are_cut)
{
	char	name[300], id[SESSIONID_MAX], who[SESSIONID_MAX];

	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	node(name, keyfile);
	sessionid_new(id);
	cr_assert_eq(strlen(id), SESSIONID_TAG_MAX + 1 + 64);
	cr_assert_eq(sessionid_check(id, who, sizeof who), SESSIONID_OURS);
}

Test(sessionid, foreign_under_the_shared_key)
{
	char	id[SESSIONID_MAX], bad[SESSIONID_MAX], who[SESSIONID_MAX] = "";

	node("node-1", keyfile);
	sessionid_new(id);
	node("node-2", keyfile);
	cr_assert_eq(sessionid_check(id, who, sizeof who), SESSIONID_FOREIGN);
	cr_assert_str_eq(who, "node-1");
	/* Any change to the tag, the random part or the MAC: nobody's. */
	for (size_t i = 0; i < strlen(id); i += 7) {
		strcpy(bad, id);
		bad[i] = bad[i] == '0' ? '1' : '0';
		cr_assert_eq(sessionid_check(bad, who, sizeof who),
		    SESSIONID_BAD, "%s", bad);
	}
	strcpy(bad, id);
	memcpy(bad, "node-2", 6);	/* claims to be ours: the MAC says no */
	cr_assert_eq(sessionid_check(bad, who, sizeof who), SESSIONID_BAD);
}

Test(sessionid, no_shared_key_no_foreign)
{
	char	id[SESSIONID_MAX], who[SESSIONID_MAX];

	node("node-1", NULL);
	sessionid_new(id);
	node("node-2", NULL);		/* a key of its own, drawn anew */
	cr_assert_eq(sessionid_check(id, who, sizeof who), SESSIONID_BAD);
	node("node-1", keyfile);
	sessionid_new(id);
	write_file(keyfile, "another key, another cluster, 32 bytes or more");
	node("node-2", keyfile);
	cr_assert_eq(sessionid_check(id, who, sizeof who), SESSIONID_BAD);
}

Test(sessionid, not_ids)
{
	const char	*bad[] = { "", "f", "ffffffffffffffffffffffffffffffff",
	    ".0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    "n.0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	    "n-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" };
	char		 who[SESSIONID_MAX];

	node("n", keyfile);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(sessionid_check(bad[i], who, sizeof who),
		    SESSIONID_BAD, "%s", bad[i]);
}

Test(sessionid, short_or_missing_key_refused)
{
	c.node_id = "n";
	write_file(keyfile, "too short\n");
	c.http_session_key_file = keyfile;
	cr_assert_eq(sessionid_init(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "http.session_key_file") != NULL, "%s", err);
	cr_assert(strstr(err, "32") != NULL, "%s", err);
	c.http_session_key_file = credfile;	/* not there */
	cr_assert_eq(sessionid_init(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "No such file") != NULL, "%s", err);
}

Test(sessionid, the_credential)
{
	char	id[SESSIONID_MAX], who[SESSIONID_MAX];

	node("node-1", keyfile);
	sessionid_new(id);
	write_file(credfile, "0123456789abcdef0123456789abcdef0123456789abcdef");
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	node("node-2", NULL);		/* the same bytes, as a credential */
	unsetenv("CREDENTIALS_DIRECTORY");
	cr_assert_eq(sessionid_check(id, who, sizeof who), SESSIONID_FOREIGN);
	cr_assert_str_eq(who, "node-1");
}

/*
 * Mcp-Session-Id values that any node of a cluster can read.
 *
 * An id is "<node tag>.<32 hex: 128 random bits><32 hex: a MAC>", the MAC
 * being HMAC-SHA-256, cut to 128 bits, of everything before it, under a
 * key the nodes share (http.session_key_file, or the systemd credential
 * session_key).  A node handed an id it does not hold can then tell a
 * session of another node (the balancer sent the client to the wrong
 * place: its stickiness is off) from an id nobody made.  Without a shared
 * key each process draws its own, and every id not its own is simply
 * unknown.  The id stays visible ASCII, as the MCP transport requires.
 */
#include <sys/random.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>

#include "supervisor.h"

#define SID_RAND_BYTES	16
#define SID_MAC_BYTES	16
#define SID_HEX_LEN	(2 * (SID_RAND_BYTES + SID_MAC_BYTES))
#define SID_KEY_MIN	32		/* bytes in a shared key */
#define SID_KEY_MAX	4096

static struct hmac_sha256_ctx	sid_mac;	/* keyed once */
static char			sid_tag[SESSIONID_TAG_MAX + 1];
static bool			sid_shared;

static void
sid_hex(char *out, const unsigned char *p, size_t n)
{
	static const char	digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* The MAC of the first len bytes of id, in hex (out: 2 * SID_MAC_BYTES + 1). */
static void
sid_sign(const char *id, size_t len, char *out)
{
	struct hmac_sha256_ctx	ctx = sid_mac;	/* the key's state, copied */
	unsigned char		mac[SID_MAC_BYTES];

	hmac_sha256_update(&ctx, len, (const uint8_t *)id);
	hmac_sha256_digest(&ctx, sizeof mac, mac);
	sid_hex(out, mac, sizeof mac);
}

/*
 * The node's tag: node_id, else hostname:pid; cut to SESSIONID_TAG_MAX,
 * and what is not [A-Za-z0-9._:@-] made '_' (a header must carry it).
 */
static void
sid_tag_init(const struct heavy_config *cfg)
{
	char	host[200] = "localhost";

	if (cfg->node_id != NULL && *cfg->node_id != '\0')
		snprintf(sid_tag, sizeof sid_tag, "%s", cfg->node_id);
	else {
		gethostname(host, sizeof host - 1);
		snprintf(sid_tag, sizeof sid_tag, "%.48s:%d", host,
		    (int)getpid());
	}
	for (char *p = sid_tag; *p != '\0'; p++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789._:@-", *p) == NULL)
			*p = '_';
}

/* The shared key from path into key; its length, or -1 and why. */
static ssize_t
sid_key_read(const char *what, const char *path, unsigned char *key,
    char *err, size_t errlen)
{
	FILE	*f;
	size_t	 n;

	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	n = fread(key, 1, SID_KEY_MAX, f);
	fclose(f);
	while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'))
		n--;
	if (n < SID_KEY_MIN || n == SID_KEY_MAX) {
		snprintf(err, errlen, "%s %s: a session key is %d to %d bytes "
		    "(e.g. openssl rand -hex 32), this one %zu", what, path,
		    SID_KEY_MIN, SID_KEY_MAX - 1, n);
		return -1;
	}
	return (ssize_t)n;
}

/*
 * The key: http.session_key_file, else the credential session_key, else
 * random bytes of this process's own.  0, or -1 and why.
 */
int
sessionid_init(const struct heavy_config *cfg, char *err, size_t errlen)
{
	unsigned char	 key[SID_KEY_MAX];
	char		 cred[4096];
	const char	*path = cfg->http_session_key_file, *what;
	ssize_t		 n = SID_KEY_MIN;

	what = "http.session_key_file";
	if (path == NULL && (path = config_credential(HEAVY_CRED_SESSION_KEY,
	    cred, sizeof cred)) != NULL)
		what = "the credential " HEAVY_CRED_SESSION_KEY;
	if (path != NULL)
		n = sid_key_read(what, path, key, err, errlen);
	else if (getrandom(key, (size_t)n, 0) != n)
		fatal("getrandom");
	if (n == -1)
		return -1;
	hmac_sha256_set_key(&sid_mac, (size_t)n, key);
	explicit_bzero(key, sizeof key);
	sid_shared = path != NULL;
	sid_tag_init(cfg);
	log_info("http: session ids of node %s, signed with %s", sid_tag,
	    sid_shared ? "the shared key" : "a key of this process's own");
	return 0;
}

/* A new id in id (SESSIONID_MAX bytes). */
void
sessionid_new(char *id)
{
	unsigned char	raw[SID_RAND_BYTES];
	size_t		len;

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		fatal("getrandom");
	len = (size_t)snprintf(id, SESSIONID_MAX, "%s.", sid_tag);
	sid_hex(id + len, raw, sizeof raw);
	len += 2 * sizeof raw;
	sid_sign(id, len, id + len);
}

/*
 * What id is: SESSIONID_OURS (made here; whether it still lives is the
 * session table's business), SESSIONID_FOREIGN (made by the node now in
 * node, under the shared key), or SESSIONID_BAD (no node made it, or one
 * whose key is not ours).  The MAC is compared in constant time.
 */
enum sessionid_kind
sessionid_check(const char *id, char *node, size_t nodelen)
{
	size_t	 len = strnlen(id, SESSIONID_MAX), head;
	char	 mac[2 * SID_MAC_BYTES + 1];

	if (len == SESSIONID_MAX || len < SID_HEX_LEN + 2 ||
	    id[len - SID_HEX_LEN - 1] != '.' ||
	    strspn(id + len - SID_HEX_LEN, "0123456789abcdef") != SID_HEX_LEN)
		return SESSIONID_BAD;
	head = len - 2 * SID_MAC_BYTES;
	sid_sign(id, head, mac);
	if (!memeql_sec(mac, id + head, sizeof mac - 1))
		return SESSIONID_BAD;
	len -= SID_HEX_LEN + 1;		/* the tag's */
	if (len == strlen(sid_tag) && memcmp(id, sid_tag, len) == 0)
		return SESSIONID_OURS;
	snprintf(node, nodelen, "%.*s", (int)len, id);
	return SESSIONID_FOREIGN;
}

/* The random part of an id, for log lines that show its start. */
const char *
sessionid_brief(const char *id)
{
	size_t	len = strlen(id);

	return len > SID_HEX_LEN ? id + len - SID_HEX_LEN : id;
}

/*
 * mockllm's TLS (-t FILE): a self-signed certificate for 127.0.0.1 and
 * localhost, made at start (P-256, valid for a day), written to FILE in PEM
 * for the clients to trust (heavyd's HEAVY_CA_FILE, Node's
 * NODE_EXTRA_CA_CERTS, curl --cacert), and every connection served over
 * TLS.  No session tickets and no session cache: every connection is a
 * full handshake, so /stats' "connections" counts the handshakes.  Without
 * -t the connections are plain and counted all the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../../common/common.h"
#include "mocktls.h"

static SSL_CTX		*tls_ctx;
static long long	 tls_conns;

static void
mocktls_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX	 ctx;
	X509_EXTENSION	*e;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value)) == NULL ||
	    X509_add_ext(x, e, -1) != 1)
		fatalx("tls: extension %s", value);
	X509_EXTENSION_free(e);
}

/* Its own issuer, a CA (so every client takes it as a trust anchor). */
static X509 *
mocktls_cert(EVP_PKEY *key)
{
	X509		*x = X509_new();
	X509_NAME	*name;

	if (x == NULL || X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL)) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL ||
	    X509_set_pubkey(x, key) != 1)
		fatalx("tls: certificate");
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"mockllm on loopback", -1, -1, 0);
	X509_set_issuer_name(x, name);
	mocktls_ext(x, NID_basic_constraints, "critical,CA:TRUE");
	mocktls_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign");
	mocktls_ext(x, NID_ext_key_usage, "serverAuth");
	mocktls_ext(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
	mocktls_ext(x, NID_subject_key_identifier, "hash");
	if (X509_sign(x, key, EVP_sha256()) == 0)
		fatalx("tls: signing");
	return x;
}

/* The certificate in PEM, whole before anyone reads it. */
static void
mocktls_write(X509 *x, const char *path)
{
	char	tmp[4096];
	FILE	*f;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if ((f = fopen(tmp, "we")) == NULL)
		fatal("%s", tmp);
	if (PEM_write_X509(f, x) != 1 || fclose(f) != 0)
		fatalx("tls: writing %s", tmp);
	if (rename(tmp, path) == -1)
		fatal("rename %s", path);
}

/* evhttp's new connection: a TLS server bufferevent, or a plain one. */
static struct bufferevent *
mocktls_bev(struct event_base *base, void *arg)
{
	SSL	*ssl;

	(void)arg;
	tls_conns++;
	if (tls_ctx == NULL)
		return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if ((ssl = SSL_new(tls_ctx)) == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

void
mocktls_init(struct evhttp *http, const char *certfile)
{
	EVP_PKEY	*key;
	X509		*x;

	evhttp_set_bevcb(http, mocktls_bev, NULL);
	if (certfile == NULL)
		return;
	if ((key = EVP_EC_gen("P-256")) == NULL)
		fatalx("tls: key");
	x = mocktls_cert(key);
	if ((tls_ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    SSL_CTX_use_certificate(tls_ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(tls_ctx, key) != 1)
		fatalx("tls: context");
	SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(tls_ctx, 0);
	SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	mocktls_write(x, certfile);
	X509_free(x);
	EVP_PKEY_free(key);
}

/* /stats: the connections accepted (over TLS, each a full handshake). */
void
mocktls_stats(struct json_object *o)
{
	json_object_object_add(o, "connections",
	    json_object_new_int64(tls_conns));
	json_object_object_add(o, "tls", json_object_new_boolean(tls_ctx !=
	    NULL));
}

void
mocktls_reset(void)
{
	tls_conns = 0;
}

void
mocktls_free(void)
{
	SSL_CTX_free(tls_ctx);
	tls_ctx = NULL;
}

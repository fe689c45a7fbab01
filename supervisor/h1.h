/*
 * heavyd's HTTP/1.1 server (h1.c): connections, a strict incremental
 * request parser, and replies whole (Content-Length) or streamed (chunked,
 * or close-delimited to an HTTP/1.0 client).  One request of a connection
 * is served at a time; pipelined ones wait their turn, in order.
 */
#ifndef H1_H
#define H1_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct h1_server;
struct h1_conn;
struct h1_req;

enum h1_method {
	H1_GET, H1_POST, H1_DELETE, H1_PUT, H1_PATCH, H1_HEAD, H1_OPTIONS,
	H1_OTHER
};

struct h1_limits {
	size_t	max_header_bytes;	/* the request line and headers */
	int	max_headers;		/* header lines */
	size_t	max_body_bytes;		/* past it: 413 */
	int	request_timeout_s;	/* to read a request, to write a reply */
	int	idle_timeout_s;		/* a kept-alive connection between requests */
	int	max_conns;		/* open connections; past it: 503 */
};

/* A request parsed from the head (h1_parse), before its body. */
struct h1_hdr {
	const char	*name;
	const char	*value;
	size_t		 nlen;
};

struct h1_head {
	enum h1_method	 method;
	const char	*path;		/* the target's path, NUL-ended */
	int		 minor;		/* HTTP/1.minor */
	struct h1_hdr	*hdrs;
	int		 nhdrs;
	int		 hcap;		/* hdrs' room */
	uint64_t	 clen;		/* Content-Length, 0 when none */
	bool		 keepalive;	/* the connection stays for another */
	bool		 expect_continue;
};

/* h1_parse's answers, past a status. */
#define H1_PARSE_MORE	0	/* not all there yet */

typedef void	(*h1_request_cb)(struct h1_req *, void *);
typedef void	(*h1_close_cb)(struct h1_conn *, void *);

int		 h1_parse(char *, size_t, const struct h1_limits *,
		    struct h1_head *, size_t *, const char **);
void		 h1_head_clear(struct h1_head *);

struct h1_server *h1_new(struct event_base *, const struct h1_limits *,
		    h1_request_cb, h1_request_cb, void *);
int		 h1_listen_fd(struct h1_server *, int);
void		 h1_flush(struct h1_server *, int64_t);
void		 h1_free(struct h1_server *);

enum h1_method	 h1_req_method(const struct h1_req *);
const char	*h1_req_method_name(const struct h1_req *);
const char	*h1_req_path(const struct h1_req *);
const char	*h1_req_header(const struct h1_req *, const char *);
void		 h1_req_wipe_header(struct h1_req *, const char *);
const char	*h1_req_body(const struct h1_req *, size_t *);
int		 h1_req_status(const struct h1_req *);
struct h1_conn	*h1_req_conn(const struct h1_req *);
void		 h1_req_add_header(struct h1_req *, const char *,
		    const char *);
bool		 h1_req_has_out_header(const struct h1_req *, const char *);
void		 h1_reply(struct h1_req *, int, const char *, const void *,
		    size_t);
void		 h1_reply_buf(struct h1_req *, int, const char *,
		    struct evbuffer *);
void		 h1_reply_start(struct h1_req *, int, const char *);
void		 h1_reply_chunk(struct h1_req *, struct evbuffer *);
void		 h1_reply_end(struct h1_req *);

void		 h1_conn_set_closecb(struct h1_conn *, h1_close_cb, void *);
const char	*h1_conn_peer(struct h1_conn *);
size_t		 h1_conn_backlog(const struct h1_conn *);
void		 h1_conn_drop(struct h1_conn *);

#endif

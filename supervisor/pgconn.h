/*
 * supervisor/pgconn.h: one asynchronous libpq connection on the event loop
 * (the PostgreSQL task store's link), and the store's schema migrations.
 *
 * Queries wait in a bounded queue and go to the server in order, up to
 * `pipeline' of them in flight at once (libpq's pipeline mode); the server
 * runs them one after the other, each in a transaction of its own, and
 * answers them in order.  While the server is away the queue holds them
 * (up to max_queue, those in flight included; past it a query is refused
 * with a clear error) and the connection comes back with exponential
 * backoff; then the queue is sent again from the first query in flight.
 * A query's callback runs exactly once: when the server answered it (a
 * result or the server's error), or with an error when the connection is
 * freed.  So a query may reach the server twice (sent, then the link died
 * before the answer came), and so may the queries in flight after it,
 * which the server may have run too: they all run again, in the same
 * order.  Every query given here must be idempotent (an upsert, a fenced
 * update, a read), and stay so when run again after the queries that
 * followed it ran: running again, in order, queries that already ran must
 * leave what running them once left.  Another link may see the state in
 * between (an earlier write run again before a later one is) for a moment.
 */
#ifndef HEAVY_PGCONN_H
#define HEAVY_PGCONN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>
#include <libpq-fe.h>

enum pgconn_state {
	PGCONN_DOWN,		/* waiting to try again */
	PGCONN_CONNECTING,	/* a connection (and its LISTENs) under way */
	PGCONN_CONNECTED,
};

struct pgconn_config {
	const char	*url;		/* postgresql://... (libpq's URI) */
	int		 max_queue;	/* queries held; <= 0: 1024 */
	int		 pipeline;	/* in flight at most; <= 0: 32 */
	int		 prepared;	/* statements kept prepared on a
					 * connection; 0: 64, < 0: none */
	int		 backoff_min_ms;	/* first retry; <= 0: 100 */
	int		 backoff_max_ms;	/* retries at most this far apart;
					 * <= 0: 10000 */
	int		 connect_timeout_ms;	/* <= 0: 10000 */
	bool		 metrics;	/* the store's link: heavyd_store_* */
};

struct pgconn_status {
	enum pgconn_state state;
	int		 queued;	/* held, sent or not (the callers') */
	int		 in_flight;	/* sent and not answered yet */
	int		 max_queue;
	unsigned	 connects;	/* connections made so far */
	char		 error[256];	/* why the last connection failed */
};

struct pgconn;
/*
 * A query's end: res is the last result (NULL when error is set: the
 * server's error message, or why the query never ran).  res is freed when
 * the callback returns.
 */
typedef void	(*pgconn_result_fn)(void *arg, PGresult *res,
		    const char *error);
typedef void	(*pgconn_notify_fn)(void *arg, const char *channel,
		    const char *payload);
/* The state or the queue's depth changed (for /readyz and the metrics). */
typedef void	(*pgconn_state_fn)(void *arg, const struct pgconn_status *);

struct pgconn *pgconn_new(struct event_base *, const struct pgconn_config *);
/* Every query still held gets its callback with an error; not from inside
 * a callback. */
void	 pgconn_free(struct pgconn *);
void	 pgconn_on_notify(struct pgconn *, pgconn_notify_fn, void *arg);
void	 pgconn_on_state(struct pgconn *, pgconn_state_fn, void *arg);
/*
 * One statement with text parameters ($1...), queued.  -1 with err set
 * when the queue is full (then cb never runs).  Its text is prepared on
 * the connection at its first use and run by name after, for the first
 * `prepared' texts a connection sees: values belong in the parameters,
 * not in the text, or one-off texts take the room for good.
 */
int	 pgconn_query(struct pgconn *, const char *sql, int nparams,
	    const char *const *params, pgconn_result_fn, void *arg, char *err,
	    size_t errlen);
/* Several statements, no parameters, one implicit transaction: cb gets
 * the last statement's result or the first error. */
int	 pgconn_exec(struct pgconn *, const char *sql, pgconn_result_fn,
	    void *arg, char *err, size_t errlen);
/* At exit, the loop stopped: sends and answers what is held, for at most
 * timeout_ms, on the link that is up.  0 when nothing is left. */
int	 pgconn_finish(struct pgconn *, int timeout_ms);
/* LISTEN on channel now and after every reconnect. */
int	 pgconn_listen(struct pgconn *, const char *channel, char *err,
	    size_t errlen);
void	 pgconn_status(const struct pgconn *, struct pgconn_status *);
const char *pgconn_state_name(enum pgconn_state);
/* A URL's text for logs: its password masked (common/secret.c). */
char	*pgconn_url_display(const char *url);

/*
 * pgschema.c: the PostgreSQL store's versioned schema.  Every migration
 * this heavyd knows that the database lacks is applied in one transaction
 * (several nodes starting at once take turns on an advisory lock); a
 * database of a newer heavyd is refused.  done gets the version the
 * database has then, or -1 and why.
 */
#define PGSCHEMA_VERSION	6
typedef void	(*pgschema_done_fn)(void *arg, int version, const char *error);
int	 pgschema_migrate(struct pgconn *, pgschema_done_fn, void *arg,
	    char *err, size_t errlen);

/*
 * store_pg.c: the task store backend on PostgreSQL (store_pg in store.h),
 * for store.url postgresql://...; the bounds of its link come in
 * store_options.  store_pg_conn: its link while open (for /readyz and
 * LISTEN), else NULL.
 */
struct pgconn *store_pg_conn(void);

#endif

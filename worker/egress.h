/* worker/egress*.c: heavyd-egress's parts (see egress.c). */
#ifndef HEAVY_EGRESS_H
#define HEAVY_EGRESS_H

#include <sys/queue.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <curl/curl.h>

#include "../proto/proto.h"

/* A page's fence: whether it may reach inward, what it was refused. */
struct egress_fence {
	bool	allow_private;
	char	refused[INET6_ADDRSTRLEN];
};

/* What a transfer's callbacks fill. */
struct egress_sink {
	struct buf	body;
	bool		over;		/* the body passed its cap */
	char		retry_after[EGRESS_MAX_HEADER];
	char		reset[EGRESS_MAX_HEADER];
	char		remaining[EGRESS_MAX_HEADER];	/* requests left */
	char		reset_requests[EGRESS_MAX_HEADER];	/* "6m0s" */
	bool		started;	/* a first byte came (hedging) */
};

/* egress_gov.c: a call waiting for, or holding, its upstream's permit. */
struct egress_upstream;
struct gov_task;
enum gov_state { GOV_NONE, GOV_QUEUED, GOV_RUNNING };
struct gov_wait {
	struct egress_upstream	*up;
	struct gov_task		*task;		/* its task's, for fairness */
	int64_t			 expires;	/* ms: given up waiting then */
	enum gov_state		 state;
	bool			 probe;		/* the half-open breaker's */
	TAILQ_ENTRY(gov_wait)	 entry;
	uint32_t		 hold;		/* enum egress_hold told; 0 */
};
typedef void (*gov_report_fn)(const char *base_url, const char *breaker);
/* A call waits (hold, for about seconds; 0: unknown), or its breaker
 * fails it fast or sends it as its probe: its worker hears of it.  It runs
 * amid the governor's line: it must free no call (egress.c queues the
 * frame; epoll's next turn sends it). */
typedef void (*gov_note_fn)(struct gov_wait *, enum egress_hold,
	    uint32_t seconds);
void	gov_init(uint32_t max_calls, uint32_t breaker_failures,
	    uint32_t cooldown_s, uint32_t rpm, gov_report_fn);
void	gov_set_tpm(uint32_t tpm);
void	gov_set_note(gov_note_fn);
int	gov_admit(struct egress_upstream *, bool *probe, char *why,
	    size_t len);
int	gov_admit_wait(struct gov_wait *, struct egress_upstream *, char *why,
	    size_t len);
struct egress_upstream *gov_upstream(const char *base_url);
bool	gov_submit(struct gov_wait *, struct egress_upstream *,
	    const char *task, int64_t expires);
bool	gov_submit_as(struct gov_wait *, struct egress_upstream *,
	    uint64_t identity, const char *task, int64_t expires);
void	gov_cancel(struct gov_wait *);
uint64_t gov_usage_tokens(const char *body, size_t len);
bool	gov_take(struct gov_wait *, struct egress_upstream *,
	    uint64_t identity, const char *task);
void	gov_finished(struct gov_wait *, long status, bool answered,
	    const struct egress_sink *);
int64_t	gov_duration_ms(const char *);
void	gov_pump(void (*start)(struct gov_wait *),
	    void (*expire)(struct gov_wait *));
int64_t	gov_next(void);

/* egress.c */
int	egress_main(int fd);

/* egress_curl.c: one request as a libcurl easy handle, and its end. */
/* egress.c: ca_file's certificates (HEAVY_CA_FILE from heavyd, read before
 * the sandbox), or NULL: the system's. */
#define EGRESS_CA_MAX	(16 << 20)
extern const struct curl_blob	*egress_ca;

int	egress_setup(CURL *, const struct egress_attach *,
	    const struct egress_config *, const struct egress_req *,
	    struct egress_sink *, struct egress_fence *,
	    struct curl_slist **headers, char **url, char *why, size_t whylen);
enum egress_result egress_classify(CURLcode, bool over, bool refused);
char	*egress_redact(const char *body, size_t *len);
void	egress_log_format(void);

/* egress_fence.c: the inward-address check (SSRF). */
bool	egress_addr_inward(const struct sockaddr *);
curl_socket_t egress_opensocket(void *, curlsocktype, struct curl_sockaddr *);

#endif

/*
 * proto/: the wire format between the supervisor, the zygote and workers.
 *
 * A frame is an 8-byte header (version, type, payload length, all little
 * endian) and a payload of typed fields.  Every field carries a one-byte
 * tag, so a reader that expects a string and finds a number fails, and
 * m_end() fails on leftover bytes: a frame is either exactly what its type
 * says or it is rejected (and its sender killed).
 */
#ifndef HEAVY_PROTO_H
#define HEAVY_PROTO_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

struct json_object;

/* 2: JOB_ERR_CONNECT in MSG_JOB_FAILED; 3: stall_s in MSG_JOB_RUN; 4: uid
 * and gid in MSG_JOB_SANDBOX; 5: a label in MSG_ZYGOTE_SPAWN; 6: the LLM
 * request in MSG_JOB_USAGE, MSG_ZYGOTE_SPARES; 7: heavyd-egress (the
 * MSG_EGRESS_* band, MSG_JOB_EGRESS), no key in MSG_JOB_RUN; 8: the
 * fallback models in MSG_JOB_RUN, the model and fallback reason in
 * MSG_JOB_USAGE; 9: the identity in MSG_EGRESS_ATTACH, why a call waits
 * in MSG_EGRESS_WAITING, the tokens-per-minute budget in MSG_EGRESS_CONFIG;
 * 10: hedging (hedge_ms in MSG_JOB_RUN and MSG_EGRESS_ATTACH, the hedge in
 * MSG_EGRESS_RESPONSE, the hedges in the usage); 11: MSG_ZYGOTE_STDERR.
 * The supervisor and its workers come from one build; a mismatch is refused
 * at the first header. */
#define PROTO_VERSION		11
#define PROTO_HDR_LEN		8

enum msg_type {
	MSG_JOB_RUN = 1,	/* supervisor -> worker: the job (no key) */
	MSG_JOB_STEP,		/* worker -> supervisor: a progress note */
	MSG_JOB_DONE,		/* worker -> supervisor: answer(s) and usage */
	MSG_JOB_FAILED,		/* worker -> supervisor: why the job failed */
	MSG_ZYGOTE_SPAWN,	/* supervisor -> zygote: fork a worker on the passed
				 * fd; its id, and the label of its stderr lines */
	MSG_ZYGOTE_SPAWNED,	/* zygote -> supervisor: pid, pidfd passed (or errno) */
	MSG_ZYGOTE_EXITED,	/* zygote -> supervisor: a worker's wait status
				   and EXITED_* flags */
	MSG_JOB_SANDBOX,	/* supervisor -> worker, first: the confinement
				   it enters before it reads its job */
	MSG_JOB_USAGE,		/* worker -> supervisor: after every LLM HTTP
				   request, the usage since the last report
				   (so budgets bind mid-job) and how that
				   request went */
	MSG_ZYGOTE_SPARES,	/* zygote -> supervisor: the spares it holds,
				   when that changes */
	MSG_JOB_EGRESS,		/* supervisor -> worker, before all else: no
				   payload, its socket to heavyd-egress passed
				   (none: egress is down) */
	MSG_ZYGOTE_STDERR,	/* zygote -> supervisor: pid, label; the read end
				   of the worker's stderr passed (a new worker
				   or spare), or none (a spare took a job) */
	MSG_TYPE_MAX
};

/*
 * The egress band: frames to and from heavyd-egress, the one process that
 * holds the keys and talks to the network.  Numbered apart from the
 * job's, so a frame sent on the wrong socket is never taken for another.
 */
enum egress_msg_type {
	MSG_EGRESS_FIRST = 64,
	MSG_EGRESS_CONFIG = MSG_EGRESS_FIRST,	/* supervisor -> egress, first
				   and only once: the keys, the caps */
	MSG_EGRESS_ATTACH,	/* supervisor -> egress: a worker's socket
				   (passed) and the upstreams it may use */
	MSG_EGRESS_REQUEST,	/* worker -> egress: one HTTP request */
	MSG_EGRESS_RESPONSE,	/* egress -> worker: how it went, the body */
	MSG_EGRESS_CANCELLED,	/* egress -> supervisor: transfers it
				   cancelled because their worker's socket
				   closed, the total so far */
	MSG_EGRESS_BREAKER,	/* egress -> supervisor: an upstream's
				   circuit breaker changed state */
	MSG_EGRESS_WAITING,	/* egress -> worker: a request waits for
				   its upstream's permit (the governor), or
				   its breaker fails it or probes with it:
				   struct egress_note */
	MSG_EGRESS_SANDBOX,	/* supervisor -> egress, second and only
				   once: its sandbox, the Landlock ABI */
	MSG_EGRESS_MAX
};

/* Flags in MSG_ZYGOTE_EXITED, after the wait status. */
#define EXITED_OOM		0x1	/* its cgroup's OOM killer acted */

/* What a worker is asked to do. */
enum job_role {
	ROLE_PLANNER = 1,	/* write N sub-questions */
	ROLE_AGENT,		/* answer one sub-question with tools */
	ROLE_SYNTHESIS,		/* merge the answers */
	ROLE_REVIEW,		/* rank the other agents' answers */
};

/* A review shows answers as "Response A", "Response B", ...; a worker
 * returns the labels it ranked, best first, as these one-letter texts. */
#define REVIEW_LABEL(i)	((char)('A' + (i)))

/* Why a job failed, as the worker saw it. */
enum job_error {
	JOB_ERR_HTTP = 1,	/* a non-retryable or exhausted HTTP status */
	JOB_ERR_TRANSPORT,	/* TLS, reset, ... once connected */
	JOB_ERR_TIMEOUT,	/* the worker's own deadline passed */
	JOB_ERR_RESPONSE,	/* malformed, truncated or oversized response */
	JOB_ERR_API,		/* an error object in a 200 body */
	JOB_ERR_PARSE,		/* the planner's output never validated */
	JOB_ERR_LIMIT,		/* a size cap was reached */
	JOB_ERR_INTERNAL,
	JOB_ERR_CONNECT,	/* the endpoint cannot be reached at all:
				   refused, no such host, no route */
};
#define JOB_ERR_LAST	JOB_ERR_CONNECT

/* A MSG_JOB_STEP note that starts so reports a retry: "retrying in 0.5 s
 * after: <cause> (<URL>)".  The supervisor logs those, not only shows them. */
#define JOB_RETRY_NOTE		"retrying in "

/* Flags in MSG_JOB_DONE. */
#define JOB_DONE_REASKED	0x1	/* the planner needed its one re-ask */
#define JOB_DONE_MAXITER	0x2	/* the agent ran out of iterations */
#define JOB_DONE_COMPLETED	0x4	/* the agent called mark_task_complete */

/* One LLM HTTP request (an attempt), in MSG_JOB_USAGE. */
struct job_call {
	uint32_t	error_kind;	/* 0: a 2xx with a usable body; else
					   enum job_error, the ones an attempt
					   can have */
	uint32_t	http_status;	/* 0 when none came */
	uint64_t	duration_us;
	uint32_t	attempt;	/* 0; n: the nth retry */
	uint32_t	model;		/* 0: the job's model; n: fallback n */
	uint32_t	fallback;	/* enum job_fallback: why this request
					   went to another model; 0: it did not */
};
#define JOB_CALL_MAX_US		(86400ull * 1000000)	/* a day: no step
							   lives longer */
#define JOB_CALL_MAX_ATTEMPT	64

/* Why an LLM call moved to the next of its job's fallback models. */
enum job_fallback {
	JOB_FB_NONE = 0,
	JOB_FB_NOT_FOUND,	/* 404: no endpoints for the model */
	JOB_FB_PAYMENT,		/* 402: insufficient credits */
	JOB_FB_NO_TOOLS,	/* 400: the model does not support tools */
	JOB_FB_EXHAUSTED,	/* retries exhausted on 429/5xx */
	JOB_FB_LAST = JOB_FB_EXHAUSTED
};
const char	*job_fallback_name(uint32_t);

struct usage {
	uint64_t	prompt_tokens;
	uint64_t	completion_tokens;
	uint64_t	total_tokens;
	uint32_t	llm_calls;
	uint32_t	retries;
	uint64_t	cost_micro_usd;	/* the provider's reported cost */
	uint32_t	hedged_calls;	/* LLM calls egress hedged */
	uint32_t	hedges_won;	/* of those, the hedge answered first */
};

struct job {
	uint32_t	 role;
	uint32_t	 index;		/* agent number, 0-based */
	uint32_t	 num_questions;	/* planner: how many to write;
					   review: how many answers shown */
	uint32_t	 max_iterations;
	uint32_t	 budget_ms;	/* time the worker may use */
	uint32_t	 max_retries;
	uint32_t	 retry_base_ms;
	uint32_t	 retry_max_ms;
	uint64_t	 max_response_bytes;
	uint64_t	 max_transcript_bytes;
	uint64_t	 max_tool_output_bytes;
	uint64_t	 max_answer_bytes;
	uint32_t	 stall_s;	/* cut an LLM call silent this long; 0: never */
	char		*api_key;
	char		*base_url;
	char		*model;
	char		*fallbacks[HEAVY_MAX_FALLBACKS]; /* tried in order when
					   model fails for good (llm.c) */
	uint32_t	 nfallbacks;
	char		*system_prompt;	/* may be "" */
	char		*prompt;
	uint32_t	 flags;		/* JOB_ASK_COST, ... */
	/* The agent tools: which are offered, and their limits. */
	uint32_t	 features;	/* TOOL_NEEDS_* the job can satisfy */
	uint32_t	 search_backend;	/* SEARCH_BACKEND_* */
	uint32_t	 search_max_results;
	uint32_t	 search_allow_private;	/* pages on private addresses */
	uint32_t	 search_timeout_ms;	/* one search_web call */
	uint64_t	 max_read_bytes;
	uint64_t	 max_write_bytes;
	uint64_t	 max_page_bytes;
	uint64_t	 max_extract_bytes;
	char		*search_url;
	char		*search_api_key;	/* a secret, like api_key */
	char		*search_user_agent;
	uint32_t	 hedge_ms;	/* hedge an LLM call with no first byte
					   this long (egress); 0: never */
};

/* The search_web backends (struct job's search_backend). */
enum search_backend {
	SEARCH_BACKEND_NONE = 0,
	SEARCH_BACKEND_SEARXNG,
	SEARCH_BACKEND_BRAVE,
};
#define JOB_ASK_COST	0x1	/* ask the provider to report cost (OpenRouter) */

/* The confinement a worker enters before it reads MSG_JOB_RUN. */
enum sandbox_fs {
	SANDBOX_FS_LANDLOCK = 1,	/* Landlock rules (and TCP port rules) */
	SANDBOX_FS_MOUNT,	/* a private mount namespace, pivot_root */
	SANDBOX_FS_NONE,	/* neither is available: reported at startup */
};
#define SANDBOX_SECCOMP		0x1	/* install the seccomp allowlist */
#define SANDBOX_MAX_PORTS	16
#define SANDBOX_KEEP_ID		0xffffffffu	/* heavyd is not root: keep its ids */
struct sandbox {
	char		*workspace;	/* the task's directory; "" for none */
	uint32_t	 fs;		/* enum sandbox_fs */
	uint32_t	 flags;		/* SANDBOX_* */
	uint64_t	 memory;	/* RLIMIT_AS and memory.max, bytes */
	uint32_t	 cpu_s;		/* RLIMIT_CPU */
	uint32_t	 nofile;	/* RLIMIT_NOFILE */
	uint64_t	 fsize;		/* RLIMIT_FSIZE, bytes */
	uint32_t	 pids;		/* pids.max, with a cgroup */
	uint32_t	 uid, gid;	/* run as these, or SANDBOX_KEEP_ID */
	uint32_t	 nports;	/* TCP ports a worker may connect to */
	uint16_t	 ports[SANDBOX_MAX_PORTS];
};

/* msg.c: builders.  m_close() returns -1 if the frame passed max bytes.
 * m_create takes an enum msg_type or an enum egress_msg_type. */
void	m_create(struct buf *, int type);
void	m_add_u32(struct buf *, uint32_t);
void	m_add_u64(struct buf *, uint64_t);
void	m_add_str(struct buf *, const char *);
void	m_add_data(struct buf *, const void *, size_t);	/* any bytes */
int	m_close(struct buf *, size_t max);

/* msg.c: readers.  Each returns -1 and poisons the reader on any mismatch. */
struct msg_hdr {
	uint16_t	version;
	uint16_t	type;
	uint32_t	len;
};
struct mreader {
	const uint8_t	*p;
	size_t		 left;
	int		 bad;
};
enum frame_status { FRAME_INCOMPLETE, FRAME_OK, FRAME_INVALID };
enum frame_status m_frame_check(const void *, size_t, size_t max,
	    struct msg_hdr *);
void	m_reader_init(struct mreader *, const void *payload, size_t len);
int	m_get_u32(struct mreader *, uint32_t *);
int	m_get_u64(struct mreader *, uint64_t *);
int	m_get_str(struct mreader *, char **);	/* malloc'd, NUL-free text */
/* Any bytes, malloc'd with a NUL after them; at most max. */
int	m_get_data(struct mreader *, char **, size_t *len, size_t max);
int	m_end(struct mreader *);

/* fdpass.c: one message and at most one fd over a unix socket. */
int	fd_send(int sock, const void *, size_t, int fd, int flags);
ssize_t	fd_recv(int sock, void *, size_t, int *fd, int flags);

/* job.c: the typed messages both sides exchange. */
void	job_encode(struct buf *, const struct job *);
int	job_decode(struct mreader *, struct job *);
void	job_clear(struct job *);
void	usage_encode(struct buf *, const struct usage *);
int	usage_decode(struct mreader *, struct usage *);
void	usage_add(struct usage *, const struct usage *);
void	job_call_encode(struct buf *, const struct job_call *);
int	job_call_decode(struct mreader *, struct job_call *);
void	sandbox_encode(struct buf *, const struct sandbox *);
int	sandbox_decode(struct mreader *, struct sandbox *);
void	sandbox_clear(struct sandbox *);
/* What a worker reports: one of MSG_JOB_STEP, _USAGE, _DONE, _FAILED. */
struct job_report {
	uint16_t	 type;
	char		*note;		/* STEP */
	uint32_t	 flags;		/* DONE: JOB_DONE_* */
	char		**texts;	/* DONE: the answer(s) */
	uint32_t	 ntexts;
	uint32_t	 error_kind;	/* FAILED: enum job_error */
	uint32_t	 http_status;	/* FAILED */
	char		*error;		/* FAILED */
	struct usage	 usage;		/* USAGE, DONE, FAILED */
	struct job_call	 call;		/* USAGE */
};
int	job_report_decode(uint16_t type, const void *payload, size_t len,
	    struct job_report *);
void	job_report_clear(struct job_report *);

/* egress.c: the requests workers send heavyd-egress and its answers. */
enum egress_kind {
	EGRESS_LLM = 1,		/* POST {base_url}/chat/completions, the key
				   added by egress; target unused */
	EGRESS_SEARCH,		/* the search backend: target is the query,
				   count the results wanted; its key added */
	EGRESS_PAGE,		/* GET target, a result page: fenced (no
				   inward address unless allowed), redirects */
};
enum egress_result {
	EGRESS_OK = 1,		/* a status came; the body is whole */
	EGRESS_CONNECT,		/* never connected: refused, no such host */
	EGRESS_TIMEOUT,		/* the request's time ran out */
	EGRESS_PARTIAL,		/* the connection closed mid-body */
	EGRESS_OVER,		/* the body passed its cap */
	EGRESS_REFUSED,		/* an inward address (SSRF fence) */
	EGRESS_REDIRECTS,	/* too many redirects */
	EGRESS_TRANSPORT,	/* TLS, reset, ... */
	EGRESS_DENIED,		/* not allowed: no such upstream, bad URL */
	EGRESS_OPEN,		/* the upstream's circuit breaker is open:
				   failed fast, not sent */
};
#define EGRESS_RESULT_LAST	EGRESS_OPEN
/* Whether egress hedged an LLM call (MSG_EGRESS_ATTACH's hedge_ms), and
 * which of the two transfers answered. */
enum egress_hedge {
	EGRESS_HEDGE_NONE = 0,
	EGRESS_HEDGE_LOST,	/* hedged; the first transfer answered */
	EGRESS_HEDGE_WON,	/* hedged; the hedge answered */
};
#define EGRESS_MAX_TARGET	8192		/* a URL or a query */
#define EGRESS_MAX_BODY		(256u << 20)
#define EGRESS_MAX_HEADER	256		/* a header's value kept */

/* MSG_EGRESS_CONFIG: what egress holds for every worker. */
struct egress_config {
	char		*api_key;	/* "" for none */
	char		*search_api_key;
	uint64_t	 max_body;	/* every response body, whatever asked */
	uint32_t	 max_host_conns;	/* per upstream host; 0: no cap */
	uint32_t	 max_calls;	/* LLM calls in flight per upstream; 0:
					   no cap */
	uint32_t	 breaker_failures;	/* in a row, to open; 0: off */
	uint32_t	 breaker_cooldown_s;	/* open this long, then a probe */
	uint32_t	 rpm;		/* LLM calls started a minute per
					   upstream; 0: no budget */
	uint32_t	 tpm;		/* tokens answered a minute per
					   upstream; 0: no budget */
	uint32_t	 idle_conns;	/* kept open for reuse; 0: libcurl's */
};
/* MSG_EGRESS_ATTACH: what one worker may reach, from its job. */
struct egress_attach {
	uint32_t	 worker_id;
	uint32_t	 search_backend;	/* SEARCH_BACKEND_* */
	uint32_t	 allow_private;	/* pages on inward addresses */
	char		*base_url;
	char		*search_url;
	char		*user_agent;
	char		*task;		/* its task's id: the governor's
					   fairness; "" for none */
	uint64_t	 identity;	/* its task's owner, opaque (a keyed
					   hash): fairness across identities;
					   0 for none */
	uint32_t	 hedge_ms;	/* hedge an LLM call with no first byte
					   this long; 0: never */
};
/* MSG_EGRESS_REQUEST */
struct egress_req {
	uint32_t	 id;		/* the worker's, echoed back */
	uint32_t	 kind;		/* enum egress_kind */
	char		*target;
	char		*body;		/* EGRESS_LLM's JSON; else "" */
	size_t		 body_len;
	uint32_t	 count;		/* EGRESS_SEARCH */
	uint32_t	 timeout_ms;	/* the whole transfer */
	uint32_t	 connect_ms;
	uint32_t	 stall_s;	/* no byte this long: cut; 0 never */
	uint64_t	 max_body;	/* 0: egress's own cap */
};
/* MSG_EGRESS_RESPONSE */
struct egress_resp {
	uint32_t	 id;
	uint32_t	 result;	/* enum egress_result */
	uint32_t	 os_errno;	/* EGRESS_CONNECT: why, when known */
	uint32_t	 status;	/* the HTTP status; 0: none */
	uint32_t	 hedge;		/* enum egress_hedge */
	char		*error;		/* libcurl's words, or the address
					   refused; "" */
	char		*retry_after;	/* Retry-After; "" */
	char		*reset;		/* X-RateLimit-Reset; "" */
	char		*content_type;	/* "" */
	char		*body;		/* NUL after body_len bytes */
	size_t		 body_len;
};
/* MSG_EGRESS_WAITING: what holds a call, or what its breaker does. */
enum egress_hold {
	EGRESS_HOLD_PAUSE = 1,	/* a 429's or a spent budget's pause */
	EGRESS_HOLD_RPM,	/* limits.egress_rpm spent */
	EGRESS_HOLD_TPM,	/* limits.egress_tpm spent */
	EGRESS_HOLD_CAP,	/* limits.egress_max_calls in flight */
	EGRESS_HOLD_OPEN,	/* the breaker is open: failed fast */
	EGRESS_HOLD_HALF_OPEN,	/* half-open, its probe out: failed fast */
	EGRESS_HOLD_PROBE,	/* half-open: this call is its probe */
};
#define EGRESS_HOLD_LAST	EGRESS_HOLD_PROBE
struct egress_note {
	uint32_t	 id;		/* the request's */
	uint32_t	 hold;		/* enum egress_hold */
	uint32_t	 seconds;	/* how long it may last; 0: unknown */
};
void	egress_config_encode(struct buf *, const struct egress_config *);
int	egress_config_decode(const void *, size_t, struct egress_config *);
void	egress_config_clear(struct egress_config *);
void	egress_attach_encode(struct buf *, const struct egress_attach *);
int	egress_attach_decode(const void *, size_t, struct egress_attach *);
void	egress_attach_clear(struct egress_attach *);
void	egress_req_encode(struct buf *, const struct egress_req *);
int	egress_req_decode(const void *, size_t, struct egress_req *);
void	egress_req_clear(struct egress_req *);
void	egress_resp_encode(struct buf *, const struct egress_resp *);
int	egress_resp_decode(const void *, size_t, struct egress_resp *);
void	egress_resp_clear(struct egress_resp *);
void	egress_note_encode(struct buf *, const struct egress_note *);
int	egress_note_decode(const void *, size_t, struct egress_note *);

/* tooldefs.c: the agent tools, known to both sides. */
#define TOOL_NEEDS_WORKSPACE	0x1	/* a per-task directory */
#define TOOL_NEEDS_SEARCH	0x2	/* a configured search backend */
struct tooldef {
	const char	*name;
	const char	*description;
	const char	*schema;	/* JSON Schema of the arguments */
	uint32_t	 needs;		/* TOOL_NEEDS_* */
};
/* write_file's temporaries: this prefix and 16 hex digits. */
#define TOOL_TMP_PREFIX		".heavyd-tmp-"
#define TOOL_TMP_NAME_LEN	(sizeof TOOL_TMP_PREFIX - 1 + 16)
extern const struct tooldef	tooldefs[];
extern const size_t		ntooldefs;
const struct tooldef *tooldef_find(const char *name);
struct json_object *tooldefs_list(uint32_t features);

#endif

/*
 * hm_metrics.h: the counters behind the admin `GET /metrics` endpoint
 * (STYLE.md section 4 step 11).  The master creates one shared anonymous
 * mapping (MAP_SHARED | MAP_ANONYMOUS) before it forks anything; it holds
 * a header written by the master only and HM_METRICS_SLOTS cache-line
 * aligned slots of uint64 counters.  Each worker process is given one slot
 * at fork and is its only writer: counters are plain increments, with no
 * locks and no atomics on the data path.  The admin server (worker slot 0)
 * reads every slot and sums them.
 *
 * Slots and processes: a respawned worker gets its predecessor's slot back
 * and keeps accumulating in it.  After a reload the new workers take free
 * slots while the old generation drains in theirs, so two live processes
 * never share a slot (up to HM_METRICS_SLOTS processes alive at once).
 * Slots of exited workers keep their totals; the master only zeroes their
 * connections_active gauge when it reaps them.  The mapping lives as long
 * as the master: totals survive reloads but not a binary upgrade (the new
 * master starts from zero).
 *
 * Prometheus names (text format 0.0.4), see hm_metrics_render():
 *   hamlyn_connections_total{listener,outcome}  counter
 *   hamlyn_connections_active                   gauge
 *   hamlyn_passthrough_connections_total        counter
 *   hamlyn_terminate_connections_total          counter
 *   hamlyn_redirect_connections_total           counter
 *   hamlyn_tls_handshakes_total                 counter
 *   hamlyn_tls_handshake_failures_total         counter
 *   hamlyn_tls_resumed_total                    counter (of the handshakes)
 *   hamlyn_http_requests_total{code}            counter (1xx .. 5xx)
 *   hamlyn_bytes_received_total                 counter (from clients)
 *   hamlyn_bytes_sent_total                     counter (to clients)
 *   hamlyn_upstream_connect_failures_total      counter
 *   hamlyn_upstream_connections_total           counter (established)
 *   hamlyn_upstream_tls_handshakes_total        counter
 *   hamlyn_upstream_tls_resumed_total           counter (of the handshakes)
 *   hamlyn_upstream_requests_total              counter
 *   hamlyn_upstream_pool_reuses_total           counter (of the requests)
 *   hamlyn_admin_requests_total                 counter
 *   hamlyn_worker_restarts_total                counter (master)
 *   hamlyn_reloads_total                        counter (master)
 *   hamlyn_workers                              gauge (configured)
 *   hamlyn_workers_up                           gauge
 */
#ifndef HM_METRICS_H
#define HM_METRICS_H

#include "hm_core.h"

#define HM_METRICS_SLOTS      256
/* Listeners with their own label; the rest share listener="_other". */
#define HM_METRICS_LISTENERS  32
#define HM_METRICS_MAGIC      0x4d657472
/* A listener name and its NUL (configuration names are <= 100 bytes). */
#define HM_METRICS_LNAME      104

/* Per-slot counters (index into hm_metrics_slot_t.c). */
enum {
    HM_MX_CONNECTIONS_ACTIVE = 0,   /* gauge */
    HM_MX_PASSTHROUGH_CONNECTIONS,
    HM_MX_TERMINATE_CONNECTIONS,
    HM_MX_REDIRECT_CONNECTIONS,
    HM_MX_TLS_HANDSHAKES,
    HM_MX_TLS_HANDSHAKE_FAILURES,
    HM_MX_HTTP_1XX,
    HM_MX_HTTP_2XX,
    HM_MX_HTTP_3XX,
    HM_MX_HTTP_4XX,
    HM_MX_HTTP_5XX,
    HM_MX_BYTES_RECEIVED,
    HM_MX_BYTES_SENT,
    HM_MX_UPSTREAM_CONNECT_FAILURES,
    HM_MX_ADMIN_REQUESTS,
    HM_MX_TLS_RESUMED,
    HM_MX_UPSTREAM_CONNECTIONS,
    HM_MX_UPSTREAM_TLS_HANDSHAKES,
    HM_MX_UPSTREAM_TLS_RESUMED,
    HM_MX_UPSTREAM_REQUESTS,
    HM_MX_UPSTREAM_POOL_REUSES,
    HM_MX_NCOUNTERS
};

/* Connection outcomes (the access log's "outcome" field, folded). */
enum {
    HM_MX_OUT_OK = 0,
    HM_MX_OUT_TIMEOUT,
    HM_MX_OUT_NO_SNI_MATCH,
    HM_MX_OUT_BAD_HELLO,
    HM_MX_OUT_TLS_HANDSHAKE_FAILED,
    HM_MX_OUT_BAD_REQUEST,
    HM_MX_OUT_CLIENT_CLOSED,
    HM_MX_OUT_UPSTREAM_ERROR,
    HM_MX_OUT_NO_UPSTREAM,
    HM_MX_OUT_SHUTDOWN,
    HM_MX_OUT_TOO_MANY_CONNECTIONS,
    HM_MX_OUT_REDIRECT,
    HM_MX_OUT_OTHER,
    HM_MX_NOUTCOMES
};

typedef struct {
    uint64_t c[HM_MX_NCOUNTERS];
    uint64_t conns[HM_METRICS_LISTENERS][HM_MX_NOUTCOMES];
    /* Written by the master only: */
    int32_t  owner;                 /* pid, -1 reserved, 0 free */
    uint32_t generation;            /* master generation at fork */
} __attribute__((aligned(64))) hm_metrics_slot_t;

typedef struct {
    uint32_t magic;
    uint32_t nslots;
    uint32_t generation;            /* bumped by each reload */
    uint32_t workers;               /* configured in this generation */
    uint64_t worker_restarts;
    uint64_t reloads;
    uint8_t  pad[32];
    /* The listener of each row of conns[][] (hm_metrics_listener_row):
     * rows are given by name and never reused, so a series keeps its
     * listener across reloads; rows past HM_METRICS_LISTENERS - 2 fold
     * into the last one, "_other" (other_used set).  Master only. */
    uint32_t nlisteners;
    uint32_t other_used;
    char     lnames[HM_METRICS_LISTENERS - 1][HM_METRICS_LNAME];
    hm_metrics_slot_t slots[];
} hm_metrics_shm_t;

/* The mapping (NULL before hm_metrics_init()) and this process's slot.
 * hm_metrics_local always points somewhere writable: a private dummy slot
 * until hm_metrics_attach(), so call sites need no test. */
extern hm_metrics_shm_t  *hm_metrics_shm;
extern hm_metrics_slot_t *hm_metrics_local;

/* One-line call-site macros. */
#define HM_METRIC_INC(name)    (hm_metrics_local->c[HM_MX_##name]++)
#define HM_METRIC_ADD(name, n) (hm_metrics_local->c[HM_MX_##name] += (n))
#define HM_METRIC_DEC(name)    (hm_metrics_local->c[HM_MX_##name]--)

/*
 * Creates a zeroed mapping of nslots slots, shared with future children
 * when shared is 1 (else private: unit tests).  Returns it, or NULL with
 * errno set.  hm_metrics_free() unmaps.
 */
hm_metrics_shm_t *hm_metrics_create(unsigned nslots, int shared);
void hm_metrics_free(hm_metrics_shm_t *shm);

/* Master, once at start: creates hm_metrics_shm.  HM_OK or HM_ERROR
 * (logged; the process then runs without shared metrics). */
int hm_metrics_init(void);

/* Master: a new generation of <workers> workers starts (start, reload). */
void hm_metrics_generation(unsigned workers, int reload);

/* Master, before forking the worker of <worker_slot>: reserves a slot
 * (the same index when free, else a free one) and returns its index. */
int hm_metrics_acquire(hm_metrics_shm_t *shm, int worker_slot);
/* Master, after fork: records the child's pid (0: fork failed, the
 * reservation is dropped). */
void hm_metrics_owned(hm_metrics_shm_t *shm, int mslot, int pid);
/* Master: <pid> exited; frees its slot and zeroes its active gauge. */
void hm_metrics_reaped(hm_metrics_shm_t *shm, int pid);
/* Master: a worker is being restarted. */
void hm_metrics_worker_restart(void);

/* Child, right after fork: this process writes into slot mslot. */
void hm_metrics_attach(int mslot);

/* Folds an access-log outcome string into HM_MX_OUT_* (NULL = ok). */
int hm_metrics_outcome(const char *outcome);
/* Its label. */
const char *hm_metrics_outcome_name(int outcome);

/*
 * Master, for each listener of a configuration before its workers fork
 * (start, reload): the row of conns[][] that counts the listener named
 * <name> (hm_conf_listener_t.metrics_row).  A name seen before gets its
 * row back, a new one the next free row (recorded in shm), so reordering,
 * adding or removing listeners never moves a series to another label and
 * counters never go down; when the labelled rows are used up, the
 * "_other" row.  With shm NULL, the "_other" row (counts go nowhere).
 */
int hm_metrics_listener_row(hm_metrics_shm_t *shm, const char *name);

/* Counts one finished connection of listener row <listener> (its
 * metrics_row; -1: none) with outcome string <outcome> in this process's
 * slot. */
void hm_metrics_conn_done(int listener, const char *outcome);

/* hm_conn_free(): counts a finished client connection (src/event). */
void hm__metrics_conn_free(hm_conn_t *c);

/* Counts a response status (1xx .. 5xx) in this process's slot. */
void hm_metrics_http_status(int status);

/* Adds every slot of shm into *sum (counters and connection matrix). */
void hm_metrics_sum(const hm_metrics_shm_t *shm, hm_metrics_slot_t *sum);

/* Live workers of the current generation. */
unsigned hm_metrics_workers_up(const hm_metrics_shm_t *shm);

/*
 * Renders shm as Prometheus text format 0.0.4 (# HELP and # TYPE for each
 * family), summing over every slot.  names[0..nnames) label the listener
 * rows (rows >= HM_METRICS_LISTENERS - 1 share "_other"); with names NULL,
 * the rows recorded in shm by hm_metrics_listener_row() (every listener
 * since the master started, "_other" once used).  Returns a
 * malloc'd NUL-terminated string (length in *len), or NULL when memory ran
 * out.
 */
char *hm_metrics_render(const hm_metrics_shm_t *shm,
                        const char *const *names, size_t nnames,
                        size_t *len);

#endif

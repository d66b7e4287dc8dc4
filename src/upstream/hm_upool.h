/*
 * hm_upool.h: per-worker keep-alive pools of upstream connections, keyed
 * by peer (hm_upstream_peer_t, i.e. one server of one upstream group with
 * its TLS profile), for the HTTP reverse proxy.
 *
 * A connection is either busy (owned by one HTTP request, which drives
 * its stream) or idle in its peer's list.  While idle, the pool reads from
 * it: any byte or EOF means the server closed it or broke the protocol,
 * so it is dropped at once and never handed out.  Idle connections older
 * than the upstream's pool_idle_timeout_s are closed by a per-worker
 * sweep; at most pool_max_idle of one upstream group are kept per worker.
 * The pool also keeps the latest TLS session per peer for resumption.
 */
#ifndef HM_UPOOL_H
#define HM_UPOOL_H

#include "hm_stream.h"
#include "hm_upstream.h"

typedef struct hm_upool_conn_s hm_upool_conn_t;

struct hm_upool_conn_s {
    hm_stream_t          s;         /* embedded; s.data belongs to the user */
    hm_upstream_peer_t  *peer;
    hm_upool_conn_t     *next;      /* idle list */
    hm_upool_conn_t     *prev;
    uint64_t             idle_since;
    unsigned             requests;  /* requests served on it */
    unsigned             idle:1;
    unsigned             connected:1;
    unsigned             session_saved:1;   /* TLS session kept for peer */
};

/* Takes an idle connection of peer out of the pool, or NULL.  The stream
 * is still reading with the pool's callback: the caller sets s.data and
 * calls hm_stream_read_start() with its own callback (or read_stop)
 * before it returns to the loop. */
hm_upool_conn_t *hm_upool_get(hm_upstream_peer_t *peer);

/* A new, unconnected connection object for peer (malloc'd: it outlives
 * the client connection); NULL when out of memory. */
hm_upool_conn_t *hm_upool_conn_new(hm_upstream_peer_t *peer);

/* Gives a busy, healthy connection back: it becomes idle (or is closed
 * when the pool of its upstream is full).  Releases the peer's
 * connection count either way. */
void hm_upool_put(hm_upool_conn_t *uc);

/* Closes a busy connection and frees it once closed; releases the peer's
 * connection count.  Safe on a connection whose connect failed. */
void hm_upool_close(hm_upool_conn_t *uc);

/* The latest TLS session of peer (borrowed), or NULL; and replacing it
 * (the pool takes ownership of session). */
void *hm_upool_session(hm_upstream_peer_t *peer);
void hm_upool_set_session(hm_upstream_peer_t *peer, void *session);

/* Closes every idle connection (worker shutdown). */
void hm_upool_close_idle(void);

/* Number of idle connections of peer (tests, metrics). */
int hm_upool_idle_count(const hm_upstream_peer_t *peer);

#endif

/*
 * hm_upstream.h: upstream peer selection, shared by the passthrough relay
 * (src/event/hm_splice.c) and the HTTP reverse proxy (src/http).
 *
 * The configuration (hm_conf_upstream_t, cycle lifetime, read-only) says
 * which servers a group has and how to balance.  Each worker keeps its own
 * runtime state per upstream group (hm_upstream_rt_t): the balancer's
 * position, the number of connections this worker has open to each peer
 * (least_conn), and passive health (max_fails failures within
 * fail_timeout_s mark a peer down for fail_timeout_s).  No state is shared
 * between workers and nothing here locks.
 *
 * Typical use, with "next server on failure":
 *
 *     hm_upstream_rt_t   *rt = hm_upstream_rt(conf_upstream);
 *     hm_upstream_peer_t *tried[HM_UPSTREAM_MAX_TRIES];
 *     size_t              ntried = 0;
 *
 *     peer = hm_upstream_select(rt, tried, ntried);  // NULL: none left/up
 *     tried[ntried++] = peer;                        // connect to peer->addr
 *     ...
 *     hm_upstream_peer_done(peer, ok);   // connect/TLS failed: ok = 0, then
 *                                        // select again excluding tried[]
 *     ...                                // on success: ok = 1 when the
 *                                        // connection is established; call
 *     hm_upstream_peer_release(peer);    // when it closes (least_conn count)
 *
 * hm_upstream_select() counts the connection on the peer (peer->conns++);
 * every successful select must be balanced by exactly one
 * hm_upstream_peer_release(), or by hm_upstream_peer_done(peer, 0) which
 * records the failure and releases in one call.
 */
#ifndef HM_UPSTREAM_H
#define HM_UPSTREAM_H

#include "hm_conf.h"

/* Bound on connection attempts per client request/connection (each to a
 * different peer); callers size their tried[] arrays with it. */
#define HM_UPSTREAM_MAX_TRIES 8

typedef struct hm_upstream_rt_s   hm_upstream_rt_t;
typedef struct hm_upstream_peer_s hm_upstream_peer_t;

struct hm_upstream_peer_s {
    const hm_conf_server_t *server;     /* config: address and weight */
    const struct sockaddr  *addr;       /* == &server->addr.sa */
    socklen_t               addr_len;
    const char             *text;       /* "1.2.3.4:443" for logs */
    hm_upstream_rt_t       *rt;         /* the group it belongs to */
    int                     index;      /* position in the group */

    /* Runtime state of this worker (read-only for callers). */
    int                     weight;
    int                     current_weight; /* smooth weighted round robin */
    int                     conns;      /* open connections (least_conn) */
    int                     fails;      /* failures in the current window */
    uint64_t                fail_start_ms;  /* first failure of the window */
    uint64_t                down_until_ms;  /* 0 = up */
    uint64_t                total_fails;    /* counters for metrics */
    uint64_t                total_selected;

    /* Active health (src/upstream/hm_health.c), set only through
     * hm_upstream_peer_set_health(): 1 = the last fail_after checks
     * failed.  Unlike passive health, a peer down by health check is never
     * picked, not even when every peer is down (no peer: 503). */
    int                     health_down;
};

struct hm_upstream_rt_s {
    const hm_conf_upstream_t *conf;
    hm_upstream_peer_t       *peers;
    size_t                    npeers;
    uint64_t                  rnd;          /* xorshift64 state */
};

/*
 * Builds this worker's runtime state for every upstream of cycle->conf
 * (called once per worker and cycle, from hm_accept_init()).  Safe to call
 * twice for the same cycle.  Allocation failure aborts (start-up only).
 */
int hm_upstream_init_worker(hm_cycle_t *cycle);

/*
 * Returns this worker's runtime state for upstream group u (built on first
 * use if hm_upstream_init_worker() did not run for u's configuration).
 * Never NULL.
 */
hm_upstream_rt_t *hm_upstream_rt(const hm_conf_upstream_t *u);

/*
 * Picks a peer of rt by its balance policy (round_robin weighted, smooth as
 * in nginx; least_conn with weights; random_two: the less loaded of two
 * random peers), skipping peers marked down and the nexclude peers in
 * exclude[] (those already tried for this request).  Returns the peer with
 * peer->conns incremented, or NULL when no peer is left (all tried or down:
 * the caller answers 502/503 or closes).
 *
 * When every peer is down and none was tried yet, the peer whose down
 * period ends first is returned anyway (like nginx, a group never blocks
 * all traffic forever on passive health alone).  Peers marked down by an
 * active health check (hm_upstream_peer_set_health) are never returned.
 */
hm_upstream_peer_t *hm_upstream_select(hm_upstream_rt_t *rt,
                                       hm_upstream_peer_t *const *exclude,
                                       size_t nexclude);

/* The same without that fallback: only a peer that is up now, so NULL
 * with nothing excluded means the whole group is down (the HTTP proxy
 * answers 503 without trying anyone). */
hm_upstream_peer_t *hm_upstream_select_up(hm_upstream_rt_t *rt,
                                          hm_upstream_peer_t *const *exclude,
                                          size_t nexclude);

/* Records the outcome of using peer: ok = 1 resets its failure count; ok = 0
 * counts a failure (max_fails within fail_timeout_s marks it down for
 * fail_timeout_s).  Does not release the connection count. */
void hm_upstream_peer_result(hm_upstream_peer_t *peer, int ok);

/* Releases the connection counted by hm_upstream_select(). */
void hm_upstream_peer_release(hm_upstream_peer_t *peer);

/* hm_upstream_peer_result(peer, ok) then, when ok == 0,
 * hm_upstream_peer_release(peer): the usual call after a failed attempt.
 * With ok = 1 the connection stays counted until release. */
void hm_upstream_peer_done(hm_upstream_peer_t *peer, int ok);

/* 1 when peer is not marked down at now_ms (passive or active health). */
int hm_upstream_peer_up(const hm_upstream_peer_t *peer, uint64_t now_ms);

/* Active health checks (hm_health.c) mark peer up (up = 1) or down
 * (up = 0).  A peer down by health check gets no traffic until marked up
 * again. */
void hm_upstream_peer_set_health(hm_upstream_peer_t *peer, int up);

#endif

/*
 * hm_preread.h: internals shared by the worker's connection path
 * (src/event/hm_accept.c, hm_conn.c, hm_preread.c, hm_splice.c).  Not an
 * API for other layers: they see hm_conn.h only.
 *
 * Event plumbing.  A worker's raw sockets (its listening clones, clients
 * until the SNI decision, passthrough legs) are watched by one epoll
 * instance of our own, itself watched by a single uv_poll_t on the worker's
 * loop.  This keeps libuv's loop, timers and signals, and saves per-fd
 * syscalls uv_poll_init() would add (an epoll ADD+DEL probe and an ioctl
 * each), and lets us register a socket once.  Listening sockets are
 * level-triggered; connection sockets edge-triggered with EPOLLIN |
 * EPOLLRDHUP (EPOLLOUT added once, the first time a write blocks), so a
 * connection costs one epoll_ctl per socket for its whole life.
 *
 * A handler must not free the memory of its hm_ev_t: connections are freed
 * from a uv close callback, i.e. after the current batch of events, and a
 * closed connection's stale events are ignored (ev->fd == -1).
 */
#ifndef HM_PREREAD_H
#define HM_PREREAD_H

#include <sys/epoll.h>
#include "hm_conn.h"
#include "hm_upstream.h"

typedef struct hm_ev_s hm_ev_t;
typedef void (*hm_ev_handler_pt)(hm_ev_t *ev, uint32_t events);

struct hm_ev_s {
    hm_ev_handler_pt handler;
    int              fd;        /* -1 when not registered */
    uint32_t         mask;      /* EPOLLIN | EPOLLOUT currently asked */
};

/* Registers fd with mask (EPOLLIN/EPOLLOUT); HM_OK or HM_ERROR (errno). */
int hm__ev_add(hm_ev_t *ev, int fd, uint32_t mask);
/* Changes the mask (no syscall when unchanged). */
void hm__ev_mod(hm_ev_t *ev, uint32_t mask);
/* Re-arms an edge-triggered registration (same mask): the kernel reports
 * the fd again at once if it is still ready. */
void hm__ev_rearm(hm_ev_t *ev);
/* Unregisters (before a hand-off; close() alone also unregisters). */
void hm__ev_del(hm_ev_t *ev);
/* Forgets the registration of an fd about to be closed (no syscall). */
#define hm__ev_forget(ev) ((ev)->fd = -1, (ev)->mask = 0)

/* Passthrough connection state: one per accepted connection, in c->pool,
 * c->owner.  Direction 0 is client -> upstream, 1 upstream -> client;
 * side 0 is the client socket, side 1 the upstream socket. */
enum {
    HM_PT_PROXY_HDR = 0,    /* reading the inbound PROXY protocol header */
    HM_PT_HELLO,            /* reading the ClientHello */
    HM_PT_CONNECTING,       /* connecting to the upstream */
    HM_PT_RELAY,            /* splicing both ways */
    HM_PT_CLOSED
};

typedef struct {
    int      rfd;           /* pipe read end, -1 = none yet */
    int      wfd;
    size_t   cap;           /* bytes the pipe holds */
    size_t   pending;       /* bytes in the pipe not yet written */
} hm_pipe_t;

typedef struct {
    hm_ev_t  ev;
    int      fd;
    unsigned rd_eof:1;      /* read returned 0: no more input */
    unsigned wr_shut:1;     /* we did shutdown(SHUT_WR) on it */
    unsigned wr_blocked:1;  /* last write hit EAGAIN: wait for EPOLLOUT */
    unsigned rd_ready:1;    /* edge-triggered: input may be waiting */
    unsigned rdhup:1;       /* the peer's FIN has arrived (EPOLLRDHUP) */
    unsigned out_armed:1;   /* EPOLLOUT is in the registration */
} hm_pt_side_t;

typedef struct hm_pt_s {
    hm_conn_t          *c;
    int                 state;
    uv_timer_t          timer;      /* hello, connect or idle deadline */
    uint64_t            active_ms;  /* uv_now() of the last transfer */
    int                 idle_ms;

    size_t              preread_max;
    size_t              sent;       /* preread bytes sent upstream */
    uint8_t             pp_out[232];/* PROXY header for the upstream */
    size_t              pp_out_len;

    hm_upstream_rt_t   *rt;
    hm_upstream_peer_t *peer;
    hm_upstream_peer_t *tried[HM_UPSTREAM_MAX_TRIES];
    size_t              ntried;
    const char         *fail_outcome;

    hm_pt_side_t        side[2];
    hm_pipe_t           pipe[2];
    uint8_t            *buf[2];     /* bytes a send left over (no pipe) */
    size_t              off[2];     /* write offset in buf */
    uint8_t             in_buf[2];  /* pipe[d].pending bytes sit in buf[d] */
    uint8_t             nosplice[2];/* splice refused: recv/send only */
    unsigned            draining:1;
    uint8_t             batch[2];   /* SO_RCVLOWAT raised on side[d] */
    uint64_t            batch_at[2];/* d's byte count that starts a batch */
} hm_pt_t;

/* hm_preread.c */
void hm__preread_start(hm_conn_t *c);
/* Ends the connection now with outcome (kept if one is already set):
 * closes sockets, returns pipes, releases the upstream peer, writes the
 * access-log line, frees c once its timer handle is closed. */
void hm__pt_close(hm_pt_t *pt, const char *outcome);

/* The connection's timer callback (hello, connect, idle deadlines). */
void hm__pt_on_timer(uv_timer_t *t);

/* hm_conn.c: access-log line of a connection refused at accept. */
void hm__conn_log_refused(hm_conf_listener_t *l, const struct sockaddr *sa,
                          const char *outcome);

/* hm_splice.c */
void hm__splice_connect(hm_pt_t *pt);
/* The connection's timer fired while connecting or relaying. */
void hm__splice_timer(hm_pt_t *pt);
void hm__pipe_put(hm_pipe_t *p);

/* hm_accept.c: the worker's connection counters (for metrics). */
typedef struct {
    uint64_t accepted;
    uint64_t refused_max_conns;
    uint64_t accept_errors;
} hm_accept_stats_t;

extern hm_accept_stats_t hm_accept_stats;
/* TCP_DEFER_ACCEPT period set on this worker's listeners in ms (0: none):
 * a connection accepted without data has been silent that long. */
extern int hm__defer_accept_ms;
/* Whether listener <l>'s sockets get TCP_DEFER_ACCEPT (given a large
 * max_connections): not when its client_hello_timeout_ms is below the
 * deferral period, which would stretch that timeout. */
int hm__defer_listener(const hm_conf_listener_t *l);
/* Re-evaluates whether the loop must stay alive for our sockets. */
void hm__accept_update_ref(hm_worker_t *w);

#endif

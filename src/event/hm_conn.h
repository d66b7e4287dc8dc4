/*
 * hm_conn.h: one client connection from accept to close.
 *
 * The accept code allocates it, the preread code fills the ClientHello
 * buffer and asks the modules (sni_route) where it goes; then exactly one
 * owner drives it: the passthrough relay (hm_splice.c) or the TLS/HTTP
 * stack (src/tls, src/http).  The owner closes the socket and calls
 * hm_conn_free() once every handle of the connection is closed.
 */
#ifndef HM_CONN_H
#define HM_CONN_H

#include <uv.h>
#include "hm_log.h"
#include "hm_module.h"
#include "hm_worker.h"

#define HM_CONN_MAGIC 0x436f6e6e

struct hm_conn_s {
    uint32_t            magic;
    uint64_t            id;
    hm_worker_t        *worker;
    hm_cycle_t         *cycle;      /* referenced for the conn's life */
    hm_conf_listener_t *listener;
    hm_pool_t          *pool;
    int                 fd;         /* client socket, -1 once handed off */

    struct sockaddr_storage peer;   /* client (after PROXY protocol) */
    socklen_t           peer_len;
    struct sockaddr_storage local;  /* address the client connected to */
    socklen_t           local_len;
    char                peer_text[64];

    /* ClientHello preread (and any PROXY protocol header before it). */
    uint8_t            *preread;
    size_t              preread_len;
    size_t              preread_cap;

    char                sni[256];   /* lower-cased, "" = none */
    size_t              sni_len;
    hm_conf_site_t     *site;
    hm_route_action_t   route_action;
    int                 alert;      /* TLS alert for HM_ROUTE_REJECT */

    uint64_t            start_ms;
    uint64_t            bytes_in;   /* from client */
    uint64_t            bytes_out;  /* to client */
    const char         *outcome;    /* "ok", "no_sni_match", "timeout" ... */
    char                upstream_text[64];

    hm_log_ctx_t        log;

    /* Called by the worker on graceful shutdown (finish what is in flight,
     * then close) and at the shutdown deadline (close now).  Set by the
     * conn's current owner.  drain is called ONCE per connection (when
     * the worker starts quitting): an owner that takes the conn over
     * later (e.g. the HTTP layer after the TLS handshake, which drain
     * lets finish) must check c->worker->quitting (hm_worker->quitting)
     * itself and finish up (HTTP: serve one request, Connection: close). */
    void              (*drain)(hm_conn_t *c);
    void              (*abort)(hm_conn_t *c);
    void               *owner;      /* owner's state */

    void               *ctx[16];    /* per-module state, by ctx_index */
    hm_conn_t          *next;
    hm_conn_t          *prev;

    /* Added by the passthrough work. */
    unsigned            logged:1;   /* hm_conn_log() ran */
};

/* Allocates a conn for an accepted fd and links it into the worker.
 * Returns NULL when out of memory (the caller closes fd). */
hm_conn_t *hm_conn_new(hm_worker_t *w, hm_conf_listener_t *l, int fd,
                       const struct sockaddr *peer, socklen_t peer_len);
/* Sets c->peer and c->peer_text (e.g. from a PROXY protocol header). */
void hm_conn_set_peer(hm_conn_t *c, const struct sockaddr *sa, socklen_t len);
/* Writes the connection's access-log line (passthrough format) and runs
 * the modules' on_log hooks.  Idempotent. */
void hm_conn_log(hm_conn_t *c);

/* Starts an access-log line of c in line[0..cap) with the keys every
 * line begins with: time, pid, conn, listener, client, sni. */
void hm_conn_log_begin(hm_jbuf_t *jb, char *line, size_t cap,
                       const hm_conn_t *c);
/* Unlinks and frees c (its pool, cycle ref, preread buffer).  The socket
 * and every uv handle must already be closed. */
void hm_conn_free(hm_conn_t *c);
/* Added by the fixes work: frees c->preread (malloc'd, not pool memory,
 * so that it does not stay for the connection's life) once its bytes were
 * handed on (TLS: copied into the handshake; passthrough: at
 * hm_conn_free).  preread_len stays.  Idempotent. */
void hm_conn_preread_release(hm_conn_t *c);

/* Hand-off from preread to the terminating TLS stack (src/tls): takes
 * ownership of c->fd and c->preread.  Implemented by the TLS layer. */
void hm_tls_terminate_start(hm_conn_t *c);

#endif

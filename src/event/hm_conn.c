/*
 * hm_conn.c: the client connection object (hm_conn.h) from accept to
 * free.  hm_accept.c creates it; the preread, the passthrough relay or the
 * TLS/HTTP stack drive it; whoever owns it last writes the access-log line
 * with hm_conn_log() and frees it with hm_conn_free() once every handle
 * is closed.
 *
 * Memory: one pool per connection (STYLE.md section 5) sized so that the
 * conn, the passthrough state and a typical ClientHello fit its first
 * block; the cycle is referenced for the conn's whole life.
 */
#include "hm_core.h"
#include "hm_conn.h"
#include "hm_cycle.h"
#include "hm_preread.h"
#include "hm_metrics.h"

#include <arpa/inet.h>
#include <stdio.h>

/* conn (~1 KiB) + passthrough or TLS stream and HTTP state (~2.3 KiB): an
 * idle TLS connection uses ~3.3 KiB.  The ClientHello buffer is malloc'd
 * (hm_preread.c) and released at the TLS hand-off. */
#define HM_CONN_POOL_SIZE 4096

static void
addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned) ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, (unsigned) ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "unix");
    }
}

/*
 * Formats the client address into c->peer_text (after PROXY protocol
 * replaced c->peer, say).
 */
void
hm_conn_set_peer(hm_conn_t *c, const struct sockaddr *sa, socklen_t len)
{
    if (len > sizeof(c->peer)) {
        len = sizeof(c->peer);
    }
    memcpy(&c->peer, sa, len);
    c->peer_len = len;
    addr_text(sa, c->peer_text, sizeof(c->peer_text));
}

/*
 * Allocates a conn for an accepted socket fd, references the worker's
 * current cycle and links it into the worker's list.  Returns NULL when
 * out of memory (the caller closes fd).
 */
hm_conn_t *
hm_conn_new(hm_worker_t *w, hm_conf_listener_t *l, int fd,
            const struct sockaddr *peer, socklen_t peer_len)
{
    hm_pool_t *pool;
    hm_conn_t *c;

    pool = hm_pool_new(HM_CONN_POOL_SIZE);
    if (pool == NULL) {
        return NULL;
    }
    c = hm_pool_alloc(pool, sizeof(hm_conn_t));
    if (c == NULL) {
        hm_pool_free(pool);
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->magic = HM_CONN_MAGIC;
    c->id = ++w->next_conn_id;
    c->worker = w;
    c->cycle = hm_cycle_ref(w->cycle);
    c->listener = l;
    c->pool = pool;
    c->fd = fd;
    hm_conn_set_peer(c, peer, peer_len);
    c->start_ms = hm_now_ms();
    c->upstream_text[0] = '\0';

    c->log.conn_id = c->id;
    c->log.peer = c->peer_text;
    c->log.sni = NULL;
    c->log.action = "reading ClientHello";

    c->next = w->conns;
    c->prev = NULL;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->nconns++;
    if (l != NULL) {
        HM_METRIC_INC(CONNECTIONS_ACTIVE);
    }
    return c;
}

static const char *
site_name(const hm_conn_t *c)
{
    return c->site != NULL ? c->site->name : NULL;
}

/*
 * Starts an access-log line of c in line[0..cap): the keys every
 * connection's and request's line begins with (time, pid, conn, listener,
 * client, sni).
 */
void
hm_conn_log_begin(hm_jbuf_t *jb, char *line, size_t cap, const hm_conn_t *c)
{
    char ts[40];

    hm_time_rfc3339(ts, sizeof(ts));
    hm_jb_init(jb, line, cap);
    hm_jb_str(jb, "time", ts);
    hm_jb_int(jb, "pid", hm_log_pid());
    hm_jb_int(jb, "conn", (long long) c->id);
    hm_jb_str(jb, "listener", c->listener ? c->listener->name : NULL);
    hm_jb_str(jb, "client", c->peer_text);
    hm_jb_str(jb, "sni", c->sni_len ? c->sni : NULL);
}

/*
 * Writes the connection's JSON access-log line (passthrough format) and
 * runs the modules' on_log hooks, once.
 */
void
hm_conn_log(hm_conn_t *c)
{
    char line[2048];
    hm_jbuf_t jb;
    size_t n;
    int i;

    if (c->logged) {
        return;
    }
    c->logged = 1;

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->on_log != NULL) {
            hm_modules[i]->on_log(c);
        }
    }

    if (!hm_access_log_enabled()) {
        return;
    }
    hm_conn_log_begin(&jb, line, sizeof(line), c);
    hm_jb_str(&jb, "site", site_name(c));
    hm_jb_str(&jb, "mode", c->route_action == HM_ROUTE_PASSTHROUGH
                           ? "passthrough"
                           : c->route_action == HM_ROUTE_TERMINATE
                           ? "terminate" : NULL);
    hm_jb_str(&jb, "upstream", c->upstream_text[0] ? c->upstream_text : NULL);
    hm_jb_int(&jb, "bytes_in", (long long) c->bytes_in);
    hm_jb_int(&jb, "bytes_out", (long long) c->bytes_out);
    hm_jb_int(&jb, "duration_ms", (long long) (hm_now_ms() - c->start_ms));
    hm_jb_str(&jb, "outcome", c->outcome ? c->outcome : "ok");
    n = hm_jb_finish(&jb);
    if (n > 0) {
        hm_access_log_write(line, n);
    }
}

/*
 * Unlinks c from its worker and frees it with its pool, dropping the cycle
 * reference.  The socket and every handle of c must be closed already.
 */
void
hm_conn_free(hm_conn_t *c)
{
    hm_worker_t *w = c->worker;
    hm_cycle_t *cycle = c->cycle;

    HM_CHECK_OBJ(c, HM_CONN_MAGIC);
    hm__metrics_conn_free(c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else if (w->conns == c) {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    w->nconns--;
    c->magic = 0;
    hm_conn_preread_release(c);
    hm_pool_free(c->pool);
    hm_cycle_unref(cycle);
    hm__accept_update_ref(w);
}

/* Frees the preread buffer (malloc'd by hm_preread.c); c->preread_len is
 * kept for the access log.  Idempotent. */
void
hm_conn_preread_release(hm_conn_t *c)
{
    free(c->preread);
    c->preread = NULL;
    c->preread_cap = 0;
}

/*
 * Access-log line for a connection refused before it got a conn object
 * (over max_connections): same fields, outcome given.
 */
void
hm__conn_log_refused(hm_conf_listener_t *l, const struct sockaddr *sa,
                     const char *outcome)
{
    char line[512], ts[40], peer[64];
    hm_jbuf_t jb;
    size_t n;

    if (!hm_access_log_enabled()) {
        return;
    }
    addr_text(sa, peer, sizeof(peer));
    hm_time_rfc3339(ts, sizeof(ts));
    hm_jb_init(&jb, line, sizeof(line));
    hm_jb_str(&jb, "time", ts);
    hm_jb_int(&jb, "pid", hm_log_pid());
    hm_jb_str(&jb, "listener", l->name);
    hm_jb_str(&jb, "client", peer);
    hm_jb_str(&jb, "sni", NULL);
    hm_jb_str(&jb, "site", NULL);
    hm_jb_str(&jb, "upstream", NULL);
    hm_jb_int(&jb, "bytes_in", 0);
    hm_jb_int(&jb, "bytes_out", 0);
    hm_jb_int(&jb, "duration_ms", 0);
    hm_jb_str(&jb, "outcome", outcome);
    n = hm_jb_finish(&jb);
    if (n > 0) {
        hm_access_log_write(line, n);
    }
}

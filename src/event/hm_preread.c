/*
 * hm_preread.c: step 2 and 3 of a connection (STYLE.md section 4).  After
 * accept, read the optional inbound PROXY protocol header and then one
 * complete ClientHello into c->preread (recv, never MSG_PEEK; the socket
 * is registered edge-triggered: a short read means drained), bounded in
 * size (listener client_hello_max_bytes) and time
 * (client_hello_timeout_ms).  Then ask the modules (sni_route) where
 * the connection goes: passthrough (hm_splice.c), terminate (the TLS
 * stack, hm_tls_terminate_start) or reject (TLS alert, close).
 *
 * Also the one close path of a passthrough connection (hm__pt_close):
 * sockets, pipes, upstream peer, access log, then hm_conn_free() from the
 * timer's close callback, i.e. after the current event batch.
 */
#include "hm_core.h"
#include "hm_preread.h"
#include "hm_proxy_proto.h"
#include "hm_tls_hello.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define HM_PREREAD_FIRST     4096   /* first buffer: fits typical hellos */
#define HM_PREREAD_SLACK     1024   /* record headers, bytes after hello */
#define HM_PROXY_HDR_MAX     4096   /* inbound PROXY header we accept
                                     * (v2 with TLVs; nginx takes 4096) */

static void on_client_preread(hm_ev_t *ev, uint32_t events);
static void preread_process(hm_pt_t *pt);

static void
on_closed(uv_handle_t *h)
{
    hm_pt_t *pt = h->data;

    hm_conn_free(pt->c);
}

void
hm__pt_close(hm_pt_t *pt, const char *outcome)
{
    hm_conn_t *c = pt->c;
    int i;

    if (pt->state == HM_PT_CLOSED) {
        return;
    }
    if (c->outcome == NULL) {
        c->outcome = outcome;
    }
    if (pt->state < HM_PT_RELAY) {
        c->bytes_in = c->preread_len;
    }
    pt->state = HM_PT_CLOSED;

    for (i = 0; i < 2; i++) {
        if (pt->side[i].fd >= 0) {
            hm__ev_forget(&pt->side[i].ev);
            close(pt->side[i].fd);
            pt->side[i].fd = -1;
        }
        hm__pipe_put(&pt->pipe[i]);
    }
    c->fd = -1;
    if (pt->peer != NULL) {
        hm_upstream_peer_release(pt->peer);
        pt->peer = NULL;
    }
    c->drain = NULL;
    c->abort = NULL;
    c->log.action = NULL;
    hm_conn_log(c);
    uv_close((uv_handle_t *) &pt->timer, on_closed);
}

static void
pt_drain(hm_conn_t *c)
{
    /* Graceful shutdown: a passthrough connection runs to its end (the
     * worker's shutdown deadline calls abort). */
    ((hm_pt_t *) c->owner)->draining = 1;
}

static void
pt_abort(hm_conn_t *c)
{
    hm__pt_close(c->owner, "shutdown");
}

void
hm__pt_on_timer(uv_timer_t *t)
{
    hm_pt_t *pt = t->data;
    hm_conn_t *c = pt->c;

    switch (pt->state) {
    case HM_PT_PROXY_HDR:
    case HM_PT_HELLO:
        hm_log_info(&c->log, "client timed out after %zu byte(s)",
                    c->preread_len);
        hm__pt_close(pt, "timeout");
        break;
    default:
        hm__splice_timer(pt);
        break;
    }
}

void
hm__preread_start(hm_conn_t *c)
{
    hm_conf_listener_t *l = c->listener;
    hm_pt_t *pt;
    size_t max;
    int i, rc;

    pt = hm_pool_calloc(c->pool, sizeof(hm_pt_t));
    max = l->client_hello_max_bytes + HM_PREREAD_SLACK
          + (l->proxy_protocol ? HM_PROXY_HDR_MAX : 0);
    c->preread_cap = hm_min(max, HM_PREREAD_FIRST);
    /* malloc, not the pool: released at the TLS hand-off (see
     * hm_conn_preread_release), else by hm_conn_free. */
    c->preread = pt ? malloc(c->preread_cap) : NULL;
    if (c->preread == NULL) {
        hm_log_error(&c->log, "out of memory for a new connection");
        close(c->fd);
        c->fd = -1;
        hm_conn_free(c);
        return;
    }
    pt->c = c;
    pt->preread_max = max;
    pt->state = l->proxy_protocol ? HM_PT_PROXY_HDR : HM_PT_HELLO;
    for (i = 0; i < 2; i++) {
        pt->side[i].fd = -1;
        pt->side[i].ev.fd = -1;
        pt->pipe[i].rfd = pt->pipe[i].wfd = -1;
    }
    pt->side[0].fd = c->fd;
    pt->side[0].ev.handler = on_client_preread;
    c->owner = pt;
    c->drain = pt_drain;
    c->abort = pt_abort;

    uv_timer_init(c->worker->loop, &pt->timer);
    pt->timer.data = pt;

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->on_accept != NULL
            && hm_modules[i]->on_accept(c) == HM_ERROR)
        {
            hm__pt_close(pt, "refused");
            return;
        }
    }

    rc = l->client_hello_timeout_ms > 0 ? l->client_hello_timeout_ms : 10000;
    uv_timer_start(&pt->timer, hm__pt_on_timer, (uint64_t) rc, 0);

    /* When the listeners have TCP_DEFER_ACCEPT (hm_accept.c) the kernel
     * hands us the connection once its first bytes are there: read them
     * now, before the socket is even registered, so accept, ClientHello,
     * routing and the upstream connect take one wakeup.  Without it the
     * hello has almost never arrived yet: wait for the poll. */
    if (hm__defer_accept_ms > 0 && hm__defer_listener(l)) {
        preread_process(pt);
        if (pt->state == HM_PT_CLOSED) {
            return;             /* closed or handed off */
        }
        if (c->preread_len == 0 && pt->state <= HM_PT_HELLO) {
            /* Accepted without data: the client has been silent for the
             * whole deferral period; count it against the timeout, and in
             * the access log's duration_ms. */
            c->start_ms -= (uint64_t) hm__defer_accept_ms;
            rc = rc > hm__defer_accept_ms ? rc - hm__defer_accept_ms : 1;
            uv_timer_start(&pt->timer, hm__pt_on_timer, (uint64_t) rc, 0);
        }
    }

    /* Registered once for the connection's life, edge-triggered, with
     * the mask the relay uses (hm_splice.c): no epoll_ctl later.  Input
     * that arrived since the read above is reported at once. */
    pt->side[0].out_armed = pt->side[0].wr_blocked;
    if (hm__ev_add(&pt->side[0].ev, c->fd,
                   EPOLLIN | EPOLLRDHUP | EPOLLET
                   | (pt->side[0].wr_blocked ? EPOLLOUT : 0))
        != HM_OK)
    {
        hm_log_error(&c->log, "epoll_ctl(ADD) failed: %s", strerror(errno));
        hm__pt_close(pt, "internal_error");
        return;
    }
}

static int
looks_like_http(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n && i < 8; i++) {
        if (p[i] == ' ' && i >= 3) {
            return 1;
        }
        if (p[i] < 'A' || p[i] > 'Z') {
            return 0;
        }
    }
    return n > 0 && n < 8;
}

static void
send_alert(hm_pt_t *pt, uint8_t alert)
{
    uint8_t rec[16];
    size_t  n;
    ssize_t sent;

    n = hm_tls_alert_record(rec, alert);
    sent = send(pt->side[0].fd, rec, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
        /* counted like the not_tls answer (access log bytes_out) */
        pt->c->bytes_out += (uint64_t) sent;
    }
    /* else the client is gone or not reading: nothing more to do */
}

static void
not_tls(hm_pt_t *pt, const hm_tls_hello_t *hello)
{
#define HM_NOT_TLS_BODY \
    "400 Bad Request: this port speaks TLS; the plain HTTP request " \
    "was sent to a TLS port.\n"
    static const char body[] = HM_NOT_TLS_BODY;
    char resp[512];
    int len;
    hm_conn_t *c = pt->c;

    if (hello->error != hm_tls_hello_proxy_header
        && looks_like_http(c->preread, c->preread_len))
    {
        hm_log_info(&c->log, "plain HTTP request on a TLS port");
        len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 400 Bad Request\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s",
                       sizeof(body) - 1, body);
        if (len > 0 && send(pt->side[0].fd, resp, (size_t) len,
                            MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
        {
            c->bytes_out = (uint64_t) len;
        }
        /* Lingering a little is not worth a timer here: the request was
         * read, so close() sends a FIN, not a reset. */
        shutdown(pt->side[0].fd, SHUT_WR);
    } else {
        hm_log_info(&c->log, "not a TLS handshake: %s",
                    hello->error ? hello->error : "unexpected bytes");
    }
    hm__pt_close(pt, "not_tls");
}

static void
on_handoff_closed(uv_handle_t *h)
{
    hm_pt_t *pt = h->data;

    hm_tls_terminate_start(pt->c);
}

/*
 * A complete ClientHello is in c->preread: record the SNI, run the modules'
 * on_client_hello hooks and act on c->route_action.
 */
static void
hello_done(hm_pt_t *pt, const hm_tls_hello_t *hello)
{
    hm_conn_t *c = pt->c;
    int i, rc;

    if (hello->has_sni && hello->sni_len > 0) {
        c->sni_len = hm_min(hello->sni_len, sizeof(c->sni) - 1);
        hm_strlow(c->sni, hello->sni, c->sni_len);
        c->sni[c->sni_len] = '\0';
        c->log.sni = c->sni;
    }

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->on_client_hello == NULL) {
            continue;
        }
        rc = hm_modules[i]->on_client_hello(c, hello);
        if (rc == HM_DONE) {
            break;
        }
        if (rc == HM_ERROR) {
            send_alert(pt, HM_TLS_ALERT_INTERNAL_ERROR);
            hm__pt_close(pt, "internal_error");
            return;
        }
    }

    switch (c->route_action) {
    case HM_ROUTE_PASSTHROUGH:
        if (c->site == NULL || c->site->upstream == NULL) {
            break;
        }
        pt->state = HM_PT_CONNECTING;
        c->log.action = "connecting to upstream";
        hm__splice_connect(pt);
        return;

    case HM_ROUTE_TERMINATE:
        if (c->site == NULL) {
            break;
        }
        /* Hand the socket over to the TLS stack: stop watching it here,
         * and once our timer handle is closed the TLS layer owns c, its fd
         * and c->preread. */
        hm__ev_del(&pt->side[0].ev);
        pt->side[0].fd = -1;
        pt->state = HM_PT_CLOSED;
        c->drain = NULL;
        c->abort = NULL;
        c->owner = NULL;
        c->log.action = "TLS handshake";
        uv_close((uv_handle_t *) &pt->timer, on_handoff_closed);
        return;

    case HM_ROUTE_REJECT:
        if (c->sni_len) {
            hm_log_info(&c->log, "no site for server name \"%s\" and no "
                        "default_site: refused", c->sni);
        } else {
            hm_log_info(&c->log, "no server name (SNI) in the ClientHello "
                        "and no default_site: refused");
        }
        send_alert(pt, (uint8_t) (c->alert ? c->alert
                                  : HM_TLS_ALERT_UNRECOGNIZED_NAME));
        hm__pt_close(pt, "no_sni_match");
        return;

    default:
        break;
    }

    hm_log_info(&c->log, "no route for the connection: refused");
    send_alert(pt, HM_TLS_ALERT_UNRECOGNIZED_NAME);
    hm__pt_close(pt, "no_sni_match");
}

/* Grows c->preread (malloc'd) up to pt->preread_max.  HM_OK, or
 * HM_DECLINED when the bound is reached, HM_ERROR when out of memory. */
static int
preread_grow(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    size_t cap;
    uint8_t *p;

    if (c->preread_cap >= pt->preread_max) {
        return HM_DECLINED;
    }
    cap = hm_min(c->preread_cap * 2, pt->preread_max);
    p = realloc(c->preread, cap);
    if (p == NULL) {
        return HM_ERROR;
    }
    c->preread = p;
    c->preread_cap = cap;
    return HM_OK;
}

/*
 * Reads what the client sent and parses the PROXY header and the
 * ClientHello.  Edge-triggered: after a short read that did not complete
 * the hello, return and wait for the next event (new data, new edge);
 * unless the client's FIN or a reset was reported with the data (the
 * client gave up after part of a hello): no edge follows, so read on to
 * the end of input or the error and close now, not at the timeout.
 */
static void
preread_process(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    hm_tls_hello_t hello;
    hm_proxy_info_t pinfo;
    ssize_t n;
    size_t want;
    int rc, loops;

    for (loops = 0; loops < 64; loops++) {
        if (c->preread_len == c->preread_cap) {
            rc = preread_grow(pt);
            if (rc == HM_ERROR) {
                hm_log_error(&c->log, "out of memory for the ClientHello");
                send_alert(pt, HM_TLS_ALERT_INTERNAL_ERROR);
                hm__pt_close(pt, "no_memory");
                return;
            }
            if (rc != HM_OK) {
                /* the hello itself may be smaller: record headers count
                 * (a hello in 1-byte records is six times its size) */
                hm_log_info(&c->log, "ClientHello not complete after %zu "
                            "bytes (client_hello_max_bytes %zu, record "
                            "headers included)", c->preread_len,
                            c->listener->client_hello_max_bytes);
                send_alert(pt, HM_TLS_ALERT_DECODE_ERROR);
                hm__pt_close(pt, "bad_hello");
                return;
            }
        }
        want = c->preread_cap - c->preread_len;
        n = recv(pt->side[0].fd, c->preread + c->preread_len, want, 0);
        if (n == 0) {
            hm_log_info(&c->log, "client closed the connection after %zu "
                        "byte(s)", c->preread_len);
            hm__pt_close(pt, "client_closed");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            hm_log_info(&c->log, "recv() failed: %s", strerror(errno));
            hm__pt_close(pt, "client_closed");
            return;
        }
        c->preread_len += (size_t) n;

        if (pt->state == HM_PT_PROXY_HDR) {
            memset(&pinfo, 0, sizeof(pinfo));
            rc = hm_proxy_proto_parse(c->preread, c->preread_len,
                                      HM_PROXY_HDR_MAX, &pinfo);
            if (rc == HM_AGAIN) {
                if ((size_t) n < want && !pt->side[0].rdhup) {
                    return;
                }
                continue;
            }
            if (rc != HM_OK) {
                hm_log_info(&c->log, "bad PROXY protocol header: %s",
                            pinfo.error ? pinfo.error : "malformed");
                hm__pt_close(pt, "bad_proxy_protocol");
                return;
            }
            if (!pinfo.local && pinfo.src_len > 0) {
                hm_conn_set_peer(c, (struct sockaddr *) &pinfo.src,
                                 pinfo.src_len);
                if (pinfo.dst_len > 0 && pinfo.dst_len <= sizeof(c->local)) {
                    memcpy(&c->local, &pinfo.dst, pinfo.dst_len);
                    c->local_len = pinfo.dst_len;
                }
            }
            memmove(c->preread, c->preread + pinfo.consumed,
                    c->preread_len - pinfo.consumed);
            c->preread_len -= pinfo.consumed;
            pt->state = HM_PT_HELLO;
            if (c->preread_len == 0) {
                continue;
            }
        }

        rc = hm_tls_hello_parse(c->preread, c->preread_len,
                                c->listener->client_hello_max_bytes, &hello);
        switch (rc) {
        case HM_OK:
            if ((size_t) n == want) {
                /* The read filled the buffer: more bytes may wait behind
                 * the hello, and no new edge will say so. */
                pt->side[0].rd_ready = 1;
            }
            hello_done(pt, &hello);
            return;
        case HM_AGAIN:
            if ((size_t) n < want && !pt->side[0].rdhup) {
                return;
            }
            continue;
        case HM_DECLINED:
            not_tls(pt, &hello);
            return;
        default:
            hm_log_info(&c->log, "malformed ClientHello: %s",
                        hello.error ? hello.error : "?");
            send_alert(pt, HM_TLS_ALERT_DECODE_ERROR);
            hm__pt_close(pt, "bad_hello");
            return;
        }
    }
}

static void
on_client_preread(hm_ev_t *ev, uint32_t events)
{
    hm_pt_t *pt = hm_container_of(ev, hm_pt_t, side[0].ev);

    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        pt->side[0].rdhup = 1;  /* the relay must read the EOF itself */
    }
    preread_process(pt);
}

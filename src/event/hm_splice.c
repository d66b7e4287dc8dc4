/*
 * hm_splice.c: step 4 of a connection (STYLE.md section 4), the
 * passthrough relay.  Connects to a peer of the site's upstream (next
 * server on failure, connect_timeout_ms), sends the optional PROXY
 * protocol header and every preread byte, then moves bytes both ways with
 * splice(2) through pipes from a per-worker free list (zero copy), with
 * recv/send through a small buffer as the fallback when the kernel refuses
 * splice for these fds.
 *
 * Flow control: a direction only reads from its source when its pipe is
 * empty, so at most one pipe of data (1 MiB) is in flight per direction and
 * a slow reader stops the fast writer (backpressure by not reading).  End
 * of input on one side becomes shutdown(SHUT_WR) on the other once the
 * pipe drained; the connection closes when both directions are done, on a
 * reset, or after limits.idle_timeout_ms without traffic.
 */
#include "hm_core.h"
#include "hm_preread.h"
#include "hm_proxy_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <unistd.h>

#define HM_PIPE_SIZE      (1024 * 1024)
#define HM_PIPE_FREE_MAX  256
#define HM_COPY_BUF_SIZE  (64 * 1024)

static hm_pipe_t pipe_free[HM_PIPE_FREE_MAX];
static int       npipe_free;
static int       pipe_size = HM_PIPE_SIZE;   /* lowered if refused */

static void on_client_ev(hm_ev_t *ev, uint32_t events);
static void on_upstream_ev(hm_ev_t *ev, uint32_t events);
static void connect_next(hm_pt_t *pt);

/* Takes a pipe from the worker's free list or makes one (sized with
 * F_SETPIPE_SZ).  HM_OK or HM_ERROR (out of fds). */
static int
pipe_get(hm_pipe_t *p)
{
    int fds[2], sz;

    if (npipe_free > 0) {
        *p = pipe_free[--npipe_free];
        p->pending = 0;
        return HM_OK;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        return HM_ERROR;
    }
    sz = fcntl(fds[1], F_SETPIPE_SZ, pipe_size);
    while (sz < 0 && pipe_size > 65536) {
        pipe_size /= 4;
        sz = fcntl(fds[1], F_SETPIPE_SZ, pipe_size);
    }
    if (sz < 0) {
        sz = fcntl(fds[1], F_GETPIPE_SZ);
    }
    p->rfd = fds[0];
    p->wfd = fds[1];
    p->cap = sz > 0 ? (size_t) sz : 65536;
    p->pending = 0;
    return HM_OK;
}

/* Returns an empty pipe to the free list; a pipe still holding bytes (or
 * beyond the list's bound) is closed. */
void
hm__pipe_put(hm_pipe_t *p)
{
    if (p->rfd < 0) {
        return;
    }
    if (p->pending == 0 && npipe_free < HM_PIPE_FREE_MAX) {
        pipe_free[npipe_free++] = *p;
    } else {
        close(p->rfd);
        close(p->wfd);
    }
    p->rfd = p->wfd = -1;
    p->pending = 0;
}

static const char *
reset_outcome(int side)
{
    return side == 0 ? "client_reset" : "upstream_reset";
}

/*
 * Sends what is left of the PROXY header and the preread bytes to the
 * upstream socket.  Returns HM_OK when everything went out, HM_AGAIN when
 * the socket is not connected yet or full, HM_ERROR with errno set.
 */
static int
send_preread(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    struct iovec iov[2];
    struct msghdr msg;
    size_t total, off;
    ssize_t n;
    int k = 0;

    total = pt->pp_out_len + c->preread_len;
    off = pt->sent;
    if (off < pt->pp_out_len) {
        iov[k].iov_base = pt->pp_out + off;
        iov[k++].iov_len = pt->pp_out_len - off;
        off = 0;
    } else {
        off -= pt->pp_out_len;
    }
    if (off < c->preread_len) {
        iov[k].iov_base = c->preread + off;
        iov[k++].iov_len = c->preread_len - off;
    }
    if (k == 0) {
        return HM_OK;
    }
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t) k;
    do {
        n = sendmsg(pt->side[1].fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? HM_AGAIN : HM_ERROR;
    }
    pt->sent += (size_t) n;
    return pt->sent == total ? HM_OK : HM_AGAIN;
}

static void
set_masks(hm_pt_t *pt)
{
    uint32_t m;
    int k;

    for (k = 0; k < 2; k++) {
        hm_pt_side_t *s = &pt->side[k];
        if (s->ev.fd < 0) {
            continue;
        }
        if (s->rd_eof && s->wr_shut) {
            /* Both directions of this socket are finished: stop watching
             * it (a level-triggered EPOLLHUP would fire forever). */
            hm__ev_del(&s->ev);
            continue;
        }
        m = 0;
        if (!s->rd_eof && pt->pipe[k].pending == 0) {
            m |= EPOLLIN | EPOLLRDHUP;
        }
        if (s->wr_blocked && pt->pipe[1 - k].pending > 0) {
            m |= EPOLLOUT;
        }
        hm__ev_mod(&s->ev, m);
    }
}

static void
relay_start(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;

    pt->state = HM_PT_RELAY;
    c->log.action = "relaying";
    hm_upstream_peer_result(pt->peer, 1);
    c->bytes_in = c->preread_len;
    pt->idle_ms = c->site->limits.idle_timeout_ms;
    pt->active_ms = uv_now(c->worker->loop);
    if (pt->idle_ms > 0) {
        uv_timer_start(&pt->timer, hm__pt_on_timer,
                       (uint64_t) pt->idle_ms, 0);
    } else {
        uv_timer_stop(&pt->timer);
    }
    pt->side[1].ev.handler = on_upstream_ev;
    set_masks(pt);
}

/* Gives up on the current peer after a failed attempt and records it. */
static void
fail_attempt(hm_pt_t *pt, const char *what, int err, const char *outcome)
{
    hm_conn_t *c = pt->c;

    hm_log_error(&c->log, "upstream \"%s\" server %s: %s%s%s",
                 c->site->upstream->name, pt->peer->text, what,
                 err ? ": " : "", err ? strerror(err) : "");
    if (pt->side[1].fd >= 0) {
        hm__ev_forget(&pt->side[1].ev);
        close(pt->side[1].fd);
        pt->side[1].fd = -1;
    }
    hm_upstream_peer_done(pt->peer, 0);
    pt->peer = NULL;
    pt->fail_outcome = outcome;
}

static void
build_proxy_header(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    int mode = c->site->proxy_protocol_out;
    socklen_t len;

    if (mode == HM_PROXY_PROTOCOL_NONE) {
        return;
    }
    if (c->local_len == 0) {
        len = sizeof(c->local);
        if (getsockname(pt->side[0].fd, (struct sockaddr *) &c->local,
                        &len) == 0)
        {
            c->local_len = len;
        }
    }
    if (mode == HM_PROXY_PROTOCOL_V2) {
        pt->pp_out_len = hm_proxy_proto_v2_build(pt->pp_out,
                             sizeof(pt->pp_out),
                             (struct sockaddr *) &c->peer,
                             (struct sockaddr *) &c->local);
    } else {
        pt->pp_out_len = hm_proxy_proto_v1_build((char *) pt->pp_out,
                             sizeof(pt->pp_out),
                             (struct sockaddr *) &c->peer,
                             (struct sockaddr *) &c->local);
    }
    if (pt->pp_out_len == 0) {
        hm_log_warn(&c->log, "cannot build a PROXY protocol header for "
                    "these addresses: sent without");
    }
}

/*
 * Starts the upstream leg of a passthrough connection (c->site chosen by
 * sni_route): builds the PROXY header if asked and connects to a peer.
 */
void
hm__splice_connect(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;

    pt->rt = hm_upstream_rt(c->site->upstream);
    pt->side[0].ev.handler = on_client_ev;
    pt->side[1].ev.handler = on_upstream_ev;
    build_proxy_header(pt);
    connect_next(pt);
}

static void
connect_next(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    hm_conf_upstream_t *u = c->site->upstream;
    hm_upstream_peer_t *peer;
    int fd, one = 1, rc, err;
    size_t n;

    for (;;) {
        peer = pt->ntried < HM_UPSTREAM_MAX_TRIES
               ? hm_upstream_select(pt->rt, pt->tried, pt->ntried) : NULL;
        if (peer == NULL) {
            if (pt->ntried == 0) {
                hm_log_error(&c->log, "upstream \"%s\": no server available",
                             u->name);
            } else {
                hm_log_error(&c->log, "upstream \"%s\": all %zu attempt(s) "
                             "failed", u->name, pt->ntried);
            }
            hm__pt_close(pt, pt->fail_outcome ? pt->fail_outcome
                                              : "upstream_refused");
            return;
        }
        pt->tried[pt->ntried++] = peer;
        pt->peer = peer;
        pt->sent = 0;
        n = strlen(peer->text);
        if (n >= sizeof(c->upstream_text)) {
            n = sizeof(c->upstream_text) - 1;
        }
        memcpy(c->upstream_text, peer->text, n);
        c->upstream_text[n] = '\0';

        fd = socket(peer->addr->sa_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            hm_log_error(&c->log, "socket() failed: %s", strerror(errno));
            hm__pt_close(pt, "internal_error");
            return;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pt->side[1].fd = fd;
        if (connect(fd, peer->addr, peer->addr_len) != 0
            && errno != EINPROGRESS)
        {
            err = errno;
            fail_attempt(pt, "connect() failed", err, "upstream_refused");
            continue;
        }
        /* On loopback and fast networks the handshake has usually
         * completed by now: try to send the preread at once and save a
         * round through the poll.  EAGAIN = not yet connected. */
        rc = send_preread(pt);
        if (rc == HM_ERROR) {
            err = errno;
            fail_attempt(pt, "connect failed", err,
                         err == ETIMEDOUT ? "upstream_timeout"
                                          : "upstream_refused");
            continue;
        }
        if (hm__ev_add(&pt->side[1].ev, fd,
                       rc == HM_OK ? EPOLLIN | EPOLLRDHUP : EPOLLOUT)
            != HM_OK)
        {
            hm_log_error(&c->log, "epoll_ctl(ADD) failed: %s",
                         strerror(errno));
            hm__pt_close(pt, "internal_error");
            return;
        }
        if (rc == HM_OK) {
            relay_start(pt);
            return;
        }
        uv_timer_start(&pt->timer, hm__pt_on_timer,
                       (uint64_t) (u->connect_timeout_ms > 0
                                   ? u->connect_timeout_ms : 2000), 0);
        return;
    }
}

void
hm__splice_timer(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    uint64_t now, idle;

    if (pt->state == HM_PT_CONNECTING) {
        fail_attempt(pt, "timed out connecting", 0, "upstream_timeout");
        connect_next(pt);
        return;
    }
    if (pt->state != HM_PT_RELAY || pt->idle_ms <= 0) {
        return;
    }
    now = uv_now(c->worker->loop);
    idle = (uint64_t) pt->idle_ms;
    if (now - pt->active_ms >= idle) {
        hm_log_info(&c->log, "idle for %d ms: closing", pt->idle_ms);
        hm__pt_close(pt, "idle_timeout");
        return;
    }
    uv_timer_start(&pt->timer, hm__pt_on_timer,
                   idle - (now - pt->active_ms), 0);
}

/* Switches the connection to recv/send copying (splice refused). */
static int
copy_mode_on(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    int d;

    if (pt->copy_mode) {
        return HM_OK;
    }
    hm_log_info(&c->log, "splice() not supported here: copying");
    for (d = 0; d < 2; d++) {
        if (pt->pipe[d].pending > 0) {
            return HM_ERROR;    /* cannot happen: refused on first use */
        }
        hm__pipe_put(&pt->pipe[d]);
        pt->buf[d] = hm_pool_alloc(c->pool, HM_COPY_BUF_SIZE);
        if (pt->buf[d] == NULL) {
            return HM_ERROR;
        }
        pt->pipe[d].cap = HM_COPY_BUF_SIZE;
        pt->pipe[d].pending = 0;
        pt->off[d] = 0;
    }
    pt->copy_mode = 1;
    return HM_OK;
}

/*
 * Writes direction d's pending bytes to its destination.  Returns HM_OK
 * (progress or blocked) or HM_ERROR (connection closed).
 */
static int
flush(hm_pt_t *pt, int d)
{
    hm_pipe_t *p = &pt->pipe[d];
    hm_pt_side_t *dst = &pt->side[1 - d];
    ssize_t w;

    for (;;) {
        if (pt->copy_mode) {
            w = send(dst->fd, pt->buf[d] + pt->off[d], p->pending,
                     MSG_NOSIGNAL);
        } else {
            w = splice(p->rfd, NULL, dst->fd, NULL, p->pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        }
        if (w > 0) {
            break;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            dst->wr_blocked = 1;
            return HM_OK;
        }
        hm_log_info(&pt->c->log, "writing to the %s failed: %s",
                    d == 0 ? "upstream" : "client",
                    w < 0 ? strerror(errno) : "no progress");
        hm__pt_close(pt, reset_outcome(1 - d));
        return HM_ERROR;
    }
    p->pending -= (size_t) w;
    pt->off[d] = p->pending ? pt->off[d] + (size_t) w : 0;
    if (d == 0) {
        pt->c->bytes_in += (uint64_t) w;
    } else {
        pt->c->bytes_out += (uint64_t) w;
    }
    /* A short write means the socket buffer is full. */
    dst->wr_blocked = p->pending > 0;
    return HM_OK;
}

/*
 * Moves data of direction d (0: client -> upstream, 1: upstream ->
 * client): flushes what its pipe holds, then, if flags has HM_PUMP_READ
 * and the pipe is empty, reads from the source and flushes again;
 * propagates end of input as shutdown(SHUT_WR).  Returns HM_OK or
 * HM_ERROR (closed).
 */
#define HM_PUMP_READ  1
#define HM_PUMP_RDHUP 2

static int
pump(hm_pt_t *pt, int d, int flags)
{
    hm_pt_side_t *src = &pt->side[d], *dst = &pt->side[1 - d];
    hm_pipe_t *p = &pt->pipe[d];
    ssize_t r;
    int tries;

    if (p->pending > 0 && !dst->wr_blocked) {
        if (flush(pt, d) != HM_OK) {
            return HM_ERROR;
        }
    }
    /* One read per event (level-triggered: more data is reported again).
     * When the peer has also sent its FIN (EPOLLRDHUP with the data), read
     * again at once: the EOF then costs no extra round through the loop. */
    for (tries = 0; (flags & HM_PUMP_READ) && p->pending == 0 && !src->rd_eof
                    && tries < ((flags & HM_PUMP_RDHUP) ? 2 : 1); tries++)
    {
        if (!pt->copy_mode && p->rfd < 0 && pipe_get(p) != HM_OK) {
            if (copy_mode_on(pt) != HM_OK) {
                hm_log_error(&pt->c->log, "no pipe and no memory");
                hm__pt_close(pt, "internal_error");
                return HM_ERROR;
            }
        }
        for (;;) {
            if (pt->copy_mode) {
                r = recv(src->fd, pt->buf[d], HM_COPY_BUF_SIZE, 0);
            } else {
                r = splice(src->fd, NULL, p->wfd, NULL, p->cap,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (r < 0 && errno == EINVAL) {
                    if (copy_mode_on(pt) != HM_OK) {
                        hm__pt_close(pt, "internal_error");
                        return HM_ERROR;
                    }
                    continue;
                }
            }
            if (r < 0 && errno == EINTR) {
                continue;
            }
            break;
        }
        if (r > 0) {
            p->pending = (size_t) r;
            pt->off[d] = 0;
            dst->wr_blocked = 0;
            if (flush(pt, d) != HM_OK) {
                return HM_ERROR;
            }
        } else if (r == 0) {
            src->rd_eof = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            hm_log_info(&pt->c->log, "reading from the %s failed: %s",
                        d == 0 ? "client" : "upstream", strerror(errno));
            hm__pt_close(pt, reset_outcome(d));
            return HM_ERROR;
        } else {
            break;
        }
    }
    if (src->rd_eof && p->pending == 0 && !dst->wr_shut) {
        /* When the other direction is finished too, the connection is
         * about to close and close() sends the FIN: skip the syscall. */
        if (!(dst->rd_eof && pt->pipe[1 - d].pending == 0 && src->wr_shut)) {
            (void) shutdown(dst->fd, SHUT_WR);
        }
        dst->wr_shut = 1;
    }
    return HM_OK;
}

static void
relay(hm_pt_t *pt, int s, uint32_t events)
{
    hm_conn_t *c = pt->c;
    int i;

    if (events & EPOLLERR) {
        hm_log_info(&c->log, "connection reset by the %s",
                    s == 0 ? "client" : "upstream");
        hm__pt_close(pt, reset_outcome(s));
        return;
    }
    if (events & (EPOLLOUT | EPOLLHUP)) {
        pt->side[s].wr_blocked = 0;
    }
    /* Direction s reads from this socket; direction 1 - s writes to it. */
    if (pump(pt, s, ((events & (EPOLLIN | EPOLLHUP)) ? HM_PUMP_READ : 0)
                    | ((events & (EPOLLRDHUP | EPOLLHUP)) ? HM_PUMP_RDHUP : 0))
        != HM_OK)
    {
        return;
    }
    if (pump(pt, 1 - s, 0) != HM_OK) {
        return;
    }
    pt->active_ms = uv_now(c->worker->loop);

    for (i = 0; i < 2; i++) {
        if (!(pt->side[i].rd_eof && pt->pipe[i].pending == 0
              && pt->side[1 - i].wr_shut))
        {
            break;
        }
    }
    if (i == 2) {
        hm__pt_close(pt, "ok");
        return;
    }
    set_masks(pt);
}

/* Client socket event while connecting: keep the bytes for the upstream
 * (bounded by the preread buffer), notice a client that gives up. */
static void
client_while_connecting(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;
    ssize_t n;

    if (c->preread_len == c->preread_cap) {
        hm__ev_mod(&pt->side[0].ev, 0);     /* resumed by relay_start */
        return;
    }
    n = recv(pt->side[0].fd, c->preread + c->preread_len,
             c->preread_cap - c->preread_len, 0);
    if (n > 0) {
        c->preread_len += (size_t) n;
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    hm_log_info(&c->log, "client closed the connection while connecting "
                "to upstream");
    hm__pt_close(pt, "client_closed");
}

static void
on_client_ev(hm_ev_t *ev, uint32_t events)
{
    hm_pt_t *pt = hm_container_of(ev, hm_pt_t, side[0].ev);

    if (pt->state == HM_PT_RELAY) {
        relay(pt, 0, events);
    } else if (pt->state == HM_PT_CONNECTING) {
        client_while_connecting(pt);
    }
}

static void
on_upstream_ev(hm_ev_t *ev, uint32_t events)
{
    hm_pt_t *pt = hm_container_of(ev, hm_pt_t, side[1].ev);
    int rc, err;

    if (pt->state == HM_PT_RELAY) {
        relay(pt, 1, events);
        return;
    }
    if (pt->state != HM_PT_CONNECTING) {
        return;
    }
    rc = send_preread(pt);
    if (rc == HM_AGAIN) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            /* Refused or reset before anything was accepted. */
            fail_attempt(pt, "connect failed", ECONNREFUSED,
                         "upstream_refused");
            connect_next(pt);
        }
        return;
    }
    if (rc == HM_ERROR) {
        err = errno;
        fail_attempt(pt, "connect failed", err,
                     err == ETIMEDOUT ? "upstream_timeout"
                                      : "upstream_refused");
        connect_next(pt);
        return;
    }
    relay_start(pt);
}

/*
 * hm_splice.c: step 4 of a connection (STYLE.md section 4), the
 * passthrough relay.  Connects to a peer of the site's upstream (next
 * server on failure, connect_timeout_ms), sends the optional PROXY
 * protocol header and every preread byte, then moves bytes both ways.
 *
 * Two ways to move a direction's bytes, chosen per direction:
 * - copy: recv() into one worker-wide buffer and send() at once.  The TLS
 *   handshake and small request/response exchanges move a few small
 *   messages, for which this is cheaper than splice (no pipe, no page
 *   references); what a send() leaves over goes to a per-connection pool
 *   buffer (the direction then reads nothing more until it is sent).
 * - splice: once a direction has moved HM_SPLICE_AFTER bytes, splice(2)
 *   through a pipe from a per-worker free list (zero copy, 1 MiB pipes).
 *   Only bulk connections ever take a pipe.  If the kernel refuses splice
 *   for these fds the direction stays in copy mode.
 *
 * Events: both sockets are registered once, edge-triggered, with
 * EPOLLIN | EPOLLRDHUP (EPOLLOUT added the first time a write blocks and
 * then kept): no epoll_ctl per state change.  A side's rd_ready flag says
 * input may be waiting; it is cleared by a short recv() or EAGAIN.
 *
 * Batching: a direction that streams (HM_BATCH_AFTER bytes since it last
 * paused) raises SO_RCVLOWAT on its source to HM_BATCH_LOWAT, so the kernel
 * wakes the worker once per half MiB instead of once per arriving
 * segment; each wake-up then moves a big chunk, and so does the peer's.
 * The kernel still reports input at once on FIN, memory pressure or a
 * nearly closed receive window.  When the stream pauses for
 * HM_BATCH_TAIL_MS the mark goes back to one byte, which makes the kernel
 * report whatever tail is waiting: at most that much extra latency at the
 * end of a burst, and an interactive exchange after a bulk one runs
 * unbatched until it has moved HM_BATCH_AFTER bytes again.
 *
 * Flow control: a direction only reads from its source when nothing of it
 * is pending, so at most one pipe (1 MiB) or one buffer (64 KiB) of data
 * is in flight per direction and a slow reader stops the fast writer
 * (backpressure by not reading).  End of input on one side becomes
 * shutdown(SHUT_WR) on the other once the pending bytes are out (a last
 * small message read together with the FIN goes out with MSG_MORE, so
 * the data and the FIN leave in one segment); the connection closes when
 * both directions are done, on a reset, or after limits.idle_timeout_ms
 * without traffic.
 */
#include "hm_core.h"
#include "hm_preread.h"
#include "hm_proxy_proto.h"
#include "hm_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <unistd.h>

#define HM_PIPE_SIZE      (1024 * 1024)
#define HM_PIPE_FREE_MAX  256
#define HM_COPY_BUF_SIZE  (64 * 1024)
#define HM_SPLICE_AFTER   (64 * 1024)   /* bytes a direction copies first */
#define HM_PUMP_ROUNDS    4             /* reads per direction and event */
#define HM_EV_MASK        (EPOLLIN | EPOLLRDHUP | EPOLLET)
#define HM_BATCH_LOWAT    (512 * 1024)  /* SO_RCVLOWAT while streaming */
#define HM_BATCH_AFTER    (256 * 1024)  /* bytes moved before batching */
#define HM_BATCH_TAIL_MS  3             /* pause that ends a batch */

/* Worker-wide copy buffer: a worker is one thread and a recv() into it is
 * always followed by the send() of what it got. */
static uint8_t   copy_buf[HM_COPY_BUF_SIZE];

static hm_pipe_t pipe_free[HM_PIPE_FREE_MAX];
static int       npipe_free;
static int       pipe_size = HM_PIPE_SIZE;   /* lowered if refused */

static void on_client_ev(hm_ev_t *ev, uint32_t events);
static void on_upstream_ev(hm_ev_t *ev, uint32_t events);
static void connect_next(hm_pt_t *pt);
static void relay_run(hm_pt_t *pt);

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


/* Adds EPOLLOUT to side k's registration (once: edge-triggered, it stays). */
static void
arm_out(hm_pt_t *pt, int k)
{
    hm_pt_side_t *s = &pt->side[k];

    if (!s->out_armed && s->ev.fd >= 0) {
        s->out_armed = 1;
        hm__ev_mod(&s->ev, HM_EV_MASK | EPOLLOUT);
    }
}

/*
 * Relay deadlines from the last transfer: the idle timeout, and while a
 * direction batches, the pause that ends the batch.
 */
static void
relay_timer_arm(hm_pt_t *pt, uint64_t now)
{
    uint64_t due = UINT64_MAX;

    if (pt->idle_ms > 0) {
        due = pt->active_ms + (uint64_t) pt->idle_ms;
    }
    if ((pt->batch[0] || pt->batch[1])
        && pt->active_ms + HM_BATCH_TAIL_MS < due)
    {
        due = pt->active_ms + HM_BATCH_TAIL_MS;
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&pt->timer);
        return;
    }
    uv_timer_start(&pt->timer, hm__pt_on_timer, due > now ? due - now : 0,
                   0);
}

/* Bytes direction d has delivered so far (0: client -> upstream). */
static uint64_t
dir_moved(const hm_pt_t *pt, int d)
{
    return d == 0 ? pt->c->bytes_in : pt->c->bytes_out;
}

/*
 * Raises (on) or drops the receive low-water mark of direction d's source.
 * Dropping it makes the kernel report input already waiting below the
 * mark (tcp_set_rcvlowat() checks at once).
 */
static void
batch_set(hm_pt_t *pt, int d, int on)
{
    int v = on ? HM_BATCH_LOWAT : 1;

    if (setsockopt(pt->side[d].fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v))
        != 0 && on)
    {
        pt->batch_at[d] = UINT64_MAX;           /* not here: never again */
        return;
    }
    pt->batch[d] = (uint8_t) on;
    if (!on) {
        pt->batch_at[d] = dir_moved(pt, d) + HM_BATCH_AFTER;
    }
}

/* Connected and the preread is out: start relaying.  Input that arrived
 * meanwhile (edge already reported) is read at once. */
static void
relay_start(hm_pt_t *pt)
{
    hm_conn_t *c = pt->c;

    pt->state = HM_PT_RELAY;
    c->log.action = "relaying";
    hm_upstream_peer_result(pt->peer, 1);
    HM_METRIC_INC(UPSTREAM_CONNECTIONS);
    c->bytes_in = c->preread_len;
    pt->idle_ms = c->site->limits.idle_timeout_ms;
    pt->active_ms = uv_now(c->worker->loop);
    pt->batch_at[0] = pt->batch_at[1] = HM_BATCH_AFTER;
    relay_timer_arm(pt, pt->active_ms);
    pt->side[1].ev.handler = on_upstream_ev;
    if (pt->side[0].rdhup) {
        pt->side[0].rd_ready = 1;
    }
    if (pt->side[0].rd_ready || pt->side[1].rd_ready) {
        relay_run(pt);
    }
}

static void
fail_attempt(hm_pt_t *pt, const char *what, int err, const char *outcome)
{
    hm_conn_t *c = pt->c;

    hm_log_error(&c->log, "upstream \"%s\" %s: %s%s%s",
                 c->site->upstream->name, pt->peer->text, what,
                 err ? ": " : "", err ? uv_strerror(-err) : "");
    if (pt->side[1].fd >= 0) {
        hm__ev_forget(&pt->side[1].ev);
        close(pt->side[1].fd);
        pt->side[1].fd = -1;
    }
    HM_METRIC_INC(UPSTREAM_CONNECT_FAILURES);
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
            fail_attempt(pt, "connect failed", err, "upstream_refused");
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
        pt->side[1].out_armed = (rc != HM_OK);
        if (hm__ev_add(&pt->side[1].ev, fd,
                       rc == HM_OK ? HM_EV_MASK : HM_EV_MASK | EPOLLOUT)
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
    int d;

    if (pt->state == HM_PT_CONNECTING) {
        fail_attempt(pt, "connect timed out", 0, "upstream_timeout");
        connect_next(pt);
        return;
    }
    if (pt->state != HM_PT_RELAY) {
        return;
    }
    now = uv_now(c->worker->loop);
    if ((pt->batch[0] || pt->batch[1])
        && now - pt->active_ms >= HM_BATCH_TAIL_MS)
    {
        /* The stream paused: one wake-up per arrival again.  Lowering
         * the mark makes the kernel report what waits below it, and the
         * source is read here as well so that the tail never depends on
         * that (an empty read costs one EAGAIN). */
        for (d = 0; d < 2; d++) {
            if (pt->batch[d]) {
                batch_set(pt, d, 0);
                pt->side[d].rd_ready = 1;
            }
        }
        relay_run(pt);
        if (pt->state != HM_PT_RELAY) {
            return;             /* closed */
        }
    }
    idle = (uint64_t) pt->idle_ms;
    if (pt->idle_ms > 0 && now - pt->active_ms >= idle) {
        hm_log_info(&c->log, "idle for %d ms: closing", pt->idle_ms);
        hm__pt_close(pt, "idle_timeout");
        return;
    }
    relay_timer_arm(pt, now);
}

/*
 * Writes direction d's pending bytes (pipe or leftover buffer) to its
 * destination.  Returns HM_OK (progress or blocked) or HM_ERROR (the
 * connection was closed).
 */
static int
flush(hm_pt_t *pt, int d)
{
    hm_pipe_t *p = &pt->pipe[d];
    hm_pt_side_t *dst = &pt->side[1 - d];
    ssize_t w;

    for (;;) {
        if (pt->in_buf[d]) {
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
            arm_out(pt, 1 - d);
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
    if (p->pending == 0) {
        pt->in_buf[d] = 0;
        dst->wr_blocked = 0;
    } else {
        /* A short write means the socket buffer is full. */
        dst->wr_blocked = 1;
        arm_out(pt, 1 - d);
    }
    return HM_OK;
}

/*
 * Copy mode, one read of direction d: recv() into the worker's buffer and
 * send() it at once; a remainder the socket did not take goes to the
 * direction's pool buffer.  Returns the recv() result (bytes, 0 at end of
 * input, -1 with errno), or -2 when the connection was closed.
 */
static ssize_t
copy_once(hm_pt_t *pt, int d)
{
    hm_pt_side_t *src = &pt->side[d], *dst = &pt->side[1 - d];
    ssize_t r, w;
    int flags;

    do {
        r = recv(src->fd, copy_buf, sizeof(copy_buf), 0);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        return r;
    }
    flags = MSG_NOSIGNAL;
    if ((size_t) r < sizeof(copy_buf)) {
        if (src->rdhup) {
            /* The FIN is behind these bytes: hold them back until the
             * shutdown() (or close()) that follows, one segment for both. */
            flags |= MSG_MORE;
        } else {
            /* Drained; the next arrival is a new edge. */
            src->rd_ready = 0;
        }
    }
    do {
        w = send(dst->fd, copy_buf, (size_t) r, flags);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            hm_log_info(&pt->c->log, "writing to the %s failed: %s",
                        d == 0 ? "upstream" : "client", strerror(errno));
            hm__pt_close(pt, reset_outcome(1 - d));
            return -2;
        }
        w = 0;
    }
    if (d == 0) {
        pt->c->bytes_in += (uint64_t) w;
    } else {
        pt->c->bytes_out += (uint64_t) w;
    }
    if (w < r) {
        if (pt->buf[d] == NULL) {
            pt->buf[d] = hm_pool_alloc(pt->c->pool, HM_COPY_BUF_SIZE);
            if (pt->buf[d] == NULL) {
                hm_log_error(&pt->c->log, "out of memory for a relay buffer");
                hm__pt_close(pt, "internal_error");
                return -2;
            }
        }
        memcpy(pt->buf[d], copy_buf + w, (size_t) (r - w));
        pt->pipe[d].pending = (size_t) (r - w);
        pt->off[d] = 0;
        pt->in_buf[d] = 1;
        dst->wr_blocked = 1;
        arm_out(pt, 1 - d);
    }
    return r;
}

/*
 * Splice mode, one read of direction d into its pipe, then a flush.
 * Returns like copy_once(); -3 when splice is refused for these fds (the
 * direction switches to copy mode).
 */
static ssize_t
splice_once(hm_pt_t *pt, int d)
{
    hm_pt_side_t *src = &pt->side[d];
    hm_pipe_t *p = &pt->pipe[d];
    ssize_t r;

    if (p->rfd < 0 && pipe_get(p) != HM_OK) {
        return -3;              /* out of fds: copy this time */
    }
    do {
        r = splice(src->fd, NULL, p->wfd, NULL, p->cap,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EINVAL) {
        hm_log_info(&pt->c->log, "splice() not supported here: copying");
        hm__pipe_put(p);
        pt->nosplice[d] = 1;
        return -3;
    }
    if (r <= 0) {
        return r;
    }
    /* A short splice does not prove the socket drained (the pipe may have
     * run out of slots): rd_ready stays until EAGAIN. */
    p->pending = (size_t) r;
    pt->in_buf[d] = 0;
    pt->off[d] = 0;
    if (flush(pt, d) != HM_OK) {
        return -2;
    }
    return r;
}

/*
 * Moves data of direction d (0: client -> upstream, 1: upstream ->
 * client): flushes what is pending, then, while the source may have input
 * and nothing is pending, reads and writes (bounded per event; the fd is
 * re-armed when the bound cuts it short).  Propagates end of input as
 * shutdown(SHUT_WR).  Returns HM_OK or HM_ERROR (closed).
 */
static int
pump(hm_pt_t *pt, int d)
{
    hm_pt_side_t *src = &pt->side[d], *dst = &pt->side[1 - d];
    hm_pipe_t *p = &pt->pipe[d];
    ssize_t r;
    int rounds;

    for (rounds = 0; ; rounds++) {
        if (p->pending > 0) {
            if (dst->wr_blocked) {
                break;
            }
            if (flush(pt, d) != HM_OK) {
                return HM_ERROR;
            }
            if (p->pending > 0) {
                break;
            }
        }
        if (!src->rd_ready || src->rd_eof) {
            break;
        }
        if (rounds == HM_PUMP_ROUNDS) {
            hm__ev_rearm(&src->ev);     /* reported again if still ready */
            break;
        }
        r = -3;
        if (dir_moved(pt, d) >= HM_SPLICE_AFTER && !pt->nosplice[d]) {
            r = splice_once(pt, d);
        }
        if (r == -3) {
            r = copy_once(pt, d);
        }
        if (r == -2) {
            return HM_ERROR;
        }
        if (r > 0 && !pt->batch[d] && dir_moved(pt, d) >= pt->batch_at[d]) {
            batch_set(pt, d, 1);
            if (pt->batch[d]) {
                relay_timer_arm(pt, pt->active_ms);
            }
        }
        if (r == 0) {
            src->rd_eof = 1;
            src->rd_ready = 0;
        } else if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                hm_log_info(&pt->c->log, "reading from the %s failed: %s",
                            d == 0 ? "client" : "upstream", strerror(errno));
                hm__pt_close(pt, reset_outcome(d));
                return HM_ERROR;
            }
            src->rd_ready = 0;
            if (src->rdhup) {
                /* Cannot happen (FIN seen, no EOF): do not leave bytes
                 * held back by MSG_MORE. */
                int one = 1;
                (void) setsockopt(dst->fd, IPPROTO_TCP, TCP_NODELAY,
                                  &one, sizeof(one));
            }
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

/* Runs both directions and closes the connection when both are done. */
static void
relay_run(hm_pt_t *pt)
{
    int i;

    if (pump(pt, 0) != HM_OK || pump(pt, 1) != HM_OK) {
        return;
    }
    for (i = 0; i < 2; i++) {
        if (!(pt->side[i].rd_eof && pt->pipe[i].pending == 0
              && pt->side[1 - i].wr_shut))
        {
            return;
        }
    }
    hm__pt_close(pt, "ok");
}

static void
relay(hm_pt_t *pt, int s, uint32_t events)
{
    hm_conn_t *c = pt->c;

    if (events & EPOLLERR) {
        hm_log_info(&c->log, "connection reset by the %s",
                    s == 0 ? "client" : "upstream");
        hm__pt_close(pt, reset_outcome(s));
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        pt->side[s].rd_ready = 1;
        if (events & (EPOLLRDHUP | EPOLLHUP)) {
            pt->side[s].rdhup = 1;
        }
    }
    if (events & (EPOLLOUT | EPOLLHUP)) {
        pt->side[s].wr_blocked = 0;
    }
    pt->active_ms = uv_now(c->worker->loop);
    relay_run(pt);
}

/* Client socket event while connecting: keep the bytes for the upstream
 * (bounded by the preread buffer), notice a client that gives up (a reset
 * or a read error; a FIN is a half-close, relayed once connected).  Edge-
 * triggered: read until EAGAIN or the buffer is full (then the relay
 * resumes reading). */
static void
client_while_connecting(hm_pt_t *pt, uint32_t events)
{
    hm_conn_t *c = pt->c;
    ssize_t n;
    int i;

    if (events & (EPOLLRDHUP | EPOLLHUP)) {
        pt->side[0].rdhup = 1;
    }
    for (i = 0; i < 64; i++) {
        if (c->preread_len == c->preread_cap) {
            pt->side[0].rd_ready = 1;       /* resumed by relay_start */
            return;
        }
        n = recv(pt->side[0].fd, c->preread + c->preread_len,
                 c->preread_cap - c->preread_len, 0);
        if (n > 0) {
            c->preread_len += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n == 0) {
            /* A FIN: the client half-closed after its last bytes, which
             * the upstream still gets, followed by the FIN (relay_start);
             * as in the relay, not an abort. */
            pt->side[0].rd_eof = 1;
            pt->side[0].rdhup = 1;
            return;
        }
        break;
    }
    if (i == 64) {
        pt->side[0].rd_ready = 1;
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
        client_while_connecting(pt, events);
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
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        pt->side[1].rd_ready = 1;
        if (events & (EPOLLRDHUP | EPOLLHUP)) {
            pt->side[1].rdhup = 1;
        }
    }
    relay_start(pt);
}

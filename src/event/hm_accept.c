/*
 * hm_accept.c: the worker's front door.  First step of a connection's
 * data flow (STYLE.md section 4): the worker watches only its own
 * SO_REUSEPORT clones (cycle->listens with owner == w->slot), accepts with
 * accept4(NONBLOCK|CLOEXEC) in a loop capped per wakeup, enforces
 * runtime.max_connections, and hands each new socket to hm_conn_new() and
 * the ClientHello preread (hm_preread.c).
 *
 * It also owns the worker's raw-socket event plumbing (hm_preread.h): one
 * epoll instance (listeners level-triggered, connection sockets edge-
 * triggered), watched by a single uv_poll_t on the libuv loop, dispatching
 * to hm_ev_t handlers.
 */
#include "hm_core.h"
#include "hm_preread.h"
#include "hm_admin.h"
#include "hm_metrics.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <unistd.h>

#define HM_ACCEPT_BATCH   64    /* accepts per wakeup and listener */
#define HM_EPOLL_BATCH    256
#define HM_DEFER_MIN_CONNS 1024 /* max_connections from which we defer */
#define HM_DEFER_ACCEPT_MS 1000 /* TCP_DEFER_ACCEPT 1 s: one SYN-ACK retry */

typedef struct {
    hm_ev_t      ev;            /* first: handler gets &ev */
    hm_listen_t *ls;
    hm_worker_t *w;
} hm_acceptor_t;

typedef struct {
    int            epfd;
    uv_poll_t      poll;
    int            started;
    hm_acceptor_t *acc;
    size_t         nacc;
    int            accepting;
    uv_timer_t     retry;       /* EMFILE back-off */
    uv_timer_t     refused_flush;   /* logs refusals not logged yet */
    uint64_t       refused_log_ms;
    uint64_t       refused_since_log;
} hm_accept_state_t;

hm_accept_stats_t hm_accept_stats;
int               hm__defer_accept_ms;

static hm_accept_state_t st = { -1 };

int
hm__ev_add(hm_ev_t *ev, int fd, uint32_t mask)
{
    struct epoll_event e;

    e.events = mask;
    e.data.ptr = ev;
    if (epoll_ctl(st.epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        return HM_ERROR;
    }
    ev->fd = fd;
    ev->mask = mask;
    return HM_OK;
}

void
hm__ev_mod(hm_ev_t *ev, uint32_t mask)
{
    struct epoll_event e;

    if (ev->fd < 0 || ev->mask == mask) {
        return;
    }
    e.events = mask;
    e.data.ptr = ev;
    if (epoll_ctl(st.epfd, EPOLL_CTL_MOD, ev->fd, &e) == 0) {
        ev->mask = mask;
    }
}

void
hm__ev_rearm(hm_ev_t *ev)
{
    struct epoll_event e;

    if (ev->fd < 0) {
        return;
    }
    e.events = ev->mask;
    e.data.ptr = ev;
    (void) epoll_ctl(st.epfd, EPOLL_CTL_MOD, ev->fd, &e);
}

void
hm__ev_del(hm_ev_t *ev)
{
    struct epoll_event e;

    if (ev->fd < 0) {
        return;
    }
    memset(&e, 0, sizeof(e));
    (void) epoll_ctl(st.epfd, EPOLL_CTL_DEL, ev->fd, &e);
    ev->fd = -1;
    ev->mask = 0;
}

/* The outer poll: our epoll fd is readable; dispatch one batch. */
static void
on_epoll(uv_poll_t *h, int status, int events)
{
    struct epoll_event evs[HM_EPOLL_BATCH];
    hm_ev_t *ev;
    int n, i;

    n = epoll_wait(st.epfd, evs, HM_EPOLL_BATCH, 0);
    for (i = 0; i < n; i++) {
        ev = evs[i].data.ptr;
        if (ev->fd < 0) {
            continue;           /* closed earlier in this batch */
        }
        ev->handler(ev, evs[i].events);
    }
}

void
hm__accept_update_ref(hm_worker_t *w)
{
    if (!st.started) {
        return;
    }
    if (st.accepting || w->nconns > 0) {
        uv_ref((uv_handle_t *) &st.poll);
    } else {
        uv_unref((uv_handle_t *) &st.poll);
    }
}

/* The worker's connection limit: w->max_connections (hm_worker.c sets
 * it from runtime.max_connections, with its default), else the
 * configuration's. */
static int
worker_max_conns(const hm_worker_t *w)
{
    return w->max_connections > 0 ? w->max_connections
                                  : w->cycle->conf->runtime.max_connections;
}

static void
refused_log_now(int max, uint64_t now)
{
    hm_log_info(NULL, "max_connections (%d) reached: refused %llu "
                "connection(s)", max,
                (unsigned long long) st.refused_since_log);
    st.refused_log_ms = now;
    st.refused_since_log = 0;
}

/* The rest of a burst: the refusals after the last line, a second on. */
static void
on_refused_flush(uv_timer_t *t)
{
    hm_worker_t *w = t->data;

    if (st.refused_since_log > 0) {
        refused_log_now(worker_max_conns(w), hm_now_ms());
    }
}

static void
refused_log(hm_worker_t *w, int max)
{
    uint64_t now = hm_now_ms();

    st.refused_since_log++;
    /* At most one line a second: an overload must not also flood the
     * error log; what a second's line could not count is logged by the
     * flush timer (it said "refused 1" for a burst of hundreds). */
    if (now - st.refused_log_ms >= 1000) {
        refused_log_now(max, now);
    } else if (!uv_is_active((uv_handle_t *) &st.refused_flush)) {
        st.refused_flush.data = w;
        uv_timer_start(&st.refused_flush, on_refused_flush,
                       1000 - (now - st.refused_log_ms), 0);
    }
}

static void on_accept(hm_ev_t *ev, uint32_t events);

static void
on_retry(uv_timer_t *t)
{
    size_t i;

    if (!st.accepting) {
        return;
    }
    for (i = 0; i < st.nacc; i++) {
        hm__ev_mod(&st.acc[i].ev, EPOLLIN);
    }
}

int
hm__defer_listener(const hm_conf_listener_t *l)
{
    return l->client_hello_timeout_ms >= HM_DEFER_ACCEPT_MS;
}

/*
 * Accepts up to HM_ACCEPT_BATCH connections from one listening socket.
 * Over max_connections a socket is closed at once (counted, logged at
 * info, rate-limited).  A shortage of descriptors or memory
 * (hm_errno_shortage) pauses accepting for HM_ACCEPT_RETRY_MS (the listen
 * queue keeps the clients) instead of spinning on a level-triggered event
 * that cannot be served.
 */
static void
on_accept(hm_ev_t *ev, uint32_t events)
{
    hm_acceptor_t *a = (hm_acceptor_t *) ev;
    hm_worker_t *w = a->w;
    struct sockaddr_storage ss;
    socklen_t len;
    hm_conn_t *c;
    int fd, i, max;
    size_t k;

    max = worker_max_conns(w);
    for (i = 0; i < HM_ACCEPT_BATCH; i++) {
        len = sizeof(ss);
        fd = accept4(a->ls->fd, (struct sockaddr *) &ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
                continue;
            }
            hm_accept_stats.accept_errors++;
            hm_log_error(NULL, "accept4() on %s failed: %s", a->ls->addr->text,
                         strerror(errno));
            if (hm_errno_shortage(errno)) {
                for (k = 0; k < st.nacc; k++) {
                    hm__ev_mod(&st.acc[k].ev, 0);
                }
                uv_timer_start(&st.retry, on_retry, HM_ACCEPT_RETRY_MS, 0);
            }
            return;
        }
        hm_accept_stats.accepted++;
        if (max > 0 && w->nconns >= max) {
            hm_accept_stats.refused_max_conns++;
            refused_log(w, max);
            hm_metrics_conn_done(a->ls->listener->metrics_row,
                                 "too_many_connections");
            close(fd);
            hm__conn_log_refused(a->ls->listener, (struct sockaddr *) &ss,
                                 "too_many_connections");
            continue;
        }
        c = hm_conn_new(w, a->ls->listener, fd, (struct sockaddr *) &ss, len);
        if (c == NULL) {
            hm_log_error(NULL, "out of memory for a new connection");
            close(fd);
            continue;
        }
        if (a->ls->listener->redirect_to_https) {
            hm__redirect_start(c);  /* plaintext: 301 to https */
            continue;
        }
        hm__preread_start(c);
    }
}

/*
 * Starts accepting on this worker's listening sockets.  Creates the
 * worker's epoll instance and upstream runtime state on first call.
 * Returns HM_OK or HM_ERROR (logged).
 */
int
hm_accept_init(hm_worker_t *w)
{
    hm_cycle_t *cycle = w->cycle;
    hm_acceptor_t *a;
    size_t i, n;
    int one = 1, rc, max, defer;

    hm_upstream_init_worker(cycle);
    max = worker_max_conns(w);
    hm__defer_accept_ms = 0;

    if (!st.started) {
        st.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (st.epfd < 0) {
            hm_log_error(NULL, "epoll_create1() failed: %s", strerror(errno));
            return HM_ERROR;
        }
        rc = uv_poll_init(w->loop, &st.poll, st.epfd);
        if (rc == 0) {
            rc = uv_poll_start(&st.poll, UV_READABLE, on_epoll);
        }
        if (rc != 0) {
            hm_log_error(NULL, "uv_poll on epoll fd: %s", uv_strerror(rc));
            return HM_ERROR;
        }
        uv_timer_init(w->loop, &st.retry);
        uv_unref((uv_handle_t *) &st.retry);
        uv_timer_init(w->loop, &st.refused_flush);
        uv_unref((uv_handle_t *) &st.refused_flush);
        st.started = 1;
    }

    n = 0;
    for (i = 0; i < cycle->nlistens; i++) {
        if (cycle->listens[i].owner == w->slot && cycle->listens[i].fd >= 0) {
            n++;
        }
    }
    st.acc = hm_xcalloc(n ? n : 1, sizeof(hm_acceptor_t));
    st.nacc = 0;
    for (i = 0; i < cycle->nlistens; i++) {
        hm_listen_t *ls = &cycle->listens[i];
        if (ls->owner != w->slot || ls->fd < 0) {
            continue;
        }
        a = &st.acc[st.nacc++];
        a->ls = ls;
        a->w = w;
        a->ev.handler = on_accept;
        a->ev.fd = -1;
        /* Accepted sockets inherit TCP_NODELAY from the listener on Linux:
         * one setsockopt here instead of one per connection. */
        (void) setsockopt(ls->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Every protocol on our ports speaks first (TLS ClientHello, PROXY
         * header): with TCP_DEFER_ACCEPT the connection wakes us once, when
         * its first bytes are there, instead of once for the accept and
         * once for the hello (hm_preread.c reads at once).  1 s: the kernel
         * hands over a silent connection after one SYN-ACK retransmit, and
         * the preread counts that second against client_hello_timeout_ms.
         * Silent connections then wait in the kernel, not counted against
         * max_connections: so only with a large limit (the default 10000);
         * a small one keeps its exact meaning.  Nor with a
         * client_hello_timeout_ms under the 1 s deferral, which would
         * stretch it to 1 s (hm__defer_listener() says the same). */
        defer = max >= HM_DEFER_MIN_CONNS
                && hm__defer_listener(ls->listener);
        if (setsockopt(ls->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer,
                       sizeof(defer)) == 0 && defer)
        {
            hm__defer_accept_ms = HM_DEFER_ACCEPT_MS;
        }
        if (hm__ev_add(&a->ev, ls->fd, EPOLLIN) != HM_OK) {
            hm_log_error(NULL, "epoll_ctl(%s) failed: %s", ls->addr->text,
                         strerror(errno));
            return HM_ERROR;
        }
    }
    st.accepting = 1;
    hm__accept_update_ref(w);
    hm_log_debug(NULL, "worker %d accepting on %zu socket(s)", w->slot,
                 st.nacc);
    return HM_OK;
}

/*
 * Stops accepting (graceful or fast shutdown, or the old generation of a
 * reload).  Our copies of the listening sockets are closed: the sockets
 * live on in the master (and in the new workers of a reload), and once
 * the master closes its copies too at a stop, new clients are refused
 * instead of queueing where nobody accepts.  Live connections keep the
 * loop alive until they finish.
 */
void
hm_accept_stop(hm_worker_t *w)
{
    size_t i;

    if (!st.started) {
        return;
    }
    for (i = 0; i < st.nacc; i++) {
        hm__ev_del(&st.acc[i].ev);
        if (st.acc[i].ls->fd >= 0) {
            close(st.acc[i].ls->fd);
            st.acc[i].ls->fd = -1;
        }
    }
    uv_timer_stop(&st.retry);
    uv_timer_stop(&st.refused_flush);
    st.refused_flush.data = w;
    on_refused_flush(&st.refused_flush);    /* no refusal left uncounted */
    hm_admin_stop(w);
    st.accepting = 0;
    hm__accept_update_ref(w);
}

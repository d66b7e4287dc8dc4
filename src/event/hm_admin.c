/*
 * hm_admin.c: two tiny HTTP/1.1 servers of the worker (hm_admin.h): the
 * admin listener (metrics, health, trust report; worker slot 0 only) and
 * the plaintext redirect_to_https listeners.
 *
 * Where it sits: the redirect path starts where the ClientHello preread
 * would (hm_accept.c hands the conn over); the admin path has its own
 * accept handler on the same epoll plumbing (hm_preread.h).  Both read
 * one request head into a fixed buffer of the conn's pool (bounded size,
 * bounded time), parse it with hm_http_parse_head(), write one response
 * with Connection: close, shut the write side down and read (discarding)
 * until the client closes or HM_HREQ_LINGER_MS passes, so that a client
 * that sent more than we read still gets the whole answer instead of a
 * reset.
 *
 * Ownership: the conn (hm_conn.h) owns everything: the hm_hreq_t lives in
 * c->pool, the response in c->pool (or malloc'd for admin bodies, freed at
 * close).  The conn is freed from the timer's close callback, after the
 * current event batch.  Admin conns have c->listener == NULL: they are
 * neither counted as client connections nor access-logged.
 */
#include "hm_core.h"
#include "hm_admin.h"
#include "hm_cycle.h"
#include "hm_http_parse.h"
#include "hm_metrics.h"
#include "hm_preread.h"
#include "hm_proxy_proto.h"
#include "hm_trust.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define HM_HREQ_HEAD_MAX        8192    /* request head, bytes */
#define HM_HREQ_MAX_HEADERS     64
#define HM_HREQ_HEADER_TIMEOUT  10000   /* ms to send the head */
#define HM_HREQ_LINGER_MS       2000    /* after the response */
#define HM_ADMIN_MAX_CONNS      64      /* concurrent admin clients */
#define HM_ADMIN_ACCEPT_BATCH   16

enum { HM_HREQ_ADMIN = 1, HM_HREQ_REDIRECT = 2 };
enum { HM_HREQ_READING = 0, HM_HREQ_WRITING, HM_HREQ_LINGER,
       HM_HREQ_CLOSED };

typedef struct hm_hreq_s hm_hreq_t;
struct hm_hreq_s {
    hm_ev_t         ev;             /* first: the handler gets &ev */
    hm_conn_t      *c;
    int             kind;           /* HM_HREQ_* */
    int             state;
    uv_timer_t      timer;
    hm_http_scan_t  scan;
    size_t          in_len;
    char           *out;
    size_t          out_len;
    size_t          out_off;
    int             out_malloced;
    int             pp_done;        /* PROXY header read (or none due) */
    int             head;           /* HEAD: the answer has no body */
    hm_hreq_t      *aprev;          /* admin: open requests, oldest first */
    hm_hreq_t      *anext;
    char            in[HM_HREQ_HEAD_MAX];
};

static struct {
    hm_ev_t      ev;                /* the admin listening socket */
    hm_worker_t *w;
    int          accepting;
    int          nconns;
    hm_hreq_t   *oldest;            /* open admin requests (not closed) */
    hm_hreq_t   *newest;
    uv_timer_t   retry;             /* back-off when out of descriptors */
} admin = { { NULL, -1, 0 }, NULL, 0, 0, NULL, NULL };

static void hreq_on_event(hm_ev_t *ev, uint32_t events);
static void hreq_error(hm_hreq_t *r, int status, const char *extra);

/* ---- the open admin requests --------------------------------------------- */

static void
admin_link(hm_hreq_t *r)
{
    r->aprev = admin.newest;
    r->anext = NULL;
    if (admin.newest != NULL) {
        admin.newest->anext = r;
    } else {
        admin.oldest = r;
    }
    admin.newest = r;
}

static void
admin_unlink(hm_hreq_t *r)
{
    if (r->aprev != NULL) {
        r->aprev->anext = r->anext;
    } else {
        admin.oldest = r->anext;
    }
    if (r->anext != NULL) {
        r->anext->aprev = r->aprev;
    } else {
        admin.newest = r->aprev;
    }
    r->aprev = r->anext = NULL;
}

/* ---- closing ------------------------------------------------------------ */

static void
hreq_closed(uv_handle_t *h)
{
    hm_hreq_t *r = h->data;
    hm_conn_t *c = r->c;

    if (r->out_malloced) {
        free(r->out);
        r->out = NULL;
    }
    if (r->kind == HM_HREQ_ADMIN) {
        admin.nconns--;
    } else {
        hm_conn_log(c);
    }
    c->owner = NULL;
    c->drain = NULL;
    c->abort = NULL;
    hm_conn_free(c);
}

/* Closes the socket now and frees the conn once the timer is closed. */
static void
hreq_close(hm_hreq_t *r, const char *outcome)
{
    hm_conn_t *c = r->c;

    if (r->state == HM_HREQ_CLOSED) {
        return;
    }
    if (c->outcome == NULL) {
        c->outcome = outcome;
    }
    if (r->kind == HM_HREQ_ADMIN) {
        admin_unlink(r);
    }
    r->state = HM_HREQ_CLOSED;
    if (c->fd >= 0) {
        hm__ev_del(&r->ev);
        close(c->fd);
        c->fd = -1;
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *) &r->timer, hreq_closed);
}

static void
hreq_on_timer(uv_timer_t *t)
{
    hm_hreq_t *r = t->data;

    if (r->state == HM_HREQ_LINGER) {
        hreq_close(r, NULL);
        return;
    }
    if (r->state == HM_HREQ_READING && r->pp_done && r->in_len > 0) {
        /* a request was started: 408, as terminating sites answer it
         * (the write gets the same bound) */
        hm_log_info(&r->c->log, "client timed out sending the request head");
        r->c->outcome = "timeout";
        uv_timer_start(&r->timer, hreq_on_timer, HM_HREQ_HEADER_TIMEOUT, 0);
        hreq_error(r, 408, NULL);
        return;
    }
    hm_log_info(&r->c->log, "client timed out %s",
                r->state == HM_HREQ_READING ? "sending the request head"
                                            : "reading the response");
    hreq_close(r, "timeout");
}

static void
hreq_abort(hm_conn_t *c)
{
    hreq_close(c->owner, "shutdown");
}

/* Graceful stop: a client that has not sent a byte yet is closed; one
 * mid-request gets its answer. */
static void
hreq_drain(hm_conn_t *c)
{
    hm_hreq_t *r = c->owner;

    if (r->state == HM_HREQ_READING && r->in_len == 0) {
        hreq_close(r, "shutdown");
    }
}

/* ---- writing ------------------------------------------------------------ */

/* Writes what is left of the response; then shuts the write side down and
 * lingers.  May close r. */
static void
hreq_write(hm_hreq_t *r)
{
    hm_conn_t *c = r->c;
    ssize_t    n;

    while (r->out_off < r->out_len) {
        n = send(c->fd, r->out + r->out_off, r->out_len - r->out_off,
                 MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                hm__ev_mod(&r->ev, EPOLLOUT);
                return;
            }
            hm_log_info(&c->log, "send() failed: %s", strerror(errno));
            hreq_close(r, "client_closed");
            return;
        }
        r->out_off += (size_t) n;
        c->bytes_out += (uint64_t) n;
    }
    (void) shutdown(c->fd, SHUT_WR);
    r->state = HM_HREQ_LINGER;
    hm__ev_mod(&r->ev, EPOLLIN);
    uv_timer_start(&r->timer, hreq_on_timer, HM_HREQ_LINGER_MS, 0);
}

/*
 * Queues a response (status, extra header lines each ending in CRLF or
 * NULL, content type, body) and starts writing it; the answer to a HEAD
 * request keeps the Content-Length of the body but not the body
 * (RFC 9110 9.3.2).  Head and body are
 * copied into one buffer: c->pool up to 4 KiB, else malloc'd (freed at
 * close); the caller keeps its body.  May close r (see r->state).
 */
static void
hreq_respond(hm_hreq_t *r, int status, const char *extra,
             const char *ctype, const char *body, size_t blen)
{
    hm_conn_t *c = r->c;
    char       head[512];
    int        hl;
    size_t     total;

    hl = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\n"
                  "%s"
                  "Content-Type: %s\r\n"
                  "Content-Length: %zu\r\n"
                  "Connection: close\r\n"
                  "\r\n", status, hm_http_reason(status),
                  extra ? extra : "", ctype, blen);
    if (hl < 0 || (size_t) hl >= sizeof(head)) {
        hreq_close(r, "internal_error");
        return;
    }
    if (r->head) {
        blen = 0;
    }
    total = (size_t) hl + blen;
    if (total <= 4096) {
        r->out = hm_pool_alloc(c->pool, total);
        r->out_malloced = 0;
    } else {
        r->out = malloc(total);
        r->out_malloced = r->out != NULL;
    }
    if (r->out == NULL) {
        hm_log_warn(&c->log, "out of memory for a %zu byte response", total);
        hreq_close(r, "no_memory");
        return;
    }
    memcpy(r->out, head, (size_t) hl);
    if (blen > 0) {
        memcpy(r->out + hl, body, blen);
    }
    r->out_len = total;
    r->out_off = 0;
    r->state = HM_HREQ_WRITING;
    if (r->kind == HM_HREQ_REDIRECT) {
        hm_metrics_http_status(status);
    }
    hreq_write(r);
}

/* A plain-text error response: "404 Not Found\n". */
static void
hreq_error(hm_hreq_t *r, int status, const char *extra)
{
    char body[64];
    int  n;

    n = snprintf(body, sizeof(body), "%d %s\n", status,
                 hm_http_reason(status));
    hreq_respond(r, status, extra, "text/plain; charset=utf-8", body,
                 n > 0 ? (size_t) n : 0);
}

/* ---- the admin endpoints ------------------------------------------------ */

static int
path_is(const hm_http_msg_t *m, const char *p)
{
    size_t n = strlen(p);

    return m->path.len == n && memcmp(m->path.data, p, n) == 0;
}

static void
admin_handle(hm_hreq_t *r, const hm_http_msg_t *m)
{
    hm_conn_t  *c = r->c;
    hm_conf_t  *conf = c->cycle->conf;
    char       *body, text[96];
    size_t      len;
    unsigned    up, want;
    int         k;

    HM_METRIC_INC(ADMIN_REQUESTS);
    if (m->method != HM_HTTP_M_GET && m->method != HM_HTTP_M_HEAD) {
        hm_log_info(&c->log, "admin: method %.*s not allowed",
                    (int) m->method_name.len, m->method_name.data);
        hreq_error(r, 405, "Allow: GET, HEAD\r\n");
        return;
    }

    if (path_is(m, "/metrics")) {
        if (hm_metrics_shm == NULL) {
            hreq_error(r, 503, NULL);
            return;
        }
        /* Labelled by the rows the master gave the listeners by name
         * (hm_metrics_listener_row): a series keeps its listener across
         * reloads. */
        body = hm_metrics_render(hm_metrics_shm, NULL, 0, &len);
        if (body == NULL) {
            hreq_error(r, 500, NULL);
            return;
        }
        hreq_respond(r, 200, NULL, "text/plain; version=0.0.4; "
                     "charset=utf-8", body, len);
        free(body);
        return;
    }

    if (path_is(m, "/healthz")) {
        if (hm_metrics_shm == NULL) {
            hreq_respond(r, 200, NULL, "text/plain; charset=utf-8", "ok\n",
                         3);
            return;
        }
        up = hm_metrics_workers_up(hm_metrics_shm);
        want = hm_metrics_shm->workers;
        if (up >= want) {
            hreq_respond(r, 200, NULL, "text/plain; charset=utf-8", "ok\n",
                         3);
        } else {
            k = snprintf(text, sizeof(text), "unavailable: %u of %u workers "
                         "up\n", up, want);
            hreq_respond(r, 503, NULL, "text/plain; charset=utf-8", text,
                         k > 0 ? (size_t) k : 0);
        }
        return;
    }

    if (path_is(m, "/trust")) {
        body = hm_trust_report_json(conf);
        if (body == NULL) {
            hreq_error(r, 500, NULL);
            return;
        }
        len = strlen(body);
        hreq_respond(r, 200, NULL, "application/json", body, len);
        free(body);
        return;
    }

    hreq_error(r, 404, NULL);
}

/* ---- the redirect ------------------------------------------------------- */

/* A DNS name or an IPv4 literal: letters, digits, '-', '.', '_'. */
static int
host_char(int ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
}

int
hm_redirect_location(const char *host, size_t hlen, const char *target,
                     size_t tlen, char *buf, size_t cap)
{
    size_t      i, name_len, plen, slash;
    const char *path;
    int         n;

    if (target == NULL) {
        return -1;
    }

    /* The target: origin-form, or absolute-form, whose authority then
     * names the host (RFC 9112 3.2.2) and whose path is kept. */
    path = target;
    plen = tlen;
    if (tlen >= 7 && (strncasecmp(target, "http://", 7) == 0
                      || (tlen >= 8
                          && strncasecmp(target, "https://", 8) == 0)))
    {
        i = target[4] == ':' ? 7 : 8;
        host = target + i;
        while (i < tlen && target[i] != '/' && target[i] != '?') {
            i++;
        }
        hlen = (size_t) (target + i - host);
        path = target + i;
        plen = tlen - i;
        if (plen == 0) {
            path = "/";
            plen = 1;
        }
    } else if (tlen == 0 || (target[0] != '/' && target[0] != '?')) {
        return -1;              /* "*" or authority-form */
    }
    /* "http://a?x", which the parser hands over as "?x" (target_slash):
     * its path is empty, so "/" (RFC 3986 6.2.3). */
    slash = path[0] == '?';
    for (i = 0; i < plen; i++) {
        if ((unsigned char) path[i] <= 0x20 || (unsigned char) path[i] >= 0x7f)
        {
            return -1;          /* the parser refuses these already */
        }
    }

    if (host == NULL || hlen == 0) {
        return -1;
    }
    /* The name part: an IPv6 literal, or up to the first ':'. */
    if (host[0] == '[') {
        for (i = 1; i < hlen && host[i] != ']'; i++) {
            if (!isxdigit((unsigned char) host[i]) && host[i] != ':'
                && host[i] != '.')
            {
                return -1;
            }
        }
        if (i == hlen || i < 3) {
            return -1;              /* no ']' or "[]" */
        }
        name_len = i + 1;
    } else {
        for (i = 0; i < hlen && host[i] != ':'; i++) {
            if (!host_char((unsigned char) host[i])) {
                return -1;
            }
        }
        name_len = i;
        if (name_len == 0 || name_len > 253 || host[0] == '.'
            || host[0] == '-')
        {
            return -1;
        }
    }
    /* An optional port: ':' and 1..5 digits, nothing else. */
    if (name_len < hlen) {
        if (host[name_len] != ':' || hlen - name_len - 1 == 0
            || hlen - name_len - 1 > 5)
        {
            return -1;
        }
        for (i = name_len + 1; i < hlen; i++) {
            if (!isdigit((unsigned char) host[i])) {
                return -1;
            }
        }
    }

    if (cap < sizeof("https://") + name_len + slash + plen) {
        return -1;
    }
    memcpy(buf, "https://", 8);
    hm_strlow(buf + 8, host, name_len);
    buf[8 + name_len] = '/';
    memcpy(buf + 8 + name_len + slash, path, plen);
    n = (int) (8 + name_len + slash + plen);
    buf[n] = '\0';
    return n;
}

static void
redirect_handle(hm_hreq_t *r, const hm_http_msg_t *m)
{
    hm_conn_t *c = r->c;
    char      *extra, *loc;
    size_t     cap;
    int        n;

    cap = sizeof("https://") + m->host.len + m->target.len + 2;
    loc = hm_pool_alloc(c->pool, cap);
    extra = hm_pool_alloc(c->pool, cap + sizeof("Location: \r\n"));
    if (loc == NULL || extra == NULL) {
        hreq_close(r, "no_memory");
        return;
    }
    n = hm_redirect_location(m->host.data, m->host.len, m->target.data,
                             m->target.len, loc, cap);
    if (n < 0) {
        hm_log_info(&c->log, "redirect: %s Host header \"%.*s\" or target",
                    m->host.len == 0 ? "missing" : "invalid",
                    (int) hm_min(m->host.len, 256), m->host.data);
        c->outcome = "bad_request";
        hreq_error(r, 400, NULL);
        return;
    }
    snprintf(extra, cap + sizeof("Location: \r\n"), "Location: %s\r\n", loc);
    c->outcome = "redirect";
    hreq_respond(r, 301, extra, "text/plain; charset=utf-8",
                 "301 Moved Permanently\n",
                 sizeof("301 Moved Permanently\n") - 1);
}

/* ---- reading ------------------------------------------------------------ */

/*
 * A redirect listener with "proxy_protocol": the PROXY v1/v2 header from
 * the trusted balancer comes first: the client address is taken from it
 * and the header is cut from the buffer.  Returns HM_OK (go on with the
 * HTTP head, maybe empty yet), HM_AGAIN (read more) or HM_ERROR (r closed:
 * malformed header, logged at info like the preread does).
 */
static int
hreq_proxy_header(hm_hreq_t *r)
{
    hm_conn_t       *c = r->c;
    hm_proxy_info_t  info;
    int              rc;

    if (r->kind != HM_HREQ_REDIRECT || !c->listener->proxy_protocol) {
        r->pp_done = 1;
        return HM_OK;
    }
    memset(&info, 0, sizeof(info));
    rc = hm_proxy_proto_parse((const uint8_t *) r->in, r->in_len,
                              sizeof(r->in), &info);
    if (rc == HM_AGAIN && r->in_len < sizeof(r->in)) {
        return HM_AGAIN;
    }
    if (rc != HM_OK) {
        hm_log_info(&c->log, "bad PROXY protocol header: %s",
                    info.error ? info.error : "too long");
        hreq_close(r, "bad_proxy_protocol");
        return HM_ERROR;
    }
    if (!info.local && info.src_len > 0) {
        hm_conn_set_peer(c, (struct sockaddr *) &info.src, info.src_len);
    }
    memmove(r->in, r->in + info.consumed, r->in_len - info.consumed);
    r->in_len -= info.consumed;
    r->pp_done = 1;
    return r->in_len > 0 ? HM_OK : HM_AGAIN;
}

static void
hreq_read(hm_hreq_t *r)
{
    hm_conn_t        *c = r->c;
    hm_http_header_t  hdrs[HM_HREQ_MAX_HEADERS];
    hm_http_msg_t     m;
    hm_proxy_info_t   pinfo;
    char              sink[4096];
    ssize_t           n;
    int               rc;

    if (r->state == HM_HREQ_LINGER) {
        for ( ;; ) {
            n = recv(c->fd, sink, sizeof(sink), 0);
            if (n > 0) {
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;
            }
            hreq_close(r, NULL);
            return;
        }
    }

    n = recv(c->fd, r->in + r->in_len, sizeof(r->in) - r->in_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }
        hm_log_info(&c->log, "recv() failed: %s", strerror(errno));
        hreq_close(r, "client_closed");
        return;
    }
    if (n == 0) {
        hreq_close(r, "client_closed");
        return;
    }
    r->in_len += (size_t) n;
    c->bytes_in += (uint64_t) n;

    if (!r->pp_done && hreq_proxy_header(r) != HM_OK) {
        return;
    }

    memset(&m, 0, sizeof(m));
    m.type = HM_HTTP_REQUEST;
    m.headers = hdrs;
    m.max_headers = HM_HREQ_MAX_HEADERS;
    rc = hm_http_parse_head(&m, &r->scan, r->in, r->in_len, sizeof(r->in));
    if (rc == HM_AGAIN) {
        if (r->in_len < sizeof(r->in)) {
            return;
        }
        m.error_status = 431;
        m.error = "request head too large";
        rc = HM_ERROR;
    }
    if (rc != HM_OK) {
        if (r->kind == HM_HREQ_REDIRECT
            && hm_proxy_proto_parse((const uint8_t *) r->in, r->in_len,
                                    sizeof(r->in), &pinfo) != HM_ERROR)
        {
            m.error = "a PROXY protocol header, but the listener does not "
                      "have \"proxy_protocol\": true";
        }
        hm_log_info(&c->log, "bad request: %s",
                    m.error ? m.error : "malformed");
        c->outcome = "bad_request";
        hreq_error(r, m.error_status ? m.error_status : 400, NULL);
        return;
    }
    uv_timer_stop(&r->timer);
    /* Bound the time to write the answer too. */
    uv_timer_start(&r->timer, hreq_on_timer, HM_HREQ_HEADER_TIMEOUT, 0);
    r->head = m.method == HM_HTTP_M_HEAD;
    if (r->kind == HM_HREQ_ADMIN) {
        admin_handle(r, &m);
    } else {
        redirect_handle(r, &m);
    }
}

static void
hreq_on_event(hm_ev_t *ev, uint32_t events)
{
    hm_hreq_t *r = (hm_hreq_t *) ev;

    switch (r->state) {
    case HM_HREQ_READING:
    case HM_HREQ_LINGER:
        hreq_read(r);
        break;
    case HM_HREQ_WRITING:
        hreq_write(r);
        break;
    default:
        break;
    }
}

/*
 * Takes over c (its socket unregistered, nothing read yet): allocates the
 * request state in c->pool, registers the socket and arms the header
 * timer.  On failure closes and frees c.
 */
static void
hreq_start(hm_conn_t *c, int kind)
{
    hm_hreq_t *r;

    r = hm_pool_calloc(c->pool, sizeof(*r));
    if (r == NULL) {
        hm_log_warn(&c->log, "out of memory for a request");
        close(c->fd);
        c->fd = -1;
        if (kind == HM_HREQ_ADMIN) {
            admin.nconns--;
        } else {
            c->outcome = "no_memory";
            hm_conn_log(c);
        }
        hm_conn_free(c);
        return;
    }
    r->c = c;
    r->kind = kind;
    r->state = HM_HREQ_READING;
    if (kind == HM_HREQ_ADMIN) {
        admin_link(r);
    }
    r->ev.handler = hreq_on_event;
    r->ev.fd = -1;
    c->owner = r;
    c->drain = hreq_drain;
    c->abort = hreq_abort;
    c->log.action = kind == HM_HREQ_ADMIN ? "serving an admin request"
                                          : "redirecting to https";
    uv_timer_init(c->worker->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, hreq_on_timer, HM_HREQ_HEADER_TIMEOUT, 0);
    if (hm__ev_add(&r->ev, c->fd, EPOLLIN) != HM_OK) {
        hm_log_error(&c->log, "epoll_ctl() failed: %s", strerror(errno));
        hreq_close(r, "internal_error");
    }
}

void
hm__redirect_start(hm_conn_t *c)
{
    hreq_start(c, HM_HREQ_REDIRECT);
}

/* ---- the admin listener ------------------------------------------------- */

/*
 * At the cap, makes room for a new client by closing the oldest one still
 * sending its request head: clients that connect and stall (up to
 * HM_HREQ_HEADER_TIMEOUT each) must not lock monitoring out.  Returns 1
 * when one was closed (its memory goes on the next loop turn, so the count
 * may briefly exceed the cap by one accept batch), 0 when every client is
 * being answered.
 */
static int
admin_evict(void)
{
    hm_hreq_t *r;

    for (r = admin.oldest; r != NULL; r = r->anext) {
        if (r->state == HM_HREQ_READING) {
            hm_log_info(&r->c->log, "admin: %d clients already; closing "
                        "the oldest one still sending its request head",
                        admin.nconns);
            hreq_close(r, "evicted");
            return 1;
        }
    }
    return 0;
}

static void
admin_on_retry(uv_timer_t *t)
{
    if (admin.accepting) {
        hm__ev_mod(&admin.ev, EPOLLIN);
    }
}

static void
admin_on_accept(hm_ev_t *ev, uint32_t events)
{
    struct sockaddr_storage ss;
    socklen_t               len;
    hm_conn_t              *c;
    int                     fd, i;

    for (i = 0; i < HM_ADMIN_ACCEPT_BATCH; i++) {
        len = sizeof(ss);
        fd = accept4(hm_admin_fd, (struct sockaddr *) &ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                hm_log_error(NULL, "admin: accept4() failed: %s",
                             strerror(errno));
            }
            if (hm_errno_shortage(errno)) {
                /* The socket is level-triggered: without a pause it is
                 * reported again at once (a busy loop, a log line each
                 * time) until a descriptor frees up. */
                hm__ev_mod(&admin.ev, 0);
                uv_timer_start(&admin.retry, admin_on_retry,
                               HM_ACCEPT_RETRY_MS, 0);
            }
            return;
        }
        if (admin.nconns >= HM_ADMIN_MAX_CONNS && !admin_evict()) {
            hm_log_info(NULL, "admin: %d clients already; connection "
                        "refused", admin.nconns);
            close(fd);
            continue;
        }
        c = hm_conn_new(admin.w, NULL, fd, (struct sockaddr *) &ss, len);
        if (c == NULL) {
            hm_log_error(NULL, "admin: out of memory for a connection");
            close(fd);
            continue;
        }
        admin.nconns++;
        hreq_start(c, HM_HREQ_ADMIN);
    }
}

int
hm_admin_start(hm_worker_t *w)
{
    if (hm_admin_fd < 0 || admin.accepting) {
        return HM_OK;
    }
    admin.w = w;
    admin.ev.handler = admin_on_accept;
    admin.ev.fd = -1;
    if (admin.retry.loop == NULL) {
        uv_timer_init(w->loop, &admin.retry);
        uv_unref((uv_handle_t *) &admin.retry);
    }
    if (hm__ev_add(&admin.ev, hm_admin_fd, EPOLLIN) != HM_OK) {
        hm_log_error(NULL, "admin: epoll_ctl() failed: %s", strerror(errno));
        return HM_ERROR;
    }
    admin.accepting = 1;
    return HM_OK;
}

void
hm_admin_stop(hm_worker_t *w)
{
    if (!admin.accepting) {
        return;
    }
    hm__ev_del(&admin.ev);
    uv_timer_stop(&admin.retry);
    admin.accepting = 0;
    if (hm_admin_fd >= 0) {             /* as hm_accept_stop() does */
        close(hm_admin_fd);
        hm_admin_fd = -1;
    }
}

/*
 * hm_http_request.c: the HTTP/1.1 reverse proxy on a terminated client
 * connection (STYLE.md section 4, steps 6 to 11).
 *
 * Where it sits: the TLS layer calls hm_http_conn_start() once the client
 * handshake is done.  From then on this file owns the connection: it
 * collects a request head into the connection's workspace, parses it
 * (hm_http_parse.c), routes it (hm_router.c), runs the modules'
 * on_request hooks (headers_sanitise, ...), then either answers itself
 * (fixed route, error) or takes an upstream connection (hm_upool.c, or a
 * new one to a peer picked by hm_upstream.c), writes the re-serialised
 * head in one write and streams the body, re-framed, with backpressure.
 * The response head is parsed, filtered (on_response) and re-serialised
 * the same way, its body streamed back; then the next request, one at a
 * time (pipelined bytes wait in the workspace).  A 101 answer to an
 * Upgrade request turns the connection into a raw two-way relay.
 *
 * Memory: the per-connection state (hm_http_conn_t) comes from the
 * connection pool; a request's workspace (head buffers, header arrays,
 * normalised path, serialisation buffer) comes from a per-worker free list
 * and goes back there whenever the connection is idle, so an idle
 * keep-alive connection holds no buffer.  Per-request allocations (module
 * header additions) come from the connection pool above a mark that is
 * reset after each request.  Bodies are never buffered: bytes go from one
 * leg's read callback straight into the other leg's write queue, and a
 * leg stops being read while the other leg's queue is above
 * HM_HTTP_BP_HIGH.
 */
#include "hm_core.h"
#include "hm_log.h"
#include "hm_conn.h"
#include "hm_worker.h"
#include "hm_module.h"
#include "hm_http.h"
#include "hm_http_int.h"
#include "hm_router.h"
#include "hm_upstream.h"
#include "hm_upool.h"
#include "hm_metrics.h"
#include "hm_timer.h"

#include <stdio.h>
#include <sys/socket.h>

#define HM_HTTP_MAX_HDRS    100         /* header fields parsed per head */
#define HM_HTTP_HDR_SLOTS   128         /* ... plus additions by modules */
#define HM_HTTP_RESP_HEAD   16384       /* bound on an upstream's head */
#define HM_HTTP_READ_CHUNK  20480       /* >= one hm_stream read */
#define HM_HTTP_COALESCE    16384       /* small writes are merged */
#define HM_HTTP_BP_HIGH     (256 * 1024)
#define HM_HTTP_LINGER_MS   2000
#define HM_HTTP_DRAIN_IDLE_MS 1000      /* keep-alive grace while draining */
#define HM_HTTP_WS_FREE_MAX 256
#define HM_HTTP_IOV         48

typedef struct hm_http_ws_s hm_http_ws_t;

/* A request workspace. */
struct hm_http_ws_s {
    hm_http_ws_t     *next;             /* free list */
    size_t            max_header;       /* size class */
    char             *in;               /* client bytes: head, pipelined */
    size_t            in_cap;
    char             *rh;               /* upstream response head */
    size_t            rh_cap;
    char             *out;              /* serialised heads */
    size_t            out_cap;
    char             *npath;            /* normalised path */
    char             *co;               /* coalescing buffer */
    hm_http_header_t  req_hdrs[HM_HTTP_HDR_SLOTS];
    hm_http_header_t  resp_hdrs[HM_HTTP_HDR_SLOTS];
};

enum {
    HC_IDLE = 0,        /* between requests, nothing received */
    HC_HEAD,            /* receiving a request head */
    HC_REQ,             /* request in progress */
    HC_TUNNEL,          /* after 101: raw relay */
    HC_LINGER,          /* response sent, closing gracefully */
    HC_CLOSED
};

enum { RS_NONE = 0, RS_HEAD, RS_BODY, RS_DONE };

typedef struct hm_http_conn_s {
    hm_conn_t          *c;
    hm_stream_t        *cs;             /* client leg */
    hm_conf_site_t     *site;
    hm_timer_t          timer;          /* client side timeouts */
    hm_timer_t          utimer;         /* upstream side timeouts */
    int                 handles;        /* open: timers + client stream */
    int                 state;
    unsigned            closing:1;
    unsigned            draining:1;
    unsigned            pipeline:1;     /* timer runs the next request */
    unsigned            cs_eof:1;
    unsigned            up_eof:1;
    unsigned            started:1;      /* a request is being logged */
    unsigned            reading:1;      /* client leg read started */
    unsigned            nrequests;
    hm_http_ws_t       *ws;
    size_t              in_len;         /* valid bytes of ws->in */
    size_t              in_off;         /* first byte not yet consumed */
    size_t              rh_len;
    hm_http_scan_t      scan;
    hm_http_scan_t      rscan;
    hm_pool_mark_t      mark;
    const char         *last_outcome;   /* of the last request logged */

    /* The current request (reset between requests from here on). */
    hm_http_msg_t       msg;            /* request head */
    hm_http_msg_t       rmsg;           /* response head */
    hm_http_req_t       r;
    int                 req_kind;
    int64_t             req_left;
    uint64_t            req_total;      /* decoded body bytes received */
    uint64_t            req_fwd;        /* body bytes written upstream */
    hm_http_chunked_t   req_chunk;
    unsigned            req_done:1;
    unsigned            head_ok:1;      /* msg holds a valid request head */
    unsigned            close_after:1;
    unsigned            head_sent:1;    /* upstream head written */
    unsigned            resp_started:1; /* response head written to client */
    unsigned            client_chunked:1;
    unsigned            up_reused:1;
    unsigned            up_junk:1;      /* upstream broke framing */
    unsigned            no_pool:1;
    unsigned            up_reading:1;
    unsigned            up_unconfirmed:1; /* new connection, no byte yet */
    unsigned            resp_interim:1; /* an interim 1xx arrived */
    int                 resp_state;
    int                 resp_kind;
    int64_t             resp_left;
    hm_http_chunked_t   resp_chunk;
    size_t              up_head_len;    /* serialised request head */
    hm_upool_conn_t    *up;
    hm_upstream_peer_t *tried[HM_UPSTREAM_MAX_TRIES];
    size_t              ntried;
    int                 retries;
    int                 status;
    const char         *outcome;
    const char         *upstream_text;
    uint64_t            t_start;
    uint64_t            t_up;           /* upstream request started */
    uint64_t            t_up_done;
    uint64_t            rq_in;          /* bytes of this request, client */
    uint64_t            rq_out;         /* bytes of this response, client */
    char                clbuf[24];
} hm_http_conn_t;

#define HC_RESET_FROM msg

static hm_http_ws_t *ws_free;
static int           ws_nfree;

static void hc_close(hm_http_conn_t *hc);
static void hc_begin_close(hm_http_conn_t *hc);
static void hc_try_head(hm_http_conn_t *hc);
static void hc_finish(hm_http_conn_t *hc);
static void hc_send_local(hm_http_conn_t *hc, int status, const char *ctype,
                          const char *body, size_t blen, int close);
static void client_timeout(uv_timer_t *t);
static void client_read_cb(hm_stream_t *s, ssize_t nread, const uint8_t *d);
static void up_read_cb(hm_stream_t *s, ssize_t nread, const uint8_t *d);
static void up_start(hm_http_conn_t *hc);
static void client_drained(hm_stream_t *s);
static void up_drained(hm_stream_t *s);
static void up_read_timeout(uv_timer_t *t);

/* ---- workspaces --------------------------------------------------------- */

static hm_http_ws_t *
ws_get(size_t max_header)
{
    hm_http_ws_t *ws, **pp;
    size_t in_cap, rh_cap, out_cap, np_cap;
    char *p;

    for (pp = &ws_free; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->max_header == max_header) {
            ws = *pp;
            *pp = ws->next;
            ws_nfree--;
            return ws;
        }
    }
    in_cap = max_header + 2 * HM_HTTP_READ_CHUNK;
    rh_cap = HM_HTTP_RESP_HEAD + HM_HTTP_READ_CHUNK;
    /* The rewritten request head, or the response head (up to
     * HM_HTTP_RESP_HEAD from the upstream, whatever the site's request
     * limit), plus the headers the proxy adds. */
    out_cap = hm_max(max_header, (size_t) HM_HTTP_RESP_HEAD) + 8192;
    np_cap = max_header + 16;
    ws = malloc(sizeof(*ws) + in_cap + rh_cap + out_cap + np_cap
                + HM_HTTP_COALESCE);
    if (ws == NULL) {
        return NULL;
    }
    p = (char *) (ws + 1);
    ws->next = NULL;
    ws->max_header = max_header;
    ws->in = p;
    ws->in_cap = in_cap;
    p += in_cap;
    ws->rh = p;
    ws->rh_cap = rh_cap;
    p += rh_cap;
    ws->out = p;
    ws->out_cap = out_cap;
    p += out_cap;
    ws->npath = p;
    p += np_cap;
    ws->co = p;
    return ws;
}

static void
ws_put(hm_http_ws_t *ws)
{
    if (ws == NULL) {
        return;
    }
    if (ws_nfree >= HM_HTTP_WS_FREE_MAX) {
        free(ws);
        return;
    }
    ws->next = ws_free;
    ws_free = ws;
    ws_nfree++;
}

/* ---- small helpers ------------------------------------------------------ */

/* The loop's cached clock (ms): no system call per request. */
#define hc_now(hc) uv_now((hc)->c->worker->loop)

static void
set_action(hm_http_conn_t *hc, const char *action)
{
    hc->c->log.action = action;
}

static void
client_read(hm_http_conn_t *hc, int on)
{
    if (hc->closing || hc->reading == (unsigned) on) {
        return;
    }
    hc->reading = on;
    if (on) {
        hm_stream_read_start(hc->cs, client_read_cb);
    } else {
        hm_stream_read_stop(hc->cs);
    }
}

static void
up_read(hm_http_conn_t *hc, int on)
{
    if (hc->up == NULL || hc->up_reading == (unsigned) on) {
        return;
    }
    hc->up_reading = on;
    if (on) {
        hm_stream_read_start(&hc->up->s, up_read_cb);
    } else {
        hm_stream_read_stop(&hc->up->s);
    }
}

/* Writes bufs to stream s; merges small pieces into one buffer so that a
 * TLS leg makes one record.  Returns 0 or an error code. */
static int
hc_write(hm_http_conn_t *hc, hm_stream_t *s, uv_buf_t *iov, unsigned n)
{
    size_t total = 0, off = 0;
    unsigned i;
    uv_buf_t one;

    if (n == 0) {
        return 0;
    }
    if (n > 1 && s->tls != NULL && hc->ws != NULL) {
        for (i = 0; i < n; i++) {
            total += iov[i].len;
        }
        if (total <= HM_HTTP_COALESCE) {
            for (i = 0; i < n; i++) {
                memcpy(hc->ws->co + off, iov[i].base, iov[i].len);
                off += iov[i].len;
            }
            one = uv_buf_init(hc->ws->co, (unsigned) total);
            return hm_stream_write(s, &one, 1);
        }
    }
    return hm_stream_write(s, iov, n);
}

static int
client_write(hm_http_conn_t *hc, uv_buf_t *iov, unsigned n)
{
    unsigned i;
    int rc;

    for (i = 0; i < n; i++) {
        hc->rq_out += iov[i].len;
        hc->c->bytes_out += iov[i].len;
    }
    rc = hc_write(hc, hc->cs, iov, n);
    if (rc != 0) {
        hm_log_info(&hc->c->log, "client write failed: %s",
                    hm_stream_error(hc->cs));
    }
    return rc;
}

static void
timer_start(hm_timer_t *t, uv_timer_cb cb, int ms)
{
    if (ms > 0) {
        hm_timer_start(t, cb, (uint64_t) ms);
    } else {
        hm_timer_stop(t);
    }
}

/* ---- access log --------------------------------------------------------- */

/* The request target logged is cut at HM_LOG_PATH_MAX bytes; the line
 * holds it escaped (printable ASCII only reaches here: '"' and '\\' take
 * two bytes each) with every other key, so no request loses its line. */
#define HM_LOG_PATH_MAX  2048

static void
hc_log_request(hm_http_conn_t *hc)
{
    char line[2 * HM_LOG_PATH_MAX + 2048];
    hm_jbuf_t jb;
    size_t n;
    uint64_t now;

    if (!hc->started) {
        return;
    }
    hc->started = 0;
    hc->last_outcome = hc->outcome;
    hm_metrics_http_status(hc->status);
    if (!hm_access_log_enabled()) {
        return;
    }
    now = hc_now(hc);
    hm_conn_log_begin(&jb, line, sizeof(line), hc->c);
    hm_jb_str(&jb, "site", hc->site->name);
    hm_jb_str(&jb, "mode", "terminate");
    /* An invalid head still logs what it had of a request line (a 417,
     * 501 or 431 has all of it), as nginx logs $request. */
    if (hc->msg.method_name.len > 0) {
        hm_jb_strn(&jb, "method", hc->msg.method_name.data,
                   hc->msg.method_name.len);
    } else {
        hm_jb_str(&jb, "method", NULL);
    }
    if (hc->msg.target.len > 0) {
        hm_jb_strn(&jb, "path", hc->msg.target.data,
                   hm_min(hc->msg.target.len, HM_LOG_PATH_MAX));
    } else {
        hm_jb_str(&jb, "path", NULL);
    }
    hm_jb_int(&jb, "status", hc->status);
    hm_jb_int(&jb, "bytes_in", (long long) hc->rq_in);
    hm_jb_int(&jb, "bytes_out", (long long) hc->rq_out);
    hm_jb_str(&jb, "upstream", hc->upstream_text);
    hm_jb_int(&jb, "duration_ms", (long long) (now - hc->t_start));
    if (hc->t_up != 0) {
        hm_jb_int(&jb, "upstream_ms",
                  (long long) ((hc->t_up_done ? hc->t_up_done : now)
                               - hc->t_up));
    }
    hm_jb_int(&jb, "request", (long long) hc->nrequests);
    hm_jb_str(&jb, "outcome", hc->outcome ? hc->outcome : "ok");
    n = hm_jb_finish(&jb);
    if (n > 0) {
        hm_access_log_write(line, n);
    }
}

/* ---- modules ------------------------------------------------------------ */

static int
run_on_request(hm_http_conn_t *hc)
{
    hm_module_t **m;
    int rc;

    for (m = hm_modules; *m != NULL; m++) {
        if ((*m)->on_request == NULL) {
            continue;
        }
        rc = (*m)->on_request(&hc->r);
        if (rc == HM_DONE || rc == HM_ERROR) {
            return rc;
        }
    }
    return HM_OK;
}

static void
run_on_response(hm_http_conn_t *hc)
{
    hm_module_t **m;
    size_t n = 0;

    for (m = hm_modules; *m != NULL; m++) {
        n++;
    }
    /* Reverse order: filters unwind on the way back. */
    while (n-- > 0) {
        if (hm_modules[n]->on_response != NULL) {
            hm_modules[n]->on_response(&hc->r);
        }
    }
}

/* The name of the current request's upstream, for log lines of the form
 * upstream "NAME" ADDRESS: REASON (the one form of upstream failures). */
static const char *
up_name(const hm_http_conn_t *hc)
{
    return hc->r.route != NULL && hc->r.route->upstream != NULL
           ? hc->r.route->upstream->name : "-";
}

/* ---- closing ------------------------------------------------------------ */

static void
hc_handle_closed(hm_http_conn_t *hc)
{
    hm_conn_t *c = hc->c;

    if (--hc->handles > 0) {
        return;
    }
    ws_put(hc->ws);
    hc->ws = NULL;
    c->owner = NULL;
    c->drain = NULL;
    c->abort = NULL;
    /* The connection ends as its last request did (connections_total:
     * a 502 is upstream_error, as a redirect listener's 400 is
     * bad_request); NULL (ok) when it ended between requests normally. */
    if (c->outcome == NULL) {
        c->outcome = hc->last_outcome;
    }
    hm_conn_free(c);
}

static void
timer_closed(uv_handle_t *h)
{
    hc_handle_closed(h->data);
}

static void
cs_closed(hm_stream_t *s)
{
    hc_handle_closed(s->data);
}

static void
up_drop(hm_http_conn_t *hc)
{
    if (hc->up != NULL) {
        hc->up->s.data = NULL;
        hm_upool_close(hc->up);
        hc->up = NULL;
        hc->up_reading = 0;
    }
}

/* Closes now: queued output is dropped. */
static void
hc_close(hm_http_conn_t *hc)
{
    if (hc->closing) {
        return;
    }
    if (hc->started) {
        if (hc->outcome == NULL) {
            hc->outcome = "aborted";
        }
        hc_log_request(hc);
    }
    hc->closing = 1;
    hc->state = HC_CLOSED;
    up_drop(hc);
    hm_timer_close(&hc->timer, timer_closed);
    hm_timer_close(&hc->utimer, timer_closed);
    hm_stream_close(hc->cs, cs_closed);
}

/* 1 when the client's socket already holds unread bytes (a next request
 * on its way), checked without blocking and without consuming them. */
static int
client_has_bytes(hm_http_conn_t *hc)
{
    uv_os_fd_t fd;
    char b;
    ssize_t n;

    if (uv_fileno((uv_handle_t *) &hc->cs->tcp, &fd) != 0) {
        return 0;
    }
    n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0;
}

/*
 * Graceful drain (reload, upgrade, quit): no request the client already
 * sent or is about to send on this connection may fail.  A connection
 * that has not had its first request yet (just handed over by the TLS
 * layer) waits for it, bounded by header_timeout_ms and the worker's
 * shutdown deadline (c->abort); a keep-alive connection between requests
 * waits for its next request for HM_HTTP_DRAIN_IDLE_MS (at most half the
 * shutdown timeout and the idle timeout), then closes gracefully after
 * the queued output; requests in progress finish.  Every answer from now
 * on carries "Connection: close" (draining), and the connection closes
 * after it.
 */
static void
c_drain(hm_conn_t *c)
{
    hm_http_conn_t *hc = c->owner;
    int             grace;

    if (hc->closing) {
        return;
    }
    hc->draining = 1;
    switch (hc->state) {
    case HC_IDLE:
        if (hc->nrequests == 0) {
            /* Its first request is coming: the timer already runs with
             * header_timeout_ms since hm_http_conn_start(). */
            return;
        }
        if (client_has_bytes(hc)) {
            set_action(hc, "waiting for a request while draining");
            timer_start(&hc->timer, client_timeout,
                        hc->site->limits.header_timeout_ms);
            return;
        }
        /* Between requests.  A client that sends its next request within
         * a short grace gets it answered (with "Connection: close")
         * instead of racing our close; then client_timeout() closes
         * gracefully: the tail of the last response, which may still be
         * queued (a download the client is reading), goes out first. */
        grace = hm_min(HM_HTTP_DRAIN_IDLE_MS,
                       c->worker->cycle->conf->runtime.shutdown_timeout_s
                       * 500);
        if (hc->site->limits.idle_timeout_ms > 0) {
            grace = hm_min(grace, hc->site->limits.idle_timeout_ms);
        }
        if (grace > 0) {
            set_action(hc, "waiting for a request while draining");
            timer_start(&hc->timer, client_timeout, grace);
            return;
        }
        hc_close(hc);               /* shutdown_timeout_s 0: no drain */
        return;
    case HC_REQ:
        /* Announce the close in this response unless its head is already
         * out or a pipelined request waits behind it: then hc_finish()
         * closes after the last request the client already sent. */
        if (!hc->resp_started
            && !(hc->req_done && hc->in_len > hc->in_off))
        {
            hc->close_after = 1;
        }
        return;
    default:
        /* HC_HEAD: answered with close; LINGER and TUNNEL end by
         * themselves or at the shutdown deadline. */
        return;
    }
}

static void
c_abort(hm_conn_t *c)
{
    hc_close(c->owner);
}

static void
linger_timeout(uv_timer_t *t)
{
    hc_close(t->data);
}

static void
linger_drained(hm_stream_t *s)
{
    hm_http_conn_t *hc = s->data;

    if (!hc->closing) {
        hm_timer_start(&hc->timer, linger_timeout, HM_HTTP_LINGER_MS);
    }
}

/* Graceful close after a response: the queued bytes go out, then TLS
 * close_notify and FIN; what the client still sends is read and dropped
 * for a while so that our response is not destroyed by a reset. */
static void
hc_begin_close(hm_http_conn_t *hc)
{
    if (hc->closing || hc->state == HC_LINGER) {
        return;
    }
    hc_log_request(hc);
    hc->state = HC_LINGER;
    up_drop(hc);
    hm_timer_stop(&hc->utimer);
    set_action(hc, "closing");
    if (hc->cs_eof) {
        hm_stream_shutdown(hc->cs);
        hm_stream_on_drain(hc->cs, linger_drained);
        return;
    }
    hm_stream_shutdown(hc->cs);
    client_read(hc, 1);
    hm_timer_start(&hc->timer, linger_timeout,
                   (uint64_t) (hc->site->limits.idle_timeout_ms > 0
                               ? hc->site->limits.idle_timeout_ms : 60000));
    hm_stream_on_drain(hc->cs, linger_drained);
}

/* ---- client side timers ------------------------------------------------- */

static void
client_timeout(uv_timer_t *t)
{
    hm_http_conn_t *hc = t->data;

    if (hc->pipeline) {
        hc->pipeline = 0;
        if (hc->state == HC_HEAD) {
            timer_start(&hc->timer, client_timeout,
                        hc->site->limits.header_timeout_ms);
            hc_try_head(hc);
        }
        return;
    }
    switch (hc->state) {
    case HC_IDLE:
        if (hc->draining) {
            hc_begin_close(hc);     /* see c_drain() */
            break;
        }
        hm_log_debug(&hc->c->log, "client idle timeout");
        if (hc->nrequests == 0) {
            /* nothing sent within header_timeout_ms: no request to log,
             * but the connection ends in a timeout (connections_total) */
            hc->c->outcome = "timeout";
        }
        hc_close(hc);
        break;
    case HC_HEAD:
        hm_log_info(&hc->c->log, "client timed out sending a request head");
        hc->outcome = "timeout";
        hc->started = 1;
        hc->state = HC_REQ;
        hc->nrequests++;
        hc->rq_in = hc->in_len;
        hc_send_local(hc, 408, NULL, NULL, 0, 1);
        break;
    case HC_REQ:
        hm_log_info(&hc->c->log, "client timed out sending a request body");
        hc->outcome = "timeout";
        if (!hc->resp_started) {
            up_drop(hc);
            hc_send_local(hc, 408, NULL, NULL, 0, 1);
        } else {
            hc_close(hc);
        }
        break;
    default:
        hc_close(hc);
    }
}

/* The client has not taken response bytes for idle_timeout_ms (the
 * upstream leg is paused meanwhile): close. */
static void
client_send_timeout(uv_timer_t *t)
{
    hm_http_conn_t *hc = t->data;

    set_action(hc, "sending response to client");
    hm_log_info(&hc->c->log, "client timed out reading the response");
    hc->outcome = "timeout";
    hc_close(hc);
}

/* ---- request bodies ----------------------------------------------------- */

typedef struct {
    uv_buf_t  iov[HM_HTTP_IOV];
    unsigned  n;
    char      sz[HM_HTTP_IOV / 3 + 1][20];
    unsigned  nsz;
} iobatch_t;

static void
batch_chunk(iobatch_t *b, const uint8_t *data, size_t len)
{
    int k = snprintf(b->sz[b->nsz], sizeof(b->sz[0]), "%zx\r\n", len);

    b->iov[b->n++] = uv_buf_init(b->sz[b->nsz++], (unsigned) k);
    b->iov[b->n++] = uv_buf_init((char *) data, (unsigned) len);
    b->iov[b->n++] = uv_buf_init("\r\n", 2);
}

static int
batch_full(const iobatch_t *b)
{
    return b->n + 4 > HM_HTTP_IOV;
}

static int
up_write(hm_http_conn_t *hc, iobatch_t *b)
{
    unsigned i;
    int rc = 0;

    if (b->n > 0 && hc->up != NULL) {
        for (i = 0; i < b->n; i++) {
            hc->req_fwd += b->iov[i].len;   /* no retry once any went out */
        }
        rc = hc_write(hc, &hc->up->s, b->iov, b->n);
    }
    b->n = 0;
    b->nsz = 0;
    return rc;
}

static void
req_body_error(hm_http_conn_t *hc, int status, const char *why)
{
    hm_log_info(&hc->c->log, "%s", why);
    hc->outcome = status == 413 ? "body_too_large" : "bad_request";
    /* The upstream saw a partial request: never reuse that connection. */
    up_drop(hc);
    if (!hc->resp_started) {
        hc_send_local(hc, status, NULL, NULL, 0, 1);
    } else {
        hc_close(hc);
    }
}

static void
up_write_failed(hm_http_conn_t *hc);

/*
 * Forwards request body bytes data[0..n) upstream, re-framed.  Returns how
 * many bytes belonged to the body (the rest is the next request), or -1
 * when the connection was answered or closed.
 */
static ssize_t
req_body_feed(hm_http_conn_t *hc, const uint8_t *data, size_t n)
{
    iobatch_t b;
    size_t pos = 0, consumed, off, len;
    int rc;

    b.n = 0;
    b.nsz = 0;
    if (hc->req_kind == HM_HTTP_BODY_LENGTH) {
        len = (size_t) hm_min((int64_t) n, hc->req_left);
        hc->req_left -= (int64_t) len;
        hc->req_total += len;
        b.iov[b.n++] = uv_buf_init((char *) data, (unsigned) len);
        pos = len;
        if (hc->req_left == 0) {
            hc->req_done = 1;
        }
    } else {
        while (pos < n) {
            rc = hm_http_chunked_next(&hc->req_chunk, data + pos, n - pos,
                                      &consumed, &off, &len);
            if (rc == HM_ERROR) {
                req_body_error(hc, 400, "invalid chunked request body");
                return -1;
            }
            if (rc == HM_OK) {
                hc->req_total += len;
                if (hc->req_total > hc->site->limits.max_body_bytes) {
                    req_body_error(hc, 413, "request body larger than "
                                   "max_body_bytes");
                    return -1;
                }
                batch_chunk(&b, data + pos + off, len);
            }
            pos += consumed;
            if (rc == HM_DONE) {
                b.iov[b.n++] = uv_buf_init("0\r\n\r\n", 5);
                hc->req_done = 1;
                break;
            }
            if (batch_full(&b) && up_write(hc, &b) != 0) {
                up_write_failed(hc);
                return -1;
            }
        }
    }
    hc->rq_in += pos;
    if (up_write(hc, &b) != 0) {
        up_write_failed(hc);
        return -1;
    }
    if (hc->req_done) {
        hm_timer_stop(&hc->timer);
        if (hc->resp_state == RS_HEAD) {
            /* The whole request is out: read_timeout_ms starts now. */
            timer_start(&hc->utimer, up_read_timeout,
                        hc->r.route->upstream->read_timeout_ms);
        }
    } else if (hc->up != NULL
               && hm_stream_write_queued(&hc->up->s) > HM_HTTP_BP_HIGH)
    {
        client_read(hc, 0);
        hm_stream_on_drain(&hc->up->s, up_drained);
        if (hc->resp_state == RS_HEAD) {
            /* The upstream, not the client, holds the body back now:
             * its timeout runs instead of the client's. */
            hm_timer_stop(&hc->timer);
            timer_start(&hc->utimer, up_read_timeout,
                        hc->r.route->upstream->read_timeout_ms);
        }
    }
    return (ssize_t) pos;
}

static void
up_drained(hm_stream_t *s)
{
    hm_http_conn_t *hc = s->data;

    if (hc == NULL || hc->closing) {
        return;
    }
    if (hc->state == HC_REQ && !hc->req_done) {
        client_read(hc, 1);
        timer_start(&hc->timer, client_timeout,
                    hc->site->limits.idle_timeout_ms);
        if (hc->resp_state == RS_HEAD && hc->rh_len == 0) {
            hm_timer_stop(&hc->utimer);
        }
    } else if (hc->state == HC_TUNNEL) {
        client_read(hc, 1);
    }
}

/*
 * Gives back the workspace bytes of the request in progress that are
 * consumed: body bytes that came with the head and were already forwarded
 * or skipped (ws->in[head_len .. in_off)).  The head stays: hc->msg points
 * into it.  Without this, the workspace of a request behind a long body
 * stays full of consumed bytes and the next pipelined request's bytes
 * close the connection.
 */
static void
in_compact(hm_http_conn_t *hc)
{
    size_t head = hc->msg.head_len;

    if (hc->in_off > head && head <= hc->in_len) {
        memmove(hc->ws->in + head, hc->ws->in + hc->in_off,
                hc->in_len - hc->in_off);
        hc->in_len -= hc->in_off - head;
        hc->in_off = head;
    }
}

/*
 * Pauses the client leg of a request in progress while less than one read
 * fits in the workspace after ws->in[in_len]: every read must fit, or
 * save_pipelined() closes the connection.  Reading resumes in hc_finish(),
 * or in up_send_head() once the buffered body went upstream.
 */
static void
in_reserve(hm_http_conn_t *hc)
{
    if (hc->closing || hc->state != HC_REQ || hc->ws == NULL) {
        return;
    }
    in_compact(hc);
    if (hc->ws->in_cap - hc->in_len < HM_HTTP_READ_CHUNK) {
        client_read(hc, 0);
    }
}

/*
 * Keeps bytes that arrived after the current request (pipelining), or body
 * bytes that arrive before the upstream takes them.  HM_ERROR: closed.
 */
static int
save_pipelined(hm_http_conn_t *hc, const uint8_t *data, size_t n)
{
    if (n == 0) {
        return HM_OK;
    }
    in_compact(hc);
    if (hc->in_len + n > hc->ws->in_cap) {
        hm_log_info(&hc->c->log, "too many pipelined bytes");
        hc_close(hc);
        return HM_ERROR;
    }
    memcpy(hc->ws->in + hc->in_len, data, n);
    hc->in_len += n;
    in_reserve(hc);
    return HM_OK;
}

/* ---- tunnel (after 101) ------------------------------------------------- */

static void
tunnel_timeout(uv_timer_t *t)
{
    hm_http_conn_t *hc = t->data;

    hm_log_info(&hc->c->log, "upgraded connection idle timeout");
    hc->outcome = "timeout";
    hc_close(hc);
}

static void
tunnel_touch(hm_http_conn_t *hc)
{
    timer_start(&hc->utimer, tunnel_timeout,
                hc->site->limits.idle_timeout_ms);
}

static void
tunnel_client_data(hm_http_conn_t *hc, const uint8_t *data, size_t n)
{
    uv_buf_t b = uv_buf_init((char *) data, (unsigned) n);

    tunnel_touch(hc);
    hc->rq_in += n;
    if (hc->up == NULL || hm_stream_write(&hc->up->s, &b, 1) != 0) {
        hc_close(hc);
        return;
    }
    if (hm_stream_write_queued(&hc->up->s) > HM_HTTP_BP_HIGH) {
        client_read(hc, 0);
        hm_stream_on_drain(&hc->up->s, up_drained);
    }
}

static void
tunnel_up_data(hm_http_conn_t *hc, const uint8_t *data, size_t n)
{
    uv_buf_t b = uv_buf_init((char *) data, (unsigned) n);

    tunnel_touch(hc);
    if (client_write(hc, &b, 1) != 0) {
        hc_close(hc);
        return;
    }
    if (hm_stream_write_queued(hc->cs) > HM_HTTP_BP_HIGH) {
        up_read(hc, 0);
        hm_stream_on_drain(hc->cs, client_drained);
    }
}

static void
tunnel_eof(hm_http_conn_t *hc, int client)
{
    if (client) {
        hc->cs_eof = 1;
        client_read(hc, 0);
        if (hc->up != NULL) {
            hm_stream_shutdown(&hc->up->s);
        }
    } else {
        hc->up_eof = 1;
        up_read(hc, 0);
        hm_stream_shutdown(hc->cs);
    }
    if (hc->cs_eof && hc->up_eof) {
        hc->outcome = "ok";
        hc_close(hc);
    }
}

static void
start_tunnel(hm_http_conn_t *hc, size_t head_len)
{
    uv_buf_t b[2];
    unsigned n = 0;
    size_t extra = hc->rh_len - hc->rmsg.head_len;

    hc->state = HC_TUNNEL;
    hc->resp_state = RS_DONE;
    hc->resp_started = 1;
    hc->t_up_done = hc_now(hc);
    set_action(hc, "relaying an upgraded connection");
    b[n++] = uv_buf_init(hc->ws->out, (unsigned) head_len);
    if (extra > 0) {
        b[n++] = uv_buf_init(hc->ws->rh + hc->rmsg.head_len, (unsigned) extra);
    }
    if (client_write(hc, b, n) != 0) {
        hc_close(hc);
        return;
    }
    /* Bytes the client sent after its request head go upstream now. */
    if (hc->in_len > hc->in_off) {
        tunnel_client_data(hc, (uint8_t *) hc->ws->in + hc->in_off,
                           hc->in_len - hc->in_off);
        hc->in_off = hc->in_len;
        if (hc->closing) {
            return;
        }
    }
    tunnel_touch(hc);
    client_read(hc, 1);
    up_read(hc, 1);
}

/* ---- response ----------------------------------------------------------- */

static void
client_drained(hm_stream_t *s)
{
    hm_http_conn_t *hc = s->data;

    if (hc->closing) {
        return;
    }
    if (hc->state == HC_REQ && hc->resp_state == RS_BODY) {
        up_read(hc, 1);
        if (hc->req_done) {
            hm_timer_stop(&hc->timer);
        }
        timer_start(&hc->utimer, up_read_timeout,
                    hc->r.route->upstream->read_timeout_ms);
    } else if (hc->state == HC_TUNNEL) {
        up_read(hc, 1);
    }
}

static void
resp_complete(hm_http_conn_t *hc)
{
    hm_upool_conn_t *up = hc->up;
    int reusable;

    hc->resp_state = RS_DONE;
    hc->t_up_done = hc_now(hc);
    hm_timer_stop(&hc->utimer);
    if (up != NULL) {
        reusable = hc->rmsg.keep_alive && hc->resp_kind != HM_HTTP_BODY_EOF
                   && hc->req_done && !hc->up_junk && !hc->up_eof;
        if (hc->up_junk) {
            /* Bytes beyond the response's framing (more than its
             * Content-Length, a body after HEAD/204/304, a second
             * response): never handed to the next request. */
            hm_log_warn(&hc->c->log, "upstream \"%s\" %s: sent data after "
                        "the end of the response, connection not reused",
                        up_name(hc), hc->upstream_text);
        }
        hc->up = NULL;
        hc->up_reading = 0;
        up->s.data = NULL;          /* the pool takes over its reads */
        if (up->s.tls != NULL && !up->session_saved) {
            /* TLS 1.3 tickets arrive after the handshake: by the end of
             * the first response the session is resumable. */
            void *sess = hm_stream_tls_session(&up->s);
            if (sess != NULL) {
                hm_upool_set_session(up->peer, sess);
                up->session_saved = 1;
            }
        }
        if (reusable) {
            hm_upool_put(up);
        } else {
            hm_upool_close(up);
        }
    }
    if (!hc->req_done) {
        hc->close_after = 1;        /* the rest of the body is unread */
    }
    hc_finish(hc);
}

/* Forwards response body bytes to the client (after prefix, the head).
 * Completes the response when its end is reached. */
static void
resp_body_feed(hm_http_conn_t *hc, const uint8_t *data, size_t n,
               const char *prefix, size_t plen)
{
    iobatch_t b;
    size_t pos = 0, consumed, off, len;
    int rc, done = 0;

    b.n = 0;
    b.nsz = 0;
    if (plen > 0) {
        b.iov[b.n++] = uv_buf_init((char *) prefix, (unsigned) plen);
    }
    switch (hc->resp_kind) {
    case HM_HTTP_BODY_LENGTH:
        len = (size_t) hm_min((int64_t) n, hc->resp_left);
        if (len > 0) {
            b.iov[b.n++] = uv_buf_init((char *) data, (unsigned) len);
        }
        hc->resp_left -= (int64_t) len;
        if (len < n) {
            hc->up_junk = 1;        /* more than Content-Length */
        }
        done = hc->resp_left == 0;
        break;
    case HM_HTTP_BODY_CHUNKED:
        while (pos < n) {
            rc = hm_http_chunked_next(&hc->resp_chunk, data + pos, n - pos,
                                      &consumed, &off, &len);
            if (rc == HM_ERROR) {
                hm_log_error(&hc->c->log, "upstream \"%s\" %s: sent an "
                             "invalid chunked body", up_name(hc),
                             hc->upstream_text);
                hc->outcome = "upstream_error";
                if (plen > 0) {
                    /* The head still waits in this batch: nothing of the
                     * response went out, the client gets a 502. */
                    up_drop(hc);
                    hc->resp_started = 0;
                    hc_send_local(hc, 502, NULL, NULL, 0, 0);
                    return;
                }
                if (b.n > 0 && client_write(hc, b.iov, b.n) != 0) {
                    hc_close(hc);
                    return;
                }
                hc_close(hc);
                return;
            }
            if (rc == HM_OK) {
                if (hc->client_chunked) {
                    batch_chunk(&b, data + pos + off, len);
                } else {
                    b.iov[b.n++] = uv_buf_init((char *) data + pos + off,
                                               (unsigned) len);
                }
            }
            pos += consumed;
            if (rc == HM_DONE) {
                if (hc->client_chunked) {
                    b.iov[b.n++] = uv_buf_init("0\r\n\r\n", 5);
                }
                if (pos < n) {
                    hc->up_junk = 1;
                }
                done = 1;
                break;
            }
            if (batch_full(&b)) {
                if (client_write(hc, b.iov, b.n) != 0) {
                    hc_close(hc);
                    return;
                }
                b.n = 0;
                b.nsz = 0;
                plen = 0;           /* the head is gone */
            }
        }
        break;
    case HM_HTTP_BODY_EOF:
        if (n > 0) {
            if (hc->client_chunked) {
                batch_chunk(&b, data, n);
            } else {
                b.iov[b.n++] = uv_buf_init((char *) data, (unsigned) n);
            }
        }
        break;
    default:
        if (n > 0) {
            hc->up_junk = 1;
        }
        done = 1;
    }
    if (b.n > 0 && client_write(hc, b.iov, b.n) != 0) {
        hc_close(hc);
        return;
    }
    if (done) {
        resp_complete(hc);
        return;
    }
    if (hm_stream_write_queued(hc->cs) > HM_HTTP_BP_HIGH) {
        up_read(hc, 0);
        hm_stream_on_drain(hc->cs, client_drained);
        /* The client, not the upstream, holds the response back now:
         * its idle timeout runs instead of read_timeout_ms. */
        hm_timer_stop(&hc->utimer);
        if (hc->req_done) {
            timer_start(&hc->timer, client_send_timeout,
                        hc->site->limits.idle_timeout_ms);
        }
    }
}

static void
up_read_timeout(uv_timer_t *t)
{
    hm_http_conn_t *hc = t->data;

    if (hc->resp_state == RS_HEAD && !hc->resp_started) {
        set_action(hc, hc->req_done ? "reading response header from upstream"
                                    : "sending request to upstream");
        hm_log_error(&hc->c->log, "upstream \"%s\" %s: timed out",
                     up_name(hc), hc->upstream_text);
        hc->outcome = "upstream_timeout";
        if (hc->up != NULL) {
            /* A timeout counts against the server (passive health). */
            hm_upstream_peer_result(hc->up->peer, 0);
        }
        up_drop(hc);
        hc_send_local(hc, 504, NULL, NULL, 0, 0);
        return;
    }
    set_action(hc, "reading response body from upstream");
    hm_log_error(&hc->c->log, "upstream \"%s\" %s: timed out", up_name(hc),
                 hc->upstream_text);
    hc->outcome = "upstream_timeout";
    hc_close(hc);
}

/*
 * The server refused the proxy's TLS handshake after the proxy's side of
 * it had finished (TLS 1.3 judges the client certificate then: missing or
 * not accepted), while the request head was going out.  Handled as the
 * TLS failures of up_connect_cb(): logged the same way, counted against
 * the server (passive health, connect failure metric), and the next
 * server is tried unless request body bytes are gone (the refusing server
 * processed nothing: its handshake never completed); else 502.
 */
static void
up_tls_refused(hm_http_conn_t *hc)
{
    hm_upool_conn_t *up = hc->up;

    set_action(hc, "connecting to upstream");
    hm_log_error(&hc->c->log, "upstream \"%s\" %s: %s",
                 hc->r.route->upstream->name, up->peer->text,
                 hm_stream_error(&up->s));
    HM_METRIC_INC(UPSTREAM_CONNECT_FAILURES);
    hm_upstream_peer_result(up->peer, 0);
    hm_timer_stop(&hc->utimer);
    up_drop(hc);
    if (hc->rh_len == 0 && hc->req_fwd == 0) {
        up_start(hc);
        return;
    }
    hc->outcome = "upstream_error";
    hc_send_local(hc, 502, NULL, NULL, 0, 0);
}

/* RFC 9110 9.2.2: only idempotent requests may be retried after their
 * head went out (POST, PATCH, CONNECT and unknown methods may not). */
static int
method_idempotent(int method)
{
    switch (method) {
    case HM_HTTP_M_GET:
    case HM_HTTP_M_HEAD:
    case HM_HTTP_M_PUT:
    case HM_HTTP_M_DELETE:
    case HM_HTTP_M_OPTIONS:
    case HM_HTTP_M_TRACE:
        return 1;
    }
    return 0;
}

/* The upstream failed before any response byte: a refused TLS handshake
 * goes to up_tls_refused(); retry on a fresh connection when the
 * connection came from the pool, nothing of the request body was sent,
 * no interim 1xx arrived (the upstream acted on the request) and the
 * method is idempotent, else 502. */
static void
up_failed_early(hm_http_conn_t *hc, const char *why)
{
    if (hc->up != NULL && hc->rh_len == 0
        && hm_stream_tls_refused(&hc->up->s))
    {
        up_tls_refused(hc);
        return;
    }
    if (hc->up_reused && hc->rh_len == 0 && !hc->resp_interim
        && hc->req_fwd == 0 && hc->retries < 2
        && method_idempotent(hc->msg.method))
    {
        hm_log_debug(&hc->c->log, "pooled upstream connection to %s %s, "
                     "retrying on a new connection", hc->upstream_text, why);
        hc->retries++;
        up_drop(hc);
        /* The same peer may be used again: it did nothing wrong. */
        if (hc->ntried > 0) {
            hc->ntried--;
        }
        hc->no_pool = 1;
        hm_timer_stop(&hc->utimer);
        up_start(hc);
        return;
    }
    set_action(hc, "reading response header from upstream");
    hm_log_error(&hc->c->log, "upstream \"%s\" %s: %s", up_name(hc),
                 hc->upstream_text, why);
    hc->outcome = "upstream_error";
    up_drop(hc);
    hc_send_local(hc, 502, NULL, NULL, 0, 0);
}

/* A write to the upstream failed.  When it carried request body bytes
 * (req_body_feed()), the bytes it took from the client are not accounted
 * as read: the client connection closes after the 502, or they would be
 * parsed as the next request. */
static void
up_write_failed(hm_http_conn_t *hc)
{
    if (hc->req_fwd > 0) {
        hc->close_after = 1;
    }
    if (hc->resp_state == RS_HEAD && hc->rh_len == 0) {
        up_failed_early(hc, "failed while sending the request");
        return;
    }
    hm_log_error(&hc->c->log, "upstream \"%s\" %s: write failed",
                 up_name(hc), hc->upstream_text);
    hc->outcome = "upstream_error";
    hc_close(hc);
}

static void
resp_head_done(hm_http_conn_t *hc)
{
    size_t hlen, extra;
    hm_http_msg_t *rm = &hc->rmsg;

    hc->resp_kind = hm_http_resp_body(rm, hc->msg.method);
    if (rm->status == 101) {
        if (!hc->msg.upgrade || !rm->upgrade) {
            up_failed_early(hc, "answered 101 to a request without Upgrade "
                            "or not with \"Upgrade: websocket\"");
            return;
        }
        hc->r.resp = rm;
        run_on_response(hc);
        hc->status = 101;
        hlen = hm__http_build_client_head(rm, &hc->msg, 0, 0, hc->ws->out,
                                          hc->ws->out_cap);
        if (hlen == 0) {
            up_failed_early(hc, "sent a response head too large to forward");
            return;
        }
        hm_timer_stop(&hc->timer);
        start_tunnel(hc, hlen);
        return;
    }
    hc->client_chunked = 0;
    if (hc->resp_kind == HM_HTTP_BODY_CHUNKED
        || hc->resp_kind == HM_HTTP_BODY_EOF)
    {
        if (hc->msg.version == 11) {
            hc->client_chunked = 1;
        } else {
            hc->close_after = 1;
        }
    }
    if (hc->resp_kind == HM_HTTP_BODY_LENGTH) {
        hc->resp_left = rm->content_length;
    } else if (hc->resp_kind == HM_HTTP_BODY_CHUNKED) {
        hm_http_chunked_init(&hc->resp_chunk);
    }
    if (hm_http_header_find(rm, "date", 4, 0) < 0) {
        /* RFC 9110 6.6.1: a response forwarded without Date gets one. */
        (void) hm_http_header_add(&hc->r, rm, "Date", 4,
                                  hm__http_date(hc_now(hc)), 29);
    }
    if (!hc->req_done) {
        /* An answer before the end of the request body (an early 413,
         * say): the connection closes after it (resp_complete()), and
         * the head says so. */
        hc->close_after = 1;
    }
    hc->r.resp = rm;
    run_on_response(hc);
    hc->status = rm->status;
    hlen = hm__http_build_client_head(rm, &hc->msg, hc->client_chunked,
                                      hc->close_after, hc->ws->out,
                                      hc->ws->out_cap);
    if (hlen == 0) {
        up_failed_early(hc, "sent a response head too large to forward");
        return;
    }
    hc->resp_started = 1;
    hc->resp_state = RS_BODY;
    set_action(hc, "reading response body from upstream");
    extra = hc->rh_len - rm->head_len;
    resp_body_feed(hc, (uint8_t *) hc->ws->rh + rm->head_len, extra,
                   hc->ws->out, hlen);
}

static void
resp_head_parse(hm_http_conn_t *hc)
{
    hm_http_msg_t *rm = &hc->rmsg;
    char why[160];
    int rc;

    for (;;) {
        memset(rm, 0, sizeof(*rm));
        rm->type = HM_HTTP_RESPONSE;
        rm->headers = hc->ws->resp_hdrs;
        rm->max_headers = HM_HTTP_MAX_HDRS;
        rc = hm_http_parse_head(rm, &hc->rscan, hc->ws->rh, hc->rh_len,
                                HM_HTTP_RESP_HEAD);
        if (rc == HM_AGAIN) {
            return;
        }
        if (rc == HM_ERROR) {
            hc->rh_len = 1;         /* response bytes seen: no retry */
            if (rm->error_status == 431) {
                up_failed_early(hc, rm->nheaders >= rm->max_headers
                                    ? "sent too many header fields"
                                    : "sent a response head too large");
                return;
            }
            /* The parser's reason (a static string) tells what is wrong. */
            snprintf(why, sizeof(why), "sent an invalid response head: %s",
                     rm->error != NULL ? rm->error : "malformed");
            up_failed_early(hc, why);
            return;
        }
        rm->max_headers = HM_HTTP_HDR_SLOTS;
        if (rm->status >= 200 || rm->status == 101) {
            break;
        }
        /* Interim 1xx (100 Continue, 103 ...): the proxy answers 100
         * itself; interim responses are dropped.  The upstream did act on
         * the request: a failure after this is not retried. */
        hc->resp_interim = 1;
        memmove(hc->ws->rh, hc->ws->rh + rm->head_len,
                hc->rh_len - rm->head_len);
        hc->rh_len -= rm->head_len;
        memset(&hc->rscan, 0, sizeof(hc->rscan));
        if (hc->rh_len == 0) {
            return;
        }
    }
    resp_head_done(hc);
}

static void
up_read_cb(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    hm_http_conn_t *hc = s->data;

    if (hc == NULL || hc->closing) {
        return;
    }
    if (nread < 0) {
        hc->up_eof = 1;
        if (hc->state == HC_TUNNEL) {
            if (nread != UV_EOF) {
                /* a reset: the client is not left half-open until it
                 * closes */
                hm_log_info(&hc->c->log, "upstream %s reset the upgraded "
                            "connection: %s", hc->upstream_text,
                            hm_stream_error(s));
                hc->outcome = "upstream_error";
                hc_close(hc);
                return;
            }
            tunnel_eof(hc, 0);
            return;
        }
        switch (hc->resp_state) {
        case RS_HEAD:
            if (hc->up_unconfirmed && !hm_stream_tls_refused(s)) {
                /* A new connection closed or reset before any response
                 * byte: the server failed the request (passive health),
                 * as with a head timeout.  (A TLS refusal is counted by
                 * up_tls_refused(); a pooled connection is only stale.) */
                hc->up_unconfirmed = 0;
                hm_upstream_peer_result(hc->up->peer, 0);
            }
            up_failed_early(hc, nread == UV_EOF
                                ? "closed the connection before the "
                                  "response head"
                                : hm_stream_error(s));
            return;
        case RS_BODY:
            /* Only a clean end completes a body delimited by the close:
             * not a reset or a TLS error, nor a TLS server's FIN without
             * close_notify (a truncation, RFC 8446 6.1). */
            if (hc->resp_kind == HM_HTTP_BODY_EOF && nread == UV_EOF
                && !hm_stream_tls_truncated(s))
            {
                if (hc->client_chunked) {
                    uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
                    if (client_write(hc, &b, 1) != 0) {
                        hc_close(hc);
                        return;
                    }
                }
                resp_complete(hc);
                return;
            }
            set_action(hc, "reading response body from upstream");
            hm_log_error(&hc->c->log, "upstream \"%s\" %s: %s in the middle "
                         "of the response body", up_name(hc),
                         hc->upstream_text,
                         nread != UV_EOF ? hm_stream_error(s)
                         : hc->resp_kind == HM_HTTP_BODY_EOF
                         ? "closed the connection without TLS close_notify"
                         : "closed the connection");
            hc->outcome = "upstream_error";
            hc_close(hc);
            return;
        default:
            up_drop(hc);
            return;
        }
    }
    if (hc->state == HC_TUNNEL) {
        tunnel_up_data(hc, data, (size_t) nread);
        return;
    }
    switch (hc->resp_state) {
    case RS_HEAD:
        if (hc->up_unconfirmed) {
            /* The first byte from a new connection: the server took it. */
            hc->up_unconfirmed = 0;
            hm_upstream_peer_result(hc->up->peer, 1);
        }
        if (hc->rh_len + (size_t) nread > hc->ws->rh_cap) {
            hc->rh_len = 1;
            up_failed_early(hc, "sent a response head too large");
            return;
        }
        memcpy(hc->ws->rh + hc->rh_len, data, (size_t) nread);
        hc->rh_len += (size_t) nread;
        resp_head_parse(hc);
        /* Once the request is out, read_timeout_ms bounds the whole
         * head (interim 1xx included) from the end of the request: a
         * server dripping it byte by byte does not restart it. */
        if (!hc->closing && hc->resp_state == RS_HEAD && !hc->req_done) {
            timer_start(&hc->utimer, up_read_timeout,
                        hc->r.route->upstream->read_timeout_ms);
        }
        return;
    case RS_BODY:
        resp_body_feed(hc, data, (size_t) nread, NULL, 0);
        if (!hc->closing && hc->resp_state == RS_BODY && hc->up_reading) {
            timer_start(&hc->utimer, up_read_timeout,
                        hc->r.route->upstream->read_timeout_ms);
        }
        return;
    default:
        hc->up_junk = 1;
    }
}

/* ---- upstream connection ------------------------------------------------ */

static void
up_send_head(hm_http_conn_t *hc)
{
    const char *host = hc->c->sni;
    size_t host_len = hc->c->sni_len;
    uv_buf_t b;
    ssize_t used;

    if (hc->up_head_len == 0) {
        if (host_len == 0) {
            host = hc->up->peer->text;
            host_len = strlen(host);
        }
        hc->up_head_len = hm__http_build_upstream_head(&hc->msg, hc->req_kind,
                                                       host, host_len,
                                                       hc->ws->out,
                                                       hc->ws->out_cap);
        if (hc->up_head_len == 0) {
            hm_log_info(&hc->c->log, "request head too large after "
                        "rewriting");
            up_drop(hc);
            hc->outcome = "bad_request";
            hc_send_local(hc, 431, NULL, NULL, 0, 1);
            return;
        }
    }
    hc->up->s.data = hc;
    hc->up->requests++;
    HM_METRIC_INC(UPSTREAM_REQUESTS);
    if (hc->up_reused) {
        HM_METRIC_INC(UPSTREAM_POOL_REUSES);
    }
    hc->resp_state = RS_HEAD;
    hc->rh_len = 0;
    memset(&hc->rscan, 0, sizeof(hc->rscan));
    hc->head_sent = 1;
    if (hc->t_up == 0) {
        hc->t_up = hc_now(hc);
    }
    set_action(hc, "sending request to upstream");
    b = uv_buf_init(hc->ws->out, (unsigned) hc->up_head_len);
    if (hm_stream_write(&hc->up->s, &b, 1) != 0) {
        up_write_failed(hc);
        return;
    }
    up_read(hc, 1);
    if (hc->req_kind == HM_HTTP_BODY_NONE) {
        /* read_timeout_ms counts from the end of the request: here, or
         * when req_body_feed() sends the last body byte. */
        timer_start(&hc->utimer, up_read_timeout,
                    hc->r.route->upstream->read_timeout_ms);
        hc->req_done = 1;
    } else if (!hc->req_done) {
        if (hc->msg.expect_continue && hc->msg.version == 11
            && hc->in_len == hc->in_off && hc->req_fwd == 0)
        {
            b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
            if (hm_stream_write(hc->cs, &b, 1) != 0) {
                hc_close(hc);
                return;
            }
            hc->c->bytes_out += 25;
        }
        if (hc->in_len > hc->in_off) {
            used = req_body_feed(hc, (uint8_t *) hc->ws->in + hc->in_off,
                                 hc->in_len - hc->in_off);
            if (used < 0) {
                return;
            }
            hc->in_off += (size_t) used;
        }
        if (!hc->req_done && hc->up != NULL && !hc->closing
            && hm_stream_write_queued(&hc->up->s) <= HM_HTTP_BP_HIGH)
        {
            client_read(hc, 1);
            timer_start(&hc->timer, client_timeout,
                        hc->site->limits.idle_timeout_ms);
        }
    }
    set_action(hc, "reading response header from upstream");
}

static void
up_connect_cb(hm_stream_t *s, int status)
{
    hm_http_conn_t *hc = s->data;
    hm_upool_conn_t *up = hm_container_of(s, hm_upool_conn_t, s);
    void *sess;

    if (hc == NULL || hc->closing || hc->up != up) {
        return;
    }
    if (status != 0) {
        hm_log_error(&hc->c->log, "upstream \"%s\" %s: %s",
                     hc->r.route->upstream->name, up->peer->text,
                     hm_stream_error(s));
        HM_METRIC_INC(UPSTREAM_CONNECT_FAILURES);
        hm_upstream_peer_result(up->peer, 0);
        up_drop(hc);
        up_start(hc);
        return;
    }
    /* Success is counted at the first response byte (up_read_cb): a
     * server may still refuse the handshake (TLS 1.3 client certificate)
     * or never answer (read_timeout_ms), and both count against it. */
    hc->up_unconfirmed = 1;
    up->connected = 1;
    HM_METRIC_INC(UPSTREAM_CONNECTIONS);
    if (s->tls != NULL) {
        HM_METRIC_INC(UPSTREAM_TLS_HANDSHAKES);
        if (hm_stream_tls_resumed(s)) {
            HM_METRIC_INC(UPSTREAM_TLS_RESUMED);
        }
        hm_log_debug(&hc->c->log, "upstream %s connected, %s, session %s",
                     up->peer->text, hm_stream_tls_version(s),
                     hm_stream_tls_resumed(s) ? "resumed" : "new");
    }
    if (s->tls != NULL && !hm_stream_tls_resumed(s)) {
        sess = hm_stream_tls_session(s);
        if (sess != NULL) {
            hm_upool_set_session(up->peer, sess);
            up->session_saved = 1;
        }
    } else if (s->tls != NULL) {
        up->session_saved = 1;      /* resumed: the offered one is fine */
    }
    up_send_head(hc);
}

/* Picks a peer and a connection to it (pooled or new), until one works
 * or none is left (502/503).  When every server of the group is down
 * (active health or passive ejection) the request gets 503 without any
 * connection attempt: hm_upstream_select_up() has no fallback to the
 * server that recovers first, which the passthrough relay keeps. */
static void
up_start(hm_http_conn_t *hc)
{
    const hm_conf_upstream_t *u = hc->r.route->upstream;
    hm_upstream_rt_t *rt = hm_upstream_rt(u);
    hm_upstream_peer_t *peer;
    hm_upool_conn_t *up;
    int rc;

    set_action(hc, "connecting to upstream");
    hc->up_eof = 0;
    hc->up_unconfirmed = 0;
    for (;;) {
        if (hc->ntried >= HM_UPSTREAM_MAX_TRIES) {
            peer = NULL;
        } else {
            peer = hm_upstream_select_up(rt, hc->tried, hc->ntried);
        }
        if (peer == NULL) {
            if (hc->ntried == 0) {
                hm_log_error(&hc->c->log, "upstream \"%s\": no server "
                             "available (all down)", u->name);
                hc->outcome = "no_upstream";
                hc_send_local(hc, 503, NULL, NULL, 0, 0);
            } else {
                hc->outcome = "upstream_error";
                hc_send_local(hc, 502, NULL, NULL, 0, 0);
            }
            return;
        }
        hc->tried[hc->ntried++] = peer;
        hc->upstream_text = peer->text;
        up = hc->no_pool ? NULL : hm_upool_get(peer);
        if (up != NULL) {
            hc->up = up;
            hc->up_reused = 1;
            up->s.data = hc;
            up_send_head(hc);
            return;
        }
        up = hm_upool_conn_new(peer);
        if (up == NULL) {
            hm_upstream_peer_release(peer);
            hc->outcome = "no_memory";
            hc_send_local(hc, 503, NULL, NULL, 0, 1);
            return;
        }
        up->s.data = hc;
        hc->up = up;
        hc->up_reused = 0;
        rc = hm_stream_connect(&up->s, hc->c->worker->loop, peer->addr,
                               u->connect_timeout_ms,
                               u->tls.present ? &u->tls : NULL,
                               u->tls.present ? hm_upool_session(peer) : NULL,
                               up_connect_cb);
        if (rc == 0) {
            return;
        }
        hm_log_error(&hc->c->log, "upstream \"%s\" %s: %s", u->name,
                     peer->text, uv_strerror(rc));
        HM_METRIC_INC(UPSTREAM_CONNECT_FAILURES);
        up_drop(hc);
        if (hm_stream_local_error(rc)) {
            /* Out of descriptors or memory here: not the server's
             * failure (no passive-health count, which would eject
             * healthy servers), and the next one would fail alike. */
            hc->outcome = "upstream_error";
            hc_send_local(hc, 502, NULL, NULL, 0, 0);
            return;
        }
        hm_upstream_peer_result(peer, 0);
    }
}

/* ---- local responses ---------------------------------------------------- */

/*
 * Before a local answer: when the rest of the request body is already in
 * the workspace (a small POST to a fixed route, say), it is skipped, so
 * that the connection can stay open for the requests behind it.  Else the
 * body stays unread and the connection closes after the answer.
 */
static void
req_body_skip(hm_http_conn_t *hc)
{
    hm_http_chunked_t probe;
    size_t pos = hc->in_off, used, off, len;
    int rc;

    if (hc->req_kind == HM_HTTP_BODY_LENGTH) {
        if ((uint64_t) hc->req_left <= hc->in_len - hc->in_off) {
            hc->in_off += (size_t) hc->req_left;
            hc->rq_in += (uint64_t) hc->req_left;
            hc->req_left = 0;
            hc->req_done = 1;
        }
        return;
    }
    if (hc->req_kind != HM_HTTP_BODY_CHUNKED) {
        return;
    }
    probe = hc->req_chunk;
    while (pos < hc->in_len) {
        rc = hm_http_chunked_next(&probe, (uint8_t *) hc->ws->in + pos,
                                  hc->in_len - pos, &used, &off, &len);
        if (rc == HM_ERROR) {
            return;
        }
        pos += used;
        if (rc == HM_DONE) {
            hc->rq_in += pos - hc->in_off;
            hc->in_off = pos;
            hc->req_done = 1;
            return;
        }
    }
}

/*
 * Answers the current request with a response of the proxy's own (fixed
 * routes and errors), through the on_response hooks.  close: close the
 * connection afterwards (it also closes when the request body is left
 * unread, see req_body_skip()).
 */
static void
hc_send_local(hm_http_conn_t *hc, int status, const char *ctype,
              const char *body, size_t blen, int close)
{
    hm_http_msg_t *rm = &hc->rmsg;
    char defbody[64];
    uv_buf_t b[2];
    size_t hlen;
    unsigned n = 0;
    int k;

    if (hc->closing) {
        return;
    }
    if (hc->ws == NULL) {
        hc_close(hc);
        return;
    }
    if (hc->resp_started) {
        hc_close(hc);
        return;
    }
    hm_timer_stop(&hc->utimer);
    if (body == NULL) {
        k = snprintf(defbody, sizeof(defbody), "%d %s\n", status,
                     hm_http_reason(status));
        body = defbody;
        blen = (size_t) k;
        ctype = "text/plain";
    }
    if (ctype == NULL) {
        ctype = "text/plain";
    }
    memset(rm, 0, sizeof(*rm));
    rm->type = HM_HTTP_RESPONSE;
    rm->status = status;
    rm->version = 11;
    rm->headers = hc->ws->resp_hdrs;
    rm->max_headers = HM_HTTP_HDR_SLOTS;
    rm->content_length = (int64_t) blen;
    rm->headers[0].name.data = "Content-Type";
    rm->headers[0].name.len = 12;
    rm->headers[0].value.data = ctype;
    rm->headers[0].value.len = strlen(ctype);
    rm->headers[0].flags = 0;
    k = snprintf(hc->clbuf, sizeof(hc->clbuf), "%zu", blen);
    rm->headers[1].name.data = "Content-Length";
    rm->headers[1].name.len = 14;
    rm->headers[1].value.data = hc->clbuf;
    rm->headers[1].value.len = (size_t) k;
    /* RFC 9110 8.6: no Content-Length in a 204 (a fixed route's). */
    rm->headers[1].flags = status == 204 ? HM_HTTP_HDR_REMOVED : 0;
    rm->headers[2].name.data = "Date";
    rm->headers[2].name.len = 4;
    rm->headers[2].value.data = hm__http_date(hc_now(hc));
    rm->headers[2].value.len = 29;
    rm->headers[2].flags = 0;
    rm->nheaders = 3;
    if (!close && !hc->req_done) {
        req_body_skip(hc);
    }
    if (close || !hc->req_done) {   /* draining: set by hc_process() */
        hc->close_after = 1;
    }
    if (hc->head_ok) {
        hc->r.resp = rm;
        run_on_response(hc);
    }
    hc->status = status;
    hlen = hm__http_build_client_head(rm, hc->head_ok ? &hc->msg : NULL,
                                      0, hc->close_after, hc->ws->out,
                                      hc->ws->out_cap);
    if (hlen == 0) {
        hc_close(hc);
        return;
    }
    b[n++] = uv_buf_init(hc->ws->out, (unsigned) hlen);
    if (hc->msg.method != HM_HTTP_M_HEAD && blen > 0) {
        b[n++] = uv_buf_init((char *) body, (unsigned) blen);
    }
    hc->resp_started = 1;
    hc->resp_state = RS_DONE;
    if (client_write(hc, b, n) != 0) {
        hc_close(hc);
        return;
    }
    up_drop(hc);
    hc_finish(hc);
}

/* ---- request ------------------------------------------------------------ */

/* 1 when host (no port) is one of site's names (hm_server_name_covers). */
static int
site_has_name(const hm_conf_site_t *site, const char *host, size_t hlen)
{
    size_t i;

    for (i = 0; i < site->nserver_names; i++) {
        if (hm_server_name_covers(site->server_names[i], host, hlen)) {
            return 1;
        }
    }
    return 0;
}

/* 1 when host (no port) equals the SNI or is one of the site's names. */
static int
host_agrees(hm_http_conn_t *hc, const char *host, size_t hlen)
{
    return hm_strncaseeq(host, hlen, hc->c->sni, hc->c->sni_len)
           || site_has_name(hc->site, host, hlen);
}

/*
 * Without SNI (the default site answered the handshake): the other site
 * of this listener that host names, or NULL.  The site is chosen by the
 * ClientHello, so such a request would get the default site's routes and
 * trust settings: it is misdirected.
 */
static const hm_conf_site_t *
host_other_site(hm_http_conn_t *hc, const char *host, size_t hlen)
{
    const hm_conf_listener_t *l = hc->c->listener;
    size_t i;

    if (l == NULL || site_has_name(hc->site, host, hlen)) {
        return NULL;
    }
    for (i = 0; i < l->nsites; i++) {
        if (l->sites[i] != hc->site && site_has_name(l->sites[i], host, hlen)) {
            return l->sites[i];
        }
    }
    return NULL;
}

/*
 * While draining: 1 when the client has already sent bytes past this
 * request (its head, and its body when the length is known), that is a
 * pipelined request, which is still answered; this response then keeps
 * the connection open and the last one announces the close.
 */
static int
pipelined_behind(const hm_http_conn_t *hc)
{
    size_t left = hc->in_len - hc->in_off;

    switch (hc->req_kind) {
    case HM_HTTP_BODY_NONE:
        return left > 0;
    case HM_HTTP_BODY_LENGTH:
        return hc->msg.content_length >= 0
               && left > (uint64_t) hc->msg.content_length;
    default:
        return 0;               /* chunked: not worth a parse here */
    }
}

static void
hc_process(hm_http_conn_t *hc)
{
    hm_conf_limits_t *lim = &hc->site->limits;
    const hm_conf_route_t *route;
    const hm_conf_site_t *other;
    const char *host;
    size_t hlen;
    int rc;

    hc->state = HC_REQ;
    hc->nrequests++;
    hc->rq_in = hc->msg.head_len;
    hc->r.conn = hc->c;
    hc->r.client = hc->cs;
    hc->r.site = hc->site;
    hc->r.pool = hc->c->pool;
    hc->r.req = &hc->msg;
    set_action(hc, "processing a request");

    hc->req_kind = hm_http_req_body(&hc->msg);
    if (!hc->msg.keep_alive
        || (hc->draining && !pipelined_behind(hc) && !client_has_bytes(hc))
        || (lim->max_requests > 0 && hc->nrequests >= (unsigned) lim->max_requests))
    {
        hc->close_after = 1;
    }
    if (hc->req_kind == HM_HTTP_BODY_LENGTH) {
        hc->req_left = hc->msg.content_length;
        if ((uint64_t) hc->msg.content_length > lim->max_body_bytes) {
            hm_log_info(&hc->c->log, "request body of %lld bytes larger "
                        "than max_body_bytes",
                        (long long) hc->msg.content_length);
            hc->outcome = "body_too_large";
            hc_send_local(hc, 413, NULL, NULL, 0, 1);
            return;
        }
    } else if (hc->req_kind == HM_HTTP_BODY_CHUNKED) {
        hm_http_chunked_init(&hc->req_chunk);
        /* Check the framing of the body bytes already here before any
         * upstream sees the head: most smuggling attempts arrive in one
         * piece and are refused without an upstream connection. */
        if (hc->in_len > hc->in_off) {
            hm_http_chunked_t probe = hc->req_chunk;
            size_t pos = hc->in_off, used, off, len;
            uint64_t total = 0;

            while (pos < hc->in_len) {
                rc = hm_http_chunked_next(&probe,
                                          (uint8_t *) hc->ws->in + pos,
                                          hc->in_len - pos, &used, &off, &len);
                if (rc == HM_ERROR) {
                    hm_log_info(&hc->c->log, "invalid chunked request body");
                    hc->outcome = "bad_request";
                    hc_send_local(hc, 400, NULL, NULL, 0, 1);
                    return;
                }
                total += rc == HM_OK ? len : 0;
                pos += used;
                if (rc != HM_OK) {
                    break;
                }
            }
            if (total > lim->max_body_bytes) {
                hm_log_info(&hc->c->log, "request body larger than "
                            "max_body_bytes");
                hc->outcome = "body_too_large";
                hc_send_local(hc, 413, NULL, NULL, 0, 1);
                return;
            }
        }
    } else {
        hc->req_done = 1;
    }

    hc->r.npath = hc->ws->npath;
    hc->r.npath_len = hm_http_normalize_path(hc->msg.path.data,
                                             hc->msg.path.len, hc->ws->npath);
    if (hc->r.npath_len == 0) {
        hm_log_info(&hc->c->log, "malformed percent-encoding in the path");
        hc->outcome = "bad_request";
        hc_send_local(hc, 400, NULL, NULL, 0, 1);
        return;
    }
    if (hc->msg.host.len > 0) {
        host = hc->msg.host.data;
        hlen = hc->msg.host.len;
        if (host[0] == '[') {
            const char *e = memchr(host, ']', hlen);
            if (e != NULL) {
                hlen = (size_t) (e - host) + 1;
            }
        } else {
            const char *colon = memchr(host, ':', hlen);
            if (colon != NULL) {
                hlen = (size_t) (colon - host);
            }
            if (hlen > 1 && host[hlen - 1] == '.') {
                hlen--;             /* "a.test." is the FQDN of a.test */
            }
        }
    } else {
        host = hc->c->sni;
        hlen = hc->c->sni_len;
    }
    if (hc->msg.host.len > 0 && hc->c->sni_len > 0
        && !host_agrees(hc, host, hlen))
    {
        /* SNI/Host agreement: a request may only name the host its TLS
         * connection was made for, or another name of the same site. */
        hm_log_info(&hc->c->log, "Host \"%.*s\" does not belong to the site "
                    "of SNI \"%s\"", (int) hlen, host, hc->c->sni);
        hc->outcome = "misdirected";
        hc_send_local(hc, 421, NULL, NULL, 0, 0);
        return;
    }
    if (hc->msg.host.len > 0 && hc->c->sni_len == 0
        && (other = host_other_site(hc, host, hlen)) != NULL)
    {
        hm_log_info(&hc->c->log, "Host \"%.*s\" names site \"%s\", but the "
                    "client sent no SNI and got site \"%s\"", (int) hlen,
                    host, other->name, hc->site->name);
        hc->outcome = "misdirected";
        hc_send_local(hc, 421, NULL, NULL, 0, 0);
        return;
    }
    if (hc->msg.path.len == 1 && hc->msg.path.data[0] == '*') {
        /* "OPTIONS * HTTP/1.1" (the only asterisk-form the parser lets
         * through) asks about the server itself, not a resource of a
         * route: the proxy answers it, no upstream sees it. */
        hc->outcome = "fixed";
        hc_send_local(hc, 200, "text/plain", "", 0, 0);
        return;
    }
    route = hm_router_match(hc->site, &hc->msg, hc->r.npath, hc->r.npath_len,
                            host, hlen);
    if (route == NULL) {
        hc->outcome = "no_route";
        hc_send_local(hc, 404, NULL, NULL, 0, 0);
        return;
    }
    hc->r.route = route;

    rc = run_on_request(hc);
    if (rc == HM_DONE) {
        hc->outcome = "filtered";
        hc_send_local(hc, hc->r.reply_status ? hc->r.reply_status : 403, NULL,
                      hc->r.reply_body,
                      hc->r.reply_body ? strlen(hc->r.reply_body) : 0, 0);
        return;
    }
    if (rc == HM_ERROR) {
        hm_log_error(&hc->c->log, "a module failed on the request");
        hc->outcome = "internal_error";
        hc_send_local(hc, 500, NULL, NULL, 0, 1);
        return;
    }
    if (route->upstream == NULL) {
        hc->outcome = "fixed";
        hc_send_local(hc, route->status ? route->status : 200,
                      route->content_type ? route->content_type
                                          : "text/plain",
                      route->body ? route->body : "",
                      route->body ? route->body_len : 0, 0);
        return;
    }
    up_start(hc);
}

static void
hc_try_head(hm_http_conn_t *hc)
{
    hm_http_msg_t *m = &hc->msg;
    int rc;

    memset(m, 0, sizeof(*m));
    m->type = HM_HTTP_REQUEST;
    m->headers = hc->ws->req_hdrs;
    m->max_headers = HM_HTTP_MAX_HDRS;
    rc = hm_http_parse_head(m, &hc->scan, hc->ws->in, hc->in_len,
                            hc->site->limits.max_header_bytes);
    if (rc == HM_AGAIN) {
        if (hc->state == HC_IDLE) {
            hc->state = HC_HEAD;
        }
        set_action(hc, "reading a request head");
        client_read(hc, 1);
        return;
    }
    hm_timer_stop(&hc->timer);
    hc->started = 1;
    if (rc == HM_ERROR) {
        hc->state = HC_REQ;
        hc->nrequests++;
        hc->rq_in = hc->in_len;
        hm_log_info(&hc->c->log, "invalid request: %s", m->error);
        hc->outcome = "bad_request";
        m->method = HM_HTTP_M_OTHER;    /* no HEAD semantics for it */
        hc->req_done = 0;
        hc_send_local(hc, m->error_status ? m->error_status : 400, NULL,
                      NULL, 0, 1);
        return;
    }
    m->max_headers = HM_HTTP_HDR_SLOTS;
    hc->head_ok = 1;
    hc->in_off = m->head_len;
    hc_process(hc);
}

/* After a response: log, then the next request or the end. */
static void
hc_finish(hm_http_conn_t *hc)
{
    if (hc->closing) {
        return;
    }
    hc_log_request(hc);
    /* Draining: a pipelined request already here is still answered (with
     * "Connection: close"), unless this response announced the close. */
    if (hc->close_after || hc->cs_eof
        || (hc->draining && hc->in_off >= hc->in_len
            && !client_has_bytes(hc)))
    {
        hc_begin_close(hc);
        return;
    }
    hm_pool_reset_to(hc->c->pool, &hc->mark);
    if (hc->in_off < hc->in_len) {
        memmove(hc->ws->in, hc->ws->in + hc->in_off, hc->in_len - hc->in_off);
    }
    hc->in_len -= hc->in_off;
    hc->in_off = 0;
    memset(&hc->HC_RESET_FROM, 0,
           sizeof(*hc) - offsetof(hm_http_conn_t, HC_RESET_FROM));
    memset(&hc->scan, 0, sizeof(hc->scan));
    hm_timer_stop(&hc->utimer);
    if (hc->in_len > 0) {
        /* A pipelined request waits: parse it from the loop, not from
         * inside this call chain. */
        hc->state = HC_HEAD;
        hc->t_start = hc_now(hc);
        hc->pipeline = 1;
        set_action(hc, "reading a request head");
        hm_timer_start(&hc->timer, client_timeout, 0);
        return;
    }
    ws_put(hc->ws);
    hc->ws = NULL;
    hc->state = HC_IDLE;
    set_action(hc, "waiting for a request");
    client_read(hc, 1);
    timer_start(&hc->timer, client_timeout,
                hc->draining ? hc->site->limits.header_timeout_ms
                             : hc->site->limits.idle_timeout_ms);
}

/* ---- client reads ------------------------------------------------------- */

static void
client_eof(hm_http_conn_t *hc, ssize_t code)
{
    hc->cs_eof = 1;
    if (code == HM_STREAM_ETLS && hc->state != HC_TUNNEL) {
        /* not an end but the client's TLS protocol error (a renegotiation
         * attempt, a bad record): say so, once; the stream sent the
         * alert */
        hm_log_info(&hc->c->log, "TLS error from the client%s: %s",
                    hc->state == HC_REQ && !hc->req_done
                    ? " in the middle of a request"
                    : hc->state == HC_HEAD && hc->in_len > 0
                    ? " in the middle of a request head" : "",
                    hm_stream_error(hc->cs));
        if (hc->state == HC_REQ && !hc->req_done) {
            hc->outcome = "client_closed";
        }
        hc_close(hc);
        return;
    }
    switch (hc->state) {
    case HC_TUNNEL:
        if (code != UV_EOF) {
            /* A reset is no half-close: the upstream, which may never
             * close on our FIN, is not waited for (idle_timeout_ms). */
            hm_log_info(&hc->c->log, "client reset the upgraded connection");
            hc->outcome = "client_closed";
            hc_close(hc);
            return;
        }
        tunnel_eof(hc, 1);
        return;
    case HC_REQ:
        if (hc->req_done && code == UV_EOF) {
            /* Half-close after a complete request: answer, then close. */
            client_read(hc, 0);
            hc->close_after = 1;
            return;
        }
        /* A reset (or a read error) is no half-close: nobody is left to
         * answer, so the upstream leg (connect, TLS handshake, a slow
         * response) is not waited for. */
        hm_log_info(&hc->c->log, "client closed the connection in the "
                    "middle of a request");
        hc->outcome = hc->req_done && hc->resp_started ? "aborted"
                                                       : "client_closed";
        hc_close(hc);
        return;
    case HC_HEAD:
        if (hc->in_len > 0) {
            hm_log_info(&hc->c->log, "client closed the connection in the "
                        "middle of a request head");
            hc->c->outcome = "client_closed";
        }
        /* fall through */
    default:
        if (hc->nrequests == 0 && hc->c->outcome == NULL) {
            /* gone before its first request (connections_total) */
            hc->c->outcome = "client_closed";
        }
        hc_close(hc);
    }
}

static void
client_read_cb(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    hm_http_conn_t *hc = s->data;
    ssize_t used;
    size_t n = (size_t) nread;

    if (hc->closing) {
        return;
    }
    if (nread < 0) {
        client_eof(hc, nread);
        return;
    }
    hc->c->bytes_in += n;
    switch (hc->state) {
    case HC_IDLE:
    case HC_HEAD:
        if (hc->ws == NULL) {
            hc->ws = ws_get(hc->site->limits.max_header_bytes);
            if (hc->ws == NULL) {
                hm_log_error(&hc->c->log, "out of memory for a request");
                hc_close(hc);
                return;
            }
            hc->in_len = 0;
            hc->in_off = 0;
        }
        if (hc->state == HC_IDLE || hc->pipeline) {
            /* A new request, or more bytes while a pipelined one waits
             * for its turn from the timer: parse now, time the head. */
            if (hc->state == HC_IDLE) {
                hc->t_start = hc_now(hc);
            }
            hc->state = HC_HEAD;
            hc->pipeline = 0;
            timer_start(&hc->timer, client_timeout,
                        hc->site->limits.header_timeout_ms);
        }
        if (hc->in_len + n > hc->ws->in_cap) {
            n = hc->ws->in_cap - hc->in_len;  /* the head is too large */
        }
        memcpy(hc->ws->in + hc->in_len, data, n);
        hc->in_len += n;
        hc_try_head(hc);
        /* The head was complete: the bytes read with it (body, pipelined
         * requests) may leave less room than the next read needs. */
        in_reserve(hc);
        return;
    case HC_REQ:
        if (!hc->req_done && hc->head_sent && hc->in_off == hc->in_len) {
            timer_start(&hc->timer, client_timeout,
                        hc->site->limits.idle_timeout_ms);
            used = req_body_feed(hc, data, n);
            if (used < 0 || hc->closing) {
                return;
            }
            if ((size_t) used < n) {
                save_pipelined(hc, data + used, n - (size_t) used);
            }
            return;
        }
        save_pipelined(hc, data, n);
        return;
    case HC_TUNNEL:
        tunnel_client_data(hc, data, n);
        return;
    default:
        /* HC_LINGER: dropped */
        return;
    }
}

/* ---- entry -------------------------------------------------------------- */

static void
start_failed_closed(hm_stream_t *s)
{
    hm_conn_free(s->data);
}

void
hm_http_conn_start(hm_conn_t *c, hm_stream_t *s)
{
    hm_http_conn_t *hc;

    hc = hm_pool_calloc(c->pool, sizeof(*hc));
    if (hc == NULL) {
        hm_log_error(&c->log, "out of memory for an HTTP connection");
        s->data = c;
        hm_stream_close(s, start_failed_closed);
        return;
    }
    hc->c = c;
    hc->cs = s;
    hc->site = c->site;
    s->data = hc;
    c->owner = hc;
    c->drain = c_drain;
    c->abort = c_abort;
    hm_timer_init(c->worker->loop, &hc->timer, hc);
    hm_timer_init(c->worker->loop, &hc->utimer, hc);
    hc->handles = 3;
    hm_pool_mark(c->pool, &hc->mark);
    hc->state = HC_IDLE;
    set_action(hc, "waiting for a request");
    if (c->worker->quitting) {
        hc->draining = 1;
    }
    client_read(hc, 1);
    timer_start(&hc->timer, client_timeout,
                hc->site->limits.header_timeout_ms);
}

/*
 * hm_health.c: active health checks (see hm_health.h for the contract).
 *
 * Where it sits: started in each worker by the health_check module's
 * init_worker hook (modules/health_check), after the worker's loop exists
 * and before it accepts.  It talks to the upstream servers with the same
 * transport the HTTP layer uses (hm_stream_connect with the upstream's TLS
 * settings) and feeds its verdicts into the balancer's peer state
 * (hm_upstream_peer_set_health), which hm_upstream_select() honours.  It
 * never touches client connections.
 *
 * One hm_health_check_t per (upstream, server), allocated once per worker
 * with hm_xcalloc and kept for the worker's life.  Each owns one timer
 * (the next check while idle, the check's deadline while running) and one
 * embedded stream that exists only while a check runs:
 *
 *   IDLE --timer--> CONNECTING --connected, request written--> WAITING
 *   CONNECTING/WAITING --status line | error | EOF | timer--> CLOSING
 *   CLOSING --stream closed--> IDLE (timer set to interval_s)
 *
 * The verdict is recorded once per check, when it enters CLOSING; no
 * stream callback runs after hm_stream_close(), so late events cannot
 * count twice.
 */
#include "hm_core.h"
#include "hm_cycle.h"
#include "hm_log.h"
#include "hm_stream.h"
#include "hm_upstream.h"
#include "hm_upool.h"
#include "hm_worker.h"
#include "hm_health.h"

#include <stdarg.h>
#include <stdio.h>

enum {
    HM_HC_IDLE = 0,
    HM_HC_CONNECTING,
    HM_HC_WAITING,
    HM_HC_CLOSING,
    HM_HC_STOPPED
};

typedef struct hm_health_check_s hm_health_check_t;

struct hm_health_check_s {
    hm_upstream_peer_t       *peer;
    const hm_conf_upstream_t *u;
    const hm_conf_health_check_t *conf;
    uv_loop_t                *loop;
    uv_timer_t                timer;
    hm_stream_t               stream;
    int                       state;        /* HM_HC_* */
    int                       tcp_only;     /* passthrough-only upstream */
    int                       passes;       /* consecutive */
    int                       fails;        /* consecutive */
    int                       last_status;  /* HTTP status of the last pass */
    int                       resumed;      /* last check resumed TLS */
    char                     *request;      /* "GET ... \r\n\r\n" */
    size_t                    request_len;
    size_t                    len;
    int                       interim;      /* skipping a 1xx head */
    int                       blank;        /* ... at a line's start */
    size_t                    skipped;      /* bytes of 1xx responses */
    char                      buf[HM_HEALTH_MAX_LINE];
    char                      reason[160];  /* of the last failure */
};

static hm_health_check_t *hm_health_checks;
static size_t             hm_health_nchecks;


/*
 * Status line parser.  Every byte is checked as it arrives, so a server
 * that does not speak HTTP fails at its first wrong byte.
 */
int
hm_health_parse_status(const char *p, size_t len, int *status)
{
    static const char prefix[] = "HTTP/1.";
    size_t            i;
    unsigned char     c;

    for (i = 0; i < sizeof(prefix) - 1; i++) {
        if (i >= len) {
            return HM_AGAIN;
        }
        if (p[i] != prefix[i]) {
            return HM_ERROR;
        }
    }
    /* i == 7: minor version digit, then SP, then three digits */
    for (; i < 12; i++) {
        if (i >= len) {
            return HM_AGAIN;
        }
        c = (unsigned char) p[i];
        if (i == 8 ? c != ' ' : (c < '0' || c > '9')) {
            return HM_ERROR;
        }
    }
    if (p[9] < '1' || p[9] > '5') {
        return HM_ERROR;
    }
    /* i == 12: end of line, or SP and a reason phrase; the whole line,
     * CRLF included, fits in HM_HEALTH_MAX_LINE bytes */
    for (; i < len && i < HM_HEALTH_MAX_LINE; i++) {
        c = (unsigned char) p[i];
        if (c == '\n'
            || (c == '\r' && i + 1 < len && i + 1 < HM_HEALTH_MAX_LINE
                && p[i + 1] == '\n'))
        {
            *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
            return HM_OK;
        }
        if (c == '\r') {
            if (i + 1 < len) {
                return HM_ERROR;        /* CR not followed by LF */
            }
            return i + 1 < HM_HEALTH_MAX_LINE ? HM_AGAIN : HM_ERROR;
        }
        if (i == 12 && c != ' ') {
            return HM_ERROR;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return HM_ERROR;
        }
    }
    return i < HM_HEALTH_MAX_LINE ? HM_AGAIN : HM_ERROR;
}


static void hm_health_timer_cb(uv_timer_t *t);
static void hm_health_closed_cb(hm_stream_t *s);


/*
 * The Host header of a check: the upstream's tls.server_name when it has
 * one (an IPv6 literal in brackets, RFC 9110 section 7.2), else the
 * server's address text (already "[v6]:port").  Writes into buf
 * (NUL-terminated, truncated to len > 0) and returns buf.
 */
const char *
hm_health_host_header(char *buf, size_t len, const char *server_name,
                      const char *addr_text)
{
    if (server_name == NULL) {
        snprintf(buf, len, "%s", addr_text);
    } else if (strchr(server_name, ':') != NULL && server_name[0] != '[') {
        snprintf(buf, len, "[%s]", server_name);
    } else {
        snprintf(buf, len, "%s", server_name);
    }
    return buf;
}


/* Applies one check's verdict to the counters and, on a transition, to
 * the peer; logs transitions at warn. */
static void
hm_health_record(hm_health_check_t *hc, int ok)
{
    hm_upstream_peer_t *peer = hc->peer;

    if (ok) {
        hc->fails = 0;
        hc->passes++;
        hm_log_debug(NULL, "upstream %s server %s: health check passed "
                     "(%s%d%s)", hc->u->name, peer->text,
                     hc->tcp_only ? "TCP connect" : "HTTP ",
                     hc->tcp_only ? 0 : hc->last_status,
                     hc->resumed ? ", TLS session resumed" : "");
        if (peer->health_down && hc->passes >= hc->conf->pass_after) {
            hm_upstream_peer_set_health(peer, 1);
            if (hc->tcp_only) {
                hm_log_warn(NULL, "upstream %s server %s is UP: health check "
                            "passed %d time%s (TCP connect)", hc->u->name,
                            peer->text, hc->passes,
                            hc->passes == 1 ? "" : "s");
            } else {
                hm_log_warn(NULL, "upstream %s server %s is UP: health check "
                            "passed %d time%s (HTTP %d)", hc->u->name,
                            peer->text, hc->passes,
                            hc->passes == 1 ? "" : "s", hc->last_status);
            }
        }
        return;
    }

    hc->passes = 0;
    hc->fails++;
    hm_log_debug(NULL, "upstream %s server %s: health check failed (%s)",
                 hc->u->name, peer->text, hc->reason);
    if (!peer->health_down && hc->fails >= hc->conf->fail_after) {
        hm_upstream_peer_set_health(peer, 0);
        hm_log_warn(NULL, "upstream %s server %s is DOWN: health check failed "
                    "%d time%s (%s)", hc->u->name, peer->text, hc->fails,
                    hc->fails == 1 ? "" : "s", hc->reason);
    }
}


/*
 * Ends the running check with verdict ok (reason: why it failed, a
 * printf format) and closes its stream; the next check is scheduled once
 * the stream is closed.
 */
static void HM_PRINTF(3, 4)
hm_health_finish(hm_health_check_t *hc, int ok, const char *fmt, ...)
{
    va_list  ap;
    void    *session;

    if (hc->state != HM_HC_CONNECTING && hc->state != HM_HC_WAITING) {
        return;
    }
    if (!ok) {
        va_start(ap, fmt);
        vsnprintf(hc->reason, sizeof(hc->reason), fmt, ap);
        va_end(ap);
    }
    /* Keep the TLS session for the next check and for traffic: the
     * per-server cache of hm_upool (the ticket has arrived by now). */
    hc->resumed = 0;
    if (hc->stream.tls != NULL && hc->state == HM_HC_WAITING) {
        hc->resumed = hm_stream_tls_resumed(&hc->stream);
        if (!hc->resumed) {
            session = hm_stream_tls_session(&hc->stream);
            if (session != NULL) {
                hm_upool_set_session(hc->peer, session);
            }
        }
    }
    hc->state = HM_HC_CLOSING;
    uv_timer_stop(&hc->timer);
    hm_health_record(hc, ok);
    hm_stream_close(&hc->stream, hm_health_closed_cb);
}


static void
hm_health_closed_cb(hm_stream_t *s)
{
    hm_health_check_t *hc = s->data;

    if (hc->state == HM_HC_STOPPED) {
        return;
    }
    hc->state = HM_HC_IDLE;
    uv_timer_start(&hc->timer, hm_health_timer_cb,
                   (uint64_t) hc->conf->interval_s * 1000, 0);
}


/*
 * Interim responses (RFC 9110 15.2: 100 Continue, 103 Early Hints) come
 * before the final one and say nothing about the server's health: after
 * the status line of one, the rest of its head is skipped up to its empty
 * line.  Consumes from data[0..n); returns the bytes used, with
 * hc->interim cleared once the head ended.
 */
static size_t
hm_health_skip_interim(hm_health_check_t *hc, const uint8_t *data, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (data[i] == '\n') {
            if (hc->blank) {
                hc->interim = 0;
                return i + 1;
            }
            hc->blank = 1;
        } else if (data[i] != '\r') {
            hc->blank = 0;
        }
    }
    return n;
}

static void
hm_health_read_cb(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    hm_health_check_t *hc = s->data;
    size_t             n, left, eol, used;
    int                rc, status;

    if (hc->state != HM_HC_WAITING) {
        return;
    }
    if (nread == UV_EOF) {
        hm_health_finish(hc, 0, "connection closed before a status line");
        return;
    }
    if (nread < 0) {
        hm_health_finish(hc, 0, "%s", nread == HM_STREAM_ETLS
                                      ? hm_stream_error(s)
                                      : uv_strerror((int) nread));
        return;
    }

    left = (size_t) nread;
    for ( ;; ) {
        if (hc->interim) {
            used = hm_health_skip_interim(hc, data, left);
            hc->skipped += used;
            data += used;
            left -= used;
        }
        if (hc->skipped > HM_HEALTH_MAX_INTERIM) {
            hm_health_finish(hc, 0, "interim (1xx) responses longer than "
                             "%d bytes", HM_HEALTH_MAX_INTERIM);
            return;
        }
        if (hc->interim) {
            return;
        }
        n = hm_min(left, sizeof(hc->buf) - hc->len);
        memcpy(hc->buf + hc->len, data, n);
        hc->len += n;
        data += n;
        left -= n;

        status = 0;
        rc = hm_health_parse_status(hc->buf, hc->len, &status);
        if (rc == HM_AGAIN) {
            return;
        }
        if (rc == HM_ERROR) {
            hm_health_finish(hc, 0, "invalid HTTP status line");
            return;
        }
        if (status >= 200 || status == 101) {
            break;
        }
        /* A 1xx: what follows its status line in buf is its head, and
         * what the head leaves goes back to the front of buf. */
        eol = (size_t) ((const char *) memchr(hc->buf, '\n', hc->len)
                        - hc->buf) + 1;
        hc->interim = 1;
        hc->blank = 1;
        used = hm_health_skip_interim(hc, (const uint8_t *) hc->buf + eol,
                                      hc->len - eol);
        hc->skipped += eol + used;
        memmove(hc->buf, hc->buf + eol + used, hc->len - eol - used);
        hc->len -= eol + used;
    }
    if (status >= 200 && status < 400) {
        hc->last_status = status;
        hm_health_finish(hc, 1, "%s", "");
    } else {
        hm_health_finish(hc, 0, "HTTP %d", status);
    }
}


static void
hm_health_connect_cb(hm_stream_t *s, int status)
{
    hm_health_check_t *hc = s->data;
    uv_buf_t           b;
    int                rc;

    if (hc->state != HM_HC_CONNECTING) {
        return;
    }
    if (status != 0) {
        if (status == HM_STREAM_ETLS) {
            hm_health_finish(hc, 0, "%s", hm_stream_error(s));
        } else if (status == UV_ETIMEDOUT) {
            hm_health_finish(hc, 0, "timed out after %d ms",
                             hc->conf->timeout_ms);
        } else {
            hm_health_finish(hc, 0, "%s", uv_strerror(status));
        }
        return;
    }
    if (hc->tcp_only) {
        hm_health_finish(hc, 1, "%s", "");
        return;
    }

    hc->state = HM_HC_WAITING;
    hc->len = 0;
    hc->interim = 0;
    hc->skipped = 0;
    b = uv_buf_init(hc->request, (unsigned int) hc->request_len);
    rc = hm_stream_write(s, &b, 1);
    if (rc == 0) {
        rc = hm_stream_read_start(s, hm_health_read_cb);
    }
    if (rc != 0) {
        hm_health_finish(hc, 0, "cannot send the request: %s",
                         rc == HM_STREAM_ETLS ? hm_stream_error(s)
                                              : uv_strerror(rc));
    }
}


/* The timer: starts a check when idle, or ends the running one at its
 * deadline. */
static void
hm_health_timer_cb(uv_timer_t *t)
{
    hm_health_check_t *hc = t->data;
    int                rc;

    if (hc->state == HM_HC_CONNECTING || hc->state == HM_HC_WAITING) {
        hm_health_finish(hc, 0, "timed out after %d ms",
                         hc->conf->timeout_ms);
        return;
    }
    if (hc->state != HM_HC_IDLE) {
        return;
    }

    memset(&hc->stream, 0, sizeof(hc->stream));
    hc->stream.data = hc;
    hc->state = HM_HC_CONNECTING;
    uv_timer_start(&hc->timer, hm_health_timer_cb,
                   (uint64_t) hc->conf->timeout_ms, 0);
    rc = hm_stream_connect(&hc->stream, hc->loop, hc->peer->addr,
                           hc->conf->timeout_ms,
                           hc->u->tls.present ? &hc->u->tls : NULL,
                           hc->u->tls.present ? hm_upool_session(hc->peer)
                                              : NULL,
                           hm_health_connect_cb);
    if (rc != 0 && hm_stream_local_error(rc)) {
        /* Out of descriptors or memory here: no verdict on the server
         * (a failure would mark healthy servers down); try again at the
         * next interval.  The stream must still be closed. */
        hm_log_warn(NULL, "upstream %s server %s: health check not run: "
                    "%s", hc->u->name, hc->peer->text, uv_strerror(rc));
        hc->state = HM_HC_CLOSING;
        uv_timer_stop(&hc->timer);
        hm_stream_close(&hc->stream, hm_health_closed_cb);
    } else if (rc != 0) {
        /* cb will not run; the stream must still be closed. */
        hm_health_finish(hc, 0, "%s", uv_strerror(rc));
    }
}


/*
 * Builds the request of hc ("GET path HTTP/1.1", Host, Connection:
 * close).  Allocation failure aborts (start-up).
 */
static void
hm_health_build_request(hm_health_check_t *hc)
{
    char        hbuf[300];
    const char *host;
    int         n;

    host = hm_health_host_header(hbuf, sizeof(hbuf),
                                 hc->u->tls.present
                                 ? hc->u->tls.server_name : NULL,
                                 hc->peer->text);
    n = snprintf(NULL, 0,
                 "GET %s HTTP/1.1\r\nHost: %s\r\n"
                 "User-Agent: hamlyn-health-check/" HAMLYN_VERSION "\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 hc->conf->path, host);
    HM_ASSERT(n > 0);
    hc->request = hm_xmalloc((size_t) n + 1);
    snprintf(hc->request, (size_t) n + 1,
             "GET %s HTTP/1.1\r\nHost: %s\r\n"
             "User-Agent: hamlyn-health-check/" HAMLYN_VERSION "\r\n"
             "Accept: */*\r\nConnection: close\r\n\r\n",
             hc->conf->path, host);
    hc->request_len = (size_t) n;
}


int
hm_health_init_worker(hm_cycle_t *cycle, hm_worker_t *w)
{
    const hm_conf_t          *conf = cycle->conf;
    const hm_conf_upstream_t *u;
    hm_upstream_rt_t         *rt;
    hm_health_check_t        *hc;
    size_t                    i, j, n;
    uint64_t                  first;

    if (hm_health_checks != NULL) {
        return HM_OK;
    }
    n = 0;
    for (i = 0; i < conf->nupstreams; i++) {
        if (conf->upstreams[i].health_check.present) {
            n += conf->upstreams[i].nservers;
        }
    }
    if (n == 0) {
        return HM_OK;
    }

    hm_upstream_init_worker(cycle);
    hm_health_checks = hm_xcalloc(n, sizeof(hm_health_check_t));
    hm_health_nchecks = 0;

    for (i = 0; i < conf->nupstreams; i++) {
        u = &conf->upstreams[i];
        if (!u->health_check.present) {
            continue;
        }
        rt = hm_upstream_rt(u);
        for (j = 0; j < rt->npeers; j++) {
            hc = &hm_health_checks[hm_health_nchecks++];
            hc->peer = &rt->peers[j];
            hc->u = u;
            hc->conf = &u->health_check;
            hc->loop = w->loop;
            hc->tcp_only = !u->tls.present && u->plaintext_risk == NULL;
            hc->state = HM_HC_IDLE;
            if (!hc->tcp_only) {
                hm_health_build_request(hc);
            }
            uv_timer_init(w->loop, &hc->timer);
            hc->timer.data = hc;
            uv_unref((uv_handle_t *) &hc->timer);
            /* The first check soon after start, spread over workers and
             * servers so they do not all connect in the same tick. */
            first = ((uint64_t) w->slot * 97 + hm_health_nchecks * 31)
                    % hm_min((uint64_t) u->health_check.interval_s * 1000,
                             (uint64_t) 500);
            uv_timer_start(&hc->timer, hm_health_timer_cb, first, 0);
        }
    }

    hm_log_debug(NULL, "worker (slot %d): %zu health checks started",
                 w->slot, hm_health_nchecks);
    return HM_OK;
}


void
hm_health_exit_worker(hm_cycle_t *cycle, hm_worker_t *w)
{
    hm_health_check_t *hc;
    size_t             i;

    for (i = 0; i < hm_health_nchecks; i++) {
        hc = &hm_health_checks[i];
        if (hc->state == HM_HC_STOPPED) {
            continue;
        }
        uv_timer_stop(&hc->timer);
        if (hc->state == HM_HC_CONNECTING || hc->state == HM_HC_WAITING) {
            hm_stream_close(&hc->stream, hm_health_closed_cb);
        }
        hc->state = HM_HC_STOPPED;
    }
}

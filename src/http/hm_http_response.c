/*
 * hm_http_response.c: serialisation of message heads, both directions.
 *
 * Where it sits: hm_http_request.c parses a head (hm_http_parse.c), lets
 * the modules edit its headers (flags and additions), then calls these to
 * write the head for the other leg into one contiguous buffer, which goes
 * out in one hm_stream_write().  Heads are always rebuilt from the parsed
 * fields: hop-by-hop and Connection-listed headers are dropped, framing
 * headers are regenerated from the framing actually used, and no byte of
 * the received head is forwarded as is.
 */
#include "hm_core.h"
#include "hm_http.h"
#include "hm_http_int.h"

#include <stdio.h>
#include <time.h>

typedef struct {
    char  *p;
    char  *end;
    int    overflow;
} wbuf_t;

static void
put(wbuf_t *w, const char *s, size_t n)
{
    if (w->overflow || (size_t) (w->end - w->p) < n) {
        w->overflow = 1;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

#define put_lit(w, s) put(w, s, sizeof(s) - 1)

static void
put_header(wbuf_t *w, const char *name, size_t nlen, const char *value,
           size_t vlen)
{
    size_t n = nlen + vlen + 4;

    if (w->overflow || (size_t) (w->end - w->p) < n) {
        w->overflow = 1;
        return;
    }
    memcpy(w->p, name, nlen);
    w->p += nlen;
    *w->p++ = ':';
    *w->p++ = ' ';
    memcpy(w->p, value, vlen);
    w->p += vlen;
    *w->p++ = '\r';
    *w->p++ = '\n';
}

static void
put_u64(wbuf_t *w, uint64_t v)
{
    char tmp[24], *d = tmp + sizeof(tmp);

    /* Digit by digit: snprintf costs ~1% of a keep-alive request. */
    do {
        *--d = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, d, (size_t) (tmp + sizeof(tmp) - d));
}

/* Framing headers the proxy regenerates itself. */
static int
framing_header(const hm_http_header_t *h)
{
    return (h->name.len == 14
            && hm_strncaseeq(h->name.data, 14, "content-length", 14))
           || (h->name.len == 17
               && hm_strncaseeq(h->name.data, 17, "transfer-encoding", 17));
}

size_t
hm__http_build_upstream_head(const hm_http_msg_t *m, int body_kind,
                             const char *host, size_t host_len, char *out,
                             size_t cap)
{
    wbuf_t w = { out, out + cap, 0 };
    const hm_http_header_t *h;
    size_t i;

    put(&w, m->method_name.data, m->method_name.len);
    put_lit(&w, " ");
    if (m->target_slash) {
        put_lit(&w, "/");           /* absolute-form "http://h?q" */
    }
    put(&w, m->target.data, m->target.len);
    put_lit(&w, " HTTP/1.1\r\n");
    if (m->absolute) {
        /* The authority of an absolute-form target replaces Host. */
        put_header(&w, "Host", 4, m->authority.data, m->authority.len);
    }
    for (i = 0; i < m->nheaders; i++) {
        h = &m->headers[i];
        if (h->flags & (HM_HTTP_HDR_REMOVED | HM_HTTP_HDR_HOP)) {
            continue;
        }
        if (m->absolute && h->name.len == 4
            && hm_strncaseeq(h->name.data, 4, "host", 4))
        {
            continue;
        }
        if (framing_header(h)
            || (h->name.len == 6
                && hm_strncaseeq(h->name.data, 6, "expect", 6)))
        {
            continue;       /* regenerated below / answered by the proxy */
        }
        put_header(&w, h->name.data, h->name.len, h->value.data,
                   h->value.len);
    }
    if (m->host.len == 0 && host_len > 0) {
        put_header(&w, "Host", 4, host, host_len);
    }
    switch (body_kind) {
    case HM_HTTP_BODY_LENGTH:
        put_lit(&w, "Content-Length: ");
        put_u64(&w, (uint64_t) m->content_length);
        put_lit(&w, "\r\n");
        break;
    case HM_HTTP_BODY_CHUNKED:
        put_lit(&w, "Transfer-Encoding: chunked\r\n");
        break;
    default:
        if (m->content_length == 0) {
            put_lit(&w, "Content-Length: 0\r\n");
        }
    }
    if (m->upgrade) {
        put_lit(&w, "Connection: upgrade\r\n");
        put_header(&w, "Upgrade", 7, m->upgrade_proto.data,
                   m->upgrade_proto.len);
    }
    put_lit(&w, "\r\n");
    return w.overflow ? 0 : (size_t) (w.p - out);
}

size_t
hm__http_build_client_head(const hm_http_msg_t *resp, const hm_http_msg_t *req,
                           int client_chunked, int close, char *out,
                           size_t cap)
{
    wbuf_t w = { out, out + cap, 0 };
    const hm_http_header_t *h;
    const char *reason;
    size_t i, rlen;

    put_lit(&w, "HTTP/1.1 ");
    put_u64(&w, (uint64_t) resp->status);
    put_lit(&w, " ");
    if (resp->reason.len > 0) {
        put(&w, resp->reason.data, resp->reason.len);
    } else {
        reason = hm_http_reason(resp->status);
        rlen = strlen(reason);
        put(&w, reason, rlen);
    }
    put_lit(&w, "\r\n");
    for (i = 0; i < resp->nheaders; i++) {
        h = &resp->headers[i];
        if (h->flags & (HM_HTTP_HDR_REMOVED | HM_HTTP_HDR_HOP)) {
            continue;
        }
        if ((client_chunked || resp->status == 204) && framing_header(h)) {
            continue;       /* RFC 9110 8.6: no Content-Length in a 204 */
        }
        put_header(&w, h->name.data, h->name.len, h->value.data,
                   h->value.len);
    }
    if (client_chunked) {
        put_lit(&w, "Transfer-Encoding: chunked\r\n");
    }
    if (resp->status == 101) {
        put_lit(&w, "Connection: upgrade\r\n");
        if (resp->upgrade_proto.len > 0) {
            put_header(&w, "Upgrade", 7, resp->upgrade_proto.data,
                       resp->upgrade_proto.len);
        }
    } else if (close) {
        put_lit(&w, "Connection: close\r\n");
    } else if (req != NULL && req->version == 10) {
        put_lit(&w, "Connection: keep-alive\r\n");
    }
    put_lit(&w, "\r\n");
    return w.overflow ? 0 : (size_t) (w.p - out);
}

int
hm_http_header_add(hm_http_req_t *r, hm_http_msg_t *m, const char *name,
                   size_t nlen, const char *value, size_t vlen)
{
    hm_http_header_t *h;
    char *n, *v;

    if (m->nheaders >= m->max_headers) {
        return HM_ERROR;
    }
    n = hm_pool_alloc(r->pool, nlen + vlen + 2);
    if (n == NULL) {
        return HM_ERROR;
    }
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    v = n + nlen + 1;
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    h = &m->headers[m->nheaders++];
    h->name.data = n;
    h->name.len = nlen;
    h->value.data = v;
    h->value.len = vlen;
    h->flags = HM_HTTP_HDR_ADDED;
    return HM_OK;
}

int
hm_http_header_remove(hm_http_msg_t *m, const char *name, size_t nlen,
                      int prefix)
{
    hm_http_header_t *h;
    size_t i;
    int n = 0;

    for (i = 0; i < m->nheaders; i++) {
        h = &m->headers[i];
        if (h->flags & HM_HTTP_HDR_REMOVED) {
            continue;
        }
        if (prefix ? (h->name.len >= nlen
                      && hm_strncaseeq(h->name.data, nlen, name, nlen))
                   : hm_strncaseeq(h->name.data, h->name.len, name, nlen))
        {
            h->flags |= HM_HTTP_HDR_REMOVED;
            n++;
        }
    }
    return n;
}

static void
put2(char *p, int v)
{
    v = v < 0 ? 0 : v % 100;
    p[0] = (char) ('0' + v / 10);
    p[1] = (char) ('0' + v % 10);
}

void
hm__http_format_date(time_t t, char *out)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
                                     "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
                                        "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec" };
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999
        || tm.tm_year + 1900 < 0)
    {
        t = 0;
        gmtime_r(&t, &tm);
    }
    /* "Www, DD Mmm YYYY HH:MM:SS GMT", digit by digit (no locale, no
     * printf on the hot path). */
    memcpy(out, days[tm.tm_wday % 7], 3);
    memcpy(out + 3, ", ", 2);
    put2(out + 5, tm.tm_mday);
    out[7] = ' ';
    memcpy(out + 8, months[tm.tm_mon % 12], 3);
    out[11] = ' ';
    put2(out + 12, (tm.tm_year + 1900) / 100);
    put2(out + 14, (tm.tm_year + 1900) % 100);
    out[16] = ' ';
    put2(out + 17, tm.tm_hour);
    out[19] = ':';
    put2(out + 20, tm.tm_min);
    out[22] = ':';
    put2(out + 23, tm.tm_sec);
    memcpy(out + 25, " GMT", 5);    /* with the NUL */
}

const char *
hm__http_date(uint64_t now_ms)
{
    static char     cached[30];
    static uint64_t valid_until;    /* loop ms when the second ends */
    static int      have;
    struct timespec ts;

    if (have && now_ms < valid_until) {
        return cached;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    hm__http_format_date(ts.tv_sec, cached);
    valid_until = now_ms + 1000 - (uint64_t) (ts.tv_nsec / 1000000);
    have = 1;
    return cached;
}

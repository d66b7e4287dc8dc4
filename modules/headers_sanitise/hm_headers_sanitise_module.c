/*
 * hm_headers_sanitise_module.c: the first filter of every terminated
 * request (STYLE.md section 4 step 8) and the last one on its response.
 *
 * Where it sits: hm_http_request.c calls on_request after routing and
 * before the upstream request head is serialised, and on_response before
 * the client response head is serialised; both edit the parsed header
 * arrays (flags and additions, see hm_http.h).  Configuration comes from
 * the site's "headers" object (hm_conf_headers_t), decoded by the loader.
 *
 * Request side, in this order:
 *   1. hop-by-hop headers (RFC 9110 7.6.1) and every header named in
 *      Connection are removed (the parser flagged them);
 *   2. strip_request: the client's headers matching a name are removed
 *      (a trailing '*' matches a prefix, but never Content-Length,
 *      Transfer-Encoding or Host); it runs before steps 3 and 4 so that
 *      it never takes off the headers they set;
 *   3. client_cert_header: the client's copy is always removed; when the
 *      client presented a certificate that verified, the proxy sets it to
 *        subject="<RFC 2253 subject>"; sans="DNS:a,DNS:b"; sha256=<hex>
 *      (quotes and backslashes inside the subject are backslash-escaped,
 *      SAN types DNS, IP, email, URI; the SHA-256 is of the DER leaf);
 *   4. headers.forwarded: "replace" (default) drops the client's
 *      Forwarded, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and
 *      X-Real-IP, then sets X-Forwarded-For: <client ip>,
 *      X-Forwarded-Proto: https, X-Forwarded-Host: <Host> and
 *      Forwarded: for=<ip>;proto=https;host=<host> (RFC 7239: an IPv6
 *      address is quoted as for="[::1]", a host with a port is quoted);
 *      "append" extends the client's X-Forwarded-For and Forwarded with
 *      the client address and sets X-Forwarded-Proto/-Host only when
 *      absent; "off" leaves them alone;
 *   5. set_request: each name is removed, then set to the value.
 * Response side: strip_response (same patterns; a prefix never matches
 * Content-Length or Transfer-Encoding), then set_response.
 */
#include "hm_core.h"
#include "hm_conn.h"
#include "hm_module.h"
#include "hm_http.h"

#include <stdio.h>

/* Whether a prefix pattern must pass header h by: the framing headers
 * the proxy serialises from the parsed message (an "X-*"-style pattern
 * such as "Content-*" would otherwise unframe a response), and on a
 * request Host, which the upstream request needs.  The loader refuses
 * these names spelled out. */
static int
managed(const hm_http_header_t *h, int request)
{
    return hm_strncaseeq(h->name.data, h->name.len, "content-length", 14)
           || hm_strncaseeq(h->name.data, h->name.len, "transfer-encoding", 17)
           || (request && hm_strncaseeq(h->name.data, h->name.len, "host", 4));
}

static void
remove_pattern(hm_http_msg_t *m, const char *pat, int request)
{
    size_t n = strlen(pat), i;
    hm_http_header_t *h;

    if (n == 0 || pat[n - 1] != '*') {
        hm_http_header_remove(m, pat, n, 0);
        return;
    }
    n--;
    for (i = 0; i < m->nheaders; i++) {
        h = &m->headers[i];
        if (!(h->flags & HM_HTTP_HDR_REMOVED) && h->name.len >= n
            && hm_strncaseeq(h->name.data, n, pat, n) && !managed(h, request))
        {
            h->flags |= HM_HTTP_HDR_REMOVED;
        }
    }
}

/* The client address without port: "1.2.3.4" or "::1". */
static size_t
client_ip(const hm_conn_t *c, char *out, size_t cap)
{
    const char *p = c->peer_text, *e;
    size_t n;

    if (p[0] == '[') {
        e = strchr(p, ']');
        p++;
        n = e != NULL ? (size_t) (e - p) : strlen(p);
    } else {
        e = strrchr(p, ':');
        n = e != NULL ? (size_t) (e - p) : strlen(p);
    }
    n = hm_min(n, cap - 1);
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

static int
is_token(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z')
              || (ch >= 'A' && ch <= 'Z') || strchr("!#$%&'*+-.^_`|~", ch)))
        {
            return 0;
        }
    }
    return n > 0;
}

static void
add(hm_http_req_t *r, hm_http_msg_t *m, const char *name, const char *v,
    size_t vlen)
{
    hm_http_header_add(r, m, name, strlen(name), v, vlen);
}

/*
 * "append": replaces every live field name (lower-case) with one field
 * Name: <their values, comma separated>, <own>.  The joined list is built
 * in the request pool whatever its length (a fixed buffer would drop the
 * values that did not fit: the ones a trusted proxy appended last).
 */
static void
append_list(hm_http_req_t *r, hm_http_msg_t *m, const char *lname,
            const char *name, const char *own, size_t olen)
{
    size_t n = 0, total = olen, nlen = strlen(lname);
    char *buf;
    int i;

    for (i = hm_http_header_find(m, lname, nlen, 0); i >= 0;
         i = hm_http_header_find(m, lname, nlen, (size_t) i + 1))
    {
        total += m->headers[i].value.len + 2;
    }
    buf = hm_pool_alloc(r->pool, total + 1);
    if (buf != NULL) {
        for (i = hm_http_header_find(m, lname, nlen, 0); i >= 0;
             i = hm_http_header_find(m, lname, nlen, (size_t) i + 1))
        {
            const hm_http_header_t *h = &m->headers[i];
            memcpy(buf + n, h->value.data, h->value.len);
            n += h->value.len;
            memcpy(buf + n, ", ", 2);
            n += 2;
        }
        memcpy(buf + n, own, olen);
        n += olen;
    }
    hm_http_header_remove(m, lname, nlen, 0);
    if (buf != NULL) {
        add(r, m, name, buf, n);
    } else {
        add(r, m, name, own, olen);
    }
}

/* Appends len bytes at buf + *n; the caller sized buf for the worst case. */
static void
fwd_put(char *buf, size_t *n, const char *p, size_t len)
{
    memcpy(buf + *n, p, len);
    *n += len;
}

static void
forwarded(hm_http_req_t *r, int mode)
{
    hm_http_msg_t *m = r->req;
    char ip[64], fwd[1024];
    size_t iplen, n;
    const char *host = m->host.data;
    size_t hlen = m->host.len;
    int v6, tok;

    if (hlen == 0) {
        host = r->conn->sni;
        hlen = r->conn->sni_len;
    }
    iplen = client_ip(r->conn, ip, sizeof(ip));
    v6 = memchr(ip, ':', iplen) != NULL;

    /* RFC 7239 forwarded-element of this hop, built with memcpy (no
     * printf per request): at most 6 + 63 + 14 + 7 + 511 + 1 bytes. */
    n = 0;
    fwd_put(fwd, &n, v6 ? "for=\"[" : "for=", v6 ? 6 : 4);
    fwd_put(fwd, &n, ip, iplen);
    fwd_put(fwd, &n, v6 ? "]\";proto=https" : ";proto=https", v6 ? 14 : 12);
    if (hlen > 0 && hlen < 512) {
        tok = is_token(host, hlen);
        fwd_put(fwd, &n, tok ? ";host=" : ";host=\"", tok ? 6 : 7);
        fwd_put(fwd, &n, host, hlen);
        if (!tok) {
            fwd_put(fwd, &n, "\"", 1);
        }
    }
    fwd[n] = '\0';

    if (mode == HM_FORWARDED_REPLACE) {
        hm_http_header_remove(m, "forwarded", 9, 0);
        hm_http_header_remove(m, "x-forwarded-for", 15, 0);
        hm_http_header_remove(m, "x-forwarded-proto", 17, 0);
        hm_http_header_remove(m, "x-forwarded-host", 16, 0);
        hm_http_header_remove(m, "x-real-ip", 9, 0);
        add(r, m, "X-Forwarded-For", ip, iplen);
        add(r, m, "X-Forwarded-Proto", "https", 5);
        if (hlen > 0) {
            add(r, m, "X-Forwarded-Host", host, hlen);
        }
        add(r, m, "Forwarded", fwd, n);
        return;
    }

    /* append: trust what the client (a proxy in front) sent, extend it. */
    append_list(r, m, "x-forwarded-for", "X-Forwarded-For", ip, iplen);
    append_list(r, m, "forwarded", "Forwarded", fwd, n);
    if (hm_http_header_find(m, "x-forwarded-proto", 17, 0) < 0) {
        add(r, m, "X-Forwarded-Proto", "https", 5);
    }
    if (hlen > 0 && hm_http_header_find(m, "x-forwarded-host", 16, 0) < 0) {
        add(r, m, "X-Forwarded-Host", host, hlen);
    }
}

/* client_cert_header value: subject="..."; sans="DNS:a,DNS:b"; sha256=HEX */
static void
client_cert(hm_http_req_t *r, const char *name)
{
    char subject[512], sans[1024], sha[65], val[2048];
    size_t n = 0, i;

    hm_http_header_remove(r->req, name, strlen(name), 0);
    memset(sha, 0, sizeof(sha));
    if (r->client == NULL
        || !hm_stream_peer_cert_info(r->client, subject, sizeof(subject), sans,
                                     sizeof(sans), sha))
    {
        return;
    }
    n += (size_t) snprintf(val, sizeof(val), "subject=\"");
    for (i = 0; subject[i] != '\0' && n + 4 < sizeof(val) / 2; i++) {
        unsigned char ch = (unsigned char) subject[i];
        if (ch == '"' || ch == '\\') {
            val[n++] = '\\';
        }
        val[n++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char) ch;
    }
    n += (size_t) snprintf(val + n, sizeof(val) - n, "\"; sans=\"");
    for (i = 0; sans[i] != '\0' && n + 4 < sizeof(val) - 80; i++) {
        unsigned char ch = (unsigned char) sans[i];
        if (ch == ' ' && i > 0 && sans[i - 1] == ',') {
            continue;                   /* "DNS:a, DNS:b" -> "DNS:a,DNS:b" */
        }
        if (ch == '"' || ch == '\\') {
            val[n++] = '\\';
        }
        val[n++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char) ch;
    }
    n += (size_t) snprintf(val + n, sizeof(val) - n, "\"; sha256=%s", sha);
    hm_http_header_add(r, r->req, name, strlen(name), val,
                       hm_min(n, sizeof(val) - 1));
}

static int
sanitise_request(void *p)
{
    hm_http_req_t *r = p;
    const hm_conf_headers_t *h = &r->site->headers;
    hm_http_msg_t *m = r->req;
    size_t i;

    for (i = 0; i < m->nheaders; i++) {
        if (m->headers[i].flags & HM_HTTP_HDR_HOP) {
            m->headers[i].flags |= HM_HTTP_HDR_REMOVED;
        }
    }
    /* strip_request applies to what the client sent: a pattern such as
     * "X-*" must not take off the headers the proxy sets next. */
    for (i = 0; i < h->nstrip_request; i++) {
        remove_pattern(m, h->strip_request[i], 1);
    }
    if (h->client_cert_header != NULL) {
        client_cert(r, h->client_cert_header);
    }
    if (h->forwarded != HM_FORWARDED_OFF) {
        forwarded(r, h->forwarded);
    }
    for (i = 0; i < h->nset_request; i++) {
        hm_http_header_remove(m, h->set_request[i].name,
                              strlen(h->set_request[i].name), 0);
        add(r, m, h->set_request[i].name, h->set_request[i].value,
            strlen(h->set_request[i].value));
    }
    return HM_OK;
}

static int
sanitise_response(void *p)
{
    hm_http_req_t *r = p;
    const hm_conf_headers_t *h = &r->site->headers;
    hm_http_msg_t *m = r->resp;
    size_t i;

    if (m == NULL) {
        return HM_OK;
    }
    for (i = 0; i < h->nstrip_response; i++) {
        remove_pattern(m, h->strip_response[i], 0);
    }
    for (i = 0; i < h->nset_response; i++) {
        hm_http_header_remove(m, h->set_response[i].name,
                              strlen(h->set_response[i].name), 0);
        add(r, m, h->set_response[i].name, h->set_response[i].value,
            strlen(h->set_response[i].value));
    }
    return HM_OK;
}

hm_module_t hm_headers_sanitise_module = {
    HM_MODULE_HEADER,
    "headers_sanitise",
    -1,
    NULL,                   /* postconfig */
    NULL, NULL, NULL, NULL, /* lifecycle */
    NULL,                   /* on_accept */
    NULL,                   /* on_client_hello */
    sanitise_request,
    sanitise_response,
    NULL                    /* on_log */
};

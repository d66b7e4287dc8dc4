/*
 * hm_http_parse.c: strict HTTP/1.1 head parsing over http-parser, and the
 * chunked decoder (see hm_http_parse.h for where this sits).
 *
 * http-parser 2.9.4 as Debian builds it (HTTP_PARSER_STRICT=0) accepts
 * bare LF line endings, obs-fold, spaces inside and after header names,
 * HTTP/0.9 and any version digits, and ignores chunk extensions entirely.
 * So: the head scanner below only lets complete CRLF-terminated heads
 * without folding through, http-parser tokenises them in one call (paused
 * at the end of the head: bodies never go through it), and every token is
 * then checked here against RFC 9110/9112 grammar.  Anything ambiguous is
 * an error: a proxy that is stricter than its backends cannot be used to
 * smuggle requests past them.
 */
#include "hm_core.h"
#include "hm_http_parse.h"

#include <arpa/inet.h>

#include <http_parser.h>

/* RFC 9110 tchar. */
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

#define is_tchar(c)  (tchar[(uint8_t) (c)])
/* field-vchar / SP / HTAB (obs-text allowed in values). */
#define is_vchar(c)  ((uint8_t) (c) > 0x20 && (uint8_t) (c) != 0x7f)
#define is_fchar(c)  (is_vchar(c) || (c) == ' ' || (c) == '\t')
#define is_ows(c)    ((c) == ' ' || (c) == '\t')

static http_parser_settings settings_req;
static http_parser_settings settings_resp;
static int parser_ready;

typedef struct {
    hm_http_msg_t *m;
    int            in_value;   /* last callback was a value */
    int            overflow;
} parse_ctx_t;

static int
on_url(http_parser *p, const char *at, size_t len)
{
    parse_ctx_t *x = p->data;

    if (x->m->target.len == 0) {
        x->m->target.data = at;
        x->m->target.len = len;
    } else if (x->m->target.data + x->m->target.len == at) {
        x->m->target.len += len;
    } else {
        return 1;
    }
    return 0;
}

static int
on_status(http_parser *p, const char *at, size_t len)
{
    parse_ctx_t *x = p->data;

    if (x->m->reason.len == 0) {
        x->m->reason.data = at;
        x->m->reason.len = len;
    } else if (x->m->reason.data + x->m->reason.len == at) {
        x->m->reason.len += len;
    } else {
        return 1;
    }
    return 0;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    parse_ctx_t *x = p->data;
    hm_http_msg_t *m = x->m;
    hm_http_header_t *h;

    if (m->nheaders > 0 && !x->in_value) {
        h = &m->headers[m->nheaders - 1];
        if (h->name.data + h->name.len != at) {
            return 1;
        }
        h->name.len += len;
        return 0;
    }
    /* A field line starts right after a CRLF.  http-parser (not strict)
     * takes a bare CR and whatever byte follows it for a line end: "X:
     * \rTransfer-Encoding: chunked" became a field "ransfer-Encoding".
     * The start line's CRLF is before the first field. */
    if (at[-1] != '\n' || at[-2] != '\r') {
        m->error = "bare CR in the head";
        return 1;
    }
    if (m->nheaders >= m->max_headers) {
        x->overflow = 1;
        return 1;
    }
    h = &m->headers[m->nheaders++];
    h->name.data = at;
    h->name.len = len;
    h->value.data = at + len;   /* empty value until on_header_value */
    h->value.len = 0;
    h->flags = 0;
    x->in_value = 0;
    return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    parse_ctx_t *x = p->data;
    hm_http_header_t *h;

    if (x->m->nheaders == 0) {
        return 1;
    }
    h = &x->m->headers[x->m->nheaders - 1];
    if (x->in_value) {
        /* A second piece of the same value: obs-fold (refused by the
         * scanner already) or a fragment; only contiguous ones join. */
        if (h->value.data + h->value.len != at) {
            return 1;
        }
        h->value.len += len;
    } else {
        h->value.data = at;
        h->value.len = len;
    }
    x->in_value = 1;
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    /* Stop here: the body is framed by the caller, never by http-parser. */
    http_parser_pause(p, 1);
    return 0;
}

static void
parser_setup(void)
{
    memset(&settings_req, 0, sizeof(settings_req));
    settings_req.on_url = on_url;
    settings_req.on_header_field = on_header_field;
    settings_req.on_header_value = on_header_value;
    settings_req.on_headers_complete = on_headers_complete;
    settings_resp = settings_req;
    settings_resp.on_url = NULL;
    settings_resp.on_status = on_status;
    /* Our own limit (max_header_bytes) applies before http-parser runs. */
    http_parser_set_max_header_size(16 * 1024 * 1024);
    parser_ready = 1;
}

/*
 * An incomplete request line buf[skip..len) (no LF yet), of which
 * buf[skip..from) was passed by an earlier call: 1 when it can no
 * longer become a request line, so that binary junk, a TLS ClientHello or
 * an HTTP/2 frame on a plaintext port gets its 400 at once instead of
 * after header_timeout_ms.  The method (the bytes before the first SP,
 * at most 16 looked at) must be tchar, and the new bytes printable ASCII
 * or SP, a CR only as the last byte.  Only the AGAIN path of a request
 * head runs this: a head that arrives whole never does.
 */
static int
start_line_junk(const char *buf, size_t skip, size_t from, size_t len)
{
    size_t  i;
    uint8_t c;

    for (i = skip; i < len && i < skip + 16 && buf[i] != ' '; i++) {
        if (!is_tchar(buf[i]) && !(buf[i] == '\r' && i == len - 1)) {
            return 1;
        }
    }
    for (i = from; i < len; i++) {
        c = (uint8_t) buf[i];
        if ((c < 0x20 || c > 0x7e) && !(c == '\r' && i == len - 1)) {
            return 1;
        }
    }
    return 0;
}

/*
 * The same for an incomplete header line of a request (the start line is
 * done), new bytes buf[from..len): 1 when a control character other than
 * HTAB is there (a CR only as the last byte), or the CR that ended the
 * previous piece is not followed by LF.  No field line may hold those, so
 * binary junk after a request line is refused at once too.
 */
static int
field_line_junk(const char *buf, size_t from, size_t len)
{
    size_t  i;
    uint8_t c;

    if (from > 0 && buf[from - 1] == '\r') {
        return 1;
    }
    for (i = from; i < len; i++) {
        c = (uint8_t) buf[i];
        if ((c < 0x20 && c != '\t' && !(c == '\r' && i == len - 1))
            || c == 0x7f)
        {
            return 1;
        }
    }
    return 0;
}

/*
 * Finds the end of the head: the first empty line.  Every LF must follow a
 * CR, a CR must be followed by LF, and a line may not start with SP/HTAB
 * (obs-fold, or whitespace before the first header).  Leading empty lines
 * before a request line are skipped (RFC 9112 2.2), at most 8 of them.
 */
static int
scan_head(hm_http_msg_t *m, hm_http_scan_t *sc, const char *buf, size_t len,
          size_t *end)
{
    const char *lf;
    size_t i;

    while (sc->pos == sc->skip && sc->skip < len
           && (buf[sc->skip] == '\r' || buf[sc->skip] == '\n'))
    {
        if (m->type != HM_HTTP_REQUEST || sc->skip >= 16) {
            m->error = "empty line before the start line";
            return HM_ERROR;
        }
        if (sc->skip + 1 >= len) {
            return HM_AGAIN;
        }
        if (buf[sc->skip] != '\r' || buf[sc->skip + 1] != '\n') {
            m->error = "bare LF or CR line ending";
            return HM_ERROR;
        }
        sc->skip += 2;
        sc->pos = sc->skip;
    }

    for (;;) {
        if (sc->pos >= len) {
            return HM_AGAIN;
        }
        lf = memchr(buf + sc->pos, '\n', len - sc->pos);
        if (lf == NULL) {
            if (m->type == HM_HTTP_REQUEST
                && !sc->line_done
                && start_line_junk(buf, sc->skip,
                                   sc->pos > sc->skip ? sc->pos - 1 : sc->pos,
                                   len))
            {
                m->error = "malformed request line";
                return HM_ERROR;
            }
            if (m->type == HM_HTTP_REQUEST && sc->line_done
                && field_line_junk(buf, sc->pos, len))
            {
                m->error = "control character in the request head";
                return HM_ERROR;
            }
            sc->pos = len;
            return HM_AGAIN;
        }
        i = (size_t) (lf - buf);
        sc->line_done = 1;
        if (i == sc->skip || buf[i - 1] != '\r') {
            m->error = "bare LF line ending";
            return HM_ERROR;
        }
        if (i + 1 >= len) {
            sc->pos = i;        /* look at this LF again with more bytes */
            return HM_AGAIN;
        }
        switch (buf[i + 1]) {
        case '\r':
            if (i + 2 >= len) {
                sc->pos = i;
                return HM_AGAIN;
            }
            if (buf[i + 2] != '\n') {
                m->error = "bare CR line ending";
                return HM_ERROR;
            }
            *end = i + 3;
            return HM_OK;
        case ' ':
        case '\t':
            m->error = "obs-fold (line folding) in the head";
            return HM_ERROR;
        default:
            sc->pos = i + 1;
        }
    }
}

static int
str_caseeq(hm_str_t s, const char *lit)
{
    return hm_strncaseeq(s.data, s.len, lit, strlen(lit));
}

int
hm_http_is_hop_by_hop(const char *name, size_t len)
{
    switch (len) {
    case 2:
        return hm_strncaseeq(name, len, "te", 2);
    case 7:
        return hm_strncaseeq(name, len, "trailer", 7)
               || hm_strncaseeq(name, len, "upgrade", 7);
    case 10:
        return hm_strncaseeq(name, len, "connection", 10)
               || hm_strncaseeq(name, len, "keep-alive", 10);
    case 16:
        return hm_strncaseeq(name, len, "proxy-connection", 16);
    case 17:
        return hm_strncaseeq(name, len, "transfer-encoding", 17);
    case 18:
        return hm_strncaseeq(name, len, "proxy-authenticate", 18);
    case 19:
        return hm_strncaseeq(name, len, "proxy-authorization", 19);
    }
    return 0;
}

int
hm_http_header_find(const hm_http_msg_t *m, const char *name, size_t len,
                    size_t from)
{
    size_t i;

    for (i = from; i < m->nheaders; i++) {
        if (!(m->headers[i].flags & HM_HTTP_HDR_REMOVED)
            && hm_strncaseeq(m->headers[i].name.data, m->headers[i].name.len,
                             name, len))
        {
            return (int) i;
        }
    }
    return -1;
}

/* Checks the request line's shape byte by byte: METHOD SP target SP
 * HTTP/1.x CRLF.  http-parser is lenient about several of these. */
static int
check_request_line(hm_http_msg_t *m, const char *p, const char *end)
{
    const char *s = p;

    while (p < end && is_tchar(*p)) {
        p++;
    }
    if (p == s || p >= end || *p != ' ') {
        m->error = "malformed method";
        return HM_ERROR;
    }
    m->method_name.data = s;
    m->method_name.len = (size_t) (p - s);
    p++;
    s = p;
    while (p < end && (uint8_t) *p > 0x20 && (uint8_t) *p < 0x7f) {
        p++;
    }
    if (p == s || p >= end || *p != ' ') {
        m->error = "invalid request-target";
        return HM_ERROR;
    }
    p++;
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3) */
    if (end - p != 10 || memcmp(p, "HTTP/", 5) != 0
        || p[5] < '0' || p[5] > '9' || p[6] != '.'
        || p[7] < '0' || p[7] > '9'
        || p[8] != '\r' || p[9] != '\n')
    {
        m->error = "malformed HTTP version";
        return HM_ERROR;
    }
    if (p[5] != '1') {
        /* A well-formed version of another major (HTTP/2.0 as a request
         * line, HTTP/0.9 spelled out): RFC 9110 15.6.6, as nginx. */
        m->error_status = 505;
        m->error = "unsupported HTTP version";
        return HM_ERROR;
    }
    /* HTTP/1.2 and up are served as HTTP/1.1, the highest minor version
     * of the major we implement (RFC 9112 2.3); the request goes
     * upstream with our own "HTTP/1.1". */
    return HM_OK;
}

static int check_host(hm_str_t v);

/*
 * Absolute-form (RFC 9112 3.2.2): "http://" or "https://" (any case),
 * an authority without userinfo, then an optional path and query.  On
 * success m->target becomes the origin-form part ("/" when the URI has
 * no path; starting with '?': target_slash) and m->authority the
 * authority.
 */
static int
check_absolute(hm_http_msg_t *m)
{
    const char *t = m->target.data, *a, *e, *end = t + m->target.len;
    size_t skip;

    if (m->target.len > 7 && hm_strncaseeq(t, 7, "http://", 7)) {
        skip = 7;
    } else if (m->target.len > 8 && hm_strncaseeq(t, 8, "https://", 8)) {
        skip = 8;
    } else {
        /* authority-form (CONNECT) and anything else: a reverse proxy
         * serves origin-form and absolute-form only. */
        m->error = "request-target neither in origin-form nor absolute-form";
        return HM_ERROR;
    }
    a = t + skip;
    for (e = a; e < end && *e != '/' && *e != '?'; e++) {
        if (*e == '#') {
            break;
        }
    }
    m->authority.data = a;
    m->authority.len = (size_t) (e - a);
    if (m->authority.len == 0 || check_host(m->authority) != HM_OK) {
        m->error = "invalid authority in an absolute-form request-target";
        return HM_ERROR;
    }
    m->absolute = 1;
    if (e == end) {
        m->target.data = "/";       /* "http://host": the path is "/" */
        m->target.len = 1;
        return HM_OK;
    }
    m->target.data = e;
    m->target.len = (size_t) (end - e);
    m->target_slash = e[0] != '/';  /* "http://host?q" */
    return HM_OK;
}

static int
check_target(hm_http_msg_t *m)
{
    const char *q;
    size_t i;

    if (m->target.len == 0) {
        m->error = "empty request-target";
        return HM_ERROR;
    }
    if (m->target.data[0] == '*' && m->target.len == 1) {
        if (m->method != HM_HTTP_M_OPTIONS) {
            m->error = "asterisk-form target outside OPTIONS";
            return HM_ERROR;
        }
        m->path = m->target;
        return HM_OK;
    }
    if (m->method == HM_HTTP_M_CONNECT) {
        m->error = "CONNECT is not served by a reverse proxy";
        return HM_ERROR;
    }
    if (m->target.data[0] != '/' && check_absolute(m) != HM_OK) {
        return HM_ERROR;
    }
    for (i = 0; i < m->target.len; i++) {
        uint8_t c = (uint8_t) m->target.data[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') {
            m->error = "invalid character in request-target";
            return HM_ERROR;
        }
    }
    q = memchr(m->target.data, '?', m->target.len);
    m->path.data = m->target.data;
    if (q != NULL) {
        m->path.len = (size_t) (q - m->target.data);
        m->query.data = q + 1;
        m->query.len = m->target.len - m->path.len - 1;
    } else {
        m->path.len = m->target.len;
    }
    return HM_OK;
}

static int
parse_content_length(hm_str_t v, int64_t *out)
{
    int64_t n = 0;
    size_t i;

    if (v.len == 0 || v.len > 18) {
        return HM_ERROR;
    }
    for (i = 0; i < v.len; i++) {
        if (v.data[i] < '0' || v.data[i] > '9') {
            return HM_ERROR;
        }
        n = n * 10 + (v.data[i] - '0');
    }
    *out = n;
    return HM_OK;
}

/*
 * Host header and absolute-form authority (RFC 9112 3.2, RFC 3986 3.2.2
 * without userinfo): reg-name or IPv4 made of token characters, or an
 * IPv6 literal in brackets (a valid IPv6 address: not "[1.2.3.4]" or
 * "[1::2::3]"), then optionally ':' and a port of at most 5 digits up to
 * 65535 (empty allowed).  Anything else is the "invalid field value" RFC
 * 9112 answers with 400: an unclosed '[', a second ':' outside brackets,
 * a port with letters.
 */
static int
check_host(hm_str_t v)
{
    size_t          i = 0, digits;
    uint32_t        port;
    uint8_t         c;
    char            ip[INET6_ADDRSTRLEN];
    struct in6_addr a6;

    if (v.len == 0 || v.len > 255) {
        return HM_ERROR;
    }
    if (v.data[0] == '[') {
        for (i = 1; i < v.len && v.data[i] != ']'; i++) {
            c = (uint8_t) v.data[i];
            if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a'
                                            && (c | 0x20) <= 'f')
                  || c == ':' || c == '.'))
            {
                return HM_ERROR;
            }
        }
        if (i == v.len || i == 1 || i - 1 >= sizeof(ip)) {
            return HM_ERROR;            /* no ']', "[]", or too long */
        }
        memcpy(ip, v.data + 1, i - 1);
        ip[i - 1] = '\0';
        if (inet_pton(AF_INET6, ip, &a6) != 1) {
            return HM_ERROR;            /* "[1.2.3.4]", "[1::2::3]" */
        }
        i++;

    } else {
        for ( ; i < v.len && v.data[i] != ':'; i++) {
            c = (uint8_t) v.data[i];
            if (!is_tchar(c) || c == '#') {
                return HM_ERROR;
            }
        }
        if (i == 0) {
            return HM_ERROR;            /* ":443" */
        }
    }
    if (i == v.len) {
        return HM_OK;
    }
    if (v.data[i] != ':') {
        return HM_ERROR;                /* "[::1]x" */
    }
    port = 0;
    for (i++, digits = 0; i < v.len; i++, digits++) {
        c = (uint8_t) v.data[i];
        if (c < '0' || c > '9' || digits == 5) {
            return HM_ERROR;
        }
        port = port * 10 + (uint32_t) (c - '0');
    }
    return port <= 65535 ? HM_OK : HM_ERROR;
}

/* Walks a comma-separated token list (Connection); calls back per token. */
static void
connection_tokens(hm_http_msg_t *m, hm_str_t v)
{
    const char *p = v.data, *end = v.data + v.len, *s;
    size_t n, i;

    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ',')) {
            p++;
        }
        s = p;
        while (p < end && *p != ',' && !is_ows(*p)) {
            p++;
        }
        n = (size_t) (p - s);
        if (n == 0) {
            continue;
        }
        if (hm_strncaseeq(s, n, "close", 5)) {
            m->conn_close = 1;
        } else if (hm_strncaseeq(s, n, "keep-alive", 10)) {
            m->keep_alive = 1;
        } else if (hm_strncaseeq(s, n, "upgrade", 7)) {
            m->conn_upgrade = 1;
        } else if (hm_strncaseeq(s, n, "content-length", 14)
                   || hm_strncaseeq(s, n, "transfer-encoding", 17)
                   || hm_strncaseeq(s, n, "host", 4))
        {
            /* Fields meant for every recipient (RFC 9110 7.6.1): the
             * message is framed (and, for a request, addressed) by them,
             * so naming them in Connection drops nothing; dropping them
             * would unframe the message we forward. */
            continue;
        } else {
            /* Connection-listed: hop-by-hop for this hop only. */
            for (i = 0; i < m->nheaders; i++) {
                if (hm_strncaseeq(m->headers[i].name.data,
                                  m->headers[i].name.len, s, n))
                {
                    m->headers[i].flags |= HM_HTTP_HDR_HOP;
                }
            }
        }
    }
}

static int
method_id(hm_str_t n)
{
    switch (n.len) {
    case 3:
        if (memcmp(n.data, "GET", 3) == 0) return HM_HTTP_M_GET;
        if (memcmp(n.data, "PUT", 3) == 0) return HM_HTTP_M_PUT;
        break;
    case 4:
        if (memcmp(n.data, "HEAD", 4) == 0) return HM_HTTP_M_HEAD;
        if (memcmp(n.data, "POST", 4) == 0) return HM_HTTP_M_POST;
        break;
    case 5:
        if (memcmp(n.data, "PATCH", 5) == 0) return HM_HTTP_M_PATCH;
        if (memcmp(n.data, "TRACE", 5) == 0) return HM_HTTP_M_TRACE;
        break;
    case 6:
        if (memcmp(n.data, "DELETE", 6) == 0) return HM_HTTP_M_DELETE;
        break;
    case 7:
        if (memcmp(n.data, "OPTIONS", 7) == 0) return HM_HTTP_M_OPTIONS;
        if (memcmp(n.data, "CONNECT", 7) == 0) return HM_HTTP_M_CONNECT;
        break;
    }
    return HM_HTTP_M_OTHER;
}

/* Validates the fields and derives framing and connection semantics. */
static int
check_fields(hm_http_msg_t *m, const char *head_end)
{
    hm_http_header_t *h;
    int have_cl = 0, have_te = 0, have_host = 0;
    size_t i, j;
    const char *q, *line_end;

    for (i = 0; i < m->nheaders; i++) {
        h = &m->headers[i];
        if (h->name.len == 0) {
            m->error = "empty header name";
            return HM_ERROR;
        }
        for (j = 0; j < h->name.len; j++) {
            if (!is_tchar(h->name.data[j])) {
                m->error = "invalid character in a header name";
                return HM_ERROR;
            }
        }
        /* http-parser trims leading OWS; trim the trailing OWS here. */
        while (h->value.len > 0 && is_ows(h->value.data[h->value.len - 1])) {
            h->value.len--;
        }
        while (h->value.len > 0 && is_ows(h->value.data[0])) {
            h->value.data++;
            h->value.len--;
        }
        for (j = 0; j < h->value.len; j++) {
            if (!is_fchar(h->value.data[j])) {
                m->error = "invalid character (NUL, CR, LF or control) in "
                           "a header value";
                return HM_ERROR;
            }
        }
        /* The line is name ':' OWS value OWS CRLF and nothing else: what
         * http-parser skips around the value (it takes a bare CR and the
         * byte after it for a line end or a fold) must be OWS.  The line
         * ends before the next field (on_header_field checked the CRLF)
         * or before the final CRLF CRLF. */
        line_end = (i + 1 < m->nheaders ? m->headers[i + 1].name.data
                                        : head_end - 2) - 2;
        q = h->name.data + h->name.len;
        if (q >= line_end || *q != ':') {
            m->error = "malformed header line";
            return HM_ERROR;
        }
        for (q++; q < line_end; q++) {
            if (h->value.len > 0 && q == h->value.data) {
                q += h->value.len;
                if (q >= line_end) {
                    break;
                }
            }
            if (!is_ows(*q)) {
                m->error = "bare CR in the head";
                return HM_ERROR;
            }
        }
        if (hm_http_is_hop_by_hop(h->name.data, h->name.len)) {
            h->flags |= HM_HTTP_HDR_HOP;
        }

        switch (h->name.len) {
        case 4:
            if (str_caseeq(h->name, "host")) {
                if (have_host++) {
                    m->error = "several Host headers";
                    return HM_ERROR;
                }
                if (check_host(h->value) != HM_OK) {
                    m->error = "invalid Host header";
                    return HM_ERROR;
                }
                m->host = h->value;
            }
            break;
        case 6:
            if (str_caseeq(h->name, "expect") && m->type == HM_HTTP_REQUEST) {
                if (!str_caseeq(h->value, "100-continue")) {
                    m->error_status = 417;
                    m->error = "unsupported Expect";
                    return HM_ERROR;
                }
                m->expect_continue = 1;
            }
            break;
        case 7:
            if (str_caseeq(h->name, "upgrade")) {
                m->upgrade_proto = h->value;
            }
            break;
        case 10:
            if (str_caseeq(h->name, "connection")) {
                /* tokens handled below, once every header is known */
            }
            break;
        case 14:
            if (str_caseeq(h->name, "http2-settings")) {
                /* Connection-specific (RFC 9113 3.2.1, h2c upgrade):
                 * never forwarded. */
                h->flags |= HM_HTTP_HDR_HOP;
            }
            if (str_caseeq(h->name, "content-length")) {
                if (have_cl++) {
                    m->error = "several Content-Length headers";
                    return HM_ERROR;
                }
                if (parse_content_length(h->value, &m->content_length)
                    != HM_OK)
                {
                    m->error = "malformed Content-Length";
                    return HM_ERROR;
                }
            }
            break;
        case 17:
            if (str_caseeq(h->name, "transfer-encoding")) {
                if (have_te++) {
                    m->error = "several Transfer-Encoding headers";
                    return HM_ERROR;
                }
                if (!str_caseeq(h->value, "chunked")) {
                    m->error = "Transfer-Encoding other than a single "
                               "\"chunked\"";
                    return HM_ERROR;
                }
                m->chunked = 1;
            }
            break;
        }
    }

    if (have_cl && have_te) {
        m->error = "Content-Length together with Transfer-Encoding";
        return HM_ERROR;
    }
    if (have_te && m->version == 10) {
        m->error = "Transfer-Encoding in an HTTP/1.0 message";
        return HM_ERROR;
    }
    if (m->type == HM_HTTP_REQUEST && m->version == 11 && !have_host) {
        m->error = "HTTP/1.1 request without Host";
        return HM_ERROR;
    }
    if (m->absolute) {
        m->host = m->authority;     /* RFC 9112 3.2.2: Host is ignored */
    }

    m->keep_alive = 0;
    for (i = 0; i < m->nheaders; i++) {
        h = &m->headers[i];
        if (h->name.len == 10 && str_caseeq(h->name, "connection")) {
            connection_tokens(m, h->value);
        }
    }
    if (m->version == 11) {
        m->keep_alive = !m->conn_close;
    } else {
        m->keep_alive = m->keep_alive && !m->conn_close;
    }
    /* Only WebSocket is tunnelled: any other protocol (h2c above all,
     * which would let a client talk HTTP/2 to the upstream past routing
     * and header sanitising) is a normal request whose Upgrade header,
     * hop-by-hop, is dropped. */
    m->upgrade = m->conn_upgrade && m->version == 11
                 && str_caseeq(m->upgrade_proto, "websocket");
    return HM_OK;
}

int
hm_http_parse_head(hm_http_msg_t *m, hm_http_scan_t *sc, const char *buf,
                   size_t len, size_t max_bytes)
{
    http_parser hp;
    parse_ctx_t x;
    size_t end = 0, n, line_end;
    const char *crlf;
    int rc, type = m->type;
    hm_http_header_t *headers = m->headers;
    size_t max_headers = m->max_headers;

    if (hm_unlikely(!parser_ready)) {
        parser_setup();
    }
    rc = scan_head(m, sc, buf, len > max_bytes ? max_bytes : len, &end);
    if (rc == HM_AGAIN) {
        if (len >= max_bytes) {
            m->error_status = 431;
            m->error = "request head larger than max_header_bytes";
            return HM_ERROR;
        }
        return HM_AGAIN;
    }
    if (rc == HM_ERROR) {
        m->error_status = 400;
        return HM_ERROR;
    }

    memset(m, 0, sizeof(*m));
    m->type = type;
    m->headers = headers;
    m->max_headers = max_headers;
    m->content_length = -1;
    m->error_status = 400;
    m->head_len = end;

    /* The start line (between the skipped empty lines and its CRLF). */
    crlf = memchr(buf + sc->skip, '\n', end - sc->skip);
    HM_ASSERT(crlf != NULL);
    line_end = (size_t) (crlf - buf) + 1;
    if (type == HM_HTTP_REQUEST) {
        if (check_request_line(m, buf + sc->skip, buf + line_end) != HM_OK) {
            return HM_ERROR;
        }
    } else if (line_end - sc->skip < 14
               || memcmp(buf + sc->skip, "HTTP/1.", 7) != 0)
    {
        m->error = "malformed status line";
        return HM_ERROR;
    }

    x.m = m;
    x.in_value = 0;
    x.overflow = 0;
    http_parser_init(&hp, type == HM_HTTP_REQUEST ? HTTP_REQUEST
                                                  : HTTP_RESPONSE);
    hp.data = &x;
    n = http_parser_execute(&hp, type == HM_HTTP_REQUEST ? &settings_req
                                                         : &settings_resp,
                            buf + sc->skip, end - sc->skip);
    if (HTTP_PARSER_ERRNO(&hp) != HPE_PAUSED) {
        if (x.overflow) {
            m->error_status = 431;
            m->error = "too many header fields";
        } else if (HTTP_PARSER_ERRNO(&hp) == HPE_INVALID_METHOD
                   && type == HM_HTTP_REQUEST)
        {
            /* A well-formed method token (check_request_line passed) that
             * the parser does not know: RFC 9110 15.6.2. */
            m->error_status = 501;
            m->error = "method not implemented";
        } else if (m->error == NULL) {
            m->error = http_errno_description(HTTP_PARSER_ERRNO(&hp));
        }
        return HM_ERROR;
    }
    /* Paused in on_headers_complete, just before the final LF. */
    if (sc->skip + n + 1 != end) {
        m->error = "head does not end where it should";
        return HM_ERROR;
    }
    if (hp.http_major != 1) {
        m->error = "unsupported HTTP version";
        return HM_ERROR;
    }
    m->version = hp.http_minor >= 1 ? 11 : 10;     /* 1.2 and up: 1.1 */

    if (type == HM_HTTP_REQUEST) {
        m->method = method_id(m->method_name);
        if (check_target(m) != HM_OK) {
            return HM_ERROR;
        }
    } else {
        m->status = hp.status_code;
        /* RFC 9110 15: values outside 100..599 are invalid (a client
         * treats them as a server error; a proxy does not pass them on). */
        if (m->status < 100 || m->status > 599) {
            m->error = "invalid status code (outside 100..599)";
            return HM_ERROR;
        }
        for (n = 0; n < m->reason.len; n++) {
            if (!is_fchar(m->reason.data[n])) {
                m->error = "invalid reason phrase";
                return HM_ERROR;
            }
        }
    }
    if (check_fields(m, buf + end) != HM_OK) {
        return HM_ERROR;
    }
    m->error_status = 0;
    return HM_OK;
}

int
hm_http_req_body(const hm_http_msg_t *m)
{
    if (m->chunked) {
        return HM_HTTP_BODY_CHUNKED;
    }
    if (m->content_length > 0) {
        return HM_HTTP_BODY_LENGTH;
    }
    return HM_HTTP_BODY_NONE;
}

int
hm_http_resp_body(const hm_http_msg_t *m, int req_method)
{
    if (req_method == HM_HTTP_M_HEAD || m->status < 200 || m->status == 204
        || m->status == 304)
    {
        return HM_HTTP_BODY_NONE;
    }
    if (m->chunked) {
        return HM_HTTP_BODY_CHUNKED;
    }
    if (m->content_length >= 0) {
        return m->content_length > 0 ? HM_HTTP_BODY_LENGTH
                                     : HM_HTTP_BODY_NONE;
    }
    return HM_HTTP_BODY_EOF;
}

const char *
hm_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    return "Unknown";
}

/* ---- chunked decoder ---- */

enum {
    CH_SIZE = 0,        /* hex digits */
    CH_EXT,             /* after ';' */
    CH_EXT_QUOTED,      /* inside a quoted extension value */
    CH_EXT_ESCAPE,      /* after '\' inside quotes */
    CH_SIZE_BWS,        /* whitespace after the size: ';' must follow */
    CH_SIZE_LF,         /* CR seen, LF expected */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,   /* start of a trailer line or the final CRLF */
    CH_TRAILER_NAME,    /* field name of a trailer line, up to ':' */
    CH_TRAILER,         /* field value of a trailer line */
    CH_TRAILER_LF,
    CH_FINAL_LF,
    CH_DONE
};

#define CH_MAX_LINE     256
#define CH_MAX_TRAILERS 8192

void
hm_http_chunked_init(hm_http_chunked_t *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CH_SIZE;
}

int
hm_http_chunked_next(hm_http_chunked_t *d, const uint8_t *in, size_t len,
                     size_t *consumed, size_t *data_off, size_t *data_len)
{
    size_t i = 0, n;
    uint8_t c;
    int v;

    while (i < len) {
        c = in[i];
        switch (d->state) {
        case CH_SIZE:
            v = hm_hexval(c);
            if (v >= 0) {
                if (d->digits >= 16 || (d->remaining >> 60) != 0) {
                    return HM_ERROR;            /* overflow */
                }
                d->remaining = (d->remaining << 4) | (uint64_t) v;
                d->digits++;
                break;
            }
            if (d->digits == 0) {
                return HM_ERROR;
            }
            if (c == ';') {
                d->state = CH_EXT;
                d->line = 0;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (is_ows(c)) {
                d->state = CH_SIZE_BWS;
                d->line = 0;
            } else {
                return HM_ERROR;
            }
            break;
        case CH_SIZE_BWS:
            /* RFC 9112 7.1.1: chunk-ext = *( BWS ";" ... ); whitespace
             * that does not lead to an extension ("5 \r\n") is invalid. */
            if (++d->line > CH_MAX_LINE) {
                return HM_ERROR;
            }
            if (c == ';') {
                d->state = CH_EXT;
            } else if (!is_ows(c)) {
                return HM_ERROR;
            }
            break;
        case CH_EXT:
            if (++d->line > CH_MAX_LINE) {
                return HM_ERROR;
            }
            if (c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (c == '"') {
                d->state = CH_EXT_QUOTED;
            } else if (!(is_tchar(c) || c == '=' || c == ';' || is_ows(c))) {
                return HM_ERROR;
            }
            break;
        case CH_EXT_QUOTED:
            if (++d->line > CH_MAX_LINE) {
                return HM_ERROR;
            }
            if (c == '"') {
                d->state = CH_EXT;
            } else if (c == '\\') {
                d->state = CH_EXT_ESCAPE;
            } else if (!is_fchar(c)) {
                return HM_ERROR;
            }
            break;
        case CH_EXT_ESCAPE:
            if (++d->line > CH_MAX_LINE || !is_fchar(c)) {
                return HM_ERROR;
            }
            d->state = CH_EXT_QUOTED;
            break;
        case CH_SIZE_LF:
            if (c != '\n') {
                return HM_ERROR;
            }
            d->digits = 0;
            d->line = 0;
            d->state = d->remaining == 0 ? CH_TRAILER_START : CH_DATA;
            break;
        case CH_DATA:
            n = len - i;
            if ((uint64_t) n > d->remaining) {
                n = (size_t) d->remaining;
            }
            d->remaining -= n;
            if (d->remaining == 0) {
                d->state = CH_DATA_CR;
            }
            *data_off = i;
            *data_len = n;
            *consumed = i + n;
            return HM_OK;
        case CH_DATA_CR:
            if (c != '\r') {
                return HM_ERROR;
            }
            d->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n') {
                return HM_ERROR;
            }
            d->state = CH_SIZE;
            break;
        case CH_TRAILER_START:
            if (c == '\r') {
                d->state = CH_FINAL_LF;
                break;
            }
            if (!is_tchar(c)) {
                return HM_ERROR;
            }
            d->state = CH_TRAILER_NAME;
            /* fall through */
        case CH_TRAILER_NAME:
            /* A trailer line is a header field line: token ":" value. */
            if (++d->trailer_bytes > CH_MAX_TRAILERS) {
                return HM_ERROR;
            }
            if (c == ':') {
                d->state = CH_TRAILER;
            } else if (!is_tchar(c)) {
                return HM_ERROR;
            }
            break;
        case CH_TRAILER:
            if (++d->trailer_bytes > CH_MAX_TRAILERS) {
                return HM_ERROR;
            }
            if (c == '\r') {
                d->state = CH_TRAILER_LF;
            } else if (!is_fchar(c)) {
                return HM_ERROR;
            }
            break;
        case CH_TRAILER_LF:
            if (c != '\n') {
                return HM_ERROR;
            }
            d->state = CH_TRAILER_START;
            break;
        case CH_FINAL_LF:
            if (c != '\n') {
                return HM_ERROR;
            }
            d->state = CH_DONE;
            *consumed = i + 1;
            return HM_DONE;
        case CH_DONE:
            *consumed = i;
            return HM_DONE;
        }
        i++;
    }
    *consumed = len;
    return d->state == CH_DONE ? HM_DONE : HM_AGAIN;
}

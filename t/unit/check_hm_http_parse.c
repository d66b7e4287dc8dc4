/* Unit tests of src/http/hm_http_parse.c: request and response heads
 * (valid, truncated, oversized, every smuggling shape) and the chunked
 * decoder. */
#include "hm_core.h"
#include "hm_http_parse.h"
#include "hm_check.h"

#include <stdio.h>

static hm_http_header_t hdrs[64];

static int
parse_type(int type, const char *s, size_t len, size_t max, hm_http_msg_t *m)
{
    hm_http_scan_t sc;

    memset(&sc, 0, sizeof(sc));
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->headers = hdrs;
    m->max_headers = hm_nelem(hdrs);
    return hm_http_parse_head(m, &sc, s, len, max);
}

static int
req(const char *s, hm_http_msg_t *m)
{
    return parse_type(HM_HTTP_REQUEST, s, strlen(s), 16384, m);
}

static int
resp(const char *s, hm_http_msg_t *m)
{
    return parse_type(HM_HTTP_RESPONSE, s, strlen(s), 16384, m);
}

static void
expect_400(const char *s)
{
    hm_http_msg_t m;
    int rc = parse_type(HM_HTTP_REQUEST, s, strlen(s), 16384, &m);
    ck_assert_msg(rc == HM_ERROR, "accepted: %s", s);
    ck_assert_int_eq(m.error_status, 400);
    ck_assert_ptr_nonnull(m.error);
}

/* A request refused with <status> (not 400). */
static void
expect_status(const char *s, int status)
{
    hm_http_msg_t m;
    int rc = parse_type(HM_HTTP_REQUEST, s, strlen(s), 16384, &m);
    ck_assert_msg(rc == HM_ERROR, "accepted: %s", s);
    ck_assert_int_eq(m.error_status, status);
    ck_assert_ptr_nonnull(m.error);
}

START_TEST(simple_get)
{
    hm_http_msg_t m;
    const char *s = "GET /a/b?x=1 HTTP/1.1\r\nHost: a.test\r\n"
                    "User-Agent:  curl/8 \r\nX-Empty:\r\n\r\nNEXT";

    ck_assert_int_eq(req(s, &m), HM_OK);
    ck_assert_int_eq(m.method, HM_HTTP_M_GET);
    ck_assert_int_eq(m.version, 11);
    ck_assert_int_eq(m.head_len, strlen(s) - 4);
    ck_assert_int_eq(m.nheaders, 3);
    ck_assert(hm_strncaseeq(m.path.data, m.path.len, "/a/b", 4));
    ck_assert(hm_strncaseeq(m.query.data, m.query.len, "x=1", 3));
    ck_assert(hm_strncaseeq(m.host.data, m.host.len, "a.test", 6));
    ck_assert(hm_strncaseeq(m.headers[1].value.data, m.headers[1].value.len,
                            "curl/8", 6));
    ck_assert_int_eq(m.headers[2].value.len, 0);
    ck_assert(m.keep_alive);
    ck_assert_int_eq(hm_http_req_body(&m), HM_HTTP_BODY_NONE);
    ck_assert_int_eq(m.content_length, -1);
}
END_TEST

START_TEST(incremental_and_truncated)
{
    const char *s = "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
    hm_http_msg_t m;
    hm_http_scan_t sc;
    size_t n, len = strlen(s);
    int rc = HM_AGAIN;

    memset(&sc, 0, sizeof(sc));
    memset(&m, 0, sizeof(m));
    m.type = HM_HTTP_REQUEST;
    m.headers = hdrs;
    m.max_headers = hm_nelem(hdrs);
    for (n = 1; n <= len; n++) {
        rc = hm_http_parse_head(&m, &sc, s, n, 16384);
        if (n < len) {
            ck_assert_int_eq(rc, HM_AGAIN);
        }
    }
    ck_assert_int_eq(rc, HM_OK);
    ck_assert_int_eq(m.content_length, 5);
    ck_assert_int_eq(hm_http_req_body(&m), HM_HTTP_BODY_LENGTH);
    ck_assert_int_eq(m.method, HM_HTTP_M_POST);
}
END_TEST

/* Feeds s one byte at a time; returns the first code that is not
 * HM_AGAIN (HM_AGAIN if none) and the byte count it came at in *at. */
static int
feed_bytes(const char *s, size_t len, size_t *at)
{
    hm_http_msg_t m;
    hm_http_scan_t sc;
    size_t n;
    int rc = HM_AGAIN;

    memset(&sc, 0, sizeof(sc));
    memset(&m, 0, sizeof(m));
    m.type = HM_HTTP_REQUEST;
    m.headers = hdrs;
    m.max_headers = hm_nelem(hdrs);
    for (n = 1; n <= len && rc == HM_AGAIN; n++) {
        rc = hm_http_parse_head(&m, &sc, s, n, 16384);
        *at = n;
    }
    if (rc == HM_ERROR) {
        ck_assert_int_eq(m.error_status, 400);
    }
    return rc;
}

START_TEST(junk_refused_before_the_line_ends)
{
    /* a request line that can no longer become one is refused as soon as
     * the offending byte is seen, without waiting for a CRLF */
    static const struct { const char *s; size_t len; size_t at; } junk[] = {
        { "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, 1 },
        { "\0\0\0\0\0\0\0\0", 8, 1 },
        { "GET\0/ HTTP/1.1", 15, 4 },
        { "G(T / HTTP/1.1", 14, 2 },
        { "GET /a\x01b HTTP/1.1", 20, 7 },
        { "GET /\xff HTTP/1.1", 18, 6 },
        { "GET /a\tb", 9, 7 },
        { "GET /a\rb", 9, 8 },           /* the CR is no longer last */
        { "\r\nGE\x7fT", 7, 5 },
        /* in a header line, after a complete request line */
        { "GET / HTTP/1.1\r\nHost: a\r\nX\0", 27, 27 },
        { "GET / HTTP/1.1\r\nHost: a\x01b", 25, 24 },
        { "GET / HTTP/1.1\r\nHost: a\rb", 25, 25 },  /* CR not last */
        { "GET / HTTP/1.1\r\nX: \x7f", 20, 20 },
    };
    /* valid heads, cut anywhere, stay HM_AGAIN to the last byte; header
     * values may hold HTAB and obs-text */
    static const char *ok[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xe9\r\n\r\n",
        "\r\nPOST /x?y=%20 HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "GET /a!$&'()*+,;=:@~[] HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    size_t i, at;

    for (i = 0; i < hm_nelem(junk); i++) {
        ck_assert_msg(feed_bytes(junk[i].s, junk[i].len, &at) == HM_ERROR,
                      "junk %zu accepted", i);
        ck_assert_msg(at == junk[i].at, "junk %zu refused at byte %zu, not "
                      "%zu", i, at, junk[i].at);
    }
    for (i = 0; i < hm_nelem(ok); i++) {
        ck_assert_int_ne(feed_bytes(ok[i], strlen(ok[i]), &at), HM_ERROR);
        ck_assert_uint_eq(at, strlen(ok[i]));
    }
}
END_TEST

START_TEST(bare_cr_in_field_lines)
{
    /* http-parser (not strict) takes CR + any byte for a line end */
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: \rY: 1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX:\rY: 1\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nX: \rTransfer-Encoding: "
               "chunked\r\nContent-Length: 3\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nX: \rTransfer-Encoding: "
               "chunked\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\rY: 1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\rY: 1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\rZ\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a \r\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n");
    /* a bare CR that http-parser takes for a fold, with or without a
     * value around it */
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX:   \r      g: ched\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: \r  \r\nY: 1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\r  b\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nX: \r \r\nHost: a\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a \r \r\n\r\n");
}
END_TEST

START_TEST(host_shapes)
{
    static const char *ok[] = {
        "a.test", "A.Test", "a.test:443", "a.test:", "a.test:65535",
        "127.0.0.1:8443", "[::1]", "[::1]:443", "[2001:db8::a:b]:0",
        "[::ffff:10.0.0.1]", "[::1]:", "a%2etest", "xn--bcher-kva.test", "_a-b.test",
    };
    static const char *bad[] = {
        "[::1", "[::1]x", "[]", "[zz::1]", "[::1%eth0]", "::1", "[1.2.3.4]",
        "[1::2::3]", "[12345::1]", "[:]", "[::1.2.3]",
        ":443", "a.test:99999", "a.test:443000", "a.test:4a3", "a:1:2",
        "a.test#x", "a/b", "a@b", "a b", "a.test]", "a[b]",
    };
    char buf[512];
    hm_http_msg_t m;
    size_t i;

    for (i = 0; i < hm_nelem(ok); i++) {
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
                 ok[i]);
        ck_assert_msg(req(buf, &m) == HM_OK, "refused Host: %s", ok[i]);
        snprintf(buf, sizeof(buf), "GET https://%s/ HTTP/1.1\r\nHost: a\r\n"
                 "\r\n", ok[i]);
        ck_assert_msg(req(buf, &m) == HM_OK, "refused authority %s", ok[i]);
    }
    for (i = 0; i < hm_nelem(bad); i++) {
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
                 bad[i]);
        expect_400(buf);
        if (strchr(bad[i], '/') == NULL && strchr(bad[i], '#') == NULL) {
            snprintf(buf, sizeof(buf), "GET https://%s/ HTTP/1.1\r\n"
                     "Host: a\r\n\r\n", bad[i]);
            expect_400(buf);
        }
    }
}
END_TEST

START_TEST(leading_empty_lines)
{
    hm_http_msg_t m;
    ck_assert_int_eq(req("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &m),
                     HM_OK);
    ck_assert_int_eq(m.method, HM_HTTP_M_GET);
    expect_400("\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
}
END_TEST

START_TEST(head_too_large)
{
    char buf[2000];
    hm_http_msg_t m;
    int rc;

    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    rc = parse_type(HM_HTTP_REQUEST, buf, sizeof(buf), 1024, &m);
    ck_assert_int_eq(rc, HM_ERROR);
    ck_assert_int_eq(m.error_status, 431);
    /* exactly at the limit but complete: fine */
    rc = parse_type(HM_HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27,
                    27, &m);
    ck_assert_int_eq(rc, HM_OK);
}
END_TEST

START_TEST(too_many_headers)
{
    char buf[4096];
    size_t n = 0;
    int i, rc;
    hm_http_msg_t m;

    n += (size_t) sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 80; i++) {
        n += (size_t) sprintf(buf + n, "X-%d: %d\r\n", i, i);
    }
    n += (size_t) sprintf(buf + n, "\r\n");
    rc = parse_type(HM_HTTP_REQUEST, buf, n, 16384, &m);
    ck_assert_int_eq(rc, HM_ERROR);
    ck_assert_int_eq(m.error_status, 431);
}
END_TEST

START_TEST(smuggling_framing)
{
    /* CL + TE */
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               "Content-Length: 5\r\n\r\n");
    /* duplicate / malformed Content-Length */
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               "Content-Length: 6\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               "Content-Length: 5\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\n"
               "Content-Length: 99999999999999999999999\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\n"
               "Content-Length: 1234567890123456789\r\n\r\n");
    /* Transfer-Encoding other than one final chunked */
    expect_400("POST / HTTP/1.1\r\nHost: a\r\n"
               "Transfer-Encoding: chunked, identity\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n"
               "\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\n"
               "Transfer-Encoding: gzip, chunked\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n"
               "\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \x0b"
               "\r\n\r\n");
    expect_400("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    expect_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
               "\r\n");
}
END_TEST

START_TEST(smuggling_syntax)
{
    hm_http_msg_t m;

    /* obs-fold */
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\n Host: a\r\n\r\n");
    /* bare LF / CR */
    expect_400("GET / HTTP/1.1\nHost: a\n\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n");
    /* invalid header names */
    expect_400("GET / HTTP/1.1\r\nHo st: a\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost : a\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX\x01: 1\r\n\r\n");
    /* NUL / control characters in values */
    ck_assert_int_eq(parse_type(HM_HTTP_REQUEST,
                                "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
                                36, 16384, &m), HM_ERROR);
    ck_assert_int_eq(m.error_status, 400);
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n");
    /* Host */
    expect_400("GET / HTTP/1.1\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n");
    expect_400("GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
}
END_TEST

START_TEST(request_line)
{
    hm_http_msg_t m;

    expect_400("GET /\r\n\r\n");                           /* HTTP/0.9 */
    expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    expect_400("GET / HTTP/1.11\r\nHost: a\r\n\r\n");
    expect_400("GET / HTTP/11.1\r\nHost: a\r\n\r\n");
    expect_400("GET / HTTP/1.x\r\nHost: a\r\n\r\n");
    expect_400("GET / HTTP/x.1\r\nHost: a\r\n\r\n");
    expect_400("GET / HTTP-1.1\r\nHost: a\r\n\r\n");
    /* A higher minor version is served as HTTP/1.1 (RFC 9112 2.3). */
    ck_assert_int_eq(req("GET / HTTP/1.2\r\nHost: a\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(m.version, 11);
    ck_assert_int_eq(m.keep_alive, 1);
    ck_assert_int_eq(req("GET / HTTP/1.9\r\nHost: a\r\nConnection: close"
                         "\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(m.version, 11);
    ck_assert_int_eq(m.keep_alive, 0);
    expect_400("GET / HTTP/1.2\r\n\r\n");         /* 1.1 rules: Host */
    expect_400("GET / http/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
    expect_400("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET foo HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET ftp://x/a HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET http:/x/a HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET x:443 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET * HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET /a\xff HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n");
    /* Well-formed method tokens the parser does not know: 501. */
    ck_assert_int_eq(req("get / HTTP/1.1\r\nHost: a\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(m.error_status, 501);
    ck_assert_int_eq(req("FOO / HTTP/1.1\r\nHost: a\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(m.error_status, 501);
    expect_400("G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(m.method, HM_HTTP_M_OPTIONS);
    ck_assert_int_eq(req("GET / HTTP/1.0\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(m.version, 10);
    ck_assert(!m.keep_alive);
    ck_assert_int_eq(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                         &m), HM_OK);
    ck_assert(m.keep_alive);
    ck_assert_int_eq(req("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(m.method, HM_HTTP_M_HEAD);
}
END_TEST

START_TEST(connection_and_expect)
{
    hm_http_msg_t m;
    const char *s = "POST / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Foo\r\n"
                    "X-Foo: 1\r\nKeep-Alive: 5\r\nExpect: 100-Continue\r\n"
                    "Transfer-Encoding: Chunked\r\nX-Bar: 2\r\n\r\n";

    ck_assert_int_eq(req(s, &m), HM_OK);
    ck_assert(!m.keep_alive);
    ck_assert(m.conn_close);
    ck_assert(m.expect_continue);
    ck_assert(m.chunked);
    ck_assert_int_eq(hm_http_req_body(&m), HM_HTTP_BODY_CHUNKED);
    ck_assert(m.headers[2].flags & HM_HTTP_HDR_HOP);   /* X-Foo */
    ck_assert(m.headers[3].flags & HM_HTTP_HDR_HOP);   /* Keep-Alive */
    ck_assert(m.headers[1].flags & HM_HTTP_HDR_HOP);   /* Connection */
    ck_assert(!(m.headers[6].flags & HM_HTTP_HDR_HOP));/* X-Bar */
    ck_assert_int_eq(hm_http_header_find(&m, "x-bar", 5, 0), 6);

    /* Connection naming the fields that frame or address the message
     * drops nothing (RFC 9110 7.6.1): they stay end to end. */
    ck_assert_int_eq(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Host, "
                         "content-length\r\nContent-Length: 0\r\n\r\n", &m),
                     HM_OK);
    ck_assert(!(m.headers[0].flags & HM_HTTP_HDR_HOP));  /* Host */
    ck_assert(!(m.headers[2].flags & HM_HTTP_HDR_HOP));  /* Content-Length */
    ck_assert_int_eq(resp("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n"
                          "Content-Length: 2\r\n\r\n", &m), HM_OK);
    ck_assert(!(m.headers[1].flags & HM_HTTP_HDR_HOP));  /* Content-Length */

    ck_assert_int_eq(req("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n",
                         &m), HM_ERROR);
    ck_assert_int_eq(m.error_status, 417);

    ck_assert_int_eq(req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         "Upgrade: websocket\r\n\r\n", &m), HM_OK);
    ck_assert(m.upgrade);
    ck_assert_int_eq(req("GET /ws HTTP/1.1\r\nHost: a\r\n"
                         "Upgrade: websocket\r\n\r\n", &m), HM_OK);
    ck_assert(!m.upgrade);
    /* Only WebSocket (any case) is an upgrade; h2c and friends are not,
     * and HTTP2-Settings is never forwarded. */
    ck_assert_int_eq(req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         "Upgrade: WebSocket\r\n\r\n", &m), HM_OK);
    ck_assert(m.upgrade);
    ck_assert_int_eq(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
                         "\r\n", &m), HM_OK);
    ck_assert(!m.upgrade);
    ck_assert(m.headers[2].flags & HM_HTTP_HDR_HOP);   /* Upgrade */
    ck_assert(m.headers[3].flags & HM_HTTP_HDR_HOP);   /* HTTP2-Settings */
    ck_assert_int_eq(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         "Upgrade: websocket, h2c\r\n\r\n", &m), HM_OK);
    ck_assert(!m.upgrade);
    ck_assert_int_eq(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         "Upgrade: websockets\r\n\r\n", &m), HM_OK);
    ck_assert(!m.upgrade);
}
END_TEST

START_TEST(responses)
{
    hm_http_msg_t m;

    ck_assert_int_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", &m),
                     HM_OK);
    ck_assert_int_eq(m.status, 200);
    ck_assert_int_eq(hm_http_resp_body(&m, HM_HTTP_M_GET), HM_HTTP_BODY_LENGTH);
    ck_assert_int_eq(hm_http_resp_body(&m, HM_HTTP_M_HEAD), HM_HTTP_BODY_NONE);
    ck_assert(m.keep_alive);
    ck_assert_int_eq(resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n"
                          "\r\n", &m), HM_OK);
    ck_assert_int_eq(hm_http_resp_body(&m, HM_HTTP_M_GET), HM_HTTP_BODY_NONE);
    ck_assert_int_eq(resp("HTTP/1.1 204 No Content\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(hm_http_resp_body(&m, HM_HTTP_M_GET), HM_HTTP_BODY_NONE);
    ck_assert_int_eq(resp("HTTP/1.0 200 OK\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(hm_http_resp_body(&m, HM_HTTP_M_GET), HM_HTTP_BODY_EOF);
    ck_assert(!m.keep_alive);
    ck_assert_int_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n", &m), HM_OK);
    ck_assert_int_eq(hm_http_resp_body(&m, HM_HTTP_M_GET), HM_HTTP_BODY_CHUNKED);
    ck_assert_int_eq(resp("HTTP/1.1 101 Switching Protocols\r\n"
                          "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                          &m), HM_OK);
    ck_assert_int_eq(m.status, 101);
    ck_assert(m.upgrade);
    ck_assert_int_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(resp("HTTP/1.1 200 OK\nContent-Length: 1\n\n", &m),
                     HM_ERROR);
    ck_assert_int_eq(resp("HTTP/2 200 OK\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(resp("HTTP/1.1 20 OK\r\n\r\n", &m), HM_ERROR);
    /* RFC 9110 15: 100..599 only. */
    ck_assert_int_eq(resp("HTTP/1.1 599 X\r\n\r\n", &m), HM_OK);
    ck_assert_int_eq(resp("HTTP/1.1 600 X\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(resp("HTTP/1.1 704 X\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(resp("HTTP/1.1 999 X\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(resp("HTTP/1.1 099 X\r\n\r\n", &m), HM_ERROR);
    ck_assert_int_eq(resp("\r\nHTTP/1.1 200 OK\r\n\r\n", &m), HM_ERROR);
}
END_TEST

/* Decodes s fully with the given split size; returns the status and the
 * decoded payload in out. */
static int
dechunk(const char *s, size_t len, size_t step, char *out, size_t *outlen,
        size_t *used)
{
    hm_http_chunked_t d;
    size_t pos = 0, end, consumed, off, n;
    int rc = HM_AGAIN;

    hm_http_chunked_init(&d);
    *outlen = 0;
    while (pos < len) {
        end = hm_min(len, pos + step);
        while (pos < end) {
            rc = hm_http_chunked_next(&d, (const uint8_t *) s + pos, end - pos,
                                      &consumed, &off, &n);
            if (rc == HM_ERROR) {
                return rc;
            }
            if (rc == HM_OK) {
                memcpy(out + *outlen, s + pos + off, n);
                *outlen += n;
            }
            pos += consumed;
            if (rc == HM_DONE) {
                *used = pos;
                return rc;
            }
        }
    }
    *used = pos;
    return rc == HM_OK ? HM_AGAIN : rc;
}

START_TEST(chunked_valid)
{
    const char *s = "5\r\nhello\r\n6;name=val;q=\"a \\\"b\"\r\n world\r\n"
                    "A\r\n0123456789\r\n0\r\nTrailer-X: 1\r\n\r\nGET /";
    const char *bws;
    char out[64];
    size_t outlen, used, step;

    for (step = 1; step <= strlen(s); step++) {
        ck_assert_int_eq(dechunk(s, strlen(s), step, out, &outlen, &used),
                         HM_DONE);
        ck_assert_int_eq(outlen, 21);
        ck_assert(memcmp(out, "hello world0123456789", 21) == 0);
        ck_assert_int_eq(used, strlen(s) - 5);
    }
    ck_assert_int_eq(dechunk("0\r\n\r\n", 5, 5, out, &outlen, &used), HM_DONE);
    ck_assert_int_eq(outlen, 0);
    /* RFC 9112 7.1.1: BWS before an extension's ';' */
    bws = "2 ;a=1\r\nhi\r\n0\t \t;b\r\n\r\n";
    ck_assert_int_eq(dechunk(bws, strlen(bws), strlen(bws), out, &outlen,
                             &used), HM_DONE);
    ck_assert_int_eq(outlen, 2);
    ck_assert_int_eq(dechunk("000\r\n\r\n", 7, 7, out, &outlen, &used),
                     HM_DONE);
    /* truncated: not done */
    ck_assert_int_eq(dechunk("5\r\nhel", 6, 6, out, &outlen, &used), HM_AGAIN);
    ck_assert_int_eq(dechunk("5\r\nhello\r\n0\r\n", 13, 13, out, &outlen,
                             &used), HM_AGAIN);
}
END_TEST

START_TEST(chunked_invalid)
{
    static const char *bad[] = {
        "\r\n",                       /* no size */
        "-5\r\nhello\r\n0\r\n\r\n",   /* sign */
        "+5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",   /* space */
        "5 \r\nhello\r\n0\r\n\r\n",
        "5 x\r\nhello\r\n0\r\n\r\n",  /* whitespace, then no ';' */
        "5 5;a\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",      /* bare LF */
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",      /* data longer than the size */
        "5\r\nhello\r\n0\r\n\n",
        "10000000000000000\r\n",      /* 17 digits: overflow */
        "FFFFFFFFFFFFFFFFF\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",  /* control char in extension */
        "5;a\nb\r\nhello\r\n0\r\n\r\n",
        "5;\"unterminated\r\nhello\r\n0\r\n\r\n",
        "0\r\nX: a\x01\r\n\r\n",      /* bad trailer */
        "0\r\n: a\r\n\r\n",
        "0\r\nGET /x HTTP/1.1\r\n\r\n", /* trailer line without a name */
        "0\r\nX-A\r\n\r\n",         /* ... without a colon */
        "0\r\nX A: 1\r\n\r\n",      /* space in the name */
        "0\r\nX-A : 1\r\n\r\n",     /* space before the colon */
        "0\r\nX(A): 1\r\n\r\n",     /* not a token */
        "g\r\n",
    };
    char out[64], ext[600];
    size_t i, outlen, used;

    for (i = 0; i < hm_nelem(bad); i++) {
        ck_assert_msg(dechunk(bad[i], strlen(bad[i]), strlen(bad[i]), out,
                              &outlen, &used) == HM_ERROR, "accepted %zu", i);
    }
    /* an extension longer than 256 bytes */
    memset(ext, 'a', sizeof(ext));
    memcpy(ext, "1;", 2);
    ck_assert_int_eq(dechunk(ext, sizeof(ext), sizeof(ext), out, &outlen,
                             &used), HM_ERROR);
}
END_TEST

START_TEST(chunked_huge_size_and_trailer_limit)
{
    hm_http_chunked_t d;
    size_t consumed, off, n, i;
    char big[9000];
    int rc = HM_AGAIN;

    hm_http_chunked_init(&d);
    ck_assert_int_eq(hm_http_chunked_next(&d, (const uint8_t *) "FFFFFFFFFFFFFFFF\r\nab",
                                          20, &consumed, &off, &n), HM_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(d.remaining, 0xFFFFFFFFFFFFFFFFull - 2);

    hm_http_chunked_init(&d);
    memcpy(big, "0\r\n", 3);
    for (i = 3; i + 10 < sizeof(big); i += 10) {
        memcpy(big + i, "X-T: 1234\r", 10);
        big[i + 9] = '\r';
        memcpy(big + i + 8, "\r\n", 2);
    }
    for (i = 0; i < sizeof(big) && rc != HM_ERROR; i += consumed) {
        rc = hm_http_chunked_next(&d, (const uint8_t *) big + i,
                                  sizeof(big) - i, &consumed, &off, &n);
        if (rc == HM_AGAIN || rc == HM_DONE) {
            break;
        }
    }
    ck_assert_int_eq(rc, HM_ERROR);
}
END_TEST

/* Absolute-form targets (RFC 9112 3.2.2): accepted for http/https, the
 * authority becomes the host, the target its origin-form part. */
START_TEST(absolute_form)
{
    hm_http_msg_t m;

    ck_assert_int_eq(req("GET https://a.test/p/q?x=1 HTTP/1.1\r\n"
                         "Host: other\r\n\r\n", &m), HM_OK);
    ck_assert(m.absolute);
    ck_assert(!m.target_slash);
    ck_assert(hm_strncaseeq(m.host.data, m.host.len, "a.test", 6));
    ck_assert(hm_strncaseeq(m.authority.data, m.authority.len, "a.test", 6));
    ck_assert(hm_strncaseeq(m.target.data, m.target.len, "/p/q?x=1", 8));
    ck_assert(hm_strncaseeq(m.path.data, m.path.len, "/p/q", 4));
    ck_assert(hm_strncaseeq(m.query.data, m.query.len, "x=1", 3));

    ck_assert_int_eq(req("GET HTTP://A.test:8443 HTTP/1.1\r\nHost: a\r\n\r\n",
                         &m), HM_OK);
    ck_assert(m.absolute);
    ck_assert(!m.target_slash);
    ck_assert(hm_strncaseeq(m.target.data, m.target.len, "/", 1));
    ck_assert(hm_strncaseeq(m.path.data, m.path.len, "/", 1));
    ck_assert(hm_strncaseeq(m.host.data, m.host.len, "A.test:8443", 11));

    ck_assert_int_eq(req("GET http://[::1]?q HTTP/1.1\r\nHost: a\r\n\r\n",
                         &m), HM_OK);
    ck_assert(m.target_slash);
    ck_assert(hm_strncaseeq(m.host.data, m.host.len, "[::1]", 5));
    ck_assert(hm_strncaseeq(m.query.data, m.query.len, "q", 1));

    /* still invalid */
    expect_400("GET https:// HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET https:///p HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET https://u@a.test/ HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET https://a.test/#f HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET https://a.test#f HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET https://a\\b/ HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_400("GET https://a.test/ HTTP/1.1\r\n\r\n");   /* no Host */
}
END_TEST

static Suite *
http_parse_suite(void)
{
    Suite *s = suite_create("hm_http_parse");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, simple_get);
    tcase_add_test(tc, incremental_and_truncated);
    tcase_add_test(tc, junk_refused_before_the_line_ends);
    tcase_add_test(tc, bare_cr_in_field_lines);
    tcase_add_test(tc, host_shapes);
    tcase_add_test(tc, leading_empty_lines);
    tcase_add_test(tc, head_too_large);
    tcase_add_test(tc, too_many_headers);
    tcase_add_test(tc, smuggling_framing);
    tcase_add_test(tc, smuggling_syntax);
    tcase_add_test(tc, request_line);
    tcase_add_test(tc, absolute_form);
    tcase_add_test(tc, connection_and_expect);
    tcase_add_test(tc, responses);
    tcase_add_test(tc, chunked_valid);
    tcase_add_test(tc, chunked_invalid);
    tcase_add_test(tc, chunked_huge_size_and_trailer_limit);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(http_parse_suite)

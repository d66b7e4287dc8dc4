/* Unit tests of src/http/hm_http_response.c: the upstream request head and
 * the client response head are rebuilt from parsed fields (hop-by-hop and
 * Connection-listed headers dropped, framing regenerated). */
#include "hm_core.h"
#include "hm_http.h"
#include "hm_http_int.h"
#include "hm_check.h"

#include <time.h>

static hm_http_header_t hdrs[32];

static void
parse(int type, const char *s, hm_http_msg_t *m)
{
    hm_http_scan_t sc;

    memset(&sc, 0, sizeof(sc));
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->headers = hdrs;
    m->max_headers = hm_nelem(hdrs);
    ck_assert_int_eq(hm_http_parse_head(m, &sc, s, strlen(s), 16384), HM_OK);
    m->max_headers = hm_nelem(hdrs);
}

START_TEST(upstream_head_rebuilt)
{
    hm_http_msg_t m;
    char out[1024];
    size_t n;

    parse(HM_HTTP_REQUEST, "POST /a?b HTTP/1.1\r\nHost: a.test\r\n"
          "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n"
          "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nX-Ok: 2\r\n"
          "TE: trailers\r\n\r\n", &m);
    n = hm__http_build_upstream_head(&m, hm_http_req_body(&m), "x", 1, out,
                                     sizeof(out));
    ck_assert_uint_gt(n, 0);
    out[n] = '\0';
    ck_assert_str_eq(out, "POST /a?b HTTP/1.1\r\nHost: a.test\r\nX-Ok: 2\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n");
    /* too small a buffer: 0, never a truncated head */
    ck_assert_uint_eq(hm__http_build_upstream_head(&m, HM_HTTP_BODY_CHUNKED,
                                                   "x", 1, out, 20), 0);

    parse(HM_HTTP_REQUEST, "GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n", &m);
    n = hm__http_build_upstream_head(&m, hm_http_req_body(&m), "sni.test", 8,
                                     out, sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: sni.test\r\n"
                          "Content-Length: 0\r\n\r\n");

    parse(HM_HTTP_REQUEST, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
          "Upgrade: websocket\r\n\r\n", &m);
    n = hm__http_build_upstream_head(&m, hm_http_req_body(&m), "a", 1, out,
                                     sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                          "Upgrade: websocket\r\n\r\n");

    /* absolute-form: origin-form upstream, the authority as Host */
    parse(HM_HTTP_REQUEST, "GET https://b.test:443/x?y HTTP/1.1\r\n"
          "X-A: 1\r\nHost: a\r\n\r\n", &m);
    n = hm__http_build_upstream_head(&m, hm_http_req_body(&m), "sni", 3, out,
                                     sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "GET /x?y HTTP/1.1\r\nHost: b.test:443\r\n"
                          "X-A: 1\r\n\r\n");
    parse(HM_HTTP_REQUEST, "GET http://b.test?y HTTP/1.1\r\nHost: a\r\n\r\n",
          &m);
    n = hm__http_build_upstream_head(&m, hm_http_req_body(&m), "sni", 3, out,
                                     sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "GET /?y HTTP/1.1\r\nHost: b.test\r\n\r\n");
}
END_TEST

START_TEST(client_head_rebuilt)
{
    hm_http_msg_t req, resp;
    hm_http_header_t rq[8];
    char out[1024];
    size_t n;

    parse(HM_HTTP_REQUEST, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
          &req);
    memcpy(rq, hdrs, sizeof(rq));
    req.headers = rq;
    parse(HM_HTTP_RESPONSE, "HTTP/1.1 200 Fine\r\nServer: x\r\n"
          "Transfer-Encoding: chunked\r\nConnection: close, X-Hop\r\n"
          "X-Hop: 1\r\n\r\n", &resp);
    n = hm__http_build_client_head(&resp, &req, 1, 0, out, sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "HTTP/1.1 200 Fine\r\nServer: x\r\n"
                          "Transfer-Encoding: chunked\r\n"
                          "Connection: keep-alive\r\n\r\n");
    n = hm__http_build_client_head(&resp, &req, 0, 1, out, sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "HTTP/1.1 200 Fine\r\nServer: x\r\n"
                          "Connection: close\r\n\r\n");
}
END_TEST

START_TEST(header_add_remove)
{
    hm_http_msg_t m;
    hm_http_req_t r;
    char out[512];
    size_t n;

    memset(&r, 0, sizeof(r));
    r.pool = hm_pool_new(1024);
    parse(HM_HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX-Internal-A: 1\r\n"
          "x-internal-b: 2\r\nX-Internal: 3\r\nX-Keep: 4\r\n\r\n", &m);
    ck_assert_int_eq(hm_http_header_remove(&m, "x-internal-", 11, 1), 2);
    ck_assert_int_eq(hm_http_header_remove(&m, "X-INTERNAL", 10, 0), 1);
    ck_assert_int_eq(hm_http_header_add(&r, &m, "X-Edge", 6, "hamlyn", 6),
                     HM_OK);
    n = hm__http_build_upstream_head(&m, HM_HTTP_BODY_NONE, "a", 1, out,
                                     sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: a\r\nX-Keep: 4\r\n"
                          "X-Edge: hamlyn\r\n\r\n");
    m.max_headers = m.nheaders;
    ck_assert_int_eq(hm_http_header_add(&r, &m, "X", 1, "y", 1), HM_ERROR);
    hm_pool_free(r.pool);
}
END_TEST

/* Date: IMF-fixdate formatting and the per-second cache. */
START_TEST(date_header)
{
    char d[30];
    const char *a, *b;
    time_t now, parsed;
    struct tm tm;

    hm__http_format_date(0, d);
    ck_assert_str_eq(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    hm__http_format_date(1700000000, d);
    ck_assert_str_eq(d, "Tue, 14 Nov 2023 22:13:20 GMT");
    hm__http_format_date(951782400, d);            /* leap day */
    ck_assert_str_eq(d, "Tue, 29 Feb 2000 00:00:00 GMT");
    hm__http_format_date(4102444799, d);
    ck_assert_str_eq(d, "Thu, 31 Dec 2099 23:59:59 GMT");

    /* same loop time: the same cached string, unchanged */
    a = hm__http_date(5000);
    ck_assert_uint_eq(strlen(a), 29);
    memcpy(d, a, 30);
    b = hm__http_date(5000);
    ck_assert_ptr_eq(a, b);
    ck_assert_str_eq(b, d);
    /* it is the wall clock's current second (within a couple) */
    memset(&tm, 0, sizeof(tm));
    ck_assert_ptr_nonnull(strptime(b, "%a, %d %b %Y %H:%M:%S GMT", &tm));
    parsed = timegm(&tm);
    now = time(NULL);
    ck_assert(parsed <= now && now - parsed <= 2);
    /* two seconds of loop time later the date is re-read */
    b = hm__http_date(7001);
    memset(&tm, 0, sizeof(tm));
    ck_assert_ptr_nonnull(strptime(b, "%a, %d %b %Y %H:%M:%S GMT", &tm));
    now = time(NULL);
    ck_assert(timegm(&tm) <= now && now - timegm(&tm) <= 2);
}
END_TEST

static Suite *
http_response_suite(void)
{
    Suite *s = suite_create("hm_http_response");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, upstream_head_rebuilt);
    tcase_add_test(tc, client_head_rebuilt);
    tcase_add_test(tc, header_add_remove);
    tcase_add_test(tc, date_header);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(http_response_suite)

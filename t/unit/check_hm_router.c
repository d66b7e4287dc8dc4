/* Unit tests of src/http/hm_router.c: path normalisation and first-match
 * route selection. */
#include "hm_core.h"
#include "hm_router.h"
#include "hm_check.h"

static void
norm_is(const char *in, const char *want)
{
    char out[256];
    size_t n = hm_http_normalize_path(in, strlen(in), out);
    ck_assert_msg(n == strlen(want) && memcmp(out, want, n) == 0,
                  "%s -> %.*s, want %s", in, (int) n, out, want);
}

START_TEST(normalize)
{
    char out[16];

    norm_is("/", "/");
    norm_is("", "/");
    norm_is("/a/b/c", "/a/b/c");
    norm_is("/v1/../admin/", "/admin/");
    norm_is("/v1/../admin", "/admin");
    norm_is("//admin//x", "/admin/x");
    norm_is("/./admin/./x/.", "/admin/x/");
    norm_is("/a/b/../../../../etc", "/etc");
    norm_is("/%61dmin/", "/admin/");
    norm_is("/%2e%2e/admin/", "/admin/");
    norm_is("/v1/%2E%2E/admin/", "/admin/");
    /* An encoded slash is a slash for routing (a backend may decode it
     * before resolving dot segments). */
    norm_is("/a%2fb", "/a/b");
    norm_is("/a%2Fb/..", "/a/");
    norm_is("/a/..%2f", "/");
    norm_is("/x/..%2fadmin/", "/admin/");
    norm_is("/x%2F%2F..%2Fadmin", "/admin");
    norm_is("%2Fadmin", "/admin");
    norm_is("/a%2", "");
    norm_is("/a%3Fb%5C", "/a%3Fb%5C");
    norm_is("/~user/%7euser", "/~user/~user");
    norm_is("/a/...", "/a/...");
    norm_is("/a/.b", "/a/.b");
    ck_assert_int_eq(hm_http_normalize_path("/%zz", 4, out), 0);
    ck_assert_int_eq(hm_http_normalize_path("/%2", 3, out), 0);
    ck_assert_int_eq(hm_http_normalize_path("/%", 2, out), 0);
}
END_TEST

static hm_http_header_t hdrs[16];

static void
parse(const char *s, hm_http_msg_t *m)
{
    hm_http_scan_t sc;
    memset(&sc, 0, sizeof(sc));
    memset(m, 0, sizeof(*m));
    m->type = HM_HTTP_REQUEST;
    m->headers = hdrs;
    m->max_headers = hm_nelem(hdrs);
    ck_assert_int_eq(hm_http_parse_head(m, &sc, s, strlen(s), 16384), HM_OK);
}

START_TEST(first_match_wins)
{
    static char *get_post[] = { "GET", "POST" };
    static hm_kv_t canary[] = { { "x-canary", "1" } };
    hm_conf_route_t routes[6];
    hm_conf_site_t site;
    hm_http_msg_t m;
    const hm_conf_route_t *r;

    memset(routes, 0, sizeof(routes));
    routes[0].match.path_prefix = "/admin/";
    routes[0].status = 404;
    routes[1].match.path_prefix = "/v1/";
    routes[1].match.methods = get_post;
    routes[1].match.nmethods = 2;
    routes[1].match.headers = canary;
    routes[1].match.nheaders = 1;
    routes[1].status = 201;
    routes[2].match.path_exact = "/exact";
    routes[2].status = 202;
    routes[3].match.host = "b.test";
    routes[3].status = 203;
    routes[4].match.path_prefix = "/v1/";
    routes[4].status = 204;
    memset(&site, 0, sizeof(site));
    site.routes = routes;
    site.nroutes = 5;

    parse("GET /v1/x HTTP/1.1\r\nHost: a.test\r\nX-Canary: 1\r\n\r\n", &m);
    r = hm_router_match(&site, &m, "/v1/x", 5, "a.test", 6);
    ck_assert_int_eq(r->status, 201);
    parse("PUT /v1/x HTTP/1.1\r\nHost: a.test\r\nX-Canary: 1\r\n\r\n", &m);
    r = hm_router_match(&site, &m, "/v1/x", 5, "a.test", 6);
    ck_assert_int_eq(r->status, 204);
    parse("GET /v1/x HTTP/1.1\r\nHost: a.test\r\nX-Canary: 2\r\n\r\n", &m);
    r = hm_router_match(&site, &m, "/v1/x", 5, "a.test", 6);
    ck_assert_int_eq(r->status, 204);
    parse("GET /exact HTTP/1.1\r\nHost: a.test\r\n\r\n", &m);
    ck_assert_int_eq(hm_router_match(&site, &m, "/exact", 6, "a.test", 6)
                     ->status, 202);
    ck_assert_ptr_null(hm_router_match(&site, &m, "/exact/", 7, "a.test", 6));
    ck_assert_int_eq(hm_router_match(&site, &m, "/zzz", 4, "B.test", 6)
                     ->status, 203);
    ck_assert_int_eq(hm_router_match(&site, &m, "/admin/", 7, "b.test", 6)
                     ->status, 404);
}
END_TEST

static Suite *
router_suite(void)
{
    Suite *s = suite_create("hm_router");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, normalize);
    tcase_add_test(tc, first_match_wins);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(router_suite)

/*
 * check_hm_admin.c: unit tests of the pure part of src/event/hm_admin.c:
 * hm_redirect_location(), which turns the Host header and request-target
 * of a plaintext request into the https:// Location of the 301 answer
 * (valid, truncated and malformed hosts and targets, buffer bounds).
 */
#include "hm_core.h"
#include "hm_admin.h"
#include "hm_check.h"

static int
loc(const char *host, const char *target, char *buf, size_t cap)
{
    return hm_redirect_location(host, strlen(host), target, strlen(target),
                                buf, cap);
}

static const struct {
    const char *host;
    const char *target;
    const char *want;
} good[] = {
    { "example.com", "/", "https://example.com/" },
    { "example.com:8080", "/a/b?x=1&y=%20", "https://example.com/a/b?x=1&y=%20" },
    { "WWW.Example.COM", "/P", "https://www.example.com/P" },
    { "127.0.0.1:80", "/x", "https://127.0.0.1/x" },
    { "[::1]:80", "/v6", "https://[::1]/v6" },
    { "[2001:db8::1]", "/", "https://[2001:db8::1]/" },
    { "a_b.test", "/", "https://a_b.test/" },
    { "a.test:1", "/", "https://a.test/" },
    { "a.test:65535", "/", "https://a.test/" },
    /* absolute-form: its authority names the host */
    { "a.test", "http://other.test/path?q", "https://other.test/path?q" },
    { "a.test", "http://Other.test:8080", "https://other.test/" },
    { "", "HTTPS://other.test/z", "https://other.test/z" },
    /* a query without a path: the path is "/" (RFC 3986 6.2.3), both as
     * sent and as the parser hands it over ("?q", target_slash) */
    { "a.test", "http://other.test?x", "https://other.test/?x" },
    { "a.test", "http://other.test:80?x=1&y", "https://other.test/?x=1&y" },
    { "a.test:8080", "?q=1", "https://a.test/?q=1" },
};

static const struct {
    const char *host;
    const char *target;
} bad[] = {
    { "", "/" },
    { "ex@mple.com", "/" },
    { "a b", "/" },
    { "a.test:", "/" },
    { "a.test:99x", "/" },
    { "a.test:123456", "/" },
    { "a.test:80:80", "/" },
    { ":80", "/" },
    { ".a.test", "/" },
    { "-a.test", "/" },
    { "[::1", "/" },
    { "[]", "/" },
    { "[::1]x", "/" },
    { "[::g]", "/" },
    { "a/b", "/" },
    { "a\r\nX-Injected: 1", "/" },
    { "a.test", "" },
    { "a.test", "*" },
    { "a.test", "a.test:443" },
    { "a.test", "/a b" },
    { "a.test", "/a\r\nX: y" },
    { "a.test", "/\x7f" },
    { "a.test", "http://other.test?x y" },
    { "a.test", "a?x" },
    { "a.test", "http://user@other.test/" },
    { "a.test", "http:///x" },
    { "a.test", "http://other.test:x/" },
};

START_TEST(test_good)
{
    char buf[512];
    int  n;

    n = loc(good[_i].host, good[_i].target, buf, sizeof(buf));
    ck_assert_msg(n >= 0, "refused %s %s", good[_i].host, good[_i].target);
    ck_assert_str_eq(buf, good[_i].want);
    ck_assert_int_eq(n, (int) strlen(good[_i].want));
}
END_TEST

START_TEST(test_bad)
{
    char buf[512];

    ck_assert_int_eq(loc(bad[_i].host, bad[_i].target, buf, sizeof(buf)), -1);
}
END_TEST

START_TEST(test_limits)
{
    char   host[300], buf[600];
    size_t i;

    /* 253 bytes of name: fine; 254: refused */
    for (i = 0; i < 253; i++) {
        host[i] = (i % 10 == 9) ? '.' : 'a';
    }
    host[253] = '\0';
    ck_assert_int_eq(loc(host, "/", buf, sizeof(buf)), 8 + 253 + 1);
    host[253] = 'a';
    host[254] = '\0';
    ck_assert_int_eq(loc(host, "/", buf, sizeof(buf)), -1);

    /* the buffer bound: exactly enough, then one byte short */
    ck_assert_int_eq(loc("a.test", "/xy", buf, sizeof("https://a.test/xy")), 17);
    ck_assert_str_eq(buf, "https://a.test/xy");
    ck_assert_int_eq(loc("a.test", "/xy", buf, sizeof("https://a.test/xy") - 1), -1);
    /* ... and with the "/" added before a bare query */
    ck_assert_int_eq(loc("a.test", "?x", buf, sizeof("https://a.test/?x")), 17);
    ck_assert_str_eq(buf, "https://a.test/?x");
    ck_assert_int_eq(loc("a.test", "?x", buf, sizeof("https://a.test/?x") - 1), -1);
    ck_assert_int_eq(hm_redirect_location(NULL, 0, "/", 1, buf, sizeof(buf)), -1);
    ck_assert_int_eq(hm_redirect_location(NULL, 0, "http://a/", 9, buf, sizeof(buf)), 10);
    ck_assert_str_eq(buf, "https://a/");
    ck_assert_int_eq(hm_redirect_location("a", 1, NULL, 0, buf, sizeof(buf)), -1);

    /* lengths are honoured: no NUL needed, nothing read past them */
    ck_assert_int_eq(hm_redirect_location("a.test:80GARBAGE", 9, "/pXX", 2, buf,
                                          sizeof(buf)), 16);
    ck_assert_str_eq(buf, "https://a.test/p");
}
END_TEST

static Suite *
hm_admin_suite(void)
{
    Suite *s = suite_create("hm_admin");
    TCase *tc = tcase_create("redirect");

    tcase_add_loop_test(tc, test_good, 0, (int) hm_nelem(good));
    tcase_add_loop_test(tc, test_bad, 0, (int) hm_nelem(bad));
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(hm_admin_suite)

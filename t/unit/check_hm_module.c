/*
 * check_hm_module.c: unit tests of hm_modules_check_conf()
 * (src/core/hm_module.c), the check that refuses configuration needing a
 * module `./configure --without-MODULE` left out.  The set of compiled-in
 * modules is the test's own (have_* below), so every build runs every
 * case.  Configurations are loaded with hm_conf_load_buffer() from inline
 * JSON (' stands for ") under the name t/unit/data/conf/test.json, so the
 * certificate paths reach the fixtures of t/unit/data/conf.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_module.h"
#include "hm_check.h"

#include <stdio.h>

#define NAME "t/unit/data/conf/test.json"

/* A terminating site s (and a passthrough site p) with SITE_EXTRA in s. */
#define TERM(SITE_EXTRA) \
    "{'certificates': {'e': {'cert': 'ecdsa.pem', 'key': 'ecdsa.key'}}," \
    " 'upstreams': {'be': {'servers': ['127.0.0.1:9000']}}," \
    " 'listeners': [{'listen': ['127.0.0.1:8443'], 'sites': ['s', 'p']}]," \
    " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate'," \
    " 'tls': {'certificates': ['e']}, " SITE_EXTRA \
    " 'routes': [{'status': 200}]}," \
    " 'p': {'server_names': ['p.test'], 'mode': 'passthrough'," \
    " 'upstream': 'be'}}}"

static char *out_text;

static int
have_all(const char *name)
{
    (void) name;
    return 1;
}

static int
have_no_headers(const char *name)
{
    return strcmp(name, "headers_sanitise") != 0;
}

/* Loads json and runs the module check with have(); returns the number
 * of problems, their text in out_text. */
static int
check(const char *json, int (*have)(const char *))
{
    char      *buf, *p;
    size_t     olen;
    FILE      *f;
    hm_conf_t *conf;
    int        nerr, n;

    buf = strdup(json);
    for (p = buf; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    conf = hm_conf_load_buffer(buf, strlen(buf), NAME, HM_CONF_NO_RESOLVE,
                               stderr, &nerr);
    free(buf);
    ck_assert_msg(conf != NULL, "the test configuration does not load");
    free(out_text);
    out_text = NULL;
    f = open_memstream(&out_text, &olen);
    ck_assert_ptr_nonnull(f);
    n = hm_modules_check_conf(conf, have, f, NAME);
    fclose(f);
    hm_conf_free(conf);
    return n;
}

static void
assert_has(const char *want)
{
    ck_assert_msg(strstr(out_text, want) != NULL, "expected \"%s\" in:\n%s",
                  want, out_text);
}

/* Without headers_sanitise, the default "forwarded": "replace" alone is
 * refused: the client's X-Forwarded-For would reach the backend. */
START_TEST(test_default_forwarded)
{
    ck_assert_int_eq(check(TERM(""), have_all), 0);
    ck_assert_int_eq(check(TERM(""), have_no_headers), 1);
    assert_has(NAME ": sites.s.headers.forwarded: \"replace\" needs the "
               "headers_sanitise module (this hamlyn was built "
               "--without-headers_sanitise)");
    ck_assert_int_eq(check(TERM("'headers': {'forwarded': 'append'},"),
                           have_no_headers), 1);
    assert_has("sites.s.headers.forwarded: \"append\" needs the "
               "headers_sanitise module");
    /* "off" asks nothing of the module; passthrough sites never do. */
    ck_assert_int_eq(check(TERM("'headers': {'forwarded': 'off'},"),
                           have_no_headers), 0);
    ck_assert_str_eq(out_text, "");
}
END_TEST

/* Every header rule is refused at its own path, in one run. */
START_TEST(test_each_rule)
{
    const char *json = TERM("'headers': {'forwarded': 'off',"
                            " 'client_cert_header': 'X-Client-Cert',"
                            " 'strip_request': ['X-User-Id'],"
                            " 'set_request': {'X-Edge': 'h'},"
                            " 'strip_response': ['Server'],"
                            " 'set_response': {'X-Frame-Options': 'DENY'}},");

    ck_assert_int_eq(check(json, have_all), 0);
    ck_assert_int_eq(check(json, have_no_headers), 5);
    assert_has(NAME ": sites.s.headers.client_cert_header: needs the "
               "headers_sanitise module (this hamlyn was built "
               "--without-headers_sanitise): the client's copy of "
               "X-Client-Cert could not be removed\n");
    assert_has(NAME ": sites.s.headers.strip_request: needs the "
               "headers_sanitise module");
    assert_has(NAME ": sites.s.headers.set_request: needs the ");
    assert_has(NAME ": sites.s.headers.strip_response: needs the ");
    assert_has(NAME ": sites.s.headers.set_response: needs the ");
    ck_assert_msg(strstr(out_text, "warning") == NULL, "%s", out_text);
}
END_TEST

static Suite *
module_suite(void)
{
    Suite *s = suite_create("hm_module");
    TCase *tc = tcase_create("check_conf");

    tcase_add_test(tc, test_default_forwarded);
    tcase_add_test(tc, test_each_rule);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(module_suite)

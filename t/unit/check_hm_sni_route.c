/* Unit tests of modules/sni_route: table build and name matching. */
#include "hm_core.h"
#include "hm_conn.h"
#include "hm_cycle.h"
#include "hm_module.h"
#include "hm_tls_hello.h"
#include "hm_check.h"

extern hm_module_t hm_sni_route_module;
hm_conf_site_t *hm_sni_route_lookup(hm_cycle_t *cycle, int li,
                                    const char *name);

static hm_cycle_t         cycle;
static hm_conf_t          conf;
static hm_conf_site_t     sites[4];
static hm_conf_site_t    *lsites[4];
static hm_conf_listener_t listeners[2];

static char *n_a[] = { "a.test", "Mixed.Test" };
static char *n_w[] = { "*.wild.test" };
static char *n_e[] = { "exact.wild.test" };
static char *n_t[] = { "*.term.test", "term.test" };

static void
setup(void)
{
    memset(&cycle, 0, sizeof(cycle));
    memset(&conf, 0, sizeof(conf));
    memset(sites, 0, sizeof(sites));
    memset(listeners, 0, sizeof(listeners));
    sites[0].name = "a";     sites[0].server_names = n_a; sites[0].nserver_names = 2;
    sites[0].mode = HM_SITE_PASSTHROUGH;
    sites[1].name = "wild";  sites[1].server_names = n_w; sites[1].nserver_names = 1;
    sites[1].mode = HM_SITE_PASSTHROUGH;
    sites[2].name = "exact"; sites[2].server_names = n_e; sites[2].nserver_names = 1;
    sites[2].mode = HM_SITE_PASSTHROUGH;
    sites[3].name = "term";  sites[3].server_names = n_t; sites[3].nserver_names = 2;
    sites[3].mode = HM_SITE_TERMINATE;
    lsites[0] = &sites[0]; lsites[1] = &sites[1];
    lsites[2] = &sites[2]; lsites[3] = &sites[3];
    listeners[0].name = "main";
    listeners[0].index = 0;
    listeners[0].sites = lsites;
    listeners[0].nsites = 4;
    listeners[0].default_site = &sites[0];
    listeners[1].name = "strict";
    listeners[1].index = 1;
    listeners[1].sites = lsites + 1;    /* wild, exact, term */
    listeners[1].nsites = 3;
    conf.listeners = listeners;
    conf.nlisteners = 2;
    conf.sites = sites;
    conf.nsites = 4;
    cycle.conf = &conf;
    cycle.pool = hm_pool_new(4096);
    ck_assert_int_eq(hm_modules_init(), HM_OK);
    ck_assert_int_eq(hm_sni_route_module.postconfig(&cycle), HM_OK);
}

START_TEST(exact_wildcard_and_case)
{
    setup();
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "a.test"), &sites[0]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "A.TEST"), &sites[0]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "mixed.test"), &sites[0]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "x.wild.test"), &sites[1]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "X.WILD.test"), &sites[1]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "exact.wild.test"), &sites[2]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "term.test"), &sites[3]);
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 0, "api.term.test"), &sites[3]);
}
END_TEST

START_TEST(wildcard_is_one_label)
{
    setup();
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, "a.b.wild.test"));
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, "wild.test"));
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, ".wild.test"));
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, "xwild.test"));
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, "a.test."));
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, "test"));
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 0, ""));
    /* only the listener's own sites */
    ck_assert_ptr_null(hm_sni_route_lookup(&cycle, 1, "a.test"));
    ck_assert_ptr_eq(hm_sni_route_lookup(&cycle, 1, "y.wild.test"), &sites[1]);
}
END_TEST

static hm_conn_t *
mkconn(int li)
{
    static hm_conn_t c;

    memset(&c, 0, sizeof(c));
    c.cycle = &cycle;
    c.listener = &listeners[li];
    return &c;
}

START_TEST(on_client_hello_actions)
{
    hm_tls_hello_t h;
    hm_conn_t *c;

    setup();
    memset(&h, 0, sizeof(h));
    h.has_sni = 1;
    strcpy(h.sni, "api.term.test");
    h.sni_len = strlen(h.sni);
    c = mkconn(0);
    ck_assert_int_eq(hm_sni_route_module.on_client_hello(c, &h), HM_DONE);
    ck_assert_int_eq(c->route_action, HM_ROUTE_TERMINATE);
    ck_assert_ptr_eq(c->site, &sites[3]);

    strcpy(h.sni, "unknown.example");
    h.sni_len = strlen(h.sni);
    c = mkconn(0);
    hm_sni_route_module.on_client_hello(c, &h);
    ck_assert_int_eq(c->route_action, HM_ROUTE_PASSTHROUGH);
    ck_assert_ptr_eq(c->site, &sites[0]);       /* default site */

    c = mkconn(1);
    hm_sni_route_module.on_client_hello(c, &h);
    ck_assert_int_eq(c->route_action, HM_ROUTE_REJECT);
    ck_assert_int_eq(c->alert, HM_TLS_ALERT_UNRECOGNIZED_NAME);
    ck_assert_ptr_null(c->site);

    h.has_sni = 0;
    h.sni_len = 0;
    h.sni[0] = '\0';
    c = mkconn(0);
    hm_sni_route_module.on_client_hello(c, &h);
    ck_assert_ptr_eq(c->site, &sites[0]);       /* no SNI: default */
    c = mkconn(1);
    hm_sni_route_module.on_client_hello(c, &h);
    ck_assert_int_eq(c->route_action, HM_ROUTE_REJECT);
}
END_TEST

START_TEST(duplicate_names_refused)
{
    static char *dup[] = { "A.test" };

    setup();
    sites[1].server_names = dup;
    ck_assert_int_eq(hm_sni_route_module.postconfig(&cycle), HM_ERROR);
}
END_TEST

static Suite *
sni_suite(void)
{
    Suite *s = suite_create("hm_sni_route");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, exact_wildcard_and_case);
    tcase_add_test(tc, wildcard_is_one_label);
    tcase_add_test(tc, on_client_hello_actions);
    tcase_add_test(tc, duplicate_names_refused);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(sni_suite)

/* Unit tests of src/upstream/hm_upstream.c: balancing and passive health. */
#include "hm_core.h"
#include "hm_upstream.h"
#include "hm_check.h"

#include <arpa/inet.h>
#include <stdio.h>

static hm_conf_server_t   servers[4];
static hm_conf_upstream_t up, up3, up4;

static void
mk(int balance, int n, const int *weights)
{
    int i;

    memset(&up, 0, sizeof(up));
    memset(servers, 0, sizeof(servers));
    for (i = 0; i < n; i++) {
        struct sockaddr_in *sin = (struct sockaddr_in *) &servers[i].addr.sa;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t) (1000 + i));
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        servers[i].addr.len = sizeof(*sin);
        snprintf(servers[i].addr.text, sizeof(servers[i].addr.text),
                 "127.0.0.1:%d", 1000 + i);
        servers[i].weight = weights ? weights[i] : 1;
    }
    up.name = "u";
    up.servers = servers;
    up.nservers = (size_t) n;
    up.balance = balance;
    up.max_fails = 2;
    up.fail_timeout_s = 10;
}

START_TEST(rr_weighted_is_proportional_and_smooth)
{
    static const int w[] = { 2, 1, 1 };
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;
    int count[3] = { 0, 0, 0 }, i, win[3] = { 0, 0, 0 };

    mk(HM_BALANCE_ROUND_ROBIN, 3, w);
    rt = hm_upstream_rt(&up);
    ck_assert_int_eq((int) rt->npeers, 3);
    for (i = 0; i < 400; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        ck_assert_ptr_nonnull(p);
        count[p->index]++;
        win[p->index]++;
        if (i % 4 == 3) {
            /* Smooth: every window of 4 picks has the 2:1:1 shares. */
            ck_assert_int_eq(win[0], 2);
            ck_assert_int_eq(win[1], 1);
            win[0] = win[1] = win[2] = 0;
        }
        hm_upstream_peer_done(p, 1);
        hm_upstream_peer_release(p);
    }
    ck_assert_int_eq(count[0], 200);
    ck_assert_int_eq(count[1], 100);
    ck_assert_int_eq(count[2], 100);
    ck_assert_int_eq(rt->peers[0].conns, 0);
}
END_TEST

START_TEST(next_server_on_failure_excludes_tried)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *tried[HM_UPSTREAM_MAX_TRIES], *p;
    size_t n = 0;
    int seen = 0;

    mk(HM_BALANCE_ROUND_ROBIN, 3, NULL);
    rt = hm_upstream_rt(&up);
    while ((p = hm_upstream_select(rt, tried, n)) != NULL) {
        ck_assert_int_eq(seen & (1 << p->index), 0);
        seen |= 1 << p->index;
        tried[n++] = p;
        hm_upstream_peer_done(p, 0);
        ck_assert(n <= 3);
    }
    ck_assert_int_eq(seen, 7);
    ck_assert_int_eq(rt->peers[0].conns + rt->peers[1].conns
                     + rt->peers[2].conns, 0);
}
END_TEST

START_TEST(passive_health_marks_down_then_skips)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;
    int i;

    mk(HM_BALANCE_ROUND_ROBIN, 2, NULL);
    rt = hm_upstream_rt(&up);
    /* max_fails = 2: two failures of peer 0 mark it down. */
    hm_upstream_peer_result(&rt->peers[0], 0);
    ck_assert(hm_upstream_peer_up(&rt->peers[0], hm_now_ms()));
    hm_upstream_peer_result(&rt->peers[0], 0);
    ck_assert(!hm_upstream_peer_up(&rt->peers[0], hm_now_ms()));
    ck_assert(hm_upstream_peer_up(&rt->peers[0], hm_now_ms() + 11000));
    for (i = 0; i < 10; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        ck_assert_int_eq(p->index, 1);
        hm_upstream_peer_release(p);
    }
    /* All down: the one recovering first is still tried. */
    hm_upstream_peer_result(&rt->peers[1], 0);
    hm_upstream_peer_result(&rt->peers[1], 0);
    p = hm_upstream_select(rt, NULL, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->index, 0);
    /* ... but not when a peer was already tried for this client. */
    ck_assert_ptr_null(hm_upstream_select(rt, &p, 1));
    /* Success clears the state. */
    hm_upstream_peer_result(p, 1);
    ck_assert(hm_upstream_peer_up(p, hm_now_ms()));
    hm_upstream_peer_release(p);
}
END_TEST

START_TEST(least_conn_picks_least_loaded)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *a, *b, *c;

    mk(HM_BALANCE_LEAST_CONN, 3, NULL);
    rt = hm_upstream_rt(&up);
    a = hm_upstream_select(rt, NULL, 0);
    b = hm_upstream_select(rt, NULL, 0);
    c = hm_upstream_select(rt, NULL, 0);
    /* Three connections went to three different peers. */
    ck_assert(a != b && b != c && a != c);
    hm_upstream_peer_release(b);
    ck_assert_ptr_eq(hm_upstream_select(rt, NULL, 0), b);
}
END_TEST

START_TEST(random_two_prefers_less_loaded)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;
    int i;

    mk(HM_BALANCE_RANDOM_TWO, 2, NULL);
    rt = hm_upstream_rt(&up);
    rt->peers[0].conns = 50;
    for (i = 0; i < 20; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        ck_assert_int_eq(p->index, 1);
        hm_upstream_peer_release(p);
    }
    /* With 4 peers and 0 loaded heavily, it is never chosen. */
    mk(HM_BALANCE_RANDOM_TWO, 4, NULL);
    up4 = up;
    rt = hm_upstream_rt(&up4);
    rt->peers[0].conns = 1000;
    for (i = 0; i < 200; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        ck_assert_int_ne(p->index, 0);
        hm_upstream_peer_release(p);
    }
}
END_TEST

/* random_two draws its two candidates by weight: idle servers of weights
 * 1:3 get about a quarter and three quarters of the picks (uniform draws
 * gave a half each, whatever the weights). */
START_TEST(random_two_honours_weights)
{
    static const int w[] = { 1, 3 };
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;
    int count[2] = { 0, 0 }, i;

    mk(HM_BALANCE_RANDOM_TWO, 2, w);
    rt = hm_upstream_rt(&up);
    for (i = 0; i < 4000; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        count[p->index]++;
        hm_upstream_peer_release(p);
    }
    ck_assert_int_gt(count[1], 2700);
    ck_assert_int_lt(count[1], 3300);
}
END_TEST

START_TEST(single_and_empty)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;

    mk(HM_BALANCE_ROUND_ROBIN, 1, NULL);
    rt = hm_upstream_rt(&up);
    p = hm_upstream_select(rt, NULL, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->text, "127.0.0.1:1000");
    ck_assert_ptr_null(hm_upstream_select(rt, &p, 1));
    hm_upstream_peer_done(p, 0);
    ck_assert_int_eq(p->conns, 0);
}
END_TEST

/* least_conn compares conns / weight and breaks ties by (weighted) round
 * robin: not always the heaviest server. */
START_TEST(least_conn_weights_and_ties_round_robin)
{
    static const int w2[] = { 2, 1 }, w3[] = { 3, 1 };
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;
    int count[3] = { 0, 0, 0 }, i;

    /* Equal weights, always idle: every pick is a tie, spread evenly. */
    mk(HM_BALANCE_LEAST_CONN, 3, NULL);
    rt = hm_upstream_rt(&up);
    for (i = 0; i < 30; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        count[p->index]++;
        hm_upstream_peer_release(p);
    }
    ck_assert_int_eq(count[0], 10);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);

    /* Weights 2:1, always idle: ties go round robin by weight (2:1), not
     * all to the heavier server. */
    mk(HM_BALANCE_LEAST_CONN, 2, w2);
    up4 = up;
    rt = hm_upstream_rt(&up4);
    count[0] = count[1] = 0;
    for (i = 0; i < 30; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        count[p->index]++;
        hm_upstream_peer_release(p);
    }
    ck_assert_int_eq(count[0], 20);
    ck_assert_int_eq(count[1], 10);

    /* Weights 3:1 with 2 and 1 open connections: 2/3 < 1/1, peer 0. */
    mk(HM_BALANCE_LEAST_CONN, 2, w3);
    up3 = up;
    rt = hm_upstream_rt(&up3);
    ck_assert_int_eq(rt->peers[0].weight, 3);
    rt->peers[0].conns = 2;
    rt->peers[1].conns = 1;
    p = hm_upstream_select(rt, NULL, 0);
    ck_assert_ptr_eq(p, &rt->peers[0]);
    rt->peers[0].conns = 4;         /* 4/3 > 1/1: peer 1 */
    p = hm_upstream_select(rt, NULL, 0);
    ck_assert_ptr_eq(p, &rt->peers[1]);
}
END_TEST

/* A server that passes its active health checks again gets traffic at
 * once, even if passive health had ejected it. */
START_TEST(health_up_clears_passive_ejection)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;
    int i;

    mk(HM_BALANCE_ROUND_ROBIN, 2, NULL);
    rt = hm_upstream_rt(&up);
    hm_upstream_peer_result(&rt->peers[0], 0);
    hm_upstream_peer_result(&rt->peers[0], 0);
    hm_upstream_peer_set_health(&rt->peers[0], 0);
    ck_assert(!hm_upstream_peer_up(&rt->peers[0], hm_now_ms()));
    hm_upstream_peer_set_health(&rt->peers[0], 1);
    ck_assert(hm_upstream_peer_up(&rt->peers[0], hm_now_ms()));
    ck_assert_int_eq(rt->peers[0].fails, 0);
    ck_assert_int_eq((int) rt->peers[0].down_until_ms, 0);
    for (i = 0; i < 4; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        ck_assert_int_eq(p->index, i % 2);  /* both peers again */
        hm_upstream_peer_release(p);
    }
}
END_TEST

/* hm_upstream_select_up(): no fallback when the group is down, which
 * hm_upstream_select() keeps; the same answers while a server is up. */
START_TEST(select_up_no_fallback_when_all_down)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;

    mk(HM_BALANCE_ROUND_ROBIN, 2, NULL);
    rt = hm_upstream_rt(&up);
    hm_upstream_peer_result(&rt->peers[0], 0);
    hm_upstream_peer_result(&rt->peers[0], 0);
    p = hm_upstream_select_up(rt, NULL, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->index, 1);
    hm_upstream_peer_release(p);
    hm_upstream_peer_result(&rt->peers[1], 0);
    hm_upstream_peer_result(&rt->peers[1], 0);
    ck_assert_ptr_null(hm_upstream_select_up(rt, NULL, 0));
    p = hm_upstream_select(rt, NULL, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->index, 0);
    hm_upstream_peer_release(p);
    ck_assert_int_eq(rt->peers[0].conns, 0);
    ck_assert_int_eq(rt->peers[1].conns, 0);
}
END_TEST

START_TEST(select_up_single_peer_down)
{
    hm_upstream_rt_t *rt;
    hm_upstream_peer_t *p;

    mk(HM_BALANCE_ROUND_ROBIN, 1, NULL);
    rt = hm_upstream_rt(&up);
    p = hm_upstream_select_up(rt, NULL, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(hm_upstream_select_up(rt, &p, 1));
    hm_upstream_peer_done(p, 0);
    hm_upstream_peer_result(&rt->peers[0], 0);
    ck_assert(!hm_upstream_peer_up(&rt->peers[0], hm_now_ms()));
    ck_assert_ptr_null(hm_upstream_select_up(rt, NULL, 0));
    p = hm_upstream_select(rt, NULL, 0);     /* the only one, tried anyway */
    ck_assert_ptr_nonnull(p);
    hm_upstream_peer_release(p);
    ck_assert_int_eq(rt->peers[0].conns, 0);
}
END_TEST

static Suite *
upstream_suite(void)
{
    Suite *s = suite_create("hm_upstream");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, rr_weighted_is_proportional_and_smooth);
    tcase_add_test(tc, next_server_on_failure_excludes_tried);
    tcase_add_test(tc, passive_health_marks_down_then_skips);
    tcase_add_test(tc, least_conn_picks_least_loaded);
    tcase_add_test(tc, random_two_prefers_less_loaded);
    tcase_add_test(tc, random_two_honours_weights);
    tcase_add_test(tc, single_and_empty);
    tcase_add_test(tc, least_conn_weights_and_ties_round_robin);
    tcase_add_test(tc, health_up_clears_passive_ejection);
    tcase_add_test(tc, select_up_no_fallback_when_all_down);
    tcase_add_test(tc, select_up_single_peer_down);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(upstream_suite)

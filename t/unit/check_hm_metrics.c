/*
 * check_hm_metrics.c: unit tests of src/core/hm_metrics.c: slot
 * assignment across respawns and reloads, the reaped-worker bookkeeping,
 * outcome folding, summing over slots and the Prometheus text rendering
 * (families, HELP/TYPE, labels, escaping, the "_other" listener bucket).
 * The mapping is a private one here (hm_metrics_create(n, 0)).
 */
#include "hm_core.h"
#include "hm_metrics.h"
#include "hm_check.h"

#include <stdio.h>

/* The value of the series line that starts with "series " in text, or -1. */
static long long
series(const char *text, const char *name)
{
    char        want[256];
    const char *p;
    size_t      n;

    n = (size_t) snprintf(want, sizeof(want), "%s ", name);
    for (p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, want, n) == 0) {
            return strtoll(p + n, NULL, 10);
        }
    }
    return -1;
}

static int
count_str(const char *text, const char *s)
{
    int n = 0;

    while ((text = strstr(text, s)) != NULL) {
        n++;
        text++;
    }
    return n;
}

START_TEST(test_outcome)
{
    ck_assert_int_eq(hm_metrics_outcome(NULL), HM_MX_OUT_OK);
    ck_assert_int_eq(hm_metrics_outcome("ok"), HM_MX_OUT_OK);
    ck_assert_int_eq(hm_metrics_outcome("fixed"), HM_MX_OUT_OK);
    ck_assert_int_eq(hm_metrics_outcome("idle_timeout"), HM_MX_OUT_TIMEOUT);
    ck_assert_int_eq(hm_metrics_outcome("upstream_refused"), HM_MX_OUT_UPSTREAM_ERROR);
    ck_assert_int_eq(hm_metrics_outcome("no_sni_match"), HM_MX_OUT_NO_SNI_MATCH);
    ck_assert_int_eq(hm_metrics_outcome("redirect"), HM_MX_OUT_REDIRECT);
    ck_assert_int_eq(hm_metrics_outcome("something new"), HM_MX_OUT_OTHER);
    ck_assert_int_eq(hm_metrics_outcome(""), HM_MX_OUT_OTHER);
    ck_assert_str_eq(hm_metrics_outcome_name(HM_MX_OUT_TLS_HANDSHAKE_FAILED),
                     "tls_handshake_failed");
    ck_assert_str_eq(hm_metrics_outcome_name(-1), "other");
    ck_assert_str_eq(hm_metrics_outcome_name(HM_MX_NOUTCOMES), "other");
}
END_TEST

START_TEST(test_slot_layout)
{
    hm_metrics_shm_t *shm = hm_metrics_create(4, 0);

    ck_assert_ptr_nonnull(shm);
    ck_assert_uint_eq(sizeof(hm_metrics_slot_t) % 64, 0);
    ck_assert_uint_eq(offsetof(hm_metrics_shm_t, slots) % 64, 0);
    ck_assert_uint_eq((uintptr_t) &shm->slots[1] % 64, 0);
    ck_assert_uint_eq(shm->nslots, 4);
    ck_assert_uint_eq(shm->magic, HM_METRICS_MAGIC);
    ck_assert_ptr_null(hm_metrics_create(0, 0));
    hm_metrics_free(shm);
}
END_TEST

/* Respawn: same slot back.  Reload: the old generation keeps its slots,
 * the new one takes free ones from the top; reaping frees and zeroes the
 * active gauge but keeps the totals. */
START_TEST(test_slots)
{
    hm_metrics_shm_t *shm = hm_metrics_create(8, 0);
    int               a, b, c, d;

    shm->generation = 1;
    shm->workers = 2;
    a = hm_metrics_acquire(shm, 0);
    hm_metrics_owned(shm, a, 100);
    b = hm_metrics_acquire(shm, 1);
    hm_metrics_owned(shm, b, 101);
    ck_assert_int_eq(a, 0);
    ck_assert_int_eq(b, 1);
    ck_assert_uint_eq(hm_metrics_workers_up(shm), 2);

    /* fork failure drops the reservation */
    c = hm_metrics_acquire(shm, 2);
    ck_assert_int_eq(shm->slots[c].owner, -1);
    hm_metrics_owned(shm, c, 0);
    ck_assert_int_eq(shm->slots[c].owner, 0);

    /* worker 101 dies with 5 open connections; 7 were counted */
    shm->slots[1].c[HM_MX_CONNECTIONS_ACTIVE] = 5;
    shm->slots[1].c[HM_MX_PASSTHROUGH_CONNECTIONS] = 7;
    hm_metrics_reaped(shm, 101);
    ck_assert_int_eq(shm->slots[1].owner, 0);
    ck_assert_uint_eq(shm->slots[1].c[HM_MX_CONNECTIONS_ACTIVE], 0);
    ck_assert_uint_eq(shm->slots[1].c[HM_MX_PASSTHROUGH_CONNECTIONS], 7);
    ck_assert_uint_eq(hm_metrics_workers_up(shm), 1);
    /* its successor gets the same slot and keeps accumulating */
    c = hm_metrics_acquire(shm, 1);
    ck_assert_int_eq(c, 1);
    hm_metrics_owned(shm, c, 102);
    ck_assert_uint_eq(hm_metrics_workers_up(shm), 2);

    /* reload: new generation while 100 and 102 drain */
    shm->generation = 2;
    ck_assert_uint_eq(hm_metrics_workers_up(shm), 0);
    c = hm_metrics_acquire(shm, 0);
    hm_metrics_owned(shm, c, 200);
    d = hm_metrics_acquire(shm, 1);
    hm_metrics_owned(shm, d, 201);
    ck_assert_int_eq(c, 7);
    ck_assert_int_eq(d, 6);
    ck_assert_uint_eq(hm_metrics_workers_up(shm), 2);
    hm_metrics_reaped(shm, 100);
    hm_metrics_reaped(shm, 102);
    ck_assert_uint_eq(hm_metrics_workers_up(shm), 2);
    /* unknown pids are ignored */
    hm_metrics_reaped(shm, 999);
    hm_metrics_reaped(shm, 0);
    hm_metrics_reaped(NULL, 100);
    ck_assert_int_eq(hm_metrics_acquire(NULL, 0), -1);
    hm_metrics_free(shm);
}
END_TEST

/* More live processes than slots: slots are shared, nothing breaks. */
START_TEST(test_slots_full)
{
    hm_metrics_shm_t *shm = hm_metrics_create(2, 0);
    int               i, s;

    for (i = 0; i < 2; i++) {
        hm_metrics_owned(shm, hm_metrics_acquire(shm, i), 10 + i);
    }
    s = hm_metrics_acquire(shm, 5);
    ck_assert_int_ge(s, 0);
    ck_assert_int_lt(s, 2);
    hm_metrics_owned(shm, -1, 5);
    hm_metrics_owned(shm, 2, 5);
    hm_metrics_free(shm);
}
END_TEST

START_TEST(test_sum)
{
    hm_metrics_shm_t  *shm = hm_metrics_create(3, 0);
    hm_metrics_slot_t  sum;

    shm->slots[0].c[HM_MX_TLS_HANDSHAKES] = 3;
    shm->slots[1].c[HM_MX_TLS_HANDSHAKES] = 4;
    shm->slots[2].c[HM_MX_TLS_HANDSHAKES] = 5;
    shm->slots[0].conns[1][HM_MX_OUT_OK] = 10;
    shm->slots[2].conns[1][HM_MX_OUT_OK] = 1;
    shm->slots[2].c[HM_MX_BYTES_SENT] = UINT64_C(1) << 40;
    hm_metrics_sum(shm, &sum);
    ck_assert_uint_eq(sum.c[HM_MX_TLS_HANDSHAKES], 12);
    ck_assert_uint_eq(sum.conns[1][HM_MX_OUT_OK], 11);
    ck_assert_uint_eq(sum.conns[0][HM_MX_OUT_OK], 0);
    ck_assert_uint_eq(sum.c[HM_MX_BYTES_SENT], UINT64_C(1) << 40);
    hm_metrics_free(shm);
}
END_TEST

/* The process-local helpers write into hm_metrics_local: a dummy slot
 * before attach, the mapping's slot after. */
START_TEST(test_local)
{
    hm_metrics_slot_t *dummy = hm_metrics_local;

    ck_assert_ptr_nonnull(dummy);
    HM_METRIC_INC(ADMIN_REQUESTS);                 /* no mapping: harmless */
    ck_assert_int_eq(hm_metrics_init(), HM_OK);
    ck_assert_ptr_nonnull(hm_metrics_shm);
    hm_metrics_generation(2, 0);
    hm_metrics_generation(2, 1);
    ck_assert_uint_eq(hm_metrics_shm->generation, 2);
    ck_assert_uint_eq(hm_metrics_shm->reloads, 1);
    hm_metrics_worker_restart();
    ck_assert_uint_eq(hm_metrics_shm->worker_restarts, 1);
    hm_metrics_attach(3);
    ck_assert_ptr_eq(hm_metrics_local, &hm_metrics_shm->slots[3]);
    hm_metrics_attach(-1);                         /* ignored */
    hm_metrics_attach(HM_METRICS_SLOTS);
    ck_assert_ptr_eq(hm_metrics_local, &hm_metrics_shm->slots[3]);

    HM_METRIC_INC(TLS_HANDSHAKES);
    HM_METRIC_ADD(BYTES_RECEIVED, 100);
    HM_METRIC_INC(CONNECTIONS_ACTIVE);
    HM_METRIC_DEC(CONNECTIONS_ACTIVE);
    hm_metrics_http_status(200);
    hm_metrics_http_status(204);
    hm_metrics_http_status(301);
    hm_metrics_http_status(599);
    hm_metrics_http_status(600);                   /* ignored */
    hm_metrics_http_status(99);                    /* ignored */
    hm_metrics_http_status(0);
    hm_metrics_conn_done(0, NULL);
    hm_metrics_conn_done(0, "timeout");
    hm_metrics_conn_done(-1, "ok");                /* no listener: ignored */
    hm_metrics_conn_done(1000, "ok");              /* -> the last bucket */
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_TLS_HANDSHAKES], 1);
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_BYTES_RECEIVED], 100);
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_CONNECTIONS_ACTIVE], 0);
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_HTTP_2XX], 2);
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_HTTP_3XX], 1);
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_HTTP_5XX], 1);
    ck_assert_uint_eq(hm_metrics_local->c[HM_MX_HTTP_1XX], 0);
    ck_assert_uint_eq(hm_metrics_local->conns[0][HM_MX_OUT_OK], 1);
    ck_assert_uint_eq(hm_metrics_local->conns[0][HM_MX_OUT_TIMEOUT], 1);
    ck_assert_uint_eq(hm_metrics_local->conns[HM_METRICS_LISTENERS - 1]
                                           [HM_MX_OUT_OK], 1);
}
END_TEST

START_TEST(test_render)
{
    hm_metrics_shm_t  *shm = hm_metrics_create(4, 0);
    const char        *names[] = { "main", "we\"ird\\name\n" };
    char              *text;
    size_t             len;

    shm->generation = 1;
    shm->workers = 2;
    shm->worker_restarts = 3;
    hm_metrics_owned(shm, hm_metrics_acquire(shm, 0), 10);
    shm->slots[0].c[HM_MX_PASSTHROUGH_CONNECTIONS] = 2;
    shm->slots[3].c[HM_MX_PASSTHROUGH_CONNECTIONS] = 5;
    shm->slots[1].c[HM_MX_HTTP_4XX] = 6;
    shm->slots[1].c[HM_MX_CONNECTIONS_ACTIVE] = 1;
    shm->slots[0].conns[0][HM_MX_OUT_UPSTREAM_ERROR] = 4;
    shm->slots[2].conns[0][HM_MX_OUT_UPSTREAM_ERROR] = 1;
    shm->slots[2].conns[1][HM_MX_OUT_REDIRECT] = 9;

    text = hm_metrics_render(shm, names, 2, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    ck_assert_int_eq(text[len - 1], '\n');
    ck_assert_int_eq(series(text, "hamlyn_passthrough_connections_total"), 7);
    ck_assert_int_eq(series(text, "hamlyn_connections_active"), 1);
    ck_assert_int_eq(series(text, "hamlyn_http_requests_total{code=\"4xx\"}"), 6);
    ck_assert_int_eq(series(text, "hamlyn_http_requests_total{code=\"1xx\"}"), 0);
    ck_assert_int_eq(series(text, "hamlyn_http_requests_total{code=\"5xx\"}"), 0);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"main\","
                                  "outcome=\"upstream_error\"}"), 5);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"main\","
                                  "outcome=\"ok\"}"), 0);
    /* label values are escaped */
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener="
                                  "\"we\\\"ird\\\\name\\n\",outcome=\"redirect\"}"), 9);
    ck_assert_int_eq(series(text, "hamlyn_worker_restarts_total"), 3);
    ck_assert_int_eq(series(text, "hamlyn_workers"), 2);
    ck_assert_int_eq(series(text, "hamlyn_workers_up"), 1);
    ck_assert_int_eq(series(text, "hamlyn_reloads_total"), 0);
    /* one HELP and one TYPE per family, series per listener x outcome */
    ck_assert_int_eq(count_str(text, "# TYPE hamlyn_connections_total counter\n"), 1);
    ck_assert_int_eq(count_str(text, "# HELP hamlyn_connections_total "), 1);
    ck_assert_int_eq(count_str(text, "# TYPE hamlyn_connections_active gauge\n"), 1);
    ck_assert_int_eq(count_str(text, "# TYPE hamlyn_http_requests_total counter\n"), 1);
    ck_assert_int_eq(count_str(text, "# TYPE "), count_str(text, "# HELP "));
    ck_assert_int_eq(count_str(text, "\nhamlyn_connections_total{"),
                     2 * HM_MX_NOUTCOMES);
    ck_assert_ptr_null(strstr(text, "_other"));
    free(text);

    /* no listener names: no connections_total series, still valid */
    text = hm_metrics_render(shm, NULL, 0, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(count_str(text, "\nhamlyn_connections_total{"), 0);
    ck_assert_int_eq(count_str(text, "# TYPE hamlyn_connections_total"), 1);
    free(text);
    hm_metrics_free(shm);
}
END_TEST

/* More listeners than labelled buckets: the last bucket is "_other". */
START_TEST(test_render_many_listeners)
{
    hm_metrics_shm_t *shm = hm_metrics_create(1, 0);
    const char       *names[40];
    char              buf[40][8], *text;
    size_t            i, len;

    for (i = 0; i < 40; i++) {
        snprintf(buf[i], sizeof(buf[i]), "l%zu", i);
        names[i] = buf[i];
    }
    shm->slots[0].conns[HM_METRICS_LISTENERS - 1][HM_MX_OUT_OK] = 8;
    shm->slots[0].conns[HM_METRICS_LISTENERS - 2][HM_MX_OUT_OK] = 2;
    text = hm_metrics_render(shm, names, 40, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"_other\","
                                  "outcome=\"ok\"}"), 8);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"l30\","
                                  "outcome=\"ok\"}"), 2);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"l31\","
                                  "outcome=\"ok\"}"), -1);
    ck_assert_int_eq(count_str(text, "\nhamlyn_connections_total{"),
                     HM_METRICS_LISTENERS * HM_MX_NOUTCOMES);
    free(text);
    hm_metrics_free(shm);
}
END_TEST

/* Listener rows are given by name and kept: a reload that reorders,
 * removes or adds listeners never moves a series to another label; the
 * render without names labels the rows recorded in the mapping. */
START_TEST(test_listener_rows)
{
    hm_metrics_shm_t *shm = hm_metrics_create(1, 0);
    char              buf[16], *text;
    size_t            len;
    int               i;

    ck_assert_int_eq(hm_metrics_listener_row(shm, "main"), 0);
    ck_assert_int_eq(hm_metrics_listener_row(shm, "redir"), 1);
    /* reload: another order, one removed, one added */
    ck_assert_int_eq(hm_metrics_listener_row(shm, "redir"), 1);
    ck_assert_int_eq(hm_metrics_listener_row(shm, "extra"), 2);
    ck_assert_int_eq(hm_metrics_listener_row(shm, "main"), 0);
    ck_assert_uint_eq(shm->nlisteners, 3);
    shm->slots[0].conns[0][HM_MX_OUT_OK] = 7;
    shm->slots[0].conns[1][HM_MX_OUT_REDIRECT] = 5;
    text = hm_metrics_render(shm, NULL, 0, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"main\","
                                  "outcome=\"ok\"}"), 7);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"redir\","
                                  "outcome=\"redirect\"}"), 5);
    ck_assert_int_eq(series(text, "hamlyn_connections_total{listener=\"extra\","
                                  "outcome=\"ok\"}"), 0);
    ck_assert_int_eq(count_str(text, "\nhamlyn_connections_total{"),
                     3 * HM_MX_NOUTCOMES);
    ck_assert_ptr_null(strstr(text, "_other"));
    free(text);

    /* past the labelled rows: "_other", shown once used */
    for (i = 3; i < HM_METRICS_LISTENERS + 5; i++) {
        snprintf(buf, sizeof(buf), "l%d", i);
        ck_assert_int_eq(hm_metrics_listener_row(shm, buf),
                         hm_min(i, HM_METRICS_LISTENERS - 1));
    }
    ck_assert_int_eq(hm_metrics_listener_row(shm, "l3"), 3);
    text = hm_metrics_render(shm, NULL, 0, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(count_str(text, "\nhamlyn_connections_total{"),
                     HM_METRICS_LISTENERS * HM_MX_NOUTCOMES);
    ck_assert_int_eq(count_str(text, "listener=\"_other\",outcome=\"ok\""), 1);
    free(text);
    ck_assert_int_eq(hm_metrics_listener_row(NULL, "x"),
                     HM_METRICS_LISTENERS - 1);
    hm_metrics_free(shm);
}
END_TEST

static Suite *
hm_metrics_suite(void)
{
    Suite *s = suite_create("hm_metrics");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_outcome);
    tcase_add_test(tc, test_slot_layout);
    tcase_add_test(tc, test_slots);
    tcase_add_test(tc, test_slots_full);
    tcase_add_test(tc, test_sum);
    tcase_add_test(tc, test_local);
    tcase_add_test(tc, test_render);
    tcase_add_test(tc, test_render_many_listeners);
    tcase_add_test(tc, test_listener_rows);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(hm_metrics_suite)

/*
 * check_hm_health.c: unit tests of the active health checks
 * (src/upstream/hm_health.c).
 *   - the status line parser on valid, truncated (every prefix) and
 *     malformed input;
 *   - the balancer honouring a peer marked down by health check
 *     (hm_upstream_peer_set_health): skipped, never the "least bad" peer,
 *     no peer at all when every one is down;
 *   - the checks themselves on a real libuv loop against real loopback
 *     sockets: a tiny HTTP server answering 200, one answering 500, one
 *     port nobody listens on, and an upstream used only by passthrough
 *     (TCP connect check).  Timings: interval 1 s, the first check within
 *     0.5 s, so each loop test runs for about 1.5 s.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_cycle.h"
#include "hm_worker.h"
#include "hm_upstream.h"
#include "hm_health.h"
#include "hm_check.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <uv.h>

/* ---- parser ---- */

static int
parse(const char *s, int *status)
{
    return hm_health_parse_status(s, strlen(s), status);
}

START_TEST(parse_valid)
{
    int st = 0;

    ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\n", &st), HM_OK);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(parse("HTTP/1.0 302 Found\r\nLocation: /\r\n", &st),
                     HM_OK);
    ck_assert_int_eq(st, 302);
    ck_assert_int_eq(parse("HTTP/1.1 503\r\n", &st), HM_OK);
    ck_assert_int_eq(st, 503);
    ck_assert_int_eq(parse("HTTP/1.1 204 \n", &st), HM_OK);
    ck_assert_int_eq(st, 204);
    ck_assert_int_eq(parse("HTTP/1.1 404 Not\tFound \xc3\xa9\r\n", &st),
                     HM_OK);
    ck_assert_int_eq(st, 404);
}
END_TEST

START_TEST(parse_truncated)
{
    const char *line = "HTTP/1.1 200 OK\r\n";
    size_t      i;
    int         st;

    /* every strict prefix needs more bytes */
    for (i = 0; i < strlen(line); i++) {
        st = -1;
        ck_assert_msg(hm_health_parse_status(line, i, &st) == HM_AGAIN,
                      "prefix of %zu bytes", i);
        ck_assert_int_eq(st, -1);
    }
}
END_TEST

START_TEST(host_header)
{
    char b[64];

    ck_assert_str_eq(hm_health_host_header(b, sizeof(b), NULL, "10.0.0.1:80"),
                     "10.0.0.1:80");
    ck_assert_str_eq(hm_health_host_header(b, sizeof(b), NULL, "[::1]:8443"),
                     "[::1]:8443");
    ck_assert_str_eq(hm_health_host_header(b, sizeof(b), "api.internal",
                                           "10.0.0.1:80"), "api.internal");
    ck_assert_str_eq(hm_health_host_header(b, sizeof(b), "10.0.0.5",
                                           "10.0.0.5:443"), "10.0.0.5");
    ck_assert_str_eq(hm_health_host_header(b, sizeof(b), "fd00::5",
                                           "[fd00::5]:443"), "[fd00::5]");
    ck_assert_str_eq(hm_health_host_header(b, 6, "fd00::5", "x"), "[fd00");
}
END_TEST

START_TEST(parse_malformed)
{
    char big[HM_HEALTH_MAX_LINE + 10];
    int  st;

    ck_assert_int_eq(parse("SSH-2.0-OpenSSH_9.2\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("\x15\x03\x03\x00\x02\x02\x46", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/2 200\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1  200 OK\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1 20 OK\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1 2000 OK\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1 099 OK\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1 600 OK\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1 200 O\rK\r\n", &st), HM_ERROR);
    ck_assert_int_eq(parse("HTTP/1.1 200 O\x01K\r\n", &st), HM_ERROR);
    ck_assert_int_eq(hm_health_parse_status("HTTP/1.1 200 O\0K\r\n", 18, &st),
                     HM_ERROR);
    ck_assert_int_eq(parse("http/1.1 200 OK\r\n", &st), HM_ERROR);
    /* a status line that never ends */
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 200 ", 13);
    ck_assert_int_eq(hm_health_parse_status(big, sizeof(big), &st),
                     HM_ERROR);
    ck_assert_int_eq(hm_health_parse_status(big, HM_HEALTH_MAX_LINE, &st),
                     HM_ERROR);
    ck_assert_int_eq(hm_health_parse_status(big, HM_HEALTH_MAX_LINE - 1, &st),
                     HM_AGAIN);
    /* the line, CRLF included, must fit in HM_HEALTH_MAX_LINE bytes
     * (found by fuzz_health_status: CR at the last byte, LF past it) */
    big[HM_HEALTH_MAX_LINE - 2] = '\r';
    big[HM_HEALTH_MAX_LINE - 1] = '\n';
    ck_assert_int_eq(hm_health_parse_status(big, sizeof(big), &st), HM_OK);
    ck_assert_int_eq(st, 200);
    big[HM_HEALTH_MAX_LINE - 2] = 'a';
    big[HM_HEALTH_MAX_LINE - 1] = '\r';
    big[HM_HEALTH_MAX_LINE] = '\n';
    ck_assert_int_eq(hm_health_parse_status(big, sizeof(big), &st), HM_ERROR);
    ck_assert_int_eq(hm_health_parse_status(big, HM_HEALTH_MAX_LINE, &st),
                     HM_ERROR);
}
END_TEST

/* ---- balancer and health state ---- */

static hm_conf_server_t   servers[3];
static hm_conf_upstream_t up;

static void
upstream_fixture(size_t n)
{
    size_t i;

    memset(&up, 0, sizeof(up));
    memset(servers, 0, sizeof(servers));
    for (i = 0; i < n; i++) {
        snprintf(servers[i].addr.text, sizeof(servers[i].addr.text),
                 "127.0.0.1:%zu", 10000 + i);
        servers[i].weight = 1;
    }
    up.name = "u";
    up.servers = servers;
    up.nservers = n;
    up.max_fails = 3;
    up.fail_timeout_s = 10;
}

START_TEST(health_down_skipped)
{
    hm_upstream_rt_t   *rt;
    hm_upstream_peer_t *p;
    int                 i;

    upstream_fixture(2);
    rt = hm_upstream_rt(&up);
    hm_upstream_peer_set_health(&rt->peers[0], 0);
    ck_assert(!hm_upstream_peer_up(&rt->peers[0], hm_now_ms()));
    for (i = 0; i < 10; i++) {
        p = hm_upstream_select(rt, NULL, 0);
        ck_assert_ptr_eq(p, &rt->peers[1]);
        hm_upstream_peer_release(p);
    }
    /* back up: traffic again */
    hm_upstream_peer_set_health(&rt->peers[0], 1);
    p = hm_upstream_select(rt, NULL, 0);
    hm_upstream_peer_release(p);
    p = hm_upstream_select(rt, NULL, 0);
    hm_upstream_peer_release(p);
    ck_assert_int_eq((int) rt->peers[0].total_selected, 1);
}
END_TEST

START_TEST(health_all_down_none)
{
    hm_upstream_rt_t *rt;

    upstream_fixture(2);
    rt = hm_upstream_rt(&up);
    hm_upstream_peer_set_health(&rt->peers[0], 0);
    hm_upstream_peer_set_health(&rt->peers[1], 0);
    ck_assert_ptr_null(hm_upstream_select(rt, NULL, 0));

    /* a single server down by health check: no peer either */
    upstream_fixture(1);
    rt = hm_upstream_rt(&up);
    hm_upstream_peer_set_health(&rt->peers[0], 0);
    ck_assert_ptr_null(hm_upstream_select(rt, NULL, 0));
}
END_TEST

START_TEST(health_beats_passive_fallback)
{
    hm_upstream_rt_t   *rt;
    hm_upstream_peer_t *p;

    /* peer 0 down by health check, peer 1 down passively: the passive
     * fallback may pick peer 1, never peer 0 */
    upstream_fixture(2);
    rt = hm_upstream_rt(&up);
    hm_upstream_peer_set_health(&rt->peers[0], 0);
    rt->peers[1].down_until_ms = hm_now_ms() + 60000;
    p = hm_upstream_select(rt, NULL, 0);
    ck_assert_ptr_eq(p, &rt->peers[1]);
    hm_upstream_peer_release(p);
}
END_TEST

/* ---- checks on a real loop ---- */

typedef struct {
    uv_tcp_t  server;
    int       port;
    const char *answer;             /* NULL: accept and say nothing */
    int       requests;
    char      last_request[512];
} test_server_t;

typedef struct {
    uv_tcp_t       tcp;
    test_server_t *ts;
    uv_write_t     wreq;
    char           buf[512];
    size_t         len;
} test_conn_t;

static void
conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
conn_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    test_conn_t *c = h->data;

    b->base = c->buf + c->len;
    b->len = sizeof(c->buf) - 1 - c->len;
}

static void
conn_written(uv_write_t *w, int status)
{
    test_conn_t *c = w->data;

    uv_close((uv_handle_t *) &c->tcp, conn_closed);
}

static void
conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    test_conn_t *c = s->data;
    uv_buf_t     out;

    if (n < 0) {
        uv_close((uv_handle_t *) &c->tcp, conn_closed);
        return;
    }
    c->len += (size_t) n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") == NULL) {
        return;
    }
    c->ts->requests++;
    snprintf(c->ts->last_request, sizeof(c->ts->last_request), "%s", c->buf);
    uv_read_stop(s);
    if (c->ts->answer == NULL) {
        return;                     /* silent: the check times out */
    }
    out = uv_buf_init((char *) c->ts->answer, strlen(c->ts->answer));
    c->wreq.data = c;
    uv_write(&c->wreq, s, &out, 1, conn_written);
}

static void
on_conn(uv_stream_t *server, int status)
{
    test_server_t *ts = server->data;
    test_conn_t   *c;

    ck_assert_int_eq(status, 0);
    c = calloc(1, sizeof(*c));
    c->ts = ts;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    ck_assert_int_eq(uv_accept(server, (uv_stream_t *) &c->tcp), 0);
    uv_read_start((uv_stream_t *) &c->tcp, conn_alloc, conn_read);
}

static void
server_start(uv_loop_t *loop, test_server_t *ts, const char *answer)
{
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    memset(ts, 0, sizeof(*ts));
    ts->answer = answer;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_init(loop, &ts->server), 0);
    ts->server.data = ts;
    ck_assert_int_eq(uv_tcp_bind(&ts->server, (struct sockaddr *) &sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *) &ts->server, 16, on_conn), 0);
    uv_tcp_getsockname(&ts->server, (struct sockaddr *) &ss, &len);
    ts->port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
}

/* A port nobody listens on: bind, read the port, close. */
static int
dead_port(void)
{
    struct sockaddr_in sa;
    socklen_t          len = sizeof(sa);
    int                fd, port;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *) &sa, &len);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void
set_server(hm_conf_server_t *s, int port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *) &s->addr.sa;

    memset(s, 0, sizeof(*s));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t) port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->addr.len = sizeof(*sin);
    snprintf(s->addr.text, sizeof(s->addr.text), "127.0.0.1:%d", port);
    s->weight = 1;
}

static void
stop_loop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void
run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;

    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_loop, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *) &t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Closes a handle left at the end: the test servers (listed in arg, a
 * NULL-terminated array), their accepted connections (freed), the check
 * timers.  The checks' own streams are closing already. */
static void
close_any(uv_handle_t *h, void *arg)
{
    test_server_t **list = arg;
    int             i;

    if (uv_is_closing(h)) {
        return;
    }
    for (i = 0; list[i] != NULL; i++) {
        if (h == (uv_handle_t *) &list[i]->server) {
            uv_close(h, NULL);
            return;
        }
    }
    uv_close(h, h->type == UV_TCP ? conn_closed : NULL);
}

/* Closes every handle left and the loop, so LeakSanitizer sees a clean
 * exit. */
static void
loop_teardown(uv_loop_t *loop, test_server_t **list)
{
    uv_walk(loop, close_any, list);
    uv_run(loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(checks_on_loop)
{
    static hm_conf_upstream_t ups[2];
    static hm_conf_server_t   srv[4];
    static hm_conf_t          conf;
    static hm_cycle_t         cycle;
    static hm_worker_t        w;
    test_server_t             ok, err, silent;
    hm_upstream_rt_t         *rt;
    uv_loop_t                 loop;

    uv_loop_init(&loop);
    server_start(&loop, &ok, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    server_start(&loop, &err, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
    server_start(&loop, &silent, NULL);

    memset(ups, 0, sizeof(ups));
    set_server(&srv[0], ok.port);
    set_server(&srv[1], err.port);
    set_server(&srv[2], dead_port());
    set_server(&srv[3], silent.port);
    ups[0].name = "api";
    ups[0].servers = srv;
    ups[0].nservers = 4;
    ups[0].plaintext_risk = "test";
    ups[0].health_check.present = 1;
    ups[0].health_check.interval_s = 1;
    ups[0].health_check.path = "/healthz";
    ups[0].health_check.fail_after = 1;
    ups[0].health_check.pass_after = 1;
    ups[0].health_check.timeout_ms = 300;
    ups[0].max_fails = 3;

    conf.upstreams = ups;
    conf.nupstreams = 1;
    cycle.conf = &conf;
    w.loop = &loop;
    w.cycle = &cycle;

    ck_assert_int_eq(hm_health_init_worker(&cycle, &w), HM_OK);
    rt = hm_upstream_rt(&ups[0]);
    run_for(&loop, 1200);

    ck_assert_msg(ok.requests >= 1, "the 200 server was checked");
    ck_assert_ptr_nonnull(strstr(ok.last_request, "GET /healthz HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(ok.last_request, "\r\nHost: 127.0.0.1:"));
    ck_assert_ptr_nonnull(strstr(ok.last_request, "\r\nConnection: close\r\n"));
    ck_assert_int_eq(rt->peers[0].health_down, 0);
    ck_assert_msg(err.requests >= 1, "the 500 server was checked");
    ck_assert_int_eq(rt->peers[1].health_down, 1);
    ck_assert_int_eq(rt->peers[2].health_down, 1);   /* refused */
    ck_assert_int_eq(rt->peers[3].health_down, 1);   /* timed out */

    /* the 500 server recovers: up again after pass_after = 1 check */
    err.answer = "HTTP/1.1 204 No Content\r\n\r\n";
    run_for(&loop, 1300);
    ck_assert_int_eq(rt->peers[1].health_down, 0);
    ck_assert_int_eq(rt->peers[0].health_down, 0);
    ck_assert_int_eq(rt->peers[2].health_down, 1);

    hm_health_exit_worker(&cycle, &w);
    {
        test_server_t *list[] = { &ok, &err, &silent, NULL };

        loop_teardown(&loop, list);
    }
}
END_TEST

START_TEST(checks_counts_and_tcp_only)
{
    static hm_conf_upstream_t ups[1];
    static hm_conf_server_t   srv[2];
    static hm_conf_t          conf;
    static hm_cycle_t         cycle;
    static hm_worker_t        w;
    test_server_t             silent;
    hm_upstream_rt_t         *rt;
    uv_loop_t                 loop;

    /* passthrough-only upstream (no tls, no plaintext): a TCP connect is
     * the check, so a server that accepts and says nothing passes, and a
     * refused port fails only after fail_after = 2 checks */
    uv_loop_init(&loop);
    server_start(&loop, &silent, NULL);
    memset(ups, 0, sizeof(ups));
    set_server(&srv[0], silent.port);
    set_server(&srv[1], dead_port());
    ups[0].name = "db";
    ups[0].servers = srv;
    ups[0].nservers = 2;
    ups[0].used_by_passthrough = 1;
    ups[0].health_check.present = 1;
    ups[0].health_check.interval_s = 1;
    ups[0].health_check.path = "/healthz";
    ups[0].health_check.fail_after = 2;
    ups[0].health_check.pass_after = 1;
    ups[0].health_check.timeout_ms = 300;
    conf.upstreams = ups;
    conf.nupstreams = 1;
    cycle.conf = &conf;
    w.loop = &loop;
    w.cycle = &cycle;

    ck_assert_int_eq(hm_health_init_worker(&cycle, &w), HM_OK);
    rt = hm_upstream_rt(&ups[0]);
    run_for(&loop, 700);
    /* one check each so far: refused once, not yet down */
    ck_assert_int_eq(rt->peers[1].health_down, 0);
    run_for(&loop, 1000);
    ck_assert_int_eq(rt->peers[1].health_down, 1);
    ck_assert_int_eq(rt->peers[0].health_down, 0);
    ck_assert_int_eq(silent.requests, 0);   /* no HTTP request sent */
    hm_health_exit_worker(&cycle, &w);
    {
        test_server_t *list[] = { &silent, NULL };

        loop_teardown(&loop, list);
    }
}
END_TEST

static Suite *
hm_health_suite(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("hm_health");
    tc = tcase_create("parse");
    tcase_add_test(tc, parse_valid);
    tcase_add_test(tc, parse_truncated);
    tcase_add_test(tc, parse_malformed);
    tcase_add_test(tc, host_header);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_add_test(tc, health_down_skipped);
    tcase_add_test(tc, health_all_down_none);
    tcase_add_test(tc, health_beats_passive_fallback);
    suite_add_tcase(s, tc);
    tc = tcase_create("loop");
    tcase_set_timeout(tc, 15);
    tcase_add_test(tc, checks_on_loop);
    tcase_add_test(tc, checks_counts_and_tcp_only);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(hm_health_suite)

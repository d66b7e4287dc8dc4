/*
 * check_hm_stream.c: hm_stream over real loopback TCP sockets (no mocks):
 * a client stream connects, a server stream adopts the accepted fd, bytes
 * go both ways through the write queue, drain and half-close.
 */
#include "hm_core.h"
#include "hm_stream.h"
#include "hm_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define BIG (32 * 1024 * 1024 + 17)

typedef struct {
    uv_loop_t    loop;
    uv_poll_t    lpoll;
    int          lfd;
    hm_stream_t  srv;
    hm_stream_t  cli;
    int          connected;
    size_t       srv_got;
    size_t       cli_got;
    int          srv_eof;
    int          cli_eof;
    int          drained;
    int          closed;
    uint8_t     *big;
    uint32_t     srv_sum;
    uint32_t     want_sum;
} t_ctx_t;

static t_ctx_t T;

static int
listen_any(struct sockaddr_in *sin)
{
    socklen_t len = sizeof(*sin);
    int       fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *) sin, sizeof(*sin)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *) sin, &len), 0);
    return fd;
}

static void
on_closed(hm_stream_t *s)
{
    T.closed++;
}

static void
srv_read(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    ssize_t i;

    if (nread == UV_EOF) {
        T.srv_eof = 1;
        hm_stream_shutdown(s);
        return;
    }
    ck_assert_int_gt(nread, 0);
    for (i = 0; i < nread; i++) {
        T.srv_sum = T.srv_sum * 31 + data[i];
    }
    T.srv_got += nread;
}

static void
cli_read(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    if (nread == UV_EOF) {
        T.cli_eof = 1;
        hm_stream_close(&T.cli, on_closed);
        hm_stream_close(&T.srv, on_closed);
        return;
    }
    ck_assert_int_gt(nread, 0);
    T.cli_got += nread;
}

static void
cli_drained(hm_stream_t *s)
{
    T.drained = 1;
    ck_assert_uint_eq(hm_stream_write_queued(s), 0);
    hm_stream_shutdown(s);
}

static void
cli_connected(hm_stream_t *s, int status)
{
    uv_buf_t b[2];

    ck_assert_int_eq(status, 0);
    T.connected = 1;
    hm_stream_read_start(s, cli_read);
    b[0] = uv_buf_init((char *) T.big, 1000);
    b[1] = uv_buf_init((char *) T.big + 1000, BIG - 1000);
    ck_assert_int_eq(hm_stream_write(s, b, 2), 0);
    /* 32 MiB cannot all fit in the socket buffers: some must be queued. */
    ck_assert_uint_gt(hm_stream_write_queued(s), 0);
    hm_stream_on_drain(s, cli_drained);
}

static void
on_accept(uv_poll_t *p, int status, int events)
{
    int fd = accept4(T.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(hm_stream_open(&T.srv, &T.loop, fd), 0);
    hm_stream_read_start(&T.srv, srv_read);
    uv_poll_stop(p);
    uv_close((uv_handle_t *) p, NULL);
}

START_TEST(test_clear_roundtrip)
{
    struct sockaddr_in sin;
    size_t             i;

    memset(&T, 0, sizeof(T));
    T.big = malloc(BIG);
    for (i = 0; i < BIG; i++) {
        T.big[i] = (uint8_t) (i * 7 + (i >> 9));
        T.want_sum = T.want_sum * 31 + T.big[i];
    }
    uv_loop_init(&T.loop);
    T.lfd = listen_any(&sin);
    uv_poll_init(&T.loop, &T.lpoll, T.lfd);
    uv_poll_start(&T.lpoll, UV_READABLE, on_accept);
    ck_assert_int_eq(hm_stream_connect(&T.cli, &T.loop,
                                       (struct sockaddr *) &sin, 2000, NULL,
                                       NULL, cli_connected), 0);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    ck_assert(T.connected);
    ck_assert(T.drained);
    ck_assert_uint_eq(T.srv_got, BIG);
    ck_assert_uint_eq(T.srv_sum, T.want_sum);
    ck_assert(T.srv_eof);
    ck_assert(T.cli_eof);
    ck_assert_int_eq(T.closed, 2);
    ck_assert_uint_eq(T.srv.bytes_in, BIG);
    ck_assert_uint_eq(T.cli.bytes_out, BIG);
    close(T.lfd);
    ck_assert_int_eq(uv_loop_close(&T.loop), 0);
    free(T.big);
}
END_TEST

static void
refused_cb(hm_stream_t *s, int status)
{
    T.connected = status;
    hm_stream_close(s, on_closed);
}

START_TEST(test_connect_refused)
{
    struct sockaddr_in sin;
    int                fd;

    memset(&T, 0, sizeof(T));
    uv_loop_init(&T.loop);
    fd = listen_any(&sin);
    close(fd);                      /* nobody listens there now */
    ck_assert_int_eq(hm_stream_connect(&T.cli, &T.loop,
                                       (struct sockaddr *) &sin, 2000, NULL,
                                       NULL, refused_cb), 0);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(T.connected, UV_ECONNREFUSED);
    ck_assert_int_eq(T.closed, 1);
    ck_assert_int_eq(uv_loop_close(&T.loop), 0);
}
END_TEST

static Suite *
stream_suite(void)
{
    Suite *s = suite_create("hm_stream");
    TCase *tc = tcase_create("clear");

    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_clear_roundtrip);
    tcase_add_test(tc, test_connect_refused);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(stream_suite)

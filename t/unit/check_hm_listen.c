/*
 * Unit tests of src/os/hm_listen.c: one SO_REUSEPORT socket per (address,
 * slot), reuse of the sockets of a previous cycle on reload (and giving
 * them back when the reload fails), and the HAMLYN_FDS hand-over of a
 * binary upgrade, including malformed values.  Real sockets on loopback.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_cycle.h"
#include "hm_os.h"
#include "hm_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* A free TCP port on 127.0.0.1 (the kernel's pick). */
static int
free_port(void)
{
    struct sockaddr_in sa;
    socklen_t          len = sizeof(sa);
    int                fd, port;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* A cycle with one listener on the given addresses ("127.0.0.1:N"). */
static hm_cycle_t *
make_cycle(const char **addrs, size_t n)
{
    hm_cycle_t *c = hm_xcalloc(1, sizeof(*c));
    hm_conf_t  *conf = hm_xcalloc(1, sizeof(*conf));
    size_t      i;

    conf->pool = hm_pool_new(4096);
    conf->nlisteners = 1;
    conf->listeners = hm_pool_calloc(conf->pool, sizeof(hm_conf_listener_t));
    conf->listeners[0].name = "l";
    conf->listeners[0].backlog = 16;
    conf->listeners[0].naddrs = n;
    conf->listeners[0].addrs = hm_pool_calloc(conf->pool, n * sizeof(hm_addr_t));
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(hm_addr_parse(addrs[i], &conf->listeners[0].addrs[i]),
                         HM_OK);
    }
    c->magic = HM_CYCLE_MAGIC;
    c->refs = 1;
    c->conf = conf;
    c->pool = conf->pool;
    return c;
}

static void
free_cycle(hm_cycle_t *c)
{
    hm_listen_close_all(c);
    hm_pool_free(c->pool);
    free(c->conf);
    free(c);
}

static int
fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int
is_listening(int fd)
{
    int       v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

START_TEST(open_one_socket_per_slot)
{
    char        a[64];
    const char *addrs[1] = { a };
    hm_cycle_t *c;
    int         on = 0, fl;
    socklen_t   len = sizeof(on);

    snprintf(a, sizeof(a), "127.0.0.1:%d", free_port());
    c = make_cycle(addrs, 1);
    ck_assert_int_eq(hm_listen_open(c, 3), HM_OK);
    ck_assert_uint_eq(c->nlistens, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(c->listens[i].slot, i);
        ck_assert(is_listening(c->listens[i].fd));
        ck_assert_int_eq(getsockopt(c->listens[i].fd, SOL_SOCKET, SO_REUSEPORT,
                                    &on, &len), 0);
        ck_assert_int_eq(on, 1);
        fl = fcntl(c->listens[i].fd, F_GETFL);
        ck_assert(fl & O_NONBLOCK);
        ck_assert(fcntl(c->listens[i].fd, F_GETFD) & FD_CLOEXEC);
    }
    ck_assert_int_ne(c->listens[0].fd, c->listens[1].fd);

    /* close_others keeps only slot 1 */
    int keep = c->listens[1].fd, gone = c->listens[0].fd;
    hm_listen_close_others(c, 1);
    ck_assert_int_eq(c->listens[0].fd, -1);
    ck_assert_int_eq(c->listens[1].fd, keep);
    ck_assert(!fd_open(gone));
    free_cycle(c);
}
END_TEST

START_TEST(ipv6_only)
{
    char        a[64];
    const char *addrs[1] = { a };
    hm_cycle_t *c;
    int         v = 0;
    socklen_t   len = sizeof(v);

    snprintf(a, sizeof(a), "[::1]:%d", free_port());
    c = make_cycle(addrs, 1);
    if (hm_listen_open(c, 1) != HM_OK) {
        free_cycle(c);
        return;                 /* no IPv6 on this machine */
    }
    ck_assert_int_eq(getsockopt(c->listens[0].fd, IPPROTO_IPV6, IPV6_V6ONLY,
                                &v, &len), 0);
    ck_assert_int_eq(v, 1);
    free_cycle(c);
}
END_TEST

START_TEST(reuse_keeps_sockets_of_same_address_and_slot)
{
    char        a[64], b[64];
    const char *one[1] = { a }, *two[2] = { a, b };
    hm_cycle_t *old, *c;
    int         fd0, fd1;

    snprintf(a, sizeof(a), "127.0.0.1:%d", free_port());
    snprintf(b, sizeof(b), "127.0.0.1:%d", free_port());
    old = make_cycle(one, 1);
    ck_assert_int_eq(hm_listen_open(old, 2), HM_OK);
    fd0 = old->listens[0].fd;
    fd1 = old->listens[1].fd;

    c = make_cycle(two, 2);
    ck_assert_int_eq(hm_listen_reuse(c, old, 3), HM_OK);
    ck_assert_uint_eq(c->nlistens, 6);
    /* a: slots 0 and 1 moved over, slot 2 new; b: all new */
    ck_assert_int_eq(c->listens[0].fd, fd0);
    ck_assert_int_eq(c->listens[1].fd, fd1);
    ck_assert_int_ne(c->listens[2].fd, fd0);
    ck_assert(is_listening(c->listens[2].fd));
    ck_assert(is_listening(c->listens[5].fd));
    ck_assert_int_eq(old->listens[0].fd, -1);
    ck_assert_int_eq(old->listens[1].fd, -1);
    free_cycle(old);
    ck_assert(fd_open(fd0));    /* not closed with the old cycle */
    free_cycle(c);
}
END_TEST

/* Fewer workers: the sockets of the slots that go away stay (closing one
 * resets its accept queue), owned by slot % workers; a new address gets
 * only <workers> sockets. */
START_TEST(reuse_fewer_workers_keeps_surplus_sockets)
{
    char        a[64], b[64];
    const char *one[1] = { a }, *two[2] = { a, b };
    hm_cycle_t *old, *c;
    int         fd[3], i;

    snprintf(a, sizeof(a), "127.0.0.1:%d", free_port());
    snprintf(b, sizeof(b), "127.0.0.1:%d", free_port());
    old = make_cycle(one, 1);
    ck_assert_int_eq(hm_listen_open(old, 3), HM_OK);
    for (i = 0; i < 3; i++) {
        fd[i] = old->listens[i].fd;
        ck_assert_int_eq(old->listens[i].owner, i);
    }

    c = make_cycle(two, 2);
    ck_assert_int_eq(hm_listen_reuse(c, old, 2), HM_OK);
    ck_assert_uint_eq(c->nlistens, 5);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(c->listens[i].fd, fd[i]);
        ck_assert_int_eq(c->listens[i].slot, i);
        ck_assert_int_eq(old->listens[i].fd, -1);
    }
    ck_assert_int_eq(c->listens[0].owner, 0);
    ck_assert_int_eq(c->listens[1].owner, 1);
    ck_assert_int_eq(c->listens[2].owner, 0);
    ck_assert_int_eq(c->listens[3].slot, 0);
    ck_assert_int_eq(c->listens[4].slot, 1);
    free_cycle(old);

    /* worker 0 accepts on slots 0 and 2 of a, and slot 0 of b */
    hm_listen_close_others(c, 0);
    ck_assert_int_eq(c->listens[0].fd, fd[0]);
    ck_assert_int_eq(c->listens[1].fd, -1);
    ck_assert_int_eq(c->listens[2].fd, fd[2]);
    ck_assert(is_listening(c->listens[3].fd));
    ck_assert_int_eq(c->listens[4].fd, -1);
    free_cycle(c);
}
END_TEST

START_TEST(failed_reuse_gives_sockets_back)
{
    char        a[64], bad[64];
    const char *one[1] = { a }, *two[2] = { a, bad };
    hm_cycle_t *old, *c;
    int         fd0;

    snprintf(a, sizeof(a), "127.0.0.1:%d", free_port());
    /* TEST-NET-1: not a local address, bind() fails */
    snprintf(bad, sizeof(bad), "192.0.2.1:%d", free_port());
    old = make_cycle(one, 1);
    ck_assert_int_eq(hm_listen_open(old, 1), HM_OK);
    fd0 = old->listens[0].fd;

    c = make_cycle(two, 2);
    ck_assert_int_eq(hm_listen_reuse(c, old, 1), HM_ERROR);
    ck_assert_int_eq(old->listens[0].fd, fd0);
    ck_assert(is_listening(fd0));
    free_cycle(c);
    ck_assert(fd_open(fd0));
    free_cycle(old);
}
END_TEST

START_TEST(upgrade_fds_round_trip)
{
    char        a[64], b[64], *env;
    const char *two[2] = { a, b };
    hm_cycle_t *c, from;
    int         fds[4];

    snprintf(a, sizeof(a), "127.0.0.1:%d", free_port());
    snprintf(b, sizeof(b), "127.0.0.1:%d", free_port());
    c = make_cycle(two, 2);
    ck_assert_int_eq(hm_listen_open(c, 2), HM_OK);
    for (int i = 0; i < 4; i++) {
        fds[i] = c->listens[i].fd;
    }
    env = hm_listen_export(c, 1);
    ck_assert_ptr_nonnull(strstr(env, a));
    ck_assert(!(fcntl(fds[0], F_GETFD) & FD_CLOEXEC));   /* for exec */
    setenv("HAMLYN_FDS", env, 1);
    free(env);

    ck_assert_int_eq(hm_listen_inherited(&from), 4);
    ck_assert_ptr_null(getenv("HAMLYN_FDS"));
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(from.listens[i].fd, fds[i]);
        ck_assert_int_eq(from.listens[i].slot, c->listens[i].slot);
        ck_assert_str_eq(from.listens[i].addr->text, c->listens[i].addr->text);
        ck_assert(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);   /* set again */
        c->listens[i].fd = -1;  /* "the other process" */
    }

    /* The new master's cycle adopts them. */
    hm_cycle_t *n = make_cycle(two, 2);
    ck_assert_int_eq(hm_listen_reuse(n, &from, 2), HM_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(n->listens[i].fd, fds[i]);
    }
    hm_listen_inherited_free(&from);
    ck_assert(fd_open(fds[0]));
    free_cycle(n);
    ck_assert(!fd_open(fds[0]));
    free_cycle(c);
}
END_TEST

START_TEST(upgrade_fds_malformed)
{
    static const char *bad[] = {
        "", ";", ";;;", "abc", "3", "-1:x:0", "2:x:0", "1:x:0",
        "99999999999:x:0", "4000:127.0.0.1:1:0", "x:127.0.0.1:1:0",
        ":::", "7:", "7",
    };
    hm_cycle_t from;
    int        p[2], u, t, n;
    char       buf[128];

    for (size_t i = 0; i < hm_nelem(bad); i++) {
        setenv("HAMLYN_FDS", bad[i], 1);
        ck_assert_int_eq(hm_listen_inherited(&from), 0);
        hm_listen_inherited_free(&from);
    }

    /* An open fd that is not a listening TCP socket is refused, and left
     * alone: a pipe, a UDP socket, a TCP socket that is not listening. */
    ck_assert_int_eq(pipe(p), 0);
    u = socket(AF_INET, SOCK_DGRAM, 0);
    t = socket(AF_INET, SOCK_STREAM, 0);
    snprintf(buf, sizeof(buf), "%d:127.0.0.1:1:0;%d:127.0.0.1:2:1;%d:x:2",
             p[0], u, t);
    setenv("HAMLYN_FDS", buf, 1);
    n = hm_listen_inherited(&from);
    ck_assert_int_eq(n, 0);
    hm_listen_inherited_free(&from);
    ck_assert(fd_open(p[0]));
    ck_assert(fd_open(u));
    ck_assert(fd_open(t));
    close(p[0]);
    close(p[1]);
    close(u);
    close(t);
}
END_TEST

START_TEST(backoff)
{
    int b = 0;

    /* dying young: 100, 200, 400 ... capped at 5000 */
    ck_assert_int_eq(hm__master_backoff(&b, 10), 100);
    ck_assert_int_eq(hm__master_backoff(&b, 10), 200);
    ck_assert_int_eq(hm__master_backoff(&b, 1999), 400);
    for (int i = 0; i < 10; i++) {
        hm__master_backoff(&b, 0);
    }
    ck_assert_int_eq(b, 5000);
    ck_assert_int_eq(hm__master_backoff(&b, 0), 5000);
    /* lived 2..10 s: at once, the delay is kept */
    ck_assert_int_eq(hm__master_backoff(&b, 5000), 0);
    ck_assert_int_eq(b, 5000);
    /* lived 10 s: reset */
    ck_assert_int_eq(hm__master_backoff(&b, 10000), 0);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(hm__master_backoff(&b, 0), 100);
}
END_TEST

static Suite *
listen_suite(void)
{
    Suite *s = suite_create("hm_listen");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, open_one_socket_per_slot);
    tcase_add_test(tc, ipv6_only);
    tcase_add_test(tc, reuse_keeps_sockets_of_same_address_and_slot);
    tcase_add_test(tc, reuse_fewer_workers_keeps_surplus_sockets);
    tcase_add_test(tc, failed_reuse_gives_sockets_back);
    tcase_add_test(tc, upgrade_fds_round_trip);
    tcase_add_test(tc, upgrade_fds_malformed);
    tcase_add_test(tc, backoff);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(listen_suite)

/*
 * floor.c: the cheapest forwarder we could write, to measure what the
 * kernel alone costs in two of the shared harness's scenarios (see "Where
 * the proxy's CPU goes" in bench/README).  Not part of Hamlyn and not a
 * proxy anyone should run: no HTTP, no routing, no SNI, no timeouts, no
 * limits.  One edge-triggered epoll loop; each client connection is paired
 * 1:1 with its own upstream connection, opened at accept, and bytes move
 * as they come (a FIN or an error on either side closes both).
 *
 *   floor tls PORT HOST UPPORT CERT KEY   terminate TLS (BoringSSL, memory
 *                                         BIOs: one recv() and one send()
 *                                         per batch, as Hamlyn does) and
 *                                         forward the plaintext: the floor
 *                                         of term-plain, where each client
 *                                         connection's upstream connection
 *                                         is kept like a pooled one
 *   floor raw PORT HOST UPPORT            forward bytes both ways without
 *                                         reading a ClientHello first: the
 *                                         floor of passthrough-rps
 *
 * It listens on HOST:PORT and connects to HOST:UPPORT (IPv4).
 * bench/floor/floor-as-hamlyn stands in for the hamlyn binary in the
 * shared harness: it reads the configuration proxies/hamlyn.sh writes.
 * Build: make bench-floor.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include <openssl/err.h>

#define PEND_MAX 65536         /* more waiting than this closes the pair */

typedef struct conn conn;
typedef struct end { conn *c; int fd; int side; } end;
struct conn {
    end     cl, up;
    SSL    *ssl;
    BIO    *rbio, *wbio;        /* memory BIOs: one recv()/send() per batch */
    int     hs_done;
    char   *pend[2];            /* bytes waiting for a side (0: upstream,
                                   1: client), allocated when first needed */
    size_t  plen[2];
    int     dead;
    conn   *next_dead;
};

static int ep, tls_mode;
static SSL_CTX *ctx;
static struct sockaddr_in upaddr;
static char buf[65536];
static conn *dead_list;       /* freed after each epoll batch */

static void
conn_free(conn *c)
{
    if (c->dead) {
        return;
    }
    c->dead = 1;
    if (c->ssl) {
        SSL_free(c->ssl);
    }
    close(c->cl.fd);
    close(c->up.fd);
    free(c->pend[0]);
    free(c->pend[1]);
    /* epoll may still hold events for it in this batch: freed after it */
    c->next_dead = dead_list;
    dead_list = c;
}

/* write to fd (side 0 = upstream plain, 1 = client: TLS or plain) */
static int
out(conn *c, int to_client, const char *p, size_t n)
{
    ssize_t w;
    int     i = to_client;
    const uint8_t *d = (const uint8_t *) p;
    size_t         dl = n;

    if (to_client && tls_mode) {
        /* encrypt now; what cannot be sent waits as TLS bytes */
        if (SSL_write(c->ssl, p, (int) n) <= 0) {
            return -1;
        }
        BIO_mem_contents(c->wbio, &d, &dl);
    }
    if (c->plen[i] > 0) {
        if (c->plen[i] + dl > PEND_MAX) {
            return -1;
        }
        memcpy(c->pend[i] + c->plen[i], d, dl);
        c->plen[i] += dl;
    } else {
        w = send(to_client ? c->cl.fd : c->up.fd, d, dl, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) {
                return -1;
            }
            w = 0;
        }
        if ((size_t) w < dl) {
            if (dl - (size_t) w > PEND_MAX
                || (c->pend[i] == NULL
                    && (c->pend[i] = malloc(PEND_MAX)) == NULL))
            {
                return -1;
            }
            memcpy(c->pend[i], d + w, dl - (size_t) w);
            c->plen[i] = dl - (size_t) w;
        }
    }
    if (to_client && tls_mode) {
        BIO_reset(c->wbio);
    }
    return 0;
}

/* EPOLLOUT: sends what waits (plaintext for the upstream, TLS bytes or
 * plaintext for the client, exactly as they would have gone out). */
static int
flush(conn *c, int i)
{
    size_t  n = c->plen[i];
    ssize_t w;

    if (n == 0) {
        return 0;
    }
    w = send(i ? c->cl.fd : c->up.fd, c->pend[i], n, MSG_NOSIGNAL);
    if (w < 0) {
        return errno == EAGAIN ? 0 : -1;
    }
    memmove(c->pend[i], c->pend[i] + w, n - (size_t) w);
    c->plen[i] = n - (size_t) w;
    return 0;
}

/*
 * Moves what fd has to the other side (to_client: 1 for the upstream's
 * bytes, 0 for a raw client's) until a short read drained it
 * (edge-triggered), or to the end when a FIN came with the data (hup).
 */
static void
relay_in(conn *c, int fd, int to_client, int hup)
{
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            conn_free(c);
            return;
        }
        if (out(c, to_client, buf, (size_t) n) != 0) {
            conn_free(c);
            return;
        }
        if ((size_t) n < sizeof(buf) && !hup) {
            return;
        }
    }
}

/* TLS client input: every record read into the memory BIO first, then
 * the handshake while it runs, then the plaintext to the upstream. */
static void
client_tls_in(conn *c, int hup)
{
    ssize_t n;
    int     eof = 0;

    for (;;) {
        n = recv(c->cl.fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        if (n <= 0) {
            eof = 1;
            break;
        }
        BIO_write(c->rbio, buf, (int) n);
        if ((size_t) n < sizeof(buf) && !hup) {
            break;
        }
    }
    if (!c->hs_done) {
        int h = SSL_do_handshake(c->ssl);
        const uint8_t *d;
        size_t dl;
        BIO_mem_contents(c->wbio, &d, &dl);
        if (dl > 0) {
            if (send(c->cl.fd, d, dl, MSG_NOSIGNAL) != (ssize_t) dl) {
                conn_free(c);
                return;
            }
            BIO_reset(c->wbio);
        }
        if (h != 1) {
            int e = SSL_get_error(c->ssl, h);
            if (eof || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)) {
                conn_free(c);
            }
            return;
        }
        c->hs_done = 1;
    }
    for (;;) {
        n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n <= 0) {
            if (eof || SSL_get_error(c->ssl, (int) n) != SSL_ERROR_WANT_READ) {
                conn_free(c);
            }
            return;
        }
        if (out(c, 0, buf, (size_t) n) != 0) {
            conn_free(c);
            return;
        }
    }
}

static void
add(end *e)
{
    struct epoll_event ev;

    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = e;
    epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev);
}

int
main(int argc, char **argv)
{
    struct sockaddr_in a;
    struct epoll_event evs[256];
    int lfd, one = 1, i, n;
    end lend;

    if (argc < 5) {
        fprintf(stderr, "usage: floor tls|raw PORT UPHOST UPPORT [CERT KEY]\n");
        return 2;
    }
    tls_mode = strcmp(argv[1], "tls") == 0;
    if (tls_mode) {
        ctx = SSL_CTX_new(TLS_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (argc < 7
            || SSL_CTX_use_certificate_chain_file(ctx, argv[5]) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, argv[6], SSL_FILETYPE_PEM) != 1)
        {
            fprintf(stderr, "floor: cannot load the certificate\n");
            return 1;
        }
    }
    memset(&upaddr, 0, sizeof(upaddr));
    upaddr.sin_family = AF_INET;
    upaddr.sin_port = htons((unsigned short) atoi(argv[4]));
    inet_pton(AF_INET, argv[3], &upaddr.sin_addr);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short) atoi(argv[2]));
    inet_pton(AF_INET, argv[3], &a.sin_addr);
    if (bind(lfd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(lfd, 4096) != 0) {
        perror("floor: bind");
        return 1;
    }
    ep = epoll_create1(0);
    lend.c = NULL;
    lend.fd = lfd;
    lend.side = -1;
    {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &lend };
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    }
    for (;;) {
        n = epoll_wait(ep, evs, 256, -1);
        for (i = 0; i < n; i++) {
            end *e = evs[i].data.ptr;
            conn *c;
            if (e->side < 0) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = calloc(1, sizeof(*c));
                    c->cl.c = c->up.c = c;
                    c->cl.fd = fd;
                    c->cl.side = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c->up.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                    c->up.side = 0;
                    setsockopt(c->up.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    connect(c->up.fd, (struct sockaddr *) &upaddr, sizeof(upaddr));
                    if (tls_mode) {
                        c->ssl = SSL_new(ctx);
                        c->rbio = BIO_new(BIO_s_mem());
                        c->wbio = BIO_new(BIO_s_mem());
                        SSL_set_bio(c->ssl, c->rbio, c->wbio);
                        SSL_set_accept_state(c->ssl);
                    }
                    add(&c->cl);
                    add(&c->up);
                }
                continue;
            }
            c = e->c;
            if (c->dead) {
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (flush(c, e->side) != 0) {
                    conn_free(c);
                    continue;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                int hup = (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
                if (e->side == 0) {
                    relay_in(c, c->up.fd, 1, hup);
                } else if (tls_mode) {
                    client_tls_in(c, hup);
                } else {
                    relay_in(c, c->cl.fd, 0, hup);
                }
            }
        }
        while (dead_list != NULL) {
            conn *d = dead_list;
            dead_list = d->next_dead;
            free(d);
        }
    }
}

/*
 * hm_listen.c: the listening sockets.  The master binds every address of
 * every listener once per worker slot (nginx's ngx_clone_listening): each
 * worker accepts only on its own SO_REUSEPORT clone, so the kernel spreads
 * new connections over the workers without a shared accept lock.  The
 * master keeps all of them open for its whole life; a worker that dies is
 * restarted on the same slot, so connections queued in that clone's accept
 * queue are picked up by its successor instead of being reset.
 *
 * Workers close the clones of the other slots right after fork
 * (hm_listen_close_others) and hand theirs to src/event/hm_accept.c.
 *
 * A reload or upgrade to fewer workers does not close the clones of the
 * slots that go away: closing a listening socket resets the connections in
 * its accept queue (and those still in their handshake), and the kernel
 * keeps hashing new ones to it until then.  They stay, each accepted on by
 * worker slot % workers (hm_listen_t.owner), and a classic BPF program on
 * the SO_REUSEPORT group steers new connections to the first <workers>
 * sockets only (listen_steer), so the surplus ones just hand over what
 * they already held and the load stays even.
 */
#include "hm_core.h"
#include "hm_log.h"
#include "hm_os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

/*
 * Opens, configures, binds and listens one socket for <addr>.  Returns
 * the fd, or -1 with errno set and *what naming the step that failed.
 */
static int
listen_one(const hm_addr_t *addr, int backlog, const char **what)
{
    int fd, on = 1, saved;

    fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0) {
        *what = "socket()";
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0) {
        *what = "setsockopt(SO_REUSEADDR)";
        goto failed;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0) {
        *what = "setsockopt(SO_REUSEPORT)";
        goto failed;
    }
    if (addr->sa.ss_family == AF_INET6
        && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
    {
        *what = "setsockopt(IPV6_V6ONLY)";
        goto failed;
    }
    if (bind(fd, (const struct sockaddr *) &addr->sa, addr->len) < 0) {
        *what = "bind()";
        goto failed;
    }
    if (listen(fd, backlog) < 0) {
        *what = "listen()";
        goto failed;
    }
    return fd;

failed:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int hm_listen_probe_off;

int
hm_listen_probe(const hm_addr_t *addr)
{
    int fd, on = 1, rc, saved;

    if (hm_listen_probe_off) {
        return 0;
    }
    fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0;           /* the real socket() will say why */
    }
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (addr->sa.ss_family == AF_INET6) {
        (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    }
    rc = bind(fd, (const struct sockaddr *) &addr->sa, addr->len);
    saved = errno;
    close(fd);
    if (rc < 0 && saved == EADDRINUSE) {
        errno = saved;
        return -1;
    }
    return 0;
}

/* Port of an IPv4 or IPv6 address, in network order. */
static in_port_t
addr_port(const hm_addr_t *a)
{
    if (a->sa.ss_family == AF_INET6) {
        return ((const struct sockaddr_in6 *) &a->sa)->sin6_port;
    }
    return ((const struct sockaddr_in *) &a->sa)->sin_port;
}

/*
 * Whether <old> holds an open socket of the same family and port as
 * <addr>: then the port is ours (a reload or upgrade replacing, say,
 * 0.0.0.0:443 by 127.0.0.1:443) and must not be probed.
 */
static int
port_held(hm_cycle_t *old, const hm_addr_t *addr)
{
    size_t i;

    if (old == NULL) {
        return 0;
    }
    for (i = 0; i < old->nlistens; i++) {
        if (old->listens[i].fd >= 0
            && old->listens[i].addr->sa.ss_family == addr->sa.ss_family
            && addr_port(old->listens[i].addr) == addr_port(addr))
        {
            return 1;
        }
    }
    return 0;
}

/* Same family, address and port (sockaddr padding is not compared). */
static int
addr_equal(const hm_addr_t *a, const hm_addr_t *b)
{
    const struct sockaddr_in  *a4, *b4;
    const struct sockaddr_in6 *a6, *b6;

    if (a->sa.ss_family != b->sa.ss_family) {
        return 0;
    }
    if (a->sa.ss_family == AF_INET) {
        a4 = (const struct sockaddr_in *) &a->sa;
        b4 = (const struct sockaddr_in *) &b->sa;
        return a4->sin_port == b4->sin_port
               && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    }
    if (a->sa.ss_family == AF_INET6) {
        a6 = (const struct sockaddr_in6 *) &a->sa;
        b6 = (const struct sockaddr_in6 *) &b->sa;
        return a6->sin6_port == b6->sin6_port
               && a6->sin6_scope_id == b6->sin6_scope_id
               && memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
    }
    return 0;
}

/* Index of an open socket of <old> for (addr, slot), or -1. */
static ssize_t
find_old(hm_cycle_t *old, const hm_addr_t *addr, int slot)
{
    size_t i;

    if (old == NULL) {
        return -1;
    }
    for (i = 0; i < old->nlistens; i++) {
        if (old->listens[i].fd >= 0 && old->listens[i].slot == slot
            && addr_equal(old->listens[i].addr, addr))
        {
            return (ssize_t) i;
        }
    }
    return -1;
}

/* Slots of <old>'s open sockets for <addr>: 1 + the highest, or 0. */
static int
old_slots(hm_cycle_t *old, const hm_addr_t *addr)
{
    size_t i;
    int    n = 0;

    if (old == NULL) {
        return 0;
    }
    for (i = 0; i < old->nlistens; i++) {
        if (old->listens[i].fd >= 0 && old->listens[i].slot >= n
            && addr_equal(old->listens[i].addr, addr))
        {
            n = old->listens[i].slot + 1;
        }
    }
    return n;
}

/*
 * Spreads new connections of one address's SO_REUSEPORT group over its
 * first <workers> sockets when the group holds more (<nsocks>): a random
 * one of them per connection.  The group's sockets are in the order they
 * started listening, which is slot order: every address's clones are
 * opened in slot order and only ever added at the end.  Otherwise the
 * kernel's own hash is restored.  Best effort: without the program the
 * surplus sockets keep receiving their share, which their owners accept.
 */
static void
listen_steer(int fd, const char *text, int workers, int nsocks)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_RANDOM),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (uint32_t) workers),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_fprog prog = { hm_nelem(code), code };
    int               off = 0;

    if (nsocks <= workers) {
        (void) setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &off,
                          sizeof(off));
        return;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog,
                   sizeof(prog)) < 0)
    {
        hm_log_warn(NULL, "%s: setsockopt(SO_ATTACH_REUSEPORT_CBPF) failed: "
                    "%s; the %d surplus sockets left by fewer workers keep "
                    "their share of new connections", text,
                    strerror(errno), nsocks - workers);
    }
}

void
hm_listen_steer(hm_cycle_t *cycle, int workers)
{
    size_t i, j;

    /* Each address's sockets are contiguous in cycle->listens. */
    for (i = 0; i < cycle->nlistens; i = j) {
        for (j = i; j < cycle->nlistens
                    && cycle->listens[j].addr == cycle->listens[i].addr; j++)
        {
            /* count them */
        }
        if (cycle->listens[i].fd >= 0) {
            listen_steer(cycle->listens[i].fd, cycle->listens[i].addr->text,
                         workers, (int) (j - i));
        }
    }
}

int
hm_listen_open(hm_cycle_t *cycle, int workers)
{
    return hm_listen_reuse(cycle, NULL, workers);
}

int
hm_listen_reuse(hm_cycle_t *cycle, hm_cycle_t *old, int workers)
{
    hm_conf_t          *conf = cycle->conf;
    hm_conf_listener_t *l;
    hm_listen_t        *ls;
    ssize_t            *from, j;
    const char         *what = "";
    size_t              i, a, n = 0, k = 0;
    int                 slot, nslots, fd, backlog;

    for (i = 0; i < conf->nlisteners; i++) {
        for (a = 0; a < conf->listeners[i].naddrs; a++) {
            n += (size_t) hm_max(workers,
                                 old_slots(old, &conf->listeners[i].addrs[a]));
        }
    }
    ls = hm_pool_calloc(cycle->pool, (n ? n : 1) * sizeof(hm_listen_t));
    if (ls == NULL) {
        hm_log_error(NULL, "out of memory for %zu listening sockets", n);
        return HM_ERROR;
    }
    from = hm_xcalloc(n ? n : 1, sizeof(ssize_t));
    cycle->listens = ls;
    cycle->nlistens = 0;

    for (i = 0; i < conf->nlisteners; i++) {
        l = &conf->listeners[i];
        backlog = l->backlog > 0 ? l->backlog : 511;
        for (a = 0; a < l->naddrs; a++) {
            if (!port_held(old, &l->addrs[a])
                && hm_listen_probe(&l->addrs[a]) != 0)
            {
                hm_log_error(NULL, "listeners[%zu].listen[%zu]: cannot "
                             "listen on %s: bind() failed: %s (in use by "
                             "another process)", i, a,
                             l->addrs[a].text, strerror(errno));
                goto failed;
            }
            /* The sockets of slots beyond <workers> that <old> holds
             * stay too (see the top of the file). */
            nslots = hm_max(workers, old_slots(old, &l->addrs[a]));
            for (slot = 0; slot < nslots; slot++) {
                j = find_old(old, &l->addrs[a], slot);
                if (j < 0 && slot >= workers) {
                    continue;
                }
                if (j >= 0) {
                    /* Same address and slot: keep the socket (and its
                     * queue); listen() again applies a new backlog. */
                    fd = old->listens[j].fd;
                    old->listens[j].fd = -1;
                    if (listen(fd, backlog) < 0) {
                        hm_log_warn(NULL, "listeners[%zu].listen[%zu]: "
                                    "listen(%s, %d) failed: %s", i, a,
                                    l->addrs[a].text, backlog,
                                    strerror(errno));
                    }
                } else {
                    fd = listen_one(&l->addrs[a], backlog, &what);
                }
                if (fd < 0) {
                    hm_log_error(NULL, "listeners[%zu].listen[%zu]: cannot "
                                 "listen on %s: %s failed: %s", i, a,
                                 l->addrs[a].text, what, strerror(errno));
                    goto failed;
                }
                from[k] = j;
                ls[k].listener = l;
                ls[k].addr = &l->addrs[a];
                ls[k].slot = slot;
                ls[k].owner = slot % workers;
                ls[k].fd = fd;
                k++;
                cycle->nlistens = k;
            }
        }
    }
    free(from);
    hm_listen_steer(cycle, workers);    /* only once nothing can fail */
    return HM_OK;

failed:
    /* Give the adopted sockets back to <old>, close the new ones. */
    for (i = 0; i < k; i++) {
        if (from[i] >= 0) {
            old->listens[from[i]].fd = ls[i].fd;
        } else {
            close(ls[i].fd);
        }
        ls[i].fd = -1;
    }
    free(from);
    return HM_ERROR;
}

/* The addresses of the adopted sockets (hm_listen_t.addr points here). */
static hm_addr_t *inherited_addrs;

int
hm_listen_inherited(hm_cycle_t *from)
{
    const char  *env = getenv("HAMLYN_FDS");
    char        *copy, *item, *save = NULL, *end, *last;
    hm_addr_t   *addrs;
    hm_listen_t *ls;
    size_t       n = 1, k = 0;
    long         fd, slot;
    int          type, acc;
    socklen_t    len;

    memset(from, 0, sizeof(*from));
    if (env == NULL || env[0] == '\0') {
        return 0;
    }
    for (end = (char *) env; *end != '\0'; end++) {
        n += *end == ';';
    }
    copy = hm_xstrdup(env);
    unsetenv("HAMLYN_FDS");
    addrs = hm_xcalloc(n, sizeof(hm_addr_t));
    ls = hm_xcalloc(n, sizeof(hm_listen_t));

    for (item = strtok_r(copy, ";", &save); item != NULL && k < n;
         item = strtok_r(NULL, ";", &save))
    {
        fd = strtol(item, &end, 10);
        last = strrchr(item, ':');
        if (end == item || *end != ':' || last == NULL || fd < 3
            || fd > 65535)
        {
            hm_log_warn(NULL, "HAMLYN_FDS: ignoring \"%s\"", item);
            continue;
        }
        slot = strtol(last + 1, NULL, 10);
        len = sizeof(type);
        addrs[k].len = sizeof(addrs[k].sa);
        if (getsockopt((int) fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0
            || type != SOCK_STREAM
            || getsockopt((int) fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0
            || !acc
            || getsockname((int) fd, (struct sockaddr *) &addrs[k].sa,
                           &addrs[k].len) < 0)
        {
            hm_log_warn(NULL, "HAMLYN_FDS: fd %ld is not a listening TCP "
                        "socket; ignored", fd);
            continue;
        }
        fcntl((int) fd, F_SETFD, FD_CLOEXEC);
        hm_addr_format((struct sockaddr *) &addrs[k].sa, addrs[k].text,
                       sizeof(addrs[k].text));
        ls[k].addr = &addrs[k];
        ls[k].slot = (int) slot;
        ls[k].fd = (int) fd;
        k++;
    }
    free(copy);
    from->listens = ls;
    from->nlistens = k;
    inherited_addrs = addrs;
    return (int) k;
}

void
hm_listen_inherited_free(hm_cycle_t *from)
{
    size_t i;

    for (i = 0; i < from->nlistens; i++) {
        if (from->listens[i].fd >= 0) {
            hm_log_info(NULL, "inherited socket %s (slot %d) is not in the "
                        "configuration any more; closed",
                        from->listens[i].addr->text, from->listens[i].slot);
            close(from->listens[i].fd);
        }
    }
    free(from->listens);
    free(inherited_addrs);
    inherited_addrs = NULL;
    memset(from, 0, sizeof(*from));
}

char *
hm_listen_export(hm_cycle_t *cycle, int for_exec)
{
    char   *buf;
    size_t  i, cap, off = 0;
    int     n;

    cap = cycle->nlistens * 96 + 1;
    buf = hm_xmalloc(cap);
    buf[0] = '\0';
    for (i = 0; i < cycle->nlistens; i++) {
        if (cycle->listens[i].fd < 0) {
            continue;
        }
        n = snprintf(buf + off, cap - off, "%s%d:%s:%d", off ? ";" : "",
                     cycle->listens[i].fd, cycle->listens[i].addr->text,
                     cycle->listens[i].slot);
        if (n < 0 || (size_t) n >= cap - off) {
            break;
        }
        off += (size_t) n;
        if (for_exec) {
            fcntl(cycle->listens[i].fd, F_SETFD, 0);
        }
    }
    return buf;
}

void
hm_listen_close_others(hm_cycle_t *cycle, int slot)
{
    size_t i;

    for (i = 0; i < cycle->nlistens; i++) {
        if (cycle->listens[i].owner != slot && cycle->listens[i].fd >= 0) {
            close(cycle->listens[i].fd);
            cycle->listens[i].fd = -1;
        }
    }
}

void
hm_listen_close_all(hm_cycle_t *cycle)
{
    size_t i;

    for (i = 0; i < cycle->nlistens; i++) {
        if (cycle->listens[i].fd >= 0) {
            close(cycle->listens[i].fd);
            cycle->listens[i].fd = -1;
        }
    }
}

void
hm_listen_describe(hm_cycle_t *cycle, char *buf, size_t len)
{
    hm_conf_t *conf = cycle->conf;
    size_t     i, a, off = 0;
    int        n;

    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    for (i = 0; i < conf->nlisteners; i++) {
        for (a = 0; a < conf->listeners[i].naddrs && off < len; a++) {
            n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "",
                         conf->listeners[i].addrs[a].text);
            if (n < 0) {
                return;
            }
            off += (size_t) n;
        }
    }
}

/*
 * hm_admin_listen.c: the master's side of the admin listener (hm_admin.h).
 * The master binds admin.listen once, as one plain TCP socket, before it
 * forks the workers; only the worker of slot 0 keeps it and serves it
 * (src/event/hm_admin.c).  A reload keeps the socket while the address
 * stays the same, binds the new address before anything else changes
 * (prepare), and swaps only once the new configuration is applied
 * (commit), so a failed reload leaves the admin listener as it was.
 *
 * SO_REUSEPORT is set so that the new master of a binary upgrade can bind
 * the same address while the old one still holds it.
 */
#include "hm_core.h"
#include "hm_admin.h"
#include "hm_log.h"
#include "hm_os.h"

#include <errno.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

int              hm_admin_fd = -1;
static hm_addr_t admin_addr;        /* of hm_admin_fd */
static int       pending_fd = -1;
static hm_addr_t pending_addr;

static int
admin_same(const hm_addr_t *a, const hm_addr_t *b)
{
    return a->len == b->len && strcmp(a->text, b->text) == 0;
}

static int
admin_same_port(const hm_addr_t *a, const hm_addr_t *b)
{
    if (a->sa.ss_family != b->sa.ss_family) {
        return 0;
    }
    if (a->sa.ss_family == AF_INET6) {
        return ((const struct sockaddr_in6 *) &a->sa)->sin6_port
               == ((const struct sockaddr_in6 *) &b->sa)->sin6_port;
    }
    return ((const struct sockaddr_in *) &a->sa)->sin_port
           == ((const struct sockaddr_in *) &b->sa)->sin_port;
}

int
hm_admin_prepare(const hm_conf_t *conf)
{
    const hm_addr_t *a = conf->admin_listen;
    const char      *what;
    int              fd, on = 1, saved;

    hm_admin_abort();
    if (a == NULL || (hm_admin_fd >= 0 && admin_same(a, &admin_addr))) {
        return HM_OK;
    }
    /* Another process on the port (see hm_listen_probe); the port of our
     * own current socket is not probed: a reload may move from
     * 0.0.0.0:P to 127.0.0.1:P. */
    fd = -1;
    what = "bind()";
    if ((hm_admin_fd < 0 || !admin_same_port(a, &admin_addr))
        && hm_listen_probe(a) != 0)
    {
        goto failed;
    }
    what = "socket()";
    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0) {
        goto failed;
    }
    what = "setsockopt()";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0
        || (a->sa.ss_family == AF_INET6
            && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0))
    {
        goto failed;
    }
    what = "bind()";
    if (bind(fd, (const struct sockaddr *) &a->sa, a->len) < 0) {
        goto failed;
    }
    what = "listen()";
    if (listen(fd, 64) < 0) {
        goto failed;
    }
    pending_fd = fd;
    pending_addr = *a;
    return HM_OK;

failed:
    saved = errno;
    if (fd >= 0) {
        close(fd);
    }
    hm_log_error(NULL, "admin.listen: cannot listen on %s: %s failed: %s",
                 a->text, what, strerror(saved));
    errno = saved;
    return HM_ERROR;
}

void
hm_admin_commit(const hm_conf_t *conf)
{
    if (conf->admin_listen == NULL) {
        if (hm_admin_fd >= 0) {
            close(hm_admin_fd);
            hm_admin_fd = -1;
        }
        hm_admin_abort();
        return;
    }
    if (pending_fd >= 0) {
        if (hm_admin_fd >= 0) {
            close(hm_admin_fd);
        }
        hm_admin_fd = pending_fd;
        admin_addr = pending_addr;
        pending_fd = -1;
        hm_log_info(NULL, "admin listener on %s", admin_addr.text);
    }
}

void
hm_admin_abort(void)
{
    if (pending_fd >= 0) {
        close(pending_fd);
        pending_fd = -1;
    }
}

void
hm_admin_child(int slot)
{
    hm_admin_abort();
    if (slot != 0 && hm_admin_fd >= 0) {
        close(hm_admin_fd);
        hm_admin_fd = -1;
    }
}

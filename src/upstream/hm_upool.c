/*
 * hm_upool.c: keep-alive pools of upstream connections (see hm_upool.h).
 * Runs in a worker only; no locks.  The per-peer entries live in a small
 * array searched linearly: a worker talks to few peers, and the lookup
 * happens once per request.
 */
#include "hm_core.h"
#include "hm_log.h"
#include "hm_worker.h"
#include "hm_upool.h"

typedef struct {
    hm_upstream_peer_t *peer;
    hm_upool_conn_t    *idle;       /* most recently used first */
    int                 nidle;
    void               *session;
} upool_entry_t;

static upool_entry_t *entries;
static size_t         nentries, centries;
static uv_timer_t     sweep_timer;
static int            sweep_on;
static int            sweep_init;

static upool_entry_t *
entry_of(hm_upstream_peer_t *peer, int create)
{
    size_t i;

    for (i = 0; i < nentries; i++) {
        if (entries[i].peer == peer) {
            return &entries[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (nentries == centries) {
        size_t n = centries ? centries * 2 : 16;
        upool_entry_t *e = realloc(entries, n * sizeof(*e));
        if (e == NULL) {
            return NULL;
        }
        entries = e;
        centries = n;
    }
    memset(&entries[nentries], 0, sizeof(entries[0]));
    entries[nentries].peer = peer;
    return &entries[nentries++];
}

static int
upstream_idle(const hm_conf_upstream_t *u)
{
    size_t i;
    int n = 0;

    for (i = 0; i < nentries; i++) {
        if (entries[i].peer->rt->conf == u) {
            n += entries[i].nidle;
        }
    }
    return n;
}

static void
unlink_idle(hm_upool_conn_t *uc)
{
    upool_entry_t *e = entry_of(uc->peer, 0);

    HM_ASSERT(uc->idle && e != NULL);
    if (uc->prev != NULL) {
        uc->prev->next = uc->next;
    } else {
        e->idle = uc->next;
    }
    if (uc->next != NULL) {
        uc->next->prev = uc->prev;
    }
    uc->next = uc->prev = NULL;
    uc->idle = 0;
    e->nidle--;
}

static void
conn_closed(hm_stream_t *s)
{
    free(hm_container_of(s, hm_upool_conn_t, s));
}

/* Closes an idle connection (its count was released when it went idle). */
static void
idle_close(hm_upool_conn_t *uc)
{
    unlink_idle(uc);
    hm_stream_close(&uc->s, conn_closed);
}

static void
idle_read_cb(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    hm_upool_conn_t *uc = hm_container_of(s, hm_upool_conn_t, s);

    /* Bytes or EOF on an idle connection: the server closed it (or sent
     * something unsolicited).  Never reuse it. */
    hm_log_debug(NULL, "upstream %s: idle connection %s, dropped",
                 uc->peer->text, nread < 0 ? "closed" : "sent data");
    idle_close(uc);
}

static void
sweep_cb(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    hm_upool_conn_t *uc, *next;
    size_t i;
    int any = 0;
    uint64_t tmo;

    for (i = 0; i < nentries; i++) {
        tmo = (uint64_t) entries[i].peer->rt->conf->pool_idle_timeout_s * 1000;
        for (uc = entries[i].idle; uc != NULL; uc = next) {
            next = uc->next;
            if (now - uc->idle_since >= tmo) {
                idle_close(uc);
            }
        }
        any |= entries[i].nidle > 0;
    }
    if (!any) {
        uv_timer_stop(t);
        sweep_on = 0;
    }
}

static void
sweep_start(void)
{
    if (sweep_on || hm_worker == NULL) {
        return;
    }
    if (!sweep_init) {
        uv_timer_init(hm_worker->loop, &sweep_timer);
        uv_unref((uv_handle_t *) &sweep_timer);
        sweep_init = 1;
    }
    uv_timer_start(&sweep_timer, sweep_cb, 1000, 1000);
    sweep_on = 1;
}

hm_upool_conn_t *
hm_upool_get(hm_upstream_peer_t *peer)
{
    upool_entry_t *e = entry_of(peer, 0);
    hm_upool_conn_t *uc;

    if (e == NULL || e->idle == NULL) {
        return NULL;
    }
    uc = e->idle;
    unlink_idle(uc);
    /* Still reading (no epoll change per request): the caller installs
     * its own read callback before it returns to the loop. */
    uc->s.data = NULL;
    return uc;
}

hm_upool_conn_t *
hm_upool_conn_new(hm_upstream_peer_t *peer)
{
    hm_upool_conn_t *uc = calloc(1, sizeof(*uc));

    if (uc != NULL) {
        uc->peer = peer;
    }
    return uc;
}

void
hm_upool_put(hm_upool_conn_t *uc)
{
    const hm_conf_upstream_t *u = uc->peer->rt->conf;
    upool_entry_t *e;

    hm_upstream_peer_release(uc->peer);
    e = entry_of(uc->peer, 1);
    if (e == NULL || u->pool_max_idle <= 0 || u->pool_idle_timeout_s <= 0
        || upstream_idle(u) >= u->pool_max_idle || hm_worker == NULL
        || hm_worker->quitting || uc->s.closing)
    {
        hm_stream_close(&uc->s, conn_closed);
        return;
    }
    uc->s.data = NULL;
    uc->idle = 1;
    uc->idle_since = uv_now(hm_worker->loop);
    uc->prev = NULL;
    uc->next = e->idle;
    if (e->idle != NULL) {
        e->idle->prev = uc;
    }
    e->idle = uc;
    e->nidle++;
    if (hm_stream_read_start(&uc->s, idle_read_cb) != 0) {
        idle_close(uc);
        return;
    }
    sweep_start();
}

void
hm_upool_close(hm_upool_conn_t *uc)
{
    HM_ASSERT(!uc->idle);
    hm_upstream_peer_release(uc->peer);
    hm_stream_close(&uc->s, conn_closed);
}

void *
hm_upool_session(hm_upstream_peer_t *peer)
{
    upool_entry_t *e = entry_of(peer, 0);

    return e != NULL ? e->session : NULL;
}

void
hm_upool_set_session(hm_upstream_peer_t *peer, void *session)
{
    upool_entry_t *e = entry_of(peer, 1);

    if (e == NULL) {
        hm_stream_tls_session_free(session);
        return;
    }
    if (e->session != NULL) {
        hm_stream_tls_session_free(e->session);
    }
    e->session = session;
}

void
hm_upool_close_idle(void)
{
    size_t i;

    for (i = 0; i < nentries; i++) {
        while (entries[i].idle != NULL) {
            idle_close(entries[i].idle);
        }
    }
}

int
hm_upool_idle_count(const hm_upstream_peer_t *peer)
{
    upool_entry_t *e = entry_of((hm_upstream_peer_t *) peer, 0);

    return e != NULL ? e->nidle : 0;
}

/*
 * hm_metrics.c: per-worker counters in a mapping the master shares with
 * its children (hm_metrics.h), and their Prometheus rendering.
 *
 * Where it sits: the master creates the mapping at start
 * (hm_metrics_init), hands a slot to each worker it forks
 * (hm_metrics_acquire/owned/attach) and takes it back when the worker is
 * reaped.  Workers bump counters with the HM_METRIC_* macros from the
 * accept, TLS, HTTP and close paths.  The admin server of worker slot 0
 * (src/event/hm_admin.c) renders the sum with hm_metrics_render(), which,
 * like hm_metrics_sum(), is a pure function of the mapping's bytes and is
 * unit-tested on private memory.
 *
 * Readers in another process may see a counter one increment old: every
 * counter is one aligned uint64 with a single writer, so a reader never
 * sees a torn value on the 64-bit targets we build for.
 */
#include "hm_core.h"
#include "hm_log.h"
#include "hm_metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>

hm_metrics_shm_t         *hm_metrics_shm;
static hm_metrics_slot_t  metrics_dummy;
hm_metrics_slot_t        *hm_metrics_local = &metrics_dummy;

static const char *const outcome_names[HM_MX_NOUTCOMES] = {
    "ok", "timeout", "no_sni_match", "bad_hello", "tls_handshake_failed",
    "bad_request", "client_closed", "upstream_error", "no_upstream",
    "shutdown", "too_many_connections", "redirect", "other"
};

/* Access-log outcome strings -> HM_MX_OUT_*.  Unknown ones: other. */
static const struct {
    const char *name;
    int         out;
} outcome_map[] = {
    { "ok", HM_MX_OUT_OK },
    { "fixed", HM_MX_OUT_OK },
    { "timeout", HM_MX_OUT_TIMEOUT },
    { "idle_timeout", HM_MX_OUT_TIMEOUT },
    { "tls_handshake_timeout", HM_MX_OUT_TIMEOUT },
    { "no_sni_match", HM_MX_OUT_NO_SNI_MATCH },
    { "refused", HM_MX_OUT_NO_SNI_MATCH },
    { "bad_hello", HM_MX_OUT_BAD_HELLO },
    { "not_tls", HM_MX_OUT_BAD_HELLO },
    { "bad_proxy_protocol", HM_MX_OUT_BAD_HELLO },
    { "tls_handshake_failed", HM_MX_OUT_TLS_HANDSHAKE_FAILED },
    { "bad_request", HM_MX_OUT_BAD_REQUEST },
    { "body_too_large", HM_MX_OUT_BAD_REQUEST },
    { "misdirected", HM_MX_OUT_BAD_REQUEST },
    { "filtered", HM_MX_OUT_BAD_REQUEST },
    { "no_route", HM_MX_OUT_BAD_REQUEST },
    { "client_closed", HM_MX_OUT_CLIENT_CLOSED },
    { "aborted", HM_MX_OUT_CLIENT_CLOSED },
    { "upstream_error", HM_MX_OUT_UPSTREAM_ERROR },
    { "upstream_refused", HM_MX_OUT_UPSTREAM_ERROR },
    { "upstream_timeout", HM_MX_OUT_UPSTREAM_ERROR },
    { "no_upstream", HM_MX_OUT_NO_UPSTREAM },
    { "shutdown", HM_MX_OUT_SHUTDOWN },
    { "too_many_connections", HM_MX_OUT_TOO_MANY_CONNECTIONS },
    { "redirect", HM_MX_OUT_REDIRECT },
};

int
hm_metrics_outcome(const char *outcome)
{
    size_t i;

    if (outcome == NULL) {
        return HM_MX_OUT_OK;
    }
    for (i = 0; i < hm_nelem(outcome_map); i++) {
        if (strcmp(outcome, outcome_map[i].name) == 0) {
            return outcome_map[i].out;
        }
    }
    return HM_MX_OUT_OTHER;
}

const char *
hm_metrics_outcome_name(int outcome)
{
    if (outcome < 0 || outcome >= HM_MX_NOUTCOMES) {
        return "other";
    }
    return outcome_names[outcome];
}

/* ---- the mapping ------------------------------------------------------ */

static size_t
shm_size(unsigned nslots)
{
    return sizeof(hm_metrics_shm_t)
           + (size_t) nslots * sizeof(hm_metrics_slot_t);
}

hm_metrics_shm_t *
hm_metrics_create(unsigned nslots, int shared)
{
    hm_metrics_shm_t *shm;
    void             *p;

    if (nslots == 0) {
        errno = EINVAL;
        return NULL;
    }
    p = mmap(NULL, shm_size(nslots), PROT_READ | PROT_WRITE,
             (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    shm = p;                        /* zero-filled by the kernel */
    shm->magic = HM_METRICS_MAGIC;
    shm->nslots = nslots;
    return shm;
}

void
hm_metrics_free(hm_metrics_shm_t *shm)
{
    if (shm != NULL) {
        munmap(shm, shm_size(shm->nslots));
    }
}

int
hm_metrics_init(void)
{
    if (hm_metrics_shm != NULL) {
        return HM_OK;
    }
    hm_metrics_shm = hm_metrics_create(HM_METRICS_SLOTS, 1);
    if (hm_metrics_shm == NULL) {
        hm_log_error(NULL, "metrics: mmap(%zu bytes) failed: %s; running "
                     "without metrics", shm_size(HM_METRICS_SLOTS),
                     strerror(errno));
        return HM_ERROR;
    }
    return HM_OK;
}

void
hm_metrics_generation(unsigned workers, int reload)
{
    if (hm_metrics_shm == NULL) {
        return;
    }
    hm_metrics_shm->generation++;
    hm_metrics_shm->workers = workers;
    if (reload) {
        hm_metrics_shm->reloads++;
    }
}

int
hm_metrics_acquire(hm_metrics_shm_t *shm, int worker_slot)
{
    int i, n;

    if (shm == NULL) {
        return -1;
    }
    n = (int) shm->nslots;
    if (worker_slot >= 0 && worker_slot < n
        && shm->slots[worker_slot].owner == 0)
    {
        i = worker_slot;
    } else {
        /* Taken (an old generation drains in it): the highest free one,
         * away from the indexes the next generation will ask for. */
        for (i = n - 1; i >= 0; i--) {
            if (shm->slots[i].owner == 0) {
                break;
            }
        }
        if (i < 0) {
            /* More live processes than slots: share (counts may be lost,
             * nothing breaks). */
            i = worker_slot >= 0 ? worker_slot % n : 0;
        }
    }
    shm->slots[i].owner = -1;
    shm->slots[i].generation = shm->generation;
    return i;
}

void
hm_metrics_owned(hm_metrics_shm_t *shm, int mslot, int pid)
{
    if (shm == NULL || mslot < 0 || mslot >= (int) shm->nslots) {
        return;
    }
    shm->slots[mslot].owner = pid;
}

void
hm_metrics_reaped(hm_metrics_shm_t *shm, int pid)
{
    unsigned i;

    if (shm == NULL || pid <= 0) {
        return;
    }
    for (i = 0; i < shm->nslots; i++) {
        if (shm->slots[i].owner == pid) {
            shm->slots[i].owner = 0;
            /* Its connections died with it. */
            shm->slots[i].c[HM_MX_CONNECTIONS_ACTIVE] = 0;
        }
    }
}

void
hm_metrics_worker_restart(void)
{
    if (hm_metrics_shm != NULL) {
        hm_metrics_shm->worker_restarts++;
    }
}

void
hm_metrics_attach(int mslot)
{
    if (hm_metrics_shm == NULL || mslot < 0
        || mslot >= (int) hm_metrics_shm->nslots)
    {
        return;
    }
    hm_metrics_local = &hm_metrics_shm->slots[mslot];
    /* Connections of a predecessor that died are not ours. */
    hm_metrics_local->c[HM_MX_CONNECTIONS_ACTIVE] = 0;
}

int
hm_metrics_listener_row(hm_metrics_shm_t *shm, const char *name)
{
    uint32_t i, n;
    size_t   len;

    if (shm == NULL || name == NULL) {
        return HM_METRICS_LISTENERS - 1;
    }
    len = strlen(name);
    n = shm->nlisteners;
    for (i = 0; i < n; i++) {
        if (strcmp(shm->lnames[i], name) == 0) {
            return (int) i;
        }
    }
    if (n >= HM_METRICS_LISTENERS - 1 || len >= HM_METRICS_LNAME) {
        shm->other_used = 1;
        return HM_METRICS_LISTENERS - 1;
    }
    memcpy(shm->lnames[n], name, len + 1);
    /* The admin server of an older generation may be rendering now: the
     * name is complete before it counts. */
    __atomic_store_n(&shm->nlisteners, n + 1, __ATOMIC_RELEASE);
    return (int) n;
}

void
hm_metrics_conn_done(int listener, const char *outcome)
{
    int l = listener;

    if (l < 0) {
        return;
    }
    if (l >= HM_METRICS_LISTENERS) {
        l = HM_METRICS_LISTENERS - 1;
    }
    hm_metrics_local->conns[l][hm_metrics_outcome(outcome)]++;
}

void
hm_metrics_http_status(int status)
{
    if (status >= 100 && status < 600) {
        hm_metrics_local->c[HM_MX_HTTP_1XX + status / 100 - 1]++;
    }
}

void
hm_metrics_sum(const hm_metrics_shm_t *shm, hm_metrics_slot_t *sum)
{
    const hm_metrics_slot_t *s;
    unsigned                 i;
    size_t                   k, l;

    memset(sum, 0, sizeof(*sum));
    for (i = 0; i < shm->nslots; i++) {
        s = &shm->slots[i];
        for (k = 0; k < HM_MX_NCOUNTERS; k++) {
            sum->c[k] += __atomic_load_n(&s->c[k], __ATOMIC_RELAXED);
        }
        for (l = 0; l < HM_METRICS_LISTENERS; l++) {
            for (k = 0; k < HM_MX_NOUTCOMES; k++) {
                sum->conns[l][k] += __atomic_load_n(&s->conns[l][k],
                                                    __ATOMIC_RELAXED);
            }
        }
    }
}

unsigned
hm_metrics_workers_up(const hm_metrics_shm_t *shm)
{
    unsigned i, n = 0;

    for (i = 0; i < shm->nslots; i++) {
        if (shm->slots[i].owner > 0
            && shm->slots[i].generation == shm->generation)
        {
            n++;
        }
    }
    return n;
}

/* ---- rendering -------------------------------------------------------- */

typedef struct {
    char   *buf;
    size_t  len;
    size_t  cap;
    int     failed;
} mbuf_t;

static void HM_PRINTF(2, 3)
mb_printf(mbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int     n;
    size_t  ncap;
    char   *nb;

    if (b->failed) {
        return;
    }
    for ( ;; ) {
        va_start(ap, fmt);
        n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t) n < b->cap - b->len) {
            b->len += (size_t) n;
            return;
        }
        ncap = b->cap * 2 + (size_t) n;
        nb = realloc(b->buf, ncap);
        if (nb == NULL) {
            b->failed = 1;
            return;
        }
        b->buf = nb;
        b->cap = ncap;
    }
}

static void
mb_family(mbuf_t *b, const char *name, const char *type, const char *help)
{
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values: escape backslash, double quote and newline (0.0.4). */
static void
mb_label(mbuf_t *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\') {
            mb_printf(b, "\\\\");
        } else if (*v == '"') {
            mb_printf(b, "\\\"");
        } else if (*v == '\n') {
            mb_printf(b, "\\n");
        } else {
            mb_printf(b, "%c", *v);
        }
    }
}

static const struct {
    const char *name;
    const char *type;
    int         idx;
    const char *help;
} simple_families[] = {
    { "hamlyn_connections_active", "gauge", HM_MX_CONNECTIONS_ACTIVE,
      "Client connections open now." },
    { "hamlyn_passthrough_connections_total", "counter",
      HM_MX_PASSTHROUGH_CONNECTIONS,
      "Finished connections relayed as TLS bytes (passthrough sites)." },
    { "hamlyn_terminate_connections_total", "counter",
      HM_MX_TERMINATE_CONNECTIONS,
      "Finished connections handed to the TLS stack (terminate sites)." },
    { "hamlyn_redirect_connections_total", "counter",
      HM_MX_REDIRECT_CONNECTIONS,
      "Finished connections of redirect_to_https listeners." },
    { "hamlyn_tls_handshakes_total", "counter", HM_MX_TLS_HANDSHAKES,
      "Completed TLS handshakes with clients." },
    { "hamlyn_tls_handshake_failures_total", "counter",
      HM_MX_TLS_HANDSHAKE_FAILURES,
      "Failed or timed out TLS handshakes with clients." },
    { "hamlyn_bytes_received_total", "counter", HM_MX_BYTES_RECEIVED,
      "Bytes received from clients (finished connections)." },
    { "hamlyn_bytes_sent_total", "counter", HM_MX_BYTES_SENT,
      "Bytes sent to clients (finished connections)." },
    { "hamlyn_upstream_connect_failures_total", "counter",
      HM_MX_UPSTREAM_CONNECT_FAILURES,
      "Failed attempts to connect to an upstream server." },
    { "hamlyn_admin_requests_total", "counter", HM_MX_ADMIN_REQUESTS,
      "Requests served by the admin listener." },
    { "hamlyn_tls_resumed_total", "counter", HM_MX_TLS_RESUMED,
      "Completed TLS handshakes with clients that resumed a session." },
    { "hamlyn_upstream_connections_total", "counter",
      HM_MX_UPSTREAM_CONNECTIONS,
      "Connections to upstream servers established (HTTP and passthrough)." },
    { "hamlyn_upstream_tls_handshakes_total", "counter",
      HM_MX_UPSTREAM_TLS_HANDSHAKES,
      "Completed TLS handshakes with upstream servers (re-encryption)." },
    { "hamlyn_upstream_tls_resumed_total", "counter",
      HM_MX_UPSTREAM_TLS_RESUMED,
      "Upstream TLS handshakes that resumed a cached session." },
    { "hamlyn_upstream_requests_total", "counter", HM_MX_UPSTREAM_REQUESTS,
      "HTTP requests sent to upstream servers (retries included)." },
    { "hamlyn_upstream_pool_reuses_total", "counter",
      HM_MX_UPSTREAM_POOL_REUSES,
      "HTTP requests sent on a pooled keep-alive upstream connection." },
};

char *
hm_metrics_render(const hm_metrics_shm_t *shm, const char *const *names,
                  size_t nnames, size_t *len)
{
    hm_metrics_slot_t *sum;
    mbuf_t             b;
    size_t             i, l, nl, k;
    const char        *name;
    int                other;

    sum = malloc(sizeof(*sum));
    b.cap = 4096;
    b.len = 0;
    b.failed = 0;
    b.buf = malloc(b.cap);
    if (sum == NULL || b.buf == NULL) {
        free(sum);
        free(b.buf);
        return NULL;
    }
    hm_metrics_sum(shm, sum);

    mb_family(&b, "hamlyn_connections_total", "counter",
              "Finished client connections by listener and outcome.");
    if (names == NULL) {
        /* the rows recorded by hm_metrics_listener_row() */
        nnames = __atomic_load_n(&shm->nlisteners, __ATOMIC_ACQUIRE);
        if (nnames > HM_METRICS_LISTENERS - 1) {
            nnames = HM_METRICS_LISTENERS - 1;
        }
        other = __atomic_load_n(&shm->other_used, __ATOMIC_RELAXED) != 0;
    } else {
        other = nnames >= HM_METRICS_LISTENERS - 1;
    }
    nl = hm_min(nnames, (size_t) HM_METRICS_LISTENERS - 1);
    for (l = 0; l < HM_METRICS_LISTENERS; l++) {
        if (l < nl) {
            name = names != NULL ? names[l] : shm->lnames[l];
        } else if (l == HM_METRICS_LISTENERS - 1 && other) {
            name = "_other";
        } else {
            continue;
        }
        for (k = 0; k < HM_MX_NOUTCOMES; k++) {
            mb_printf(&b, "hamlyn_connections_total{listener=\"");
            mb_label(&b, name);
            mb_printf(&b, "\",outcome=\"%s\"} %llu\n", outcome_names[k],
                      (unsigned long long) sum->conns[l][k]);
        }
    }

    for (i = 0; i < hm_nelem(simple_families); i++) {
        mb_family(&b, simple_families[i].name, simple_families[i].type,
                  simple_families[i].help);
        mb_printf(&b, "%s %llu\n", simple_families[i].name,
                  (unsigned long long) sum->c[simple_families[i].idx]);
    }

    mb_family(&b, "hamlyn_http_requests_total", "counter",
              "HTTP responses to clients by status class.");
    for (k = 0; k < 5; k++) {
        mb_printf(&b, "hamlyn_http_requests_total{code=\"%zuxx\"} %llu\n",
                  k + 1, (unsigned long long) sum->c[HM_MX_HTTP_1XX + k]);
    }

    mb_family(&b, "hamlyn_worker_restarts_total", "counter",
              "Workers restarted by the master after they died.");
    mb_printf(&b, "hamlyn_worker_restarts_total %llu\n",
              (unsigned long long) shm->worker_restarts);
    mb_family(&b, "hamlyn_reloads_total", "counter",
              "Configuration reloads applied (HUP).");
    mb_printf(&b, "hamlyn_reloads_total %llu\n",
              (unsigned long long) shm->reloads);
    mb_family(&b, "hamlyn_workers", "gauge",
              "Worker processes configured.");
    mb_printf(&b, "hamlyn_workers %u\n", shm->workers);
    mb_family(&b, "hamlyn_workers_up", "gauge",
              "Worker processes of the current configuration running.");
    mb_printf(&b, "hamlyn_workers_up %u\n", hm_metrics_workers_up(shm));

    free(sum);
    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    *len = b.len;
    return b.buf;
}

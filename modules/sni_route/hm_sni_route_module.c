/*
 * hm_sni_route_module.c: routes a connection by the ClientHello's SNI
 * (STYLE.md section 4, step 3).  At postconfig it precomputes, per
 * listener, a sorted table of exact server names and one of "*." wildcard
 * suffixes over the listener's sites; on_client_hello then picks the site
 * (exact beats wildcard, a wildcard covers exactly one label, matching is
 * case-insensitive), falls back to the listener's default_site, or refuses
 * with the TLS alert unrecognized_name.  The site's mode gives the action:
 * passthrough (bytes to its upstream) or terminate (TLS stack).
 */
#include "hm_core.h"
#include "hm_conn.h"
#include "hm_cycle.h"
#include "hm_module.h"
#include "hm_tls_hello.h"

#include <strings.h>

typedef struct {
    const char     *name;       /* lower-cased; wildcard: without "*." */
    size_t          len;
    hm_conf_site_t *site;
} hm_sni_entry_t;

typedef struct {
    hm_sni_entry_t *exact;
    size_t          nexact;
    hm_sni_entry_t *wild;
    size_t          nwild;
} hm_sni_table_t;

typedef struct {
    hm_sni_table_t *tables;     /* by listener index */
    size_t          ntables;
} hm_sni_conf_t;

hm_module_t hm_sni_route_module;

static int
entry_cmp(const void *a, const void *b)
{
    const hm_sni_entry_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->name, y->name, n);

    if (r != 0) {
        return r;
    }
    return x->len < y->len ? -1 : x->len > y->len;
}

/*
 * Looks name[0..len) up in a sorted table.  Returns the site or NULL.
 * (Binary search: listeners may carry thousands of names.)
 */
static hm_conf_site_t *
table_find(const hm_sni_entry_t *t, size_t n, const char *name, size_t len)
{
    hm_sni_entry_t key;
    const hm_sni_entry_t *e;

    if (n == 0) {
        return NULL;
    }
    key.name = name;
    key.len = len;
    e = bsearch(&key, t, n, sizeof(*t), entry_cmp);
    return e != NULL ? e->site : NULL;
}

/*
 * Finds the site for a lower-cased server name on table t: exact match
 * first, then a "*.suffix" entry where name is one label plus ".suffix".
 */
static hm_conf_site_t *
sni_lookup(const hm_sni_table_t *t, const char *name, size_t len)
{
    hm_conf_site_t *site;
    const char *dot;

    site = table_find(t->exact, t->nexact, name, len);
    if (site != NULL) {
        return site;
    }
    dot = memchr(name, '.', len);
    if (dot == NULL || dot == name || (size_t) (dot - name) + 1 >= len) {
        return NULL;
    }
    return table_find(t->wild, t->nwild, dot + 1, len - (size_t) (dot - name) - 1);
}

static int
add_names(hm_pool_t *pool, hm_conf_listener_t *l, hm_sni_table_t *t,
          size_t cap)
{
    size_t i, j, k;
    hm_conf_site_t *s;
    const char *nm;
    char *low;
    size_t len;
    int rc = HM_OK;

    for (i = 0; i < l->nsites; i++) {
        s = l->sites[i];
        for (j = 0; j < s->nserver_names; j++) {
            nm = s->server_names[j];
            len = strlen(nm);
            low = hm_pool_strndup(pool, nm, len);
            if (low == NULL) {
                return HM_ERROR;
            }
            hm_strlow(low, low, len);
            if (len > 2 && low[0] == '*' && low[1] == '.') {
                HM_ASSERT(t->nwild < cap);
                t->wild[t->nwild].name = low + 2;
                t->wild[t->nwild].len = len - 2;
                t->wild[t->nwild++].site = s;
            } else {
                HM_ASSERT(t->nexact < cap);
                t->exact[t->nexact].name = low;
                t->exact[t->nexact].len = len;
                t->exact[t->nexact++].site = s;
            }
        }
    }
    qsort(t->exact, t->nexact, sizeof(hm_sni_entry_t), entry_cmp);
    qsort(t->wild, t->nwild, sizeof(hm_sni_entry_t), entry_cmp);

    /* The loader refuses duplicate names across sites; a duplicate that
     * still reaches us would make routing depend on sort order. */
    for (k = 1; k < t->nexact; k++) {
        if (entry_cmp(&t->exact[k - 1], &t->exact[k]) == 0
            && t->exact[k - 1].site != t->exact[k].site)
        {
            hm_log_error(NULL, "listeners.%s: server name \"%s\" belongs to "
                         "sites \"%s\" and \"%s\"", l->name, t->exact[k].name,
                         t->exact[k - 1].site->name, t->exact[k].site->name);
            rc = HM_ERROR;
        }
    }
    for (k = 1; k < t->nwild; k++) {
        if (entry_cmp(&t->wild[k - 1], &t->wild[k]) == 0
            && t->wild[k - 1].site != t->wild[k].site)
        {
            hm_log_error(NULL, "listeners.%s: server name \"*.%s\" belongs "
                         "to sites \"%s\" and \"%s\"", l->name,
                         t->wild[k].name, t->wild[k - 1].site->name,
                         t->wild[k].site->name);
            rc = HM_ERROR;
        }
    }
    return rc;
}

/*
 * Builds one SNI table per listener into cycle->module_conf[ctx_index]
 * (cycle pool).  HM_ERROR on a conflict (logged with the listener's name).
 */
static int
sni_postconfig(hm_cycle_t *cycle)
{
    hm_conf_t *conf = cycle->conf;
    hm_sni_conf_t *sc;
    hm_sni_table_t *t;
    size_t i, j, n;
    int rc = HM_OK;

    sc = hm_pool_calloc(cycle->pool, sizeof(*sc));
    if (sc == NULL) {
        return HM_ERROR;
    }
    sc->ntables = conf->nlisteners;
    sc->tables = hm_pool_calloc(cycle->pool,
                                (conf->nlisteners ? conf->nlisteners : 1)
                                * sizeof(hm_sni_table_t));
    if (sc->tables == NULL) {
        return HM_ERROR;
    }
    for (i = 0; i < conf->nlisteners; i++) {
        hm_conf_listener_t *l = &conf->listeners[i];
        t = &sc->tables[i];
        n = 0;
        for (j = 0; j < l->nsites; j++) {
            n += l->sites[j]->nserver_names;
        }
        t->exact = hm_pool_calloc(cycle->pool,
                                  (n ? n : 1) * sizeof(hm_sni_entry_t));
        t->wild = hm_pool_calloc(cycle->pool,
                                 (n ? n : 1) * sizeof(hm_sni_entry_t));
        if (t->exact == NULL || t->wild == NULL
            || add_names(cycle->pool, l, t, n) != HM_OK)
        {
            rc = HM_ERROR;
        }
    }
    cycle->module_conf[hm_sni_route_module.ctx_index] = sc;
    return rc;
}

/*
 * Chooses c->site and c->route_action from the hello's SNI.  Always
 * decides (HM_DONE): unknown names without a default site are
 * HM_ROUTE_REJECT with alert unrecognized_name.
 */
static int
sni_on_client_hello(hm_conn_t *c, const hm_tls_hello_t *hello)
{
    hm_sni_conf_t *sc = c->cycle->module_conf[hm_sni_route_module.ctx_index];
    hm_conf_listener_t *l = c->listener;
    hm_conf_site_t *site = NULL;
    char low[HM_TLS_HELLO_MAX_SNI + 1];
    size_t len;

    if (sc == NULL || l == NULL) {
        return HM_DECLINED;
    }
    if (hello->has_sni && hello->sni_len > 0
        && l->index >= 0 && (size_t) l->index < sc->ntables)
    {
        len = hm_min(hello->sni_len, sizeof(low) - 1);
        hm_strlow(low, hello->sni, len);
        low[len] = '\0';
        site = sni_lookup(&sc->tables[l->index], low, len);
    }
    if (site == NULL) {
        site = l->default_site;
    }
    if (site == NULL) {
        c->site = NULL;
        c->route_action = HM_ROUTE_REJECT;
        c->alert = HM_TLS_ALERT_UNRECOGNIZED_NAME;
        c->outcome = "no_sni_match";
        return HM_DONE;
    }
    c->site = site;
    c->route_action = site->mode == HM_SITE_TERMINATE ? HM_ROUTE_TERMINATE
                                                      : HM_ROUTE_PASSTHROUGH;
    return HM_DONE;
}

hm_module_t hm_sni_route_module = {
    HM_MODULE_HEADER,
    "sni_route",
    -1,
    sni_postconfig,         /* postconfig */
    NULL,                   /* init_master */
    NULL,                   /* init_worker */
    NULL,                   /* exit_worker */
    NULL,                   /* exit_master */
    NULL,                   /* on_accept */
    sni_on_client_hello,    /* on_client_hello */
    NULL,                   /* on_request */
    NULL,                   /* on_response */
    NULL                    /* on_log */
};

/* Exposed for unit tests: lookup on listener index li of cycle. */
hm_conf_site_t *hm_sni_route_lookup(hm_cycle_t *cycle, int li,
                                    const char *name);

hm_conf_site_t *
hm_sni_route_lookup(hm_cycle_t *cycle, int li, const char *name)
{
    hm_sni_conf_t *sc = cycle->module_conf[hm_sni_route_module.ctx_index];
    char low[HM_TLS_HELLO_MAX_SNI + 1];
    size_t len = strlen(name);

    if (sc == NULL || li < 0 || (size_t) li >= sc->ntables
        || len >= sizeof(low))
    {
        return NULL;
    }
    hm_strlow(low, name, len);
    low[len] = '\0';
    return sni_lookup(&sc->tables[li], low, len);
}

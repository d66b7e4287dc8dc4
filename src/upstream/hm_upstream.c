/*
 * hm_upstream.c: per-worker upstream runtime state and peer selection.
 *
 * Sits between a decision ("this connection/request goes to upstream
 * group U", made by sni_route or the HTTP router) and the connect: it
 * chooses the peer (round_robin with smooth weights as in nginx,
 * least_conn, random_two), skips peers passive health marked down and
 * peers already tried for this client, and keeps the per-peer counters.
 *
 * The state lives in the worker process only (each worker balances on its
 * own, like nginx without a shared zone).  It is allocated once per
 * configuration generation with hm_xcalloc (start-up path, never per
 * connection) and kept for the worker's life.
 */
#include "hm_core.h"
#include "hm_cycle.h"
#include "hm_upstream.h"

#include <time.h>
#include <unistd.h>

/* One configuration generation's runtime state (a worker normally has
 * one; a reload may add another while old connections drain). */
typedef struct hm_upstream_set_s {
    const hm_conf_upstream_t *first;    /* conf->upstreams */
    size_t                    n;
    hm_upstream_rt_t         *rts;
    struct hm_upstream_set_s *next;
} hm_upstream_set_t;

static hm_upstream_set_t *sets;
static uint64_t           seed;

static uint64_t
rnd_next(hm_upstream_rt_t *rt)
{
    uint64_t x = rt->rnd;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rt->rnd = x;
    return x;
}

static void
rt_build(hm_upstream_rt_t *rt, const hm_conf_upstream_t *u)
{
    hm_upstream_peer_t *p;
    size_t i;

    rt->conf = u;
    rt->npeers = u->nservers;
    rt->peers = hm_xcalloc(u->nservers ? u->nservers : 1, sizeof(*p));
    if (seed == 0) {
        seed = ((uint64_t) getpid() << 32) ^ (uint64_t) time(NULL)
               ^ 0x9e3779b97f4a7c15ULL;
    }
    seed += 0x9e3779b97f4a7c15ULL;
    rt->rnd = seed | 1;
    for (i = 0; i < u->nservers; i++) {
        p = &rt->peers[i];
        p->server = &u->servers[i];
        p->addr = (const struct sockaddr *) &u->servers[i].addr.sa;
        p->addr_len = u->servers[i].addr.len;
        p->text = u->servers[i].addr.text;
        p->rt = rt;
        p->index = (int) i;
        p->weight = u->servers[i].weight > 0 ? u->servers[i].weight : 1;
    }
}

static hm_upstream_set_t *
set_new(const hm_conf_upstream_t *first, size_t n)
{
    hm_upstream_set_t *s;
    size_t i;

    s = hm_xcalloc(1, sizeof(*s));
    s->first = first;
    s->n = n;
    s->rts = hm_xcalloc(n ? n : 1, sizeof(hm_upstream_rt_t));
    for (i = 0; i < n; i++) {
        rt_build(&s->rts[i], &first[i]);
    }
    s->next = sets;
    sets = s;
    return s;
}

int
hm_upstream_init_worker(hm_cycle_t *cycle)
{
    hm_conf_t *conf = cycle->conf;
    hm_upstream_set_t *s;

    for (s = sets; s != NULL; s = s->next) {
        if (s->first == conf->upstreams) {
            return HM_OK;
        }
    }
    set_new(conf->upstreams, conf->nupstreams);
    return HM_OK;
}

hm_upstream_rt_t *
hm_upstream_rt(const hm_conf_upstream_t *u)
{
    hm_upstream_set_t *s;
    hm_upstream_rt_t *rt;

    for (s = sets; s != NULL; s = s->next) {
        if (u >= s->first && u < s->first + s->n) {
            return &s->rts[u - s->first];
        }
    }
    /* An upstream not reached through a cycle (unit tests, or a caller
     * that skipped init): a set of its own. */
    s = hm_xcalloc(1, sizeof(*s));
    s->first = u;
    s->n = 1;
    rt = s->rts = hm_xcalloc(1, sizeof(hm_upstream_rt_t));
    rt_build(rt, u);
    s->next = sets;
    sets = s;
    return rt;
}

int
hm_upstream_peer_up(const hm_upstream_peer_t *peer, uint64_t now_ms)
{
    return !peer->health_down
           && (peer->down_until_ms == 0 || now_ms >= peer->down_until_ms);
}

/*
 * Active health verdict.  up = 1 (the server passed its checks again)
 * also clears the passive ejection state (failure count, down_until), so
 * the server gets traffic at once instead of after fail_timeout_s.
 */
void
hm_upstream_peer_set_health(hm_upstream_peer_t *peer, int up)
{
    peer->health_down = !up;
    if (up) {
        peer->fails = 0;
        peer->fail_start_ms = 0;
        peer->down_until_ms = 0;
    }
}

static int
excluded(const hm_upstream_peer_t *p, hm_upstream_peer_t *const *exclude,
         size_t nexclude)
{
    size_t i;

    for (i = 0; i < nexclude; i++) {
        if (exclude[i] == p) {
            return 1;
        }
    }
    return 0;
}

/* Compares load of a and b for least_conn/random_two: conns / weight,
 * cross-multiplied.  Negative when a is less loaded. */
static long
load_cmp(const hm_upstream_peer_t *a, const hm_upstream_peer_t *b)
{
    return (long) a->conns * b->weight - (long) b->conns * a->weight;
}

/*
 * Smooth weighted round robin (nginx ngx_http_upstream_get_peer): every
 * eligible peer gains its weight, the largest current_weight wins and
 * loses the total.  For weights 2:1 the
 * order is a,b,a: interleaved and exactly proportional.
 */
static hm_upstream_peer_t *
select_rr(hm_upstream_rt_t *rt, hm_upstream_peer_t *const *exclude,
          size_t nexclude, uint64_t now)
{
    hm_upstream_peer_t *p, *best = NULL;
    int total = 0;
    size_t i;

    for (i = 0; i < rt->npeers; i++) {
        p = &rt->peers[i];
        if (!hm_upstream_peer_up(p, now) || excluded(p, exclude, nexclude)) {
            continue;
        }
        p->current_weight += p->weight;
        total += p->weight;
        if (best == NULL || p->current_weight > best->current_weight) {
            best = p;
        }
    }
    if (best != NULL) {
        best->current_weight -= total;
    }
    return best;
}

/*
 * least_conn: the peer with the fewest connections per weight (conns /
 * weight, cross-multiplied); ties are broken by smooth weighted round
 * robin among the tied peers (as nginx does), so equal loads do not all
 * go to the heaviest or the first server.
 */
static hm_upstream_peer_t *
select_least(hm_upstream_rt_t *rt, hm_upstream_peer_t *const *exclude,
             size_t nexclude, uint64_t now)
{
    hm_upstream_peer_t *p, *best = NULL;
    size_t i, ntied = 0;
    int total = 0;

    for (i = 0; i < rt->npeers; i++) {
        p = &rt->peers[i];
        if (!hm_upstream_peer_up(p, now) || excluded(p, exclude, nexclude)) {
            continue;
        }
        if (best == NULL || load_cmp(p, best) < 0) {
            best = p;
            ntied = 1;
        } else if (load_cmp(p, best) == 0) {
            ntied++;
        }
    }
    if (ntied <= 1) {
        return best;
    }
    /* Smooth weighted round robin among the peers tied with best. */
    p = best;
    best = NULL;
    for (i = 0; i < rt->npeers; i++) {
        hm_upstream_peer_t *q = &rt->peers[i];

        if (!hm_upstream_peer_up(q, now) || excluded(q, exclude, nexclude)
            || load_cmp(q, p) != 0)
        {
            continue;
        }
        q->current_weight += q->weight;
        total += q->weight;
        if (best == NULL || q->current_weight > best->current_weight) {
            best = q;
        }
    }
    best->current_weight -= total;
    return best;
}

/* The index among cand[0..n) (n >= 1, weights summing to total > 0) of
 * one peer drawn with probability proportional to its weight. */
static size_t
draw_weighted(hm_upstream_rt_t *rt, hm_upstream_peer_t *const *cand,
              size_t n, uint64_t total)
{
    uint64_t r = rnd_next(rt) % total;
    size_t   i;

    for (i = 0; i < n - 1 && r >= (uint64_t) cand[i]->weight; i++) {
        r -= (uint64_t) cand[i]->weight;
    }
    return i;
}

/*
 * random_two (power of two choices, as nginx "random two"): two distinct
 * eligible peers drawn at random with probability proportional to their
 * weight, the less loaded (conns / weight) of the two wins, the first
 * drawn on a tie.  So idle servers get traffic in proportion to their
 * weights, busy ones less.
 */
static hm_upstream_peer_t *
select_two(hm_upstream_rt_t *rt, hm_upstream_peer_t *const *exclude,
           size_t nexclude, uint64_t now)
{
    hm_upstream_peer_t *cand[64], *a, *b;
    size_t i, n = 0, ia;
    uint64_t total = 0;

    /* Eligible peers (bounded sample of the first 64 eligible ones for
     * very large groups). */
    for (i = 0; i < rt->npeers && n < hm_nelem(cand); i++) {
        hm_upstream_peer_t *p = &rt->peers[i];
        if (hm_upstream_peer_up(p, now) && !excluded(p, exclude, nexclude)) {
            cand[n++] = p;
            total += (uint64_t) p->weight;
        }
    }
    if (n == 0) {
        return NULL;
    }
    if (n == 1) {
        return cand[0];
    }
    ia = draw_weighted(rt, cand, n, total);
    a = cand[ia];
    total -= (uint64_t) a->weight;
    cand[ia] = cand[n - 1];     /* draw the second among the others */
    n--;
    b = cand[draw_weighted(rt, cand, n, total)];
    return load_cmp(b, a) < 0 ? b : a;
}

/*
 * Both selections: fallback = 1 is hm_upstream_select() (a group whose
 * servers are all passively down still hands out the one that recovers
 * first), fallback = 0 hm_upstream_select_up() (only a server up now).
 */
static hm_upstream_peer_t *
select_peer(hm_upstream_rt_t *rt, hm_upstream_peer_t *const *exclude,
            size_t nexclude, int fallback)
{
    hm_upstream_peer_t *p = NULL, *q;
    uint64_t now;
    size_t i;

    if (rt->npeers == 0) {
        return NULL;
    }
    if (rt->npeers == 1) {
        /* The common single-server case: no balancing, and with the
         * fallback no clock. */
        p = &rt->peers[0];
        if ((nexclude > 0 && excluded(p, exclude, nexclude))
            || p->health_down
            || (!fallback && !hm_upstream_peer_up(p, hm_now_ms())))
        {
            return NULL;
        }
        /* With the fallback even when marked down: the only peer is
         * tried anyway (see below). */
        goto found;
    }

    now = hm_now_ms();
    switch (rt->conf->balance) {
    case HM_BALANCE_LEAST_CONN:
        p = select_least(rt, exclude, nexclude, now);
        break;
    case HM_BALANCE_RANDOM_TWO:
        p = select_two(rt, exclude, nexclude, now);
        break;
    default:
        p = select_rr(rt, exclude, nexclude, now);
        break;
    }

    if (p == NULL && nexclude == 0 && fallback) {
        /* Every peer is marked down: rather than refusing all traffic
         * until the windows expire, try the one that recovers first. */
        for (i = 0; i < rt->npeers; i++) {
            q = &rt->peers[i];
            if (q->health_down) {
                continue;       /* active health: really down */
            }
            if (p == NULL || q->down_until_ms < p->down_until_ms) {
                p = q;
            }
        }
    }
    if (p == NULL) {
        return NULL;
    }

found:
    p->conns++;
    p->total_selected++;
    return p;
}

hm_upstream_peer_t *
hm_upstream_select(hm_upstream_rt_t *rt, hm_upstream_peer_t *const *exclude,
                   size_t nexclude)
{
    return select_peer(rt, exclude, nexclude, 1);
}

hm_upstream_peer_t *
hm_upstream_select_up(hm_upstream_rt_t *rt,
                      hm_upstream_peer_t *const *exclude, size_t nexclude)
{
    return select_peer(rt, exclude, nexclude, 0);
}

void
hm_upstream_peer_result(hm_upstream_peer_t *peer, int ok)
{
    const hm_conf_upstream_t *u = peer->rt->conf;
    uint64_t now, window;
    int max_fails;

    if (ok) {
        if (peer->fails != 0 || peer->down_until_ms != 0) {
            peer->fails = 0;
            peer->down_until_ms = 0;
        }
        return;
    }

    peer->total_fails++;
    max_fails = u->max_fails;
    if (max_fails <= 0) {
        return;                 /* passive health disabled */
    }
    now = hm_now_ms();
    window = (uint64_t) (u->fail_timeout_s > 0 ? u->fail_timeout_s : 10)
             * 1000;
    if (peer->fails == 0 || now - peer->fail_start_ms > window) {
        peer->fails = 0;
        peer->fail_start_ms = now;
    }
    peer->fails++;
    if (peer->fails >= max_fails) {
        peer->down_until_ms = now + window;
        peer->fails = 0;
    }
}

void
hm_upstream_peer_release(hm_upstream_peer_t *peer)
{
    HM_ASSERT(peer->conns > 0);
    peer->conns--;
}

void
hm_upstream_peer_done(hm_upstream_peer_t *peer, int ok)
{
    hm_upstream_peer_result(peer, ok);
    if (!ok) {
        hm_upstream_peer_release(peer);
    }
}

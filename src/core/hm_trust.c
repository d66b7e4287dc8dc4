/*
 * hm_trust.c: the trust report.  Where it sits: after hm_conf_load() has
 * produced a validated hm_conf_t, `hamlyn --trust-report` (src/hamlyn.c)
 * and the admin /trust endpoint call hm_trust_report() to explain the
 * trust architecture the configuration declares.  Nothing here runs on the
 * data path and nothing is read from disk: it is a pure function of the
 * structs, so unit tests build them by hand.
 *
 * One small model is derived per site and rendered twice (text and JSON),
 * so the two forms cannot disagree:
 *   - legs: a passthrough site has one leg (its upstream, bytes only); a
 *     terminating site has one leg per distinct upstream its routes reach,
 *     in route order, plus one "fixed_response" leg when some route
 *     answers with a status itself;
 *   - what the backend sees of the client (real certificate, PROXY
 *     protocol, proxy-asserted headers);
 *   - which client request headers never reach the backend.
 * Accepted risks (plaintext legs, verification off) are quoted verbatim
 * and marked "RISK:" in the text form.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_trust.h"

#include <stdio.h>
#include <strings.h>
#include <jansson.h>

enum {
    HM_TRUST_PASSTHROUGH = 0,
    HM_TRUST_TLS_VERIFIED,
    HM_TRUST_TLS_UNVERIFIED,
    HM_TRUST_PLAINTEXT,
    HM_TRUST_FIXED
};

static const char *hm_trust_kind_names[] = {
    "passthrough", "tls_verified", "tls_unverified", "plaintext",
    "fixed_response"
};

typedef struct {
    const hm_conf_upstream_t *upstream;     /* NULL: fixed responses */
    int                       kind;         /* HM_TRUST_* */
} hm_trust_leg_t;

/* What a site's backend learns about the client. */
typedef struct {
    int         backend;        /* at least one leg reaches a backend */
    int         real_cert;      /* passthrough: the client's own TLS */
    int         proxy_protocol; /* HM_PROXY_PROTOCOL_* sent to the backend */
    const char *cert_header;    /* proxy-asserted client certificate */
    int         forwarded;      /* HM_FORWARDED_*, -1 = not applicable */
} hm_trust_sees_t;

/* Client headers forwarded=replace drops before setting its own. */
static const char *hm_trust_forwarded_headers[] = {
    "Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
    "X-Real-IP"
};

/* Headers the proxy sets itself under forwarded=replace|append. */
static const char *hm_trust_forwarded_set[] = {
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"
};

/* Hop-by-hop headers (RFC 9110 7.6.1, as hm_http_is_hop_by_hop() flags
 * them): never forwarded; the request head is re-serialised from parsed
 * fields, and headers named in Connection go too. */
static const char *hm_trust_hop_by_hop[] = {
    "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Proxy-Authorization",
    "Proxy-Authenticate"
};

#define HM_TRUST_SUMMARY_PASSTHROUGH                                        \
    "TLS end to end: client \xe2\x86\x94 backend; the proxy sees SNI, "     \
    "addresses, bytes, timing"
#define HM_TRUST_SUMMARY_TERMINATE "TLS terminated at the edge"


static const char *
hm_trust_version_name(int v)
{
    switch (v) {
    case 0x0301: return "TLSv1.0";
    case 0x0302: return "TLSv1.1";
    case HM_TLS1_2: return "TLSv1.2";
    case HM_TLS1_3: return "TLSv1.3";
    default: return "unknown";
    }
}


static const char *
hm_trust_client_auth_name(int mode)
{
    switch (mode) {
    case HM_CLIENT_AUTH_OPTIONAL: return "optional";
    case HM_CLIENT_AUTH_REQUIRED: return "required";
    default: return "none";
    }
}


static const char *
hm_trust_forwarded_name(int mode)
{
    switch (mode) {
    case HM_FORWARDED_APPEND: return "append";
    case HM_FORWARDED_OFF: return "off";
    default: return "replace";
    }
}


/*
 * The kind of the leg from site to u (u NULL = fixed responses).  An
 * upstream with neither tls nor plaintext cannot pass the loader for a
 * terminating site; should one get here anyway it is reported as
 * plaintext without an accepted risk, which the text flags.
 */
static int
hm_trust_leg_kind(const hm_conf_site_t *site, const hm_conf_upstream_t *u)
{
    if (site->mode == HM_SITE_PASSTHROUGH) {
        return HM_TRUST_PASSTHROUGH;
    }
    if (u == NULL) {
        return HM_TRUST_FIXED;
    }
    if (u->tls.present) {
        return u->tls.verify ? HM_TRUST_TLS_VERIFIED : HM_TRUST_TLS_UNVERIFIED;
    }
    return HM_TRUST_PLAINTEXT;
}


/*
 * Fills legs (room for site->nroutes + 1 entries) with the distinct legs of
 * site in route order.  Returns their count.
 */
static size_t
hm_trust_legs(const hm_conf_site_t *site, hm_trust_leg_t *legs)
{
    size_t                    i, j, n;
    const hm_conf_upstream_t *u;

    if (site->mode == HM_SITE_PASSTHROUGH) {
        legs[0].upstream = site->upstream;
        legs[0].kind = HM_TRUST_PASSTHROUGH;
        return 1;
    }

    n = 0;
    for (i = 0; i < site->nroutes; i++) {
        u = site->routes[i].upstream;
        for (j = 0; j < n; j++) {
            if (legs[j].upstream == u) {
                break;
            }
        }
        if (j == n) {
            legs[n].upstream = u;
            legs[n].kind = hm_trust_leg_kind(site, u);
            n++;
        }
    }
    return n;
}


static void
hm_trust_sees(const hm_conf_site_t *site, const hm_trust_leg_t *legs,
    size_t nlegs, hm_trust_sees_t *s)
{
    size_t i;

    memset(s, 0, sizeof(*s));
    s->forwarded = -1;

    for (i = 0; i < nlegs; i++) {
        if (legs[i].kind != HM_TRUST_FIXED) {
            s->backend = 1;
        }
    }
    if (!s->backend) {
        return;
    }

    if (site->mode == HM_SITE_PASSTHROUGH) {
        s->real_cert = 1;
        s->proxy_protocol = site->proxy_protocol_out;
        return;
    }

    if (site->headers.client_cert_header != NULL
        && site->tls.client_auth != HM_CLIENT_AUTH_NONE)
    {
        s->cert_header = site->headers.client_cert_header;
    }
    if (site->headers.forwarded != HM_FORWARDED_OFF) {
        s->forwarded = site->headers.forwarded;
    }
}


static int
hm_trust_has_name(const char **names, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}


/* Room needed by hm_trust_stripped() for site. */
static size_t
hm_trust_stripped_max(const hm_conf_site_t *site)
{
    return hm_nelem(hm_trust_forwarded_headers) + 1
           + site->headers.nstrip_request + site->headers.nset_request
           + hm_nelem(hm_trust_hop_by_hop);
}


/*
 * Fills names (room for hm_trust_stripped_max(site) entries, borrowed
 * pointers) with the client request headers that never reach the backend
 * of a terminating site, without duplicates (case-insensitive), in the
 * order the headers_sanitise module applies them.  Returns their count.
 */
static size_t
hm_trust_stripped(const hm_conf_site_t *site, const char **names)
{
    size_t      i, n;
    const char *h;

    n = 0;
    if (site->mode != HM_SITE_TERMINATE) {
        return 0;
    }

#define HM_TRUST_ADD(name)                                                  \
    do {                                                                    \
        h = (name);                                                         \
        if (!hm_trust_has_name(names, n, h)) {                              \
            names[n++] = h;                                                 \
        }                                                                   \
    } while (0)

    if (site->headers.forwarded == HM_FORWARDED_REPLACE) {
        for (i = 0; i < hm_nelem(hm_trust_forwarded_headers); i++) {
            HM_TRUST_ADD(hm_trust_forwarded_headers[i]);
        }
    }
    if (site->headers.client_cert_header != NULL) {
        HM_TRUST_ADD(site->headers.client_cert_header);
    }
    for (i = 0; i < site->headers.nstrip_request; i++) {
        HM_TRUST_ADD(site->headers.strip_request[i]);
    }
    /* set_request: the client's copy is removed before the proxy's value
     * is set, so the backend never sees what the client sent. */
    for (i = 0; i < site->headers.nset_request; i++) {
        HM_TRUST_ADD(site->headers.set_request[i].name);
    }
    for (i = 0; i < hm_nelem(hm_trust_hop_by_hop); i++) {
        HM_TRUST_ADD(hm_trust_hop_by_hop[i]);
    }

#undef HM_TRUST_ADD

    return n;
}


/*
 * The sites a listener serves, its default site included once at the end
 * when it is not among them.  Fills sites (room for nsites + 1) and returns
 * the count.
 */
static size_t
hm_trust_listener_sites(const hm_conf_listener_t *l,
    const hm_conf_site_t **sites)
{
    size_t i, n;

    n = 0;
    for (i = 0; i < l->nsites; i++) {
        if (l->sites[i] != NULL) {
            sites[n++] = l->sites[i];
        }
    }
    if (l->default_site != NULL) {
        for (i = 0; i < n; i++) {
            if (sites[i] == l->default_site) {
                break;
            }
        }
        if (i == n) {
            sites[n++] = l->default_site;
        }
    }
    return n;
}


/* A path as the operator wrote it: relative to the config's folder when it
 * lies below it. */
static const char *
hm_trust_path(const hm_conf_t *conf, const char *path)
{
    size_t n;

    if (path == NULL || conf->dir == NULL) {
        return path;
    }
    n = strlen(conf->dir);
    if (n > 0 && strncmp(path, conf->dir, n) == 0) {
        if (conf->dir[n - 1] == '/') {
            return path + n;
        }
        if (path[n] == '/' && path[n + 1] != '\0') {
            return path + n + 1;
        }
    }
    return path;
}


/*
 * Writes a short description of route r's match ("GET,POST /v1/ [host
 * x] [x-canary: 1]") to out.
 */
static void
hm_trust_route_text(FILE *out, const hm_conf_route_t *r)
{
    size_t i;

    for (i = 0; i < r->match.nmethods; i++) {
        fprintf(out, "%s%s", i ? "," : "", r->match.methods[i]);
    }
    if (r->match.nmethods) {
        fputc(' ', out);
    }
    if (r->match.host != NULL) {
        fprintf(out, "%s", r->match.host);
    }
    if (r->match.path_exact != NULL) {
        fprintf(out, "=%s", r->match.path_exact);
    } else if (r->match.path_prefix != NULL) {
        fprintf(out, "%s", r->match.path_prefix);
    } else {
        fprintf(out, "%s", r->match.host != NULL ? "/" : "any path");
    }
    for (i = 0; i < r->match.nheaders; i++) {
        fprintf(out, " [%s: %s]", r->match.headers[i].name,
                r->match.headers[i].value);
    }
}


/* ------------------------------------------------------------------ */
/* Text                                                               */
/* ------------------------------------------------------------------ */

#define HM_TRUST_LABEL 20

static void
hm_trust_label(FILE *out, const char *fmt, const char *arg)
{
    char buf[256];
    int  n;

    n = snprintf(buf, sizeof(buf), fmt, arg);
    if (n < 0) {
        n = 0;
        buf[0] = '\0';
    }
    fprintf(out, "    %s", buf);
    if (n < HM_TRUST_LABEL) {
        fprintf(out, "%*s", HM_TRUST_LABEL - n, "");
    } else {
        fputc(' ', out);
    }
}


static void
hm_trust_indent_risk(FILE *out)
{
    fprintf(out, "    %*s", HM_TRUST_LABEL, "");
}


static void
hm_trust_text_servers(FILE *out, const hm_conf_upstream_t *u)
{
    size_t i;

    for (i = 0; i < u->nservers; i++) {
        fprintf(out, "%s%s", i ? ", " : "", u->servers[i].addr.text);
    }
}


static void
hm_trust_text_pins(FILE *out, const hm_conf_upstream_tls_t *tls)
{
    size_t i;

    for (i = 0; i < tls->npins; i++) {
        fprintf(out, "%s%s", i ? ", " : "", tls->pins[i]);
    }
}


/* Lists the routes of site that lead to leg upstream u ("; routes /v1/,
 * /"), or the fixed answers when u is NULL. */
static void
hm_trust_text_routes(FILE *out, const hm_conf_site_t *site,
    const hm_conf_upstream_t *u)
{
    size_t i, n;

    n = 0;
    for (i = 0; i < site->nroutes; i++) {
        if (site->routes[i].upstream != u) {
            continue;
        }
        fprintf(out, "%s", n ? ", " : (u ? "; routes " : ""));
        hm_trust_route_text(out, &site->routes[i]);
        if (u == NULL) {
            fprintf(out, " \xe2\x86\x92 %d", site->routes[i].status);
        }
        n++;
    }
}


/* Writes one leg line (and its RISK line) and returns 1 when the leg
 * carries a risk. */
static int
hm_trust_text_leg(FILE *out, const hm_conf_t *conf, const hm_conf_site_t *site,
    const hm_trust_leg_t *leg)
{
    const hm_conf_upstream_t     *u;
    const hm_conf_upstream_tls_t *tls;
    int                           risk;

    u = leg->upstream;
    risk = 0;

    if (leg->kind == HM_TRUST_FIXED) {
        hm_trust_label(out, "%s:", "fixed responses");
        fprintf(out, "answered by the proxy itself, no backend leg (");
        hm_trust_text_routes(out, site, NULL);
        fprintf(out, ")\n");
        return 0;
    }

    if (u == NULL) {
        hm_trust_label(out, "%s:", "upstream");
        fprintf(out, "none configured\n");
        return 0;
    }

    hm_trust_label(out, "upstream %s:", u->name);
    tls = &u->tls;

    switch (leg->kind) {

    case HM_TRUST_PASSTHROUGH:
        fprintf(out, "passthrough to ");
        hm_trust_text_servers(out, u);
        if (site->proxy_protocol_out != HM_PROXY_PROTOCOL_NONE) {
            fprintf(out, "; PROXY protocol v%d out (backend learns the "
                    "client address)", site->proxy_protocol_out);
        } else {
            fprintf(out, "; no PROXY protocol (backend sees the proxy's "
                    "address)");
        }
        fprintf(out, "\n");
        return 0;

    case HM_TRUST_TLS_VERIFIED:
        fprintf(out, "TLS verified (%s%s, name %s)",
                tls->ca_path ? "CA " : "system roots",
                tls->ca_path ? hm_trust_path(conf, tls->ca_path) : "",
                tls->server_name ? tls->server_name : "not checked");
        if (tls->client_certificate != NULL) {
            fprintf(out, ", mTLS as %s", tls->client_certificate->name);
        } else {
            fprintf(out, ", no client certificate (no mTLS)");
        }
        if (tls->npins) {
            fprintf(out, ", pins ");
            hm_trust_text_pins(out, tls);
        }
        break;

    case HM_TRUST_TLS_UNVERIFIED:
        if (tls->npins) {
            fprintf(out, "TLS, verify off, pinned: chain not verified "
                    "(pins ");
            hm_trust_text_pins(out, tls);
            fprintf(out, ")");
        } else {
            fprintf(out, "TLS, verify off: certificate NOT verified");
        }
        if (tls->server_name != NULL) {
            fprintf(out, ", SNI %s", tls->server_name);
        }
        if (tls->client_certificate != NULL) {
            fprintf(out, ", mTLS as %s", tls->client_certificate->name);
        }
        risk = 1;
        break;

    default: /* HM_TRUST_PLAINTEXT */
        fprintf(out, "plaintext (cleartext between the edge and the "
                "backend)");
        risk = 1;
        break;
    }

    fprintf(out, "; servers ");
    hm_trust_text_servers(out, u);
    hm_trust_text_routes(out, site, u);
    fprintf(out, "\n");

    if (risk) {
        const char *why;

        why = leg->kind == HM_TRUST_PLAINTEXT ? u->plaintext_risk
                                              : tls->accepted_risk;
        hm_trust_indent_risk(out);
        fprintf(out, "RISK: %s to upstream %s; ",
                leg->kind == HM_TRUST_PLAINTEXT
                    ? "plaintext"
                    : (tls->npins ? "chain not verified"
                                  : "certificate not verified"),
                u->name);
        if (why != NULL && why[0] != '\0') {
            fprintf(out, "accepted risk: \"%s\"\n", why);
        } else {
            fprintf(out, "NO accepted_risk recorded\n");
        }
    }
    return risk;
}


static void
hm_trust_text_sees(FILE *out, const hm_conf_site_t *site,
    const hm_trust_sees_t *s)
{
    size_t i;
    int    n;

    hm_trust_label(out, "%s:", "backend sees");
    n = 0;
    if (!s->backend) {
        fprintf(out, "no backend (every request is answered by the proxy)\n");
        return;
    }
    if (s->real_cert) {
        fprintf(out, "the real client identity (real client certificate, "
                "TLS end to end)");
        n++;
    }
    if (s->proxy_protocol != HM_PROXY_PROTOCOL_NONE) {
        fprintf(out, "%sthe client address (PROXY protocol v%d)",
                n ? "; " : "", s->proxy_protocol);
        n++;
    }
    if (s->cert_header != NULL) {
        fprintf(out, "%s%s (proxy-asserted client certificate, client auth "
                "%s)", n ? "; " : "", s->cert_header,
                hm_trust_client_auth_name(site->tls.client_auth));
        n++;
    }
    if (s->forwarded >= 0) {
        fprintf(out, "%s", n ? "; " : "");
        for (i = 0; i < hm_nelem(hm_trust_forwarded_set); i++) {
            fprintf(out, "%s%s", i ? ", " : "", hm_trust_forwarded_set[i]);
        }
        fprintf(out, s->forwarded == HM_FORWARDED_REPLACE
                ? " (client address, set by the proxy)"
                : " (appended to the client's own values: trust only "
                  "behind a trusted proxy)");
        n++;
    }
    if (n == 0) {
        fprintf(out, "none (no client identity: the proxy's address only)");
    }
    fprintf(out, "\n");
}


static void
hm_trust_text_stripped(FILE *out, const hm_conf_site_t *site)
{
    const char **names;
    size_t       i, j, n, k;

    hm_trust_label(out, "%s:", "headers stripped");
    if (site->mode == HM_SITE_PASSTHROUGH) {
        fprintf(out, "none (the proxy cannot see them)\n");
        return;
    }
    names = calloc(hm_trust_stripped_max(site), sizeof(*names));
    if (names == NULL) {
        fprintf(out, "(out of memory)\n");
        return;
    }
    n = hm_trust_stripped(site, names);
    k = 0;
    for (i = 0; i < n; i++) {
        if (hm_trust_has_name(hm_trust_hop_by_hop,
                              hm_nelem(hm_trust_hop_by_hop), names[i]))
        {
            continue;
        }
        fprintf(out, "%s%s", k++ ? ", " : "", names[i]);
        for (j = 0; j < site->headers.nset_request; j++) {
            if (strcasecmp(site->headers.set_request[j].name, names[i]) == 0)
            {
                fprintf(out, " (replaced by the proxy's value)");
                break;
            }
        }
    }
    fprintf(out, "%shop-by-hop (", k ? "; " : "");
    for (i = 0; i < hm_nelem(hm_trust_hop_by_hop); i++) {
        fprintf(out, "%s%s", i ? ", " : "", hm_trust_hop_by_hop[i]);
    }
    fprintf(out, " and those named in Connection)\n");
    free(names);
}


static void
hm_trust_text_client_tls(FILE *out, const hm_conf_t *conf,
    const hm_conf_site_t *site)
{
    const hm_conf_site_tls_t *tls;
    size_t                    i;

    tls = &site->tls;
    hm_trust_label(out, "%s:", "client TLS");
    fprintf(out, "%s", hm_trust_version_name(tls->min_version));
    if (tls->max_version && tls->max_version != tls->min_version) {
        fprintf(out, "-%s", hm_trust_version_name(tls->max_version));
    }
    if (tls->client_auth == HM_CLIENT_AUTH_NONE) {
        fprintf(out, ", no client certificates");
    } else {
        fprintf(out, ", client certificate %s (CA %s)",
                hm_trust_client_auth_name(tls->client_auth),
                tls->client_auth_ca
                    ? hm_trust_path(conf, tls->client_auth_ca)
                    : "none configured");
    }
    if (tls->ncertificates) {
        fprintf(out, ", certificates ");
        for (i = 0; i < tls->ncertificates; i++) {
            fprintf(out, "%s%s", i ? ", " : "",
                    tls->certificates[i] ? tls->certificates[i]->name : "?");
        }
    }
    fprintf(out, "\n");
}


/* Writes one site's block.  Returns the number of RISK lines, or -1 when
 * memory ran out. */
static int
hm_trust_text_site(FILE *out, const hm_conf_t *conf,
    const hm_conf_listener_t *l, const hm_conf_site_t *site)
{
    hm_trust_leg_t  *legs;
    hm_trust_sees_t  sees;
    size_t           i, nlegs;
    int              risks;

    legs = calloc(site->nroutes + 1, sizeof(*legs));
    if (legs == NULL) {
        return -1;
    }
    nlegs = hm_trust_legs(site, legs);
    hm_trust_sees(site, legs, nlegs, &sees);

    fprintf(out, "\n  site %s (", site->name);
    for (i = 0; i < site->nserver_names; i++) {
        fprintf(out, "%s%s", i ? ", " : "", site->server_names[i]);
    }
    if (site->nserver_names == 0) {
        fprintf(out, "no server names");
    }
    fprintf(out, ")%s: %s\n",
            l->default_site == site ? " [default site]" : "",
            site->mode == HM_SITE_PASSTHROUGH ? HM_TRUST_SUMMARY_PASSTHROUGH
                                              : HM_TRUST_SUMMARY_TERMINATE);

    if (site->mode == HM_SITE_TERMINATE) {
        hm_trust_text_client_tls(out, conf, site);
    }

    risks = 0;
    for (i = 0; i < nlegs; i++) {
        risks += hm_trust_text_leg(out, conf, site, &legs[i]);
    }
    if (nlegs == 0) {
        hm_trust_label(out, "%s:", "routes");
        fprintf(out, "none (every request gets 404)\n");
    }

    hm_trust_text_sees(out, site, &sees);
    hm_trust_text_stripped(out, site);

    free(legs);
    return risks;
}


static int
hm_trust_text(const hm_conf_t *conf, FILE *out)
{
    const hm_conf_listener_t  *l;
    const hm_conf_site_t     **sites;
    size_t                     i, j, n;
    int                        risks, r;

    risks = 0;
    fprintf(out, "Hamlyn trust report%s%s\n",
            conf->path ? " for " : "", conf->path ? conf->path : "");

    for (i = 0; i < conf->nlisteners; i++) {
        l = &conf->listeners[i];

        fprintf(out, "\nlistener %s (", l->name);
        for (j = 0; j < l->naddrs; j++) {
            fprintf(out, "%s%s", j ? ", " : "", l->addrs[j].text);
        }
        fprintf(out, ")");
        if (l->proxy_protocol) {
            fprintf(out, ", accepts PROXY protocol from a trusted balancer");
        }
        if (l->redirect_to_https) {
            fprintf(out, ": plaintext HTTP, redirects to https only, no "
                    "backend leg\n");
            continue;
        }
        fprintf(out, ", default site: %s\n",
                l->default_site ? l->default_site->name
                                : "none (unknown names refused)");

        sites = calloc(l->nsites + 1, sizeof(*sites));
        if (sites == NULL) {
            return HM_ERROR;
        }
        n = hm_trust_listener_sites(l, sites);
        for (j = 0; j < n; j++) {
            r = hm_trust_text_site(out, conf, l, sites[j]);
            if (r < 0) {
                free(sites);
                return HM_ERROR;
            }
            risks += r;
        }
        free(sites);
    }

    if (conf->admin_listen != NULL) {
        fprintf(out, "\nadmin %s: plaintext HTTP (metrics, health, trust "
                "report)\n", conf->admin_listen->text);
    }

    if (risks) {
        fprintf(out, "\n%d RISK line%s: accepted in writing in the "
                "configuration (accepted_risk)\n", risks,
                risks == 1 ? "" : "s");
    } else {
        fprintf(out, "\nno accepted risks: every leg is TLS verified, "
                "passthrough or answered by the proxy\n");
    }
    return HM_OK;
}


/* ------------------------------------------------------------------ */
/* JSON                                                               */
/* ------------------------------------------------------------------ */

/* Sets o[key] = v (stolen).  Returns 0, or -1 when v is NULL (jansson ran
 * out of memory) or the set failed. */
static int
hm_trust_set(json_t *o, const char *key, json_t *v)
{
    if (v == NULL) {
        return -1;
    }
    return json_object_set_new(o, key, v) == 0 ? 0 : -1;
}


static int
hm_trust_push(json_t *a, json_t *v)
{
    if (v == NULL) {
        return -1;
    }
    return json_array_append_new(a, v) == 0 ? 0 : -1;
}


static json_t *
hm_trust_jstr(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}


static json_t *
hm_trust_json_leg(const hm_conf_site_t *site, const hm_trust_leg_t *leg)
{
    const hm_conf_upstream_t     *u;
    const hm_conf_upstream_tls_t *tls;
    json_t                       *o, *a;
    size_t                        i;
    int                           rc;

    u = leg->upstream;
    tls = u != NULL ? &u->tls : NULL;

    o = json_object();
    if (o == NULL) {
        return NULL;
    }
    rc = 0;
    rc |= hm_trust_set(o, "upstream", hm_trust_jstr(u ? u->name : NULL));
    rc |= hm_trust_set(o, "kind", json_string(hm_trust_kind_names[leg->kind]));

    rc |= hm_trust_set(o, "mtls", json_boolean(
        (leg->kind == HM_TRUST_TLS_VERIFIED
         || leg->kind == HM_TRUST_TLS_UNVERIFIED)
        && tls->client_certificate != NULL));
    rc |= hm_trust_set(o, "client_certificate", hm_trust_jstr(
        (leg->kind == HM_TRUST_TLS_VERIFIED
         || leg->kind == HM_TRUST_TLS_UNVERIFIED)
        && tls->client_certificate != NULL
            ? tls->client_certificate->name : NULL));

    if (leg->kind == HM_TRUST_PLAINTEXT) {
        rc |= hm_trust_set(o, "accepted_risk", hm_trust_jstr(u->plaintext_risk));
    } else if (leg->kind == HM_TRUST_TLS_UNVERIFIED) {
        rc |= hm_trust_set(o, "accepted_risk", hm_trust_jstr(tls->accepted_risk));
    } else {
        rc |= hm_trust_set(o, "accepted_risk", json_null());
    }

    if (leg->kind == HM_TRUST_TLS_VERIFIED
        || leg->kind == HM_TRUST_TLS_UNVERIFIED)
    {
        rc |= hm_trust_set(o, "server_name", hm_trust_jstr(tls->server_name));
        rc |= hm_trust_set(o, "verify", json_boolean(tls->verify));
        rc |= hm_trust_set(o, "ca", leg->kind == HM_TRUST_TLS_VERIFIED
                           ? json_string(tls->ca_path ? tls->ca_path
                                                      : "system")
                           : json_null());
    } else {
        rc |= hm_trust_set(o, "server_name", json_null());
        rc |= hm_trust_set(o, "verify", json_null());
        rc |= hm_trust_set(o, "ca", json_null());
    }

    a = json_array();
    rc |= hm_trust_set(o, "pins", a);
    if (a != NULL && tls != NULL && (leg->kind == HM_TRUST_TLS_VERIFIED
                                     || leg->kind == HM_TRUST_TLS_UNVERIFIED))
    {
        for (i = 0; i < tls->npins; i++) {
            rc |= hm_trust_push(a, json_string(tls->pins[i]));
        }
    }

    a = json_array();
    rc |= hm_trust_set(o, "servers", a);
    if (a != NULL && u != NULL) {
        for (i = 0; i < u->nservers; i++) {
            rc |= hm_trust_push(a, json_string(u->servers[i].addr.text));
        }
    }

    if (leg->kind == HM_TRUST_PASSTHROUGH) {
        rc |= hm_trust_set(o, "proxy_protocol_out",
            site->proxy_protocol_out == HM_PROXY_PROTOCOL_V1 ? json_string("v1")
            : site->proxy_protocol_out == HM_PROXY_PROTOCOL_V2
                ? json_string("v2") : json_null());
    }

    if (site->mode == HM_SITE_TERMINATE) {
        char  *s;
        size_t len;
        FILE  *f;

        a = json_array();
        rc |= hm_trust_set(o, "routes", a);
        for (i = 0; a != NULL && i < site->nroutes; i++) {
            if (site->routes[i].upstream != u) {
                continue;
            }
            s = NULL;
            f = open_memstream(&s, &len);
            if (f == NULL) {
                rc = -1;
                break;
            }
            hm_trust_route_text(f, &site->routes[i]);
            if (u == NULL) {
                fprintf(f, " \xe2\x86\x92 %d", site->routes[i].status);
            }
            if (fclose(f) != 0 || s == NULL) {
                free(s);
                rc = -1;
                break;
            }
            rc |= hm_trust_push(a, json_string(s));
            free(s);
        }
    }

    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}


static json_t *
hm_trust_json_client_tls(const hm_conf_site_t *site)
{
    const hm_conf_site_tls_t *tls;
    json_t                   *o, *a;
    size_t                    i;
    int                       rc;

    o = json_object();
    if (o == NULL) {
        return NULL;
    }
    rc = 0;
    if (site->mode == HM_SITE_PASSTHROUGH) {
        rc |= hm_trust_set(o, "terminated_by", json_string("backend"));
        a = json_array();
        rc |= hm_trust_set(o, "proxy_sees", a);
        rc |= hm_trust_push(a, json_string("sni"));
        rc |= hm_trust_push(a, json_string("addresses"));
        rc |= hm_trust_push(a, json_string("bytes"));
        rc |= hm_trust_push(a, json_string("timing"));
        goto done;
    }

    tls = &site->tls;
    rc |= hm_trust_set(o, "terminated_by", json_string("edge"));
    rc |= hm_trust_set(o, "min_version",
                       json_string(hm_trust_version_name(tls->min_version)));
    rc |= hm_trust_set(o, "max_version",
                       json_string(hm_trust_version_name(
                           tls->max_version ? tls->max_version : HM_TLS1_3)));
    rc |= hm_trust_set(o, "client_auth",
                       json_string(hm_trust_client_auth_name(tls->client_auth)));
    rc |= hm_trust_set(o, "client_auth_ca", hm_trust_jstr(
        tls->client_auth != HM_CLIENT_AUTH_NONE ? tls->client_auth_ca : NULL));

    a = json_array();
    rc |= hm_trust_set(o, "certificates", a);
    for (i = 0; a != NULL && i < tls->ncertificates; i++) {
        rc |= hm_trust_push(a, hm_trust_jstr(tls->certificates[i]
                                             ? tls->certificates[i]->name
                                             : NULL));
    }
    a = json_array();
    rc |= hm_trust_set(o, "alpn", a);
    for (i = 0; a != NULL && i < tls->nalpn; i++) {
        rc |= hm_trust_push(a, json_string(tls->alpn[i]));
    }

done:
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}


/* Appends "header:NAME" to a. */
static int
hm_trust_push_header(json_t *a, const char *name)
{
    char *s;
    int   rc;

    if (asprintf(&s, "header:%s", name) < 0) {
        return -1;
    }
    rc = hm_trust_push(a, json_string(s));
    free(s);
    return rc;
}


static json_t *
hm_trust_json_sees(const hm_trust_sees_t *s)
{
    json_t *a;
    size_t  i;
    int     rc;

    a = json_array();
    if (a == NULL) {
        return NULL;
    }
    rc = 0;
    if (s->real_cert) {
        rc |= hm_trust_push(a, json_string("real_client_certificate"));
    }
    if (s->proxy_protocol == HM_PROXY_PROTOCOL_V1) {
        rc |= hm_trust_push(a, json_string("proxy_protocol_v1"));
    } else if (s->proxy_protocol == HM_PROXY_PROTOCOL_V2) {
        rc |= hm_trust_push(a, json_string("proxy_protocol_v2"));
    }
    if (s->cert_header != NULL) {
        rc |= hm_trust_push_header(a, s->cert_header);
    }
    if (s->forwarded >= 0) {
        for (i = 0; i < hm_nelem(hm_trust_forwarded_set); i++) {
            rc |= hm_trust_push_header(a, hm_trust_forwarded_set[i]);
        }
    }
    if (rc == 0 && json_array_size(a) == 0) {
        rc |= hm_trust_push(a, json_string("none"));
    }
    if (rc != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}


static json_t *
hm_trust_json_site(const hm_conf_listener_t *l, const hm_conf_site_t *site)
{
    hm_trust_leg_t   *legs;
    hm_trust_sees_t   sees;
    const char      **names;
    json_t           *o, *a;
    size_t            i, n, nlegs;
    int               rc;

    legs = calloc(site->nroutes + 1, sizeof(*legs));
    names = calloc(hm_trust_stripped_max(site), sizeof(*names));
    o = json_object();
    if (legs == NULL || names == NULL || o == NULL) {
        free(legs);
        free(names);
        json_decref(o);
        return NULL;
    }
    nlegs = hm_trust_legs(site, legs);
    hm_trust_sees(site, legs, nlegs, &sees);

    rc = 0;
    rc |= hm_trust_set(o, "name", json_string(site->name));
    a = json_array();
    rc |= hm_trust_set(o, "server_names", a);
    for (i = 0; a != NULL && i < site->nserver_names; i++) {
        rc |= hm_trust_push(a, json_string(site->server_names[i]));
    }
    rc |= hm_trust_set(o, "mode", json_string(
        site->mode == HM_SITE_PASSTHROUGH ? "passthrough" : "terminate"));
    rc |= hm_trust_set(o, "default", json_boolean(l->default_site == site));
    rc |= hm_trust_set(o, "tls_ends", json_string(
        site->mode == HM_SITE_PASSTHROUGH ? "backend" : "edge"));
    rc |= hm_trust_set(o, "summary", json_string(
        site->mode == HM_SITE_PASSTHROUGH ? HM_TRUST_SUMMARY_PASSTHROUGH
                                          : HM_TRUST_SUMMARY_TERMINATE));
    rc |= hm_trust_set(o, "client_tls", hm_trust_json_client_tls(site));

    a = json_array();
    rc |= hm_trust_set(o, "legs", a);
    for (i = 0; a != NULL && i < nlegs; i++) {
        rc |= hm_trust_push(a, hm_trust_json_leg(site, &legs[i]));
    }

    rc |= hm_trust_set(o, "backend_sees", hm_trust_json_sees(&sees));

    if (site->mode == HM_SITE_TERMINATE) {
        rc |= hm_trust_set(o, "forwarded", json_string(
            hm_trust_forwarded_name(site->headers.forwarded)));
    }
    n = hm_trust_stripped(site, names);
    a = json_array();
    rc |= hm_trust_set(o, "stripped_headers", a);
    for (i = 0; a != NULL && i < n; i++) {
        rc |= hm_trust_push(a, json_string(names[i]));
    }

    free(legs);
    free(names);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}


/*
 * Appends to risks one entry per upstream leg carrying an accepted risk,
 * once per (upstream, site) pair.
 */
static int
hm_trust_json_risks(const hm_conf_t *conf, json_t *risks)
{
    const hm_conf_site_t *site;
    hm_trust_leg_t       *legs;
    json_t               *r;
    size_t                i, j, nlegs;
    int                   rc;

    rc = 0;
    for (i = 0; i < conf->nsites; i++) {
        site = &conf->sites[i];
        legs = calloc(site->nroutes + 1, sizeof(*legs));
        if (legs == NULL) {
            return -1;
        }
        nlegs = hm_trust_legs(site, legs);
        for (j = 0; j < nlegs; j++) {
            if (legs[j].kind != HM_TRUST_PLAINTEXT
                && legs[j].kind != HM_TRUST_TLS_UNVERIFIED)
            {
                continue;
            }
            r = json_object();
            rc |= hm_trust_push(risks, r);
            if (r == NULL) {
                break;
            }
            rc |= hm_trust_set(r, "site", json_string(site->name));
            rc |= hm_trust_set(r, "upstream",
                               json_string(legs[j].upstream->name));
            rc |= hm_trust_set(r, "kind",
                               json_string(hm_trust_kind_names[legs[j].kind]));
            rc |= hm_trust_set(r, "accepted_risk", hm_trust_jstr(
                legs[j].kind == HM_TRUST_PLAINTEXT
                    ? legs[j].upstream->plaintext_risk
                    : legs[j].upstream->tls.accepted_risk));
        }
        free(legs);
    }
    return rc;
}


static json_t *
hm_trust_json(const hm_conf_t *conf)
{
    const hm_conf_listener_t  *l;
    const hm_conf_site_t     **sites;
    json_t                    *root, *ls, *lo, *a;
    size_t                     i, j, n;
    int                        rc;

    root = json_object();
    ls = json_array();
    if (root == NULL || ls == NULL) {
        json_decref(root);
        json_decref(ls);
        return NULL;
    }
    rc = 0;
    rc |= hm_trust_set(root, "config", hm_trust_jstr(conf->path));
    rc |= hm_trust_set(root, "listeners", ls);

    for (i = 0; rc == 0 && i < conf->nlisteners; i++) {
        l = &conf->listeners[i];
        lo = json_object();
        rc |= hm_trust_push(ls, lo);
        if (lo == NULL) {
            break;
        }
        rc |= hm_trust_set(lo, "name", json_string(l->name));
        a = json_array();
        rc |= hm_trust_set(lo, "listen", a);
        for (j = 0; a != NULL && j < l->naddrs; j++) {
            rc |= hm_trust_push(a, json_string(l->addrs[j].text));
        }
        rc |= hm_trust_set(lo, "proxy_protocol", json_boolean(l->proxy_protocol));
        rc |= hm_trust_set(lo, "redirect_to_https",
                           json_boolean(l->redirect_to_https));
        rc |= hm_trust_set(lo, "default_site", hm_trust_jstr(
            l->default_site ? l->default_site->name : NULL));

        a = json_array();
        rc |= hm_trust_set(lo, "sites", a);
        if (a == NULL || l->redirect_to_https) {
            continue;
        }
        sites = calloc(l->nsites + 1, sizeof(*sites));
        if (sites == NULL) {
            rc = -1;
            break;
        }
        n = hm_trust_listener_sites(l, sites);
        for (j = 0; j < n; j++) {
            rc |= hm_trust_push(a, hm_trust_json_site(l, sites[j]));
        }
        free(sites);
    }

    rc |= hm_trust_set(root, "admin", hm_trust_jstr(
        conf->admin_listen ? conf->admin_listen->text : NULL));
    a = json_array();
    rc |= hm_trust_set(root, "accepted_risks", a);
    if (a != NULL) {
        rc |= hm_trust_json_risks(conf, a);
    }

    if (rc != 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}


char *
hm_trust_report_json(const hm_conf_t *conf)
{
    json_t *root;
    char   *s, *doc;
    size_t  len;

    root = hm_trust_json(conf);
    if (root == NULL) {
        return NULL;
    }
    s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (s == NULL) {
        return NULL;
    }
    /* The document ends with a newline, as the command prints it: the
     * admin /trust body is byte for byte the output of
     * hamlyn --trust-report=json. */
    len = strlen(s);
    doc = realloc(s, len + 2);
    if (doc == NULL) {
        free(s);
        return NULL;
    }
    doc[len] = '\n';
    doc[len + 1] = '\0';
    return doc;
}


int
hm_trust_report(const hm_conf_t *conf, FILE *out, int json)
{
    char *s;
    int   rc;

    if (json) {
        s = hm_trust_report_json(conf);
        if (s == NULL) {
            return HM_ERROR;
        }
        rc = fputs(s, out) < 0 ? HM_ERROR : HM_OK;
        free(s);
    } else {
        rc = hm_trust_text(conf, out);
    }
    if (fflush(out) != 0 || ferror(out)) {
        return HM_ERROR;
    }
    return rc;
}

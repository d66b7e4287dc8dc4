/*
 * check_hm_trust.c: unit tests of the trust report (src/core/hm_trust.c).
 * The configuration is built by hand as hm_conf.h structs (no loader, no
 * files): one listener serving a passthrough site with PROXY v2 out, a
 * terminating site whose routes reach a verified mTLS upstream, a plaintext
 * upstream, a pinned unverified upstream and a fixed response, a site with
 * verification off and no pins, and a fixed-response-only default site.
 * Each test renders the report (text or JSON) into memory and asserts on
 * the lines or fields that describe one leg kind.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_trust.h"
#include "hm_check.h"

#include <stdio.h>
#include <jansson.h>

typedef struct {
    hm_conf_t           conf;
    hm_conf_cert_t      certs[3];
    hm_conf_cert_t     *api_certs[1];
    hm_conf_upstream_t  ups[5];
    hm_conf_server_t    servers[5];
    hm_conf_listener_t  listeners[2];
    hm_addr_t           addrs[2];
    hm_conf_site_t      sites[4];
    hm_conf_site_t     *lsites[3];
    hm_conf_route_t     api_routes[4];
    hm_conf_route_t     legacy_routes[1];
    hm_conf_route_t     static_routes[1];
    char               *api_names[2];
    char               *db_names[1];
    char               *legacy_names[1];
    char               *static_names[1];
    char               *pins[1];
    char               *strip[2];
    char               *alpn[1];
    hm_kv_t             match_headers[1];
    char               *methods[2];
    hm_kv_t             set_request[1];
} fixture_t;

static fixture_t fx;

enum { UP_API = 0, UP_DB, UP_OLD, UP_SELF, UP_INSECURE };
enum { S_DB = 0, S_API, S_LEGACY, S_STATIC };

static void
server(int i, const char *text)
{
    snprintf(fx.servers[i].addr.text, sizeof(fx.servers[i].addr.text), "%s",
             text);
    fx.servers[i].weight = 1;
    fx.ups[i].servers = &fx.servers[i];
    fx.ups[i].nservers = 1;
}

static void
fixture(void)
{
    hm_conf_upstream_t *u;
    hm_conf_site_t     *s;
    hm_conf_listener_t *l;

    memset(&fx, 0, sizeof(fx));
    fx.conf.path = "/etc/hamlyn/hamlyn.json";
    fx.conf.dir = "/etc/hamlyn";

    fx.certs[0].name = "proxy-client";
    fx.certs[1].name = "api-ecdsa";
    fx.certs[2].name = "legacy";
    fx.api_certs[0] = &fx.certs[1];

    /* api: verified, CA file, name checked, mTLS, one pin */
    u = &fx.ups[UP_API];
    u->name = "api";
    server(UP_API, "10.0.0.11:8443");
    u->tls.present = 1;
    u->tls.verify = 1;
    u->tls.server_name = "api.internal";
    u->tls.ca_path = "/etc/hamlyn/certs/internal-ca.pem";
    u->tls.client_certificate = &fx.certs[0];
    fx.pins[0] = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    u->tls.pins = fx.pins;
    u->tls.npins = 1;

    /* db: passthrough */
    u = &fx.ups[UP_DB];
    u->name = "db";
    server(UP_DB, "10.0.0.20:5432");

    /* old: plaintext with accepted risk */
    u = &fx.ups[UP_OLD];
    u->name = "old";
    server(UP_OLD, "127.0.0.1:8080");
    u->plaintext_risk = "same host, loopback only";

    /* self: verify off, pinned */
    u = &fx.ups[UP_SELF];
    u->name = "self";
    server(UP_SELF, "10.0.0.30:443");
    u->tls.present = 1;
    u->tls.verify = 0;
    u->tls.server_name = "self.internal";
    u->tls.pins = fx.pins;
    u->tls.npins = 1;
    u->tls.accepted_risk = "self-signed appliance, pinned";

    /* insecure: verify off, no pins, system roots irrelevant */
    u = &fx.ups[UP_INSECURE];
    u->name = "insecure";
    server(UP_INSECURE, "10.0.0.40:443");
    u->tls.present = 1;
    u->tls.verify = 0;
    u->tls.accepted_risk = "lab network, to be fixed by Q3";

    fx.conf.upstreams = fx.ups;
    fx.conf.nupstreams = 5;

    /* site db: passthrough, PROXY v2 out */
    s = &fx.sites[S_DB];
    s->name = "db";
    fx.db_names[0] = "db.example.com";
    s->server_names = fx.db_names;
    s->nserver_names = 1;
    s->mode = HM_SITE_PASSTHROUGH;
    s->upstream = &fx.ups[UP_DB];
    s->proxy_protocol_out = HM_PROXY_PROTOCOL_V2;

    /* site api: terminate, optional client certs, 4 routes, 4 legs */
    s = &fx.sites[S_API];
    s->name = "api";
    fx.api_names[0] = "api.example.com";
    fx.api_names[1] = "*.api.example.com";
    s->server_names = fx.api_names;
    s->nserver_names = 2;
    s->mode = HM_SITE_TERMINATE;
    s->tls.certificates = fx.api_certs;
    s->tls.ncertificates = 1;
    s->tls.min_version = HM_TLS1_2;
    s->tls.max_version = HM_TLS1_3;
    fx.alpn[0] = "http/1.1";
    s->tls.alpn = fx.alpn;
    s->tls.nalpn = 1;
    s->tls.client_auth = HM_CLIENT_AUTH_OPTIONAL;
    s->tls.client_auth_ca = "/etc/hamlyn/certs/clients-ca.pem";
    s->headers.forwarded = HM_FORWARDED_REPLACE;
    s->headers.client_cert_header = "X-Client-Cert";
    fx.strip[0] = "X-User-Id";
    fx.strip[1] = "X-Internal-*";
    s->headers.strip_request = fx.strip;
    s->headers.nstrip_request = 2;
    fx.set_request[0].name = "X-Edge";
    fx.set_request[0].value = "hamlyn";
    s->headers.set_request = fx.set_request;
    s->headers.nset_request = 1;
    fx.api_routes[0].match.path_prefix = "/admin/";
    fx.api_routes[0].status = 404;
    fx.api_routes[1].match.path_prefix = "/old/";
    fx.api_routes[1].upstream = &fx.ups[UP_OLD];
    fx.methods[0] = "GET";
    fx.methods[1] = "POST";
    fx.api_routes[2].match.path_prefix = "/appliance/";
    fx.api_routes[2].match.methods = fx.methods;
    fx.api_routes[2].match.nmethods = 2;
    fx.match_headers[0].name = "x-canary";
    fx.match_headers[0].value = "1";
    fx.api_routes[2].match.headers = fx.match_headers;
    fx.api_routes[2].match.nheaders = 1;
    fx.api_routes[2].upstream = &fx.ups[UP_SELF];
    fx.api_routes[3].match.path_prefix = "/";
    fx.api_routes[3].upstream = &fx.ups[UP_API];
    s->routes = fx.api_routes;
    s->nroutes = 4;

    /* site legacy: terminate, no client auth, forwarded off, verify off */
    s = &fx.sites[S_LEGACY];
    s->name = "legacy";
    fx.legacy_names[0] = "legacy.example.com";
    s->server_names = fx.legacy_names;
    s->nserver_names = 1;
    s->mode = HM_SITE_TERMINATE;
    s->tls.min_version = HM_TLS1_3;
    s->tls.max_version = HM_TLS1_3;
    s->tls.client_auth = HM_CLIENT_AUTH_NONE;
    s->headers.forwarded = HM_FORWARDED_OFF;
    s->headers.client_cert_header = "X-Client-Cert";   /* stripped only */
    fx.legacy_routes[0].match.path_prefix = "/";
    fx.legacy_routes[0].upstream = &fx.ups[UP_INSECURE];
    s->routes = fx.legacy_routes;
    s->nroutes = 1;

    /* site static: terminate, fixed responses only; the default site */
    s = &fx.sites[S_STATIC];
    s->name = "static";
    fx.static_names[0] = "www.example.com";
    s->server_names = fx.static_names;
    s->nserver_names = 1;
    s->mode = HM_SITE_TERMINATE;
    s->tls.min_version = HM_TLS1_2;
    s->tls.max_version = HM_TLS1_3;
    s->headers.forwarded = HM_FORWARDED_APPEND;
    fx.static_routes[0].match.path_prefix = "/";
    fx.static_routes[0].status = 200;
    s->routes = fx.static_routes;
    s->nroutes = 1;

    fx.conf.sites = fx.sites;
    fx.conf.nsites = 4;

    /* listener public: sites db, api, legacy; default static (not listed) */
    l = &fx.listeners[0];
    l->name = "public";
    snprintf(fx.addrs[0].text, sizeof(fx.addrs[0].text), "0.0.0.0:443");
    snprintf(fx.addrs[1].text, sizeof(fx.addrs[1].text), "[::]:443");
    l->addrs = fx.addrs;
    l->naddrs = 2;
    fx.lsites[0] = &fx.sites[S_DB];
    fx.lsites[1] = &fx.sites[S_API];
    fx.lsites[2] = &fx.sites[S_LEGACY];
    l->sites = fx.lsites;
    l->nsites = 3;
    l->default_site = &fx.sites[S_STATIC];

    /* listener redirect: plaintext redirect only */
    l = &fx.listeners[1];
    l->name = "redirect";
    l->addrs = fx.addrs;
    l->naddrs = 1;
    l->redirect_to_https = 1;

    fx.conf.listeners = fx.listeners;
    fx.conf.nlisteners = 2;
}

/* Renders the report into a malloc'd string. */
static char *
render(int json)
{
    char  *s;
    size_t len;
    FILE  *f;

    s = NULL;
    f = open_memstream(&s, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(hm_trust_report(&fx.conf, f, json), HM_OK);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Returns the (first) line of text containing needle, copied. */
static char *
line_with(const char *text, const char *needle)
{
    const char *p, *b, *e;
    static char line[4096];

    p = strstr(text, needle);
    if (p == NULL) {
        return NULL;
    }
    for (b = p; b > text && b[-1] != '\n'; b--) { }
    e = strchr(p, '\n');
    if (e == NULL) {
        e = p + strlen(p);
    }
    snprintf(line, sizeof(line), "%.*s", (int) (e - b), b);
    return line;
}

static json_t *
report_json(void)
{
    json_t       *root;
    json_error_t  err;
    char         *s;

    s = render(1);
    root = json_loads(s, 0, &err);
    if (root == NULL) {
        ck_abort_msg("report is not JSON: %s (line %d)", err.text, err.line);
    }
    free(s);
    return root;
}

static json_t *
site_json(json_t *root, const char *name)
{
    json_t *l, *sites, *s;
    size_t  i, j;

    json_array_foreach(json_object_get(root, "listeners"), i, l) {
        sites = json_object_get(l, "sites");
        json_array_foreach(sites, j, s) {
            if (strcmp(json_string_value(json_object_get(s, "name")), name)
                == 0)
            {
                return s;
            }
        }
    }
    ck_abort_msg("site %s not in the report", name);
    return NULL;
}

static json_t *
leg_json(json_t *site, const char *kind)
{
    json_t *leg;
    size_t  i;

    json_array_foreach(json_object_get(site, "legs"), i, leg) {
        if (strcmp(json_string_value(json_object_get(leg, "kind")), kind)
            == 0)
        {
            return leg;
        }
    }
    ck_abort_msg("no %s leg", kind);
    return NULL;
}

static int
array_has(json_t *a, const char *v)
{
    json_t *e;
    size_t  i;

    json_array_foreach(a, i, e) {
        if (json_is_string(e) && strcmp(json_string_value(e), v) == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *
jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}


/* ---- text ---- */

START_TEST(text_listener_and_sites)
{
    char *s, *l;

    fixture();
    s = render(0);
    l = line_with(s, "listener public");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "0.0.0.0:443, [::]:443"));
    ck_assert_ptr_nonnull(strstr(l, "default site: static"));
    /* the default site is reported though it is not in the sites list */
    l = line_with(s, "site static");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "[default site]"));
    l = line_with(s, "listener redirect");
    ck_assert_ptr_nonnull(strstr(l, "redirects to https only"));
    /* sites in listener order */
    ck_assert(strstr(s, "site db") < strstr(s, "site api"));
    ck_assert(strstr(s, "site api") < strstr(s, "site legacy"));
    free(s);
}
END_TEST

START_TEST(text_passthrough)
{
    char *s, *l;

    fixture();
    s = render(0);
    l = line_with(s, "site db (db.example.com)");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "TLS end to end: client \xe2\x86\x94 "
        "backend; the proxy sees SNI, addresses, bytes, timing"));
    l = line_with(s, "upstream db:");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "passthrough to 10.0.0.20:5432"));
    ck_assert_ptr_nonnull(strstr(l, "PROXY protocol v2 out (backend learns "
                                    "the client address)"));
    /* the db block's "backend sees" and "headers stripped" lines */
    l = line_with(strstr(s, "site db"), "backend sees:");
    ck_assert_ptr_nonnull(strstr(l, "real client certificate"));
    ck_assert_ptr_nonnull(strstr(l, "PROXY protocol v2"));
    l = line_with(strstr(s, "site db"), "headers stripped:");
    ck_assert_ptr_nonnull(strstr(l, "none (the proxy cannot see them)"));
    free(s);
}
END_TEST

START_TEST(text_verified_mtls)
{
    char *s, *l;

    fixture();
    s = render(0);
    l = line_with(s, "site api (api.example.com, *.api.example.com)");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "TLS terminated at the edge"));
    l = line_with(s, "upstream api:");
    ck_assert_ptr_nonnull(l);
    /* paths shown relative to the config's folder */
    ck_assert_ptr_nonnull(strstr(l, "TLS verified (CA certs/internal-ca.pem, "
                                    "name api.internal), mTLS as "
                                    "proxy-client"));
    ck_assert_ptr_nonnull(strstr(l, "pins sha256/AAAA"));
    ck_assert_ptr_nonnull(strstr(l, "routes /"));
    ck_assert_ptr_null(strstr(l, "RISK"));
    l = line_with(strstr(s, "site api"), "client TLS:");
    ck_assert_ptr_nonnull(strstr(l, "TLSv1.2-TLSv1.3"));
    ck_assert_ptr_nonnull(strstr(l, "client certificate optional (CA "
                                    "certs/clients-ca.pem)"));
    ck_assert_ptr_nonnull(strstr(l, "certificates api-ecdsa"));
    free(s);
}
END_TEST

START_TEST(text_plaintext_risk)
{
    char *s, *l, *p;

    fixture();
    s = render(0);
    l = line_with(s, "upstream old:");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "plaintext"));
    ck_assert_ptr_nonnull(strstr(l, "routes /old/"));
    /* the RISK line follows the leg line and quotes the reason */
    p = strstr(strstr(s, "upstream old:"), "\n") + 1;
    ck_assert_ptr_nonnull(strstr(p, "RISK:"));
    ck_assert(strstr(p, "RISK:") < strchr(p, '\n'));
    l = line_with(p, "RISK:");
    ck_assert_ptr_nonnull(strstr(l, "plaintext to upstream old"));
    ck_assert_ptr_nonnull(strstr(l, "\"same host, loopback only\""));
    free(s);
}
END_TEST

START_TEST(text_verify_off)
{
    char *s, *l;

    fixture();
    s = render(0);
    /* pinned, chain not verified */
    l = line_with(s, "upstream self:");
    ck_assert_ptr_nonnull(strstr(l, "verify off, pinned: chain not verified"));
    ck_assert_ptr_nonnull(strstr(l, "GET,POST /appliance/ [x-canary: 1]"));
    l = line_with(s, "RISK: chain not verified to upstream self");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "\"self-signed appliance, pinned\""));
    /* no pins */
    l = line_with(s, "upstream insecure:");
    ck_assert_ptr_nonnull(strstr(l, "verify off: certificate NOT verified"));
    l = line_with(s, "RISK: certificate not verified to upstream insecure");
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(strstr(l, "\"lab network, to be fixed by Q3\""));
    /* three risks in all */
    ck_assert_ptr_nonnull(strstr(s, "3 RISK lines"));
    free(s);
}
END_TEST

START_TEST(text_fixed_and_identity)
{
    char *s, *l, *api, *legacy, *stat;

    fixture();
    s = render(0);
    api = strstr(s, "site api");
    legacy = strstr(s, "site legacy");
    stat = strstr(s, "site static");
    ck_assert_ptr_nonnull(api);
    ck_assert_ptr_nonnull(legacy);
    ck_assert_ptr_nonnull(stat);

    l = line_with(api, "fixed responses:");
    ck_assert_ptr_nonnull(strstr(l, "/admin/ \xe2\x86\x92 404"));
    l = line_with(api, "backend sees:");
    ck_assert_ptr_nonnull(strstr(l, "X-Client-Cert (proxy-asserted client "
                                    "certificate"));
    ck_assert_ptr_nonnull(strstr(l, "X-Forwarded-For"));
    ck_assert_ptr_nonnull(strstr(l, "set by the proxy"));
    l = line_with(api, "headers stripped:");
    ck_assert_ptr_nonnull(strstr(l, "Forwarded, X-Forwarded-For, "
                                    "X-Forwarded-Proto, X-Forwarded-Host, "
                                    "X-Real-IP, X-Client-Cert, X-User-Id, "
                                    "X-Internal-*, X-Edge (replaced by the proxy's value); "
                                    "hop-by-hop (Connection"));
    ck_assert_ptr_nonnull(strstr(l, "Proxy-Authorization"));

    /* client_auth none: the header is stripped but never set; forwarded
     * off: nothing identifies the client */
    l = line_with(legacy, "backend sees:");
    ck_assert_ptr_nonnull(strstr(l, "no client identity"));
    l = line_with(legacy, "headers stripped:");
    ck_assert_ptr_nonnull(strstr(l, "X-Client-Cert"));
    ck_assert_ptr_null(strstr(l, "X-Forwarded-For"));

    l = line_with(stat, "fixed responses:");
    ck_assert_ptr_nonnull(strstr(l, "/ \xe2\x86\x92 200"));
    l = line_with(stat, "backend sees:");
    ck_assert_ptr_nonnull(strstr(l, "no backend"));
    free(s);
}
END_TEST

START_TEST(text_no_risks)
{
    char *s;

    fixture();
    fx.listeners[0].nsites = 2;     /* db and api */
    fx.api_routes[1].upstream = &fx.ups[UP_API];
    fx.api_routes[2].upstream = &fx.ups[UP_API];
    fx.listeners[0].default_site = NULL;
    fx.conf.nsites = 2;
    s = render(0);
    ck_assert_ptr_null(strstr(s, "RISK:"));
    ck_assert_ptr_nonnull(strstr(s, "no accepted risks"));
    ck_assert_ptr_nonnull(strstr(s, "default site: none"));
    free(s);
}
END_TEST

/* ---- JSON ---- */

START_TEST(json_structure)
{
    json_t *root, *l, *a;

    fixture();
    root = report_json();
    a = json_object_get(root, "listeners");
    ck_assert_int_eq(json_array_size(a), 2);
    l = json_array_get(a, 0);
    ck_assert_str_eq(jstr(l, "name"), "public");
    ck_assert(array_has(json_object_get(l, "listen"), "[::]:443"));
    ck_assert_str_eq(jstr(l, "default_site"), "static");
    /* db, api, legacy, then the default site */
    ck_assert_int_eq(json_array_size(json_object_get(l, "sites")), 4);
    ck_assert_str_eq(jstr(json_array_get(json_object_get(l, "sites"), 3),
                          "name"), "static");
    ck_assert(json_is_true(json_object_get(
        json_array_get(json_object_get(l, "sites"), 3), "default")));
    l = json_array_get(a, 1);
    ck_assert(json_is_true(json_object_get(l, "redirect_to_https")));
    ck_assert_int_eq(json_array_size(json_object_get(l, "sites")), 0);
    ck_assert_int_eq(json_array_size(json_object_get(root, "accepted_risks")),
                     3);
    json_decref(root);
}
END_TEST

START_TEST(json_passthrough)
{
    json_t *root, *s, *leg, *ct;

    fixture();
    root = report_json();
    s = site_json(root, "db");
    ck_assert_str_eq(jstr(s, "mode"), "passthrough");
    ck_assert_str_eq(jstr(s, "tls_ends"), "backend");
    ck_assert(array_has(json_object_get(s, "server_names"), "db.example.com"));
    ct = json_object_get(s, "client_tls");
    ck_assert_str_eq(jstr(ct, "terminated_by"), "backend");
    ck_assert(array_has(json_object_get(ct, "proxy_sees"), "sni"));
    ck_assert_int_eq(json_array_size(json_object_get(s, "legs")), 1);
    leg = leg_json(s, "passthrough");
    ck_assert_str_eq(jstr(leg, "upstream"), "db");
    ck_assert_str_eq(jstr(leg, "proxy_protocol_out"), "v2");
    ck_assert(json_is_false(json_object_get(leg, "mtls")));
    ck_assert(json_is_null(json_object_get(leg, "accepted_risk")));
    ck_assert(array_has(json_object_get(s, "backend_sees"),
                        "real_client_certificate"));
    ck_assert(array_has(json_object_get(s, "backend_sees"),
                        "proxy_protocol_v2"));
    ck_assert_int_eq(json_array_size(json_object_get(s, "stripped_headers")),
                     0);
    json_decref(root);
}
END_TEST

START_TEST(json_terminate_legs)
{
    json_t *root, *s, *leg, *ct, *sees, *strip;

    fixture();
    root = report_json();
    s = site_json(root, "api");
    ck_assert_str_eq(jstr(s, "mode"), "terminate");
    ck_assert_str_eq(jstr(s, "tls_ends"), "edge");
    ck_assert_int_eq(json_array_size(json_object_get(s, "legs")), 4);

    ct = json_object_get(s, "client_tls");
    ck_assert_str_eq(jstr(ct, "min_version"), "TLSv1.2");
    ck_assert_str_eq(jstr(ct, "client_auth"), "optional");
    ck_assert_str_eq(jstr(ct, "client_auth_ca"),
                     "/etc/hamlyn/certs/clients-ca.pem");

    leg = leg_json(s, "tls_verified");
    ck_assert_str_eq(jstr(leg, "upstream"), "api");
    ck_assert(json_is_true(json_object_get(leg, "mtls")));
    ck_assert_str_eq(jstr(leg, "client_certificate"), "proxy-client");
    ck_assert_str_eq(jstr(leg, "server_name"), "api.internal");
    ck_assert_str_eq(jstr(leg, "ca"), "/etc/hamlyn/certs/internal-ca.pem");
    ck_assert_int_eq(json_array_size(json_object_get(leg, "pins")), 1);
    ck_assert(json_is_null(json_object_get(leg, "accepted_risk")));
    ck_assert(array_has(json_object_get(leg, "routes"), "/"));

    leg = leg_json(s, "plaintext");
    ck_assert_str_eq(jstr(leg, "upstream"), "old");
    ck_assert_str_eq(jstr(leg, "accepted_risk"), "same host, loopback only");
    ck_assert(json_is_false(json_object_get(leg, "mtls")));

    leg = leg_json(s, "tls_unverified");
    ck_assert_str_eq(jstr(leg, "upstream"), "self");
    ck_assert_str_eq(jstr(leg, "accepted_risk"),
                     "self-signed appliance, pinned");
    ck_assert_int_eq(json_array_size(json_object_get(leg, "pins")), 1);
    ck_assert(json_is_null(json_object_get(leg, "ca")));

    leg = leg_json(s, "fixed_response");
    ck_assert(json_is_null(json_object_get(leg, "upstream")));
    ck_assert(array_has(json_object_get(leg, "routes"),
                        "/admin/ \xe2\x86\x92 404"));

    sees = json_object_get(s, "backend_sees");
    ck_assert(array_has(sees, "header:X-Client-Cert"));
    ck_assert(array_has(sees, "header:X-Forwarded-For"));
    ck_assert(!array_has(sees, "real_client_certificate"));

    strip = json_object_get(s, "stripped_headers");
    ck_assert(array_has(strip, "X-Real-IP"));
    ck_assert(array_has(strip, "X-Client-Cert"));
    ck_assert(array_has(strip, "X-Internal-*"));
    ck_assert(array_has(strip, "Connection"));
    ck_assert(array_has(strip, "Transfer-Encoding"));
    ck_assert(array_has(strip, "Proxy-Authorization"));
    ck_assert(array_has(strip, "X-Edge"));      /* set_request: replaced */
    json_decref(root);
}
END_TEST

START_TEST(json_verify_off_and_fixed_only)
{
    json_t *root, *s, *leg;

    fixture();
    root = report_json();
    s = site_json(root, "legacy");
    leg = leg_json(s, "tls_unverified");
    ck_assert_str_eq(jstr(leg, "accepted_risk"),
                     "lab network, to be fixed by Q3");
    ck_assert_int_eq(json_array_size(json_object_get(leg, "pins")), 0);
    ck_assert(json_is_false(json_object_get(leg, "verify")));
    ck_assert_str_eq(jstr(json_object_get(s, "client_tls"), "client_auth"),
                     "none");
    ck_assert(array_has(json_object_get(s, "backend_sees"), "none"));
    ck_assert(array_has(json_object_get(s, "stripped_headers"),
                        "X-Client-Cert"));
    ck_assert(!array_has(json_object_get(s, "stripped_headers"),
                         "X-Forwarded-For"));

    s = site_json(root, "static");
    ck_assert_int_eq(json_array_size(json_object_get(s, "legs")), 1);
    leg = leg_json(s, "fixed_response");
    ck_assert(json_is_null(json_object_get(leg, "upstream")));
    ck_assert(array_has(json_object_get(s, "backend_sees"), "none"));
    json_decref(root);
}
END_TEST

START_TEST(json_system_roots_and_append)
{
    json_t *root, *s, *leg;

    fixture();
    fx.ups[UP_API].tls.ca_path = NULL;
    fx.ups[UP_API].tls.client_certificate = NULL;
    fx.sites[S_API].headers.forwarded = HM_FORWARDED_APPEND;
    root = report_json();
    s = site_json(root, "api");
    leg = leg_json(s, "tls_verified");
    ck_assert_str_eq(jstr(leg, "ca"), "system");
    ck_assert(json_is_false(json_object_get(leg, "mtls")));
    ck_assert(json_is_null(json_object_get(leg, "client_certificate")));
    ck_assert_str_eq(jstr(s, "forwarded"), "append");
    /* append keeps the client's values: nothing forwarded-related
     * stripped, but the proxy still extends them */
    ck_assert(!array_has(json_object_get(s, "stripped_headers"), "X-Real-IP"));
    ck_assert(array_has(json_object_get(s, "backend_sees"),
                        "header:X-Forwarded-For"));
    json_decref(root);
}
END_TEST

START_TEST(write_error)
{
    FILE *f;

    fixture();
    /* a read-only stream: every write fails */
    f = fopen("/dev/null", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(hm_trust_report(&fx.conf, f, 0), HM_ERROR);
    ck_assert_int_eq(hm_trust_report(&fx.conf, f, 1), HM_ERROR);
    fclose(f);
}
END_TEST

static Suite *
hm_trust_suite(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("hm_trust");
    tc = tcase_create("text");
    tcase_add_test(tc, text_listener_and_sites);
    tcase_add_test(tc, text_passthrough);
    tcase_add_test(tc, text_verified_mtls);
    tcase_add_test(tc, text_plaintext_risk);
    tcase_add_test(tc, text_verify_off);
    tcase_add_test(tc, text_fixed_and_identity);
    tcase_add_test(tc, text_no_risks);
    suite_add_tcase(s, tc);
    tc = tcase_create("json");
    tcase_add_test(tc, json_structure);
    tcase_add_test(tc, json_passthrough);
    tcase_add_test(tc, json_terminate_legs);
    tcase_add_test(tc, json_verify_off_and_fixed_only);
    tcase_add_test(tc, json_system_roots_and_append);
    tcase_add_test(tc, write_error);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(hm_trust_suite)

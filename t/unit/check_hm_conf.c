/*
 * check_hm_conf.c: unit tests of the configuration loader
 * (src/core/hm_conf.c) and of certificate loading (src/tls/hm_tls_cert.c).
 *
 * Configurations are written inline with single quotes (turned into double
 * quotes before parsing, so the C strings stay readable) and loaded with
 * hm_conf_load_buffer() under the name t/unit/data/conf/test.json, so their
 * relative paths reach the PEM fixtures of t/unit/data/conf (ecdsa.pem/key,
 * rsa.pem/key: self-signed for conf.test; other.pem/key: a second ECDSA
 * pair; chain.pem/key: a leaf followed by its intermediate; badchain.pem:
 * a leaf followed by a broken PEM block; ca.pem; ocsp.der: a small DER
 * blob; junk.pem: not PEM; tickets.keys: one base64 ticket key).  The error
 * output is captured with open_memstream() and each error class is checked
 * for its JSON path and reason.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_log.h"
#include "hm_tls_cert.h"
#include "hm_check.h"

#include <stdio.h>
#include <unistd.h>
#include <arpa/inet.h>

#define DATA "t/unit/data/conf"
#define NAME DATA "/test.json"

static char   *out_text;
static int     out_n;

/* Loads json (with ' standing for ") and keeps the error text. */
static hm_conf_t *
load(const char *json)
{
    char      *buf, *p;
    size_t     len, olen;
    FILE      *f;
    hm_conf_t *conf;

    buf = strdup(json);
    for (p = buf; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    free(out_text);
    out_text = NULL;
    f = open_memstream(&out_text, &olen);
    ck_assert_ptr_nonnull(f);
    len = strlen(buf);
    conf = hm_conf_load_buffer(buf, len, NAME, HM_CONF_NO_RESOLVE, f, &out_n);
    fclose(f);
    free(buf);
    return conf;
}

/* Asserts that loading fails and that one error line contains want. */
static void
load_fails_with(const char *json, const char *want)
{
    hm_conf_t *conf = load(json);

    if (conf != NULL) {
        hm_conf_free(conf);
        ck_abort_msg("loaded, expected an error containing: %s", want);
    }
    ck_assert_int_gt(out_n, 0);
    ck_assert_msg(strstr(out_text, want) != NULL,
                  "expected \"%s\" in:\n%s", want, out_text);
}

static int
count_lines(const char *s)
{
    int n = 0;

    for ( ; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

#define CERTS \
    "'certificates': {'e': {'cert': 'ecdsa.pem', 'key': 'ecdsa.key'}," \
    " 'r': {'cert': 'rsa.pem', 'key': 'rsa.key'}},"

#define PT_MIN \
    "{'upstreams': {'be': {'servers': ['127.0.0.1:9000']}}," \
    " 'listeners': [{'listen': ['127.0.0.1:8443'], 'sites': ['s']}]," \
    " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough'," \
    " 'upstream': 'be'}}}"

/* A terminating site s with fixed routes; SITE_EXTRA goes into the site,
 * TOP_EXTRA at the top level. */
#define TERM(TOP_EXTRA, SITE_EXTRA) \
    "{" CERTS TOP_EXTRA \
    " 'listeners': [{'listen': ['127.0.0.1:8443'], 'sites': ['s']}]," \
    " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate'," \
    " 'tls': {'certificates': ['e']}, " SITE_EXTRA \
    " 'routes': [{'status': 200}]}}}"


/* ---- valid configurations ------------------------------------------- */

static const char full_conf[] =
"{"
"  'runtime': {'workers': 3, 'cpu_affinity': [2, 0], 'user': 'root',"
"              'group': 'root', 'pid_file': 'hamlyn.pid',"
"              'error_log': {'path': 'stderr', 'level': 'warn'},"
"              'access_log': {'path': 'access.log', 'format': 'json'},"
"              'max_connections': 500, 'shutdown_timeout_s': 7,"
"              'tls_session_ticket_keys': 'tickets.keys'},"
"  'certificates': {'api-ecdsa': {'cert': 'ecdsa.pem', 'key': './ecdsa.key',"
"                                 'ocsp': 'ocsp.der'},"
"                   'api-rsa': {'cert': 'rsa.pem', 'key': 'rsa.key'},"
"                   'client': {'cert': 'other.pem', 'key': 'other.key'}},"
"  'upstreams': {"
"    'api': {'servers': ['10.0.0.11:8443',"
"                        {'address': '[fd00::12]:8443', 'weight': 2}],"
"            'balance': 'least_conn',"
"            'tls': {'server_name': 'API.internal', 'ca': 'ca.pem',"
"                    'client_certificate': 'client',"
"                    'pins': ['sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=']},"
"            'pool': {'max_idle_per_worker': 8, 'idle_timeout_s': 30},"
"            'connect_timeout_ms': 1000, 'read_timeout_ms': 5000,"
"            'max_fails': 5, 'fail_timeout_s': 20,"
"            'health_check': {'interval_s': 2, 'path': '/hc',"
"                             'fail_after': 4, 'pass_after': 1,"
"                             'timeout_ms': 300}},"
"    'self': {'servers': ['127.0.0.1:9443'],"
"             'tls': {'verify': false, 'accepted_risk': 'pinned lab box',"
"                     'pins': ['sha256/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=']}},"
"    'canary': {'servers': ['[::1]:8080'],"
"               'plaintext': {'accepted_risk': 'loopback only'}},"
"    'db': {'servers': ['127.0.0.1:5432']}"
"  },"
"  'listeners': ["
"    {'name': 'public', 'listen': ['0.0.0.0:443', '[::]:443'],"
"     'sites': ['api', 'db'], 'default_site': 'db', 'proxy_protocol': true,"
"     'client_hello_timeout_ms': 3000, 'client_hello_max_bytes': 20000,"
"     'backlog': 100},"
"    {'listen': ['*:80'], 'http': {'redirect_to_https': true}}"
"  ],"
"  'sites': {"
"    'db': {'server_names': ['db.example.com'], 'mode': 'passthrough',"
"           'upstream': 'db', 'proxy_protocol_out': 'v2',"
"           'limits': {'idle_timeout_ms': 1234}},"
"    'api': {'server_names': ['api.example.com', '*.API.example.com'],"
"      'mode': 'terminate',"
"      'tls': {'certificates': ['api-ecdsa', 'api-rsa'],"
"              'min_version': 'TLSv1.3', 'max_version': 'TLSv1.3',"
"              'alpn': ['http/1.1'], 'handshake_timeout_ms': 4000,"
"              'ciphers': 'ECDHE-ECDSA-AES128-GCM-SHA256',"
"              'client_auth': {'mode': 'optional', 'ca': 'ca.pem'}},"
"      'headers': {'forwarded': 'append', 'client_cert_header': 'X-Client-Cert',"
"                  'strip_request': ['X-User-Id', 'X-Internal-*'],"
"                  'set_request': {'X-Edge': 'hamlyn'},"
"                  'set_response': {'Strict-Transport-Security': 'max-age=1'},"
"                  'strip_response': ['Server']},"
"      'limits': {'max_header_bytes': 8192, 'max_body_bytes': 10485760,"
"                 'header_timeout_ms': 5000, 'idle_timeout_ms': 30000,"
"                 'max_requests': 50},"
"      'routes': ["
"        {'match': {'path_prefix': '/admin/'}, 'status': 404,"
"         'body': 'nope', 'content_type': 'text/html'},"
"        {'match': {'path_exact': '/v1/x', 'methods': ['GET', 'POST'],"
"                   'headers': {'X-Canary': '1'}, 'host': 'API.example.com'},"
"         'upstream': 'canary'},"
"        {'match': {'path_prefix': '/self/'}, 'upstream': 'self'},"
"        {'upstream': 'api'}"
"      ]}"
"  }"
"}";

START_TEST(test_full)
{
    hm_conf_t          *c = load(full_conf);
    hm_conf_upstream_t *api, *db, *canary;
    hm_conf_site_t     *s, *d;
    hm_conf_listener_t *l;
    char                cwd[1024], want[1200];

    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    ck_assert_int_eq(out_n, 0);
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));

    /* paths */
    snprintf(want, sizeof(want), "%s/" DATA, cwd);
    ck_assert_str_eq(c->dir, want);
    snprintf(want, sizeof(want), "%s/" DATA "/test.json", cwd);
    ck_assert_str_eq(c->path, want);

    /* runtime */
    ck_assert_int_eq(c->runtime.workers, 3);
    ck_assert_int_eq(c->runtime.cpu_affinity, HM_AFFINITY_LIST);
    ck_assert_uint_eq(c->runtime.ncpus, 2);
    ck_assert_int_eq(c->runtime.cpus[0], 2);
    ck_assert_int_eq(c->runtime.cpus[1], 0);
    ck_assert_str_eq(c->runtime.user, "root");
    ck_assert_str_eq(c->runtime.group, "root");
    snprintf(want, sizeof(want), "%s/" DATA "/hamlyn.pid", cwd);
    ck_assert_str_eq(c->runtime.pid_file, want);
    ck_assert_str_eq(c->runtime.error_log_path, "stderr");
    ck_assert_int_eq(c->runtime.error_log_level, HM_LOG_WARN);
    snprintf(want, sizeof(want), "%s/" DATA "/access.log", cwd);
    ck_assert_str_eq(c->runtime.access_log_path, want);
    ck_assert_int_eq(c->runtime.max_connections, 500);
    ck_assert_int_eq(c->runtime.shutdown_timeout_s, 7);
    ck_assert_ptr_nonnull(c->runtime.tls_session_ticket_keys);

    /* certificates */
    ck_assert_uint_eq(c->ncerts, 3);
    ck_assert_str_eq(c->certs[0].name, "api-ecdsa");
    snprintf(want, sizeof(want), "%s/" DATA "/ecdsa.key", cwd);
    ck_assert_str_eq(c->certs[0].key_path, want);
    ck_assert_ptr_nonnull(c->certs[0].ocsp_path);
    ck_assert_ptr_nonnull(c->certs[0].tls);
    ck_assert_ptr_null(c->certs[1].ocsp_path);
    ck_assert_ptr_nonnull(c->certs[1].tls);

    /* upstreams */
    ck_assert_uint_eq(c->nupstreams, 4);
    api = hm_conf_upstream_find(c, "api");
    db = hm_conf_upstream_find(c, "db");
    canary = hm_conf_upstream_find(c, "canary");
    ck_assert_ptr_nonnull(api);
    ck_assert_int_eq(api->index, 0);
    ck_assert_uint_eq(api->nservers, 2);
    ck_assert_str_eq(api->servers[0].addr.text, "10.0.0.11:8443");
    ck_assert_int_eq(api->servers[0].weight, 1);
    ck_assert_str_eq(api->servers[1].addr.text, "[fd00::12]:8443");
    ck_assert_int_eq(api->servers[1].weight, 2);
    ck_assert_int_eq(api->servers[1].addr.sa.ss_family, AF_INET6);
    ck_assert_int_eq(api->balance, HM_BALANCE_LEAST_CONN);
    ck_assert_int_eq(api->tls.present, 1);
    ck_assert_int_eq(api->tls.verify, 1);
    ck_assert_str_eq(api->tls.server_name, "api.internal");
    ck_assert_ptr_nonnull(api->tls.ca_path);
    ck_assert_ptr_eq(api->tls.client_certificate, hm_conf_cert_find(c, "client"));
    ck_assert_uint_eq(api->tls.npins, 1);
    ck_assert_ptr_null(api->plaintext_risk);
    ck_assert_int_eq(api->pool_max_idle, 8);
    ck_assert_int_eq(api->pool_idle_timeout_s, 30);
    ck_assert_int_eq(api->connect_timeout_ms, 1000);
    ck_assert_int_eq(api->read_timeout_ms, 5000);
    ck_assert_int_eq(api->max_fails, 5);
    ck_assert_int_eq(api->fail_timeout_s, 20);
    ck_assert_int_eq(api->health_check.present, 1);
    ck_assert_int_eq(api->health_check.interval_s, 2);
    ck_assert_str_eq(api->health_check.path, "/hc");
    ck_assert_int_eq(api->health_check.fail_after, 4);
    ck_assert_int_eq(api->health_check.pass_after, 1);
    ck_assert_int_eq(api->health_check.timeout_ms, 300);
    ck_assert_int_eq(api->used_by_terminate, 1);
    ck_assert_int_eq(api->used_by_passthrough, 0);
    ck_assert_int_eq(hm_conf_upstream_find(c, "self")->tls.verify, 0);
    ck_assert_str_eq(hm_conf_upstream_find(c, "self")->tls.accepted_risk,
                     "pinned lab box");
    ck_assert_str_eq(canary->plaintext_risk, "loopback only");
    ck_assert_int_eq(canary->tls.present, 0);
    ck_assert_int_eq(db->used_by_passthrough, 1);
    ck_assert_int_eq(db->used_by_terminate, 0);
    ck_assert_int_eq(db->index, 3);

    /* listeners */
    ck_assert_uint_eq(c->nlisteners, 2);
    l = &c->listeners[0];
    ck_assert_str_eq(l->name, "public");
    ck_assert_int_eq(l->index, 0);
    ck_assert_uint_eq(l->naddrs, 2);
    ck_assert_str_eq(l->addrs[0].text, "0.0.0.0:443");
    ck_assert_str_eq(l->addrs[1].text, "[::]:443");
    ck_assert_uint_eq(l->nsites, 2);
    ck_assert_str_eq(l->sites[0]->name, "api");
    ck_assert_str_eq(l->sites[1]->name, "db");
    ck_assert_ptr_eq(l->default_site, hm_conf_site_find(c, "db"));
    ck_assert_int_eq(l->proxy_protocol, 1);
    ck_assert_int_eq(l->client_hello_timeout_ms, 3000);
    ck_assert_uint_eq(l->client_hello_max_bytes, 20000);
    ck_assert_int_eq(l->backlog, 100);
    l = &c->listeners[1];
    ck_assert_str_eq(l->name, "0.0.0.0:80");
    ck_assert_int_eq(l->index, 1);
    ck_assert_int_eq(l->redirect_to_https, 1);
    ck_assert_uint_eq(l->nsites, 0);

    /* passthrough site */
    d = hm_conf_site_find(c, "db");
    ck_assert_int_eq(d->mode, HM_SITE_PASSTHROUGH);
    ck_assert_ptr_eq(d->upstream, db);
    ck_assert_int_eq(d->proxy_protocol_out, HM_PROXY_PROTOCOL_V2);
    ck_assert_int_eq(d->limits.idle_timeout_ms, 1234);
    ck_assert_int_eq(d->index, 0);

    /* terminating site */
    s = hm_conf_site_find(c, "api");
    ck_assert_int_eq(s->index, 1);
    ck_assert_int_eq(s->mode, HM_SITE_TERMINATE);
    ck_assert_uint_eq(s->nserver_names, 2);
    ck_assert_str_eq(s->server_names[1], "*.api.example.com");
    ck_assert_uint_eq(s->tls.ncertificates, 2);
    ck_assert_ptr_eq(s->tls.certificates[1], hm_conf_cert_find(c, "api-rsa"));
    ck_assert_int_eq(s->tls.min_version, HM_TLS1_3);
    ck_assert_int_eq(s->tls.max_version, HM_TLS1_3);
    ck_assert_uint_eq(s->tls.nalpn, 1);
    ck_assert_str_eq(s->tls.alpn[0], "http/1.1");
    ck_assert_int_eq(s->tls.handshake_timeout_ms, 4000);
    ck_assert_str_eq(s->tls.ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
    ck_assert_int_eq(s->tls.client_auth, HM_CLIENT_AUTH_OPTIONAL);
    ck_assert_ptr_nonnull(s->tls.client_auth_ca);
    ck_assert_int_eq(s->headers.forwarded, HM_FORWARDED_APPEND);
    ck_assert_str_eq(s->headers.client_cert_header, "X-Client-Cert");
    ck_assert_uint_eq(s->headers.nstrip_request, 2);
    ck_assert_str_eq(s->headers.strip_request[1], "X-Internal-*");
    ck_assert_uint_eq(s->headers.nset_request, 1);
    ck_assert_str_eq(s->headers.set_request[0].name, "X-Edge");
    ck_assert_str_eq(s->headers.set_request[0].value, "hamlyn");
    ck_assert_uint_eq(s->headers.nset_response, 1);
    ck_assert_uint_eq(s->headers.nstrip_response, 1);
    ck_assert_uint_eq(s->limits.max_header_bytes, 8192);
    ck_assert_uint_eq(s->limits.max_body_bytes, 10485760);
    ck_assert_int_eq(s->limits.header_timeout_ms, 5000);
    ck_assert_int_eq(s->limits.idle_timeout_ms, 30000);
    ck_assert_int_eq(s->limits.max_requests, 50);
    ck_assert_uint_eq(s->nroutes, 4);
    ck_assert_str_eq(s->routes[0].match.path_prefix, "/admin/");
    ck_assert_int_eq(s->routes[0].status, 404);
    ck_assert_str_eq(s->routes[0].body, "nope");
    ck_assert_uint_eq(s->routes[0].body_len, 4);
    ck_assert_str_eq(s->routes[0].content_type, "text/html");
    ck_assert_ptr_null(s->routes[0].upstream);
    ck_assert_str_eq(s->routes[1].match.path_exact, "/v1/x");
    ck_assert_uint_eq(s->routes[1].match.nmethods, 2);
    ck_assert_str_eq(s->routes[1].match.methods[1], "POST");
    ck_assert_uint_eq(s->routes[1].match.nheaders, 1);
    ck_assert_str_eq(s->routes[1].match.headers[0].name, "x-canary");
    ck_assert_str_eq(s->routes[1].match.host, "api.example.com");
    ck_assert_ptr_eq(s->routes[1].upstream, canary);
    ck_assert_int_eq(s->routes[1].status, 0);
    ck_assert_ptr_eq(s->routes[3].upstream, api);
    ck_assert_ptr_null(s->routes[3].match.path_prefix);
    hm_conf_free(c);
}
END_TEST

START_TEST(test_defaults)
{
    hm_conf_t          *c = load(PT_MIN);
    hm_conf_upstream_t *u;
    hm_conf_listener_t *l;

    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    ck_assert_int_eq(c->runtime.workers, (int) sysconf(_SC_NPROCESSORS_ONLN));
    ck_assert_int_eq(c->runtime.cpu_affinity, HM_AFFINITY_OFF);
    ck_assert_ptr_null(c->runtime.user);
    ck_assert_ptr_null(c->runtime.pid_file);
    ck_assert_str_eq(c->runtime.error_log_path, "stderr");
    ck_assert_int_eq(c->runtime.error_log_level, HM_LOG_INFO);
    ck_assert_ptr_null(c->runtime.access_log_path);
    ck_assert_int_eq(c->runtime.max_connections, 10000);
    ck_assert_int_eq(c->runtime.shutdown_timeout_s, 30);
    ck_assert_ptr_null(c->runtime.tls_session_ticket_keys);
    ck_assert_uint_eq(c->ncerts, 0);
    u = &c->upstreams[0];
    ck_assert_int_eq(u->balance, HM_BALANCE_ROUND_ROBIN);
    ck_assert_int_eq(u->servers[0].weight, 1);
    ck_assert_int_eq(u->tls.present, 0);
    ck_assert_ptr_null(u->plaintext_risk);
    ck_assert_int_eq(u->pool_max_idle, 32);
    ck_assert_int_eq(u->pool_idle_timeout_s, 60);
    ck_assert_int_eq(u->connect_timeout_ms, 2000);
    ck_assert_int_eq(u->read_timeout_ms, 30000);
    ck_assert_int_eq(u->max_fails, 3);
    ck_assert_int_eq(u->fail_timeout_s, 10);
    ck_assert_int_eq(u->health_check.present, 0);
    ck_assert_int_eq(u->health_check.interval_s, 5);
    ck_assert_str_eq(u->health_check.path, "/healthz");
    ck_assert_int_eq(u->health_check.fail_after, 3);
    ck_assert_int_eq(u->health_check.pass_after, 2);
    ck_assert_int_eq(u->health_check.timeout_ms, 2000);
    ck_assert_int_eq(u->used_by_passthrough, 1);
    l = &c->listeners[0];
    ck_assert_str_eq(l->name, "127.0.0.1:8443");
    ck_assert_ptr_null(l->default_site);
    ck_assert_int_eq(l->proxy_protocol, 0);
    ck_assert_int_eq(l->redirect_to_https, 0);
    ck_assert_int_eq(l->client_hello_timeout_ms, 10000);
    ck_assert_uint_eq(l->client_hello_max_bytes, 65536);
    ck_assert_int_eq(l->backlog, 511);
    ck_assert_int_eq(c->sites[0].proxy_protocol_out, HM_PROXY_PROTOCOL_NONE);
    ck_assert_int_eq(c->sites[0].limits.idle_timeout_ms, 60000);
    hm_conf_free(c);
}
END_TEST

/* CONFIG.md's documented defaults for the policy tables, {}, load. */
START_TEST(test_empty_policies)
{
    hm_conf_t *c = load("{'jwt': {}, 'waf': {}, 'rate_limits': {},"
                        " 'upstreams': {'be': {'servers': ['127.0.0.1:9000']}},"
                        " 'listeners': [{'listen': ['127.0.0.1:8443'],"
                        " 'sites': ['s']}], 'sites': {'s': {'server_names':"
                        " ['a.test'], 'mode': 'passthrough', 'upstream': 'be'}}}");

    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    hm_conf_free(c);
}
END_TEST

START_TEST(test_term_defaults)
{
    hm_conf_t      *c = load(TERM("", ""));
    hm_conf_site_t *s;

    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    s = &c->sites[0];
    ck_assert_int_eq(s->tls.min_version, HM_TLS1_2);
    ck_assert_int_eq(s->tls.max_version, HM_TLS1_3);
    ck_assert_uint_eq(s->tls.nalpn, 1);
    ck_assert_str_eq(s->tls.alpn[0], "http/1.1");
    ck_assert_int_eq(s->tls.client_auth, HM_CLIENT_AUTH_NONE);
    ck_assert_ptr_null(s->tls.client_auth_ca);
    ck_assert_int_eq(s->tls.handshake_timeout_ms, 10000);
    ck_assert_ptr_null(s->tls.ciphers);
    ck_assert_int_eq(s->headers.forwarded, HM_FORWARDED_REPLACE);
    ck_assert_ptr_null(s->headers.client_cert_header);
    ck_assert_uint_eq(s->headers.nstrip_request, 0);
    ck_assert_uint_eq(s->limits.max_header_bytes, 16384);
    ck_assert_uint_eq(s->limits.max_body_bytes, 1024 * 1024);
    ck_assert_int_eq(s->limits.header_timeout_ms, 10000);
    ck_assert_int_eq(s->limits.idle_timeout_ms, 60000);
    ck_assert_int_eq(s->limits.max_requests, 1000);
    ck_assert_uint_eq(s->nroutes, 1);
    ck_assert_int_eq(s->routes[0].status, 200);
    ck_assert_ptr_null(s->routes[0].body);
    ck_assert_str_eq(s->routes[0].content_type, "text/plain");
    ck_assert_ptr_null(s->upstream);
    hm_conf_free(c);
}
END_TEST

/* "upstream" on a terminating site becomes a last catch-all route. */
START_TEST(test_term_site_upstream)
{
    hm_conf_t      *c;
    hm_conf_site_t *s;

    c = load("{" CERTS
             " 'upstreams': {'app': {'servers': ['127.0.0.1:8080'],"
             "   'plaintext': {'accepted_risk': 'loopback'}}},"
             " 'listeners': [{'listen': ['127.0.0.1:8443'], 'sites': ['s']}],"
             " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate',"
             "   'tls': {'certificates': ['e', 'r']}, 'upstream': 'app',"
             "   'routes': [{'match': {'path_exact': '/x'}, 'status': 403}]}}}");
    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    s = &c->sites[0];
    ck_assert_uint_eq(s->nroutes, 2);
    ck_assert_int_eq(s->routes[0].status, 403);
    ck_assert_ptr_eq(s->routes[1].upstream, &c->upstreams[0]);
    ck_assert_ptr_null(s->routes[1].match.path_prefix);
    ck_assert_int_eq(c->upstreams[0].used_by_terminate, 1);
    hm_conf_free(c);
}
END_TEST

/* admin is accepted (it used to be refused as "not supported yet"). */
START_TEST(test_admin)
{
    hm_conf_t *c;

    c = load("{'admin': {'listen': '127.0.0.1:9901'},"
             " 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}}],"
             " 'sites': {}}");
    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    ck_assert_ptr_nonnull(c->admin_listen);
    ck_assert_str_eq(c->admin_listen->text, "127.0.0.1:9901");
    ck_assert_int_eq(c->admin_listen->sa.ss_family, AF_INET);
    hm_conf_free(c);

    c = load("{'admin': {'listen': '[::1]:9901'},"
             " 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}}],"
             " 'sites': {}}");
    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    ck_assert_str_eq(c->admin_listen->text, "[::1]:9901");
    hm_conf_free(c);

    c = load("{'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}}],"
             " 'sites': {}}");
    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    ck_assert_ptr_null(c->admin_listen);
    hm_conf_free(c);
}
END_TEST

START_TEST(test_workers_auto)
{
    hm_conf_t *c;

    c = load("{'runtime': {'workers': 'auto', 'cpu_affinity': 'auto',"
             " 'access_log': {'path': 'stdout'}}, "
             "'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}}],"
             " 'sites': {}}");
    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    ck_assert_int_eq(c->runtime.workers, (int) sysconf(_SC_NPROCESSORS_ONLN));
    ck_assert_int_eq(c->runtime.cpu_affinity, HM_AFFINITY_AUTO);
    ck_assert_str_eq(c->runtime.access_log_path, "stdout");
    ck_assert_str_eq(c->listeners[0].addrs[0].text, "0.0.0.0:1");
    hm_conf_free(c);
}
END_TEST


/* ---- one error class per case ------------------------------------------ */

typedef struct {
    const char *json;
    const char *want;
} bad_t;

static const bad_t bad[] = {
    /* top level */
    { "{'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}}]}",
      "test.json: sites: required key is missing" },
    { "{'sites': {}}", "test.json: listeners: required key is missing" },
    { "[1, 2]", "test.json: (top level): expected an object, got an array" },
    { "{'sites': {}, 'listeners': [], 'bogus': 1}", "bogus: unknown key" },
    /* an integer beyond 64 bits is named by its path, not a line/column */
    { "{'sites': {}, 'listeners': [], 'runtime': {'workers': 99999999999999999999}}",
      "test.json: runtime.workers: number too large: beyond a 64-bit integer" },
    { "{'sites': {}, 'listeners': [{'listen': [':1'], 'backlog': -9223372036854775809}]}",
      "test.json: listeners[0].backlog: number too large" },
    { "{'sites': {}, 'listeners': []}", "listeners: must not be empty" },
    { "{'sites': {}, 'listners': []}",
      "listners: unknown key (did you mean \"listeners\"?)" },
    /* admin */
    { "{'admin': {'listen': 'localhost:9901'}, 'sites': {}, 'listeners': []}",
      "test.json: admin.listen: not an address such as \"127.0.0.1:9901\" or "
      "\"[::1]:9901\" (got \"localhost:9901\")" },
    { "{'admin': {'listen': '127.0.0.1'}, 'sites': {}, 'listeners': []}",
      "test.json: admin.listen: not an address such as" },
    { "{'admin': {'listen': 9901}, 'sites': {}, 'listeners': []}",
      "test.json: admin.listen: expected a string" },
    { "{'admin': {}, 'sites': {}, 'listeners': []}",
      "test.json: admin.listen: required key is missing" },
    { "{'admin': {'listen': '127.0.0.1:9901', 'lsiten': 1}, 'sites': {}, 'listeners': []}",
      "test.json: admin.lsiten: unknown key" },
    { "{'admin': '127.0.0.1:9901', 'sites': {}, 'listeners': []}",
      "test.json: admin: expected an object, got a string" },
    { "{'admin': {'listen': '127.0.0.1:8443'}, 'sites': {}, 'listeners': "
      "[{'listen': ['0.0.0.0:8443'], 'http': {'redirect_to_https': true}}]}",
      "test.json: admin.listen: 127.0.0.1:8443 overlaps with listeners[0].listen[0]" },
    /* features not built yet */
    { "{'jwt': {'main': {'issuer': 'x'}}, 'sites': {}, 'listeners': []}",
      "test.json: jwt.main: not supported yet" },
    { "{'waf': {'default': {}}, 'sites': {}, 'listeners': []}",
      "test.json: waf.default: not supported yet" },
    { "{'rate_limits': {'per-ip': {'key': 'client_ip'}}, 'sites': {}, 'listeners': []}",
      "test.json: rate_limits.per-ip: not supported yet" },
    { "{'jwt': [], 'sites': {}, 'listeners': []}",
      "test.json: jwt: expected an object, got an array" },
    { TERM("", "'x': 1,"),
      "sites.s.x: unknown key" },
    /* runtime */
    { "{'runtime': {'workers': 0}, 'sites': {}, 'listeners': []}",
      "runtime.workers: must be between 1 and 1024 (got 0)" },
    { "{'runtime': {'workers': 'many'}, 'sites': {}, 'listeners': []}",
      "runtime.workers: expected an integer or \"auto\", got \"many\"" },
    { "{'runtime': {'workers': 1.5}, 'sites': {}, 'listeners': []}",
      "runtime.workers: expected an integer or \"auto\", got a real number" },
    { "{'runtime': {'cpu_affinity': 'on'}, 'sites': {}, 'listeners': []}",
      "runtime.cpu_affinity: must be \"auto\", \"off\" or a non-empty array" },
    { "{'runtime': {'cpu_affinity': [0, -1]}, 'sites': {}, 'listeners': []}",
      "runtime.cpu_affinity[1]: must be between 0 and 1023 (got -1)" },
    { "{'runtime': {'user': 'no-such-user-hm'}, 'sites': {}, 'listeners': []}",
      "runtime.user: no such user \"no-such-user-hm\"" },
    { "{'runtime': {'group': 'no-such-group-hm'}, 'sites': {}, 'listeners': []}",
      "runtime.group: no such group" },
    { "{'runtime': {'error_log': {'level': 'loud'}}, 'sites': {}, 'listeners': []}",
      "runtime.error_log.level: must be \"debug\", \"info\", \"warn\" or "
      "\"error\" (got \"loud\")" },
    { "{'runtime': {'error_log': {'path': 'nodir/e.log'}}, 'sites': {}, 'listeners': []}",
      "runtime.error_log.path: folder" },
    { "{'runtime': {'error_log': 'stderr'}, 'sites': {}, 'listeners': []}",
      "runtime.error_log: expected an object, got a string" },
    { "{'runtime': {'access_log': {'path': 'a.log', 'format': 'clf'}}, 'sites': {}, 'listeners': []}",
      "runtime.access_log.format: must be \"json\" (got \"clf\")" },
    { "{'runtime': {'access_log': {}}, 'sites': {}, 'listeners': []}",
      "runtime.access_log.path: required key is missing" },
    { "{'runtime': {'max_connections': 0}, 'sites': {}, 'listeners': []}",
      "runtime.max_connections: must be between" },
    { "{'runtime': {'shutdown_timeout_s': '5'}, 'sites': {}, 'listeners': []}",
      "runtime.shutdown_timeout_s: expected an integer, got a string" },
    { "{'runtime': {'tls_session_ticket_keys': 'none.key'}, 'sites': {}, 'listeners': []}",
      "runtime.tls_session_ticket_keys: cannot read" },
    { "{'runtime': {'tls_session_ticket_keys': 'ocsp.der'}, 'sites': {}, 'listeners': []}",
      "runtime.tls_session_ticket_keys: \"" },
    { "{'runtime': {'pid_file': ''}, 'sites': {}, 'listeners': []}",
      "runtime.pid_file: must not be empty" },
    /* a folder where a file is written: -t said ok, the start failed */
    { "{'runtime': {'pid_file': '.'}, 'sites': {}, 'listeners': []}",
      "is a folder, not a file" },
    { "{'runtime': {'access_log': {'path': '/tmp'}}, 'sites': {}, 'listeners': []}",
      "runtime.access_log.path: \"/tmp\" is a folder, not a file" },
    /* nginx's trap: "off" (or "stdout") as the error log was a file of
     * that name next to the configuration */
    { "{'runtime': {'error_log': {'path': 'off'}}, 'sites': {}, 'listeners': []}",
      "runtime.error_log.path: \"off\" is not a special value of the error log" },
    { "{'runtime': {'error_log': {'path': 'stdout'}}, 'sites': {}, 'listeners': []}",
      "runtime.error_log.path: \"stdout\" is not a special value" },
    { "{'runtime': {'access_log': {'path': 'stderr'}}, 'sites': {}, 'listeners': []}",
      "runtime.access_log.path: \"stderr\" is not a special value" },
    /* certificates */
    { "{'certificates': {'c': {'cert': 'ecdsa.pem'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.key: required key is missing" },
    { "{'certificates': {'c': {'cert': 'missing.pem', 'key': 'ecdsa.key'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.cert: cannot read" },
    /* a long path is named whole, never cut: the operator needs all of it */
    { "{'certificates': {'c': {'cert': 'a-rather-long-folder-name-0123456789/"
      "another-rather-long-folder-name-0123456789/missing-cert-at-the-end.pem',"
      " 'key': 'ecdsa.key'}}, 'sites': {}, 'listeners': []}",
      "another-rather-long-folder-name-0123456789/missing-cert-at-the-end.pem\": " },
    { "{'certificates': {'c': {'cert': 'ecdsa.pem', 'key': 'rsa.key'}}, 'sites': {}, 'listeners': []}",
      "certificates.c: key" },
    { "{'certificates': {'c': {'cert': 'ecdsa.pem', 'key': 'other.key'}}, 'sites': {}, 'listeners': []}",
      "does not match certificate" },
    { "{'certificates': {'c': {'cert': 'junk.pem', 'key': 'ecdsa.key'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.cert: no PEM certificate found" },
    { "{'certificates': {'c': {'cert': 'ecdsa.pem', 'key': 'junk.pem'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.key: no PEM private key found" },
    { "{'certificates': {'c': {'cert': 'ecdsa.pem', 'key': 'ecdsa.key', 'ocsp': 'ecdsa.pem'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.ocsp: OCSP response" },
    { "{'certificates': {'c': {'cert': '.', 'key': 'ecdsa.key'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.cert: " },
    { "{'certificates': {'a b': {'cert': 'ecdsa.pem', 'key': 'ecdsa.key'}}, 'sites': {}, 'listeners': []}",
      "certificates[\"a b\"]: names may use letters" },
    { "{'certificates': {'c': {'cert': 'ecdsa.pem', 'key': 'ecdsa.key', 'chain': 'x'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.chain: unknown key" },
    /* upstreams */
    { "{'upstreams': {'u': {}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers: required key is missing" },
    { "{'upstreams': {'u': {'servers': []}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers: must not be empty" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1']}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0]: not an address with a port" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:0']}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0]: not an address with a port" },
    { "{'upstreams': {'u': {'servers': ['0.0.0.0:80']}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0]: cannot connect to a wildcard address" },
    { "{'upstreams': {'u': {'servers': ['db.internal:80']}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0]: host names are not resolved here" },
    { "{'upstreams': {'u': {'servers': [{'address': '10.0.0.1:80', 'weight': 0}]}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0].weight: must be between 1 and 100 (got 0)" },
    { "{'upstreams': {'u': {'servers': [{'weight': 2}]}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0].address: required key is missing" },
    { "{'upstreams': {'u': {'servers': [80]}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.servers[0]: expected an address string or an object, got an integer" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'balance': 'hash'}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.balance: must be \"round_robin\", \"least_conn\" or \"random_two\" (got \"hash\")" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'plaintext': {'accepted_risk': ''}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.plaintext.accepted_risk: must not be empty" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'plaintext': {'accepted_risk': ' \\t\\n '}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.plaintext.accepted_risk: must say why the risk is acceptable (got only white space)" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'verify': false, 'accepted_risk': '   '}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.accepted_risk: must say why the risk is acceptable (got only white space)" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'plaintext': {}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.plaintext.accepted_risk: required key is missing" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'plaintext': {'accepted_risk': 'x'}, 'tls': {'server_name': 'a.test'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u: \"tls\" and \"plaintext\" are mutually exclusive" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a.test', 'verify': false}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.verify: \"verify\": false needs \"accepted_risk\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a.test', 'verify': 0, 'accepted_risk': 'x'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.verify: expected true or false, got an integer" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'ca': 'ca.pem'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls: \"server_name\" is required when \"verify\" is true" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a.test', 'ca': 'junk.pem'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.ca: no PEM certificate in CA bundle" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a.test', 'ca': 'nothere.pem'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.ca: cannot read" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a.test', 'client_certificate': 'nope'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.client_certificate: no certificate named \"nope\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a.test', 'pins': ['md5/xx']}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.pins[0]: a pin is \"sha256/\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'tls': {'server_name': 'a..test'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.server_name: empty label in host name" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'pool': {'max_idle_per_worker': -1}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.pool.max_idle_per_worker: must be between 0 and" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'connect_timeout_ms': 0}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.connect_timeout_ms: must be between 1 and" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'health_check': {'path': 'hc'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.health_check.path: must start with \"/\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'health_check': {'fail_after': 0}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.health_check.fail_after: must be between 1 and 100" },
    /* sites */
    { "{'sites': {'s': {'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names: required key is missing" },
    { "{'sites': {'s': {'server_names': [], 'mode': 'passthrough'}}, 'listeners': []}",
      "sites.s.server_names: must not be empty" },
    { "{'sites': {'s': {'server_names': ['a.test'], 'mode': 'bridge'}}, 'listeners': []}",
      "sites.s.mode: must be \"passthrough\" or \"terminate\" (got \"bridge\")" },
    { "{'sites': {'s': {'server_names': ['a.test']}}, 'listeners': []}",
      "sites.s.mode: required key is missing" },
    { "{'sites': {'s': {'server_names': ['a.*.test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names[0]: only a leading \"*.\" label may be a wildcard" },
    { "{'sites': {'s': {'server_names': ['*a.test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names[0]: a wildcard is a whole leading label" },
    { "{'sites': {'s': {'server_names': ['*.*.test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names[0]: only a leading" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443'], 'tls': {'server_name': '*.internal'}}}, 'sites': {}, 'listeners': []}",
      "upstreams.u.tls.server_name: a wildcard is not a host name" },
    { "{'sites': {'s': {'server_names': ['a test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names[0]: a host name uses letters" },
    { "{'sites': {'s': {'server_names': ['a.test.'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names[0]: a trailing dot is not allowed: write the name without it (got \"a.test.\")" },
    { "{'sites': {'s': {'server_names': ['a.test', 'A.TEST'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.server_names[1]: \"a.test\" is listed twice" },
    { "{'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "sites.s.upstream: no upstream named \"u\"" },
    { "{'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough'}}, 'listeners': []}",
      "sites.s.upstream: required key is missing" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u', 'proxy_protocol_out': 'v3'}}, 'listeners': []}",
      "sites.s.proxy_protocol_out: must be \"v1\" or \"v2\" (got \"v3\")" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u', 'tls': {}}}, 'listeners': []}",
      "sites.s.tls: only for terminating sites (this site is passthrough)" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u', 'limits': {'max_body_bytes': 1}}}, 'listeners': []}",
      "sites.s.limits.max_body_bytes: only for terminating sites" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443'], 'tls': {'server_name': 'a.test'}}}, 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "upstreams.u.tls: upstream of passthrough site \"s\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443'], 'plaintext': {'accepted_risk': 'x'}}}, 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'}}, 'listeners': []}",
      "upstreams.u.plaintext: upstream of passthrough site \"s\"" },
    { "{'a': 1, 'sites': {'s': 5}, 'listeners': []}",
      "sites.s: expected an object, got an integer" },
    { "{'sites': {'a.b': {'server_names': ['a.test'], 'mode': 'x'}}, 'listeners': []}",
      "sites[\"a.b\"].mode: must be" },
    /* terminating sites */
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls: required key is missing" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']}}}, 'listeners': []}",
      "sites.s: a terminating site needs \"routes\"" },
    { TERM("", "'tls': {'certificates': []},"),
      "test.json: line" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': []}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.certificates: must not be empty" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e', 'x']}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.certificates[1]: no certificate named \"x\"" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e'], 'min_version': 'TLSv1.1'}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.min_version: must be \"TLSv1.2\" or \"TLSv1.3\" (got \"TLSv1.1\")" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e'], 'min_version': 'TLSv1.3', 'max_version': 'TLSv1.2'}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.max_version: is lower than \"min_version\"" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e'], 'alpn': ['h2']}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.alpn[0]: not supported yet" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e'], 'ciphers': 'NOT-A-CIPHER'}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.ciphers: invalid cipher list" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e'], 'client_auth': {'mode': 'required'}}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.client_auth.ca: required key is missing" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e'], 'client_auth': {'mode': 'always', 'ca': 'ca.pem'}}, 'routes': [{'status': 200}]}}, 'listeners': []}",
      "sites.s.tls.client_auth.mode: must be \"none\", \"optional\" or \"required\"" },
    { TERM("", "'proxy_protocol_out': 'v2',"),
      "sites.s.proxy_protocol_out: only for passthrough sites" },
    { TERM("", "'headers': {'forwarded': 'keep'},"),
      "sites.s.headers.forwarded: must be \"replace\", \"append\" or \"off\"" },
    { TERM("", "'headers': {'set_request': {'Content-Length': '5'}},"),
      "sites.s.headers.set_request.Content-Length: this header is managed by the proxy" },
    { TERM("", "'headers': {'set_response': {'X-A': 'a\\r\\nX-B: b'}},"),
      "sites.s.headers.set_response.X-A: header values may not contain control characters" },
    { TERM("", "'headers': {'set_request': {'X A': 'b'}},"),
      "sites.s.headers.set_request[\"X A\"]: not a valid header name" },
    { TERM("", "'headers': {'strip_request': ['*']},"),
      "sites.s.headers.strip_request[0]: not a header name or a prefix" },
    { TERM("", "'headers': {'strip_response': 'Server'},"),
      "sites.s.headers.strip_response: expected an array, got a string" },
    { TERM("", "'headers': {'client_cert_header': 'X Client'},"),
      "sites.s.headers.client_cert_header: not a valid header name" },
    { TERM("", "'limits': {'max_header_bytes': 10},"),
      "sites.s.limits.max_header_bytes: must be between 256 and" },
    { TERM("", "'limits': {'max_requests': 0},"),
      "sites.s.limits.max_requests: must be between 1 and" },
    /* routes (the TERM route list is replaced by a later key: use full) */
    { "{" CERTS " 'upstreams': {'api': {'servers': ['10.0.0.1:80'], 'plaintext': {'accepted_risk': 'x'}}},"
      " 'sites': {'api': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 200}, {'match': {'path_prefix': '/'}, 'upstream': 'apj'}]}}, 'listeners': []}",
      "test.json: sites.api.routes[1].upstream: no upstream named \"apj\"" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'path_prefix': '/'}}]}}, 'listeners': []}",
      "sites.s.routes[0]: a route needs either \"upstream\" or \"status\"" },
    { "{" CERTS " 'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'plaintext': {'accepted_risk': 'x'}}},"
      " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'upstream': 'u', 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0]: \"upstream\" and \"status\" are mutually exclusive" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 99}]}}, 'listeners': []}",
      "sites.s.routes[0].status: must be between 200 and 599 (got 99)" },
    /* a 1xx never ends a request: the client would wait for the final
     * answer of a fixed route forever */
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 101}]}}, 'listeners': []}",
      "sites.s.routes[0].status: must be between 200 and 599 (got 101)" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 600}]}}, 'listeners': []}",
      "sites.s.routes[0].status: must be between 200 and 599 (got 600)" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 204, 'body': 'x'}]}}, 'listeners': []}",
      "sites.s.routes[0].body: a 204 response has no body" },
    { "{" CERTS " 'upstreams': {'u': {'servers': ['10.0.0.1:80'], 'plaintext': {'accepted_risk': 'x'}}},"
      " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'upstream': 'u', 'body': 'x'}]}}, 'listeners': []}",
      "sites.s.routes[0].body: only with \"status\"" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 200, 'jwt': 'main'}]}}, 'listeners': []}",
      "sites.s.routes[0].jwt: no jwt policy named \"main\" (and jwt policies are not supported yet)" },
    { "{" CERTS " 'jwt': {'main': {}}, 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 200, 'jwt': 'main'}]}}, 'listeners': []}",
      "sites.s.routes[0].jwt: not supported yet" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 200, 'waf': 'default'}]}}, 'listeners': []}",
      "sites.s.routes[0].waf: no waf policy named \"default\"" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'status': 200, 'rate_limit': 'per-ip'}]}}, 'listeners': []}",
      "sites.s.routes[0].rate_limit: no rate_limits policy named \"per-ip\"" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'path_prefix': '/a', 'path_exact': '/b'}, 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0].match: \"path_prefix\" and \"path_exact\" are mutually exclusive" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'methods': ['get']}, 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0].match.methods[0]: methods are case-sensitive" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'path_exact': '/a b'}, 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0].match.path_exact: must not contain spaces" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'headers': {'x-a': 1}}, 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0].match.headers.x-a: expected a string, got an integer" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'host': 'a_b c'}, 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0].match.host: a host name uses letters" },
    { "{" CERTS " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'match': {'query': 'x'}, 'status': 200}]}}, 'listeners': []}",
      "sites.s.routes[0].match.query: unknown key" },
    { "{" CERTS " 'upstreams': {'u': {'servers': ['10.0.0.1:80']}},"
      " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'terminate', 'tls': {'certificates': ['e']},"
      " 'routes': [{'upstream': 'u'}]}}, 'listeners': []}",
      "upstreams.u: upstream of terminating site \"s\" needs \"tls\" (re-encrypt) or \"plaintext\"" },
    /* listeners */
    { "{'sites': {}, 'listeners': [{'sites': []}]}",
      "listeners[0].listen: required key is missing" },
    { "{'sites': {}, 'listeners': [{'listen': ['1.2.3:4'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen[0]: not an address such as" },
    { "{'sites': {}, 'listeners': [{'listen': ['[::1:443'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen[0]: not an address" },
    { "{'sites': {}, 'listeners': [{'listen': ['localhost:443'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen[0]: not an address" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:70000'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen[0]: not an address" },
    { "{'sites': {}, 'listeners': [{'listen': '127.0.0.1:443', 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen: expected an array, got a string" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:443']}]}",
      "listeners[0]: a listener needs \"sites\" (or \"http\": {\"redirect_to_https\": true})" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': []}]}",
      "listeners[0].sites: must not be empty" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['nope']}]}",
      "listeners[0].sites[0]: no site named \"nope\"" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['x'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].sites: a listener with \"http\": {\"redirect_to_https\": true} serves no sites" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:443'], 'http': {'redirect_to_https': 'yes'}}]}",
      "listeners[0].http.redirect_to_https: expected true or false, got a string" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {"
      " 'a': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'},"
      " 'b': {'server_names': ['b.test'], 'mode': 'passthrough', 'upstream': 'u'}},"
      " 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['a'], 'default_site': 'b'}]}",
      "listeners[0].default_site: site \"b\" is not one of this listener's \"sites\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {"
      " 'a': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'}},"
      " 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['a'], 'default_site': 'zz'}]}",
      "listeners[0].default_site: no site named \"zz\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {"
      " 'a': {'server_names': ['a.test', '*.w.test'], 'mode': 'passthrough', 'upstream': 'u'},"
      " 'b': {'server_names': ['*.W.test'], 'mode': 'passthrough', 'upstream': 'u'}},"
      " 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['a', 'b']}]}",
      "listeners[0].sites[1]: server name \"*.w.test\" of site \"b\" is also a server name of site \"a\"" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {"
      " 'a': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'}},"
      " 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['a', 'a']}]}",
      "listeners[0].sites[1]: \"a\" is listed twice" },
    { "{'sites': {}, 'listeners': [{'listen': ['127.0.0.1:443'], 'http': {'redirect_to_https': true}},"
      " {'listen': ['127.0.0.1:443'], 'http': {'redirect_to_https': true}}]}",
      "listeners[1].listen[0]: 127.0.0.1:443 overlaps with 127.0.0.1:443 of listeners[0]" },
    { "{'sites': {}, 'listeners': [{'listen': ['0.0.0.0:443'], 'http': {'redirect_to_https': true}},"
      " {'listen': ['[::1]:443', '127.0.0.1:443'], 'http': {'redirect_to_https': true}}]}",
      "listeners[1].listen[1]: 127.0.0.1:443 overlaps with 0.0.0.0:443 of listeners[0]" },
    { "{'sites': {}, 'listeners': [{'listen': ['[::1]:443', '[::1]:443'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen[1]: [::1]:443 overlaps with listen[0]" },
    /* a listener that is not an object, then a named one (crashed:
     * strcmp on the first one's missing name) */
    { "{'sites': {}, 'listeners': [0, {'name': 'x', 'listen': [':1'], 'http': {'redirect_to_https': true}}]}",
      "test.json: listeners[0]: expected an object, got an integer" },
    /* ClientHello bounds on a plaintext redirect listener */
    { "{'sites': {}, 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}, 'client_hello_timeout_ms': 5}]}",
      "test.json: listeners[0].client_hello_timeout_ms: only for TLS listeners "
      "(a redirect_to_https listener reads no ClientHello)" },
    { "{'sites': {}, 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}, 'client_hello_max_bytes': 20000}]}",
      "test.json: listeners[0].client_hello_max_bytes: only for TLS listeners" },
    /* group alone would be ignored: the switch is user (and group) */
    { "{'runtime': {'group': 'root'}, 'sites': {}, 'listeners': []}",
      "test.json: runtime.group: only with \"user\": workers switch to a user" },
    /* the index named is the JSON one, past an invalid address */
    { "{'sites': {}, 'listeners': [{'listen': ['bad', '0.0.0.0:443', '127.0.0.1:443'], 'http': {'redirect_to_https': true}}]}",
      "listeners[0].listen[2]: 127.0.0.1:443 overlaps with listen[1]" },
    { "{'sites': {}, 'listeners': [{'name': 'x', 'listen': [':1'], 'http': {'redirect_to_https': true}},"
      " {'name': 'x', 'listen': [':2'], 'http': {'redirect_to_https': true}}]}",
      "listeners[1].name: listeners[0] has the same name \"x\"" },
    { "{'sites': {}, 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}, 'client_hello_max_bytes': 1000}]}",
      "listeners[0].client_hello_max_bytes: must be between 16384 and" },
    { "{'sites': {}, 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}, 'proxy_protocol': 'v2'}]}",
      "listeners[0].proxy_protocol: expected true or false, got a string" },
    { "{'sites': {}, 'listeners': [{'listen': [':1'], 'http': {'redirect_to_https': true}, 'backlog': 0}]}",
      "listeners[0].backlog: must be between 1 and 65535" },
    { "{'upstreams': {'u': {'servers': ['10.0.0.1:443']}}, 'sites': {"
      " 'a': {'server_names': ['a.test'], 'mode': 'passthrough', 'upstream': 'u'},"
      " 'b': {'server_names': ['A.test'], 'mode': 'passthrough', 'upstream': 'u'}},"
      " 'listeners': [{'listen': ['127.0.0.1:443'], 'sites': ['a', 'zz', 'b']}]}",
      "listeners[0].sites[2]: server name \"a.test\" of site \"b\"" },
    { "{'certificates': {'c': {'cert': 'badchain.pem', 'key': 'chain.key'}}, 'sites': {}, 'listeners': []}",
      "certificates.c.cert: bad certificate in the chain" },
    { "{'sites': {}, 'listeners': [5]}",
      "listeners[0]: expected an object, got an integer" },
    /* JSON syntax */
    { "{'sites': {}, 'sites': {}, 'listeners': []}",
      "test.json: line 1 column" },
    { "{'sites': {}, 'listeners': [", "test.json: line 1 column" },
    { "", "test.json: line 1 column" },
    { "{'sites': {}, 'listeners': []} x", "test.json: line 1 column" },
    { "{'a': 'x\\u0000y', 'sites': {}, 'listeners': []}", "test.json: line 1" },
};

/* tls.server_name may be an IPv4 or IPv6 literal (flagged: no SNI). */
START_TEST(test_server_name_ip)
{
    static const struct {
        const char *name;
        int         ip;
    } cases[] = {
        { "10.0.0.1", 1 }, { "::1", 1 }, { "2001:DB8::1", 1 },
        { "backend.internal", 0 }, { "10.0.0.1.example", 0 },
    };
    char       json[512];
    hm_conf_t *c;
    size_t     i;

    for (i = 0; i < hm_nelem(cases); i++) {
        snprintf(json, sizeof(json), "{'upstreams': {'u': {'servers': "
                 "['10.0.0.1:443'], 'tls': {'server_name': '%s'}}}, "
                 "'sites': {}, 'listeners': [{'listen': [':1'], 'http': "
                 "{'redirect_to_https': true}}]}", cases[i].name);
        c = load(json);
        ck_assert_msg(c != NULL, "%s: %s", cases[i].name, out_text);
        ck_assert_int_eq(hm_conf_upstream_find(c, "u")->tls.server_name_ip,
                         cases[i].ip);
        hm_conf_free(c);
    }
    load_fails_with("{'upstreams': {'u': {'servers': ['10.0.0.1:443'], "
                    "'tls': {'server_name': '[::1]'}}}, 'sites': {}, "
                    "'listeners': []}", "upstreams.u.tls.server_name: ");
}
END_TEST

START_TEST(test_bad)
{
    load_fails_with(bad[_i].json, bad[_i].want);
}
END_TEST

/* Every line of the output is "FILE: path: reason" and the count matches
 * the number of lines; several errors in one file are all reported. */
START_TEST(test_many_errors)
{
    hm_conf_t  *c;
    const char *p;

    c = load("{'admin': {}, 'runtime': {'workers': 0, 'wrokers': 1},"
             " 'upstreams': {'u': {'servers': ['x']}},"
             " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough',"
             "   'upstream': 'nope'}},"
             " 'listeners': [{'listen': ['bad'], 'sites': ['s', 't']}]}");
    ck_assert_ptr_null(c);
    ck_assert_int_eq(out_n, 7);
    ck_assert_int_eq(count_lines(out_text), 7);
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: admin.listen: required key is missing\n"));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: runtime.workers: must be"));
    ck_assert_ptr_nonnull(strstr(out_text,
        "test.json: runtime.wrokers: unknown key (did you mean \"workers\"?)\n"));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: upstreams.u.servers[0]: "));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: sites.s.upstream: no upstream named \"nope\"\n"));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: listeners[0].listen[0]: "));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: listeners[0].sites[1]: no site named \"t\"\n"));
    for (p = out_text; *p; p = strchr(p, '\n') + 1) {
        ck_assert_msg(strncmp(p, NAME ": ", strlen(NAME) + 2) == 0,
                      "bad line: %s", p);
    }
}
END_TEST

/* Parse errors name the line and column. */
START_TEST(test_parse_error_position)
{
    ck_assert_ptr_null(load("{\n  'sites': {},\n  'listeners': [,]\n}"));
    ck_assert_int_eq(out_n, 1);
    ck_assert_msg(strncmp(out_text, NAME ": line 3 column ", strlen(NAME) + 16)
                  == 0, "got: %s", out_text);
    ck_assert_ptr_null(load("{'sites': {},\n 'sites': {}, 'listeners': []}"));
    ck_assert_ptr_nonnull(strstr(out_text, "line 2"));
    ck_assert_ptr_nonnull(strstr(out_text, "duplicate"));
}
END_TEST

/* Control characters in names and values are escaped in messages. */
START_TEST(test_escaped_output)
{
    ck_assert_ptr_null(load("{'sites': {}, 'listeners': [{'listen': [':1'],"
                            " 'http': {'redirect_to_https': true}}], 'a\\nb': 1}"));
    ck_assert_msg(count_lines(out_text) == 1, "got: %s", out_text);
    ck_assert_ptr_nonnull(strstr(out_text, "[\"a\\x0ab\"]: unknown key"));
}
END_TEST

/* A key longer than the JSON path buffer still shows in the path, cut
 * and quoted, and the keys below it follow (no error at a wrong path such
 * as "sites.bogus" or "(top level)"). */
#define X40 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define X80 X40 X40
START_TEST(test_long_key_path)
{
    char json[4096];

    snprintf(json, sizeof(json), "{'sites': {'%s': {'server_names': "
             "['a.test'], 'mode': 'passthrough', 'upstream': 'u', "
             "'%s': 1}}, 'listeners': [], '%s': 1}",
             X80 X80 X80 X80 X80 X80 X80, X80 X80 X80 X80 X80 X80 X80,
             X80 X80 X80 X80 X80 X80 X80);
    ck_assert_ptr_null(load(json));
    ck_assert_msg(strstr(out_text, NAME ": sites[\"" X80 "...\"][\"" X80
                         "...\"]: unknown key\n") != NULL,
                  "got: %s", out_text);
    ck_assert_msg(strstr(out_text, NAME ": [\"" X80 "...\"]: unknown key\n")
                  != NULL, "got: %s", out_text);
    ck_assert_msg(strstr(out_text, NAME ": sites[\"" X80 "...\"]: names are "
                         "1 to 100") != NULL, "got: %s", out_text);
}
END_TEST

/* More than 16 certificates on a site is reported by the loader with the
 * other errors of the file (it was only found by the TLS context build,
 * once everything else was valid). */
START_TEST(test_too_many_certificates)
{
    char   json[4096];
    size_t len;
    int    i;

    len = (size_t) snprintf(json, sizeof(json), "{'bogus': 1, "
                            "'certificates': {");
    for (i = 0; i < 17; i++) {
        len += (size_t) snprintf(json + len, sizeof(json) - len,
                                 "%s'c%d': {'cert': 'ecdsa.pem', "
                                 "'key': 'ecdsa.key'}", i ? ", " : "", i);
    }
    len += (size_t) snprintf(json + len, sizeof(json) - len,
                             "}, 'sites': {'s': {'server_names': ['a.test'], "
                             "'mode': 'terminate', 'routes': [{'status': 204}], "
                             "'tls': {'certificates': [");
    for (i = 0; i < 17; i++) {
        len += (size_t) snprintf(json + len, sizeof(json) - len, "%s'c%d'",
                                 i ? ", " : "", i);
    }
    snprintf(json + len, sizeof(json) - len, "]}}}, 'listeners': "
             "[{'listen': ['127.0.0.1:1'], 'sites': ['s']}]}");
    ck_assert_ptr_null(load(json));
    ck_assert_int_eq(out_n, 2);
    ck_assert_msg(strstr(out_text, NAME ": sites.s.tls.certificates: at most "
                         "16 (got 17)\n") != NULL, "got: %s", out_text);
    ck_assert_msg(strstr(out_text, NAME ": bogus: unknown key\n") != NULL,
                  "got: %s", out_text);
}
END_TEST

/* Files: hm_conf_load() from disk, a missing file, relative paths. */
START_TEST(test_load_file)
{
    char       *buf = NULL;
    size_t      len;
    FILE       *out;
    hm_conf_t  *c;
    int         n;
    char        path[] = DATA "/tmp-XXXXXX.json";
    int         fd;
    const char *json =
        "{\"certificates\": {\"e\": {\"cert\": \"ecdsa.pem\", \"key\": \"ecdsa.key\"}},"
        " \"sites\": {}, \"listeners\": [{\"listen\": [\":1\"],"
        " \"http\": {\"redirect_to_https\": true}}]}";

    fd = mkstemps(path, 5);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, json, strlen(json)), (int) strlen(json));
    close(fd);

    out = open_memstream(&buf, &len);
    c = hm_conf_load(path, out, &n);
    fclose(out);
    unlink(path);
    ck_assert_msg(c != NULL, "errors: %s", buf);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_nonnull(strstr(c->certs[0].cert_path, "/" DATA "/ecdsa.pem"));
    ck_assert_int_eq(c->certs[0].cert_path[0], '/');
    hm_conf_free(c);
    free(buf);

    buf = NULL;
    out = open_memstream(&buf, &len);
    c = hm_conf_load(DATA "/no-such-file.json", out, &n);
    fclose(out);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(n, 1);
    ck_assert_ptr_nonnull(strstr(buf, DATA "/no-such-file.json: (top level): cannot read: "));
    free(buf);

    /* a NULL error stream is allowed: only the count comes back */
    c = hm_conf_load(DATA "/no-such-file.json", NULL, &n);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(n, 1);
}
END_TEST

/* Host names in upstream servers are resolved at load (all addresses). */
START_TEST(test_resolve_localhost)
{
    char       *buf = NULL;
    size_t      len, i;
    FILE       *out;
    hm_conf_t  *c;
    int         n, found = 0;
    const char *json =
        "{\"upstreams\": {\"u\": {\"servers\": [\"localhost:8080\"]}},"
        " \"sites\": {\"s\": {\"server_names\": [\"a.test\"],"
        " \"mode\": \"passthrough\", \"upstream\": \"u\"}},"
        " \"listeners\": [{\"listen\": [\":1\"], \"sites\": [\"s\"]}]}";

    out = open_memstream(&buf, &len);
    c = hm_conf_load_buffer(json, strlen(json), NAME, 0, out, &n);
    fclose(out);
    ck_assert_msg(c != NULL, "errors: %s", buf);
    ck_assert_uint_ge(c->upstreams[0].nservers, 1);
    for (i = 0; i < c->upstreams[0].nservers; i++) {
        if (strcmp(c->upstreams[0].servers[i].addr.text, "127.0.0.1:8080") == 0
            || strcmp(c->upstreams[0].servers[i].addr.text, "[::1]:8080") == 0)
        {
            found = 1;
        }
    }
    ck_assert_int_eq(found, 1);
    hm_conf_free(c);
    free(buf);
}
END_TEST

/* A chain file: the leaf, then its intermediate, kept for the TLS layer. */
START_TEST(test_cert_chain)
{
    hm_conf_t     *c;
    hm_tls_cert_t *tc;

    c = load("{'certificates': {'c': {'cert': 'chain.pem', 'key': 'chain.key'},"
             " 'r': {'cert': 'rsa.pem', 'key': 'rsa.key', 'ocsp': 'ocsp.der'}},"
             " 'sites': {}, 'listeners': [{'listen': [':1'],"
             " 'http': {'redirect_to_https': true}}]}");
    ck_assert_msg(c != NULL, "errors:\n%s", out_text);
    tc = c->certs[0].tls;
    ck_assert_ptr_nonnull(tc);
    ck_assert_ptr_nonnull(tc->leaf);
    ck_assert_ptr_nonnull(tc->key);
    ck_assert_int_eq(tc->key_type, EVP_PKEY_EC);
    ck_assert_int_eq((int) sk_X509_num(tc->chain), 1);
    ck_assert_ptr_null(tc->ocsp);
    tc = c->certs[1].tls;
    ck_assert_int_eq(tc->key_type, EVP_PKEY_RSA);
    ck_assert_int_eq((int) sk_X509_num(tc->chain), 0);
    ck_assert_ptr_nonnull(tc->ocsp);
    ck_assert_uint_eq(tc->ocsp_len, 17);
    hm_conf_free(c);
}
END_TEST

/* hm_addr_parse() and hm_addr_format(). */
START_TEST(test_addr)
{
    hm_addr_t a;
    char      buf[64];

    ck_assert_int_eq(hm_addr_parse("1.2.3.4:443", &a), HM_OK);
    ck_assert_str_eq(a.text, "1.2.3.4:443");
    ck_assert_int_eq(a.len, sizeof(struct sockaddr_in));
    ck_assert_int_eq(ntohs(((struct sockaddr_in *) &a.sa)->sin_port), 443);
    ck_assert_int_eq(hm_addr_parse("[::1]:8443", &a), HM_OK);
    ck_assert_str_eq(a.text, "[::1]:8443");
    ck_assert_int_eq(a.len, sizeof(struct sockaddr_in6));
    ck_assert_int_eq(hm_addr_parse("[::]:1", &a), HM_OK);
    ck_assert_str_eq(a.text, "[::]:1");
    ck_assert_int_eq(hm_addr_parse("*:80", &a), HM_OK);
    ck_assert_str_eq(a.text, "0.0.0.0:80");
    ck_assert_int_eq(hm_addr_parse(":65535", &a), HM_OK);
    ck_assert_str_eq(a.text, "0.0.0.0:65535");
    ck_assert_int_eq(hm_addr_parse("[2001:db8::1]:443", &a), HM_OK);
    ck_assert_str_eq(a.text, "[2001:db8::1]:443");

    ck_assert_int_eq(hm_addr_parse(NULL, &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4:", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4:0", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4:65536", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4:99999999999", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4:+1", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3.4:44x", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("1.2.3:4", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("256.1.1.1:4", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("::1:443", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("[::1]", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("[::1]443", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("[]:443", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("[1.2.3.4]:443", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("localhost:443", &a), HM_ERROR);
    ck_assert_int_eq(hm_addr_parse("[::1]:443 ", &a), HM_ERROR);

    ck_assert_int_eq(hm_addr_parse("10.0.0.1:5", &a), HM_OK);
    hm_addr_format((struct sockaddr *) &a.sa, buf, sizeof(buf));
    ck_assert_str_eq(buf, "10.0.0.1:5");
    hm_addr_format((struct sockaddr *) &a.sa, buf, 5);
    ck_assert_str_eq(buf, "10.0");
}
END_TEST

/* HTTP settings on the upstream of a passthrough site have no effect:
 * a warning naming the path each, and the file still loads. */
START_TEST(conf_passthrough_upstream_http_keys_warn)
{
    hm_conf_t *conf;

    conf = load("{'upstreams': {'be': {'servers': ['127.0.0.1:9000'],"
                " 'pool': {'idle_timeout_s': 5}, 'read_timeout_ms': 5,"
                " 'health_check': {'interval_s': 1, 'path': '/h'}}},"
                " 'listeners': [{'listen': ['127.0.0.1:8443'], 'sites': ['s']}],"
                " 'sites': {'s': {'server_names': ['a.test'], 'mode': 'passthrough',"
                " 'upstream': 'be'}}}");
    ck_assert_msg(conf != NULL, "refused: %s", out_text);
    ck_assert_int_eq(out_n, 0);
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: upstreams.be.pool: warning: "
                                 "ignored: only for upstreams of terminating sites "
                                 "(passthrough site \"s\" relays bytes)"));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: upstreams.be.read_timeout_ms: "
                                 "warning: ignored"));
    ck_assert_ptr_nonnull(strstr(out_text, "test.json: upstreams.be.health_check.path: "
                                 "warning: ignored: the servers of passthrough site "
                                 "\"s\" are checked by a TCP connect"));
    hm_conf_free(conf);
}
END_TEST

static Suite *
conf_suite(void)
{
    Suite *s = suite_create("hm_conf");
    TCase *tc = tcase_create("load");

    tcase_add_test(tc, test_full);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_empty_policies);
    tcase_add_test(tc, test_term_defaults);
    tcase_add_test(tc, test_term_site_upstream);
    tcase_add_test(tc, test_workers_auto);
    tcase_add_test(tc, test_admin);
    tcase_add_loop_test(tc, test_bad, 0, (int) hm_nelem(bad));
    tcase_add_test(tc, test_server_name_ip);
    tcase_add_test(tc, test_many_errors);
    tcase_add_test(tc, test_parse_error_position);
    tcase_add_test(tc, test_escaped_output);
    tcase_add_test(tc, test_long_key_path);
    tcase_add_test(tc, test_too_many_certificates);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_resolve_localhost);
    tcase_add_test(tc, test_cert_chain);
    tcase_add_test(tc, test_addr);
    tcase_add_test(tc, conf_passthrough_upstream_http_keys_warn);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(conf_suite)

/*
 * check_hm_tls.c: the TLS layer end to end inside one loop, over real
 * loopback TCP: a site context (hm_tls_site_init) serves a server stream,
 * an upstream context (hm_tls_upstream_init) drives a client stream.
 * Certificates are generated here (ECDSA P-256 and RSA-2048, self-signed)
 * and hung on hm_conf_cert_t as hm_tls_cert_load() does.  Covers data both
 * ways, ALPN, version, ECDSA/RSA choice, session resumption through
 * hm_stream_tls_session(), SPKI pins (match and mismatch), CA
 * verification with the host name, and the ticket key file format.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_stream.h"
#include "hm_tls.h"
#include "hm_tls_int.h"
#include "hm_check.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/ec_key.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define DATA_LEN (1024 * 1024 + 3)

static hm_tls_cert_t *
make_cert(int rsa, const char *cn)
{
    hm_tls_cert_t *tc = calloc(1, sizeof(*tc));
    EVP_PKEY      *pkey = EVP_PKEY_new();
    X509          *x = X509_new();
    X509_NAME     *name;
    GENERAL_NAMES *gens;
    GENERAL_NAME  *gen;
    ASN1_IA5STRING *ia5;

    if (rsa) {
        RSA    *r = RSA_new();
        BIGNUM *e = BN_new();

        BN_set_word(e, RSA_F4);
        ck_assert(RSA_generate_key_ex(r, 2048, e, NULL));
        EVP_PKEY_assign_RSA(pkey, r);
        BN_free(e);
    } else {
        EC_KEY *k = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);

        ck_assert(EC_KEY_generate_key(k));
        EVP_PKEY_assign_EC_KEY(pkey, k);
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), rsa ? 2 : 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const uint8_t *) cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, pkey);
    gens = sk_GENERAL_NAME_new_null();
    gen = GENERAL_NAME_new();
    ia5 = ASN1_IA5STRING_new();
    ASN1_STRING_set(ia5, cn, -1);
    GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
    sk_GENERAL_NAME_push(gens, gen);
    X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0);
    GENERAL_NAMES_free(gens);
    ck_assert(X509_sign(x, pkey, EVP_sha256()));
    tc->leaf = x;
    tc->key = pkey;
    tc->key_type = rsa ? EVP_PKEY_RSA : EVP_PKEY_EC;
    return tc;
}

static void
spki_pin(X509 *x, char *out)
{
    uint8_t *der = NULL, md[32];
    int      len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);

    SHA256(der, len, md);
    OPENSSL_free(der);
    strcpy(out, "sha256/");
    EVP_EncodeBlock((uint8_t *) out + 7, md, 32);
}

typedef struct {
    uv_loop_t          loop;
    uv_poll_t          lpoll;
    int                lfd;
    struct sockaddr_in sin;
    hm_conf_t          conf;
    hm_conf_site_t     site;
    hm_conf_cert_t     certs[2];
    hm_conf_cert_t    *certp[2];
    hm_conf_upstream_t up;
    char              *pins[1];
    char               pin[64];
    hm_tls_cert_t     *ec, *rsa;

    hm_stream_t        srv, cli;
    int                status;
    int                srv_status;
    size_t             srv_got, cli_got;
    int                closed;
    uint8_t           *data;
    void              *session;
    int                resumed;
    char               alpn[32];
    char               version[16];
    int                srv_key_type;
    char               err[128];
} tctx_t;

static tctx_t T;

static void
setup(int with_rsa)
{
    socklen_t len = sizeof(T.sin);
    size_t    i;

    memset(&T, 0, sizeof(T));
    T.data = malloc(DATA_LEN);
    for (i = 0; i < DATA_LEN; i++) {
        T.data[i] = (uint8_t) (i * 13 + 5);
    }
    uv_loop_init(&T.loop);
    T.lfd = socket(AF_INET, SOCK_STREAM, 0);
    T.sin.sin_family = AF_INET;
    T.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(T.lfd, (struct sockaddr *) &T.sin, len), 0);
    ck_assert_int_eq(listen(T.lfd, 8), 0);
    getsockname(T.lfd, (struct sockaddr *) &T.sin, &len);

    T.conf.pool = hm_pool_new(4096);
    T.ec = make_cert(0, "a.test");
    T.certs[0].name = "a-ecdsa";
    T.certs[0].tls = T.ec;
    T.certp[0] = &T.certs[0];
    T.site.tls.ncertificates = 1;
    if (with_rsa) {
        T.rsa = make_cert(1, "a.test");
        T.certs[1].name = "a-rsa";
        T.certs[1].tls = T.rsa;
        T.certp[1] = &T.certs[1];
        T.site.tls.ncertificates = 2;
    }
    T.site.name = "a";
    T.site.mode = HM_SITE_TERMINATE;
    T.site.tls.certificates = T.certp;
    T.site.tls.min_version = HM_TLS1_2;
    T.site.tls.max_version = HM_TLS1_3;
    T.site.tls.handshake_timeout_ms = 2000;

    T.up.name = "up";
    T.up.tls.present = 1;
    T.up.tls.server_name = "a.test";
    T.up.tls.verify = 0;
    T.up.tls.accepted_risk = "test";
    spki_pin(T.ec->leaf, T.pin);
    T.pins[0] = T.pin;
    T.up.tls.pins = T.pins;
    T.up.tls.npins = 1;
}

static void
cert_free(hm_tls_cert_t *tc)
{
    if (tc != NULL) {
        X509_free(tc->leaf);
        EVP_PKEY_free(tc->key);
        free(tc);
    }
}

/* Frees everything setup() and the runs made (leak-checked by ASan). */
static void
teardown(void)
{
    hm_stream_tls_session_free(T.session);
    T.session = NULL;
    hm_tls_site_cleanup(&T.site);
    hm_pool_free(T.conf.pool);
    cert_free(T.ec);
    cert_free(T.rsa);
    free(T.data);
    close(T.lfd);
    ck_assert_int_eq(uv_loop_close(&T.loop), 0);
}

static void
on_closed(hm_stream_t *s)
{
    T.closed++;
}

static void
srv_read(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    uv_buf_t b;

    if (nread < 0) {
        hm_stream_shutdown(s);
        return;
    }
    /* Echo. */
    b = uv_buf_init((char *) data, nread);
    ck_assert_int_eq(hm_stream_write(s, &b, 1), 0);
    T.srv_got += nread;
}

static void
srv_handshake(hm_stream_t *s, int status)
{
    T.srv_status = status;
    if (status != 0) {
        hm_stream_close(s, on_closed);
        return;
    }
    hm_stream_read_start(s, srv_read);
}

static void
on_accept(uv_poll_t *p, int status, int events)
{
    int fd = accept4(T.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    ck_assert_int_ge(fd, 0);
    memset(&T.srv, 0, sizeof(T.srv));
    ck_assert_int_eq(hm_stream_open(&T.srv, &T.loop, fd), 0);
    ck_assert_int_eq(hm_stream_tls_accept(&T.srv, T.site.tls_ctx, NULL, 0,
                                          2000, srv_handshake), 0);
    uv_poll_stop(p);
    uv_close((uv_handle_t *) p, NULL);
}

static void
cli_read(hm_stream_t *s, ssize_t nread, const uint8_t *data)
{
    if (nread < 0) {
        ck_assert_int_eq(nread, UV_EOF);
        hm_stream_close(&T.cli, on_closed);
        hm_stream_close(&T.srv, on_closed);
        return;
    }
    ck_assert(memcmp(data, T.data + T.cli_got, nread) == 0);
    T.cli_got += nread;
    if (T.cli_got == DATA_LEN) {
        hm_stream_shutdown(s);
    }
}

static void
cli_connected(hm_stream_t *s, int status)
{
    uv_buf_t    b[4];
    const char *p;

    T.status = status;
    if (status != 0) {
        snprintf(T.err, sizeof(T.err), "%s", hm_stream_error(s));
        hm_stream_close(s, on_closed);
        return;
    }
    p = hm_stream_alpn(s);
    snprintf(T.alpn, sizeof(T.alpn), "%s", p ? p : "");
    snprintf(T.version, sizeof(T.version), "%s", hm_stream_tls_version(s));
    T.resumed = hm_stream_tls_resumed(s);
    /* Taken right after the handshake, as the upstream pool does: the
     * TLS 1.3 ticket arrives later and fills the handle. */
    if (T.session == NULL) {
        T.session = hm_stream_tls_session(s);
    }
    {
        X509     *peer = SSL_get_peer_certificate(s->tls);
        EVP_PKEY *pk = X509_get_pubkey(peer);

        T.srv_key_type = EVP_PKEY_id(pk);
        EVP_PKEY_free(pk);
        X509_free(peer);
    }
    hm_stream_read_start(s, cli_read);
    /* Small and large buffers mixed: gathered into full records. */
    b[0] = uv_buf_init((char *) T.data, 100);
    b[1] = uv_buf_init((char *) T.data + 100, 7);
    b[2] = uv_buf_init((char *) T.data + 107, 20000);
    b[3] = uv_buf_init((char *) T.data + 20107, DATA_LEN - 20107);
    ck_assert_int_eq(hm_stream_write(s, b, 4), 0);
}

static void
run_once(void *session)
{
    T.status = -1;
    T.srv_got = T.cli_got = 0;
    T.closed = 0;
    uv_poll_init(&T.loop, &T.lpoll, T.lfd);
    uv_poll_start(&T.lpoll, UV_READABLE, on_accept);
    memset(&T.cli, 0, sizeof(T.cli));
    ck_assert_int_eq(hm_stream_connect(&T.cli, &T.loop,
                                       (struct sockaddr *) &T.sin, 3000,
                                       &T.up.tls, session, cli_connected), 0);
    uv_run(&T.loop, UV_RUN_DEFAULT);
}

static void
init_contexts(void)
{
    char err[256] = "";

    T.conf.upstreams = &T.up;
    T.conf.nupstreams = 1;
    ck_assert_msg(hm_tls_site_init(&T.conf, &T.site, err, sizeof(err))
                  == HM_OK, "site init: %s", err);
    /* (modules/upstream_tls does this for a cycle) */
    ck_assert_msg(hm_tls_upstream_init(&T.conf, &T.up, err, sizeof(err))
                  == HM_OK, "upstream init: %s", err);
    ck_assert_ptr_nonnull(T.up.tls.tls);
}

START_TEST(test_roundtrip_and_resume)
{
    void *first;

    setup(0);
    init_contexts();
    run_once(NULL);
    ck_assert_int_eq(T.status, 0);
    ck_assert_int_eq(T.srv_status, 0);
    ck_assert_uint_eq(T.cli_got, DATA_LEN);
    ck_assert_uint_eq(T.srv_got, DATA_LEN);
    ck_assert_str_eq(T.alpn, "http/1.1");
    ck_assert_str_eq(T.version, "TLSv1.3");
    ck_assert_int_eq(T.resumed, 0);
    ck_assert_int_eq(T.closed, 2);
    ck_assert_ptr_nonnull(T.session);

    first = T.session;
    T.session = NULL;
    run_once(first);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.cli_got, DATA_LEN);
    ck_assert_int_eq(T.resumed, 1);
    hm_stream_tls_session_free(first);
    teardown();
}
END_TEST

START_TEST(test_pin_mismatch)
{
    setup(0);
    strcpy(T.pin, "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    init_contexts();
    run_once(NULL);
    ck_assert_int_eq(T.status, HM_STREAM_ETLS);
    ck_assert_msg(strstr(T.err, "pin mismatch") != NULL, "err: %s", T.err);
    teardown();
}
END_TEST

START_TEST(test_verify_ca_and_name)
{
    FILE *f;
    char  path[] = "/tmp/hm_tls_ca_XXXXXX";
    int   fd;

    setup(0);
    fd = mkstemp(path);
    f = fdopen(fd, "w");
    PEM_write_X509(f, T.ec->leaf);  /* self-signed: it is its own CA */
    fclose(f);
    T.up.tls.verify = 1;
    T.up.tls.npins = 0;
    T.up.tls.ca_path = path;
    init_contexts();
    run_once(NULL);
    ck_assert_msg(T.status == 0, "err: %s", T.err);

    /* Wrong name: refused with a reason. */
    hm_pool_free(T.conf.pool);
    T.conf.pool = hm_pool_new(4096);
    T.up.tls.tls = NULL;
    T.up.tls.server_name = "b.test";
    hm_tls_site_cleanup(&T.site);
    init_contexts();
    run_once(NULL);
    ck_assert_int_eq(T.status, HM_STREAM_ETLS);
    ck_assert_msg(strstr(T.err, "name mismatch") != NULL, "err: %s", T.err);

    /* Unknown CA. */
    hm_pool_free(T.conf.pool);
    T.conf.pool = hm_pool_new(4096);
    T.up.tls.tls = NULL;
    T.up.tls.server_name = "a.test";
    T.up.tls.ca_path = NULL;        /* system roots do not know it */
    hm_tls_site_cleanup(&T.site);
    init_contexts();
    run_once(NULL);
    ck_assert_int_eq(T.status, HM_STREAM_ETLS);
    ck_assert_msg(strstr(T.err, "unknown CA") != NULL, "err: %s", T.err);
    unlink(path);
    teardown();
}
END_TEST

START_TEST(test_ecdsa_preferred_rsa_fallback)
{
    setup(1);
    T.up.tls.npins = 0;             /* verify off, no pins */
    init_contexts();
    run_once(NULL);
    ck_assert_int_eq(T.status, 0);
    ck_assert_int_eq(T.srv_key_type, EVP_PKEY_EC);

    /* A client that only signs with RSA-PSS gets the RSA chain. */
    ck_assert(SSL_CTX_set1_sigalgs_list(T.up.tls.tls,
                                        "rsa_pss_rsae_sha256"));
    run_once(NULL);
    ck_assert_int_eq(T.status, 0);
    ck_assert_int_eq(T.srv_key_type, EVP_PKEY_RSA);
    teardown();
}
END_TEST

START_TEST(test_ticket_key_file)
{
    char     path[] = "/tmp/hm_tls_tk_XXXXXX", err[256] = "", line[200];
    uint8_t  raw[80];
    FILE    *f;
    int      fd;
    size_t   i;

    setup(0);
    for (i = 0; i < sizeof(raw); i++) {
        raw[i] = (uint8_t) i;
    }
    fd = mkstemp(path);
    f = fdopen(fd, "w");
    EVP_EncodeBlock((uint8_t *) line, raw, 80);
    fprintf(f, "# current key\n%s\n", line);
    EVP_EncodeBlock((uint8_t *) line, raw, 48);
    fprintf(f, "%s\n", line);
    fclose(f);
    T.conf.runtime.tls_session_ticket_keys = path;
    init_contexts();
    run_once(NULL);
    ck_assert_int_eq(T.status, 0);
    ck_assert_ptr_nonnull(T.session);

    /* A malformed file is refused with the line number. */
    f = fopen(path, "w");
    fprintf(f, "not base64 !!\n");
    fclose(f);
    hm_pool_free(T.conf.pool);
    T.conf.pool = hm_pool_new(4096);
    T.up.tls.tls = NULL;
    hm_tls_site_cleanup(&T.site);
    ck_assert_int_eq(hm_tls_site_init(&T.conf, &T.site, err, sizeof(err)),
                     HM_ERROR);
    ck_assert_msg(strstr(err, "line 1") != NULL, "err: %s", err);

    /* A file with comments only has no key (it said "line 1: expected
     * base64..."); 17 keys are one too many, said so. */
    f = fopen(path, "w");
    fprintf(f, "# no key yet\n\n");
    fclose(f);
    err[0] = '\0';
    ck_assert_int_eq(hm_tls_site_init(&T.conf, &T.site, err, sizeof(err)),
                     HM_ERROR);
    ck_assert_msg(strstr(err, "has no key") != NULL, "err: %s", err);
    f = fopen(path, "w");
    EVP_EncodeBlock((uint8_t *) line, raw, 80);
    for (i = 0; i < 17; i++) {
        fprintf(f, "%s\n", line);
    }
    fclose(f);
    err[0] = '\0';
    ck_assert_int_eq(hm_tls_site_init(&T.conf, &T.site, err, sizeof(err)),
                     HM_ERROR);
    ck_assert_msg(strstr(err, "line 17: more than 16 keys") != NULL, "err: %s",
                  err);
    unlink(path);
    teardown();
}
END_TEST

/* hm_tls_ciphers_check names the element it does not know. */
START_TEST(test_ciphers_check)
{
    char err[256];

    ck_assert_int_eq(hm_tls_ciphers_check("ECDHE-ECDSA-AES128-GCM-SHA256:"
                                          "ECDHE-RSA-AES128-GCM-SHA256",
                                          err, sizeof(err)), HM_OK);
    ck_assert_int_eq(hm_tls_ciphers_check("ECDHE-RSA-AES128-GCM-SHA256:"
                                          "FOO-BAR", err, sizeof(err)),
                     HM_ERROR);
    ck_assert_str_eq(err, "invalid cipher list: unknown cipher \"FOO-BAR\"");
    ck_assert_int_eq(hm_tls_ciphers_check("HIGH:!aNULL", err, sizeof(err)),
                     HM_ERROR);
    ck_assert_str_eq(err, "invalid cipher list: unknown cipher \"aNULL\"");
    ck_assert_int_eq(hm_tls_ciphers_check("[AES128-SHA|BAZ]", err,
                                          sizeof(err)), HM_ERROR);
    ck_assert_str_eq(err, "invalid cipher list: unknown cipher \"BAZ\"");
}
END_TEST

/* A minimal basic OCSP response (RFC 6960) with one single response for
 * serial 42: status, the id-pkix-ocsp-basic wrapper, responderID byKey,
 * producedAt, the CertID (hash fields left empty: only the serial is
 * compared), certStatus good, thisUpdate, then an empty signature. */
static const uint8_t ocsp_42[] = {
    0x30, 0x54, 0x0a, 0x01, 0x00,
    0xa0, 0x4f, 0x30, 0x4d,
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01,
    0x04, 0x40, 0x30, 0x3e,
    0x30, 0x37,
    0xa2, 0x02, 0x04, 0x00,
    0x18, 0x0f, '2', '0', '2', '6', '0', '1', '0', '1', '0', '0', '0', '0',
    '0', '0', 'Z',
    0x30, 0x20, 0x30, 0x1e,
    0x30, 0x09, 0x30, 0x00, 0x04, 0x00, 0x04, 0x00, 0x02, 0x01, 0x2a,
    0x80, 0x00,
    0x18, 0x0f, '2', '0', '2', '6', '0', '1', '0', '1', '0', '0', '0', '0',
    '0', '0', 'Z',
    0x30, 0x00, 0x03, 0x01, 0x00
};

/* hm_tls_ocsp_match(): the serial that is there, one that is not, a
 * response whose status is not successful, and every truncation and
 * every single corrupted byte (no crash; ASan in check-asan). */
START_TEST(test_ocsp_match)
{
    static const uint8_t sn42[] = { 0x02, 0x01, 0x2a };
    static const uint8_t sn43[] = { 0x02, 0x01, 0x2b };
    uint8_t              buf[sizeof(ocsp_42)];
    char                 msg[256];
    size_t               i;

    ck_assert_int_eq(hm_tls_ocsp_match(ocsp_42, sizeof(ocsp_42), sn42,
                                       sizeof(sn42), msg, sizeof(msg)),
                     HM_OK);
    ck_assert_int_eq(hm_tls_ocsp_match(ocsp_42, sizeof(ocsp_42), sn43,
                                       sizeof(sn43), msg, sizeof(msg)),
                     HM_DECLINED);
    ck_assert_ptr_nonnull(strstr(msg, "is for another certificate"));

    memcpy(buf, ocsp_42, sizeof(buf));
    buf[4] = 0x03;                              /* tryLater */
    ck_assert_int_eq(hm_tls_ocsp_match(buf, sizeof(buf), sn42, sizeof(sn42),
                                       msg, sizeof(msg)), HM_DECLINED);
    ck_assert_ptr_nonnull(strstr(msg, "not a successful response "
                                      "(status 3)"));

    for (i = 0; i < sizeof(ocsp_42); i++) {
        ck_assert_int_eq(hm_tls_ocsp_match(ocsp_42, i, sn42, sizeof(sn42),
                                           msg, sizeof(msg)), HM_DECLINED);
        ck_assert_ptr_nonnull(strstr(msg, "well-formed"));
        memcpy(buf, ocsp_42, sizeof(buf));
        buf[i] ^= 0xff;
        (void) hm_tls_ocsp_match(buf, sizeof(buf), sn42, sizeof(sn42), msg,
                                 sizeof(msg));
    }
}
END_TEST

static Suite *
tls_suite(void)
{
    Suite *s = suite_create("hm_tls");
    TCase *tc = tcase_create("tls");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_roundtrip_and_resume);
    tcase_add_test(tc, test_pin_mismatch);
    tcase_add_test(tc, test_verify_ca_and_name);
    tcase_add_test(tc, test_ecdsa_preferred_rsa_fallback);
    tcase_add_test(tc, test_ticket_key_file);
    tcase_add_test(tc, test_ciphers_check);
    tcase_add_test(tc, test_ocsp_match);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(tls_suite)

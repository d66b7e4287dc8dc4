/*
 * fuzz_tls_server.c: libFuzzer driver for the server side of the TLS
 * layer (src/tls/hm_tls.c): a site context built by hm_tls_site_init()
 * with ECDSA and RSA certificates (so the select-certificate callback
 * parses every ClientHello's signature_algorithms, supported_versions and
 * cipher suites), ALPN (the select callback) and session tickets (the
 * ticket key callback decrypts whatever ticket the client presents), fed
 * hostile ClientHellos through the same custom-BIO stream engine the
 * proxy uses, minus the socket.
 *
 * data[0] chooses the shape: odd = the rest is raw record-layer bytes;
 * even = the rest becomes the parts of a ClientHello (cipher suites, then
 * the extensions block) wrapped in a correct record and handshake header,
 * so mutations reach the extension parsers instead of dying on lengths.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_tls.h"
#include "hm_tls_int.h"
#include "hm_stream_int.h"

#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/rsa.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hm_conf_t      conf;
static hm_conf_site_t site;
static hm_conf_cert_t certs[2];
static hm_conf_cert_t *certp[2];
static char          *alpn[2] = { "h2", "http/1.1" };

static hm_tls_cert_t *
make_cert(int rsa)
{
    hm_tls_cert_t *tc = calloc(1, sizeof(*tc));
    EVP_PKEY      *pkey = EVP_PKEY_new();
    X509          *x = X509_new();
    X509_NAME     *name;

    if (rsa) {
        RSA    *r = RSA_new();
        BIGNUM *e = BN_new();

        BN_set_word(e, RSA_F4);
        RSA_generate_key_ex(r, 2048, e, NULL);
        EVP_PKEY_assign_RSA(pkey, r);
        BN_free(e);
    } else {
        EC_KEY *k = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);

        EC_KEY_generate_key(k);
        EVP_PKEY_assign_EC_KEY(pkey, k);
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const uint8_t *) "fuzz.test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, pkey);
    X509_sign(x, pkey, EVP_sha256());
    tc->leaf = x;
    tc->key = pkey;
    tc->key_type = rsa ? EVP_PKEY_RSA : EVP_PKEY_EC;
    return tc;
}

static void
init_once(void)
{
    char err[256];

    if (site.tls_ctx != NULL) {
        return;
    }
    conf.pool = hm_pool_new(4096);
    certs[0].name = "ec";
    certs[0].tls = make_cert(0);
    certs[1].name = "rsa";
    certs[1].tls = make_cert(1);
    certp[0] = &certs[0];
    certp[1] = &certs[1];
    site.name = "fuzz";
    site.mode = HM_SITE_TERMINATE;
    site.tls.certificates = certp;
    site.tls.ncertificates = 2;
    site.tls.min_version = HM_TLS1_2;
    site.tls.max_version = HM_TLS1_3;
    site.tls.alpn = alpn;
    site.tls.nalpn = 2;
    HM_ASSERT(hm_tls_site_init(&conf, &site, err, sizeof(err)) == HM_OK);
}

/* Runs the server handshake engine over input, with a stream that has no
 * socket (hm__stream_out_append collects the replies). */
static void
serve(const uint8_t *in, size_t len)
{
    hm_stream_t       s;
    hm_stream_impl_t  impl;
    hm_sbuf_t        *b, *next;
    int               rc;

    memset(&s, 0, sizeof(s));
    memset(&impl, 0, sizeof(impl));
    s.impl = &impl;
    impl.s = &s;
    HM_ASSERT(hm__tls_server_new(&s, site.tls_ctx) == HM_OK);
    impl.in_ptr = in;
    impl.in_len = len;
    rc = hm__tls_handshake(&s);
    HM_ASSERT(rc == HM_OK || rc == HM_AGAIN || rc == HM_ERROR);
    if (rc == HM_ERROR) {
        HM_ASSERT(impl.err[0] != '\0');
    }
    HM_ASSERT(impl.in_len <= len);
    hm__tls_free(&s);
    for (b = impl.out_head; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CBB      cbb, rec, hs, body, suites, exts;
    uint8_t *out;
    size_t   outlen, nsuites;
    uint8_t  random[32] = { 0 };

    init_once();
    if (size < 1) {
        return 0;
    }
    if (data[0] & 1) {
        serve(data + 1, size - 1);
        return 0;
    }
    data++;
    size--;
    nsuites = size > 0 ? hm_min((size_t) data[0] * 2, size - 1) & ~1u : 0;
    if (!CBB_init(&cbb, 512)
        || !CBB_add_u8(&cbb, 22) || !CBB_add_u16(&cbb, 0x0301)
        || !CBB_add_u16_length_prefixed(&cbb, &rec)
        || !CBB_add_u8(&rec, 1)
        || !CBB_add_u24_length_prefixed(&rec, &hs)
        || !CBB_add_u16(&hs, 0x0303)
        || !CBB_add_bytes(&hs, random, sizeof(random))
        || !CBB_add_u8_length_prefixed(&hs, &body)
        || !CBB_add_u16_length_prefixed(&hs, &suites)
        || (nsuites > 0 && !CBB_add_bytes(&suites, data + 1, nsuites))
        || !CBB_add_u8(&hs, 1) || !CBB_add_u8(&hs, 0)
        || !CBB_add_u16_length_prefixed(&hs, &exts)
        || (size > 1 + nsuites
            && !CBB_add_bytes(&exts, data + 1 + nsuites, size - 1 - nsuites))
        || !CBB_finish(&cbb, &out, &outlen))
    {
        CBB_cleanup(&cbb);      /* too long for one record: skip */
        return 0;
    }
    serve(out, outlen);
    OPENSSL_free(out);
    return 0;
}

/*
 * Unit tests of src/tls/hm_tls_hello.c: real ClientHellos captured from
 * openssl s_client, curl, Python ssl and BoringSSL (t/unit/data/), and
 * constructed ones for every valid, truncated and malformed shape the
 * parser must tell apart.
 */
#include "hm_core.h"
#include "hm_tls_hello.h"
#include "hm_check.h"

#include "data/hm_hellos.h"

#define BIG (70 * 1024)
#define MAX_HELLO (64 * 1024)

typedef struct {
    uint8_t b[BIG];
    size_t  n;
} tb_t;

static void
put8(tb_t *t, unsigned v)
{
    ck_assert_uint_lt(t->n, sizeof(t->b));
    t->b[t->n++] = (uint8_t) v;
}

static void
put16(tb_t *t, unsigned v)
{
    put8(t, v >> 8);
    put8(t, v & 0xff);
}

static void
put24(tb_t *t, unsigned v)
{
    put8(t, v >> 16);
    put16(t, v & 0xffff);
}

static void
putn(tb_t *t, const void *p, size_t n)
{
    ck_assert_uint_le(t->n + n, sizeof(t->b));
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

/* extension helpers: append one whole extension to e */
static void
ext_raw(tb_t *e, unsigned type, const void *data, size_t n)
{
    put16(e, type);
    put16(e, (unsigned) n);
    putn(e, data, n);
}

static void
ext_sni(tb_t *e, const char *name, size_t n)
{
    put16(e, 0);
    put16(e, (unsigned) n + 5);
    put16(e, (unsigned) n + 3);
    put8(e, 0);
    put16(e, (unsigned) n);
    putn(e, name, n);
}

static void
ext_versions(tb_t *e, int tls13)
{
    put16(e, 43);
    if (tls13) {
        put16(e, 7);
        put8(e, 6);
        put16(e, 0x3a3a);       /* GREASE */
        put16(e, 0x0304);
        put16(e, 0x0303);
    } else {
        put16(e, 3);
        put8(e, 2);
        put16(e, 0x0303);
    }
}

static void
ext_sigalgs(tb_t *e, int ecdsa)
{
    put16(e, 13);
    put16(e, 6);
    put16(e, 4);
    put16(e, 0x0804);           /* rsa_pss_rsae_sha256 */
    put16(e, ecdsa ? 0x0503 : 0x0401);
}

/*
 * Builds a ClientHello handshake message (4-byte header + body) with the
 * given extensions block (exts == NULL: no extensions block at all).
 */
static void
build_msg(tb_t *m, const tb_t *exts)
{
    static const uint8_t random[32] = { 1, 2, 3 };
    size_t body;

    m->n = 0;
    put8(m, 1);
    put24(m, 0);                /* patched below */
    put16(m, 0x0303);
    putn(m, random, 32);
    put8(m, 32);
    putn(m, random, 32);        /* session id */
    put16(m, 4);
    put16(m, 0x1301);
    put16(m, 0xc02b);
    put8(m, 1);
    put8(m, 0);
    if (exts != NULL) {
        put16(m, (unsigned) exts->n);
        putn(m, exts->b, exts->n);
    }
    body = m->n - 4;
    m->b[1] = (uint8_t) (body >> 16);
    m->b[2] = (uint8_t) (body >> 8);
    m->b[3] = (uint8_t) body;
}

/* Wraps msg[0..n) into handshake records of at most rec bytes each. */
static void
wrap(tb_t *r, const uint8_t *msg, size_t n, size_t rec)
{
    size_t off, k;

    r->n = 0;
    for (off = 0; off < n; off += k) {
        k = hm_min(rec, n - off);
        put8(r, 22);
        put16(r, 0x0301);
        put16(r, (unsigned) k);
        putn(r, msg + off, k);
    }
}

/* The usual constructed hello: SNI name, TLS 1.3, ECDSA, in one record. */
static void
build_hello(tb_t *r, const char *name)
{
    static tb_t e, m;

    e.n = 0;
    if (name != NULL) {
        ext_sni(&e, name, strlen(name));
    }
    ext_versions(&e, 1);
    ext_sigalgs(&e, 1);
    build_msg(&m, &e);
    wrap(r, m.b, m.n, 16384);
}

static int
parse(const uint8_t *b, size_t n, hm_tls_hello_t *h)
{
    return hm_tls_hello_parse(b, n, MAX_HELLO, h);
}

static void
expect_error(const uint8_t *b, size_t n, const char *why)
{
    hm_tls_hello_t h;

    ck_assert_int_eq(parse(b, n, &h), HM_ERROR);
    ck_assert_ptr_nonnull(h.error);
    if (why != NULL) {
        ck_assert_str_eq(h.error, why);
    }
}

/* Every proper prefix of a valid input must ask for more. */
static void
expect_prefixes_again(const uint8_t *b, size_t n)
{
    hm_tls_hello_t h;
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        rc = parse(b, i, &h);
        if (rc != HM_AGAIN) {
            ck_abort_msg("prefix %zu of %zu: rc %d (%s)", i, n, rc,
                         h.error ? h.error : "-");
        }
    }
}


/* real clients */

static const struct {
    const char          *name;
    const unsigned char *data;
    size_t               len;
    const char          *sni;          /* NULL: no SNI */
    const char          *alpn;         /* NULL: no ALPN */
    int                  tls13;
    uint16_t             max_version;
} real[] = {
    { "openssl", openssl_s_client_bin, sizeof(openssl_s_client_bin), "x.test", NULL, 1, 0x0304 },
    { "openssl-tls12", openssl_tls12_alpn_bin, sizeof(openssl_tls12_alpn_bin), "mixed.case.test",
      "h2,http/1.1", 0, 0x0303 },
    { "openssl-nosni", openssl_nosni_bin, sizeof(openssl_nosni_bin), NULL, NULL, 1, 0x0304 },
    { "curl", curl_bin, sizeof(curl_bin), "x.test", "h2,http/1.1", 1, 0x0304 },
    { "python", python_ssl_bin, sizeof(python_ssl_bin), "py.example.com", "http/1.1", 1,
      0x0304 },
    { "boringssl", boringssl_grease_bin,
      sizeof(boringssl_grease_bin), "bssl.example.org",
      "h2,http/1.1", 1, 0x0304 },
};

static void
check_real_fields(int i, const hm_tls_hello_t *h)
{
    ck_assert_int_eq(h->has_sni, real[i].sni != NULL);
    if (real[i].sni) {
        ck_assert_str_eq(h->sni, real[i].sni);
        ck_assert_uint_eq(h->sni_len, strlen(real[i].sni));
    }
    ck_assert_int_eq(h->has_alpn, real[i].alpn != NULL);
    if (real[i].alpn) {
        ck_assert_str_eq(h->alpn, real[i].alpn);
    }
    ck_assert_int_eq(h->tls13, real[i].tls13);
    ck_assert_uint_eq(h->max_version, real[i].max_version);
    ck_assert_uint_eq(h->client_version, 0x0303);
    ck_assert_int_eq(h->has_sigalgs, 1);
    ck_assert_int_eq(h->ecdsa_ok, 1);
    ck_assert_ptr_null(h->error);
}

START_TEST(real_hellos_parse)
{
    hm_tls_hello_t h;

    /* captured as one record */
    ck_assert_uint_eq(real[_i].len - 5, (size_t) (real[_i].data[3] << 8
                                                  | real[_i].data[4]));
    ck_assert_int_eq(parse(real[_i].data, real[_i].len, &h), HM_OK);
    ck_assert_uint_eq(h.consumed, real[_i].len);
    ck_assert_uint_eq(h.record_version, 0x0301);
    check_real_fields(_i, &h);
}
END_TEST

START_TEST(real_hellos_every_prefix_again)
{
    expect_prefixes_again(real[_i].data, real[_i].len);
}
END_TEST

START_TEST(real_hellos_resplit_into_records)
{
    static const size_t sizes[] = { 1, 2, 3, 4, 5, 7, 64, 200, 511 };
    static tb_t r;
    hm_tls_hello_t h;
    size_t k, msglen;

    msglen = real[_i].len - 5;
    for (k = 0; k < hm_nelem(sizes); k++) {
        wrap(&r, real[_i].data + 5, msglen, sizes[k]);
        ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
        ck_assert_uint_eq(h.consumed, r.n);
        check_real_fields(_i, &h);
        if (sizes[k] >= 5) {
            expect_prefixes_again(r.b, r.n);
        }
    }
}
END_TEST

START_TEST(real_hello_followed_by_later_data)
{
    static tb_t r;
    hm_tls_hello_t h;

    r.n = 0;
    putn(&r, curl_bin, curl_bin_len);
    putn(&r, "\x14\x03\x03\x00\x01\x01", 6);    /* ChangeCipherSpec */
    putn(&r, "\x17\x03\x03\x00\x05hello", 10);  /* early data */
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_uint_eq(h.consumed, curl_bin_len);
    ck_assert_str_eq(h.sni, "x.test");
    /* a partial later record changes nothing either */
    ck_assert_int_eq(parse(r.b, curl_bin_len + 2, &h), HM_OK);
    ck_assert_uint_eq(h.consumed, curl_bin_len);
}
END_TEST


/* constructed: valid */

START_TEST(no_sni_and_no_extensions)
{
    static tb_t m, r;
    hm_tls_hello_t h;

    build_hello(&r, NULL);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_int_eq(h.has_sni, 0);
    ck_assert_str_eq(h.sni, "");
    ck_assert_int_eq(h.tls13, 1);

    /* an old hello without an extensions block at all */
    build_msg(&m, NULL);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_int_eq(h.has_sni, 0);
    ck_assert_int_eq(h.has_alpn, 0);
    ck_assert_int_eq(h.has_sigalgs, 0);
    ck_assert_int_eq(h.ecdsa_ok, 0);
    ck_assert_int_eq(h.tls13, 0);
    ck_assert_uint_eq(h.max_version, 0x0303);
    ck_assert_uint_eq(h.consumed, r.n);
}
END_TEST

START_TEST(sni_is_lower_cased)
{
    static tb_t r;
    hm_tls_hello_t h;

    build_hello(&r, "WWW.Example-1.COM");
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_int_eq(h.has_sni, 1);
    ck_assert_str_eq(h.sni, "www.example-1.com");
    ck_assert_uint_eq(h.sni_len, 17);
}
END_TEST

START_TEST(sni_ip_literal_like_and_underscore_pass)
{
    static tb_t r;
    hm_tls_hello_t h;

    build_hello(&r, "127.0.0.1");
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_str_eq(h.sni, "127.0.0.1");

    build_hello(&r, "_acme.x-y.test");
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_str_eq(h.sni, "_acme.x-y.test");

    build_hello(&r, "a");
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_str_eq(h.sni, "a");
}
END_TEST

START_TEST(sni_limits)
{
    static tb_t r;
    char name[300];
    hm_tls_hello_t h;
    int i;

    /* 63-byte label passes, 64 fails */
    memset(name, 'a', 63);
    strcpy(name + 63, ".test");
    build_hello(&r, name);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_uint_eq(h.sni_len, 68);

    memset(name, 'a', 64);
    strcpy(name + 64, ".test");
    build_hello(&r, name);
    expect_error(r.b, r.n, "SNI label longer than 63 bytes");

    /* 255 bytes pass: 4 labels of 63 + 3 dots = 255 */
    for (i = 0; i < 255; i++) {
        name[i] = (i % 64 == 63) ? '.' : 'b';
    }
    name[255] = '\0';
    build_hello(&r, name);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_uint_eq(h.sni_len, 255);
    ck_assert_str_eq(h.sni, name);

    /* 256 bytes fail */
    name[255] = 'c';
    name[256] = '\0';
    build_hello(&r, name);
    expect_error(r.b, r.n, "bad SNI length");
}
END_TEST

START_TEST(alpn_joined_and_bounded)
{
    static tb_t e, m, r;
    hm_tls_hello_t h;
    uint8_t list[400];
    size_t n, i;

    /* h2, a name with a comma (dropped), http/1.1 */
    n = 0;
    list[n++] = 0;
    list[n++] = 0;
    memcpy(list + n, "\x02h2\x03" "a,b" "\x08http/1.1", 16);
    n += 16;
    list[1] = (uint8_t) (n - 2);
    e.n = 0;
    ext_raw(&e, 16, list, n);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_int_eq(h.has_alpn, 1);
    ck_assert_str_eq(h.alpn, "h2,http/1.1");

    /* three 100-byte names: only two fit in 255 bytes */
    n = 2;
    for (i = 0; i < 3; i++) {
        list[n++] = 100;
        memset(list + n, 'p' + (int) i, 100);
        n += 100;
    }
    list[0] = (uint8_t) ((n - 2) >> 8);
    list[1] = (uint8_t) (n - 2);
    e.n = 0;
    ext_raw(&e, 16, list, n);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_uint_eq(strlen(h.alpn), 201);
    ck_assert_int_eq(h.alpn[0], 'p');
    ck_assert_int_eq(h.alpn[100], ',');
    ck_assert_int_eq(h.alpn[101], 'q');

    /* an empty protocol name is malformed */
    e.n = 0;
    ext_raw(&e, 16, "\x00\x04\x02h2\x00\x00", 6);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad ALPN protocol name");
}
END_TEST

START_TEST(versions_and_sigalgs)
{
    static tb_t e, m, r;
    hm_tls_hello_t h;

    e.n = 0;
    ext_versions(&e, 0);
    ext_sigalgs(&e, 0);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_int_eq(h.tls13, 0);
    ck_assert_uint_eq(h.max_version, 0x0303);
    ck_assert_int_eq(h.has_sigalgs, 1);
    ck_assert_int_eq(h.ecdsa_ok, 0);

    /* odd-length lists */
    e.n = 0;
    ext_raw(&e, 43, "\x03\x03\x04\x03", 4);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad supported_versions extension");

    e.n = 0;
    ext_raw(&e, 13, "\x00\x03\x04\x03\x05", 5);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad signature_algorithms extension");
}
END_TEST

START_TEST(split_into_records_every_size)
{
    static tb_t m, r, e;
    hm_tls_hello_t h;
    size_t k;

    e.n = 0;
    ext_sni(&e, "Split.Test", 10);
    ext_versions(&e, 1);
    build_msg(&m, &e);
    for (k = 1; k <= m.n; k++) {
        wrap(&r, m.b, m.n, k);
        ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
        ck_assert_str_eq(h.sni, "split.test");
        ck_assert_uint_eq(h.consumed, r.n);
    }
    wrap(&r, m.b, m.n, 3);
    expect_prefixes_again(r.b, r.n);
}
END_TEST

START_TEST(large_hello_with_padding_across_records)
{
    static tb_t e, m, r;
    static uint8_t pad[20000];
    hm_tls_hello_t h;

    e.n = 0;
    ext_sni(&e, "big.test", 8);
    ext_raw(&e, 21, pad, sizeof(pad));      /* padding */
    ext_versions(&e, 1);
    build_msg(&m, &e);
    ck_assert_uint_gt(m.n, 16384 + 1024);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_uint_eq(r.b[5 + 16384], 22);  /* really two records */
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_str_eq(h.sni, "big.test");
    ck_assert_int_eq(h.tls13, 1);
    ck_assert_uint_eq(h.consumed, r.n);
    expect_prefixes_again(r.b, r.n);

    /* the same hello with max_hello just below its length */
    ck_assert_int_eq(hm_tls_hello_parse(r.b, r.n, m.n - 5, &h), HM_ERROR);
    ck_assert_str_eq(h.error, "ClientHello too long");
    ck_assert_int_eq(hm_tls_hello_parse(r.b, r.n, m.n - 4, &h), HM_OK);
}
END_TEST

START_TEST(over_max_declared_length_refused_early)
{
    static const uint8_t hdr[] = { 22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x01 };
    hm_tls_hello_t h;

    /* 65537-byte hello declared: error as soon as the header is seen */
    ck_assert_int_eq(parse(hdr, 8, &h), HM_AGAIN);
    ck_assert_int_eq(parse(hdr, 9, &h), HM_ERROR);
    ck_assert_str_eq(h.error, "ClientHello too long");
    ck_assert_int_eq(hm_tls_hello_parse(hdr, 9, 16384, &h), HM_ERROR);
}
END_TEST


/* not TLS */

START_TEST(declined_not_tls)
{
    hm_tls_hello_t h;

    ck_assert_int_eq(parse((const uint8_t *) "", 0, &h), HM_AGAIN);

    ck_assert_int_eq(parse((const uint8_t *) "GET / HTTP/1.1\r\n", 16, &h),
                     HM_DECLINED);
    ck_assert_str_eq(h.error, "not TLS (looks like plain HTTP)");
    ck_assert_int_eq(parse((const uint8_t *) "G", 1, &h), HM_DECLINED);
    ck_assert_str_eq(h.error, "not TLS (looks like plain HTTP)");

    /* SSLv2-compatible ClientHello: 2-byte header with the high bit set */
    ck_assert_int_eq(parse((const uint8_t *) "\x80\x2e\x01\x03\x01", 5, &h),
                     HM_DECLINED);
    ck_assert_str_eq(h.error,
                     "not TLS (SSLv2-style ClientHello is not supported)");

    /* a TLS alert record first */
    ck_assert_int_eq(parse((const uint8_t *) "\x15\x03\x03\x00\x02\x02\x28",
                           7, &h), HM_DECLINED);
    ck_assert_str_eq(h.error, "not TLS (first record is not a handshake)");

    ck_assert_int_eq(parse((const uint8_t *) "\x00\x01", 2, &h), HM_DECLINED);
    ck_assert_ptr_nonnull(h.error);

    /* a PROXY protocol header on a listener without proxy_protocol: said
     * so (the pointer, which hm_preread.c compares) */
    ck_assert_int_eq(parse((const uint8_t *) "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"
                           "\r\n", 32, &h), HM_DECLINED);
    ck_assert_ptr_eq(h.error, hm_tls_hello_proxy_header);
    ck_assert_int_eq(parse((const uint8_t *) "\r\n\r\n\0\r\nQUIT\n\x21\x11"
                           "\x00\x0c", 16, &h), HM_DECLINED);
    ck_assert_ptr_eq(h.error, hm_tls_hello_proxy_header);
    ck_assert_int_eq(parse((const uint8_t *) "PROXZ ", 6, &h), HM_DECLINED);
    ck_assert_str_eq(h.error, "not TLS (looks like plain HTTP)");
    ck_assert_int_eq(parse((const uint8_t *) "\r\n\r\n\0\r\nQUIX\n", 12, &h),
                     HM_DECLINED);
    ck_assert_ptr_ne(h.error, hm_tls_hello_proxy_header);
}
END_TEST


/* malformed */

START_TEST(record_layer_errors)
{
    static tb_t m, r, e;
    size_t first;

    e.n = 0;
    ext_sni(&e, "a.test", 6);
    build_msg(&m, &e);

    /* non-handshake record between the fragments */
    wrap(&r, m.b, m.n, 20);
    first = 5 + 20;
    r.b[first] = 23;
    expect_error(r.b, r.n, "non-handshake record before the ClientHello "
                           "was complete");
    expect_error(r.b, first + 1, NULL);

    /* record version major != 3, on the first and a later record */
    wrap(&r, m.b, m.n, 20);
    r.b[1] = 2;
    expect_error(r.b, 2, "bad TLS record version");
    wrap(&r, m.b, m.n, 20);
    r.b[first + 1] = 0x7f;
    expect_error(r.b, r.n, "bad TLS record version");

    /* empty record */
    r.n = 0;
    putn(&r, "\x16\x03\x01\x00\x00", 5);
    expect_error(r.b, r.n, "empty handshake record");

    /* a record longer than 2^14 */
    expect_error((const uint8_t *) "\x16\x03\x01\x40\x01", 5,
                 "TLS record too long");

    /* a handshake message that is not a ClientHello */
    expect_error((const uint8_t *) "\x16\x03\x01\x00\x04\x02", 6,
                 "first handshake message is not a ClientHello");

    /* bytes after the hello in its last record */
    r.n = 0;
    put8(&r, 22);
    put16(&r, 0x0301);
    put16(&r, (unsigned) m.n + 3);
    putn(&r, m.b, m.n);
    putn(&r, "\x02\x00\x00", 3);
    expect_error(r.b, r.n, "data after the ClientHello in its record");
    /* ... even before those bytes have arrived */
    expect_error(r.b, r.n - 3, "data after the ClientHello in its record");
}
END_TEST

START_TEST(truncated_inner_lengths)
{
    static tb_t m, r, e, t;
    hm_tls_hello_t h;
    size_t cut;

    e.n = 0;
    ext_sni(&e, "cut.test", 8);
    ext_versions(&e, 1);
    ext_sigalgs(&e, 1);
    build_msg(&m, &e);

    /* Declare the hello shorter than it is (cut bytes off the end, fix the
     * outer lengths): every cut must be an error, never OK or a crash. */
    for (cut = 1; cut < m.n - 4; cut++) {
        t = m;
        t.n = m.n - cut;
        t.b[1] = (uint8_t) ((t.n - 4) >> 16);
        t.b[2] = (uint8_t) ((t.n - 4) >> 8);
        t.b[3] = (uint8_t) (t.n - 4);
        wrap(&r, t.b, t.n, 16384);
        if (cut == e.n + 2) {
            /* exactly the extensions block cut: a valid old hello */
            ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
            ck_assert_int_eq(h.has_sni, 0);
            continue;
        }
        if (parse(r.b, r.n, &h) != HM_ERROR) {
            ck_abort_msg("cut %zu: not an error", cut);
        }
        ck_assert_ptr_nonnull(h.error);
    }
}
END_TEST

START_TEST(lengths_overflowing)
{
    static tb_t m, r, e;
    hm_tls_hello_t h;
    size_t ext_off;

    e.n = 0;
    ext_sni(&e, "over.test", 9);
    build_msg(&m, &e);
    /* offset of the extensions block length in the message */
    ext_off = 4 + 2 + 32 + 1 + 32 + 2 + 4 + 1 + 1;

    /* extensions block length one too long */
    m.b[ext_off + 1]++;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad extensions block length");
    m.b[ext_off + 1]--;

    /* extension data length beyond the block */
    m.b[ext_off + 2 + 3] = 0xff;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "truncated extension");
    m.b[ext_off + 2 + 3] = 9 + 5;

    /* server name list length beyond the extension */
    m.b[ext_off + 2 + 4 + 1] = 0xff;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad server_name extension");
    m.b[ext_off + 2 + 4 + 1] = 9 + 3;

    /* host name length beyond the list */
    m.b[ext_off + 2 + 4 + 2 + 2] = 10;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad server_name extension");
    m.b[ext_off + 2 + 4 + 2 + 2] = 9;

    /* session id of 33 bytes */
    m.b[4 + 2 + 32] = 33;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, NULL);
    m.b[4 + 2 + 32] = 32;

    /* cipher suites: odd, then empty, then overflowing */
    m.b[4 + 2 + 32 + 1 + 32 + 1] = 3;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, NULL);
    m.b[4 + 2 + 32 + 1 + 32 + 1] = 0xff;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, NULL);
    m.b[4 + 2 + 32 + 1 + 32 + 1] = 4;

    /* sanity: restored hello parses */
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_str_eq(h.sni, "over.test");
}
END_TEST

START_TEST(bad_sni_names)
{
    static const struct {
        const char *name;
        size_t      len;
        const char *why;
    } bad[] = {
        { "", 0, "bad SNI length" },
        { "a..b", 4, "empty label in SNI" },
        { ".a", 2, "empty label in SNI" },
        { "a.test.", 7, "SNI ends with a dot" },
        { "*.wild.test", 11, "bad character in SNI" },
        { "a\0.test", 7, "bad character in SNI" },
        { "a.test\0", 7, "bad character in SNI" },
        { "a b.test", 8, "bad character in SNI" },
        { "::1", 3, "bad character in SNI" },
        { "[::1]", 5, "bad character in SNI" },
        { "caf\xc3\xa9.test", 10, "bad character in SNI" },
        { "a/b", 3, "bad character in SNI" },
    };
    static tb_t e, m, r;
    size_t i;

    for (i = 0; i < hm_nelem(bad); i++) {
        e.n = 0;
        ext_sni(&e, bad[i].name, bad[i].len);
        build_msg(&m, &e);
        wrap(&r, m.b, m.n, 16384);
        expect_error(r.b, r.n, bad[i].why);
    }
}
END_TEST

START_TEST(sni_list_shapes)
{
    static tb_t e, m, r;
    hm_tls_hello_t h;

    /* an unknown name type is skipped, the host_name is used */
    e.n = 0;
    ext_raw(&e, 0, "\x00\x0c" "\x07\x00\x01Z" "\x00\x00\x05" "b.tst", 14);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
    ck_assert_str_eq(h.sni, "b.tst");

    /* two host_names */
    e.n = 0;
    ext_raw(&e, 0, "\x00\x0a" "\x00\x00\x02" "ab" "\x00\x00\x02" "cd", 12);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "more than one host_name in server_name");

    /* no host_name at all, and an empty list */
    e.n = 0;
    ext_raw(&e, 0, "\x00\x04" "\x07\x00\x01Z", 6);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "server_name without a host_name");

    e.n = 0;
    ext_raw(&e, 0, "\x00\x00", 2);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad server_name extension");
}
END_TEST

START_TEST(duplicate_and_misplaced_extensions)
{
    static tb_t e, m, r;
    hm_tls_hello_t h;

    e.n = 0;
    ext_sni(&e, "a.test", 6);
    ext_versions(&e, 1);
    ext_sni(&e, "b.test", 6);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "duplicate extension");

    e.n = 0;
    ext_raw(&e, 0xfe0d, "x", 1);
    ext_raw(&e, 0xfe0d, "y", 1);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "duplicate extension");

    /* pre_shared_key must be last */
    e.n = 0;
    ext_raw(&e, 41, "", 0);
    ext_sni(&e, "a.test", 6);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "pre_shared_key is not the last extension");

    e.n = 0;
    ext_sni(&e, "a.test", 6);
    ext_raw(&e, 41, "", 0);
    build_msg(&m, &e);
    wrap(&r, m.b, m.n, 16384);
    ck_assert_int_eq(parse(r.b, r.n, &h), HM_OK);
}
END_TEST

START_TEST(bad_hello_fields)
{
    static tb_t m, r;
    size_t comp_off;

    build_msg(&m, NULL);
    comp_off = 4 + 2 + 32 + 1 + 32 + 2 + 4;

    /* compression methods without null */
    m.b[comp_off + 1] = 1;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "compression methods lack null");
    m.b[comp_off + 1] = 0;

    /* client version major 2 */
    m.b[4] = 2;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad ClientHello version");
    m.b[4] = 3;

    /* a stray byte after compression methods (not an extensions block) */
    m.b[3]++;
    m.b[m.n++] = 0;
    wrap(&r, m.b, m.n, 16384);
    expect_error(r.b, r.n, "bad extensions block length");
}
END_TEST

START_TEST(alert_record)
{
    uint8_t out[8] = { 0 };

    ck_assert_uint_eq(hm_tls_alert_record(out, HM_TLS_ALERT_UNRECOGNIZED_NAME),
                      7);
    ck_assert_int_eq(memcmp(out, "\x15\x03\x03\x00\x02\x02\x70\x00", 8), 0);
}
END_TEST


static Suite *
tls_hello_suite(void)
{
    Suite *s = suite_create("hm_tls_hello");
    TCase *tc = tcase_create("hello");

    tcase_add_loop_test(tc, real_hellos_parse, 0, hm_nelem(real));
    tcase_add_loop_test(tc, real_hellos_every_prefix_again, 0, hm_nelem(real));
    tcase_add_loop_test(tc, real_hellos_resplit_into_records, 0,
                        hm_nelem(real));
    tcase_add_test(tc, real_hello_followed_by_later_data);
    tcase_add_test(tc, no_sni_and_no_extensions);
    tcase_add_test(tc, sni_is_lower_cased);
    tcase_add_test(tc, sni_ip_literal_like_and_underscore_pass);
    tcase_add_test(tc, sni_limits);
    tcase_add_test(tc, alpn_joined_and_bounded);
    tcase_add_test(tc, versions_and_sigalgs);
    tcase_add_test(tc, split_into_records_every_size);
    tcase_add_test(tc, large_hello_with_padding_across_records);
    tcase_add_test(tc, over_max_declared_length_refused_early);
    tcase_add_test(tc, declined_not_tls);
    tcase_add_test(tc, record_layer_errors);
    tcase_add_test(tc, truncated_inner_lengths);
    tcase_add_test(tc, lengths_overflowing);
    tcase_add_test(tc, bad_sni_names);
    tcase_add_test(tc, sni_list_shapes);
    tcase_add_test(tc, duplicate_and_misplaced_extensions);
    tcase_add_test(tc, bad_hello_fields);
    tcase_add_test(tc, alert_record);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(tls_hello_suite)

/*
 * Unit tests of src/core/hm_proxy_proto.c: PROXY v1 and v2 headers,
 * valid, partial (every prefix), and malformed; builders round-tripped
 * through the parser.
 */
#include "hm_core.h"
#include "hm_proxy_proto.h"
#include "hm_check.h"

#include <arpa/inet.h>

#define MAXLEN 4096

static int
parse(const void *b, size_t n, hm_proxy_info_t *info)
{
    return hm_proxy_proto_parse(b, n, MAXLEN, info);
}

static void
expect_prefixes_again(const void *b, size_t n)
{
    hm_proxy_info_t info;
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        rc = parse(b, i, &info);
        if (rc != HM_AGAIN) {
            ck_abort_msg("prefix %zu of %zu: rc %d (%s)", i, n, rc,
                         info.error ? info.error : "-");
        }
    }
}

static void
expect_error(const void *b, size_t n, const char *why)
{
    hm_proxy_info_t info;

    ck_assert_int_eq(parse(b, n, &info), HM_ERROR);
    ck_assert_ptr_nonnull(info.error);
    if (why != NULL) {
        ck_assert_str_eq(info.error, why);
    }
}

static void
check_v4(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *) ss;
    char buf[INET_ADDRSTRLEN];

    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sin->sin_addr, buf,
                                    sizeof(buf)));
    ck_assert_str_eq(buf, addr);
    ck_assert_uint_eq(ntohs(sin->sin_port), port);
}

static void
check_v6(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) ss;
    char buf[INET6_ADDRSTRLEN];

    ck_assert_int_eq(sin6->sin6_family, AF_INET6);
    ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &sin6->sin6_addr, buf,
                                    sizeof(buf)));
    ck_assert_str_eq(buf, addr);
    ck_assert_uint_eq(ntohs(sin6->sin6_port), port);
}

static const uint8_t sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* v2 header: signature, ver_cmd, fam, then alen bytes of block */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *block,
   size_t alen)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t) (alen >> 8);
    out[15] = (uint8_t) alen;
    if (alen != 0) {
        memcpy(out + 16, block, alen);
    }
    return 16 + alen;
}

static const uint8_t block4[12] = {
    192, 0, 2, 1,   198, 51, 100, 7,   0xc3, 0x50,   0x01, 0xbb
};


/* v1 */

START_TEST(v1_tcp4)
{
    static const char line[] =
        "PROXY TCP4 192.0.2.1 198.51.100.7 50000 443\r\nGET /";
    hm_proxy_info_t info;

    ck_assert_int_eq(parse(line, sizeof(line) - 1, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, sizeof(line) - 1 - 5);
    ck_assert_int_eq(info.local, 0);
    ck_assert_ptr_null(info.error);
    ck_assert_uint_eq(info.src_len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(info.dst_len, sizeof(struct sockaddr_in));
    check_v4(&info.src, "192.0.2.1", 50000);
    check_v4(&info.dst, "198.51.100.7", 443);
    expect_prefixes_again(line, info.consumed);
}
END_TEST

START_TEST(v1_tcp6_and_limits)
{
    static const char line[] = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 "
                               "65535\r\n";
    /* the longest TCP6 line (104 bytes) and the longest line of all: the
     * spec's UNKNOWN example with full addresses, exactly 107 bytes */
    static const char longest6[] =
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    static const char longest[] =
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    hm_proxy_info_t info;

    ck_assert_int_eq(parse(line, sizeof(line) - 1, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, sizeof(line) - 1);
    ck_assert_uint_eq(info.src_len, sizeof(struct sockaddr_in6));
    check_v6(&info.src, "2001:db8::1", 0);
    check_v6(&info.dst, "::ffff:10.0.0.1", 65535);
    expect_prefixes_again(line, sizeof(line) - 1);

    ck_assert_int_eq(parse(longest6, sizeof(longest6) - 1, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, 104);
    check_v6(&info.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    expect_prefixes_again(longest6, sizeof(longest6) - 1);

    ck_assert_uint_eq(sizeof(longest) - 1, 107);
    ck_assert_int_eq(parse(longest, 107, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, 107);
    ck_assert_int_eq(info.local, 1);
    expect_prefixes_again(longest, 107);
}
END_TEST

START_TEST(v1_unknown)
{
    static const char a[] = "PROXY UNKNOWN\r\n";
    static const char b[] = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff "
                            "65535 65535\r\n";
    hm_proxy_info_t info;

    ck_assert_int_eq(parse(a, sizeof(a) - 1, &info), HM_OK);
    ck_assert_int_eq(info.local, 1);
    ck_assert_uint_eq(info.consumed, sizeof(a) - 1);
    ck_assert_uint_eq(info.src_len, 0);
    expect_prefixes_again(a, sizeof(a) - 1);

    ck_assert_int_eq(parse(b, sizeof(b) - 1, &info), HM_OK);
    ck_assert_int_eq(info.local, 1);
    ck_assert_uint_eq(info.consumed, sizeof(b) - 1);
}
END_TEST

START_TEST(v1_malformed)
{
    static const struct {
        const char *line;
        const char *why;
    } bad[] = {
        { "PROXY TCP4 192.0.2.1 198.51.100.7 50000 443\n",
          "PROXY v1 line ends without CR" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 50000 443\rX",
          "stray CR in PROXY v1 line" },
        { "PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n",
          "unknown PROXY v1 protocol" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n",
          "PROXY v1 line needs 6 fields" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n",
          "too many fields in PROXY v1 line" },
        { "PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n",
          "empty field in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n",
          "empty field in PROXY v1 line" },
        { "PROXY\r\n", "PROXY v1 line without protocol" },
        { "PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY protocol header" },
        { "PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n",
          "bad address in PROXY v1 line" },
        { "PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n",
          "bad address in PROXY v1 line" },
        { "PROXY TCP4 ::1 198.51.100.7 1 2\r\n",
          "bad address in PROXY v1 line" },
        { "PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
          "bad address in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n",
          "bad port in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 +1 2\r\n",
          "bad port in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 01 2\r\n",
          "bad port in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 1 -2\r\n",
          "bad port in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 1 99999999999\r\n",
          "bad port in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1 198.51.100.7 0x1 2\r\n",
          "bad port in PROXY v1 line" },
        { "PROXY TCP4 192.0.2.1\t198.51.100.7 1 2\r\n",
          "bad character in PROXY v1 line" },
        { "GET / HTTP/1.1\r\n", "no PROXY protocol header" },
        { "PROXY UNKNOWN x\ry\r\n", "stray CR in PROXY v1 line" },
        { "PROXY UNKNOWN \r\r\n", "stray CR in PROXY v1 line" },
    };
    size_t i;

    for (i = 0; i < hm_nelem(bad); i++) {
        expect_error(bad[i].line, strlen(bad[i].line), bad[i].why);
    }
}
END_TEST

START_TEST(v1_no_crlf_within_107)
{
    char line[200];
    hm_proxy_info_t info;

    memset(line, '1', sizeof(line));
    memcpy(line, "PROXY TCP4 ", 11);
    ck_assert_int_eq(parse(line, 106, &info), HM_AGAIN);
    expect_error(line, 107, "PROXY v1 line without CRLF within 107 bytes");
    expect_error(line, 200, "PROXY v1 line without CRLF within 107 bytes");

    /* CRLF at 108..109 is too late, even though it is there */
    memcpy(line + 107, "\r\n", 2);
    expect_error(line, 109, "PROXY v1 line without CRLF within 107 bytes");

    /* UNKNOWN lines are bounded the same way */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    ck_assert_int_eq(parse(line, 100, &info), HM_AGAIN);
    expect_error(line, 107, "PROXY v1 line without CRLF within 107 bytes");
}
END_TEST

START_TEST(v1_bad_prefixes_fail_early)
{
    expect_error("PROXY  ", 7, "unknown PROXY v1 protocol");
    expect_error("PROXY TCP4 1.2.3.4 x", 20, "bad character in PROXY v1 line");
    expect_error("PROXY TCP4 1.2.3.4  ", 20, "empty field in PROXY v1 line");
    expect_error("PROXY TCP9", 10, "unknown PROXY v1 protocol");
    expect_error("PROXX", 5, "no PROXY protocol header");
    expect_error("PROXY TCP4 1\r2", 14, "stray CR in PROXY v1 line");
    expect_error("\x16\x03\x01", 3, "no PROXY protocol header");
}
END_TEST


/* v2 */

START_TEST(v2_tcp4_with_tlvs)
{
    uint8_t buf[128], block[64];
    hm_proxy_info_t info;
    size_t n;

    memcpy(block, block4, 12);
    /* PP2_TYPE_ALPN "h2", then PP2_TYPE_NOOP with 0 bytes */
    memcpy(block + 12, "\x01\x00\x02h2\x04\x00\x00", 8);
    n = v2(buf, 0x21, 0x11, block, 20);
    memcpy(buf + n, "\x16\x03\x01", 3);     /* the client's bytes follow */

    ck_assert_int_eq(parse(buf, n + 3, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, n);
    ck_assert_int_eq(info.local, 0);
    check_v4(&info.src, "192.0.2.1", 50000);
    check_v4(&info.dst, "198.51.100.7", 443);
    expect_prefixes_again(buf, n);
}
END_TEST

START_TEST(v2_tcp6)
{
    uint8_t buf[128], block[36];
    hm_proxy_info_t info;
    size_t n;

    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::5", block), 1);
    ck_assert_int_eq(inet_pton(AF_INET6, "::1", block + 16), 1);
    memcpy(block + 32, "\x00\x50\xff\xff", 4);
    n = v2(buf, 0x21, 0x21, block, 36);

    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, 52);
    ck_assert_uint_eq(info.src_len, sizeof(struct sockaddr_in6));
    check_v6(&info.src, "2001:db8::5", 80);
    check_v6(&info.dst, "::1", 65535);
    expect_prefixes_again(buf, n);
}
END_TEST

START_TEST(v2_local_unspec_unix)
{
    uint8_t buf[512], block[216];
    hm_proxy_info_t info;
    size_t n;

    /* LOCAL with no address block (health check) */
    n = v2(buf, 0x20, 0x00, NULL, 0);
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    ck_assert_int_eq(info.local, 1);
    ck_assert_uint_eq(info.consumed, 16);
    expect_prefixes_again(buf, n);

    /* LOCAL with an (ignored) IPv4 block */
    n = v2(buf, 0x20, 0x11, block4, 12);
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    ck_assert_int_eq(info.local, 1);
    ck_assert_uint_eq(info.consumed, 28);
    ck_assert_uint_eq(info.src_len, 0);

    /* PROXY with UNSPEC */
    n = v2(buf, 0x21, 0x00, NULL, 0);
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    ck_assert_int_eq(info.local, 1);

    /* PROXY over AF_UNIX: treated as local */
    memset(block, 0, sizeof(block));
    n = v2(buf, 0x21, 0x31, block, 216);
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    ck_assert_int_eq(info.local, 1);
    ck_assert_uint_eq(info.consumed, 232);
}
END_TEST

START_TEST(v2_malformed)
{
    uint8_t buf[128], block[64];
    size_t n;

    n = v2(buf, 0x21, 0x11, block4, 12);

    buf[7] = 'q';
    expect_error(buf, n, "bad PROXY v2 signature");
    expect_error(buf, 8, "bad PROXY v2 signature");
    buf[7] = 'Q';

    buf[12] = 0x11;
    expect_error(buf, 13, "bad PROXY v2 version");
    buf[12] = 0x22;
    expect_error(buf, 13, "bad PROXY v2 command");
    buf[12] = 0x21;

    buf[13] = 0x41;
    expect_error(buf, 14, "bad PROXY v2 address family");
    buf[13] = 0x13;
    expect_error(buf, 14, "bad PROXY v2 address family");
    buf[13] = 0x12;
    expect_error(buf, 14, "PROXY v2 over UDP is not supported");
    buf[13] = 0x11;

    /* truncated address blocks: declared too short for the family */
    n = v2(buf, 0x21, 0x11, block4, 11);
    expect_error(buf, n, "PROXY v2 address block too short");
    expect_error(buf, 16, "PROXY v2 address block too short");
    memset(block, 0, sizeof(block));
    n = v2(buf, 0x21, 0x21, block, 35);
    expect_error(buf, n, "PROXY v2 address block too short");

    /* TLV overflowing the header, and a 2-byte TLV stub */
    memcpy(block, block4, 12);
    memcpy(block + 12, "\x01\x00\x05h2", 5);
    n = v2(buf, 0x21, 0x11, block, 17);
    expect_error(buf, n, "PROXY v2 TLV overflows the header");
    memcpy(block + 12, "\x01\x00", 2);
    n = v2(buf, 0x21, 0x11, block, 14);
    expect_error(buf, n, "truncated PROXY v2 TLV");
}
END_TEST

START_TEST(v2_length_bound)
{
    uint8_t buf[16];
    hm_proxy_info_t info;

    /* 16 + 65535 declared: refused by max_len before any body arrives */
    v2(buf, 0x21, 0x11, NULL, 0);
    buf[14] = 0xff;
    buf[15] = 0xff;
    expect_error(buf, 16, "PROXY v2 header too long");
    ck_assert_int_eq(hm_proxy_proto_parse(buf, 16, 16 + 65535, &info),
                     HM_AGAIN);

    /* exactly max_len is accepted */
    buf[14] = 0;
    buf[15] = 12;
    ck_assert_int_eq(hm_proxy_proto_parse(buf, 16, 28, &info), HM_AGAIN);
    ck_assert_int_eq(hm_proxy_proto_parse(buf, 16, 27, &info), HM_ERROR);
}
END_TEST


/* builders */

START_TEST(build_v2_round_trip)
{
    struct sockaddr_in s4, d4;
    struct sockaddr_in6 s6, d6;
    uint8_t buf[64];
    hm_proxy_info_t info;
    size_t n;

    memset(&s4, 0, sizeof(s4));
    memset(&d4, 0, sizeof(d4));
    s4.sin_family = d4.sin_family = AF_INET;
    inet_pton(AF_INET, "203.0.113.9", &s4.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
    s4.sin_port = htons(40000);
    d4.sin_port = htons(8443);

    n = hm_proxy_proto_v2_build(buf, sizeof(buf), (struct sockaddr *) &s4,
                                (struct sockaddr *) &d4);
    ck_assert_uint_eq(n, 28);
    ck_assert_int_eq(memcmp(buf, sig, 12), 0);
    ck_assert_int_eq(buf[12], 0x21);
    ck_assert_int_eq(buf[13], 0x11);
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    ck_assert_uint_eq(info.consumed, 28);
    check_v4(&info.src, "203.0.113.9", 40000);
    check_v4(&info.dst, "127.0.0.1", 8443);

    ck_assert_uint_eq(hm_proxy_proto_v2_build(buf, 27,
                          (struct sockaddr *) &s4, (struct sockaddr *) &d4),
                      0);

    memset(&s6, 0, sizeof(s6));
    memset(&d6, 0, sizeof(d6));
    s6.sin6_family = d6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::77", &s6.sin6_addr);
    inet_pton(AF_INET6, "::1", &d6.sin6_addr);
    s6.sin6_port = htons(1);
    d6.sin6_port = htons(65535);

    n = hm_proxy_proto_v2_build(buf, sizeof(buf), (struct sockaddr *) &s6,
                                (struct sockaddr *) &d6);
    ck_assert_uint_eq(n, 52);
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    check_v6(&info.src, "2001:db8::77", 1);
    check_v6(&info.dst, "::1", 65535);

    /* mixed families are refused */
    ck_assert_uint_eq(hm_proxy_proto_v2_build(buf, sizeof(buf),
                          (struct sockaddr *) &s4, (struct sockaddr *) &d6),
                      0);
}
END_TEST

START_TEST(build_v1_round_trip)
{
    struct sockaddr_in s4, d4;
    struct sockaddr_in6 s6, d6;
    char buf[128];
    hm_proxy_info_t info;
    size_t n;

    memset(&s4, 0, sizeof(s4));
    memset(&d4, 0, sizeof(d4));
    s4.sin_family = d4.sin_family = AF_INET;
    inet_pton(AF_INET, "203.0.113.9", &s4.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
    s4.sin_port = htons(40000);
    d4.sin_port = htons(0);

    n = hm_proxy_proto_v1_build(buf, sizeof(buf), (struct sockaddr *) &s4,
                                (struct sockaddr *) &d4);
    ck_assert_str_eq(buf, "PROXY TCP4 203.0.113.9 127.0.0.1 40000 0\r\n");
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    check_v4(&info.src, "203.0.113.9", 40000);
    check_v4(&info.dst, "127.0.0.1", 0);
    ck_assert_uint_eq(hm_proxy_proto_v1_build(buf, n,
                          (struct sockaddr *) &s4, (struct sockaddr *) &d4),
                      0);

    memset(&s6, 0, sizeof(s6));
    memset(&d6, 0, sizeof(d6));
    s6.sin6_family = d6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::77", &s6.sin6_addr);
    inet_pton(AF_INET6, "::1", &d6.sin6_addr);
    s6.sin6_port = htons(443);
    d6.sin6_port = htons(65535);
    n = hm_proxy_proto_v1_build(buf, sizeof(buf), (struct sockaddr *) &s6,
                                (struct sockaddr *) &d6);
    ck_assert_str_eq(buf, "PROXY TCP6 2001:db8::77 ::1 443 65535\r\n");
    ck_assert_int_eq(parse(buf, n, &info), HM_OK);
    check_v6(&info.dst, "::1", 65535);
}
END_TEST

START_TEST(empty_and_junk)
{
    hm_proxy_info_t info;

    ck_assert_int_eq(parse("", 0, &info), HM_AGAIN);
    expect_error("\x00", 1, "no PROXY protocol header");
    expect_error("\r\n\r\n\r", 5, "bad PROXY v2 signature");
}
END_TEST


static Suite *
proxy_proto_suite(void)
{
    Suite *s = suite_create("hm_proxy_proto");
    TCase *tc = tcase_create("proxy_proto");

    tcase_add_test(tc, v1_tcp4);
    tcase_add_test(tc, v1_tcp6_and_limits);
    tcase_add_test(tc, v1_unknown);
    tcase_add_test(tc, v1_malformed);
    tcase_add_test(tc, v1_no_crlf_within_107);
    tcase_add_test(tc, v1_bad_prefixes_fail_early);
    tcase_add_test(tc, v2_tcp4_with_tlvs);
    tcase_add_test(tc, v2_tcp6);
    tcase_add_test(tc, v2_local_unspec_unix);
    tcase_add_test(tc, v2_malformed);
    tcase_add_test(tc, v2_length_bound);
    tcase_add_test(tc, build_v2_round_trip);
    tcase_add_test(tc, build_v1_round_trip);
    tcase_add_test(tc, empty_and_junk);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(proxy_proto_suite)

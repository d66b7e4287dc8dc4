/*
 * hm_proxy_proto.c: PROXY protocol v1 and v2 (haproxy.org
 * doc/proxy-protocol.txt), parser and builders.
 *
 * Data flow: on a listener with "proxy_protocol": true, the worker reads
 * the first bytes of a connection and calls hm_proxy_proto_parse() after
 * every read, before anything else (ClientHello preread, HTTP) looks at
 * the stream; info->consumed bytes are then dropped and the parsed
 * addresses replace the socket's peer for logs and X-Forwarded-For.  On
 * the way out, a passthrough site with "proxy_protocol_out" sends the
 * header built by hm_proxy_proto_v2_build() (or _v1_build()) to the
 * upstream before the client's bytes.
 *
 * The parser is pure (no I/O, no allocation) and strict, because anything
 * it accepts becomes the client address we log and trust:
 *   v1  "PROXY TCP4|TCP6 src dst sport dport\r\n" with single spaces, at
 *       most 107 bytes, addresses that inet_pton() accepts for the family,
 *       ports 0..65535 as plain decimal without sign or leading zeros;
 *       "PROXY UNKNOWN...\r\n" is a local connection (rest ignored);
 *   v2  the 12-byte signature, version 2, command LOCAL or PROXY; with
 *       PROXY the family/transport byte must be one the spec defines:
 *       TCP over IPv4/IPv6 gives addresses, UNSPEC and AF_UNIX are treated
 *       as local, UDP is refused; TLVs after the address block are skipped
 *       but each one's length must fit exactly.
 * A prefix of a valid header is HM_AGAIN at any byte boundary; bytes that
 * can no longer become a valid header are HM_ERROR as soon as they are
 * seen, so junk is refused without waiting for a timeout.
 */

#include "hm_core.h"
#include "hm_proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>

#define HM_PP_V1_MAX    107
#define HM_PP_V2_HDR    16

static const uint8_t hm_pp_v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static int hm_pp_v1(const uint8_t *buf, size_t len, hm_proxy_info_t *info);
static int hm_pp_v1_prefix(const uint8_t *buf, size_t len,
    hm_proxy_info_t *info);
static int hm_pp_v1_addr(const uint8_t *p, size_t n, int family,
    struct sockaddr_storage *ss, socklen_t *sslen);
static int hm_pp_v1_port(const uint8_t *p, size_t n, uint16_t *port);
static int hm_pp_v2(const uint8_t *buf, size_t len, size_t max_len,
    hm_proxy_info_t *info);


/*
 * Dispatches on the first byte: 'P' is v1, '\r' is v2.  The contract is
 * in hm_proxy_proto.h.  info is zeroed first.
 */
int
hm_proxy_proto_parse(const uint8_t *buf, size_t len, size_t max_len,
    hm_proxy_info_t *info)
{
    memset(info, 0, sizeof(*info));

    if (len == 0) {
        return HM_AGAIN;
    }

    if (buf[0] == 'P') {
        return hm_pp_v1(buf, len, info);
    }

    if (buf[0] == hm_pp_v2_sig[0]) {
        return hm_pp_v2(buf, len, max_len, info);
    }

    info->error = "no PROXY protocol header";
    return HM_ERROR;
}


/*
 * v1: finds the CRLF within the first 107 bytes and parses the line; if
 * there is none yet, checks that what is there can still become a line.
 */
static int
hm_pp_v1(const uint8_t *buf, size_t len, hm_proxy_info_t *info)
{
    const uint8_t  *p, *end, *f[6];
    size_t          i, n, fl[6], nf;
    uint16_t        sport, dport;
    int             family;

    n = hm_min(len, HM_PP_V1_MAX);

    for (i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            break;
        }
    }

    if (i == n) {
        if (len >= HM_PP_V1_MAX) {
            info->error = "PROXY v1 line without CRLF within 107 bytes";
            return HM_ERROR;
        }
        return hm_pp_v1_prefix(buf, len, info);
    }

    if (i == 0 || buf[i - 1] != '\r') {
        info->error = "PROXY v1 line ends without CR";
        return HM_ERROR;
    }

    end = buf + i - 1;          /* the CR */

    if (memchr(buf, '\r', (size_t) (end - buf)) != NULL) {
        info->error = "stray CR in PROXY v1 line";
        return HM_ERROR;
    }

    info->consumed = i + 1;

    /* split into single-space separated fields; no empty field */
    nf = 0;
    p = buf;
    for ( ;; ) {
        const uint8_t *s = p;

        while (p < end && *p != ' ') {
            if (*p < 0x21 || *p > 0x7e) {
                info->error = "bad character in PROXY v1 line";
                return HM_ERROR;
            }
            p++;
        }

        if (p == s) {
            info->error = "empty field in PROXY v1 line";
            return HM_ERROR;
        }

        if (nf == 6) {
            info->error = "too many fields in PROXY v1 line";
            return HM_ERROR;
        }

        f[nf] = s;
        fl[nf] = (size_t) (p - s);
        nf++;

        if (p == end) {
            break;
        }

        p++;                    /* the space */

        if (nf == 2 && fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) {
            /* "the receiver must ignore anything presented before the
             * CRLF is found" */
            break;
        }
    }

    if (fl[0] != 5 || memcmp(f[0], "PROXY", 5) != 0) {
        info->error = "no PROXY protocol header";
        return HM_ERROR;
    }

    if (nf < 2) {
        info->error = "PROXY v1 line without protocol";
        return HM_ERROR;
    }

    if (fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) {
        info->local = 1;
        return HM_OK;
    }

    if (fl[1] == 4 && memcmp(f[1], "TCP4", 4) == 0) {
        family = AF_INET;

    } else if (fl[1] == 4 && memcmp(f[1], "TCP6", 4) == 0) {
        family = AF_INET6;

    } else {
        info->error = "unknown PROXY v1 protocol";
        return HM_ERROR;
    }

    if (nf != 6) {
        info->error = "PROXY v1 line needs 6 fields";
        return HM_ERROR;
    }

    if (hm_pp_v1_addr(f[2], fl[2], family, &info->src, &info->src_len)
        != HM_OK
        || hm_pp_v1_addr(f[3], fl[3], family, &info->dst, &info->dst_len)
           != HM_OK)
    {
        info->error = "bad address in PROXY v1 line";
        return HM_ERROR;
    }

    if (hm_pp_v1_port(f[4], fl[4], &sport) != HM_OK
        || hm_pp_v1_port(f[5], fl[5], &dport) != HM_OK)
    {
        info->error = "bad port in PROXY v1 line";
        return HM_ERROR;
    }

    if (family == AF_INET) {
        ((struct sockaddr_in *) &info->src)->sin_port = htons(sport);
        ((struct sockaddr_in *) &info->dst)->sin_port = htons(dport);

    } else {
        ((struct sockaddr_in6 *) &info->src)->sin6_port = htons(sport);
        ((struct sockaddr_in6 *) &info->dst)->sin6_port = htons(dport);
    }

    return HM_OK;
}


/*
 * An incomplete v1 line buf[0..len) (no LF yet, len < 107): HM_AGAIN if
 * it is a prefix of "PROXY " followed by a known protocol and only the
 * characters addresses and ports use; else HM_ERROR.  A CR must be the
 * last byte seen (it can only start the CRLF).
 */
static int
hm_pp_v1_prefix(const uint8_t *buf, size_t len, hm_proxy_info_t *info)
{
    static const char  *protos[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };
    size_t              i, n, k;
    int                 ok;

    n = hm_min(len, 6);
    if (memcmp(buf, "PROXY ", n) != 0) {
        info->error = "no PROXY protocol header";
        return HM_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (buf[i] == '\r' && i != len - 1) {
            info->error = "stray CR in PROXY v1 line";
            return HM_ERROR;
        }
    }

    if (len <= 6) {
        return HM_AGAIN;
    }

    ok = 0;
    for (k = 0; k < hm_nelem(protos); k++) {
        n = hm_min(len - 6, strlen(protos[k]));
        if (memcmp(buf + 6, protos[k], n) == 0) {
            ok = 1;
            break;
        }
    }

    if (!ok) {
        info->error = "unknown PROXY v1 protocol";
        return HM_ERROR;
    }

    if (k == 2) {
        return HM_AGAIN;        /* UNKNOWN: anything up to the CRLF */
    }

    for (i = 11; i < len; i++) {
        uint8_t c = buf[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
              || (c >= 'A' && c <= 'F') || c == '.' || c == ':'
              || c == ' ' || (c == '\r' && i == len - 1)))
        {
            info->error = "bad character in PROXY v1 line";
            return HM_ERROR;
        }

        if (c == ' ' && buf[i - 1] == ' ') {
            info->error = "empty field in PROXY v1 line";
            return HM_ERROR;
        }
    }

    return HM_AGAIN;
}


/*
 * Parses the address p[0..n) of family into *ss with inet_pton().
 * Returns HM_OK or HM_ERROR.
 */
static int
hm_pp_v1_addr(const uint8_t *p, size_t n, int family,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
    char                 tmp[INET6_ADDRSTRLEN];
    struct sockaddr_in  *sin;
    struct sockaddr_in6 *sin6;

    if (n >= sizeof(tmp)) {
        return HM_ERROR;
    }

    memcpy(tmp, p, n);
    tmp[n] = '\0';

    memset(ss, 0, sizeof(*ss));

    if (family == AF_INET) {
        sin = (struct sockaddr_in *) ss;
        sin->sin_family = AF_INET;
        *sslen = sizeof(*sin);
        return inet_pton(AF_INET, tmp, &sin->sin_addr) == 1
               ? HM_OK : HM_ERROR;
    }

    sin6 = (struct sockaddr_in6 *) ss;
    sin6->sin6_family = AF_INET6;
    *sslen = sizeof(*sin6);
    return inet_pton(AF_INET6, tmp, &sin6->sin6_addr) == 1
           ? HM_OK : HM_ERROR;
}


/*
 * Parses a port: 1..5 decimal digits, no leading zero (except "0"),
 * value <= 65535.  Returns HM_OK or HM_ERROR.
 */
static int
hm_pp_v1_port(const uint8_t *p, size_t n, uint16_t *port)
{
    uint32_t    v;
    size_t      i;

    if (n == 0 || n > 5 || (n > 1 && p[0] == '0')) {
        return HM_ERROR;
    }

    v = 0;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return HM_ERROR;
        }
        v = v * 10 + (uint32_t) (p[i] - '0');
    }

    if (v > 65535) {
        return HM_ERROR;
    }

    *port = (uint16_t) v;

    return HM_OK;
}


/*
 * v2: signature, version/command, family/transport, 16-bit length, then
 * the address block and TLVs.
 */
static int
hm_pp_v2(const uint8_t *buf, size_t len, size_t max_len,
    hm_proxy_info_t *info)
{
    size_t                  n, total, alen, off, tlen;
    uint8_t                 cmd, fam;
    const uint8_t          *a;
    struct sockaddr_in     *s4, *d4;
    struct sockaddr_in6    *s6, *d6;

    n = hm_min(len, sizeof(hm_pp_v2_sig));
    if (memcmp(buf, hm_pp_v2_sig, n) != 0) {
        info->error = "bad PROXY v2 signature";
        return HM_ERROR;
    }

    if (len < 13) {
        return HM_AGAIN;
    }

    if ((buf[12] >> 4) != 2) {
        info->error = "bad PROXY v2 version";
        return HM_ERROR;
    }

    cmd = buf[12] & 0x0f;
    if (cmd > 1) {
        info->error = "bad PROXY v2 command";
        return HM_ERROR;
    }

    if (len < 14) {
        return HM_AGAIN;
    }

    fam = buf[13];
    switch (fam) {
    case 0x00:          /* UNSPEC */
    case 0x11:          /* TCP over IPv4 */
    case 0x21:          /* TCP over IPv6 */
    case 0x31:          /* UNIX stream */
    case 0x32:          /* UNIX datagram */
        break;
    case 0x12:
    case 0x22:
        if (cmd == 1) {
            info->error = "PROXY v2 over UDP is not supported";
            return HM_ERROR;
        }
        break;
    default:
        info->error = "bad PROXY v2 address family";
        return HM_ERROR;
    }

    if (len < HM_PP_V2_HDR) {
        return HM_AGAIN;
    }

    alen = (size_t) buf[14] << 8 | buf[15];
    total = HM_PP_V2_HDR + alen;

    if (total > max_len) {
        info->error = "PROXY v2 header too long";
        return HM_ERROR;
    }

    if (cmd == 1) {
        if ((fam == 0x11 && alen < 12) || (fam == 0x21 && alen < 36)
            || ((fam >> 4) == 3 && alen < 216))
        {
            info->error = "PROXY v2 address block too short";
            return HM_ERROR;
        }
    }

    if (len < total) {
        return HM_AGAIN;
    }

    a = buf + HM_PP_V2_HDR;
    info->consumed = total;

    if (cmd == 0 || fam == 0x00 || (fam >> 4) == 3) {
        /* LOCAL (health checks), UNSPEC or AF_UNIX: keep the socket's
         * own addresses; the address block is not interpreted */
        info->local = 1;
        return HM_OK;
    }

    if (fam == 0x11) {
        s4 = (struct sockaddr_in *) &info->src;
        d4 = (struct sockaddr_in *) &info->dst;
        s4->sin_family = AF_INET;
        d4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a, 4);
        memcpy(&d4->sin_addr, a + 4, 4);
        memcpy(&s4->sin_port, a + 8, 2);
        memcpy(&d4->sin_port, a + 10, 2);
        info->src_len = sizeof(*s4);
        info->dst_len = sizeof(*d4);
        off = 12;

    } else {
        s6 = (struct sockaddr_in6 *) &info->src;
        d6 = (struct sockaddr_in6 *) &info->dst;
        s6->sin6_family = AF_INET6;
        d6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a, 16);
        memcpy(&d6->sin6_addr, a + 16, 16);
        memcpy(&s6->sin6_port, a + 32, 2);
        memcpy(&d6->sin6_port, a + 34, 2);
        info->src_len = sizeof(*s6);
        info->dst_len = sizeof(*d6);
        off = 36;
    }

    /* TLVs: type (1), length (2), value; they must tile the rest */
    while (off < alen) {
        if (alen - off < 3) {
            info->error = "truncated PROXY v2 TLV";
            return HM_ERROR;
        }

        tlen = (size_t) a[off + 1] << 8 | a[off + 2];
        if (tlen > alen - off - 3) {
            info->error = "PROXY v2 TLV overflows the header";
            return HM_ERROR;
        }

        off += 3 + tlen;
    }

    return HM_OK;
}


/*
 * Builds a v2 header with the PROXY command for a TCP connection from src
 * to dst (both AF_INET or both AF_INET6) into out[0..cap).  Returns its
 * length (28 or 52), or 0 if cap is too small or the families differ or
 * are not IP.
 */
size_t
hm_proxy_proto_v2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst)
{
    size_t                      alen;
    const struct sockaddr_in   *s4, *d4;
    const struct sockaddr_in6  *s6, *d6;

    if (src->sa_family != dst->sa_family) {
        return 0;
    }

    if (src->sa_family == AF_INET) {
        alen = 12;
    } else if (src->sa_family == AF_INET6) {
        alen = 36;
    } else {
        return 0;
    }

    if (cap < HM_PP_V2_HDR + alen) {
        return 0;
    }

    memcpy(out, hm_pp_v2_sig, sizeof(hm_pp_v2_sig));
    out[12] = 0x21;                     /* version 2, PROXY */
    out[14] = 0;
    out[15] = (uint8_t) alen;

    if (src->sa_family == AF_INET) {
        s4 = (const struct sockaddr_in *) src;
        d4 = (const struct sockaddr_in *) dst;
        out[13] = 0x11;
        memcpy(out + 16, &s4->sin_addr, 4);
        memcpy(out + 20, &d4->sin_addr, 4);
        memcpy(out + 24, &s4->sin_port, 2);
        memcpy(out + 26, &d4->sin_port, 2);

    } else {
        s6 = (const struct sockaddr_in6 *) src;
        d6 = (const struct sockaddr_in6 *) dst;
        out[13] = 0x21;
        memcpy(out + 16, &s6->sin6_addr, 16);
        memcpy(out + 32, &d6->sin6_addr, 16);
        memcpy(out + 48, &s6->sin6_port, 2);
        memcpy(out + 50, &d6->sin6_port, 2);
    }

    return HM_PP_V2_HDR + alen;
}


/*
 * Builds the v1 line "PROXY TCP4|TCP6 src dst sport dport\r\n" into
 * out[0..cap), NUL-terminated.  Returns its length without the NUL, or 0
 * if cap is too small (108 always suffices) or the families differ or are
 * not IP.
 */
size_t
hm_proxy_proto_v1_build(char *out, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst)
{
    char                        sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    unsigned                    sp, dp;
    int                         n;
    const char                 *proto;
    const struct sockaddr_in   *s4, *d4;
    const struct sockaddr_in6  *s6, *d6;

    if (src->sa_family != dst->sa_family) {
        return 0;
    }

    if (src->sa_family == AF_INET) {
        s4 = (const struct sockaddr_in *) src;
        d4 = (const struct sockaddr_in *) dst;
        inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof(sa));
        inet_ntop(AF_INET, &d4->sin_addr, da, sizeof(da));
        sp = ntohs(s4->sin_port);
        dp = ntohs(d4->sin_port);
        proto = "TCP4";

    } else if (src->sa_family == AF_INET6) {
        s6 = (const struct sockaddr_in6 *) src;
        d6 = (const struct sockaddr_in6 *) dst;
        inet_ntop(AF_INET6, &s6->sin6_addr, sa, sizeof(sa));
        inet_ntop(AF_INET6, &d6->sin6_addr, da, sizeof(da));
        sp = ntohs(s6->sin6_port);
        dp = ntohs(d6->sin6_port);
        proto = "TCP6";

    } else {
        return 0;
    }

    n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", proto, sa, da, sp,
                 dp);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}

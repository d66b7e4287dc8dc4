/*
 * hm_tls_hello.c: the ClientHello parser behind the preread step.
 *
 * Data flow: the worker reads the first bytes of a new connection into its
 * preread buffer (src/event/hm_preread.c) and calls hm_tls_hello_parse()
 * after every read.  The parser is pure: no allocation except a scratch
 * copy when the handshake message is split over several records, no
 * OpenSSL state, no I/O.  It walks the TLS records, reassembles the
 * handshake message, and once it is complete decodes it with BoringSSL's
 * CBS into an hm_tls_hello_t (SNI, ALPN, versions, signature schemes) that
 * the sni_route module uses to choose passthrough, terminate or reject.
 * Every call starts from byte 0 again, so partial input needs no state.
 *
 * Decisions (strict, as HAProxy and BoringSSL are):
 *   - the first byte decides TLS or not: 0x16 is TLS, anything else is
 *     HM_DECLINED (plain HTTP, SSLv2-style hello, other record types);
 *   - records after the first must be handshake records too; an empty
 *     record, a record longer than 2^14 bytes, a record version whose
 *     major is not 3, or bytes after the ClientHello inside the record that
 *     ends it are errors (TLS 1.3 forbids other handshake messages there);
 *   - the SNI host_name must be 1..255 bytes of labels of 1..63 characters
 *     from [A-Za-z0-9_-] separated by single dots; a trailing dot is an
 *     error (RFC 6066 3: "without a trailing dot"); IP-literal-looking
 *     names made of digits and dots pass (they are well-formed host names;
 *     routing decides), IPv6 literals fail on ':';
 *   - duplicate extension types, a pre_shared_key that is not last, and
 *     trailing bytes anywhere are errors.
 */

#include "hm_core.h"
#include "hm_tls_hello.h"

#include <openssl/bytestring.h>

#define HM_TLS_RECORD_HANDSHAKE     22
#define HM_TLS_RECORD_HDR           5
#define HM_TLS_RECORD_MAX           16384   /* 2^14, RFC 8446 5.1 */
#define HM_TLS_HS_CLIENT_HELLO      1
#define HM_TLS_HS_HDR               4

#define HM_TLS_EXT_SERVER_NAME      0
#define HM_TLS_EXT_SIGALGS          13
#define HM_TLS_EXT_ALPN             16
#define HM_TLS_EXT_PSK              41
#define HM_TLS_EXT_SUPPORTED_VERS   43

#define hm_tls_is_grease(v) \
    (((v) & 0x0f0f) == 0x0a0a && (((v) >> 8) == ((v) & 0xff)))


const char hm_tls_hello_proxy_header[] =
    "not TLS (a PROXY protocol header, but the listener does not have "
    "\"proxy_protocol\": true)";


static int hm_tls_hello_body(const uint8_t *msg, size_t len,
    hm_tls_hello_t *hello);
static int hm_tls_hello_sni(CBS *ext, hm_tls_hello_t *hello);
static int hm_tls_hello_alpn(CBS *ext, hm_tls_hello_t *hello);
static int hm_tls_hello_versions(CBS *ext, hm_tls_hello_t *hello);
static int hm_tls_hello_sigalgs(CBS *ext, hm_tls_hello_t *hello);
static const char *hm_tls_hello_not_tls(const uint8_t *buf, size_t len);


/*
 * Walks the records of buf[0..len) and, when the whole ClientHello is
 * there, decodes it.  The contract is in hm_tls_hello.h.  hello is zeroed
 * first; on HM_OK every field is set.  On any other code only ->error (and
 * possibly ->record_version) is meaningful.
 */
int
hm_tls_hello_parse(const uint8_t *buf, size_t len, size_t max_hello,
    hm_tls_hello_t *hello)
{
    size_t          off, rlen, avail, take, need, have, i, msg_start;
    size_t          nrec;
    uint8_t         hs_hdr[HM_TLS_HS_HDR];
    uint8_t        *copy;
    const uint8_t  *rec;
    int             rc;

    memset(hello, 0, sizeof(*hello));

    if (len == 0) {
        return HM_AGAIN;
    }

    if (buf[0] != HM_TLS_RECORD_HANDSHAKE) {
        hello->error = hm_tls_hello_not_tls(buf, len);
        return HM_DECLINED;
    }

    off = 0;
    have = 0;           /* handshake bytes seen so far */
    need = 0;           /* 4 + body length, once the header is known */
    nrec = 0;
    msg_start = HM_TLS_RECORD_HDR;

    for ( ;; ) {
        if (need != 0 && have == need) {
            break;
        }

        /* record header, possibly partial */
        avail = len - off;
        rec = buf + off;

        if (avail == 0) {
            return HM_AGAIN;
        }

        if (rec[0] != HM_TLS_RECORD_HANDSHAKE) {
            hello->error = "non-handshake record before the ClientHello "
                           "was complete";
            return HM_ERROR;
        }

        if (avail >= 2 && rec[1] != 3) {
            hello->error = "bad TLS record version";
            return HM_ERROR;
        }

        if (avail >= 3 && nrec == 0) {
            hello->record_version = (uint16_t) (rec[1] << 8 | rec[2]);
        }

        if (avail < HM_TLS_RECORD_HDR) {
            return HM_AGAIN;
        }

        rlen = (size_t) rec[3] << 8 | rec[4];

        if (rlen == 0) {
            hello->error = "empty handshake record";
            return HM_ERROR;
        }

        if (rlen > HM_TLS_RECORD_MAX) {
            hello->error = "TLS record too long";
            return HM_ERROR;
        }

        nrec++;
        off += HM_TLS_RECORD_HDR;
        avail = hm_min(len - off, rlen);

        /* collect the 4-byte handshake header across fragments */
        for (i = 0; i < avail && have < HM_TLS_HS_HDR; i++) {
            hs_hdr[have++] = buf[off + i];

            if (have == 1 && hs_hdr[0] != HM_TLS_HS_CLIENT_HELLO) {
                hello->error = "first handshake message is not a "
                               "ClientHello";
                return HM_ERROR;
            }

            if (have == HM_TLS_HS_HDR) {
                need = (size_t) hs_hdr[1] << 16 | (size_t) hs_hdr[2] << 8
                       | hs_hdr[3];

                if (need > max_hello) {
                    hello->error = "ClientHello too long";
                    return HM_ERROR;
                }

                need += HM_TLS_HS_HDR;
            }
        }

        take = avail - i;

        if (need != 0) {
            if (have + take > need || (have + take == need && avail < rlen))
            {
                hello->error = "data after the ClientHello in its record";
                return HM_ERROR;
            }
        }

        have += take;
        off += avail;

        if (avail < rlen) {
            return HM_AGAIN;
        }
    }

    hello->consumed = off;

    if (nrec == 1) {
        /* the common case: the whole message in the first record */
        return hm_tls_hello_body(buf + msg_start + HM_TLS_HS_HDR,
                                 need - HM_TLS_HS_HDR, hello);
    }

    /* reassemble the fragments of the records in buf[0..off) */
    copy = malloc(need);
    if (copy == NULL) {
        hello->error = "out of memory reassembling the ClientHello";
        return HM_ERROR;
    }

    have = 0;
    for (i = 0; i < off; i += HM_TLS_RECORD_HDR + rlen) {
        rlen = (size_t) buf[i + 3] << 8 | buf[i + 4];
        HM_ASSERT(have + rlen <= need);
        memcpy(copy + have, buf + i + HM_TLS_RECORD_HDR, rlen);
        have += rlen;
    }
    HM_ASSERT(have == need);

    rc = hm_tls_hello_body(copy + HM_TLS_HS_HDR, need - HM_TLS_HS_HDR, hello);
    free(copy);

    return rc;
}


/*
 * Says, for hello->error, what the first bytes of a non-TLS stream look
 * like.  Returns a static string.
 */
static const char *
hm_tls_hello_not_tls(const uint8_t *buf, size_t len)
{
    static const uint8_t  pp2_sig[12] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
    };

    /* the classic misconfiguration: a balancer sends PROXY protocol to a
     * listener without "proxy_protocol": true */
    if ((len >= 6 && memcmp(buf, "PROXY ", 6) == 0)
        || (len >= sizeof(pp2_sig) && memcmp(buf, pp2_sig, sizeof(pp2_sig))
                                      == 0))
    {
        return hm_tls_hello_proxy_header;
    }

    if (buf[0] >= 'A' && buf[0] <= 'Z') {
        return "not TLS (looks like plain HTTP)";
    }

    if (buf[0] & 0x80) {
        return "not TLS (SSLv2-style ClientHello is not supported)";
    }

    if (buf[0] >= 20 && buf[0] <= 24) {
        return "not TLS (first record is not a handshake)";
    }

    return "not TLS (unknown first byte)";
}


/*
 * Decodes a complete ClientHello body msg[0..len) (without the handshake
 * header) into hello.  Returns HM_OK or HM_ERROR with hello->error set.
 */
static int
hm_tls_hello_body(const uint8_t *msg, size_t len, hm_tls_hello_t *hello)
{
    CBS         body, random, sid, suites, comp, exts, ext;
    uint16_t    version, type;
    uint8_t     seen[65536 / 8];
    int         has_null, rc;

    CBS_init(&body, msg, len);

    if (!CBS_get_u16(&body, &version)
        || !CBS_get_bytes(&body, &random, 32)
        || !CBS_get_u8_length_prefixed(&body, &sid)
        || !CBS_get_u16_length_prefixed(&body, &suites)
        || !CBS_get_u8_length_prefixed(&body, &comp))
    {
        hello->error = "truncated ClientHello";
        return HM_ERROR;
    }

    if ((version >> 8) != 3) {
        hello->error = "bad ClientHello version";
        return HM_ERROR;
    }

    hello->client_version = version;
    hello->max_version = version;

    if (CBS_len(&sid) > 32) {
        hello->error = "session id longer than 32 bytes";
        return HM_ERROR;
    }

    if (CBS_len(&suites) == 0 || CBS_len(&suites) % 2 != 0) {
        hello->error = "bad cipher suite list length";
        return HM_ERROR;
    }

    if (CBS_len(&comp) == 0) {
        hello->error = "empty compression method list";
        return HM_ERROR;
    }

    has_null = 0;
    while (CBS_len(&comp) != 0) {
        uint8_t m;

        (void) CBS_get_u8(&comp, &m);
        if (m == 0) {
            has_null = 1;
        }
    }

    if (!has_null) {
        hello->error = "compression methods lack null";
        return HM_ERROR;
    }

    if (CBS_len(&body) == 0) {
        /* an old hello without extensions */
        return HM_OK;
    }

    if (!CBS_get_u16_length_prefixed(&body, &exts) || CBS_len(&body) != 0) {
        hello->error = "bad extensions block length";
        return HM_ERROR;
    }

    memset(seen, 0, sizeof(seen));

    while (CBS_len(&exts) != 0) {
        if (!CBS_get_u16(&exts, &type)
            || !CBS_get_u16_length_prefixed(&exts, &ext))
        {
            hello->error = "truncated extension";
            return HM_ERROR;
        }

        if (seen[type >> 3] & (1u << (type & 7))) {
            hello->error = "duplicate extension";
            return HM_ERROR;
        }
        seen[type >> 3] |= (uint8_t) (1u << (type & 7));

        switch (type) {

        case HM_TLS_EXT_SERVER_NAME:
            rc = hm_tls_hello_sni(&ext, hello);
            break;

        case HM_TLS_EXT_ALPN:
            rc = hm_tls_hello_alpn(&ext, hello);
            break;

        case HM_TLS_EXT_SUPPORTED_VERS:
            rc = hm_tls_hello_versions(&ext, hello);
            break;

        case HM_TLS_EXT_SIGALGS:
            rc = hm_tls_hello_sigalgs(&ext, hello);
            break;

        case HM_TLS_EXT_PSK:
            /* RFC 8446 4.2.11: MUST be the last extension */
            rc = CBS_len(&exts) == 0 ? HM_OK : HM_ERROR;
            if (rc != HM_OK) {
                hello->error = "pre_shared_key is not the last extension";
            }
            break;

        default:
            rc = HM_OK;
            break;
        }

        if (rc != HM_OK) {
            return rc;
        }
    }

    return HM_OK;
}


/*
 * server_name (RFC 6066 3): a non-empty ServerNameList with exactly one
 * host_name entry; entries of other name types are skipped.  The name is
 * validated (see the top of the file) and stored lower-cased.
 */
static int
hm_tls_hello_sni(CBS *ext, hm_tls_hello_t *hello)
{
    CBS             list, name;
    uint8_t         name_type;
    const uint8_t  *p;
    size_t          n, i, label;
    int             found;

    if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0
        || CBS_len(&list) == 0)
    {
        hello->error = "bad server_name extension";
        return HM_ERROR;
    }

    found = 0;

    while (CBS_len(&list) != 0) {
        if (!CBS_get_u8(&list, &name_type)
            || !CBS_get_u16_length_prefixed(&list, &name))
        {
            hello->error = "bad server_name extension";
            return HM_ERROR;
        }

        if (name_type != 0) {
            continue;
        }

        if (found) {
            hello->error = "more than one host_name in server_name";
            return HM_ERROR;
        }
        found = 1;

        p = CBS_data(&name);
        n = CBS_len(&name);

        if (n == 0 || n > HM_TLS_HELLO_MAX_SNI) {
            hello->error = "bad SNI length";
            return HM_ERROR;
        }

        label = 0;
        for (i = 0; i < n; i++) {
            uint8_t c = p[i];

            if (c == '.') {
                if (label == 0) {
                    hello->error = "empty label in SNI";
                    return HM_ERROR;
                }
                label = 0;
                hello->sni[i] = '.';
                continue;
            }

            if (c >= 'A' && c <= 'Z') {
                c = (uint8_t) (c | 0x20);

            } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                         || c == '-' || c == '_'))
            {
                hello->error = "bad character in SNI";
                return HM_ERROR;
            }

            if (++label > 63) {
                hello->error = "SNI label longer than 63 bytes";
                return HM_ERROR;
            }

            hello->sni[i] = (char) c;
        }

        if (label == 0) {
            hello->error = "SNI ends with a dot";
            return HM_ERROR;
        }

        hello->sni[n] = '\0';
        hello->sni_len = n;
    }

    if (!found) {
        hello->error = "server_name without a host_name";
        return HM_ERROR;
    }

    hello->has_sni = 1;

    return HM_OK;
}


/*
 * application_layer_protocol_negotiation (RFC 7301 3.1): a non-empty list
 * of non-empty protocol names.  hello->alpn gets the names that are
 * printable ASCII without ',' joined by commas; a name that does not fit
 * in the 255 bytes left is dropped whole, never cut.
 */
static int
hm_tls_hello_alpn(CBS *ext, hm_tls_hello_t *hello)
{
    CBS             list, proto;
    const uint8_t  *p;
    size_t          n, i, out;
    int             printable;

    if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0
        || CBS_len(&list) == 0)
    {
        hello->error = "bad ALPN extension";
        return HM_ERROR;
    }

    out = 0;

    while (CBS_len(&list) != 0) {
        if (!CBS_get_u8_length_prefixed(&list, &proto)
            || CBS_len(&proto) == 0)
        {
            hello->error = "bad ALPN protocol name";
            return HM_ERROR;
        }

        p = CBS_data(&proto);
        n = CBS_len(&proto);

        printable = 1;
        for (i = 0; i < n; i++) {
            if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == ',') {
                printable = 0;
                break;
            }
        }

        if (!printable || out + (out ? 1 : 0) + n > sizeof(hello->alpn) - 1) {
            continue;
        }

        if (out) {
            hello->alpn[out++] = ',';
        }
        memcpy(hello->alpn + out, p, n);
        out += n;
    }

    hello->alpn[out] = '\0';
    hello->has_alpn = 1;

    return HM_OK;
}


/*
 * supported_versions (RFC 8446 4.2.1): a list of 1..127 versions.  GREASE
 * values are ignored; max_version is the highest other one.
 */
static int
hm_tls_hello_versions(CBS *ext, hm_tls_hello_t *hello)
{
    CBS         list;
    uint16_t    v, max;

    if (!CBS_get_u8_length_prefixed(ext, &list) || CBS_len(ext) != 0
        || CBS_len(&list) == 0 || CBS_len(&list) % 2 != 0)
    {
        hello->error = "bad supported_versions extension";
        return HM_ERROR;
    }

    max = 0;
    while (CBS_get_u16(&list, &v)) {
        if (hm_tls_is_grease(v)) {
            continue;
        }
        if (v == 0x0304) {
            hello->tls13 = 1;
        }
        if (v > max) {
            max = v;
        }
    }

    if (max != 0) {
        hello->max_version = max;
    }

    return HM_OK;
}


/*
 * signature_algorithms (RFC 8446 4.2.3): a non-empty, even-length list.
 * ecdsa_ok is set when one of ecdsa_secp{256,384,521}r1_sha{256,384,512}
 * is offered.
 */
static int
hm_tls_hello_sigalgs(CBS *ext, hm_tls_hello_t *hello)
{
    CBS         list;
    uint16_t    s;

    if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0
        || CBS_len(&list) == 0 || CBS_len(&list) % 2 != 0)
    {
        hello->error = "bad signature_algorithms extension";
        return HM_ERROR;
    }

    while (CBS_get_u16(&list, &s)) {
        if (s == 0x0403 || s == 0x0503 || s == 0x0603) {
            hello->ecdsa_ok = 1;
        }
    }

    hello->has_sigalgs = 1;

    return HM_OK;
}


/*
 * Writes a fatal alert record for alert into out (at least 7 bytes), as
 * TLS 1.2 framing (every client version accepts it before ServerHello).
 * Returns 7.
 */
size_t
hm_tls_alert_record(uint8_t *out, uint8_t alert)
{
    out[0] = 21;        /* alert */
    out[1] = 3;
    out[2] = 3;
    out[3] = 0;
    out[4] = 2;
    out[5] = 2;         /* fatal */
    out[6] = alert;

    return 7;
}

/*
 * fuzz_tls_hello.c: libFuzzer driver for src/tls/hm_tls_hello.c.
 *
 * Each input is parsed whole and at a few prefix lengths with two
 * max_hello bounds.  Besides "no crash, no sanitizer report" it checks the
 * contract: HM_OK means consumed <= len, a NUL-terminated SNI of sni_len
 * valid bytes; any failure sets an error string; a prefix of an input that
 * parsed OK is never an error.
 *
 * The same input is also used structure-aware: data[1..] becomes the body
 * of a ClientHello handshake message, wrapped into records of data[0] + 1
 * bytes, so mutations reach the body and extension parsers directly
 * instead of having to get the record lengths right first.
 */
#include "hm_core.h"
#include "hm_tls_hello.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const uint8_t *data, size_t size, size_t max_hello)
{
    hm_tls_hello_t  h;
    size_t          i, consumed;
    int             rc, prc;

    rc = hm_tls_hello_parse(data, size, max_hello, &h);

    switch (rc) {

    case HM_OK:
        HM_ASSERT(h.consumed >= 5 + 4 && h.consumed <= size);
        HM_ASSERT(h.error == NULL);
        HM_ASSERT(strlen(h.sni) == h.sni_len);
        HM_ASSERT(h.has_sni == (h.sni_len != 0));
        HM_ASSERT(strlen(h.alpn) < sizeof(h.alpn));
        for (i = 0; i < h.sni_len; i++) {
            HM_ASSERT(!(h.sni[i] >= 'A' && h.sni[i] <= 'Z'));
        }
        /* the same records alone parse the same way */
        consumed = h.consumed;
        prc = hm_tls_hello_parse(data, consumed, max_hello, &h);
        HM_ASSERT(prc == HM_OK && h.consumed == consumed);
        /* proper prefixes ask for more: never OK, never an error */
        for (i = 0; i < consumed; i += 1 + consumed / 16) {
            prc = hm_tls_hello_parse(data, i, max_hello, &h);
            HM_ASSERT(prc == HM_AGAIN);
        }
        break;

    case HM_AGAIN:
        break;

    case HM_DECLINED:
    case HM_ERROR:
        HM_ASSERT(h.error != NULL);
        break;

    default:
        HM_ASSERT(0);
    }
}

/* Wraps data[1..size) as a ClientHello body into records of data[0] + 1
 * bytes and checks the result. */
static void
check_wrapped(const uint8_t *data, size_t size)
{
    uint8_t    *msg, *rec;
    size_t      body, mlen, rsz, nrec, off, k, n;

    if (size < 1 || size > 70000) {
        return;
    }

    body = size - 1;
    mlen = 4 + body;
    rsz = (size_t) data[0] + 1;
    nrec = (mlen + rsz - 1) / rsz;

    msg = malloc(mlen);
    rec = malloc(mlen + 5 * nrec);
    HM_ASSERT(msg != NULL && rec != NULL);

    msg[0] = 1;
    msg[1] = (uint8_t) (body >> 16);
    msg[2] = (uint8_t) (body >> 8);
    msg[3] = (uint8_t) body;
    memcpy(msg + 4, data + 1, body);

    n = 0;
    for (off = 0; off < mlen; off += k) {
        k = hm_min(rsz, mlen - off);
        rec[n++] = 22;
        rec[n++] = 3;
        rec[n++] = 1;
        rec[n++] = (uint8_t) (k >> 8);
        rec[n++] = (uint8_t) k;
        memcpy(rec + n, msg + off, k);
        n += k;
    }

    check(rec, n, 65536);

    free(msg);
    free(rec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, 16384);
    check(data, size, 65536);
    check_wrapped(data, size);

    return 0;
}

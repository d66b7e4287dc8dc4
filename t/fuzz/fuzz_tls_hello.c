/*
 * fuzz_tls_hello.c: libFuzzer driver for src/tls/hm_tls_hello.c.
 *
 * Each input is parsed whole and at a few prefix lengths with two
 * max_hello bounds.  Besides "no crash, no sanitizer report" it checks the
 * contract: HM_OK means consumed <= len, a NUL-terminated SNI of sni_len
 * valid bytes; any failure sets an error string; a prefix of an input that
 * parsed OK is never an error.
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, 16384);
    check(data, size, 65536);

    return 0;
}

/*
 * fuzz_ocsp.c: libFuzzer driver for hm_tls_ocsp_match() (src/tls/
 * hm_tls_cert.c), which walks the DER OCSP response of a certificates.*.ocsp
 * file at configuration load to check that it is for that certificate.
 *
 * The first byte picks how many of the following bytes are the serial
 * number (a DER INTEGER as the caller passes it), the rest is the
 * response.  Checks the contract: HM_OK or HM_DECLINED, always with a
 * NUL-terminated reason for HM_DECLINED, and no read outside the input
 * (ASan).
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   msg[256];
    size_t n;
    int    rc;

    if (size == 0) {
        return 0;
    }
    n = data[0] % 24;
    if (n > size - 1) {
        n = size - 1;
    }
    msg[0] = '\0';
    rc = hm_tls_ocsp_match(data + 1 + n, size - 1 - n, data + 1, n, msg,
                           sizeof(msg));
    HM_ASSERT(rc == HM_OK || rc == HM_DECLINED);
    HM_ASSERT(rc == HM_OK || (msg[0] != '\0' && strlen(msg) < sizeof(msg)));
    return 0;
}

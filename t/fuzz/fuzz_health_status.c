/*
 * fuzz_health_status.c: libFuzzer driver for hm_health_parse_status()
 * (src/upstream/hm_health.c), the status line parser of the active health
 * checks, which reads whatever an upstream server sends back.
 *
 * Checks the contract: HM_OK gives a status in 100..599 and stays HM_OK
 * with the same status for any longer input with the same prefix
 * (the parser never looks past the line end); every strict prefix of an
 * accepted input is HM_AGAIN (bytes are judged as they arrive, so a
 * longer input never turns an error into success).
 */
#include "hm_core.h"
#include "hm_health.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *) data;
    size_t      i;
    int         rc, rc2, st, st2;

    st = -1;
    rc = hm_health_parse_status(p, size, &st);
    HM_ASSERT(rc == HM_OK || rc == HM_AGAIN || rc == HM_ERROR);
    if (rc != HM_OK) {
        HM_ASSERT(st == -1);
        if (rc == HM_AGAIN) {
            HM_ASSERT(size < HM_HEALTH_MAX_LINE);
        }
        return 0;
    }
    HM_ASSERT(st >= 100 && st <= 599);

    for (i = 0; i < size; i++) {
        st2 = -1;
        rc2 = hm_health_parse_status(p, i, &st2);
        if (rc2 == HM_OK) {
            /* the line ended earlier: same verdict */
            HM_ASSERT(st2 == st);
        } else {
            HM_ASSERT(rc2 == HM_AGAIN);
        }
    }
    return 0;
}

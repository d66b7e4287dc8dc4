/*
 * fuzz_redirect.c: libFuzzer driver for hm_redirect_location()
 * (src/event/hm_admin.c), which builds the Location of the plaintext
 * redirect listener from a client's Host header and request-target.
 *
 * Input: Host bytes, a NUL byte, then the target bytes.  Checks the
 * contract: on success the result is NUL-terminated, of the returned
 * length, starts with "https://", holds no byte <= 0x20 or >= 0x7f (no
 * header injection), and the host part carries no port; a too-small
 * buffer never succeeds partially.
 */
#include "hm_core.h"
#include "hm_admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *host = (const char *) data, *target, *nul, *slash;
    size_t      hlen, tlen, i;
    char        buf[1024], small[16];
    int         n, m;

    nul = memchr(data, '\0', size);
    if (nul == NULL) {
        hlen = size;
        target = "/";
        tlen = 1;
    } else {
        hlen = (size_t) (nul - host);
        target = nul + 1;
        tlen = size - hlen - 1;
    }
    n = hm_redirect_location(host, hlen, target, tlen, buf, sizeof(buf));
    HM_ASSERT(n >= -1);
    if (n >= 0) {
        HM_ASSERT((size_t) n < sizeof(buf));
        HM_ASSERT(buf[n] == '\0' && strlen(buf) == (size_t) n);
        HM_ASSERT(strncmp(buf, "https://", 8) == 0);
        for (i = 0; i < (size_t) n; i++) {
            HM_ASSERT((unsigned char) buf[i] > 0x20
                      && (unsigned char) buf[i] < 0x7f);
        }
        slash = strchr(buf + 8, '/');
        HM_ASSERT(slash != NULL);
        if (buf[8] != '[') {
            HM_ASSERT(memchr(buf + 8, ':', (size_t) (slash - buf - 8)) == NULL);
        }
    }
    m = hm_redirect_location(host, hlen, target, tlen, small, sizeof(small));
    HM_ASSERT(m == -1 || (n == m && strcmp(small, buf) == 0));
    return 0;
}

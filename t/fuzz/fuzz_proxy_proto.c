/*
 * fuzz_proxy_proto.c: libFuzzer driver for src/core/hm_proxy_proto.c.
 *
 * Parses each input with two max_len bounds and checks the contract: on
 * HM_OK the header length is within the input and the bound, addresses
 * are set unless local; on failure an error string is set; prefixes of an
 * accepted header ask for more.  Accepted non-local headers are rebuilt
 * with both builders and must parse back to the same addresses.
 */
#include "hm_core.h"
#include "hm_proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const uint8_t *data, size_t size, size_t max_len)
{
    hm_proxy_info_t info, back;
    uint8_t         v2[64];
    char            v1[128];
    size_t          i, n, consumed;
    int             rc;

    rc = hm_proxy_proto_parse(data, size, max_len, &info);

    if (rc == HM_ERROR) {
        HM_ASSERT(info.error != NULL);
        return;
    }

    if (rc == HM_AGAIN) {
        return;
    }

    HM_ASSERT(rc == HM_OK);
    HM_ASSERT(info.error == NULL);
    HM_ASSERT(info.consumed > 0 && info.consumed <= size);
    HM_ASSERT(data[0] == 'P' ? info.consumed <= 107
                             : info.consumed <= max_len);

    if (!info.local) {
        HM_ASSERT(info.src.ss_family == AF_INET
                  || info.src.ss_family == AF_INET6);
        HM_ASSERT(info.src.ss_family == info.dst.ss_family);

        n = hm_proxy_proto_v2_build(v2, sizeof(v2),
                                    (struct sockaddr *) &info.src,
                                    (struct sockaddr *) &info.dst);
        HM_ASSERT(n == 28 || n == 52);
        HM_ASSERT(hm_proxy_proto_parse(v2, n, 4096, &back) == HM_OK);
        HM_ASSERT(back.consumed == n);
        HM_ASSERT(memcmp(&back.src, &info.src, info.src_len) == 0);
        HM_ASSERT(memcmp(&back.dst, &info.dst, info.dst_len) == 0);

        n = hm_proxy_proto_v1_build(v1, sizeof(v1),
                                    (struct sockaddr *) &info.src,
                                    (struct sockaddr *) &info.dst);
        HM_ASSERT(n > 0 && n <= 107);
        HM_ASSERT(hm_proxy_proto_parse((uint8_t *) v1, n, 4096, &back)
                  == HM_OK);
        HM_ASSERT(back.consumed == n);
        HM_ASSERT(memcmp(&back.src, &info.src, info.src_len) == 0);
        HM_ASSERT(memcmp(&back.dst, &info.dst, info.dst_len) == 0);
    }

    consumed = info.consumed;
    for (i = 0; i < consumed; i++) {
        HM_ASSERT(hm_proxy_proto_parse(data, i, max_len, &back) == HM_AGAIN);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, 16 + 65535);
    check(data, size, 232);

    return 0;
}

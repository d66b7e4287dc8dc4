/*
 * hm_proxy_proto.h: PROXY protocol v1 and v2 (haproxy.org spec), pure
 * and bounds-checked (fuzzed by t/fuzz/fuzz_proxy_proto.c).
 */
#ifndef HM_PROXY_PROTO_H
#define HM_PROXY_PROTO_H

typedef struct {
    int                     local;      /* LOCAL command / UNKNOWN: keep
                                         * the socket's own addresses */
    struct sockaddr_storage src;
    socklen_t               src_len;
    struct sockaddr_storage dst;
    socklen_t               dst_len;
    size_t                  consumed;   /* header bytes */
    const char             *error;
} hm_proxy_info_t;

/*
 * Parses a PROXY v1 or v2 header at the start of buf[0..len).  Returns
 * HM_OK (header complete, info->consumed bytes), HM_AGAIN (valid prefix,
 * read more), HM_ERROR (malformed; info->error says why).  v1 lines are at
 * most 107 bytes; v2 headers at most 16 + 65535 bytes but we refuse more
 * than max_len.
 */
int hm_proxy_proto_parse(const uint8_t *buf, size_t len, size_t max_len,
                         hm_proxy_info_t *info);

/* Builds a v2 (PROXY command, TCP over IPv4/IPv6) header for src -> dst into
 * out (cap >= 52).  Returns its length, 0 if cap is too small or the
 * families differ/are unsupported (then a LOCAL header is not written). */
size_t hm_proxy_proto_v2_build(uint8_t *out, size_t cap,
                               const struct sockaddr *src,
                               const struct sockaddr *dst);
/* Builds a v1 line; returns its length or 0. */
size_t hm_proxy_proto_v1_build(char *out, size_t cap,
                               const struct sockaddr *src,
                               const struct sockaddr *dst);

#endif

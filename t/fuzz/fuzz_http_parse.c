/*
 * fuzz_http_parse.c: libFuzzer driver over src/http/hm_http_parse.c.  The
 * first byte chooses request or response head and the split points; the
 * head is fed incrementally (as the network would), then whatever follows
 * it goes through the chunked decoder.  Asserts the invariants callers
 * rely on: a parsed head lies inside the input, header pointers point
 * into it, decoded data pieces stay within what was passed.  The input
 * also goes through the routing path normaliser (hm_router.c), raw and as
 * a parsed request's path: its output fits len + 2 bytes, starts with
 * "/", has no empty, "." or ".." segment and no encoded slash left, and
 * normalising it again changes nothing.
 */
#include "hm_core.h"
#include "hm_http_parse.h"
#include "hm_http_int.h"
#include "hm_router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_normalize(const char *in, size_t len)
{
    char   *out, *again;
    size_t  n, n2, i;

    out = malloc(len + 2);          /* exactly what the contract asks */
    HM_ASSERT(out != NULL);
    n = hm_http_normalize_path(in, len, out);
    if (n == 0) {
        free(out);
        return;
    }
    HM_ASSERT(n <= len + 1 && out[0] == '/' && out[n] == '\0');
    for (i = 0; i + 1 < n; i++) {
        HM_ASSERT(!(out[i] == '/' && out[i + 1] == '/'));
        if (out[i] == '/' && out[i + 1] == '.') {
            HM_ASSERT(!(i + 2 == n || out[i + 2] == '/'));
            HM_ASSERT(!(out[i + 2] == '.' && (i + 3 == n || out[i + 3] == '/')));
        }
        if (out[i] == '%' && i + 2 < n) {
            HM_ASSERT(!(out[i + 1] == '2'
                        && (out[i + 2] == 'F' || out[i + 2] == 'f')));
        }
    }
    again = malloc(n + 2);
    HM_ASSERT(again != NULL);
    n2 = hm_http_normalize_path(out, n, again);
    HM_ASSERT(n2 == n && memcmp(out, again, n) == 0);
    free(again);
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_http_header_t hdrs[32];
    hm_http_msg_t m;
    hm_http_scan_t sc;
    hm_http_chunked_t d;
    const char *buf;
    size_t len, n, step, i, pos, consumed, off, dl;
    int rc = HM_AGAIN;

    if (size < 1) {
        return 0;
    }
    step = (data[0] >> 1) + 1;
    buf = (const char *) data + 1;
    len = size - 1;
    check_normalize(buf, hm_min(len, 4096));

    memset(&sc, 0, sizeof(sc));
    memset(&m, 0, sizeof(m));
    m.type = (data[0] & 1) ? HM_HTTP_RESPONSE : HM_HTTP_REQUEST;
    m.headers = hdrs;
    m.max_headers = hm_nelem(hdrs);
    for (n = hm_min(step, len); ; n = hm_min(n + step, len)) {
        rc = hm_http_parse_head(&m, &sc, buf, n, 4096);
        if (rc != HM_AGAIN || n == len) {
            break;
        }
    }
    /* Cut anywhere, the head parses as it does in one piece: the early
     * refusal of a start line that can no longer become one (the AGAIN
     * path) never refuses what the whole head would accept, and what one
     * piece refuses is refused in pieces too. */
    {
        hm_http_header_t hdrs1[32];
        hm_http_msg_t m1;
        hm_http_scan_t sc1;
        int rc1;

        memset(&sc1, 0, sizeof(sc1));
        memset(&m1, 0, sizeof(m1));
        m1.type = m.type;
        m1.headers = hdrs1;
        m1.max_headers = hm_nelem(hdrs1);
        rc1 = hm_http_parse_head(&m1, &sc1, buf, len, 4096);
        HM_ASSERT((rc1 == HM_OK) == (rc == HM_OK));
        HM_ASSERT(rc != HM_OK || m1.head_len == m.head_len);
        /* pieces may see a bad start line before the head is complete */
        HM_ASSERT(rc1 != HM_ERROR || rc == HM_ERROR);
    }
    if (rc != HM_OK) {
        return 0;
    }
    HM_ASSERT(m.head_len <= len);
    for (i = 0; i < m.nheaders; i++) {
        HM_ASSERT(m.headers[i].name.data >= buf);
        HM_ASSERT(m.headers[i].value.data + m.headers[i].value.len
                  <= buf + m.head_len);
    }
    if (m.type == HM_HTTP_REQUEST) {
        char out[8192];
        size_t hl;

        HM_ASSERT((m.path.data >= buf
                   && m.path.data + m.path.len <= buf + len)
                  || (m.absolute && m.path.len == 1 && m.path.data[0] == '/'));
        HM_ASSERT((m.target.data >= buf
                   && m.target.data + m.target.len <= buf + m.head_len)
                  || (m.absolute && m.target.len == 1
                      && m.target.data[0] == '/'));
        if (m.absolute) {
            /* absolute-form: the authority is the host, inside the head */
            HM_ASSERT(m.authority.len > 0 && m.host.data == m.authority.data);
            HM_ASSERT(m.authority.data >= buf
                      && m.authority.data + m.authority.len
                         <= buf + m.head_len);
        }
        check_normalize(m.path.data, m.path.len);
        hl = hm__http_build_upstream_head(&m, hm_http_req_body(&m), "h", 1,
                                          out, sizeof(out));
        HM_ASSERT(hl <= sizeof(out));
        if (hl > 0) {
            HM_ASSERT(hl > m.method_name.len + 1
                      && out[m.method_name.len + 1] != ' ');
            HM_ASSERT(m.path.len == 1 && m.path.data[0] == '*'
                      ? 1 : out[m.method_name.len + 1] == '/');
        }
    }

    hm_http_chunked_init(&d);
    pos = m.head_len;
    while (pos < len) {
        n = hm_min(len - pos, step);
        rc = hm_http_chunked_next(&d, (const uint8_t *) buf + pos, n,
                                  &consumed, &off, &dl);
        if (rc == HM_ERROR) {
            break;
        }
        HM_ASSERT(consumed <= n);
        if (rc == HM_OK) {
            HM_ASSERT(off + dl <= consumed);
        }
        pos += consumed;
        if (rc == HM_DONE) {
            break;
        }
    }
    return 0;
}

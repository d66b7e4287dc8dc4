/*
 * hm_http_int.h: internals shared by the files of src/http (head
 * serialisation helpers used by the request state machine).
 */
#ifndef HM_HTTP_INT_H
#define HM_HTTP_INT_H

#include <time.h>

#include "hm_http_parse.h"

/* Writes the upstream request head for m (framing body_kind; host is
 * used when the client sent no Host) into out; returns its length, 0
 * when cap is too small. */
size_t hm__http_build_upstream_head(const hm_http_msg_t *m, int body_kind,
                                    const char *host, size_t host_len,
                                    char *out, size_t cap);
/* Writes the client response head for resp into out; returns its length,
 * 0 when cap is too small. */
size_t hm__http_build_client_head(const hm_http_msg_t *resp,
                                  const hm_http_msg_t *req,
                                  int client_chunked, int close, char *out,
                                  size_t cap);

/* Writes t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110
 * 5.6.7, always 29 bytes, no locale) into out[30] (NUL-terminated). */
void hm__http_format_date(time_t t, char *out);
/* The current IMF-fixdate for a Date header, formatted at most once per
 * wall-clock second: now_ms is the loop's cached clock (uv_now), the
 * system clock is read only when a new second has begun.  Returns a
 * static 29-byte string (NUL-terminated). */
const char *hm__http_date(uint64_t now_ms);

#endif

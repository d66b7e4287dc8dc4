/*
 * hm_http_int.h: internals shared by the files of src/http (head
 * serialisation helpers used by the request state machine).
 */
#ifndef HM_HTTP_INT_H
#define HM_HTTP_INT_H

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

#endif

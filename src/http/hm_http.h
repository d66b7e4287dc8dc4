/*
 * hm_http.h: entry points of the HTTP/1.1 reverse proxy (src/http).
 */
#ifndef HM_HTTP_H
#define HM_HTTP_H

#include "hm_conn.h"
#include "hm_stream.h"

/* Called by the TLS layer once the client's TLS handshake completed on a
 * terminating site: the HTTP layer now owns c and s (s lives in c->pool)
 * and serves requests per c->site->routes until the connection closes,
 * then closes s and calls hm_conn_free(c). */
void hm_http_conn_start(hm_conn_t *c, hm_stream_t *s);

#endif

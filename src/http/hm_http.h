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

#ifndef HM_HTTP_REQ_API
#define HM_HTTP_REQ_API
/*
 * The request as modules see it (hm_module_t.on_request / on_response get
 * an hm_http_req_t *).  Added by the http work.
 *
 * Headers are edited in place: a module removes one by setting
 * HM_HTTP_HDR_REMOVED in its flags and adds one with hm_http_header_add()
 * (name and value copied into the request pool).  Everything here lives
 * until the end of the request.
 */
#include "hm_http_parse.h"

typedef struct hm_http_req_s hm_http_req_t;

struct hm_http_req_s {
    hm_conn_t             *conn;
    hm_stream_t           *client;      /* client leg (TLS details) */
    const hm_conf_site_t  *site;
    const hm_conf_route_t *route;
    hm_pool_t             *pool;        /* request lifetime */
    hm_http_msg_t         *req;         /* request head (on_request) */
    hm_http_msg_t         *resp;        /* response head (on_response) */
    const char            *npath;       /* normalised path (routing) */
    size_t                 npath_len;
    /* A hook that answers itself sets these and returns HM_DONE. */
    int                    reply_status;
    const char            *reply_body;  /* NULL: the reason phrase */
    const char            *reply_header;/* one extra "Name: value" or NULL */
    void                  *ctx[16];     /* per-module state */
};

/* Appends a header to m (copied into r->pool).  HM_OK, or HM_ERROR when
 * the header array is full or memory ran out. */
int hm_http_header_add(hm_http_req_t *r, hm_http_msg_t *m, const char *name,
                       size_t nlen, const char *value, size_t vlen);
/* Removes every header of m named name; with prefix, every header whose
 * name starts with name (case-insensitive).  Returns how many. */
int hm_http_header_remove(hm_http_msg_t *m, const char *name, size_t nlen,
                          int prefix);
#endif

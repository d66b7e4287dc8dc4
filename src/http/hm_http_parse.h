/*
 * hm_http_parse.h: HTTP/1.1 message heads and body framing, strictly.
 *
 * Where it sits: the HTTP layer (hm_http_request.c) collects the bytes of a
 * request head from the client, or of a response head from an upstream,
 * in one contiguous buffer and calls hm_http_parse_head() on it each time
 * more bytes arrived.  The end of the head is found by an incremental scan
 * that also enforces CRLF line endings and refuses obs-fold; once the head
 * is complete it is tokenised by http-parser (Debian's 2.9.4, built
 * without HTTP_PARSER_STRICT, hence our own checks) in one pass, and every
 * field is validated here: request line, version, header names and
 * values, Content-Length, Transfer-Encoding, Host, Connection, Expect.
 * This file pair is the only place that knows http-parser exists.
 *
 * Bodies are never given to http-parser: the caller frames them itself
 * (Content-Length by counting, chunked with hm_http_chunked_next(), whose
 * decoder is strict about sizes, extensions and trailers), so the raw
 * framing of one leg is never forwarded to the other.
 *
 * Ownership: hm_http_msg_t points into the caller's buffer (no copies); the
 * caller keeps the buffer unchanged while it uses the message and provides
 * the header array.
 */
#ifndef HM_HTTP_PARSE_H
#define HM_HTTP_PARSE_H

#include "hm_core.h"

enum { HM_HTTP_REQUEST = 0, HM_HTTP_RESPONSE = 1 };

/* Request methods the proxy distinguishes; others are HM_HTTP_M_OTHER
 * with the name in method_name. */
enum {
    HM_HTTP_M_OTHER = 0,
    HM_HTTP_M_GET,
    HM_HTTP_M_HEAD,
    HM_HTTP_M_POST,
    HM_HTTP_M_PUT,
    HM_HTTP_M_DELETE,
    HM_HTTP_M_OPTIONS,
    HM_HTTP_M_CONNECT,
    HM_HTTP_M_PATCH,
    HM_HTTP_M_TRACE
};

/* Header flags (hm_http_header_t.flags). */
#define HM_HTTP_HDR_REMOVED  0x01   /* dropped before serialisation */
#define HM_HTTP_HDR_HOP      0x02   /* hop-by-hop (set by the parser) */
#define HM_HTTP_HDR_ADDED    0x04   /* added by the proxy */

typedef struct {
    hm_str_t name;                  /* as received, case preserved */
    hm_str_t value;                 /* OWS trimmed */
    unsigned flags;
} hm_http_header_t;

/* Body framing of a message. */
enum {
    HM_HTTP_BODY_NONE = 0,          /* no body */
    HM_HTTP_BODY_LENGTH,            /* content_length bytes */
    HM_HTTP_BODY_CHUNKED,           /* chunked transfer coding */
    HM_HTTP_BODY_EOF                /* response delimited by close */
};

typedef struct {
    int         type;               /* HM_HTTP_REQUEST / _RESPONSE */
    /* request line */
    int         method;             /* HM_HTTP_M_* */
    hm_str_t    method_name;
    hm_str_t    target;             /* raw request-target */
    hm_str_t    path;               /* target up to '?' */
    hm_str_t    query;              /* after '?' (len 0: none) */
    /* status line */
    int         status;
    hm_str_t    reason;
    int         version;            /* 10 or 11 */

    hm_http_header_t *headers;      /* provided by the caller */
    size_t      nheaders;
    size_t      max_headers;

    int64_t     content_length;     /* -1: none */
    unsigned    chunked:1;          /* Transfer-Encoding: chunked */
    unsigned    keep_alive:1;       /* by version and Connection */
    unsigned    conn_close:1;
    unsigned    conn_upgrade:1;     /* Connection lists "upgrade" */
    unsigned    upgrade:1;          /* "Upgrade: websocket" with
                                       conn_upgrade (others: ignored) */
    unsigned    expect_continue:1;  /* Expect: 100-continue */
    hm_str_t    host;               /* Host header value (request) */
    hm_str_t    upgrade_proto;      /* Upgrade header value */
    /* Connection header tokens other than close/keep-alive/upgrade name
     * further hop-by-hop headers: those headers are flagged HOP. */

    size_t      head_len;           /* bytes of the head, final CRLF incl. */
    int         error_status;       /* on HM_ERROR: 400, 431, 417, 501 */
    const char *error;              /* on HM_ERROR: reason for the log */

    /* Absolute-form request-target (RFC 9112 3.2.2: "GET https://h/p
     * HTTP/1.1"), scheme http or https: target, path and query are its
     * origin-form part, host is the URI's authority (it replaces the Host
     * header, which is still required in HTTP/1.1), and the upstream head
     * is written in origin-form with "Host: <authority>". */
    unsigned    absolute:1;
    unsigned    target_slash:1;     /* origin-form part starts with '?':
                                       write a '/' before it ("/" alone,
                                       static, for "http://host") */
    hm_str_t    authority;          /* absolute-form: host[:port] */
} hm_http_msg_t;

/* Incremental scan state: zero it before the first call for a head. */
typedef struct {
    size_t pos;                     /* where the LF search resumes */
    size_t skip;                    /* leading empty lines (CRLF) skipped */
    int    line_done;               /* the start line's LF was seen */
} hm_http_scan_t;

/*
 * Looks for the end of the head in buf[0..len) (the whole head so far, the
 * same buffer each call, growing), then parses and validates it into m
 * (m->headers/max_headers set by the caller; m->type chooses request or
 * response).  max_bytes bounds the head.
 *
 * Returns HM_AGAIN (need more bytes), HM_OK (m filled; m->head_len bytes
 * of buf are the head, any bytes after it belong to the body or to the
 * next message) or HM_ERROR (m->error_status and m->error set: 431 when
 * the head or the header count is too large, 400 for any malformation,
 * 417 for an unsupported Expect).
 */
int hm_http_parse_head(hm_http_msg_t *m, hm_http_scan_t *sc, const char *buf,
                       size_t len, size_t max_bytes);

/* The body framing of request m. */
int hm_http_req_body(const hm_http_msg_t *m);
/* The body framing of response m to a request with method req_method. */
int hm_http_resp_body(const hm_http_msg_t *m, int req_method);

/* Finds header name (case-insensitive) from index *from on, skipping
 * removed ones; returns its index or -1. */
int hm_http_header_find(const hm_http_msg_t *m, const char *name,
                        size_t len, size_t from);

/* 1 when name is a hop-by-hop header (RFC 9110 7.6.1 and RFC 2616
 * 13.5.1): Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade, Proxy-Authenticate, Proxy-Authorization. */
int hm_http_is_hop_by_hop(const char *name, size_t len);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *hm_http_reason(int status);

/*
 * Chunked transfer coding decoder (RFC 9112 7.1), strict: chunk sizes are
 * 1..16 hex digits without sign or space, extensions are limited to token
 * characters, '=', quoted strings and at most 256 bytes per line, every
 * line ends with CRLF, trailers are read and dropped (at most 8 KiB).
 */
typedef struct {
    int      state;
    uint64_t remaining;             /* bytes left in the current chunk */
    size_t   line;                  /* bytes in the current line */
    size_t   trailer_bytes;
    int      digits;
    int      quoted;
} hm_http_chunked_t;

void hm_http_chunked_init(hm_http_chunked_t *d);
/*
 * Decodes in[0..len).  Returns:
 *   HM_OK: a data piece in[*data_off .. *data_off + *data_len); *consumed
 *          bytes of in are used up (the piece included); call again with
 *          the rest;
 *   HM_AGAIN: all len bytes consumed (*consumed = len), no data piece;
 *   HM_DONE: the message ended (last chunk and trailers); *consumed bytes
 *          belong to this message, the rest to the next one;
 *   HM_ERROR: invalid framing (*consumed is undefined).
 */
int hm_http_chunked_next(hm_http_chunked_t *d, const uint8_t *in, size_t len,
                         size_t *consumed, size_t *data_off,
                         size_t *data_len);

#endif

/*
 * hm_stream_int.h: internals of hm_stream_t shared by the transport
 * (src/event/hm_stream.c: sockets, buffers, write queue, timers) and the
 * TLS engine (src/tls/hm_tls_io.c: the SSL object, its BIO and the TLS
 * queries of hm_stream.h).  Nothing outside these two files includes it.
 *
 * Data flow: libuv reads into an hm_sbuf_t taken from the per-worker free
 * list; clear text goes straight to read_cb, TLS input is exposed to the
 * engine's BIO as (in_ptr, in_len) while SSL_do_handshake/SSL_read run,
 * and the plaintext is delivered from a second free-list buffer.  Output
 * (clear text that the kernel did not take at once, or TLS records written
 * by the BIO) is appended to the out chain of free-list buffers; at most one
 * uv_write is in flight (the fly chain).  An idle stream holds no buffer.
 */
#ifndef HM_STREAM_INT_H
#define HM_STREAM_INT_H

#include "hm_stream.h"

/* One buffer: room for a whole TLS record (16 KiB + overhead). */
#define HM_SBUF_SIZE (16384 + 1024)

typedef struct hm_sbuf_s hm_sbuf_t;
struct hm_sbuf_s {
    hm_sbuf_t *next;
    uint32_t   off;                 /* first unconsumed byte */
    uint32_t   len;                 /* end of valid bytes */
    uint8_t    data[HM_SBUF_SIZE];
};

enum {
    HM_SF_USER_READING = 0x0001,    /* read_start called */
    HM_SF_UV_READING   = 0x0002,    /* uv_read_start active */
    HM_SF_HANDSHAKE    = 0x0004,    /* TLS handshake in progress */
    HM_SF_CONNECTING   = 0x0008,    /* TCP connect in progress */
    HM_SF_SHUT_WANTED  = 0x0010,    /* shutdown once drained */
    HM_SF_SHUT_SENT    = 0x0020,
    HM_SF_TIMER_ON     = 0x0040,
    HM_SF_EOF          = 0x0080,    /* EOF or error already delivered */
    HM_SF_CLIENT       = 0x0100,    /* upstream leg */
    HM_SF_IN_WRITE     = 0x0200,    /* inside hm_stream_write */
    HM_SF_IN_INPUT     = 0x0400,    /* inside stream_process_input */
    HM_SF_TLS_REFUSED  = 0x0800     /* peer's alert refused our handshake */
};

/* A libuv request (write, connect or shutdown) taken from a per-worker
 * free list only while it is pending, so an idle stream holds none. */
typedef union hm_sreq_u hm_sreq_t;
union hm_sreq_u {
    uv_write_t     write;
    uv_connect_t   connect;
    uv_shutdown_t  shutdown;
    hm_sreq_t     *next;            /* in the free list */
};

typedef struct {
    hm_stream_t     *s;
    uv_timer_t       timer;         /* connect/handshake timeout; resume */
    unsigned         flags;
    int              handles;       /* open uv handles */
    int              write_error;   /* sticky uv error of the write side */

    hm_sbuf_t       *out_head;      /* not yet handed to uv_write */
    hm_sbuf_t       *out_tail;
    size_t           out_bytes;
    hm_sbuf_t       *fly_head;      /* the uv_write in flight */
    size_t           fly_bytes;

    hm_sbuf_t       *in;            /* unconsumed input (read paused) */
    const uint8_t   *in_ptr;        /* what the TLS BIO reads from */
    size_t           in_len;

    const void      *upstream_tls;  /* hm_conf_upstream_tls_t, client */
    void            *offer;         /* SSL_SESSION * to offer (borrowed) */
    void            *session;       /* latest SSL_SESSION * (owned) */
    char             err[96];
} hm_stream_impl_t;

#define hm__stream_impl(s) ((hm_stream_impl_t *) (s)->impl)

/* hm_stream.c, for the engine. */
int hm__stream_out_append(hm_stream_t *s, const uint8_t *data, size_t len);
void hm__stream_set_error(hm_stream_t *s, const char *fmt, ...) HM_PRINTF(2, 3);

/* hm_tls_io.c: the TLS engine.  Input is read from impl->in_ptr/in_len,
 * output goes to hm__stream_out_append(). */
int hm__tls_server_new(hm_stream_t *s, void *ssl_ctx);
int hm__tls_client_new(hm_stream_t *s, const void *upstream_tls,
                       void *session);
/* HM_OK (done), HM_AGAIN (needs input), HM_ERROR (reason in impl->err). */
int hm__tls_handshake(hm_stream_t *s);
/* > 0 bytes; HM_AGAIN (needs input); UV_EOF (close_notify);
 * HM_STREAM_ETLS (reason in impl->err). */
ssize_t hm__tls_read(hm_stream_t *s, uint8_t *buf, size_t len);
int hm__tls_write(hm_stream_t *s, const uint8_t *data, size_t len);
int hm__tls_shutdown(hm_stream_t *s);
int hm__tls_pending(hm_stream_t *s);
void hm__tls_free(hm_stream_t *s);

#endif

/*
 * hm_stream.h: a byte stream over a TCP socket, in clear or through TLS
 * (BoringSSL over memory BIOs), the one transport the HTTP layer uses on
 * both legs:
 *   - client leg: an accepted socket whose ClientHello was already read
 *     (the preread bytes are fed to the TLS server first);
 *   - upstream leg: an outgoing connection, plaintext or TLS client
 *     (SNI, verification, client certificate, session resumption).
 *
 * Reads are pushed to read_cb as decrypted bytes; writes are copied into
 * the stream's output queue (the caller's buffers are free on return) and
 * write_queued() tells how many bytes are still waiting for the socket, so
 * callers apply backpressure (stop reading the other leg above a bound).
 * Every callback runs on the loop; no callback is called after
 * hm_stream_close().
 */
#ifndef HM_STREAM_H
#define HM_STREAM_H

#include <uv.h>
#include "hm_core.h"

typedef struct hm_stream_s hm_stream_t;

/* nread > 0: data[0..nread) are valid only during the call;
 * nread == UV_EOF: the peer closed (TLS close_notify or TCP FIN);
 * nread < 0: error (a uv error code, or HM_STREAM_ETLS / ETIMEDOUT). */
typedef void (*hm_stream_read_cb)(hm_stream_t *s, ssize_t nread,
                                  const uint8_t *data);
/* status 0 when the connection (and TLS handshake, when TLS) is
 * established, else a uv error code or HM_STREAM_ETLS. */
typedef void (*hm_stream_connect_cb)(hm_stream_t *s, int status);
/* Called once the output queue has fully drained to the socket after
 * hm_stream_write() calls that asked for it (see hm_stream_on_drain). */
typedef void (*hm_stream_drain_cb)(hm_stream_t *s);
typedef void (*hm_stream_close_cb)(hm_stream_t *s);

#define HM_STREAM_ETLS (-20001)   /* TLS failure; see hm_stream_error() */

struct hm_stream_s {
    uv_tcp_t             tcp;       /* embedded: container_of works */
    void                *data;      /* owner's pointer */
    void                *tls;       /* SSL *, NULL for clear text */
    hm_stream_read_cb    read_cb;
    hm_stream_connect_cb connect_cb;
    hm_stream_drain_cb   drain_cb;
    hm_stream_close_cb   close_cb;
    void                *impl;      /* hm_stream.c internals */
    uint64_t             bytes_in;  /* application bytes read */
    uint64_t             bytes_out; /* application bytes written */
    int                  closing;
};

/* Adopts an accepted, non-blocking socket fd (clear text). */
int hm_stream_open(hm_stream_t *s, uv_loop_t *loop, int fd);

/* Starts the TLS server handshake on an opened stream with ssl_ctx (an
 * SSL_CTX *), feeding the preread ClientHello bytes first.  cb(s, 0) when
 * the handshake completed.  The preread buffer is copied. */
int hm_stream_tls_accept(hm_stream_t *s, void *ssl_ctx, const uint8_t *preread,
                         size_t preread_len, int timeout_ms,
                         hm_stream_connect_cb cb);

/* Connects to addr (timeout_ms bounds connect, and the TLS handshake when
 * tls is non-NULL: an hm_conf_upstream_tls_t of the upstream, whose
 * ->tls holds the SSL_CTX).  session is an opaque resumption handle from
 * hm_stream_tls_session() or NULL.  cb reports the outcome. */
int hm_stream_connect(hm_stream_t *s, uv_loop_t *loop,
                      const struct sockaddr *addr, int timeout_ms,
                      const void *tls, void *session,
                      hm_stream_connect_cb cb);

int hm_stream_read_start(hm_stream_t *s, hm_stream_read_cb cb);
int hm_stream_read_stop(hm_stream_t *s);

/* Queues n buffers (copied).  Returns 0 or a uv error code. */
int hm_stream_write(hm_stream_t *s, const uv_buf_t *bufs, unsigned n);
/* Bytes queued but not yet accepted by the kernel. */
size_t hm_stream_write_queued(const hm_stream_t *s);
/* cb runs once, when the queue is empty (immediately if already empty). */
void hm_stream_on_drain(hm_stream_t *s, hm_stream_drain_cb cb);

/* Half-close after the queue drained: TLS close_notify and/or
 * shutdown(SHUT_WR). */
int hm_stream_shutdown(hm_stream_t *s);
/* Closes now (queued bytes are dropped); cb after the handle is closed;
 * then the owner may free s. */
void hm_stream_close(hm_stream_t *s, hm_stream_close_cb cb);

/* TLS details for logs and decisions (NULL / 0 for clear text). */
const char *hm_stream_error(const hm_stream_t *s);   /* last failure reason */
const char *hm_stream_tls_version(const hm_stream_t *s);
const char *hm_stream_alpn(const hm_stream_t *s);
int hm_stream_tls_resumed(const hm_stream_t *s);
/* Whether the peer ended the TLS session with an alert refusing our
 * handshake or certificate (bad/unknown/expired certificate, unknown CA,
 * certificate required, access denied, handshake failure...): for a TLS
 * 1.3 client the server judges its certificate after the client's side of
 * the handshake finished, so that refusal arrives as a read error. */
int hm_stream_tls_refused(const hm_stream_t *s);
/* 1 when the stream is TLS and its peer closed without a close_notify
 * alert (a truncation: data delimited by the close may be incomplete);
 * 0 for clear text or after a close_notify. */
int hm_stream_tls_truncated(const hm_stream_t *s);
/* The verified client certificate's subject, SANs and SHA-256 fingerprint
 * for client_cert_header; returns 0 when no verified certificate. */
int hm_stream_peer_cert_info(const hm_stream_t *s, char *subject, size_t slen,
                             char *sans, size_t sanlen, char *sha256_hex);
/* Takes a resumption handle of an established client stream (caller owns;
 * free with hm_stream_tls_session_free). */
void *hm_stream_tls_session(const hm_stream_t *s);
void hm_stream_tls_session_free(void *session);

/* Added by the leak audit: 1 when an error of hm_stream_connect() (its
 * return value) is a shortage of local resources (descriptors, buffers,
 * memory): not the server's failure, so not counted against it. */
static inline int
hm_stream_local_error(int rc)
{
    return hm_errno_shortage(-rc);
}

#endif

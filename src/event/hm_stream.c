/*
 * hm_stream.c: the byte-stream transport of hm_stream.h over uv_tcp_t,
 * for both legs of the HTTP proxy (client side after the TLS hand-off from
 * preread, upstream side after connect).
 *
 * Buffers: every read and every queued write uses a fixed hm_sbuf_t
 * (17 KiB, one whole TLS record) from a per-worker free list (a process
 * runs one worker, so the list is a plain static), and buffers go back as
 * soon as they are consumed: an idle connection holds none.  Writes first
 * try the socket directly (send(2), no copy for clear text); what the
 * kernel did not take is queued in the out chain and handed to a single
 * in-flight uv_write.  TLS is done by the engine in src/tls/hm_tls_io.c
 * (this file never sees OpenSSL types): it reads ciphertext from
 * impl->in_ptr while SSL_do_handshake/SSL_read run and appends records to
 * the out chain through hm__stream_out_append().
 *
 * Handles: the uv_tcp_t embedded in hm_stream_t and a uv_timer_t in the
 * impl (connect/handshake timeout, and resuming buffered input after a
 * paused read).  hm_stream_close() closes both; the impl and every buffer
 * are released in the last close callback, then the owner's close_cb runs.
 */
#include "hm_core.h"
#include "hm_stream_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* ---- per-worker free lists --------------------------------------------- */

/*
 * A bounded free list of fixed-size objects (hm_sbuf_t buffers, hm_sreq_t
 * requests) whose first word is the list link ("next", checked below).
 * A process runs one worker, so the lists are plain statics.  The link is
 * read and written with memcpy, so no object is accessed through a pointer
 * to another struct type.
 */
#define HM_FREE_MAX      64         /* objects kept per list */
#define HM_TLS_RECORD    16384      /* plaintext bytes per full record */

typedef struct {
    void *head;
    int   n;
} hm_flist_t;

_Static_assert(offsetof(hm_sbuf_t, next) == 0, "hm_sbuf_t: next first");
_Static_assert(offsetof(hm_sreq_t, next) == 0, "hm_sreq_t: next first");

static hm_flist_t sbuf_free;
static hm_flist_t sreq_free;

/* Takes an object from fl, or mallocs size bytes; NULL if out of memory. */
static void *
flist_get(hm_flist_t *fl, size_t size)
{
    void *p = fl->head;

    if (p != NULL) {
        memcpy(&fl->head, p, sizeof(void *));
        fl->n--;
        return p;
    }
    return malloc(size);
}

/* Gives p back to fl, or frees it when fl already holds HM_FREE_MAX. */
static void
flist_put(hm_flist_t *fl, void *p)
{
    if (fl->n >= HM_FREE_MAX) {
        free(p);
        return;
    }
    memcpy(p, &fl->head, sizeof(void *));
    fl->head = p;
    fl->n++;
}

static hm_sbuf_t *
sbuf_get(void)
{
    hm_sbuf_t *b = flist_get(&sbuf_free, sizeof(hm_sbuf_t));

    if (b == NULL) {
        return NULL;
    }
    b->next = NULL;
    b->off = 0;
    b->len = 0;
    return b;
}

static void
sbuf_put(hm_sbuf_t *b)
{
    flist_put(&sbuf_free, b);
}

static void
sbuf_put_chain(hm_sbuf_t *b)
{
    hm_sbuf_t *next;

    for (; b != NULL; b = next) {
        next = b->next;
        sbuf_put(b);
    }
}

static hm_sreq_t *
sreq_get(void)
{
    return flist_get(&sreq_free, sizeof(hm_sreq_t));
}

static void
sreq_put(void *req)
{
    flist_put(&sreq_free, req);
}

/* ---- helpers ---------------------------------------------------------- */

static void stream_flush(hm_stream_t *s);
static void stream_process_input(hm_stream_t *s);
static void stream_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);
static void stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

void
hm__stream_set_error(hm_stream_t *s, const char *fmt, ...)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    va_list           ap;

    va_start(ap, fmt);
    vsnprintf(impl->err, sizeof(impl->err), fmt, ap);
    va_end(ap);
}

/*
 * Appends len bytes to the out chain (copying).  Used for clear-text bytes
 * the kernel did not take and by the TLS BIO for records.  Returns 0, or -1
 * when no buffer could be had.
 */
int
hm__stream_out_append(hm_stream_t *s, const uint8_t *data, size_t len)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    hm_sbuf_t        *b;
    size_t            n;

    while (len > 0) {
        b = impl->out_tail;
        if (b == NULL || b->len == HM_SBUF_SIZE) {
            b = sbuf_get();
            if (b == NULL) {
                return -1;
            }
            if (impl->out_tail != NULL) {
                impl->out_tail->next = b;
            } else {
                impl->out_head = b;
            }
            impl->out_tail = b;
        }
        n = hm_min(len, (size_t) (HM_SBUF_SIZE - b->len));
        memcpy(b->data + b->len, data, n);
        b->len += n;
        impl->out_bytes += n;
        data += n;
        len -= n;
    }
    return 0;
}

static int
stream_impl_new(hm_stream_t *s, uv_loop_t *loop)
{
    hm_stream_impl_t *impl;

    impl = calloc(1, sizeof(*impl));
    if (impl == NULL) {
        return UV_ENOMEM;
    }
    impl->s = s;
    s->impl = impl;
    s->tls = NULL;
    s->closing = 0;
    s->bytes_in = 0;
    s->bytes_out = 0;
    uv_timer_init(loop, &impl->timer);
    impl->timer.data = s;
    impl->handles = 2;              /* s->tcp and impl->timer */
    return 0;
}

static void
stream_timer_stop(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (impl->flags & HM_SF_TIMER_ON) {
        uv_timer_stop(&impl->timer);
        impl->flags &= ~HM_SF_TIMER_ON;
    }
}

/* 1 when input waits in the stream (kept ciphertext, or plaintext that
 * BoringSSL decrypted but did not hand out yet). */
static int
stream_input_kept(hm_stream_t *s)
{
    return hm__stream_impl(s)->in != NULL || hm__tls_pending(s);
}

static void
stream_uv_read(hm_stream_t *s, int on)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (on && !(impl->flags & HM_SF_UV_READING)) {
        if (uv_read_start((uv_stream_t *) &s->tcp, stream_alloc_cb,
                          stream_read_cb) == 0) {
            impl->flags |= HM_SF_UV_READING;
        }
    } else if (!on && (impl->flags & HM_SF_UV_READING)) {
        uv_read_stop((uv_stream_t *) &s->tcp);
        impl->flags &= ~HM_SF_UV_READING;
    }
}

/* ---- open / connect / handshake ---------------------------------------- */

/*
 * The start both legs share: the uv handle, then the stream's internals.
 * Returns 0 or a uv error code; after a failure of stream_impl_new() the
 * handle is initialised and must be closed with hm_stream_close().
 */
static int
stream_init(hm_stream_t *s, uv_loop_t *loop)
{
    int rc;

    s->impl = NULL;
    rc = uv_tcp_init(loop, &s->tcp);
    if (rc != 0) {
        return rc;
    }
    s->tcp.data = s;
    return stream_impl_new(s, loop);
}

/*
 * Adopts fd (accepted, non-blocking) as a clear-text stream.  Returns 0 or
 * a uv error code; on error fd is not closed.  Not reading until
 * hm_stream_read_start().
 */
int
hm_stream_open(hm_stream_t *s, uv_loop_t *loop, int fd)
{
    int rc;

    rc = stream_init(s, loop);
    if (rc != 0) {
        return rc;
    }
    /* On failure the handle must still be closed (hm_stream_close); it
     * does not own fd then. */
    rc = uv_tcp_open(&s->tcp, fd);
    if (rc != 0) {
        return rc;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    return 0;
}

static void
stream_handshake_done(hm_stream_t *s, int status)
{
    hm_stream_impl_t    *impl = hm__stream_impl(s);
    hm_stream_connect_cb cb;

    impl->flags &= ~(HM_SF_HANDSHAKE | HM_SF_CONNECTING);
    stream_timer_stop(s);
    if (!(impl->flags & HM_SF_USER_READING)) {
        stream_uv_read(s, 0);
    }
    cb = s->connect_cb;
    if (cb != NULL) {
        cb(s, status);
    }
}

static void
stream_timeout_cb(uv_timer_t *t)
{
    hm_stream_t      *s = t->data;
    hm_stream_impl_t *impl = hm__stream_impl(s);

    impl->flags &= ~HM_SF_TIMER_ON;
    if (s->closing) {
        return;
    }
    if (impl->flags & (HM_SF_HANDSHAKE | HM_SF_CONNECTING)) {
        hm__stream_set_error(s, "%s timed out",
                             (impl->flags & HM_SF_CONNECTING)
                                 ? "connect" : "TLS handshake");
        stream_uv_read(s, 0);
        stream_handshake_done(s, UV_ETIMEDOUT);
        return;
    }
    /* Resume: input kept while reading was paused. */
    if ((impl->flags & HM_SF_USER_READING)
        && stream_input_kept(s))
    {
        stream_process_input(s);
    }
    if (!s->closing && (impl->flags & HM_SF_USER_READING)
        && !(impl->flags & HM_SF_EOF) && impl->in == NULL)
    {
        stream_uv_read(s, 1);
    }
}

static void
stream_timer_start(hm_stream_t *s, uint64_t ms)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    uv_timer_start(&impl->timer, stream_timeout_cb, ms, 0);
    impl->flags |= HM_SF_TIMER_ON;
}

/* Runs a handshake step on the current input; reports the outcome. */
static void
stream_handshake_step(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    int               rc;

    rc = hm__tls_handshake(s);
    stream_flush(s);
    if (rc == HM_AGAIN || !(impl->flags & HM_SF_HANDSHAKE)) {
        /* more to come, or the flush failed (the peer reset after its
         * last handshake message) and stream_write_fail() reported the
         * handshake as failed already: the owner may have closed s */
        return;
    }
    stream_handshake_done(s, rc == HM_OK ? 0 : HM_STREAM_ETLS);
}

/*
 * Starts the server handshake with ssl_ctx; the preread bytes (the
 * ClientHello already read by preread) are fed first.  Returns 0 or an
 * error code (cb is then never called): UV_E2BIG when the preread bytes
 * are more than a ClientHello the TLS stack accepts.
 */
int
hm_stream_tls_accept(hm_stream_t *s, void *ssl_ctx, const uint8_t *preread,
                     size_t preread_len, int timeout_ms,
                     hm_stream_connect_cb cb)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    hm_sbuf_t        *b = NULL;

    if (hm__tls_server_new(s, ssl_ctx) != HM_OK) {
        return HM_STREAM_ETLS;
    }
    s->connect_cb = cb;
    impl->flags |= HM_SF_HANDSHAKE;
    if (preread_len > 0) {
        if (preread_len > HM_SBUF_SIZE) {
            /* more than BoringSSL takes as a ClientHello (16 KiB without
             * client certificates) plus record headers: the client's
             * fault, see hm_tls_terminate_start */
            hm__stream_set_error(s, "ClientHello too large");
            return UV_E2BIG;
        }
        if ((b = sbuf_get()) == NULL) {
            hm__stream_set_error(s, "out of memory for the ClientHello");
            return HM_STREAM_ETLS;
        }
        memcpy(b->data, preread, preread_len);
        b->len = preread_len;
        impl->in = b;
    }
    if (timeout_ms > 0) {
        stream_timer_start(s, timeout_ms);
    }
    stream_uv_read(s, 1);
    if (impl->in != NULL) {
        stream_process_input(s);
    }
    return 0;
}

static void
stream_connect_cb(uv_connect_t *req, int status)
{
    hm_stream_t      *s = req->data;
    hm_stream_impl_t *impl;

    sreq_put(req);
    if (s->closing || status == UV_ECANCELED) {
        return;
    }
    impl = hm__stream_impl(s);
    if (!(impl->flags & HM_SF_CONNECTING)) {
        return;                     /* timed out already */
    }
    if (status != 0) {
        hm__stream_set_error(s, "connect failed: %s", uv_strerror(status));
        stream_handshake_done(s, status);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    if (impl->upstream_tls == NULL) {
        stream_handshake_done(s, 0);
        return;
    }
    impl->flags &= ~HM_SF_CONNECTING;
    impl->flags |= HM_SF_HANDSHAKE;
    if (hm__tls_client_new(s, impl->upstream_tls, impl->offer) != HM_OK) {
        stream_handshake_done(s, HM_STREAM_ETLS);
        return;
    }
    stream_uv_read(s, 1);
    impl->in_ptr = NULL;
    impl->in_len = 0;
    stream_handshake_step(s);
}

/*
 * Connects to addr; with tls (an hm_conf_upstream_tls_t) runs the client
 * handshake too, offering session (an SSL_SESSION *, not consumed) for
 * resumption.  timeout_ms bounds connect plus handshake.  Returns 0 or a
 * uv error code (cb is then never called, but the stream must still be
 * closed with hm_stream_close()).
 */
int
hm_stream_connect(hm_stream_t *s, uv_loop_t *loop, const struct sockaddr *addr,
                  int timeout_ms, const void *tls, void *session,
                  hm_stream_connect_cb cb)
{
    hm_stream_impl_t *impl;
    hm_sreq_t        *req;
    int               rc;

    rc = stream_init(s, loop);
    if (rc != 0) {
        return rc;
    }
    impl = hm__stream_impl(s);
    impl->flags |= HM_SF_CONNECTING | HM_SF_CLIENT;
    impl->upstream_tls = tls;
    impl->offer = session;          /* borrowed: SSL_set_session up-refs */
    s->connect_cb = cb;
    req = sreq_get();
    if (req == NULL) {
        impl->flags &= ~HM_SF_CONNECTING;
        return UV_ENOMEM;
    }
    req->connect.data = s;
    rc = uv_tcp_connect(&req->connect, &s->tcp, addr, stream_connect_cb);
    if (rc != 0) {
        sreq_put(req);
        impl->flags &= ~HM_SF_CONNECTING;
        return rc;
    }
    if (timeout_ms > 0) {
        stream_timer_start(s, timeout_ms);
    }
    return 0;
}

/* ---- reading ----------------------------------------------------------- */

static void
stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    hm_sbuf_t *b = sbuf_get();

    if (b == NULL) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *) b->data;
    buf->len = HM_SBUF_SIZE;
}

/* Delivers an end or an error once. */
static void
stream_deliver_end(hm_stream_t *s, ssize_t code)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (impl->flags & HM_SF_EOF) {
        return;
    }
    impl->flags |= HM_SF_EOF;
    stream_uv_read(s, 0);
    if (s->read_cb != NULL) {
        s->read_cb(s, code, NULL);
    }
}

/*
 * Consumes impl->in: drives the handshake, or decrypts and delivers
 * plaintext while the owner keeps reading.  Input left over when reading
 * is paused stays in impl->in for hm_stream_read_start().
 */
static void
stream_process_input(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    hm_sbuf_t        *in = impl->in, *out;
    ssize_t           r = HM_AGAIN;
    size_t            n;

    impl->flags |= HM_SF_IN_INPUT;
    if (in != NULL) {
        impl->in_ptr = in->data + in->off;
        impl->in_len = in->len - in->off;
    } else {
        impl->in_ptr = NULL;
        impl->in_len = 0;
    }

    if (s->tls == NULL) {
        /* Clear text: only paused input gets here. */
        if (in != NULL && impl->in_len > 0) {
            impl->in = NULL;
            s->bytes_in += impl->in_len;
            s->read_cb(s, impl->in_len, impl->in_ptr);
            sbuf_put(in);
        }
        impl->flags &= ~HM_SF_IN_INPUT;
        return;
    }

    if (impl->flags & HM_SF_HANDSHAKE) {
        stream_handshake_step(s);
        if (s->closing || (impl->flags & HM_SF_HANDSHAKE)) {
            goto keep;
        }
    }

    while (!s->closing && (impl->flags & HM_SF_USER_READING)
           && !(impl->flags & HM_SF_EOF))
    {
        out = sbuf_get();
        if (out == NULL) {
            hm__stream_set_error(s, "out of buffers");
            stream_deliver_end(s, UV_ENOBUFS);
            break;
        }
        n = 0;
        while (n < HM_SBUF_SIZE) {
            r = hm__tls_read(s, out->data + n, HM_SBUF_SIZE - n);
            if (r <= 0) {
                break;
            }
            n += r;
            if (impl->in_len == 0 && !hm__tls_pending(s)) {
                /* Every byte read is decrypted and delivered: another
                 * SSL_read could only say WANT_READ. */
                r = HM_AGAIN;
                break;
            }
        }
        if (n > 0) {
            s->bytes_in += n;
            s->read_cb(s, n, out->data);
        }
        sbuf_put(out);
        if (r == HM_AGAIN) {
            break;
        }
        if (r < 0 && !s->closing) {
            if (r == HM_STREAM_ETLS && impl->out_head != NULL) {
                /* the fatal alert for the peer's protocol error (a
                 * renegotiation attempt, a bad record): out before the
                 * owner closes the stream */
                stream_flush(s);
            }
            stream_deliver_end(s, r);
            break;
        }
    }

    /* Reading may have produced records of its own (key updates,
     * alerts). */
    if (!s->closing && impl->out_head != NULL) {
        stream_flush(s);
    }

keep:
    if (in != NULL) {
        if (impl->in_len == 0 || s->closing || (impl->flags & HM_SF_EOF)) {
            if (impl->in == in) {
                impl->in = NULL;
            }
            sbuf_put(in);
        } else {
            in->off = in->len - impl->in_len;
            impl->in = in;
        }
    }
    impl->in_ptr = NULL;
    impl->in_len = 0;
    impl->flags &= ~HM_SF_IN_INPUT;
    /* Reading was restarted by a callback but input is left (the owner
     * paused again before the loop got to it): resume from the timer. */
    if (!s->closing && (impl->flags & HM_SF_USER_READING)
        && !(impl->flags & (HM_SF_EOF | HM_SF_HANDSHAKE | HM_SF_CONNECTING))
        && stream_input_kept(s))
    {
        stream_uv_read(s, 0);
        stream_timer_start(s, 0);
    }
}

static void
stream_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    hm_stream_t      *s = h->data;
    hm_stream_impl_t *impl = hm__stream_impl(s);
    hm_sbuf_t        *b = NULL;

    if (buf->base != NULL) {
        b = hm_container_of(buf->base, hm_sbuf_t, data);
    }
    if (s->closing) {
        if (b != NULL) {
            sbuf_put(b);
        }
        return;
    }
    if (nread == 0) {
        if (b != NULL) {
            sbuf_put(b);
        }
        return;
    }
    if (nread < 0) {
        if (b != NULL) {
            sbuf_put(b);
        }
        if (impl->flags & (HM_SF_HANDSHAKE | HM_SF_CONNECTING)) {
            stream_uv_read(s, 0);
            if (nread == UV_EOF) {
                hm__stream_set_error(s, "peer closed the connection during "
                                     "the TLS handshake");
            } else {
                hm__stream_set_error(s, "read failed during the TLS "
                                     "handshake: %s", uv_strerror(nread));
            }
            stream_handshake_done(s, nread == UV_EOF ? HM_STREAM_ETLS
                                                     : (int) nread);
            return;
        }
        if (nread != UV_EOF) {
            hm__stream_set_error(s, "read failed: %s", uv_strerror(nread));
        }
        stream_deliver_end(s, nread);
        return;
    }

    if (s->tls == NULL) {
        s->bytes_in += nread;
        if (s->read_cb != NULL) {
            s->read_cb(s, nread, b->data);
        }
        sbuf_put(b);
        return;
    }

    b->off = 0;
    b->len = nread;
    if (impl->in != NULL) {
        /* Cannot happen: uv reading is off while input is kept. */
        sbuf_put(b);
        return;
    }
    impl->in = b;
    stream_process_input(s);
}

/*
 * Starts delivering data to cb.  Input kept from an earlier pause is
 * delivered from the next loop iteration, never from inside this call.
 */
int
hm_stream_read_start(hm_stream_t *s, hm_stream_read_cb cb)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (s->closing) {
        return UV_EINVAL;
    }
    s->read_cb = cb;
    impl->flags |= HM_SF_USER_READING;
    if (impl->flags & HM_SF_EOF) {
        return 0;
    }
    if (impl->flags & HM_SF_IN_INPUT) {
        /* Called back from stream_process_input(), whose loop goes on
         * with the input left and resumes from the timer only if it
         * must: no timer round per request here. */
        stream_uv_read(s, 1);
        return 0;
    }
    if (stream_input_kept(s)) {
        if (!(impl->flags & (HM_SF_HANDSHAKE | HM_SF_CONNECTING))) {
            stream_timer_start(s, 0);
        }
        return 0;
    }
    stream_uv_read(s, 1);
    return 0;
}

int
hm_stream_read_stop(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (s->closing) {
        return 0;
    }
    impl->flags &= ~HM_SF_USER_READING;
    if (!(impl->flags & (HM_SF_HANDSHAKE | HM_SF_CONNECTING))) {
        stream_uv_read(s, 0);
        if ((impl->flags & HM_SF_TIMER_ON) && impl->in == NULL) {
            stream_timer_stop(s);
        }
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

static void
stream_shutdown_cb(uv_shutdown_t *req, int status)
{
    sreq_put(req);
}

static void
stream_maybe_finish(hm_stream_t *s)
{
    hm_stream_impl_t  *impl = hm__stream_impl(s);
    hm_stream_drain_cb cb;
    hm_sreq_t         *req;

    if (impl->out_bytes != 0 || impl->fly_bytes != 0 || s->closing) {
        return;
    }
    if ((impl->flags & HM_SF_SHUT_WANTED) && !(impl->flags & HM_SF_SHUT_SENT)) {
        impl->flags |= HM_SF_SHUT_SENT;
        req = sreq_get();
        if (req != NULL) {
            req->shutdown.data = s;
            if (uv_shutdown(&req->shutdown, (uv_stream_t *) &s->tcp,
                            stream_shutdown_cb) != 0)
            {
                sreq_put(req);
            }
        }
    }
    if (s->drain_cb != NULL && !(impl->flags & HM_SF_IN_WRITE)) {
        cb = s->drain_cb;
        s->drain_cb = NULL;
        cb(s);
    }
}

static void
stream_write_fail(hm_stream_t *s, int status)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    impl->write_error = status;
    sbuf_put_chain(impl->out_head);
    impl->out_head = impl->out_tail = NULL;
    impl->out_bytes = 0;
    hm__stream_set_error(s, "write failed: %s", uv_strerror(status));
    if (impl->flags & HM_SF_IN_WRITE) {
        /* Reported by hm_stream_write()'s return value: no callback from
         * inside the owner's own call. */
        return;
    }
    if (impl->flags & HM_SF_HANDSHAKE) {
        stream_uv_read(s, 0);
        stream_handshake_done(s, status);
        return;
    }
    if (impl->flags & HM_SF_USER_READING) {
        stream_deliver_end(s, status);
    }
    if (!s->closing && s->drain_cb != NULL) {
        /* The queue is gone: let a waiting owner move on (its next write
         * returns the error). */
        hm_stream_drain_cb cb = s->drain_cb;

        s->drain_cb = NULL;
        cb(s);
    }
}

static void
stream_write_cb(uv_write_t *req, int status)
{
    hm_stream_t      *s = req->data;
    hm_stream_impl_t *impl = hm__stream_impl(s);

    sreq_put(req);
    sbuf_put_chain(impl->fly_head);
    impl->fly_head = NULL;
    impl->fly_bytes = 0;
    if (s->closing) {
        return;
    }
    if (status < 0) {
        stream_write_fail(s, status);
        return;
    }
    stream_flush(s);
}

#define HM_STREAM_IOV 16

/*
 * uv_try_write() without the VFS layer: send(2) and sendmsg(2) go to the
 * socket directly where write(2)/writev(2) first pass through vfs_write,
 * which is measurable at two writes per proxied request.  Same contract:
 * the bytes the kernel took, UV_EAGAIN, or a uv error.  Called only with
 * nothing queued in libuv (no uv_write in flight).
 */
static int
stream_try_send(hm_stream_t *s, const uv_buf_t *bufs, unsigned n)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    struct msghdr     msg;
    uv_os_fd_t        fd;
    ssize_t           r;

    if ((impl->flags & HM_SF_CONNECTING)
        || uv_fileno((const uv_handle_t *) &s->tcp, &fd) != 0)
    {
        return UV_EAGAIN;
    }
    _Static_assert(sizeof(uv_buf_t) == sizeof(struct iovec),
                   "uv_buf_t is a struct iovec on Unix");
    do {
        if (n == 1) {
            r = send(fd, bufs[0].base, bufs[0].len,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            memset(&msg, 0, sizeof(msg));
            msg.msg_iov = (struct iovec *) bufs;
            msg.msg_iovlen = n;
            r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
        return (int) r;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        return UV_EAGAIN;
    }
    return uv_translate_sys_error(errno);
}

/*
 * Hands the out chain to the kernel: directly when no uv_write is in
 * flight, then the rest (up to HM_STREAM_IOV buffers) as one uv_write.
 */
static void
stream_flush(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    uv_buf_t          iov[HM_STREAM_IOV];
    hm_sreq_t        *req;
    hm_sbuf_t        *b, *last;
    unsigned          k;
    size_t            bytes;
    int               r;

    if (impl->fly_head != NULL || s->closing || impl->write_error) {
        return;
    }
    if (impl->out_head == NULL) {
        stream_maybe_finish(s);
        return;
    }

    k = 0;
    for (b = impl->out_head; b != NULL && k < HM_STREAM_IOV; b = b->next) {
        iov[k++] = uv_buf_init((char *) b->data + b->off, b->len - b->off);
    }
    r = stream_try_send(s, iov, k);
    if (r < 0 && r != UV_EAGAIN) {
        stream_write_fail(s, r);
        return;
    }
    if (r > 0) {
        impl->out_bytes -= r;
        while (r > 0) {
            b = impl->out_head;
            if ((size_t) r >= b->len - b->off) {
                r -= b->len - b->off;
                impl->out_head = b->next;
                if (impl->out_head == NULL) {
                    impl->out_tail = NULL;
                }
                sbuf_put(b);
            } else {
                b->off += r;
                r = 0;
            }
        }
    }
    if (impl->out_head == NULL) {
        stream_maybe_finish(s);
        return;
    }

    k = 0;
    bytes = 0;
    last = NULL;
    for (b = impl->out_head; b != NULL && k < HM_STREAM_IOV; b = b->next) {
        iov[k++] = uv_buf_init((char *) b->data + b->off, b->len - b->off);
        bytes += b->len - b->off;
        last = b;
    }
    impl->fly_head = impl->out_head;
    impl->out_head = last->next;
    if (impl->out_head == NULL) {
        impl->out_tail = NULL;
    }
    last->next = NULL;
    impl->fly_bytes = bytes;
    impl->out_bytes -= bytes;
    req = sreq_get();
    if (req == NULL) {
        r = UV_ENOMEM;
    } else {
        req->write.data = s;
        r = uv_write(&req->write, (uv_stream_t *) &s->tcp, iov, k,
                     stream_write_cb);
        if (r != 0) {
            sreq_put(req);
        }
    }
    if (r != 0) {
        sbuf_put_chain(impl->fly_head);
        impl->fly_head = NULL;
        impl->fly_bytes = 0;
        stream_write_fail(s, r);
    }
}

/*
 * Encrypts bufs as few, full records: small buffers (a response head and
 * its body, say) are gathered into one record of up to 16 KiB instead of
 * one record each, which saves a seal here and an open at the peer.
 * Returns HM_OK or HM_ERROR (reason in the stream).
 */
static int
stream_tls_write(hm_stream_t *s, const uv_buf_t *bufs, unsigned n)
{
    hm_sbuf_t *g = NULL;
    size_t     glen = 0, len, k;
    unsigned   i;
    int        rc = HM_OK;
    const char *p;

    for (i = 0; i < n && rc == HM_OK; i++) {
        p = bufs[i].base;
        len = bufs[i].len;
        if (len >= HM_TLS_RECORD && glen == 0) {
            /* Big enough on its own: no copy. */
            rc = hm__tls_write(s, (const uint8_t *) p, len);
            continue;
        }
        while (len > 0 && rc == HM_OK) {
            if (g == NULL && (g = sbuf_get()) == NULL) {
                hm__stream_set_error(s, "out of buffers");
                return HM_ERROR;
            }
            k = hm_min(len, HM_TLS_RECORD - glen);
            memcpy(g->data + glen, p, k);
            glen += k;
            p += k;
            len -= k;
            if (glen == HM_TLS_RECORD) {
                rc = hm__tls_write(s, g->data, glen);
                glen = 0;
            }
        }
    }
    if (rc == HM_OK && glen > 0) {
        rc = hm__tls_write(s, g->data, glen);
    }
    if (g != NULL) {
        sbuf_put(g);
    }
    return rc;
}

/*
 * Queues bufs (copied, or written at once when the socket takes them).
 * Returns 0, a uv error code, or HM_STREAM_ETLS.
 */
int
hm_stream_write(hm_stream_t *s, const uv_buf_t *bufs, unsigned n)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    unsigned          i;
    size_t            total = 0, skip = 0, len;
    int               r;

    if (s->closing) {
        return UV_EPIPE;
    }
    if (impl->write_error) {
        return impl->write_error;
    }
    if (impl->flags & HM_SF_SHUT_WANTED) {
        return UV_EPIPE;
    }
    for (i = 0; i < n; i++) {
        total += bufs[i].len;
    }
    if (total == 0) {
        return 0;
    }
    s->bytes_out += total;
    impl->flags |= HM_SF_IN_WRITE;

    if (s->tls != NULL) {
        if (stream_tls_write(s, bufs, n) != HM_OK) {
            impl->flags &= ~HM_SF_IN_WRITE;
            return HM_STREAM_ETLS;
        }
    } else {
        if (impl->out_head == NULL && impl->fly_head == NULL) {
            r = stream_try_send(s, bufs, n);
            if (r < 0 && r != UV_EAGAIN) {
                impl->flags &= ~HM_SF_IN_WRITE;
                hm__stream_set_error(s, "write failed: %s", uv_strerror(r));
                impl->write_error = r;
                return r;
            }
            skip = r > 0 ? (size_t) r : 0;
        }
        for (i = 0; i < n && skip < total; i++) {
            len = bufs[i].len;
            if (skip >= len) {
                skip -= len;
                total -= len;
                continue;
            }
            if (hm__stream_out_append(s, (const uint8_t *) bufs[i].base + skip,
                                      len - skip) != 0)
            {
                impl->flags &= ~HM_SF_IN_WRITE;
                return UV_ENOBUFS;
            }
            skip = 0;
        }
    }

    stream_flush(s);
    impl->flags &= ~HM_SF_IN_WRITE;
    if (impl->write_error) {
        return impl->write_error;
    }
    if (s->drain_cb != NULL && impl->out_bytes == 0 && impl->fly_bytes == 0) {
        stream_maybe_finish(s);
    }
    return 0;
}

size_t
hm_stream_write_queued(const hm_stream_t *s)
{
    const hm_stream_impl_t *impl = s->impl;

    return impl == NULL ? 0 : impl->out_bytes + impl->fly_bytes;
}

void
hm_stream_on_drain(hm_stream_t *s, hm_stream_drain_cb cb)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (s->closing) {
        return;
    }
    if (impl->out_bytes == 0 && impl->fly_bytes == 0) {
        s->drain_cb = NULL;
        cb(s);
        return;
    }
    s->drain_cb = cb;
}

/*
 * Half-closes once the queue drained: TLS close_notify first, then
 * shutdown(SHUT_WR).  Later writes fail with UV_EPIPE.
 */
int
hm_stream_shutdown(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (s->closing || (impl->flags & HM_SF_SHUT_WANTED)) {
        return 0;
    }
    if (s->tls != NULL && !(impl->flags & HM_SF_HANDSHAKE)) {
        hm__tls_shutdown(s);
    }
    impl->flags |= HM_SF_SHUT_WANTED;
    stream_flush(s);
    return 0;
}

/* ---- close ------------------------------------------------------------- */

static void
stream_handle_closed(uv_handle_t *h)
{
    hm_stream_t        *s = h->data;
    hm_stream_impl_t   *impl = hm__stream_impl(s);
    hm_stream_close_cb  cb;

    if (--impl->handles > 0) {
        return;
    }
    sbuf_put_chain(impl->out_head);
    sbuf_put_chain(impl->fly_head);
    if (impl->in != NULL) {
        sbuf_put(impl->in);
    }
    if (s->tls != NULL || impl->session != NULL) {
        hm__tls_free(s);
    }
    free(impl);
    s->impl = NULL;
    s->tls = NULL;
    cb = s->close_cb;
    if (cb != NULL) {
        cb(s);
    }
}

/*
 * Closes now: queued output is dropped, no callback but cb runs after
 * this.  cb(s) runs once both handles are closed; then s may be freed.
 * Safe on a stream whose open/connect failed after uv_tcp_init.
 */
void
hm_stream_close(hm_stream_t *s, hm_stream_close_cb cb)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (s->closing) {
        return;
    }
    s->closing = 1;
    s->close_cb = cb;
    s->tcp.data = s;
    if (impl == NULL) {
        /* open/connect failed before any handle existed. */
        if (cb != NULL) {
            cb(s);
        }
        return;
    }
    s->drain_cb = NULL;
    if (impl->flags & HM_SF_UV_READING) {
        uv_read_stop((uv_stream_t *) &s->tcp);
        impl->flags &= ~HM_SF_UV_READING;
    }
    uv_timer_stop(&impl->timer);
    uv_close((uv_handle_t *) &impl->timer, stream_handle_closed);
    uv_close((uv_handle_t *) &s->tcp, stream_handle_closed);
}

const char *
hm_stream_error(const hm_stream_t *s)
{
    const hm_stream_impl_t *impl = s->impl;

    if (impl == NULL || impl->err[0] == '\0') {
        return "unknown error";
    }
    return impl->err;
}

/*
 * hm_tls_io.c: the TLS engine under hm_stream.c, and the TLS queries of
 * hm_stream.h (version, ALPN, resumption, peer certificate, sessions).
 *
 * Where it sits: hm_stream.c owns the socket and the buffers; this file owns
 * the SSL object.  The SSL reads and writes through one custom BIO per
 * stream that never buffers anything itself: reads take ciphertext straight
 * from the buffer libuv just filled (impl->in_ptr/in_len), writes append
 * whole records to the stream's out chain (hm__stream_out_append).  So an
 * idle connection holds only the SSL object: BoringSSL releases its own
 * record buffers whenever they are empty (SSL_MODE_RELEASE_BUFFERS is
 * always on in BoringSSL), and server SSLs shed their handshake
 * configuration once the handshake is done.
 *
 * Failure reasons are taken from the first entry of the error queue (and
 * the verification result for certificate failures), turned into words
 * ("no shared cipher", "certificate has expired"), stored in the stream
 * (hm_stream_error) and the queue is cleared.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_tls.h"
#include "hm_tls_int.h"
#include "hm_stream_int.h"

#include <ctype.h>
#include <stdio.h>
#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* ---- the BIO ------------------------------------------------------------ */

static BIO_METHOD *hm_bio_method;

static int
bio_read(BIO *bio, char *out, int len)
{
    hm_stream_t      *s = BIO_get_data(bio);
    hm_stream_impl_t *impl = hm__stream_impl(s);
    size_t            n;

    BIO_clear_retry_flags(bio);
    if (impl->in_len == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    n = hm_min((size_t) len, impl->in_len);
    memcpy(out, impl->in_ptr, n);
    impl->in_ptr += n;
    impl->in_len -= n;
    return (int) n;
}

static int
bio_write(BIO *bio, const char *in, int len)
{
    hm_stream_t *s = BIO_get_data(bio);

    BIO_clear_retry_flags(bio);
    if (hm__stream_out_append(s, (const uint8_t *) in, len) != 0) {
        return -1;
    }
    return len;
}

static long
bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO *
bio_new(hm_stream_t *s)
{
    BIO *bio;

    if (hm_bio_method == NULL) {
        hm_bio_method = BIO_meth_new(BIO_get_new_index(), "hamlyn stream");
        if (hm_bio_method == NULL) {
            return NULL;
        }
        BIO_meth_set_read(hm_bio_method, bio_read);
        BIO_meth_set_write(hm_bio_method, bio_write);
        BIO_meth_set_ctrl(hm_bio_method, bio_ctrl);
    }
    bio = BIO_new(hm_bio_method);
    if (bio == NULL) {
        return NULL;
    }
    BIO_set_data(bio, s);
    BIO_set_init(bio, 1);
    return bio;
}

/* ---- errors -------------------------------------------------------------- */

static const char *
verify_reason(long vr)
{
    switch (vr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return "unknown CA";
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "name mismatch";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_APPLICATION_VERIFICATION:
        return "certificate pin mismatch";
    default:
        return NULL;
    }
}

/* A fatal alert of the peer that refuses our side of the handshake (see
 * hm_stream_tls_refused()): none of them can answer application data. */
static int
refusal_alert(uint32_t e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL
        || ERR_GET_REASON(e) < SSL_AD_REASON_OFFSET)
    {
        return 0;
    }
    switch (ERR_GET_REASON(e) - SSL_AD_REASON_OFFSET) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_DECRYPT_ERROR:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return 1;
    default:
        return 0;
    }
}

/*
 * A TLS 1.3 peer that gives up on the handshake before it has keys of its
 * own (OpenSSL and curl refusing our certificate) sends its fatal alert
 * as a clear-text record, which the TLS library, expecting an encrypted
 * one, can only call "bad packet length".  When the input consumed last
 * ends with such a record (15 03 0x 00 02 02 DESC), returns the error
 * code of that alert as if it had been read, else e.  Failure path only.
 */
static uint32_t
clear_alert(hm_stream_t *s, SSL *ssl, uint32_t e)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);
    const uint8_t    *p;

    if (ERR_GET_LIB(e) != ERR_LIB_SSL
        || ERR_GET_REASON(e) != SSL_R_BAD_PACKET_LENGTH
        || !SSL_in_init(ssl) || impl->in == NULL || impl->in_ptr == NULL
        || impl->in_ptr < impl->in->data + 7
        || impl->in_ptr > impl->in->data + impl->in->len)
    {
        return e;
    }
    p = impl->in_ptr - 7;
    if (p[0] != 0x15 || p[1] != 0x03 || p[3] != 0x00 || p[4] != 0x02
        || p[5] != 0x02)
    {
        return e;
    }
    return ERR_PACK(ERR_LIB_SSL, SSL_AD_REASON_OFFSET + p[6]);
}

/*
 * Stores the reason of a failed SSL call (ret/err from SSL_get_error) in
 * the stream, from the verification result or the first error-queue entry,
 * then clears the queue.
 */
static void
tls_set_error(hm_stream_t *s, SSL *ssl, int err)
{
    char        words[80];
    const char *r, *vtext;
    uint32_t    e;
    long        vr;
    size_t      i;

    e = clear_alert(s, ssl, ERR_get_error());
    if (refusal_alert(e)) {
        hm__stream_impl(s)->flags |= HM_SF_TLS_REFUSED;
    }
    vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK && SSL_get0_peer_certificates(ssl) != NULL) {
        r = verify_reason(vr);
        vtext = X509_verify_cert_error_string(vr);
        if (r != NULL) {
            hm__stream_set_error(s, "%s (%s)", r, vtext);
        } else {
            hm__stream_set_error(s, "certificate verify failed (%s)", vtext);
        }
    } else if (e != 0 && (r = ERR_reason_error_string(e)) != NULL) {
        for (i = 0; r[i] != '\0' && i < sizeof(words) - 1; i++) {
            words[i] = r[i] == '_' ? ' ' : tolower((unsigned char) r[i]);
        }
        words[i] = '\0';
        hm__stream_set_error(s, "%s", words);
    } else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
        hm__stream_set_error(s, "peer closed the connection");
    } else {
        hm__stream_set_error(s, "TLS error %d", err);
    }
    ERR_clear_error();
}

/* ---- resumption handles ------------------------------------------------- */

/*
 * The resumption handle of hm_stream_tls_session(): a refcounted holder of
 * the latest session of a client stream (and of every stream that offered
 * it).  TLS 1.3 servers send their tickets after the handshake, so a
 * handle taken when the connect callback runs is still empty; the
 * new-session callback fills it when the ticket arrives, and whoever keeps
 * the handle (the upstream pool, per server) offers the newest session on
 * the next connect.
 */
typedef struct {
    int          refs;
    SSL_SESSION *sess;
} hm_tls_sess_t;

static hm_tls_sess_t *
sess_ref(hm_tls_sess_t *h)
{
    h->refs++;
    return h;
}

static void
sess_unref(hm_tls_sess_t *h)
{
    if (h != NULL && --h->refs == 0) {
        if (h->sess != NULL) {
            SSL_SESSION_free(h->sess);
        }
        free(h);
    }
}

/* ---- engine ------------------------------------------------------------- */

static int
tls_attach(hm_stream_t *s, SSL *ssl)
{
    BIO *bio = bio_new(s);

    if (bio == NULL) {
        SSL_free(ssl);
        hm__stream_set_error(s, "out of memory");
        ERR_clear_error();
        return HM_ERROR;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_app_data(ssl, s);
    s->tls = ssl;
    return HM_OK;
}

/* Creates the server SSL from ssl_ctx (the site's SSL_CTX). */
int
hm__tls_server_new(hm_stream_t *s, void *ssl_ctx)
{
    SSL *ssl = SSL_new(ssl_ctx);

    if (ssl == NULL) {
        hm__stream_set_error(s, "SSL_new failed");
        ERR_clear_error();
        return HM_ERROR;
    }
    SSL_set_accept_state(ssl);
    SSL_set_shed_handshake_config(ssl, 1);
    return tls_attach(s, ssl);
}

/* Creates the client SSL for an upstream (SNI, verification and client
 * certificate are in its SSL_CTX and verify param); offers the session of
 * the handle session (not consumed), which then also receives this
 * connection's new tickets. */
int
hm__tls_client_new(hm_stream_t *s, const void *upstream_tls, void *session)
{
    const hm_conf_upstream_tls_t *ut = upstream_tls;
    hm_stream_impl_t             *impl = hm__stream_impl(s);
    hm_tls_sess_t                *h = session;
    SSL                          *ssl;

    if (ut->tls == NULL) {
        /* built by modules/upstream_tls (postconfig) */
        hm__stream_set_error(s, "no upstream TLS context (is the "
                             "upstream_tls module compiled in?)");
        return HM_ERROR;
    }
    ssl = SSL_new(ut->tls);
    if (ssl == NULL) {
        hm__stream_set_error(s, "SSL_new failed");
        ERR_clear_error();
        return HM_ERROR;
    }
    SSL_set_connect_state(ssl);
    if (ut->server_name != NULL && !ut->server_name_ip) {
        SSL_set_tlsext_host_name(ssl, ut->server_name);
    }
    if (h != NULL) {
        if (h->sess != NULL) {
            SSL_set_session(ssl, h->sess);
        }
        impl->session = sess_ref(h);
    } else {
        h = calloc(1, sizeof(*h));
        if (h != NULL) {
            h->refs = 1;
        }
        impl->session = h;
    }
    return tls_attach(s, ssl);
}

int
hm__tls_handshake(hm_stream_t *s)
{
    SSL *ssl = s->tls;
    int  r, err;

    r = SSL_do_handshake(ssl);
    if (r == 1) {
        if (SSL_is_server(ssl) && SSL_version(ssl) >= TLS1_3_VERSION) {
            /* BoringSSL holds TLS 1.3 tickets back until the first write
             * (tls13_server.cc): a zero-byte write sends them with the
             * end of the handshake, as OpenSSL servers do, so a client
             * that leaves before any response still can resume. */
            (void) SSL_write(ssl, "", 0);
            ERR_clear_error();
        }
        return HM_OK;
    }
    err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        return HM_AGAIN;
    }
    tls_set_error(s, ssl, err);
    return HM_ERROR;
}

ssize_t
hm__tls_read(hm_stream_t *s, uint8_t *buf, size_t len)
{
    SSL *ssl = s->tls;
    int  r, err;

    r = SSL_read(ssl, buf, (int) hm_min(len, (size_t) 0x7fffffff));
    if (r > 0) {
        return r;
    }
    err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        return HM_AGAIN;
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return UV_EOF;
    }
    tls_set_error(s, ssl, err);
    return HM_STREAM_ETLS;
}

int
hm__tls_write(hm_stream_t *s, const uint8_t *data, size_t len)
{
    SSL *ssl = s->tls;
    int  r;

    while (len > 0) {
        r = SSL_write(ssl, data, (int) hm_min(len, (size_t) 0x40000000));
        if (r <= 0) {
            tls_set_error(s, ssl, SSL_get_error(ssl, r));
            return HM_ERROR;
        }
        data += r;
        len -= r;
    }
    return HM_OK;
}

int
hm__tls_shutdown(hm_stream_t *s)
{
    SSL_shutdown(s->tls);
    ERR_clear_error();
    return HM_OK;
}

int
hm__tls_pending(hm_stream_t *s)
{
    return s->tls != NULL && SSL_pending(s->tls) > 0;
}

void
hm__tls_free(hm_stream_t *s)
{
    hm_stream_impl_t *impl = hm__stream_impl(s);

    if (s->tls != NULL) {
        SSL_free(s->tls);
        s->tls = NULL;
    }
    sess_unref(impl->session);
    impl->session = NULL;
}

/*
 * SSL_CTX new-session callback of upstream contexts: stores the new
 * session in the stream's handle (see hm_tls_sess_t).  Takes ownership
 * (returns 1).
 */
int
hm__tls_client_new_session(SSL *ssl, SSL_SESSION *sess)
{
    hm_stream_t      *s = SSL_get_app_data(ssl);
    hm_stream_impl_t *impl;
    hm_tls_sess_t    *h;

    if (s == NULL || s->impl == NULL) {
        return 0;
    }
    impl = hm__stream_impl(s);
    h = impl->session;
    if (h == NULL || !SSL_SESSION_is_resumable(sess)) {
        return 0;
    }
    if (h->sess != NULL) {
        SSL_SESSION_free(h->sess);
    }
    h->sess = sess;
    return 1;
}

/* ---- queries ------------------------------------------------------------ */

const char *
hm_stream_tls_version(const hm_stream_t *s)
{
    return s->tls != NULL ? SSL_get_version(s->tls) : NULL;
}

/* The negotiated ALPN protocol, NULL when none.  The pointer stays valid
 * until the next call. */
const char *
hm_stream_alpn(const hm_stream_t *s)
{
    static char     buf[256];
    const uint8_t  *p;
    unsigned        len;

    if (s->tls == NULL) {
        return NULL;
    }
    SSL_get0_alpn_selected(s->tls, &p, &len);
    if (len == 0) {
        return NULL;
    }
    if (len == 8 && memcmp(p, "http/1.1", 8) == 0) {
        return "http/1.1";
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

int
hm_stream_tls_resumed(const hm_stream_t *s)
{
    return s->tls != NULL && SSL_session_reused(s->tls);
}

int
hm_stream_tls_refused(const hm_stream_t *s)
{
    const hm_stream_impl_t *impl = s->impl;

    return s->tls != NULL && impl != NULL
           && (impl->flags & HM_SF_TLS_REFUSED) != 0;
}

/* A TLS stream whose peer ended the connection (TCP FIN or reset)
 * without a close_notify alert: whatever was in flight may be cut off
 * (RFC 8446 6.1), so data delimited by the close is not complete. */
int
hm_stream_tls_truncated(const hm_stream_t *s)
{
    return s->tls != NULL
           && (SSL_get_shutdown(s->tls) & SSL_RECEIVED_SHUTDOWN) == 0;
}

static void
append(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > cap) {
        n = *len + 1 < cap ? cap - *len - 1 : 0;
    }
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

/*
 * Fills subject (RFC 2253), sans ("DNS:a.test, IP:1.2.3.4, email:x") and
 * sha256_hex (65 bytes: 64 hex digits and NUL) from the peer's verified
 * certificate.  Returns 1 when there is one, else 0 (buffers untouched).
 */
int
hm_stream_peer_cert_info(const hm_stream_t *s, char *subject, size_t slen,
                         char *sans, size_t sanlen, char *sha256_hex)
{
    static const char hex[] = "0123456789abcdef";
    X509              *x;
    BIO               *mem;
    GENERAL_NAMES     *gens;
    const GENERAL_NAME *g;
    const uint8_t     *p;
    unsigned char      md[EVP_MAX_MD_SIZE];
    unsigned int       mdlen = 0, i;
    size_t             len;
    char               ip[64];
    int                n;

    if (s->tls == NULL || SSL_get_verify_result(s->tls) != X509_V_OK) {
        return 0;
    }
    x = SSL_get_peer_certificate(s->tls);
    if (x == NULL) {
        return 0;
    }

    if (subject != NULL && slen > 0) {
        subject[0] = '\0';
        mem = BIO_new(BIO_s_mem());
        if (mem != NULL) {
            X509_NAME_print_ex(mem, X509_get_subject_name(x), 0,
                               XN_FLAG_RFC2253);
            n = BIO_read(mem, subject, (int) slen - 1);
            subject[n > 0 ? n : 0] = '\0';
            BIO_free(mem);
        }
    }

    if (sans != NULL && sanlen > 0) {
        sans[0] = '\0';
        len = 0;
        gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
            g = sk_GENERAL_NAME_value(gens, i);
            if (len > 0) {
                append(sans, sanlen, &len, ", ", 2);
            }
            switch (g->type) {
            case GEN_DNS:
                append(sans, sanlen, &len, "DNS:", 4);
                append(sans, sanlen, &len,
                       (const char *) ASN1_STRING_get0_data(g->d.dNSName),
                       ASN1_STRING_length(g->d.dNSName));
                break;
            case GEN_EMAIL:
                append(sans, sanlen, &len, "email:", 6);
                append(sans, sanlen, &len,
                       (const char *) ASN1_STRING_get0_data(g->d.rfc822Name),
                       ASN1_STRING_length(g->d.rfc822Name));
                break;
            case GEN_URI:
                append(sans, sanlen, &len, "URI:", 4);
                append(sans, sanlen, &len,
                       (const char *) ASN1_STRING_get0_data(
                           g->d.uniformResourceIdentifier),
                       ASN1_STRING_length(g->d.uniformResourceIdentifier));
                break;
            case GEN_IPADD:
                p = ASN1_STRING_get0_data(g->d.iPAddress);
                n = ASN1_STRING_length(g->d.iPAddress);
                memcpy(ip, "IP:", 3);
                if ((n == 4 || n == 16)
                    && inet_ntop(n == 4 ? AF_INET : AF_INET6, p, ip + 3,
                                 sizeof(ip) - 3) != NULL)
                {
                    /* the canonical text (RFC 5952: "fd00::5"), as the
                     * rest of Hamlyn prints addresses */
                } else {
                    snprintf(ip, sizeof(ip), "IP:?");
                }
                append(sans, sanlen, &len, ip, strlen(ip));
                break;
            default:
                if (len >= 2) {
                    len -= 2;       /* drop the separator */
                    sans[len] = '\0';
                }
                break;
            }
        }
        GENERAL_NAMES_free(gens);
    }

    if (sha256_hex != NULL) {
        X509_digest(x, EVP_sha256(), md, &mdlen);
        for (i = 0; i < mdlen; i++) {
            sha256_hex[2 * i] = hex[md[i] >> 4];
            sha256_hex[2 * i + 1] = hex[md[i] & 0xf];
        }
        sha256_hex[2 * mdlen] = '\0';
    }
    X509_free(x);
    ERR_clear_error();
    return 1;
}

/*
 * A new reference to the resumption handle of a client stream (see
 * hm_tls_sess_t): it holds the newest session this connection (or any
 * other offering the same handle) received, now or later.  NULL for clear
 * text and server streams.
 */
void *
hm_stream_tls_session(const hm_stream_t *s)
{
    const hm_stream_impl_t *impl = s->impl;

    if (s->tls == NULL || impl == NULL || impl->session == NULL) {
        return NULL;
    }
    return sess_ref(impl->session);
}

void
hm_stream_tls_session_free(void *session)
{
    sess_unref(session);
}

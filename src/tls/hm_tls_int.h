/*
 * hm_tls_int.h: internals shared by the files of src/tls (and only them:
 * this header includes <openssl/...>).
 *
 * hm_tls_cert_t is what hm_conf_cert_t.tls points to once
 * hm_tls_cert_load() (hm_tls_cert.c) has read a certificate entry; the site
 * and upstream contexts (hm_tls.c) are built from it.  Every member is owned
 * by the hm_tls_cert_t and released by hm_tls_cert_free(); users take their
 * own references (X509_up_ref, EVP_PKEY_up_ref, CRYPTO_BUFFER_up_ref).
 */
#ifndef HM_TLS_INT_H
#define HM_TLS_INT_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include <openssl/pool.h>

#include "hm_core.h"

typedef struct {
    X509            *leaf;          /* the certificate (first PEM block) */
    STACK_OF(X509)  *chain;         /* intermediates after it; may be NULL
                                       or empty */
    EVP_PKEY        *key;           /* matches leaf (checked at load) */
    uint8_t         *ocsp;          /* DER OCSP response (malloc) or NULL */
    size_t           ocsp_len;
    int              key_type;      /* EVP_PKEY_EC, EVP_PKEY_RSA,
                                       EVP_PKEY_ED25519 */
} hm_tls_cert_t;

/* hm_tls_io.c: new-session callback of upstream SSL_CTXs (keeps the
 * latest session in the stream). */
int hm__tls_client_new_session(SSL *ssl, SSL_SESSION *sess);

#endif

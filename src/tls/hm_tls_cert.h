/*
 * hm_tls_cert.h: what hm_tls_cert_load() leaves in hm_conf_cert_t.tls.
 * Only files under src/tls include this (it names OpenSSL types): the TLS
 * layer builds SSL_CTXs from it (SSL_CTX_use_certificate(leaf),
 * SSL_CTX_add1_chain_cert() for each of chain, SSL_CTX_use_PrivateKey(key),
 * SSL_CTX_set_ocsp_response(ocsp)).  The objects are owned by the cert and
 * released by hm_tls_cert_free(), which the config pool runs as a cleanup;
 * an SSL_CTX that keeps them takes its own references (the usual up-refs
 * of SSL_CTX_use_*), so it may outlive the configuration.
 */
#ifndef HM_TLS_CERT_H
#define HM_TLS_CERT_H

#include <openssl/ssl.h>

typedef struct hm_tls_cert_s {
    X509           *leaf;       /* the certificate itself */
    STACK_OF(X509) *chain;      /* intermediates after the leaf; may be empty */
    EVP_PKEY       *key;        /* matches leaf (checked at load) */
    int             key_type;   /* EVP_PKEY_EC, EVP_PKEY_RSA, EVP_PKEY_ED25519 */
    uint8_t        *ocsp;       /* DER OCSP response to staple, or NULL */
    size_t          ocsp_len;
} hm_tls_cert_t;

#endif

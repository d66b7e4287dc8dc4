/*
 * hm_tls_int.h: internals shared by the files of src/tls (and only them:
 * this header includes <openssl/...>).
 *
 * The site and upstream contexts (hm_tls.c) are built from hm_tls_cert_t
 * (hm_tls_cert.h); they take their own references to what they keep.
 */
#ifndef HM_TLS_INT_H
#define HM_TLS_INT_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include <openssl/pool.h>

#include "hm_core.h"

/* hm_tls_cert_t (what hm_conf_cert_t.tls points to) is defined by the
 * loader in hm_tls_cert.h. */
#include "hm_tls_cert.h"

/* hm_tls_io.c: new-session callback of upstream SSL_CTXs (keeps the
 * latest session in the stream). */
int hm__tls_client_new_session(SSL *ssl, SSL_SESSION *sess);

#endif

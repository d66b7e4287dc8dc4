/*
 * hm_tls.h: the TLS layer's interface.  Files under src/tls are the only
 * ones that include <openssl/...>; everything else sees opaque pointers.
 */
#ifndef HM_TLS_H
#define HM_TLS_H

#include "hm_conf.h"

/* Reads cert->cert_path (PEM chain, leaf first), cert->key_path (PEM
 * private key) and cert->ocsp_path (DER OCSP response) if set; checks that
 * the key matches the certificate.  Stores the loaded objects in
 * cert->tls.  Returns HM_OK, or HM_ERROR with a reason in err. */
int hm_tls_cert_load(hm_conf_cert_t *cert, char *err, size_t errlen);
void hm_tls_cert_free(hm_conf_cert_t *cert);

/* Checks the validity dates of the leaf that hm_tls_cert_load() loaded
 * against the current time: HM_OK, or HM_DECLINED with "expired on
 * 2021-01-01T00:00:00Z" or "not valid before ..." in msg (a warning for
 * the operator: the pair still loads, as nginx takes it). */
int hm_tls_cert_check_dates(const hm_conf_cert_t *cert, char *msg,
                            size_t msglen);

/* Reads a PEM CA bundle file to check it (config validation): HM_OK or
 * HM_ERROR with a reason. */
int hm_tls_ca_check(const char *path, char *err, size_t errlen);

/* Reads a runtime.tls_session_ticket_keys file to check it (config
 * validation, so that -t reports it with every other error): HM_OK or
 * HM_ERROR with a reason ("FILE" line N: ...). */
int hm_tls_ticket_keys_check(const char *path, char *err, size_t errlen);

/* Builds site->tls_ctx for a terminating site (certificates, versions,
 * ALPN, client auth, tickets, OCSP).  HM_OK or HM_ERROR with a reason. */
int hm_tls_site_init(hm_conf_t *conf, hm_conf_site_t *site, char *err,
                     size_t errlen);
void hm_tls_site_cleanup(hm_conf_site_t *site);

/* Builds u->tls.tls (the upstream's client SSL_CTX: CA or system
 * defaults, host name check on server_name, pins, client certificate,
 * session callback).  Freed with conf->pool.  Called for every TLS
 * upstream of a configuration by modules/upstream_tls (postconfig); does
 * nothing when u->tls.tls is already built.  HM_OK or HM_ERROR with a
 * reason. */
int hm_tls_upstream_init(hm_conf_t *conf, hm_conf_upstream_t *u, char *err,
                         size_t errlen);

/* Counters of this worker: completed handshakes, failed ones, resumed
 * ones (for metrics). */
void hm_tls_stats(uint64_t *handshakes, uint64_t *failed, uint64_t *resumed);

/* Library version string for -V. */
const char *hm_tls_version(void);

/* Checks a TLS 1.2 cipher list (sites.*.tls.ciphers) as the TLS layer
 * will apply it: HM_OK or HM_ERROR with a reason.  Implemented in
 * hm_tls_cert.c, used by the configuration loader. */
int hm_tls_ciphers_check(const char *ciphers, char *err, size_t errlen);

/* Most certificates one terminating site may list (sites.*.tls.certificates;
 * the loader refuses more). */
#define HM_TLS_MAX_CERTS 16

/* Checks a DER OCSPResponse (RFC 6960; hostile input, bounds-checked):
 * HM_OK when its status is successful and one of its single responses is
 * for the certificate whose serial number is serial (a DER INTEGER, tag
 * and length included); else HM_DECLINED with the reason in msg.  Pure:
 * no signature or date is checked. */
int hm_tls_ocsp_match(const uint8_t *der, size_t len, const uint8_t *serial,
                      size_t serial_len, char *msg, size_t msglen);

/* hm_tls_ocsp_match() for the OCSP response and leaf that
 * hm_tls_cert_load() loaded into cert (HM_OK without a response): a
 * response for another certificate is stapled in vain (the loader warns). */
int hm_tls_cert_check_ocsp(const hm_conf_cert_t *cert, char *msg,
                           size_t msglen);

#endif

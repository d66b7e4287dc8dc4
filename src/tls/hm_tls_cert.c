/*
 * hm_tls_cert.c: reading certificates, keys, OCSP responses and CA bundles
 * for the configuration loader.  hm_conf.c calls these while it validates
 * the file (in the master, at start and at reload): a certificate whose
 * key does not match, an unreadable chain or an empty CA bundle is a
 * configuration error with a clear reason, never a surprise at the first
 * handshake.  The loaded objects (hm_tls_cert_t, hm_tls_cert.h) stay in
 * hm_conf_cert_t.tls for the TLS layer to build its SSL_CTXs from; the
 * config pool frees them through hm_tls_cert_free().
 */
#include "hm_core.h"
#include "hm_tls.h"
#include "hm_tls_cert.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define HM_TLS_OCSP_MAX (1024 * 1024)

/*
 * Appends the first error of BoringSSL's queue (if any) to err after
 * what, then clears the queue.
 */
static void
tls_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e;
    char          buf[160];

    e = ERR_peek_error();
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "%s (%s)", what, buf);
    } else {
        snprintf(err, errlen, "%s", what);
    }
    ERR_clear_error();
}

/*
 * Opens path for reading as a BIO after checking that it is a regular
 * file.  Returns the BIO or NULL with a reason in err.
 */
static BIO *
open_file(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    BIO        *bio;

    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot read %s \"%s\": %s", what, path,
                 strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s \"%s\" is not a regular file", what, path);
        return NULL;
    }
    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        snprintf(err, errlen, "cannot read %s \"%s\": %s", what, path,
                 strerror(errno));
        ERR_clear_error();
        return NULL;
    }
    return bio;
}

/*
 * Reads the whole DER file path (at most HM_TLS_OCSP_MAX bytes) into a
 * new malloc'ed buffer.  Returns HM_OK or HM_ERROR with a reason.
 */
static int
read_ocsp(const char *path, uint8_t **out, size_t *outlen, char *err,
          size_t errlen)
{
    FILE       *f;
    struct stat st;
    uint8_t    *buf;
    size_t      n;

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read OCSP response \"%s\": %s", path,
                 strerror(errno));
        return HM_ERROR;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "OCSP response \"%s\" is not a regular file",
                 path);
        fclose(f);
        return HM_ERROR;
    }
    if (st.st_size <= 0 || st.st_size > HM_TLS_OCSP_MAX) {
        snprintf(err, errlen, "OCSP response \"%s\" is empty or larger "
                 "than %d bytes", path, HM_TLS_OCSP_MAX);
        fclose(f);
        return HM_ERROR;
    }
    buf = OPENSSL_malloc((size_t) st.st_size);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return HM_ERROR;
    }
    n = fread(buf, 1, (size_t) st.st_size, f);
    fclose(f);
    if (n != (size_t) st.st_size) {
        OPENSSL_free(buf);
        snprintf(err, errlen, "cannot read OCSP response \"%s\"", path);
        return HM_ERROR;
    }
    /* A DER OCSPResponse is a SEQUENCE: a PEM or text file is refused. */
    if (buf[0] != 0x30) {
        OPENSSL_free(buf);
        snprintf(err, errlen, "OCSP response \"%s\" is not DER", path);
        return HM_ERROR;
    }
    *out = buf;
    *outlen = n;
    return HM_OK;
}

void
hm_tls_cert_free(hm_conf_cert_t *cert)
{
    hm_tls_cert_t *tc;

    if (cert == NULL || cert->tls == NULL) {
        return;
    }
    tc = cert->tls;
    X509_free(tc->leaf);
    sk_X509_pop_free(tc->chain, X509_free);
    EVP_PKEY_free(tc->key);
    OPENSSL_free(tc->ocsp);
    OPENSSL_free(tc);
    cert->tls = NULL;
}

/*
 * Loads cert->cert_path (PEM: leaf first, then intermediates),
 * cert->key_path (PEM private key) and the optional DER OCSP response,
 * checks that the key matches the leaf, and stores an hm_tls_cert_t in
 * cert->tls.  Returns HM_OK, or HM_ERROR with a reason in err and the key
 * of the file at fault in cert->error_key (nothing is kept then).
 */
int
hm_tls_cert_load(hm_conf_cert_t *cert, char *err, size_t errlen)
{
    hm_tls_cert_t *tc;
    BIO           *bio;
    X509          *x;
    unsigned long  e;

    cert->error_key = NULL;
    tc = OPENSSL_malloc(sizeof(*tc));
    if (tc == NULL) {
        snprintf(err, errlen, "out of memory");
        return HM_ERROR;
    }
    memset(tc, 0, sizeof(*tc));
    cert->tls = tc;

    ERR_clear_error();
    cert->error_key = "cert";
    bio = open_file(cert->cert_path, "certificate", err, errlen);
    if (bio == NULL) {
        goto failed;
    }
    tc->leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (tc->leaf == NULL) {
        BIO_free(bio);
        tls_reason(err, errlen, "no PEM certificate found in \"cert\" file");
        goto failed;
    }
    tc->chain = sk_X509_new_null();
    if (tc->chain == NULL) {
        BIO_free(bio);
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    for ( ;; ) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM
                && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            {
                ERR_clear_error();
                break;
            }
            BIO_free(bio);
            tls_reason(err, errlen, "bad certificate in the chain of "
                       "\"cert\" file");
            goto failed;
        }
        if (!sk_X509_push(tc->chain, x)) {
            X509_free(x);
            BIO_free(bio);
            snprintf(err, errlen, "out of memory");
            goto failed;
        }
        if (sk_X509_num(tc->chain) > 16) {
            BIO_free(bio);
            snprintf(err, errlen, "more than 16 certificates in the chain");
            goto failed;
        }
    }
    BIO_free(bio);

    cert->error_key = "key";
    bio = open_file(cert->key_path, "key", err, errlen);
    if (bio == NULL) {
        goto failed;
    }
    tc->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (tc->key == NULL) {
        /* the hint only where it applies: a key behind a pass phrase */
        tls_reason(err, errlen,
                   ERR_GET_REASON(ERR_peek_error()) == PEM_R_BAD_PASSWORD_READ
                   ? "the private key in the \"key\" file is encrypted: "
                     "only unencrypted keys are read"
                   : "no PEM private key found in \"key\" file");
        goto failed;
    }
    tc->key_type = EVP_PKEY_id(tc->key);
    if (tc->key_type != EVP_PKEY_EC && tc->key_type != EVP_PKEY_RSA
        && tc->key_type != EVP_PKEY_ED25519)
    {
        snprintf(err, errlen, "unsupported key type (use ECDSA, RSA or "
                 "Ed25519)");
        goto failed;
    }
    if (!X509_check_private_key(tc->leaf, tc->key)) {
        ERR_clear_error();
        cert->error_key = NULL;
        snprintf(err, errlen, "key \"%s\" does not match certificate \"%s\"",
                 cert->key_path, cert->cert_path);
        goto failed;
    }

    cert->error_key = "ocsp";
    if (cert->ocsp_path != NULL
        && read_ocsp(cert->ocsp_path, &tc->ocsp, &tc->ocsp_len, err, errlen)
           != HM_OK)
    {
        goto failed;
    }
    cert->error_key = NULL;
    return HM_OK;

failed:
    hm_tls_cert_free(cert);
    ERR_clear_error();
    return HM_ERROR;
}

/*
 * Writes "<what> <t + days + secs as RFC 3339 UTC>" to msg, where days and
 * secs are the ASN1_TIME_diff() of a certificate date from t.
 */
static void
date_msg(char *msg, size_t msglen, const char *what, time_t t, int days,
         int secs)
{
    struct tm tm;
    char      when[32];

    t += (time_t) days * 86400 + secs;
    if (gmtime_r(&t, &tm) == NULL
        || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        snprintf(when, sizeof(when), "(unprintable date)");
    }
    snprintf(msg, msglen, "%s %s", what, when);
}

int
hm_tls_cert_check_dates(const hm_conf_cert_t *cert, char *msg,
                        size_t msglen)
{
    const hm_tls_cert_t *tc = cert->tls;
    ASN1_TIME           *now;
    time_t               t = time(NULL);
    int                  days, secs, rc = HM_OK;

    if (tc == NULL || tc->leaf == NULL) {
        return HM_OK;
    }
    now = ASN1_TIME_set(NULL, t);
    if (now == NULL) {
        return HM_OK;               /* out of memory: no verdict */
    }
    if (ASN1_TIME_diff(&days, &secs, now, X509_get0_notBefore(tc->leaf))
        && (days > 0 || secs > 0))
    {
        date_msg(msg, msglen, "certificate not valid before", t, days, secs);
        rc = HM_DECLINED;
    } else if (ASN1_TIME_diff(&days, &secs, now,
                              X509_get0_notAfter(tc->leaf))
               && (days < 0 || secs < 0))
    {
        date_msg(msg, msglen, "certificate expired on", t, days, secs);
        rc = HM_DECLINED;
    }
    ASN1_TIME_free(now);
    ERR_clear_error();
    return rc;
}

/*
 * Checks that path is a readable PEM file holding at least one
 * certificate (a CA bundle).  HM_OK or HM_ERROR with a reason.
 */
int
hm_tls_ca_check(const char *path, char *err, size_t errlen)
{
    BIO                  *bio;
    STACK_OF(X509_INFO)  *infos;
    size_t                i, n;

    ERR_clear_error();
    bio = open_file(path, "CA bundle", err, errlen);
    if (bio == NULL) {
        return HM_ERROR;
    }
    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (infos == NULL) {
        tls_reason(err, errlen, "cannot parse CA bundle");
        return HM_ERROR;
    }
    n = 0;
    for (i = 0; i < sk_X509_INFO_num(infos); i++) {
        if (sk_X509_INFO_value(infos, i)->x509 != NULL) {
            n++;
        }
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    ERR_clear_error();
    if (n == 0) {
        snprintf(err, errlen, "no PEM certificate in CA bundle \"%s\"", path);
        return HM_ERROR;
    }
    return HM_OK;
}

/*
 * Checks a TLS 1.2 cipher list string the way the TLS layer will use it
 * (SSL_CTX_set_strict_cipher_list: an unknown name is an error).  HM_OK or
 * HM_ERROR with a reason naming the first element that is refused on its
 * own (an unknown name), else the TLS library's reason.
 */
int
hm_tls_ciphers_check(const char *ciphers, char *err, size_t errlen)
{
    SSL_CTX    *ctx;
    const char *p, *e;
    char        one[128];
    size_t      n;
    int         ok;

    ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return HM_ERROR;
    }
    ok = SSL_CTX_set_strict_cipher_list(ctx, ciphers);
    if (ok) {
        SSL_CTX_free(ctx);
        return HM_OK;
    }
    tls_reason(err, errlen, "invalid cipher list");
    for (p = ciphers; *p != '\0'; p = e) {
        p += strspn(p, ":, []|!+-");
        e = p + strcspn(p, ":, []|");
        n = (size_t) (e - p);
        if (n == 0 || n >= sizeof(one) || *p == '@') {
            continue;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if (!SSL_CTX_set_strict_cipher_list(ctx, one)) {
            ERR_clear_error();
            snprintf(err, errlen, "invalid cipher list: unknown cipher "
                     "\"%s\"", one);
            break;
        }
    }
    SSL_CTX_free(ctx);
    return HM_ERROR;
}


/* id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 (RFC 6960 4.2.1) */
static const uint8_t ocsp_basic_oid[] = {
    0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01
};

int
hm_tls_ocsp_match(const uint8_t *der, size_t len, const uint8_t *serial,
                  size_t serial_len, char *msg, size_t msglen)
{
    CBS      in, resp, status, bytes, rb, oid, octet, basic, tbs, list,
             single, certid, sn, skip;
    unsigned st;

    CBS_init(&in, der, len);
    if (!CBS_get_asn1(&in, &resp, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0
        || !CBS_get_asn1(&resp, &status, CBS_ASN1_ENUMERATED)
        || CBS_len(&status) != 1)
    {
        goto malformed;
    }
    st = CBS_data(&status)[0];
    if (st != 0) {
        snprintf(msg, msglen, "is not a successful response (status %u): "
                 "it says nothing about this certificate", st);
        return HM_DECLINED;
    }
    if (!CBS_get_asn1(&resp, &bytes, CBS_ASN1_CONTEXT_SPECIFIC
                                     | CBS_ASN1_CONSTRUCTED | 0)
        || !CBS_get_asn1(&bytes, &rb, CBS_ASN1_SEQUENCE)
        || !CBS_get_asn1(&rb, &oid, CBS_ASN1_OBJECT)
        || !CBS_mem_equal(&oid, ocsp_basic_oid, sizeof(ocsp_basic_oid))
        || !CBS_get_asn1(&rb, &octet, CBS_ASN1_OCTETSTRING)
        || !CBS_get_asn1(&octet, &basic, CBS_ASN1_SEQUENCE)
        || !CBS_get_asn1(&basic, &tbs, CBS_ASN1_SEQUENCE)
        || !CBS_get_optional_asn1(&tbs, NULL, NULL, CBS_ASN1_CONTEXT_SPECIFIC
                                                    | CBS_ASN1_CONSTRUCTED
                                                    | 0)
        || !CBS_get_any_asn1_element(&tbs, NULL, NULL, NULL) /* responder */
        || !CBS_get_asn1(&tbs, &skip, CBS_ASN1_GENERALIZEDTIME) /* produced */
        || !CBS_get_asn1(&tbs, &list, CBS_ASN1_SEQUENCE))
    {
        goto malformed;
    }
    while (CBS_len(&list) > 0) {
        if (!CBS_get_asn1(&list, &single, CBS_ASN1_SEQUENCE)
            || !CBS_get_asn1(&single, &certid, CBS_ASN1_SEQUENCE)
            || !CBS_get_asn1(&certid, &skip, CBS_ASN1_SEQUENCE)  /* hash */
            || !CBS_get_asn1(&certid, &skip, CBS_ASN1_OCTETSTRING) /* name */
            || !CBS_get_asn1(&certid, &skip, CBS_ASN1_OCTETSTRING) /* key */
            || !CBS_get_asn1_element(&certid, &sn, CBS_ASN1_INTEGER))
        {
            goto malformed;
        }
        if (CBS_mem_equal(&sn, serial, serial_len)) {
            return HM_OK;
        }
    }
    snprintf(msg, msglen, "is for another certificate (none of its "
             "responses has this certificate's serial number)");
    return HM_DECLINED;

malformed:
    snprintf(msg, msglen, "is not a well-formed basic OCSP response "
             "(RFC 6960)");
    return HM_DECLINED;
}

int
hm_tls_cert_check_ocsp(const hm_conf_cert_t *cert, char *msg, size_t msglen)
{
    hm_tls_cert_t *tc = cert->tls;
    uint8_t       *serial = NULL;
    int            n, rc;

    if (tc == NULL || tc->ocsp == NULL) {
        return HM_OK;
    }
    n = i2d_ASN1_INTEGER(X509_get_serialNumber(tc->leaf), &serial);
    if (n <= 0) {
        ERR_clear_error();
        return HM_OK;               /* nothing to compare with */
    }
    rc = hm_tls_ocsp_match(tc->ocsp, tc->ocsp_len, serial, (size_t) n, msg,
                           msglen);
    OPENSSL_free(serial);
    return rc;
}

/*
 * hm_tls_hello.h: a pure, bounds-checked ClientHello parser (no OpenSSL
 * state, no I/O; fuzzed by t/fuzz/fuzz_tls_hello.c).
 *
 * Input is the bytes read from the client so far.  The ClientHello may be
 * split over several TLS records and several reads; the parser reassembles
 * the handshake message from the records' fragments.
 */
#ifndef HM_TLS_HELLO_H
#define HM_TLS_HELLO_H

#define HM_TLS_HELLO_MAX_SNI 255

struct hm_tls_hello_s {
    uint16_t    record_version;     /* first record's legacy version */
    uint16_t    client_version;     /* ClientHello.legacy_version */
    int         has_sni;
    char        sni[HM_TLS_HELLO_MAX_SNI + 1];  /* host_name, NUL-ended */
    size_t      sni_len;
    int         has_alpn;
    char        alpn[256];          /* protocols, comma separated */
    int         tls13;              /* supported_versions offers 1.3 */
    uint16_t    max_version;        /* highest version offered */
    int         has_sigalgs;
    int         ecdsa_ok;           /* offers an ECDSA signature scheme */
    size_t      consumed;           /* bytes of whole records holding the
                                     * hello (the rest is later data) */
    const char *error;              /* reason, on HM_ERROR */
};

/*
 * Parses buf[0..len).  Returns
 *   HM_OK        a complete ClientHello was parsed into *hello;
 *   HM_AGAIN     the bytes so far are a valid prefix: read more;
 *   HM_DECLINED  not a TLS handshake record (e.g. plain HTTP): hello->error
 *                says what was seen;
 *   HM_ERROR     malformed; hello->error says why (for the log and alert).
 * The SNI is validated as a host name (letters, digits, '-', '.', '_',
 * 1..255 bytes, no empty labels) and lower-cased; an SNI extension that is
 * present but invalid is HM_ERROR.  max_hello bounds the handshake message
 * length accepted (a larger declared length is HM_ERROR).
 */
int hm_tls_hello_parse(const uint8_t *buf, size_t len, size_t max_hello,
                       hm_tls_hello_t *hello);

/* Writes a fatal TLS alert record (7 bytes) for alert into out. */
size_t hm_tls_alert_record(uint8_t *out, uint8_t alert);

#define HM_TLS_ALERT_HANDSHAKE_FAILURE   40
#define HM_TLS_ALERT_DECODE_ERROR        50
#define HM_TLS_ALERT_PROTOCOL_VERSION    70
#define HM_TLS_ALERT_INTERNAL_ERROR      80
#define HM_TLS_ALERT_UNRECOGNIZED_NAME  112

/* hello->error (HM_DECLINED) when the bytes are a PROXY protocol v1 or v2
 * header: the listener is missing "proxy_protocol": true.  Compare the
 * pointer. */
extern const char hm_tls_hello_proxy_header[];

#endif

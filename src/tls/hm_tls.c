/*
 * hm_tls.c: the TLS contexts (built once per configuration generation, in
 * the master, before the workers fork) and the hand-off of a terminating
 * connection from preread to the TLS handshake.
 *
 * Data flow: hm_cycle_new() calls hm_tls_site_init() for every terminating
 * site, which builds site->tls_ctx (certificates, versions, ALPN, client
 * auth, session tickets, OCSP).  The client contexts of TLS upstreams
 * (hm_tls_upstream_init, freed with the configuration pool) are built by
 * modules/upstream_tls's postconfig, the one owner of upstream TLS
 * profiles.  At run time, after sni_route picked a
 * terminating site, preread calls hm_tls_terminate_start(c): the socket
 * becomes an hm_stream_t, the preread ClientHello is fed to the handshake,
 * and on success the HTTP layer takes the connection.  Nothing per
 * connection is built here: the select-certificate callback only swaps in
 * the pre-built RSA chain for clients that cannot take ECDSA.
 *
 * Sessions: stateless tickets, and for TLS 1.2 clients that take none a
 * session ID cache shared by all workers (see "session ID cache").
 * Session tickets: every site of one configuration shares one key set.
 * runtime.tls_session_ticket_keys names a file of keys (one base64 key per
 * line: 80 bytes = 16 name + 32 HMAC-SHA256 + 32 AES-256 key, or 48 bytes =
 * 16 + 16 + 16 AES-128; the first line encrypts new tickets, every line
 * decrypts; '#' lines ignored; a raw 48- or 80-byte binary file as nginx
 * writes it is accepted too).  Without it, keys derive from a random
 * secret drawn at start: one key per hour (HMAC of the secret and the hour
 * number), the previous hour's still decrypts, so every worker forked from
 * the same master agrees without talking to the others.
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_conn.h"
#include "hm_log.h"
#include "hm_stream.h"
#include "hm_http.h"
#include "hm_tls.h"
#include "hm_metrics.h"
#include "hm_tls_int.h"
#include "hm_tls_hello.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Other layers' entry points, weak so that this file links (and unit
 * tests build) in a tree where they are not there yet. */
#pragma weak hm_http_conn_start
#pragma weak hm_conn_log
#pragma weak hm_conn_free

#define HM_TICKET_MAX_KEYS 16
#define HM_TICKET_ROTATE_S 3600

typedef struct {
    uint8_t name[16];
    uint8_t hmac[32];
    uint8_t aes[32];
    size_t  hmac_len;
    size_t  aes_len;                /* 16 or 32 */
} hm_ticket_key_t;

typedef struct {
    int             from_file;
    hm_ticket_key_t keys[HM_TICKET_MAX_KEYS];  /* file: [0] encrypts */
    size_t          nkeys;
    uint8_t         secret[32];     /* random mode */
    uint64_t        hour;           /* random mode: keys[0] = hour,
                                       keys[1] = hour - 1 */
} hm_tickets_t;

/* One certificate of a site, ready to be swapped in per connection (at
 * most HM_TLS_MAX_CERTS, hm_tls.h). */
typedef struct {
    hm_tls_cert_t   *tc;
    CRYPTO_BUFFER  **chain;         /* leaf, intermediates */
    size_t           nchain;
    EVP_PKEY        *key;           /* own reference */
    uint8_t         *ocsp;          /* own copy or NULL (stapled per
                                       connection when the site has
                                       several certificates) */
    size_t           ocsp_len;
    char           **names;         /* DNS names of the leaf (lower case,
                                       "*.x" wildcards), else its CN */
    size_t           nnames;
    int              ec;            /* an ECDSA key */
    int              ed;            /* an Ed25519 key */
    uint16_t         sigalg13;      /* EC: the TLS 1.3 scheme of its curve */
    uint16_t         group;         /* EC: the TLS group id of its curve */
} hm_tls_pick_t;

/* Per-site state hung on the SSL_CTX (ex_data). */
typedef struct {
    hm_conf_site_t  *site;
    hm_tls_pick_t    picks[HM_TLS_MAX_CERTS];   /* in configuration order */
    size_t           npicks;
    hm_tls_pick_t   *def;           /* the one on the SSL_CTX: the first
                                       ECDSA certificate, else the first */
    uint8_t         *alpn;          /* wire format */
    size_t           alpn_len;
    hm_tickets_t    *tickets;
    int              max_version;
    uint16_t         ecdsa_suites[32];  /* TLS 1.2 ECDSA suites enabled */
    size_t           necdsa_suites;
} hm_tls_site_t;

static int hm_tls_site_index = -1;

/* Counters of this worker, for metrics. */
static uint64_t hm_tls_nhandshakes;
static uint64_t hm_tls_nfailed;
static uint64_t hm_tls_nresumed;

/* ---- helpers ---------------------------------------------------------- */

static void
err_from_queue(char *err, size_t errlen, const char *what)
{
    uint32_t    e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (r != NULL) {
        snprintf(err, errlen, "%s: %s", what, r);
    } else {
        snprintf(err, errlen, "%s", what);
    }
    ERR_clear_error();
}

/* Builds a CRYPTO_BUFFER array: leaf then intermediates. */
static CRYPTO_BUFFER **
cert_buffers(hm_tls_cert_t *tc, size_t *n)
{
    CRYPTO_BUFFER **bufs;
    X509           *x;
    uint8_t        *der;
    size_t          i, k, nchain;
    int             len;

    nchain = tc->chain != NULL ? sk_X509_num(tc->chain) : 0;
    bufs = hm_xcalloc(nchain + 1, sizeof(*bufs));
    k = 0;
    for (i = 0; i <= nchain; i++) {
        x = i == 0 ? tc->leaf : sk_X509_value(tc->chain, i - 1);
        der = NULL;
        len = i2d_X509(x, &der);
        if (len <= 0) {
            continue;
        }
        bufs[k++] = CRYPTO_BUFFER_new(der, len, NULL);
        OPENSSL_free(der);
    }
    *n = k;
    return bufs;
}

static void
cert_buffers_free(CRYPTO_BUFFER **bufs, size_t n)
{
    size_t i;

    if (bufs == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        CRYPTO_BUFFER_free(bufs[i]);
    }
    free(bufs);
}

/* ---- session tickets -------------------------------------------------- */

/* Cache: the key set of the conf being built (conf and its pool: a new
 * conf may reuse a freed one's address, never while its pool lives). */
static hm_conf_t    *tickets_conf;
static hm_pool_t    *tickets_pool;
static hm_tickets_t *tickets_set;

static void
tickets_cleanup(void *data)
{
    hm_tickets_t *t = data;

    if (tickets_set == t) {
        tickets_set = NULL;
        tickets_conf = NULL;
        tickets_pool = NULL;
    }
    OPENSSL_cleanse(t, sizeof(*t));
}

static int
ticket_key_parse(hm_ticket_key_t *k, const uint8_t *raw, size_t len)
{
    if (len != 48 && len != 80) {
        return HM_ERROR;
    }
    memcpy(k->name, raw, 16);
    k->hmac_len = len == 80 ? 32 : 16;
    k->aes_len = len == 80 ? 32 : 16;
    memcpy(k->hmac, raw + 16, k->hmac_len);
    memcpy(k->aes, raw + 16 + k->hmac_len, k->aes_len);
    return HM_OK;
}

/*
 * Reads the ticket key file (format in the file comment).  Returns HM_OK
 * or HM_ERROR with a reason naming the file (its JSON path is the
 * caller's to add).
 */
static int
tickets_load_file(hm_tickets_t *t, const char *path, char *err, size_t errlen)
{
    FILE    *f;
    uint8_t  data[65536], raw[128];
    size_t   n, pos, end, len, outlen;
    int      line = 0, text_ok = 1, too_many = 0;

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read \"%s\"", path);
        return HM_ERROR;
    }
    n = fread(data, 1, sizeof(data) - 1, f);
    fclose(f);
    data[n] = '\0';

    t->nkeys = 0;
    for (pos = 0; pos < n && text_ok; pos = end + 1) {
        for (end = pos; end < n && data[end] != '\n'; end++) {
            /* find end of line */
        }
        line++;
        len = end - pos;
        while (len > 0 && (data[pos + len - 1] == '\r'
                           || data[pos + len - 1] == ' '))
        {
            len--;
        }
        while (len > 0 && data[pos] == ' ') {
            pos++;
            len--;
        }
        if (len == 0 || data[pos] == '#') {
            continue;
        }
        if (len > 120
            || !EVP_DecodeBase64(raw, &outlen, sizeof(raw), data + pos, len)
            || t->nkeys == HM_TICKET_MAX_KEYS
            || ticket_key_parse(&t->keys[t->nkeys], raw, outlen) != HM_OK)
        {
            too_many = t->nkeys == HM_TICKET_MAX_KEYS;
            text_ok = 0;
            break;
        }
        t->nkeys++;
    }
    ERR_clear_error();
    if (text_ok && t->nkeys > 0) {
        return HM_OK;
    }
    if (n == 48 || n == 80) {
        t->nkeys = 1;
        ticket_key_parse(&t->keys[0], data, n);
        return HM_OK;
    }
    if (text_ok) {
        snprintf(err, errlen, "\"%s\" has no key (expected base64 of a 48- "
                 "or 80-byte key per line)", path);
    } else if (too_many) {
        snprintf(err, errlen, "\"%s\" line %d: more than %d keys", path,
                 line, HM_TICKET_MAX_KEYS);
    } else {
        snprintf(err, errlen, "\"%s\" line %d: expected base64 of a 48- or "
                 "80-byte key per line", path, line);
    }
    t->nkeys = 0;
    return HM_ERROR;
}

int
hm_tls_ticket_keys_check(const char *path, char *err, size_t errlen)
{
    hm_tickets_t t;
    int          rc;

    memset(&t, 0, sizeof(t));
    rc = tickets_load_file(&t, path, err, errlen);
    OPENSSL_cleanse(&t, sizeof(t));
    return rc;
}

static void
tickets_derive(hm_tickets_t *t, hm_ticket_key_t *k, uint64_t hour)
{
    uint8_t      msg[9], out[EVP_MAX_MD_SIZE];
    unsigned int outlen;
    int          i;

    for (i = 0; i < 8; i++) {
        msg[1 + i] = (uint8_t) (hour >> (56 - 8 * i));
    }
    msg[0] = 'n';
    HMAC(EVP_sha256(), t->secret, sizeof(t->secret), msg, 9, out, &outlen);
    memcpy(k->name, out, 16);
    msg[0] = 'h';
    HMAC(EVP_sha256(), t->secret, sizeof(t->secret), msg, 9, out, &outlen);
    memcpy(k->hmac, out, 32);
    msg[0] = 'a';
    HMAC(EVP_sha256(), t->secret, sizeof(t->secret), msg, 9, out, &outlen);
    memcpy(k->aes, out, 32);
    k->hmac_len = 32;
    k->aes_len = 32;
}

/* Random mode: makes keys[0] the key of the current hour, keys[1] the
 * previous one. */
static void
tickets_rotate(hm_tickets_t *t)
{
    uint64_t hour = (uint64_t) time(NULL) / HM_TICKET_ROTATE_S;

    if (t->nkeys == 2 && t->hour == hour) {
        return;
    }
    t->hour = hour;
    tickets_derive(t, &t->keys[0], hour);
    tickets_derive(t, &t->keys[1], hour - 1);
    t->nkeys = 2;
}

static hm_tickets_t *
tickets_get(hm_conf_t *conf, char *err, size_t errlen)
{
    hm_tickets_t *t;
    char          why[512];

    if (tickets_conf == conf && tickets_pool == conf->pool
        && tickets_set != NULL)
    {
        return tickets_set;
    }
    t = hm_pool_calloc(conf->pool, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf->runtime.tls_session_ticket_keys != NULL) {
        if (tickets_load_file(t, conf->runtime.tls_session_ticket_keys, why,
                              sizeof(why)) != HM_OK)
        {
            snprintf(err, errlen, "runtime.tls_session_ticket_keys: %s", why);
            return NULL;
        }
        t->from_file = 1;
    } else {
        RAND_bytes(t->secret, sizeof(t->secret));
        tickets_rotate(t);
    }
    hm_pool_cleanup_add(conf->pool, tickets_cleanup, t);
    tickets_conf = conf;
    tickets_pool = conf->pool;
    tickets_set = t;
    return t;
}

/*
 * BoringSSL ticket key callback: encrypt with the current key, decrypt
 * with any known key (asking for a fresh ticket when it was not the
 * current one).  Returns 1 (ok), 2 (ok, renew), 0 (unknown key: full
 * handshake), -1 (error).
 */
static int
ticket_key_cb(SSL *ssl, uint8_t *name, uint8_t *iv, EVP_CIPHER_CTX *ectx,
              HMAC_CTX *hctx, int encrypt)
{
    hm_tls_site_t   *ts;
    hm_tickets_t    *t;
    hm_ticket_key_t *k;
    size_t           i;

    ts = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), hm_tls_site_index);
    if (ts == NULL || ts->tickets == NULL) {
        return -1;
    }
    t = ts->tickets;
    if (!t->from_file) {
        tickets_rotate(t);
    }
    if (encrypt) {
        k = &t->keys[0];
        if (!RAND_bytes(iv, 16)) {
            return -1;
        }
        memcpy(name, k->name, 16);
        if (!EVP_EncryptInit_ex(ectx, k->aes_len == 32 ? EVP_aes_256_cbc()
                                                       : EVP_aes_128_cbc(),
                                NULL, k->aes, iv)
            || !HMAC_Init_ex(hctx, k->hmac, k->hmac_len, EVP_sha256(), NULL))
        {
            return -1;
        }
        return 1;
    }
    for (i = 0; i < t->nkeys; i++) {
        k = &t->keys[i];
        if (memcmp(name, k->name, 16) != 0) {
            continue;
        }
        if (!HMAC_Init_ex(hctx, k->hmac, k->hmac_len, EVP_sha256(), NULL)
            || !EVP_DecryptInit_ex(ectx, k->aes_len == 32 ? EVP_aes_256_cbc()
                                                          : EVP_aes_128_cbc(),
                                   NULL, k->aes, iv))
        {
            return -1;
        }
        return i == 0 ? 1 : 2;
    }
    return 0;
}

/* ---- session ID cache (TLS 1.2 clients without tickets) --------------- */

/*
 * BoringSSL gives a TLS 1.2 session an ID only when the client does not
 * take a ticket; those sessions are kept here, in one mapping shared by
 * the master and every worker (mapped by the first hm_tls_site_init, in
 * the master, before any fork, and kept for the master's life: reloads
 * reuse it, and the session ID context keeps a session in its site).
 * Direct-mapped: the slot is picked by the random session ID, a new
 * session overwrites the slot's old one.  A slot is taken with a
 * try-lock, never waited for: a busy slot is a miss, and a worker that
 * died holding one costs that slot only.  Sessions larger than a slot
 * (long client certificate chains) are not kept.
 */
#define HM_SESS_SLOTS      1024
#define HM_SESS_SLOT_SIZE  4096

typedef struct {
    uint32_t lock;
    uint32_t len;                   /* 0: empty */
    int64_t  expires;               /* unix time */
    uint8_t  id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    uint8_t  data[HM_SESS_SLOT_SIZE - 48];
} hm_sess_slot_t;

static hm_sess_slot_t *hm_sess_cache;

static hm_sess_slot_t *
sess_slot_lock(const uint8_t *id, unsigned len)
{
    hm_sess_slot_t *slot;
    uint32_t        h = 0, unlocked = 0;
    unsigned        i;

    if (hm_sess_cache == NULL || len != SSL_MAX_SSL_SESSION_ID_LENGTH) {
        return NULL;
    }
    for (i = 0; i < 4; i++) {
        h = (h << 8) | id[i];
    }
    slot = &hm_sess_cache[h % HM_SESS_SLOTS];
    if (!__atomic_compare_exchange_n(&slot->lock, &unlocked, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    {
        return NULL;
    }
    return slot;
}

static void
sess_slot_unlock(hm_sess_slot_t *slot)
{
    __atomic_store_n(&slot->lock, 0, __ATOMIC_RELEASE);
}

/* SSL_CTX_sess_set_new_cb: stores a serialised copy; returns 0 (the
 * session stays BoringSSL's). */
static int
sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    hm_sess_slot_t *slot;
    const uint8_t  *id;
    uint8_t        *der;
    size_t          len;
    unsigned        idlen;

    id = SSL_SESSION_get_id(sess, &idlen);
    if (!SSL_SESSION_to_bytes(sess, &der, &len)) {
        ERR_clear_error();
        return 0;
    }
    slot = len <= sizeof(slot->data) ? sess_slot_lock(id, idlen) : NULL;
    if (slot != NULL) {
        memcpy(slot->id, id, idlen);
        memcpy(slot->data, der, len);
        slot->len = (uint32_t) len;
        slot->expires = (int64_t) SSL_SESSION_get_time(sess)
                        + (int64_t) SSL_SESSION_get_timeout(sess);
        sess_slot_unlock(slot);
    }
    OPENSSL_free(der);
    return 0;
}

/* SSL_CTX_sess_set_get_cb: a new session parsed from the slot, or NULL. */
static SSL_SESSION *
sess_get_cb(SSL *ssl, const uint8_t *id, int idlen, int *out_copy)
{
    hm_sess_slot_t *slot;
    SSL_SESSION    *sess = NULL;

    *out_copy = 0;
    slot = idlen > 0 ? sess_slot_lock(id, (unsigned) idlen) : NULL;
    if (slot == NULL) {
        return NULL;
    }
    if (slot->len > 0 && memcmp(slot->id, id, (size_t) idlen) == 0) {
        if (slot->expires > (int64_t) time(NULL)) {
            sess = SSL_SESSION_from_bytes(slot->data, slot->len,
                                          SSL_get_SSL_CTX(ssl));
        } else {
            slot->len = 0;
        }
    }
    sess_slot_unlock(slot);
    if (sess == NULL) {
        ERR_clear_error();
    }
    return sess;
}

static void
sess_cache_init(void)
{
    void *p;

    if (hm_sess_cache != NULL) {
        return;
    }
    p = mmap(NULL, HM_SESS_SLOTS * sizeof(hm_sess_slot_t),
             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        hm_log_warn(NULL, "TLS session cache: mmap failed: %s; TLS 1.2 "
                    "clients without tickets do not resume", strerror(errno));
        return;
    }
    hm_sess_cache = p;
}

/* ---- site context callbacks ------------------------------------------- */

static int
u16_list_has(CBS *list, const uint16_t *want, size_t nwant)
{
    CBS      l = *list;
    uint16_t v;
    size_t   i;

    while (CBS_len(&l) >= 2) {
        if (!CBS_get_u16(&l, &v)) {
            return 0;
        }
        for (i = 0; i < nwant; i++) {
            if (v == want[i]) {
                return 1;
            }
        }
    }
    return 0;
}

/* Whether SNI name (n bytes, any case) is one of p's names
 * (hm_server_name_covers). */
static int
pick_covers(const hm_tls_pick_t *p, const uint8_t *name, size_t n)
{
    size_t i;

    for (i = 0; i < p->nnames; i++) {
        if (hm_server_name_covers(p->names[i], (const char *) name, n)) {
            return 1;
        }
    }
    return 0;
}

/*
 * Picks the certificate of a site with several from the raw ClientHello.
 * Candidates are the certificates whose names cover the SNI (all of them
 * when none does or there is no SNI); among them the first ECDSA one the
 * client can take, else the first Ed25519 one it can take, else the first
 * RSA one (the fallback), else the first candidate.  The client can take
 * Ed25519 when its signature_algorithms list ed25519 and, with TLS 1.2
 * only, it offers an ECDHE-ECDSA suite the site enables (RFC 8422).  The
 * client can take an ECDSA certificate when, with TLS 1.3 on offer, its
 * signature_algorithms list the ECDSA scheme of the key's curve (TLS 1.3
 * binds the curve: ecdsa_secp384r1_sha384 alone cannot be served with a
 * P-256 key); with TLS 1.2 only, any ECDSA scheme, an ECDHE-ECDSA cipher
 * suite that the site's cipher list enables (ts->ecdsa_suites) and, when
 * it sends supported_groups, the key's curve among them.  The OCSP
 * response of the chosen certificate is stapled when the client asked for
 * one (status_request).
 */
static enum ssl_select_cert_result_t
select_cert_cb(const SSL_CLIENT_HELLO *ch)
{
    static const uint16_t ecdsa_sigalgs[] = { 0x0403, 0x0503, 0x0603, 0x0203 };
    static const uint16_t tls13[] = { 0x0304 };
    static const uint16_t ed25519[] = { 0x0807 };
    hm_tls_site_t        *ts;
    hm_tls_pick_t        *p, *pick, *ec, *ed, *other, *first;
    const uint8_t        *ext, *sni = NULL;
    size_t                extlen, snilen = 0, i;
    CBS                   cbs, list, sigalgs, groups, suites, names, host;
    uint8_t               vlen, type;
    int                   has13 = 0, have_sigalgs = 0, sigalgs_ok = 1,
                          have_groups = 0, ed_ok, pass, ok;

    ts = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ch->ssl), hm_tls_site_index);
    if (ts == NULL || ts->npicks < 2) {
        return ssl_select_cert_success;
    }

    if (ts->max_version >= HM_TLS1_3
        && SSL_early_callback_ctx_extension_get(ch, 0x002b, &ext, &extlen))
    {
        CBS_init(&cbs, ext, extlen);
        if (CBS_get_u8(&cbs, &vlen) && CBS_get_bytes(&cbs, &list, vlen)) {
            has13 = u16_list_has(&list, tls13, 1);
        }
    }
    if (SSL_early_callback_ctx_extension_get(ch, 0x000d, &ext, &extlen)) {
        CBS_init(&cbs, ext, extlen);
        have_sigalgs = CBS_get_u16_length_prefixed(&cbs, &sigalgs);
        sigalgs_ok = have_sigalgs;
    } else if (has13) {
        sigalgs_ok = 0;
    }
    if (SSL_early_callback_ctx_extension_get(ch, 0x000a, &ext, &extlen)) {
        CBS_init(&cbs, ext, extlen);
        have_groups = 1;
        if (!CBS_get_u16_length_prefixed(&cbs, &groups)) {
            CBS_init(&groups, NULL, 0);
        }
    }
    if (SSL_early_callback_ctx_extension_get(ch, 0x0000, &ext, &extlen)) {
        CBS_init(&cbs, ext, extlen);
        if (CBS_get_u16_length_prefixed(&cbs, &names)
            && CBS_get_u8(&names, &type) && type == 0
            && CBS_get_u16_length_prefixed(&names, &host))
        {
            sni = CBS_data(&host);
            snilen = CBS_len(&host);
        }
    }
    CBS_init(&suites, ch->cipher_suites, ch->cipher_suites_len);
    ed_ok = have_sigalgs && u16_list_has(&sigalgs, ed25519, 1)
            && (has13 || u16_list_has(&suites, ts->ecdsa_suites,
                                      ts->necdsa_suites));

    pick = NULL;
    for (pass = snilen > 0 ? 0 : 1; pass < 2 && pick == NULL; pass++) {
        ec = ed = other = first = NULL;
        for (i = 0; i < ts->npicks; i++) {
            p = &ts->picks[i];
            if (pass == 0 && !pick_covers(p, sni, snilen)) {
                continue;
            }
            if (first == NULL) {
                first = p;
            }
            if (p->ed) {
                if (ed == NULL && ed_ok) {
                    ed = p;
                }
                continue;
            }
            if (!p->ec) {
                if (other == NULL) {
                    other = p;
                }
                continue;
            }
            if (ec != NULL) {
                continue;
            }
            ok = sigalgs_ok;
            if (ok && have_sigalgs) {
                ok = has13 ? u16_list_has(&sigalgs, &p->sigalg13, 1)
                           : u16_list_has(&sigalgs, ecdsa_sigalgs,
                                          hm_nelem(ecdsa_sigalgs));
            }
            if (ok && !has13) {
                ok = u16_list_has(&suites, ts->ecdsa_suites,
                                  ts->necdsa_suites);
            }
            if (ok && !has13 && have_groups) {
                /* TLS 1.2 (RFC 8422 5.1): supported_groups, when sent,
                 * also bound the curve of an ECDSA certificate. */
                ok = u16_list_has(&groups, &p->group, 1);
            }
            if (ok) {
                ec = p;
            }
        }
        pick = ec != NULL ? ec : ed != NULL ? ed
               : other != NULL ? other : first;
    }
    if (pick == NULL) {
        pick = ts->def;
    }
    if (pick != ts->def
        && !SSL_set_chain_and_key(ch->ssl, pick->chain, pick->nchain,
                                  pick->key, NULL))
    {
        ERR_clear_error();
        return ssl_select_cert_error;
    }
    if (pick->ocsp != NULL
        && SSL_early_callback_ctx_extension_get(ch, 0x0005, &ext, &extlen))
    {
        SSL_set_ocsp_response(ch->ssl, pick->ocsp, pick->ocsp_len);
    }
    return ssl_select_cert_success;
}

static int
alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *outlen,
               const uint8_t *in, unsigned inlen, void *arg)
{
    hm_tls_site_t *ts = arg;
    uint8_t       *sel;

    if (SSL_select_next_proto(&sel, outlen, ts->alpn, ts->alpn_len, in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
    {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- site init -------------------------------------------------------- */

static void
pick_add_name(hm_tls_pick_t *p, const uint8_t *name, size_t len)
{
    char   *s;
    size_t  i;

    if (len == 0 || len > 253 || memchr(name, '\0', len) != NULL
        || p->nnames == 32)
    {
        return;
    }
    if (p->names == NULL) {
        p->names = hm_xcalloc(32, sizeof(char *));
    }
    s = hm_xmalloc(len + 1);
    for (i = 0; i < len; i++) {
        s[i] = (char) tolower(name[i]);
    }
    s[len] = '\0';
    p->names[p->nnames++] = s;
}

/*
 * Fills p from a loaded certificate: its chain and key for
 * SSL_set_chain_and_key, a copy of its OCSP response, the DNS names it is
 * for (subjectAltName, else the subject's CN) and, for an ECDSA key, the
 * TLS 1.3 scheme and TLS group of its curve.
 */
static void
pick_init(hm_tls_pick_t *p, hm_tls_cert_t *tc)
{
    GENERAL_NAMES   *gens;
    const GENERAL_NAME *g;
    X509_NAME       *subj;
    X509_NAME_ENTRY *e;
    ASN1_STRING     *cn;
    size_t           i;
    int              idx;

    p->tc = tc;
    p->chain = cert_buffers(tc, &p->nchain);
    p->key = tc->key;
    EVP_PKEY_up_ref(p->key);
    if (tc->ocsp != NULL && tc->ocsp_len > 0) {
        p->ocsp = hm_xmalloc(tc->ocsp_len);
        memcpy(p->ocsp, tc->ocsp, tc->ocsp_len);
        p->ocsp_len = tc->ocsp_len;
    }
    gens = X509_get_ext_d2i(tc->leaf, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            pick_add_name(p, ASN1_STRING_get0_data(g->d.dNSName),
                          (size_t) ASN1_STRING_length(g->d.dNSName));
        }
    }
    GENERAL_NAMES_free(gens);
    if (p->nnames == 0) {
        subj = X509_get_subject_name(tc->leaf);
        idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        e = idx >= 0 ? X509_NAME_get_entry(subj, idx) : NULL;
        cn = e != NULL ? X509_NAME_ENTRY_get_data(e) : NULL;
        if (cn != NULL) {
            pick_add_name(p, ASN1_STRING_get0_data(cn),
                          (size_t) ASN1_STRING_length(cn));
        }
    }
    ERR_clear_error();

    p->ed = tc->key_type == EVP_PKEY_ED25519;
    p->ec = tc->key_type == EVP_PKEY_EC;
    if (!p->ec) {
        return;
    }
    switch (EC_GROUP_get_curve_name(EC_KEY_get0_group(
                EVP_PKEY_get0_EC_KEY(tc->key))))
    {
    case NID_secp384r1:
        p->sigalg13 = SSL_SIGN_ECDSA_SECP384R1_SHA384;
        p->group = SSL_CURVE_SECP384R1;
        break;
    case NID_secp521r1:
        p->sigalg13 = SSL_SIGN_ECDSA_SECP521R1_SHA512;
        p->group = SSL_CURVE_SECP521R1;
        break;
    default:
        p->sigalg13 = SSL_SIGN_ECDSA_SECP256R1_SHA256;
        p->group = SSL_CURVE_SECP256R1;
        break;
    }
}

static void
pick_free(hm_tls_pick_t *p)
{
    size_t i;

    cert_buffers_free(p->chain, p->nchain);
    EVP_PKEY_free(p->key);
    free(p->ocsp);
    for (i = 0; i < p->nnames; i++) {
        free(p->names[i]);
    }
    free(p->names);
}

/*
 * The session ID context of a site: SHA-256 of its name, its client_auth
 * mode and the bytes of its client CA file.  BoringSSL resumes only
 * sessions of the same context, so a ticket never crosses into another
 * site, nor into this site once its client_auth changed.
 */
static void
session_id_context(const hm_conf_site_t *site, uint8_t *sid)
{
    SHA256_CTX sha;
    FILE      *f;
    uint8_t    buf[4096], mode = (uint8_t) site->tls.client_auth;
    size_t     n;

    SHA256_Init(&sha);
    SHA256_Update(&sha, site->name, strlen(site->name) + 1);
    SHA256_Update(&sha, &mode, 1);
    if (mode != HM_CLIENT_AUTH_NONE && site->tls.client_auth_ca != NULL) {
        f = fopen(site->tls.client_auth_ca, "rb");
        if (f != NULL) {
            while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
                SHA256_Update(&sha, buf, n);
            }
            fclose(f);
        }
    }
    SHA256_Final(sid, &sha);
}

/*
 * Builds site->tls_ctx for a terminating site.  Certificates come from
 * hm_tls_cert_load() (cert->tls is an hm_tls_cert_t).  Returns HM_OK, or
 * HM_ERROR with a reason in err.
 */
int
hm_tls_site_init(hm_conf_t *conf, hm_conf_site_t *site, char *err,
                 size_t errlen)
{
    hm_conf_site_tls_t *st = &site->tls;
    hm_tls_site_t      *ts;
    hm_tls_cert_t      *tc, *def;
    SSL_CTX            *ctx;
    CRYPTO_BUFFER     **bufs;
    STACK_OF(X509_NAME) *names;
    STACK_OF(SSL_CIPHER) *suites;
    uint8_t             sid[SHA256_DIGEST_LENGTH];
    size_t              i, n, len, pos;

    ERR_clear_error();
    if (hm_tls_site_index < 0) {
        hm_tls_site_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
                                                     NULL);
    }
    if (st->ncertificates == 0) {
        snprintf(err, errlen, "certificates: at least one is required");
        return HM_ERROR;
    }

    if (st->ncertificates > HM_TLS_MAX_CERTS) {
        snprintf(err, errlen, "certificates: at most %d", HM_TLS_MAX_CERTS);
        return HM_ERROR;
    }
    for (i = 0; i < st->ncertificates; i++) {
        tc = st->certificates[i]->tls;
        if (tc == NULL || tc->leaf == NULL || tc->key == NULL) {
            snprintf(err, errlen, "certificates[%zu]: \"%s\" is not loaded",
                     i, st->certificates[i]->name);
            return HM_ERROR;
        }
    }

    ts = hm_xcalloc(1, sizeof(*ts));
    ts->site = site;
    ts->max_version = st->max_version ? st->max_version : HM_TLS1_3;
    for (i = 0; i < st->ncertificates; i++) {
        pick_init(&ts->picks[ts->npicks++], st->certificates[i]->tls);
    }
    for (i = 0; i < ts->npicks && ts->def == NULL; i++) {
        if (ts->picks[i].ec) {
            ts->def = &ts->picks[i];
        }
    }
    if (ts->def == NULL) {
        ts->def = &ts->picks[0];
    }
    def = ts->def->tc;

    ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        err_from_queue(err, errlen, "SSL_CTX_new failed");
        for (i = 0; i < ts->npicks; i++) {
            pick_free(&ts->picks[i]);
        }
        free(ts);
        return HM_ERROR;
    }
    SSL_CTX_set_ex_data(ctx, hm_tls_site_index, ts);
    site->tls_ctx = ctx;            /* hm_tls_site_cleanup frees from here */

    if (!SSL_CTX_set_min_proto_version(ctx, st->min_version ? st->min_version
                                                            : HM_TLS1_2)
        || !SSL_CTX_set_max_proto_version(ctx, ts->max_version))
    {
        err_from_queue(err, errlen, "min_version/max_version");
        goto failed;
    }
    if (st->ciphers != NULL
        && !SSL_CTX_set_strict_cipher_list(ctx, st->ciphers))
    {
        err_from_queue(err, errlen, "ciphers: invalid cipher list");
        goto failed;
    }
    SSL_CTX_set1_curves_list(ctx, "X25519:P-256:P-384");

    /* Default certificate (ECDSA when there is one). */
    bufs = cert_buffers(def, &n);
    if (!SSL_CTX_set_chain_and_key(ctx, bufs, n, def->key, NULL)) {
        cert_buffers_free(bufs, n);
        err_from_queue(err, errlen, "certificates: cannot use the chain");
        goto failed;
    }
    cert_buffers_free(bufs, n);
    /* With several certificates, the OCSP response of the chosen one is
     * stapled per connection (select_cert_cb): on the SSL_CTX it would
     * also be sent with the others. */
    if (def->ocsp != NULL && ts->npicks == 1
        && !SSL_CTX_set_ocsp_response(ctx, def->ocsp, def->ocsp_len))
    {
        err_from_queue(err, errlen, "certificates: OCSP response");
        goto failed;
    }
    if (ts->npicks > 1) {
        /* The TLS 1.2 suites an ECDSA certificate can serve here: those
         * of the site's cipher list (a list of RSA suites only leaves
         * none, and every TLS 1.2 client then gets the RSA chain). */
        suites = SSL_CTX_get_ciphers(ctx);
        for (i = 0; i < sk_SSL_CIPHER_num(suites)
                    && ts->necdsa_suites < hm_nelem(ts->ecdsa_suites); i++)
        {
            const SSL_CIPHER *c = sk_SSL_CIPHER_value(suites, i);
            if (SSL_CIPHER_get_auth_nid(c) == NID_auth_ecdsa) {
                ts->ecdsa_suites[ts->necdsa_suites++] =
                    SSL_CIPHER_get_protocol_id(c);
            }
        }
        SSL_CTX_set_select_certificate_cb(ctx, select_cert_cb);
    }

    /* ALPN. */
    len = 0;
    for (i = 0; i < st->nalpn; i++) {
        len += 1 + strlen(st->alpn[i]);
    }
    if (st->alpn == NULL) {
        /* not set (the loader's default is ["http/1.1"] already) */
        ts->alpn = (uint8_t *) hm_xstrdup("\x08http/1.1");
        ts->alpn_len = 9;
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, ts);
    } else if (st->nalpn > 0) {
        /* ("alpn": [] disables ALPN: no callback, no ALPN extension in
         * the ServerHello.) */
        ts->alpn = hm_xmalloc(len);
        pos = 0;
        for (i = 0; i < st->nalpn; i++) {
            n = strlen(st->alpn[i]);
            if (n == 0 || n > 255) {
                snprintf(err, errlen, "alpn[%zu]: invalid protocol name", i);
                goto failed;
            }
            ts->alpn[pos++] = (uint8_t) n;
            memcpy(ts->alpn + pos, st->alpn[i], n);
            pos += n;
        }
        ts->alpn_len = pos;
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, ts);
    }

    /* Client certificates. */
    if (st->client_auth != HM_CLIENT_AUTH_NONE) {
        if (st->client_auth_ca == NULL) {
            snprintf(err, errlen, "client_auth.ca: required");
            goto failed;
        }
        if (!SSL_CTX_load_verify_locations(ctx, st->client_auth_ca, NULL)) {
            err_from_queue(err, errlen, "client_auth.ca: cannot load");
            goto failed;
        }
        names = SSL_load_client_CA_file(st->client_auth_ca);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER
                                | (st->client_auth == HM_CLIENT_AUTH_REQUIRED
                                   ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
        SSL_CTX_set_verify_depth(ctx, 8);
    }

    /* Sessions: stateless tickets only, bound to this site and to its
     * client certificate policy (a ticket key file outlives reloads and
     * may be shared with other instances: a session made where no
     * certificate was asked for must not resume where one is required). */
    session_id_context(site, sid);
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid));
    sess_cache_init();
    if (hm_sess_cache != NULL) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER
                                            | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, sess_new_cb);
        SSL_CTX_sess_set_get_cb(ctx, sess_get_cb);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    ts->tickets = tickets_get(conf, err, errlen);
    if (ts->tickets == NULL) {
        goto failed;
    }
    SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_key_cb);
    SSL_CTX_set_timeout(ctx, ts->tickets->from_file ? 86400
                                                    : HM_TICKET_ROTATE_S);
    SSL_CTX_set_session_psk_dhe_timeout(ctx, ts->tickets->from_file
                                                 ? 86400 : HM_TICKET_ROTATE_S);
    ERR_clear_error();
    return HM_OK;

failed:
    hm_tls_site_cleanup(site);
    return HM_ERROR;
}

void
hm_tls_site_cleanup(hm_conf_site_t *site)
{
    hm_tls_site_t *ts;
    SSL_CTX       *ctx = site->tls_ctx;
    size_t         i;

    if (ctx == NULL) {
        return;
    }
    ts = SSL_CTX_get_ex_data(ctx, hm_tls_site_index);
    if (ts != NULL) {
        for (i = 0; i < ts->npicks; i++) {
            pick_free(&ts->picks[i]);
        }
        free(ts->alpn);
        free(ts);
        SSL_CTX_set_ex_data(ctx, hm_tls_site_index, NULL);
    }
    SSL_CTX_free(ctx);
    site->tls_ctx = NULL;
}

/* ---- upstream (client) contexts --------------------------------------- */

typedef struct {
    hm_conf_upstream_tls_t *ut;
    uint8_t               (*pins)[SHA256_DIGEST_LENGTH];
    size_t                  npins;
} hm_tls_upstream_t;

static int
spki_pinned(hm_tls_upstream_t *tu, X509 *x)
{
    uint8_t *der = NULL, md[SHA256_DIGEST_LENGTH];
    int      len;
    size_t   i;

    len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    if (len <= 0) {
        return 0;
    }
    SHA256(der, len, md);
    OPENSSL_free(der);
    for (i = 0; i < tu->npins; i++) {
        if (memcmp(md, tu->pins[i], sizeof(md)) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * Certificate verification of upstream connections: the chain against the
 * CA with the host name (unless verify is off, which requires an accepted
 * risk), then the SPKI pins when there are any: any certificate of the
 * verified chain may match; with verify off only the leaf, the one
 * certificate the handshake proves (the server signs with its key): the
 * others are whatever the server chose to send, a pinned CA's public
 * certificate included.  Returns 1 to accept.
 */
static int
upstream_verify_cb(X509_STORE_CTX *sctx, void *arg)
{
    hm_tls_upstream_t *tu = arg;
    STACK_OF(X509)    *chain;
    X509              *leaf;
    size_t             i;
    int                ok = 1;

    if (tu->ut->verify) {
        ok = X509_verify_cert(sctx) == 1;
        if (!ok) {
            return 0;
        }
    }
    if (tu->npins == 0) {
        return 1;
    }
    leaf = X509_STORE_CTX_get0_cert(sctx);
    if (leaf != NULL && spki_pinned(tu, leaf)) {
        return 1;
    }
    chain = tu->ut->verify ? X509_STORE_CTX_get0_chain(sctx) : NULL;
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        if (spki_pinned(tu, sk_X509_value(chain, i))) {
            return 1;
        }
    }
    X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static void
upstream_ctx_free(void *data)
{
    hm_conf_upstream_t *u = data;
    hm_tls_upstream_t  *tu;

    if (u->tls.tls == NULL) {
        return;
    }
    tu = SSL_CTX_get_app_data((SSL_CTX *) u->tls.tls);
    SSL_CTX_free(u->tls.tls);
    u->tls.tls = NULL;
    if (tu != NULL) {
        free(tu->pins);
        free(tu);
    }
}

/*
 * Builds u->tls.tls, the client SSL_CTX of an upstream with "tls": CA
 * (tls.ca, else the system's default paths), host name check against
 * server_name, pins, client certificate (mTLS), session callback, ALPN
 * http/1.1.  Freed with conf->pool.  HM_OK or HM_ERROR with a reason.
 */
int
hm_tls_upstream_init(hm_conf_t *conf, hm_conf_upstream_t *u, char *err,
                     size_t errlen)
{
    hm_conf_upstream_tls_t *ut = &u->tls;
    hm_tls_upstream_t      *tu;
    hm_tls_cert_t          *cc;
    SSL_CTX                *ctx;
    X509_VERIFY_PARAM      *param;
    const char             *p;
    size_t                  i, outlen;
    uint8_t                 raw[64];

    if (!ut->present || ut->tls != NULL) {
        return HM_OK;
    }
    ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        err_from_queue(err, errlen, "SSL_CTX_new failed");
        return HM_ERROR;
    }
    tu = hm_xcalloc(1, sizeof(*tu));
    tu->ut = ut;
    SSL_CTX_set_app_data(ctx, tu);
    ut->tls = ctx;
    hm_pool_cleanup_add(conf->pool, upstream_ctx_free, u);

    SSL_CTX_set_min_proto_version(ctx, HM_TLS1_2);
    SSL_CTX_set_max_proto_version(ctx, HM_TLS1_3);
    SSL_CTX_set1_curves_list(ctx, "X25519:P-256:P-384");
    SSL_CTX_set_alpn_protos(ctx, (const uint8_t *) "\x08http/1.1", 9);

    if (ut->ca_path != NULL) {
        if (!SSL_CTX_load_verify_locations(ctx, ut->ca_path, NULL)) {
            err_from_queue(err, errlen, "tls.ca: cannot load");
            return HM_ERROR;
        }
    } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
        ERR_clear_error();
    }
    param = SSL_CTX_get0_param(ctx);
    if (ut->server_name != NULL && ut->verify) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, ut->server_name) != 1) {
            ERR_clear_error();
            if (!X509_VERIFY_PARAM_set1_host(param, ut->server_name,
                                             strlen(ut->server_name)))
            {
                err_from_queue(err, errlen, "tls.server_name: invalid");
                return HM_ERROR;
            }
        }
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

    if (ut->npins > 0) {
        tu->pins = hm_xcalloc(ut->npins, sizeof(*tu->pins));
        for (i = 0; i < ut->npins; i++) {
            p = ut->pins[i];
            if (strncmp(p, "sha256/", 7) != 0
                || !EVP_DecodeBase64(raw, &outlen, sizeof(raw),
                                     (const uint8_t *) p + 7, strlen(p + 7))
                || outlen != SHA256_DIGEST_LENGTH)
            {
                ERR_clear_error();
                snprintf(err, errlen, "tls.pins[%zu]: expected "
                         "\"sha256/\" and the base64 of 32 bytes", i);
                return HM_ERROR;
            }
            memcpy(tu->pins[i], raw, SHA256_DIGEST_LENGTH);
        }
        tu->npins = ut->npins;
    }
    SSL_CTX_set_cert_verify_callback(ctx, upstream_verify_cb, tu);

    if (ut->client_certificate != NULL) {
        cc = ut->client_certificate->tls;
        if (cc == NULL || cc->leaf == NULL || cc->key == NULL) {
            snprintf(err, errlen, "tls.client_certificate: \"%s\" is not "
                     "loaded", ut->client_certificate->name);
            return HM_ERROR;
        }
        if (!SSL_CTX_use_certificate(ctx, cc->leaf)
            || !SSL_CTX_use_PrivateKey(ctx, cc->key))
        {
            err_from_queue(err, errlen, "tls.client_certificate");
            return HM_ERROR;
        }
        for (i = 0; cc->chain != NULL && i < sk_X509_num(cc->chain); i++) {
            SSL_CTX_add1_chain_cert(ctx, sk_X509_value(cc->chain, i));
        }
    }

    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT
                                        | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, hm__tls_client_new_session);
    ERR_clear_error();
    return HM_OK;
}

/* ---- hand-off from preread -------------------------------------------- */

void
hm_tls_stats(uint64_t *handshakes, uint64_t *failed, uint64_t *resumed)
{
    *handshakes = hm_tls_nhandshakes;
    *failed = hm_tls_nfailed;
    *resumed = hm_tls_nresumed;
}

static void
terminate_closed(hm_stream_t *s)
{
    hm_conn_t *c = s->data;

    if (hm_conn_log != NULL) {
        hm_conn_log(c);
    }
    if (hm_conn_free != NULL) {
        hm_conn_free(c);
    }
}

static void
terminate_abort(hm_conn_t *c)
{
    hm_stream_t *s = c->owner;

    if (c->outcome == NULL) {
        c->outcome = "shutdown";
    }
    hm_stream_close(s, terminate_closed);
}

/*
 * Graceful shutdown (reload, upgrade, QUIT) during the handshake: let it
 * finish.  It is bounded by the site's handshake timeout and, at the
 * worker's shutdown deadline, by c->abort (terminate_abort).  The worker
 * calls c->drain once per connection, so after the hand-over the HTTP
 * layer learns that the worker is quitting from hm_worker->quitting
 * (c->worker->quitting) and serves one request with Connection: close.
 */
static void
terminate_drain(hm_conn_t *c)
{
    (void) c;
}

static void
terminate_handshake_done(hm_stream_t *s, int status)
{
    hm_conn_t *c = s->data;

    if (status != 0) {
        hm_tls_nfailed++;
        HM_METRIC_INC(TLS_HANDSHAKE_FAILURES);
        c->outcome = status == UV_ETIMEDOUT ? "tls_handshake_timeout"
                                            : "tls_handshake_failed";
        /* the access log's bytes_in: at least the ClientHello, as for
         * every connection refused after it was read */
        if (c->bytes_in == 0) {
            c->bytes_in = c->preread_len;
        }
        hm_log_info(&c->log, "TLS handshake failed: %s",
                    status == UV_ETIMEDOUT ? "timeout" : hm_stream_error(s));
        hm_stream_close(s, terminate_closed);
        return;
    }
    hm_tls_nhandshakes++;
    HM_METRIC_INC(TLS_HANDSHAKES);
    if (hm_stream_tls_resumed(s)) {
        hm_tls_nresumed++;
        HM_METRIC_INC(TLS_RESUMED);
    }
    c->log.action = NULL;
    c->drain = NULL;
    c->abort = NULL;
    c->owner = NULL;
    if (hm_http_conn_start == NULL) {
        hm_log_error(&c->log, "no HTTP layer in this build");
        c->outcome = "no_http";
        hm_stream_close(s, terminate_closed);
        return;
    }
    hm_http_conn_start(c, s);
}

/*
 * Takes over c after preread (its poll handle is closed): the socket
 * becomes a stream in c->pool, the handshake starts with the preread
 * ClientHello; on success hm_http_conn_start(c, s), on failure the
 * connection is logged (info) and freed.
 */
void
hm_tls_terminate_start(hm_conn_t *c)
{
    hm_stream_t *s;
    int          rc, fd = c->fd;
    size_t       n, preread_len = c->preread_len;
    uint8_t      alert[8];

    s = hm_pool_calloc(c->pool, sizeof(*s));
    if (s == NULL) {
        hm_log_warn(&c->log, "out of memory for the TLS stream");
        close(fd);
        c->fd = -1;
        c->outcome = "no_memory";
        terminate_closed(&(hm_stream_t) { .data = c });
        return;
    }
    s->data = c;
    c->log.action = "doing the TLS handshake";
    c->owner = s;
    c->abort = terminate_abort;
    c->drain = terminate_drain;
    rc = hm_stream_open(s, c->worker->loop, fd);
    if (rc == 0) {
        c->fd = -1;                 /* the stream owns it now */
        rc = hm_stream_tls_accept(s, c->site->tls_ctx, c->preread,
                                  c->preread_len,
                                  c->site->tls.handshake_timeout_ms,
                                  terminate_handshake_done);
    }
    /* The stream copied the ClientHello: the preread buffer (4 KiB and
     * up) is not needed for the rest of the connection's life. */
    hm_conn_preread_release(c);
    if (rc == UV_E2BIG) {
        /* the client's fault: a fatal alert, logged at info like every
         * other handshake failure */
        n = hm_tls_alert_record(alert, HM_TLS_ALERT_DECODE_ERROR);
        if (send(fd, alert, n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
            c->bytes_out += n;
        }
        hm_tls_nfailed++;
        HM_METRIC_INC(TLS_HANDSHAKE_FAILURES);
        hm_log_info(&c->log, "TLS handshake failed: %s (%zu bytes)",
                    hm_stream_error(s), preread_len);
        c->outcome = "tls_handshake_failed";
        hm_stream_close(s, terminate_closed);

    } else if (rc != 0) {
        hm_tls_nfailed++;
        HM_METRIC_INC(TLS_HANDSHAKE_FAILURES);
        hm_log_warn(&c->log, "cannot start the TLS handshake: %s",
                    rc == HM_STREAM_ETLS ? hm_stream_error(s)
                                         : uv_strerror(rc));
        c->outcome = "tls_handshake_failed";
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
        hm_stream_close(s, terminate_closed);
    }
}

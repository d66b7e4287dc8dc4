/*
 * hm_conf.c: the configuration loader.  It sits at the very start of the
 * data flow: the master (at start, at reload, and for `hamlyn -t`) hands
 * it the JSON file of shared/CONFIG.md; it parses the file with jansson
 * (duplicate keys rejected), validates every key (type, range, reference,
 * file, certificate/key match) and decodes it into the typed structs of
 * hm_conf.h, allocated from one pool.  The JSON tree is dropped before
 * returning: workers never see JSON.
 *
 * Errors accumulate (HAProxy): each one is printed as
 *     FILE: json.path: reason
 * and the loader goes on to find the others, so that one run of
 * `hamlyn -t` shows everything that is wrong.  Paths are printed as
 * sites.api.routes[1].upstream; a name that is not a plain identifier is
 * quoted: sites["a.b"].mode.
 *
 * Decoding order: runtime, certificates, upstreams, sites, listeners, then
 * the checks that span sections (upstream use by passthrough and
 * terminating sites, server names and addresses shared by listeners).
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_log.h"
#include "hm_router.h"
#include "hm_tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <jansson.h>

#define HM_CONF_MAX_FILE   (16 * 1024 * 1024)
#define HM_CONF_PATH_MAX   512
#define HM_CONF_JPATH_MAX  4096        /* a JSON path: 8 keys of 80 bytes,
                                        * escaped, and indexes */
#define HM_CONF_KEY_SHOWN  80          /* a longer key is cut, quoted */
#define HM_CONF_NAME_MAX   100
#define HM_CONF_BODY_MAX   (1024 * 1024)
#define HM_CONF_MAX_ADDRS  16          /* addresses per resolved host name */

int hm_conf_nwarnings;

/* Loader state: the conf being filled, where errors go, and the JSON path
 * of the value being decoded. */
typedef struct {
    hm_conf_t  *conf;
    hm_pool_t  *pool;
    FILE       *err;
    const char *file;               /* printed before each error */
    int         flags;              /* HM_CONF_NO_RESOLVE */
    int         nerrors;
    json_t     *root;               /* the whole document */
    size_t      plen;
    char        path[HM_CONF_JPATH_MAX];
} cx_t;

/* Per-upstream bookkeeping for the cross-section checks. */
typedef struct {
    const char *passthrough_site;   /* first passthrough site using it */
    const char *terminate_site;     /* first terminating site using it */
} use_t;


/* ---- allocation ------------------------------------------------------
 * The loader runs at start and at reload, in the master: running out of
 * memory there is fatal (hm_xmalloc's policy), so pool allocations are
 * checked once here instead of at every call.
 */

static void *
palloc(cx_t *cx, size_t n)
{
    void *p = hm_pool_alloc(cx->pool, n);

    if (p == NULL) {
        hm_assert_fail("out of memory while loading the configuration",
                       __FILE__, __LINE__);
    }
    return p;
}

static void *
pcalloc(cx_t *cx, size_t n)
{
    void *p = palloc(cx, n);

    memset(p, 0, n);
    return p;
}

static char *
pstrdup(cx_t *cx, const char *s)
{
    size_t n = strlen(s) + 1;

    return memcpy(palloc(cx, n), s, n);
}


/* ---- JSON path and error reporting ---------------------------------- */

static int
plain_key(const char *k)
{
    const char *p;

    if (*k == '\0' || strlen(k) > HM_CONF_KEY_SHOWN) {
        return 0;
    }
    for (p = k; *p; p++) {
        if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-') {
            return 0;
        }
    }
    return 1;
}

/*
 * Appends src to dst (capacity cap, current length *len) with control
 * and non-ASCII bytes escaped, and with quotes set, quotes and backslashes
 * too (a value printed between quotes); stops at max source bytes, adding
 * "..." when cut.  Always NUL-terminates.
 */
static void
escape_into(char *dst, size_t cap, size_t *len, const char *src, size_t max,
            int quotes)
{
    size_t i;
    int    n;

    for (i = 0; src[i] != '\0'; i++) {
        unsigned char c = (unsigned char) src[i];

        if (i == max) {
            n = snprintf(dst + *len, cap - *len, "...");
        } else if (c < 0x20 || c >= 0x7f) {
            n = snprintf(dst + *len, cap - *len, "\\x%02x", c);
        } else if (quotes && (c == '"' || c == '\\')) {
            n = snprintf(dst + *len, cap - *len, "\\%c", c);
        } else {
            n = snprintf(dst + *len, cap - *len, "%c", c);
        }
        if (n < 0 || (size_t) n >= cap - *len) {
            dst[*len] = '\0';
            return;
        }
        *len += (size_t) n;
        if (i == max) {
            return;
        }
    }
}

/* Formats s as a quoted, escaped, length-bounded string into buf. */
static const char *
quote_n(char *buf, size_t cap, const char *s, size_t max)
{
    size_t len = 0;

    buf[0] = '"';
    buf[1] = '\0';
    len = 1;
    escape_into(buf, cap - 1, &len, s, max, 1);
    buf[len++] = '"';
    buf[len] = '\0';
    return buf;
}

/* Quotes a user value for an error message, cut after 80 bytes. */
static const char *
quote(char *buf, size_t cap, const char *s)
{
    return quote_n(buf, cap, s, 80);
}

/* Appends ".key" (or ["key"]) to the current path; returns the length to
 * restore with path_pop(). */
static size_t
path_key(cx_t *cx, const char *key)
{
    size_t old = cx->plen;
    size_t cap = sizeof(cx->path);
    int    n;

    if (plain_key(key)) {
        n = snprintf(cx->path + old, cap - old, "%s%s", old ? "." : "", key);
        if (n < 0 || (size_t) n >= cap - old) {
            cx->path[old] = '\0';
            return old;
        }
        cx->plen += (size_t) n;
    } else {
        char q[HM_CONF_KEY_SHOWN * 4 + 8];

        quote_n(q, sizeof(q), key, HM_CONF_KEY_SHOWN);
        n = snprintf(cx->path + old, cap - old, "[%s]", q);
        if (n < 0 || (size_t) n >= cap - old) {
            cx->path[old] = '\0';
            return old;
        }
        cx->plen += (size_t) n;
    }
    return old;
}

static size_t
path_index(cx_t *cx, size_t i)
{
    size_t old = cx->plen;
    int    n;

    n = snprintf(cx->path + old, sizeof(cx->path) - old, "[%zu]", i);
    if (n < 0 || (size_t) n >= sizeof(cx->path) - old) {
        cx->path[old] = '\0';
        return old;
    }
    cx->plen += (size_t) n;
    return old;
}

static void
path_pop(cx_t *cx, size_t old)
{
    cx->plen = old;
    cx->path[old] = '\0';
}

/* Prints "FILE: PATH: tag message" (the one line format of -t output).
 * Control bytes a reason carries (a file name with a newline, quoted by a
 * TLS helper's message) are escaped: one error, one line. */
static void
cvprint(cx_t *cx, const char *tag, const char *fmt, va_list ap)
{
    char   msg[8192], out[8192 * 4];
    size_t len = 0;

    if (cx->err == NULL) {
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    out[0] = '\0';
    escape_into(out, sizeof(out), &len, msg, sizeof(msg), 0);
    fprintf(cx->err, "%s: %s: %s%s\n", cx->file,
            cx->plen ? cx->path : "(top level)", tag, out);
}

/* Prints one error at the current path and counts it. */
static void HM_PRINTF(2, 3)
cerr(cx_t *cx, const char *fmt, ...)
{
    va_list ap;

    cx->nerrors++;
    va_start(ap, fmt);
    cvprint(cx, "", fmt, ap);
    va_end(ap);
}

/* Prints one error at the current path + key. */
static void HM_PRINTF(3, 4)
cerr_at(cx_t *cx, const char *key, const char *fmt, ...)
{
    va_list ap;
    size_t  old;

    cx->nerrors++;
    old = path_key(cx, key);
    va_start(ap, fmt);
    cvprint(cx, "", fmt, ap);
    va_end(ap);
    path_pop(cx, old);
}

/*
 * Prints one warning at the current path + key (key NULL: at the current
 * path): a setting that is valid but has no effect where it is used, or
 * looks like a mistake.  Not counted: the configuration still loads.
 */
static void HM_PRINTF(3, 4)
cwarn_at(cx_t *cx, const char *key, const char *fmt, ...)
{
    va_list ap;
    size_t  old;

    hm_conf_nwarnings++;
    old = key != NULL ? path_key(cx, key) : cx->plen;
    va_start(ap, fmt);
    cvprint(cx, "warning: ", fmt, ap);
    va_end(ap);
    path_pop(cx, old);
}

static const char *
type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:    return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    case JSON_NULL:    return "null";
    }
    return "?";
}

static void
err_type(cx_t *cx, const char *expected, const json_t *j)
{
    cerr(cx, "expected %s, got %s", expected, type_name(j));
}

/* Levenshtein distance of two short strings (for "did you mean"). */
static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    size_t row[64], prev, tmp;

    if (la >= 63 || lb >= 63) {
        return 99;
    }
    for (j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (i = 1; i <= la; i++) {
        prev = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            tmp = row[j];
            row[j] = hm_min(hm_min(row[j] + 1, row[j - 1] + 1),
                            prev + (a[i - 1] == b[j - 1] ? 0 : 1));
            prev = tmp;
        }
    }
    return row[lb];
}

static int
in_list(const char *s, const char *const *list)
{
    for ( ; list != NULL && *list != NULL; list++) {
        if (strcmp(s, *list) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether key names allowed without its unit suffix (allowed is key +
 * "_ms", "_s" or "_bytes"). */
static int
unit_of(const char *allowed, const char *key)
{
    static const char *const units[] = { "_ms", "_s", "_bytes", NULL };
    size_t                   n = strlen(key);

    return n > 0 && strncmp(allowed, key, n) == 0
           && in_list(allowed + n, units);
}

/*
 * Reports every number of j (a tree read with JSON_DECODE_INT_AS_REAL)
 * that no 64-bit integer holds, at its JSON path: jansson refuses such an
 * integer as a syntax error, which names only a line and a column.
 */
static void
report_huge(cx_t *cx, json_t *j)
{
    const char *key;
    json_t     *v;
    size_t      i, old;
    double      d;

    if (json_is_object(j)) {
        json_object_foreach(j, key, v) {
            old = path_key(cx, key);
            report_huge(cx, v);
            path_pop(cx, old);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            old = path_index(cx, i);
            report_huge(cx, v);
            path_pop(cx, old);
        }
    } else if (json_is_real(j)) {
        d = json_real_value(j);
        if (d >= 9223372036854775808.0 || d <= -9223372036854775808.0) {
            cerr(cx, "number too large: beyond a 64-bit integer");
        }
    }
}

/*
 * The object a key belongs in, for a key written one level off (a route's
 * "path_prefix" outside "match", a site's "min_version" outside "tls"):
 * keys that have one home only.  NULL when the key is not one of those.
 */
static const char *
home_of(const char *key)
{
    static const char *const homes[][2] = {
        { "path_prefix", "\"match\"" }, { "path_exact", "\"match\"" },
        { "methods", "\"match\"" },
        { "min_version", "\"tls\"" }, { "max_version", "\"tls\"" },
        { "alpn", "\"tls\"" }, { "client_auth", "\"tls\"" },
        { "ciphers", "\"tls\"" }, { "handshake_timeout_ms", "\"tls\"" },
        { "max_header_bytes", "\"limits\"" },
        { "max_body_bytes", "\"limits\"" },
        { "header_timeout_ms", "\"limits\"" },
        { "idle_timeout_ms", "\"limits\"" },
        { "max_requests", "\"limits\"" },
        { "forwarded", "\"headers\"" }, { "client_cert_header", "\"headers\"" },
        { "strip_request", "\"headers\"" }, { "set_request", "\"headers\"" },
        { "set_response", "\"headers\"" },
        { "strip_response", "\"headers\"" },
        { "redirect_to_https", "\"http\"" },
        { "max_idle_per_worker", "\"pool\"" },
        { "idle_timeout_s", "\"pool\"" },
        { "interval_s", "\"health_check\"" },
        { "fail_after", "\"health_check\"" },
        { "pass_after", "\"health_check\"" },
        { "accepted_risk", "\"plaintext\" or \"tls\"" },
        { "weight", "a server object: {\"address\": ..., \"weight\": N}" },
        { "level", "\"error_log\"" },
        { "format", "\"access_log\"" }
    };
    size_t i;

    for (i = 0; i < hm_nelem(homes); i++) {
        if (strcmp(key, homes[i][0]) == 0) {
            return homes[i][1];
        }
    }
    return NULL;
}

/*
 * Reports every key of obj that is not in allowed: keys in unsupported
 * are features not built in this release ("not supported yet"); the
 * others are unknown, with a suggestion when one allowed key is close or
 * is the key with its unit ("read_timeout" for "read_timeout_ms").
 */
static void
check_keys(cx_t *cx, json_t *obj, const char *const *allowed,
           const char *const *unsupported)
{
    const char               *key;
    json_t                   *v;
    const char *const        *a;
    const char               *best;
    size_t                    d, bestd;

    json_object_foreach(obj, key, v) {
        if (in_list(key, allowed)) {
            continue;
        }
        if (in_list(key, unsupported)) {
            cerr_at(cx, key, "not supported yet");
            continue;
        }
        best = NULL;
        bestd = 3;
        for (a = allowed; *a != NULL; a++) {
            if (unit_of(*a, key)) {
                best = *a;          /* "connect_timeout": the unit is */
                break;              /* missing */
            }
            d = edit_distance(key, *a);
            if (d < bestd && d <= strlen(*a) / 3 + 1) {
                bestd = d;
                best = *a;
            }
        }
        if (best != NULL) {
            cerr_at(cx, key, "unknown key (did you mean \"%s\"?)", best);
        } else if ((best = home_of(key)) != NULL) {
            cerr_at(cx, key, "unknown key here (it belongs in %s)", best);
        } else {
            cerr_at(cx, key, "unknown key");
        }
    }
}


/* ---- typed getters --------------------------------------------------
 * Each returns 1 when the key is present and valid (*out set), 0 when it
 * is absent (*out untouched: the caller set the default), -1 when it is
 * present but invalid (error printed).
 */

static int
required(cx_t *cx, json_t *obj, const char *key)
{
    if (json_object_get(obj, key) != NULL) {
        return 1;
    }
    cerr_at(cx, key, "required key is missing");
    return 0;
}

static int
conf_ll(cx_t *cx, json_t *obj, const char *key, long long min,
        long long max, long long *out)
{
    json_t   *j = json_object_get(obj, key);
    size_t    old;
    long long v;

    if (j == NULL) {
        return 0;
    }
    old = path_key(cx, key);
    if (!json_is_integer(j)) {
        err_type(cx, "an integer", j);
        path_pop(cx, old);
        return -1;
    }
    v = json_integer_value(j);
    if (v < min || v > max) {
        cerr(cx, "must be between %lld and %lld (got %lld)", min, max, v);
        path_pop(cx, old);
        return -1;
    }
    path_pop(cx, old);
    *out = v;
    return 1;
}

static int
conf_int(cx_t *cx, json_t *obj, const char *key, long long min,
         long long max, int *out)
{
    long long v;
    int       rc = conf_ll(cx, obj, key, min, max, &v);

    if (rc == 1) {
        *out = (int) v;
    }
    return rc;
}

static int
conf_size(cx_t *cx, json_t *obj, const char *key, long long min,
          long long max, size_t *out)
{
    long long v;
    int       rc = conf_ll(cx, obj, key, min, max, &v);

    if (rc == 1) {
        *out = (size_t) v;
    }
    return rc;
}

static int
conf_bool(cx_t *cx, json_t *obj, const char *key, int *out)
{
    json_t *j = json_object_get(obj, key);

    if (j == NULL) {
        return 0;
    }
    if (!json_is_boolean(j)) {
        size_t old = path_key(cx, key);
        err_type(cx, "true or false", j);
        path_pop(cx, old);
        return -1;
    }
    *out = json_is_true(j);
    return 1;
}

/* A string; empty strings are refused unless allow_empty.  The result is
 * copied into the pool. */
static int
conf_str_ex(cx_t *cx, json_t *obj, const char *key, int allow_empty,
            char **out)
{
    json_t *j = json_object_get(obj, key);
    size_t  old;

    if (j == NULL) {
        return 0;
    }
    old = path_key(cx, key);
    if (!json_is_string(j)) {
        err_type(cx, "a string", j);
        path_pop(cx, old);
        return -1;
    }
    if (!allow_empty && json_string_length(j) == 0) {
        cerr(cx, "must not be empty");
        path_pop(cx, old);
        return -1;
    }
    path_pop(cx, old);
    *out = pstrdup(cx, json_string_value(j));
    return 1;
}

static int
conf_str(cx_t *cx, json_t *obj, const char *key, char **out)
{
    return conf_str_ex(cx, obj, key, 0, out);
}

/* An accepted_risk: a reason in words, so not empty and not only white
 * space (CONFIG.md: "a non-empty reason is required"). */
static int
conf_reason(cx_t *cx, json_t *obj, const char *key, char **out)
{
    const char *p;
    char       *s;
    int         rc;

    rc = conf_str(cx, obj, key, &s);
    if (rc != 1) {
        return rc;
    }
    for (p = s; *p != '\0' && isspace((unsigned char) *p); p++) {
        /* skip */
    }
    if (*p == '\0') {
        cerr_at(cx, key, "must say why the risk is acceptable (got only "
                "white space)");
        return -1;
    }
    *out = s;
    return 1;
}

/* One of names[] (values[] gives the decoded value). */
static int
conf_enum(cx_t *cx, json_t *obj, const char *key,
          const char *const *names, const int *values, int *out)
{
    json_t *j = json_object_get(obj, key);
    size_t  old, i, len;
    char    list[256], q[128];

    if (j == NULL) {
        return 0;
    }
    old = path_key(cx, key);
    if (json_is_string(j)) {
        for (i = 0; names[i] != NULL; i++) {
            if (strcmp(json_string_value(j), names[i]) == 0) {
                *out = values[i];
                path_pop(cx, old);
                return 1;
            }
        }
    }
    len = 0;
    list[0] = '\0';
    for (i = 0; names[i] != NULL; i++) {
        int n = snprintf(list + len, sizeof(list) - len, "%s\"%s\"",
                         i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ",
                         names[i]);
        if (n > 0 && (size_t) n < sizeof(list) - len) {
            len += (size_t) n;
        }
    }
    if (json_is_string(j)) {
        cerr(cx, "must be %s (got %s)", list,
             quote(q, sizeof(q), json_string_value(j)));
    } else {
        cerr(cx, "must be %s (got %s)", list, type_name(j));
    }
    path_pop(cx, old);
    return -1;
}

/* An object value (type checked); NULL when absent or not an object. */
static json_t *
conf_obj(cx_t *cx, json_t *obj, const char *key)
{
    json_t *j = json_object_get(obj, key);

    if (j == NULL) {
        return NULL;
    }
    if (!json_is_object(j)) {
        size_t old = path_key(cx, key);
        err_type(cx, "an object", j);
        path_pop(cx, old);
        return NULL;
    }
    return j;
}

static json_t *
conf_arr(cx_t *cx, json_t *obj, const char *key)
{
    json_t *j = json_object_get(obj, key);

    if (j == NULL) {
        return NULL;
    }
    if (!json_is_array(j)) {
        size_t old = path_key(cx, key);
        err_type(cx, "an array", j);
        path_pop(cx, old);
        return NULL;
    }
    return j;
}

/* Whether list[i] equals one of list[0..i) (NULL entries skipped). */
static int
listed_before(char **list, size_t i)
{
    size_t j;

    for (j = 0; j < i; j++) {
        if (list[j] != NULL && strcmp(list[j], list[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Validators: return NULL when s is fine, else the reason. */
typedef const char *(*check_pt)(const char *s);

#define STRV_NONEMPTY 0x1     /* the array needs at least one element */
#define STRV_LOWER    0x2     /* lower-case each element */
#define STRV_UNIQUE   0x4     /* no duplicates (compared after lowering) */

/*
 * An array of strings, each checked by check (if any).  Returns 1 and
 * sets *out / *n when present and valid, 0 when absent, -1 on error.  On
 * an error in an element, *out / *n still describe the array, each bad or
 * repeated element NULL, so that the checks that use the others (server
 * names shared by the sites of a listener, a listener's default_site)
 * report their errors in the same run.
 */
static int
conf_strv(cx_t *cx, json_t *obj, const char *key, int flags, check_pt check,
          char ***out, size_t *n)
{
    json_t     *arr, *v;
    size_t      i, old, old2;
    char      **list;
    const char *why;
    char        q[128];
    int         bad = 0;

    if (json_object_get(obj, key) == NULL) {
        return 0;
    }
    arr = conf_arr(cx, obj, key);
    if (arr == NULL) {
        return -1;
    }
    old = path_key(cx, key);
    if ((flags & STRV_NONEMPTY) && json_array_size(arr) == 0) {
        cerr(cx, "must not be empty");
        path_pop(cx, old);
        return -1;
    }
    list = pcalloc(cx, (json_array_size(arr) + 1) * sizeof(char *));
    json_array_foreach(arr, i, v) {
        old2 = path_index(cx, i);
        if (!json_is_string(v)) {
            err_type(cx, "a string", v);
            bad = 1;
        } else if (json_string_length(v) == 0) {
            cerr(cx, "must not be empty");
            bad = 1;
        } else {
            list[i] = pstrdup(cx, json_string_value(v));
            if (flags & STRV_LOWER) {
                hm_strlow(list[i], list[i], strlen(list[i]));
            }
            why = check ? check(list[i]) : NULL;
            if (why != NULL) {
                cerr(cx, "%s (got %s)", why, quote(q, sizeof(q), list[i]));
                bad = 1;
                list[i] = NULL;
            } else if ((flags & STRV_UNIQUE) && listed_before(list, i)) {
                cerr(cx, "%s is listed twice", quote(q, sizeof(q), list[i]));
                bad = 1;
                list[i] = NULL;
            }
        }
        path_pop(cx, old2);
    }
    path_pop(cx, old);
    if (bad) {
        /* the valid ones at their index; bad and repeated ones NULL */
        *out = list;
        *n = json_array_size(arr);
        return -1;
    }
    *out = list;
    *n = json_array_size(arr);
    return 1;
}

/* An object of name -> string value pairs. */
/* The index of the first of kv[0..n) named name (any case), or n. */
static size_t
kv_find(const hm_kv_t *kv, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcasecmp(kv[i].name, name) == 0) {
            break;
        }
    }
    return i;
}

static int
conf_kv(cx_t *cx, json_t *obj, const char *key, int lower_names,
        check_pt name_check, check_pt value_check, hm_kv_t **out, size_t *n)
{
    json_t     *o, *v;
    const char *name, *why;
    size_t      i, j, old, old2;
    hm_kv_t    *kv;
    char        q[128];
    int         bad = 0;

    if (json_object_get(obj, key) == NULL) {
        return 0;
    }
    o = conf_obj(cx, obj, key);
    if (o == NULL) {
        return -1;
    }
    old = path_key(cx, key);
    kv = pcalloc(cx, (json_object_size(o) + 1) * sizeof(hm_kv_t));
    i = 0;
    json_object_foreach(o, name, v) {
        old2 = path_key(cx, name);
        why = name_check(name);
        if (why != NULL) {
            cerr(cx, "%s (got %s)", why, quote(q, sizeof(q), name));
            bad = 1;
        } else if (!json_is_string(v)) {
            err_type(cx, "a string", v);
            bad = 1;
        } else if ((why = value_check(json_string_value(v))) != NULL) {
            cerr(cx, "%s", why);
            bad = 1;
        } else if ((j = kv_find(kv, i, name)) < i) {
            /* Header names are case-insensitive: "X-A" and "x-a" name one
             * header, and the second would silently replace the first. */
            cerr(cx, "the same header as %s (names are case-insensitive)",
                 quote(q, sizeof(q), kv[j].name));
            bad = 1;
        } else {
            kv[i].name = pstrdup(cx, name);
            if (lower_names) {
                hm_strlow(kv[i].name, kv[i].name, strlen(kv[i].name));
            }
            kv[i].value = pstrdup(cx, json_string_value(v));
            i++;
        }
        path_pop(cx, old2);
    }
    path_pop(cx, old);
    if (bad) {
        return -1;
    }
    *out = kv;
    *n = i;
    return 1;
}


/* ---- value validators ------------------------------------------------ */

static const char *
check_name(const char *s)
{
    size_t len = strlen(s);
    const char *p;

    if (len == 0 || len > HM_CONF_NAME_MAX) {
        return "names are 1 to 100 characters long";
    }
    for (p = s; *p; p++) {
        if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-'
            && *p != '.')
        {
            return "names may use letters, digits, \".\", \"_\" and \"-\" only";
        }
    }
    return NULL;
}

/* A DNS host name (no wildcard): labels of letters, digits, "-" and "_". */
static const char *
check_hostname(const char *s)
{
    size_t      len = strlen(s), label = 0;
    const char *p;

    if (len == 0 || len > 253) {
        return "a host name is 1 to 253 characters long";
    }
    for (p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0) {
                return "empty label in host name";
            }
            label = 0;
            continue;
        }
        if (*p == '*') {
            return "a wildcard is not a host name: one exact name is needed "
                   "here";
        }
        if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_') {
            return "a host name uses letters, digits, \"-\", \"_\" and dots";
        }
        if (++label > 63) {
            return "a host name label is at most 63 characters long";
        }
    }
    if (label == 0) {
        return "a trailing dot is not allowed: write the name without it";
    }
    return NULL;
}

/* A server name: an exact host name or "*." followed by one. */
static const char *
check_server_name(const char *s)
{
    if (s[0] == '*') {
        if (s[1] != '.') {
            return "a wildcard is a whole leading label: \"*.example.com\"";
        }
        s += 2;
    }
    if (strchr(s, '*') != NULL) {
        return "only a leading \"*.\" label may be a wildcard";
    }
    return check_hostname(s);
}

static int
is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *
check_token(const char *s)
{
    const char *p;

    if (*s == '\0') {
        return "must not be empty";
    }
    for (p = s; *p; p++) {
        if (!is_tchar((unsigned char) *p) || *p == '*') {
            return "not a valid HTTP token";
        }
    }
    return NULL;
}

static const char *
check_method(const char *s)
{
    const char *p;

    if (check_token(s) != NULL) {
        return "not a valid HTTP method";
    }
    for (p = s; *p; p++) {
        if (islower((unsigned char) *p)) {
            return "methods are case-sensitive and upper-case";
        }
    }
    return NULL;
}

/* Header names the proxy owns for message framing: never set or strip. */
static int
framing_header(const char *s)
{
    static const char *const names[] = {
        "content-length", "transfer-encoding", "connection", "upgrade",
        "te", "trailer", "keep-alive", "proxy-connection", NULL
    };
    const char *const *n;

    for (n = names; *n != NULL; n++) {
        if (strcasecmp(s, *n) == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *
check_header_name(const char *s)
{
    if (check_token(s) != NULL) {
        return "not a valid header name";
    }
    return NULL;
}

static const char *
check_set_header(const char *s)
{
    if (check_token(s) != NULL) {
        return "not a valid header name";
    }
    if (framing_header(s)) {
        return "this header is managed by the proxy and cannot be set";
    }
    return NULL;
}

/* A header name, or a prefix ending in "*" ("X-Internal-*"). */
static const char *
check_strip_header(const char *s)
{
    size_t len = strlen(s);
    char   buf[256];

    if (len >= 2 && s[len - 1] == '*' && len < sizeof(buf)) {
        memcpy(buf, s, len - 1);
        buf[len - 1] = '\0';
        if (check_token(buf) != NULL) {
            return "not a header name or a prefix ending in \"*\"";
        }
        return NULL;
    }
    if (check_token(s) != NULL) {
        return "not a header name or a prefix ending in \"*\"";
    }
    if (framing_header(s)) {
        return "this header is managed by the proxy and cannot be stripped";
    }
    return NULL;
}

/* w (the verdict on header s so far), or, when s is Host, why a header
 * whose client copy is removed cannot be Host: the upstream request needs
 * it (set_request may replace it). */
static const char *
keep_host(const char *s, const char *w)
{
    if (w == NULL && strcasecmp(s, "host") == 0) {
        return "the upstream request needs Host: it cannot be removed "
               "(set_request can replace it)";
    }
    return w;
}

/* strip_request: a strippable header other than Host. */
static const char *
check_request_strip_header(const char *s)
{
    return keep_host(s, check_strip_header(s));
}

/* client_cert_header (its client copy is removed): a settable header
 * other than Host. */
static const char *
check_client_cert_header(const char *s)
{
    return keep_host(s, check_set_header(s));
}

static const char *
check_header_value(const char *s)
{
    const char *p;

    for (p = s; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return "header values may not contain control characters";
        }
    }
    return NULL;
}

/* The reason for a '%' not followed by two hex digits in a path. */
static const char bad_escape[] =
    "malformed percent-encoding (\"%\" and two hex digits)";

static const char *
check_url_path(const char *s)
{
    const char *p;

    if (s[0] != '/') {
        return "must start with \"/\"";
    }
    if (strlen(s) > 4096) {
        return "longer than 4096 bytes";
    }
    for (p = s; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if (c <= 0x20 || c >= 0x7f) {
            return "must not contain spaces, control or non-ASCII bytes "
                   "(percent-encode them)";
        }
        if (c == '#') {
            return "must not contain \"#\" (a fragment is not part of a "
                   "request)";
        }
        if (c == '%' && (hm_hexval(p[1]) < 0 || hm_hexval(p[2]) < 0)) {
            return bad_escape;
        }
    }
    return NULL;
}

/*
 * Routes compare the normalised request path (hm_http_normalize_path():
 * unreserved escapes decoded, %2F a slash, hex upper-cased, slashes
 * merged, dot segments resolved), so a match path that no normalised path
 * can hold never matches, like a deny rule that denies nothing.  A prefix
 * may end inside a segment ("/." matches "/.well-known/"): it can match
 * when, followed by one more character ("x"), it is normal.  Returns
 * NULL, or the reason with the spelling that matches in fix (pool
 * string).
 */
static const char *
check_match_path(cx_t *cx, const char *s, int prefix, char **fix)
{
    size_t len = strlen(s), n;
    char  *in, *out;

    if (strchr(s, '?') != NULL) {
        return "the query is not part of the path routes match";
    }
    in = palloc(cx, len + 2);
    memcpy(in, s, len);
    if (prefix) {
        in[len++] = 'x';
    }
    in[len] = '\0';
    out = palloc(cx, len + 2);
    n = hm_http_normalize_path(in, len, out);
    if (n == 0) {
        return bad_escape;
    }
    if (n == len && memcmp(in, out, len) == 0) {
        return NULL;
    }
    if (prefix) {
        out[n - 1] = '\0';             /* the "x" */
    }
    *fix = out;
    return "never matches: requests are routed on their normalised path "
           "(escapes of letters, digits and \"-._~\" decoded, %2F as \"/\", "
           "hex in upper case, no \"//\", \".\" or \"..\" segments)";
}

static const char *
check_alpn(const char *s)
{
    if (strcmp(s, "http/1.1") != 0) {
        return "not supported yet: only \"http/1.1\" is served";
    }
    return NULL;
}

static const char *
check_pin(const char *s)
{
    const char *p;
    size_t      n;

    if (strncmp(s, "sha256/", 7) != 0) {
        return "a pin is \"sha256/\" followed by the base64 SHA-256 of the "
               "SubjectPublicKeyInfo";
    }
    p = s + 7;
    n = strlen(p);
    if (n != 44 || p[43] != '=' || p[42] == '=') {
        return "a SHA-256 pin is 44 base64 characters ending in one \"=\"";
    }
    for (n = 0; n < 43; n++) {
        if (!isalnum((unsigned char) p[n]) && p[n] != '+' && p[n] != '/') {
            return "not base64";
        }
    }
    return NULL;
}


/* ---- addresses ------------------------------------------------------ */

void
hm_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else if (len > 0) {
        snprintf(buf, len, "?");
    }
}

/* Parses a decimal port 1..65535 of exactly the bytes [s, end). */
static int
parse_port(const char *s, const char *end, uint16_t *port)
{
    unsigned long v = 0;
    const char   *p;

    if (s == end || end - s > 5) {
        return HM_ERROR;
    }
    for (p = s; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return HM_ERROR;
        }
        v = v * 10 + (unsigned long) (*p - '0');
    }
    if (v == 0 || v > 65535) {
        return HM_ERROR;
    }
    *port = (uint16_t) v;
    return HM_OK;
}

/*
 * Parses "1.2.3.4:443", "[::1]:443", "*:443" or ":443" (both IPv4 any)
 * into addr (sockaddr and canonical text).  HM_OK or HM_ERROR.
 */
int
hm_addr_parse(const char *s, hm_addr_t *addr)
{
    const char *colon, *end;
    char        host[INET6_ADDRSTRLEN + 1];
    size_t      hlen;
    uint16_t    port;

    memset(addr, 0, sizeof(*addr));
    if (s == NULL) {
        return HM_ERROR;
    }
    end = s + strlen(s);

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &addr->sa;

        if (rb == NULL || rb[1] != ':') {
            return HM_ERROR;
        }
        hlen = (size_t) (rb - s - 1);
        if (hlen == 0 || hlen >= sizeof(host)) {
            return HM_ERROR;
        }
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        if (parse_port(rb + 2, end, &port) != HM_OK
            || inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
        {
            return HM_ERROR;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        addr->len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *) &addr->sa;

        colon = strrchr(s, ':');
        if (colon == NULL || strchr(s, ':') != colon) {
            return HM_ERROR;
        }
        hlen = (size_t) (colon - s);
        if (hlen >= sizeof(host)) {
            return HM_ERROR;
        }
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (parse_port(colon + 1, end, &port) != HM_OK) {
            return HM_ERROR;
        }
        if (hlen == 0 || strcmp(host, "*") == 0) {
            s4->sin_addr.s_addr = htonl(INADDR_ANY);
        } else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            return HM_ERROR;
        }
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        addr->len = sizeof(*s4);
    }
    hm_addr_format((struct sockaddr *) &addr->sa, addr->text,
                   sizeof(addr->text));
    return HM_OK;
}

static int
addr_equal(const hm_addr_t *a, const hm_addr_t *b)
{
    return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

static int
addr_port(const hm_addr_t *a)
{
    return ntohs(((const struct sockaddr_in *) &a->sa)->sin_port);
}

static int
addr_is_any(const hm_addr_t *a)
{
    const struct in6_addr *s6;

    if (a->sa.ss_family == AF_INET) {
        return ((const struct sockaddr_in *) &a->sa)->sin_addr.s_addr
               == htonl(INADDR_ANY);
    }
    /* :: or ::ffff:0.0.0.0 */
    s6 = &((const struct sockaddr_in6 *) &a->sa)->sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(s6)
           || (IN6_IS_ADDR_V4MAPPED(s6) && s6->s6_addr32[3] == 0);
}

/*
 * Why s is not an address hm_addr_parse() takes (called on its failure
 * only, for the configuration message).  hostnames: a "name:port" is
 * acceptable at this place (upstream servers), so only its port is
 * judged here.  Returns a static reason, or NULL when nothing more precise
 * than "not an address such as ..." can be said (no port at all).
 */
static const char *
addr_problem(const char *s, int hostnames)
{
    const char     *rb, *colon, *port;
    char            host[INET6_ADDRSTRLEN + 1];
    struct in6_addr a6;
    size_t          hlen;
    uint16_t        p;

    if (s[0] == '[') {
        if ((rb = strchr(s, ']')) == NULL) {
            return "missing \"]\" after the IPv6 address";
        }
        hlen = (size_t) (rb - s - 1);
        if (memchr(s + 1, '%', hlen) != NULL) {
            return "IPv6 zone ids (\"%\") are not supported";
        }
        if (hlen == 0 || hlen >= sizeof(host)) {
            return "not an IPv6 address inside the brackets";
        }
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            return "not an IPv6 address inside the brackets";
        }
        if (rb[1] != ':') {
            return "no \":port\" after \"]\"";
        }
        port = rb + 2;
    } else {
        if ((colon = strrchr(s, ':')) == NULL) {
            return NULL;                 /* no port: the examples say it */
        }
        if (strchr(s, ':') != colon) {
            return "an IPv6 address is written in brackets, such as "
                   "\"[::1]:443\"";
        }
        port = colon + 1;
        if (!hostnames && parse_port(port, port + strlen(port), &p) == HM_OK) {
            return "not an IPv4 address or a bracketed IPv6 address "
                   "(host names are not allowed here)";
        }
    }
    if (*port == '\0') {
        return "no port after \":\"";
    }
    if (strspn(port, "0123456789") != strlen(port)) {
        return "the port is not a decimal number";
    }
    if (parse_port(port, port + strlen(port), &p) != HM_OK) {
        return "the port must be 1..65535";
    }
    return NULL;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d): an IPv6-only socket cannot
 * bind it.  Writes the IPv4 form "a.b.c.d:port" to buf and returns 1. */
static int
addr_v4mapped(const hm_addr_t *a, char *buf, size_t len)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) &a->sa;
    char                       ip[INET_ADDRSTRLEN];

    if (a->sa.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        return 0;
    }
    inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
    snprintf(buf, len, "%s:%u", ip, ntohs(s6->sin6_port));
    return 1;
}

/* The error for a listen address hm_addr_parse() refused: the expected
 * forms (examples), then the precise reason when there is one. */
static void
bad_listen_addr(cx_t *cx, const char *s, const char *examples)
{
    const char *why = addr_problem(s, 0);
    char        q[128];

    cerr(cx, "not an address such as %s (got %s)%s%s", examples,
         quote(q, sizeof(q), s), why ? ": " : "", why ? why : "");
}

/*
 * Whether the master could bind a listen address at start as far as the
 * address goes: a bind to it with port 0 (no port taken, nothing
 * listened on) fails with EADDRNOTAVAIL for an address this machine does
 * not have, EAFNOSUPPORT/EADDRNOTAVAIL for IPv6 on a host without it,
 * EINVAL for an IPv6 link-local (it needs a zone id) or multicast one.
 * Returns 0 or that errno; other failures (a port in use, which the
 * running master itself holds at a reload) are the start's to report.
 */
static int
addr_unavailable(const hm_addr_t *a)
{
    struct sockaddr_storage ss;
    int                     fd, on = 1, err = 0;

    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno == EAFNOSUPPORT ? errno : 0;
    }
    ss = a->sa;
    if (ss.ss_family == AF_INET6) {
        (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
        ((struct sockaddr_in6 *) &ss)->sin6_port = 0;
    } else {
        ((struct sockaddr_in *) &ss)->sin_port = 0;
    }
    if (bind(fd, (struct sockaddr *) &ss, a->len) != 0
        && (errno == EADDRNOTAVAIL || errno == EINVAL))
    {
        err = errno;
    }
    close(fd);
    return err;
}

/* Reports a listen address addr_unavailable() refuses (not with
 * HM_CONF_NO_RESOLVE: the unit tests and fuzzers touch no socket). */
static void
check_addr_local(cx_t *cx, const hm_addr_t *a)
{
    int err;

    if (cx->flags & HM_CONF_NO_RESOLVE) {
        return;
    }
    err = addr_unavailable(a);
    if (err == EINVAL) {
        cerr(cx, "cannot listen on %s: not an address a socket can be bound "
             "to (a link-local or multicast address) (%s)", a->text,
             strerror(err));
    } else if (err != 0) {
        cerr(cx, "cannot listen on %s: not an address of this machine (%s)",
             a->text, strerror(err));
    }
}

/* Two listen addresses that cannot both be bound: equal, or the same
 * family and port with one of them the wildcard address. */
static int
addr_overlaps(const hm_addr_t *a, const hm_addr_t *b)
{
    if (addr_equal(a, b)) {
        return 1;
    }
    return a->sa.ss_family == b->sa.ss_family
           && addr_port(a) == addr_port(b)
           && (addr_is_any(a) || addr_is_any(b));
}


/* ---- files and paths ------------------------------------------------ */

/* Makes s absolute against the config file's folder (pool string); "./"
 * components are dropped. */
static char *
abs_path(cx_t *cx, const char *s)
{
    size_t dlen, slen;
    char  *p;

    if (s[0] == '/') {
        return pstrdup(cx, s);
    }
    while (s[0] == '.' && s[1] == '/') {
        s += 2;
        while (*s == '/') {
            s++;
        }
    }
    dlen = strlen(cx->conf->dir);
    slen = strlen(s);
    p = palloc(cx, dlen + slen + 2);
    memcpy(p, cx->conf->dir, dlen);
    if (dlen == 0 || p[dlen - 1] != '/') {
        p[dlen++] = '/';
    }
    memcpy(p + dlen, s, slen + 1);
    return p;
}

#define FILE_READ   1       /* must be a readable regular file */
#define FILE_DIROK  2       /* its folder must exist (a file we create) */

/*
 * A path key: absolute-ised into *out; with FILE_READ the file must be a
 * readable regular file, with FILE_DIROK its folder must exist and this
 * user must be able to create the file there (or write it if it exists).
 */
static int
conf_path(cx_t *cx, json_t *obj, const char *key, int check, char **out)
{
    char       *s, *abs, *slash;
    struct stat st;
    const char *what;
    char        q[HM_CONF_PATH_MAX * 4 + 8];
    char        c;
    int         rc, fd, err;

    rc = conf_str(cx, obj, key, &s);
    if (rc != 1) {
        return rc;
    }
    abs = abs_path(cx, s);
    if (check == FILE_READ) {
        fd = open(abs, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            cerr_at(cx, key, "cannot read %s: %s",
                    quote_n(q, sizeof(q), abs, HM_CONF_PATH_MAX),
                    strerror(errno));
            return -1;
        }
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            cerr_at(cx, key, "%s is not a regular file",
                    quote_n(q, sizeof(q), abs, HM_CONF_PATH_MAX));
            return -1;
        }
        close(fd);
    } else if (check == FILE_DIROK) {
        slash = strrchr(abs, '/');
        if (slash != NULL && slash != abs) {
            *slash = '\0';
            if (stat(abs, &st) != 0 || !S_ISDIR(st.st_mode)) {
                cerr_at(cx, key, "folder %s does not exist",
                        quote_n(q, sizeof(q), abs, HM_CONF_PATH_MAX));
                *slash = '/';
                return -1;
            }
            *slash = '/';
        }
        if (stat(abs, &st) == 0 && S_ISDIR(st.st_mode)) {
            cerr_at(cx, key, "%s is a folder, not a file",
                    quote_n(q, sizeof(q), abs, HM_CONF_PATH_MAX));
            return -1;
        }
        /* What opening it at start would meet, without creating
         * anything: a name too long, a file or a folder this user may
         * not write. */
        err = 0;
        what = "create";
        if (stat(abs, &st) == 0) {
            what = "write";
            err = access(abs, W_OK) == 0 ? 0 : errno;
        } else if (errno != ENOENT) {
            err = errno;
        } else if (slash != NULL) {
            c = slash[1];               /* the folder, "/" included */
            slash[1] = '\0';
            err = access(abs, W_OK | X_OK) == 0 ? 0 : errno;
            slash[1] = c;
        }
        if (err != 0) {
            cerr_at(cx, key, "cannot %s %s: %s", what,
                    quote_n(q, sizeof(q), abs, HM_CONF_PATH_MAX),
                    strerror(err));
            return -1;
        }
    }
    *out = abs;
    return 1;
}


/* ---- lookups --------------------------------------------------------- */

hm_conf_upstream_t *
hm_conf_upstream_find(hm_conf_t *conf, const char *name)
{
    size_t i;

    for (i = 0; i < conf->nupstreams; i++) {
        if (conf->upstreams[i].name != NULL
            && strcmp(conf->upstreams[i].name, name) == 0)
        {
            return &conf->upstreams[i];
        }
    }
    return NULL;
}

hm_conf_site_t *
hm_conf_site_find(hm_conf_t *conf, const char *name)
{
    size_t i;

    for (i = 0; i < conf->nsites; i++) {
        if (conf->sites[i].name != NULL
            && strcmp(conf->sites[i].name, name) == 0)
        {
            return &conf->sites[i];
        }
    }
    return NULL;
}

hm_conf_cert_t *
hm_conf_cert_find(hm_conf_t *conf, const char *name)
{
    size_t i;

    for (i = 0; i < conf->ncerts; i++) {
        if (conf->certs[i].name != NULL
            && strcmp(conf->certs[i].name, name) == 0)
        {
            return &conf->certs[i];
        }
    }
    return NULL;
}

/* A string naming an entry of a section: returns the entry or NULL (error
 * printed: wrong type or no such name). */
static void *
conf_ref(cx_t *cx, json_t *obj, const char *key, const char *what,
         void *(*find)(hm_conf_t *, const char *))
{
    char  *name;
    void  *p;
    char   q[128];

    if (conf_str(cx, obj, key, &name) != 1) {
        return NULL;
    }
    p = find(cx->conf, name);
    if (p == NULL) {
        cerr_at(cx, key, "no %s named %s", what, quote(q, sizeof(q), name));
    }
    return p;
}

static void *
find_upstream(hm_conf_t *conf, const char *name)
{
    return hm_conf_upstream_find(conf, name);
}

static void *
find_cert(hm_conf_t *conf, const char *name)
{
    return hm_conf_cert_find(conf, name);
}

static void *
find_site(hm_conf_t *conf, const char *name)
{
    return hm_conf_site_find(conf, name);
}

/* ---- runtime ---------------------------------------------------------- */

/*
 * Whether this process may run on CPU <cpu> here (its affinity mask, which
 * is what a worker's sched_setaffinity() must stay within): 1, or 0 for a
 * CPU the machine does not have or a cgroup/taskset keeps it off.  1 when
 * the mask cannot be read (no verdict).
 */
static int
cpu_usable(int cpu)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return 1;
    }
    return cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set);
}

static void
decode_log(cx_t *cx, json_t *rt, hm_conf_runtime_t *r)
{
    static const char *const el_keys[] = { "path", "level", "format", NULL };
    static const char *const el_formats[] = { "text", "json", NULL };
    static const int el_fvals[] = { 0, 1 };
    static const char *const al_keys[] = { "path", "format", NULL };
    static const char *const levels[] = { "debug", "info", "warn", "error",
                                          NULL };
    static const int lvals[] = { HM_LOG_DEBUG, HM_LOG_INFO, HM_LOG_WARN,
                                 HM_LOG_ERROR };
    static const char *const formats[] = { "json", NULL };
    static const int fvals[] = { 0 };
    json_t *o, *p;
    size_t  old;
    int     fmt;

    o = conf_obj(cx, rt, "error_log");
    if (o != NULL) {
        old = path_key(cx, "error_log");
        check_keys(cx, o, el_keys, NULL);
        p = json_object_get(o, "path");
        if (json_is_string(p) && strcmp(json_string_value(p), "stderr") == 0) {
            r->error_log_path = pstrdup(cx, "stderr");
        } else if (json_is_string(p)
                   && (strcmp(json_string_value(p), "stdout") == 0
                       || strcmp(json_string_value(p), "off") == 0))
        {
            /* nginx's classic trap: a file named "off" next to the
             * configuration.  "./off" still names such a file. */
            cerr_at(cx, "path", "\"%s\" is not a special value of the "
                    "error log (\"stderr\" or a file; \"./%s\" for a file "
                    "of that name)", json_string_value(p),
                    json_string_value(p));
        } else {
            conf_path(cx, o, "path", FILE_DIROK, &r->error_log_path);
        }
        conf_enum(cx, o, "level", levels, lvals, &r->error_log_level);
        conf_enum(cx, o, "format", el_formats, el_fvals, &r->error_log_json);
        path_pop(cx, old);
    }

    o = conf_obj(cx, rt, "access_log");
    if (o != NULL) {
        old = path_key(cx, "access_log");
        check_keys(cx, o, al_keys, NULL);
        p = json_object_get(o, "path");
        if (p == NULL) {
            required(cx, o, "path");
        } else if (json_is_string(p)
                   && strcmp(json_string_value(p), "off") == 0)
        {
            r->access_log_path = NULL;
        } else if (json_is_string(p)
                   && strcmp(json_string_value(p), "stdout") == 0)
        {
            r->access_log_path = pstrdup(cx, "stdout");
        } else if (json_is_string(p)
                   && strcmp(json_string_value(p), "stderr") == 0)
        {
            cerr_at(cx, "path", "\"stderr\" is not a special value of the "
                    "access log (\"stdout\", \"off\" or a file; "
                    "\"./stderr\" for a file of that name)");
        } else {
            conf_path(cx, o, "path", FILE_DIROK, &r->access_log_path);
        }
        conf_enum(cx, o, "format", formats, fvals, &fmt);
        path_pop(cx, old);
    }
}

static void
decode_runtime(cx_t *cx, json_t *rt)
{
    static const char *const keys[] = {
        "workers", "cpu_affinity", "user", "group", "pid_file", "error_log",
        "access_log", "max_connections", "shutdown_timeout_s",
        "tls_session_ticket_keys", NULL
    };
    hm_conf_runtime_t *r = &cx->conf->runtime;
    json_t            *j, *v;
    size_t             old, old2, i;
    long               ncpu;
    char               q[128], why[512];

    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) {
        ncpu = 1;
    }
    r->workers = (int) ncpu;
    r->cpu_affinity = HM_AFFINITY_OFF;
    r->error_log_path = pstrdup(cx, "stderr");
    r->error_log_level = HM_LOG_INFO;
    r->access_log_path = NULL;
    r->max_connections = 10000;
    r->shutdown_timeout_s = 30;

    if (rt == NULL) {
        return;
    }
    if (!json_is_object(rt)) {
        old = path_key(cx, "runtime");
        err_type(cx, "an object", rt);
        path_pop(cx, old);
        return;
    }
    old = path_key(cx, "runtime");
    check_keys(cx, rt, keys, NULL);

    j = json_object_get(rt, "workers");
    if (j != NULL && !(json_is_string(j)
                       && strcmp(json_string_value(j), "auto") == 0))
    {
        if (json_is_integer(j)) {
            conf_int(cx, rt, "workers", 1, 1024, &r->workers);
        } else {
            cerr_at(cx, "workers", "expected an integer or \"auto\", got %s",
                    json_is_string(j) ? quote(q, sizeof(q),
                                              json_string_value(j))
                                      : type_name(j));
        }
    }

    j = json_object_get(rt, "cpu_affinity");
    if (j != NULL) {
        old2 = path_key(cx, "cpu_affinity");
        if (json_is_string(j) && strcmp(json_string_value(j), "auto") == 0) {
            r->cpu_affinity = HM_AFFINITY_AUTO;
        } else if (json_is_string(j)
                   && strcmp(json_string_value(j), "off") == 0)
        {
            r->cpu_affinity = HM_AFFINITY_OFF;
        } else if (json_is_array(j) && json_array_size(j) > 0) {
            r->cpus = pcalloc(cx, json_array_size(j) * sizeof(int));
            r->ncpus = json_array_size(j);
            r->cpu_affinity = HM_AFFINITY_LIST;
            json_array_foreach(j, i, v) {
                size_t old3 = path_index(cx, i);
                if (!json_is_integer(v)) {
                    err_type(cx, "a CPU number", v);
                } else if (json_integer_value(v) < 0
                           || json_integer_value(v) > 1023)
                {
                    cerr(cx, "must be between 0 and 1023 (got %lld)",
                         (long long) json_integer_value(v));
                } else {
                    r->cpus[i] = (int) json_integer_value(v);
                    if (!cpu_usable(r->cpus[i])) {
                        cwarn_at(cx, NULL, "CPU %d is not one this process "
                                 "may run on here: the worker given it "
                                 "will run unpinned", r->cpus[i]);
                    }
                }
                path_pop(cx, old3);
            }
        } else {
            cerr(cx, "must be \"auto\", \"off\" or a non-empty array of "
                 "CPU numbers");
        }
        path_pop(cx, old2);
    }

    if (conf_str(cx, rt, "user", &r->user) == 1
        && getpwnam(r->user) == NULL)
    {
        cerr_at(cx, "user", "no such user %s", quote(q, sizeof(q), r->user));
    }
    if (conf_str(cx, rt, "group", &r->group) == 1
        && getgrnam(r->group) == NULL)
    {
        cerr_at(cx, "group", "no such group %s",
                quote(q, sizeof(q), r->group));
    }
    if (json_object_get(rt, "group") != NULL
        && json_object_get(rt, "user") == NULL)
    {
        /* The switch is user and group together (initgroups, setgid,
         * setuid); a group alone would be silently ignored. */
        cerr_at(cx, "group", "only with \"user\": workers switch to a user "
                "and, with \"group\", that group instead of the user's own");
    }
    conf_path(cx, rt, "pid_file", FILE_DIROK, &r->pid_file);
    decode_log(cx, rt, r);
    conf_int(cx, rt, "max_connections", 1, 10000000, &r->max_connections);
    conf_int(cx, rt, "shutdown_timeout_s", 0, 86400, &r->shutdown_timeout_s);
    if (conf_path(cx, rt, "tls_session_ticket_keys", FILE_READ,
                  &r->tls_session_ticket_keys) == 1
        && hm_tls_ticket_keys_check(r->tls_session_ticket_keys, why,
                                    sizeof(why)) != HM_OK)
    {
        cerr_at(cx, "tls_session_ticket_keys", "%s", why);
    }
    path_pop(cx, old);
}


/* ---- certificates ----------------------------------------------------- */

static void
cert_cleanup(void *data)
{
    hm_tls_cert_free(data);
}

static void
decode_cert(cx_t *cx, json_t *j, hm_conf_cert_t *c)
{
    static const char *const keys[] = { "cert", "key", "ocsp", NULL };
    char  why[512];
    int   ok = 1;

    if (!json_is_object(j)) {
        err_type(cx, "an object", j);
        return;
    }
    check_keys(cx, j, keys, NULL);
    if (!required(cx, j, "cert")
        || conf_path(cx, j, "cert", FILE_READ, &c->cert_path) != 1)
    {
        ok = 0;
    }
    if (!required(cx, j, "key")
        || conf_path(cx, j, "key", FILE_READ, &c->key_path) != 1)
    {
        ok = 0;
    }
    if (conf_path(cx, j, "ocsp", FILE_READ, &c->ocsp_path) == -1) {
        ok = 0;
    }
    if (!ok) {
        return;
    }
    if (hm_tls_cert_load(c, why, sizeof(why)) != HM_OK) {
        if (c->error_key != NULL) {
            cerr_at(cx, c->error_key, "%s", why);   /* certificates.a.key */
        } else {
            cerr(cx, "%s", why);                    /* the pair */
        }
        return;
    }
    hm_pool_cleanup_add(cx->pool, cert_cleanup, c);
    if (hm_tls_cert_check_dates(c, why, sizeof(why)) != HM_OK) {
        cwarn_at(cx, "cert", "%s: clients will refuse it", why);
    }
    if (hm_tls_cert_check_ocsp(c, why, sizeof(why)) != HM_OK) {
        cwarn_at(cx, "ocsp", "the OCSP response %s: clients that check it "
                 "will refuse the handshake", why);
    }
}

static void
decode_certs(cx_t *cx, json_t *root)
{
    json_t     *o, *v;
    const char *name, *why;
    size_t      i, old, old2;
    hm_conf_t  *conf = cx->conf;
    char        q[128];

    o = conf_obj(cx, root, "certificates");
    if (o == NULL) {
        return;
    }
    old = path_key(cx, "certificates");
    conf->certs = pcalloc(cx, (json_object_size(o) + 1)
                                 * sizeof(hm_conf_cert_t));
    i = 0;
    json_object_foreach(o, name, v) {
        old2 = path_key(cx, name);
        if ((why = check_name(name)) != NULL) {
            cerr(cx, "%s (got %s)", why, quote(q, sizeof(q), name));
        }
        conf->certs[i].name = pstrdup(cx, name);
        decode_cert(cx, v, &conf->certs[i]);
        i++;
        path_pop(cx, old2);
    }
    conf->ncerts = i;
    path_pop(cx, old);
}


/* ---- upstreams -------------------------------------------------------- */

typedef struct {
    hm_conf_server_t *v;
    size_t            n, cap;
} servers_t;

static void
servers_push(servers_t *s, const hm_addr_t *a, int weight)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = hm_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n].addr = *a;
    s->v[s->n].weight = weight;
    s->n++;
}

/*
 * One server address: an IP literal with port, or (unless
 * HM_CONF_NO_RESOLVE) a host name with port, resolved now; every address
 * of the name becomes a server (nginx).
 */
static void
server_addr(cx_t *cx, const char *s, int weight, servers_t *out)
{
    hm_addr_t        a;
    const char      *colon, *why;
    char             host[256], port[8], q[128];
    struct addrinfo  hints, *res, *ai;
    size_t           hlen, n;
    uint16_t         p;
    int              rc;

    if (hm_addr_parse(s, &a) == HM_OK) {
        if (addr_is_any(&a)) {
            cerr(cx, "cannot connect to a wildcard address (got %s)",
                 quote(q, sizeof(q), s));
            return;
        }
        servers_push(out, &a, weight);
        return;
    }
    colon = strrchr(s, ':');
    if (colon == NULL || s[0] == '[' || colon == s
        || (size_t) (colon - s) >= sizeof(host)
        || parse_port(colon + 1, s + strlen(s), &p) != HM_OK
        || strchr(s, ':') != colon)
    {
        why = addr_problem(s, 1);
        cerr(cx, "not an address with a port such as \"10.0.0.1:443\", "
             "\"[::1]:443\" or \"backend.internal:443\" (got %s)%s%s",
             quote(q, sizeof(q), s), why ? ": " : "", why ? why : "");
        return;
    }
    hlen = (size_t) (colon - s);
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if ((why = check_hostname(host)) != NULL) {
        cerr(cx, "%s (got %s)", why, quote(q, sizeof(q), s));
        return;
    }
    if (cx->flags & HM_CONF_NO_RESOLVE) {
        cerr(cx, "host names are not resolved here: use an IP address "
             "(got %s)", quote(q, sizeof(q), s));
        return;
    }
    snprintf(port, sizeof(port), "%u", p);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        cerr(cx, "cannot resolve %s: %s", quote(q, sizeof(q), host),
             gai_strerror(rc));
        return;
    }
    n = 0;
    for (ai = res; ai != NULL && n < HM_CONF_MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            || ai->ai_addrlen > sizeof(a.sa))
        {
            continue;
        }
        memset(&a, 0, sizeof(a));
        memcpy(&a.sa, ai->ai_addr, ai->ai_addrlen);
        a.len = ai->ai_addrlen;
        hm_addr_format(ai->ai_addr, a.text, sizeof(a.text));
        {
            size_t k;
            int    dup = 0;

            for (k = 0; k < out->n; k++) {
                if (addr_equal(&out->v[k].addr, &a)) {
                    dup = 1;
                }
            }
            if (!dup) {
                servers_push(out, &a, weight);
                n++;
            }
        }
    }
    freeaddrinfo(res);
    if (n == 0) {
        cerr(cx, "%s has no IPv4 or IPv6 address", quote(q, sizeof(q), host));
    }
}

static void
decode_servers(cx_t *cx, json_t *u, hm_conf_upstream_t *up)
{
    static const char *const keys[] = { "address", "weight", NULL };
    json_t    *arr, *v;
    size_t     i, old, old2;
    servers_t  s = { NULL, 0, 0 };
    char      *addr;
    int        weight;

    if (!required(cx, u, "servers")) {
        return;
    }
    arr = conf_arr(cx, u, "servers");
    if (arr == NULL) {
        return;
    }
    old = path_key(cx, "servers");
    if (json_array_size(arr) == 0) {
        cerr(cx, "must not be empty");
    }
    json_array_foreach(arr, i, v) {
        old2 = path_index(cx, i);
        if (json_is_string(v)) {
            server_addr(cx, json_string_value(v), 1, &s);
        } else if (json_is_object(v)) {
            check_keys(cx, v, keys, NULL);
            weight = 1;
            conf_int(cx, v, "weight", 1, 100, &weight);
            if (required(cx, v, "address")
                && conf_str(cx, v, "address", &addr) == 1)
            {
                size_t old3 = path_key(cx, "address");
                server_addr(cx, addr, weight, &s);
                path_pop(cx, old3);
            }
        } else {
            err_type(cx, "an address string or an object", v);
        }
        path_pop(cx, old2);
    }
    for (i = 1; i < s.n; i++) {
        size_t j;

        for (j = 0; j < i; j++) {
            if (strcmp(s.v[i].addr.text, s.v[j].addr.text) == 0) {
                cwarn_at(cx, NULL, "%s is listed more than once: each entry "
                         "is a server of its own (its own share, "
                         "connections and health); use \"weight\" for a "
                         "bigger share", s.v[i].addr.text);
                break;
            }
        }
    }
    path_pop(cx, old);
    if (s.n > 0) {
        up->servers = palloc(cx, s.n * sizeof(*s.v));
        memcpy(up->servers, s.v, s.n * sizeof(*s.v));
        up->nservers = s.n;
    }
    free(s.v);
}

static void
decode_upstream_tls(cx_t *cx, json_t *t, hm_conf_upstream_t *up)
{
    static const char *const keys[] = {
        "server_name", "ca", "verify", "accepted_risk", "client_certificate",
        "pins", NULL
    };
    hm_conf_upstream_tls_t *tls = &up->tls;
    char                    why[512], q[128];
    const char             *w;
    unsigned char           ip[sizeof(struct in6_addr)];

    check_keys(cx, t, keys, NULL);
    tls->present = 1;
    tls->verify = 1;
    if (conf_str(cx, t, "server_name", &tls->server_name) == 1) {
        hm_strlow(tls->server_name, tls->server_name,
                  strlen(tls->server_name));
        tls->server_name_ip = inet_pton(AF_INET, tls->server_name, ip) == 1
                              || inet_pton(AF_INET6, tls->server_name, ip)
                                 == 1;
        if (!tls->server_name_ip
            && (w = check_hostname(tls->server_name)) != NULL)
        {
            if (tls->server_name[0] == '[') {
                w = "an IPv6 address is written without brackets here, "
                    "such as \"fd00::5\"";
            } else if (strchr(tls->server_name, '%') != NULL) {
                w = "IPv6 zone ids (\"%\") are not supported";
            } else if (strchr(tls->server_name, ':') != NULL) {
                w = "a host name or IP address without a port";
            }
            cerr_at(cx, "server_name", "%s (got %s)", w,
                    quote(q, sizeof(q), tls->server_name));
        }
    }
    if (conf_path(cx, t, "ca", FILE_READ, &tls->ca_path) == 1
        && hm_tls_ca_check(tls->ca_path, why, sizeof(why)) != HM_OK)
    {
        cerr_at(cx, "ca", "%s", why);
    }
    conf_bool(cx, t, "verify", &tls->verify);
    conf_reason(cx, t, "accepted_risk", &tls->accepted_risk);
    tls->client_certificate = conf_ref(cx, t, "client_certificate",
                                       "certificate", find_cert);
    conf_strv(cx, t, "pins", STRV_UNIQUE, check_pin, &tls->pins,
              &tls->npins);

    if (!tls->verify && json_object_get(t, "accepted_risk") == NULL) {
        cerr_at(cx, "verify", "\"verify\": false needs \"accepted_risk\": "
                "say in writing why an unverified upstream is acceptable");
    }
    if (tls->verify && tls->accepted_risk != NULL) {
        cwarn_at(cx, "accepted_risk", "ignored while \"verify\" is true: "
                 "the certificate is verified, no risk is accepted (and the "
                 "trust report shows none)");
    }
    if (tls->verify && tls->server_name == NULL
        && json_object_get(t, "server_name") == NULL)
    {
        cerr(cx, "\"server_name\" is required when \"verify\" is true: it "
             "is the name checked in the upstream's certificate");
    }
}

static void
decode_upstream(cx_t *cx, json_t *u, hm_conf_upstream_t *up)
{
    static const char *const keys[] = {
        "servers", "balance", "tls", "plaintext", "pool",
        "connect_timeout_ms", "read_timeout_ms", "health_check",
        "max_fails", "fail_timeout_s", NULL
    };
    static const char *const pt_keys[] = { "accepted_risk", NULL };
    static const char *const pool_keys[] = { "max_idle_per_worker",
                                             "idle_timeout_s", NULL };
    static const char *const hc_keys[] = { "interval_s", "path",
                                           "fail_after", "pass_after",
                                           "timeout_ms", NULL };
    static const char *const balances[] = { "round_robin", "least_conn",
                                            "random_two", NULL };
    static const int bvals[] = { HM_BALANCE_ROUND_ROBIN,
                                 HM_BALANCE_LEAST_CONN,
                                 HM_BALANCE_RANDOM_TWO };
    json_t     *o;
    size_t      old;
    const char *w;
    char        q[128];

    up->balance = HM_BALANCE_ROUND_ROBIN;
    up->pool_max_idle = 32;
    up->pool_idle_timeout_s = 60;
    up->connect_timeout_ms = 2000;
    up->read_timeout_ms = 30000;
    up->max_fails = 3;
    up->fail_timeout_s = 10;
    up->health_check.interval_s = 5;
    up->health_check.path = "/healthz";
    up->health_check.fail_after = 3;
    up->health_check.pass_after = 2;
    up->health_check.timeout_ms = 2000;

    if (!json_is_object(u)) {
        err_type(cx, "an object", u);
        return;
    }
    check_keys(cx, u, keys, NULL);
    decode_servers(cx, u, up);
    conf_enum(cx, u, "balance", balances, bvals, &up->balance);

    if ((o = conf_obj(cx, u, "tls")) != NULL) {
        old = path_key(cx, "tls");
        decode_upstream_tls(cx, o, up);
        path_pop(cx, old);
    }
    if ((o = conf_obj(cx, u, "plaintext")) != NULL) {
        old = path_key(cx, "plaintext");
        check_keys(cx, o, pt_keys, NULL);
        if (required(cx, o, "accepted_risk")) {
            conf_reason(cx, o, "accepted_risk", &up->plaintext_risk);
        }
        path_pop(cx, old);
    }
    if (json_object_get(u, "tls") != NULL
        && json_object_get(u, "plaintext") != NULL)
    {
        cerr(cx, "\"tls\" and \"plaintext\" are mutually exclusive");
    }
    if ((o = conf_obj(cx, u, "pool")) != NULL) {
        old = path_key(cx, "pool");
        check_keys(cx, o, pool_keys, NULL);
        conf_int(cx, o, "max_idle_per_worker", 0, 100000, &up->pool_max_idle);
        conf_int(cx, o, "idle_timeout_s", 1, 86400, &up->pool_idle_timeout_s);
        path_pop(cx, old);
    }
    conf_int(cx, u, "connect_timeout_ms", 1, 600000, &up->connect_timeout_ms);
    conf_int(cx, u, "read_timeout_ms", 1, 86400000, &up->read_timeout_ms);
    conf_int(cx, u, "max_fails", 0, 1000, &up->max_fails);
    conf_int(cx, u, "fail_timeout_s", 1, 86400, &up->fail_timeout_s);
    if ((o = conf_obj(cx, u, "health_check")) != NULL) {
        hm_conf_health_check_t *hc = &up->health_check;

        old = path_key(cx, "health_check");
        check_keys(cx, o, hc_keys, NULL);
        hc->present = 1;
        conf_int(cx, o, "interval_s", 1, 86400, &hc->interval_s);
        if (conf_str(cx, o, "path", &hc->path) == 1
            && (w = check_url_path(hc->path)) != NULL)
        {
            cerr_at(cx, "path", "%s (got %s)", w,
                    quote(q, sizeof(q), hc->path));
        }
        conf_int(cx, o, "fail_after", 1, 100, &hc->fail_after);
        conf_int(cx, o, "pass_after", 1, 100, &hc->pass_after);
        conf_int(cx, o, "timeout_ms", 1, 600000, &hc->timeout_ms);
        path_pop(cx, old);
    }
}

static void
decode_upstreams(cx_t *cx, json_t *root)
{
    json_t     *o, *v;
    const char *name, *why;
    size_t      i, old, old2;
    hm_conf_t  *conf = cx->conf;
    char        q[128];

    o = conf_obj(cx, root, "upstreams");
    if (o == NULL) {
        return;
    }
    old = path_key(cx, "upstreams");
    conf->upstreams = pcalloc(cx, (json_object_size(o) + 1)
                                     * sizeof(hm_conf_upstream_t));
    i = 0;
    json_object_foreach(o, name, v) {
        old2 = path_key(cx, name);
        if ((why = check_name(name)) != NULL) {
            cerr(cx, "%s (got %s)", why, quote(q, sizeof(q), name));
        }
        conf->upstreams[i].name = pstrdup(cx, name);
        conf->upstreams[i].index = (int) i;
        decode_upstream(cx, v, &conf->upstreams[i]);
        i++;
        path_pop(cx, old2);
    }
    conf->nupstreams = i;
    path_pop(cx, old);
}


/* ---- sites ------------------------------------------------------------ */

static void
decode_site_tls(cx_t *cx, json_t *t, hm_conf_site_t *site)
{
    static const char *const keys[] = {
        "certificates", "min_version", "max_version", "alpn", "client_auth",
        "handshake_timeout_ms", "ciphers", NULL
    };
    static const char *const ca_keys[] = { "mode", "ca", NULL };
    static const char *const versions[] = { "TLSv1.2", "TLSv1.3", NULL };
    static const int vvals[] = { HM_TLS1_2, HM_TLS1_3 };
    static const char *const modes[] = { "none", "optional", "required",
                                         NULL };
    static const int mvals[] = { HM_CLIENT_AUTH_NONE,
                                 HM_CLIENT_AUTH_OPTIONAL,
                                 HM_CLIENT_AUTH_REQUIRED };
    hm_conf_site_tls_t *tls = &site->tls;
    char              **names;
    size_t              n, i, old, old2;
    json_t             *o;
    char                why[512], q[128];
    int                 rc;

    check_keys(cx, t, keys, NULL);
    if (required(cx, t, "certificates")
        && conf_strv(cx, t, "certificates", STRV_NONEMPTY | STRV_UNIQUE,
                     NULL, &names, &n) == 1)
    {
        tls->certificates = pcalloc(cx, n * sizeof(hm_conf_cert_t *));
        old = path_key(cx, "certificates");
        if (n > HM_TLS_MAX_CERTS) {
            cerr(cx, "at most %d (got %zu)", HM_TLS_MAX_CERTS, n);
        }
        for (i = 0; i < n; i++) {
            hm_conf_cert_t *c = hm_conf_cert_find(cx->conf, names[i]);
            if (c == NULL) {
                old2 = path_index(cx, i);
                cerr(cx, "no certificate named %s",
                     quote(q, sizeof(q), names[i]));
                path_pop(cx, old2);
            } else {
                tls->certificates[tls->ncertificates++] = c;
            }
        }
        path_pop(cx, old);
    }
    conf_enum(cx, t, "min_version", versions, vvals, &tls->min_version);
    conf_enum(cx, t, "max_version", versions, vvals, &tls->max_version);
    if (tls->min_version > tls->max_version) {
        cerr_at(cx, "max_version", "is lower than \"min_version\"");
    }
    rc = conf_strv(cx, t, "alpn", STRV_UNIQUE, check_alpn, &names, &n);
    if (rc == 1) {
        tls->alpn = names;
        tls->nalpn = n;
    }
    if ((o = conf_obj(cx, t, "client_auth")) != NULL) {
        old = path_key(cx, "client_auth");
        check_keys(cx, o, ca_keys, NULL);
        if (required(cx, o, "mode")) {
            conf_enum(cx, o, "mode", modes, mvals, &tls->client_auth);
        }
        if (conf_path(cx, o, "ca", FILE_READ, &tls->client_auth_ca) == 1
            && hm_tls_ca_check(tls->client_auth_ca, why, sizeof(why))
               != HM_OK)
        {
            cerr_at(cx, "ca", "%s", why);
        }
        if (tls->client_auth != HM_CLIENT_AUTH_NONE
            && json_object_get(o, "ca") == NULL)
        {
            cerr_at(cx, "ca", "required key is missing (the CA that signs "
                    "client certificates)");
        }
        if (tls->client_auth == HM_CLIENT_AUTH_NONE
            && tls->client_auth_ca != NULL)
        {
            cwarn_at(cx, "ca", "ignored while \"mode\" is \"none\": no "
                     "client certificate is asked for (and the trust report "
                     "shows none)");
        }
        path_pop(cx, old);
    }
    conf_int(cx, t, "handshake_timeout_ms", 1, 600000,
             &tls->handshake_timeout_ms);
    if (conf_str(cx, t, "ciphers", &tls->ciphers) == 1
        && hm_tls_ciphers_check(tls->ciphers, why, sizeof(why)) != HM_OK)
    {
        cerr_at(cx, "ciphers", "%s", why);
    }
}

static void
decode_headers(cx_t *cx, json_t *h, hm_conf_headers_t *hd)
{
    static const char *const keys[] = {
        "forwarded", "client_cert_header", "strip_request", "set_request",
        "set_response", "strip_response", NULL
    };
    static const char *const fwd[] = { "replace", "append", "off", NULL };
    static const int fvals[] = { HM_FORWARDED_REPLACE, HM_FORWARDED_APPEND,
                                 HM_FORWARDED_OFF };
    const char *w;
    char        q[128];

    check_keys(cx, h, keys, NULL);
    conf_enum(cx, h, "forwarded", fwd, fvals, &hd->forwarded);
    if (conf_str(cx, h, "client_cert_header", &hd->client_cert_header) == 1
        && (w = check_client_cert_header(hd->client_cert_header)) != NULL)
    {
        cerr_at(cx, "client_cert_header", "%s (got %s)", w,
                quote(q, sizeof(q), hd->client_cert_header));
    }
    conf_strv(cx, h, "strip_request", 0, check_request_strip_header,
              &hd->strip_request, &hd->nstrip_request);
    conf_strv(cx, h, "strip_response", 0, check_strip_header,
              &hd->strip_response, &hd->nstrip_response);
    conf_kv(cx, h, "set_request", 0, check_set_header, check_header_value,
            &hd->set_request, &hd->nset_request);
    conf_kv(cx, h, "set_response", 0, check_set_header, check_header_value,
            &hd->set_response, &hd->nset_response);
}

static void
decode_limits(cx_t *cx, json_t *l, hm_conf_site_t *site)
{
    static const char *const keys[] = {
        "max_header_bytes", "max_body_bytes", "header_timeout_ms",
        "idle_timeout_ms", "max_requests", NULL
    };
    hm_conf_limits_t *lim = &site->limits;
    const char       *key;
    json_t           *v;

    check_keys(cx, l, keys, NULL);
    if (site->mode == HM_SITE_PASSTHROUGH) {
        json_object_foreach(l, key, v) {
            if (strcmp(key, "idle_timeout_ms") != 0 && in_list(key, keys)) {
                cerr_at(cx, key, "only for terminating sites (this site is "
                        "passthrough)");
            }
        }
    }
    conf_size(cx, l, "max_header_bytes", 256, 1048576,
              &lim->max_header_bytes);
    conf_size(cx, l, "max_body_bytes", 0, 1LL << 40, &lim->max_body_bytes);
    conf_int(cx, l, "header_timeout_ms", 1, 3600000,
             &lim->header_timeout_ms);
    conf_int(cx, l, "idle_timeout_ms", 1, 86400000, &lim->idle_timeout_ms);
    conf_int(cx, l, "max_requests", 1, 100000000, &lim->max_requests);
}

static void
decode_match(cx_t *cx, json_t *m, hm_conf_match_t *mt)
{
    static const char *const keys[] = {
        "path_prefix", "path_exact", "methods", "headers", "host", NULL
    };
    static const char *const pkeys[] = { "path_prefix", "path_exact" };
    const char *w;
    char       *path, *fix;
    char        q[128], q2[128];
    int         i;

    check_keys(cx, m, keys, NULL);
    for (i = 0; i < 2; i++) {
        if (conf_str(cx, m, pkeys[i], &path) != 1) {
            continue;
        }
        *(i == 0 ? &mt->path_prefix : &mt->path_exact) = path;
        fix = NULL;
        if ((w = check_url_path(path)) == NULL) {
            w = check_match_path(cx, path, i == 0, &fix);
        }
        if (w != NULL && fix != NULL) {
            cerr_at(cx, pkeys[i], "%s: write %s (got %s)", w,
                    quote(q2, sizeof(q2), fix), quote(q, sizeof(q), path));
        } else if (w != NULL) {
            cerr_at(cx, pkeys[i], "%s (got %s)", w,
                    quote(q, sizeof(q), path));
        }
    }
    if (json_object_get(m, "path_prefix") != NULL
        && json_object_get(m, "path_exact") != NULL)
    {
        cerr(cx, "\"path_prefix\" and \"path_exact\" are mutually "
             "exclusive");
    }
    conf_strv(cx, m, "methods", STRV_NONEMPTY | STRV_UNIQUE, check_method,
              &mt->methods, &mt->nmethods);
    conf_kv(cx, m, "headers", 1, check_header_name, check_header_value,
            &mt->headers, &mt->nheaders);
    if (conf_str(cx, m, "host", &mt->host) == 1) {
        hm_strlow(mt->host, mt->host, strlen(mt->host));
        if ((w = check_hostname(mt->host)) != NULL) {
            cerr_at(cx, "host", "%s (got %s)", w,
                    quote(q, sizeof(q), mt->host));
        }
    }
}

static void
decode_route(cx_t *cx, json_t *r, hm_conf_site_t *site, hm_conf_route_t *rt,
             use_t *use)
{
    static const char *const keys[] = {
        "match", "upstream", "status", "body", "content_type",
        "jwt", "waf", "rate_limit", NULL        /* (not supported yet) */
    };
    static const char *const unsupported[] = { "jwt", "waf", "rate_limit",
                                               NULL };
    /* the section each of those names an entry of */
    static const char *const sections[] = { "jwt", "waf", "rate_limits" };
    json_t     *m, *v, *sec;
    size_t      old, i;
    int         has_up, has_status;
    const char *w;
    char        q[128];

    if (!json_is_object(r)) {
        err_type(cx, "an object", r);
        return;
    }
    check_keys(cx, r, keys, NULL);
    for (i = 0; unsupported[i] != NULL; i++) {
        /* A policy a route names: not built in this release either way,
         * but a name that no entry of its section has is a dangling
         * reference, said as such. */
        v = json_object_get(r, unsupported[i]);
        if (v == NULL) {
            continue;
        }
        sec = json_object_get(cx->root, sections[i]);
        if (json_is_string(v)
            && (!json_is_object(sec)
                || json_object_get(sec, json_string_value(v)) == NULL))
        {
            cerr_at(cx, unsupported[i], "no %s policy named %s (and %s "
                    "policies are not supported yet)", sections[i],
                    quote(q, sizeof(q), json_string_value(v)), sections[i]);
        } else {
            cerr_at(cx, unsupported[i], "not supported yet");
        }
    }
    if ((m = conf_obj(cx, r, "match")) != NULL) {
        old = path_key(cx, "match");
        decode_match(cx, m, &rt->match);
        path_pop(cx, old);
    }
    has_up = json_object_get(r, "upstream") != NULL;
    has_status = json_object_get(r, "status") != NULL;
    if (has_up && has_status) {
        cerr(cx, "\"upstream\" and \"status\" are mutually exclusive");
    } else if (!has_up && !has_status) {
        cerr(cx, "a route needs either \"upstream\" or \"status\"");
    }
    if (has_up) {
        rt->upstream = conf_ref(cx, r, "upstream", "upstream", find_upstream);
        if (rt->upstream != NULL) {
            rt->upstream->used_by_terminate = 1;
            if (use[rt->upstream->index].terminate_site == NULL) {
                use[rt->upstream->index].terminate_site = site->name;
            }
        }
    }
    if (has_status) {
        /* 1xx are interim answers: a client sent one waits for the
         * final response that a fixed route never sends (101 would also
         * claim a protocol switch). */
        conf_int(cx, r, "status", 200, 599, &rt->status);
        rt->content_type = "text/plain";
    } else {
        if (json_object_get(r, "body") != NULL) {
            cerr_at(cx, "body", "only with \"status\"");
        }
        if (json_object_get(r, "content_type") != NULL) {
            cerr_at(cx, "content_type", "only with \"status\"");
        }
        return;
    }
    if (conf_str_ex(cx, r, "body", 1, &rt->body) == 1) {
        rt->body_len = strlen(rt->body);
        if (rt->body_len > HM_CONF_BODY_MAX) {
            cerr_at(cx, "body", "longer than %d bytes", HM_CONF_BODY_MAX);
        }
        if (rt->status == 204 || rt->status == 304) {
            cerr_at(cx, "body", "a %d response has no body", rt->status);
        }
    }
    if (conf_str(cx, r, "content_type", &rt->content_type) == 1
        && (w = check_header_value(rt->content_type)) != NULL)
    {
        cerr_at(cx, "content_type", "%s (got %s)", w,
                quote(q, sizeof(q), rt->content_type));
    }
}

static void
decode_routes(cx_t *cx, json_t *s, hm_conf_site_t *site, use_t *use)
{
    json_t             *arr, *v;
    size_t              i, n, old, old2;
    hm_conf_upstream_t *fallback = NULL;

    if (json_object_get(s, "upstream") != NULL) {
        fallback = conf_ref(cx, s, "upstream", "upstream", find_upstream);
        if (fallback != NULL) {
            fallback->used_by_terminate = 1;
            if (use[fallback->index].terminate_site == NULL) {
                use[fallback->index].terminate_site = site->name;
            }
        }
    }
    arr = conf_arr(cx, s, "routes");
    n = arr ? json_array_size(arr) : 0;
    if (json_object_get(s, "routes") == NULL
        && json_object_get(s, "upstream") == NULL)
    {
        cerr(cx, "a terminating site needs \"routes\" (or an \"upstream\" "
             "for every request)");
        return;
    }
    if (arr != NULL && n == 0 && json_object_get(s, "upstream") == NULL) {
        cerr_at(cx, "routes", "must not be empty");
    }
    site->routes = pcalloc(cx, (n + 1) * sizeof(hm_conf_route_t));
    if (arr != NULL) {
        old = path_key(cx, "routes");
        json_array_foreach(arr, i, v) {
            old2 = path_index(cx, i);
            decode_route(cx, v, site, &site->routes[i], use);
            path_pop(cx, old2);
        }
        path_pop(cx, old);
    }
    site->nroutes = n;
    if (fallback != NULL) {
        /* "upstream" on a terminating site: a last route matching every
         * request. */
        site->routes[n].upstream = fallback;
        site->nroutes = n + 1;
    }
}

static void
decode_site(cx_t *cx, json_t *s, hm_conf_site_t *site, use_t *use)
{
    static const char *const keys[] = {
        "server_names", "mode", "upstream", "proxy_protocol_out", "tls",
        "headers", "limits", "routes", NULL
    };
    static const char *const term_only[] = { "tls", "headers", "routes",
                                             NULL };
    static const char *const modes[] = { "passthrough", "terminate", NULL };
    static const int mvals[] = { HM_SITE_PASSTHROUGH, HM_SITE_TERMINATE };
    static const char *const ppv[] = { "v1", "v2", NULL };
    static const int ppvals[] = { HM_PROXY_PROTOCOL_V1,
                                  HM_PROXY_PROTOCOL_V2 };
    const char *const *k;
    json_t            *o;
    size_t             old;

    site->tls.min_version = HM_TLS1_2;
    site->tls.max_version = HM_TLS1_3;
    site->tls.handshake_timeout_ms = 10000;
    site->tls.alpn = pcalloc(cx, 2 * sizeof(char *));
    site->tls.alpn[0] = "http/1.1";
    site->tls.nalpn = 1;
    site->headers.forwarded = HM_FORWARDED_REPLACE;
    site->limits.max_header_bytes = 16384;
    site->limits.max_body_bytes = 1024 * 1024;
    site->limits.header_timeout_ms = 10000;
    site->limits.idle_timeout_ms = 60000;
    site->limits.max_requests = 1000;

    if (!json_is_object(s)) {
        err_type(cx, "an object", s);
        return;
    }
    check_keys(cx, s, keys, NULL);
    if (required(cx, s, "server_names")) {
        conf_strv(cx, s, "server_names",
                  STRV_NONEMPTY | STRV_LOWER | STRV_UNIQUE, check_server_name,
                  &site->server_names, &site->nserver_names);
    }
    if (!required(cx, s, "mode")
        || conf_enum(cx, s, "mode", modes, mvals, &site->mode) != 1)
    {
        return;
    }

    if (site->mode == HM_SITE_PASSTHROUGH) {
        for (k = term_only; *k != NULL; k++) {
            if (json_object_get(s, *k) != NULL) {
                cerr_at(cx, *k, "only for terminating sites (this site is "
                        "passthrough)");
            }
        }
        if (required(cx, s, "upstream")) {
            site->upstream = conf_ref(cx, s, "upstream", "upstream",
                                      find_upstream);
            if (site->upstream != NULL) {
                site->upstream->used_by_passthrough = 1;
                if (use[site->upstream->index].passthrough_site == NULL) {
                    use[site->upstream->index].passthrough_site = site->name;
                }
            }
        }
        conf_enum(cx, s, "proxy_protocol_out", ppv, ppvals,
                  &site->proxy_protocol_out);
    } else {
        if (json_object_get(s, "proxy_protocol_out") != NULL) {
            cerr_at(cx, "proxy_protocol_out", "only for passthrough sites");
        }
        if (required(cx, s, "tls") && (o = conf_obj(cx, s, "tls")) != NULL) {
            old = path_key(cx, "tls");
            decode_site_tls(cx, o, site);
            path_pop(cx, old);
        }
        if ((o = conf_obj(cx, s, "headers")) != NULL) {
            old = path_key(cx, "headers");
            decode_headers(cx, o, &site->headers);
            path_pop(cx, old);
        }
        decode_routes(cx, s, site, use);
    }
    if ((o = conf_obj(cx, s, "limits")) != NULL) {
        old = path_key(cx, "limits");
        decode_limits(cx, o, site);
        path_pop(cx, old);
    }
}

static void
decode_sites(cx_t *cx, json_t *root, use_t *use)
{
    json_t     *o, *v;
    const char *name, *why;
    size_t      i, old, old2;
    hm_conf_t  *conf = cx->conf;
    char        q[128];

    if (!required(cx, root, "sites")) {
        return;
    }
    o = conf_obj(cx, root, "sites");
    if (o == NULL) {
        return;
    }
    old = path_key(cx, "sites");
    conf->sites = pcalloc(cx, (json_object_size(o) + 1)
                                 * sizeof(hm_conf_site_t));
    /* Names first, so that nothing depends on the order of sites. */
    i = 0;
    json_object_foreach(o, name, v) {
        conf->sites[i].name = pstrdup(cx, name);
        conf->sites[i].index = (int) i;
        i++;
    }
    conf->nsites = i;
    i = 0;
    json_object_foreach(o, name, v) {
        old2 = path_key(cx, name);
        if ((why = check_name(name)) != NULL) {
            cerr(cx, "%s (got %s)", why, quote(q, sizeof(q), name));
        }
        decode_site(cx, v, &conf->sites[i], use);
        i++;
        path_pop(cx, old2);
    }
    path_pop(cx, old);
}


/* ---- listeners -------------------------------------------------------- */

static void
decode_listener(cx_t *cx, json_t *l, hm_conf_listener_t *ls, size_t idx)
{
    static const char *const keys[] = {
        "name", "listen", "sites", "default_site", "proxy_protocol", "http",
        "client_hello_timeout_ms", "client_hello_max_bytes", "backlog", NULL
    };
    static const char *const http_keys[] = { "redirect_to_https", NULL };
    json_t     *arr, *v, *h;
    size_t      i, j, old, old2;
    char      **names;
    size_t      n;
    char        q[128], buf[32], v4[64];
    const char *w;
    int         has_sites;
    size_t     *jidx;

    ls->index = (int) idx;
    ls->client_hello_timeout_ms = 10000;
    ls->client_hello_max_bytes = 65536;
    ls->backlog = 511;
    if (!json_is_object(l)) {
        err_type(cx, "an object", l);
        return;
    }
    check_keys(cx, l, keys, NULL);

    if (conf_str(cx, l, "name", &ls->name) == 1
        && (w = check_name(ls->name)) != NULL)
    {
        cerr_at(cx, "name", "%s (got %s)", w, quote(q, sizeof(q), ls->name));
    }

    if (required(cx, l, "listen") && (arr = conf_arr(cx, l, "listen"))) {
        old = path_key(cx, "listen");
        if (json_array_size(arr) == 0) {
            cerr(cx, "must not be empty");
        }
        ls->addrs = pcalloc(cx, (json_array_size(arr) + 1)
                                             * sizeof(hm_addr_t));
        /* the JSON index of each kept address, for the messages */
        jidx = pcalloc(cx, (json_array_size(arr) + 1) * sizeof(size_t));
        json_array_foreach(arr, i, v) {
            old2 = path_index(cx, i);
            if (!json_is_string(v)) {
                err_type(cx, "an address string", v);
            } else if (hm_addr_parse(json_string_value(v),
                                     &ls->addrs[ls->naddrs]) != HM_OK)
            {
                bad_listen_addr(cx, json_string_value(v),
                                "\"0.0.0.0:443\", \"127.0.0.1:8443\" or "
                                "\"[::]:443\"");
            } else if (addr_v4mapped(&ls->addrs[ls->naddrs], v4, sizeof(v4))) {
                cerr(cx, "an IPv4-mapped address cannot be bound by an "
                     "IPv6-only socket: listen on \"%s\" instead (got %s)",
                     v4, quote(q, sizeof(q), json_string_value(v)));
            } else {
                for (j = 0; j < ls->naddrs; j++) {
                    if (addr_overlaps(&ls->addrs[j], &ls->addrs[ls->naddrs])) {
                        cerr(cx, "%s overlaps with listen[%zu]",
                             ls->addrs[ls->naddrs].text, jidx[j]);
                        break;
                    }
                }
                if (j == ls->naddrs) {
                    check_addr_local(cx, &ls->addrs[ls->naddrs]);
                    jidx[ls->naddrs++] = i;
                }
            }
            path_pop(cx, old2);
        }
        path_pop(cx, old);
    }
    if (ls->name == NULL) {
        if (ls->naddrs > 0) {
            ls->name = pstrdup(cx, ls->addrs[0].text);
        } else {
            snprintf(buf, sizeof(buf), "listeners[%zu]", idx);
            ls->name = pstrdup(cx, buf);
        }
    }

    if ((h = conf_obj(cx, l, "http")) != NULL) {
        old = path_key(cx, "http");
        check_keys(cx, h, http_keys, NULL);
        conf_bool(cx, h, "redirect_to_https", &ls->redirect_to_https);
        path_pop(cx, old);
    }
    has_sites = json_object_get(l, "sites") != NULL;
    names = NULL;
    n = 0;
    if (ls->redirect_to_https) {
        /* plaintext HTTP: no ClientHello to bound (these would be
         * ignored) */
        if (json_object_get(l, "client_hello_timeout_ms") != NULL) {
            cerr_at(cx, "client_hello_timeout_ms", "only for TLS listeners "
                    "(a redirect_to_https listener reads no ClientHello)");
        }
        if (json_object_get(l, "client_hello_max_bytes") != NULL) {
            cerr_at(cx, "client_hello_max_bytes", "only for TLS listeners "
                    "(a redirect_to_https listener reads no ClientHello)");
        }
        if (has_sites) {
            cerr_at(cx, "sites", "a listener with \"http\": "
                    "{\"redirect_to_https\": true} serves no sites");
        }
        if (json_object_get(l, "default_site") != NULL) {
            cerr_at(cx, "default_site", "a listener with \"http\": "
                    "{\"redirect_to_https\": true} serves no sites");
        }
    } else if (!has_sites) {
        cerr(cx, "a listener needs \"sites\" (or \"http\": "
             "{\"redirect_to_https\": true})");
    } else {
        /* -1 with a repeated or bad name: the others still count */
        conf_strv(cx, l, "sites", STRV_NONEMPTY | STRV_UNIQUE, NULL, &names,
                  &n);
    }
    if (names != NULL) {
        ls->sites = pcalloc(cx, (n + 1)
                                             * sizeof(hm_conf_site_t *));
        old = path_key(cx, "sites");
        for (i = 0; i < n; i++) {
            hm_conf_site_t *s;

            if (names[i] == NULL) {
                continue;
            }
            s = hm_conf_site_find(cx->conf, names[i]);
            if (s == NULL) {
                old2 = path_index(cx, i);
                cerr(cx, "no site named %s", quote(q, sizeof(q), names[i]));
                path_pop(cx, old2);
            } else {
                ls->sites[ls->nsites++] = s;
            }
        }
        path_pop(cx, old);
        if (json_object_get(l, "default_site") != NULL) {
            ls->default_site = conf_ref(cx, l, "default_site", "site",
                                        find_site);
            if (ls->default_site != NULL) {
                for (i = 0; i < ls->nsites; i++) {
                    if (ls->sites[i] == ls->default_site) {
                        break;
                    }
                }
                if (i == ls->nsites) {
                    cerr_at(cx, "default_site", "site %s is not one of this "
                            "listener's \"sites\"",
                            quote(q, sizeof(q), ls->default_site->name));
                    ls->default_site = NULL;
                }
            }
        }
    }
    conf_bool(cx, l, "proxy_protocol", &ls->proxy_protocol);
    conf_int(cx, l, "client_hello_timeout_ms", 1, 600000,
             &ls->client_hello_timeout_ms);
    conf_size(cx, l, "client_hello_max_bytes", 16384, 1048576,
              &ls->client_hello_max_bytes);
    conf_int(cx, l, "backlog", 1, 65535, &ls->backlog);
}

/* ---- admin ------------------------------------------------------------ */

/*
 * admin: {"listen": "127.0.0.1:9901"}: the admin HTTP listener (metrics,
 * health, trust report; src/event/hm_admin.c).  Its address must not
 * overlap a listener's.  Fills conf->admin_listen.
 */
static void
decode_admin(cx_t *cx, json_t *root)
{
    static const char *const keys[] = { "listen", NULL };
    hm_conf_listener_t *ls;
    hm_addr_t          *addr;
    json_t             *a;
    size_t              old, old2, i, k;
    char               *s, q[128], v4[64];

    if ((a = conf_obj(cx, root, "admin")) == NULL) {
        return;
    }
    old = path_key(cx, "admin");
    check_keys(cx, a, keys, NULL);
    if (required(cx, a, "listen") && conf_str(cx, a, "listen", &s) == 1) {
        addr = pcalloc(cx, sizeof(hm_addr_t));
        old2 = path_key(cx, "listen");
        if (hm_addr_parse(s, addr) != HM_OK) {
            bad_listen_addr(cx, s, "\"127.0.0.1:9901\" or \"[::1]:9901\"");
        } else if (addr_v4mapped(addr, v4, sizeof(v4))) {
            cerr(cx, "an IPv4-mapped address cannot be bound by an "
                 "IPv6-only socket: listen on \"%s\" instead (got %s)",
                 v4, quote(q, sizeof(q), s));
        } else {
            for (i = 0; i < cx->conf->nlisteners; i++) {
                ls = &cx->conf->listeners[i];
                for (k = 0; k < ls->naddrs; k++) {
                    if (addr_overlaps(addr, &ls->addrs[k])) {
                        cerr(cx, "%s overlaps with "
                                "listeners[%zu].listen[%zu]", addr->text, i,
                                k);
                        break;
                    }
                }
            }
            check_addr_local(cx, addr);
            cx->conf->admin_listen = addr;
        }
        path_pop(cx, old2);
    }
    path_pop(cx, old);
}

/* Server names must be unique across the sites of one listener (the SNI
 * decision would be ambiguous otherwise). */
static void
check_listener_names(cx_t *cx, hm_conf_listener_t *ls, json_t *l)
{
    size_t  a, b, i, j, k, old, old2;
    char    q[128];
    json_t *arr = json_object_get(l, "sites"), *v;

    old = path_key(cx, "sites");
    for (a = 0; a < ls->nsites; a++) {
        for (i = 0; i < ls->sites[a]->nserver_names; i++) {
            const char *nm = ls->sites[a]->server_names[i];
            int         found = 0;

            if (nm == NULL) {
                continue;
            }
            for (b = 0; b < a && !found; b++) {
                for (j = 0; j < ls->sites[b]->nserver_names; j++) {
                    if (ls->sites[b]->server_names[j] != NULL
                        && strcmp(ls->sites[b]->server_names[j], nm) == 0)
                    {
                        /* the index of the site in the JSON array */
                        json_array_foreach(arr, k, v) {
                            if (json_is_string(v)
                                && strcmp(json_string_value(v),
                                          ls->sites[a]->name) == 0)
                            {
                                break;
                            }
                        }
                        old2 = path_index(cx, k);
                        cerr(cx, "server name %s of site \"%s\" is also a "
                             "server name of site \"%s\" on this listener",
                             quote(q, sizeof(q), nm), ls->sites[a]->name,
                             ls->sites[b]->name);
                        path_pop(cx, old2);
                        found = 1;
                        break;
                    }
                }
            }
        }
    }
    path_pop(cx, old);
}

static void
decode_listeners(cx_t *cx, json_t *root)
{
    json_t              *arr, *v;
    size_t               i, j, a, b, old, old2;
    hm_conf_t           *conf = cx->conf;
    hm_conf_listener_t  *ls;

    if (!required(cx, root, "listeners")) {
        return;
    }
    arr = conf_arr(cx, root, "listeners");
    if (arr == NULL) {
        return;
    }
    old = path_key(cx, "listeners");
    if (json_array_size(arr) == 0) {
        cerr(cx, "must not be empty");
    }
    conf->listeners = pcalloc(cx, (json_array_size(arr) + 1)
                                     * sizeof(hm_conf_listener_t));
    json_array_foreach(arr, i, v) {
        ls = &conf->listeners[i];
        old2 = path_index(cx, i);
        decode_listener(cx, v, ls, i);
        check_listener_names(cx, ls, v);
        /* Names and addresses shared with an earlier listener. */
        for (j = 0; j < i; j++) {
            hm_conf_listener_t *p = &conf->listeners[j];

            /* (a listener that is not an object has no name) */
            if (json_object_get(v, "name") != NULL
                && p->name != NULL && ls->name != NULL
                && strcmp(p->name, ls->name) == 0)
            {
                cerr_at(cx, "name", "listeners[%zu] has the same name "
                        "\"%s\"", j, ls->name);
            }
            for (a = 0; a < ls->naddrs; a++) {
                for (b = 0; b < p->naddrs; b++) {
                    if (addr_overlaps(&ls->addrs[a], &p->addrs[b])) {
                        size_t old3 = path_key(cx, "listen");
                        size_t old4 = path_index(cx, a);
                        cerr(cx, "%s overlaps with %s of listeners[%zu]",
                             ls->addrs[a].text, p->addrs[b].text, j);
                        path_pop(cx, old4);
                        path_pop(cx, old3);
                    }
                }
            }
        }
        path_pop(cx, old2);
    }
    conf->nlisteners = json_array_size(arr);
    path_pop(cx, old);
}


/* ---- cross-section checks --------------------------------------------- */

static void
check_upstream_use(cx_t *cx, use_t *use, json_t *root)
{
    static const char *const http_only[] = { "pool", "read_timeout_ms",
                                             NULL };
    const char *const  *k;
    size_t              i, old, old2, old3;
    hm_conf_upstream_t *up;
    json_t             *ups, *uj, *hc;

    ups = json_object_get(root, "upstreams");
    old = path_key(cx, "upstreams");
    for (i = 0; i < cx->conf->nupstreams; i++) {
        up = &cx->conf->upstreams[i];
        old2 = path_key(cx, up->name);
        uj = json_is_object(ups) ? json_object_get(ups, up->name) : NULL;
        if (use[i].passthrough_site != NULL && json_is_object(uj)) {
            /* HTTP settings on the upstream of a passthrough site have
             * no effect: say so (they are valid upstream keys, so the
             * file still loads). */
            for (k = http_only; *k != NULL; k++) {
                if (json_object_get(uj, *k) != NULL) {
                    cwarn_at(cx, *k, "ignored: only for upstreams of "
                             "terminating sites (passthrough site \"%s\" "
                             "relays bytes)", use[i].passthrough_site);
                }
            }
            hc = json_object_get(uj, "health_check");
            if (json_is_object(hc) && json_object_get(hc, "path") != NULL) {
                old3 = path_key(cx, "health_check");
                cwarn_at(cx, "path", "ignored: the servers of passthrough "
                         "site \"%s\" are checked by a TCP connect",
                         use[i].passthrough_site);
                path_pop(cx, old3);
            }
        }
        if (use[i].passthrough_site != NULL) {
            if (up->tls.present) {
                cerr_at(cx, "tls", "upstream of passthrough site \"%s\": it "
                        "carries the client's own TLS session, so it has "
                        "no \"tls\"", use[i].passthrough_site);
            }
            if (up->plaintext_risk != NULL) {
                cerr_at(cx, "plaintext", "upstream of passthrough site "
                        "\"%s\": it carries the client's own TLS session, "
                        "so it has no \"plaintext\"",
                        use[i].passthrough_site);
            }
        }
        if (use[i].terminate_site != NULL && !up->tls.present
            && up->plaintext_risk == NULL)
        {
            cerr(cx, "upstream of terminating site \"%s\" needs \"tls\" "
                 "(re-encrypt) or \"plaintext\": {\"accepted_risk\": ...}",
                 use[i].terminate_site);
        }
        path_pop(cx, old2);
    }
    path_pop(cx, old);
}


/* A site that no listener lists is never served: say so (it loads). */
static void
check_site_use(cx_t *cx)
{
    hm_conf_t *conf = cx->conf;
    size_t     i, j, k, old;
    int        used;

    old = path_key(cx, "sites");
    for (i = 0; i < conf->nsites; i++) {
        used = 0;
        for (j = 0; j < conf->nlisteners && !used; j++) {
            for (k = 0; k < conf->listeners[j].nsites; k++) {
                if (conf->listeners[j].sites[k] == &conf->sites[i]) {
                    used = 1;
                    break;
                }
            }
        }
        if (!used) {
            cwarn_at(cx, conf->sites[i].name, "no listener lists this "
                     "site: it is never served");
        }
    }
    path_pop(cx, old);
}


/* ---- entry points ------------------------------------------------------ */

static void
set_paths(hm_conf_t *conf, const char *name)
{
    char  cwd[4096];
    char *slash;
    const char *n = name;

    if (name[0] == '/') {
        conf->path = hm_pool_strdup(conf->pool, name);
    } else {
        size_t clen, nlen;

        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            strcpy(cwd, ".");
        }
        while (n[0] == '.' && n[1] == '/') {
            n += 2;
        }
        clen = strlen(cwd);
        if (clen > 0 && cwd[clen - 1] == '/') {
            clen--;                 /* the root: "/" + "/" + name */
        }
        nlen = strlen(n);
        conf->path = hm_pool_alloc(conf->pool, clen + nlen + 2);
        HM_ASSERT(conf->path != NULL);
        memcpy(conf->path, cwd, clen);
        conf->path[clen] = '/';
        memcpy(conf->path + clen + 1, n, nlen + 1);
    }
    conf->dir = hm_pool_strdup(conf->pool, conf->path);
    HM_ASSERT(conf->path != NULL && conf->dir != NULL);
    slash = strrchr(conf->dir, '/');
    if (slash == conf->dir) {
        slash[1] = '\0';
    } else if (slash != NULL) {
        *slash = '\0';
    }
}

char *
hm_conf_resolve_path(const char *name, const char *rel)
{
    hm_conf_t  conf;
    cx_t       cx;
    char      *res;

    memset(&conf, 0, sizeof(conf));
    conf.pool = hm_pool_new(1024);
    HM_ASSERT(conf.pool != NULL);
    set_paths(&conf, name);
    memset(&cx, 0, sizeof(cx));
    cx.conf = &conf;
    cx.pool = conf.pool;
    res = hm_xstrdup(abs_path(&cx, rel));
    hm_pool_free(conf.pool);
    return res;
}

/*
 * Top-level "jwt", "waf" and "rate_limits": policy tables this release
 * does not have.  Their documented default, an empty object, is
 * accepted; every entry inside is refused with "not supported yet" at its
 * path (e.g. "jwt.main"), so a file relying on a policy never loads into a
 * proxy that would not enforce it.
 */
static void
decode_unsupported_policies(cx_t *cx, json_t *root)
{
    static const char *const keys[] = { "jwt", "waf", "rate_limits", NULL };
    const char *const *k;
    const char        *name;
    json_t            *obj, *v;
    size_t             old;

    for (k = keys; *k != NULL; k++) {
        obj = conf_obj(cx, root, *k);
        if (obj == NULL) {
            continue;
        }
        old = path_key(cx, *k);
        json_object_foreach(obj, name, v) {
            cerr_at(cx, name, "not supported yet");
        }
        path_pop(cx, old);
    }
}

hm_conf_t *
hm_conf_load_buffer(const char *data, size_t len, const char *name,
                    int flags, void *err, int *nerrors)
{
    hm_pool_t   *pool;
    hm_conf_t   *conf;
    json_t      *root;
    json_error_t jerr;
    cx_t         cx;
    use_t       *use;
    size_t       nup;
    static const char *const top_keys[] = {
        "runtime", "certificates", "upstreams", "listeners", "sites",
        "admin", "jwt", "waf", "rate_limits", NULL
    };

    *nerrors = 0;
    hm_conf_nwarnings = 0;
    pool = hm_pool_new(16384);
    if (pool == NULL) {
        if (err != NULL) {
            fprintf(err, "%s: out of memory\n", name);
        }
        *nerrors = 1;
        return NULL;
    }
    conf = hm_pool_calloc(pool, sizeof(*conf));
    HM_ASSERT(conf != NULL);
    conf->pool = pool;
    set_paths(conf, name);

    memset(&cx, 0, sizeof(cx));
    cx.conf = conf;
    cx.pool = pool;
    cx.err = err;
    cx.file = name;
    cx.flags = flags;

    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL && strncmp(jerr.text, "too big", 7) == 0) {
        /* Valid JSON, but an integer beyond 64 bits: found again with
         * numbers read as reals, to name it by its JSON path. */
        root = json_loadb(data, len,
                          JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL,
                          NULL);
        if (root != NULL) {
            report_huge(&cx, root);
            if (cx.nerrors > 0) {
                goto done;
            }
            json_decref(root);
            root = NULL;
        }
    }
    if (root == NULL) {
        if (err != NULL) {
            char   text[512];
            size_t tlen = 0;

            /* jansson quotes the input near the error: keep it on one
             * line (its own quotes stay as they are). */
            text[0] = '\0';
            escape_into(text, sizeof(text), &tlen, jerr.text, 200, 0);
            fprintf(err, "%s: line %d column %d: %s\n", name, jerr.line,
                    jerr.column, text);
        }
        *nerrors = 1;
        hm_pool_free(pool);
        return NULL;
    }
    if (!json_is_object(root)) {
        err_type(&cx, "an object", root);
        goto done;
    }

    cx.root = root;
    check_keys(&cx, root, top_keys, NULL);
    decode_unsupported_policies(&cx, root);
    decode_runtime(&cx, json_object_get(root, "runtime"));
    decode_certs(&cx, root);
    decode_upstreams(&cx, root);
    nup = conf->nupstreams;
    use = hm_xcalloc(nup + 1, sizeof(use_t));
    decode_sites(&cx, root, use);
    decode_listeners(&cx, root);
    decode_admin(&cx, root);
    check_upstream_use(&cx, use, root);
    check_site_use(&cx);
    free(use);

done:
    json_decref(root);
    if (cx.nerrors > 0) {
        if (err != NULL) {
            fflush(err);
        }
        *nerrors = cx.nerrors;
        hm_pool_free(pool);
        return NULL;
    }
    return conf;
}

hm_conf_t *
hm_conf_load(const char *path, void *err, int *nerrors)
{
    int         fd;
    struct stat st;
    char       *buf;
    size_t      got;
    ssize_t     n;
    hm_conf_t  *conf;

    *nerrors = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err != NULL) {
            fprintf(err, "%s: (top level): cannot read: %s\n", path,
                    strerror(errno));
        }
        *nerrors = 1;
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err != NULL) {
            fprintf(err, "%s: (top level): not a regular file\n", path);
        }
        close(fd);
        *nerrors = 1;
        return NULL;
    }
    if (st.st_size > HM_CONF_MAX_FILE) {
        if (err != NULL) {
            fprintf(err, "%s: (top level): larger than %d bytes\n", path,
                    HM_CONF_MAX_FILE);
        }
        close(fd);
        *nerrors = 1;
        return NULL;
    }
    buf = hm_xmalloc((size_t) st.st_size + 1);
    got = 0;
    while (got < (size_t) st.st_size) {
        n = read(fd, buf + got, (size_t) st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t) n;
    }
    close(fd);
    conf = hm_conf_load_buffer(buf, got, path, 0, err, nerrors);
    free(buf);
    return conf;
}

void
hm_conf_free(hm_conf_t *conf)
{
    if (conf != NULL) {
        hm_pool_free(conf->pool);
    }
}

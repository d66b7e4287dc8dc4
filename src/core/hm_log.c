/*
 * hm_log.c: error log and access log writers (see hm_log.h), and the
 * small always-on helpers of hm_core.h (allocation, time, asserts).
 */
#include "hm_core.h"
#include "hm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int hm_log_level = HM_LOG_INFO;

static int   err_fd = 2;
static char *err_path;          /* NULL when stderr */
static int   acc_fd = -1;
static char *acc_path;          /* NULL when stdout or off */

static const char *level_names[] = { "debug", "info", "warn", "error" };

void *
hm_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "hamlyn: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void *
hm_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "hamlyn: out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

void *
hm_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "hamlyn: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

char *
hm_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(hm_xmalloc(n), s, n);
}

int
hm_errno_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

uint64_t
hm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void
hm_time_rfc3339(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char tmp[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03ldZ", tmp, ts.tv_nsec / 1000000);
}

void
hm_assert_fail(const char *expr, const char *file, int line)
{
    hm_log(HM_LOG_ERROR, NULL, "assertion failed: %s at %s:%d", expr, file,
           line);
    abort();
}

void
hm_strlow(char *dst, const char *src, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        dst[i] = (char) hm_lower((unsigned char) src[i]);
    }
}

int
hm_server_name_covers(const char *pat, const char *host, size_t hlen)
{
    size_t      plen = strlen(pat);
    const char *dot;

    if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
        dot = memchr(host, '.', hlen);
        return dot != NULL && dot != host
               && hm_strncaseeq(dot, hlen - (size_t) (dot - host), pat + 1,
                                plen - 1);
    }
    return hm_strncaseeq(host, hlen, pat, plen);
}

static int
open_append(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int
hm_log_level_parse(const char *s)
{
    size_t i;
    for (i = 0; i < hm_nelem(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            return (int) i;
        }
    }
    return -1;
}

const char *
hm_log_level_name(int level)
{
    return (level >= 0 && level < (int) hm_nelem(level_names))
           ? level_names[level] : "?";
}

int
hm_log_open(const char *path, int level)
{
    int fd;

    if (path == NULL || strcmp(path, "stderr") == 0) {
        if (err_fd > 2) {
            close(err_fd);
        }
        free(err_path);
        err_path = NULL;
        err_fd = 2;
    } else {
        fd = open_append(path);
        if (fd < 0) {
            return HM_ERROR;
        }
        if (err_fd > 2) {
            close(err_fd);
        }
        free(err_path);
        err_path = hm_xstrdup(path);
        err_fd = fd;
    }
    hm_log_level = level;
    return HM_OK;
}

int
hm_log_reopen(void)
{
    int fd;

    if (err_path == NULL) {
        return HM_OK;
    }
    fd = open_append(err_path);
    if (fd < 0) {
        return HM_ERROR;
    }
    if (err_fd > 2) {
        /* dup2 keeps the fd number, so inherited copies follow too. */
        dup2(fd, err_fd);
        close(fd);
    } else {
        err_fd = fd;
    }
    return HM_OK;
}

int
hm_log_fd(void)
{
    return err_fd;
}

static int log_pid;

static void
log_pid_forget(void)
{
    log_pid = 0;
}

/*
 * The pid every log line carries (error log "PID#cCONN", access log "pid"),
 * so that the two can be matched when several workers write them.  Cached:
 * getpid() is a system call; a fork handler makes a child ask again.
 */
int
hm_log_pid(void)
{
    static int at_fork;

    if (log_pid == 0) {
        if (!at_fork) {
            at_fork = pthread_atfork(NULL, NULL, log_pid_forget) == 0;
        }
        log_pid = (int) getpid();
    }
    return log_pid;
}

static int log_json;

void
hm_log_set_json(int on)
{
    log_json = on;
}

/*
 * One error-log line as a JSON object (runtime.error_log.format "json"):
 * the same fields as the text line, under the access log's names where
 * they mean the same ("time", "pid", "conn"), every string escaped by the
 * access log's builder.  The message is cut at 2 KiB before escaping, so
 * the line always fits.
 */
static void
log_json_line(int level, const hm_log_ctx_t *ctx, const char *ts,
              const char *fmt, va_list ap)
{
    char      msg[2048], line[sizeof(msg) * 6 + 1024];
    hm_jbuf_t jb;
    size_t    n;
    int       m;

    m = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (m < 0) {
        m = 0;
    }
    hm_jb_init(&jb, line, sizeof(line));
    hm_jb_str(&jb, "time", ts);
    hm_jb_str(&jb, "level", hm_log_level_name(level));
    hm_jb_int(&jb, "pid", hm_log_pid());
    if (ctx != NULL) {
        hm_jb_int(&jb, "conn", (long long) ctx->conn_id);
        hm_jb_str(&jb, "peer", ctx->peer);
        hm_jb_str(&jb, "sni", ctx->sni);
    }
    hm_jb_strn(&jb, "msg", msg, hm_min((size_t) m, sizeof(msg) - 1));
    if (ctx != NULL) {
        hm_jb_str(&jb, "action", ctx->action);
    }
    n = hm_jb_finish(&jb);
    if (n > 0 && write(err_fd, line, n) < 0) {
        /* nowhere left to report it */
    }
}

void
hm_vlog(int level, const hm_log_ctx_t *ctx, const char *fmt, va_list ap)
{
    char buf[2048], ts[40];
    int n, m;

    if (level < hm_log_level) {
        return;
    }
    hm_time_rfc3339(ts, sizeof(ts));
    if (log_json) {
        log_json_line(level, ctx, ts, fmt, ap);
        return;
    }
    if (ctx != NULL) {
        n = snprintf(buf, sizeof(buf), "%s [%s] %d#c%llu peer=%s%s%s: ",
                     ts, hm_log_level_name(level), hm_log_pid(),
                     (unsigned long long) ctx->conn_id,
                     ctx->peer ? ctx->peer : "-",
                     ctx->sni ? " sni=" : "", ctx->sni ? ctx->sni : "");
    } else {
        n = snprintf(buf, sizeof(buf), "%s [%s] %d: ", ts,
                     hm_log_level_name(level), hm_log_pid());
    }
    if (n < 0 || (size_t) n >= sizeof(buf)) {
        n = 0;
    }
    m = vsnprintf(buf + n, sizeof(buf) - (size_t) n, fmt, ap);
    if (m < 0) {
        m = 0;
    }
    n = (size_t) (n + m) >= sizeof(buf) - 64 ? (int) sizeof(buf) - 64 : n + m;
    if (ctx != NULL && ctx->action != NULL) {
        m = snprintf(buf + n, sizeof(buf) - (size_t) n, " (while %s)",
                     ctx->action);
        n = (size_t) (n + m) >= sizeof(buf) - 2 ? (int) sizeof(buf) - 2 : n + m;
    }
    buf[n++] = '\n';
    if (write(err_fd, buf, (size_t) n) < 0) {
        /* nowhere left to report it */
    }
}

void
hm_log(int level, const hm_log_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;

    if (level < hm_log_level) {
        return;
    }
    va_start(ap, fmt);
    hm_vlog(level, ctx, fmt, ap);
    va_end(ap);
}

int
hm_access_log_open(const char *path)
{
    int fd;

    if (path == NULL || strcmp(path, "off") == 0) {
        fd = -1;
    } else if (strcmp(path, "stdout") == 0) {
        fd = 1;
    } else {
        fd = open_append(path);
        if (fd < 0) {
            return HM_ERROR;
        }
    }
    if (acc_fd > 2) {
        close(acc_fd);
    }
    free(acc_path);
    acc_path = (fd > 2) ? hm_xstrdup(path) : NULL;
    acc_fd = fd;
    return HM_OK;
}

int
hm_access_log_reopen(void)
{
    int fd;

    if (acc_path == NULL) {
        return HM_OK;
    }
    fd = open_append(acc_path);
    if (fd < 0) {
        return HM_ERROR;
    }
    dup2(fd, acc_fd);
    close(fd);
    return HM_OK;
}

int
hm_access_log_enabled(void)
{
    return acc_fd >= 0;
}

void
hm_access_log_write(const char *line, size_t len)
{
    if (acc_fd >= 0 && len > 0) {
        if (write(acc_fd, line, len) < 0) {
            /* counted nowhere yet; the error log would flood */
        }
    }
}

void
hm_jb_init(hm_jbuf_t *jb, char *buf, size_t cap)
{
    jb->buf = buf;
    jb->cap = cap;
    jb->len = 0;
    jb->first = 1;
    jb->overflow = 0;
    if (cap > 0) {
        buf[jb->len++] = '{';
    } else {
        jb->overflow = 1;
    }
}

static void
jb_put(hm_jbuf_t *jb, const char *s, size_t n)
{
    if (jb->overflow || jb->len + n + 2 > jb->cap) {
        jb->overflow = 1;
        return;
    }
    memcpy(jb->buf + jb->len, s, n);
    jb->len += n;
}

static void
jb_escaped(hm_jbuf_t *jb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6];
    size_t i;

    jb_put(jb, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char) c;
            jb_put(jb, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            /* Non-ASCII bytes are escaped too: log lines stay ASCII and
             * valid JSON whatever a client sent. */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            jb_put(jb, esc, 6);
        } else {
            jb_put(jb, (const char *) &s[i], 1);
        }
    }
    jb_put(jb, "\"", 1);
}

static void
jb_key(hm_jbuf_t *jb, const char *key)
{
    if (!jb->first) {
        jb_put(jb, ",", 1);
    }
    jb->first = 0;
    jb_escaped(jb, key, strlen(key));
    jb_put(jb, ":", 1);
}

void
hm_jb_strn(hm_jbuf_t *jb, const char *key, const char *val, size_t n)
{
    jb_key(jb, key);
    if (val == NULL) {
        jb_put(jb, "null", 4);
    } else {
        jb_escaped(jb, val, n);
    }
}

void
hm_jb_str(hm_jbuf_t *jb, const char *key, const char *val)
{
    hm_jb_strn(jb, key, val, val ? strlen(val) : 0);
}

void
hm_jb_int(hm_jbuf_t *jb, const char *key, long long val)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", val);
    jb_key(jb, key);
    jb_put(jb, num, (size_t) n);
}

void
hm_jb_raw(hm_jbuf_t *jb, const char *key, const char *json)
{
    jb_key(jb, key);
    jb_put(jb, json, strlen(json));
}

size_t
hm_jb_finish(hm_jbuf_t *jb)
{
    if (jb->overflow || jb->len + 2 > jb->cap) {
        return 0;
    }
    jb->buf[jb->len++] = '}';
    jb->buf[jb->len++] = '\n';
    return jb->len;
}

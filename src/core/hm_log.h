/*
 * hm_log.h: the error log and the access log.
 *
 * Error log lines look like
 *   2026-11-27T22:50:49.123Z [warn] 1234#c17 peer=127.0.0.1:5555 sni=a.test: \
 *       upstream refused (while connecting to upstream "db" 10.0.0.1:443)
 * i.e. time, level, pid, then an optional per-connection context, then the
 * message.  Failures the client caused are logged at info; error means
 * Hamlyn or an upstream is at fault.  Writes are single write(2) calls of
 * whole lines, so master and workers can share one file (O_APPEND).
 */
#ifndef HM_LOG_H
#define HM_LOG_H

#include <stdarg.h>

enum {
    HM_LOG_DEBUG = 0,
    HM_LOG_INFO  = 1,
    HM_LOG_WARN  = 2,
    HM_LOG_ERROR = 3,
    HM_LOG_NONE  = 4
};

/* Per-connection context printed before the message when non-NULL. */
typedef struct hm_log_ctx_s {
    uint64_t    conn_id;
    const char *peer;     /* "addr:port" */
    const char *sni;      /* may be NULL */
    const char *action;   /* "reading ClientHello", may be NULL */
} hm_log_ctx_t;

extern int hm_log_level;

/* Opens path ("stderr" or a file, appended) as the error log.  Returns
 * HM_OK, or HM_ERROR with errno set; the previous log stays in place. */
int hm_log_open(const char *path, int level);
/* Error log lines as text (0, the default) or one JSON object each (1). */
void hm_log_set_json(int on);
/* Re-opens the current error log file (USR1, logrotate). */
int hm_log_reopen(void);
/* The error log's fd (for dup2 onto stderr when daemonised). */
int hm_log_fd(void);
/* This process's pid for log lines: getpid() once, again in a forked child. */
int hm_log_pid(void);

/* Parses "debug" | "info" | "warn" | "error"; -1 when unknown. */
int hm_log_level_parse(const char *s);
const char *hm_log_level_name(int level);

void hm_log(int level, const hm_log_ctx_t *ctx, const char *fmt, ...)
    HM_PRINTF(3, 4);
void hm_vlog(int level, const hm_log_ctx_t *ctx, const char *fmt, va_list ap);

#define hm_log_enabled(l) ((l) >= hm_log_level)

#define hm_log_debug(ctx, ...) \
    do { if (hm_log_enabled(HM_LOG_DEBUG)) hm_log(HM_LOG_DEBUG, ctx, __VA_ARGS__); } while (0)
#define hm_log_info(ctx, ...)  hm_log(HM_LOG_INFO, ctx, __VA_ARGS__)
#define hm_log_warn(ctx, ...)  hm_log(HM_LOG_WARN, ctx, __VA_ARGS__)
#define hm_log_error(ctx, ...) hm_log(HM_LOG_ERROR, ctx, __VA_ARGS__)

/*
 * Access log: one JSON object per line.  path is a file, "stdout", or NULL
 * for off.  hm_access_log_write() appends one complete line (the caller
 * includes the trailing '\n'); it never blocks the event loop for long
 * (the file is O_APPEND, writes are whole lines).
 */
int hm_access_log_open(const char *path);
int hm_access_log_reopen(void);
int hm_access_log_enabled(void);
void hm_access_log_write(const char *line, size_t len);

/*
 * A small JSON line builder for the access log: appends to a fixed buffer,
 * escaping strings; truncation is detected and reported by hm_jb_finish().
 */
typedef struct {
    char   *buf;
    size_t  cap;
    size_t  len;
    int     first;
    int     overflow;
} hm_jbuf_t;

void hm_jb_init(hm_jbuf_t *jb, char *buf, size_t cap);
void hm_jb_str(hm_jbuf_t *jb, const char *key, const char *val);
void hm_jb_strn(hm_jbuf_t *jb, const char *key, const char *val, size_t n);
void hm_jb_int(hm_jbuf_t *jb, const char *key, long long val);
void hm_jb_raw(hm_jbuf_t *jb, const char *key, const char *json);
/* Closes the object and appends '\n'; returns the length, 0 on overflow. */
size_t hm_jb_finish(hm_jbuf_t *jb);

#endif

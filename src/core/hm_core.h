/*
 * hm_core.h: the header every Hamlyn source includes first.  Forward
 * typedefs of the shared structs, status codes and the small always-on
 * helpers (like ngx_core.h).  Nothing here includes OpenSSL, libuv or
 * jansson: those stay behind their own layers.
 */
#ifndef HM_CORE_H
#define HM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "hm_auto_config.h"

#define HAMLYN_VERSION "0.1.0"

/* Status codes (nginx's values). */
typedef int hm_status_t;
#define HM_OK        0
#define HM_ERROR    -1
#define HM_AGAIN    -2
#define HM_DONE     -4
#define HM_DECLINED -5

typedef struct hm_pool_s          hm_pool_t;
typedef struct hm_cycle_s         hm_cycle_t;
typedef struct hm_conf_s          hm_conf_t;
typedef struct hm_conf_cert_s     hm_conf_cert_t;
typedef struct hm_conf_upstream_s hm_conf_upstream_t;
typedef struct hm_conf_listener_s hm_conf_listener_t;
typedef struct hm_conf_site_s     hm_conf_site_t;
typedef struct hm_conf_route_s    hm_conf_route_t;
typedef struct hm_module_s        hm_module_t;
typedef struct hm_worker_s        hm_worker_t;
typedef struct hm_conn_s          hm_conn_t;
typedef struct hm_tls_hello_s     hm_tls_hello_t;

#define hm_container_of(ptr, type, member) \
    ((type *) ((char *) (ptr) - offsetof(type, member)))

#define hm_nelem(a) (sizeof(a) / sizeof((a)[0]))

#define hm_min(a, b) ((a) < (b) ? (a) : (b))
#define hm_max(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define hm_likely(x)   __builtin_expect(!!(x), 1)
#define hm_unlikely(x) __builtin_expect(!!(x), 0)
#define HM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define hm_likely(x)   (x)
#define hm_unlikely(x) (x)
#define HM_PRINTF(f, a)
#endif

/* Allocation that aborts on failure: for start-up and configuration only
 * (h2o, Redis).  The data path uses pools and free lists and treats
 * exhaustion as an expected, counted event. */
void *hm_xmalloc(size_t n);
void *hm_xcalloc(size_t n, size_t size);
void *hm_xrealloc(void *p, size_t n);
char *hm_xstrdup(const char *s);

/* Milliseconds of a monotonic clock, and wall-clock time as RFC 3339 UTC
 * with milliseconds into buf (at least 32 bytes). */
uint64_t hm_now_ms(void);
void hm_time_rfc3339(char *buf, size_t len);

/* 1 when errno value err says this process is short of descriptors,
 * buffers or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the local side's
 * shortage, not the peer's doing, and a retry at once fails alike.
 * libuv's codes are negated errno values: pass -rc for a uv error. */
int hm_errno_shortage(int err);

#include "hm_assert.h"
#include "hm_str.h"

#endif

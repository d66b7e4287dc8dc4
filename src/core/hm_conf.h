/*
 * hm_conf.h: the typed configuration, decoded from the JSON file of
 * shared/CONFIG.md by hm_conf.c.  Workers never see JSON: the loader
 * validates everything (types, ranges, references, certificates and keys)
 * and decodes into these structs, allocated from the cycle's pool, then
 * drops the jansson tree.
 *
 * Every pointer here is owned by conf->pool.  Strings are NUL-terminated.
 * Arrays are (pointer, count) pairs.  References between sections are
 * resolved to pointers (site->upstream, listener->sites[i], ...).
 */
#ifndef HM_CONF_H
#define HM_CONF_H

#include "hm_pool.h"

typedef struct {
    struct sockaddr_storage sa;
    socklen_t               len;
    char                    text[64];   /* "1.2.3.4:443" or "[::1]:443" */
} hm_addr_t;

typedef struct {
    char *name;
    char *value;
} hm_kv_t;

enum { HM_AFFINITY_OFF = 0, HM_AFFINITY_AUTO = 1, HM_AFFINITY_LIST = 2 };

typedef struct {
    int    workers;                 /* resolved: "auto" = online CPUs */
    int    cpu_affinity;            /* HM_AFFINITY_* */
    int   *cpus;                    /* HM_AFFINITY_LIST */
    size_t ncpus;
    char  *user;                    /* NULL = keep the master's */
    char  *group;
    char  *pid_file;                /* absolute; NULL = none */
    char  *error_log_path;          /* "stderr" or absolute path */
    int    error_log_level;         /* HM_LOG_* */
    char  *access_log_path;         /* NULL = off, "stdout", or absolute */
    int    max_connections;         /* per worker; default 10000 */
    int    shutdown_timeout_s;      /* default 30 */
    char  *tls_session_ticket_keys; /* absolute path or NULL */
    int    error_log_json;          /* error_log.format "json" */
} hm_conf_runtime_t;

struct hm_conf_cert_s {
    char *name;
    char *cert_path;                /* absolute */
    char *key_path;
    char *ocsp_path;                /* NULL = none */
    /* Filled by hm_tls_cert_load(): opaque to the rest of the code. */
    void *tls;
    /* Added by the contract work: when hm_tls_cert_load() fails, the
     * key whose file is at fault ("cert", "key" or "ocsp"), or NULL when
     * it is the pair (a key that does not match its certificate). */
    const char *error_key;
};

enum {
    HM_BALANCE_ROUND_ROBIN = 0,
    HM_BALANCE_LEAST_CONN  = 1,
    HM_BALANCE_RANDOM_TWO  = 2
};

typedef struct {
    hm_addr_t addr;
    int       weight;               /* 1..100, default 1 */
} hm_conf_server_t;

typedef struct {
    int    present;
    char  *server_name;             /* SNI and name checked; NULL = none */
    char  *ca_path;                 /* absolute; NULL = system default */
    int    verify;                  /* default 1 */
    char  *accepted_risk;           /* required when verify == 0 */
    hm_conf_cert_t *client_certificate;   /* upstream mTLS, or NULL */
    char **pins;                    /* "sha256/BASE64" */
    size_t npins;
    void  *tls;                     /* SSL_CTX, built by the TLS layer */
    /* Added by the contract work: server_name is an IPv4 or IPv6
     * literal: checked against the certificate's IP addresses and not
     * sent as SNI (RFC 6066 3 allows host names only). */
    int    server_name_ip;
} hm_conf_upstream_tls_t;

typedef struct {
    int    present;
    int    interval_s;              /* default 5 */
    char  *path;                    /* default "/healthz" */
    int    fail_after;              /* default 3 */
    int    pass_after;              /* default 2 */
    int    timeout_ms;              /* default 2000 */
} hm_conf_health_check_t;

struct hm_conf_upstream_s {
    char                  *name;
    int                    index;   /* position in conf->upstreams */
    hm_conf_server_t      *servers;
    size_t                 nservers;
    int                    balance; /* HM_BALANCE_* */
    hm_conf_upstream_tls_t tls;
    char                  *plaintext_risk;  /* non-NULL = plaintext accepted */
    int                    pool_max_idle;   /* per worker, default 32 */
    int                    pool_idle_timeout_s;  /* default 60 */
    int                    connect_timeout_ms;   /* default 2000 */
    int                    read_timeout_ms;      /* default 30000 */
    int                    max_fails;     /* passive ejection, default 3 */
    int                    fail_timeout_s;      /* default 10 */
    hm_conf_health_check_t health_check;
    int                    used_by_passthrough;
    int                    used_by_terminate;
};

enum { HM_SITE_PASSTHROUGH = 1, HM_SITE_TERMINATE = 2 };
enum { HM_PROXY_PROTOCOL_NONE = 0, HM_PROXY_PROTOCOL_V1 = 1,
       HM_PROXY_PROTOCOL_V2 = 2 };
enum { HM_CLIENT_AUTH_NONE = 0, HM_CLIENT_AUTH_OPTIONAL = 1,
       HM_CLIENT_AUTH_REQUIRED = 2 };
enum { HM_FORWARDED_REPLACE = 0, HM_FORWARDED_APPEND = 1,
       HM_FORWARDED_OFF = 2 };

/* TLS protocol versions as on the wire (0x0303 = TLS 1.2). */
#define HM_TLS1_2 0x0303
#define HM_TLS1_3 0x0304

typedef struct {
    hm_conf_cert_t **certificates;
    size_t           ncertificates;
    int              min_version;   /* default HM_TLS1_2 */
    int              max_version;   /* default HM_TLS1_3 */
    char           **alpn;          /* default ["http/1.1"] */
    size_t           nalpn;
    int              client_auth;   /* HM_CLIENT_AUTH_* */
    char            *client_auth_ca;
    int              handshake_timeout_ms;  /* default 10000 */
    char            *ciphers;       /* TLS 1.2 cipher list or NULL */
} hm_conf_site_tls_t;

typedef struct {
    int      forwarded;             /* HM_FORWARDED_* */
    char    *client_cert_header;    /* NULL = none */
    char   **strip_request;         /* may end in '*' (prefix match) */
    size_t   nstrip_request;
    hm_kv_t *set_request;
    size_t   nset_request;
    hm_kv_t *set_response;
    size_t   nset_response;
    char   **strip_response;
    size_t   nstrip_response;
} hm_conf_headers_t;

typedef struct {
    size_t max_header_bytes;        /* default 16384 */
    size_t max_body_bytes;          /* default 1 MiB */
    int    header_timeout_ms;       /* default 10000 */
    int    idle_timeout_ms;         /* default 60000 */
    int    max_requests;            /* per connection, default 1000 */
} hm_conf_limits_t;

typedef struct {
    char    *path_prefix;
    char    *path_exact;
    char   **methods;
    size_t   nmethods;
    hm_kv_t *headers;               /* names lower-cased */
    size_t   nheaders;
    char    *host;                  /* lower-cased */
} hm_conf_match_t;

struct hm_conf_route_s {
    hm_conf_match_t     match;
    hm_conf_upstream_t *upstream;   /* either this ... */
    int                 status;     /* ... or a fixed status (0 = none) */
    char               *body;       /* fixed response body or NULL */
    size_t              body_len;
    char               *content_type;  /* default "text/plain" */
};

struct hm_conf_site_s {
    char               *name;
    int                 index;      /* position in conf->sites */
    char              **server_names;  /* lower-cased */
    size_t              nserver_names;
    int                 mode;       /* HM_SITE_* */
    /* passthrough */
    hm_conf_upstream_t *upstream;
    int                 proxy_protocol_out;  /* HM_PROXY_PROTOCOL_* */
    /* terminate */
    hm_conf_site_tls_t  tls;
    hm_conf_headers_t   headers;
    hm_conf_limits_t    limits;     /* idle_timeout_ms applies to both */
    hm_conf_route_t    *routes;
    size_t              nroutes;
    void               *tls_ctx;    /* SSL_CTX built by the TLS layer */
};

struct hm_conf_listener_s {
    char            *name;
    int              index;
    hm_addr_t       *addrs;
    size_t           naddrs;
    hm_conf_site_t **sites;
    size_t           nsites;
    hm_conf_site_t  *default_site;  /* NULL = refuse unknown names */
    int              proxy_protocol;
    int              redirect_to_https;   /* plaintext redirect listener */
    int              client_hello_timeout_ms;  /* default 10000 */
    size_t           client_hello_max_bytes;   /* default 65536 */
    int              backlog;       /* default 511 */
    int              metrics_row;   /* hm_metrics_listener_row(), master */
};

struct hm_conf_s {
    hm_pool_t          *pool;
    char               *path;       /* absolute path of the file */
    char               *dir;        /* its folder: base of relative paths */
    hm_conf_runtime_t   runtime;
    hm_addr_t          *admin_listen;  /* NULL = no admin listener */
    hm_conf_cert_t     *certs;
    size_t              ncerts;
    hm_conf_upstream_t *upstreams;
    size_t              nupstreams;
    hm_conf_listener_t *listeners;
    size_t              nlisteners;
    hm_conf_site_t     *sites;
    size_t              nsites;
};

/*
 * Loads and validates path.  On success returns a new configuration (free
 * it with hm_conf_free()).  On failure returns NULL and has printed every
 * error it found, one line each, to err (a FILE *, usually stderr) as
 *   FILE: JSON.PATH: reason
 * and stored their count in *nerrors.  Certificates and keys are read and
 * checked (hm_tls_cert_load) unless check_files is 0.
 */
hm_conf_t *hm_conf_load(const char *path, void *err, int *nerrors);
void hm_conf_free(hm_conf_t *conf);

/* The absolute path that rel, a path written in configuration file
 * name, stands for, resolved exactly as the loader resolves it (against
 * the file's folder, "./" dropped, symbolic links kept).  malloc'd; for
 * readers of a file that is not loaded (-s finding runtime.pid_file). */
char *hm_conf_resolve_path(const char *name, const char *rel);

/* Parses "1.2.3.4:443", "[::1]:443", "*:443" (IPv4 any) or ":443".
 * Returns HM_OK or HM_ERROR. */
int hm_addr_parse(const char *s, hm_addr_t *addr);
/* Formats sa into buf as "1.2.3.4:443" / "[::1]:443". */
void hm_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Like hm_conf_load(), over len bytes of JSON at data (used by the fuzzer
 * and the unit tests).  name is printed before each error and its folder
 * is the base of the relative paths in the file.  flags:
 * HM_CONF_NO_RESOLVE: upstream servers must be IP literals (no DNS).
 */
#define HM_CONF_NO_RESOLVE 0x1
hm_conf_t *hm_conf_load_buffer(const char *data, size_t len,
                               const char *name, int flags, void *err,
                               int *nerrors);

/* Warnings (lines with "warning: ", not errors) the last load printed. */
extern int hm_conf_nwarnings;

/* Finds an entry by name; NULL when there is none. */
hm_conf_upstream_t *hm_conf_upstream_find(hm_conf_t *conf, const char *name);
hm_conf_site_t *hm_conf_site_find(hm_conf_t *conf, const char *name);
hm_conf_cert_t *hm_conf_cert_find(hm_conf_t *conf, const char *name);

#endif

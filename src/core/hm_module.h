/*
 * hm_module.h: the module interface.  Each module is one hm_module_t,
 * listed in the generated build/hm_modules.c (nginx's module array).
 * The core walks hm_modules[] at each lifecycle point and at each hook;
 * a module that has nothing to do at a point leaves the pointer NULL.
 *
 * Hooks return HM_OK (continue with the next module), HM_DONE (this module
 * decided; stop walking), HM_DECLINED (not mine; continue) or HM_ERROR.
 */
#ifndef HM_MODULE_H
#define HM_MODULE_H

#define HM_MODULE_MAGIC   0x484d4f44   /* "HMOD" */
#define HM_MODULE_VERSION 1
#define HM_MAX_MODULES    16

/* What on_client_hello decided for a connection. */
typedef enum {
    HM_ROUTE_NONE = 0,
    HM_ROUTE_PASSTHROUGH,   /* forward bytes to conn->site->upstream */
    HM_ROUTE_TERMINATE,     /* hand to the TLS stack with conn->site */
    HM_ROUTE_REJECT         /* send alert conn->alert, close */
} hm_route_action_t;

struct hm_module_s {
    uint32_t    magic;
    uint32_t    version;
    const char *name;
    int         ctx_index;          /* assigned by the core */

    /* Configuration: called with the whole conf after it was loaded and
     * validated by the core; a module precomputes its tables here and
     * may add errors (returns HM_ERROR after logging them with paths). */
    int (*postconfig)(hm_cycle_t *cycle);

    int  (*init_master)(hm_cycle_t *cycle);
    int  (*init_worker)(hm_cycle_t *cycle, hm_worker_t *w);
    void (*exit_worker)(hm_cycle_t *cycle, hm_worker_t *w);
    void (*exit_master)(hm_cycle_t *cycle);

    int (*on_accept)(hm_conn_t *c);
    /* Chooses what happens after the ClientHello: sets c->site and
     * c->route_action, returns HM_DONE when decided. */
    int (*on_client_hello)(hm_conn_t *c, const hm_tls_hello_t *hello);
    int (*on_request)(void *req);
    int (*on_response)(void *req);
    void (*on_log)(hm_conn_t *c);
};

#define HM_MODULE_HEADER HM_MODULE_MAGIC, HM_MODULE_VERSION

extern hm_module_t *hm_modules[];

/* Assigns ctx_index and checks magic/version; HM_ERROR on a mismatch. */
int hm_modules_init(void);
/* Runs postconfig of every module; HM_ERROR if any failed. */
int hm_modules_postconfig(hm_cycle_t *cycle);
/* Writes the names of compiled-in modules, space separated. */
void hm_modules_names(char *buf, size_t len);
/* 1 if the module called name (e.g. "upstream_tls") is compiled in. */
int hm_modules_have(const char *name);
/* Configuration that needs a module have() says is missing: prints
 * "FILE: json.path: reason" lines to err (FILE *), returns their count. */
int hm_modules_check_conf(const hm_conf_t *conf,
                          int (*have)(const char *name), void *err,
                          const char *file);

#endif

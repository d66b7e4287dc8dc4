/*
 * hm_cycle.h: one configuration generation (nginx's cycle): the loaded
 * configuration, the per-module state precomputed from it (SNI tables,
 * SSL_CTXs), and the listening sockets.  Refcounted: a connection holds a
 * reference to the cycle it was accepted under, so a reload never pulls
 * configuration from under a live connection.
 */
#ifndef HM_CYCLE_H
#define HM_CYCLE_H

#include "hm_conf.h"

/* One listening socket: one per (listener address, worker slot) because
 * each worker accepts on its own SO_REUSEPORT clone. */
typedef struct {
    hm_conf_listener_t *listener;
    const hm_addr_t    *addr;
    int                 slot;       /* worker slot this socket belongs to */
    int                 fd;
    /* Added by audit-reload: the worker slot that accepts on it (slot %
     * workers; differs from slot for the sockets kept after a reload or
     * an upgrade lowered runtime.workers, see hm_listen_reuse()). */
    int                 owner;
} hm_listen_t;

struct hm_cycle_s {
    uint32_t       magic;
    int            refs;
    hm_conf_t     *conf;
    hm_pool_t     *pool;            /* == conf->pool */
    void          *module_conf[16]; /* by hm_module_t.ctx_index */
    hm_listen_t   *listens;
    size_t         nlistens;

    /* Added by the fixes work: while hm_cycle_new() runs the modules'
     * postconfig, where errors go (FILE *) and the file name to print
     * ("FILE: json.path: reason"); NULL otherwise. */
    void          *err;
    const char    *err_path;
};

#define HM_CYCLE_MAGIC 0x4379636c

/* Loads path, validates it, builds the module state (TLS contexts).  On
 * failure prints every error to err (FILE *) and returns NULL. */
hm_cycle_t *hm_cycle_new(const char *path, void *err, int *nerrors);
hm_cycle_t *hm_cycle_ref(hm_cycle_t *cycle);
void hm_cycle_unref(hm_cycle_t *cycle);

#endif

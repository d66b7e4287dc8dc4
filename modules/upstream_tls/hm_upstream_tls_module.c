/*
 * hm_upstream_tls_module.c: the upstream TLS pools module of the design
 * card.  It owns the upstream TLS profiles: for every configuration
 * generation, its postconfig builds the client SSL_CTX of each upstream
 * with "tls" (hm_tls_upstream_init: CA or system roots, server_name
 * check, pins, client certificate for mTLS, session callback, ALPN) into
 * u->tls.tls, in the master before the workers fork.  This is the one
 * place that builds them (the TLS layer's site init no longer does).
 *
 * Lifetime: hm_tls_upstream_init registers the context's release as a
 * cleanup of the generation's pool, so a context lives exactly as long as
 * the configuration that uses it (old generations stay valid for their
 * last connections after a reload); no exit hook is needed.
 *
 * Per-worker state: the pools of idle upstream connections and the cached
 * TLS sessions per server (resumption) live in src/upstream/hm_upool.c,
 * filled by the session callback of src/tls/hm_tls_io.c; this module does
 * not duplicate them.
 *
 * Errors are printed like the loader's, "FILE: upstreams.NAME.tls...:
 * reason", to the cycle's error stream (hamlyn -t, reload).
 */
#include "hm_core.h"
#include "hm_conf.h"
#include "hm_cycle.h"
#include "hm_log.h"
#include "hm_module.h"
#include "hm_tls.h"

#include <stdio.h>

/*
 * Builds u->tls.tls for every upstream of cycle->conf with "tls".
 * Returns HM_OK, or HM_ERROR after printing every failure with its JSON
 * path.
 */
static int
hm_upstream_tls_postconfig(hm_cycle_t *cycle)
{
    hm_conf_t          *conf = cycle->conf;
    hm_conf_upstream_t *u;
    FILE               *err = cycle->err != NULL ? cycle->err : stderr;
    const char         *file = cycle->err_path != NULL ? cycle->err_path
                                                       : conf->path;
    char                reason[256];
    size_t              i;
    int                 rc = HM_OK;

    for (i = 0; i < conf->nupstreams; i++) {
        u = &conf->upstreams[i];
        if (!u->tls.present || u->tls.tls != NULL) {
            continue;
        }
        reason[0] = '\0';
        if (hm_tls_upstream_init(conf, u, reason, sizeof(reason)) != HM_OK) {
            fprintf(err, "%s: upstreams.%s.%s\n", file, u->name,
                    reason[0] ? reason : "tls: cannot build the TLS context");
            rc = HM_ERROR;
        }
    }
    return rc;
}

hm_module_t hm_upstream_tls_module = {
    HM_MODULE_HEADER,
    "upstream_tls",
    -1,
    hm_upstream_tls_postconfig,
    NULL,                               /* init_master */
    NULL,                               /* init_worker */
    NULL,                               /* exit_worker */
    NULL,                               /* exit_master */
    NULL, NULL, NULL, NULL, NULL        /* on_accept .. on_log */
};

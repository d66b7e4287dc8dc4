/*
 * hm_cycle.c: one configuration generation (see hm_cycle.h).  The master
 * builds a cycle from the file at start (and, later, on reload): the
 * loader (hm_conf.c) decodes and checks the JSON, then this file builds
 * what the workers need from it (the terminating sites' SSL_CTXs through
 * the TLS layer, each module's postconfig tables; the upstreams' client
 * SSL_CTXs are built by modules/upstream_tls's postconfig).  Workers inherit the
 * cycle through fork; connections take a reference on it, so a
 * generation lives until its last connection closes.
 *
 * The listening sockets in cycle->listens are filled by the master
 * (src/os/hm_listen.c) and belong to the process model, not to the cycle:
 * hm_cycle_unref() never closes them.
 */
#include "hm_core.h"
#include "hm_cycle.h"
#include "hm_log.h"
#include "hm_module.h"
#include "hm_tls.h"

#include <stdio.h>

/*
 * Prints one TLS error with its JSON path.  The TLS layer's reason starts
 * with a path relative to the site's "tls" ("certificates[0]: ...") or an
 * absolute one ("runtime.", "upstreams."), or is plain text.
 */
static void
cycle_tls_error(FILE *err, const char *path, hm_conf_site_t *site,
                const char *reason)
{
    const char *colon = strstr(reason, ": ");

    if (reason[0] == '\0') {
        reason = "cannot build the TLS context";
    } else if (colon != NULL && memchr(reason, ' ', colon - reason) == NULL) {
        if (strncmp(reason, "runtime.", 8) == 0
            || strncmp(reason, "upstreams.", 10) == 0)
        {
            fprintf(err, "%s: %s\n", path, reason);
        } else {
            fprintf(err, "%s: sites.%s.tls.%s\n", path, site->name, reason);
        }
        return;
    }
    fprintf(err, "%s: sites.%s.tls: %s\n", path, site->name, reason);
}

/*
 * Builds the SSL_CTX of every terminating site.  Prints one line per
 * failing site to err ("FILE: sites.NAME.tls: reason") and returns the
 * number of errors.
 */
static int
cycle_tls_init(hm_cycle_t *cycle, const char *path, FILE *err)
{
    hm_conf_t      *conf = cycle->conf;
    hm_conf_site_t *site;
    char            reason[512];
    size_t          i;
    int             nerr = 0;

    for (i = 0; i < conf->nsites; i++) {
        site = &conf->sites[i];
        if (site->mode != HM_SITE_TERMINATE) {
            continue;
        }
        reason[0] = '\0';
        if (hm_tls_site_init(conf, site, reason, sizeof(reason)) != HM_OK) {
            cycle_tls_error(err, path, site, reason);
            nerr++;
        }
    }
    return nerr;
}

/* Releases what cycle_tls_init() built. */
static void
cycle_tls_cleanup(hm_cycle_t *cycle)
{
    size_t i;

    for (i = 0; i < cycle->conf->nsites; i++) {
        if (cycle->conf->sites[i].mode == HM_SITE_TERMINATE
            && cycle->conf->sites[i].tls_ctx != NULL)
        {
            hm_tls_site_cleanup(&cycle->conf->sites[i]);
        }
    }
}

/*
 * Loads <path> and builds a cycle from it with one reference, owned by
 * the caller.  On failure every error found has been printed to err (a
 * FILE *), their count is in *nerrors, and NULL is returned.  Module
 * postconfig errors go to the error log (stderr at this point).
 */
hm_cycle_t *
hm_cycle_new(const char *path, void *err, int *nerrors)
{
    FILE       *out = err != NULL ? err : stderr;
    hm_conf_t  *conf;
    hm_cycle_t *cycle;
    int         n = 0;

    *nerrors = 0;
    conf = hm_conf_load(path, out, &n);
    if (conf == NULL) {
        *nerrors = n > 0 ? n : 1;
        return NULL;
    }

    cycle = hm_xcalloc(1, sizeof(hm_cycle_t));
    cycle->magic = HM_CYCLE_MAGIC;
    cycle->refs = 1;
    cycle->conf = conf;
    cycle->pool = conf->pool;

    n = cycle_tls_init(cycle, path, out);
    /* Configuration asking for a module this build left out: one error
     * per JSON path, counted like the loader's. */
    n += hm_modules_check_conf(conf, hm_modules_have, out, path);
    cycle->err = out;
    cycle->err_path = path;
    if (hm_modules_postconfig(cycle) != HM_OK) {
        n++;
    }
    cycle->err = NULL;
    cycle->err_path = NULL;
    if (n > 0) {
        *nerrors = n;
        cycle->refs = 0;
        cycle_tls_cleanup(cycle);
        hm_conf_free(conf);
        free(cycle);
        return NULL;
    }
    return cycle;
}

hm_cycle_t *
hm_cycle_ref(hm_cycle_t *cycle)
{
    HM_ASSERT(cycle != NULL && cycle->magic == HM_CYCLE_MAGIC);
    HM_ASSERT(cycle->refs > 0);
    cycle->refs++;
    return cycle;
}

/*
 * Drops one reference; the last one frees the TLS contexts and the
 * configuration (and with it the cycle's pool).  The listening sockets
 * are not touched (see the top of the file).
 */
void
hm_cycle_unref(hm_cycle_t *cycle)
{
    if (cycle == NULL) {
        return;
    }
    HM_ASSERT(cycle->magic == HM_CYCLE_MAGIC && cycle->refs > 0);
    if (--cycle->refs > 0) {
        return;
    }
    cycle_tls_cleanup(cycle);
    cycle->magic = 0;
    hm_conf_free(cycle->conf);
    free(cycle);
}

/*
 * fuzz_conf.c: libFuzzer driver for the configuration loader
 * (src/core/hm_conf.c) through hm_conf_load_buffer(), the same code path
 * hm_conf_load() takes after reading the file.
 *
 * The input is the file's bytes, named t/fuzz/corpus/fuzz_conf/input.json
 * so that relative paths in it resolve to the seed folder (the seeds refer
 * to the PEM files of ../../../unit/data/conf).  Host names are not resolved
 * (HM_CONF_NO_RESOLVE).  Besides "no crash, no leak, no sanitizer
 * report", it checks the contract: a NULL result has a positive error
 * count and printed as many lines; a configuration has no errors, every
 * listener serves sites or redirects, and every reference is resolved.
 */
#include "hm_core.h"
#include "hm_conf.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_conf(hm_conf_t *c)
{
    size_t i, j;

    HM_ASSERT(c->nlisteners > 0);
    for (i = 0; i < c->nlisteners; i++) {
        hm_conf_listener_t *l = &c->listeners[i];

        HM_ASSERT(l->name != NULL && l->naddrs > 0);
        HM_ASSERT(l->redirect_to_https ? l->nsites == 0 : l->nsites > 0);
        for (j = 0; j < l->nsites; j++) {
            HM_ASSERT(l->sites[j] >= c->sites
                      && l->sites[j] < c->sites + c->nsites);
        }
    }
    for (i = 0; i < c->nsites; i++) {
        hm_conf_site_t *s = &c->sites[i];

        HM_ASSERT(s->index == (int) i && s->nserver_names > 0);
        if (s->mode == HM_SITE_PASSTHROUGH) {
            HM_ASSERT(s->upstream != NULL && s->upstream->used_by_passthrough);
            HM_ASSERT(!s->upstream->tls.present
                      && s->upstream->plaintext_risk == NULL);
        } else {
            HM_ASSERT(s->mode == HM_SITE_TERMINATE);
            HM_ASSERT(s->tls.ncertificates > 0 && s->nroutes > 0);
            for (j = 0; j < s->nroutes; j++) {
                hm_conf_route_t *r = &s->routes[j];

                HM_ASSERT((r->upstream != NULL) != (r->status != 0));
                HM_ASSERT(r->upstream == NULL
                          || (r->upstream->tls.present
                              != (r->upstream->plaintext_risk != NULL)));
            }
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_conf_t *c;
    char      *out = NULL;
    size_t     outlen = 0, i;
    int        n = -1, lines = 0;
    FILE      *f;

    f = open_memstream(&out, &outlen);
    HM_ASSERT(f != NULL);
    c = hm_conf_load_buffer((const char *) data, size,
                            "t/fuzz/corpus/fuzz_conf/input.json",
                            HM_CONF_NO_RESOLVE, f, &n);
    fclose(f);
    /* One line per error and per warning. */
    for (i = 0; i < outlen; i++) {
        lines += out[i] == '\n';
    }
    if (c == NULL) {
        HM_ASSERT(n > 0 && lines == n + hm_conf_nwarnings);
    } else {
        HM_ASSERT(n == 0 && lines == hm_conf_nwarnings);
        check_conf(c);
        hm_conf_free(c);
    }
    free(out);
    return 0;
}

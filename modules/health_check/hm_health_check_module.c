/*
 * hm_health_check_module.c: glue between the module interface and the
 * active health checks of src/upstream/hm_health.c.  In every worker,
 * init_worker starts the checks of every upstream that has a health_check
 * (on the worker's loop, before it accepts); exit_worker stops them.
 * Verdicts reach the balancer through hm_upstream_peer_set_health().
 */
#include "hm_core.h"
#include "hm_module.h"
#include "hm_health.h"

static int
hm_health_check_init_worker(hm_cycle_t *cycle, hm_worker_t *w)
{
    return hm_health_init_worker(cycle, w);
}

static void
hm_health_check_exit_worker(hm_cycle_t *cycle, hm_worker_t *w)
{
    hm_health_exit_worker(cycle, w);
}

hm_module_t hm_health_check_module = {
    HM_MODULE_HEADER,
    "health_check",
    -1,
    NULL,                               /* postconfig */
    NULL,                               /* init_master */
    hm_health_check_init_worker,
    hm_health_check_exit_worker,
    NULL,                               /* exit_master */
    NULL, NULL, NULL, NULL, NULL        /* on_accept .. on_log */
};

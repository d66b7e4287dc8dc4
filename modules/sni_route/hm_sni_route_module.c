/*
 * hm_sni_route_module.c: routes a connection by the ClientHello's SNI.
 * (Skeleton; filled in by the passthrough work.)
 */
#include "hm_core.h"
#include "hm_module.h"

hm_module_t hm_sni_route_module = {
    HM_MODULE_HEADER,
    "sni_route",
    -1,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};

/*
 * hm_metrics_conn.c: the connection-level counters (hm_metrics.h), taken
 * once per client connection from hm_conn_free(), i.e. from the one close
 * path every owner (passthrough relay, TLS/HTTP stack, redirect) ends in.
 */
#include "hm_core.h"
#include "hm_conn.h"
#include "hm_metrics.h"
#include "hm_preread.h"

/*
 * Counts c as finished: outcome per listener, bytes both ways, the kind of
 * connection, and one less active.  Admin connections (no listener) are
 * not client connections and are not counted.
 */
void
hm__metrics_conn_free(hm_conn_t *c)
{
    if (c->listener == NULL) {
        return;
    }
    HM_METRIC_DEC(CONNECTIONS_ACTIVE);
    hm_metrics_conn_done(c->listener->metrics_row, c->outcome);
    HM_METRIC_ADD(BYTES_RECEIVED, c->bytes_in);
    HM_METRIC_ADD(BYTES_SENT, c->bytes_out);
    if (c->listener->redirect_to_https) {
        HM_METRIC_INC(REDIRECT_CONNECTIONS);
    } else if (c->route_action == HM_ROUTE_PASSTHROUGH) {
        HM_METRIC_INC(PASSTHROUGH_CONNECTIONS);
    } else if (c->route_action == HM_ROUTE_TERMINATE) {
        HM_METRIC_INC(TERMINATE_CONNECTIONS);
    }
}

/*
 * hm_worker.h: per-worker state.  One libuv loop per worker process; the
 * worker accepts on its own SO_REUSEPORT clones of every listener.
 */
#ifndef HM_WORKER_H
#define HM_WORKER_H

#include <uv.h>
#include "hm_cycle.h"

struct hm_worker_s {
    int          slot;              /* 0 .. workers-1 */
    uv_loop_t   *loop;
    hm_cycle_t  *cycle;             /* current generation */
    hm_conn_t   *conns;             /* doubly linked list of live conns */
    int          nconns;
    int          max_connections;
    int          quitting;          /* graceful: no accepts, draining */
    uint64_t     next_conn_id;
    void        *accepts;           /* hm_accept.c state */
    void        *module_state[16];  /* by ctx_index */
};

extern hm_worker_t *hm_worker;      /* this process's worker, or NULL */

/* Worker process entry (called in the child after fork); never returns. */
void hm_worker_main(hm_cycle_t *cycle, int slot) __attribute__((noreturn));

/* Added by audit-reload: when >= 0 (set by the master before the fork), a
 * pipe on which the worker writes one byte once it accepts, then closes
 * it: the master tells "serving" (-d, binary upgrade) only after that. */
extern int hm_worker_ready_fd;

#endif

#ifndef HM_ACCEPT_API
#define HM_ACCEPT_API
/* src/event/hm_accept.c: start accepting on this worker's listening
 * sockets (cycle->listens with slot == w->slot); stop accepting (graceful
 * shutdown: the sockets stay open in the master). */
int hm_accept_init(hm_worker_t *w);
void hm_accept_stop(hm_worker_t *w);
/* How long a worker stops accepting on a socket after accept4() met a
 * shortage (hm_errno_shortage): the sockets are level-triggered and would
 * be reported again at once.  Listeners and the admin socket alike. */
#define HM_ACCEPT_RETRY_MS  100
#endif

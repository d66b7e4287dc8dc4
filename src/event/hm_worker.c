/*
 * hm_worker.c: the worker process.  The master forks it with the cycle it
 * loaded and the slot number; by the time hm_worker_main() runs, the other
 * slots' listening sockets are closed, the CPU is pinned and privileges are
 * dropped (src/os/hm_master.c).  Here the worker builds its libuv loop,
 * runs the modules' init_worker hooks, starts accepting on its own
 * SO_REUSEPORT clones (src/event/hm_accept.c) and then lives in uv_run().
 * Everything a connection does afterwards happens in callbacks of this
 * loop.
 *
 * Signals (forwarded by the master, or sent directly):
 *   QUIT      graceful: stop accepting, ask every connection to finish
 *             (c->drain), exit when none is left or, at
 *             runtime.shutdown_timeout_s, close the rest (c->abort);
 *   TERM/INT  fast: close every connection now and exit 0;
 *   USR1      reopen the error and access logs.
 * HUP, USR2 and PIPE are ignored (the master handles reload and upgrade).
 */
#include "hm_core.h"
#include "hm_conn.h"
#include "hm_log.h"
#include "hm_module.h"
#include "hm_worker.h"
#include "hm_admin.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define HM_WORKER_ABORT_GRACE_MS 1000   /* after c->abort(): then exit */
#define HM_WORKER_FAST_GRACE_MS  500    /* TERM: close callbacks, then exit */

hm_worker_t *hm_worker;
int          hm_worker_ready_fd = -1;

static hm_worker_t  worker;
static uv_signal_t  sig_quit, sig_term, sig_int, sig_usr1;
static uv_prepare_t drain_prepare;
static uv_timer_t   drain_timer;
static int          aborting;

/* Runs the modules' exit_worker hooks and ends the process. */
static void __attribute__((noreturn))
worker_exit(hm_worker_t *w, int code)
{
    int i;

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->exit_worker != NULL) {
            hm_modules[i]->exit_worker(w->cycle, w);
        }
    }
    hm_log_debug(NULL, "worker (slot %d) exiting", w->slot);
    exit(code);
}

/* Calls c->abort() (or, with drain, c->drain()) on every connection.
 * The callee may free the connection, so the next one is read first. */
static void
worker_walk_conns(hm_worker_t *w, int drain)
{
    hm_conn_t *c, *next;

    for (c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (drain) {
            if (c->drain != NULL) {
                c->drain(c);
            }
        } else if (c->abort != NULL) {
            c->abort(c);
        }
    }
}

/* Before each poll while draining: exits once no connection is left. */
static void
drain_check_cb(uv_prepare_t *h)
{
    hm_worker_t *w = h->data;

    if (w->nconns == 0) {
        hm_log_info(NULL, "worker (slot %d): all connections finished",
                    w->slot);
        worker_exit(w, 0);
    }
}

/* The shutdown deadline: close what is left, then exit shortly after
 * even if some close callback never comes. */
static void
drain_timer_cb(uv_timer_t *h)
{
    hm_worker_t *w = h->data;

    if (aborting) {
        hm_log_warn(NULL, "worker (slot %d): %d connections still open "
                    "after abort; exiting", w->slot, w->nconns);
        worker_exit(w, 0);
    }
    if (w->nconns == 0) {
        /* shutdown_timeout_s 0: the timer ran before the drain check;
         * nothing was cut short, so nothing to warn about */
        drain_check_cb(&drain_prepare);
        return;
    }
    aborting = 1;
    hm_log_warn(NULL, "worker (slot %d): shutdown timeout (%ds) reached; "
                "closing %d connections", w->slot,
                w->cycle->conf->runtime.shutdown_timeout_s, w->nconns);
    worker_walk_conns(w, 0);
    uv_timer_start(&drain_timer, drain_timer_cb, HM_WORKER_ABORT_GRACE_MS, 0);
}

/* Starts the handles that end the worker once no connection is left
 * (checked before each poll) or when the timer fires. */
static void
worker_start_exit_watch(hm_worker_t *w, uint64_t timeout_ms)
{
    static int started;

    if (!started) {
        started = 1;
        uv_prepare_init(w->loop, &drain_prepare);
        drain_prepare.data = w;
        uv_prepare_start(&drain_prepare, drain_check_cb);
        uv_timer_init(w->loop, &drain_timer);
        drain_timer.data = w;
    }
    uv_timer_start(&drain_timer, drain_timer_cb, timeout_ms, 0);
}

static void
worker_graceful(hm_worker_t *w)
{
    if (w->quitting) {
        return;
    }
    w->quitting = 1;
    hm_log_info(NULL, "worker (slot %d): graceful shutdown, %d connections "
                "to finish", w->slot, w->nconns);
    hm_accept_stop(w);
    worker_walk_conns(w, 1);
    worker_start_exit_watch(w,
        (uint64_t) w->cycle->conf->runtime.shutdown_timeout_s * 1000);
}

/*
 * Fast stop: closes every connection now and exits once their close
 * callbacks ran, or after HM_WORKER_FAST_GRACE_MS at the latest.  (No
 * nested uv_run(): this runs inside a loop callback.)
 */
static void
worker_fast(hm_worker_t *w)
{
    if (aborting) {
        return;
    }
    hm_log_info(NULL, "worker (slot %d): fast shutdown, closing %d "
                "connections", w->slot, w->nconns);
    if (!w->quitting) {
        hm_accept_stop(w);
    }
    w->quitting = 1;
    aborting = 1;
    worker_walk_conns(w, 0);
    worker_start_exit_watch(w, HM_WORKER_FAST_GRACE_MS);
}

static void
worker_signal_cb(uv_signal_t *h, int signo)
{
    hm_worker_t *w = h->data;

    switch (signo) {
    case SIGQUIT:
        worker_graceful(w);
        break;
    case SIGTERM:
    case SIGINT:
        worker_fast(w);
        break;
    case SIGUSR1:
        if (hm_log_reopen() != HM_OK) {
            hm_log_error(NULL, "worker (slot %d): cannot reopen the error "
                         "log: %s", w->slot, strerror(errno));
        }
        if (hm_access_log_reopen() != HM_OK) {
            hm_log_error(NULL, "worker (slot %d): cannot reopen the access "
                         "log: %s", w->slot, strerror(errno));
        }
        break;
    }
}

static void
worker_signal(hm_worker_t *w, uv_signal_t *h, int signo)
{
    uv_signal_init(w->loop, h);
    h->data = w;
    uv_signal_start(h, worker_signal_cb, signo);
}

/*
 * Worker entry, in the child after fork.  Takes over the master's
 * reference on <cycle> (this process's copy of it).  Never returns: exits
 * 0 after a requested stop, 2 when it cannot start (the master then
 * restarts the slot with backoff).
 */
void
hm_worker_main(hm_cycle_t *cycle, int slot)
{
    hm_worker_t      *w = &worker;
    struct sigaction  sa;
    sigset_t          set;
    int               i, rc;

    memset(w, 0, sizeof(*w));
    w->slot = slot;
    w->cycle = cycle;
    w->max_connections = cycle->conf->runtime.max_connections > 0
                         ? cycle->conf->runtime.max_connections : 10000;
    w->next_conn_id = 1;
    hm_worker = w;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);

    w->loop = hm_xmalloc(sizeof(uv_loop_t));
    rc = uv_loop_init(w->loop);
    if (rc != 0) {
        hm_log_error(NULL, "worker (slot %d): uv_loop_init() failed: %s",
                     slot, uv_strerror(rc));
        exit(2);
    }
    worker_signal(w, &sig_quit, SIGQUIT);
    worker_signal(w, &sig_term, SIGTERM);
    worker_signal(w, &sig_int, SIGINT);
    worker_signal(w, &sig_usr1, SIGUSR1);

    /* The master forked us with its signals blocked; libuv's handlers are
     * in place now, so anything pending is delivered into the loop. */
    sigfillset(&set);
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->init_worker != NULL
            && hm_modules[i]->init_worker(cycle, w) != HM_OK)
        {
            hm_log_error(NULL, "worker (slot %d): module %s: init_worker "
                         "failed", slot, hm_modules[i]->name);
            exit(2);
        }
    }

    if (hm_accept_init(w) != HM_OK) {
        hm_log_error(NULL, "worker (slot %d): cannot start accepting", slot);
        exit(2);
    }
    if (slot == 0 && hm_admin_start(w) != HM_OK) {
        exit(2);
    }
    if (hm_worker_ready_fd >= 0) {
        if (write(hm_worker_ready_fd, "r", 1) != 1) {
            /* the master gave up waiting: nothing to tell */
        }
        close(hm_worker_ready_fd);
        hm_worker_ready_fd = -1;
    }

    uv_run(w->loop, UV_RUN_DEFAULT);

    /* Only reached if every handle went away, which the signal handles
     * prevent; treat it as a stop. */
    worker_exit(w, 0);
}

/*
 * hm_os.h: the process layer's internal interface (src/os).  main()
 * (src/hamlyn.c) loads a cycle, then hands it to the master
 * (hm_master.c), which binds the listening sockets (hm_listen.c), forks
 * the workers and supervises them until it is told to stop.  Workers then
 * run hm_worker_main() (src/event/hm_worker.c) and never come back here.
 *
 * Nothing outside src/os and src/hamlyn.c needs this header.
 */
#ifndef HM_OS_H
#define HM_OS_H

#include "hm_cycle.h"

/* Options of the master that come from the command line, not the file. */
typedef struct {
    const char *conf_path;          /* -c, as given */
    int         daemonize;          /* -d */
    char      **argv;               /* for the binary upgrade (USR2) */
} hm_master_opts_t;

/*
 * Runs the master: opens the logs, binds every listening socket, writes
 * the pid file (daemonising first with -d), forks runtime.workers workers
 * and supervises them until QUIT, TERM or INT.  Takes the caller's
 * reference on <cycle>.  Returns the process exit code (0 after a clean
 * stop, 1 when start-up failed); in a worker it never returns.
 */
int hm_master_run(hm_cycle_t *cycle, const hm_master_opts_t *opts);

/* Crash-loop backoff (hm_master.c): updates a slot's *backoff_ms for a
 * worker that lived <lived_ms> and returns the restart delay in ms. */
int hm__master_backoff(int *backoff_ms, uint64_t lived_ms);

/*
 * Binds every address of every listener once per worker slot, each
 * socket with SO_REUSEADDR and SO_REUSEPORT (IPV6_V6ONLY for IPv6),
 * nonblocking and close-on-exec, and listens on it.  Fills
 * cycle->listens / cycle->nlistens (from the cycle's pool).  On failure
 * logs the reason with the listener's JSON path, closes what it opened
 * and returns HM_ERROR.
 */
int hm_listen_open(hm_cycle_t *cycle, int workers);

/*
 * The same for a reload: a socket of <old> with the same address and
 * slot is moved into <cycle> (its fd set to -1 in <old>) instead of being
 * bound again, so its accept queue survives; the others are opened anew.
 * Sockets of <old> for slots beyond <workers> are moved too (owned by
 * slot % workers; new connections are steered away from them), never
 * closed: that would reset the connections in their queues.
 * On failure <old> gets its sockets back and HM_ERROR is returned.  The
 * sockets left in <old> are the caller's to close.
 */
int hm_listen_reuse(hm_cycle_t *cycle, hm_cycle_t *old, int workers);

/*
 * Binary upgrade, new master's side: adopts the listening sockets the old
 * master passed in HAMLYN_FDS ("fd:addr:slot;..."; the address is taken
 * from getsockname(), the text is informational) into a pseudo-cycle
 * <from> whose listens can be handed to hm_listen_reuse() as the old
 * cycle.  Returns the number adopted (0 when HAMLYN_FDS is unset) and
 * unsets the variable.  Release with hm_listen_inherited_free(), which
 * closes the sockets that were not taken.
 */
int hm_listen_inherited(hm_cycle_t *from);
void hm_listen_inherited_free(hm_cycle_t *from);

/*
 * Added by audit-reload: points each address's SO_REUSEPORT group of
 * <cycle> at its first <workers> sockets (when it holds more, after a
 * reload or upgrade to fewer workers), or back to the kernel's hash.  The
 * program belongs to the group, which an upgrade shares between two
 * masters: the old one calls this again after a roll-back.
 */
void hm_listen_steer(hm_cycle_t *cycle, int workers);

/* Binary upgrade, old master's side: formats HAMLYN_FDS for <cycle> into
 * a malloc'd string and clears FD_CLOEXEC on its sockets when <for_exec>
 * (call that in the child, right before exec). */
char *hm_listen_export(hm_cycle_t *cycle, int for_exec);

/* Closes the listening sockets that <slot> does not accept on (owner; in
 * a worker, right after fork) and marks them fd = -1 in this process. */
void hm_listen_close_others(hm_cycle_t *cycle, int slot);

/* Closes every listening socket of <cycle> in this process. */
void hm_listen_close_all(hm_cycle_t *cycle);

/*
 * Whether another process already listens on <addr>: binds a throwaway
 * socket with SO_REUSEADDR but without SO_REUSEPORT (IPV6_V6ONLY for
 * IPv6).  SO_REUSEPORT would let a second hamlyn (another configuration,
 * another pid file) bind the same port and silently take a share of its
 * connections; this makes that an "Address already in use" error, as
 * with nginx.  Returns 0, or -1 with errno EADDRINUSE.  Always 0 while
 * hm_listen_probe_off is set (the new master of a binary upgrade, whose
 * old master still holds the ports).
 */
extern int hm_listen_probe_off;
int hm_listen_probe(const hm_addr_t *addr);

/*
 * True when <pid> is a live hamlyn process: it exists and the base name
 * of its executable (or argv[0]) contains "hamlyn".  Used before trusting
 * a pid file: at start (another master?) and by hamlyn -s (never signal
 * a process that merely reused a stale pid).
 */
int hm_pid_is_hamlyn(pid_t pid);

/* Writes "listening on" text (addresses, comma separated) into buf. */
void hm_listen_describe(hm_cycle_t *cycle, char *buf, size_t len);

#endif

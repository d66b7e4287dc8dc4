/*
 * hm_health.h: active health checks of upstream servers (issue 4).
 *
 * For every upstream with a health_check, every server is probed every
 * interval_s: an HTTP/1.1 "GET path" with "Host: server_name" (or the
 * server's address) over the upstream's own transport (TLS with its
 * verification, SNI and client certificate when upstream.tls is present,
 * else clear text).  A 2xx or 3xx status line passes; anything else, a
 * connect/TLS failure or no status line within timeout_ms fails.
 * fail_after consecutive failures mark the peer down (no traffic, see
 * hm_upstream_peer_set_health); pass_after consecutive passes mark it up
 * again.  Transitions are logged at warn, each check's verdict at debug.
 * TLS checks offer and refresh the per-server session of the connection
 * pool (hm_upool_session), so after the first one they resume, and
 * traffic may resume the session a check obtained.
 *
 * An upstream used only by passthrough sites has neither tls nor
 * plaintext settings (the bytes are the client's TLS session): its check
 * is a TCP connect, which passes when the connection is accepted.
 *
 * Scope, kept simple: every worker checks on its own (no shared memory),
 * so with N workers each server sees N probes per interval, and each
 * worker's view may differ for up to one interval.  Peers start up; a
 * worker started by a reload or a restart re-learns the state within
 * fail_after intervals.
 */
#ifndef HM_HEALTH_H
#define HM_HEALTH_H

#include "hm_core.h"

/* Longest status line looked at ("HTTP/1.1 200 OK\r\n" and a reason). */
#define HM_HEALTH_MAX_LINE 256
/* Most bytes of interim (1xx) responses skipped before the final one. */
#define HM_HEALTH_MAX_INTERIM 16384

/*
 * Starts the checks of every upstream of cycle->conf that has a
 * health_check, on w->loop (the timers do not keep the loop alive).
 * Allocation failure aborts (start-up path).  Returns HM_OK.
 */
int hm_health_init_worker(hm_cycle_t *cycle, hm_worker_t *w);

/* Stops every check of this worker (exit path); idempotent. */
void hm_health_exit_worker(hm_cycle_t *cycle, hm_worker_t *w);

/*
 * Pure parser of the start of an HTTP response: looks for a complete
 * status line "HTTP/1.x NNN[ reason]" (CRLF or LF) in p[0..len).  Returns
 * HM_OK with *status (100..599) set, HM_AGAIN when more bytes are needed
 * (a valid prefix shorter than HM_HEALTH_MAX_LINE), or HM_ERROR for
 * anything else.
 */
int hm_health_parse_status(const char *p, size_t len, int *status);

/*
 * The Host header value of a check: server_name (tls.server_name, NULL
 * when none) with an IPv6 literal bracketed, else addr_text.  Written
 * into buf (NUL-terminated, truncated to len > 0); returns buf.
 */
const char *hm_health_host_header(char *buf, size_t len,
                                  const char *server_name,
                                  const char *addr_text);

#endif

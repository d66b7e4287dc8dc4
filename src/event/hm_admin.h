/*
 * hm_admin.h: the admin listener (CONFIG.md `admin`) and the plaintext
 * redirect listeners (`listeners[].http.redirect_to_https`).
 *
 * Both are tiny HTTP/1.1 servers over raw sockets (the worker's epoll
 * plumbing, hm_preread.h): one bounded request head, parsed by
 * hm_http_parse_head(), one response, Connection: close, then a short
 * lingering close so the client reads the whole answer.
 *
 * Admin: the master binds admin.listen once (one plain TCP socket, kept
 * across reloads while the address stays) before forking; the worker of
 * slot 0 serves it: GET /metrics (Prometheus text, all worker slots
 * summed), GET /healthz (200 "ok" while every configured worker of the
 * current generation runs, else 503), GET /trust (hm_trust_report_json());
 * 404 for other paths, 405 for other methods.
 *
 * Redirect: hm_accept.c hands every connection of a redirect_to_https
 * listener to hm__redirect_start() instead of the ClientHello preread; the
 * answer is 301 with Location: https://HOST/TARGET (HOST from the Host
 * header, without its port), or 400 when Host is missing or invalid.
 */
#ifndef HM_ADMIN_H
#define HM_ADMIN_H

#include "hm_core.h"
#include "hm_conf.h"

/* The admin listening socket in this process, -1 = none. */
extern int hm_admin_fd;

/* ---- master (src/os/hm_admin_listen.c) ---- */

/* Binds conf->admin_listen into a pending socket unless the current one
 * already has that address.  HM_OK (nothing to do, or bound) or HM_ERROR
 * (logged with the JSON path "admin.listen"). */
int hm_admin_prepare(const hm_conf_t *conf);
/* Installs the pending socket (closing the replaced one), or closes the
 * current one when conf has no admin listener. */
void hm_admin_commit(const hm_conf_t *conf);
/* Drops a pending socket (the new configuration was not applied). */
void hm_admin_abort(void);
/* In a new worker: only slot 0 keeps the admin socket. */
void hm_admin_child(int slot);

/* ---- worker (src/event/hm_admin.c) ---- */

/* Slot 0: starts accepting on hm_admin_fd (no-op when there is none).
 * HM_OK or HM_ERROR (logged). */
int hm_admin_start(hm_worker_t *w);
/* Graceful stop: no more admin accepts (called from hm_accept_stop()). */
void hm_admin_stop(hm_worker_t *w);

/* Takes over an accepted connection of a redirect_to_https listener. */
void hm__redirect_start(hm_conn_t *c);

/*
 * Pure: builds "https://HOST" + path into buf (cap bytes, NUL-terminated)
 * from a Host header value (host, hlen) and a request-target (target,
 * tlen).  The host loses its port and is lower-cased; it must be a DNS
 * name (letters, digits, '-', '.', '_') of at most 253 bytes or an IP
 * literal ("[v6]" or dotted v4), and a port must be 1..5 digits.  The
 * target must be origin-form ("/...") or absolute-form ("http://a:80/b":
 * its authority "a:80" then replaces the Host header, RFC 9112 3.2.2, and
 * "/b" is kept; a query without a path, "http://a?x" or "?x" as the
 * parser leaves it, gets the path "/").  Returns the length written, or
 * -1 when the host or target is invalid or buf is too small.
 */
int hm_redirect_location(const char *host, size_t hlen, const char *target,
                         size_t tlen, char *buf, size_t cap);

#endif

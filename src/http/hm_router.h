/*
 * hm_router.h: picks the route of a terminating site for a parsed request
 * (CONFIG.md "routes": first match wins over host, path_prefix,
 * path_exact, methods, headers), on the normalised path.
 */
#ifndef HM_ROUTER_H
#define HM_ROUTER_H

#include "hm_conf.h"
#include "hm_http_parse.h"

/*
 * Normalises a request path (the target up to '?') for routing: decodes
 * percent-encoded unreserved characters (ALPHA DIGIT - . _ ~), upper-cases
 * the hex digits of the escapes it keeps, resolves "." and ".." segments
 * (RFC 3986 5.2.4; ".." above the root stays at the root) and merges
 * repeated slashes.  out must hold len + 2 bytes; returns the length of
 * the result (at least 1: "/"), or 0 when the path holds a malformed
 * escape (the caller answers 400).
 */
size_t hm_http_normalize_path(const char *in, size_t len, char *out);

/*
 * Returns the first route of site whose match holds for request m with
 * normalised path npath and host (Host without port, or the SNI when the
 * request has no Host), or NULL when none matches (404).
 */
const hm_conf_route_t *hm_router_match(const hm_conf_site_t *site,
                                       const hm_http_msg_t *m,
                                       const char *npath, size_t nlen,
                                       const char *host, size_t hlen);

#endif

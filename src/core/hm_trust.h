/*
 * hm_trust.h: the trust report (`hamlyn --trust-report[=json]`, and the
 * admin `GET /trust` document).  A pure function of the typed configuration
 * (hm_conf.h): for every listener and each of its sites, where TLS ends,
 * what each leg towards a backend is (passthrough end to end, TLS verified
 * with or without mTLS, TLS unverified, plaintext, fixed responses), which
 * identity the backend sees and which client headers the proxy strips.
 * Accepted risks are quoted verbatim.  It reads nothing but the structs:
 * no files, no sockets, no JSON input.
 */
#ifndef HM_TRUST_H
#define HM_TRUST_H

#include <stdio.h>

#include "hm_core.h"
#include "hm_conf.h"

/*
 * Writes the trust report of conf to out: a human-readable, aligned text
 * when json is 0, else one JSON document (jansson, two-space indent,
 * stable keys, see man/hamlyn.8).  Returns HM_OK, or HM_ERROR when out
 * could not be written or memory ran out.  Exit codes are the caller's.
 */
int hm_trust_report(const hm_conf_t *conf, FILE *out, int json);

/*
 * The JSON report as a NUL-terminated string ending with a newline (the
 * admin /trust body, byte for byte what --trust-report=json prints).
 * Returns a malloc'd string the caller frees with free(), or NULL when
 * memory ran out.
 */
char *hm_trust_report_json(const hm_conf_t *conf);

#endif

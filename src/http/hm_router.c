/*
 * hm_router.c: route selection of a terminating site.  Runs once per
 * request after the head was parsed and before any filter: the request
 * path is normalised first so that "/v1/../admin/", "//admin/",
 * "/%61dmin/" and "/x/..%2Fadmin/" all route as "/admin/" (the WAF sees
 * the raw path; routing must not be fooled by spellings the backend may
 * resolve: an encoded slash is a slash here, as nginx matches locations,
 * while the target is forwarded as received).
 */
#include "hm_core.h"
#include "hm_router.h"

static int
unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
           || c == '~';
}

/* Length of the slash at in[i] ("/" or an encoded "%2F"), or 0. */
static size_t
slash_at(const char *in, size_t len, size_t i)
{
    if (in[i] == '/') {
        return 1;
    }
    if (in[i] == '%' && i + 2 < len && in[i + 1] == '2'
        && (in[i + 2] == 'F' || in[i + 2] == 'f'))
    {
        return 3;
    }
    return 0;
}

size_t
hm_http_normalize_path(const char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0, seg, w;
    int hi, lo, c;

    /* Pass 1: decode unreserved escapes, merge slashes, and resolve dot
     * segments as each segment completes. */
    out[o++] = '/';
    i = (len > 0 && in[0] == '/') ? 1 : 0;
    seg = o;                        /* start of the current segment */
    for (;;) {
        if (i >= len || slash_at(in, len, i) > 0) {
            /* end of a segment out[seg..o) */
            size_t n = o - seg;
            if (n == 1 && out[seg] == '.') {
                o = seg;                        /* "." */
            } else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
                /* ".." : drop it and the previous segment */
                o = seg;
                if (o > 1) {
                    o--;                        /* the '/' before ".." */
                    while (o > 1 && out[o - 1] != '/') {
                        o--;
                    }
                }
            } else if (n > 0 && i < len) {
                out[o++] = '/';
            }
            if (i >= len) {
                break;
            }
            while (i < len && (w = slash_at(in, len, i)) > 0) {
                i += w;                         /* merge repeated slashes */
            }
            seg = o;
            if (i >= len) {
                break;
            }
            continue;
        }
        c = (unsigned char) in[i];
        if (c == '%') {
            if (i + 2 >= len) {
                return 0;
            }
            hi = hm_hexval(in[i + 1]);
            lo = hm_hexval(in[i + 2]);
            if (hi < 0 || lo < 0) {
                return 0;
            }
            c = hi * 16 + lo;
            if (unreserved(c)) {
                out[o++] = (char) c;
            } else {
                out[o++] = '%';
                out[o++] = hex[hi];
                out[o++] = hex[lo];
            }
            i += 3;
            continue;
        }
        out[o++] = (char) c;
        i++;
    }
    if (o == 0) {
        out[o++] = '/';
    }
    out[o] = '\0';
    return o;
}

static int
match_route(const hm_conf_match_t *mt, const hm_http_msg_t *m,
            const char *npath, size_t nlen, const char *host, size_t hlen)
{
    size_t i, plen;
    int hi, ok;

    if (mt->host != NULL
        && !hm_strncaseeq(mt->host, strlen(mt->host), host, hlen))
    {
        return 0;
    }
    if (mt->path_exact != NULL
        && (strlen(mt->path_exact) != nlen
            || memcmp(mt->path_exact, npath, nlen) != 0))
    {
        return 0;
    }
    if (mt->path_prefix != NULL) {
        plen = strlen(mt->path_prefix);
        if (plen > nlen || memcmp(mt->path_prefix, npath, plen) != 0) {
            return 0;
        }
    }
    if (mt->nmethods > 0) {
        ok = 0;
        for (i = 0; i < mt->nmethods && !ok; i++) {
            ok = strlen(mt->methods[i]) == m->method_name.len
                 && memcmp(mt->methods[i], m->method_name.data,
                           m->method_name.len) == 0;
        }
        if (!ok) {
            return 0;
        }
    }
    for (i = 0; i < mt->nheaders; i++) {
        const hm_kv_t *kv = &mt->headers[i];
        size_t vlen = strlen(kv->value);
        ok = 0;
        for (hi = hm_http_header_find(m, kv->name, strlen(kv->name), 0);
             hi >= 0 && !ok;
             hi = hm_http_header_find(m, kv->name, strlen(kv->name),
                                      (size_t) hi + 1))
        {
            ok = m->headers[hi].value.len == vlen
                 && memcmp(m->headers[hi].value.data, kv->value, vlen) == 0;
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

const hm_conf_route_t *
hm_router_match(const hm_conf_site_t *site, const hm_http_msg_t *m,
                const char *npath, size_t nlen, const char *host, size_t hlen)
{
    size_t i;

    for (i = 0; i < site->nroutes; i++) {
        if (match_route(&site->routes[i].match, m, npath, nlen, host, hlen)) {
            return &site->routes[i];
        }
    }
    return NULL;
}

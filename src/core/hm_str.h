/*
 * hm_str.h: length-delimited strings.  Never assume a NUL after data.
 */
#ifndef HM_STR_H
#define HM_STR_H

typedef struct {
    size_t      len;
    const char *data;
} hm_str_t;

#define hm_string(s)   { sizeof(s) - 1, (s) }
#define hm_null_string { 0, NULL }

/* ASCII lower case of one byte (no locale). */
static inline unsigned char
hm_lower(unsigned char c)
{
    return (unsigned char) (c + (((unsigned) c - 'A' < 26u) << 5));
}

/*
 * Case-insensitive ASCII comparison of two byte ranges.  Inline and
 * locale-free: header names are compared several times per request.
 */
static inline int
hm_strncaseeq(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;

    if (alen != blen) {
        return 0;
    }
    for (i = 0; i < alen; i++) {
        if (a[i] != b[i]
            && hm_lower((unsigned char) a[i]) != hm_lower((unsigned char) b[i]))
        {
            return 0;
        }
    }
    return 1;
}

/* Value of one hexadecimal digit, -1 when c is not one. */
static inline int
hm_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* ASCII lower-casing of n bytes from src into dst (may be equal). */
void hm_strlow(char *dst, const char *src, size_t n);

/* 1 when host (hlen bytes, no port) is covered by the server name pattern
 * pat (NUL-terminated): equal, or "*.suffix" for exactly one more label
 * ("*.x.test" covers "a.x.test", neither "x.test" nor "a.b.x.test");
 * case-insensitive. */
int hm_server_name_covers(const char *pat, const char *host, size_t hlen);

#endif

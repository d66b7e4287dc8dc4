/*
 * hm_tls_version.c: the TLS library's own version string, for hamlyn -V.
 * Kept apart from hm_tls.c so that the command line does not depend on
 * the rest of the TLS layer.  The definition is weak: if hm_tls.c defines
 * hm_tls_version() too, that one wins at link time.
 */
#include "hm_core.h"
#include "hm_tls.h"

#include <openssl/crypto.h>

__attribute__((weak)) const char *
hm_tls_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

/*
 * hm_assert.h: assertions that stay on in release builds (Varnish).  A
 * failed assertion in a worker kills that worker; the master logs its exit
 * status and starts another on the same sockets.
 */
#ifndef HM_ASSERT_H
#define HM_ASSERT_H

void hm_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

#define HM_ASSERT(e) \
    (hm_likely(e) ? (void) 0 : hm_assert_fail(#e, __FILE__, __LINE__))
#define HM_BUG_ON(e) \
    (hm_unlikely(e) ? hm_assert_fail("BUG: " #e, __FILE__, __LINE__) : (void) 0)

#ifdef HM_DEBUG
#define HM_CHECK_OBJ(o, m) HM_ASSERT((o) != NULL && (o)->magic == (m))
#else
#define HM_CHECK_OBJ(o, m) ((void) 0)
#endif

#endif

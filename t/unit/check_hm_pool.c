/* Unit tests of src/core/hm_pool.c and the JSON line builder of hm_log.c. */
#include "hm_core.h"
#include "hm_pool.h"
#include "hm_log.h"
#include "hm_check.h"

static int cleaned;
static void on_clean(void *d) { cleaned += *(int *) d; }

START_TEST(pool_alloc_aligned_and_large)
{
    hm_pool_t *p = hm_pool_new(1024);
    char *a = hm_pool_alloc(p, 3);
    char *b = hm_pool_alloc(p, 5);
    char *big = hm_pool_alloc(p, 100000);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(((uintptr_t) a) % 16, 0);
    ck_assert_int_eq(((uintptr_t) b) % 16, 0);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 100000);
    ck_assert_str_eq(hm_pool_strndup(p, "hello world", 5), "hello");
    hm_pool_free(p);
}
END_TEST

START_TEST(pool_reset_runs_cleanups_after_mark)
{
    static int one = 1, ten = 10;
    hm_pool_mark_t m;
    hm_pool_t *p = hm_pool_new(512);
    int i;

    cleaned = 0;
    hm_pool_cleanup_add(p, on_clean, &one);
    hm_pool_mark(p, &m);
    for (i = 0; i < 3; i++) {
        hm_pool_alloc(p, 400);
        hm_pool_alloc(p, 5000);
        hm_pool_cleanup_add(p, on_clean, &ten);
        hm_pool_reset_to(p, &m);
    }
    ck_assert_int_eq(cleaned, 30);
    hm_pool_free(p);
    ck_assert_int_eq(cleaned, 31);
}
END_TEST

START_TEST(json_line_escapes_and_detects_overflow)
{
    char buf[128];
    hm_jbuf_t jb;
    size_t n;

    hm_jb_init(&jb, buf, sizeof(buf));
    hm_jb_str(&jb, "sni", "a\"b\\c\n\x01\xff");
    hm_jb_int(&jb, "bytes", -5);
    hm_jb_str(&jb, "none", NULL);
    n = hm_jb_finish(&jb);
    ck_assert_uint_gt(n, 0);
    buf[n] = 0;
    ck_assert_str_eq(buf,
        "{\"sni\":\"a\\\"b\\\\c\\u000a\\u0001\\u00ff\",\"bytes\":-5,\"none\":null}\n");

    hm_jb_init(&jb, buf, 16);
    hm_jb_str(&jb, "key", "a value longer than sixteen bytes");
    ck_assert_uint_eq(hm_jb_finish(&jb), 0);
}
END_TEST

static Suite *
pool_suite(void)
{
    Suite *s = suite_create("hm_pool");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, pool_alloc_aligned_and_large);
    tcase_add_test(tc, pool_reset_runs_cleanups_after_mark);
    tcase_add_test(tc, json_line_escapes_and_detects_overflow);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(pool_suite)

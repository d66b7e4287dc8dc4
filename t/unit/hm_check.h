/*
 * hm_check.h: shared bits of the Check unit tests.  Each t/unit/check_*.c
 * is its own program (one suite per source file) ending in
 *     HM_CHECK_MAIN(suite_function)
 * CK_FORK stays on by default: a process per test, as in libuv.
 */
#ifndef HM_CHECK_H
#define HM_CHECK_H

#include <check.h>
#include <stdlib.h>

#define HM_CHECK_MAIN(suite_fn)                                     \
    int main(void)                                                  \
    {                                                               \
        int failed;                                                 \
        SRunner *sr = srunner_create(suite_fn());                   \
        srunner_run_all(sr, CK_NORMAL);                             \
        failed = srunner_ntests_failed(sr);                         \
        srunner_free(sr);                                           \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;           \
    }

#endif

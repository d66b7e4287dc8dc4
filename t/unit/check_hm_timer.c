/*
 * Unit tests of src/event/hm_timer.c on a real libuv loop: a lazy timer
 * fires once, at the deadline it was last given (earlier or later than
 * the armed one), never after a stop, and closes cleanly while armed.
 */
#include "hm_core.h"
#include "hm_timer.h"
#include "hm_check.h"

typedef struct {
    int      fired;
    uint64_t at;            /* uv_now() when it fired */
} probe_t;

static void
on_fire(uv_timer_t *h)
{
    probe_t *p = h->data;

    p->fired++;
    p->at = uv_now(h->loop);
}

static void
on_closed(uv_handle_t *h)
{
    (void) h;
}

/* Runs the loop until nothing is active or limit_ms of loop time passed. */
static void
run_for(uv_loop_t *loop, uint64_t limit_ms)
{
    uint64_t start = uv_now(loop);

    while (uv_now(loop) - start < limit_ms) {
        if (uv_run(loop, UV_RUN_ONCE) == 0) {
            break;
        }
    }
}

/* Each test: a fresh loop, one timer reporting to p. */
static uv_loop_t loop;
static hm_timer_t t;
static probe_t p;
static int closed;              /* the test closed t itself */

static void
setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hm_timer_init(&loop, &t, &p);
    p.fired = 0;
    p.at = 0;
    closed = 0;
}

/* Closes the timer; the loop must then have nothing left. */
static void
teardown(void)
{
    if (!closed) {
        hm_timer_close(&t, on_closed);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

START_TEST(timer_fires_once_at_deadline)
{
    uint64_t t0;

    t0 = uv_now(&loop);
    hm_timer_start(&t, on_fire, 30);
    run_for(&loop, 500);
    ck_assert_int_eq(p.fired, 1);
    ck_assert_uint_ge(p.at - t0, 30);
    ck_assert_uint_lt(p.at - t0, 300);
}
END_TEST

START_TEST(timer_stop_means_never)
{
    hm_timer_start(&t, on_fire, 20);
    hm_timer_stop(&t);
    run_for(&loop, 200);          /* the armed uv timer fires, spuriously */
    ck_assert_int_eq(p.fired, 0);
}
END_TEST

/* Moved later: the armed (earlier) expiry must not call back early. */
START_TEST(timer_moved_later_waits)
{
    uint64_t t0;

    t0 = uv_now(&loop);
    hm_timer_start(&t, on_fire, 20);
    hm_timer_start(&t, on_fire, 120);
    run_for(&loop, 600);
    ck_assert_int_eq(p.fired, 1);
    ck_assert_uint_ge(p.at - t0, 120);
}
END_TEST

/* Moved earlier: the uv timer is re-armed, the callback is not late. */
START_TEST(timer_moved_earlier_fires_early)
{
    uint64_t t0;

    t0 = uv_now(&loop);
    hm_timer_start(&t, on_fire, 5000);
    hm_timer_start(&t, on_fire, 20);
    run_for(&loop, 1000);
    ck_assert_int_eq(p.fired, 1);
    ck_assert_uint_ge(p.at - t0, 20);
    ck_assert_uint_lt(p.at - t0, 1000);
}
END_TEST

/* Zero: the next loop iteration; restart after firing works again. */
START_TEST(timer_zero_and_restart)
{
    hm_timer_start(&t, on_fire, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(p.fired, 1);
    hm_timer_start(&t, on_fire, 10);
    run_for(&loop, 300);
    ck_assert_int_eq(p.fired, 2);
}
END_TEST

/* Closed while armed: no callback, the loop closes with nothing left. */
START_TEST(timer_close_while_armed)
{
    hm_timer_start(&t, on_fire, 10);
    hm_timer_close(&t, on_closed);
    closed = 1;
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(p.fired, 0);
}
END_TEST

static Suite *
timer_suite(void)
{
    Suite *s = suite_create("hm_timer");
    TCase *tc = tcase_create("lazy");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, timer_fires_once_at_deadline);
    tcase_add_test(tc, timer_stop_means_never);
    tcase_add_test(tc, timer_moved_later_waits);
    tcase_add_test(tc, timer_moved_earlier_fires_early);
    tcase_add_test(tc, timer_zero_and_restart);
    tcase_add_test(tc, timer_close_while_armed);
    suite_add_tcase(s, tc);
    return s;
}

HM_CHECK_MAIN(timer_suite)

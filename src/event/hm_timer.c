/*
 * hm_timer.c: see hm_timer.h.
 */
#include "hm_core.h"
#include "hm_timer.h"

static void
timer_fire(uv_timer_t *h)
{
    hm_timer_t *t = hm_container_of(h, hm_timer_t, uv);
    uint64_t    now = uv_now(h->loop);

    t->armed = 0;
    if (t->due == 0) {
        return;
    }
    if (now < t->due) {
        t->armed = t->due;
        uv_timer_start(h, timer_fire, t->due - now, 0);
        return;
    }
    t->due = 0;
    t->cb(h);
}

void
hm_timer_init(uv_loop_t *loop, hm_timer_t *t, void *data)
{
    uv_timer_init(loop, &t->uv);
    t->uv.data = data;
    t->cb = NULL;
    t->due = 0;
    t->armed = 0;
}

void
hm_timer_start(hm_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
    t->cb = cb;
    t->due = uv_now(t->uv.loop) + ms;
    if (t->due == 0) {
        t->due = 1;
    }
    if (t->armed == 0 || t->armed > t->due) {
        t->armed = t->due;
        uv_timer_start(&t->uv, timer_fire, ms, 0);
    }
}

void
hm_timer_stop(hm_timer_t *t)
{
    t->due = 0;
}

void
hm_timer_close(hm_timer_t *t, uv_close_cb cb)
{
    t->due = 0;
    t->armed = 0;
    uv_timer_stop(&t->uv);
    uv_close((uv_handle_t *) &t->uv, cb);
}

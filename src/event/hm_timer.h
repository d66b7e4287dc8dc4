/*
 * hm_timer.h: a one-shot timeout that is cheap to move.
 *
 * A proxied request starts and stops the same few timeouts several times
 * (head, upstream read, keep-alive idle); each uv_timer_start/stop is a
 * heap insert or removal.  hm_timer_t keeps the wanted deadline in a
 * field instead and leaves the uv timer armed: stopping only clears the
 * deadline, and moving it later does not touch the heap.  When the uv
 * timer fires early it re-arms itself for what is left; when the
 * deadline was cleared it just stops.  The cost is at most one spurious
 * wake-up per timeout period, never a late or a lost callback.
 *
 * Callbacks get &t->uv, so t->uv.data carries the owner as usual.
 */
#ifndef HM_TIMER_H
#define HM_TIMER_H

#include <stdint.h>
#include <uv.h>

typedef struct {
    uv_timer_t   uv;
    uv_timer_cb  cb;
    uint64_t     due;       /* loop time for cb; 0: stopped */
    uint64_t     armed;     /* loop time the uv timer fires; 0: not armed */
} hm_timer_t;

void hm_timer_init(uv_loop_t *loop, hm_timer_t *t, void *data);
/* Calls cb(&t->uv) once, ms from now (0: on the next loop iteration). */
void hm_timer_start(hm_timer_t *t, uv_timer_cb cb, uint64_t ms);
void hm_timer_stop(hm_timer_t *t);
void hm_timer_close(hm_timer_t *t, uv_close_cb cb);

#endif /* HM_TIMER_H */

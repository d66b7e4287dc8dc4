/*
 * hm_pool.h: region pools with a cleanup list (nginx).  Allocation is a
 * pointer bump inside fixed blocks; everything is released at once by
 * hm_pool_free() or rewound to a mark by hm_pool_reset_to() (Varnish
 * WS_Reset) between keep-alive requests.  Large allocations get their own
 * block.  hm_pool_alloc() returns NULL when memory is exhausted: callers on
 * the data path treat that as an expected event (close or 503).
 */
#ifndef HM_POOL_H
#define HM_POOL_H

typedef void (*hm_cleanup_pt)(void *data);

typedef struct hm_pool_block_s hm_pool_block_t;

struct hm_pool_s {
    hm_pool_block_t *head;      /* current block (newest first) */
    hm_pool_block_t *large;     /* blocks of single large allocations */
    size_t           block_size;
    struct hm_pool_cleanup_s *cleanups;
};

typedef struct {
    hm_pool_block_t *block;
    hm_pool_block_t *large;
    size_t           used;
    struct hm_pool_cleanup_s *cleanups;
} hm_pool_mark_t;

hm_pool_t *hm_pool_new(size_t block_size);
void hm_pool_free(hm_pool_t *pool);
void *hm_pool_alloc(hm_pool_t *pool, size_t n);   /* 16-byte aligned */
void *hm_pool_calloc(hm_pool_t *pool, size_t n);
char *hm_pool_strdup(hm_pool_t *pool, const char *s);
char *hm_pool_strndup(hm_pool_t *pool, const char *s, size_t n);
/* Runs fn(data) when the pool is freed (or reset past this point). */
int hm_pool_cleanup_add(hm_pool_t *pool, hm_cleanup_pt fn, void *data);
void hm_pool_mark(hm_pool_t *pool, hm_pool_mark_t *mark);
void hm_pool_reset_to(hm_pool_t *pool, const hm_pool_mark_t *mark);

#endif

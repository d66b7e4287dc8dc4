/*
 * hm_pool.c: region pools (see hm_pool.h).
 */
#include "hm_core.h"
#include "hm_pool.h"

struct hm_pool_block_s {
    hm_pool_block_t *next;
    size_t           size;   /* usable bytes after the header */
    size_t           used;
    /* data follows, 16-byte aligned */
} __attribute__((aligned(16)));

struct hm_pool_cleanup_s {
    struct hm_pool_cleanup_s *next;
    hm_cleanup_pt             fn;
    void                     *data;
};

#define BLOCK_DATA(b) ((char *) (b) + sizeof(hm_pool_block_t))

static hm_pool_block_t *
block_new(size_t size)
{
    hm_pool_block_t *b = malloc(sizeof(*b) + size);
    if (b == NULL) {
        return NULL;
    }
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

hm_pool_t *
hm_pool_new(size_t block_size)
{
    hm_pool_t *p = malloc(sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->head = NULL;
    p->large = NULL;
    p->block_size = block_size < 256 ? 256 : block_size;
    p->cleanups = NULL;
    return p;
}

static void
run_cleanups(hm_pool_t *pool, struct hm_pool_cleanup_s *upto)
{
    while (pool->cleanups != NULL && pool->cleanups != upto) {
        struct hm_pool_cleanup_s *c = pool->cleanups;
        pool->cleanups = c->next;
        c->fn(c->data);
    }
}

void
hm_pool_free(hm_pool_t *pool)
{
    hm_pool_block_t *b, *next;

    if (pool == NULL) {
        return;
    }
    run_cleanups(pool, NULL);
    for (b = pool->head; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    for (b = pool->large; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(pool);
}

void *
hm_pool_alloc(hm_pool_t *pool, size_t n)
{
    hm_pool_block_t *b = pool->head;
    void *p;

    n = (n + 15) & ~(size_t) 15;
    if (b == NULL || b->size - b->used < n) {
        if (n > pool->block_size / 4) {
            /* A large allocation gets a block of its own, so the current
             * block stays in use. */
            hm_pool_block_t *big = block_new(n);
            if (big == NULL) {
                return NULL;
            }
            big->used = n;
            big->next = pool->large;
            pool->large = big;
            return BLOCK_DATA(big);
        }
        b = block_new(n > pool->block_size ? n : pool->block_size);
        if (b == NULL) {
            return NULL;
        }
        b->next = pool->head;
        pool->head = b;
    }
    p = BLOCK_DATA(b) + b->used;
    b->used += n;
    return p;
}

void *
hm_pool_calloc(hm_pool_t *pool, size_t n)
{
    void *p = hm_pool_alloc(pool, n);
    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}

char *
hm_pool_strndup(hm_pool_t *pool, const char *s, size_t n)
{
    char *d = hm_pool_alloc(pool, n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *
hm_pool_strdup(hm_pool_t *pool, const char *s)
{
    return hm_pool_strndup(pool, s, strlen(s));
}

int
hm_pool_cleanup_add(hm_pool_t *pool, hm_cleanup_pt fn, void *data)
{
    struct hm_pool_cleanup_s *c = hm_pool_alloc(pool, sizeof(*c));
    if (c == NULL) {
        return HM_ERROR;
    }
    c->fn = fn;
    c->data = data;
    c->next = pool->cleanups;
    pool->cleanups = c;
    return HM_OK;
}

void
hm_pool_mark(hm_pool_t *pool, hm_pool_mark_t *mark)
{
    mark->block = pool->head;
    mark->large = pool->large;
    mark->used = pool->head ? pool->head->used : 0;
    mark->cleanups = pool->cleanups;
}

void
hm_pool_reset_to(hm_pool_t *pool, const hm_pool_mark_t *mark)
{
    hm_pool_block_t *b;

    run_cleanups(pool, mark->cleanups);
    /* Free every block allocated after the mark. */
    while (pool->large != NULL && pool->large != mark->large) {
        b = pool->large;
        pool->large = b->next;
        free(b);
    }
    while (pool->head != NULL && pool->head != mark->block) {
        b = pool->head;
        pool->head = b->next;
        free(b);
    }
    if (pool->head != NULL) {
        pool->head->used = mark->used;
    }
}

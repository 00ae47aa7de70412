/* alloc.c — allocation wrappers with failure injection for tests (see alloc.h). */
#include "alloc.h"

#include "raftcask.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* -1: injection off; otherwise the number of allocations still allowed to succeed. */
static _Atomic long fail_budget = -1;
static _Atomic unsigned long alloc_count;
static _Atomic unsigned long failure_count;

static int should_fail(void)
{
    long budget = atomic_load_explicit(&fail_budget, memory_order_relaxed);
    if (budget < 0)
        return 0;
    if (budget == 0) {
        atomic_fetch_add_explicit(&failure_count, 1, memory_order_relaxed);
        return 1;
    }
    atomic_store_explicit(&fail_budget, budget - 1, memory_order_relaxed);
    return 0;
}

void *rc_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    void *p = malloc(size ? size : 1);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void *rc_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void *rc_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = realloc(ptr, size ? size : 1);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void rc_free(void *ptr)
{
    free(ptr);
}

char *rc_memdup(const void *src, size_t len)
{
    char *p = rc_malloc(len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, src, len);
    p[len] = '\0';
    return p;
}

void rc_alloc_fail_after(long n)
{
    atomic_store(&fail_budget, n);
}

unsigned long rc_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

unsigned long rc_alloc_failures(void)
{
    return atomic_load(&failure_count);
}

int rc_reserve(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = rc_realloc(*arr, ncap * elem);
    if (!p)
        return RC_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

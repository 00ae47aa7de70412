/*
 * alloc.h — the one allocator every raftcask module goes through.
 *
 * Why: library-style code must survive an allocation failure without leaking or corrupting
 * state (STYLE habit 7), and we prove that by tests that make the Nth allocation fail
 * (STYLE habit 10). Routing every allocation through these wrappers is what makes that
 * injection possible. Semantics are exactly those of malloc/calloc/realloc/free.
 */
#ifndef RC_COMMON_ALLOC_H
#define RC_COMMON_ALLOC_H

#include <stddef.h>

void *rc_malloc(size_t size);
void *rc_calloc(size_t count, size_t size);
void *rc_realloc(void *ptr, size_t size);
void rc_free(void *ptr);
/* Returns a rc_malloc'ed copy of len bytes plus a terminating NUL, or NULL. */
char *rc_memdup(const void *src, size_t len);
/*
 * Grows the array *arr (of *cap elements of elem bytes) so that it holds at least need
 * elements, doubling its capacity (16 at first). 0, or RC_ENOMEM with *arr unchanged.
 */
int rc_reserve(void **arr, size_t *cap, size_t need, size_t elem);

/*
 * Fault injection (tests only). After rc_alloc_fail_after(n), the next n allocations
 * succeed and every later one fails (returns NULL) until rc_alloc_fail_after(-1) turns
 * injection off. rc_alloc_count() counts successful allocations since start, so a test can
 * first measure how many allocations an operation makes and then fail each one in turn.
 * The counters are process-wide and not thread-safe: inject only in single-threaded code.
 */
void rc_alloc_fail_after(long n);
unsigned long rc_alloc_count(void);
/* Number of allocations made to fail since start; lets a test know injection fired. */
unsigned long rc_alloc_failures(void);

#endif

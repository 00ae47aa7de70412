/*
 * bench/keydir.c — memory and speed probe of the key directory.
 *
 * Inserts N random 16-byte keys (default 1,000,000; argv[1] overrides) in random order, then
 * measures: heap bytes per key by mallinfo2() (glibc's own overhead included) and by
 * keydir_memory(), both net of the 16 key bytes; random gets, random inserts and in-place
 * updates per second; the cost of a clone, of the first writes after it (path copying), and
 * of freeing the clone. Prints "bench: keydir <metric> <value> <unit>" lines.
 */
#include "common/alloc.h"
#include "raftcask.h"
#include "store/keydir.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_BYTES 16

static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* arena chunks in use (with headers) + mmapped blocks */
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench keydir: %s: %s\n", what, rc_strerror(rc));
    exit(1);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
    uint64_t rng = 42;
    unsigned char *keys = malloc(n * KEY_BYTES);
    size_t *order = malloc(n * sizeof *order);
    if (!keys || !order)
        return 1;
    for (size_t i = 0; i < n * KEY_BYTES; i += 8) {
        uint64_t r = splitmix(&rng);
        memcpy(keys + i, &r, 8);
    }
    /* A random permutation for the lookups, so they do not follow insertion order. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = splitmix(&rng) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }

    struct keydir *kd;
    int rc = keydir_new(&kd);
    if (rc)
        die("keydir_new", rc);
    size_t heap_before = heap_in_use();
    struct kd_meta meta = {1, 0, 100, 1, 0};
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        meta.offset = (uint32_t)i;
        meta.revision = i;
        if ((rc = keydir_put(kd, keys + i * KEY_BYTES, KEY_BYTES, &meta, NULL, NULL)))
            die("keydir_put", rc);
    }
    double t_insert = now_s() - t0;
    size_t heap_after = heap_in_use();
    if (keydir_count(kd) != n)
        die("count mismatch", RC_ECORRUPT);

    double heap_per_key = (double)(heap_after - heap_before) / (double)n - KEY_BYTES;
    double counted_per_key = (double)keydir_memory(kd) / (double)n - KEY_BYTES;
    printf("bench: keydir keys %zu count\n", n);
    printf("bench: keydir heap_overhead_per_key %.1f bytes\n", heap_per_key);
    printf("bench: keydir counted_overhead_per_key %.1f bytes\n", counted_per_key);
    printf("bench: keydir random_insert %.2f Mops/s\n", (double)n / t_insert / 1e6);

    /* The keys in lookup order, so reading the probe is sequential: in the server the key
     * being looked up sits in the just-parsed request buffer, already in cache. */
    unsigned char *probes = malloc(n * KEY_BYTES);
    if (!probes)
        return 1;
    for (size_t i = 0; i < n; i++)
        memcpy(probes + i * KEY_BYTES, keys + order[i] * KEY_BYTES, KEY_BYTES);

    /* Three passes each, reporting the first and the best: the machine is shared, and the
     * best pass is the one least disturbed by other work. */
    struct kd_meta got;
    uint64_t checksum = 0;
    double get_first = 0, get_best = 0, update_first = 0, update_best = 0;
    for (int pass = 0; pass < 3; pass++) {
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            if ((rc = keydir_get(kd, probes + i * KEY_BYTES, KEY_BYTES, &got)))
                die("keydir_get", rc);
            checksum += got.offset;
        }
        double rate = (double)n / (now_s() - t0) / 1e6;
        get_first = pass == 0 ? rate : get_first;
        get_best = rate > get_best ? rate : get_best;

        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            meta.revision = n * (size_t)(pass + 1) + i;
            if ((rc = keydir_put(kd, probes + i * KEY_BYTES, KEY_BYTES, &meta, NULL, NULL)))
                die("keydir_put update", rc);
        }
        rate = (double)n / (now_s() - t0) / 1e6;
        update_first = pass == 0 ? rate : update_first;
        update_best = rate > update_best ? rate : update_best;
    }
    printf("bench: keydir random_get %.2f Mops/s\n", get_first);
    printf("bench: keydir random_get_best_of_3 %.2f Mops/s\n", get_best);
    printf("bench: keydir random_update %.2f Mops/s\n", update_first);
    printf("bench: keydir random_update_best_of_3 %.2f Mops/s\n", update_best);

    /* Clone: O(1); then the first writes pay for copying their paths. */
    struct keydir *clone;
    const int clones = 1000;
    t0 = now_s();
    for (int i = 0; i < clones; i++) {
        if ((rc = keydir_clone(kd, &clone)))
            die("keydir_clone", rc);
        keydir_free(clone);
    }
    double t_clone = (now_s() - t0) / clones;
    printf("bench: keydir clone_and_free_unshared %.0f ns\n", t_clone * 1e9);

    /* A snapshot's typical life: clone, one write (copies the root-to-leaf path), free. */
    t0 = now_s();
    for (int i = 0; i < clones; i++) {
        if ((rc = keydir_clone(kd, &clone)))
            die("keydir_clone", rc);
        meta.revision = 2 * n + (size_t)i;
        if ((rc = keydir_put(kd, probes + (size_t)i * KEY_BYTES, KEY_BYTES, &meta, NULL, NULL)))
            die("keydir_put after clone", rc);
        keydir_free(clone);
    }
    printf("bench: keydir clone_write_free_cycle %.2f us\n", (now_s() - t0) / clones * 1e6);

    if ((rc = keydir_clone(kd, &clone)))
        die("keydir_clone", rc);
    size_t mem_before_writes = keydir_memory(kd);
    const size_t writes = n / 10;
    t0 = now_s();
    for (size_t i = 0; i < writes; i++) {
        meta.revision = 4 * n + i;
        if ((rc = keydir_put(kd, probes + i * KEY_BYTES, KEY_BYTES, &meta, NULL, NULL)))
            die("keydir_put after clone", rc);
    }
    double t_cow = now_s() - t0;
    printf("bench: keydir update_after_clone %.2f Mops/s\n", (double)writes / t_cow / 1e6);
    printf("bench: keydir cow_copied_after_%zu_updates %.1f MiB\n", writes,
           (double)(keydir_memory(kd) - mem_before_writes) / 1048576.0);
    t0 = now_s();
    keydir_free(clone);
    printf("bench: keydir free_clone_after_divergence %.2f ms\n", (now_s() - t0) * 1e3);

    /* Deletes of every other key, then the memory left. */
    t0 = now_s();
    for (size_t i = 0; i < n; i += 2)
        if ((rc = keydir_delete(kd, probes + i * KEY_BYTES, KEY_BYTES, NULL)))
            die("keydir_delete", rc);
    double t_delete = now_s() - t0;
    printf("bench: keydir random_delete %.2f Mops/s\n", (double)((n + 1) / 2) / t_delete / 1e6);
    printf("bench: keydir counted_overhead_per_key_after_half_deleted %.1f bytes\n",
           (double)keydir_memory(kd) / (double)keydir_count(kd) - KEY_BYTES);

    t0 = now_s();
    keydir_free(kd);
    printf("bench: keydir free %.2f ms\n", (now_s() - t0) * 1e3);
    printf("bench: keydir checksum %llu units\n", (unsigned long long)(checksum % 1000));
    free(keys);
    free(probes);
    free(order);
    return 0;
}

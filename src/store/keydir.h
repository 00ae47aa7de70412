/*
 * keydir.h — the store's in-memory key directory: an ordered map from key bytes to the
 * location of the newest record of that key.
 *
 * Design (see the comment at the top of keydir.c for the full argument):
 *  - A B+tree whose nodes are fixed-size pages; leaf pages keep keys inline next to their
 *    metadata so that a key costs at most 64 bytes of memory beyond its own bytes, averaged
 *    over a tree built by random inserts.
 *  - Nodes carry an atomic reference count. keydir_clone() is O(1): the clone shares the root.
 *    A writer copies a shared node before changing it (path copying), so a clone is a frozen
 *    view that never sees later writes, and the original never sees writes to the clone.
 *  - A clone may be read (get, scan, sample) and freed on another thread while the original
 *    is written on its own thread. A single keydir handle is NOT thread-safe: the caller
 *    serialises calls on one handle.
 *  - Every operation either completes or, on allocation failure (RC_ENOMEM), leaves the map's
 *    contents unchanged and leaks nothing.
 *
 * Keys are arbitrary bytes (may contain NUL), compared with memcmp then by length (shorter
 * first), length 0 to KEYDIR_MAX_KEY. Memory given to a function is copied; pointers handed
 * to a scan callback are valid only during that callback.
 */
#ifndef RC_STORE_KEYDIR_H
#define RC_STORE_KEYDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYDIR_MAX_KEY (1u << 20) /* 1 MiB; the server's --max-key-size is far below */

/* Where the newest record of a key lives, and what the store needs without reading it. */
struct kd_meta {
    uint32_t file_id;   /* data file number */
    uint32_t offset;    /* byte offset of the record's header in that file */
    uint32_t value_len; /* length of the value in bytes */
    uint64_t revision;  /* revision that wrote the record */
    int64_t expiry_ms;  /* absolute expiry, ms since the Unix epoch; 0 = never */
};

enum kd_bound_kind {
    KD_BOUND_OPEN = 0,      /* no bound on this side */
    KD_BOUND_INCLUSIVE = 1, /* keys equal to the bound are included */
    KD_BOUND_EXCLUSIVE = 2, /* keys equal to the bound are excluded */
};

struct kd_bound {
    enum kd_bound_kind kind;
    const void *key; /* ignored for KD_BOUND_OPEN */
    size_t len;
};

struct keydir;

/* Creates an empty map. 0, or RC_ENOMEM. */
int keydir_new(struct keydir **out);
/* Frees the handle; nodes still shared with clones stay alive until those are freed too. */
void keydir_free(struct keydir *kd);
/* O(1): *out is a new handle with the same contents, isolated from later writes to either.
 * 0, or RC_ENOMEM. */
int keydir_clone(const struct keydir *kd, struct keydir **out);

/* 0 and *out filled if the key exists, RC_ENOTFOUND otherwise. out may be NULL. */
int keydir_get(const struct keydir *kd, const void *key, size_t len, struct kd_meta *out);
/*
 * Inserts or replaces. If the key existed, *old (when not NULL) receives its previous meta
 * and *replaced (when not NULL) is set true; else *replaced is false.
 * 0, RC_EINVAL (key longer than KEYDIR_MAX_KEY), or RC_ENOMEM (map unchanged).
 */
int keydir_put(struct keydir *kd, const void *key, size_t len, const struct kd_meta *meta,
               struct kd_meta *old, bool *replaced);
/* Removes the key; *old (when not NULL) receives its meta. 0, RC_ENOTFOUND, or RC_ENOMEM
 * (possible when the removal must copy nodes shared with a clone; map unchanged). */
int keydir_delete(struct keydir *kd, const void *key, size_t len, struct kd_meta *old);

/* Number of keys. O(1). */
size_t keydir_count(const struct keydir *kd);
/* Bytes allocated for the nodes of this map and of every clone sharing nodes with it
 * (one shared counter per family of clones). O(1). */
size_t keydir_memory(const struct keydir *kd);

/*
 * Calls fn for each key within [lo, hi] (bounds as given), in ascending key order, or in
 * descending order when reverse is true. fn returns 0 to go on, anything else to stop; that
 * value is then returned by keydir_scan (0 when the scan ran to the end).
 * The map must not be modified through this handle during the scan.
 */
typedef int (*kd_scan_fn)(const void *key, size_t len, const struct kd_meta *meta, void *ctx);
int keydir_scan(const struct keydir *kd, const struct kd_bound *lo, const struct kd_bound *hi,
                bool reverse, kd_scan_fn fn, void *ctx);

/*
 * Picks a key by a random descent driven by r (any 64-bit value), and calls fn once with it.
 * Not exactly uniform, but every key can be picked. Returns fn's return value, or
 * RC_ENOTFOUND when the map is empty. Used for RANDOMKEY and for sampling expired keys.
 */
int keydir_sample(const struct keydir *kd, uint64_t r, kd_scan_fn fn, void *ctx);

/* Checks every structural invariant (ordering, fill, separators, counts, refcounts > 0);
 * returns 0 or a negative code after printing the first violation to stderr. Tests only. */
int keydir_check(const struct keydir *kd);

#endif

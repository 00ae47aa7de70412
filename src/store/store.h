/*
 * store.h — raftcask's Bitcask storage engine.
 *
 * A store is a directory of append-only data files (NNNNNN.data) holding CRC-checked
 * records, an ordered in-memory key directory that points at the newest record of each key,
 * hint files (NNNNNN.hint) that let open skip reading closed data files, and a LOCK file.
 * The store knows nothing of Raft or sockets: the caller supplies each write's revision
 * (later, the Raft index) and reads the highest one back after a restart
 * (rc_store_applied_revision) to know which writes the store already holds.
 *
 * Conventions (as in lmdb.h): every function returns 0 or a negative RC_E* code from
 * raftcask.h; results come back through out-parameters. A store handle may be used from
 * several threads (calls are serialised by an internal mutex). Callbacks run with that mutex
 * held and must not call back into the same store.
 *
 * Durability: a write is in the operating system's page cache (it survives the process being
 * killed) when the call returns; it is on disk after rc_store_sync(). After a machine crash,
 * open keeps the longest valid prefix of the last data file.
 */
#ifndef RC_STORE_STORE_H
#define RC_STORE_STORE_H

#include "keydir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_store;
struct rc_store_view;

/* Reported by rc_store_open when repair dropped corrupt bytes (see options.repair). */
typedef void (*rc_store_repair_fn)(const char *file, uint64_t offset, uint64_t length, void *ctx);

struct rc_store_options {
    uint64_t max_file_bytes;  /* roll the active data file past this size; default 64 MiB */
    uint32_t max_key_bytes;   /* default 64 KiB; larger keys are RC_ETOOBIG */
    uint32_t max_value_bytes; /* default 512 MiB; larger values are RC_ETOOBIG */
    /*
     * A corrupt record followed by valid ones (bit rot) makes open fail with RC_ECORRUPT and
     * a log line naming the file and offset. With repair, open drops the corrupt bytes,
     * reports each dropped range through on_repair (and the log), and goes on.
     */
    bool repair;
    rc_store_repair_fn on_repair;
    void *on_repair_ctx;
    /*
     * Atomic revisions: a revision's writes count only once rc_store_commit_revision has
     * ended it. Open drops the records written after the last commit (an incomplete
     * revision, cut short by a crash), so the store reopens exactly at the last complete
     * revision. rc_store_applied_revision then reports the last committed revision, and a
     * merge can only start between revisions (RC_EBUSY otherwise). A store opened once with
     * this option must always be opened with it: writes made without it are never committed
     * and would be dropped by the next open with it. Opening a store that holds no commit
     * (written without the option, or new) adopts its contents as complete. Default false.
     */
    bool atomic_revisions;
    /* Wall clock used to hide expired keys; default rc_now_ms. Tests inject their own. */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
};

/* Fills o with the defaults above. */
void rc_store_options_init(struct rc_store_options *o);

/*
 * Opens (creating if needed) the store in dir. opts may be NULL for defaults.
 * Takes an exclusive lock on dir/LOCK: a second open of the same directory, from this
 * process or another, fails with RC_ELOCKED. On success *out must be closed with
 * rc_store_close. Errors: RC_ELOCKED, RC_EIO, RC_ECORRUPT, RC_ENOMEM, RC_EINVAL.
 */
int rc_store_open(const char *dir, const struct rc_store_options *opts, struct rc_store **out);

/*
 * Waits for background work (a running merge is abandoned cleanly), syncs, writes the hint
 * of the active file, releases the lock and frees the handle, even when it returns an error
 * (the error says the final sync or hint failed; the data written before is still valid).
 * Views must be closed first.
 */
int rc_store_close(struct rc_store *s);

/*
 * Renames the open store's directory to dir (which must not exist, on the same file
 * system) and goes on there: a running merge is abandoned and a running hint write waited
 * for first, then files are made in dir. The rename is not synced: sync dir's parent.
 * Views must be closed first. On failure the store stays where it was.
 */
int rc_store_move(struct rc_store *s, const char *dir);

/* Waits until the store's worker has no job queued or running (hints of sealed files). */
void rc_store_wait_idle(struct rc_store *s);
/* Whether it has none now (rc_store_move would not wait). */
bool rc_store_idle(struct rc_store *s);
/* Asks a running merge to stop at its next check (it leaves the store as it was). */
void rc_store_merge_cancel(struct rc_store *s);

/* A growable byte buffer owned by the caller; the store reallocs data as needed.
 * Initialise to {0}; free data with rc_free when done. */
struct rc_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* What the store knows of one key besides its value. */
struct rc_item_meta {
    uint64_t revision;
    int64_t expiry_ms; /* 0 = never */
    uint32_t value_len;
};

/*
 * Copies the value of key into value (when not NULL) and its meta into meta (when not NULL).
 * RC_ENOTFOUND if absent or expired; RC_ECORRUPT if the record fails its CRC.
 */
int rc_store_get(struct rc_store *s, const void *key, size_t klen, struct rc_buf *value,
                 struct rc_item_meta *meta);
/* The same, judging expiry at now_ms instead of the store's clock: applying a replicated
 * entry must decide "expired or not" at the entry's time on every node alike. */
int rc_store_get_at(struct rc_store *s, const void *key, size_t klen, int64_t now_ms,
                    struct rc_buf *value, struct rc_item_meta *meta);

/*
 * Writes key = value with absolute expiry (ms since epoch, 0 = never) at revision.
 * Revisions are the caller's; the store keeps the highest it has seen.
 * RC_ETOOBIG, RC_EIO (the store then refuses further writes: RC_ECLOSED), RC_ENOMEM.
 */
int rc_store_put(struct rc_store *s, const void *key, size_t klen, const void *value, size_t vlen,
                 int64_t expiry_ms, uint64_t revision);

/* Writes a tombstone for key at revision. RC_ENOTFOUND (nothing written) if the key is
 * absent; an expired key is still present here, so that its deletion is recorded. */
int rc_store_delete(struct rc_store *s, const void *key, size_t klen, uint64_t revision);

/* Deletes every key at once (one record), at revision. */
int rc_store_clear(struct rc_store *s, uint64_t revision);

/* Records that every write up to revision is held, without changing any key (used when the
 * caller applied an entry that wrote nothing). With atomic_revisions this is
 * rc_store_commit_revision. */
int rc_store_mark_revision(struct rc_store *s, uint64_t revision);

/*
 * Ends revision: with atomic_revisions, appends the commit record (32 bytes) that makes
 * every write made since the previous commit count, and raises the applied revision to
 * revision. Call it once after the last write of each revision, also when the revision
 * wrote nothing; never after a revision whose writes failed part-way (the store must then
 * be closed: reopening drops the part that was written). A repeated call with nothing
 * written in between is a no-op. RC_EINVAL if a write since the last commit carries a
 * revision above revision; RC_EIO, RC_ECLOSED. Without atomic_revisions it does nothing.
 */
int rc_store_commit_revision(struct rc_store *s, uint64_t revision);

/* The highest revision of any write (put, delete, clear, mark) held by the store; 0 if none.
 * With atomic_revisions: the last committed revision (writes of a revision not yet
 * committed are visible to reads, but do not count here). */
uint64_t rc_store_applied_revision(struct rc_store *s);

/* A key range for scans; see keydir.h for bound kinds. */
struct rc_store_range {
    struct kd_bound lo, hi;
    bool reverse;         /* descending key order */
    size_t limit;         /* at most this many keys; 0 = no limit */
    bool with_values;     /* read values (else the callback gets value NULL, vlen = value size) */
    bool include_expired; /* also report keys whose expiry has passed */
    int64_t now_ms;       /* judge expiry at this time; 0 = the store's clock */
};

/* Called per key in order; return 0 to go on, non-zero to stop (that value is returned).
 * Pointers are valid only during the call. Expired keys are skipped. */
typedef int (*rc_store_scan_fn)(const void *key, size_t klen, const void *value, size_t vlen,
                                const struct rc_item_meta *meta, void *ctx);

int rc_store_scan(struct rc_store *s, const struct rc_store_range *range, rc_store_scan_fn fn,
                  void *ctx);
/* Sets r->lo and r->hi to select the keys that start with prefix (all keys when plen == 0).
 * succ must hold plen bytes; r->hi may point into it, so it must outlive the scan. */
void rc_store_range_prefix(struct rc_store_range *r, const void *prefix, size_t plen,
                           unsigned char *succ);
/* Scan of the keys that start with prefix (all keys when plen == 0). */
int rc_store_scan_prefix(struct rc_store *s, const void *prefix, size_t plen, bool reverse,
                         size_t limit, bool with_values, rc_store_scan_fn fn, void *ctx);

/*
 * Calls fn once with a key picked by a random descent driven by r (expired keys included;
 * value NULL). RC_ENOTFOUND when the store is empty. For RANDOMKEY-like sampling.
 */
int rc_store_sample(struct rc_store *s, uint64_t r, rc_store_scan_fn fn, void *ctx);

/* Number of keys, expired ones not yet deleted included (as Redis's DBSIZE). */
size_t rc_store_count(struct rc_store *s);

struct rc_store_stats {
    uint64_t keys;             /* as rc_store_count */
    uint64_t keys_with_expiry; /* keys that have an expiry set */
    uint64_t live_bytes;       /* bytes of records that keys point at */
    uint64_t dead_bytes;       /* bytes of superseded records, tombstones and markers */
    uint64_t files;            /* data files */
    uint64_t keydir_bytes;     /* memory of the key directory (shared nodes counted once) */
    uint64_t applied_revision;
    uint64_t merges;        /* merges completed since open */
    uint64_t merges_failed; /* merges started since open that did not complete */
};
int rc_store_stats(struct rc_store *s, struct rc_store_stats *out);

/* fdatasync the active data file: every write made before the call is then on disk. */
int rc_store_sync(struct rc_store *s);

/*
 * Merge: rewrites the live records of every closed data file into new files (with hints),
 * swaps them in and deletes the old files, on the store's worker thread while gets and puts
 * go on. rc_store_merge_start returns at once (RC_EBUSY if a merge is running);
 * rc_store_merge_wait blocks until it ends and returns its result; rc_store_merge does both.
 * A crash at any point leaves a store that opens with the same contents.
 */
int rc_store_merge_start(struct rc_store *s);
int rc_store_merge_wait(struct rc_store *s);
int rc_store_merge(struct rc_store *s);

/*
 * A view is a frozen, consistent copy of the store taken in O(1) (a copy-on-write clone of
 * the key directory; the data files it needs stay readable until it is closed, even if a
 * merge deletes them). It may be scanned from another thread while the store is written.
 * Later snapshots are serialised from a view.
 */
int rc_store_view_open(struct rc_store *s, struct rc_store_view **out);
uint64_t rc_store_view_revision(const struct rc_store_view *v);
int rc_store_view_scan(struct rc_store_view *v, const struct rc_store_range *range,
                       rc_store_scan_fn fn, void *ctx);
void rc_store_view_close(struct rc_store_view *v);

/* Test hooks: called at named points of merge and roll so tests can crash the process
 * there. NULL (the default) disables them. */
typedef void (*rc_store_hook_fn)(const char *point, void *ctx);
void rc_store_set_test_hook(rc_store_hook_fn fn, void *ctx);

#endif

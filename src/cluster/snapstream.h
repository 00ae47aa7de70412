/*
 * snapstream.h — the state machine's snapshot stream ("state.bin").
 *
 * A snapshot is the store's whole contents (every key, expired ones included, with value,
 * expiry and revision) plus the store's applied revision and an opaque "extra" blob chosen by
 * the caller (the cluster keeps its member address directory there), as one zstd-compressed,
 * CRC-32C-checked stream. The layout is drawn at the top of snapshot.c and in docs/DESIGN.md.
 *
 * Raft snapshots and RAFTSNAPSHOT backups are written from a store view (store.h), on a
 * worker thread, while the store goes on taking writes; they are read back record by record
 * with a pull reader, in constant memory (plus the largest record), or restored into a fresh
 * store directory that replaces the old one crash-safely.
 *
 * Conventions: functions return 0 or a negative RC_E* code (raftcask.h). A damaged stream
 * (truncated, bit-flipped, lengths out of range, trailing bytes) is RC_ECORRUPT, never a crash.
 */
#ifndef RC_CLUSTER_SNAPSHOT_H
#define RC_CLUSTER_SNAPSHOT_H

#include "store/store.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SNAPSHOT_VERSION 1
/* Largest key, value and extra blob a reader accepts (the store's own defaults are lower). */
#define SNAPSHOT_MAX_KEY_BYTES   (16u * 1024 * 1024)
#define SNAPSHOT_MAX_VALUE_BYTES (1024u * 1024 * 1024)
#define SNAPSHOT_MAX_EXTRA_BYTES (64u * 1024 * 1024)

/* What a written stream holds (filled by the writers when not NULL). */
struct snapshot_info {
    uint64_t revision;           /* the view's applied revision, as written in the header */
    uint64_t records;            /* keys written */
    uint64_t uncompressed_bytes; /* bytes of the stream before compression */
    uint64_t compressed_bytes;   /* bytes pushed to the sink (the file's size) */
    uint32_t crc;                /* CRC-32C of the uncompressed content, as in the trailer */
};

/* Receives compressed bytes in order; returns 0, or a negative RC_E* code to abort. */
typedef int (*snapshot_sink_fn)(void *ctx, const void *buf, size_t len);

/*
 * Writes the view's contents (all keys in key order, expired ones included, so that a replica
 * restored from it is identical) with its revision and extra_len bytes of extra to sink.
 * Blocking; touches only the view (never the store handle), so it may run on any thread
 * while the store is written. Memory stays constant whatever the store's size. Returns 0,
 * the sink's error, a view scan error (RC_ECORRUPT, RC_EIO), RC_ENOMEM, RC_ETOOBIG (a key or
 * value beyond SNAPSHOT_MAX_*) or RC_EINVAL (extra too big). On error the bytes already
 * pushed are not a valid stream. cancel (may be NULL): once another thread sets it, the
 * writer stops at the next record with RC_ECLOSED.
 */
int snapshot_write_view(struct rc_store_view *v, const void *extra, size_t extra_len,
                        snapshot_sink_fn sink, void *sink_ctx, struct snapshot_info *info,
                        const atomic_int *cancel);

/* The same into the file path: written to path.tmp, fsynced, renamed over path, directory
 * fsynced. On error path is untouched and path.tmp removed. */
int snapshot_write_file(struct rc_store_view *v, const void *extra, size_t extra_len,
                        const char *path, struct snapshot_info *info, const atomic_int *cancel);

/* ============================== reading ============================== */

struct snapshot_reader;

struct snapshot_header {
    uint32_t version;
    uint64_t revision; /* the store's applied revision when the snapshot was taken */
    uint64_t count;    /* records that follow */
    const void *extra; /* the caller's blob; valid until snapshot_reader_close */
    size_t extra_len;
};

/* Opens path and reads its header. RC_ENOTFOUND (no such file), RC_EIO, RC_ECORRUPT
 * (not a snapshot, or a damaged header), RC_ENOMEM. Close *out with snapshot_reader_close. */
int snapshot_reader_open(const char *path, struct snapshot_reader **out);

/* The header read by open. */
void snapshot_reader_header(const struct snapshot_reader *r, struct snapshot_header *out);

/*
 * Reads the next record: returns 1 and sets the out-parameters (key and value point into
 * the reader, valid until the next call or close); 0 at the end, once the trailer's count
 * and CRC and the end of the compressed stream are verified; RC_ECORRUPT, RC_EIO or
 * RC_ENOMEM on error (further calls return the same error). Records come in key order.
 */
int snapshot_reader_next(struct snapshot_reader *r, const void **key, size_t *klen,
                         const void **value, size_t *vlen, int64_t *expiry_ms, uint64_t *revision);

void snapshot_reader_close(struct snapshot_reader *r);

/* ============================== restoring ============================== */

/*
 * Replaces the store in cask_dir with the snapshot at path. The caller's store on cask_dir
 * must be closed (RC_ELOCKED otherwise). Builds a fresh store in cask_dir.new (every record
 * with its expiry and revision, then the header's revision marked so that
 * rc_store_applied_revision equals it), syncs it, marks it complete, then swaps it in.
 * A damaged snapshot fails (RC_ECORRUPT) before the swap and leaves cask_dir untouched.
 * opts may be NULL. On success *revision (when not NULL) is the snapshot's revision and
 * *extra (when not NULL) a rc_malloc'ed copy of the extra blob (caller frees with rc_free;
 * NULL when empty) of *extra_len bytes. Calls snapshot_restore_recover first.
 */
int snapshot_restore(const char *path, const char *cask_dir, const struct rc_store_options *opts,
                     uint64_t *revision, void **extra, size_t *extra_len);

/*
 * The same in steps, for a node that keeps serving from its open store meanwhile:
 *   snapshot_restore_build (any thread) builds the store from r in cask_dir.new (what an
 *     abandoned build left there is removed first), syncs it and marks it complete; *out
 *     receives it, open. The store open in cask_dir is not touched. cancel, when set, stops
 *     it at the next record (RC_ECLOSED). A crash from here on is finished by
 *     snapshot_restore_recover: the restart finds the new store.
 *   snapshot_restore_swap (the thread that owns both stores, no view open on old) moves the
 *     old store (open, or NULL: closed or none) to cask_dir.old and the built one to
 *     cask_dir, both still open; quick. On failure both are back where they were, when the
 *     renames allow. A cask_dir.old left by a finish that failed is removed first.
 *   snapshot_restore_finish (any thread) closes the old store and removes cask_dir.old;
 *     no other swap may run meanwhile.
 *   snapshot_restore_abandon closes a built store that will not be swapped in and removes
 *     cask_dir.new, its COMPLETE marker first (durably). A complete build merely closed is
 *     swapped in by snapshot_restore_recover at the next start.
 */
int snapshot_restore_build(struct snapshot_reader *r, const char *cask_dir,
                           const struct rc_store_options *opts, const atomic_int *cancel,
                           struct rc_store **out);
int snapshot_restore_swap(const char *cask_dir, struct rc_store *old, struct rc_store *built);
int snapshot_restore_finish(const char *cask_dir, struct rc_store *old);
void snapshot_restore_abandon(const char *cask_dir, struct rc_store *built);

/*
 * Finishes or rolls back a restore interrupted by a crash, leaving cask_dir either the old
 * store or the restored one, whole. The node must call it before opening its store on
 * cask_dir. Returns 0 (also when there is nothing to do) or RC_EIO.
 */
int snapshot_restore_recover(const char *cask_dir);

/* Test hook: called at named points of snapshot_restore ("restore:built",
 * "restore:complete", "restore:old-moved", "restore:swapped", "restore:done", and
 * "restore:unmarked" once a complete build being removed lost its marker) so that tests can
 * crash the process there. NULL (the default) disables it. */
typedef void (*snapshot_hook_fn)(const char *point, void *ctx);
void snapshot_set_test_hook(snapshot_hook_fn fn, void *ctx);

/* ============================== printing ============================== */

/*
 * Prints every record of the snapshot at path to out as a RESP command for
 * `redis-cli --pipe`: SET key value, plus PXAT ms when the key has an expiry. Also reads
 * bitraft's and kvnode's gzip state.bin (u64-LE length-prefixed key and value, repeated),
 * recognised by the gzip magic. Returns 0, RC_ECORRUPT, RC_EIO (also for a failed write to
 * out), RC_ENOTFOUND or RC_ENOMEM. On error, the commands printed so far stay printed.
 */
int snapshot_print_resp(const char *path, FILE *out);

#endif

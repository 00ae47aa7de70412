/*
 * logstore.h — the durable Raft log of one node: segment files plus a hard-state file in a
 * directory (internal module, prefix logstore_). The on-disk format and its invariants are
 * described at the top of logstore.c.
 *
 * Use with the core (raft.h), for each struct raft_ready:
 *
 *     if (rd.snapshot_chunk) logstore_snapshot_chunk(ls, rd.snapshot_chunk);  (durable)
 *     logstore_append(ls, rd.entries, rd.n_entries);      (truncates a conflicting suffix)
 *     if (rd.has_hard_state) logstore_set_hard_state(ls, &rd.hard_state);
 *     logstore_sync(ls);                                   (entries durable, then hard state)
 *     ... only now send rd.messages ...
 *
 * Every function returns 0 or a negative RC_E* code. After a write, sync, truncate or
 * rename error every later call returns RC_EIO: the node must stop and reopen, as after a
 * crash. RC_ENOMEM leaves the store unchanged.
 */
#ifndef RC_RAFT_LOGSTORE_H
#define RC_RAFT_LOGSTORE_H

#include "raft.h"

#include <stddef.h>
#include <stdint.h>

/* Points in logstore_sync and logstore_compact at which the test hook is called. */
enum logstore_point {
    LOGSTORE_BEFORE_ENTRIES_SYNC = 1, /* appended records are about to be fdatasync'ed */
    LOGSTORE_ENTRIES_SYNCED = 2,      /* the segment files and the directory are durable */
    LOGSTORE_BEFORE_STATE_WRITE = 3,  /* the state file is about to be replaced */
    LOGSTORE_STATE_WRITTEN = 4,       /* the state file was replaced durably */
    LOGSTORE_SEGMENT_REMOVED = 5,     /* a compaction, install or truncation unlinked one */
};

struct logstore_options {
    uint64_t segment_size_bytes; /* a segment rolls once it would exceed this (default 64 MiB) */
    /*
     * The active segment is extended with written zeros this many bytes at a time (default
     * 1 MiB, never past segment_size_bytes; 0: off), so that most syncs overwrite allocated
     * blocks and fdatasync has no file size to write.
     */
    uint64_t prealloc_bytes;
    /*
     * Entries kept before a snapshot's index when the log is compacted to it (default 0):
     * the log's first index is then snapshot index + 1 - trailing_entries (invariant 5), so
     * that a follower a little behind the compaction is sent entries, not the snapshot.
     */
    uint64_t trailing_entries;
    /*
     * Tests only (NULL in production): called at each enum logstore_point; a non-zero return
     * is treated as an I/O error at that point (the store then fails with RC_EIO).
     */
    int (*hook)(void *ctx, enum logstore_point point);
    void *hook_ctx;
};

void logstore_options_default(struct logstore_options *opts);

struct logstore;

/*
 * Opens (creating if needed) the log in dir and recovers it: a torn tail of the last segment
 * is cut with a log line; an invalid record in a sealed segment, or a hard-state commit beyond
 * the recovered log, is RC_ECORRUPT with a log line naming the file and offset. Temp files of
 * unfinished local snapshots and snapshot files other than the current one are deleted; a
 * missing or wrongly sized current snapshot file is RC_ECORRUPT; a partial incoming snapshot
 * is kept (and resumed) if its meta file is valid, deleted otherwise.
 * opts may be NULL (defaults). *out owns the store; release it with logstore_close.
 */
int logstore_open(const char *dir, const struct logstore_options *opts, struct logstore **out);
/* Closes the files and frees the store; unsynced appends may or may not survive. */
void logstore_close(struct logstore *ls);

/*
 * The storage the core reads through (struct raft_storage), with ctx = ls; valid while ls is
 * open. As raft.h requires, data pointers written by its entries() point into a buffer owned
 * by ls that stays valid until the next call into the store. snapshot() reports the current
 * snapshot's meta (as logstore_snapshot_meta); snapshot_read reads its file (RC_ENOTFOUND if
 * index is not the current snapshot's or it has no file, as after logstore_compact);
 * snapshot_received reports the bytes of the incoming snapshot (index, term) held durably.
 */
struct raft_storage logstore_raft_storage(struct logstore *ls);

/*
 * Appends n entries (data copied to the files, not kept), first deleting every stored entry
 * with index >= entries[0].index. Requires first_index <= entries[0].index <= last_index + 1,
 * entries[0].index above the snapshot's index and consecutive indexes (RC_EINVAL otherwise). The
 * entries are durable only after logstore_sync; a truncation is made durable before this returns.
 */
int logstore_append(struct logstore *ls, const struct raft_entry *entries, size_t n);
/* Records the hard state to persist at the next logstore_sync (copied). */
int logstore_set_hard_state(struct logstore *ls, const struct raft_hard_state *hs);
/*
 * Group commit: one fdatasync of each segment written since the last sync (and of the
 * directory if segments were created), then — only after those succeeded — the hard state
 * set since, written atomically. After it returns 0 everything appended and set is durable.
 */
int logstore_sync(struct logstore *ls);
/*
 * Records a snapshot ending at (index, term) without data (no file, no configuration, size 0;
 * a previous snapshot file is deleted) and drops the segments whose entries all lie before
 * keep_from = index + 1 - trailing_entries (at least 1). The first index becomes keep_from
 * (or the first entry stored, if later) and term(index) stays answerable. If index
 * is beyond the last entry or its term differs from ours, the whole log is dropped (the
 * snapshot replaces it) and the next append must start at index + 1. A no-op if index is not
 * beyond the current snapshot. Callers with snapshot data use logstore_snapshot_commit.
 */
int logstore_compact(struct logstore *ls, uint64_t index, uint64_t term);

/* ---- snapshot data ---- */

/*
 * A local snapshot being written: the state machine serialises its state at applied index I
 * into a writer, and logstore_snapshot_commit makes it the current snapshot.
 *
 *     logstore_snapshot_begin(ls, &w);                 (owning thread; creates a temp file)
 *     logstore_snapshot_write(w, buf, len) ...         (any one thread at a time)
 *     logstore_snapshot_commit(ls, w, I, term, &cfg);  (owning thread; frees w)
 *     raft_compacted(r, I);
 *
 * or logstore_snapshot_abort(w) to give up.
 */
struct logstore_snapshot_writer;

/*
 * Creates the temp file "snap-local-<n>.tmp" in the directory and *w to write it. *w is
 * owned by the caller until logstore_snapshot_commit or logstore_snapshot_abort frees it.
 * RC_EIO if the file cannot be created (the store itself is unaffected).
 */
int logstore_snapshot_begin(struct logstore *ls, struct logstore_snapshot_writer **w);
/*
 * Appends len bytes to the snapshot and extends its CRC-32C. Touches only w, never the
 * store, so it may run on another thread than the one using ls (one thread at a time per
 * writer). After a write error every later write returns RC_EIO and the commit fails with
 * RC_EIO without latching the store (its files are untouched).
 */
int logstore_snapshot_write(struct logstore_snapshot_writer *w, const void *buf, size_t len);
/*
 * Makes what was written to w durable (fsync), on the writing thread, so that the commit
 * need not: a big snapshot's fsync would otherwise stall the thread that uses ls. Like a
 * write, a failure makes the commit fail. Optional.
 */
int logstore_snapshot_sync(struct logstore_snapshot_writer *w);
/*
 * Makes the data written to w the snapshot ending at (index, term) with configuration
 * *config (copied): fsyncs the file (unless logstore_snapshot_sync did), renames it to
 * "snap-<index>-<term>.snap", syncs the directory, writes raft-state with the new meta (the
 * commit point), deletes the previous snapshot file and compacts the log up to index as
 * logstore_compact does. Requires snapshot index < index <= last index and term(index) ==
 * term (RC_EINVAL otherwise: a stale snapshot, for example one overtaken by an installed
 * incoming snapshot). Frees w and, on failure, deletes its file in every case.
 */
int logstore_snapshot_commit(struct logstore *ls, struct logstore_snapshot_writer *w,
                             uint64_t index, uint64_t term, const struct raft_config *config);
/* Deletes w's temp file and frees w (NULL is ignored). Safe on any thread. */
void logstore_snapshot_abort(struct logstore_snapshot_writer *w);

/*
 * Writes a chunk of an incoming snapshot (a follower's raft_ready().snapshot_chunk),
 * durably before it returns, since snapshot_received reports these bytes to the leader:
 *   - offset 0 starts a new incoming snapshot, discarding any partial one;
 *   - offset == bytes held for the same (index, term) appends;
 *   - anything else, or an index not beyond the current snapshot, is RC_EINVAL.
 * The last chunk (done = 1, meta.size_bytes == offset + len) installs the snapshot: it
 * becomes the current snapshot file, raft-state records its meta, the previous snapshot
 * file is deleted and the whole log is dropped (first index meta.index + 1, term(meta.index)
 * = meta.term), as raft.h requires, even if the log held that entry. The caller then
 * restores its state machine from logstore_snapshot_path. A partial snapshot survives a
 * restart and is resumed. Each chunk costs an fsync of the data and an atomic rewrite of a
 * small meta file.
 */
int logstore_snapshot_chunk(struct logstore *ls, const struct raft_snapshot_chunk *c);

/* The current snapshot's meta (index 0 when there is none); the config is copied. */
void logstore_snapshot_meta(const struct logstore *ls, struct raft_snapshot_meta *m);
/*
 * Copies the path of the current snapshot file into buf (cap bytes, NUL-terminated), for the
 * state machine to restore from. RC_ENOTFOUND if the snapshot has no file, RC_EINVAL if buf
 * is too small. The file stays until a newer snapshot replaces it (commit, install, compact).
 */
int logstore_snapshot_path(const struct logstore *ls, char *buf, size_t cap);
/*
 * Reads the current snapshot file whole and checks it against the CRC-32C in raft-state:
 * RC_ECORRUPT (logged with the file name) on a mismatch, RC_ENOTFOUND if there is no file.
 */
int logstore_snapshot_verify(struct logstore *ls);

/* Plain getters (no failure): what the raft_storage callbacks return. */
uint64_t logstore_first_index(const struct logstore *ls);
uint64_t logstore_last_index(const struct logstore *ls);
/* The durable hard state (the last one written by logstore_sync, or recovered). */
void logstore_hard_state(const struct logstore *ls, struct raft_hard_state *hs);
/* Number of segment files currently in use. */
size_t logstore_segment_count(const struct logstore *ls);
/* Reads of entry records from the segment files; entries still in the tail cache (the last
 * MiB appended) are served without one. */
uint64_t logstore_entry_preads(const struct logstore *ls);

#endif

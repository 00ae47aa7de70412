/*
 * logstore.h — the durable Raft log of one node: segment files plus a hard-state file in a
 * directory (internal module, prefix logstore_). The on-disk format and its invariants are
 * described at the top of logstore.c.
 *
 * Use with the core (raft.h), for each struct raft_ready:
 *
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
};

struct logstore_options {
    uint64_t segment_size_bytes; /* a segment rolls once it would exceed this (default 64 MiB) */
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
 * the recovered log, is RC_ECORRUPT with a log line naming the file and offset.
 * opts may be NULL (defaults). *out owns the store; release it with logstore_close.
 */
int logstore_open(const char *dir, const struct logstore_options *opts, struct logstore **out);
/* Closes the files and frees the store; unsynced appends may or may not survive. */
void logstore_close(struct logstore *ls);

/*
 * The storage the core reads through (struct raft_storage), with ctx = ls; valid while ls is
 * open. As raft.h requires, data pointers written by its entries() point into a buffer owned
 * by ls that stays valid until the next call into the store. snapshot_read and
 * snapshot_received are not implemented yet (RC_ENOTFOUND / 0 bytes); snapshot() reports
 * only index and term (the configuration and size are zero).
 */
struct raft_storage logstore_raft_storage(struct logstore *ls);

/*
 * Appends n entries (data copied to the files, not kept), first deleting every stored entry
 * with index >= entries[0].index. Requires first_index <= entries[0].index <= last_index + 1
 * and consecutive indexes (RC_EINVAL otherwise). The entries are durable only after
 * logstore_sync; a truncation is made durable before this returns.
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
 * Records a snapshot ending at (index, term) and drops the segments whose entries all lie at
 * or below index. The first index becomes index + 1 and term(index) stays answerable. If
 * index is beyond the last entry or its term differs from ours, the whole log is dropped (the
 * snapshot replaces it) and the next append must start at index + 1.
 */
int logstore_compact(struct logstore *ls, uint64_t index, uint64_t term);

/* Plain getters (no failure): what the raft_storage callbacks return. */
uint64_t logstore_first_index(const struct logstore *ls);
uint64_t logstore_last_index(const struct logstore *ls);
/* The durable hard state (the last one written by logstore_sync, or recovered). */
void logstore_hard_state(const struct logstore *ls, struct raft_hard_state *hs);
/* Number of segment files currently in use. */
size_t logstore_segment_count(const struct logstore *ls);

#endif

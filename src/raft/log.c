/*
 * log.c — the Raft log as the core sees it: a stable prefix read through the caller's
 * struct raft_storage, followed by the unstable entries the core holds in memory until the
 * caller reports them persisted (raft_advance).
 *
 * Invariants:
 *   1. Unstable entries have consecutive indexes starting at offset, and
 *      offset <= stable_last + 1. When offset <= stable_last the storage still holds entries
 *      [offset, stable_last] that the next persist will delete (a pending truncation); the
 *      core never reads those from storage.
 *   2. commit <= last index, and entries at or below commit are never truncated
 *      (raft_log_append asserts it: a committed entry is forever, §5.4).
 *   3. applied <= commit.
 *   4. stable_first <= snapshot_index + 1: the storage may keep entries at and before the
 *      snapshot index (trailing entries, so that a follower a little behind is sent entries,
 *      not the snapshot); those are committed, and term(snapshot_index) is the snapshot's
 *      term either way (raft_log_init checks the storage agrees). A compaction never lowers
 *      stable_first (raft_log_compacted refuses it).
 *
 * State changes: raft_log_append (new unstable entries, possibly truncating),
 * raft_log_stable_to (unstable → stable, called by raft_advance), commit and applied are
 * moved by core.c / replication.c.
 */
#include "raft/raft_int.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <string.h>

int raft_log_init(struct raft_log *log, const struct raft_storage *storage, uint64_t commit,
                  uint64_t applied)
{
    memset(log, 0, sizeof *log);
    log->storage = *storage;
    int rc = storage->first_index(storage->ctx, &log->stable_first);
    if (rc == 0)
        rc = storage->last_index(storage->ctx, &log->stable_last);
    if (rc != 0)
        return rc;
    if (log->stable_first == 0 || log->stable_last + 1 < log->stable_first)
        return RC_ECORRUPT;
    struct raft_snapshot_meta meta = {0};
    if (storage->snapshot && (rc = storage->snapshot(storage->ctx, &meta)) != 0)
        return rc;
    /* The log starts right after the snapshot, or earlier (entries kept before it, which
     * then reach it: invariant 4). */
    if (log->stable_first > meta.index + 1 ||
        (log->stable_first <= meta.index && log->stable_last < meta.index))
        return RC_ECORRUPT;
    if (log->stable_first <= meta.index) {
        uint64_t t;
        rc = storage->term(storage->ctx, meta.index, &t);
        if (rc != 0 || t != meta.term)
            return rc != 0 && rc != RC_ENOTFOUND ? rc : RC_ECORRUPT;
    }
    log->snapshot_index = meta.index;
    log->snapshot_term = meta.term;
    log->offset = log->stable_last + 1;
    /* Everything in a snapshot is committed and, once restored, applied. */
    if (commit < meta.index)
        commit = meta.index;
    if (applied < meta.index)
        applied = meta.index;
    if (commit > log->stable_last || applied > commit)
        return RC_ECORRUPT;
    log->commit = commit;
    log->applied = applied;
    return 0;
}

static void free_unstable_from(struct raft_log *log, size_t from)
{
    for (size_t i = from; i < log->n; i++)
        rc_free(log->ents[i].data);
    log->n = from;
}

void raft_log_free(struct raft_log *log)
{
    free_unstable_from(log, 0);
    rc_free(log->ents);
    log->ents = NULL;
    log->cap = 0;
}

uint64_t raft_log_last_index(const struct raft_log *log)
{
    return log->n ? log->offset + log->n - 1 : log->stable_last;
}

int raft_log_term_at(struct raft_log *log, uint64_t index, uint64_t *term)
{
    if (index == 0) {
        *term = 0;
        return 0;
    }
    if (index == log->snapshot_index) {
        *term = log->snapshot_term;
        return 0;
    }
    if (index >= log->offset) {
        if (index - log->offset >= log->n)
            return RC_ENOTFOUND;
        *term = log->ents[index - log->offset].term;
        return 0;
    }
    if (index < log->stable_first || index > log->stable_last)
        return RC_ENOTFOUND; /* compacted, or beyond the log */
    return log->storage.term(log->storage.ctx, index, term);
}

uint64_t raft_log_term_or_zero(struct raft_log *log, uint64_t index)
{
    uint64_t term;
    return raft_log_term_at(log, index, &term) == 0 ? term : 0;
}

uint64_t raft_log_last_term(struct raft_log *log)
{
    return raft_log_term_or_zero(log, raft_log_last_index(log));
}

int raft_log_matches(struct raft_log *log, uint64_t index, uint64_t term)
{
    uint64_t t;
    return raft_log_term_at(log, index, &t) == 0 && t == term;
}

int raft_log_is_up_to_date(struct raft_log *log, uint64_t last_index, uint64_t last_term)
{
    uint64_t our_term = raft_log_last_term(log);
    return last_term > our_term ||
           (last_term == our_term && last_index >= raft_log_last_index(log));
}

uint64_t raft_log_find_conflict(struct raft_log *log, const struct raft_entry *ents, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!raft_log_matches(log, ents[i].index, ents[i].term))
            return ents[i].index;
    return 0;
}

uint64_t raft_log_last_index_with_term_at_most(struct raft_log *log, uint64_t index, uint64_t term)
{
    uint64_t last = raft_log_last_index(log);
    if (index > last)
        index = last;
    for (;;) {
        uint64_t t;
        if (raft_log_term_at(log, index, &t) != 0)
            return index; /* compacted away: the caller probes from here */
        if (t <= term)
            return index;
        index--;
    }
}

static int reserve_unstable(struct raft_log *log, size_t more)
{
    if (log->n + more <= log->cap)
        return 0;
    size_t cap = log->cap ? log->cap : 16;
    while (cap < log->n + more)
        cap *= 2;
    struct raft_entry *ents = rc_realloc(log->ents, cap * sizeof *ents);
    if (!ents)
        return RC_ENOMEM;
    log->ents = ents;
    log->cap = cap;
    return 0;
}

int raft_log_append(struct raft_log *log, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return 0;
    uint64_t first = ents[0].index;
    RAFT_ASSERT(first > log->commit);
    RAFT_ASSERT(first <= raft_log_last_index(log) + 1);
    int rc = reserve_unstable(log, n);
    if (rc != 0)
        return rc;
    /* Copy the data first so that a failed allocation leaves the log as it was. */
    void **copies = rc_calloc(n, sizeof *copies);
    if (!copies)
        return RC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        RAFT_ASSERT(ents[i].index == first + i);
        if (ents[i].len && !(copies[i] = rc_memdup(ents[i].data, ents[i].len))) {
            for (size_t j = 0; j < i; j++)
                rc_free(copies[j]);
            rc_free(copies);
            return RC_ENOMEM;
        }
    }
    if (first >= log->offset) {
        free_unstable_from(log, (size_t)(first - log->offset));
    } else {
        /* Replaces stable entries: drop all unstable ones, storage truncates at first. */
        free_unstable_from(log, 0);
        log->offset = first;
    }
    for (size_t i = 0; i < n; i++) {
        log->ents[log->n] = ents[i];
        log->ents[log->n].data = copies[i];
        log->n++;
    }
    rc_free(copies);
    return 0;
}

int raft_log_copy_entries(struct raft_log *log, uint64_t lo, uint64_t hi, size_t max_bytes,
                          struct raft_entry **out, size_t *n_out)
{
    RAFT_ASSERT(lo < hi && hi <= raft_log_last_index(log) + 1);
    size_t want = (size_t)(hi - lo);
    struct raft_entry *tmp = rc_calloc(want, sizeof *tmp);
    if (!tmp)
        return RC_ENOMEM;
    size_t n = 0, bytes = 0;
    int rc = 0;
    /* The stable part, if any, comes from storage; its data pointers live until the next
     * storage call, which is after we copied them below. */
    uint64_t stable_hi = hi < log->offset ? hi : log->offset;
    if (lo < stable_hi) {
        rc = log->storage.entries(log->storage.ctx, lo, stable_hi, max_bytes, tmp, &n);
        if (rc == 0 && (n == 0 || n > stable_hi - lo))
            rc = RC_ECORRUPT;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (tmp[i].index != lo + i)
                rc = RC_ECORRUPT;
            bytes += tmp[i].len;
        }
    }
    /* Then unstable entries, while under the byte cap (always at least one entry). */
    while (rc == 0 && lo + n < hi && lo + n >= log->offset) {
        const struct raft_entry *e = &log->ents[lo + n - log->offset];
        if (n > 0 && bytes + e->len > max_bytes)
            break;
        tmp[n++] = *e;
        bytes += e->len;
    }
    if (rc != 0) {
        rc_free(tmp);
        return rc;
    }
    unsigned char *block = rc_malloc(n * sizeof(struct raft_entry) + bytes);
    if (!block) {
        rc_free(tmp);
        return RC_ENOMEM;
    }
    struct raft_entry *copy = (struct raft_entry *)block;
    unsigned char *data = block + n * sizeof(struct raft_entry);
    for (size_t i = 0; i < n; i++) {
        copy[i] = tmp[i];
        if (tmp[i].len) {
            memcpy(data, tmp[i].data, tmp[i].len);
            copy[i].data = data;
            data += tmp[i].len;
        } else {
            copy[i].data = NULL;
        }
    }
    rc_free(tmp);
    *out = copy;
    *n_out = n;
    return 0;
}

void raft_log_stable_to(struct raft_log *log, uint64_t index)
{
    if (log->n == 0)
        return;
    RAFT_ASSERT(index == log->offset + log->n - 1);
    free_unstable_from(log, 0);
    log->stable_last = index;
    log->offset = index + 1;
}

int raft_log_compacted(struct raft_log *log, uint64_t index)
{
    RAFT_ASSERT(index <= log->applied && index < log->offset && index <= log->stable_last);
    if (index <= log->snapshot_index)
        return 0;
    uint64_t term = raft_log_term_or_zero(log, index);
    RAFT_ASSERT(term != 0);
    /* The storage says which entries it kept: from its first index, which a compaction
     * never lowers, up to index + 1 at most (invariant 4). */
    uint64_t first;
    int rc = log->storage.first_index(log->storage.ctx, &first);
    if (rc != 0)
        return rc;
    if (first > index + 1 || first < log->stable_first)
        return RC_ECORRUPT;
    log->snapshot_index = index;
    log->snapshot_term = term;
    log->stable_first = first;
    return 0;
}

void raft_log_restore(struct raft_log *log, uint64_t index, uint64_t term)
{
    RAFT_ASSERT(index > log->commit);
    free_unstable_from(log, 0);
    log->snapshot_index = index;
    log->snapshot_term = term;
    log->stable_first = index + 1;
    log->stable_last = index;
    log->offset = index + 1;
    log->commit = index;
    log->applied = index;
}

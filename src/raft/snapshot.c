/*
 * snapshot.c — InstallSnapshot, streamed in chunks.
 *
 * The leader never holds a snapshot in memory: it reads one chunk at a time through the
 * storage's snapshot_read and sends it; the follower hands each chunk to its caller in
 * raft_ready (struct raft_snapshot_chunk) to be written to disk. Flow control is
 * stop-and-wait: one chunk in flight per follower; the follower's answer carries how many
 * bytes it holds, and the leader continues from there. Lost chunks or answers are resent
 * after a few heartbeat answers without progress.
 *
 * Invariants:
 *   1. A follower acknowledges a chunk only in the ready that writes it (messages leave after
 *      the ready's writes are durable), so the offset it reports is never ahead of its disk,
 *      except after a crash lost unsynced chunks — then it reports a smaller offset and the
 *      leader resumes from there. The leader always continues from the follower's offset.
 *   2. If the leader's snapshot is replaced (a newer compaction) during a transfer, the
 *      transfer restarts at offset 0 with the new snapshot; a chunk at offset 0 makes the
 *      follower discard any partial snapshot.
 *   3. A follower installs a snapshot only if it is newer than its commit index and its log
 *      does not already hold the snapshot's last entry. If it holds that entry (same index and
 *      term), its log matches the leader's up to there (log matching) and it only advances
 *      commit, keeping later entries it may have acknowledged. Otherwise every entry it has
 *      after the snapshot's index conflicts with the leader's log, so none is committed, and
 *      discarding the whole log is safe.
 *   4. After installing, the follower's commit and applied index are the snapshot's index and
 *      its configuration is the snapshot's.
 *   5. A follower installs only data whose CRC-32C is the one the leader's storage gives for
 *      its snapshot (carried by every chunk): a mismatch (a damaged file on the leader, a
 *      damaged transfer) is answered with reject and offset 0, and nothing is installed. A
 *      snapshot known to be bad never replaces a node's log and state. The leader starts
 *      over after a few heartbeats (not at once) and counts the refusal, so that its caller
 *      can check its file and take a new snapshot.
 *
 * State changes: raft_send_snapshot (leader progress → snapshot state), the answer handler
 * (→ probe once installed), raft_handle_snapshot (follower: chunk, install via
 * raft_log_restore).
 */
#include "raft/raft_int.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "raftcask.h"

#include <string.h>

void raft_free_chunk(struct raft *r)
{
    if (!r->has_chunk)
        return;
    rc_free((void *)r->chunk.data);
    memset(&r->chunk, 0, sizeof r->chunk);
    r->has_chunk = 0;
}

/* ---------------------------------------------------------------- leader */

int raft_send_snapshot(struct raft *r, struct raft_progress *pr)
{
    struct raft_storage *st = &r->log.storage;
    if (!st->snapshot || !st->snapshot_read)
        return 0;
    struct raft_snapshot_meta meta;
    int rc = st->snapshot(st->ctx, &meta);
    if (rc != 0)
        return rc;
    if (meta.index == 0)
        return 0; /* nothing compacted: appends will do */
    if (pr->state != PROGRESS_SNAPSHOT || pr->snap_index != meta.index ||
        pr->snap_term != meta.term) {
        /* Invariant 2: start (or restart) with the snapshot we have now. */
        pr->state = PROGRESS_SNAPSHOT;
        pr->snap_index = meta.index;
        pr->snap_term = meta.term;
        pr->snap_offset = 0;
        pr->snap_sent = 0;
        pr->snap_refused = 0;
        pr->stalled_heartbeats = 0;
    }
    if (pr->snap_sent)
        return 0;
    size_t want = r->opts.snapshot_chunk_bytes;
    void *buf = rc_malloc(want);
    if (!buf)
        return RC_ENOMEM;
    size_t n = 0;
    rc = st->snapshot_read(st->ctx, meta.index, pr->snap_offset, buf, want, &n);
    if (rc != 0 || n > want) {
        rc_free(buf);
        return rc != 0 ? rc : RC_ECORRUPT;
    }
    if (n == 0) {
        rc_free(buf);
        buf = NULL;
    }
    struct raft_message m = {.type = RAFT_MSG_SNAPSHOT, .to = pr->id};
    m.snapshot.index = meta.index;
    m.snapshot.term = meta.term;
    m.snapshot.config = meta.config;
    m.snapshot.offset = pr->snap_offset;
    m.snapshot.len = (uint32_t)n;
    m.snapshot.data = buf;
    m.snapshot.done = pr->snap_offset + n >= meta.size_bytes;
    m.snapshot.crc = meta.crc;
    rc = raft_send(r, &m);
    if (rc == 0)
        pr->snap_sent = 1;
    return rc;
}

int raft_handle_snapshot_response(struct raft *r, const struct raft_message *m)
{
    if (r->role != RAFT_LEADER)
        return 0;
    struct raft_progress *pr = raft_progress_of(r, m->from);
    if (!pr)
        return 0;
    pr->recent_active = 1;
    pr->heard = 1;
    pr->quiet_ticks = 0;
    if (m->snapshot.done) {
        if (m->index > raft_log_last_index(&r->log))
            return RC_EPROTO;
        raft_progress_maybe_update(pr, m->index);
        pr->installed_index = m->index;
        if (pr->state == PROGRESS_SNAPSHOT) {
            raft_progress_become_probe(pr);
            raft_send_append(r, pr, 1);
        }
        if (raft_maybe_commit(r) && r->role == RAFT_LEADER)
            raft_broadcast_append(r, 1);
        return 0;
    }
    if (pr->state != PROGRESS_SNAPSHOT || m->snapshot.index != pr->snap_index ||
        m->snapshot.term != pr->snap_term)
        return 0; /* about a transfer that is over */
    if (m->reject) {
        /* Invariant 5: refused. Sent again from offset 0, paced by the stall path (a few
         * heartbeat answers), not at once: until the caller replaces a damaged file, every
         * try fails the same way. */
        r->snapshots_refused_by_peers++;
        pr->snap_refused = 1;
        pr->snap_offset = 0;
        pr->stalled_heartbeats = 0;
        return 0;
    }
    /* Invariant 1: continue from what the follower says it holds. */
    pr->snap_offset = m->snapshot.offset;
    pr->snap_sent = 0;
    pr->stalled_heartbeats = 0;
    return raft_send_snapshot(r, pr);
}

void raft_snapshot_on_heartbeat_response(struct raft *r, struct raft_progress *pr)
{
    if (pr->snap_sent && ++pr->stalled_heartbeats < RAFT_STALL_HEARTBEATS)
        return;
    /* The chunk or its answer was lost: send it again. */
    pr->snap_sent = 0;
    pr->stalled_heartbeats = 0;
    raft_send_snapshot(r, pr);
}

/* ---------------------------------------------------------------- follower */

int raft_handle_snapshot(struct raft *r, const struct raft_message *m)
{
    uint64_t index = m->snapshot.index, term = m->snapshot.term;
    struct raft_message resp = {.type = RAFT_MSG_SNAPSHOT_RESP, .to = m->from};
    resp.snapshot.index = index;
    resp.snapshot.term = term;
    if (index == 0 || term == 0 || term > m->term)
        return RC_EPROTO;
    if (index <= r->log.commit) {
        /* Invariant 3: we already have everything it covers, committed. */
        resp.snapshot.done = 1;
        resp.index = r->log.commit;
        return raft_send(r, &resp);
    }
    if (raft_log_matches(&r->log, index, term)) {
        raft_commit_to(r, index);
        resp.snapshot.done = 1;
        resp.index = index;
        return raft_send(r, &resp);
    }
    if (r->has_chunk)
        return 0; /* one chunk per ready; the leader resends */
    uint64_t received = 0;
    uint32_t crc = 0;
    struct raft_storage *st = &r->log.storage;
    if (!st->snapshot_received)
        return RC_EINVAL;
    int rc = st->snapshot_received(st->ctx, index, term, &received, &crc);
    if (rc != 0)
        return rc;
    if (m->snapshot.offset != 0 && m->snapshot.offset != received) {
        resp.snapshot.offset = received; /* resume from what we hold */
        return raft_send(r, &resp);
    }
    if (m->snapshot.offset == 0)
        crc = 0;
    if (m->snapshot.done && m->snapshot.crc &&
        rc_crc32c(crc, m->snapshot.data, m->snapshot.len) != m->snapshot.crc) {
        r->snapshots_refused++; /* invariant 5: start over, install nothing */
        resp.snapshot.offset = 0;
        resp.reject = 1;
        return raft_send(r, &resp);
    }
    void *data = NULL;
    if (m->snapshot.len && !(data = rc_memdup(m->snapshot.data, m->snapshot.len)))
        return RC_ENOMEM;
    r->chunk.meta.index = index;
    r->chunk.meta.term = term;
    r->chunk.meta.config = m->snapshot.config;
    r->chunk.meta.size_bytes = m->snapshot.offset + m->snapshot.len;
    r->chunk.offset = m->snapshot.offset;
    r->chunk.len = m->snapshot.len;
    r->chunk.data = data;
    r->chunk.done = m->snapshot.done;
    r->has_chunk = 1;
    resp.snapshot.offset = m->snapshot.offset + m->snapshot.len;
    if (m->snapshot.done) {
        /* Invariant 4: the snapshot replaces our log and our state. */
        raft_log_restore(&r->log, index, term);
        r->config = m->snapshot.config;
        r->config_index = index;
        r->prev_config = m->snapshot.config;
        r->prev_config_index = index;
        rc = raft_progress_rebuild(r);
        if (rc != 0)
            return rc;
        resp.snapshot.done = 1;
        resp.index = index;
    }
    return raft_send(r, &resp);
}

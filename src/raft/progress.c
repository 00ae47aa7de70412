/*
 * progress.c — what a leader knows of each follower's log, and how it paces appends.
 *
 * A follower is in one of three states:
 *   probe      we do not know where its log matches ours; send one append at a time
 *              (probe_sent pauses further sends until an answer or a heartbeat answer)
 *              and walk next back with the follower's hints until it accepts;
 *   replicate  its log matches up to match; stream appends optimistically (next moves as we
 *              send) with at most max_inflight messages unacknowledged;
 *   snapshot   the entries it needs were compacted away: stream it the snapshot, one chunk
 *              in flight at a time (snapshot.c); appends pause until it is installed.
 *
 * Invariants:
 *   1. match < next (everything up to match is known replicated; next is what we send next).
 *   2. In replicate state every inflight entry is > match and they increase.
 *   3. match never decreases while we lead in this term (a follower acknowledges only what
 *      it persisted, and persisted entries of the current leader are never truncated).
 *
 * State changes: raft_progress_become_probe / _become_replicate, raft_progress_sent
 * (after an append left), raft_progress_maybe_update (acceptance),
 * raft_progress_maybe_decrease (rejection).
 */
#include "raft/raft_int.h"

#include <string.h>

void raft_progress_reset(struct raft_progress *pr, uint64_t last_index)
{
    uint64_t id = pr->id;
    int is_voter = pr->is_voter;
    memset(pr, 0, sizeof *pr);
    pr->id = id;
    pr->is_voter = is_voter;
    pr->next = last_index + 1;
    pr->state = PROGRESS_PROBE;
}

static void inflight_clear(struct raft_progress *pr)
{
    pr->inflight_start = 0;
    pr->inflight_count = 0;
}

void raft_progress_become_probe(struct raft_progress *pr)
{
    pr->state = PROGRESS_PROBE;
    pr->next = pr->match + 1;
    pr->probe_sent = 0;
    pr->stalled_heartbeats = 0;
    inflight_clear(pr);
}

void raft_progress_become_replicate(struct raft_progress *pr)
{
    pr->state = PROGRESS_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = 0;
    pr->stalled_heartbeats = 0;
    inflight_clear(pr);
}

int raft_progress_is_paused(const struct raft_progress *pr, int max_inflight)
{
    switch (pr->state) {
    case PROGRESS_PROBE:
        return pr->probe_sent;
    case PROGRESS_REPLICATE:
        return pr->inflight_count >= max_inflight;
    case PROGRESS_SNAPSHOT:
        return 1;
    }
    return 1;
}

void raft_progress_sent(struct raft_progress *pr, uint64_t last_sent, int n_entries)
{
    if (pr->state == PROGRESS_REPLICATE) {
        if (n_entries == 0)
            return;
        RAFT_ASSERT(pr->inflight_count < RAFT_MAX_INFLIGHT);
        RAFT_ASSERT(last_sent > pr->match);
        int slot = (pr->inflight_start + pr->inflight_count) % RAFT_MAX_INFLIGHT;
        pr->inflight[slot] = last_sent;
        pr->inflight_count++;
        pr->next = last_sent + 1;
    } else if (pr->state == PROGRESS_PROBE) {
        pr->probe_sent = 1;
    }
}

int raft_progress_maybe_update(struct raft_progress *pr, uint64_t index)
{
    int moved = 0;
    if (index > pr->match) {
        pr->match = index;
        pr->probe_sent = 0;
        pr->stalled_heartbeats = 0;
        moved = 1;
    }
    if (pr->next < index + 1)
        pr->next = index + 1;
    /* Acknowledged appends leave the window. */
    while (pr->inflight_count > 0 && pr->inflight[pr->inflight_start] <= index) {
        pr->inflight_start = (pr->inflight_start + 1) % RAFT_MAX_INFLIGHT;
        pr->inflight_count--;
    }
    RAFT_ASSERT(pr->match < pr->next);
    return moved;
}

int raft_progress_maybe_decrease(struct raft_progress *pr, uint64_t rejected, uint64_t next_probe)
{
    if (pr->state == PROGRESS_SNAPSHOT)
        return 0; /* an append answer from before the snapshot transfer began */
    if (pr->state == PROGRESS_REPLICATE) {
        /* A rejection of something we know matched is a stale, reordered answer. */
        if (rejected <= pr->match)
            return 0;
        raft_progress_become_probe(pr);
    } else if (rejected != pr->next - 1) {
        /* In probe state only the answer to the outstanding probe counts. */
        return 0;
    }
    uint64_t next = next_probe < rejected ? next_probe : rejected;
    if (next < pr->match + 1)
        next = pr->match + 1;
    pr->next = next;
    pr->probe_sent = 0;
    RAFT_ASSERT(pr->match < pr->next);
    return 1;
}

/*
 * replication.c — AppendEntries and heartbeats in both directions, commit, proposals.
 *
 * Invariants:
 *   1. Log matching (§5.3): a follower appends only after the entry preceding the new ones
 *      matches (index and term), and only ever truncates entries that conflict with the
 *      leader's — never committed ones (raft_log_append asserts index > commit).
 *   2. The leader commits index i only if a quorum of voters stores i *and* entry i is of
 *      the leader's current term (§5.4.2, Figure 8). Earlier-term entries become committed
 *      only as a consequence. The knob commit_old_term_entries breaks exactly this.
 *   3. A follower's commit never exceeds the last entry it knows to match the leader:
 *      min(leader commit, index of the last entry of this append); a heartbeat carries at
 *      most the follower's known match.
 *   4. commit never decreases (raft_commit_to ignores lower values).
 *   5. The leader never truncates or overwrites its own log (leader append-only).
 *   6. A heartbeat answer sets off a probe, a resent snapshot chunk or a stall count only if
 *      it is the first answer since a periodic heartbeat went to that follower (beat_pending):
 *      at most once per heartbeat interval, however many answers arrive.
 *
 * Fast backtracking: a rejecting follower names the last entry of its log whose term is
 * <= the term the leader proposed at the rejected index (hint_index, hint_term); the leader
 * then probes at the last entry of *its* log with term <= hint_term at or below hint_index.
 * Each round skips a whole term instead of one index.
 *
 * State changes: raft_append_to_log (log and configuration), raft_commit_to (commit),
 * progress via progress.c.
 */
#include "raft/raft_int.h"

#include "common/alloc.h"
#include "raftcask.h"

/* ---------------------------------------------------------------- log appends */

int raft_append_to_log(struct raft *r, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return 0;
    RAFT_ASSERT(r->role != RAFT_LEADER || ents[0].index == raft_log_last_index(&r->log) + 1);
    int truncates_config = ents[0].index <= r->config_index;
    int rc = raft_log_append(&r->log, ents, n);
    if (rc != 0)
        return rc;
    if (truncates_config) {
        /* The configuration in force was cut off: find the last one left in the log. */
        return raft_config_recover(r);
    }
    /* Configuration entries take effect as soon as they are in the log (thesis §4.1). */
    for (size_t i = 0; i < n; i++)
        if (ents[i].type == RAFT_ENTRY_CONFIG)
            raft_config_on_append(r, &ents[i]);
    return 0;
}

int raft_append_new_entry(struct raft *r, uint8_t type, const void *data, size_t len,
                          uint64_t *index)
{
    RAFT_ASSERT(r->role == RAFT_LEADER);
    if (len > RAFT_ENTRY_MAX_BYTES)
        return RC_ETOOBIG;
    struct raft_entry e = {.term = r->term,
                           .index = raft_log_last_index(&r->log) + 1,
                           .type = type,
                           .len = (uint32_t)len,
                           .data = (void *)data};
    int rc = raft_append_to_log(r, &e, 1);
    if (rc != 0)
        return rc;
    if (index)
        *index = e.index;
    r->pending_broadcast = 1;
    return 0;
}

void raft_commit_to(struct raft *r, uint64_t index)
{
    if (index <= r->log.commit)
        return;
    RAFT_ASSERT(index <= raft_log_last_index(&r->log));
    r->log.commit = index;
}

/* ---------------------------------------------------------------- leader: sending */

int raft_send_append(struct raft *r, struct raft_progress *pr, int send_if_empty)
{
    RAFT_ASSERT(r->role == RAFT_LEADER);
    if (pr->id == r->id || raft_progress_is_paused(pr, r->opts.max_inflight))
        return 0;
    uint64_t last = raft_log_last_index(&r->log);
    uint64_t prev = pr->next - 1;
    uint64_t prev_term;
    if (pr->next < r->log.stable_first || raft_log_term_at(&r->log, prev, &prev_term) != 0)
        return raft_send_snapshot(r, pr); /* what it needs was compacted away */
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .to = pr->id,
                             .log_index = prev,
                             .log_term = prev_term,
                             .commit = r->log.commit};
    if (pr->next <= last) {
        struct raft_entry *ents;
        size_t n;
        int rc =
            raft_log_copy_entries(&r->log, pr->next, last + 1, r->opts.max_msg_bytes, &ents, &n);
        if (rc != 0)
            return rc;
        m.entries = ents;
        m.n_entries = (uint32_t)n;
    } else if (!send_if_empty) {
        return 0;
    }
    uint64_t last_sent = prev + m.n_entries;
    int n_entries = (int)m.n_entries;
    int rc = raft_send(r, &m);
    if (rc == 0)
        raft_progress_sent(pr, last_sent, n_entries);
    return rc;
}

/* Sends as many appends as the follower's window allows. */
static void send_appends_while_room(struct raft *r, struct raft_progress *pr)
{
    for (;;) {
        size_t before = r->n_msgs;
        uint64_t next = pr->next;
        raft_send_append(r, pr, 0);
        if (r->n_msgs == before || pr->state != PROGRESS_REPLICATE || pr->next == next)
            return;
    }
}

void raft_broadcast_append(struct raft *r, int send_if_empty)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (send_if_empty)
            raft_send_append(r, &r->prs[i], 1);
        send_appends_while_room(r, &r->prs[i]);
    }
}

void raft_send_heartbeat(struct raft *r, const struct raft_progress *pr)
{
    /* Invariant 3: never tell a follower to commit beyond what we know it matches. */
    uint64_t commit = pr->match < r->log.commit ? pr->match : r->log.commit;
    struct raft_message m = {
        .type = RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = commit, .ctx = r->read_round};
    raft_send(r, &m);
}

void raft_broadcast_heartbeat(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == r->id)
            continue;
        r->prs[i].beat_pending = 1;
        raft_send_heartbeat(r, &r->prs[i]);
    }
}

void raft_tick_leader(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].quiet_ticks < UINT32_MAX)
            r->prs[i].quiet_ticks++;
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->opts.election_ticks) {
        r->election_elapsed = 0;
        if (r->opts.check_quorum) {
            uint32_t active = 0;
            for (uint32_t i = 0; i < r->n_prs; i++) {
                struct raft_progress *pr = &r->prs[i];
                if (pr->is_voter && (pr->id == r->id || pr->recent_active))
                    active++;
                pr->was_active = pr->recent_active;
                pr->recent_active = 0;
            }
            if (active < raft_quorum(r)) {
                /* We cannot have been leader for this whole timeout: step down (§6.2). */
                raft_become_follower(r, r->term, RAFT_NONE);
                return;
            }
        }
        if (r->transferee != RAFT_NONE)
            raft_abort_transfer(r); /* it did not finish within an election timeout */
    }
    if (r->heartbeat_elapsed >= r->opts.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        raft_broadcast_heartbeat(r);
    }
}

/* ---------------------------------------------------------------- leader: commit */

int raft_maybe_commit(struct raft *r)
{
    uint64_t matches[RAFT_MAX_NODES];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].is_voter)
            matches[n++] = r->prs[i].match;
    if (n == 0)
        return 0;
    /* The quorum-th largest match is stored on a majority of voters. */
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && matches[j - 1] < matches[j]; j--) {
            uint64_t t = matches[j];
            matches[j] = matches[j - 1];
            matches[j - 1] = t;
        }
    uint64_t index = matches[raft_quorum(r) - 1];
    if (index <= r->log.commit)
        return 0;
    if (raft_log_term_or_zero(&r->log, index) != r->term && !r->opts.knobs.commit_old_term_entries)
        return 0; /* invariant 2 */
    raft_commit_to(r, index);
    raft_maybe_step_down_after_removal(r);
    return 1;
}

/* ---------------------------------------------------------------- leader: responses */

int raft_handle_append_response(struct raft *r, const struct raft_message *m)
{
    if (r->role != RAFT_LEADER)
        return 0;
    struct raft_progress *pr = raft_progress_of(r, m->from);
    if (!pr)
        return 0;
    pr->recent_active = 1;
    pr->heard = 1;
    pr->quiet_ticks = 0;
    if (m->reject) {
        uint64_t probe_at =
            raft_log_last_index_with_term_at_most(&r->log, m->hint_index, m->hint_term);
        if (raft_progress_maybe_decrease(pr, m->index, probe_at + 1))
            raft_send_append(r, pr, 1);
        return 0;
    }
    if (m->index > raft_log_last_index(&r->log))
        return RC_EPROTO; /* acknowledges entries we never had: not from our follower */
    int was_paused = raft_progress_is_paused(pr, r->opts.max_inflight);
    if (!raft_progress_maybe_update(pr, m->index)) {
        if (was_paused && !raft_progress_is_paused(pr, r->opts.max_inflight))
            send_appends_while_room(r, pr);
        return 0;
    }
    if (pr->state == PROGRESS_PROBE)
        raft_progress_become_replicate(pr);
    if (raft_maybe_commit(r) && r->role != RAFT_LEADER)
        return 0; /* we removed ourselves and stepped down */
    /*
     * A new commit index is not sent on its own: the next append or heartbeat carries it
     * (within heartbeat_ticks). Under load that is the next batch's append anyway, and an
     * empty append per commit would double the messages a follower wakes up for.
     */
    send_appends_while_room(r, pr);
    return raft_maybe_send_timeout_now(r, pr);
}

int raft_handle_heartbeat_response(struct raft *r, const struct raft_message *m)
{
    if (r->role != RAFT_LEADER)
        return 0;
    struct raft_progress *pr = raft_progress_of(r, m->from);
    if (!pr)
        return 0;
    pr->recent_active = 1;
    pr->heard = 1;
    pr->quiet_ticks = 0;
    if (m->ctx > pr->acked_round) {
        pr->acked_round = m->ctx;
        raft_reads_on_heartbeat_ack(r);
    }
    /*
     * What an answer may set off (a probe, a resent snapshot chunk, a stall counted) happens
     * at most once per periodic heartbeat (invariant 6). Answers come in bursts that say
     * nothing new: a read round's heartbeats, or the heartbeats a transport queued while the
     * follower was down, all delivered and answered when it comes back. Acting on each, a
     * leader once sent 79 probes of 1 MiB in a row to a returning follower and stopped
     * answering anyone for 0.4-0.8 s, long enough to be deposed.
     */
    if (!pr->beat_pending)
        return 0;
    pr->beat_pending = 0;
    pr->probe_sent = 0;
    if (pr->state == PROGRESS_SNAPSHOT)
        raft_snapshot_on_heartbeat_response(r, pr);
    if (pr->state == PROGRESS_REPLICATE && pr->match < raft_log_last_index(&r->log)) {
        /*
         * Appends may have been lost; the window then never drains by acknowledgements.
         * After a few heartbeat answers without progress, probe again from match.
         */
        if (++pr->stalled_heartbeats >= RAFT_STALL_HEARTBEATS)
            raft_progress_become_probe(pr);
    }
    /* A probe goes out even when there is no new entry to carry: the last one may have been
     * lost, and on an idle cluster nothing else would ever move next back to match + 1. */
    if (pr->match < raft_log_last_index(&r->log))
        raft_send_append(r, pr, pr->state == PROGRESS_PROBE);
    return 0;
}

/* ---------------------------------------------------------------- follower */

static int respond_append(struct raft *r, const struct raft_message *m, uint64_t index)
{
    struct raft_message resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .index = index};
    return raft_send(r, &resp);
}

int raft_handle_append(struct raft *r, const struct raft_message *m)
{
    if (m->log_index < r->log.commit)
        return respond_append(r, m, r->log.commit); /* old, reordered: all committed here */
    if (!raft_log_matches(&r->log, m->log_index, m->log_term)) {
        uint64_t hint = raft_log_last_index_with_term_at_most(&r->log, m->log_index, m->log_term);
        struct raft_message resp = {.type = RAFT_MSG_APPEND_RESP,
                                    .to = m->from,
                                    .reject = 1,
                                    .index = m->log_index,
                                    .hint_index = hint,
                                    .hint_term = raft_log_term_or_zero(&r->log, hint)};
        return raft_send(r, &resp);
    }
    /* Validate the batch: consecutive indexes after log_index, terms not decreasing. */
    uint64_t prev_term = m->log_term;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->log_index + 1 + i || e->term < prev_term || e->term > m->term)
            return RC_EPROTO;
        prev_term = e->term;
    }
    uint64_t last_new = m->log_index + m->n_entries;
    uint64_t conflict = raft_log_find_conflict(&r->log, m->entries, m->n_entries);
    if (conflict != 0) {
        /* Entries at or below commit match the leader's log; a conflict there is a bug. */
        RAFT_ASSERT(conflict > r->log.commit);
        if (conflict <= r->log.commit)
            return RC_EPROTO;
        size_t skip = (size_t)(conflict - m->log_index - 1);
        int rc = raft_append_to_log(r, m->entries + skip, m->n_entries - skip);
        if (rc != 0)
            return rc;
    }
    raft_commit_to(r, m->commit < last_new ? m->commit : last_new);
    return respond_append(r, m, last_new);
}

int raft_handle_heartbeat(struct raft *r, const struct raft_message *m)
{
    uint64_t last = raft_log_last_index(&r->log);
    raft_commit_to(r, m->commit < last ? m->commit : last);
    struct raft_message resp = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .ctx = m->ctx};
    return raft_send(r, &resp);
}

/* ---------------------------------------------------------------- proposals */

int raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (r->role != RAFT_LEADER || r->transferee != RAFT_NONE)
        return RC_EAGAIN;
    uint64_t at;
    int rc = raft_append_new_entry(r, RAFT_ENTRY_NORMAL, data, len, &at);
    if (rc != 0)
        return rc;
    if (index)
        *index = at;
    if (term)
        *term = r->term;
    raft_check_invariants(r);
    return 0;
}

/*
 * readindex.c — linearizable reads without log writes (thesis §6.4).
 *
 * A read made at the leader records the commit index as its read index. It may be served
 * once (a) the leader has confirmed that it was still the leader *after* the read arrived,
 * and (b) the state machine has applied the read index. (b) is the caller's job; (a) is a
 * heartbeat round: the read joins round R, the leader sends heartbeats carrying R, and once
 * a quorum of voters (the leader included) answered with a round >= R, no other leader can
 * have committed anything newer at the time the read arrived.
 *
 * Invariants:
 *   1. A read is only accepted once the leader has committed an entry of its own term, so
 *      its commit index is at least that of every earlier leader (§6.4 step 1).
 *   2. A read is assigned a round that starts *after* the read arrived: reads waiting while
 *      a round is in flight form the batch of the next round, started when the current one
 *      completes. A round started earlier proves nothing about the time of the read.
 *   3. Rounds and reads die with the leadership (raft_reads_reset on any role change);
 *      answers from an earlier term are dropped by term checks before they reach us.
 *
 * State changes: raft_read_index (new read; may start a round), raft_reads_on_heartbeat_ack
 * (confirms rounds, releases reads, starts the next round).
 */
#include "raft/raft_int.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <string.h>

void raft_reads_reset(struct raft *r)
{
    r->n_reads = 0;
    r->read_round = 0;
}

int raft_push_read_state(struct raft *r, uint64_t ctx, uint64_t index)
{
    if (r->n_read_states == r->cap_read_states) {
        size_t cap = r->cap_read_states ? 2 * r->cap_read_states : 8;
        struct raft_read_state *rs = rc_realloc(r->read_states, cap * sizeof *rs);
        if (!rs)
            return RC_ENOMEM;
        r->read_states = rs;
        r->cap_read_states = cap;
    }
    r->read_states[r->n_read_states].ctx = ctx;
    r->read_states[r->n_read_states].index = index;
    r->n_read_states++;
    return 0;
}

/* The highest round confirmed by a quorum of voters. */
static uint64_t confirmed_round(struct raft *r)
{
    uint64_t rounds[RAFT_MAX_NODES];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (!r->prs[i].is_voter)
            continue;
        rounds[n++] = r->prs[i].id == r->id ? r->read_round : r->prs[i].acked_round;
    }
    if (n == 0)
        return 0;
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && rounds[j - 1] < rounds[j]; j--) {
            uint64_t t = rounds[j];
            rounds[j] = rounds[j - 1];
            rounds[j - 1] = t;
        }
    return rounds[raft_quorum(r) - 1];
}

/*
 * A round's heartbeats go to the quorum - 1 voters (quorum, if the leader is no longer a
 * voter) that confirmed the most recent rounds (the ones likely to answer first), not to
 * every follower: a round needs no more answers, and each heartbeat costs a follower a
 * wake-up. If one of them does not answer, the
 * periodic heartbeat (to every follower, carrying the current round) confirms the round
 * within heartbeat_ticks, and the one that answers then is chosen next time. Which servers
 * are asked has no bearing on safety: a round counts only answers that carry it.
 */
static void send_round(struct raft *r)
{
    struct raft_progress *pick[RAFT_MAX_NODES];
    /* A leader that is not a voter (its own removal is appended) does not count itself. */
    uint32_t n = 0, need = raft_quorum(r) - (raft_is_voter(r) ? 1 : 0);
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->is_voter || pr->id == r->id)
            continue;
        /* insertion by acked_round, highest first */
        uint32_t j = n++;
        while (j > 0 && pick[j - 1]->acked_round < pr->acked_round) {
            pick[j] = pick[j - 1];
            j--;
        }
        pick[j] = pr;
    }
    if (n > need)
        n = need;
    for (uint32_t i = 0; i < n; i++)
        raft_send_heartbeat(r, pick[i]);
}

static void start_round(struct raft *r)
{
    r->read_round++;
    for (size_t i = 0; i < r->n_reads; i++)
        if (r->reads[i].round == 0)
            r->reads[i].round = r->read_round;
    send_round(r);
}

/* Releases confirmed reads; starts a round for the waiting ones if none is in flight. */
static void release_reads(struct raft *r)
{
    uint64_t confirmed = confirmed_round(r);
    size_t kept = 0;
    int in_flight = 0, waiting = 0;
    for (size_t i = 0; i < r->n_reads; i++) {
        struct raft_pending_read *rd = &r->reads[i];
        if (rd->round != 0 && rd->round <= confirmed) {
            raft_push_read_state(r, rd->ctx, rd->index);
            continue;
        }
        if (rd->round != 0)
            in_flight = 1;
        else
            waiting = 1;
        r->reads[kept++] = *rd;
    }
    r->n_reads = kept;
    if (waiting && !in_flight) {
        start_round(r);
        if (confirmed_round(r) >= r->read_round)
            release_reads(r); /* a single-voter cluster confirms by itself */
    }
}

void raft_reads_on_heartbeat_ack(struct raft *r)
{
    if (r->role == RAFT_LEADER && r->n_reads)
        release_reads(r);
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (r->role != RAFT_LEADER)
        return RC_EAGAIN;
    if (raft_log_term_or_zero(&r->log, r->log.commit) != r->term)
        return RC_EAGAIN; /* invariant 1 */
    if (r->opts.knobs.read_index_without_round)
        return raft_push_read_state(r, ctx, r->log.commit);
    if (r->n_reads == r->cap_reads) {
        size_t cap = r->cap_reads ? 2 * r->cap_reads : 8;
        struct raft_pending_read *reads = rc_realloc(r->reads, cap * sizeof *reads);
        if (!reads)
            return RC_ENOMEM;
        r->reads = reads;
        r->cap_reads = cap;
    }
    r->reads[r->n_reads].ctx = ctx;
    r->reads[r->n_reads].index = r->log.commit;
    r->reads[r->n_reads].round = 0;
    r->n_reads++;
    release_reads(r);
    raft_check_invariants(r);
    return 0;
}

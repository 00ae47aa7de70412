/*
 * election.c — election timeouts, pre-vote, vote, and leadership transfer.
 *
 * Invariants:
 *   1. A server grants at most one vote per term: vote is set only when it is RAFT_NONE or
 *      already the candidate, and it is persisted (ready/advance) before the grant is sent.
 *   2. A vote (or pre-vote) is granted only to a candidate whose log is at least as up to
 *      date as ours (§5.4.1); with invariant 1 this gives leader completeness.
 *   3. A pre-vote changes no state of the voter or the pre-candidate: only a real election
 *      increments the term. A partitioned server therefore cannot inflate its term and
 *      disrupt the cluster when it returns (thesis §9.6).
 *   4. Only voters of the configuration in force campaign; learners and removed servers
 *      never do.
 *   5. A leader transfer ends (done or aborted) within one election timeout, during which
 *      the leader accepts no proposals (thesis §3.10).
 *
 * State changes: raft_campaign (→ pre-candidate / candidate), tally_votes (→ leader or back to
 * follower), raft_handle_vote_request (vote), raft_transfer_leader / raft_abort_transfer.
 */
#include "raft/raft_int.h"

#include "raftcask.h"

void raft_reset_election_timer(struct raft *r)
{
    /* Randomized in [e, 2e) so that split votes resolve quickly (§5.2). */
    int e = r->opts.election_ticks;
    r->randomized_election_ticks = e + (int)(raft_rand(r) % (uint64_t)e);
}

void raft_tick_election(struct raft *r)
{
    r->election_elapsed++;
    if (r->election_elapsed >= r->randomized_election_ticks && raft_is_voter(r)) {
        r->election_elapsed = 0;
        raft_campaign(r, r->opts.pre_vote, 0);
    }
}

static void clear_votes(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++)
        r->prs[i].vote = 0;
}

/* Counts the votes of voters; becomes leader or follower when the outcome is certain. */
static void tally_votes(struct raft *r)
{
    uint32_t granted = 0, rejected = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (!r->prs[i].is_voter)
            continue;
        if (r->prs[i].vote > 0)
            granted++;
        else if (r->prs[i].vote < 0)
            rejected++;
    }
    uint32_t quorum = raft_quorum(r);
    if (granted >= quorum) {
        if (r->role == RAFT_PRE_CANDIDATE)
            raft_campaign(r, 0, 0);
        else
            raft_become_leader(r);
    } else if (rejected > r->config.n_voters - quorum) {
        raft_become_follower(r, r->term, RAFT_NONE);
    }
}

int raft_campaign(struct raft *r, int pre_vote, int transfer)
{
    if (!raft_is_voter(r))
        return RC_EINVAL;
    uint64_t term;
    uint8_t type;
    if (pre_vote) {
        raft_become_pre_candidate(r);
        term = r->term + 1;
        type = RAFT_MSG_PREVOTE;
    } else {
        raft_become_candidate(r);
        term = r->term;
        type = RAFT_MSG_VOTE;
    }
    clear_votes(r);
    struct raft_progress *self = raft_progress_of(r, r->id);
    self->vote = 1;
    uint64_t last_index = raft_log_last_index(&r->log);
    uint64_t last_term = raft_log_last_term(&r->log);
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->is_voter || pr->id == r->id)
            continue;
        struct raft_message m = {.type = type,
                                 .to = pr->id,
                                 .term = term,
                                 .log_index = last_index,
                                 .log_term = last_term,
                                 .transfer = (uint8_t)(transfer ? 1 : 0)};
        raft_send(r, &m);
    }
    tally_votes(r); /* a single-voter cluster wins at once */
    return 0;
}

int raft_handle_vote_request(struct raft *r, const struct raft_message *m)
{
    int pre = m->type == RAFT_MSG_PREVOTE;
    int can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
                   (pre && m->term > r->term);
    int log_ok = raft_log_is_up_to_date(&r->log, m->log_index, m->log_term);
    if (r->opts.knobs.grant_vote_to_stale_log || (pre && r->opts.knobs.skip_prevote_log_check))
        log_ok = 1;
    struct raft_message resp = {.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
                                .to = m->from};
    if (can_vote && log_ok) {
        /* A grant carries the term it grants for; for a pre-vote that is our term + 1. */
        resp.term = m->term;
        if (!pre) {
            r->vote = m->from;
            r->election_elapsed = 0;
        }
    } else {
        resp.term = r->term;
        resp.reject = 1;
    }
    return raft_send(r, &resp);
}

int raft_handle_vote_response(struct raft *r, const struct raft_message *m)
{
    int expected = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    if ((r->role != RAFT_PRE_CANDIDATE && r->role != RAFT_CANDIDATE) || m->type != expected)
        return 0;
    /* Pre-vote grants come for our term + 1; a real vote for our term. */
    uint64_t want = r->role == RAFT_PRE_CANDIDATE ? r->term + 1 : r->term;
    if (!m->reject && m->term != want)
        return 0;
    struct raft_progress *pr = raft_progress_of(r, m->from);
    if (!pr || !pr->is_voter)
        return 0;
    if (pr->vote == 0)
        pr->vote = m->reject ? -1 : 1;
    tally_votes(r);
    return 0;
}

/* ---------------------------------------------------------------- leadership transfer */

void raft_abort_transfer(struct raft *r)
{
    r->transferee = RAFT_NONE;
}

int raft_maybe_send_timeout_now(struct raft *r, struct raft_progress *pr)
{
    if (r->transferee != pr->id || pr->match != raft_log_last_index(&r->log))
        return 0;
    struct raft_message m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = pr->id};
    return raft_send(r, &m);
}

int raft_transfer_leader(struct raft *r, uint64_t id)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (r->role != RAFT_LEADER)
        return RC_EAGAIN;
    if (id == r->id)
        return 0;
    struct raft_progress *pr = raft_progress_of(r, id);
    if (!pr || !pr->is_voter)
        return RC_EINVAL;
    if (r->transferee == id)
        return 0;
    r->transferee = id;
    /* The transfer must finish within one election timeout (invariant 5). */
    r->election_elapsed = 0;
    if (pr->match == raft_log_last_index(&r->log))
        return raft_maybe_send_timeout_now(r, pr);
    /* A lagging target is first caught up; its acknowledgement triggers TimeoutNow. */
    return raft_send_append(r, pr, 1);
}

int raft_handle_timeout_now(struct raft *r, const struct raft_message *m)
{
    if (r->role != RAFT_FOLLOWER || !raft_is_voter(r))
        return 0;
    /* Skip pre-vote: the leader asked, and voters must set their leases aside. */
    return raft_campaign(r, 0, 1);
}

/*
 * core.c — the Raft core's state, role changes, tick and message dispatch, ready/advance.
 *
 * Invariants (debug builds assert them):
 *   1. term never decreases; vote is reset only when term grows (raft_become_follower,
 *      raft_become_candidate), so a node votes at most once per term (election safety).
 *   2. A message leaves the core only through ready(), and the caller sends it only after
 *      persisting the hard state and entries of the same ready: a vote or an append
 *      acknowledgement never promises something that a crash could take back.
 *   3. The leader counts its own log for commit only up to its durable index
 *      (raft_durable_index): everything stable after raft_advance, or what raft_synced
 *      reported after raft_advance_unsynced — never entries that are only in memory or
 *      only written. So every committed entry is durable on a quorum. A leader applies what
 *      is committed even before its own copy is durable (docs/RAFT.md §1: after a power
 *      loss its state machine may then hold entries its log lost, which are committed and
 *      come back from the new leader).
 *   4. A node whose persistence failed (raft_advance with an error) is FAILED: it sends,
 *      acknowledges and applies nothing more. Stopping is the only safe answer, because
 *      it no longer knows what its disk holds.
 *   5. While a ready is outstanding the core is not mutated (asserted), so every pointer
 *      handed out in it stays valid until raft_advance.
 *
 * Who changes what:
 *   role, term, vote, leader   raft_become_follower / _pre_candidate / _candidate / _leader
 *   commit                     raft_commit_to (replication.c)
 *   applied, stable index      raft_advance, raft_advance_unsynced
 *   durable index              raft_advance, raft_synced
 *   failed                     raft_advance
 *
 * Step dispatch (raft_step) first settles terms (§5.1): a message of a higher term makes us
 * a follower of that term — except vote requests inside a leader lease (§4.2.3/§9.6) and
 * pre-vote traffic, which never moves terms. Messages of a lower term are dropped, but a
 * stale leader's append gets an answer carrying our term so that it steps down.
 */
#include "raft/raft_int.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <string.h>

/* ---------------------------------------------------------------- creation */

void raft_options_default(struct raft_options *opts, uint64_t id)
{
    memset(opts, 0, sizeof *opts);
    opts->id = id;
    opts->seed = id;
    opts->election_ticks = 10;
    opts->heartbeat_ticks = 1;
    opts->pre_vote = 1;
    opts->check_quorum = 1;
    opts->max_msg_bytes = 1 << 20;
    opts->max_inflight = 64;
    opts->snapshot_chunk_bytes = 64 * 1024;
}

uint64_t raft_rand(struct raft *r)
{
    /* splitmix64: a small, well-mixed generator; the sequence depends only on the seed. */
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int raft_create(const struct raft_options *opts, const struct raft_storage *storage,
                const struct raft_hard_state *hard_state, struct raft **out)
{
    if (!opts || opts->id == RAFT_NONE || opts->election_ticks < 2 || opts->heartbeat_ticks < 1 ||
        opts->heartbeat_ticks >= opts->election_ticks || opts->max_inflight < 1 ||
        opts->max_inflight > RAFT_MAX_INFLIGHT || opts->snapshot_chunk_bytes == 0 ||
        opts->snapshot_chunk_bytes > UINT32_MAX || !storage || !out)
        return RC_EINVAL;
    struct raft *r = rc_calloc(1, sizeof *r);
    if (!r)
        return RC_ENOMEM;
    r->id = opts->id;
    r->opts = *opts;
    r->rng = opts->seed;
    r->apply_limit = UINT64_MAX;
    struct raft_hard_state hs = {0, 0, 0};
    if (hard_state)
        hs = *hard_state;
    int rc = raft_log_init(&r->log, storage, hs.commit, opts->applied);
    if (rc != 0)
        goto fail_log;
    r->term = hs.term;
    r->vote = hs.vote;
    r->persisted = hs;
    r->durable = r->log.stable_last;
    rc = raft_config_recover(r);
    if (rc != 0)
        goto fail_config;
    raft_become_follower(r, r->term, RAFT_NONE);
    raft_check_invariants(r);
    *out = r;
    return 0;

fail_config:
    rc_free(r->prs);
    raft_log_free(&r->log);
fail_log:
    rc_free(r);
    return rc;
}

static void free_handed_messages(struct raft *r)
{
    for (size_t i = 0; i < r->n_msgs; i++) {
        rc_free(r->msgs[i].entries);
        rc_free(r->msgs[i].snapshot.data);
    }
    r->n_msgs = 0;
}

static void free_committed(struct raft *r)
{
    for (size_t i = 0; i < r->n_committed; i++)
        rc_free(r->committed[i].data);
    rc_free(r->committed);
    r->committed = NULL;
    r->n_committed = 0;
}

void raft_destroy(struct raft *r)
{
    if (!r)
        return;
    free_handed_messages(r);
    free_committed(r);
    raft_free_chunk(r);
    rc_free(r->msgs);
    rc_free(r->read_states);
    rc_free(r->reads);
    rc_free(r->prs);
    raft_log_free(&r->log);
    rc_free(r);
}

/* ---------------------------------------------------------------- helpers */

struct raft_progress *raft_progress_of(struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

int raft_is_voter(const struct raft *r)
{
    return raft_config_has_voter(&r->config, r->id);
}

uint32_t raft_quorum(const struct raft *r)
{
    return r->config.n_voters / 2 + 1;
}

/*
 * An acceptance of appends says only "my log matches yours up to index", and all messages of
 * one ready leave after the same persist: when the last message queued for the same node is
 * an acceptance in the same term, the new one raises its index instead of following it. A
 * follower that took several appends in one ready then answers once, with the highest.
 */
static int merge_acceptance(struct raft *r, const struct raft_message *m)
{
    if (m->type != RAFT_MSG_APPEND_RESP || m->reject)
        return 0;
    uint64_t term = m->term ? m->term : r->term;
    for (size_t i = r->n_msgs; i-- > 0;) {
        struct raft_message *q = &r->msgs[i];
        if (q->to != m->to)
            continue;
        if (q->type != RAFT_MSG_APPEND_RESP || q->reject || q->term != term)
            return 0;
        if (m->index > q->index)
            q->index = m->index;
        return 1;
    }
    return 0;
}

int raft_send(struct raft *r, struct raft_message *m)
{
    RAFT_ASSERT(m->to != r->id && m->to != RAFT_NONE);
    if (merge_acceptance(r, m))
        return 0;
    if (r->n_msgs == r->cap_msgs) {
        size_t cap = r->cap_msgs ? 2 * r->cap_msgs : 16;
        struct raft_message *msgs = rc_realloc(r->msgs, cap * sizeof *msgs);
        if (!msgs) {
            rc_free(m->entries);
            rc_free(m->snapshot.data);
            return RC_ENOMEM;
        }
        r->msgs = msgs;
        r->cap_msgs = cap;
    }
    m->from = r->id;
    if (m->term == 0)
        m->term = r->term;
    r->msgs[r->n_msgs++] = *m;
    return 0;
}

/* ---------------------------------------------------------------- invariants */

/*
 * Checks the invariants that hold between calls; debug builds run it at the end of every
 * public call that changes state. It costs O(unstable entries + servers).
 */
void raft_check_invariants(struct raft *r)
{
#if defined(RC_DEBUG) && RC_DEBUG
    const struct raft_log *log = &r->log;
    uint64_t last = raft_log_last_index(log);
    RAFT_ASSERT((r->role == RAFT_FAILED) == (r->failed != 0));
    RAFT_ASSERT(r->term >= r->persisted.term); /* terms never go back */
    RAFT_ASSERT(log->applied <= log->commit && log->commit <= last);
    RAFT_ASSERT(log->stable_first <= log->snapshot_index + 1);
    RAFT_ASSERT(log->stable_first > log->snapshot_index || log->stable_last >= log->snapshot_index);
    RAFT_ASSERT(log->snapshot_index <= log->applied);
    RAFT_ASSERT(log->offset >= log->stable_first && log->offset <= log->stable_last + 1);
    for (size_t i = 0; i < log->n; i++) {
        RAFT_ASSERT(log->ents[i].index == log->offset + i);
        RAFT_ASSERT(log->ents[i].term <= r->term);
        RAFT_ASSERT(i == 0 || log->ents[i].term >= log->ents[i - 1].term);
    }
    RAFT_ASSERT(r->prev_config_index <= r->config_index && r->config_index <= last);
    RAFT_ASSERT(r->n_prs == r->config.n_voters + r->config.n_learners);
    for (uint32_t i = 0; i < r->n_prs; i++)
        RAFT_ASSERT(r->prs[i].is_voter == raft_config_has_voter(&r->config, r->prs[i].id));
    if (r->role == RAFT_CANDIDATE)
        RAFT_ASSERT(r->vote == r->id);
    if (r->role == RAFT_LEADER) {
        RAFT_ASSERT(r->leader == r->id);
        for (uint32_t i = 0; i < r->n_prs; i++) {
            const struct raft_progress *pr = &r->prs[i];
            RAFT_ASSERT(pr->match < pr->next && pr->match <= last);
            if (pr->id == r->id && !r->opts.knobs.count_unsynced_self)
                RAFT_ASSERT(pr->match <= raft_durable_index(r)); /* only what is durable counts */
        }
    } else {
        RAFT_ASSERT(r->n_reads == 0 && r->transferee == RAFT_NONE);
    }
#else
    (void)r;
#endif
}

/* ---------------------------------------------------------------- role changes */

static void reset_term_state(struct raft *r, uint64_t term)
{
    RAFT_ASSERT(term >= r->term);
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->leader = RAFT_NONE;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    raft_reset_election_timer(r);
    raft_abort_transfer(r);
    raft_reads_reset(r);
    r->pending_broadcast = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        raft_progress_reset(&r->prs[i], raft_log_last_index(&r->log));
    }
}

void raft_become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
    reset_term_state(r, term);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
}

void raft_become_pre_candidate(struct raft *r)
{
    RAFT_ASSERT(r->role != RAFT_LEADER);
    /* A pre-candidate keeps its term and vote: pre-vote must change no persistent state. */
    reset_term_state(r, r->term);
    r->role = RAFT_PRE_CANDIDATE;
}

void raft_become_candidate(struct raft *r)
{
    RAFT_ASSERT(r->role != RAFT_LEADER);
    reset_term_state(r, r->term + 1);
    r->vote = r->id;
    r->role = RAFT_CANDIDATE;
}

void raft_become_leader(struct raft *r)
{
    RAFT_ASSERT(r->role == RAFT_CANDIDATE);
    RAFT_ASSERT(r->vote == r->id);
    reset_term_state(r, r->term);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    struct raft_progress *self = raft_progress_of(r, r->id);
    if (self) {
        /* Only what is on our disk counts for commit (invariant 3). */
        raft_progress_maybe_update(self, raft_durable_index(r));
        raft_progress_become_replicate(self);
        self->recent_active = 1;
    }
    /*
     * The no-op of §5.4.2/§8: entries of earlier terms are committed only indirectly, by
     * committing an entry of our own term after them. Without it a leader could wait
     * indefinitely to commit (and to serve ReadIndex) when no client writes.
     */
    if (!r->opts.knobs.skip_noop_on_election)
        raft_append_new_entry(r, RAFT_ENTRY_NOOP, NULL, 0, NULL);
    raft_broadcast_append(r, 1);
}

/* ---------------------------------------------------------------- inputs */

int raft_tick(struct raft *r)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (r->role == RAFT_LEADER)
        raft_tick_leader(r);
    else
        raft_tick_election(r);
    raft_check_invariants(r);
    return 0;
}

static int is_vote_request(uint8_t type)
{
    return type == RAFT_MSG_PREVOTE || type == RAFT_MSG_VOTE;
}

static int is_from_leader(uint8_t type)
{
    return type == RAFT_MSG_APPEND || type == RAFT_MSG_HEARTBEAT || type == RAFT_MSG_SNAPSHOT ||
           type == RAFT_MSG_TIMEOUT_NOW;
}

/* Settles the term of m; returns 1 if m must be processed further. */
static int settle_term(struct raft *r, const struct raft_message *m)
{
    if (m->term > r->term) {
        if (is_vote_request(m->type)) {
            /*
             * Leader lease: while we hear from a leader, a server that cannot (the removed or
             * partitioned one) must not push terms up and depose it. A transfer's campaign is
             * wanted by the leader, so it overrides the lease.
             */
            int in_lease = r->opts.check_quorum && r->leader != RAFT_NONE &&
                           r->election_elapsed < r->opts.election_ticks;
            if (in_lease && !m->transfer)
                return 0;
        }
        if (m->type == RAFT_MSG_PREVOTE)
            return 1; /* pre-vote never changes our term */
        if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)
            return 1; /* a grant for the term we would campaign in */
        raft_become_follower(r, m->term, is_from_leader(m->type) ? m->from : RAFT_NONE);
        return 1;
    }
    if (m->term < r->term) {
        if ((r->opts.check_quorum || r->opts.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /*
             * A leader cut off by a partition may still believe it leads; with pre-vote or
             * check-quorum our higher term would otherwise never reach it. Telling it our
             * term makes it step down.
             */
            struct raft_message resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from};
            raft_send(r, &resp);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_message resp = {.type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .reject = 1};
            raft_send(r, &resp);
        }
        return 0;
    }
    return 1;
}

static int step(struct raft *r, const struct raft_message *m);

int raft_step(struct raft *r, const struct raft_message *m)
{
    int rc = step(r, m);
    raft_check_invariants(r);
    return rc;
}

static int step(struct raft *r, const struct raft_message *m)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (m->to != r->id || m->from == RAFT_NONE || m->from == r->id || m->term == 0 || m->type < 1 ||
        m->type > RAFT_MSG_TYPE_MAX)
        return RC_EINVAL;
    if (!settle_term(r, m))
        return 0;

    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        return raft_handle_vote_request(r, m);
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        return raft_handle_vote_response(r, m);
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        /* Same term: the sender is this term's only leader (election safety). */
        if (r->role == RAFT_LEADER)
            return 0;
        if (r->role != RAFT_FOLLOWER)
            raft_become_follower(r, r->term, m->from);
        r->leader = m->from;
        r->election_elapsed = 0;
        if (m->type == RAFT_MSG_SNAPSHOT)
            return raft_handle_snapshot(r, m);
        return m->type == RAFT_MSG_APPEND ? raft_handle_append(r, m) : raft_handle_heartbeat(r, m);
    case RAFT_MSG_APPEND_RESP:
        return raft_handle_append_response(r, m);
    case RAFT_MSG_HEARTBEAT_RESP:
        return raft_handle_heartbeat_response(r, m);
    case RAFT_MSG_TIMEOUT_NOW:
        return raft_handle_timeout_now(r, m);
    case RAFT_MSG_SNAPSHOT_RESP:
        return raft_handle_snapshot_response(r, m);
    }
    return 0;
}

/* ---------------------------------------------------------------- ready / advance */

static int hard_state_changed(const struct raft *r)
{
    return r->term != r->persisted.term || r->vote != r->persisted.vote ||
           r->log.commit != r->persisted.commit;
}

/* Last index the storage holds for us (a pending truncation is not written yet). */
static uint64_t written_index(const struct raft *r)
{
    return r->log.stable_last < r->log.offset ? r->log.stable_last : r->log.offset - 1;
}

uint64_t raft_durable_index(const struct raft *r)
{
    uint64_t w = written_index(r);
    return r->durable < w ? r->durable : w;
}

/* The last committed index that may be handed out (raft_limit_apply). */
static uint64_t applicable(const struct raft *r)
{
    return r->log.commit < r->apply_limit ? r->log.commit : r->apply_limit;
}

int raft_has_ready(struct raft *r)
{
    if (r->failed)
        return 0;
    return (r->role == RAFT_LEADER && r->pending_broadcast) || r->log.n > 0 || r->has_chunk ||
           hard_state_changed(r) || r->n_msgs > 0 || applicable(r) > r->log.applied ||
           r->n_read_states > 0;
}

/*
 * Whether the ready being handed out may be persisted without waiting for its entries to be
 * durable: a leader's, with no snapshot chunk, the same term and vote as on disk, and
 * entries that only extend the stable log (no truncation pending).
 */
static int may_defer_sync(const struct raft *r)
{
    return r->role == RAFT_LEADER && !r->has_chunk && r->term == r->persisted.term &&
           r->vote == r->persisted.vote && r->log.offset == r->log.stable_last + 1;
}

/* Deep-copies the next committed entries to apply into r->committed. */
static int collect_committed(struct raft *r)
{
    uint64_t lo = r->log.applied + 1, hi = applicable(r) + 1;
    if (lo >= hi)
        return 0;
    if (hi - lo > RAFT_MAX_APPLY_BATCH)
        hi = lo + RAFT_MAX_APPLY_BATCH;
    struct raft_entry *block;
    size_t n;
    int rc = raft_log_copy_entries(&r->log, lo, hi, (size_t)-1, &block, &n);
    if (rc != 0)
        return rc;
    r->committed = rc_calloc(n, sizeof *r->committed);
    int failed = !r->committed;
    for (size_t i = 0; !failed && i < n; i++) {
        r->committed[i] = block[i];
        r->committed[i].data = NULL;
        if (block[i].len && !(r->committed[i].data = rc_memdup(block[i].data, block[i].len)))
            failed = 1;
        r->n_committed = i + 1;
    }
    rc_free(block);
    if (failed) {
        free_committed(r);
        return RC_ENOMEM;
    }
    return 0;
}

int raft_ready(struct raft *r, struct raft_ready *rd)
{
    RAFT_ASSERT(!r->ready_outstanding);
    memset(rd, 0, sizeof *rd);
    if (r->failed)
        return RC_ECLOSED;
    if (r->role == RAFT_LEADER && r->pending_broadcast) {
        /* Everything proposed since the last ready goes out in one append per follower. */
        r->pending_broadcast = 0;
        raft_broadcast_append(r, 0);
    }
    int rc = collect_committed(r);
    if (rc != 0)
        return rc;
    rd->snapshot_chunk = r->has_chunk ? &r->chunk : NULL;
    rd->has_hard_state = hard_state_changed(r);
    rd->hard_state.term = r->term;
    rd->hard_state.vote = r->vote;
    rd->hard_state.commit = r->log.commit;
    rd->entries = r->log.ents;
    rd->n_entries = r->log.n;
    rd->messages = r->msgs;
    rd->n_messages = r->n_msgs;
    rd->committed = r->committed;
    rd->n_committed = r->n_committed;
    rd->read_states = r->read_states;
    rd->n_read_states = r->n_read_states;
    rd->may_defer_sync = may_defer_sync(r);
    r->handed = *rd;
    r->ready_outstanding = 1;
    raft_check_invariants(r);
    return 0;
}

/* Counts the leader's own durable entries and commits what a quorum now holds. broadcast:
 * send the new commit index at once (else it rides on the next append or heartbeat). */
static void leader_count_self(struct raft *r, int broadcast)
{
    if (r->role != RAFT_LEADER)
        return;
    struct raft_progress *self = raft_progress_of(r, r->id);
    if (self)
        raft_progress_maybe_update(self, r->opts.knobs.count_unsynced_self ? written_index(r)
                                                                           : raft_durable_index(r));
    /* Committing our own removal makes us step down: then there is nothing to send. */
    if (raft_maybe_commit(r) && r->role == RAFT_LEADER && broadcast)
        raft_broadcast_append(r, 1);
}

static int advance(struct raft *r, int persist_error, int synced)
{
    RAFT_ASSERT(r->ready_outstanding);
    r->ready_outstanding = 0;
    free_handed_messages(r);
    r->n_read_states = 0;
    if (persist_error != 0) {
        /* Invariant 4: we cannot tell what reached the disk; stop taking part. */
        r->sync_epoch++;
        free_committed(r);
        raft_free_chunk(r);
        raft_become_follower(r, r->term, RAFT_NONE);
        r->role = RAFT_FAILED;
        r->failed = 1;
        return 0;
    }
    raft_free_chunk(r);
    if (r->handed.has_hard_state)
        r->persisted = r->handed.hard_state;
    if (r->handed.n_entries) {
        const struct raft_entry *last = &r->handed.entries[r->handed.n_entries - 1];
        raft_log_stable_to(&r->log, last->index);
    }
    if (r->n_committed) {
        RAFT_ASSERT(r->committed[0].index == r->log.applied + 1);
        r->log.applied = r->committed[r->n_committed - 1].index;
        RAFT_ASSERT(r->log.applied <= r->log.commit);
    }
    free_committed(r);
    if (synced) {
        /* Everything written is durable now, whatever an fsync in flight will report. */
        r->durable = r->log.stable_last;
        r->sync_epoch++;
    }
    leader_count_self(r, 1);
    raft_check_invariants(r);
    return 0;
}

int raft_advance(struct raft *r, int persist_error)
{
    return advance(r, persist_error, 1);
}

int raft_advance_unsynced(struct raft *r)
{
    RAFT_ASSERT(r->ready_outstanding && r->handed.may_defer_sync);
    return advance(r, 0, 0);
}

int raft_self_sync_needed(const struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return 1;
    if (!raft_is_voter(r))
        return 0; /* our copy does not count */
    uint32_t others = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct raft_progress *pr = &r->prs[i];
        others += pr->is_voter && pr->id != r->id && pr->state == PROGRESS_REPLICATE &&
                  (pr->recent_active || pr->was_active);
    }
    return others < raft_quorum(r);
}

int raft_sync_point(const struct raft *r, struct raft_sync_point *p)
{
    p->index = written_index(r);
    p->epoch = r->sync_epoch;
    return !r->failed && p->index > raft_durable_index(r);
}

int raft_synced(struct raft *r, const struct raft_sync_point *p)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (p->epoch != r->sync_epoch || p->index <= r->durable)
        return 0; /* a raft_advance since made it (and more) durable */
    r->durable = p->index < r->log.stable_last ? p->index : r->log.stable_last;
    /* As for an acknowledgement (replication.c), the new commit index rides on the next
     * append or heartbeat rather than an empty append of its own. */
    leader_count_self(r, 0);
    raft_check_invariants(r);
    return 0;
}

int raft_compacted(struct raft *r, uint64_t index)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (index > r->log.applied || index >= r->log.offset || index > r->log.stable_last)
        return RC_EINVAL;
    int rc = raft_log_compacted(&r->log, index);
    if (rc != 0)
        return rc; /* the storage's first index contradicts the compaction: nothing changed */
    if (r->durable < index)
        r->durable = index; /* the snapshot covering it is durable */
    raft_check_invariants(r);
    return 0;
}

void raft_limit_apply(struct raft *r, uint64_t limit)
{
    r->apply_limit = limit;
}

/* ---------------------------------------------------------------- inspection */

void raft_status(const struct raft *r, struct raft_status *st)
{
    memset(st, 0, sizeof *st);
    st->id = r->id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->leader;
    st->commit = r->log.commit;
    st->applied = r->log.applied;
    st->first_index = r->log.stable_first;
    st->snapshot_index = r->log.snapshot_index;
    st->last_index = raft_log_last_index(&r->log);
    st->last_term = raft_log_term_or_zero((struct raft_log *)&r->log, st->last_index);
    st->stable_index = raft_durable_index(r);
    st->config_index = r->config_index;
    st->config = r->config;
    st->transferee = r->transferee;
    st->snapshots_refused = r->snapshots_refused;
    st->snapshots_refused_by_peers = r->snapshots_refused_by_peers;
}

int raft_log_term(struct raft *r, uint64_t index, uint64_t *term)
{
    return raft_log_term_at(&r->log, index, term);
}

int raft_snapshots_in_flight(const struct raft *r)
{
    int n = 0;
    for (uint32_t i = 0; r->role == RAFT_LEADER && i < r->n_prs; i++)
        n += r->prs[i].state == PROGRESS_SNAPSHOT && r->prs[i].recent_active &&
             !r->prs[i].snap_refused;
    return n;
}

int raft_peer_after_snapshot(const struct raft *r, uint64_t id, uint32_t within_ticks)
{
    for (uint32_t i = 0; r->role == RAFT_LEADER && i < r->n_prs; i++) {
        const struct raft_progress *pr = &r->prs[i];
        if (pr->id == id)
            return (pr->state == PROGRESS_SNAPSHOT ||
                    (pr->installed_index && pr->match <= pr->installed_index)) &&
                   pr->quiet_ticks <= within_ticks;
    }
    return 0;
}

int raft_peer_heard(const struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; r->role == RAFT_LEADER && i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return r->prs[i].heard;
    return 0;
}

int raft_peer_active(const struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; r->role == RAFT_LEADER && i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return r->prs[i].recent_active || r->prs[i].was_active;
    return 0;
}

int raft_peer_match(const struct raft *r, uint64_t id, uint64_t *match)
{
    if (r->role != RAFT_LEADER)
        return RC_ENOTFOUND;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == id) {
            *match = r->prs[i].match;
            return 0;
        }
    }
    return RC_ENOTFOUND;
}

/*
 * raft_int.h — the state of the Raft core, shared by its files (not used outside src/raft).
 *
 * Which file owns what:
 *   core.c         creation, role changes (become_*), tick and step dispatch, ready/advance
 *   log.c          the log as the core sees it: stable (storage) + unstable (memory)
 *   progress.c     the leader's per-follower replication progress and quorum arithmetic
 *   election.c     pre-vote, vote, campaign, leadership transfer
 *   replication.c  append/heartbeat send and receive, commit, proposals
 *   readindex.c    ReadIndex rounds
 *   snapshot.c     InstallSnapshot, streamed in chunks
 *   membership.c   configuration entries, one-server changes, progress set upkeep
 */
#ifndef RC_RAFT_INT_H
#define RC_RAFT_INT_H

#include "raft/raft.h"

#include <stdio.h>
#include <stdlib.h>

/*
 * Invariants are asserted in debug builds (-DRC_DEBUG=1, which the test build uses). They
 * guard the core's own reasoning, never peer input: a malformed or hostile message must be
 * rejected, not asserted on.
 */
#if defined(RC_DEBUG) && RC_DEBUG
#define RAFT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: raft invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#else
#define RAFT_ASSERT(cond) ((void)0)
#endif

#define RAFT_MAX_INFLIGHT 256
/* Most committed entries handed out by one raft_ready(). */
#define RAFT_MAX_APPLY_BATCH 256
/* Heartbeat responses without progress after which a replicating follower is probed again. */
#define RAFT_STALL_HEARTBEATS 3

/* ---------------------------------------------------------------- log (log.c) */

struct raft_log {
    struct raft_storage storage;
    uint64_t stable_first; /* first index held by storage */
    uint64_t stable_last;  /* last index held by storage that the core may read */
    /*
     * Entries not yet persisted, ents[i] has index offset + i. Their data is owned here.
     * offset <= stable_last means the next persist truncates storage at offset.
     */
    struct raft_entry *ents;
    size_t n, cap;
    uint64_t offset;
    uint64_t commit;
    uint64_t applied;
    /* the last snapshot: stable_first <= snapshot_index + 1 (log.c invariant 4) */
    uint64_t snapshot_index, snapshot_term;
};

int raft_log_init(struct raft_log *log, const struct raft_storage *storage, uint64_t commit,
                  uint64_t applied);
void raft_log_free(struct raft_log *log);
uint64_t raft_log_last_index(const struct raft_log *log);
uint64_t raft_log_last_term(struct raft_log *log);
/* Term at index; RC_ENOTFOUND if out of range (index 0 has term 0). */
int raft_log_term_at(struct raft_log *log, uint64_t index, uint64_t *term);
/* Term at index or 0 when unknown: for comparisons where "unknown" means "no match". */
uint64_t raft_log_term_or_zero(struct raft_log *log, uint64_t index);
int raft_log_matches(struct raft_log *log, uint64_t index, uint64_t term);
/* 1 if a log ending at (last_index, last_term) is at least as up to date as ours (§5.4.1). */
int raft_log_is_up_to_date(struct raft_log *log, uint64_t last_index, uint64_t last_term);
/* Index of the first entry of ents that is absent or has another term in our log; 0: none. */
uint64_t raft_log_find_conflict(struct raft_log *log, const struct raft_entry *ents, size_t n);
/* Appends copies of ents (consecutive indexes), truncating our log at ents[0].index. */
int raft_log_append(struct raft_log *log, const struct raft_entry *ents, size_t n);
/*
 * Copies entries [lo, hi) (at most max_bytes of data, at least one entry) into one
 * rc_malloc'ed block: *out points to the entry array, data follows it. Free with rc_free.
 */
int raft_log_copy_entries(struct raft_log *log, uint64_t lo, uint64_t hi, size_t max_bytes,
                          struct raft_entry **out, size_t *n);
/* The unstable entries up to index were persisted. */
void raft_log_stable_to(struct raft_log *log, uint64_t index);
/* Storage compacted to a snapshot at index, keeping entries from its first index on (at most
 * index + 1); RC_ECORRUPT, nothing changed, if that first index is past it or went down. */
int raft_log_compacted(struct raft_log *log, uint64_t index);
/* The log is replaced by a snapshot ending at (index, term): empty after it. */
void raft_log_restore(struct raft_log *log, uint64_t index, uint64_t term);
/* Largest index <= index whose term is <= term (for fast backtracking). */
uint64_t raft_log_last_index_with_term_at_most(struct raft_log *log, uint64_t index, uint64_t term);

/* ---------------------------------------------------------------- progress (progress.c) */

enum raft_progress_state { PROGRESS_PROBE, PROGRESS_REPLICATE, PROGRESS_SNAPSHOT };

struct raft_progress {
    uint64_t id;
    int is_voter;
    uint64_t match; /* highest index known replicated on the server */
    uint64_t next;  /* next index to send */
    enum raft_progress_state state;
    int probe_sent;       /* probe: an append is outstanding; wait for an answer or heartbeat */
    int recent_active;    /* heard from since the last check-quorum */
    int was_active;       /* heard from in the check-quorum interval before */
    int heard;            /* has answered this leader at least once */
    uint32_t quiet_ticks; /* leader ticks since it last answered (saturating) */
    int stalled_heartbeats;
    int beat_pending;     /* a periodic heartbeat went out since an answer last acted */
    uint64_t acked_round; /* highest ReadIndex round the server confirmed */
    int vote;             /* this election: 0 unknown, 1 granted, -1 rejected */
    /* snapshot state: the snapshot being sent and how much the follower confirmed */
    uint64_t snap_index, snap_term;
    uint64_t snap_offset;
    int snap_sent;            /* a chunk is in flight (stop-and-wait) */
    int snap_refused;         /* the follower refused this snapshot's data (its CRC) */
    uint64_t installed_index; /* the last snapshot it confirmed whole: it rebuilds from it */
    /* ring of the last index of each append in flight (replicate state) */
    uint64_t inflight[RAFT_MAX_INFLIGHT];
    int inflight_start, inflight_count;
};

void raft_progress_reset(struct raft_progress *pr, uint64_t last_index);
void raft_progress_become_probe(struct raft_progress *pr);
void raft_progress_become_replicate(struct raft_progress *pr);
int raft_progress_is_paused(const struct raft_progress *pr, int max_inflight);
void raft_progress_sent(struct raft_progress *pr, uint64_t last_sent, int n_entries);
/* An append was acknowledged up to index; 1 if match moved. */
int raft_progress_maybe_update(struct raft_progress *pr, uint64_t index);
/* An append at rejected was refused; next_probe is where to try. 1 if not stale. */
int raft_progress_maybe_decrease(struct raft_progress *pr, uint64_t rejected, uint64_t next_probe);

/* ---------------------------------------------------------------- the core */

struct raft_pending_read {
    uint64_t ctx;
    uint64_t index;
    uint64_t round; /* 0 while no round covering it has started */
};

struct raft {
    uint64_t id;
    struct raft_options opts;
    struct raft_log log;

    /* persistent state (with log.commit) */
    uint64_t term;
    uint64_t vote;

    enum raft_role role;
    uint64_t leader;
    int failed;

    /* configuration in force: the last configuration entry of the log */
    struct raft_config config;
    uint64_t config_index;
    struct raft_config prev_config; /* in force before config_index */
    uint64_t prev_config_index;

    /* one progress per server of config (leader: replication; candidate: votes) */
    struct raft_progress *prs;
    uint32_t n_prs;

    int election_elapsed;
    int heartbeat_elapsed;
    int randomized_election_ticks;
    uint64_t rng;

    uint64_t transferee;
    int pending_broadcast; /* leader: proposals appended since the last broadcast */

    struct raft_pending_read *reads;
    size_t n_reads, cap_reads;
    uint64_t read_round;

    /* outbox */
    struct raft_message *msgs;
    size_t n_msgs, cap_msgs;
    struct raft_read_state *read_states;
    size_t n_read_states, cap_read_states;

    /* ready/advance */
    struct raft_hard_state persisted;
    /*
     * Last index known durable (raft_durable_index clamps it to the log): moved to the
     * whole stable log by raft_advance, and by raft_synced after raft_advance_unsynced.
     * sync_epoch counts raft_advance calls, so a raft_synced for an fsync that began
     * before one of them (which made everything durable, or truncated) is ignored.
     */
    uint64_t durable;
    uint64_t sync_epoch;
    int ready_outstanding;
    struct raft_ready handed;
    struct raft_entry *committed; /* deep copies handed out; data owned */
    size_t n_committed;
    /* an incoming snapshot chunk waiting to be written (data owned) */
    struct raft_snapshot_chunk chunk;
    int has_chunk;
    uint64_t apply_limit;       /* raft_limit_apply: no committed entry above it is handed out */
    uint64_t snapshots_refused; /* raft_status: as a follower */
    uint64_t snapshots_refused_by_peers; /* raft_status: as a leader */
};

/* core.c */
void raft_check_invariants(struct raft *r);
void raft_become_follower(struct raft *r, uint64_t term, uint64_t leader);
void raft_become_pre_candidate(struct raft *r);
void raft_become_candidate(struct raft *r);
void raft_become_leader(struct raft *r);
/* Queues m for sending; takes ownership of m->entries (rc_malloc'ed block). */
int raft_send(struct raft *r, struct raft_message *m);
uint64_t raft_rand(struct raft *r);
struct raft_progress *raft_progress_of(struct raft *r, uint64_t id);
int raft_is_voter(const struct raft *r);
/* Number of voters needed for a majority of the configuration in force. */
uint32_t raft_quorum(const struct raft *r);
/* Last index of our log known durable: what a leader counts for itself and applies up to. */
uint64_t raft_durable_index(const struct raft *r);

/* election.c */
void raft_reset_election_timer(struct raft *r);
void raft_tick_election(struct raft *r);
int raft_campaign(struct raft *r, int pre_vote, int transfer);
int raft_handle_vote_request(struct raft *r, const struct raft_message *m);
int raft_handle_vote_response(struct raft *r, const struct raft_message *m);
int raft_handle_timeout_now(struct raft *r, const struct raft_message *m);
void raft_abort_transfer(struct raft *r);
int raft_maybe_send_timeout_now(struct raft *r, struct raft_progress *pr);

/* replication.c */
void raft_tick_leader(struct raft *r);
int raft_send_append(struct raft *r, struct raft_progress *pr, int send_if_empty);
void raft_broadcast_append(struct raft *r, int send_if_empty);
void raft_send_heartbeat(struct raft *r, const struct raft_progress *pr);
void raft_broadcast_heartbeat(struct raft *r);
int raft_handle_append(struct raft *r, const struct raft_message *m);
int raft_handle_append_response(struct raft *r, const struct raft_message *m);
int raft_handle_heartbeat(struct raft *r, const struct raft_message *m);
int raft_handle_heartbeat_response(struct raft *r, const struct raft_message *m);
/* Leader: advances commit to the quorum's match if allowed; 1 if it moved. */
int raft_maybe_commit(struct raft *r);
/* Appends entries to the log, taking any configuration entry among them into force. */
int raft_append_to_log(struct raft *r, const struct raft_entry *ents, size_t n);
int raft_append_new_entry(struct raft *r, uint8_t type, const void *data, size_t len,
                          uint64_t *index);
void raft_commit_to(struct raft *r, uint64_t index);

/* snapshot.c */
int raft_send_snapshot(struct raft *r, struct raft_progress *pr);
int raft_handle_snapshot(struct raft *r, const struct raft_message *m);
int raft_handle_snapshot_response(struct raft *r, const struct raft_message *m);
void raft_snapshot_on_heartbeat_response(struct raft *r, struct raft_progress *pr);
void raft_free_chunk(struct raft *r);

/* readindex.c */
void raft_reads_reset(struct raft *r);
void raft_reads_on_heartbeat_ack(struct raft *r);
int raft_push_read_state(struct raft *r, uint64_t ctx, uint64_t index);

/* membership.c */
int raft_config_recover(struct raft *r);
void raft_config_on_append(struct raft *r, const struct raft_entry *e);
int raft_progress_rebuild(struct raft *r);
void raft_maybe_step_down_after_removal(struct raft *r);

#endif

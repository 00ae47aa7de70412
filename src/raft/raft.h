/*
 * raft.h — the pure Raft consensus core of raftcask (internal module, prefix raft_).
 *
 * The core is a deterministic state machine in the manner of etcd-io/raft's RawNode: it does
 * no I/O, reads no clock, starts no thread and draws randomness only from a PRNG seeded by
 * the caller. The caller drives it:
 *
 *     raft_tick(r)                      one logical clock tick
 *     raft_step(r, &msg)                a message received from a peer
 *     raft_propose(r, data, len, ...)   a client write (leader only)
 *     raft_read_index(r, ctx)           a linearizable read (leader only)
 *     raft_transfer_leader(r, id)       hand leadership to a voter
 *     raft_change_membership(r, op, id) add a learner, promote it, or remove a server
 *
 * and after any of them asks raft_has_ready() / raft_ready() what to do:
 *
 *     1. write ready.snapshot_chunk if any (installing the snapshot if it is the last
 *        chunk), then persist ready.entries (deleting every stored entry at or after
 *        ready.entries[0].index first) and ready.hard_state (if has_hard_state), and make
 *        all of it durable (fsync) — in that order: snapshot, entries, hard state. Writing
 *        in order is not enough: the snapshot and entries must be durable BEFORE the hard
 *        state can be (an fsync between them, or one append-only log of checksummed
 *        records replayed only up to its first bad record). A crash that keeps the hard
 *        state's commit but loses entries or a truncation is unsafe: an independent review
 *        made the simulator keep "hard state, not entries" and found a commit disagreement
 *        (seed 29); see docs/RAFT.md;
 *     2. only then send ready.messages (the Raft safety argument assumes that a vote or an
 *        append acknowledgement leaves a node only once what it acknowledges is on disk).
 *        A leader's APPEND, HEARTBEAT and SNAPSHOT messages may leave before step 1 when
 *        the ready has no snapshot chunk and changes neither term nor vote (thesis
 *        §10.2.1; node.c early_sends_ok; docs/RAFT.md §1): they acknowledge nothing, and
 *        the core counts the leader's own entries only once raft_advance says they are
 *        stable;
 *     3. apply ready.committed in order, and answer the reads of ready.read_states once the
 *        applied index reaches each read's index;
 *     4. call raft_advance(r, 0), or raft_advance(r, error) if step 1 failed: the core then
 *        stops taking part (it steps down and answers RC_ECLOSED to everything); the caller
 *        recreates it from storage, as after a crash.
 *
 * Asynchronous persistence (a leader's, in the manner of etcd-io/raft's AsyncStorageWrites;
 * thesis §10.2.1): when ready.may_defer_sync is 1 the caller may write the ready's entries
 * without making them durable — no fsync, and no hard state written — do steps 2 and 3 at
 * once (every message may leave) and call raft_advance_unsynced(r). It makes the log durable
 * later: raft_sync_point() names what has been written, and once an fsync begun after that
 * call returns, raft_synced() reports it. Until then the core does not count
 * those entries for commit, so the followers' durable copies must commit them (or the
 * leader's fsync, which raft_self_sync_needed() says is needed at once when the followers
 * alone are no quorum). Committed entries are handed out to apply even before the leader's
 * copy is durable. Any later raft_advance() must mean that everything written so far is
 * durable (one fsync of the whole log does it).
 *
 * Between raft_ready() and raft_advance() the caller may call only the read-only getters
 * (raft_status, raft_log_term, raft_self_sync_needed, raft_sync_point); every pointer in a
 * struct raft_ready is owned by the core and stays valid until raft_advance().
 *
 * The stable log is read through struct raft_storage, supplied by the caller (the simulator's
 * in-memory storage, later the segment files). The core keeps only the entries not yet
 * persisted ("unstable") in memory.
 *
 * Configuration changes take effect when their entry is appended to a log (not when it is
 * committed), one server at a time (Ongaro's thesis §4.1); see docs/RAFT.md.
 */
#ifndef RC_RAFT_H
#define RC_RAFT_H

#include <stddef.h>
#include <stdint.h>

/* Most servers a configuration may hold (voters and learners together). */
#define RAFT_MAX_NODES 16

/* Node ids are non-zero; 0 means "none". */
#define RAFT_NONE 0

/*
 * Largest entry data the core accepts (raft_propose: RC_ETOOBIG) and decodes from a peer
 * (RC_EPROTO); the log store holds entries up to this size, and the transport's default
 * frame limit leaves room for one such entry in an append.
 */
#define RAFT_ENTRY_MAX_BYTES (1u << 30)

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* client data */
    RAFT_ENTRY_NOOP = 1,   /* appended by every new leader so that it can commit (§5.4.2) */
    RAFT_ENTRY_CONFIG = 2, /* data is a raft_config_encode()d configuration */
};

/* A log entry. Who owns data is said wherever an entry is handed over. */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len; /* bytes at data */
    void *data;
};

/* A cluster configuration: voters elect and count for commit; learners only replicate. */
struct raft_config {
    uint32_t n_voters;
    uint32_t n_learners;
    uint64_t voters[RAFT_MAX_NODES];
    uint64_t learners[RAFT_MAX_NODES];
};

/* What must survive a crash besides the log. */
struct raft_hard_state {
    uint64_t term;
    uint64_t vote;   /* who we voted for in term; RAFT_NONE if nobody */
    uint64_t commit; /* highest index known committed (an optimisation; may lag) */
};

enum raft_msg_type {
    RAFT_MSG_PREVOTE = 1,        /* "would you vote for me in term?" — changes no state */
    RAFT_MSG_PREVOTE_RESP = 2,   /* reject = 0 grants */
    RAFT_MSG_VOTE = 3,           /* RequestVote */
    RAFT_MSG_VOTE_RESP = 4,      /* reject = 0 grants */
    RAFT_MSG_APPEND = 5,         /* AppendEntries: entries after (log_index, log_term) */
    RAFT_MSG_APPEND_RESP = 6,    /* accept: index = last matching; reject: hint_* */
    RAFT_MSG_HEARTBEAT = 7,      /* commit and a read-index round number in ctx */
    RAFT_MSG_HEARTBEAT_RESP = 8, /* echoes ctx */
    RAFT_MSG_SNAPSHOT = 9,       /* InstallSnapshot chunk */
    RAFT_MSG_SNAPSHOT_RESP = 10,
    RAFT_MSG_TIMEOUT_NOW = 11, /* leadership transfer: campaign at once, skip pre-vote */
};
#define RAFT_MSG_TYPE_MAX 11

/*
 * One message. Fields not used by a type are zero. Field use by type:
 *   PREVOTE/VOTE       log_index, log_term = candidate's last entry; transfer = 1 if the
 *                      candidate campaigns because of TimeoutNow (overrides leader leases).
 *                      term = the term campaigned for (for PREVOTE: our term + 1).
 *   *_RESP (votes)     reject; term = the term granted for, or the voter's term on reject.
 *   APPEND             log_index, log_term = entry preceding entries; commit; entries.
 *   APPEND_RESP        reject = 0: index = last index now matching the leader.
 *                      reject = 1: index = the rejected log_index; hint_index, hint_term =
 *                      the last entry of ours whose term is <= the leader's log_term, where
 *                      the leader should probe next (fast backtracking).
 *   HEARTBEAT          commit (never above the follower's known match), ctx = read round.
 *   HEARTBEAT_RESP     ctx echoed.
 *   SNAPSHOT           snapshot.* (a chunk at snapshot.offset; done marks the last).
 *   SNAPSHOT_RESP      snapshot.index/term = the snapshot; snapshot.offset = bytes the
 *                      follower holds durably; snapshot.done = 1 once installed (or not
 *                      needed), and then index = the last index now matching the leader.
 */
struct raft_message {
    uint8_t type; /* enum raft_msg_type */
    uint8_t reject;
    uint8_t transfer;
    uint64_t from, to, term;
    uint64_t log_index, log_term;
    uint64_t index;
    uint64_t commit;
    uint64_t hint_index, hint_term;
    uint64_t ctx;
    uint32_t n_entries;
    struct raft_entry *entries;
    struct {
        uint64_t index, term; /* last entry covered by the snapshot */
        struct raft_config config;
        uint64_t offset; /* byte offset of this chunk within the snapshot data */
        uint8_t done;    /* 1 on the last chunk */
        uint32_t len;
        void *data;
        uint32_t crc; /* CRC-32C of the whole snapshot's data (0: not known) */
    } snapshot;
};

/* What a snapshot covers: the state after applying entries up to index. */
struct raft_snapshot_meta {
    uint64_t index, term;      /* last entry covered; 0, 0 when there is no snapshot */
    struct raft_config config; /* configuration in force at index */
    uint64_t size_bytes;       /* length of the snapshot data */
    uint32_t crc;              /* CRC-32C of the snapshot data (0: not known) */
};

/*
 * A chunk of an incoming snapshot, handed out by raft_ready() for the caller to write at
 * offset into the snapshot (meta.index, meta.term). A chunk at offset 0 starts a new
 * incoming snapshot and discards any partial one. When done is 1 the chunk is the last: after
 * writing it the caller installs the snapshot — discards its whole log, makes the snapshot
 * the base of its storage (first index meta.index + 1, term(meta.index) = meta.term) and
 * restores its state machine from it (applied index meta.index).
 */
struct raft_snapshot_chunk {
    struct raft_snapshot_meta meta;
    uint64_t offset;
    uint32_t len;
    const void *data;
    int done;
};

/* A linearizable read confirmed by a quorum: serve it once applied index >= index. */
struct raft_read_state {
    uint64_t ctx;   /* the caller's ctx from raft_read_index */
    uint64_t index; /* commit index at the time the read was made */
};

/*
 * What the caller must do next (see the top of this file for the order). All pointers are
 * owned by the core and valid until raft_advance(); entry data included.
 */
struct raft_ready {
    /* Write first (before entries and hard state), if not NULL. */
    const struct raft_snapshot_chunk *snapshot_chunk;
    int has_hard_state;
    struct raft_hard_state hard_state;
    /* To persist: delete stored entries with index >= entries[0].index, then append. */
    const struct raft_entry *entries;
    size_t n_entries;
    const struct raft_message *messages;
    size_t n_messages;
    /* Committed entries to apply, in index order. */
    const struct raft_entry *committed;
    size_t n_committed;
    const struct raft_read_state *read_states;
    size_t n_read_states;
    /*
     * 1: the caller may persist this ready with raft_advance_unsynced (see the top of this
     * file). Only a leader's ready with no snapshot chunk, the term and vote it last
     * persisted, and entries that only extend its log.
     */
    int may_defer_sync;
};

/*
 * The stable log, read by the core. Indexes are 1-based; the storage holds entries
 * [first_index, last_index] and knows the term of the snapshot's index. first_index is the
 * snapshot's index + 1 (1 with no snapshot), or lower when the storage keeps entries at and
 * before the snapshot's index (trailing entries, which reach it). Calls return 0 or a
 * negative RC_E* code.
 * Data pointers written by entries() stay valid until the next call into the storage;
 * the core copies what it keeps.
 */
struct raft_storage {
    void *ctx;
    int (*first_index)(void *ctx, uint64_t *index);
    int (*last_index)(void *ctx, uint64_t *index);
    /* term of index, for first_index <= index <= last_index and the snapshot's index */
    int (*term)(void *ctx, uint64_t index, uint64_t *term);
    /*
     * Entries [lo, hi) into out (room for hi - lo), stopping early once their data exceeds
     * max_bytes (but always at least one entry). *n receives the count written.
     */
    int (*entries)(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, struct raft_entry *out,
                   size_t *n);
    /* The last snapshot (meta->index 0: none); the log starts at or before index + 1. */
    int (*snapshot)(void *ctx, struct raft_snapshot_meta *meta);
    /*
     * Reads up to len bytes at offset of the data of the snapshot ending at index into buf;
     * *n receives the count (0 at the end). RC_ENOTFOUND if that snapshot was replaced.
     * The core reads one chunk at a time, so a snapshot of many GB never sits in memory.
     */
    int (*snapshot_read)(void *ctx, uint64_t index, uint64_t offset, void *buf, size_t len,
                         size_t *n);
    /*
     * Bytes written so far of the incoming snapshot (index, term), and the CRC-32C of those
     * bytes; 0 and 0 if none or another.
     */
    int (*snapshot_received)(void *ctx, uint64_t index, uint64_t term, uint64_t *bytes,
                             uint32_t *crc);
};

/*
 * Deliberately broken behaviours, for tests that prove the simulator catches classic bugs.
 * All zero in production; only tests set them.
 */
struct raft_testing_knobs {
    int commit_old_term_entries;  /* commit by counting replicas of earlier-term entries */
    int skip_noop_on_election;    /* a new leader appends no no-op entry */
    int grant_vote_to_stale_log;  /* skip the candidate log up-to-date check */
    int read_index_without_round; /* confirm ReadIndex reads without a heartbeat round */
    int skip_prevote_log_check;   /* grant pre-votes without the log up-to-date check */
    int count_unsynced_self;      /* a leader counts entries written but not durable */
};

struct raft_options {
    uint64_t id;
    uint64_t seed;               /* seeds the PRNG of randomized election timeouts */
    int election_ticks;          /* election timeout in ticks (randomized in [e, 2e)) */
    int heartbeat_ticks;         /* leader heartbeat interval in ticks; < election_ticks */
    int pre_vote;                /* 1: run a pre-vote before each real election (§9.6) */
    int check_quorum;            /* 1: a leader steps down without a quorum for a timeout */
    size_t max_msg_bytes;        /* cap of entry data per append message (>= one entry) */
    int max_inflight;            /* append messages in flight per follower in replicate state */
    size_t snapshot_chunk_bytes; /* snapshot data per InstallSnapshot message */
    uint64_t applied;            /* index already applied by the caller's state machine */
    struct raft_testing_knobs knobs;
};

/* Fills opts with sane defaults (election 10, heartbeat 1, pre-vote and check-quorum on). */
void raft_options_default(struct raft_options *opts, uint64_t id);

struct raft;

/*
 * Creates a core that reads its log through *storage (copied; the storage's ctx must outlive
 * the core) and starts from *hard_state (NULL: zero). The configuration is recovered by
 * scanning the stored log for its last configuration entries; a fresh cluster is bootstrapped
 * by storing raft_bootstrap_entry() at index 1 in every initial member before creating.
 * *out owns the core; free it with raft_destroy.
 */
int raft_create(const struct raft_options *opts, const struct raft_storage *storage,
                const struct raft_hard_state *hard_state, struct raft **out);
void raft_destroy(struct raft *r);

/* Fills *entry (term 1, index 1) with a configuration entry; entry->data is rc_malloc'ed. */
int raft_bootstrap_entry(const struct raft_config *config, struct raft_entry *entry);

int raft_tick(struct raft *r);
/* Steps a message addressed to this node; the message is only read. */
int raft_step(struct raft *r, const struct raft_message *msg);
/*
 * Appends a normal entry (data copied) if this node leads and no transfer is under way;
 * RC_EAGAIN otherwise, RC_ETOOBIG for len > RAFT_ENTRY_MAX_BYTES. *index and *term (either may be
 * NULL) say where the entry went: the write is done once an entry with that index *and* term is
 * applied.
 */
int raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term);
/*
 * Starts a linearizable read identified by ctx. The leader records its commit index and
 * confirms leadership with one heartbeat round shared by every read waiting at that moment;
 * a read state then comes out of raft_ready(). RC_EAGAIN if not leader, or if the leader has
 * not yet committed an entry of its term (it cannot know the commit index before that).
 */
int raft_read_index(struct raft *r, uint64_t ctx);
/* Starts handing leadership to voter id; RC_EAGAIN if not leader, RC_EINVAL if not a voter. */
int raft_transfer_leader(struct raft *r, uint64_t id);

enum raft_membership_op {
    RAFT_ADD_LEARNER = 1, /* id joins as a learner */
    RAFT_PROMOTE = 2,     /* learner id becomes a voter; RC_EAGAIN until it has caught up */
    RAFT_REMOVE = 3,      /* voter or learner id leaves (the leader may remove itself) */
};
/*
 * Proposes a one-server configuration change. Leader only (RC_EAGAIN otherwise), and only
 * once the previous change is committed and the leader has committed an entry of its own
 * term (RC_EBUSY). RC_EEXIST / RC_ENOTFOUND if id is already / not in the configuration.
 */
int raft_change_membership(struct raft *r, enum raft_membership_op op, uint64_t id);

/* 1 if raft_ready() would return anything. */
int raft_has_ready(struct raft *r);
/* Collects the work for the caller into *rd (valid until raft_advance). */
int raft_ready(struct raft *r, struct raft_ready *rd);
/* Acknowledges the last raft_ready(): 0 if persisted, or the persistence error. */
int raft_advance(struct raft *r, int persist_error);
/*
 * Acknowledges the last raft_ready() (which had may_defer_sync = 1) as written but not yet
 * durable: its entries are readable from storage, but the leader counts them for commit only
 * after raft_synced() covers them.
 */
int raft_advance_unsynced(struct raft *r);

/* How far the log was written when an fsync began, for raft_synced(). */
struct raft_sync_point {
    uint64_t index;
    uint64_t epoch; /* changes with every raft_advance(), which makes such a point stale */
};
/*
 * 1 if this node's written entries should be made durable at once: it does not lead, or it
 * leads and its own copy is needed for them to commit — the voters other than itself that
 * are replicating and were heard from in the last two check-quorum intervals are fewer than
 * a quorum (one node; a follower gone). 0 if the followers can commit them: the caller may
 * give them time first. May be called between raft_ready and raft_advance.
 */
int raft_self_sync_needed(const struct raft *r);
/* Fills *p with the written log; 1 if it holds entries not yet known durable. May be called
 * between raft_ready and raft_advance (it then leaves out the ready's entries). */
int raft_sync_point(const struct raft *r, struct raft_sync_point *p);
/*
 * Reports that an fsync begun after raft_sync_point(r, p) succeeded: the entries up to
 * p->index are durable. A leader counts them for commit. Ignored if a raft_advance() came
 * in between (it already meant everything durable). Not between raft_ready and advance.
 */
int raft_synced(struct raft *r, const struct raft_sync_point *p);

/*
 * Tells the core that the caller compacted its storage: it took a snapshot at index (which
 * must be applied and persisted) and dropped the entries up to it, or up to the storage's
 * first index if it keeps trailing entries before index (the core re-reads first_index).
 * Followers that need dropped entries will be sent the snapshot. RC_ECORRUPT (nothing
 * changed) if the storage's first index is beyond index + 1 or went down.
 */
int raft_compacted(struct raft *r, uint64_t index);

/*
 * raft_ready hands out no committed entry above limit (commit still advances, entries are
 * still persisted and acknowledged): 0 holds them all while the caller's state machine is
 * being rebuilt from an installed snapshot elsewhere; raising it step by step paces the
 * catch-up afterwards; UINT64_MAX (the default) lifts it. May be called between raft_ready
 * and raft_advance.
 */
void raft_limit_apply(struct raft *r, uint64_t limit);

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
    RAFT_FAILED = 4, /* stopped after a persistence failure */
};

struct raft_status {
    uint64_t id;
    enum raft_role role;
    uint64_t term, vote, leader;
    uint64_t commit, applied;
    uint64_t first_index;    /* first entry still in the log (at most snapshot_index + 1) */
    uint64_t snapshot_index; /* last index the snapshot covers (0: none) */
    uint64_t last_index, last_term;
    uint64_t stable_index; /* last index known durable */
    uint64_t config_index; /* index of the configuration entry in force (0: none) */
    struct raft_config config;
    uint64_t transferee;                 /* leadership transfer target, or RAFT_NONE */
    uint64_t snapshots_refused;          /* incoming snapshots whose data failed the leader's CRC */
    uint64_t snapshots_refused_by_peers; /* as a leader: its snapshots followers refused */
};
void raft_status(const struct raft *r, struct raft_status *st);
/* Term of entry index as the core sees the log (stable or not); RC_ENOTFOUND if absent. */
int raft_log_term(struct raft *r, uint64_t index, uint64_t *term);
/* The leader's view of a peer's replication: matched index; RC_ENOTFOUND if none. */
int raft_peer_match(const struct raft *r, uint64_t id, uint64_t *match);
/* On a leader, 1 if the peer was heard from in this check-quorum interval or the one before
 * (what check-quorum counts), else 0 (also when not leader or unknown). */
int raft_peer_active(const struct raft *r, uint64_t id);
/* On a leader, 1 if the peer has answered it at least once (a newcomer counts as active for
 * its first check-quorum intervals without having said anything), else 0. */
int raft_peer_heard(const struct raft *r, uint64_t id);
/* On a leader, 1 if the peer is being sent a snapshot, or confirmed a whole one and has
 * acknowledged nothing past it since (it is rebuilding its state machine, or catching up
 * from there), and answered within the last within_ticks ticks; else 0. */
int raft_peer_after_snapshot(const struct raft *r, uint64_t id, uint32_t within_ticks);
/* On a leader, the followers being sent a snapshot that were heard from lately and have not
 * refused it. */
int raft_snapshots_in_flight(const struct raft *r);

/* ---- codec (codec.c): the wire and disk format of messages, entries, configurations ---- */

/*
 * Version 1 encoding, little-endian. A message: u8 version, u8 type, then fixed fields,
 * then entries and snapshot data, each length-prefixed. Decoding validates every length
 * against the bytes remaining before use and rejects unknown versions and types.
 */
#define RAFT_CODEC_VERSION 1

/* Bytes raft_msg_encode needs for m. */
size_t raft_msg_encoded_size(const struct raft_message *m);
/* Encodes m into buf (room for raft_msg_encoded_size bytes); returns bytes written. */
size_t raft_msg_encode(const struct raft_message *m, void *buf);
/*
 * Decodes len bytes into *m. Entry and snapshot data point into buf (which must outlive *m);
 * m->entries is rc_malloc'ed: release with raft_msg_decoded_free. RC_EPROTO if malformed.
 */
int raft_msg_decode(const void *buf, size_t len, struct raft_message *m);
void raft_msg_decoded_free(struct raft_message *m);

size_t raft_config_encoded_size(const struct raft_config *c);
size_t raft_config_encode(const struct raft_config *c, void *buf);
int raft_config_decode(const void *buf, size_t len, struct raft_config *c);

/* One entry: u64 term, u64 index, u8 type, u32 len, data. */
size_t raft_entry_encoded_size(const struct raft_entry *e);
size_t raft_entry_encode(const struct raft_entry *e, void *buf);
/* Data points into buf. On success *consumed is the entry's size. */
int raft_entry_decode(const void *buf, size_t len, struct raft_entry *e, size_t *consumed);

/* Configuration helpers. */
int raft_config_has_voter(const struct raft_config *c, uint64_t id);
int raft_config_has_learner(const struct raft_config *c, uint64_t id);

#endif

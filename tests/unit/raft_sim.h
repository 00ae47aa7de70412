/*
 * raft_sim.h — a deterministic simulator of a Raft cluster, header-only (included by the
 * raft test files, which the Makefile builds one binary each).
 *
 * One seeded PRNG drives everything: N cores (src/raft), their storage, the network between
 * them and the clients. The same seed replays the same run exactly.
 *
 * Storage models fsync: entries and hard state written by a ready are "current"; sync makes
 * them durable; a crash reverts a node to its durable image (unsynced writes lost, including
 * unsynced truncations). A write can fail: the node is told (raft_advance with RC_EIO) and
 * must stop taking part; the simulator restarts it later, as an operator would.
 *
 * The network delays (0..max_delay ticks), drops, duplicates and reorders messages and can
 * be partitioned, symmetrically or one way. Every message goes through the codec.
 *
 * After every step (a tick or a delivered message and the ready it produced) the checker
 * verifies:
 *   election safety      at most one leader per term, ever;
 *   log matching         two persisted entries with equal index and term have equal
 *                        content and equal prefixes (a chained hash per entry);
 *   leader completeness  a new leader of term T holds every entry committed before T;
 *   commit agreement     no two nodes ever consider different entries committed at one
 *                        index (this also covers "acknowledged proposals stay committed":
 *                        an acknowledged write is a committed entry);
 *   state machine safety no two nodes apply different entries at one index, and each
 *                        applies indexes in order;
 *   linearizable reads   a read served after ReadIndex reflects every write acknowledged
 *                        before the read began;
 * and, after healing every fault, that a leader emerges and a proposal commits and is
 * acknowledged within a bound (liveness), and that every acknowledged write is in the final
 * leader's log.
 */
#ifndef RC_RAFT_SIM_H
#define RC_RAFT_SIM_H

#include "test.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "raft/raft.h"
#include "raftcask.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SIM_MAX_NODES 7
/* Every function is static; test files use only some of them. */
#define SIM_FN static __attribute__((unused))

/* ---------------------------------------------------------------- knobs */

struct sim_params {
    int n_nodes; /* initial voters, ids 1..n_nodes */
    int chaos_ticks;
    int liveness_bound_ticks;
    int election_ticks;
    int heartbeat_ticks;
    int max_delay;      /* ticks */
    int drop_pct;       /* per message, percent */
    int dup_pct;        /* per message, percent */
    int propose_pct;    /* per tick, percent chance of a client write */
    int read_pct;       /* per tick, percent chance of a client read */
    int crash_pml;      /* per tick, per mille chance of crashing a node */
    int sync_crash_pml; /* per ready with writes, per mille chance of crashing before fsync */
    int disk_fail_pml;  /* per ready with writes, per mille chance of a failed write */
    int partition_pml;  /* per tick, per mille chance of a new partition */
    int membership_pml; /* per tick, per mille chance of a membership change */
    int transfer_pml;   /* per tick, per mille chance of a leadership transfer */
    size_t max_msg_bytes;
    int pre_vote, check_quorum;
    int send_before_sync; /* broken caller: sends a ready's messages before fsync */
    /*
     * node.c's early sends (raft_node_process / early_sends_ok): SIM_EARLY_NODE sends the
     * leader's APPEND, HEARTBEAT and SNAPSHOT messages of a ready before its writes are
     * durable when the ready has no snapshot chunk and leaves term and vote as they are on
     * disk; the rest after fsync. The others are deliberately broken variants.
     */
    int early_sends; /* enum sim_early */
    /*
     * node.c's hard_state_due: a hard state that changes only commit is written at most
     * once every lazy_commit_ticks ticks (0: every time). Term and vote changes always are.
     */
    int lazy_commit_ticks;
    /*
     * node.c steps every message that arrives in one loop iteration and processes the ready
     * once, in its check handle: with this percent chance a delivered message's ready waits
     * for the end of the delivery round, so one ready may carry several inputs' work.
     */
    int batch_pct;
    /*
     * The server's state machine (cluster.c, writepath.c, snapshots.c): applied entries are
     * not durable one by one; a crash keeps a prefix of them, at least up to the last
     * compaction (which syncs the store first) or rebuild from a snapshot. At start the node
     * keeps that prefix, restores the snapshot first if the prefix is shorter, starts the
     * core with applied = min(prefix, commit on disk) and skips entries at or below the
     * prefix (raft_node_start, node.c apply); an installed snapshot whose index the state
     * machine already holds does not replace it (snapshots_restore).
     */
    int lazy_store; /* SIM_STORE_* */
    /*
     * node.c's deferred leader persistence (sync_later): a ready with may_defer_sync, no
     * hard state due and !raft_self_sync_needed is written without an fsync, all its
     * messages leave, and the core is told raft_advance_unsynced. One fsync at a time covers
     * what was written when it began (sim_begin_sync: node.c's sync_pending, which syncs in
     * place; here it may also take a while) and completes with sync_done_pct percent chance
     * per tick (raft_synced). A crash loses the entries not yet durable (or a prefix of
     * them), but the lazy store may keep what the leader applied meanwhile. 0: every ready
     * is synced at once. SIM_ASYNC_ALWAYS defers whenever may_defer_sync (the core's rule;
     * node.c's extra condition is a matter of latency, not safety).
     */
    int async_leader;     /* enum sim_async */
    int sync_done_pct;    /* per tick, percent chance that a fsync in flight completes */
    int sync_begin_pct;   /* per tick, percent chance that a leader's deferred fsync begins */
    int leader_crash_pct; /* percent of crashes that hit the leader (else a random node) */
    struct raft_testing_knobs knobs;
    int no_auto_restart; /* scenarios: only the test restarts nodes */
    int compact_every;   /* compact a node's log once it applied this many entries (0: never) */
    int trailing;        /* entries a compaction keeps at and before its index */
    /* per tick, per mille chance that a node's applying is held (raft_limit_apply, as node.c
     * while its store is rebuilt) or released again; 0: never held */
    int hold_apply_pml;
    size_t snapshot_chunk_bytes;
    int verbose;
};

enum sim_early {
    SIM_EARLY_OFF = 0,
    SIM_EARLY_NODE = 1,         /* exactly node.c's condition */
    SIM_EARLY_ANY_TERM = 2,     /* broken: replication messages early even if term/vote change */
    SIM_EARLY_ALL_MESSAGES = 3, /* broken: every message early (acks too) under node.c's test */
};

enum sim_async {
    SIM_ASYNC_OFF = 0,
    SIM_ASYNC_NODE = 1,   /* node.c's sync_later */
    SIM_ASYNC_ALWAYS = 2, /* every may_defer_sync ready */
};

enum sim_store {
    SIM_STORE_DURABLE = 0, /* rebuilt at start from the snapshot and the log */
    SIM_STORE_LAZY = 1,    /* the server's store: a prefix survives (see lazy_store) */
};

/* ---------------------------------------------------------------- storage */

struct sim_ent {
    struct raft_entry e; /* data owned */
    uint64_t chain;      /* hash of this entry and all before it */
};

struct sim_storage {
    /* The snapshot the log starts after: index base, its term, config and chain hash. Its
     * data is the state machine: the content hash of every applied entry, 8 bytes each. */
    uint64_t base, base_term, base_chain;
    struct raft_config base_config;
    unsigned char *snap_data;
    size_t snap_len;
    /* An incoming snapshot being written; in_durable bytes of it survive a crash. */
    uint64_t in_index, in_term;
    unsigned char *in_data;
    size_t in_len, in_cap, in_durable;
    struct sim_ent *ents; /* ents[i] has index base + 1 + i */
    size_t n, cap;
    /* Entries kept at and before the snapshot index (trailing): trail[i] has index
     * base + 1 - n_trail + i; the log's first index is base + 1 - n_trail. */
    struct sim_ent *trail;
    size_t n_trail;
    size_t stable_prefix;  /* leading entries identical to the durable image */
    struct sim_ent *saved; /* durable entries after stable_prefix, cut by unsynced truncation */
    size_t n_saved, cap_saved;
    struct raft_hard_state hs, durable_hs;
};

/* ---------------------------------------------------------------- cluster */

struct sim_msg {
    uint64_t deliver_at;
    uint64_t from, to;
    size_t len;
    unsigned char *bytes;
};

struct sim_proposal {
    uint64_t node, index, term, op;
};

struct sim_read {
    uint64_t node, ctx;
    uint64_t min_index; /* highest index of a write acknowledged before the read began */
    uint64_t read_index;
    int confirmed;
};

struct sim_node {
    uint64_t id;
    int exists; /* has storage (was started at least once) */
    int up;
    int failed_at; /* tick its disk failed, or -1 */
    struct raft *r;
    struct sim_storage st;
    uint64_t applied;
    uint64_t *sm; /* the state machine: sm[i] = content hash of the entry applied at i */
    size_t cap_sm;
    uint64_t seen_commit;
    uint64_t seen_leader_term;
    uint64_t first_chunk_offset; /* offset of the first snapshot chunk written since start */
    uint64_t chunks_written;
    uint64_t snapshot_restarts; /* partial snapshots dropped for a newer one */
    uint64_t commit_written_at; /* tick of the last commit-only hard state written (lazy) */
    uint64_t sm_durable;        /* lazy_store: applied index known on disk */
    uint64_t store_rev;         /* lazy_store: applied index that survived the last crash */
    int sync_busy;              /* async_leader: an fsync is in flight, begun at sync_at */
    int apply_held;             /* hold_apply_pml: raft_limit_apply holds it (reset by a restart) */
    struct raft_sync_point sync_at;
};

struct sim_term_entry {
    uint64_t term, chain;
};

struct sim_index_slot {
    struct sim_term_entry *terms;
    size_t n, cap;
    uint64_t committed_term; /* 0 while no node committed this index */
    uint64_t committed_hash; /* content hash of the committed entry */
    uint64_t committed_in;   /* term of the observer when first seen committed */
    uint64_t applied_hash;   /* 0 while nobody applied it */
    int acked;               /* a client write at this index was acknowledged */
};

struct sim {
    struct sim_params p;
    uint64_t seed;
    uint64_t rng;
    uint64_t now;
    struct sim_node nodes[SIM_MAX_NODES + 1];
    int blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* from → to dropped */
    uint64_t heal_at;
    struct sim_msg *net;
    size_t n_net, cap_net;
    uint64_t *leader_of_term; /* index term */
    size_t cap_terms;
    struct sim_index_slot *slots; /* index → what the checker knows */
    size_t cap_slots;
    struct sim_proposal *props;
    size_t n_props, cap_props;
    struct sim_read *reads;
    size_t n_reads, cap_reads;
    uint64_t next_op, next_ctx;
    uint64_t max_acked_index;
    uint64_t acked_count, reads_served, elections;
    uint64_t crashes, disk_failures, truncated_entries, membership_changes, transfers;
    uint64_t compactions, snapshot_chunks, snapshots_installed;
    uint64_t trailing_appends; /* appends sent (before drops and copies) from entries kept
                                * before a snapshot's index */
    uint64_t early_sent, early_readies, lazy_commit_skips; /* early_sends / lazy commit use */
    uint64_t early_crashes; /* crashes before fsync of a ready whose messages left early */
    uint64_t batched_steps; /* messages whose ready waited for the end of the round */
    uint64_t snapshot_installs_skipped; /* lazy_store: the store already held the index */
    uint64_t store_ahead_starts; /* lazy_store: starts with the store past the commit on disk */
    uint64_t unsynced_readies, async_syncs; /* async_leader use */
    uint64_t applied_unsynced;          /* entries applied before the node's own copy was durable */
    uint64_t store_skips_checked;       /* lazy_store: entries skipped as held, checked equal */
    uint64_t store_ahead_of_log_starts; /* lazy_store: starts with the store past the log's end */
    int deferred[SIM_MAX_NODES + 1];    /* nodes with inputs not yet processed (batch_pct) */
    uint64_t append_rejects[SIM_MAX_NODES + 1]; /* rejections sent by each node */
    int healing;                                /* faults off */
    char violation[512];
    int violated;
};

SIM_FN uint64_t sim_current_seed;

SIM_FN void sim_abort_handler(int sig)
{
    char buf[96];
    int n =
        snprintf(buf, sizeof buf, "\n  raft_sim: aborted in seed %llu (replay: TEST_SEED=%llu)\n",
                 (unsigned long long)sim_current_seed, (unsigned long long)sim_current_seed);
    if (write(2, buf, (size_t)n) < 0)
        (void)0;
    signal(sig, SIG_DFL);
    raise(sig);
}

SIM_FN uint64_t sim_rand(struct sim *s)
{
    return test_rand(&s->rng);
}

SIM_FN int sim_chance(struct sim *s, int per, int out_of)
{
    return per > 0 && (int)(sim_rand(s) % (uint64_t)out_of) < per;
}

SIM_FN void sim_violation(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
SIM_FN void sim_violation(struct sim *s, const char *fmt, ...)
{
    if (s->violated)
        return;
    s->violated = 1;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->violation, sizeof s->violation, "t=%llu: ", (unsigned long long)s->now);
    vsnprintf(s->violation + n, sizeof s->violation - (size_t)n, fmt, ap);
    va_end(ap);
}

SIM_FN void *sim_grow(void *ptr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return ptr;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    unsigned char *p = rc_realloc(ptr, c * elem);
    if (!p) {
        fprintf(stderr, "raft_sim: out of memory\n");
        abort();
    }
    memset(p + *cap * elem, 0, (c - *cap) * elem);
    *cap = c;
    return p;
}

SIM_FN uint64_t sim_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 33);
}

SIM_FN uint64_t sim_entry_hash(const struct raft_entry *e)
{
    uint64_t h = sim_mix(sim_mix(0x1234, e->term), e->type);
    const unsigned char *d = e->data;
    for (uint32_t i = 0; i < e->len; i++)
        h = sim_mix(h, d[i]);
    return h | 1; /* never 0, which means "unknown" */
}

SIM_FN struct sim_index_slot *sim_slot(struct sim *s, uint64_t index)
{
    s->slots = sim_grow(s->slots, &s->cap_slots, (size_t)index + 1, sizeof *s->slots);
    return &s->slots[index];
}

/* ---------------------------------------------------------------- storage callbacks */

/* The first entry the log holds: the first trailing one, or the one after the snapshot. */
SIM_FN uint64_t sim_st_first_index(const struct sim_storage *st)
{
    return st->base + 1 - st->n_trail;
}

SIM_FN int sim_st_first(void *ctx, uint64_t *index)
{
    *index = sim_st_first_index(ctx);
    return 0;
}

/* Entry index of the log (trailing or not); index must be in [first, last]. */
SIM_FN const struct sim_ent *sim_st_ent(const struct sim_storage *st, uint64_t index)
{
    if (index <= st->base)
        return &st->trail[index - sim_st_first_index(st)];
    return &st->ents[index - st->base - 1];
}

SIM_FN uint64_t sim_st_last_index(const struct sim_storage *st)
{
    return st->base + st->n;
}

SIM_FN int sim_st_last(void *ctx, uint64_t *index)
{
    *index = sim_st_last_index(ctx);
    return 0;
}

SIM_FN int sim_st_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct sim_storage *st = ctx;
    if (index == st->base) {
        *term = st->base_term;
        return 0;
    }
    if (index < sim_st_first_index(st) || index > sim_st_last_index(st))
        return RC_ENOTFOUND; /* before the first kept entry (unless the snapshot's): unknown */
    *term = sim_st_ent(st, index)->e.term;
    return 0;
}

SIM_FN int sim_st_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
                          struct raft_entry *out, size_t *n)
{
    struct sim_storage *st = ctx;
    if (lo < sim_st_first_index(st) || hi > sim_st_last_index(st) + 1 || lo >= hi)
        return RC_ENOTFOUND;
    size_t bytes = 0, k = 0;
    for (uint64_t i = lo; i < hi; i++) {
        const struct raft_entry *e = &sim_st_ent(st, i)->e;
        if (k > 0 && bytes + e->len > max_bytes)
            break;
        out[k++] = *e;
        bytes += e->len;
    }
    *n = k;
    return 0;
}

SIM_FN int sim_st_snapshot(void *ctx, struct raft_snapshot_meta *meta)
{
    struct sim_storage *st = ctx;
    meta->index = st->base;
    meta->term = st->base_term;
    meta->config = st->base_config;
    meta->size_bytes = st->snap_len;
    meta->crc = st->snap_len ? rc_crc32c(0, st->snap_data, st->snap_len) : 0;
    return 0;
}

SIM_FN int sim_st_snapshot_read(void *ctx, uint64_t index, uint64_t offset, void *buf, size_t len,
                                size_t *n)
{
    struct sim_storage *st = ctx;
    if (index != st->base || st->base == 0)
        return RC_ENOTFOUND;
    if (offset > st->snap_len)
        return RC_EINVAL;
    size_t k = st->snap_len - (size_t)offset;
    if (k > len)
        k = len;
    if (k)
        memcpy(buf, st->snap_data + offset, k);
    *n = k;
    return 0;
}

SIM_FN int sim_st_snapshot_received(void *ctx, uint64_t index, uint64_t term, uint64_t *bytes,
                                    uint32_t *crc)
{
    struct sim_storage *st = ctx;
    int same = st->in_index == index && st->in_term == term;
    *bytes = same ? st->in_len : 0;
    *crc = same && st->in_len ? rc_crc32c(0, st->in_data, st->in_len) : 0;
    return 0;
}

SIM_FN struct raft_storage sim_storage_ops(struct sim_storage *st)
{
    struct raft_storage ops = {st,
                               sim_st_first,
                               sim_st_last,
                               sim_st_term,
                               sim_st_entries,
                               sim_st_snapshot,
                               sim_st_snapshot_read,
                               sim_st_snapshot_received};
    return ops;
}

SIM_FN void sim_st_free_range(struct sim_ent *ents, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        rc_free(ents[i].e.data);
}

SIM_FN void sim_st_destroy(struct sim_storage *st)
{
    sim_st_free_range(st->trail, 0, st->n_trail);
    rc_free(st->trail);
    sim_st_free_range(st->ents, 0, st->n);
    sim_st_free_range(st->saved, 0, st->n_saved);
    rc_free(st->ents);
    rc_free(st->saved);
    rc_free(st->snap_data);
    rc_free(st->in_data);
    memset(st, 0, sizeof *st);
}

/* Keeps the first keep entries; durable ones cut off are saved for a crash to restore. */
SIM_FN void sim_st_truncate(struct sim_storage *st, size_t keep)
{
    if (keep >= st->n)
        return;
    if (keep < st->stable_prefix) {
        size_t moved = st->stable_prefix - keep;
        st->saved = sim_grow(st->saved, &st->cap_saved, st->n_saved + moved, sizeof *st->saved);
        if (st->n_saved)
            memmove(st->saved + moved, st->saved, st->n_saved * sizeof *st->saved);
        memcpy(st->saved, st->ents + keep, moved * sizeof *st->saved);
        st->n_saved += moved;
        sim_st_free_range(st->ents, st->stable_prefix, st->n);
        st->stable_prefix = keep;
    } else {
        sim_st_free_range(st->ents, keep, st->n);
    }
    st->n = keep;
}

SIM_FN void sim_st_sync(struct sim_storage *st)
{
    sim_st_free_range(st->saved, 0, st->n_saved);
    st->n_saved = 0;
    st->stable_prefix = st->n;
    st->durable_hs = st->hs;
    st->in_durable = st->in_len;
}

SIM_FN void sim_st_crash(struct sim_storage *st)
{
    sim_st_free_range(st->ents, st->stable_prefix, st->n);
    st->n = st->stable_prefix;
    st->ents = sim_grow(st->ents, &st->cap, st->n + st->n_saved, sizeof *st->ents);
    if (st->n_saved)
        memcpy(st->ents + st->n, st->saved, st->n_saved * sizeof *st->saved);
    st->n += st->n_saved;
    st->n_saved = 0;
    st->stable_prefix = st->n;
    st->hs = st->durable_hs;
    st->in_len = st->in_durable;
}

/* Appends copies; checks log matching against every entry ever persisted anywhere. */
SIM_FN void sim_st_append(struct sim *s, struct sim_storage *st, const struct raft_entry *e)
{
    if (e->index != sim_st_last_index(st) + 1) {
        sim_violation(s, "storage append at %llu after index %llu", (unsigned long long)e->index,
                      (unsigned long long)sim_st_last_index(st));
        return;
    }
    st->ents = sim_grow(st->ents, &st->cap, st->n + 1, sizeof *st->ents);
    struct sim_ent *se = &st->ents[st->n];
    se->e = *e;
    se->e.data = e->len ? rc_memdup(e->data, e->len) : NULL;
    uint64_t prev = st->n ? st->ents[st->n - 1].chain : st->base_chain;
    se->chain = sim_mix(prev, sim_entry_hash(e));
    st->n++;

    struct sim_index_slot *slot = sim_slot(s, e->index);
    for (size_t i = 0; i < slot->n; i++) {
        if (slot->terms[i].term == e->term) {
            if (slot->terms[i].chain != se->chain)
                sim_violation(s,
                              "log matching: two logs hold index %llu term %llu with "
                              "different content or prefix",
                              (unsigned long long)e->index, (unsigned long long)e->term);
            return;
        }
    }
    slot->terms = sim_grow(slot->terms, &slot->cap, slot->n + 1, sizeof *slot->terms);
    slot->terms[slot->n].term = e->term;
    slot->terms[slot->n].chain = se->chain;
    slot->n++;
}

/*
 * A core fed by hand (tests that script one node's inputs): node 1 of config c, whose
 * storage st holds c's bootstrap entry (synced), with hard state term and default options
 * (*o, if not NULL, receives them).
 */
SIM_FN struct raft *sim_hand_core(struct sim *s, struct sim_storage *st,
                                  const struct raft_config *c, uint64_t term,
                                  struct raft_options *o)
{
    struct raft_entry boot;
    CHECK_OK(raft_bootstrap_entry(c, &boot));
    sim_st_append(s, st, &boot);
    rc_free(boot.data);
    sim_st_sync(st);
    struct raft_options opts;
    raft_options_default(&opts, 1);
    if (o)
        *o = opts;
    struct raft_storage ops = sim_storage_ops(st);
    struct raft_hard_state hs = {.term = term};
    struct raft *r;
    CHECK_OK(raft_create(&opts, &ops, &hs, &r));
    return r;
}

/* Persists a hand-fed core's readies to st (entries, then a sync), dropping their messages. */
SIM_FN void sim_hand_persist(struct sim *s, struct sim_storage *st, struct raft *r)
{
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        CHECK_OK(raft_ready(r, &rd));
        if (rd.n_entries) {
            sim_st_truncate(st, (size_t)(rd.entries[0].index - 1));
            for (size_t i = 0; i < rd.n_entries; i++)
                sim_st_append(s, st, &rd.entries[i]);
        }
        sim_st_sync(st);
        CHECK_OK(raft_advance(r, 0));
    }
}

/* sim_hand_core for voters {1, 2, 3}, made leader of term 2 by node 2's pre-vote and vote:
 * its log is the bootstrap entry and the no-op at index 2, which nobody acknowledged yet. */
SIM_FN struct raft *sim_hand_leader(struct sim *s, struct sim_storage *st)
{
    struct raft_config c = {.n_voters = 3, .voters = {1, 2, 3}};
    struct raft_options o;
    struct raft *r = sim_hand_core(s, st, &c, 1, &o);
    for (int i = 0; i < 2 * o.election_ticks; i++) {
        CHECK_OK(raft_tick(r));
        sim_hand_persist(s, st, r);
    }
    static const uint8_t grants[] = {RAFT_MSG_PREVOTE_RESP, RAFT_MSG_VOTE_RESP};
    for (size_t i = 0; i < sizeof grants; i++) {
        struct raft_message m = {.type = grants[i], .from = 2, .to = 1, .term = 2};
        CHECK_OK(raft_step(r, &m));
        sim_hand_persist(s, st, r);
    }
    struct raft_status st2;
    raft_status(r, &st2);
    CHECK_EQ(st2.role, RAFT_LEADER);
    CHECK_EQ_U(st2.last_index, 2);
    return r;
}

/* ---------------------------------------------------------------- nodes */

SIM_FN void sim_node_options(struct sim *s, uint64_t id, struct raft_options *o)
{
    raft_options_default(o, id);
    o->seed = sim_rand(s);
    o->election_ticks = s->p.election_ticks;
    o->heartbeat_ticks = s->p.heartbeat_ticks;
    o->pre_vote = s->p.pre_vote;
    o->check_quorum = s->p.check_quorum;
    o->max_msg_bytes = s->p.max_msg_bytes;
    o->max_inflight = 8;
    if (s->p.snapshot_chunk_bytes)
        o->snapshot_chunk_bytes = s->p.snapshot_chunk_bytes;
    o->knobs = s->p.knobs;
}

SIM_FN void sim_start(struct sim *s, uint64_t id)
{
    struct sim_node *n = &s->nodes[id];
    struct raft_options o;
    sim_node_options(s, id, &o);
    uint64_t held = 0; /* lazy_store: what the state machine holds at start */
    if (s->p.lazy_store) {
        /* raft_node_start: restore from the log's snapshot if the store is behind it, then
         * start the core at min(store, commit on disk). */
        held = n->store_rev;
        if (held < n->st.base) {
            held = n->st.base;
            n->sm_durable = n->st.base;
        }
        o.applied = held < n->st.durable_hs.commit ? held : n->st.durable_hs.commit;
        if (held > n->st.durable_hs.commit && held > n->st.base)
            s->store_ahead_starts++;
        if (held > sim_st_last_index(&n->st))
            s->store_ahead_of_log_starts++; /* it applied what its log lost (async_leader) */
    }
    struct raft_storage ops = sim_storage_ops(&n->st);
    n->apply_held = 0;
    int rc = raft_create(&o, &ops, &n->st.durable_hs, &n->r);
    if (rc != 0) {
        sim_violation(s, "node %llu cannot restart: %s", (unsigned long long)id, rc_strerror(rc));
        return;
    }
    n->exists = 1;
    n->up = 1;
    n->failed_at = -1;
    n->sync_busy = 0;
    /* The state machine restarts from the snapshot, then re-applies the log. */
    n->applied = n->st.base;
    n->sm = sim_grow(n->sm, &n->cap_sm, (size_t)n->st.base + 1, sizeof *n->sm);
    if (s->p.lazy_store && held > n->st.base)
        n->applied = held; /* it keeps sm[1..held]; the core's entries up to it are skipped */
    else if (n->st.snap_len)
        memcpy(n->sm + 1, n->st.snap_data, n->st.snap_len);
    n->seen_commit = 0;
    n->seen_leader_term = 0;
    n->commit_written_at = 0; /* node.c: the first commit-only change after start is written */
    n->first_chunk_offset = UINT64_MAX;
}

SIM_FN void sim_drop_client_state(struct sim *s, uint64_t id)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_props; i++)
        if (s->props[i].node != id)
            s->props[k++] = s->props[i];
    s->n_props = k;
    k = 0;
    for (size_t i = 0; i < s->n_reads; i++)
        if (s->reads[i].node != id)
            s->reads[k++] = s->reads[i];
    s->n_reads = k;
}

SIM_FN void sim_crash(struct sim *s, uint64_t id)
{
    struct sim_node *n = &s->nodes[id];
    if (!n->up)
        return;
    raft_destroy(n->r);
    n->r = NULL;
    n->up = 0;
    n->sync_busy = 0;    /* an fsync in flight dies with it */
    s->deferred[id] = 0; /* its unprocessed inputs die with it */
    if (s->p.lazy_store) {
        /* The store keeps a prefix of what it applied, at least what was synced. */
        uint64_t lo = n->sm_durable < n->applied ? n->sm_durable : n->applied;
        n->store_rev = lo + sim_rand(s) % (n->applied - lo + 1);
        if (n->sm_durable > n->store_rev)
            n->sm_durable = n->store_rev;
    }
    /*
     * The OS may have written some unsynced data back before the crash: nothing, all, the
     * entries (and snapshot chunks) but not the hard state written after them, or a prefix
     * of the entries — the order a ready is persisted in (entries first) allows these.
     */
    switch (sim_rand(s) % 4) {
    case 0:
        break;
    case 1:
        sim_st_sync(&n->st);
        break;
    case 2: {
        struct raft_hard_state hs = n->st.durable_hs;
        sim_st_sync(&n->st);
        n->st.durable_hs = hs;
        break;
    }
    default:
        /* A prefix of the unsynced appends reached the disk (no truncation pending). */
        if (n->st.n_saved == 0 && n->st.n > n->st.stable_prefix)
            n->st.stable_prefix += (size_t)(sim_rand(s) % (n->st.n - n->st.stable_prefix + 1));
        break;
    }
    sim_st_crash(&n->st);
    sim_drop_client_state(s, id);
    s->crashes++;
    if (s->p.verbose)
        fprintf(stderr, "t=%llu crash %llu\n", (unsigned long long)s->now, (unsigned long long)id);
}

/* ---------------------------------------------------------------- network */

SIM_FN void sim_send(struct sim *s, const struct raft_message *m)
{
    if (m->to < 1 || m->to > SIM_MAX_NODES) {
        sim_violation(s, "message to unknown node %llu", (unsigned long long)m->to);
        return;
    }
    if (m->type == RAFT_MSG_APPEND_RESP && m->reject)
        s->append_rejects[m->from]++;
    if (m->type == RAFT_MSG_APPEND && m->n_entries > 0 && m->from >= 1 &&
        m->from <= SIM_MAX_NODES && s->nodes[m->from].r) {
        struct raft_status st;
        raft_status(s->nodes[m->from].r, &st);
        if (m->log_index < st.snapshot_index)
            s->trailing_appends++; /* entries kept before a snapshot: no snapshot sent */
    }
    if (!s->healing && sim_chance(s, s->p.drop_pct, 100))
        return;
    int copies = (!s->healing && sim_chance(s, s->p.dup_pct, 100)) ? 2 : 1;
    size_t len = raft_msg_encoded_size(m);
    for (int c = 0; c < copies; c++) {
        s->net = sim_grow(s->net, &s->cap_net, s->n_net + 1, sizeof *s->net);
        struct sim_msg *sm = &s->net[s->n_net++];
        sm->bytes = rc_malloc(len);
        sm->len = raft_msg_encode(m, sm->bytes);
        if (sm->len != len)
            sim_violation(s, "encoded size mismatch");
        sm->from = m->from;
        sm->to = m->to;
        int delay = s->p.max_delay > 0 ? (int)(sim_rand(s) % (uint64_t)(s->p.max_delay + 1)) : 0;
        if (s->healing && delay > 1)
            delay = 1;
        sm->deliver_at = s->now + (uint64_t)delay;
    }
}

/* ---------------------------------------------------------------- checks */

/* Whether the core can name the term of index i: in the log, or the snapshot's last. */
SIM_FN int sim_log_knows(const struct raft_status *st, uint64_t i)
{
    return i >= st->first_index || i == st->snapshot_index;
}

SIM_FN void sim_check_commit(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
    uint64_t from = n->seen_commit + 1;
    /* Older entries are in the snapshot, checked on install. */
    uint64_t lo = st->first_index > st->snapshot_index ? st->snapshot_index : st->first_index;
    if (from < lo)
        from = lo;
    for (uint64_t i = from; i <= st->commit; i++) {
        uint64_t term;
        if (raft_log_term(n->r, i, &term) != 0) {
            sim_violation(s, "node %llu committed %llu but has no such entry",
                          (unsigned long long)n->id, (unsigned long long)i);
            return;
        }
        struct sim_index_slot *slot = sim_slot(s, i);
        if (slot->committed_term == 0) {
            slot->committed_term = term;
            slot->committed_in = st->term;
        } else if (slot->committed_term != term) {
            sim_violation(s,
                          "commit agreement: node %llu committed index %llu of term %llu, "
                          "another node committed term %llu there",
                          (unsigned long long)n->id, (unsigned long long)i,
                          (unsigned long long)term, (unsigned long long)slot->committed_term);
            return;
        }
    }
    if (st->commit > n->seen_commit)
        n->seen_commit = st->commit;
}

SIM_FN void sim_check_new_leader(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
    s->leader_of_term =
        sim_grow(s->leader_of_term, &s->cap_terms, (size_t)st->term + 1, sizeof *s->leader_of_term);
    uint64_t *known = &s->leader_of_term[st->term];
    if (*known != 0 && *known != n->id) {
        sim_violation(s, "election safety: nodes %llu and %llu both lead term %llu",
                      (unsigned long long)*known, (unsigned long long)n->id,
                      (unsigned long long)st->term);
        return;
    }
    if (n->seen_leader_term == st->term)
        return;
    n->seen_leader_term = st->term;
    *known = n->id;
    s->elections++;
    /* Leader completeness: every entry committed before this term is in our log. */
    for (uint64_t i = 1; i < s->cap_slots; i++) {
        struct sim_index_slot *slot = &s->slots[i];
        if (slot->committed_term == 0 || slot->committed_in >= st->term || !sim_log_knows(st, i))
            continue;
        uint64_t term;
        if (raft_log_term(n->r, i, &term) != 0 || term != slot->committed_term) {
            sim_violation(s,
                          "leader completeness: leader %llu of term %llu lacks index %llu "
                          "(term %llu) committed in term %llu",
                          (unsigned long long)n->id, (unsigned long long)st->term,
                          (unsigned long long)i, (unsigned long long)slot->committed_term,
                          (unsigned long long)slot->committed_in);
            return;
        }
    }
}

SIM_FN void sim_check_all(struct sim *s)
{
    for (uint64_t id = 1; id <= SIM_MAX_NODES && !s->violated; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->up)
            continue;
        struct raft_status st;
        raft_status(n->r, &st);
        if (st.commit > st.last_index || st.applied > st.commit)
            sim_violation(s, "node %llu: commit %llu last %llu applied %llu",
                          (unsigned long long)id, (unsigned long long)st.commit,
                          (unsigned long long)st.last_index, (unsigned long long)st.applied);
        sim_check_commit(s, n, &st);
        if (st.role == RAFT_LEADER)
            sim_check_new_leader(s, n, &st);
    }
}

/* ---------------------------------------------------------------- applying and reads */

SIM_FN void sim_serve_reads(struct sim *s, struct sim_node *n)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_reads; i++) {
        struct sim_read *rd = &s->reads[i];
        if (rd->node == n->id && rd->confirmed && n->applied >= rd->read_index) {
            /* The state served reflects every entry up to n->applied. */
            if (n->applied < rd->min_index)
                sim_violation(s,
                              "linearizability: read %llu on node %llu served state at %llu, "
                              "but a write at %llu was acknowledged before it began",
                              (unsigned long long)rd->ctx, (unsigned long long)n->id,
                              (unsigned long long)n->applied, (unsigned long long)rd->min_index);
            s->reads_served++;
            continue;
        }
        s->reads[k++] = *rd;
    }
    s->n_reads = k;
}

SIM_FN void sim_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
    if (e->index != n->applied + 1) {
        sim_violation(s, "node %llu applied %llu after %llu", (unsigned long long)n->id,
                      (unsigned long long)e->index, (unsigned long long)n->applied);
        return;
    }
    n->applied = e->index;
    struct sim_index_slot *slot = sim_slot(s, e->index);
    uint64_t h = sim_entry_hash(e);
    n->sm = sim_grow(n->sm, &n->cap_sm, (size_t)e->index + 1, sizeof *n->sm);
    n->sm[e->index] = h;
    if (slot->applied_hash == 0)
        slot->applied_hash = h;
    else if (slot->applied_hash != h)
        sim_violation(s, "state machine safety: node %llu applied a different entry at %llu",
                      (unsigned long long)n->id, (unsigned long long)e->index);
    /* What is applied is committed: record it even if the commit check never saw it. */
    if (slot->committed_term == 0) {
        struct raft_status st;
        raft_status(n->r, &st);
        slot->committed_term = e->term;
        slot->committed_in = st.term;
    } else if (slot->committed_term != e->term) {
        sim_violation(s,
                      "commit agreement: node %llu applied index %llu of term %llu, committed "
                      "elsewhere with term %llu",
                      (unsigned long long)n->id, (unsigned long long)e->index,
                      (unsigned long long)e->term, (unsigned long long)slot->committed_term);
    }
    if (e->type != RAFT_ENTRY_NORMAL || e->len < 8)
        return;
    uint64_t op;
    memcpy(&op, e->data, 8);
    size_t k = 0;
    for (size_t i = 0; i < s->n_props; i++) {
        struct sim_proposal *p = &s->props[i];
        if (p->node == n->id && p->index == e->index) {
            if (p->term == e->term && p->op == op) {
                /* The client gets its answer: this write is acknowledged. */
                slot->acked = 1;
                s->acked_count++;
                if (e->index > s->max_acked_index)
                    s->max_acked_index = e->index;
            }
            continue;
        }
        s->props[k++] = *p;
    }
    s->n_props = k;
}

/* ---------------------------------------------------------------- snapshots */

/* The configuration in force at index: the last configuration entry up to it. */
SIM_FN struct raft_config sim_config_at(struct sim_storage *st, uint64_t index)
{
    for (uint64_t i = index; i > st->base; i--) {
        const struct raft_entry *e = &st->ents[i - st->base - 1].e;
        struct raft_config c;
        if (e->type == RAFT_ENTRY_CONFIG && raft_config_decode(e->data, e->len, &c) == 0)
            return c;
    }
    return st->base_config;
}

/* Compacts the log up to what the state machine applied, now and then. */
SIM_FN void sim_maybe_compact(struct sim *s, struct sim_node *n)
{
    if (!n->up || s->p.compact_every <= 0 || n->applied < n->st.base + (uint64_t)s->p.compact_every)
        return;
    struct sim_storage *st = &n->st;
    uint64_t at = n->applied;
    struct raft_status rs;
    raft_status(n->r, &rs);
    /* Only what the core applied and the log holds (logstore_snapshot_commit), with no
     * truncation pending; the snapshot itself is durable, whatever the entries were. */
    if (at > rs.applied || at > sim_st_last_index(st) || st->n_saved > 0)
        return;
    size_t drop = (size_t)(at - st->base);
    if (st->stable_prefix < drop)
        st->stable_prefix = drop;
    struct sim_ent *last = &st->ents[drop - 1];
    st->base_config = sim_config_at(st, at);
    st->base_term = last->e.term;
    st->base_chain = last->chain;
    rc_free(st->snap_data);
    st->snap_len = (size_t)at * 8;
    st->snap_data = rc_malloc(st->snap_len);
    memcpy(st->snap_data, n->sm + 1, st->snap_len);
    /* The last p.trailing entries of trail ++ ents[0, drop) stay readable (logstore's
     * trailing_entries); the rest is freed. */
    size_t total = st->n_trail + drop;
    size_t keep = (size_t)s->p.trailing < total ? (size_t)s->p.trailing : total;
    struct sim_ent *trail = keep ? rc_malloc(keep * sizeof *trail) : NULL;
    for (size_t i = 0; i < total; i++) {
        struct sim_ent *e = i < st->n_trail ? &st->trail[i] : &st->ents[i - st->n_trail];
        if (i >= total - keep)
            trail[i - (total - keep)] = *e;
        else
            rc_free(e->e.data);
    }
    rc_free(st->trail);
    st->trail = trail;
    st->n_trail = keep;
    memmove(st->ents, st->ents + drop, (st->n - drop) * sizeof *st->ents);
    st->n -= drop;
    st->stable_prefix -= drop;
    st->base = at;
    n->sm_durable = at; /* snapshots.c job_work: the store is synced before the snapshot */
    s->compactions++;
    int rc = raft_compacted(n->r, at);
    if (rc != 0)
        sim_violation(s, "node %llu: raft_compacted(%llu): %s", (unsigned long long)n->id,
                      (unsigned long long)at, rc_strerror(rc));
}

/*
 * Writes a chunk of an incoming snapshot; the last one installs it. Installing is atomic
 * and durable (a real caller fsyncs the file and renames it into place).
 */
SIM_FN void sim_write_chunk(struct sim *s, struct sim_node *n, const struct raft_snapshot_chunk *c)
{
    struct sim_storage *st = &n->st;
    if (c->offset == 0) {
        if (st->in_len > 0 && (st->in_index != c->meta.index || st->in_term != c->meta.term))
            n->snapshot_restarts++;
        st->in_index = c->meta.index;
        st->in_term = c->meta.term;
        st->in_len = 0;
        st->in_durable = 0;
    }
    if (st->in_index != c->meta.index || st->in_term != c->meta.term || c->offset != st->in_len) {
        sim_violation(s, "node %llu: snapshot chunk at %llu does not continue %zu bytes",
                      (unsigned long long)n->id, (unsigned long long)c->offset, st->in_len);
        return;
    }
    if (n->first_chunk_offset == UINT64_MAX)
        n->first_chunk_offset = c->offset;
    n->chunks_written++;
    s->snapshot_chunks++;
    st->in_data = sim_grow(st->in_data, &st->in_cap, st->in_len + c->len + 1, 1);
    if (c->len)
        memcpy(st->in_data + st->in_len, c->data, c->len);
    st->in_len += c->len;
    if (!c->done)
        return;
    /* Install: the state must be exactly what every node applied up to the index. */
    uint64_t index = c->meta.index;
    if (st->in_len != index * 8) {
        sim_violation(s, "node %llu: snapshot at %llu has %zu bytes", (unsigned long long)n->id,
                      (unsigned long long)index, st->in_len);
        return;
    }
    for (uint64_t i = 1; i <= index; i++) {
        uint64_t h;
        memcpy(&h, st->in_data + (i - 1) * 8, 8);
        struct sim_index_slot *slot = sim_slot(s, i);
        if (slot->applied_hash == 0)
            slot->applied_hash = h;
        else if (slot->applied_hash != h) {
            sim_violation(s,
                          "state machine safety: snapshot installed on node %llu differs at %llu",
                          (unsigned long long)n->id, (unsigned long long)i);
            return;
        }
    }
    struct sim_index_slot *slot = sim_slot(s, index);
    uint64_t chain = 0;
    for (size_t i = 0; i < slot->n; i++)
        if (slot->terms[i].term == c->meta.term)
            chain = slot->terms[i].chain;
    if (chain == 0) {
        sim_violation(s, "snapshot at %llu term %llu matches no entry ever stored",
                      (unsigned long long)index, (unsigned long long)c->meta.term);
        return;
    }
    sim_st_free_range(st->ents, 0, st->n);
    sim_st_free_range(st->saved, 0, st->n_saved);
    sim_st_free_range(st->trail, 0, st->n_trail);
    st->n_trail = 0;
    st->n = st->n_saved = st->stable_prefix = 0;
    st->base = index;
    st->base_term = c->meta.term;
    st->base_chain = chain;
    st->base_config = c->meta.config;
    rc_free(st->snap_data);
    st->snap_data = st->in_data;
    st->snap_len = st->in_len;
    st->in_data = NULL;
    st->in_len = st->in_cap = st->in_durable = 0;
    st->in_index = st->in_term = 0;
    s->snapshots_installed++;
    if (s->p.lazy_store && n->applied >= index) {
        s->snapshot_installs_skipped++; /* snapshots_restore: the store holds the index */
        return;
    }
    n->sm = sim_grow(n->sm, &n->cap_sm, (size_t)index + 1, sizeof *n->sm);
    memcpy(n->sm + 1, st->snap_data, st->snap_len);
    n->applied = index;
    n->sm_durable = index; /* snapstream rebuilds the store crash-safely */
}

/* ---------------------------------------------------------------- ready processing */

/* node.c early_sends_ok: whether this ready's replication messages leave before its writes. */
SIM_FN int sim_early_sends_ok(struct sim *s, const struct sim_node *n, const struct raft_ready *rd)
{
    if (!s->p.early_sends || rd->snapshot_chunk || rd->n_messages == 0)
        return 0;
    if (!rd->has_hard_state || s->p.early_sends == SIM_EARLY_ANY_TERM)
        return 1;
    return rd->hard_state.term == n->st.durable_hs.term &&
           rd->hard_state.vote == n->st.durable_hs.vote;
}

/* node.c is_replication (or every message, in the broken SIM_EARLY_ALL_MESSAGES). */
SIM_FN int sim_sent_early(const struct sim *s, const struct raft_message *m)
{
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
           m->type == RAFT_MSG_SNAPSHOT || s->p.early_sends == SIM_EARLY_ALL_MESSAGES;
}

/* node.c send_messages(early = 1). */
SIM_FN void sim_send_early(struct sim *s, const struct raft_ready *rd)
{
    s->early_readies++;
    for (size_t i = 0; i < rd->n_messages; i++) {
        if (sim_sent_early(s, &rd->messages[i])) {
            sim_send(s, &rd->messages[i]);
            s->early_sent++;
        }
    }
}

/*
 * node.c sync_pending: an fsync covering what is written when it begins, one at a time.
 * node.c syncs at once when the leader's own copy is needed for commit
 * (raft_self_sync_needed), else after a delay that lets the followers commit first (or
 * every 200 ms) — here with sync_begin_pct percent chance per tick (now = 0) or at once
 * (now = 1).
 */
SIM_FN void sim_begin_sync(struct sim *s, struct sim_node *n, int now)
{
    if (!n->up || n->sync_busy)
        return;
    if (!now && !raft_self_sync_needed(n->r) && !sim_chance(s, s->p.sync_begin_pct, 100))
        return;
    if (raft_sync_point(n->r, &n->sync_at))
        n->sync_busy = 1;
}

SIM_FN void sim_step_done(struct sim *s, uint64_t id);

/* node.c sync_pending after its fsync: what the fsync covered becomes durable. */
SIM_FN void sim_finish_sync(struct sim *s, uint64_t id)
{
    struct sim_node *n = &s->nodes[id];
    struct sim_storage *st = &n->st;
    n->sync_busy = 0;
    struct raft_sync_point now;
    raft_sync_point(n->r, &now);
    /* The same epoch: no synced ready since, so the log only grew after sync_at. */
    if (now.epoch == n->sync_at.epoch && st->n_saved == 0 && n->sync_at.index > st->base) {
        size_t keep = (size_t)(n->sync_at.index - st->base);
        if (keep > st->n) {
            sim_violation(s, "node %llu: sync point %llu beyond its log %llu",
                          (unsigned long long)id, (unsigned long long)n->sync_at.index,
                          (unsigned long long)sim_st_last_index(st));
            return;
        }
        if (keep > st->stable_prefix)
            st->stable_prefix = keep;
    }
    s->async_syncs++;
    if (raft_synced(n->r, &n->sync_at) != 0)
        return;
    sim_step_done(s, id);
}

SIM_FN void sim_syncs_due(struct sim *s)
{
    for (uint64_t id = 1; id <= SIM_MAX_NODES && !s->violated; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->up)
            continue;
        if (n->sync_busy && sim_chance(s, s->p.sync_done_pct, 100))
            sim_finish_sync(s, id);
        else
            sim_begin_sync(s, n, s->healing);
    }
}

SIM_FN void sim_process_ready(struct sim *s, uint64_t id)
{
    struct sim_node *n = &s->nodes[id];
    while (n->up && !s->violated && raft_has_ready(n->r)) {
        struct raft_ready rd;
        int rc = raft_ready(n->r, &rd);
        if (rc != 0) {
            sim_violation(s, "node %llu ready: %s", (unsigned long long)id, rc_strerror(rc));
            return;
        }
        /* node.c hard_state_due: a commit-only change may be left unwritten for a while. */
        int write_hs = rd.has_hard_state;
        if (write_hs && s->p.lazy_commit_ticks > 0 && rd.hard_state.term == n->st.hs.term &&
            rd.hard_state.vote == n->st.hs.vote) {
            if (s->now - n->commit_written_at < (uint64_t)s->p.lazy_commit_ticks) {
                write_hs = 0;
                s->lazy_commit_skips++;
            } else {
                n->commit_written_at = s->now;
            }
        }
        /* node.c: a leader's ready written now and made durable later. */
        int unsynced = s->p.async_leader && rd.may_defer_sync && !write_hs &&
                       (s->p.async_leader == SIM_ASYNC_ALWAYS || !raft_self_sync_needed(n->r));
        /* node.c early_sends_ok + send_messages(early = 1), before anything is written. */
        int early = sim_early_sends_ok(s, n, &rd);
        if (early)
            sim_send_early(s, &rd);
        int writes = write_hs || rd.n_entries > 0 || rd.snapshot_chunk;
        if (writes && !s->healing && sim_chance(s, s->p.disk_fail_pml, 1000)) {
            /* The write failed before reaching the disk; nothing more of this ready is sent
             * (with early_sends, its replication messages already left). */
            raft_advance(n->r, RC_EIO);
            n->failed_at = (int)s->now;
            s->disk_failures++;
            if (s->p.verbose)
                fprintf(stderr, "t=%llu disk failure %llu\n", (unsigned long long)s->now,
                        (unsigned long long)id);
            return;
        }
        if (rd.snapshot_chunk)
            sim_write_chunk(s, n, rd.snapshot_chunk);
        if (rd.n_entries) {
            uint64_t first = rd.entries[0].index, last = sim_st_last_index(&n->st);
            if (first <= n->st.base) {
                sim_violation(s, "node %llu asked to store %llu below its snapshot %llu",
                              (unsigned long long)id, (unsigned long long)first,
                              (unsigned long long)n->st.base);
                return;
            }
            if (first <= last && unsynced) {
                sim_violation(
                    s, "node %llu: a ready that truncates (%llu..%llu) may defer its sync",
                    (unsigned long long)id, (unsigned long long)first, (unsigned long long)last);
                return;
            }
            if (first <= last)
                s->truncated_entries += last - first + 1;
            sim_st_truncate(&n->st, (size_t)(first - 1 - n->st.base));
            for (size_t i = 0; i < rd.n_entries; i++)
                sim_st_append(s, &n->st, &rd.entries[i]);
        }
        if (write_hs)
            n->st.hs = rd.hard_state;
        if (s->p.send_before_sync)
            for (size_t i = 0; i < rd.n_messages; i++)
                sim_send(s, &rd.messages[i]);
        if (writes && !s->healing && sim_chance(s, s->p.sync_crash_pml, 1000)) {
            if (early)
                s->early_crashes++;
            sim_crash(s, id); /* before fsync: the ready's writes may be lost */
            return;
        }
        if (unsynced)
            s->unsynced_readies += rd.n_entries > 0;
        else
            sim_st_sync(&n->st);
        if (!s->p.send_before_sync)
            for (size_t i = 0; i < rd.n_messages; i++)
                if (!early || !sim_sent_early(s, &rd.messages[i]))
                    sim_send(s, &rd.messages[i]);
        for (size_t i = 0; i < rd.n_committed; i++) {
            const struct raft_entry *e = &rd.committed[i];
            if (e->index > n->st.base + n->st.stable_prefix)
                s->applied_unsynced++; /* a power loss may leave the store ahead of the log */
            if (s->p.lazy_store && e->index <= n->applied) {
                /* node.c apply: the state machine already holds it — the same entry. */
                s->store_skips_checked++;
                if (n->sm[e->index] != sim_entry_hash(e)) {
                    sim_violation(s,
                                  "store safety: node %llu holds another entry at %llu than "
                                  "the one committed there",
                                  (unsigned long long)id, (unsigned long long)e->index);
                    return;
                }
                continue;
            }
            sim_apply(s, n, &rd.committed[i]);
        }
        for (size_t i = 0; i < rd.n_read_states; i++) {
            for (size_t j = 0; j < s->n_reads; j++) {
                struct sim_read *r = &s->reads[j];
                if (r->node == id && r->ctx == rd.read_states[i].ctx) {
                    r->confirmed = 1;
                    r->read_index = rd.read_states[i].index;
                }
            }
        }
        if (unsynced)
            raft_advance_unsynced(n->r);
        else
            raft_advance(n->r, 0);
        sim_serve_reads(s, n);
    }
    if (n->up && raft_self_sync_needed(n->r))
        sim_begin_sync(s, n, 1);
}

SIM_FN void sim_step_done(struct sim *s, uint64_t id)
{
    sim_process_ready(s, id);
    if (!s->violated)
        sim_check_all(s);
    /* Compaction comes after the checks, which read the entries it drops. */
    if (!s->violated)
        sim_maybe_compact(s, &s->nodes[id]);
}

/* ---------------------------------------------------------------- faults and clients */

SIM_FN uint64_t sim_find_leader(struct sim *s)
{
    uint64_t best = 0, best_term = 0;
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->up)
            continue;
        struct raft_status st;
        raft_status(n->r, &st);
        if (st.role == RAFT_LEADER && st.term > best_term) {
            best = id;
            best_term = st.term;
        }
    }
    return best;
}

SIM_FN uint64_t sim_random_up_node(struct sim *s)
{
    uint64_t ids[SIM_MAX_NODES];
    int k = 0;
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++)
        if (s->nodes[id].up)
            ids[k++] = id;
    return k ? ids[sim_rand(s) % (uint64_t)k] : 0;
}

SIM_FN void sim_client_write(struct sim *s)
{
    uint64_t id = sim_chance(s, 80, 100) ? sim_find_leader(s) : sim_random_up_node(s);
    if (!id)
        return;
    struct sim_node *n = &s->nodes[id];
    unsigned char data[64];
    uint64_t op = ++s->next_op;
    memcpy(data, &op, 8);
    size_t len = 8 + (size_t)(sim_rand(s) % 56);
    for (size_t i = 8; i < len; i++)
        data[i] = (unsigned char)sim_rand(s);
    uint64_t index, term;
    if (raft_propose(n->r, data, len, &index, &term) != 0)
        return;
    s->props = sim_grow(s->props, &s->cap_props, s->n_props + 1, sizeof *s->props);
    s->props[s->n_props++] = (struct sim_proposal){id, index, term, op};
    sim_step_done(s, id);
}

/* A node that believes it leads, chosen at random (a client may talk to a deposed leader). */
SIM_FN uint64_t sim_random_claimed_leader(struct sim *s)
{
    uint64_t ids[SIM_MAX_NODES];
    int k = 0;
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
        struct raft_status st;
        if (!s->nodes[id].up)
            continue;
        raft_status(s->nodes[id].r, &st);
        if (st.role == RAFT_LEADER)
            ids[k++] = id;
    }
    return k ? ids[sim_rand(s) % (uint64_t)k] : 0;
}

SIM_FN void sim_client_read(struct sim *s)
{
    uint64_t id = sim_chance(s, 50, 100) ? sim_random_claimed_leader(s) : sim_find_leader(s);
    if (!id || sim_chance(s, 10, 100))
        id = sim_random_up_node(s);
    if (!id)
        return;
    uint64_t ctx = ++s->next_ctx;
    if (raft_read_index(s->nodes[id].r, ctx) != 0)
        return;
    s->reads = sim_grow(s->reads, &s->cap_reads, s->n_reads + 1, sizeof *s->reads);
    s->reads[s->n_reads++] = (struct sim_read){id, ctx, s->max_acked_index, 0, 0};
    sim_step_done(s, id);
}

SIM_FN void sim_heal_partitions(struct sim *s)
{
    memset(s->blocked, 0, sizeof s->blocked);
    s->heal_at = 0;
}

SIM_FN void sim_partition(struct sim *s)
{
    sim_heal_partitions(s);
    if (sim_chance(s, 1, 3)) {
        /* One way: a random set of directed links goes dark. */
        int links = 1 + (int)(sim_rand(s) % 4);
        for (int i = 0; i < links; i++) {
            uint64_t a = 1 + sim_rand(s) % SIM_MAX_NODES, b = 1 + sim_rand(s) % SIM_MAX_NODES;
            s->blocked[a][b] = 1;
        }
    } else {
        /* Symmetric: two sides. */
        int side[SIM_MAX_NODES + 1];
        for (int id = 1; id <= SIM_MAX_NODES; id++)
            side[id] = (int)(sim_rand(s) % 2);
        for (int a = 1; a <= SIM_MAX_NODES; a++)
            for (int b = 1; b <= SIM_MAX_NODES; b++)
                s->blocked[a][b] = side[a] != side[b];
    }
    s->heal_at = s->now + 5 + sim_rand(s) % (uint64_t)(6 * s->p.election_ticks);
}

SIM_FN void sim_membership_change(struct sim *s)
{
    uint64_t lid = sim_find_leader(s);
    if (!lid)
        return;
    struct raft *r = s->nodes[lid].r;
    struct raft_status st;
    raft_status(r, &st);
    const struct raft_config *c = &st.config;
    int choice = (int)(sim_rand(s) % 3);
    uint64_t id = 0;
    enum raft_membership_op op;
    if (choice == 0 && c->n_learners > 0) {
        op = RAFT_PROMOTE;
        id = c->learners[sim_rand(s) % c->n_learners];
    } else if (choice == 1 && c->n_voters > 3) {
        op = RAFT_REMOVE;
        id = c->voters[sim_rand(s) % c->n_voters];
    } else if (choice == 1 && c->n_learners > 0) {
        op = RAFT_REMOVE;
        id = c->learners[sim_rand(s) % c->n_learners];
    } else {
        op = RAFT_ADD_LEARNER;
        for (uint64_t cand = 1; cand <= SIM_MAX_NODES; cand++) {
            if (!raft_config_has_voter(c, cand) && !raft_config_has_learner(c, cand)) {
                id = cand;
                break;
            }
        }
        if (!id || c->n_voters + c->n_learners >= 6)
            return;
    }
    if (raft_change_membership(r, op, id) != 0)
        return;
    s->membership_changes++;
    if (s->p.verbose)
        fprintf(stderr, "t=%llu leader %llu: membership op %d on %llu\n",
                (unsigned long long)s->now, (unsigned long long)lid, (int)op,
                (unsigned long long)id);
    if (op == RAFT_ADD_LEARNER && !s->nodes[id].up)
        sim_start(s, id); /* a fresh or returning server, with whatever it stored */
    sim_step_done(s, lid);
}

SIM_FN void sim_transfer(struct sim *s)
{
    uint64_t lid = sim_find_leader(s);
    if (!lid)
        return;
    struct raft_status st;
    raft_status(s->nodes[lid].r, &st);
    if (st.config.n_voters < 2)
        return;
    uint64_t to = st.config.voters[sim_rand(s) % st.config.n_voters];
    if (raft_transfer_leader(s->nodes[lid].r, to) == 0) {
        s->transfers++;
        sim_step_done(s, lid);
    }
}

SIM_FN int sim_count_up(struct sim *s)
{
    int k = 0;
    for (int id = 1; id <= SIM_MAX_NODES; id++)
        k += s->nodes[id].up;
    return k;
}

/* A random up node, or the leader with leader_crash_pct percent chance. */
SIM_FN uint64_t sim_crash_target(struct sim *s)
{
    uint64_t leader = sim_find_leader(s);
    if (leader && sim_chance(s, s->p.leader_crash_pct, 100))
        return leader;
    return sim_random_up_node(s);
}

SIM_FN void sim_faults(struct sim *s)
{
    if (s->heal_at && s->now >= s->heal_at)
        sim_heal_partitions(s);
    if (sim_chance(s, s->p.partition_pml, 1000))
        sim_partition(s);
    if (sim_chance(s, s->p.crash_pml, 1000) && sim_count_up(s) > 1)
        sim_crash(s, sim_crash_target(s));
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
        struct sim_node *n = &s->nodes[id];
        /* Down nodes come back after a while; failed disks are "replaced" by a restart. */
        if (s->p.no_auto_restart)
            continue;
        if (n->exists && !n->up && sim_chance(s, 30, 1000))
            sim_start(s, id);
        else if (n->up && n->failed_at >= 0 && s->now > (uint64_t)n->failed_at + 20) {
            sim_crash(s, id);
            sim_start(s, id);
        }
    }
    for (uint64_t id = 1; s->p.hold_apply_pml && id <= SIM_MAX_NODES; id++) {
        struct sim_node *n = &s->nodes[id];
        if (n->up && sim_chance(s, s->p.hold_apply_pml, 1000)) {
            /* Held, then released in steps (as node.c paces its catch-up), or at once. */
            struct raft_status st;
            raft_status(n->r, &st);
            n->apply_held = n->apply_held ? 0 : 1;
            uint64_t limit = n->apply_held         ? 0
                             : sim_chance(s, 1, 2) ? st.applied + 1 + sim_rand(s) % 4
                                                   : UINT64_MAX;
            raft_limit_apply(n->r, limit);
        }
    }
    if (sim_chance(s, s->p.membership_pml, 1000))
        sim_membership_change(s);
    if (sim_chance(s, s->p.transfer_pml, 1000))
        sim_transfer(s);
}

/* ---------------------------------------------------------------- the loop */

SIM_FN void sim_deliver_due(struct sim *s)
{
    for (;;) {
        if (s->violated)
            return;
        /* Pick a random due message: this reorders messages of the same moment. */
        size_t due[64];
        size_t n_due = 0;
        for (size_t i = 0; i < s->n_net && n_due < 64; i++)
            if (s->net[i].deliver_at <= s->now)
                due[n_due++] = i;
        if (n_due == 0) {
            /* node.c's check handle: the batched readies are processed now. */
            int any = 0;
            for (uint64_t id = 1; id <= SIM_MAX_NODES && !s->violated; id++) {
                if (!s->deferred[id])
                    continue;
                s->deferred[id] = 0;
                any = 1;
                if (s->nodes[id].up)
                    sim_step_done(s, id);
            }
            if (!any)
                return;
            continue;
        }
        size_t pick = due[sim_rand(s) % n_due];
        struct sim_msg m = s->net[pick];
        s->net[pick] = s->net[--s->n_net];
        struct sim_node *to = &s->nodes[m.to];
        if (to->up && !s->blocked[m.from][m.to]) {
            struct raft_message msg;
            int rc = raft_msg_decode(m.bytes, m.len, &msg);
            if (rc != 0) {
                sim_violation(s, "undecodable message: %s", rc_strerror(rc));
            } else {
                rc = raft_step(to->r, &msg);
                if (rc != 0 && rc != RC_ECLOSED)
                    sim_violation(s, "node %llu rejected a message of type %d from %llu: %s",
                                  (unsigned long long)m.to, msg.type, (unsigned long long)m.from,
                                  rc_strerror(rc));
                raft_msg_decoded_free(&msg);
                if (!s->healing && sim_chance(s, s->p.batch_pct, 100)) {
                    s->deferred[m.to] = 1;
                    s->batched_steps++;
                } else {
                    s->deferred[m.to] = 0;
                    sim_step_done(s, m.to);
                }
            }
        }
        rc_free(m.bytes);
    }
}

SIM_FN void sim_tick_all(struct sim *s)
{
    uint64_t order[SIM_MAX_NODES];
    int k = 0;
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++)
        if (s->nodes[id].up)
            order[k++] = id;
    for (int i = k - 1; i > 0; i--) {
        int j = (int)(sim_rand(s) % (uint64_t)(i + 1));
        uint64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < k && !s->violated; i++) {
        struct sim_node *n = &s->nodes[order[i]];
        /* Clocks drift: now and then a node misses a tick. */
        if (!s->healing && sim_chance(s, 5, 100))
            continue;
        raft_tick(n->r);
        sim_step_done(s, order[i]);
    }
}

SIM_FN void sim_one_tick(struct sim *s)
{
    s->now++;
    if (!s->healing)
        sim_faults(s);
    if (sim_chance(s, s->p.propose_pct, 100))
        sim_client_write(s);
    if (sim_chance(s, s->p.read_pct, 100))
        sim_client_read(s);
    sim_tick_all(s);
    sim_syncs_due(s);
    sim_deliver_due(s);
}

SIM_FN void sim_init(struct sim *s, const struct sim_params *p, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->seed = seed;
    s->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    sim_current_seed = seed;
    signal(SIGABRT, sim_abort_handler);
    struct raft_config c;
    memset(&c, 0, sizeof c);
    for (int i = 1; i <= p->n_nodes; i++)
        c.voters[c.n_voters++] = (uint64_t)i;
    struct raft_entry boot;
    raft_bootstrap_entry(&c, &boot);
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
        s->nodes[id].id = id;
        s->nodes[id].failed_at = -1;
    }
    for (uint64_t id = 1; id <= (uint64_t)p->n_nodes; id++) {
        struct sim_node *n = &s->nodes[id];
        sim_st_append(s, &n->st, &boot);
        n->st.hs.term = 1;
        sim_st_sync(&n->st);
        sim_start(s, id);
    }
    rc_free(boot.data);
}

SIM_FN void sim_destroy(struct sim *s)
{
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
        raft_destroy(s->nodes[id].r);
        sim_st_destroy(&s->nodes[id].st);
        rc_free(s->nodes[id].sm);
    }
    for (size_t i = 0; i < s->n_net; i++)
        rc_free(s->net[i].bytes);
    for (size_t i = 0; i < s->cap_slots; i++)
        rc_free(s->slots[i].terms);
    rc_free(s->net);
    rc_free(s->slots);
    rc_free(s->leader_of_term);
    rc_free(s->props);
    rc_free(s->reads);
}

/* After healing: a leader emerges and a fresh write is acknowledged within the bound. */
SIM_FN void sim_check_liveness(struct sim *s)
{
    s->healing = 1;
    sim_heal_partitions(s);
    for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
        struct sim_node *n = &s->nodes[id];
        if (n->up) {
            n->apply_held = 0;
            raft_limit_apply(n->r, UINT64_MAX);
        }
        if (n->up && n->failed_at >= 0)
            sim_crash(s, id);
        if (n->exists && !n->up)
            sim_start(s, id);
    }
    uint64_t acked_before = s->acked_count;
    uint64_t deadline = s->now + (uint64_t)s->p.liveness_bound_ticks;
    while (!s->violated && s->now < deadline) {
        sim_one_tick(s);
        if (s->acked_count > acked_before)
            break;
        if (sim_find_leader(s) && s->n_props == 0)
            sim_client_write(s);
    }
    if (!s->violated && s->acked_count == acked_before) {
        uint64_t lid = sim_find_leader(s);
        sim_violation(s, "liveness: no write acknowledged within %d ticks of healing (leader %llu)",
                      s->p.liveness_bound_ticks, (unsigned long long)lid);
        return;
    }
    /* Every acknowledged write is in the final leader's log. */
    uint64_t lid = sim_find_leader(s);
    if (!lid)
        return;
    struct raft_status lst;
    raft_status(s->nodes[lid].r, &lst);
    for (uint64_t i = 1; i < s->cap_slots && !s->violated; i++) {
        struct sim_index_slot *slot = &s->slots[i];
        if (!slot->acked || !sim_log_knows(&lst, i))
            continue;
        uint64_t term;
        int rc = raft_log_term(s->nodes[lid].r, i, &term);
        if (rc != 0 || term != slot->committed_term)
            sim_violation(s,
                          "acknowledged write at %llu (term %llu) missing from leader %llu "
                          "(log %llu..%llu, term there %llu, rc %d)",
                          (unsigned long long)i, (unsigned long long)slot->committed_term,
                          (unsigned long long)lid, (unsigned long long)lst.first_index,
                          (unsigned long long)lst.last_index,
                          (unsigned long long)(rc == 0 ? term : 0), rc);
    }
}

/* Runs one seed; returns 0 if clean, 1 with s->violation filled otherwise. */
SIM_FN int sim_run(const struct sim_params *p, uint64_t seed, struct sim *s)
{
    sim_init(s, p, seed);
    while (!s->violated && s->now < (uint64_t)p->chaos_ticks)
        sim_one_tick(s);
    if (!s->violated)
        sim_check_liveness(s);
    return s->violated;
}

/* Parameters drawn from the seed, so one number describes the whole run. */
SIM_FN void sim_params_for_seed(uint64_t seed, struct sim_params *p)
{
    uint64_t st = seed ^ 0xA5A5A5A5ull;
    memset(p, 0, sizeof *p);
    p->n_nodes = test_rand(&st) % 2 ? 5 : 3;
    p->chaos_ticks = 300;
    p->liveness_bound_ticks = 400;
    p->election_ticks = 10;
    p->heartbeat_ticks = 1 + (int)(test_rand(&st) % 2);
    p->max_delay = 1 + (int)(test_rand(&st) % 4);
    p->drop_pct = (int)(test_rand(&st) % 15);
    p->dup_pct = (int)(test_rand(&st) % 8);
    p->propose_pct = 30 + (int)(test_rand(&st) % 60);
    p->read_pct = 20 + (int)(test_rand(&st) % 40);
    p->crash_pml = (int)(test_rand(&st) % 25);
    p->sync_crash_pml = (int)(test_rand(&st) % 20);
    p->disk_fail_pml = (int)(test_rand(&st) % 4);
    p->partition_pml = (int)(test_rand(&st) % 25);
    p->membership_pml = (int)(test_rand(&st) % 30);
    p->transfer_pml = (int)(test_rand(&st) % 15);
    p->max_msg_bytes = test_rand(&st) % 2 ? 64 : 4096;
    p->compact_every = test_rand(&st) % 3 ? 10 + (int)(test_rand(&st) % 50) : 0;
    p->snapshot_chunk_bytes = 32 + (size_t)(test_rand(&st) % 500);
    /* Safety must not depend on the optional protocol extensions: vary them too. */
    p->pre_vote = test_rand(&st) % 4 != 0;
    p->check_quorum = test_rand(&st) % 4 != 0;
    /* Drawn last, so that the parameters above stay what they were for each seed. */
    p->trailing = p->compact_every && test_rand(&st) % 2 ? 1 + (int)(test_rand(&st) % 20) : 0;
}

/* ---------------------------------------------------------------- scenario helpers */

/* Parameters for scripted scenarios: no random faults, one-tick delays. */
SIM_FN void sim_params_quiet(struct sim_params *p, int n_nodes)
{
    memset(p, 0, sizeof *p);
    p->n_nodes = n_nodes;
    p->chaos_ticks = 0;
    p->liveness_bound_ticks = 400;
    p->election_ticks = 10;
    p->heartbeat_ticks = 1;
    p->max_delay = 1;
    p->max_msg_bytes = 4096;
    p->pre_vote = 1;
    p->check_quorum = 1;
    p->no_auto_restart = 1;
}

SIM_FN void sim_run_ticks(struct sim *s, int ticks)
{
    for (int i = 0; i < ticks && !s->violated; i++)
        sim_one_tick(s);
}

SIM_FN void sim_isolate(struct sim *s, uint64_t id)
{
    for (uint64_t other = 1; other <= SIM_MAX_NODES; other++) {
        s->blocked[id][other] = 1;
        s->blocked[other][id] = 1;
    }
}

SIM_FN struct raft_status sim_status(struct sim *s, uint64_t id)
{
    struct raft_status st;
    memset(&st, 0, sizeof st);
    if (s->nodes[id].up)
        raft_status(s->nodes[id].r, &st);
    return st;
}

/* Ticks until some node leads (and no other up node claims a higher term); 0 on timeout. */
SIM_FN uint64_t sim_wait_leader(struct sim *s, int max_ticks)
{
    for (int i = 0; i < max_ticks && !s->violated; i++) {
        uint64_t id = sim_find_leader(s);
        if (id)
            return id;
        sim_one_tick(s);
    }
    return sim_find_leader(s);
}

/* Proposes on node id; returns the index, or 0 if the node refused. */
SIM_FN uint64_t sim_propose_on(struct sim *s, uint64_t id)
{
    unsigned char data[16];
    uint64_t op = ++s->next_op;
    memcpy(data, &op, 8);
    memset(data + 8, 0x5A, 8);
    uint64_t index, term;
    if (raft_propose(s->nodes[id].r, data, sizeof data, &index, &term) != 0)
        return 0;
    s->props = sim_grow(s->props, &s->cap_props, s->n_props + 1, sizeof *s->props);
    s->props[s->n_props++] = (struct sim_proposal){id, index, term, op};
    sim_step_done(s, id);
    return index;
}

/*
 * Replaces node id's stored log with the bootstrap configuration at index 1 followed by
 * entries of the given terms (content derived from index and term, so equal (index, term)
 * means equal entries on every node), sets its stored term, and restarts it.
 */
SIM_FN void sim_set_log(struct sim *s, uint64_t id, const uint64_t *terms, size_t n, uint64_t term)
{
    struct sim_node *node = &s->nodes[id];
    raft_destroy(node->r);
    node->r = NULL;
    node->up = 0;
    sim_st_truncate(&node->st, 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t body[2] = {i + 2, terms[i]};
        struct raft_entry e = {.term = terms[i],
                               .index = i + 2,
                               .type = RAFT_ENTRY_NORMAL,
                               .len = sizeof body,
                               .data = body};
        sim_st_append(s, &node->st, &e);
    }
    node->st.hs.term = term;
    node->st.hs.vote = 0;
    node->st.hs.commit = 0;
    sim_st_sync(&node->st);
    sim_start(s, id);
}

/* 1 if the logs of the up nodes in ids are identical (by chained hash). */
SIM_FN int sim_logs_equal(struct sim *s, const uint64_t *ids, int n)
{
    struct sim_storage *a = &s->nodes[ids[0]].st;
    for (int i = 1; i < n; i++) {
        struct sim_storage *b = &s->nodes[ids[i]].st;
        if (a->n != b->n || (a->n && a->ents[a->n - 1].chain != b->ents[b->n - 1].chain))
            return 0;
    }
    return 1;
}

#endif

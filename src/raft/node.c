/*
 * node.c — the Raft core on a libuv loop, with its log files and transport (see node.h).
 *
 * Inputs reach the core as they happen: a tick from the timer, a message from the
 * transport, a proposal or read from the caller. Each marks the node dirty; the ready is
 * processed once per loop iteration, in the node's check handle (or when the caller calls
 * raft_node_process first, as the server does right after proposing its batch), in the
 * order raft.h prescribes:
 *
 *   1. the incoming snapshot chunk, if any, to the log store (installing it when done, and
 *      then restoring the state machine through the restore callback);
 *   2. entries (truncating a conflicting suffix) and the hard state, then one
 *      logstore_sync: entries durable before the hard state;
 *   3. only then the messages (a vote or an append acknowledgement leaves this node only
 *      once what it acknowledges is on disk) — except that a leader's appends and
 *      heartbeats go out before step 2 when the ready changes neither term nor vote
 *      (early_sends_ok: the leader's disk write overlaps its followers');
 *   4. the committed entries to apply, and the reads whose index is applied;
 *   5. raft_advance.
 * On a leader, the committed entries (durable on a quorum, whatever its own copy is) are
 * applied before step 2, and the before_sync callback runs before an fsync,
 * so the replies to a committed batch do not wait for the sync of the next one. A follower
 * applies after sending its acknowledgement, which the leader is waiting for.
 *
 * Deferred persistence (raft.h, asynchronous persistence): while a leader's replicating
 * followers are a quorum by themselves, its ready that only appends (may_defer_sync) and
 * has no hard state due is only written to the log — no fsync — every message leaves, and
 * the core gets raft_advance_unsynced: the followers' durable copies commit the entries.
 * sync_pending makes them durable later — every SELF_SYNC_PERIOD_MS, when the leader's
 * copy is needed again, or when entries stay uncommitted SELF_SYNC_DELAY_MS — and tells
 * the core (raft_synced). Any other ready is persisted synchronously as before, and its
 * fsync covers everything written so far.
 *
 * A persistence or apply failure makes raft_advance fail the core: the node keeps its
 * handles (so the caller can close cleanly) but takes no further part.
 */
#include "node.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <string.h>

struct pending_read {
    uint64_t ctx;
    uint64_t index;
};

struct raft_node {
    uv_loop_t *loop;
    uint64_t tick_ms;
    struct raft_node_callbacks cb;
    void *ctx;
    struct logstore *log;
    struct raft *core;
    struct transport *transport;
    uv_timer_t tick;
    uv_check_t check;
    int handles_open;
    int failed;
    int closing;
    int processing;
    int in_ready; /* between raft_ready and raft_advance: the core must not be changed */
    struct raft_status last_status; /* what on_state last reported */
    uint64_t snapshots_refused;     /* the core's count when last logged, and when */
    uint64_t refused_logged_ms;
    uint64_t applied;
    uint64_t restoring;         /* restore_begin's snapshot index while it rebuilds, else 0 */
    uv_idle_t catchup;          /* paces applying after a rebuild (catch_up) */
    uint64_t catchup_limit;     /* the core hands out committed entries up to it meanwhile */
    uint64_t catchup_step;      /* entries let through per loop turn */
    uint64_t catchup_turn_ns;   /* uv_hrtime at the last catch-up step (0: none yet) */
    uint64_t catchup_backlog;   /* commit - applied then */
    struct pending_read *reads; /* confirmed reads waiting for the applied index */
    size_t n_reads, cap_reads;
    struct raft_node_stats stats;
    uint64_t commit_written_ms; /* loop time of the last commit-only hard state written */
    /* a leader's deferred writes wait up to SELF_SYNC_DELAY_MS for its followers to commit */
    uv_timer_t sync_timer;
    uint64_t sync_wait_index;     /* written index the timer waits to see committed */
    int sync_due;                 /* begin the next fsync without waiting */
    uint64_t sync_eager_until_ms; /* loop time until which every batch is synced at once */
    int sync_late;                /* waits in a row that ran out */
    uint64_t self_synced_ms;      /* loop time of the last sync of deferred entries */
    void (*on_closed)(void *ctx);
    void *on_closed_ctx;
};

void raft_node_options_default(struct raft_node_options *o, uint64_t id)
{
    memset(o, 0, sizeof *o);
    o->id = id;
    o->tick_ms = 20;
    o->election_ticks = 15;
    o->heartbeat_ticks = 3;
    o->max_msg_bytes = 1u << 20;
    o->max_inflight = 256;
    logstore_options_default(&o->log);
}

int raft_node_bootstrap_at(const char *dir, const struct raft_config *c, uint64_t base)
{
    int rc = rc_mkdir_p(dir);
    if (rc != 0)
        return rc;
    struct logstore *ls;
    rc = logstore_open(dir, NULL, &ls);
    if (rc != 0)
        return rc;
    struct raft_snapshot_meta meta = {0};
    struct raft_storage st = logstore_raft_storage(ls);
    st.snapshot(st.ctx, &meta);
    if (logstore_last_index(ls) > 0 || meta.index > 0) {
        logstore_close(ls);
        return RC_EEXIST;
    }
    struct raft_entry boot;
    rc = raft_bootstrap_entry(c, &boot);
    if (rc == 0) {
        /* A log that starts after base: its state up to base is the state machine's own
         * (a restored backup); term 1 as the bootstrap entry's. */
        if (base > 0) {
            rc = logstore_compact(ls, base, 1);
            boot.index = base + 1;
        }
        if (rc == 0)
            rc = logstore_append(ls, &boot, 1);
        if (rc == 0)
            rc = logstore_sync(ls);
        rc_free(boot.data);
    }
    logstore_close(ls);
    return rc;
}

int raft_node_bootstrap(const char *dir, const struct raft_config *c)
{
    return raft_node_bootstrap_at(dir, c, 0);
}

int raft_node_recover(const char *dir, uint64_t id, uint64_t held)
{
    struct logstore *ls;
    int rc = logstore_open(dir, NULL, &ls);
    if (rc != 0)
        return rc;
    struct raft_hard_state hs;
    logstore_hard_state(ls, &hs);
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t last = logstore_last_index(ls), last_term = 0;
    if (st.term(st.ctx, last, &last_term) != 0)
        last_term = 0;
    /* A term nobody has used: this node never saw it, and the others are gone for good
     * (the operator's promise), so no other entry can exist at (last + 1, term). */
    uint64_t term = (hs.term > last_term ? hs.term : last_term) + 1;
    if (held > last) {
        /* The state machine applied committed entries this log lost (a leader's deferred
         * writes, then a power failure): they are in no log any more, so the log restarts
         * after them, as after a restored backup (raft_node_bootstrap_at). */
        rc_warn("raft: the state machine holds entries up to %llu, the log ends at %llu; the "
                "log now starts after %llu",
                (unsigned long long)held, (unsigned long long)last, (unsigned long long)held);
        if ((rc = logstore_compact(ls, held, last_term)) != 0) {
            logstore_close(ls);
            return rc;
        }
        last = held;
    }
    struct raft_config c = {.n_voters = 1, .voters = {id}};
    size_t len = raft_config_encoded_size(&c);
    void *data = rc_malloc(len);
    if (!data) {
        logstore_close(ls);
        return RC_ENOMEM;
    }
    raft_config_encode(&c, data);
    struct raft_entry e = {.term = term,
                           .index = last + 1,
                           .type = RAFT_ENTRY_CONFIG,
                           .len = (uint32_t)len,
                           .data = data};
    rc = logstore_append(ls, &e, 1);
    struct raft_hard_state nhs = {.term = term, .vote = id, .commit = hs.commit};
    if (rc == 0)
        rc = logstore_set_hard_state(ls, &nhs);
    if (rc == 0)
        rc = logstore_sync(ls);
    rc_free(data);
    logstore_close(ls);
    if (rc == 0)
        rc_warn("raft: configuration rewritten to node %llu alone (entry %llu, term %llu)",
                (unsigned long long)id, (unsigned long long)(last + 1), (unsigned long long)term);
    return rc;
}

/* ============================== state reports ============================== */

static void report_state(struct raft_node *n)
{
    if (!n->cb.on_state || n->closing)
        return;
    struct raft_status st;
    raft_node_status(n, &st);
    if (st.snapshots_refused > n->snapshots_refused &&
        (!n->refused_logged_ms || uv_now(n->loop) - n->refused_logged_ms >= 10000)) {
        rc_warn("raft: refused the snapshot the leader sent (%llu times so far): its data does "
                "not match the checksum the leader recorded (a damaged snapshot file there?)",
                (unsigned long long)st.snapshots_refused);
        n->snapshots_refused = st.snapshots_refused;
        n->refused_logged_ms = uv_now(n->loop);
    }
    const struct raft_status *o = &n->last_status;
    if (st.role == o->role && st.term == o->term && st.leader == o->leader &&
        st.config_index == o->config_index)
        return;
    n->last_status = st;
    n->cb.on_state(n->ctx, &st);
}

static void fail(struct raft_node *n, const char *what, int rc)
{
    if (!n->failed)
        rc_error("raft: %s failed: %s; this node stops taking part (restart it once the cause "
                 "is fixed; a damaged store or log: docs/OPERATIONS.md)",
                 what, rc_strerror(rc));
    n->failed = 1;
}

/* ============================== ready ============================== */

/*
 * A hard state that changes only the commit index need not be durable at once: the commit
 * on disk is an optimisation and may lag (raft.h), a restarted node learns it again from
 * the leader, and the state machine may hold more than it says (raft_node_start). Writing
 * it replaces raft-state (a file write, two fsyncs and a rename) in every ready round under
 * load, so a commit-only change is written at most every COMMIT_WRITE_MS; term and vote
 * are written, and made durable, every time they change.
 */
#define COMMIT_WRITE_MS 1000

/*
 * How long a leader's deferred entries may wait for its followers to commit them before the
 * leader syncs its own copy (sync_pending); libuv's clock has millisecond steps, so the
 * wait is between SELF_SYNC_DELAY_MS - 1 and SELF_SYNC_DELAY_MS. After SELF_SYNC_LATE_LIMIT
 * waits in a row that ran out, the leader syncs every batch at once for SELF_SYNC_EAGER_MS
 * (a follower is slow; a single late batch is more likely a hiccup).
 */
#define SELF_SYNC_DELAY_MS   5
#define SELF_SYNC_LATE_LIMIT 3
#define SELF_SYNC_EAGER_MS   1000
/* A leader's deferred entries are made durable at least this often (each sync blocks the
 * loop for about a millisecond per 200 ms of writes on the development machine; syncing
 * every 20 ms tick cost 7% of SET -P 1 throughput). */
#define SELF_SYNC_PERIOD_MS 200

static int hard_state_due(struct raft_node *n, const struct raft_ready *rd)
{
    if (!rd->has_hard_state)
        return 0;
    struct raft_hard_state durable;
    logstore_hard_state(n->log, &durable);
    uint64_t now = uv_now(n->loop);
    if (rd->hard_state.term == durable.term && rd->hard_state.vote == durable.vote &&
        now - n->commit_written_ms < COMMIT_WRITE_MS)
        return 0;
    if (rd->hard_state.term == durable.term && rd->hard_state.vote == durable.vote)
        n->commit_written_ms = now;
    return 1;
}

/* Restores the state machine from the log's snapshot (after an install, or at start when
 * the state machine holds less than the snapshot covers). */
static int restore_state_machine(struct raft_node *n, int running)
{
    struct raft_snapshot_meta meta;
    logstore_snapshot_meta(n->log, &meta);
    if (meta.index == 0 || meta.index <= n->applied)
        return 0;
    /* While running, the state machine may rebuild elsewhere (restore_begin). */
    int begin = running && n->cb.restore_begin;
    int (*restore)(void *, const char *, const struct raft_snapshot_meta *) =
        begin ? n->cb.restore_begin : n->cb.restore;
    if (!restore) {
        rc_error("raft: a snapshot at %llu must be restored but nothing can restore it",
                 (unsigned long long)meta.index);
        return RC_EINVAL;
    }
    char path[4200];
    int rc = logstore_snapshot_path(n->log, path, sizeof path);
    if (rc == 0)
        rc = restore(n->ctx, path, &meta);
    if (begin && rc == RAFT_NODE_RESTORING) {
        /* Entries committed from here wait for raft_node_restored. */
        n->restoring = meta.index;
        raft_limit_apply(n->core, 0);
        return 0;
    }
    if (rc != 0) {
        rc_error("raft: restoring the state machine from the snapshot at %llu failed: %s",
                 (unsigned long long)meta.index, rc_strerror(rc));
        return rc;
    }
    if (n->restoring) { /* done at once: the state machine held it already */
        n->restoring = 0;
        raft_limit_apply(n->core, UINT64_MAX);
    }
    n->applied = meta.index;
    n->stats.snapshots_restored++;
    return 0;
}

/* Writes a received snapshot chunk; the last one installs the snapshot in the log (which
 * drops the whole log) and then restores the state machine from it. */
static int install_chunk(struct raft_node *n, const struct raft_snapshot_chunk *c)
{
    int rc = logstore_snapshot_chunk(n->log, c);
    if (rc != 0 || !c->done)
        return rc;
    rc_info("raft: installed a snapshot at index %llu term %llu (%llu bytes)",
            (unsigned long long)c->meta.index, (unsigned long long)c->meta.term,
            (unsigned long long)c->meta.size_bytes);
    n->stats.snapshots_installed++;
    return restore_state_machine(n, 1);
}

static void count_fsync(struct raft_node *n, uint64_t us)
{
    n->stats.fsyncs++;
    n->stats.fsync_total_us += us;
    if (us > n->stats.fsync_max_us)
        n->stats.fsync_max_us = us;
}

/* logstore_sync, timed for the stats. */
static int sync_log(struct raft_node *n)
{
    uint64_t t0 = rc_mono_ns();
    int rc = logstore_sync(n->log);
    count_fsync(n, (rc_mono_ns() - t0) / 1000);
    return rc;
}

/*
 * Whether to write this ready without an fsync (raft.h, asynchronous persistence): a leader's
 * ready that only appends, with no hard state due, while its replicating followers are a
 * quorum by themselves. They commit its entries from their durable copies, and it applies
 * them before its own copy is durable; its fsync would be a third one per batch on the
 * disk. sync_pending makes them durable later.
 */
static int sync_later(struct raft_node *n, const struct raft_ready *rd, int write_hard_state)
{
    return rd->may_defer_sync && !write_hard_state && !raft_self_sync_needed(n->core);
}

/* Writes a deferred ready: its entries only. */
static int write_unsynced(struct raft_node *n, const struct raft_ready *rd)
{
    if (rd->n_entries == 0)
        return 0;
    n->stats.entries_appended += rd->n_entries;
    return logstore_append(n->log, rd->entries, rd->n_entries);
}

/* Persists a ready synchronously; everything written before, too (sync_earlier: some of it
 * is not yet durable — a former leader's deferred writes), before its messages leave. */
static int persist(struct raft_node *n, const struct raft_ready *rd, int write_hard_state,
                   int sync_earlier)
{
    int rc = 0;
    if (rd->snapshot_chunk) {
        rc = install_chunk(n, rd->snapshot_chunk);
        if (rc != 0)
            return rc;
    }
    if (rd->n_entries) {
        rc = logstore_append(n->log, rd->entries, rd->n_entries);
        n->stats.entries_appended += rd->n_entries;
    }
    if (rc == 0 && write_hard_state)
        rc = logstore_set_hard_state(n->log, &rd->hard_state);
    if (rc == 0 && (rd->n_entries || write_hard_state || sync_earlier))
        rc = sync_log(n);
    return rc;
}

/*
 * Whether the leader's replication messages of this ready may leave before it is durable
 * (Raft thesis §10.2.1: the leader writes its log in parallel with replicating it). Safe
 * because the core counts the leader's own entries towards commit only once they are
 * stable (raft_advance), and an append or heartbeat acknowledges nothing. Not when the
 * ready changes the term or vote: a leader whose term is not yet durable could, after a
 * crash, vote again in that term, and two leaders of one term could then both have sent
 * entries. Not with a snapshot chunk (a follower's ready).
 */
static int early_sends_ok(const struct raft_node *n, const struct raft_ready *rd)
{
    if (rd->snapshot_chunk || rd->n_messages == 0)
        return 0;
    if (rd->has_hard_state) {
        struct raft_hard_state durable;
        logstore_hard_state(n->log, &durable);
        if (rd->hard_state.term != durable.term || rd->hard_state.vote != durable.vote)
            return 0;
    }
    return 1;
}

/* Only a leader's replication messages may leave before the persist; never an answer
 * (core.c's merge_acceptance relies on that: a merged acceptance speaks for entries of the
 * whole ready). */
static int is_replication(const struct raft_message *m)
{
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
           m->type == RAFT_MSG_SNAPSHOT;
}

/* Sends the ready's messages: with early = 1 only the replication messages that may leave
 * before persisting; with early = 0 the rest (all of them when early_done is 0). */
static void send_messages(struct raft_node *n, const struct raft_ready *rd, int early,
                          int early_done)
{
    transport_cork(n->transport); /* one write per peer for all of them */
    for (size_t i = 0; i < rd->n_messages; i++) {
        int repl = is_replication(&rd->messages[i]);
        if ((early && !repl) || (!early && early_done && repl))
            continue;
        int rc = transport_send(n->transport, rd->messages[i].to, &rd->messages[i]);
        if (rc == 0)
            n->stats.msgs_sent++;
        else
            n->stats.msgs_dropped++;
    }
    transport_uncork(n->transport);
}

static int add_read(struct raft_node *n, const struct raft_read_state *rs)
{
    if (rc_reserve((void **)&n->reads, &n->cap_reads, n->n_reads + 1, sizeof *n->reads) != 0)
        return RC_ENOMEM;
    n->reads[n->n_reads++] = (struct pending_read){rs->ctx, rs->index};
    return 0;
}

/* Serves, in order, the confirmed reads whose index is applied. */
static void serve_reads(struct raft_node *n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].index <= n->applied && n->cb.read_ready)
            n->cb.read_ready(n->ctx, n->reads[i].ctx);
        else
            n->reads[kept++] = n->reads[i];
    }
    n->n_reads = kept;
}

/*
 * Whether to apply the ready's committed entries before persisting it: on a leader (whose
 * replies wait on them; a follower's acknowledgement, which the leader waits on, should not
 * wait for its apply), when they are all durable already — none is among the ready's new
 * entries (entries of earlier readies were synced before raft_advance).
 */
static int apply_first(struct raft_node *n, const struct raft_ready *rd)
{
    if (rd->snapshot_chunk || rd->n_committed == 0 ||
        (rd->n_entries > 0 && rd->committed[rd->n_committed - 1].index >= rd->entries[0].index))
        return 0;
    struct raft_status st;
    raft_status(n->core, &st);
    return st.role == RAFT_LEADER;
}

static int apply(struct raft_node *n, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        if (e->index <= n->applied)
            continue; /* the state machine already holds it (restart) */
        if (n->restoring) {
            /* Entries before the snapshot being rebuilt (handed out with its chunk): it
             * holds them. None after it is handed out while the core holds applying. */
            if (e->index > n->restoring)
                return RC_EINVAL;
            continue;
        }
        int rc = n->cb.apply ? n->cb.apply(n->ctx, e) : 0;
        if (rc != 0)
            return rc;
        n->applied = e->index;
        n->stats.entries_applied++;
    }
    for (size_t i = 0; i < rd->n_read_states; i++) {
        int rc = add_read(n, &rd->read_states[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void on_sync_timer(uv_timer_t *h)
{
    struct raft_node *n = h->data;
    if (n->failed || n->closing)
        return;
    struct raft_status st;
    raft_status(n->core, &st);
    if (st.commit < n->sync_wait_index) {
        /* The followers did not commit it in time: our copy counts — and after a few such
         * waits in a row, for every batch for a while (a follower is slow). */
        n->sync_due = 1;
        if (++n->sync_late >= SELF_SYNC_LATE_LIMIT) {
            n->sync_eager_until_ms = uv_now(n->loop) + SELF_SYNC_EAGER_MS;
            n->sync_late = 0;
        }
    }
    n->sync_wait_index = 0;
    raft_node_process(n);
}

/*
 * Whether to make a leader's deferred writes durable now: every SELF_SYNC_PERIOD_MS (what a
 * power loss can take from the leader's log stays within that much of writes — entries its
 * followers hold, since only their copies committed them), when
 * raft_self_sync_needed (its copy is needed for a quorum again: a follower gone), or when
 * entries were still uncommitted SELF_SYNC_DELAY_MS after they were written (a slow
 * follower: the leader's copy then makes the quorum, for SELF_SYNC_EAGER_MS). Otherwise it
 * (re)arms the timer that checks the latter for the newest entries, and stops it once they
 * commit: in the common case it never fires.
 */
static int sync_now(struct raft_node *n, const struct raft_sync_point *at)
{
    uint64_t now = uv_now(n->loop);
    if (n->sync_due || raft_self_sync_needed(n->core) || now < n->sync_eager_until_ms ||
        now - n->self_synced_ms >= SELF_SYNC_PERIOD_MS)
        return 1;
    struct raft_status st;
    raft_status(n->core, &st);
    if (n->sync_wait_index != 0 && st.commit >= n->sync_wait_index) {
        /* Committed in time: the timer need not wake the loop (it would split batches). */
        uv_timer_stop(&n->sync_timer);
        n->sync_wait_index = 0;
        n->sync_late = 0;
    }
    if (n->sync_wait_index == 0 && st.commit < at->index) {
        n->sync_wait_index = at->index;
        uv_timer_start(&n->sync_timer, on_sync_timer, SELF_SYNC_DELAY_MS, 0);
    }
    return 0;
}

/* Makes the leader's deferred writes durable (one logstore_sync) when sync_now says so. */
static void sync_pending(struct raft_node *n)
{
    struct raft_sync_point at;
    if (n->failed || n->closing || !raft_sync_point(n->core, &at) || !sync_now(n, &at))
        return;
    n->sync_due = 0;
    n->self_synced_ms = uv_now(n->loop);
    if (n->cb.before_sync)
        n->cb.before_sync(n->ctx); /* replies already decided need not wait for it */
    int rc = sync_log(n);
    if (rc == 0)
        rc = raft_synced(n->core, &at);
    if (rc != 0)
        fail(n, "syncing the log", rc);
}

/* 1 if the core has work; once it has none, deferred writes are synced if due. */
static int next_ready(struct raft_node *n)
{
    if (n->failed)
        return 0;
    if (raft_has_ready(n->core))
        return 1;
    sync_pending(n);
    return !n->failed && raft_has_ready(n->core);
}

int raft_node_process(struct raft_node *n)
{
    if (n->failed)
        return RC_ECLOSED;
    if (n->processing)
        return 0; /* a callback called us: the outer loop picks the work up */
    n->processing = 1;
    while (next_ready(n)) {
        struct raft_ready rd;
        int rc = raft_ready(n->core, &rd);
        if (rc != 0) {
            fail(n, "collecting ready", rc);
            break;
        }
        n->stats.readies++;
        n->in_ready = 1;
        int early = early_sends_ok(n, &rd);
        if (early)
            send_messages(n, &rd, 1, 0);
        int applied_first = apply_first(n, &rd);
        if (applied_first && (rc = apply(n, &rd)) != 0) {
            n->in_ready = 0;
            fail(n, "applying committed entries", rc);
            raft_advance(n->core, rc);
            break;
        }
        int write_hard_state = hard_state_due(n, &rd);
        int deferred = sync_later(n, &rd, write_hard_state);
        if (deferred) {
            rc = write_unsynced(n, &rd);
        } else {
            if (n->cb.before_sync && (rd.snapshot_chunk || rd.n_entries || write_hard_state))
                n->cb.before_sync(n->ctx);
            struct raft_sync_point written;
            rc = persist(n, &rd, write_hard_state, raft_sync_point(n->core, &written));
        }
        if (rc != 0) {
            fail(n, "persisting the log", rc);
            n->in_ready = 0;
            raft_advance(n->core, rc);
            break;
        }
        send_messages(n, &rd, 0, early);
        rc = applied_first ? 0 : apply(n, &rd);
        n->in_ready = 0;
        if (rc != 0) {
            fail(n, "applying committed entries", rc);
            raft_advance(n->core, rc);
            break;
        }
        rc = deferred ? raft_advance_unsynced(n->core) : raft_advance(n->core, 0);
        if (rc != 0) {
            fail(n, "advancing", rc);
            break;
        }
        serve_reads(n);
        report_state(n);
    }
    n->processing = 0;
    report_state(n);
    return n->failed ? RC_ECLOSED : 0;
}

/* ============================== inputs ============================== */

/*
 * Whether the caller may hand the core an input now. Not from inside the apply (or
 * restore) callback: a ready is outstanding there, and the core must not change until
 * raft_advance (raft.h) — a proposal could move the log array that the ready still points
 * into, which raft_advance then reads. The caller queues the work and makes it after.
 */
static int refuse_input(const struct raft_node *n)
{
    if (n->failed || n->closing)
        return RC_ECLOSED;
    return n->in_ready ? RC_EBUSY : 0;
}

static void on_check(uv_check_t *h)
{
    raft_node_process(h->data);
}

static void on_tick(uv_timer_t *h)
{
    struct raft_node *n = h->data;
    if (n->failed)
        return;
    int rc = raft_tick(n->core);
    if (rc != 0 && rc != RC_ECLOSED)
        fail(n, "tick", rc);
    raft_node_process(n);
}

/*
 * A heartbeat's commit is at most what its leader counts this node as holding (its match,
 * learned from this node's acknowledgements in that term, each sent only once the entries
 * were durable), so a commit beyond this node's last entry proves its disk lost entries it
 * had made durable: a log tail cut at a restart that was no torn write. The core would
 * clamp the commit and the leader treat every refusal below that match as stale, so the
 * node would stay behind for good, silently. It stops, saying so (etcd panics here).
 */
static void check_heartbeat_commit(struct raft_node *n, const struct raft_message *m)
{
    struct raft_status st;
    raft_status(n->core, &st);
    uint64_t last = st.last_index; /* at least the snapshot's index (log.c) */
    if (st.role != RAFT_FOLLOWER || st.term != m->term || st.leader != m->from || m->commit <= last)
        return;
    rc_error("raft: leader %llu counts entries up to %llu as held by this node, which "
             "acknowledged them, but its log ends at %llu: this node lost durable entries (a "
             "damaged disk, a disk that does not keep what it synced, or a DIR wiped or "
             "replaced under the same id). Remove this node (RAFTREMOVEPEER %llu), delete "
             "its DIR and join it again",
             (unsigned long long)m->from, (unsigned long long)m->commit, (unsigned long long)last,
             (unsigned long long)st.id);
    fail(n, "checking the log against the leader's", RC_ECORRUPT);
    report_state(n); /* the server stops on RAFT_FAILED; no ready round follows to say it */
}

static void on_message(void *ctx, uint64_t from, const struct raft_message *m)
{
    struct raft_node *n = ctx;
    if (n->failed || n->closing)
        return;
    n->stats.msgs_received++;
    int rc = raft_step(n->core, m);
    if (rc == 0 && m->type == RAFT_MSG_HEARTBEAT)
        check_heartbeat_commit(n, m);
    /* A malformed or stale message is refused by the core and changes nothing; only
     * running out of memory is the node's problem. */
    if (rc == RC_ENOMEM)
        fail(n, "stepping a message", rc);
    else if (rc != 0)
        rc_debug("raft: message type %d from %llu refused: %s", (int)m->type,
                 (unsigned long long)from, rc_strerror(rc));
}

int raft_node_propose(struct raft_node *n, const void *data, size_t len, uint64_t *index,
                      uint64_t *term)
{
    int refused = refuse_input(n);
    if (refused != 0)
        return refused;
    return raft_propose(n->core, data, len, index, term);
}

int raft_node_read_index(struct raft_node *n, uint64_t read_ctx)
{
    int refused = refuse_input(n);
    if (refused != 0)
        return refused;
    return raft_read_index(n->core, read_ctx);
}

int raft_node_transfer(struct raft_node *n, uint64_t id)
{
    int refused = refuse_input(n);
    if (refused != 0)
        return refused;
    return raft_transfer_leader(n->core, id);
}

int raft_node_change(struct raft_node *n, enum raft_membership_op op, uint64_t id)
{
    int refused = refuse_input(n);
    if (refused != 0)
        return refused;
    return raft_change_membership(n->core, op, id);
}

int raft_node_set_peer(struct raft_node *n, uint64_t id, const char *peer_addr)
{
    return transport_set_peer(n->transport, id, peer_addr);
}

int raft_node_remove_peer(struct raft_node *n, uint64_t id)
{
    return transport_remove_peer(n->transport, id);
}

int raft_node_port(const struct raft_node *n)
{
    return transport_port(n->transport);
}

struct logstore *raft_node_logstore(struct raft_node *n)
{
    return n->log;
}

int raft_node_compacted(struct raft_node *n, uint64_t index)
{
    int refused = refuse_input(n);
    if (refused != 0)
        return refused;
    int rc = raft_compacted(n->core, index);
    if (rc == 0)
        n->stats.snapshots_taken++;
    return rc;
}

/*
 * After a rebuild the entries committed meanwhile (many, under load) are applied a step at a
 * time, one step per loop turn, not in one go: the loop serves clients and peers in between.
 * The idle handle keeps the loop turning (no wait in poll) until they are done. A step
 * starts at CATCHUP_FIRST_STEP entries and doubles whenever the last loop turn (everything
 * it did, fsyncs included) took less than CATCHUP_TURN_LOW_NS or the backlog did not shrink
 * since the turn before; it never shrinks, so it soon covers what is left and the catch-up
 * ends, under any load the node can keep up with at all.
 */
#define CATCHUP_FIRST_STEP  16
#define CATCHUP_MAX_STEP    (1u << 20)
#define CATCHUP_TURN_LOW_NS 2000000ull

static void on_catchup(uv_idle_t *h);

static void catch_up(struct raft_node *n)
{
    struct raft_status st;
    raft_status(n->core, &st);
    uint64_t now = uv_hrtime(), backlog = st.commit - st.applied;
    if (n->catchup_turn_ns && n->catchup_step < CATCHUP_MAX_STEP &&
        (now - n->catchup_turn_ns < CATCHUP_TURN_LOW_NS || backlog >= n->catchup_backlog))
        n->catchup_step *= 2;
    n->catchup_turn_ns = now;
    n->catchup_backlog = backlog;
    if (st.applied >= n->catchup_limit)
        n->catchup_limit = st.applied + n->catchup_step;
    if (n->catchup_limit >= st.commit) {
        raft_limit_apply(n->core, UINT64_MAX);
        uv_idle_stop(&n->catchup);
    } else {
        raft_limit_apply(n->core, n->catchup_limit);
        uv_idle_start(&n->catchup, on_catchup);
    }
    raft_node_process(n); /* the entries let through, then the reads they free */
}

static void on_catchup(uv_idle_t *h)
{
    struct raft_node *n = h->data;
    if (n->failed || n->closing || n->restoring) {
        uv_idle_stop(h);
        return;
    }
    catch_up(n);
}

void raft_node_restored(struct raft_node *n, uint64_t index, int rc)
{
    if (n->failed || n->closing || n->restoring == 0 || index != n->restoring)
        return;
    if (rc != 0) {
        rc_error("raft: rebuilding the state machine from the snapshot at %llu failed: %s",
                 (unsigned long long)index, rc_strerror(rc));
        fail(n, "restoring the state machine", rc);
        report_state(n);
        return;
    }
    n->restoring = 0;
    n->applied = index;
    n->stats.snapshots_restored++;
    n->catchup_limit = index;
    n->catchup_step = CATCHUP_FIRST_STEP;
    n->catchup_turn_ns = 0;
    catch_up(n);
}

int raft_node_catching_up(const struct raft_node *n)
{
    return n->restoring != 0 || uv_is_active((const uv_handle_t *)&n->catchup);
}

int raft_node_peer_match(const struct raft_node *n, uint64_t id, uint64_t *match)
{
    return raft_peer_match(n->core, id, match);
}

int raft_node_peer_active(const struct raft_node *n, uint64_t id)
{
    return raft_peer_active(n->core, id);
}

int raft_node_peer_reachable(const struct raft_node *n, uint64_t id)
{
    return raft_peer_active(n->core, id) && transport_peer_connected(n->transport, id);
}

int raft_node_peer_heard(const struct raft_node *n, uint64_t id)
{
    return raft_peer_heard(n->core, id);
}

int raft_node_peer_after_snapshot(const struct raft_node *n, uint64_t id, uint64_t within_ms)
{
    uint64_t ticks = within_ms / n->tick_ms;
    return raft_peer_after_snapshot(n->core, id, ticks < UINT32_MAX ? (uint32_t)ticks : UINT32_MAX);
}

int raft_node_snapshots_in_flight(const struct raft_node *n)
{
    return raft_snapshots_in_flight(n->core);
}

int raft_node_term(struct raft_node *n, uint64_t index, uint64_t *term)
{
    return raft_log_term(n->core, index, term);
}

void raft_node_status(const struct raft_node *n, struct raft_status *st)
{
    raft_status(n->core, st);
    if (n->failed)
        st->role = RAFT_FAILED;
    if (n->restoring) /* the core counts the snapshot applied once installed */
        st->applied = n->applied;
}

void raft_node_stats(const struct raft_node *n, struct raft_node_stats *st)
{
    *st = n->stats;
    struct transport_stats ts;
    transport_stats(n->transport, &ts);
    st->msgs_dropped += ts.msgs_dropped;
    st->peer_reconnects = ts.reconnects;
    st->heartbeats_superseded = ts.heartbeats_superseded;
    st->peer_frames_rejected = ts.frames_rejected;
    st->peer_handshakes_refused = ts.handshake_refusals;
}

/* ============================== start and stop ============================== */

static void handle_closed(uv_handle_t *h)
{
    struct raft_node *n = h->data;
    if (--n->handles_open > 0)
        return;
    void (*cb)(void *) = n->on_closed;
    void *cb_ctx = n->on_closed_ctx;
    if (n->core)
        raft_destroy(n->core);
    if (n->log)
        logstore_close(n->log);
    rc_free(n->reads);
    rc_free(n);
    if (cb)
        cb(cb_ctx);
}

static void transport_closed(void *ctx)
{
    struct raft_node *n = ctx;
    n->transport = NULL;
    uv_handle_t h = {.data = n};
    handle_closed(&h);
}

/*
 * The only voter applies an entry only once its own copy is durable (it has no followers
 * to defer to), so its state machine cannot be ahead of its log unless the log lost
 * durable entries. Started anyway, it would elect itself and append at indexes the state
 * machine holds, and skip those entries as applied: its no-op, then client writes, which
 * replicas replaying the log would apply where it did not. Checked before that election.
 * --recover (raft_node_recover) moves the log past the state machine.
 */
static int check_sole_voter_log(struct raft_node *n, const struct raft_node_options *o)
{
    struct raft_status st;
    raft_status(n->core, &st);
    uint64_t last = st.last_index; /* at least the snapshot's index (log.c) */
    if (st.config.n_voters != 1 || st.config.voters[0] != o->id || o->applied <= last)
        return 0;
    rc_error("raft: the state machine holds entries up to %llu but the log in %s ends at "
             "%llu: the log lost durable entries (a damaged disk?). Start this node once "
             "with --recover (docs/OPERATIONS.md): its log then goes on after the state "
             "machine",
             (unsigned long long)o->applied, o->dir, (unsigned long long)last);
    return RC_ECORRUPT;
}

int raft_node_start(uv_loop_t *loop, const struct raft_node_options *o,
                    const struct raft_node_callbacks *cb, void *ctx, struct raft_node **out)
{
    if (!o->dir || !o->peer_bind || o->id == RAFT_NONE || o->tick_ms == 0)
        return RC_EINVAL;
    struct raft_node *n = rc_calloc(1, sizeof *n);
    if (!n)
        return RC_ENOMEM;
    n->loop = loop;
    n->cb = *cb;
    n->ctx = ctx;
    int rc = rc_mkdir_p(o->dir);
    if (rc == 0)
        rc = logstore_open(o->dir, &o->log, &n->log);
    if (rc != 0)
        goto fail_free;
    struct raft_options ro;
    raft_options_default(&ro, o->id);
    ro.seed = o->seed ? o->seed : o->id ^ rc_mono_ns();
    ro.election_ticks = o->election_ticks;
    ro.heartbeat_ticks = o->heartbeat_ticks;
    ro.max_msg_bytes = o->max_msg_bytes;
    ro.max_inflight = o->max_inflight;
    ro.applied = o->applied;
    struct raft_hard_state hs;
    logstore_hard_state(n->log, &hs);
    /* The state machine may hold more than the log's commit says (it was applied before
     * the hard state caught up) or less (its tail was lost): the core starts from the
     * smaller of the two and we skip what is already applied. */
    if (ro.applied > hs.commit)
        ro.applied = hs.commit;
    n->applied = o->applied;
    /* A state machine behind the log's snapshot (its tail was lost in a crash after the log
     * was compacted) is rebuilt from the snapshot first: the entries it lacks may be gone
     * (trailing entries kept before the snapshot's index may cover them, but not always). */
    n->in_ready = 1; /* the restore callback may not call back into the node */
    rc = restore_state_machine(n, 0);
    n->in_ready = 0;
    if (rc != 0)
        goto fail_log;
    if (ro.applied < n->applied)
        ro.applied = n->applied <= hs.commit ? n->applied : hs.commit;
    struct raft_storage st = logstore_raft_storage(n->log);
    rc = raft_create(&ro, &st, &hs, &n->core);
    if (rc != 0) {
        rc_error("raft: cannot start from the log in %s: %s", o->dir, rc_strerror(rc));
        goto fail_log;
    }
    if ((rc = check_sole_voter_log(n, o)) != 0)
        goto fail_core;
    struct transport_options to;
    transport_options_default(&to);
    to.cluster_id = o->cluster_id;
    to.node_id = o->id;
    to.bind = o->peer_bind;
    to.advertise = o->peer_advertise;
    to.stream = o->stream;
    to.tls = o->tls;
    to.learn_peers = 1;
    rc = transport_open(loop, &to, on_message, n, &n->transport);
    if (rc != 0) {
        /* The listener handle needs one more loop turn to be released. */
        if (rc != RC_EINVAL)
            uv_run(loop, UV_RUN_NOWAIT);
        goto fail_core;
    }
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    n->tick_ms = o->tick_ms;
    uv_timer_start(&n->tick, on_tick, o->tick_ms, o->tick_ms);
    uv_check_init(loop, &n->check);
    n->check.data = n;
    uv_check_start(&n->check, on_check);
    uv_timer_init(loop, &n->sync_timer);
    n->sync_timer.data = n;
    uv_idle_init(loop, &n->catchup);
    n->catchup.data = n;
    n->handles_open = 5; /* tick, check, sync timer, catch-up, transport */
    raft_status(n->core, &n->last_status);
    /* Nothing fails from here on, and the callbacks below (a lone voter that elects itself
     * applies what its log holds: after --recover, a join's directory entry) may use the
     * node through the caller's handle: it is set first. */
    *out = n;
    /* The only voter need not wait out an election timeout to lead: a one-node cluster is
     * writable as soon as it starts. Ticking through the timeout here runs the same
     * (pre-)vote path as ever, only without the wall-clock wait. */
    struct raft_status rs = n->last_status;
    if (rs.config.n_voters == 1 && rs.config.voters[0] == o->id) {
        for (int i = 0; i < 4 * o->election_ticks && rs.role != RAFT_LEADER && !n->failed; i++) {
            if (raft_tick(n->core) == 0)
                raft_node_process(n);
            raft_status(n->core, &rs);
        }
    }
    return 0;

fail_core:
    raft_destroy(n->core);
fail_log:
    logstore_close(n->log);
fail_free:
    rc_free(n);
    return rc;
}

void raft_node_close(struct raft_node *n, void (*on_closed)(void *ctx), void *ctx)
{
    if (n->closing)
        return;
    n->closing = 1;
    n->on_closed = on_closed;
    n->on_closed_ctx = ctx;
    uv_close((uv_handle_t *)&n->tick, handle_closed);
    uv_close((uv_handle_t *)&n->check, handle_closed);
    uv_close((uv_handle_t *)&n->sync_timer, handle_closed);
    uv_close((uv_handle_t *)&n->catchup, handle_closed);
    transport_close(n->transport, transport_closed, n);
}

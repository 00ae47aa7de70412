/*
 * node.h — one Raft node on a libuv loop: the pure core (raft.h) driven by a tick timer,
 * its log in segment files (logstore.h) and its messages over TCP (transport.h)
 * (internal module, prefix raft_node_).
 *
 * The node knows nothing of what the entries mean: the caller applies them through
 * callbacks. The work of a loop iteration is done together: messages received and
 * proposals made during one iteration are handed to the core as they come, and the core's
 * ready is processed once, at the end of the iteration (raft_node_process, called by the
 * node's own check handle, or earlier by the caller) — one fdatasync for everything
 * appended, then the messages, then the committed entries and confirmed reads. That is
 * the group commit that makes batching pay.
 *
 * A persistence failure stops the node (the core answers RC_ECLOSED and steps down); the
 * caller learns it through on_state (role RAFT_FAILED) and should exit: a restart reopens
 * from the files, as after a crash.
 */
#ifndef RC_RAFT_NODE_H
#define RC_RAFT_NODE_H

#include "raft/logstore.h"
#include "raft/raft.h"
#include "raft/transport.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct raft_node;

struct raft_node_callbacks {
    /*
     * A committed entry, in index order (normal entries; configuration and no-op entries
     * too, with their type, so the caller can track its applied index). Return 0, or an
     * error: the node then fails (the state machine could not apply a committed entry).
     */
    int (*apply)(void *ctx, const struct raft_entry *e);
    /* The linearizable read started with raft_node_read_index(ctx = read_ctx) may be served:
     * everything committed when it started is applied. */
    void (*read_ready)(void *ctx, uint64_t read_ctx);
    /*
     * A snapshot was received and installed in the log: restore the state machine from the
     * file at path (covering entries up to meta->index). Called on the loop thread; return
     * 0 or an error (the node then fails). NULL: snapshots cannot be installed.
     */
    int (*restore)(void *ctx, const char *path, const struct raft_snapshot_meta *meta);
    /*
     * The same for a snapshot received while the node runs, when not NULL: return 0 (done),
     * an error (the node fails), or RAFT_NODE_RESTORING when the rebuild goes on elsewhere
     * (a worker thread) — the node then keeps persisting and acknowledging entries but
     * applies none, and serves no read past what the old state holds, until
     * raft_node_restored(meta->index). Called again with a newer snapshot meanwhile, it
     * replaces the one under way. At start the node calls restore.
     */
    int (*restore_begin)(void *ctx, const char *path, const struct raft_snapshot_meta *meta);
    /* Role, term, leader or configuration changed (also once the node failed). */
    void (*on_state)(void *ctx, const struct raft_status *st);
    /*
     * The node is about to wait for its disk (an fsync): output produced so far (replies of
     * entries already applied) may be sent now rather than after the wait. NULL: nothing.
     */
    void (*before_sync)(void *ctx);
};

struct raft_node_options {
    uint64_t id;
    uint64_t cluster_id;
    const char *dir;            /* log directory (created if missing) */
    const char *peer_bind;      /* "host:port" of the Raft listener (port 0: any) */
    const char *peer_advertise; /* told to peers; NULL: peer_bind */
    unsigned tick_ms;           /* logical clock period */
    int election_ticks;         /* election timeout in ticks (randomised in [e, 2e)) */
    int heartbeat_ticks;
    uint64_t applied;     /* index the caller's state machine already holds */
    size_t max_msg_bytes; /* entry bytes per append message */
    int max_inflight;     /* append messages in flight per follower */
    uint64_t seed;        /* election timeout randomisation (0: derived from id and time) */
    struct logstore_options log;
    const struct transport_stream_ops *stream; /* NULL: plain TCP */
    struct tls_context *tls; /* NULL: plaintext between nodes; else mutual TLS (outlives the
                                node) */
};

/* Defaults: 20 ms ticks, election after 15..30 ticks (300..600 ms), heartbeat every 3. */
void raft_node_options_default(struct raft_node_options *o, uint64_t id);

/*
 * Makes dir the log of a new cluster with configuration *c: stores the bootstrap entry at
 * index 1 if the log is empty. RC_EEXIST if the log already holds entries (nothing done).
 */
int raft_node_bootstrap(const char *dir, const struct raft_config *c);
/* The same, for a state machine that already holds the state up to base (a restored
 * backup): the log starts after base (its snapshot meta says base, term 1, with no data
 * file) and the configuration entry is at base + 1. Take a snapshot soon after starting,
 * so that a joining node can be sent the state. */
int raft_node_bootstrap_at(const char *dir, const struct raft_config *c, uint64_t base);

/*
 * Quorum loss (--recover): appends to the stored log a configuration of node id alone, in
 * a term above any this node has seen, and votes for itself in it. Started after this, the
 * node is the only voter and leads on its own; every other former member must be wiped
 * before it joins again (docs/OPERATIONS.md). held is the state machine's applied index:
 * when it is past the log's end (a former leader's store after a power failure), the log
 * is first compacted to it, as raft_node_bootstrap_at does — take a snapshot soon after.
 */
int raft_node_recover(const char *dir, uint64_t id, uint64_t held);

/*
 * Opens the log in o->dir, creates the core from it and starts the transport and the tick
 * timer on loop. *out owns the node until raft_node_close's callback has run. A lone voter
 * elects itself before this returns, and its callbacks (apply, on_state) may already run:
 * *out is set before they can, so they may use it.
 */
int raft_node_start(uv_loop_t *loop, const struct raft_node_options *o,
                    const struct raft_node_callbacks *cb, void *ctx, struct raft_node **out);

/* Tells the transport where node id listens (copied). */
int raft_node_set_peer(struct raft_node *n, uint64_t id, const char *peer_addr);
int raft_node_remove_peer(struct raft_node *n, uint64_t id);
/* The port the Raft listener is bound to. */
int raft_node_port(const struct raft_node *n);

/*
 * Proposes an entry (data copied). RC_EAGAIN if not leader (or a transfer is under way),
 * RC_ECLOSED once failed or closing. The entry is done when apply sees index and term.
 * This and the other inputs below (read_index, transfer, change, compacted) answer RC_EBUSY
 * when called from inside the apply or restore callback: queue the work and make it
 * afterwards (from read_ready and on_state they are fine).
 */
int raft_node_propose(struct raft_node *n, const void *data, size_t len, uint64_t *index,
                      uint64_t *term);
/* Starts a linearizable read; read_ready(read_ctx) follows, unless leadership is lost. */
int raft_node_read_index(struct raft_node *n, uint64_t read_ctx);
int raft_node_transfer(struct raft_node *n, uint64_t id);
int raft_node_change(struct raft_node *n, enum raft_membership_op op, uint64_t id);

/*
 * Compaction after a local snapshot: the caller wrote one through the log store (the
 * writer of raft_node_logstore) at an applied index; the node tells the core.
 */
struct logstore *raft_node_logstore(struct raft_node *n);
int raft_node_compacted(struct raft_node *n, uint64_t index);

/* restore_begin's answer: the state machine is being rebuilt; raft_node_restored follows. */
#define RAFT_NODE_RESTORING 1
/*
 * The rebuild restore_begin started for the snapshot at index is done (rc 0: the state
 * machine now holds index; otherwise the node fails). The entries committed meanwhile are
 * applied from the log. A report for an index other than the one awaited is ignored. Not
 * from inside a callback.
 */
void raft_node_restored(struct raft_node *n, uint64_t index, int rc);
/* Whether the state machine is being rebuilt, or is catching up with the entries committed
 * meanwhile (applied a step per loop turn): it may be far behind the commit index. */
int raft_node_catching_up(const struct raft_node *n);
/* The leader's view of a peer's replication (matched index); RC_ENOTFOUND if none. */
int raft_node_peer_match(const struct raft_node *n, uint64_t id, uint64_t *match);
/* On a leader: 1 if the peer was heard from lately (raft_peer_active), else 0. */
int raft_node_peer_active(const struct raft_node *n, uint64_t id);
/* On a leader: 1 if the peer was heard from lately and the connection to it is up (a node
 * killed a moment ago is unreachable at once, before check-quorum's intervals notice). */
int raft_node_peer_reachable(const struct raft_node *n, uint64_t id);
/* On a leader: 1 if the peer has answered it at least once. */
int raft_node_peer_heard(const struct raft_node *n, uint64_t id);
/* On a leader: 1 if the peer is being sent a snapshot, or installed one and acknowledged
 * nothing past it, and answered within the last within_ms (raft_peer_after_snapshot). */
int raft_node_peer_after_snapshot(const struct raft_node *n, uint64_t id, uint64_t within_ms);
int raft_node_snapshots_in_flight(const struct raft_node *n);
/* Term of entry index (RC_ENOTFOUND if not in the log). */
int raft_node_term(struct raft_node *n, uint64_t index, uint64_t *term);

void raft_node_status(const struct raft_node *n, struct raft_status *st);

struct raft_node_stats {
    uint64_t fsyncs;         /* logstore_sync calls that wrote something */
    uint64_t fsync_total_us; /* time spent in them */
    uint64_t fsync_max_us;
    uint64_t entries_appended; /* to this node's log */
    uint64_t entries_applied;  /* handed to apply */
    uint64_t msgs_sent, msgs_received, msgs_dropped;
    uint64_t readies;             /* ready rounds processed */
    uint64_t snapshots_installed; /* received from a leader */
    uint64_t snapshots_restored;  /* state machine rebuilt from a snapshot */
    uint64_t snapshots_taken;     /* local snapshots committed (raft_node_compacted) */
    /* The peer links (transport.h, struct transport_stats): redials after a failure,
     * heartbeats overwritten while queued for a peer that is down, frames refused as
     * malformed, HELLOs refused (another cluster, an unexpected node id) and accepted
     * connections closed without one. */
    uint64_t peer_reconnects, heartbeats_superseded, peer_frames_rejected, peer_handshakes_refused;
};
void raft_node_stats(const struct raft_node *n, struct raft_node_stats *st);

/* Processes whatever the core has ready now (the node also does it at the end of every
 * loop iteration). Returns 0, or RC_ECLOSED once the node failed. */
int raft_node_process(struct raft_node *n);

/*
 * Stops the node: closes the transport and timers, then the log. on_closed (may be NULL)
 * runs on the loop once everything is released; the node is freed right after. No other
 * callback runs after this returns.
 */
void raft_node_close(struct raft_node *n, void (*on_closed)(void *ctx), void *ctx);

#endif

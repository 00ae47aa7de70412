/*
 * server.h — the single-node RESP server: one libuv loop, clients, the command table and
 * the write path. Shared by the files of src/server; nothing else includes it.
 *
 * Flow: a read fills a client's query buffer → every complete command in it is parsed
 * (pipelining) and dispatched through the command table → a read command replies at once
 * from the store; a write command is validated, normalised (clock-dependent options become
 * absolute times) and submitted to the write path, which gathers the writes of one loop
 * iteration into one entry and applies it (fsm_apply) with the next revision; each reply is
 * routed back to its client in order → replies are written once per client per iteration.
 *
 * Ordering: a client with writes in flight keeps parsing only while the next command is a
 * write too (it joins the same or a later entry, which apply in order); any other command
 * waits until the writes are applied, so a pipeline's replies come back in order and a
 * read sees the client's own earlier writes.
 */
#ifndef RC_SERVER_SERVER_H
#define RC_SERVER_SERVER_H

#include "cluster/entry.h"
#include "cluster/members.h"
#include "config.h"
#include "raft/node.h"
#include "resp/reply.h"
#include "resp/resp.h"
#include "store/store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct server;
struct client;

/* ============================== commands ============================== */

enum command_flags {
    CMD_WRITE = 1 << 0,    /* changes data: goes through the write path */
    CMD_READONLY = 1 << 1, /* reads data */
    CMD_ADMIN = 1 << 2,
    CMD_FAST = 1 << 3,     /* O(1) or O(log n) */
    CMD_NOAUTH = 1 << 4,   /* allowed before AUTH */
    CMD_NOSCRIPT = 1 << 5, /* (informational, as Redis) */
};

typedef void (*command_fn)(struct client *c, size_t argc, const struct resp_arg *argv);

/* One row of the command table: everything COMMAND, COMMAND DOCS and docs/COMMANDS.md say
 * about a command comes from here. */
struct command {
    const char *name; /* lower case */
    int arity;        /* Redis convention: n = exactly n args (name included), -n = at least n */
    unsigned flags;
    int first_key, last_key, key_step; /* key positions, as COMMAND reports them */
    command_fn fn;
    const char *group;   /* "string", "keyspace", "connection", "server", "raftcask" */
    const char *since;   /* Redis version that introduced it, or raftcask's */
    const char *syntax;  /* arguments, e.g. "key value [NX|XX] [GET] [EX seconds|...]" */
    const char *summary; /* one line */
};

struct command_table {
    const struct command *rows;
    size_t count;
};

/* The tables of each command family (cmd_*.c). */
extern const struct command_table string_commands;
extern const struct command_table keyspace_commands;
extern const struct command_table server_commands;

/* Looks a command up by name (case-insensitive); NULL if unknown. */
const struct command *command_lookup(const char *name, size_t len);
/* Calls fn for every command, in table order. */
void command_foreach(void (*fn)(const struct command *cmd, void *ctx), void *ctx);
size_t command_count(void);
/* Builds the lookup index; call once at start. 0 or RC_ENOMEM. */
int commands_init(void);
void commands_free(void);
/* Prints docs/COMMANDS.md generated from the table. */
void commands_print_markdown(FILE *out);
/* COMMAND and its subcommands (commands.c). */
void cmd_command(struct client *c, size_t argc, const struct resp_arg *argv);
/* Executes one parsed command for client c (arity, auth and dispatch). */
void command_dispatch(struct client *c, size_t argc, const struct resp_arg *argv);
/* Whether command_dispatch would forward this command to the leader now, behind the
 * client's forwarded commands on the same connection (no side effects). */
bool command_would_forward(const struct client *c, size_t argc, const struct resp_arg *argv);

/* ============================== clients ============================== */

struct client {
    uv_tcp_t tcp;
    struct server *srv;
    struct tls_session *tls; /* a --tls-port client: the socket carries TLS records */
    bool tls_done;           /* its handshake is complete */
    unsigned char *tls_out;  /* ciphertext of the write in progress (write_req) */
    uint64_t id;
    struct client *next, *prev; /* all clients */
    struct client *next_flush;  /* clients with replies to write this iteration */
    bool in_flush_list;
    char *query; /* bytes received and not yet consumed */
    size_t query_len, query_cap;
    struct resp_parser parser;
    struct resp_argv argv;
    struct resp_buf out;     /* replies not yet handed to the socket */
    struct resp_buf sending; /* replies being written */
    uv_write_t write_req;
    bool writing;
    bool reading;
    bool closing; /* close once the replies are written */
    bool closed;  /* uv_close was called */
    bool authenticated;
    bool readonly_mode;
    bool in_process_input;      /* guards against re-entering process_input */
    bool blocked;               /* a forwarded command, a membership change or a backup: nothing
                                   else runs until it is answered */
    unsigned deferred_reads;    /* linearizable reads waiting for their ReadIndex rounds; only
                                   more such reads may follow them (they answer in order) */
    unsigned pending_writes;    /* writes submitted, replies not yet routed */
    unsigned forwarded;         /* commands forwarded to the leader on fwd_conn, replies not yet
                                   relayed; only more commands forwarded on it may follow */
    struct forwarder *fwd_conn; /* NULL when forwarded is 0 */
    bool waiting_room;          /* in server.room_wait: its next write fits only a new entry */
    unsigned refs;              /* the loop's reference plus one per pending write */
    char name[64];
    char lib_name[64], lib_ver[32];
    char addr[64];
    uint64_t created_ms, last_cmd_ms;
    char last_cmd[24];
};

/* ============================== the write path ============================== */

/* A write in the batch being built: which client gets command `index`'s reply, or a reply
 * decided up front (an error found while the client had writes in flight, kept in order). */
struct write_slot {
    struct client *client; /* NULL: nobody waits (the expiry cycle) */
    bool preset;           /* reply is preset_reply (else fixed_reply), not the entry's */
    uint32_t index;        /* command index in the entry */
    char *preset_reply;
    size_t preset_len;
    const char *fixed_reply; /* a preset's static reply when preset_reply is NULL */
};

/* Waits that double after each failure of a task retried on a timer, up to a maximum. */
struct backoff {
    uint64_t delay_ms;      /* the last wait; 0 after a success */
    uint64_t not_before_ms; /* server_now_ms() before which the task is not tried again */
};
void backoff_failed(struct backoff *b, uint64_t first_ms, uint64_t max_ms);
bool backoff_waiting(const struct backoff *b);

struct write_batch {
    struct entry_builder entry;
    bool started;
    bool expiry; /* carries the expiry cycle's deletions (server.expiry_index) */
    struct write_slot *slots;
    size_t nslots, cap;
};

/* A batch proposed to Raft, waiting for its entry (index, term) to be applied. */
struct proposed_batch {
    uint64_t index, term;
    struct write_slot *slots;
    size_t nslots;
};

/* A linearizable read waiting for its round: the client and its command (owned copy). */
struct deferred_read {
    struct client *client;
    struct resp_argv *argv;
};

/* Reads waiting for one ReadIndex round (ctx), in arrival order. */
struct read_round {
    uint64_t ctx;
    struct deferred_read *reads;
    size_t n;
};

/* A membership command (RAFTADDPEER, RAFTREMOVEPEER, RAFTTRANSFER) in progress: driven by
 * the cluster timer until done, failed, or past its deadline; one at a time. */
struct member_job {
    int kind; /* 0 none, 1 add, 2 remove, 3 transfer */
    struct client *client;
    uint64_t id;
    char client_addr[CLUSTER_ADDR_MAX], peer_addr[CLUSTER_ADDR_MAX];
    int step;
    uint64_t deadline_ms;
    uint64_t transfer_deadline_ms; /* removing the leader itself: its transfer's */
    uint64_t transfer_to;          /* the voter a transfer was handed to (0: not yet) */
    uint64_t learner_since_ms;     /* adding: when its learner was added */
};

/* ============================== the server ============================== */

struct server_stats {
    uint64_t connections_received;
    uint64_t connections_rejected;
    uint64_t commands_processed;
    uint64_t entries_applied;
    uint64_t expired_keys;
    uint64_t net_input_bytes, net_output_bytes;
    uint64_t protocol_errors;
};

struct metrics_conn;

struct server {
    uv_loop_t *loop;
    struct rc_config *cfg;
    struct rc_store *store;
    uv_tcp_t listener;
    uv_tcp_t tls_listener; /* --tls-port: clients over TLS (client.c) */
    bool tls_listening;
    unsigned char *tls_readbuf; /* ciphertext of one read from a TLS client */
    uv_tcp_t metrics_listener;  /* --metrics (metrics.c) */
    bool metrics_on;
    struct metrics_conn *metrics_conns;
    size_t nmetrics_conns;
    uv_check_t check; /* end of every loop iteration: apply the batch, write replies */
    uv_timer_t cron;  /* 100 ms: active expiry */
    uv_signal_t sigterm, sigint;
    uv_timer_t shutdown_timer; /* closes clients that do not read their last replies */
    struct client *clients;
    size_t nclients;
    uint64_t next_client_id;
    struct client *flush_list;
    struct resp_limits limits;
    struct write_batch batch;
    struct client **room_wait; /* resumed when the batch is proposed (writepath_wait_room) */
    size_t nroom_wait, caproom_wait;
    uint64_t revision; /* of the last entry applied */
    uint64_t start_ms;
    bool shutting_down;
    bool handles_ready; /* the loop handles below were initialised */
    int exit_code;
    struct server_stats stats;
    /* SCAN cursors: a cursor is a number naming the last key returned (see cmd_keyspace.c). */
    struct scan_cursor *cursors; /* MAX_CURSORS slots, allocated by the first cursor */
    size_t cursor_bytes;         /* of their keys */
    uint64_t cursor_oldest;      /* no live cursor has a smaller id */
    uint64_t next_cursor;
    /* Active expiry: where the next sweep resumes. */
    char *expire_pivot;
    size_t expire_pivot_len;
    bool expire_pivot_set;
    /* The last proposed entry that carries the expiry cycle's deletions (0: none): the cycle
     * proposes no more while it is in flight, or it would delete the same keys every run. */
    uint64_t expiry_index, expiry_term;
    uint64_t rng;
    struct rc_buf scratch; /* value buffer for reads on the loop thread */
    uv_work_t sync_work;   /* the once-a-second store sync, on libuv's thread pool */
    bool sync_running;
    atomic_int sync_using_store; /* 1 from queueing until sync_work no longer uses the store */
    int sync_rc;
    unsigned cron_ticks;
    uint64_t syncs, sync_failures;
    struct rc_store_options store_opts;
    char cask_dir[4096];
    /* ---- the cluster (cluster.c) ---- */
    struct raft_node *raft;
    struct tls_context *peer_tls;   /* --tls-cert/--tls-key/--tls-ca; NULL: plaintext */
    struct tls_context *client_tls; /* --tls-port (and --tls-client-ca); NULL: none */
    struct cluster_node_conf self;
    struct cluster_members members;
    char raft_dir[4096];
    struct raft_status rstatus; /* as of the last state report */
    bool is_leader;
    uint64_t leaderless_since_ms;  /* when this node last saw no leader; 0 while one is known */
    uint64_t leaderless_warned_ms; /* when warn_leaderless last spoke; 0: not in this spell */
    bool raft_closed;
    struct proposed_batch *proposed; /* FIFO by index */
    size_t nproposed, capproposed;
    struct deferred_read *read_wait; /* reads for the next ReadIndex round */
    size_t nread_wait, capread_wait;
    struct read_round *rounds;
    size_t nrounds, caprounds;
    uint64_t next_read_ctx;
    uv_timer_t cluster_timer; /* 50 ms: membership jobs, directory upkeep, read retries */
    struct member_job job;
    uv_thread_t join_thread;
    bool join_thread_running;
    atomic_int join_stop; /* set by the loop thread, read by the join thread */
    /* The join thread's view of this node, published by the loop thread (cluster.c). */
    char join_addr[CLUSTER_ADDR_MAX];   /* the member it asks (set before it starts) */
    atomic_int join_voter;              /* this node is a voter in its own configuration */
    atomic_int join_has_log;            /* its log holds an entry */
    atomic_int join_outcome;            /* set by the join thread: 1 joined, 2 cannot join */
    uv_mutex_t join_mu;                 /* guards join_leader */
    char join_leader[CLUSTER_ADDR_MAX]; /* the leader's client address ("" unknown) */
    struct forwarder *fwd[16];          /* pooled connections to the leader (forward.c) */
    uint64_t fwd_bytes_inflight;        /* forwarded commands' bytes awaiting replies */
    struct snapshot_job *snap;          /* a local snapshot or backup being written, or NULL */
    uint64_t restores;                  /* store rebuilds from installed snapshots */
    struct restore_job *restore;        /* a store rebuild under way (snapshots.c), or NULL */
    bool restore_finishing;             /* a worker closes and removes the replaced store */
    bool force_snapshot;                /* take one at the next tick (after --restore) */
    uint64_t refusals_seen;             /* followers' refusals of our snapshot, last seen */
    struct backoff snap_backoff;        /* after failed compaction snapshots (snapshots.c) */
    struct backoff merge_backoff;       /* after failed merges (server.c, maybe_merge) */
    uint64_t merges_seen, merges_failed_seen; /* the store's counters when last looked at */
    uint64_t refused_checked_index;           /* the snapshot index whose file was checked then */
    uint64_t stat_forwarded, stat_redirected, stat_reads_confirmed;
};

/* server.c */
int server_run(struct rc_config *cfg);
void server_shutdown(struct server *s, int exit_code);
int64_t server_now_ms(void);
uint64_t server_random(struct server *s);

/* client.c */
void client_on_connection(uv_stream_t *listener, int status);
void client_on_tls_connection(uv_stream_t *listener, int status); /* --tls-port */
/* Closes TLS clients whose handshake is not done CLIENT_TLS_HANDSHAKE_MS after accept (they
 * would hold a --maxclients slot for good). */
void client_close_stalled_handshakes(struct server *s);
#define CLIENT_TLS_HANDSHAKE_MS 10000
#define CLIENT_TLS_READ_BYTES   (64u << 10)      /* server.tls_readbuf */
void client_close(struct client *c);             /* close now, dropping unsent replies */
void client_close_after_reply(struct client *c); /* close once replies are written */
void client_flush_all(struct server *s);         /* write every client's pending replies */
void client_mark_output(struct client *c);       /* c has replies to write this iteration */
void client_release(struct client *c);           /* drop one reference (see refs) */
void client_resume(struct client *c);            /* writes applied: go on parsing */
/* A command of c is answered later (forwarded, a membership change, a backup): c runs
 * nothing else meanwhile and stays alive. client_unblock delivers the reply and goes on. */
void client_block(struct client *c);
void client_unblock(struct client *c, const char *reply, size_t len);
/* Ends c's block without a reply and without resuming it (it is blocked again at once). */
void client_unblock_quietly(struct client *c);
/* A command of c was forwarded to the leader (pipelined: c may go on forwarding more on the
 * same connection); client_forwarded_reply delivers its reply. */
void client_forwarded(struct client *c, struct forwarder *f);
void client_forwarded_reply(struct client *c, const char *reply, size_t len);
void client_list_line(struct client *c, struct resp_buf *b); /* CLIENT LIST/INFO line */

/* writepath.c */
/* Submits a normalised write for client c (NULL for internal writes). 0, RC_ENOMEM, or
 * RC_EAGAIN for an internal write on a follower or one the batch has no room for. */
int writepath_submit(struct server *s, struct client *c, size_t argc, const struct resp_arg *a);
/* Queues an error reply in order behind c's writes in flight. */
int writepath_submit_error(struct server *s, struct client *c, const char *msg, size_t len);
/* True when the batch is at its byte cap: clients should stop submitting until it is applied. */
bool writepath_full(const struct server *s);
/*
 * Entry size: a write's bytes in an entry (an estimate a little above the encoded size, which
 * normalising can grow by a few bytes). Entries stay small enough to replicate within an
 * election timeout (writepath.c): with other nodes in the configuration, a write above 4 MiB
 * is refused (writepath_too_large; alone, above about 1 GiB); one that does not fit the batch
 * being built waits for the next (writepath_has_room false: the client stops reading
 * commands, and writepath_wait_room resumes it once the batch is proposed).
 */
#define WRITEPATH_COMMAND_SLACK_BYTES 64 /* what normalising may add to a command */
size_t writepath_command_bytes(size_t argc, const struct resp_arg *a);
bool writepath_too_large(const struct server *s, size_t bytes);
bool writepath_has_room(const struct server *s, size_t bytes);
/* Not too large, and room in the batch being built: what an internal write must be. */
bool writepath_fits(const struct server *s, size_t bytes);
bool writepath_wait_room(struct server *s, struct client *c); /* false: out of memory */
/* The longest value APPEND and SETRANGE may make: --proto-max-bulk-len, and with other nodes
 * in the configuration at most the 4 MiB a write may be (each edit rewrites the value on
 * every node: a 50-byte SETRANGE at offset 512M stalled a cluster for 6 s). */
uint64_t writepath_value_max(const struct server *s);
/* Applies the batch built so far (called at the end of each loop iteration). */
void writepath_flush(struct server *s);
void writepath_free(struct server *s);

/* cluster.c */
/* The peer listener's HOST:PORT: --peer-bind, else the --bind host with the client port + 1. */
void cluster_peer_bind(const struct rc_config *cfg, char *buf, size_t cap);
int cluster_start(struct server *s);
void cluster_stop(struct server *s);
void cluster_free(struct server *s);
/* Called at the end of every loop iteration, after the write batch was proposed. */
void cluster_after_iteration(struct server *s);
/* Decides where a data command runs: false = run it here now; true = it was deferred
 * (linearizable read), forwarded, or answered (-TRY, -MOVED, -CLUSTERDOWN). */
bool cluster_route_command(struct client *c, const struct command *cmd, size_t argc,
                           const struct resp_arg *argv);
/* True if this command would be deferred as a linearizable read (so it may follow the
 * client's reads already waiting, in the same order). */
bool cluster_read_defers(const struct client *c, const struct command *cmd, size_t argc);
/* Whether cmd (past command_dispatch's checks) would be forwarded now on the connection c's
 * forwarded commands are on (forward_can_follow). */
bool cluster_forwards(const struct client *c, const struct command *cmd);
/* Proposes the encoded batch; false if this node cannot (not leader). */
bool cluster_propose(struct server *s, const void *data, size_t len, uint64_t *index,
                     uint64_t *term);
/* The leader's client address into buf (false if no leader is known). */
bool cluster_leader_addr(struct server *s, char *buf, size_t cap);
void cluster_info(struct server *s, struct resp_buf *b);
extern const struct command_table cluster_commands;

/* snapshots.c: local snapshots (log compaction), RAFTSNAPSHOT backups, restores. */
void snapshots_tick(struct server *s);
/* Removes the directories of backups cut short (no meta.json) under DIR/snapshots. */
void snapshots_remove_unfinished(struct server *s);
int snapshots_restore(void *server, const char *path, const struct raft_snapshot_meta *meta);
int snapshots_restore_begin(void *server, const char *path, const struct raft_snapshot_meta *meta);
void snapshots_stop(struct server *s);
extern const struct command_table snapshot_commands;

/* writepath.c: a committed entry (index, term) carrying a write batch. */
int writepath_apply(struct server *s, uint64_t index, uint64_t term, const void *data, size_t len);
/* An entry (index, term) other than a write batch was applied: batches this node proposed at
 * index or before, or in a term older than term (terms never decrease along a log, so no
 * later index can hold them either), were overwritten by another leader's entries; their
 * clients get an error. */
void writepath_overwritten(struct server *s, uint64_t index, uint64_t term);
/* Answers every proposed batch with an error (the node stopped or lost them). */
void writepath_fail_proposed(struct server *s, const char *reply);

/* metrics.c: --metrics HOST:PORT, HTTP GET /metrics (Prometheus text) and /health. 0, or
 * RC_EINVAL / RC_EIO (logged) when the address is bad or cannot be listened on. */
int metrics_start(struct server *s);
void metrics_stop(struct server *s);
/* Resident set size of this process (cmd_server.c). */
size_t server_rss_bytes(void);

/* forward.c: proxying a command to the leader over a pooled connection; the client is
 * blocked until the reply is relayed. 0, or (nothing sent) RC_ECLOSED while shutting down,
 * RC_ETOOBIG for a command of 4 GiB or more, RC_EIO or RC_ENOMEM. */
int forward_command(struct server *s, struct client *c, size_t argc, const struct resp_arg *argv,
                    const char *leader_addr);
/* The same for a membership command: on a connection of its own, with a one-minute deadline. */
int forward_admin(struct server *s, struct client *c, size_t argc, const struct resp_arg *argv,
                  const char *leader_addr);
void forward_free(struct server *s);
/* A client's forwarded commands in flight, and the bytes of all clients' (a client with
 * none in flight may always forward one). */
#define FORWARD_CLIENT_MAX_INFLIGHT 16
#define FORWARD_MAX_INFLIGHT_BYTES  (32u << 20)
/* Whether c's next forwarded command may go now: c has none in flight, or they are on a
 * connection to leader_addr that takes new commands (so that replies stay in order). */
bool forward_can_follow(const struct client *c, const char *leader_addr);
/* Another leader is known: new commands go to it; the old connection drains (forward.c). */
void forward_leader_changed(struct server *s, const char *leader_addr);
/* Bytes of the one complete RESP2 reply at b: 0 if incomplete, -1 if malformed. */
long forward_reply_length(const char *b, size_t len);

/* cmd_keyspace.c */
void scan_cursors_free(struct server *s);

/* expire.c */
void expire_cycle(struct server *s);
/* Deletes every expired key now (at start, as Redis drops expired keys when it loads). */
void expire_sweep_all(struct server *s);

/* Reply helpers shared by the command files (cmd_util.c). */
void reply_error(struct client *c, const char *msg);
void reply_errorf(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_wrong_arity(struct client *c, const char *cmd);
void reply_syntax_error(struct client *c);
void reply_not_integer(struct client *c);
#define arg_is resp_arg_is /* command and option names, case-insensitive */
bool arg_to_i64(const struct resp_arg *a, int64_t *out);
/* Validates and submits a normalised write, or replies the error (keeping order). */
void submit_write(struct client *c, size_t argc, const struct resp_arg *argv);
void submit_error(struct client *c, const char *msg);
/* submit_write of the client's command under another (canonical) name. */
void submit_renamed(struct client *c, const char *name, size_t argc, const struct resp_arg *argv);
/* rc_store_get for a client's read; an expired key it meets is queued for deletion. */
int read_key(struct client *c, const struct resp_arg *key, struct rc_buf *value,
             struct rc_item_meta *meta);
/* Turns an expire argument into absolute ms since the epoch (seconds: multiply by 1000;
 * relative: add now), with Redis's checks and errors ("invalid expire time in 'cmd'
 * command"). Replies (in order) and returns false on error. */
bool expire_arg_to_abs(struct client *c, const struct resp_arg *a, bool seconds, bool relative,
                       const char *cmd, int64_t *out);
/* Formats an absolute ms time as the decimal PXAT argument into buf (>= 24 bytes). */
struct resp_arg abs_ms_arg(char *buf, int64_t ms);

#endif

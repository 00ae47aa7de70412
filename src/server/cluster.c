/*
 * cluster.c — the server as a Raft node: start (bootstrap, join, restart), applying
 * committed entries, routing commands on followers, linearizable reads, the replicated
 * directory of nodes, and the membership commands' jobs.
 *
 * Start. DIR/node.conf names this node (id, cluster id, addresses); it is written once, at
 * the first start. A first start without --join bootstraps a one-node cluster (the
 * configuration entry at index 1 of DIR/raft); with --join the node asks the member for the
 * cluster id (RAFTSTATS), starts with an empty log, and asks again, from a thread, to be
 * added (RAFTADDPEER); the leader adds it as a learner, waits until it caught up, and
 * promotes it. A restart ignores --join: everything comes from DIR.
 *
 * Apply. A committed entry is applied with its Raft index as the store revision. The store
 * is not fsynced per write (the Raft log is), so after a crash it may hold less than the
 * log; the node starts the core with applied = the store's applied revision and entries
 * after it are applied again. Entries at or below it are skipped (node.c), so a restart
 * does not rewrite the data set.
 *
 * Reads. A linearizable read on the leader waits for a ReadIndex round: the reads that
 * arrive in one loop iteration share one round (raft_node_read_index at the end of the
 * iteration), and run once the round is confirmed and everything committed before it is
 * applied. On a follower, reads and writes are proxied to the leader (--follower-mode
 * proxy), or answered -TRY / -MOVED with the leader's client address.
 *
 * The directory. Entries whose first command is RAFTNODE (SET id client peer / DEL id)
 * change the replicated directory (members.h) instead of the store; the leader proposes
 * its own line when it is missing or stale, and RAFTADDPEER proposes the joiner's.
 */
#include "server.h"

#include "cluster/snapstream.h"
#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLUSTER_TIMER_MS     50
#define JOB_DEADLINE_MS      60000
#define LEARNER_SILENT_MS    10000 /* an added learner that never answers ends its join */
#define TRANSFER_DEADLINE_MS 5000

static const char *role_name(enum raft_role r)
{
    switch (r) {
    case RAFT_LEADER:
        return "Leader";
    case RAFT_CANDIDATE:
    case RAFT_PRE_CANDIDATE:
        return "Candidate";
    case RAFT_FOLLOWER:
        return "Follower";
    default:
        return "Shutdown";
    }
}

bool cluster_leader_addr(struct server *s, char *buf, size_t cap)
{
    if (!s->raft || s->rstatus.leader == RAFT_NONE)
        return false;
    if (s->rstatus.leader == s->self.id) {
        snprintf(buf, cap, "%s", s->self.client_addr);
        return true;
    }
    const struct cluster_member *m = cluster_members_find(&s->members, s->rstatus.leader);
    if (!m)
        return false;
    snprintf(buf, cap, "%s", m->client_addr);
    return true;
}

/* ============================== the directory ============================== */

static void apply_members_to_transport(struct server *s)
{
    for (size_t i = 0; i < s->members.count; i++) {
        const struct cluster_member *m = &s->members.m[i];
        if (m->id != s->self.id)
            raft_node_set_peer(s->raft, m->id, m->peer_addr);
    }
}

static int propose_args(struct server *s, size_t argc, const struct resp_arg *a)
{
    struct entry_builder b;
    int rc = entry_builder_start(&b);
    if (rc == 0)
        rc = entry_builder_add(&b, argc, a);
    if (rc == 0) {
        entry_builder_finish(&b, server_now_ms());
        rc = raft_node_propose(s->raft, b.buf.data, b.buf.len, NULL, NULL);
    }
    entry_builder_free(&b);
    return rc;
}

static int propose_member_set(struct server *s, uint64_t id, const char *client, const char *peer)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%" PRIu64, id);
    struct resp_arg a[5] = {{"RAFTNODE", 8},
                            {"SET", 3},
                            {ids, strlen(ids)},
                            {client, strlen(client)},
                            {peer, strlen(peer)}};
    return propose_args(s, 5, a);
}

static int propose_member_del(struct server *s, uint64_t id)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%" PRIu64, id);
    struct resp_arg a[3] = {{"RAFTNODE", 8}, {"DEL", 3}, {ids, strlen(ids)}};
    return propose_args(s, 3, a);
}

/* Applies a RAFTNODE entry: true if the entry was one (handled), false otherwise. */
static bool apply_directory_entry(struct server *s, const struct raft_entry *e)
{
    struct entry_reader r;
    if (entry_reader_init(&r, e->data, e->len) != 0 || r.count != 1)
        return false;
    struct resp_argv argv;
    resp_argv_init(&argv);
    bool handled = false;
    if (entry_reader_next(&r, &argv) == 0 && argv.count >= 3 &&
        resp_arg_is(&argv.args[0], "RAFTNODE")) {
        handled = true;
        char ids[24] = "", client[CLUSTER_ADDR_MAX] = "", peer[CLUSTER_ADDR_MAX] = "";
        snprintf(ids, sizeof ids, "%.*s", (int)argv.args[2].len, argv.args[2].ptr);
        uint64_t id = strtoull(ids, NULL, 10);
        int rc = RC_EINVAL;
        if (resp_arg_is(&argv.args[1], "SET") && argv.count == 5 &&
            argv.args[3].len < CLUSTER_ADDR_MAX && argv.args[4].len < CLUSTER_ADDR_MAX) {
            memcpy(client, argv.args[3].ptr, argv.args[3].len);
            memcpy(peer, argv.args[4].ptr, argv.args[4].len);
            rc = cluster_members_set(&s->members, id, client, peer);
            if (rc == 0 && id != s->self.id)
                raft_node_set_peer(s->raft, id, peer);
        } else if (resp_arg_is(&argv.args[1], "DEL") && argv.count == 3) {
            rc = cluster_members_remove(&s->members, id);
            if (rc == 0 && id != s->self.id)
                raft_node_remove_peer(s->raft, id);
        }
        if (rc == 0)
            rc = cluster_members_save(s->cfg->dir, &s->members);
        if (rc != 0 && rc != RC_ENOTFOUND)
            rc_warn("directory entry %llu not applied: %s", (unsigned long long)e->index,
                    rc_strerror(rc));
    }
    resp_argv_free(&argv);
    return handled;
}

/* ============================== node callbacks ============================== */

static int on_apply(void *ctx, const struct raft_entry *e)
{
    struct server *s = ctx;
    /* A write batch this node proposed at this index (or before) was overwritten by another
     * leader's entry: a new leader's no-op lands exactly there. Its clients are told now,
     * not when the next batch happens to apply. */
    if (e->type != RAFT_ENTRY_NORMAL) {
        writepath_overwritten(s, e->index, e->term);
        return 0; /* no-ops and configurations change no data */
    }
    if (apply_directory_entry(s, e)) {
        writepath_overwritten(s, e->index, e->term);
        int rc = rc_store_mark_revision(s->store, e->index);
        if (rc == 0)
            s->revision = e->index;
        return rc;
    }
    return writepath_apply(s, e->index, e->term, e->data, e->len);
}

static void free_argv_copy(struct resp_argv *argv)
{
    if (argv) {
        rc_free(argv->args);
        rc_free(argv);
    }
}

/* Runs (or, with reply set, answers with an error) one deferred read. */
static void finish_deferred(struct deferred_read *d, const char *reply)
{
    struct client *c = d->client;
    c->deferred_reads--;
    c->pending_writes--;
    if (!c->closed) {
        if (reply) {
            resp_buf_append(&c->out, reply, strlen(reply));
        } else {
            const struct command *cmd = command_lookup(d->argv->args[0].ptr, d->argv->args[0].len);
            if (cmd)
                cmd->fn(c, d->argv->count, d->argv->args);
        }
        client_mark_output(c);
    }
    free_argv_copy(d->argv);
    d->argv = NULL;
    if (!c->closed)
        client_resume(c);
    client_release(c);
}

static void on_read_ready(void *ctx, uint64_t read_ctx)
{
    struct server *s = ctx;
    for (size_t i = 0; i < s->nrounds; i++) {
        if (s->rounds[i].ctx != read_ctx)
            continue;
        struct read_round rr = s->rounds[i];
        memmove(&s->rounds[i], &s->rounds[i + 1], (s->nrounds - i - 1) * sizeof rr);
        s->nrounds--;
        s->stat_reads_confirmed += rr.n;
        for (size_t k = 0; k < rr.n; k++)
            finish_deferred(&rr.reads[k], NULL);
        rc_free(rr.reads);
        return;
    }
}

/* Answers every waiting read with reply, oldest round first (a client's reads stay in
 * order). */
static void fail_reads(struct server *s, const char *reply)
{
    while (s->nrounds) {
        struct read_round rr = s->rounds[0];
        memmove(&s->rounds[0], &s->rounds[1], (s->nrounds - 1) * sizeof rr);
        s->nrounds--;
        for (size_t k = 0; k < rr.n; k++)
            finish_deferred(&rr.reads[k], reply);
        rc_free(rr.reads);
    }
    struct deferred_read *w = s->read_wait;
    size_t n = s->nread_wait;
    s->read_wait = NULL;
    s->nread_wait = s->capread_wait = 0;
    for (size_t k = 0; k < n; k++)
        finish_deferred(&w[k], reply);
    rc_free(w);
}

static void job_finish(struct server *s, const char *reply);

/* The node is about to fsync: replies of the entries applied so far go out first. */
static void on_before_sync(void *ctx)
{
    client_flush_all(ctx);
}

static void on_state(void *ctx, const struct raft_status *st)
{
    struct server *s = ctx;
    bool was_leader = s->is_leader;
    bool term_changed = st->term != s->rstatus.term;
    s->rstatus = *st;
    s->is_leader = st->role == RAFT_LEADER;
    if (st->leader != RAFT_NONE)
        s->leaderless_since_ms = s->leaderless_warned_ms = 0;
    else if (!s->leaderless_since_ms)
        s->leaderless_since_ms = (uint64_t)server_now_ms();
    if (st->role == RAFT_FAILED) {
        writepath_fail_proposed(
            s, "-ERR this node stopped (storage failure); the write may or may not be applied\r\n");
        fail_reads(s, "-ERR this node stopped (storage failure)\r\n");
        if (!s->shutting_down)
            server_shutdown(s, 1);
        return;
    }
    if (was_leader && (!s->is_leader || term_changed)) {
        /* Reads confirmed by nobody now: the client may retry with the new leader. */
        fail_reads(s, "-ERR leadership changed; retry the read\r\n");
    }
    char leader[CLUSTER_ADDR_MAX];
    if (st->leader != RAFT_NONE && cluster_leader_addr(s, leader, sizeof leader))
        forward_leader_changed(s, leader);
    if (was_leader != s->is_leader || term_changed)
        rc_info("raft: %s in term %llu (leader %llu)", role_name(st->role),
                (unsigned long long)st->term, (unsigned long long)st->leader);
}

/* ============================== proposing and routing ============================== */

bool cluster_propose(struct server *s, const void *data, size_t len, uint64_t *index,
                     uint64_t *term)
{
    if (!s->raft || !s->is_leader)
        return false;
    return raft_node_propose(s->raft, data, len, index, term) == 0;
}

static bool defer_read(struct client *c, size_t argc, const struct resp_arg *argv)
{
    struct server *s = c->srv;
    size_t bytes = 0;
    for (size_t i = 0; i < argc; i++)
        bytes += argv[i].len;
    struct resp_argv *copy = rc_malloc(sizeof *copy);
    struct resp_arg *args = rc_malloc(argc * sizeof *args + bytes + 1);
    if (!copy || !args ||
        rc_reserve((void **)&s->read_wait, &s->capread_wait, s->nread_wait + 1,
                   sizeof *s->read_wait) != 0) {
        rc_free(copy);
        rc_free(args);
        reply_error(c, "ERR out of memory");
        return true;
    }
    char *p = (char *)(args + argc);
    for (size_t i = 0; i < argc; i++) {
        memcpy(p, argv[i].ptr, argv[i].len);
        args[i] = (struct resp_arg){p, argv[i].len};
        p += argv[i].len;
    }
    memset(copy, 0, sizeof *copy);
    copy->args = args;
    copy->count = argc;
    copy->cap = argc;
    c->deferred_reads++;
    c->pending_writes++;
    c->refs++;
    s->read_wait[s->nread_wait++] = (struct deferred_read){c, copy};
    return true;
}

static const char *read_mode(const struct client *c)
{
    return c->readonly_mode ? "local" : c->srv->cfg->read_consistency;
}

bool cluster_read_defers(const struct client *c, const struct command *cmd, size_t argc)
{
    const struct server *s = c->srv;
    if (!s->raft || !s->is_leader || !(cmd->flags & CMD_READONLY) || (cmd->flags & CMD_WRITE))
        return false;
    if (!c->authenticated && !(cmd->flags & CMD_NOAUTH))
        return false;
    if ((cmd->arity > 0 && argc != (size_t)cmd->arity) ||
        (cmd->arity < 0 && argc < (size_t)-cmd->arity))
        return false;
    return strcmp(read_mode(c), "linearizable") == 0;
}

/* The reply to a command that could not be forwarded (forward_command, forward_admin). */
static void reply_not_forwarded(struct client *c, int rc)
{
    if (rc == RC_ECLOSED)
        reply_error(c, "ERR shutting down");
    else if (rc == RC_ETOOBIG)
        reply_error(c, "ERR command too large to forward to the leader");
    else
        reply_error(c, "ERR cannot forward to the leader");
}

/* What a follower does with a command it cannot serve. */
static bool route_away(struct client *c, size_t argc, const struct resp_arg *argv)
{
    struct server *s = c->srv;
    char leader[CLUSTER_ADDR_MAX];
    if (!cluster_leader_addr(s, leader, sizeof leader)) {
        reply_error(c, "CLUSTERDOWN no leader");
        return true;
    }
    const char *mode = s->cfg->follower_mode;
    if (strcmp(mode, "redirect") == 0) {
        s->stat_redirected++;
        reply_errorf(c, "TRY %s", leader);
        return true;
    }
    if (strcmp(mode, "moved") == 0) {
        s->stat_redirected++;
        reply_errorf(c, "MOVED 0 %s", leader);
        return true;
    }
    s->stat_forwarded++;
    int rc = forward_command(s, c, argc, argv, leader);
    if (rc != 0)
        reply_not_forwarded(c, rc);
    return true;
}

bool cluster_forwards(const struct client *c, const struct command *cmd)
{
    struct server *s = c->srv;
    if (!s->raft || s->is_leader || !(cmd->flags & (CMD_WRITE | CMD_READONLY)))
        return false;
    if (!(cmd->flags & CMD_WRITE) && strcmp(read_mode(c), "local") == 0)
        return false;
    char leader[CLUSTER_ADDR_MAX];
    return strcmp(s->cfg->follower_mode, "proxy") == 0 &&
           cluster_leader_addr(s, leader, sizeof leader) && forward_can_follow(c, leader);
}

bool cluster_route_command(struct client *c, const struct command *cmd, size_t argc,
                           const struct resp_arg *argv)
{
    struct server *s = c->srv;
    if (!s->raft || !(cmd->flags & (CMD_WRITE | CMD_READONLY)))
        return false;
    if (cmd->flags & CMD_WRITE)
        return s->is_leader ? false : route_away(c, argc, argv);
    const char *mode = read_mode(c);
    if (strcmp(mode, "local") == 0)
        return false;
    if (!s->is_leader)
        return route_away(c, argc, argv);
    /* A leader rebuilding its store from a snapshot (it was sent one just before it was
     * elected), or applying what was committed meanwhile, serves its reads once it has, as
     * linearizable ones. */
    if (strcmp(mode, "leader") == 0 && !s->restore && !raft_node_catching_up(s->raft))
        return false;
    return defer_read(c, argc, argv);
}

/* Starts a ReadIndex round for the reads that arrived during this iteration. */
static void start_read_round(struct server *s)
{
    if (s->nread_wait == 0)
        return;
    if (!s->is_leader) {
        fail_reads(s, "-ERR leadership changed; retry the read\r\n");
        return;
    }
    if (rc_reserve((void **)&s->rounds, &s->caprounds, s->nrounds + 1, sizeof *s->rounds) != 0)
        return; /* retried next iteration */
    uint64_t ctx = s->next_read_ctx + 1;
    int rc = raft_node_read_index(s->raft, ctx);
    if (rc == 0)
        s->next_read_ctx = ctx;
    if (rc == RC_EAGAIN)
        return; /* the new leader has not committed in its term yet: the timer retries */
    if (rc != 0) {
        fail_reads(s, "-ERR read failed\r\n");
        return;
    }
    s->rounds[s->nrounds++] =
        (struct read_round){.ctx = ctx, .reads = s->read_wait, .n = s->nread_wait};
    s->read_wait = NULL;
    s->nread_wait = s->capread_wait = 0;
}

void cluster_after_iteration(struct server *s)
{
    if (!s->raft)
        return;
    start_read_round(s);
    raft_node_process(s->raft);
}

/* ============================== membership jobs ============================== */

static void job_reply(struct server *s, const char *reply)
{
    if (s->job.client)
        client_unblock(s->job.client, reply, strlen(reply));
    s->job.client = NULL;
}

static void job_finish(struct server *s, const char *reply)
{
    job_reply(s, reply);
    memset(&s->job, 0, sizeof s->job);
}

static bool config_has(const struct raft_config *cfg, uint64_t id, bool voter)
{
    return voter ? raft_config_has_voter(cfg, id) : raft_config_has_learner(cfg, id);
}

/* The voter other than this node best placed to take over (0: none): one the leader hears
 * from over a live connection before one it does not (a voter killed or stopped a moment
 * ago never answers TimeoutNow, and in an idle cluster every voter's match is the same),
 * then the most caught-up. */
static uint64_t best_other_voter(struct server *s, const struct raft_config *cfg)
{
    uint64_t id = 0, best = 0;
    int best_reachable = 0;
    for (uint32_t i = 0; i < cfg->n_voters; i++) {
        uint64_t v = cfg->voters[i], match = 0;
        if (v == s->self.id || raft_node_peer_match(s->raft, v, &match) != 0)
            continue;
        int reachable = raft_node_peer_reachable(s->raft, v);
        if (!id || reachable > best_reachable || (reachable == best_reachable && match > best)) {
            id = v;
            best = match;
            best_reachable = reachable;
        }
    }
    return id;
}

/* Finishes the job, and says true, if the core gave up the transfer it was handed (the
 * target did not take over within an election timeout) and this node still leads. */
static bool finish_if_transfer_abandoned(struct server *s, const struct raft_status *st)
{
    if (!s->job.transfer_to || !s->is_leader || st->transferee != RAFT_NONE)
        return false;
    char reply[160];
    snprintf(reply, sizeof reply,
             "-ERR node %" PRIu64 " did not take over within an election timeout; this node "
             "still leads\r\n",
             s->job.transfer_to);
    job_finish(s, reply);
    return true;
}

/*
 * Removing the leader itself: leadership goes to another voter first, and the removal is
 * then asked of the new leader (the job's client waits for its answer). A leader that
 * appended its own removal and lost its followers could otherwise leave the cluster with no
 * leader for good: it no longer campaigns (it is not in its latest configuration), and a
 * follower that missed that entry needs its vote, which it refuses (its log is longer).
 * True while the job is in this phase.
 */
static bool remove_self_step(struct server *s, const struct raft_status *st)
{
    struct member_job *j = &s->job;
    if (j->kind != 2 || j->id != s->self.id || j->step >= 1)
        return false;
    if (st->leader != RAFT_NONE && st->leader != s->self.id) {
        char leader[CLUSTER_ADDR_MAX], id[24];
        if (!cluster_leader_addr(s, leader, sizeof leader))
            return true; /* its address comes with its directory line */
        struct client *c = j->client;
        memset(j, 0, sizeof *j);
        if (!c)
            return true;
        snprintf(id, sizeof id, "%" PRIu64, s->self.id);
        const struct resp_arg argv[2] = {{"RAFTREMOVEPEER", 14}, {id, strlen(id)}};
        c->refs++; /* kept across the hand-over from the job's block to the forward's */
        client_unblock_quietly(c);
        if (forward_admin(s, c, 2, argv, leader) != 0) {
            const char *reply = "-ERR leadership moved; ask the new leader to remove this node\r\n";
            client_block(c);
            client_unblock(c, reply, strlen(reply));
        }
        client_release(c);
        return true;
    }
    uint64_t now = (uint64_t)server_now_ms();
    if (j->transfer_deadline_ms) { /* transferring: this node may be between leaders */
        if (!finish_if_transfer_abandoned(s, st) && now > j->transfer_deadline_ms)
            job_finish(s, "-ERR cannot remove the leader: no other voter took over\r\n");
        return true;
    }
    if (!s->is_leader) {
        job_finish(s, "-ERR leadership changed; retry\r\n");
        return true;
    }
    uint64_t to = best_other_voter(s, &st->config);
    if (!to)
        return false; /* a lone voter: the core refuses to remove it */
    int rc = raft_node_transfer(s->raft, to);
    if (rc == 0) {
        j->transfer_deadline_ms = now + TRANSFER_DEADLINE_MS;
        j->transfer_to = to;
    } else if (rc != RC_EAGAIN && rc != RC_EBUSY)
        job_finish(s, "-ERR cannot transfer leadership\r\n");
    return true;
}

static void job_step(struct server *s)
{
    struct member_job *j = &s->job;
    if (!j->kind)
        return;
    if ((uint64_t)server_now_ms() > j->deadline_ms) {
        job_finish(s, "-ERR timed out\r\n");
        return;
    }
    struct raft_status st;
    raft_node_status(s->raft, &st);
    bool committed = st.config_index <= st.commit;
    if (remove_self_step(s, &st))
        return;
    if (j->kind == 3) { /* transfer (j->id 0: to any voter): done once its target leads */
        if (st.leader != RAFT_NONE && st.leader != s->self.id) {
            char reply[128] = "+OK\r\n";
            if (j->id && st.leader != j->id)
                snprintf(reply, sizeof reply,
                         "-ERR node %" PRIu64 " was elected, not node %" PRIu64 "\r\n", st.leader,
                         j->id);
            job_finish(s, reply);
            return;
        }
        if (finish_if_transfer_abandoned(s, &st))
            return;
        if (j->step == 0 && s->is_leader) {
            uint64_t to = j->id ? j->id : best_other_voter(s, &st.config);
            int rc = to ? raft_node_transfer(s->raft, to) : RC_ENOTFOUND;
            if (rc == 0) {
                j->step = 1;
                j->transfer_to = to;
            } else if (rc != RC_EAGAIN && rc != RC_EBUSY) {
                job_finish(s, "-ERR cannot transfer leadership\r\n");
            }
        }
        return;
    }
    if (!s->is_leader) {
        /* A leader that removes itself steps down as soon as the removal commits. */
        bool removed_self = j->kind == 2 && j->id == s->self.id && j->step >= 1 && committed &&
                            !config_has(&st.config, j->id, true) &&
                            !config_has(&st.config, j->id, false);
        /* Once something was proposed, the new leader may well have committed it. */
        job_finish(s, removed_self   ? "+OK\r\n"
                      : j->step == 0 ? "-ERR leadership changed; retry\r\n"
                                     : "-ERR leadership changed while the change was under way; "
                                       "it may or may not have been applied: check RAFTPEERS "
                                       "before retrying\r\n");
        return;
    }
    int rc;
    if (j->kind == 1) { /* add: directory, learner, caught up, voter */
        switch (j->step) {
        case 0:
            if (propose_member_set(s, j->id, j->client_addr, j->peer_addr) == 0)
                j->step = 1;
            return;
        case 1:
            if (config_has(&st.config, j->id, false) || config_has(&st.config, j->id, true)) {
                j->step = 2;
                return;
            }
            /* Not before the directory line is applied: it gives the transport the
             * joiner's peer address. A learner added earlier gets its first append
             * dropped (no address yet), and the core probes an idle learner again only
             * when a new entry comes: with no writes it stayed a learner for good. */
            const struct cluster_member *m = cluster_members_find(&s->members, j->id);
            if (!m || strcmp(m->peer_addr, j->peer_addr) != 0)
                return;
            rc = raft_node_change(s->raft, RAFT_ADD_LEARNER, j->id);
            if (rc == 0 || rc == RC_EEXIST)
                j->step = 2;
            else if (rc != RC_EBUSY && rc != RC_EAGAIN)
                job_finish(s, "-ERR cannot add the learner\r\n");
            return;
        case 2:
            if (config_has(&st.config, j->id, true)) {
                j->step = 3;
                return;
            }
            uint64_t now = (uint64_t)server_now_ms(), timeout = s->cfg->election_timeout_ms;
            if (!j->learner_since_ms)
                j->learner_since_ms = now;
            if (!raft_node_peer_heard(s->raft, j->id) &&
                now - j->learner_since_ms > LEARNER_SILENT_MS &&
                now - j->learner_since_ms > 6 * timeout) {
                /* Nothing will change by waiting out the job's minute: say why now, and free
                 * the membership slot. */
                rc_warn("node %" PRIu64 " has not answered at %s for %d s since it was added "
                        "as a learner: check the address it gave (--peer-advertise), "
                        "firewalls and TLS; it stays a learner until RAFTREMOVEPEER %" PRIu64,
                        j->id, j->peer_addr, LEARNER_SILENT_MS / 1000, j->id);
                char msg[300];
                snprintf(msg, sizeof msg,
                         "-ERR node %" PRIu64 " has not answered at %s for %d s: check its "
                         "address, firewalls and TLS; it stays a learner until RAFTREMOVEPEER\r\n",
                         j->id, j->peer_addr, LEARNER_SILENT_MS / 1000);
                job_finish(s, msg);
                return;
            }
            if (!committed)
                return;
            rc = raft_node_change(s->raft, RAFT_PROMOTE, j->id);
            if (rc == 0)
                j->step = 3;
            else if (rc != RC_EBUSY && rc != RC_EAGAIN)
                job_finish(s, "-ERR cannot promote the learner\r\n");
            return;
        default:
            if (config_has(&st.config, j->id, true) && committed)
                job_finish(s, "+OK\r\n");
            return;
        }
    }
    /* remove: configuration first, then the directory line */
    switch (j->step) {
    case 0:
        rc = raft_node_change(s->raft, RAFT_REMOVE, j->id);
        if (rc == 0 || rc == RC_ENOTFOUND)
            j->step = 1;
        else if (rc != RC_EBUSY && rc != RC_EAGAIN)
            job_finish(s, "-ERR cannot remove the peer\r\n");
        return;
    case 1:
        if (!committed)
            return;
        if (j->id == s->self.id) {
            job_finish(s, "+OK\r\n");
            return;
        }
        if (propose_member_del(s, j->id) == 0)
            j->step = 2;
        return;
    default:
        if (!cluster_members_find(&s->members, j->id))
            job_finish(s, "+OK\r\n");
        return;
    }
}

static bool job_start(struct client *c, int kind, uint64_t id, const char *client_addr,
                      const char *peer_addr)
{
    struct server *s = c->srv;
    if (s->job.kind) {
        static const char *const what[] = {"", "adding", "removing", "transferring to"};
        uint64_t busy = s->job.id ? s->job.id : s->job.transfer_to;
        if (busy)
            reply_errorf(c, "ERR another membership change is in progress (%s node %" PRIu64 ")",
                         what[s->job.kind], busy);
        else
            reply_error(c, "ERR another membership change is in progress (a transfer)");
        return false;
    }
    memset(&s->job, 0, sizeof s->job);
    s->job.kind = kind;
    s->job.id = id;
    snprintf(s->job.client_addr, sizeof s->job.client_addr, "%s", client_addr ? client_addr : "");
    snprintf(s->job.peer_addr, sizeof s->job.peer_addr, "%s", peer_addr ? peer_addr : "");
    s->job.deadline_ms =
        (uint64_t)server_now_ms() + (kind == 3 ? TRANSFER_DEADLINE_MS : JOB_DEADLINE_MS);
    s->job.client = c;
    client_block(c);
    job_step(s);
    return true;
}

/* The leader keeps its own directory line current (first election, or a changed address). */
static void directory_upkeep(struct server *s)
{
    struct raft_status st;
    raft_node_status(s->raft, &st);
    if (!s->is_leader || st.commit < st.last_index)
        return; /* wait until earlier directory entries are committed and applied */
    const struct cluster_member *m = cluster_members_find(&s->members, s->self.id);
    if (!m || strcmp(m->client_addr, s->self.client_addr) != 0 ||
        strcmp(m->peer_addr, s->self.peer_addr) != 0) {
        propose_member_set(s, s->self.id, s->self.client_addr, s->self.peer_addr);
        return;
    }
    /* Lines of nodes that are no longer members (removed, or lost before a --recover) go,
     * so that their addresses can be reused by a node joining again. Not while a
     * membership job runs: a joiner's line is published before it becomes a learner. */
    if (s->job.kind)
        return;
    for (size_t i = 0; i < s->members.count; i++) {
        uint64_t id = s->members.m[i].id;
        if (id != s->self.id && !raft_config_has_voter(&st.config, id) &&
            !raft_config_has_learner(&st.config, id)) {
            propose_member_del(s, id);
            return;
        }
    }
}

/* Writes this node proposed as leader are answered when their entries apply (or are
 * overwritten by a new leader's). A former leader that has seen no leader for an election
 * timeout cannot tell when that will be (without a quorum, never), so it answers them now. */
static void fail_orphaned_writes(struct server *s)
{
    if (s->is_leader || !s->nproposed || !s->leaderless_since_ms ||
        (uint64_t)server_now_ms() - s->leaderless_since_ms < s->cfg->election_timeout_ms)
        return;
    writepath_fail_proposed(s, "-ERR leadership lost and no leader is known; the write may or "
                               "may not be applied\r\n");
}

/* A node without a leader for long says so now and then: it cannot reach a quorum of the
 * voters, or it was removed (the others no longer talk to it, and it learns of that from no
 * one), which only its operator can tell. */
#define LEADERLESS_WARN_MS   10000
#define LEADERLESS_REPEAT_MS 60000
static void warn_leaderless(struct server *s)
{
    uint64_t now = (uint64_t)server_now_ms();
    if (!s->leaderless_since_ms || now - s->leaderless_since_ms < LEADERLESS_WARN_MS ||
        (s->leaderless_warned_ms && now - s->leaderless_warned_ms < LEADERLESS_REPEAT_MS))
        return;
    s->leaderless_warned_ms = now;
    const struct raft_status *st = &s->rstatus;
    bool member = raft_config_has_voter(&st->config, s->self.id) ||
                  raft_config_has_learner(&st->config, s->self.id);
    rc_warn("no leader for %llu s (this node: %s, term %llu, %u voters in its configuration%s): "
            "it cannot reach a quorum of them, or it was removed from the cluster (then stop "
            "it and delete %s before it joins again)",
            (unsigned long long)((now - s->leaderless_since_ms) / 1000), role_name(st->role),
            (unsigned long long)st->term, st->config.n_voters,
            member ? "" : ", itself not among them", s->cfg->dir);
}

static void join_upkeep(struct server *s);

static void on_cluster_timer(uv_timer_t *t)
{
    struct server *s = t->data;
    if (s->shutting_down || !s->raft)
        return;
    fail_orphaned_writes(s);
    warn_leaderless(s);
    directory_upkeep(s);
    join_upkeep(s);
    job_step(s);
    snapshots_tick(s);
    start_read_round(s);
    raft_node_process(s->raft);
}

/* ============================== commands ============================== */

static void reply_raw(struct client *c, const char *text)
{
    resp_buf_append(&c->out, text, strlen(text));
}

static void cmd_raftleader(struct client *c, size_t argc, const struct resp_arg *a)
{
    char leader[CLUSTER_ADDR_MAX];
    if (cluster_leader_addr(c->srv, leader, sizeof leader))
        resp_add_bulk_cstr(&c->out, leader);
    else
        resp_add_null(&c->out);
}

static void cmd_raftstate(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct server *s = c->srv;
    struct raft_status st;
    raft_node_status(s->raft, &st);
    resp_add_status(&c->out, role_name(st.role));
}

static void add_stat(struct resp_buf *b, const char *name, uint64_t v)
{
    resp_add_bulk_cstr(b, name);
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    resp_add_bulk_cstr(b, num);
}

/* Members other than this node (a joiner not yet added, or a removed node, is in none). */
static uint64_t other_members(const struct server *s, const struct raft_config *cfg)
{
    uint64_t n = (uint64_t)cfg->n_voters + cfg->n_learners;
    if (raft_config_has_voter(cfg, s->self.id) || raft_config_has_learner(cfg, s->self.id))
        n--;
    return n;
}

static void cmd_raftstats(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct server *s = c->srv;
    struct raft_status st;
    raft_node_status(s->raft, &st);
    struct raft_node_stats ns;
    raft_node_stats(s->raft, &ns);
    char cluster[24];
    snprintf(cluster, sizeof cluster, "%016" PRIx64, s->self.cluster_id);
    resp_add_array(&c->out, 2 * 16);
    add_stat(&c->out, "id", s->self.id);
    resp_add_bulk_cstr(&c->out, "cluster_id");
    resp_add_bulk_cstr(&c->out, cluster);
    resp_add_bulk_cstr(&c->out, "state");
    resp_add_bulk_cstr(&c->out, role_name(st.role));
    add_stat(&c->out, "term", st.term);
    add_stat(&c->out, "leader", st.leader);
    add_stat(&c->out, "commit_index", st.commit);
    /* Raft's applied index, not the store's revision: no-ops and configuration entries
     * leave the revision behind, and after an election without writes it would trail
     * commit_index forever. */
    add_stat(&c->out, "applied_index", st.applied);
    add_stat(&c->out, "last_log_index", st.last_index);
    add_stat(&c->out, "last_log_term", st.last_term);
    add_stat(&c->out, "first_log_index", st.first_index);
    add_stat(&c->out, "last_snapshot_index", st.snapshot_index);
    add_stat(&c->out, "num_peers", other_members(s, &st.config));
    add_stat(&c->out, "num_voters", st.config.n_voters);
    add_stat(&c->out, "fsyncs", ns.fsyncs);
    add_stat(&c->out, "fsync_avg_us", ns.fsyncs ? ns.fsync_total_us / ns.fsyncs : 0);
    add_stat(&c->out, "entries_applied", ns.entries_applied);
}

static void add_peer_row(struct client *c, uint64_t id, const char *role, const char *state)
{
    const struct cluster_member *m = cluster_members_find(&c->srv->members, id);
    resp_add_array(&c->out, 5);
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, id);
    resp_add_bulk_cstr(&c->out, num);
    resp_add_bulk_cstr(&c->out, m ? m->client_addr : "");
    resp_add_bulk_cstr(&c->out, m ? m->peer_addr : "");
    resp_add_bulk_cstr(&c->out, role);
    resp_add_bulk_cstr(&c->out, state);
}

static void cmd_raftpeers(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct raft_status st;
    raft_node_status(c->srv->raft, &st);
    resp_add_array(&c->out, st.config.n_voters + st.config.n_learners);
    /* A leader knows which voters answered lately: the others are shown Unreachable. */
    bool leader = st.role == RAFT_LEADER;
    for (uint32_t i = 0; i < st.config.n_voters; i++) {
        uint64_t id = st.config.voters[i];
        const char *state = id == st.leader ? "Leader" : "Follower";
        if (leader && id != c->srv->self.id && !raft_node_peer_reachable(c->srv->raft, id))
            state = "Unreachable";
        add_peer_row(c, id, "voter", state);
    }
    for (uint32_t i = 0; i < st.config.n_learners; i++)
        add_peer_row(c, st.config.learners[i], "standby", "Learner");
}

static bool parse_u64_arg(const struct resp_arg *a, uint64_t *out)
{
    char buf[24];
    if (a->len == 0 || a->len >= sizeof buf)
        return false;
    memcpy(buf, a->ptr, a->len);
    buf[a->len] = '\0';
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (*end || buf[0] == '-')
        return false;
    *out = v;
    return true;
}

static void arg_cstr(const struct resp_arg *a, char *buf, size_t cap)
{
    size_t n = a->len < cap - 1 ? a->len : cap - 1;
    memcpy(buf, a->ptr, n);
    buf[n] = '\0';
}

/* Commands that change membership run on the leader: a follower forwards them. */
static bool admin_on_leader(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (c->srv->is_leader)
        return true;
    char leader[CLUSTER_ADDR_MAX];
    if (!cluster_leader_addr(c->srv, leader, sizeof leader)) {
        reply_error(c, "CLUSTERDOWN no leader");
        return false;
    }
    int rc = forward_admin(c->srv, c, argc, a, leader);
    if (rc != 0)
        reply_not_forwarded(c, rc);
    return false;
}

/* RAFTADDPEER peer-addr [ID n] [CLIENT client-addr] */
static void cmd_raftaddpeer(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (!admin_on_leader(c, argc, a))
        return;
    struct server *s = c->srv;
    char peer[CLUSTER_ADDR_MAX], client[CLUSTER_ADDR_MAX] = "";
    arg_cstr(&a[1], peer, sizeof peer);
    uint64_t id = 0;
    for (size_t i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) {
            reply_syntax_error(c);
            return;
        }
        if (arg_is(&a[i], "ID") && parse_u64_arg(&a[i + 1], &id) && id != 0)
            continue;
        if (arg_is(&a[i], "CLIENT")) {
            arg_cstr(&a[i + 1], client, sizeof client);
            continue;
        }
        reply_syntax_error(c);
        return;
    }
    if (id == 0) {
        reply_error(c, "ERR an ID is required (raftcask ids are not derived from addresses)");
        return;
    }
    if (!client[0])
        snprintf(client, sizeof client, "%s", peer);
    char host[CLUSTER_ADDR_MAX];
    int port;
    for (int k = 0; k < 2; k++) { /* refused now, not by the directory 60 s later */
        const char *addr = k ? client : peer;
        if (strlen(addr) + 1 >= CLUSTER_ADDR_MAX || strpbrk(addr, " \t\r\n") ||
            rc_config_split_hostport(addr, host, &port) != 0 || port <= 0) {
            reply_errorf(c, "ERR invalid %s address '%s' (HOST:PORT)", k ? "client" : "peer", addr);
            return;
        }
    }
    if (!cluster_members_find(&s->members, id) && s->members.count >= CLUSTER_MAX_MEMBERS) {
        reply_error(c, "ERR the cluster has as many members as it can hold");
        return;
    }
    struct raft_status st;
    raft_node_status(s->raft, &st);
    if (raft_config_has_voter(&st.config, id)) {
        /* Also to a joiner asking again: it sees itself a voter in its own configuration.
         * A node of that id that lost its data must not be told it is in (it would never
         * catch up, and might vote twice in a term). The joiner tells this answer from an
         * address taken by another node (below) by its end. */
        reply_errorf(c, "ERR peer already known: node %" PRIu64 " is a voter", id);
        return;
    }
    for (size_t i = 0; i < s->members.count; i++) {
        const struct cluster_member *m = &s->members.m[i];
        bool same_peer = strcmp(m->peer_addr, peer) == 0;
        if (m->id != id && (same_peer || strcmp(m->client_addr, client) == 0)) {
            /* Its address is another node's: say whose, and how to free it (a joiner killed
             * and wiped mid-join left a learner behind that holds it). */
            const char *role = raft_config_has_voter(&st.config, m->id) ? "a voter"
                               : raft_config_has_learner(&st.config, m->id)
                                   ? "a learner"
                                   : "not in the configuration";
            reply_errorf(c,
                         "ERR peer already known: %s address %s is node %" PRIu64
                         "'s (%s); if that node is gone, RAFTREMOVEPEER %" PRIu64 " first",
                         same_peer ? "peer" : "client", same_peer ? peer : client, m->id, role,
                         m->id);
            return;
        }
    }
    job_start(c, 1, id, client, peer);
}

static bool find_member_arg(struct server *s, const struct resp_arg *a, uint64_t *id)
{
    if (parse_u64_arg(a, id))
        return true;
    char addr[CLUSTER_ADDR_MAX];
    arg_cstr(a, addr, sizeof addr);
    for (size_t i = 0; i < s->members.count; i++) {
        if (strcmp(s->members.m[i].peer_addr, addr) == 0 ||
            strcmp(s->members.m[i].client_addr, addr) == 0) {
            *id = s->members.m[i].id;
            return true;
        }
    }
    return false;
}

static void cmd_raftremovepeer(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (!admin_on_leader(c, argc, a))
        return;
    struct server *s = c->srv;
    uint64_t id;
    struct raft_status st;
    raft_node_status(s->raft, &st);
    if (!find_member_arg(s, &a[1], &id) ||
        (!raft_config_has_voter(&st.config, id) && !raft_config_has_learner(&st.config, id) &&
         !cluster_members_find(&s->members, id))) {
        reply_error(c, "ERR peer is unknown");
        return;
    }
    /* Like etcd's strict reconfiguration check: the voters left must include a quorum of
     * reachable ones, or the removal itself takes the cluster down (removing a running node
     * of three while another is down leaves two voters, one of them down). */
    if (raft_config_has_voter(&st.config, id)) {
        uint32_t left = 0, reachable = 0;
        for (uint32_t i = 0; i < st.config.n_voters; i++) {
            uint64_t v = st.config.voters[i];
            if (v == id)
                continue;
            left++;
            reachable += v == s->self.id || raft_node_peer_reachable(s->raft, v);
        }
        if (left > 0 && reachable < left / 2 + 1) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "ERR cannot remove node %" PRIu64 ": %u of the %u voters left are "
                     "reachable, fewer than their quorum of %u; bring the others back first",
                     id, reachable, left, left / 2 + 1);
            reply_error(c, msg);
            return;
        }
    }
    job_start(c, 2, id, NULL, NULL);
}

static void cmd_rafttransfer(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (!admin_on_leader(c, argc, a))
        return;
    struct server *s = c->srv;
    struct raft_status st;
    raft_node_status(s->raft, &st);
    uint64_t id = 0;
    if (argc > 1) {
        if (!find_member_arg(s, &a[1], &id) || !raft_config_has_voter(&st.config, id)) {
            reply_error(c, "ERR peer is unknown");
            return;
        }
        if (id == s->self.id) {
            reply_raw(c, "+OK\r\n");
            return;
        }
    } else if (!best_other_voter(s, &st.config)) {
        reply_error(c, "ERR no other voter to transfer to");
        return;
    }
    job_start(c, 3, id, NULL, NULL); /* id 0: the job picks the voter */
}

/* JOIN id peer-addr (finn): RAFTADDPEER peer-addr ID id */
static void cmd_join(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct resp_arg args[4] = {{"RAFTADDPEER", 11}, a[2], {"ID", 2}, a[1]};
    cmd_raftaddpeer(c, 4, args);
}

#define A CMD_ADMIN
#define R CMD_READONLY
#define F CMD_FAST
static const struct command rows[] = {
    {"raftleader", 1, F, 0, 0, 0, cmd_raftleader, "raftcask", "raftcask", "",
     "The leader's client address, or nil if no leader is known."},
    {"leader", 1, F, 0, 0, 0, cmd_raftleader, "raftcask", "raftcask", "", "Alias of RAFTLEADER."},
    {"raftstate", 1, F, 0, 0, 0, cmd_raftstate, "raftcask", "raftcask", "",
     "This node's role: Leader, Follower, Candidate or Shutdown."},
    {"raftstats", 1, F, 0, 0, 0, cmd_raftstats, "raftcask", "raftcask", "",
     "This node's Raft figures as a flat array of name, value."},
    {"raftpeers", 1, 0, 0, 0, 0, cmd_raftpeers, "raftcask", "raftcask", "",
     "The members: id, client address, peer address, role, state."},
    {"nodes", 1, 0, 0, 0, 0, cmd_raftpeers, "raftcask", "raftcask", "", "Alias of RAFTPEERS."},
    {"raftaddpeer", -2, A, 0, 0, 0, cmd_raftaddpeer, "raftcask", "raftcask",
     "peer-addr ID id [CLIENT client-addr]",
     "Adds a node: learner, caught up, then voter; replies once it votes."},
    {"join", 3, A, 0, 0, 0, cmd_join, "raftcask", "raftcask", "id peer-addr",
     "Alias of RAFTADDPEER peer-addr ID id."},
    {"raftremovepeer", 2, A, 0, 0, 0, cmd_raftremovepeer, "raftcask", "raftcask", "id-or-addr",
     "Removes a node from the cluster."},
    {"rafttransfer", -1, A, 0, 0, 0, cmd_rafttransfer, "raftcask", "raftcask", "[id]",
     "Hands leadership to a voter; replies once it moved."},
};
#undef A
#undef R
#undef F

const struct command_table cluster_commands = {rows, sizeof rows / sizeof rows[0]};

/* ============================== INFO ============================== */

void cluster_info(struct server *s, struct resp_buf *b)
{
    struct raft_status st;
    raft_node_status(s->raft, &st);
    struct raft_node_stats ns;
    raft_node_stats(s->raft, &ns);
    char leader[CLUSTER_ADDR_MAX] = "";
    cluster_leader_addr(s, leader, sizeof leader);
    char text[2048];
    int n = snprintf(
        text, sizeof text,
        "# Raft\r\nraft_id:%" PRIu64 "\r\nraft_cluster_id:%016" PRIx64 "\r\nraft_role:%s\r\n"
        "raft_term:%" PRIu64 "\r\nraft_leader_id:%" PRIu64 "\r\nraft_leader_addr:%s\r\n"
        "raft_commit_index:%" PRIu64 "\r\nraft_applied_index:%" PRIu64 "\r\n"
        "raft_last_log_index:%" PRIu64 "\r\nraft_first_log_index:%" PRIu64 "\r\n"
        "raft_last_snapshot_index:%" PRIu64 "\r\nraft_voters:%u\r\nraft_learners:%u\r\n"
        "raft_fsyncs:%" PRIu64 "\r\nraft_fsync_avg_us:%" PRIu64 "\r\nraft_fsync_max_us:%" PRIu64
        "\r\nraft_msgs_sent:%" PRIu64 "\r\nraft_msgs_received:%" PRIu64
        "\r\nraft_msgs_dropped:%" PRIu64 "\r\nraft_forwarded:%" PRIu64
        "\r\nraft_redirected:%" PRIu64 "\r\nraft_reads_confirmed:%" PRIu64
        "\r\nraft_forwarded_bytes_in_flight:%" PRIu64 "\r\nraft_peer_reconnects:%" PRIu64
        "\r\nraft_heartbeats_superseded:%" PRIu64 "\r\nraft_peer_frames_rejected:%" PRIu64
        "\r\nraft_peer_handshakes_refused:%" PRIu64 "\r\n\r\n",
        s->self.id, s->self.cluster_id, role_name(st.role), st.term, st.leader, leader, st.commit,
        st.applied, st.last_index, st.first_index, st.snapshot_index, st.config.n_voters,
        st.config.n_learners, ns.fsyncs, ns.fsyncs ? ns.fsync_total_us / ns.fsyncs : 0,
        ns.fsync_max_us, ns.msgs_sent, ns.msgs_received, ns.msgs_dropped, s->stat_forwarded,
        s->stat_redirected, s->stat_reads_confirmed, s->fwd_bytes_inflight, ns.peer_reconnects,
        ns.heartbeats_superseded, ns.peer_frames_rejected, ns.peer_handshakes_refused);
    resp_buf_append(b, text, (size_t)n);
}

/* ============================== joining ============================== */

/* Appends the RESP encoding of argv to req (n bytes used of cap); returns the new length,
 * or cap when it does not fit. */
static size_t encode_call(char *req, size_t n, size_t cap, int argc, const char **argv)
{
    n += (size_t)snprintf(req + n, cap - n, "*%d\r\n", argc);
    for (int i = 0; i < argc && n < cap; i++)
        n += (size_t)snprintf(req + n, cap - n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    return n < cap ? n : cap;
}

/* A blocking RESP call to host:port for the join thread and the cluster id: sends argv
 * (after AUTH with password, when one is set: the cluster shares --requirepass), reads
 * argv's one reply (the whole of a multibulk) into buf. 0 or -1. */
static int blocking_call(const char *addr, const char *password, int argc, const char **argv,
                         char *buf, size_t cap, int timeout_s, atomic_int *stop)
{
    uint64_t deadline = rc_mono_ns() + (uint64_t)timeout_s * 1000000000ull;
    char host[256];
    int port;
    if (rc_config_split_hostport(addr, host, &port) != 0)
        return -1;
    /* Numeric addresses only, IPv4 or IPv6, as everywhere else (no DNS lookups). */
    struct sockaddr_storage sa = {0};
    socklen_t sa_len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        sa_len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        sa_len = sizeof *v6;
    } else {
        return -1;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* With stop, reads wake every second to see it (a shutdown need not wait out a call). */
    struct timeval tv = {.tv_sec = stop ? 1 : timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sa_len) != 0) {
        close(fd);
        return -1;
    }
    char req[1024];
    size_t n = 0;
    bool auth = password && password[0];
    if (auth) {
        const char *auth_argv[2] = {"AUTH", password};
        n = encode_call(req, n, sizeof req, 2, auth_argv);
    }
    if (n < sizeof req)
        n = encode_call(req, n, sizeof req, argc, argv);
    if (n >= sizeof req || write(fd, req, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    size_t got = 0, skip = 0; /* skip: the AUTH reply's bytes, once complete */
    long whole = 0;
    while (got + 1 < cap && whole == 0) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stop && !atomic_load(stop) &&
            rc_mono_ns() < deadline)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (auth && skip == 0) {
            long l = forward_reply_length(buf, got);
            if (l < 0)
                break;
            if (l == 0)
                continue;
            skip = (size_t)l;
        }
        whole = forward_reply_length(buf + skip, got - skip);
    }
    close(fd);
    if (whole > 0 && skip && buf[0] == '-') {
        got = skip - 2; /* AUTH refused: that is the answer worth reporting */
    } else if (whole > 0 && skip) {
        memmove(buf, buf + skip, got - skip);
        got -= skip;
    }
    buf[got] = '\0';
    return whole > 0 ? 0 : -1;
}

/* Asks the member at --join for the cluster id (RAFTSTATS), retrying for a while. */
static int fetch_cluster_id(const char *join, const char *password, uint64_t *cluster_id)
{
    char refused[200] = ""; /* the member's last error reply */
    for (int attempt = 0; attempt < 100; attempt++) {
        char buf[4096];
        const char *argv[1] = {"RAFTSTATS"};
        if (blocking_call(join, password, 1, argv, buf, sizeof buf, 5, NULL) == 0) {
            const char *p = strstr(buf, "cluster_id\r\n$16\r\n");
            if (p) {
                *cluster_id = strtoull(p + 17, NULL, 16);
                if (*cluster_id)
                    return 0;
            }
            if (buf[0] == '-') {
                snprintf(refused, sizeof refused, "%.*s", (int)strcspn(buf + 1, "\r\n"), buf + 1);
                /* The member wants the cluster's password: no retry changes that. */
                if (!strncmp(refused, "NOAUTH", 6) || !strncmp(refused, "WRONGPASS", 9)) {
                    rc_error("the member at --join %s refused this node (%s): start it with the "
                             "cluster's --requirepass",
                             join, refused);
                    return RC_EINVAL;
                }
            }
        }
        usleep(100 * 1000);
    }
    if (refused[0])
        rc_error("the member at --join %s answered '%s' instead of its cluster id", join, refused);
    else
        rc_error("cannot reach a cluster member at --join %s", join);
    return RC_EIO;
}

/*
 * Asks for this node to be added (RAFTADDPEER, which a member forwards to the leader) until
 * it is a voter: an answer +OK, or this node seeing itself a voter in its own configuration
 * (an answer lost, or a join resumed after a restart). It asks the --join member and, once
 * this node knows the leader (as a learner), the leader too, in turn, so a dead --join
 * member does not stop it. "-ERR peer already known" with an empty log means a node of this
 * id is a member and this one lost its data: it gives up (the loop stops the node).
 */
static void join_thread_main(void *arg)
{
    struct server *s = arg;
    char ids[24], target[CLUSTER_ADDR_MAX];
    snprintf(ids, sizeof ids, "%" PRIu64, s->self.id);
    const char *argv[6] = {"RAFTADDPEER", s->self.peer_addr, "ID",
                           ids,           "CLIENT",          s->self.client_addr};
    unsigned delay_ms = 100, attempt = 0;
    while (!s->join_stop) {
        if (atomic_load(&s->join_voter)) {
            atomic_store(&s->join_outcome, 1);
            return;
        }
        snprintf(target, sizeof target, "%s", s->join_addr);
        uv_mutex_lock(&s->join_mu);
        if (attempt++ % 2 == 1 && s->join_leader[0])
            snprintf(target, sizeof target, "%s", s->join_leader);
        uv_mutex_unlock(&s->join_mu);
        char buf[512];
        if (blocking_call(target, s->cfg->requirepass, 6, argv, buf, sizeof buf, 70,
                          &s->join_stop) == 0) {
            if (strncmp(buf, "+OK", 3) == 0) {
                atomic_store(&s->join_outcome, 1);
                return;
            }
            char *eol = strstr(buf, "\r\n");
            if (eol)
                *eol = '\0';
            if (strstr(buf, "peer already known: node") && strstr(buf, "is a voter") &&
                !atomic_load(&s->join_has_log)) {
                atomic_store(&s->join_outcome, 2);
                return;
            }
            rc_warn("joining through %s: %s; retrying", target, buf);
        } else {
            rc_warn("joining through %s: no answer; retrying", target);
        }
        for (unsigned waited = 0; waited < delay_ms && !s->join_stop; waited += 50)
            usleep(50 * 1000);
        if (delay_ms < 2000)
            delay_ms *= 2;
    }
}

/* DIR/joining names the member a join asks; it stays until the join is done, so a node
 * stopped while joining resumes at its next start. */
static int joining_mark(struct server *s, const char *addr)
{
    char text[CLUSTER_ADDR_MAX + 2];
    int n = snprintf(text, sizeof text, "%s\n", addr);
    return rc_write_file_atomic(s->cfg->dir, "joining", text, (size_t)n);
}

static bool joining_pending(struct server *s, char *addr, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/joining", s->cfg->dir);
    void *buf;
    size_t len;
    if (rc_read_file(path, &buf, &len) != 0)
        return false;
    size_t n = 0;
    while (n < len && n + 1 < cap && ((char *)buf)[n] != '\n')
        n++;
    memcpy(addr, buf, n);
    addr[n] = '\0';
    rc_free(buf);
    return n > 0;
}

/* On the loop thread: what the join thread needs to know, and its outcome. */
static void join_publish(struct server *s)
{
    struct raft_status st;
    raft_node_status(s->raft, &st);
    atomic_store(&s->join_voter,
                 raft_config_has_voter(&st.config, s->self.id) && st.config_index <= st.commit);
    atomic_store(&s->join_has_log, st.last_index > 0);
    char leader[CLUSTER_ADDR_MAX];
    if (s->is_leader || !cluster_leader_addr(s, leader, sizeof leader))
        leader[0] = '\0';
    uv_mutex_lock(&s->join_mu);
    snprintf(s->join_leader, sizeof s->join_leader, "%s", leader);
    uv_mutex_unlock(&s->join_mu);
}

static void join_upkeep(struct server *s)
{
    if (!s->join_thread_running)
        return;
    join_publish(s);
    int outcome = atomic_load(&s->join_outcome);
    if (!outcome)
        return;
    uv_thread_join(&s->join_thread); /* it has returned */
    uv_mutex_destroy(&s->join_mu);
    s->join_thread_running = false;
    if (outcome == 2) {
        rc_error("cannot join: node %" PRIu64 " is already a voter of this cluster, and this node "
                 "has no log (it lost its data?). Remove node %" PRIu64 " (RAFTREMOVEPEER), then "
                 "join with a fresh --dir and another --id",
                 s->self.id, s->self.id);
        server_shutdown(s, 1);
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/joining", s->cfg->dir);
    if (unlink(path) != 0 || rc_fsync_dir(s->cfg->dir) != 0)
        rc_warn("removing %s: %s", path, strerror(errno));
    rc_info("joined the cluster through %s as node %" PRIu64, s->join_addr, s->self.id);
}

/* ============================== start and stop ============================== */

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&v, sizeof v, 1, f) != 1)
            v = 0;
        fclose(f);
    }
    if (!v)
        v = rc_mono_ns() ^ ((uint64_t)getpid() << 32);
    return v;
}

/* True if directory dir exists and holds an entry. */
static bool dir_has_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    const struct dirent *e;
    bool any = false;
    while (!any && (e = readdir(d)) != NULL)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return any;
}

static void join_hostport(const char *host, int port, char *buf, size_t cap)
{
    if (strchr(host, ':'))
        snprintf(buf, cap, "[%s]:%d", host, port);
    else
        snprintf(buf, cap, "%s:%d", host, port);
}

void cluster_peer_bind(const struct rc_config *cfg, char *buf, size_t cap)
{
    if (cfg->peer_bind && cfg->peer_bind[0]) {
        snprintf(buf, cap, "%s", cfg->peer_bind);
        return;
    }
    char host[256];
    int port = 0;
    rc_config_split_hostport(cfg->bind, host, &port);
    join_hostport(host, port + 1, buf, cap);
}

/* A HOST:PORT whose host names no one machine (0.0.0.0, ::): fine to bind, useless to dial
 * from another machine. */
static bool wildcard_addr(const char *addr)
{
    char host[256];
    int port;
    return rc_config_split_hostport(addr, host, &port) == 0 &&
           (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !host[0]);
}

/* The peer address told to other nodes: --peer-advertise; else, when --peer-bind's host is a
 * wildcard and --advertise names a host, that host with the peer port; else --peer-bind. */
static void default_peer_addr(const struct rc_config *cfg, const char *peer_bind, char *buf,
                              size_t cap)
{
    char host[256], peer_host[256];
    int port, peer_port;
    if (cfg->peer_advertise && cfg->peer_advertise[0])
        snprintf(buf, cap, "%s", cfg->peer_advertise);
    else if (wildcard_addr(peer_bind) && cfg->advertise && cfg->advertise[0] &&
             !wildcard_addr(cfg->advertise) &&
             rc_config_split_hostport(cfg->advertise, host, &port) == 0 &&
             rc_config_split_hostport(peer_bind, peer_host, &peer_port) == 0)
        join_hostport(host, peer_port, buf, cap);
    else
        snprintf(buf, cap, "%s", peer_bind);
}

/* --restore FILE on a fresh node: the store is rebuilt from the backup; *base receives the
 * index it holds, after which the new cluster's log starts. */
static int restore_backup(struct server *s, uint64_t *base)
{
    const char *path = s->cfg->restore_from;
    int rc = rc_store_close(s->store);
    s->store = NULL;
    if (rc != 0)
        return rc;
    uint64_t revision = 0;
    void *extra = NULL;
    size_t extra_len = 0;
    rc = snapshot_restore(path, s->cask_dir, &s->store_opts, &revision, &extra, &extra_len);
    rc_free(extra); /* the old cluster's directory: this is a new cluster */
    int rc2 = rc_store_open(s->cask_dir, &s->store_opts, &s->store);
    if (rc != 0) {
        rc_error("--restore %s failed: %s", path, rc_strerror(rc));
        return rc;
    }
    if (rc2 != 0)
        return rc2;
    *base = rc_store_applied_revision(s->store);
    s->revision = *base;
    s->force_snapshot = true; /* so that joiners can be sent the restored state */
    rc_info("restored %zu keys from %s (index %llu); starting a new cluster after it",
            rc_store_count(s->store), path, (unsigned long long)*base);
    return 0;
}

static int save_node_conf(struct server *s)
{
    int rc = cluster_node_conf_save(s->cfg->dir, &s->self);
    if (rc != 0)
        rc_error("cannot write %s/node.conf: %s", s->cfg->dir, rc_strerror(rc));
    return rc;
}

int cluster_start(struct server *s)
{
    struct rc_config *cfg = s->cfg;
    snprintf(s->raft_dir, sizeof s->raft_dir, "%s/raft", cfg->dir);
    char peer_bind[300];
    cluster_peer_bind(cfg, peer_bind, sizeof peer_bind);
    const char *client_addr = cfg->advertise && cfg->advertise[0] ? cfg->advertise : cfg->bind;
    char peer_addr[300];
    default_peer_addr(cfg, peer_bind, peer_addr, sizeof peer_addr);
    if (strlen(client_addr) >= sizeof s->self.client_addr ||
        strlen(peer_addr) >= sizeof s->self.peer_addr) {
        rc_error("address '%s' or '%s' is too long", client_addr, peer_addr);
        return RC_EINVAL;
    }
    int rc = cluster_node_conf_load(cfg->dir, &s->self);
    bool fresh = rc == RC_ENOTFOUND;
    if (rc != 0 && !fresh) {
        rc_error("cannot read %s/node.conf: %s", cfg->dir, rc_strerror(rc));
        return rc;
    }
    if (fresh && dir_has_files(s->raft_dir)) {
        /* A first start that stopped between creating the log and writing node.conf (or a
         * lost node.conf): a new id would not match the one in the log. */
        rc_error("%s/node.conf is missing but %s holds a Raft log (an interrupted first "
                 "start?): if this node never served, remove %s and start it again",
                 cfg->dir, s->raft_dir, cfg->dir);
        return RC_EINVAL;
    }
    uint64_t held = rc_store_applied_revision(s->store);
    if (fresh && held > 0 && !(cfg->restore_from && cfg->restore_from[0])) {
        /* A --restore killed after it rebuilt the store but before node.conf was written:
         * a new log from index 1 over that store would skip every new write as held. */
        rc_error("%s/node.conf is missing but %s/cask holds data (up to revision %llu): a "
                 "--restore that did not finish? Start it again with the same --restore "
                 "FILE; if this node never served, remove %s and start it again",
                 cfg->dir, cfg->dir, (unsigned long long)held, cfg->dir);
        return RC_EINVAL;
    }
    /* Before --advertise lent its host to a wildcard --peer-bind, the peer address stored
     * was --peer-bind itself: such a node keeps it. */
    if (!fresh && strcmp(peer_addr, s->self.peer_addr) != 0 &&
        !(cfg->peer_advertise && cfg->peer_advertise[0]) &&
        strcmp(peer_bind, s->self.peer_addr) == 0)
        snprintf(peer_addr, sizeof peer_addr, "%s", peer_bind);
    if (!fresh && (strcmp(client_addr, s->self.client_addr) != 0 ||
                   strcmp(peer_addr, s->self.peer_addr) != 0)) {
        /* The other nodes know this node by the addresses it joined with. */
        rc_error("this node's addresses are %s (clients) and %s (peers), stored in "
                 "%s/node.conf; the flags give %s and %s. Start it with the stored addresses "
                 "(--bind, --peer-bind, --advertise, --peer-advertise), or remove it from the "
                 "cluster and join it again with a fresh --dir",
                 s->self.client_addr, s->self.peer_addr, cfg->dir, client_addr, peer_addr);
        return RC_EINVAL;
    }
    if (fresh && (wildcard_addr(client_addr) || wildcard_addr(peer_addr))) {
        /* Stored for good in node.conf and in every member's directory: other machines
         * would dial 0.0.0.0. */
        const char *what =
            wildcard_addr(client_addr) ? "--advertise HOST:PORT" : "--peer-advertise HOST:PORT";
        if (cfg->join && cfg->join[0]) {
            rc_error("this node would tell the cluster to reach it at %s (clients) and %s "
                     "(peers), which other machines cannot dial: give %s",
                     client_addr, peer_addr, what);
            return RC_EINVAL;
        }
        rc_warn("this node tells others to reach it at %s (clients) and %s (peers), stored for "
                "good in %s/node.conf: a node on another machine could not join it. Give %s "
                "at its first start if it will have members",
                client_addr, peer_addr, cfg->dir, what);
    }
    if (!fresh)
        rc_log_set_node(s->self.id); /* every line from here on names this node */
    if (fresh) {
        s->self.id = cfg->id ? cfg->id : (random_u64() >> 1) | 1;
        rc_log_set_node(s->self.id);
        memcpy(s->self.client_addr, client_addr, strlen(client_addr) + 1);
        memcpy(s->self.peer_addr, peer_addr, strlen(peer_addr) + 1);
        if (cfg->join && cfg->join[0]) {
            rc_info("asking %s for the cluster id", cfg->join);
            if ((rc = fetch_cluster_id(cfg->join, cfg->requirepass, &s->self.cluster_id)) != 0)
                return rc;
            if ((rc = joining_mark(s, cfg->join)) != 0) {
                rc_error("cannot write %s/joining: %s", cfg->dir, rc_strerror(rc));
                return rc;
            }
        } else {
            s->self.cluster_id = random_u64();
            struct raft_config c = {.n_voters = 1, .voters = {s->self.id}};
            uint64_t base = 0;
            if (cfg->restore_from && cfg->restore_from[0]) {
                rc = restore_backup(s, &base);
                if (rc != 0)
                    return rc;
            }
            rc = raft_node_bootstrap_at(s->raft_dir, &c, base);
            if (rc != 0) {
                rc_error("cannot bootstrap the Raft log in %s: %s", s->raft_dir, rc_strerror(rc));
                return rc;
            }
        }
        if ((rc = save_node_conf(s)) != 0)
            return rc;
    } else if (cfg->id && cfg->id != s->self.id) {
        rc_error("--id %llu differs from the id %llu stored in %s/node.conf",
                 (unsigned long long)cfg->id, (unsigned long long)s->self.id, cfg->dir);
        return RC_EINVAL;
    }
    if (!fresh && cfg->restore_from && cfg->restore_from[0])
        rc_warn("--restore ignored: this node has state in %s", cfg->dir);
    if (cfg->recover) {
        if (fresh) {
            rc_error("--recover needs a node with state in %s", cfg->dir);
            return RC_EINVAL;
        }
        /* A new cluster id first: the members of the old configuration, should they come
         * back with their old DIRs (or were only cut off, not lost), are refused at the peer
         * handshake. With the old id they still made a quorum of that configuration, and
         * this node, seeing their higher term, followed a leader its own configuration does
         * not have: two histories, and this node serving neither. Written before the log is
         * rewritten, so that a --recover cut short between the two leaves a node that the
         * old members cannot reach, not one with its new configuration and the old id. */
        uint64_t old_id = s->self.cluster_id;
        do
            s->self.cluster_id = random_u64();
        while (s->self.cluster_id == old_id || s->self.cluster_id == 0);
        if ((rc = save_node_conf(s)) != 0)
            return rc;
        rc_warn("--recover: the cluster id is now %016llx (was %016llx); nodes of the old "
                "configuration are refused: remove their DIRs before they join this node",
                (unsigned long long)s->self.cluster_id, (unsigned long long)old_id);
        rc = raft_node_recover(s->raft_dir, s->self.id, rc_store_applied_revision(s->store));
        if (rc != 0) {
            rc_error("--recover failed: %s", rc_strerror(rc));
            return rc;
        }
        s->force_snapshot = true; /* a joiner can then be sent the state, whatever the log */
    }
    rc = cluster_members_load(cfg->dir, &s->members);
    if (rc != 0)
        return rc;
    snapshots_remove_unfinished(s);

    struct raft_node_options o;
    raft_node_options_default(&o, s->self.id);
    o.cluster_id = s->self.cluster_id;
    o.tls = s->peer_tls;
    o.dir = s->raft_dir;
    o.peer_bind = peer_bind;
    o.peer_advertise = s->self.peer_addr;
    o.applied = rc_store_applied_revision(s->store);
    o.log.trailing_entries = cfg->snapshot_trailing;
    if (cfg->election_timeout_ms >= 2 * o.tick_ms)
        o.election_ticks = (int)(cfg->election_timeout_ms / o.tick_ms);
    if (cfg->heartbeat_ms >= o.tick_ms)
        o.heartbeat_ticks = (int)(cfg->heartbeat_ms / o.tick_ms);
    if (o.heartbeat_ticks >= o.election_ticks)
        o.heartbeat_ticks = o.election_ticks / 3 > 0 ? o.election_ticks / 3 : 1;
    struct raft_node_callbacks cb = {.apply = on_apply,
                                     .read_ready = on_read_ready,
                                     .restore = snapshots_restore,
                                     .restore_begin = snapshots_restore_begin,
                                     .on_state = on_state,
                                     .before_sync = on_before_sync};
    rc = raft_node_start(s->loop, &o, &cb, s, &s->raft);
    if (rc != 0) {
        rc_error("cannot start Raft (log %s, peers on %s): %s", s->raft_dir, peer_bind,
                 rc_strerror(rc));
        return rc;
    }
    apply_members_to_transport(s);
    raft_node_status(s->raft, &s->rstatus);
    uv_timer_init(s->loop, &s->cluster_timer);
    s->cluster_timer.data = s;
    uv_timer_start(&s->cluster_timer, on_cluster_timer, CLUSTER_TIMER_MS, CLUSTER_TIMER_MS);
    bool join = false;
    if (fresh && cfg->join && cfg->join[0]) {
        snprintf(s->join_addr, sizeof s->join_addr, "%s", cfg->join);
        join = true;
    } else if (!fresh && joining_pending(s, s->join_addr, sizeof s->join_addr)) {
        if (cfg->join && cfg->join[0]) /* the operator may name a member that is up */
            snprintf(s->join_addr, sizeof s->join_addr, "%s", cfg->join);
        rc_info("resuming the join through %s (%s/joining)", s->join_addr, cfg->dir);
        join = true;
    } else if (!fresh && cfg->join && cfg->join[0]) {
        rc_info("--join ignored: this node has state in %s", cfg->dir);
    }
    struct raft_status st;
    raft_node_status(s->raft, &st);
    if (!join && st.last_index > 0 && !raft_config_has_voter(&st.config, s->self.id) &&
        !raft_config_has_learner(&st.config, s->self.id))
        rc_warn("node %llu is not in the configuration its log holds (%u voters): it was "
                "removed from the cluster, or %s/node.conf was changed; it takes no part until "
                "it is added again",
                (unsigned long long)s->self.id, st.config.n_voters, cfg->dir);
    if (join && uv_mutex_init(&s->join_mu) == 0) {
        s->join_stop = 0;
        s->join_outcome = 0;
        join_publish(s); /* before it asks: a resumed join may be done already */
        s->join_thread_running = uv_thread_create(&s->join_thread, join_thread_main, s) == 0;
        if (!s->join_thread_running)
            uv_mutex_destroy(&s->join_mu);
    }
    rc_info("raft: node %llu of cluster %016llx, peers on %s", (unsigned long long)s->self.id,
            (unsigned long long)s->self.cluster_id, peer_bind);
    return 0;
}

static void raft_closed(void *ctx)
{
    struct server *s = ctx;
    s->raft_closed = true;
}

void cluster_stop(struct server *s)
{
    if (!s->raft)
        return;
    if (s->job.kind)
        job_finish(s, "-ERR shutting down\r\n");
    snapshots_stop(s);
    fail_reads(s, "-ERR shutting down\r\n");
    writepath_fail_proposed(s, "-ERR shutting down; the write may or may not be applied\r\n");
    /* The connection to the leader (and its timer) must close now, or uv_run never returns:
     * a follower that had proxied a command would ignore SIGTERM for ever. */
    forward_free(s);
    if (!uv_is_closing((uv_handle_t *)&s->cluster_timer))
        uv_close((uv_handle_t *)&s->cluster_timer, NULL);
    raft_node_close(s->raft, raft_closed, s);
}

void cluster_free(struct server *s)
{
    if (s->join_thread_running) {
        s->join_stop = 1;
        uv_thread_join(&s->join_thread);
        uv_mutex_destroy(&s->join_mu);
        s->join_thread_running = false;
    }
    forward_free(s);
    tls_context_free(s->peer_tls); /* the transport that used it is closed */
    s->peer_tls = NULL;
    rc_free(s->read_wait);
    rc_free(s->rounds);
    rc_free(s->proposed);
    s->read_wait = NULL;
    s->rounds = NULL;
    s->proposed = NULL;
}

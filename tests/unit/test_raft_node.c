/*
 * test_raft_node.c — three Raft nodes in one process on 127.0.0.1, with real log files and
 * real sockets: they elect a leader and replicate; the leader is stopped and a new one takes
 * over; the old one restarts from its files and catches up; linearizable reads are confirmed.
 * Every wait polls a condition under a deadline.
 */
#include "test.h"

#include "common/alloc.h"
#include "raft/node.h"
#include "raftcask.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#define DEADLINE_MS 15000
#define N_NODES     3
#define MAX_APPLIED 4096

struct tnode {
    uint64_t id;
    char dir[4200];
    struct raft_node *node;
    int port;
    int closed;
    /* Data of every normal entry applied, in order. */
    char *applied[MAX_APPLIED];
    size_t n_applied;
    uint64_t last_index;
    uint64_t reads_ready;
    struct raft_status st;
};

static uv_loop_t loop;
static uv_timer_t wake;
static struct tnode nodes[N_NODES];

static void on_wake(uv_timer_t *h)
{
    (void)h;
}

static int apply_cb(void *ctx, const struct raft_entry *e)
{
    struct tnode *t = ctx;
    CHECK(e->index > t->last_index);
    t->last_index = e->index;
    /* A ready is outstanding while apply runs: the node refuses new inputs. */
    if (t->node)
        CHECK_EQ(raft_node_propose(t->node, "x", 1, NULL, NULL), RC_EBUSY);
    if (e->type != RAFT_ENTRY_NORMAL)
        return 0;
    CHECK(t->n_applied < MAX_APPLIED);
    char *s = rc_malloc(e->len + 1);
    CHECK(s);
    memcpy(s, e->data, e->len);
    s[e->len] = '\0';
    t->applied[t->n_applied++] = s;
    return 0;
}

static void read_cb(void *ctx, uint64_t read_ctx)
{
    struct tnode *t = ctx;
    (void)read_ctx;
    t->reads_ready++;
}

static void state_cb(void *ctx, const struct raft_status *st)
{
    struct tnode *t = ctx;
    t->st = *st;
}

static void node_closed(void *ctx)
{
    struct tnode *t = ctx;
    t->closed = 1;
}

static void start_node(struct tnode *t, int port)
{
    struct raft_node_options o;
    raft_node_options_default(&o, t->id);
    o.cluster_id = 0xC0FFEE;
    o.dir = t->dir;
    char bind[64];
    snprintf(bind, sizeof bind, "127.0.0.1:%d", port);
    o.peer_bind = bind;
    o.tick_ms = 10;
    o.election_ticks = 10;
    o.heartbeat_ticks = 2;
    o.seed = t->id * 7919;
    /* The test keeps applied entries in memory only: a restarted node re-applies all. */
    for (size_t i = 0; i < t->n_applied; i++)
        rc_free(t->applied[i]);
    t->n_applied = 0;
    t->last_index = 0;
    struct raft_node_callbacks cb = {
        .apply = apply_cb, .read_ready = read_cb, .on_state = state_cb};
    CHECK_OK(raft_node_start(&loop, &o, &cb, t, &t->node));
    t->port = raft_node_port(t->node);
    t->closed = 0;
}

static void connect_all(void)
{
    for (int i = 0; i < N_NODES; i++) {
        if (!nodes[i].node)
            continue;
        for (int j = 0; j < N_NODES; j++) {
            if (i == j)
                continue;
            char addr[64];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", nodes[j].port);
            CHECK_OK(raft_node_set_peer(nodes[i].node, nodes[j].id, addr));
        }
    }
}

typedef int (*cond_fn)(void *arg);

static void run_until(cond_fn cond, void *arg, const char *what)
{
    uv_update_time(&loop);
    uint64_t deadline = uv_now(&loop) + DEADLINE_MS;
    while (!cond(arg)) {
        if (uv_now(&loop) > deadline)
            test_fail(__FILE__, __LINE__, "deadline passed waiting for %s", what);
        uv_run(&loop, UV_RUN_ONCE);
    }
}

/* The live node that leads, with every live node agreeing on it; NULL if none. */
static struct tnode *agreed_leader(void)
{
    struct tnode *leader = NULL;
    for (int i = 0; i < N_NODES; i++) {
        struct tnode *t = &nodes[i];
        if (!t->node)
            continue;
        struct raft_status st;
        raft_node_status(t->node, &st);
        if (st.role == RAFT_LEADER)
            leader = t;
    }
    if (!leader)
        return NULL;
    struct raft_status ls;
    raft_node_status(leader->node, &ls);
    for (int i = 0; i < N_NODES; i++) {
        struct raft_status st;
        if (!nodes[i].node)
            continue;
        raft_node_status(nodes[i].node, &st);
        if (st.leader != leader->id || st.term != ls.term)
            return NULL;
    }
    return leader;
}

static int have_leader(void *arg)
{
    (void)arg;
    return agreed_leader() != NULL;
}

static int all_applied(void *arg)
{
    size_t want = *(size_t *)arg;
    for (int i = 0; i < N_NODES; i++)
        if (nodes[i].node && nodes[i].n_applied < want)
            return 0;
    return 1;
}

static int node_closed_cond(void *arg)
{
    return ((struct tnode *)arg)->closed;
}

static int reads_at_least(void *arg)
{
    struct tnode *t = arg;
    return t->reads_ready >= 10;
}

static void stop_node(struct tnode *t)
{
    raft_node_close(t->node, node_closed, t);
    run_until(node_closed_cond, t, "node close");
    t->node = NULL;
}

static void propose_n(struct tnode *leader, int from, int count)
{
    for (int i = from; i < from + count; i++) {
        char data[32];
        int len = snprintf(data, sizeof data, "entry-%d", i);
        CHECK_OK(raft_node_propose(leader->node, data, (size_t)len, NULL, NULL));
    }
}

static void check_same_logs(size_t want)
{
    for (int i = 0; i < N_NODES; i++) {
        if (!nodes[i].node)
            continue;
        CHECK_EQ_U(nodes[i].n_applied, want);
        for (size_t k = 0; k < want; k++)
            CHECK_STR(nodes[i].applied[k],
                      nodes[0].node ? nodes[0].applied[k] : nodes[1].applied[k]);
    }
}

TEST(three_nodes_on_loopback_elect_replicate_fail_over_and_catch_up)
{
    CHECK_OK(uv_loop_init(&loop));
    uv_timer_init(&loop, &wake);
    uv_timer_start(&wake, on_wake, 5, 5);
    struct raft_config c = {.n_voters = N_NODES};
    for (int i = 0; i < N_NODES; i++) {
        nodes[i].id = (uint64_t)i + 1;
        c.voters[i] = nodes[i].id;
        snprintf(nodes[i].dir, sizeof nodes[i].dir, "%s/n%d", test_tmpdir(), i + 1);
    }
    for (int i = 0; i < N_NODES; i++) {
        CHECK_OK(raft_node_bootstrap(nodes[i].dir, &c));
        CHECK_EQ(raft_node_bootstrap(nodes[i].dir, &c), RC_EEXIST);
        start_node(&nodes[i], 0);
    }
    connect_all();

    run_until(have_leader, NULL, "a leader");
    struct tnode *leader = agreed_leader();
    /* A follower refuses proposals. */
    struct tnode *follower = leader == &nodes[0] ? &nodes[1] : &nodes[0];
    CHECK_EQ(raft_node_propose(follower->node, "x", 1, NULL, NULL), RC_EAGAIN);

    propose_n(leader, 0, 100);
    size_t want = 100;
    run_until(all_applied, &want, "100 entries applied everywhere");
    check_same_logs(100);
    CHECK_STR(leader->applied[99], "entry-99");

    /* Linearizable reads are confirmed by the leader. */
    for (uint64_t k = 0; k < 10; k++)
        CHECK_OK(raft_node_read_index(leader->node, k));
    run_until(reads_at_least, leader, "10 reads confirmed");

    /* Stop the leader: the other two elect a new one and go on. */
    struct raft_status old;
    raft_node_status(leader->node, &old);
    int old_port = leader->port;
    struct tnode *gone = leader;
    stop_node(gone);
    run_until(have_leader, NULL, "a new leader");
    leader = agreed_leader();
    CHECK(leader != gone);
    struct raft_status now;
    raft_node_status(leader->node, &now);
    CHECK(now.term > old.term);
    propose_n(leader, 100, 50);
    want = 150;
    run_until(all_applied, &want, "150 entries on the two live nodes");

    /* The old leader restarts from its files (same port) and catches up. */
    start_node(gone, old_port);
    connect_all();
    run_until(all_applied, &want, "the restarted node catching up");
    propose_n(leader, 150, 10);
    want = 160;
    run_until(all_applied, &want, "160 entries everywhere");
    check_same_logs(160);

    struct raft_node_stats ns;
    raft_node_stats(leader->node, &ns);
    CHECK(ns.fsyncs > 0);
    CHECK(ns.entries_applied >= 60);

    for (int i = 0; i < N_NODES; i++) {
        stop_node(&nodes[i]);
        for (size_t k = 0; k < nodes[i].n_applied; k++)
            rc_free(nodes[i].applied[k]);
    }
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_OK(uv_loop_close(&loop));
}

/* --recover on a node whose state machine holds entries past its log's end (a former
 * leader's store after a power failure): the log restarts after them. */
TEST(recover_starts_the_log_after_a_store_that_is_ahead)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/raft", test_tmpdir());
    struct raft_config c = {.n_voters = 3, .voters = {1, 2, 3}};
    CHECK_OK(raft_node_bootstrap(dir, &c));
    CHECK_OK(raft_node_recover(dir, 2, 0)); /* store behind: config at 2 */
    struct logstore *ls;
    CHECK_OK(logstore_open(dir, NULL, &ls));
    CHECK_EQ_U(logstore_first_index(ls), 1);
    CHECK_EQ_U(logstore_last_index(ls), 2);
    logstore_close(ls);
    CHECK_OK(raft_node_recover(dir, 2, 40)); /* store ahead: snapshot 40, config at 41 */
    CHECK_OK(logstore_open(dir, NULL, &ls));
    struct raft_snapshot_meta meta;
    logstore_snapshot_meta(ls, &meta);
    CHECK_EQ_U(meta.index, 40);
    CHECK_EQ_U(logstore_first_index(ls), 41);
    CHECK_EQ_U(logstore_last_index(ls), 41);
    struct raft_hard_state hs;
    logstore_hard_state(ls, &hs);
    CHECK_EQ_U(hs.vote, 2);
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft_entry e;
    size_t n;
    CHECK_OK(st.entries(st.ctx, 41, 42, (size_t)-1, &e, &n));
    CHECK_EQ_U(e.type, RAFT_ENTRY_CONFIG);
    CHECK_EQ_U(e.term, hs.term);
    struct raft_config got;
    CHECK_OK(raft_config_decode(e.data, e.len, &got));
    CHECK_EQ_U(got.n_voters, 1);
    CHECK_EQ_U(got.voters[0], 2);
    logstore_close(ls);
}

/*
 * test_raft_scenarios.c — the classic Raft situations, scripted on the simulator (with all of
 * its safety checks running after every step) or on a single core fed by hand.
 */
#include "raft_sim.h"

#include "raft/raft_int.h"

#define CHECK_CLEAN(s) CHECK_MSG(!(s)->violated, "violation: %s", (s)->violation)

static struct sim *new_quiet_sim(int n_nodes, uint64_t seed)
{
    struct sim_params p;
    sim_params_quiet(&p, n_nodes);
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &p, seed);
    return s;
}

static void free_sim(struct sim *s)
{
    sim_destroy(s);
    rc_free(s);
}

/* Proposes n writes on the leader and runs until they are all acknowledged. */
static void write_and_wait(struct sim *s, uint64_t leader, int n)
{
    uint64_t target = s->acked_count + (uint64_t)n;
    for (int i = 0; i < n; i++)
        CHECK(sim_propose_on(s, leader) != 0);
    for (int t = 0; t < 200 && s->acked_count < target && !s->violated; t++)
        sim_one_tick(s);
    CHECK_CLEAN(s);
    CHECK_EQ_U(s->acked_count, target);
}

/* ---------------------------------------------------------------- Figure 8 on one core */

struct lone {
    struct sim *s; /* only for its storage helpers and checks */
    struct sim_storage st;
    struct raft *r;
};

static void lone_ready(struct lone *l)
{
    while (raft_has_ready(l->r)) {
        struct raft_ready rd;
        CHECK_OK(raft_ready(l->r, &rd));
        if (rd.n_entries) {
            sim_st_truncate(&l->st, (size_t)(rd.entries[0].index - 1));
            for (size_t i = 0; i < rd.n_entries; i++)
                sim_st_append(l->s, &l->st, &rd.entries[i]);
        }
        sim_st_sync(&l->st);
        CHECK_OK(raft_advance(l->r, 0));
    }
}

static void lone_step(struct lone *l, uint8_t type, uint64_t from, uint64_t term, uint64_t index)
{
    struct raft_message m = {.type = type, .from = from, .to = 1, .term = term, .index = index};
    CHECK_OK(raft_step(l->r, &m));
    lone_ready(l);
}

/*
 * Figure 8 of the Raft paper, from the point of view of S1 re-elected in term 4 with an
 * entry of term 2 at index 2 that it replicates to a majority. Counting replicas must not
 * commit index 2 (a server with a term-3 entry at index 2 could still be elected and
 * overwrite it); only when S1's own term-4 entry at index 3 is on a majority do both commit.
 * With the commit_old_term_entries knob the same core commits index 2 too early.
 */
static uint64_t figure8_commit_after_old_term_acks(int broken)
{
    struct lone l;
    memset(&l, 0, sizeof l);
    l.s = rc_calloc(1, sizeof *l.s);
    struct raft_config c = {.n_voters = 5, .voters = {1, 2, 3, 4, 5}};
    struct raft_entry boot;
    CHECK_OK(raft_bootstrap_entry(&c, &boot));
    sim_st_append(l.s, &l.st, &boot);
    rc_free(boot.data);
    uint64_t body = 42;
    struct raft_entry old = {.term = 2, .index = 2, .len = 8, .data = &body};
    sim_st_append(l.s, &l.st, &old);
    sim_st_sync(&l.st);

    struct raft_options o;
    raft_options_default(&o, 1);
    o.knobs.commit_old_term_entries = broken;
    struct raft_storage ops = sim_storage_ops(&l.st);
    struct raft_hard_state hs = {.term = 3};
    CHECK_OK(raft_create(&o, &ops, &hs, &l.r));
    /* Time out, win the pre-vote and the vote of term 4 with S2 and S3. */
    for (int i = 0; i < 2 * o.election_ticks; i++) {
        CHECK_OK(raft_tick(l.r));
        lone_ready(&l);
    }
    struct raft_status st;
    raft_status(l.r, &st);
    CHECK_EQ(st.role, RAFT_PRE_CANDIDATE);
    struct raft_message grant = {.type = RAFT_MSG_PREVOTE_RESP, .to = 1, .term = 4};
    grant.from = 2;
    CHECK_OK(raft_step(l.r, &grant));
    grant.from = 3;
    CHECK_OK(raft_step(l.r, &grant));
    lone_ready(&l);
    raft_status(l.r, &st);
    CHECK_EQ(st.role, RAFT_CANDIDATE);
    CHECK_EQ_U(st.term, 4);
    lone_step(&l, RAFT_MSG_VOTE_RESP, 2, 4, 0);
    lone_step(&l, RAFT_MSG_VOTE_RESP, 3, 4, 0);
    raft_status(l.r, &st);
    CHECK_EQ(st.role, RAFT_LEADER);
    CHECK_EQ_U(st.last_index, 3); /* the no-op of term 4 */

    /* S2 and S3 acknowledge index 2 only: a majority stores the term-2 entry. */
    lone_step(&l, RAFT_MSG_APPEND_RESP, 2, 4, 2);
    lone_step(&l, RAFT_MSG_APPEND_RESP, 3, 4, 2);
    raft_status(l.r, &st);
    uint64_t commit_on_old_acks = st.commit;
    /* Then index 3: now the term-4 entry is on a majority and commits both. */
    lone_step(&l, RAFT_MSG_APPEND_RESP, 2, 4, 3);
    lone_step(&l, RAFT_MSG_APPEND_RESP, 3, 4, 3);
    raft_status(l.r, &st);
    CHECK_EQ_U(st.commit, 3);

    raft_destroy(l.r);
    sim_st_destroy(&l.st);
    sim_destroy(l.s);
    rc_free(l.s);
    return commit_on_old_acks;
}

TEST(figure8_leader_commits_old_term_entry_only_through_its_own)
{
    CHECK_EQ_U(figure8_commit_after_old_term_acks(0), 0);
    /* The knob really is the Figure 8 bug: it commits index 2 on the old-term acks. */
    CHECK_EQ_U(figure8_commit_after_old_term_acks(1), 2);
}

/* The messages of the core's next ready, taken and acknowledged (persisted) at once. */
static size_t lone_take(struct lone *l, struct raft_message *out, size_t cap)
{
    struct raft_ready rd;
    CHECK_OK(raft_ready(l->r, &rd));
    for (size_t i = 0; i < rd.n_entries; i++)
        sim_st_append(l->s, &l->st, &rd.entries[i]);
    sim_st_sync(&l->st);
    size_t n = rd.n_messages < cap ? rd.n_messages : cap;
    memcpy(out, rd.messages, n * sizeof *out);
    CHECK_OK(raft_advance(l->r, 0));
    return n;
}

static void lone_append(struct lone *l, uint64_t prev, uint64_t prev_term, uint64_t n)
{
    static uint64_t body = 7;
    struct raft_entry e[4];
    for (uint64_t i = 0; i < n; i++)
        e[i] = (struct raft_entry){.term = 2, .index = prev + 1 + i, .len = 8, .data = &body};
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .from = 2,
                             .to = 1,
                             .term = 2,
                             .log_index = prev,
                             .log_term = prev_term,
                             .entries = e,
                             .n_entries = (uint32_t)n};
    CHECK_OK(raft_step(l->r, &m));
}

/*
 * A follower that takes several appends in one ready answers the leader once, with the
 * highest index; a rejection in between keeps its place (and what follows it is sent on).
 */
TEST(follower_answers_appends_of_one_ready_once)
{
    struct lone l;
    memset(&l, 0, sizeof l);
    l.s = rc_calloc(1, sizeof *l.s);
    struct raft_config c = {.n_voters = 3, .voters = {1, 2, 3}};
    l.r = sim_hand_core(l.s, &l.st, &c, 1, NULL);

    lone_append(&l, 1, 1, 2); /* 2..3 */
    lone_append(&l, 3, 2, 1); /* 4 */
    lone_append(&l, 4, 2, 3); /* 5..7 */
    struct raft_message got[8];
    size_t n = lone_take(&l, got, 8);
    CHECK_EQ_U(n, 1);
    CHECK_EQ(got[0].type, RAFT_MSG_APPEND_RESP);
    CHECK_EQ_U(got[0].to, 2);
    CHECK_EQ(got[0].reject, 0);
    CHECK_EQ_U(got[0].index, 7);

    lone_append(&l, 7, 2, 1);  /* 8 */
    lone_append(&l, 20, 2, 1); /* a gap: rejected */
    lone_append(&l, 8, 2, 2);  /* 9..10 */
    lone_append(&l, 10, 2, 1); /* 11 */
    n = lone_take(&l, got, 8);
    CHECK_EQ_U(n, 3);
    CHECK(got[0].type == RAFT_MSG_APPEND_RESP && !got[0].reject && got[0].index == 8);
    CHECK(got[1].type == RAFT_MSG_APPEND_RESP && got[1].reject && got[1].index == 20);
    CHECK(got[2].type == RAFT_MSG_APPEND_RESP && !got[2].reject && got[2].index == 11);

    raft_destroy(l.r);
    sim_st_destroy(&l.st);
    sim_destroy(l.s);
    rc_free(l.s);
}

/* ---------------------------------------------------------------- Figure 7 */

/*
 * Figure 7: the leader of term 8 (node 1) and six followers with missing, extra and
 * conflicting entries. The leader must bring every log to its own, and fast backtracking
 * must do so in a few rejections per follower rather than one per entry.
 */
TEST(figure7_leader_repairs_every_follower_log)
{
    struct sim *s = new_quiet_sim(7, test_seed(7));
    /* Terms of indexes 2.. (index 1 is the bootstrap configuration of term 1). */
    static const uint64_t leader[] = {1, 1, 4, 4, 5, 5, 6, 6, 6};
    static const uint64_t a[] = {1, 1, 4, 4, 5, 5, 6, 6};
    static const uint64_t b[] = {1, 1, 4};
    static const uint64_t c[] = {1, 1, 4, 4, 5, 5, 6, 6, 6, 6};
    static const uint64_t d[] = {1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7};
    static const uint64_t e[] = {1, 1, 4, 4, 4, 4};
    static const uint64_t f[] = {1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
    sim_set_log(s, 1, leader, 9, 7);
    sim_set_log(s, 2, a, 8, 7);
    sim_set_log(s, 3, b, 3, 7);
    sim_set_log(s, 4, c, 10, 7);
    sim_set_log(s, 5, d, 11, 7);
    sim_set_log(s, 6, e, 6, 7);
    sim_set_log(s, 7, f, 10, 7);
    CHECK_CLEAN(s);
    /* c and d would win (their logs are newer): keep them away until node 1 leads. */
    sim_isolate(s, 4);
    sim_isolate(s, 5);
    /* Node 1 times out first: tick only it until it campaigns. */
    for (int i = 0; i < 40 && sim_find_leader(s) == 0; i++) {
        s->now++;
        raft_tick(s->nodes[1].r);
        sim_step_done(s, 1);
        sim_deliver_due(s);
    }
    CHECK_CLEAN(s);
    CHECK_EQ_U(sim_find_leader(s), 1);
    CHECK_EQ_U(sim_status(s, 1).term, 8);
    sim_heal_partitions(s);
    write_and_wait(s, 1, 1);
    sim_run_ticks(s, 20);
    CHECK_CLEAN(s);
    uint64_t all[] = {1, 2, 3, 4, 5, 6, 7};
    CHECK(sim_logs_equal(s, all, 7));
    /* 10 entries + the no-op of term 8 + the write. */
    CHECK_EQ_U(s->nodes[1].st.n, 12);
    CHECK_EQ_U(s->nodes[5].st.ents[10].e.term, 8); /* d's term-7 entries were replaced */
    if (getenv("SCENARIO_VERBOSE"))
        for (uint64_t id = 2; id <= 7; id++)
            printf("  node %llu: %llu rejections, %zu entries\n", (unsigned long long)id,
                   (unsigned long long)s->append_rejects[id], s->nodes[id].st.n);
    for (uint64_t id = 2; id <= 7; id++)
        CHECK_MSG(s->append_rejects[id] <= 4, "node %llu rejected %llu appends",
                  (unsigned long long)id, (unsigned long long)s->append_rejects[id]);
    free_sim(s);
}

/* ---------------------------------------------------------------- pre-vote */

static uint64_t run_disruptive_rejoin(int pre_vote, uint64_t *term_before, uint64_t *term_after)
{
    struct sim_params p;
    sim_params_quiet(&p, 3);
    p.pre_vote = pre_vote;
    p.check_quorum = pre_vote; /* the classic configuration without either */
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &p, test_seed(11));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 3);
    uint64_t outsider = leader == 3 ? 2 : 3;
    *term_before = sim_status(s, leader).term;
    sim_isolate(s, outsider);
    sim_run_ticks(s, 20 * p.election_ticks); /* it times out again and again */
    sim_heal_partitions(s);
    sim_run_ticks(s, 3 * p.election_ticks);
    CHECK_CLEAN(s);
    *term_after = sim_status(s, leader).term;
    uint64_t still = sim_find_leader(s);
    free_sim(s);
    return still == leader ? 1 : 0;
}

TEST(prevote_stops_disruptive_rejoining_server)
{
    uint64_t before, after;
    CHECK_EQ(run_disruptive_rejoin(1, &before, &after), 1);
    CHECK_EQ_U(after, before); /* nobody's term moved */
    /* Contrast: without pre-vote the returning server's inflated term deposes the leader. */
    CHECK_EQ(run_disruptive_rejoin(0, &before, &after), 0);
    CHECK(after > before);
}

/*
 * Pre-vote alone (no check-quorum, so no leader lease): a server that was cut off while the
 * others wrote, and now reaches the followers but cannot hear the leader (a one-way
 * partition), has a stale log, so its pre-votes are refused and it never raises its term.
 * With the skip_prevote_log_check knob the pre-vote passes, the real election at a higher
 * term fails on the log check, and the higher term still deposes the leader: the broken
 * variant is flagged by the leader changing.
 */
static int stale_server_deposes_leader(int broken)
{
    struct sim_params p;
    sim_params_quiet(&p, 3);
    p.check_quorum = 0;
    p.knobs.skip_prevote_log_check = broken;
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &p, test_seed(12));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    uint64_t outsider = leader == 3 ? 2 : 3;
    sim_isolate(s, outsider);
    write_and_wait(s, leader, 3); /* the outsider misses these */
    uint64_t term = sim_status(s, leader).term;
    /* The outsider's link comes back, except that it still cannot hear the leader. */
    sim_heal_partitions(s);
    s->blocked[leader][outsider] = 1;
    sim_run_ticks(s, 5 * p.election_ticks);
    CHECK_CLEAN(s);
    int deposed = sim_status(s, leader).term != term;
    free_sim(s);
    return deposed;
}

TEST(prevote_log_check_keeps_stale_server_out)
{
    CHECK_EQ(stale_server_deposes_leader(0), 0);
    CHECK_EQ(stale_server_deposes_leader(1), 1);
}

/* ---------------------------------------------------------------- check-quorum */

TEST(check_quorum_leader_steps_down_when_cut_off)
{
    struct sim *s = new_quiet_sim(3, test_seed(5));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 1);
    sim_isolate(s, leader);
    int ticks = 0;
    while (sim_status(s, leader).role == RAFT_LEADER && ticks < 100) {
        sim_one_tick(s);
        ticks++;
    }
    CHECK_CLEAN(s);
    /* It steps down within two election timeouts, though nobody told it. */
    CHECK(ticks <= 2 * s->p.election_ticks);
    CHECK_EQ(sim_status(s, leader).role, RAFT_FOLLOWER);
    /* The others elected a new leader meanwhile, and it serves writes. */
    sim_run_ticks(s, 3 * s->p.election_ticks);
    uint64_t other = sim_find_leader(s);
    CHECK(other != 0 && other != leader);
    write_and_wait(s, other, 1);
    free_sim(s);
}

/* ---------------------------------------------------------------- transfer */

TEST(transfer_to_a_lagging_node)
{
    struct sim *s = new_quiet_sim(3, test_seed(3));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    uint64_t target = leader == 1 ? 2 : 1;
    sim_isolate(s, target);
    write_and_wait(s, leader, 20); /* committed by the other two */
    CHECK(sim_status(s, target).last_index + 20 <= sim_status(s, leader).last_index);
    sim_heal_partitions(s);
    CHECK_OK(raft_transfer_leader(s->nodes[leader].r, target));
    /* While the transfer runs the leader refuses writes (they would delay it). */
    CHECK_EQ(raft_propose(s->nodes[leader].r, "x", 1, NULL, NULL), RC_EAGAIN);
    sim_step_done(s, leader);
    int ticks = 0;
    while (sim_find_leader(s) != target && ticks < s->p.election_ticks) {
        sim_one_tick(s);
        ticks++;
    }
    CHECK_CLEAN(s);
    CHECK_EQ_U(sim_find_leader(s), target);
    CHECK(sim_status(s, target).term > sim_status(s, leader).term - 1);
    write_and_wait(s, target, 1);
    free_sim(s);
}

/* ---------------------------------------------------------------- membership */

TEST(learner_promoted_while_a_voter_is_down)
{
    struct sim *s = new_quiet_sim(3, test_seed(4));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 5);
    uint64_t down = leader == 3 ? 2 : 3;
    sim_crash(s, down);
    CHECK_OK(raft_change_membership(s->nodes[leader].r, RAFT_ADD_LEARNER, 4));
    sim_start(s, 4);
    sim_step_done(s, leader);
    /* Promotion waits until the learner holds every committed entry. */
    int rc = RC_EAGAIN;
    for (int t = 0; t < 100 && rc != 0; t++) {
        sim_one_tick(s);
        rc = raft_change_membership(s->nodes[leader].r, RAFT_PROMOTE, 4);
    }
    CHECK_OK(rc);
    sim_step_done(s, leader);
    sim_run_ticks(s, 5);
    struct raft_status st = sim_status(s, leader);
    CHECK_EQ_U(st.config.n_voters, 4);
    CHECK(raft_config_has_voter(&st.config, 4));
    /* Four voters, one down: three (leader, the other, the new one) still commit. */
    write_and_wait(s, leader, 5);
    sim_start(s, down);
    sim_run_ticks(s, 30);
    CHECK_CLEAN(s);
    CHECK_EQ_U(sim_status(s, down).commit, sim_status(s, leader).commit);
    free_sim(s);
}

/*
 * A learner whose first probe is lost (in raftcask: sent before the transport knew its
 * address) must still be caught up on an idle cluster: the heartbeat answers that follow
 * have to trigger a new probe, even though the leader has no new entry to send.
 */
TEST(learner_caught_up_when_its_first_probe_is_lost)
{
    struct sim *s = new_quiet_sim(3, test_seed(5));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 5);
    s->blocked[leader][4] = 1;
    CHECK_OK(raft_change_membership(s->nodes[leader].r, RAFT_ADD_LEARNER, 4));
    sim_start(s, 4);
    sim_step_done(s, leader);
    sim_run_ticks(s, 10);
    s->blocked[leader][4] = 0;
    sim_run_ticks(s, 50);
    CHECK_CLEAN(s);
    CHECK_EQ_U(sim_status(s, 4).last_index, sim_status(s, leader).last_index);
    free_sim(s);
}

/* Steps n heartbeat answers from node `from` into a lone leader of term 2; returns how
 * many appends its readies then send to that node. */
static int lone_heartbeat_answers(struct lone *l, uint64_t from, int n)
{
    int appends = 0;
    for (int i = 0; i < n; i++) {
        struct raft_message m = {.type = RAFT_MSG_HEARTBEAT_RESP, .from = from, .to = 1, .term = 2};
        CHECK_OK(raft_step(l->r, &m));
        struct raft_message got[8];
        size_t k = raft_has_ready(l->r) ? lone_take(l, got, 8) : 0;
        for (size_t j = 0; j < k; j++)
            appends += got[j].type == RAFT_MSG_APPEND && got[j].to == from;
    }
    return appends;
}

/*
 * A burst of heartbeat answers (the heartbeats a transport queued while a follower was
 * down, delivered when it returns) sets off at most one probe per periodic heartbeat, and
 * counts as one stalled heartbeat, not many. Acting on each answer, a leader sent 79
 * appends of 1 MiB in a row to a returning follower, stopped answering for 0.4-0.8 s and
 * was deposed; and three answers in a burst sent a replicating follower back to probing.
 */
TEST(a_burst_of_heartbeat_answers_sets_off_one_probe)
{
    struct lone l;
    memset(&l, 0, sizeof l);
    l.s = rc_calloc(1, sizeof *l.s);
    l.r = sim_hand_leader(l.s, &l.st);            /* its no-op is index 2 */
    lone_step(&l, RAFT_MSG_APPEND_RESP, 2, 2, 2); /* node 2 replicates; node 3 is silent */
    uint64_t index, term;
    CHECK_OK(raft_propose(l.r, "x", 1, &index, &term));
    lone_ready(&l); /* index 3 goes to node 2; node 3's probe is still outstanding */

    /* No periodic heartbeat since the election: a burst changes nothing. */
    CHECK_EQ(lone_heartbeat_answers(&l, 3, 30), 0);
    CHECK_EQ(lone_heartbeat_answers(&l, 2, 30), 0);
    /* One periodic heartbeat: one probe to node 3, and node 2 keeps replicating. */
    CHECK_OK(raft_tick(l.r));
    lone_ready(&l);
    CHECK_EQ(lone_heartbeat_answers(&l, 3, 30), 1);
    CHECK_EQ(lone_heartbeat_answers(&l, 2, 30), 0);
    CHECK_OK(raft_propose(l.r, "y", 1, &index, &term));
    struct raft_message got[8];
    size_t k = lone_take(&l, got, 8);
    int to_2 = 0;
    for (size_t j = 0; j < k; j++)
        to_2 += got[j].type == RAFT_MSG_APPEND && got[j].to == 2 && got[j].n_entries == 1 &&
                got[j].log_index == 3;
    CHECK_EQ(to_2, 1); /* streamed at once, not held back by a probe */

    raft_destroy(l.r);
    sim_st_destroy(&l.st);
    sim_destroy(l.s);
    rc_free(l.s);
}

TEST(leader_removes_itself_then_steps_down)
{
    struct sim *s = new_quiet_sim(3, test_seed(6));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 2);
    CHECK_OK(raft_change_membership(s->nodes[leader].r, RAFT_REMOVE, leader));
    sim_step_done(s, leader);
    sim_run_ticks(s, 5);
    CHECK(sim_status(s, leader).role != RAFT_LEADER);
    uint64_t next = sim_wait_leader(s, 100);
    CHECK(next != 0 && next != leader);
    CHECK_EQ_U(sim_status(s, next).config.n_voters, 2);
    write_and_wait(s, next, 2);
    /* The removed server never campaigns: terms stay put. */
    uint64_t term = sim_status(s, next).term;
    sim_run_ticks(s, 10 * s->p.election_ticks);
    CHECK_CLEAN(s);
    CHECK_EQ_U(sim_status(s, next).term, term);
    free_sim(s);
}

/* ---------------------------------------------------------------- disk failure */

TEST(leader_whose_disk_fails_stops_leading)
{
    struct sim *s = new_quiet_sim(3, test_seed(8));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 2);
    s->p.disk_fail_pml = 1000; /* the next write fails */
    CHECK(sim_propose_on(s, leader) != 0);
    s->p.disk_fail_pml = 0;
    CHECK_EQ(sim_status(s, leader).role, RAFT_FAILED);
    CHECK_EQ(raft_propose(s->nodes[leader].r, "x", 1, NULL, NULL), RC_ECLOSED);
    uint64_t next = sim_wait_leader(s, 100);
    CHECK(next != 0 && next != leader);
    write_and_wait(s, next, 1);
    free_sim(s);
}

/* ---------------------------------------------------------------- deferred leader sync */

/* Completes a sync of node id that began at point p (sim_finish_sync's model of node.c). */
static void finish_sync_at(struct sim *s, uint64_t id, const struct raft_sync_point *p)
{
    s->nodes[id].sync_busy = 1;
    s->nodes[id].sync_at = *p;
    sim_finish_sync(s, id);
    CHECK_CLEAN(s);
}

/*
 * node.c's deferred leader persistence: the followers commit a leader's entries while its
 * own copy is only written (and it applies them); its sync then counts them. A sync point
 * taken before a synchronous persist — here: the leader is cut off with entries of its own,
 * truncated by the next leader, and re-elected, and writes new entries at the same indexes —
 * must not count those new entries when it completes (raft_synced's epoch).
 */
TEST(deferred_leader_sync_and_a_stale_sync_point)
{
    struct sim_params prm;
    sim_params_quiet(&prm, 3);
    prm.async_leader = SIM_ASYNC_ALWAYS; /* no sync begins but at once when needed, or here */
    prm.lazy_commit_ticks = 1000;        /* node.c writes a commit-only hard state once a second */
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &prm, test_seed(9));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    write_and_wait(s, leader, 3);
    write_and_wait(s, leader, 3);
    struct raft_status st = sim_status(s, leader);
    CHECK_EQ_U(st.commit, st.last_index);
    CHECK(st.stable_index < st.last_index); /* committed by the followers' copies alone */
    CHECK_EQ_U(s->nodes[leader].applied, st.last_index);
    struct raft_sync_point p;
    CHECK(raft_sync_point(s->nodes[leader].r, &p));
    finish_sync_at(s, leader, &p);
    CHECK_EQ_U(sim_status(s, leader).stable_index, st.last_index);

    /* Cut off, the leader writes five entries nobody else gets, and takes a sync point. */
    uint64_t base = st.last_index;
    sim_isolate(s, leader);
    for (int i = 0; i < 5; i++)
        CHECK(sim_propose_on(s, leader) != 0);
    struct raft_sync_point stale;
    CHECK(raft_sync_point(s->nodes[leader].r, &stale));
    CHECK_EQ_U(stale.index, base + 5);
    uint64_t other = 0;
    for (int t = 0; t < 200 && ((other = sim_find_leader(s)) == 0 || other == leader); t++)
        sim_one_tick(s);
    CHECK(other != 0 && other != leader);
    sim_heal_partitions(s);
    s->p.async_leader = 0; /* back as leader: its first writes are synced at once */
    for (int t = 0; t < 50 && sim_status(s, leader).last_index != sim_status(s, other).last_index;
         t++)
        sim_one_tick(s);
    CHECK_EQ_U(sim_status(s, leader).last_index, base + 1); /* five cut to the new no-op */
    CHECK_OK(raft_transfer_leader(s->nodes[other].r, leader));
    sim_step_done(s, other);
    for (int t = 0; t < 100 && sim_find_leader(s) != leader; t++)
        sim_one_tick(s);
    CHECK_EQ_U(sim_find_leader(s), leader);
    write_and_wait(s, leader, 1);
    uint64_t durable = sim_status(s, leader).stable_index;
    CHECK(durable < stale.index);

    /* New deferred entries at the indexes the stale point covered. */
    s->p.async_leader = SIM_ASYNC_ALWAYS;
    for (int i = 0; i < 4; i++)
        CHECK(sim_propose_on(s, leader) != 0);
    st = sim_status(s, leader);
    CHECK(st.last_index >= stale.index);
    CHECK_EQ_U(st.stable_index, durable);
    finish_sync_at(s, leader, &stale);
    CHECK_EQ_U(sim_status(s, leader).stable_index, durable); /* ignored */
    CHECK(raft_sync_point(s->nodes[leader].r, &p));
    finish_sync_at(s, leader, &p);
    CHECK_EQ_U(sim_status(s, leader).stable_index, st.last_index);
    sim_run_ticks(s, 20);
    CHECK_CLEAN(s);
    free_sim(s);
}

/* ---------------------------------------------------------------- ReadIndex */

/* The follower a read round's heartbeat went to, checking that exactly one left. */
static uint64_t round_heartbeat_target(struct raft *r, size_t from_msg)
{
    uint64_t to = 0;
    int n = 0;
    for (size_t i = from_msg; i < r->n_msgs; i++)
        if (r->msgs[i].type == RAFT_MSG_HEARTBEAT && r->msgs[i].ctx == r->read_round) {
            to = r->msgs[i].to;
            n++;
        }
    CHECK_EQ(n, 1);
    return to;
}

/* Queues a read on the leader and tells the simulator to check it when served. */
static void sim_read(struct sim *s, uint64_t leader, uint64_t ctx)
{
    CHECK_OK(raft_read_index(s->nodes[leader].r, ctx));
    s->reads = sim_grow(s->reads, &s->cap_reads, s->n_reads + 1, sizeof *s->reads);
    s->reads[s->n_reads++] = (struct sim_read){leader, ctx, s->max_acked_index, 0, 0};
}

/* A quiet 3-node simulation whose leader (in *leader) has committed one write. */
static struct sim *sim_with_leader(uint64_t seed, uint64_t *leader)
{
    struct sim *s = new_quiet_sim(3, seed);
    *leader = sim_wait_leader(s, 100);
    CHECK(*leader != 0);
    write_and_wait(s, *leader, 1);
    return s;
}

TEST(read_index_batches_reads_into_one_round)
{
    uint64_t leader;
    struct sim *s = sim_with_leader(test_seed(9), &leader);
    struct raft *r = s->nodes[leader].r;
    uint64_t round_before = r->read_round;
    for (uint64_t ctx = 1; ctx <= 10; ctx++)
        sim_read(s, leader, ctx);
    /* One round covers every read waiting when it started. */
    CHECK_EQ_U(r->read_round, round_before + 1);
    uint64_t served = s->reads_served;
    sim_step_done(s, leader);
    sim_run_ticks(s, 5);
    CHECK_CLEAN(s);
    CHECK_EQ_U(s->reads_served, served + 10);
    /* A follower refuses: it cannot know the commit index. */
    uint64_t follower = leader == 1 ? 2 : 1;
    CHECK_EQ(raft_read_index(s->nodes[follower].r, 99), RC_EAGAIN);
    free_sim(s);
}

/*
 * A round asks only quorum - 1 followers (here one of two), preferring the one that answered
 * the latest round; when it does not answer, the periodic heartbeat to every follower
 * confirms the round, and the next round asks the follower that answered.
 */
TEST(read_round_asks_one_follower_and_falls_back_to_heartbeats)
{
    uint64_t leader;
    struct sim *s = sim_with_leader(test_seed(10), &leader);
    struct raft *r = s->nodes[leader].r;
    uint64_t served = s->reads_served;
    size_t before = r->n_msgs;
    sim_read(s, leader, 1);
    uint64_t asked = round_heartbeat_target(r, before);
    sim_step_done(s, leader);
    sim_run_ticks(s, 1);
    CHECK_EQ_U(s->reads_served, served + 1);
    /* The same follower is asked again (it answered the last round); now it is cut off. */
    s->blocked[leader][asked] = 1;
    before = r->n_msgs;
    sim_read(s, leader, 2);
    CHECK_EQ_U(round_heartbeat_target(r, before), asked);
    sim_step_done(s, leader);
    sim_run_ticks(s, 1);
    CHECK_EQ_U(s->reads_served, served + 1); /* waiting for the periodic heartbeat */
    sim_run_ticks(s, s->p.heartbeat_ticks + 2);
    CHECK_CLEAN(s);
    CHECK_EQ_U(s->reads_served, served + 2);
    /* The other follower answered the latest round: the next round asks it. */
    before = r->n_msgs;
    sim_read(s, leader, 3);
    uint64_t other = round_heartbeat_target(r, before);
    CHECK(other != asked && other != leader);
    sim_step_done(s, leader);
    sim_run_ticks(s, 1);
    CHECK_CLEAN(s);
    CHECK_EQ_U(s->reads_served, served + 3);
    free_sim(s);
}

/* ---------------------------------------------------------------- snapshots */

/*
 * A follower that was down needs entries the leader compacted away, so it is streamed the
 * snapshot in small chunks. It crashes halfway (unsynced chunks may be lost) and restarts;
 * the transfer resumes from what it holds durably — not from zero — and it ends with the
 * snapshot installed and the rest of the log.
 */
TEST(snapshot_to_follower_that_restarts_halfway)
{
    struct sim_params p;
    sim_params_quiet(&p, 3);
    p.compact_every = 10;
    p.snapshot_chunk_bytes = 32; /* four applied entries per chunk */
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &p, test_seed(13));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    uint64_t follower = leader == 3 ? 2 : 3;
    sim_crash(s, follower);
    write_and_wait(s, leader, 60);
    CHECK(s->nodes[leader].st.base >= 40); /* the leader compacted */
    sim_start(s, follower);
    /* Run until the follower holds part of the snapshot. */
    struct sim_storage *fst = &s->nodes[follower].st;
    for (int t = 0; t < 200 && fst->in_durable < 3 * 32; t++)
        sim_one_tick(s);
    CHECK_CLEAN(s);
    CHECK(fst->in_durable >= 3 * 32);
    CHECK_EQ_U(fst->base, 0); /* not installed yet */
    sim_crash(s, follower);
    uint64_t held = fst->in_durable;
    CHECK(held > 0);
    sim_start(s, follower);
    sim_run_ticks(s, 100);
    CHECK_CLEAN(s);
    /* Resumed where it stopped, and installed. */
    CHECK_EQ_U(s->nodes[follower].first_chunk_offset, held);
    CHECK(fst->base >= 40);
    CHECK_EQ_U(sim_status(s, follower).commit, sim_status(s, leader).commit);
    CHECK_EQ_U(sim_status(s, follower).applied, sim_status(s, leader).applied);
    write_and_wait(s, leader, 3);
    free_sim(s);
}

/* A transfer restarts cleanly when the leader's snapshot is replaced midway. */
TEST(snapshot_transfer_restarts_when_leader_compacts_again)
{
    struct sim_params p;
    sim_params_quiet(&p, 3);
    p.compact_every = 10;
    p.snapshot_chunk_bytes = 16;
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &p, test_seed(14));
    uint64_t leader = sim_wait_leader(s, 100);
    CHECK(leader != 0);
    uint64_t follower = leader == 3 ? 2 : 3;
    sim_crash(s, follower);
    write_and_wait(s, leader, 40);
    uint64_t first_base = s->nodes[leader].st.base;
    sim_start(s, follower);
    struct sim_storage *fst = &s->nodes[follower].st;
    for (int t = 0; t < 200 && fst->in_len < 2 * 16; t++)
        sim_one_tick(s);
    CHECK(fst->in_len >= 2 * 16 && fst->base == 0);
    /* More writes: the leader compacts again and the old snapshot is gone. */
    write_and_wait(s, leader, 30);
    CHECK(s->nodes[leader].st.base > first_base);
    sim_run_ticks(s, 200);
    CHECK_CLEAN(s);
    CHECK(fst->base > first_base);
    CHECK(s->nodes[follower].snapshot_restarts >= 1);
    CHECK_EQ_U(sim_status(s, follower).applied, sim_status(s, leader).applied);
    free_sim(s);
}

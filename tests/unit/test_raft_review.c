/*
 * test_raft_review.c — scenarios from an independent review of the Raft core: each pins a
 * rule that the random simulator did not catch when the rule was removed (Ongaro's 2015
 * single-server-change bug, a follower's commit capped by the last new entry, and a read
 * arriving mid-round waiting for the next round).
 */
#include "raft_sim.h"

#include "raft/raft_int.h"

static void block_both(struct sim *s, uint64_t a, uint64_t b)
{
    s->blocked[a][b] = 1;
    s->blocked[b][a] = 1;
}

/*
 * Ongaro's 2015 single-server-change bug, on the simulator:
 * voters {A,B,C,D} + learner E. A promotes E (C1 = {A..E}) but only E gets it. B/C/D elect X;
 * V (who voted for X) is cut before it gets any entry of X's term. X immediately proposes
 * C2 = remove A (needs the own-term-commit rule to be refused). With C2 = {B,C,D}, X and Y
 * commit it. Then A (+E, +V) elects itself under C1 and commits C1 over X's committed entries.
 * Returns 0: preconditions not met (try another seed); 1: change refused; 2: violation seen;
 * 3: change accepted but no violation.
 */
static int membership_2015(uint64_t seed, char *why, size_t why_len)
{
    struct sim_params p;
    sim_params_quiet(&p, 4);
    struct sim *s = rc_calloc(1, sizeof *s);
    sim_init(s, &p, seed);
    int result = 0;
    uint64_t A = sim_wait_leader(s, 200), E = 5;
    if (!A)
        goto out;
    for (int i = 0; i < 3; i++)
        sim_propose_on(s, A);
    sim_run_ticks(s, 20);
    if (raft_change_membership(s->nodes[A].r, RAFT_ADD_LEARNER, E) != 0)
        goto out;
    sim_start(s, E);
    sim_step_done(s, A);
    for (int t = 0; t < 200; t++) {
        sim_one_tick(s);
        struct raft_status st = sim_status(s, A);
        uint64_t m = 0;
        if (st.role == RAFT_LEADER && st.config_index <= st.commit &&
            raft_peer_match(s->nodes[A].r, E, &m) == 0 && m >= st.commit && m == st.last_index)
            break;
    }
    uint64_t others[3];
    int k = 0;
    for (uint64_t id = 1; id <= 4; id++)
        if (id != A)
            others[k++] = id;
    for (int i = 0; i < 3; i++) {
        block_both(s, A, others[i]);
        block_both(s, E, others[i]);
    }
    if (raft_change_membership(s->nodes[A].r, RAFT_PROMOTE, E) != 0)
        goto out;
    sim_step_done(s, A);
    sim_run_ticks(s, 3);
    if (sim_status(s, E).last_index != sim_status(s, A).last_index)
        goto out;
    /* Wait for X among the others; V must have no entry of X's term. */
    uint64_t X = 0, V = 0, Y = 0;
    for (int t = 0; t < 400 && !X; t++) {
        sim_one_tick(s);
        for (int i = 0; i < 3; i++)
            if (sim_status(s, others[i]).role == RAFT_LEADER)
                X = others[i];
    }
    if (!X)
        goto out;
    struct raft_status xs = sim_status(s, X);
    for (int i = 0; i < 3; i++) {
        if (others[i] == X)
            continue;
        struct raft_status os = sim_status(s, others[i]);
        if (!V && os.last_term < xs.term)
            V = others[i];
        else
            Y = others[i];
    }
    if (!V || !Y)
        goto out;
    for (uint64_t id = 1; id <= 5; id++)
        if (id != V)
            block_both(s, V, id);
    int rc = raft_change_membership(s->nodes[X].r, RAFT_REMOVE, A);
    if (rc != 0) {
        snprintf(why, why_len, "X=%llu refused C2: rc %d", (unsigned long long)X, rc);
        result = 1;
        goto out;
    }
    sim_step_done(s, X);
    for (int t = 0; t < 100; t++) {
        sim_one_tick(s);
        struct raft_status st = sim_status(s, X);
        if (st.config_index <= st.commit)
            break;
    }
    /* X and Y go away; A, E and V meet. */
    memset(s->blocked, 0, sizeof s->blocked);
    uint64_t side1[] = {X, Y}, side2[] = {A, E, V};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            block_both(s, side1[i], side2[j]);
    sim_run_ticks(s, 600);
    if (s->violated) {
        snprintf(why, why_len, "%s", s->violation);
        result = 2;
    } else {
        result = 3;
    }
out:
    sim_destroy(s);
    rc_free(s);
    return result;
}

TEST(review_membership_change_on_uncommitted_foreign_change)
{
    char why[600] = "";
    int tried = 0, got = 0;
    for (uint64_t seed = 1; seed < 400 && !got; seed++) {
        int r = membership_2015(seed, why, sizeof why);
        if (r == 0)
            continue;
        tried++;
        printf("  seed %llu: result %d %s\n", (unsigned long long)seed, r, why);
        CHECK_MSG(r == 1, "seed %llu: %s", (unsigned long long)seed, why);
        if (tried >= 5)
            got = 1;
    }
    CHECK(tried > 0);
}

/*
 * Follower commit after an append that matches but is followed by a stale suffix: leader of
 * term 3 (log 1:t1 2:t1 3:t3, commit 3) probes with only entry 2 (size-capped batch). The
 * follower (1:t1 2:t1 3:t2) must commit 2, not its stale 3.
 */
TEST(review_follower_commit_capped_by_last_new_entry)
{
    struct sim *s = rc_calloc(1, sizeof *s);
    struct sim_storage st;
    memset(&st, 0, sizeof st);
    struct raft_config c = {.n_voters = 3, .voters = {1, 2, 3}};
    struct raft_entry boot;
    CHECK_OK(raft_bootstrap_entry(&c, &boot));
    sim_st_append(s, &st, &boot);
    uint64_t b2 = 2, b3 = 3;
    struct raft_entry e2 = {.term = 1, .index = 2, .len = 8, .data = &b2};
    struct raft_entry e3 = {.term = 2, .index = 3, .len = 8, .data = &b3};
    sim_st_append(s, &st, &e2);
    sim_st_append(s, &st, &e3);
    sim_st_sync(&st);
    struct raft_options o;
    raft_options_default(&o, 1);
    struct raft_storage ops = sim_storage_ops(&st);
    struct raft_hard_state hs = {.term = 2};
    struct raft *r;
    CHECK_OK(raft_create(&o, &ops, &hs, &r));
    struct raft_entry send = e2;
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .from = 2,
                             .to = 1,
                             .term = 3,
                             .log_index = 1,
                             .log_term = 1,
                             .commit = 3,
                             .entries = &send,
                             .n_entries = 1};
    CHECK_OK(raft_step(r, &m));
    struct raft_status rs;
    raft_status(r, &rs);
    CHECK_EQ_U(rs.commit, 2);
    raft_destroy(r);
    rc_free(boot.data);
    sim_st_destroy(&st);
    sim_destroy(s);
    rc_free(s);
}

struct lone2 {
    struct sim *s;
    struct sim_storage st;
    struct raft *r;
    uint64_t confirmed[16];
    int n_confirmed;
};

static void l2_ready(struct lone2 *l)
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
        for (size_t i = 0; i < rd.n_read_states; i++)
            l->confirmed[l->n_confirmed++] = rd.read_states[i].ctx;
        CHECK_OK(raft_advance(l->r, 0));
    }
}

static void l2_step(struct lone2 *l, uint8_t type, uint64_t from, uint64_t term, uint64_t index,
                    uint64_t ctx)
{
    struct raft_message m = {
        .type = type, .from = from, .to = 1, .term = term, .index = index, .ctx = ctx};
    CHECK_OK(raft_step(l->r, &m));
    l2_ready(l);
}

/*
 * A read that arrives while round 1 is in flight must not be confirmed by round-1 answers:
 * those may have been sent before the read arrived (before a newer leader committed writes).
 */
TEST(review_read_arriving_mid_round_waits_for_next_round)
{
    struct lone2 l;
    memset(&l, 0, sizeof l);
    l.s = rc_calloc(1, sizeof *l.s);
    l.r = sim_hand_leader(l.s, &l.st);
    struct raft_status st;
    raft_status(l.r, &st);
    l2_step(&l, RAFT_MSG_APPEND_RESP, 2, 2, st.last_index, 0);
    raft_status(l.r, &st);
    CHECK_EQ_U(st.commit, st.last_index);
    CHECK_OK(raft_read_index(l.r, 101)); /* round 1 starts, heartbeats ctx=1 out */
    l2_ready(&l);
    /* ... followers answer round 1, then elect someone else who commits a write ... */
    CHECK_OK(raft_read_index(l.r, 102)); /* arrives after that write was acknowledged */
    l2_ready(&l);
    l2_step(&l, RAFT_MSG_HEARTBEAT_RESP, 2, 2, 0, 1); /* the delayed round-1 answer */
    CHECK_EQ(l.n_confirmed, 1);
    CHECK_EQ_U(l.confirmed[0], 101);
    raft_destroy(l.r);
    sim_st_destroy(&l.st);
    sim_destroy(l.s);
    rc_free(l.s);
}

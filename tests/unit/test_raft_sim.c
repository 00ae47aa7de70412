/*
 * test_raft_sim.c — the deterministic simulation of src/raft (see raft_sim.h).
 *
 *   build/san/tests/test_raft_sim sim_many        6 x SIM_SEEDS seeds (default 6 x 500)
 *                                                 from SIM_FIRST_SEED (default 1)
 *   build/san/tests/test_raft_sim sim_early       SIM_EARLY_SEEDS seeds (default 1000) with
 *                                                 node.c's caller: early leader sends, lazy
 *                                                 commit-only hard states, batched readies
 *   TEST_SEED=n build/san/tests/test_raft_sim     replays seed n verbosely (SIM_VERBOSE=1)
 *
 * A failing seed prints its number and the violation; TEST_SEED replays it exactly.
 */
#include "raft_sim.h"

static long env_long(const char *name, long fallback)
{
    const char *v = getenv(name);
    return v ? strtol(v, NULL, 0) : fallback;
}

static void run_seeds_tweaked(uint64_t first, long count, const struct raft_testing_knobs *knobs,
                              void (*tweak)(struct sim_params *p));

static void run_seeds(uint64_t first, long count, const struct raft_testing_knobs *knobs)
{
    run_seeds_tweaked(first, count, knobs, NULL);
}

static void run_seeds_tweaked(uint64_t first, long count, const struct raft_testing_knobs *knobs,
                              void (*tweak)(struct sim_params *p))
{
    const char *replay = getenv("TEST_SEED");
    if (replay) {
        first = strtoull(replay, NULL, 0);
        count = 1;
    }
    struct sim *s = rc_calloc(1, sizeof *s);
    uint64_t early_sent = 0, lazy_skips = 0, early_crashes = 0, batched = 0, skipped = 0, ahead = 0;
    uint64_t unsynced = 0, async_syncs = 0, applied_unsynced = 0, skips_checked = 0, past_log = 0;
    uint64_t elections = 0, acked = 0, reads = 0, crashes = 0, disk = 0, truncated = 0, changes = 0,
             transfers = 0, compactions = 0, chunks = 0, installs = 0, trailing = 0;
    for (long i = 0; i < count; i++) {
        uint64_t seed = first + (uint64_t)i;
        struct sim_params p;
        sim_params_for_seed(seed, &p);
        if (knobs)
            p.knobs = *knobs;
        if (tweak)
            tweak(&p);
        p.verbose = (int)env_long("SIM_VERBOSE", 0);
        if (sim_run(&p, seed, s)) {
            fprintf(stderr, "  seed %llu: %s\n  replay: TEST_SEED=%llu %s\n",
                    (unsigned long long)seed, s->violation, (unsigned long long)seed,
                    tweak ? "build/san/tests/test_raft_sim sim_early_replication_sends_are_safe"
                          : "build/san/tests/test_raft_sim sim_many_seeds_0");
            sim_destroy(s);
            rc_free(s);
            CHECK_MSG(0, "simulation violated a Raft property (seed %llu)",
                      (unsigned long long)seed);
        }
        elections += s->elections;
        acked += s->acked_count;
        reads += s->reads_served;
        crashes += s->crashes;
        disk += s->disk_failures;
        truncated += s->truncated_entries;
        changes += s->membership_changes;
        transfers += s->transfers;
        compactions += s->compactions;
        chunks += s->snapshot_chunks;
        installs += s->snapshots_installed;
        trailing += s->trailing_appends;
        early_sent += s->early_sent;
        lazy_skips += s->lazy_commit_skips;
        early_crashes += s->early_crashes;
        batched += s->batched_steps;
        skipped += s->snapshot_installs_skipped;
        ahead += s->store_ahead_starts;
        unsynced += s->unsynced_readies;
        async_syncs += s->async_syncs;
        applied_unsynced += s->applied_unsynced;
        skips_checked += s->store_skips_checked;
        past_log += s->store_ahead_of_log_starts;
        sim_destroy(s);
    }
    rc_free(s);
    printf("  %ld seeds from %llu: %llu elections, %llu writes acknowledged, %llu reads "
           "served, %llu crashes, %llu disk failures, %llu stored entries truncated, %llu "
           "membership changes, %llu transfers, %llu compactions, %llu snapshot chunks, %llu "
           "snapshots installed, %llu appends from entries kept before a snapshot\n",
           count, (unsigned long long)first, (unsigned long long)elections,
           (unsigned long long)acked, (unsigned long long)reads, (unsigned long long)crashes,
           (unsigned long long)disk, (unsigned long long)truncated, (unsigned long long)changes,
           (unsigned long long)transfers, (unsigned long long)compactions,
           (unsigned long long)chunks, (unsigned long long)installs, (unsigned long long)trailing);
    if (tweak)
        printf("  early sends: %llu messages sent before fsync, %llu crashes before the fsync "
               "of such a ready, %llu commit-only hard states left unwritten, %llu messages "
               "batched into a later ready\n"
               "  async leader: %llu readies written without fsync, %llu fsyncs completed "
               "later, %llu entries applied before the own copy was durable, %llu entries "
               "skipped as held by the store (checked equal)\n"
               "  lazy store: %llu starts with the store past the commit on disk (%llu past "
               "the log's end), %llu snapshot installs skipped (store held the index)\n",
               (unsigned long long)early_sent, (unsigned long long)early_crashes,
               (unsigned long long)lazy_skips, (unsigned long long)batched,
               (unsigned long long)unsynced, (unsigned long long)async_syncs,
               (unsigned long long)applied_unsynced, (unsigned long long)skips_checked,
               (unsigned long long)ahead, (unsigned long long)past_log,
               (unsigned long long)skipped);
    /* The run must have exercised what it claims to check. */
    CHECK(acked > 0 && reads > 0 && elections > 0);
    if (tweak && count >= 300)
        CHECK(unsynced > 0 && async_syncs > 0 && applied_unsynced > 0 && skips_checked > 0);
    if (count >= 300)
        CHECK(crashes > 0 && disk > 0 && truncated > 0 && changes > 0 && transfers > 0 &&
              compactions > 0 && installs > 0 && trailing > 0);
}

/*
 * The seeds are split over several tests so that each stays well inside the harness's
 * per-test deadline on a busy machine. SIM_SEEDS sets the count per test.
 */
#define SIM_SEED_TEST(part)                                                                        \
    TEST(sim_many_seeds_##part)                                                                    \
    {                                                                                              \
        long count = env_long("SIM_SEEDS", 500);                                                   \
        run_seeds((uint64_t)env_long("SIM_FIRST_SEED", 1) + (uint64_t)((part)*count), count,       \
                  NULL);                                                                           \
    }

SIM_SEED_TEST(0)
SIM_SEED_TEST(1)
SIM_SEED_TEST(2)
SIM_SEED_TEST(3)
SIM_SEED_TEST(4)
SIM_SEED_TEST(5)

/* ---------------------------------------------------------------- node.c's early sends */

/*
 * The caller node.c is: a leader's APPEND/HEARTBEAT/SNAPSHOT messages leave before the
 * ready's entries are durable when the ready changes neither term nor vote (Raft thesis
 * §10.2.1), and a commit-only hard state is written at most now and then (hard_state_due).
 * The same seeds as sim_many_seeds, with more crashes between a ready's writes and its fsync
 * (the window early sends open), that caller, and node.c's batching: the messages of one
 * loop iteration are stepped before their ready is processed (batch_pct). SIM_EARLY_SEEDS sets the
 * count (default 1000, about 12 s in the sanitizer build).
 */
static void tweak_early_sends(struct sim_params *p)
{
    p->early_sends = SIM_EARLY_NODE;
    p->lazy_commit_ticks = 1 + (int)(p->max_delay * 3);      /* seed-derived: 4..13 ticks */
    p->batch_pct = 10 * (p->max_delay + p->heartbeat_ticks); /* seed-derived: 30..70 */
    p->lazy_store = SIM_STORE_LAZY;
    p->sync_crash_pml += 30;
    /* node.c persists a leader's plain appends off its loop; three seeds in four do here. */
    p->async_leader = p->drop_pct % 4 != 0 ? SIM_ASYNC_NODE : SIM_ASYNC_OFF;
    p->sync_done_pct = 15 + 10 * p->max_delay;        /* seed-derived: 25..55 */
    p->sync_begin_pct = 10 + 10 * p->heartbeat_ticks; /* seed-derived: 20..30 */
}

TEST(sim_early_replication_sends_are_safe)
{
    long count = env_long("SIM_EARLY_SEEDS", 1000);
    run_seeds_tweaked((uint64_t)env_long("SIM_FIRST_SEED", 1), count, NULL, tweak_early_sends);
}

/* ---------------------------------------------------------------- broken variants */

/*
 * Each classic bug, switched on in the core (or in the simulated caller), must be flagged by
 * the simulator within max_seeds seeds, by the check named in want (a substring of the
 * violation; other violations the bug causes first are skipped). The test prints the first
 * seed that catches it, which replays with TEST_SEED.
 */
struct variant {
    const char *what;
    const char *want; /* "a|b": any of these substrings */
    long max_seeds;
    void (*tweak)(struct sim_params *p);
};

static int matches_any(const char *text, const char *alternatives)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", alternatives);
    for (char *save = NULL, *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save))
        if (strstr(text, tok))
            return 1;
    return 0;
}

static void expect_caught(const struct variant *v)
{
    struct sim *s = rc_calloc(1, sizeof *s);
    uint64_t first = test_seed(1);
    for (long i = 0; i < v->max_seeds; i++) {
        uint64_t seed = first + (uint64_t)i;
        struct sim_params p;
        sim_params_for_seed(seed, &p);
        v->tweak(&p);
        p.verbose = (int)env_long("SIM_VERBOSE", 0);
        int bad = sim_run(&p, seed, s);
        int caught = bad && matches_any(s->violation, v->want);
        if (caught)
            printf("  %s: caught by seed %llu: %s\n", v->what, (unsigned long long)seed,
                   s->violation);
        sim_destroy(s);
        if (caught) {
            rc_free(s);
            return;
        }
    }
    rc_free(s);
    CHECK_MSG(0, "%s: not caught in %ld seeds", v->what, v->max_seeds);
}

/* More leader churn: crashes, partitions and writes, small messages. */
static void churn(struct sim_params *p)
{
    p->crash_pml = 40;
    p->partition_pml = 40;
    p->propose_pct = 80;
    p->max_msg_bytes = 64;
    p->membership_pml = 0;
}

static void tweak_old_term_commit(struct sim_params *p)
{
    churn(p);
    p->n_nodes = 3;
    p->crash_pml = 80;
    p->knobs.commit_old_term_entries = 1;
    p->knobs.skip_noop_on_election = 1;
}

TEST(sim_catches_commit_of_old_term_entries)
{
    struct variant v = {"commit by counting old-term replicas (Figure 8), no no-op",
                        "commit agreement|state machine safety|leader completeness", 5000,
                        tweak_old_term_commit};
    expect_caught(&v);
}

static void tweak_stale_votes(struct sim_params *p)
{
    p->knobs.grant_vote_to_stale_log = 1;
}

TEST(sim_catches_votes_for_stale_logs)
{
    struct variant v = {"votes granted to stale logs",
                        "leader completeness|commit agreement|state machine safety", 3000,
                        tweak_stale_votes};
    expect_caught(&v);
}

static void tweak_read_without_round(struct sim_params *p)
{
    p->knobs.read_index_without_round = 1;
    p->partition_pml = 60;
    p->read_pct = 80;
}

TEST(sim_catches_read_index_without_round)
{
    struct variant v = {"ReadIndex without a heartbeat round", "linearizability", 3000,
                        tweak_read_without_round};
    expect_caught(&v);
}

/* What an acknowledgement sent before its fsync breaks, once a crash loses the write. */
#define DURABILITY_CHECKS                                                                          \
    "commit agreement|state machine safety|leader completeness|acknowledged write"

static void tweak_send_before_sync(struct sim_params *p)
{
    p->send_before_sync = 1;
    p->sync_crash_pml = 150;
    p->crash_pml = 30;
}

TEST(sim_catches_acknowledging_before_fsync)
{
    struct variant v = {"a caller that sends acknowledgements before fsync", DURABILITY_CHECKS,
                        3000, tweak_send_before_sync};
    expect_caught(&v);
}

/* Every message (votes, append acknowledgements) early under node.c's term/vote test. */
static void tweak_early_all_messages(struct sim_params *p)
{
    p->early_sends = SIM_EARLY_ALL_MESSAGES;
    p->lazy_commit_ticks = 5;
    p->batch_pct = 50;
    p->sync_crash_pml = 150;
    p->crash_pml = 30;
}

TEST(sim_catches_early_acknowledgements)
{
    struct variant v = {"every message of a ready sent before fsync under node.c's test",
                        DURABILITY_CHECKS, 3000, tweak_early_all_messages};
    expect_caught(&v);
}

/* node.c's asynchronous leader persistence, with more crashes and slow fsyncs. */
static void async_churn(struct sim_params *p)
{
    tweak_early_sends(p);
    /* node.c's rule for half the seeds, else every ready the core allows (more coverage: the
     * simulator's reordering network often puts followers in probe state). */
    p->async_leader = p->membership_pml % 2 ? SIM_ASYNC_NODE : SIM_ASYNC_ALWAYS;
    p->sync_done_pct = 20;
    p->sync_begin_pct = 3;
    p->leader_crash_pct = 80;
    p->crash_pml = 20;
    p->sync_crash_pml = 20;
    /* Fewer lost messages and short delays (round trips well inside the heartbeat answers
     * that would mark a follower stalled): followers stay replicating, so the leader
     * defers its fsync. */
    p->partition_pml /= 5;
    p->drop_pct = 0;
    p->max_delay = 1;
    p->heartbeat_ticks = 2;
}

/*
 * node.c's caller with the leader's fsync slow and late (so followers commit entries the
 * leader applies before its own copy is durable) and more crashes (so a restarted leader's
 * store holds entries its log lost). SIM_ASYNC_SEEDS sets the count (default 500).
 */
TEST(sim_async_leader_persistence_is_safe)
{
    long count = env_long("SIM_ASYNC_SEEDS", 500);
    run_seeds_tweaked((uint64_t)env_long("SIM_FIRST_SEED", 1), count, NULL, async_churn);
}

static void tweak_count_unsynced_self(struct sim_params *p)
{
    async_churn(p);
    p->knobs.count_unsynced_self = 1;
}

TEST(sim_catches_a_leader_counting_unsynced_entries)
{
    struct variant v = {"a leader that counts its written but unsynced entries for commit",
                        DURABILITY_CHECKS, 3000, tweak_count_unsynced_self};
    expect_caught(&v);
}

/* Applying held on random nodes for random stretches (node.c holds it while a store is
 * rebuilt from a snapshot on a worker): commit and acknowledgements go on, reads wait, and
 * every property holds. SIM_HOLD_SEEDS sets the count (default 300). */
static void hold_churn(struct sim_params *p)
{
    async_churn(p); /* node.c's caller, as in sim_async_leader_persistence_is_safe */
    p->hold_apply_pml = 40;
}

TEST(sim_held_applying_is_safe)
{
    long count = env_long("SIM_HOLD_SEEDS", 300);
    run_seeds_tweaked((uint64_t)env_long("SIM_FIRST_SEED", 1), count, NULL, hold_churn);
}

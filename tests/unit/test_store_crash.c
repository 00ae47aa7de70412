/*
 * test_store_crash.c — crash and corruption: torn tails cut at every offset, zero-filled and
 * garbage tails, bit rot in the middle (refused, or repaired on request), and processes
 * killed at every step of a merge and at random moments during merges.
 */
#include "store_util.h"

#include "common/fileio.h"
#include "common/log.h"
#include "store/record.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

/* ============================== helpers ============================== */

enum { CRASH_RECORDS = 40 };

static bool sync_before_dying;

static void write_records_and_die(const char *dir)
{
    struct rc_store *s = open_store_opts(dir, 1 << 20, false);
    char k[16], v[64];
    for (int i = 1; i <= CRASH_RECORDS; i++) {
        snprintf(k, sizeof k, "key%02d", i % 25); /* some overwrites */
        snprintf(v, sizeof v, "value-%d-%.*s", i, i % 17, "abcdefghijklmnopq");
        if (i % 9 == 0)
            rc_store_delete(s, k, strlen(k), (uint64_t)i);
        else
            CHECK_OK(rc_store_put(s, k, strlen(k), v, strlen(v), 0, (uint64_t)i));
    }
    if (sync_before_dying) {
        CHECK_OK(rc_store_sync(s));
        CHECK_OK(rc_store_mark_revision(s, CRASH_RECORDS + 1));
    }
    /* no close: the process dies here */
}

/* Expected contents after replaying the operations of write_records_and_die up to revision
 * n, leaving out revision skip (0: none). */
static char *expected_without(int n, int skip)
{
    char *model[25] = {0};
    char k[16], v[64];
    for (int i = 1; i <= n; i++) {
        if (i == skip)
            continue;
        snprintf(v, sizeof v, "value-%d-%.*s", i, i % 17, "abcdefghijklmnopq");
        int slot = i % 25;
        free(model[slot]);
        model[slot] = i % 9 == 0 ? NULL : strdup(v);
    }
    /* keys in order: key00..key24 */
    size_t cap = 4096, len = 0;
    char *out = calloc(1, cap);
    for (int slot = 0; slot < 25; slot++) {
        if (!model[slot])
            continue;
        snprintf(k, sizeof k, "key%02d", slot);
        len += (size_t)snprintf(out + len, cap - len, "%s=%s,", k, model[slot]);
        free(model[slot]);
    }
    return out;
}

static char *expected_after(int n)
{
    return expected_without(n, 0);
}

enum tail_damage { TAIL_CUT, TAIL_ZERO, TAIL_GARBAGE };

static void damage_tail(const char *path, uint64_t at, enum tail_damage how, uint64_t *rng)
{
    if (how == TAIL_CUT) {
        CHECK(truncate(path, (off_t)at) == 0);
        return;
    }
    struct stat st;
    CHECK(stat(path, &st) == 0);
    size_t n = (size_t)st.st_size - at;
    if (n > 4096)
        n = 4096; /* the rest of the preallocated tail is zero already */
    uint8_t *junk = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        junk[i] = how == TAIL_ZERO ? 0 : (uint8_t)test_rand(rng);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_OK(rc_pwrite_all(fd, junk, n, (off_t)at, path));
    close(fd);
    free(junk);
}

static void check_tail_damage(enum tail_damage how)
{
    char base[4200], work[4200], path[4300];
    snprintf(base, sizeof base, "%s/base", test_tmpdir());
    in_crashing_child(write_records_and_die, base);
    snprintf(path, sizeof path, "%s/000001.data", base);
    uint64_t ends[CRASH_RECORDS], revs[CRASH_RECORDS];
    int nrec = (int)record_ends(path, ends, revs, CRASH_RECORDS);
    CHECK(nrec > 30);
    uint64_t rng = test_seed(99);
    /* Every byte offset across the last 6 records, and the record boundaries before. */
    uint64_t from = ends[nrec - 7];
    for (uint64_t cut = 0; cut <= ends[nrec - 1]; cut++) {
        bool boundary = false;
        for (int i = 0; i < nrec; i++)
            boundary |= ends[i] == cut;
        if (cut < from && !boundary && cut != 0)
            continue;
        snprintf(work, sizeof work, "%s/w", test_tmpdir());
        test_copy_dir(base, work);
        snprintf(path, sizeof path, "%s/000001.data", work);
        damage_tail(path, cut, how, &rng);
        int complete = 0;
        while (complete < nrec && ends[complete] <= cut)
            complete++;
        int last_rev = complete ? (int)revs[complete - 1] : 0;
        struct rc_store *s = open_store_opts(work, 1 << 20, false);
        char *got = dump_store(s), *want = expected_after(last_rev);
        CHECK_MSG(strcmp(got, want) == 0, "damage %d at %llu: got %s want %s", how,
                  (unsigned long long)cut, got, want);
        CHECK_EQ_U(rc_store_applied_revision(s), (uint64_t)last_rev);
        /* The store goes on working after the cut: write, reopen, still there. */
        put_str(s, "after", "crash", 1000);
        CHECK_OK(rc_store_close(s));
        s = open_store_opts(work, 1 << 20, false);
        check_value(s, "after", "crash");
        CHECK_EQ_U(rc_store_applied_revision(s), 1000);
        CHECK_OK(rc_store_close(s));
        free(got);
        free(want);
        test_remove_dir(work);
    }
}

static int quiet_level;
static void quiet_logs(void)
{
    quiet_level = rc_log_get_level();
    rc_log_set_level(RC_LOG_ERROR);
}

TEST(torn_tail_cut_at_every_offset)
{
    quiet_logs();
    check_tail_damage(TAIL_CUT);
}

TEST(zero_filled_tail_at_every_offset)
{
    quiet_logs();
    check_tail_damage(TAIL_ZERO);
}

TEST(garbage_tail_at_every_offset)
{
    quiet_logs();
    check_tail_damage(TAIL_GARBAGE);
}

/* ============================== bit rot ============================== */

struct captured {
    char lines[8][512];
    int n;
};

static void capture_sink(enum rc_log_level level, const char *line, void *ctx)
{
    struct captured *c = ctx;
    if (c->n < 8)
        snprintf(c->lines[c->n++], sizeof c->lines[0], "%s", line);
}

struct repairs {
    uint64_t offset, length;
    int count;
};

static void on_repair(const char *file, uint64_t offset, uint64_t length, void *ctx)
{
    struct repairs *r = ctx;
    r->offset = offset;
    r->length = length;
    r->count++;
}

/* As write_records_and_die, then an fsync and one more write, which records that the fsync
 * covered every record before it. */
static void write_records_sync_and_die(const char *dir)
{
    sync_before_dying = true;
    write_records_and_die(dir);
}

TEST(corrupt_record_in_the_middle_refuses_open_unless_repair)
{
    char base[4200], path[4300];
    snprintf(base, sizeof base, "%s/base", test_tmpdir());
    in_crashing_child(write_records_sync_and_die, base);
    snprintf(path, sizeof path, "%s/000001.data", base);
    uint64_t ends[CRASH_RECORDS], revs[CRASH_RECORDS];
    record_ends(path, ends, revs, CRASH_RECORDS);
    /* Flip one byte inside record 20's value: the records after it stay intact. */
    uint64_t at = ends[19] - 2;
    int fd = open(path, O_RDWR);
    uint8_t b;
    CHECK_OK(rc_pread_all(fd, &b, 1, (off_t)at, path));
    b ^= 0x40;
    CHECK_OK(rc_pwrite_all(fd, &b, 1, (off_t)at, path));
    close(fd);

    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.max_file_bytes = 1 << 20;
    struct rc_store *s = NULL;
    CHECK_EQ(rc_store_open(base, &o, &s), RC_ECORRUPT);
    rc_log_set_sink(NULL, NULL);
    char where[64];
    snprintf(where, sizeof where, "offset %llu", (unsigned long long)ends[18]);
    bool named = false;
    for (int i = 0; i < cap.n; i++)
        named |= strstr(cap.lines[i], "000001.data") && strstr(cap.lines[i], where);
    CHECK_MSG(named, "no log line names the file and %s (first: %s)", where, cap.lines[0]);

    struct repairs rep = {0};
    o.repair = true;
    o.on_repair = on_repair;
    o.on_repair_ctx = &rep;
    rc_log_set_level(RC_LOG_ERROR);
    CHECK_OK(rc_store_open(base, &o, &s));
    CHECK_EQ(rep.count, 1);
    CHECK_EQ_U(rep.offset, ends[18]);
    CHECK_EQ_U(rep.length, ends[19] - ends[18]);
    /* Exactly record 20 is gone (its key keeps its earlier state); the rest is there. */
    char *got = dump_store(s), *want = expected_without(CRASH_RECORDS, (int)revs[19]);
    CHECK_STR(got, want);
    free(got);
    free(want);
    CHECK_EQ_U(rc_store_applied_revision(s), CRASH_RECORDS + 1);
    CHECK_OK(rc_store_close(s));
    /* Repair padded the bad bytes over: a plain open now succeeds with the same contents. */
    o.repair = false;
    rep.count = 0;
    CHECK_OK(rc_store_open(base, &o, &s));
    got = dump_store(s);
    want = expected_without(CRASH_RECORDS, (int)revs[19]);
    CHECK_STR(got, want);
    free(got);
    free(want);
    CHECK_OK(rc_store_close(s));
}

static void write_sealed_files_and_die(const char *dir)
{
    struct rc_store *s = open_store_opts(dir, 4096, false);
    uint64_t rev = 0;
    char k[16];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "k%04d", i);
        CHECK_OK(rc_store_put(s, k, strlen(k), "some value of a few bytes", 25, 0, ++rev));
    }
    CHECK_OK(rc_store_close(s));
}

TEST(corrupt_sealed_file_without_hint_refuses_open)
{
    const char *dir = test_tmpdir();
    in_crashing_child(write_sealed_files_and_die, dir);
    char path[4300];
    snprintf(path, sizeof path, "%s/000002.hint", dir);
    CHECK(unlink(path) == 0);
    snprintf(path, sizeof path, "%s/000002.data", dir);
    int fd = open(path, O_RDWR);
    uint8_t b = 0xEE;
    CHECK_OK(rc_pwrite_all(fd, &b, 1, 100, path));
    close(fd);
    rc_log_set_level(RC_LOG_ERROR + 1);
    struct rc_store *s;
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.max_file_bytes = 4096;
    CHECK_EQ(rc_store_open(dir, &o, &s), RC_ECORRUPT);
    o.repair = true;
    CHECK_OK(rc_store_open(dir, &o, &s));
    CHECK(rc_store_count(s) < 300 && rc_store_count(s) > 250);
    CHECK_OK(rc_store_close(s));
}

TEST(get_detects_bit_rot_in_a_hinted_file)
{
    const char *dir = test_tmpdir();
    in_crashing_child(write_sealed_files_and_die, dir);
    char path[4300];
    snprintf(path, sizeof path, "%s/000001.data", dir);
    int fd = open(path, O_RDWR);
    uint8_t b = 0xEE;
    CHECK_OK(rc_pwrite_all(fd, &b, 1, 40, path)); /* inside the first record */
    close(fd);
    rc_log_set_level(RC_LOG_ERROR + 1);
    struct rc_store *s = open_store_opts(dir, 4096, false); /* hint used: not read yet */
    struct rc_buf v = {0};
    CHECK_EQ(rc_store_get(s, "k0000", 5, &v, NULL), RC_ECORRUPT);
    CHECK_OK(rc_store_get(s, "k0001", 5, &v, NULL));
    rc_free(v.data);
    CHECK_OK(rc_store_close(s));
}

/* ============================== merge crashes ============================== */

static const char *crash_point;

static void die_at_point(const char *point, void *ctx)
{
    if (crash_point && strcmp(point, crash_point) == 0)
        _exit(0);
}

static void prepare_merge_data(struct rc_store *s, uint64_t *rev)
{
    char k[32], v[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 600; i++) {
            snprintf(k, sizeof k, "key%05d", i);
            snprintf(v, sizeof v, "v%d-%d-%s", round, i, round == 2 ? "final" : "old");
            if (round == 2 && i % 4 == 0)
                CHECK_OK(rc_store_delete(s, k, strlen(k), ++*rev));
            else
                CHECK_OK(rc_store_put(s, k, strlen(k), v, strlen(v), 0, ++*rev));
        }
    }
}

static void write_expected(const char *dir, struct rc_store *s)
{
    char *d = dump_store(s);
    char name[64];
    snprintf(name, sizeof name, "expected.%llu", (unsigned long long)rc_store_applied_revision(s));
    CHECK_OK(rc_write_file_atomic(dir, "expected", d, strlen(d)));
    free(d);
}

static void merge_and_die(const char *dir)
{
    char sdir[4300];
    snprintf(sdir, sizeof sdir, "%s/s", dir);
    struct rc_store *s = open_store_opts(sdir, 8192, false);
    uint64_t rev = 0;
    prepare_merge_data(s, &rev);
    write_expected(dir, s);
    rc_store_set_test_hook(die_at_point, NULL);
    rc_store_merge(s);
    _exit(crash_point ? 3 : 0); /* the hook should have ended the process */
}

static void check_against_expected(const char *dir)
{
    char sdir[4300], path[4400];
    snprintf(sdir, sizeof sdir, "%s/s", dir);
    snprintf(path, sizeof path, "%s/expected", dir);
    void *want;
    size_t wl;
    CHECK_OK(rc_read_file(path, &want, &wl));
    struct rc_store *s = open_store_opts(sdir, 8192, false);
    char *got = dump_store(s);
    CHECK_MEM(got, strlen(got), want, wl);
    CHECK_EQ_U(rc_store_applied_revision(s), 1800);
    /* And the store still merges and reopens to the same contents. */
    CHECK_OK(rc_store_merge(s));
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(sdir, 8192, false);
    char *again = dump_store(s);
    CHECK_STR(again, got);
    CHECK_OK(rc_store_close(s));
    free(again);
    free(got);
    rc_free(want);
}

TEST(crash_at_every_step_of_a_merge)
{
    const char *points[] = {"merge:written", "merge:renamed-first", "merge:renamed",
                            "merge:hinted",  "merge:deleted-first", "merge:done",
                            "roll:sealed"};
    rc_log_set_level(RC_LOG_WARNING);
    for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/p%zu", test_tmpdir(), i);
        rc_mkdir_p(dir);
        crash_point = points[i];
        in_crashing_child(merge_and_die, dir);
        crash_point = NULL;
        check_against_expected(dir);
    }
}

TEST(kill_9_at_random_moments_during_merges)
{
    uint64_t rng = test_seed(4242);
    rc_log_set_level(RC_LOG_ERROR + 1);
    for (int round = 0; round < 12; round++) {
        char dir[4200], sdir[4300];
        snprintf(dir, sizeof dir, "%s/r%d", test_tmpdir(), round);
        snprintf(sdir, sizeof sdir, "%s/s", dir);
        rc_mkdir_p(dir);
        int ready[2];
        CHECK(pipe(ready) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(ready[0]);
            struct rc_store *s = open_store_opts(sdir, 8192, false);
            uint64_t rev = 0;
            prepare_merge_data(s, &rev);
            write_expected(dir, s);
            CHECK(write(ready[1], "x", 1) == 1);
            for (;;) /* merge over and over until killed */
                rc_store_merge(s);
        }
        close(ready[1]);
        char c;
        CHECK(read(ready[0], &c, 1) == 1); /* the child is merging from now on */
        close(ready[0]);
        /* The delay is the fault being injected (where in a merge the kill lands), not a
         * wait for a condition. */
        usleep((useconds_t)(test_rand(&rng) % 30000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status));
        check_against_expected(dir);
    }
}

/* A put torn while its value was being copied must read as a torn tail even when the
 * value (chosen by a client) contains bytes shaped like a valid record. */
static void write_embedded_and_die(const char *dir)
{
    struct rc_store *s = open_store_opts(dir, 1 << 20, false);
    put_str(s, "before", "1", 1);
    CHECK_OK(rc_store_sync(s));
}

TEST(torn_value_containing_a_fake_record_is_a_torn_tail)
{
    const char *dir = test_tmpdir();
    in_crashing_child(write_embedded_and_die, dir);
    char path[4300];
    snprintf(path, sizeof path, "%s/000001.data", dir);
    uint64_t ends[4], revs[4];
    CHECK_EQ(record_ends(path, ends, revs, 4), 1);
    /* Build a put whose value holds a valid record (key "evil", revision 999999999), and
     * write only its first part, as a kill in the middle of the copy would leave it. */
    uint8_t fake[64], value[200], whole[300];
    record_encode(fake, RECORD_PUT, 999999999, 0, "evil", 4, "x", 1);
    memset(value, 'v', sizeof value);
    memcpy(value + 50, fake, record_size(4, 1));
    record_encode(whole, RECORD_PUT, 2, 0, "victim", 6, value, sizeof value);
    size_t torn = RECORD_HEADER_SIZE + 6 + 50 + record_size(4, 1) + 10;
    int fd = open(path, O_RDWR);
    CHECK_OK(rc_pwrite_all(fd, whole, torn, (off_t)ends[0], path));
    close(fd);
    rc_log_set_level(RC_LOG_ERROR + 1);
    struct rc_store *s = open_store_opts(dir, 1 << 20, false);
    check_value(s, "before", "1");
    check_value(s, "victim", NULL);
    check_value(s, "evil", NULL);
    CHECK_EQ_U(rc_store_applied_revision(s), 1);
    CHECK_OK(rc_store_close(s));
}

/* A power failure can lose pages written after the last fsync in any pattern: a hole after
 * the last recorded sync, even with valid records after it, is cut, not called corruption. */
TEST(hole_after_the_last_sync_is_cut_not_corruption)
{
    char base[4200], path[4300];
    snprintf(base, sizeof base, "%s/base", test_tmpdir());
    in_crashing_child(write_records_sync_and_die, base);
    /* Two more writes after the recorded sync, in another crashing run: unsynced. */
    struct rc_store *s = open_store_opts(base, 1 << 20, false);
    CHECK_OK(rc_store_close(s)); /* sealed with a hint; reopen as active and add two */
    snprintf(path, sizeof path, "%s/000001.hint", base);
    unlink(path);
    snprintf(path, sizeof path, "%s/000001.data", base);
    uint64_t ends[CRASH_RECORDS + 4], revs[CRASH_RECORDS + 4];
    size_t n = record_ends(path, ends, revs, CRASH_RECORDS + 4);
    uint8_t rec[128];
    size_t l1 = record_size(5, 1), l2 = record_size(5, 1);
    int fd = open(path, O_RDWR);
    record_encode(rec, RECORD_PUT, 50, 0, "late1", 5, "x", 1);
    CHECK_OK(rc_pwrite_all(fd, rec, l1, (off_t)ends[n - 1], path));
    record_encode(rec, RECORD_PUT, 51, 0, "late2", 5, "y", 1);
    CHECK_OK(rc_pwrite_all(fd, rec, l2, (off_t)(ends[n - 1] + l1), path));
    /* The page holding late1 was lost: zero it (late2 stays valid after the hole). */
    uint8_t zeros[64] = {0};
    CHECK_OK(rc_pwrite_all(fd, zeros, l1, (off_t)ends[n - 1], path));
    close(fd);
    rc_log_set_level(RC_LOG_ERROR + 1);
    s = open_store_opts(base, 1 << 20, false);
    check_value(s, "late1", NULL);
    check_value(s, "late2", NULL); /* after the hole: unsynced, cut with it */
    char *got = dump_store(s), *want = expected_after(CRASH_RECORDS);
    CHECK_STR(got, want);
    free(got);
    free(want);
    CHECK_EQ_U(rc_store_applied_revision(s), CRASH_RECORDS + 1);
    CHECK_OK(rc_store_close(s));
}

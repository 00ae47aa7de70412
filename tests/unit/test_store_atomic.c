/*
 * test_store_atomic.c — atomic revisions (store option atomic_revisions): a revision's
 * writes count only once its commit record is in the file. Revisions cut at every byte, in
 * one file and across rolls (with and without the hint of a file sealed mid-revision), a
 * close in the middle of a revision, merges around incomplete revisions (refused, and
 * crashed at every step), kill -9 at random moments, adoption of a store written without
 * the option, and the rules of rc_store_commit_revision.
 */
#include "store_util.h"

#include "common/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>

/* ============================== workload ============================== */

/* Revision r writes OPS operations on a space of KEYS keys, a function of r alone, so the
 * expected contents after any revision can be recomputed (expected_at). */
enum { KEYS = 40, OPS = 5, MAX_VALUE = 2048 };

static int value_pad; /* filler bytes per value: large values make revisions span files */

static void op_key(uint64_t rev, int i, char *k, size_t n)
{
    snprintf(k, n, "k%02d", (int)((rev * 7 + (uint64_t)i * 3) % KEYS));
}

static bool op_is_delete(uint64_t rev, int i)
{
    return (rev + (uint64_t)i) % 6 == 0;
}

static void op_value(uint64_t rev, int i, char *v, size_t n)
{
    int len = snprintf(v, n, "r%llu-%d-", (unsigned long long)rev, i);
    CHECK((size_t)len + (size_t)value_pad < n);
    memset(v + len, 'a' + (int)(rev % 26), (size_t)value_pad);
    v[len + value_pad] = '\0';
}

/* Writes operation i of revision rev. */
static void write_op(struct rc_store *s, uint64_t rev, int i)
{
    char k[16], v[MAX_VALUE];
    op_key(rev, i, k, sizeof k);
    if (op_is_delete(rev, i)) {
        int rc = rc_store_delete(s, k, strlen(k), rev);
        CHECK(rc == 0 || rc == RC_ENOTFOUND);
    } else {
        op_value(rev, i, v, sizeof v);
        CHECK_OK(rc_store_put(s, k, strlen(k), v, strlen(v), 0, rev));
    }
}

/* Writes the operations of revision rev (without committing it). */
static void write_ops(struct rc_store *s, uint64_t rev)
{
    for (int i = 0; i < OPS; i++)
        write_op(s, rev, i);
}

static void write_revision(struct rc_store *s, uint64_t rev)
{
    write_ops(s, rev);
    CHECK_OK(rc_store_commit_revision(s, rev));
}

/* The contents after revisions 1..rev, as dump_store prints them; caller frees. */
static char *expected_at(uint64_t rev)
{
    static char model[KEYS][MAX_VALUE];
    static bool present[KEYS];
    memset(present, 0, sizeof present);
    char k[16];
    for (uint64_t r = 1; r <= rev; r++) {
        for (int i = 0; i < OPS; i++) {
            op_key(r, i, k, sizeof k);
            int slot = atoi(k + 1);
            present[slot] = !op_is_delete(r, i);
            if (present[slot])
                op_value(r, i, model[slot], sizeof model[slot]);
        }
    }
    size_t cap = (size_t)KEYS * (MAX_VALUE + 8) + 1, len = 0;
    char *out = calloc(1, cap);
    for (int slot = 0; slot < KEYS; slot++)
        if (present[slot])
            len += (size_t)snprintf(out + len, cap - len, "k%02d=%s,", slot, model[slot]);
    return out;
}

/* Checks that the store holds exactly revisions 1..rev and reports rev as applied. */
static void check_at(struct rc_store *s, uint64_t rev, const char *what)
{
    char *got = dump_store(s), *want = expected_at(rev);
    CHECK_MSG(strcmp(got, want) == 0,
              "%s: contents are not those of revision %llu:\n got %s\nwant %s", what,
              (unsigned long long)rev, got, want);
    CHECK_MSG(rc_store_applied_revision(s) == rev, "%s: applied revision %llu, want %llu", what,
              (unsigned long long)rc_store_applied_revision(s), (unsigned long long)rev);
    free(got);
    free(want);
}

/* After a recovery at revision `at` (final is the last revision written before the crash):
 * writing the missing revisions again gives exactly revision final, before and after a
 * reopen, so nothing of the dropped records comes back. */
static void check_goes_on(const char *dir, uint64_t max_file_bytes, struct rc_store *s, uint64_t at,
                          uint64_t final, const char *what)
{
    for (uint64_t r = at + 1; r <= final; r++)
        write_revision(s, r);
    check_at(s, final, what);
    CHECK_OK(rc_store_close(s));
    s = open_store_atomic(dir, max_file_bytes);
    check_at(s, final, what);
    CHECK_OK(rc_store_close(s));
}

/* Captures the "dropping ... incomplete revision" log lines. */
struct drop_lines {
    char last[512];
    int count;
};

static void capture_drops(enum rc_log_level level, const char *line, void *ctx)
{
    struct drop_lines *d = ctx;
    (void)level;
    if (strstr(line, "incomplete revision")) {
        snprintf(d->last, sizeof d->last, "%s", line);
        d->count++;
    }
}

/* Data file ids in dir, ascending. */
static size_t data_file_ids(const char *dir, uint32_t *ids, size_t max)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".data") == 0) {
            CHECK(n < max);
            ids[n++] = (uint32_t)strtoul(e->d_name, NULL, 10);
        }
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of files */
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            uint32_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    return n;
}

static void file_path(char *buf, size_t n, const char *dir, uint32_t id, const char *suffix)
{
    snprintf(buf, n, "%s/%06u%s", dir, (unsigned)id, suffix);
}

/* ============================== cut in one file ============================== */

enum { CUT_REVISIONS = 12 };

static void write_revisions_and_die(const char *dir)
{
    struct rc_store *s = open_store_atomic(dir, 1 << 20);
    for (uint64_t r = 1; r <= CUT_REVISIONS; r++)
        write_revision(s, r);
    /* no close: the process dies here */
}

TEST(incomplete_revision_cut_at_every_offset)
{
    char base[4200], work[4200], path[4300];
    snprintf(base, sizeof base, "%s/base", test_tmpdir());
    in_crashing_child(write_revisions_and_die, base);
    snprintf(path, sizeof path, "%s/000001.data", base);
    uint64_t ends[256], revs[256];
    int kinds[256];
    size_t n = record_ends_kinds(path, ends, revs, kinds, 256);
    /* The last revision: the records after the previous commit, then its own commit. */
    CHECK(n > 4 && kinds[n - 1] == RECORD_COMMIT && revs[n - 1] == CUT_REVISIONS);
    size_t prev = n - 2;
    while (kinds[prev] != RECORD_COMMIT)
        prev--;
    CHECK_EQ_U(revs[prev], CUT_REVISIONS - 1);
    CHECK(n - 2 - prev >= 3); /* several records in the revision */
    uint64_t start = ends[prev], end = ends[n - 1];
    /* Zeroing the commit's tail changes nothing (its revision's high bytes, expiry and
     * lengths are zero): past its last non-zero byte the zero variant is the whole file. */
    void *data;
    size_t len;
    CHECK_OK(rc_read_file(path, &data, &len));
    uint64_t last_nonzero = ends[n - 2];
    for (uint64_t i = ends[n - 2]; i < end; i++)
        if (((uint8_t *)data)[i])
            last_nonzero = i;
    rc_free(data);

    struct drop_lines drops;
    rc_log_set_sink(capture_drops, &drops);
    for (int zero = 0; zero <= 1; zero++) {
        for (uint64_t cut = start; cut <= end; cut++) {
            snprintf(work, sizeof work, "%s/w", test_tmpdir());
            test_copy_dir(base, work);
            snprintf(path, sizeof path, "%s/000001.data", work);
            if (zero) { /* the bytes after cut were never written: the preallocated zeros */
                uint8_t zeros[4096] = {0};
                int fd = open(path, O_WRONLY);
                CHECK(fd >= 0 && end - cut <= sizeof zeros);
                CHECK_OK(rc_pwrite_all(fd, zeros, (size_t)(end - cut), (off_t)cut, path));
                close(fd);
            } else {
                CHECK(truncate(path, (off_t)cut) == 0);
            }
            memset(&drops, 0, sizeof drops);
            struct rc_store *s = open_store_atomic(work, 1 << 20);
            bool whole_commit = cut == end || (zero && cut > last_nonzero);
            uint64_t want = whole_commit ? CUT_REVISIONS : CUT_REVISIONS - 1;
            char what[64];
            snprintf(what, sizeof what, "cut at %llu (zero %d)", (unsigned long long)cut, zero);
            check_at(s, want, what);
            /* Whole records of the revision were dropped, with one log line saying so. */
            uint64_t whole = start;
            for (size_t i = prev + 1; i < n - 1; i++)
                if (ends[i] <= cut)
                    whole = ends[i];
            if (whole_commit || whole == start) {
                CHECK_MSG(drops.count == 0, "%s: unexpected '%s'", what, drops.last);
            } else {
                char line[128];
                snprintf(line, sizeof line, "dropping %llu bytes of an incomplete revision %d",
                         (unsigned long long)(whole - start), CUT_REVISIONS);
                CHECK_MSG(drops.count == 1 && strstr(drops.last, line), "%s: want '%s', got '%s'",
                          what, line, drops.last);
            }
            check_goes_on(work, 1 << 20, s, want, CUT_REVISIONS, what);
            test_remove_dir(work);
        }
    }
    rc_log_set_sink(NULL, NULL);
}

/* Without the option nothing changes: a cut inside a revision keeps its first records. */
TEST(without_the_option_a_cut_revision_keeps_its_first_records)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 1 << 20, false);
    for (uint64_t r = 1; r <= 3; r++)
        write_ops(s, r);
    CHECK_OK(rc_store_commit_revision(s, 3)); /* a no-op without the option */
    CHECK_OK(rc_store_close(s));
    char path[4300];
    snprintf(path, sizeof path, "%s/000001.hint", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/000001.data", dir);
    uint64_t ends[64], revs[64];
    int kinds[64];
    size_t n = record_ends_kinds(path, ends, revs, kinds, 64);
    for (size_t i = 0; i < n; i++)
        CHECK(kinds[i] != RECORD_COMMIT);
    /* Keep revisions 1, 2 and the first record of 3. */
    size_t first3 = 0;
    while (revs[first3] != 3)
        first3++;
    CHECK(truncate(path, (off_t)ends[first3]) == 0);
    rc_log_set_level(RC_LOG_ERROR);
    s = open_store_opts(dir, 1 << 20, false);
    CHECK_EQ_U(rc_store_applied_revision(s), 3);
    char k[16];
    op_key(3, 0, k, sizeof k);
    struct rc_item_meta meta;
    CHECK_OK(rc_store_get(s, k, strlen(k), NULL, &meta));
    CHECK_EQ_U(meta.revision, 3);
    CHECK_OK(rc_store_close(s));
}

/* ============================== cut across a roll ============================== */

enum { ROLL_FILE_BYTES = 4096 };

static uint64_t data_files(struct rc_store *s)
{
    struct rc_store_stats st;
    CHECK_OK(rc_store_stats(s, &st));
    return st.files;
}

/*
 * The last revision written spans two 4 KiB files. For every moment of writing it —
 * file j holding its first cut bytes, the files before it sealed, none after — the store
 * reopens at the previous revision until the commit is whole. The hint of the file sealed
 * just before j (written by the worker, so present or not at a crash) is tried both ways:
 * it describes records of the incomplete revision.
 */
TEST(incomplete_revision_across_a_roll_cut_at_every_offset)
{
    char base[4200], work[4200], path[4300];
    snprintf(base, sizeof base, "%s/base", test_tmpdir());
    value_pad = 24;
    struct rc_store *s = open_store_atomic(base, ROLL_FILE_BYTES);
    /* Write revisions until one rolls to a new file after its first record. */
    uint64_t last = 0;
    for (uint64_t r = 1; r < 100 && !last; r++) {
        uint64_t before = data_files(s);
        write_op(s, r, 0);
        uint64_t after_first = data_files(s);
        for (int i = 1; i < OPS; i++)
            write_op(s, r, i);
        if (r > 2 && after_first == before && data_files(s) > before)
            last = r;
        CHECK_OK(rc_store_commit_revision(s, r));
    }
    CHECK(last != 0);
    const uint64_t ROLL_REVISIONS = last;
    CHECK_OK(rc_store_close(s)); /* every file sealed, with its hint */

    /* Every record of every file, in replay order. */
    uint32_t ids[64];
    size_t nfiles = data_file_ids(base, ids, 64);
    struct pos {
        size_t file;
        uint64_t end, rev;
        int kind;
    } recs[4096];
    size_t n = 0;
    uint64_t sizes[64];
    for (size_t f = 0; f < nfiles; f++) {
        uint64_t ends[256], revs[256];
        int kinds[256];
        file_path(path, sizeof path, base, ids[f], ".data");
        size_t m = record_ends_kinds(path, ends, revs, kinds, 256);
        CHECK(m < 256 && n + m <= 4096);
        struct stat st;
        CHECK(stat(path, &st) == 0);
        sizes[f] = (uint64_t)st.st_size;
        CHECK_EQ_U(m ? ends[m - 1] : 0, sizes[f]);
        for (size_t i = 0; i < m; i++)
            recs[n++] = (struct pos){f, ends[i], revs[i], kinds[i]};
    }
    CHECK(n > 2 && recs[n - 1].kind == RECORD_COMMIT && recs[n - 1].rev == ROLL_REVISIONS);
    size_t prev = n - 2;
    while (recs[prev].kind != RECORD_COMMIT)
        prev--;
    size_t first_file = recs[prev].file, last_file = recs[n - 1].file;
    CHECK_MSG(recs[prev + 1].file != last_file, "revision %llu does not span a roll",
              (unsigned long long)ROLL_REVISIONS);

    rc_log_set_level(RC_LOG_WARNING);
    for (size_t j = first_file; j <= last_file; j++) {
        uint64_t from = j == first_file ? recs[prev].end : 0;
        for (uint64_t cut = from; cut <= sizes[j]; cut++) {
            for (int keep_hint = 0; keep_hint <= (j > first_file); keep_hint++) {
                snprintf(work, sizeof work, "%s/w", test_tmpdir());
                test_copy_dir(base, work);
                for (size_t f = j + 1; f < nfiles; f++) {
                    file_path(path, sizeof path, work, ids[f], ".data");
                    CHECK(unlink(path) == 0);
                    file_path(path, sizeof path, work, ids[f], ".hint");
                    unlink(path);
                }
                file_path(path, sizeof path, work, ids[j], ".hint");
                unlink(path);
                if (j > 0 && !keep_hint) {
                    file_path(path, sizeof path, work, ids[j - 1], ".hint");
                    unlink(path);
                }
                file_path(path, sizeof path, work, ids[j], ".data");
                CHECK(truncate(path, (off_t)cut) == 0);
                s = open_store_atomic(work, ROLL_FILE_BYTES);
                bool whole = j == last_file && cut == sizes[j];
                uint64_t want = whole ? ROLL_REVISIONS : ROLL_REVISIONS - 1;
                char what[96];
                snprintf(what, sizeof what, "file %u cut at %llu (hint %d)", (unsigned)ids[j],
                         (unsigned long long)cut, keep_hint);
                check_at(s, want, what);
                /* Going on after the recovery (slow: fsyncs) at record boundaries only. */
                bool boundary = cut == 0;
                for (size_t i = prev; i < n; i++)
                    boundary |= recs[i].file == j && recs[i].end == cut;
                if (boundary)
                    check_goes_on(work, ROLL_FILE_BYTES, s, want, ROLL_REVISIONS, what);
                else
                    CHECK_OK(rc_store_close(s));
                test_remove_dir(work);
            }
        }
    }
}

/* Closing in the middle of a revision writes a hint that includes its records: the next
 * open still drops them. */
TEST(close_in_the_middle_of_a_revision_drops_it_at_open)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_atomic(dir, 1 << 20);
    for (uint64_t r = 1; r <= 3; r++)
        write_revision(s, r);
    write_ops(s, 4);
    CHECK_EQ_U(rc_store_applied_revision(s), 3); /* it counts commits only */
    CHECK_OK(rc_store_close(s));
    char path[4300];
    snprintf(path, sizeof path, "%s/000001.hint", dir);
    CHECK(access(path, F_OK) == 0);
    rc_log_set_level(RC_LOG_WARNING);
    s = open_store_atomic(dir, 1 << 20);
    check_at(s, 3, "reopened");
    check_goes_on(dir, 1 << 20, s, 3, 5, "after");
}

/* ============================== adoption ============================== */

TEST(store_written_without_the_option_is_adopted_whole)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 1 << 20, false);
    for (uint64_t r = 1; r <= 5; r++)
        write_ops(s, r);
    CHECK_OK(rc_store_merge(s)); /* a MARK, which is no commit */
    for (uint64_t r = 6; r <= 8; r++)
        write_ops(s, r);
    CHECK_OK(rc_store_close(s));
    rc_log_set_level(RC_LOG_WARNING);
    s = open_store_atomic(dir, 1 << 20);
    check_at(s, 8, "adopted");
    write_ops(s, 9); /* an incomplete revision right after the adoption */
    CHECK_OK(rc_store_close(s));
    s = open_store_atomic(dir, 1 << 20);
    check_at(s, 8, "reopened");
    CHECK_OK(rc_store_close(s));
}

TEST(first_revision_of_a_new_store_is_atomic_too)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_atomic(dir, 1 << 20);
    write_ops(s, 1);
    CHECK_OK(rc_store_close(s));
    rc_log_set_level(RC_LOG_WARNING);
    s = open_store_atomic(dir, 1 << 20);
    check_at(s, 0, "reopened");
    check_goes_on(dir, 1 << 20, s, 0, 2, "after");
}

/* ============================== the API ============================== */

TEST(commit_revision_rules)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_atomic(dir, 1 << 20);
    put_str(s, "a", "1", 5);
    CHECK_EQ_U(rc_store_applied_revision(s), 0);
    CHECK_EQ(rc_store_commit_revision(s, 4), RC_EINVAL); /* would commit a later write */
    CHECK_OK(rc_store_commit_revision(s, 5));
    CHECK_EQ_U(rc_store_applied_revision(s), 5);
    struct rc_store_stats before, after;
    CHECK_OK(rc_store_stats(s, &before));
    CHECK_OK(rc_store_commit_revision(s, 5)); /* nothing since: no record */
    CHECK_OK(rc_store_commit_revision(s, 3));
    CHECK_OK(rc_store_stats(s, &after));
    CHECK_EQ_U(after.dead_bytes, before.dead_bytes);
    CHECK_OK(rc_store_commit_revision(s, 6)); /* a revision that wrote nothing */
    CHECK_EQ_U(rc_store_applied_revision(s), 6);
    CHECK_OK(rc_store_mark_revision(s, 7)); /* the same as a commit here */
    CHECK_EQ_U(rc_store_applied_revision(s), 7);
    /* A revision in progress is readable, but neither it nor a view counts it. */
    put_str(s, "b", "2", 8);
    check_value(s, "b", "2");
    CHECK_EQ_U(rc_store_applied_revision(s), 7);
    struct rc_store_view *v;
    CHECK_OK(rc_store_view_open(s, &v));
    CHECK_EQ_U(rc_store_view_revision(v), 7);
    rc_store_view_close(v);
    CHECK_OK(rc_store_stats(s, &after));
    CHECK_EQ_U(after.applied_revision, 7);
    CHECK_OK(rc_store_commit_revision(s, 8));
    CHECK_OK(rc_store_close(s));
    s = open_store_atomic(dir, 1 << 20);
    CHECK_EQ_U(rc_store_applied_revision(s), 8);
    check_value(s, "a", "1");
    check_value(s, "b", "2");
    CHECK_OK(rc_store_close(s));

    /* Without the option, commit does nothing at all. */
    char plain[4200];
    snprintf(plain, sizeof plain, "%s/plain", dir);
    s = open_store_opts(plain, 1 << 20, false);
    put_str(s, "a", "1", 5);
    CHECK_OK(rc_store_stats(s, &before));
    CHECK_OK(rc_store_commit_revision(s, 9));
    CHECK_OK(rc_store_stats(s, &after));
    CHECK_EQ_U(after.dead_bytes, before.dead_bytes);
    CHECK_EQ_U(rc_store_applied_revision(s), 5);
    CHECK_OK(rc_store_close(s));
}

/* ============================== merge ============================== */

TEST(merge_waits_for_the_end_of_a_revision)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_atomic(dir, 8192);
    for (uint64_t r = 1; r <= 100; r++)
        write_revision(s, r);
    write_ops(s, 101);
    CHECK_EQ(rc_store_merge_start(s), RC_EBUSY);
    CHECK_OK(rc_store_commit_revision(s, 101));
    CHECK_OK(rc_store_merge(s));
    check_at(s, 101, "merged");
    write_ops(s, 102);
    CHECK_OK(rc_store_close(s));
    rc_log_set_level(RC_LOG_WARNING);
    s = open_store_atomic(dir, 8192);
    check_at(s, 101, "reopened");
    CHECK_OK(rc_store_close(s));
}

enum { MERGE_REVISIONS = 300 };

static const char *crash_point;
static atomic_bool partial_written;

/* Dies at crash_point, once the incomplete revision is in the file. */
static void die_at_point(const char *point, void *ctx)
{
    (void)ctx;
    if (!crash_point || strcmp(point, crash_point) != 0)
        return;
    while (!atomic_load(&partial_written))
        sched_yield();
    _exit(0);
}

static void merge_during_a_revision_and_die(const char *dir)
{
    struct rc_store *s = open_store_atomic(dir, 8192);
    for (uint64_t r = 1; r <= MERGE_REVISIONS; r++)
        write_revision(s, r);
    rc_store_set_test_hook(die_at_point, NULL);
    CHECK_OK(rc_store_merge_start(s));
    write_ops(s, MERGE_REVISIONS + 1); /* overwrites keys the merge is copying */
    atomic_store(&partial_written, true);
    CHECK_OK(rc_store_merge_wait(s));
    _exit(crash_point ? 3 : 0); /* the hook should have ended the process */
}

TEST(crash_at_every_step_of_a_merge_during_an_incomplete_revision)
{
    const char *points[] = {"merge:written",
                            "merge:renamed-first",
                            "merge:renamed",
                            "merge:hinted",
                            "merge:deleted-first",
                            "merge:done",
                            NULL /* the merge completes */};
    rc_log_set_level(RC_LOG_WARNING);
    for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/p%zu", test_tmpdir(), i);
        crash_point = points[i];
        atomic_store(&partial_written, false);
        in_crashing_child(merge_during_a_revision_and_die, dir);
        struct rc_store *s = open_store_atomic(dir, 8192);
        char what[64];
        snprintf(what, sizeof what, "crash at %s", points[i] ? points[i] : "the end");
        check_at(s, MERGE_REVISIONS, what);
        CHECK_OK(rc_store_merge(s));
        check_goes_on(dir, 8192, s, MERGE_REVISIONS, MERGE_REVISIONS + 2, what);
    }
}

/* ============================== kill -9 ============================== */

TEST(kill_9_at_random_moments_loses_only_whole_revisions)
{
    uint64_t rng = test_seed(2026);
    value_pad = 40;
    rc_log_set_level(RC_LOG_ERROR + 1);
    for (int round = 0; round < 12; round++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/r%d", test_tmpdir(), round);
        int ready[2];
        CHECK(pipe(ready) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            struct rc_store *s = open_store_atomic(dir, 8192);
            for (uint64_t r = 1;; r++) { /* until killed */
                write_revision(s, r);
                if (r % 97 == 0) {
                    int rc = rc_store_merge_start(s);
                    CHECK(rc == 0 || rc == RC_EBUSY);
                }
                if (r == 200)
                    CHECK(write(ready[1], "x", 1) == 1);
            }
        }
        close(ready[1]);
        char c;
        CHECK(read(ready[0], &c, 1) == 1);
        close(ready[0]);
        /* The delay is the fault being injected (where the kill lands), not a wait. */
        usleep((useconds_t)(test_rand(&rng) % 30000));
        kill(pid, SIGKILL);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status));
        struct rc_store *s = open_store_atomic(dir, 8192);
        uint64_t at = rc_store_applied_revision(s);
        CHECK(at >= 200);
        char what[64];
        snprintf(what, sizeof what, "round %d", round);
        check_at(s, at, what);
        check_goes_on(dir, 8192, s, at, at + 3, what);
    }
}

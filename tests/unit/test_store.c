/* test_store.c — the storage engine's behaviour through its public API (src/store/store.h). */
#include "store_util.h"

#include "store/record.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* ============================== records ============================== */

TEST(record_roundtrip_and_rejects_damage)
{
    uint8_t buf[128];
    record_encode(buf, RECORD_PUT, 42, 777, "key", 3, "value", 5);
    struct record r;
    size_t n = record_size(3, 5);
    CHECK_EQ(record_decode(buf, n, &r), RECORD_OK);
    CHECK_EQ(r.kind, RECORD_PUT);
    CHECK_EQ_U(r.revision, 42);
    CHECK_EQ(r.expiry_ms, 777);
    CHECK_MEM(r.key, r.key_len, "key", 3);
    CHECK_MEM(r.value, r.value_len, "value", 5);
    CHECK_EQ(r.total_len, n);
    for (size_t cut = 0; cut < n; cut++) /* every prefix is short, or plainly bad */
        CHECK(record_decode(buf, cut, &r) != RECORD_OK);
    for (size_t i = 0; i < n; i++) { /* every single-bit flip is caught */
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            CHECK_MSG(record_decode(buf, n, &r) != RECORD_OK, "flip at byte %zu bit %d", i, bit);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    record_encode(buf, RECORD_DELETE, 43, 0, "key", 3, NULL, 0);
    CHECK_EQ(record_decode(buf, record_size(3, 0), &r), RECORD_OK);
    CHECK_EQ(r.kind, RECORD_DELETE);
}

TEST(record_find_next_valid_skips_garbage)
{
    uint8_t buf[256];
    memset(buf, 0, sizeof buf);
    for (size_t i = 0; i < 60; i++)
        buf[i] = (uint8_t)(i * 7 + 1);
    record_encode(buf + 100, RECORD_PUT, 1, 0, "k", 1, "v", 1);
    CHECK_EQ(record_find_next_valid(buf, sizeof buf, 0), 100);
    CHECK_EQ(record_find_next_valid(buf, sizeof buf, 100), sizeof buf);
}

/* ============================== basic operations ============================== */

TEST(put_get_delete_and_reopen)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store(dir);
    put_str(s, "alpha", "1", 1);
    put_str(s, "beta", "2", 2);
    put_str(s, "alpha", "one", 3);
    check_value(s, "alpha", "one");
    check_value(s, "beta", "2");
    check_value(s, "gamma", NULL);
    CHECK_OK(rc_store_delete(s, "beta", 4, 4));
    CHECK_EQ(rc_store_delete(s, "beta", 4, 5), RC_ENOTFOUND);
    check_value(s, "beta", NULL);
    CHECK_EQ(rc_store_count(s), 1);
    CHECK_EQ_U(rc_store_applied_revision(s), 4);
    CHECK_OK(rc_store_close(s));

    s = open_store(dir);
    check_value(s, "alpha", "one");
    check_value(s, "beta", NULL);
    CHECK_EQ(rc_store_count(s), 1);
    CHECK_EQ_U(rc_store_applied_revision(s), 4);
    struct rc_item_meta m;
    CHECK_OK(rc_store_get(s, "alpha", 5, NULL, &m));
    CHECK_EQ_U(m.revision, 3);
    CHECK_EQ(m.value_len, 3);
    CHECK_OK(rc_store_close(s));
}

TEST(binary_keys_and_values_and_empty_key)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store(dir);
    const char key[] = {'a', 0, 'b'};
    const char val[] = {0, 1, 2, 0, (char)255};
    CHECK_OK(rc_store_put(s, key, 3, val, 5, 0, 1));
    CHECK_OK(rc_store_put(s, "", 0, "empty", 5, 0, 2));
    CHECK_OK(rc_store_put(s, "z", 1, "", 0, 0, 3));
    CHECK_OK(rc_store_close(s));
    s = open_store(dir);
    struct rc_buf b = {0};
    CHECK_OK(rc_store_get(s, key, 3, &b, NULL));
    CHECK_MEM(b.data, b.len, val, 5);
    CHECK_OK(rc_store_get(s, "", 0, &b, NULL));
    CHECK_MEM(b.data, b.len, "empty", 5);
    CHECK_OK(rc_store_get(s, "z", 1, &b, NULL));
    CHECK_EQ(b.len, 0);
    CHECK_EQ(rc_store_get(s, key, 2, &b, NULL), RC_ENOTFOUND);
    rc_free(b.data);
    CHECK_OK(rc_store_close(s));
}

TEST(limits_refuse_oversized_keys_and_values)
{
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.max_key_bytes = 8;
    o.max_value_bytes = 16;
    struct rc_store *s;
    CHECK_OK(rc_store_open(test_tmpdir(), &o, &s));
    CHECK_EQ(rc_store_put(s, "123456789", 9, "v", 1, 0, 1), RC_ETOOBIG);
    CHECK_EQ(rc_store_put(s, "k", 1, "01234567890123456", 17, 0, 1), RC_ETOOBIG);
    CHECK_OK(rc_store_put(s, "12345678", 8, "0123456789012345", 16, 0, 1));
    CHECK_EQ(rc_store_count(s), 1);
    CHECK_OK(rc_store_close(s));
}

TEST(second_open_fails_with_locked)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store(dir), *t = NULL;
    CHECK_EQ(rc_store_open(dir, NULL, &t), RC_ELOCKED);
    CHECK(t == NULL);
    pid_t pid = fork();
    if (pid == 0) { /* another process too */
        struct rc_store *u;
        _exit(rc_store_open(dir, NULL, &u) == RC_ELOCKED ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(rc_store_close(s));
    s = open_store(dir); /* released by close */
    CHECK_OK(rc_store_close(s));
}

TEST(expired_keys_are_absent_but_counted_until_deleted)
{
    const char *dir = test_tmpdir();
    test_clock_now = 5000;
    struct rc_store *s = open_store(dir);
    CHECK_OK(rc_store_put(s, "a", 1, "x", 1, 6000, 1));
    CHECK_OK(rc_store_put(s, "b", 1, "y", 1, 0, 2));
    check_value(s, "a", "x");
    struct rc_store_stats st;
    CHECK_OK(rc_store_stats(s, &st));
    CHECK_EQ(st.keys_with_expiry, 1);
    test_clock_now = 6000; /* expiry is inclusive: at the instant itself the key is gone */
    check_value(s, "a", NULL);
    char *d = dump_store(s);
    CHECK_STR(d, "b=y,");
    free(d);
    CHECK_EQ(rc_store_count(s), 2);
    CHECK_OK(rc_store_close(s));
    s = open_store(dir);
    check_value(s, "a", NULL);
    test_clock_now = 5999;
    check_value(s, "a", "x");
    CHECK_OK(rc_store_delete(s, "a", 1, 3));
    CHECK_OK(rc_store_stats(s, &st));
    CHECK_EQ(st.keys_with_expiry, 0);
    CHECK_OK(rc_store_close(s));
    test_clock_now = 1000000;
}

TEST(clear_and_mark_revision)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store(dir);
    put_str(s, "a", "1", 1);
    put_str(s, "b", "2", 2);
    CHECK_OK(rc_store_clear(s, 3));
    CHECK_EQ(rc_store_count(s), 0);
    put_str(s, "c", "3", 4);
    CHECK_OK(rc_store_mark_revision(s, 9));
    CHECK_EQ_U(rc_store_applied_revision(s), 9);
    CHECK_OK(rc_store_close(s));
    s = open_store(dir);
    char *d = dump_store(s);
    CHECK_STR(d, "c=3,");
    free(d);
    CHECK_EQ_U(rc_store_applied_revision(s), 9);
    CHECK_OK(rc_store_close(s));
}

/* ============================== scans ============================== */

static struct rc_store *store_with_letters(void)
{
    struct rc_store *s = open_store(test_tmpdir());
    const char *keys[] = {"a", "b", "ba", "bb", "c", "d"};
    for (int i = 0; i < 6; i++)
        put_str(s, keys[i], keys[i], (uint64_t)i + 1);
    return s;
}

static char *scan_str(struct rc_store *s, enum kd_bound_kind lk, const char *lo,
                      enum kd_bound_kind hk, const char *hi, bool rev, size_t limit)
{
    struct rc_store_range r = {.lo = {lk, lo, lo ? strlen(lo) : 0},
                               .hi = {hk, hi, hi ? strlen(hi) : 0},
                               .reverse = rev,
                               .limit = limit};
    struct collect c = {0};
    CHECK_OK(rc_store_scan(s, &r, collect_fn, &c));
    return c.text ? c.text : calloc(1, 1);
}

#define CHECK_SCAN(expect, ...)                                                                    \
    do {                                                                                           \
        char *got_ = scan_str(s, __VA_ARGS__);                                                     \
        CHECK_STR(got_, expect);                                                                   \
        free(got_);                                                                                \
    } while (0)

TEST(scan_every_bound_kind_both_directions)
{
    struct rc_store *s = store_with_letters();
    const enum kd_bound_kind O = KD_BOUND_OPEN, I = KD_BOUND_INCLUSIVE, X = KD_BOUND_EXCLUSIVE;
    CHECK_SCAN("a,b,ba,bb,c,d,", O, NULL, O, NULL, false, 0);
    CHECK_SCAN("d,c,bb,ba,b,a,", O, NULL, O, NULL, true, 0);
    CHECK_SCAN("b,ba,bb,c,", I, "b", I, "c", false, 0);
    CHECK_SCAN("ba,bb,", X, "b", X, "c", false, 0);
    CHECK_SCAN("bb,ba,", X, "b", X, "c", true, 0);
    CHECK_SCAN("c,bb,ba,b,", I, "b", I, "c", true, 0);
    CHECK_SCAN("b,ba,bb,", I, "b", X, "c", false, 0);
    CHECK_SCAN("ba,bb,c,", X, "b", I, "c", false, 0);
    CHECK_SCAN("a,b,ba,", O, NULL, I, "ba", false, 0);
    CHECK_SCAN("bb,c,d,", X, "ba", O, NULL, false, 0);
    CHECK_SCAN("d,c,", X, "bb", O, NULL, true, 0);
    CHECK_SCAN("a,b,", O, NULL, O, NULL, false, 2);
    CHECK_SCAN("d,c,bb,", O, NULL, O, NULL, true, 3);
    CHECK_SCAN("", I, "c", I, "b", false, 0); /* empty: lo > hi */
    CHECK_SCAN("", X, "c", X, "c", false, 0); /* empty: same exclusive bound */
    CHECK_SCAN("c,", I, "c", I, "c", false, 0);
    CHECK_SCAN("", I, "e", O, NULL, false, 0); /* beyond the end */
    CHECK_SCAN("a,b,ba,bb,c,d,", I, "", O, NULL, false, 0);
    CHECK_SCAN("a,b,ba,bb,c,d,", O, NULL, I, "zzz", false, 0);
    CHECK_OK(rc_store_close(s));
}

TEST(prefix_scan)
{
    struct rc_store *s = store_with_letters();
    struct collect c = {0};
    CHECK_OK(rc_store_scan_prefix(s, "b", 1, false, 0, false, collect_fn, &c));
    CHECK_STR(c.text, "b,ba,bb,");
    free(c.text);
    memset(&c, 0, sizeof c);
    CHECK_OK(rc_store_scan_prefix(s, "b", 1, true, 2, true, collect_fn, &c));
    CHECK_STR(c.text, "bb=bb,ba=ba,");
    free(c.text);
    memset(&c, 0, sizeof c);
    CHECK_OK(rc_store_scan_prefix(s, "", 0, false, 0, false, collect_fn, &c));
    CHECK_EQ(c.count, 6);
    free(c.text);
    /* Prefixes ending in 0xFF bytes have no simple successor. */
    const char k1[] = {'x', (char)0xFF}, k2[] = {'x', (char)0xFF, 'a'}, k3[] = {'y'};
    CHECK_OK(rc_store_put(s, k1, 2, "1", 1, 0, 10));
    CHECK_OK(rc_store_put(s, k2, 3, "2", 1, 0, 11));
    CHECK_OK(rc_store_put(s, k3, 1, "3", 1, 0, 12));
    memset(&c, 0, sizeof c);
    CHECK_OK(rc_store_scan_prefix(s, k1, 2, false, 0, true, collect_fn, &c));
    CHECK_EQ(c.count, 2);
    free(c.text);
    const char ff[] = {(char)0xFF};
    CHECK_OK(rc_store_put(s, ff, 1, "4", 1, 0, 13));
    memset(&c, 0, sizeof c);
    CHECK_OK(rc_store_scan_prefix(s, ff, 1, false, 0, true, collect_fn, &c));
    CHECK_EQ(c.count, 1);
    free(c.text);
    CHECK_OK(rc_store_close(s));
}

static int stop_after_two(const void *key, size_t klen, const void *value, size_t vlen,
                          const struct rc_item_meta *meta, void *ctx)
{
    int *n = ctx;
    return ++*n == 2 ? 77 : 0;
}

TEST(scan_callback_stops_and_its_value_is_returned)
{
    struct rc_store *s = store_with_letters();
    int n = 0;
    struct rc_store_range r = {0};
    CHECK_EQ(rc_store_scan(s, &r, stop_after_two, &n), 77);
    CHECK_EQ(n, 2);
    CHECK_OK(rc_store_close(s));
}

/* ============================== files: roll, hints, merge ============================== */

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void fill(struct rc_store *s, int n, int versions, uint64_t *rev)
{
    char k[32], v[64];
    for (int ver = 0; ver < versions; ver++) {
        for (int i = 0; i < n; i++) {
            snprintf(k, sizeof k, "key%06d", i);
            snprintf(v, sizeof v, "value-%d-%d-padding-padding", i, ver);
            CHECK_OK(rc_store_put(s, k, strlen(k), v, strlen(v), 0, ++*rev));
        }
    }
}

TEST(roll_hints_and_reopen_from_hints)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 8192, false);
    uint64_t rev = 0;
    fill(s, 500, 2, &rev);
    for (int i = 0; i < 500; i += 3) {
        char k[32];
        snprintf(k, sizeof k, "key%06d", i);
        CHECK_OK(rc_store_delete(s, k, strlen(k), ++rev));
    }
    char *before = dump_store(s);
    struct rc_store_stats st;
    CHECK_OK(rc_store_stats(s, &st));
    CHECK(st.files > 5);
    CHECK_OK(rc_store_close(s));
    size_t data = count_files(dir, ".data"), hints = count_files(dir, ".hint");
    CHECK_EQ(hints, data); /* every sealed file has a hint, including the last at close */

    s = open_store_opts(dir, 8192, false);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    struct rc_store_stats st2;
    CHECK_OK(rc_store_stats(s, &st2));
    CHECK_EQ_U(st2.live_bytes, st.live_bytes);
    CHECK_EQ_U(st2.dead_bytes, st.dead_bytes);
    CHECK_OK(rc_store_close(s));
    free(after);

    /* Without hints, open rebuilds from the data files alone, to the same contents. */
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".hint")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    s = open_store_opts(dir, 8192, false);
    after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

TEST(corrupt_hint_is_ignored)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 8192, false);
    uint64_t rev = 0;
    fill(s, 300, 1, &rev);
    char *before = dump_store(s);
    CHECK_OK(rc_store_close(s));
    char path[4200];
    snprintf(path, sizeof path, "%s/000001.hint", dir);
    FILE *f = fopen(path, "r+");
    CHECK(f);
    fseek(f, 40, SEEK_SET);
    fputc('!', f);
    fclose(f);
    s = open_store_opts(dir, 8192, false);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    free(after);
    free(before);
    CHECK_OK(rc_store_close(s));
}

/* rc_store_move renames an open store's directory under it (as a restore swaps stores): it
 * goes on writing, rolling, merging and closing there, and reopens from there whole. */
TEST(move_an_open_store_and_go_on_there)
{
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/a", test_tmpdir());
    snprintf(to, sizeof to, "%s/b", test_tmpdir());
    struct rc_store *s = open_store_opts(from, 8192, false);
    uint64_t rev = 0;
    fill(s, 300, 2, &rev);             /* several sealed files, their hints queued on the worker */
    CHECK_OK(rc_store_merge_start(s)); /* abandoned by the move, or finished before it */
    CHECK_OK(rc_store_move(s, to));
    CHECK(access(from, F_OK) != 0);
    char taken[4200], inside[4300];
    snprintf(taken, sizeof taken, "%s/c", test_tmpdir());
    snprintf(inside, sizeof inside, "%s/x", taken);
    CHECK(mkdir(taken, 0755) == 0 && mkdir(inside, 0755) == 0);
    CHECK_EQ(rc_store_move(s, taken), RC_EIO); /* not empty: the store stays where it is */
    fill(s, 300, 2, &rev);                     /* rolls new files in the new directory */
    for (int i = 0; i < 300; i += 2) {
        char k[32];
        snprintf(k, sizeof k, "key%06d", i);
        CHECK_OK(rc_store_delete(s, k, strlen(k), ++rev));
    }
    CHECK_OK(rc_store_merge(s));
    char *before = dump_store(s);
    CHECK_OK(rc_store_close(s));
    CHECK(access(from, F_OK) != 0); /* nothing was written at the old path */
    CHECK_EQ(count_files(to, ".hint"), count_files(to, ".data"));
    s = open_store_opts(to, 8192, false);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

TEST(merge_reclaims_space_and_keeps_contents)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 16384, false);
    uint64_t rev = 0;
    fill(s, 400, 5, &rev);
    for (int i = 0; i < 400; i += 2) {
        char k[32];
        snprintf(k, sizeof k, "key%06d", i);
        CHECK_OK(rc_store_delete(s, k, strlen(k), ++rev));
    }
    char *before = dump_store(s);
    struct rc_store_stats st0, st1;
    CHECK_OK(rc_store_stats(s, &st0));
    CHECK_OK(rc_store_merge(s));
    CHECK_OK(rc_store_stats(s, &st1));
    CHECK_EQ(st1.merges, 1);
    CHECK_EQ_U(st1.live_bytes, st0.live_bytes);
    CHECK_MSG(st1.dead_bytes < st0.dead_bytes / 10, "dead bytes %llu -> %llu",
              (unsigned long long)st0.dead_bytes, (unsigned long long)st1.dead_bytes);
    CHECK(st1.files < st0.files);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    free(after);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 16384, false);
    after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

/* The id of the newest data file in dir (the active one). */
static unsigned newest_data_file(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    unsigned newest = 0, id;
    const struct dirent *e;
    char tail[8];
    while ((e = readdir(d)) != NULL)
        if (sscanf(e->d_name, "%6u.%7s", &id, tail) == 2 && strcmp(tail, "data") == 0 &&
            id > newest)
            newest = id;
    closedir(d);
    return newest;
}

/* Puts 1 KiB values under "roll%d" until one fails; returns how many succeeded. */
static int put_until_refused(struct rc_store *s, uint64_t *rev)
{
    char k[32], v[1024];
    memset(v, 'r', sizeof v);
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "roll%d", i);
        if (rc_store_put(s, k, strlen(k), v, sizeof v, 0, *rev + 1) != 0)
            return i;
        ++*rev;
    }
    return 100;
}

/*
 * A roll that cannot make the next file (on a full disk: its preallocation fails; here: the
 * name is taken) leaves the active file taking writes. A merge starts with a roll; on a
 * nearly full disk that used to lock the store ("refusing further writes") and stop every
 * node of a cluster at once, though the merge was what would have freed space.
 */
TEST(a_roll_that_cannot_make_its_file_leaves_the_store_writable)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 16384, false);
    uint64_t rev = 0;
    fill(s, 200, 3, &rev);
    unsigned active = newest_data_file(dir);
    char path[4200];
    for (unsigned id = active + 1; id <= active + 400; id++) {
        snprintf(path, sizeof path, "%s/%06u.data", dir, id);
        CHECK(mkdir(path, 0755) == 0);
    }
    CHECK(rc_store_merge(s) != 0);
    put_str(s, "after-merge", "still writable", ++rev);
    /* A write that needs the next file fails alone; the ones before it stay. */
    int fitted = put_until_refused(s, &rev);
    CHECK(fitted < 100);
    check_value(s, "after-merge", "still writable");
    for (unsigned id = active + 1; id <= active + 400; id++) {
        snprintf(path, sizeof path, "%s/%06u.data", dir, id);
        CHECK(rmdir(path) == 0);
    }
    put_str(s, "after-room", "written", ++rev);
    CHECK_OK(rc_store_merge(s));
    char *before = dump_store(s);
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 16384, false);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    check_value(s, "after-room", "written");
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

TEST(merge_keeps_revision_when_everything_is_deleted)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 8192, false);
    uint64_t rev = 0;
    fill(s, 200, 1, &rev);
    CHECK_OK(rc_store_clear(s, ++rev));
    CHECK_OK(rc_store_merge(s));
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 8192, false);
    CHECK_EQ(rc_store_count(s), 0);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
}

TEST(writes_during_merge_win)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 16384, false);
    uint64_t rev = 0;
    fill(s, 2000, 2, &rev);
    CHECK_OK(rc_store_merge_start(s));
    CHECK_EQ(rc_store_merge_start(s), RC_EBUSY);
    /* Overwrite and delete keys while the merge runs. */
    char k[32];
    for (int i = 0; i < 2000; i += 5) {
        snprintf(k, sizeof k, "key%06d", i);
        if (i % 10 == 0)
            CHECK_OK(rc_store_delete(s, k, strlen(k), ++rev));
        else
            CHECK_OK(rc_store_put(s, k, strlen(k), "new", 3, 0, ++rev));
    }
    CHECK_OK(rc_store_merge_wait(s));
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "key%06d", i);
        char v[64];
        snprintf(v, sizeof v, "value-%d-1-padding-padding", i);
        check_value(s, k, i % 10 == 0 ? NULL : i % 5 == 0 ? "new" : v);
    }
    char *before = dump_store(s);
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 16384, false);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    free(after);
    free(before);
    CHECK_OK(rc_store_close(s));
}

TEST(large_value_bigger_than_a_file)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 4096, false);
    size_t n = 100000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 31);
    put_str(s, "small", "x", 1);
    CHECK_OK(rc_store_put(s, "big", 3, big, n, 0, 2));
    put_str(s, "after", "y", 3);
    struct rc_buf b = {0};
    CHECK_OK(rc_store_get(s, "big", 3, &b, NULL));
    CHECK_MEM(b.data, b.len, big, n);
    CHECK_OK(rc_store_merge(s));
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 4096, false);
    CHECK_OK(rc_store_get(s, "big", 3, &b, NULL));
    CHECK_MEM(b.data, b.len, big, n);
    check_value(s, "small", "x");
    check_value(s, "after", "y");
    rc_free(b.data);
    free(big);
    CHECK_OK(rc_store_close(s));
}

/* ============================== views ============================== */

TEST(view_is_frozen_and_survives_merge)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 8192, false);
    uint64_t rev = 0;
    fill(s, 300, 2, &rev);
    char *before = dump_store(s);
    struct rc_store_view *v;
    CHECK_OK(rc_store_view_open(s, &v));
    CHECK_EQ_U(rc_store_view_revision(v), rev);
    fill(s, 300, 1, &rev); /* overwrite everything */
    CHECK_OK(rc_store_clear(s, ++rev));
    put_str(s, "new", "1", ++rev);
    CHECK_OK(rc_store_merge(s)); /* deletes the files the view reads */
    struct collect c = {0};
    struct rc_store_range r = {.with_values = true};
    CHECK_OK(rc_store_view_scan(v, &r, collect_fn, &c));
    CHECK_STR(c.text, before);
    free(c.text);
    rc_store_view_close(v);
    char *now = dump_store(s);
    CHECK_STR(now, "new=1,");
    free(now);
    free(before);
    CHECK_OK(rc_store_close(s));
}

struct view_thread_arg {
    struct rc_store_view *view;
    char *result;
};

static void *scan_view_thread(void *p)
{
    struct view_thread_arg *a = p;
    struct collect c = {0};
    struct rc_store_range r = {.with_values = true};
    if (rc_store_view_scan(a->view, &r, collect_fn, &c) != 0)
        return NULL;
    a->result = c.text;
    rc_store_view_close(a->view);
    return NULL;
}

TEST(view_scanned_on_another_thread_while_writing)
{
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 65536, false);
    uint64_t rev = 0;
    fill(s, 3000, 1, &rev);
    char *before = dump_store(s);
    struct view_thread_arg a = {0};
    CHECK_OK(rc_store_view_open(s, &a.view));
    pthread_t t;
    pthread_create(&t, NULL, scan_view_thread, &a);
    fill(s, 3000, 2, &rev);
    pthread_join(t, NULL);
    CHECK(a.result);
    CHECK_STR(a.result, before);
    free(a.result);
    free(before);
    CHECK_OK(rc_store_close(s));
}

/* ============================== randomised model check ============================== */

TEST(random_operations_match_a_model_across_reopens_and_merges)
{
    uint64_t seed = test_seed(20261125), st = seed;
    const char *dir = test_tmpdir();
    enum { NKEYS = 200 };
    char *model[NKEYS] = {0};
    struct rc_store *s = open_store_opts(dir, 4096, false);
    uint64_t rev = 0;
    for (int step = 0; step < 6000; step++) {
        int k = (int)(test_rand(&st) % NKEYS);
        char key[16];
        snprintf(key, sizeof key, "k%03d", k);
        int op = (int)(test_rand(&st) % 100);
        if (op < 55) {
            char v[80];
            int len = (int)(test_rand(&st) % 60);
            for (int i = 0; i < len; i++)
                v[i] = (char)('a' + test_rand(&st) % 26);
            v[len] = 0;
            CHECK_OK(rc_store_put(s, key, strlen(key), v, (size_t)len, 0, ++rev));
            free(model[k]);
            model[k] = strdup(v);
        } else if (op < 80) {
            int rc = rc_store_delete(s, key, strlen(key), ++rev);
            CHECK_MSG(rc == (model[k] ? 0 : RC_ENOTFOUND), "seed %llu step %d delete rc %d",
                      (unsigned long long)seed, step, rc);
            free(model[k]);
            model[k] = NULL;
        } else if (op < 97) {
            check_value(s, key, model[k]);
        } else if (op < 98) {
            CHECK_OK(rc_store_close(s));
            s = open_store_opts(dir, 4096, false);
        } else if (op < 99) {
            int rc = rc_store_merge_start(s);
            CHECK(rc == 0 || rc == RC_EBUSY);
        } else {
            CHECK_OK(rc_store_merge_wait(s));
        }
    }
    CHECK_OK(rc_store_merge_wait(s));
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 4096, false);
    size_t live = 0;
    for (int k = 0; k < NKEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "k%03d", k);
        check_value(s, key, model[k]);
        live += model[k] != NULL;
        free(model[k]);
    }
    CHECK_EQ(rc_store_count(s), live);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
}

TEST(merge_after_the_file_size_was_lowered)
{
    /* Files written under a larger file size hold several of the new size's worth: the
     * merge must still have room for all its outputs. */
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 1 << 16, false);
    uint64_t rev = 0;
    fill(s, 1500, 1, &rev);
    char *before = dump_store(s);
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 4096, false);
    CHECK_OK(rc_store_merge(s));
    char *after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

/*
 * test_store_alloc.c — every store operation under an allocator that fails on the Nth call:
 * for N = 0, 1, 2, ... until the operation succeeds, the failing calls must return
 * RC_ENOMEM, change nothing that can be seen, and leak nothing (LeakSanitizer checks each
 * test's process at exit).
 */
#include "store_util.h"

#include "common/log.h"

static void seed_data(struct rc_store *s, int n, uint64_t *rev)
{
    char k[32], v[64];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        snprintf(v, sizeof v, "value-%d", i);
        CHECK_OK(rc_store_put(s, k, strlen(k), v, strlen(v), i % 7 == 0 ? 99999999 : 0, ++*rev));
    }
}

/* Runs op with the Nth allocation failing, for every N until it succeeds; after each
 * failure the contents must equal those before. Returns the number of failures seen. */
static int fail_each_allocation(struct rc_store *s, int (*op)(struct rc_store *, void *), void *arg)
{
    char *before = dump_store(s);
    int failures = 0;
    for (long n = 0;; n++) {
        rc_alloc_fail_after(n);
        int rc = op(s, arg);
        rc_alloc_fail_after(-1);
        if (rc == 0)
            break;
        CHECK_MSG(rc == RC_ENOMEM, "allocation %ld failing gave rc %d", n, rc);
        char *now = dump_store(s);
        CHECK_MSG(strcmp(now, before) == 0, "contents changed by a failed call (n=%ld)", n);
        free(now);
        failures++;
        CHECK(n < 10000);
    }
    free(before);
    return failures;
}

static int op_put_new(struct rc_store *s, void *arg)
{
    uint64_t *rev = arg;
    return rc_store_put(s, "zz-new", 6, "fresh", 5, 0, *rev + 1);
}

static int op_put_replace(struct rc_store *s, void *arg)
{
    uint64_t *rev = arg;
    return rc_store_put(s, "key00003", 8, "replaced", 8, 0, *rev + 2);
}

static int op_delete(struct rc_store *s, void *arg)
{
    uint64_t *rev = arg;
    return rc_store_delete(s, "key00004", 8, *rev + 3);
}

static int op_clear(struct rc_store *s, void *arg)
{
    uint64_t *rev = arg;
    return rc_store_clear(s, *rev + 10);
}

static int op_get(struct rc_store *s, void *arg)
{
    struct rc_buf b = {0};
    int rc = rc_store_get(s, "key00005", 8, &b, NULL);
    rc_free(b.data);
    return rc;
}

static int op_prefix_scan(struct rc_store *s, void *arg)
{
    struct collect c = {0};
    int rc = rc_store_scan_prefix(s, "key0001", 7, true, 0, true, collect_fn, &c);
    free(c.text);
    return rc;
}

static int op_view(struct rc_store *s, void *arg)
{
    struct rc_store_view *v;
    int rc = rc_store_view_open(s, &v);
    if (rc == 0)
        rc_store_view_close(v);
    return rc;
}

static int op_merge(struct rc_store *s, void *arg)
{
    return rc_store_merge(s);
}

TEST(write_and_read_operations_survive_allocation_failures)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    struct rc_store *s = open_store_opts(test_tmpdir(), 8192, false);
    uint64_t rev = 0;
    seed_data(s, 400, &rev); /* several files, so writes may roll */
    fail_each_allocation(s, op_put_new, &rev);
    check_value(s, "zz-new", "fresh");
    fail_each_allocation(s, op_put_replace, &rev);
    check_value(s, "key00003", "replaced");
    fail_each_allocation(s, op_delete, &rev);
    check_value(s, "key00004", NULL);
    fail_each_allocation(s, op_get, NULL);
    fail_each_allocation(s, op_prefix_scan, NULL);
    fail_each_allocation(s, op_view, NULL);
    int merge_failures = fail_each_allocation(s, op_merge, NULL);
    CHECK(merge_failures > 0);
    /* No failed merge may leave an output behind that a later merge cannot see: delete a
     * key, merge (which drops its tombstone), reopen, and the key must stay deleted. */
    CHECK_OK(rc_store_delete(s, "key00007", 8, ++rev));
    CHECK_OK(rc_store_merge(s));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    CHECK_OK(rc_store_close(s));
    s = open_store_opts(dir, 8192, false);
    check_value(s, "key00007", NULL);
    fail_each_allocation(s, op_clear, &rev);
    CHECK_EQ(rc_store_count(s), 0);
    CHECK_OK(rc_store_close(s));
}

TEST(open_survives_allocation_failures)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_opts(dir, 8192, false);
    uint64_t rev = 0;
    seed_data(s, 300, &rev);
    char *before = dump_store(s);
    CHECK_OK(rc_store_close(s));
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.max_file_bytes = 8192;
    o.clock_ms = test_clock;
    int failures = 0;
    for (long n = 0;; n++) {
        rc_alloc_fail_after(n);
        int rc = rc_store_open(dir, &o, &s);
        rc_alloc_fail_after(-1);
        if (rc == 0)
            break;
        CHECK_MSG(rc == RC_ENOMEM, "allocation %ld failing gave rc %d", n, rc);
        failures++;
        CHECK(n < 100000);
    }
    CHECK(failures > 10);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

/* The same with atomic_revisions, over an incomplete revision that spans files (one of
 * them hinted): every failure is RC_ENOMEM, and the open that succeeds has dropped it. */
TEST(open_with_atomic_revisions_survives_allocation_failures)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    const char *dir = test_tmpdir();
    struct rc_store *s = open_store_atomic(dir, 8192);
    uint64_t rev = 0;
    seed_data(s, 300, &rev);
    CHECK_OK(rc_store_commit_revision(s, rev));
    char *before = dump_store(s);
    char k[32], v[600];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 40; i++) { /* several files' worth, never committed */
        snprintf(k, sizeof k, "late%03d", i);
        CHECK_OK(rc_store_put(s, k, strlen(k), v, sizeof v, 0, rev + 1));
    }
    CHECK_OK(rc_store_close(s));
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.max_file_bytes = 8192;
    o.clock_ms = test_clock;
    o.atomic_revisions = true;
    int failures = 0;
    for (long n = 0;; n++) {
        rc_alloc_fail_after(n);
        int rc = rc_store_open(dir, &o, &s);
        rc_alloc_fail_after(-1);
        if (rc == 0)
            break;
        CHECK_MSG(rc == RC_ENOMEM, "allocation %ld failing gave rc %d", n, rc);
        failures++;
        CHECK(n < 100000);
    }
    CHECK(failures > 10);
    char *after = dump_store(s);
    CHECK_STR(after, before);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    CHECK_OK(rc_store_close(s));
    free(after);
    free(before);
}

/*
 * test_fsm.c — the log entry codec and the state machine: round trips, refusal of
 * malformed entries, every normalised command's effect and reply, and determinism
 * (applying the same entries to two stores gives the same contents and replies).
 */
#include "store_util.h"

#include "cluster/entry.h"
#include "cluster/fsm.h"
#include "resp/reply.h"

#include "common/log.h"

/* ============================== helpers ============================== */

/* Builds an entry from commands written as strings split on spaces ("SET k v"). */
static void build(struct entry_builder *b, int64_t now, const char **cmds, size_t n)
{
    CHECK_OK(entry_builder_start(b));
    for (size_t i = 0; i < n; i++) {
        struct resp_arg args[16];
        char *copy = strdup(cmds[i]), *save = NULL;
        size_t argc = 0;
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
            args[argc++] = (struct resp_arg){w, strlen(w)};
        CHECK_OK(entry_builder_add(b, argc, args));
        free(copy);
    }
    entry_builder_finish(b, now);
}

struct replies {
    char text[8192];
    size_t len;
};

static void collect_reply(uint32_t index, const char *reply, size_t len, void *ctx)
{
    struct replies *r = ctx;
    CHECK(r->len + len < sizeof r->text);
    memcpy(r->text + r->len, reply, len);
    r->len += len;
    r->text[r->len] = '\0';
}

/* Applies commands as one entry at revision rev and time now; returns the replies. */
static char *apply(struct rc_store *s, uint64_t rev, int64_t now, const char **cmds, size_t n)
{
    struct entry_builder b;
    build(&b, now, cmds, n);
    struct replies r = {0};
    CHECK_OK(fsm_apply(s, b.buf.data, b.buf.len, rev, collect_reply, &r));
    entry_builder_free(&b);
    return strdup(r.text);
}

#define APPLY_EXPECT(store, rev, now, expect, ...)                                                 \
    do {                                                                                           \
        const char *cmds_[] = {__VA_ARGS__};                                                       \
        char *got_ = apply(store, rev, now, cmds_, sizeof cmds_ / sizeof *cmds_);                  \
        CHECK_STR(got_, expect);                                                                   \
        free(got_);                                                                                \
    } while (0)

/* ============================== codec ============================== */

TEST(entry_roundtrip_with_binary_and_empty_args)
{
    struct entry_builder b;
    CHECK_OK(entry_builder_start(&b));
    struct resp_arg a1[] = {{"SET", 3}, {"k\0y", 3}, {"", 0}};
    struct resp_arg a2[] = {{"DEL", 3}};
    CHECK_OK(entry_builder_add(&b, 3, a1));
    CHECK_OK(entry_builder_add(&b, 1, a2));
    entry_builder_finish(&b, 123456789);
    struct entry_reader r;
    CHECK_OK(entry_reader_init(&r, b.buf.data, b.buf.len));
    CHECK_EQ(r.now_ms, 123456789);
    CHECK_EQ(r.count, 2);
    struct resp_argv argv;
    resp_argv_init(&argv);
    CHECK_OK(entry_reader_next(&r, &argv));
    CHECK_EQ(argv.count, 3);
    CHECK_MEM(argv.args[1].ptr, argv.args[1].len, "k\0y", 3);
    CHECK_EQ(argv.args[2].len, 0);
    CHECK_OK(entry_reader_next(&r, &argv));
    CHECK_EQ(argv.count, 1);
    CHECK_EQ(entry_reader_next(&r, &argv), RC_ENOTFOUND);
    resp_argv_free(&argv);
    /* Every truncation and every corrupted length is refused before any use. */
    for (size_t cut = 0; cut < b.buf.len; cut++)
        CHECK_EQ(entry_reader_init(&r, b.buf.data, cut), RC_EPROTO);
    char *bad = malloc(b.buf.len + 1);
    memcpy(bad, b.buf.data, b.buf.len);
    bad[b.buf.len] = 'x'; /* trailing garbage */
    CHECK_EQ(entry_reader_init(&r, bad, b.buf.len + 1), RC_EPROTO);
    memcpy(bad + 20, "\xff\xff\xff\x7f", 4); /* first arg length: huge */
    CHECK_EQ(entry_reader_init(&r, bad, b.buf.len), RC_EPROTO);
    bad[0] = 9; /* unknown version */
    CHECK_EQ(entry_reader_init(&r, bad, b.buf.len), RC_EPROTO);
    free(bad);
    entry_builder_free(&b);
}

/* ============================== commands ============================== */

TEST(fsm_set_variants)
{
    struct rc_store *s = open_store(test_tmpdir());
    APPLY_EXPECT(s, 1, 1000, "+OK\r\n$-1\r\n$1\r\nv\r\n+OK\r\n", "SET k v", "SET k w NX",
                 "SET k w NX GET", "SET k w XX");
    APPLY_EXPECT(s, 2, 1000, "$1\r\nw\r\n$-1\r\n:1\r\n:0\r\n", "SET k x GET", "SET nope y XX GET",
                 "SETNX n 1", "SETNX n 2");
    APPLY_EXPECT(s, 3, 1000, "+OK\r\n+OK\r\n", "SET t 1 PXAT 5000", "SET t 2 KEEPTTL");
    struct rc_item_meta m;
    CHECK_OK(rc_store_get_at(s, "t", 1, 1000, NULL, &m));
    CHECK_EQ(m.expiry_ms, 5000); /* KEEPTTL kept it */
    /* A PXAT not after the entry's time leaves the key absent. */
    APPLY_EXPECT(s, 4, 6000, "+OK\r\n$-1\r\n", "SET gone 1 PXAT 6000", "GETDEL gone");
    APPLY_EXPECT(s, 5, 1000, "-ERR syntax error\r\n", "SET k v BOGUS");
    CHECK_OK(rc_store_close(s));
}

TEST(fsm_counters_and_errors_change_nothing)
{
    struct rc_store *s = open_store(test_tmpdir());
    APPLY_EXPECT(s, 1, 0, ":5\r\n:3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n",
                 "INCRBY c 5", "INCRBY c -2", "SET str abc", "INCRBY str 1");
    check_value(s, "str", "abc");
    APPLY_EXPECT(s, 2, 0, "+OK\r\n-ERR increment or decrement would overflow\r\n",
                 "SET big 9223372036854775807", "INCRBY big 1");
    check_value(s, "big", "9223372036854775807");
    APPLY_EXPECT(s, 3, 0, "$4\r\n10.5\r\n$3\r\n5.5\r\n-ERR value is not a valid float\r\n",
                 "INCRBYFLOAT f 10.5", "INCRBYFLOAT f -5", "INCRBYFLOAT str 1");
    APPLY_EXPECT(s, 4, 0, ":6\r\n:11\r\n$11\r\nabcdef\0\0\0\0x\r\n", "APPEND a abcdef",
                 "SETRANGE a 10 x", "GETDEL a");
    /* APPEND's limit is the proposer's, carried in the entry: within it, then beyond it. */
    APPLY_EXPECT(s, 5, 0,
                 ":3\r\n:5\r\n-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
                 "-ERR syntax error\r\n",
                 "APPEND l abc 5", "APPEND l de 5", "APPEND l f 5", "APPEND l f -1");
    check_value(s, "l", "abcde");
    CHECK_OK(rc_store_close(s));
}

TEST(fsm_expiry_rename_copy_and_ranges)
{
    struct rc_store *s = open_store(test_tmpdir());
    APPLY_EXPECT(s, 1, 1000, "+OK\r\n:1\r\n:0\r\n:1\r\n:0\r\n:1\r\n", "MSET a 1 b 2 c 3",
                 "PEXPIREAT a 9000", "PEXPIREAT a 8000 GT", "PEXPIREAT a 8000 LT",
                 "PEXPIREAT b 5000 XX", "PERSIST a");
    APPLY_EXPECT(s, 2, 1000, "+OK\r\n-ERR no such key\r\n:0\r\n:1\r\n:0\r\n", "RENAME a z",
                 "RENAME a y", "RENAMENX z b", "COPY z y", "COPY z y");
    APPLY_EXPECT(s, 3, 1000, ":1\r\n", "COPY z y REPLACE");
    APPLY_EXPECT(s, 4, 1000, "*2\r\n$1\r\nb\r\n$1\r\nc\r\n:1\r\n", "DELRANGE [b (y", "PDEL z*");
    char *d = dump_store(s);
    CHECK_STR(d, "y=1,");
    free(d);
    APPLY_EXPECT(s, 5, 1000, "+OK\r\n", "FLUSHALL");
    CHECK_EQ(rc_store_count(s), 0);
    /* DELEXPIRED deletes only what is expired at the entry's time. */
    APPLY_EXPECT(s, 6, 1000, "+OK\r\n+OK\r\n", "SET e1 x PXAT 2000", "SET e2 x PXAT 4000");
    APPLY_EXPECT(s, 7, 3000, ":1\r\n", "DELEXPIRED e1 e2 missing");
    CHECK_EQ(rc_store_count(s), 1);
    APPLY_EXPECT(s, 8, 0, "-ERR unknown replicated command 'NOPE'\r\n", "NOPE x");
    CHECK_EQ_U(rc_store_applied_revision(s), 7);
    CHECK_OK(rc_store_close(s));
}

/* ============================== determinism ============================== */

TEST(fsm_is_deterministic_across_stores)
{
    uint64_t seed = test_seed(77), rng = seed;
    char d1[4200], d2[4200];
    snprintf(d1, sizeof d1, "%s/a", test_tmpdir());
    snprintf(d2, sizeof d2, "%s/b", test_tmpdir());
    struct rc_store *s1 = open_store(d1), *s2 = open_store(d2);
    const char *verbs[] = {"SET",  "INCRBY", "APPEND", "DEL",         "PEXPIREAT", "RENAME",
                           "COPY", "SETNX",  "GETDEL", "INCRBYFLOAT", "SETRANGE",  "PDEL"};
    for (uint64_t rev = 1; rev <= 400; rev++) {
        char cmds[8][64];
        const char *ptrs[8];
        size_t n = 1 + test_rand(&rng) % 8;
        for (size_t i = 0; i < n; i++) {
            const char *v = verbs[test_rand(&rng) % 12];
            int k = (int)(test_rand(&rng) % 10), k2 = (int)(test_rand(&rng) % 10);
            int num = (int)(test_rand(&rng) % 5000);
            if (!strcmp(v, "PDEL"))
                snprintf(cmds[i], sizeof cmds[i], "PDEL k%d*", k);
            else if (!strcmp(v, "RENAME") || !strcmp(v, "COPY"))
                snprintf(cmds[i], sizeof cmds[i], "%s k%d k%d", v, k, k2);
            else if (!strcmp(v, "DEL") || !strcmp(v, "GETDEL"))
                snprintf(cmds[i], sizeof cmds[i], "%s k%d", v, k);
            else if (!strcmp(v, "SETRANGE"))
                snprintf(cmds[i], sizeof cmds[i], "SETRANGE k%d %d z", k, num % 20);
            else
                snprintf(cmds[i], sizeof cmds[i], "%s k%d %d", v, k, num);
            ptrs[i] = cmds[i];
        }
        /* The same entry, applied at different wall-clock moments, must agree. */
        int64_t now = 1000 + (int64_t)rev * 10;
        char *r1 = apply(s1, rev, now, ptrs, n);
        char *r2 = apply(s2, rev, now, ptrs, n);
        CHECK_MSG(strcmp(r1, r2) == 0, "seed %llu rev %llu: replies differ",
                  (unsigned long long)seed, (unsigned long long)rev);
        free(r1);
        free(r2);
    }
    char *x = dump_store(s1), *y = dump_store(s2);
    CHECK_STR(x, y);
    free(x);
    free(y);
    CHECK_OK(rc_store_close(s1));
    CHECK_OK(rc_store_close(s2));
}

/* ============================== atomicity ============================== */

/*
 * An entry of several commands, non-idempotent ones among them, on a store opened with
 * atomic_revisions: the data file cut at every byte of the entry's records reopens either
 * before the entry or after all of it, never in between; and applying the entry again
 * after a reopen before it gives exactly the state after it (INCRBY and APPEND once).
 */
TEST(fsm_entry_is_all_or_nothing_after_a_crash)
{
    char base[4200], work[4200], path[4300];
    snprintf(base, sizeof base, "%s/base", test_tmpdir());
    struct rc_store *s = open_store_atomic(base, 1 << 20);
    APPLY_EXPECT(s, 1, 1000, "+OK\r\n:10\r\n:4\r\n", "SET a 1", "INCRBY n 10", "APPEND t head");
    APPLY_EXPECT(s, 2, 1000, "+OK\r\n+OK\r\n", "SET gone x", "MSET p 1 q 2");
    APPLY_EXPECT(s, 3, 1000, ":0\r\n", "DEL nothing"); /* writes nothing, still committed */
    char *before = dump_store(s);
    CHECK_EQ_U(rc_store_applied_revision(s), 3);
    const char *entry[] = {"SET a 2",      "INCRBY n 5", "APPEND t -tail", "DEL gone",
                           "MSET p 3 r 4", "INCRBY n 7", "RENAME q q2"};
    const char *replies = "+OK\r\n:15\r\n:9\r\n:1\r\n+OK\r\n:22\r\n+OK\r\n";
    char *got = apply(s, 4, 1000, entry, sizeof entry / sizeof *entry);
    CHECK_STR(got, replies);
    free(got);
    char *after = dump_store(s);
    CHECK_EQ_U(rc_store_applied_revision(s), 4);
    CHECK_OK(rc_store_close(s));

    snprintf(path, sizeof path, "%s/000001.data", base);
    uint64_t ends[64], revs[64];
    int kinds[64];
    size_t n = record_ends_kinds(path, ends, revs, kinds, 64);
    CHECK(n > 8 && kinds[n - 1] == RECORD_COMMIT && revs[n - 1] == 4);
    size_t prev = n - 2;
    while (kinds[prev] != RECORD_COMMIT)
        prev--;
    CHECK_EQ_U(revs[prev], 3);
    CHECK(n - 2 - prev >= 7); /* the entry wrote several records */
    rc_log_set_level(RC_LOG_WARNING);
    for (uint64_t cut = ends[prev]; cut <= ends[n - 1]; cut++) {
        snprintf(work, sizeof work, "%s/w", test_tmpdir());
        test_copy_dir(base, work);
        snprintf(path, sizeof path, "%s/000001.hint", work);
        CHECK(unlink(path) == 0); /* as after a crash: the active file has no hint */
        snprintf(path, sizeof path, "%s/000001.data", work);
        CHECK(truncate(path, (off_t)cut) == 0);
        s = open_store_atomic(work, 1 << 20);
        char *d = dump_store(s);
        uint64_t applied = rc_store_applied_revision(s);
        bool whole = cut == ends[n - 1];
        CHECK_MSG(strcmp(d, whole ? after : before) == 0 && applied == (whole ? 4u : 3u),
                  "cut at %llu: applied %llu, contents %s", (unsigned long long)cut,
                  (unsigned long long)applied, d);
        free(d);
        if (!whole) { /* the log replays the entry after the restart */
            got = apply(s, 4, 1000, entry, sizeof entry / sizeof *entry);
            CHECK_STR(got, replies);
            free(got);
            d = dump_store(s);
            CHECK_STR(d, after);
            free(d);
        }
        CHECK_OK(rc_store_close(s));
        test_remove_dir(work);
    }
    free(before);
    free(after);
}

/* An entry that fails part-way with a store error (here: out of memory at every possible
 * allocation in turn) gets no commit: the part written is dropped at reopen, and applying
 * the entry again then gives all of it. */
TEST(fsm_entry_failed_by_the_store_is_not_committed)
{
    const char *cmds[] = {"SET b 2", "SET c 3", "INCRBY a 5", "APPEND b x"};
    struct entry_builder b;
    build(&b, 1000, cmds, sizeof cmds / sizeof *cmds);
    rc_log_set_level(RC_LOG_ERROR + 1);
    for (long n = 0;; n++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/n%ld", test_tmpdir(), n);
        struct rc_store *s = open_store_atomic(dir, 1 << 20);
        APPLY_EXPECT(s, 1, 1000, "+OK\r\n", "SET a 1");
        rc_alloc_fail_after(n);
        int rc = fsm_apply(s, b.buf.data, b.buf.len, 2, NULL, NULL);
        rc_alloc_fail_after(-1);
        if (rc == 0) {
            char *d = dump_store(s);
            CHECK_STR(d, "a=6,b=2x,c=3,");
            free(d);
            CHECK_EQ_U(rc_store_applied_revision(s), 2);
            CHECK_OK(rc_store_close(s));
            break;
        }
        CHECK_EQ(rc, RC_ENOMEM);
        CHECK_EQ_U(rc_store_applied_revision(s), 1);
        CHECK_OK(rc_store_close(s)); /* the node stops */
        s = open_store_atomic(dir, 1 << 20);
        char *d = dump_store(s);
        CHECK_MSG(strcmp(d, "a=1,") == 0, "failing at allocation %ld: %s", n, d);
        free(d);
        CHECK_OK(fsm_apply(s, b.buf.data, b.buf.len, 2, NULL, NULL));
        d = dump_store(s);
        CHECK_STR(d, "a=6,b=2x,c=3,");
        free(d);
        CHECK_OK(rc_store_close(s));
    }
    entry_builder_free(&b);
}

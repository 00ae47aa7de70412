/* test_raft_logstore.c — the durable Raft log (src/raft/logstore.c) on real files. */
#include "test.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raft/logstore.h"
#include "raftcask.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ============================== helpers ============================== */

/* Entry data is a function of (index, term), so any entry read back can be checked. */
#define SEG_HDR 36 /* a segment header record: 12 + first index, prev term, nonce */

static uint32_t data_len_of(uint64_t index)
{
    return (uint32_t)(3 + index % 41);
}

static void fill_data(uint8_t *buf, uint64_t index, uint64_t term)
{
    for (uint32_t j = 0; j < data_len_of(index); j++)
        buf[j] = (uint8_t)(index * 7 + term * 13 + j);
}

static void log_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", test_tmpdir(), name);
}

static int open_small(const char *dir, uint64_t seg_bytes, struct logstore **ls)
{
    struct logstore_options o;
    logstore_options_default(&o);
    o.segment_size_bytes = seg_bytes;
    o.prealloc_bytes = 0; /* files hold records only; preallocation has its own tests */
    return logstore_open(dir, &o, ls);
}

/* Appends entries [lo, hi) of the given term in batches of `batch`. */
static int append_range(struct logstore *ls, uint64_t lo, uint64_t hi, uint64_t term, size_t batch)
{
    struct raft_entry ents[64];
    uint8_t bufs[64][64];
    for (uint64_t i = lo; i < hi;) {
        size_t n = 0;
        for (; n < batch && n < 64 && i < hi; n++, i++) {
            fill_data(bufs[n], i, term);
            ents[n] = (struct raft_entry){term, i, RAFT_ENTRY_NORMAL, data_len_of(i), bufs[n]};
        }
        int rc = logstore_append(ls, ents, n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Checks through the raft_storage that entries [lo, hi) exist with term term_of(index). */
static void check_range(struct logstore *ls, uint64_t lo, uint64_t hi,
                        uint64_t (*term_of)(uint64_t))
{
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft_entry out[64];
    for (uint64_t i = lo; i < hi;) {
        uint64_t end = hi - i > 64 ? i + 64 : hi;
        size_t n = 0;
        CHECK_OK(st.entries(st.ctx, i, end, (size_t)-1, out, &n));
        CHECK_EQ_U(n, end - i);
        for (size_t k = 0; k < n; k++, i++) {
            uint8_t want[64];
            uint64_t t = term_of(i);
            fill_data(want, i, t);
            CHECK_EQ_U(out[k].index, i);
            CHECK_EQ_U(out[k].term, t);
            CHECK_MEM(out[k].data, out[k].len, want, data_len_of(i));
            uint64_t t2;
            CHECK_OK(st.term(st.ctx, i, &t2));
            CHECK_EQ_U(t2, t);
        }
    }
}

static uint64_t term1(uint64_t index)
{
    (void)index;
    return 1;
}

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        n += l >= sl && strcmp(de->d_name + l - sl, suffix) == 0;
    }
    closedir(d);
    return n;
}

/* Path of the segment with the highest (or lowest) first index. */
static void seg_file(const char *dir, int want_last, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    char best[300] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "log-", 4) != 0)
            continue;
        if (!best[0] || (want_last ? strcmp(de->d_name, best) > 0 : strcmp(de->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", de->d_name);
    }
    closedir(d);
    CHECK(best[0] != 0);
    snprintf(out, cap, "%s/%s", dir, best);
}

struct captured {
    int n;
    char lines[8][512];
};

static void capture_sink(enum rc_log_level level, const char *line, void *ctx)
{
    (void)level;
    struct captured *c = ctx;
    if (c->n < 8)
        snprintf(c->lines[c->n++], sizeof c->lines[0], "%s", line);
}

static int captured_has(const struct captured *c, const char *a, const char *b)
{
    for (int i = 0; i < c->n; i++)
        if (strstr(c->lines[i], a) && (!b || strstr(c->lines[i], b)))
            return 1;
    return 0;
}

/* ============================== round trips ============================== */

TEST(append_reopen_round_trip_across_segments)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 512, &ls));
    CHECK_EQ_U(logstore_first_index(ls), 1);
    CHECK_EQ_U(logstore_last_index(ls), 0);
    CHECK_OK(append_range(ls, 1, 201, 1, 7));
    CHECK_OK(logstore_sync(ls));
    CHECK(logstore_segment_count(ls) > 5);
    check_range(ls, 1, 201, term1);
    size_t segs = logstore_segment_count(ls);
    logstore_close(ls);
    CHECK_EQ_U(count_files(dir, ".seg"), segs);

    CHECK_OK(open_small(dir, 512, &ls));
    CHECK_EQ_U(logstore_first_index(ls), 1);
    CHECK_EQ_U(logstore_last_index(ls), 200);
    CHECK_EQ_U(logstore_segment_count(ls), segs);
    check_range(ls, 1, 201, term1);
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t t = 9;
    CHECK_OK(st.term(st.ctx, 0, &t));
    CHECK_EQ_U(t, 0);
    CHECK_EQ(st.term(st.ctx, 201, &t), RC_ENOTFOUND);
    /* Appending after a reopen continues the last segment. */
    CHECK_OK(append_range(ls, 201, 231, 1, 3));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 512, &ls));
    check_range(ls, 1, 231, term1);
    logstore_close(ls);
}

TEST(entries_respects_max_bytes)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 300, &ls));
    CHECK_OK(append_range(ls, 1, 41, 1, 5));
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft_entry out[40];
    size_t n = 0;
    CHECK_OK(st.entries(st.ctx, 3, 40, 0, out, &n));
    CHECK_EQ_U(n, 1); /* always at least one */
    CHECK_EQ_U(out[0].index, 3);
    size_t three = data_len_of(5) + data_len_of(6) + data_len_of(7);
    CHECK_OK(st.entries(st.ctx, 5, 40, three, out, &n));
    CHECK_EQ_U(n, 3);
    CHECK_OK(st.entries(st.ctx, 5, 40, three - 1, out, &n));
    CHECK_EQ_U(n, 2);
    /* A range spanning several segments in one call. */
    CHECK(logstore_segment_count(ls) > 3);
    CHECK_OK(st.entries(st.ctx, 1, 41, (size_t)-1, out, &n));
    CHECK_EQ_U(n, 40);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_U(out[i].index, i + 1);
    CHECK_EQ(st.entries(st.ctx, 0, 5, 100, out, &n), RC_ENOTFOUND);
    CHECK_EQ(st.entries(st.ctx, 30, 42, 100, out, &n), RC_ENOTFOUND);
    logstore_close(ls);
}

static uint64_t term_trunc_inside(uint64_t index)
{
    return index >= 40 ? 2 : 1;
}

TEST(truncate_conflicting_suffix_inside_a_segment)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_OK(append_range(ls, 1, 51, 1, 10));
    CHECK_OK(logstore_sync(ls));
    CHECK_OK(append_range(ls, 40, 46, 2, 6));
    CHECK_EQ_U(logstore_last_index(ls), 45);
    CHECK_OK(logstore_sync(ls));
    check_range(ls, 1, 46, term_trunc_inside);
    logstore_close(ls);
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_EQ_U(logstore_last_index(ls), 45);
    check_range(ls, 1, 46, term_trunc_inside);
    /* Truncating everything (at the first index) leaves a valid, empty segment. */
    CHECK_OK(append_range(ls, 1, 3, 2, 2));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_EQ_U(logstore_last_index(ls), 2);
    logstore_close(ls);
}

static uint64_t term_trunc_across(uint64_t index)
{
    return index >= 20 ? 3 : 1;
}

TEST(truncate_conflicting_suffix_across_segments)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 201, 1, 9));
    CHECK_OK(logstore_sync(ls));
    size_t before = logstore_segment_count(ls);
    CHECK_OK(append_range(ls, 20, 26, 3, 6));
    CHECK(logstore_segment_count(ls) < before);
    CHECK_EQ_U(count_files(dir, ".seg"), logstore_segment_count(ls));
    CHECK_EQ_U(logstore_last_index(ls), 25);
    CHECK_OK(append_range(ls, 26, 60, 3, 4)); /* and grow again across new segments */
    CHECK_OK(logstore_sync(ls));
    check_range(ls, 1, 60, term_trunc_across);
    logstore_close(ls);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ_U(logstore_last_index(ls), 59);
    check_range(ls, 1, 60, term_trunc_across);
    /* Out-of-range appends are refused. */
    CHECK_OK(append_range(ls, 1, 1, 3, 1));
    struct raft_entry gap = {3, 70, RAFT_ENTRY_NORMAL, 0, NULL};
    CHECK_EQ(logstore_append(ls, &gap, 1), RC_EINVAL);
    logstore_close(ls);
}

static uint64_t term_compact(uint64_t index)
{
    return index > 300 ? 5 : 1;
}

/* Appends entries 1..200 of term 1 and compacts to 150: some segments go, files and store
 * agree. */
static void fill_and_compact_to_150(struct logstore *ls, const char *dir)
{
    CHECK_OK(append_range(ls, 1, 201, 1, 9));
    CHECK_OK(logstore_sync(ls));
    size_t before = logstore_segment_count(ls);
    CHECK_OK(logstore_compact(ls, 150, 1));
    CHECK(logstore_segment_count(ls) < before);
    CHECK_EQ_U(count_files(dir, ".seg"), logstore_segment_count(ls));
}

TEST(compaction_then_reopen)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    fill_and_compact_to_150(ls, dir);
    CHECK_EQ_U(logstore_first_index(ls), 151);
    CHECK_EQ_U(logstore_last_index(ls), 200);
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t t = 0;
    CHECK_OK(st.term(st.ctx, 150, &t));
    CHECK_EQ_U(t, 1);
    check_range(ls, 151, 201, term1);
    struct raft_snapshot_meta meta;
    CHECK_OK(st.snapshot(st.ctx, &meta));
    CHECK_EQ_U(meta.index, 150);
    CHECK_EQ_U(meta.term, 1);
    logstore_close(ls);

    CHECK_OK(open_small(dir, 400, &ls));
    st = logstore_raft_storage(ls);
    CHECK_EQ_U(logstore_first_index(ls), 151);
    CHECK_EQ_U(logstore_last_index(ls), 200);
    CHECK_OK(st.term(st.ctx, 150, &t));
    CHECK_EQ_U(t, 1);
    check_range(ls, 151, 201, term1);
    /* A snapshot beyond the log replaces it entirely. */
    CHECK_OK(logstore_compact(ls, 300, 5));
    CHECK_EQ_U(logstore_segment_count(ls), 0);
    CHECK_EQ_U(logstore_first_index(ls), 301);
    CHECK_EQ_U(logstore_last_index(ls), 300);
    CHECK_OK(append_range(ls, 301, 311, 5, 3));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 400, &ls));
    st = logstore_raft_storage(ls);
    CHECK_EQ_U(logstore_first_index(ls), 301);
    CHECK_EQ_U(logstore_last_index(ls), 310);
    CHECK_OK(st.term(st.ctx, 300, &t));
    CHECK_EQ_U(t, 5);
    check_range(ls, 301, 311, term_compact);
    logstore_close(ls);
}

static uint64_t term_tail(uint64_t index)
{
    return index >= 29990 ? 2 : 1;
}

TEST(recent_entries_come_from_the_tail_cache_and_match_the_files)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 64 << 20, &ls));
    CHECK_OK(append_range(ls, 1, 101, 1, 10));
    /* Everything appended so far is in the cache: no pread, synced or not. */
    check_range(ls, 91, 101, term1);
    check_range(ls, 1, 101, term1);
    CHECK_OK(logstore_sync(ls));
    check_range(ls, 1, 101, term1);
    CHECK_EQ_U(logstore_entry_preads(ls), 0);
    /* Past the cache's size (~75 bytes a record here, 1 MiB cached), the oldest entries
     * come from the file, the newest still from the cache. */
    CHECK_OK(append_range(ls, 101, 30001, 1, 64));
    check_range(ls, 29901, 30001, term1);
    CHECK_EQ_U(logstore_entry_preads(ls), 0);
    check_range(ls, 1, 30001, term1);
    uint64_t preads = logstore_entry_preads(ls);
    CHECK(preads > 0);
    /* A truncation empties the cache; what follows is cached again, and reads agree with
     * the files (reopened) on both sides of the cut. */
    CHECK_OK(append_range(ls, 29990, 30001, 2, 4));
    check_range(ls, 29990, 30001, term_tail);
    CHECK_EQ_U(logstore_entry_preads(ls), preads);
    check_range(ls, 29950, 30001, term_tail);
    CHECK(logstore_entry_preads(ls) > preads);
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 64 << 20, &ls));
    check_range(ls, 1, 30001, term_tail);
    CHECK(logstore_entry_preads(ls) > 0);
    logstore_close(ls);
}

TEST(hard_state_round_trip)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_OK(append_range(ls, 1, 11, 3, 10));
    struct raft_hard_state hs = {3, 2, 10}, got;
    CHECK_OK(logstore_set_hard_state(ls, &hs));
    logstore_hard_state(ls, &got);
    CHECK_EQ_U(got.term, 0); /* not durable until sync */
    CHECK_OK(logstore_sync(ls));
    logstore_hard_state(ls, &got);
    CHECK_EQ_U(got.term, 3);
    /* Set but never synced: lost on close, as after a crash. */
    struct raft_hard_state hs2 = {4, 1, 10};
    CHECK_OK(logstore_set_hard_state(ls, &hs2));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    logstore_hard_state(ls, &got);
    CHECK_EQ_U(got.term, 3);
    CHECK_EQ_U(got.vote, 2);
    CHECK_EQ_U(got.commit, 10);
    logstore_close(ls);
    /* A damaged state file is corruption, never silently a fresh start. */
    char path[4300];
    snprintf(path, sizeof path, "%s/raft-state", dir);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b = 0x5a;
    CHECK_OK(rc_pwrite_all(fd, &b, 1, 20, path));
    close(fd);
    CHECK_EQ(open_small(dir, 1 << 20, &ls), RC_ECORRUPT);
}

/* ============================== crashes and corruption ============================== */

static uint64_t first_index_of_seg(const char *path)
{
    const char *name = strrchr(path, '/') + 1;
    return strtoull(name + 4, NULL, 10);
}

/* Cuts (or zero-fills) the newest segment at every offset of its last few records. */
static void torn_tail_at_every_offset(int zero_fill)
{
    char base[4200], work[4200], last_seg[4400];
    log_dir(base, sizeof base, "base");
    log_dir(work, sizeof work, "work");
    struct logstore *ls;
    CHECK_OK(open_small(base, 1000, &ls));
    CHECK_OK(append_range(ls, 1, 41, 1, 4));
    struct raft_hard_state hs = {1, 1, 30};
    CHECK_OK(logstore_set_hard_state(ls, &hs));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    seg_file(base, 1, last_seg, sizeof last_seg);
    uint64_t first = first_index_of_seg(last_seg);
    CHECK(first > 1); /* several segments: only the newest may have a torn tail */
    struct stat st;
    CHECK_OK(stat(last_seg, &st));
    uint64_t size = (uint64_t)st.st_size;
    /* Record ends within the newest segment: header (SEG_HDR bytes), then the entries. */
    uint64_t ends[64];
    uint64_t off = SEG_HDR;
    for (uint64_t i = first; i <= 40; i++) {
        off += 12 + 21 + data_len_of(i);
        ends[i - first] = off;
    }
    CHECK_EQ_U(off, size);
    /* Tear records 37..40, or all of the newest segment's if it starts later. */
    uint64_t from = first >= 37 ? SEG_HDR : ends[36 - first];
    void *orig;
    size_t orig_len;
    CHECK_OK(rc_read_file(last_seg, &orig, &orig_len));
    for (uint64_t cut = from; cut < size; cut++) {
        int already_zero = 1;
        for (uint64_t i = cut; i < size; i++)
            already_zero &= ((const uint8_t *)orig)[i] == 0;
        if (zero_fill && already_zero)
            continue; /* the data ends in zero bytes: zero-filling them tears nothing */
        test_copy_dir(base, work);
        char seg[9000];
        snprintf(seg, sizeof seg, "%s/%s", work, strrchr(last_seg, '/') + 1);
        if (zero_fill) {
            static const uint8_t zeros[4096];
            CHECK(size - cut <= sizeof zeros);
            int fd = open(seg, O_RDWR);
            CHECK(fd >= 0);
            CHECK_OK(rc_pwrite_all(fd, zeros, size - cut, (off_t)cut, seg));
            close(fd);
        } else {
            CHECK_OK(truncate(seg, (off_t)cut));
        }
        uint64_t want_last = first - 1;
        for (uint64_t i = first; i <= 40 && ends[i - first] <= cut; i++)
            want_last = i;
        struct captured cap = {0};
        rc_log_set_sink(capture_sink, &cap);
        int rc = open_small(work, 1000, &ls);
        rc_log_set_sink(NULL, NULL);
        CHECK_MSG(rc == 0, "open after cut at %llu: %d", (unsigned long long)cut, rc);
        CHECK_EQ_U(logstore_last_index(ls), want_last);
        check_range(ls, 1, want_last + 1, term1);
        uint64_t record_start = want_last < first ? SEG_HDR : ends[want_last - first];
        char where[64];
        snprintf(where, sizeof where, "tail at offset %llu", (unsigned long long)record_start);
        if (cut > record_start || zero_fill)
            CHECK_MSG(captured_has(&cap, "cut", where),
                      "no log line for the cut at %llu (%d lines: %s)", (unsigned long long)cut,
                      cap.n, cap.n ? cap.lines[0] : "");
        else
            CHECK_EQ(cap.n, 0); /* cut at a record boundary: nothing was torn */
        /* The store is writable again where the tear was. */
        CHECK_OK(append_range(ls, want_last + 1, 45, 2, 3));
        CHECK_OK(logstore_sync(ls));
        logstore_close(ls);
        CHECK_OK(open_small(work, 1000, &ls));
        CHECK_EQ_U(logstore_last_index(ls), 44);
        logstore_close(ls);
        test_remove_dir(work);
    }
    rc_free(orig);
}

TEST(crash_torn_tail_truncated_at_every_offset)
{
    torn_tail_at_every_offset(0);
}

TEST(crash_zero_filled_tail_at_every_offset)
{
    torn_tail_at_every_offset(1);
}

static int open_prealloc(const char *dir, struct logstore **ls)
{
    struct logstore_options o;
    logstore_options_default(&o);
    o.segment_size_bytes = 2000;
    o.prealloc_bytes = 512;
    return logstore_open(dir, &o, ls);
}

/* The segment files' sizes: sealed ones hold their records only, the active one more. */
static void check_prealloc_sizes(const char *dir, uint64_t last_record_end)
{
    char last[4400];
    seg_file(dir, 1, last, sizeof last);
    struct stat st;
    CHECK_OK(stat(last, &st));
    CHECK((uint64_t)st.st_size > last_record_end);
    CHECK((uint64_t)st.st_size == 2000 || st.st_size % 512 == 0);
}

/*
 * Writes entries [1, hi) in batches with preallocation on, syncs and closes; returns the
 * offset where the newest segment's records end (its path in last) and checks the sizes.
 */
static uint64_t write_prealloc_log(const char *dir, uint64_t hi, size_t batch, size_t *segs,
                                   char *last, size_t cap)
{
    struct logstore *ls;
    CHECK_OK(open_prealloc(dir, &ls));
    CHECK_OK(append_range(ls, 1, hi, 1, batch));
    CHECK_OK(logstore_sync(ls));
    *segs = logstore_segment_count(ls);
    logstore_close(ls);
    seg_file(dir, 1, last, cap);
    uint64_t first = strtoull(strrchr(last, '/') + 5, NULL, 10);
    uint64_t end = SEG_HDR;
    for (uint64_t i = first; i < hi; i++)
        end += 12 + 21 + data_len_of(i);
    check_prealloc_sizes(dir, end);
    return end;
}

TEST(prealloc_zeros_ahead_are_cut_quietly_and_never_sealed)
{
    char dir[4200], last[4400];
    log_dir(dir, sizeof dir, "raft");
    size_t segs;
    uint64_t end = write_prealloc_log(dir, 201, 7, &segs, last, sizeof last);
    CHECK(segs > 3);
    /* Every sealed segment ends with its last record: it reopens alone without a cut. */
    struct logstore *ls;
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_prealloc(dir, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_OK(rc);
    CHECK_EQ(cap.n, 1);
    char where[64];
    snprintf(where, sizeof where, "zero-filled tail at offset %llu", (unsigned long long)end);
    CHECK_MSG(captured_has(&cap, " info ", where), "%s", cap.lines[0]);
    CHECK_EQ_U(logstore_segment_count(ls), segs);
    check_range(ls, 1, 201, term1);
    /* Writable after the cut; a conflicting suffix is replaced in the preallocated file. */
    CHECK_OK(append_range(ls, 201, 231, 1, 3));
    CHECK_OK(append_range(ls, 220, 240, 2, 4));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_prealloc(dir, &ls));
    CHECK_EQ_U(logstore_last_index(ls), 239);
    check_range(ls, 1, 220, term1);
    struct raft_storage rs = logstore_raft_storage(ls);
    uint64_t t = 0;
    CHECK_OK(rs.term(rs.ctx, 239, &t));
    CHECK_EQ_U(t, 2);
    logstore_close(ls);
}

TEST(prealloc_torn_record_in_zeros_is_cut_with_a_warning)
{
    char dir[4200], last[4400];
    log_dir(dir, sizeof dir, "raft");
    size_t segs;
    uint64_t end = write_prealloc_log(dir, 31, 5, &segs, last, sizeof last);
    struct logstore *ls;
    /* Half a record written into the zeros after the last one, as a crash can leave it. */
    int fd = open(last, O_RDWR);
    CHECK(fd >= 0);
    CHECK_OK(rc_pwrite_all(fd, "\x11\x22\x33\x44\x20\0\0\0\x02", 9, (off_t)end, last));
    close(fd);
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_prealloc(dir, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_OK(rc);
    char where[64];
    snprintf(where, sizeof where, "torn tail at offset %llu", (unsigned long long)end);
    CHECK_MSG(captured_has(&cap, " warning ", where), "%d: %s", cap.n, cap.lines[0]);
    CHECK_EQ_U(logstore_segment_count(ls), segs);
    check_range(ls, 1, 31, term1);
    logstore_close(ls);
}

TEST(crash_torn_header_of_new_segment_removes_it)
{
    char dir[4200], last_seg[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 300, &ls));
    CHECK_OK(append_range(ls, 1, 30, 1, 1));
    CHECK_OK(logstore_sync(ls));
    size_t segs = logstore_segment_count(ls);
    logstore_close(ls);
    seg_file(dir, 1, last_seg, sizeof last_seg);
    uint64_t first = first_index_of_seg(last_seg);
    CHECK_OK(truncate(last_seg, 20));
    CHECK_OK(open_small(dir, 300, &ls));
    CHECK_EQ_U(logstore_segment_count(ls), segs - 1);
    CHECK_EQ_U(logstore_last_index(ls), first - 1);
    CHECK_OK(append_range(ls, first, 35, 1, 2));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 300, &ls));
    check_range(ls, 1, 35, term1);
    logstore_close(ls);
}

TEST(corrupt_record_in_sealed_segment_is_refused)
{
    char dir[4200], first_seg[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 101, 1, 10));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    seg_file(dir, 0, first_seg, sizeof first_seg);
    /* Flip a data byte of entry 2 (records after it stay intact). */
    uint64_t at = SEG_HDR + (12 + 21 + data_len_of(1)) + 12 + 21 + 1;
    int fd = open(first_seg, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    CHECK_OK(rc_pread_all(fd, &b, 1, (off_t)at, first_seg));
    b ^= 0x10;
    CHECK_OK(rc_pwrite_all(fd, &b, 1, (off_t)at, first_seg));
    close(fd);
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_small(dir, 400, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_EQ(rc, RC_ECORRUPT);
    char where[64];
    snprintf(where, sizeof where, "offset %llu",
             (unsigned long long)(SEG_HDR + 12 + 21 + data_len_of(1)));
    CHECK_MSG(captured_has(&cap, first_seg, where), "no line naming %s and %s (got %d lines: %s)",
              first_seg, where, cap.n, cap.n ? cap.lines[0] : "");
}

/* Opens dir (segments of seg_bytes) with the log lines captured into *cap. */
static int open_capturing(const char *dir, uint64_t seg_bytes, struct logstore **ls,
                          struct captured *cap)
{
    memset(cap, 0, sizeof *cap);
    rc_log_set_sink(capture_sink, cap);
    int rc = open_small(dir, seg_bytes, ls);
    rc_log_set_sink(NULL, NULL);
    return rc;
}

/* Offset of entry index's record in a first segment holding entries from 1 on. */
static uint64_t record_offset(uint64_t index)
{
    uint64_t off = SEG_HDR;
    for (uint64_t i = 1; i < index; i++)
        off += 12 + 21 + data_len_of(i);
    return off;
}

static void flip_byte(const char *path, uint64_t at)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    CHECK_OK(rc_pread_all(fd, &b, 1, (off_t)at, path));
    b ^= 0x10;
    CHECK_OK(rc_pwrite_all(fd, &b, 1, (off_t)at, path));
    close(fd);
}

/* Entries 1..30 in one segment, in batches of 10; with synced, each batch is fsynced before
 * the next is written (a follower, a single node), else only the first (a leader deferring
 * its own fsync). */
static void write_three_batches(const char *dir, int synced)
{
    struct logstore *ls;
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    for (uint64_t lo = 1; lo <= 21; lo += 10) {
        CHECK_OK(append_range(ls, lo, lo + 10, 1, 10));
        if (synced || lo == 1)
            CHECK_OK(logstore_sync(ls));
    }
    logstore_close(ls);
}

/*
 * A damaged record in the active segment that later writes were made after (their first
 * record says every byte before it was synced) is bit rot, not a torn write: the open
 * fails naming it and cuts nothing (it used to cut the log there, losing entries that were
 * durable, and a single node then skipped new writes as already applied).
 */
TEST(damaged_record_before_a_synced_write_in_the_active_segment_is_refused)
{
    char dir[4200], seg[4400];
    log_dir(dir, sizeof dir, "raft");
    write_three_batches(dir, 1);
    seg_file(dir, 1, seg, sizeof seg);
    struct stat before;
    CHECK_OK(stat(seg, &before));
    uint64_t at = record_offset(5) + 12 + 21 + 1; /* a data byte of entry 5 */
    flip_byte(seg, at);
    struct logstore *ls;
    struct captured cap;
    int rc = open_capturing(dir, 1 << 20, &ls, &cap);
    CHECK_EQ(rc, RC_ECORRUPT);
    char where[64];
    snprintf(where, sizeof where, "corrupt record at offset %llu",
             (unsigned long long)record_offset(5));
    CHECK_MSG(captured_has(&cap, where, "damaged, not torn"), "no such line (%d lines: %s)", cap.n,
              cap.n ? cap.lines[0] : "");
    struct stat after;
    CHECK_OK(stat(seg, &after));
    CHECK_EQ_U((uint64_t)after.st_size, (uint64_t)before.st_size); /* nothing cut */
    /* Repaired, the log is whole. */
    flip_byte(seg, at);
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_EQ_U(logstore_last_index(ls), 30);
    check_range(ls, 1, 31, term1);
    logstore_close(ls);
}

/* After a power loss the unsynced pages of the active segment may reach the disk in any
 * order: a bad record followed by valid ones written without a sync in between is a torn
 * write, cut as before. */
TEST(bad_record_among_unsynced_writes_is_cut_as_a_torn_tail)
{
    char dir[4200], seg[4400];
    log_dir(dir, sizeof dir, "raft");
    write_three_batches(dir, 0);
    seg_file(dir, 1, seg, sizeof seg);
    flip_byte(seg, record_offset(15) + 12 + 21 + 1);
    struct logstore *ls;
    struct captured cap;
    int rc = open_capturing(dir, 1 << 20, &ls, &cap);
    CHECK_OK(rc);
    CHECK_EQ_U(logstore_last_index(ls), 14);
    check_range(ls, 1, 15, term1);
    char where[64];
    snprintf(where, sizeof where, "torn tail at offset %llu",
             (unsigned long long)record_offset(15));
    CHECK_MSG(captured_has(&cap, "cut", where), "no line for the cut (%d lines: %s)", cap.n,
              cap.n ? cap.lines[0] : "");
    logstore_close(ls);
}

/*
 * A value can hold the image of a record with AFTER_SYNC, CRC and all (a client chose the
 * bytes, or stored a copy of a log). Its CRC was not seeded with the segment's nonce, so it
 * does not pass for a synced record: a torn write before it is still cut (review: such a
 * value turned an ordinary power loss into a refusal to start).
 */
TEST(a_record_image_inside_a_value_does_not_pass_for_a_synced_record)
{
    char dir[4200], seg[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_OK(append_range(ls, 1, 11, 1, 10));
    CHECK_OK(logstore_sync(ls));
    /* Entries 11 and 12 unsynced (a leader deferring its fsync); 12's data is a forged
     * ENTRY record with AFTER_SYNC and an unseeded CRC. */
    uint8_t forged[12 + 21 + 8];
    memset(forged, 0, sizeof forged);
    forged[4] = 21 + 8; /* len */
    forged[8] = 2;      /* ENTRY */
    forged[9] = 1;      /* AFTER_SYNC */
    uint32_t crc = rc_crc32c(0, forged + 4, sizeof forged - 4);
    memcpy(forged, &crc, 4);
    uint8_t plain[8] = "eleven!";
    struct raft_entry e[2] = {{1, 11, RAFT_ENTRY_NORMAL, sizeof plain, plain},
                              {1, 12, RAFT_ENTRY_NORMAL, sizeof forged, forged}};
    CHECK_OK(logstore_append(ls, e, 2));
    logstore_close(ls);
    seg_file(dir, 1, seg, sizeof seg);
    flip_byte(seg, record_offset(11) + 12 + 21 + 1); /* entry 11 torn */
    struct captured cap;
    int rc = open_capturing(dir, 1 << 20, &ls, &cap);
    CHECK_MSG(rc == 0, "open refused a torn tail (%d lines: %s)", cap.n, cap.n ? cap.lines[0] : "");
    CHECK_EQ_U(logstore_last_index(ls), 10);
    logstore_close(ls);
}

TEST(commit_beyond_recovered_log_is_corruption)
{
    char dir[4200], last_seg[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 1 << 20, &ls));
    CHECK_OK(append_range(ls, 1, 21, 1, 5));
    struct raft_hard_state hs = {1, 1, 20};
    CHECK_OK(logstore_set_hard_state(ls, &hs));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    /* Losing synced entries (here: cutting them) must not pass for a torn tail. */
    seg_file(dir, 1, last_seg, sizeof last_seg);
    struct stat st;
    CHECK_OK(stat(last_seg, &st));
    CHECK_OK(truncate(last_seg, st.st_size - 3));
    struct captured cap;
    int rc = open_capturing(dir, 1 << 20, &ls, &cap);
    CHECK_EQ(rc, RC_ECORRUPT);
    CHECK(captured_has(&cap, "commit 20", "lost"));
}

/* ============================== durable ordering and I/O errors ============================== */

struct order_probe {
    int unsynced_appends; /* set by the test after an append, cleared at ENTRIES_SYNCED */
    int events[16];
    int n_events;
    int fail_at; /* point at which to inject an I/O error, 0 for none */
};

static int order_hook(void *ctx, enum logstore_point point)
{
    struct order_probe *p = ctx;
    if (p->n_events < 16)
        p->events[p->n_events++] = (int)point;
    if (point == LOGSTORE_ENTRIES_SYNCED)
        p->unsynced_appends = 0;
    /* The rule of raft.h: the state file never goes out before the entries it covers. */
    if (point == LOGSTORE_BEFORE_STATE_WRITE)
        CHECK_MSG(p->unsynced_appends == 0, "hard state written before the entries were synced");
    return p->fail_at == (int)point;
}

TEST(hard_state_is_written_only_after_entries_are_synced)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct order_probe probe = {0};
    struct logstore_options o;
    logstore_options_default(&o);
    o.segment_size_bytes = 300;
    o.hook = order_hook;
    o.hook_ctx = &probe;
    struct logstore *ls;
    CHECK_OK(logstore_open(dir, &o, &ls));
    for (uint64_t round = 0; round < 5; round++) {
        probe.n_events = 0;
        CHECK_OK(append_range(ls, 1 + round * 10, 11 + round * 10, 1, 10));
        probe.unsynced_appends = 1;
        struct raft_hard_state hs = {1, 1, round * 10 + 10};
        CHECK_OK(logstore_set_hard_state(ls, &hs));
        CHECK_OK(logstore_sync(ls));
        CHECK_EQ(probe.n_events, 4);
        CHECK_EQ(probe.events[0], LOGSTORE_BEFORE_ENTRIES_SYNC);
        CHECK_EQ(probe.events[1], LOGSTORE_ENTRIES_SYNCED);
        CHECK_EQ(probe.events[2], LOGSTORE_BEFORE_STATE_WRITE);
        CHECK_EQ(probe.events[3], LOGSTORE_STATE_WRITTEN);
    }
    /* A vote alone needs no entry sync, but is durable when sync returns. */
    probe.n_events = 0;
    struct raft_hard_state vote = {2, 3, 50};
    CHECK_OK(logstore_set_hard_state(ls, &vote));
    CHECK_OK(logstore_sync(ls));
    CHECK_EQ(probe.n_events, 2);
    CHECK_EQ(probe.events[0], LOGSTORE_BEFORE_STATE_WRITE);
    /* An entry sync failure: the hard state is not written and the store stops. */
    CHECK_OK(append_range(ls, 51, 53, 2, 2));
    probe.unsynced_appends = 1;
    struct raft_hard_state hs3 = {2, 3, 52};
    CHECK_OK(logstore_set_hard_state(ls, &hs3));
    probe.fail_at = LOGSTORE_BEFORE_ENTRIES_SYNC;
    probe.n_events = 0;
    CHECK_EQ(logstore_sync(ls), RC_EIO);
    CHECK_EQ(probe.n_events, 1);
    CHECK_EQ(logstore_sync(ls), RC_EIO);
    CHECK_EQ(append_range(ls, 53, 54, 2, 1), RC_EIO);
    CHECK_EQ(logstore_set_hard_state(ls, &hs3), RC_EIO);
    CHECK_EQ(logstore_compact(ls, 10, 1), RC_EIO);
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t t;
    CHECK_EQ(st.term(st.ctx, 5, &t), RC_EIO);
    logstore_close(ls);
    probe.fail_at = 0;
    CHECK_OK(logstore_open(dir, &o, &ls));
    struct raft_hard_state got;
    logstore_hard_state(ls, &got);
    CHECK_EQ_U(got.term, 2);
    CHECK_EQ_U(got.commit, 50);
    logstore_close(ls);
}

TEST(failure_at_state_write_latches_eio)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct order_probe probe = {.fail_at = LOGSTORE_BEFORE_STATE_WRITE};
    struct logstore_options o;
    logstore_options_default(&o);
    o.hook = order_hook;
    o.hook_ctx = &probe;
    struct logstore *ls;
    CHECK_OK(logstore_open(dir, &o, &ls));
    CHECK_OK(append_range(ls, 1, 5, 1, 4));
    struct raft_hard_state hs = {1, 1, 4};
    CHECK_OK(logstore_set_hard_state(ls, &hs));
    CHECK_EQ(logstore_sync(ls), RC_EIO);
    CHECK_EQ(logstore_sync(ls), RC_EIO);
    CHECK_EQ(append_range(ls, 5, 6, 1, 1), RC_EIO);
    logstore_close(ls);
    CHECK_EQ_U(count_files(dir, "raft-state"), 0);
}

/* ============================== allocation failures ============================== */

static uint64_t term_alloc(uint64_t index)
{
    return index >= 15 ? 2 : 1;
}

TEST(alloc_failure_on_append_changes_nothing)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 300, &ls));
    CHECK_OK(append_range(ls, 1, 21, 1, 5));
    CHECK_OK(logstore_sync(ls));
    int failures = 0;
    for (long n = 0; n < 1000; n++) {
        rc_alloc_fail_after(n);
        /* Truncates a suffix (15..20) and crosses segment boundaries. */
        int rc = append_range(ls, 15, 40, 2, 25);
        rc_alloc_fail_after(-1);
        if (rc == RC_ENOMEM) {
            failures++;
            CHECK_EQ_U(logstore_last_index(ls), 20);
            check_range(ls, 1, 21, term1);
            continue;
        }
        CHECK_OK(rc);
        break;
    }
    CHECK(failures > 0);
    CHECK_EQ_U(logstore_last_index(ls), 39);
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    CHECK_OK(open_small(dir, 300, &ls));
    check_range(ls, 1, 40, term_alloc);
    logstore_close(ls);
}

TEST(alloc_failure_on_open_returns_enomem)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 300, &ls));
    CHECK_OK(append_range(ls, 1, 101, 1, 10));
    struct raft_hard_state hs = {1, 1, 100};
    CHECK_OK(logstore_set_hard_state(ls, &hs));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    int failures = 0, opened = 0;
    for (long n = 0; n < 10000 && !opened; n++) {
        ls = NULL;
        rc_alloc_fail_after(n);
        int rc = open_small(dir, 300, &ls);
        rc_alloc_fail_after(-1);
        if (rc == RC_ENOMEM) {
            failures++;
            continue;
        }
        CHECK_OK(rc);
        opened = 1;
        CHECK_EQ_U(logstore_last_index(ls), 100);
        check_range(ls, 1, 101, term1);
        logstore_close(ls);
    }
    CHECK(opened);
    CHECK(failures > 2);
}

/* ============================== driving the Raft core ============================== */

/* Persists every ready as raft.h says (entries, hard state, sync, then messages); returns the
 * number of committed entries handed out. A single node has nobody to send messages to. */
static size_t drive(struct raft *r, struct logstore *ls)
{
    size_t applied = 0;
    while (raft_has_ready(r)) {
        struct raft_ready rd;
        CHECK_OK(raft_ready(r, &rd));
        CHECK(rd.snapshot_chunk == NULL);
        int rc = logstore_append(ls, rd.entries, rd.n_entries);
        if (rc == 0 && rd.has_hard_state)
            rc = logstore_set_hard_state(ls, &rd.hard_state);
        if (rc == 0)
            rc = logstore_sync(ls);
        CHECK_OK(rc);
        applied += rd.n_committed;
        CHECK_OK(raft_advance(r, rc));
    }
    return applied;
}

static void tick_until_leader(struct raft *r, struct logstore *ls)
{
    struct raft_status rs;
    for (int i = 0; i < 200; i++) {
        CHECK_OK(raft_tick(r));
        drive(r, ls);
        raft_status(r, &rs);
        if (rs.role == RAFT_LEADER)
            return;
    }
    CHECK_MSG(0, "no leader after 200 ticks (role %d)", (int)rs.role);
}

/* Bootstraps node 1 alone on an empty log store and returns its core, leading. */
static struct raft *single_node_leader(struct logstore *ls, const struct raft_options *o)
{
    struct raft_config c = {.n_voters = 1, .voters = {1}};
    struct raft_entry boot;
    CHECK_OK(raft_bootstrap_entry(&c, &boot));
    CHECK_OK(logstore_append(ls, &boot, 1));
    CHECK_OK(logstore_sync(ls));
    rc_free(boot.data);
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft *r;
    CHECK_OK(raft_create(o, &st, NULL, &r));
    tick_until_leader(r, ls);
    return r;
}

TEST(core_single_node_persists_through_logstore_and_recovers)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 512, &ls));
    struct raft_options o;
    raft_options_default(&o, 1);
    struct raft *r = single_node_leader(ls, &o);
    for (int i = 0; i < 20; i++) {
        char data[32];
        int len = snprintf(data, sizeof data, "proposal-%d", i);
        CHECK_OK(raft_propose(r, data, (size_t)len, NULL, NULL));
        drive(r, ls);
    }
    struct raft_status rs;
    raft_status(r, &rs);
    uint64_t last = rs.last_index, term = rs.term;
    CHECK_EQ_U(rs.commit, last);
    CHECK(last >= 22); /* bootstrap, the leader's no-op, 20 proposals */
    CHECK(logstore_segment_count(ls) > 1);
    raft_destroy(r);
    logstore_close(ls);

    /* Restart from the files alone. */
    CHECK_OK(open_small(dir, 512, &ls));
    CHECK_EQ_U(logstore_last_index(ls), last);
    struct raft_hard_state hs;
    logstore_hard_state(ls, &hs);
    CHECK_EQ_U(hs.term, term);
    CHECK_EQ_U(hs.vote, 1);
    CHECK_EQ_U(hs.commit, last);
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft_entry out[64];
    size_t n;
    CHECK_OK(st.entries(st.ctx, 3, last + 1, (size_t)-1, out, &n));
    CHECK_EQ_U(n, last - 2);
    CHECK_MEM(out[n - 1].data, out[n - 1].len, "proposal-19", 11);
    CHECK_OK(raft_create(&o, &st, &hs, &r));
    tick_until_leader(r, ls);
    CHECK_OK(raft_propose(r, "after", 5, NULL, NULL));
    drive(r, ls);
    raft_status(r, &rs);
    CHECK(rs.term > term);
    CHECK_EQ_U(rs.commit, rs.last_index);
    CHECK(rs.last_index >= last + 2);
    raft_destroy(r);
    logstore_close(ls);
}

/* ============================== leftovers of interrupted directory changes ============== */

static void save_file(const char *path, void **buf, size_t *len)
{
    CHECK_OK(rc_read_file(path, buf, len));
}

static void restore_file(const char *path, void *buf, size_t len)
{
    test_write_file(path, buf, len);
    rc_free(buf);
}

TEST(compaction_leftover_segment_is_removed_at_open)
{
    char dir[4200], first_seg[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 201, 1, 9));
    CHECK_OK(logstore_sync(ls));
    seg_file(dir, 0, first_seg, sizeof first_seg);
    void *buf;
    size_t len;
    save_file(first_seg, &buf, &len);
    CHECK_OK(logstore_compact(ls, 150, 1));
    size_t segs = logstore_segment_count(ls);
    logstore_close(ls);
    /* As if the crash came after the state file was written but before this unlink. */
    restore_file(first_seg, buf, len);
    CHECK_EQ_U(count_files(dir, ".seg"), segs + 1);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ_U(logstore_segment_count(ls), segs);
    CHECK_EQ_U(count_files(dir, ".seg"), segs);
    CHECK_EQ_U(logstore_first_index(ls), 151);
    check_range(ls, 151, 201, term1);
    logstore_close(ls);
}

TEST(segment_after_a_gap_is_removed_at_open)
{
    char dir[4200], last_seg[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 201, 1, 9));
    CHECK_OK(logstore_sync(ls));
    seg_file(dir, 1, last_seg, sizeof last_seg);
    void *buf;
    size_t len;
    save_file(last_seg, &buf, &len);
    CHECK_OK(append_range(ls, 20, 26, 3, 6));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);
    /* As if the truncation's unlink of the newest segment had not reached the disk. */
    restore_file(last_seg, buf, len);
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_small(dir, 400, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_OK(rc);
    CHECK(captured_has(&cap, "gap", NULL));
    CHECK_EQ_U(logstore_last_index(ls), 25);
    check_range(ls, 1, 26, term_trunc_across);
    CHECK_EQ_U(count_files(dir, ".seg"), logstore_segment_count(ls));
    logstore_close(ls);
}

/* ============================== snapshot data ============================== */

/* Snapshot bytes are a function of (offset, salt), so any range read back can be checked. */
static uint8_t snap_byte(uint64_t offset, unsigned salt)
{
    return (uint8_t)(offset * 31 + salt * 17 + (offset >> 8));
}

static void fill_snap(uint8_t *buf, uint64_t offset, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = snap_byte(offset + i, salt);
}

/* Writes size bytes in pieces of 777 through a writer and commits them at (index, term). */
static int local_snapshot(struct logstore *ls, uint64_t index, uint64_t term,
                          const struct raft_config *c, size_t size, unsigned salt)
{
    struct logstore_snapshot_writer *w;
    int rc = logstore_snapshot_begin(ls, &w);
    if (rc != 0)
        return rc;
    uint8_t piece[777];
    for (size_t off = 0; off < size; off += sizeof piece) {
        size_t n = size - off < sizeof piece ? size - off : sizeof piece;
        fill_snap(piece, off, n, salt);
        if ((rc = logstore_snapshot_write(w, piece, n)) != 0) {
            logstore_snapshot_abort(w);
            return rc;
        }
    }
    return logstore_snapshot_commit(ls, w, index, term, c);
}

/* Reads snapshot index through the raft_storage in 1000-byte reads; checks size and bytes. */
static void check_snapshot_data(struct logstore *ls, uint64_t index, size_t size, unsigned salt)
{
    struct raft_storage st = logstore_raft_storage(ls);
    uint8_t buf[1000], want[1000];
    uint64_t off = 0;
    for (;;) {
        size_t n = 0;
        CHECK_OK(st.snapshot_read(st.ctx, index, off, buf, sizeof buf, &n));
        if (n == 0)
            break;
        fill_snap(want, off, n, salt);
        CHECK_MEM(buf, n, want, n);
        off += n;
    }
    CHECK_EQ_U(off, size);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static off_t file_size(const char *path)
{
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return st.st_size;
}

static const struct raft_config snap_config = {
    .n_voters = 2, .n_learners = 1, .voters = {1, 2}, .learners = {3}};

static void check_meta(struct logstore *ls, uint64_t index, uint64_t term, size_t size)
{
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft_snapshot_meta m;
    CHECK_OK(st.snapshot(st.ctx, &m));
    CHECK_EQ_U(m.index, index);
    CHECK_EQ_U(m.term, term);
    CHECK_EQ_U(m.size_bytes, size);
    CHECK_EQ_U(m.config.n_voters, 2);
    CHECK_EQ_U(m.config.n_learners, 1);
    CHECK_EQ_U(m.config.voters[1], 2);
    CHECK_EQ_U(m.config.learners[0], 3);
    struct raft_snapshot_meta m2;
    logstore_snapshot_meta(ls, &m2);
    CHECK(memcmp(&m, &m2, sizeof m) == 0);
}

TEST(local_snapshot_commit_and_reopen)
{
    char dir[4200], path[4400], old_path[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 201, 1, 9));
    CHECK_OK(logstore_sync(ls));
    CHECK_EQ(logstore_snapshot_path(ls, path, sizeof path), RC_ENOTFOUND);
    size_t before = logstore_segment_count(ls);

    CHECK_OK(local_snapshot(ls, 100, 1, &snap_config, 10000, 1));
    check_meta(ls, 100, 1, 10000);
    check_snapshot_data(ls, 100, 10000, 1);
    CHECK_EQ_U(logstore_first_index(ls), 101);
    CHECK(logstore_segment_count(ls) < before);
    CHECK_OK(logstore_snapshot_path(ls, old_path, sizeof old_path));
    CHECK(strstr(old_path, "snap-00000000000000000100-00000000000000000001.snap") != NULL);
    CHECK(file_exists(old_path));
    CHECK_EQ_U(count_files(dir, ".tmp"), 0);

    /* A newer snapshot replaces the file of the previous one. */
    CHECK_OK(local_snapshot(ls, 150, 1, &snap_config, 5000, 2));
    CHECK(!file_exists(old_path));
    CHECK_EQ_U(count_files(dir, ".snap"), 1);
    CHECK_EQ_U(logstore_first_index(ls), 151);
    logstore_close(ls);

    CHECK_OK(open_small(dir, 400, &ls));
    check_meta(ls, 150, 1, 5000);
    check_snapshot_data(ls, 150, 5000, 2);
    CHECK_OK(logstore_snapshot_verify(ls));
    CHECK_EQ_U(logstore_first_index(ls), 151);
    CHECK_EQ_U(logstore_last_index(ls), 200);
    check_range(ls, 151, 201, term1);
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t t;
    CHECK_OK(st.term(st.ctx, 150, &t));
    CHECK_EQ_U(t, 1);
    uint8_t buf[100];
    size_t n = 1;
    CHECK_EQ(st.snapshot_read(st.ctx, 100, 0, buf, sizeof buf, &n), RC_ENOTFOUND);
    CHECK_OK(st.snapshot_read(st.ctx, 150, 5000, buf, sizeof buf, &n));
    CHECK_EQ_U(n, 0);
    /* The path is what a state machine restores from: the file holds exactly the data. */
    CHECK_OK(logstore_snapshot_path(ls, path, sizeof path));
    void *data;
    size_t len;
    CHECK_OK(rc_read_file(path, &data, &len));
    uint8_t *want = rc_malloc(5000);
    fill_snap(want, 0, 5000, 2);
    CHECK_MEM(data, len, want, 5000);
    rc_free(data);
    rc_free(want);
    CHECK_EQ(logstore_snapshot_path(ls, path, 10), RC_EINVAL);

    /* Stale or inconsistent snapshots are refused and leave no file; abort leaves none. */
    CHECK_EQ(local_snapshot(ls, 120, 1, &snap_config, 100, 3), RC_EINVAL);
    CHECK_EQ(local_snapshot(ls, 180, 2, &snap_config, 100, 3), RC_EINVAL);
    CHECK_EQ(local_snapshot(ls, 201, 1, &snap_config, 100, 3), RC_EINVAL);
    struct logstore_snapshot_writer *w;
    CHECK_OK(logstore_snapshot_begin(ls, &w));
    CHECK_OK(logstore_snapshot_write(w, "abc", 3));
    CHECK_EQ_U(count_files(dir, ".tmp"), 1);
    logstore_snapshot_abort(w);
    CHECK_EQ_U(count_files(dir, ".tmp"), 0);
    CHECK_EQ_U(count_files(dir, ".snap"), 1);
    check_meta(ls, 150, 1, 5000);

    /* A writer synced by its own thread, written again and synced again, then committed. */
    uint8_t piece[200];
    CHECK_OK(logstore_snapshot_begin(ls, &w));
    fill_snap(piece, 0, 200, 4);
    CHECK_OK(logstore_snapshot_write(w, piece, 200));
    CHECK_OK(logstore_snapshot_sync(w));
    fill_snap(piece, 200, 100, 4);
    CHECK_OK(logstore_snapshot_write(w, piece, 100));
    CHECK_OK(logstore_snapshot_sync(w));
    CHECK_OK(logstore_snapshot_commit(ls, w, 155, 1, &snap_config));
    check_meta(ls, 155, 1, 300);
    check_snapshot_data(ls, 155, 300, 4);

    /* A plain compaction records a snapshot without data and deletes the old file. */
    CHECK_OK(logstore_compact(ls, 160, 1));
    CHECK_EQ(logstore_snapshot_path(ls, path, sizeof path), RC_ENOTFOUND);
    CHECK_EQ_U(count_files(dir, ".snap"), 0);
    CHECK_EQ(st.snapshot_read(st.ctx, 160, 0, buf, sizeof buf, &n), RC_ENOTFOUND);
    logstore_close(ls);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ_U(logstore_first_index(ls), 161);
    logstore_close(ls);
}

/* Hands the chunk [offset, offset + len) of snapshot (index, term, salt) to the store. */
static int send_chunk(struct logstore *ls, uint64_t index, uint64_t term, uint64_t offset,
                      uint32_t len, uint64_t total, unsigned salt)
{
    uint8_t buf[4096];
    CHECK(len <= sizeof buf);
    fill_snap(buf, offset, len, salt);
    struct raft_snapshot_chunk c = {
        .meta = {.index = index, .term = term, .config = snap_config, .size_bytes = offset + len},
        .offset = offset,
        .len = len,
        .data = buf,
        .done = offset + len == total,
    };
    return logstore_snapshot_chunk(ls, &c);
}

static uint64_t received(struct logstore *ls, uint64_t index, uint64_t term)
{
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t bytes = 99;
    uint32_t crc = 99;
    CHECK_OK(st.snapshot_received(st.ctx, index, term, &bytes, &crc));
    CHECK_EQ(bytes == 0, crc == 0); /* the CRC of the bytes held (none: 0) */
    return bytes;
}

TEST(incoming_snapshot_resumes_across_restarts_and_replaces_the_log)
{
    char dir[4200], part[4400];
    log_dir(dir, sizeof dir, "raft");
    snprintf(part, sizeof part, "%s/snap-incoming.part", dir);
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 51, 1, 9));
    CHECK_OK(logstore_sync(ls));
    CHECK_EQ_U(received(ls, 40, 1), 0);

    CHECK_OK(send_chunk(ls, 40, 1, 0, 1000, 3000, 1));
    CHECK_EQ_U(received(ls, 40, 1), 1000);
    CHECK_EQ_U(received(ls, 40, 2), 0);
    CHECK_EQ_U(received(ls, 41, 1), 0);
    logstore_close(ls);

    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ_U(received(ls, 40, 1), 1000);
    /* A gap, a repeat, or a chunk of another snapshot is refused and changes nothing. */
    CHECK_EQ(send_chunk(ls, 40, 1, 2000, 1000, 3000, 1), RC_EINVAL);
    CHECK_EQ(send_chunk(ls, 40, 1, 500, 1000, 3000, 1), RC_EINVAL);
    CHECK_EQ(send_chunk(ls, 40, 2, 1000, 1000, 3000, 1), RC_EINVAL);
    CHECK_EQ_U(received(ls, 40, 1), 1000);
    CHECK_OK(send_chunk(ls, 40, 1, 1000, 1000, 3000, 1));
    CHECK_EQ_U(received(ls, 40, 1), 2000);
    logstore_close(ls);

    /* Bytes after the last counted chunk (a write a crash interrupted) are cut at open. */
    int fd = open(part, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, "torn-bytes", 10) == 10);
    close(fd);
    CHECK_EQ(file_size(part), 2010);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ_U(received(ls, 40, 1), 2000);
    CHECK_EQ(file_size(part), 2000);

    /* Offset 0 of another snapshot discards the partial one. */
    CHECK_OK(send_chunk(ls, 45, 1, 0, 1000, 2500, 2));
    CHECK_EQ_U(received(ls, 40, 1), 0);
    CHECK_EQ_U(received(ls, 45, 1), 1000);
    logstore_close(ls);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ_U(received(ls, 45, 1), 1000);
    /* A last chunk must say the total size. */
    struct raft_snapshot_chunk bad = {
        .meta = {.index = 45, .term = 1, .size_bytes = 9999}, .offset = 1000, .len = 0, .done = 1};
    CHECK_EQ(logstore_snapshot_chunk(ls, &bad), RC_EINVAL);
    CHECK_OK(send_chunk(ls, 45, 1, 1000, 1000, 2500, 2));
    CHECK_EQ_U(logstore_last_index(ls), 50);
    CHECK_OK(send_chunk(ls, 45, 1, 2000, 500, 2500, 2));

    /* Installed: the whole log is gone, though it held entry 45 of term 1 (raft.h asks for it),
     * and the snapshot is the base. */
    check_meta(ls, 45, 1, 2500);
    check_snapshot_data(ls, 45, 2500, 2);
    CHECK_OK(logstore_snapshot_verify(ls));
    CHECK_EQ_U(logstore_first_index(ls), 46);
    CHECK_EQ_U(logstore_last_index(ls), 45);
    CHECK_EQ_U(logstore_segment_count(ls), 0);
    CHECK_EQ_U(count_files(dir, ".seg"), 0);
    CHECK(!file_exists(part));
    CHECK_EQ_U(count_files(dir, ".meta"), 0);
    CHECK_EQ_U(received(ls, 45, 1), 0);
    /* An incoming snapshot not newer than the installed one is refused. */
    CHECK_EQ(send_chunk(ls, 45, 1, 0, 100, 100, 3), RC_EINVAL);
    CHECK_OK(append_range(ls, 46, 61, 2, 5));
    CHECK_OK(logstore_sync(ls));
    logstore_close(ls);

    CHECK_OK(open_small(dir, 400, &ls));
    check_meta(ls, 45, 1, 2500);
    check_snapshot_data(ls, 45, 2500, 2);
    CHECK_EQ_U(logstore_first_index(ls), 46);
    CHECK_EQ_U(logstore_last_index(ls), 60);
    struct raft_storage st = logstore_raft_storage(ls);
    uint64_t t;
    CHECK_OK(st.term(st.ctx, 45, &t));
    CHECK_EQ_U(t, 1);
    logstore_close(ls);
}

static int fail_after_state_written(void *ctx, enum logstore_point point)
{
    (void)ctx;
    return point == LOGSTORE_STATE_WRITTEN;
}

TEST(crash_after_install_state_write_drops_the_old_log_at_open)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore_options o;
    logstore_options_default(&o);
    o.segment_size_bytes = 400;
    o.hook = fail_after_state_written;
    struct logstore *ls;
    CHECK_OK(logstore_open(dir, &o, &ls));
    CHECK_OK(append_range(ls, 1, 51, 1, 9));
    CHECK_OK(logstore_sync(ls));
    /* The crash: raft-state names the snapshot (40, 2), the segments of term 1 remain. */
    CHECK_EQ(send_chunk(ls, 40, 2, 0, 700, 700, 4), RC_EIO);
    CHECK_EQ(append_range(ls, 51, 52, 1, 1), RC_EIO);
    logstore_close(ls);
    CHECK(count_files(dir, ".seg") > 0);
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_small(dir, 400, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_OK(rc);
    CHECK(captured_has(&cap, "snapshot install", NULL));
    CHECK_EQ_U(count_files(dir, ".seg"), 0);
    CHECK_EQ_U(logstore_first_index(ls), 41);
    CHECK_EQ_U(logstore_last_index(ls), 40);
    check_meta(ls, 40, 2, 700);
    check_snapshot_data(ls, 40, 700, 4);
    logstore_close(ls);
}

static int open_trailing(const char *dir, uint64_t trailing,
                         int (*hook)(void *ctx, enum logstore_point point), struct logstore **ls)
{
    struct logstore_options o;
    logstore_options_default(&o);
    o.segment_size_bytes = 400;
    o.prealloc_bytes = 0;
    o.trailing_entries = trailing;
    o.hook = hook;
    return logstore_open(dir, &o, ls);
}

/* The lowest first index of the segment files in dir. */
static uint64_t first_seg_index(const char *dir)
{
    char path[4400];
    seg_file(dir, 0, path, sizeof path);
    return first_index_of_seg(path);
}

TEST(compaction_keeps_trailing_entries_across_reopen)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_trailing(dir, 30, NULL, &ls));
    fill_and_compact_to_150(ls, dir);
    /* 30 entries at and before the snapshot's index stay readable, with their terms. */
    CHECK_EQ_U(logstore_first_index(ls), 121);
    CHECK_EQ_U(logstore_last_index(ls), 200);
    check_range(ls, 121, 201, term1);
    /* Only segments wholly before index 121 were removed. */
    uint64_t first_seg = first_seg_index(dir);
    CHECK(first_seg <= 121);
    struct raft_snapshot_meta meta;
    struct raft_storage st = logstore_raft_storage(ls);
    CHECK_OK(st.snapshot(st.ctx, &meta));
    CHECK_EQ_U(meta.index, 150);
    struct raft_entry e;
    size_t n = 0;
    CHECK_EQ(st.entries(st.ctx, 120, 121, (size_t)-1, &e, &n), RC_ENOTFOUND);
    logstore_close(ls);

    /* Reopened with the same setting, the log starts at the same index. */
    CHECK_OK(open_trailing(dir, 30, NULL, &ls));
    CHECK_EQ_U(logstore_first_index(ls), 121);
    check_range(ls, 121, 201, term1);
    CHECK_EQ_U(first_seg_index(dir), first_seg);
    size_t kept = logstore_segment_count(ls);
    logstore_close(ls);

    /* Without trailing entries, the log starts right after the snapshot again, and the
     * segments wholly at or before it go. */
    CHECK_OK(open_trailing(dir, 0, NULL, &ls));
    CHECK_EQ_U(logstore_first_index(ls), 151);
    check_range(ls, 151, 201, term1);
    CHECK_EQ_U(count_files(dir, ".seg"), logstore_segment_count(ls));
    CHECK(logstore_segment_count(ls) < kept);
    CHECK(first_seg_index(dir) > 121 && first_seg_index(dir) <= 151);
    logstore_close(ls);

    /* A compaction early in the log keeps what there is (fewer than trailing_entries). */
    char dir2[4200];
    log_dir(dir2, sizeof dir2, "raft2");
    CHECK_OK(open_trailing(dir2, 1000, NULL, &ls));
    CHECK_OK(append_range(ls, 1, 41, 1, 9));
    CHECK_OK(logstore_compact(ls, 20, 1));
    CHECK_EQ_U(logstore_first_index(ls), 1);
    check_range(ls, 1, 41, term1);
    logstore_close(ls);
}

TEST(crash_leaves_trailing_entries_short_of_the_snapshot_dropped_at_open)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_trailing(dir, 100, fail_after_state_written, &ls));
    CHECK_OK(append_range(ls, 1, 51, 1, 9));
    CHECK_OK(logstore_sync(ls));
    /* The crash: raft-state names a snapshot (80, 2) beyond the log, which stays. */
    CHECK_EQ(send_chunk(ls, 80, 2, 0, 700, 700, 4), RC_EIO);
    logstore_close(ls);
    CHECK(count_files(dir, ".seg") > 0);
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_trailing(dir, 100, NULL, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_OK(rc);
    /* Entries 1..50 are within 100 of the snapshot but do not reach it: the snapshot
     * replaced them. */
    CHECK(captured_has(&cap, "snapshot install", "before the snapshot"));
    CHECK_EQ_U(count_files(dir, ".seg"), 0);
    CHECK_EQ_U(logstore_first_index(ls), 81);
    CHECK_EQ_U(logstore_last_index(ls), 80);
    check_meta(ls, 80, 2, 700);
    logstore_close(ls);
}

TEST(core_restarts_over_trailing_entries_kept_before_its_snapshot)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore_options lo;
    logstore_options_default(&lo);
    lo.segment_size_bytes = 512;
    lo.prealloc_bytes = 0;
    lo.trailing_entries = 5;
    struct logstore *ls;
    CHECK_OK(logstore_open(dir, &lo, &ls));
    struct raft_options o;
    raft_options_default(&o, 1);
    struct raft *r = single_node_leader(ls, &o);
    struct raft_config c = {.n_voters = 1, .voters = {1}};
    for (int i = 0; i < 20; i++) {
        CHECK_OK(raft_propose(r, "x", 1, NULL, NULL));
        drive(r, ls);
    }
    struct raft_status rs;
    raft_status(r, &rs);
    uint64_t at = rs.last_index - 3, t_at = 0, t;
    CHECK_OK(raft_log_term(r, at, &t_at));
    CHECK_OK(local_snapshot(ls, at, t_at, &c, 100, 7));
    CHECK_OK(raft_compacted(r, at));
    raft_status(r, &rs);
    CHECK_EQ_U(rs.snapshot_index, at);
    CHECK_EQ_U(rs.first_index, at - 4);
    CHECK_OK(raft_log_term(r, at - 4, &t));
    CHECK_EQ(raft_log_term(r, at - 5, &t), RC_ENOTFOUND);
    uint64_t last = rs.last_index;
    raft_destroy(r);
    logstore_close(ls);

    /* The core starts over a log that begins before its snapshot's index. */
    CHECK_OK(logstore_open(dir, &lo, &ls));
    struct raft_hard_state hs;
    logstore_hard_state(ls, &hs);
    struct raft_storage st = logstore_raft_storage(ls);
    CHECK_OK(raft_create(&o, &st, &hs, &r));
    raft_status(r, &rs);
    CHECK_EQ_U(rs.snapshot_index, at);
    CHECK_EQ_U(rs.first_index, at - 4);
    CHECK_EQ_U(rs.last_index, last);
    CHECK_OK(raft_log_term(r, at, &t));
    CHECK_EQ_U(t, t_at);
    tick_until_leader(r, ls);
    CHECK_OK(raft_propose(r, "after", 5, NULL, NULL));
    drive(r, ls);
    raft_status(r, &rs);
    CHECK_EQ_U(rs.commit, rs.last_index);
    CHECK(rs.last_index >= last + 2);
    raft_destroy(r);
    logstore_close(ls);
}

struct unlink_crash {
    size_t after, seen;
};

/* Fails (a crash) once `after` segments were unlinked. */
static int crash_after_unlinks(void *ctx, enum logstore_point point)
{
    struct unlink_crash *u = ctx;
    return point == LOGSTORE_SEGMENT_REMOVED && ++u->seen >= u->after;
}

TEST(crash_while_an_install_unlinks_the_old_log_leaves_a_prefix_that_open_drops)
{
    /* An install unlinks the old log from its last segment backward, so a crash in between
     * leaves a prefix of it, never segments after a gap. The next open finds the prefix
     * short of the snapshot, or past it with another term there, and drops it. */
    for (size_t cut = 1; cut < 12; cut++) {
        char dir[4200], name[64];
        snprintf(name, sizeof name, "raft-cut-%zu", cut);
        log_dir(dir, sizeof dir, name);
        struct unlink_crash u = {.after = cut};
        struct logstore_options o;
        logstore_options_default(&o);
        o.segment_size_bytes = 400;
        o.prealloc_bytes = 0;
        o.trailing_entries = 30;
        o.hook = crash_after_unlinks;
        o.hook_ctx = &u;
        struct logstore *ls;
        CHECK_OK(logstore_open(dir, &o, &ls));
        CHECK_OK(append_range(ls, 1, 201, 1, 9));
        CHECK_OK(logstore_sync(ls));
        char highest[4400], lowest[4400];
        seg_file(dir, 1, highest, sizeof highest);
        seg_file(dir, 0, lowest, sizeof lowest);
        size_t segs = count_files(dir, ".seg");
        CHECK(segs > cut);
        CHECK_EQ(send_chunk(ls, 100, 2, 0, 700, 700, 4), RC_EIO);
        logstore_close(ls);
        CHECK_EQ_U(count_files(dir, ".seg"), segs - cut);
        CHECK(!file_exists(highest) && file_exists(lowest)); /* a prefix is left */
        struct captured cap = {0};
        rc_log_set_sink(capture_sink, &cap);
        int rc = open_trailing(dir, 30, NULL, &ls);
        rc_log_set_sink(NULL, NULL);
        CHECK_OK(rc);
        CHECK(captured_has(&cap, "snapshot install", NULL));
        CHECK_EQ_U(count_files(dir, ".seg"), 0);
        CHECK_EQ_U(logstore_first_index(ls), 101);
        CHECK_EQ_U(logstore_last_index(ls), 100);
        check_meta(ls, 100, 2, 700);
        logstore_close(ls);
    }
}

TEST(crash_leftover_snapshot_files_are_removed_and_a_bad_current_one_refused)
{
    char dir[4200], path[4400], stale[4400], tmp[4400], part[4400], meta[4400];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 101, 1, 9));
    CHECK_OK(logstore_sync(ls));
    CHECK_OK(local_snapshot(ls, 80, 1, &snap_config, 3000, 5));
    CHECK_OK(logstore_snapshot_path(ls, path, sizeof path));
    logstore_close(ls);

    /* What crashes can leave: an unfinished local snapshot, a replaced or not yet named
     * snapshot file, incoming data without its meta file. */
    snprintf(stale, sizeof stale, "%s/snap-%020d-%020d.snap", dir, 60, 1);
    snprintf(tmp, sizeof tmp, "%s/snap-local-7.tmp", dir);
    snprintf(part, sizeof part, "%s/snap-incoming.part", dir);
    snprintf(meta, sizeof meta, "%s/snap-incoming.meta", dir);
    test_write_file(stale, "old", 3);
    test_write_file(tmp, "half", 4);
    test_write_file(part, "orphan", 6);
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_small(dir, 400, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_OK(rc);
    CHECK(captured_has(&cap, "snap-local-7.tmp", "removed"));
    CHECK(captured_has(&cap, "00000000000000000060", "removed"));
    CHECK(!file_exists(stale) && !file_exists(tmp) && !file_exists(part));
    CHECK(file_exists(path));
    check_snapshot_data(ls, 80, 3000, 5);
    logstore_close(ls);

    /* An incoming meta file that fails its checksum is removed with its data. */
    test_write_file(meta, "not a meta file at all, not at all, not at all, no", 50);
    test_write_file(part, "data", 4);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK(!file_exists(meta) && !file_exists(part));
    logstore_close(ls);

    /* The current snapshot file must be there, whole. */
    void *saved;
    size_t saved_len;
    save_file(path, &saved, &saved_len);
    CHECK(unlink(path) == 0);
    cap.n = 0;
    rc_log_set_sink(capture_sink, &cap);
    rc = open_small(dir, 400, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_EQ(rc, RC_ECORRUPT);
    CHECK(captured_has(&cap, "snap-00000000000000000080-00000000000000000001.snap", "missing"));
    test_write_file(path, saved, saved_len - 1);
    cap.n = 0;
    rc_log_set_sink(capture_sink, &cap);
    rc = open_small(dir, 400, &ls);
    rc_log_set_sink(NULL, NULL);
    CHECK_EQ(rc, RC_ECORRUPT);
    CHECK(captured_has(&cap, "snap-00000000000000000080-00000000000000000001.snap", "2999"));
    /* Same size, one byte changed: open succeeds, verify catches it. */
    ((uint8_t *)saved)[1234] ^= 0x40;
    test_write_file(path, saved, saved_len);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_EQ(logstore_snapshot_verify(ls), RC_ECORRUPT);
    logstore_close(ls);
    ((uint8_t *)saved)[1234] ^= 0x40;
    restore_file(path, saved, saved_len);
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(logstore_snapshot_verify(ls));
    logstore_close(ls);
}

TEST(alloc_failure_on_snapshot_begin_changes_nothing)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 21, 1, 9));
    CHECK_OK(logstore_sync(ls));
    struct logstore_snapshot_writer *w = NULL;
    rc_alloc_fail_after(0);
    int rc = logstore_snapshot_begin(ls, &w);
    rc_alloc_fail_after(-1);
    CHECK_EQ(rc, RC_ENOMEM);
    CHECK_EQ_U(count_files(dir, ".tmp"), 0);
    CHECK_OK(local_snapshot(ls, 10, 1, &snap_config, 100, 1));
    logstore_close(ls);
}

/* ============================== snapshot transfer between two cores ==============================
 */

struct node {
    uint64_t id;
    struct raft *r;
    struct logstore *ls;
    size_t n_chunks; /* snapshot chunks written */
};

struct wire {
    int n;
    struct {
        uint64_t to;
        size_t len;
        uint8_t *buf;
    } msgs[256];
};

/* Persists each ready as raft.h orders it (snapshot chunk, entries, hard state, sync), then
 * encodes its messages onto the wire; the codec copies them, as a network would. */
static void drive_node(struct node *nd, struct wire *w)
{
    while (raft_has_ready(nd->r)) {
        struct raft_ready rd;
        CHECK_OK(raft_ready(nd->r, &rd));
        int rc = 0;
        if (rd.snapshot_chunk) {
            rc = logstore_snapshot_chunk(nd->ls, rd.snapshot_chunk);
            nd->n_chunks++;
        }
        if (rc == 0)
            rc = logstore_append(nd->ls, rd.entries, rd.n_entries);
        if (rc == 0 && rd.has_hard_state)
            rc = logstore_set_hard_state(nd->ls, &rd.hard_state);
        if (rc == 0)
            rc = logstore_sync(nd->ls);
        CHECK_OK(rc);
        for (size_t i = 0; i < rd.n_messages; i++) {
            CHECK(w->n < 256);
            size_t len = raft_msg_encoded_size(&rd.messages[i]);
            uint8_t *buf = rc_malloc(len);
            CHECK(buf != NULL);
            CHECK_EQ_U(raft_msg_encode(&rd.messages[i], buf), len);
            w->msgs[w->n].to = rd.messages[i].to;
            w->msgs[w->n].len = len;
            w->msgs[w->n].buf = buf;
            w->n++;
        }
        CHECK_OK(raft_advance(nd->r, 0));
    }
}

static void drop_wire(struct wire *w)
{
    for (int i = 0; i < w->n; i++)
        rc_free(w->msgs[i].buf);
    w->n = 0;
}

/* Delivers what is on the wire to its addressee (both nodes are in nodes[0..2)). */
static void deliver(struct node *nodes, struct wire *w)
{
    struct wire now = *w;
    w->n = 0;
    for (int i = 0; i < now.n; i++) {
        struct raft_message m;
        CHECK_OK(raft_msg_decode(now.msgs[i].buf, now.msgs[i].len, &m));
        for (int k = 0; k < 2; k++)
            if (nodes[k].id == now.msgs[i].to)
                CHECK_OK(raft_step(nodes[k].r, &m));
        raft_msg_decoded_free(&m);
        rc_free(now.msgs[i].buf);
    }
}

/* Drives A (ticking) and B for at most `rounds` rounds; true once B has caught up. */
static int run_rounds(struct node *nodes, struct wire *w, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        CHECK_OK(raft_tick(nodes[0].r));
        for (int k = 0; k < 2; k++)
            drive_node(&nodes[k], w);
        deliver(nodes, w);
        for (int k = 0; k < 2; k++)
            drive_node(&nodes[k], w);
        deliver(nodes, w);
        uint64_t match = 0;
        if (raft_peer_match(nodes[0].r, nodes[1].id, &match) == 0 &&
            match == logstore_last_index(nodes[0].ls) &&
            logstore_last_index(nodes[1].ls) == match && w->n == 0)
            return 1;
    }
    return 0;
}

/* Runs the pair until B has the snapshot and the leader's log, or fails after 500 rounds. */
static void run_until_caught_up(struct node *nodes, struct wire *w)
{
    if (run_rounds(nodes, w, 500))
        return;
    uint64_t match = 0;
    raft_peer_match(nodes[0].r, nodes[1].id, &match);
    CHECK_MSG(0,
              "learner did not catch up in 500 rounds: match %llu, A last %llu, B last %llu, "
              "B chunks %zu",
              (unsigned long long)match, (unsigned long long)logstore_last_index(nodes[0].ls),
              (unsigned long long)logstore_last_index(nodes[1].ls), nodes[1].n_chunks);
}

/* Two nodes and a wire for the tests below. */
struct pair {
    char dir_a[4200], dir_b[4200];
    struct node nodes[2];
    struct wire *w;
    uint64_t snap_index, snap_term;
};

/*
 * A (id 1, in dir_a): a single voter that leads, takes learner 2, writes a while, snapshots
 * its applied state (4321 bytes, salt 9) at p->snap_index and compacts, then writes "after".
 * B's store is opened in dir_b; its core is not created.
 */
static void leader_with_a_snapshot(struct pair *p)
{
    log_dir(p->dir_a, sizeof p->dir_a, "a");
    log_dir(p->dir_b, sizeof p->dir_b, "b");
    p->nodes[0] = (struct node){.id = 1};
    p->nodes[1] = (struct node){.id = 2};
    p->w = rc_calloc(1, sizeof *p->w);
    CHECK(p->w != NULL);
    struct node *nodes = p->nodes;
    struct wire *w = p->w;
    uint64_t *snap_index = &p->snap_index, *snap_term = &p->snap_term;
    const char *dir_a = p->dir_a, *dir_b = p->dir_b;
    CHECK_OK(open_small(dir_a, 512, &nodes[0].ls));
    CHECK_OK(open_small(dir_b, 512, &nodes[1].ls));
    struct raft_config c = {.n_voters = 1, .voters = {1}};
    struct raft_entry boot;
    CHECK_OK(raft_bootstrap_entry(&c, &boot));
    CHECK_OK(logstore_append(nodes[0].ls, &boot, 1));
    CHECK_OK(logstore_sync(nodes[0].ls));
    rc_free(boot.data);
    struct raft_options oa;
    raft_options_default(&oa, 1);
    oa.snapshot_chunk_bytes = 1000; /* the snapshot goes in several chunks */
    struct raft_storage sa = logstore_raft_storage(nodes[0].ls);
    CHECK_OK(raft_create(&oa, &sa, NULL, &nodes[0].r));
    tick_until_leader(nodes[0].r, nodes[0].ls);
    for (int i = 0; i < 30; i++) {
        char data[32];
        int len = snprintf(data, sizeof data, "before-%d", i);
        CHECK_OK(raft_propose(nodes[0].r, data, (size_t)len, NULL, NULL));
        drive_node(&nodes[0], w);
    }
    CHECK_OK(raft_change_membership(nodes[0].r, RAFT_ADD_LEARNER, 2));
    drive_node(&nodes[0], w);
    drop_wire(w); /* lost: B does not exist yet */

    struct raft_status rs;
    raft_status(nodes[0].r, &rs);
    CHECK_EQ_U(rs.applied, rs.last_index);
    *snap_index = rs.applied;
    CHECK_OK(raft_log_term(nodes[0].r, *snap_index, snap_term));
    CHECK(raft_config_has_learner(&rs.config, 2));
    CHECK_OK(local_snapshot(nodes[0].ls, *snap_index, *snap_term, &rs.config, 4321, 9));
    CHECK_OK(raft_compacted(nodes[0].r, *snap_index));
    CHECK_EQ_U(logstore_first_index(nodes[0].ls), *snap_index + 1);
    CHECK_OK(raft_propose(nodes[0].r, "after", 5, NULL, NULL));
    drive_node(&nodes[0], w);
}

static void free_nodes(struct node *nodes, struct wire *w)
{
    for (int k = 0; k < 2; k++) {
        raft_destroy(nodes[k].r);
        logstore_close(nodes[k].ls);
    }
    drop_wire(w);
    rc_free(w);
}

TEST(core_streams_snapshot_from_logstore_to_a_new_learner)
{
    static struct pair p;
    leader_with_a_snapshot(&p);
    struct node *nodes = p.nodes;
    struct wire *w = p.w;
    uint64_t snap_index = p.snap_index, snap_term = p.snap_term;
    const char *dir_b = p.dir_b;
    struct raft_options ob;
    raft_options_default(&ob, 2);
    struct raft_storage sb = logstore_raft_storage(nodes[1].ls);
    struct raft_status rs;

    /* B: an empty store; what it needs was compacted away, so it must get the snapshot. */
    CHECK_OK(raft_create(&ob, &sb, NULL, &nodes[1].r));
    run_until_caught_up(nodes, w);

    CHECK(nodes[1].n_chunks >= 5); /* 4321 bytes in chunks of 1000 */
    struct raft_snapshot_meta ma, mb;
    logstore_snapshot_meta(nodes[0].ls, &ma);
    logstore_snapshot_meta(nodes[1].ls, &mb);
    CHECK_EQ_U(mb.index, snap_index);
    CHECK_EQ_U(mb.term, snap_term);
    CHECK_EQ_U(mb.size_bytes, 4321);
    CHECK(memcmp(&ma.config, &mb.config, sizeof ma.config) == 0);
    check_snapshot_data(nodes[1].ls, snap_index, 4321, 9);
    CHECK_OK(logstore_snapshot_verify(nodes[1].ls));
    CHECK_EQ_U(logstore_first_index(nodes[1].ls), snap_index + 1);
    CHECK_EQ_U(logstore_last_index(nodes[1].ls), logstore_last_index(nodes[0].ls));
    struct raft_storage st = logstore_raft_storage(nodes[1].ls);
    struct raft_entry out[4];
    size_t n;
    uint64_t last = logstore_last_index(nodes[1].ls);
    CHECK_OK(st.entries(st.ctx, last, last + 1, (size_t)-1, out, &n));
    CHECK_MEM(out[0].data, out[0].len, "after", 5);

    /* B restarts from its files alone: the snapshot is its base. */
    raft_destroy(nodes[1].r);
    logstore_close(nodes[1].ls);
    CHECK_OK(open_small(dir_b, 512, &nodes[1].ls));
    check_snapshot_data(nodes[1].ls, snap_index, 4321, 9);
    CHECK_EQ_U(logstore_first_index(nodes[1].ls), snap_index + 1);
    struct raft_hard_state hs;
    logstore_hard_state(nodes[1].ls, &hs);
    sb = logstore_raft_storage(nodes[1].ls);
    CHECK_OK(raft_create(&ob, &sb, &hs, &nodes[1].r));
    raft_status(nodes[1].r, &rs);
    CHECK_EQ_U(rs.first_index, snap_index + 1);
    CHECK(raft_config_has_learner(&rs.config, 2));
    free_nodes(nodes, w);
}

/* A damaged snapshot file on the leader: the learner refuses the data (its CRC is not the
 * one the leader's raft-state records) and installs nothing; it used to install it, and then
 * fail restoring its state machine, at every start. */
TEST(core_refuses_a_snapshot_whose_data_fails_the_crc)
{
    static struct pair p;
    char path[4400];
    leader_with_a_snapshot(&p);
    struct node *nodes = p.nodes;
    struct wire *w = p.w;
    CHECK_OK(logstore_snapshot_path(nodes[0].ls, path, sizeof path));
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, "\xff", 1, 2500) == 1); /* in the third chunk */
    close(fd);
    struct raft_options ob;
    raft_options_default(&ob, 2);
    struct raft_storage sb = logstore_raft_storage(nodes[1].ls);
    CHECK_OK(raft_create(&ob, &sb, NULL, &nodes[1].r));
    CHECK(!run_rounds(nodes, w, 200));
    struct raft_status rs;
    raft_status(nodes[1].r, &rs);
    CHECK(rs.snapshots_refused >= 2); /* every whole transfer, from offset 0 again */
    struct raft_status ls;
    raft_status(nodes[0].r, &ls); /* the leader counts them too, for its caller */
    CHECK(ls.snapshots_refused_by_peers >= rs.snapshots_refused - 1);
    CHECK(ls.snapshots_refused_by_peers <= rs.snapshots_refused);
    CHECK_EQ_U(rs.snapshot_index, 0);
    CHECK_EQ_U(logstore_last_index(nodes[1].ls), 0);
    struct raft_snapshot_meta mb;
    logstore_snapshot_meta(nodes[1].ls, &mb);
    CHECK_EQ_U(mb.index, 0);
    free_nodes(nodes, w);
}

/* test_raft_logstore.c — the durable Raft log (src/raft/logstore.c) on real files. */
#include "test.h"

#include "common/alloc.h"
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

TEST(compaction_then_reopen)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 400, &ls));
    CHECK_OK(append_range(ls, 1, 201, 1, 9));
    CHECK_OK(logstore_sync(ls));
    size_t before = logstore_segment_count(ls);
    CHECK_OK(logstore_compact(ls, 150, 1));
    CHECK(logstore_segment_count(ls) < before);
    CHECK_EQ_U(count_files(dir, ".seg"), logstore_segment_count(ls));
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
    /* Record ends within the newest segment: header (28 bytes), then the entries. */
    uint64_t ends[64];
    uint64_t off = 28;
    for (uint64_t i = first; i <= 40; i++) {
        off += 12 + 21 + data_len_of(i);
        ends[i - first] = off;
    }
    CHECK_EQ_U(off, size);
    /* Tear records 37..40, or all of the newest segment's if it starts later. */
    uint64_t from = first >= 37 ? 28 : ends[36 - first];
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
        uint64_t record_start = want_last < first ? 28 : ends[want_last - first];
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
    uint64_t at = 28 + (12 + 21 + data_len_of(1)) + 12 + 21 + 1;
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
             (unsigned long long)(28 + 12 + 21 + data_len_of(1)));
    CHECK_MSG(captured_has(&cap, first_seg, where), "no line naming %s and %s (got %d lines: %s)",
              first_seg, where, cap.n, cap.n ? cap.lines[0] : "");
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
    struct captured cap = {0};
    rc_log_set_sink(capture_sink, &cap);
    int rc = open_small(dir, 1 << 20, &ls);
    rc_log_set_sink(NULL, NULL);
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

TEST(core_single_node_persists_through_logstore_and_recovers)
{
    char dir[4200];
    log_dir(dir, sizeof dir, "raft");
    struct logstore *ls;
    CHECK_OK(open_small(dir, 512, &ls));
    struct raft_config c = {.n_voters = 1, .voters = {1}};
    struct raft_entry boot;
    CHECK_OK(raft_bootstrap_entry(&c, &boot));
    CHECK_OK(logstore_append(ls, &boot, 1));
    CHECK_OK(logstore_sync(ls));
    rc_free(boot.data);

    struct raft_options o;
    raft_options_default(&o, 1);
    struct raft_storage st = logstore_raft_storage(ls);
    struct raft *r;
    CHECK_OK(raft_create(&o, &st, NULL, &r));
    tick_until_leader(r, ls);
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
    st = logstore_raft_storage(ls);
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

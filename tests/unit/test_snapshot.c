/* test_snapshot.c — the snapshot stream (src/cluster/snapstream.h): round trips, views under
 * concurrent writes, damaged files, interrupted restores, RESP printing. */
#include "store_util.h"

#include "cluster/snapstream.h"
#include "common/fileio.h"
#include "common/log.h"
#include "resp/resp.h"

#include <stdatomic.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

/* ============================== helpers ============================== */

/* A byte string that grows; used to compare whole contents exactly. */
struct bytes {
    uint8_t *data;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        CHECK(b->data);
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Appends one key's key, value, expiry and revision, unambiguously. */
static void digest_item(struct bytes *b, const void *key, size_t klen, const void *value,
                        size_t vlen, int64_t expiry_ms, uint64_t revision)
{
    uint64_t h[4] = {klen, vlen, (uint64_t)expiry_ms, revision};
    bytes_add(b, h, sizeof h);
    bytes_add(b, key, klen);
    bytes_add(b, value, vlen);
}

static int digest_fn(const void *key, size_t klen, const void *value, size_t vlen,
                     const struct rc_item_meta *meta, void *ctx)
{
    digest_item(ctx, key, klen, value, vlen, meta->expiry_ms, meta->revision);
    return 0;
}

static const struct rc_store_range all_keys = {.with_values = true, .include_expired = true};

static struct bytes digest_store(struct rc_store *s)
{
    struct bytes b = {0};
    CHECK_OK(rc_store_scan(s, &all_keys, digest_fn, &b));
    return b;
}

static struct bytes digest_view(struct rc_store_view *v)
{
    struct bytes b = {0};
    CHECK_OK(rc_store_view_scan(v, &all_keys, digest_fn, &b));
    return b;
}

/* Reads a whole snapshot; returns 0 or the reader's error, with the digest in *out. */
static int digest_file(const char *path, struct bytes *out, struct snapshot_header *hdr)
{
    memset(out, 0, sizeof *out);
    struct snapshot_reader *r;
    int rc = snapshot_reader_open(path, &r);
    if (rc != 0)
        return rc;
    if (hdr) {
        snapshot_reader_header(r, hdr);
        hdr->extra = NULL; /* freed with the reader below */
    }
    const void *key, *value;
    size_t klen, vlen;
    int64_t expiry;
    uint64_t rev;
    while ((rc = snapshot_reader_next(r, &key, &klen, &value, &vlen, &expiry, &rev)) == 1)
        digest_item(out, key, klen, value, vlen, expiry, rev);
    CHECK(rc <= 0);
    /* The error is sticky. */
    CHECK_EQ(snapshot_reader_next(r, &key, &klen, &value, &vlen, &expiry, &rev), rc);
    snapshot_reader_close(r);
    return rc;
}

static void check_same(const struct bytes *a, const struct bytes *b)
{
    CHECK_EQ_U(a->len, b->len);
    CHECK(memcmp(a->data, b->data, a->len) == 0);
}

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", test_tmpdir(), name);
}

static struct rc_store_options test_options(void)
{
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.clock_ms = test_clock;
    return o;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    void *data;
    CHECK_OK(rc_read_file(path, &data, len));
    return data;
}

static bool dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Fills s with n keys: binary keys, a few large values, some expiries (past and future),
 * some deletions; revisions climb, then a mark above them all. Returns the last revision. */
static uint64_t fill_store(struct rc_store *s, int n, int large_every)
{
    uint64_t rev = 0;
    char *big = malloc(100 * 1024);
    for (size_t i = 0; i < 100 * 1024; i++)
        big[i] = (char)(i * 31 + 7);
    for (int i = 0; i < n; i++) {
        uint8_t key[16] = {'k', 0, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 0xff, '\r'};
        char val[32];
        int vlen = snprintf(val, sizeof val, "value-%d", i);
        int64_t expiry = i % 7 == 0 ? 5000000 : i % 11 == 0 ? 500 /* already expired */ : 0;
        if (large_every && i % large_every == 0)
            CHECK_OK(rc_store_put(s, key, 7, big, 100 * 1024 - (size_t)i % 13, expiry, ++rev));
        else
            CHECK_OK(rc_store_put(s, key, 7, val, (size_t)vlen, expiry, ++rev));
    }
    for (int i = 0; i < n; i += 17) { /* overwrite some (revision changes), delete others */
        uint8_t key[16] = {'k', 0, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 0xff, '\r'};
        if (i % 2)
            CHECK_OK(rc_store_delete(s, key, 7, ++rev));
        else
            CHECK_OK(rc_store_put(s, key, 7, "", 0, 0, ++rev));
    }
    CHECK_OK(rc_store_put(s, "", 0, "empty key", 9, 0, ++rev));
    rev += 5;
    CHECK_OK(rc_store_mark_revision(s, rev)); /* applied revision above every key's */
    free(big);
    return rev;
}

/* Writes a snapshot of s to path; returns its info. */
static struct snapshot_info snapshot_of(struct rc_store *s, const char *path, const void *extra,
                                        size_t extra_len)
{
    struct rc_store_view *v;
    CHECK_OK(rc_store_view_open(s, &v));
    struct snapshot_info info;
    CHECK_OK(snapshot_write_file(v, extra, extra_len, path, &info, NULL));
    rc_store_view_close(v);
    return info;
}

/* ============================== round trips ============================== */

TEST(snapshot_roundtrip_10k_keys_through_restore)
{
    char src[4096], dst[4096], file[4096];
    path_in(src, sizeof src, "src");
    path_in(dst, sizeof dst, "dst");
    path_in(file, sizeof file, "state.bin");
    struct rc_store *s = open_store(src);
    uint64_t rev = fill_store(s, 10000, 100);
    struct bytes want = digest_store(s);
    const char extra[] = "members\0with a NUL";

    struct snapshot_info info = snapshot_of(s, file, extra, sizeof extra);
    CHECK_EQ_U(info.revision, rev);
    CHECK_EQ_U(info.records, rc_store_count(s));
    CHECK(info.compressed_bytes > 0);
    struct stat st;
    CHECK_OK(stat(file, &st));
    CHECK_EQ_U(info.compressed_bytes, (uint64_t)st.st_size);
    CHECK(info.compressed_bytes < info.uncompressed_bytes);
    CHECK_OK(rc_store_close(s));

    /* The reader sees exactly the store's contents and header. */
    struct bytes got;
    struct snapshot_header hdr;
    CHECK_OK(digest_file(file, &got, &hdr));
    check_same(&want, &got);
    CHECK_EQ_U(hdr.revision, rev);
    CHECK_EQ_U(hdr.count, info.records);
    free(got.data);
    struct snapshot_reader *r;
    CHECK_OK(snapshot_reader_open(file, &r));
    snapshot_reader_header(r, &hdr); /* extra lives as long as the reader */
    CHECK_EQ(hdr.version, SNAPSHOT_VERSION);
    CHECK_MEM(hdr.extra, hdr.extra_len, extra, sizeof extra);
    snapshot_reader_close(r);

    /* Restored into a directory that already holds another store: replaced whole. */
    s = open_store(dst);
    put_str(s, "stale", "gone after restore", 99999);
    CHECK_OK(rc_store_close(s));
    struct rc_store_options o = test_options();
    uint64_t restored_rev = 0;
    void *extra_back = NULL;
    size_t extra_back_len = 0;
    CHECK_OK(snapshot_restore(file, dst, &o, &restored_rev, &extra_back, &extra_back_len));
    CHECK_EQ_U(restored_rev, rev);
    CHECK_MEM(extra_back, extra_back_len, extra, sizeof extra);
    rc_free(extra_back);
    char leftover[4200];
    snprintf(leftover, sizeof leftover, "%s.new", dst);
    CHECK(!dir_exists(leftover));
    snprintf(leftover, sizeof leftover, "%s.old", dst);
    CHECK(!dir_exists(leftover));
    snprintf(leftover, sizeof leftover, "%s/COMPLETE", dst);
    CHECK(access(leftover, F_OK) != 0);

    s = open_store(dst);
    got = digest_store(s);
    check_same(&want, &got);
    CHECK_EQ_U(rc_store_applied_revision(s), rev);
    check_value(s, "stale", NULL);
    CHECK_OK(rc_store_close(s));
    free(got.data);
    free(want.data);
}

TEST(snapshot_empty_store_and_no_extra)
{
    char src[4096], dst[4096], file[4096];
    path_in(src, sizeof src, "src");
    path_in(dst, sizeof dst, "fresh/cask"); /* restoring where nothing exists yet */
    path_in(file, sizeof file, "empty.bin");
    CHECK_OK(rc_mkdir_p(src));
    struct rc_store *s = open_store(src);
    struct snapshot_info info = snapshot_of(s, file, NULL, 0);
    CHECK_OK(rc_store_close(s));
    CHECK_EQ_U(info.records, 0);
    CHECK_EQ_U(info.revision, 0);
    struct bytes got;
    struct snapshot_header hdr;
    CHECK_OK(digest_file(file, &got, &hdr));
    CHECK_EQ_U(got.len, 0);
    CHECK_EQ_U(hdr.extra_len, 0);
    char parent[4096];
    path_in(parent, sizeof parent, "fresh");
    CHECK_OK(rc_mkdir_p(parent));
    void *extra = (void *)1;
    size_t extra_len = 7;
    CHECK_OK(snapshot_restore(file, dst, NULL, NULL, &extra, &extra_len));
    CHECK(extra == NULL);
    CHECK_EQ_U(extra_len, 0);
    s = open_store(dst);
    CHECK_EQ(rc_store_count(s), 0);
    CHECK_OK(rc_store_close(s));
}

struct sink_capture {
    struct bytes b;
    int calls;
    int fail_at; /* fail this call with RC_EIO; 0 = never */
};

static int capture_sink(void *ctx, const void *buf, size_t len)
{
    struct sink_capture *c = ctx;
    if (++c->calls == c->fail_at)
        return RC_EIO;
    bytes_add(&c->b, buf, len);
    return 0;
}

TEST(snapshot_sink_error_is_returned)
{
    struct rc_store *s = open_store(test_tmpdir());
    fill_store(s, 2000, 50);
    struct rc_store_view *v;
    CHECK_OK(rc_store_view_open(s, &v));
    struct sink_capture c = {.fail_at = 1};
    CHECK_EQ(snapshot_write_view(v, NULL, 0, capture_sink, &c, NULL, NULL), RC_EIO);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(
        snapshot_write_view(v, "x", SNAPSHOT_MAX_EXTRA_BYTES + 1, capture_sink, &c, NULL, NULL),
        RC_EINVAL);
    rc_store_view_close(v);
    CHECK_OK(rc_store_close(s));
    free(c.b.data);
}

/* ============================== views under writes ============================== */

/* The writer thread's sink stops at its first call until the main thread has changed the
 * store, so the stream is certainly written partly before and partly after the changes. */
struct paused_writer {
    struct rc_store_view *view;
    struct bytes out;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool started, store_changed;
    int rc;
};

static int paused_sink(void *ctx, const void *buf, size_t len)
{
    struct paused_writer *w = ctx;
    pthread_mutex_lock(&w->mu);
    if (!w->started) {
        w->started = true;
        pthread_cond_broadcast(&w->cond);
        while (!w->store_changed)
            pthread_cond_wait(&w->cond, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    bytes_add(&w->out, buf, len);
    return 0;
}

static void *paused_writer_thread(void *p)
{
    struct paused_writer *w = p;
    w->rc = snapshot_write_view(w->view, "e", 1, paused_sink, w, NULL, NULL);
    return NULL;
}

TEST(snapshot_from_view_while_store_is_written)
{
    char dir[4096], file[4096];
    path_in(dir, sizeof dir, "cask");
    path_in(file, sizeof file, "state.bin");
    struct rc_store *s = open_store_opts(dir, 256 * 1024, false); /* many files: merge works */
    uint64_t rev = fill_store(s, 3000, 300);
    /* Incompressible values, so the compressed stream fills its buffer many times over. */
    uint64_t seed = test_seed(42);
    uint8_t noise[64 * 1024];
    for (int i = 0; i < 40; i++) {
        for (size_t j = 0; j < sizeof noise; j += 8) {
            uint64_t r = test_rand(&seed);
            memcpy(noise + j, &r, 8);
        }
        char k[32];
        int n = snprintf(k, sizeof k, "noise-%02d", i);
        CHECK_OK(rc_store_put(s, k, (size_t)n, noise, sizeof noise, 0, ++rev));
    }
    struct paused_writer w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    CHECK_OK(rc_store_view_open(s, &w.view));
    struct bytes want = digest_view(w.view);

    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, paused_writer_thread, &w));
    pthread_mutex_lock(&w.mu);
    while (!w.started)
        pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    /* The writer is mid-stream: overwrite, delete, add, merge (deleting the files the view
     * reads) and clear the store. */
    for (int i = 0; i < 3000; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "new-%d", i);
        CHECK_OK(rc_store_put(s, k, (size_t)n, "v", 1, 0, ++rev));
        uint8_t key[16] = {'k', 0, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 0xff, '\r'};
        if (i % 3 == 0)
            CHECK_OK(rc_store_put(s, key, 7, "changed", 7, 0, ++rev));
        else if (i % 3 == 1)
            (void)rc_store_delete(s, key, 7, ++rev);
        if (i == 1500)
            CHECK_OK(rc_store_merge(s));
    }
    CHECK_OK(rc_store_merge(s));
    CHECK_OK(rc_store_clear(s, ++rev));
    pthread_mutex_lock(&w.mu);
    w.store_changed = true;
    pthread_cond_broadcast(&w.cond);
    pthread_mutex_unlock(&w.mu);
    pthread_join(t, NULL);
    CHECK_OK(w.rc);
    CHECK(w.out.len > 2 * sizeof noise * 10);
    rc_store_view_close(w.view);
    CHECK_OK(rc_store_close(s));

    test_write_file(file, w.out.data, w.out.len);
    struct bytes got;
    CHECK_OK(digest_file(file, &got, NULL));
    check_same(&want, &got);
    free(got.data);
    free(want.data);
    free(w.out.data);
}

/* ============================== damage ============================== */

TEST(snapshot_truncated_or_flipped_is_rejected)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    char file[4096], bad[4096];
    path_in(file, sizeof file, "state.bin");
    path_in(bad, sizeof bad, "bad.bin");
    struct rc_store *s = open_store(test_tmpdir());
    fill_store(s, 60, 0);
    snapshot_of(s, file, "xy", 2);
    CHECK_OK(rc_store_close(s));
    size_t len;
    uint8_t *data = read_whole(file, &len);
    struct bytes want, got;
    CHECK_OK(digest_file(file, &want, NULL));

    for (size_t cut = 0; cut < len; cut++) {
        test_write_file(bad, data, cut);
        int rc = digest_file(bad, &got, NULL);
        CHECK_MSG(rc < 0, "truncated at %zu of %zu: rc %d", cut, len, rc);
        free(got.data);
    }
    /* Trailing bytes after a whole stream. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, data, len);
    longer[len] = 0;
    test_write_file(bad, longer, len + 1);
    CHECK_EQ(digest_file(bad, &got, NULL), RC_ECORRUPT);
    free(got.data);
    free(longer);

    /* Every single-bit flip either fails or (a bit zstd ignores) gives the same contents. */
    int rejected = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            data[i] ^= (uint8_t)(1u << bit);
            test_write_file(bad, data, len);
            int rc = digest_file(bad, &got, NULL);
            if (rc < 0)
                rejected++;
            else
                CHECK_MSG(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
                          "flip at byte %zu bit %d accepted with different contents", i, bit);
            free(got.data);
            data[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK(rejected > (int)len * 2);
    free(want.data);
    free(data);
}

/* A snapshot whose content is well compressed but wrong (the CRC and structure checks). */
TEST(snapshot_bad_content_is_rejected)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    char file[4096];
    path_in(file, sizeof file, "forged.bin");
    /* Not a zstd frame at all, and an empty file. */
    test_write_file(file, "hello world, not zstd", 21);
    struct bytes got;
    CHECK_EQ(digest_file(file, &got, NULL), RC_ECORRUPT);
    test_write_file(file, "", 0);
    CHECK_EQ(digest_file(file, &got, NULL), RC_ECORRUPT);
    CHECK_EQ(digest_file("/nonexistent/x", &got, NULL), RC_ENOTFOUND);

    /* A huge announced key length in a valid frame: rejected, no huge allocation. */
    uint8_t content[36 + 24 + 4] = {'R', 'C', 'S', 'N', 'A', 'P', 0, '\n', 1};
    content[24] = 1; /* count = 1 */
    content[16] = 9; /* revision = 9 */
    uint8_t *rec = content + 36;
    rec[0] = 0xff; /* klen 0xff...: beyond SNAPSHOT_MAX_KEY_BYTES */
    rec[1] = 0xff;
    rec[2] = 0xff;
    rec[3] = 0x7f;
    uint8_t frame[256];
    size_t n = ZSTD_compress(frame, sizeof frame, content, sizeof content, 1);
    CHECK(!ZSTD_isError(n));
    test_write_file(file, frame, n);
    CHECK_EQ(digest_file(file, &got, NULL), RC_ECORRUPT);
    /* A key length within limits but more than the stream holds. */
    rec[2] = 0x10;
    rec[3] = 0;
    n = ZSTD_compress(frame, sizeof frame, content, sizeof content, 1);
    test_write_file(file, frame, n);
    CHECK_EQ(digest_file(file, &got, NULL), RC_ECORRUPT);
    /* A record revision above the header's. */
    memset(rec, 0, 24);
    rec[16] = 10;
    n = ZSTD_compress(frame, sizeof frame, content, 60, 1);
    test_write_file(file, frame, n);
    CHECK_EQ(digest_file(file, &got, NULL), RC_ECORRUPT);
    free(got.data);
}

TEST(snapshot_restore_of_damaged_file_leaves_cask_untouched)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    char cask[4096], other[4096], file[4096], bad[4096], side[4200];
    path_in(cask, sizeof cask, "cask");
    path_in(other, sizeof other, "other");
    path_in(file, sizeof file, "state.bin");
    path_in(bad, sizeof bad, "bad.bin");
    struct rc_store *s = open_store(other);
    fill_store(s, 500, 100);
    snapshot_of(s, file, NULL, 0);
    CHECK_OK(rc_store_close(s));
    s = open_store(cask);
    fill_store(s, 100, 0);
    put_str(s, "mine", "kept", 100000);
    struct bytes want = digest_store(s);
    CHECK_OK(rc_store_close(s));

    size_t len;
    uint8_t *data = read_whole(file, &len);
    struct rc_store_options o = test_options();
    size_t cuts[] = {0, 10, len / 3, len / 2, len - 5, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        test_write_file(bad, data, cuts[i]);
        CHECK(snapshot_restore(bad, cask, &o, NULL, NULL, NULL) < 0);
    }
    for (size_t at = 7; at < len; at += len / 9) {
        data[at] ^= 0x10;
        test_write_file(bad, data, len);
        data[at] ^= 0x10;
        CHECK(snapshot_restore(bad, cask, &o, NULL, NULL, NULL) < 0);
    }
    CHECK(snapshot_restore("/nonexistent/file", cask, &o, NULL, NULL, NULL) == RC_ENOTFOUND);
    snprintf(side, sizeof side, "%s.new", cask);
    CHECK(!dir_exists(side));
    s = open_store(cask);
    struct bytes got = digest_store(s);
    check_same(&want, &got);
    /* And restoring under an open store is refused. */
    CHECK_EQ(snapshot_restore(file, cask, &o, NULL, NULL, NULL), RC_ELOCKED);
    CHECK_OK(rc_store_close(s));
    free(got.data);
    free(want.data);
    free(data);
}

/* ============================== interrupted restore ============================== */

static void check_cask_is(const char *dir, const struct bytes *want)
{
    struct rc_store *s = open_store(dir);
    struct bytes got = digest_store(s);
    check_same(want, &got);
    CHECK_OK(rc_store_close(s));
    free(got.data);
}

TEST(snapshot_recover_finishes_or_rolls_back_each_crash_point)
{
    char oldsrc[4096], newsrc[4096], file[4096], cask[4096];
    char cask_new[4200], cask_old[4200], marker[4300];
    path_in(oldsrc, sizeof oldsrc, "old-store");
    path_in(newsrc, sizeof newsrc, "new-store");
    path_in(file, sizeof file, "state.bin");
    path_in(cask, sizeof cask, "cask");
    snprintf(cask_new, sizeof cask_new, "%s.new", cask);
    snprintf(cask_old, sizeof cask_old, "%s.old", cask);

    struct rc_store *s = open_store(oldsrc);
    fill_store(s, 200, 50);
    struct bytes old_contents = digest_store(s);
    CHECK_OK(rc_store_close(s));
    s = open_store(newsrc);
    fill_store(s, 300, 0);
    put_str(s, "only-in-new", "yes", 1000000);
    snapshot_of(s, file, NULL, 0);
    CHECK_OK(rc_store_close(s));
    /* The store a restore builds, as it would stand in cask.new. */
    CHECK_OK(snapshot_restore(file, newsrc, NULL, NULL, NULL, NULL));
    s = open_store(newsrc);
    struct bytes new_contents = digest_store(s);
    CHECK_OK(rc_store_close(s));

    enum {
        OLD_ONLY,
        NEW_INCOMPLETE,
        NEW_COMPLETE,
        BETWEEN_RENAMES,
        OLD_LEFT,
        MARKER_LEFT,
        ONLY_OLD_DIR,
        STATES
    };
    for (int state = 0; state < STATES; state++) {
        test_remove_dir(cask);
        test_remove_dir(cask_new);
        test_remove_dir(cask_old);
        const struct bytes *expect = &old_contents;
        switch (state) {
        case OLD_ONLY:
            test_copy_dir(oldsrc, cask);
            break;
        case NEW_INCOMPLETE: /* crashed while building: some files, no COMPLETE */
            test_copy_dir(oldsrc, cask);
            test_copy_dir(newsrc, cask_new);
            break;
        case NEW_COMPLETE: /* crashed after COMPLETE, before the first rename */
            test_copy_dir(oldsrc, cask);
            test_copy_dir(newsrc, cask_new);
            snprintf(marker, sizeof marker, "%s/COMPLETE", cask_new);
            test_write_file(marker, "complete\n", 9);
            expect = &new_contents;
            break;
        case BETWEEN_RENAMES:
            test_copy_dir(oldsrc, cask_old);
            test_copy_dir(newsrc, cask_new);
            snprintf(marker, sizeof marker, "%s/COMPLETE", cask_new);
            test_write_file(marker, "complete\n", 9);
            expect = &new_contents;
            break;
        case OLD_LEFT: /* crashed after the second rename, before .old was deleted */
            test_copy_dir(oldsrc, cask_old);
            test_copy_dir(newsrc, cask);
            snprintf(marker, sizeof marker, "%s/COMPLETE", cask);
            test_write_file(marker, "complete\n", 9);
            expect = &new_contents;
            break;
        case MARKER_LEFT:
            test_copy_dir(newsrc, cask);
            snprintf(marker, sizeof marker, "%s/COMPLETE", cask);
            test_write_file(marker, "complete\n", 9);
            expect = &new_contents;
            break;
        case ONLY_OLD_DIR: /* cannot happen, but the only copy must never be deleted */
            test_copy_dir(oldsrc, cask_old);
            break;
        }
        CHECK_OK(snapshot_restore_recover(cask));
        CHECK_MSG(!dir_exists(cask_new) && !dir_exists(cask_old), "state %d left a side dir",
                  state);
        snprintf(marker, sizeof marker, "%s/COMPLETE", cask);
        CHECK_MSG(access(marker, F_OK) != 0, "state %d left the marker", state);
        check_cask_is(cask, expect);
        CHECK_OK(snapshot_restore_recover(cask)); /* idempotent */
        check_cask_is(cask, expect);
    }
    /* Nothing at all: nothing to do. */
    test_remove_dir(cask);
    CHECK_OK(snapshot_restore_recover(cask));
    CHECK(!dir_exists(cask));
    free(old_contents.data);
    free(new_contents.data);
}

static void exit_at_point(const char *point, void *ctx)
{
    if (strcmp(point, ctx) == 0)
        _exit(0); /* as a crash: no cleanup, nothing more written */
}

/* Old and new contents for the step-by-step restore tests: the old store in cask (closed),
 * a snapshot of another store at file. */
static void two_stores(const char *cask, const char *file, struct bytes *old_contents,
                       struct bytes *new_contents)
{
    struct rc_store *s = open_store(cask);
    fill_store(s, 200, 50);
    *old_contents = digest_store(s);
    CHECK_OK(rc_store_close(s));
    char newsrc[4096];
    path_in(newsrc, sizeof newsrc, "new-store");
    s = open_store(newsrc);
    fill_store(s, 300, 0);
    put_str(s, "only-in-new", "yes", 1000000);
    *new_contents = digest_store(s);
    snapshot_of(s, file, NULL, 0);
    CHECK_OK(rc_store_close(s));
}

/* The node's way: the new store is built beside the open old one, which keeps serving; the
 * two are swapped open; the old one is closed and removed afterwards. */
TEST(snapshot_restore_in_steps_beside_the_open_store)
{
    char file[4096], cask[4096], side[4200];
    path_in(file, sizeof file, "state.bin");
    path_in(cask, sizeof cask, "cask");
    struct bytes old_contents, new_contents;
    two_stores(cask, file, &old_contents, &new_contents);
    struct rc_store_options o = test_options();
    struct rc_store *old = NULL, *built = NULL;
    CHECK_OK(rc_store_open(cask, &o, &old));

    /* Cancelled: nothing is left beside the store. */
    struct snapshot_reader *r = NULL;
    CHECK_OK(snapshot_reader_open(file, &r));
    atomic_int cancel = 1;
    CHECK_EQ(snapshot_restore_build(r, cask, &o, &cancel, &built), RC_ECLOSED);
    CHECK(built == NULL);
    snprintf(side, sizeof side, "%s.new", cask);
    CHECK(!dir_exists(side));
    snapshot_reader_close(r);

    CHECK_OK(snapshot_reader_open(file, &r));
    CHECK_OK(snapshot_restore_build(r, cask, &o, NULL, &built));
    snapshot_reader_close(r);
    CHECK(dir_exists(side));
    struct bytes got = digest_store(old); /* the old store is untouched meanwhile */
    check_same(&old_contents, &got);
    free(got.data);
    CHECK_OK(snapshot_restore_swap(cask, old, built));
    CHECK(!dir_exists(side));
    got = digest_store(built);
    check_same(&new_contents, &got);
    free(got.data);
    put_str(built, "after-the-swap", "1", 2000000); /* written in cask, not in .new */
    snprintf(side, sizeof side, "%s.old", cask);
    CHECK(dir_exists(side));
    CHECK_OK(snapshot_restore_finish(cask, old));
    CHECK(!dir_exists(side));
    CHECK_OK(rc_store_close(built));
    CHECK_OK(snapshot_restore_recover(cask)); /* nothing to do */
    struct rc_store *s = open_store(cask);
    check_value(s, "after-the-swap", "1");
    CHECK_OK(rc_store_delete(s, "after-the-swap", 14, 2000001));
    got = digest_store(s);
    check_same(&new_contents, &got);
    free(got.data);
    CHECK_OK(rc_store_close(s));
    free(old_contents.data);
    free(new_contents.data);
}

/* In a child per point, from a copy of pristine in cask: run_restore dies at the named
 * point (the test hook); recovery then leaves no side directory and the old contents before
 * the build is complete (the first point), the new ones from then on. */
typedef void (*restore_fn)(const char *file, const char *cask, const char *point);

static void kill_at_each_point(const char *const *points, size_t n, const char *file,
                               const char *cask, const char *pristine, restore_fn run_restore,
                               const struct bytes *old_contents, const struct bytes *new_contents)
{
    char side[4200];
    for (size_t i = 0; i < n; i++) {
        test_remove_dir(cask);
        test_copy_dir(pristine, cask);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            snapshot_set_test_hook(exit_at_point, (void *)points[i]);
            run_restore(file, cask, points[i]);
            _exit(3); /* the point was never reached */
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s not reached", points[i]);
        CHECK_OK(snapshot_restore_recover(cask));
        snprintf(side, sizeof side, "%s.new", cask);
        CHECK(!dir_exists(side));
        snprintf(side, sizeof side, "%s.old", cask);
        CHECK(!dir_exists(side));
        check_cask_is(cask, i == 0 ? old_contents : new_contents);
    }
}

static void restore_closed(const char *file, const char *cask, const char *point)
{
    (void)point;
    snapshot_restore(file, cask, NULL, NULL, NULL, NULL);
}

static void restore_in_steps(const char *file, const char *cask, const char *point)
{
    struct rc_store_options o = test_options();
    struct rc_store *old = NULL, *built = NULL;
    struct snapshot_reader *r = NULL;
    if (rc_store_open(cask, &o, &old) != 0 || snapshot_reader_open(file, &r) != 0 ||
        snapshot_restore_build(r, cask, &o, NULL, &built) != 0 ||
        snapshot_restore_swap(cask, old, built) != 0)
        _exit(3);
    exit_at_point("done", (void *)point); /* before finish: .old is left */
}

/* A child that dies at each point of a restore: the real one (the store closed, as at
 * start), then the node's steps (beside the open store). */
TEST(snapshot_restore_killed_at_each_point_recovers)
{
    char file[4096], cask[4096], pristine[4096];
    path_in(file, sizeof file, "state.bin");
    path_in(cask, sizeof cask, "cask");
    path_in(pristine, sizeof pristine, "pristine");
    struct bytes old_contents, new_contents;
    two_stores(pristine, file, &old_contents, &new_contents);
    const char *closed[] = {"restore:built", "restore:complete", "restore:old-moved",
                            "restore:swapped", "restore:done"};
    kill_at_each_point(closed, sizeof closed / sizeof *closed, file, cask, pristine, restore_closed,
                       &old_contents, &new_contents);
    const char *steps[] = {"restore:built", "restore:complete", "restore:old-moved",
                           "restore:swapped", "done"};
    kill_at_each_point(steps, sizeof steps / sizeof *steps, file, cask, pristine, restore_in_steps,
                       &old_contents, &new_contents);
    free(old_contents.data);
    free(new_contents.data);
}

/* A complete build that is thrown away (a newer snapshot came) loses its COMPLETE marker
 * first: killed right after, the restart keeps the old store instead of swapping in a
 * build whose files were being deleted. */
TEST(snapshot_restore_abandoned_build_killed_midway_keeps_the_old_store)
{
    char file[4096], cask[4096], side[4200];
    path_in(file, sizeof file, "state.bin");
    path_in(cask, sizeof cask, "cask");
    struct bytes old_contents, new_contents;
    two_stores(cask, file, &old_contents, &new_contents);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        snapshot_set_test_hook(exit_at_point, (void *)"restore:unmarked");
        struct rc_store_options o = test_options();
        struct rc_store *old = NULL, *built = NULL;
        struct snapshot_reader *r = NULL;
        if (rc_store_open(cask, &o, &old) != 0 || snapshot_reader_open(file, &r) != 0 ||
            snapshot_restore_build(r, cask, &o, NULL, &built) != 0)
            _exit(3);
        snapshot_restore_abandon(cask, built);
        _exit(3);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "restore:unmarked not reached");
    snprintf(side, sizeof side, "%s.new", cask);
    CHECK(dir_exists(side)); /* its files are still there, unmarked */
    CHECK_OK(snapshot_restore_recover(cask));
    CHECK(!dir_exists(side));
    check_cask_is(cask, &old_contents);
    free(old_contents.data);
    free(new_contents.data);
}

/* ============================== printing ============================== */

static char *print_to_string(const char *path, size_t *len, int *rc)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    CHECK(out);
    *rc = snapshot_print_resp(path, out);
    fclose(out);
    return text;
}

TEST(snapshot_print_resp_exact_bytes)
{
    char file[4096];
    path_in(file, sizeof file, "state.bin");
    struct rc_store *s = open_store(test_tmpdir());
    CHECK_OK(rc_store_put(s, "a", 1, "1", 1, 0, 1));
    CHECK_OK(rc_store_put(s, "b\r\n\0", 4, "x\r\ny", 4, 1700000000123, 2));
    snapshot_of(s, file, NULL, 0);
    CHECK_OK(rc_store_close(s));
    size_t len;
    int rc;
    char *text = print_to_string(file, &len, &rc);
    CHECK_OK(rc);
    const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"
                        "*5\r\n$3\r\nSET\r\n$4\r\nb\r\n\0\r\n$4\r\nx\r\ny\r\n"
                        "$4\r\nPXAT\r\n$13\r\n1700000000123\r\n";
    CHECK_MEM(text, len, want, sizeof want - 1);
    free(text);
}

TEST(snapshot_print_resp_parses_back)
{
    char file[4096];
    path_in(file, sizeof file, "state.bin");
    struct rc_store *s = open_store(test_tmpdir());
    fill_store(s, 1000, 100);
    struct bytes want = digest_store(s);
    snapshot_of(s, file, NULL, 0);
    CHECK_OK(rc_store_close(s));
    size_t len;
    int rc;
    char *text = print_to_string(file, &len, &rc);
    CHECK_OK(rc);

    /* Parse every command back and rebuild the digest (revisions are not printed). */
    struct bytes got = {0}, want_norev = {0};
    struct resp_parser p;
    struct resp_argv argv;
    struct resp_limits limits;
    resp_parser_init(&p);
    resp_argv_init(&argv);
    resp_limits_default(&limits);
    size_t at = 0;
    while (at < len) {
        size_t used;
        CHECK_OK(resp_parse(&p, &limits, text + at, len - at, &argv, &used));
        at += used;
        CHECK(argv.count == 3 || argv.count == 5);
        CHECK(resp_arg_is(&argv.args[0], "SET"));
        int64_t expiry = 0;
        if (argv.count == 5) {
            CHECK(resp_arg_is(&argv.args[3], "PXAT"));
            expiry = strtoll(argv.args[4].ptr, NULL, 10);
            CHECK(expiry > 0);
        }
        digest_item(&got, argv.args[1].ptr, argv.args[1].len, argv.args[2].ptr, argv.args[2].len,
                    expiry, 0);
    }
    resp_argv_free(&argv);
    /* The store's digest with revisions zeroed. */
    for (size_t off = 0; off < want.len;) {
        uint64_t h[4];
        memcpy(h, want.data + off, sizeof h);
        h[3] = 0;
        bytes_add(&want_norev, h, sizeof h);
        bytes_add(&want_norev, want.data + off + sizeof h, h[0] + h[1]);
        off += sizeof h + h[0] + h[1];
    }
    check_same(&want_norev, &got);
    free(text);
    free(got.data);
    free(want.data);
    free(want_norev.data);
}

static void gz_put_string(gzFile gz, const void *p, uint64_t len)
{
    CHECK_EQ(gzwrite(gz, &len, 8), 8);
    if (len)
        CHECK_EQ(gzwrite(gz, p, (unsigned)len), (int)len);
}

TEST(snapshot_print_resp_reads_bitraft_gzip)
{
    rc_log_set_level(RC_LOG_ERROR + 1);
    char file[4096];
    path_in(file, sizeof file, "bitraft.bin");
    gzFile gz = gzopen(file, "wb");
    CHECK(gz);
    gz_put_string(gz, "key1", 4);
    gz_put_string(gz, "v\r\n1", 4);
    gz_put_string(gz, "", 0);
    gz_put_string(gz, "empty", 5);
    CHECK_EQ(gzclose(gz), Z_OK);
    size_t len;
    int rc;
    char *text = print_to_string(file, &len, &rc);
    CHECK_OK(rc);
    const char want[] = "*3\r\n$3\r\nSET\r\n$4\r\nkey1\r\n$4\r\nv\r\n1\r\n"
                        "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\nempty\r\n";
    CHECK_MEM(text, len, want, sizeof want - 1);
    free(text);

    /* Truncated anywhere after the gzip magic: an error (never a crash). */
    size_t flen;
    uint8_t *data = read_whole(file, &flen);
    char bad[4096];
    path_in(bad, sizeof bad, "bad.bin");
    for (size_t cut = 2; cut < flen; cut++) {
        test_write_file(bad, data, cut);
        text = print_to_string(bad, &len, &rc);
        CHECK_MSG(rc < 0, "gzip cut at %zu of %zu accepted", cut, flen);
        free(text);
    }
    /* A key with a length but not the value. */
    gz = gzopen(bad, "wb");
    gz_put_string(gz, "lonely", 6);
    gzclose(gz);
    text = print_to_string(bad, &len, &rc);
    CHECK_EQ(rc, RC_ECORRUPT);
    free(text);
    free(data);
}

/* ============================== allocation failures ============================== */

TEST(snapshot_survives_allocation_failures)
{
    char file[4096], cask[4096];
    path_in(file, sizeof file, "state.bin");
    path_in(cask, sizeof cask, "cask");
    struct rc_store *s = open_store(test_tmpdir());
    fill_store(s, 50, 10);
    struct rc_store_view *v;
    CHECK_OK(rc_store_view_open(s, &v));
    struct bytes want = digest_view(v);
    for (long n = 0;; n++) { /* writing */
        struct sink_capture c = {0};
        rc_alloc_fail_after(n);
        int rc = snapshot_write_view(v, "x", 1, capture_sink, &c, NULL, NULL);
        rc_alloc_fail_after(-1);
        free(c.b.data);
        if (rc == 0)
            break;
        CHECK_EQ(rc, RC_ENOMEM);
    }
    CHECK_OK(snapshot_write_file(v, "x", 1, file, NULL, NULL));
    rc_store_view_close(v);
    CHECK_OK(rc_store_close(s));
    for (long n = 0;; n++) { /* reading */
        struct bytes got;
        rc_alloc_fail_after(n);
        int rc = digest_file(file, &got, NULL);
        rc_alloc_fail_after(-1);
        if (rc == 0) {
            check_same(&want, &got);
            free(got.data);
            break;
        }
        CHECK_EQ(rc, RC_ENOMEM);
        free(got.data);
    }
    free(want.data);
}

/* A writer whose cancel flag is set stops with RC_ECLOSED and leaves no file (a restore sets
 * it on the job writing from the store it is about to replace). */
TEST(snapshot_write_stops_when_cancelled)
{
    char file[4096];
    path_in(file, sizeof file, "state.bin");
    struct rc_store *s = open_store(test_tmpdir());
    fill_store(s, 50, 10);
    struct rc_store_view *v;
    CHECK_OK(rc_store_view_open(s, &v));
    atomic_int cancel = 1;
    CHECK_EQ(snapshot_write_file(v, "x", 1, file, NULL, &cancel), RC_ECLOSED);
    CHECK(access(file, F_OK) != 0);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    CHECK(access(tmp, F_OK) != 0);
    atomic_store(&cancel, 0);
    CHECK_OK(snapshot_write_file(v, "x", 1, file, NULL, &cancel));
    CHECK(access(file, F_OK) == 0);
    rc_store_view_close(v);
    CHECK_OK(rc_store_close(s));
}

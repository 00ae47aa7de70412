/*
 * snapstream.c — the snapshot stream ("state.bin"): writing from a view, reading, restoring a
 * store, printing as RESP. API in snapstream.h.
 *
 * NOTES ON THE DESIGN OF THE SNAPSHOT STREAM
 *
 * The file is one zstd frame (with zstd's own content checksum) whose uncompressed content
 * is, all integers little-endian:
 *
 *   header   +---------------+---------+---------+----------+---------+-----------+-------+
 *            | "RCSNAP\0\n"  | version | flags=0 | revision | count   | extra_len | extra |
 *            | 8             | u32     | u32     | u64      | u64     | u32       | ...   |
 *            +---------------+---------+---------+----------+---------+-----------+-------+
 *   count x  +-------+-------+-----------+----------+-----+-------+
 *   record   | klen  | vlen  | expiry_ms | revision | key | value |
 *            | u32   | u32   | i64       | u64      | ... | ...   |
 *            +-------+-------+-----------+----------+-----+-------+
 *   trailer  +---------------+-------+-------+
 *            | "RCSNEND\n"   | count | crc   |
 *            | 8             | u64   | u32   |
 *            +---------------+-------+-------+
 *
 * Invariants, each checked by the reader (a failure is RC_ECORRUPT):
 *  1. Records are in strictly increasing key order (memcmp, shorter first on a tie) and
 *     there are exactly `count` of them; the trailer repeats count.
 *  2. revision is the store's applied revision when the view was taken: every record's
 *     revision is <= it. expiry_ms is absolute ms since the epoch, 0 = none, never negative.
 *     Expired keys are included, so a replica restored from the stream is identical.
 *  3. crc is the CRC-32C of every uncompressed byte before it (header, records, trailer
 *     magic and count). Nothing follows the trailer, in the content or in the file.
 *  4. Every length is checked against a limit (SNAPSHOT_MAX_*) before use, and buffers grow
 *     only as bytes actually arrive, so a forged length cannot make the reader allocate more
 *     than about twice what the file really holds.
 *
 * Who does what: snapshot_write_view counts the view's keys (a keydir walk, no values), then
 * streams header, records and trailer through a small staging buffer into
 * ZSTD_compressStream2; snapshot_reader_next pulls bytes through ZSTD_decompressStream.
 * Both use constant memory apart from the largest record. snapshot_restore builds a new
 * store beside the old one and swaps directories; its crash argument is in the restore
 * section below and in docs/DESIGN.md.
 */
#include "snapstream.h"

#include "common/alloc.h"
#include "common/bytes.h"
#include "common/crc32c.h"
#include "common/failpoint.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static const char header_magic[8] = {'R', 'C', 'S', 'N', 'A', 'P', '\0', '\n'};
static const char trailer_magic[8] = {'R', 'C', 'S', 'N', 'E', 'N', 'D', '\n'};

#define HEADER_FIXED_BYTES 36 /* magic, version, flags, revision, count, extra_len */
#define RECORD_FIXED_BYTES 24 /* klen, vlen, expiry_ms, revision */
#define TRAILER_BYTES      20 /* magic, count, crc */
#define STAGE_BYTES        (64 * 1024)
#define COMPRESSION_LEVEL  3
#define MAX_WINDOW_LOG     27 /* a forged frame may not ask for more than 128 MiB */

/* ============================== writing ============================== */

struct writer {
    ZSTD_CCtx *cctx;
    uint8_t *out; /* compressed bytes waiting for the sink */
    size_t out_cap;
    size_t out_len;
    uint8_t *stage; /* small uncompressed pieces gathered before compression */
    size_t stage_len;
    snapshot_sink_fn sink;
    void *sink_ctx;
    struct snapshot_info info;
    uint64_t records_left; /* as counted before the records pass */
    int error;
    const atomic_int *cancel;
};

static int writer_flush_out(struct writer *w)
{
    if (w->out_len == 0)
        return 0;
    int rc = w->sink(w->sink_ctx, w->out, w->out_len);
    w->info.compressed_bytes += w->out_len;
    w->out_len = 0;
    return rc;
}

/* Compresses len bytes (already counted in the CRC); with end, finishes the frame. */
static int writer_compress(struct writer *w, const void *data, size_t len, bool end)
{
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_cap, w->out_len};
        size_t left = ZSTD_compressStream2(w->cctx, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
        w->out_len = out.pos;
        if (ZSTD_isError(left)) {
            rc_error("snapshot: compression failed: %s", ZSTD_getErrorName(left));
            return RC_ENOMEM;
        }
        if (w->out_len == w->out_cap || (end && w->out_len > 0)) {
            int rc = writer_flush_out(w);
            if (rc != 0)
                return rc;
        }
        if (end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

static int writer_flush_stage(struct writer *w)
{
    if (w->stage_len == 0)
        return 0;
    int rc = writer_compress(w, w->stage, w->stage_len, false);
    w->stage_len = 0;
    return rc;
}

/* Appends uncompressed bytes to the stream. */
static int writer_add(struct writer *w, const void *data, size_t len)
{
    w->info.crc = rc_crc32c(w->info.crc, data, len);
    w->info.uncompressed_bytes += len;
    if (len > STAGE_BYTES / 2) { /* big values go straight to the compressor */
        int rc = writer_flush_stage(w);
        return rc != 0 ? rc : writer_compress(w, data, len, false);
    }
    if (w->stage_len + len > STAGE_BYTES) {
        int rc = writer_flush_stage(w);
        if (rc != 0)
            return rc;
    }
    memcpy(w->stage + w->stage_len, data, len);
    w->stage_len += len;
    return 0;
}

static int count_fn(const void *key, size_t klen, const void *value, size_t vlen,
                    const struct rc_item_meta *meta, void *ctx)
{
    (*(uint64_t *)ctx)++;
    return 0;
}

static int record_fn(const void *key, size_t klen, const void *value, size_t vlen,
                     const struct rc_item_meta *meta, void *ctx)
{
    struct writer *w = ctx;
    rc_failpoint("snapshot:record"); /* tests slow a writer down with it (=sleep:MS) */
    if (w->cancel && atomic_load(w->cancel))
        return RC_ECLOSED;
    if (klen > SNAPSHOT_MAX_KEY_BYTES || vlen > SNAPSHOT_MAX_VALUE_BYTES)
        return RC_ETOOBIG;
    if (w->records_left == 0) /* the view changed under us: it must not */
        return RC_EINVAL;
    w->records_left--;
    uint8_t h[RECORD_FIXED_BYTES];
    rc_put_u32(h, (uint32_t)klen);
    rc_put_u32(h + 4, (uint32_t)vlen);
    rc_put_u64(h + 8, (uint64_t)meta->expiry_ms);
    rc_put_u64(h + 16, meta->revision);
    int rc = writer_add(w, h, sizeof h);
    if (rc == 0)
        rc = writer_add(w, key, klen);
    if (rc == 0 && vlen > 0)
        rc = writer_add(w, value, vlen);
    if (rc == 0)
        w->info.records++;
    return rc;
}

int snapshot_write_view(struct rc_store_view *v, const void *extra, size_t extra_len,
                        snapshot_sink_fn sink, void *sink_ctx, struct snapshot_info *info,
                        const atomic_int *cancel)
{
    if (extra_len > SNAPSHOT_MAX_EXTRA_BYTES || (extra_len > 0 && !extra))
        return RC_EINVAL;
    struct writer w = {.sink = sink, .sink_ctx = sink_ctx, .cancel = cancel};
    w.info.revision = rc_store_view_revision(v);

    uint64_t count = 0;
    struct rc_store_range all = {.include_expired = true};
    int rc = rc_store_view_scan(v, &all, count_fn, &count);
    if (rc != 0)
        return rc;

    rc = RC_ENOMEM;
    w.cctx = ZSTD_createCCtx();
    w.out_cap = ZSTD_CStreamOutSize();
    w.out = rc_malloc(w.out_cap);
    w.stage = rc_malloc(STAGE_BYTES);
    if (!w.cctx || !w.out || !w.stage)
        goto out;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, COMPRESSION_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_checksumFlag, 1)))
        goto out;

    uint8_t h[HEADER_FIXED_BYTES];
    memcpy(h, header_magic, 8);
    rc_put_u32(h + 8, SNAPSHOT_VERSION);
    rc_put_u32(h + 12, 0);
    rc_put_u64(h + 16, w.info.revision);
    rc_put_u64(h + 24, count);
    rc_put_u32(h + 32, (uint32_t)extra_len);
    rc = writer_add(&w, h, sizeof h);
    if (rc == 0 && extra_len > 0)
        rc = writer_add(&w, extra, extra_len);
    if (rc != 0)
        goto out;

    w.records_left = count;
    all.with_values = true;
    rc = rc_store_view_scan(v, &all, record_fn, &w);
    if (rc == 0 && w.records_left != 0)
        rc = RC_EINVAL;
    if (rc != 0)
        goto out;

    uint8_t t[TRAILER_BYTES];
    memcpy(t, trailer_magic, 8);
    rc_put_u64(t + 8, count);
    rc = writer_add(&w, t, 16);
    if (rc != 0)
        goto out;
    rc_put_u32(t + 16, w.info.crc);
    w.info.uncompressed_bytes += 4; /* the CRC covers everything before itself */
    rc = writer_flush_stage(&w);
    if (rc == 0)
        rc = writer_compress(&w, t + 16, 4, true);
    if (rc == 0 && info)
        *info = w.info;
out:
    rc_free(w.stage);
    rc_free(w.out);
    ZSTD_freeCCtx(w.cctx);
    return rc;
}

static int fd_sink(void *ctx, const void *buf, size_t len)
{
    return rc_write_all(*(int *)ctx, buf, len, "snapshot");
}

/* Writes the directory part of path (or ".") into dir. */
static void parent_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

int snapshot_write_file(struct rc_store_view *v, const void *extra, size_t extra_len,
                        const char *path, struct snapshot_info *info, const atomic_int *cancel)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return RC_EINVAL;
    parent_of(path, dir, sizeof dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc_warn("open %s: %s", tmp, strerror(errno));
        return RC_EIO;
    }
    int rc = snapshot_write_view(v, extra, extra_len, fd_sink, &fd, info, cancel);
    return rc_commit_temp_file(fd, rc, tmp, path, dir);
}

/* ============================== reading ============================== */

struct snapshot_reader {
    int fd;
    ZSTD_DCtx *dctx;
    uint8_t *in; /* compressed bytes read from the file */
    size_t in_cap;
    ZSTD_inBuffer zin;
    bool file_eof;
    size_t frame_left; /* ZSTD_decompressStream's last hint: 0 once the frame is complete */
    uint8_t *out;      /* decompressed bytes not yet consumed: out[out_pos..out_len) */
    size_t out_cap, out_pos, out_len;
    uint32_t crc; /* of every decompressed byte consumed */
    struct snapshot_header header;
    void *extra;
    uint64_t records_read;
    uint8_t *rec; /* the current record's key and value */
    size_t rec_cap;
    size_t prev_klen; /* the previous key, at prev, for the order check */
    uint8_t *prev;
    size_t prev_cap;
    int error; /* sticky: once set, every call returns it */
    bool done;
};

/* Makes decompressed bytes available: 1 when some are, 0 at the end of the frame or file. */
static int reader_fill(struct snapshot_reader *r)
{
    while (r->out_pos == r->out_len) {
        if (r->frame_left == 0)
            return 0;
        if (r->zin.pos == r->zin.size) {
            if (r->file_eof)
                return 0;
            ssize_t n;
            do
                n = read(r->fd, r->in, r->in_cap);
            while (n < 0 && errno == EINTR);
            if (n < 0) {
                rc_warn("snapshot: read: %s", strerror(errno));
                return RC_EIO;
            }
            r->zin = (ZSTD_inBuffer){r->in, (size_t)n, 0};
            if (n == 0) {
                r->file_eof = true;
                return 0;
            }
        }
        ZSTD_outBuffer zout = {r->out, r->out_cap, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &zout, &r->zin);
        if (ZSTD_isError(ret)) {
            rc_warn("snapshot: %s", ZSTD_getErrorName(ret));
            return RC_ECORRUPT;
        }
        r->frame_left = ret;
        r->out_pos = 0;
        r->out_len = zout.pos;
    }
    return 1;
}

/* Reads exactly len content bytes into dst (CRC included); RC_ECORRUPT if the stream ends. */
static int reader_read(struct snapshot_reader *r, void *dst, size_t len)
{
    uint8_t *p = dst;
    while (len > 0) {
        int rc = reader_fill(r);
        if (rc <= 0)
            return rc == 0 ? RC_ECORRUPT : rc;
        size_t n = r->out_len - r->out_pos;
        if (n > len)
            n = len;
        memcpy(p, r->out + r->out_pos, n);
        r->crc = rc_crc32c(r->crc, p, n);
        r->out_pos += n;
        p += n;
        len -= n;
    }
    return 0;
}

/* Reads len bytes into *buf (grown with *cap), growing only as bytes arrive (invariant 4). */
static int reader_read_grow(struct snapshot_reader *r, uint8_t **buf, size_t *cap, size_t len)
{
    size_t got = 0;
    while (got < len || *cap == 0) {
        size_t want = len - got;
        size_t step = got < 64 * 1024 ? 64 * 1024 : got;
        if (want > step)
            want = step;
        if (got + want > *cap || *cap == 0) {
            size_t ncap = got + want > 16 ? got + want : 16;
            uint8_t *b = rc_realloc(*buf, ncap);
            if (!b)
                return RC_ENOMEM;
            *buf = b;
            *cap = ncap;
        }
        int rc = reader_read(r, *buf + got, want);
        if (rc != 0)
            return rc;
        got += want;
    }
    return 0;
}

static int reader_read_header(struct snapshot_reader *r)
{
    uint8_t h[HEADER_FIXED_BYTES];
    int rc = reader_read(r, h, sizeof h);
    if (rc != 0)
        return rc;
    if (memcmp(h, header_magic, 8) != 0 || rc_get_u32(h + 12) != 0) {
        rc_warn("snapshot: not a raftcask snapshot (bad magic)");
        return RC_ECORRUPT;
    }
    r->header.version = rc_get_u32(h + 8);
    if (r->header.version != SNAPSHOT_VERSION) {
        rc_warn("snapshot: unknown version %u", r->header.version);
        return RC_ECORRUPT;
    }
    r->header.revision = rc_get_u64(h + 16);
    r->header.count = rc_get_u64(h + 24);
    uint32_t extra_len = rc_get_u32(h + 32);
    if (extra_len > SNAPSHOT_MAX_EXTRA_BYTES)
        return RC_ECORRUPT;
    if (extra_len > 0) {
        size_t cap = 0;
        uint8_t *extra = NULL;
        rc = reader_read_grow(r, &extra, &cap, extra_len);
        r->extra = extra;
        if (rc != 0)
            return rc;
    }
    r->header.extra = r->extra;
    r->header.extra_len = extra_len;
    return 0;
}

static int open_fd(const char *path, int *fd)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd >= 0)
        return 0;
    if (errno == ENOENT)
        return RC_ENOTFOUND;
    rc_warn("open %s: %s", path, strerror(errno));
    return RC_EIO;
}

int snapshot_reader_open(const char *path, struct snapshot_reader **out)
{
    struct snapshot_reader *r = rc_calloc(1, sizeof *r);
    if (!r)
        return RC_ENOMEM;
    r->frame_left = 1;
    int rc = open_fd(path, &r->fd);
    if (rc != 0) {
        rc_free(r);
        return rc;
    }
    rc = RC_ENOMEM;
    r->dctx = ZSTD_createDCtx();
    r->in_cap = ZSTD_DStreamInSize();
    r->out_cap = ZSTD_DStreamOutSize();
    r->in = rc_malloc(r->in_cap);
    r->out = rc_malloc(r->out_cap);
    if (!r->dctx || !r->in || !r->out ||
        ZSTD_isError(ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_windowLogMax, MAX_WINDOW_LOG)))
        goto fail;
    rc = reader_read_header(r);
    if (rc != 0)
        goto fail;
    *out = r;
    return 0;
fail:
    if (rc == RC_ECORRUPT)
        rc_warn("snapshot %s: damaged header", path);
    snapshot_reader_close(r);
    return rc;
}

void snapshot_reader_header(const struct snapshot_reader *r, struct snapshot_header *out)
{
    *out = r->header;
}

/* Checks the trailer and that nothing follows it. */
static int reader_finish(struct snapshot_reader *r)
{
    uint8_t t[TRAILER_BYTES];
    int rc = reader_read(r, t, 16);
    if (rc != 0)
        return rc;
    uint32_t crc = r->crc;
    rc = reader_read(r, t + 16, 4);
    if (rc != 0)
        return rc;
    if (memcmp(t, trailer_magic, 8) != 0 || rc_get_u64(t + 8) != r->header.count ||
        rc_get_u32(t + 16) != crc) {
        rc_warn("snapshot: bad trailer (count or CRC mismatch)");
        return RC_ECORRUPT;
    }
    rc = reader_fill(r);
    if (rc != 0)
        return rc < 0 ? rc : RC_ECORRUPT; /* content after the trailer */
    if (r->frame_left != 0)
        return RC_ECORRUPT; /* the frame did not end (its checksum was not seen) */
    if (r->zin.pos == r->zin.size && !r->file_eof) {
        ssize_t n;
        do
            n = read(r->fd, r->in, 1);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return RC_EIO;
        r->zin = (ZSTD_inBuffer){r->in, (size_t)n, 0};
    }
    if (r->zin.pos != r->zin.size)
        return RC_ECORRUPT; /* bytes after the frame */
    return 0;
}

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int reader_next_record(struct snapshot_reader *r, size_t *klen, size_t *vlen,
                              int64_t *expiry_ms, uint64_t *revision)
{
    uint8_t h[RECORD_FIXED_BYTES];
    int rc = reader_read(r, h, sizeof h);
    if (rc != 0)
        return rc;
    uint32_t kl = rc_get_u32(h), vl = rc_get_u32(h + 4);
    int64_t expiry = (int64_t)rc_get_u64(h + 8);
    uint64_t rev = rc_get_u64(h + 16);
    if (kl > SNAPSHOT_MAX_KEY_BYTES || vl > SNAPSHOT_MAX_VALUE_BYTES || expiry < 0 ||
        rev > r->header.revision)
        return RC_ECORRUPT;
    /* Keep the previous key for the order check before its buffer is reused. */
    if (r->records_read > 0) {
        if (r->prev_klen > r->prev_cap) {
            uint8_t *p = rc_realloc(r->prev, r->prev_klen);
            if (!p)
                return RC_ENOMEM;
            r->prev = p;
            r->prev_cap = r->prev_klen;
        }
        if (r->prev_klen > 0)
            memcpy(r->prev, r->rec, r->prev_klen);
    }
    rc = reader_read_grow(r, &r->rec, &r->rec_cap, (size_t)kl + vl);
    if (rc != 0)
        return rc;
    if (r->records_read > 0 && key_cmp(r->prev, r->prev_klen, r->rec, kl) >= 0)
        return RC_ECORRUPT;
    r->prev_klen = kl;
    *klen = kl;
    *vlen = vl;
    *expiry_ms = expiry;
    *revision = rev;
    return 0;
}

int snapshot_reader_next(struct snapshot_reader *r, const void **key, size_t *klen,
                         const void **value, size_t *vlen, int64_t *expiry_ms, uint64_t *revision)
{
    if (r->error)
        return r->error;
    if (r->done)
        return 0;
    int rc;
    if (r->records_read == r->header.count) {
        rc = reader_finish(r);
        if (rc == 0) {
            r->done = true;
            return 0;
        }
    } else {
        rc = reader_next_record(r, klen, vlen, expiry_ms, revision);
        if (rc == 0) {
            r->records_read++;
            *key = r->rec;
            *value = r->rec + *klen;
            return 1;
        }
    }
    r->error = rc;
    return rc;
}

void snapshot_reader_close(struct snapshot_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    rc_free(r->in);
    rc_free(r->out);
    rc_free(r->extra);
    rc_free(r->rec);
    rc_free(r->prev);
    rc_free(r);
}

/* ============================== restoring ============================== */

/*
 * Crash argument. cask_dir is replaced by renames only, each of which is atomic, with the
 * parent directory fsynced between steps; at every instant one of these states holds:
 *
 *   A  cask_dir (old)                          .new absent or without COMPLETE
 *   B  cask_dir (old), .new with COMPLETE      the new store is whole and durable
 *   C  .old (old), .new with COMPLETE          between the two renames
 *   D  cask_dir (new), .old                    swapped, old not yet deleted
 *   E  cask_dir (new)                          done (a leftover COMPLETE inside is harmless)
 *
 * COMPLETE is written (atomically, fsynced) only after every file of .new is fsynced, so
 * its presence means .new is a whole store. Recovery: A deletes .new (roll back); B and C
 * roll forward (rename cask_dir away if present, .new into place); D and E delete .old.
 * A .old without cask_dir and without .new cannot arise from these steps, but if it is
 * found it is renamed back rather than deleted: a copy of the data is never removed while
 * it is the only one.
 */

#define COMPLETE_NAME "COMPLETE"

static snapshot_hook_fn test_hook;
static void *test_hook_ctx;

void snapshot_set_test_hook(snapshot_hook_fn fn, void *ctx)
{
    test_hook = fn;
    test_hook_ctx = ctx;
}

static void hook(const char *point)
{
    rc_failpoint(point);
    if (test_hook)
        test_hook(point, test_hook_ctx);
}

/* dir/name into out; RC_EINVAL when it does not fit. */
static int join_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? RC_EINVAL : 0;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool file_exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    return join_path(p, sizeof p, dir, name) == 0 && access(p, F_OK) == 0;
}

/* Removes a flat directory (a store's) and its files; 0 if it does not exist. */
static int remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : RC_EIO;
    struct dirent *e;
    char p[PATH_MAX];
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (join_path(p, sizeof p, dir, e->d_name) != 0 || (unlink(p) != 0 && errno != ENOENT)) {
            rc_warn("unlink %s: %s", p, strerror(errno));
            rc = RC_EIO;
        }
    }
    closedir(d);
    if (rc == 0 && rmdir(dir) != 0 && errno != ENOENT) {
        rc_warn("rmdir %s: %s", dir, strerror(errno));
        rc = RC_EIO;
    }
    return rc;
}

/* Removes a store built by a restore (cask.new): its COMPLETE marker first, made durable,
 * so that a crash in the middle never leaves a marked directory with files missing (a
 * restart would swap that in as whole). */
static int remove_built(const char *new_dir)
{
    char m[PATH_MAX];
    if (file_exists(new_dir, COMPLETE_NAME)) {
        if (join_path(m, sizeof m, new_dir, COMPLETE_NAME) != 0 || unlink(m) != 0 ||
            rc_fsync_dir(new_dir) != 0) {
            rc_warn("removing the marker of %s: %s", new_dir, strerror(errno));
            return RC_EIO;
        }
        hook("restore:unmarked");
    }
    return remove_dir(new_dir);
}

/* fsyncs every regular file of dir, then dir itself. A file gone since the listing (a
 * temporary file of a hint the store's worker is writing) is skipped. */
static int fsync_dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return RC_EIO;
    struct dirent *e;
    char p[PATH_MAX];
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = join_path(p, sizeof p, dir, e->d_name) == 0 ? open(p, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0 && errno == ENOENT)
            continue;
        if (fd < 0) {
            rc = RC_EIO;
            break;
        }
        rc = rc_fsync_file(fd, p);
        close(fd);
    }
    closedir(d);
    return rc == 0 ? rc_fsync_dir(dir) : rc;
}

static int rename_dir(const char *from, const char *to)
{
    if (rename(from, to) == 0)
        return 0;
    rc_warn("rename %s to %s: %s", from, to, strerror(errno));
    return RC_EIO;
}

struct restore_paths {
    char cask[PATH_MAX], new_dir[PATH_MAX], old_dir[PATH_MAX], parent[PATH_MAX];
};

static int restore_paths(const char *cask_dir, struct restore_paths *p)
{
    size_t len = strlen(cask_dir);
    while (len > 1 && cask_dir[len - 1] == '/') /* "dir/" names the same directory as "dir" */
        len--;
    if (len == 0 || len + 8 >= PATH_MAX)
        return RC_EINVAL;
    memcpy(p->cask, cask_dir, len);
    p->cask[len] = '\0';
    memcpy(p->new_dir, p->cask, len);
    memcpy(p->new_dir + len, ".new", 5);
    memcpy(p->old_dir, p->cask, len);
    memcpy(p->old_dir + len, ".old", 5);
    parent_of(p->cask, p->parent, sizeof p->parent);
    return 0;
}

/* The swapped-in store's COMPLETE marker goes (state E of the recovery). */
static int unmark(const char *cask)
{
    char m[PATH_MAX];
    if (join_path(m, sizeof m, cask, COMPLETE_NAME) == 0)
        unlink(m);
    return rc_fsync_dir(cask);
}

int snapshot_restore_recover(const char *cask_dir)
{
    struct restore_paths p;
    int rc = restore_paths(cask_dir, &p);
    if (rc != 0)
        return rc;
    if (is_dir(p.new_dir)) {
        if (!file_exists(p.new_dir, COMPLETE_NAME)) { /* state A: roll back */
            rc_info("removing %s, left by an interrupted restore", p.new_dir);
            rc = remove_dir(p.new_dir);
        } else { /* states B and C: roll forward */
            rc_info("finishing the interrupted restore of %s", p.cask);
            if (is_dir(p.cask)) {
                if (is_dir(p.old_dir)) /* stale: an earlier restore's, never the only copy */
                    rc = remove_dir(p.old_dir);
                if (rc == 0)
                    rc = rename_dir(p.cask, p.old_dir);
            }
            if (rc == 0)
                rc = rename_dir(p.new_dir, p.cask);
        }
        if (rc == 0)
            rc = rc_fsync_dir(p.parent);
        if (rc != 0)
            return rc;
    }
    if (is_dir(p.old_dir)) {
        if (is_dir(p.cask)) { /* state D */
            rc = remove_dir(p.old_dir);
        } else {
            rc_warn("%s found without %s: putting it back", p.old_dir, p.cask);
            rc = rename_dir(p.old_dir, p.cask);
        }
        if (rc == 0)
            rc = rc_fsync_dir(p.parent);
        if (rc != 0)
            return rc;
    }
    if (file_exists(p.cask, COMPLETE_NAME)) /* state E */
        rc = unmark(p.cask);
    return rc;
}

/* Holds cask_dir/LOCK (as an open store does) so that restoring under an open store fails. */
static int lock_cask(const char *cask, int *fd)
{
    *fd = -1;
    if (!is_dir(cask))
        return 0;
    char path[PATH_MAX];
    if (join_path(path, sizeof path, cask, "LOCK") != 0)
        return RC_EINVAL;
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) {
        rc_warn("open %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        rc_error("restore: store %s is open (LOCK is held)", cask);
        close(*fd);
        *fd = -1;
        return RC_ELOCKED;
    }
    return 0;
}

/* Builds the store in new_dir from the reader, syncs it and marks it complete; *out
 * receives it, still open. */
static int restore_build(struct snapshot_reader *r, const char *new_dir,
                         const struct rc_store_options *opts, const atomic_int *cancel,
                         struct rc_store **out)
{
    struct rc_store *s = NULL;
    int rc = rc_store_open(new_dir, opts, &s);
    if (rc != 0)
        return rc;
    const void *key, *value;
    size_t klen, vlen;
    int64_t expiry_ms;
    uint64_t revision;
    while ((rc = snapshot_reader_next(r, &key, &klen, &value, &vlen, &expiry_ms, &revision)) > 0) {
        rc_failpoint("restore:record"); /* tests slow a restore down with it (=sleep:MS) */
        if (cancel && atomic_load(cancel)) {
            rc = RC_ECLOSED;
            break;
        }
        rc = rc_store_put(s, key, klen, value, vlen, expiry_ms, revision);
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = rc_store_mark_revision(s, r->header.revision);
    if (rc == 0)
        rc = rc_store_sync(s);
    if (rc == 0) /* the hints of its sealed files written: the swap does not wait for them */
        rc_store_wait_idle(s);
    if (rc == 0)
        rc = fsync_dir_files(new_dir);
    if (rc == 0)
        hook("restore:built");
    if (rc == 0)
        rc = rc_write_file_atomic(new_dir, COMPLETE_NAME, "complete\n", 9);
    if (rc != 0) {
        rc_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int snapshot_restore_build(struct snapshot_reader *r, const char *cask_dir,
                           const struct rc_store_options *opts, const atomic_int *cancel,
                           struct rc_store **out)
{
    *out = NULL;
    struct restore_paths p;
    int rc = restore_paths(cask_dir, &p);
    if (rc != 0)
        return rc;
    /* What an abandoned build left (the running node removes its own; a crash's are
     * removed or finished by snapshot_restore_recover before the store opens). */
    if (is_dir(p.new_dir) && (rc = remove_built(p.new_dir)) != 0)
        return rc;
    rc = restore_build(r, p.new_dir, opts, cancel, out);
    if (rc == 0)
        rc = rc_fsync_dir(p.parent); /* .new's entry is durable before anything is renamed */
    if (rc != 0) {
        rc_store_close(*out);
        *out = NULL;
        remove_built(p.new_dir);
        return rc;
    }
    hook("restore:complete");
    return 0;
}

int snapshot_restore_swap(const char *cask_dir, struct rc_store *old, struct rc_store *built)
{
    struct restore_paths p;
    int rc = restore_paths(cask_dir, &p);
    if (rc != 0)
        return rc;
    /* A .old left by a finish that failed (a restart would have removed it). */
    if (is_dir(p.old_dir) && (rc = remove_dir(p.old_dir)) != 0)
        return rc;
    /* From here a crash is finished by snapshot_restore_recover (states B to E). */
    bool moved = false;
    if (old || is_dir(p.cask)) {
        rc = old ? rc_store_move(old, p.old_dir) : rename_dir(p.cask, p.old_dir);
        moved = rc == 0;
        if (moved)
            hook("restore:old-moved");
    }
    if (rc == 0)
        rc = rc_store_move(built, p.cask);
    if (rc != 0 && moved) { /* put the old store back where it was */
        if (old)
            rc_store_move(old, p.cask);
        else
            rename_dir(p.old_dir, p.cask);
    }
    if (rc == 0)
        rc = rc_fsync_dir(p.parent);
    if (rc != 0)
        return rc;
    hook("restore:swapped");
    if (!old)
        return snapshot_restore_recover(p.cask); /* deletes .old and the marker */
    /* .old stays until snapshot_restore_finish: the old store is still open in it. */
    return unmark(p.cask);
}

int snapshot_restore_finish(const char *cask_dir, struct rc_store *old)
{
    struct restore_paths p;
    int rc = restore_paths(cask_dir, &p);
    int close_rc = rc_store_close(old);
    if (close_rc != 0)
        rc_warn("closing the store a restore replaced: %s", rc_strerror(close_rc));
    if (rc == 0)
        rc = remove_dir(p.old_dir);
    if (rc == 0)
        rc = rc_fsync_dir(p.parent);
    return rc;
}

void snapshot_restore_abandon(const char *cask_dir, struct rc_store *built)
{
    struct restore_paths p;
    rc_store_close(built);
    if (restore_paths(cask_dir, &p) == 0 && remove_built(p.new_dir) == 0)
        rc_fsync_dir(p.parent);
}

int snapshot_restore(const char *path, const char *cask_dir, const struct rc_store_options *opts,
                     uint64_t *revision, void **extra, size_t *extra_len)
{
    struct restore_paths p;
    int rc = restore_paths(cask_dir, &p);
    if (rc != 0)
        return rc;
    int lock_fd = -1;
    struct snapshot_reader *r = NULL;
    struct rc_store *built = NULL;
    void *extra_copy = NULL;
    rc = snapshot_restore_recover(p.cask);
    if (rc == 0)
        rc = lock_cask(p.cask, &lock_fd);
    if (rc != 0)
        return rc;
    rc = snapshot_reader_open(path, &r);
    if (rc != 0)
        goto unlock;
    if (extra && r->header.extra_len > 0) {
        extra_copy = rc_malloc(r->header.extra_len);
        if (!extra_copy) {
            rc = RC_ENOMEM;
            goto close_reader;
        }
        memcpy(extra_copy, r->header.extra, r->header.extra_len);
    }
    rc = snapshot_restore_build(r, p.cask, opts, NULL, &built);
    if (rc == 0)
        rc = snapshot_restore_swap(p.cask, NULL, built);
    if (rc == 0)
        hook("restore:done");
    if (built) {
        int close_rc = rc_store_close(built);
        if (rc == 0)
            rc = close_rc;
    }
    if (rc != 0)
        goto close_reader;
    if (revision)
        *revision = r->header.revision;
    if (extra) {
        *extra = extra_copy;
        extra_copy = NULL;
    }
    if (extra_len)
        *extra_len = r->header.extra_len;
close_reader:
    rc_free(extra_copy);
    snapshot_reader_close(r);
unlock:
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

/* ============================== printing ============================== */

static int print_bulk(FILE *out, const void *data, size_t len)
{
    if (fprintf(out, "$%zu\r\n", len) < 0 || (len > 0 && fwrite(data, 1, len, out) != len) ||
        fputs("\r\n", out) == EOF)
        return RC_EIO;
    return 0;
}

static int print_set(FILE *out, const void *key, size_t klen, const void *value, size_t vlen,
                     int64_t expiry_ms)
{
    if (fputs(expiry_ms ? "*5\r\n" : "*3\r\n", out) == EOF)
        return RC_EIO;
    int rc = print_bulk(out, "SET", 3);
    if (rc == 0)
        rc = print_bulk(out, key, klen);
    if (rc == 0)
        rc = print_bulk(out, value, vlen);
    if (rc == 0 && expiry_ms) {
        char ms[24];
        int n = snprintf(ms, sizeof ms, "%lld", (long long)expiry_ms);
        rc = print_bulk(out, "PXAT", 4);
        if (rc == 0)
            rc = print_bulk(out, ms, (size_t)n);
    }
    return rc;
}

static int print_raftcask(const char *path, FILE *out)
{
    struct snapshot_reader *r;
    int rc = snapshot_reader_open(path, &r);
    if (rc != 0)
        return rc;
    const void *key, *value;
    size_t klen, vlen;
    int64_t expiry_ms;
    uint64_t revision;
    while ((rc = snapshot_reader_next(r, &key, &klen, &value, &vlen, &expiry_ms, &revision)) > 0) {
        rc = print_set(out, key, klen, value, vlen, expiry_ms);
        if (rc != 0)
            break;
    }
    snapshot_reader_close(r);
    return rc;
}

/*
 * bitraft's and kvnode's state.bin: gzip of (u64-LE length, bytes) pairs, key then value,
 * until the end. Reads 0 bytes at a clean end; 1 when a whole string was read into *buf.
 */
static int gz_read_string(gzFile gz, uint8_t **buf, size_t *cap, size_t *len, bool at_start)
{
    uint8_t h[8];
    int n = gzread(gz, h, sizeof h);
    if (n == 0 && at_start)
        return 0;
    if (n != (int)sizeof h)
        return RC_ECORRUPT;
    uint64_t want = rc_get_u64(h);
    if (want > SNAPSHOT_MAX_VALUE_BYTES)
        return RC_ECORRUPT;
    size_t got = 0;
    while (got < want || *cap == 0) { /* grow only as bytes arrive, as the reader does */
        size_t step = want - got;
        size_t limit = got < 64 * 1024 ? 64 * 1024 : got;
        if (step > limit)
            step = limit;
        if (got + step > *cap || *cap == 0) {
            size_t ncap = got + step > 16 ? got + step : 16;
            uint8_t *b = rc_realloc(*buf, ncap);
            if (!b)
                return RC_ENOMEM;
            *buf = b;
            *cap = ncap;
        }
        if (step > 0 && gzread(gz, *buf + got, (unsigned)step) != (int)step)
            return RC_ECORRUPT;
        got += step;
    }
    *len = (size_t)want;
    return 1;
}

static int print_gzip(int fd, FILE *out)
{
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return RC_ENOMEM;
    }
    uint8_t *key = NULL, *value = NULL;
    size_t kcap = 0, vcap = 0, klen, vlen;
    int rc;
    while ((rc = gz_read_string(gz, &key, &kcap, &klen, true)) > 0) {
        rc = gz_read_string(gz, &value, &vcap, &vlen, false);
        if (rc > 0)
            rc = print_set(out, key, klen, value, vlen, 0);
        if (rc != 0)
            break;
    }
    int err;
    gzerror(gz, &err);
    if (rc == 0 && err != Z_OK) /* Z_BUF_ERROR: the gzip stream was cut short */
        rc = RC_ECORRUPT;
    gzclose(gz);
    rc_free(key);
    rc_free(value);
    return rc;
}

int snapshot_print_resp(const char *path, FILE *out)
{
    int fd;
    int rc = open_fd(path, &fd);
    if (rc != 0)
        return rc;
    uint8_t magic[2] = {0, 0};
    ssize_t n = pread(fd, magic, 2, 0);
    if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b)
        rc = print_gzip(fd, out); /* takes fd */
    else {
        close(fd);
        rc = print_raftcask(path, out);
    }
    if (rc == 0 && fflush(out) != 0)
        rc = RC_EIO;
    return rc;
}

/*
 * logstore.c — the durable Raft log: append-only segment files, a hard-state file and the
 * last snapshot (the log starts after it, or keeps trailing entries before its index).
 *
 * NOTES ON THE DESIGN
 *
 * Files in the directory:
 *
 *     log-<first index, 20 digits>.seg    segments, in index order
 *     raft-state                          hard state and snapshot meta (replaced atomically)
 *     snap-<index>-<term>.snap            the current snapshot's data (20 digits each)
 *     snap-local-<n>.tmp                  a local snapshot being written (logstore_snapshot_*)
 *     snap-incoming.part                  data of an incoming snapshot, received so far
 *     snap-incoming.meta                  which snapshot it is and how many bytes are durable
 *
 * A segment is a sequence of records, little-endian:
 *
 *     0        4        8      9       10    12              12 + len
 *     +--------+--------+------+-------+-----+----------------+
 *     | crc32c |  len   | kind | flags | 0 0 |  payload (len) |
 *     +--------+--------+------+-------+-----+----------------+
 *     crc32c covers bytes 4 .. 12 + len (len, kind, flags, the zero bytes and the payload).
 *     flags: bit 0 (REC_AFTER_SYNC) on the first record of a write that began where the
 *     segment's durable bytes ended: every byte before that record had been fdatasync'ed.
 *     The CRC of such a record starts from the CRC-32C of its segment's nonce (a random u64
 *     in the header), so that a record image inside an entry's data (a client's value) can
 *     never pass for one.
 *
 *     kind 1 HEADER  payload: u64 first_index | u64 prev_term (term of first_index - 1) |
 *                             u64 nonce (segments written before the nonce: 16 bytes, and
 *                             nonce 0 leaves the CRC unseeded)
 *     kind 2 ENTRY   payload: raft_entry_encode() = u64 term | u64 index | u8 type |
 *                             u32 data len | data
 *
 * raft-state and snap-incoming.meta share one layout (little-endian), both replaced
 * atomically (rc_write_file_atomic) and checked whole at open:
 *
 *     0        4        8              32        40       48       56    60         64    68
 *     +--------+--------+--------------+---------+--------+--------+-----+----------+-----+--
 *     | crc32c | magic  | term vote    | snap    | snap   | size   | data| has_file | cfg | cfg
 *     |        |        | commit (3x8) | index   | term   | bytes  | crc |          | len | ...
 *     +--------+--------+--------------+---------+--------+--------+-----+----------+-----+--
 *     crc32c covers bytes 4 .. end. magic "RCS2" for raft-state; "RCSI" for
 *     snap-incoming.meta, which has no hard state (the 24 bytes are absent, later fields move
 *     up) and whose size_bytes / data crc count the bytes of snap-incoming.part held durably.
 *     cfg = raft_config_encode() of the snapshot's configuration, cfg len bytes.
 *     has_file 0 is a snapshot recorded by logstore_compact alone (no data, no file).
 *
 * Invariants:
 *  1. Every segment starts with a HEADER whose first_index matches its name; its ENTRY
 *     records follow with consecutive indexes from first_index. Segment i + 1 starts right
 *     after the last entry of segment i (recovery checks it).
 *  2. Only the last segment ("active") is written. A segment is fdatasync'ed before the next
 *     one is created (append_roll), so every earlier ("sealed") segment is durable whole and
 *     an invalid record in it is corruption (RC_ECORRUPT naming file and offset). In the
 *     active segment an invalid record is the torn tail of an interrupted write, and is cut
 *     at open, unless a valid record further on carries REC_AFTER_SYNC: that record was
 *     written after the bad one's bytes were durable, so they are damaged, not torn, and the
 *     open fails (RC_ECORRUPT, nothing cut), as for a sealed segment. (A record after a torn
 *     one can be valid after a power loss, since unsynced pages reach the disk in any order;
 *     only the flag tells the two cases apart.)
 *  3. Entries are durable before the hard state that depends on them: logstore_sync
 *     fdatasyncs the active segment and the directory first, and only if both succeed
 *     replaces raft-state. A crash therefore never leaves a commit or vote on disk that
 *     refers to entries or a truncation that are not.
 *  4. A truncation of a conflicting suffix (logstore_append) unlinks later segments from the
 *     last backward, cuts inside one, and makes that durable (directory and file sync) before
 *     any new record is written, so a crash leaves a prefix of the old log, never old
 *     segments after new records. Leftover segments after a gap (an unlink that was lost
 *     while the directory sync was interrupted) are deleted at open with a warning.
 *  5. Compaction (snapshot_switch, for logstore_compact, logstore_snapshot_commit and the
 *     install of an incoming snapshot) writes raft-state with the new snapshot meta first and
 *     then unlinks segments wholly before keep_from, from the front — or every segment when
 *     the snapshot's last entry is not ours (beyond our log or another term), or when
 *     installing an incoming snapshot. keep_from is snapshot index + 1 - trailing_entries
 *     (options; at least 1): the trailing entries stay readable, so that a follower a little
 *     behind is sent entries rather than the snapshot. Segments left over by a crash in
 *     between are found at open wholly before keep_from, or ending before the snapshot's
 *     index, or disagreeing with its term there, and deleted (segments that reach it and
 *     agree with it at its index match the leader's log by log matching, so keeping them is
 *     safe; every entry up to the snapshot index was committed). first_index =
 *     max(keep_from, first stored entry); term(snapshot index) is the snapshot term.
 *  6. In memory, locs[i] describes entry locs_base + i (term, segment offset, data length),
 *     so term() is O(1) and entries() is one pread per segment touched.
 *  7. Any write, sync, truncate, rename or unlink failure latches ls->failed = RC_EIO: the
 *     state on disk is then unknown, so every later call fails and the node must reopen. (A
 *     failed logstore_snapshot_write only fails its writer: it touches no file of the store.)
 *  8. raft-state names at most one snapshot file, and the snapshot's data is in no other
 *     .snap file: a new snapshot file gets its final name (rename, directory sync) before
 *     raft-state names it, and the previous one is deleted only after. A crash in between
 *     leaves a .snap file that raft-state does not name; it is deleted at open.
 *  9. The file raft-state names exists with size_bytes bytes (checked at open: RC_ECORRUPT
 *     naming the file otherwise); its data crc lets logstore_snapshot_verify check the
 *     bytes. snap-local-*.tmp files are unfinished local snapshots, deleted at open.
 * 10. snap-incoming.meta never counts bytes that are not durable in snap-incoming.part: a
 *     chunk is written and fsynced before the meta file is rewritten to count it, and a new
 *     incoming snapshot (offset 0) rewrites the meta file (0 bytes, new index and term)
 *     before the data file is truncated. At open a valid meta file with a data file at least
 *     that long is kept (the data file cut to the counted bytes) and resumed; anything else
 *     is deleted, and the transfer restarts from offset 0.
 * 11. The active segment may end in zeros written ahead of the records (prealloc_bytes at a
 *     time), so that a sync overwrites blocks the file already has and fdatasync need not
 *     write the file size (measured here: ~195 µs against ~290 µs for an append). A zero
 *     record header fails its CRC, so recovery stops at the first zero byte after the last
 *     record and cuts the zeros (a line at info level; a torn record is a warning), and a
 *     segment is cut to its last record before it is sealed, so sealed segments hold records
 *     only.
 * 12. ls->tail holds a copy of the records last written to the active segment (up to
 *     TAIL_CACHE_BYTES), so that entries() serves the entries about to be applied, which
 *     were just appended, without a pread. It is equal to the file's bytes at those offsets:
 *     it is emptied when a segment is created, when the segment it copies is removed and when
 *     the log is truncated, and restarted at the new offset whenever a write does not
 *     continue it or would overflow.
 *
 * State changes: logstore_append (entries, truncation), logstore_sync (entries durable, then
 * raft-state), snapshot_switch (raft-state with a new snapshot, previous snapshot file and
 * covered segments deleted), logstore_snapshot_commit (temp file → .snap, then
 * snapshot_switch), logstore_snapshot_chunk via incoming_start / incoming_meta_write /
 * incoming_install (.part → .snap, then snapshot_switch dropping the whole log, then the meta
 * file deleted), recover (leftovers deleted, torn tail cut).
 */
#include "logstore.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_HEADER_BYTES   12
#define TAIL_CACHE_BYTES   (1u << 20)
#define REC_HEADER_KIND    1
#define REC_ENTRY_KIND     2
#define REC_AFTER_SYNC     0x01 /* flags: every byte before this record was durable */
#define SEG_HEADER_PAYLOAD 24   /* first index, prev term, nonce */
#define SEG_HEADER_OLD     16   /* written before the nonce: first index, prev term */
#define ENTRY_FIXED_BYTES  21   /* raft_entry_encode without data */
#define STATE_FILE         "raft-state"
#define STATE_MAGIC        0x32534352u /* "RCS2" */
#define INCOMING_MAGIC     0x49534352u /* "RCSI" */
#define SNAP_FIXED_BYTES   36          /* snapshot meta without the configuration */
#define CONFIG_MAX_BYTES   (9 + 8 * RAFT_MAX_NODES)
#define FILE_MAX_BYTES     (8 + 24 + SNAP_FIXED_BYTES + CONFIG_MAX_BYTES)
#define SEG_NAME_LEN       28 /* "log-" + 20 digits + ".seg" */
#define INCOMING_META      "snap-incoming.meta"
#define INCOMING_PART      "snap-incoming.part"
#define COPY_CHUNK_BYTES   (64u << 10)

struct seg {
    uint64_t first_index;
    uint64_t prev_term;
    uint64_t size_bytes;   /* end of the last record */
    uint64_t alloc_bytes;  /* file size: [size_bytes, alloc_bytes) are zeros (invariant 11) */
    uint64_t synced_bytes; /* bytes known durable (fdatasync'ed); invariant 2's flag */
    uint64_t nonce;        /* from the header: seeds the CRC of AFTER_SYNC records */
    int fd;
};

struct loc {
    uint64_t term;
    uint64_t offset;   /* of the record in its segment */
    uint32_t data_len; /* bytes of entry data */
};

/* A snapshot as recorded in raft-state, or an incoming one in snap-incoming.meta. */
struct snap_info {
    uint64_t index, term; /* last entry covered; 0, 0: none */
    uint64_t size_bytes;  /* data length (incoming: bytes held durably) */
    uint32_t crc;         /* crc32c of those bytes */
    uint32_t has_file;    /* 1: snap-<index>-<term>.snap holds the data */
    struct raft_config config;
};

struct logstore_snapshot_writer {
    int fd;
    int error; /* RC_EIO once a write failed */
    uint64_t size_bytes;
    uint32_t crc;
    int synced; /* by logstore_snapshot_sync, after the last write */
    char path[PATH_MAX];
};

struct logstore {
    char *dir;
    struct logstore_options opts;
    struct seg *segs;
    size_t n_segs, cap_segs;
    struct loc *locs;
    size_t n_locs, cap_locs;
    uint64_t locs_base;    /* index of locs[0] */
    struct snap_info snap; /* the snapshot the log starts after */
    int snap_fd;           /* open on its file when snap.has_file, else -1 */
    struct snap_info in;   /* the incoming snapshot, when in_fd >= 0 */
    int in_fd;             /* snap-incoming.part, or -1 */
    uint64_t local_seq;    /* numbers the temp files of local snapshots */
    struct raft_hard_state hs_durable, hs_pending;
    int hs_dirty;
    int active_dirty; /* records appended to the active segment since the last sync */
    int dir_dirty;    /* segments created since the last sync */
    int failed;
    void *rbuf; /* entries() data; valid until the next call into the store */
    size_t rbuf_cap;
    /* The bytes last appended to the active segment (invariant 12): tail_len bytes from
     * offset tail_off of the segment starting at tail_first; tail_len 0 when empty. */
    uint8_t *tail;
    size_t tail_len;
    uint64_t tail_first, tail_off;
    uint64_t entry_preads;
};

/* ============================== small helpers ============================== */

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* little-endian hosts only, as crc32c.c */
}

static void put_u64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void seg_path(const struct logstore *ls, uint64_t first_index, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/log-%020llu.seg", ls->dir, (unsigned long long)first_index);
}

/* Seals the record at dst whose payload (len bytes) is already at dst + 12. */
static void rec_finish(uint8_t *dst, uint8_t kind, uint32_t len)
{
    put_u32(dst + 4, len);
    dst[8] = kind;
    dst[9] = dst[10] = dst[11] = 0;
    put_u32(dst, rc_crc32c(0, dst + 4, REC_HEADER_BYTES - 4 + (size_t)len));
}

/* The CRC seed of a record: an AFTER_SYNC record's CRC starts from its segment's nonce, so
 * that bytes a client wrote into a value cannot pass for one (invariant 2). */
static uint32_t rec_seed(uint8_t flags, uint64_t nonce)
{
    uint8_t n[8];
    put_u64(n, nonce);
    return (flags & REC_AFTER_SYNC) && nonce ? rc_crc32c(0, n, sizeof n) : 0;
}

/* Sets flags on a sealed record of the segment with nonce and seals it again. */
static void rec_set_flags(uint8_t *dst, uint8_t flags, uint64_t nonce)
{
    dst[9] = flags;
    put_u32(dst, rc_crc32c(rec_seed(flags, nonce), dst + 4,
                           REC_HEADER_BYTES - 4 + (size_t)get_u32(dst + 4)));
}

/* Checks the record at buf (avail bytes) of a segment with nonce; 0 and *len = payload
 * bytes, or -1 if invalid. */
static int rec_check(const uint8_t *buf, uint64_t avail, uint64_t nonce, uint8_t *kind,
                     uint32_t *len)
{
    if (avail < REC_HEADER_BYTES)
        return -1;
    *len = get_u32(buf + 4);
    *kind = buf[8];
    if ((buf[9] & ~REC_AFTER_SYNC) || buf[10] || buf[11] ||
        (uint64_t)*len > avail - REC_HEADER_BYTES)
        return -1;
    if (rc_crc32c(rec_seed(buf[9], nonce), buf + 4, REC_HEADER_BYTES - 4 + (size_t)*len) !=
        get_u32(buf))
        return -1;
    return 0;
}

static size_t entry_rec_bytes(uint32_t data_len)
{
    return REC_HEADER_BYTES + ENTRY_FIXED_BYTES + (size_t)data_len;
}

static int fail_io(struct logstore *ls)
{
    ls->failed = RC_EIO;
    return RC_EIO;
}

/* Invariant 12: buf[0..len) was just written at offset off of the active segment. */
static void tail_note(struct logstore *ls, const struct seg *sg, const uint8_t *buf, size_t len,
                      uint64_t off)
{
    if (len > TAIL_CACHE_BYTES)
        return;
    if (ls->tail_len == 0 || ls->tail_first != sg->first_index ||
        ls->tail_off + ls->tail_len != off || ls->tail_len + len > TAIL_CACHE_BYTES) {
        ls->tail_first = sg->first_index;
        ls->tail_off = off;
        ls->tail_len = 0;
    }
    memcpy(ls->tail + ls->tail_len, buf, len);
    ls->tail_len += len;
}

/* The cached bytes [off, off + len) of segment first_index, or NULL if not all cached. */
static const uint8_t *tail_find(const struct logstore *ls, uint64_t first_index, uint64_t off,
                                size_t len)
{
    if (ls->tail_len == 0 || ls->tail_first != first_index || off < ls->tail_off ||
        off - ls->tail_off > ls->tail_len || len > ls->tail_len - (off - ls->tail_off))
        return NULL;
    return ls->tail + (off - ls->tail_off);
}

static int hook(struct logstore *ls, enum logstore_point point)
{
    if (ls->opts.hook && ls->opts.hook(ls->opts.hook_ctx, point) != 0) {
        rc_warn("%s: injected I/O failure at point %d", ls->dir, (int)point);
        return fail_io(ls);
    }
    return 0;
}

/* The first index the log exposes after snapshot index: trailing_entries before it. */
static uint64_t keep_from(const struct logstore *ls, uint64_t index)
{
    uint64_t t = ls->opts.trailing_entries;
    return index + 1 - (t < index ? t : index);
}

uint64_t logstore_first_index(const struct logstore *ls)
{
    uint64_t first = keep_from(ls, ls->snap.index);
    return first > ls->locs_base ? first : ls->locs_base;
}

uint64_t logstore_last_index(const struct logstore *ls)
{
    uint64_t last = ls->locs_base + ls->n_locs - 1;
    return last > ls->snap.index ? last : ls->snap.index;
}

static int term_of(const struct logstore *ls, uint64_t index, uint64_t *term)
{
    if (index >= ls->locs_base && index - ls->locs_base < ls->n_locs) {
        *term = ls->locs[index - ls->locs_base].term;
        return 0;
    }
    if (index == ls->snap.index) {
        *term = ls->snap.term;
        return 0;
    }
    if (index + 1 == ls->locs_base) {
        *term = ls->n_segs ? ls->segs[0].prev_term : ls->snap.term;
        return 0;
    }
    return RC_ENOTFOUND;
}

/* The slot of the segment holding index (the last one starting at or before it). */
static size_t seg_of(const struct logstore *ls, uint64_t index)
{
    size_t lo = 0, hi = ls->n_segs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ls->segs[mid].first_index <= index)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Closes and unlinks segment slot i (the directory is synced by the caller). */
static int seg_remove(struct logstore *ls, size_t i)
{
    if (ls->segs[i].first_index == ls->tail_first)
        ls->tail_len = 0;
    char path[PATH_MAX];
    seg_path(ls, ls->segs[i].first_index, path, sizeof path);
    close(ls->segs[i].fd);
    ls->segs[i].fd = -1;
    if (unlink(path) != 0 && errno != ENOENT) {
        rc_warn("unlink %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    return 0;
}

/*
 * Unlinks segments [k, n_segs) from the last backward, shrinking n_segs as it goes (their
 * locs are the caller's), so that a crash in between leaves a prefix of the log, which reads
 * as one (invariants 4 and 5), never later segments after a gap.
 */
static int seg_remove_from(struct logstore *ls, size_t k)
{
    for (size_t i = ls->n_segs; i-- > k;) {
        if (seg_remove(ls, i) != 0 || hook(ls, LOGSTORE_SEGMENT_REMOVED) != 0)
            return RC_EIO;
        ls->n_segs = i;
    }
    return 0;
}

/* Drops the first k segments from the arrays (files already removed) and their locs. */
static void drop_front_segs(struct logstore *ls, size_t k, uint64_t empty_base)
{
    memmove(ls->segs, ls->segs + k, (ls->n_segs - k) * sizeof *ls->segs);
    ls->n_segs -= k;
    uint64_t base = ls->n_segs ? ls->segs[0].first_index : empty_base;
    uint64_t drop = base - ls->locs_base;
    if (drop > ls->n_locs || ls->n_segs == 0)
        drop = ls->n_locs; /* no file holds any entry any more */
    memmove(ls->locs, ls->locs + drop, (ls->n_locs - drop) * sizeof *ls->locs);
    ls->n_locs -= (size_t)drop;
    ls->locs_base = base;
}

/* ============================== raft-state and snapshot meta files ==============================
 */

static void snap_path(const struct logstore *ls, uint64_t index, uint64_t term, char *buf,
                      size_t cap)
{
    snprintf(buf, cap, "%s/snap-%020llu-%020llu.snap", ls->dir, (unsigned long long)index,
             (unsigned long long)term);
}

static void dir_file(const struct logstore *ls, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", ls->dir, name);
}

/*
 * Encodes a file of the layout at the top: crc | magic | (hard state) | snapshot meta.
 * hs is NULL for snap-incoming.meta. buf has room for FILE_MAX_BYTES; returns the length.
 */
static size_t meta_file_encode(uint8_t *buf, uint32_t magic, const struct raft_hard_state *hs,
                               const struct snap_info *s)
{
    uint8_t *p = buf + 8;
    put_u32(buf + 4, magic);
    if (hs) {
        put_u64(p, hs->term);
        put_u64(p + 8, hs->vote);
        put_u64(p + 16, hs->commit);
        p += 24;
    }
    put_u64(p, s->index);
    put_u64(p + 8, s->term);
    put_u64(p + 16, s->size_bytes);
    put_u32(p + 24, s->crc);
    put_u32(p + 28, s->has_file);
    size_t clen = raft_config_encode(&s->config, p + SNAP_FIXED_BYTES);
    put_u32(p + 32, (uint32_t)clen);
    size_t len = (size_t)(p - buf) + SNAP_FIXED_BYTES + clen;
    put_u32(buf, rc_crc32c(0, buf + 4, len - 4));
    return len;
}

/* The inverse of meta_file_encode; -1 if the bytes are not a valid file of that magic. */
static int meta_file_decode(const uint8_t *b, size_t len, uint32_t magic,
                            struct raft_hard_state *hs, struct snap_info *s)
{
    size_t fixed = 8 + (hs ? 24 : 0) + SNAP_FIXED_BYTES;
    if (len < fixed || get_u32(b + 4) != magic || rc_crc32c(0, b + 4, len - 4) != get_u32(b))
        return -1;
    const uint8_t *p = b + 8;
    if (hs) {
        hs->term = get_u64(p);
        hs->vote = get_u64(p + 8);
        hs->commit = get_u64(p + 16);
        p += 24;
    }
    memset(s, 0, sizeof *s);
    s->index = get_u64(p);
    s->term = get_u64(p + 8);
    s->size_bytes = get_u64(p + 16);
    s->crc = get_u32(p + 24);
    s->has_file = get_u32(p + 28);
    if (get_u32(p + 32) != len - fixed || s->has_file > 1 ||
        raft_config_decode(p + SNAP_FIXED_BYTES, len - fixed, &s->config) != 0)
        return -1;
    return 0;
}

static int state_write(struct logstore *ls, const struct raft_hard_state *hs,
                       const struct snap_info *snap)
{
    uint8_t buf[FILE_MAX_BYTES];
    size_t len = meta_file_encode(buf, STATE_MAGIC, hs, snap);
    int rc = hook(ls, LOGSTORE_BEFORE_STATE_WRITE);
    if (rc != 0)
        return rc;
    if (rc_write_file_atomic(ls->dir, STATE_FILE, buf, len) != 0)
        return fail_io(ls);
    return hook(ls, LOGSTORE_STATE_WRITTEN);
}

static int state_read(struct logstore *ls)
{
    char path[PATH_MAX];
    dir_file(ls, STATE_FILE, path, sizeof path);
    void *data;
    size_t len;
    int rc = rc_read_file(path, &data, &len);
    if (rc == RC_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = meta_file_decode(data, len, STATE_MAGIC, &ls->hs_durable, &ls->snap);
    rc_free(data);
    if (rc != 0 || (ls->snap.index == 0) != (ls->snap.term == 0)) {
        rc_error("%s: invalid hard state file (offset 0, %zu bytes)", path, len);
        return RC_ECORRUPT;
    }
    ls->hs_pending = ls->hs_durable;
    return 0;
}

/* Replaces snap-incoming.meta with *in (durably: temp file, fsync, rename, directory sync). */
static int incoming_meta_write(struct logstore *ls, const struct snap_info *in)
{
    uint8_t buf[FILE_MAX_BYTES];
    size_t len = meta_file_encode(buf, INCOMING_MAGIC, NULL, in);
    if (rc_write_file_atomic(ls->dir, INCOMING_META, buf, len) != 0)
        return fail_io(ls);
    return 0;
}

/* ============================== recovery ============================== */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first indexes of the segment files in dir, sorted, in a rc_malloc'ed array. */
static int list_segments(struct logstore *ls, uint64_t **out, size_t *n_out)
{
    DIR *d = opendir(ls->dir);
    if (!d) {
        rc_warn("open directory %s: %s", ls->dir, strerror(errno));
        return RC_EIO;
    }
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strlen(name) != SEG_NAME_LEN || strncmp(name, "log-", 4) != 0 ||
            strcmp(name + 24, ".seg") != 0)
            continue;
        char *end;
        unsigned long long id = strtoull(name + 4, &end, 10);
        if (end != name + 24 || id == 0)
            continue;
        if ((rc = rc_reserve((void **)&ids, &cap, n + 1, sizeof *ids)) != 0)
            break;
        ids[n++] = id;
    }
    closedir(d);
    if (rc != 0) {
        rc_free(ids);
        return rc;
    }
    if (n)
        qsort(ids, n, sizeof *ids, cmp_u64);
    *out = ids;
    *n_out = n;
    return 0;
}

/* Cuts the active segment at off, logging what was dropped. */
/*
 * The offset of a valid ENTRY record with REC_AFTER_SYNC after offset bad in map[0..size),
 * or 0 (invariant 2). Any byte offset is tried: what follows a damaged record need not be
 * aligned with what it claims. The cheap checks (kind, flags, length) come before the CRC.
 */
static uint64_t synced_record_after(const uint8_t *map, uint64_t size, uint64_t bad, uint64_t nonce)
{
    for (uint64_t p = bad + 1; p + REC_HEADER_BYTES + ENTRY_FIXED_BYTES <= size; p++) {
        if (map[p + 8] != REC_ENTRY_KIND || map[p + 9] != REC_AFTER_SYNC || map[p + 10] ||
            map[p + 11])
            continue;
        uint8_t kind;
        uint32_t len;
        if (rec_check(map + p, size - p, nonce, &kind, &len) == 0 && len >= ENTRY_FIXED_BYTES)
            return p;
    }
    return 0;
}

static int cut_tail(const char *path, int fd, const uint8_t *map, uint64_t size, uint64_t off)
{
    int zero = 1;
    for (uint64_t i = off; i < size && zero; i++)
        zero = map[i] == 0;
    rc_log(zero ? RC_LOG_INFO : RC_LOG_WARNING, "%s: cut %llu bytes of %s tail at offset %llu",
           path, (unsigned long long)(size - off), zero ? "zero-filled" : "torn",
           (unsigned long long)off);
    if (ftruncate(fd, (off_t)off) != 0) {
        rc_warn("truncate %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    return rc_fsync_file(fd, path);
}

/*
 * Loads segment file first_index into slot ls->n_segs (reserved by the caller), appending its
 * entries to locs. A last segment with a torn header (never synced) is removed; recover()
 * syncs the directory afterwards in any case.
 */
static int load_segment(struct logstore *ls, uint64_t first_index, int is_last)
{
    char path[PATH_MAX];
    seg_path(ls, first_index, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        rc_warn("open %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc_warn("stat %s: %s", path, strerror(errno));
        close(fd);
        return RC_EIO;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t *map = NULL;
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            rc_warn("mmap %s: %s", path, strerror(errno));
            close(fd);
            return RC_EIO;
        }
    }
    int rc = 0;
    uint8_t kind;
    uint32_t len;
    if (rec_check(map, size, 0, &kind, &len) != 0 || kind != REC_HEADER_KIND || map[9] ||
        (len != SEG_HEADER_PAYLOAD && len != SEG_HEADER_OLD) ||
        get_u64(map + REC_HEADER_BYTES) != first_index) {
        if (is_last) {
            /* Created but never synced: it holds nothing anybody was told about. */
            rc_warn("%s: removing segment with a torn header (%llu bytes)", path,
                    (unsigned long long)size);
            if (unlink(path) != 0)
                rc = RC_EIO;
        } else {
            rc_error("%s: corrupt segment header at offset 0", path);
            rc = RC_ECORRUPT;
        }
        goto out;
    }
    struct seg *sg = &ls->segs[ls->n_segs];
    sg->first_index = first_index;
    sg->prev_term = get_u64(map + REC_HEADER_BYTES + 8);
    sg->nonce = len == SEG_HEADER_PAYLOAD ? get_u64(map + REC_HEADER_BYTES + 16) : 0;
    sg->fd = fd;
    uint64_t off = REC_HEADER_BYTES + len;
    uint64_t expect = first_index;
    while (off < size) {
        struct raft_entry e;
        size_t used;
        int ok = rec_check(map + off, size - off, sg->nonce, &kind, &len) == 0 &&
                 kind == REC_ENTRY_KIND &&
                 raft_entry_decode(map + off + REC_HEADER_BYTES, len, &e, &used) == 0 &&
                 used == len && e.index == expect;
        if (!ok) {
            if (!is_last) {
                rc_error("%s: corrupt record at offset %llu in a sealed segment", path,
                         (unsigned long long)off);
                rc = RC_ECORRUPT;
                goto out;
            }
            uint64_t later = synced_record_after(map, size, off, sg->nonce);
            if (later) {
                rc_error("%s: corrupt record at offset %llu in the active segment: the record "
                         "at offset %llu was written after it was synced, so it is damaged, "
                         "not torn; nothing was cut",
                         path, (unsigned long long)off, (unsigned long long)later);
                rc = RC_ECORRUPT;
                goto out;
            }
            if ((rc = cut_tail(path, fd, map, size, off)) != 0)
                goto out;
            size = off;
            break;
        }
        if ((rc = rc_reserve((void **)&ls->locs, &ls->cap_locs, ls->n_locs + 1,
                             sizeof *ls->locs)) != 0)
            goto out;
        ls->locs[ls->n_locs++] = (struct loc){e.term, off, e.len};
        off += REC_HEADER_BYTES + len;
        expect++;
    }
    sg->size_bytes = sg->alloc_bytes = size;
    sg->synced_bytes = 0; /* recover() syncs the last segment; sealed ones are never written */
    ls->n_segs++;
    fd = -1;
out:
    if (map)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Unlinks the segment files ids[from..n) that follow a gap (invariant 4). */
static int remove_after_gap(struct logstore *ls, const uint64_t *ids, size_t from, size_t n)
{
    for (size_t i = n; i-- > from;) {
        char path[PATH_MAX];
        seg_path(ls, ids[i], path, sizeof path);
        rc_warn("%s: removing segment after a gap in the log (left by an interrupted "
                "truncation)",
                path);
        if (unlink(path) != 0) {
            rc_warn("unlink %s: %s", path, strerror(errno));
            return RC_EIO;
        }
    }
    return rc_fsync_dir(ls->dir);
}

/* Unlinks dir/name with a warning saying why; *removed records that the directory changed. */
static int remove_leftover(struct logstore *ls, const char *name, const char *why, int *removed)
{
    char path[PATH_MAX];
    dir_file(ls, name, path, sizeof path);
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return 0;
        rc_warn("unlink %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    rc_warn("%s: removed %s", path, why);
    *removed = 1;
    return 0;
}

/*
 * Keeps a partial incoming snapshot whose meta file is valid and whose data file holds at
 * least the bytes the meta file claims (a longer file is cut back: the excess was never
 * acknowledged); deletes both files otherwise (invariant 10).
 */
static int recover_incoming(struct logstore *ls, int *removed)
{
    char meta_path[PATH_MAX], part_path[PATH_MAX];
    dir_file(ls, INCOMING_META, meta_path, sizeof meta_path);
    dir_file(ls, INCOMING_PART, part_path, sizeof part_path);
    void *data;
    size_t len;
    int rc = rc_read_file(meta_path, &data, &len);
    if (rc == RC_ENOTFOUND)
        return remove_leftover(ls, INCOMING_PART, "snapshot data without its meta file", removed);
    if (rc != 0)
        return rc;
    struct snap_info in;
    const char *why = NULL;
    if (meta_file_decode(data, len, INCOMING_MAGIC, NULL, &in) != 0)
        why = "invalid incoming snapshot meta file";
    else if (in.index <= ls->snap.index)
        why = "incoming snapshot not newer than the installed one";
    rc_free(data);
    int fd = -1;
    if (!why && (fd = open(part_path, O_RDWR | O_CLOEXEC)) < 0) {
        if (errno != ENOENT) {
            rc_warn("open %s: %s", part_path, strerror(errno));
            return RC_EIO;
        }
        why = "incoming snapshot meta file without its data";
    }
    struct stat st;
    if (!why && fstat(fd, &st) != 0) {
        rc_warn("stat %s: %s", part_path, strerror(errno));
        close(fd);
        return RC_EIO;
    }
    if (!why && (uint64_t)st.st_size < in.size_bytes)
        why = "incoming snapshot shorter than its meta file says";
    if (why) {
        if (fd >= 0)
            close(fd);
        rc = remove_leftover(ls, INCOMING_PART, why, removed);
        if (rc == 0)
            rc = remove_leftover(ls, INCOMING_META, why, removed);
        return rc;
    }
    if ((uint64_t)st.st_size > in.size_bytes) {
        rc_warn("%s: cut %llu bytes written after the last durable chunk", part_path,
                (unsigned long long)((uint64_t)st.st_size - in.size_bytes));
        if (ftruncate(fd, (off_t)in.size_bytes) != 0 || rc_fsync_file(fd, part_path) != 0) {
            close(fd);
            return RC_EIO;
        }
    }
    ls->in = in;
    ls->in_fd = fd;
    return 0;
}

/*
 * Deletes the temp files of unfinished local snapshots and every .snap file but the one
 * raft-state names, which must exist with the recorded size (invariant 9); then recovers the
 * incoming snapshot. Syncs the directory if anything was removed.
 */
static int recover_snapshot_files(struct logstore *ls)
{
    char current[PATH_MAX];
    snap_path(ls, ls->snap.index, ls->snap.term, current, sizeof current);
    const char *current_name = current + strlen(ls->dir) + 1;
    DIR *d = opendir(ls->dir);
    if (!d) {
        rc_warn("open directory %s: %s", ls->dir, strerror(errno));
        return RC_EIO;
    }
    int rc = 0, removed = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t l = strlen(name);
        if (strncmp(name, "snap-", 5) != 0)
            continue;
        if (l > 4 && strcmp(name + l - 4, ".tmp") == 0)
            rc = remove_leftover(ls, name, "temp file of an unfinished snapshot", &removed);
        else if (l > 5 && strcmp(name + l - 5, ".snap") == 0 &&
                 !(ls->snap.has_file && strcmp(name, current_name) == 0))
            rc = remove_leftover(ls, name, "snapshot file not named by raft-state", &removed);
    }
    closedir(d);
    if (rc == 0 && ls->snap.has_file) {
        int fd = open(current, O_RDWR | O_CLOEXEC);
        struct stat st;
        if (fd < 0) {
            rc_error("%s: snapshot file named by raft-state is missing (%s)", current,
                     strerror(errno));
            rc = RC_ECORRUPT;
        } else if (fstat(fd, &st) != 0) {
            rc_warn("stat %s: %s", current, strerror(errno));
            rc = RC_EIO;
        } else if ((uint64_t)st.st_size != ls->snap.size_bytes) {
            rc_error("%s: snapshot file has %llu bytes but raft-state says %llu (offset 0)",
                     current, (unsigned long long)st.st_size,
                     (unsigned long long)ls->snap.size_bytes);
            rc = RC_ECORRUPT;
        }
        if (rc == 0)
            ls->snap_fd = fd;
        else if (fd >= 0)
            close(fd);
    }
    if (rc == 0)
        rc = recover_incoming(ls, &removed);
    if (rc == 0 && removed)
        rc = rc_fsync_dir(ls->dir);
    return rc;
}

static int recover(struct logstore *ls)
{
    int rc = state_read(ls);
    if (rc == 0)
        rc = recover_snapshot_files(ls);
    if (rc != 0)
        return rc;
    uint64_t *ids = NULL;
    size_t n = 0;
    if ((rc = list_segments(ls, &ids, &n)) != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((rc = rc_reserve((void **)&ls->segs, &ls->cap_segs, ls->n_segs + 1,
                             sizeof *ls->segs)) != 0)
            break;
        if (ls->n_segs > 0 && ids[i] != ls->locs_base + ls->n_locs) {
            uint64_t expect = ls->locs_base + ls->n_locs;
            if (ids[i] > expect && ids[i] <= ls->snap.index + 1) {
                /* Everything before was compacted; a crash interrupted the unlinks. */
                for (size_t k = 0; k < ls->n_segs && rc == 0; k++)
                    rc = seg_remove(ls, k);
                ls->n_segs = 0;
                ls->n_locs = 0;
            } else if (ids[i] > expect) {
                rc = remove_after_gap(ls, ids, i, n);
                break;
            } else {
                char path[PATH_MAX];
                seg_path(ls, ids[i], path, sizeof path);
                rc_error("%s: segment overlaps the previous one (expected first index %llu) at "
                         "offset 0",
                         path, (unsigned long long)expect);
                rc = RC_ECORRUPT;
                break;
            }
            if (rc != 0)
                break;
        }
        if (ls->n_segs == 0) {
            ls->locs_base = ids[i];
            ls->n_locs = 0;
        }
        rc = load_segment(ls, ids[i], i + 1 == n);
    }
    rc_free(ids);
    if (rc != 0)
        return rc;
    /* Segments wholly before the entries kept with the snapshot (keep_from: just after it
     * with no trailing entries) are leftovers of an interrupted compaction. */
    size_t k = 0;
    while (ls->snap.index > 0 && k < ls->n_segs) {
        uint64_t seg_last =
            k + 1 < ls->n_segs ? ls->segs[k + 1].first_index - 1 : ls->locs_base + ls->n_locs - 1;
        if (seg_last >= keep_from(ls, ls->snap.index))
            break;
        if ((rc = seg_remove(ls, k)) != 0)
            return rc;
        k++;
    }
    /*
     * A snapshot whose last entry disagrees with ours replaced the whole log (invariant 5);
     * a crash after raft-state was written can leave the segments behind.
     */
    uint64_t t;
    if (k < ls->n_segs && ls->snap.index > ls->locs_base + ls->n_locs - 1) {
        /* Entries that do not reach the snapshot: a snapshot install replaced them, or they
         * were never synced before a crash (a leader compacts past its unsynced writes). */
        rc_warn("%s: removing log entries left behind by a snapshot install or a crash (they end "
                "at index %llu, before the snapshot at %llu)",
                ls->dir, (unsigned long long)(ls->locs_base + ls->n_locs - 1),
                (unsigned long long)ls->snap.index);
        if ((rc = seg_remove_from(ls, k)) != 0)
            return rc;
    } else if (k < ls->n_segs && ls->snap.index + 1 >= ls->locs_base &&
               term_of(ls, ls->snap.index, &t) == 0 && t != ls->snap.term) {
        rc_warn("%s: removing the log left behind by a snapshot install (term %llu at index %llu, "
                "snapshot term %llu)",
                ls->dir, (unsigned long long)t, (unsigned long long)ls->snap.index,
                (unsigned long long)ls->snap.term);
        if ((rc = seg_remove_from(ls, k)) != 0)
            return rc;
    }
    if (k > 0)
        drop_front_segs(ls, k, ls->snap.index + 1);
    if (ls->n_segs == 0) {
        ls->locs_base = ls->snap.index + 1;
        ls->n_locs = 0;
    }
    /*
     * What the last run wrote without syncing (a leader's deferred entries, raft.h) may be
     * read back from the page cache after it was killed: make it durable before this node
     * acknowledges or counts any of it.
     */
    if (ls->n_segs > 0) {
        struct seg *last = &ls->segs[ls->n_segs - 1];
        char path[PATH_MAX];
        seg_path(ls, last->first_index, path, sizeof path);
        if ((rc = rc_fsync_file(last->fd, path)) != 0)
            return rc;
        last->synced_bytes = last->size_bytes;
    }
    if ((rc = rc_fsync_dir(ls->dir)) != 0)
        return rc;
    if (ls->locs_base > ls->snap.index + 1) {
        rc_error("%s: log starts at index %llu but the snapshot ends at %llu (offset 0)", ls->dir,
                 (unsigned long long)ls->locs_base, (unsigned long long)ls->snap.index);
        return RC_ECORRUPT;
    }
    if (ls->hs_durable.commit > logstore_last_index(ls)) {
        /* By invariant 3 the entries up to commit were durable before the state file was. */
        rc_error("%s: hard state commit %llu beyond the last entry %llu: durable entries lost",
                 ls->dir, (unsigned long long)ls->hs_durable.commit,
                 (unsigned long long)logstore_last_index(ls));
        return RC_ECORRUPT;
    }
    return 0;
}

/* ============================== open / close ============================== */

void logstore_options_default(struct logstore_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->segment_size_bytes = 64ull << 20;
    opts->prealloc_bytes = 1ull << 20;
}

void logstore_close(struct logstore *ls)
{
    if (!ls)
        return;
    for (size_t i = 0; i < ls->n_segs; i++)
        if (ls->segs[i].fd >= 0)
            close(ls->segs[i].fd);
    if (ls->snap_fd >= 0)
        close(ls->snap_fd);
    if (ls->in_fd >= 0)
        close(ls->in_fd);
    rc_free(ls->segs);
    rc_free(ls->locs);
    rc_free(ls->rbuf);
    rc_free(ls->tail);
    rc_free(ls->dir);
    rc_free(ls);
}

int logstore_open(const char *dir, const struct logstore_options *opts, struct logstore **out)
{
    struct logstore *ls = rc_calloc(1, sizeof *ls);
    if (!ls)
        return RC_ENOMEM;
    int rc = RC_ENOMEM;
    if (opts)
        ls->opts = *opts;
    else
        logstore_options_default(&ls->opts);
    if (ls->opts.segment_size_bytes == 0)
        ls->opts.segment_size_bytes = 64ull << 20;
    ls->locs_base = 1;
    ls->snap_fd = ls->in_fd = -1;
    if (!(ls->dir = rc_memdup(dir, strlen(dir))) || !(ls->tail = rc_malloc(TAIL_CACHE_BYTES)))
        goto fail;
    if ((rc = rc_mkdir_p(dir)) != 0)
        goto fail;
    if ((rc = recover(ls)) != 0)
        goto fail;
    *out = ls;
    return 0;
fail:
    logstore_close(ls);
    return rc;
}

/* ============================== append ============================== */

/* Creates the segment starting at first_index (slot reserved by the caller) as active. */
static int seg_create(struct logstore *ls, uint64_t first_index, uint64_t prev_term)
{
    char path[PATH_MAX];
    seg_path(ls, first_index, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc_warn("create %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    uint8_t hdr[REC_HEADER_BYTES + SEG_HEADER_PAYLOAD];
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce || nonce == 0)
        nonce = rc_mono_ns() ^ ((uint64_t)getpid() << 32) ^ first_index ^ 1;
    put_u64(hdr + REC_HEADER_BYTES, first_index);
    put_u64(hdr + REC_HEADER_BYTES + 8, prev_term);
    put_u64(hdr + REC_HEADER_BYTES + 16, nonce);
    rec_finish(hdr, REC_HEADER_KIND, SEG_HEADER_PAYLOAD);
    if (rc_pwrite_all(fd, hdr, sizeof hdr, 0, path) != 0) {
        close(fd);
        return RC_EIO;
    }
    ls->segs[ls->n_segs++] = (struct seg){.first_index = first_index,
                                          .prev_term = prev_term,
                                          .size_bytes = sizeof hdr,
                                          .alloc_bytes = sizeof hdr,
                                          .synced_bytes = 0,
                                          .nonce = nonce,
                                          .fd = fd};
    ls->dir_dirty = 1;
    ls->tail_len = 0;
    return 0;
}

/* Deletes stored entries >= index, durably (invariant 4). */
static int truncate_suffix(struct logstore *ls, uint64_t index)
{
    ls->tail_len = 0;
    size_t s = seg_of(ls, index);
    if (seg_remove_from(ls, s + 1) != 0)
        return RC_EIO;
    struct seg *sg = &ls->segs[s];
    uint64_t off = ls->locs[index - ls->locs_base].offset;
    char path[PATH_MAX];
    seg_path(ls, sg->first_index, path, sizeof path);
    if (ftruncate(sg->fd, (off_t)off) != 0) {
        rc_warn("truncate %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    sg->size_bytes = sg->alloc_bytes = off;
    ls->n_locs = (size_t)(index - ls->locs_base);
    if (rc_fsync_dir(ls->dir) != 0 || rc_fsync_file(sg->fd, path) != 0)
        return RC_EIO;
    sg->synced_bytes = off;
    return 0;
}

/*
 * Writes buf[0..len) at the end of the active segment; when that passes the zeros written
 * ahead, writes more zeros after it, up to the next multiple of prealloc_bytes (at most
 * segment_size_bytes) — invariant 11.
 */
static int write_span(struct logstore *ls, uint8_t *buf, size_t len)
{
    static const uint8_t zeros[64 << 10];
    if (len == 0)
        return 0;
    struct seg *sg = &ls->segs[ls->n_segs - 1];
    char path[PATH_MAX];
    seg_path(ls, sg->first_index, path, sizeof path);
    /* Invariant 2: a write that starts where the durable bytes end vouches for them. */
    if (sg->synced_bytes == sg->size_bytes)
        rec_set_flags(buf, REC_AFTER_SYNC, sg->nonce);
    if (rc_pwrite_all(sg->fd, buf, len, (off_t)sg->size_bytes, path) != 0)
        return RC_EIO;
    tail_note(ls, sg, buf, len, sg->size_bytes);
    sg->size_bytes += len;
    ls->active_dirty = 1;
    if (sg->size_bytes <= sg->alloc_bytes)
        return 0;
    sg->alloc_bytes = sg->size_bytes;
    uint64_t chunk = ls->opts.prealloc_bytes;
    if (chunk == 0)
        return 0;
    uint64_t target = (sg->size_bytes / chunk + 1) * chunk;
    if (target > ls->opts.segment_size_bytes)
        target = ls->opts.segment_size_bytes;
    while (sg->alloc_bytes < target) {
        uint64_t n = target - sg->alloc_bytes;
        if (n > sizeof zeros)
            n = sizeof zeros;
        if (rc_pwrite_all(sg->fd, zeros, (size_t)n, (off_t)sg->alloc_bytes, path) != 0)
            return RC_EIO;
        sg->alloc_bytes += n;
    }
    return 0;
}

int logstore_append(struct logstore *ls, const struct raft_entry *entries, size_t n)
{
    if (ls->failed)
        return ls->failed;
    if (n == 0)
        return 0;
    uint64_t first = entries[0].index;
    if (first < logstore_first_index(ls) || first > logstore_last_index(ls) + 1 ||
        first <= ls->snap.index)
        return RC_EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (entries[i].index != first + i || entries[i].len > RAFT_ENTRY_MAX_BYTES ||
            entries[i].type > RAFT_ENTRY_CONFIG)
            return RC_EINVAL;
        total += entry_rec_bytes(entries[i].len);
    }
    /* Allocate everything first, so that RC_ENOMEM changes nothing on disk or in memory. */
    size_t keep = (size_t)(first - ls->locs_base);
    if (rc_reserve((void **)&ls->locs, &ls->cap_locs, keep + n, sizeof *ls->locs) != 0 ||
        rc_reserve((void **)&ls->segs, &ls->cap_segs, ls->n_segs + n + 1, sizeof *ls->segs) != 0)
        return RC_ENOMEM;
    uint8_t *buf = rc_malloc(total);
    if (!buf)
        return RC_ENOMEM;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = raft_entry_encode(&entries[i], buf + pos + REC_HEADER_BYTES);
        rec_finish(buf + pos, REC_ENTRY_KIND, (uint32_t)len);
        pos += REC_HEADER_BYTES + len;
    }
    int rc = 0;
    if (first <= ls->locs_base + ls->n_locs - 1 && ls->n_locs > 0)
        rc = truncate_suffix(ls, first);
    size_t span_start = 0;
    pos = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct raft_entry *e = &entries[i];
        size_t rec = entry_rec_bytes(e->len);
        struct seg *active = ls->n_segs ? &ls->segs[ls->n_segs - 1] : NULL;
        int has_entries = active && ls->locs_base + ls->n_locs > active->first_index;
        uint64_t span_bytes = pos - span_start;
        if (!active ||
            (has_entries && active->size_bytes + span_bytes + rec > ls->opts.segment_size_bytes)) {
            uint64_t prev_term;
            if ((rc = term_of(ls, e->index - 1, &prev_term)) != 0)
                break;
            rc = write_span(ls, buf + span_start, span_bytes);
            /*
             * Seal: a segment is cut to its records (invariant 11) and durable whole before
             * its successor exists (invariant 2).
             */
            if (rc == 0 && active) {
                char path[PATH_MAX];
                seg_path(ls, active->first_index, path, sizeof path);
                if (active->alloc_bytes > active->size_bytes) {
                    if (ftruncate(active->fd, (off_t)active->size_bytes) != 0) {
                        rc_warn("truncate %s: %s", path, strerror(errno));
                        rc = RC_EIO;
                    }
                    active->alloc_bytes = active->size_bytes;
                }
                if (rc == 0)
                    rc = rc_fsync_file(active->fd, path);
            }
            if (rc == 0)
                rc = seg_create(ls, e->index, prev_term);
            span_start = pos;
            if (rc != 0)
                break;
            active = &ls->segs[ls->n_segs - 1];
        }
        ls->locs[ls->n_locs++] =
            (struct loc){e->term, active->size_bytes + (pos - span_start), e->len};
        pos += rec;
    }
    if (rc == 0)
        rc = write_span(ls, buf + span_start, pos - span_start);
    rc_free(buf);
    return rc != 0 ? fail_io(ls) : 0;
}

/* ============================== hard state, sync, compaction ============================== */

int logstore_set_hard_state(struct logstore *ls, const struct raft_hard_state *hs)
{
    if (ls->failed)
        return ls->failed;
    ls->hs_pending = *hs;
    ls->hs_dirty = 1;
    return 0;
}

void logstore_hard_state(const struct logstore *ls, struct raft_hard_state *hs)
{
    *hs = ls->hs_durable;
}

uint64_t logstore_entry_preads(const struct logstore *ls)
{
    return ls->entry_preads;
}

size_t logstore_segment_count(const struct logstore *ls)
{
    return ls->n_segs;
}

int logstore_sync(struct logstore *ls)
{
    if (ls->failed)
        return ls->failed;
    int rc;
    if (ls->active_dirty || ls->dir_dirty) {
        if ((rc = hook(ls, LOGSTORE_BEFORE_ENTRIES_SYNC)) != 0)
            return rc;
        if (ls->active_dirty && ls->n_segs > 0) {
            struct seg *sg = &ls->segs[ls->n_segs - 1];
            char path[PATH_MAX];
            seg_path(ls, sg->first_index, path, sizeof path);
            if (rc_fsync_file(sg->fd, path) != 0)
                return fail_io(ls);
            sg->synced_bytes = sg->size_bytes;
        }
        if (ls->dir_dirty && rc_fsync_dir(ls->dir) != 0)
            return fail_io(ls);
        ls->active_dirty = ls->dir_dirty = 0;
        if ((rc = hook(ls, LOGSTORE_ENTRIES_SYNCED)) != 0)
            return rc;
    }
    if (ls->hs_dirty) {
        if ((rc = state_write(ls, &ls->hs_pending, &ls->snap)) != 0)
            return rc;
        ls->hs_durable = ls->hs_pending;
        ls->hs_dirty = 0;
    }
    return 0;
}

/*
 * Makes *s the snapshot the log starts after: writes raft-state with it (the commit point),
 * then drops the segments it covers — all of them if drop_all, or if its last entry is
 * beyond ours or has another term (invariant 5) — and replaces the previous snapshot file
 * with fd, the open file of s (or -1 if s has no file). fd is owned by the store from here.
 */
static int snapshot_switch(struct logstore *ls, const struct snap_info *s, int fd, int drop_all)
{
    uint64_t have;
    drop_all = drop_all || s->index > logstore_last_index(ls) ||
               term_of(ls, s->index, &have) != 0 || have != s->term;
    int rc = state_write(ls, &ls->hs_durable, s);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct snap_info old = ls->snap;
    ls->snap = *s;
    if (ls->snap_fd >= 0)
        close(ls->snap_fd);
    ls->snap_fd = fd;
    int dir_changed = 0;
    if (old.has_file) {
        char path[PATH_MAX];
        snap_path(ls, old.index, old.term, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc_warn("unlink %s: %s", path, strerror(errno));
            return fail_io(ls);
        }
        dir_changed = 1;
    }
    if (drop_all) {
        /* From the last backward: a crash in between leaves a prefix of the old log, which
         * the next open finds short of the snapshot or disagreeing with it, and drops. */
        dir_changed |= ls->n_segs > 0;
        if (seg_remove_from(ls, 0) != 0)
            return fail_io(ls);
        ls->active_dirty = 0;
    } else {
        /* From the front: a crash in between leaves segments that still reach keep_from. */
        size_t k = 0;
        while (k + 1 < ls->n_segs && ls->segs[k + 1].first_index <= keep_from(ls, s->index))
            k++;
        for (size_t i = 0; i < k; i++)
            if (seg_remove(ls, i) != 0 || hook(ls, LOGSTORE_SEGMENT_REMOVED) != 0)
                return fail_io(ls);
        if (k > 0) {
            drop_front_segs(ls, k, s->index + 1);
            dir_changed = 1;
        }
    }
    if (ls->n_segs == 0) {
        /* No file holds an entry: the next append starts right after the snapshot. */
        ls->locs_base = s->index + 1;
        ls->n_locs = 0;
    }
    if (dir_changed && rc_fsync_dir(ls->dir) != 0)
        return fail_io(ls);
    return 0;
}

int logstore_compact(struct logstore *ls, uint64_t index, uint64_t term)
{
    if (ls->failed)
        return ls->failed;
    if (index <= ls->snap.index)
        return 0;
    struct snap_info s = {.index = index, .term = term};
    return snapshot_switch(ls, &s, -1, 0);
}

/* ============================== snapshot data ============================== */

int logstore_snapshot_begin(struct logstore *ls, struct logstore_snapshot_writer **out)
{
    if (ls->failed)
        return ls->failed;
    struct logstore_snapshot_writer *w = rc_calloc(1, sizeof *w);
    if (!w)
        return RC_ENOMEM;
    snprintf(w->path, sizeof w->path, "%s/snap-local-%llu.tmp", ls->dir,
             (unsigned long long)++ls->local_seq);
    w->fd = open(w->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc_warn("create %s: %s", w->path, strerror(errno));
        rc_free(w);
        return RC_EIO;
    }
    *out = w;
    return 0;
}

int logstore_snapshot_write(struct logstore_snapshot_writer *w, const void *buf, size_t len)
{
    if (w->error)
        return w->error;
    if (len == 0)
        return 0;
    if (rc_write_all(w->fd, buf, len, w->path) != 0) {
        w->error = RC_EIO;
        return RC_EIO;
    }
    w->size_bytes += len;
    w->crc = rc_crc32c(w->crc, buf, len);
    w->synced = 0;
    return 0;
}

int logstore_snapshot_sync(struct logstore_snapshot_writer *w)
{
    if (w->error)
        return w->error;
    if (rc_fsync_file(w->fd, w->path) != 0) {
        w->error = RC_EIO;
        return RC_EIO;
    }
    w->synced = 1;
    return 0;
}

void logstore_snapshot_abort(struct logstore_snapshot_writer *w)
{
    if (!w)
        return;
    close(w->fd);
    if (unlink(w->path) != 0)
        rc_warn("unlink %s: %s", w->path, strerror(errno));
    rc_free(w);
}

int logstore_snapshot_commit(struct logstore *ls, struct logstore_snapshot_writer *w,
                             uint64_t index, uint64_t term, const struct raft_config *config)
{
    uint64_t have;
    int rc = ls->failed ? ls->failed : w->error;
    if (rc == 0 && (index <= ls->snap.index || index > logstore_last_index(ls) ||
                    term_of(ls, index, &have) != 0 || have != term ||
                    raft_config_encoded_size(config) > CONFIG_MAX_BYTES))
        rc = RC_EINVAL;
    if (rc == 0 && !w->synced && rc_fsync_file(w->fd, w->path) != 0)
        rc = fail_io(ls);
    char path[PATH_MAX];
    snap_path(ls, index, term, path, sizeof path);
    if (rc == 0 && rename(w->path, path) != 0) {
        rc_warn("rename %s: %s", w->path, strerror(errno));
        rc = fail_io(ls);
    }
    if (rc != 0) {
        logstore_snapshot_abort(w);
        return rc;
    }
    int fd = w->fd;
    struct snap_info s = {index, term, w->size_bytes, w->crc, 1, *config};
    rc_free(w);
    /* The new name must be durable before raft-state names it (invariant 9). */
    if (rc_fsync_dir(ls->dir) != 0) {
        close(fd);
        return fail_io(ls);
    }
    return snapshot_switch(ls, &s, fd, 0);
}

/* Starts the incoming snapshot of *meta afresh (invariant 10: meta file first, then data). */
static int incoming_start(struct logstore *ls, const struct raft_snapshot_meta *meta)
{
    if (ls->in_fd >= 0) {
        close(ls->in_fd);
        ls->in_fd = -1;
    }
    struct snap_info in = {.index = meta->index, .term = meta->term, .config = meta->config};
    int rc = incoming_meta_write(ls, &in);
    if (rc != 0)
        return rc;
    char path[PATH_MAX];
    dir_file(ls, INCOMING_PART, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc_warn("create %s: %s", path, strerror(errno));
        return fail_io(ls);
    }
    ls->in = in;
    ls->in_fd = fd;
    return 0;
}

/* The last chunk is durable: the incoming snapshot replaces the snapshot and the whole log. */
static int incoming_install(struct logstore *ls)
{
    char part[PATH_MAX], path[PATH_MAX];
    dir_file(ls, INCOMING_PART, part, sizeof part);
    snap_path(ls, ls->in.index, ls->in.term, path, sizeof path);
    int fd = ls->in_fd;
    ls->in_fd = -1;
    if (rename(part, path) != 0 || rc_fsync_dir(ls->dir) != 0) {
        rc_warn("install %s as %s: %s", part, path, strerror(errno));
        close(fd);
        return fail_io(ls);
    }
    struct snap_info s = ls->in;
    s.has_file = 1;
    int rc = snapshot_switch(ls, &s, fd, 1);
    if (rc != 0)
        return rc;
    char meta[PATH_MAX];
    dir_file(ls, INCOMING_META, meta, sizeof meta);
    /* A meta file left by a crash here has no data file beside it and is removed at open. */
    if (unlink(meta) != 0 || rc_fsync_dir(ls->dir) != 0) {
        rc_warn("unlink %s: %s", meta, strerror(errno));
        return fail_io(ls);
    }
    return 0;
}

int logstore_snapshot_chunk(struct logstore *ls, const struct raft_snapshot_chunk *c)
{
    if (ls->failed)
        return ls->failed;
    const struct raft_snapshot_meta *m = &c->meta;
    if (m->index <= ls->snap.index || m->term == 0 || (c->len > 0 && !c->data) ||
        (c->done && m->size_bytes != c->offset + c->len) ||
        raft_config_encoded_size(&m->config) > CONFIG_MAX_BYTES)
        return RC_EINVAL;
    if (c->offset != 0 && (ls->in_fd < 0 || ls->in.index != m->index || ls->in.term != m->term ||
                           c->offset != ls->in.size_bytes))
        return RC_EINVAL;
    int rc;
    if (c->offset == 0 && (rc = incoming_start(ls, m)) != 0)
        return rc;
    char part[PATH_MAX];
    dir_file(ls, INCOMING_PART, part, sizeof part);
    /* Data durable before the meta file counts it (invariant 10). */
    if (c->len > 0 && (rc_pwrite_all(ls->in_fd, c->data, c->len, (off_t)c->offset, part) != 0 ||
                       rc_fsync_file(ls->in_fd, part) != 0))
        return fail_io(ls);
    if (c->len > 0) {
        ls->in.size_bytes += c->len;
        ls->in.crc = rc_crc32c(ls->in.crc, c->data, c->len);
    }
    if (c->done)
        return incoming_install(ls);
    if (c->len == 0)
        return 0;
    return incoming_meta_write(ls, &ls->in);
}

void logstore_snapshot_meta(const struct logstore *ls, struct raft_snapshot_meta *m)
{
    memset(m, 0, sizeof *m);
    m->index = ls->snap.index;
    m->term = ls->snap.term;
    m->config = ls->snap.config;
    m->size_bytes = ls->snap.size_bytes;
    m->crc = ls->snap.has_file ? ls->snap.crc : 0;
}

int logstore_snapshot_path(const struct logstore *ls, char *buf, size_t cap)
{
    if (!ls->snap.has_file)
        return RC_ENOTFOUND;
    char path[PATH_MAX];
    snap_path(ls, ls->snap.index, ls->snap.term, path, sizeof path);
    if (strlen(path) >= cap)
        return RC_EINVAL;
    memcpy(buf, path, strlen(path) + 1);
    return 0;
}

/* Reads up to len bytes at offset of the current snapshot's data (*n = 0 at the end). */
static int snapshot_pread(struct logstore *ls, uint64_t offset, void *buf, size_t len, size_t *n)
{
    *n = 0;
    if (offset >= ls->snap.size_bytes)
        return 0;
    if (len > ls->snap.size_bytes - offset)
        len = (size_t)(ls->snap.size_bytes - offset);
    char path[PATH_MAX];
    snap_path(ls, ls->snap.index, ls->snap.term, path, sizeof path);
    int rc = rc_pread_all(ls->snap_fd, buf, len, (off_t)offset, path);
    if (rc != 0)
        return rc;
    *n = len;
    return 0;
}

int logstore_snapshot_verify(struct logstore *ls)
{
    if (ls->failed)
        return ls->failed;
    if (!ls->snap.has_file)
        return RC_ENOTFOUND;
    uint8_t *buf = rc_malloc(COPY_CHUNK_BYTES);
    if (!buf)
        return RC_ENOMEM;
    uint32_t crc = 0;
    uint64_t off = 0;
    size_t n;
    int rc;
    while ((rc = snapshot_pread(ls, off, buf, COPY_CHUNK_BYTES, &n)) == 0 && n > 0) {
        crc = rc_crc32c(crc, buf, n);
        off += n;
    }
    rc_free(buf);
    if (rc == 0 && crc != ls->snap.crc) {
        char path[PATH_MAX];
        snap_path(ls, ls->snap.index, ls->snap.term, path, sizeof path);
        rc_error("%s: snapshot data checksum mismatch (crc32c %08x, raft-state says %08x)", path,
                 (unsigned)crc, (unsigned)ls->snap.crc);
        rc = RC_ECORRUPT;
    }
    return rc;
}

/* ============================== struct raft_storage ============================== */

static int st_first_index(void *ctx, uint64_t *index)
{
    struct logstore *ls = ctx;
    *index = logstore_first_index(ls);
    return ls->failed;
}

static int st_last_index(void *ctx, uint64_t *index)
{
    struct logstore *ls = ctx;
    *index = logstore_last_index(ls);
    return ls->failed;
}

static int st_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct logstore *ls = ctx;
    if (ls->failed)
        return ls->failed;
    if (index + 1 < logstore_first_index(ls) || index > logstore_last_index(ls))
        return RC_ENOTFOUND;
    return term_of(ls, index, term);
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, struct raft_entry *out,
                      size_t *n)
{
    struct logstore *ls = ctx;
    if (ls->failed)
        return ls->failed;
    if (lo < logstore_first_index(ls) || hi > logstore_last_index(ls) + 1 || lo >= hi)
        return RC_ENOTFOUND;
    size_t count = 0, data = 0, bytes = 0;
    for (uint64_t i = lo; i < hi; i++) {
        const struct loc *l = &ls->locs[i - ls->locs_base];
        if (count > 0 && data + l->data_len > max_bytes)
            break;
        data += l->data_len;
        bytes += entry_rec_bytes(l->data_len);
        count++;
    }
    if (bytes > ls->rbuf_cap) {
        void *p = rc_malloc(bytes);
        if (!p)
            return RC_ENOMEM;
        rc_free(ls->rbuf);
        ls->rbuf = p;
        ls->rbuf_cap = bytes;
    }
    /* Records of consecutive entries in one segment are contiguous: one pread per segment,
     * none for records still in the tail cache (invariant 12). */
    uint8_t *next = ls->rbuf;
    size_t done = 0;
    while (done < count) {
        uint64_t idx = lo + done;
        size_t s = seg_of(ls, idx);
        uint64_t seg_end = s + 1 < ls->n_segs ? ls->segs[s + 1].first_index : UINT64_MAX;
        size_t k = done, span = 0;
        while (k < count && lo + k < seg_end) {
            span += entry_rec_bytes(ls->locs[lo + k - ls->locs_base].data_len);
            k++;
        }
        uint64_t at = ls->locs[idx - ls->locs_base].offset;
        char path[PATH_MAX];
        const uint8_t *buf = tail_find(ls, ls->segs[s].first_index, at, span);
        if (!buf) {
            seg_path(ls, ls->segs[s].first_index, path, sizeof path);
            int rc = rc_pread_all(ls->segs[s].fd, next, span, (off_t)at, path);
            if (rc != 0)
                return rc;
            ls->entry_preads++;
            buf = next;
            next += span;
        }
        size_t off = 0;
        for (size_t j = done; j < k; j++) {
            uint8_t kind;
            uint32_t len;
            size_t used;
            struct raft_entry *e = &out[j];
            if (rec_check(buf + off, span - off, ls->segs[s].nonce, &kind, &len) != 0 ||
                kind != REC_ENTRY_KIND ||
                raft_entry_decode(buf + off + REC_HEADER_BYTES, len, e, &used) != 0 ||
                e->index != lo + j) {
                seg_path(ls, ls->segs[s].first_index, path, sizeof path);
                rc_error("%s: corrupt record at offset %llu", path,
                         (unsigned long long)ls->locs[lo + j - ls->locs_base].offset);
                return RC_ECORRUPT;
            }
            off += REC_HEADER_BYTES + len;
        }
        done = k;
    }
    *n = count;
    return 0;
}

static int st_snapshot(void *ctx, struct raft_snapshot_meta *meta)
{
    struct logstore *ls = ctx;
    logstore_snapshot_meta(ls, meta);
    return ls->failed;
}

static int st_snapshot_read(void *ctx, uint64_t index, uint64_t offset, void *buf, size_t len,
                            size_t *n)
{
    struct logstore *ls = ctx;
    *n = 0;
    if (ls->failed)
        return ls->failed;
    if (!ls->snap.has_file || index != ls->snap.index)
        return RC_ENOTFOUND;
    return snapshot_pread(ls, offset, buf, len, n);
}

static int st_snapshot_received(void *ctx, uint64_t index, uint64_t term, uint64_t *bytes,
                                uint32_t *crc)
{
    struct logstore *ls = ctx;
    *bytes = 0;
    *crc = 0;
    if (ls->in_fd >= 0 && ls->in.index == index && ls->in.term == term) {
        *bytes = ls->in.size_bytes;
        *crc = ls->in.crc;
    }
    return ls->failed;
}

struct raft_storage logstore_raft_storage(struct logstore *ls)
{
    return (struct raft_storage){
        .ctx = ls,
        .first_index = st_first_index,
        .last_index = st_last_index,
        .term = st_term,
        .entries = st_entries,
        .snapshot = st_snapshot,
        .snapshot_read = st_snapshot_read,
        .snapshot_received = st_snapshot_received,
    };
}

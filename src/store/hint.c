/* hint.c — writing and replaying hint files (format in hint.h). */
#include "hint.h"

#include "common/bytes.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define HINT_MAGIC   "RCHINT01"
#define HINT_END     "HEND"
#define HINT_HEADER  16
#define HINT_ENTRY   32
#define HINT_TRAILER 24

/* ============================== writing ============================== */

struct hint_buf {
    uint8_t *data;
    size_t len, cap;
};

static int hint_buf_reserve(struct hint_buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *d = rc_realloc(b->data, cap);
    if (!d)
        return RC_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int hint_write(const char *dir, const struct datafile *f)
{
    struct hint_buf b = {0};
    int rc = hint_buf_reserve(&b, HINT_HEADER);
    if (rc != 0)
        return rc;
    memcpy(b.data, HINT_MAGIC, 8);
    rc_put_u32(b.data + 8, f->id);
    rc_put_u32(b.data + 12, 0);
    b.len = HINT_HEADER;

    uint64_t count = 0;
    for (uint64_t off = 0; off < f->size;) {
        struct record r;
        if (record_decode(f->map + off, f->size - off, &r) != RECORD_OK) {
            rc_warn("%s: invalid record at offset %llu while writing its hint", f->path,
                    (unsigned long long)off);
            rc = RC_ECORRUPT;
            goto out;
        }
        if (r.kind == RECORD_PAD || r.kind == RECORD_SYNC) { /* change nothing on replay */
            off += r.total_len;
            continue;
        }
        rc = hint_buf_reserve(&b, HINT_ENTRY + r.key_len);
        if (rc != 0)
            goto out;
        uint8_t *e = b.data + b.len;
        memset(e, 0, 4);
        e[0] = (uint8_t)r.kind;
        rc_put_u32(e + 4, r.key_len);
        rc_put_u32(e + 8, (uint32_t)off);
        rc_put_u32(e + 12, r.value_len);
        rc_put_u64(e + 16, r.revision);
        rc_put_u64(e + 24, (uint64_t)r.expiry_ms);
        memcpy(e + HINT_ENTRY, r.key, r.key_len);
        b.len += HINT_ENTRY + r.key_len;
        off += r.total_len;
        count++;
    }
    rc = hint_buf_reserve(&b, HINT_TRAILER);
    if (rc != 0)
        goto out;
    rc_put_u64(b.data + b.len, count);
    rc_put_u64(b.data + b.len + 8, f->size);
    rc_put_u32(b.data + b.len + 16, rc_crc32c(0, b.data, b.len + 16));
    memcpy(b.data + b.len + 20, HINT_END, 4);
    b.len += HINT_TRAILER;

    char name[64];
    snprintf(name, sizeof name, "%06u.hint", (unsigned)f->id);
    rc = rc_write_file_atomic(dir, name, b.data, b.len);
out:
    rc_free(b.data);
    return rc;
}

/* ============================== reading ============================== */

/* Decodes the entry at pos; returns its length, or 0 when it is malformed. */
static size_t decode_entry(const uint8_t *data, size_t end, size_t pos, uint64_t data_size,
                           struct load_item *item)
{
    if (end - pos < HINT_ENTRY)
        return 0;
    const uint8_t *e = data + pos;
    uint32_t klen = rc_get_u32(e + 4), off = rc_get_u32(e + 8), vlen = rc_get_u32(e + 12);
    bool replayed = (e[0] >= RECORD_PUT && e[0] <= RECORD_CLEAR) || e[0] == RECORD_COMMIT;
    if (!replayed || e[1] || e[2] || e[3])
        return 0;
    if (klen > RECORD_MAX_KEY || vlen > RECORD_MAX_VALUE || end - pos - HINT_ENTRY < klen)
        return 0;
    if ((uint64_t)off + record_size(klen, vlen) > data_size)
        return 0;
    memset(item, 0, sizeof *item);
    item->rec.kind = (enum record_kind)e[0];
    item->rec.key_len = klen;
    item->rec.value_len = vlen;
    item->rec.revision = rc_get_u64(e + 16);
    item->rec.expiry_ms = (int64_t)rc_get_u64(e + 24);
    item->rec.key = e + HINT_ENTRY;
    item->rec.total_len = record_size(klen, vlen);
    item->offset = off;
    return HINT_ENTRY + klen;
}

int hint_load(const char *dir, uint32_t id, uint64_t data_size, load_item_fn fn, void *ctx)
{
    char path[PATH_MAX];
    datafile_path(path, sizeof path, dir, id, ".hint");
    void *raw;
    size_t len;
    int rc = rc_read_file(path, &raw, &len);
    if (rc != 0)
        return rc == RC_ENOTFOUND ? RC_ENOTFOUND : RC_ECORRUPT;
    const uint8_t *data = raw;
    rc = RC_ECORRUPT;
    if (len < HINT_HEADER + HINT_TRAILER || memcmp(data, HINT_MAGIC, 8) != 0 ||
        rc_get_u32(data + 8) != id)
        goto bad;
    size_t end = len - HINT_TRAILER;
    const uint8_t *t = data + end;
    if (memcmp(t + 20, HINT_END, 4) != 0 || rc_get_u64(t + 8) != data_size ||
        rc_get_u32(t + 16) != rc_crc32c(0, data, end + 16))
        goto bad;
    uint64_t count = rc_get_u64(t);

    /* Validate every entry before replaying any, so a bad hint changes nothing. */
    uint64_t seen = 0;
    struct load_item item;
    size_t pos = HINT_HEADER;
    while (pos < end) {
        size_t n = decode_entry(data, end, pos, data_size, &item);
        if (n == 0)
            goto bad;
        pos += n;
        seen++;
    }
    if (seen != count)
        goto bad;
    rc = 0;
    for (pos = HINT_HEADER; pos < end && rc == 0;) {
        pos += decode_entry(data, end, pos, data_size, &item);
        rc = fn(&item, ctx);
    }
    goto out;
bad:
    rc_warn("%s: hint is unusable; reading the data file instead", path);
out:
    rc_free(raw);
    return rc;
}

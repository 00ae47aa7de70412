/* record.c — encoding, decoding and resynchronisation of data-file records (see record.h). */
#include "record.h"

#include "common/bytes.h"

#include "common/crc32c.h"

#include <string.h>

void record_encode(uint8_t *dst, enum record_kind kind, uint64_t revision, int64_t expiry_ms,
                   const void *key, uint32_t klen, const void *value, uint32_t vlen)
{
    dst[4] = RECORD_MAGIC;
    dst[5] = (uint8_t)kind;
    dst[6] = 0;
    dst[7] = 0;
    rc_put_u64(dst + 8, revision);
    rc_put_u64(dst + 16, (uint64_t)expiry_ms);
    rc_put_u32(dst + 24, klen);
    rc_put_u32(dst + 28, vlen);
    if (klen)
        memcpy(dst + RECORD_HEADER_SIZE, key, klen);
    if (vlen)
        memcpy(dst + RECORD_HEADER_SIZE + klen, value, vlen);
    rc_put_u32(dst, rc_crc32c(0, dst + 4, RECORD_HEADER_SIZE - 4 + (size_t)klen + vlen));
}

/* Checks the header fields that need no CRC; RECORD_OK or RECORD_BAD. */
static enum record_status check_header(const uint8_t *h, uint32_t *klen, uint32_t *vlen)
{
    if (h[4] != RECORD_MAGIC || h[6] != 0 || h[7] != 0)
        return RECORD_BAD;
    *klen = rc_get_u32(h + 24);
    *vlen = rc_get_u32(h + 28);
    if (*klen > RECORD_MAX_KEY || *vlen > RECORD_MAX_VALUE)
        return RECORD_BAD;
    switch (h[5]) {
    case RECORD_PUT:
        return RECORD_OK;
    case RECORD_DELETE:
        return *vlen == 0 && rc_get_u64(h + 16) == 0 ? RECORD_OK : RECORD_BAD;
    case RECORD_MARK:
    case RECORD_CLEAR:
    case RECORD_SYNC:
    case RECORD_COMMIT:
        return *klen == 0 && *vlen == 0 && rc_get_u64(h + 16) == 0 ? RECORD_OK : RECORD_BAD;
    case RECORD_PAD:
        return *klen == 0 && rc_get_u64(h + 8) == 0 && rc_get_u64(h + 16) == 0 ? RECORD_OK
                                                                               : RECORD_BAD;
    default:
        return RECORD_BAD;
    }
}

enum record_status record_decode(const uint8_t *buf, size_t avail, struct record *out)
{
    if (avail < RECORD_HEADER_SIZE) {
        /* Too short to judge by CRC; an all-zero or non-magic start is still plainly bad. */
        if (avail > 4 && buf[4] != RECORD_MAGIC)
            return RECORD_BAD;
        return RECORD_SHORT;
    }
    uint32_t klen, vlen;
    if (check_header(buf, &klen, &vlen) != RECORD_OK)
        return RECORD_BAD;
    size_t total = record_size(klen, vlen);
    if (total > avail)
        return RECORD_SHORT;
    if (rc_crc32c(0, buf + 4, total - 4) != rc_get_u32(buf))
        return RECORD_BAD;
    out->kind = (enum record_kind)buf[5];
    out->revision = rc_get_u64(buf + 8);
    out->expiry_ms = (int64_t)rc_get_u64(buf + 16);
    out->key_len = klen;
    out->value_len = vlen;
    out->key = buf + RECORD_HEADER_SIZE;
    out->value = buf + RECORD_HEADER_SIZE + klen;
    out->total_len = total;
    return RECORD_OK;
}

size_t record_find_next_valid(const uint8_t *buf, size_t avail, size_t from)
{
    /* If the bad record's header is intact, its own extent is skipped: a record torn while
     * its value was being copied must not be mistaken for "valid records follow" because
     * the value's bytes happen to contain something shaped like a record (a client chooses
     * those bytes). Bit rot inside a value leaves the header intact, so the records after
     * it are still found. */
    size_t pos = from + 1;
    uint32_t klen, vlen;
    if (avail - from >= RECORD_HEADER_SIZE && check_header(buf + from, &klen, &vlen) == RECORD_OK &&
        record_size(klen, vlen) > RECORD_HEADER_SIZE) {
        size_t end = from + record_size(klen, vlen);
        pos = end < avail ? end : avail;
    }
    while (pos + RECORD_HEADER_SIZE <= avail) {
        /* Jump to the next candidate magic byte (at offset 4 of a record) with memchr. */
        const uint8_t *m = memchr(buf + pos + 4, RECORD_MAGIC, avail - pos - 4);
        if (!m)
            break;
        pos = (size_t)(m - buf) - 4;
        if (pos + RECORD_HEADER_SIZE > avail)
            break;
        struct record r;
        if (record_decode(buf + pos, avail - pos, &r) == RECORD_OK)
            return pos;
        pos++;
    }
    return avail;
}

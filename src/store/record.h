/*
 * record.h — the on-disk record of a data file, and its encoder and decoder.
 *
 *   offset size field
 *        0    4 crc32c     CRC-32C of bytes [4, 32 + key_len + value_len)
 *        4    1 magic      0xC5: lets a scan tell a record start from garbage cheaply
 *        5    1 kind       1 put, 2 delete (tombstone), 3 mark (revision only), 4 clear,
 *                          5 pad (fills bytes dropped by a repair; its value is zeros),
 *                          6 sync (its revision field is an offset of this file up to which
 *                          an fsync had completed before the record was written),
 *                          7 commit (revision only: with atomic_revisions, the records
 *                          before it, up to the previous commit, are one complete revision;
 *                          records after the last commit are an incomplete revision that
 *                          open drops — see store.c invariant 6)
 *        6    2 reserved   0
 *        8    8 revision   u64, the caller's revision (the Raft index in a cluster)
 *       16    8 expiry_ms  i64, absolute expiry in ms since the epoch, 0 = none (put only)
 *       24    4 key_len    u32 (0 for mark, clear and commit)
 *       28    4 value_len  u32 (0 for delete, mark, clear and commit)
 *       32      key bytes, then value bytes
 *
 * All integers are little-endian. A record is valid when its magic, kind, reserved bytes and
 * lengths are in range, it fits in the bytes available, and its CRC matches.
 */
#ifndef RC_STORE_RECORD_H
#define RC_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define RECORD_HEADER_SIZE 32
#define RECORD_MAGIC       0xC5
#define RECORD_MAX_KEY     (1u << 20)
#define RECORD_MAX_VALUE   (1u << 30)

enum record_kind {
    RECORD_PUT = 1,
    RECORD_DELETE = 2,
    RECORD_MARK = 3,
    RECORD_CLEAR = 4,
    RECORD_PAD = 5,
    RECORD_SYNC = 6,
    RECORD_COMMIT = 7,
};

struct record {
    enum record_kind kind;
    uint64_t revision;
    int64_t expiry_ms;
    uint32_t key_len;
    uint32_t value_len;
    const uint8_t *key;   /* points into the decoded buffer */
    const uint8_t *value; /* points into the decoded buffer */
    size_t total_len;     /* header + key + value */
};

enum record_status {
    RECORD_OK = 0,
    RECORD_SHORT = 1, /* the bytes available end inside the record (a torn tail, or need more) */
    RECORD_BAD = 2,   /* not a valid record: bad magic, kind, lengths or CRC */
};

static inline size_t record_size(uint32_t key_len, uint32_t value_len)
{
    return RECORD_HEADER_SIZE + (size_t)key_len + value_len;
}

/*
 * Writes a complete record into dst, which must hold record_size(klen, vlen) bytes.
 * key and value may be NULL when their length is 0.
 */
void record_encode(uint8_t *dst, enum record_kind kind, uint64_t revision, int64_t expiry_ms,
                   const void *key, uint32_t klen, const void *value, uint32_t vlen);

/* Decodes the record starting at buf, with avail bytes readable. */
enum record_status record_decode(const uint8_t *buf, size_t avail, struct record *out);

/*
 * Looks for the first offset after the bad record at from at which a valid record starts;
 * returns it, or avail when there is none. When the bad record's header is intact, the
 * search starts after the extent that header claims (see record.c). Used to tell a torn
 * tail (nothing valid follows) from a corrupt record in the middle of a file.
 */
size_t record_find_next_valid(const uint8_t *buf, size_t avail, size_t from);

#endif

/*
 * hint.h — hint files: the records of one closed data file without their values.
 *
 * Loading a hint instead of its data file makes open read a few bytes per key instead of
 * every value. Layout (little-endian):
 *
 *   header   16 B  "RCHINT01" | u32 data file id | u32 0
 *   entry    32 B  u8 kind | 3 B zero | u32 key_len | u32 offset | u32 value_len
 *                  | u64 revision | i64 expiry_ms,   then key_len key bytes
 *   ...            one entry per record of the data file, in file order (tombstones, marks
 *                  and clears included, so replaying the hint has the data file's effect)
 *   trailer  24 B  u64 entry count | u64 data file size | u32 CRC-32C of all bytes before it
 *                  | "HEND"
 *
 * A hint is used only if its CRC matches and it names the data file's id and exact size;
 * otherwise open ignores it and reads the data file. Hints are written atomically (temp file,
 * fsync, rename), so a hint that exists is complete.
 */
#ifndef RC_STORE_HINT_H
#define RC_STORE_HINT_H

#include "datafile.h"
#include "record.h"

/* One record as described by a hint or a data-file scan; value is NULL for hints. */
struct load_item {
    struct record rec;
    uint32_t offset; /* of the record in its data file */
};
typedef int (*load_item_fn)(const struct load_item *item, void *ctx);

/* Writes DIR/NNNNNN.hint for the first f->size bytes of f, all of which must be valid
 * records. 0, RC_ECORRUPT (a record is invalid), RC_EIO, RC_ENOMEM. */
int hint_write(const char *dir, const struct datafile *f);

/* Replays DIR/NNNNNN.hint through fn. RC_ENOTFOUND when there is no hint, RC_ECORRUPT when
 * it is unusable (fn has then not been called), fn's non-zero return, or 0. */
int hint_load(const char *dir, uint32_t id, uint64_t data_size, load_item_fn fn, void *ctx);

#endif

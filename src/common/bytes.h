/*
 * bytes.h — little-endian integers in byte buffers, for every on-disk and on-wire format
 * (data-file records, hints, log entries). memcpy keeps unaligned access defined; the
 * formats are little-endian and so are the hosts raftcask targets (x86-64, arm64), which
 * is checked at compile time below rather than swapped at run time.
 */
#ifndef RC_COMMON_BYTES_H
#define RC_COMMON_BYTES_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raftcask's file and wire formats assume a little-endian host"
#endif

static inline void rc_put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void rc_put_u64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline uint32_t rc_get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t rc_get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#endif

/*
 * crc32c.h — CRC-32C (Castagnoli), the checksum of every record and log entry on disk.
 *
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run time) and a
 * slicing-by-8 table otherwise; both give identical results. Standard parameters: reflected
 * polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF, so
 * rc_crc32c(0, "123456789", 9) == 0xE3069283.
 */
#ifndef RC_COMMON_CRC32C_H
#define RC_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 for a fresh checksum) over len bytes at data. */
uint32_t rc_crc32c(uint32_t crc, const void *data, size_t len);
/* The table-driven version, exposed so tests can compare it with the hardware path. */
uint32_t rc_crc32c_sw(uint32_t crc, const void *data, size_t len);
/* 1 when rc_crc32c uses the hardware instruction. */
int rc_crc32c_hw_available(void);

#endif

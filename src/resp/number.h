/*
 * number.h — strict conversions between bytes and numbers, with Redis's rules.
 *
 * Command handlers use these to read integer and float arguments and to format replies, so
 * that "007", " 1" or "1e400" are refused, and INCRBYFLOAT prints its result, exactly as
 * Redis 7 does. None of them allocates; none depends on NUL termination of its input.
 */
#ifndef RC_RESP_NUMBER_H
#define RC_RESP_NUMBER_H

#include <stddef.h>
#include <stdint.h>

/* Room for any int64 in decimal: 20 characters for INT64_MIN plus a NUL. */
#define RESP_LL_STR_SIZE 21
/* Room for any finite long double in Redis's human-friendly form (Redis's own bound). */
#define RESP_LD_STR_SIZE (5 * 1024)

/*
 * Parses s[0..len) as a decimal int64 with Redis's string2ll rules: an optional '-', then
 * digits; no '+', no spaces, no leading zeros (so "-0" and "007" are refused, "0" is not);
 * anything outside [INT64_MIN, INT64_MAX] is refused. Returns 0 and sets *out (if out is not
 * NULL), or RC_EINVAL.
 */
int resp_string2ll(const char *s, size_t len, int64_t *out);

/*
 * Parses s[0..len) as a long double with Redis's string2ld rules (what INCRBYFLOAT accepts):
 * strtold syntax (decimal, exponent, hex float, "inf"/"infinity") covering every byte, no
 * leading space, not NaN, no overflow to ±HUGE_VAL, no underflow to zero, and shorter than
 * RESP_LD_STR_SIZE bytes. "inf" is accepted as Redis does; the caller rejects an infinite
 * result. Returns 0 and sets *out, or RC_EINVAL. Parses in the C locale's syntax only if
 * the process runs in the C locale (the server never calls setlocale for LC_NUMERIC).
 */
int resp_string2ld(const char *s, size_t len, long double *out);

/* Writes v in decimal plus a NUL into buf (at least RESP_LL_STR_SIZE bytes); returns the
 * number of characters written, NUL excluded. */
size_t resp_ll2str(char *buf, int64_t v);

/*
 * Formats v the way Redis formats an INCRBYFLOAT result (ld2string, human-friendly mode):
 * fixed notation with 17 digits after the point ("%.17Lf"), then trailing zeros and a
 * trailing point removed, "-0" written as "0", and "inf"/"-inf" for infinities. Writes a NUL
 * too. Returns the length, or 0 if buf (size bytes) is too small; RESP_LD_STR_SIZE always
 * suffices. The digits depend on the platform's long double: x86-64 (80-bit), like the Redis
 * binaries we compare against; where long double is plain double results can differ.
 */
size_t resp_ld2str(char *buf, size_t size, long double v);

#endif

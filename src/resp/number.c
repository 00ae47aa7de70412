/*
 * number.c — strict decimal conversions with Redis's rules (see number.h).
 *
 * Why our own integer parser instead of strtoll: strtoll skips leading spaces, accepts '+',
 * leading zeros and a trailing suffix when asked, and reports overflow through errno. Redis
 * clients rely on the stricter rule (one canonical spelling per number) and so does our RESP
 * parser, which needs canonical lengths (see parse.c).
 */
#include "resp/number.h"

#include "raftcask.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Integers                                                                                 */
/* ---------------------------------------------------------------------------------------- */

int resp_string2ll(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int negative = 0;

    if (len == 0)
        return RC_EINVAL;
    if (len == 1 && s[0] == '0') {
        if (out)
            *out = 0;
        return 0;
    }
    if (s[0] == '-') {
        negative = 1;
        i = 1;
    }
    /* The first digit must be 1-9: this refuses "", "-", "-0", "007" and "+1" in one test. */
    if (i == len || s[i] < '1' || s[i] > '9')
        return RC_EINVAL;

    /* Accumulate the magnitude in unsigned arithmetic, which has room for -INT64_MIN. */
    const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return RC_EINVAL;
        unsigned digit = (unsigned)(s[i] - '0');
        if (v > (limit - digit) / 10)
            return RC_EINVAL;
        v = v * 10 + digit;
    }
    if (out)
        *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

size_t resp_ll2str(char *buf, int64_t v)
{
    /* Work on the unsigned magnitude so that INT64_MIN needs no special case. */
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char tmp[RESP_LL_STR_SIZE];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag);
    size_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

/* ---------------------------------------------------------------------------------------- */
/* Long doubles (INCRBYFLOAT)                                                                */
/* ---------------------------------------------------------------------------------------- */

int resp_string2ld(const char *s, size_t len, long double *out)
{
    /* strtold needs a NUL-terminated string; arguments are binary and not terminated. */
    char buf[RESP_LD_STR_SIZE];
    if (len == 0 || len >= sizeof buf)
        return RC_EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* strtold would skip leading spaces; Redis refuses them (and trailing ones fail below). */
    if (isspace((unsigned char)buf[0]))
        return RC_EINVAL;

    char *end;
    errno = 0;
    long double v = strtold(buf, &end);
    if ((size_t)(end - buf) != len) /* also catches an embedded NUL */
        return RC_EINVAL;
    if (errno == EINVAL || isnan(v))
        return RC_EINVAL;
    /* Overflow and total underflow are refused; a denormal result of ERANGE is kept, as in
     * Redis, because it is still the nearest representable value. */
    if (errno == ERANGE && (isinf(v) || v == 0))
        return RC_EINVAL;
    if (out)
        *out = v;
    return 0;
}

size_t resp_ld2str(char *buf, size_t size, long double v)
{
    if (isinf(v)) {
        const char *text = v > 0 ? "inf" : "-inf";
        size_t n = strlen(text);
        if (size < n + 1)
            return 0;
        memcpy(buf, text, n + 1);
        return n;
    }
    /* 17 digits after the point: enough for most short decimals typed by users to come back
     * unchanged after 80-bit rounding, which is why Redis chose it. */
    int written = snprintf(buf, size, "%.17Lf", v);
    if (written < 0 || (size_t)written + 1 > size)
        return 0;
    size_t len = (size_t)written;
    if (memchr(buf, '.', len)) {
        while (buf[len - 1] == '0')
            len--;
        if (buf[len - 1] == '.')
            len--;
    }
    /* A tiny negative value rounds to "-0.000…", which would print as "-0". */
    if (len == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        len = 1;
    }
    buf[len] = '\0';
    return len;
}

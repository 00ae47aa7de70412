/*
 * reply.c — RESP2 reply writer (see reply.h).
 *
 * Each function first computes the exact size of its reply, reserves it, and only then
 * writes, so that an allocation failure leaves no partial reply behind: a client must
 * never receive half a reply followed by the next one.
 */
#include "resp/reply.h"

#include "common/alloc.h"
#include "raftcask.h"
#include "resp/number.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Buffer                                                                                   */
/* ---------------------------------------------------------------------------------------- */

void resp_buf_init(struct resp_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = 0;
    b->over = 0;
}

void resp_buf_free(struct resp_buf *b)
{
    size_t limit = b->limit; /* a setting, not contents */
    rc_free(b->data);
    resp_buf_init(b);
    b->limit = limit;
}

size_t resp_buf_memory(const struct resp_buf *b)
{
    return b->cap;
}

int resp_buf_reserve(struct resp_buf *b, size_t extra)
{
    if (b->over || (b->limit && extra > b->limit - (b->len < b->limit ? b->len : b->limit))) {
        b->over = 1;
        return RC_ENOMEM;
    }
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX - b->len)
        return RC_ENOMEM;
    size_t need = b->len + extra;
    /* Doubling keeps appends amortised O(1); 64 bytes holds most single replies. */
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *grown = rc_realloc(b->data, cap);
    if (!grown)
        return RC_ENOMEM;
    b->data = grown;
    b->cap = cap;
    return 0;
}

void resp_buf_consume(struct resp_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* Appends without reserving: the caller reserved the whole reply first. */
static void put(struct resp_buf *b, const void *data, size_t len)
{
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

int resp_buf_append(struct resp_buf *b, const void *data, size_t len)
{
    int rc = resp_buf_reserve(b, len);
    if (rc != 0)
        return rc;
    put(b, data, len);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Simple strings and errors                                                                */
/* ---------------------------------------------------------------------------------------- */

/* Writes type, text with CR/LF turned into spaces, then CRLF. */
static int add_line(struct resp_buf *b, char type, const char *text, size_t len)
{
    int rc = resp_buf_reserve(b, len + 3);
    if (rc != 0)
        return rc;
    put(b, &type, 1);
    char *out = b->data + b->len;
    for (size_t i = 0; i < len; i++)
        out[i] = text[i] == '\r' || text[i] == '\n' ? ' ' : text[i];
    b->len += len;
    put(b, "\r\n", 2);
    return 0;
}

int resp_add_simple(struct resp_buf *b, const char *text, size_t len)
{
    return add_line(b, '+', text, len);
}

int resp_add_status(struct resp_buf *b, const char *text)
{
    return add_line(b, '+', text, strlen(text));
}

int resp_add_error(struct resp_buf *b, const char *message, size_t len)
{
    /* A message ending in a line end (common in formatted text) loses it rather than
     * getting trailing spaces, as in Redis. */
    while (len && (message[len - 1] == '\r' || message[len - 1] == '\n'))
        len--;
    return add_line(b, '-', message, len);
}

int resp_add_errorf(struct resp_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return RC_EINVAL;
    if ((size_t)n < sizeof small)
        return resp_add_error(b, small, (size_t)n);

    /* Longer messages (an unknown command quoting its arguments) are formatted twice. */
    char *big = rc_malloc((size_t)n + 1);
    if (!big)
        return RC_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = resp_add_error(b, big, (size_t)n);
    rc_free(big);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Integers, bulks, arrays                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Writes type, the decimal v, CRLF: the shape of ":5", "$5" and "*5" lines. */
static int add_number_line(struct resp_buf *b, char type, int64_t v, size_t extra_after)
{
    char digits[RESP_LL_STR_SIZE];
    size_t n = resp_ll2str(digits, v);
    int rc = resp_buf_reserve(b, 1 + n + 2 + extra_after);
    if (rc != 0)
        return rc;
    put(b, &type, 1);
    put(b, digits, n);
    put(b, "\r\n", 2);
    return 0;
}

int resp_add_int(struct resp_buf *b, int64_t v)
{
    return add_number_line(b, ':', v, 0);
}

int resp_add_bulk(struct resp_buf *b, const void *data, size_t len)
{
    if (len > (size_t)INT64_MAX || len > SIZE_MAX - 32)
        return RC_ENOMEM;
    /* Reserve header, data and trailer together so the reply is all or nothing. */
    int rc = add_number_line(b, '$', (int64_t)len, len + 2);
    if (rc != 0)
        return rc;
    put(b, data, len);
    put(b, "\r\n", 2);
    return 0;
}

int resp_add_bulk_cstr(struct resp_buf *b, const char *s)
{
    return resp_add_bulk(b, s, strlen(s));
}

int resp_add_bulk_int(struct resp_buf *b, int64_t v)
{
    char digits[RESP_LL_STR_SIZE];
    size_t n = resp_ll2str(digits, v);
    return resp_add_bulk(b, digits, n);
}

int resp_add_null(struct resp_buf *b)
{
    return resp_buf_append(b, "$-1\r\n", 5);
}

int resp_add_array(struct resp_buf *b, size_t n)
{
    if (n > (size_t)INT64_MAX)
        return RC_EINVAL;
    return add_number_line(b, '*', (int64_t)n, 0);
}

int resp_add_null_array(struct resp_buf *b)
{
    return resp_buf_append(b, "*-1\r\n", 5);
}

int resp_add_empty_array(struct resp_buf *b)
{
    return resp_buf_append(b, "*0\r\n", 4);
}

/* ---------------------------------------------------------------------------------------- */
/* Floating point and verbatim                                                               */
/* ---------------------------------------------------------------------------------------- */

int resp_add_bulk_long_double(struct resp_buf *b, long double v)
{
    if (isnan(v))
        return RC_EINVAL;
    char text[RESP_LD_STR_SIZE];
    size_t n = resp_ld2str(text, sizeof text, v);
    if (n == 0)
        return RC_EINVAL;
    return resp_add_bulk(b, text, n);
}

int resp_add_double(struct resp_buf *b, double v)
{
    if (isinf(v))
        return resp_add_bulk_cstr(b, v > 0 ? "inf" : "-inf");
    /* %.17g of a double is at most 24 characters ("-1.2345678901234567e-308"). */
    char text[32];
    int n = snprintf(text, sizeof text, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof text)
        return RC_EINVAL;
    return resp_add_bulk(b, text, (size_t)n);
}

int resp_add_verbatim(struct resp_buf *b, const char *format, const void *text, size_t len)
{
    (void)format; /* only RESP3 carries it */
    return resp_add_bulk(b, text, len);
}

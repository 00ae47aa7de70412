/*
 * inline.c — splits an inline request line into arguments (see resp_split_inline in resp.h).
 *
 * Inline commands are what a person types over telnet or `nc` ("SET a b"); redis-cli and
 * client libraries send multibulk instead. Redis splits them with sdssplitargs, and scripts
 * rely on its quoting, so we follow the same rules:
 *
 *   - Blanks (space, \t, \n, \v, \f, \r: C's isspace) separate arguments.
 *   - An unquoted run ends at a space, \t, \n or \r (not at \v or \f, Redis's own
 *     asymmetry) and may be followed by one quoted part: a"b c" is the argument "ab c".
 *   - "...": \xHH is a byte, \n \r \t \b \a the usual controls, \ before anything else is
 *     that character (\x without two hex digits is "x").
 *   - '...': only \' is an escape; other backslashes are literal.
 *   - A closing quote must be followed by a blank or the end of the line, and every quote
 *     must be closed; otherwise the line has "unbalanced quotes".
 *
 * Arguments without quotes point into the line (zero copy). An argument with a quoted part
 * must be rewritten, so it is built in argv->scratch, which is allocated once per line at
 * the line's length: decoding never makes text longer, so all arguments of the line fit,
 * and pointers into scratch are never moved by a later growth.
 *
 * Difference from Redis: Redis stops at a NUL byte (C strings); here NUL is ordinary data.
 */
#include "resp/resp.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <string.h>

/* C's isspace in the "C" locale, without depending on the process locale. */
static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int ends_unquoted_run(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char unescape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/*
 * Decodes the quoted part that starts at line[*pos] (the opening quote) and appends it to
 * out[*out_len]. On success *pos is just past the closing quote.
 */
static int decode_quoted(const char *line, size_t len, size_t *pos, char *out, size_t *out_len)
{
    char quote = line[*pos];
    size_t i = *pos + 1, n = *out_len;
    for (;;) {
        if (i == len)
            return RC_EPROTO; /* never closed */
        char c = line[i];
        if (c == quote) {
            if (i + 1 < len && !is_blank(line[i + 1]))
                return RC_EPROTO; /* "abc"d */
            i++;
            break;
        }
        if (quote == '"' && c == '\\' && i + 3 < len && line[i + 1] == 'x' &&
            hex_value(line[i + 2]) >= 0 && hex_value(line[i + 3]) >= 0) {
            out[n++] = (char)(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3]));
            i += 4;
        } else if (quote == '"' && c == '\\' && i + 1 < len) {
            out[n++] = unescape(line[i + 1]);
            i += 2;
        } else if (quote == '\'' && c == '\\' && i + 1 < len && line[i + 1] == '\'') {
            out[n++] = '\'';
            i += 2;
        } else {
            out[n++] = c;
            i++;
        }
    }
    *pos = i;
    *out_len = n;
    return 0;
}

/* Makes room in scratch for the decoded arguments of a line of len bytes. */
static int reserve_scratch(struct resp_argv *argv, size_t len)
{
    if (argv->scratch_cap >= len)
        return 0;
    /* Nothing in scratch survives from an earlier line, so no need to keep contents. */
    char *fresh = rc_malloc(len);
    if (!fresh)
        return RC_ENOMEM;
    rc_free(argv->scratch);
    argv->scratch = fresh;
    argv->scratch_cap = len;
    return 0;
}

int resp_split_inline(const char *line, size_t len, struct resp_argv *argv)
{
    size_t i = 0, scratch_used = 0;
    int scratch_ready = 0;
    for (;;) {
        while (i < len && is_blank(line[i]))
            i++;
        if (i == len)
            return 0;
        size_t start = i;
        while (i < len && !ends_unquoted_run(line[i]) && line[i] != '"' && line[i] != '\'')
            i++;
        if (i == len || ends_unquoted_run(line[i])) {
            int rc = resp_argv_push(argv, line + start, i - start, UINT64_MAX);
            if (rc != 0)
                return rc;
            continue;
        }
        /* A quote: this argument is the unquoted prefix plus the decoded quoted part. */
        if (!scratch_ready) {
            int rc = reserve_scratch(argv, len);
            if (rc != 0)
                return rc;
            scratch_ready = 1;
        }
        char *out = argv->scratch + scratch_used;
        size_t out_len = i - start;
        memcpy(out, line + start, out_len);
        int rc = decode_quoted(line, len, &i, out, &out_len);
        if (rc != 0)
            return rc;
        scratch_used += out_len;
        rc = resp_argv_push(argv, out, out_len, UINT64_MAX);
        if (rc != 0)
            return rc;
    }
}

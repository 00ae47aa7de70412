/*
 * parse.c — incremental, zero-copy parser of RESP2 requests (API in resp.h).
 *
 * NOTES ON THE DESIGN
 *
 * 1. One call, one command. resp_parse() looks at the bytes at the start of the caller's
 *    buffer and returns a whole command, "need more" (RC_EAGAIN) or a protocol error, in
 *    the manner of picohttpparser's phr_parse_request. It never reads from a socket and
 *    never copies argument bytes: arguments point into the caller's buffer.
 *
 * 2. The request kind is decided by the first byte, as Redis does: '*' starts a multibulk
 *    request (what every client library sends); anything else is an inline line (what a
 *    human types over telnet, split by inline.c).
 *
 * 3. State machine. For a multibulk request:
 *
 *        START --'*'--> COUNT --"*N\r\n", N>0--> ARGS --all N bulks--> done (START)
 *                         |                        |  '$'-header, then the data + 2 bytes,
 *                         +--N <= 0: empty command  |  repeated N times
 *
 *    For an inline request: START --other byte--> INLINE --'\n' found--> done (START).
 *    On RC_EAGAIN the parser keeps, in struct resp_parser, the offset of the first unparsed
 *    byte (`next`), the bulk arguments still expected, the length of a bulk whose header
 *    was read, and `scan_from`, how far the search for the current line's end got. The next
 *    call resumes there instead of rescanning, so a request that arrives in many reads —
 *    a 500 MB bulk in 64 KB pieces, a million small arguments, an inline line typed one
 *    byte at a time — costs time linear in its size. Bulk data is skipped by its length and
 *    never scanned at all.
 *
 * 4. Offsets, not pointers, survive between calls, because the caller may move its buffer
 *    (realloc) while waiting for more input. Argument pointers are filled in only when the
 *    command is complete (point_args). They are recomputed from the argument lengths alone:
 *    resp_string2ll accepts one spelling per number, so the header of a bulk of length L is
 *    always '$', the digits of L and two line-end bytes; this keeps resp_arg at two words.
 *
 * 5. Limits (struct resp_limits), checked before anything is reserved:
 *    - "*N": N must parse and be <= max_multibulk_count (clamped to INT_MAX, Redis 7's own
 *      limit; our default is 1 Mi arguments, Redis <= 6's limit). N <= 0 is consumed as an
 *      empty command, as Redis does ("*-1\r\n", "*0\r\n").
 *    - "$L": L must parse, be >= 0 and <= max_bulk_len_bytes (proto-max-bulk-len).
 *    - A '*' or '$' header line, or an inline line, longer than max_inline_bytes (64 KiB,
 *      Redis's PROTO_INLINE_MAX_SIZE) is refused.
 *    - Before AUTH (limits->unauthenticated) N > 10 and L > 16384 are refused, as Redis does.
 *    Memory: argv grows by doubling only when an argument has fully arrived, so what the
 *    parser allocates is proportional to bytes actually received, never to a declared N or
 *    L. Holding a declared L bytes of input is the caller's affair (its query buffer limit).
 *
 * 6. Compatibility with Redis 7 (networking.c, checked against redis-server 7.0.15):
 *    - Error texts are Redis's, byte for byte (without the "-ERR " the caller adds).
 *    - Like Redis, the byte after '\r' in a header line and the two bytes after bulk data
 *      are skipped without checking that they are "\n" and "\r\n": "*1\r\n$4\r\nPINGxx" is
 *      PING. Being stricter would refuse input that Redis serves.
 *    - Redis decides "too big" by how many bytes it has buffered without a line end, so
 *      its answer depends on how the input was split into reads. We apply the limit to the
 *      line itself (no line end among the first max_inline_bytes + 1 bytes), so the answer
 *      is the same however the bytes arrive.
 *    - Redis searches line ends with strchr, so a NUL byte before the line end stalls the
 *      connection until the 64 KiB limit. We treat NUL as an ordinary byte: "*1\0\r\n" is an
 *      invalid multibulk length at once, and a NUL inside an inline line is argument data.
 *      In "expected '$', got 'x'", x = NUL, CR or LF is shown as a space (Redis turns CR
 *      and LF into spaces when it sends errors).
 */
#include "resp/resp.h"

#include "common/alloc.h"
#include "raftcask.h"
#include "resp/number.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum parse_mode {
    MODE_START = 0, /* nothing of the current command parsed yet */
    MODE_COUNT,     /* buffer starts with '*': waiting for the "*N\r\n" line */
    MODE_ARGS,      /* reading the N "$L\r\n<data>\r\n" arguments */
    MODE_INLINE,    /* waiting for the '\n' that ends an inline line */
};

/* ---------------------------------------------------------------------------------------- */
/* Argument array                                                                           */
/* ---------------------------------------------------------------------------------------- */

void resp_argv_init(struct resp_argv *argv)
{
    memset(argv, 0, sizeof *argv);
}

void resp_argv_free(struct resp_argv *argv)
{
    rc_free(argv->args);
    rc_free(argv->scratch);
    resp_argv_init(argv);
}

int resp_arg_is(const struct resp_arg *a, const char *word)
{
    size_t n = strlen(word);
    return a->len == n && strncasecmp(a->ptr, word, n) == 0;
}

int resp_argv_push(struct resp_argv *argv, const char *ptr, size_t len, uint64_t more_hint)
{
    if (argv->count == argv->cap) {
        /* Double, but never beyond what this command can still bring: a "*3" command
         * should not get room for 8. */
        size_t cap = argv->cap ? argv->cap * 2 : 8;
        if (more_hint < cap - argv->count)
            cap = argv->count + (size_t)more_hint;
        if (cap <= argv->count || cap > SIZE_MAX / sizeof *argv->args)
            return RC_ENOMEM;
        struct resp_arg *grown = rc_realloc(argv->args, cap * sizeof *grown);
        if (!grown)
            return RC_ENOMEM;
        argv->args = grown;
        argv->cap = cap;
    }
    argv->args[argv->count].ptr = ptr;
    argv->args[argv->count].len = len;
    argv->count++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Parser state and errors                                                                   */
/* ---------------------------------------------------------------------------------------- */

void resp_limits_default(struct resp_limits *l)
{
    l->max_bulk_len_bytes = RESP_DEFAULT_MAX_BULK_LEN;
    l->max_multibulk_count = RESP_DEFAULT_MAX_MULTIBULK_COUNT;
    l->max_inline_bytes = RESP_INLINE_MAX_SIZE;
    l->unauthenticated = 0;
}

static void reset(struct resp_parser *p)
{
    p->mode = MODE_START;
    p->scan_from = 0;
    p->next = 0;
    p->first_arg = 0;
    p->args_left = 0;
    p->bulk_len = -1;
}

void resp_parser_init(struct resp_parser *p)
{
    memset(p, 0, sizeof *p);
    reset(p);
    p->error = "";
}

const char *resp_parser_error(const struct resp_parser *p)
{
    return p->error ? p->error : p->error_buf;
}

static int fail(struct resp_parser *p, const char *message)
{
    p->error = message;
    return RC_EPROTO;
}

static int fail_expected_dollar(struct resp_parser *p, char got)
{
    /* Shown as a space: CR and LF would break the error line (Redis does the same), and
     * NUL would end the C string. */
    if (got == '\r' || got == '\n' || got == '\0')
        got = ' ';
    snprintf(p->error_buf, sizeof p->error_buf, "Protocol error: expected '$', got '%c'", got);
    /* NULL means "in error_buf": a pointer into p would dangle if the caller moved p. */
    return fail(p, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Line ends                                                                                */
/* ---------------------------------------------------------------------------------------- */

enum line_result { LINE_FOUND, LINE_NEED_MORE, LINE_TOO_LONG };

/*
 * Finds the byte `end_byte` ending the line that starts at offset `start`, searching only
 * the first max_line + 1 bytes of the line (a longer line is LINE_TOO_LONG whatever
 * follows) and resuming at p->scan_from. With need_after, one more byte must follow it
 * (the '\n' of a "\r\n" header line, which is then skipped unchecked, as Redis does).
 */
static enum line_result find_line_end(struct resp_parser *p, const char *buf, size_t len,
                                      size_t start, size_t max_line, char end_byte, int need_after,
                                      size_t *found)
{
    size_t window = max_line < SIZE_MAX - start - 1 ? start + max_line + 1 : SIZE_MAX;
    size_t end = len < window ? len : window;
    size_t from = p->scan_from > start ? p->scan_from : start;
    const char *hit = from < end ? memchr(buf + from, end_byte, end - from) : NULL;
    if (!hit) {
        if (end == window)
            return LINE_TOO_LONG;
        p->scan_from = end;
        return LINE_NEED_MORE;
    }
    size_t at = (size_t)(hit - buf);
    if (need_after && at + 1 >= len) {
        p->scan_from = at;
        return LINE_NEED_MORE;
    }
    *found = at;
    return LINE_FOUND;
}

/* ---------------------------------------------------------------------------------------- */
/* Multibulk requests                                                                        */
/* ---------------------------------------------------------------------------------------- */

static size_t decimal_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Turns the lengths in argv into pointers into buf (see note 4). */
static void point_args(const struct resp_parser *p, const char *buf, struct resp_argv *argv)
{
    size_t off = p->first_arg;
    for (size_t i = 0; i < argv->count; i++) {
        size_t len = argv->args[i].len;
        off += 1 + decimal_digits(len) + 2;
        argv->args[i].ptr = buf + off;
        off += len + 2;
    }
    assert(off == p->next);
}

static int parse_count(struct resp_parser *p, const struct resp_limits *lim, const char *buf,
                       size_t len, size_t *consumed)
{
    size_t cr;
    switch (find_line_end(p, buf, len, 0, lim->max_inline_bytes, '\r', 1, &cr)) {
    case LINE_NEED_MORE:
        return RC_EAGAIN;
    case LINE_TOO_LONG:
        return fail(p, "Protocol error: too big mbulk count string");
    case LINE_FOUND:
        break;
    }
    uint64_t max = lim->max_multibulk_count < INT_MAX ? lim->max_multibulk_count : INT_MAX;
    int64_t count;
    if (resp_string2ll(buf + 1, cr - 1, &count) != 0 || (count > 0 && (uint64_t)count > max))
        return fail(p, "Protocol error: invalid multibulk length");
    if (lim->unauthenticated && count > RESP_UNAUTH_MAX_MULTIBULK_COUNT)
        return fail(p, "Protocol error: unauthenticated multibulk length");
    if (count <= 0) {
        *consumed = cr + 2;
        return 0;
    }
    p->mode = MODE_ARGS;
    p->args_left = (uint64_t)count;
    p->next = cr + 2;
    p->first_arg = p->next;
    p->scan_from = p->next;
    p->bulk_len = -1;
    return RC_EAGAIN; /* not final: parse_args continues at once */
}

/* Reads one "$L\r\n" header at p->next. */
static int parse_bulk_header(struct resp_parser *p, const struct resp_limits *lim, const char *buf,
                             size_t len)
{
    size_t start = p->next, cr;
    switch (find_line_end(p, buf, len, start, lim->max_inline_bytes, '\r', 1, &cr)) {
    case LINE_NEED_MORE:
        return RC_EAGAIN;
    case LINE_TOO_LONG:
        return fail(p, "Protocol error: too big bulk count string");
    case LINE_FOUND:
        break;
    }
    if (buf[start] != '$')
        return fail_expected_dollar(p, buf[start]);
    int64_t bulk_len;
    if (resp_string2ll(buf + start + 1, cr - start - 1, &bulk_len) != 0 || bulk_len < 0 ||
        (uint64_t)bulk_len > lim->max_bulk_len_bytes)
        return fail(p, "Protocol error: invalid bulk length");
    if (lim->unauthenticated && bulk_len > RESP_UNAUTH_MAX_BULK_LEN)
        return fail(p, "Protocol error: unauthenticated bulk length");
    p->bulk_len = bulk_len;
    p->next = cr + 2;
    return 0;
}

static int parse_args(struct resp_parser *p, const struct resp_limits *lim, const char *buf,
                      size_t len, struct resp_argv *argv, size_t *consumed)
{
    while (p->args_left) {
        if (p->bulk_len < 0) {
            int rc = parse_bulk_header(p, lim, buf, len);
            if (rc != 0)
                return rc;
        }
        /* The data and the two bytes after it must all be here; they are not scanned. */
        uint64_t need = (uint64_t)p->bulk_len + 2;
        if ((uint64_t)(len - p->next) < need)
            return RC_EAGAIN;
        int rc = resp_argv_push(argv, NULL, (size_t)p->bulk_len, p->args_left);
        if (rc != 0)
            return rc;
        p->next += (size_t)need;
        p->scan_from = p->next;
        p->bulk_len = -1;
        p->args_left--;
    }
    point_args(p, buf, argv);
    *consumed = p->next;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Inline requests                                                                           */
/* ---------------------------------------------------------------------------------------- */

static int parse_inline(struct resp_parser *p, const struct resp_limits *lim, const char *buf,
                        size_t len, struct resp_argv *argv, size_t *consumed)
{
    size_t nl;
    switch (find_line_end(p, buf, len, 0, lim->max_inline_bytes, '\n', 0, &nl)) {
    case LINE_NEED_MORE:
        return RC_EAGAIN;
    case LINE_TOO_LONG:
        return fail(p, "Protocol error: too big inline request");
    case LINE_FOUND:
        break;
    }
    size_t line_len = nl > 0 && buf[nl - 1] == '\r' ? nl - 1 : nl;
    argv->count = 0; /* a retry after RC_ENOMEM splits the line again */
    int rc = resp_split_inline(buf, line_len, argv);
    if (rc == RC_EPROTO)
        return fail(p, "Protocol error: unbalanced quotes in request");
    if (rc != 0)
        return rc;
    *consumed = nl + 1;
    return 0;
}

size_t resp_parse_wanted(const struct resp_parser *p)
{
    if (p->mode != MODE_ARGS || p->bulk_len < 0)
        return 0;
    return p->next + (size_t)p->bulk_len + 2;
}

/* ---------------------------------------------------------------------------------------- */
/* Entry point                                                                               */
/* ---------------------------------------------------------------------------------------- */

int resp_parse(struct resp_parser *p, const struct resp_limits *lim, const char *buf, size_t len,
               struct resp_argv *argv, size_t *consumed)
{
    *consumed = 0;
    /* Fewer bytes than last time breaks the resume offsets: start the command over. */
    if (p->mode != MODE_START && (len < p->scan_from || len < p->next))
        reset(p);
    if (p->mode == MODE_START) {
        if (len == 0)
            return RC_EAGAIN;
        argv->count = 0;
        p->mode = buf[0] == '*' ? MODE_COUNT : MODE_INLINE;
    }

    int rc;
    if (p->mode == MODE_INLINE) {
        rc = parse_inline(p, lim, buf, len, argv, consumed);
    } else {
        rc = RC_EAGAIN;
        if (p->mode == MODE_COUNT) {
            rc = parse_count(p, lim, buf, len, consumed);
            if (rc == RC_EAGAIN && p->mode == MODE_COUNT)
                return rc;
        }
        if (p->mode == MODE_ARGS)
            rc = parse_args(p, lim, buf, len, argv, consumed);
    }
    if (rc != RC_EAGAIN && rc != RC_ENOMEM)
        reset(p);
    return rc;
}

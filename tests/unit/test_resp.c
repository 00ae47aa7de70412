/* test_resp.c — RESP parser, reply writer, number conversions and glob matching.
 *
 * Expected error texts, inline splitting, number formats and glob answers were checked
 * against redis-server 7.0.15 (see the notes at each table). */
#include "test.h"

#include "common/alloc.h"
#include "raftcask.h"
#include "resp/glob.h"
#include "resp/number.h"
#include "resp/reply.h"
#include "resp/resp.h"

#include <float.h>
#include <limits.h>
#include <math.h>

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* A request and the arguments it must produce (NULL-terminated; lens for binary ones). */
struct request {
    const char *wire;
    size_t wire_len; /* 0: strlen(wire) */
    const char *args[6];
    size_t lens[6]; /* 0: strlen(args[i]) unless the arg is "" */
};

static size_t wire_len(const struct request *r)
{
    return r->wire_len ? r->wire_len : strlen(r->wire);
}

static void check_args(const struct request *r, const struct resp_argv *argv)
{
    size_t n = 0;
    while (n < 6 && r->args[n])
        n++;
    CHECK_MSG(argv->count == n, "'%s': %zu args, expected %zu", r->wire, argv->count, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = r->lens[i] ? r->lens[i] : strlen(r->args[i]);
        CHECK_MEM(argv->args[i].ptr, argv->args[i].len, r->args[i], len);
    }
}

/* Parses buf with a fresh parser in one call. */
static int parse_once(const char *buf, size_t len, struct resp_argv *argv, size_t *used,
                      const char **error)
{
    struct resp_parser p;
    struct resp_limits lim;
    resp_parser_init(&p);
    resp_limits_default(&lim);
    int rc = resp_parse(&p, &lim, buf, len, argv, used);
    static char saved[64];
    snprintf(saved, sizeof saved, "%s", resp_parser_error(&p));
    if (error)
        *error = saved;
    return rc;
}

static const struct request valid_requests[] = {
    {"*1\r\n$4\r\nPING\r\n", 0, {"PING"}, {0}},
    {"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n", 0, {"SET", "key", "value"}, {0}},
    {"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", 0, {"GET", ""}, {0}},
    /* Bulk data is binary: CR, LF and NUL inside it are data. */
    {"*2\r\n$4\r\nECHO\r\n$6\r\n\r\n\0*\r\n\r\n", 26, {"ECHO", "\r\n\0*\r\n"}, {0, 6}},
    {"*1\r\n$11\r\n$3\r\nabc\r\n*1\r\n", 0, {"$3\r\nabc\r\n*1"}, {0}},
    {"*0\r\n", 0, {NULL}, {0}},
    {"*-1\r\n", 0, {NULL}, {0}},
    {"*-10\r\n", 0, {NULL}, {0}},
    {"PING\r\n", 0, {"PING"}, {0}},
    {"SET a b\n", 0, {"SET", "a", "b"}, {0}},
    {"  get\t key  \r\n", 0, {"get", "key"}, {0}},
    {"\r\n", 0, {NULL}, {0}},
    {"\n", 0, {NULL}, {0}},
    {"ECHO \"a\\x41\\n\"\r\n", 0, {"ECHO", "aA\n"}, {0}},
    {"SET 'it\\'s' \"x y\"\n", 0, {"SET", "it's", "x y"}, {0}},
    /* Like Redis, the two bytes after bulk data are skipped unchecked. */
    {"*1\r\n$4\r\nPINGxx", 0, {"PING"}, {0}},
    {"*1\rX$4\rXPING\r\n", 0, {"PING"}, {0}},
};

/* ---------------------------------------------------------------------------------------- */
/* Parser: valid input                                                                      */
/* ---------------------------------------------------------------------------------------- */

TEST(parse_every_split_point_fresh_parser)
{
    struct resp_argv argv;
    resp_argv_init(&argv);
    for (size_t r = 0; r < sizeof valid_requests / sizeof *valid_requests; r++) {
        const struct request *req = &valid_requests[r];
        size_t n = wire_len(req), used;
        for (size_t k = 0; k < n; k++) {
            int rc = parse_once(req->wire, k, &argv, &used, NULL);
            CHECK_MSG(rc == RC_EAGAIN, "request %zu prefix %zu: rc %d", r, k, rc);
            CHECK_EQ(used, 0);
        }
        CHECK_OK(parse_once(req->wire, n, &argv, &used, NULL));
        CHECK_EQ(used, n);
        check_args(req, &argv);
    }
    resp_argv_free(&argv);
}

/* One parser fed one more byte per call, from a buffer that moves every time: the resume
 * state must hold offsets only. */
TEST(parse_resumes_byte_by_byte_in_moving_buffer)
{
    struct resp_argv argv;
    resp_argv_init(&argv);
    struct resp_limits lim;
    resp_limits_default(&lim);
    for (size_t r = 0; r < sizeof valid_requests / sizeof *valid_requests; r++) {
        const struct request *req = &valid_requests[r];
        size_t n = wire_len(req), used = 0;
        struct resp_parser p;
        resp_parser_init(&p);
        int rc = RC_EAGAIN;
        char *copy = NULL;
        for (size_t k = 0; k <= n; k++) {
            rc_free(copy);
            copy = rc_malloc(k + 1);
            memcpy(copy, req->wire, k);
            rc = resp_parse(&p, &lim, copy, k, &argv, &used);
            if (k < n)
                CHECK_MSG(rc == RC_EAGAIN, "request %zu at %zu: rc %d", r, k, rc);
        }
        CHECK_OK(rc);
        CHECK_EQ(used, n);
        check_args(req, &argv);
        /* Unquoted inline arguments are decoded into scratch; all others point into copy. */
        for (size_t i = 0; i < argv.count; i++) {
            const char *a = argv.args[i].ptr;
            int in_copy = a >= copy && a + argv.args[i].len <= copy + n;
            int in_scratch = argv.scratch && a >= argv.scratch &&
                             a + argv.args[i].len <= argv.scratch + argv.scratch_cap;
            CHECK(in_copy || in_scratch);
        }
        rc_free(copy);
    }
    resp_argv_free(&argv);
}

TEST(parse_pipelined_commands_one_after_another)
{
    char buf[1024];
    size_t len = 0;
    size_t count = sizeof valid_requests / sizeof *valid_requests;
    /* All requests back to back, exactly as written (the "PINGxx" one included: its two
     * skipped bytes must not swallow the start of the next request). */
    for (size_t r = 0; r < count; r++) {
        memcpy(buf + len, valid_requests[r].wire, wire_len(&valid_requests[r]));
        len += wire_len(&valid_requests[r]);
    }
    struct resp_parser p;
    struct resp_limits lim;
    struct resp_argv argv;
    resp_parser_init(&p);
    resp_limits_default(&lim);
    resp_argv_init(&argv);
    size_t off = 0;
    for (size_t r = 0; r < count; r++) {
        size_t used;
        CHECK_OK(resp_parse(&p, &lim, buf + off, len - off, &argv, &used));
        CHECK_EQ(used, wire_len(&valid_requests[r]));
        check_args(&valid_requests[r], &argv);
        off += used;
    }
    CHECK_EQ(off, len);
    size_t used;
    CHECK_EQ(resp_parse(&p, &lim, buf + off, 0, &argv, &used), RC_EAGAIN);
    resp_argv_free(&argv);
}

/* The pipeline again, arriving in random-sized reads into a buffer that moves, consumed
 * bytes dropped after each command, as the server will do. */
TEST(parse_pipeline_in_random_chunks)
{
    char wire[1024];
    size_t len = 0, count = sizeof valid_requests / sizeof *valid_requests;
    for (size_t r = 0; r < count; r++) {
        memcpy(wire + len, valid_requests[r].wire, wire_len(&valid_requests[r]));
        len += wire_len(&valid_requests[r]);
    }
    uint64_t st = test_seed(3);
    struct resp_limits lim;
    struct resp_argv argv;
    resp_limits_default(&lim);
    resp_argv_init(&argv);
    for (int round = 0; round < 200; round++) {
        struct resp_parser p;
        resp_parser_init(&p);
        char *buf = NULL;
        size_t have = 0, fed = 0, next_request = 0;
        while (fed < len) {
            size_t chunk = 1 + test_rand(&st) % 16;
            if (chunk > len - fed)
                chunk = len - fed;
            char *moved = rc_malloc(have + chunk);
            if (have)
                memcpy(moved, buf, have);
            memcpy(moved + have, wire + fed, chunk);
            rc_free(buf);
            buf = moved;
            have += chunk;
            fed += chunk;
            size_t used;
            int rc;
            while ((rc = resp_parse(&p, &lim, buf, have, &argv, &used)) == 0) {
                CHECK(next_request < count);
                CHECK_EQ(used, wire_len(&valid_requests[next_request]));
                check_args(&valid_requests[next_request], &argv);
                next_request++;
                memmove(buf, buf + used, have - used);
                have -= used;
            }
            CHECK_EQ(rc, RC_EAGAIN);
        }
        CHECK_EQ(next_request, count);
        CHECK_EQ(have, 0);
        rc_free(buf);
    }
    resp_argv_free(&argv);
}

TEST(parse_restarts_when_given_fewer_bytes)
{
    const char *wire = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    struct resp_parser p;
    struct resp_limits lim;
    struct resp_argv argv;
    resp_parser_init(&p);
    resp_limits_default(&lim);
    resp_argv_init(&argv);
    size_t used;
    CHECK_EQ(resp_parse(&p, &lim, wire, 20, &argv, &used), RC_EAGAIN);
    CHECK_EQ(resp_parse(&p, &lim, wire, 6, &argv, &used), RC_EAGAIN);
    CHECK_OK(resp_parse(&p, &lim, wire, strlen(wire), &argv, &used));
    CHECK_EQ(argv.count, 2);
    CHECK_MEM(argv.args[1].ptr, argv.args[1].len, "key", 3);
    resp_argv_free(&argv);
}

/* A big bulk arriving in 64 KiB reads and a command of many small arguments arriving in
 * small reads both complete; the resume state makes each linear (the harness timeout
 * catches a quadratic regression on the larger sizes). */
TEST(parse_large_requests_in_chunks)
{
    struct resp_parser p;
    struct resp_limits lim;
    struct resp_argv argv;
    resp_parser_init(&p);
    resp_limits_default(&lim);
    resp_argv_init(&argv);

    size_t bulk = 32u << 20;
    size_t total = 64 + bulk;
    char *buf = rc_malloc(total);
    int hdr = snprintf(buf, 64, "*2\r\n$3\r\nSET\r\n$%zu\r\n", bulk);
    memset(buf + hdr, 'v', bulk);
    memcpy(buf + hdr + bulk, "\r\n", 2);
    size_t n = (size_t)hdr + bulk + 2, used = 0;
    int rc = RC_EAGAIN;
    for (size_t have = 0; have < n;) {
        have = have + 65536 < n ? have + 65536 : n;
        rc = resp_parse(&p, &lim, buf, have, &argv, &used);
        if (have < n)
            CHECK_EQ(rc, RC_EAGAIN);
    }
    CHECK_OK(rc);
    CHECK_EQ(used, n);
    CHECK_EQ(argv.args[1].len, bulk);

    /* The size hint names the length at which the big bulk completes. */
    CHECK_EQ(resp_parse(&p, &lim, buf, 3, &argv, &used), RC_EAGAIN);
    CHECK_EQ(resp_parse_wanted(&p), 0);
    CHECK_EQ(resp_parse(&p, &lim, buf, (size_t)hdr + 10, &argv, &used), RC_EAGAIN);
    CHECK_EQ(resp_parse_wanted(&p), n);
    resp_parser_init(&p);
    rc_free(buf);

    /* 200,000 one-byte arguments, fed 1000 bytes at a time. */
    size_t args = 200000;
    buf = rc_malloc(32 + args * 7);
    size_t len = (size_t)snprintf(buf, 32, "*%zu\r\n", args);
    for (size_t i = 0; i < args; i++) {
        memcpy(buf + len, "$1\r\nx\r\n", 7);
        buf[len + 4] = (char)('a' + i % 26);
        len += 7;
    }
    for (size_t have = 0; have < len;) {
        have = have + 1000 < len ? have + 1000 : len;
        rc = resp_parse(&p, &lim, buf, have, &argv, &used);
        if (have < len)
            CHECK_EQ(rc, RC_EAGAIN);
    }
    CHECK_OK(rc);
    CHECK_EQ(argv.count, args);
    CHECK_EQ(argv.args[args - 1].ptr[0], 'a' + (args - 1) % 26);
    rc_free(buf);
    resp_argv_free(&argv);
}

/* ---------------------------------------------------------------------------------------- */
/* Parser: inline quoting (answers from redis-server 7.0.15: EVAL "return ARGV" / ECHO)      */
/* ---------------------------------------------------------------------------------------- */

TEST(parse_inline_quoting)
{
    static const struct request cases[] = {
        {"ECHO \"a\\x41\\n\"\n", 0, {"ECHO", "aA\n"}, {0}},
        {"ECHO 'a\\'b'\n", 0, {"ECHO", "a'b"}, {0}},
        {"ECHO \"\\xZZ\"\n", 0, {"ECHO", "xZZ"}, {0}},
        {"ECHO \"\\q\\t\\r\\b\\a\\\\\\\"\"\n", 0, {"ECHO", "q\t\r\b\a\\\""}, {0}},
        {"ECHO 'a\\nb'\n", 0, {"ECHO", "a\\nb"}, {0}},
        {"ECHO ''\n", 0, {"ECHO", ""}, {0}},
        {"ECHO \"\"\n", 0, {"ECHO", ""}, {0}},
        {"ECHO a\"b c\"\n", 0, {"ECHO", "ab c"}, {0}},
        {"ECHO \"a\" \"b\"\n", 0, {"ECHO", "a", "b"}, {0}},
        {"ECHO \"a\"\tb\n", 0, {"ECHO", "a", "b"}, {0}},
        {"ECHO \"a\"\x0b"
         "b\n",
         0,
         {"ECHO", "a", "b"},
         {0}},
        /* \v and \f are blanks between arguments but do not end an unquoted one. */
        {"\x0b"
         "ECHO\x0b"
         "ab\n",
         0,
         {"ECHO\x0b"
          "ab"},
         {0}},
        {"ECHO a\rb\r\n", 0, {"ECHO", "a", "b"}, {0}},
        {"ECHO \"\\x4a\\x4B\"\n", 0, {"ECHO", "JK"}, {0}},
        {"ECHO \"\\x4\"\n", 0, {"ECHO", "x4"}, {0}},
        {"  \t \r\n", 0, {NULL}, {0}},
        {"ECHO a\0b\n", 9, {"ECHO", "a\0b"}, {0, 3}},
    };
    struct resp_argv argv;
    resp_argv_init(&argv);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t used, n = wire_len(&cases[i]);
        CHECK_OK(parse_once(cases[i].wire, n, &argv, &used, NULL));
        CHECK_EQ(used, n);
        check_args(&cases[i], &argv);
    }
    resp_argv_free(&argv);
}

TEST(parse_inline_unbalanced_quotes)
{
    static const char *cases[] = {
        "ECHO \"abc\"d\n", "ECHO \"abc\r\n", "ECHO 'abc\n", "ECHO \"a\"\"b\"\n",
        "ECHO 'a'b\n",     "ECHO \"a\\\"\n", "ECHO \"\n",   "\"\n",
    };
    struct resp_argv argv;
    resp_argv_init(&argv);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t used;
        const char *err;
        CHECK_EQ(parse_once(cases[i], strlen(cases[i]), &argv, &used, &err), RC_EPROTO);
        CHECK_STR(err, "Protocol error: unbalanced quotes in request");
    }
    resp_argv_free(&argv);
}

/* ---------------------------------------------------------------------------------------- */
/* Parser: errors (texts as sent by redis-server 7.0.15, without "-ERR ")                    */
/* ---------------------------------------------------------------------------------------- */

struct bad_request {
    const char *wire;
    const char *error;
};

static const struct bad_request bad_requests[] = {
    {"*\r\n", "Protocol error: invalid multibulk length"},
    {"*x\r\n", "Protocol error: invalid multibulk length"},
    {"*+1\r\n", "Protocol error: invalid multibulk length"},
    {"*01\r\n", "Protocol error: invalid multibulk length"},
    {"*00\r\n", "Protocol error: invalid multibulk length"},
    {"*-0\r\n", "Protocol error: invalid multibulk length"},
    {"* 1\r\n", "Protocol error: invalid multibulk length"},
    {"*1 \r\n", "Protocol error: invalid multibulk length"},
    {"*3000000000\r\n", "Protocol error: invalid multibulk length"},
    {"*1048577\r\n", "Protocol error: invalid multibulk length"},
    {"*99999999999999999999999\r\n", "Protocol error: invalid multibulk length"},
    {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$-0\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$04\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$+4\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$ 4\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$4 \r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$9999999999999999999999\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\nx4\r\n", "Protocol error: expected '$', got 'x'"},
    {"*1\r\n:4\r\n", "Protocol error: expected '$', got ':'"},
    {"*1\r\n\r\r\n", "Protocol error: expected '$', got ' '"},
    {"*1\r\n\n\r\n", "Protocol error: expected '$', got ' '"},
    {"*1\r\n\xff\r\n", "Protocol error: expected '$', got '\xff'"},
    {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "Protocol error: expected '$', got 'f'"},
    /* Wrong length: the data is taken as told, then the next header is misplaced. */
    {"*2\r\n$3\r\nabcd\r\n$1\r\nx\r\n", "Protocol error: expected '$', got '\n'"},
};

TEST(parse_errors_match_redis)
{
    struct resp_argv argv;
    resp_argv_init(&argv);
    for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; i++) {
        const char *wire = bad_requests[i].wire;
        const char *want = bad_requests[i].error;
        char fixed[64];
        /* A LF shown in an error would be a space on the wire; compare what is sent. */
        snprintf(fixed, sizeof fixed, "%s", want);
        for (char *c = fixed; *c; c++)
            if (*c == '\n')
                *c = ' ';
        size_t used;
        const char *err;
        int rc = parse_once(wire, strlen(wire), &argv, &used, &err);
        CHECK_MSG(rc == RC_EPROTO, "case %zu: rc %d", i, rc);
        CHECK_STR(err, fixed);

        /* The same error, whatever the chunking. */
        struct resp_parser p;
        struct resp_limits lim;
        resp_parser_init(&p);
        resp_limits_default(&lim);
        rc = RC_EAGAIN;
        for (size_t k = 1; k <= strlen(wire) && rc == RC_EAGAIN; k++)
            rc = resp_parse(&p, &lim, wire, k, &argv, &used);
        CHECK_EQ(rc, RC_EPROTO);
        CHECK_STR(resp_parser_error(&p), fixed);
    }
    resp_argv_free(&argv);
}

/* Incomplete input is "need more", not an error, as in Redis. */
TEST(parse_incomplete_is_need_more)
{
    static const char *cases[] = {
        "*",
        "*1",
        "*1\r",
        "*1\r\n$",
        "*1\r\n$4\r",
        "*1\r\n$4\r\nPING",
        "*1\r\n$4\r\nPING\r",
        "*2\r\n$1\r\na\r\n",
        "*1\r\nfoo",
        "PING",
        "PING\r",
        "*1\r\n$536870912\r\n",
        "*2147483647\r\n",
    };
    struct resp_argv argv;
    resp_argv_init(&argv);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t used;
        struct resp_parser p;
        struct resp_limits lim;
        resp_parser_init(&p);
        resp_limits_default(&lim);
        lim.max_multibulk_count = UINT64_MAX; /* Redis 7's own limit: INT_MAX */
        CHECK_EQ(resp_parse(&p, &lim, cases[i], strlen(cases[i]), &argv, &used), RC_EAGAIN);
    }
    resp_argv_free(&argv);
}

/* ---------------------------------------------------------------------------------------- */
/* Parser: limits and memory                                                                 */
/* ---------------------------------------------------------------------------------------- */

static int parse_with(const struct resp_limits *lim, const char *buf, size_t len,
                      struct resp_argv *argv, const char **error)
{
    struct resp_parser p;
    resp_parser_init(&p);
    size_t used;
    int rc = resp_parse(&p, lim, buf, len, argv, &used);
    static char saved[64];
    snprintf(saved, sizeof saved, "%s", resp_parser_error(&p));
    *error = saved;
    return rc;
}

TEST(parse_limits_configurable)
{
    struct resp_limits lim;
    struct resp_argv argv;
    const char *err;
    resp_limits_default(&lim);
    resp_argv_init(&argv);

    CHECK_EQ(parse_with(&lim, "*1048576\r\n", 10, &argv, &err), RC_EAGAIN);
    lim.max_multibulk_count = 3;
    CHECK_EQ(parse_with(&lim, "*3\r\n", 4, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, "*4\r\n", 4, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: invalid multibulk length");
    lim.max_multibulk_count = UINT64_MAX; /* clamped to INT_MAX as in Redis 7 */
    CHECK_EQ(parse_with(&lim, "*2147483647\r\n", 13, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, "*2147483648\r\n", 13, &argv, &err), RC_EPROTO);

    resp_limits_default(&lim);
    lim.max_bulk_len_bytes = 5;
    CHECK_EQ(parse_with(&lim, "*1\r\n$5\r\nhello\r\n", 15, &argv, &err), 0);
    CHECK_EQ(parse_with(&lim, "*1\r\n$6\r\n", 8, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: invalid bulk length");

    /* Before AUTH, Redis allows 10 arguments of 16384 bytes. */
    resp_limits_default(&lim);
    lim.unauthenticated = 1;
    CHECK_EQ(parse_with(&lim, "*10\r\n$16384\r\n", 13, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, "*11\r\n", 5, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: unauthenticated multibulk length");
    CHECK_EQ(parse_with(&lim, "*10\r\n$16385\r\n", 13, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: unauthenticated bulk length");
    CHECK_EQ(parse_with(&lim, "*10\r\n$-1\r\n", 10, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: invalid bulk length");
    resp_argv_free(&argv);
}

TEST(parse_line_length_limits)
{
    struct resp_limits lim;
    struct resp_argv argv;
    const char *err;
    resp_limits_default(&lim);
    resp_argv_init(&argv);
    size_t max = RESP_INLINE_MAX_SIZE;
    char *buf = rc_malloc(max + 16);

    /* Inline: a line of max bytes is fine, one more byte without '\n' is refused. */
    memset(buf, 'a', max + 16);
    CHECK_EQ(parse_with(&lim, buf, max, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, buf, max + 1, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: too big inline request");
    buf[max] = '\n';
    CHECK_EQ(parse_with(&lim, buf, max + 1, &argv, &err), 0);
    CHECK_EQ(argv.count, 1);
    CHECK_EQ(argv.args[0].len, max);
    buf[max] = 'a';
    buf[max + 1] = '\n'; /* a line of max + 1 bytes, even if all of it is here */
    CHECK_EQ(parse_with(&lim, buf, max + 2, &argv, &err), RC_EPROTO);

    /* Header lines. */
    memset(buf, '1', max + 16);
    buf[0] = '*';
    CHECK_EQ(parse_with(&lim, buf, max, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, buf, max + 1, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: too big mbulk count string");
    memcpy(buf, "*1\r\n$", 5);
    CHECK_EQ(parse_with(&lim, buf, max + 4, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, buf, max + 5, &argv, &err), RC_EPROTO);
    CHECK_STR(err, "Protocol error: too big bulk count string");

    /* A smaller configured limit applies the same way. */
    lim.max_inline_bytes = 4;
    CHECK_EQ(parse_with(&lim, "PING\n", 5, &argv, &err), 0);
    CHECK_EQ(parse_with(&lim, "PINGS", 5, &argv, &err), RC_EPROTO);
    rc_free(buf);
    resp_argv_free(&argv);
}

/* Huge declared counts and lengths reserve nothing: only arguments that have arrived. */
TEST(parse_huge_declared_sizes_allocate_nothing)
{
    struct resp_limits lim;
    struct resp_argv argv;
    const char *err;
    resp_limits_default(&lim);
    lim.max_multibulk_count = UINT64_MAX;
    lim.max_bulk_len_bytes = UINT64_MAX;
    resp_argv_init(&argv);

    unsigned long before = rc_alloc_count();
    CHECK_EQ(parse_with(&lim, "*2000000000\r\n", 13, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, "*2\r\n$999999999999\r\nabc", 23, &argv, &err), RC_EAGAIN);
    CHECK_EQ(parse_with(&lim, "*2\r\n$9223372036854775807\r\n", 26, &argv, &err), RC_EAGAIN);
    CHECK_EQ(rc_alloc_count(), before);
    CHECK(argv.args == NULL);

    /* One argument arrived out of two billion announced: a small array. */
    CHECK_EQ(parse_with(&lim, "*2000000000\r\n$1\r\na\r\n", 20, &argv, &err), RC_EAGAIN);
    CHECK(argv.cap <= 8);
    /* And a 3-argument command gets room for 3, not 8. */
    resp_argv_free(&argv);
    CHECK_EQ(parse_with(&lim, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", 25, &argv, &err), 0);
    CHECK_EQ(argv.cap, 3);
    resp_argv_free(&argv);
}

TEST(parse_survives_allocation_failure)
{
    const char *wire = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    const char *inl = "SET \"k\" v\r\n";
    struct resp_parser p;
    struct resp_limits lim;
    struct resp_argv argv;
    resp_parser_init(&p);
    resp_limits_default(&lim);
    resp_argv_init(&argv);
    size_t used;
    rc_alloc_fail_after(0);
    CHECK_EQ(resp_parse(&p, &lim, wire, strlen(wire), &argv, &used), RC_ENOMEM);
    rc_alloc_fail_after(-1);
    CHECK_OK(resp_parse(&p, &lim, wire, strlen(wire), &argv, &used));
    CHECK_EQ(argv.count, 3);
    CHECK_MEM(argv.args[2].ptr, argv.args[2].len, "v", 1);
    resp_argv_free(&argv);

    for (long n = 0; n < 2; n++) {
        rc_alloc_fail_after(n);
        CHECK_EQ(resp_parse(&p, &lim, inl, strlen(inl), &argv, &used), RC_ENOMEM);
        rc_alloc_fail_after(-1);
        CHECK_OK(resp_parse(&p, &lim, inl, strlen(inl), &argv, &used));
        CHECK_EQ(argv.count, 3);
        CHECK_MEM(argv.args[1].ptr, argv.args[1].len, "k", 1);
        resp_argv_free(&argv);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Reply writer                                                                             */
/* ---------------------------------------------------------------------------------------- */

#define CHECK_REPLY(b, text)                                                                       \
    do {                                                                                           \
        CHECK_MEM((b)->data, (b)->len, text, sizeof(text) - 1);                                    \
        (b)->len = 0;                                                                              \
    } while (0)

TEST(reply_writer_bytes)
{
    struct resp_buf b;
    resp_buf_init(&b);
    CHECK_OK(resp_add_status(&b, "OK"));
    CHECK_REPLY(&b, "+OK\r\n");
    CHECK_OK(resp_add_simple(&b, "a\r\nb", 4));
    CHECK_REPLY(&b, "+a  b\r\n");
    CHECK_OK(resp_add_error(&b, "ERR syntax error", 16));
    CHECK_REPLY(&b, "-ERR syntax error\r\n");
    CHECK_OK(resp_add_error(&b, "ERR bad\r\nthing\n\r\n", 17));
    CHECK_REPLY(&b, "-ERR bad  thing\r\n");
    CHECK_OK(resp_add_errorf(&b, "ERR unknown command '%s', with args beginning with: ", "fo\ro"));
    CHECK_REPLY(&b, "-ERR unknown command 'fo o', with args beginning with: \r\n");
    CHECK_OK(resp_add_int(&b, 0));
    CHECK_OK(resp_add_int(&b, -42));
    CHECK_OK(resp_add_int(&b, INT64_MIN));
    CHECK_OK(resp_add_int(&b, INT64_MAX));
    CHECK_REPLY(&b, ":0\r\n:-42\r\n:-9223372036854775808\r\n:9223372036854775807\r\n");
    CHECK_OK(resp_add_bulk(&b, "a\0\r\nb", 5));
    CHECK_REPLY(&b, "$5\r\na\0\r\nb\r\n");
    CHECK_OK(resp_add_bulk(&b, NULL, 0));
    CHECK_REPLY(&b, "$0\r\n\r\n");
    CHECK_OK(resp_add_bulk_cstr(&b, "hello"));
    CHECK_OK(resp_add_bulk_int(&b, -7));
    CHECK_REPLY(&b, "$5\r\nhello\r\n$2\r\n-7\r\n");
    CHECK_OK(resp_add_null(&b));
    CHECK_OK(resp_add_null_array(&b));
    CHECK_OK(resp_add_empty_array(&b));
    CHECK_OK(resp_add_array(&b, 2));
    CHECK_REPLY(&b, "$-1\r\n*-1\r\n*0\r\n*2\r\n");
    CHECK_OK(resp_add_verbatim(&b, "txt", "# Server", 8));
    CHECK_REPLY(&b, "$8\r\n# Server\r\n");
    resp_buf_free(&b);
}

/* A buffer with a limit refuses to grow past it, as out of memory, and from then on refuses
 * every append (a truncated reply must never be sent: the caller closes the client). */
TEST(reply_buffer_limit)
{
    struct resp_buf b;
    resp_buf_init(&b);
    b.limit = 16;
    CHECK_OK(resp_add_bulk(&b, "0123456", 7)); /* 13 bytes */
    CHECK(resp_add_bulk(&b, "xy", 2) == RC_ENOMEM);
    CHECK(b.over && b.len == 13);
    CHECK(resp_add_status(&b, "") == RC_ENOMEM); /* 3 bytes would fit, but it is over */
    CHECK_EQ_U(b.len, 13);
    resp_buf_free(&b);
    CHECK(b.limit == 16 && !b.over && b.len == 0); /* the limit is a setting: it stays */
    CHECK_OK(resp_add_bulk(&b, "012345678", 9));   /* 15 bytes */
    resp_buf_free(&b);
}

/* Long and huge error messages through resp_add_errorf's second path. */
TEST(reply_errorf_long_message)
{
    struct resp_buf b;
    resp_buf_init(&b);
    char arg[600];
    memset(arg, 'x', sizeof arg - 1);
    arg[sizeof arg - 1] = '\0';
    CHECK_OK(resp_add_errorf(&b, "ERR %s\n", arg));
    CHECK_EQ(b.len, 1 + 4 + 599 + 2);
    CHECK_MEM(b.data + b.len - 3, 3, "x\r\n", 3);
    resp_buf_free(&b);
}

/* Redis 7.0: INCRBYFLOAT replies (checked with redis-server 7.0.15) and ZSCORE-like doubles. */
TEST(reply_doubles)
{
    struct resp_buf b;
    resp_buf_init(&b);
    CHECK_OK(resp_add_bulk_long_double(&b, 10.5L + 0.1L));
    CHECK_REPLY(&b, "$4\r\n10.6\r\n");
    CHECK_OK(resp_add_bulk_long_double(&b, 3000.0L));
    CHECK_REPLY(&b, "$4\r\n3000\r\n");
    CHECK_OK(resp_add_bulk_long_double(&b, -1e-20L));
    CHECK_REPLY(&b, "$1\r\n0\r\n");
    CHECK_EQ(resp_add_bulk_long_double(&b, NAN), RC_EINVAL);
    CHECK_EQ(b.len, 0);
    CHECK_OK(resp_add_double(&b, 1.1));
    CHECK_REPLY(&b, "$18\r\n1.1000000000000001\r\n");
    CHECK_OK(resp_add_double(&b, -INFINITY));
    CHECK_REPLY(&b, "$4\r\n-inf\r\n");
    CHECK_OK(resp_add_double(&b, 3));
    CHECK_REPLY(&b, "$1\r\n3\r\n");
    resp_buf_free(&b);
}

TEST(reply_buffer_growth_failure_and_consume)
{
    struct resp_buf b;
    resp_buf_init(&b);
    CHECK_OK(resp_add_status(&b, "OK"));
    size_t cap = resp_buf_memory(&b);
    CHECK(cap >= 5);
    char big[1000];
    memset(big, 'z', sizeof big);
    rc_alloc_fail_after(0);
    CHECK_EQ(resp_add_bulk(&b, big, sizeof big), RC_ENOMEM);
    CHECK_EQ(resp_add_errorf(&b, "ERR %.*s", 900, big), RC_ENOMEM);
    rc_alloc_fail_after(-1);
    CHECK_REPLY(&b, "+OK\r\n"); /* unchanged: no half reply */
    for (int i = 0; i < 100; i++)
        CHECK_OK(resp_add_int(&b, i));
    CHECK(resp_buf_memory(&b) >= b.len);
    resp_buf_consume(&b, 4 * 10); /* ":0\r\n" .. ":9\r\n" */
    CHECK_MEM(b.data, 5, ":10\r\n", 5);
    resp_buf_consume(&b, b.len + 1);
    CHECK_EQ(b.len, 0);
    CHECK_OK(resp_buf_append(&b, "+PONG\r\n", 7));
    CHECK_REPLY(&b, "+PONG\r\n");
    resp_buf_free(&b);
}

/* ---------------------------------------------------------------------------------------- */
/* Numbers (accept/refuse lists follow Redis's string2ll / string2ld)                        */
/* ---------------------------------------------------------------------------------------- */

TEST(string2ll_like_redis)
{
    static const struct {
        const char *s;
        int ok;
        int64_t v;
    } cases[] = {
        {"0", 1, 0},
        {"1", 1, 1},
        {"-1", 1, -1},
        {"9223372036854775807", 1, INT64_MAX},
        {"-9223372036854775808", 1, INT64_MIN},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"18446744073709551616", 0, 0},
        {"99999999999999999999999", 0, 0},
        {"-0", 0, 0},
        {"007", 0, 0},
        {"00", 0, 0},
        {"", 0, 0},
        {"-", 0, 0},
        {"+1", 0, 0},
        {" 1", 0, 0},
        {"1 ", 0, 0},
        {"1a", 0, 0},
        {"0x10", 0, 0},
        {"1.0", 0, 0},
        {"--1", 0, 0},
        {"12345", 1, 12345},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t v = -99;
        int rc = resp_string2ll(cases[i].s, strlen(cases[i].s), &v);
        CHECK_MSG((rc == 0) == cases[i].ok, "'%s': rc %d", cases[i].s, rc);
        if (cases[i].ok)
            CHECK_EQ(v, cases[i].v);
    }
    /* Length-delimited: bytes past len are not looked at. */
    int64_t v;
    CHECK_OK(resp_string2ll("12x", 2, &v));
    CHECK_EQ(v, 12);
    CHECK_OK(resp_string2ll("5", 1, NULL));
}

TEST(ll2str_round_trips)
{
    char buf[RESP_LL_STR_SIZE];
    CHECK_EQ(resp_ll2str(buf, 0), 1);
    CHECK_STR(buf, "0");
    CHECK_EQ(resp_ll2str(buf, INT64_MIN), 20);
    CHECK_STR(buf, "-9223372036854775808");
    CHECK_EQ(resp_ll2str(buf, INT64_MAX), 19);
    CHECK_STR(buf, "9223372036854775807");
    uint64_t st = test_seed(11);
    for (int i = 0; i < 10000; i++) {
        int64_t x = (int64_t)test_rand(&st) >> (test_rand(&st) % 64);
        size_t n = resp_ll2str(buf, x);
        char want[32];
        snprintf(want, sizeof want, "%" PRId64, x);
        CHECK_STR(buf, want);
        int64_t back;
        CHECK_OK(resp_string2ll(buf, n, &back));
        CHECK_EQ(back, x);
    }
}

TEST(string2ld_like_redis)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"1", 1},      {"-1.5", 1}, {"0.1", 1},  {"1e10", 1},    {"1.", 1},     {".5", 1},
        {"0x10", 1},   {"inf", 1},  {"-inf", 1}, {"1e-4940", 1}, {"", 0},       {" 1", 0},
        {"1 ", 0},     {"\t1", 0},  {"nan", 0},  {"NaN", 0},     {"1e4933", 0}, {"1e-5000", 0},
        {"5e", 1 - 1}, {"abc", 0},  {"1,5", 0},  {"+1", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long double v;
        int rc = resp_string2ld(cases[i].s, strlen(cases[i].s), &v);
        CHECK_MSG((rc == 0) == cases[i].ok, "'%s': rc %d", cases[i].s, rc);
    }
    long double v;
    CHECK_OK(resp_string2ld("0x10", 4, &v));
    CHECK(v == 16.0L);
    CHECK_EQ(resp_string2ld("1\0", 2, &v), RC_EINVAL);
    char longnum[RESP_LD_STR_SIZE + 1];
    memset(longnum, '1', sizeof longnum);
    CHECK_EQ(resp_string2ld(longnum, RESP_LD_STR_SIZE, &v), RC_EINVAL);
}

TEST(ld2str_like_redis_incrbyfloat)
{
    char buf[RESP_LD_STR_SIZE];
    static const struct {
        long double v;
        const char *want;
    } cases[] = {
        {10.6L, "10.6"}, {3000.0L, "3000"},
        {0.0L, "0"},     {-0.0L, "0"},
        {1e-20L, "0"},   {-1e-20L, "0"},
        {-2.5L, "-2.5"}, {16.0L, "16"},
        {0.1L, "0.1"},   {1e17L, "100000000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = resp_ld2str(buf, sizeof buf, cases[i].v);
        CHECK_STR(buf, cases[i].want);
        CHECK_EQ(n, strlen(cases[i].want));
    }
    CHECK_EQ(resp_ld2str(buf, sizeof buf, INFINITY), 3);
    CHECK_STR(buf, "inf");
    CHECK_EQ(resp_ld2str(buf, sizeof buf, -INFINITY), 4);
    CHECK_STR(buf, "-inf");
    /* The largest long double still fits (Redis's buffer size). */
    size_t n = resp_ld2str(buf, sizeof buf, LDBL_MAX);
    CHECK(n > 4900);
    CHECK_EQ(resp_ld2str(buf, 4, 1234.5L), 0);
    /* End to end like INCRBYFLOAT on a missing key: parse, add to 0, format. Expected
     * strings are redis-server 7.0.15's replies. */
    static const struct {
        const char *in, *want;
    } incr[] = {
        {"1.1", "1.1"},
        {"-2.5", "-2.5"},
        {"1e17", "100000000000000000"},
        {"1e-4940", "0"},
        {"0x10", "16"},
        {"0x1p3", "8"},
        {"+1", "1"},
        {".5", "0.5"},
        {"1e-4950", "0"},
        {"123456789.123456789", "123456789.12345678899873747"},
        {"1e308", "9999999999999999999668587965584564566056009984741556720779704799492173486883"
                  "8061"},
    };
    for (size_t i = 0; i < sizeof incr / sizeof *incr; i++) {
        long double v;
        CHECK_OK(resp_string2ld(incr[i].in, strlen(incr[i].in), &v));
        n = resp_ld2str(buf, sizeof buf, 0.0L + v);
        size_t want = strlen(incr[i].want);
        CHECK_MEM(buf, n < want ? n : want, incr[i].want, want);
    }
    CHECK_EQ(resp_ld2str(buf, sizeof buf, 1e308L), 308);
}

/* ---------------------------------------------------------------------------------------- */
/* Glob                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Expected answers: redis-server 7.0.15, KEYS pattern over a database of the strings. */
static const struct {
    const char *pattern;
    const char *str;
    int match;
} glob_cases[] = {
    {"*", "anything", 1},
    {"*", "", 0},
    {"", "", 1},
    {"", "a", 0},
    {"a*", "a", 1},
    {"a*", "abc", 1},
    {"*c", "abc", 1},
    {"*b*", "abc", 1},
    {"*d*", "abc", 0},
    {"h?llo", "hello", 1},
    {"h?llo", "hllo", 0},
    {"h*llo", "hllo", 1},
    {"h[ae]llo", "hallo", 1},
    {"h[ae]llo", "hillo", 0},
    {"h[^e]llo", "hallo", 1},
    {"h[^e]llo", "hello", 0},
    {"h[a-b]llo", "hbllo", 1},
    {"h[a-b]llo", "hcllo", 0},
    {"h[b-a]llo", "hallo", 1},
    {"h\\*llo", "h*llo", 1},
    {"h\\*llo", "hello", 0},
    {"\\", "\\", 1},
    {"a\\", "a\\", 1},
    {"[abc", "b", 1},
    {"[abc", "d", 0},
    {"x[abc", "xa", 1},
    {"[a-]", "]", 1},
    {"[a-]", "b", 0},
    {"[a-]", "a", 1},
    {"[\xe9-A]", "-", 1}, /* signed-char order, as Redis on x86-64 */
    {"[\xe9-A]", "b", 0},
    {"[a-]", "-", 0},
    {"[\\]]", "]", 1},
    {"[\\-]", "-", 1},
    {"[]]", "]", 0},
    {"[]", "a", 0},
    {"[^]", "a", 1},
    {"[^", "a", 1},
    {"[", "a", 0},
    {"**a", "a", 1},
    {"a**", "a", 1},
    {"a*b*c", "aXbYc", 1},
    {"a*b*c", "aXbYd", 0},
    {"*a*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0},
    {"?", "", 0},
    {"??", "a", 0},
    {"*?", "a", 1},
    {"*?*", "ab", 1},
    {"[a-c]*", "cat", 1},
    {"user:*:name", "user:42:name", 1},
    {"user:*:name", "user:42:age", 0},
};

TEST(glob_matches_like_redis)
{
    for (size_t i = 0; i < sizeof glob_cases / sizeof *glob_cases; i++) {
        const char *p = glob_cases[i].pattern, *s = glob_cases[i].str;
        int got = resp_glob_match(p, strlen(p), s, strlen(s), 0);
        CHECK_MSG(got == glob_cases[i].match, "'%s' ~ '%s': %d", p, s, got);
    }
}

TEST(glob_nocase)
{
    CHECK_EQ(resp_glob_match("HeLLo", 5, "hello", 5, 1), 1);
    CHECK_EQ(resp_glob_match("HeLLo", 5, "hello", 5, 0), 0);
    CHECK_EQ(resp_glob_match("h[A-C]t", 7, "hbt", 3, 1), 1);
    CHECK_EQ(resp_glob_match("h[a-c]t", 7, "hBt", 3, 1), 1);
    CHECK_EQ(resp_glob_match("h[X]t", 5, "hxt", 3, 1), 1);
    CHECK_EQ(resp_glob_match("h\\Xt", 4, "hxt", 3, 1), 1);
    /* An escape inside a class compares exactly even with nocase, as in Redis. */
    CHECK_EQ(resp_glob_match("h[\\X]t", 6, "hxt", 3, 1), 0);
    /* Binary: NUL and high bytes are ordinary. */
    CHECK_EQ(resp_glob_match("a?c", 3, "a\0c", 3, 0), 1);
    CHECK_EQ(resp_glob_match("[\x80-\xff]", 5, "\xe9", 1, 0), 1);
    CHECK_EQ(resp_glob_match("[\x80-\xff]", 5, "a", 1, 0), 0);
}

/* The adversarial patterns finish in O(plen * slen) steps (no clock: count the steps). */
TEST(glob_adversarial_patterns_are_polynomial)
{
    static char str[20001], pat[2001];
    memset(str, 'a', 20000);
    for (size_t i = 0; i < 1000; i++) {
        pat[2 * i] = '*';
        pat[2 * i + 1] = 'a';
    }
    pat[2000] = 'b';
    uint64_t steps = 0;
    CHECK_EQ(resp_glob_match_counted(pat, 2001, str, 20000, 0, &steps), 0);
    CHECK_MSG(steps <= 2002ull * 20001, "%" PRIu64 " steps", steps);

    /* A pattern that does match, with many stars and a late decision. */
    str[19999] = 'b';
    steps = 0;
    CHECK_EQ(resp_glob_match_counted(pat, 2001, str, 20000, 0, &steps), 1);
    CHECK(steps <= 2002ull * 20001);

    /* Random patterns of '*', '?', 'a', 'b' against random strings stay within the bound. */
    uint64_t st = test_seed(5);
    for (int t = 0; t < 2000; t++) {
        char p[40], s[200];
        size_t pl = test_rand(&st) % sizeof p, sl = 1 + test_rand(&st) % sizeof s;
        for (size_t i = 0; i < pl; i++)
            p[i] = "*?ab"[test_rand(&st) % 4];
        for (size_t i = 0; i < sl; i++)
            s[i] = "ab"[test_rand(&st) % 2];
        steps = 0;
        resp_glob_match_counted(p, pl, s, sl, 0, &steps);
        CHECK(steps <= (pl + 1) * (sl + 1));
    }
}

/* Redis gives up after 1000 nested '*' groups; a final group does not count. */
TEST(glob_star_nesting_limit_like_redis)
{
    static char pat[4000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        pat[n++] = '*';
        pat[n++] = 'a';
    }
    CHECK_EQ(resp_glob_match(
                 pat, n, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                 70, 0),
             0); /* needs 1000 a's */
    static char str[1100];
    memset(str, 'a', sizeof str);
    CHECK_EQ(resp_glob_match(pat, n, str, 1000, 0), 1); /* 1000 groups: allowed */
    pat[n] = '*';
    CHECK_EQ(resp_glob_match(pat, n + 1, str, 1000, 0), 1); /* a final '*' does not count */
    pat[n] = '*';
    pat[n + 1] = 'a';
    CHECK_EQ(resp_glob_match(pat, n + 2, str, 1001, 0), 0); /* 1001 groups: refused */
    CHECK_EQ(resp_glob_match(pat, n + 2, str, 0, 0), 0);
}

/*
 * fuzz_resp.c — libFuzzer target for the RESP request parser (src/resp/parse.c).
 *
 * Input layout: byte 0 picks the limits (defaults, tiny limits, or unauthenticated); bytes
 * 1-4 seed the chunking; the rest is what a client sends. The stream is parsed twice:
 *
 *   1. whole: everything in one buffer, commands parsed one after another;
 *   2. fed: the bytes arrive in random-sized chunks into a buffer that is reallocated
 *      (and so moves) on every read, parsing after each chunk until "need more", dropping
 *      consumed bytes, as the server does.
 *
 * Both must yield the same commands, then the same final outcome (the same error text, or
 * "need more" with the same leftover). Every result must also keep the invariants:
 * 0 < consumed <= length, arguments inside the buffer (or the inline scratch), counts
 * within limits.
 */
#include "common/alloc.h"
#include "raftcask.h"
#include "resp/resp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS 4096

/* The commands of one run, flattened: each argument as its length and bytes. */
struct transcript {
    unsigned char *bytes;
    size_t len, cap;
    size_t commands;
    int final_rc;
    char final_error[64];
    size_t leftover; /* bytes not consumed at the end */
};

static void put(struct transcript *t, const void *data, size_t len)
{
    if (t->len + len > t->cap) {
        t->cap = (t->len + len) * 2 + 64;
        t->bytes = realloc(t->bytes, t->cap);
        if (!t->bytes)
            abort();
    }
    memcpy(t->bytes + t->len, data, len);
    t->len += len;
}

static void record(struct transcript *t, const struct resp_argv *argv)
{
    put(t, &argv->count, sizeof argv->count);
    for (size_t i = 0; i < argv->count; i++) {
        put(t, &argv->args[i].len, sizeof argv->args[i].len);
        put(t, argv->args[i].ptr, argv->args[i].len);
    }
    t->commands++;
}

static void check_result(const struct resp_limits *lim, const char *buf, size_t len,
                         const struct resp_argv *argv, size_t used)
{
    if (used == 0 || used > len)
        abort();
    if (buf[0] == '*' && argv->count > lim->max_multibulk_count)
        abort();
    for (size_t i = 0; i < argv->count; i++) {
        const char *a = argv->args[i].ptr;
        size_t n = argv->args[i].len;
        int in_buf = a >= buf && n <= used && a <= buf + used - n;
        int in_scratch = argv->scratch && a >= argv->scratch && n <= argv->scratch_cap &&
                         a <= argv->scratch + argv->scratch_cap - n;
        if (!in_buf && !in_scratch)
            abort();
        if (buf[0] == '*' && (!in_buf || n > lim->max_bulk_len_bytes))
            abort();
    }
}

static void finish(struct transcript *t, const struct resp_parser *p, int rc, size_t left)
{
    t->final_rc = rc;
    snprintf(t->final_error, sizeof t->final_error, "%s",
             rc == RC_EPROTO ? resp_parser_error(p) : "");
    t->leftover = left;
}

static void parse_whole(const struct resp_limits *lim, const char *data, size_t len,
                        struct transcript *t)
{
    struct resp_parser p;
    struct resp_argv argv;
    resp_parser_init(&p);
    resp_argv_init(&argv);
    size_t off = 0;
    int rc;
    for (;;) {
        size_t used;
        rc = resp_parse(&p, lim, data + off, len - off, &argv, &used);
        if (rc != 0 || t->commands == MAX_COMMANDS)
            break;
        check_result(lim, data + off, len - off, &argv, used);
        record(t, &argv);
        off += used;
    }
    finish(t, &p, rc, len - off);
    resp_argv_free(&argv);
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void parse_fed(const struct resp_limits *lim, const char *data, size_t len, uint32_t seed,
                      struct transcript *t)
{
    struct resp_parser p;
    struct resp_argv argv;
    resp_parser_init(&p);
    resp_argv_init(&argv);
    char *buf = NULL;
    size_t have = 0, fed = 0;
    int rc = RC_EAGAIN;
    int stop = 0;
    while (!stop) {
        /* One read: 1 to 64 bytes, sometimes more, into a buffer that moves. */
        size_t chunk = 1 + next_rand(&seed) % (next_rand(&seed) % 4 == 0 ? 4096 : 64);
        if (chunk > len - fed)
            chunk = len - fed;
        char *moved = malloc(have + chunk + 1);
        if (!moved)
            abort();
        if (have)
            memcpy(moved, buf, have);
        memcpy(moved + have, data + fed, chunk);
        free(buf);
        buf = moved;
        have += chunk;
        fed += chunk;
        for (;;) {
            size_t used;
            rc = resp_parse(&p, lim, buf, have, &argv, &used);
            if (rc == RC_EAGAIN)
                break;
            if (rc != 0 || t->commands == MAX_COMMANDS) {
                stop = 1;
                break;
            }
            check_result(lim, buf, have, &argv, used);
            record(t, &argv);
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        if (fed == len)
            stop = 1;
    }
    finish(t, &p, rc, have);
    free(buf);
    resp_argv_free(&argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    struct resp_limits lim;
    resp_limits_default(&lim);
    switch (data[0] % 4) {
    case 1: /* tiny limits, so the fuzzer reaches every limit check */
        lim.max_bulk_len_bytes = 8;
        lim.max_multibulk_count = 4;
        lim.max_inline_bytes = 12;
        break;
    case 2:
        lim.unauthenticated = 1;
        break;
    case 3:
        lim.max_inline_bytes = 3;
        lim.max_multibulk_count = UINT64_MAX;
        break;
    }
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                    (uint32_t)data[4] << 24;
    const char *stream = (const char *)data + 5;
    size_t len = size - 5;

    struct transcript whole = {0}, fed = {0};
    parse_whole(&lim, stream, len, &whole);
    parse_fed(&lim, stream, len, seed, &fed);

    /* Both runs end having seen every byte (or at the same error): the outcome must not
     * depend on how the bytes were split into reads. */
    if (whole.commands != fed.commands || whole.len != fed.len ||
        (whole.len && memcmp(whole.bytes, fed.bytes, whole.len) != 0))
        abort();
    if (whole.final_rc != fed.final_rc || strcmp(whole.final_error, fed.final_error) != 0)
        abort();
    if (whole.final_rc == RC_EAGAIN && whole.leftover != fed.leftover)
        abort();
    free(whole.bytes);
    free(fed.bytes);
    return 0;
}

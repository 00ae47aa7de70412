/*
 * test.h — the unit-test harness of raftcask.
 *
 * A test file defines tests with TEST(name) { ... } and links with tests/unit/harness.c,
 * which runs each test in its own forked process with a deadline (TEST_TIMEOUT seconds,
 * default 120), so a crash, a hang or a leak (LeakSanitizer runs when the child exits) fails
 * that test alone. The last line printed is "N passed, N failed".
 *
 *   ./test_x            run every test
 *   ./test_x word       run the tests whose name contains word
 *
 * CHECK* macros report file:line and the values involved, then fail the test at once.
 * test_tmpdir() gives the running test a fresh directory, removed when the test ends.
 */
#ifndef RC_TEST_H
#define RC_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
/* A fresh directory for the running test (same path on every call within one test). */
const char *test_tmpdir(void);
/* Seed for randomised tests: TEST_SEED from the environment, else the given default. */
uint64_t test_seed(uint64_t fallback);
/* A small deterministic PRNG (splitmix64) for tests. */
uint64_t test_rand(uint64_t *state);
/* File helpers for crash tests; each fails the test on error. test_copy_dir copies the
 * regular files of from into to (created if needed), LOCK files excepted; test_remove_dir
 * removes a directory and the files in it; test_write_file replaces a file's contents. */
void test_copy_dir(const char *from, const char *to);
void test_remove_dir(const char *dir);
void test_write_file(const char *path, const void *data, size_t len);

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        test_register(#name, name);                                                                \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                     \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_)                                                                  \
            test_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %lld != %lld", #a, #b, check_a_,      \
                      check_b_);                                                                   \
    } while (0)

#define CHECK_EQ_U(a, b)                                                                           \
    do {                                                                                           \
        unsigned long long check_a_ = (unsigned long long)(a), check_b_ = (unsigned long long)(b); \
        if (check_a_ != check_b_)                                                                  \
            test_fail(__FILE__, __LINE__, "CHECK_EQ_U(%s, %s): %llu != %llu", #a, #b, check_a_,    \
                      check_b_);                                                                   \
    } while (0)

/* Compares two byte strings of given lengths. */
#define CHECK_MEM(a, alen, b, blen)                                                                \
    do {                                                                                           \
        size_t check_al_ = (size_t)(alen), check_bl_ = (size_t)(blen);                             \
        if (check_al_ != check_bl_ || memcmp((a), (b), check_al_) != 0)                            \
            test_fail(__FILE__, __LINE__, "CHECK_MEM(%s, %s): '%.*s' (%zu) != '%.*s' (%zu)", #a,   \
                      #b, (int)(check_al_ > 80 ? 80 : check_al_), (const char *)(a), check_al_,    \
                      (int)(check_bl_ > 80 ? 80 : check_bl_), (const char *)(b), check_bl_);       \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (strcmp(check_a_, check_b_) != 0)                                                       \
            test_fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): '%s' != '%s'", #a, #b, check_a_,     \
                      check_b_);                                                                   \
    } while (0)

/* Checks that an int-returning call returned 0, printing rc_strerror otherwise. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int check_rc_ = (expr);                                                                    \
        if (check_rc_ != 0)                                                                        \
            test_fail(__FILE__, __LINE__, "%s returned %d", #expr, check_rc_);                     \
    } while (0)

#endif

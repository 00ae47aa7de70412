/*
 * bench.h — what the C benchmarks share: a temporary directory removed on exit or failure,
 * die() for errors (a benchmark that goes on after an error measures nothing), and integer
 * settings from the environment. Each C benchmark is its own program and includes this once.
 */
#ifndef RC_BENCH_BENCH_H
#define RC_BENCH_BENCH_H

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char temp_root[4096]; /* removed by die() and at the end */

static inline int bench_remove_entry(const char *path, const struct stat *sb, int type,
                                     struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

static inline void remove_tree(const char *path)
{
    if (nftw(path, bench_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        fprintf(stderr, "bench: could not remove %s: %s\n", path, strerror(errno));
}

/* Prints where and why, removes temp_root, exits 1. */
static inline void die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
static inline void die_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "bench: FAILED at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (temp_root[0])
        remove_tree(temp_root);
    exit(1);
}
#define die(...) die_at(__FILE__, __LINE__, __VA_ARGS__)

/* The integer in environment variable name, fallback if unset; dies if outside [lo, hi]. */
static inline long env_long(const char *name, long fallback, long lo, long hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        die("%s=%s: expected an integer in [%ld, %ld]", name, s, lo, hi);
    return v;
}

#endif

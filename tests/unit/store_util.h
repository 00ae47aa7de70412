/* store_util.h — helpers shared by the store's test files (included, not linked). */
#ifndef RC_TEST_STORE_UTIL_H
#define RC_TEST_STORE_UTIL_H

#include "test.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "raftcask.h"
#include "store/record.h"
#include "store/store.h"

#include <stdio.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static int64_t test_clock_now = 1000000;
static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return test_clock_now;
}

static inline struct rc_store *open_store_with(const char *dir, uint64_t max_file_bytes,
                                               bool repair, bool atomic_revisions)
{
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.clock_ms = test_clock;
    if (max_file_bytes)
        o.max_file_bytes = max_file_bytes;
    o.repair = repair;
    o.atomic_revisions = atomic_revisions;
    struct rc_store *s = NULL;
    int rc = rc_store_open(dir, &o, &s);
    CHECK_MSG(rc == 0, "rc_store_open(%s) = %d (%s)", dir, rc, rc_strerror(rc));
    return s;
}

static inline struct rc_store *open_store_opts(const char *dir, uint64_t max_file_bytes,
                                               bool repair)
{
    return open_store_with(dir, max_file_bytes, repair, false);
}

/* A store whose revisions count only once committed (options.atomic_revisions). */
static inline struct rc_store *open_store_atomic(const char *dir, uint64_t max_file_bytes)
{
    return open_store_with(dir, max_file_bytes, false, true);
}

static inline struct rc_store *open_store(const char *dir)
{
    return open_store_opts(dir, 0, false);
}

static inline void put_str(struct rc_store *s, const char *k, const char *v, uint64_t rev)
{
    CHECK_OK(rc_store_put(s, k, strlen(k), v, strlen(v), 0, rev));
}

/* Checks that key k holds v (or is absent when v is NULL). */
static inline void check_value(struct rc_store *s, const char *k, const char *v)
{
    struct rc_buf b = {0};
    int rc = rc_store_get(s, k, strlen(k), &b, NULL);
    if (!v) {
        CHECK_MSG(rc == RC_ENOTFOUND, "key '%s': expected absent, got rc %d", k, rc);
    } else {
        CHECK_MSG(rc == 0, "key '%s': expected '%s', got rc %d", k, v, rc);
        CHECK_MEM(b.data, b.len, v, strlen(v));
    }
    rc_free(b.data);
}

/* Collects "k=v," for every key of a scan, for comparing whole contents. */
struct collect {
    char *text;
    size_t len, cap;
    size_t count;
};

static int collect_fn(const void *key, size_t klen, const void *value, size_t vlen,
                      const struct rc_item_meta *meta, void *ctx)
{
    struct collect *c = ctx;
    size_t need = klen + (value ? vlen : 0) + 4;
    if (c->len + need + 1 > c->cap) {
        c->cap = (c->len + need + 1) * 2;
        c->text = realloc(c->text, c->cap);
    }
    memcpy(c->text + c->len, key, klen);
    c->len += klen;
    if (value) {
        c->text[c->len++] = '=';
        memcpy(c->text + c->len, value, vlen);
        c->len += vlen;
    }
    c->text[c->len++] = ',';
    c->text[c->len] = '\0';
    c->count++;
    (void)meta;
    return 0;
}

/* The whole contents as "k=v,k=v,..."; caller frees. */
static inline char *dump_store(struct rc_store *s)
{
    struct collect c = {0};
    struct rc_store_range r = {.with_values = true};
    CHECK_OK(rc_store_scan(s, &r, collect_fn, &c));
    if (!c.text)
        c.text = calloc(1, 1);
    return c.text;
}

/* End offsets and revisions (and kinds, when kinds is not NULL) of the records in a data
 * file, in order. (A delete of an absent key writes no record, so revisions have gaps.) */
static inline size_t record_ends_kinds(const char *path, uint64_t *ends, uint64_t *revs, int *kinds,
                                       size_t max)
{
    void *data;
    size_t len, n = 0, off = 0;
    CHECK_OK(rc_read_file(path, &data, &len));
    struct record r;
    while (n < max && off < len &&
           record_decode((uint8_t *)data + off, len - off, &r) == RECORD_OK) {
        off += r.total_len;
        revs[n] = r.revision;
        if (kinds)
            kinds[n] = (int)r.kind;
        ends[n++] = off;
    }
    rc_free(data);
    return n;
}

static inline size_t record_ends(const char *path, uint64_t *ends, uint64_t *revs, size_t max)
{
    return record_ends_kinds(path, ends, revs, NULL, max);
}

/* Runs fn in a child process that then dies without closing the store (as kill -9 would,
 * but at a chosen point): what it wrote is in the page cache, the preallocated tail is
 * zero, and no hint was written for the active file. */
static inline void in_crashing_child(void (*fn)(const char *dir), const char *dir)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fn(dir);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

#endif

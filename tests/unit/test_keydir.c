/* test_keydir.c — the key directory: differential, clone, concurrency, scan, fault tests. */
#include "test.h"

#include "common/alloc.h"
#include "raftcask.h"
#include "store/keydir.h"

#include <pthread.h>
#include <stdbool.h>

/* ---------------------------------------------------------------------------------------- */
/* A reference model: a sorted array of keys                                                */
/* ---------------------------------------------------------------------------------------- */

struct model_entry {
    unsigned char *key;
    size_t len;
    struct kd_meta meta;
};

struct model {
    struct model_entry *v;
    size_t n, cap;
};

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t common = alen < blen ? alen : blen;
    int c = common ? memcmp(a, b, common) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static bool meta_eq(const struct kd_meta *a, const struct kd_meta *b)
{
    return a->file_id == b->file_id && a->offset == b->offset && a->value_len == b->value_len &&
           a->revision == b->revision && a->expiry_ms == b->expiry_ms;
}

static size_t model_find(const struct model *m, const void *key, size_t len, bool *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = key_cmp(m->v[mid].key, m->v[mid].len, key, len);
        if (c < 0) {
            lo = mid + 1;
        } else if (c > 0) {
            hi = mid;
        } else {
            *found = true;
            return mid;
        }
    }
    *found = false;
    return lo;
}

static void model_put(struct model *m, const void *key, size_t len, const struct kd_meta *meta)
{
    bool found;
    size_t i = model_find(m, key, len, &found);
    if (found) {
        m->v[i].meta = *meta;
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
        CHECK(m->v);
    }
    memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof *m->v);
    m->v[i].key = malloc(len ? len : 1);
    CHECK(m->v[i].key);
    memcpy(m->v[i].key, key, len);
    m->v[i].len = len;
    m->v[i].meta = *meta;
    m->n++;
}

static bool model_delete(struct model *m, const void *key, size_t len)
{
    bool found;
    size_t i = model_find(m, key, len, &found);
    if (!found)
        return false;
    free(m->v[i].key);
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof *m->v);
    m->n--;
    return true;
}

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].key);
    free(m->v);
    memset(m, 0, sizeof *m);
}

static void model_copy(struct model *dst, const struct model *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++)
        model_put(dst, src->v[i].key, src->v[i].len, &src->v[i].meta);
}

/* ---------------------------------------------------------------------------------------- */
/* Scanning into a model                                                                    */
/* ---------------------------------------------------------------------------------------- */

struct collector {
    struct model got; /* in callback order, appended (not sorted) */
    long stop_after;  /* stop (return 7) after this many keys; -1 never */
};

static int collect_fn(const void *key, size_t len, const struct kd_meta *meta, void *ctx)
{
    struct collector *c = ctx;
    struct model *m = &c->got;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
        CHECK(m->v);
    }
    m->v[m->n].key = malloc(len ? len : 1);
    CHECK(m->v[m->n].key);
    memcpy(m->v[m->n].key, key, len);
    m->v[m->n].len = len;
    m->v[m->n].meta = *meta;
    m->n++;
    return c->stop_after >= 0 && (long)m->n >= c->stop_after ? 7 : 0;
}

static bool in_bounds(const struct model_entry *e, const struct kd_bound *lo,
                      const struct kd_bound *hi)
{
    if (lo->kind != KD_BOUND_OPEN) {
        int c = key_cmp(e->key, e->len, lo->key, lo->len);
        if (c < 0 || (c == 0 && lo->kind == KD_BOUND_EXCLUSIVE))
            return false;
    }
    if (hi->kind != KD_BOUND_OPEN) {
        int c = key_cmp(e->key, e->len, hi->key, hi->len);
        if (c > 0 || (c == 0 && hi->kind == KD_BOUND_EXCLUSIVE))
            return false;
    }
    return true;
}

/* Scans kd with the given bounds and checks the output against the model. */
static void check_scan(const struct keydir *kd, const struct model *m, const struct kd_bound *lo,
                       const struct kd_bound *hi, bool reverse, long stop_after, uint64_t seed)
{
    struct collector c = {{0}, stop_after};
    int rc = keydir_scan(kd, lo, hi, reverse, collect_fn, &c);
    size_t expected = 0;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = reverse ? m->n - 1 - k : k;
        if (!in_bounds(&m->v[i], lo, hi))
            continue;
        if (stop_after >= 0 && (long)expected == stop_after)
            break;
        CHECK_MSG(expected < c.got.n, "seed %" PRIu64 ": scan returned %zu keys, more expected",
                  seed, c.got.n);
        CHECK_MSG(key_cmp(c.got.v[expected].key, c.got.v[expected].len, m->v[i].key, m->v[i].len) ==
                          0 &&
                      meta_eq(&c.got.v[expected].meta, &m->v[i].meta),
                  "seed %" PRIu64 ": scan key %zu differs", seed, expected);
        expected++;
    }
    CHECK_MSG(c.got.n == expected, "seed %" PRIu64 ": scan returned %zu keys, expected %zu", seed,
              c.got.n, expected);
    bool stopped = stop_after >= 0 && (long)expected == stop_after;
    CHECK_MSG(rc == (stopped ? 7 : 0), "seed %" PRIu64 ": scan returned %d", seed, rc);
    model_free(&c.got);
}

/* The whole content, count, gets and structure of kd against the model. */
static void check_same(const struct keydir *kd, const struct model *m, uint64_t seed)
{
    CHECK_MSG(keydir_check(kd) == 0, "seed %" PRIu64 ": keydir_check failed", seed);
    CHECK_MSG(keydir_count(kd) == m->n, "seed %" PRIu64 ": count %zu, model %zu", seed,
              keydir_count(kd), m->n);
    struct kd_bound open = {KD_BOUND_OPEN, NULL, 0};
    check_scan(kd, m, &open, &open, false, -1, seed);
    for (size_t i = 0; i < m->n; i++) {
        struct kd_meta got;
        CHECK_MSG(keydir_get(kd, m->v[i].key, m->v[i].len, &got) == 0,
                  "seed %" PRIu64 ": key %zu missing", seed, i);
        CHECK_MSG(meta_eq(&got, &m->v[i].meta), "seed %" PRIu64 ": key %zu meta differs", seed, i);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Key and meta generators                                                                  */
/* ---------------------------------------------------------------------------------------- */

#define MAX_TEST_KEY 700

/*
 * Keys of many shapes from a small alphabet (so prefixes are shared and NUL bytes common):
 * empty, one byte, short, exactly at and around the 256-byte inline limit, and long keys
 * with a 300-byte common prefix so that separators themselves must go out of line.
 */
static size_t make_key(uint64_t *rng, unsigned char *key)
{
    static const unsigned char alphabet[] = {0, 1, 'a', 'b', 'z', 0xff};
    uint64_t r = test_rand(rng);
    size_t len, prefix = 0;
    switch (r % 16) {
    case 0:
        len = 0;
        break;
    case 1:
        len = 1;
        break;
    case 2:
        len = 255 + test_rand(rng) % 4; /* 255..258: both sides of the inline limit */
        break;
    case 3:
    case 4:
        prefix = 300;
        len = prefix + test_rand(rng) % 300;
        break;
    default:
        len = 2 + test_rand(rng) % 12;
        break;
    }
    for (size_t i = 0; i < len; i++)
        key[i] = i < prefix ? 'p' : alphabet[test_rand(rng) % sizeof alphabet];
    return len;
}

static struct kd_meta make_meta(uint64_t *rng)
{
    struct kd_meta m = {(uint32_t)test_rand(rng), (uint32_t)test_rand(rng),
                        (uint32_t)test_rand(rng), test_rand(rng), (int64_t)test_rand(rng)};
    return m;
}

/* A bound of random kind, at an existing key, a random key, or a model key +/- a byte. */
static struct kd_bound make_bound(uint64_t *rng, const struct model *m, unsigned char *buf)
{
    struct kd_bound b = {(enum kd_bound_kind)(test_rand(rng) % 3), buf, 0};
    if (m->n && test_rand(rng) % 2) {
        const struct model_entry *e = &m->v[test_rand(rng) % m->n];
        memcpy(buf, e->key, e->len);
        b.len = e->len;
        if (test_rand(rng) % 3 == 0)
            buf[b.len++] = 0; /* just after the key */
    } else {
        b.len = make_key(rng, buf);
    }
    return b;
}

static struct keydir *new_keydir(void)
{
    struct keydir *kd;
    CHECK_OK(keydir_new(&kd));
    return kd;
}

/* Applies one random write to kd and the model. */
static void random_write(struct keydir *kd, struct model *m, uint64_t *rng, uint64_t seed,
                         unsigned delete_percent)
{
    unsigned char key[MAX_TEST_KEY];
    size_t len;
    if (m->n && test_rand(rng) % 3 == 0) { /* an existing key */
        const struct model_entry *e = &m->v[test_rand(rng) % m->n];
        len = e->len;
        memcpy(key, e->key, len);
    } else {
        len = make_key(rng, key);
    }
    bool found;
    size_t i = model_find(m, key, len, &found);
    struct kd_meta before = found ? m->v[i].meta : (struct kd_meta){0};
    struct kd_meta old = {0};
    if (test_rand(rng) % 100 < delete_percent) {
        int rc = keydir_delete(kd, key, len, &old);
        CHECK_MSG(rc == (found ? 0 : RC_ENOTFOUND), "seed %" PRIu64 ": delete returned %d", seed,
                  rc);
        if (found)
            CHECK_MSG(meta_eq(&old, &before), "seed %" PRIu64 ": delete old meta", seed);
        model_delete(m, key, len);
    } else {
        struct kd_meta meta = make_meta(rng);
        bool replaced = !found;
        CHECK_OK(keydir_put(kd, key, len, &meta, &old, &replaced));
        CHECK_MSG(replaced == found, "seed %" PRIu64 ": replaced flag", seed);
        if (found)
            CHECK_MSG(meta_eq(&old, &before), "seed %" PRIu64 ": put old meta", seed);
        model_put(m, key, len, &meta);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Tests                                                                                    */
/* ---------------------------------------------------------------------------------------- */

TEST(keydir_empty_map)
{
    struct keydir *kd = new_keydir();
    CHECK_EQ(keydir_count(kd), 0);
    CHECK_EQ(keydir_get(kd, "a", 1, NULL), RC_ENOTFOUND);
    CHECK_EQ(keydir_delete(kd, "a", 1, NULL), RC_ENOTFOUND);
    CHECK_EQ(keydir_sample(kd, 1, collect_fn, NULL), RC_ENOTFOUND);
    CHECK_EQ(keydir_scan(kd, NULL, NULL, false, collect_fn, NULL), 0);
    CHECK_OK(keydir_check(kd));
    struct kd_meta meta = {1, 2, 3, 4, 5}, got;
    CHECK_OK(keydir_put(kd, "", 0, &meta, NULL, NULL)); /* the empty key is a key */
    CHECK_OK(keydir_get(kd, "", 0, &got));
    CHECK(meta_eq(&got, &meta));
    CHECK_OK(keydir_delete(kd, "", 0, NULL));
    CHECK_EQ(keydir_count(kd), 0);
    CHECK_EQ_U(keydir_memory(kd), 0); /* an emptied map holds no pages */
    keydir_free(kd);
}

TEST(keydir_rejects_oversized_key)
{
    struct keydir *kd = new_keydir();
    size_t len = KEYDIR_MAX_KEY + 1;
    unsigned char *big = calloc(1, len);
    struct kd_meta meta = {0};
    CHECK_EQ(keydir_put(kd, big, len, &meta, NULL, NULL), RC_EINVAL);
    CHECK_OK(keydir_put(kd, big, len - 1, &meta, NULL, NULL)); /* the limit itself is fine */
    CHECK_OK(keydir_get(kd, big, len - 1, NULL));
    CHECK_OK(keydir_check(kd));
    free(big);
    keydir_free(kd);
}

TEST(keydir_differential_random_ops)
{
    uint64_t seed = test_seed(0x6b657964);
    for (int round = 0; round < 4; round++) {
        uint64_t rng = seed + (uint64_t)round;
        struct keydir *kd = new_keydir();
        struct model m = {0};
        /* Grow with few deletes, then shrink with many, so merges and root collapses run. */
        for (int op = 0; op < 6000; op++) {
            unsigned delete_percent = op < 3500 ? 15 : 75;
            random_write(kd, &m, &rng, seed, delete_percent);
            if (op % 97 == 0) {
                unsigned char lo_buf[MAX_TEST_KEY + 1], hi_buf[MAX_TEST_KEY + 1];
                struct kd_bound lo = make_bound(&rng, &m, lo_buf);
                struct kd_bound hi = make_bound(&rng, &m, hi_buf);
                check_scan(kd, &m, &lo, &hi, test_rand(&rng) % 2, -1, seed);
                CHECK_MSG(keydir_check(kd) == 0, "seed %" PRIu64 " op %d: check", seed, op);
            }
            if (op % 1500 == 0)
                check_same(kd, &m, seed);
        }
        check_same(kd, &m, seed);
        /* Delete what is left, in key order from the middle out, down to nothing. */
        while (m.n) {
            size_t i = m.n / 2;
            CHECK_OK(keydir_delete(kd, m.v[i].key, m.v[i].len, NULL));
            model_delete(&m, m.v[i].key, m.v[i].len);
            if (m.n % 211 == 0)
                check_same(kd, &m, seed);
        }
        check_same(kd, &m, seed);
        CHECK_EQ_U(keydir_memory(kd), 0);
        model_free(&m);
        keydir_free(kd);
    }
}

TEST(keydir_many_short_keys_sequential_and_random)
{
    uint64_t seed = test_seed(99);
    uint64_t rng = seed;
    struct keydir *kd = new_keydir();
    struct model m = {0};
    char key[32];
    /* Ascending, then random: deep trees built both ways. */
    for (int i = 0; i < 20000; i++) {
        int len = i < 10000 ? snprintf(key, sizeof key, "seq:%08d", i)
                            : snprintf(key, sizeof key, "rnd:%016" PRIx64, test_rand(&rng));
        struct kd_meta meta = make_meta(&rng);
        CHECK_OK(keydir_put(kd, key, (size_t)len, &meta, NULL, NULL));
        model_put(&m, key, (size_t)len, &meta);
    }
    check_same(kd, &m, seed);
    size_t full = keydir_memory(kd);
    CHECK_MSG(full / m.n < 100, "%zu bytes per key", full / m.n);
    /* Remove every key in order: merges and unlinking must give back every page. */
    while (m.n) {
        /* From the largest key down: the model pops from its end, the tree merges leftwards. */
        const struct model_entry *e = &m.v[m.n - 1];
        struct kd_meta old;
        CHECK_OK(keydir_delete(kd, e->key, e->len, &old));
        CHECK(meta_eq(&old, &e->meta));
        model_delete(&m, e->key, e->len);
        if (m.n % 5000 == 0)
            check_same(kd, &m, seed);
    }
    model_free(&m);
    CHECK_EQ(keydir_count(kd), 0);
    CHECK_EQ_U(keydir_memory(kd), 0);
    keydir_free(kd);
}

TEST(keydir_clone_isolation)
{
    uint64_t seed = test_seed(1234);
    uint64_t rng = seed;
    struct keydir *a = new_keydir();
    struct model ma = {0};
    for (int i = 0; i < 2000; i++)
        random_write(a, &ma, &rng, seed, 10);
    struct keydir *b;
    CHECK_OK(keydir_clone(a, &b));
    struct model mb;
    model_copy(&mb, &ma);
    check_same(b, &mb, seed);
    CHECK_EQ_U(keydir_memory(a), keydir_memory(b)); /* one counter per family */
    for (int i = 0; i < 1500; i++) {
        random_write(a, &ma, &rng, seed, 40);
        random_write(b, &mb, &rng, seed, 40);
    }
    check_same(a, &ma, seed);
    check_same(b, &mb, seed);
    keydir_free(a); /* original first */
    check_same(b, &mb, seed);
    for (int i = 0; i < 500; i++)
        random_write(b, &mb, &rng, seed, 40);
    check_same(b, &mb, seed);
    keydir_free(b);
    model_free(&ma);
    model_free(&mb);
}

TEST(keydir_nested_clones_freed_in_every_order)
{
    uint64_t seed = test_seed(777);
    uint64_t rng = seed;
    enum { CLONES = 6 };
    for (int order = 0; order < 3; order++) {
        struct keydir *kd[CLONES];
        struct model m[CLONES];
        kd[0] = new_keydir();
        memset(&m[0], 0, sizeof m[0]);
        for (int i = 0; i < 800; i++)
            random_write(kd[0], &m[0], &rng, seed, 10);
        /* Each clone is cloned from the previous one after that one was changed. */
        for (int c = 1; c < CLONES; c++) {
            CHECK_OK(keydir_clone(kd[c - 1], &kd[c]));
            model_copy(&m[c], &m[c - 1]);
            for (int i = 0; i < 300; i++)
                random_write(kd[c - 1], &m[c - 1], &rng, seed, 30);
        }
        for (int c = 0; c < CLONES; c++) {
            for (int i = 0; i < 200; i++)
                random_write(kd[c], &m[c], &rng, seed, 30);
        }
        for (int c = 0; c < CLONES; c++)
            check_same(kd[c], &m[c], seed);
        /* Free oldest first, newest first, or interleaved; survivors must stay intact. */
        for (int k = 0; k < CLONES; k++) {
            int c = order == 0 ? k : order == 1 ? CLONES - 1 - k : (k * 5 + 1) % CLONES;
            keydir_free(kd[c]);
            kd[c] = NULL;
            model_free(&m[c]);
            for (int d = 0; d < CLONES; d++)
                if (kd[d])
                    check_same(kd[d], &m[d], seed);
        }
    }
}

struct reader_job {
    struct keydir *clone;
    const struct model *expected;
    int passes;
    bool ok;
};

static void *reader_main(void *arg)
{
    struct reader_job *job = arg;
    job->ok = true;
    for (int pass = 0; pass < job->passes && job->ok; pass++) {
        struct collector c = {{0}, -1};
        keydir_scan(job->clone, NULL, NULL, pass % 2, collect_fn, &c);
        if (c.got.n != job->expected->n)
            job->ok = false;
        for (size_t k = 0; job->ok && k < c.got.n; k++) {
            size_t i = pass % 2 ? c.got.n - 1 - k : k;
            const struct model_entry *e = &job->expected->v[i];
            if (key_cmp(c.got.v[k].key, c.got.v[k].len, e->key, e->len) != 0 ||
                !meta_eq(&c.got.v[k].meta, &e->meta))
                job->ok = false;
        }
        model_free(&c.got);
        struct kd_meta got;
        for (size_t i = 0; job->ok && i < job->expected->n; i += 7)
            if (keydir_get(job->clone, job->expected->v[i].key, job->expected->v[i].len, &got) !=
                    0 ||
                !meta_eq(&got, &job->expected->v[i].meta))
                job->ok = false;
    }
    keydir_free(job->clone); /* freed on this thread, racing the writer's releases */
    return NULL;
}

TEST(keydir_clone_read_and_freed_on_another_thread)
{
    uint64_t seed = test_seed(4242);
    uint64_t rng = seed;
    struct keydir *kd = new_keydir();
    struct model m = {0};
    for (int i = 0; i < 5000; i++)
        random_write(kd, &m, &rng, seed, 5);
    for (int round = 0; round < 4; round++) {
        struct model frozen;
        model_copy(&frozen, &m);
        struct reader_job job = {NULL, &frozen, 3, false};
        CHECK_OK(keydir_clone(kd, &job.clone));
        pthread_t reader;
        CHECK_EQ(pthread_create(&reader, NULL, reader_main, &job), 0);
        for (int i = 0; i < 4000; i++)
            random_write(kd, &m, &rng, seed, 35);
        CHECK_EQ(pthread_join(reader, NULL), 0);
        CHECK_MSG(job.ok, "seed %" PRIu64 " round %d: clone saw a later write", seed, round);
        model_free(&frozen);
        check_same(kd, &m, seed);
    }
    model_free(&m);
    keydir_free(kd);
}

TEST(keydir_scan_bounds_every_kind)
{
    struct keydir *kd = new_keydir();
    struct model m = {0};
    char key[16];
    /* Even numbers only, so odd numbers are bounds that fall between keys. */
    for (int i = 0; i < 3000; i += 2) {
        int len = snprintf(key, sizeof key, "k%05d", i);
        struct kd_meta meta = {(uint32_t)i, 0, 0, (uint64_t)i, 0};
        CHECK_OK(keydir_put(kd, key, (size_t)len, &meta, NULL, NULL));
        model_put(&m, key, (size_t)len, &meta);
    }
    CHECK_OK(keydir_check(kd));
    static const int points[] = {-1, 0, 1, 2, 777, 778, 1500, 2997, 2998, 2999, 5000};
    const size_t np = sizeof points / sizeof points[0];
    char lo_key[16], hi_key[16];
    for (size_t a = 0; a < np; a++) {
        for (size_t b = 0; b < np; b++) {
            /* -1 sorts before every key ("k" alone), 5000 after every key. */
            size_t lo_len =
                points[a] < 0 ? 1 : (size_t)snprintf(lo_key, sizeof lo_key, "k%05d", points[a]);
            size_t hi_len =
                points[b] < 0 ? 1 : (size_t)snprintf(hi_key, sizeof hi_key, "k%05d", points[b]);
            if (points[a] < 0)
                lo_key[0] = 'k';
            if (points[b] < 0)
                hi_key[0] = 'k';
            for (int lk = 0; lk < 3; lk++) {
                for (int hk = 0; hk < 3; hk++) {
                    struct kd_bound lo = {(enum kd_bound_kind)lk, lo_key, lo_len};
                    struct kd_bound hi = {(enum kd_bound_kind)hk, hi_key, hi_len};
                    for (int rev = 0; rev < 2; rev++) {
                        check_scan(kd, &m, &lo, &hi, rev, -1, 0);
                        check_scan(kd, &m, &lo, &hi, rev, 1, 0);
                        check_scan(kd, &m, &lo, &hi, rev, 10, 0);
                        check_scan(kd, &m, &lo, &hi, rev, 400, 0);
                    }
                }
            }
        }
    }
    /* NULL bounds mean open. */
    struct kd_bound open = {KD_BOUND_OPEN, NULL, 0};
    struct collector c = {{0}, -1};
    CHECK_EQ(keydir_scan(kd, NULL, NULL, true, collect_fn, &c), 0);
    CHECK_EQ_U(c.got.n, m.n);
    check_scan(kd, &m, &open, &open, true, -1, 0);
    model_free(&c.got);
    model_free(&m);
    keydir_free(kd);
}

/* The allocation-failure loop for one operation; see keydir_allocation_failure_atomic. */
typedef int (*kd_op_fn)(struct keydir *kd, const unsigned char *key, size_t len,
                        const struct kd_meta *meta);

static int op_put(struct keydir *kd, const unsigned char *key, size_t len,
                  const struct kd_meta *meta)
{
    return keydir_put(kd, key, len, meta, NULL, NULL);
}

static int op_delete(struct keydir *kd, const unsigned char *key, size_t len,
                     const struct kd_meta *meta)
{
    (void)meta;
    return keydir_delete(kd, key, len, NULL);
}

TEST(keydir_allocation_failure_atomic)
{
    uint64_t seed = test_seed(31337);
    uint64_t rng = seed;
    struct keydir *kd = new_keydir();
    struct model m = {0};
    int failures_seen = 0;
    for (int op = 0; op < 900; op++) {
        /* A fresh clone every time, so the writer has to copy its whole path again. */
        struct keydir *clone;
        CHECK_OK(keydir_clone(kd, &clone));
        struct model frozen;
        model_copy(&frozen, &m);

        unsigned char key[MAX_TEST_KEY];
        size_t len;
        bool del = m.n > 50 && test_rand(&rng) % 3 == 0;
        if (del || (m.n && test_rand(&rng) % 4 == 0)) {
            const struct model_entry *e = &m.v[test_rand(&rng) % m.n];
            len = e->len;
            memcpy(key, e->key, len);
        } else {
            len = make_key(&rng, key);
        }
        struct kd_meta meta = make_meta(&rng);
        kd_op_fn fn = del ? op_delete : op_put;
        int rc;
        for (long n = 0;; n++) {
            rc_alloc_fail_after(n);
            rc = fn(kd, key, len, &meta);
            rc_alloc_fail_after(-1);
            if (rc != RC_ENOMEM)
                break;
            failures_seen++;
            /* Only check in full now and then: the checks cost more than the operation. */
            if (op % 25 == 0 || n < 2)
                check_same(kd, &m, seed);
            else
                CHECK_EQ_U(keydir_count(kd), m.n);
            CHECK_MSG(n < 100, "seed %" PRIu64 ": op %d never succeeds", seed, op);
        }
        CHECK_MSG(rc == 0, "seed %" PRIu64 " op %d: returned %d", seed, op, rc);
        if (del)
            model_delete(&m, key, len);
        else
            model_put(&m, key, len, &meta);
        if (op % 25 == 0) {
            check_same(kd, &m, seed);
            check_same(clone, &frozen, seed);
        }
        keydir_free(clone);
        model_free(&frozen);
    }
    check_same(kd, &m, seed);
    CHECK(failures_seen >= 900); /* every op had to copy at least one node */
    /* keydir_new and keydir_clone fail cleanly too. */
    struct keydir *other = NULL;
    for (long n = 0; n < 2; n++) {
        rc_alloc_fail_after(n);
        CHECK_EQ(keydir_new(&other), RC_ENOMEM);
        rc_alloc_fail_after(-1);
    }
    rc_alloc_fail_after(0);
    CHECK_EQ(keydir_clone(kd, &other), RC_ENOMEM);
    rc_alloc_fail_after(-1);
    model_free(&m);
    keydir_free(kd);
}

static size_t make_fat_key(uint64_t *rng, unsigned char *key);

struct sample_tally {
    const struct model *m;
    unsigned hits[64];
    bool missing;
};

static int tally_fn(const void *key, size_t len, const struct kd_meta *meta, void *ctx)
{
    struct sample_tally *t = ctx;
    bool found;
    size_t i = model_find(t->m, key, len, &found);
    if (!found || !meta_eq(meta, &t->m->v[i].meta))
        t->missing = true;
    else if (i < 64)
        t->hits[i]++;
    return 5;
}

TEST(keydir_sample_picks_existing_keys_and_all_of_them)
{
    uint64_t seed = test_seed(5);
    uint64_t rng = seed;
    struct keydir *kd = new_keydir();
    struct model m = {0};
    char key[16];
    for (int i = 0; i < 40; i++) {
        int len = snprintf(key, sizeof key, "s%d", i);
        struct kd_meta meta = make_meta(&rng);
        CHECK_OK(keydir_put(kd, key, (size_t)len, &meta, NULL, NULL));
        model_put(&m, key, (size_t)len, &meta);
    }
    struct sample_tally t = {&m, {0}, false};
    for (int i = 0; i < 4000; i++)
        CHECK_EQ(keydir_sample(kd, test_rand(&rng), tally_fn, &t), 5);
    CHECK(!t.missing);
    for (size_t i = 0; i < m.n; i++)
        CHECK_MSG(t.hits[i] > 0, "key %zu never sampled", i);
    /* A tree of several levels (fat keys: ~14 per leaf, ~15 children per internal node):
     * every sample is a live key and every one of the 60 keys comes up. */
    keydir_free(kd);
    model_free(&m);
    kd = new_keydir();
    unsigned char fat[MAX_TEST_KEY];
    while (m.n < 60) {
        size_t len = make_fat_key(&rng, fat);
        struct kd_meta meta = make_meta(&rng);
        CHECK_OK(keydir_put(kd, fat, len, &meta, NULL, NULL));
        model_put(&m, fat, len, &meta);
    }
    CHECK_MSG(keydir_memory(kd) > 4 * 4096, "not a multi-level tree");
    struct sample_tally deep = {&m, {0}, false};
    for (int i = 0; i < 6000; i++)
        CHECK_EQ(keydir_sample(kd, test_rand(&rng), tally_fn, &deep), 5);
    CHECK(!deep.missing);
    for (size_t i = 0; i < m.n; i++)
        CHECK_MSG(deep.hits[i] > 0, "fat key %zu never sampled", i);
    model_free(&m);
    keydir_free(kd);
}

/* Keys of 254 bytes sharing 250 (inline separators of ~252 bytes) or 404 bytes sharing 400
 * (separators that must be out-of-line blobs): internal nodes hold ~15 children, so a few
 * thousand keys make a deep tree where sparse nodes often cannot merge and get unlinked. */
static size_t make_fat_key(uint64_t *rng, unsigned char *key)
{
    bool blob = test_rand(rng) % 4 == 0;
    size_t prefix = blob ? 400 : 250, len = prefix + 4;
    memset(key, blob ? 'q' : 'p', prefix);
    for (size_t i = prefix; i < len; i++)
        key[i] = (unsigned char)('a' + test_rand(rng) % 6);
    return len;
}

TEST(keydir_fat_keys_deep_tree_with_clones_and_failures)
{
    uint64_t seed = test_seed(2718);
    uint64_t rng = seed;
    struct keydir *kd = new_keydir();
    struct keydir *clone = NULL;
    struct model m = {0}, frozen = {0};
    for (int op = 0; op < 5000; op++) {
        if (op % 400 == 0) { /* a clone now and then, so merges meet shared siblings */
            if (clone) {
                check_same(clone, &frozen, seed);
                keydir_free(clone);
                model_free(&frozen);
            }
            CHECK_OK(keydir_clone(kd, &clone));
            model_copy(&frozen, &m);
        }
        unsigned char key[MAX_TEST_KEY];
        size_t len = make_fat_key(&rng, key);
        bool del = op >= 2500 ? test_rand(&rng) % 10 < 9 : test_rand(&rng) % 10 == 0;
        struct kd_meta meta = make_meta(&rng);
        bool found;
        model_find(&m, key, len, &found);
        /* Every 5th operation runs under allocation failure until it succeeds. */
        for (long n = op % 5 == 0 ? 0 : -1;; n++) {
            rc_alloc_fail_after(n);
            int rc = del ? keydir_delete(kd, key, len, NULL)
                         : keydir_put(kd, key, len, &meta, NULL, NULL);
            rc_alloc_fail_after(-1);
            if (rc == RC_ENOMEM) {
                CHECK_EQ_U(keydir_count(kd), m.n);
                if (n < 3)
                    CHECK_MSG(keydir_check(kd) == 0, "seed %" PRIu64 " op %d", seed, op);
                continue;
            }
            CHECK_MSG(rc == (del && !found ? RC_ENOTFOUND : 0), "seed %" PRIu64 " op %d: %d", seed,
                      op, rc);
            break;
        }
        if (del)
            model_delete(&m, key, len);
        else
            model_put(&m, key, len, &meta);
        if (op % 250 == 0)
            check_same(kd, &m, seed);
    }
    check_same(kd, &m, seed);
    check_same(clone, &frozen, seed);
    keydir_free(clone);
    while (m.n) {
        size_t i = test_rand(&rng) % m.n;
        CHECK_OK(keydir_delete(kd, m.v[i].key, m.v[i].len, NULL));
        model_delete(&m, m.v[i].key, m.v[i].len);
        if (m.n % 97 == 0)
            check_same(kd, &m, seed);
    }
    CHECK_EQ_U(keydir_memory(kd), 0);
    model_free(&m);
    model_free(&frozen);
    keydir_free(kd);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_UNDER_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_UNDER_LSAN 1
#endif
#ifdef TEST_UNDER_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/*
 * A leak check while a deep map with blobs and a clone is alive finds nothing: pages and
 * blobs are reached through pointers at unaligned offsets, which LeakSanitizer cannot see
 * (the fuzz target fuzz_entry used to fail on a live key longer than 256 bytes).
 */
TEST(keydir_live_map_passes_a_leak_check)
{
    uint64_t rng = test_seed(1618);
    struct keydir *kd = new_keydir(), *clone = NULL;
    for (int i = 0; i < 3000; i++) {
        unsigned char key[MAX_TEST_KEY];
        size_t len = make_fat_key(&rng, key);
        struct kd_meta meta = make_meta(&rng);
        CHECK_OK(keydir_put(kd, key, len, &meta, NULL, NULL));
        if (i == 1500)
            CHECK_OK(keydir_clone(kd, &clone));
    }
    CHECK_MSG(keydir_memory(kd) > 16 * 4096, "not a multi-level tree");
#ifdef TEST_UNDER_LSAN
    CHECK_EQ(__lsan_do_recoverable_leak_check(), 0);
#endif
    keydir_free(clone);
    keydir_free(kd);
}

/* Key number x of the unlink scenario: a long shared prefix, then seven digits (255 bytes
 * inline, or 407 bytes in a blob). */
static size_t unlink_key(unsigned char *key, bool blob, int x)
{
    size_t prefix = blob ? 400 : 248;
    memset(key, 'p', prefix);
    snprintf((char *)key + prefix, 8, "%07d", x);
    return prefix + 7;
}

static void unlink_put(struct keydir *kd, struct model *m, bool blob, int x)
{
    unsigned char key[MAX_TEST_KEY];
    size_t len = unlink_key(key, blob, x);
    struct kd_meta meta = {(uint32_t)x, 0, 0, 0, 0};
    CHECK_OK(keydir_put(kd, key, len, &meta, NULL, NULL));
    model_put(m, key, len, &meta);
}

/*
 * White-box: builds three full leaves A | B | C under one root, then deletes every key of A
 * and then of B. Neither can merge into its full neighbour, so each is emptied, unlinked as
 * child 0 of the root, and finally the root collapses onto C. The leaf capacity and the
 * split point follow from the page layout (entry = 28 + 2 + key or blob pointer, slot = 4,
 * 4072 usable bytes; a split leaves floor((cap + 1) / 2) entries on the left).
 */
TEST(keydir_unlinks_empty_nodes_that_cannot_merge)
{
    for (int blob = 0; blob < 2; blob++) {
        size_t entry = 28 + 2 + (blob ? 8 : 255) + 4;
        int cap = (int)(4072 / entry), left = (cap + 1) / 2;
        struct keydir *kd = new_keydir();
        struct model m = {0};
        for (int i = 0; i <= cap; i++) /* splits into A = [0, left) and B */
            unlink_put(kd, &m, blob, i * 1000);
        for (int i = cap + 1; i <= cap + left; i++) /* B splits into B = [left, 2 left), C */
            unlink_put(kd, &m, blob, i * 1000);
        int fill_a = cap - left, fill_b = cap - left, fill_c = cap - (cap + left - 2 * left + 1);
        for (int j = 1; j <= fill_a; j++)
            unlink_put(kd, &m, blob, j);
        for (int j = 1; j <= fill_b; j++)
            unlink_put(kd, &m, blob, left * 1000 + j);
        for (int j = 1; j <= fill_c; j++)
            unlink_put(kd, &m, blob, 2 * left * 1000 + j);
        check_same(kd, &m, 0);
        CHECK_EQ_U(m.n, 3 * (size_t)cap);
        if (!blob)
            CHECK_EQ_U(keydir_memory(kd), 4 * 4096); /* three full leaves and a root */
        /* Empty A, then B, from their smallest key up. */
        size_t victims = 2 * (size_t)cap;
        while (m.n > 3 * (size_t)cap - victims) {
            CHECK_OK(keydir_delete(kd, m.v[0].key, m.v[0].len, NULL));
            model_delete(&m, m.v[0].key, m.v[0].len);
            check_same(kd, &m, 0);
        }
        if (!blob)
            CHECK_EQ_U(keydir_memory(kd), 4096); /* C alone, as the root */
        model_free(&m);
        keydir_free(kd);
    }
}

struct writer_job {
    struct keydir *kd;
    struct model m;
    uint64_t seed;
};

static void *writer_main(void *arg)
{
    struct writer_job *job = arg;
    uint64_t rng = job->seed * 31 + 1;
    for (int i = 0; i < 3000; i++)
        random_write(job->kd, &job->m, &rng, job->seed, 40);
    return NULL;
}

/* Two handles of one family written at once on two threads: each copies the nodes it shares
 * with the other, and each must end with exactly its own writes. */
TEST(keydir_original_and_clone_written_concurrently)
{
    uint64_t seed = test_seed(8080);
    uint64_t rng = seed;
    struct writer_job a = {new_keydir(), {0}, seed};
    for (int i = 0; i < 3000; i++)
        random_write(a.kd, &a.m, &rng, seed, 5);
    struct writer_job b = {NULL, {0}, seed + 1};
    CHECK_OK(keydir_clone(a.kd, &b.kd));
    model_copy(&b.m, &a.m);
    pthread_t thread;
    CHECK_EQ(pthread_create(&thread, NULL, writer_main, &b), 0);
    writer_main(&a);
    CHECK_EQ(pthread_join(thread, NULL), 0);
    check_same(a.kd, &a.m, seed);
    check_same(b.kd, &b.m, seed);
    keydir_free(a.kd);
    check_same(b.kd, &b.m, seed);
    keydir_free(b.kd);
    model_free(&a.m);
    model_free(&b.m);
}

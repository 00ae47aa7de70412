/*
 * bench/store.c — raftcask's Bitcask store side by side with LMDB and LevelDB.
 *
 * One run of this program loads the same data into each engine and prints, for each metric,
 * the median over BENCH_RUNS runs (default 3) as `bench: <engine> <metric> <value> <unit>`,
 * then `ratio: <metric> raftcask/<engine> <value>` lines, then the targets as PASS/MISS.
 *
 * The data: BENCH_KEYS keys (default 1,000,000) of 16 bytes ("key-" and 12 decimal digits,
 * so that numeric order is byte order) and 100-byte values (the key's number, then 92 bytes
 * of a fixed random pool, so every value differs and can be checked on read).
 *
 * Per run and engine, in this order, each engine in a fresh directory:
 *   seq_put      put every key in ascending order (then close and delete the directory)
 *   random_put   put every key in a random permutation into a fresh store; around this load
 *                the process's resident memory is measured (rss_per_key, rss_anon_per_key)
 *   random_get   on that store: one untimed pass over a second permutation, then a timed
 *                pass over it again; every value read is compared with the expected one
 *   scan         every key and value in key order; count, order and contents are checked
 *                through a checksum compared after the timed loop
 *   open         close (untimed), then time the reopen; 1000 gets verify the reopened store
 * Engines are interleaved within each run (A B C, A B C, ...) because the machine is shared
 * and noisy. Nothing is ever fsynced by the benchmark; see engine_notes for each engine's
 * configuration.
 *
 * Environment: BENCH_KEYS, BENCH_RUNS, BENCH_ENGINES (comma-separated subset of the engine
 * names, default all), TMPDIR (where the temporary directories go, default /tmp).
 */
#include "common/alloc.h"
#include "raftcask.h"
#include "bench.h"
#include "store/store.h"

#include <leveldb/c.h>
#include <lmdb.h>

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES      16
#define VALUE_BYTES    100
#define POOL_BYTES     (1u << 20)
#define BATCH_PUTS     1000
#define REOPEN_CHECKS  1000
#define SEED_DATA      0x5eed0001u
#define SEED_PUT_ORDER 0x5eed0002u
#define SEED_GET_ORDER 0x5eed0003u

/* ============================== failing loudly ============================== */

/* ============================== the data ============================== */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint8_t value_pool[POOL_BYTES];

static void make_pool(void)
{
    uint64_t state = SEED_DATA;
    for (size_t i = 0; i < POOL_BYTES; i += 8) {
        uint64_t r = splitmix64(&state);
        memcpy(value_pool + i, &r, 8);
    }
}

/* "key-" and i in 12 zero-padded decimal digits: ascending i is ascending bytes. */
static void make_key(uint64_t i, char key[KEY_BYTES])
{
    memcpy(key, "key-", 4);
    for (int d = KEY_BYTES - 1; d >= 4; d--) {
        key[d] = (char)('0' + i % 10);
        i /= 10;
    }
}

/* The key's number (so that a value read under the wrong key is caught), then 92 bytes taken
 * from the pool at an offset that depends on the key. */
static void make_value(uint64_t i, uint8_t value[VALUE_BYTES])
{
    uint64_t state = i;
    size_t offset = splitmix64(&state) % (POOL_BYTES - (VALUE_BYTES - 8));
    memcpy(value, &i, 8);
    memcpy(value + 8, value_pool + offset, VALUE_BYTES - 8);
}

/* A random permutation of 0..n-1 (Fisher-Yates), the same for every engine. */
static uint32_t *make_permutation(size_t n, uint64_t seed)
{
    uint32_t *p = malloc(n * sizeof *p);
    if (!p)
        die("out of memory for a permutation of %zu keys", n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = splitmix64(&seed) % i;
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* An order-sensitive checksum of what a scan returns: it touches every byte of every key and
 * value, and comparing it with the expected one checks the scan's count, order and data. */
static uint64_t fold_bytes(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    w = len;
    for (size_t i = 0; i < len; i++)
        w = (w << 8) | p[i];
    h = (h ^ w) * 0x100000001B3ull;
    return h ^ (h >> 29);
}

struct scan_check {
    uint64_t count;
    uint64_t sum;
};

static void scan_visit(struct scan_check *c, const void *key, size_t klen, const void *value,
                       size_t vlen)
{
    c->count++;
    c->sum = fold_bytes(fold_bytes(c->sum, key, klen), value, vlen);
}

static uint64_t expected_scan_sum(size_t n)
{
    struct scan_check c = {0, 0};
    char key[KEY_BYTES];
    uint8_t value[VALUE_BYTES];
    for (size_t i = 0; i < n; i++) {
        make_key(i, key);
        make_value(i, value);
        scan_visit(&c, key, KEY_BYTES, value, VALUE_BYTES);
    }
    return c.sum;
}

/* ============================== measuring tools ============================== */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Resident memory of this process from /proc/self/status, in bytes: all of it (VmRSS), and
 * the anonymous part (RssAnon: heap and other private memory, without the pages of mapped
 * files, which are the page cache of LMDB's map and of our data files). */
struct rss {
    double total_bytes;
    double anon_bytes;
};

static struct rss read_rss(void)
{
    struct rss r = {-1, -1};
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        die("open /proc/self/status: %s", strerror(errno));
    char line[256];
    long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            r.total_bytes = (double)kb * 1024;
        else if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
            r.anon_bytes = (double)kb * 1024;
    }
    fclose(f);
    if (r.total_bytes < 0 || r.anon_bytes < 0)
        die("no VmRSS or RssAnon in /proc/self/status");
    return r;
}

/* ============================== engine adapters ============================== */

/*
 * One adapter per engine, so that the measuring loop is written once. Every function dies
 * on an error. get returns the value through *value, valid until the next call on db.
 * scan calls scan_visit for every key in ascending order.
 */
struct engine {
    const char *name;
    unsigned batch_puts; /* puts grouped per transaction or batch; 1 = individual operations */
    bool puts_only;      /* a batched variant: only the put metrics are measured */
    void *(*open)(const struct engine *e, const char *dir, size_t nkeys);
    void (*put)(void *db, const char *key, size_t klen, const uint8_t *value, size_t vlen);
    void (*flush)(void *db); /* ends the pending batch, if any */
    void (*get)(void *db, const char *key, size_t klen, const void **value, size_t *vlen);
    void (*scan)(void *db, struct scan_check *c);
    void (*close)(void *db);
    /* raftcask only (NULL elsewhere): bytes of the in-memory key directory. */
    uint64_t (*keydir_bytes)(void *db);
};

/* ---------- raftcask: rc_store_* with default options ---------- */

struct rc_db {
    struct rc_store *store;
    uint64_t revision;
    struct rc_buf value;
};

static void *rc_db_open(const struct engine *e, const char *dir, size_t nkeys)
{
    (void)e;
    (void)nkeys;
    struct rc_db *db = calloc(1, sizeof *db);
    if (!db)
        die("out of memory");
    int rc = rc_store_open(dir, NULL, &db->store);
    if (rc != 0)
        die("rc_store_open %s: %s", dir, rc_strerror(rc));
    db->revision = rc_store_applied_revision(db->store);
    return db;
}

static void rc_db_put(void *p, const char *key, size_t klen, const uint8_t *value, size_t vlen)
{
    struct rc_db *db = p;
    int rc = rc_store_put(db->store, key, klen, value, vlen, 0, ++db->revision);
    if (rc != 0)
        die("rc_store_put: %s", rc_strerror(rc));
}

static void rc_db_get(void *p, const char *key, size_t klen, const void **value, size_t *vlen)
{
    struct rc_db *db = p;
    int rc = rc_store_get(db->store, key, klen, &db->value, NULL);
    if (rc != 0)
        die("rc_store_get %.*s: %s", (int)klen, key, rc_strerror(rc));
    *value = db->value.data;
    *vlen = db->value.len;
}

static int rc_db_scan_one(const void *key, size_t klen, const void *value, size_t vlen,
                          const struct rc_item_meta *meta, void *ctx)
{
    (void)meta;
    scan_visit(ctx, key, klen, value, vlen);
    return 0;
}

static void rc_db_scan(void *p, struct scan_check *c)
{
    struct rc_db *db = p;
    struct rc_store_range all = {.with_values = true};
    int rc = rc_store_scan(db->store, &all, rc_db_scan_one, c);
    if (rc != 0)
        die("rc_store_scan: %s", rc_strerror(rc));
}

static void rc_db_close(void *p)
{
    struct rc_db *db = p;
    int rc = rc_store_close(db->store);
    if (rc != 0)
        die("rc_store_close: %s", rc_strerror(rc));
    rc_free(db->value.data);
    free(db);
}

static uint64_t rc_db_keydir_bytes(void *p)
{
    struct rc_db *db = p;
    struct rc_store_stats st;
    int rc = rc_store_stats(db->store, &st);
    if (rc != 0)
        die("rc_store_stats: %s", rc_strerror(rc));
    return st.keydir_bytes;
}

/* ---------- LMDB: MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP ---------- */

struct lmdb_db {
    MDB_env *env;
    MDB_dbi dbi;
    unsigned batch_puts;
    MDB_txn *write_txn; /* open while a batch is pending */
    unsigned pending;
    MDB_txn *read_txn; /* reused by gets and scans (reset and renewed, as lmdb.h advises) */
    bool reading;      /* read_txn is live: the last get's value points into it */
};

#define LMDB_CHECK(call)                                                                           \
    do {                                                                                           \
        int lmdb_rc_ = (call);                                                                     \
        if (lmdb_rc_ != 0)                                                                         \
            die("%s: %s", #call, mdb_strerror(lmdb_rc_));                                          \
    } while (0)

static void *lmdb_db_open(const struct engine *e, const char *dir, size_t nkeys)
{
    struct lmdb_db *db = calloc(1, sizeof *db);
    if (!db)
        die("out of memory");
    db->batch_puts = e->batch_puts;
    /* The map must hold the whole tree: about 200 bytes per key at the fill of a tree built by
     * random inserts; 1 KiB per key leaves ample room (the file is sparse). */
    size_t map_bytes = nkeys * 1024 < (256u << 20) ? (256u << 20) : nkeys * 1024;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        die("mkdir %s: %s", dir, strerror(errno));
    LMDB_CHECK(mdb_env_create(&db->env));
    LMDB_CHECK(mdb_env_set_mapsize(db->env, map_bytes));
    LMDB_CHECK(mdb_env_open(db->env, dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP, 0644));
    MDB_txn *txn;
    LMDB_CHECK(mdb_txn_begin(db->env, NULL, 0, &txn));
    LMDB_CHECK(mdb_dbi_open(txn, NULL, 0, &db->dbi));
    LMDB_CHECK(mdb_txn_commit(txn));
    return db;
}

static void lmdb_end_read(struct lmdb_db *db)
{
    if (db->reading)
        mdb_txn_reset(db->read_txn);
    db->reading = false;
}

static void lmdb_begin_read(struct lmdb_db *db)
{
    lmdb_end_read(db);
    if (db->read_txn)
        LMDB_CHECK(mdb_txn_renew(db->read_txn));
    else
        LMDB_CHECK(mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->read_txn));
    db->reading = true;
}

static void lmdb_db_flush(void *p)
{
    struct lmdb_db *db = p;
    if (db->write_txn)
        LMDB_CHECK(mdb_txn_commit(db->write_txn));
    db->write_txn = NULL;
    db->pending = 0;
}

/* With batch_puts == 1 every put is its own write transaction. */
static void lmdb_db_put(void *p, const char *key, size_t klen, const uint8_t *value, size_t vlen)
{
    struct lmdb_db *db = p;
    lmdb_end_read(db);
    if (!db->write_txn)
        LMDB_CHECK(mdb_txn_begin(db->env, NULL, 0, &db->write_txn));
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)value};
    LMDB_CHECK(mdb_put(db->write_txn, db->dbi, &k, &v, 0));
    if (++db->pending >= db->batch_puts)
        lmdb_db_flush(db);
}

static void lmdb_db_get(void *p, const char *key, size_t klen, const void **value, size_t *vlen)
{
    struct lmdb_db *db = p;
    lmdb_begin_read(db);
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(db->read_txn, db->dbi, &k, &v);
    if (rc != 0)
        die("mdb_get %.*s: %s", (int)klen, key, mdb_strerror(rc));
    *value = v.mv_data;
    *vlen = v.mv_size;
}

static void lmdb_db_scan(void *p, struct scan_check *c)
{
    struct lmdb_db *db = p;
    lmdb_begin_read(db);
    MDB_cursor *cur;
    LMDB_CHECK(mdb_cursor_open(db->read_txn, db->dbi, &cur));
    MDB_val k, v;
    int rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        scan_visit(c, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
    if (rc != MDB_NOTFOUND)
        die("mdb_cursor_get: %s", mdb_strerror(rc));
    mdb_cursor_close(cur);
    lmdb_end_read(db);
}

static void lmdb_db_close(void *p)
{
    struct lmdb_db *db = p;
    lmdb_db_flush(db);
    if (db->read_txn)
        mdb_txn_abort(db->read_txn);
    mdb_env_close(db->env);
    free(db);
}

/* ---------- LevelDB: default options, sync = false ---------- */

struct leveldb_db {
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_writeoptions_t *write_options;
    leveldb_readoptions_t *read_options;
    unsigned batch_puts;
    leveldb_writebatch_t *batch; /* batched variant only */
    unsigned pending;
    char *last_value; /* the last get's value, freed by the next get */
};

static void leveldb_check(char *err, const char *what)
{
    if (err) {
        fprintf(stderr, "bench: leveldb %s: %s\n", what, err);
        leveldb_free(err);
        die("leveldb %s failed", what);
    }
}

static void *leveldb_db_open(const struct engine *e, const char *dir, size_t nkeys)
{
    (void)nkeys;
    struct leveldb_db *db = calloc(1, sizeof *db);
    if (!db)
        die("out of memory");
    db->batch_puts = e->batch_puts;
    db->options = leveldb_options_create();
    leveldb_options_set_create_if_missing(db->options, 1);
    db->write_options = leveldb_writeoptions_create(); /* sync = false is the default */
    db->read_options = leveldb_readoptions_create();
    if (db->batch_puts > 1)
        db->batch = leveldb_writebatch_create();
    char *err = NULL;
    db->db = leveldb_open(db->options, dir, &err);
    leveldb_check(err, "open");
    return db;
}

static void leveldb_db_flush(void *p)
{
    struct leveldb_db *db = p;
    if (db->pending == 0)
        return;
    char *err = NULL;
    leveldb_write(db->db, db->write_options, db->batch, &err);
    leveldb_check(err, "write");
    leveldb_writebatch_clear(db->batch);
    db->pending = 0;
}

/* With batch_puts == 1 every put is a leveldb_put, as an application would write. */
static void leveldb_db_put(void *p, const char *key, size_t klen, const uint8_t *value, size_t vlen)
{
    struct leveldb_db *db = p;
    if (db->batch_puts <= 1) {
        char *err = NULL;
        leveldb_put(db->db, db->write_options, key, klen, (const char *)value, vlen, &err);
        leveldb_check(err, "put");
        return;
    }
    leveldb_writebatch_put(db->batch, key, klen, (const char *)value, vlen);
    if (++db->pending >= db->batch_puts)
        leveldb_db_flush(db);
}

static void leveldb_db_get(void *p, const char *key, size_t klen, const void **value, size_t *vlen)
{
    struct leveldb_db *db = p;
    leveldb_free(db->last_value);
    char *err = NULL;
    db->last_value = leveldb_get(db->db, db->read_options, key, klen, vlen, &err);
    leveldb_check(err, "get");
    if (!db->last_value)
        die("leveldb get %.*s: not found", (int)klen, key);
    *value = db->last_value;
}

static void leveldb_db_scan(void *p, struct scan_check *c)
{
    struct leveldb_db *db = p;
    leveldb_iterator_t *it = leveldb_create_iterator(db->db, db->read_options);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = leveldb_iter_key(it, &klen);
        const char *value = leveldb_iter_value(it, &vlen);
        scan_visit(c, key, klen, value, vlen);
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    leveldb_check(err, "iterator");
    leveldb_iter_destroy(it);
}

static void leveldb_db_close(void *p)
{
    struct leveldb_db *db = p;
    if (db->batch) {
        leveldb_db_flush(db);
        leveldb_writebatch_destroy(db->batch);
    }
    leveldb_free(db->last_value);
    leveldb_close(db->db);
    leveldb_readoptions_destroy(db->read_options);
    leveldb_writeoptions_destroy(db->write_options);
    leveldb_options_destroy(db->options);
    free(db);
}

/* Indices into engines[], for the ratios and targets. */
enum { E_RAFTCASK, E_LMDB, E_LEVELDB, E_LMDB_BATCH, E_LEVELDB_BATCH, NENGINES };

#define RAFTCASK_OPS                                                                               \
    .open = rc_db_open, .put = rc_db_put, .get = rc_db_get, .scan = rc_db_scan,                    \
    .close = rc_db_close, .keydir_bytes = rc_db_keydir_bytes
#define LMDB_OPS                                                                                   \
    .open = lmdb_db_open, .put = lmdb_db_put, .flush = lmdb_db_flush, .get = lmdb_db_get,          \
    .scan = lmdb_db_scan, .close = lmdb_db_close
#define LEVELDB_OPS                                                                                \
    .open = leveldb_db_open, .put = leveldb_db_put, .flush = leveldb_db_flush,                     \
    .get = leveldb_db_get, .scan = leveldb_db_scan, .close = leveldb_db_close

static const struct engine engines[NENGINES] = {
    [E_RAFTCASK] = {.name = "raftcask", .batch_puts = 1, RAFTCASK_OPS},
    [E_LMDB] = {.name = "lmdb", .batch_puts = 1, LMDB_OPS},
    [E_LEVELDB] = {.name = "leveldb", .batch_puts = 1, LEVELDB_OPS},
    [E_LMDB_BATCH] = {.name = "lmdb-batch1000",
                      .batch_puts = BATCH_PUTS,
                      .puts_only = true,
                      LMDB_OPS},
    [E_LEVELDB_BATCH] = {.name = "leveldb-batch1000",
                         .batch_puts = BATCH_PUTS,
                         .puts_only = true,
                         LEVELDB_OPS},
};

static const char *const engine_notes[NENGINES] = {
    "# raftcask: rc_store_open with default options (64 MiB data files); a put never fsyncs,\n"
    "#   but rolling to a new data file (every 64 MiB, inside the put that crosses it) fsyncs\n"
    "#   the sealed file, as the store's design requires; close fsyncs and writes a hint.\n",
    "# lmdb: MDB_NOSYNC|MDB_NOMETASYNC|MDB_WRITEMAP, one write txn per put; gets reuse one\n"
    "#   read txn handle (mdb_txn_reset/renew per get, a fresh snapshot each time).\n",
    "# leveldb: default options (4 MiB write buffer, 8 MiB block cache, snappy, no bloom\n"
    "#   filter), create_if_missing, sync=false, one leveldb_put per put; default read options.\n",
    "# lmdb-batch1000: as lmdb, but 1000 puts per write txn (put metrics only).\n",
    "# leveldb-batch1000: as leveldb, but one WriteBatch per 1000 puts (put metrics only).\n",
};

/* ============================== metrics ============================== */

enum metric {
    M_SEQ_PUT,
    M_RANDOM_PUT,
    M_RANDOM_GET,
    M_SCAN,
    M_OPEN,
    M_RSS,
    M_RSS_ANON,
    M_KEYDIR,
    NMETRICS,
};

static const struct {
    const char *name;
    const char *unit;
    int decimals;
} metrics[NMETRICS] = {
    [M_SEQ_PUT] = {"seq_put", "ops/s", 0},
    [M_RANDOM_PUT] = {"random_put", "ops/s", 0},
    [M_RANDOM_GET] = {"random_get", "ops/s", 0},
    [M_SCAN] = {"scan", "keys/s", 0},
    [M_OPEN] = {"open", "ms", 2},
    [M_RSS] = {"rss_per_key", "B/key", 1},
    [M_RSS_ANON] = {"rss_anon_per_key", "B/key", 1},
    [M_KEYDIR] = {"keydir_beyond_key", "B/key", 1},
};

#define MAX_RUNS 15

static double results[NENGINES][NMETRICS][MAX_RUNS]; /* NAN where not measured */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *values, int n)
{
    double v[MAX_RUNS];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(values[i]))
            v[m++] = values[i];
    if (m == 0)
        return NAN;
    qsort(v, (size_t)m, sizeof v[0], compare_doubles);
    return m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
}

/* ============================== the measuring loop ============================== */

struct workload {
    size_t nkeys;
    const uint32_t *put_order; /* a random permutation of the keys */
    const uint32_t *get_order; /* another one */
    uint64_t scan_sum;         /* what a correct scan's checksum is */
};

static void engine_dir(char *out, size_t size, const struct engine *e, int run, const char *what)
{
    int n = snprintf(out, size, "%s/%s-run%d-%s", temp_root, e->name, run + 1, what);
    if (n < 0 || (size_t)n >= size)
        die("path too long under %s", temp_root);
}

/* Puts every key in the given order (ascending when order is NULL); returns ops/s. */
static double timed_puts(const struct engine *e, void *db, const struct workload *w,
                         const uint32_t *order)
{
    char key[KEY_BYTES];
    uint8_t value[VALUE_BYTES];
    double start = now_seconds();
    for (size_t i = 0; i < w->nkeys; i++) {
        uint64_t k = order ? order[i] : i;
        make_key(k, key);
        make_value(k, value);
        e->put(db, key, KEY_BYTES, value, VALUE_BYTES);
    }
    if (e->flush)
        e->flush(db);
    return (double)w->nkeys / (now_seconds() - start);
}

/* Gets count keys in the given order, checking each value; returns ops/s. */
static double timed_gets(const struct engine *e, void *db, const uint32_t *order, size_t count)
{
    char key[KEY_BYTES];
    uint8_t expected[VALUE_BYTES];
    double start = now_seconds();
    for (size_t i = 0; i < count; i++) {
        make_key(order[i], key);
        make_value(order[i], expected);
        const void *value;
        size_t vlen;
        e->get(db, key, KEY_BYTES, &value, &vlen);
        if (vlen != VALUE_BYTES || memcmp(value, expected, VALUE_BYTES) != 0)
            die("%s: wrong value for key %.*s", e->name, KEY_BYTES, key);
    }
    return (double)count / (now_seconds() - start);
}

static void measure(const struct engine *e, size_t ei, int run, const struct workload *w)
{
    double *r[NMETRICS];
    for (int m = 0; m < NMETRICS; m++)
        r[m] = &results[ei][m][run];
    char dir[4200];

    /* Sequential puts into a fresh store. */
    engine_dir(dir, sizeof dir, e, run, "seq");
    void *db = e->open(e, dir, w->nkeys);
    *r[M_SEQ_PUT] = timed_puts(e, db, w, NULL);
    e->close(db);
    remove_tree(dir);

    /* Random puts into a fresh store, with the memory it takes. Freed heap is returned to
     * the system first so that the growth counts pages this load touches. */
    engine_dir(dir, sizeof dir, e, run, "random");
    malloc_trim(0);
    struct rss before = read_rss();
    db = e->open(e, dir, w->nkeys);
    *r[M_RANDOM_PUT] = timed_puts(e, db, w, w->put_order);
    struct rss after = read_rss();
    *r[M_RSS] = (after.total_bytes - before.total_bytes) / (double)w->nkeys;
    *r[M_RSS_ANON] = (after.anon_bytes - before.anon_bytes) / (double)w->nkeys;
    if (e->keydir_bytes)
        *r[M_KEYDIR] = (double)e->keydir_bytes(db) / (double)w->nkeys - KEY_BYTES;
    if (e->puts_only) {
        e->close(db);
        remove_tree(dir);
        return;
    }

    /* Random gets on that store, warm: a first pass, then the timed one. */
    timed_gets(e, db, w->get_order, w->nkeys);
    *r[M_RANDOM_GET] = timed_gets(e, db, w->get_order, w->nkeys);

    /* An ordered scan of every key and value. */
    struct scan_check check = {0, 0};
    double start = now_seconds();
    e->scan(db, &check);
    *r[M_SCAN] = (double)w->nkeys / (now_seconds() - start);
    if (check.count != w->nkeys || check.sum != w->scan_sum)
        die("%s: scan saw %llu keys (expected %zu) or wrong order or data", e->name,
            (unsigned long long)check.count, w->nkeys);

    /* Reopen the store holding every key (warm: its files are in the page cache). */
    e->close(db);
    start = now_seconds();
    db = e->open(e, dir, w->nkeys);
    *r[M_OPEN] = (now_seconds() - start) * 1e3;
    timed_gets(e, db, w->put_order, w->nkeys < REOPEN_CHECKS ? w->nkeys : REOPEN_CHECKS);
    e->close(db);
    remove_tree(dir);
}

/* ============================== report ============================== */

static void print_report(const bool *enabled, int runs)
{
    double med[NENGINES][NMETRICS];
    for (size_t e = 0; e < NENGINES; e++)
        for (int m = 0; m < NMETRICS; m++)
            med[e][m] = enabled[e] ? median(results[e][m], runs) : NAN;

    for (int m = 0; m < NMETRICS; m++)
        for (size_t e = 0; e < NENGINES; e++) {
            if (isnan(med[e][m]))
                continue;
            printf("bench: %s %s %.*f %s\n", engines[e].name, metrics[m].name, metrics[m].decimals,
                   med[e][m], metrics[m].unit);
        }

    const double *ours = med[E_RAFTCASK];
    for (int m = 0; m < NMETRICS; m++)
        for (size_t e = 0; e < NENGINES; e++) {
            if (e == E_RAFTCASK || isnan(ours[m]) || isnan(med[e][m]))
                continue;
            double ratio = med[e][m] > 0 ? ours[m] / med[e][m] : NAN;
            printf("ratio: %s raftcask/%s %.3f\n", metrics[m].name, engines[e].name, ratio);
        }

    printf("# targets, from the medians above\n");
    if (!isnan(ours[M_RANDOM_PUT]) && !isnan(med[E_LEVELDB][M_RANDOM_PUT])) {
        double x = ours[M_RANDOM_PUT] / med[E_LEVELDB][M_RANDOM_PUT];
        printf("target: random_put raftcask/leveldb >= 2.00 (individual puts): %.3f %s\n", x,
               x >= 2.0 ? "PASS" : "MISS");
    }
    if (!isnan(ours[M_RANDOM_GET]) && !isnan(med[E_LMDB][M_RANDOM_GET])) {
        double x = ours[M_RANDOM_GET] / med[E_LMDB][M_RANDOM_GET];
        printf("target: random_get raftcask/lmdb >= 0.80: %.3f %s\n", x,
               x >= 0.8 ? "PASS" : "MISS");
    }
    if (!isnan(ours[M_KEYDIR])) {
        double x = ours[M_KEYDIR];
        printf("target: keydir_beyond_key <= 64.0 B/key: %.1f %s\n", x,
               x <= 64.0 ? "PASS" : "MISS");
    }
}

/* ============================== main ============================== */

static bool engine_selected(const char *list, const char *name)
{
    if (!list || !*list)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

int main(void)
{
    size_t nkeys = (size_t)env_long("BENCH_KEYS", 1000000, 1, 100000000);
    int runs = (int)env_long("BENCH_RUNS", 3, 1, MAX_RUNS);
    const char *selection = getenv("BENCH_ENGINES");
    bool enabled[NENGINES];
    for (size_t e = 0; e < NENGINES; e++)
        enabled[e] = engine_selected(selection, engines[e].name);

    const char *tmp = getenv("TMPDIR");
    int n = snprintf(temp_root, sizeof temp_root, "%s/raftcask-bench-XXXXXX",
                     tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof temp_root)
        die("TMPDIR too long");
    if (!mkdtemp(temp_root)) {
        temp_root[0] = '\0';
        die("mkdtemp: %s", strerror(errno));
    }

    for (size_t e = 0; e < NENGINES; e++)
        for (int m = 0; m < NMETRICS; m++)
            for (int r = 0; r < MAX_RUNS; r++)
                results[e][m][r] = NAN;

    make_pool();
    struct workload w = {
        .nkeys = nkeys,
        .put_order = make_permutation(nkeys, SEED_PUT_ORDER),
        .get_order = make_permutation(nkeys, SEED_GET_ORDER),
        .scan_sum = expected_scan_sum(nkeys),
    };

    printf("# raftcask store benchmark: %zu keys of %d bytes, values of %d bytes, medians of %d"
           " runs, engines interleaved within each run; nothing is fsynced by the benchmark.\n",
           nkeys, KEY_BYTES, VALUE_BYTES, runs);
    for (size_t e = 0; e < NENGINES; e++)
        if (enabled[e])
            fputs(engine_notes[e], stdout);
    printf(
        "# Throughputs (ops/s, keys/s): higher is better. open (ms) and memory (B/key): lower\n"
        "#   is better. Every ratio is raftcask's figure / the reference's, for all metrics.\n"
        "# rss_per_key: growth of VmRSS while loading the random_put store, / keys; includes\n"
        "#   the pages of mmapped files (LMDB's map, raftcask's data files) = page cache.\n"
        "# rss_anon_per_key: growth of RssAnon over the same load: heap and private memory\n"
        "#   only (raftcask's key directory; LevelDB's memtable and caches, which are bounded).\n"
        "# keydir_beyond_key: rc_store_stats().keydir_bytes / keys - %d (raftcask only, so no\n"
        "#   ratio line: the references keep no per-key index in memory).\n"
        "# open: reopen of the store holding every key, files warm in the page cache.\n",
        KEY_BYTES);
    fflush(stdout);

    double start = now_seconds();
    for (int run = 0; run < runs; run++)
        for (size_t e = 0; e < NENGINES; e++) {
            if (!enabled[e])
                continue;
            measure(&engines[e], e, run, &w);
            printf("# run %d/%d %s:", run + 1, runs, engines[e].name);
            for (int m = 0; m < NMETRICS; m++)
                if (!isnan(results[e][m][run]))
                    printf(" %s=%.*f", metrics[m].name, metrics[m].decimals, results[e][m][run]);
            printf("\n");
            fflush(stdout);
        }

    print_report(enabled, runs);
    printf("# total time %.1f s\n", now_seconds() - start);

    free((void *)w.put_order);
    free((void *)w.get_order);
    remove_tree(temp_root);
    return 0;
}

/*
 * store.c — the Bitcask engine: open and recovery, reads, writes, scans, views, the worker.
 *
 * NOTES ON THE DESIGN OF THE STORE
 *
 * Files (DIR/):
 *   NNNNNN.data   records (record.h), appended in order; the highest id is the active file
 *   NNNNNN.hint   the records of a sealed data file without values (hint.h)
 *   LOCK          flock()ed by the open store
 *   *.tmp, *.merging   leftovers of an interrupted atomic write or merge; deleted at open
 *
 * Invariants:
 *   1. Replaying every record of every data file in ascending (file id, offset) order, with
 *      put = insert/replace, delete = remove, clear = remove all, gives the key directory.
 *      Every state change below keeps this true of the files, so open can rebuild it.
 *   2. Only the active file changes; a sealed file never changes again (until it is
 *      deleted whole by a merge, or cut by open after an incomplete revision, invariant 6). A hint
 * exists only for a sealed file and describes it exactly (it names the file's size).
 *   3. The key directory points each live key at its newest PUT record, and that record is
 *      inside the written prefix (size) of a file in the file table.
 *   4. applied_revision is the highest revision of any record ever written; merges carry it
 *      over in a MARK record, so it never goes back across restarts.
 *   5. A write changes memory only after everything that can fail has succeeded: space is
 *      reserved (roll) first, then the key directory is updated (may fail with ENOMEM, and
 *      then nothing was written), then the record is copied into the map (cannot fail).
 *   6. With atomic_revisions, a record counts at open only if a COMMIT record follows it in
 *      (file id, offset) order: open replays the records between two commits only when it
 *      reaches the second, and cuts off what follows the last commit (open.c). Everything
 *      before the last commit belongs to complete revisions, because the caller commits a
 *      revision only after its last write and merge starts only right after a commit
 *      (merge.c); so a crash at any byte loses whole revisions, never part of one.
 *
 * State changes: rc_store_put/delete/clear/mark/commit → store_append (record into the
 * active file's map); store_roll (seal the active file, create the next; unseal it again
 * when the next cannot be made); load_data_file and hint_load at open (rebuild, truncating
 * a torn tail); merge.c (rewrite, swap, delete).
 *
 * Concurrency: one mutex (mu) guards the key directory, the file table and the counters;
 * every public call takes it. The worker thread writes hints and merges without holding mu
 * except for short steps: it reads sealed files through their maps and a clone of the key
 * directory, which no one else modifies.
 */
#include "store_impl.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "common/log.h"
#include "hint.h"
#include "raftcask.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define DEFAULT_MAX_FILE_BYTES (64ull << 20)
#define MAX_FILE_BYTES_LIMIT   (1ull << 31) /* offsets are u32 */

static rc_store_hook_fn test_hook;
static void *test_hook_ctx;

void rc_store_set_test_hook(rc_store_hook_fn fn, void *ctx)
{
    test_hook = fn;
    test_hook_ctx = ctx;
}

void store_hook(const char *point)
{
    if (test_hook)
        test_hook(point, test_hook_ctx);
}

static int64_t default_clock(void *ctx)
{
    (void)ctx;
    return rc_now_ms();
}

void rc_store_options_init(struct rc_store_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_file_bytes = DEFAULT_MAX_FILE_BYTES;
    o->max_key_bytes = 64u << 10;
    o->max_value_bytes = 512u << 20;
    o->clock_ms = default_clock;
}

static int64_t store_now(const struct rc_store *s)
{
    return s->opts.clock_ms(s->opts.clock_ctx);
}

static bool is_expired(const struct kd_meta *m, int64_t now)
{
    return m->expiry_ms != 0 && m->expiry_ms <= now;
}

/* ============================== file table ============================== */

struct datafile *store_find_file(struct datafile *const *files, size_t n, uint32_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (files[mid]->id == id)
            return files[mid];
        if (files[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Takes over the caller's reference to f. */
int store_files_insert(struct rc_store *s, struct datafile *f)
{
    if (s->nfiles == s->files_cap) {
        size_t cap = s->files_cap ? s->files_cap * 2 : 16;
        struct datafile **a = rc_realloc(s->files, cap * sizeof *a);
        if (!a)
            return RC_ENOMEM;
        s->files = a;
        s->files_cap = cap;
    }
    size_t pos = s->nfiles;
    while (pos > 0 && s->files[pos - 1]->id > f->id)
        pos--;
    memmove(s->files + pos + 1, s->files + pos, (s->nfiles - pos) * sizeof *s->files);
    s->files[pos] = f;
    s->nfiles++;
    return 0;
}

/* Drops the table's reference to f. */
void store_files_remove(struct rc_store *s, struct datafile *f)
{
    for (size_t i = 0; i < s->nfiles; i++) {
        if (s->files[i] == f) {
            memmove(s->files + i, s->files + i + 1, (s->nfiles - i - 1) * sizeof *s->files);
            s->nfiles--;
            datafile_unref(f);
            return;
        }
    }
}

int store_read_record(struct datafile *const *files, size_t n, const void *key, size_t klen,
                      const struct kd_meta *meta, struct record *out)
{
    struct datafile *f = store_find_file(files, n, meta->file_id);
    if (!f || (uint64_t)meta->offset + record_size((uint32_t)klen, meta->value_len) > f->size)
        return RC_ECORRUPT;
    if (record_decode(f->map + meta->offset, f->size - meta->offset, out) != RECORD_OK ||
        out->kind != RECORD_PUT || out->key_len != klen || out->value_len != meta->value_len ||
        memcmp(out->key, key, klen) != 0) {
        rc_error("%s: record at offset %u fails its checksum or does not match the key "
                 "directory",
                 f->path, meta->offset);
        return RC_ECORRUPT;
    }
    return 0;
}

/* ============================== the worker ============================== */

int store_queue_job(struct rc_store *s, struct store_job *job)
{
    job->next = NULL;
    if (s->jobs_tail)
        s->jobs_tail->next = job;
    else
        s->jobs_head = job;
    s->jobs_tail = job;
    pthread_cond_broadcast(&s->cv);
    return 0;
}

int store_queue_hint(struct rc_store *s, struct datafile *f)
{
    struct store_job *job = rc_calloc(1, sizeof *job);
    if (!job)
        return RC_ENOMEM; /* the file just has no hint: open will read it instead */
    datafile_ref(f);
    job->kind = JOB_HINT;
    job->file = f;
    return store_queue_job(s, job);
}

void *store_worker_main(void *arg)
{
    struct rc_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->jobs_head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        struct store_job *job = s->jobs_head;
        if (!job)
            break; /* stopping, and every queued job is done */
        s->jobs_head = job->next;
        if (!s->jobs_head)
            s->jobs_tail = NULL;
        s->worker_busy = true;
        pthread_mutex_unlock(&s->mu);
        if (job->kind == JOB_HINT) {
            if (hint_write(s->dir, job->file) != 0)
                rc_warn("%s: could not write its hint; open will read the data file",
                        job->file->path);
            datafile_unref(job->file);
        } else {
            merge_run(s, job->merge);
        }
        rc_free(job);
        pthread_mutex_lock(&s->mu);
        s->worker_busy = false;
        pthread_cond_broadcast(&s->cv); /* rc_store_move waits for an idle worker */
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ============================== writing ============================== */

/* Seals the active file and makes a new one with id next_id and room for min_capacity. */
int store_roll(struct rc_store *s, uint32_t next_id, size_t min_capacity)
{
    char path[PATH_MAX];
    size_t capacity = s->opts.max_file_bytes;
    if (capacity < min_capacity)
        capacity = min_capacity;
    /* Make room in the table first: after sealing, nothing may fail half-way. */
    if (s->nfiles == s->files_cap) {
        size_t cap = s->files_cap * 2;
        struct datafile **a = rc_realloc(s->files, cap * sizeof *a);
        if (!a)
            return RC_ENOMEM;
        s->files = a;
        s->files_cap = cap;
    }
    struct datafile *old = s->active, *next;
    datafile_path(path, sizeof path, s->dir, next_id, ".data");
    int rc = datafile_new(path, next_id, &next); /* allocation before anything is changed */
    if (rc != 0)
        return rc;
    rc = datafile_seal(old);
    if (rc != 0)
        goto fail;
    store_hook("roll:sealed");
    rc = datafile_create_file(next, capacity);
    if (rc == 0) {
        rc = rc_fsync_dir(s->dir);
        if (rc != 0)
            unlink(path);
    }
    if (rc != 0 && datafile_unseal(old) == 0) {
        /* No room for the next file (a full disk): the sealed file takes writes again, with
         * the room it had, so a roll that was only asked for (a merge starting) costs
         * nothing, and a write that needed it fails alone. A crash meanwhile finds it the
         * last file, sealed, and makes it active again at open. */
        datafile_unref(next);
        rc_warn("store %s: cannot start data file %u (%s); file %u stays active", s->dir, next_id,
                rc_strerror(rc), old->id);
        return rc;
    }
    if (rc != 0)
        goto fail;
    store_files_insert(s, next); /* cannot fail: room was made above */
    s->active = next;
    s->synced_size = 0;
    s->sync_unrecorded = false;
    if (old->size > 0)
        store_queue_hint(s, old);
    return 0;
fail:
    datafile_unref(next);
    /* The active file may be sealed or half-rolled: refuse further writes rather than guess. */
    rc_error("store %s: rolling data file %u failed (%s); refusing further writes", s->dir, old->id,
             rc_strerror(rc));
    s->failed = rc;
    return rc;
}

/* Makes sure the active file has room for len more bytes (rolling if needed), plus a SYNC
 * record when one is due. */
static int reserve_space(struct rc_store *s, size_t len)
{
    struct datafile *a = s->active;
    if (s->sync_unrecorded)
        len += RECORD_HEADER_SIZE;
    int rc = 0;
    if (a->size + len > a->map_len || (a->size > 0 && a->size + len > s->opts.max_file_bytes))
        rc = a->size == 0 ? datafile_make_writable(a, len) /* a record larger than a file */
                          : store_roll(s, a->id + 1, len);
    if (rc != 0)
        return rc;
    if (s->sync_unrecorded) { /* a valid no-op record: harmless if the caller then fails */
        a = s->active;
        record_encode(a->map + a->size, RECORD_SYNC, s->synced_size, 0, NULL, 0, NULL, 0);
        a->size += RECORD_HEADER_SIZE;
        s->total_bytes += RECORD_HEADER_SIZE;
        s->sync_unrecorded = false;
    }
    return 0;
}

/* Copies a record into the active file; space must have been reserved. Returns its offset. */
static uint32_t store_append(struct rc_store *s, enum record_kind kind, uint64_t revision,
                             int64_t expiry_ms, const void *key, uint32_t klen, const void *value,
                             uint32_t vlen)
{
    struct datafile *a = s->active;
    uint32_t offset = (uint32_t)a->size;
    size_t len = record_size(klen, vlen);
    record_encode(a->map + offset, kind, revision, expiry_ms, key, klen, value, vlen);
    a->size += len;
    s->total_bytes += len;
    if (revision > s->applied_revision)
        s->applied_revision = revision;
    if (kind == RECORD_COMMIT) {
        s->committed_revision = revision;
        s->uncommitted = false;
    } else if (s->opts.atomic_revisions) {
        s->uncommitted = true;
    }
    return offset;
}

/* Accounts for a key directory change: old (if any) is replaced by new_meta (if any). */
static void account(struct rc_store *s, const void *key, size_t klen, const struct kd_meta *old,
                    const struct kd_meta *new_meta)
{
    if (old) {
        s->live_bytes -= record_size((uint32_t)klen, old->value_len);
        if (old->expiry_ms)
            s->keys_with_expiry--;
    }
    if (new_meta) {
        s->live_bytes += record_size((uint32_t)klen, new_meta->value_len);
        if (new_meta->expiry_ms)
            s->keys_with_expiry++;
    }
    (void)key;
}

static int check_writable(struct rc_store *s)
{
    return s->failed ? RC_ECLOSED : 0;
}

int rc_store_put(struct rc_store *s, const void *key, size_t klen, const void *value, size_t vlen,
                 int64_t expiry_ms, uint64_t revision)
{
    if (klen > s->opts.max_key_bytes || vlen > s->opts.max_value_bytes)
        return RC_ETOOBIG;
    if (expiry_ms < 0)
        return RC_EINVAL;
    pthread_mutex_lock(&s->mu);
    int rc = check_writable(s);
    if (rc == 0)
        rc = reserve_space(s, record_size((uint32_t)klen, (uint32_t)vlen));
    if (rc == 0) {
        struct kd_meta meta = {.file_id = s->active->id,
                               .offset = (uint32_t)s->active->size,
                               .value_len = (uint32_t)vlen,
                               .revision = revision,
                               .expiry_ms = expiry_ms};
        struct kd_meta old;
        bool replaced;
        rc = keydir_put(s->kd, key, klen, &meta, &old, &replaced);
        if (rc == 0) {
            store_append(s, RECORD_PUT, revision, expiry_ms, key, (uint32_t)klen, value,
                         (uint32_t)vlen);
            account(s, key, klen, replaced ? &old : NULL, &meta);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int rc_store_delete(struct rc_store *s, const void *key, size_t klen, uint64_t revision)
{
    if (klen > s->opts.max_key_bytes)
        return RC_ENOTFOUND;
    pthread_mutex_lock(&s->mu);
    int rc = check_writable(s);
    if (rc == 0)
        rc = reserve_space(s, record_size((uint32_t)klen, 0));
    if (rc == 0) {
        struct kd_meta old;
        rc = keydir_delete(s->kd, key, klen, &old);
        if (rc == 0) {
            store_append(s, RECORD_DELETE, revision, 0, key, (uint32_t)klen, NULL, 0);
            account(s, key, klen, &old, NULL);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int rc_store_clear(struct rc_store *s, uint64_t revision)
{
    struct keydir *fresh;
    int rc = keydir_new(&fresh);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    rc = check_writable(s);
    if (rc == 0)
        rc = reserve_space(s, RECORD_HEADER_SIZE);
    if (rc == 0) {
        store_append(s, RECORD_CLEAR, revision, 0, NULL, 0, NULL, 0);
        struct keydir *old = s->kd;
        s->kd = fresh;
        fresh = old;
        s->live_bytes = 0;
        s->keys_with_expiry = 0;
    }
    pthread_mutex_unlock(&s->mu);
    keydir_free(fresh); /* the old map (or the unused new one); freed outside the lock */
    return rc;
}

int store_commit(struct rc_store *s, uint64_t revision)
{
    if (!s->uncommitted && revision <= s->committed_revision)
        return 0; /* nothing to end: the commit is already in the file */
    if (revision < s->applied_revision)
        return RC_EINVAL; /* a write of a later revision would be committed with this one */
    int rc = reserve_space(s, RECORD_HEADER_SIZE);
    if (rc == 0)
        store_append(s, RECORD_COMMIT, revision, 0, NULL, 0, NULL, 0);
    return rc;
}

int rc_store_commit_revision(struct rc_store *s, uint64_t revision)
{
    if (!s->opts.atomic_revisions)
        return 0;
    pthread_mutex_lock(&s->mu);
    int rc = check_writable(s);
    if (rc == 0)
        rc = store_commit(s, revision);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int rc_store_mark_revision(struct rc_store *s, uint64_t revision)
{
    if (s->opts.atomic_revisions)
        return rc_store_commit_revision(s, revision);
    pthread_mutex_lock(&s->mu);
    int rc = check_writable(s);
    if (rc == 0 && revision > s->applied_revision) {
        rc = reserve_space(s, RECORD_HEADER_SIZE);
        if (rc == 0)
            store_append(s, RECORD_MARK, revision, 0, NULL, 0, NULL, 0);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

uint64_t store_visible_revision(const struct rc_store *s)
{
    return s->opts.atomic_revisions ? s->committed_revision : s->applied_revision;
}

uint64_t rc_store_applied_revision(struct rc_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t r = store_visible_revision(s);
    pthread_mutex_unlock(&s->mu);
    return r;
}

int rc_store_sync(struct rc_store *s)
{
    /* The fsync runs without the mutex, so gets and puts go on meanwhile; it covers the
     * bytes written before it started, which is what synced_size then records. */
    pthread_mutex_lock(&s->mu);
    struct datafile *f = s->active;
    uint64_t size = f->size;
    if (size == s->synced_size) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    datafile_ref(f);
    pthread_mutex_unlock(&s->mu);
    int rc = rc_fsync_file(f->fd, f->path);
    pthread_mutex_lock(&s->mu);
    if (rc == 0 && s->active == f && size > s->synced_size) {
        s->synced_size = size;
        s->sync_unrecorded = true;
    }
    pthread_mutex_unlock(&s->mu);
    datafile_unref(f);
    return rc;
}

/* ============================== reading ============================== */

static int buf_set(struct rc_buf *b, const void *data, size_t len)
{
    if (len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < len + 1)
            cap *= 2;
        char *d = rc_realloc(b->data, cap);
        if (!d)
            return RC_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data, data, len);
    b->data[len] = '\0'; /* convenient for callers that parse numbers */
    b->len = len;
    return 0;
}

int rc_store_get(struct rc_store *s, const void *key, size_t klen, struct rc_buf *value,
                 struct rc_item_meta *meta)
{
    return rc_store_get_at(s, key, klen, 0, value, meta);
}

int rc_store_get_at(struct rc_store *s, const void *key, size_t klen, int64_t now_ms,
                    struct rc_buf *value, struct rc_item_meta *meta)
{
    struct kd_meta m;
    pthread_mutex_lock(&s->mu);
    int rc = keydir_get(s->kd, key, klen, &m);
    if (rc == 0 && is_expired(&m, now_ms ? now_ms : store_now(s)))
        rc = RC_ENOTFOUND;
    if (rc == 0 && value) {
        struct record r;
        rc = store_read_record(s->files, s->nfiles, key, klen, &m, &r);
        if (rc == 0)
            rc = buf_set(value, r.value, r.value_len);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && meta) {
        meta->revision = m.revision;
        meta->expiry_ms = m.expiry_ms;
        meta->value_len = m.value_len;
    }
    return rc;
}

/* A scan over a key directory and the files its entries point into. */
struct scan_ctx {
    struct datafile *const *files;
    size_t nfiles;
    const struct rc_store_range *range;
    rc_store_scan_fn fn;
    void *ctx;
    int64_t now;
    size_t seen;
    int error;
};

#define SCAN_LIMIT_REACHED 1

static int scan_one(const void *key, size_t len, const struct kd_meta *meta, void *arg)
{
    struct scan_ctx *c = arg;
    if (!c->range->include_expired && is_expired(meta, c->now))
        return 0;
    struct rc_item_meta im = {meta->revision, meta->expiry_ms, meta->value_len};
    const void *value = NULL;
    if (c->range->with_values) {
        struct record r;
        int rc = store_read_record(c->files, c->nfiles, key, len, meta, &r);
        if (rc != 0) {
            c->error = rc;
            return rc;
        }
        value = r.value;
    }
    int rc = c->fn(key, len, value, meta->value_len, &im, c->ctx);
    if (rc != 0) {
        c->error = rc;
        return rc;
    }
    if (c->range->limit && ++c->seen >= c->range->limit)
        return SCAN_LIMIT_REACHED;
    return 0;
}

static int scan_keydir(const struct keydir *kd, struct datafile *const *files, size_t nfiles,
                       int64_t now, const struct rc_store_range *range, rc_store_scan_fn fn,
                       void *ctx)
{
    struct scan_ctx c = {files, nfiles, range, fn, ctx, range->now_ms ? range->now_ms : now, 0, 0};
    keydir_scan(kd, &range->lo, &range->hi, range->reverse, scan_one, &c);
    return c.error;
}

int rc_store_scan(struct rc_store *s, const struct rc_store_range *range, rc_store_scan_fn fn,
                  void *ctx)
{
    pthread_mutex_lock(&s->mu);
    int rc = scan_keydir(s->kd, s->files, s->nfiles, store_now(s), range, fn, ctx);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void rc_store_range_prefix(struct rc_store_range *r, const void *prefix, size_t plen,
                           unsigned char *succ)
{
    /* The keys with a prefix are those in [prefix, successor): the successor is the prefix
     * with trailing 0xFF bytes dropped and its last byte incremented (none if all 0xFF). */
    const unsigned char *p = prefix;
    size_t slen = plen;
    while (slen > 0 && p[slen - 1] == 0xFF)
        slen--;
    r->lo = (struct kd_bound){plen ? KD_BOUND_INCLUSIVE : KD_BOUND_OPEN, prefix, plen};
    r->hi = (struct kd_bound){KD_BOUND_OPEN, NULL, 0};
    if (slen > 0) {
        memcpy(succ, prefix, slen);
        succ[slen - 1]++;
        r->hi = (struct kd_bound){KD_BOUND_EXCLUSIVE, succ, slen};
    }
}

int rc_store_scan_prefix(struct rc_store *s, const void *prefix, size_t plen, bool reverse,
                         size_t limit, bool with_values, rc_store_scan_fn fn, void *ctx)
{
    struct rc_store_range range = {.reverse = reverse, .limit = limit, .with_values = with_values};
    unsigned char *succ = rc_malloc(plen ? plen : 1);
    if (!succ)
        return RC_ENOMEM;
    rc_store_range_prefix(&range, prefix, plen, succ);
    int rc = rc_store_scan(s, &range, fn, ctx);
    rc_free(succ);
    return rc;
}

struct sample_ctx {
    rc_store_scan_fn fn;
    void *ctx;
};

static int sample_one(const void *key, size_t len, const struct kd_meta *meta, void *arg)
{
    struct sample_ctx *c = arg;
    struct rc_item_meta im = {meta->revision, meta->expiry_ms, meta->value_len};
    return c->fn(key, len, NULL, meta->value_len, &im, c->ctx);
}

int rc_store_sample(struct rc_store *s, uint64_t r, rc_store_scan_fn fn, void *ctx)
{
    struct sample_ctx c = {fn, ctx};
    pthread_mutex_lock(&s->mu);
    int rc = keydir_sample(s->kd, r, sample_one, &c);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t rc_store_count(struct rc_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = keydir_count(s->kd);
    pthread_mutex_unlock(&s->mu);
    return n;
}

int rc_store_stats(struct rc_store *s, struct rc_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->keys = keydir_count(s->kd);
    out->keys_with_expiry = s->keys_with_expiry;
    out->live_bytes = s->live_bytes;
    out->dead_bytes = s->total_bytes - s->live_bytes;
    out->files = s->nfiles;
    out->keydir_bytes = keydir_memory(s->kd);
    out->applied_revision = store_visible_revision(s);
    out->merges = s->merges;
    out->merges_failed = s->merges_failed;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ============================== views ============================== */

struct rc_store_view {
    struct rc_store *store;
    struct keydir *kd;
    struct datafile **files;
    size_t nfiles;
    uint64_t revision;
};

int rc_store_view_open(struct rc_store *s, struct rc_store_view **out)
{
    struct rc_store_view *v = rc_calloc(1, sizeof *v);
    if (!v)
        return RC_ENOMEM;
    pthread_mutex_lock(&s->mu);
    int rc = keydir_clone(s->kd, &v->kd);
    if (rc == 0) {
        v->files = rc_malloc((s->nfiles ? s->nfiles : 1) * sizeof *v->files);
        if (!v->files) {
            keydir_free(v->kd);
            rc = RC_ENOMEM;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < s->nfiles; i++) {
            v->files[i] = s->files[i];
            datafile_ref(s->files[i]);
        }
        v->nfiles = s->nfiles;
        v->revision = store_visible_revision(s);
        v->store = s;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) {
        rc_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

uint64_t rc_store_view_revision(const struct rc_store_view *v)
{
    return v->revision;
}

int rc_store_view_scan(struct rc_store_view *v, const struct rc_store_range *range,
                       rc_store_scan_fn fn, void *ctx)
{
    return scan_keydir(v->kd, v->files, v->nfiles, store_now(v->store), range, fn, ctx);
}

void rc_store_view_close(struct rc_store_view *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nfiles; i++)
        datafile_unref(v->files[i]);
    rc_free(v->files);
    keydir_free(v->kd);
    rc_free(v);
}

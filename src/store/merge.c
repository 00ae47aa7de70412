/*
 * merge.c — rewriting the live records of the sealed data files into new files.
 *
 * NOTES ON THE DESIGN OF MERGE
 *
 * merge_begin (loop thread, mu held) takes, at one instant: a clone of the key directory
 * (O(1)), a reference to every data file (the set F), and seals the active file by rolling
 * to a new active file whose id leaves a gap of R unused ids after the old one. At that
 * instant every key points into F. The merge's output files take ids from that gap, so in
 * id order they come after every file of F and before every file written since.
 *
 * merge_run (worker, mostly without mu):
 *   1. Copy, in key order, the record each clone entry points at into output files named
 *      NNNNNN.data.merging; the last ends with a MARK record (a COMMIT with
 *      atomic_revisions) carrying the store's applied revision, since tombstones, marks and
 *      commits of F are not copied.
 *   2. Seal (fsync) the outputs, rename them to NNNNNN.data, fsync the directory, write
 *      their hints.
 *   3. Swap in: add the outputs to the file table; then, a chunk of keys at a time under mu,
 *      point each key whose entry still names the record that was copied at its copy.
 *      Keys written since the merge began are left alone.
 *   4. Drop F from the table and delete its files and hints in ascending id order.
 *
 * Why a crash at any point leaves the same contents (replay order is by file id, store.c
 * invariant 1): before step 2's renames, the outputs are *.merging and open deletes them.
 * After the renames, F and the outputs both exist: the outputs replay after F and hold
 * copies of exactly the records that were newest in F, so they change nothing; files newer
 * than the merge replay after both. During step 4 a suffix of F remains with the outputs:
 * every record of that suffix that is newest for its key is also in the outputs, and every
 * record that was superseded is superseded by a later record of F (in the suffix too) or
 * by a newer file; dropping a tombstone is safe because the records it deleted were in F
 * and are deleted first (ascending order). The MARK keeps the applied revision.
 *
 * With atomic_revisions (store.c invariant 6) merge must never copy a record of an
 * incomplete revision: the copy would sit before a commit (the outputs' own, or a later
 * one) and survive the cut at open. So merge_begin refuses (RC_EBUSY) while a revision is
 * open: at that instant the last record of F that counts is a commit, every record the
 * clone points at is committed, and the outputs end with a COMMIT of that same revision.
 * Writes made during the merge go to files after the outputs, so an incomplete revision
 * is always after the last commit in replay order, whatever step a crash interrupts:
 * before the renames there are F (ending with the commit) and the newer files; after them
 * F, the outputs (ending with the commit) and the newer files; while F is deleted, a
 * suffix of it, the outputs and the newer files. Files older than the latest commit alone
 * would not do as F: the outputs take ids after the old active file, so they would replay
 * after newer records of the file holding that commit.
 */
#include "store_impl.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "hint.h"
#include "raftcask.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SWAP_CHUNK 4096

struct new_location {
    uint32_t file_id;
    uint32_t offset;
};

struct merge_job {
    struct keydir *clone;
    struct datafile **inputs; /* F, sorted by id, each with a reference */
    size_t ninputs;
    uint32_t first_output_id, reserved_ids;
    uint64_t revision; /* the store's applied revision when the merge began */

    struct datafile **outputs;
    size_t noutputs, outputs_cap;
    struct new_location *locations; /* per clone entry, in key order */
    size_t nlocations, locations_cap;
    bool swapping; /* the key directory may point into the outputs */
};

static bool swap_started(const struct merge_job *job)
{
    return job->swapping;
}

void merge_job_free(struct merge_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->ninputs; i++)
        datafile_unref(job->inputs[i]);
    for (size_t i = 0; i < job->noutputs; i++)
        datafile_unref(job->outputs[i]);
    rc_free(job->inputs);
    rc_free(job->outputs);
    rc_free(job->locations);
    keydir_free(job->clone);
    rc_free(job);
}

int merge_begin(struct rc_store *s)
{
    if (s->merging)
        return RC_EBUSY;
    if (s->failed)
        return RC_ECLOSED;
    /* With atomic_revisions a merge starts only right after a commit: see the notes. */
    if (s->opts.atomic_revisions && s->uncommitted)
        return RC_EBUSY;
    struct merge_job *job = rc_calloc(1, sizeof *job);
    struct store_job *sj = rc_calloc(1, sizeof *sj);
    if (!job || !sj)
        goto nomem;
    job->inputs = rc_malloc(s->nfiles * sizeof *job->inputs);
    if (!job->inputs || keydir_clone(s->kd, &job->clone) != 0)
        goto nomem;
    /* Output count bound: two consecutive outputs hold more than one file's worth of bytes,
     * and the live bytes are at most the bytes of F, so twice the number of file-sized
     * pieces in F, plus 2, ids always suffice (counted in bytes, not files: files written
     * under a larger --data-file-size hold more than one piece). */
    uint64_t pieces = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        pieces += s->files[i]->size / s->opts.max_file_bytes + 1;
    if (pieces > UINT32_MAX / 4) {
        rc_free(job->inputs);
        keydir_free(job->clone);
        rc_free(job);
        rc_free(sj);
        return RC_EINVAL;
    }
    job->reserved_ids = (uint32_t)(2 * pieces + 2);
    job->first_output_id = s->active->id + 1;
    job->revision = store_visible_revision(s);
    int rc = store_roll(s, s->active->id + 1 + job->reserved_ids, 0);
    if (rc != 0) {
        keydir_free(job->clone);
        rc_free(job->inputs);
        rc_free(job);
        rc_free(sj);
        return rc;
    }
    /* Every file but the new active one is an input. */
    for (size_t i = 0; i + 1 < s->nfiles; i++) {
        job->inputs[job->ninputs++] = s->files[i];
        datafile_ref(s->files[i]);
    }
    sj->kind = JOB_MERGE;
    sj->merge = job;
    s->merging = true;
    s->merge_result = 0;
    atomic_store(&s->merge_abort, false);
    return store_queue_job(s, sj);
nomem:
    if (job) {
        rc_free(job->inputs);
        rc_free(job);
    }
    rc_free(sj);
    return RC_ENOMEM;
}

/* ============================== copying ============================== */

static int add_output(struct rc_store *s, struct merge_job *job, size_t min_capacity)
{
    if (job->noutputs == job->reserved_ids) {
        rc_warn("merge of %s needs more than %u output files; abandoned", s->dir,
                job->reserved_ids);
        return RC_EBUSY;
    }
    if (job->noutputs == job->outputs_cap) {
        size_t cap = job->outputs_cap ? job->outputs_cap * 2 : 8;
        struct datafile **a = rc_realloc(job->outputs, cap * sizeof *a);
        if (!a)
            return RC_ENOMEM;
        job->outputs = a;
        job->outputs_cap = cap;
    }
    if (job->noutputs > 0) {
        int rc = datafile_seal(job->outputs[job->noutputs - 1]);
        if (rc != 0)
            return rc;
    }
    uint32_t id = job->first_output_id + (uint32_t)job->noutputs;
    size_t capacity = s->opts.max_file_bytes;
    if (capacity < min_capacity)
        capacity = min_capacity;
    char path[PATH_MAX];
    datafile_path(path, sizeof path, s->dir, id, ".data.merging");
    struct datafile *f;
    int rc = datafile_create(path, id, capacity, &f);
    if (rc != 0)
        return rc;
    job->outputs[job->noutputs++] = f;
    return 0;
}

/* Copies len encoded bytes into the current output, starting a new one when full. */
static int output_bytes(struct rc_store *s, struct merge_job *job, const uint8_t *bytes, size_t len,
                        struct new_location *where)
{
    struct datafile *out = job->noutputs ? job->outputs[job->noutputs - 1] : NULL;
    if (!out || out->size + len > out->map_len ||
        (out->size > 0 && out->size + len > s->opts.max_file_bytes)) {
        int rc = add_output(s, job, len);
        if (rc != 0)
            return rc;
        out = job->outputs[job->noutputs - 1];
    }
    memcpy(out->map + out->size, bytes, len);
    if (where) {
        where->file_id = out->id;
        where->offset = (uint32_t)out->size;
    }
    out->size += len;
    return 0;
}

struct copy_ctx {
    struct rc_store *s;
    struct merge_job *job;
};

static int copy_one(const void *key, size_t klen, const struct kd_meta *meta, void *arg)
{
    struct copy_ctx *c = arg;
    struct merge_job *job = c->job;
    if (atomic_load_explicit(&c->s->merge_abort, memory_order_relaxed))
        return RC_ECLOSED;
    struct record r;
    int rc = store_read_record(job->inputs, job->ninputs, key, klen, meta, &r);
    if (rc != 0)
        return rc;
    if (job->nlocations == job->locations_cap) {
        size_t cap = job->locations_cap ? job->locations_cap * 2 : 1024;
        struct new_location *a = rc_realloc(job->locations, cap * sizeof *a);
        if (!a)
            return RC_ENOMEM;
        job->locations = a;
        job->locations_cap = cap;
    }
    /* The record is copied as encoded: its CRC, revision and expiry stay as they were. */
    const uint8_t *start = r.key - RECORD_HEADER_SIZE;
    return output_bytes(c->s, job, start, r.total_len, &job->locations[job->nlocations++]);
}

static int write_outputs(struct rc_store *s, struct merge_job *job)
{
    struct copy_ctx c = {s, job};
    struct kd_bound open = {KD_BOUND_OPEN, NULL, 0};
    int rc = keydir_scan(job->clone, &open, &open, false, copy_one, &c);
    if (rc != 0)
        return rc;
    /* Last, after the copies: with atomic_revisions a commit counts only the records before
     * it, and the outputs then hold the store's last commit until newer ones are written. */
    uint8_t mark[RECORD_HEADER_SIZE];
    record_encode(mark, s->opts.atomic_revisions ? RECORD_COMMIT : RECORD_MARK, job->revision, 0,
                  NULL, 0, NULL, 0);
    rc = output_bytes(s, job, mark, sizeof mark, NULL);
    if (rc != 0)
        return rc;
    rc = datafile_seal(job->outputs[job->noutputs - 1]);
    store_hook("merge:written");
    return rc;
}

/* Renames every output from .data.merging to .data; after this the merge is committed. */
static int publish_outputs(struct rc_store *s, struct merge_job *job)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < job->noutputs; i++) {
        struct datafile *f = job->outputs[i];
        datafile_path(path, sizeof path, s->dir, f->id, ".data");
        char *final_path = rc_memdup(path, strlen(path));
        if (!final_path)
            return RC_ENOMEM;
        if (rename(f->path, final_path) != 0) {
            rc_warn("rename %s: %m", f->path);
            rc_free(final_path);
            return RC_EIO;
        }
        rc_free(f->path);
        f->path = final_path;
        if (i == 0)
            store_hook("merge:renamed-first");
    }
    int rc = rc_fsync_dir(s->dir);
    store_hook("merge:renamed");
    for (size_t i = 0; rc == 0 && i < job->noutputs; i++)
        if (hint_write(s->dir, job->outputs[i]) != 0)
            rc_warn("%s: no hint written; open will read the data file", job->outputs[i]->path);
    store_hook("merge:hinted");
    return rc;
}

/* Removes the outputs (each under its current name). Leaving a renamed output behind would
 * be unsafe: a later merge could drop a tombstone that the output's stale copy needs. */
static void discard_outputs(struct merge_job *job)
{
    for (size_t i = 0; i < job->noutputs; i++)
        unlink(job->outputs[i]->path);
}

/* ============================== swapping in ============================== */

struct swap_ctx {
    struct rc_store *s;
    struct merge_job *job;
    size_t index; /* of the next clone entry, in key order */
    size_t in_chunk;
    char *last_key; /* the last key swapped, to resume the next chunk after it */
    size_t last_len;
    int error;
};

static int swap_one(const void *key, size_t klen, const struct kd_meta *meta, void *arg)
{
    struct swap_ctx *c = arg;
    struct rc_store *s = c->s;
    const struct new_location *loc = &c->job->locations[c->index++];
    struct kd_meta live;
    if (keydir_get(s->kd, key, klen, &live) == 0 && live.file_id == meta->file_id &&
        live.offset == meta->offset) {
        live.file_id = loc->file_id;
        live.offset = loc->offset;
        int rc = keydir_put(s->kd, key, klen, &live, NULL, NULL);
        if (rc != 0) {
            c->error = rc;
            return rc;
        }
    }
    if (++c->in_chunk == SWAP_CHUNK) {
        char *k = rc_memdup(key, klen);
        if (!k) {
            c->error = RC_ENOMEM;
            return RC_ENOMEM;
        }
        rc_free(c->last_key);
        c->last_key = k;
        c->last_len = klen;
        return 1; /* end of chunk: release the lock, then resume after this key */
    }
    return 0;
}

static int swap_in(struct rc_store *s, struct merge_job *job)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    size_t inserted = 0;
    for (; inserted < job->noutputs && rc == 0; inserted++) {
        datafile_ref(job->outputs[inserted]);
        rc = store_files_insert(s, job->outputs[inserted]);
        if (rc != 0) {
            datafile_unref(job->outputs[inserted]);
            break;
        }
        s->total_bytes += job->outputs[inserted]->size;
    }
    if (rc != 0) {
        /* Take the outputs out again: nothing points at them yet, and the caller deletes
         * them (an output left on disk outside the table could resurrect a key later). */
        for (size_t i = 0; i < inserted; i++) {
            s->total_bytes -= job->outputs[i]->size;
            store_files_remove(s, job->outputs[i]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != 0)
        return rc;

    job->swapping = true;
    struct swap_ctx c = {s, job, 0, 0, NULL, 0, 0};
    struct kd_bound hi = {KD_BOUND_OPEN, NULL, 0};
    for (;;) {
        struct kd_bound lo = {KD_BOUND_OPEN, NULL, 0};
        if (c.last_key)
            lo = (struct kd_bound){KD_BOUND_EXCLUSIVE, c.last_key, c.last_len};
        c.in_chunk = 0;
        pthread_mutex_lock(&s->mu);
        int r = keydir_scan(job->clone, &lo, &hi, false, swap_one, &c);
        pthread_mutex_unlock(&s->mu);
        if (c.error || r == 0)
            break;
    }
    rc_free(c.last_key);
    return c.error;
}

static void drop_inputs(struct rc_store *s, struct merge_job *job)
{
    char path[PATH_MAX];
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < job->ninputs; i++) {
        s->total_bytes -= job->inputs[i]->size;
        store_files_remove(s, job->inputs[i]);
    }
    s->merges++;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < job->ninputs; i++) {
        /* The data file first: a hint without its data file is ignored (and removed). */
        unlink(job->inputs[i]->path);
        datafile_path(path, sizeof path, s->dir, job->inputs[i]->id, ".hint");
        unlink(path);
        if (i == 0)
            store_hook("merge:deleted-first");
    }
    rc_fsync_dir(s->dir);
    store_hook("merge:done");
}

void merge_run(struct rc_store *s, struct merge_job *job)
{
    int rc = write_outputs(s, job);
    if (rc == 0)
        rc = publish_outputs(s, job);
    if (rc != 0) /* nothing points at the outputs yet: remove them, renamed or not */
        discard_outputs(job);
    if (rc == 0) {
        rc = swap_in(s, job);
        if (rc == RC_ENOMEM && !swap_started(job))
            discard_outputs(job);
    }
    if (rc == 0)
        drop_inputs(s, job);
    if (rc != 0 && rc != RC_ECLOSED)
        rc_warn("merge of %s failed: %s", s->dir, rc_strerror(rc));
    merge_job_free(job);
    pthread_mutex_lock(&s->mu);
    s->merging = false;
    s->merge_result = rc;
    s->merges_failed += rc != 0 && rc != RC_ECLOSED; /* not one cancelled (a restore) */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ============================== public ============================== */

int rc_store_merge_start(struct rc_store *s)
{
    pthread_mutex_lock(&s->mu);
    int rc = merge_begin(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int rc_store_merge_wait(struct rc_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->merging)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->merge_result;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int rc_store_merge(struct rc_store *s)
{
    int rc = rc_store_merge_start(s);
    return rc != 0 ? rc : rc_store_merge_wait(s);
}

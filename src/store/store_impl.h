/*
 * store_impl.h — the store's private state, shared by store.c (open, reads, writes, views)
 * and merge.c (the worker thread's merge). Nothing outside src/store includes this.
 */
#ifndef RC_STORE_STORE_IMPL_H
#define RC_STORE_STORE_IMPL_H

#include "datafile.h"
#include "keydir.h"
#include "record.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>

enum store_job_kind { JOB_HINT, JOB_MERGE };

struct merge_job; /* merge.c */

struct store_job {
    enum store_job_kind kind;
    struct datafile *file;   /* JOB_HINT: the sealed file (a reference) */
    struct merge_job *merge; /* JOB_MERGE */
    struct store_job *next;
};

struct rc_store {
    char *dir;
    struct rc_store_options opts;
    int lock_fd;

    /* Everything below is guarded by mu, except where noted. */
    pthread_mutex_t mu;
    struct keydir *kd;
    struct datafile **files; /* sorted by id; the active file is the last */
    size_t nfiles, files_cap;
    struct datafile *active;
    uint64_t applied_revision; /* the highest revision of any record written */
    /* With opts.atomic_revisions: the revision of the last commit record, and whether a
     * record that needs a commit (put, delete, clear, mark) was written after it. */
    uint64_t committed_revision;
    bool uncommitted;
    uint64_t live_bytes;  /* bytes of the records keys point at */
    uint64_t total_bytes; /* bytes of all data files */
    uint64_t keys_with_expiry;
    uint64_t merges;
    uint64_t merges_failed;
    int failed; /* non-zero once a write failed: writes are refused */
    /* The active file's bytes below synced_size are on disk (an fsync completed). When
     * sync_unrecorded, the next write first appends a SYNC record saying so, which lets
     * recovery tell bit rot (below a recorded sync) from unsynced loss (above it). */
    uint64_t synced_size;
    bool sync_unrecorded;

    /* Worker thread: hint writing and merge. */
    pthread_t worker;
    bool worker_running;
    bool worker_busy; /* a job taken off the queue is running (without mu) */
    pthread_cond_t cv; /* signals jobs, and the end of a merge */
    struct store_job *jobs_head, *jobs_tail;
    bool stopping;
    bool merging;
    int merge_result;
    atomic_bool merge_abort; /* read by the worker without mu */
};

/* store.c helpers used by merge.c (called with mu held unless said otherwise). */
struct datafile *store_find_file(struct datafile *const *files, size_t n, uint32_t id);
int store_files_insert(struct rc_store *s, struct datafile *f);
void store_files_remove(struct rc_store *s, struct datafile *f);
int store_roll(struct rc_store *s, uint32_t next_id, size_t min_capacity);
int store_queue_job(struct rc_store *s, struct store_job *job);
/* Queues the writing of f's hint on the worker (takes a reference to f). */
int store_queue_hint(struct rc_store *s, struct datafile *f);
void *store_worker_main(void *store);
void store_hook(const char *point);
/* Appends a commit record for revision (atomic_revisions only); with mu held, or at open. */
int store_commit(struct rc_store *s, uint64_t revision);
/* The revision rc_store_applied_revision reports (committed with atomic_revisions). */
uint64_t store_visible_revision(const struct rc_store *s);
/* Reads the PUT record a key directory entry points at; RC_ECORRUPT if it is not one. */
int store_read_record(struct datafile *const *files, size_t n, const void *key, size_t klen,
                      const struct kd_meta *meta, struct record *out);

/* merge.c */
int merge_begin(struct rc_store *s);                       /* with mu held: snapshot and queue */
void merge_run(struct rc_store *s, struct merge_job *job); /* on the worker, without mu */
void merge_job_free(struct merge_job *job);

#endif

/*
 * open.c — opening a store (lock, recovery, torn-tail truncation) and closing it.
 *
 * Recovery replays the data files in ascending id order (invariant 1 of store.c), each from
 * its hint when it has a usable one, else by reading its records:
 *  - In the last file (the one that was active), an invalid record is the end of what
 *    survived (a crash during a write, the file's preallocated space, or pages lost by a
 *    power failure after the last fsync): the file is cut there and a line is logged —
 *    unless a later SYNC record shows an fsync had covered that offset, which makes it
 *    corruption (below).
 *  - An invalid record followed by valid ones, in any file, is corruption (bit rot): open
 *    fails naming the file and offset, unless options.repair, which drops the bad bytes
 *    and reports them. So is an invalid record in a sealed file, which was fsynced whole.
 *  - With atomic_revisions, records count only once a COMMIT follows them: they are held
 *    back until then (load_record), and those after the last commit — an incomplete
 *    revision — are cut off the files (drop_incomplete_revision), even from sealed files,
 *    whose hints are removed first. A store without any commit is adopted whole.
 * Then the last file becomes the active file again if it is still small, else a new one is
 * made.
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

/* ============================== replay ============================== */

struct pending;

struct load_ctx {
    struct rc_store *s;
    uint32_t file_id;
    struct pending *pending; /* with atomic_revisions: records waiting for a commit */
};

/* Applies one record (from a data file or a hint) to the key directory being rebuilt. */
static int load_apply(const struct load_item *it, void *arg)
{
    struct load_ctx *lc = arg;
    struct rc_store *s = lc->s;
    const struct record *r = &it->rec;
    /* A SYNC record's revision field holds an offset, and a PAD's is zero: neither counts. */
    if (r->kind != RECORD_SYNC && r->kind != RECORD_PAD && r->revision > s->applied_revision)
        s->applied_revision = r->revision;
    struct kd_meta old;
    bool replaced = false;
    int rc = 0;
    switch (r->kind) {
    case RECORD_PUT: {
        struct kd_meta m = {lc->file_id, it->offset, r->value_len, r->revision, r->expiry_ms};
        rc = keydir_put(s->kd, r->key, r->key_len, &m, &old, &replaced);
        if (rc == 0) {
            s->live_bytes += r->total_len;
            s->keys_with_expiry += m.expiry_ms != 0;
        }
        break;
    }
    case RECORD_DELETE:
        rc = keydir_delete(s->kd, r->key, r->key_len, &old);
        replaced = rc == 0;
        if (rc == RC_ENOTFOUND)
            rc = 0;
        break;
    case RECORD_CLEAR: {
        struct keydir *fresh;
        rc = keydir_new(&fresh);
        if (rc == 0) {
            keydir_free(s->kd);
            s->kd = fresh;
            s->live_bytes = 0;
            s->keys_with_expiry = 0;
        }
        break;
    }
    case RECORD_COMMIT:
        s->committed_revision = r->revision;
        break;
    case RECORD_MARK:
    case RECORD_PAD:
    case RECORD_SYNC:
        break;
    }
    if (replaced) {
        s->live_bytes -= record_size(r->key_len, old.value_len);
        s->keys_with_expiry -= old.expiry_ms != 0;
    }
    return rc;
}

/* ============================== atomic revisions ============================== */

/*
 * With atomic_revisions, replay holds back every record until a COMMIT record follows it
 * (store.c invariant 6): the records since the last commit are kept here, keys copied (a
 * hint's keys are freed when its file is done, and a revision may span files), and applied
 * in order when the next commit is read. What is still here at the end is an incomplete
 * revision: open cuts it off the files (drop_incomplete_revision). PAD and SYNC records
 * change nothing and are not kept.
 */
struct pending_item {
    struct record rec; /* rec.key is set from key_at when the item is applied */
    size_t key_at;     /* offset of the key in keys */
    uint32_t file_id, offset;
};

struct pending {
    struct pending_item *items;
    size_t n, cap;
    uint8_t *keys;
    size_t keys_len, keys_cap;
    uint64_t max_revision; /* of the items */
    bool seen_commit;
    uint32_t cut_file_id; /* just after the last commit read: where an incomplete revision */
    uint64_t cut_offset;  /* starts */
};

static void pending_free(struct pending *p)
{
    rc_free(p->items);
    rc_free(p->keys);
}

static int pending_push(struct pending *p, const struct load_item *it, uint32_t file_id)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct pending_item *a = rc_realloc(p->items, cap * sizeof *a);
        if (!a)
            return RC_ENOMEM;
        p->items = a;
        p->cap = cap;
    }
    size_t klen = it->rec.key_len;
    if (p->keys_len + klen > p->keys_cap) {
        size_t cap = p->keys_cap ? p->keys_cap : 4096;
        while (cap < p->keys_len + klen)
            cap *= 2;
        uint8_t *k = rc_realloc(p->keys, cap);
        if (!k)
            return RC_ENOMEM;
        p->keys = k;
        p->keys_cap = cap;
    }
    if (klen)
        memcpy(p->keys + p->keys_len, it->rec.key, klen);
    struct pending_item *pi = &p->items[p->n++];
    pi->rec = it->rec;
    pi->rec.key = NULL;
    pi->rec.value = NULL;
    pi->key_at = p->keys_len;
    pi->file_id = file_id;
    pi->offset = it->offset;
    p->keys_len += klen;
    if (it->rec.revision > p->max_revision)
        p->max_revision = it->rec.revision;
    return 0;
}

/* Applies the held records in order: a commit has shown their revision complete. */
static int pending_apply(struct rc_store *s, struct pending *p)
{
    for (size_t i = 0; i < p->n; i++) {
        struct pending_item *pi = &p->items[i];
        struct load_item it = {.rec = pi->rec, .offset = pi->offset};
        it.rec.key = p->keys + pi->key_at;
        struct load_ctx lc = {s, pi->file_id, NULL};
        int rc = load_apply(&it, &lc);
        if (rc != 0)
            return rc;
    }
    p->n = 0;
    p->keys_len = 0;
    p->max_revision = 0;
    return 0;
}

/* The replay callback for data files and hints: applies at once, or through the pending
 * records with atomic_revisions. */
static int load_record(const struct load_item *it, void *arg)
{
    struct load_ctx *lc = arg;
    struct pending *p = lc->pending;
    if (!p)
        return load_apply(it, lc);
    if (it->rec.kind == RECORD_PAD || it->rec.kind == RECORD_SYNC)
        return 0;
    if (it->rec.kind != RECORD_COMMIT)
        return pending_push(p, it, lc->file_id);
    int rc = pending_apply(lc->s, p);
    if (rc == 0)
        rc = load_apply(it, lc);
    p->seen_commit = true;
    p->cut_file_id = lc->file_id;
    p->cut_offset = it->offset + it->rec.total_len;
    return rc;
}

/*
 * Called when every file is replayed. Records still pending follow the last commit: an
 * incomplete revision. Cut them off the files (the later files whole, the commit's file
 * after the commit), so that no later commit can ever make them count. Any subset of these
 * steps leaves the same last commit, so a crash during them is finished by the next open.
 * A store without any commit (written without the option, or new) is adopted: its records
 * are applied, and open then writes a commit (*adopt).
 */
static int drop_incomplete_revision(struct rc_store *s, struct pending *p, bool *last_sealed,
                                    bool *adopt)
{
    *adopt = !p->seen_commit;
    if (!p->seen_commit) {
        if (p->n > 0)
            rc_info("%s: no commit record (written without atomic revisions): adopting its "
                    "contents up to revision %llu as complete",
                    s->dir, (unsigned long long)p->max_revision);
        return pending_apply(s, p);
    }
    if (p->n == 0)
        return 0;
    uint64_t dropped = 0;
    for (size_t i = 0; i < s->nfiles; i++) {
        struct datafile *f = s->files[i];
        if (f->id > p->cut_file_id)
            dropped += f->size;
        else if (f->id == p->cut_file_id && f->size > p->cut_offset)
            dropped += f->size - p->cut_offset;
    }
    rc_info("%s: dropping %llu bytes of an incomplete revision %llu", s->dir,
            (unsigned long long)dropped, (unsigned long long)p->max_revision);
    char path[PATH_MAX];
    while (s->nfiles > 0 && s->files[s->nfiles - 1]->id > p->cut_file_id) {
        struct datafile *f = s->files[s->nfiles - 1];
        datafile_path(path, sizeof path, s->dir, f->id, ".hint");
        unlink(path);
        if (unlink(f->path) != 0) {
            rc_error("remove %s: %m", f->path);
            return RC_EIO;
        }
        s->total_bytes -= f->size;
        store_files_remove(s, f);
    }
    struct datafile *f = s->nfiles ? s->files[s->nfiles - 1] : NULL;
    if (!f || f->id != p->cut_file_id)
        return RC_ECORRUPT; /* cannot happen: the commit was read from that file */
    /* The hint first: a hint must never describe a file that differs from it. */
    datafile_path(path, sizeof path, s->dir, f->id, ".hint");
    unlink(path);
    int rc = rc_fsync_dir(s->dir);
    if (rc == 0 && f->size > p->cut_offset) {
        s->total_bytes -= f->size - p->cut_offset;
        rc = datafile_truncate(f, p->cut_offset);
    }
    *last_sealed = false; /* the commit's file is the last now, and becomes active again */
    p->n = 0;
    return rc;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Overwrites [off, off + len) with PAD records, so that the file is valid again and later
 * opens (and hint writing) need no repair. Ranges shorter than a header cannot be padded. */
static int pad_range(struct datafile *f, uint64_t off, uint64_t len)
{
    if (len < RECORD_HEADER_SIZE)
        return RC_EINVAL;
    uint8_t *buf = rc_calloc(1, 1 << 16);
    if (!buf)
        return RC_ENOMEM;
    int rc = 0;
    while (len > 0 && rc == 0) {
        uint64_t piece = len;
        if (piece > RECORD_MAX_VALUE)
            piece = RECORD_MAX_VALUE; /* leaves >= 32 bytes for the next pad, or none */
        if (len - piece > 0 && len - piece < RECORD_HEADER_SIZE)
            piece -= RECORD_HEADER_SIZE;
        uint32_t vlen = (uint32_t)(piece - RECORD_HEADER_SIZE);
        /* The CRC covers the header's tail and vlen zero bytes. */
        uint8_t hdr[RECORD_HEADER_SIZE];
        record_encode(hdr, RECORD_PAD, 0, 0, NULL, 0, NULL, 0);
        memcpy(hdr + 28, &vlen, 4);
        uint32_t crc = rc_crc32c(0, hdr + 4, RECORD_HEADER_SIZE - 4);
        for (uint64_t done = 0; done < vlen; done += 1 << 16) {
            size_t n = vlen - done < (1 << 16) ? (size_t)(vlen - done) : 1 << 16;
            crc = rc_crc32c(crc, buf, n);
            if (rc == 0)
                rc =
                    rc_pwrite_all(f->fd, buf, n, (off_t)(off + RECORD_HEADER_SIZE + done), f->path);
        }
        memcpy(hdr, &crc, 4);
        if (rc == 0)
            rc = rc_pwrite_all(f->fd, hdr, sizeof hdr, (off_t)off, f->path);
        off += piece;
        len -= piece;
    }
    rc_free(buf);
    return rc == 0 ? rc_fsync_file(f->fd, f->path) : rc;
}

static void report_dropped(struct rc_store *s, struct datafile *f, uint64_t off, uint64_t len)
{
    int padded = pad_range(f, off, len);
    rc_warn("%s: repair dropped %llu corrupt bytes at offset %llu%s", f->path,
            (unsigned long long)len, (unsigned long long)off,
            padded == 0 ? " (overwritten with padding)"
                        : " (left in place: the next open needs repair again)");
    if (s->opts.on_repair)
        s->opts.on_repair(f->path, off, len, s->opts.on_repair_ctx);
}

/* True when a valid SYNC record at or after `from` names an fsynced size beyond offset. */
static bool synced_beyond(const struct datafile *f, uint64_t from, uint64_t offset)
{
    uint64_t pos = from;
    while (pos < f->size) {
        struct record r;
        if (record_decode(f->map + pos, f->size - pos, &r) != RECORD_OK) {
            pos = record_find_next_valid(f->map, f->size, pos);
            continue;
        }
        if (r.kind == RECORD_SYNC && r.revision > offset)
            return true;
        pos += r.total_len;
    }
    return false;
}

/* Replays every record of f, handling a bad tail or bad records as the file comment says. */
static int load_data_file(struct rc_store *s, struct datafile *f, bool is_last,
                          struct pending *pending)
{
    struct load_ctx lc = {s, f->id, pending};
    uint64_t off = 0;
    while (off < f->size) {
        struct load_item it = {.offset = (uint32_t)off};
        if (record_decode(f->map + off, f->size - off, &it.rec) == RECORD_OK) {
            int rc = load_record(&it, &lc);
            if (rc != 0)
                return rc;
            off += it.rec.total_len;
            continue;
        }
        uint64_t next = record_find_next_valid(f->map, f->size, off);
        /* In the file that was active, bytes written after the last completed fsync may be
         * lost in any pattern by a power failure, so valid records after a bad one prove
         * nothing unless a SYNC record says an fsync covered the bad offset. */
        if (next < f->size && is_last && !synced_beyond(f, next, off))
            next = f->size;
        if (next >= f->size && (is_last || s->opts.repair)) {
            uint64_t dropped = f->size - off;
            if (!is_last)
                report_dropped(s, f, off, dropped);
            else if (all_zero(f->map + off, dropped))
                rc_info("%s: cut %llu bytes of zero-filled tail at offset %llu", f->path,
                        (unsigned long long)dropped, (unsigned long long)off);
            else
                rc_warn("%s: cut %llu bytes of torn tail at offset %llu (an interrupted "
                        "write)",
                        f->path, (unsigned long long)dropped, (unsigned long long)off);
            return datafile_truncate(f, off);
        }
        if (!s->opts.repair) {
            rc_error("%s: corrupt record at offset %llu%s; refusing to open (a store opened "
                     "with the repair option drops it)",
                     f->path, (unsigned long long)off,
                     next < f->size ? ", followed by valid records" : " of a sealed file");
            return RC_ECORRUPT;
        }
        report_dropped(s, f, off, next - off);
        off = next;
    }
    return 0;
}

/* ============================== directory ============================== */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Parses "NNNNNN<suffix>" (digits only before the suffix); 0 if name is not of that form. */
static int parse_name(const char *name, const char *suffix, uint32_t *id)
{
    size_t n = strlen(name), sl = strlen(suffix);
    if (n <= sl || n - sl > 10 || strcmp(name + n - sl, suffix) != 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n - sl; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return 0;
    *id = (uint32_t)v;
    return 1;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), sl = strlen(suffix);
    return n >= sl && strcmp(name + n - sl, suffix) == 0;
}

/* Lists data file ids (sorted) and removes leftovers of interrupted writes and merges. */
static int list_dir(const char *dir, uint32_t **ids_out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d) {
        rc_error("open directory %s: %s", dir, strerror(errno));
        return RC_EIO;
    }
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        uint32_t id;
        if (has_suffix(e->d_name, ".tmp") || has_suffix(e->d_name, ".merging")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            rc_info("removing %s, left by an interrupted write or merge", path);
            unlink(path);
        } else if (parse_name(e->d_name, ".data", &id)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                uint32_t *a = rc_realloc(ids, cap * sizeof *a);
                if (!a) {
                    rc = RC_ENOMEM;
                    break;
                }
                ids = a;
            }
            ids[n++] = id;
        }
    }
    closedir(d);
    if (rc != 0) {
        rc_free(ids);
        return rc;
    }
    if (n > 1)
        qsort(ids, n, sizeof *ids, cmp_u32);
    *ids_out = ids;
    *n_out = n;
    return 0;
}

/* Removes hints whose data file is gone (a merge deleted it before its hint). */
static void remove_orphan_hints(struct rc_store *s)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        uint32_t id;
        if (parse_name(e->d_name, ".hint", &id) && !store_find_file(s->files, s->nfiles, id)) {
            snprintf(path, sizeof path, "%s/%s", s->dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static int take_lock(struct rc_store *s)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) {
        rc_error("open %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(s->lock_fd);
        s->lock_fd = -1;
        if (err == EWOULDBLOCK) {
            rc_error("store %s is in use by another process or handle (LOCK is held)", s->dir);
            return RC_ELOCKED;
        }
        rc_error("lock %s: %s", path, strerror(err));
        return RC_EIO;
    }
    return 0;
}

/* ============================== open ============================== */

/* Replays every data file; on return the file table holds them all. pending is NULL
 * without atomic_revisions. */
static int load_files(struct rc_store *s, const uint32_t *ids, size_t n, bool *last_sealed,
                      struct pending *pending)
{
    char path[PATH_MAX];
    *last_sealed = true;
    for (size_t i = 0; i < n; i++) {
        struct datafile *f;
        datafile_path(path, sizeof path, s->dir, ids[i], ".data");
        int rc = datafile_open(path, ids[i], &f);
        if (rc != 0)
            return rc;
        rc = store_files_insert(s, f);
        if (rc != 0) {
            datafile_unref(f);
            return rc;
        }
        s->total_bytes += f->size;
        struct load_ctx lc = {s, f->id, pending};
        rc = hint_load(s->dir, f->id, f->size, load_record, &lc);
        bool is_last = i == n - 1;
        if (rc == RC_ECORRUPT) { /* unusable hint: remove it, so a new one gets written */
            datafile_path(path, sizeof path, s->dir, ids[i], ".hint");
            unlink(path);
        }
        if (rc == RC_ENOTFOUND || rc == RC_ECORRUPT) {
            uint64_t before = f->size;
            rc = load_data_file(s, f, is_last && rc == RC_ENOTFOUND, pending);
            s->total_bytes -= before - f->size;
            if (is_last)
                *last_sealed = false;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int rc_store_open(const char *dir, const struct rc_store_options *opts, struct rc_store **out)
{
    struct rc_store *s = rc_calloc(1, sizeof *s);
    if (!s)
        return RC_ENOMEM;
    s->lock_fd = -1;
    if (opts)
        s->opts = *opts;
    else
        rc_store_options_init(&s->opts);
    if (!s->opts.clock_ms) {
        struct rc_store_options d;
        rc_store_options_init(&d);
        s->opts.clock_ms = d.clock_ms;
    }
    int rc = RC_EINVAL;
    if (s->opts.max_file_bytes < 4096 || s->opts.max_file_bytes > (1ull << 31) ||
        s->opts.max_key_bytes > RECORD_MAX_KEY || s->opts.max_value_bytes > RECORD_MAX_VALUE)
        goto fail_free;
    rc = RC_ENOMEM;
    s->dir = rc_memdup(dir, strlen(dir));
    if (!s->dir)
        goto fail_free;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->merge_abort, false);
    rc = rc_mkdir_p(dir);
    if (rc != 0)
        goto fail_sync;
    rc = take_lock(s);
    if (rc != 0)
        goto fail_sync;
    rc = keydir_new(&s->kd);
    if (rc != 0)
        goto fail_lock;

    uint32_t *ids;
    size_t n;
    rc = list_dir(dir, &ids, &n);
    if (rc != 0)
        goto fail_keydir;
    bool last_sealed, adopt = false;
    struct pending pending = {0};
    bool atomic = s->opts.atomic_revisions;
    rc = load_files(s, ids, n, &last_sealed, atomic ? &pending : NULL);
    rc_free(ids);
    if (rc == 0 && atomic)
        rc = drop_incomplete_revision(s, &pending, &last_sealed, &adopt);
    pending_free(&pending);
    if (rc != 0)
        goto fail_files;
    remove_orphan_hints(s);

    /* The active file: the last one again if it was not sealed or is still small (its hint
     * is then removed first, since the file will change), else a new file. */
    struct datafile *last = s->nfiles ? s->files[s->nfiles - 1] : NULL;
    char path[PATH_MAX];
    bool reuse = last && (!last_sealed || last->size < s->opts.max_file_bytes / 2);
    if (reuse && last_sealed) {
        datafile_path(path, sizeof path, dir, last->id, ".hint");
        reuse = unlink(path) == 0 && rc_fsync_dir(dir) == 0;
    }
    if (reuse) {
        rc = datafile_make_writable(last, s->opts.max_file_bytes);
        if (rc != 0)
            goto fail_files;
        s->active = last;
    } else {
        uint32_t id = last ? last->id + 1 : 1;
        struct datafile *f;
        datafile_path(path, sizeof path, dir, id, ".data");
        rc = datafile_create(path, id, s->opts.max_file_bytes, &f);
        if (rc != 0)
            goto fail_files;
        rc = store_files_insert(s, f);
        if (rc != 0) {
            datafile_unref(f);
            unlink(path);
            goto fail_files;
        }
        s->active = f;
    }

    if (pthread_create(&s->worker, NULL, store_worker_main, s) != 0) {
        rc = RC_ENOMEM;
        goto fail_files;
    }
    s->worker_running = true;
    /* Sealed files that had no usable hint get one in the background. */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i + 1 < s->nfiles; i++) {
        datafile_path(path, sizeof path, dir, s->files[i]->id, ".hint");
        if (access(path, F_OK) != 0)
            store_queue_hint(s, s->files[i]);
    }
    /* A store without a commit gets one now, so that its contents count from here on and
     * a crash during the first revision written cannot be taken for an adoption. */
    int adopt_rc = 0;
    if (adopt) {
        s->uncommitted = true;
        adopt_rc = store_commit(s, s->applied_revision);
        if (adopt_rc == 0)
            adopt_rc = rc_fsync_file(s->active->fd, s->active->path);
    }
    pthread_mutex_unlock(&s->mu);
    if (adopt_rc != 0) {
        rc_store_close(s);
        return adopt_rc;
    }
    *out = s;
    return 0;

fail_files:
    for (size_t i = 0; i < s->nfiles; i++)
        datafile_unref(s->files[i]);
    rc_free(s->files);
fail_keydir:
    keydir_free(s->kd);
fail_lock:
    close(s->lock_fd);
fail_sync:
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
fail_free:
    rc_free(s->dir);
    rc_free(s);
    return rc;
}

/* ============================== move ============================== */

int rc_store_move(struct rc_store *s, const char *dir)
{
    char *new_dir = rc_memdup(dir, strlen(dir));
    pthread_mutex_lock(&s->mu);
    /* The worker uses s->dir and the files' paths without mu: let it finish first. A merge
     * may change the files until it ends: they are counted after. */
    rc_store_merge_cancel(s);
    while (s->merging || s->worker_busy)
        pthread_cond_wait(&s->cv, &s->mu);
    size_t n = s->nfiles;
    char **paths = rc_calloc(n ? n : 1, sizeof *paths);
    int rc = new_dir && paths ? 0 : RC_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char path[PATH_MAX];
        datafile_path(path, sizeof path, new_dir, s->files[i]->id, ".data");
        if (!(paths[i] = rc_memdup(path, strlen(path))))
            rc = RC_ENOMEM;
    }
    if (rc == 0 && rename(s->dir, new_dir) != 0) {
        rc_warn("rename %s to %s: %s", s->dir, new_dir, strerror(errno));
        rc = RC_EIO;
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            rc_free(s->files[i]->path);
            s->files[i]->path = paths[i];
            paths[i] = NULL;
        }
        rc_free(s->dir);
        s->dir = new_dir;
        new_dir = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; paths && i < n; i++)
        rc_free(paths[i]);
    rc_free(paths);
    rc_free(new_dir);
    return rc;
}

/* No job queued or running on the worker (with mu held). */
static bool worker_idle(const struct rc_store *s)
{
    return !s->jobs_head && !s->worker_busy && !s->merging;
}

bool rc_store_idle(struct rc_store *s)
{
    pthread_mutex_lock(&s->mu);
    bool idle = worker_idle(s);
    pthread_mutex_unlock(&s->mu);
    return idle;
}

void rc_store_merge_cancel(struct rc_store *s)
{
    atomic_store(&s->merge_abort, true);
}

void rc_store_wait_idle(struct rc_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (!worker_idle(s))
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* ============================== close ============================== */

int rc_store_close(struct rc_store *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    atomic_store(&s->merge_abort, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->worker_running)
        pthread_join(s->worker, NULL);

    /* Seal the active file and give it a hint, so the next open reads no data file; an
     * empty active file is simply removed. */
    int rc = 0;
    struct datafile *a = s->active;
    if (a && a->size == 0) {
        unlink(a->path);
        rc = rc_fsync_dir(s->dir);
    } else if (a && !s->failed) {
        rc = datafile_seal(a);
        if (rc == 0 && hint_write(s->dir, a) != 0)
            rc_warn("%s: no hint written; the next open reads the data file", a->path);
    }
    for (size_t i = 0; i < s->nfiles; i++)
        datafile_unref(s->files[i]);
    rc_free(s->files);
    keydir_free(s->kd);
    close(s->lock_fd);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    rc_free(s->dir);
    rc_free(s);
    return rc;
}

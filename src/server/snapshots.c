/*
 * snapshots.c — snapshots of the store: log compaction, RAFTSNAPSHOT backups, and rebuilding
 * the store from a snapshot that a leader sent.
 *
 * Taking one never blocks the loop for long: on the loop thread the store gives an O(1)
 * view (a copy-on-write clone of the key directory with its data files pinned) at the
 * applied index; a libuv worker thread then fsyncs the store and serialises the view
 * (snapstream.h: zstd-compressed, checksummed records) into the Raft log's snapshot writer
 * or into a backup file; back on the loop thread the snapshot is committed to the log,
 * which drops the entries it covers, and the core is told (raft_node_compacted).
 *
 * A log-compaction snapshot is started by the cluster timer once --snapshot-threshold
 * entries were applied since the last one, and only when the configuration in force was
 * appended at or before the applied index (so that the configuration stored with the
 * snapshot is the one in force at its index). One job runs at a time.
 *
 * Restoring rebuilds the store from the stream in a new directory that then replaces the
 * old one (snapstream.c: crash-safe). A follower sent a snapshot while it runs does it
 * off the loop (restore jobs, below): a worker builds the new store while the old one
 * stays open, the loop swaps the two (renames only), and the node applies nothing until
 * then. At start (a store that lost entries the log no longer has) it is done in place,
 * before anything is served. A store that already holds the snapshot's index is left
 * alone, so a restart does not rewrite the data. A running snapshot job's view must be
 * released before the old store goes: the restore cancels the job (its worker stops at the
 * next record); a backup's client is told it was cancelled.
 */
#include "server.h"

#include "cluster/snapstream.h"
#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum job_kind { JOB_COMPACTION = 1, JOB_BACKUP = 2 };

#define SNAPSHOT_POSTPONE_FACTOR 64
#define SNAPSHOT_RETRY_MAX_MS    60000 /* the longest wait after failed compaction snapshots */

static void restore_swap(struct server *s);

struct snapshot_job {
    struct server *s;
    uv_work_t work;
    enum job_kind kind;
    struct rc_store_view *view;
    uint64_t index, term;
    struct raft_config config;
    char *extra;
    size_t extra_len;
    struct logstore_snapshot_writer *w; /* JOB_COMPACTION */
    char dir[4200], id[96];             /* JOB_BACKUP: DIR/snapshots/<id> */
    struct client *client;              /* JOB_BACKUP: who waits for the id */
    uint64_t restores_at_start;
    atomic_int written; /* set by the worker once it no longer uses the view */
    atomic_int cancel;  /* set by a restore: the worker stops at the next record */
    int rc;
    struct snapshot_info info;
    uint64_t started_ms;
};

/* ============================== the worker ============================== */

static int sink_logstore(void *ctx, const void *buf, size_t len)
{
    return logstore_snapshot_write(ctx, buf, len);
}

static void job_work(uv_work_t *req)
{
    struct snapshot_job *j = req->data;
    /* The store up to the index on disk: a restart then finds it there and need not
     * rebuild it from this snapshot once the log no longer has the entries. */
    j->rc = rc_store_sync(j->s->store);
    if (j->rc == 0) {
        if (j->kind == JOB_COMPACTION) {
            j->rc = snapshot_write_view(j->view, j->extra, j->extra_len, sink_logstore, j->w,
                                        &j->info, &j->cancel);
            if (j->rc == 0) /* here, not in the commit on the loop thread */
                j->rc = logstore_snapshot_sync(j->w);
        } else {
            char path[4300];
            snprintf(path, sizeof path, "%s/state.bin", j->dir);
            j->rc =
                snapshot_write_file(j->view, j->extra, j->extra_len, path, &j->info, &j->cancel);
        }
    }
    rc_store_view_close(j->view);
    j->view = NULL;
    atomic_store(&j->written, 1);
}

/* Node ids are strings here: as JSON numbers they pass 2^53, which many parsers round. */
static int write_backup_meta(struct snapshot_job *j)
{
    struct server *s = j->s;
    char text[8192];
    int n = snprintf(text, sizeof text,
                     "{\n  \"id\": \"%s\",\n  \"index\": %" PRIu64 ",\n  \"term\": %" PRIu64
                     ",\n  \"cluster_id\": \"%016" PRIx64 "\",\n  \"members\": [",
                     j->id, j->index, j->term, s->self.cluster_id);
    for (size_t i = 0; i < s->members.count && n < (int)sizeof text - 512; i++)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "%s\n    {\"id\": \"%" PRIu64 "\", \"client\": \"%s\", \"peer\": \"%s\"}",
                      i ? "," : "", s->members.m[i].id, s->members.m[i].client_addr,
                      s->members.m[i].peer_addr);
    n += snprintf(
        text + n, sizeof text - (size_t)n,
        "\n  ],\n  \"records\": %" PRIu64 ",\n  \"size\": %" PRIu64
        ",\n  \"checksum\": \"crc32c:%08x\",\n  \"format\": \"raftcask-state-v1+zstd\"\n}\n",
        j->info.records, j->info.compressed_bytes, (unsigned)j->info.crc);
    return rc_write_file_atomic(j->dir, "meta.json", text, (size_t)n);
}

static void job_reply(struct snapshot_job *j, const char *text, bool bulk)
{
    if (!j->client)
        return;
    struct resp_buf r;
    resp_buf_init(&r);
    if (bulk)
        resp_add_bulk_cstr(&r, text);
    else
        resp_add_error(&r, text, strlen(text));
    client_unblock(j->client, r.data, r.len);
    resp_buf_free(&r);
    j->client = NULL;
}

/* A compaction snapshot failed: the next attempt waits 1 s, doubling up to a minute. A full
 * disk fails every attempt alike; retried at once, a review saw 73 failures in 4.5 s, each
 * writing megabytes first. */
static void compaction_failed(struct server *s, uint64_t index, int rc)
{
    backoff_failed(&s->snap_backoff, 1000, SNAPSHOT_RETRY_MAX_MS);
    rc_warn("snapshot at index %" PRIu64 " failed: %s; next attempt in %" PRIu64 " s", index,
            rc_strerror(rc), s->snap_backoff.delay_ms / 1000);
}

static void job_done(uv_work_t *req, int status)
{
    struct snapshot_job *j = req->data;
    struct server *s = j->s;
    if (s->snap == j)
        s->snap = NULL;
    int rc = j->rc;
    bool stale = s->restores != j->restores_at_start || s->raft_closed || s->shutting_down;
    if (j->kind == JOB_COMPACTION) {
        if (rc == 0 && !stale) {
            struct logstore *ls = raft_node_logstore(s->raft);
            rc = logstore_snapshot_commit(ls, j->w, j->index, j->term, &j->config);
            j->w = NULL; /* commit frees it, even on failure */
            if (rc == 0)
                rc = raft_node_compacted(s->raft, j->index);
            if (rc == 0) {
                rc_info("snapshot at index %" PRIu64 ": %" PRIu64 " keys, %" PRIu64
                        " bytes compressed, in %" PRIu64 " ms; log compacted",
                        j->index, j->info.records, j->info.compressed_bytes,
                        (uint64_t)server_now_ms() - j->started_ms);
            }
        }
        if (j->w)
            logstore_snapshot_abort(j->w);
        if (rc != 0 && atomic_load(&j->cancel)) {
            rc_info("snapshot at index %" PRIu64 " cancelled: the store was replaced", j->index);
        } else if (rc != 0) {
            compaction_failed(s, j->index, rc);
        } else {
            s->snap_backoff.delay_ms = 0;
        }
    } else {
        if (rc == 0)
            rc = write_backup_meta(j);
        if (rc == 0) {
            rc_info("backup %s written: %" PRIu64 " keys, %" PRIu64 " bytes", j->id,
                    j->info.records, j->info.compressed_bytes);
            job_reply(j, j->id, true);
        } else if (atomic_load(&j->cancel)) {
            rmdir(j->dir); /* empty: the temp file went with the error */
            job_reply(j,
                      "ERR backup cancelled: a snapshot from the leader replaced this node's "
                      "store while it was written; try again",
                      false);
        } else {
            rmdir(j->dir); /* as above: no empty directory that looks like a backup */
            char msg[160];
            snprintf(msg, sizeof msg, "ERR writing the backup failed: %s", rc_strerror(rc));
            job_reply(j, msg, false);
        }
    }
    rc_free(j->extra);
    rc_free(j);
    (void)status;
}

/* ============================== starting a job ============================== */

static struct snapshot_job *job_new(struct server *s, enum job_kind kind)
{
    struct snapshot_job *j = rc_calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->s = s;
    j->kind = kind;
    j->restores_at_start = s->restores;
    j->started_ms = (uint64_t)server_now_ms();
    j->index = rc_store_applied_revision(s->store);
    if (cluster_members_encode(&s->members, &j->extra, &j->extra_len) != 0 ||
        rc_store_view_open(s->store, &j->view) != 0) {
        rc_free(j->extra);
        rc_free(j);
        return NULL;
    }
    j->work.data = j;
    return j;
}

static int job_queue(struct snapshot_job *j)
{
    struct server *s = j->s;
    int rc = uv_queue_work(s->loop, &j->work, job_work, job_done);
    if (rc != 0)
        return RC_EIO;
    s->snap = j;
    return 0;
}

static void job_discard(struct snapshot_job *j)
{
    rc_store_view_close(j->view);
    if (j->w)
        logstore_snapshot_abort(j->w);
    rc_free(j->extra);
    rc_free(j);
}

/* Log compaction once enough entries were applied since the last snapshot. */
/* An entry without commands: it only moves the applied index (leader only). */
static void propose_empty_entry(struct server *s)
{
    struct entry_builder b;
    if (entry_builder_start(&b) != 0)
        return;
    entry_builder_finish(&b, server_now_ms());
    uint64_t index, term;
    cluster_propose(s, b.buf.data, b.buf.len, &index, &term);
    entry_builder_free(&b);
}

/* A follower sent a snapshot needs the entries after it: one that goes quiet (a large
 * transfer, a slow disk) still counts as catching up for PEER_CATCHUP_GRACE_MS after it last
 * answered. */
#define PEER_CATCHUP_GRACE_MS 60000

/* On a leader: a peer that lacks an entry before keep_from (the first entry a compaction at
 * the applied index keeps), so that the compaction would leave it only a snapshot, and that
 * is either being sent a snapshot or rebuilding from one (heard from within the grace), or
 * active and able to catch up from the log as it is (it needs no entry before first). */
static bool active_peer_behind(struct server *s, const struct raft_config *cfg, uint64_t first,
                               uint64_t keep_from)
{
    for (uint32_t i = 0; i < cfg->n_voters + cfg->n_learners; i++) {
        uint64_t id = i < cfg->n_voters ? cfg->voters[i] : cfg->learners[i - cfg->n_voters];
        uint64_t match;
        if (id == s->self.id || raft_node_peer_match(s->raft, id, &match) != 0 ||
            match + 1 >= keep_from)
            continue;
        if (raft_node_peer_after_snapshot(s->raft, id, PEER_CATCHUP_GRACE_MS) ||
            (raft_node_peer_active(s->raft, id) && match + 1 >= first))
            return true;
    }
    return false;
}

void snapshots_tick(struct server *s)
{
    if (s->restore) { /* no snapshot of a store about to be replaced */
        restore_swap(s);
        return;
    }
    uint64_t threshold = s->cfg->snapshot_threshold;
    if (s->snap || !s->raft || threshold == 0 || s->shutting_down ||
        backoff_waiting(&s->snap_backoff))
        return;
    struct raft_status st;
    raft_node_status(s->raft, &st);
    uint64_t last_snapshot = st.snapshot_index;
    uint64_t applied = rc_store_applied_revision(s->store);
    if (st.snapshots_refused_by_peers != s->refusals_seen) {
        /* A follower refused our snapshot's data: is our file damaged? (Checked once per
         * snapshot: it reads the whole file.) Then a new one replaces it. */
        s->refusals_seen = st.snapshots_refused_by_peers;
        if (s->refused_checked_index != last_snapshot) {
            s->refused_checked_index = last_snapshot;
            int rc = logstore_snapshot_verify(raft_node_logstore(s->raft));
            rc_warn("a follower refused the snapshot at index %" PRIu64 " (its checksum); this "
                    "node's file %s",
                    last_snapshot, rc == 0 ? "checks out" : "is damaged: taking a new one");
            if (rc != 0)
                s->force_snapshot = true;
            if (rc != 0 && applied <= last_snapshot)
                propose_empty_entry(s); /* a new snapshot needs a new applied index */
        }
    }
    /* The core must have caught up with a store that is ahead of it after a restart
     * (raft_compacted needs the index applied there too). */
    if (st.config_index > applied || st.applied < applied)
        return;
    if (applied < last_snapshot + threshold && !(s->force_snapshot && applied > last_snapshot))
        return;
    uint64_t trailing = s->cfg->snapshot_trailing < applied ? s->cfg->snapshot_trailing : applied;
    uint64_t keep_from = applied + 1 - trailing; /* the first entry the compaction keeps */
    /* A new snapshot would restart a transfer under way at offset 0 (the old file goes):
     * under steady writes a slow follower never got a whole one. And a follower that has
     * just installed one needs the entries written meanwhile: compacting them away sent it
     * the next snapshot, and so on (a review saw a joiner install six 200 MB snapshots in a
     * row). Postponed while either holds, up to SNAPSHOT_POSTPONE_FACTOR thresholds of log. */
    if ((raft_node_snapshots_in_flight(s->raft) > 0 ||
         active_peer_behind(s, &st.config, st.first_index, keep_from)) &&
        applied < last_snapshot + SNAPSHOT_POSTPONE_FACTOR * threshold && !s->force_snapshot)
        return;
    uint64_t term;
    if (raft_node_term(s->raft, applied, &term) != 0)
        return;
    struct snapshot_job *j = job_new(s, JOB_COMPACTION);
    if (!j)
        return;
    j->term = term;
    j->config = st.config;
    if (rc_store_view_revision(j->view) != applied) {
        job_discard(j);
        return;
    }
    int rc = logstore_snapshot_begin(raft_node_logstore(s->raft), &j->w);
    if (rc != 0 || job_queue(j) != 0) {
        job_discard(j);
        if (rc != 0)
            compaction_failed(s, applied, rc);
        return;
    }
    s->force_snapshot = false;
}

/* RAFTSNAPSHOT / SNAPSHOT: a backup in DIR/snapshots/TERM-INDEX-MS; replies its id. */
static void cmd_raftsnapshot(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct server *s = c->srv;
    (void)argc;
    (void)a;
    if (s->snap) {
        reply_error(c, "ERR a snapshot is being written; try again shortly");
        return;
    }
    if (s->restore) {
        reply_error(c, "ERR this node is rebuilding its store from the leader's snapshot; try "
                       "again shortly");
        return;
    }
    struct snapshot_job *j = job_new(s, JOB_BACKUP);
    if (!j) {
        reply_error(c, "ERR cannot start the backup");
        return;
    }
    struct raft_status st;
    raft_node_status(s->raft, &st);
    uint64_t term = st.term;
    raft_node_term(s->raft, j->index, &term);
    j->term = term;
    snprintf(j->id, sizeof j->id, "%" PRIu64 "-%" PRIu64 "-%" PRIu64, j->term, j->index,
             j->started_ms);
    snprintf(j->dir, sizeof j->dir, "%s/snapshots/%s", s->cfg->dir, j->id);
    if (rc_mkdir_p(j->dir) != 0 || job_queue(j) != 0) {
        job_discard(j);
        reply_error(c, "ERR cannot create the backup directory");
        return;
    }
    j->client = c;
    client_block(c);
}

/* A backup's directory name: TERM-INDEX-MS, three runs of digits. */
static bool backup_name(const char *name)
{
    for (int part = 0; part < 3; part++) {
        if (*name < '0' || *name > '9')
            return false;
        while (*name >= '0' && *name <= '9')
            name++;
        if (*name != (part < 2 ? '-' : '\0'))
            return false;
        name++;
    }
    return true;
}

/* The files a backup writes before its meta.json. */
static const char *const backup_data_files[] = {"state.bin.tmp", "state.bin"};
#define N_BACKUP_DATA_FILES (sizeof backup_data_files / sizeof backup_data_files[0])

static bool is_backup_data_file(const char *name)
{
    for (size_t i = 0; i < N_BACKUP_DATA_FILES; i++)
        if (strcmp(name, backup_data_files[i]) == 0)
            return true;
    return false;
}

/* 1 if dir holds nothing but backup_data_files. */
static bool only_backup_data(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool only = true;
    const struct dirent *e;
    while (only && (e = readdir(d)) != NULL)
        only = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
               is_backup_data_file(e->d_name);
    closedir(d);
    return only;
}

/*
 * A backup's meta.json is written last (atomically), so a backup directory under
 * DIR/snapshots without one is a backup cut short (the node was killed while it wrote it):
 * it looks like a backup id in a listing but is none, and RAFTSNAPSHOT never answered with
 * its id. Removed at start, with a line, when it holds only a backup's own files; anything
 * else is left alone, with a warning.
 */
void snapshots_remove_unfinished(struct server *s)
{
    char root[4200];
    snprintf(root, sizeof root, "%s/snapshots", s->cfg->dir);
    DIR *d = opendir(root);
    if (!d)
        return;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!backup_name(e->d_name))
            continue;
        char dir[4460], path[4480];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(path, sizeof path, "%s/meta.json", dir);
        if (access(path, F_OK) == 0 || errno != ENOENT)
            continue; /* a finished backup, or not a directory */
        if (!only_backup_data(dir)) {
            rc_warn("%s has no meta.json, so it is no finished backup; it holds other files "
                    "too, so it is left as it is",
                    dir);
            continue;
        }
        for (size_t i = 0; i < N_BACKUP_DATA_FILES; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, backup_data_files[i]);
            (void)unlink(path);
        }
        if (rmdir(dir) == 0)
            rc_warn("removed %s: a backup cut short (no meta.json)", dir);
        else
            rc_warn("cannot remove %s, a backup cut short: %s", dir, strerror(errno));
    }
    closedir(d);
}

#define A CMD_ADMIN
static const struct command rows[] = {
    {"raftsnapshot", 1, A, 0, 0, 0, cmd_raftsnapshot, "raftcask", "raftcask", "",
     "Writes a backup (DIR/snapshots/TERM-INDEX-MS: meta.json + state.bin); replies its id."},
    {"snapshot", 1, A, 0, 0, 0, cmd_raftsnapshot, "raftcask", "raftcask", "",
     "Alias of RAFTSNAPSHOT."},
};
#undef A

const struct command_table snapshot_commands = {rows, sizeof rows / sizeof rows[0]};

/* ============================== restoring ============================== */

/* Worker threads that use the store must let go of it before it is closed: a job's view
 * pins it, and the once-a-second sync fsyncs it (closing it under that sync was a use after
 * free). */
static bool store_in_use_by_a_worker(struct server *s)
{
    return (s->snap && !atomic_load(&s->snap->written)) || atomic_load(&s->sync_using_store);
}

/* Reads the directory a snapshot carries (its extra blob). Returns 1 with *ms filled, 0 when
 * the snapshot carries none (or one that does not decode), or a negative error. */
static int snapshot_directory(const char *path, struct cluster_members *ms)
{
    struct snapshot_reader *r = NULL;
    int rc = snapshot_reader_open(path, &r);
    if (rc != 0)
        return rc;
    struct snapshot_header h;
    snapshot_reader_header(r, &h);
    int found = h.extra_len > 0 && cluster_members_decode(h.extra, h.extra_len, ms) == 0;
    snapshot_reader_close(r);
    return found;
}

/* Saves the directory the snapshot carries (before the store holds the snapshot's index: a
 * restart that finds the store without it installs the snapshot again) and hands it to the
 * transport. */
static int take_directory(struct server *s, const char *path)
{
    struct cluster_members ms;
    int found = snapshot_directory(path, &ms);
    if (found < 0) {
        rc_error("reading the snapshot %s: %s", path, rc_strerror(found));
        return found;
    }
    if (!found)
        return 0;
    if (cluster_members_save(s->cfg->dir, &ms) != 0)
        return RC_EIO;
    /* Nodes the snapshot's directory no longer has (removed in entries it covers) leave
     * the transport too. */
    for (size_t i = 0; i < s->members.count; i++) {
        uint64_t id = s->members.m[i].id;
        if (id != s->self.id && !cluster_members_find(&ms, id) && s->raft)
            raft_node_remove_peer(s->raft, id);
    }
    s->members = ms;
    for (size_t i = 0; i < ms.count; i++)
        if (ms.m[i].id != s->self.id && s->raft)
            raft_node_set_peer(s->raft, ms.m[i].id, ms.m[i].peer_addr);
    return 0;
}

/* A store that already holds the snapshot's index is left alone (a restart does not
 * rewrite the data). */
static bool store_holds(struct server *s, const struct raft_snapshot_meta *meta)
{
    uint64_t held = rc_store_applied_revision(s->store);
    if (held < meta->index)
        return false;
    rc_info("snapshot at %" PRIu64 ": the store already holds index %" PRIu64 "; not rebuilt",
            meta->index, held);
    return true;
}

/* What every restore does first: the directory, and the writes it makes unknown. */
static int restore_prepare(struct server *s, const char *path)
{
    int rc = take_directory(s, path);
    if (rc != 0)
        return rc;
    rc_store_merge_cancel(s->store); /* the old store goes: a merge of it is wasted work */
    /* A snapshot or backup being written from the old store is stopped, not waited for: a
     * large one held the loop (and every client) for as long as it took. */
    if (s->snap && !atomic_load(&s->snap->written))
        atomic_store(&s->snap->cancel, 1);
    s->restores++;
    /* Writes this node proposed while it led and that the snapshot now covers will never be
     * applied one by one here: their outcome is unknown to this node. */
    writepath_fail_proposed(s, "-ERR the outcome of the write is unknown (this node was sent a "
                               "snapshot); check and retry\r\n");
    return 0;
}

/* At start (raft_node_start), on the loop thread: nothing is served yet. */
int snapshots_restore(void *server, const char *path, const struct raft_snapshot_meta *meta)
{
    struct server *s = server;
    if (store_holds(s, meta))
        return 0;
    int rc = restore_prepare(s, path);
    if (rc != 0)
        return rc;
    uint64_t deadline = rc_mono_ns() + 600ull * 1000000000ull;
    while (store_in_use_by_a_worker(s) && rc_mono_ns() < deadline)
        usleep(1000);
    if (store_in_use_by_a_worker(s))
        return RC_EBUSY;
    uint64_t t0 = rc_mono_ns();
    rc = rc_store_close(s->store);
    s->store = NULL;
    if (rc != 0)
        rc_warn("closing the store before a restore: %s", rc_strerror(rc));
    rc = snapshot_restore(path, s->cask_dir, &s->store_opts, NULL, NULL, NULL);
    if (rc != 0)
        rc_error("rebuilding the store from %s failed: %s", path, rc_strerror(rc));
    int rc2 = rc_store_open(s->cask_dir, &s->store_opts, &s->store);
    if (rc2 != 0) {
        rc_error("reopening the store in %s failed: %s", s->cask_dir, rc_strerror(rc2));
        return rc2;
    }
    if (rc != 0)
        return rc;
    s->revision = rc_store_applied_revision(s->store);
    rc_info("store rebuilt from the snapshot at index %" PRIu64 ": %zu keys in %" PRIu64 " ms",
            meta->index, rc_store_count(s->store), (rc_mono_ns() - t0) / 1000000);
    return s->revision >= meta->index ? 0 : RC_ECORRUPT;
}

/*
 * While the node runs, the rebuild is a job: a libuv worker builds the new store beside the
 * open one (snapshot_restore_build), the loop thread swaps the two (snapshot_restore_swap:
 * renames, no copying) once no other worker uses the old store, and a worker closes and
 * removes the old one (snapshot_restore_finish). Meanwhile the node applies nothing
 * (raft_node_restored ends that) and the old store serves what a local read may see.
 */
struct restore_job {
    struct server *s;
    uv_work_t work;
    bool working;                   /* the work is queued or running */
    struct snapshot_reader *reader; /* opened on the loop: the log may replace the file */
    uint64_t index;
    atomic_int cancel;
    struct rc_store *built;   /* the work's result, waiting for the swap */
    struct rc_store *discard; /* a superseded build, abandoned by the next work */
    int rc;
    uint64_t started_ns;
    struct snapshot_reader *next; /* a newer snapshot that arrived while building */
    uint64_t next_index;
};

struct finish_job {
    uv_work_t work;
    struct server *s;
    struct rc_store *old;
};

static void finish_work(uv_work_t *req)
{
    struct finish_job *f = req->data;
    int rc = snapshot_restore_finish(f->s->cask_dir, f->old);
    if (rc != 0) /* a restart removes it (snapshot_restore_recover) */
        rc_warn("removing the store a restore replaced: %s", rc_strerror(rc));
}

static void finish_done(uv_work_t *req, int status)
{
    struct finish_job *f = req->data;
    f->s->restore_finishing = false;
    rc_free(f);
    (void)status;
}

static void build_work(uv_work_t *req)
{
    struct restore_job *j = req->data;
    struct server *s = j->s;
    if (j->discard) {
        snapshot_restore_abandon(s->cask_dir, j->discard);
        j->discard = NULL;
    }
    j->rc = snapshot_restore_build(j->reader, s->cask_dir, &s->store_opts, &j->cancel, &j->built);
}

static void build_done(uv_work_t *req, int status);

static int build_start(struct restore_job *j)
{
    atomic_store(&j->cancel, 0);
    j->started_ns = rc_mono_ns();
    if (uv_queue_work(j->s->loop, &j->work, build_work, build_done) != 0)
        return RC_EIO;
    j->working = true;
    return 0;
}

/* keep_built (shutting down): a complete build is only closed, and the next start swaps it
 * in (snapshot_restore_recover) instead of building it again. Otherwise (the build or its
 * swap failed) it is removed, and a restart rebuilds from the log's snapshot. */
static void restore_job_free(struct restore_job *j, bool keep_built)
{
    if (j->built && keep_built)
        rc_store_close(j->built);
    else if (j->built)
        snapshot_restore_abandon(j->s->cask_dir, j->built);
    if (j->discard) /* not taken by a work yet (none was queued) */
        snapshot_restore_abandon(j->s->cask_dir, j->discard);
    snapshot_reader_close(j->reader);
    snapshot_reader_close(j->next);
    if (j->s->restore == j)
        j->s->restore = NULL;
    rc_free(j);
}

/* Ends the job and tells the node (rc 0: the store now holds index). */
static void restore_end(struct restore_job *j, int rc)
{
    struct server *s = j->s;
    uint64_t index = j->index;
    restore_job_free(j, false);
    if (s->raft && !s->raft_closed)
        raft_node_restored(s->raft, index, rc);
}

/* The swap, once no other worker uses the old store; else the cluster tick retries. */
static void restore_swap(struct server *s)
{
    struct restore_job *j = s->restore;
    /* The old store's own worker must be idle too (a merge it ran when the restore began
     * was asked to stop): rc_store_move would wait for it on the loop. */
    if (!j || j->working || !j->built || store_in_use_by_a_worker(s) || s->restore_finishing ||
        !rc_store_idle(s->store))
        return;
    struct finish_job *f = rc_calloc(1, sizeof *f);
    if (!f)
        return; /* retried at the next tick */
    struct rc_store *old = s->store;
    uint64_t t0 = rc_mono_ns();
    int rc = snapshot_restore_swap(s->cask_dir, old, j->built);
    if (rc != 0) {
        rc_error("swapping in the store rebuilt from the snapshot at %" PRIu64 " failed: %s",
                 j->index, rc_strerror(rc));
        rc_free(f);
        restore_end(j, rc);
        return;
    }
    s->store = j->built;
    j->built = NULL;
    s->revision = rc_store_applied_revision(s->store);
    rc_info("store rebuilt from the snapshot at index %" PRIu64 ": %zu keys in %" PRIu64
            " ms (swapped in %" PRIu64 " us)",
            j->index, rc_store_count(s->store), (rc_mono_ns() - j->started_ns) / 1000000,
            (rc_mono_ns() - t0) / 1000);
    f->s = s;
    f->old = old;
    f->work.data = f;
    s->restore_finishing = true;
    if (uv_queue_work(s->loop, &f->work, finish_work, finish_done) != 0) {
        finish_work(&f->work); /* cannot queue: done here, once */
        finish_done(&f->work, 0);
    }
    restore_end(j, s->revision >= j->index ? 0 : RC_ECORRUPT);
}

static void build_done(uv_work_t *req, int status)
{
    struct restore_job *j = req->data;
    struct server *s = j->s;
    j->working = false;
    (void)status;
    if (s->shutting_down || s->raft_closed) {
        restore_job_free(j, true);
        return;
    }
    if (j->next) { /* superseded: build the newer one (the next work abandons this one) */
        j->discard = j->built;
        j->built = NULL;
        snapshot_reader_close(j->reader);
        j->reader = j->next;
        j->index = j->next_index;
        j->next = NULL;
        int rc = build_start(j);
        if (rc != 0)
            restore_end(j, rc);
        return;
    }
    if (j->rc != 0) {
        rc_error("rebuilding the store from the snapshot at %" PRIu64 " failed: %s", j->index,
                 rc_strerror(j->rc));
        restore_end(j, j->rc);
        return;
    }
    restore_swap(s);
}

/* A snapshot installed while the node runs (raft_node_callbacks.restore_begin). */
int snapshots_restore_begin(void *server, const char *path, const struct raft_snapshot_meta *meta)
{
    struct server *s = server;
    if (!s->restore && store_holds(s, meta))
        return 0;
    struct snapshot_reader *r = NULL;
    int rc = snapshot_reader_open(path, &r);
    if (rc == 0)
        rc = restore_prepare(s, path);
    if (rc != 0) {
        snapshot_reader_close(r);
        return rc;
    }
    struct restore_job *j = s->restore;
    if (j && j->working) { /* the build under way stops at its next record */
        rc_info("a newer snapshot (index %" PRIu64
                ") replaces the rebuild under way (index %" PRIu64 ")",
                meta->index, j->next ? j->next_index : j->index);
        atomic_store(&j->cancel, 1);
        snapshot_reader_close(j->next);
        j->next = r;
        j->next_index = meta->index;
        return RAFT_NODE_RESTORING;
    }
    if (j) { /* built, waiting for the swap: the next work abandons it */
        j->discard = j->built;
        j->built = NULL;
        snapshot_reader_close(j->reader);
    } else {
        if (!(j = rc_calloc(1, sizeof *j))) {
            snapshot_reader_close(r);
            return RC_ENOMEM;
        }
        j->s = s;
        j->work.data = j;
        s->restore = j;
    }
    j->reader = r;
    j->index = meta->index;
    if ((rc = build_start(j)) != 0) {
        j->s->restore = NULL;
        restore_job_free(j, false);
        return rc;
    }
    rc_info("rebuilding the store from the snapshot at index %" PRIu64
            " on a worker; entries wait until it is done",
            meta->index);
    return RAFT_NODE_RESTORING;
}

void snapshots_stop(struct server *s)
{
    /* A running job finishes on its own; job_done sees the shutdown and commits nothing.
     * The loop runs until it is done (uv_work requests keep the loop alive). A store
     * rebuild stops at its next record (what it built is removed at the next start); a
     * finished one is closed, and the next start swaps it in. */
    struct restore_job *j = s->restore;
    if (j && j->working)
        atomic_store(&j->cancel, 1);
    else if (j)
        restore_job_free(j, true);
}

/*
 * server.c — starting and stopping a single node: store, listener, loop handles, signals.
 *
 * One libuv loop runs everything. At the end of every iteration (a check handle) the
 * writes gathered during the iteration are applied as one entry and every client's
 * replies are written, so one write system call per client and one store pass per entry
 * serve however many commands arrived together. A 100 ms timer drives the active expiry.
 */
#include "server.h"

#include "cluster/snapstream.h"
#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"
#include "store/record.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CRON_INTERVAL_MS     100
#define SHUTDOWN_DEADLINE_MS 2000

int64_t server_now_ms(void)
{
    return rc_now_ms();
}

uint64_t server_random(struct server *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ============================== loop callbacks ============================== */

static void on_check(uv_check_t *h)
{
    struct server *s = h->data;
    /* Applying can resume clients, which can submit more writes: loop until quiet. */
    /* Proposing, committing and applying can answer clients, who then send more work: go
     * on while it moves (on one node a whole pipeline completes here), within a bound. */
    for (int flushes = 0; flushes < 16; flushes++) {
        for (int pass = 0; pass < 1024; pass++) {
            while (s->batch.started)
                writepath_flush(s);
            uint64_t rounds = s->next_read_ctx;
            size_t waiting = s->nread_wait;
            cluster_after_iteration(s);
            /* Reads that arrived while this pass processed (a round started, or none waited
             * before) get their own round now, not at the next wake-up. */
            bool more_reads = s->nread_wait > 0 && (s->next_read_ctx != rounds || waiting == 0);
            if (!s->batch.started && !more_reads)
                break;
        }
        /* Writing replies can resume a client that back-pressure held (client.c), and its
         * input may add a write or a read: propose it now, not at the next wake-up. */
        size_t reads = s->nread_wait;
        client_flush_all(s);
        if (!s->batch.started && s->nread_wait == reads)
            break;
    }
}

/* Once a second the store's active file is fsynced off the loop thread (like Redis's
 * appendfsync everysec): a power failure loses at most about a second of acknowledged
 * writes on a single node. In a cluster the Raft log is the durable record instead. */
static void sync_work(uv_work_t *req)
{
    struct server *s = req->data;
    s->sync_rc = rc_store_sync(s->store);  /* read by sync_done, after this returns */
    atomic_store(&s->sync_using_store, 0); /* a restore may now close the store */
}

static void sync_done(uv_work_t *req, int status)
{
    struct server *s = req->data;
    s->sync_running = false;
    s->syncs++;
    if (s->sync_rc != 0) {
        s->sync_failures++;
        rc_error("syncing the store failed: %s", rc_strerror(s->sync_rc));
    }
}

/* Every 10 s: a merge (on the store's worker thread) once superseded records take more
 * space than live ones and at least MERGE_MIN_DEAD_BYTES. Between entries here, so the store
 * is never in the middle of a revision (atomic_revisions refuses a merge then). After a
 * merge that failed or could not start (a nearly full disk fails them all alike, and each
 * attempt rolls the active file first), the next waits twice as long, up to 10 minutes. */
#define MERGE_MIN_DEAD_BYTES (64ull << 20)
#define MERGE_PERIOD_MS      10000
#define MERGE_BACKOFF_MAX_MS (600ull * 1000)

void backoff_failed(struct backoff *b, uint64_t first_ms, uint64_t max_ms)
{
    uint64_t d = b->delay_ms ? 2 * b->delay_ms : first_ms;
    b->delay_ms = d < max_ms ? d : max_ms;
    b->not_before_ms = (uint64_t)server_now_ms() + b->delay_ms;
}

bool backoff_waiting(const struct backoff *b)
{
    return (uint64_t)server_now_ms() < b->not_before_ms;
}

static void maybe_merge(struct server *s)
{
    if (s->cron_ticks % (MERGE_PERIOD_MS / CRON_INTERVAL_MS) != 0 || s->restore)
        return;
    struct rc_store_stats st;
    if (rc_store_stats(s->store, &st) != 0)
        return;
    if (st.merges_failed > s->merges_failed_seen)
        backoff_failed(&s->merge_backoff, 2 * MERGE_PERIOD_MS, MERGE_BACKOFF_MAX_MS);
    else if (st.merges > s->merges_seen)
        s->merge_backoff.delay_ms = 0;
    /* (Counters that went down belong to a new store, after a restore: only taken.) */
    s->merges_seen = st.merges;
    s->merges_failed_seen = st.merges_failed;
    if (st.dead_bytes < MERGE_MIN_DEAD_BYTES || st.dead_bytes < st.live_bytes ||
        backoff_waiting(&s->merge_backoff))
        return;
    int rc = rc_store_merge_start(s->store);
    if (rc == 0) {
        rc_info("merging the store: %llu dead bytes, %llu live", (unsigned long long)st.dead_bytes,
                (unsigned long long)st.live_bytes);
    } else if (rc != RC_EBUSY) {
        backoff_failed(&s->merge_backoff, 2 * MERGE_PERIOD_MS, MERGE_BACKOFF_MAX_MS);
        rc_warn("cannot start a merge: %s; next attempt in %llu s", rc_strerror(rc),
                (unsigned long long)(s->merge_backoff.delay_ms / 1000));
    }
}

static void on_cron(uv_timer_t *t)
{
    struct server *s = t->data;
    if (s->shutting_down)
        return;
    expire_cycle(s);
    maybe_merge(s);
    if (s->tls_listening && s->cron_ticks % (1000 / CRON_INTERVAL_MS) == 0)
        client_close_stalled_handshakes(s);
    if (++s->cron_ticks % (1000 / CRON_INTERVAL_MS) == 0 && !s->sync_running) {
        s->sync_work.data = s;
        atomic_store(&s->sync_using_store, 1);
        s->sync_running = uv_queue_work(s->loop, &s->sync_work, sync_work, sync_done) == 0;
        if (!s->sync_running)
            atomic_store(&s->sync_using_store, 0);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    rc_info("received %s; shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    server_shutdown(s, 0);
}

static void on_shutdown_deadline(uv_timer_t *t)
{
    struct server *s = t->data;
    while (s->clients)
        client_close(s->clients);
    uv_close((uv_handle_t *)t, NULL);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void server_shutdown(struct server *s, int exit_code)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->exit_code = exit_code;
    /* Writes already accepted are proposed; whatever commits now is applied and answered
     * (on a single node, all of it); the rest is answered with an error by cluster_stop. */
    while (s->batch.started)
        writepath_flush(s);
    if (s->raft)
        raft_node_process(s->raft);
    if (!s->handles_ready)
        return; /* failed while starting: nothing to close yet */
    cluster_stop(s);
    metrics_stop(s);
    close_handle((uv_handle_t *)&s->listener);
    if (s->tls_listening)
        close_handle((uv_handle_t *)&s->tls_listener);
    close_handle((uv_handle_t *)&s->check);
    close_handle((uv_handle_t *)&s->cron);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->sigint);
    /* Replies already decided (writes applied above) still go out: each client closes once
     * its replies are written, and a client that does not read is closed at the deadline. */
    for (struct client *c = s->clients; c; c = c->next)
        client_close_after_reply(c);
    client_flush_all(s);
    uv_timer_init(s->loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    uv_timer_start(&s->shutdown_timer, on_shutdown_deadline, SHUTDOWN_DEADLINE_MS, 0);
    uv_unref((uv_handle_t *)&s->shutdown_timer); /* the loop may end before it fires */
}

/* ============================== start ============================== */

static int open_listener(struct server *s)
{
    char host[256];
    int port;
    rc_config_split_hostport(s->cfg->bind, host, &port);
    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        rc_error("invalid --bind address '%s': %s", s->cfg->bind, uv_strerror(rc));
        return rc;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, client_on_connection);
    if (rc != 0) {
        rc_error("cannot listen on %s: %s", s->cfg->bind, uv_strerror(rc));
        return rc;
    }
    if (!s->cfg->tls_port)
        return 0;
    /* --tls-port: the same host, clients over TLS (server.client_tls). */
    if (strchr(host, ':'))
        uv_ip6_addr(host, (int)s->cfg->tls_port, (struct sockaddr_in6 *)&addr);
    else
        uv_ip4_addr(host, (int)s->cfg->tls_port, (struct sockaddr_in *)&addr);
    s->tls_readbuf = rc_malloc(CLIENT_TLS_READ_BYTES);
    if (!s->tls_readbuf)
        return RC_ENOMEM;
    uv_tcp_init(s->loop, &s->tls_listener);
    s->tls_listener.data = s;
    s->tls_listening = true;
    rc = uv_tcp_bind(&s->tls_listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->tls_listener, 511, client_on_tls_connection);
    if (rc != 0)
        rc_error("cannot listen on --tls-port %llu: %s", (unsigned long long)s->cfg->tls_port,
                 uv_strerror(rc));
    return rc;
}

static void setup_logging(const struct rc_config *cfg)
{
    int level = rc_log_parse_level(cfg->loglevel);
    rc_log_set_level(level < 0 ? RC_LOG_INFO : (enum rc_log_level)level);
}

int server_run(struct rc_config *cfg)
{
    struct server *s = rc_calloc(1, sizeof *s);
    if (!s)
        return 1;
    s->cfg = cfg;
    s->loop = uv_default_loop();
    s->start_ms = (uint64_t)server_now_ms();
    s->rng = s->start_ms ^ (uint64_t)getpid() << 32;
    setup_logging(cfg);
    resp_limits_default(&s->limits);
    s->limits.max_bulk_len_bytes = cfg->proto_max_bulk_len;
    signal(SIGPIPE, SIG_IGN);

    int exit_code = 1;
    /* A backup to restore on a first start must be readable before --dir is written to (it
     * is ignored, with a warning, on a node that has state). */
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/node.conf", cfg->dir);
    if (cfg->restore_from && cfg->restore_from[0] && access(conf, F_OK) != 0 &&
        access(cfg->restore_from, R_OK) != 0) {
        rc_error("cannot read --restore %s: %s", cfg->restore_from, strerror(errno));
        goto out_free;
    }
    /* Certificates first: a bad one stops the start before anything is written to --dir. */
    if (cfg->tls_cert[0] &&
        tls_context_new(cfg->tls_cert, cfg->tls_key, cfg->tls_ca, &s->peer_tls) != 0)
        goto out_free;
    if (cfg->tls_port &&
        tls_context_new_for_clients(cfg->tls_cert, cfg->tls_key,
                                    cfg->tls_client_ca[0] ? cfg->tls_client_ca : NULL,
                                    &s->client_tls) != 0)
        goto out_free;
    char subject[256] = "";
    if (cfg->tls_client_ca[0] &&
        tls_client_ca_trusted_by(s->client_tls, s->peer_tls, subject, sizeof subject) != 0) {
        rc_error("TLS: --tls-client-ca holds a CA that --tls-ca trusts (%s): a client's "
                 "certificate would be good for a node; give clients a CA of their own",
                 subject[0] ? subject : "out of memory while checking");
        goto out_free;
    }
    if (commands_init() != 0)
        goto out_free;
    struct rc_store_options so;
    rc_store_options_init(&so);
    so.max_file_bytes = cfg->max_file_bytes;
    /* The store takes what any node may have accepted: the limits a node is configured
     * with are checked where commands are proposed, so that every replica applies an entry
     * alike whatever its own settings (a write refused by one store would diverge). */
    so.max_key_bytes = RECORD_MAX_KEY;
    so.max_value_bytes = RECORD_MAX_VALUE;
    so.atomic_revisions = true; /* fsm_apply commits each entry: a crash loses whole entries */
    s->store_opts = so;
    char *cask = s->cask_dir;
    snprintf(cask, sizeof s->cask_dir, "%s/cask", cfg->dir);
    /* Finish or roll back a snapshot restore that a crash interrupted. */
    int rc = snapshot_restore_recover(cask);
    if (rc == 0)
        rc = rc_store_open(cask, &so, &s->store);
    if (rc != 0) {
        rc_error("cannot open the store in %s: %s", cask, rc_strerror(rc));
        goto out_commands;
    }
    s->revision = rc_store_applied_revision(s->store);
    if (open_listener(s) != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        if (s->tls_listening)
            uv_close((uv_handle_t *)&s->tls_listener, NULL);
        uv_run(s->loop, UV_RUN_DEFAULT);
        goto out_store;
    }
    rc = cluster_start(s);
    if (rc == 0 && s->shutting_down) {
        /* Raft stopped while it started (an entry the store cannot apply, a log write that
         * failed): serving nothing, with a shutdown already begun, the node would only hang. */
        rc_error("cannot start: the node stopped while it replayed its log (the error above); "
                 "exiting");
        rc = RC_EIO;
    }
    if (rc != 0 || metrics_start(s) != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        if (s->tls_listening)
            uv_close((uv_handle_t *)&s->tls_listener, NULL);
        metrics_stop(s);
        if (s->raft)
            cluster_stop(s);
        uv_run(s->loop, UV_RUN_DEFAULT);
        goto out_store;
    }
    /* A node that leads at once (a single node) first deletes the keys that expired while
     * it was down, as Redis does when it loads, so that DBSIZE does not count them. */
    if (s->is_leader) {
        expire_sweep_all(s);
        cluster_after_iteration(s);
    }
    uv_check_init(s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_timer_init(s->loop, &s->cron);
    s->cron.data = s;
    uv_timer_start(&s->cron, on_cron, CRON_INTERVAL_MS, CRON_INTERVAL_MS);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_init(s->loop, &s->sigint);
    s->sigint.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    s->handles_ready = true;

    rc_info("raftcask %s ready: %zu keys at revision %llu in %s, listening on %s", RC_VERSION,
            rc_store_count(s->store), (unsigned long long)s->revision, cfg->dir, cfg->bind);
    uv_run(s->loop, UV_RUN_DEFAULT);
    if (!uv_is_closing((uv_handle_t *)&s->shutdown_timer)) { /* every client closed in time */
        uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
        uv_run(s->loop, UV_RUN_DEFAULT);
    }
    exit_code = s->exit_code;
    rc_info("stopped");

out_store:
    cluster_free(s);
    writepath_free(s);
    scan_cursors_free(s);
    rc_free(s->expire_pivot);
    rc_free(s->scratch.data);
    rc = rc_store_close(s->store);
    if (rc != 0) {
        rc_error("closing the store: %s", rc_strerror(rc));
        exit_code = 1;
    }
out_commands:
    commands_free();
out_free:
    rc_free(s->tls_readbuf);
    tls_context_free(s->client_tls);
    tls_context_free(s->peer_tls); /* NULL after cluster_free */
    uv_loop_close(s->loop);
    rc_free(s);
    return exit_code;
}

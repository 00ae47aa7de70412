/*
 * metrics.c — --metrics HOST:PORT: HTTP for monitoring, on the node's loop.
 *
 *   GET /metrics   the node's counters and gauges in the Prometheus text format (0.0.4):
 *                  the figures of INFO (clients, commands, store, memory) and of its Raft
 *                  section (role, term, indexes, fsyncs, messages), names prefixed raftcask_.
 *   GET /health    200 {"health":"true"} while the node can serve: its Raft node runs and it
 *                  knows a leader (it may be the leader); else 503 {"health":"false",
 *                  "reason":"..."} — the shape of etcd's /health, for the same probes.
 *
 * One request per connection (the reply says Connection: close). The request head must
 * arrive whole within METRICS_TIMEOUT_MS and within METRICS_HEAD_MAX bytes; at most
 * METRICS_MAX_CONNS connections are open at once (a new one beyond closes the oldest that has
 * not sent its request). HEAD gets GET's headers. A malformed request gets 400, another path
 * 404, another method 405; then the connection closes. Nothing here blocks: the figures are
 * read from memory.
 */
#include "server.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define METRICS_HEAD_MAX   8192
#define METRICS_TIMEOUT_MS 5000
#define METRICS_MAX_CONNS  64

struct metrics_conn {
    struct server *s;
    struct metrics_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    int handles_open; /* tcp and timer: freed when both are closed */
    bool closing, answered;
    bool head_only; /* a HEAD request: the headers of GET's answer, no body */
    size_t len;
    char head[METRICS_HEAD_MAX];
    struct resp_buf reply; /* a byte buffer: the HTTP response */
};

/* ============================== connections ============================== */

static void on_handle_closed(uv_handle_t *h)
{
    struct metrics_conn *m = h->data;
    if (--m->handles_open > 0)
        return;
    resp_buf_free(&m->reply);
    rc_free(m);
}

static void conn_close(struct metrics_conn *m)
{
    if (m->closing)
        return;
    m->closing = true;
    struct server *s = m->s;
    if (m->prev)
        m->prev->next = m->next;
    else
        s->metrics_conns = m->next;
    if (m->next)
        m->next->prev = m->prev;
    s->nmetrics_conns--;
    uv_close((uv_handle_t *)&m->timer, on_handle_closed);
    uv_close((uv_handle_t *)&m->tcp, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void appendf(struct resp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(struct resp_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        resp_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Sends status, content type and body, then closes. */
static void respond(struct metrics_conn *m, const char *status, const char *type,
                    const struct resp_buf *body)
{
    if (m->answered)
        return;
    m->answered = true;
    uv_timer_stop(&m->timer);
    uv_read_stop((uv_stream_t *)&m->tcp);
    appendf(&m->reply,
            "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            status, type, body->len);
    if (!m->head_only)
        resp_buf_append(&m->reply, body->data, body->len);
    m->write_req.data = m;
    uv_buf_t b = uv_buf_init(m->reply.data, (unsigned)m->reply.len);
    if (uv_write(&m->write_req, (uv_stream_t *)&m->tcp, &b, 1, on_written) != 0)
        conn_close(m);
}

static void respond_text(struct metrics_conn *m, const char *status, const char *text)
{
    struct resp_buf body;
    resp_buf_init(&body);
    resp_buf_append(&body, text, strlen(text));
    respond(m, status, "text/plain; charset=utf-8", &body);
    resp_buf_free(&body);
}

/* ============================== /metrics ============================== */

/* One sample with its HELP and TYPE lines. */
static void metric(struct resp_buf *b, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    appendf(b, "# HELP raftcask_%s %s\n# TYPE raftcask_%s %s\nraftcask_%s %" PRIu64 "\n", name,
            help, name, type, name, value);
}

static void metric_seconds(struct resp_buf *b, const char *name, const char *type, const char *help,
                           uint64_t us)
{
    appendf(b, "# HELP raftcask_%s %s\n# TYPE raftcask_%s %s\nraftcask_%s %.6f\n", name, help, name,
            type, name, (double)us / 1e6);
}

static void metrics_body(struct server *s, struct resp_buf *b)
{
    struct rc_store_stats st;
    memset(&st, 0, sizeof st);
    rc_store_stats(s->store, &st);
    struct mallinfo2 mi = mallinfo2();
    const struct server_stats *ss = &s->stats;
    appendf(b,
            "# HELP raftcask_info Build and identity of this node.\n# TYPE raftcask_info gauge\n"
            "raftcask_info{version=\"%s\",id=\"%" PRIu64 "\",cluster_id=\"%016" PRIx64 "\"} 1\n",
            RC_VERSION, s->self.id, s->self.cluster_id);
    metric(b, "uptime_seconds", "gauge", "Seconds since the node started.",
           ((uint64_t)server_now_ms() - s->start_ms) / 1000);
    metric(b, "connected_clients", "gauge", "Client connections open.", s->nclients);
    metric(b, "connections_received_total", "counter", "Client connections accepted.",
           ss->connections_received);
    metric(b, "connections_rejected_total", "counter", "Client connections refused (maxclients).",
           ss->connections_rejected);
    metric(b, "commands_processed_total", "counter", "Commands run.", ss->commands_processed);
    metric(b, "protocol_errors_total", "counter", "Malformed requests.", ss->protocol_errors);
    metric(b, "net_input_bytes_total", "counter", "Bytes read from clients.", ss->net_input_bytes);
    metric(b, "net_output_bytes_total", "counter", "Bytes written to clients.",
           ss->net_output_bytes);
    metric(b, "expired_keys_total", "counter", "Keys deleted because they expired.",
           ss->expired_keys);
    metric(b, "keys", "gauge", "Keys in the store.", st.keys);
    metric(b, "keys_with_expiry", "gauge", "Keys with a time to live.", st.keys_with_expiry);
    metric(b, "store_files", "gauge", "Data files of the store.", st.files);
    metric(b, "store_live_bytes", "gauge", "Bytes of live records.", st.live_bytes);
    metric(b, "store_dead_bytes", "gauge", "Bytes of superseded records (merge reclaims them).",
           st.dead_bytes);
    metric(b, "store_merges_total", "counter", "Merges completed.", st.merges);
    metric(b, "store_applied_revision", "gauge", "Raft index of the last entry in the store.",
           st.applied_revision);
    metric(b, "store_syncs_total", "counter", "Once-a-second store syncs.", s->syncs);
    metric(b, "store_sync_failures_total", "counter", "Store syncs that failed.", s->sync_failures);
    metric(b, "memory_used_bytes", "gauge", "Heap in use (mallinfo2 uordblks).", mi.uordblks);
    metric(b, "memory_rss_bytes", "gauge", "Resident set size.", server_rss_bytes());
    metric(b, "keydir_bytes", "gauge", "Memory of the key directory.", st.keydir_bytes);
    if (!s->raft)
        return;
    struct raft_status rs;
    raft_node_status(s->raft, &rs);
    struct raft_node_stats ns;
    raft_node_stats(s->raft, &ns);
    metric(b, "raft_is_leader", "gauge", "1 on the leader.", rs.role == RAFT_LEADER);
    metric(b, "raft_has_leader", "gauge", "1 while a leader is known.", rs.leader != 0);
    metric(b, "raft_failed", "gauge", "1 once the node stopped after a disk failure.",
           rs.role == RAFT_FAILED);
    metric(b, "raft_term", "gauge", "Current term.", rs.term);
    metric(b, "raft_leader_id", "gauge", "Id of the known leader (0: none).", rs.leader);
    metric(b, "raft_commit_index", "gauge", "Highest index known committed.", rs.commit);
    metric(b, "raft_applied_index", "gauge", "Highest index applied.", rs.applied);
    metric(b, "raft_last_log_index", "gauge", "Last index in the log.", rs.last_index);
    metric(b, "raft_first_log_index", "gauge", "First index still in the log.", rs.first_index);
    metric(b, "raft_last_snapshot_index", "gauge", "Index of the last snapshot.",
           rs.snapshot_index);
    metric(b, "raft_voters", "gauge", "Voters in the configuration.", rs.config.n_voters);
    metric(b, "raft_learners", "gauge", "Learners in the configuration.", rs.config.n_learners);
    metric(b, "raft_fsyncs_total", "counter", "Syncs of the Raft log.", ns.fsyncs);
    metric_seconds(b, "raft_fsync_seconds_total", "counter", "Time spent in Raft log syncs.",
                   ns.fsync_total_us);
    metric_seconds(b, "raft_fsync_max_seconds", "gauge", "Longest Raft log sync.", ns.fsync_max_us);
    metric(b, "raft_entries_appended_total", "counter", "Entries appended to this node's log.",
           ns.entries_appended);
    metric(b, "raft_entries_applied_total", "counter", "Entries applied.", ns.entries_applied);
    metric(b, "raft_msgs_sent_total", "counter", "Raft messages sent.", ns.msgs_sent);
    metric(b, "raft_msgs_received_total", "counter", "Raft messages received.", ns.msgs_received);
    metric(b, "raft_msgs_dropped_total", "counter",
           "Raft messages dropped (queue full, peer down).", ns.msgs_dropped);
    metric(b, "raft_peer_reconnects_total", "counter",
           "Peer connections dialed again after a failure.", ns.peer_reconnects);
    metric(b, "raft_heartbeats_superseded_total", "counter",
           "Heartbeats replaced by a newer one while queued for a peer that is down.",
           ns.heartbeats_superseded);
    metric(b, "raft_peer_frames_rejected_total", "counter", "Malformed frames from peers.",
           ns.peer_frames_rejected);
    metric(b, "raft_peer_handshakes_refused_total", "counter",
           "Peer handshakes refused (another cluster, an unexpected node id, no HELLO in time).",
           ns.peer_handshakes_refused);
    metric(b, "raft_snapshots_installed_total", "counter", "Snapshots received from a leader.",
           ns.snapshots_installed);
    metric(b, "raft_snapshots_taken_total", "counter", "Local snapshots (log compactions).",
           ns.snapshots_taken);
    metric(b, "forwarded_total", "counter", "Commands a follower forwarded to the leader.",
           s->stat_forwarded);
    metric(b, "redirected_total", "counter", "Commands answered -TRY or -MOVED.",
           s->stat_redirected);
    metric(b, "reads_confirmed_total", "counter", "Linearizable reads served after ReadIndex.",
           s->stat_reads_confirmed);
}

/* ============================== requests ============================== */

static void handle_request(struct metrics_conn *m, const char *line, size_t len)
{
    char method[16], target[256], version[16];
    char text[sizeof method + sizeof target + sizeof version + 8];
    if (len >= sizeof text) {
        respond_text(m, "400 Bad Request", "request line too long\n");
        return;
    }
    memcpy(text, line, len);
    text[len] = '\0';
    if (sscanf(text, "%15s %255s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        respond_text(m, "400 Bad Request", "malformed request line\n");
        return;
    }
    char *query = strchr(target, '?');
    if (query)
        *query = '\0';
    bool metrics = strcmp(target, "/metrics") == 0, health = strcmp(target, "/health") == 0;
    if (!metrics && !health) {
        respond_text(m, "404 Not Found", "not found: GET /metrics or /health\n");
        return;
    }
    m->head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !m->head_only) {
        respond_text(m, "405 Method Not Allowed", "only GET and HEAD\n");
        return;
    }
    struct server *s = m->s;
    struct resp_buf body;
    resp_buf_init(&body);
    if (metrics) {
        metrics_body(s, &body);
        respond(m, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body);
    } else {
        struct raft_status rs;
        memset(&rs, 0, sizeof rs);
        if (s->raft)
            raft_node_status(s->raft, &rs);
        const char *reason = !s->raft || rs.role == RAFT_FAILED ? "raft stopped"
                             : rs.leader == 0                   ? "no leader"
                                                                : NULL;
        if (reason) {
            appendf(&body, "{\"health\":\"false\",\"reason\":\"%s\"}\n", reason);
            respond(m, "503 Service Unavailable", "application/json", &body);
        } else {
            appendf(&body, "{\"health\":\"true\"}\n");
            respond(m, "200 OK", "application/json", &body);
        }
    }
    resp_buf_free(&body);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct metrics_conn *m = h->data;
    (void)suggested;
    *buf = uv_buf_init(m->head + m->len, (unsigned)(sizeof m->head - m->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct metrics_conn *m = st->data;
    (void)buf;
    if (nread < 0) {
        conn_close(m);
        return;
    }
    if (m->answered)
        return;
    m->len += (size_t)nread;
    /* The request line ends the first line; the head ends with an empty line. */
    const char *end = NULL;
    for (size_t i = 0; i + 1 < m->len && !end; i++)
        if (m->head[i] == '\n' &&
            (m->head[i + 1] == '\n' ||
             (m->head[i + 1] == '\r' && i + 2 < m->len && m->head[i + 2] == '\n')))
            end = m->head + i;
    if (!end) {
        if (m->len == sizeof m->head)
            respond_text(m, "400 Bad Request", "request head too large\n");
        return;
    }
    const char *nl = memchr(m->head, '\n', m->len);
    size_t line_len = (size_t)(nl - m->head);
    if (line_len > 0 && m->head[line_len - 1] == '\r')
        line_len--;
    handle_request(m, m->head, line_len);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *s = listener->data;
    if (status < 0)
        return;
    struct metrics_conn *m = rc_calloc(1, sizeof *m);
    if (!m)
        return; /* libuv retries the accept when the listener is readable again */
    m->s = s;
    resp_buf_init(&m->reply);
    uv_tcp_init(s->loop, &m->tcp);
    uv_timer_init(s->loop, &m->timer);
    m->tcp.data = m->timer.data = m;
    m->handles_open = 2;
    m->next = s->metrics_conns;
    if (s->metrics_conns)
        s->metrics_conns->prev = m;
    s->metrics_conns = m;
    s->nmetrics_conns++;
    if (uv_accept(listener, (uv_stream_t *)&m->tcp) != 0) {
        conn_close(m);
        return;
    }
    if (s->nmetrics_conns > METRICS_MAX_CONNS) {
        /* The oldest connection that has not asked yet goes (newest first in the list), so
         * that idle connections cannot lock a health probe out. */
        struct metrics_conn *oldest = NULL;
        for (struct metrics_conn *o = s->metrics_conns; o; o = o->next)
            if (!o->answered && o != m)
                oldest = o;
        conn_close(oldest ? oldest : m);
        if (!oldest)
            return;
    }
    uv_timer_start(&m->timer, on_timeout, METRICS_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&m->tcp, on_alloc, on_read) != 0)
        conn_close(m);
}

/* ============================== start and stop ============================== */

int metrics_start(struct server *s)
{
    const char *addr = s->cfg->metrics;
    if (!addr || !addr[0])
        return 0;
    char host[256];
    int port = 0;
    struct sockaddr_storage sa;
    if (rc_config_split_hostport(addr, host, &port) != 0 ||
        (strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)
                           : uv_ip4_addr(host, port, (struct sockaddr_in *)&sa)) != 0) {
        rc_error("invalid --metrics address '%s' (HOST:PORT)", addr);
        return RC_EINVAL;
    }
    uv_tcp_init(s->loop, &s->metrics_listener);
    s->metrics_listener.data = s;
    s->metrics_on = true;
    int rc = uv_tcp_bind(&s->metrics_listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->metrics_listener, 64, on_connection);
    if (rc != 0) {
        rc_error("cannot listen on --metrics %s: %s", addr, uv_strerror(rc));
        return RC_EIO;
    }
    rc_info("metrics on http://%s/metrics and /health", addr);
    return 0;
}

void metrics_stop(struct server *s)
{
    if (!s->metrics_on)
        return;
    s->metrics_on = false;
    while (s->metrics_conns)
        conn_close(s->metrics_conns);
    if (!uv_is_closing((uv_handle_t *)&s->metrics_listener))
        uv_close((uv_handle_t *)&s->metrics_listener, NULL);
}

/*
 * transport.c — framing, handshake, per-peer send queues and re-dialing (see transport.h).
 *
 * NOTES
 * 1. Lifetimes. A peer owns a backoff timer and at most one outgoing connection; a
 *    connection is a separate allocation because it may still be closing (libuv completes
 *    its pending connect and write requests with UV_ECANCELED first) while the peer already
 *    dials a new one. A connection is freed in its close callback, a peer in its timer's
 *    close callback. t->handles_open counts every handle not yet closed; transport_close
 *    finishes when it reaches zero.
 * 2. Memory bound. A peer's queued frames plus the frames its connection is writing never
 *    exceed send_queue_bytes, or one frame when that frame alone is larger (an append
 *    carrying one big entry: refusing it would stall replication at that entry for good).
 *    The HELLO is a shared static frame and not counted. Frames of a connection that
 *    failed are freed by its write callback.
 * 3. Receiving. Each connection assembles one frame at a time: the 16-byte header into a
 *    fixed array, then, only after the header passed every check (length against
 *    max_frame_bytes first, or against the largest HELLO while the other side has not
 *    identified itself), a payload buffer of exactly len bytes. Reads land in one
 *    buffer per transport: libuv runs each read callback before the next allocation.
 * 4. Strangers. An accepted connection must send its HELLO within handshake_timeout_ms (the
 *    sweep timer closes it otherwise; a dialed one must answer ours as quickly, or it is
 *    closed and dialed again), at most MAX_UNIDENTIFIED accepted connections may be
 *    waiting for theirs (a new one closes the oldest), and a HELLO from node X closes X's older
 *    incoming connections: a node dials one connection to each peer, so an older one is a
 *    leftover whose close never reached us. TCP keepalive on every connection finds peers
 *    whose host vanished (an accepting side never writes after its HELLO, so it would not
 *    notice otherwise). If memory runs out while accepting, the sweep retries the accept:
 *    libuv stops watching a listener whose connection was not accepted.
 * 5. Backoff. A failed dial or a connection lost within backoff_max_ms of being established
 *    doubles the delay (backoff_min_ms .. backoff_max_ms); a connection that lived longer
 *    resets it, so a node that refuses us (other cluster) is retried slowly, not in a loop.
 *    A HELLO from a peer we are waiting to redial ends the wait: it can reach us again.
 *    The cap is 500 ms: under links that flap every 0.3-1.5 s a 2 s cap let a cut-off
 *    follower go leaderless for 8-14 s (RAFT.md §13).
 * 6. Heartbeats supersede. A heartbeat sent while an older one to the same peer is still
 *    queued (not yet being written) overwrites that one in place: a peer that was down for
 *    seconds gets one heartbeat on its return, not one per heartbeat interval, each of
 *    which it would answer. This is a lost message plus a reordering, both of which Raft
 *    tolerates; the newer heartbeat carries the later read round and a commit index the
 *    leader bounds by what the peer is known to hold, so it is safe ahead of appends.
 */
#include "raft/transport.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "raft/tls.h"
#include "raftcask.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define READ_BUFFER_BYTES (64 * 1024)
#define MAX_WRITE_BUFS    64
#define HELLO_FIXED_BYTES (8 + 8 + 2)
#define MAX_ADDR_BYTES    255
#define HELLO_MAX_BYTES   (HELLO_FIXED_BYTES + MAX_ADDR_BYTES)
#define MAX_UNIDENTIFIED  64                   /* accepted connections without a HELLO yet */
#define MAX_PEERS         (2 * RAFT_MAX_NODES) /* learned from HELLOs beyond this: ignored */
#define KEEPALIVE_IDLE_S  10                   /* then 3 probes 5 s apart: ~25 s to notice */
#define KEEPALIVE_INTVL_S 5
#define KEEPALIVE_PROBES  3

/* An encoded frame waiting in a peer's queue or being written. */
struct frame {
    struct frame *next;
    size_t len; /* bytes at data: header + payload */
    unsigned char data[];
};

struct peer;

struct conn {
    struct transport *t;
    struct peer *peer;        /* outgoing: the peer it serves, NULL once detached; incoming: NULL */
    struct conn *prev, *next; /* list of incoming connections */
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    int outgoing, connected, writing, closing;
    int hello_sent;     /* our HELLO is written (or being written) */
    int hello_received; /* the other side's HELLO arrived and passed the checks */
    uint64_t remote_id; /* incoming: proved by HELLO; outgoing: the peer dialed */
    uint64_t connected_at_ms;
    struct frame *inflight; /* frames of the write in progress */
    size_t inflight_bytes;
    uint64_t inflight_msgs;
    /* receive state */
    unsigned char hdr[TRANSPORT_HEADER_BYTES];
    size_t hdr_have;
    unsigned char *payload;
    uint32_t payload_len, payload_have, payload_crc;
    uint8_t payload_kind;
    /* TLS (opts.tls): frames travel inside the session once its handshake is done */
    struct tls_session *tls;
    int tls_done;
    unsigned char *tls_out; /* ciphertext of the write in progress (write_req) */
};

struct peer {
    struct transport *t;
    struct peer *next;
    uint64_t id;
    char addr[MAX_ADDR_BYTES + 1];
    struct sockaddr_storage sa;
    uv_timer_t timer;
    struct conn *conn;
    struct frame *head, *tail;
    struct frame *queued_heartbeat; /* a heartbeat in head..tail, not yet written (note 6) */
    size_t queued_bytes;
    uint64_t queued_msgs;
    unsigned failures;
    int in_backoff, dialed_once;
    uint64_t tls_warned_ms; /* last TLS failure with it logged at warning level (0: none) */
};

struct transport {
    uv_loop_t *loop;
    struct transport_options opts;
    char bind[MAX_ADDR_BYTES + 1], advertise[MAX_ADDR_BYTES + 1];
    struct sockaddr_storage bind_sa, source_sa;
    uv_tcp_t listener;
    transport_message_cb on_message;
    void *ctx;
    struct peer *peers;
    struct conn *incoming;
    struct transport_stats stats;
    unsigned handles_open;
    int closing;
    unsigned corked; /* > 0: transport_send only queues (see transport_cork) */
    void (*on_closed)(void *ctx);
    void *closed_ctx;
    unsigned char *readbuf;
    unsigned char *tls_plain;                        /* decrypted bytes of one read (opts.tls) */
    uint64_t stranger_warned_ms, strangers_unlogged; /* stranger_warning_ok */
    struct frame *hello;
    uv_timer_t sweep;   /* handshake deadlines, a retried accept (NOTES 4) */
    int accept_pending; /* an accept failed for lack of memory */
};

static void conn_close(struct conn *c, int redial);
static void conn_flush(struct conn *c);
static void tls_receive(struct conn *c, const unsigned char *data, size_t n);
static void peer_kick(struct peer *p);

/* ============================== plain TCP stream layer ============================== */

static int tcp_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    return uv_read_start(s, alloc_cb, read_cb);
}

static int tcp_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                     uv_write_cb cb)
{
    return uv_write(req, s, bufs, nbufs, cb);
}

static int tcp_try_write(uv_stream_t *s, const uv_buf_t bufs[], unsigned nbufs)
{
    return uv_try_write(s, bufs, nbufs);
}

static void tcp_close(uv_handle_t *h, uv_close_cb cb)
{
    uv_close(h, cb);
}

const struct transport_stream_ops transport_stream_tcp = {tcp_read_start, tcp_write, tcp_close,
                                                          tcp_try_write};

/* ============================== helpers ============================== */

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Parses numeric "a.b.c.d:port" or "[v6]:port" into *sa. */
static int parse_addr(const char *s, struct sockaddr_storage *sa)
{
    char host[64];
    const char *colon;
    size_t hlen;
    if (!s)
        return RC_EINVAL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return RC_EINVAL;
        hlen = (size_t)(end - s - 1);
        s++;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return RC_EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof host)
        return RC_EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return RC_EINVAL;
    memset(sa, 0, sizeof *sa);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    return RC_EINVAL;
}

static void handle_closed(struct transport *t)
{
    if (--t->handles_open == 0 && t->closing) {
        if (t->on_closed)
            t->on_closed(t->closed_ctx);
        rc_free(t->readbuf);
        rc_free(t->tls_plain);
        rc_free(t->hello);
        rc_free(t);
    }
}

static void free_frames(struct frame *f)
{
    while (f) {
        struct frame *next = f->next;
        rc_free(f);
        f = next;
    }
}

/* Allocates a frame of kind with room for payload_len bytes; the caller fills the payload
 * and then seals it (seal_frame computes the CRC). */
static struct frame *new_frame(uint8_t kind, size_t payload_len)
{
    struct frame *f = rc_malloc(sizeof *f + TRANSPORT_HEADER_BYTES + payload_len);
    if (!f)
        return NULL;
    f->next = NULL;
    f->len = TRANSPORT_HEADER_BYTES + payload_len;
    put_u32(f->data, TRANSPORT_MAGIC);
    f->data[4] = TRANSPORT_VERSION;
    f->data[5] = kind;
    put_u16(f->data + 6, 0);
    put_u32(f->data + 8, (uint32_t)payload_len);
    return f;
}

static void seal_frame(struct frame *f)
{
    size_t n = f->len - TRANSPORT_HEADER_BYTES;
    put_u32(f->data + 12, rc_crc32c(0, f->data + TRANSPORT_HEADER_BYTES, n));
}

/* ============================== connections ============================== */

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct transport *t = c->t;
    /* Write callbacks ran before this one and freed what they held; this is a safety net. */
    free_frames(c->inflight);
    rc_free(c->payload);
    rc_free(c->tls_out);
    tls_session_free(c->tls);
    rc_free(c);
    handle_closed(t);
}

static void on_backoff(uv_timer_t *timer)
{
    struct peer *p = timer->data;
    p->in_backoff = 0;
    peer_kick(p);
}

static void peer_schedule_redial(struct peer *p)
{
    struct transport *t = p->t;
    if (t->closing)
        return;
    unsigned shift = p->failures < 20 ? p->failures : 20;
    uint64_t delay = t->opts.backoff_min_ms << shift;
    if (delay > t->opts.backoff_max_ms)
        delay = t->opts.backoff_max_ms;
    p->failures++;
    p->in_backoff = 1;
    uv_timer_start(&p->timer, on_backoff, delay, 0);
}

/*
 * Closes c. An outgoing connection is detached from its peer first; with redial the peer
 * then waits out its backoff before dialing again (the messages it queued stay queued).
 */
static void conn_close(struct conn *c, int redial)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct transport *t = c->t;
    if (c->outgoing) {
        struct peer *p = c->peer;
        if (p) {
            p->conn = NULL;
            c->peer = NULL;
            if (c->connected && uv_now(t->loop) - c->connected_at_ms >= t->opts.backoff_max_ms)
                p->failures = 0;
            if (redial)
                peer_schedule_redial(p);
        }
    } else {
        if (c->prev)
            c->prev->next = c->next;
        else
            t->incoming = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    t->opts.stream->close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    buf->base = (char *)c->t->readbuf;
    buf->len = READ_BUFFER_BYTES;
}

/* Whether a stranger's refusal may be logged at warning level: at most one a second, so
 * that whoever can reach the port cannot fill the log (the others go to debug, counted). */
static int stranger_warning_ok(struct transport *t)
{
    uint64_t now = uv_now(t->loop);
    if (t->stranger_warned_ms && now - t->stranger_warned_ms < 1000) {
        t->strangers_unlogged++;
        return 0;
    }
    if (t->strangers_unlogged)
        rc_warn("transport: %llu more refusals of unidentified connections since the last line",
                (unsigned long long)t->strangers_unlogged);
    t->stranger_warned_ms = now;
    t->strangers_unlogged = 0;
    return 1;
}

/* Closes a connection for a malformed frame; a dialer re-dials after its backoff. */
static void reject(struct conn *c, const char *why)
{
    c->t->stats.frames_rejected++;
    int stranger = !c->outgoing && !c->hello_received;
    rc_log(stranger && !stranger_warning_ok(c->t) ? RC_LOG_DEBUG : RC_LOG_WARNING,
           "transport: closing connection %s %s %llu: %s", c->outgoing ? "to" : "from",
           stranger ? "an unidentified peer" : "node", (unsigned long long)c->remote_id, why);
    conn_close(c, 1);
}

/*
 * Both sides send a HELLO: the dialer first, the acceptor in reply once it accepted the
 * dialer's. The acceptor learns which node the connection comes from; the dialer learns
 * that it reached the node it meant to (not a stale address now used by another node) in
 * the right cluster, and sends no message before that, so none is lost to a refusal.
 */
static struct peer *find_peer(const struct transport *t, uint64_t id);

static size_t peer_count(const struct transport *t)
{
    size_t n = 0;
    for (const struct peer *q = t->peers; q; q = q->next)
        n++;
    return n;
}

static void on_hello(struct conn *c, const unsigned char *p, uint32_t len)
{
    struct transport *t = c->t;
    if (len < HELLO_FIXED_BYTES || len != HELLO_FIXED_BYTES + (uint32_t)get_u16(p + 16)) {
        reject(c, "malformed HELLO");
        return;
    }
    uint64_t cluster = get_u64(p), node = get_u64(p + 8);
    int addr_len = get_u16(p + 16);
    int bad_id = c->outgoing ? node != c->remote_id : node == RAFT_NONE || node == t->opts.node_id;
    if (cluster != t->opts.cluster_id || bad_id) {
        t->stats.handshake_refusals++;
        /* At most a line a second: nodes of another cluster (the old members of one that
         * was recovered) re-dial every couple of seconds for as long as they run. */
        rc_log(stranger_warning_ok(t) ? RC_LOG_WARNING : RC_LOG_DEBUG,
               "transport: refusing %s node %llu (%.*s): cluster %016llx, ours %016llx%s",
               c->outgoing ? "dialed" : "incoming", (unsigned long long)node, addr_len,
               (const char *)p + 18, (unsigned long long)cluster,
               (unsigned long long)t->opts.cluster_id, bad_id ? ", unexpected node id" : "");
        conn_close(c, 1);
        return;
    }
    c->remote_id = node;
    c->hello_received = 1;
    if (!c->outgoing) { /* NOTES 4: X's older incoming connections are leftovers */
        struct conn *next;
        for (struct conn *d = t->incoming; d; d = next) {
            next = d->next;
            if (d != c && d->hello_received && d->remote_id == node) {
                rc_debug("transport: node %llu connected again; closing its older connection",
                         (unsigned long long)node);
                conn_close(d, 0);
            }
        }
        /* The node just reached us, so the way to it is likely back too: a redial of it
         * waiting out its backoff goes now. Links that flap hold that backoff at its cap
         * (connections die young), and a review saw a cut-off follower stay leaderless for
         * 8-12 s while the leader's redials, 2 s apart (the cap then), all fell in cut
         * windows. */
        struct peer *q = find_peer(t, node);
        if (q && q->in_backoff && !q->conn) {
            uv_timer_stop(&q->timer);
            q->in_backoff = 0;
            q->failures = 0;
            peer_kick(q);
        }
    }
    /* A node we do not know yet (one joining the cluster, or whose address we have not
     * applied yet) can still be answered: learn where it says it listens. Known peers keep
     * the address the caller gave. */
    if (!c->outgoing && t->opts.learn_peers && addr_len > 0 && addr_len <= MAX_ADDR_BYTES &&
        !find_peer(t, node) && peer_count(t) < MAX_PEERS) {
        char addr[MAX_ADDR_BYTES + 1];
        memcpy(addr, p + 18, (size_t)addr_len);
        addr[addr_len] = '\0';
        if (transport_set_peer(t, node, addr) == 0)
            rc_info("transport: learned node %llu at %s from its HELLO", (unsigned long long)node,
                    addr);
    }
    rc_debug("transport: %s node %llu (advertises %.*s)",
             c->outgoing ? "connected to" : "connection from", (unsigned long long)node, addr_len,
             (const char *)p + 18);
    conn_flush(c); /* the acceptor's reply, or the dialer's queued messages */
}

static void on_message_frame(struct conn *c, const unsigned char *p, uint32_t len)
{
    struct transport *t = c->t;
    struct raft_message m;
    int rc = raft_msg_decode(p, len, &m);
    if (rc == RC_ENOMEM) {
        rc_warn("transport: out of memory decoding a message from node %llu",
                (unsigned long long)c->remote_id);
        conn_close(c, 1);
        return;
    }
    if (rc != 0) {
        reject(c, "undecodable message");
        return;
    }
    if (m.from != c->remote_id) {
        raft_msg_decoded_free(&m);
        reject(c, "message from another node id than its HELLO");
        return;
    }
    t->stats.msgs_received++;
    t->on_message(t->ctx, c->remote_id, &m);
    raft_msg_decoded_free(&m);
}

/* Checks a complete header and prepares for its payload; 0 or closes c and returns -1. */
static int start_payload(struct conn *c)
{
    struct transport *t = c->t;
    const unsigned char *h = c->hdr;
    uint32_t len = get_u32(h + 8);
    uint8_t kind = h[5];
    char why[96];
    if (get_u32(h) != TRANSPORT_MAGIC || h[4] != TRANSPORT_VERSION || get_u16(h + 6) != 0) {
        reject(c, "bad frame magic, version or reserved bits");
        return -1;
    }
    /* The length is checked before anything is allocated for the payload; until the other
     * side has identified itself, only a HELLO's length is accepted. */
    size_t limit =
        c->hello_received ? t->opts.max_frame_bytes : TRANSPORT_HEADER_BYTES + HELLO_MAX_BYTES;
    if ((uint64_t)len + TRANSPORT_HEADER_BYTES > limit) {
        snprintf(why, sizeof why, "frame of %u bytes exceeds the limit of %zu", len, limit);
        reject(c, why);
        return -1;
    }
    if (kind != TRANSPORT_FRAME_HELLO && kind != TRANSPORT_FRAME_MESSAGE) {
        reject(c, "unknown frame kind");
        return -1;
    }
    if ((kind == TRANSPORT_FRAME_HELLO) == c->hello_received) {
        reject(c, c->hello_received ? "second HELLO" : "message before HELLO");
        return -1;
    }
    if (kind == TRANSPORT_FRAME_MESSAGE && c->outgoing) {
        /* Connections carry messages one way; a peer that talks back is broken. */
        reject(c, "message on an outgoing connection");
        return -1;
    }
    c->payload = rc_malloc(len ? len : 1);
    if (!c->payload) {
        rc_warn("transport: out of memory for a frame of %u bytes", len);
        conn_close(c, 1);
        return -1;
    }
    c->payload_len = len;
    c->payload_have = 0;
    c->payload_crc = get_u32(h + 12);
    c->payload_kind = kind;
    return 0;
}

static void finish_payload(struct conn *c)
{
    unsigned char *p = c->payload;
    uint32_t len = c->payload_len;
    c->payload = NULL;
    c->hdr_have = 0;
    if (rc_crc32c(0, p, len) != c->payload_crc)
        reject(c, "bad CRC");
    else if (c->payload_kind == TRANSPORT_FRAME_HELLO)
        on_hello(c, p, len);
    else
        on_message_frame(c, p, len);
    rc_free(p);
}

/* Feeds received bytes through the frame assembler (NOTES 3). */
static void conn_feed(struct conn *c, const unsigned char *data, size_t n)
{
    while (n > 0 && !c->closing) {
        if (!c->payload) {
            size_t take = TRANSPORT_HEADER_BYTES - c->hdr_have;
            if (take > n)
                take = n;
            memcpy(c->hdr + c->hdr_have, data, take);
            c->hdr_have += take;
            data += take;
            n -= take;
            if (c->hdr_have < TRANSPORT_HEADER_BYTES || start_payload(c) != 0)
                continue;
        }
        size_t take = c->payload_len - c->payload_have;
        if (take > n)
            take = n;
        if (take)
            memcpy(c->payload + c->payload_have, data, take);
        c->payload_have += (uint32_t)take;
        data += take;
        n -= take;
        if (c->payload_have == c->payload_len)
            finish_payload(c);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF && nread != UV_ECONNRESET)
            rc_debug("transport: read from node %llu: %s", (unsigned long long)c->remote_id,
                     uv_strerror((int)nread));
        conn_close(c, 1);
        return;
    }
    if (nread == 0)
        return;
    if (c->tls)
        tls_receive(c, (const unsigned char *)buf->base, (size_t)nread);
    else
        conn_feed(c, (const unsigned char *)buf->base, (size_t)nread);
}

static void release_inflight(struct conn *c, int written)
{
    struct transport *t = c->t;
    if (written)
        t->stats.msgs_sent += c->inflight_msgs;
    else
        t->stats.msgs_dropped += c->inflight_msgs;
    free_frames(c->inflight);
    c->inflight = NULL;
    c->inflight_bytes = 0;
    c->inflight_msgs = 0;
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = 0;
    rc_free(c->tls_out);
    c->tls_out = NULL;
    release_inflight(c, status == 0);
    if (status < 0) {
        if (!c->closing)
            rc_debug("transport: write to node %llu: %s", (unsigned long long)c->remote_id,
                     uv_strerror(status));
        conn_close(c, 1);
        return;
    }
    conn_flush(c);
}

/* Moves the HELLO (once) and up to MAX_WRITE_BUFS queued frames into bufs and inflight. */
static unsigned take_frames(struct conn *c, uv_buf_t *bufs)
{
    struct peer *p = c->peer;
    unsigned n = 0;
    /* The dialer speaks first; the acceptor answers only an accepted HELLO (see on_hello). */
    if (!c->hello_sent && (c->outgoing || c->hello_received)) {
        bufs[n++] = uv_buf_init((char *)c->t->hello->data, (unsigned)c->t->hello->len);
        c->hello_sent = 1;
    }
    struct frame **tail = &c->inflight;
    while (p && c->hello_received && p->head && n < MAX_WRITE_BUFS) {
        struct frame *f = p->head;
        p->head = f->next;
        if (!p->head)
            p->tail = NULL;
        if (f == p->queued_heartbeat)
            p->queued_heartbeat = NULL;
        f->next = NULL;
        *tail = f;
        tail = &f->next;
        p->queued_bytes -= f->len;
        p->queued_msgs--;
        c->inflight_bytes += f->len;
        c->inflight_msgs++;
        bufs[n++] = uv_buf_init((char *)f->data, (unsigned)f->len);
    }
    return n;
}

static void write_failed(struct conn *c, int rc)
{
    rc_debug("transport: write to node %llu: %s", (unsigned long long)c->remote_id,
             uv_strerror(rc));
    release_inflight(c, 0);
    conn_close(c, 1);
}

/* ============================== TLS ============================== */

static void on_control_written(void *ctx, int status)
{
    struct conn *c = ctx;
    if (status < 0 && !c->closing)
        conn_close(c, 1);
}

/* Sends the ciphertext the session produced outside a frame write: handshake records,
 * alerts (in order with the frames' writes). 0, or -1 after closing c. */
static int tls_send_control(struct conn *c)
{
    if (tls_session_send_output(c->tls, (uv_stream_t *)&c->tcp, c->t->opts.stream->write,
                                on_control_written, c) < 0) {
        conn_close(c, 1);
        return -1;
    }
    return 0;
}

/* A failure on a dialed connection is logged at warning level once per TLS_WARN_MS per
 * peer (the redials of a peer whose certificate we refuse come every backoff_max_ms). */
#define TLS_WARN_MS 10000

static void tls_failed(struct conn *c, const char *why)
{
    c->t->stats.handshake_refusals += !c->tls_done;
    if (c->outgoing || c->hello_received) {
        uint64_t now = uv_now(c->t->loop);
        struct peer *p = c->outgoing ? c->peer : NULL;
        int repeat = p && p->tls_warned_ms && now - p->tls_warned_ms < TLS_WARN_MS;
        rc_log(repeat ? RC_LOG_DEBUG : RC_LOG_WARNING, "transport: TLS with node %llu: %s",
               (unsigned long long)c->remote_id, why);
        if (p && !repeat)
            p->tls_warned_ms = now;
    } else
        rc_log(stranger_warning_ok(c->t) ? RC_LOG_WARNING : RC_LOG_DEBUG,
               "transport: TLS with an incoming connection: %s", why);
    conn_close(c, 1);
}

/* Starts TLS on a connection that just connected or was accepted: 0, or -1 after closing
 * it. The dialer speaks first (its ClientHello). */
static int tls_start(struct conn *c)
{
    if (tls_session_new(c->t->opts.tls, c->outgoing, &c->tls) != 0) {
        rc_warn("transport: out of memory starting TLS");
        conn_close(c, 1);
        return -1;
    }
    if (!c->outgoing)
        return 0;
    char why[400];
    if (tls_session_handshake(c->tls, why, sizeof why) < 0) {
        tls_failed(c, why);
        return -1;
    }
    return tls_send_control(c);
}

/* Ciphertext read from the socket: the handshake first, then plaintext for the frames. */
static void tls_receive(struct conn *c, const unsigned char *data, size_t n)
{
    char why[400];
    if (tls_session_feed(c->tls, data, n) != 0) {
        conn_close(c, 1);
        return;
    }
    int done_now = 0;
    if (!c->tls_done) {
        int rc = tls_session_handshake(c->tls, why, sizeof why);
        if (rc < 0) {
            tls_send_control(c); /* the alert, if any, tells the other side why */
            tls_failed(c, why);
            return;
        }
        if (tls_send_control(c) != 0 || rc == 0)
            return;
        c->tls_done = done_now = 1;
    }
    unsigned char *plain = c->t->tls_plain;
    for (;;) {
        size_t got = 0;
        if (tls_session_read(c->tls, plain, READ_BUFFER_BYTES, &got, why, sizeof why) != 0) {
            tls_failed(c, why);
            return;
        }
        if (got == 0)
            break;
        conn_feed(c, plain, got);
        if (c->closing)
            return;
    }
    if (tls_send_control(c) != 0)
        return;
    if (done_now)
        conn_flush(c); /* the HELLO and frames held back during the handshake */
}

/* Encrypts the frames taken into bufs and writes their ciphertext as one request. */
static void tls_flush_frames(struct conn *c, const uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (tls_session_write(c->tls, bufs[i].base, bufs[i].len) != 0) {
            write_failed(c, UV_EPROTO);
            return;
        }
    }
    /* The ciphertext is what goes out now: the frames' memory goes at once (their count and
     * bytes stay in inflight_msgs / inflight_bytes until the write completes). */
    free_frames(c->inflight);
    c->inflight = NULL;
    size_t len;
    if (tls_session_take_output(c->tls, &c->tls_out, &len) != 0 || len == 0) {
        write_failed(c, UV_ENOMEM);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->tls_out, (unsigned)len);
    c->write_req.data = c;
    int rc = c->t->opts.stream->write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc != 0) {
        rc_free(c->tls_out);
        c->tls_out = NULL;
        write_failed(c, rc);
        return;
    }
    c->writing = 1;
}

/*
 * Writes the HELLO (once) and the queued frames, MAX_WRITE_BUFS per system call: straight
 * into the socket while it takes them (no write request, so libuv need not watch the socket
 * for writability), and what it does not take in one write request.
 */
static void conn_flush(struct conn *c)
{
    const struct transport_stream_ops *ops = c->t->opts.stream;
    for (;;) {
        if (c->writing || c->closing || !c->connected || (c->tls && !c->tls_done))
            return;
        uv_buf_t bufs[MAX_WRITE_BUFS];
        unsigned n = take_frames(c, bufs), first = 0;
        if (n == 0)
            return;
        if (c->tls) {
            tls_flush_frames(c, bufs, n);
            return;
        }
        if (ops->try_write) {
            int w = ops->try_write((uv_stream_t *)&c->tcp, bufs, n);
            if (w < 0 && w != UV_EAGAIN) {
                write_failed(c, w);
                return;
            }
            size_t done = w > 0 ? (size_t)w : 0;
            while (first < n && done >= bufs[first].len)
                done -= bufs[first++].len;
            if (first == n) {
                release_inflight(c, 1);
                continue;
            }
            bufs[first].base += done;
            bufs[first].len -= done;
        }
        c->write_req.data = c;
        int rc =
            ops->write(&c->write_req, (uv_stream_t *)&c->tcp, bufs + first, n - first, on_written);
        if (rc != 0) {
            write_failed(c, rc);
            return;
        }
        c->writing = 1;
        return;
    }
}

/* TCP keepalive with short probes (NOTES 4); best effort: a failure only loses the probes. */
static void conn_keepalive(struct conn *c)
{
    if (uv_tcp_keepalive(&c->tcp, 1, KEEPALIVE_IDLE_S) != 0)
        return;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return;
    int intvl = KEEPALIVE_INTVL_S, probes = KEEPALIVE_PROBES;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

/*
 * A dial to a loopback port in the ephemeral range with nothing listening can connect to
 * itself (TCP simultaneous open): the socket then holds the port the peer would restart on,
 * and its start fails ("address already in use"). Such a connection is closed at once.
 */
static int self_connected(uv_tcp_t *tcp)
{
    struct sockaddr_storage a, b;
    int la = sizeof a, lb = sizeof b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&a, &la) != 0 ||
        uv_tcp_getpeername(tcp, (struct sockaddr *)&b, &lb) != 0)
        return 0;
    return la == lb && memcmp(&a, &b, (size_t)la) == 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || self_connected(&c->tcp)) {
        rc_debug("transport: dial node %llu: %s", (unsigned long long)c->remote_id,
                 status < 0 ? uv_strerror(status) : "connected to itself");
        conn_close(c, 1);
        return;
    }
    c->connected = 1;
    c->connected_at_ms = uv_now(c->t->loop);
    uv_tcp_nodelay(&c->tcp, 1);
    conn_keepalive(c);
    if (c->t->opts.stream->read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c, 1);
        return;
    }
    if (c->t->opts.tls && tls_start(c) != 0)
        return;
    conn_flush(c);
}

static void peer_dial(struct peer *p)
{
    struct transport *t = p->t;
    struct conn *c = rc_calloc(1, sizeof *c);
    if (!c) {
        rc_warn("transport: out of memory dialing node %llu", (unsigned long long)p->id);
        peer_schedule_redial(p);
        return;
    }
    if (p->dialed_once)
        t->stats.reconnects++;
    p->dialed_once = 1;
    c->t = t;
    c->peer = p;
    c->outgoing = 1;
    c->remote_id = p->id;
    uv_tcp_init(t->loop, &c->tcp);
    t->handles_open++;
    c->tcp.data = c;
    p->conn = c;
    int rc = 0;
    /* SPEC §2: the source address is the peer-bind host, so nodes can be told apart. */
    if (t->source_sa.ss_family == p->sa.ss_family)
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&t->source_sa, 0);
    if (rc == 0) {
        c->connect_req.data = c;
        rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->sa, on_connect);
    }
    if (rc != 0) {
        rc_debug("transport: dial node %llu (%s): %s", (unsigned long long)p->id, p->addr,
                 uv_strerror(rc));
        conn_close(c, 1);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct transport *t = listener->data;
    if (status < 0) {
        rc_warn("transport: accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = rc_calloc(1, sizeof *c);
    if (!c) {
        rc_warn("transport: accept: out of memory; retrying shortly");
        t->accept_pending = 1; /* libuv waits for the accept: the sweep retries it */
        return;
    }
    c->t = t;
    uv_tcp_init(t->loop, &c->tcp);
    t->handles_open++;
    c->tcp.data = c;
    c->next = t->incoming;
    if (t->incoming)
        t->incoming->prev = c;
    t->incoming = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, 0);
        return;
    }
    t->stats.connections_accepted++;
    c->connected = 1;
    c->connected_at_ms = uv_now(t->loop);
    /* Too many waiting for their HELLO: the oldest goes (newest first in the list). Closing
     * the new one instead would let whoever holds the idle ones lock real peers out. */
    unsigned unidentified = 0;
    struct conn *oldest = NULL;
    for (struct conn *d = t->incoming; d; d = d->next)
        if (!d->hello_received) {
            unidentified++;
            oldest = d;
        }
    if (unidentified > MAX_UNIDENTIFIED) {
        t->stats.handshake_refusals++;
        rc_debug("transport: %u connections are waiting for their HELLO; closing the oldest",
                 unidentified);
        conn_close(oldest, 0);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_keepalive(c);
    if (t->opts.tls && tls_start(c) != 0)
        return;
    if (t->opts.stream->read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c, 0);
}

/* NOTES 4: closes accepted connections that sent no HELLO in time; retries an accept. */
static void on_sweep(uv_timer_t *timer)
{
    struct transport *t = timer->data;
    uint64_t now = uv_now(t->loop);
    struct conn *next;
    for (struct conn *c = t->incoming; c; c = next) {
        next = c->next;
        if (!c->hello_received && now - c->connected_at_ms >= t->opts.handshake_timeout_ms) {
            t->stats.handshake_refusals++;
            rc_debug("transport: closing a connection that sent no HELLO within %llu ms",
                     (unsigned long long)t->opts.handshake_timeout_ms);
            conn_close(c, 0);
        }
    }
    /* A dialed node that accepted the connection but never answers our HELLO (or TLS
     * handshake): without this its queue would wait for good (keepalive sees a live
     * kernel). Closed and dialed again after the backoff. */
    for (struct peer *p = t->peers; p; p = p->next) {
        struct conn *c = p->conn;
        if (c && c->connected && !c->hello_received && !c->closing &&
            now - c->connected_at_ms >= t->opts.handshake_timeout_ms) {
            rc_debug("transport: node %llu sent no HELLO within %llu ms; dialing again",
                     (unsigned long long)p->id, (unsigned long long)t->opts.handshake_timeout_ms);
            conn_close(c, 1);
        }
    }
    if (t->accept_pending) {
        t->accept_pending = 0;
        on_connection((uv_stream_t *)&t->listener, 0);
    }
}

/* ============================== peers ============================== */

static struct peer *find_peer(const struct transport *t, uint64_t id)
{
    for (struct peer *p = t->peers; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

/* Dials if there is something to send and no connection or backoff, else writes. */
static void peer_kick(struct peer *p)
{
    if (p->t->closing)
        return;
    if (p->conn)
        conn_flush(p->conn);
    else if (!p->in_backoff && p->head)
        peer_dial(p);
}

static void on_peer_timer_closed(uv_handle_t *h)
{
    struct peer *p = h->data;
    struct transport *t = p->t;
    rc_free(p);
    handle_closed(t);
}

/* Unlinks p, closes its connection and timer and drops its queue; freed once closed. */
static void peer_destroy(struct peer *p)
{
    struct transport *t = p->t;
    for (struct peer **pp = &t->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (p->conn)
        conn_close(p->conn, 0);
    t->stats.msgs_dropped += p->queued_msgs;
    free_frames(p->head);
    p->head = p->tail = p->queued_heartbeat = NULL;
    p->queued_bytes = 0;
    p->queued_msgs = 0;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
}

int transport_set_peer(struct transport *t, uint64_t node_id, const char *addr)
{
    struct sockaddr_storage sa;
    if (t->closing)
        return RC_ECLOSED;
    if (node_id == RAFT_NONE || node_id == t->opts.node_id || !addr ||
        strlen(addr) > MAX_ADDR_BYTES || parse_addr(addr, &sa) != 0)
        return RC_EINVAL;
    struct peer *p = find_peer(t, node_id);
    if (p) {
        if (strcmp(p->addr, addr) == 0)
            return 0;
        snprintf(p->addr, sizeof p->addr, "%s", addr);
        p->sa = sa;
        if (p->conn)
            conn_close(p->conn, 0);
        uv_timer_stop(&p->timer);
        p->in_backoff = 0;
        p->failures = 0;
        peer_kick(p);
        return 0;
    }
    p = rc_calloc(1, sizeof *p);
    if (!p)
        return RC_ENOMEM;
    p->t = t;
    p->id = node_id;
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    p->sa = sa;
    uv_timer_init(t->loop, &p->timer);
    t->handles_open++;
    p->timer.data = p;
    p->next = t->peers;
    t->peers = p;
    return 0;
}

int transport_remove_peer(struct transport *t, uint64_t node_id)
{
    struct peer *p = find_peer(t, node_id);
    if (!p)
        return RC_ENOTFOUND;
    peer_destroy(p);
    return 0;
}

/* ============================== sending ============================== */

int transport_send(struct transport *t, uint64_t to, const struct raft_message *m)
{
    if (t->closing)
        return RC_ECLOSED;
    struct peer *p = find_peer(t, to);
    if (!p) {
        t->stats.msgs_dropped++;
        return RC_ENOTFOUND;
    }
    size_t payload = raft_msg_encoded_size(m);
    size_t bytes = TRANSPORT_HEADER_BYTES + payload;
    if (payload > UINT32_MAX || bytes > t->opts.max_frame_bytes) {
        t->stats.msgs_dropped++;
        return RC_ETOOBIG;
    }
    struct frame *hb = p->queued_heartbeat;
    if (m->type == RAFT_MSG_HEARTBEAT && hb && hb->len == bytes) {
        raft_msg_encode(m, hb->data + TRANSPORT_HEADER_BYTES);
        seal_frame(hb);
        t->stats.heartbeats_superseded++;
        return 0;
    }
    size_t used = p->queued_bytes + (p->conn ? p->conn->inflight_bytes : 0);
    if (used > 0 && (bytes > t->opts.send_queue_bytes || used > t->opts.send_queue_bytes - bytes)) {
        t->stats.msgs_dropped++;
        return RC_EAGAIN;
    }
    struct frame *f = new_frame(TRANSPORT_FRAME_MESSAGE, payload);
    if (!f) {
        t->stats.msgs_dropped++;
        return RC_ENOMEM;
    }
    raft_msg_encode(m, f->data + TRANSPORT_HEADER_BYTES);
    seal_frame(f);
    if (p->tail)
        p->tail->next = f;
    else
        p->head = f;
    p->tail = f;
    if (m->type == RAFT_MSG_HEARTBEAT)
        p->queued_heartbeat = f;
    p->queued_bytes += f->len;
    p->queued_msgs++;
    if (!t->corked)
        peer_kick(p);
    return 0;
}

void transport_cork(struct transport *t)
{
    t->corked++;
}

void transport_uncork(struct transport *t)
{
    if (t->corked == 0 || --t->corked > 0)
        return;
    for (struct peer *p = t->peers; p; p = p->next)
        if (p->head)
            peer_kick(p);
}

/* ============================== open, stats, close ============================== */

void transport_options_default(struct transport_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->max_frame_bytes = (size_t)RAFT_ENTRY_MAX_BYTES + (1u << 20);
    opts->send_queue_bytes = 8u << 20;
    opts->backoff_min_ms = 50;
    opts->backoff_max_ms = 500;
    opts->handshake_timeout_ms = 5000;
}

/* The close callback of the listener and of the sweep timer. */
static void on_transport_handle_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

int transport_open(uv_loop_t *loop, const struct transport_options *opts,
                   transport_message_cb on_message, void *ctx, struct transport **out)
{
    const char *advertise = opts->advertise ? opts->advertise : opts->bind;
    if (opts->node_id == RAFT_NONE || !opts->bind || strlen(opts->bind) > MAX_ADDR_BYTES ||
        strlen(advertise) > MAX_ADDR_BYTES || !on_message ||
        opts->max_frame_bytes <= TRANSPORT_HEADER_BYTES || opts->backoff_min_ms == 0 ||
        opts->handshake_timeout_ms == 0 || opts->backoff_max_ms < opts->backoff_min_ms)
        return RC_EINVAL;
    struct transport *t = rc_calloc(1, sizeof *t);
    if (!t)
        return RC_ENOMEM;
    int rc = RC_ENOMEM;
    t->loop = loop;
    t->opts = *opts;
    if (!t->opts.stream)
        t->opts.stream = &transport_stream_tcp;
    snprintf(t->bind, sizeof t->bind, "%s", opts->bind);
    snprintf(t->advertise, sizeof t->advertise, "%s", advertise);
    t->opts.bind = t->bind;
    t->opts.advertise = t->advertise;
    t->on_message = on_message;
    t->ctx = ctx;
    if (parse_addr(t->bind, &t->bind_sa) != 0) {
        rc = RC_EINVAL;
        goto fail_alloc;
    }
    t->source_sa = t->bind_sa;
    if (t->source_sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&t->source_sa)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&t->source_sa)->sin6_port = 0;
    t->readbuf = rc_malloc(READ_BUFFER_BYTES);
    if (!t->readbuf)
        goto fail_alloc;
    if (t->opts.tls && !(t->tls_plain = rc_malloc(READ_BUFFER_BYTES)))
        goto fail_alloc;
    uv_tcp_init(loop, &t->listener);
    t->handles_open = 1;
    t->listener.data = t;
    rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&t->bind_sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->listener, 128, on_connection);
    if (rc != 0) {
        rc_warn("transport: cannot listen on %s: %s", t->bind, uv_strerror(rc));
        rc = RC_EIO;
        goto fail_listener;
    }
    /* Bound to port 0 with nothing to advertise: tell peers the port we got. */
    if (!opts->advertise) {
        const char *colon = strrchr(t->bind, ':');
        if (colon && strcmp(colon, ":0") == 0)
            snprintf(t->advertise, sizeof t->advertise, "%.*s:%d", (int)(colon - t->bind), t->bind,
                     transport_port(t));
    }
    size_t alen = strlen(t->advertise);
    t->hello = new_frame(TRANSPORT_FRAME_HELLO, HELLO_FIXED_BYTES + alen);
    if (!t->hello) {
        rc = RC_ENOMEM;
        goto fail_listener;
    }
    unsigned char *h = t->hello->data + TRANSPORT_HEADER_BYTES;
    put_u64(h, opts->cluster_id);
    put_u64(h + 8, opts->node_id);
    put_u16(h + 16, (uint16_t)alen);
    memcpy(h + 18, t->advertise, alen);
    seal_frame(t->hello);
    uv_timer_init(loop, &t->sweep);
    t->handles_open++;
    t->sweep.data = t;
    /* Half the handshake timeout, between 1 ms and 1 s. */
    uint64_t period = t->opts.handshake_timeout_ms / 2;
    if (period > 1000)
        period = 1000;
    if (period == 0)
        period = 1;
    uv_timer_start(&t->sweep, on_sweep, period, period);
    *out = t;
    return 0;

fail_listener:
    /* A libuv handle is released only through the loop; the transport goes with it. */
    t->closing = 1;
    uv_close((uv_handle_t *)&t->listener, on_transport_handle_closed);
    return rc;

fail_alloc:
    rc_free(t->readbuf);
    rc_free(t->tls_plain);
    rc_free(t);
    return rc;
}

int transport_port(const struct transport *t)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    if (uv_tcp_getsockname(&t->listener, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
}

void transport_stats(const struct transport *t, struct transport_stats *st)
{
    *st = t->stats;
}

int transport_peer_connected(const struct transport *t, uint64_t node_id)
{
    const struct peer *p = find_peer(t, node_id);
    return p && p->conn && p->conn->hello_received;
}

size_t transport_queued_bytes(const struct transport *t, uint64_t node_id)
{
    const struct peer *p = find_peer(t, node_id);
    if (!p)
        return 0;
    return p->queued_bytes + (p->conn ? p->conn->inflight_bytes : 0);
}

void transport_close(struct transport *t, void (*on_closed)(void *ctx), void *ctx)
{
    if (t->closing)
        return;
    t->closing = 1;
    t->on_closed = on_closed;
    t->closed_ctx = ctx;
    while (t->peers)
        peer_destroy(t->peers);
    while (t->incoming)
        conn_close(t->incoming, 0);
    uv_close((uv_handle_t *)&t->listener, on_transport_handle_closed);
    uv_close((uv_handle_t *)&t->sweep, on_transport_handle_closed);
}

/*
 * test_raft_transport.c — the libuv Raft transport on 127.0.0.1: delivery of every message
 * kind, cluster-id refusal, corrupt and oversized frames from a raw client, reconnect after
 * a peer restarts, the send-queue bound, and clean shutdown (LeakSanitizer runs at exit).
 * Every wait polls a condition under a deadline; nothing sleeps.
 */
#include "test.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "raft/transport.h"
#include "raftcask.h"

#include <uv.h>

#define DEADLINE_MS 10000
#define MAX_GOT     256

struct got {
    uint64_t from;
    size_t len;
    unsigned char *enc; /* the message re-encoded, to compare whole messages */
};

struct node {
    struct transport *t;
    uint64_t id;
    int port;
    int closed;
    struct got got[MAX_GOT];
    int n_got;
};

static uv_loop_t loop;
static uv_timer_t tick;

static void on_tick(uv_timer_t *h)
{
    (void)h;
}

static void loop_start(void)
{
    CHECK_OK(uv_loop_init(&loop));
    /* A short repeating timer wakes the loop so that run_until re-checks its condition. */
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
}

typedef int (*cond_fn)(void *arg);

static void run_until(cond_fn cond, void *arg, const char *what)
{
    uv_update_time(&loop);
    uint64_t deadline = uv_now(&loop) + DEADLINE_MS;
    while (!cond(arg)) {
        if (uv_now(&loop) > deadline)
            test_fail(__FILE__, __LINE__, "deadline passed waiting for %s", what);
        uv_run(&loop, UV_RUN_ONCE);
    }
}

static size_t encode_copy(const struct raft_message *m, unsigned char **out)
{
    size_t n = raft_msg_encoded_size(m);
    *out = rc_malloc(n);
    CHECK(*out);
    CHECK_EQ_U(raft_msg_encode(m, *out), n);
    return n;
}

static void on_message(void *ctx, uint64_t from, const struct raft_message *m)
{
    struct node *n = ctx;
    CHECK(n->n_got < MAX_GOT);
    CHECK_EQ_U(m->from, from);
    struct got *g = &n->got[n->n_got++];
    g->from = from;
    g->len = encode_copy(m, &g->enc);
}

static void node_open_opts(struct node *n, uint64_t id, struct transport_options *o, int port)
{
    char bind[64];
    snprintf(bind, sizeof bind, "127.0.0.1:%d", port);
    o->node_id = id;
    o->bind = bind;
    n->id = id;
    n->closed = 0;
    CHECK_OK(transport_open(&loop, o, on_message, n, &n->t));
    n->port = transport_port(n->t);
    CHECK(n->port > 0);
}

static void node_open(struct node *n, uint64_t id, uint64_t cluster)
{
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = cluster;
    node_open_opts(n, id, &o, 0);
}

static void link_to(struct node *from, const struct node *to)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", to->port);
    CHECK_OK(transport_set_peer(from->t, to->id, addr));
}

/* Two nodes: a (id 1) opened with o, b (id 2) with defaults in o's cluster; not linked. */
static void open_pair(struct node *a, struct node *b, struct transport_options *o)
{
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    node_open_opts(a, 1, o, 0);
    node_open(b, 2, o->cluster_id);
}

static void on_node_closed(void *ctx)
{
    ((struct node *)ctx)->closed = 1;
}

static int node_is_closed(void *arg)
{
    return ((struct node *)arg)->closed;
}

static void node_close(struct node *n)
{
    transport_close(n->t, on_node_closed, n);
    run_until(node_is_closed, n, "transport closed");
    n->t = NULL;
    for (int i = 0; i < n->n_got; i++)
        rc_free(n->got[i].enc);
    n->n_got = 0;
}

static void loop_finish(void)
{
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* Every handle of the transports must be closed by now. */
    CHECK_EQ(uv_loop_close(&loop), 0);
}

static struct transport_stats stats_of(const struct node *n)
{
    struct transport_stats st;
    transport_stats(n->t, &st);
    return st;
}

/* ============================== messages ============================== */

static char entry_data[2][16] = {"first entry", "second"};
static struct raft_entry entries[2];
static char snap_data[] = "snapshot chunk bytes";

/* A representative message of type with fields derived from seq. */
static struct raft_message make_msg(uint8_t type, uint64_t from, uint64_t to, uint64_t seq)
{
    struct raft_message m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.from = from;
    m.to = to;
    m.term = 7 + seq;
    switch (type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        m.log_index = 100 + seq;
        m.log_term = 6;
        m.transfer = type == RAFT_MSG_VOTE;
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        m.reject = (uint8_t)(seq & 1);
        break;
    case RAFT_MSG_APPEND:
        m.log_index = 10;
        m.log_term = 3;
        m.commit = 9;
        for (int i = 0; i < 2; i++) {
            entries[i] = (struct raft_entry){.term = 4,
                                             .index = 11 + (uint64_t)i,
                                             .type = RAFT_ENTRY_NORMAL,
                                             .len = (uint32_t)strlen(entry_data[i]),
                                             .data = entry_data[i]};
        }
        m.n_entries = 2;
        m.entries = entries;
        break;
    case RAFT_MSG_APPEND_RESP:
        m.reject = 1;
        m.index = 12;
        m.hint_index = 8;
        m.hint_term = 2;
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        m.commit = type == RAFT_MSG_HEARTBEAT ? 5 : 0;
        m.ctx = 42 + seq;
        break;
    case RAFT_MSG_SNAPSHOT:
    case RAFT_MSG_SNAPSHOT_RESP:
        m.snapshot.index = 50;
        m.snapshot.term = 4;
        m.snapshot.config.n_voters = 3;
        m.snapshot.config.voters[0] = 1;
        m.snapshot.config.voters[1] = 2;
        m.snapshot.config.voters[2] = 3;
        m.snapshot.offset = 4096;
        m.snapshot.done = 1;
        if (type == RAFT_MSG_SNAPSHOT) {
            m.snapshot.len = (uint32_t)strlen(snap_data);
            m.snapshot.data = snap_data;
        }
        break;
    default:
        break;
    }
    return m;
}

static int check_msg(const struct got *g, const struct raft_message *want)
{
    unsigned char *enc;
    size_t n = encode_copy(want, &enc);
    int same = n == g->len && memcmp(enc, g->enc, n) == 0;
    rc_free(enc);
    return same;
}

/* ============================== delivery ============================== */

struct count_wait {
    struct node *nodes;
    int n;
    int want;
};

static int all_received(void *arg)
{
    struct count_wait *w = arg;
    for (int i = 0; i < w->n; i++)
        if (w->nodes[i].n_got < w->want)
            return 0;
    return 1;
}

/* Opens count nodes with ids 1..count in one cluster, each a peer of every other. */
static void nodes_open_linked(struct node *n, int count, uint64_t cluster)
{
    memset(n, 0, (size_t)count * sizeof *n);
    for (int i = 0; i < count; i++)
        node_open(&n[i], (uint64_t)i + 1, cluster);
    for (int i = 0; i < count; i++)
        for (int j = 0; j < count; j++)
            if (i != j)
                link_to(&n[i], &n[j]);
}

TEST(transport_three_nodes_exchange_every_kind)
{
    loop_start();
    struct node n[3];
    nodes_open_linked(n, 3, 0xC1u);
    for (uint8_t type = 1; type <= RAFT_MSG_TYPE_MAX; type++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j) {
                    struct raft_message m = make_msg(type, n[i].id, n[j].id, type);
                    CHECK_OK(transport_send(n[i].t, n[j].id, &m));
                }
    struct count_wait w = {n, 3, 2 * RAFT_MSG_TYPE_MAX};
    run_until(all_received, &w, "every message");
    for (int j = 0; j < 3; j++) {
        CHECK_EQ(n[j].n_got, 2 * RAFT_MSG_TYPE_MAX);
        /* Per sender, messages arrive in the order sent. */
        for (int i = 0; i < 3; i++) {
            if (i == j)
                continue;
            uint8_t type = 1;
            for (int k = 0; k < n[j].n_got; k++) {
                if (n[j].got[k].from != n[i].id)
                    continue;
                struct raft_message m = make_msg(type, n[i].id, n[j].id, type);
                CHECK_MSG(check_msg(&n[j].got[k], &m), "node %d: message %d from %d differs", j, k,
                          i);
                type++;
            }
            CHECK_EQ(type, RAFT_MSG_TYPE_MAX + 1);
        }
        struct transport_stats st = stats_of(&n[j]);
        CHECK_EQ_U(st.msgs_received, 2 * RAFT_MSG_TYPE_MAX);
        CHECK_EQ_U(st.msgs_dropped, 0);
        CHECK_EQ_U(st.frames_rejected, 0);
    }
    for (int i = 0; i < 3; i++)
        node_close(&n[i]);
    loop_finish();
}

/*
 * Frames larger than a socket buffer (the sender and the receiver share one loop, so the
 * socket fills before anything is read) arrive whole and in order. Each snapshot chunk
 * carries 3 MiB of its own pattern; they are sent in pairs (the send queue holds 8 MiB).
 */
TEST(transport_large_frames_arrive_whole_and_in_order)
{
    loop_start();
    struct node n[2];
    nodes_open_linked(n, 2, 0xC2u);
    enum { FRAMES = 6, LEN = 3 << 20 };
    static char data[FRAMES][LEN];
    struct raft_message sent[FRAMES];
    for (int k = 0; k < FRAMES; k++) {
        for (size_t j = 0; j < LEN; j++)
            data[k][j] = (char)(k * 37 + j * 7);
        sent[k] = make_msg(RAFT_MSG_SNAPSHOT, n[0].id, n[1].id, (uint64_t)k + 1);
        sent[k].snapshot.data = data[k];
        sent[k].snapshot.len = LEN;
        CHECK_OK(transport_send(n[0].t, n[1].id, &sent[k]));
        if (k % 2 == 1) {
            struct count_wait w = {&n[1], 1, k + 1};
            run_until(all_received, &w, "a pair of large frames");
        }
    }
    CHECK_EQ(n[1].n_got, FRAMES);
    for (int k = 0; k < FRAMES; k++)
        CHECK_MSG(check_msg(&n[1].got[k], &sent[k]), "frame %d differs", k);
    struct transport_stats st = stats_of(&n[0]);
    CHECK_EQ_U(st.msgs_sent, FRAMES);
    CHECK_EQ_U(st.msgs_dropped, 0);
    for (int i = 0; i < 2; i++)
        node_close(&n[i]);
    loop_finish();
}

/* ============================== refusal ============================== */

static int refused_twice(void *arg)
{
    return stats_of(arg).handshake_refusals >= 2;
}

TEST(transport_other_cluster_is_refused)
{
    loop_start();
    struct node a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    node_open(&a, 1, 0xAAAA);
    node_open(&b, 2, 0xBBBB);
    link_to(&b, &a);
    struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, 2, 1, 1);
    CHECK_OK(transport_send(b.t, 1, &m));
    /* Two refusals: b keeps its message queued, re-dials after a backoff and is refused
     * again; it never writes the message, since a never answered its HELLO. */
    run_until(refused_twice, &a, "two refusals");
    CHECK_EQ(a.n_got, 0);
    CHECK_EQ_U(stats_of(&a).msgs_received, 0);
    CHECK(stats_of(&b).reconnects >= 1);
    CHECK_EQ_U(stats_of(&b).msgs_sent, 0);
    CHECK(transport_queued_bytes(b.t, 1) > 0);
    CHECK(!transport_peer_connected(b.t, 1));
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* The dialer refuses a node that answers with another id than the one it meant to reach. */
TEST(transport_dialer_refuses_unexpected_node_id)
{
    loop_start();
    struct node a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    node_open(&a, 1, 3);
    node_open(&b, 2, 3);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", a.port);
    CHECK_OK(transport_set_peer(b.t, 4, addr)); /* b believes node 4 lives at a's address */
    struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, 2, 4, 1);
    CHECK_OK(transport_send(b.t, 4, &m));
    run_until(refused_twice, &b, "two refusals by the dialer");
    CHECK_EQ(a.n_got, 0);
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* ============================== raw client: corrupt frames ============================== */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    unsigned char buf[256];
    size_t len;
    char rbuf[64];
    size_t nread; /* bytes received (the acceptor's HELLO) */
    int eof, closed;
};

static void raw_put_header(unsigned char *p, uint8_t kind, uint32_t len, uint32_t crc)
{
    uint32_t magic = TRANSPORT_MAGIC;
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(magic >> (8 * i));
        p[8 + i] = (unsigned char)(len >> (8 * i));
        p[12 + i] = (unsigned char)(crc >> (8 * i));
    }
    p[4] = TRANSPORT_VERSION;
    p[5] = kind;
    p[6] = p[7] = 0;
}

/* Appends a valid HELLO for (cluster, node) to r->buf. */
static void raw_hello(struct raw *r, uint64_t cluster, uint64_t node)
{
    unsigned char *p = r->buf + r->len;
    unsigned char *pl = p + TRANSPORT_HEADER_BYTES;
    for (int i = 0; i < 8; i++) {
        pl[i] = (unsigned char)(cluster >> (8 * i));
        pl[8 + i] = (unsigned char)(node >> (8 * i));
    }
    pl[16] = 3;
    pl[17] = 0;
    memcpy(pl + 18, "raw", 3);
    raw_put_header(p, TRANSPORT_FRAME_HELLO, 21, rc_crc32c(0, pl, 21));
    r->len += TRANSPORT_HEADER_BYTES + 21;
}

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    struct raw *r = h->data;
    (void)s;
    *b = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void raw_closed(uv_handle_t *h)
{
    ((struct raw *)h->data)->closed = 1;
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct raw *r = s->data;
    (void)b;
    if (n > 0)
        r->nread += (size_t)n;
    if (n < 0) {
        r->eof = 1;
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
    }
}

static void raw_written(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    CHECK_EQ(status, 0);
    uv_buf_t b = uv_buf_init((char *)r->buf, (unsigned)r->len);
    CHECK_OK(uv_write(&r->write_req, (uv_stream_t *)&r->tcp, &b, 1, raw_written));
    CHECK_OK(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read));
}

static void raw_send(struct raw *r, int port)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&loop, &r->tcp);
    r->tcp.data = r;
    r->connect_req.data = r;
    CHECK_OK(uv_tcp_connect(&r->connect_req, &r->tcp, (struct sockaddr *)&sa, raw_connected));
}

static int raw_closed_cond(void *arg)
{
    return ((struct raw *)arg)->closed;
}

static int got_one(void *arg)
{
    return ((struct node *)arg)->n_got >= 1;
}

TEST(transport_corrupt_and_oversized_frames_close_only_that_connection)
{
    loop_start();
    struct node a, b;
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 9;
    o.max_frame_bytes = 1 << 20;
    open_pair(&a, &b, &o);
    link_to(&b, &a);

    /* A HELLO, then a message frame whose CRC does not match its payload. */
    struct raw bad_crc;
    memset(&bad_crc, 0, sizeof bad_crc);
    raw_hello(&bad_crc, 9, 7);
    struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, 7, 1, 1);
    size_t n = raft_msg_encoded_size(&m);
    CHECK(bad_crc.len + TRANSPORT_HEADER_BYTES + n <= sizeof bad_crc.buf);
    unsigned char *pl = bad_crc.buf + bad_crc.len + TRANSPORT_HEADER_BYTES;
    raft_msg_encode(&m, pl);
    raw_put_header(bad_crc.buf + bad_crc.len, TRANSPORT_FRAME_MESSAGE, (uint32_t)n,
                   rc_crc32c(0, pl, n) ^ 1);
    bad_crc.len += TRANSPORT_HEADER_BYTES + n;
    raw_send(&bad_crc, a.port);
    run_until(raw_closed_cond, &bad_crc, "bad-CRC connection closed");
    CHECK(bad_crc.eof);
    CHECK_EQ_U(stats_of(&a).frames_rejected, 1);

    /* A HELLO, then a header announcing ~4 GiB: refused from the header alone. Were the
     * payload allocated, this connection would hang waiting for bytes instead of closing. */
    struct raw huge;
    memset(&huge, 0, sizeof huge);
    raw_hello(&huge, 9, 8);
    raw_put_header(huge.buf + huge.len, TRANSPORT_FRAME_MESSAGE, 0xFFFFFFF0u, 0);
    huge.len += TRANSPORT_HEADER_BYTES;
    raw_send(&huge, a.port);
    run_until(raw_closed_cond, &huge, "oversized connection closed");
    CHECK_EQ_U(stats_of(&a).frames_rejected, 2);

    /* A message before any HELLO. */
    struct raw no_hello;
    memset(&no_hello, 0, sizeof no_hello);
    raw_put_header(no_hello.buf, TRANSPORT_FRAME_MESSAGE, 0, rc_crc32c(0, "", 0));
    no_hello.len = TRANSPORT_HEADER_BYTES;
    raw_send(&no_hello, a.port);
    run_until(raw_closed_cond, &no_hello, "no-HELLO connection closed");
    CHECK_EQ_U(stats_of(&a).frames_rejected, 3);

    /* A first frame announcing more than the largest HELLO: a stranger could otherwise make
     * the node allocate up to the frame limit per connection before identifying itself. */
    struct raw fat_hello;
    memset(&fat_hello, 0, sizeof fat_hello);
    raw_put_header(fat_hello.buf, TRANSPORT_FRAME_HELLO, 64u << 10, 0);
    fat_hello.len = TRANSPORT_HEADER_BYTES;
    raw_send(&fat_hello, a.port);
    run_until(raw_closed_cond, &fat_hello, "oversized-HELLO connection closed");
    CHECK_EQ_U(stats_of(&a).frames_rejected, 4);

    /* A well-behaved peer is unaffected. */
    struct raft_message ok = make_msg(RAFT_MSG_APPEND, 2, 1, 1);
    CHECK_OK(transport_send(b.t, 1, &ok));
    run_until(got_one, &a, "delivery from the good peer");
    CHECK(check_msg(&a.got[0], &ok));
    CHECK_EQ(a.n_got, 1);
    node_close(&a);
    node_close(&b);
    loop_finish();
}

static int raw_got_hello(void *arg)
{
    return ((struct raw *)arg)->nread > 0;
}

static struct raw waiting[66];

static int two_waiting_closed(void *arg)
{
    (void)arg;
    int closed = 0;
    for (int i = 0; i < 66; i++)
        closed += waiting[i].closed;
    return closed >= 2;
}

/* A connection that never sends its HELLO is closed after handshake_timeout_ms, and a node
 * that connects again has its older incoming connection closed (a leftover whose close
 * never arrived would otherwise be kept for good). */
TEST(transport_silent_and_superseded_connections_are_closed)
{
    loop_start();
    struct node a;
    memset(&a, 0, sizeof a);
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 9;
    o.handshake_timeout_ms = 100;
    node_open_opts(&a, 1, &o, 0);

    struct raw silent;
    memset(&silent, 0, sizeof silent);
    raw_send(&silent, a.port); /* connects and sends nothing */
    run_until(raw_closed_cond, &silent, "silent connection closed");
    CHECK_EQ_U(stats_of(&a).handshake_refusals, 1);

    struct raw first, second;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    raw_hello(&first, 9, 7);
    raw_send(&first, a.port);
    run_until(raw_got_hello, &first, "HELLO answered on the first connection");
    raw_hello(&second, 9, 7);
    raw_send(&second, a.port);
    run_until(raw_closed_cond, &first, "older connection of node 7 closed");
    CHECK(second.nread > 0 && !second.closed);
    CHECK_EQ_U(stats_of(&a).handshake_refusals, 1);
    CHECK_EQ_U(stats_of(&a).frames_rejected, 0);

    node_close(&a);
    run_until(raw_closed_cond, &second, "the newer connection closed with the node");

    /* More than 64 connections waiting for their HELLO (with a deadline far away): each new
     * one closes the oldest, and a real peer still gets in. */
    struct node b;
    memset(&b, 0, sizeof b);
    o.handshake_timeout_ms = 600000;
    node_open_opts(&b, 2, &o, 0);
    memset(waiting, 0, sizeof waiting);
    for (int i = 0; i < 66; i++)
        raw_send(&waiting[i], b.port);
    run_until(two_waiting_closed, NULL, "connections beyond 64 without a HELLO closed");
    CHECK_EQ_U(stats_of(&b).handshake_refusals, 2);
    struct raw peer;
    memset(&peer, 0, sizeof peer);
    raw_hello(&peer, 9, 7);
    raw_send(&peer, b.port);
    run_until(raw_got_hello, &peer, "a real peer answered while 64 others wait");
    CHECK_EQ_U(stats_of(&b).handshake_refusals, 3);
    node_close(&b);
    run_until(raw_closed_cond, &peer, "the peer's connection closed with the node");
    for (int i = 0; i < 66; i++)
        run_until(raw_closed_cond, &waiting[i], "the waiting connections closed with the node");
    loop_finish();
}

/* ============================== peer down, then up ============================== */

static int reconnected_twice(void *arg)
{
    return stats_of(arg).reconnects >= 2;
}

static int peer_disconnected(void *arg)
{
    return !transport_peer_connected(((struct node *)arg)->t, 2);
}

static int got_three(void *arg)
{
    return ((struct node *)arg)->n_got >= 3;
}

/* a (id 1) linked to b (id 2), in cluster 5: one message delivered, then b closed and a
 * aware of it. Returns b's port, where reopen_b opens it again. */
static int open_pair_then_close_b(struct node *a, struct node *b, uint32_t backoff_max_ms)
{
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 5;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = backoff_max_ms;
    open_pair(a, b, &o);
    link_to(a, b);
    struct raft_message m1 = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 1);
    CHECK_OK(transport_send(a->t, 2, &m1));
    run_until(got_one, b, "first message");
    CHECK(transport_peer_connected(a->t, 2));
    int port = b->port;
    node_close(b);
    run_until(peer_disconnected, a, "a to notice");
    return port;
}

static void reopen_b(struct node *b, int port)
{
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 5;
    node_open_opts(b, 2, &o, port);
}

TEST(transport_peer_down_then_up_delivers_queued_messages)
{
    loop_start();
    struct node a, b;
    int port = open_pair_then_close_b(&a, &b, 80);
    /* Sent while b is down: queued; a keeps re-dialing (refused) with backoff. */
    struct raft_message m2 = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 2);
    CHECK_OK(transport_send(a.t, 2, &m2));
    run_until(reconnected_twice, &a, "re-dials while the peer is down");
    CHECK(transport_queued_bytes(a.t, 2) > 0);
    CHECK_EQ_U(stats_of(&a).msgs_dropped, 0);
    uint64_t before = stats_of(&a).reconnects;
    reopen_b(&b, port);
    run_until(got_one, &b, "queued message after the restart");
    CHECK(check_msg(&b.got[0], &m2));
    CHECK(stats_of(&a).reconnects > before);
    struct raft_message m3 = make_msg(RAFT_MSG_APPEND, 1, 2, 3);
    struct raft_message m4 = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 4);
    CHECK_OK(transport_send(a.t, 2, &m3));
    CHECK_OK(transport_send(a.t, 2, &m4));
    run_until(got_three, &b, "delivery resumed");
    CHECK(check_msg(&b.got[1], &m3));
    CHECK(check_msg(&b.got[2], &m4));
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* Heartbeats queued for a peer that is down collapse into the newest one, in the place of
 * the first (transport.c, note 6); other messages keep their order, and a heartbeat queued
 * after the collapsed one went out is queued anew. */
TEST(transport_heartbeats_queued_for_a_down_peer_collapse_to_the_newest)
{
    loop_start();
    struct node a, b;
    int port = open_pair_then_close_b(&a, &b, 40);
    struct raft_message append = make_msg(RAFT_MSG_APPEND, 1, 2, 2);
    struct raft_message hb = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 0);
    for (uint64_t i = 1; i <= 80; i++) {
        hb = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, i);
        CHECK_OK(transport_send(a.t, 2, &hb));
        if (i == 40)
            CHECK_OK(transport_send(a.t, 2, &append));
    }
    struct transport_stats st = stats_of(&a);
    CHECK_EQ_U(st.heartbeats_superseded, 79);
    CHECK_EQ_U(st.msgs_dropped, 0);
    run_until(reconnected_twice, &a, "re-dials while the peer is down");
    reopen_b(&b, port);
    struct count_wait two = {&b, 1, 2};
    run_until(all_received, &two, "the queued messages after the restart");
    CHECK(check_msg(&b.got[0], &hb)); /* the 80th heartbeat, where the 1st was queued */
    CHECK(check_msg(&b.got[1], &append));
    struct raft_message hb2 = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 81);
    CHECK_OK(transport_send(a.t, 2, &hb2));
    struct count_wait three = {&b, 1, 3};
    run_until(all_received, &three, "a heartbeat after the queue went out");
    CHECK(check_msg(&b.got[2], &hb2));
    CHECK_EQ(b.n_got, 3);
    CHECK_EQ_U(stats_of(&a).heartbeats_superseded, 79);
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* A node waiting out its redial backoff to a peer dials at once when that peer connects to
 * it: with a 60 s backoff, the queued message would otherwise miss the 10 s deadline. */
TEST(transport_a_peer_that_reaches_us_ends_our_redial_backoff)
{
    loop_start();
    struct node a, b;
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 5;
    o.backoff_min_ms = 60000;
    o.backoff_max_ms = 60000;
    open_pair(&a, &b, &o);
    link_to(&a, &b);
    struct raft_message m1 = make_msg(RAFT_MSG_APPEND, 1, 2, 1);
    CHECK_OK(transport_send(a.t, 2, &m1));
    run_until(got_one, &b, "first message");
    int port = b.port;
    node_close(&b);
    run_until(peer_disconnected, &a, "a to notice");
    struct raft_message m2 = make_msg(RAFT_MSG_APPEND, 1, 2, 2);
    CHECK_OK(transport_send(a.t, 2, &m2)); /* queued: a waits 60 s before it dials */
    reopen_b(&b, port);
    link_to(&b, &a);
    struct raft_message hello = make_msg(RAFT_MSG_HEARTBEAT_RESP, 2, 1, 1);
    CHECK_OK(transport_send(b.t, 1, &hello));
    run_until(got_one, &a, "b's message to a");
    run_until(got_one, &b, "a's queued message, once b reached a");
    CHECK(check_msg(&b.got[0], &m2));
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* ============================== bounded queue ============================== */

static int dialed_three_times(void *arg)
{
    return stats_of(arg).reconnects >= 3;
}

TEST(transport_queue_to_unreachable_peer_is_bounded)
{
    loop_start();
    struct node a;
    memset(&a, 0, sizeof a);
    struct transport_options o;
    transport_options_default(&o);
    o.send_queue_bytes = 4096;
    o.max_frame_bytes = 1 << 20;
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 20;
    node_open_opts(&a, 1, &o, 0);
    /* Port 1 on loopback: nothing listens, connections are refused at once. */
    CHECK_OK(transport_set_peer(a.t, 2, "127.0.0.1:1"));
    struct raft_message m = make_msg(RAFT_MSG_APPEND, 1, 2, 1);
    int queued = 0;
    for (int i = 0; i < 2000; i++) {
        int rc = transport_send(a.t, 2, &m);
        CHECK(rc == 0 || rc == RC_EAGAIN);
        queued += rc == 0;
        CHECK(transport_queued_bytes(a.t, 2) <= 4096);
        if (i % 100 == 0)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    run_until(dialed_three_times, &a, "re-dials");
    CHECK(transport_queued_bytes(a.t, 2) <= 4096);
    struct transport_stats st = stats_of(&a);
    CHECK(queued > 0);
    CHECK_EQ_U(st.msgs_dropped, 2000 - (uint64_t)queued);
    CHECK_EQ_U(st.msgs_sent, 0);
    /* Unknown peers, oversized messages and allocation failures drop the message too. */
    CHECK_EQ(transport_send(a.t, 99, &m), RC_ENOTFOUND);
    struct raft_message big = make_msg(RAFT_MSG_SNAPSHOT, 1, 2, 1);
    static char big_data[1u << 20];
    big.snapshot.data = big_data;
    big.snapshot.len = sizeof big_data;
    CHECK_EQ(transport_send(a.t, 2, &big), RC_ETOOBIG);
    CHECK_OK(transport_remove_peer(a.t, 2)); /* empties the queue */
    CHECK_OK(transport_set_peer(a.t, 2, "127.0.0.1:1"));
    rc_alloc_fail_after(0);
    int rc = transport_send(a.t, 2, &m);
    rc_alloc_fail_after(-1);
    CHECK_EQ(rc, RC_ENOMEM);
    CHECK_EQ_U(transport_queued_bytes(a.t, 2), 0);
    CHECK_EQ_U(stats_of(&a).msgs_dropped, st.msgs_dropped + 3 + (uint64_t)queued);
    node_close(&a);
    loop_finish();
}

/* A frame larger than the whole queue bound is queued when the queue is empty (an append
 * carrying one big entry would otherwise be refused on every retry, and replication would
 * stop at that entry), and only then: the next message waits for room. */
TEST(transport_frame_larger_than_the_queue_goes_out_alone)
{
    loop_start();
    struct node a, b;
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 3;
    o.send_queue_bytes = 4096;
    open_pair(&a, &b, &o);
    link_to(&a, &b);
    struct raft_message big = make_msg(RAFT_MSG_SNAPSHOT, 1, 2, 1);
    static char big_data[256u << 10];
    memset(big_data, 'v', sizeof big_data);
    big.snapshot.data = big_data;
    big.snapshot.len = sizeof big_data;
    CHECK_OK(transport_send(a.t, 2, &big));
    CHECK(transport_queued_bytes(a.t, 2) > 4096);
    struct raft_message small = make_msg(RAFT_MSG_APPEND, 1, 2, 1);
    CHECK_EQ(transport_send(a.t, 2, &small), RC_EAGAIN);
    run_until(got_one, &b, "the big frame delivered");
    CHECK(check_msg(&b.got[0], &big));
    CHECK_EQ_U(transport_queued_bytes(a.t, 2), 0);
    CHECK_OK(transport_send(a.t, 2, &small));
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* ============================== shutdown ============================== */

TEST(transport_close_with_traffic_in_every_state_is_clean)
{
    loop_start();
    struct node n[3];
    memset(n, 0, sizeof n);
    for (int i = 0; i < 3; i++)
        node_open(&n[i], (uint64_t)i + 1, 1);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                link_to(&n[i], &n[j]);
    CHECK_OK(transport_set_peer(n[0].t, 9, "127.0.0.1:1"));
    struct raft_message m = make_msg(RAFT_MSG_SNAPSHOT, 1, 2, 1);
    /* Some connections established and writing, some dialing, some in backoff. */
    for (int k = 0; k < 20; k++) {
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j) {
                    m.from = n[i].id;
                    m.to = n[j].id;
                    CHECK_OK(transport_send(n[i].t, n[j].id, &m));
                }
        transport_send(n[0].t, 9, &m);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    CHECK_OK(transport_remove_peer(n[0].t, 3));
    CHECK_EQ(transport_remove_peer(n[0].t, 3), RC_ENOTFOUND);
    for (int i = 0; i < 3; i++)
        transport_close(n[i].t, on_node_closed, &n[i]);
    CHECK_EQ(transport_send(n[1].t, 1, &m), RC_ECLOSED);
    for (int i = 0; i < 3; i++) {
        run_until(node_is_closed, &n[i], "close");
        for (int k = 0; k < n[i].n_got; k++)
            rc_free(n[i].got[k].enc);
    }
    loop_finish();
}

TEST(transport_rejects_bad_options_and_addresses)
{
    loop_start();
    struct node a;
    memset(&a, 0, sizeof a);
    struct transport_options o;
    transport_options_default(&o);
    o.bind = "127.0.0.1:0";
    struct transport *t = NULL;
    CHECK_EQ(transport_open(&loop, &o, on_message, &a, &t), RC_EINVAL); /* node id 0 */
    o.node_id = 1;
    o.bind = "nonsense";
    CHECK_EQ(transport_open(&loop, &o, on_message, &a, &t), RC_EINVAL);
    node_open(&a, 1, 1);
    /* A port in use: RC_EIO, and the half-made transport is released by the loop. */
    char bind[64];
    snprintf(bind, sizeof bind, "127.0.0.1:%d", a.port);
    o.bind = bind;
    o.node_id = 2;
    CHECK_EQ(transport_open(&loop, &o, on_message, &a, &t), RC_EIO);
    CHECK_EQ(transport_set_peer(a.t, 1, "127.0.0.1:5"), RC_EINVAL);
    CHECK_EQ(transport_set_peer(a.t, 2, "127.0.0.1"), RC_EINVAL);
    CHECK_EQ(transport_set_peer(a.t, 2, "host:99999"), RC_EINVAL);
    CHECK_OK(transport_set_peer(a.t, 2, "[::1]:4000"));
    CHECK_OK(transport_set_peer(a.t, 2, "127.0.0.1:4000"));
    node_close(&a);
    loop_finish();
}

/* ============================== pluggable stream layer ============================== */

static int stream_reads, stream_writes, stream_closes;

static int counting_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    stream_reads++;
    return transport_stream_tcp.read_start(s, alloc_cb, read_cb);
}

static int counting_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                          uv_write_cb cb)
{
    stream_writes++;
    return transport_stream_tcp.write(req, s, bufs, nbufs, cb);
}

static void counting_close(uv_handle_t *h, uv_close_cb cb)
{
    stream_closes++;
    transport_stream_tcp.close(h, cb);
}

/* No try_write: every write goes through write (the path a TLS layer would take). */
static const struct transport_stream_ops counting_ops = {counting_read_start, counting_write,
                                                         counting_close, NULL};

/* Nodes 1 (a) and 2 (b) of cluster 2 over stream layer ops, a linked to b. */
static void open_pair_over(struct node *a, struct node *b, const struct transport_stream_ops *ops)
{
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 2;
    o.stream = ops;
    node_open_opts(a, 1, &o, 0);
    node_open_opts(b, 2, &o, 0);
    link_to(a, b);
}

TEST(transport_stream_layer_is_pluggable)
{
    loop_start();
    struct node a, b;
    open_pair_over(&a, &b, &counting_ops);
    struct raft_message m = make_msg(RAFT_MSG_VOTE, 1, 2, 1);
    CHECK_OK(transport_send(a.t, 2, &m));
    run_until(got_one, &b, "delivery through the wrapped stream");
    CHECK(check_msg(&b.got[0], &m));
    CHECK_EQ(stream_reads, 2); /* both ends of the one connection */
    CHECK(stream_writes >= 3); /* two HELLOs and the message */
    node_close(&a);
    node_close(&b);
    CHECK_EQ(stream_closes, 2);
    loop_finish();
}

/* The TCP layer with its try_write counted: how many system calls the frames took. */
static int try_writes;

static int counting_try_write(uv_stream_t *s, const uv_buf_t bufs[], unsigned nbufs)
{
    try_writes++;
    return transport_stream_tcp.try_write(s, bufs, nbufs);
}

static const struct transport_stream_ops try_write_ops = {counting_read_start, counting_write,
                                                          counting_close, counting_try_write};

static int got_five(void *arg)
{
    return ((struct node *)arg)->n_got >= 5;
}

TEST(transport_corked_sends_leave_in_one_write)
{
    loop_start();
    struct node a, b;
    open_pair_over(&a, &b, &try_write_ops);
    struct raft_message first = make_msg(RAFT_MSG_VOTE, 1, 2, 1);
    CHECK_OK(transport_send(a.t, 2, &first));
    run_until(got_one, &b, "the connection up and a first message through");
    int calls = try_writes, writes = stream_writes;
    struct raft_message m[4];
    transport_cork(a.t);
    for (int i = 0; i < 4; i++) {
        m[i] = make_msg(RAFT_MSG_APPEND, 1, 2, (uint64_t)i + 2);
        CHECK_OK(transport_send(a.t, 2, &m[i]));
    }
    CHECK_EQ(try_writes, calls); /* corked: only queued */
    CHECK(transport_queued_bytes(a.t, 2) > 0);
    transport_uncork(a.t);
    CHECK_EQ(try_writes, calls + 1); /* all four frames in one system call */
    CHECK_EQ(stream_writes, writes); /* the socket took them: no write request */
    CHECK_EQ_U(transport_queued_bytes(a.t, 2), 0);
    run_until(got_five, &b, "the corked messages");
    for (int i = 0; i < 4; i++)
        CHECK(check_msg(&b.got[i + 1], &m[i]));
    CHECK_EQ_U(stats_of(&a).msgs_sent, 5);
    node_close(&a);
    node_close(&b);
    loop_finish();
}

/* ============================== source address (SPEC §2) ============================== */

struct source_probe {
    uv_tcp_t listener, accepted;
    char host[64];
    int seen, accepted_open;
};

static void probe_on_connection(uv_stream_t *l, int status)
{
    struct source_probe *sp = l->data;
    CHECK_EQ(status, 0);
    uv_tcp_init(&loop, &sp->accepted);
    sp->accepted_open = 1;
    CHECK_OK(uv_accept(l, (uv_stream_t *)&sp->accepted));
    struct sockaddr_storage sa;
    int len = sizeof sa;
    CHECK_OK(uv_tcp_getpeername(&sp->accepted, (struct sockaddr *)&sa, &len));
    uv_ip4_name((struct sockaddr_in *)&sa, sp->host, sizeof sp->host);
    sp->seen = 1;
}

static int probe_seen(void *arg)
{
    return ((struct source_probe *)arg)->seen;
}

/* Outgoing connections come from the bind host, so nodes on one machine are told apart. */
TEST(transport_dials_from_the_bind_host)
{
    loop_start();
    struct source_probe sp;
    memset(&sp, 0, sizeof sp);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &sp.listener);
    sp.listener.data = &sp;
    CHECK_OK(uv_tcp_bind(&sp.listener, (struct sockaddr *)&sa, 0));
    CHECK_OK(uv_listen((uv_stream_t *)&sp.listener, 8, probe_on_connection));
    struct sockaddr_storage ss;
    int len = sizeof ss;
    CHECK_OK(uv_tcp_getsockname(&sp.listener, (struct sockaddr *)&ss, &len));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));

    struct node a;
    memset(&a, 0, sizeof a);
    struct transport_options o;
    transport_options_default(&o);
    o.node_id = 1;
    o.bind = "127.0.0.13:0";
    CHECK_OK(transport_open(&loop, &o, on_message, &a, &a.t));
    CHECK_OK(transport_set_peer(a.t, 2, addr));
    struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 1);
    CHECK_OK(transport_send(a.t, 2, &m));
    run_until(probe_seen, &sp, "the dial");
    CHECK_STR(sp.host, "127.0.0.13");
    node_close(&a);
    uv_close((uv_handle_t *)&sp.listener, NULL);
    if (sp.accepted_open)
        uv_close((uv_handle_t *)&sp.accepted, NULL);
    loop_finish();
}

/* ============================== TLS ============================== */

/* Makes, in the test's directory, CA "ca" with nodes a and b, and CA "other" with node c
 * (openssl's command line; EC P-256 keys, quick to make). */
static const char *make_certs(void)
{
    const char *dir = test_tmpdir();
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; "
             "mk_ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -keyout $1.key -out $1.crt -days 2 -subj /CN=$1; }; "
             "mk_node() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout $2.key -out $2.csr -subj /CN=$2; openssl x509 -req -in $2.csr -CA $1.crt "
             "-CAkey $1.key -CAcreateserial -out $2.crt -days 2; }; "
             "mk_ca ca; mk_ca other; mk_node ca a; mk_node ca b; mk_node other c",
             dir);
    char full[8300];
    snprintf(full, sizeof full, "(%s) >/dev/null 2>&1", cmd);
    CHECK_MSG(system(full) == 0, "openssl could not make the test certificates in %s", dir);
    return dir;
}

static struct tls_context *tls_for(const char *dir, const char *node, const char *ca)
{
    char cert[4200], key[4200], cafile[4200];
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, node);
    snprintf(key, sizeof key, "%s/%s.key", dir, node);
    snprintf(cafile, sizeof cafile, "%s/%s.crt", dir, ca);
    struct tls_context *ctx = NULL;
    CHECK_OK(tls_context_new(cert, key, cafile, &ctx));
    return ctx;
}

static void node_open_tls(struct node *n, uint64_t id, uint64_t cluster, struct tls_context *tls)
{
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = cluster;
    o.tls = tls;
    node_open_opts(n, id, &o, 0);
}

/* Starts the loop and two nodes of one cluster, n[0] (id 1) and n[1] (id id_b), each a peer
 * of the other; a NULL context opens a plaintext node. */
static void open_linked_pair(struct node *n, uint64_t cluster, struct tls_context *ta,
                             uint64_t id_b, struct tls_context *tb)
{
    loop_start();
    memset(n, 0, 2 * sizeof *n);
    node_open_tls(&n[0], 1, cluster, ta);
    node_open_tls(&n[1], id_b, cluster, tb);
    link_to(&n[0], &n[1]);
    link_to(&n[1], &n[0]);
}

/* Every message kind both ways, and frames of 3 MiB (many TLS records, partial socket
 * writes and reads), arrive whole and in order between two nodes of one CA. */
TEST(transport_tls_carries_every_kind_and_large_frames)
{
    const char *dir = make_certs();
    struct tls_context *ta = tls_for(dir, "a", "ca"), *tb = tls_for(dir, "b", "ca");
    struct node n[2];
    open_linked_pair(n, 0xC7u, ta, 2, tb);
    for (uint8_t type = 1; type <= RAFT_MSG_TYPE_MAX; type++)
        for (int i = 0; i < 2; i++) {
            struct raft_message m = make_msg(type, n[i].id, n[1 - i].id, type);
            CHECK_OK(transport_send(n[i].t, n[1 - i].id, &m));
        }
    struct count_wait w = {n, 2, RAFT_MSG_TYPE_MAX};
    run_until(all_received, &w, "every message over TLS");
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < RAFT_MSG_TYPE_MAX; k++) {
            struct raft_message m = make_msg((uint8_t)(k + 1), n[1 - j].id, n[j].id, k + 1u);
            CHECK_MSG(check_msg(&n[j].got[k], &m), "node %d: message %d differs", j, k);
        }
    enum { FRAMES = 4, LEN = 3 << 20 };
    static char data[FRAMES][LEN];
    struct raft_message sent[FRAMES];
    for (int k = 0; k < FRAMES; k++) {
        for (size_t j = 0; j < LEN; j++)
            data[k][j] = (char)(k * 31 + j * 13);
        sent[k] = make_msg(RAFT_MSG_SNAPSHOT, n[0].id, n[1].id, (uint64_t)k + 1);
        sent[k].snapshot.data = data[k];
        sent[k].snapshot.len = LEN;
        CHECK_OK(transport_send(n[0].t, n[1].id, &sent[k]));
        if (k % 2 == 1) {
            struct count_wait wl = {&n[1], 1, RAFT_MSG_TYPE_MAX + k + 1};
            run_until(all_received, &wl, "a pair of large frames over TLS");
        }
    }
    for (int k = 0; k < FRAMES; k++)
        CHECK_MSG(check_msg(&n[1].got[RAFT_MSG_TYPE_MAX + k], &sent[k]), "frame %d differs", k);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_U(stats_of(&n[i]).frames_rejected, 0);
        CHECK_EQ_U(stats_of(&n[i]).handshake_refusals, 0);
    }
    for (int i = 0; i < 2; i++)
        node_close(&n[i]);
    loop_finish();
    tls_context_free(ta);
    tls_context_free(tb);
}

static int handshakes_refused(void *arg)
{
    struct node *pair = arg;
    return stats_of(&pair[0]).handshake_refusals >= 2 && stats_of(&pair[1]).handshake_refusals >= 2;
}

/* Node c's certificate comes from another CA: neither side completes the handshake, in
 * either direction, and no message is delivered. */
TEST(transport_tls_refuses_a_certificate_from_another_ca)
{
    const char *dir = make_certs();
    struct tls_context *ta = tls_for(dir, "a", "ca"), *tc = tls_for(dir, "c", "ca");
    struct node n[2];
    open_linked_pair(n, 0xC8u, ta, 3, tc);
    for (int i = 0; i < 2; i++) {
        struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, n[i].id, n[1 - i].id, 1);
        CHECK_OK(transport_send(n[i].t, n[1 - i].id, &m));
    }
    run_until(handshakes_refused, n, "refused handshakes on both sides");
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(n[i].n_got, 0);
        CHECK_EQ_U(stats_of(&n[i]).msgs_sent, 0);
        CHECK(!transport_peer_connected(n[i].t, n[1 - i].id));
    }
    for (int i = 0; i < 2; i++)
        node_close(&n[i]);
    loop_finish();
    tls_context_free(ta);
    tls_context_free(tc);
}

/* Counts the lines about TLS failures on connections dialed to node 3. */
struct tls_lines {
    int warnings, all;
};

static void count_tls_lines(enum rc_log_level level, const char *line, void *ctx)
{
    struct tls_lines *c = ctx;
    if (strstr(line, "transport: TLS with node 3: ")) {
        c->all++;
        c->warnings += level == RC_LOG_WARNING;
    }
}

static int several_tls_failures(void *arg)
{
    return ((struct tls_lines *)arg)->all >= 4;
}

/* A peer whose certificate we refuse is redialed every backoff_max_ms at most; the failure
 * is logged at warning level once (per 10 s), the redials' failures at debug level. */
TEST(transport_tls_failures_with_a_peer_are_warned_once_then_at_debug)
{
    const char *dir = make_certs();
    struct tls_context *ta = tls_for(dir, "a", "ca"), *tc = tls_for(dir, "c", "ca");
    struct tls_lines lines = {0};
    enum rc_log_level level = rc_log_get_level();
    rc_log_set_level(RC_LOG_DEBUG);
    rc_log_set_sink(count_tls_lines, &lines);
    struct node n[2];
    open_linked_pair(n, 0xCAu, ta, 3, tc);
    struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, n[0].id, n[1].id, 1);
    CHECK_OK(transport_send(n[0].t, n[1].id, &m));
    run_until(several_tls_failures, &lines, "four failed TLS dials of node 3");
    for (int i = 0; i < 2; i++)
        node_close(&n[i]);
    loop_finish();
    rc_log_set_sink(NULL, NULL);
    rc_log_set_level(level);
    CHECK_EQ(lines.warnings, 1);
    tls_context_free(ta);
    tls_context_free(tc);
}

static int rejected_a_frame(void *arg)
{
    return stats_of(arg).frames_rejected >= 1;
}

/* A plaintext node and a TLS node cannot talk, whichever dials: the TLS side refuses the
 * plaintext HELLO as a bad handshake, and the plaintext side the TLS records as bad frames. */
TEST(transport_tls_and_plaintext_nodes_refuse_each_other)
{
    const char *dir = make_certs();
    struct tls_context *ta = tls_for(dir, "a", "ca");
    struct node n[2];
    open_linked_pair(n, 0xC9u, ta, 2, NULL);
    for (int i = 0; i < 2; i++) {
        struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, n[i].id, n[1 - i].id, 1);
        CHECK_OK(transport_send(n[i].t, n[1 - i].id, &m));
    }
    struct node *tls_node = &n[0], *plain = &n[1];
    run_until(refused_twice, tls_node, "the TLS node refusing plaintext twice");
    run_until(rejected_a_frame, plain, "the plaintext node rejecting TLS records");
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(n[i].n_got, 0);
        CHECK_EQ_U(stats_of(&n[i]).msgs_sent, 0);
    }
    for (int i = 0; i < 2; i++)
        node_close(&n[i]);
    loop_finish();
    tls_context_free(ta);
}

TEST(tls_context_refuses_missing_files_and_a_key_of_another_certificate)
{
    const char *dir = make_certs();
    char cert[4200], key[4200], other_key[4200], ca[4200], missing[4200];
    snprintf(cert, sizeof cert, "%s/a.crt", dir);
    snprintf(key, sizeof key, "%s/a.key", dir);
    snprintf(other_key, sizeof other_key, "%s/b.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    struct tls_context *ctx = (struct tls_context *)1;
    CHECK_EQ(tls_context_new(missing, key, ca, &ctx), RC_EINVAL);
    CHECK(ctx == NULL);
    CHECK_EQ(tls_context_new(cert, missing, ca, &ctx), RC_EINVAL);
    CHECK_EQ(tls_context_new(cert, other_key, ca, &ctx), RC_EINVAL);
    CHECK_EQ(tls_context_new(cert, key, missing, &ctx), RC_EINVAL);
    CHECK_EQ(tls_context_new(key, key, ca, &ctx), RC_EINVAL); /* a key is no certificate */
    CHECK_OK(tls_context_new(cert, key, ca, &ctx));
    tls_context_free(ctx);
}

/* ============================== a dialed node that never answers ============================== */

static uv_tcp_t mute_listener, mute_conns[8];
static int mute_accepted;

static void mute_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static char sink[4096];
    (void)h;
    (void)s;
    *b = uv_buf_init(sink, sizeof sink);
}

static void mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    (void)n;
    (void)b; /* reads the HELLO, never answers */
}

static void mute_on_connection(uv_stream_t *listener, int status)
{
    CHECK_OK(status);
    CHECK(mute_accepted < 8);
    uv_tcp_t *c = &mute_conns[mute_accepted++];
    uv_tcp_init(&loop, c);
    CHECK_OK(uv_accept(listener, (uv_stream_t *)c));
    uv_read_start((uv_stream_t *)c, mute_alloc, mute_read);
}

static int mute_dialed_twice(void *arg)
{
    (void)arg;
    return mute_accepted >= 2;
}

/* A node that accepts the connection but never answers the HELLO: the dialer closes it after
 * the handshake deadline and dials again (it used to wait for good, its queue stuck). */
TEST(transport_dialer_gives_up_on_a_node_that_never_answers)
{
    loop_start();
    uv_tcp_init(&loop, &mute_listener);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    CHECK_OK(uv_tcp_bind(&mute_listener, (struct sockaddr *)&sa, 0));
    CHECK_OK(uv_listen((uv_stream_t *)&mute_listener, 8, mute_on_connection));
    int len = sizeof sa;
    CHECK_OK(uv_tcp_getsockname(&mute_listener, (struct sockaddr *)&sa, &len));
    struct node a;
    memset(&a, 0, sizeof a);
    struct transport_options o;
    transport_options_default(&o);
    o.cluster_id = 11;
    o.handshake_timeout_ms = 100;
    o.backoff_min_ms = 10;
    node_open_opts(&a, 1, &o, 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    CHECK_OK(transport_set_peer(a.t, 2, addr));
    struct raft_message m = make_msg(RAFT_MSG_HEARTBEAT, 1, 2, 1);
    CHECK_OK(transport_send(a.t, 2, &m));
    run_until(mute_dialed_twice, NULL, "a second dial after the first got no HELLO");
    CHECK(stats_of(&a).reconnects >= 1);
    CHECK_EQ_U(stats_of(&a).msgs_sent, 0);
    node_close(&a);
    for (int i = 0; i < mute_accepted; i++)
        uv_close((uv_handle_t *)&mute_conns[i], NULL);
    uv_close((uv_handle_t *)&mute_listener, NULL);
    loop_finish();
}

/*
 * forward.c — a follower in --follower-mode proxy relays commands to the leader.
 *
 * A pool of up to FORWARD_POOL pipelined RESP connections to the leader's client address
 * is kept open and reused; each forwarded command goes on the connection with the fewest
 * commands waiting (a new one is opened while all are busy and the pool has room). On a
 * connection replies come back in order, which is what pairs them with their clients; the
 * leader serves one connection's commands one after another (a linearizable read waits for
 * its ReadIndex round), so the pool is what lets many clients' reads share a round. A
 * client's pipelined commands are forwarded without waiting for each reply, all on the
 * connection its first one went on (client_forwarded; may_run holds back any other command
 * until they are answered); the reply's bytes are relayed as they are. An admin command's
 * client is blocked instead (client_block). The connection authenticates with --requirepass first
 * when one is set (the cluster shares it). If the leader changes, the connection fails, or the
 * oldest command waits longer than FORWARD_DEADLINE_MS, the connection is closed and every waiting
 * client gets an error (the command may or may not have been applied, as with any lost connection).
 * A membership command (forward_admin) may take the leader up to a minute (a joining
 * node is caught up first): it gets a connection of its own, with that deadline, closed
 * once answered, so that no client's command waits behind it. The last slot of the pool
 * is kept for it: pooled connections stay open while the leader does.
 */
#include "server.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <string.h>

#define FORWARD_DEADLINE_MS 5000
#define ADMIN_DEADLINE_MS   65000 /* the leader's own job deadline (cluster.c) and a margin */
#define FORWARD_POOL        16
#define DRAIN_GRACE_MS      500
#define TIMER_MS            100
#define REPLY_MAX_DEPTH     32

struct waiter {
    struct client *client; /* NULL: the AUTH reply, or a client that went away */
    uint64_t sent_ms;
    size_t bytes; /* of the command, counted in server.fwd_bytes_inflight */
};

struct forwarder {
    struct server *s;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_timer_t timer;
    char addr[CLUSTER_ADDR_MAX];
    bool connected, closing, timer_on;
    bool exclusive;             /* one admin command's own connection */
    uint64_t deadline_ms;       /* a command's longest wait for its reply */
    uint64_t draining_since_ms; /* 0: a connection to the current leader */
    struct resp_buf pending;    /* bytes to send once connected */
    char *in;
    size_t in_len, in_cap;
    struct waiter *w;
    size_t wn, wcap, whead; /* FIFO w[whead .. wn) */
};

/* ============================== reply framing ============================== */

static long line_end(const char *b, size_t len, size_t from)
{
    for (size_t i = from; i + 1 < len; i++)
        if (b[i] == '\r' && b[i + 1] == '\n')
            return (long)i;
    return -1;
}

/* Bytes of the one complete RESP2 reply at b (0: incomplete; -1: malformed). */
static long reply_length_at(const char *b, size_t len, size_t pos, int depth)
{
    if (depth > REPLY_MAX_DEPTH)
        return -1;
    if (pos >= len)
        return 0;
    long eol = line_end(b, len, pos);
    if (eol < 0)
        return 0;
    char kind = b[pos];
    size_t next = (size_t)eol + 2;
    if (kind == '+' || kind == '-' || kind == ':')
        return (long)(next - pos);
    if (kind != '$' && kind != '*')
        return -1;
    long long n = 0;
    int neg = 0;
    size_t i = pos + 1;
    if (i < (size_t)eol && b[i] == '-') {
        neg = 1;
        i++;
    }
    if (i == (size_t)eol)
        return -1;
    for (; i < (size_t)eol; i++) {
        if (b[i] < '0' || b[i] > '9' || n > (1ll << 40))
            return -1;
        n = n * 10 + (b[i] - '0');
    }
    if (neg)
        return n == 1 ? (long)(next - pos) : -1;
    if (kind == '$') {
        if (len < next + (size_t)n + 2)
            return 0;
        return (long)(next + (size_t)n + 2 - pos);
    }
    size_t at = next;
    for (long long k = 0; k < n; k++) {
        long l = reply_length_at(b, len, at, depth + 1);
        if (l <= 0)
            return l;
        at += (size_t)l;
    }
    return (long)(at - pos);
}

long forward_reply_length(const char *b, size_t len)
{
    return reply_length_at(b, len, 0, 0);
}

/* ============================== the connection ============================== */

static void answer(struct forwarder *f, struct waiter *w, const char *reply, size_t len)
{
    f->s->fwd_bytes_inflight -= w->bytes;
    w->bytes = 0;
    if (w->client && !f->exclusive) /* client_forwarded; an admin command's: client_block */
        client_forwarded_reply(w->client, reply, len);
    else if (w->client)
        client_unblock(w->client, reply, len);
}

static void on_closed(uv_handle_t *h)
{
    struct forwarder *f = h->data;
    rc_free(f->in);
    rc_free(f->w);
    resp_buf_free(&f->pending);
    rc_free(f);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct forwarder *f = h->data;
    uv_close((uv_handle_t *)&f->tcp, on_closed);
}

/* Closes the connection; every waiting client gets reply. */
static void fwd_close(struct forwarder *f, const char *reply)
{
    if (f->closing)
        return;
    f->closing = true;
    for (size_t i = 0; i < FORWARD_POOL; i++)
        if (f->s->fwd[i] == f)
            f->s->fwd[i] = NULL;
    for (size_t i = f->whead; i < f->wn; i++)
        answer(f, &f->w[i], reply, strlen(reply));
    f->whead = f->wn = 0;
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct forwarder *f = h->data;
    (void)suggested;
    if (f->in_cap - f->in_len < 16384) {
        size_t cap = f->in_cap ? f->in_cap * 2 : 65536;
        char *n = rc_realloc(f->in, cap);
        if (!n) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        f->in = n;
        f->in_cap = cap;
    }
    buf->base = f->in + f->in_len;
    buf->len = f->in_cap - f->in_len;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct forwarder *f = st->data;
    (void)buf;
    if (nread < 0) {
        fwd_close(f, "-ERR connection to the leader lost; the command may or may not have been "
                     "applied\r\n");
        return;
    }
    f->in_len += (size_t)nread;
    size_t pos = 0;
    while (pos < f->in_len) {
        long l = forward_reply_length(f->in + pos, f->in_len - pos);
        if (l == 0)
            break;
        if (l < 0 || f->whead == f->wn) {
            fwd_close(f, "-ERR malformed reply from the leader\r\n");
            return;
        }
        struct waiter w = f->w[f->whead++];
        answer(f, &w, f->in + pos, (size_t)l);
        pos += (size_t)l;
        if (f->closing)
            return;
    }
    memmove(f->in, f->in + pos, f->in_len - pos);
    f->in_len -= pos;
    if (f->in_cap > (1u << 20) && f->in_len < 65536) { /* after a big reply: give it back */
        char *n = rc_realloc(f->in, 65536);
        if (n) {
            f->in = n;
            f->in_cap = 65536;
        }
    }
    if (f->whead == f->wn) {
        f->whead = f->wn = 0;
        if (f->draining_since_ms || f->exclusive)
            fwd_close(f, "");
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct forwarder *f = req->data;
    rc_free(req);
    if (status < 0) /* earlier commands on it may have reached the leader */
        fwd_close(f, "-ERR connection to the leader lost; the command may or may not have been "
                     "applied\r\n");
}

static int send_bytes(struct forwarder *f, const char *data, size_t len)
{
    if (!f->connected)
        return resp_buf_append(&f->pending, data, len);
    uv_write_t *req = rc_malloc(sizeof *req + len);
    if (!req)
        return RC_ENOMEM;
    memcpy(req + 1, data, len);
    req->data = f;
    uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)len);
    if (uv_write(req, (uv_stream_t *)&f->tcp, &b, 1, on_written) != 0) {
        rc_free(req);
        return RC_EIO;
    }
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct forwarder *f = req->data;
    if (f->closing)
        return;
    if (status < 0) { /* nothing was sent: the client may simply retry */
        fwd_close(f, "-CLUSTERDOWN cannot connect to the leader; the command was not sent, so it "
                     "was not applied\r\n");
        return;
    }
    f->connected = true;
    uv_tcp_nodelay(&f->tcp, 1);
    uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read);
    if (f->pending.len) {
        int rc = send_bytes(f, f->pending.data, f->pending.len);
        f->pending.len = 0;
        if (rc != 0)
            fwd_close(f, "-ERR connection to the leader lost; the command may or may not have "
                         "been applied\r\n");
    }
}

static void on_timer(uv_timer_t *t)
{
    struct forwarder *f = t->data;
    if (f->draining_since_ms && uv_now(f->s->loop) - f->draining_since_ms > DRAIN_GRACE_MS) {
        fwd_close(f, "-ERR the leader changed; the command may or may not have been "
                     "applied\r\n");
        return;
    }
    if (f->whead < f->wn && uv_now(f->s->loop) - f->w[f->whead].sent_ms > f->deadline_ms)
        fwd_close(f, "-ERR the leader did not answer in time; the command may or may not have "
                     "been applied\r\n");
}

static int push_waiter(struct forwarder *f, struct client *c)
{
    if (f->wn == f->wcap) {
        if (f->whead > 0) {
            memmove(f->w, f->w + f->whead, (f->wn - f->whead) * sizeof *f->w);
            f->wn -= f->whead;
            f->whead = 0;
        }
        if (rc_reserve((void **)&f->w, &f->wcap, f->wn + 1, sizeof *f->w) != 0)
            return RC_ENOMEM;
    }
    f->w[f->wn++] = (struct waiter){c, uv_now(f->s->loop), 0};
    return 0;
}

static struct forwarder *fwd_open(struct server *s, const char *addr, size_t slot)
{
    char host[256];
    int port;
    struct sockaddr_storage sa;
    if (rc_config_split_hostport(addr, host, &port) != 0)
        return NULL;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
    if (rc != 0)
        return NULL;
    struct forwarder *f = rc_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->s = s;
    f->deadline_ms = FORWARD_DEADLINE_MS;
    snprintf(f->addr, sizeof f->addr, "%s", addr);
    resp_buf_init(&f->pending);
    uv_tcp_init(s->loop, &f->tcp);
    f->tcp.data = f;
    uv_timer_init(s->loop, &f->timer);
    f->timer.data = f;
    uv_timer_start(&f->timer, on_timer, TIMER_MS, TIMER_MS);
    f->connect_req.data = f;
    if (uv_tcp_connect(&f->connect_req, &f->tcp, (struct sockaddr *)&sa, on_connect) != 0) {
        fwd_close(f, "");
        return NULL;
    }
    if (s->cfg->requirepass && s->cfg->requirepass[0]) {
        struct resp_buf b;
        resp_buf_init(&b);
        resp_add_array(&b, 2);
        resp_add_bulk_cstr(&b, "AUTH");
        resp_add_bulk_cstr(&b, s->cfg->requirepass);
        /* Its reply pairs with a NULL waiter; without either, every later reply on this
         * connection would go to the wrong client. */
        int sent = send_bytes(f, b.data, b.len);
        resp_buf_free(&b);
        if (sent == 0)
            sent = push_waiter(f, NULL);
        if (sent != 0) {
            fwd_close(f, "");
            return NULL;
        }
    }
    s->fwd[slot] = f;
    return f;
}

/* A connection to a former leader: no new commands; closed once answered (or late). */
static void fwd_drain(struct forwarder *f)
{
    if (f->closing || f->draining_since_ms)
        return;
    if (f->whead == f->wn) {
        fwd_close(f, "");
        return;
    }
    f->draining_since_ms = uv_now(f->s->loop);
}

void forward_leader_changed(struct server *s, const char *leader_addr)
{
    /* Commands waiting on a former leader that hangs would wait for FORWARD_DEADLINE_MS;
     * their clients can retry with the new leader now. */
    for (size_t i = 0; i < FORWARD_POOL; i++)
        if (s->fwd[i] && strcmp(s->fwd[i]->addr, leader_addr) != 0)
            fwd_drain(s->fwd[i]);
}

/* Sends the command on f; c waits for its reply (client_forwarded, or client_block for an
 * admin command's own connection). */
static int send_command(struct forwarder *f, struct client *c, size_t argc,
                        const struct resp_arg *argv)
{
    struct resp_buf b;
    resp_buf_init(&b);
    int rc = resp_add_array(&b, argc);
    for (size_t i = 0; i < argc && rc == 0; i++)
        rc = resp_add_bulk(&b, argv[i].ptr, argv[i].len);
    if (rc == 0 && b.len > UINT32_MAX)
        rc = RC_ETOOBIG; /* one libuv buffer: its length is 32 bits */
    if (rc == 0)
        rc = push_waiter(f, c);
    if (rc == 0) {
        rc = send_bytes(f, b.data, b.len);
        if (rc != 0)
            f->wn--;
    }
    if (rc == 0) {
        f->w[f->wn - 1].bytes = b.len;
        f->s->fwd_bytes_inflight += b.len;
    }
    resp_buf_free(&b);
    if (rc != 0)
        return rc;
    if (f->exclusive)
        client_block(c);
    else
        client_forwarded(c, f);
    return 0;
}

int forward_admin(struct server *s, struct client *c, size_t argc, const struct resp_arg *argv,
                  const char *leader_addr)
{
    if (s->shutting_down)
        return RC_ECLOSED;
    for (size_t k = 0; k < FORWARD_POOL; k++) {
        size_t i = FORWARD_POOL - 1 - k; /* the kept slot first */
        if (s->fwd[i])
            continue;
        struct forwarder *f = fwd_open(s, leader_addr, i);
        if (!f)
            return RC_EIO;
        f->exclusive = true;
        f->deadline_ms = ADMIN_DEADLINE_MS;
        int rc = send_command(f, c, argc, argv);
        if (rc != 0)
            fwd_close(f, "");
        return rc;
    }
    return RC_EIO; /* every slot busy */
}

int forward_command(struct server *s, struct client *c, size_t argc, const struct resp_arg *argv,
                    const char *leader_addr)
{
    /* Shutting down: the pool was closed (forward_free) and must stay closed, or a
     * client's next pipelined command, run when the pool answered it, would open a new
     * connection whose handles keep the loop alive. */
    if (s->shutting_down)
        return RC_ECLOSED;
    if (c->forwarded) { /* replies come back in order only on one connection */
        if (!forward_can_follow(c, leader_addr))
            return RC_EIO; /* not reached: may_run holds such a command back */
        return send_command(c->fwd_conn, c, argc, argv);
    }
    struct forwarder *f = NULL;
    size_t free_slot = FORWARD_POOL, best = (size_t)-1;
    for (size_t i = 0; i < FORWARD_POOL; i++) {
        struct forwarder *g = s->fwd[i];
        if (g && strcmp(g->addr, leader_addr) != 0)
            fwd_drain(g);
        if (g && (g->closing || g->draining_since_ms || g->exclusive))
            continue; /* draining or an admin command's: not for new commands */
        if (!g) {
            if (free_slot == FORWARD_POOL && i < FORWARD_POOL - 1) /* the last is forward_admin's */
                free_slot = i;
            continue;
        }
        size_t waiting = g->wn - g->whead;
        if (waiting < best) {
            best = waiting;
            f = g;
        }
    }
    if ((!f || best > 0) && free_slot < FORWARD_POOL) {
        struct forwarder *g = fwd_open(s, leader_addr, free_slot);
        if (g)
            f = g;
    }
    if (!f)
        return RC_EIO;
    return send_command(f, c, argc, argv);
}

bool forward_can_follow(const struct client *c, const char *leader_addr)
{
    if (!c->forwarded)
        return true;
    /* Alive while c has commands on it: fwd_close answers every one before it goes. */
    const struct forwarder *f = c->fwd_conn;
    return !f->closing && !f->draining_since_ms && strcmp(f->addr, leader_addr) == 0;
}

void forward_free(struct server *s)
{
    for (size_t i = 0; i < FORWARD_POOL; i++)
        if (s->fwd[i])
            fwd_close(s->fwd[i],
                      "-ERR shutting down; the command may or may not have been applied\r\n");
}

/*
 * client.c — client connections: accept, read, parse (pipelining), reply, close.
 *
 * NOTES
 * 1. The query buffer holds received bytes from the start of the first unparsed command.
 *    resp_parse resumes where it stopped, so a large bulk arriving in many reads is scanned
 *    once. Parsed argv point into the buffer; it is compacted only after dispatch.
 * 2. Back-pressure: while a client's unsent replies exceed OUTPUT_SOFT_LIMIT, its input is
 *    not parsed and its socket not read, so a client that sends without reading cannot
 *    grow the node's memory by more than one reply; a single reply that takes the total
 *    past --client-output-limit disconnects it.
 * 3. A client waiting for a write, a read round or a forwarded reply keeps its socket read
 *    while less than READ_AHEAD_BYTES of input waits unparsed: stopping and restarting the
 *    read costs two epoll_ctl calls per request (~7% of a leader's CPU under GET -c 50).
 * 4. Lifetime: a client is referenced by the loop (until uv_close completes) and by each of
 *    its writes in flight (the write path routes replies to it). It is freed at zero.
 */
#include "server.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <stdio.h>
#include <string.h>

#define QUERY_READ_CHUNK  (16 * 1024)
#define OUTPUT_SOFT_LIMIT (4u << 20)
/* Writes one client may have in flight: their replies are only known at apply time, so this
 * (with the output limit checked on delivery) bounds what a client can make us buffer. */
#define MAX_PENDING_WRITES 1024
/* Unparsed input a waiting client may send before its socket stops being read (note 3). */
#define READ_AHEAD_BYTES (64u << 10)
/* Linearizable reads one client may have waiting for their rounds on a leader. */
#define READS_CLIENT_MAX_INFLIGHT 64

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void process_input(struct client *c);
static void tls_receive(struct client *c, const unsigned char *data, size_t n);

/* ============================== lifetime ============================== */

static void client_free(struct client *c)
{
    tls_session_free(c->tls);
    rc_free(c->tls_out);
    rc_free(c->query);
    resp_argv_free(&c->argv);
    resp_buf_free(&c->out);
    resp_buf_free(&c->sending);
    rc_free(c);
}

void client_release(struct client *c)
{
    if (--c->refs == 0)
        client_free(c);
}

static void on_closed(uv_handle_t *h)
{
    client_release(h->data);
}

void client_close(struct client *c)
{
    if (c->closed)
        return;
    c->closed = true;
    c->closing = true;
    struct server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nclients--;
    if (c->in_flush_list) { /* unlink from the flush list */
        struct client **pp = &s->flush_list;
        while (*pp && *pp != c)
            pp = &(*pp)->next_flush;
        if (*pp)
            *pp = c->next_flush;
        c->in_flush_list = false;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void client_close_after_reply(struct client *c)
{
    c->closing = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    client_mark_output(c);
}

/* ============================== accepting ============================== */

static void accept_client(uv_stream_t *listener, int status, bool tls)
{
    struct server *s = listener->data;
    if (status < 0) {
        rc_warn("accept: %s", uv_strerror(status));
        return;
    }
    struct client *c = rc_calloc(1, sizeof *c);
    if (!c) {
        rc_warn("accept: out of memory");
        return;
    }
    c->srv = s;
    c->refs = 1;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
        (tls && tls_session_new(s->client_tls, 0, &c->tls) != 0)) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    s->stats.connections_received++;
    c->id = ++s->next_client_id;
    c->created_ms = c->last_cmd_ms = (uint64_t)server_now_ms();
    c->authenticated = s->cfg->requirepass[0] == '\0';
    snprintf(c->last_cmd, sizeof c->last_cmd, "NULL");
    resp_parser_init(&c->parser);
    resp_argv_init(&c->argv);
    resp_buf_init(&c->out);
    resp_buf_init(&c->sending);
    /* One command's reply cannot outgrow the limit either (an MGET naming a 1 MB key 6000
     * times built 6 GB before the limit was checked): appends past it fail, and the client
     * is dropped before anything more is sent. */
    c->out.limit = c->sending.limit = (size_t)s->cfg->client_output_limit;
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    char host[48] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        }
    }
    snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
    uv_tcp_nodelay(&c->tcp, 1);

    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    s->nclients++;
    if (s->nclients > s->cfg->maxclients) {
        s->stats.connections_rejected++;
        if (c->tls) { /* no reply can be sent before a handshake */
            client_close(c);
            return;
        }
        resp_add_error(&c->out, "ERR max number of clients reached", 33);
        client_close_after_reply(c);
        return;
    }
    c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
}

void client_on_connection(uv_stream_t *listener, int status)
{
    accept_client(listener, status, false);
}

void client_on_tls_connection(uv_stream_t *listener, int status)
{
    accept_client(listener, status, true);
}

void client_close_stalled_handshakes(struct server *s)
{
    uint64_t now = (uint64_t)server_now_ms();
    struct client *next;
    for (struct client *c = s->clients; c; c = next) {
        next = c->next;
        if (c->tls && !c->tls_done && now - c->created_ms >= CLIENT_TLS_HANDSHAKE_MS) {
            rc_info("client %llu (%s): no TLS handshake within %d ms; closed",
                    (unsigned long long)c->id, c->addr, CLIENT_TLS_HANDSHAKE_MS);
            client_close(c);
        }
    }
}

/* ============================== reading ============================== */

/* Room for at least QUERY_READ_CHUNK more bytes in the query buffer; false without memory. */
static bool query_room(struct client *c)
{
    if (c->query_cap - c->query_len < QUERY_READ_CHUNK) {
        size_t cap = c->query_cap ? c->query_cap * 2 : QUERY_READ_CHUNK;
        while (cap - c->query_len < QUERY_READ_CHUNK)
            cap *= 2;
        char *q = rc_realloc(c->query, cap);
        if (!q)
            return false;
        c->query = q;
        c->query_cap = cap;
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct client *c = h->data;
    (void)suggested;
    if (c->tls) { /* ciphertext: decrypted into the query buffer by tls_receive */
        *buf = uv_buf_init((char *)c->srv->tls_readbuf, CLIENT_TLS_READ_BYTES);
        return;
    }
    if (!query_room(c)) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS to on_read */
        return;
    }
    buf->base = c->query + c->query_len;
    buf->len = c->query_cap - c->query_len;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = stream->data;
    if (nread < 0) {
        if (nread != UV_EOF && nread != UV_ECONNRESET)
            rc_debug("client %llu: read: %s", (unsigned long long)c->id, uv_strerror((int)nread));
        client_close(c);
        return;
    }
    c->srv->stats.net_input_bytes += (uint64_t)nread;
    if (c->tls) {
        tls_receive(c, (const unsigned char *)buf->base, (size_t)nread);
        return;
    }
    c->query_len += (size_t)nread;
    process_input(c);
}

/* ============================== TLS (--tls-port) ============================== */

static void on_control_written(void *ctx, int status)
{
    struct client *c = ctx;
    if (status < 0 && !c->closed)
        client_close(c);
    client_release(c);
}

/* Writes what the session produced outside a reply (handshake records, alerts), in order with
 * the replies' writes; the request holds a reference. false after closing c. */
static bool tls_send_control(struct client *c)
{
    c->refs++;
    int rc =
        tls_session_send_output(c->tls, (uv_stream_t *)&c->tcp, uv_write, on_control_written, c);
    if (rc <= 0)
        c->refs--; /* no request: the caller still holds c */
    if (rc < 0)
        client_close(c);
    return rc >= 0;
}

static void tls_receive(struct client *c, const unsigned char *data, size_t n)
{
    char why[400];
    if (tls_session_feed(c->tls, data, n) != 0) {
        client_close(c);
        return;
    }
    if (!c->tls_done) {
        int rc = tls_session_handshake(c->tls, why, sizeof why);
        if (rc < 0) {
            tls_send_control(c); /* the alert, if any */
            rc_info("client %llu (%s): %s", (unsigned long long)c->id, c->addr, why);
            if (!c->closed)
                client_close(c);
            return;
        }
        if (!tls_send_control(c) || rc == 0)
            return;
        c->tls_done = true;
    }
    size_t got = 0;
    int rc = 0;
    do {
        if (!query_room(c)) {
            client_close(c);
            return;
        }
        rc = tls_session_read(c->tls, c->query + c->query_len, c->query_cap - c->query_len, &got,
                              why, sizeof why);
        if (rc == RC_EPROTO) {
            rc_debug("client %llu (%s): %s", (unsigned long long)c->id, c->addr, why);
            client_close(c);
            return;
        }
        c->query_len += got;
    } while (got > 0 && rc == 0);
    if (!tls_send_control(c))
        return;
    process_input(c);
    /* close_notify after commands in the same read: they run, then the connection closes
     * (as a plaintext client's FIN after its commands). */
    if (rc == RC_ECLOSED && !c->closed)
        client_close_after_reply(c);
}

/* Drops consumed bytes from the front of the query buffer; shrinks it after a big command. */
static void compact_query(struct client *c, size_t consumed)
{
    if (consumed == 0)
        return;
    memmove(c->query, c->query + consumed, c->query_len - consumed);
    c->query_len -= consumed;
    if (c->query_cap > (1u << 20) && c->query_len < QUERY_READ_CHUNK) {
        char *q = rc_realloc(c->query, QUERY_READ_CHUNK * 2);
        if (q) {
            c->query = q;
            c->query_cap = QUERY_READ_CHUNK * 2;
        }
    }
}

/* True when the next command may run now (see server.h on ordering). */
static bool may_run(struct client *c, const struct resp_argv *argv)
{
    if (c->blocked)
        return false;
    /* Behind forwarded commands only more of them go on, on the same connection: their
     * replies come back in order there, while any other reply would overtake them. And not
     * too many: replies already asked for arrive whether or not the client reads them, and
     * the node holds every command in flight (FORWARD_* bounds). */
    if (c->forwarded)
        return c->forwarded < FORWARD_CLIENT_MAX_INFLIGHT &&
               c->out.len + c->sending.len <= OUTPUT_SOFT_LIMIT &&
               c->srv->fwd_bytes_inflight < FORWARD_MAX_INFLIGHT_BYTES &&
               command_would_forward(c, argv->count, argv->args);
    if (c->deferred_reads) {
        /* Bounded like forwarded commands: their replies come whether or not it reads. */
        if (c->deferred_reads >= READS_CLIENT_MAX_INFLIGHT ||
            c->out.len + c->sending.len > OUTPUT_SOFT_LIMIT)
            return false;
        const struct command *next =
            argv->count ? command_lookup(argv->args[0].ptr, argv->args[0].len) : NULL;
        return next && cluster_read_defers(c, next, argv->count);
    }
    /* A command takes no more bytes in an entry than its RESP form plus the slack, and its
     * RESP form is in the unparsed input: if all of that fits, it fits (no lookup needed). */
    if (c->pending_writes == 0 &&
        writepath_has_room(c->srv, c->query_len + WRITEPATH_COMMAND_SLACK_BYTES))
        return true;
    const struct command *cmd =
        argv->count ? command_lookup(argv->args[0].ptr, argv->args[0].len) : NULL;
    bool write = cmd && (cmd->flags & CMD_WRITE);
    /* Behind writes in flight only more writes go on, and only on the leader: a follower
     * would route this one away, and its reply would overtake theirs. */
    if (c->pending_writes && (!write || (c->srv->raft && !c->srv->is_leader)))
        return false;
    if (write) {
        size_t bytes = writepath_command_bytes(argv->count, argv->args);
        if (!writepath_too_large(c->srv, bytes) && !writepath_has_room(c->srv, bytes)) {
            /* Else its own writes' replies resume it. Out of memory, it goes in now: the
             * entry grows past the room a little, far from the hard bound. */
            if (c->pending_writes == 0 && !writepath_wait_room(c->srv, c))
                return true;
            return false;
        }
    }
    return true;
}

/* Whether the socket should be read: notes 2 and 3. */
static bool wants_input(const struct client *c)
{
    return (c->pending_writes == 0 || c->query_len < READ_AHEAD_BYTES) &&
           c->out.len + c->sending.len <= OUTPUT_SOFT_LIMIT;
}

static void set_reading(struct client *c, bool on)
{
    if (c->closing || c->reading == on)
        return;
    if (on)
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void process_input(struct client *c)
{
    struct server *s = c->srv;
    if (c->in_process_input)
        return;
    c->in_process_input = true;
    size_t pos = 0;
    struct resp_limits limits = s->limits;
    while (!c->closing && !c->out.over && pos < c->query_len) {
        if (c->out.len + c->sending.len > OUTPUT_SOFT_LIMIT)
            break; /* back-pressure: resumed when the replies drain */
        if (c->pending_writes && (writepath_full(s) || c->pending_writes >= MAX_PENDING_WRITES))
            break; /* resumed when the entry is applied */
        limits.unauthenticated = !c->authenticated;
        size_t consumed = 0;
        int rc = resp_parse(&c->parser, &limits, c->query + pos, c->query_len - pos, &c->argv,
                            &consumed);
        if (rc == RC_EAGAIN)
            break;
        /* Wait for what is in flight (writes; a forwarded command or a read waiting for its
         * round, which are in no batch, before a protocol error): the input is parsed again
         * on resume, from a fresh parser and an empty argv (argv carries parser state too). */
        bool wait = rc == RC_EPROTO ? c->blocked || c->deferred_reads || c->forwarded
                                    : rc == 0 && c->argv.count > 0 && !may_run(c, &c->argv);
        if (wait) {
            resp_parser_init(&c->parser);
            c->argv.count = 0;
            break;
        }
        if (rc == RC_EPROTO) {
            const char *msg = resp_parser_error(&c->parser);
            s->stats.protocol_errors++;
            rc_debug("client %llu (%s): %s", (unsigned long long)c->id, c->addr, msg);
            char text[128];
            snprintf(text, sizeof text, "ERR %s", msg);
            submit_error(c, text); /* after the replies of writes in flight */
            client_close_after_reply(c);
            break;
        }
        if (rc != 0) { /* RC_ENOMEM: try again on the next read */
            rc_warn("client %llu: out of memory parsing a command", (unsigned long long)c->id);
            break;
        }
        pos += consumed;
        if (c->argv.count > 0) {
            s->stats.commands_processed++;
            c->last_cmd_ms = (uint64_t)server_now_ms();
            command_dispatch(c, c->argv.count, c->argv.args);
        }
    }
    compact_query(c, pos);
    set_reading(c, wants_input(c));
    if (c->out.len || c->out.over)
        client_mark_output(c);
    c->in_process_input = false;
}

void client_block(struct client *c)
{
    c->blocked = true;
    c->pending_writes++;
    c->refs++;
}

/* The reply to a command c waited for: delivered in order, and c goes on. */
static void deliver_awaited(struct client *c, const char *reply, size_t len)
{
    c->pending_writes--;
    if (!c->closed) {
        resp_buf_append(&c->out, reply, len);
        client_mark_output(c);
        client_resume(c);
    }
    client_release(c);
}

void client_unblock(struct client *c, const char *reply, size_t len)
{
    c->blocked = false;
    deliver_awaited(c, reply, len);
}

void client_forwarded(struct client *c, struct forwarder *f)
{
    c->forwarded++;
    c->fwd_conn = f;
    c->pending_writes++;
    c->refs++;
}

void client_forwarded_reply(struct client *c, const char *reply, size_t len)
{
    if (--c->forwarded == 0)
        c->fwd_conn = NULL;
    /* Below the in-flight cap again: more of its pipeline may go (may_run decides). */
    bool more = c->forwarded > 0 && c->pending_writes == c->forwarded + 1 && c->query_len > 0;
    c->refs++; /* deliver_awaited may drop the last reference */
    deliver_awaited(c, reply, len);
    if (more && !c->closed)
        process_input(c);
    client_release(c);
}

void client_unblock_quietly(struct client *c)
{
    c->blocked = false;
    c->pending_writes--;
    client_release(c);
}

void client_resume(struct client *c)
{
    if (!c->closed && c->pending_writes == 0)
        process_input(c);
}

/* ============================== writing ============================== */

void client_mark_output(struct client *c)
{
    if (c->in_flush_list || c->closed)
        return;
    c->in_flush_list = true;
    c->next_flush = c->srv->flush_list;
    c->srv->flush_list = c;
}

static void start_write(struct client *c);
static void on_written(uv_write_t *req, int status);

/* A TLS client's replies: encrypted, then written as one request. */
static void start_tls_write(struct client *c)
{
    if (!c->tls_done)
        return; /* nothing is sent before the handshake: the replies wait */
    size_t len = 0;
    if (tls_session_write(c->tls, c->out.data, c->out.len) != 0 ||
        tls_session_take_output(c->tls, &c->tls_out, &len) != 0 || len == 0) {
        client_close(c);
        return;
    }
    c->srv->stats.net_output_bytes += c->out.len;
    c->out.len = 0;
    uv_buf_t b = uv_buf_init((char *)c->tls_out, (unsigned)len);
    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        rc_free(c->tls_out);
        c->tls_out = NULL;
        client_close(c);
        return;
    }
    c->writing = true;
    c->refs++;
}

/* Every reply is out: close if that was the last one, else take input again. */
static void output_drained(struct client *c)
{
    if (c->closing && c->pending_writes == 0)
        client_close(c);
    else if (c->query_len && c->pending_writes == 0)
        process_input(c); /* input held back by back-pressure */
    else
        set_reading(c, wants_input(c));
}

static void on_written(uv_write_t *req, int status)
{
    struct client *c = req->data;
    c->writing = false;
    c->sending.len = 0;
    rc_free(c->tls_out);
    c->tls_out = NULL;
    if (c->sending.cap > (1u << 20)) /* give back a large buffer */
        resp_buf_free(&c->sending);
    if (status < 0 || c->closed) {
        if (!c->closed)
            client_close(c);
        client_release(c);
        return;
    }
    if (c->out.len || c->out.over)
        start_write(c);
    else
        output_drained(c);
    client_release(c);
}

static void start_write(struct client *c)
{
    if (c->writing || c->closed)
        return;
    /* Before the empty case: a reply refused whole leaves nothing in out but over set. */
    if (c->out.over || c->out.len + c->sending.len > c->srv->cfg->client_output_limit) {
        rc_warn("client %llu (%s) exceeded the output limit; disconnecting",
                (unsigned long long)c->id, c->addr);
        client_close(c);
        return;
    }
    if (c->out.len == 0) {
        if (c->closing && c->pending_writes == 0)
            client_close(c); /* its last reply is out: close now */
        return;
    }
    if (c->tls) {
        start_tls_write(c);
        return;
    }
    /* Most replies fit the socket buffer: written at once, with no request to complete and
     * no change of the poll set (uv_write's completion costs an epoll_ctl). */
    uv_buf_t now = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
    if (n > 0) {
        c->srv->stats.net_output_bytes += (uint64_t)n;
        if ((size_t)n == c->out.len) {
            c->out.len = 0;
            output_drained(c);
            return;
        }
        memmove(c->out.data, c->out.data + n, c->out.len - (size_t)n);
        c->out.len -= (size_t)n;
    } else if (n != UV_EAGAIN) {
        client_close(c);
        return;
    }
    /* Swap: the accumulated replies go out, new ones gather in the other buffer. */
    struct resp_buf t = c->sending;
    c->sending = c->out;
    c->out = t;
    c->out.len = 0;
    uv_buf_t b = uv_buf_init(c->sending.data, (unsigned)c->sending.len);
    c->write_req.data = c;
    c->srv->stats.net_output_bytes += c->sending.len;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc != 0) {
        client_close(c);
        return;
    }
    c->writing = true;
    c->refs++;
}

void client_flush_all(struct server *s)
{
    while (s->flush_list) {
        struct client *c = s->flush_list;
        s->flush_list = c->next_flush;
        c->in_flush_list = false;
        start_write(c);
    }
}

void client_list_line(struct client *c, struct resp_buf *b)
{
    uint64_t now = (uint64_t)server_now_ms();
    char line[512];
    int n =
        snprintf(line, sizeof line,
                 "id=%llu addr=%s laddr=? fd=%d name=%s age=%llu idle=%llu flags=N db=0 "
                 "sub=0 psub=0 ssub=0 multi=-1 qbuf=%zu qbuf-free=%zu argv-mem=0 "
                 "multi-mem=0 obl=0 oll=0 omem=%zu tot-mem=%zu events=r cmd=%s user=default "
                 "redir=-1 resp=2 lib-name=%s lib-ver=%s\n",
                 (unsigned long long)c->id, c->addr, (int)c->tcp.io_watcher.fd, c->name,
                 (unsigned long long)((now - c->created_ms) / 1000),
                 (unsigned long long)((now - c->last_cmd_ms) / 1000), c->query_len,
                 c->query_cap - c->query_len, c->out.len + c->sending.len,
                 c->query_cap + c->out.cap + c->sending.cap, c->last_cmd, c->lib_name, c->lib_ver);
    resp_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/*
 * transport.h — Raft messages between nodes over libuv TCP (internal module, prefix
 * transport_).
 *
 * One transport per node, on the node's loop. It listens on the peer-bind address, dials
 * each known peer lazily (on the first message for it) and re-dials after failures with
 * exponential backoff. A connection carries messages one way: the dialing node sends, the
 * accepting node receives, so node A's messages to B travel on A's connection to B and B's
 * replies on B's connection to A. Raft tolerates loss, so the transport never blocks and
 * never buffers without bound: when a peer's send queue is full a message is dropped and
 * counted.
 *
 * Wire format (all integers little-endian), one frame per message:
 *
 *   +--------+----+------+----------+---------+---------+----------------+
 *   | magic  |ver | kind | reserved | len     | crc     | payload        |
 *   | u32    |u8  | u8   | u16 (=0) | u32     | u32     | len bytes      |
 *   +--------+----+------+----------+---------+---------+----------------+
 *
 *   magic = TRANSPORT_MAGIC, ver = TRANSPORT_VERSION, crc = CRC-32C of the payload.
 *   kind 1 HELLO   payload: u64 cluster_id, u64 node_id, u16 addr_len, addr bytes
 *                  (the sender's advertised peer address).
 *   kind 2 MESSAGE payload: one raft_message in the codec encoding (raft.h).
 *
 * Handshake: the dialer sends HELLO first; the acceptor checks the cluster id (and that the
 * node id is neither 0 nor its own) and answers with its own HELLO, or closes the connection
 * (logged, counted in handshake_refusals). The dialer checks the answer the same way and
 * that the node id is the peer it dialed; only then does it send MESSAGE frames. After the
 * handshake only the dialer sends: a MESSAGE from the acceptor is a protocol error.
 *
 * The receiver checks magic, version, kind, reserved and len <= max_frame_bytes before it
 * allocates anything for the payload; any failed check, a bad CRC, a HELLO from another
 * cluster, a frame before HELLO, a second HELLO, or a message whose from differs from the HELLO's
 * node id closes that connection with a logged reason (counted in stats).
 *
 * Peer addresses are numeric "ipv4:port" or "[ipv6]:port" (no DNS lookups).
 */
#ifndef RC_RAFT_TRANSPORT_H
#define RC_RAFT_TRANSPORT_H

#include "raft/raft.h"
#include "raft/tls.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define TRANSPORT_MAGIC        0x54435243u /* "RCRT" read as little-endian bytes */
#define TRANSPORT_VERSION      1
#define TRANSPORT_HEADER_BYTES 16

enum transport_frame_kind {
    TRANSPORT_FRAME_HELLO = 1,
    TRANSPORT_FRAME_MESSAGE = 2,
};

/*
 * The byte-stream layer under the framing, so that TLS can be slotted in later without
 * touching frames: the plain TCP layer (transport_stream_tcp) passes these straight to libuv.
 * A TLS layer would decrypt in read_start's callback path and encrypt in write.
 */
struct transport_stream_ops {
    int (*read_start)(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
    int (*write)(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                 uv_write_cb cb);
    void (*close)(uv_handle_t *h, uv_close_cb cb);
    /* Optional (may be NULL): writes what the socket takes now, like uv_try_write: the byte
     * count, UV_EAGAIN for none, or another error. write then gets only the rest. */
    int (*try_write)(uv_stream_t *s, const uv_buf_t bufs[], unsigned nbufs);
};
extern const struct transport_stream_ops transport_stream_tcp;

struct transport_options {
    uint64_t cluster_id;
    uint64_t node_id;        /* non-zero */
    const char *bind;        /* "host:port" to listen on (port 0: any); outgoing
                                connections use host as their source address */
    const char *advertise;   /* sent in HELLO; NULL: bind */
    size_t max_frame_bytes;  /* largest frame accepted or sent, header included (a HELLO is
                                much smaller, and a connection's first frame must be one) */
    size_t send_queue_bytes; /* per peer: frames queued or being written; a larger frame is
                                still queued when nothing else is */
    uint64_t backoff_min_ms; /* first re-dial delay after a failure */
    uint64_t backoff_max_ms; /* cap of the doubling delay */
    const struct transport_stream_ops *stream; /* NULL: transport_stream_tcp */
    int learn_peers; /* 1: an incoming HELLO from an unknown node adds it as a peer at the
                        address it advertises (so a joining node can be answered), while
                        there are fewer than 2 * RAFT_MAX_NODES peers */
    uint64_t handshake_timeout_ms; /* an accepted connection without a HELLO by then is
                                      closed (at most 64 may wait for theirs: a new one
                                      closes the oldest) */
    struct tls_context *tls;       /* NULL: plaintext; else mutual TLS (tls.h) under the frames,
                                      on top of stream; must outlive the transport */
};

/* Defaults: frames up to RAFT_ENTRY_MAX_BYTES + 1 MiB (an append with the largest entry),
 * 8 MiB queue, backoff 50 ms to 500 ms, 5 s for a HELLO. node_id, bind: caller's. */
void transport_options_default(struct transport_options *opts);

struct transport_stats {
    uint64_t msgs_sent;          /* written to the socket (the kernel accepted them) */
    uint64_t msgs_received;      /* delivered to on_message */
    uint64_t msgs_dropped;       /* queue full, too big, unknown peer, or lost with a
                                    connection that failed while they were queued/in flight */
    uint64_t reconnects;         /* dials after a failure (the first dial is not counted) */
    uint64_t handshake_refusals; /* HELLOs refused (other cluster, unexpected node id), and
                                    accepted connections closed without one (too late, or
                                    too many waiting) */
    uint64_t frames_rejected;    /* bad magic/version/kind/length/CRC or undecodable */
    uint64_t connections_accepted;
    uint64_t heartbeats_superseded; /* overwritten by a newer one while queued (transport.c,
                                       note 6); counted in neither sent nor dropped */
};

/*
 * Called for each message received. from is the node id the sending connection proved in
 * its HELLO (equal to msg->from). msg and everything it points to (entry and snapshot data)
 * are owned by the transport and valid only during the call; copy what you keep. The
 * callback may call transport_send, transport_set_peer/remove_peer and transport_close.
 */
typedef void (*transport_message_cb)(void *ctx, uint64_t from, const struct raft_message *msg);

struct transport;

/*
 * Starts listening. opts is copied (strings included). *out owns the transport until
 * transport_close's callback has run. RC_EINVAL for a bad address or node id 0, RC_EIO if
 * the listener cannot bind (detail logged), RC_ENOMEM. After RC_EIO or RC_ENOMEM the loop
 * must run once more to release the listener handle (and the memory that goes with it).
 * With no advertise and a bind port of 0, the HELLO advertises the port actually bound.
 */
int transport_open(uv_loop_t *loop, const struct transport_options *opts,
                   transport_message_cb on_message, void *ctx, struct transport **out);

/* The port the listener is bound to (useful after binding port 0). */
int transport_port(const struct transport *t);

/*
 * Adds peer node_id at "host:port" (copied), or changes its address: a changed address
 * closes the current connection; queued messages then go to the new address.
 * RC_EINVAL for a bad address or id (0 or our own).
 */
int transport_set_peer(struct transport *t, uint64_t node_id, const char *addr);
/* Forgets a peer, closing its connection and dropping its queue. RC_ENOTFOUND if unknown. */
int transport_remove_peer(struct transport *t, uint64_t node_id);

/*
 * Encodes m (only read; the caller keeps ownership) into a frame and queues it for to.
 * Never blocks. Returns 0 if queued; otherwise the message is dropped (and counted):
 * RC_ENOTFOUND unknown peer, RC_ETOOBIG larger than max_frame_bytes, RC_EAGAIN queue
 * full (a frame larger than send_queue_bytes waits for an empty queue), RC_ENOMEM,
 * RC_ECLOSED after transport_close.
 *
 * Delivery: messages sent while the peer is down wait in the queue (up to its bound) and
 * go out after the reconnect; those being written when a connection fails are lost.
 */
int transport_send(struct transport *t, uint64_t to, const struct raft_message *m);

/*
 * Between transport_cork and transport_uncork, transport_send only queues; uncork then
 * writes each peer's queue, up to 64 frames per system call. A caller that sends several
 * messages at once (one ready's) saves a write per message. Pairs may nest: the outermost
 * uncork writes.
 */
void transport_cork(struct transport *t);
void transport_uncork(struct transport *t);

void transport_stats(const struct transport *t, struct transport_stats *st);
/* Bytes queued or in flight for node_id (0 if unknown); lets tests check the bound. */
/* 1 if the connection to node_id has completed its handshake. */
int transport_peer_connected(const struct transport *t, uint64_t node_id);
size_t transport_queued_bytes(const struct transport *t, uint64_t node_id);

/*
 * Closes the listener and every connection and timer. on_closed (may be NULL) runs on the
 * loop once every handle is closed; the transport is freed right after it returns. No
 * callback of the transport runs after transport_close returns except on_closed.
 */
void transport_close(struct transport *t, void (*on_closed)(void *ctx), void *ctx);

#endif

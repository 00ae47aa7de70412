/*
 * tls.h — mutual TLS for the peer transport (internal module, prefix tls_).
 *
 * OpenSSL with memory BIOs: a session never reads a socket. The transport feeds it the
 * bytes it read (ciphertext), reads plaintext back, writes plaintext into it and takes the
 * ciphertext to send (or has tls_session_send_output write it). Both sides present a certificate
 * and check the other's against the one CA file (--tls-ca): a node without a certificate from that
 * CA cannot complete the handshake, so it can neither send nor receive a frame. Addresses are not
 * checked against the certificate's names (nodes dial numeric addresses); the CA is the trust
 * boundary. TLS 1.2 at least; session tickets are off (peers keep long-lived connections).
 */
#ifndef RC_RAFT_TLS_H
#define RC_RAFT_TLS_H

#include <stddef.h>
#include <uv.h>

struct tls_context; /* certificate, key and CA: shared by every session of a node */
struct tls_session; /* one connection */

/*
 * Loads the certificate chain, its private key and the CA file (PEM). Returns 0, or
 * RC_EINVAL with the reason logged (file missing or unreadable, key not matching the
 * certificate), or RC_ENOMEM. Free with tls_context_free.
 */
int tls_context_new(const char *cert_file, const char *key_file, const char *ca_file,
                    struct tls_context **out);
/*
 * A server-side context for clients (--tls-port): this node's certificate and key; with
 * client_ca_file, a client must present a certificate from that CA, else none is asked for
 * (clients then authenticate with AUTH). Never the peers' CA: a certificate good for a
 * client would be good for a Raft node. Same returns as tls_context_new.
 */
int tls_context_new_for_clients(const char *cert_file, const char *key_file,
                                const char *client_ca_file, struct tls_context **out);
/*
 * 1 if a certificate of the client context's CA file is trusted by the nodes' context (the
 * same CA, a copy, or a CA it issued: a client's certificate would then be good for a node),
 * with that certificate's subject in subject; 0 if none is; RC_ENOMEM.
 */
int tls_client_ca_trusted_by(const struct tls_context *clients, const struct tls_context *nodes,
                             char *subject, size_t subject_len);
void tls_context_free(struct tls_context *ctx);

/* A session for a connection we dialed (client = 1) or accepted (client = 0); RC_ENOMEM. The
 * context must outlive it. */
int tls_session_new(struct tls_context *ctx, int client, struct tls_session **out);
void tls_session_free(struct tls_session *s);

/* Bytes read from the socket; 0 or RC_ENOMEM. */
int tls_session_feed(struct tls_session *s, const void *data, size_t len);

/*
 * Advances the handshake with what was fed: 1 once complete, 0 while it needs more input,
 * RC_EPROTO when it failed (the reason, such as a certificate that did not verify, is
 * written to why). Take the output after each call: it may hold handshake records to send.
 */
int tls_session_handshake(struct tls_session *s, char *why, size_t why_len);

/* Decrypts into buf: *got bytes (0 when it needs more input). 0, RC_ECLOSED (the other side
 * closed the session: what was read before stands), or RC_EPROTO (a bad record; reason in
 * why). */
int tls_session_read(struct tls_session *s, void *buf, size_t cap, size_t *got, char *why,
                     size_t why_len);

/* Encrypts len bytes of plaintext (handshake complete); 0, RC_EPROTO or RC_ENOMEM. */
int tls_session_write(struct tls_session *s, const void *data, size_t len);

/* Ciphertext waiting to be sent: *out (rc_malloc'ed, the caller frees it with rc_free) of
 * *len bytes, or *out = NULL and *len = 0 when there is none. 0 or RC_ENOMEM. */
int tls_session_take_output(struct tls_session *s, unsigned char **out, size_t *len);

/*
 * Writes the ciphertext waiting in the session (handshake records, alerts) to stream as one
 * request that owns its bytes, with write (uv_write, or a stream layer's equivalent); done(ctx,
 * status) runs when it completes. libuv writes a stream's requests in order, so this output
 * keeps its place among the caller's own writes. 1 when a request was issued, 0 when there
 * was nothing to send, RC_ENOMEM or RC_EIO (nothing issued, done will not run).
 */
typedef int (*tls_write_fn)(uv_write_t *req, uv_stream_t *stream, const uv_buf_t bufs[],
                            unsigned nbufs, uv_write_cb cb);
int tls_session_send_output(struct tls_session *s, uv_stream_t *stream, tls_write_fn write,
                            void (*done)(void *ctx, int status), void *ctx);

#endif

/*
 * tls.c — mutual TLS sessions over memory BIOs (see tls.h).
 *
 * Each session owns an SSL object whose read BIO holds the ciphertext fed to it and whose
 * write BIO collects the ciphertext it produces (handshake records, encrypted data, alerts).
 * OpenSSL's error queue is per thread; every call here runs on the node's loop thread and
 * clears the queue before it returns, so one session's errors never show up in another's.
 */
#include "raft/tls.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <limits.h>
#include <stdbool.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <string.h>

#define TLS_KEEP_OUT_BYTES (256u << 10)

struct tls_context {
    SSL_CTX *ssl_ctx;
};

struct tls_session {
    SSL *ssl;
    BIO *in;  /* ciphertext fed by the transport, read by OpenSSL */
    BIO *out; /* ciphertext written by OpenSSL, taken by the transport */
};

/* The oldest queued OpenSSL error as text into why (and the queue cleared). */
static void take_error(const char *what, char *why, size_t why_len)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    if (why && why_len)
        snprintf(why, why_len, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

/* ============================== context ============================== */

static int context_new(const char *cert_file, const char *key_file, const char *ca_file,
                       bool for_clients, struct tls_context **out)
{
    *out = NULL;
    struct tls_context *ctx = rc_calloc(1, sizeof *ctx);
    if (!ctx)
        return RC_ENOMEM;
    ctx->ssl_ctx = SSL_CTX_new(TLS_method());
    if (!ctx->ssl_ctx) {
        ERR_clear_error();
        rc_free(ctx);
        return RC_ENOMEM;
    }
    SSL_CTX *c = ctx->ssl_ctx;
    char why[400];
    const char *step = NULL;
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
        step = "setting TLS 1.2 as the minimum";
    else if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1)
        step = "loading the certificate (--tls-cert)";
    else if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1)
        step = "loading the private key (--tls-key)";
    else if (SSL_CTX_check_private_key(c) != 1)
        step = "the private key does not match the certificate";
    else if (ca_file && SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1)
        step =
            for_clients ? "loading the client CA (--tls-client-ca)" : "loading the CA (--tls-ca)";
    if (step) {
        take_error(step, why, sizeof why);
        rc_error("TLS: %s", why);
        tls_context_free(ctx);
        return RC_EINVAL;
    }
    /* With a CA, the other side must present a certificate from it. */
    SSL_CTX_set_verify(
        c, ca_file ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(c, 0);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    *out = ctx;
    return 0;
}

int tls_context_new(const char *cert_file, const char *key_file, const char *ca_file,
                    struct tls_context **out)
{
    return context_new(cert_file, key_file, ca_file, false, out);
}

int tls_context_new_for_clients(const char *cert_file, const char *key_file,
                                const char *client_ca_file, struct tls_context **out)
{
    return context_new(cert_file, key_file, client_ca_file, true, out);
}

int tls_client_ca_trusted_by(const struct tls_context *clients, const struct tls_context *nodes,
                             char *subject, size_t subject_len)
{
    X509_STORE *node_store = SSL_CTX_get_cert_store(nodes->ssl_ctx);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(clients->ssl_ctx));
    int found = 0;
    for (int i = 0; i < sk_X509_OBJECT_num(objs) && !found; i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (!x)
            continue; /* a CRL */
        X509_STORE_CTX *sc = X509_STORE_CTX_new();
        if (!sc) {
            found = RC_ENOMEM;
            break;
        }
        /* The same CA, a copy of it, or one that it issued: then a client's certificate
         * chains up to the nodes' CA. */
        if (X509_STORE_CTX_init(sc, node_store, x, NULL) == 1 && X509_verify_cert(sc) == 1) {
            found = 1;
            if (subject && subject_len)
                X509_NAME_oneline(X509_get_subject_name(x), subject, (int)subject_len);
        }
        X509_STORE_CTX_free(sc);
    }
    ERR_clear_error();
    return found;
}

void tls_context_free(struct tls_context *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    rc_free(ctx);
}

/* ============================== sessions ============================== */

int tls_session_new(struct tls_context *ctx, int client, struct tls_session **out)
{
    *out = NULL;
    struct tls_session *s = rc_calloc(1, sizeof *s);
    if (!s)
        return RC_ENOMEM;
    s->ssl = SSL_new(ctx->ssl_ctx);
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->in || !s->out) {
        ERR_clear_error();
        BIO_free(s->in);
        BIO_free(s->out);
        SSL_free(s->ssl);
        rc_free(s);
        return RC_ENOMEM;
    }
    /* A read BIO that is empty asks for more rather than reporting end of file. */
    BIO_set_mem_eof_return(s->in, -1);
    SSL_set_bio(s->ssl, s->in, s->out); /* the SSL object owns both BIOs now */
    if (client)
        SSL_set_connect_state(s->ssl);
    else
        SSL_set_accept_state(s->ssl);
    *out = s;
    return 0;
}

void tls_session_free(struct tls_session *s)
{
    if (!s)
        return;
    SSL_free(s->ssl);
    rc_free(s);
}

int tls_session_feed(struct tls_session *s, const void *data, size_t len)
{
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int n = BIO_write(s->in, data, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return RC_ENOMEM;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return 0;
}

/* What an SSL call's failure means: 0 (wants more input, or output to be taken), or
 * RC_EPROTO with the reason in why. */
static int failure(struct tls_session *s, int ret, const char *what, char *why, size_t why_len)
{
    int e = SSL_get_error(s->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        if (why && why_len)
            snprintf(why, why_len, "%s: the other side closed the TLS session", what);
        return RC_ECLOSED;
    }
    long verify = SSL_get_verify_result(s->ssl);
    if (verify != X509_V_OK) {
        ERR_clear_error();
        if (why && why_len)
            snprintf(why, why_len, "%s: certificate not accepted: %s", what,
                     X509_verify_cert_error_string(verify));
        return RC_EPROTO;
    }
    take_error(what, why, why_len);
    return RC_EPROTO;
}

int tls_session_handshake(struct tls_session *s, char *why, size_t why_len)
{
    int ret = SSL_do_handshake(s->ssl);
    if (ret == 1)
        return 1;
    return failure(s, ret, "TLS handshake", why, why_len);
}

int tls_session_read(struct tls_session *s, void *buf, size_t cap, size_t *got, char *why,
                     size_t why_len)
{
    *got = 0;
    size_t n = 0;
    int ret = SSL_read_ex(s->ssl, buf, cap, &n);
    if (ret == 1) {
        *got = n;
        return 0;
    }
    return failure(s, ret, "TLS read", why, why_len);
}

int tls_session_write(struct tls_session *s, const void *data, size_t len)
{
    /* Memory BIOs take everything: a write is whole or failed. */
    while (len > 0) {
        size_t n = 0;
        if (SSL_write_ex(s->ssl, data, len, &n) != 1) {
            ERR_clear_error();
            return RC_EPROTO;
        }
        data = (const char *)data + n;
        len -= n;
    }
    return 0;
}

int tls_session_take_output(struct tls_session *s, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t pending = BIO_ctrl_pending(s->out);
    if (pending == 0)
        return 0;
    unsigned char *buf = rc_malloc(pending);
    if (!buf)
        return RC_ENOMEM;
    size_t have = 0;
    while (have < pending) {
        size_t n = 0;
        if (BIO_read_ex(s->out, buf + have, pending - have, &n) != 1 || n == 0)
            break;
        have += n;
    }
    ERR_clear_error();
    *out = buf;
    *len = have;
    /* A memory BIO keeps the capacity of its largest content: after a big write, a fresh
     * one (SSL_set0_wbio frees the old) so that an idle connection holds no large buffer. */
    if (pending > TLS_KEEP_OUT_BYTES) {
        BIO *fresh = BIO_new(BIO_s_mem());
        if (fresh) {
            SSL_set0_wbio(s->ssl, fresh);
            s->out = fresh;
        }
        ERR_clear_error();
    }
    return 0;
}

/* ============================== sending output ============================== */

struct output_write {
    uv_write_t req;
    unsigned char *data;
    void (*done)(void *ctx, int status);
    void *ctx;
};

static void on_output_written(uv_write_t *req, int status)
{
    struct output_write *w = req->data;
    void (*done)(void *, int) = w->done;
    void *ctx = w->ctx;
    rc_free(w->data);
    rc_free(w);
    done(ctx, status);
}

int tls_session_send_output(struct tls_session *s, uv_stream_t *stream, tls_write_fn write,
                            void (*done)(void *ctx, int status), void *ctx)
{
    unsigned char *data;
    size_t len;
    if (tls_session_take_output(s, &data, &len) != 0)
        return RC_ENOMEM;
    if (len == 0)
        return 0;
    struct output_write *w = rc_malloc(sizeof *w);
    if (!w) {
        rc_free(data);
        return RC_ENOMEM;
    }
    *w = (struct output_write){.data = data, .done = done, .ctx = ctx};
    w->req.data = w;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (write(&w->req, stream, &b, 1, on_output_written) != 0) {
        rc_free(data);
        rc_free(w);
        return RC_EIO;
    }
    return 1;
}

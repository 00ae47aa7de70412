/*
 * reply.h — writes RESP2 replies into a growable output buffer; no I/O.
 *
 * The server appends each reply of a client to that client's struct resp_buf and writes
 * the bytes to the socket when it can. Every function returns 0 or RC_ENOMEM; on RC_ENOMEM
 * the buffer is unchanged (a reply is never half written), so the caller can close the
 * connection cleanly. The bytes are buf->data[0..buf->len); buf owns them (rc_malloc).
 */
#ifndef RC_RESP_REPLY_H
#define RC_RESP_REPLY_H

#include <stddef.h>
#include <stdint.h>

struct resp_buf {
    char *data;
    size_t len;   /* bytes of replies written */
    size_t cap;   /* bytes allocated */
    size_t limit; /* 0, or len may not grow past it: growing fails as out of memory */
    int over;     /* set by that failure; every later append fails too: close the client */
};

void resp_buf_init(struct resp_buf *b);
void resp_buf_free(struct resp_buf *b);
/* Makes room for `extra` more bytes without writing them. */
int resp_buf_reserve(struct resp_buf *b, size_t extra);
/* Bytes of memory the buffer holds (its capacity): what an output-buffer limit counts. */
size_t resp_buf_memory(const struct resp_buf *b);
/* Removes the first n bytes (already sent), keeping the rest. */
void resp_buf_consume(struct resp_buf *b, size_t n);
/* Appends raw bytes, already RESP-encoded (for example a reply forwarded from the leader). */
int resp_buf_append(struct resp_buf *b, const void *data, size_t len);

/* "+text\r\n". CR and LF in text become spaces so that the reply cannot be split. */
int resp_add_simple(struct resp_buf *b, const char *text, size_t len);
/* resp_add_simple for a C string, e.g. resp_add_status(b, "OK"). */
int resp_add_status(struct resp_buf *b, const char *text);

/*
 * "-message\r\n". message has no leading '-' and starts with the error code, e.g.
 * "ERR syntax error" or "WRONGTYPE Operation against a key holding the wrong kind of
 * value". As Redis does, line ends at the end of message are dropped and CR or LF inside
 * it become spaces, so that a message built from user input cannot break the protocol.
 */
int resp_add_error(struct resp_buf *b, const char *message, size_t len);
/* resp_add_error with printf formatting. */
int resp_add_errorf(struct resp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ":v\r\n" */
int resp_add_int(struct resp_buf *b, int64_t v);
/* "$len\r\n<data>\r\n", data binary. */
int resp_add_bulk(struct resp_buf *b, const void *data, size_t len);
/* resp_add_bulk for a C string. */
int resp_add_bulk_cstr(struct resp_buf *b, const char *s);
/* An int64 as a bulk string ("$2\r\n42\r\n"), as Redis replies GET on a number. */
int resp_add_bulk_int(struct resp_buf *b, int64_t v);
/* "$-1\r\n": the RESP2 null (GET of a missing key). */
int resp_add_null(struct resp_buf *b);
/* "*n\r\n": n elements follow, each written by its own call. */
int resp_add_array(struct resp_buf *b, size_t n);
/* "*-1\r\n": the RESP2 null array (e.g. EXEC aborted by WATCH). */
int resp_add_null_array(struct resp_buf *b);
/* "*0\r\n" */
int resp_add_empty_array(struct resp_buf *b);

/*
 * A long double as a bulk string formatted like Redis's INCRBYFLOAT reply (resp_ld2str:
 * "%.17Lf" with trailing zeros removed). RC_EINVAL for NaN, which Redis never replies.
 */
int resp_add_bulk_long_double(struct resp_buf *b, long double v);
/*
 * A double reply (ZSCORE-like). RESP2 has no double type, so Redis 7.0 sends a bulk string
 * of "%.17g" ("inf"/"-inf" for infinities); we do the same.
 */
int resp_add_double(struct resp_buf *b, double v);
/*
 * A verbatim string (INFO, CLIENT LIST). RESP3 would send "=len\r\ntxt:..."; in RESP2 it
 * is a plain bulk string of the text, which is what this writes. format is the three-letter
 * RESP3 format ("txt", "mkd"), kept for the RESP3 writer to come.
 */
int resp_add_verbatim(struct resp_buf *b, const char *format, const void *text, size_t len);

#endif

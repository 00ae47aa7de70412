/*
 * resp.h — the RESP2 request parser: bytes in, commands out, no I/O.
 *
 * Usage, per client connection:
 *
 *     struct resp_parser parser;          resp_parser_init(&parser);
 *     struct resp_argv argv;              resp_argv_init(&argv);
 *     struct resp_limits limits;          resp_limits_default(&limits);
 *     ...after each read, with buf/len the unparsed bytes received so far:
 *     size_t used;
 *     int rc = resp_parse(&parser, &limits, buf, len, &argv, &used);
 *     if (rc == 0)             run argv (count may be 0: ignore it), drop `used` bytes, repeat
 *     else if (rc == RC_EAGAIN) read more, call again with the same bytes plus the new ones
 *     else if (rc == RC_EPROTO) reply "-ERR " + resp_parser_error(&parser), close
 *     else                     RC_ENOMEM: close the connection
 *     resp_argv_free(&argv) when the connection closes.
 *
 * The design (a resumable state machine, limits, differences from Redis) is described at
 * the top of parse.c.
 */
#ifndef RC_RESP_RESP_H
#define RC_RESP_RESP_H

#include <stddef.h>
#include <stdint.h>

/* Redis 7's proto-max-bulk-len default: the largest accepted bulk argument. */
#define RESP_DEFAULT_MAX_BULK_LEN (512ull * 1024 * 1024)
/* Largest multibulk count by default (Redis <= 6 used this; Redis 7 allows INT_MAX). */
#define RESP_DEFAULT_MAX_MULTIBULK_COUNT (1024ull * 1024)
/* Redis's PROTO_INLINE_MAX_SIZE: longest inline line and longest '*' or '$' header line. */
#define RESP_INLINE_MAX_SIZE (64 * 1024)
/* What Redis accepts from a client that has not authenticated yet (requirepass set). */
#define RESP_UNAUTH_MAX_MULTIBULK_COUNT 10
#define RESP_UNAUTH_MAX_BULK_LEN        16384

/* Input limits; the caller may change them between calls (for example after AUTH). */
struct resp_limits {
    uint64_t max_bulk_len_bytes;  /* longer '$' lengths: "invalid bulk length" */
    uint64_t max_multibulk_count; /* larger '*' counts: "invalid multibulk length"; clamped
                                     to INT_MAX like Redis 7 */
    size_t max_inline_bytes;      /* longest inline line or header line */
    int unauthenticated;          /* nonzero: also apply RESP_UNAUTH_* with Redis's
                                     "unauthenticated ..." errors */
};

/* Fills l with the defaults above (authenticated). */
void resp_limits_default(struct resp_limits *l);

/* One argument: len bytes at ptr (not NUL-terminated; may contain any byte). */
struct resp_arg {
    const char *ptr;
    size_t len;
};

/*
 * The arguments of the last parsed command. Owned by the caller, reused from one command to
 * the next; the parser grows it with rc_realloc only as arguments actually arrive, never by
 * a count announced on the wire. After resp_parse() returns 0, args[0..count) point into
 * the caller's buffer (zero copy) or, for inline arguments that needed unquoting, into
 * `scratch`; they stay valid until the buffer changes or the next resp_parse() call.
 */
struct resp_argv {
    struct resp_arg *args;
    size_t count;
    size_t cap;
    char *scratch; /* unquoted inline arguments; at most one inline line long */
    size_t scratch_cap;
};

void resp_argv_init(struct resp_argv *argv);

/* True when the argument is the given word, ignoring ASCII case (command names, options). */
int resp_arg_is(const struct resp_arg *a, const char *word);
/* Frees what the parser allocated and leaves argv empty, ready for reuse. */
void resp_argv_free(struct resp_argv *argv);

/* Resumable parser state for one connection. Fields are private to parse.c. */
struct resp_parser {
    int mode;           /* how far the current command got (START, COUNT, ARGS, INLINE) */
    size_t scan_from;   /* where the search for the current line's end resumes */
    size_t next;        /* offset of the first byte not yet parsed */
    size_t first_arg;   /* offset of the first '$' header of the multibulk */
    uint64_t args_left; /* bulk arguments still expected */
    int64_t bulk_len;   /* length of the bulk whose header was read, or -1 */
    const char *error;  /* message of the last RC_EPROTO; NULL: it is in error_buf */
    char error_buf[48]; /* holds the formatted "expected '$', got 'x'" message */
};

void resp_parser_init(struct resp_parser *p);

/*
 * Parses one command from the start of buf[0..len).
 *
 * Returns 0 when a whole command was parsed: *consumed (> 0) bytes were used and argv holds
 * its arguments (argv->count == 0 for an empty command such as "\r\n" or "*0\r\n", which
 * Redis ignores). Returns RC_EAGAIN when buf holds only part of a command: the parser
 * remembers how far it got, and the next call must pass the same bytes (the buffer may have
 * moved, e.g. by realloc) followed by any new ones; it resumes there, so a command fed in
 * many small reads is scanned once in total. Until that next call, argv holds the partial
 * command (lengths only): do not modify it. Returns RC_EPROTO for malformed or over-limit
 * input: resp_parser_error() gives Redis's message (without "-ERR "), and the connection
 * should be closed. Returns RC_ENOMEM if argv could not grow (the state is kept, so a later
 * call may retry). After 0 or RC_EPROTO the parser is ready for the next command, which
 * starts at buf + *consumed on success. Passing fewer bytes than the previous call restarts
 * the command from the beginning (correct, only slower).
 */
int resp_parse(struct resp_parser *p, const struct resp_limits *limits, const char *buf, size_t len,
               struct resp_argv *argv, size_t *consumed);

/*
 * After RC_EAGAIN: the buffer length at which the bulk argument being read will be complete,
 * or 0 if not known yet (a header line is incomplete, or an inline line). A hint for sizing
 * reads of big values; it is bounded by the limits (a few hundred MB by default), so a
 * caller should not reserve it blindly for a client that has not authenticated.
 */
size_t resp_parse_wanted(const struct resp_parser *p);

/* The message of the last RC_EPROTO, e.g. "Protocol error: invalid bulk length"; static or
 * inside p, valid until the next resp_parse() call. */
const char *resp_parser_error(const struct resp_parser *p);

/*
 * Splits one inline line (without its line ending) into argv the way Redis splits inline
 * commands (sdssplitargs): blanks separate arguments; "..." understands \n \r \t \b \a \xHH
 * and \<any>; '...' understands \'; a closing quote must be followed by a blank or the end.
 * Returns 0, RC_EPROTO for unbalanced quotes, or RC_ENOMEM. Used by resp_parse().
 */
int resp_split_inline(const char *line, size_t len, struct resp_argv *argv);

/* Internal to src/resp: appends one argument, growing argv to at most count + more_hint
 * entries (more_hint >= 1 is how many arguments may still follow, this one included). */
int resp_argv_push(struct resp_argv *argv, const char *ptr, size_t len, uint64_t more_hint);

#endif

/*
 * entry.h — the replicated log entry: a batch of normalised write commands.
 *
 * Every write a client sends becomes, after validation, a *normalised* command (an argv
 * whose meaning no longer depends on the clock or on the node: SET k v EX 10 becomes
 * SET k v PXAT <absolute ms>). The commands that arrive during one event-loop iteration go
 * into one entry, which is what the Raft log carries and what fsm_apply executes. Layout,
 * little-endian, version 1:
 *
 *   u8  version      1
 *   u8  kind         1 = commands
 *   u16 reserved     0
 *   i64 now_ms       the proposer's clock when the entry was built: apply judges expiry
 *                    at this instant on every node, so replicas agree
 *   u32 count        number of commands
 *   count x { u32 argc; argc x { u32 len; len bytes } }
 *
 * Decoding checks every length against the bytes that remain before using it, so a
 * corrupt or hostile entry is refused (RC_EPROTO) and never causes an allocation sized by
 * an unchecked number.
 */
#ifndef RC_CLUSTER_ENTRY_H
#define RC_CLUSTER_ENTRY_H

#include "resp/reply.h"
#include "resp/resp.h"

#include <stddef.h>
#include <stdint.h>

#define ENTRY_VERSION       1
#define ENTRY_KIND_COMMANDS 1
#define ENTRY_HEADER_SIZE   16

/* Builds an entry in a growable buffer (the caller owns buf; see resp/reply.h). */
struct entry_builder {
    struct resp_buf buf;
    uint32_t count;
};

/* Starts an empty entry. 0 or RC_ENOMEM. */
int entry_builder_start(struct entry_builder *b);
/* Appends one command. 0 or RC_ENOMEM (the entry is then unchanged). */
int entry_builder_add(struct entry_builder *b, size_t argc, const struct resp_arg *args);
/* Writes the count and the time now_ms into the header; the entry is
 * b->buf.data[0 .. b->buf.len). The time is stamped at the end, so that it is not earlier
 * than any absolute time a command of the entry was normalised with. */
void entry_builder_finish(struct entry_builder *b, int64_t now_ms);
void entry_builder_free(struct entry_builder *b);

/* A decoded entry: a view into the encoded bytes (which must outlive it). */
struct entry_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
    int64_t now_ms;
    uint32_t count;
    uint32_t read; /* commands returned so far */
};

/* Checks the header and every command's framing. 0 or RC_EPROTO. */
int entry_reader_init(struct entry_reader *r, const void *data, size_t len);
/* Fills argv (whose args point into the entry) with the next command. 0, RC_ENOTFOUND at
 * the end, RC_ENOMEM. */
int entry_reader_next(struct entry_reader *r, struct resp_argv *argv);

#endif

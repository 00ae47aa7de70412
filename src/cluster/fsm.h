/*
 * fsm.h — the state machine: applies log entries (entry.h) to the store.
 *
 * fsm_apply executes each normalised command of an entry in order, at the entry's
 * revision (the Raft index; a local counter on a single node), judging expiry at the
 * entry's now_ms, so that every replica that applies the same entries to the same store
 * ends with the same contents and computes the same replies. It reads nothing else: no
 * clock, no node state. A failed command (a value that is not an integer, a missing key for
 * RENAME) changes nothing and replies with Redis's error text.
 *
 * The normalised commands it understands, with the replies they produce:
 *   SET k v [NX|XX] [GET] [PXAT ms|KEEPTTL]  +OK, nil, or the old value (GET)
 *   SETNX k v                                :1 / :0
 *   GETDEL k                                 value or nil
 *   GETEX k [PXAT ms|PERSIST|ERROR msg]      value or nil (ERROR msg: the error if k exists)
 *   MSET k v [k v ...]                       +OK
 *   MSETNX k v [k v ...]                     :1 / :0
 *   DEL k [k ...]                            :deleted
 *   INCRBY k n                               :new value
 *   INCRBYFLOAT k f                          new value as bulk
 *   APPEND k v [limit]                       :new length (at most limit bytes)
 *   SETRANGE k offset v                      :new length
 *   PEXPIREAT k ms [NX] [XX] [GT] [LT]       :1 / :0 (a time not after now deletes the key)
 *   PERSIST k                                :1 / :0
 *   RENAME k newk / RENAMENX k newk          +OK / :1 :0, or "ERR no such key"
 *   COPY k newk [REPLACE]                    :1 / :0
 *   FLUSHALL                                 +OK
 *   PDEL pattern                             :deleted
 *   DELRANGE min max                         array of the deleted keys
 *   DELEXPIRED k [k ...]                     :deleted (only keys expired at now_ms; the
 *                                            expiry cycle's deletions)
 * Names are matched case-insensitively; an unknown name or malformed arguments give an
 * error reply and change nothing, so entries from a newer version cannot corrupt a store.
 */
#ifndef RC_CLUSTER_FSM_H
#define RC_CLUSTER_FSM_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* Receives the RESP reply of command `index` of the entry (bytes valid during the call). */
typedef void (*fsm_reply_fn)(uint32_t index, const char *reply, size_t len, void *ctx);

/*
 * Applies every command of the entry at revision. reply may be NULL (a follower discards
 * replies). Returns 0; RC_EPROTO if the entry is malformed (nothing applied); or a store
 * error (RC_EIO, RC_ECLOSED, RC_ENOMEM) after which the store may hold part of the entry:
 * the caller must stop applying (a replica that skipped it would diverge).
 */
int fsm_apply(struct rc_store *store, const void *entry, size_t len, uint64_t revision,
              fsm_reply_fn reply, void *ctx);

struct resp_arg;
/* Parses a ZRANGEBYLEX-style bound ("[k" inclusive, "(k" exclusive, "-" and "+" the ends)
 * for RANGE and DELRANGE: 0 and *out set; 1 when the bound selects nothing (a min of "+"
 * or a max of "-"); -1 when malformed. */
int fsm_parse_lex_bound(const struct resp_arg *a, bool is_min, struct kd_bound *out);

#endif

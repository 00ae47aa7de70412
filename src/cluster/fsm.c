/*
 * fsm.c — applying normalised write commands to the store (see fsm.h for the language).
 *
 * Every operation reads with rc_store_get_at(now_ms of the entry) and writes at the
 * entry's revision, so its outcome depends only on the store and the entry. Errors that
 * come from the data (not an integer, overflow, no such key) are replies; errors from the
 * store itself abort the entry (fsm_apply's caller must stop).
 */
#include "fsm.h"

#include "common/alloc.h"
#include "entry.h"
#include "raftcask.h"
#include "resp/glob.h"
#include "store/record.h"
#include "resp/number.h"
#include "resp/reply.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

struct apply_ctx {
    struct rc_store *st;
    uint64_t rev;
    int64_t now;
    struct resp_buf *out;
    struct rc_buf val; /* scratch for values read */
    struct rc_buf val2;
    int fatal; /* a store error: stop the entry */
};

typedef void (*apply_fn)(struct apply_ctx *c, size_t argc, const struct resp_arg *a);

/* ============================== helpers ============================== */

static void reply_error(struct apply_ctx *c, const char *msg)
{
    resp_add_error(c->out, msg, strlen(msg));
}

static void syntax_error(struct apply_ctx *c)
{
    reply_error(c, "ERR syntax error");
}

/* Store errors are fatal for the entry; they are recorded and a generic error replied. */
static bool store_failed(struct apply_ctx *c, int rc)
{
    if (rc == 0 || rc == RC_ENOTFOUND)
        return false;
    if (rc == RC_ETOOBIG) {
        reply_error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return true;
    }
    c->fatal = rc;
    resp_add_errorf(c->out, "ERR store failure: %s", rc_strerror(rc));
    return true;
}

/* Reads key at the entry's time into buf; 0 (found), RC_ENOTFOUND, or a store error. */
static int read_key(struct apply_ctx *c, const struct resp_arg *k, struct rc_buf *buf,
                    struct rc_item_meta *meta)
{
    return rc_store_get_at(c->st, k->ptr, k->len, c->now, buf, meta);
}

static int write_key(struct apply_ctx *c, const struct resp_arg *k, const void *v, size_t vlen,
                     int64_t expiry_ms)
{
    return rc_store_put(c->st, k->ptr, k->len, v, vlen, expiry_ms, c->rev);
}

/* Deletes key; *deleted tells whether a live (unexpired) key was removed. An expired key is
 * removed too, silently, since it is absent to every reader already. */
static int delete_key(struct apply_ctx *c, const struct resp_arg *k, bool *deleted)
{
    int live = rc_store_get_at(c->st, k->ptr, k->len, c->now, NULL, NULL);
    if (live != 0 && live != RC_ENOTFOUND)
        return live;
    int rc = rc_store_delete(c->st, k->ptr, k->len, c->rev);
    *deleted = rc == 0 && live == 0;
    return rc == RC_ENOTFOUND ? 0 : rc;
}

static bool parse_i64(const struct resp_arg *a, int64_t *out)
{
    return resp_string2ll(a->ptr, a->len, out) == 0;
}

/* ============================== strings ============================== */

/* SET k v [NX|XX] [GET] [PXAT ms|KEEPTTL] */
static void apply_set(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    bool nx = false, xx = false, get = false, keepttl = false;
    int64_t pxat = 0;
    for (size_t i = 3; i < argc; i++) {
        if (resp_arg_is(&a[i], "NX"))
            nx = true;
        else if (resp_arg_is(&a[i], "XX"))
            xx = true;
        else if (resp_arg_is(&a[i], "GET"))
            get = true;
        else if (resp_arg_is(&a[i], "KEEPTTL"))
            keepttl = true;
        else if (resp_arg_is(&a[i], "PXAT") && i + 1 < argc && parse_i64(&a[i + 1], &pxat) &&
                 pxat > 0)
            i++;
        else
            return syntax_error(c);
    }
    struct rc_item_meta old;
    /* The old value itself only when GET returns it (a large one is a large copy). */
    int found = read_key(c, &a[1], get ? &c->val : NULL, &old);
    if (found != 0 && found != RC_ENOTFOUND && store_failed(c, found))
        return;
    bool exists = found == 0;
    if ((nx && exists) || (xx && !exists)) {
        if (get && exists)
            resp_add_bulk(c->out, c->val.data, c->val.len);
        else
            resp_add_null(c->out);
        return;
    }
    int64_t expiry = pxat ? pxat : (keepttl && exists) ? old.expiry_ms : 0;
    int rc;
    if (pxat && pxat <= c->now) { /* already expired: the key simply ends up absent */
        bool deleted;
        rc = delete_key(c, &a[1], &deleted);
    } else {
        rc = write_key(c, &a[1], a[2].ptr, a[2].len, expiry);
    }
    if (store_failed(c, rc))
        return;
    if (!get)
        resp_add_status(c->out, "OK");
    else if (exists)
        resp_add_bulk(c->out, c->val.data, c->val.len);
    else
        resp_add_null(c->out);
}

static void apply_setnx(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (argc != 3)
        return syntax_error(c);
    int found = read_key(c, &a[1], NULL, NULL);
    if (found == 0) {
        resp_add_int(c->out, 0);
        return;
    }
    if ((found != RC_ENOTFOUND && store_failed(c, found)) ||
        store_failed(c, write_key(c, &a[1], a[2].ptr, a[2].len, 0)))
        return;
    resp_add_int(c->out, 1);
}

static void apply_getdel(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (argc != 2)
        return syntax_error(c);
    int found = read_key(c, &a[1], &c->val, NULL);
    if (found == RC_ENOTFOUND) {
        resp_add_null(c->out);
        return;
    }
    bool deleted;
    if (store_failed(c, found) || store_failed(c, delete_key(c, &a[1], &deleted)))
        return;
    resp_add_bulk(c->out, c->val.data, c->val.len);
}

/* GETEX k [PXAT ms|PERSIST|ERROR message]: ERROR carries an invalid time found by the
 * proposer, replied only if the key exists (Redis checks the key first). */
static void apply_getex(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t pxat = 0;
    bool persist = false;
    const struct resp_arg *error = NULL;
    if (argc == 3 && resp_arg_is(&a[2], "PERSIST"))
        persist = true;
    else if (argc == 4 && resp_arg_is(&a[2], "ERROR"))
        error = &a[3];
    else if (argc == 4 && resp_arg_is(&a[2], "PXAT") && parse_i64(&a[3], &pxat) && pxat > 0)
        ;
    else if (argc != 2)
        return syntax_error(c);
    struct rc_item_meta m;
    int found = read_key(c, &a[1], &c->val, &m);
    if (found == RC_ENOTFOUND) {
        resp_add_null(c->out);
        return;
    }
    if (store_failed(c, found))
        return;
    if (error) {
        resp_add_error(c->out, error->ptr, error->len);
        return;
    }
    int rc = 0;
    bool deleted;
    if (pxat && pxat <= c->now)
        rc = delete_key(c, &a[1], &deleted);
    else if (pxat)
        rc = write_key(c, &a[1], c->val.data, c->val.len, pxat);
    else if (persist && m.expiry_ms)
        rc = write_key(c, &a[1], c->val.data, c->val.len, 0);
    if (store_failed(c, rc))
        return;
    resp_add_bulk(c->out, c->val.data, c->val.len);
}

static void apply_mset(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (argc < 3 || argc % 2 == 0)
        return syntax_error(c);
    for (size_t i = 1; i < argc; i += 2)
        if (store_failed(c, write_key(c, &a[i], a[i + 1].ptr, a[i + 1].len, 0)))
            return;
    resp_add_status(c->out, "OK");
}

static void apply_msetnx(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (argc < 3 || argc % 2 == 0)
        return syntax_error(c);
    for (size_t i = 1; i < argc; i += 2) {
        int found = read_key(c, &a[i], NULL, NULL);
        if (found == 0) {
            resp_add_int(c->out, 0);
            return;
        }
        if (found != RC_ENOTFOUND && store_failed(c, found))
            return;
    }
    for (size_t i = 1; i < argc; i += 2)
        if (store_failed(c, write_key(c, &a[i], a[i + 1].ptr, a[i + 1].len, 0)))
            return;
    resp_add_int(c->out, 1);
}

static void apply_del(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t n = 0;
    for (size_t i = 1; i < argc; i++) {
        bool deleted;
        if (store_failed(c, delete_key(c, &a[i], &deleted)))
            return;
        n += deleted;
    }
    resp_add_int(c->out, n);
}

static void apply_incrby(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t by, cur = 0;
    if (argc != 3 || !parse_i64(&a[2], &by))
        return reply_error(c, "ERR value is not an integer or out of range");
    struct rc_item_meta m = {0};
    int found = read_key(c, &a[1], &c->val, &m);
    if (found != 0 && found != RC_ENOTFOUND && store_failed(c, found))
        return;
    if (found == 0 && resp_string2ll(c->val.data, c->val.len, &cur) != 0)
        return reply_error(c, "ERR value is not an integer or out of range");
    if ((by > 0 && cur > INT64_MAX - by) || (by < 0 && cur < INT64_MIN - by))
        return reply_error(c, "ERR increment or decrement would overflow");
    cur += by;
    char buf[32];
    size_t n = resp_ll2str(buf, cur);
    if (store_failed(c, write_key(c, &a[1], buf, n, found == 0 ? m.expiry_ms : 0)))
        return;
    resp_add_int(c->out, cur);
}

static void apply_incrbyfloat(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    long double by, cur = 0;
    if (argc != 3 || resp_string2ld(a[2].ptr, a[2].len, &by) != 0)
        return reply_error(c, "ERR value is not a valid float");
    struct rc_item_meta m = {0};
    int found = read_key(c, &a[1], &c->val, &m);
    if (found != 0 && found != RC_ENOTFOUND && store_failed(c, found))
        return;
    if (found == 0 && resp_string2ld(c->val.data, c->val.len, &cur) != 0)
        return reply_error(c, "ERR value is not a valid float");
    cur += by;
    if (isnan(cur) || isinf(cur))
        return reply_error(c, "ERR increment would produce NaN or Infinity");
    char buf[RESP_LD_STR_SIZE];
    size_t n = resp_ld2str(buf, sizeof buf, cur);
    if (store_failed(c, write_key(c, &a[1], buf, n, found == 0 ? m.expiry_ms : 0)))
        return;
    resp_add_bulk(c->out, buf, n);
}

/* Replaces key's value by old[0..keep) + add, zero-padding up to at, keeping the TTL. */
static void splice_value(struct apply_ctx *c, const struct resp_arg *k, size_t at,
                         const struct resp_arg *add, bool append, uint64_t limit)
{
    struct rc_item_meta m = {0};
    int found = read_key(c, k, &c->val, &m);
    if (found != 0 && found != RC_ENOTFOUND && store_failed(c, found))
        return;
    size_t old_len = found == 0 ? c->val.len : 0;
    if (append)
        at = old_len;
    if (append && (uint64_t)old_len + add->len > limit)
        return reply_error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    if (!append && add->len == 0) { /* SETRANGE with nothing to write changes nothing */
        resp_add_int(c->out, (int64_t)old_len);
        return;
    }
    size_t new_len = at + add->len > old_len ? at + add->len : old_len;
    struct rc_buf *b = &c->val2;
    if (new_len + 1 > b->cap) {
        char *d = rc_realloc(b->data, new_len + 1);
        if (!d) {
            store_failed(c, RC_ENOMEM);
            return;
        }
        b->data = d;
        b->cap = new_len + 1;
    }
    if (old_len)
        memcpy(b->data, c->val.data, old_len);
    if (at > old_len)
        memset(b->data + old_len, 0, at - old_len);
    memcpy(b->data + at, add->ptr, add->len);
    b->len = new_len;
    if (store_failed(c, write_key(c, k, b->data, new_len, found == 0 ? m.expiry_ms : 0)))
        return;
    resp_add_int(c->out, (int64_t)new_len);
}

/* APPEND k v [limit]: the result may not exceed limit, the proposer's --proto-max-bulk-len
 * (every replica judges by the entry, not by its own setting), nor RECORD_MAX_VALUE. */
static void apply_append(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t limit = RECORD_MAX_VALUE;
    if (argc > 4 || (argc == 4 && (!parse_i64(&a[3], &limit) || limit < 0)))
        return syntax_error(c);
    if (limit > RECORD_MAX_VALUE)
        limit = RECORD_MAX_VALUE;
    splice_value(c, &a[1], 0, &a[2], true, (uint64_t)limit);
}

static void apply_setrange(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t off;
    if (argc != 4 || !parse_i64(&a[2], &off) || off < 0)
        return reply_error(c, "ERR offset is out of range");
    if (a[3].len > 0 && (uint64_t)off + a[3].len > RECORD_MAX_VALUE)
        return reply_error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    splice_value(c, &a[1], (size_t)off, &a[3], false, RECORD_MAX_VALUE);
}

/* ============================== expiry ============================== */

/* PEXPIREAT k ms [NX] [XX] [GT] [LT]: every flag given must hold. */
static void apply_pexpireat(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t when;
    if (argc < 3 || !parse_i64(&a[2], &when))
        return syntax_error(c);
    struct rc_item_meta m;
    int found = read_key(c, &a[1], &c->val, &m);
    if (found == RC_ENOTFOUND) {
        resp_add_int(c->out, 0);
        return;
    }
    if (store_failed(c, found))
        return;
    bool has = m.expiry_ms != 0, ok = true;
    for (size_t i = 3; i < argc; i++) {
        if (resp_arg_is(&a[i], "NX"))
            ok = ok && !has;
        else if (resp_arg_is(&a[i], "XX"))
            ok = ok && has;
        else if (resp_arg_is(&a[i], "GT"))
            ok = ok && has && when > m.expiry_ms; /* no expiry counts as infinite */
        else if (resp_arg_is(&a[i], "LT"))
            ok = ok && (!has || when < m.expiry_ms);
        else
            return syntax_error(c);
    }
    if (!ok) {
        resp_add_int(c->out, 0);
        return;
    }
    bool deleted;
    int rc = when <= c->now ? delete_key(c, &a[1], &deleted)
                            : write_key(c, &a[1], c->val.data, c->val.len, when);
    if (store_failed(c, rc))
        return;
    resp_add_int(c->out, 1);
}

static void apply_persist(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (argc != 2)
        return syntax_error(c);
    struct rc_item_meta m;
    int found = read_key(c, &a[1], &c->val, &m);
    if (found == RC_ENOTFOUND || (found == 0 && m.expiry_ms == 0)) {
        resp_add_int(c->out, 0);
        return;
    }
    if (store_failed(c, found) || store_failed(c, write_key(c, &a[1], c->val.data, c->val.len, 0)))
        return;
    resp_add_int(c->out, 1);
}

/* ============================== keyspace ============================== */

static bool same_key(const struct resp_arg *x, const struct resp_arg *y)
{
    return x->len == y->len && memcmp(x->ptr, y->ptr, x->len) == 0;
}

/* RENAME and RENAMENX: nx selects RENAMENX's rules and integer reply. */
static void rename_key(struct apply_ctx *c, size_t argc, const struct resp_arg *a, bool nx)
{
    if (argc != 3)
        return syntax_error(c);
    struct rc_item_meta m;
    int found = read_key(c, &a[1], &c->val, &m);
    if (found == RC_ENOTFOUND)
        return reply_error(c, "ERR no such key");
    if (store_failed(c, found))
        return;
    if (same_key(&a[1], &a[2])) {
        if (nx)
            resp_add_int(c->out, 0);
        else
            resp_add_status(c->out, "OK");
        return;
    }
    if (nx) {
        int dst = read_key(c, &a[2], NULL, NULL);
        if (dst == 0) {
            resp_add_int(c->out, 0);
            return;
        }
        if (dst != RC_ENOTFOUND && store_failed(c, dst))
            return;
    }
    bool deleted;
    if (store_failed(c, write_key(c, &a[2], c->val.data, c->val.len, m.expiry_ms)) ||
        store_failed(c, delete_key(c, &a[1], &deleted)))
        return;
    if (nx)
        resp_add_int(c->out, 1);
    else
        resp_add_status(c->out, "OK");
}

static void apply_rename(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    rename_key(c, argc, a, false);
}

static void apply_renamenx(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    rename_key(c, argc, a, true);
}

static void apply_copy(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    bool replace = argc == 4 && resp_arg_is(&a[3], "REPLACE");
    if (argc != 3 && !replace)
        return syntax_error(c);
    if (same_key(&a[1], &a[2]))
        return reply_error(c, "ERR source and destination objects are the same");
    struct rc_item_meta m;
    int found = read_key(c, &a[1], &c->val, &m);
    if (found == RC_ENOTFOUND) {
        resp_add_int(c->out, 0);
        return;
    }
    if (store_failed(c, found))
        return;
    int dst = read_key(c, &a[2], NULL, NULL);
    if (dst == 0 && !replace) {
        resp_add_int(c->out, 0);
        return;
    }
    if ((dst != 0 && dst != RC_ENOTFOUND && store_failed(c, dst)) ||
        store_failed(c, write_key(c, &a[2], c->val.data, c->val.len, m.expiry_ms)))
        return;
    resp_add_int(c->out, 1);
}

static void apply_flushall(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (store_failed(c, rc_store_clear(c->st, c->rev)))
        return;
    resp_add_status(c->out, "OK");
}

/* ============================== ranges ============================== */

/* Keys gathered by a scan, deleted after it (a scan callback may not write the store). */
struct key_list {
    struct resp_buf bytes; /* u32 length + key, one after the other */
    size_t count;
    const struct resp_arg *pattern;
    bool too_costly; /* a key took the pattern more than GLOB_STEPS_PER_BYTE steps a byte */
};

/* A pattern that matches a key in more steps than this per byte of key and pattern is
 * refused (a usual one takes one or two): matching costs up to their product, and PDEL
 * runs on every node (100 keys of 64 KiB and a 256-byte pattern held a node 3.7 s). The
 * count is the same on every node, so every node refuses alike. */
#define GLOB_STEPS_PER_BYTE 16

static int gather_key(const void *key, size_t klen, const void *value, size_t vlen,
                      const struct rc_item_meta *meta, void *ctx)
{
    struct key_list *l = ctx;
    if (l->pattern && !resp_glob_matches_all(l->pattern->ptr, l->pattern->len)) {
        uint64_t steps = 0;
        int match = resp_glob_match_counted(l->pattern->ptr, l->pattern->len, key, klen, 0, &steps);
        if (steps > GLOB_STEPS_PER_BYTE * (klen + l->pattern->len + 4)) {
            l->too_costly = true;
            return 1; /* stops the scan; nothing was deleted yet */
        }
        if (!match)
            return 0;
    }
    uint32_t n = (uint32_t)klen;
    if (resp_buf_append(&l->bytes, &n, 4) != 0 || resp_buf_append(&l->bytes, key, klen) != 0)
        return RC_ENOMEM;
    l->count++;
    return 0;
}

/* Deletes every gathered key; replies with their count, or their names when as_array. */
static void delete_gathered(struct apply_ctx *c, struct key_list *l, bool as_array)
{
    if (as_array)
        resp_add_array(c->out, l->count);
    int64_t deleted_count = 0;
    for (size_t pos = 0; pos < l->bytes.len;) {
        uint32_t n;
        memcpy(&n, l->bytes.data + pos, 4);
        struct resp_arg k = {l->bytes.data + pos + 4, n};
        pos += 4 + n;
        bool deleted;
        int rc = delete_key(c, &k, &deleted);
        if (rc != 0) {
            c->fatal = rc; /* the reply may be cut short: the node stops anyway */
            break;
        }
        deleted_count += deleted;
        if (as_array)
            resp_add_bulk(c->out, k.ptr, k.len);
    }
    if (!as_array && !c->fatal)
        resp_add_int(c->out, deleted_count);
    resp_buf_free(&l->bytes);
}

static void apply_pdel(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    if (argc != 2)
        return syntax_error(c);
    struct key_list l = {.pattern = &a[1]};
    resp_buf_init(&l.bytes);
    size_t plen = resp_glob_literal_prefix(a[1].ptr, a[1].len);
    struct rc_store_range r = {.now_ms = c->now};
    unsigned char *succ = rc_malloc(plen ? plen : 1);
    if (!succ) {
        store_failed(c, RC_ENOMEM);
        return;
    }
    rc_store_range_prefix(&r, a[1].ptr, plen, succ);
    int rc = rc_store_scan(c->st, &r, gather_key, &l);
    rc_free(succ);
    if (l.too_costly) {
        resp_buf_free(&l.bytes);
        return reply_error(c, "ERR PDEL pattern too costly to match; nothing was deleted");
    }
    if (rc != 0) {
        resp_buf_free(&l.bytes);
        store_failed(c, rc);
        return;
    }
    delete_gathered(c, &l, false);
}

int fsm_parse_lex_bound(const struct resp_arg *a, bool is_min, struct kd_bound *out)
{
    if (a->len == 1 && (a->ptr[0] == '-' || a->ptr[0] == '+')) {
        /* "-" is below every key, "+" above: a min of "-" or a max of "+" is no bound, a
         * min of "+" or a max of "-" selects nothing. */
        *out = (struct kd_bound){KD_BOUND_OPEN, NULL, 0};
        return (a->ptr[0] == '-') == is_min ? 0 : 1;
    }
    if (a->len >= 1 && (a->ptr[0] == '[' || a->ptr[0] == '(')) {
        out->kind = a->ptr[0] == '[' ? KD_BOUND_INCLUSIVE : KD_BOUND_EXCLUSIVE;
        out->key = a->ptr + 1;
        out->len = a->len - 1;
        return 0;
    }
    return -1;
}

static void apply_delrange(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    struct rc_store_range r = {.now_ms = c->now};
    if (argc != 3)
        return syntax_error(c);
    int lo = fsm_parse_lex_bound(&a[1], true, &r.lo), hi = fsm_parse_lex_bound(&a[2], false, &r.hi);
    if (lo < 0 || hi < 0)
        return reply_error(c, "ERR min or max not valid string range item");
    struct key_list l = {0};
    resp_buf_init(&l.bytes);
    if (lo == 0 && hi == 0) {
        int rc = rc_store_scan(c->st, &r, gather_key, &l);
        if (rc != 0) {
            resp_buf_free(&l.bytes);
            store_failed(c, rc);
            return;
        }
    }
    delete_gathered(c, &l, true);
}

static void apply_delexpired(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    int64_t n = 0;
    for (size_t i = 1; i < argc; i++) {
        int live = read_key(c, &a[i], NULL, NULL);
        if (live == 0)
            continue; /* written again since the expiry cycle saw it expired */
        if (live != RC_ENOTFOUND && store_failed(c, live))
            return;
        int rc = rc_store_delete(c->st, a[i].ptr, a[i].len, c->rev);
        if (rc != RC_ENOTFOUND && store_failed(c, rc))
            return;
        n += rc == 0;
    }
    resp_add_int(c->out, n);
}

/* ============================== dispatch ============================== */

/* Every operation with the fewest arguments it reads (name included); the op functions
 * may rely on that many. */
static const struct {
    const char *name;
    size_t min_args;
    apply_fn fn;
} ops[] = {
    {"SET", 3, apply_set},
    {"SETNX", 3, apply_setnx},
    {"GETDEL", 2, apply_getdel},
    {"GETEX", 2, apply_getex},
    {"MSET", 3, apply_mset},
    {"MSETNX", 3, apply_msetnx},
    {"DEL", 2, apply_del},
    {"INCRBY", 3, apply_incrby},
    {"INCRBYFLOAT", 3, apply_incrbyfloat},
    {"APPEND", 3, apply_append},
    {"SETRANGE", 4, apply_setrange},
    {"PEXPIREAT", 3, apply_pexpireat},
    {"PERSIST", 2, apply_persist},
    {"RENAME", 3, apply_rename},
    {"RENAMENX", 3, apply_renamenx},
    {"COPY", 3, apply_copy},
    {"FLUSHALL", 1, apply_flushall},
    {"PDEL", 2, apply_pdel},
    {"DELRANGE", 3, apply_delrange},
    {"DELEXPIRED", 2, apply_delexpired},
};

static void apply_one(struct apply_ctx *c, size_t argc, const struct resp_arg *a)
{
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        if (!resp_arg_is(&a[0], ops[i].name))
            continue;
        if (argc < ops[i].min_args)
            reply_error(c, "ERR wrong number of arguments in replicated command");
        else
            ops[i].fn(c, argc, a);
        return;
    }
    resp_add_errorf(c->out, "ERR unknown replicated command '%.*s'",
                    (int)(a[0].len > 64 ? 64 : a[0].len), a[0].ptr);
}

int fsm_apply(struct rc_store *store, const void *entry, size_t len, uint64_t revision,
              fsm_reply_fn reply, void *ctx)
{
    struct entry_reader r;
    int rc = entry_reader_init(&r, entry, len);
    if (rc != 0)
        return rc;
    /* The store reads 0 as "use my clock": an entry's time must never mean that. */
    struct apply_ctx c = {.st = store, .rev = revision, .now = r.now_ms > 0 ? r.now_ms : 1};
    struct resp_buf out;
    resp_buf_init(&out);
    c.out = &out;
    struct resp_argv argv;
    resp_argv_init(&argv);
    uint32_t index = 0;
    while ((rc = entry_reader_next(&r, &argv)) == 0) {
        out.len = 0;
        if (argv.count == 0)
            resp_add_error(&out, "ERR empty replicated command", 28);
        else
            apply_one(&c, argv.count, argv.args);
        if (c.fatal) {
            rc = c.fatal;
            break;
        }
        if (reply)
            reply(index, out.data, out.len, ctx);
        index++;
    }
    if (rc == RC_ENOTFOUND)
        rc = 0;
    /* Every entry ends its revision, also when it wrote nothing; one that failed part-way
     * must not (a store opened with atomic_revisions then drops that part at reopen). */
    if (rc == 0)
        rc = rc_store_commit_revision(store, revision);
    resp_argv_free(&argv);
    resp_buf_free(&out);
    rc_free(c.val.data);
    rc_free(c.val2.data);
    return rc;
}

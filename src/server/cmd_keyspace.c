/*
 * cmd_keyspace.c — commands about keys rather than values: existence, expiry, renaming,
 * counting, iteration (SCAN, KEYS) and raftcask's ordered-key commands (RANGE, PDEL,
 * DELRANGE).
 *
 * SCAN cursors: keys are kept in byte order, so a scan position is simply "after key K".
 * Clients (redis-py, go-redis) parse the cursor as an unsigned integer, so the cursor
 * handed out is a number naming K in a table (the most recent MAX_CURSORS, within
 * MAX_CURSOR_BYTES of keys). A cursor that is unknown (pushed out, or from before a restart)
 * restarts the scan from the first key: that may return keys twice, which SCAN allows, but
 * never skips one.
 */
#include "server.h"

#include "cluster/fsm.h"
#include "common/alloc.h"
#include "raftcask.h"
#include "resp/glob.h"
#include "resp/number.h"

#include <string.h>

/* Other clients' scans push a cursor out only after 16384 newer ones (a review's 1100
 * SCAN 0 between two steps of one iteration, at 1024, restarted it for good), or 8 MiB of
 * newer cursors' keys. */
#define MAX_CURSORS      16384
#define MAX_CURSOR_BYTES (8u << 20)

static struct rc_store *store_of(struct client *c)
{
    return c->srv->store;
}

/* ============================== deleting and existence ============================== */

static void cmd_del(struct client *c, size_t argc, const struct resp_arg *a)
{
    submit_renamed(c, "DEL", argc, a);
}

static void cmd_exists(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t n = 0;
    for (size_t i = 1; i < argc; i++)
        n += read_key(c, &a[i], NULL, NULL) == 0;
    resp_add_int(&c->out, n);
}

static void cmd_type(struct client *c, size_t argc, const struct resp_arg *a)
{
    int rc = read_key(c, &a[1], NULL, NULL);
    resp_add_status(&c->out, rc == 0 ? "string" : "none");
}

static void cmd_dbsize(struct client *c, size_t argc, const struct resp_arg *a)
{
    resp_add_int(&c->out, (int64_t)rc_store_count(store_of(c)));
}

static int take_key(const void *key, size_t klen, const void *value, size_t vlen,
                    const struct rc_item_meta *meta, void *ctx)
{
    struct rc_buf *b = ctx;
    if (meta->expiry_ms && meta->expiry_ms <= server_now_ms())
        return 0; /* expired: try another */
    char *d = rc_realloc(b->data, klen + 1);
    if (!d)
        return RC_ENOMEM;
    b->data = d;
    memcpy(d, key, klen);
    b->len = klen;
    b->cap = klen + 1;
    return 1;
}

static void cmd_randomkey(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct rc_buf k = {0};
    for (int tries = 0; tries < 100; tries++) {
        int rc = rc_store_sample(store_of(c), server_random(c->srv), take_key, &k);
        if (rc == 1) {
            resp_add_bulk(&c->out, k.data, k.len);
            rc_free(k.data);
            return;
        }
        if (rc != 0)
            break; /* empty store (or out of memory) */
    }
    rc_free(k.data);
    resp_add_null(&c->out);
}

static void cmd_flushall(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (argc > 2 || (argc == 2 && !arg_is(&a[1], "ASYNC") && !arg_is(&a[1], "SYNC")))
        return submit_error(c, "ERR syntax error");
    struct resp_arg out[1] = {{"FLUSHALL", 8}};
    submit_write(c, 1, out);
}

/* ============================== expiry ============================== */

/* EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT k time [NX|XX|GT|LT ...] → PEXPIREAT k abs [flags] */
static void expire_generic(struct client *c, size_t argc, const struct resp_arg *a, bool seconds,
                           bool relative, const char *name)
{
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < argc; i++) {
        if (arg_is(&a[i], "NX"))
            nx = true;
        else if (arg_is(&a[i], "XX"))
            xx = true;
        else if (arg_is(&a[i], "GT"))
            gt = true;
        else if (arg_is(&a[i], "LT"))
            lt = true;
        else {
            /* Redis echoes the whole option, however long. */
            char *msg = rc_malloc(a[i].len + 32);
            if (!msg)
                return submit_error(c, "ERR out of memory");
            snprintf(msg, a[i].len + 32, "ERR Unsupported option %.*s", (int)a[i].len, a[i].ptr);
            submit_error(c, msg);
            rc_free(msg);
            return;
        }
    }
    if (nx && (xx || gt || lt))
        return submit_error(c, "ERR NX and XX, GT or LT options at the same time are not "
                               "compatible");
    if (gt && lt)
        return submit_error(c, "ERR GT and LT options at the same time are not compatible");
    int64_t when;
    if (!expire_arg_to_abs(c, &a[2], seconds, relative, name, &when))
        return;
    char buf[24];
    struct resp_arg out[8] = {{"PEXPIREAT", 9}, a[1], abs_ms_arg(buf, when)};
    size_t n = 3;
    if (nx)
        out[n++] = (struct resp_arg){"NX", 2};
    if (xx)
        out[n++] = (struct resp_arg){"XX", 2};
    if (gt)
        out[n++] = (struct resp_arg){"GT", 2};
    if (lt)
        out[n++] = (struct resp_arg){"LT", 2};
    submit_write(c, n, out);
}

static void cmd_expire(struct client *c, size_t argc, const struct resp_arg *a)
{
    expire_generic(c, argc, a, true, true, "expire");
}

static void cmd_pexpire(struct client *c, size_t argc, const struct resp_arg *a)
{
    expire_generic(c, argc, a, false, true, "pexpire");
}

static void cmd_expireat(struct client *c, size_t argc, const struct resp_arg *a)
{
    expire_generic(c, argc, a, true, false, "expireat");
}

static void cmd_pexpireat(struct client *c, size_t argc, const struct resp_arg *a)
{
    expire_generic(c, argc, a, false, false, "pexpireat");
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 absent, -1 no expiry. */
static void ttl_generic(struct client *c, const struct resp_arg *key, bool ms, bool absolute)
{
    struct rc_item_meta m;
    if (read_key(c, key, NULL, &m) != 0) {
        resp_add_int(&c->out, -2);
        return;
    }
    if (m.expiry_ms == 0) {
        resp_add_int(&c->out, -1);
        return;
    }
    if (absolute) {
        resp_add_int(&c->out, ms ? m.expiry_ms : m.expiry_ms / 1000);
        return;
    }
    int64_t left = m.expiry_ms - server_now_ms();
    if (left < 0)
        left = 0;
    resp_add_int(&c->out, ms ? left : (left + 500) / 1000);
}

static void cmd_ttl(struct client *c, size_t argc, const struct resp_arg *a)
{
    ttl_generic(c, &a[1], false, false);
}

static void cmd_pttl(struct client *c, size_t argc, const struct resp_arg *a)
{
    ttl_generic(c, &a[1], true, false);
}

static void cmd_expiretime(struct client *c, size_t argc, const struct resp_arg *a)
{
    ttl_generic(c, &a[1], false, true);
}

static void cmd_pexpiretime(struct client *c, size_t argc, const struct resp_arg *a)
{
    ttl_generic(c, &a[1], true, true);
}

static void cmd_as_is(struct client *c, size_t argc, const struct resp_arg *a)
{
    /* PERSIST, RENAME, RENAMENX: the client's command is already normalised. */
    char upper[16];
    size_t n = a[0].len < sizeof upper ? a[0].len : sizeof upper - 1;
    for (size_t i = 0; i < n; i++)
        upper[i] =
            (char)(a[0].ptr[i] >= 'a' && a[0].ptr[i] <= 'z' ? a[0].ptr[i] - 32 : a[0].ptr[i]);
    upper[n] = '\0';
    submit_renamed(c, upper, argc, a);
}

/* COPY src dst [DB n] [REPLACE] → COPY src dst [REPLACE] (one database: n must be 0) */
static void cmd_copy(struct client *c, size_t argc, const struct resp_arg *a)
{
    bool replace = false;
    for (size_t i = 3; i < argc; i++) {
        int64_t db;
        if (arg_is(&a[i], "REPLACE")) {
            replace = true;
        } else if (arg_is(&a[i], "DB") && i + 1 < argc) {
            if (!arg_to_i64(&a[++i], &db))
                return submit_error(c, "ERR value is not an integer or out of range");
            if (db != 0)
                return submit_error(c, "ERR DB index is out of range");
        } else {
            return submit_error(c, "ERR syntax error");
        }
    }
    struct resp_arg out[4] = {{"COPY", 4}, a[1], a[2], {"REPLACE", 7}};
    submit_write(c, replace ? 4 : 3, out);
}

/* ============================== SCAN ============================== */

struct scan_cursor {
    uint64_t id;
    char *key;
    size_t len;
};

void scan_cursors_free(struct server *s)
{
    if (s->cursors)
        for (size_t i = 0; i < MAX_CURSORS; i++)
            rc_free(s->cursors[i].key);
    rc_free(s->cursors);
    s->cursors = NULL;
    s->cursor_bytes = 0;
}

/* Ids are consecutive, so cursor id lives in slot id % MAX_CURSORS until MAX_CURSORS newer
 * ones were made, or the key bytes of newer ones pushed it out. */
static const struct scan_cursor *find_cursor(struct server *s, uint64_t id)
{
    const struct scan_cursor *cur = s->cursors ? &s->cursors[id % MAX_CURSORS] : NULL;
    return cur && cur->key && cur->id == id ? cur : NULL;
}

static void drop_cursor(struct server *s, struct scan_cursor *cur)
{
    s->cursor_bytes -= cur->len;
    rc_free(cur->key);
    *cur = (struct scan_cursor){0};
}

/* Remembers key as a new cursor; returns its id (0 if memory ran out: the scan restarts). */
static uint64_t new_cursor(struct server *s, const char *key, size_t len)
{
    if (!s->cursors) {
        s->cursors = rc_calloc(MAX_CURSORS, sizeof *s->cursors);
        if (!s->cursors)
            return 0;
    }
    char *copy = rc_memdup(key, len);
    if (!copy)
        return 0;
    /* Ids grow and start at a random point so a cursor from before a restart is unknown. */
    if (s->next_cursor == 0)
        s->next_cursor = (server_random(s) >> 16) | 1;
    uint64_t id = s->next_cursor++;
    struct scan_cursor *cur = &s->cursors[id % MAX_CURSORS];
    if (cur->key)
        drop_cursor(s, cur); /* the oldest */
    *cur = (struct scan_cursor){id, copy, len};
    s->cursor_bytes += len;
    /* Within the byte budget too, oldest first (long keys); below cursor_oldest every slot
     * was dropped already, so each id is stepped over once. */
    if (s->cursor_oldest + MAX_CURSORS <= id)
        s->cursor_oldest = id - (MAX_CURSORS - 1);
    for (; s->cursor_bytes > MAX_CURSOR_BYTES && s->cursor_oldest < id; s->cursor_oldest++) {
        struct scan_cursor *o = &s->cursors[s->cursor_oldest % MAX_CURSORS];
        if (o->key && o->id == s->cursor_oldest)
            drop_cursor(s, o);
    }
    return id;
}

struct scan_state {
    struct resp_buf keys;
    size_t matched, examined, count;
    const struct resp_arg *pattern;
    bool want_strings;
    const char *last;
    size_t last_len;
    char *last_copy;
};

static int scan_visit(const void *key, size_t klen, const void *value, size_t vlen,
                      const struct rc_item_meta *meta, void *ctx)
{
    struct scan_state *st = ctx;
    st->examined++;
    if (st->want_strings &&
        (!st->pattern || resp_glob_matches_all(st->pattern->ptr, st->pattern->len) ||
         resp_glob_match(st->pattern->ptr, st->pattern->len, key, klen, 0))) {
        if (resp_add_bulk(&st->keys, key, klen) != 0)
            return RC_ENOMEM;
        st->matched++;
    }
    if (st->examined == st->count) {
        st->last_copy = rc_memdup(key, klen);
        if (!st->last_copy)
            return RC_ENOMEM;
        st->last_len = klen;
        return 1;
    }
    return 0;
}

static void cmd_scan(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t cursor_num;
    if (a[1].len == 0 || a[1].len > 20 || a[1].ptr[0] == '-' || !arg_to_i64(&a[1], &cursor_num))
        return reply_error(c, "ERR invalid cursor");
    struct scan_state st = {.count = 10, .want_strings = true};
    for (size_t i = 2; i < argc; i++) {
        int64_t n;
        if (arg_is(&a[i], "MATCH") && i + 1 < argc) {
            st.pattern = &a[++i];
        } else if (arg_is(&a[i], "COUNT") && i + 1 < argc) {
            if (!arg_to_i64(&a[++i], &n))
                return reply_not_integer(c);
            if (n < 1)
                return reply_syntax_error(c);
            st.count = (size_t)n;
        } else if (arg_is(&a[i], "TYPE") && i + 1 < argc) {
            st.want_strings = arg_is(&a[++i], "string");
        } else {
            return reply_syntax_error(c);
        }
    }
    struct rc_store_range r = {0};
    const struct scan_cursor *cur = cursor_num ? find_cursor(c->srv, (uint64_t)cursor_num) : NULL;
    if (cur)
        r.lo = (struct kd_bound){KD_BOUND_EXCLUSIVE, cur->key, cur->len};
    resp_buf_init(&st.keys);
    st.keys.limit = c->out.limit;
    int rc = rc_store_scan(store_of(c), &r, scan_visit, &st);
    if (st.keys.over) { /* past the client's output limit: dropped, as for any reply */
        resp_buf_free(&st.keys);
        rc_free(st.last_copy);
        c->out.over = 1;
        return;
    }
    if (rc < 0) {
        resp_buf_free(&st.keys);
        rc_free(st.last_copy);
        return reply_error(c, "ERR out of memory");
    }
    uint64_t next = st.last_copy ? new_cursor(c->srv, st.last_copy, st.last_len) : 0;
    rc_free(st.last_copy);
    char num[24];
    resp_add_array(&c->out, 2);
    resp_add_bulk(&c->out, num, resp_ll2str(num, (int64_t)next));
    resp_add_array(&c->out, st.matched);
    resp_buf_append(&c->out, st.keys.data, st.keys.len);
    resp_buf_free(&st.keys);
}

/* ============================== KEYS and RANGE ============================== */

struct listing {
    struct resp_buf items;
    size_t count, limit;
    const struct resp_arg *pattern;
    bool with_values;
};

static int list_visit(const void *key, size_t klen, const void *value, size_t vlen,
                      const struct rc_item_meta *meta, void *ctx)
{
    struct listing *l = ctx;
    if (l->pattern && !resp_glob_matches_all(l->pattern->ptr, l->pattern->len) &&
        !resp_glob_match(l->pattern->ptr, l->pattern->len, key, klen, 0))
        return 0;
    if (resp_add_bulk(&l->items, key, klen) != 0 ||
        (l->with_values && resp_add_bulk(&l->items, value, vlen) != 0))
        return RC_ENOMEM;
    l->count++;
    return l->limit && l->count == l->limit ? 1 : 0;
}

static void reply_listing(struct client *c, struct listing *l, int rc)
{
    if (l->items.over) { /* past the client's output limit: dropped, as for any reply */
        resp_buf_free(&l->items);
        c->out.over = 1;
        return;
    }
    if (rc < 0) {
        resp_buf_free(&l->items);
        return reply_errorf(c, "ERR %s", rc_strerror(rc));
    }
    resp_add_array(&c->out, l->with_values ? l->count * 2 : l->count);
    resp_buf_append(&c->out, l->items.data, l->items.len);
    resp_buf_free(&l->items);
}

static int compare_keys(const char *a, size_t al, const char *b, size_t bl)
{
    size_t m = al < bl ? al : bl;
    int r = m ? memcmp(a, b, m) : 0;
    return r ? r : (al < bl ? -1 : al > bl);
}

/* KEYS pattern [PIVOT key] [LIMIT n] [DESC] [WITHVALUES] */
static void cmd_keys(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct listing l = {.pattern = &a[1]};
    const struct resp_arg *pivot = NULL;
    bool desc = false;
    for (size_t i = 2; i < argc; i++) {
        int64_t n;
        if (arg_is(&a[i], "PIVOT") && i + 1 < argc) {
            pivot = &a[++i];
        } else if (arg_is(&a[i], "LIMIT") && i + 1 < argc) {
            if (!arg_to_i64(&a[++i], &n) || n < 0)
                return reply_not_integer(c);
            l.limit = (size_t)n;
        } else if (arg_is(&a[i], "DESC")) {
            desc = true;
        } else if (arg_is(&a[i], "WITHVALUES")) {
            l.with_values = true;
        } else {
            return reply_syntax_error(c);
        }
    }
    /* Only keys starting with the pattern's literal prefix can match: scan just those. */
    size_t plen = resp_glob_literal_prefix(a[1].ptr, a[1].len);
    struct rc_store_range r = {.reverse = desc, .with_values = l.with_values};
    unsigned char *succ = rc_malloc(plen ? plen : 1);
    if (!succ)
        return reply_error(c, "ERR out of memory");
    rc_store_range_prefix(&r, a[1].ptr, plen, succ);
    if (pivot) { /* the pivot is exclusive, and only narrows the range */
        struct kd_bound *b = desc ? &r.hi : &r.lo;
        bool tighter = b->kind == KD_BOUND_OPEN ||
                       (desc ? compare_keys(pivot->ptr, pivot->len, b->key, b->len) <= 0
                             : compare_keys(pivot->ptr, pivot->len, b->key, b->len) >= 0);
        if (tighter)
            *b = (struct kd_bound){KD_BOUND_EXCLUSIVE, pivot->ptr, pivot->len};
    }
    resp_buf_init(&l.items);
    l.items.limit = c->out.limit;
    int rc = rc_store_scan(store_of(c), &r, list_visit, &l);
    rc_free(succ);
    reply_listing(c, &l, rc);
}

/* RANGE min max [LIMIT n] [WITHVALUES] [REV] */
static void cmd_range(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct rc_store_range r = {0};
    int lo = fsm_parse_lex_bound(&a[1], true, &r.lo), hi = fsm_parse_lex_bound(&a[2], false, &r.hi);
    if (lo < 0 || hi < 0)
        return reply_error(c, "ERR min or max not valid string range item");
    struct listing l = {0};
    for (size_t i = 3; i < argc; i++) {
        int64_t n;
        if (arg_is(&a[i], "LIMIT") && i + 1 < argc) {
            if (!arg_to_i64(&a[++i], &n) || n < 0)
                return reply_not_integer(c);
            l.limit = (size_t)n;
        } else if (arg_is(&a[i], "WITHVALUES")) {
            l.with_values = true;
        } else if (arg_is(&a[i], "REV")) {
            r.reverse = true;
        } else {
            return reply_syntax_error(c);
        }
    }
    r.with_values = l.with_values;
    resp_buf_init(&l.items);
    l.items.limit = c->out.limit;
    int rc = lo == 0 && hi == 0 ? rc_store_scan(store_of(c), &r, list_visit, &l) : 0;
    reply_listing(c, &l, rc);
}

/* PDEL runs on every node, and matching costs up to the pattern's length times the key's
 * for each key: three 60 KB keys and a 20 KB pattern held a cluster 13.7 s. What follows the
 * literal prefix (which only narrows the keys visited) is kept short. */
#define PDEL_GLOB_MAX 256

static void cmd_pdel(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (a[1].len - resp_glob_literal_prefix(a[1].ptr, a[1].len) > PDEL_GLOB_MAX)
        return submit_error(c, "ERR PDEL pattern too long: at most 256 bytes after its "
                               "literal prefix");
    struct resp_arg out[2] = {{"PDEL", 4}, a[1]};
    submit_write(c, 2, out);
}

static void cmd_delrange(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct kd_bound b;
    if (fsm_parse_lex_bound(&a[1], true, &b) < 0 || fsm_parse_lex_bound(&a[2], false, &b) < 0)
        return submit_error(c, "ERR min or max not valid string range item");
    struct resp_arg out[3] = {{"DELRANGE", 8}, a[1], a[2]};
    submit_write(c, 3, out);
}

/* ============================== the table ============================== */

#define R CMD_READONLY
#define W CMD_WRITE
#define F CMD_FAST

static const struct command rows[] = {
    {"del", -2, W, 1, -1, 1, cmd_del, "keyspace", "1.0.0", "key [key ...]",
     "Deletes keys; returns how many existed."},
    {"unlink", -2, W | F, 1, -1, 1, cmd_del, "keyspace", "4.0.0", "key [key ...]",
     "Deletes keys (as DEL: the store reclaims space in the background anyway)."},
    {"delete", -2, W, 1, -1, 1, cmd_del, "keyspace", "raftcask", "key [key ...]",
     "Alias of DEL (Redraft)."},
    {"exists", -2, R | F, 1, -1, 1, cmd_exists, "keyspace", "3.0.3", "key [key ...]",
     "Counts how many of the keys exist."},
    {"type", 2, R | F, 1, 1, 1, cmd_type, "keyspace", "1.0.0", "key",
     "Returns the type of a key: string, or none."},
    {"expire", -3, W | F, 1, 1, 1, cmd_expire, "keyspace", "1.0.0", "key seconds [NX|XX|GT|LT]",
     "Sets a key's time to live in seconds."},
    {"pexpire", -3, W | F, 1, 1, 1, cmd_pexpire, "keyspace", "2.6.0",
     "key milliseconds [NX|XX|GT|LT]", "Sets a key's time to live in milliseconds."},
    {"expireat", -3, W | F, 1, 1, 1, cmd_expireat, "keyspace", "1.2.0",
     "key unix-seconds [NX|XX|GT|LT]", "Sets a key's expiry as a Unix time in seconds."},
    {"pexpireat", -3, W | F, 1, 1, 1, cmd_pexpireat, "keyspace", "2.6.0",
     "key unix-ms [NX|XX|GT|LT]", "Sets a key's expiry as a Unix time in milliseconds."},
    {"ttl", 2, R | F, 1, 1, 1, cmd_ttl, "keyspace", "1.0.0", "key",
     "Returns a key's time to live in seconds (-1 none, -2 no key)."},
    {"pttl", 2, R | F, 1, 1, 1, cmd_pttl, "keyspace", "2.6.0", "key",
     "Returns a key's time to live in milliseconds."},
    {"expiretime", 2, R | F, 1, 1, 1, cmd_expiretime, "keyspace", "7.0.0", "key",
     "Returns a key's expiry as a Unix time in seconds."},
    {"pexpiretime", 2, R | F, 1, 1, 1, cmd_pexpiretime, "keyspace", "7.0.0", "key",
     "Returns a key's expiry as a Unix time in milliseconds."},
    {"persist", 2, W | F, 1, 1, 1, cmd_as_is, "keyspace", "2.2.0", "key",
     "Removes a key's expiry."},
    {"rename", 3, W, 1, 2, 1, cmd_as_is, "keyspace", "1.0.0", "key newkey", "Renames a key."},
    {"renamenx", 3, W | F, 1, 2, 1, cmd_as_is, "keyspace", "1.0.0", "key newkey",
     "Renames a key only if the new name does not exist."},
    {"copy", -3, W, 1, 2, 1, cmd_copy, "keyspace", "6.2.0", "source destination [DB 0] [REPLACE]",
     "Copies a value to another key."},
    {"dbsize", 1, R | F, 0, 0, 0, cmd_dbsize, "keyspace", "1.0.0", "",
     "Returns the number of keys (expired ones not yet reclaimed included, as Redis)."},
    {"randomkey", 1, R, 0, 0, 0, cmd_randomkey, "keyspace", "1.0.0", "", "Returns a random key."},
    {"flushdb", -1, W, 0, 0, 0, cmd_flushall, "keyspace", "1.0.0", "[ASYNC|SYNC]",
     "Deletes every key."},
    {"flushall", -1, W, 0, 0, 0, cmd_flushall, "keyspace", "1.0.0", "[ASYNC|SYNC]",
     "Deletes every key."},
    {"scan", -2, R, 0, 0, 0, cmd_scan, "keyspace", "2.8.0",
     "cursor [MATCH pattern] [COUNT count] [TYPE type]",
     "Iterates over the keys in key order; the cursor names a position."},
    {"keys", -2, R, 0, 0, 0, cmd_keys, "keyspace", "1.0.0",
     "pattern [PIVOT key] [LIMIT n] [DESC] [WITHVALUES]",
     "Returns the keys matching a glob pattern, in key order, with paging."},
    {"range", -3, R, 0, 0, 0, cmd_range, "raftcask", "raftcask",
     "min max [LIMIT n] [WITHVALUES] [REV]",
     "Returns the keys between two ZRANGEBYLEX-style bounds, in key order."},
    {"pdel", 2, W, 0, 0, 0, cmd_pdel, "raftcask", "raftcask", "pattern",
     "Deletes every key matching a glob pattern (at most 256 bytes after its literal prefix); "
     "returns how many."},
    {"delrange", 3, W, 0, 0, 0, cmd_delrange, "raftcask", "raftcask", "min max",
     "Deletes the keys between two bounds; returns them."},
};

const struct command_table keyspace_commands = {rows, sizeof rows / sizeof *rows};

/*
 * cmd_strings.c — the string commands: reads answered from the store, writes validated
 * and normalised into the write path's language (cluster/fsm.h).
 *
 * Validation follows Redis 7.0's order and wording, so that clients and the differential
 * test see the same errors: syntax is checked before numbers, numbers before ranges.
 */
#include "server.h"

#include "raftcask.h"
#include "resp/number.h"

#include <inttypes.h>
#include <string.h>

/* ============================== reads ============================== */

static void cmd_get(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct rc_buf *v = &c->srv->scratch;
    int rc = read_key(c, &a[1], v, NULL);
    if (rc == 0)
        resp_add_bulk(&c->out, v->data, v->len);
    else if (rc == RC_ENOTFOUND)
        resp_add_null(&c->out);
    else
        reply_errorf(c, "ERR %s", rc_strerror(rc));
}

static void cmd_mget(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct rc_buf *v = &c->srv->scratch;
    size_t mark = c->out.len; /* nothing is sent while a handler runs */
    resp_add_array(&c->out, argc - 1);
    for (size_t i = 1; i < argc && !c->out.over; i++) {
        int rc = read_key(c, &a[i], v, NULL);
        if (rc == 0) {
            resp_add_bulk(&c->out, v->data, v->len);
        } else if (rc == RC_ENOTFOUND) {
            resp_add_null(&c->out);
        } else { /* a record that fails its CRC is an error, not a missing key */
            c->out.len = mark;
            reply_errorf(c, "ERR %s", rc_strerror(rc));
            return;
        }
    }
}

static void cmd_strlen(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct rc_item_meta m;
    int rc = read_key(c, &a[1], NULL, &m);
    resp_add_int(&c->out, rc == 0 ? m.value_len : 0);
}

static void cmd_getrange(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t start, end;
    if (!arg_to_i64(&a[2], &start) || !arg_to_i64(&a[3], &end))
        return reply_not_integer(c);
    struct rc_buf *v = &c->srv->scratch;
    int rc = read_key(c, &a[1], v, NULL);
    if (rc != 0 && rc != RC_ENOTFOUND) { /* a record that fails its CRC */
        reply_errorf(c, "ERR %s", rc_strerror(rc));
        return;
    }
    int64_t len = rc == 0 ? (int64_t)v->len : 0;
    if (start < 0 && end < 0 && start > end) {
        resp_add_bulk(&c->out, "", 0);
        return;
    }
    if (start < 0)
        start = len + start;
    if (end < 0)
        end = len + end;
    if (start < 0)
        start = 0;
    if (end < 0)
        end = 0;
    if (end >= len)
        end = len - 1;
    if (start > end || len == 0)
        resp_add_bulk(&c->out, "", 0);
    else
        resp_add_bulk(&c->out, v->data + start, (size_t)(end - start + 1));
}

/* ============================== SET and friends ============================== */

/* SET k v [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] → SET k v [NX|XX] [GET]
 * [PXAT abs|KEEPTTL] */
static void cmd_set(struct client *c, size_t argc, const struct resp_arg *a)
{
    bool nx = false, xx = false, get = false, keepttl = false;
    const struct resp_arg *expire = NULL;
    const char *unit = NULL; /* the expire option given: repeating it is allowed, as Redis */
    for (size_t i = 3; i < argc; i++) {
        bool has_next = i + 1 < argc;
        const char *opt = arg_is(&a[i], "EX")     ? "EX"
                          : arg_is(&a[i], "PX")   ? "PX"
                          : arg_is(&a[i], "EXAT") ? "EXAT"
                          : arg_is(&a[i], "PXAT") ? "PXAT"
                                                  : NULL;
        if (arg_is(&a[i], "NX") && !xx)
            nx = true;
        else if (arg_is(&a[i], "XX") && !nx)
            xx = true;
        else if (arg_is(&a[i], "GET"))
            get = true;
        else if (arg_is(&a[i], "KEEPTTL") && !expire)
            keepttl = true;
        else if (opt && !keepttl && (!unit || unit == opt) && has_next) {
            unit = opt;
            expire = &a[++i];
        } else
            return submit_error(c, "ERR syntax error");
    }
    bool seconds = unit && unit[0] == 'E', relative = unit && strlen(unit) == 2;
    struct resp_arg out[8] = {{"SET", 3}, a[1], a[2]};
    size_t n = 3;
    char when[24];
    if (expire) {
        int64_t v, abs_ms;
        if (!arg_to_i64(expire, &v))
            return submit_error(c, "ERR value is not an integer or out of range");
        if (v <= 0)
            return submit_error(c, "ERR invalid expire time in 'set' command");
        if (!expire_arg_to_abs(c, expire, seconds, relative, "set", &abs_ms))
            return;
        out[n++] = (struct resp_arg){"PXAT", 4};
        out[n++] = abs_ms_arg(when, abs_ms);
    }
    if (nx)
        out[n++] = (struct resp_arg){"NX", 2};
    if (xx)
        out[n++] = (struct resp_arg){"XX", 2};
    if (get)
        out[n++] = (struct resp_arg){"GET", 3};
    if (keepttl)
        out[n++] = (struct resp_arg){"KEEPTTL", 7};
    submit_write(c, n, out);
}

static void cmd_setnx(struct client *c, size_t argc, const struct resp_arg *a)
{
    submit_write(c, argc, a);
}

/* SETEX k seconds v and PSETEX k ms v → SET k v PXAT abs */
static void setex_generic(struct client *c, const struct resp_arg *a, bool seconds,
                          const char *name)
{
    int64_t v, abs_ms;
    if (!arg_to_i64(&a[2], &v))
        return submit_error(c, "ERR value is not an integer or out of range");
    if (v <= 0) {
        char msg[80];
        snprintf(msg, sizeof msg, "ERR invalid expire time in '%s' command", name);
        return submit_error(c, msg);
    }
    if (!expire_arg_to_abs(c, &a[2], seconds, true, name, &abs_ms))
        return;
    char when[24];
    struct resp_arg out[5] = {{"SET", 3}, a[1], a[3], {"PXAT", 4}, abs_ms_arg(when, abs_ms)};
    submit_write(c, 5, out);
}

static void cmd_setex(struct client *c, size_t argc, const struct resp_arg *a)
{
    setex_generic(c, a, true, "setex");
}

static void cmd_psetex(struct client *c, size_t argc, const struct resp_arg *a)
{
    setex_generic(c, a, false, "psetex");
}

static void cmd_getset(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct resp_arg out[4] = {{"SET", 3}, a[1], a[2], {"GET", 3}};
    submit_write(c, 4, out);
}

static void cmd_getdel(struct client *c, size_t argc, const struct resp_arg *a)
{
    submit_write(c, argc, a);
}

/* GETEX k [EX s|PX ms|EXAT s|PXAT ms|PERSIST]: a plain read without options. */
static void cmd_getex(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (argc == 2) {
        if (c->pending_writes) /* keep order behind this client's writes */
            return submit_write(c, argc, a);
        /* A read, routed as GET: the read mode applies (a linearizable one waits for its
         * ReadIndex round, which then runs GET). */
        struct resp_arg get[2] = {{"GET", 3}, a[1]};
        if (cluster_route_command(c, command_lookup("GET", 3), 2, get))
            return;
        return cmd_get(c, 2, get);
    }
    char when[24];
    if (argc == 3 && arg_is(&a[2], "PERSIST")) {
        struct resp_arg out[3] = {{"GETEX", 5}, a[1], {"PERSIST", 7}};
        return submit_write(c, 3, out);
    }
    bool ex = arg_is(&a[2], "EX"), px = arg_is(&a[2], "PX"), exat = arg_is(&a[2], "EXAT"),
         pxat = arg_is(&a[2], "PXAT");
    if (argc != 4 || !(ex || px || exat || pxat))
        return submit_error(c, "ERR syntax error");
    /* Redis looks the key up before it checks the time: a missing key answers nil even
     * with a bad time. So a bad time travels to apply as ERROR msg, judged there. */
    int64_t v, abs_ms = 0;
    const char *err = NULL;
    if (!arg_to_i64(&a[3], &v))
        err = "ERR value is not an integer or out of range";
    else if (v <= 0 || (ex || exat ? v > INT64_MAX / 1000 : false))
        err = "ERR invalid expire time in 'getex' command";
    else {
        abs_ms = (ex || exat) ? v * 1000 : v;
        if (ex || px) {
            int64_t now = server_now_ms();
            if (abs_ms > INT64_MAX - now)
                err = "ERR invalid expire time in 'getex' command";
            else
                abs_ms += now;
        }
    }
    struct resp_arg out[4] = {{"GETEX", 5}, a[1], {"PXAT", 4}, abs_ms_arg(when, abs_ms)};
    if (err) {
        out[2] = (struct resp_arg){"ERROR", 5};
        out[3] = (struct resp_arg){err, strlen(err)};
    }
    submit_write(c, 4, out);
}

static void cmd_mset(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (argc % 2 == 0) {
        char msg[80];
        snprintf(msg, sizeof msg, "ERR wrong number of arguments for '%s' command",
                 a[0].len == 6 ? "msetnx" : "mset");
        return submit_error(c, msg);
    }
    submit_renamed(c, a[0].len == 6 ? "MSETNX" : "MSET", argc, a);
}

/* ============================== counters ============================== */

static void incr_by(struct client *c, const struct resp_arg *key, int64_t by)
{
    char num[24];
    struct resp_arg out[3] = {{"INCRBY", 6}, *key, {num, resp_ll2str(num, by)}};
    submit_write(c, 3, out);
}

static void cmd_incr(struct client *c, size_t argc, const struct resp_arg *a)
{
    incr_by(c, &a[1], 1);
}

static void cmd_decr(struct client *c, size_t argc, const struct resp_arg *a)
{
    incr_by(c, &a[1], -1);
}

static void cmd_incrby(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t by;
    if (!arg_to_i64(&a[2], &by))
        return submit_error(c, "ERR value is not an integer or out of range");
    incr_by(c, &a[1], by);
}

static void cmd_decrby(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t by;
    if (!arg_to_i64(&a[2], &by))
        return submit_error(c, "ERR value is not an integer or out of range");
    if (by == INT64_MIN)
        return submit_error(c, "ERR decrement would overflow");
    incr_by(c, &a[1], -by);
}

static void cmd_incrbyfloat(struct client *c, size_t argc, const struct resp_arg *a)
{
    long double by;
    if (resp_string2ld(a[2].ptr, a[2].len, &by) != 0)
        return submit_error(c, "ERR value is not a valid float");
    struct resp_arg out[3] = {{"INCRBYFLOAT", 11}, a[1], a[2]};
    submit_write(c, 3, out);
}

#define CLUSTER_VALUE_TOO_LONG "ERR string exceeds maximum allowed size (4 MiB in a cluster)"

/* In a cluster: whether APPEND of `n` bytes (append) or SETRANGE ending at `n` makes the
 * value at key longer than max. A value already longer (written while the node was alone)
 * is not rewritten on every node either: a 1-byte SETRANGE on a 200 MB one cost the leader
 * its leadership. Judged on the proposer, before anything is proposed. */
static bool cluster_value_too_long(struct client *c, const struct resp_arg *key, uint64_t n,
                                   bool append, uint64_t max)
{
    if (max >= c->srv->cfg->proto_max_bulk_len)
        return false; /* alone: the entry's own checks apply */
    struct rc_item_meta m;
    uint64_t len = rc_store_get(c->srv->store, key->ptr, key->len, NULL, &m) == 0 ? m.value_len : 0;
    return (append ? len + n : len > n ? len : n) > max;
}

/* The entry carries the proposer's limit (writepath_value_max): replicas judge the result by
 * it, not by their own settings. */
static void cmd_append(struct client *c, size_t argc, const struct resp_arg *a)
{
    uint64_t max = writepath_value_max(c->srv);
    if (cluster_value_too_long(c, &a[1], a[2].len, true, max))
        return submit_error(c, CLUSTER_VALUE_TOO_LONG);
    char limit[24];
    int n = snprintf(limit, sizeof limit, "%" PRIu64, max);
    struct resp_arg out[4] = {a[0], a[1], a[2], {limit, (size_t)n}};
    submit_write(c, 4, out);
}

static void cmd_setrange(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t off;
    if (!arg_to_i64(&a[2], &off))
        return submit_error(c, "ERR value is not an integer or out of range");
    if (off < 0)
        return submit_error(c, "ERR offset is out of range");
    uint64_t max = writepath_value_max(c->srv);
    if (a[3].len > 0 && cluster_value_too_long(c, &a[1], (uint64_t)off + a[3].len, false, max))
        return submit_error(c, CLUSTER_VALUE_TOO_LONG);
    if (a[3].len > 0 && (uint64_t)off + a[3].len > max)
        return submit_error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    submit_write(c, argc, a);
}

/* ============================== the table ============================== */

#define R CMD_READONLY
#define W CMD_WRITE
#define F CMD_FAST

static const struct command rows[] = {
    {"get", 2, R | F, 1, 1, 1, cmd_get, "string", "1.0.0", "key", "Returns the value of a key."},
    {"set", -3, W, 1, 1, 1, cmd_set, "string", "1.0.0",
     "key value [NX|XX] [GET] [EX seconds|PX ms|EXAT unix-s|PXAT unix-ms|KEEPTTL]",
     "Sets the value of a key, optionally only if it (does not) exist, with an expiry."},
    {"setnx", 3, W | F, 1, 1, 1, cmd_setnx, "string", "1.0.0", "key value",
     "Sets a key only if it does not exist."},
    {"setex", 4, W, 1, 1, 1, cmd_setex, "string", "2.0.0", "key seconds value",
     "Sets a key with an expiry in seconds."},
    {"psetex", 4, W, 1, 1, 1, cmd_psetex, "string", "2.6.0", "key milliseconds value",
     "Sets a key with an expiry in milliseconds."},
    {"getset", 3, W | F, 1, 1, 1, cmd_getset, "string", "1.0.0", "key value",
     "Sets a key and returns its previous value."},
    {"getdel", 2, W | F, 1, 1, 1, cmd_getdel, "string", "6.2.0", "key",
     "Returns the value of a key and deletes it."},
    {"getex", -2, W | F, 1, 1, 1, cmd_getex, "string", "6.2.0",
     "key [EX seconds|PX ms|EXAT unix-s|PXAT unix-ms|PERSIST]",
     "Returns the value of a key and optionally changes its expiry."},
    {"mget", -2, R | F, 1, -1, 1, cmd_mget, "string", "1.0.0", "key [key ...]",
     "Returns the values of several keys."},
    {"mset", -3, W, 1, -1, 2, cmd_mset, "string", "1.0.1", "key value [key value ...]",
     "Sets several keys."},
    {"msetnx", -3, W, 1, -1, 2, cmd_mset, "string", "1.0.1", "key value [key value ...]",
     "Sets several keys only if none of them exists."},
    {"incr", 2, W | F, 1, 1, 1, cmd_incr, "string", "1.0.0", "key",
     "Increments the integer value of a key by one."},
    {"decr", 2, W | F, 1, 1, 1, cmd_decr, "string", "1.0.0", "key",
     "Decrements the integer value of a key by one."},
    {"incrby", 3, W | F, 1, 1, 1, cmd_incrby, "string", "1.0.0", "key increment",
     "Increments the integer value of a key by a number."},
    {"decrby", 3, W | F, 1, 1, 1, cmd_decrby, "string", "1.0.0", "key decrement",
     "Decrements the integer value of a key by a number."},
    {"incrbyfloat", 3, W | F, 1, 1, 1, cmd_incrbyfloat, "string", "2.6.0", "key increment",
     "Increments the floating point value of a key by a number."},
    {"append", 3, W | F, 1, 1, 1, cmd_append, "string", "2.0.0", "key value",
     "Appends a string to the value of a key, creating it if needed."},
    {"strlen", 2, R | F, 1, 1, 1, cmd_strlen, "string", "2.2.0", "key",
     "Returns the length of a value."},
    {"getrange", 4, R, 1, 1, 1, cmd_getrange, "string", "2.4.0", "key start end",
     "Returns a substring of a value."},
    {"setrange", 4, W, 1, 1, 1, cmd_setrange, "string", "2.2.0", "key offset value",
     "Overwrites part of a value from an offset, padding with zero bytes."},
};

const struct command_table string_commands = {rows, sizeof rows / sizeof *rows};

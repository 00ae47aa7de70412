/* cmd_util.c — reply and argument helpers shared by the command files. */
#include "server.h"

#include "raftcask.h"
#include "resp/number.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void reply_error(struct client *c, const char *msg)
{
    resp_add_error(&c->out, msg, strlen(msg));
}

void reply_errorf(struct client *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_error(c, msg);
}

void reply_wrong_arity(struct client *c, const char *cmd)
{
    reply_errorf(c, "ERR wrong number of arguments for '%s' command", cmd);
}

void reply_syntax_error(struct client *c)
{
    reply_error(c, "ERR syntax error");
}

void reply_not_integer(struct client *c)
{
    reply_error(c, "ERR value is not an integer or out of range");
}

bool arg_to_i64(const struct resp_arg *a, int64_t *out)
{
    return resp_string2ll(a->ptr, a->len, out) == 0;
}

void submit_write(struct client *c, size_t argc, const struct resp_arg *argv)
{
    if (writepath_submit(c->srv, c, argc, argv) != 0)
        submit_error(c, "ERR out of memory");
}

void submit_renamed(struct client *c, const char *name, size_t argc, const struct resp_arg *argv)
{
    /* argv points into the client's parse state, which nothing reads while the entry
     * builder copies it, so argv[0] is swapped in place rather than copying the array. */
    struct resp_arg *args = (struct resp_arg *)argv;
    struct resp_arg saved = args[0];
    args[0] = (struct resp_arg){name, strlen(name)};
    submit_write(c, argc, args);
    args[0] = saved;
}

void submit_error(struct client *c, const char *msg)
{
    if (c->pending_writes == 0)
        reply_error(c, msg);
    else if (writepath_submit_error(c->srv, c, msg, strlen(msg)) != 0)
        reply_error(c, msg); /* out of memory: order is lost, the reply is not */
}

bool expire_arg_to_abs(struct client *c, const struct resp_arg *a, bool seconds, bool relative,
                       const char *cmd, int64_t *out)
{
    int64_t v;
    if (!arg_to_i64(a, &v)) {
        submit_error(c, "ERR value is not an integer or out of range");
        return false;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "ERR invalid expire time in '%s' command", cmd);
    if (seconds && (v > INT64_MAX / 1000 || v < INT64_MIN / 1000)) {
        submit_error(c, msg);
        return false;
    }
    if (seconds)
        v *= 1000;
    if (relative) {
        int64_t now = server_now_ms();
        if ((v > 0 && now > INT64_MAX - v) || (v < 0 && now < INT64_MIN - v)) {
            submit_error(c, msg);
            return false;
        }
        v += now;
    }
    *out = v;
    return true;
}

struct resp_arg abs_ms_arg(char *buf, int64_t ms)
{
    size_t n = resp_ll2str(buf, ms);
    return (struct resp_arg){buf, n};
}

int read_key(struct client *c, const struct resp_arg *key, struct rc_buf *value,
             struct rc_item_meta *meta)
{
    struct rc_store *st = c->srv->store;
    int rc = rc_store_get(st, key->ptr, key->len, value, meta);
    /* Absent now but present at the dawn of time: it expired. Queue its deletion, as Redis
     * deletes an expired key that a read touches, so DBSIZE drops at once (if the batch has
     * room for it: else the expiry cycle deletes it). */
    if (rc == RC_ENOTFOUND && rc_store_get_at(st, key->ptr, key->len, 1, NULL, NULL) == 0) {
        struct resp_arg args[2] = {{"DELEXPIRED", 10}, *key};
        if (writepath_submit(c->srv, NULL, 2, args) == 0)
            c->srv->stats.expired_keys++;
    }
    return rc;
}

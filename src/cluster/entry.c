/* entry.c — encoding and bounds-checked decoding of log entries (format in entry.h). */
#include "entry.h"

#include "common/bytes.h"

#include "raftcask.h"

#include <string.h>

/* ============================== building ============================== */

int entry_builder_start(struct entry_builder *b)
{
    resp_buf_init(&b->buf);
    b->count = 0;
    if (resp_buf_reserve(&b->buf, 256) != 0)
        return RC_ENOMEM;
    uint8_t h[ENTRY_HEADER_SIZE] = {ENTRY_VERSION, ENTRY_KIND_COMMANDS, 0, 0};
    return resp_buf_append(&b->buf, h, sizeof h);
}

int entry_builder_add(struct entry_builder *b, size_t argc, const struct resp_arg *args)
{
    size_t need = 4;
    for (size_t i = 0; i < argc; i++)
        need += 4 + args[i].len;
    if (argc > UINT32_MAX || resp_buf_reserve(&b->buf, need) != 0)
        return RC_ENOMEM;
    uint8_t *p = (uint8_t *)b->buf.data + b->buf.len;
    rc_put_u32(p, (uint32_t)argc);
    p += 4;
    for (size_t i = 0; i < argc; i++) {
        rc_put_u32(p, (uint32_t)args[i].len);
        if (args[i].len)
            memcpy(p + 4, args[i].ptr, args[i].len);
        p += 4 + args[i].len;
    }
    b->buf.len += need;
    b->count++;
    return 0;
}

void entry_builder_finish(struct entry_builder *b, int64_t now_ms)
{
    memcpy(b->buf.data + 4, &now_ms, 8);
    rc_put_u32((uint8_t *)b->buf.data + 12, b->count);
}

void entry_builder_free(struct entry_builder *b)
{
    resp_buf_free(&b->buf);
}

/* ============================== reading ============================== */

/* Skips one command at pos, checking its framing; returns the new position or 0. */
static size_t skip_command(const uint8_t *d, size_t len, size_t pos)
{
    if (len - pos < 4)
        return 0;
    uint32_t argc = rc_get_u32(d + pos);
    pos += 4;
    for (uint32_t i = 0; i < argc; i++) {
        if (len - pos < 4)
            return 0;
        uint32_t alen = rc_get_u32(d + pos);
        pos += 4;
        if (len - pos < alen)
            return 0;
        pos += alen;
    }
    return pos;
}

int entry_reader_init(struct entry_reader *r, const void *data, size_t len)
{
    const uint8_t *d = data;
    if (len < ENTRY_HEADER_SIZE || d[0] != ENTRY_VERSION || d[1] != ENTRY_KIND_COMMANDS || d[2] ||
        d[3])
        return RC_EPROTO;
    r->data = d;
    r->len = len;
    memcpy(&r->now_ms, d + 4, 8);
    r->count = rc_get_u32(d + 12);
    r->pos = ENTRY_HEADER_SIZE;
    r->read = 0;
    /* Validate the framing of every command up front, so apply never meets a bad one half
     * way through an entry. */
    size_t pos = ENTRY_HEADER_SIZE;
    for (uint32_t i = 0; i < r->count; i++) {
        pos = skip_command(d, len, pos);
        if (pos == 0)
            return RC_EPROTO;
    }
    return pos == len ? 0 : RC_EPROTO;
}

int entry_reader_next(struct entry_reader *r, struct resp_argv *argv)
{
    if (r->read == r->count)
        return RC_ENOTFOUND;
    const uint8_t *d = r->data;
    uint32_t argc = rc_get_u32(d + r->pos);
    r->pos += 4;
    argv->count = 0;
    for (uint32_t i = 0; i < argc; i++) {
        uint32_t alen = rc_get_u32(d + r->pos);
        int rc = resp_argv_push(argv, (const char *)d + r->pos + 4, alen, argc - i);
        if (rc != 0)
            return RC_ENOMEM;
        r->pos += 4 + alen;
    }
    r->read++;
    return 0;
}

/*
 * fuzz_raft_codec.c — libFuzzer target for src/raft/codec.c.
 *
 * Properties: decoding arbitrary bytes never crashes or reads out of bounds; whatever
 * decodes re-encodes to exactly the input (the encoding is canonical), and decoding that
 * again gives the same fields. The first input byte picks message, entry or configuration.
 */
#include "raft/raft.h"

#include "common/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *why)
{
    (void)why;
    abort();
}

static void check_message(const uint8_t *data, size_t size)
{
    struct raft_message m;
    if (raft_msg_decode(data, size, &m) != 0)
        return;
    size_t need = raft_msg_encoded_size(&m);
    if (need != size)
        fail("size");
    unsigned char *buf = rc_malloc(need);
    if (raft_msg_encode(&m, buf) != need || memcmp(buf, data, size) != 0)
        fail("re-encode differs");
    struct raft_message again;
    if (raft_msg_decode(buf, need, &again) != 0)
        fail("re-decode");
    if (again.type != m.type || again.term != m.term || again.n_entries != m.n_entries ||
        again.commit != m.commit || again.ctx != m.ctx || again.snapshot.len != m.snapshot.len)
        fail("fields differ");
    for (uint32_t i = 0; i < m.n_entries; i++)
        if (again.entries[i].len != m.entries[i].len ||
            again.entries[i].index != m.entries[i].index ||
            (m.entries[i].len &&
             memcmp(again.entries[i].data, m.entries[i].data, m.entries[i].len) != 0))
            fail("entry differs");
    raft_msg_decoded_free(&again);
    raft_msg_decoded_free(&m);
    rc_free(buf);
}

static void check_entry(const uint8_t *data, size_t size)
{
    struct raft_entry e;
    size_t used;
    if (raft_entry_decode(data, size, &e, &used) != 0)
        return;
    if (used > size || raft_entry_encoded_size(&e) != used)
        fail("entry size");
    unsigned char *buf = rc_malloc(used);
    if (raft_entry_encode(&e, buf) != used || memcmp(buf, data, used) != 0)
        fail("entry re-encode");
    rc_free(buf);
}

static void check_config(const uint8_t *data, size_t size)
{
    struct raft_config c;
    if (raft_config_decode(data, size, &c) != 0)
        return;
    if (raft_config_encoded_size(&c) != size)
        fail("config size");
    unsigned char *buf = rc_malloc(size);
    if (raft_config_encode(&c, buf) != size || memcmp(buf, data, size) != 0)
        fail("config re-encode");
    rc_free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        check_message(data + 1, size - 1);
        break;
    case 1:
        check_entry(data + 1, size - 1);
        break;
    default:
        check_config(data + 1, size - 1);
        break;
    }
    return 0;
}

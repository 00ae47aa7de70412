/*
 * codec.c — byte encoding of Raft messages, entries and configurations (version 1).
 *
 * Layout, all integers little-endian:
 *
 *   message  := u8 version(=1) u8 type u8 reject u8 transfer
 *               u64 from u64 to u64 term u64 log_index u64 log_term u64 index u64 commit
 *               u64 hint_index u64 hint_term u64 ctx
 *               u32 n_entries entry*n_entries
 *               u64 snap_index u64 snap_term config u64 snap_offset u8 snap_done
 *               u32 snap_len bytes*snap_len
 *   entry    := u64 term u64 index u8 type u32 len bytes*len
 *   config   := u8 version(=1) u32 n_voters u32 n_learners u64 id*(n_voters+n_learners)
 *
 * Invariants of the decoder (checked by fuzz/fuzz_raft_codec.c):
 *   1. Every length is compared with the bytes remaining before it is used, so no input
 *      makes it read outside buf or allocate more than a bound derived from len.
 *   2. The encoding is canonical: flags are 0 or 1, types are known, counts are within
 *      limits and no byte is left over, so decode(x) succeeding implies encode(decode(x)) == x.
 */
#include "raft/raft.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <string.h>

/* ---------------------------------------------------------------- little-endian writer */

struct writer {
    unsigned char *p;
};

static void put_u8(struct writer *w, uint8_t v)
{
    *w->p++ = v;
}

static void put_u32(struct writer *w, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *w->p++ = (unsigned char)(v >> (8 * i));
}

static void put_u64(struct writer *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *w->p++ = (unsigned char)(v >> (8 * i));
}

static void put_bytes(struct writer *w, const void *data, size_t len)
{
    if (len)
        memcpy(w->p, data, len);
    w->p += len;
}

/* ---------------------------------------------------------------- bounds-checked reader */

struct reader {
    const unsigned char *p;
    size_t left;
    int bad; /* set by the first read past the end; later reads return zeros */
};

static int have(struct reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static uint8_t get_u8(struct reader *r)
{
    if (!have(r, 1))
        return 0;
    r->left--;
    return *r->p++;
}

static uint32_t get_u32(struct reader *r)
{
    if (!have(r, 4))
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint64_t get_u64(struct reader *r)
{
    if (!have(r, 8))
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    r->left -= 8;
    return v;
}

/* Returns a pointer to len bytes inside the input, or NULL (and marks bad) if absent. */
static const void *get_bytes(struct reader *r, size_t len)
{
    if (!have(r, len))
        return NULL;
    const void *at = r->p;
    r->p += len;
    r->left -= len;
    return at;
}

/* ---------------------------------------------------------------- configurations */

#define CONFIG_FIXED_BYTES (1 + 4 + 4)

int raft_config_has_voter(const struct raft_config *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == id)
            return 1;
    return 0;
}

int raft_config_has_learner(const struct raft_config *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == id)
            return 1;
    return 0;
}

size_t raft_config_encoded_size(const struct raft_config *c)
{
    return CONFIG_FIXED_BYTES + 8 * ((size_t)c->n_voters + c->n_learners);
}

static void write_config(struct writer *w, const struct raft_config *c)
{
    put_u8(w, RAFT_CODEC_VERSION);
    put_u32(w, c->n_voters);
    put_u32(w, c->n_learners);
    for (uint32_t i = 0; i < c->n_voters; i++)
        put_u64(w, c->voters[i]);
    for (uint32_t i = 0; i < c->n_learners; i++)
        put_u64(w, c->learners[i]);
}

size_t raft_config_encode(const struct raft_config *c, void *buf)
{
    struct writer w = {buf};
    write_config(&w, c);
    return (size_t)(w.p - (unsigned char *)buf);
}

/*
 * A configuration is valid when it fits, its ids are non-zero and no id appears twice
 * (a server is a voter or a learner, never both).
 */
static int config_is_valid(const struct raft_config *c)
{
    if (c->n_voters > RAFT_MAX_NODES || c->n_learners > RAFT_MAX_NODES ||
        c->n_voters + c->n_learners > RAFT_MAX_NODES)
        return 0;
    uint64_t all[2 * RAFT_MAX_NODES];
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_voters; i++)
        all[n++] = c->voters[i];
    for (uint32_t i = 0; i < c->n_learners; i++)
        all[n++] = c->learners[i];
    for (uint32_t i = 0; i < n; i++) {
        if (all[i] == RAFT_NONE)
            return 0;
        for (uint32_t j = i + 1; j < n; j++)
            if (all[i] == all[j])
                return 0;
    }
    return 1;
}

static int read_config(struct reader *r, struct raft_config *c)
{
    memset(c, 0, sizeof *c);
    if (get_u8(r) != RAFT_CODEC_VERSION)
        return RC_EPROTO;
    uint32_t nv = get_u32(r), nl = get_u32(r);
    if (r->bad || nv > RAFT_MAX_NODES || nl > RAFT_MAX_NODES || nv + nl > RAFT_MAX_NODES)
        return RC_EPROTO;
    c->n_voters = nv;
    c->n_learners = nl;
    for (uint32_t i = 0; i < nv; i++)
        c->voters[i] = get_u64(r);
    for (uint32_t i = 0; i < nl; i++)
        c->learners[i] = get_u64(r);
    if (r->bad || !config_is_valid(c))
        return RC_EPROTO;
    return 0;
}

int raft_config_decode(const void *buf, size_t len, struct raft_config *c)
{
    struct reader r = {buf, len, 0};
    int rc = read_config(&r, c);
    if (rc == 0 && r.left != 0)
        rc = RC_EPROTO;
    return rc;
}

/* ---------------------------------------------------------------- entries */

#define ENTRY_FIXED_BYTES (8 + 8 + 1 + 4)

size_t raft_entry_encoded_size(const struct raft_entry *e)
{
    return ENTRY_FIXED_BYTES + e->len;
}

static void write_entry(struct writer *w, const struct raft_entry *e)
{
    put_u64(w, e->term);
    put_u64(w, e->index);
    put_u8(w, e->type);
    put_u32(w, e->len);
    put_bytes(w, e->data, e->len);
}

size_t raft_entry_encode(const struct raft_entry *e, void *buf)
{
    struct writer w = {buf};
    write_entry(&w, e);
    return (size_t)(w.p - (unsigned char *)buf);
}

static int read_entry(struct reader *r, struct raft_entry *e)
{
    e->term = get_u64(r);
    e->index = get_u64(r);
    e->type = get_u8(r);
    e->len = get_u32(r);
    if (r->bad || e->type > RAFT_ENTRY_CONFIG || e->len > RAFT_ENTRY_MAX_BYTES)
        return RC_EPROTO;
    e->data = (void *)get_bytes(r, e->len);
    if (r->bad)
        return RC_EPROTO;
    if (e->len == 0)
        e->data = NULL;
    return 0;
}

int raft_entry_decode(const void *buf, size_t len, struct raft_entry *e, size_t *consumed)
{
    struct reader r = {buf, len, 0};
    int rc = read_entry(&r, e);
    if (rc == 0)
        *consumed = len - r.left;
    return rc;
}

/* ---------------------------------------------------------------- messages */

#define MSG_FIXED_BYTES          (4 + 10 * 8 + 4)
#define MSG_SNAPSHOT_FIXED_BYTES (8 + 8 + 8 + 1 + 4 + 4)

size_t raft_msg_encoded_size(const struct raft_message *m)
{
    size_t n = MSG_FIXED_BYTES + MSG_SNAPSHOT_FIXED_BYTES;
    for (uint32_t i = 0; i < m->n_entries; i++)
        n += raft_entry_encoded_size(&m->entries[i]);
    n += raft_config_encoded_size(&m->snapshot.config);
    n += m->snapshot.len;
    return n;
}

size_t raft_msg_encode(const struct raft_message *m, void *buf)
{
    struct writer w = {buf};
    put_u8(&w, RAFT_CODEC_VERSION);
    put_u8(&w, m->type);
    put_u8(&w, m->reject);
    put_u8(&w, m->transfer);
    put_u64(&w, m->from);
    put_u64(&w, m->to);
    put_u64(&w, m->term);
    put_u64(&w, m->log_index);
    put_u64(&w, m->log_term);
    put_u64(&w, m->index);
    put_u64(&w, m->commit);
    put_u64(&w, m->hint_index);
    put_u64(&w, m->hint_term);
    put_u64(&w, m->ctx);
    put_u32(&w, m->n_entries);
    for (uint32_t i = 0; i < m->n_entries; i++)
        write_entry(&w, &m->entries[i]);
    put_u64(&w, m->snapshot.index);
    put_u64(&w, m->snapshot.term);
    write_config(&w, &m->snapshot.config);
    put_u64(&w, m->snapshot.offset);
    put_u8(&w, m->snapshot.done);
    put_u32(&w, m->snapshot.len);
    put_bytes(&w, m->snapshot.data, m->snapshot.len);
    put_u32(&w, m->snapshot.crc);
    return (size_t)(w.p - (unsigned char *)buf);
}

void raft_msg_decoded_free(struct raft_message *m)
{
    rc_free(m->entries);
    m->entries = NULL;
    m->n_entries = 0;
}

int raft_msg_decode(const void *buf, size_t len, struct raft_message *m)
{
    struct reader r = {buf, len, 0};
    memset(m, 0, sizeof *m);
    if (get_u8(&r) != RAFT_CODEC_VERSION)
        return RC_EPROTO;
    m->type = get_u8(&r);
    m->reject = get_u8(&r);
    m->transfer = get_u8(&r);
    if (r.bad || m->type < 1 || m->type > RAFT_MSG_TYPE_MAX || m->reject > 1 || m->transfer > 1)
        return RC_EPROTO;
    m->from = get_u64(&r);
    m->to = get_u64(&r);
    m->term = get_u64(&r);
    m->log_index = get_u64(&r);
    m->log_term = get_u64(&r);
    m->index = get_u64(&r);
    m->commit = get_u64(&r);
    m->hint_index = get_u64(&r);
    m->hint_term = get_u64(&r);
    m->ctx = get_u64(&r);
    uint32_t n = get_u32(&r);
    /* Each entry takes at least ENTRY_FIXED_BYTES, which bounds the allocation by len. */
    if (r.bad || n > r.left / ENTRY_FIXED_BYTES)
        return RC_EPROTO;
    if (n) {
        m->entries = rc_calloc(n, sizeof *m->entries);
        if (!m->entries)
            return RC_ENOMEM;
    }
    m->n_entries = n;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = read_entry(&r, &m->entries[i]);
    if (rc == 0) {
        m->snapshot.index = get_u64(&r);
        m->snapshot.term = get_u64(&r);
        rc = read_config(&r, &m->snapshot.config);
    }
    if (rc == 0) {
        m->snapshot.offset = get_u64(&r);
        m->snapshot.done = get_u8(&r);
        m->snapshot.len = get_u32(&r);
        m->snapshot.data = (void *)get_bytes(&r, m->snapshot.len);
        if (m->snapshot.len == 0)
            m->snapshot.data = NULL;
        m->snapshot.crc = get_u32(&r);
        if (r.bad || m->snapshot.done > 1 || r.left != 0)
            rc = RC_EPROTO;
    }
    if (rc != 0)
        raft_msg_decoded_free(m);
    return rc;
}

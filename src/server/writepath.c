/*
 * writepath.c — turning the writes of one loop iteration into one entry, applying it, and
 * routing each reply to its client.
 *
 * This is already the replicated path: writepath_flush hands the encoded entry to
 * apply_entry, which on a single node applies it at once with the next local revision.
 * The Raft issue puts the log between the two (propose now, apply when committed), and
 * nothing in the command code changes. A client's writes stay in flight (pending_writes)
 * until their replies are routed, which is what orders a pipeline's replies.
 */
#include "server.h"

#include "cluster/fsm.h"
#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <string.h>

/* Clients stop adding to an entry once it holds this many bytes (they go on after it is
 * applied), which bounds an entry's size. Flushing is never done from inside a submit: it
 * resumes clients, and a client must not be resumed while its own input is being parsed. */
#define BATCH_MAX_BYTES (4u << 20)

static int grow_slots(struct write_batch *b)
{
    if (b->nslots < b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 64;
    struct write_slot *s = rc_realloc(b->slots, cap * sizeof *s);
    if (!s)
        return RC_ENOMEM;
    b->slots = s;
    b->cap = cap;
    return 0;
}

static int start_batch(struct server *s)
{
    struct write_batch *b = &s->batch;
    if (b->started)
        return 0;
    int rc = entry_builder_start(&b->entry);
    if (rc != 0) {
        entry_builder_free(&b->entry);
        return rc;
    }
    b->started = true;
    return 0;
}

int writepath_submit(struct server *s, struct client *c, size_t argc, const struct resp_arg *a)
{
    struct write_batch *b = &s->batch;
    if (start_batch(s) != 0 || grow_slots(b) != 0)
        return RC_ENOMEM;
    uint32_t index = b->entry.count;
    if (entry_builder_add(&b->entry, argc, a) != 0)
        return RC_ENOMEM;
    b->slots[b->nslots++] = (struct write_slot){.client = c, .index = index};
    if (c) {
        c->pending_writes++;
        c->refs++;
    }
    return 0;
}

bool writepath_full(const struct server *s)
{
    return s->batch.started && s->batch.entry.buf.len >= BATCH_MAX_BYTES;
}

int writepath_submit_error(struct server *s, struct client *c, const char *msg, size_t len)
{
    struct write_batch *b = &s->batch;
    if (start_batch(s) != 0 || grow_slots(b) != 0)
        return RC_ENOMEM;
    struct resp_buf r;
    resp_buf_init(&r);
    if (resp_add_error(&r, msg, len) != 0) {
        resp_buf_free(&r);
        return RC_ENOMEM;
    }
    b->slots[b->nslots++] = (struct write_slot){
        .client = c, .preset = true, .preset_reply = r.data, .preset_len = r.len};
    c->pending_writes++;
    c->refs++;
    return 0;
}

/* ============================== applying ============================== */

struct route_ctx {
    struct server *s;
    struct write_slot *slots;
    size_t nslots;
    size_t next; /* first slot not yet delivered */
};

static void deliver(struct server *s, struct write_slot *slot, const char *reply, size_t len)
{
    struct client *c = slot->client;
    if (!c)
        return;
    c->pending_writes--;
    if (c->closed)
        return;
    resp_buf_append(&c->out, reply, len);
    if (c->out.len + c->sending.len > s->cfg->client_output_limit) {
        rc_warn("client %llu (%s) exceeded the output limit; disconnecting",
                (unsigned long long)c->id, c->addr);
        client_close(c);
        return;
    }
    client_mark_output(c);
}

/* Delivers preset replies that come before command `index` (or all, when index is past the
 * end), so every client sees its replies in submission order. */
static void deliver_presets_before(struct route_ctx *r, uint32_t index, bool all)
{
    while (r->next < r->nslots) {
        struct write_slot *slot = &r->slots[r->next];
        if (!slot->preset && (!all && slot->index >= index))
            break;
        if (slot->preset)
            deliver(r->s, slot, slot->preset_reply, slot->preset_len);
        r->next++;
    }
}

static void route_reply(uint32_t index, const char *reply, size_t len, void *arg)
{
    struct route_ctx *r = arg;
    deliver_presets_before(r, index, false);
    /* Slots are in entry order, so the next non-preset slot is this command's. */
    struct write_slot *slot = &r->slots[r->next++];
    deliver(r->s, slot, reply, len);
}

/* Applies an encoded entry at the next revision (single node: no log in between). */
static int apply_entry(struct server *s, const struct entry_builder *e, struct route_ctx *r)
{
    uint64_t revision = s->revision + 1;
    int rc = fsm_apply(s->store, e->buf.data, e->buf.len, revision, route_reply, r);
    if (rc != 0)
        return rc;
    s->revision = revision;
    s->stats.entries_applied++;
    return 0;
}

void writepath_flush(struct server *s)
{
    struct write_batch *b = &s->batch;
    if (!b->started)
        return;
    /* Take the batch: replies may make clients submit the next one. */
    struct write_batch taken = *b;
    memset(b, 0, sizeof *b);
    entry_builder_finish(&taken.entry, server_now_ms());
    struct route_ctx r = {s, taken.slots, taken.nslots, 0};
    int rc = taken.entry.count ? apply_entry(s, &taken.entry, &r) : 0;
    if (rc != 0) {
        /* The store failed under us: answer every waiting client, stop taking writes. */
        rc_error("applying entry %llu failed: %s; shutting down",
                 (unsigned long long)(s->revision + 1), rc_strerror(rc));
        for (; r.next < r.nslots; r.next++)
            deliver(s, &r.slots[r.next], "-ERR write failed in the store\r\n", 32);
        server_shutdown(s, 1);
    }
    deliver_presets_before(&r, 0, true);
    /* Clients whose writes are all applied go on with their input (they may submit into the
     * new batch); the slots' references keep every client alive until released below. */
    for (size_t i = 0; i < taken.nslots; i++) {
        struct client *c = taken.slots[i].client;
        if (c && c->pending_writes == 0 && !c->closed)
            client_resume(c);
    }
    for (size_t i = 0; i < taken.nslots; i++) {
        rc_free(taken.slots[i].preset_reply);
        if (taken.slots[i].client)
            client_release(taken.slots[i].client);
    }
    entry_builder_free(&taken.entry);
    rc_free(taken.slots);
}

void writepath_free(struct server *s)
{
    struct write_batch *b = &s->batch;
    for (size_t i = 0; i < b->nslots; i++) {
        rc_free(b->slots[i].preset_reply);
        if (b->slots[i].client)
            client_release(b->slots[i].client);
    }
    if (b->started)
        entry_builder_free(&b->entry);
    rc_free(b->slots);
    memset(b, 0, sizeof *b);
}

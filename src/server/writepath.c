/*
 * writepath.c — turning the writes of one loop iteration into one entry, applying it, and
 * routing each reply to its client.
 *
 * writepath_flush proposes the encoded entry to Raft (cluster_propose) and keeps its slots
 * in a FIFO by log index; when the entry is committed, writepath_apply applies it with the
 * Raft index as revision and routes each reply to its client. An entry applied at a
 * proposed index with another term means another leader overwrote ours: those clients get
 * an error (nothing of theirs was applied). A client's writes stay in flight
 * (pending_writes) until their replies are routed, which is what orders a pipeline's
 * replies.
 */
#include "server.h"

#include "cluster/fsm.h"
#include "common/alloc.h"
#include "common/log.h"
#include "raft/raft.h"
#include "raftcask.h"

#include <string.h>

/* Clients stop adding to an entry once it holds this many bytes (they go on after it is
 * applied), which bounds an entry's size. Flushing is never done from inside a submit: it
 * resumes clients, and a client must not be resumed while its own input is being parsed. */
#define BATCH_MAX_BYTES (4u << 20)

/*
 * One write, and one entry, are kept small enough to replicate within an election timeout:
 * while the leader takes a large write in (parse, entry, log, each follower's append, store)
 * its loop sends no heartbeats, and a follower busy receiving and syncing it answers
 * nothing. On a slow machine (DESIGN.md) the loop stopped 25-45 ms per MiB and a 15 MiB SET
 * deposed the leader; a 3.9 MiB one holds it 67 ms (release) or 127 ms (sanitizers).
 * WRITE_MAX_BYTES bounds the estimate of one command (refused above: writepath_too_large),
 * ENTRY_ROOM_BYTES what a batch takes in (a write that does not fit waits for the next).
 * Estimates can fall short by a little (inline commands; deletions check the room too);
 * RAFT_ENTRY_MAX_BYTES, the hard bound, is far above. A node alone in its configuration has
 * no follower to keep in time: only the hard bound applies to it (SPEC §5: values up to
 * --proto-max-bulk-len).
 */
#define WRITE_MAX_BYTES  (4u << 20)
#define ENTRY_ROOM_BYTES (4u << 20)
#define ALONE_ROOM_BYTES ((size_t)RAFT_ENTRY_MAX_BYTES - (1u << 20))

static bool alone(const struct server *s)
{
    return !s->raft || s->rstatus.config.n_voters + s->rstatus.config.n_learners <= 1;
}

size_t writepath_command_bytes(size_t argc, const struct resp_arg *a)
{
    size_t n = 4 + WRITEPATH_COMMAND_SLACK_BYTES;
    for (size_t i = 0; i < argc; i++)
        n += 4 + a[i].len;
    return n;
}

bool writepath_too_large(const struct server *s, size_t bytes)
{
    return bytes > (alone(s) ? ALONE_ROOM_BYTES - ENTRY_HEADER_SIZE : WRITE_MAX_BYTES);
}

bool writepath_has_room(const struct server *s, size_t bytes)
{
    return !s->batch.started ||
           s->batch.entry.buf.len + bytes <= (alone(s) ? ALONE_ROOM_BYTES : ENTRY_ROOM_BYTES);
}

uint64_t writepath_value_max(const struct server *s)
{
    uint64_t limit = s->cfg->proto_max_bulk_len;
    return alone(s) || limit < WRITE_MAX_BYTES ? limit : WRITE_MAX_BYTES;
}

bool writepath_fits(const struct server *s, size_t bytes)
{
    return !writepath_too_large(s, bytes) && writepath_has_room(s, bytes);
}

bool writepath_wait_room(struct server *s, struct client *c)
{
    if (c->waiting_room)
        return true;
    if (rc_reserve((void **)&s->room_wait, &s->caproom_wait, s->nroom_wait + 1,
                   sizeof *s->room_wait) != 0)
        return false; /* out of memory: the caller lets the write in rather than lose it */
    c->waiting_room = true;
    c->refs++;
    s->room_wait[s->nroom_wait++] = c;
    return true;
}

/* Empties the room-wait list: with resume (the batch was taken), its clients go on, into a new
 * batch; without (shutting down), they are only released. */
static void release_room_waiters(struct server *s, bool resume)
{
    struct client **w = s->room_wait;
    size_t n = s->nroom_wait;
    s->room_wait = NULL;
    s->nroom_wait = s->caproom_wait = 0;
    for (size_t i = 0; i < n; i++) {
        w[i]->waiting_room = false;
        if (resume)
            client_resume(w[i]);
    }
    for (size_t i = 0; i < n; i++)
        client_release(w[i]);
    rc_free(w);
}

static int grow_slots(struct write_batch *b)
{
    return rc_reserve((void **)&b->slots, &b->cap, b->nslots + 1, sizeof *b->slots);
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
    /* Internal writes (expiry deletions) are the leader's to propose: followers drop them,
     * the leader's own cycle deletes the keys for everyone. Unlike a client's, they do not
     * wait for room: one that does not fit is dropped, and the cycle deletes the keys later. */
    if (!c && (!s->is_leader || !writepath_fits(s, writepath_command_bytes(argc, a))))
        return RC_EAGAIN;
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
    if (c->out.over || c->out.len + c->sending.len > s->cfg->client_output_limit) {
        rc_warn("client %llu (%s) exceeded the output limit; disconnecting",
                (unsigned long long)c->id, c->addr);
        client_close(c);
        return;
    }
    client_mark_output(c);
}

static void deliver_preset(struct server *s, struct write_slot *slot)
{
    if (slot->preset_reply)
        deliver(s, slot, slot->preset_reply, slot->preset_len);
    else
        deliver(s, slot, slot->fixed_reply, strlen(slot->fixed_reply));
}

/* Delivers the preset replies that come before command `index` of the entry, so every client
 * sees its replies in submission order. */
static void deliver_presets_before(struct route_ctx *r, uint32_t index)
{
    while (r->next < r->nslots) {
        struct write_slot *slot = &r->slots[r->next];
        if (!slot->preset && slot->index >= index)
            break;
        if (slot->preset)
            deliver_preset(r->s, slot);
        r->next++;
    }
}

/* Answers the slots from r->next on: presets with their own reply, the others with reply. */
static void answer_rest(struct route_ctx *r, const char *reply)
{
    for (; r->next < r->nslots; r->next++) {
        struct write_slot *slot = &r->slots[r->next];
        if (slot->preset)
            deliver_preset(r->s, slot);
        else
            deliver(r->s, slot, reply, strlen(reply));
    }
}

static void route_reply(uint32_t index, const char *reply, size_t len, void *arg)
{
    struct route_ctx *r = arg;
    deliver_presets_before(r, index);
    /* Slots are in entry order, so the next non-preset slot is this command's. */
    struct write_slot *slot = &r->slots[r->next++];
    deliver(r->s, slot, reply, len);
}

/* Resumes the batch's clients whose writes are all answered and drops the slots' references. */
static void release_slots(struct server *s, struct write_slot *slots, size_t nslots)
{
    (void)s;
    /* Clients whose writes are all applied go on with their input (they may submit into the
     * new batch); the slots' references keep every client alive until released below. */
    for (size_t i = 0; i < nslots; i++) {
        struct client *c = slots[i].client;
        if (c && c->pending_writes == 0 && !c->closed)
            client_resume(c);
    }
    for (size_t i = 0; i < nslots; i++) {
        rc_free(slots[i].preset_reply);
        if (slots[i].client)
            client_release(slots[i].client);
    }
    rc_free(slots);
}

/* Answers every slot with reply (presets keep their own) and releases them. */
static void fail_slots(struct server *s, struct write_slot *slots, size_t nslots, const char *reply)
{
    struct route_ctx r = {s, slots, nslots, 0};
    answer_rest(&r, reply);
    release_slots(s, slots, nslots);
}

static void pop_proposed(struct server *s)
{
    memmove(s->proposed, s->proposed + 1, (s->nproposed - 1) * sizeof *s->proposed);
    s->nproposed--;
}

#define REPLY_LOST "-ERR leadership changed before the write committed; it was not applied\r\n"

int writepath_apply(struct server *s, uint64_t index, uint64_t term, const void *data, size_t len)
{
    /* Batches proposed at smaller indexes, or in an older term, were overwritten by another
     * leader's entries. */
    writepath_overwritten(s, index - 1, term);
    struct proposed_batch mine = {0};
    bool ours = s->nproposed && s->proposed[0].index == index;
    if (ours) {
        mine = s->proposed[0];
        pop_proposed(s);
        if (mine.term != term) {
            fail_slots(s, mine.slots, mine.nslots, REPLY_LOST);
            ours = false;
        }
    }
    struct route_ctx r = {s, mine.slots, mine.nslots, 0};
    int rc = fsm_apply(s->store, data, len, index, ours ? route_reply : NULL, &r);
    if (rc == RC_EPROTO) {
        /* Malformed (a newer version's entry?): every replica refuses it alike. */
        rc_warn("entry %llu is malformed; skipped", (unsigned long long)index);
        rc = rc_store_mark_revision(s->store, index);
    }
    if (rc != 0) {
        rc_error("applying entry %llu failed: %s; stopping", (unsigned long long)index,
                 rc_strerror(rc));
        if (ours) {
            /* Committed: it stays in the log, the other nodes apply it, and so does this one
             * once restarted with the cause fixed. A client must not apply it twice. */
            answer_rest(&r, "-ERR the write is committed, but this node failed to apply it and "
                            "stops; do not retry it\r\n");
            release_slots(s, mine.slots, mine.nslots);
        }
        return rc;
    }
    s->revision = index;
    s->stats.entries_applied++;
    if (ours) {
        /* Normally only presets are left; after a malformed entry, commands too. */
        answer_rest(&r, "-ERR the replicated write was malformed; it was skipped\r\n");
        release_slots(s, mine.slots, mine.nslots);
    }
    return 0;
}

void writepath_overwritten(struct server *s, uint64_t index, uint64_t term)
{
    /* FIFO order is index order, and this node's terms only grow with it: the batches to fail
     * are a prefix. */
    while (s->nproposed && (s->proposed[0].index <= index || s->proposed[0].term < term)) {
        struct proposed_batch p = s->proposed[0];
        pop_proposed(s);
        fail_slots(s, p.slots, p.nslots, REPLY_LOST);
    }
}

void writepath_fail_proposed(struct server *s, const char *reply)
{
    while (s->nproposed) {
        struct proposed_batch p = s->proposed[0];
        pop_proposed(s);
        fail_slots(s, p.slots, p.nslots, reply);
    }
    rc_free(s->proposed);
    s->proposed = NULL;
    s->capproposed = 0;
}

/*
 * Answers the slots of a batch that proposes nothing (only errors, or a refused proposal)
 * after the batches already proposed: a client of this batch may have writes in those, and
 * its replies keep their order. The slots join the end of the last proposed batch as
 * presets, which its application or failure delivers after its own replies; with nothing
 * in flight (or no memory to join) they are answered now. reply: a static reply for the
 * slots that have no preset.
 */
static void answer_after_proposed(struct server *s, struct write_batch *t, const char *reply)
{
    struct proposed_batch *last = s->nproposed ? &s->proposed[s->nproposed - 1] : NULL;
    struct write_slot *grown =
        last ? rc_realloc(last->slots, (last->nslots + t->nslots) * sizeof *grown) : NULL;
    if (!grown) {
        fail_slots(s, t->slots, t->nslots, reply);
        return;
    }
    last->slots = grown;
    for (size_t i = 0; i < t->nslots; i++) {
        struct write_slot slot = t->slots[i];
        if (!slot.preset)
            slot = (struct write_slot){.client = slot.client, .preset = true, .fixed_reply = reply};
        last->slots[last->nslots++] = slot;
    }
    rc_free(t->slots);
}

/* Proposes a batch taken from s->batch, or answers its clients if that fails. */
static void propose_taken(struct server *s, struct write_batch taken)
{
    entry_builder_finish(&taken.entry, server_now_ms());
    size_t commands = taken.entry.count;
    bool ok = false;
    struct proposed_batch p = {.slots = taken.slots, .nslots = taken.nslots};
    /* Room in the FIFO first: a proposed entry is never left without its slots. */
    bool room = rc_reserve((void **)&s->proposed, &s->capproposed, s->nproposed + 1,
                           sizeof *s->proposed) == 0;
    if (commands && room)
        ok = cluster_propose(s, taken.entry.buf.data, taken.entry.buf.len, &p.index, &p.term);
    entry_builder_free(&taken.entry);
    if (ok) {
        if (taken.expiry) {
            s->expiry_index = p.index;
            s->expiry_term = p.term;
        }
        s->proposed[s->nproposed++] = p;
        return;
    }
    char leader[CLUSTER_ADDR_MAX + 8];
    const char *reply = "-ERR out of memory\r\n";
    struct raft_status st = {0};
    if (commands && room && s->raft && s->is_leader)
        raft_node_status(s->raft, &st); /* a refusal is rare: ask the core why */
    if (commands && room)
        reply = s->is_leader && st.transferee != RAFT_NONE
                    ? "-ERR leadership is being transferred; the write was not applied: retry\r\n"
                : cluster_leader_addr(s, leader, sizeof leader)
                    ? "-ERR leadership changed; the write was not applied\r\n"
                    : "-CLUSTERDOWN no leader\r\n";
    answer_after_proposed(s, &taken, reply); /* with no commands, only presets */
}

void writepath_flush(struct server *s)
{
    struct write_batch *b = &s->batch;
    if (!b->started)
        return;
    /* Take the batch: replies may make clients submit the next one. */
    struct write_batch taken = *b;
    memset(b, 0, sizeof *b);
    propose_taken(s, taken);
    /* Clients whose write did not fit go on now, into the next batch. */
    release_room_waiters(s, true);
}

void writepath_free(struct server *s)
{
    release_room_waiters(s, false);
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

/*
 * expire.c — the active expiry cycle: finds keys whose time has passed and deletes them
 * through the write path (DELEXPIRED), so that every replica deletes them at the same log
 * position. Expired keys are invisible to reads from the instant they expire; this cycle
 * only reclaims their space.
 *
 * Each run (every 100 ms) walks up to SWEEP_KEYS keys in key order from where the last run
 * stopped, wrapping around, and deletes the expired ones it saw; it repeats, within a time
 * budget, while a good share of what it saw had expired (a burst of expiries is reclaimed
 * quickly; a keyspace with few is swept slowly and cheaply). Nothing runs when no key has
 * an expiry.
 */
#include "server.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <string.h>

#define SWEEP_KEYS         1000
#define MAX_KEYS_PER_ENTRY 256
#define BUDGET_NS          5000000ull /* 5 ms per run */

struct sweep {
    struct server *s;
    int64_t now;
    size_t seen;
    struct resp_arg *keys; /* copies of expired keys (ptr owned) */
    size_t nkeys;
    size_t bytes; /* the DELEXPIRED command's size so far (writepath_command_bytes) */
    bool full;    /* the entry has all it may carry: the step ends, not the keyspace */
    char *last;
    size_t last_len;
    int error;
};

static int sweep_one(const void *key, size_t klen, const void *value, size_t vlen,
                     const struct rc_item_meta *meta, void *ctx)
{
    struct sweep *w = ctx;
    bool expired = meta->expiry_ms && meta->expiry_ms <= w->now;
    /* The DELEXPIRED command being built fits the batch with this key, as writepath_submit
     * wants (in a cluster a few MiB; 256 keys of up to --max-key-size are more)? */
    if (expired && !writepath_fits(w->s, w->bytes + 4 + klen)) {
        w->full = true; /* this key opens a later step, in a later batch */
        return 1;
    }
    w->seen++;
    char *copy = rc_memdup(key, klen);
    if (!copy) {
        w->error = RC_ENOMEM;
        return 1;
    }
    rc_free(w->last);
    w->last = copy;
    w->last_len = klen;
    if (expired) {
        char *k = rc_memdup(key, klen);
        if (!k) {
            w->error = RC_ENOMEM;
            return 1;
        }
        w->keys[w->nkeys].ptr = k;
        w->keys[w->nkeys].len = klen;
        w->nkeys++;
        w->bytes += 4 + klen;
    }
    w->full = w->nkeys == MAX_KEYS_PER_ENTRY;
    return w->full ? 1 : 0;
}

/* One sweep step: submits the expired keys among the next SWEEP_KEYS for deletion. Sets
 * *seen to the keys looked at and *wrapped when it reached the end of the keyspace; returns
 * how many it submitted. */
static size_t sweep_step(struct server *s, int64_t now, size_t *seen, bool *wrapped)
{
    struct resp_arg args[MAX_KEYS_PER_ENTRY + 1];
    struct sweep w = {.s = s, .now = now, .keys = args + 1};
    w.bytes = writepath_command_bytes(1, &(struct resp_arg){"DELEXPIRED", 10});
    struct rc_store_range r = {.limit = SWEEP_KEYS, .include_expired = true};
    if (s->expire_pivot_set)
        r.lo = (struct kd_bound){KD_BOUND_EXCLUSIVE, s->expire_pivot, s->expire_pivot_len};
    rc_store_scan(s->store, &r, sweep_one, &w);
    *wrapped = w.seen < SWEEP_KEYS && !w.error && !w.full;
    if (*wrapped) { /* reached the end of the keyspace: the next step starts over */
        rc_free(w.last);
        w.last = NULL;
        rc_free(s->expire_pivot);
        s->expire_pivot = NULL;
        s->expire_pivot_set = false;
    } else if (w.last) {
        rc_free(s->expire_pivot);
        s->expire_pivot = w.last;
        s->expire_pivot_len = w.last_len;
        s->expire_pivot_set = true;
    } /* else it saw nothing (its first key did not fit): the next step starts there again */
    if (w.nkeys > 0) {
        args[0] = (struct resp_arg){"DELEXPIRED", 10};
        if (writepath_submit(s, NULL, w.nkeys + 1, args) == 0) {
            s->stats.expired_keys += w.nkeys;
            s->batch.expiry = true;
        }
    }
    for (size_t i = 0; i < w.nkeys; i++)
        rc_free((char *)w.keys[i].ptr);
    *seen = w.seen;
    return w.nkeys;
}

static bool has_expiring_keys(struct server *s)
{
    struct rc_store_stats st;
    rc_store_stats(s->store, &st);
    return st.keys_with_expiry > 0;
}

/* Whether deletions this cycle proposed are still on their way to the store: the keys they
 * delete are still there, and a run now would propose them again. A new term voids it (the
 * entry was applied or lost; proposing again is harmless). */
static bool deletions_in_flight(struct server *s)
{
    if (!s->raft || !s->expiry_index)
        return false;
    struct raft_status st;
    raft_node_status(s->raft, &st);
    return st.term == s->expiry_term && st.applied < s->expiry_index;
}

void expire_cycle(struct server *s)
{
    /* not the store about to be replaced */
    if (s->restore || deletions_in_flight(s) || !has_expiring_keys(s))
        return;
    uint64_t start = (uint64_t)uv_hrtime();
    int64_t now = server_now_ms();
    size_t seen, expired;
    bool wrapped;
    do /* go on while at least a quarter of what was seen had expired */
        expired = sweep_step(s, now, &seen, &wrapped);
    while (!wrapped && expired * 4 >= seen && expired > 0 && uv_hrtime() - start < BUDGET_NS);
}

void expire_sweep_all(struct server *s)
{
    if (!has_expiring_keys(s))
        return;
    int64_t now = server_now_ms();
    size_t seen, expired, total = 0;
    bool wrapped;
    s->expire_pivot_set = false;
    do {
        expired = sweep_step(s, now, &seen, &wrapped);
        total += expired;
        writepath_flush(s);
        cluster_after_iteration(s);
    } while (!wrapped && !s->shutting_down);
    if (total)
        rc_info("deleted %zu keys that expired while the node was down", total);
}

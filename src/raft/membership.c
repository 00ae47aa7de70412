/*
 * membership.c — configurations: where they come from, one-server changes, and the
 * progress set that follows them.
 *
 * The configuration in force is that of the last configuration entry in the log, committed
 * or not (thesis §4.1). With one server added or removed at a time, any majority of the old
 * configuration overlaps any majority of the new one, so no moment admits two leaders.
 *
 * Invariants:
 *   1. The leader proposes a change only when the configuration in force is committed
 *      (at most one uncommitted change in any log) and only after it has committed an
 *      entry of its own term. The second rule closes the bug in single-server changes found
 *      after the thesis (raft-dev, 2015): without it, a leader of a new term could add a
 *      change on top of an uncommitted change of a deposed leader, and two disjoint
 *      majorities could decide.
 *   2. A change differs from the configuration in force by one server: a learner added, a
 *      learner promoted to voter, or one server removed. At least one voter remains.
 *   3. A learner is promoted only once it holds every committed entry, so that adding a
 *      voter does not stall commit while it catches up.
 *   4. When the log is truncated below the configuration entry in force, the configuration
 *      reverts to the last one remaining in the log (raft_config_recover).
 *   5. A leader that removed itself keeps leading (without counting itself) until the
 *      change commits, then steps down (thesis §4.2.2).
 *
 * State changes: raft_config_on_append, raft_config_recover (config, prev_config),
 * raft_progress_rebuild (prs), raft_change_membership (appends the entry).
 */
#include "raft/raft_int.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"

#include <string.h>

int raft_bootstrap_entry(const struct raft_config *config, struct raft_entry *entry)
{
    size_t len = raft_config_encoded_size(config);
    void *data = rc_malloc(len);
    if (!data)
        return RC_ENOMEM;
    raft_config_encode(config, data);
    entry->term = 1;
    entry->index = 1;
    entry->type = RAFT_ENTRY_CONFIG;
    entry->len = (uint32_t)len;
    entry->data = data;
    return 0;
}

/* ---------------------------------------------------------------- progress set */

int raft_progress_rebuild(struct raft *r)
{
    const struct raft_config *c = &r->config;
    uint32_t n = c->n_voters + c->n_learners;
    struct raft_progress *prs = rc_calloc(n ? n : 1, sizeof *prs);
    if (!prs)
        return RC_ENOMEM;
    uint64_t last = raft_log_last_index(&r->log);
    for (uint32_t i = 0; i < n; i++) {
        int is_voter = i < c->n_voters;
        uint64_t id = is_voter ? c->voters[i] : c->learners[i - c->n_voters];
        struct raft_progress *old = raft_progress_of(r, id);
        if (old) {
            prs[i] = *old;
        } else {
            prs[i].id = id;
            raft_progress_reset(&prs[i], last);
            prs[i].recent_active = 1; /* a newcomer gets one timeout before it counts */
        }
        prs[i].is_voter = is_voter;
    }
    rc_free(r->prs);
    r->prs = prs;
    r->n_prs = n;
    if (r->role == RAFT_LEADER) {
        r->pending_broadcast = 1;
        struct raft_progress *self = raft_progress_of(r, r->id);
        if (self && self->match < raft_durable_index(r))
            raft_progress_maybe_update(self, raft_durable_index(r));
    }
    return 0;
}

/* ---------------------------------------------------------------- configuration entries */

static int decode_entry_config(const struct raft_entry *e, struct raft_config *c)
{
    int rc = raft_config_decode(e->data, e->len, c);
    if (rc != 0)
        rc_error("raft: configuration entry %llu is malformed", (unsigned long long)e->index);
    return rc;
}

void raft_config_on_append(struct raft *r, const struct raft_entry *e)
{
    struct raft_config c;
    if (decode_entry_config(e, &c) != 0)
        return;
    r->prev_config = r->config;
    r->prev_config_index = r->config_index;
    r->config = c;
    r->config_index = e->index;
    raft_progress_rebuild(r);
}

int raft_config_recover(struct raft *r)
{
    /*
     * Scans the log backwards for its last two configuration entries. The scan is linear;
     * it runs at start and on the rare truncation of a configuration entry, and log
     * compaction bounds it: older configurations are in the snapshot.
     */
    struct raft_config found[2];
    uint64_t found_index[2] = {0, 0};
    int n_found = 0;
    memset(found, 0, sizeof found);
    /* From just after the snapshot: entries kept at or before its index (log.c invariant 4)
     * are covered by its configuration. */
    uint64_t first = r->log.snapshot_index + 1;
    for (uint64_t i = raft_log_last_index(&r->log); i >= first && i > 0 && n_found < 2; i--) {
        struct raft_entry *e;
        size_t n;
        int rc = raft_log_copy_entries(&r->log, i, i + 1, (size_t)-1, &e, &n);
        if (rc != 0)
            return rc;
        if (e->type == RAFT_ENTRY_CONFIG && decode_entry_config(e, &found[n_found]) == 0)
            found_index[n_found++] = i;
        rc_free(e);
    }
    /* Configurations older than the log's first entry are in the snapshot. */
    struct raft_snapshot_meta meta = {0};
    if (n_found < 2 && r->log.snapshot_index > 0 && r->log.storage.snapshot) {
        int rc = r->log.storage.snapshot(r->log.storage.ctx, &meta);
        if (rc != 0)
            return rc;
        found[n_found] = meta.config;
        found_index[n_found++] = meta.index;
    }
    r->config = found[0];
    r->config_index = found_index[0];
    r->prev_config = found[1];
    r->prev_config_index = found_index[1];
    return raft_progress_rebuild(r);
}

void raft_maybe_step_down_after_removal(struct raft *r)
{
    if (r->role == RAFT_LEADER && !raft_is_voter(r) && r->config_index <= r->log.commit)
        raft_become_follower(r, r->term, RAFT_NONE);
}

/* ---------------------------------------------------------------- changes */

static void remove_id(uint64_t *ids, uint32_t *n, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[*n - 1];
            (*n)--;
            return;
        }
    }
}

int raft_change_membership(struct raft *r, enum raft_membership_op op, uint64_t id)
{
    RAFT_ASSERT(!r->ready_outstanding);
    if (r->failed)
        return RC_ECLOSED;
    if (r->role != RAFT_LEADER)
        return RC_EAGAIN;
    if (id == RAFT_NONE)
        return RC_EINVAL;
    /* Invariant 1. */
    if (r->transferee != RAFT_NONE || r->config_index > r->log.commit ||
        raft_log_term_or_zero(&r->log, r->log.commit) != r->term)
        return RC_EBUSY;
    struct raft_config c = r->config;
    int voter = raft_config_has_voter(&c, id), learner = raft_config_has_learner(&c, id);
    switch (op) {
    case RAFT_ADD_LEARNER:
        if (voter || learner)
            return RC_EEXIST;
        if (c.n_voters + c.n_learners >= RAFT_MAX_NODES)
            return RC_ETOOBIG;
        c.learners[c.n_learners++] = id;
        break;
    case RAFT_PROMOTE: {
        if (voter)
            return RC_EEXIST;
        if (!learner)
            return RC_ENOTFOUND;
        struct raft_progress *pr = raft_progress_of(r, id);
        if (!pr || pr->match < r->log.commit)
            return RC_EAGAIN; /* invariant 3 */
        remove_id(c.learners, &c.n_learners, id);
        c.voters[c.n_voters++] = id;
        break;
    }
    case RAFT_REMOVE:
        if (voter) {
            if (c.n_voters == 1)
                return RC_EINVAL;
            remove_id(c.voters, &c.n_voters, id);
        } else if (learner) {
            remove_id(c.learners, &c.n_learners, id);
        } else {
            return RC_ENOTFOUND;
        }
        break;
    default:
        return RC_EINVAL;
    }
    size_t len = raft_config_encoded_size(&c);
    void *data = rc_malloc(len);
    if (!data)
        return RC_ENOMEM;
    raft_config_encode(&c, data);
    int rc = raft_append_new_entry(r, RAFT_ENTRY_CONFIG, data, len, NULL);
    rc_free(data);
    raft_check_invariants(r);
    return rc;
}

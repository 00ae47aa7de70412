/*
 * members.h — who the cluster's nodes are and where they listen (prefix cluster_), and this
 * node's identity file (node.conf).
 *
 * The Raft configuration (raft.h) names voters and learners by id only. The directory
 * maps each id to its client (RESP) address and its peer (Raft) address, so that every node
 * can name the leader's client address (RAFTLEADER, -TRY, -MOVED, proxying) and dial its
 * peers. It is replicated: a change is a log entry (the internal command RAFTNODE, applied
 * by the cluster glue, not the FSM), kept in DIR/members (rewritten atomically after each
 * change) and carried in every snapshot.
 *
 * Text formats (both files, and the snapshot blob, are plain lines so an operator can read
 * them):
 *   node.conf   "id <u64>\ncluster <16 hex>\nclient <host:port>\npeer <host:port>\n"
 *   members     one line per node: "<id> <client host:port> <peer host:port>\n"
 */
#ifndef RC_CLUSTER_MEMBERS_H
#define RC_CLUSTER_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_ADDR_MAX    128
#define CLUSTER_MAX_MEMBERS 16

struct cluster_member {
    uint64_t id;
    char client_addr[CLUSTER_ADDR_MAX];
    char peer_addr[CLUSTER_ADDR_MAX];
};

struct cluster_members {
    size_t count;
    struct cluster_member m[CLUSTER_MAX_MEMBERS];
};

/* The member with id, or NULL. */
const struct cluster_member *cluster_members_find(const struct cluster_members *ms, uint64_t id);
/* Adds or updates a member. RC_EINVAL (bad id or address), RC_ETOOBIG (full). */
int cluster_members_set(struct cluster_members *ms, uint64_t id, const char *client_addr,
                        const char *peer_addr);
/* Removes a member; RC_ENOTFOUND if absent. */
int cluster_members_remove(struct cluster_members *ms, uint64_t id);

/* Text encoding (the members file and the snapshot blob). encode returns an rc_malloc'ed
 * buffer in *out (caller frees). decode replaces *ms; RC_EPROTO if malformed. */
int cluster_members_encode(const struct cluster_members *ms, char **out, size_t *len);
int cluster_members_decode(const void *buf, size_t len, struct cluster_members *ms);
/* DIR/members: load (an absent file is an empty directory) and save (atomic, fsynced). */
int cluster_members_load(const char *dir, struct cluster_members *ms);
int cluster_members_save(const char *dir, const struct cluster_members *ms);

/* This node's identity, DIR/node.conf: written once, fsynced. */
struct cluster_node_conf {
    uint64_t id;
    uint64_t cluster_id;
    char client_addr[CLUSTER_ADDR_MAX];
    char peer_addr[CLUSTER_ADDR_MAX];
};
/* RC_ENOTFOUND if there is no node.conf; RC_ECORRUPT (logged) if it is unreadable. */
int cluster_node_conf_load(const char *dir, struct cluster_node_conf *nc);
int cluster_node_conf_save(const char *dir, const struct cluster_node_conf *nc);

#endif

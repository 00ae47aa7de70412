/*
 * members.c — the replicated directory of nodes and this node's node.conf (see members.h).
 */
#include "members.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct cluster_member *cluster_members_find(const struct cluster_members *ms, uint64_t id)
{
    for (size_t i = 0; i < ms->count; i++)
        if (ms->m[i].id == id)
            return &ms->m[i];
    return NULL;
}

static int addr_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n >= CLUSTER_ADDR_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] <= ' ' || a[i] > '~')
            return 0;
    return 1;
}

int cluster_members_set(struct cluster_members *ms, uint64_t id, const char *client_addr,
                        const char *peer_addr)
{
    if (id == 0 || !addr_ok(client_addr) || !addr_ok(peer_addr))
        return RC_EINVAL;
    struct cluster_member *m = (struct cluster_member *)cluster_members_find(ms, id);
    if (!m) {
        if (ms->count == CLUSTER_MAX_MEMBERS)
            return RC_ETOOBIG;
        m = &ms->m[ms->count++];
        m->id = id;
    }
    snprintf(m->client_addr, sizeof m->client_addr, "%s", client_addr);
    snprintf(m->peer_addr, sizeof m->peer_addr, "%s", peer_addr);
    return 0;
}

int cluster_members_remove(struct cluster_members *ms, uint64_t id)
{
    for (size_t i = 0; i < ms->count; i++) {
        if (ms->m[i].id == id) {
            ms->m[i] = ms->m[--ms->count];
            return 0;
        }
    }
    return RC_ENOTFOUND;
}

int cluster_members_encode(const struct cluster_members *ms, char **out, size_t *len)
{
    size_t cap = ms->count * (24 + 2 * CLUSTER_ADDR_MAX) + 1;
    char *buf = rc_malloc(cap);
    if (!buf)
        return RC_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < ms->count; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%" PRIu64 " %s %s\n", ms->m[i].id,
                              ms->m[i].client_addr, ms->m[i].peer_addr);
    *out = buf;
    *len = n;
    return 0;
}

int cluster_members_decode(const void *buf, size_t len, struct cluster_members *ms)
{
    struct cluster_members tmp = {0};
    const char *p = buf, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return RC_EPROTO;
        char line[3 * CLUSTER_ADDR_MAX];
        size_t ll = (size_t)(nl - p);
        if (ll >= sizeof line)
            return RC_EPROTO;
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = nl + 1;
        uint64_t id;
        char client[CLUSTER_ADDR_MAX], peer[CLUSTER_ADDR_MAX];
        int used = 0;
        if (sscanf(line, "%" SCNu64 " %127s %127s%n", &id, client, peer, &used) != 3 ||
            (size_t)used != ll || cluster_members_set(&tmp, id, client, peer) != 0)
            return RC_EPROTO;
    }
    *ms = tmp;
    return 0;
}

int cluster_members_load(const char *dir, struct cluster_members *ms)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/members", dir);
    void *buf;
    size_t len;
    int rc = rc_read_file(path, &buf, &len);
    if (rc == RC_ENOTFOUND) {
        memset(ms, 0, sizeof *ms);
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = cluster_members_decode(buf, len, ms);
    rc_free(buf);
    if (rc != 0) {
        rc_error("%s is malformed", path);
        return RC_ECORRUPT;
    }
    return 0;
}

int cluster_members_save(const char *dir, const struct cluster_members *ms)
{
    char *buf;
    size_t len;
    int rc = cluster_members_encode(ms, &buf, &len);
    if (rc != 0)
        return rc;
    rc = rc_write_file_atomic(dir, "members", buf, len);
    rc_free(buf);
    return rc;
}

/* ============================== node.conf ============================== */

int cluster_node_conf_load(const char *dir, struct cluster_node_conf *nc)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/node.conf", dir);
    void *buf;
    size_t len;
    int rc = rc_read_file(path, &buf, &len);
    if (rc != 0)
        return rc;
    char text[1024];
    if (len >= sizeof text) {
        rc_free(buf);
        rc_error("%s is malformed (too long)", path);
        return RC_ECORRUPT;
    }
    memcpy(text, buf, len);
    text[len] = '\0';
    rc_free(buf);
    memset(nc, 0, sizeof *nc);
    int n = sscanf(text, "id %" SCNu64 "\ncluster %" SCNx64 "\nclient %127s\npeer %127s", &nc->id,
                   &nc->cluster_id, nc->client_addr, nc->peer_addr);
    if (n != 4 || nc->id == 0) {
        rc_error("%s is malformed; expected lines 'id N', 'cluster HEX', 'client ADDR', "
                 "'peer ADDR'",
                 path);
        return RC_ECORRUPT;
    }
    return 0;
}

int cluster_node_conf_save(const char *dir, const struct cluster_node_conf *nc)
{
    char text[1024];
    int n =
        snprintf(text, sizeof text, "id %" PRIu64 "\ncluster %016" PRIx64 "\nclient %s\npeer %s\n",
                 nc->id, nc->cluster_id, nc->client_addr, nc->peer_addr);
    return rc_write_file_atomic(dir, "node.conf", text, (size_t)n);
}

/*
 * main.c — the raftcask binary.
 *
 * The RESP server (issue 3) is not built yet. Until it is, `raftcask` runs a short,
 * honest demonstration of the storage engine in --dir (default ./data): it opens the store,
 * writes and reads a few keys, scans them in order, merges, and prints what it did and the
 * store's statistics. Run it twice to see the data survive a restart.
 */
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int print_entry(const void *key, size_t klen, const void *value, size_t vlen,
                       const struct rc_item_meta *meta, void *ctx)
{
    printf("  %.*s = %.*s (revision %" PRIu64 ")\n", (int)klen, (const char *)key, (int)vlen,
           (const char *)value, meta->revision);
    return 0;
}

static int usage(FILE *out)
{
    fprintf(out, "usage: raftcask [--dir PATH] [--version] [--help]\n"
                 "The RESP server is not built yet: this runs a storage-engine demo in PATH "
                 "(default ./data).\n");
    return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    const char *dir = "./data";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("raftcask %s\n", RC_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            return usage(stdout);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "raftcask: unknown option '%s'\n", argv[i]);
            return usage(stderr);
        }
    }
    printf("raftcask %s: the RESP server is not built yet; storage-engine demo in %s\n", RC_VERSION,
           dir);
    struct rc_store *s;
    int rc = rc_store_open(dir, NULL, &s);
    if (rc != 0) {
        fprintf(stderr, "raftcask: cannot open store in %s: %s\n", dir, rc_strerror(rc));
        return 1;
    }
    uint64_t rev = rc_store_applied_revision(s);
    printf("opened: %zu keys, applied revision %" PRIu64 "\n", rc_store_count(s), rev);
    char value[64];
    snprintf(value, sizeof value, "written at revision %" PRIu64, rev + 1);
    const char *keys[] = {"demo:apple", "demo:banana", "demo:cherry"};
    for (int i = 0; i < 3; i++)
        rc = rc ? rc : rc_store_put(s, keys[i], strlen(keys[i]), value, strlen(value), 0, ++rev);
    if (rc == 0)
        rc = rc_store_delete(s, "demo:banana", 11, ++rev);
    if (rc == 0) {
        printf("keys with prefix 'demo:' after 3 puts and 1 delete:\n");
        rc = rc_store_scan_prefix(s, "demo:", 5, false, 0, true, print_entry, NULL);
    }
    if (rc == 0)
        rc = rc_store_merge(s);
    struct rc_store_stats st;
    rc_store_stats(s, &st);
    printf("stats: keys=%" PRIu64 " live_bytes=%" PRIu64 " dead_bytes=%" PRIu64 " files=%" PRIu64
           " keydir_bytes=%" PRIu64 " merges=%" PRIu64 "\n",
           st.keys, st.live_bytes, st.dead_bytes, st.files, st.keydir_bytes, st.merges);
    int crc = rc_store_close(s);
    if (rc == 0)
        rc = crc;
    if (rc != 0) {
        fprintf(stderr, "raftcask: %s\n", rc_strerror(rc));
        return 1;
    }
    printf("closed cleanly; run again to see the data survive the restart\n");
    return 0;
}

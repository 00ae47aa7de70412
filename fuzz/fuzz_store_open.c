/*
 * fuzz_store_open.c — libFuzzer target for opening a store from arbitrary files.
 * The input becomes the store's only data file (or, when the first byte says so, the hint
 * of a small valid data file); open must either fail cleanly or give a store that scans,
 * takes a write and closes, with or without repair. Crashes and leaks are the bugs sought.
 */
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"
#include "store/record.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static int count_key(const void *key, size_t klen, const void *value, size_t vlen,
                     const struct rc_item_meta *meta, void *ctx)
{
    (*(size_t *)ctx)++;
    return 0;
}

static void clean_dir(void)
{
    const char *names[] = {"000001.data", "000001.hint", "000002.data", "000002.hint",
                           "000003.data", "000003.hint", "LOCK"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
}

static void write_file(const char *name, const uint8_t *data, size_t size)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        /* tmpfs when there is one: the store fsyncs, and disk fsyncs would slow fuzzing 10x */
        snprintf(dir, sizeof dir, "%s/rcfuzz.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir))
            abort();
        rc_log_set_level(RC_LOG_ERROR + 1);
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    clean_dir();
    if (mode & 1) {
        uint8_t rec[64];
        record_encode(rec, RECORD_PUT, 7, 0, "key", 3, "value", 5);
        write_file("000001.data", rec, record_size(3, 5));
        write_file("000001.hint", data, size);
        write_file("000002.data", NULL, 0);
    } else {
        write_file("000001.data", data, size);
    }
    struct rc_store_options o;
    rc_store_options_init(&o);
    o.max_file_bytes = 4096;
    o.repair = (mode & 2) != 0;
    struct rc_store *s;
    if (rc_store_open(dir, &o, &s) != 0)
        return 0;
    size_t n = 0;
    struct rc_store_range all = {.with_values = true};
    rc_store_scan(s, &all, count_key, &n);
    if (n > rc_store_count(s)) /* scans skip expired keys, so can see fewer, never more */
        abort();
    rc_store_put(s, "fuzz", 4, "x", 1, 0, rc_store_applied_revision(s) + 1);
    rc_store_close(s);
    return 0;
}

/*
 * fuzz_snapshot.c — libFuzzer target for the snapshot reader (src/cluster/snapstream.h).
 * The first byte picks the path: bit 0 clear, the pull reader over the rest of the input as
 * a state.bin file; set, snapshot_print_resp (which also takes the gzip bitraft format).
 * With bit 1 set the rest is taken as uncompressed content and compressed first, so that
 * mutations reach the record parser instead of stopping at zstd's checks.
 * Either must end in a clean result or a negative error: crashes, leaks, reads past a
 * buffer and huge allocations from forged lengths are the bugs sought.
 */
#include "cluster/snapstream.h"
#include "common/log.h"
#include "raftcask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static char path[256];
static FILE *devnull;

static void remove_input(void)
{
    unlink(path);
}

static void write_input(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
}

static void read_all(void)
{
    struct snapshot_reader *r;
    if (snapshot_reader_open(path, &r) != 0)
        return;
    struct snapshot_header h;
    snapshot_reader_header(r, &h);
    if (h.extra_len > 0 && !h.extra)
        abort();
    const void *key, *value;
    size_t klen, vlen;
    int64_t expiry_ms;
    uint64_t revision, n = 0;
    int rc;
    while ((rc = snapshot_reader_next(r, &key, &klen, &value, &vlen, &expiry_ms, &revision)) == 1) {
        if (++n > h.count || revision > h.revision || expiry_ms < 0)
            abort();
        volatile uint8_t sink = 0; /* touch every byte so ASan checks the bounds */
        for (size_t i = 0; i < klen; i++)
            sink ^= ((const uint8_t *)key)[i];
        for (size_t i = 0; i < vlen; i++)
            sink ^= ((const uint8_t *)value)[i];
        (void)sink;
    }
    if (rc == 0 && n != h.count)
        abort();
    if (snapshot_reader_next(r, &key, &klen, &value, &vlen, &expiry_ms, &revision) != rc)
        abort();
    snapshot_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        /* tmpfs when there is one: each input becomes a file */
        snprintf(path, sizeof path, "%s/rcfuzz-snapshot.%d",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        devnull = fopen("/dev/null", "wb");
        if (!devnull)
            abort();
        rc_log_set_level(RC_LOG_ERROR + 1);
        atexit(remove_input);
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode & 2) {
        size_t cap = ZSTD_compressBound(size);
        uint8_t *frame = malloc(cap ? cap : 1);
        if (!frame)
            abort();
        size_t n = ZSTD_compress(frame, cap, data, size, 1);
        if (ZSTD_isError(n))
            abort();
        write_input(frame, n);
        free(frame);
    } else {
        write_input(data, size);
    }
    if (mode & 1)
        snapshot_print_resp(path, devnull);
    else
        read_all();
    return 0;
}

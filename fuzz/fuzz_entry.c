/*
 * fuzz_entry.c — libFuzzer target for the log entry decoder and the state machine.
 * Arbitrary bytes must be refused (RC_EPROTO) or decoded with every argument inside the
 * input; a decoded entry is then applied to a store, which must not crash whatever the
 * commands say.
 */
#include "cluster/entry.h"
#include "cluster/fsm.h"
#include "common/log.h"
#include "raftcask.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct rc_store *store;
static uint64_t revision;

static void close_store(void)
{
    rc_store_close(store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/rcfuzz-entry.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir) || rc_store_open(dir, NULL, &store) != 0)
            abort();
        rc_log_set_level(RC_LOG_ERROR + 1);
        atexit(close_store);
    }
    struct entry_reader r;
    if (entry_reader_init(&r, data, size) != 0)
        return 0;
    struct resp_argv argv;
    resp_argv_init(&argv);
    while (entry_reader_next(&r, &argv) == 0)
        for (size_t i = 0; i < argv.count; i++)
            if (argv.args[i].ptr < (const char *)data ||
                argv.args[i].ptr + argv.args[i].len > (const char *)data + size)
                abort();
    resp_argv_free(&argv);
    if (fsm_apply(store, data, size, ++revision, NULL, NULL) != 0)
        abort(); /* a well-framed entry never fails against a healthy store */
    if (rc_store_count(store) > 10000)
        rc_store_clear(store, ++revision);
    return 0;
}

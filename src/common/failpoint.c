/*
 * failpoint.c — see failpoint.h. Only a debug build has failpoints.
 */
#include "common/failpoint.h"

#ifdef RC_DEBUG

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static pthread_once_t armed_once = PTHREAD_ONCE_INIT;
static char armed_name[128]; /* empty: nothing armed */
static long armed_sleep_ms;  /* 0: kill */

/* Points are passed on worker threads too: the variable is parsed once, for all. */
static void read_armed(void)
{
    const char *armed = getenv("RAFTCASK_FAILPOINT");
    if (!armed || !*armed)
        return;
    const char *action = strstr(armed, "=sleep:");
    size_t len = action ? (size_t)(action - armed) : strlen(armed);
    if (len >= sizeof armed_name) {
        rc_warn("RAFTCASK_FAILPOINT names no point (too long); ignored");
        return;
    }
    if (action) {
        char *end;
        armed_sleep_ms = strtol(action + 7, &end, 10);
        if (*end || armed_sleep_ms <= 0 || armed_sleep_ms > 60000) {
            rc_warn("RAFTCASK_FAILPOINT=%s: sleep wants 1-60000 ms; ignored", armed);
            return;
        }
    }
    memcpy(armed_name, armed, len);
    armed_name[len] = '\0';
}

void rc_failpoint(const char *name)
{
    pthread_once(&armed_once, read_armed);
    if (!armed_name[0] || strcmp(armed_name, name) != 0)
        return;
    if (armed_sleep_ms) {
        struct timespec ts = {armed_sleep_ms / 1000, (armed_sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    rc_warn("failpoint %s: killing this process (RAFTCASK_FAILPOINT)", name);
    raise(SIGKILL);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int rc_failpoint_unused;

#endif

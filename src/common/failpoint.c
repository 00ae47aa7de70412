/*
 * failpoint.c — see failpoint.h. Only a debug build has failpoints.
 */
#include "common/failpoint.h"

#ifdef RC_DEBUG

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void rc_failpoint(const char *name)
{
    const char *armed = getenv("RAFTCASK_FAILPOINT");
    if (!armed || strcmp(armed, name) != 0)
        return;
    rc_warn("failpoint %s: killing this process (RAFTCASK_FAILPOINT)", name);
    raise(SIGKILL);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int rc_failpoint_unused;

#endif

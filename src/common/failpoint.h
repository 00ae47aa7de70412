/*
 * failpoint.h — named points where a test build can kill the process on purpose.
 *
 * Crash-consistency tests need a node to die at an exact step (between two renames, after
 * a file is written but before another is), which kill -9 from outside hits only by luck.
 * In a debug build (RC_DEBUG, the sanitizer build that the tests run) rc_failpoint(name)
 * kills the process with SIGKILL when the environment variable RAFTCASK_FAILPOINT names
 * that point, after one log line. In a release build it compiles to nothing.
 */
#ifndef RC_COMMON_FAILPOINT_H
#define RC_COMMON_FAILPOINT_H

#ifdef RC_DEBUG
void rc_failpoint(const char *name);
#else
static inline void rc_failpoint(const char *name)
{
    (void)name;
}
#endif

#endif

/*
 * failpoint.h — named points where a test build can kill or slow the process on purpose.
 *
 * Crash-consistency tests need a node to die at an exact step (between two renames, after
 * a file is written but before another is), which kill -9 from outside hits only by luck;
 * other tests need a step to take long (a backup still running when a restore begins). In
 * a debug build (RC_DEBUG, the sanitizer build that the tests run) rc_failpoint(name) acts
 * when the environment variable RAFTCASK_FAILPOINT names that point:
 *   RAFTCASK_FAILPOINT=NAME           kills the process with SIGKILL, after one log line;
 *   RAFTCASK_FAILPOINT=NAME=sleep:MS  sleeps MS milliseconds each time the point is passed.
 * The variable is read once. In a release build rc_failpoint compiles to nothing.
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

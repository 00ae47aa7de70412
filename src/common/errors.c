/* errors.c — descriptions of the RC_E* codes of raftcask.h. */
#include "raftcask.h"

const char *rc_strerror(int code)
{
    switch (code) {
    case RC_OK:
        return "success";
    case RC_ENOMEM:
        return "out of memory";
    case RC_EIO:
        return "input/output error";
    case RC_ENOTFOUND:
        return "not found";
    case RC_ECORRUPT:
        return "data is corrupt";
    case RC_ELOCKED:
        return "directory is locked by another process";
    case RC_EINVAL:
        return "invalid argument";
    case RC_ETOOBIG:
        return "too big";
    case RC_EBUSY:
        return "busy";
    case RC_ECLOSED:
        return "closed";
    case RC_EEXIST:
        return "already exists";
    case RC_EPROTO:
        return "protocol error";
    case RC_EAGAIN:
        return "try again";
    default:
        return "unknown error";
    }
}

/*
 * raftcask.h — the public interface of raftcask.
 *
 * This header is the only one installed for programs that embed raftcask. For now it holds
 * the error codes that every layer returns; the embeddable node API (SPEC §7) is added by a
 * later issue.
 *
 * Conventions (in the manner of lmdb.h): functions return 0 on success or a negative RC_E*
 * code; results come back through out-parameters; each function's comment says who owns
 * returned memory and for how long a returned pointer stays valid.
 */
#ifndef RAFTCASK_H
#define RAFTCASK_H

#ifdef __cplusplus
extern "C" {
#endif

#define RC_VERSION "0.1.0"

/* Error codes. All are negative so that a non-negative return can carry a count. */
enum rc_error {
    RC_OK = 0,
    RC_ENOMEM = -1,     /* an allocation failed; nothing was changed */
    RC_EIO = -2,        /* a read, write, sync or rename failed; errno-style detail is logged */
    RC_ENOTFOUND = -3,  /* the key (or item) does not exist */
    RC_ECORRUPT = -4,   /* a checksum or structure check failed on data read from disk */
    RC_ELOCKED = -5,    /* the directory is in use by another open store */
    RC_EINVAL = -6,     /* an argument is out of range or malformed */
    RC_ETOOBIG = -7,    /* a key or value is larger than the configured limit */
    RC_EBUSY = -8,      /* the operation is already running (for example a merge) */
    RC_ECLOSED = -9,    /* the handle was closed or failed and accepts no more writes */
    RC_EEXIST = -10,    /* the item already exists */
    RC_EPROTO = -11,    /* malformed input on the wire or in an encoded entry */
    RC_EAGAIN = -12,    /* need more input, or try again later */
};

/* A static English description of an RC_E* code; never NULL. */
const char *rc_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif /* RAFTCASK_H */

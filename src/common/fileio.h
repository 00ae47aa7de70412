/*
 * fileio.h — small file helpers shared by the store and the Raft log.
 *
 * All return 0 or a negative RC_E* code, retry on EINTR and short transfers, and log the
 * failing path and errno at warning level, so callers need not repeat that.
 */
#ifndef RC_COMMON_FILEIO_H
#define RC_COMMON_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int rc_write_all(int fd, const void *buf, size_t len, const char *what);
int rc_pwrite_all(int fd, const void *buf, size_t len, off_t offset, const char *what);
/* Reads exactly len bytes at offset; RC_ECORRUPT if the file ends first. */
int rc_pread_all(int fd, void *buf, size_t len, off_t offset, const char *what);
int rc_fsync_file(int fd, const char *what);
/* fsyncs a directory so that creations, renames and deletions in it are durable. */
int rc_fsync_dir(const char *dir);
/*
 * Finishes a file written under the temporary name tmp (fd open on it): unless rc (the
 * writing's result) is already an error, fsyncs it, closes fd, renames it over path and
 * fsyncs dir; on any failure the temporary file is removed. Returns rc or the new error.
 */
int rc_commit_temp_file(int fd, int rc, const char *tmp, const char *path, const char *dir);
/* Writes a whole file atomically: temp file, fsync, rename over path, fsync the directory. */
int rc_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len);
/* Reads a whole file into a rc_malloc'ed buffer (caller frees); RC_ENOTFOUND if absent. */
int rc_read_file(const char *path, void **out, size_t *out_len);
/* Creates dir (and parents) with mode 0755 if missing. */
int rc_mkdir_p(const char *dir);
/* Milliseconds since the Unix epoch (wall clock) and a monotonic clock in nanoseconds. */
int64_t rc_now_ms(void);
uint64_t rc_mono_ns(void);

#endif

/* fileio.c — retrying, logging file helpers (see fileio.h). */
#include "fileio.h"

#include "alloc.h"
#include "log.h"
#include "raftcask.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int rc_write_all(int fd, const void *buf, size_t len, const char *what)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc_warn("write %s: %s", what, strerror(errno));
            return RC_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int rc_pwrite_all(int fd, const void *buf, size_t len, off_t offset, const char *what)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc_warn("write %s: %s", what, strerror(errno));
            return RC_EIO;
        }
        p += n;
        offset += n;
        len -= (size_t)n;
    }
    return 0;
}

int rc_pread_all(int fd, void *buf, size_t len, off_t offset, const char *what)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc_warn("read %s: %s", what, strerror(errno));
            return RC_EIO;
        }
        if (n == 0)
            return RC_ECORRUPT;
        p += n;
        offset += n;
        len -= (size_t)n;
    }
    return 0;
}

int rc_fsync_file(int fd, const char *what)
{
    while (fdatasync(fd) != 0) {
        if (errno == EINTR)
            continue;
        rc_warn("fsync %s: %s", what, strerror(errno));
        return RC_EIO;
    }
    return 0;
}

int rc_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc_warn("open directory %s: %s", dir, strerror(errno));
        return RC_EIO;
    }
    int rc = 0;
    while (fsync(fd) != 0) {
        if (errno == EINTR)
            continue;
        rc_warn("fsync directory %s: %s", dir, strerror(errno));
        rc = RC_EIO;
        break;
    }
    close(fd);
    return rc;
}

int rc_commit_temp_file(int fd, int rc, const char *tmp, const char *path, const char *dir)
{
    if (rc == 0)
        rc = rc_fsync_file(fd, tmp);
    if (close(fd) != 0 && rc == 0)
        rc = RC_EIO;
    if (rc == 0 && rename(tmp, path) != 0) {
        rc_warn("rename %s: %s", tmp, strerror(errno));
        rc = RC_EIO;
    }
    if (rc == 0)
        rc = rc_fsync_dir(dir);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int rc_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc_warn("create %s: %s", tmp, strerror(errno));
        return RC_EIO;
    }
    return rc_commit_temp_file(fd, rc_write_all(fd, buf, len, tmp), tmp, path, dir);
}

int rc_read_file(const char *path, void **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? RC_ENOTFOUND : RC_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return RC_EIO;
    }
    size_t len = (size_t)st.st_size;
    void *buf = rc_malloc(len);
    if (!buf) {
        close(fd);
        return RC_ENOMEM;
    }
    int rc = rc_pread_all(fd, buf, len, 0, path);
    close(fd);
    if (rc != 0) {
        rc_free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int rc_mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return RC_EINVAL;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            rc_warn("mkdir %s: %s", path, strerror(errno));
            return RC_EIO;
        }
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        rc_warn("mkdir %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    return 0;
}

int64_t rc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t rc_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* datafile.c — mapped, reference-counted data files (see datafile.h). */
#include "datafile.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void datafile_path(char *buf, size_t n, const char *dir, uint32_t id, const char *suffix)
{
    snprintf(buf, n, "%s/%06u%s", dir, (unsigned)id, suffix);
}

static int datafile_alloc(const char *path, uint32_t id, int fd, struct datafile **out)
{
    struct datafile *f = rc_calloc(1, sizeof *f);
    char *p = rc_memdup(path, strlen(path));
    if (!f || !p) {
        rc_free(f);
        rc_free(p);
        return RC_ENOMEM;
    }
    f->id = id;
    f->fd = fd;
    f->path = p;
    atomic_init(&f->refs, 1);
    *out = f;
    return 0;
}

/* Reserves blocks for [0, len) so that later writes through the map cannot hit a full disk.
 * Falls back to a sparse extension where the filesystem cannot preallocate. */
static int preallocate(int fd, size_t len, const char *path)
{
    if (fallocate(fd, 0, 0, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS) {
        rc_warn("preallocate %zu bytes for %s: %s", len, path, strerror(errno));
        return RC_EIO;
    }
    if (ftruncate(fd, (off_t)len) != 0) {
        rc_warn("extend %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    return 0;
}

static int map_file(struct datafile *f, size_t len, bool writable)
{
    if (len == 0) {
        f->map = NULL;
        f->map_len = 0;
        f->writable = writable;
        return 0;
    }
    void *m = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, f->fd, 0);
    if (m == MAP_FAILED) {
        rc_warn("mmap %s: %s", f->path, strerror(errno));
        return errno == ENOMEM ? RC_ENOMEM : RC_EIO;
    }
    f->map = m;
    f->map_len = len;
    f->writable = writable;
    return 0;
}

static void unmap_file(struct datafile *f)
{
    if (f->map)
        munmap(f->map, f->map_len);
    f->map = NULL;
    f->map_len = 0;
}

int datafile_open(const char *path, uint32_t id, struct datafile **out)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        rc_warn("open %s: %s", path, strerror(errno));
        return RC_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return RC_EIO;
    }
    struct datafile *f;
    int rc = datafile_alloc(path, id, fd, &f);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    rc = map_file(f, (size_t)st.st_size, false);
    if (rc != 0) {
        close(fd);
        rc_free(f->path);
        rc_free(f);
        return rc;
    }
    f->size = (uint64_t)st.st_size;
    *out = f;
    return 0;
}

int datafile_new(const char *path, uint32_t id, struct datafile **out)
{
    return datafile_alloc(path, id, -1, out);
}

int datafile_create_file(struct datafile *f, size_t capacity)
{
    int fd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc_warn("create %s: %s", f->path, strerror(errno));
        return RC_EIO;
    }
    f->fd = fd;
    int rc = preallocate(fd, capacity, f->path);
    if (rc == 0)
        rc = map_file(f, capacity, true);
    if (rc != 0) {
        close(fd);
        f->fd = -1;
        unlink(f->path);
    }
    return rc;
}

int datafile_create(const char *path, uint32_t id, size_t capacity, struct datafile **out)
{
    struct datafile *f;
    int rc = datafile_new(path, id, &f);
    if (rc != 0)
        return rc;
    rc = datafile_create_file(f, capacity);
    if (rc != 0) {
        datafile_unref(f);
        return rc;
    }
    *out = f;
    return 0;
}

int datafile_make_writable(struct datafile *f, size_t capacity)
{
    if (capacity < f->size)
        capacity = (size_t)f->size;
    int rc = preallocate(f->fd, capacity, f->path);
    if (rc != 0)
        return rc;
    void *m = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
    if (m == MAP_FAILED) {
        rc_warn("mmap %s: %s", f->path, strerror(errno));
        if (ftruncate(f->fd, (off_t)f->size) != 0)
            rc_warn("truncate %s: %s", f->path, strerror(errno));
        return RC_EIO;
    }
    unmap_file(f);
    f->map = m;
    f->map_len = capacity;
    f->writable = true;
    return 0;
}

int datafile_seal(struct datafile *f)
{
    if (ftruncate(f->fd, (off_t)f->size) != 0) {
        rc_warn("truncate %s: %s", f->path, strerror(errno));
        return RC_EIO;
    }
    int rc = rc_fsync_file(f->fd, f->path);
    if (rc == 0)
        f->writable = false; /* the map stays; nothing writes through it any more */
    return rc;
}

int datafile_unseal(struct datafile *f)
{
    /* The read-write map of the active file outlives its seal (readers on other threads may
     * be using it): giving the file its length back makes the pages past size usable again,
     * and nothing is remapped. */
    if (!f->map)
        return RC_EINVAL;
    int rc = preallocate(f->fd, f->map_len, f->path);
    if (rc == 0)
        f->writable = true;
    return rc;
}

int datafile_truncate(struct datafile *f, uint64_t size)
{
    if (ftruncate(f->fd, (off_t)size) != 0) {
        rc_warn("truncate %s: %s", f->path, strerror(errno));
        return RC_EIO;
    }
    f->size = size;
    return rc_fsync_file(f->fd, f->path);
}

void datafile_ref(struct datafile *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void datafile_unref(struct datafile *f)
{
    if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    unmap_file(f);
    if (f->fd >= 0)
        close(f->fd);
    rc_free(f->path);
    rc_free(f);
}

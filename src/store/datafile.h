/*
 * datafile.h — one data file of the store: descriptor, memory map, size, reference count.
 *
 * Every data file is mapped into memory, so a get is a key-directory lookup plus a copy out
 * of the page cache, with no system call. The active file (the one written) is preallocated
 * to its capacity (fallocate, so a full disk fails the roll with an error instead of a
 * SIGBUS on a later write) and mapped read-write; records are copied into the map, so a
 * returned put is in the page cache and survives the process being killed. Sealing a file
 * cuts it to its written size and fsyncs it; from then on it never changes.
 *
 * A datafile is shared by the store's file table, by views and by a running merge: each
 * holds a reference, and the last unref unmaps and closes it. Deleting a file from the
 * directory (merge) does not disturb holders: the mapping stays readable until released.
 */
#ifndef RC_STORE_DATAFILE_H
#define RC_STORE_DATAFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct datafile {
    uint32_t id;
    int fd;
    uint8_t *map;   /* NULL when map_len == 0 */
    size_t map_len; /* bytes mapped; >= size */
    uint64_t size;  /* bytes of records written (the valid prefix) */
    bool writable;  /* the active file: mapped read-write, preallocated to map_len */
    atomic_int refs;
    char *path; /* rc_malloc'ed */
};

/* "DIR/NNNNNN<suffix>" into buf; the id is zero-padded to 6 digits. */
void datafile_path(char *buf, size_t n, const char *dir, uint32_t id, const char *suffix);

/* Opens an existing file read-only-mapped at its current length. refs = 1. */
int datafile_open(const char *path, uint32_t id, struct datafile **out);
/* Creates a new empty file at path (failing if it exists), preallocated and mapped read-write
 * with room for capacity bytes. refs = 1. */
int datafile_create(const char *path, uint32_t id, size_t capacity, struct datafile **out);
/* The same in two steps, so a caller can allocate before a step that must not be undone:
 * datafile_new only allocates (RC_ENOMEM); datafile_create_file makes the file (on error
 * the handle must be released with datafile_unref, which then touches no file). */
int datafile_new(const char *path, uint32_t id, struct datafile **out);
int datafile_create_file(struct datafile *f, size_t capacity);
/* Turns an opened file into the active file: cut to size, preallocate to capacity, map it
 * read-write. On error the file is unchanged and still readable. */
int datafile_make_writable(struct datafile *f, size_t capacity);
/* Cuts the file to the bytes written (f->size) and fsyncs it; it becomes read-only. */
int datafile_seal(struct datafile *f);
/* Undoes datafile_seal of the active file (a roll that could not make the next file): the
 * file gets its preallocated length back and takes writes through its map again. */
int datafile_unseal(struct datafile *f);
/* Cuts a file opened read-only to size bytes (dropping a torn tail) and fsyncs it. */
int datafile_truncate(struct datafile *f, uint64_t size);

void datafile_ref(struct datafile *f);
/* Drops a reference; the last one unmaps, closes and frees. */
void datafile_unref(struct datafile *f);

#endif

/* Whole-chunk file I/O that survives short transfers and EINTR. */
#ifndef EDGEIO_FILEIO_H
#define EDGEIO_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Set by a failing helper: which call failed; errno holds why. */
extern const char *fileio_failed_call;

/* Each returns 0, or -1 with errno and fileio_failed_call set. */
int full_pwrite(int fd, const void *buf, size_t len, off_t offset);
int full_pread(int fd, void *buf, size_t len, off_t offset);

/* Make sure fd holds exactly size bytes of buf's pattern (untimed setup for reads). */
int fill_file(int fd, const void *buf, size_t io_size, unsigned long long size);

/* Evict the file's pages before a cold read: fsync, fadvise, and drop_caches when root.
 * Returns 0, or -1 (errno set) if even the fadvise failed. *dropped_all tells whether
 * /proc/sys/vm/drop_caches was written. */
int drop_file_cache(int fd, int *dropped_all);

#endif

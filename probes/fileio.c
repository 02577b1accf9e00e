/* Whole-chunk pwrite/pread loops, the untimed fill for reads, cache dropping. */
#define _GNU_SOURCE
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fileio_failed_call = "";

int full_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fileio_failed_call = "pwrite";
			return -1;
		}
		if (n == 0) {  /* no progress and no error: treat as a full device */
			errno = ENOSPC;
			fileio_failed_call = "pwrite";
			return -1;
		}
		p += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

int full_pread(int fd, void *buf, size_t len, off_t offset)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fileio_failed_call = "pread";
			return -1;
		}
		if (n == 0) {  /* the file is shorter than --size */
			errno = EIO;
			fileio_failed_call = "pread (unexpected end of file)";
			return -1;
		}
		p += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

int fill_file(int fd, const void *buf, size_t io_size, unsigned long long size)
{
	struct stat st;
	unsigned long long off;

	if (fstat(fd, &st) < 0) {
		fileio_failed_call = "fstat";
		return -1;
	}
	/* Devices and files already of the right size are read as they are. */
	if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size == size)
		return 0;
	if (ftruncate(fd, (off_t)size) < 0) {
		fileio_failed_call = "ftruncate";
		return -1;
	}
	for (off = 0; off < size; off += io_size) {
		size_t len = size - off < io_size ? (size_t)(size - off) : io_size;

		if (full_pwrite(fd, buf, len, (off_t)off) < 0)
			return -1;
	}
	if (fsync(fd) < 0) {
		fileio_failed_call = "fsync";
		return -1;
	}
	return 0;
}

static int write_drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	int ok;

	if (fd < 0)
		return 0;
	ok = write(fd, "1", 1) == 1;
	close(fd);
	return ok;
}

int drop_file_cache(int fd, int *dropped_all)
{
	int err;

	/* Dirty pages cannot be dropped: flush first. Devices may refuse fsync (EINVAL). */
	if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS) {
		fileio_failed_call = "fsync (cold)";
		return -1;
	}
	err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (err && err != ESPIPE) {
		errno = err;
		fileio_failed_call = "posix_fadvise (cold)";
		return -1;
	}
	/* Root also drops every clean page cache page (inside containers /proc/sys is
	 * usually read-only: then fadvise alone has to do). */
	*dropped_all = geteuid() == 0 && write_drop_caches();
	return 0;
}

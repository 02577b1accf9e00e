/*
 * edgeio file probe, after the study's Fig. 3: open the file once, time N
 * repetitions of {write the whole file from offset 0 [+ fsync] | read the whole
 * file} with CLOCK_MONOTONIC, close outside the timing, print one JSON line.
 * The repetitions are timed in batches so a distribution exists without a clock
 * call around every tiny operation.
 */
#define _GNU_SOURCE
#include "cachesweep.h"
#include "config.h"
#include "fileio.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#define TRAP_PORT 0x3f6         /* ATA alternate status: reading it changes nothing */
#endif

/* One repetition: the whole file from offset 0, in io_size calls. */
static int one_repetition(const struct probe_config *cfg, int fd, char *buf)
{
	unsigned long long off;

	if (cfg->op == OP_TRAP) {
#ifdef TRAP_PORT
		buf[0] = (char)inb(TRAP_PORT);
		return 0;
#else
		errno = ENOSYS;
		fileio_failed_call = "inb";
		return -1;
#endif
	}
	for (off = 0; off < cfg->size; off += cfg->io_size) {
		size_t len = cfg->size - off < cfg->io_size ? (size_t)(cfg->size - off)
							    : (size_t)cfg->io_size;
		int rc = cfg->op == OP_READ ? full_pread(fd, buf, len, (off_t)off)
					    : full_pwrite(fd, buf, len, (off_t)off);
		if (rc < 0)
			return -1;
	}
	if (cfg->sync == SYNC_FSYNC && fsync(fd) < 0) {
		fileio_failed_call = "fsync";
		return -1;
	}
	if (cfg->sync == SYNC_FDATASYNC && fdatasync(fd) < 0) {
		fileio_failed_call = "fdatasync";
		return -1;
	}
	return 0;
}

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) * 1e-9;
}

static void fail(struct probe_result *res, const char *what)
{
	res->err = errno ? errno : EIO;
	snprintf(res->error, sizeof(res->error), "%s: %s", what, strerror(errno));
}

/* Split reps over the batches as evenly as possible, the larger ones first. */
static void plan_batches(const struct probe_config *cfg, unsigned long long *batch_reps)
{
	unsigned long long b;

	for (b = 0; b < cfg->batches; b++)
		batch_reps[b] = cfg->reps / cfg->batches + (b < cfg->reps % cfg->batches);
}

static void run_batches(const struct probe_config *cfg, int fd, char *buf,
			unsigned long long *plan, struct probe_result *res)
{
	unsigned long long b, r;
	struct timespec t0, t1, c0, c1;

	for (b = 0; b < cfg->batches; b++) {
		if (cfg->cold && drop_file_cache(fd, &res->cold_dropped_all) < 0) {
			fail(res, fileio_failed_call);
			return;
		}
		/* CPU time brackets the wall-clock window from outside, so it costs the
		 * timed window nothing; it tells time on the CPU from time spent waiting
		 * (for the device, or for a CPU taken by other processes). */
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (r = 0; r < plan[b]; r++) {
			if (one_repetition(cfg, fd, buf) < 0) {
				fail(res, fileio_failed_call);
				return;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
		res->batch_reps[b] = plan[b];
		res->batch_seconds[b] = seconds_between(&t0, &t1);
		res->cpu_seconds += seconds_between(&c0, &c1);
		res->batches_done = b + 1;
	}
}

int main(int argc, char **argv)
{
	struct probe_config cfg;
	struct probe_result res;
	unsigned long long *plan, i;
	char *buf = NULL;
	int fd, flags;

	/* the facts' cache-size fallback (measure/facts.py), shipped in the same static binary */
	if (argc > 1 && strcmp(argv[1], "--cache-sweep") == 0)
		return cache_sweep(argc, argv);
	if (parse_args(argc, argv, &cfg) < 0)
		return 2;
	memset(&res, 0, sizeof(res));
	plan = calloc(cfg.batches, sizeof(*plan));
	res.batch_reps = calloc(cfg.batches, sizeof(*res.batch_reps));
	res.batch_seconds = calloc(cfg.batches, sizeof(*res.batch_seconds));
	/* O_DIRECT wants aligned buffers; 4096 satisfies every common block size. */
	if (!plan || !res.batch_reps || !res.batch_seconds ||
	    posix_memalign((void **)&buf, 4096, (size_t)cfg.io_size)) {
		errno = ENOMEM;
		fail(&res, "allocating buffers");
		print_report(&cfg, &res);
		return 1;
	}
	/* A recognisable pattern, so a test can tell written bytes from leftovers. */
	for (i = 0; i < cfg.io_size; i++)
		buf[i] = (char)('a' + i % 26);
	plan_batches(&cfg, plan);

	flags = O_RDWR | O_CREAT | O_CLOEXEC | (cfg.direct ? O_DIRECT : 0);
	fd = open(cfg.path, flags, 0644);
	if (fd < 0) {
		fail(&res, "open");
		print_report(&cfg, &res);
		return 1;
	}
	/* Untimed setup: reads need the content; writes start from a file of --size bytes;
	 * the trap primitive needs the port (root: CAP_SYS_RAWIO). */
	if (cfg.op == OP_TRAP) {
#ifdef TRAP_PORT
		if (ioperm(TRAP_PORT, 1, 1) < 0)
			fail(&res, "ioperm");
#else
		errno = ENOSYS;
		fail(&res, "op trap (x86 only)");
#endif
	} else if (cfg.op == OP_READ) {
		if (fill_file(fd, buf, (size_t)cfg.io_size, cfg.size) < 0)
			fail(&res, fileio_failed_call);
	} else {
		struct stat st;

		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (unsigned long long)st.st_size != cfg.size && ftruncate(fd, (off_t)cfg.size) < 0)
			fail(&res, "ftruncate");
	}
	if (!res.err)
		run_batches(&cfg, fd, buf, plan, &res);
	if (close(fd) < 0 && !res.err)
		fail(&res, "close");
	print_report(&cfg, &res);
	return res.err ? 1 : 0;
}

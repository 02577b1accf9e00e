/* What one probe run does: parsed from the command line, read by everything else. */
#ifndef EDGEIO_CONFIG_H
#define EDGEIO_CONFIG_H

#include <stddef.h>

/* OP_TRAP: a primitive (the calibration protocol's micro-probe), not a file op: each
 * repetition reads one I/O port QEMU's device model answers (the ATA alternate status
 * port 0x3f6): one trapped register access; x86 only. */
enum probe_op { OP_WRITE_SYNC, OP_WRITE, OP_READ, OP_TRAP };
enum probe_sync { SYNC_NONE, SYNC_FSYNC, SYNC_FDATASYNC };

struct probe_config {
	const char *path;
	unsigned long long size;     /* bytes per repetition: the whole file */
	unsigned long long reps;
	unsigned long long io_size;  /* bytes per pwrite/pread call */
	unsigned long long batches;  /* timed batches (a distribution without a clock call per op) */
	enum probe_op op;
	enum probe_sync sync;        /* SYNC_NONE unless op is write_sync */
	int direct;                  /* O_DIRECT */
	int cold;                    /* drop the file's cached pages before each read repetition */
};

/* Fills cfg from argv. Returns 0, or -1 after printing one usage line on stderr. */
int parse_args(int argc, char **argv, struct probe_config *cfg);

const char *op_name(enum probe_op op);
const char *sync_name(enum probe_sync sync);

#endif

/* Command-line parsing: strict, one usage line on stderr for anything malformed. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024ULL * 1024ULL)

static const char usage[] =
	"usage: fileprobe --path P --size N --reps N --op write_sync|write|read|trap"
	" [--io-size N] [--sync fsync|fdatasync] [--direct] [--cold] [--batches B]";

static int bad(const char *what, const char *value)
{
	if (value)
		fprintf(stderr, "fileprobe: %s '%s'; %s\n", what, value, usage);
	else
		fprintf(stderr, "fileprobe: %s; %s\n", what, usage);
	return -1;
}

/* A positive byte count or count: digits, optionally K/KiB/M/MiB/G/GiB (binary). */
static int parse_count(const char *text, unsigned long long *out)
{
	static const struct { const char *suffix; unsigned long long factor; } units[] = {
		{"", 1}, {"K", 1ULL << 10}, {"KiB", 1ULL << 10}, {"M", 1ULL << 20},
		{"MiB", 1ULL << 20}, {"G", 1ULL << 30}, {"GiB", 1ULL << 30},
	};
	char *end;
	unsigned long long value;
	size_t i;

	if (!text || text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || value == 0)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (value > ~0ULL / units[i].factor)
				return -1;
			*out = value * units[i].factor;
			return 0;
		}
	}
	return -1;
}

const char *op_name(enum probe_op op)
{
	switch (op) {
	case OP_WRITE_SYNC: return "write_sync";
	case OP_WRITE: return "write";
	case OP_TRAP: return "trap";
	default: return "read";
	}
}

const char *sync_name(enum probe_sync sync)
{
	switch (sync) {
	case SYNC_FSYNC: return "fsync";
	case SYNC_FDATASYNC: return "fdatasync";
	default: return "none";
	}
}

int parse_args(int argc, char **argv, struct probe_config *cfg)
{
	const char *op = NULL, *sync = NULL;
	int have_size = 0, have_reps = 0, have_io = 0;
	int i;

	memset(cfg, 0, sizeof(*cfg));
	cfg->batches = 100;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(arg, "--direct") == 0) {
			cfg->direct = 1;
			continue;
		}
		if (strcmp(arg, "--cold") == 0) {
			cfg->cold = 1;
			continue;
		}
		if (strcmp(arg, "--path") && strcmp(arg, "--size") && strcmp(arg, "--reps") &&
		    strcmp(arg, "--op") && strcmp(arg, "--io-size") && strcmp(arg, "--sync") &&
		    strcmp(arg, "--batches"))
			return bad("unknown option", arg);
		if (!val)
			return bad("missing value for", arg);
		i++;
		if (strcmp(arg, "--path") == 0) {
			if (!val[0])
				return bad("empty --path", NULL);
			cfg->path = val;
		} else if (strcmp(arg, "--op") == 0) {
			op = val;
		} else if (strcmp(arg, "--sync") == 0) {
			sync = val;
		} else if (strcmp(arg, "--size") == 0) {
			if (parse_count(val, &cfg->size))
				return bad("--size must be a positive byte count, got", val);
			have_size = 1;
		} else if (strcmp(arg, "--reps") == 0) {
			if (parse_count(val, &cfg->reps))
				return bad("--reps must be a positive integer, got", val);
			have_reps = 1;
		} else if (strcmp(arg, "--io-size") == 0) {
			if (parse_count(val, &cfg->io_size))
				return bad("--io-size must be a positive byte count, got", val);
			have_io = 1;
		} else {
			if (parse_count(val, &cfg->batches))
				return bad("--batches must be a positive integer, got", val);
		}
	}
	if (!cfg->path || !have_size || !have_reps || !op)
		return bad("--path, --size, --reps and --op are required", NULL);

	if (strcmp(op, "write_sync") == 0)
		cfg->op = OP_WRITE_SYNC;
	else if (strcmp(op, "write") == 0)
		cfg->op = OP_WRITE;
	else if (strcmp(op, "read") == 0)
		cfg->op = OP_READ;
	else if (strcmp(op, "trap") == 0)
		cfg->op = OP_TRAP;
	else
		return bad("unknown --op", op);

	/* --sync chooses how write_sync flushes; the other ops never flush, and
	 * harnesses may pass --sync for every cell, so it is accepted and recorded as none. */
	cfg->sync = cfg->op == OP_WRITE_SYNC ? SYNC_FSYNC : SYNC_NONE;
	if (sync) {
		if (strcmp(sync, "fsync") && strcmp(sync, "fdatasync"))
			return bad("unknown --sync", sync);
		if (cfg->op == OP_WRITE_SYNC && strcmp(sync, "fdatasync") == 0)
			cfg->sync = SYNC_FDATASYNC;
	}
	/* Cold only means something for reads; writes stay warm (recorded as such). */
	if (cfg->op != OP_READ)
		cfg->cold = 0;

	/* The study's default: one call for a small file, 1 MiB chunks for a large one. */
	if (!have_io)
		cfg->io_size = cfg->size <= MIB ? cfg->size : MIB;
	if (cfg->io_size > cfg->size)
		cfg->io_size = cfg->size;
	if (cfg->direct && (cfg->size % 512 || cfg->io_size % 512))
		return bad("--direct needs --size and --io-size multiples of 512", NULL);

	if (cfg->batches > cfg->reps)
		cfg->batches = cfg->reps;
	/* Cold reads drop caches before every repetition, so each is timed alone. */
	if (cfg->cold)
		cfg->batches = cfg->reps;
	return 0;
}

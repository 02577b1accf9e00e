/*
 * `fileprobe --cache-sweep [--max-size N]`: a pointer-chasing load-latency sweep, for a
 * target whose sysfs does not give its CPU cache sizes (an emulated arm64 board, some
 * Raspberry Pi kernels). For working sets from 4 KiB up to --max-size (default 64 MiB),
 * in steps of 2 and 1.5, it follows a random cycle through one pointer per 64-byte line,
 * so every load depends on the previous one and the prefetcher cannot guess the next;
 * the time per load rises where the working set outgrows a cache level. It prints one
 * JSON line: {"sweep": "pointer-chase", "line_bytes", "points": [[bytes, ns per load]...]}.
 * measure/facts.py reads the levels off the curve; this file only measures.
 */
#define _GNU_SOURCE
#include "cachesweep.h"
#include "version.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE 64
#define MIN_SIZE (4ULL << 10)
#define DEFAULT_MAX (64ULL << 20)
#define LOADS (1ULL << 18)   /* per trial: < 0.1 s from DRAM natively, ~1 s under TCG */
#define TRIALS 3             /* the fastest trial: a neighbour's burst only makes one slower */

static void *volatile sink;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One random cycle through every line of buf (Sattolo's shuffle: a single cycle). */
static void link_lines(char *buf, size_t lines, size_t *order)
{
	size_t i;

	for (i = 0; i < lines; i++)
		order[i] = i;
	for (i = lines - 1; i > 0; i--) {
		size_t j = (size_t)(next_random() % i);
		size_t t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (i = 0; i < lines; i++)
		*(void **)(buf + order[i] * LINE) = buf + order[(i + 1) % lines] * LINE;
}

static double ns_per_load(char *buf, unsigned long long loads)
{
	void **p = (void **)buf;
	double best = 0;
	int t;

	for (t = 0; t < TRIALS; t++) {
		unsigned long long i;
		double t0 = now();

		for (i = 0; i < loads; i++)
			p = (void **)*p;
		double dt = (now() - t0) / (double)loads * 1e9;
		if (t == 0 || dt < best)
			best = dt;
	}
	sink = p;     /* p escapes, so the chase cannot be optimised away */
	return best;
}

int cache_sweep(int argc, char **argv)
{
	unsigned long long max = DEFAULT_MAX, size;
	char *buf;
	size_t *order;
	int first = 1, half;

	if (argc == 4 && strcmp(argv[2], "--max-size") == 0) {
		char *end;

		max = strtoull(argv[3], &end, 10);
		if (*end || max < MIN_SIZE) {
			fprintf(stderr, "fileprobe: --cache-sweep --max-size wants bytes >= %llu, got '%s'\n",
				MIN_SIZE, argv[3]);
			return 2;
		}
	} else if (argc != 2) {
		fprintf(stderr, "fileprobe: usage: fileprobe --cache-sweep [--max-size BYTES]\n");
		return 2;
	}
	buf = malloc((size_t)max);
	order = malloc((size_t)(max / LINE) * sizeof(*order));
	if (!buf || !order) {
		fprintf(stderr, "fileprobe: --cache-sweep: cannot allocate %llu bytes\n", max);
		return 1;
	}
	memset(buf, 0, (size_t)max);   /* fault every page in before anything is timed */
	/* no "probe" key: this line is not a file-probe record (parse_probe_output) */
	printf("{\"sweep\": \"pointer-chase\", \"version\": \"%s\", \"line_bytes\": %d, "
	       "\"loads\": %llu, \"points\": [", PROBE_VERSION, LINE, LOADS);
	for (size = MIN_SIZE; size <= max; size *= 2) {
		for (half = 0; half < 2; half++) {
			unsigned long long s = half ? size + size / 2 : size;
			size_t lines = (size_t)(s / LINE);

			if (s > max)
				break;
			link_lines(buf, lines, order);
			ns_per_load(buf, lines < LOADS ? lines : LOADS);     /* warm the set up */
			printf("%s[%llu, %.3f]", first ? "" : ", ", s, ns_per_load(buf, LOADS));
			first = 0;
		}
	}
	printf("]}\n");
	free(order);
	free(buf);
	return 0;
}

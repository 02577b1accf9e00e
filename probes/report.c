/* JSON output: a single line on stdout, nothing else ever goes there. */
#include "report.h"
#include "version.h"

#include <stdio.h>

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

void print_report(const struct probe_config *cfg, const struct probe_result *res)
{
	unsigned long long i;
	double total = 0;

	printf("{\"probe\": \"%s\", \"version\": \"%s\", \"op\": \"%s\"", PROBE_NAME,
	       PROBE_VERSION, op_name(cfg->op));
	printf(", \"size\": %llu, \"reps\": %llu, \"io_size\": %llu", cfg->size, cfg->reps,
	       cfg->io_size);
	printf(", \"sync\": \"%s\", \"direct\": %s, \"cache\": \"%s\"", sync_name(cfg->sync),
	       cfg->direct ? "true" : "false", cfg->cold ? "cold" : "warm");
	if (cfg->cold)
		printf(", \"cold_method\": \"%s\"",
		       res->cold_dropped_all ? "fadvise+drop_caches" : "fadvise");
	printf(", \"path\": ");
	print_json_string(cfg->path);

	printf(", \"batch_reps\": [");
	for (i = 0; i < res->batches_done; i++)
		printf("%s%llu", i ? ", " : "", res->batch_reps[i]);
	printf("], \"batch_seconds\": [");
	for (i = 0; i < res->batches_done; i++) {
		printf("%s%.9f", i ? ", " : "", res->batch_seconds[i]);
		total += res->batch_seconds[i];
	}
	printf("], \"total_seconds\": %.9f, \"cpu_seconds\": %.9f, \"errno\": %d, \"error\": ",
	       total, res->cpu_seconds, res->err);
	print_json_string(res->error);
	printf("}\n");
	fflush(stdout);
}

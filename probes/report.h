/* The one JSON line a probe run prints (docs/formats.md, "Probe output"). */
#ifndef EDGEIO_REPORT_H
#define EDGEIO_REPORT_H

#include "config.h"

struct probe_result {
	unsigned long long *batch_reps;  /* repetitions in each finished batch */
	double *batch_seconds;           /* monotonic seconds of each finished batch */
	unsigned long long batches_done;
	double cpu_seconds;              /* process CPU time over the finished batches */
	int cold_dropped_all;            /* drop_caches written (cold mode) */
	int err;                         /* errno of the failing call, or 0 */
	char error[256];                 /* what failed, or empty */
};

void print_report(const struct probe_config *cfg, const struct probe_result *res);

#endif

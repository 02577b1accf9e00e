/* `fileprobe --cache-sweep`: a pointer-chasing load-latency sweep (cachesweep.c). */
#ifndef EDGEIO_CACHESWEEP_H
#define EDGEIO_CACHESWEEP_H

/* argv[1] is "--cache-sweep". Prints one JSON line; returns the exit status. */
int cache_sweep(int argc, char **argv);

#endif

/*
 * pio_cost.c: host-side reference for the call-cost benchmark: nanoseconds per
 * 512-byte pwrite and pread on a file, the syscalls the tender makes per block
 * hypercall. Usage: pio_cost FILE N [BYTES]. Prints {"pio_cost": {...}}.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long n = atol(argv[2]);
    size_t bytes = argc > 3 ? (size_t)atol(argv[3]) : 512;
    static char buf[65536];
    int fd = open(argv[1], O_RDWR);
    if (fd < 0 || n <= 0 || bytes > sizeof(buf))
        return 2;
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (pwrite(fd, buf, bytes, 0) != (ssize_t)bytes)
            return 1;
    double t1 = now();
    for (long i = 0; i < n; i++)
        if (pread(fd, buf, bytes, 0) != (ssize_t)bytes)
            return 1;
    double t2 = now();
    struct timespec ts;
    for (long i = 0; i < n; i++)
        clock_gettime(CLOCK_REALTIME, &ts);
    double t3 = now();
    printf("{\"pio_cost\": {\"n\": %ld, \"bytes\": %zu, \"pwrite_ns\": %.1f, \"pread_ns\": %.1f, "
           "\"clock_gettime_ns\": %.1f}}\n", n, bytes, (t1 - t0) / n * 1e9, (t2 - t1) / n * 1e9,
           (t3 - t2) / n * 1e9);
    return 0;
}

/*
 * clock.c: monotonic time from the cycle counter (TSC / CNTVCT), scaled by the
 * boot info's cpu_cycle_freq; wall time from the tender.
 * ns = (cycles * mult) >> 32 with mult = 1e9 * 2^32 / freq: one multiply per read.
 */
#include "solo5.h"
#include "hypercall.h"

static uint64_t mult, cycles0;

static inline uint64_t cycles(void)
{
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    uint64_t v;
    __asm__ __volatile__("isb; mrs %0, cntvct_el0" : "=r"(v) : : "memory");
    return v;
#endif
}

void clock_init(uint64_t cycle_freq)
{
    mult = cycle_freq ? (uint64_t)(((unsigned __int128)1000000000ULL << 32) / cycle_freq) : 0;
    cycles0 = cycles();
}

solo5_time_t solo5_clock_monotonic(void)
{
    return (uint64_t)(((unsigned __int128)(cycles() - cycles0) * mult) >> 32);
}

solo5_time_t solo5_clock_wall(void)
{
    volatile struct hvt_hc_walltime a = { 0 };
    hvt_hypercall(HVT_HYPERCALL_WALLTIME, &a);
    return a.nsecs;
}

/* hypercall.h: one hvt hypercall: hand the tender the address of its argument. */
#ifndef EDGEIO_HYPERCALL_H
#define EDGEIO_HYPERCALL_H
#include "edgeio_hvt_abi.h"

static inline void hvt_hypercall(unsigned n, volatile void *arg)
{
#if defined(__x86_64__)
    __asm__ __volatile__("outl %0, %1"
                         : : "a"((uint32_t)(uintptr_t)arg),
                             "d"((uint16_t)(HVT_HYPERCALL_PIO_BASE + n))
                         : "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("str %w0, [%1]"
                         : : "rZ"((uint32_t)(uintptr_t)arg),
                             "r"(HVT_HYPERCALL_ADDRESS(n))
                         : "memory");
#else
#error unsupported architecture
#endif
}

/* Boot info, kept by start.c. */
extern const struct hvt_boot_info *hvt_bi;
#endif

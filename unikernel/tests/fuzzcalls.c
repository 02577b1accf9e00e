/*
 * fuzzcalls.c: a pseudo-random sequence of hypercalls (seed=N calls=M), mostly
 * well-formed with random fields (handles, offsets, lengths, buffers, poll
 * timeouts), some with wild addresses or numbers. For the fuzz smoke test: the
 * tender must answer each (EINVAL, a result, or ending the guest with one
 * line), never crash, never touch a file but the disk.
 */
#include "solo5.h"
#include "edgeio_util.h"
#include "hypercall.h"

static uint8_t buf[8192] __attribute__((aligned(4096)));
static uint64_t state;

static uint64_t next(void)      /* xorshift64 */
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* A guest address: mostly the buffer, sometimes anywhere in (or beyond) memory. */
static uint64_t address(uint64_t len)
{
    uint64_t r = next() % 256, mem = hvt_bi->mem_size;
    if (r < 250)
        return (uintptr_t)buf + (len < sizeof(buf) ? next() % (sizeof(buf) - len + 1) : 0);
    if (r < 252)
        return mem - next() % 4096;
    if (r < 254)
        return next() % mem;
    return next();
}

static uint64_t length(uint64_t bs)
{
    switch (next() % 8) {
    case 0: return 0;
    case 1: return next() % 4096;
    case 2: return next() % 32 ? bs * (next() % 70) : next();
    default: return bs * (1 + next() % 4);
    }
}

int solo5_app_main(const struct solo5_start_info *si)
{
    bool ok = true;
    uint64_t seed = arg_u64(si->cmdline, "seed", 1, &ok), calls = arg_u64(si->cmdline, "calls", 100, &ok);
    if (!ok)
        return 2;
    state = seed * 0x9e3779b97f4a7c15ULL + 1;
    solo5_handle_t h = 1;
    struct solo5_block_info info = { .capacity = 65536, .block_size = 512 };
    solo5_block_acquire("storage", &h, &info);
    for (uint64_t i = 0; i < calls; i++) {
        unsigned kind = next() % 16;
        uint64_t handle = next() % 8 ? h : next() % 4 ? next() % 70 : next();
        uint64_t bs = info.block_size;
        if (kind <= 5) {
            uint64_t len = length(bs);
            volatile struct hvt_hc_block_io a = {
                .handle = handle, .len = len, .data = address(len),
                .offset = next() % 4 ? (next() % (info.capacity / bs + 2)) * bs : next(),
            };
            hvt_hypercall(kind % 2 ? HVT_HYPERCALL_BLOCK_READ : HVT_HYPERCALL_BLOCK_WRITE, &a);
        } else if (kind <= 7) {
            volatile struct edgeio_hc_block_flush a = { .handle = handle };
            hvt_hypercall(EDGEIO_HYPERCALL_BLOCK_FLUSH, &a);
        } else if (kind <= 9) {
            volatile struct hvt_hc_poll a = { .timeout_nsecs = next() % 100000 };
            hvt_hypercall(HVT_HYPERCALL_POLL, &a);
        } else if (kind <= 11) {
            uint64_t len = next() % 64 ? next() % 64 : next();
            volatile struct hvt_hc_puts a = { .data = address(len), .len = len };
            hvt_hypercall(HVT_HYPERCALL_PUTS, &a);
        } else if (kind <= 13) {
            volatile struct hvt_hc_walltime a;
            hvt_hypercall(HVT_HYPERCALL_WALLTIME, &a);
        } else if (kind == 14 && next() % 8 == 0) {
            /* a wild hypercall number or argument address: the tender ends the guest */
            uint64_t a = address(64);
#if defined(__x86_64__)
            __asm__ __volatile__("outl %0, %1" : : "a"((uint32_t)a),
                                 "d"((uint16_t)(HVT_HYPERCALL_PIO_BASE + next() % 24)) : "memory");
#else
            __asm__ __volatile__("str %w0, [%1]" : : "rZ"((uint32_t)a),
                                 "r"(HVT_HYPERCALL_ADDRESS(next() % 24)) : "memory");
#endif
        }
    }
    solo5_console_write("fuzzcalls: done\n", 16);
    return 0;
}

/*
 * callcost.c: cost of one hypercall as the guest sees it.
 *
 * Command line: n=N rounds=R. Each round times N bare exits (WALLTIME: the
 * tender only reads the clock), N one-block writes and N one-block reads at
 * offset 0, each loop of the same shape so loop overhead cancels in the
 * differences. Rounds interleave the kinds, so a noisy neighbour slows all
 * alike; the fastest round of each kind is reported, in ns per call, as
 * {"callcost": {...}}.
 */
#include "solo5.h"
#include "edgeio_util.h"
#include "hypercall.h"

static uint8_t block[4096] __attribute__((aligned(4096)));
static char out[512];

int solo5_app_main(const struct solo5_start_info *si)
{
    bool ok = true;
    uint64_t n = arg_u64(si->cmdline, "n", 1000, &ok);
    solo5_handle_t h;
    struct solo5_block_info info;
    if (!ok || n == 0 || solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
        return 2;
    volatile struct hvt_hc_walltime wt;
    volatile struct hvt_hc_block_io io = { .handle = h, .offset = 0,
                                           .data = (uintptr_t)block, .len = info.block_size };

    uint64_t rounds = arg_u64(si->cmdline, "rounds", 5, &ok);
    uint64_t best[3] = { UINT64_MAX, UINT64_MAX, UINT64_MAX };
    for (uint64_t r = 0; r < rounds; r++) {
        uint64_t t0 = solo5_clock_monotonic();
        for (uint64_t i = 0; i < n; i++)
            hvt_hypercall(HVT_HYPERCALL_WALLTIME, &wt);
        uint64_t t1 = solo5_clock_monotonic();
        for (uint64_t i = 0; i < n; i++)
            hvt_hypercall(HVT_HYPERCALL_BLOCK_WRITE, &io);
        uint64_t t2 = solo5_clock_monotonic();
        for (uint64_t i = 0; i < n; i++)
            hvt_hypercall(HVT_HYPERCALL_BLOCK_READ, &io);
        uint64_t t3 = solo5_clock_monotonic();
        uint64_t d[3] = { t1 - t0, t2 - t1, t3 - t2 };
        for (int k = 0; k < 3; k++)
            if (d[k] < best[k])
                best[k] = d[k];
    }
    uint64_t t3 = solo5_clock_monotonic(), t4 = solo5_clock_monotonic();

    struct line l = { out, 0, sizeof(out) };
    line_str(&l, "{\"callcost\": {\"n\": "); line_u64(&l, n);
    line_str(&l, ", \"block_size\": "); line_u64(&l, info.block_size);
    line_str(&l, ", \"rounds\": "); line_u64(&l, rounds);
    line_str(&l, ", \"exit_ns\": "); line_u64(&l, best[0] / n);
    line_str(&l, ", \"write_ns\": "); line_u64(&l, best[1] / n);
    line_str(&l, ", \"read_ns\": "); line_u64(&l, best[2] / n);
    line_str(&l, ", \"clock_read_ns\": "); line_u64(&l, t4 - t3);
    line_str(&l, ", \"ret\": "); line_u64(&l, (uint64_t)io.ret);
    line_str(&l, "}}\n");
    line_write(&l);
    return 0;
}

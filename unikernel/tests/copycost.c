/*
 * copycost.c: what the guest's own copying costs per byte (the mapped
 * transport's data path is exactly this copy, edgeio_copy).
 *
 * Command line: bytes=N rounds=R. Each round copies N bytes RAM -> RAM, and,
 * if the tender mapped the disk (--transport=mapped, disk >= N bytes), RAM ->
 * window and window -> RAM. The fastest round of each is reported as
 * {"copycost": {"bytes": N, "rounds": R, "ram_ps_per_byte": x, "to_disk_ps_per_byte": y,
 * "from_disk_ps_per_byte": z}} (picoseconds per byte, integers: the guest has no floats).
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "edgeio_util.h"

static char out[512];

int solo5_app_main(const struct solo5_start_info *si)
{
    bool ok = true;
    uint64_t n = arg_u64(si->cmdline, "bytes", 1 << 20, &ok);
    uint64_t rounds = arg_u64(si->cmdline, "rounds", 3, &ok);
    solo5_handle_t h;
    struct solo5_block_info info;
    if (!ok || n == 0 || n % 16 || rounds == 0 || 2 * n + 8192 > si->heap_size ||
        solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
        return 2;
    uint8_t *a = (uint8_t *)((si->heap_start + 4095) & ~4095UL), *b = a + ((n + 4095) & ~4095UL);
    uint8_t *disk = 0;
    if (edgeio_block_mapped_supported() && edgeio_block_map(h) == SOLO5_R_OK && info.capacity >= n)
        disk = edgeio_block_window(h);
    uint64_t best[3] = { UINT64_MAX, UINT64_MAX, UINT64_MAX };
    for (uint64_t r = 0; r < rounds; r++) {
        uint64_t t0 = solo5_clock_monotonic();
        edgeio_copy(b, a, n);
        uint64_t t1 = solo5_clock_monotonic(), t2 = t1, t3 = t1;
        if (disk) {
            edgeio_copy(disk, a, n);
            t2 = solo5_clock_monotonic();
            edgeio_copy(b, disk, n);
            t3 = solo5_clock_monotonic();
        }
        uint64_t d[3] = { t1 - t0, t2 - t1, t3 - t2 };
        for (int k = 0; k < 3; k++)
            if (d[k] < best[k])
                best[k] = d[k];
    }
    struct line l = { out, 0, sizeof(out) };
    line_str(&l, "{\"copycost\": {\"bytes\": "); line_u64(&l, n);
    line_str(&l, ", \"rounds\": "); line_u64(&l, rounds);
    line_str(&l, ", \"ram_ps_per_byte\": "); line_u64(&l, best[0] * 1000 / n);
    if (disk) {
        line_str(&l, ", \"to_disk_ps_per_byte\": "); line_u64(&l, best[1] * 1000 / n);
        line_str(&l, ", \"from_disk_ps_per_byte\": "); line_u64(&l, best[2] * 1000 / n);
    }
    line_str(&l, "}}\n");
    line_write(&l);
    return 0;
}

/*
 * mapped.c: block devices the tender mapped into guest memory (edgeio's
 * mapped transport). After edgeio_block_map(h), solo5_block_write/read on h
 * are copies between the caller's buffer and the disk's window: no exit.
 * edgeio_block_flush(h) sends one MAPPED_FLUSH for the range written since
 * the last flush (the tender msyncs it).
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "hypercall.h"
#include "transport.h"

uint8_t *rt_mapped_window[MFT_MAX_ENTRIES];
static uint64_t dirty_lo[MFT_MAX_ENTRIES], dirty_hi[MFT_MAX_ENTRIES];

bool edgeio_block_mapped_supported(void)
{
    return (hvt_bi->host_features & EDGEIO_HF_BLOCK_MAPPED) != 0;
}

solo5_result_t edgeio_block_map(solo5_handle_t h)
{
    if (!edgeio_block_mapped_supported())
        return SOLO5_R_EUNSPEC;
    if (h >= MFT_MAX_ENTRIES)
        return SOLO5_R_EINVAL;
    volatile struct edgeio_hc_mapped_info a = { .handle = h, .ret = HVT_R_EUNSPEC };
    hvt_hypercall(EDGEIO_HYPERCALL_MAPPED_INFO, &a);
    if (a.ret != HVT_R_OK)
        return (solo5_result_t)a.ret;
    rt_mapped_window[h] = (uint8_t *)(uintptr_t)a.window;
    dirty_lo[h] = UINT64_MAX;
    dirty_hi[h] = 0;
    return SOLO5_R_OK;
}

uint8_t *edgeio_block_window(solo5_handle_t h)
{
    return h < MFT_MAX_ENTRIES ? rt_mapped_window[h] : 0;
}

/* n: a multiple of 16 (whole sectors). On a software KVM every guest
 * instruction is emulated, so the copy moves as much per instruction as the
 * general registers allow: rep movsq on x86_64, ldp/stp pairs on aarch64. */
void edgeio_copy(void *dst, const void *src, size_t n)
{
#if defined(__x86_64__)
    size_t q = n / 8;
    __asm__ __volatile__("rep movsq" : "+D"(dst), "+S"(src), "+c"(q) : : "memory");
#else
    uint64_t *d = dst;
    const uint64_t *s = src;
    for (size_t i = 0; i < n / 8; i += 2) {
        uint64_t a = s[i], b = s[i + 1];
        d[i] = a;
        d[i + 1] = b;
    }
#endif
}

solo5_result_t rt_mapped_io(int write, solo5_handle_t h, solo5_off_t offset, uintptr_t buf, size_t size)
{
    uint8_t *disk = rt_mapped_window[h] + offset;
    if (write) {
        edgeio_copy(disk, (const void *)buf, size);
        if (offset < dirty_lo[h])
            dirty_lo[h] = offset;
        if (offset + size > dirty_hi[h])
            dirty_hi[h] = offset + size;
    } else {
        edgeio_copy((void *)buf, disk, size);
    }
    return SOLO5_R_OK;
}

solo5_result_t rt_mapped_flush(solo5_handle_t h)
{
    uint64_t lo = dirty_lo[h], hi = dirty_hi[h];
    volatile struct edgeio_hc_mapped_flush a = {
        .handle = h, .offset = hi > lo ? lo : 0, .len = hi > lo ? hi - lo : 0, .ret = HVT_R_EUNSPEC,
    };
    hvt_hypercall(EDGEIO_HYPERCALL_MAPPED_FLUSH, &a);
    if (a.ret == HVT_R_OK) {
        dirty_lo[h] = UINT64_MAX;
        dirty_hi[h] = 0;
    }
    return (solo5_result_t)a.ret;
}

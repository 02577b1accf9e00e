/*
 * block.c: Solo5 block devices from the manifest the tender placed in memory.
 * As stock bindings, calls are checked here first (whole blocks, aligned,
 * inside the device); the tender checks again, because it trusts no guest.
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "hypercall.h"
#include "transport.h"

static uint32_t max_blocks = 1;     /* 1 = stock Solo5 behaviour */

/* What a block call checks, kept per acquired handle so that a call costs a few
 * compares: on a software KVM every guest instruction is emulated. */
static struct {
    uint64_t capacity, sector_mask, max_len;    /* max_len 0: not acquired */
} dev[MFT_MAX_ENTRIES];

int rt_strcmp(const char *a, const char *b);

static const struct mft *manifest(void)
{
    return (const struct mft *)(uintptr_t)hvt_bi->mft;
}

solo5_result_t solo5_block_acquire(const char *name, solo5_handle_t *handle,
                                   struct solo5_block_info *info)
{
    const struct mft *m = manifest();
    for (uint32_t i = 1; i < m->entries && i < MFT_MAX_ENTRIES; i++) {
        if (m->e[i].type == MFT_DEV_BLOCK_BASIC && m->e[i].attached &&
            rt_strcmp(m->e[i].name, name) == 0) {
            uint64_t bs = m->e[i].u.block_basic.block_size;
            dev[i].capacity = m->e[i].u.block_basic.capacity;
            dev[i].sector_mask = bs - 1;
            dev[i].max_len = bs * max_blocks;
            *handle = i;
            info->capacity = dev[i].capacity;
            info->block_size = bs;
            return SOLO5_R_OK;
        }
    }
    return SOLO5_R_EUNSPEC;
}

solo5_result_t rt_block_check(solo5_handle_t h, solo5_off_t offset, size_t size)
{
    if (h >= MFT_MAX_ENTRIES)
        return SOLO5_R_EINVAL;
    uint64_t cap = dev[h].capacity;
    if (size == 0 || size > dev[h].max_len || ((size | offset) & dev[h].sector_mask) ||
        offset >= cap || size > cap - offset)
        return SOLO5_R_EINVAL;
    return SOLO5_R_OK;
}

static solo5_result_t block_io(unsigned nr, solo5_handle_t h, solo5_off_t offset,
                               uintptr_t buf, size_t size)
{
    if (rt_block_check(h, offset, size) != SOLO5_R_OK)
        return SOLO5_R_EINVAL;
    if (rt_mapped_window[h])        /* a mapped disk: a copy, no exit */
        return rt_mapped_io(nr == HVT_HYPERCALL_BLOCK_WRITE, h, offset, buf, size);
    /* Not volatile: the hypercall's "memory" clobber already makes the
     * compiler store it before and reload ret after (fewer emulated stores). */
    struct hvt_hc_block_io a = {
        .handle = h, .offset = offset, .data = buf, .len = size, .ret = 0,
    };
    hvt_hypercall(nr, &a);
    return (solo5_result_t)a.ret;
}

solo5_result_t solo5_block_write(solo5_handle_t h, solo5_off_t offset,
                                 const uint8_t *buf, size_t size)
{
    return block_io(HVT_HYPERCALL_BLOCK_WRITE, h, offset, (uintptr_t)buf, size);
}

solo5_result_t solo5_block_read(solo5_handle_t h, solo5_off_t offset, uint8_t *buf, size_t size)
{
    return block_io(HVT_HYPERCALL_BLOCK_READ, h, offset, (uintptr_t)buf, size);
}

void edgeio_block_set_max_blocks(uint32_t blocks)
{
    max_blocks = blocks ? blocks : 1;
    for (unsigned i = 0; i < MFT_MAX_ENTRIES; i++)
        if (dev[i].max_len)
            dev[i].max_len = (dev[i].sector_mask + 1) * max_blocks;
}

bool edgeio_block_flush_supported(void)
{
    return (hvt_bi->host_features & EDGEIO_HF_BLOCK_FLUSH) != 0;
}

solo5_result_t edgeio_block_flush(solo5_handle_t h)
{
    if (!edgeio_block_flush_supported())
        return SOLO5_R_EUNSPEC;
    if (h >= MFT_MAX_ENTRIES || !dev[h].max_len)
        return SOLO5_R_EINVAL;
    if (rt_mapped_window[h])
        return rt_mapped_flush(h);
    volatile struct edgeio_hc_block_flush a = { .handle = h, .ret = 0 };
    hvt_hypercall(EDGEIO_HYPERCALL_BLOCK_FLUSH, &a);
    return (solo5_result_t)a.ret;
}

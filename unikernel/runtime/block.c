/*
 * block.c: Solo5 block devices from the manifest the tender placed in memory.
 * As stock bindings, calls are checked here first (whole blocks, aligned,
 * inside the device); the tender checks again, because it trusts no guest.
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "hypercall.h"

static uint32_t max_blocks = 1;     /* 1 = stock Solo5 behaviour */

int rt_strcmp(const char *a, const char *b);

static const struct mft_entry *device(solo5_handle_t h)
{
    const struct mft *m = (const struct mft *)(uintptr_t)hvt_bi->mft;
    if (h == 0 || h >= m->entries || m->e[h].type != MFT_DEV_BLOCK_BASIC || !m->e[h].attached)
        return 0;
    return &m->e[h];
}

solo5_result_t solo5_block_acquire(const char *name, solo5_handle_t *handle,
                                   struct solo5_block_info *info)
{
    const struct mft *m = (const struct mft *)(uintptr_t)hvt_bi->mft;
    for (uint32_t i = 1; i < m->entries; i++) {
        if (m->e[i].type == MFT_DEV_BLOCK_BASIC && m->e[i].attached &&
            rt_strcmp(m->e[i].name, name) == 0) {
            *handle = i;
            info->capacity = m->e[i].u.block_basic.capacity;
            info->block_size = m->e[i].u.block_basic.block_size;
            return SOLO5_R_OK;
        }
    }
    return SOLO5_R_EUNSPEC;
}

static solo5_result_t block_io(unsigned nr, solo5_handle_t h, solo5_off_t offset,
                               uintptr_t buf, size_t size)
{
    const struct mft_entry *e = device(h);
    if (!e)
        return SOLO5_R_EINVAL;
    uint64_t bs = e->u.block_basic.block_size, cap = e->u.block_basic.capacity;
    if (size == 0 || (size & (bs - 1)) || size > bs * max_blocks || (offset & (bs - 1)) ||
        offset >= cap || size > cap - offset)
        return SOLO5_R_EINVAL;
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
}

bool edgeio_block_flush_supported(void)
{
    return (hvt_bi->host_features & EDGEIO_HF_BLOCK_FLUSH) != 0;
}

solo5_result_t edgeio_block_flush(solo5_handle_t h)
{
    if (!edgeio_block_flush_supported())
        return SOLO5_R_EUNSPEC;
    if (!device(h))
        return SOLO5_R_EINVAL;
    volatile struct edgeio_hc_block_flush a = { .handle = h, .ret = 0 };
    hvt_hypercall(EDGEIO_HYPERCALL_BLOCK_FLUSH, &a);
    return (solo5_result_t)a.ret;
}

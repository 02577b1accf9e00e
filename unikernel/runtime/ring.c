/*
 * ring.c: the guest side of edgeio's ring transport: post many block
 * requests, notify the tender once (edgeio_hvt_abi.h has the ring's layout).
 * One ring, for one device, in this runtime's memory.
 *
 * Posting is the whole data path in the guest, and on a software KVM every
 * guest instruction is emulated, so it is kept short: the device's limits are
 * cached here (capacity 0 = no ring, which fails every check), slot i always
 * names descriptor i (written once at setup), and the tender checks it all again.
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "hypercall.h"
#include "transport.h"

static uint8_t ring_mem[EDGEIO_RING_BYTES(EDGEIO_RING_MAX_ENTRIES)] __attribute__((aligned(64)));
static struct {
    volatile struct edgeio_ring *r;
    struct edgeio_ring_desc *desc;
    solo5_handle_t h;
    uint64_t capacity, sector_mask;
    uint32_t mask, prod, batch, queued;
} rg;

bool edgeio_block_ring_supported(void)
{
    return (hvt_bi->host_features & EDGEIO_HF_BLOCK_RING) != 0;
}

solo5_result_t edgeio_block_ring_setup(solo5_handle_t h, uint32_t batch)
{
    if (!edgeio_block_ring_supported())
        return SOLO5_R_EUNSPEC;
    if (rg.r || batch == 0 || batch > EDGEIO_RING_MAX_ENTRIES)
        return SOLO5_R_EINVAL;
    uint32_t entries = 1;
    while (entries < batch)
        entries <<= 1;
    rg.r = (volatile struct edgeio_ring *)ring_mem;
    rg.desc = (struct edgeio_ring_desc *)(ring_mem + EDGEIO_RING_DESC_OFFSET(entries));
    rg.h = h;
    rg.mask = entries - 1;
    rg.batch = batch;
    for (uint32_t i = 0; i < entries; i++)
        rg.r->slot[i] = (uint16_t)i;
    volatile struct edgeio_hc_ring_setup a = {
        .handle = h, .ring = (uintptr_t)ring_mem, .entries = entries, .ret = HVT_R_EUNSPEC,
    };
    hvt_hypercall(EDGEIO_HYPERCALL_RING_SETUP, &a);
    if (a.ret != HVT_R_OK) {
        rg.r = 0;
        return (solo5_result_t)a.ret;
    }
    const struct mft *m = (const struct mft *)(uintptr_t)hvt_bi->mft;
    rg.capacity = m->e[h].u.block_basic.capacity;
    rg.sector_mask = m->e[h].u.block_basic.block_size - 1;
    return SOLO5_R_OK;
}

solo5_result_t edgeio_block_ring_submit(void)
{
    if (!rg.r)
        return SOLO5_R_EINVAL;
    if (rg.queued == 0)
        return SOLO5_R_OK;
    rg.r->req_prod = rg.prod;
    volatile struct edgeio_hc_ring_notify a = { .handle = rg.h, .ret = HVT_R_EUNSPEC };
    hvt_hypercall(EDGEIO_HYPERCALL_RING_NOTIFY, &a);
    rg.queued = 0;
    return a.ret == HVT_R_OK && rg.r->rsp_prod == rg.prod ? SOLO5_R_OK : SOLO5_R_EUNSPEC;
}

static inline solo5_result_t post(uint8_t op, solo5_off_t offset, uintptr_t buf, uint32_t len)
{
    struct edgeio_ring_desc *d = &rg.desc[rg.prod & rg.mask];
    d->offset = offset;
    d->data = buf;
    d->len = len;
    d->flags = 0;
    d->op = op;
    rg.prod++;
    if (++rg.queued == rg.batch)
        return edgeio_block_ring_submit();
    return SOLO5_R_OK;
}

solo5_result_t edgeio_block_ring_post(int write, solo5_off_t offset, uint8_t *buf, size_t size)
{
    uint64_t cap = rg.capacity;
    if (size == 0 || ((size | offset) & rg.sector_mask) || offset >= cap || size > cap - offset ||
        size > UINT32_MAX)
        return SOLO5_R_EINVAL;
    return post(write ? EDGEIO_RING_WRITE : EDGEIO_RING_READ, offset, (uintptr_t)buf, (uint32_t)size);
}

solo5_result_t edgeio_block_ring_flush(void)
{
    solo5_result_t rc = edgeio_block_ring_submit();
    if (rc != SOLO5_R_OK)
        return rc;
    post(EDGEIO_RING_FLUSH, 0, 0, 0);
    return edgeio_block_ring_submit();
}

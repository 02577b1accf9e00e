/*
 * ring_hostile.c: a guest that abuses the ring transport, one way per run.
 *
 * Command line: case=NAME. Each case builds its ring by hand (bypassing the
 * runtime's ring.c), breaks one rule, notifies, and reports "survived" if the
 * tender let it go on -- which the tests count as a tender failure: every case
 * must end the guest with status 3 before anything reaches the disk (every
 * write here targets the disk's first sector, so a served one would show).
 * case=ok posts a good two-segment write and a read (the control).
 * The mapped_* cases issue the mapped transport's hypercalls raw.
 */
#include "solo5.h"
#include "edgeio_util.h"
#include "hypercall.h"

#define ENTRIES 8
static uint8_t ring_mem[EDGEIO_RING_BYTES(ENTRIES) + 64] __attribute__((aligned(64)));
static uint8_t buf[4096] __attribute__((aligned(4096)));
static struct edgeio_ring *r = (struct edgeio_ring *)ring_mem;
static struct edgeio_ring_desc *desc;

static int32_t setup_at(uint64_t handle, uint64_t gpa, uint32_t entries)
{
    volatile struct edgeio_hc_ring_setup a = { .handle = handle, .ring = gpa, .entries = entries,
                                               .ret = -1 };
    hvt_hypercall(EDGEIO_HYPERCALL_RING_SETUP, &a);
    return a.ret;
}

static int32_t notify(uint64_t handle)
{
    volatile struct edgeio_hc_ring_notify a = { .handle = handle, .ret = -1 };
    hvt_hypercall(EDGEIO_HYPERCALL_RING_NOTIFY, &a);
    return a.ret;
}

static void put(uint32_t i, uint8_t op, uint64_t offset, uint64_t data, uint32_t len, uint16_t flags,
                uint16_t next)
{
    desc[i] = (struct edgeio_ring_desc){ .offset = offset, .data = data, .len = len, .flags = flags,
                                         .next = next, .op = op, .status = -1 };
}

/* Post slot -> head, for the next request. */
static void post(uint32_t head)
{
    r->slot[r->req_prod % ENTRIES] = (uint16_t)head;
    r->req_prod++;
}

int solo5_app_main(const struct solo5_start_info *si)
{
    char c[32];
    solo5_handle_t h;
    struct solo5_block_info info;
    if (!arg_str(si->cmdline, "case", c, sizeof(c)) ||
        solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
        return 2;
    uint64_t mem = hvt_bi->mem_size, b = (uintptr_t)buf, bs = info.block_size, cap = info.capacity;
    uint64_t ring = (uintptr_t)ring_mem;
    const uint8_t W = EDGEIO_RING_WRITE, R = EDGEIO_RING_READ;
    desc = (struct edgeio_ring_desc *)(ring_mem + EDGEIO_RING_DESC_OFFSET(ENTRIES));
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = 0x5a;

    /* Cases about registering the ring. */
    if (util_streq(c, "setup_entries_zero"))      setup_at(h, ring, 0);
    else if (util_streq(c, "setup_entries_npot")) setup_at(h, ring, 3);
    else if (util_streq(c, "setup_entries_huge")) setup_at(h, ring, 1u << 31);
    else if (util_streq(c, "setup_outside"))      setup_at(h, mem - 64, ENTRIES);
    else if (util_streq(c, "setup_wrap"))         setup_at(h, UINT64_MAX - 7, ENTRIES);
    else if (util_streq(c, "setup_unaligned"))    setup_at(h, ring + 4, ENTRIES);
    else if (util_streq(c, "setup_over_text"))    setup_at(h, ((uintptr_t)solo5_app_main) & ~7ULL, ENTRIES);
    else if (util_streq(c, "setup_bad_handle"))   setup_at(7, ring, ENTRIES);
    else if (util_streq(c, "setup_twice"))        { setup_at(h, ring, ENTRIES); setup_at(h, ring, ENTRIES); }
    else if (util_streq(c, "notify_no_ring"))     notify(h);
    /* The mapped transport's two hypercalls, issued raw. */
    else if (util_streq(c, "mapped_info")) {
        volatile struct edgeio_hc_mapped_info a = { .handle = h };
        hvt_hypercall(EDGEIO_HYPERCALL_MAPPED_INFO, &a);
    }
    else if (util_streq(c, "mapped_flush_beyond") || util_streq(c, "mapped_flush_wrap")) {
        bool wrap = util_streq(c, "mapped_flush_wrap");
        volatile struct edgeio_hc_mapped_flush a = { .handle = h, .offset = wrap ? bs : cap,
                                                     .len = wrap ? UINT64_MAX - bs + 1 : bs };
        hvt_hypercall(EDGEIO_HYPERCALL_MAPPED_FLUSH, &a);
    }
    else {
        if (setup_at(h, ring, ENTRIES) != HVT_R_OK)
            return 1;
        if (util_streq(c, "ok")) {
            put(0, W, 0, b, (uint32_t)bs, EDGEIO_RING_F_NEXT, 5);  /* a two-segment write ... */
            put(5, 0, 0, b + bs, (uint32_t)bs, 0, 0);
            put(1, R, 0, b + 2048, (uint32_t)bs, 0, 0);           /* ... then read its first sector back */
            post(0);
            post(1);
            buf[2048] = 0;
            if (notify(h) != HVT_R_OK || r->rsp_prod != 2 || desc[0].status != 0 || buf[2048] != 0x5a)
                return 1;
            return 0;
        }
        else if (util_streq(c, "prod_ahead"))      { put(0, W, 0, b, bs, 0, 0); r->req_prod = ENTRIES + 1; }
        else if (util_streq(c, "prod_behind"))     { put(0, W, 0, b, bs, 0, 0); r->req_prod = UINT32_MAX; }
        else if (util_streq(c, "slot_outside"))    { r->slot[0] = ENTRIES; r->req_prod = 1; }
        else if (util_streq(c, "slot_huge"))       { r->slot[0] = 0xffff; r->req_prod = 1; }
        else if (util_streq(c, "chain_loop"))      { put(0, W, 0, b, bs, EDGEIO_RING_F_NEXT, 1);
                                                     put(1, 0, 0, b, bs, EDGEIO_RING_F_NEXT, 0); post(0); }
        else if (util_streq(c, "chain_self"))      { put(0, W, 0, b, bs, EDGEIO_RING_F_NEXT, 0); post(0); }
        else if (util_streq(c, "next_outside"))    { put(0, W, 0, b, bs, EDGEIO_RING_F_NEXT, ENTRIES); post(0); }
        else if (util_streq(c, "shared_desc"))     { put(0, W, 0, b, bs, 0, 0); post(0); post(0); }
        else if (util_streq(c, "buf_outside"))     { put(0, W, 0, mem, bs, 0, 0); post(0); }
        else if (util_streq(c, "buf_straddle"))    { put(0, R, 0, mem - bs / 2, bs, 0, 0); post(0); }
        else if (util_streq(c, "buf_wrap"))        { put(0, R, 0, UINT64_MAX - bs + 1, bs, 0, 0); post(0); }
        else if (util_streq(c, "buf_second_seg"))  { put(0, W, 0, b, bs, EDGEIO_RING_F_NEXT, 1);
                                                     put(1, 0, 0, mem + 4096, bs, 0, 0); post(0); }
        else if (util_streq(c, "len_zero"))        { put(0, W, 0, b, 0, 0, 0); post(0); }
        else if (util_streq(c, "len_unaligned"))   { put(0, W, 0, b, bs + 100, 0, 0); post(0); }
        else if (util_streq(c, "len_max"))         { put(0, R, 0, b, UINT32_MAX - 511, 0, 0); post(0); }
        else if (util_streq(c, "offset_unaligned")) { put(0, W, 100, b, bs, 0, 0); post(0); }
        else if (util_streq(c, "offset_beyond"))   { put(0, W, cap, b, bs, 0, 0); post(0); }
        else if (util_streq(c, "offset_wrap"))     { put(0, W, UINT64_MAX - bs + 1, b, 2 * bs, 0, 0); post(0); }
        else if (util_streq(c, "chain_past_end"))  { put(0, W, cap - bs, b, bs, EDGEIO_RING_F_NEXT, 1);
                                                     put(1, 0, 0, b, bs, 0, 0); post(0); }
        else if (util_streq(c, "read_into_text")) { put(0, R, 0, ((uintptr_t)solo5_app_main) & ~(bs - 1), bs, 0, 0);
                                                     post(0); }
        else if (util_streq(c, "op_unknown"))      { put(0, 9, 0, b, bs, 0, 0); post(0); }
        else if (util_streq(c, "flush_with_buffer")) { put(0, EDGEIO_RING_FLUSH, 0, b, bs, 0, 0); post(0); }
        else if (util_streq(c, "notify_bad_handle")) { put(0, W, 0, b, bs, 0, 0); post(0); notify(9); }
        else {
            solo5_console_write("ring_hostile: unknown case\n", 27);
            return 2;
        }
        notify(h);
    }
    solo5_console_write("ring_hostile: survived\n", 23);
    return 0;
}

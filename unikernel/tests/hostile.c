/*
 * hostile.c: a guest that breaks the hvt ABI on purpose, one way per run.
 *
 * Command line: case=NAME. Each case issues one malformed hypercall straight
 * to the tender (bypassing the bindings' own checks) or breaks a memory
 * protection (null, text, rodata, boot info, page tables, data execution,
 * TLS without TLS), then reports "hostile: survived ret=N" (N: the block
 * call's result) and exits 0. The suite expects either the tender to end the
 * guest with one line and status 3 or, for well-formed block requests it
 * cannot carry out, ret=2 (SOLO5_R_EINVAL) with no file touched.
 * case=ok writes one good block and exits 0 (the control).
 */
#include "solo5.h"
#include "edgeio_util.h"
#include "hypercall.h"

static uint8_t block[4096] __attribute__((aligned(4096)));

static int32_t ret = -1;
static volatile uintptr_t low = 0;     /* addresses the compiler cannot see through */
static const char rodata[] = "read-only";

static void raw_io(unsigned nr, uint64_t handle, uint64_t offset, uint64_t data, uint64_t len)
{
    volatile struct hvt_hc_block_io a = { .handle = handle, .offset = offset, .data = data, .len = len,
                                          .ret = -1 };
    hvt_hypercall(nr, &a);
    ret = a.ret;
}

static void say_survived(void)
{
    char line[48] = "hostile: survived ret=";
    size_t n = 22;
    int32_t v = ret;
    if (v < 0) {
        line[n++] = '-';
        v = -v;
    }
    char digits[12];
    int k = 0;
    do digits[k++] = '0' + v % 10; while ((v /= 10) && k < 11);
    while (k)
        line[n++] = digits[--k];
    line[n++] = '\n';
    solo5_console_write(line, n);
}

/* A hypercall whose argument address (32 bits on the wire) is gpa. */
static void raw_at(unsigned nr, uint64_t gpa)
{
#if defined(__x86_64__)
    __asm__ __volatile__("outl %0, %1" : : "a"((uint32_t)gpa),
                         "d"((uint16_t)(HVT_HYPERCALL_PIO_BASE + nr)) : "memory");
#else
    __asm__ __volatile__("str %w0, [%1]" : : "rZ"((uint32_t)gpa),
                         "r"(HVT_HYPERCALL_ADDRESS(nr)) : "memory");
#endif
}

int solo5_app_main(const struct solo5_start_info *si)
{
    char c[32];
    solo5_handle_t h;
    struct solo5_block_info info;
    if (!arg_str(si->cmdline, "case", c, sizeof(c)) ||
        solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK)
        return 2;
    uint64_t mem = hvt_bi->mem_size, buf = (uintptr_t)block, bs = info.block_size;
    unsigned W = HVT_HYPERCALL_BLOCK_WRITE, R = HVT_HYPERCALL_BLOCK_READ;

    if (util_streq(c, "ok")) {
        for (unsigned i = 0; i < bs; i++)
            block[i] = 0x5a;
        return solo5_block_write(h, 0, block, bs) == SOLO5_R_OK ? 0 : 1;
    }
    else if (util_streq(c, "arg_outside"))      raw_at(W, mem + 4096);
    else if (util_streq(c, "arg_straddle"))     raw_at(W, mem - 8);
    else if (util_streq(c, "arg_top"))          raw_at(W, 0xfffffff8u);
    else if (util_streq(c, "buf_outside"))      raw_io(W, h, 0, mem, bs);
    else if (util_streq(c, "buf_straddle"))     raw_io(R, h, 0, mem - bs / 2, bs);
    else if (util_streq(c, "buf_wrap"))         raw_io(R, h, 0, UINT64_MAX - bs + 1, bs);
    else if (util_streq(c, "len_overflow"))     raw_io(W, h, bs, buf, UINT64_MAX - bs + 1);
    else if (util_streq(c, "offset_wrap"))      raw_io(W, h, UINT64_MAX - bs + 1, buf, 2 * bs);
    else if (util_streq(c, "offset_beyond"))    raw_io(W, h, info.capacity, buf, bs);
    else if (util_streq(c, "offset_last_plus")) raw_io(W, h, info.capacity - bs, buf, 2 * bs);
    else if (util_streq(c, "offset_unaligned")) raw_io(W, h, 100, buf, bs);
    else if (util_streq(c, "len_unaligned"))    raw_io(W, h, 0, buf, bs + 100);
    else if (util_streq(c, "len_zero"))         raw_io(R, h, 0, buf, 0);
    else if (util_streq(c, "too_many_blocks"))  raw_io(W, h, 0, buf, 8 * bs);
    else if (util_streq(c, "handle_bad"))       raw_io(W, 99, 0, buf, bs);
    else if (util_streq(c, "handle_reserved"))  raw_io(R, 0, 0, buf, bs);
    else if (util_streq(c, "handle_huge"))      raw_io(W, UINT64_MAX, 0, buf, bs);
    else if (util_streq(c, "puts_outside")) {
        volatile struct hvt_hc_puts a = { .data = mem - 4, .len = 64 };
        hvt_hypercall(HVT_HYPERCALL_PUTS, &a);
    }
    else if (util_streq(c, "puts_len_overflow")) {
        volatile struct hvt_hc_puts a = { .data = buf, .len = UINT64_MAX - 16 };
        hvt_hypercall(HVT_HYPERCALL_PUTS, &a);
    }
    else if (util_streq(c, "flush_bad_handle")) {
        volatile struct edgeio_hc_block_flush a = { .handle = 42 };
        hvt_hypercall(EDGEIO_HYPERCALL_BLOCK_FLUSH, &a);
    }
    else if (util_streq(c, "hypercall_zero"))   raw_at(0, buf);
    else if (util_streq(c, "hypercall_unknown")) raw_at(12, buf);
    else if (util_streq(c, "net_write"))        raw_at(HVT_HYPERCALL_NET_WRITE, buf);
    else if (util_streq(c, "halt_outside"))     raw_at(HVT_HYPERCALL_HALT, mem);
#if defined(__x86_64__)
    else if (util_streq(c, "port_other"))
        __asm__ __volatile__("outl %0, %1" : : "a"(0u), "d"((uint16_t)0x3f8));
    else if (util_streq(c, "port_in")) {
        uint32_t v;
        __asm__ __volatile__("inl %1, %0" : "=a"(v) : "d"((uint16_t)(HVT_HYPERCALL_PIO_BASE + W)));
    }
    else if (util_streq(c, "port_byte"))
        __asm__ __volatile__("outb %b0, %1" : : "a"(0), "d"((uint16_t)(HVT_HYPERCALL_PIO_BASE + W)));
#endif
    else if (util_streq(c, "read_into_text"))   raw_io(R, h, 0, (uintptr_t)solo5_app_main & ~4095ULL, bs);
    else if (util_streq(c, "null_write"))       *(volatile uint64_t *)(low + 0) = 1;
    else if (util_streq(c, "null_read"))        ret = (int32_t)*(volatile uint64_t *)(low + 8);
    else if (util_streq(c, "text_write"))       *(volatile uint8_t *)(uintptr_t)solo5_app_main = 0xc3;
    else if (util_streq(c, "rodata_write"))     *(volatile char *)(uintptr_t)rodata = 'R';
    else if (util_streq(c, "bootinfo_write"))   *(volatile uint64_t *)(uintptr_t)&hvt_bi->mem_size = 1ULL << 40;
    else if (util_streq(c, "pagetable_write"))  *(volatile uint64_t *)(low + 0x20000) = 0x87;
    else if (util_streq(c, "data_exec")) {
        block[0] = 0xc3;                            /* x86 ret; on aarch64 any byte will do */
        ((void (*)(void))(uintptr_t)block)();
    }
    else if (util_streq(c, "tls_read")) {
        uint64_t v;
#if defined(__x86_64__)
        __asm__ __volatile__("movq %%fs:0x28, %0" : "=r"(v));  /* the stack-protector slot */
#else
        __asm__ __volatile__("mrs %0, tpidr_el0; ldr %0, [%0, #16]" : "=r"(v));
#endif
        ret = (int32_t)v;
    }
#if defined(__x86_64__)
    else if (util_streq(c, "triple_fault")) {
        /* no IDT at all: the page fault cannot be delivered, nor the double fault */
        struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr = { 0, 0 };
        __asm__ __volatile__("lidt %0" : : "m"(idtr));
        *(volatile uint64_t *)(low + 0x18) = 1;
    }
#endif
    else if (util_streq(c, "bad_opcode"))
#if defined(__x86_64__)
        __asm__ __volatile__("ud2");
#else
        __asm__ __volatile__("udf #0");
#endif
    else if (util_streq(c, "wait")) {
        /* The event a test waits for, then block in the tender for good (polls of
         * an hour each, which the tender bounds), until the test ends the tender. */
        solo5_console_write("hostile: waiting\n", 17);
        for (;;) {
            volatile struct hvt_hc_poll a = { .timeout_nsecs = 3600ULL * 1000000000ULL };
            hvt_hypercall(HVT_HYPERCALL_POLL, &a);
        }
    }
    else if (util_streq(c, "poll_long")) {
        volatile struct hvt_hc_poll a = { .timeout_nsecs = UINT64_MAX, .ret = -1 };
        hvt_hypercall(HVT_HYPERCALL_POLL, &a);
        ret = a.ret;
    }
    else if (util_streq(c, "exit2")) return 2;
    else if (util_streq(c, "exit3")) return 3;
    else if (util_streq(c, "exit4")) return 4;
    else if (util_streq(c, "wild_store"))       *(volatile uint64_t *)(uintptr_t)(mem + (64ULL << 20)) = 1;
    else if (util_streq(c, "cpu_halt"))
#if defined(__x86_64__)
        __asm__ __volatile__("hlt");
#else
        __asm__ __volatile__("wfi");
#endif
    else {
        solo5_console_write("hostile: unknown case\n", 22);
        return 2;
    }
    say_survived();
    return 0;
}

/*
 * kvm_x86_64.c: x86_64 guest setup and run loop.
 *
 * The guest starts in 64-bit long mode at its ELF entry, with identity-mapped
 * 2 MiB pages over its memory, rdi = boot info, rsp at the top of memory, and
 * interrupts off. Hypercalls are 32-bit OUTs to ports 0x500 + n.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <x86intrin.h>
#include "tender.h"
#include "kvm_common.h"

const int tender_elf_machine = 62;  /* EM_X86_64 */
const char tender_arch_name[] = "x86_64";

/*
 * Guest-physical layout below the image (x86_64). Only what the guest needs is
 * mapped: the zero page is not (a null dereference faults), nor are the page
 * tables (the guest cannot rewrite its own protections).
 *   0x1000  GDT, TSS, IDT            read-only
 *   0x2000  fault stubs              read + execute
 *   0x3000  fault stack (IST1)       read-write
 *   0x10000 boot info, cmdline, mft  read-only (guest_map_standard)
 *   0x20000..0x100000 page-table pool, unmapped
 */
#define TABLES_BASE   0x1000
#define GDT_BASE      TABLES_BASE
#define TSS_BASE      (TABLES_BASE + 0x80)
#define IDT_BASE      (TABLES_BASE + 0x800)
#define STUBS_BASE    0x2000
#define FAULT_STACK   0x3000
#define PAGE_2M       (2ULL << 20)
#define FAULT_PORT    0x5ff     /* the stubs report a CPU exception here */
#define NVECTORS      32

#define PTE_P   1ULL
#define PTE_RW  2ULL
#define PTE_PS  0x80ULL
#define PTE_NX  (1ULL << 63)

void arch_mem_limits(uint64_t *max_mem)
{
    *max_mem = 512 * PAGE_2M;   /* stock solo5-hvt's x86_64 limit: 1 GiB */
}

static uint64_t leaf_bits(unsigned prot)
{
    return PTE_P | ((prot & GUEST_W) ? PTE_RW : 0) | ((prot & GUEST_X) ? 0 : PTE_NX);
}

/* The page-directory entry for the 2 MiB chunk at gpa: one large page when a
 * single region covers it all, else a table of 4 KiB pages. */
static uint64_t chunk_entry(struct tender *t, uint64_t chunk)
{
    const struct region *r = guest_region_at(t, chunk);
    if (r && r->gpa <= chunk && chunk + PAGE_2M <= r->gpa + r->len)
        return chunk | leaf_bits(r->prot) | PTE_PS;
    uint64_t pt = guest_table_alloc(t);
    uint64_t *pte = (uint64_t *)(t->mem + pt);
    for (unsigned i = 0; i < 512; i++) {
        const struct region *p = guest_region_at(t, chunk + i * GUEST_PAGE);
        pte[i] = p ? (chunk + i * GUEST_PAGE) | leaf_bits(p->prot) : 0;
    }
    return pt | PTE_P | PTE_RW;
}

static void setup_page_tables(struct tender *t)
{
    uint64_t pml4 = guest_table_alloc(t), pdpt = guest_table_alloc(t);
    ((uint64_t *)(t->mem + pml4))[0] = pdpt | PTE_P | PTE_RW;
    uint64_t *pdpte = (uint64_t *)(t->mem + pdpt);
    for (unsigned i = 0; i < t->nregions; i++) {
        const struct region *r = &t->regions[i];
        for (uint64_t c = r->gpa & ~(PAGE_2M - 1); c < r->gpa + r->len; c += PAGE_2M) {
            uint64_t gib = c >> 30;
            if (!pdpte[gib])
                pdpte[gib] = guest_table_alloc(t) | PTE_P | PTE_RW;
            uint64_t *pde = (uint64_t *)(t->mem + (pdpte[gib] & ~0xfffULL));
            unsigned k = (c >> 21) & 511;
            if (!pde[k])
                pde[k] = chunk_entry(t, c);
        }
    }
    t->page_table_root = pml4;
}

/* Interrupt gates for the 32 CPU exceptions, each to a stub that pushes its
 * vector (and a zero where the CPU pushes no error code) and reports the frame
 * on FAULT_PORT, on a stack of its own (IST1) so a wild rsp still reports.
 * A guest that loads its own IDT (stock Solo5 bindings do) handles its own. */
static void setup_fault_handlers(struct tender *t)
{
    static const uint32_t with_error_code = (1u << 8) | (0x1fu << 10) | (1u << 17) |
                                            (1u << 21) | (1u << 29) | (1u << 30);
    uint8_t *stubs = t->mem + STUBS_BASE;
    const uint64_t common = STUBS_BASE + NVECTORS * 16;
    memset(stubs, 0xcc, GUEST_PAGE);                    /* int3 between stubs */
    for (unsigned v = 0; v < NVECTORS; v++) {
        uint8_t *p = stubs + v * 16;
        if (!(with_error_code & (1u << v))) {
            *p++ = 0x6a; *p++ = 0;                      /* push $0 */
        }
        *p++ = 0x6a; *p++ = (uint8_t)v;                 /* push $v */
        *p++ = 0xe9;                                    /* jmp common */
        int32_t rel = (int32_t)(common - (STUBS_BASE + (uint64_t)(p - stubs) + 4));
        memcpy(p, &rel, 4);

        uint64_t h = STUBS_BASE + v * 16;
        uint8_t *g = t->mem + IDT_BASE + v * 16;
        memset(g, 0, 16);
        g[0] = h & 0xff; g[1] = (h >> 8) & 0xff;
        g[2] = 1 << 3;                                  /* code selector */
        g[4] = 1;                                       /* IST1 */
        g[5] = 0x8e;                                    /* present, DPL 0, interrupt gate */
        g[6] = (h >> 16) & 0xff; g[7] = (h >> 24) & 0xff;
    }
    static const uint8_t report[] = {
        0x89, 0xe0,                     /* mov %esp, %eax: the frame */
        0x66, 0xba, FAULT_PORT & 0xff, FAULT_PORT >> 8, /* mov $FAULT_PORT, %dx */
        0xef,                           /* out %eax, %dx */
        0xf4, 0xeb, 0xfd,               /* 1: hlt; jmp 1b */
    };
    memcpy(t->mem + common, report, sizeof(report));

    uint8_t *tss = t->mem + TSS_BASE;
    memset(tss, 0, 104);
    uint64_t ist1 = FAULT_STACK + GUEST_PAGE;
    memcpy(tss + 0x24, &ist1, 8);
    tss[0x66] = 104;                                    /* no I/O permission bitmap */
}

static const char *const exception_names[NVECTORS] = {
    "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range", "invalid opcode",
    "device not available", "double fault", "coprocessor segment overrun", "invalid TSS",
    "segment not present", "stack fault", "general protection fault", "page fault", "reserved",
    "x87 floating-point error", "alignment check", "machine check", "SIMD floating-point error",
    "virtualization exception", "control protection fault",
};

/* A stub reported a CPU exception: one line naming it, then status 3. The frame
 * is in guest memory, so it is read like any guest value. */
static void report_fault(struct tender *t, struct kvm_vm *vm, uint32_t frame_gpa)
{
    uint64_t f[4] = { 0 };      /* vector, error code, rip, cs */
    const void *p = guest_range(t, frame_gpa, sizeof(f));
    if (p)
        memcpy(f, p, sizeof(f));
    const char *name = f[0] < NVECTORS && exception_names[f[0]] ? exception_names[f[0]] : "exception";
    if (f[0] == 14) {
        struct kvm_sregs s;
        uint64_t cr2 = ioctl(vm->vcpu, KVM_GET_SREGS, &s) == 0 ? s.cr2 : 0;
        die_guest(t, "guest fault: page fault (%s, %s) at address 0x%llx, pc 0x%llx",
                  (f[1] & 2) ? "write" : (f[1] & 16) ? "instruction fetch" : "read",
                  (f[1] & 1) ? "page protection" : "page not mapped",
                  (unsigned long long)cr2, (unsigned long long)f[2]);
    }
    die_guest(t, "guest fault: %s (vector %llu, error code 0x%llx) at pc 0x%llx", name,
              (unsigned long long)f[0], (unsigned long long)f[1], (unsigned long long)f[2]);
}

static void setup_cpuid(struct tender *t, struct kvm_vm *vm)
{
    int n = 128;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
    c->nent = n;
    if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c) < 0)
        die_host(t, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
    if (ioctl(vm->vcpu, KVM_SET_CPUID2, c) < 0)
        die_host(t, "KVM_SET_CPUID2: %s", strerror(errno));
    free(c);
}

static void setup_sregs(struct tender *t, struct kvm_vm *vm)
{
    /* Accessed bits preset: the CPU never writes to this read-only page. */
    uint64_t *gdt = (uint64_t *)(t->mem + GDT_BASE);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffULL;             /* 64-bit code, DPL 0 */
    gdt[2] = 0x00cf93000000ffffULL;             /* data, DPL 0 */
    gdt[3] = 103 | ((uint64_t)(TSS_BASE & 0xffffff) << 16) | (0x89ULL << 40) |
             ((uint64_t)(TSS_BASE >> 24) << 56);   /* 64-bit TSS, present */
    gdt[4] = 0;                                 /* TSS base 63:32 */

    struct kvm_sregs s;
    if (ioctl(vm->vcpu, KVM_GET_SREGS, &s) < 0)
        die_host(t, "KVM_GET_SREGS: %s", strerror(errno));
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 1 << 3, .type = 11,
        .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
    };
    struct kvm_segment data = code;
    data.selector = 2 << 3;
    data.type = 3;
    data.l = 0;
    data.db = 1;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr = (struct kvm_segment){ .base = TSS_BASE, .limit = 103, .selector = 3 << 3,
                                 .type = 11, .present = 1 };
    s.gdt.base = GDT_BASE;
    s.gdt.limit = 5 * 8 - 1;
    s.idt.base = IDT_BASE;
    s.idt.limit = NVECTORS * 16 - 1;
    s.cr3 = t->page_table_root;
    s.cr4 = (1 << 5) | (1 << 9) | (1 << 10);           /* PAE, OSFXSR, OSXMMEXCPT */
    /* PE, MP, NE, WP (read-only pages bind the guest kernel too), PG */
    s.cr0 = (1u << 0) | (1u << 1) | (1u << 5) | (1u << 16) | (1u << 31);
    s.efer = (1 << 8) | (1 << 10) | (1 << 11);         /* LME, LMA, NXE */
    if (ioctl(vm->vcpu, KVM_SET_SREGS, &s) < 0)
        die_host(t, "KVM_SET_SREGS: %s", strerror(errno));
}

/* Guest TSC frequency: KVM's figure, else measured against the host clock. */
static uint64_t tsc_frequency(struct kvm_vm *vm)
{
    int khz = ioctl(vm->vcpu, KVM_GET_TSC_KHZ, 0);
    if (khz > 0)
        return (uint64_t)khz * 1000;
    struct timespec a, b, d = { 0, 50 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC_RAW, &a);
    uint64_t c0 = __rdtsc();
    nanosleep(&d, NULL);
    uint64_t c1 = __rdtsc();
    clock_gettime(CLOCK_MONOTONIC_RAW, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    return (uint64_t)((c1 - c0) / s);
}

int arch_run(struct tender *t, const char *cmdline)
{
    struct kvm_vm vm;
    kvm_open(t, &vm);
    setup_cpuid(t, &vm);
    guest_map_region(t, TABLES_BASE, GUEST_PAGE, GUEST_R);
    guest_map_region(t, STUBS_BASE, GUEST_PAGE, GUEST_RX);
    guest_map_region(t, FAULT_STACK, GUEST_PAGE, GUEST_RW);
    guest_map_standard(t);
    setup_page_tables(t);
    setup_fault_handlers(t);
    setup_sregs(t, &vm);
    t->cycle_freq = tsc_frequency(&vm);
    boot_info_place(t, cmdline, tender_host_features(t));

    struct kvm_regs r = {
        .rip = t->entry,
        .rflags = 0x2,
        .rsp = t->mem_size - 8,         /* as after a call: (rsp + 8) % 16 == 0 */
        .rdi = HVT_BOOT_INFO_BASE,
    };
    if (ioctl(vm.vcpu, KVM_SET_REGS, &r) < 0)
        die_host(t, "KVM_SET_REGS: %s", strerror(errno));

    if (t->seccomp)
        seccomp_install(t, &vm);
    struct kvm_run *run = vm.run;
    for (;;) {
        if (kvm_run_once(t, &vm) < 0)
            continue;
        if (run->exit_reason == KVM_EXIT_IO) {
            unsigned port = run->io.port;
            if (port == FAULT_PORT && run->io.direction == KVM_EXIT_IO_OUT && run->io.size == 4) {
                uint32_t frame;
                memcpy(&frame, (uint8_t *)run + run->io.data_offset, sizeof(frame));
                report_fault(t, &vm, frame);
            }
            if (port < HVT_HYPERCALL_PIO_BASE || port >= HVT_HYPERCALL_PIO_BASE + EDGEIO_HYPERCALL_LIMIT)
                die_guest(t, "guest accessed I/O port 0x%x, not a hypercall port", port);
            if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1)
                die_guest(t, "hypercall port 0x%x used with something other than one 32-bit OUT", port);
            uint32_t gpa;
            memcpy(&gpa, (uint8_t *)run + run->io.data_offset, sizeof(gpa));
            int status = hypercall(t, port - HVT_HYPERCALL_PIO_BASE, gpa);
            if (status >= 0)
                return status;
            continue;
        }
        struct kvm_regs regs;
        uint64_t pc = ioctl(vm.vcpu, KVM_GET_REGS, &regs) == 0 ? regs.rip : 0;
        struct kvm_sregs s;
        if (run->exit_reason == KVM_EXIT_SHUTDOWN && ioctl(vm.vcpu, KVM_GET_SREGS, &s) == 0 && s.cr2)
            die_guest(t, "guest fault: triple fault at pc 0x%llx (last page fault at address 0x%llx; "
                      "the guest's IDT could not deliver it)", (unsigned long long)pc,
                      (unsigned long long)s.cr2);
        kvm_unexpected_exit(t, run, pc);
    }
}

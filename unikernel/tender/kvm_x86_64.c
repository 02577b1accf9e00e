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

#define GDT_BASE   0x1000
#define PML4_BASE  0x2000
#define PDPT_BASE  0x3000
#define PD_BASE    0x4000
#define PAGE_2M    (2ULL << 20)

void arch_mem_limits(uint64_t *max_mem)
{
    *max_mem = 512 * PAGE_2M;   /* one page directory of 2 MiB pages: 1 GiB */
}

static void setup_page_tables(struct tender *t)
{
    uint64_t *pml4 = (uint64_t *)(t->mem + PML4_BASE);
    uint64_t *pdpt = (uint64_t *)(t->mem + PDPT_BASE);
    uint64_t *pd = (uint64_t *)(t->mem + PD_BASE);
    pml4[0] = PDPT_BASE | 3;                    /* present, writable */
    pdpt[0] = PD_BASE | 3;
    for (uint64_t i = 0; i < t->mem_size / PAGE_2M; i++)
        pd[i] = (i * PAGE_2M) | 0x83;           /* present, writable, 2 MiB page */
    const struct mapped_window *w;              /* mapped disks: 2 MiB pages, tables outside RAM */
    for (size_t n = mapped_windows(&w), d = 0; d < n; d++)
        for (uint64_t g = w[d].gpa; g < w[d].gpa + w[d].len; g += PAGE_2M) {
            uint64_t table_gpa, *wpd = mapped_tables(g & ~((1ULL << 30) - 1), &table_gpa);
            pdpt[g >> 30] = table_gpa | 3;
            wpd[(g >> 21) & 511] = g | 0x83;
        }
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
    uint64_t *gdt = (uint64_t *)(t->mem + GDT_BASE);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffULL;             /* 64-bit code, DPL 0 */
    gdt[2] = 0x00cf93000000ffffULL;             /* data, DPL 0 */

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
    s.gdt.base = GDT_BASE;
    s.gdt.limit = 3 * 8 - 1;
    s.cr3 = PML4_BASE;
    s.cr4 = (1 << 5) | (1 << 9) | (1 << 10);           /* PAE, OSFXSR, OSXMMEXCPT */
    s.cr0 = (1u << 0) | (1u << 1) | (1u << 5) | (1u << 31); /* PE, MP, NE, PG */
    s.efer = (1 << 8) | (1 << 10);                     /* LME, LMA */
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
    setup_page_tables(t);
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

    struct kvm_run *run = vm.run;
    for (;;) {
        if (kvm_run_once(t, &vm) < 0)
            continue;
        if (run->exit_reason == KVM_EXIT_IO) {
            unsigned port = run->io.port;
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
        kvm_unexpected_exit(t, run, pc);
    }
}

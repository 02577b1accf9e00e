/*
 * kvm_aarch64.c: aarch64 guest setup and run loop (for the Pi 4: Cortex-A72).
 *
 * The guest starts at EL1h with the MMU on: 4 KiB granule, 39-bit addresses,
 * translation tables built from the tender's region list (kvm_common.h): text
 * read-only and executable, rodata read-only, data, heap and stack read-write
 * and never executable (SCTLR.WXN too), the zero page and the tables themselves
 * unmapped; the hypercall window at 0x1_0000_0000 is device memory.
 * VBAR_EL1 points at tender-placed vectors that report any exception the guest
 * does not handle itself. x0 = boot info, sp = top of RAM.
 * Hypercalls are 32-bit stores to 0x1_0000_0000 + (n << 3): MMIO exits, as
 * no memory slot lies there.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include "tender.h"
#include "kvm_common.h"

const int tender_elf_machine = 183; /* EM_AARCH64 */
const char tender_arch_name[] = "aarch64";

#define VECTORS_BASE   0x2000       /* 2 KiB aligned, read + execute */
#define GIB            (1ULL << 30)
#define FAULT_SLOT     31           /* the vectors store to HVT_HYPERCALL_ADDRESS(31) */

#define CORE_REG(field) (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | \
                         (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))
#define SYS_REG(op0, op1, crn, crm, op2) (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | \
        KVM_REG_ARM64_SYSREG | ((uint64_t)(op0) << 14) | ((uint64_t)(op1) << 11) | \
        ((uint64_t)(crn) << 7) | ((uint64_t)(crm) << 3) | (uint64_t)(op2))

#define REG_SCTLR_EL1  SYS_REG(3, 0, 1, 0, 0)
#define REG_CPACR_EL1  SYS_REG(3, 0, 1, 0, 2)
#define REG_TTBR0_EL1  SYS_REG(3, 0, 2, 0, 0)
#define REG_TCR_EL1    SYS_REG(3, 0, 2, 0, 2)
#define REG_MAIR_EL1   SYS_REG(3, 0, 10, 2, 0)
#define REG_VBAR_EL1   SYS_REG(3, 0, 12, 0, 0)
#define REG_ESR_EL1    SYS_REG(3, 0, 5, 2, 0)
#define REG_FAR_EL1    SYS_REG(3, 0, 6, 0, 0)
#define REG_TPIDR_EL0  SYS_REG(3, 3, 13, 0, 2)
#define REG_TPIDR_EL1  SYS_REG(3, 0, 13, 0, 4)

#define PSTATE_EL1H_MASKED 0x3c5ULL    /* D, A, I, F masked; EL1 with SP_EL1 */

void arch_mem_limits(uint64_t *max_mem)
{
    *max_mem = 4 * GIB; /* stock solo5-hvt's aarch64 limit: RAM below the hypercall window */
}

static void set_reg(struct tender *t, int vcpu, uint64_t id, uint64_t value)
{
    struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)&value };
    if (ioctl(vcpu, KVM_SET_ONE_REG, &r) < 0)
        die_host(t, "KVM_SET_ONE_REG 0x%llx: %s", (unsigned long long)id, strerror(errno));
}

static uint64_t get_reg(int vcpu, uint64_t id)
{
    uint64_t value = 0;
    struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)&value };
    ioctl(vcpu, KVM_GET_ONE_REG, &r);
    return value;
}

/* Lower and upper attributes of a block or page for a region's permissions. */
static uint64_t leaf_bits(unsigned prot)
{
    const uint64_t af = 1ULL << 10, inner_shareable = 3ULL << 8, ro = 2ULL << 6;
    const uint64_t normal = 1ULL << 2, device = 0ULL << 2, pxn = 1ULL << 53, uxn = 1ULL << 54;
    uint64_t b = af | uxn | ((prot & GUEST_W) ? 0 : ro) | ((prot & GUEST_X) ? 0 : pxn);
    return b | ((prot & GUEST_DEVICE) ? device : normal | inner_shareable);
}

/* The descriptor for [va, va + size) at one level: a block when one region
 * covers it all, else a next-level table (size 4 KiB: a page or nothing). */
static uint64_t descriptor(struct tender *t, uint64_t va, uint64_t size)
{
    const struct region *r = guest_region_at(t, va);
    if (size == GUEST_PAGE)
        return r ? va | leaf_bits(r->prot) | 3 : 0;
    if (r && r->gpa <= va && va + size <= r->gpa + r->len)
        return va | leaf_bits(r->prot) | 1;
    int touched = 0;
    for (unsigned i = 0; i < t->nregions; i++)
        if (t->regions[i].gpa < va + size && va < t->regions[i].gpa + t->regions[i].len)
            touched = 1;
    if (!touched)
        return 0;
    uint64_t pa = guest_table_alloc(t), sub = size / 512;
    uint64_t *e = (uint64_t *)(t->mem + pa);
    for (unsigned i = 0; i < 512; i++)
        e[i] = descriptor(t, va + i * sub, sub);
    return pa | 3;
}

static void setup_page_tables(struct tender *t)
{
    uint64_t l1 = guest_table_alloc(t);
    uint64_t *e = (uint64_t *)(t->mem + l1);
    for (unsigned i = 0; i < 512; i++)
        e[i] = descriptor(t, i * GIB, GIB);
    t->page_table_root = l1;
}

/* Each of the 16 vectors: w1 = its index, store it to the fault slot (an MMIO
 * exit the tender reports with ESR, FAR and ELR), then spin. */
static void setup_vectors(struct tender *t)
{
    _Static_assert(HVT_HYPERCALL_MMIO_BASE == 1ULL << 32, "the vectors build this address");
    uint32_t *v = (uint32_t *)(t->mem + VECTORS_BASE);
    memset(v, 0, 2048);
    for (uint32_t i = 0; i < 16; i++) {
        uint32_t *p = v + i * 32;           /* 0x80 bytes per vector */
        p[0] = 0x52800001u | (i << 5);      /* movz w1, #i */
        p[1] = 0xd2c00020u;                 /* movz x0, #1, lsl #32 */
        p[2] = 0xb9000001u | ((FAULT_SLOT * 8 / 4) << 10);  /* str w1, [x0, #FAULT_SLOT*8] */
        p[3] = 0x14000000u;                 /* b . */
    }
}

static void report_fault(struct tender *t, int vcpu, uint32_t vector)
{
    uint64_t esr = get_reg(vcpu, REG_ESR_EL1), far = get_reg(vcpu, REG_FAR_EL1);
    uint64_t elr = get_reg(vcpu, CORE_REG(elr_el1));
    unsigned ec = (esr >> 26) & 0x3f, fsc = esr & 0x3f;
    const char *kind = (fsc & 0x3c) == 0x04 ? "page not mapped" :
                       (fsc & 0x3c) == 0x0c ? "page protection" : "other";
    if (ec == 0x25)
        die_guest(t, "guest fault: data abort (%s, %s) at address 0x%llx, pc 0x%llx",
                  (esr & (1u << 6)) ? "write" : "read", kind,
                  (unsigned long long)far, (unsigned long long)elr);
    if (ec == 0x21)
        die_guest(t, "guest fault: instruction abort (%s) at address 0x%llx, pc 0x%llx", kind,
                  (unsigned long long)far, (unsigned long long)elr);
    if (ec == 0x00)
        die_guest(t, "guest fault: undefined instruction at pc 0x%llx", (unsigned long long)elr);
    die_guest(t, "guest fault: exception class 0x%x (vector %u, ESR 0x%llx, FAR 0x%llx) at pc 0x%llx",
              ec, vector, (unsigned long long)esr, (unsigned long long)far, (unsigned long long)elr);
}

static void setup_vcpu(struct tender *t, struct kvm_vm *vm)
{
    struct kvm_vcpu_init init;
    if (ioctl(vm->vm, KVM_ARM_PREFERRED_TARGET, &init) < 0)
        die_host(t, "KVM_ARM_PREFERRED_TARGET: %s", strerror(errno));
    if (ioctl(vm->vcpu, KVM_ARM_VCPU_INIT, &init) < 0)
        die_host(t, "KVM_ARM_VCPU_INIT: %s", strerror(errno));

    set_reg(t, vm->vcpu, REG_CPACR_EL1, 3ULL << 20);        /* FP/SIMD not trapped */
    set_reg(t, vm->vcpu, REG_MAIR_EL1, 0xffULL << 8);       /* attr0 device nGnRnE, attr1 normal WB */
    set_reg(t, vm->vcpu, REG_TCR_EL1,
            25 |                /* T0SZ: 39-bit addresses, walk starts at level 1 */
            (1ULL << 8) | (1ULL << 10) | (3ULL << 12) |     /* WB cacheable, inner shareable */
            (1ULL << 23) |      /* EPD1: no TTBR1 walks */
            (1ULL << 32));      /* IPS: 36-bit physical addresses */
    set_reg(t, vm->vcpu, REG_TTBR0_EL1, t->page_table_root);
    set_reg(t, vm->vcpu, REG_VBAR_EL1, VECTORS_BASE);
    /* No TLS until the guest sets one: a TLS access then hits the unmapped zero page
     * (KVM leaves these registers with an arbitrary reset value). */
    set_reg(t, vm->vcpu, REG_TPIDR_EL0, 0);
    set_reg(t, vm->vcpu, REG_TPIDR_EL1, 0);
    uint64_t sctlr = get_reg(vm->vcpu, REG_SCTLR_EL1);
    /* M, C, I; WXN: a writable page is never executable, whatever a table says */
    set_reg(t, vm->vcpu, REG_SCTLR_EL1, sctlr | 1 | (1 << 2) | (1 << 12) | (1 << 19));

    set_reg(t, vm->vcpu, CORE_REG(regs.pstate), PSTATE_EL1H_MASKED);
    set_reg(t, vm->vcpu, CORE_REG(sp_el1), t->mem_size - 16);
    set_reg(t, vm->vcpu, CORE_REG(regs.regs[0]), HVT_BOOT_INFO_BASE);
    set_reg(t, vm->vcpu, CORE_REG(regs.pc), t->entry);
}

static uint64_t counter_frequency(void)
{
    uint64_t f;
    __asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(f));
    return f;
}

int arch_run(struct tender *t, const char *cmdline)
{
    struct kvm_vm vm;
    kvm_open(t, &vm);
    guest_map_region(t, VECTORS_BASE, GUEST_PAGE, GUEST_RX);
    guest_map_standard(t);
    guest_map_region(t, HVT_HYPERCALL_MMIO_BASE, GIB, GUEST_RW | GUEST_DEVICE);
    setup_page_tables(t);
    setup_vectors(t);
    setup_vcpu(t, &vm);
    t->cycle_freq = counter_frequency();
    boot_info_place(t, cmdline, tender_host_features(t));

    if (t->seccomp)
        seccomp_install(t, &vm);
    struct kvm_run *run = vm.run;
    for (;;) {
        if (kvm_run_once(t, &vm) < 0)
            continue;
        if (run->exit_reason == KVM_EXIT_MMIO) {
            uint64_t a = run->mmio.phys_addr;
            if (a == HVT_HYPERCALL_ADDRESS(FAULT_SLOT) && run->mmio.is_write && run->mmio.len == 4) {
                uint32_t vector;
                memcpy(&vector, run->mmio.data, sizeof(vector));
                report_fault(t, vm.vcpu, vector);
            }
            if (a >= HVT_HYPERCALL_MMIO_BASE &&
                a < HVT_HYPERCALL_ADDRESS(EDGEIO_HYPERCALL_LIMIT) && (a & 7) == 0) {
                if (!run->mmio.is_write || run->mmio.len != 4)
                    die_guest(t, "hypercall address 0x%llx used with something other than a 32-bit store",
                              (unsigned long long)a);
                uint32_t gpa;
                memcpy(&gpa, run->mmio.data, sizeof(gpa));
                int status = hypercall(t, (unsigned)((a - HVT_HYPERCALL_MMIO_BASE) >> 3), gpa);
                if (status >= 0)
                    return status;
                continue;
            }
        }
        kvm_unexpected_exit(t, run, get_reg(vm.vcpu, CORE_REG(regs.pc)));
    }
}

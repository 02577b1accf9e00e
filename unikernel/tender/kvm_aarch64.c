/*
 * kvm_aarch64.c: aarch64 guest setup and run loop (for the Pi 4: Cortex-A72).
 *
 * The guest starts at EL1h with the MMU on: 4 KiB granule, 39-bit addresses,
 * level-1 1 GiB blocks mapping its RAM as normal memory and the hypercall
 * window at 0x1_0000_0000 as device memory. x0 = boot info, sp = top of RAM.
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

#define PGTABLE_BASE   0x1000
#define GIB            (1ULL << 30)

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

#define PSTATE_EL1H_MASKED 0x3c5ULL    /* D, A, I, F masked; EL1 with SP_EL1 */

void arch_mem_limits(uint64_t *max_mem)
{
    *max_mem = GIB;     /* hypercall arguments are 32-bit addresses; keep it as x86_64 */
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

static void setup_page_tables(struct tender *t)
{
    uint64_t *l1 = (uint64_t *)(t->mem + PGTABLE_BASE);
    const uint64_t block = 1, af = 1ULL << 10, inner_shareable = 3ULL << 8;
    const uint64_t normal = 1ULL << 2, device = 0ULL << 2, xn = (1ULL << 53) | (1ULL << 54);
    for (uint64_t gib = 0; gib * GIB < t->mem_size; gib++)
        l1[gib] = gib * GIB | block | af | inner_shareable | normal;
    l1[HVT_HYPERCALL_MMIO_BASE / GIB] = HVT_HYPERCALL_MMIO_BASE | block | af | device | xn;
    const struct mapped_window *w;              /* mapped disks: normal memory, never executed */
    for (size_t n = mapped_windows(&w), d = 0; d < n; d++)
        for (uint64_t g = w[d].gpa; g < w[d].gpa + w[d].len; g += GIB)
            l1[g / GIB] = g | block | af | inner_shareable | normal | xn;
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
    set_reg(t, vm->vcpu, REG_TTBR0_EL1, PGTABLE_BASE);
    uint64_t sctlr = get_reg(vm->vcpu, REG_SCTLR_EL1);
    set_reg(t, vm->vcpu, REG_SCTLR_EL1, sctlr | 1 | (1 << 2) | (1 << 12)); /* M, C, I */

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
    setup_page_tables(t);
    setup_vcpu(t, &vm);
    t->cycle_freq = counter_frequency();
    boot_info_place(t, cmdline, tender_host_features(t));

    struct kvm_run *run = vm.run;
    for (;;) {
        if (kvm_run_once(t, &vm) < 0)
            continue;
        if (run->exit_reason == KVM_EXIT_MMIO) {
            uint64_t a = run->mmio.phys_addr;
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

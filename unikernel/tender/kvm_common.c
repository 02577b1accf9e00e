/* kvm_common.c: open KVM, create the VM with one memory slot and one vCPU;
 * the guest's region list, from which the arch code builds its page tables. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include "tender.h"
#include "kvm_common.h"

void kvm_open(struct tender *t, struct kvm_vm *vm)
{
    vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm < 0)
        die_bad_input("cannot open /dev/kvm: %s", strerror(errno));
    if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
        die_host(t, "/dev/kvm speaks an unknown KVM API version");
    vm->vm = ioctl(vm->kvm, KVM_CREATE_VM, 0);
    if (vm->vm < 0)
        die_host(t, "KVM_CREATE_VM: %s", strerror(errno));
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = t->mem_size,
        .userspace_addr = (uint64_t)(uintptr_t)t->mem,
    };
    if (ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die_host(t, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
    mapped_add_slots(t, vm->vm);
    vm->vcpu = ioctl(vm->vm, KVM_CREATE_VCPU, 0);
    if (vm->vcpu < 0)
        die_host(t, "KVM_CREATE_VCPU: %s", strerror(errno));
    int size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < (int)sizeof(struct kvm_run))
        die_host(t, "KVM_GET_VCPU_MMAP_SIZE failed");
    vm->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
    if (vm->run == MAP_FAILED)
        die_host(t, "mmap of the vCPU run area: %s", strerror(errno));
}

/* One KVM_RUN; 0 on a VM exit to handle, -1 when interrupted by a signal. */
int kvm_run_once(struct tender *t, struct kvm_vm *vm)
{
    if (ioctl(vm->vcpu, KVM_RUN, 0) == 0)
        return 0;
    if (errno == EINTR || errno == EAGAIN) {
        t->c.other_exits++;
        return -1;
    }
    if (errno == EFAULT) {
        mapped_check_disks(t);          /* a mapped disk truncated under the guest? */
        die_guest(t, "guest memory access the host could not translate");
    }
    die_host(t, "KVM_RUN: %s", strerror(errno));
}

/* Common endings of a guest: the exits that are not hypercalls. */
void kvm_unexpected_exit(struct tender *t, struct kvm_run *run, uint64_t pc)
{
    switch (run->exit_reason) {
    case KVM_EXIT_SHUTDOWN:
        die_guest(t, "guest crashed (CPU shutdown, e.g. triple fault) at pc 0x%llx",
                  (unsigned long long)pc);
    case KVM_EXIT_HLT:
        die_guest(t, "guest halted the CPU without the HALT hypercall at pc 0x%llx",
                  (unsigned long long)pc);
    case KVM_EXIT_MMIO:
        mapped_check_disks(t);          /* some KVMs report an unbacked mapped page as MMIO */
        die_guest(t, "guest %s unmapped address 0x%llx at pc 0x%llx",
                  run->mmio.is_write ? "wrote to" : "read from",
                  (unsigned long long)run->mmio.phys_addr, (unsigned long long)pc);
    case KVM_EXIT_FAIL_ENTRY:
        die_guest(t, "KVM could not enter the guest (reason 0x%llx)",
                  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
    case KVM_EXIT_INTERNAL_ERROR:
        die_guest(t, "KVM internal error %u at pc 0x%llx (guest ran something it cannot emulate)",
                  run->internal.suberror, (unsigned long long)pc);
    default:
        die_guest(t, "unexpected VM exit %u at pc 0x%llx", run->exit_reason,
                  (unsigned long long)pc);
    }
}

void guest_map_region(struct tender *t, uint64_t gpa, uint64_t len, unsigned prot)
{
    if ((prot & GUEST_W) && (prot & GUEST_X))
        die_host(t, "guest region 0x%llx: writable and executable", (unsigned long long)gpa);
    if (len == 0 || (gpa | len) % GUEST_PAGE || gpa > GUEST_MAP_LIMIT || len > GUEST_MAP_LIMIT - gpa)
        die_host(t, "guest region 0x%llx (+%llu bytes): not whole pages below 512 GiB",
                 (unsigned long long)gpa, (unsigned long long)len);
    for (unsigned i = 0; i < t->nregions; i++) {
        const struct region *r = &t->regions[i];
        if (gpa < r->gpa + r->len && r->gpa < gpa + len)
            die_host(t, "guest region 0x%llx overlaps 0x%llx", (unsigned long long)gpa,
                     (unsigned long long)r->gpa);
    }
    if (t->nregions == MAX_REGIONS)
        die_host(t, "too many guest regions");
    t->regions[t->nregions++] = (struct region){ gpa, len, prot };
}

uint64_t guest_table_alloc(struct tender *t)
{
    static uint64_t next = PT_POOL_BASE;
    if (next >= PT_POOL_END)
        die_host(t, "guest page tables do not fit below 1 MiB");
    uint64_t pa = next;
    next += GUEST_PAGE;
    memset(t->mem + pa, 0, GUEST_PAGE);
    return pa;
}

const struct region *guest_region_at(const struct tender *t, uint64_t gpa)
{
    for (unsigned i = 0; i < t->nregions; i++)
        if (gpa - t->regions[i].gpa < t->regions[i].len)
            return &t->regions[i];
    return NULL;
}

void guest_map_standard(struct tender *t)
{
    /* Boot info, command line, manifest copy: the guest reads them, never writes. */
    guest_map_region(t, HVT_BOOT_INFO_BASE, HVT_GUEST_LOW_END - HVT_BOOT_INFO_BASE, GUEST_R);
    for (unsigned i = 0; i < t->nsegments; i++)
        guest_map_region(t, t->segments[i].gpa, t->segments[i].len, t->segments[i].prot);
    guest_map_region(t, t->kernel_end, t->mem_size - t->kernel_end, GUEST_RW);
}

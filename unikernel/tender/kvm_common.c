/* kvm_common.c: open KVM, create the VM with one memory slot and one vCPU. */
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

#ifndef EDGEIO_KVM_COMMON_H
#define EDGEIO_KVM_COMMON_H
#include <linux/kvm.h>
#include "tender.h"

struct kvm_vm { int kvm, vm, vcpu; struct kvm_run *run; };

void kvm_open(struct tender *t, struct kvm_vm *vm);
int kvm_run_once(struct tender *t, struct kvm_vm *vm);
void kvm_unexpected_exit(struct tender *t, struct kvm_run *run, uint64_t pc) __attribute__((noreturn));

/*
 * The guest's address space is a list of regions, each identity-mapped with
 * its own permissions; the arch code builds its page tables from the list and
 * leaves everything else unmapped (zero page, page tables, the gaps). W+X is
 * refused, so is an overlap or a range that is not 4 KiB aligned (die_host:
 * these are the tender's own requests). Call before arch_run() builds them.
 */
#define GUEST_R  1u
#define GUEST_W  2u
#define GUEST_X  4u
#define GUEST_RW (GUEST_R | GUEST_W)
#define GUEST_RX (GUEST_R | GUEST_X)
#define GUEST_DEVICE 8u         /* aarch64: device memory (the hypercall window) */
#define GUEST_PAGE 4096ULL
#define GUEST_MAP_LIMIT (512ULL << 30)  /* one top-level entry on both arches */

void guest_map_region(struct tender *t, uint64_t gpa, uint64_t len, unsigned prot);
/* A zeroed page for the page tables, from [0x20000, 1 MiB): unmapped to the guest. */
#define PT_POOL_BASE 0x20000ULL
#define PT_POOL_END  HVT_GUEST_MIN_BASE
uint64_t guest_table_alloc(struct tender *t);
/* The region holding gpa, or NULL (the page-table builders' lookup). */
const struct region *guest_region_at(const struct tender *t, uint64_t gpa);
/* The fixed regions of every guest: boot info, command line and manifest copy
 * read-only; the ELF's segments as loaded; heap and stack read-write. */
void guest_map_standard(struct tender *t);
#endif

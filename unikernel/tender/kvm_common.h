#ifndef EDGEIO_KVM_COMMON_H
#define EDGEIO_KVM_COMMON_H
#include <linux/kvm.h>
#include "tender.h"

struct kvm_vm { int kvm, vm, vcpu; struct kvm_run *run; };

void kvm_open(struct tender *t, struct kvm_vm *vm);
int kvm_run_once(struct tender *t, struct kvm_vm *vm);
void kvm_unexpected_exit(struct tender *t, struct kvm_run *run, uint64_t pc) __attribute__((noreturn));
#endif

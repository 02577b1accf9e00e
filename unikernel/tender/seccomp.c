/*
 * seccomp.c: the tender's syscall filter (raw BPF: no library, so the static
 * aarch64 cross-build needs nothing more than the x86_64 one).
 *
 * Installed with PR_SET_NO_NEW_PRIVS after all setup and right before the
 * first KVM_RUN: from then on the tender can only run the vCPU, read and write
 * its opened disks, write to the console, read clocks, sleep and exit. Any
 * other syscall kills the process (SIGSYS). One table, one row per syscall;
 * transports that need more (ring, mapped disk) add rows here.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include "tender.h"
#include "kvm_common.h"

#if defined(__x86_64__)
#define FILTER_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FILTER_ARCH AUDIT_ARCH_AARCH64
#endif

/* Which first argument (a file descriptor) a row allows. */
enum fd_class { FD_ANY, FD_DISK, FD_VCPU, FD_CONSOLE };

struct rule {
    long nr;
    enum fd_class fd;
    unsigned long ioctls[6];    /* with FD_VCPU: the allowed requests (0 ends) */
};

static const struct rule rules[] = {
    { __NR_ioctl, FD_VCPU, { KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_ONE_REG } },
    { __NR_pread64, FD_DISK, {0} },
    { __NR_pwrite64, FD_DISK, {0} },
    { __NR_preadv, FD_DISK, {0} },
    { __NR_pwritev, FD_DISK, {0} },
    { __NR_fsync, FD_DISK, {0} },
    { __NR_fdatasync, FD_DISK, {0} },
    { __NR_msync, FD_ANY, {0} },            /* mapped disk: an address, not an fd */
    { __NR_write, FD_CONSOLE, {0} },        /* guest console (stdout), messages (stderr) */
    { __NR_clock_gettime, FD_ANY, {0} },
    { __NR_clock_nanosleep, FD_ANY, {0} },  /* bounded poll */
#ifdef __NR_nanosleep
    { __NR_nanosleep, FD_ANY, {0} },
#endif
    { __NR_rt_sigreturn, FD_ANY, {0} },
    { __NR_exit_group, FD_ANY, {0} },
};

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(uint64_t))  /* little-endian */

struct prog { struct sock_filter insn[BPF_MAXINSNS]; unsigned n; struct tender *t; };

static void emit(struct prog *p, struct sock_filter f)
{
    if (p->n == BPF_MAXINSNS)
        die_host(p->t, "seccomp filter too long");
    p->insn[p->n++] = f;
}

static void allow_if_eq(struct prog *p, uint32_t v)
{
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, v, 0, 1));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

/* Allowed first arguments of a row. Syscall arguments of type int or unsigned
 * int are only their low 32 bits to the kernel, so the low word is compared. */
static unsigned fds_of(const struct tender *t, const struct kvm_vm *vm, enum fd_class c, uint32_t *out)
{
    unsigned n = 0;
    if (c == FD_VCPU)
        out[n++] = vm->vcpu;
    else if (c == FD_CONSOLE) {
        out[n++] = STDOUT_FILENO;
        out[n++] = STDERR_FILENO;
    } else if (c == FD_DISK) {
        for (unsigned i = 0; i < MFT_MAX_ENTRIES; i++)
            if (t->disks[i].fd >= 0)
                out[n++] = t->disks[i].fd;
    }
    return n;
}

static void build(struct prog *p, const struct tender *t, const struct kvm_vm *vm)
{
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_ARCH, 1, 0));
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
        const struct rule *rule = &rules[r];
        struct prog body = { .n = 0, .t = p->t };
        uint32_t fds[MFT_MAX_ENTRIES + 2];
        unsigned nfds = fds_of(t, vm, rule->fd, fds);
        if (rule->fd == FD_ANY) {
            emit(&body, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        } else if (rule->ioctls[0]) {
            unsigned ncmds = 0;
            while (ncmds < 6 && rule->ioctls[ncmds])
                ncmds++;
            emit(&body, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
            emit(&body, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, fds[0], 0, 1 + 2 * ncmds));
            emit(&body, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)));
            for (unsigned i = 0; i < ncmds; i++)
                allow_if_eq(&body, (uint32_t)rule->ioctls[i]);
        } else {
            emit(&body, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
            for (unsigned i = 0; i < nfds; i++)
                allow_if_eq(&body, fds[i]);
        }
        if (body.n > 255)
            die_host(p->t, "seccomp rule for syscall %ld too long", rule->nr);
        emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)rule->nr, 0, body.n));
        for (unsigned i = 0; i < body.n; i++)
            emit(p, body.insn[i]);
    }
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
}

void seccomp_install(struct tender *t, const struct kvm_vm *vm)
{
    static struct prog p;
    p.n = 0;
    p.t = t;
    build(&p, t, vm);
    /* stderr unbuffered from here: a message then needs write(2) only. */
    setvbuf(stderr, NULL, _IONBF, 0);
    struct sock_fprog fprog = { .len = (unsigned short)p.n, .filter = p.insn };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die_host(t, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
        die_host(t, "installing the seccomp filter: %s", strerror(errno));
}

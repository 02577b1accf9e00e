/*
 * seccomp_check.c: the tender's syscall filter (tender/seccomp.c) on its own.
 * Installs it as the tender would, with one opened disk and a stand-in vCPU fd,
 * then makes one syscall, named by argv[2]; allowed ones exit 0, anything else
 * must be killed by SIGSYS. A host program (not a unikernel), built and driven
 * by tests/test_hardening.py:  seccomp_check DISK CHECK
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "../tender/tender.h"
#include "../tender/kvm_common.h"

void counters_print(const struct tender *t, int status) { (void)t; (void)status; }

int main(int argc, char **argv)
{
    static struct tender t;
    if (argc != 3)
        return 2;
    for (unsigned i = 0; i < MFT_MAX_ENTRIES; i++)
        t.disks[i].fd = -1;
    t.disks[1].fd = open(argv[1], O_RDWR);
    int other = open(argv[1], O_RDONLY);            /* an fd that is not a disk's */
    struct kvm_vm vm = { .vcpu = open("/dev/null", O_RDWR) };
    if (t.disks[1].fd < 0 || other < 0 || vm.vcpu < 0)
        return 2;
    const char *c = argv[2];
    char b[512] = { 0 };
    struct timespec ts = { 0, 1000 };
    seccomp_install(&t, &vm);

    long r = 0;
    if (!strcmp(c, "write_stdout")) r = syscall(SYS_write, 1, "", 0);
    else if (!strcmp(c, "write_stderr")) r = syscall(SYS_write, 2, "", 0);
    else if (!strcmp(c, "pwrite_disk")) r = syscall(SYS_pwrite64, t.disks[1].fd, b, 512, 0);
    else if (!strcmp(c, "pread_disk")) r = syscall(SYS_pread64, t.disks[1].fd, b, 512, 0);
    else if (!strcmp(c, "fsync_disk")) r = syscall(SYS_fsync, t.disks[1].fd);
    else if (!strcmp(c, "fdatasync_disk")) r = syscall(SYS_fdatasync, t.disks[1].fd);
    else if (!strcmp(c, "clock_gettime")) r = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    else if (!strcmp(c, "clock_nanosleep")) r = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
    else if (!strcmp(c, "ioctl_vcpu_run")) { syscall(SYS_ioctl, vm.vcpu, KVM_RUN, 0); r = 0; }
    /* must be killed */
    else if (!strcmp(c, "write_disk_fd_as_console")) r = syscall(SYS_write, t.disks[1].fd, b, 1);
    else if (!strcmp(c, "pwrite_other_fd")) r = syscall(SYS_pwrite64, other, b, 512, 0);
    else if (!strcmp(c, "pread_stdin")) r = syscall(SYS_pread64, 0, b, 512, 0);
    else if (!strcmp(c, "ioctl_vcpu_other_request")) r = syscall(SYS_ioctl, vm.vcpu, KVM_SET_REGS, b);
    else if (!strcmp(c, "ioctl_disk_fd")) r = syscall(SYS_ioctl, t.disks[1].fd, KVM_RUN, 0);
    else if (!strcmp(c, "openat")) r = syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
    else if (!strcmp(c, "getpid")) r = syscall(SYS_getpid);
    else if (!strcmp(c, "mmap")) r = syscall(SYS_mmap, 0, 4096, 3, 0x22, -1, 0);
    else if (!strcmp(c, "socket")) r = syscall(SYS_socket, 2, 1, 0);
    else if (!strcmp(c, "execve")) r = syscall(SYS_execve, "/bin/true", NULL, NULL);
#if defined(__x86_64__)
    else if (!strcmp(c, "x32_write")) r = syscall(0x40000000 | SYS_write, 1, "", 0);  /* x32 ABI */
#endif
    else if (!strcmp(c, "prctl_undo")) r = syscall(SYS_prctl, 38 /* PR_SET_NO_NEW_PRIVS */, 0, 0, 0, 0);
    else return 2;
    return r < 0 ? 1 : 0;
}

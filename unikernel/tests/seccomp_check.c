/*
 * seccomp_check.c: the tender's syscall filter (tender/seccomp.c) on its own.
 * Installs it as the tender would, with one opened disk and a stand-in vCPU fd,
 * then makes one syscall, named by argv[2]; allowed ones exit 0, anything else
 * must be killed by SIGSYS. A host program (not a unikernel), built and driven
 * by tests/test_hardening.py:  seccomp_check DISK CHECK
 * CHECK "cost" times a 512 B pwrite and a vCPU ioctl without and with the
 * filter (benchmarks/bench_hvt.py prints it): one JSON line.
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

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Fastest of 7 batches of n calls, ns per call: pwrite (fd >= 0) or ioctl on vcpu. */
static double per_call(int fd, int vcpu, int n)
{
    static char b[512];
    double best = 1e18;
    for (int k = 0; k < 7; k++) {
        double t0 = now_ns();
        for (int i = 0; i < n; i++) {
            if (fd >= 0)
                syscall(SYS_pwrite64, fd, b, 512, 0);
            else
                syscall(SYS_ioctl, vcpu, KVM_RUN, 0);
        }
        double d = (now_ns() - t0) / n;
        best = d < best ? d : best;
    }
    return best;
}

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
    if (!strcmp(c, "cost")) {
        double pw0 = per_call(t.disks[1].fd, -1, 20000), io0 = per_call(-1, vm.vcpu, 20000);
        seccomp_install(&t, &vm);
        double pw1 = per_call(t.disks[1].fd, -1, 20000), io1 = per_call(-1, vm.vcpu, 20000);
        char line[200];     /* write(2), not stdio: a first printf would fstat, which the filter kills */
        int n = snprintf(line, sizeof(line), "{\"seccomp_cost\": {\"pwrite_ns_off\": %.1f, "
                         "\"pwrite_ns_on\": %.1f, \"ioctl_ns_off\": %.1f, \"ioctl_ns_on\": %.1f}}\n",
                         pw0, pw1, io0, io1);
        return write(1, line, n) == n ? 0 : 1;
    }
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

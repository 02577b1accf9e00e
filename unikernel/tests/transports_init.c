/*
 * transports_init.c: /init of a tiny initramfs for an emulated arm64 board with
 * KVM (qemu-system-aarch64 -M virt,virtualization=on under TCG): runs the
 * aarch64 tender's ring and mapped transports -- writes, reads back, exact
 * counters, a few hostile rings, and a mapped disk truncated under the guest --
 * printing "=== LABEL rc=N sig=S" after each, then powers off. Driven by
 * tests/test_transports.py; a Linux program, not a unikernel.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#define TENDER "/edgeio-hvt"
#define DISK "--block:storage=/disk.img"

static void report(const char *label, int st)
{
    printf("\n=== %s rc=%d sig=%d\n", label, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    fflush(stdout);
}

static void run(char *const argv[], const char *label)
{
    printf("=== %s\n", label);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        dup2(1, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    report(label, st);
}

static void fresh_disk(off_t size)
{
    int fd = open("/disk.img", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd >= 0 && ftruncate(fd, size) == 0)
        close(fd);
}

/* The guest says it is ready (an event on its console pipe); truncate; let it go on. */
static void truncated(void)
{
    fresh_disk(1 << 20);
    printf("=== truncated\n");
    fflush(stdout);
    int pfd[2];
    if (pipe(pfd) < 0)
        return;
    pid_t p = fork();
    if (p == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        execl(TENDER, TENDER, "--transport=mapped", DISK, "/mapped_wait.hvt", (char *)0);
        _exit(127);
    }
    close(pfd[1]);
    char buf[512] = { 0 };
    ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
    printf("%s", n > 0 ? buf : "(nothing)\n");
    int fd = open("/disk.img", O_RDWR);
    uint64_t one = 1;
    if (fd >= 0 && ftruncate(fd, 4096) == 0 && pwrite(fd, &one, 8, 8) == 8)
        close(fd);
    while ((n = read(pfd[0], buf, sizeof(buf) - 1)) > 0) {
        buf[n] = 0;
        printf("%s", buf);
    }
    int st;
    waitpid(p, &st, 0);
    report("truncated", st);
}

int main(void)
{
    static const char *const hostile[] = { "chain_loop", "slot_outside", "buf_outside", "offset_wrap",
                                           "prod_ahead", "read_into_text", NULL };
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    mount("proc", "/proc", "proc", 0, 0);
    printf("=== kvm: %s\n", access("/dev/kvm", R_OK | W_OK) == 0 ? "yes" : "no");

    fresh_disk(65536);
    char *rw[] = { TENDER, "--counters", "--transport=ring", "--flush=on-request", "--max-blocks-per-call=2",
                   DISK, "/probe.hvt", "op=write_sync", "size=65536", "reps=2", "blocks=2", "transport=ring",
                   "batch=16", NULL };
    run(rw, "ring-write_sync");
    char *rr[] = { TENDER, "--counters", "--transport=ring", DISK, "/probe.hvt", "op=read", "size=65536",
                   "reps=2", "transport=ring", "batch=64", NULL };
    run(rr, "ring-read");
    fresh_disk(65536);
    char *mw[] = { TENDER, "--counters", "--transport=mapped", "--flush=on-request", "--max-blocks-per-call=8",
                   DISK, "/probe.hvt", "op=write_sync", "size=65536", "reps=3", "blocks=8", "transport=mapped",
                   NULL };
    run(mw, "mapped-write_sync");
    char *mr[] = { TENDER, "--counters", "--transport=mapped", DISK, "/probe.hvt", "op=read", "size=65536",
                   "reps=2", "transport=mapped", NULL };
    run(mr, "mapped-read");
    for (int i = 0; hostile[i]; i++) {
        char arg[64];
        snprintf(arg, sizeof(arg), "case=%s", hostile[i]);
        char *argv[] = { TENDER, "--transport=ring", DISK, "/ring_hostile.hvt", arg, NULL };
        run(argv, hostile[i]);
    }
    truncated();
    printf("=== done\n");
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}

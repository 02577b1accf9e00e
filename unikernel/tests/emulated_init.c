/*
 * emulated_init.c: /init of a tiny initramfs for an emulated arm64 board with KVM
 * (qemu-system-aarch64 -M virt,virtualization=on under TCG): runs the aarch64
 * tender on the probe, the hostile cases and a few fuzz sequences, prints
 * "=== CASE rc=N sig=S" after each (and the filter state of a waiting guest),
 * then powers off. Driven by tests/test_hardening.py; a Linux program, not a
 * unikernel.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#define TENDER "/edgeio-hvt"
#define DISK "--block:storage=/disk.img"

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
    printf("\n=== %s rc=%d sig=%d\n", label, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    fflush(stdout);
}

/* The filter as /proc shows it while the guest, having printed its line, waits in poll. */
static void filter_state(void)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return;
    pid_t p = fork();
    if (p == 0) {
        dup2(pfd[1], 1);
        execl(TENDER, TENDER, DISK, "/hostile.hvt", "case=wait", (char *)0);
        _exit(127);
    }
    char buf[64] = { 0 };
    ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);     /* the event: the guest runs */
    printf("=== wait: %zd bytes: %s", n, buf);
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "Seccomp:", 8) || !strncmp(line, "NoNewPrivs:", 11))
            printf("=== %s", line);
    kill(p, SIGKILL);
    waitpid(p, 0, 0);
}

int main(void)
{
    static const char *const cases[] = {
        "ok", "null_write", "null_read", "tls_read", "text_write", "rodata_write", "bootinfo_write",
        "pagetable_write", "data_exec", "bad_opcode", "offset_beyond", "handle_bad", "read_into_text",
        "arg_outside", "wild_store", "exit3", "poll_long", NULL,
    };
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    mount("proc", "/proc", "proc", 0, 0);
    int fd = open("/disk.img", O_CREAT | O_RDWR, 0644);
    if (fd >= 0 && ftruncate(fd, 65536) == 0)
        close(fd);
    printf("=== kvm: %s\n", access("/dev/kvm", R_OK | W_OK) == 0 ? "yes" : "no");

    char *write[] = { TENDER, "--counters", DISK, "/probe.hvt", "op=write", "size=4096", "reps=2", NULL };
    run(write, "probe-write");
    char *read_[] = { TENDER, DISK, "/probe.hvt", "op=read", "size=4096", "reps=1", NULL };
    run(read_, "probe-read");
    for (int i = 0; cases[i]; i++) {
        char arg[64];
        snprintf(arg, sizeof(arg), "case=%s", cases[i]);
        char *argv[] = { TENDER, DISK, "/hostile.hvt", arg, NULL };
        run(argv, cases[i]);
    }
    for (int s = 1; s <= 8; s++) {
        char seed[32];
        snprintf(seed, sizeof(seed), "seed=%d", s);
        char *argv[] = { TENDER, "--max-blocks-per-call=4", "--flush=each-write", DISK, "/fuzzcalls.hvt",
                         seed, "calls=200", NULL };
        run(argv, seed);
    }
    filter_state();
    printf("=== done\n");
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}

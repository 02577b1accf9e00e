/*
 * mapped.c: disks mapped into guest memory (--transport=mapped).
 *
 * Each attached disk file is mapped MAP_SHARED and given to KVM as its own
 * memory slot at a window above RAM (EDGEIO_MAPPED_BASE, 1 GiB-aligned
 * windows), so the guest's block reads and writes are its own memory copies
 * and cause no exit; the host page cache is shared with every other user of
 * the file. MAPPED_FLUSH makes a range durable with msync(MS_SYNC).
 *
 * Each window is one read-write, never-executable region of the guest's page
 * tables (guest_map_region; aarch64: normal memory).
 *
 * The file can change under the guest: if it is truncated, guest accesses
 * beyond the new end cannot be backed. KVM_RUN then fails with EFAULT (or the
 * tender gets SIGBUS); either way the tender ends with one line and status 4
 * (host error), never a crash. Windows are sized from the file at start and
 * never move, so no guest value chooses what is mapped.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include "tender.h"
#include "kvm_common.h"

#define GIB (1ULL << 30)

struct disk_map {
    uint64_t handle;
    int fd;
    uint8_t *host;
    const char *name;
};

static struct { uint64_t gpa, len; } windows[MFT_MAX_ENTRIES];
static struct disk_map maps[MFT_MAX_ENTRIES];
static size_t nmaps;
static uint64_t page_bytes;

/* SIGBUS in the tender: a mapped page the file no longer backs. Async-signal-safe. */
static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)sig, (void)ctx;
    static const char ours[] = "edgeio-hvt: host error: a mapped disk shrank under the guest "
                               "(SIGBUS on a mapped page: was the disk file truncated?)\n";
    static const char other[] = "edgeio-hvt: host error: SIGBUS outside the mapped disks\n";
    int mine = 0;
    for (size_t i = 0; i < nmaps; i++)
        mine |= (uint8_t *)si->si_addr >= maps[i].host &&
                (uint8_t *)si->si_addr < maps[i].host + windows[i].len;
    /* write and exit_group only: the syscall filter allows both */
    if (write(STDERR_FILENO, mine ? ours : other, (mine ? sizeof(ours) : sizeof(other)) - 1) < 0) { }
    _exit(EXIT_HOST_ERROR);
}

void mapped_attach(struct tender *t)
{
    if (t->transport != TRANSPORT_MAPPED)
        return;
    long ps = sysconf(_SC_PAGESIZE);
    page_bytes = ps > (long)EDGEIO_MAPPED_ALIGN ? (uint64_t)ps : EDGEIO_MAPPED_ALIGN;
    uint64_t next = EDGEIO_MAPPED_BASE;
    for (uint32_t i = 1; i < t->mft->entries && i < MFT_MAX_ENTRIES; i++) {
        const struct mft_entry *e = &t->mft->e[i];
        const struct disk *disk = tender_disk(t, i);
        if (!disk)
            continue;
        uint64_t cap = disk->capacity;
        if (cap % page_bytes)
            die_bad_input("--transport=mapped: disk '%s' is %llu bytes, not a whole number of "
                          "%llu-byte pages", e->name, (unsigned long long)cap, (unsigned long long)page_bytes);
        if (cap > EDGEIO_MAPPED_BASE + EDGEIO_MAPPED_MAX_BYTES - next)
            die_bad_input("--transport=mapped: disks larger than %llu GiB together cannot be mapped",
                          (unsigned long long)(EDGEIO_MAPPED_MAX_BYTES / GIB));
        void *host = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, disk->fd, 0);
        if (host == MAP_FAILED)
            die_bad_input("--transport=mapped: cannot map disk '%s': %s", e->name, strerror(errno));
        windows[nmaps] = (typeof(windows[0])){ .gpa = next, .len = cap };
        maps[nmaps] = (struct disk_map){ .handle = i, .fd = disk->fd, .host = host, .name = e->name };
        guest_map_region(t, next, cap, GUEST_RW);
        nmaps++;
        next += (cap + GIB - 1) & ~(GIB - 1);
    }
    struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) < 0)
        die_host(t, "sigaction(SIGBUS): %s", strerror(errno));
}

void mapped_add_slots(struct tender *t, int vm_fd)
{
    for (size_t i = 0; i < nmaps; i++) {
        struct kvm_userspace_memory_region region = {
            .slot = 1 + (uint32_t)i,
            .guest_phys_addr = windows[i].gpa,
            .memory_size = windows[i].len,
            .userspace_addr = (uint64_t)(uintptr_t)maps[i].host,
        };
        if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
            die_host(t, "KVM_SET_USER_MEMORY_REGION for mapped disk '%s': %s", maps[i].name, strerror(errno));
    }
}

/* A disk shorter than its window: the one host change the guest cannot survive. */
void mapped_check_disks(struct tender *t)
{
    for (size_t i = 0; i < nmaps; i++) {
        uint8_t b;
        ssize_t n = pread(maps[i].fd, &b, 1, windows[i].len - 1);
        if (n == 0)
            die_host(t, "mapped disk '%s' shrank under the guest: the file is now shorter than the "
                     "%llu bytes mapped (truncated?)", maps[i].name, (unsigned long long)windows[i].len);
    }
}

static size_t map_of(struct tender *t, const char *what, uint64_t handle)
{
    if (t->transport != TRANSPORT_MAPPED)
        die_guest(t, "%s: disks are not mapped (tender started without --transport=mapped)", what);
    hc_disk(t, what, handle);
    for (size_t i = 0; i < nmaps; i++)
        if (maps[i].handle == handle)
            return i;
    die_guest(t, "%s: device %llu is not mapped", what, (unsigned long long)handle);
}

void mapped_info(struct tender *t, uint64_t gpa)
{
    void *ap = hc_arg(t, "mapped info", gpa, sizeof(struct edgeio_hc_mapped_info));
    struct edgeio_hc_mapped_info a;
    memcpy(&a, ap, sizeof(a));
    size_t i = map_of(t, "mapped info", a.handle);
    a.window = windows[i].gpa;
    a.len = windows[i].len;
    a.ret = HVT_R_OK;
    memcpy(ap, &a, sizeof(a));
}

void mapped_flush(struct tender *t, uint64_t gpa)
{
    void *ap = hc_arg(t, "mapped flush", gpa, sizeof(struct edgeio_hc_mapped_flush));
    struct edgeio_hc_mapped_flush a;
    memcpy(&a, ap, sizeof(a));
    size_t i = map_of(t, "mapped flush", a.handle);
    uint64_t len = windows[i].len;
    if (a.offset > len || a.len > len - a.offset)
        die_guest(t, "mapped flush: %llu bytes at offset %llu go beyond the end of the disk (%llu bytes)",
                  (unsigned long long)a.len, (unsigned long long)a.offset, (unsigned long long)len);
    /* none: as stock Solo5, data stays in the host page cache (each-write is refused:
     * there are no write exits to flush after). */
    if (t->flush == FLUSH_ON_REQUEST && a.len) {
        uint64_t start = a.offset & ~(page_bytes - 1);
        uint64_t end = a.offset + a.len;            /* <= len, a multiple of page_bytes */
        end = (end + page_bytes - 1) & ~(page_bytes - 1);
        mapped_check_disks(t);
        if (msync(maps[i].host + start, end - start, MS_SYNC) < 0)
            die_host(t, "msync of mapped disk '%s' failed: %s", maps[i].name, strerror(errno));
        t->c.fsyncs++;
    }
    a.ret = HVT_R_OK;
    memcpy((uint8_t *)ap + offsetof(struct edgeio_hc_mapped_flush, ret), &a.ret, sizeof(a.ret));
}

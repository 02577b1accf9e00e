/*
 * hypercalls.c: what the tender does for each hypercall.
 *
 * As stock solo5-hvt: an argument struct or buffer outside guest memory ends
 * the guest with a one-line message (status 3); a well-formed block request
 * that cannot be carried out (bad handle, unaligned, beyond the disk, more
 * blocks than --max-blocks-per-call, a read into the guest's read-only image)
 * gets SOLO5_R_EINVAL back and touches no file.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tender.h"

#define POLL_MAX_NS 1000000000ULL    /* 1 s */

static const char *const names[EDGEIO_HYPERCALL_LIMIT] = {
    [HVT_HYPERCALL_WALLTIME] = "walltime", [HVT_HYPERCALL_PUTS] = "puts",
    [HVT_HYPERCALL_POLL] = "poll", [HVT_HYPERCALL_BLOCK_WRITE] = "block_write",
    [HVT_HYPERCALL_BLOCK_READ] = "block_read", [HVT_HYPERCALL_NET_WRITE] = "net_write",
    [HVT_HYPERCALL_NET_READ] = "net_read", [HVT_HYPERCALL_HALT] = "halt",
    [EDGEIO_HYPERCALL_BLOCK_FLUSH] = "block_flush",
    [EDGEIO_HYPERCALL_RING_SETUP] = "ring_setup", [EDGEIO_HYPERCALL_RING_NOTIFY] = "ring_notify",
    [EDGEIO_HYPERCALL_MAPPED_INFO] = "mapped_info", [EDGEIO_HYPERCALL_MAPPED_FLUSH] = "mapped_flush",
};

/* The argument struct of a hypercall, wholly inside guest memory. */
static void *arg(struct tender *t, const char *what, uint64_t gpa, size_t len)
{
    void *p = guest_range(t, gpa, len);
    if (!p)
        die_guest(t, "%s: argument at 0x%llx (+%zu bytes) is outside guest memory (%llu bytes)",
                  what, (unsigned long long)gpa, len, (unsigned long long)t->mem_size);
    return p;
}

static void set_ret(void *argp, size_t off, int32_t ret)
{
    memcpy((uint8_t *)argp + off, &ret, sizeof(ret));
}

static void do_fsync(struct tender *t, int fd)
{
    if (fsync(fd) < 0)
        die_host(t, "fsync of the disk failed: %s", strerror(errno));
    t->c.fsyncs++;
}

static void block_io(struct tender *t, uint64_t gpa, int write)
{
    const char *what = write ? "block write" : "block read";
    void *ap = arg(t, what, gpa, sizeof(struct hvt_hc_block_io));
    struct hvt_hc_block_io a;
    memcpy(&a, ap, sizeof(a));
    const struct disk *d = tender_disk(t, a.handle);
    if (!d) {
        set_ret(ap, offsetof(struct hvt_hc_block_io, ret), HVT_R_EINVAL);
        return;
    }
    uint8_t *buf = guest_range(t, a.data, a.len);
    if (!buf)
        die_guest(t, "%s: buffer at 0x%llx (+%llu bytes) is outside guest memory",
                  what, (unsigned long long)a.data, (unsigned long long)a.len);
    uint64_t bs = d->block_size, cap = d->capacity;
    if (a.len == 0 || (a.len | a.offset) & (bs - 1) || a.len / bs > t->max_blocks ||
        a.offset >= cap || a.len > cap - a.offset ||
        (!write && a.data < t->ro_end && t->ro_start < a.data + a.len)) {
        set_ret(ap, offsetof(struct hvt_hc_block_io, ret), HVT_R_EINVAL);
        return;
    }

    int fd = d->fd;
    uint64_t done = 0;
    while (done < a.len) {
        ssize_t n = write ? pwrite(fd, buf + done, a.len - done, a.offset + done)
                          : pread(fd, buf + done, a.len - done, a.offset + done);
        if (n < 0 && errno == EINTR)
            continue;
        t->c.host_io_calls++;
        if (n <= 0)
            die_host(t, "%s of the disk failed: %s", write ? "pwrite" : "pread",
                     n < 0 ? strerror(errno) : "unexpected end of file");
        done += n;
    }
    if (write) {
        t->c.bytes_written += a.len;
        if (t->flush == FLUSH_EACH_WRITE)
            do_fsync(t, fd);
    } else {
        t->c.bytes_read += a.len;
    }
    set_ret(ap, offsetof(struct hvt_hc_block_io, ret), HVT_R_OK);
}

static void block_flush(struct tender *t, uint64_t gpa)
{
    void *ap = arg(t, "block flush", gpa, sizeof(struct edgeio_hc_block_flush));
    struct edgeio_hc_block_flush a;
    memcpy(&a, ap, sizeof(a));
    const struct disk *d = tender_disk(t, a.handle);
    if (!d) {
        set_ret(ap, offsetof(struct edgeio_hc_block_flush, ret), HVT_R_EINVAL);
        return;
    }
    /* none: as stock Solo5, data stays in the host page cache;
     * each-write: every write was already followed by fsync. */
    if (t->flush == FLUSH_ON_REQUEST)
        do_fsync(t, d->fd);
    set_ret(ap, offsetof(struct edgeio_hc_block_flush, ret), HVT_R_OK);
}

static void puts_(struct tender *t, uint64_t gpa)
{
    struct hvt_hc_puts a;
    memcpy(&a, arg(t, "puts", gpa, sizeof(a)), sizeof(a));
    const uint8_t *p = guest_range(t, a.data, a.len);
    if (!p)
        die_guest(t, "puts: string at 0x%llx (+%llu bytes) is outside guest memory",
                  (unsigned long long)a.data, (unsigned long long)a.len);
    for (uint64_t done = 0; done < a.len;) {
        ssize_t n = write(STDOUT_FILENO, p + done, a.len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;          /* console gone: the guest goes on, as stock */
        done += n;
    }
}

static void walltime(struct tender *t, uint64_t gpa)
{
    void *ap = arg(t, "walltime", gpa, sizeof(struct hvt_hc_walltime));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
    memcpy(ap, &ns, sizeof(ns));
}

static void poll_(struct tender *t, uint64_t gpa)
{
    void *ap = arg(t, "poll", gpa, sizeof(struct hvt_hc_poll));
    struct hvt_hc_poll a;
    memcpy(&a, ap, sizeof(a));
    /* No network: nothing can become ready, so poll sleeps the timeout, at most
     * POLL_MAX_NS per call (the guest sees a timeout and polls again): a guest
     * cannot park the tender for an hour in one exit. */
    uint64_t ns = a.timeout_nsecs > POLL_MAX_NS ? POLL_MAX_NS : a.timeout_nsecs;
    struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    a.ready_set = 0;
    a.ret = 0;
    memcpy(ap, &a, sizeof(a));
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int dispatch(struct tender *t, unsigned nr, uint64_t gpa);

/* Counted and, with --counters, timed (two vDSO clock reads, ~40 ns, per exit). */
int hypercall(struct tender *t, unsigned nr, uint64_t gpa)
{
    if (nr >= EDGEIO_HYPERCALL_LIMIT || names[nr] == NULL ||
        (t->stock_abi && nr >= HVT_HYPERCALL_MAX))
        die_guest(t, "unknown hypercall %u", nr);
    t->c.exits[nr]++;
    if (!t->print_counters)
        return dispatch(t, nr, gpa);
    uint64_t t0 = now_ns();
    int status = dispatch(t, nr, gpa);
    t->c.handler_ns[nr] += now_ns() - t0;
    return status;
}

static int dispatch(struct tender *t, unsigned nr, uint64_t gpa)
{
    switch (nr) {
    case HVT_HYPERCALL_WALLTIME: walltime(t, gpa); return -1;
    case HVT_HYPERCALL_PUTS: puts_(t, gpa); return -1;
    case HVT_HYPERCALL_POLL: poll_(t, gpa); return -1;
    case HVT_HYPERCALL_BLOCK_WRITE: block_io(t, gpa, 1); return -1;
    case HVT_HYPERCALL_BLOCK_READ: block_io(t, gpa, 0); return -1;
    case EDGEIO_HYPERCALL_BLOCK_FLUSH: block_flush(t, gpa); return -1;
    case EDGEIO_HYPERCALL_RING_SETUP: ring_setup(t, gpa); return -1;
    case EDGEIO_HYPERCALL_RING_NOTIFY: ring_notify(t, gpa); return -1;
    case EDGEIO_HYPERCALL_MAPPED_INFO: mapped_info(t, gpa); return -1;
    case EDGEIO_HYPERCALL_MAPPED_FLUSH: mapped_flush(t, gpa); return -1;
    case HVT_HYPERCALL_HALT: {
        struct hvt_hc_halt a;
        memcpy(&a, arg(t, "halt", gpa, sizeof(a)), sizeof(a));
        return a.exit_status & 0xff;
    }
    default:
        die_guest(t, "%s hypercall, but this tender has no network device", names[nr]);
    }
}

void counters_print(const struct tender *t, int status)
{
    static const char *const policy[] = { "none", "each-write", "on-request" };
    uint64_t total = t->c.other_exits;
    fprintf(stderr, "{\"edgeio_hvt_counters\": {\"exits\": {");
    for (unsigned i = 0; i < EDGEIO_HYPERCALL_LIMIT; i++) {
        if (!names[i])
            continue;
        fprintf(stderr, "\"%s\": %llu, ", names[i], (unsigned long long)t->c.exits[i]);
        total += t->c.exits[i];
    }
    fprintf(stderr, "\"other\": %llu, \"total\": %llu}, \"handler_ns\": {", (unsigned long long)t->c.other_exits,
            (unsigned long long)total);
    const char *sep = "";
    for (unsigned i = 0; i < EDGEIO_HYPERCALL_LIMIT; i++) {
        if (!names[i])
            continue;
        fprintf(stderr, "%s\"%s\": %llu", sep, names[i], (unsigned long long)t->c.handler_ns[i]);
        sep = ", ";
    }
    static const char *const transport[] = { "hvt", "ring", "mapped" };
    const uint64_t *x = t->c.exits;
    uint64_t flushes = x[EDGEIO_HYPERCALL_BLOCK_FLUSH] + x[EDGEIO_HYPERCALL_MAPPED_FLUSH];
    fprintf(stderr, "}, \"transport\": \"%s\", \"block_exits\": %llu, \"notifications\": %llu, "
            "\"flush_exits\": %llu, \"ring_requests\": %llu, \"host_io_calls\": %llu",
            transport[t->transport],
            (unsigned long long)(x[HVT_HYPERCALL_BLOCK_WRITE] + x[HVT_HYPERCALL_BLOCK_READ] +
                                 x[EDGEIO_HYPERCALL_RING_NOTIFY] + flushes),
            (unsigned long long)x[EDGEIO_HYPERCALL_RING_NOTIFY],
            (unsigned long long)(flushes + t->c.flush_notifications),
            (unsigned long long)t->c.ring_requests, (unsigned long long)t->c.host_io_calls);
    fprintf(stderr, ", \"bytes_written\": %llu, "
            "\"bytes_read\": %llu, \"fsyncs\": %llu, \"flush\": \"%s\", "
            "\"max_blocks_per_call\": %u, \"cpu_cycle_freq\": %llu, \"arch\": \"%s\", "
            "\"seccomp\": %s, \"exit\": {\"by\": \"%s\", \"status\": %d}}}\n",
            (unsigned long long)t->c.bytes_written, (unsigned long long)t->c.bytes_read,
            (unsigned long long)t->c.fsyncs, policy[t->flush], t->max_blocks,
            (unsigned long long)t->cycle_freq, tender_arch_name, t->seccomp ? "true" : "false",
            t->ended_by_tender ? "tender" : "guest", status);
}

/* The same checks for the transports (ring.c, mapped.c). */
void *hc_arg(struct tender *t, const char *what, uint64_t gpa, size_t len)
{
    return arg(t, what, gpa, len);
}

const struct disk *hc_disk(struct tender *t, const char *what, uint64_t handle)
{
    const struct disk *d = tender_disk(t, handle);
    if (!d)
        die_guest(t, "%s: bad block handle %llu", what, (unsigned long long)handle);
    return d;
}

void hc_fsync(struct tender *t, int fd)
{
    do_fsync(t, fd);
}

uint32_t tender_host_features(const struct tender *t)
{
    if (t->stock_abi)
        return 0;
    return EDGEIO_HF_BLOCK_FLUSH | (t->transport == TRANSPORT_RING ? EDGEIO_HF_BLOCK_RING : 0) |
           (t->transport == TRANSPORT_MAPPED ? EDGEIO_HF_BLOCK_MAPPED : 0);
}

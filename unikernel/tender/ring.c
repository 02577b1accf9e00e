/*
 * ring.c: the ring transport (--transport=ring): many block requests per exit.
 *
 * The guest registers a ring (edgeio_hvt_abi.h) once per device, posts N
 * requests and sends one RING_NOTIFY. The tender serves them in order: runs of
 * requests of the same kind at contiguous disk offsets become ONE preadv or
 * pwritev (at most EDGEIO_RING_MAX_SEGMENTS buffers), FLUSH follows the flush
 * policy, and every head gets its status before rsp_prod moves.
 *
 * The ring is guest memory, so every value read from it is hostile: the
 * tender keeps its own consumer index, reads req_prod, each slot and each
 * descriptor exactly once into host memory and validates only those copies
 * (a guest rewriting the ring meanwhile changes nothing the tender relies on).
 * Indices are bounded by the ring size, each descriptor may be used once per
 * notification (so a chain cannot loop), buffers must lie inside guest RAM
 * (overflow-safe), and one notification serves at most `entries` requests,
 * `entries` descriptors and EDGEIO_RING_MAX_NOTIFY_BYTES bytes. Anything else
 * ends the guest (status 3), before the disk is touched for that request.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include "tender.h"

struct ring {
    uint8_t *base;              /* host pointer to the guest's ring, checked at setup */
    uint32_t entries, cons;     /* cons: the tender's own count of requests served */
    uint32_t generation;        /* per notification; seen[] marks descriptors used */
    uint32_t seen[EDGEIO_RING_MAX_ENTRIES];
};

static struct ring rings[MFT_MAX_ENTRIES];      /* by block handle */

/* A run of requests served by one host call. */
static struct {
    int fd, write;
    uint64_t offset, bytes;
    int iovcnt;
    struct iovec iov[EDGEIO_RING_MAX_SEGMENTS];
} run;

static uint16_t served[EDGEIO_RING_MAX_ENTRIES];    /* heads of this notification, host copy */

static void require_ring_transport(struct tender *t, const char *what)
{
    if (t->transport != TRANSPORT_RING)
        die_guest(t, "%s: the ring transport is not enabled (tender started without --transport=ring)", what);
}

void ring_setup(struct tender *t, uint64_t gpa)
{
    require_ring_transport(t, "ring setup");
    void *ap = hc_arg(t, "ring setup", gpa, sizeof(struct edgeio_hc_ring_setup));
    struct edgeio_hc_ring_setup a;
    memcpy(&a, ap, sizeof(a));
    hc_disk(t, "ring setup", a.handle);
    struct ring *r = &rings[a.handle];
    if (r->base)
        die_guest(t, "ring setup: device %llu already has a ring", (unsigned long long)a.handle);
    if (a.entries == 0 || a.entries > EDGEIO_RING_MAX_ENTRIES || (a.entries & (a.entries - 1)))
        die_guest(t, "ring setup: %u entries, expected a power of two from 1 to %d",
                  a.entries, EDGEIO_RING_MAX_ENTRIES);
    if (a.ring % 8)
        die_guest(t, "ring setup: ring at 0x%llx is not 8-byte aligned", (unsigned long long)a.ring);
    uint8_t *base = guest_range(t, a.ring, EDGEIO_RING_BYTES(a.entries));
    if (!base)
        die_guest(t, "ring setup: ring at 0x%llx (+%llu bytes) is outside guest memory",
                  (unsigned long long)a.ring, (unsigned long long)EDGEIO_RING_BYTES(a.entries));
    if (a.ring < t->ro_end && t->ro_start < a.ring + EDGEIO_RING_BYTES(a.entries))
        die_guest(t, "ring setup: ring at 0x%llx overlaps the guest's read-only image (the tender writes "
                  "completions into it)", (unsigned long long)a.ring);
    r->base = base;
    r->entries = a.entries;
    memcpy(&r->cons, base + offsetof(struct edgeio_ring, req_prod), sizeof(r->cons));
    memcpy(base + offsetof(struct edgeio_ring, rsp_prod), &r->cons, sizeof(r->cons));
    a.ret = HVT_R_OK;
    memcpy((uint8_t *)ap + offsetof(struct edgeio_hc_ring_setup, ret), &a.ret, sizeof(a.ret));
}

/* Carry out the pending run: one preadv/pwritev (more only if the host returns short). */
static void run_flush(struct tender *t)
{
    if (run.iovcnt == 0)
        return;
    uint64_t done = 0;
    struct iovec *iov = run.iov;
    int cnt = run.iovcnt;
    while (done < run.bytes) {
        ssize_t n = run.write ? pwritev(run.fd, iov, cnt, run.offset + done)
                              : preadv(run.fd, iov, cnt, run.offset + done);
        if (n < 0 && errno == EINTR)
            continue;
        t->c.host_io_calls++;
        if (n <= 0)
            die_host(t, "%s of the disk failed: %s", run.write ? "pwritev" : "preadv",
                     n < 0 ? strerror(errno) : "unexpected end of file");
        done += n;
        while (cnt > 0 && (size_t)n >= iov->iov_len) {     /* skip what is done */
            n -= iov->iov_len;
            iov++, cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    if (run.write)
        t->c.bytes_written += run.bytes;
    else
        t->c.bytes_read += run.bytes;
    run.iovcnt = 0;
    run.bytes = 0;
}

static void set_status(struct ring *r, uint32_t head, int32_t status)
{
    uint8_t *d = r->base + EDGEIO_RING_DESC_OFFSET(r->entries) + (uint64_t)head * sizeof(struct edgeio_ring_desc);
    memcpy(d + offsetof(struct edgeio_ring_desc, status), &status, sizeof(status));
}

/* Copy descriptor idx out of the guest's ring, once, marking it used. */
static void desc_take(struct tender *t, struct ring *r, uint32_t idx, struct edgeio_ring_desc *d)
{
    if (idx >= r->entries)
        die_guest(t, "ring: descriptor index %u outside the ring of %u", idx, r->entries);
    if (r->seen[idx] == r->generation)
        die_guest(t, "ring: descriptor %u used twice in one notification (a chain loop or a shared descriptor)", idx);
    r->seen[idx] = r->generation;
    memcpy(d, r->base + EDGEIO_RING_DESC_OFFSET(r->entries) + (uint64_t)idx * sizeof(*d), sizeof(*d));
}

/* Serve one request whose head descriptor is head; *budget = bytes left this notification. */
static void request(struct tender *t, struct ring *r, const struct disk *disk, uint32_t head, uint64_t *budget)
{
    struct edgeio_ring_desc d;
    desc_take(t, r, head, &d);
    uint64_t bs = disk->block_size, cap = disk->capacity;
    int fd = disk->fd;
    t->c.ring_requests++;

    if (d.op == EDGEIO_RING_FLUSH) {
        if (d.len != 0 || (d.flags & EDGEIO_RING_F_NEXT))
            die_guest(t, "ring: FLUSH request %u has a buffer", head);
        run_flush(t);                   /* earlier requests first */
        t->c.ring_flushes++;
        if (t->flush == FLUSH_ON_REQUEST)
            hc_fsync(t, fd);
        return;
    }
    if (d.op != EDGEIO_RING_READ && d.op != EDGEIO_RING_WRITE)
        die_guest(t, "ring: request %u has unknown op %u", head, d.op);
    int write = d.op == EDGEIO_RING_WRITE;
    uint64_t offset = d.offset;
    if (offset % bs)
        die_guest(t, "ring: request %u: offset %llu is not aligned to the %llu-byte sector",
                  head, (unsigned long long)offset, (unsigned long long)bs);

    /* The chain: at most EDGEIO_RING_MAX_SEGMENTS descriptors, each used once. */
    struct iovec segs[EDGEIO_RING_MAX_SEGMENTS];
    int nseg = 0;
    uint64_t total = 0;         /* <= 1024 * 2^32: no overflow */
    for (;;) {
        if (d.len == 0 || d.len % bs)
            die_guest(t, "ring: request %u: segment of %u bytes is not a positive multiple of the "
                      "%llu-byte sector", head, d.len, (unsigned long long)bs);
        uint8_t *buf = guest_range(t, d.data, d.len);
        if (!buf)
            die_guest(t, "ring: request %u: buffer at 0x%llx (+%u bytes) is outside guest memory",
                      head, (unsigned long long)d.data, d.len);
        if (!write && d.data < t->ro_end && t->ro_start < d.data + d.len)
            die_guest(t, "ring: request %u: read into the guest's read-only image at 0x%llx",
                      head, (unsigned long long)d.data);
        segs[nseg].iov_base = buf;
        segs[nseg].iov_len = d.len;
        nseg++;
        total += d.len;
        if (!(d.flags & EDGEIO_RING_F_NEXT))
            break;
        if (nseg == EDGEIO_RING_MAX_SEGMENTS)
            die_guest(t, "ring: request %u: more than %d descriptors in one chain", head,
                      EDGEIO_RING_MAX_SEGMENTS);
        desc_take(t, r, d.next, &d);
    }
    if (offset >= cap || total > cap - offset)
        die_guest(t, "ring: request %u: %llu bytes at offset %llu go beyond the end of the disk (%llu bytes)",
                  head, (unsigned long long)total, (unsigned long long)offset, (unsigned long long)cap);
    if (total > *budget)
        die_guest(t, "ring: more than %llu bytes in one notification",
                  (unsigned long long)EDGEIO_RING_MAX_NOTIFY_BYTES);
    *budget -= total;

    /* Join the pending run if it continues it, else start a new one. Under
     * flush=each-write every write is its own host call, followed by fsync. */
    if (run.iovcnt && (run.fd != fd || run.write != write || run.offset + run.bytes != offset ||
                       run.iovcnt + nseg > EDGEIO_RING_MAX_SEGMENTS || t->flush == FLUSH_EACH_WRITE))
        run_flush(t);
    if (run.iovcnt == 0) {
        run.fd = fd;
        run.write = write;
        run.offset = offset;
    }
    memcpy(run.iov + run.iovcnt, segs, nseg * sizeof(segs[0]));
    run.iovcnt += nseg;
    run.bytes += total;
    if (write && t->flush == FLUSH_EACH_WRITE) {
        run_flush(t);
        hc_fsync(t, fd);
    }
}

void ring_notify(struct tender *t, uint64_t gpa)
{
    require_ring_transport(t, "ring notify");
    void *ap = hc_arg(t, "ring notify", gpa, sizeof(struct edgeio_hc_ring_notify));
    struct edgeio_hc_ring_notify a;
    memcpy(&a, ap, sizeof(a));
    const struct disk *disk = hc_disk(t, "ring notify", a.handle);
    struct ring *r = &rings[a.handle];
    if (!r->base)
        die_guest(t, "ring notify: device %llu has no ring (RING_SETUP first)", (unsigned long long)a.handle);

    uint32_t prod;
    memcpy(&prod, r->base + offsetof(struct edgeio_ring, req_prod), sizeof(prod));
    uint32_t pending = prod - r->cons;          /* free-running, wraps */
    if (pending > r->entries)
        die_guest(t, "ring notify: req_prod %u is %u requests past the %u served, more than the "
                  "ring's %u entries", prod, pending, r->cons, r->entries);
    if (++r->generation == 0) {                 /* after 2^32 notifications: start afresh */
        memset(r->seen, 0, sizeof(r->seen));
        r->generation = 1;
    }
    uint64_t budget = EDGEIO_RING_MAX_NOTIFY_BYTES;
    uint64_t flushes_before = t->c.ring_flushes;
    const uint8_t *slots = r->base + offsetof(struct edgeio_ring, slot);
    for (uint32_t i = 0; i < pending; i++) {
        memcpy(&served[i], slots + (uint64_t)((r->cons + i) & (r->entries - 1)) * 2, sizeof(served[i]));
        request(t, r, disk, served[i], &budget);   /* checks served[i] < entries */
    }
    run_flush(t);
    for (uint32_t i = 0; i < pending; i++)      /* all served: statuses, then the counter */
        set_status(r, served[i], HVT_R_OK);
    r->cons = prod;
    memcpy(r->base + offsetof(struct edgeio_ring, rsp_prod), &prod, sizeof(prod));
    if (t->c.ring_flushes != flushes_before)
        t->c.flush_notifications++;
    a.ret = HVT_R_OK;
    memcpy((uint8_t *)ap + offsetof(struct edgeio_hc_ring_notify, ret), &a.ret, sizeof(a.ret));
}

/*
 * probe.c: the study's Fig. 4 as a Solo5 application.
 *
 * Command line: op=write_sync|write|read size=BYTES reps=N [batches=B]
 *               [blocks=K] [disk=NAME] [transport=hvt|ring|mapped] [batch=N]
 *        or op=call|exit|copy|ring|rep|flush (primitives, below) with the same options.
 * Each repetition writes (or reads) the whole size from offset 0, K blocks per
 * block call (1 = stock Solo5); write_sync then asks for a flush. transport=ring
 * posts the calls as ring requests, N per notification (edgeio tender
 * --transport=ring); transport=mapped maps the disk (--transport=mapped), so
 * each call is a memory copy. Repetitions
 * are timed in B batches with solo5_clock_monotonic. Prints one JSON line in
 * the probes' format (docs/formats.md) and exits 0, 1 on an I/O error, 2 on
 * bad arguments.
 *
 * The guest is emulated instruction by instruction on some hosts, so the
 * timed loop does nothing but the block calls, and the call and ring
 * primitives run in that same loop (timed_loop, below).
 *
 * Primitives (the calibration protocol's micro-probes: each repetition is one
 * of these, timed in batches like the file ops; no data reaches the disk):
 *   call  a block call the guest's own checks refuse (offset = capacity): the
 *         guest-side work of a block call in the file ops' loop, without its exit;
 *   exit  a bare hypercall the tender answers at once (WALLTIME): the exit
 *         and return;
 *   copy  edgeio_copy of size bytes from guest RAM to guest RAM (the mapped
 *         transport's data path);
 *   ring  post one read of one block at offset 0 on the ring (transport=ring),
 *         notifying once per batch: a request's post and complete, through the
 *         same call a file op makes; the tender serves each with its own small
 *         pread (requests at one offset are not contiguous: nothing merges),
 *         from the host's page cache;
 *   rep   a repetition of the file ops' loop that makes no call (size 0 a
 *         repetition): what a repetition costs besides its calls;
 *   flush a repetition of write_sync's loop that makes no call, only its flush
 *         request (the tender runs with --flush=none: the exit and the guest's
 *         side of a flush, no fsync); a rep besides it.
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "edgeio_util.h"

#define PROBE_VERSION "1.0"
#define MAX_BATCHES 1000
#define MAX_SPAN (1024 * 1024)          /* data buffer, reused cyclically beyond */
#define PATTERN_TAG 0xed10000000000000ULL  /* word at disk offset o = o | tag */

static char out_buf[64 * 1024];
static uint64_t batch_ns[MAX_BATCHES], batch_reps[MAX_BATCHES];

struct run {
    char op[16], disk[68];    /* a manifest name: up to 67 characters */
    char transport[8];
    uint64_t size, reps, batches, blocks, batch;
    uint64_t block_size, io_size, checksum, batches_done;
    int err;                /* errno-like: 0, 5 = EIO, 22 = EINVAL, 95 = EOPNOTSUPP */
    const char *error;
    uint64_t error_offset;
};

static void report(struct run *r)
{
    struct line l = { out_buf, 0, sizeof(out_buf) };
    uint64_t total = 0;
    line_str(&l, "{\"probe\": \"edgeio-solo5-probe\", \"version\": \"" PROBE_VERSION "\", \"op\": \"");
    line_str(&l, r->op);
    line_str(&l, "\", \"size\": "); line_u64(&l, r->size);
    line_str(&l, ", \"reps\": "); line_u64(&l, r->reps);
    line_str(&l, ", \"io_size\": "); line_u64(&l, r->io_size);
    line_str(&l, ", \"sync\": \"");
    line_str(&l, util_streq(r->op, "write_sync") ? "fsync" : "none");
    line_str(&l, "\", \"direct\": false, \"cache\": \"warm\", \"batch_reps\": [");
    for (uint64_t i = 0; i < r->batches_done; i++) {
        if (i) line_str(&l, ", ");
        line_u64(&l, batch_reps[i]);
    }
    line_str(&l, "], \"batch_seconds\": [");
    for (uint64_t i = 0; i < r->batches_done; i++) {
        if (i) line_str(&l, ", ");
        line_seconds(&l, batch_ns[i]);
        total += batch_ns[i];
    }
    line_str(&l, "], \"total_seconds\": "); line_seconds(&l, total);
    line_str(&l, ", \"errno\": "); line_u64(&l, (uint64_t)r->err);
    line_str(&l, ", \"error\": \"");
    if (r->error) {
        line_str(&l, r->error);
        if (r->error_offset != UINT64_MAX) {
            line_str(&l, " at offset ");
            line_u64(&l, r->error_offset);
        }
    }
    line_str(&l, "\", \"block_size\": "); line_u64(&l, r->block_size);
    line_str(&l, ", \"blocks_per_call\": "); line_u64(&l, r->blocks);
    line_str(&l, ", \"transport\": \""); line_str(&l, r->transport);
    line_str(&l, "\", \"batch\": "); line_u64(&l, r->batch);
    line_str(&l, ", \"data_checksum\": "); line_u64(&l, r->checksum);
    line_str(&l, "}\n");
    line_write(&l);
}

static int fail(struct run *r, int err, const char *msg, uint64_t offset, int status)
{
    r->err = err;
    r->error = msg;
    r->error_offset = offset;
    report(r);
    return status;
}

static uint64_t checksum(const uint64_t *w, uint64_t bytes)
{
    uint64_t s = 0;
    for (uint64_t i = 0; i < bytes / 8; i++)
        s += w[i];
    return s;
}

/*
 * The timed loop of the file ops and of the call and ring primitives. It is
 * always inlined with a constant kind, so each of them is the same machine code
 * around a different call: on a software KVM a guest instruction costs about
 * what a host syscall does, and primitives timed in a leaner loop of their own
 * missed ~6 us a call that every file op pays (ring primitive 40 us a request,
 * ring requests in a file op 45-47 us; a refused call and an exit 41 us, a
 * block call in a file op 48 us; x86_64, software KVM).
 * A file op's batch runs n repetitions of size bytes; a primitive's batch runs
 * its n calls as one repetition of n calls, in one buffer.
 */
enum kind { K_READ, K_WRITE, K_RING_READ, K_RING_WRITE, K_REFUSED, K_RING_BLOCK0 };

struct loop {
    solo5_handle_t h;
    uint8_t *data;
    uint64_t span, capacity, rep_bytes;     /* rep_bytes: a file op's size; 0: the rep and flush primitives */
    int syncing, prim;
};

static inline __attribute__((always_inline)) solo5_result_t block_call(
    enum kind k, const struct loop *L, uint64_t off, uint8_t *buf, uint64_t len)
{
    switch (k) {
    case K_READ: return solo5_block_read(L->h, off, buf, len);
    case K_WRITE: return solo5_block_write(L->h, off, buf, len);
    case K_RING_READ: return edgeio_block_ring_post(0, off, buf, len);
    case K_RING_WRITE: return edgeio_block_ring_post(1, off, buf, len);
    case K_REFUSED:
        return solo5_block_read(L->h, L->capacity, buf, len) == SOLO5_R_EINVAL ? SOLO5_R_OK : SOLO5_R_EUNSPEC;
    default: return edgeio_block_ring_post(0, 0, buf, len);
    }
}

static const char *call_error(enum kind k)
{
    switch (k) {
    case K_READ: return "solo5_block_read failed";
    case K_WRITE: return "solo5_block_write failed";
    case K_REFUSED: return "a block call past the end of the disk was not refused";
    default: return "ring post failed";
    }
}

static inline __attribute__((always_inline)) int timed_loop(struct run *r, const struct loop *L,
                                                            const enum kind k)
{
    const int ring = k == K_RING_READ || k == K_RING_WRITE || k == K_RING_BLOCK0;
    uint64_t base = r->reps / r->batches, extra = r->reps % r->batches, io = r->io_size;
    for (uint64_t b = 0; b < r->batches; b++) {
        uint64_t n = base + (b < extra);
        uint64_t outer = L->prim ? 1 : n, bytes = L->prim ? n * io : L->rep_bytes;
        uint64_t t0 = solo5_clock_monotonic();
        for (uint64_t rep = 0; rep < outer; rep++) {
            uint64_t boff = 0;
            for (uint64_t off = 0; off < bytes; off += io) {
                solo5_result_t rc = block_call(k, L, off, L->data + boff, io);
                if (rc != SOLO5_R_OK) {
                    batch_ns[b] = solo5_clock_monotonic() - t0;
                    r->batches_done = b;
                    return fail(r, rc == SOLO5_R_EINVAL ? 22 : 5, call_error(k),
                                L->prim ? UINT64_MAX : off, 1);
                }
                boff += io;
                if (boff == L->span)
                    boff = 0;
            }
            if (ring && edgeio_block_ring_submit() != SOLO5_R_OK) {
                r->batches_done = b;
                return fail(r, 5, "ring notification failed", UINT64_MAX, 1);
            }
            if (L->syncing && (ring ? edgeio_block_ring_flush() : edgeio_block_flush(L->h)) != SOLO5_R_OK) {
                r->batches_done = b;
                return fail(r, 5, "block flush failed", UINT64_MAX, 1);
            }
        }
        batch_ns[b] = solo5_clock_monotonic() - t0;
        batch_reps[b] = n;
        r->batches_done = b + 1;
    }
    return 0;
}

static int run_loop(struct run *r, const struct loop *L, enum kind k)
{
    switch (k) {
    case K_READ: return timed_loop(r, L, K_READ);
    case K_WRITE: return timed_loop(r, L, K_WRITE);
    case K_RING_READ: return timed_loop(r, L, K_RING_READ);
    case K_RING_WRITE: return timed_loop(r, L, K_RING_WRITE);
    case K_REFUSED: return timed_loop(r, L, K_REFUSED);
    default: return timed_loop(r, L, K_RING_BLOCK0);
    }
}

/* One primitive per repetition (see the top of this file). */
static int primitive(struct run *r, const struct solo5_start_info *si, solo5_handle_t h,
                     const struct solo5_block_info *info, int prim)
{
    if (prim == 4 && !util_streq(r->transport, "ring"))
        return fail(r, 22, "op=ring needs transport=ring", UINT64_MAX, 2);
    if (prim != 4 && !util_streq(r->transport, "hvt"))
        return fail(r, 22, "op=call, exit, copy, rep and flush need transport=hvt", UINT64_MAX, 2);
    if (prim == 4 && edgeio_block_ring_setup(h, (uint32_t)r->batch) != SOLO5_R_OK)
        return fail(r, 95, "op=ring needs the tender's ring extension (--transport=ring)", UINT64_MAX, 2);
    if (prim == 6 && !edgeio_block_flush_supported())
        return fail(r, 95, "op=flush needs the tender's flush extension", UINT64_MAX, 2);
    if (prim == 3 && (r->size % 16 || 2 * r->size + 8192 > si->heap_size))
        return fail(r, 22, "op=copy: size must be a multiple of 16 that fits twice in guest memory",
                    UINT64_MAX, 2);
    r->io_size = prim == 3 ? r->size : info->block_size;   /* a call of one block */
    uint8_t *a = (uint8_t *)((si->heap_start + 4095) & ~4095UL);
    if (prim == 1 || prim == 4 || prim == 5 || prim == 6) {
        /* rep and flush: a file op's repetitions of no bytes (write_sync's loop for flush) */
        struct loop L = { .h = h, .data = a, .span = r->io_size, .capacity = info->capacity,
                          .prim = prim == 1 || prim == 4, .syncing = prim == 6 };
        int rc = run_loop(r, &L, prim == 1 ? K_REFUSED : prim == 4 ? K_RING_BLOCK0 : prim == 6 ? K_WRITE : K_READ);
        if (rc == 0)
            report(r);
        return rc;
    }
    uint8_t *b = a + ((r->size + 4095) & ~4095UL);
    uint64_t base = r->reps / r->batches, extra = r->reps % r->batches;
    for (uint64_t k = 0; k < r->batches; k++) {
        uint64_t n = base + (k < extra), t0 = solo5_clock_monotonic();
        if (prim == 2)
            for (uint64_t i = 0; i < n; i++)
                (void)solo5_clock_wall();       /* one WALLTIME hypercall */
        else
            for (uint64_t i = 0; i < n; i++)
                edgeio_copy(b, a, r->size);
        batch_ns[k] = solo5_clock_monotonic() - t0;
        batch_reps[k] = n;
        r->batches_done = k + 1;
    }
    report(r);
    return 0;
}

int solo5_app_main(const struct solo5_start_info *si)
{
    static struct run r;
    bool ok = true;
    r.error_offset = UINT64_MAX;
    if (!arg_str(si->cmdline, "op", r.op, sizeof(r.op)))
        r.op[0] = '\0';
    if (!arg_str(si->cmdline, "disk", r.disk, sizeof(r.disk)))
        arg_str("disk=storage", "disk", r.disk, sizeof(r.disk));
    r.size = arg_u64(si->cmdline, "size", 0, &ok);
    r.reps = arg_u64(si->cmdline, "reps", 0, &ok);
    r.blocks = arg_u64(si->cmdline, "blocks", 1, &ok);
    r.batches = arg_u64(si->cmdline, "batches", 0, &ok);
    r.batch = arg_u64(si->cmdline, "batch", 1, &ok);
    if (!arg_str(si->cmdline, "transport", r.transport, sizeof(r.transport)))
        arg_str("transport=hvt", "transport", r.transport, sizeof(r.transport));
    if (!ok)
        return fail(&r, 22, "bad number in the command line", UINT64_MAX, 2);
    int writing = util_streq(r.op, "write") || util_streq(r.op, "write_sync");
    int syncing = util_streq(r.op, "write_sync");
    int prim = util_streq(r.op, "call") ? 1 : util_streq(r.op, "exit") ? 2 : util_streq(r.op, "copy") ? 3
        : util_streq(r.op, "ring") ? 4 : util_streq(r.op, "rep") ? 5 : util_streq(r.op, "flush") ? 6 : 0;
    if (!writing && !prim && !util_streq(r.op, "read"))
        return fail(&r, 22, "op must be write_sync, write, read, call, exit, copy, ring, rep or flush", UINT64_MAX, 2);
    if (r.size == 0 || r.reps == 0 || r.blocks == 0 || r.blocks > 65536)
        return fail(&r, 22, "size, reps and blocks (<= 65536) must be positive", UINT64_MAX, 2);
    int ring = util_streq(r.transport, "ring"), mapped = util_streq(r.transport, "mapped");
    if (!ring && !mapped && !util_streq(r.transport, "hvt"))
        return fail(&r, 22, "transport must be hvt, ring or mapped", UINT64_MAX, 2);
    if (r.batch == 0 || r.batch > 4096 || (!ring && r.batch != 1))
        return fail(&r, 22, "batch must be 1 to 4096, and 1 unless transport=ring", UINT64_MAX, 2);
    if (r.batches == 0 || r.batches > r.reps)
        r.batches = r.reps < 10 ? r.reps : 10;
    if (r.batches > MAX_BATCHES)
        r.batches = MAX_BATCHES;

    solo5_handle_t h;
    struct solo5_block_info info;
    if (solo5_block_acquire(r.disk, &h, &info) != SOLO5_R_OK)
        return fail(&r, 19, "no block device of that name (disk=)", UINT64_MAX, 2);
    r.block_size = info.block_size;
    r.io_size = info.block_size * r.blocks;
    if (prim)
        return primitive(&r, si, h, &info, prim);
    if (r.size % r.io_size)
        return fail(&r, 22, "size must be a multiple of block_size x blocks", UINT64_MAX, 2);
    if (r.size > info.capacity)
        return fail(&r, 27, "size is larger than the disk", UINT64_MAX, 2);
    if (syncing && !edgeio_block_flush_supported())
        return fail(&r, 95, "write_sync needs the tender's flush extension (stock solo5-hvt never flushes)",
                    UINT64_MAX, 2);
    edgeio_block_set_max_blocks((uint32_t)r.blocks);
    if (ring && edgeio_block_ring_setup(h, (uint32_t)r.batch) != SOLO5_R_OK)
        return fail(&r, 95, "transport=ring needs the tender's ring extension (--transport=ring)",
                    UINT64_MAX, 2);
    if (mapped && edgeio_block_map(h) != SOLO5_R_OK)
        return fail(&r, 95, "transport=mapped needs the tender's mapped disks (--transport=mapped)",
                    UINT64_MAX, 2);

    /* The data: at most MAX_SPAN bytes, reused for every span of the file. */
    uint64_t span = r.size <= MAX_SPAN ? r.size : (MAX_SPAN / r.io_size) * r.io_size;
    if (span == 0 || 2 * span > si->heap_size)
        return fail(&r, 12, "not enough guest memory for the buffers", UINT64_MAX, 2);
    uint8_t *data = (uint8_t *)((si->heap_start + 4095) & ~4095UL);
    if (writing) {
        uint64_t *w = (uint64_t *)data;
        for (uint64_t i = 0; i < span / 8; i++)
            w[i] = (i * 8) | PATTERN_TAG;
    }

    struct loop L = { .h = h, .data = data, .span = span, .capacity = info.capacity, .rep_bytes = r.size,
                      .syncing = syncing };
    int rc = run_loop(&r, &L, ring ? (writing ? K_RING_WRITE : K_RING_READ) : writing ? K_WRITE : K_READ);
    if (rc != 0)
        return rc;
    r.checksum = checksum((const uint64_t *)data, span);
    report(&r);
    return 0;
}

/*
 * edgeio_hvt_abi.h: the Solo5 hvt guest/tender ABI (version 2) as edgeio uses it,
 * written from the published facts of the ABI, plus edgeio's two extensions.
 *
 * Shared by the tender (define HVT_HOST) and the guest runtime. Only C99 headers.
 * Every structure shared with a guest has a fixed layout checked by static asserts,
 * because the tender must read it from guest memory without trusting it.
 */
#ifndef EDGEIO_HVT_ABI_H
#define EDGEIO_HVT_ABI_H

#include <stdint.h>
#include <stddef.h>

#define HVT_ABI_TARGET      1       /* ABI1 note: abi_target of hvt */
#define HVT_ABI_VERSION     2
#define HVT_GUEST_MIN_BASE  0x100000UL

/* Guest-physical layout below HVT_GUEST_MIN_BASE, chosen by the tender. */
#define HVT_BOOT_INFO_BASE  0x10000UL
#define HVT_CMDLINE_BASE    0x11000UL
#define HVT_CMDLINE_SIZE    8192
#define HVT_MFT_BASE        0x13000UL

#define HVT_HYPERCALL_PIO_BASE   0x500
#define HVT_HYPERCALL_MMIO_BASE  0x100000000ULL
#define HVT_HYPERCALL_ADDRESS(n) (HVT_HYPERCALL_MMIO_BASE + ((uint64_t)(n) << 3))

enum hvt_hypercall {
    HVT_HYPERCALL_WALLTIME = 1,
    HVT_HYPERCALL_PUTS = 2,
    HVT_HYPERCALL_POLL = 3,
    HVT_HYPERCALL_BLOCK_WRITE = 4,
    HVT_HYPERCALL_BLOCK_READ = 5,
    HVT_HYPERCALL_NET_WRITE = 6,
    HVT_HYPERCALL_NET_READ = 7,
    HVT_HYPERCALL_HALT = 8,
    HVT_HYPERCALL_MAX = 9,          /* stock tenders reject anything from here on */
    /* edgeio extension: flush a block device (port 0x510 / MMIO slot 16).
     * Issued only when the tender sets EDGEIO_HF_BLOCK_FLUSH in host_features;
     * a stock tender never sets it and would end a guest that issued it. */
    EDGEIO_HYPERCALL_BLOCK_FLUSH = 16,
    /* edgeio transports (ring.h below, mapped below): only when the tender
     * advertises them in host_features (--transport=ring / mapped). */
    EDGEIO_HYPERCALL_RING_SETUP = 17,
    EDGEIO_HYPERCALL_RING_NOTIFY = 18,
    EDGEIO_HYPERCALL_MAPPED_INFO = 19,
    EDGEIO_HYPERCALL_MAPPED_FLUSH = 20,
    EDGEIO_HYPERCALL_LIMIT = 21
};

/* Guest pointers travel as 64-bit guest-physical addresses. */
typedef uint64_t hvt_gpa_t;

struct hvt_boot_info {
    uint64_t mem_size;
    uint64_t kernel_end;
    uint64_t cpu_cycle_freq;        /* Hz of the guest's cycle counter */
    hvt_gpa_t cmdline;
    hvt_gpa_t mft;
    uint32_t host_features;         /* edgeio: EDGEIO_HF_* (stock tenders: 0) */
    uint32_t guest_features;
    uint64_t net_ring;
};

/* host_features bits of the edgeio tender. */
#define EDGEIO_HF_BLOCK_FLUSH   (1u << 16)  /* EDGEIO_HYPERCALL_BLOCK_FLUSH works */
#define EDGEIO_HF_BLOCK_RING    (1u << 17)  /* the ring transport (RING_SETUP/NOTIFY) */
#define EDGEIO_HF_BLOCK_MAPPED  (1u << 18)  /* disks mapped into guest memory (MAPPED_*) */

struct hvt_hc_walltime { uint64_t nsecs; };
struct hvt_hc_puts { hvt_gpa_t data; uint64_t len; };
struct hvt_hc_poll { uint64_t timeout_nsecs; uint64_t ready_set; int32_t ret; };
struct hvt_hc_block_io {            /* BLOCK_WRITE and BLOCK_READ */
    uint64_t handle;
    uint64_t offset;                /* bytes */
    hvt_gpa_t data;
    uint64_t len;
    int32_t ret;
};
struct hvt_hc_halt { hvt_gpa_t cookie; int32_t exit_status; };
struct edgeio_hc_block_flush { uint64_t handle; int32_t ret; };

_Static_assert(sizeof(struct hvt_boot_info) == 56, "boot info layout");
_Static_assert(sizeof(struct hvt_hc_block_io) == 40, "block io layout");
_Static_assert(sizeof(struct hvt_hc_poll) == 24, "poll layout");
_Static_assert(sizeof(struct hvt_hc_halt) == 16, "halt layout");

/*
 * Ring transport. The guest registers, once per block device, a ring in its
 * own memory: a header, `entries` 16-bit slots naming the first descriptor of
 * each posted request (slot i % entries), then `entries` descriptors.
 * It posts requests (descriptor, then slot, then req_prod += 1) and sends ONE
 * RING_NOTIFY for all of them; the tender serves every request posted since
 * the last notification, in order, writes each head's status and sets
 * rsp_prod = req_prod before the notification returns. A request is a chain
 * of descriptors (EDGEIO_RING_F_NEXT -> next): op and offset from the head,
 * one buffer per descriptor. FLUSH is a request of one descriptor, len 0.
 * Everything in the ring is hostile to the tender: it copies each field once
 * and ends the guest on anything out of bounds (see unikernel/README.md).
 */
#define EDGEIO_RING_MAX_ENTRIES     4096            /* power of two, 1 .. this */
#define EDGEIO_RING_MAX_SEGMENTS    1024            /* descriptors per request (IOV_MAX) */
#define EDGEIO_RING_MAX_NOTIFY_BYTES (1ULL << 30)   /* data served per notification */
enum edgeio_ring_op { EDGEIO_RING_READ = 1, EDGEIO_RING_WRITE = 2, EDGEIO_RING_FLUSH = 3 };
#define EDGEIO_RING_F_NEXT  1u

struct edgeio_ring_desc {
    uint64_t offset;                /* head: bytes on the disk */
    hvt_gpa_t data;                 /* this segment's buffer */
    uint32_t len;                   /* this segment's bytes (whole sectors) */
    uint16_t flags;                 /* EDGEIO_RING_F_NEXT */
    uint16_t next;                  /* next descriptor of the chain */
    uint8_t op;                     /* head: enum edgeio_ring_op */
    uint8_t pad_[3];
    int32_t status;                 /* head, out: HVT_R_* */
};
struct edgeio_ring {
    uint32_t req_prod;              /* guest: requests posted, free-running */
    uint32_t rsp_prod;              /* tender: requests completed, free-running */
    uint32_t reserved_[2];
    uint16_t slot[];                /* entries of them, then (8-aligned) the descriptors */
};
#define EDGEIO_RING_DESC_OFFSET(n)  (16 + (((uint64_t)(n) * 2 + 7) & ~7ULL))
#define EDGEIO_RING_BYTES(n)        (EDGEIO_RING_DESC_OFFSET(n) + (uint64_t)(n) * sizeof(struct edgeio_ring_desc))

struct edgeio_hc_ring_setup { uint64_t handle; hvt_gpa_t ring; uint32_t entries; int32_t ret; };
struct edgeio_hc_ring_notify { uint64_t handle; int32_t ret; };
_Static_assert(sizeof(struct edgeio_ring_desc) == 32, "ring descriptor layout");
_Static_assert(sizeof(struct edgeio_ring) == 16, "ring header layout");
_Static_assert(sizeof(struct edgeio_hc_ring_setup) == 24, "ring setup layout");

/*
 * Mapped disks (--transport=mapped): each attached disk file is mapped shared
 * into guest-physical memory from EDGEIO_MAPPED_BASE up (each window starts on
 * a 1 GiB boundary), so reads and writes are the guest's own memory copies.
 * MAPPED_INFO tells the guest where a disk's window is; MAPPED_FLUSH makes
 * [offset, offset + len) durable (msync of those pages).
 */
#define EDGEIO_MAPPED_BASE      (8ULL << 30)
#define EDGEIO_MAPPED_ALIGN     4096ULL             /* disk sizes: whole pages */
#define EDGEIO_MAPPED_MAX_BYTES (32ULL << 30)       /* all windows together */
struct edgeio_hc_mapped_info { uint64_t handle; hvt_gpa_t window; uint64_t len; int32_t ret; };
struct edgeio_hc_mapped_flush { uint64_t handle; uint64_t offset; uint64_t len; int32_t ret; };
_Static_assert(sizeof(struct edgeio_hc_mapped_info) == 32, "mapped info layout");
_Static_assert(sizeof(struct edgeio_hc_mapped_flush) == 32, "mapped flush layout");

/* result codes carried in ret (solo5_result_t values). */
#define HVT_R_OK        0
#define HVT_R_AGAIN     1
#define HVT_R_EINVAL    2
#define HVT_R_EUNSPEC   3

/* ELF notes, both named "Solo5". */
#define SOLO5_NOTE_NAME "Solo5"
#define ABI1_NOTE_TYPE  0x31494241u     /* "ABI1" */
#define MFT1_NOTE_TYPE  0x3154464du     /* "MFT1" */

struct abi1_info { uint32_t abi_target, abi_version, reserved0, reserved1; };

#define MFT_VERSION         1
#define MFT_MAX_ENTRIES     64
#define MFT_NAME_SIZE       68
#define MFT_DEV_BLOCK_BASIC 1u
#define MFT_DEV_NET_BASIC   2u
#define MFT_RESERVED_FIRST  (1u << 30)

struct mft_entry {
    char name[MFT_NAME_SIZE];
    uint32_t type;
    union {
        struct { uint64_t capacity; uint16_t block_size; } block_basic;
        struct { uint8_t mac[6]; uint16_t mtu; } net_basic;
    } u;
    uint64_t host_handle;           /* tender-private; guests ignore it */
    uint8_t attached;
    uint8_t pad_[7];
};
_Static_assert(sizeof(struct mft_entry) == 104, "mft entry layout");
_Static_assert(offsetof(struct mft_entry, u) == 72, "mft union offset");
_Static_assert(offsetof(struct mft_entry, host_handle) == 88, "mft handle offset");
_Static_assert(offsetof(struct mft_entry, attached) == 96, "mft attached offset");

struct mft {
    uint32_t version;
    uint32_t entries;
    struct mft_entry e[];
};

#endif

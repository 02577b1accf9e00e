/*
 * tender.h: state of the edgeio hvt tender (an hvt-ABI-compatible KVM monitor).
 *
 * The guest is hostile: everything read from guest memory goes through
 * guest_range(), which refuses any range not wholly inside guest memory.
 */
#ifndef EDGEIO_TENDER_H
#define EDGEIO_TENDER_H

#define HVT_HOST 1
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "edgeio_hvt_abi.h"

/* Exit statuses of the tender itself. A halting guest's own status passes through;
 * only the tender's verdicts come with an "edgeio-hvt: ..." line on stderr. */
#define EXIT_BAD_INPUT   2      /* options, ELF, disk, memory: the user's input */
#define EXIT_GUEST_FAULT 3      /* the guest broke the ABI or crashed */
#define EXIT_HOST_ERROR  4      /* KVM or host I/O failed */

enum flush_policy { FLUSH_NONE, FLUSH_EACH_WRITE, FLUSH_ON_REQUEST };
enum transport { TRANSPORT_HVT, TRANSPORT_RING, TRANSPORT_MAPPED };  /* --transport= */

struct counters {
    uint64_t exits[EDGEIO_HYPERCALL_LIMIT];  /* hypercalls by number */
    uint64_t other_exits;                    /* non-hypercall VM exits (e.g. signals) */
    uint64_t bytes_written, bytes_read;
    uint64_t fsyncs;
    uint64_t handler_ns[EDGEIO_HYPERCALL_LIMIT];  /* host time in each kind's handler */
    uint64_t host_io_calls;                  /* pread/pwrite/preadv/pwritev on disks */
    uint64_t ring_requests, ring_flushes;    /* requests served from rings; FLUSH among them */
    uint64_t flush_notifications;            /* ring notifications that carried a FLUSH */
};

/* A disk the tender opened for a manifest entry: the only map from a guest
 * handle (manifest index) to a host fd. Nothing here comes from the ELF. */
struct disk {
    int fd;                     /* -1: not attached */
    uint64_t capacity;          /* bytes */
    uint32_t block_size;        /* bytes, power of two, 512..32768 */
};

/* A guest-physical range and what the guest may do with it (GUEST_R/W/X). */
struct region { uint64_t gpa, len; unsigned prot; };
#define MAX_REGIONS 32
#define MAX_SEGMENTS 16

/* Boot info, command line and manifest copy end here (read-only to the guest). */
#define HVT_GUEST_LOW_END 0x15000UL

struct tender {
    uint8_t *mem;               /* host mapping of guest memory */
    uint64_t mem_size;
    uint64_t entry, kernel_end;
    uint64_t cycle_freq;
    struct mft *mft;            /* host copy, validated; the guest gets a copy */
    size_t mft_size;
    struct disk disks[MFT_MAX_ENTRIES];     /* by manifest index */
    struct region regions[MAX_REGIONS];     /* the guest's page tables, built from these */
    unsigned nregions;
    struct region segments[MAX_SEGMENTS];   /* the ELF's loads, page-rounded, by address */
    unsigned nsegments;
    uint64_t page_table_root;   /* gpa of the top-level table (x86_64 CR3, aarch64 TTBR0) */
    uint64_t ro_start, ro_end;  /* guest image's read-only span (text, rodata): no DMA into it */
    bool seccomp;               /* install the syscall filter (default; --no-seccomp) */
    bool ended_by_tender;       /* the exit status is the tender's verdict, not the guest's */
    enum flush_policy flush;
    uint32_t max_blocks;        /* blocks per block hypercall; 1 = stock */
    bool print_counters;
    bool stock_abi;             /* offer guests no edgeio extension (as stock solo5-hvt) */
    enum transport transport;
    struct counters c;
};

/* Pointer to [gpa, gpa+len) in guest memory, or NULL if any byte lies outside. */
static inline void *guest_range(const struct tender *t, uint64_t gpa, uint64_t len)
{
    if (gpa > t->mem_size || len > t->mem_size - gpa)
        return NULL;
    return t->mem + gpa;
}

/* The disk behind a guest's block handle, or NULL if the handle names none. */
static inline const struct disk *tender_disk(const struct tender *t, uint64_t handle)
{
    if (handle == 0 || handle >= MFT_MAX_ENTRIES || t->disks[handle].fd < 0)
        return NULL;
    return &t->disks[handle];
}

/* One-line errors; these never return. */
void die_bad_input(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void die_guest(struct tender *t, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
void die_host(struct tender *t, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
void tender_exit(struct tender *t, int status) __attribute__((noreturn));

/* elf.c */
void elf_load(struct tender *t, const char *path, int expected_machine);

/* mft.c */
void mft_validate(struct tender *t, const char *path);
void mft_attach_block(struct tender *t, const char *name, const char *path);
void mft_set_sector_size(struct tender *t, const char *name, const char *size);
void mft_finish(struct tender *t);

/* boot.c */
void boot_info_place(struct tender *t, const char *cmdline, uint32_t host_features);

/* hypercalls.c: handle hypercall nr with its argument at gpa.
 * Returns -1 to resume the guest, or the exit status after a HALT. */
int hypercall(struct tender *t, unsigned nr, uint64_t gpa);
void counters_print(const struct tender *t, int status);

/* seccomp.c: the syscall filter, installed right before the first guest instruction. */
struct kvm_vm;
void seccomp_install(struct tender *t, const struct kvm_vm *vm);

/* hypercalls.c, for the transports (which end a guest on any bad request). */
void *hc_arg(struct tender *t, const char *what, uint64_t gpa, size_t len);
const struct disk *hc_disk(struct tender *t, const char *what, uint64_t handle);  /* ends the guest if bad */
void hc_fsync(struct tender *t, int fd);
uint32_t tender_host_features(const struct tender *t);  /* EDGEIO_HF_* offered to the guest */

/* ring.c: the ring transport (EDGEIO_HYPERCALL_RING_*). */
void ring_setup(struct tender *t, uint64_t gpa);
void ring_notify(struct tender *t, uint64_t gpa);

/* mapped.c: disks mapped into guest memory (EDGEIO_HYPERCALL_MAPPED_*). */
void mapped_attach(struct tender *t);                   /* after mft_finish */
void mapped_add_slots(struct tender *t, int vm_fd);     /* KVM memory slots 1.. */
void mapped_check_disks(struct tender *t);              /* ends with a message if a disk shrank */
void mapped_info(struct tender *t, uint64_t gpa);
void mapped_flush(struct tender *t, uint64_t gpa);

/* kvm_<arch>.c */
extern const int tender_elf_machine;
extern const char tender_arch_name[];
void arch_mem_limits(uint64_t *max_mem);
int arch_run(struct tender *t, const char *cmdline);  /* returns the exit status */

#endif

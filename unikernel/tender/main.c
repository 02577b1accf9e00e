/*
 * main.c: edgeio-hvt, an hvt-ABI-compatible tender.
 *
 *   edgeio-hvt [--mem=MB] [--block:NAME=PATH]... [--block-sector-size:NAME=N]...
 *              [--flush=none|each-write|on-request] [--max-blocks-per-call=N]
 *              [--counters] [--stock-abi] [--no-seccomp] [--transport=hvt|ring|mapped]
 *              [--] UNIKERNEL [ARGS...]
 *
 * Options as stock solo5-hvt, plus the flush policy, the multi-block limit and
 * counters. --stock-abi hides the extensions from guests (host_features 0, the
 * flush hypercall unknown), to see what a stock tender would do.
 * ARGS become the guest's command line. The syscall filter (seccomp.c) is on
 * unless --no-seccomp says otherwise (a sanitizer build needs its own syscalls).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "tender.h"

#define MAX_BLOCK_OPTS (MFT_MAX_ENTRIES - 1)   /* 63, as stock */

struct name_value { char name[MFT_NAME_SIZE]; const char *value; };

static void usage(void)
{
    fprintf(stderr,
        "usage: edgeio-hvt [--mem=MB] [--block:NAME=PATH]... [--block-sector-size:NAME=N]...\n"
        "                  [--flush=none|each-write|on-request] [--max-blocks-per-call=N]\n"
        "                  [--counters] [--stock-abi] [--no-seccomp] [--transport=hvt|ring|mapped]\n"
        "                  [--] UNIKERNEL [ARGS...]\n");
}

static unsigned long parse_number(const char *opt, const char *s, unsigned long lo, unsigned long hi)
{
    char *end;
    unsigned long n = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || n < lo || n > hi)
        die_bad_input("%s=%s: expected a number from %lu to %lu", opt, s, lo, hi);
    return n;
}

/* "--prefix:NAME=VALUE" with a manifest-sized alphanumeric NAME. */
static void parse_named(const char *arg, size_t prefix_len, struct name_value *out)
{
    const char *name = arg + prefix_len, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : 0;
    if (!eq || n == 0 || n >= MFT_NAME_SIZE || eq[1] == '\0')
        die_bad_input("%s: expected NAME=VALUE", arg);
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
              (name[i] >= '0' && name[i] <= '9')))
            die_bad_input("%s: device names are alphanumeric", arg);
    memcpy(out->name, name, n);
    out->name[n] = '\0';
    out->value = eq + 1;
}

int main(int argc, char **argv)
{
    static struct tender t = { .flush = FLUSH_NONE, .max_blocks = 1, .seccomp = true };
    struct name_value blocks[MAX_BLOCK_OPTS], sectors[MAX_BLOCK_OPTS];
    int nblocks = 0, nsectors = 0, i;
    unsigned long mem_mb = 512;
    uint64_t max_mem;
    arch_mem_limits(&max_mem);

    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return 0;
        } else if (strncmp(a, "--mem=", 6) == 0) {
            mem_mb = parse_number("--mem", a + 6, 2, max_mem >> 20);
        } else if (strncmp(a, "--block:", 8) == 0) {
            if (nblocks == MAX_BLOCK_OPTS)
                die_bad_input("too many --block options");
            parse_named(a, 8, &blocks[nblocks++]);
        } else if (strncmp(a, "--block-sector-size:", 20) == 0) {
            if (nsectors == MAX_BLOCK_OPTS)
                die_bad_input("too many --block-sector-size options");
            parse_named(a, 20, &sectors[nsectors++]);
        } else if (strncmp(a, "--flush=", 8) == 0) {
            const char *p = a + 8;
            if (strcmp(p, "none") == 0) t.flush = FLUSH_NONE;
            else if (strcmp(p, "each-write") == 0) t.flush = FLUSH_EACH_WRITE;
            else if (strcmp(p, "on-request") == 0) t.flush = FLUSH_ON_REQUEST;
            else die_bad_input("--flush=%s: expected none, each-write or on-request", p);
        } else if (strncmp(a, "--max-blocks-per-call=", 22) == 0) {
            t.max_blocks = parse_number("--max-blocks-per-call", a + 22, 1, 65536);
        } else if (strcmp(a, "--counters") == 0) {
            t.print_counters = true;
        } else if (strcmp(a, "--stock-abi") == 0) {
            t.stock_abi = true;
        } else if (strncmp(a, "--transport=", 12) == 0) {
            const char *p = a + 12;
            if (strcmp(p, "hvt") == 0) t.transport = TRANSPORT_HVT;
            else if (strcmp(p, "ring") == 0) t.transport = TRANSPORT_RING;
            else if (strcmp(p, "mapped") == 0) t.transport = TRANSPORT_MAPPED;
            else die_bad_input("--transport=%s: expected hvt, ring or mapped", p);
        } else if (strcmp(a, "--no-seccomp") == 0) {
            t.seccomp = false;
        } else {
            usage();
            die_bad_input("unknown option %s", a);
        }
    }
    if (i >= argc) {
        usage();
        die_bad_input("no unikernel given");
    }
    const char *kernel = argv[i++];
    if (t.transport != TRANSPORT_HVT && t.stock_abi)
        die_bad_input("--transport=%s is an edgeio extension: not with --stock-abi",
                      t.transport == TRANSPORT_RING ? "ring" : "mapped");
    if (t.transport == TRANSPORT_MAPPED && t.flush == FLUSH_EACH_WRITE)
        die_bad_input("--transport=mapped has no write exits to flush after: use --flush=on-request or none");

    /* Guest command line: the remaining arguments, space-separated. */
    static char cmdline[HVT_CMDLINE_SIZE];
    size_t len = 0;
    for (; i < argc; i++) {
        size_t n = strlen(argv[i]), sep = len ? 1 : 0;
        if (n > sizeof(cmdline) - 1 - len - sep)     /* room for separator, text and NUL */
            die_bad_input("guest command line longer than %d bytes", HVT_CMDLINE_SIZE - 1);
        if (len)
            cmdline[len++] = ' ';
        memcpy(cmdline + len, argv[i], n);
        len += n;
    }
    cmdline[len] = '\0';

    /* Memory: whole 2 MiB pages, as stock solo5-hvt (2 MiB page tables). */
    t.mem_size = ((uint64_t)mem_mb << 20) & ~((2ULL << 20) - 1);
    t.mem = mmap(NULL, t.mem_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t.mem == MAP_FAILED)
        die_bad_input("--mem=%lu: cannot allocate guest memory", mem_mb);

    elf_load(&t, kernel, tender_elf_machine);
    for (int b = 0; b < nblocks; b++)
        mft_attach_block(&t, blocks[b].name, blocks[b].value);
    for (int s = 0; s < nsectors; s++)
        mft_set_sector_size(&t, sectors[s].name, sectors[s].value);
    mft_finish(&t);
    mapped_attach(&t);

    int status = arch_run(&t, cmdline);
    tender_exit(&t, status);
}

/*
 * elf.c: load a unikernel ELF into guest memory and read its Solo5 notes.
 *
 * The file is untrusted: every header field is checked against the file size
 * and guest memory with overflow-safe arithmetic before anything is copied.
 * Any problem is the user's input (exit 2) with a one-line reason.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tender.h"
#include "kvm_common.h"

static const char *machine_name(int m)
{
    switch (m) {
    case EM_X86_64: return "x86_64";
    case EM_AARCH64: return "aarch64";
    case EM_386: return "i386";
    case EM_ARM: return "arm";
    case EM_RISCV: return "riscv";
    default: return "another architecture";
    }
}

static uint8_t *read_file(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die_bad_input("unikernel %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        die_bad_input("unikernel %s: not a regular file", path);
    if (st.st_size > (off_t)1 << 30)
        die_bad_input("unikernel %s: larger than 1 GiB", path);
    uint8_t *buf = malloc(st.st_size ? st.st_size : 1);
    if (!buf)
        die_bad_input("unikernel %s: out of memory", path);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, st.st_size - got);
        if (n <= 0)
            die_bad_input("unikernel %s: read failed", path);
        got += n;
    }
    close(fd);
    *size = got;
    return buf;
}

/* [off, off+len) lies inside a file of fsize bytes. */
static int in_file(uint64_t off, uint64_t len, uint64_t fsize)
{
    return off <= fsize && len <= fsize - off;
}

/*
 * Walk the notes of one PT_NOTE segment. Name and descriptor are padded to the
 * segment's alignment (4, or 8 when p_align says so); a descriptor whose
 * content needs 8-byte alignment (MFT1) starts at the next 8-byte file offset,
 * which is how Solo5 toolchains lay it out.
 */
static void scan_notes(const char *path, const uint8_t *f, uint64_t off, uint64_t size,
                       const uint8_t **abi, uint64_t *abi_len,
                       const uint8_t **mft, uint64_t *mft_len)
{
    uint64_t end = off + size, p = off;
    while (end - p >= 12) {
        uint32_t namesz, descsz, type;
        memcpy(&namesz, f + p, 4);
        memcpy(&descsz, f + p + 4, 4);
        memcpy(&type, f + p + 8, 4);
        uint64_t name_off = p + 12;
        uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
        if (desc_off > end || descsz > end - desc_off)
            die_bad_input("unikernel %s: malformed ELF note", path);
        uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);
        if (namesz == sizeof(SOLO5_NOTE_NAME) &&
            memcmp(f + name_off, SOLO5_NOTE_NAME, sizeof(SOLO5_NOTE_NAME)) == 0) {
            if (type == ABI1_NOTE_TYPE) {
                *abi = f + desc_off;
                *abi_len = descsz;
            } else if (type == MFT1_NOTE_TYPE) {
                uint64_t aligned = (desc_off + 7) & ~7ULL;
                uint64_t skip = aligned - desc_off;
                if (skip > descsz)
                    die_bad_input("unikernel %s: malformed MFT1 note", path);
                *mft = f + aligned;
                *mft_len = descsz - skip;
            }
        }
        if (next <= p || next > end)
            break;
        p = next;
    }
}

static void check_abi(const char *path, const uint8_t *abi, uint64_t len)
{
    if (!abi)
        die_bad_input("unikernel %s: no Solo5 ABI1 note: not a Solo5 unikernel", path);
    struct abi1_info info;
    if (len < sizeof(info))
        die_bad_input("unikernel %s: ABI1 note too short", path);
    memcpy(&info, abi, sizeof(info));
    if (info.abi_target != HVT_ABI_TARGET)
        die_bad_input("unikernel %s: built for Solo5 target %u, not hvt (1)", path, info.abi_target);
    if (info.abi_version != HVT_ABI_VERSION)
        die_bad_input("unikernel %s: hvt ABI version %u, this tender runs version %d",
                      path, info.abi_version, HVT_ABI_VERSION);
}

static void copy_manifest(struct tender *t, const char *path, const uint8_t *m, uint64_t len)
{
    if (!m)
        die_bad_input("unikernel %s: no Solo5 MFT1 note (manifest)", path);
    uint32_t hdr[2];
    if (len < sizeof(hdr))
        die_bad_input("unikernel %s: MFT1 note too short", path);
    memcpy(hdr, m, sizeof(hdr));
    if (hdr[0] != MFT_VERSION)
        die_bad_input("unikernel %s: manifest version %u, expected %d", path, hdr[0], MFT_VERSION);
    if (hdr[1] < 1 || hdr[1] > MFT_MAX_ENTRIES)
        die_bad_input("unikernel %s: manifest has %u entries (1..%d allowed)", path, hdr[1], MFT_MAX_ENTRIES);
    size_t need = sizeof(struct mft) + (size_t)hdr[1] * sizeof(struct mft_entry);
    if (len < need)
        die_bad_input("unikernel %s: manifest truncated", path);
    t->mft = calloc(1, need);
    if (!t->mft)
        die_bad_input("out of memory");
    memcpy(t->mft, m, need);
    t->mft_size = need;
}

void elf_load(struct tender *t, const char *path, int expected_machine)
{
    size_t fsize;
    uint8_t *f = read_file(path, &fsize);
    Elf64_Ehdr eh;
    if (fsize < sizeof(eh))
        die_bad_input("unikernel %s: truncated (%zu bytes): not an ELF file", path, fsize);
    memcpy(&eh, f, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        die_bad_input("unikernel %s: not an ELF file", path);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
        eh.e_ident[EI_VERSION] != EV_CURRENT)
        die_bad_input("unikernel %s: not a 64-bit little-endian ELF", path);
    if (eh.e_machine != expected_machine)
        die_bad_input("unikernel %s: built for %s, this tender runs %s guests", path,
                      machine_name(eh.e_machine), tender_arch_name);
    if (eh.e_type != ET_EXEC)
        die_bad_input("unikernel %s: not a static executable (ELF type %u)", path, eh.e_type);
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64 ||
        !in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), fsize))
        die_bad_input("unikernel %s: malformed or truncated program headers", path);

    const uint8_t *abi = NULL, *mft = NULL;
    uint64_t abi_len = 0, mft_len = 0, kend = 0;
    int loads = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, f + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_NOTE) {
            if (!in_file(ph.p_offset, ph.p_filesz, fsize))
                die_bad_input("unikernel %s: truncated (note outside the file)", path);
            scan_notes(path, f, ph.p_offset, ph.p_filesz, &abi, &abi_len, &mft, &mft_len);
            continue;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (!in_file(ph.p_offset, ph.p_filesz, fsize))
            die_bad_input("unikernel %s: truncated (segment %u outside the file)", path, i);
        if (ph.p_filesz > ph.p_memsz)
            die_bad_input("unikernel %s: malformed segment %u (file size > memory size)", path, i);
        if (ph.p_paddr < HVT_GUEST_MIN_BASE)
            die_bad_input("unikernel %s: segment %u at 0x%llx, below 0x%lx", path, i,
                          (unsigned long long)ph.p_paddr, HVT_GUEST_MIN_BASE);
        if (ph.p_paddr > t->mem_size || ph.p_memsz > t->mem_size - ph.p_paddr)
            die_bad_input("unikernel %s: does not fit in %llu MiB of guest memory (--mem)",
                          path, (unsigned long long)(t->mem_size >> 20));
        /* W^X and page granularity: each segment gets its own page protections. */
        if ((ph.p_flags & PF_W) && (ph.p_flags & PF_X))
            die_bad_input("unikernel %s: segment %u is both writable and executable (W^X)", path, i);
        if (ph.p_paddr % 4096 || ph.p_vaddr != ph.p_paddr)
            die_bad_input("unikernel %s: segment %u at 0x%llx is not page-aligned and identity-mapped",
                          path, i, (unsigned long long)ph.p_paddr);
        uint64_t end = (ph.p_paddr + ph.p_memsz + 4095) & ~4095ULL;
        if (loads && ph.p_paddr < kend)
            die_bad_input("unikernel %s: segment %u at 0x%llx overlaps or precedes the one before",
                          path, i, (unsigned long long)ph.p_paddr);
        if (loads == MAX_SEGMENTS)
            die_bad_input("unikernel %s: more than %d loadable segments", path, MAX_SEGMENTS);
        if (end > t->mem_size)
            die_bad_input("unikernel %s: does not fit in %llu MiB of guest memory (--mem)",
                          path, (unsigned long long)(t->mem_size >> 20));
        unsigned prot = GUEST_R | ((ph.p_flags & PF_W) ? GUEST_W : 0) | ((ph.p_flags & PF_X) ? GUEST_X : 0);
        t->segments[loads] = (struct region){ ph.p_paddr, end - ph.p_paddr, prot };
        if (!(prot & GUEST_W)) {
            if (t->ro_end == 0)
                t->ro_start = ph.p_paddr;
            t->ro_end = end;
        }
        loads++;
        kend = end;
    }
    t->nsegments = loads;
    if (!loads)
        die_bad_input("unikernel %s: no loadable segment", path);
    const struct region *entry_seg = NULL;
    for (int i = 0; i < loads; i++)
        if (eh.e_entry - t->segments[i].gpa < t->segments[i].len)
            entry_seg = &t->segments[i];
    if (!entry_seg)
        die_bad_input("unikernel %s: entry point 0x%llx outside the loaded image", path,
                      (unsigned long long)eh.e_entry);
    if (!(entry_seg->prot & GUEST_X))
        die_bad_input("unikernel %s: entry point 0x%llx is not in an executable segment", path,
                      (unsigned long long)eh.e_entry);
    check_abi(path, abi, abi_len);
    copy_manifest(t, path, mft, mft_len);
    mft_validate(t, path);

    /* Checks passed: copy the segments (bss stays zero: fresh anonymous memory). */
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, f + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_LOAD && ph.p_memsz)
            memcpy(t->mem + ph.p_paddr, f + ph.p_offset, ph.p_filesz);
    }
    t->entry = eh.e_entry;
    t->kernel_end = kend;
    if (t->kernel_end >= t->mem_size)
        die_bad_input("unikernel %s: leaves no free guest memory (--mem)", path);
    free(f);
}

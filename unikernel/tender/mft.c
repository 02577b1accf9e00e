/*
 * mft.c: the application manifest. The ELF declares devices (names, types and
 * optionally a block size); every field the tender fills (attached, capacity,
 * host_handle) must be zero in the ELF, or the unikernel is refused. Disks the
 * tender opens go into its own table (t->disks), never into the manifest: the
 * guest's copy carries attached, capacity and block size, and no host handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <unistd.h>
#include "tender.h"

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int valid_sector_size(uint64_t n)
{
    return n >= 512 && n <= 32768 && (n & (n - 1)) == 0;
}

/* Check the manifest as the ELF declares it (t->mft, straight from the note). */
void mft_validate(struct tender *t, const char *path)
{
    struct mft *m = t->mft;
    const struct mft_entry *r = &m->e[0];
    struct mft_entry reserved = { .type = MFT_RESERVED_FIRST };
    if (memcmp(r, &reserved, sizeof(reserved)) != 0)
        die_bad_input("unikernel %s: manifest entry 0 is not the reserved entry (type 0x%x, all else zero)",
                      path, MFT_RESERVED_FIRST);
    for (uint32_t i = 1; i < m->entries; i++) {
        struct mft_entry *e = &m->e[i];
        if (memchr(e->name, '\0', MFT_NAME_SIZE) == NULL || e->name[0] == '\0')
            die_bad_input("unikernel %s: manifest entry %u has an empty or unterminated name", path, i);
        size_t n = strlen(e->name);
        if (!all_zero(e->name + n, MFT_NAME_SIZE - n))
            die_bad_input("unikernel %s: manifest entry %u has bytes after its name", path, i);
        if (e->type == MFT_RESERVED_FIRST)
            die_bad_input("unikernel %s: reserved manifest entry at %u", path, i);
        if (e->type == MFT_DEV_NET_BASIC)
            die_bad_input("unikernel declares network device '%s': this tender has no network", e->name);
        if (e->type != MFT_DEV_BLOCK_BASIC)
            die_bad_input("unikernel %s: manifest entry '%s' has unknown type %u", path, e->name, e->type);
        if (e->attached || e->host_handle || e->u.block_basic.capacity || !all_zero(e->pad_, sizeof(e->pad_)))
            die_bad_input("unikernel %s: manifest entry '%s' presets fields only the tender fills "
                          "(attached, capacity, host handle)", path, e->name);
        /* Bytes of the union beyond block_basic's fields: zero too. */
        const uint8_t *u = (const uint8_t *)&e->u;
        if (!all_zero(u + 10, sizeof(e->u) - 10))
            die_bad_input("unikernel %s: manifest entry '%s' has stray bytes", path, e->name);
        uint64_t bs = e->u.block_basic.block_size;
        if (bs != 0 && !valid_sector_size(bs))
            die_bad_input("unikernel %s: block device '%s' declares a %llu-byte sector "
                          "(a power of two from 512 to 32768, or 0 for 512)",
                          path, e->name, (unsigned long long)bs);
        for (uint32_t j = 1; j < i; j++)
            if (strcmp(m->e[j].name, e->name) == 0)
                die_bad_input("unikernel %s: manifest declares '%s' twice", path, e->name);
    }
    for (unsigned i = 0; i < MFT_MAX_ENTRIES; i++)
        t->disks[i].fd = -1;
}

static uint32_t find(struct tender *t, const char *opt, const char *name)
{
    for (uint32_t i = 1; i < t->mft->entries; i++)
        if (t->mft->e[i].type == MFT_DEV_BLOCK_BASIC && strcmp(t->mft->e[i].name, name) == 0)
            return i;
    die_bad_input("%s:%s: the unikernel declares no block device named '%s'", opt, name, name);
}

void mft_attach_block(struct tender *t, const char *name, const char *path)
{
    struct disk *d = &t->disks[find(t, "--block", name)];
    if (d->fd >= 0)
        die_bad_input("--block:%s given twice", name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die_bad_input("disk %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die_bad_input("disk %s: %s", path, strerror(errno));
    uint64_t capacity;
    if (S_ISREG(st.st_mode)) {
        capacity = st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &capacity) < 0)
            die_bad_input("disk %s: cannot read its size", path);
    } else {
        die_bad_input("disk %s: not a regular file or block device", path);
    }
    d->fd = fd;
    d->capacity = capacity;
}

void mft_set_sector_size(struct tender *t, const char *name, const char *size)
{
    struct disk *d = &t->disks[find(t, "--block-sector-size", name)];
    char *endp;
    unsigned long n = strtoul(size, &endp, 10);
    if (*size == '\0' || *endp != '\0' || !valid_sector_size(n))
        die_bad_input("--block-sector-size:%s=%s: must be a power of two from 512 to 32768", name, size);
    d->block_size = (uint32_t)n;
}

void mft_finish(struct tender *t)
{
    struct mft *m = t->mft;
    for (uint32_t i = 1; i < m->entries; i++) {
        struct mft_entry *e = &m->e[i];
        struct disk *d = &t->disks[i];
        if (d->fd < 0)
            die_bad_input("block device '%s' declared by the unikernel is not attached (--block:%s=PATH)",
                          e->name, e->name);
        if (d->block_size == 0)
            d->block_size = e->u.block_basic.block_size ? e->u.block_basic.block_size : 512;
        uint64_t bs = d->block_size, cap = d->capacity;
        if (cap < bs)
            die_bad_input("disk for '%s': %llu bytes, smaller than one %llu-byte sector",
                          e->name, (unsigned long long)cap, (unsigned long long)bs);
        if (cap % bs)
            die_bad_input("disk for '%s': %llu bytes is not a multiple of the %llu-byte sector size",
                          e->name, (unsigned long long)cap, (unsigned long long)bs);
        /* The guest's view (boot.c copies this; host_handle stays 0). */
        e->attached = 1;
        e->u.block_basic.capacity = cap;
        e->u.block_basic.block_size = (uint16_t)bs;
    }
}

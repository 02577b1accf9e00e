/*
 * mft.c: the application manifest: attach host files to its block devices,
 * check that every declared device is attached, place a copy in guest memory.
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

static struct mft_entry *find(struct tender *t, const char *name, uint32_t type)
{
    for (uint32_t i = 0; i < t->mft->entries; i++) {
        struct mft_entry *e = &t->mft->e[i];
        if (e->type == type && strncmp(e->name, name, MFT_NAME_SIZE) == 0)
            return e;
    }
    return NULL;
}

void mft_attach_block(struct tender *t, const char *name, const char *path)
{
    struct mft_entry *e = find(t, name, MFT_DEV_BLOCK_BASIC);
    if (!e)
        die_bad_input("--block:%s: the unikernel declares no block device named '%s'", name, name);
    if (e->attached)
        die_bad_input("--block:%s given twice", name);
    int fd = open(path, O_RDWR);
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
    e->u.block_basic.capacity = capacity;
    e->host_handle = (uint64_t)fd;
    e->attached = 1;
}

void mft_set_sector_size(struct tender *t, const char *name, const char *size)
{
    struct mft_entry *e = find(t, name, MFT_DEV_BLOCK_BASIC);
    if (!e)
        die_bad_input("--block-sector-size:%s: the unikernel declares no block device named '%s'", name, name);
    char *endp;
    unsigned long n = strtoul(size, &endp, 10);
    if (*size == '\0' || *endp != '\0' || n < 512 || n > 32768 || (n & (n - 1)))
        die_bad_input("--block-sector-size:%s=%s: must be a power of two from 512 to 32768", name, size);
    e->u.block_basic.block_size = (uint16_t)n;
}

void mft_finish(struct tender *t)
{
    struct mft *m = t->mft;
    if (m->e[0].type != MFT_RESERVED_FIRST)
        die_bad_input("unikernel manifest: first entry is not the reserved entry");
    for (uint32_t i = 0; i < m->entries; i++) {
        struct mft_entry *e = &m->e[i];
        if (memchr(e->name, '\0', MFT_NAME_SIZE) == NULL)
            die_bad_input("unikernel manifest: entry %u has an unterminated name", i);
        if (i > 0 && e->type == MFT_RESERVED_FIRST)
            die_bad_input("unikernel manifest: reserved entry at %u", i);
        if (e->type == MFT_DEV_NET_BASIC)
            die_bad_input("unikernel declares network device '%s': this tender has no network", e->name);
        if (i > 0 && e->type != MFT_DEV_BLOCK_BASIC)
            die_bad_input("unikernel manifest: entry '%s' has unknown type %u", e->name, e->type);
        if (e->type != MFT_DEV_BLOCK_BASIC)
            continue;
        if (!e->attached)
            die_bad_input("block device '%s' declared by the unikernel is not attached (--block:%s=PATH)",
                          e->name, e->name);
        if (e->u.block_basic.block_size == 0)
            e->u.block_basic.block_size = 512;
        uint64_t bs = e->u.block_basic.block_size, cap = e->u.block_basic.capacity;
        if (cap < bs)
            die_bad_input("disk for '%s': %llu bytes, smaller than one %llu-byte sector",
                          e->name, (unsigned long long)cap, (unsigned long long)bs);
        if (cap % bs)
            die_bad_input("disk for '%s': %llu bytes is not a multiple of the %llu-byte sector size",
                          e->name, (unsigned long long)cap, (unsigned long long)bs);
    }
}

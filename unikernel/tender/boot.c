/* boot.c: boot info, command line and manifest copy below the guest image. */
#include <string.h>
#include "tender.h"

void boot_info_place(struct tender *t, const char *cmdline, uint32_t host_features)
{
    size_t n = strnlen(cmdline, HVT_CMDLINE_SIZE);
    if (n >= HVT_CMDLINE_SIZE)
        die_bad_input("guest command line longer than %d bytes", HVT_CMDLINE_SIZE - 1);
    memcpy(t->mem + HVT_CMDLINE_BASE, cmdline, n + 1);

    /* The guest's copy hides host handles (file descriptors). */
    _Static_assert(HVT_MFT_BASE + sizeof(struct mft) + MFT_MAX_ENTRIES * sizeof(struct mft_entry)
                   <= HVT_GUEST_LOW_END, "manifest copy beyond the read-only boot area");
    _Static_assert(HVT_MFT_BASE + sizeof(struct mft) + MFT_MAX_ENTRIES * sizeof(struct mft_entry)
                   <= HVT_GUEST_MIN_BASE, "manifest copy overlaps the guest image");
    struct mft *g = (struct mft *)(t->mem + HVT_MFT_BASE);
    memcpy(g, t->mft, t->mft_size);     /* host_handle is never set: always 0 */

    struct hvt_boot_info bi = {
        .mem_size = t->mem_size,
        .kernel_end = t->kernel_end,
        .cpu_cycle_freq = t->cycle_freq,
        .cmdline = HVT_CMDLINE_BASE,
        .mft = HVT_MFT_BASE,
        .host_features = host_features,
    };
    memcpy(t->mem + HVT_BOOT_INFO_BASE, &bi, sizeof(bi));
}

/*
 * manifest_note.h: declare an application's "Solo5" MFT1 note (its manifest).
 * The descriptor (struct mft) needs 8-byte alignment, so it starts at the
 * next 8-byte boundary after the 20-byte header; descsz counts that padding,
 * as Solo5 toolchains do.
 *
 *   MANIFEST_NOTE(2, { MFT_RESERVED_ENTRY, MFT_BLOCK("storage") });
 */
#ifndef EDGEIO_MANIFEST_NOTE_H
#define EDGEIO_MANIFEST_NOTE_H
#include "edgeio_hvt_abi.h"

#define MFT_RESERVED_ENTRY { .name = "", .type = MFT_RESERVED_FIRST }
#define MFT_BLOCK(n) { .name = n, .type = MFT_DEV_BLOCK_BASIC }

#define MANIFEST_NOTE(n, ...)                                               \
    struct mft1_note {                                                      \
        uint32_t namesz, descsz, type;                                      \
        char name[8];                                                       \
        uint32_t pad;                                                       \
        uint32_t version, entries;                                          \
        struct mft_entry e[n];                                              \
    };                                                                      \
    const struct mft1_note solo5_mft1_note                                  \
        __attribute__((section(".note.solo5.manifest"), aligned(8), used)) = { \
        .namesz = sizeof(SOLO5_NOTE_NAME),                                  \
        .descsz = sizeof(struct mft1_note) - 20,                            \
        .type = MFT1_NOTE_TYPE,                                             \
        .name = SOLO5_NOTE_NAME,                                            \
        .version = MFT_VERSION,                                             \
        .entries = n,                                                       \
        .e = __VA_ARGS__,                                                   \
    }
#endif

/* abi_note.c: the "Solo5" ABI1 note: this is an hvt guest of ABI version 2. */
#include "edgeio_hvt_abi.h"

struct abi1_note {
    uint32_t namesz, descsz, type;
    char name[8];
    struct abi1_info info;
};

const struct abi1_note solo5_abi1_note
    __attribute__((section(".note.solo5.abi"), aligned(4), used)) = {
    .namesz = sizeof(SOLO5_NOTE_NAME),
    .descsz = sizeof(struct abi1_info),
    .type = ABI1_NOTE_TYPE,
    .name = SOLO5_NOTE_NAME,
    .info = { .abi_target = HVT_ABI_TARGET, .abi_version = HVT_ABI_VERSION },
};

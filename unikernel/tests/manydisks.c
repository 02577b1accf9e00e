/*
 * manydisks.c: a guest with the stock maximum of 63 block devices (d1..d63):
 * acquires each and writes its first block filled with the device's number,
 * then prints how many it wrote and exits 0 if all 63 worked.
 */
#include "solo5.h"
#include "edgeio_util.h"
#include "manifest_note.h"

MANIFEST_NOTE(64, { MFT_RESERVED_ENTRY, MFT_BLOCK("d1"), MFT_BLOCK("d2"), MFT_BLOCK("d3"), MFT_BLOCK("d4"), MFT_BLOCK("d5"), MFT_BLOCK("d6"), MFT_BLOCK("d7"), MFT_BLOCK("d8"), MFT_BLOCK("d9"), MFT_BLOCK("d10"), MFT_BLOCK("d11"), MFT_BLOCK("d12"), MFT_BLOCK("d13"), MFT_BLOCK("d14"), MFT_BLOCK("d15"), MFT_BLOCK("d16"), MFT_BLOCK("d17"), MFT_BLOCK("d18"), MFT_BLOCK("d19"), MFT_BLOCK("d20"), MFT_BLOCK("d21"), MFT_BLOCK("d22"), MFT_BLOCK("d23"), MFT_BLOCK("d24"), MFT_BLOCK("d25"), MFT_BLOCK("d26"), MFT_BLOCK("d27"), MFT_BLOCK("d28"), MFT_BLOCK("d29"), MFT_BLOCK("d30"), MFT_BLOCK("d31"), MFT_BLOCK("d32"), MFT_BLOCK("d33"), MFT_BLOCK("d34"), MFT_BLOCK("d35"), MFT_BLOCK("d36"), MFT_BLOCK("d37"), MFT_BLOCK("d38"), MFT_BLOCK("d39"), MFT_BLOCK("d40"), MFT_BLOCK("d41"), MFT_BLOCK("d42"), MFT_BLOCK("d43"), MFT_BLOCK("d44"), MFT_BLOCK("d45"), MFT_BLOCK("d46"), MFT_BLOCK("d47"), MFT_BLOCK("d48"), MFT_BLOCK("d49"), MFT_BLOCK("d50"), MFT_BLOCK("d51"), MFT_BLOCK("d52"), MFT_BLOCK("d53"), MFT_BLOCK("d54"), MFT_BLOCK("d55"), MFT_BLOCK("d56"), MFT_BLOCK("d57"), MFT_BLOCK("d58"), MFT_BLOCK("d59"), MFT_BLOCK("d60"), MFT_BLOCK("d61"), MFT_BLOCK("d62"), MFT_BLOCK("d63") });

static uint8_t block[512];

int solo5_app_main(const struct solo5_start_info *si)
{
    unsigned ok = 0;
    for (unsigned i = 1; i <= 63; i++) {
        char name[4] = { 'd', (char)(i < 10 ? '0' + i : '0' + i / 10), (char)(i < 10 ? 0 : '0' + i % 10), 0 };
        solo5_handle_t h;
        struct solo5_block_info info;
        if (solo5_block_acquire(name, &h, &info) != SOLO5_R_OK)
            continue;
        for (unsigned b = 0; b < sizeof(block); b++)
            block[b] = (uint8_t)i;
        if (solo5_block_write(h, 0, block, sizeof(block)) == SOLO5_R_OK)
            ok++;
    }
    char line[] = "manydisks: 00 written\n";
    line[11] = '0' + ok / 10;
    line[12] = '0' + ok % 10;
    solo5_console_write(line, sizeof(line) - 1);
    return ok == 63 ? 0 : 1;
}

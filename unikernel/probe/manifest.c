/* manifest.c: the probe's manifest: one block device, "storage". */
#include "manifest_note.h"

MANIFEST_NOTE(2, { MFT_RESERVED_ENTRY, MFT_BLOCK("storage") });

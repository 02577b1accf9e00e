/* transport.h: what block.c shares with the transports (ring.c, mapped.c). Runtime-internal. */
#ifndef EDGEIO_TRANSPORT_H
#define EDGEIO_TRANSPORT_H
#include "solo5.h"
#include "edgeio_hvt_abi.h"

/* The stock bindings' checks of a block call (acquired, whole blocks, inside the device). */
solo5_result_t rt_block_check(solo5_handle_t h, solo5_off_t offset, size_t size);

/* mapped.c: the window of a mapped device (NULL: not mapped), and its copies. */
extern uint8_t *rt_mapped_window[MFT_MAX_ENTRIES];
solo5_result_t rt_mapped_io(int write, solo5_handle_t h, solo5_off_t offset, uintptr_t buf, size_t size);
solo5_result_t rt_mapped_flush(solo5_handle_t h);
#endif

/*
 * edgeio_ext.h: edgeio's extensions to the Solo5 block API (off by default).
 *
 * Multi-block: after edgeio_block_set_max_blocks(k), solo5_block_write/read
 * accept any whole number of blocks up to k in one call, sent as ONE
 * hypercall (the study's fix #1). The edgeio tender accepts it up to its
 * --max-blocks-per-call and ends a guest that sends more.
 * Flush: edgeio_block_flush() asks the tender to flush the device; only where
 * the tender advertises it (boot info host_features), else SOLO5_R_EUNSPEC.
 */
#ifndef EDGEIO_EXT_H
#define EDGEIO_EXT_H
#include "solo5.h"

void edgeio_block_set_max_blocks(uint32_t blocks);
bool edgeio_block_flush_supported(void);
solo5_result_t edgeio_block_flush(solo5_handle_t handle);
#endif

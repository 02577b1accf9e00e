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

/* Ring transport (tender --transport=ring): queue requests, one exit per batch.
 * post() queues one read or write (whole blocks, inside the device) and
 * notifies the tender when `batch` are queued; submit() notifies for what is
 * queued; the buffers of a read hold the data only after its notification.
 * flush() = submit, then one FLUSH request in a notification of its own. */
bool edgeio_block_ring_supported(void);
solo5_result_t edgeio_block_ring_setup(solo5_handle_t handle, uint32_t batch);
solo5_result_t edgeio_block_ring_post(int write, solo5_off_t offset, uint8_t *buf, size_t size);
solo5_result_t edgeio_block_ring_submit(void);
solo5_result_t edgeio_block_ring_flush(void);

/* Mapped disks (tender --transport=mapped): after map(), block reads and
 * writes on the handle are memory copies (no exit); flush sends one exit. */
bool edgeio_block_mapped_supported(void);
solo5_result_t edgeio_block_map(solo5_handle_t handle);
uint8_t *edgeio_block_window(solo5_handle_t handle);    /* NULL if not mapped */
void edgeio_copy(void *dst, const void *src, size_t n); /* n a multiple of 16 */
#endif

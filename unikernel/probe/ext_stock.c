/*
 * ext_stock.c: the edgeio extensions as a stock Solo5 toolchain sees them:
 * absent. Multi-block requests then fail in the stock bindings (EINVAL) and
 * write_sync reports that no flush exists; plain reads and writes run as in
 * the study.
 */
#include "edgeio_ext.h"

void edgeio_block_set_max_blocks(uint32_t blocks) { (void)blocks; }
bool edgeio_block_flush_supported(void) { return false; }
solo5_result_t edgeio_block_flush(solo5_handle_t h) { (void)h; return SOLO5_R_EUNSPEC; }
bool edgeio_block_ring_supported(void) { return false; }
solo5_result_t edgeio_block_ring_setup(solo5_handle_t h, uint32_t b) { (void)h, (void)b; return SOLO5_R_EUNSPEC; }
solo5_result_t edgeio_block_ring_post(int w, solo5_off_t o, uint8_t *p, size_t n)
{ (void)w, (void)o, (void)p, (void)n; return SOLO5_R_EUNSPEC; }
solo5_result_t edgeio_block_ring_submit(void) { return SOLO5_R_EUNSPEC; }
solo5_result_t edgeio_block_ring_flush(void) { return SOLO5_R_EUNSPEC; }
bool edgeio_block_mapped_supported(void) { return false; }
solo5_result_t edgeio_block_map(solo5_handle_t h) { (void)h; return SOLO5_R_EUNSPEC; }
uint8_t *edgeio_block_window(solo5_handle_t h) { (void)h; return 0; }
void edgeio_copy(void *d, const void *s, size_t n) { (void)d, (void)s, (void)n; }

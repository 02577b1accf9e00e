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

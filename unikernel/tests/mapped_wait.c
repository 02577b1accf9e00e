/*
 * mapped_wait.c: a guest on a mapped disk that waits for the test, then
 * touches the disk's last sector -- for the test that truncates the file under
 * the mapping (tests/test_transports.py).
 *
 * It writes its first sector through the window, prints "mapped_wait: ready",
 * then waits until the 64-bit word at disk offset 8 becomes non-zero (the test
 * truncates the file, then writes that word with pwrite: the shared mapping
 * shows it to the guest; an event, no sleep), then reads the last sector of
 * the disk as it was mapped. The tender must end it with one line, status 4.
 */
#include "solo5.h"
#include "edgeio_ext.h"
#include "edgeio_util.h"

static uint8_t buf[4096] __attribute__((aligned(4096)));

int solo5_app_main(const struct solo5_start_info *si)
{
    solo5_handle_t h;
    struct solo5_block_info info;
    if (solo5_block_acquire("storage", &h, &info) != SOLO5_R_OK || edgeio_block_map(h) != SOLO5_R_OK)
        return 2;
    for (unsigned i = 0; i < info.block_size; i++)
        buf[i] = 0;
    if (solo5_block_write(h, 0, buf, info.block_size) != SOLO5_R_OK)
        return 1;
    solo5_console_write("mapped_wait: ready\n", 19);
    volatile uint64_t *flag = (volatile uint64_t *)(edgeio_block_window(h) + 8);
    while (*flag == 0)
        ;
    solo5_block_read(h, info.capacity - info.block_size, buf, info.block_size);
    solo5_console_write("mapped_wait: survived\n", 22);
    return 0;
}

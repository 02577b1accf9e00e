/* start.c: entry from the tender (boot info in rdi / x0), then solo5_app_main. */
#include "solo5.h"
#include "hypercall.h"

#define STACK_RESERVE (512 * 1024)  /* below the top of memory, where sp starts */

const struct hvt_boot_info *hvt_bi;
void clock_init(uint64_t cycle_freq);

void _start(const struct hvt_boot_info *bi) __attribute__((noreturn, used, section(".text.start")));
void _start(const struct hvt_boot_info *bi)
{
    hvt_bi = bi;
    clock_init(bi->cpu_cycle_freq);
    struct solo5_start_info si = {
        .cmdline = (const char *)(uintptr_t)bi->cmdline,
        .heap_start = bi->kernel_end,
        .heap_size = bi->mem_size > bi->kernel_end + STACK_RESERVE
                         ? bi->mem_size - bi->kernel_end - STACK_RESERVE : 0,
    };
    solo5_exit(solo5_app_main(&si));
}

void solo5_exit(int status)
{
    volatile struct hvt_hc_halt a = { .cookie = 0, .exit_status = status };
    hvt_hypercall(HVT_HYPERCALL_HALT, &a);
    for (;;)
        ;
}

void solo5_abort(void)
{
    solo5_exit(SOLO5_EXIT_ABORT);
}

void solo5_console_write(const char *buf, size_t size)
{
    volatile struct hvt_hc_puts a = { .data = (uintptr_t)buf, .len = size };
    hvt_hypercall(HVT_HYPERCALL_PUTS, &a);
}

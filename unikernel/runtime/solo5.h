/*
 * solo5.h: the part of the Solo5 guest API that edgeio's runtime implements
 * (same names, types and semantics as stock Solo5, so applications build with
 * either toolchain).
 */
#ifndef SOLO5_H
#define SOLO5_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum {
    SOLO5_R_OK = 0,
    SOLO5_R_AGAIN,
    SOLO5_R_EINVAL,
    SOLO5_R_EUNSPEC
} solo5_result_t;

typedef uint64_t solo5_handle_t;
typedef uint64_t solo5_off_t;
typedef uint64_t solo5_time_t;

struct solo5_start_info {
    const char *cmdline;
    uintptr_t heap_start;
    size_t heap_size;
};

/* The application's entry point; its return value is the exit status. */
int solo5_app_main(const struct solo5_start_info *info);

#define SOLO5_EXIT_SUCCESS 0
#define SOLO5_EXIT_FAILURE 1
#define SOLO5_EXIT_ABORT 255

void solo5_exit(int status) __attribute__((noreturn));
void solo5_abort(void) __attribute__((noreturn));
void solo5_console_write(const char *buf, size_t size);
solo5_time_t solo5_clock_monotonic(void);
solo5_time_t solo5_clock_wall(void);

struct solo5_block_info {
    solo5_off_t capacity;       /* bytes */
    solo5_off_t block_size;     /* bytes */
};

solo5_result_t solo5_block_acquire(const char *name, solo5_handle_t *handle,
                                   struct solo5_block_info *info);
solo5_result_t solo5_block_write(solo5_handle_t handle, solo5_off_t offset,
                                 const uint8_t *buf, size_t size);
solo5_result_t solo5_block_read(solo5_handle_t handle, solo5_off_t offset,
                                uint8_t *buf, size_t size);
#endif

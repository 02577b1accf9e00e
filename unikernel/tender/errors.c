/* errors.c: the tender's one-line messages and exits. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "tender.h"

static void vmessage(const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, "edgeio-hvt: %s", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void die_bad_input(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("error: ", fmt, ap);
    va_end(ap);
    exit(EXIT_BAD_INPUT);
}

void die_guest(struct tender *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("guest error: ", fmt, ap);
    va_end(ap);
    t->ended_by_tender = true;
    tender_exit(t, EXIT_GUEST_FAULT);
}

void die_host(struct tender *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("host error: ", fmt, ap);
    va_end(ap);
    if (t)
        t->ended_by_tender = true;
    tender_exit(t, EXIT_HOST_ERROR);
}

void tender_exit(struct tender *t, int status)
{
    fflush(stdout);
    if (t && t->print_counters)
        counters_print(t, status);
    exit(status);
}

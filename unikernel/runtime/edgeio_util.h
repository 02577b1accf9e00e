/*
 * edgeio_util.h: small helpers for edgeio's guest applications: key=value
 * arguments from the command line, and building one line of output.
 * (Plain C over solo5.h, so they build with a stock Solo5 toolchain too.)
 */
#ifndef EDGEIO_UTIL_H
#define EDGEIO_UTIL_H
#include "solo5.h"

/* Value of key in "k1=v1 k2=v2 ...", copied into out (size n); false if absent. */
bool arg_str(const char *cmdline, const char *key, char *out, size_t n);
/* Decimal value of key; def if absent; *ok = false if present but not a number. */
uint64_t arg_u64(const char *cmdline, const char *key, uint64_t def, bool *ok);

struct line { char *buf; size_t len, cap; };
void line_str(struct line *l, const char *s);
void line_u64(struct line *l, uint64_t v);
void line_seconds(struct line *l, uint64_t ns);     /* "s.nnnnnnnnn" */
void line_write(struct line *l);                    /* to the console, then empty */
int util_streq(const char *a, const char *b);
#endif

/* util.c: see edgeio_util.h. */
#include "edgeio_util.h"

static const char *find_key(const char *s, const char *key)
{
    while (*s) {
        while (*s == ' ')
            s++;
        const char *k = key, *p = s;
        while (*k && *p == *k)
            p++, k++;
        if (*k == '\0' && *p == '=')
            return p + 1;
        while (*s && *s != ' ')
            s++;
    }
    return 0;
}

bool arg_str(const char *cmdline, const char *key, char *out, size_t n)
{
    const char *v = find_key(cmdline, key);
    if (!v || n == 0)
        return false;
    size_t i = 0;
    while (v[i] && v[i] != ' ' && i + 1 < n) {
        out[i] = v[i];
        i++;
    }
    out[i] = '\0';
    return true;
}

uint64_t arg_u64(const char *cmdline, const char *key, uint64_t def, bool *ok)
{
    const char *v = find_key(cmdline, key);
    if (!v)
        return def;
    uint64_t r = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (r > (UINT64_MAX - d) / 10) {
            *ok = false;
            return def;
        }
        r = r * 10 + d;
    }
    if (p == v || (*p && *p != ' '))
        *ok = false;
    return r;
}

void line_str(struct line *l, const char *s)
{
    while (*s && l->len + 1 < l->cap)
        l->buf[l->len++] = *s++;
}

void line_u64(struct line *l, uint64_t v)
{
    char tmp[21];
    int i = 20;
    tmp[i] = '\0';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    line_str(l, tmp + i);
}

void line_seconds(struct line *l, uint64_t ns)
{
    line_u64(l, ns / 1000000000ULL);
    char frac[11];
    uint64_t f = ns % 1000000000ULL;
    frac[0] = '.';
    for (int i = 9; i >= 1; i--) {
        frac[i] = (char)('0' + f % 10);
        f /= 10;
    }
    frac[10] = '\0';
    line_str(l, frac);
}

void line_write(struct line *l)
{
    solo5_console_write(l->buf, l->len);
    l->len = 0;
}

int util_streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* The growable byte buffer behind response bodies. */
#include "server/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_sbuf_init(ts_sbuf *b) { memset(b, 0, sizeof *b); }

void ts_sbuf_free(ts_sbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void ts_sbuf_reset(ts_sbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

static int reserve(ts_sbuf *b, size_t extra) {
    if (b->failed) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *nd = realloc(b->data, cap);
    if (!nd) {
        b->failed = 1;
        return -1;
    }
    b->data = nd;
    b->cap = cap;
    return 0;
}

void ts_sbuf_append(ts_sbuf *b, const char *s, size_t n) {
    if (reserve(b, n) != 0) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void ts_sbuf_puts(ts_sbuf *b, const char *s) { ts_sbuf_append(b, s, strlen(s)); }

void ts_sbuf_printf(ts_sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        ts_sbuf_append(b, small, (size_t)n);
        return;
    }
    if (reserve(b, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ts_sbuf_consume(ts_sbuf *b, size_t n) {
    if (n >= b->len) {
        ts_sbuf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

int ts_sbuf_ok(const ts_sbuf *b) { return !b->failed; }
const char *ts_sbuf_str(const ts_sbuf *b) { return b->data ? b->data : ""; }

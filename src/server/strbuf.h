/* A growable byte buffer for building response bodies (JSON, Prometheus text, SSE frames). An allocation
 * failure makes the buffer "failed": later appends do nothing and ts_sbuf_ok reports it, so builders
 * can append freely and check once. */
#ifndef TS_SERVER_STRBUF_H
#define TS_SERVER_STRBUF_H

#include <stddef.h>

typedef struct ts_sbuf {
    char *data;
    size_t len, cap;
    int failed;
} ts_sbuf;

void ts_sbuf_init(ts_sbuf *b);
void ts_sbuf_free(ts_sbuf *b);
void ts_sbuf_reset(ts_sbuf *b);
void ts_sbuf_append(ts_sbuf *b, const char *s, size_t n);
void ts_sbuf_puts(ts_sbuf *b, const char *s);
void ts_sbuf_printf(ts_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (what a stream reader already sent). */
void ts_sbuf_consume(ts_sbuf *b, size_t n);
int ts_sbuf_ok(const ts_sbuf *b);
/* NUL-terminated contents ("" when empty). */
const char *ts_sbuf_str(const ts_sbuf *b);

#endif

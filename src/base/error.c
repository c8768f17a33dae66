#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ts_fail(ts_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void ts_error_prefix(ts_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[TS_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char joined[2 * TS_ERROR_MAX];
    size_t plen = strlen(prefix);
    memcpy(joined, prefix, plen);
    memcpy(joined + plen, err->message, strlen(err->message) + 1);
    joined[TS_ERROR_MAX - 1] = '\0';
    memcpy(err->message, joined, TS_ERROR_MAX);
}

void ts_error_clear(ts_error *err) {
    if (err) err->message[0] = '\0';
}

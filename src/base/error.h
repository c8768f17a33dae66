/* Errors as values. Every fallible function in tessera returns 0 on success or -1 on failure and
 * fills a ts_error with a message a user can act on (which file, which tensor, expected vs found).
 * Nothing in this file aborts; callers decide what a failure means. */
#ifndef TS_BASE_ERROR_H
#define TS_BASE_ERROR_H

#include <stddef.h>

#define TS_ERROR_MAX 1024

typedef struct ts_error {
    char message[TS_ERROR_MAX];
} ts_error;

/* Fills err (when not NULL) and returns -1 so that callers can write `return ts_fail(err, ...)`. */
int ts_fail(ts_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("loading model.safetensors: ") to an error already set by a callee. */
void ts_error_prefix(ts_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void ts_error_clear(ts_error *err);

#endif

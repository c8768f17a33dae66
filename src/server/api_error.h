/* Request-level errors shared by both protocols: an HTTP status, the offending field (OpenAI's
 * `param`), an optional machine code, and a message. Each protocol writes them in its own shape:
 * KServe {"error": "..."}, OpenAI {"error": {"message", "type", "param", "code"}}. Also the typed
 * readers of request JSON fields, whose errors name the field as the client wrote it. */
#ifndef TS_SERVER_API_ERROR_H
#define TS_SERVER_API_ERROR_H

#include <jansson.h>
#include <stddef.h>

#include "base/error.h"

typedef struct ts_api_error {
    int status;
    char param[64];
    char code[48];
    char message[TS_ERROR_MAX];
} ts_api_error;

/* Fills e and returns -1. param may be NULL. */
int ts_api_fail(ts_api_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ts_api_set_code(ts_api_error *e, const char *code);
/* OpenAI's error `type` for a status ("invalid_request_error", "authentication_error", ...). */
const char *ts_api_error_type(int status);

/* The body must be one JSON object; otherwise 400 with the parser's line and column. */
json_t *ts_api_parse_object(const char *body, size_t len, ts_api_error *e);

/* Typed fields of an object. Absent or null: *found = 0 and 0 is returned. Wrong type or out of range:
 * 400 naming `name` (the field's path, e.g. "stream_options.include_usage"). Integers accept integral
 * floating-point values (16.0). found may be NULL. */
int ts_field_int(const json_t *obj, const char *key, const char *name, long long lo, long long hi, long long *out,
                 int *found, ts_api_error *e);
int ts_field_number(const json_t *obj, const char *key, const char *name, double lo, double hi, double *out,
                    int *found, ts_api_error *e);
int ts_field_bool(const json_t *obj, const char *key, const char *name, int *out, int *found, ts_api_error *e);
int ts_field_string(const json_t *obj, const char *key, const char *name, const char **out, int *found,
                    ts_api_error *e);
/* The JSON type of a value in words ("a string", "an array", "null"), for messages. */
const char *ts_json_type_words(const json_t *v);

#endif

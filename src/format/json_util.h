/* Typed access to jansson objects with errors that name the file and the key. */
#ifndef TS_FORMAT_JSON_UTIL_H
#define TS_FORMAT_JSON_UTIL_H

#include <jansson.h>

#include "base/error.h"

/* Parses text; on failure the error names source, line and column. */
json_t *ts_json_parse(const char *text, size_t len, const char *source, ts_error *err);
json_t *ts_json_load_file(const char *path, size_t max_bytes, ts_error *err);

/* Each getter: key absent (or JSON null) -> *found = 0 and returns 0; wrong type -> -1 with an error. */
int ts_json_get_int(const json_t *obj, const char *key, const char *source, long long *out, int *found,
                    ts_error *err);
int ts_json_get_number(const json_t *obj, const char *key, const char *source, double *out, int *found,
                       ts_error *err);
int ts_json_get_bool(const json_t *obj, const char *key, const char *source, int *out, int *found,
                     ts_error *err);
int ts_json_get_string(const json_t *obj, const char *key, const char *source, const char **out, int *found,
                       ts_error *err);

#endif

#include "format/json_util.h"

#include <stdlib.h>

#include "base/files.h"

json_t *ts_json_parse(const char *text, size_t len, const char *source, ts_error *err) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) ts_fail(err, "%s:%d:%d: invalid JSON: %s", source, je.line, je.column, je.text);
    return root;
}

json_t *ts_json_load_file(const char *path, size_t max_bytes, ts_error *err) {
    char *text = NULL;
    size_t len = 0;
    if (ts_read_file(path, max_bytes, &text, &len, err) != 0) return NULL;
    json_t *root = ts_json_parse(text, len, path, err);
    free(text);
    return root;
}

static const json_t *lookup(const json_t *obj, const char *key, int *found) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    *found = v && !json_is_null(v);
    return *found ? v : NULL;
}

int ts_json_get_int(const json_t *obj, const char *key, const char *source, long long *out, int *found,
                    ts_error *err) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* Range first: converting a double outside long long's range is undefined behaviour. */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(long long)d) {
            *out = (long long)d;
            return 0;
        }
    }
    return ts_fail(err, "%s: \"%s\" must be an integer", source, key);
}

int ts_json_get_number(const json_t *obj, const char *key, const char *source, double *out, int *found,
                       ts_error *err) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (!json_is_number(v)) return ts_fail(err, "%s: \"%s\" must be a number", source, key);
    *out = json_number_value(v);
    return 0;
}

int ts_json_get_bool(const json_t *obj, const char *key, const char *source, int *out, int *found,
                     ts_error *err) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (!json_is_boolean(v)) return ts_fail(err, "%s: \"%s\" must be true or false", source, key);
    *out = json_is_true(v);
    return 0;
}

int ts_json_get_string(const json_t *obj, const char *key, const char *source, const char **out, int *found,
                       ts_error *err) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (!json_is_string(v)) return ts_fail(err, "%s: \"%s\" must be a string", source, key);
    *out = json_string_value(v);
    return 0;
}

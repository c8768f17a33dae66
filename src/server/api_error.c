/* Request errors and typed readers of request JSON fields (see api_error.h). */
#include "server/api_error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ts_api_fail(ts_api_error *e, int status, const char *param, const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->code[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

void ts_api_set_code(ts_api_error *e, const char *code) { snprintf(e->code, sizeof e->code, "%s", code); }

const char *ts_api_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

const char *ts_json_type_words(const json_t *v) {
    if (!v) return "nothing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

json_t *ts_api_parse_object(const char *body, size_t len, ts_api_error *e) {
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        ts_api_fail(e, 400, NULL, "the request body is not valid JSON: line %d, column %d: %s", je.line, je.column,
                    je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        ts_api_fail(e, 400, NULL, "the request body must be a JSON object, found %s", ts_json_type_words(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

static const json_t *lookup(const json_t *obj, const char *key, int *found) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    int f = v && !json_is_null(v);
    if (found) *found = f;
    return f ? v : NULL;
}

int ts_field_int(const json_t *obj, const char *key, const char *name, long long lo, long long hi, long long *out,
                 int *found, ts_api_error *e) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && isfinite(json_real_value(v)) && fabs(json_real_value(v)) < 9e15 &&
               json_real_value(v) == floor(json_real_value(v))) {
        x = (long long)json_real_value(v);
    } else {
        return ts_api_fail(e, 400, name, "'%s' must be an integer, found %s", name, ts_json_type_words(v));
    }
    if (x < lo || x > hi) return ts_api_fail(e, 400, name, "'%s' must be between %lld and %lld, found %lld", name, lo, hi, x);
    *out = x;
    return 0;
}

int ts_field_number(const json_t *obj, const char *key, const char *name, double lo, double hi, double *out,
                    int *found, ts_api_error *e) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (!json_is_number(v)) return ts_api_fail(e, 400, name, "'%s' must be a number, found %s", name, ts_json_type_words(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return ts_api_fail(e, 400, name, "'%s' must be between %g and %g, found %g", name, lo, hi, x);
    *out = x;
    return 0;
}

int ts_field_bool(const json_t *obj, const char *key, const char *name, int *out, int *found, ts_api_error *e) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (!json_is_boolean(v)) return ts_api_fail(e, 400, name, "'%s' must be true or false, found %s", name, ts_json_type_words(v));
    *out = json_is_true(v);
    return 0;
}

int ts_field_string(const json_t *obj, const char *key, const char *name, const char **out, int *found,
                    ts_api_error *e) {
    const json_t *v = lookup(obj, key, found);
    if (!v) return 0;
    if (!json_is_string(v)) return ts_api_fail(e, 400, name, "'%s' must be a string, found %s", name, ts_json_type_words(v));
    *out = json_string_value(v);
    return 0;
}

/* Parsing KServe v2 inference requests into tensors, JSON and binary forms, bounds-checked. */
#include "server/kserve_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t element_size(const char *dt) {
    static const struct {
        const char *name;
        size_t size;
    } k[] = {{"BOOL", 1}, {"INT8", 1}, {"UINT8", 1}, {"INT16", 2}, {"UINT16", 2}, {"FP16", 2}, {"BF16", 2},
             {"INT32", 4}, {"UINT32", 4}, {"FP32", 4}, {"INT64", 8}, {"UINT64", 8}, {"FP64", 8}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(dt, k[i].name)) return k[i].size;
    return 0;
}

/* Appends the leaves of a nested list to flat; depth is bounded by the JSON parser. */
static int flatten(const json_t *v, json_t *flat, size_t limit) {
    if (!json_is_array(v)) {
        if (json_array_size(flat) >= limit) return -1;
        return json_array_append(flat, (json_t *)v);
    }
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x) if (flatten(x, flat, limit) != 0) return -1;
    return 0;
}

static int parse_tensor(const json_t *t, size_t index, ts_kserve_tensor *out, const uint8_t **raw, size_t *raw_left,
                        ts_api_error *e) {
    char field[64];
    snprintf(field, sizeof field, "inputs[%zu]", index);
    if (!json_is_object(t)) return ts_api_fail(e, 400, field, "'%s' must be an object, found %s", field, ts_json_type_words(t));
    const json_t *name = json_object_get(t, "name"), *dt = json_object_get(t, "datatype"), *shape = json_object_get(t, "shape");
    if (!json_is_string(name)) return ts_api_fail(e, 400, field, "'%s.name' must be a string", field);
    if (!json_is_string(dt)) return ts_api_fail(e, 400, field, "'%s.datatype' must be a string", field);
    if (!json_is_array(shape)) return ts_api_fail(e, 400, field, "'%s.shape' must be a list of integers", field);
    out->name = json_string_value(name);
    out->datatype = json_string_value(dt);
    if (strcmp(out->datatype, "BYTES") != 0 && element_size(out->datatype) == 0)
        return ts_api_fail(e, 400, field, "input '%s': unknown datatype '%s'", out->name, out->datatype);
    if (json_array_size(shape) > TS_KSERVE_MAX_DIMS)
        return ts_api_fail(e, 400, field, "input '%s': at most %d dimensions", out->name, TS_KSERVE_MAX_DIMS);
    out->ndim = (int)json_array_size(shape);
    out->count = 1;
    for (int d = 0; d < out->ndim; d++) {
        const json_t *x = json_array_get(shape, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > (1 << 24))
            return ts_api_fail(e, 400, field, "input '%s': shape[%d] must be an integer between 0 and %d", out->name, d, 1 << 24);
        out->shape[d] = json_integer_value(x);
        out->count *= out->shape[d];
        if (out->count > (1 << 24)) return ts_api_fail(e, 400, field, "input '%s' has too many elements", out->name);
    }
    const json_t *params = json_object_get(t, "parameters");
    const json_t *bsize = json_is_object(params) ? json_object_get(params, "binary_data_size") : NULL;
    if (bsize && !json_is_null(bsize)) {
        if (!json_is_integer(bsize) || json_integer_value(bsize) < 0)
            return ts_api_fail(e, 400, field, "input '%s': binary_data_size must be a non-negative integer", out->name);
        size_t n = (size_t)json_integer_value(bsize);
        if (n > *raw_left)
            return ts_api_fail(e, 400, field, "input '%s': binary_data_size %zu exceeds the %zu bytes of binary data left",
                               out->name, n, *raw_left);
        out->raw = *raw;
        out->raw_len = n;
        *raw += n;
        *raw_left -= n;
        if (!strcmp(out->datatype, "BYTES")) {
            /* walk the elements once so that later accesses cannot run past the data */
            size_t pos = 0;
            int64_t k = 0;
            while (pos < n) {
                if (n - pos < 4) return ts_api_fail(e, 400, field, "input '%s': truncated BYTES element length", out->name);
                uint32_t l = (uint32_t)out->raw[pos] | (uint32_t)out->raw[pos + 1] << 8 | (uint32_t)out->raw[pos + 2] << 16 |
                             (uint32_t)out->raw[pos + 3] << 24;
                pos += 4;
                if (l > n - pos) return ts_api_fail(e, 400, field, "input '%s': BYTES element %lld runs past the data", out->name, (long long)k);
                pos += l;
                k++;
            }
            if (k != out->count)
                return ts_api_fail(e, 400, field, "input '%s': shape says %lld elements, binary data holds %lld", out->name,
                                   (long long)out->count, (long long)k);
        } else if ((uint64_t)out->count * element_size(out->datatype) != n) {
            return ts_api_fail(e, 400, field, "input '%s': shape says %lld elements of %s, binary data has %zu bytes", out->name,
                               (long long)out->count, out->datatype, n);
        }
        return 0;
    }
    const json_t *data = json_object_get(t, "data");
    if (!data) return ts_api_fail(e, 400, field, "input '%s' has neither 'data' nor binary data", out->name);
    out->data = json_array();
    if (flatten(data, out->data, (size_t)out->count + 1) != 0 || (int64_t)json_array_size(out->data) != out->count)
        return ts_api_fail(e, 400, field, "input '%s': shape says %lld elements, data holds %s", out->name,
                           (long long)out->count, json_array_size(out->data) > (size_t)out->count ? "more" : "fewer");
    size_t i;
    const json_t *x;
    int bytes = !strcmp(out->datatype, "BYTES"), boolean = !strcmp(out->datatype, "BOOL");
    json_array_foreach(out->data, i, x) {
        if (bytes ? !json_is_string(x) : boolean ? !json_is_boolean(x) : !json_is_number(x))
            return ts_api_fail(e, 400, field, "input '%s': element %zu must be %s, found %s", out->name, i,
                               bytes ? "a string" : boolean ? "a boolean" : "a number", ts_json_type_words(x));
    }
    return 0;
}

int ts_kserve_parse_request(const char *body, size_t len, const char *header_length, ts_kserve_request *out,
                            ts_api_error *e) {
    memset(out, 0, sizeof *out);
    size_t json_len = len;
    if (header_length) {
        char *end = NULL;
        unsigned long long v = strtoull(header_length, &end, 10);
        if (!end || *end || end == header_length || v > len)
            return ts_api_fail(e, 400, NULL, "Inference-Header-Content-Length '%s' is not a length within the %zu-byte body",
                               header_length, len);
        json_len = (size_t)v;
    }
    json_error_t je;
    out->root = json_loadb(body, json_len, 0, &je);
    if (!out->root)
        return ts_api_fail(e, 400, NULL, "the request is not valid JSON: line %d, column %d: %s", je.line, je.column, je.text);
    if (!json_is_object(out->root))
        return ts_api_fail(e, 400, NULL, "the request must be a JSON object, found %s", ts_json_type_words(out->root));
    const json_t *id = json_object_get(out->root, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_string(id)) return ts_api_fail(e, 400, "id", "'id' must be a string, found %s", ts_json_type_words(id));
        out->id = json_string_value(id);
    }
    const json_t *params = json_object_get(out->root, "parameters");
    if (params && !json_is_null(params)) {
        if (!json_is_object(params))
            return ts_api_fail(e, 400, "parameters", "'parameters' must be an object, found %s", ts_json_type_words(params));
        out->parameters = params;
        const json_t *b = json_object_get(params, "binary_data_output");
        out->binary_output_default = json_is_true(b);
    }
    const json_t *inputs = json_object_get(out->root, "inputs");
    if (!json_is_array(inputs)) return ts_api_fail(e, 400, "inputs", "'inputs' must be a list of tensors");
    if (json_array_size(inputs) > TS_KSERVE_MAX_TENSORS)
        return ts_api_fail(e, 400, "inputs", "at most %d inputs are accepted", TS_KSERVE_MAX_TENSORS);
    const uint8_t *raw = (const uint8_t *)body + json_len;
    size_t raw_left = len - json_len;
    size_t i;
    const json_t *t;
    json_array_foreach(inputs, i, t) {
        if (parse_tensor(t, i, &out->inputs[out->num_inputs], &raw, &raw_left, e) != 0) {
            out->num_inputs++; /* so that its data is freed */
            return -1;
        }
        out->num_inputs++;
    }
    if (raw_left != 0)
        return ts_api_fail(e, 400, NULL, "%zu bytes of binary data follow the request but no input claims them", raw_left);
    const json_t *outputs = json_object_get(out->root, "outputs");
    if (outputs && !json_is_null(outputs)) {
        if (!json_is_array(outputs) || json_array_size(outputs) > TS_KSERVE_MAX_TENSORS)
            return ts_api_fail(e, 400, "outputs", "'outputs' must be a list of at most %d requested outputs", TS_KSERVE_MAX_TENSORS);
        json_array_foreach(outputs, i, t) {
            const json_t *name = json_object_get(t, "name");
            if (!json_is_string(name)) return ts_api_fail(e, 400, "outputs", "'outputs[%zu].name' must be a string", i);
            ts_kserve_output_request *o = &out->outputs[out->num_outputs++];
            o->name = json_string_value(name);
            const json_t *p = json_object_get(t, "parameters");
            o->binary = json_is_object(p) ? json_is_true(json_object_get(p, "binary_data")) : 0;
        }
    }
    return 0;
}

void ts_kserve_request_free(ts_kserve_request *r) {
    for (int i = 0; i < r->num_inputs; i++) json_decref(r->inputs[i].data);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

const ts_kserve_tensor *ts_kserve_input(const ts_kserve_request *r, const char *name) {
    for (int i = 0; i < r->num_inputs; i++)
        if (!strcmp(r->inputs[i].name, name)) return &r->inputs[i];
    return NULL;
}

int ts_kserve_bytes_at(const ts_kserve_tensor *t, int64_t i, const char **s, size_t *len, ts_api_error *e) {
    if (strcmp(t->datatype, "BYTES") != 0)
        return ts_api_fail(e, 400, t->name, "input '%s' must have datatype BYTES, found %s", t->name, t->datatype);
    if (i < 0 || i >= t->count) return ts_api_fail(e, 400, t->name, "input '%s' has no element %lld", t->name, (long long)i);
    if (t->data) {
        const json_t *v = json_array_get(t->data, (size_t)i);
        *s = json_string_value(v);
        *len = json_string_length(v);
        return 0;
    }
    size_t pos = 0;
    for (int64_t k = 0;; k++) {
        uint32_t l = (uint32_t)t->raw[pos] | (uint32_t)t->raw[pos + 1] << 8 | (uint32_t)t->raw[pos + 2] << 16 |
                     (uint32_t)t->raw[pos + 3] << 24;
        pos += 4;
        if (k == i) {
            *s = (const char *)t->raw + pos;
            *len = l;
            return 0;
        }
        pos += l;
    }
}

json_t *ts_kserve_scalar(const ts_kserve_tensor *t, ts_api_error *e) {
    if (!strcmp(t->datatype, "BYTES")) {
        ts_api_fail(e, 400, t->name, "input '%s' must be numeric or BOOL, found BYTES", t->name);
        return NULL;
    }
    if (t->count < 1) {
        ts_api_fail(e, 400, t->name, "input '%s' is empty", t->name);
        return NULL;
    }
    if (t->data) return json_incref(json_array_get(t->data, 0));
    const uint8_t *p = t->raw;
    const char *dt = t->datatype;
    uint64_t u = 0;
    size_t sz = element_size(dt);
    for (size_t k = 0; k < sz; k++) u |= (uint64_t)p[k] << (8 * k);
    if (!strcmp(dt, "BOOL")) return json_boolean(u != 0);
    if (!strcmp(dt, "FP32")) {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        return isfinite(f) ? json_real(f) : (ts_api_fail(e, 400, t->name, "input '%s' is not finite", t->name), NULL);
    }
    if (!strcmp(dt, "FP64")) {
        double d;
        memcpy(&d, &u, 8);
        return isfinite(d) ? json_real(d) : (ts_api_fail(e, 400, t->name, "input '%s' is not finite", t->name), NULL);
    }
    if (!strcmp(dt, "FP16") || !strcmp(dt, "BF16")) {
        ts_api_fail(e, 400, t->name, "input '%s': %s scalars are not supported, use FP32", t->name, dt);
        return NULL;
    }
    if (dt[0] == 'U') return json_integer((json_int_t)(u > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : u));
    /* signed: sign-extend from the element's width */
    int64_t v = sz == 8 ? (int64_t)u : (int64_t)(u << (64 - 8 * sz)) >> (64 - 8 * sz);
    return json_integer(v);
}

void ts_kserve_append_bytes_element(ts_sbuf *out, const char *s, size_t len) {
    uint8_t l[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    ts_sbuf_append(out, (const char *)l, 4);
    ts_sbuf_append(out, s, len);
}

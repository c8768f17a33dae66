#include "format/safetensors.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/json_util.h"

/* The format caps the header at 100 MB; anything larger is not a safetensors file. */
#define HEADER_MAX (100u << 20)
#define INDEX_MAX_BYTES (64u << 20)

static int dtype_from_st(const char *s, ts_dtype *out, int *elem_bytes) {
    static const struct {
        const char *name;
        int bytes;
        ts_dtype t;
    } known[] = {
        {"F32", 4, TS_DTYPE_F32}, {"F16", 2, TS_DTYPE_F16}, {"BF16", 2, TS_DTYPE_BF16},
        {"F64", 8, TS_DTYPE_COUNT}, {"I64", 8, TS_DTYPE_COUNT}, {"I32", 4, TS_DTYPE_COUNT},
        {"I16", 2, TS_DTYPE_COUNT}, {"I8", 1, TS_DTYPE_COUNT}, {"U8", 1, TS_DTYPE_COUNT},
        {"U16", 2, TS_DTYPE_COUNT}, {"U32", 4, TS_DTYPE_COUNT}, {"U64", 8, TS_DTYPE_COUNT},
        {"BOOL", 1, TS_DTYPE_COUNT}, {"F8_E4M3", 1, TS_DTYPE_COUNT}, {"F8_E5M2", 1, TS_DTYPE_COUNT},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (!strcmp(s, known[i].name)) {
            *out = known[i].t;
            *elem_bytes = known[i].bytes;
            return 0;
        }
    }
    return -1;
}

static int parse_entry(const char *source, const char *name, const json_t *e, const uint8_t *data_start,
                       uint64_t data_size, int file_index, ts_tensor_table *table, ts_error *err) {
    if (!json_is_object(e)) return ts_fail(err, "%s: tensor \"%s\": header entry is not an object", source, name);
    const json_t *jd = json_object_get(e, "dtype");
    const json_t *js = json_object_get(e, "shape");
    const json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd)) return ts_fail(err, "%s: tensor \"%s\": missing or non-string \"dtype\"", source, name);
    if (!json_is_array(js)) return ts_fail(err, "%s: tensor \"%s\": missing or non-list \"shape\"", source, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return ts_fail(err, "%s: tensor \"%s\": \"data_offsets\" must be a list of two integers", source, name);
    ts_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.name = (char *)name;
    d.file_index = file_index;
    int elem = 0;
    snprintf(d.file_dtype, sizeof d.file_dtype, "%s", json_string_value(jd));
    if (dtype_from_st(json_string_value(jd), &d.dtype, &elem) != 0)
        return ts_fail(err, "%s: tensor \"%s\": unknown dtype \"%s\"", source, name, json_string_value(jd));
    size_t nd = json_array_size(js);
    if (nd > TS_MAX_DIMS)
        return ts_fail(err, "%s: tensor \"%s\": %zu dimensions; at most %d are supported", source, name, nd, TS_MAX_DIMS);
    d.ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        const json_t *v = json_array_get(js, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return ts_fail(err, "%s: tensor \"%s\": shape entry %zu is not a non-negative integer", source, name, i);
        d.shape[i] = json_integer_value(v);
        if (d.shape[i] > 0 && numel > UINT64_MAX / 16 / (uint64_t)d.shape[i])
            return ts_fail(err, "%s: tensor \"%s\": shape is absurdly large", source, name);
        numel *= (uint64_t)d.shape[i];
    }
    const json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 || json_integer_value(je) < 0)
        return ts_fail(err, "%s: tensor \"%s\": data offsets must be non-negative integers", source, name);
    uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
    if (begin > end || end > data_size)
        return ts_fail(err,
                       "%s: tensor \"%s\": data offsets [%llu, %llu) are out of bounds (the data section holds %llu bytes; "
                       "the file may be truncated)",
                       source, name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != numel * (uint64_t)elem)
        return ts_fail(err, "%s: tensor \"%s\": %llu bytes of data for %llu elements of %s (expected %llu bytes)", source,
                       name, (unsigned long long)(end - begin), (unsigned long long)numel, d.file_dtype,
                       (unsigned long long)(numel * (uint64_t)elem));
    d.data = data_start + begin;
    d.nbytes = (size_t)(end - begin);
    if (elem > 1 && ((uintptr_t)d.data % (uintptr_t)elem) != 0) {
        /* The format pads its header to 8 bytes, so data is aligned in files that follow it; a file that
         * does not gets its misaligned tensors copied, since reading them in place is undefined in C. */
        void *copy = malloc(d.nbytes ? d.nbytes : 1);
        if (!copy) return ts_fail(err, "%s: tensor \"%s\": out of memory copying %zu misaligned bytes", source, name, d.nbytes);
        memcpy(copy, d.data, d.nbytes);
        if (ts_tensor_table_own(table, copy, err) != 0) return -1;
        d.data = copy;
    }
    if (ts_tensor_table_add(table, &d, err) != 0) {
        ts_error_prefix(err, "%s: ", source);
        return -1;
    }
    return 0;
}

int ts_safetensors_parse(const uint8_t *data, size_t size, const char *source, int file_index,
                         ts_tensor_table *table, ts_error *err) {
    if (size < 8) return ts_fail(err, "%s: truncated: %zu bytes, too short for a safetensors header", source, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    if (hlen > HEADER_MAX) return ts_fail(err, "%s: header length %llu is larger than the 100 MB the format allows (not a safetensors file?)", source, (unsigned long long)hlen);
    if (hlen > size - 8)
        return ts_fail(err, "%s: truncated: header says %llu bytes but the file has only %zu after the length", source,
                       (unsigned long long)hlen, size - 8);
    json_error_t je;
    json_t *root = json_loadb((const char *)data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return ts_fail(err, "%s: bad header JSON at line %d column %d: %s", source, je.line, je.column, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = ts_fail(err, "%s: header is not a JSON object", source);
    } else {
        const uint8_t *data_start = data + 8 + hlen;
        uint64_t data_size = size - 8 - hlen;
        const char *key;
        json_t *value;
        json_object_foreach(root, key, value) {
            if (!strcmp(key, "__metadata__")) continue;
            if ((rc = parse_entry(source, key, value, data_start, data_size, file_index, table, err)) != 0) break;
        }
    }
    json_decref(root);
    return rc;
}

int ts_safetensors_load_file(const char *path, ts_tensor_table *table, ts_error *err) {
    ts_mapped_file mf;
    if (ts_map_file(path, &mf, err) != 0) return -1;
    int index = ts_tensor_table_add_file(table, &mf, err);
    if (index < 0) {
        ts_unmap_file(&mf);
        return -1;
    }
    return ts_safetensors_parse(mf.data, mf.size, path, index, table, err);
}

int ts_safetensors_index_parse(const char *text, size_t len, const char *source, json_t **weight_map,
                               ts_error *err) {
    *weight_map = NULL;
    json_t *root = ts_json_parse(text, len, source, err);
    if (!root) return -1;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        json_decref(root);
        return ts_fail(err, "%s: missing \"weight_map\" object", source);
    }
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        if (!json_is_string(file)) {
            ts_fail(err, "%s: weight_map entry \"%s\" is not a file name", source, name);
            json_decref(root);
            return -1;
        }
        const char *fname = json_string_value(file);
        if (strchr(fname, '/') || !strcmp(fname, "..")) {
            ts_fail(err, "%s: shard name \"%s\" must be a plain file name", source, fname);
            json_decref(root);
            return -1;
        }
    }
    *weight_map = json_incref(map);
    json_decref(root);
    return 0;
}

static int load_sharded(const char *dir, const char *index_path, ts_tensor_table *table, ts_error *err) {
    char *text = NULL;
    size_t len = 0;
    if (ts_read_file(index_path, INDEX_MAX_BYTES, &text, &len, err) != 0) return -1;
    json_t *map = NULL;
    int rc = ts_safetensors_index_parse(text, len, index_path, &map, err);
    free(text);
    if (rc != 0) return -1;
    /* Load each distinct shard once, then check that every tensor the index names is where it says. */
    json_t *seen = json_object();
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        const char *fname = json_string_value(file);
        if (json_object_get(seen, fname)) continue;
        json_object_set_new(seen, fname, json_true());
        char path[4096];
        if (ts_path_join(path, sizeof path, dir, fname) != 0) {
            rc = ts_fail(err, "%s: path too long", dir);
            break;
        }
        if ((rc = ts_safetensors_load_file(path, table, err)) != 0) break;
    }
    if (rc == 0) {
        json_object_foreach(map, name, file) {
            const ts_tensor_desc *d = ts_tensor_table_find(table, name);
            if (!d) {
                rc = ts_fail(err, "%s: tensor \"%s\" is listed in shard %s but not present in it", index_path, name,
                             json_string_value(file));
                break;
            }
        }
    }
    json_decref(seen);
    json_decref(map);
    return rc;
}

int ts_safetensors_load_dir(const char *dir, ts_tensor_table *table, ts_error *err) {
    char path[4096];
    if (ts_path_join(path, sizeof path, dir, "model.safetensors.index.json") != 0) return ts_fail(err, "%s: path too long", dir);
    if (ts_file_exists(path)) return load_sharded(dir, path, table, err);
    if (ts_path_join(path, sizeof path, dir, "model.safetensors") != 0) return ts_fail(err, "%s: path too long", dir);
    if (ts_file_exists(path)) return ts_safetensors_load_file(path, table, err);
    return ts_fail(err, "%s: no model.safetensors or model.safetensors.index.json in this directory", dir);
}

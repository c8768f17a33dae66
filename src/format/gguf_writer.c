/* GGUF writer: metadata values kept in their final encoding, tensor infos with offsets assigned at
 * write time, data streamed from the caller's buffers through an atomic file. */
#include "format/gguf_writer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"

typedef struct wkv {
    char *key;
    ts_gguf_type type;
    uint8_t *enc;
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    int ggml_type;
    uint32_t n_dims;
    int64_t ne[4];
    const void **parts;
    size_t *part_bytes;
    int nparts;
    size_t nbytes;
} wtensor;

struct ts_gguf_writer {
    wkv *kvs;
    int n_kv, cap_kv;
    wtensor *tensors;
    int n_tensors, cap_tensors;
    void **owned;
    int n_owned;
};

ts_gguf_writer *ts_gguf_writer_new(void) { return calloc(1, sizeof(ts_gguf_writer)); }

void ts_gguf_writer_free(ts_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].enc);
    }
    for (int i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].parts);
        free(w->tensors[i].part_bytes);
    }
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->kvs);
    free(w->tensors);
    free(w->owned);
    free(w);
}

int ts_gguf_writer_own(ts_gguf_writer *w, void *buffer, ts_error *err) {
    void **no = realloc(w->owned, (size_t)(w->n_owned + 1) * sizeof *no);
    if (!no) {
        free(buffer);
        return ts_fail(err, "gguf writer: out of memory");
    }
    w->owned = no;
    w->owned[w->n_owned++] = buffer;
    return 0;
}

/* Stores an encoded value (takes ownership of enc). */
static int put(ts_gguf_writer *w, const char *key, ts_gguf_type type, uint8_t *enc, size_t len, ts_error *err) {
    if (!enc && len) return ts_fail(err, "gguf writer: out of memory encoding \"%s\"", key);
    if (!key || !key[0]) {
        free(enc);
        return ts_fail(err, "gguf writer: empty metadata key");
    }
    for (int i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kvs[i].key, key)) {
            free(w->kvs[i].enc);
            w->kvs[i].type = type;
            w->kvs[i].enc = enc;
            w->kvs[i].len = len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *nk = realloc(w->kvs, (size_t)cap * sizeof *nk);
        if (!nk) {
            free(enc);
            return ts_fail(err, "gguf writer: out of memory");
        }
        w->kvs = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(enc);
        return ts_fail(err, "gguf writer: out of memory");
    }
    w->kvs[w->n_kv++] = (wkv){k, type, enc, len};
    return 0;
}

static int put_scalar(ts_gguf_writer *w, const char *key, ts_gguf_type t, const void *v, ts_error *err) {
    size_t n = ts_gguf_type_size(t);
    uint8_t *enc = malloc(n);
    if (enc) memcpy(enc, v, n);
    return put(w, key, t, enc, n, err);
}

int ts_gguf_writer_set_u8(ts_gguf_writer *w, const char *k, uint8_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_U8, &v, e); }
int ts_gguf_writer_set_i8(ts_gguf_writer *w, const char *k, int8_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_I8, &v, e); }
int ts_gguf_writer_set_u16(ts_gguf_writer *w, const char *k, uint16_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_U16, &v, e); }
int ts_gguf_writer_set_i16(ts_gguf_writer *w, const char *k, int16_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_I16, &v, e); }
int ts_gguf_writer_set_u32(ts_gguf_writer *w, const char *k, uint32_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_U32, &v, e); }
int ts_gguf_writer_set_i32(ts_gguf_writer *w, const char *k, int32_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_I32, &v, e); }
int ts_gguf_writer_set_f32(ts_gguf_writer *w, const char *k, float v, ts_error *e) { return put_scalar(w, k, TS_GGUF_F32, &v, e); }
int ts_gguf_writer_set_u64(ts_gguf_writer *w, const char *k, uint64_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_U64, &v, e); }
int ts_gguf_writer_set_i64(ts_gguf_writer *w, const char *k, int64_t v, ts_error *e) { return put_scalar(w, k, TS_GGUF_I64, &v, e); }
int ts_gguf_writer_set_f64(ts_gguf_writer *w, const char *k, double v, ts_error *e) { return put_scalar(w, k, TS_GGUF_F64, &v, e); }

int ts_gguf_writer_set_bool(ts_gguf_writer *w, const char *key, int v, ts_error *err) {
    uint8_t b = v ? 1 : 0;
    return put_scalar(w, key, TS_GGUF_BOOL, &b, err);
}

int ts_gguf_writer_set_string(ts_gguf_writer *w, const char *key, const char *v, ts_error *err) {
    uint64_t n = strlen(v);
    uint8_t *enc = malloc(8 + (size_t)n);
    if (enc) {
        memcpy(enc, &n, 8);
        memcpy(enc + 8, v, (size_t)n);
    }
    return put(w, key, TS_GGUF_STRING, enc, 8 + (size_t)n, err);
}

int ts_gguf_writer_set_array(ts_gguf_writer *w, const char *key, ts_gguf_type elem_type, const void *values,
                             uint64_t n, ts_error *err) {
    size_t es = ts_gguf_type_size(elem_type);
    if (!es) return ts_fail(err, "gguf writer: \"%s\": arrays of %s need their own setter", key, ts_gguf_type_name(elem_type));
    if (n > (SIZE_MAX - 12) / es) return ts_fail(err, "gguf writer: \"%s\": array too large", key);
    uint32_t et = elem_type;
    uint8_t *enc = malloc(12 + (size_t)n * es);
    if (enc) {
        memcpy(enc, &et, 4);
        memcpy(enc + 4, &n, 8);
        if (n) memcpy(enc + 12, values, (size_t)n * es);
        if (elem_type == TS_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++) enc[12 + i] = enc[12 + i] ? 1 : 0;
    }
    return put(w, key, TS_GGUF_ARRAY, enc, 12 + (size_t)n * es, err);
}

int ts_gguf_writer_set_string_array(ts_gguf_writer *w, const char *key, const char *const *values, uint64_t n,
                                    ts_error *err) {
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) total += 8 + strlen(values[i]);
    uint8_t *enc = malloc(total);
    if (enc) {
        uint32_t et = TS_GGUF_STRING;
        memcpy(enc, &et, 4);
        memcpy(enc + 4, &n, 8);
        size_t off = 12;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len = strlen(values[i]);
            memcpy(enc + off, &len, 8);
            memcpy(enc + off + 8, values[i], (size_t)len);
            off += 8 + (size_t)len;
        }
    }
    return put(w, key, TS_GGUF_ARRAY, enc, total, err);
}

int ts_gguf_writer_set_encoded(ts_gguf_writer *w, const char *key, ts_gguf_type type, const void *encoded, size_t n,
                               ts_error *err) {
    /* Validate by parsing a one-entry GGUF image holding just this value. */
    size_t klen = strlen(key), img_len = 24 + 8 + klen + 4 + n;
    uint8_t *img = malloc(img_len);
    if (!img) return ts_fail(err, "gguf writer: out of memory");
    uint32_t version = 3, t = type;
    uint64_t nt = 0, nkv = 1, kl = klen;
    memcpy(img, "GGUF", 4);
    memcpy(img + 4, &version, 4);
    memcpy(img + 8, &nt, 8);
    memcpy(img + 16, &nkv, 8);
    memcpy(img + 24, &kl, 8);
    memcpy(img + 32, key, klen);
    memcpy(img + 32 + klen, &t, 4);
    memcpy(img + 36 + klen, encoded, n);
    ts_gguf g;
    ts_error perr;
    int ok = ts_gguf_parse(img, img_len, "value", &g, &perr) == 0;
    if (ok) {
        ok = g.kvs[0].value.type == type && g.kvs[0].value.offset + g.kvs[0].value.size == img_len;
        ts_gguf_free(&g);
    }
    free(img);
    if (!ok) return ts_fail(err, "gguf writer: \"%s\": the encoded %s value is malformed", key, ts_gguf_type_name(type));
    uint8_t *enc = malloc(n ? n : 1);
    if (enc) memcpy(enc, encoded, n);
    return put(w, key, type, enc, n, err);
}

int ts_gguf_writer_add_tensor_parts(ts_gguf_writer *w, const char *name, int ggml_type, int ndim,
                                    const int64_t *shape, const void *const *parts, const size_t *part_bytes,
                                    int nparts, ts_error *err) {
    const ts_gguf_ggml_type_info *ti = ts_gguf_ggml_type(ggml_type);
    if (!ti) return ts_fail(err, "gguf writer: tensor \"%s\": unknown ggml type %d", name, ggml_type);
    size_t nl = strlen(name);
    /* The specification allows 64 bytes; llama.cpp keeps names NUL-terminated in 64, so 63. */
    if (nl == 0 || nl > TS_GGUF_MAX_NAME - 1)
        return ts_fail(err, "gguf writer: tensor name \"%s\" must have 1 to %d bytes", name, TS_GGUF_MAX_NAME - 1);
    if (ndim < 1 || ndim > 4) return ts_fail(err, "gguf writer: tensor \"%s\" has %d dimensions, expected 1 to 4", name, ndim);
    for (int i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return ts_fail(err, "gguf writer: tensor \"%s\" added twice", name);
    wtensor t;
    memset(&t, 0, sizeof t);
    t.ggml_type = ggml_type;
    t.n_dims = (uint32_t)ndim;
    uint64_t numel = 1;
    for (int i = 0; i < 4; i++) t.ne[i] = 1;
    for (int i = 0; i < ndim; i++) {
        int64_t d = shape[ndim - 1 - i];
        if (d < 0 || (d && numel > (uint64_t)INT64_MAX / (uint64_t)d))
            return ts_fail(err, "gguf writer: tensor \"%s\" has a bad shape", name);
        t.ne[i] = d;
        numel *= (uint64_t)d;
    }
    if (t.ne[0] % ti->block_size != 0)
        return ts_fail(err, "gguf writer: tensor \"%s\": rows of %" PRId64 " values do not fill whole %s blocks of %d", name,
                       t.ne[0], ti->name, ti->block_size);
    t.nbytes = (size_t)(numel / (uint64_t)ti->block_size * (uint64_t)ti->block_bytes);
    size_t given = 0;
    for (int i = 0; i < nparts; i++) given += part_bytes[i];
    if (given != t.nbytes)
        return ts_fail(err, "gguf writer: tensor \"%s\": %zu bytes given, its %s shape needs %zu", name, given, ti->name,
                       t.nbytes);
    if (w->n_tensors == w->cap_tensors) {
        int cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *nt = realloc(w->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return ts_fail(err, "gguf writer: out of memory");
        w->tensors = nt;
        w->cap_tensors = cap;
    }
    t.name = strdup(name);
    t.parts = malloc((size_t)(nparts ? nparts : 1) * sizeof *t.parts);
    t.part_bytes = malloc((size_t)(nparts ? nparts : 1) * sizeof *t.part_bytes);
    if (!t.name || !t.parts || !t.part_bytes) {
        free(t.name);
        free(t.parts);
        free(t.part_bytes);
        return ts_fail(err, "gguf writer: out of memory");
    }
    for (int i = 0; i < nparts; i++) {
        t.parts[i] = parts[i];
        t.part_bytes[i] = part_bytes[i];
    }
    t.nparts = nparts;
    w->tensors[w->n_tensors++] = t;
    return 0;
}

int ts_gguf_writer_add_tensor(ts_gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *shape,
                              const void *data, size_t nbytes, ts_error *err) {
    return ts_gguf_writer_add_tensor_parts(w, name, ggml_type, ndim, shape, &data, &nbytes, 1, err);
}

static int write_u32(ts_atomic_file *f, uint32_t v, ts_error *err) { return ts_atomic_write(f, &v, 4, err); }
static int write_u64(ts_atomic_file *f, uint64_t v, ts_error *err) { return ts_atomic_write(f, &v, 8, err); }

static int write_pad(ts_atomic_file *f, uint32_t alignment, ts_error *err) {
    static const uint8_t zeros[4096];
    uint64_t pos = (uint64_t)ts_atomic_tell(f);
    size_t pad = (size_t)((alignment - pos % alignment) % alignment);
    while (pad) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        if (ts_atomic_write(f, zeros, n, err) != 0) return -1;
        pad -= n;
    }
    return 0;
}

static int writer_alignment(const ts_gguf_writer *w, uint32_t *out, ts_error *err) {
    *out = TS_GGUF_DEFAULT_ALIGNMENT;
    for (int i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        if (w->kvs[i].type != TS_GGUF_U32) return ts_fail(err, "gguf writer: general.alignment must be a u32");
        uint32_t a;
        memcpy(&a, w->kvs[i].enc, 4);
        if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 24))
            return ts_fail(err, "gguf writer: general.alignment %u is not a power of two up to 16 MiB", a);
        *out = a;
    }
    return 0;
}

int ts_gguf_writer_write(ts_gguf_writer *w, const char *path, ts_error *err) {
    uint32_t alignment;
    if (writer_alignment(w, &alignment, err) != 0) return -1;
    ts_atomic_file *f = ts_atomic_open(path, err);
    if (!f) return -1;
    if (ts_atomic_write(f, "GGUF", 4, err) != 0 || write_u32(f, 3, err) != 0 ||
        write_u64(f, (uint64_t)w->n_tensors, err) != 0 || write_u64(f, (uint64_t)w->n_kv, err) != 0)
        goto fail;
    for (int i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kvs[i];
        uint64_t kl = strlen(kv->key);
        if (write_u64(f, kl, err) != 0 || ts_atomic_write(f, kv->key, (size_t)kl, err) != 0 ||
            write_u32(f, kv->type, err) != 0 || ts_atomic_write(f, kv->enc, kv->len, err) != 0)
            goto fail;
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        uint64_t nl = strlen(t->name);
        if (write_u64(f, nl, err) != 0 || ts_atomic_write(f, t->name, (size_t)nl, err) != 0 ||
            write_u32(f, t->n_dims, err) != 0)
            goto fail;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (write_u64(f, (uint64_t)t->ne[d], err) != 0) goto fail;
        if (write_u32(f, (uint32_t)t->ggml_type, err) != 0 || write_u64(f, offset, err) != 0) goto fail;
        offset += t->nbytes;
        offset += (alignment - offset % alignment) % alignment;
    }
    if (w->n_tensors > 0 && write_pad(f, alignment, err) != 0) goto fail;
    for (int i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        for (int p = 0; p < t->nparts; p++)
            if (ts_atomic_write(f, t->parts[p], t->part_bytes[p], err) != 0) goto fail;
        if (write_pad(f, alignment, err) != 0) goto fail;
    }
    return ts_atomic_commit(f, err);
fail:
    ts_atomic_abort(f);
    return -1;
}

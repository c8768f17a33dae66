/* GGUF parsing: header, metadata (validated recursively, values left in the image), tensor infos and
 * the data section, each read through a bounds-checked cursor whose errors name the byte offset and
 * the field being read. */
#include "format/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/dtype.h"

static const ts_gguf_ggml_type_info g_ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},          [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},       [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 40},       [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},    [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},    [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98},  [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110},   [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},         [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},        [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},     [40] = {"NVFP4", 64, 36},
    [41] = {"Q1_0", 128, 18},
};

const ts_gguf_ggml_type_info *ts_gguf_ggml_type(int t) {
    if (t < 0 || (size_t)t >= sizeof g_ggml_types / sizeof g_ggml_types[0] || !g_ggml_types[t].name) return NULL;
    return &g_ggml_types[t];
}

const char *ts_gguf_type_name(ts_gguf_type t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return (int)t >= 0 && t < TS_GGUF_TYPE_COUNT ? names[t] : "invalid";
}

size_t ts_gguf_type_size(ts_gguf_type t) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (int)t >= 0 && t < TS_GGUF_TYPE_COUNT ? sizes[t] : 0;
}

/* ---- bounded reading ---- */

typedef struct cursor {
    const uint8_t *data;
    size_t size, pos;
    const char *src;
    ts_error *err;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return ts_fail(c->err, "%s: byte %zu: %s: the file ends %zu bytes later, %" PRIu64 " bytes needed (truncated file?)",
                       c->src, c->pos, what, c->size - c->pos, n);
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what) != 0) return -1;
    memcpy(v, c->data + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what) != 0) return -1;
    memcpy(v, c->data + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int rd_str(cursor *c, ts_gguf_str *s, const char *what) {
    uint64_t len;
    size_t at = c->pos;
    if (rd_u64(c, &len, what) != 0) return -1;
    if (len > c->size - c->pos)
        return ts_fail(c->err, "%s: byte %zu: %s: string length %" PRIu64 " exceeds the %zu bytes left in the file",
                       c->src, at, what, len, c->size - c->pos);
    s->ptr = (const char *)c->data + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return 0;
}

/* Validates one value of `type` at the cursor (recursing into arrays) and records where it lies. */
static int read_value(cursor *c, ts_gguf_type type, int depth, const char *what, ts_gguf_value *out) {
    char sub[320];
    memset(out, 0, sizeof *out);
    out->type = type;
    out->elem_type = TS_GGUF_TYPE_COUNT;
    size_t start = c->pos;
    size_t fixed = ts_gguf_type_size(type);
    if ((int)type < 0 || type >= TS_GGUF_TYPE_COUNT)
        return ts_fail(c->err, "%s: byte %zu: %s: unknown metadata value type %d (expected 0..12)", c->src, c->pos, what,
                       (int)type);
    if (fixed) {
        if (need(c, fixed, what) != 0) return -1;
        if (type == TS_GGUF_BOOL && c->data[c->pos] > 1)
            return ts_fail(c->err, "%s: byte %zu: %s: bool value is %u, expected 0 or 1", c->src, c->pos, what,
                           c->data[c->pos]);
        c->pos += fixed;
    } else if (type == TS_GGUF_STRING) {
        ts_gguf_str s;
        if (rd_str(c, &s, what) != 0) return -1;
    } else { /* array */
        if (depth >= TS_GGUF_MAX_ARRAY_DEPTH)
            return ts_fail(c->err, "%s: byte %zu: %s: arrays nested more than %d deep", c->src, c->pos, what,
                           TS_GGUF_MAX_ARRAY_DEPTH);
        uint32_t et;
        uint64_t n;
        size_t at = c->pos;
        if (rd_u32(c, &et, what) != 0) return -1;
        if (et >= TS_GGUF_TYPE_COUNT)
            return ts_fail(c->err, "%s: byte %zu: %s: unknown array element type %u (expected 0..12)", c->src, at, what, et);
        at = c->pos;
        if (rd_u64(c, &n, what) != 0) return -1;
        /* The smallest encoding of one element bounds the count by the bytes left. */
        size_t min_elem = ts_gguf_type_size((ts_gguf_type)et);
        if (!min_elem) min_elem = et == TS_GGUF_STRING ? 8 : 12;
        if (n > (c->size - c->pos) / min_elem)
            return ts_fail(c->err, "%s: byte %zu: %s: array of %" PRIu64 " %s elements cannot fit in the %zu bytes left",
                           c->src, at, what, n, ts_gguf_type_name((ts_gguf_type)et), c->size - c->pos);
        out->elem_type = (ts_gguf_type)et;
        out->count = n;
        out->offset = c->pos;
        if (et == TS_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (c->data[c->pos + i] > 1)
                    return ts_fail(c->err, "%s: byte %zu: %s: element %" PRIu64 ": bool value is %u, expected 0 or 1", c->src,
                                   c->pos + (size_t)i, what, i, c->data[c->pos + i]);
        }
        if (ts_gguf_type_size((ts_gguf_type)et)) {
            c->pos += (size_t)n * ts_gguf_type_size((ts_gguf_type)et);
        } else {
            for (uint64_t i = 0; i < n; i++) {
                ts_gguf_value ev;
                snprintf(sub, sizeof sub, "%.280s element %" PRIu64, what, i);
                if (read_value(c, (ts_gguf_type)et, depth + 1, sub, &ev) != 0) return -1;
            }
        }
        out->size = c->pos - out->offset;
        return 0;
    }
    out->offset = start;
    out->size = c->pos - start;
    return 0;
}

/* ---- name sets for duplicate detection (sizes bounded by the file) ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

typedef struct name_set {
    int64_t *slots;
    size_t cap;
} name_set;

static int set_init(name_set *s, int64_t n) {
    s->cap = 16;
    while (s->cap < (size_t)n * 2) s->cap *= 2;
    s->slots = malloc(s->cap * sizeof *s->slots);
    if (!s->slots) return -1;
    for (size_t i = 0; i < s->cap; i++) s->slots[i] = -1;
    return 0;
}

/* Returns the index already holding `name`, or inserts `idx` and returns -1. */
static int64_t set_insert(name_set *s, char *const *names, const char *name, int64_t idx) {
    size_t h = (size_t)hash_bytes(name, strlen(name)) & (s->cap - 1);
    while (s->slots[h] >= 0) {
        if (!strcmp(names[s->slots[h]], name)) return s->slots[h];
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h] = idx;
    return -1;
}

/* ---- parse ---- */

static int check_name(cursor *c, ts_gguf_str s, size_t at, const char *what, size_t max_len) {
    if (s.len == 0) return ts_fail(c->err, "%s: byte %zu: %s is empty", c->src, at, what);
    if (max_len && s.len > max_len)
        return ts_fail(c->err, "%s: byte %zu: %s is %" PRIu64 " bytes long, more than the %zu GGUF allows", c->src, at,
                       what, s.len, max_len);
    if (memchr(s.ptr, '\0', (size_t)s.len))
        return ts_fail(c->err, "%s: byte %zu: %s contains a NUL byte", c->src, at, what);
    return 0;
}

static int parse_kvs(cursor *c, ts_gguf *g) {
    char what[160];
    int rc = 0;
    for (int64_t i = 0; i < g->n_kv && rc == 0; i++) {
        ts_gguf_kv *kv = &g->kvs[i];
        ts_gguf_str key;
        kv->key_offset = c->pos;
        snprintf(what, sizeof what, "metadata entry %" PRId64 " key", i);
        if (rd_str(c, &key, what) != 0 || check_name(c, key, kv->key_offset, what, 65535) != 0) {
            rc = -1;
            break;
        }
        kv->key = ts_gguf_strdup(key);
        if (!kv->key) {
            rc = ts_fail(c->err, "%s: out of memory", c->src);
            break;
        }
        uint32_t type;
        size_t at = c->pos;
        snprintf(what, sizeof what, "metadata \"%.100s\" type", kv->key);
        if (rd_u32(c, &type, what) != 0) {
            rc = -1;
            break;
        }
        if (type >= TS_GGUF_TYPE_COUNT) {
            rc = ts_fail(c->err, "%s: byte %zu: metadata \"%.100s\": unknown value type %u (expected 0..12)", c->src, at,
                         kv->key, type);
            break;
        }
        snprintf(what, sizeof what, "metadata \"%.100s\" value", kv->key);
        rc = read_value(c, (ts_gguf_type)type, 0, what, &kv->value);
    }
    return rc;
}

/* Duplicate keys: checked after parsing with a set over copied key pointers. */
static int check_duplicate_keys(cursor *c, ts_gguf *g) {
    char **names = malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *names);
    name_set set;
    if (!names || set_init(&set, g->n_kv) != 0) {
        free(names);
        return ts_fail(c->err, "%s: out of memory", c->src);
    }
    int rc = 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        names[i] = g->kvs[i].key;
        int64_t prev = set_insert(&set, names, names[i], i);
        if (prev >= 0) {
            rc = ts_fail(c->err, "%s: byte %zu: metadata key \"%.200s\" appears twice (entries %" PRId64 " and %" PRId64 ")",
                         c->src, g->kvs[i].key_offset, names[i], prev, i);
            break;
        }
    }
    free(set.slots);
    free(names);
    return rc;
}

static int parse_alignment(cursor *c, ts_gguf *g) {
    g->alignment = TS_GGUF_DEFAULT_ALIGNMENT;
    const ts_gguf_kv *kv = ts_gguf_find(g, "general.alignment");
    if (!kv) return 0;
    if (kv->value.type != TS_GGUF_U32)
        return ts_fail(c->err, "%s: byte %zu: metadata \"general.alignment\" has type %s, expected u32", c->src,
                       kv->key_offset, ts_gguf_type_name(kv->value.type));
    uint32_t a;
    memcpy(&a, g->data + kv->value.offset, 4);
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 24))
        return ts_fail(c->err, "%s: byte %zu: general.alignment is %u, expected a power of two up to 16 MiB", c->src,
                       kv->value.offset, a);
    g->alignment = a;
    return 0;
}

static int parse_tensor_infos(cursor *c, ts_gguf *g) {
    char what[200];
    for (int64_t i = 0; i < g->n_tensors; i++) {
        ts_gguf_tensor_info *t = &g->tensors[i];
        ts_gguf_str name;
        t->info_offset = c->pos;
        snprintf(what, sizeof what, "tensor %" PRId64 " name", i);
        if (rd_str(c, &name, what) != 0 || check_name(c, name, t->info_offset, what, TS_GGUF_MAX_NAME) != 0) return -1;
        t->name = ts_gguf_strdup(name);
        if (!t->name) return ts_fail(c->err, "%s: out of memory", c->src);
        size_t at = c->pos;
        snprintf(what, sizeof what, "tensor \"%s\" dimension count", t->name);
        if (rd_u32(c, &t->n_dims, what) != 0) return -1;
        if (t->n_dims < 1 || t->n_dims > 4)
            return ts_fail(c->err, "%s: byte %zu: tensor \"%s\" has %u dimensions, expected 1 to 4", c->src, at, t->name,
                           t->n_dims);
        uint64_t numel = 1;
        for (int j = 0; j < 4; j++) t->ne[j] = 1;
        for (uint32_t j = 0; j < t->n_dims; j++) {
            uint64_t ne;
            at = c->pos;
            snprintf(what, sizeof what, "tensor \"%s\" dimension %u", t->name, j);
            if (rd_u64(c, &ne, what) != 0) return -1;
            if (ne > (uint64_t)INT64_MAX)
                return ts_fail(c->err, "%s: byte %zu: tensor \"%s\" dimension %u is %" PRIu64 ", out of range", c->src, at,
                               t->name, j, ne);
            if (ne != 0 && numel > (uint64_t)INT64_MAX / ne)
                return ts_fail(c->err, "%s: byte %zu: tensor \"%s\": the product of its dimensions overflows 64 bits", c->src,
                               at, t->name);
            numel *= ne;
            t->ne[j] = (int64_t)ne;
        }
        uint32_t type;
        at = c->pos;
        snprintf(what, sizeof what, "tensor \"%s\" type", t->name);
        if (rd_u32(c, &type, what) != 0) return -1;
        const ts_gguf_ggml_type_info *ti = ts_gguf_ggml_type((int)type);
        if (!ti)
            return ts_fail(c->err, "%s: byte %zu: tensor \"%s\" has unknown ggml type %u", c->src, at, t->name, type);
        t->ggml_type = (int)type;
        if (t->ne[0] % ti->block_size != 0)
            return ts_fail(c->err, "%s: byte %zu: tensor \"%s\" of type %s has rows of %" PRId64 " values, not a multiple of its block size %d",
                           c->src, at, t->name, ti->name, t->ne[0], ti->block_size);
        uint64_t blocks = numel / (uint64_t)ti->block_size;
        if (blocks > (uint64_t)SIZE_MAX / (uint64_t)ti->block_bytes || blocks * (uint64_t)ti->block_bytes > (uint64_t)INT64_MAX)
            return ts_fail(c->err, "%s: byte %zu: tensor \"%s\": its size in bytes overflows", c->src, at, t->name);
        t->nbytes = (size_t)(blocks * (uint64_t)ti->block_bytes);
        at = c->pos;
        snprintf(what, sizeof what, "tensor \"%s\" data offset", t->name);
        if (rd_u64(c, &t->offset, what) != 0) return -1;
        if (t->offset % g->alignment != 0)
            return ts_fail(c->err, "%s: byte %zu: tensor \"%s\" data offset %" PRIu64 " is not a multiple of the alignment %u",
                           c->src, at, t->name, t->offset, g->alignment);
    }
    return 0;
}

static int check_duplicate_tensors(cursor *c, ts_gguf *g) {
    char **names = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *names);
    name_set set;
    if (!names || set_init(&set, g->n_tensors) != 0) {
        free(names);
        return ts_fail(c->err, "%s: out of memory", c->src);
    }
    int rc = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        names[i] = g->tensors[i].name;
        int64_t prev = set_insert(&set, names, names[i], i);
        if (prev >= 0) {
            rc = ts_fail(c->err, "%s: byte %zu: tensor name \"%s\" appears twice (tensors %" PRId64 " and %" PRId64 ")", c->src,
                         g->tensors[i].info_offset, names[i], prev, i);
            break;
        }
    }
    free(set.slots);
    free(names);
    return rc;
}

int ts_gguf_parse(const uint8_t *data, size_t size, const char *source, ts_gguf *g, ts_error *err) {
    memset(g, 0, sizeof *g);
    snprintf(g->source, sizeof g->source, "%s", source ? source : "<memory>");
    g->data = data;
    g->size = size;
    cursor c = {data, size, 0, g->source, err};
    if (size < 4 || !data)
        return ts_fail(err, "%s: byte 0: magic: the file has %zu bytes, too short to be GGUF", g->source, size);
    if (memcmp(data, "GGUF", 4) != 0) {
        char m[5];
        for (int i = 0; i < 4; i++) m[i] = (data[i] >= 32 && data[i] < 127) ? (char)data[i] : '?';
        m[4] = 0;
        return ts_fail(err, "%s: byte 0: magic: found \"%s\" (%02x %02x %02x %02x), expected \"GGUF\": not a GGUF file",
                       g->source, m, data[0], data[1], data[2], data[3]);
    }
    c.pos = 4;
    if (rd_u32(&c, &g->version, "version") != 0) goto fail;
    if (g->version == 1) {
        ts_fail(err, "%s: byte 4: GGUF version 1 is not supported (it predates 64-bit counts); convert the file to version 3",
                g->source);
        goto fail;
    }
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffffu) == 0)
            ts_fail(err, "%s: byte 4: version field reads %u: a big-endian GGUF file? only little-endian versions 2 and 3 are supported",
                    g->source, g->version);
        else
            ts_fail(err, "%s: byte 4: unsupported GGUF version %u (expected 2 or 3)", g->source, g->version);
        goto fail;
    }
    uint64_t nt, nkv;
    if (rd_u64(&c, &nt, "tensor count") != 0 || rd_u64(&c, &nkv, "metadata count") != 0) goto fail;
    /* Smallest encodings: a kv is key length + 1 byte key + type + 1 byte value; a tensor info is
     * name length + 1 byte name + dimension count + one dimension + type + offset. */
    if (nkv > (size - c.pos) / 14) {
        ts_fail(err, "%s: byte 16: metadata count %" PRIu64 " is absurd: %zu bytes cannot hold that many entries", g->source,
                nkv, size - c.pos);
        goto fail;
    }
    if (nt > (size - c.pos) / 33) {
        ts_fail(err, "%s: byte 8: tensor count %" PRIu64 " is absurd: %zu bytes cannot hold that many tensor infos", g->source,
                nt, size - c.pos);
        goto fail;
    }
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;
    g->kvs = calloc((size_t)(nkv ? nkv : 1), sizeof *g->kvs);
    g->tensors = calloc((size_t)(nt ? nt : 1), sizeof *g->tensors);
    if (!g->kvs || !g->tensors) {
        ts_fail(err, "%s: out of memory", g->source);
        goto fail;
    }
    if (parse_kvs(&c, g) != 0 || check_duplicate_keys(&c, g) != 0 || parse_alignment(&c, g) != 0) goto fail;
    if (parse_tensor_infos(&c, g) != 0 || check_duplicate_tensors(&c, g) != 0) goto fail;
    size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    if (g->n_tensors > 0 && pad > size - c.pos) {
        ts_fail(err, "%s: byte %zu: data section: the tensor data would start at byte %zu (aligned to %u) but the file has only %zu bytes",
                g->source, c.pos, c.pos + pad, g->alignment, size);
        goto fail;
    }
    g->data_offset = pad > size - c.pos ? size : c.pos + pad;
    size_t avail = size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const ts_gguf_tensor_info *t = &g->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            ts_fail(err, "%s: byte %zu: tensor \"%s\": its data at bytes %zu..%" PRIu64 " (%zu bytes) runs past the end of the file (%zu bytes)",
                    g->source, t->info_offset, t->name, g->data_offset + (size_t)(t->offset < avail ? t->offset : avail),
                    (uint64_t)g->data_offset + t->offset + t->nbytes, t->nbytes, size);
            goto fail;
        }
    }
    return 0;
fail:
    ts_gguf_free(g);
    return -1;
}

int ts_gguf_open(const char *path, ts_gguf *out, ts_error *err) {
    ts_mapped_file mf;
    memset(out, 0, sizeof *out);
    if (ts_map_file(path, &mf, err) != 0) return -1;
    if (ts_gguf_parse(mf.data, mf.size, path, out, err) != 0) {
        ts_unmap_file(&mf);
        return -1;
    }
    out->mapping = mf;
    out->owns_mapping = 1;
    return 0;
}

void ts_gguf_free(ts_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; g->kvs && i < g->n_kv; i++) free(g->kvs[i].key);
    for (int64_t i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    if (g->owns_mapping) ts_unmap_file(&g->mapping);
    memset(g, 0, sizeof *g);
}

char *ts_gguf_strdup(ts_gguf_str s) {
    if (s.len > SIZE_MAX - 1) return NULL;
    char *p = malloc((size_t)s.len + 1);
    if (!p) return NULL;
    if (s.len) memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = '\0';
    return p;
}

const ts_gguf_kv *ts_gguf_find(const ts_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && !strcmp(g->kvs[i].key, key)) return &g->kvs[i];
    return NULL;
}

const ts_gguf_tensor_info *ts_gguf_find_tensor(const ts_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* ---- typed access ---- */

static int is_integer(ts_gguf_type t) {
    return t == TS_GGUF_U8 || t == TS_GGUF_I8 || t == TS_GGUF_U16 || t == TS_GGUF_I16 || t == TS_GGUF_U32 ||
           t == TS_GGUF_I32 || t == TS_GGUF_U64 || t == TS_GGUF_I64;
}

/* Reads a fixed-size scalar at `off` of type t as signed 64 bits; u64 above INT64_MAX returns -1. */
static int scalar_int(const uint8_t *p, ts_gguf_type t, int64_t *out) {
    switch (t) {
    case TS_GGUF_U8: *out = p[0]; return 0;
    case TS_GGUF_BOOL: *out = p[0]; return 0;
    case TS_GGUF_I8: *out = (int8_t)p[0]; return 0;
    case TS_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case TS_GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case TS_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case TS_GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case TS_GGUF_I64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    case TS_GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v;
        return 0;
    }
    default: return -1;
    }
}

static double scalar_float(const uint8_t *p, ts_gguf_type t) {
    if (t == TS_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    if (t == TS_GGUF_F64) {
        double d;
        memcpy(&d, p, 8);
        return d;
    }
    if (t == TS_GGUF_U64) {
        uint64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    int64_t i = 0;
    scalar_int(p, t, &i);
    return (double)i;
}

int ts_gguf_value_int(const ts_gguf *g, const ts_gguf_value *v, int64_t *out) {
    return scalar_int(g->data + v->offset, v->type, out);
}

double ts_gguf_value_float(const ts_gguf *g, const ts_gguf_value *v) { return scalar_float(g->data + v->offset, v->type); }

ts_gguf_str ts_gguf_value_str(const ts_gguf *g, const ts_gguf_value *v) {
    ts_gguf_str s = {NULL, 0};
    if (v->type != TS_GGUF_STRING) return s;
    memcpy(&s.len, g->data + v->offset, 8);
    s.ptr = (const char *)g->data + v->offset + 8;
    return s;
}

static int wrong_type(const ts_gguf *g, const ts_gguf_kv *kv, const char *expected, ts_error *err) {
    const char *tn = ts_gguf_type_name(kv->value.type);
    if (kv->value.type == TS_GGUF_ARRAY)
        return ts_fail(err, "%s: byte %zu: metadata \"%s\" is an array of %s, expected %s", g->source, kv->key_offset,
                       kv->key, ts_gguf_type_name(kv->value.elem_type), expected);
    return ts_fail(err, "%s: byte %zu: metadata \"%s\" has type %s, expected %s", g->source, kv->key_offset, kv->key, tn,
                   expected);
}

int ts_gguf_get_int(const ts_gguf *g, const char *key, int64_t *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) return 1;
    if (!is_integer(kv->value.type)) return wrong_type(g, kv, "an integer", err);
    if (scalar_int(g->data + kv->value.offset, kv->value.type, out) != 0)
        return ts_fail(err, "%s: metadata \"%s\" does not fit a signed 64-bit integer", g->source, key);
    return 0;
}

int ts_gguf_get_uint(const ts_gguf *g, const char *key, uint64_t *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) return 1;
    if (!is_integer(kv->value.type)) return wrong_type(g, kv, "an unsigned integer", err);
    if (kv->value.type == TS_GGUF_U64) {
        memcpy(out, g->data + kv->value.offset, 8);
        return 0;
    }
    int64_t v;
    scalar_int(g->data + kv->value.offset, kv->value.type, &v);
    if (v < 0) return ts_fail(err, "%s: metadata \"%s\" is %" PRId64 ", expected a non-negative value", g->source, key, v);
    *out = (uint64_t)v;
    return 0;
}

int ts_gguf_get_float(const ts_gguf *g, const char *key, double *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->value.type != TS_GGUF_F32 && kv->value.type != TS_GGUF_F64 && !is_integer(kv->value.type))
        return wrong_type(g, kv, "a number", err);
    *out = scalar_float(g->data + kv->value.offset, kv->value.type);
    return 0;
}

int ts_gguf_get_bool(const ts_gguf *g, const char *key, int *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->value.type != TS_GGUF_BOOL) return wrong_type(g, kv, "bool", err);
    *out = g->data[kv->value.offset] != 0;
    return 0;
}

int ts_gguf_get_string(const ts_gguf *g, const char *key, ts_gguf_str *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->value.type != TS_GGUF_STRING) return wrong_type(g, kv, "string", err);
    *out = ts_gguf_value_str(g, &kv->value);
    return 0;
}

int ts_gguf_get_array(const ts_gguf *g, const char *key, ts_gguf_type want_elem, ts_gguf_value *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) return 1;
    char expected[64];
    snprintf(expected, sizeof expected, "an array of %s",
             want_elem == TS_GGUF_TYPE_COUNT ? "anything" : ts_gguf_type_name(want_elem));
    if (kv->value.type != TS_GGUF_ARRAY) return wrong_type(g, kv, expected, err);
    if (want_elem != TS_GGUF_TYPE_COUNT && kv->value.elem_type != want_elem) return wrong_type(g, kv, expected, err);
    *out = kv->value;
    return 0;
}

int ts_gguf_array_int(const ts_gguf *g, const ts_gguf_value *arr, uint64_t i, int64_t *out, ts_error *err) {
    size_t es = ts_gguf_type_size(arr->elem_type);
    if (arr->type != TS_GGUF_ARRAY || i >= arr->count || !es || arr->elem_type == TS_GGUF_F32 || arr->elem_type == TS_GGUF_F64)
        return ts_fail(err, "%s: array element %" PRIu64 " is not an integer in range", g->source, i);
    if (scalar_int(g->data + arr->offset + (size_t)i * es, arr->elem_type, out) != 0)
        return ts_fail(err, "%s: array element %" PRIu64 " does not fit a signed 64-bit integer", g->source, i);
    return 0;
}

int ts_gguf_array_float(const ts_gguf *g, const ts_gguf_value *arr, uint64_t i, double *out, ts_error *err) {
    size_t es = ts_gguf_type_size(arr->elem_type);
    if (arr->type != TS_GGUF_ARRAY || i >= arr->count || !es)
        return ts_fail(err, "%s: array element %" PRIu64 " is not a number in range", g->source, i);
    *out = scalar_float(g->data + arr->offset + (size_t)i * es, arr->elem_type);
    return 0;
}

/* Bytes taken by the encoded value of type t at off (already validated by the parser). */
static size_t encoded_size(const ts_gguf *g, ts_gguf_type t, size_t off) {
    size_t fixed = ts_gguf_type_size(t);
    if (fixed) return fixed;
    if (t == TS_GGUF_STRING) {
        uint64_t len;
        memcpy(&len, g->data + off, 8);
        return 8 + (size_t)len;
    }
    uint32_t et;
    uint64_t n;
    memcpy(&et, g->data + off, 4);
    memcpy(&n, g->data + off + 4, 8);
    size_t total = 12, es = ts_gguf_type_size((ts_gguf_type)et);
    if (es) return total + (size_t)n * es;
    for (uint64_t i = 0; i < n; i++) total += encoded_size(g, (ts_gguf_type)et, off + total);
    return total;
}

int ts_gguf_array_elem(const ts_gguf *g, const ts_gguf_value *arr, uint64_t i, ts_gguf_value *out, ts_error *err) {
    if (arr->type != TS_GGUF_ARRAY || i >= arr->count)
        return ts_fail(err, "%s: array element %" PRIu64 " out of range (%" PRIu64 " elements)", g->source, i, arr->count);
    size_t off = arr->offset;
    for (uint64_t k = 0; k < i; k++) off += encoded_size(g, arr->elem_type, off);
    memset(out, 0, sizeof *out);
    out->type = arr->elem_type;
    out->elem_type = TS_GGUF_TYPE_COUNT;
    out->size = encoded_size(g, arr->elem_type, off);
    if (arr->elem_type == TS_GGUF_ARRAY) {
        uint32_t et;
        memcpy(&et, g->data + off, 4);
        memcpy(&out->count, g->data + off + 4, 8);
        out->elem_type = (ts_gguf_type)et;
        out->offset = off + 12;
        out->size -= 12;
    } else {
        out->offset = off;
    }
    return 0;
}

int ts_gguf_array_strings(const ts_gguf *g, const ts_gguf_value *arr, ts_gguf_str *views, ts_error *err) {
    if (arr->type != TS_GGUF_ARRAY || arr->elem_type != TS_GGUF_STRING)
        return ts_fail(err, "%s: expected an array of strings", g->source);
    size_t off = arr->offset;
    for (uint64_t i = 0; i < arr->count; i++) {
        memcpy(&views[i].len, g->data + off, 8);
        views[i].ptr = (const char *)g->data + off + 8;
        off += 8 + (size_t)views[i].len;
    }
    return 0;
}

/* ---- tensor table ---- */

void ts_gguf_tensor_shape(const ts_gguf_tensor_info *t, int64_t shape[4], int *ndim) {
    *ndim = (int)t->n_dims;
    for (uint32_t i = 0; i < t->n_dims; i++) shape[i] = t->ne[t->n_dims - 1 - i];
    for (int i = (int)t->n_dims; i < 4; i++) shape[i] = 1;
}

int ts_gguf_add_to_table(ts_gguf *g, ts_tensor_table *table, ts_error *err) {
    int file_index = -1;
    if (g->owns_mapping) {
        file_index = ts_tensor_table_add_file(table, &g->mapping, err);
        if (file_index < 0) return -1;
        g->owns_mapping = 0;
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const ts_gguf_tensor_info *t = &g->tensors[i];
        ts_tensor_desc d;
        memset(&d, 0, sizeof d);
        d.name = t->name;
        ts_dtype dt;
        d.dtype = ts_dtype_from_ggml(t->ggml_type, &dt) == 0 ? dt : TS_DTYPE_COUNT;
        snprintf(d.file_dtype, sizeof d.file_dtype, "%s", ts_gguf_ggml_type(t->ggml_type)->name);
        ts_gguf_tensor_shape(t, d.shape, &d.ndim);
        d.data = g->data + g->data_offset + t->offset;
        d.nbytes = t->nbytes;
        d.file_index = file_index;
        if (ts_tensor_table_add(table, &d, err) != 0) {
            ts_error_prefix(err, "%s: ", g->source);
            return -1;
        }
    }
    return 0;
}

#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "quant/dequantize.h"
#include "quant/float16.h"
#include "quant/quantize.h"

static int own(ts_model *m, void *p, ts_error *err) {
    if (m->num_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) return ts_fail(err, "out of memory");
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->num_owned++] = p;
    return 0;
}

static int own_dev(ts_model *m, void *p, ts_error *err) {
    if (m->num_dev_owned == m->cap_dev_owned) {
        int cap = m->cap_dev_owned ? m->cap_dev_owned * 2 : 64;
        void **n = realloc(m->dev_owned, (size_t)cap * sizeof *n);
        if (!n) return ts_fail(err, "out of memory");
        m->dev_owned = n;
        ts_backend **o = realloc(m->dev_owner, (size_t)cap * sizeof *o);
        if (!o) return ts_fail(err, "out of memory");
        m->dev_owner = o;
        m->cap_dev_owned = cap;
    }
    m->dev_owner[m->num_dev_owned] = m->be;
    m->dev_owned[m->num_dev_owned++] = p;
    return 0;
}

float *ts_model_alloc_floats(ts_model *m, size_t count, ts_error *err) {
    float *p = m->be->ops->alloc(m->be, count * sizeof(float), err);
    if (!p) return NULL;
    if (own_dev(m, p, err) != 0) {
        m->be->ops->free(m->be, p);
        return NULL;
    }
    return p;
}

const char *ts_first_present(const ts_model *m, const char *const *names, int count) {
    for (int i = 0; i < count; i++)
        if (ts_tensor_table_find(&m->table, names[i])) return names[i];
    return names[0];
}

static const char *file_of(const ts_model *m, const ts_tensor_desc *d) { return ts_tensor_file(&m->table, d); }

static int check_usable(const ts_model *m, const ts_tensor_desc *d, ts_error *err) {
    if (d->dtype == TS_DTYPE_COUNT || d->dtype == TS_DTYPE_Q8_K)
        return ts_fail(err, "%s: tensor \"%s\" has type %s, which tessera cannot compute with (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)",
                       file_of(m, d), d->name, d->file_dtype);
    return 0;
}

/* Converts a [rows, cols] tensor (optionally stored [cols, rows]) into dst_type, row by row. */
static int model_threads(const ts_model *m) {
    return m->opt.threads > 0 ? m->opt.threads : ts_available_cores();
}

/* Converts a [rows, cols] tensor (optionally stored [cols, rows]) into dst_type with the
 * error-minimising quantizers, on all the model's threads. */
static void *convert_matrix(const ts_model *m, const ts_tensor_desc *d, int64_t rows, int64_t cols, int transposed,
                            ts_dtype dst_type, ts_error *err) {
    size_t bytes = ts_dtype_row_bytes(dst_type, cols) * (size_t)rows;
    uint8_t *out = malloc(bytes ? bytes : 1);
    if (!out) {
        ts_fail(err, "out of memory converting tensor \"%s\" (%lld x %lld, %zu bytes)", d->name, (long long)rows,
                (long long)cols, bytes);
        return NULL;
    }
    const void *src = d->data;
    ts_dtype src_type = d->dtype;
    float *full = NULL;
    if (transposed) {
        /* GPT-2's Conv1D: dequantize the stored [cols, rows] matrix and read it column-wise */
        full = malloc((size_t)rows * (size_t)cols * sizeof(float));
        float *src_row = malloc((size_t)rows * sizeof(float));
        if (!full || !src_row) {
            free(full);
            free(src_row);
            free(out);
            ts_fail(err, "out of memory transposing tensor \"%s\"", d->name);
            return NULL;
        }
        size_t src_row_bytes = ts_dtype_row_bytes(d->dtype, rows);
        for (int64_t c = 0; c < cols; c++) {
            ts_dequantize_row(d->dtype, (const uint8_t *)d->data + (size_t)c * src_row_bytes, src_row, rows);
            for (int64_t r = 0; r < rows; r++) full[(size_t)r * (size_t)cols + (size_t)c] = src_row[r];
        }
        free(src_row);
        src = full;
        src_type = TS_DTYPE_F32;
    }
    int rc = ts_quantize_tensor(dst_type, src, src_type, rows, cols, out, NULL, model_threads(m), err);
    free(full);
    if (rc != 0) {
        ts_error_prefix(err, "tensor \"%s\": ", d->name);
        free(out);
        return NULL;
    }
    return out;
}

int ts_bind_matrix_opt(ts_model *m, const char *name, ts_weight_role role, int layer, int64_t rows, int64_t cols,
                       int stored_transposed, ts_weight *out, int *found, ts_error *err) {
    memset(out, 0, sizeof *out);
    const ts_tensor_desc *d = ts_tensor_table_find(&m->table, name);
    *found = d != NULL;
    if (!d) return 0;
    if (check_usable(m, d, err) != 0) return -1;
    int64_t er = stored_transposed ? cols : rows, ec = stored_transposed ? rows : cols;
    if (d->ndim != 2 || d->shape[0] != er || d->shape[1] != ec) {
        char got[96], want[96];
        int64_t ws[2] = {er, ec};
        return ts_fail(err, "%s: tensor \"%s\" has shape %s; the configuration implies %s", file_of(m, d), name,
                       ts_shape_str(d->shape, d->ndim, got, sizeof got), ts_shape_str(ws, 2, want, sizeof want));
    }
    if (ec % ts_dtype_get(d->dtype)->block_size != 0)
        return ts_fail(err, "%s: tensor \"%s\": rows of %lld values do not fill whole %s blocks", file_of(m, d), name,
                       (long long)ec, ts_dtype_get(d->dtype)->name);
    ts_dtype want = ts_quant_scheme_dtype(&m->opt.quant, role, layer, m->cfg.num_layers, d->dtype, cols);
    out->dtype = want;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = ts_dtype_row_bytes(want, cols);
    if (want == d->dtype && !stored_transposed) {
        out->host = d->data; /* used in place from the mapped file */
    } else {
        void *conv = convert_matrix(m, d, rows, cols, stored_transposed, want, err);
        if (!conv || own(m, conv, err) != 0) {
            free(conv);
            return -1;
        }
        out->host = conv;
    }
    m->weight_bytes += out->row_bytes * (size_t)rows;
    ts_quant_budget_add(&m->budget, want, rows * cols);
    if (m->be->ops->prepare_weight(m->be, out, err) != 0) {
        ts_error_prefix(err, "preparing \"%s\": ", name);
        return -1;
    }
    /* A matrix converted on load whose backend keeps its own copy (the CPU's repacked layout) would
     * otherwise stay in memory twice (an 8B at int4: about 4.3 GB more). Embeddings keep theirs: lookups
     * read rows from it, and a tied head shares it. Only the buffer just converted (the last one owned) goes;
     * bytes used in place from the mapped file are never owned. */
    if (out->host_unused && role != TS_ROLE_EMBEDDING && role != TS_ROLE_POSITION && m->num_owned > 0 &&
        m->owned[m->num_owned - 1] == out->host) {
        free(m->owned[--m->num_owned]);
        out->host = NULL;
    }
    return 0;
}

int ts_bind_matrix(ts_model *m, const char *name, ts_weight_role role, int layer, int64_t rows, int64_t cols,
                   int stored_transposed, ts_weight *out, ts_error *err) {
    int found = 0;
    if (ts_bind_matrix_opt(m, name, role, layer, rows, cols, stored_transposed, out, &found, err) != 0) return -1;
    if (!found) {
        int64_t s[2] = {stored_transposed ? cols : rows, stored_transposed ? rows : cols};
        char shape[96];
        return ts_fail(err, "%s: missing tensor \"%s\" (expected shape %s)", m->path, name,
                       ts_shape_str(s, 2, shape, sizeof shape));
    }
    return 0;
}

int ts_bind_vector_opt(ts_model *m, const char *name, int64_t n, float **out, ts_error *err) {
    *out = NULL;
    const ts_tensor_desc *d = ts_tensor_table_find(&m->table, name);
    if (!d) return 0;
    if (check_usable(m, d, err) != 0) return -1;
    if (ts_tensor_numel(d) != n || d->ndim < 1) {
        char got[96];
        return ts_fail(err, "%s: tensor \"%s\" has shape %s; the configuration implies [%lld]", file_of(m, d), name,
                       ts_shape_str(d->shape, d->ndim, got, sizeof got), (long long)n);
    }
    float *host = malloc((size_t)n * sizeof(float));
    if (!host) return ts_fail(err, "out of memory");
    ts_dequantize_row(d->dtype, d->data, host, n);
    float *dev = ts_model_alloc_floats(m, (size_t)n, err);
    if (dev) m->be->ops->from_host(m->be, dev, host, (size_t)n * sizeof(float));
    free(host);
    if (!dev) return -1;
    *out = dev;
    return 0;
}

int ts_bind_vector(ts_model *m, const char *name, int64_t n, float **out, ts_error *err) {
    if (ts_bind_vector_opt(m, name, n, out, err) != 0) return -1;
    if (!*out) return ts_fail(err, "%s: missing tensor \"%s\" (expected shape [%lld])", m->path, name, (long long)n);
    return 0;
}

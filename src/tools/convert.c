#include "tools/convert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "base/parallel.h"
#include "format/gguf_model.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

ts_weight_role ts_tensor_role(const char *n, int *layer) {
    *layer = -1;
    const char *l = strstr(n, "layers.");
    if (l) *layer = atoi(l + 7);
    else if ((l = strstr(n, "h.")) && (l == n || l[-1] == '.')) *layer = atoi(l + 2);
    if (strstr(n, "embed_tokens") || strstr(n, "wte.")) return TS_ROLE_EMBEDDING;
    if (strstr(n, "wpe.")) return TS_ROLE_POSITION;
    if (strstr(n, "lm_head")) return TS_ROLE_OUTPUT;
    if (strstr(n, ".bias") || strstr(n, "norm") || strstr(n, "ln_")) return TS_ROLE_VECTOR;
    if (strstr(n, "q_proj")) return TS_ROLE_ATTN_Q;
    if (strstr(n, "k_proj")) return TS_ROLE_ATTN_K;
    if (strstr(n, "v_proj") || strstr(n, "c_attn")) return TS_ROLE_ATTN_V;
    if (strstr(n, "o_proj") || strstr(n, "attn.c_proj")) return TS_ROLE_ATTN_OUT;
    if (strstr(n, "mlp.gate.")) return TS_ROLE_ROUTER;
    if (strstr(n, "gate_proj")) return TS_ROLE_FFN_GATE;
    if (strstr(n, "up_proj") || strstr(n, "c_fc")) return TS_ROLE_FFN_UP;
    if (strstr(n, "down_proj") || strstr(n, "mlp.c_proj")) return TS_ROLE_FFN_DOWN;
    return TS_ROLE_VECTOR;
}

/* GPT-2's Conv1D weights as a safetensors file stores them ([in, out]) */
static int is_conv1d(const ts_model_config *cfg, const char *n) {
    return cfg->arch == TS_ARCH_GPT2 && strstr(n, ".weight") &&
           (strstr(n, "c_attn") || strstr(n, "c_proj") || strstr(n, "c_fc"));
}

/* [rows, cols] of any type -> float32 [cols, rows] */
static float *transposed_f32(const ts_tensor_desc *d) {
    int64_t rows = d->shape[0], cols = d->shape[1];
    float *out = malloc((size_t)rows * (size_t)cols * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
    if (!out || !row) {
        free(out);
        free(row);
        return NULL;
    }
    size_t rb = ts_dtype_row_bytes(d->dtype, cols);
    for (int64_t r = 0; r < rows; r++) {
        ts_dequantize_row(d->dtype, (const uint8_t *)d->data + (size_t)r * rb, row, cols);
        for (int64_t c = 0; c < cols; c++) out[(size_t)c * (size_t)rows + (size_t)r] = row[c];
    }
    free(row);
    return out;
}

/* GPTQ works on float rows: a stored bf16/f16/quantized source is widened first. */
static int calibrated(ts_dtype want, const void *src, ts_dtype src_type, int64_t rows, int64_t cols, const ts_hessian *h,
                      const ts_gptq_options *opt, void *out, int threads, ts_error *err) {
    float *f = NULL;
    if (src_type != TS_DTYPE_F32) {
        f = malloc((size_t)rows * (size_t)cols * sizeof *f);
        if (!f) return ts_fail(err, "out of memory widening a [%lld, %lld] matrix", (long long)rows, (long long)cols);
        size_t rb = ts_dtype_row_bytes(src_type, cols);
        for (int64_t r = 0; r < rows; r++)
            ts_dequantize_row(src_type, (const uint8_t *)src + (size_t)r * rb, f + (size_t)r * (size_t)cols, cols);
    }
    int rc = ts_gptq_quantize(want, f ? f : src, rows, cols, h->h, opt, out, threads, err);
    free(f);
    return rc;
}

/* The converted tensors (bufs[i] holds ts[i]'s bytes) tuned against the float table they came from. */
static int tune_in_place(const ts_model_config *cfg, const ts_tensor_table *table, const ts_gguf_model_tensor *ts,
                         void **bufs, int n, ts_convert_calibration *cal, ts_error *err) {
    ts_tune_tensor *tt = calloc((size_t)n, sizeof *tt);
    if (!tt) return ts_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        tt[i].name = ts[i].name;
        tt[i].dtype = ts[i].dtype;
        tt[i].data = bufs[i];
        tt[i].rows = ts[i].ndim == 2 ? ts[i].shape[0] : 1;
        tt[i].cols = ts[i].ndim == 2 ? ts[i].shape[1] : ts[i].shape[0];
        if (ts[i].ndim != 2 && ts[i].ndim != 1) tt[i].name = ""; /* nothing the tuner asks for */
    }
    int rc = ts_tune_quantized(cfg, table, tt, n, cal->tune_ids, cal->tune_n, &cal->tune, &cal->tune_report, err);
    free(tt);
    return rc;
}

int ts_convert_to_gguf(const char *out_path, const ts_model_config *cfg, const ts_tensor_table *table,
                       const ts_vocab_spec *vocab, const ts_quant_scheme *scheme, int threads, const char *name,
                       ts_convert_calibration *cal, ts_quant_budget *budget, ts_error *err) {
    ts_gguf_model_tensor *ts = calloc((size_t)table->count + 1, sizeof *ts);
    void **bufs = calloc((size_t)table->count + 1, sizeof *bufs);
    int n = 0, rc = -1;
    if (!ts || !bufs) {
        ts_fail(err, "out of memory");
        goto done;
    }
    if (budget) ts_quant_budget_init(budget);
    if (threads <= 0) threads = ts_available_cores(); /* "all cores", as quantize-on-load takes it */
    for (int i = 0; i < table->count; i++) {
        const ts_tensor_desc *d = &table->items[i];
        if (d->dtype == TS_DTYPE_COUNT) {
            ts_fail(err, "tensor \"%s\" has type %s, which tessera cannot convert", d->name, d->file_dtype);
            goto done;
        }
        ts_gguf_model_tensor *t = &ts[n];
        t->name = d->name;
        t->ndim = d->ndim;
        memcpy(t->shape, d->shape, sizeof t->shape);
        t->out_in_layout = 1;
        int layer = -1;
        ts_weight_role role = ts_tensor_role(d->name, &layer);
        if (d->ndim != 2 || role == TS_ROLE_VECTOR) {
            /* vectors and odd shapes: float32, as llama.cpp keeps norms */
            int64_t numel = ts_tensor_numel(d);
            float *f = malloc((size_t)(numel ? numel : 1) * sizeof(float));
            if (!f) {
                ts_fail(err, "out of memory");
                goto done;
            }
            if (ts_dtype_get(d->dtype)->block_size == 1 || numel % ts_dtype_get(d->dtype)->block_size == 0)
                ts_dequantize_row(d->dtype, d->data, f, numel);
            bufs[n] = f;
            t->dtype = TS_DTYPE_F32;
            t->data = f;
            t->nbytes = (size_t)numel * sizeof(float);
            if (budget) ts_quant_budget_add(budget, TS_DTYPE_F32, numel);
            n++;
            continue;
        }
        const void *src = d->data;
        ts_dtype src_type = d->dtype;
        float *tr = NULL;
        int64_t rows = d->shape[0], cols = d->shape[1];
        if (is_conv1d(cfg, d->name) && !table->gguf_layout) {
            tr = transposed_f32(d);
            if (!tr) {
                ts_fail(err, "out of memory transposing \"%s\"", d->name);
                goto done;
            }
            src = tr;
            src_type = TS_DTYPE_F32;
            rows = d->shape[1];
            cols = d->shape[0];
            t->shape[0] = rows;
            t->shape[1] = cols;
        }
        ts_dtype want = ts_quant_scheme_dtype(scheme, role, layer, cfg->num_layers, d->dtype, cols);
        size_t bytes = ts_dtype_row_bytes(want, cols) * (size_t)rows;
        void *out = malloc(bytes ? bytes : 1);
        if (!out) {
            free(tr);
            ts_fail(err, "out of memory converting \"%s\" (%zu bytes)", d->name, bytes);
            goto done;
        }
        const ts_hessian *h = cal && want != src_type && ts_gptq_supported(want) ? ts_hessian_find(cal->hessians, d->name) : NULL;
        if (h && role == TS_ROLE_EMBEDDING && !cal->calibrate_tied_embedding) h = NULL;
        if (h && h->cols != cols) {
            free(tr);
            free(out);
            ts_fail(err, "tensor \"%s\": calibration recorded %lld inputs, the tensor has %lld columns", d->name,
                    (long long)h->cols, (long long)cols);
            goto done;
        }
        int q;
        if (h) {
            q = calibrated(want, src, src_type, rows, cols, h, &cal->gptq, out, threads, err);
            if (q == 0) cal->calibrated++;
        } else {
            q = want == src_type ? (memcpy(out, src, bytes), 0)
                                 : ts_quantize_tensor(want, src, src_type, rows, cols, out, NULL, threads, err);
        }
        free(tr);
        bufs[n] = out;
        if (q != 0) {
            ts_error_prefix(err, "tensor \"%s\": ", d->name);
            goto done;
        }
        t->dtype = want;
        t->data = out;
        t->nbytes = bytes;
        if (budget) ts_quant_budget_add(budget, want, rows * cols);
        n++;
    }
    if (cal && cal->tune.steps > 0 && tune_in_place(cfg, table, ts, bufs, n, cal, err) != 0) goto done;
    rc = ts_gguf_write_model(out_path, cfg, ts, n, vocab, name, err);
done:
    for (int i = 0; bufs && i < n + 1 && i <= table->count; i++) free(bufs[i]);
    free(bufs);
    free(ts);
    return rc;
}

static const char *st_dtype(ts_dtype t) {
    switch (t) {
    case TS_DTYPE_F32: return "F32";
    case TS_DTYPE_F16: return "F16";
    case TS_DTYPE_BF16: return "BF16";
    default: return NULL;
    }
}

int ts_write_safetensors(const char *path, const ts_tensor_table *table, ts_error *err) {
    json_t *hdr = json_object();
    json_object_set_new(hdr, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < table->count; i++) {
        const ts_tensor_desc *d = &table->items[i];
        if (!st_dtype(d->dtype)) {
            json_decref(hdr);
            return ts_fail(err, "tensor \"%s\" is %s; safetensors holds float types only (write .gguf instead)", d->name,
                           ts_dtype_get(d->dtype) ? ts_dtype_get(d->dtype)->name : d->file_dtype);
        }
        json_t *shape = json_array();
        for (int k = 0; k < d->ndim; k++) json_array_append_new(shape, json_integer(d->shape[k]));
        json_object_set_new(hdr, d->name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype(d->dtype), "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + d->nbytes)));
        off += d->nbytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    if (!text) return ts_fail(err, "out of memory");
    size_t hlen = strlen(text), pad = (8 - hlen % 8) % 8;
    uint64_t total = hlen + pad;
    uint8_t len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (uint8_t)(total >> (8 * k));
    ts_atomic_file *f = ts_atomic_open(path, err);
    int rc = f ? 0 : -1;
    if (rc == 0) rc = ts_atomic_write(f, len8, 8, err);
    if (rc == 0) rc = ts_atomic_write(f, text, hlen, err);
    if (rc == 0 && pad) rc = ts_atomic_write(f, "        ", pad, err);
    for (int i = 0; rc == 0 && i < table->count; i++) rc = ts_atomic_write(f, table->items[i].data, table->items[i].nbytes, err);
    free(text);
    if (!f) return -1;
    if (rc != 0) {
        ts_atomic_abort(f);
        return -1;
    }
    return ts_atomic_commit(f, err);
}

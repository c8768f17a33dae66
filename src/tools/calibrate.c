/* The model runs on a CPU backend seen through a recording layer: a ts_backend that shares the CPU
 * backend's state (impl) and operations, except that every matrix product first adds its input rows
 * to the Hessian of the weight it multiplies. The forward pass itself is the product's ordinary one,
 * so the statistics are those of the computation that will later run on the quantized weights. */
#include "tools/calibrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "model/model.h"
#include "runtime/sequence.h"

typedef struct recorded {
    const void *host; /* the weight's bytes: the same for a tied embedding and its head */
    int64_t cols, tokens;
    double *h;
} recorded;

typedef struct recorder {
    ts_backend be; /* first member: the backend the model runs on */
    ts_backend_ops ops;
    const ts_backend_ops *cpu_ops;
    recorded *items;
    int count, cap;
    float *tmp; /* one call's sums (upper triangle), cols x cols */
    int64_t tmp_cols;
    int failed;
} recorder;

/* h += x^T x for n rows of x [n, cols]. Four rows per pass over the upper triangle, summed in float
 * within a call (at most a step's rows) and in double across calls. */
static void accumulate(recorded *r, float *tmp, const float *x, int n) {
    int64_t cols = r->cols;
    for (int64_t i = 0; i < cols; i++) memset(tmp + i * cols + i, 0, (size_t)(cols - i) * sizeof *tmp);
    int t = 0;
    for (; t + 4 <= n; t += 4) {
        const float *x0 = x + (size_t)t * cols, *x1 = x0 + cols, *x2 = x1 + cols, *x3 = x2 + cols;
        for (int64_t i = 0; i < cols; i++) {
            float a0 = x0[i], a1 = x1[i], a2 = x2[i], a3 = x3[i];
            float *hi = tmp + i * cols;
            for (int64_t j = i; j < cols; j++) hi[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j];
        }
    }
    for (; t < n; t++) {
        const float *x0 = x + (size_t)t * cols;
        for (int64_t i = 0; i < cols; i++) {
            float *hi = tmp + i * cols;
            for (int64_t j = i; j < cols; j++) hi[j] += x0[i] * x0[j];
        }
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i; j < cols; j++) r->h[i * cols + j] += tmp[i * cols + j];
    r->tokens += n;
}

static recorded *lookup(recorder *rec, const ts_weight *w) {
    for (int i = 0; i < rec->count; i++)
        if (rec->items[i].host == w->host) return &rec->items[i];
    if (rec->count == rec->cap) {
        int cap = rec->cap ? rec->cap * 2 : 64;
        recorded *items = realloc(rec->items, (size_t)cap * sizeof *items);
        if (!items) return NULL;
        rec->items = items;
        rec->cap = cap;
    }
    if (w->cols > rec->tmp_cols) {
        float *tmp = realloc(rec->tmp, (size_t)w->cols * (size_t)w->cols * sizeof *tmp);
        if (!tmp) return NULL;
        rec->tmp = tmp;
        rec->tmp_cols = w->cols;
    }
    double *h = calloc((size_t)w->cols * (size_t)w->cols, sizeof *h);
    if (!h) return NULL;
    rec->items[rec->count] = (recorded){.host = w->host, .cols = w->cols, .h = h};
    return &rec->items[rec->count++];
}

static void recording_matmul(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    recorder *rec = (recorder *)be;
    recorded *r = rec->failed ? NULL : lookup(rec, w);
    if (r) accumulate(r, rec->tmp, x, n);
    else rec->failed = 1;
    rec->cpu_ops->matmul(be, w, x, n, y, bias);
}

static int take(recorder *rec, const ts_weight *w, const char *name, ts_hessian_set *out, ts_error *err) {
    for (int i = 0; i < rec->count; i++) {
        recorded *r = &rec->items[i];
        if (r->host != w->host) continue;
        ts_hessian *h = &out->items[out->count++];
        snprintf(h->name, sizeof h->name, "%s", name);
        h->cols = r->cols;
        h->tokens = r->tokens;
        h->h = r->h;
        r->h = NULL;
        for (int64_t a = 0; a < h->cols; a++) /* mirror the upper triangle */
            for (int64_t b = 0; b < a; b++) h->h[a * h->cols + b] = h->h[b * h->cols + a];
        return 0;
    }
    return ts_fail(err, "calibration: the forward pass never multiplied by \"%s\"", name);
}

static int collect(recorder *rec, const ts_model *m, ts_hessian_set *out, ts_error *err) {
    out->items = calloc((size_t)m->cfg.num_layers * 7 + 1, sizeof *out->items);
    if (!out->items) return ts_fail(err, "out of memory");
    static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const ts_layer *L = &m->layers[l];
        const ts_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7; k++) {
            char name[192];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, names[k]);
            if (take(rec, ws[k], name, out, err) != 0) return -1;
        }
    }
    return take(rec, &m->output, m->cfg.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", out, err);
}

int ts_calibrate_hessians(const char *path, const int32_t *ids, int64_t n, int ctx, int threads, ts_hessian_set *out,
                          ts_error *err) {
    memset(out, 0, sizeof *out);
    if (ctx < 1 || n < 1) return ts_fail(err, "calibration: no tokens to run (%lld tokens, windows of %d)", (long long)n, ctx);
    ts_cpu_options co = {.threads = threads};
    ts_backend *cpu = ts_cpu_backend_create(&co, err);
    if (!cpu) return -1;
    recorder rec = {.be = *cpu, .cpu_ops = cpu->ops};
    rec.ops = *cpu->ops;
    rec.ops.matmul = recording_matmul;
    /* fused products would multiply without passing here: model/fused.c then runs them as matmuls */
    rec.ops.matmul_many = NULL;
    rec.ops.matmul_add_rmsnorm = NULL;
    rec.ops.gate_up_silu = NULL;
    rec.ops.matmul_concat = NULL;
    rec.be.ops = &rec.ops;
    ts_model_options mo;
    ts_model_options_init(&mo);
    mo.quant = (ts_quant_scheme){.kind = TS_QUANT_EXACT, .exact = TS_DTYPE_F32};
    mo.threads = threads;
    ts_model *m = NULL;
    float *logits = NULL;
    ts_kv_cache cache;
    int have_cache = 0, rc = -1;
    if (ts_model_load(path, &rec.be, &mo, &m, err) != 0) goto done;
    ts_arch a = m->cfg.arch;
    if ((a != TS_ARCH_LLAMA && a != TS_ARCH_QWEN2 && a != TS_ARCH_QWEN3) || m->split) {
        ts_fail(err, "calibration: %s is a %s model; calibrated quantization handles dense Llama, Qwen2 and Qwen3 "
                     "models (quantize without --calibration)",
                path, ts_arch_name(a));
        goto done;
    }
    logits = malloc((size_t)ctx * (size_t)m->cfg.vocab_size * sizeof *logits);
    if (!logits) {
        ts_fail(err, "out of memory for %d x %d logits", ctx, m->cfg.vocab_size);
        goto done;
    }
    if (ts_kv_cache_init_for(&cache, m, ctx, 1, err) != 0) goto done;
    have_cache = 1;
    for (int64_t start = 0; start < n; start += ctx) {
        int len = (int)(n - start < ctx ? n - start : ctx);
        ts_kv_seq seq;
        ts_kv_seq_init(&seq);
        /* every row's logits, so that every position's final hidden state passes through the head */
        int frc = ts_seq_forward(m, &cache, &seq, ids + start, len, 1, logits, err);
        ts_kv_seq_release(&cache, &seq);
        if (frc != 0) goto done;
        if (rec.failed) {
            ts_fail(err, "calibration: out of memory for the input statistics");
            goto done;
        }
    }
    rc = collect(&rec, m, out, err);
done:
    if (rc != 0) ts_hessian_set_free(out);
    if (have_cache) ts_kv_cache_destroy(&cache);
    free(logits);
    ts_model_free(m);
    for (int i = 0; i < rec.count; i++) free(rec.items[i].h);
    free(rec.items);
    free(rec.tmp);
    cpu->ops->destroy(cpu);
    return rc;
}

const ts_hessian *ts_hessian_find(const ts_hessian_set *s, const char *name) {
    for (int i = 0; s && i < s->count; i++)
        if (!strcmp(s->items[i].name, name)) return &s->items[i];
    return NULL;
}

void ts_hessian_set_free(ts_hessian_set *s) {
    for (int i = 0; s->items && i < s->count; i++) free(s->items[i].h);
    free(s->items);
    s->items = NULL;
    s->count = 0;
}

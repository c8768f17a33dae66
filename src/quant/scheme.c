#include "quant/scheme.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int ts_quant_scheme_parse(const char *name, ts_quant_scheme *out, ts_error *err) {
    static const struct {
        const char *name;
        ts_quant_kind kind;
    } named[] = {
        {"none", TS_QUANT_NONE}, {"bf16", TS_QUANT_BF16}, {"fp16", TS_QUANT_FP16}, {"f16", TS_QUANT_FP16},
        {"int8", TS_QUANT_INT8}, {"int4", TS_QUANT_INT4},
    };
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        if (!strcasecmp(name, named[i].name)) {
            out->kind = named[i].kind;
            return 0;
        }
    }
    ts_dtype t;
    if (ts_dtype_from_name(name, &t) == 0 && t != TS_DTYPE_Q8_K) {
        out->kind = TS_QUANT_EXACT;
        out->exact = t;
        return 0;
    }
    return ts_fail(err, "unknown quantization \"%s\" (expected int4, int8, fp16, bf16, none, or one of f32, q8_0, q4_0, q4_1, iq4_nl, q4_k, q5_k, q6_k)", name);
}

const char *ts_quant_scheme_name(const ts_quant_scheme *s, char *buf, int cap) {
    static const char *names[] = {"none", "bf16", "fp16", "int8", "int4"};
    if (s->kind == TS_QUANT_EXACT) snprintf(buf, (size_t)cap, "%s", ts_dtype_get(s->exact)->name);
    else snprintf(buf, (size_t)cap, "%s", names[s->kind]);
    return buf;
}

static int fits(ts_dtype t, int64_t cols) { return cols % ts_dtype_get(t)->block_size == 0; }

/* The finest-to-coarsest chain used when a preferred block size does not divide the row. */
static ts_dtype fallback(ts_dtype want, int64_t cols) {
    if (fits(want, cols)) return want;
    switch (want) {
    case TS_DTYPE_Q4_K: return fallback(TS_DTYPE_Q4_1, cols);
    case TS_DTYPE_Q5_K:
    case TS_DTYPE_Q6_K: return fallback(TS_DTYPE_Q8_0, cols);
    case TS_DTYPE_Q4_0:
    case TS_DTYPE_Q4_1:
    case TS_DTYPE_IQ4_NL:
    case TS_DTYPE_Q8_0: return TS_DTYPE_F16;
    default: return TS_DTYPE_F32;
    }
}

ts_dtype ts_quant_scheme_dtype(const ts_quant_scheme *s, ts_weight_role role, int layer, int num_layers,
                               ts_dtype source, int64_t cols) {
    (void)layer;
    (void)num_layers;
    if (role == TS_ROLE_VECTOR) return TS_DTYPE_F32;
    switch (s->kind) {
    case TS_QUANT_NONE: return source;
    case TS_QUANT_BF16: return TS_DTYPE_BF16;
    case TS_QUANT_FP16: return TS_DTYPE_F16;
    case TS_QUANT_INT8: return fallback(TS_DTYPE_Q8_0, cols);
    case TS_QUANT_INT4:
        /* The router and position table are tiny and decide routing/positions: keep them exact. */
        if (role == TS_ROLE_ROUTER || role == TS_ROLE_POSITION) return source == TS_DTYPE_F32 ? TS_DTYPE_F32 : TS_DTYPE_F16;
        /* Everything else at 4.5 bits: Q4_K (scale and minimum per 32, searched) where the row fills its
         * 256-wide super-blocks, else IQ4_NL (same size as Q4_0, non-uniform levels: tiny-code +2.95 %
         * instead of +4.6 % with Q4_0 there; it runs at Q4_0's speed on the CPU, ~10 % slower in GPU
         * decode, and GPU batches of it take the int8 tensor-core kernel, not the faster 16-bit one). Measured on tiny-code, raising the tied embedding to Q8_0
         * or mixing in Q6_K costs far more bits than the perplexity it buys (see tests/quant/README.md). */
        if (fits(TS_DTYPE_Q4_K, cols)) return TS_DTYPE_Q4_K;
        return fallback(TS_DTYPE_IQ4_NL, cols);
    case TS_QUANT_EXACT: return fallback(s->exact, cols);
    }
    return source;
}

void ts_quant_budget_init(ts_quant_budget *b) { memset(b, 0, sizeof *b); }

void ts_quant_budget_add(ts_quant_budget *b, ts_dtype t, int64_t numel) {
    if ((int)t < 0 || t >= TS_DTYPE_COUNT || numel <= 0) return;
    b->bits += ts_dtype_bits_per_weight(t) * (double)numel;
    b->weights += (double)numel;
    b->weights_by_dtype[t] += (double)numel;
}

double ts_quant_budget_bits_per_weight(const ts_quant_budget *b) { return b->weights > 0 ? b->bits / b->weights : 0.0; }

const char *ts_quant_budget_str(const ts_quant_budget *b, char *buf, int cap) {
    int off = snprintf(buf, (size_t)cap, "%.3f bits/weight over %.1fM weights:", ts_quant_budget_bits_per_weight(b),
                       b->weights / 1e6);
    const char *sep = " ";
    for (int t = 0; t < TS_DTYPE_COUNT && off > 0 && off < cap; t++) {
        if (b->weights_by_dtype[t] <= 0) continue;
        off += snprintf(buf + off, (size_t)(cap - off), "%s%s %.1f%%", sep, ts_dtype_get((ts_dtype)t)->name,
                        100.0 * b->weights_by_dtype[t] / b->weights);
        sep = ", ";
    }
    return buf;
}

double ts_quant_scheme_bits_per_weight(const ts_quant_scheme *s, const ts_weight_shape *w, int n, int num_layers,
                                       ts_quant_budget *out) {
    ts_quant_budget b;
    ts_quant_budget_init(&b);
    for (int i = 0; i < n; i++) {
        ts_dtype t = ts_quant_scheme_dtype(s, w[i].role, w[i].layer, num_layers, w[i].source, w[i].cols);
        ts_quant_budget_add(&b, t, w[i].rows * w[i].cols);
    }
    if (out) *out = b;
    return ts_quant_budget_bits_per_weight(&b);
}

#include "quant/scheme.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int parse_kind(const char *name, ts_quant_scheme *out, ts_error *err);

int ts_quant_scheme_parse(const char *name, ts_quant_scheme *out, ts_error *err) {
    const char *colon = strchr(name, ':');
    if (!colon) return parse_kind(name, out, err);
    char kind[32];
    if ((size_t)(colon - name) >= sizeof kind)
        return ts_fail(err, "unknown quantization \"%.*s\" before ':'", (int)(colon - name), name);
    memcpy(kind, name, (size_t)(colon - name));
    kind[colon - name] = 0;
    if (parse_kind(kind, out, err) != 0) return -1;
    if (ts_quant_scheme_add_overrides(out, colon + 1, err) != 0) {
        ts_error_prefix(err, "after \"%s:\": ", kind);
        return -1;
    }
    return 0;
}

static int parse_kind(const char *name, ts_quant_scheme *out, ts_error *err) {
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
    return ts_fail(err, "unknown quantization \"%s\" (expected int4, int8, fp16, bf16, none, or one of f32, q8_0, q4_0, q4_1, iq4_nl, iq4_xs, q4_k, q5_k, q6_k)", name);
}

const char *ts_quant_scheme_name(const ts_quant_scheme *s, char *buf, int cap) {
    static const char *names[] = {"none", "bf16", "fp16", "int8", "int4"};
    if (s->kind == TS_QUANT_EXACT) snprintf(buf, (size_t)cap, "%s", ts_dtype_get(s->exact)->name);
    else snprintf(buf, (size_t)cap, "%s", names[s->kind]);
    return buf;
}

static const struct {
    const char *name;
    ts_weight_role role;
    int in_layers;
} g_tensor_names[] = {
    {"token_embd", TS_ROLE_EMBEDDING, 0}, {"output", TS_ROLE_OUTPUT, 0},      {"attn_q", TS_ROLE_ATTN_Q, 1},
    {"attn_k", TS_ROLE_ATTN_K, 1},        {"attn_v", TS_ROLE_ATTN_V, 1},      {"attn_output", TS_ROLE_ATTN_OUT, 1},
    {"ffn_gate", TS_ROLE_FFN_GATE, 1},    {"ffn_up", TS_ROLE_FFN_UP, 1},      {"ffn_down", TS_ROLE_FFN_DOWN, 1},
    {"ffn_gate_inp", TS_ROLE_ROUTER, 1},
};
#define N_TENSOR_NAMES ((int)(sizeof g_tensor_names / sizeof g_tensor_names[0]))

/* A layer number: digits only, below 100000. */
static int parse_layer(const char *p, const char *end, int *out) {
    if (p == end || end - p > 5) return -1;
    int v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

/* One rule, item [p, end) of the list (number `item` from 1, for messages). */
static int parse_override(const char *p, const char *end, int item, ts_quant_override *o, ts_error *err) {
    const int len = (int)(end - p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (!eq) return ts_fail(err, "item %d \"%.*s\": expected NAME=TYPE, e.g. token_embd=q8_0", item, len, p);
    o->layer_lo = o->layer_hi = -1;
    const char *name = p;
    if (end - p > 4 && !memcmp(p, "blk.", 4)) {
        const char *dot = memchr(p + 4, '.', (size_t)(eq - (p + 4)));
        const char *dash = dot ? memchr(p + 4, '-', (size_t)(dot - (p + 4))) : NULL;
        if (!dot || parse_layer(p + 4, dash ? dash : dot, &o->layer_lo) != 0 ||
            parse_layer(dash ? dash + 1 : p + 4, dot, &o->layer_hi) != 0 || o->layer_hi < o->layer_lo)
            return ts_fail(err, "item %d \"%.*s\": expected blk.N.NAME or blk.FIRST-LAST.NAME with FIRST <= LAST", item,
                           len, p);
        name = dot + 1;
    }
    int found = -1;
    for (int i = 0; i < N_TENSOR_NAMES; i++)
        if ((size_t)(eq - name) == strlen(g_tensor_names[i].name) && !memcmp(name, g_tensor_names[i].name, (size_t)(eq - name)))
            found = i;
    if (found < 0)
        return ts_fail(err, "item %d \"%.*s\": unknown tensor name \"%.*s\" (expected token_embd, output, attn_q, attn_k, "
                            "attn_v, attn_output, ffn_gate, ffn_up, ffn_down or ffn_gate_inp, with blk.N. for one layer)",
                       item, len, p, (int)(eq - name), name);
    if (o->layer_lo >= 0 && !g_tensor_names[found].in_layers)
        return ts_fail(err, "item %d \"%.*s\": %s is not a layer's tensor (drop the blk. prefix)", item, len, p,
                       g_tensor_names[found].name);
    o->role = g_tensor_names[found].role;
    char type[32] = "";
    const ptrdiff_t type_len = end - (eq + 1);
    if (type_len <= 0) return ts_fail(err, "item %d \"%.*s\": expected a storage type after '='", item, len, p);
    if (type_len < (ptrdiff_t)sizeof type) {
        memcpy(type, eq + 1, (size_t)type_len);
        type[type_len] = 0;
    }
    if (type_len >= (ptrdiff_t)sizeof type || ts_dtype_from_name(type, &o->dtype) != 0 || o->dtype == TS_DTYPE_Q8_K)
        return ts_fail(err, "item %d \"%.*s\": unknown type \"%.*s\" (expected f32, f16, bf16, q8_0, q4_0, q4_1, "
                            "iq4_nl, iq4_xs, q4_k, q5_k or q6_k)",
                       item, len, p, (int)type_len, eq + 1);
    return 0;
}

int ts_quant_scheme_add_overrides(ts_quant_scheme *s, const char *spec, ts_error *err) {
    int item = 1;
    for (const char *p = spec;; item++) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (s->n_overrides >= TS_QUANT_MAX_OVERRIDES)
            return ts_fail(err, "more than %d rules", TS_QUANT_MAX_OVERRIDES);
        if (parse_override(p, end, item, &s->overrides[s->n_overrides], err) != 0) return -1;
        s->n_overrides++;
        if (!*end) return 0;
        p = end + 1;
    }
}

int ts_quant_scheme_check_layers(const ts_quant_scheme *s, int num_layers, ts_error *err) {
    for (int i = 0; i < s->n_overrides; i++)
        if (s->overrides[i].layer_hi >= num_layers)
            return ts_fail(err, "rule %d names layer %d, but the model has %d layers (0..%d)", i + 1,
                           s->overrides[i].layer_hi, num_layers, num_layers - 1);
    return 0;
}

static int fits(ts_dtype t, int64_t cols) { return cols % ts_dtype_get(t)->block_size == 0; }

/* The finest-to-coarsest chain used when a preferred block size does not divide the row. */
static ts_dtype fallback(ts_dtype want, int64_t cols) {
    if (fits(want, cols)) return want;
    switch (want) {
    case TS_DTYPE_Q4_K: return fallback(TS_DTYPE_Q4_1, cols);
    case TS_DTYPE_IQ4_XS: return fallback(TS_DTYPE_IQ4_NL, cols);
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
    (void)num_layers;
    if (role == TS_ROLE_VECTOR) return TS_DTYPE_F32;
    for (int i = s->n_overrides - 1; i >= 0; i--) {
        const ts_quant_override *o = &s->overrides[i];
        if (o->role == role && (o->layer_lo < 0 || (layer >= o->layer_lo && layer <= o->layer_hi)))
            return fallback(o->dtype, cols);
    }
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
         * decode). IQ4_XS (`--quant iq4_xs`: IQ4_NL's grid at 4.25 bits where rows fill 256) loses no more on
         * tiny-code and is smaller (on the GPU 4.31 bits against Q4_K's 4.625), but its grid lookups cost
         * single-sequence GPU decode: on an H200 8B 434 tok/s against Q4_K's 587, 0.6B 1540 against 1750
         * (docs/cuda-notes.md v20); int4 keeps the faster type. */
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

/* The table of CPU compute kernels and its run-time selection by instruction set. Each table
 * (generic, avx2, avx_vnni, avx512, amx, neon) provides the same operations; `generic` is plain C
 * and is the reference every other table is tested against. The best table the CPU supports (minus
 * TESSERA_HIDE_FEATURES) is chosen on first use; tests and benchmarks may force one by name.
 *
 * Matrix products take float32 activations for float weights (F32, F16, BF16) and quantized
 * activations (act_quant.h) for quantized weights (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K). Weights come
 * either in their GGUF row layout ("raw") or repacked by pack.h ("packed", x86 tables only). */
#ifndef TS_BACKEND_CPU_KERNELS_H
#define TS_BACKEND_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/dtype.h"

/* One rectangle of y[t][r] = dot(W row r, activation row t) (+ bias[r]) for r in [r0, r1) and
 * t in [0, n_tok). Raw weights: row r starts at w + r * w_stride. Packed weights: 16-row group g
 * starts at w + g * w_stride and r0 is a multiple of 16. */
typedef struct ts_mm_args {
    ts_dtype dtype;
    int64_t cols;
    const uint8_t *w;
    size_t w_stride;
    /* Float rows for float weights. Otherwise act_quant.h rows, readable and initialized up to
     * n_tok rounded up to TS_MM_ACT_ROW_PAD rows (tile kernels load whole tiles of tokens). */
    const uint8_t *act;
    size_t act_stride;  /* bytes between activation rows */
    int n_tok;
    int64_t r0, r1;
    float *y;
    size_t y_stride; /* floats between output rows (tokens) */
    const float *bias;
    void *scratch;   /* per-thread buffer of ts_cpu_mm_scratch_bytes(cols) bytes, 64-byte aligned */
} ts_mm_args;

typedef void (*ts_mm_fn)(const ts_mm_args *a);

/* One task of causal attention: up to TS_ATTN_LANES query rows that share a key/value head (the
 * query heads of a GQA group, for several tokens) against the keys of one sequence. Query i attends
 * to positions 0..q_last[i] and gets out_i = sum_p softmax_p(scale * q_i . k_p) v_p. Key and value
 * rows come by pointer because the KV cache is paged. */
#define TS_ATTN_LANES 16
typedef struct ts_attn_tile {
    int nq;
    const float *q[TS_ATTN_LANES];
    float *out[TS_ATTN_LANES];
    int q_last[TS_ATTN_LANES]; /* each < n_keys */
    int n_keys;
    const float *const *k; /* n_keys rows of head_dim floats */
    const float *const *v;
    int head_dim;
    float scale;
    float *scratch; /* TS_ATTN_SCRATCH_FLOATS(head_dim) floats, 64-byte aligned */
} ts_attn_tile;
#define TS_ATTN_SCRATCH_FLOATS(head_dim) ((size_t)2 * (size_t)(head_dim) * TS_ATTN_LANES)

#define TS_MM_ACT_ROW_PAD 16

typedef struct ts_cpu_kernels {
    const char *name;
    uint32_t required; /* ts_cpu_feature mask the table needs */
    /* Quantizes one row of cols floats (cols a multiple of 32) into the act_quant.h row format. */
    void (*quantize_act)(const float *x, int64_t cols, void *row);
    /* Raw-layout products, indexed by ts_dtype (NULL where the dtype is not a weight type). */
    ts_mm_fn mm[TS_DTYPE_COUNT];
    /* Packed-layout products (pack.h), NULL where this table has none. */
    ts_mm_fn mm_packed[TS_DTYPE_COUNT];
    /* Reduced-precision product of BF16 weights in the pack.h AMX BF16 layout; activations are
     * rounded to bf16 (not exact, opt-in only). NULL when unsupported. */
    ts_mm_fn mm_bf16_reduced;

    /* Vector helpers for attention and elementwise layers. */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float a, const float *x, float *y, int64_t n); /* y += a * x */
    void (*scale_f32)(float a, float *x, int64_t n);               /* x *= a */
    /* x[i] = exp(x[i] - max) in place; returns the sum of the results. */
    float (*softmax_exp_f32)(float *x, int64_t n, float max);
    float (*sum_squares_f32)(const float *x, int64_t n);
    void (*rmsnorm_apply_f32)(const float *x, const float *weight, float inv_rms, float *out, int64_t n);
    void (*silu_mul_f32)(const float *gate, const float *up, float *out, int64_t n);
    /* Attention of a tile of queries (prefill); NULL where the table has none (the backend then
     * goes query by query with dot_f32 / axpy_f32). */
    void (*attention_tile_f32)(const ts_attn_tile *t);
    /* The same for queries of one token (decode: every q_last equal), keys across the vector lanes;
     * NULL where the table has none. */
    void (*attention_decode_f32)(const ts_attn_tile *t);
} ts_cpu_kernels;

/* The table in use: the best usable one unless ts_cpu_kernels_select forced another. */
const ts_cpu_kernels *ts_cpu_kernels_active(void);
/* The best table this CPU (minus hidden features) supports. */
const ts_cpu_kernels *ts_cpu_kernels_best(void);
/* A table by name, or NULL when it is not compiled in or the CPU cannot run it. */
const ts_cpu_kernels *ts_cpu_kernels_by_name(const char *name);
/* Forces the active table ("generic", "avx2", "avx_vnni", "avx512", "amx", "neon"); NULL or "" or
 * "auto" restores the best one. Returns -1 (and changes nothing) when the name is unusable here. */
int ts_cpu_kernels_select(const char *name);
/* All compiled-in tables, usable or not, NULL-terminated (for tests and benchmarks). */
const ts_cpu_kernels *const *ts_cpu_kernels_all(void);
/* Whether the CPU can run the table now (its features are present and not hidden). */
int ts_cpu_kernels_usable(const ts_cpu_kernels *k);

/* Bytes of per-thread scratch the mm functions need for rows of `cols` values. */
size_t ts_cpu_mm_scratch_bytes(int64_t cols);

extern const ts_cpu_kernels ts_cpu_kernels_generic;

#endif

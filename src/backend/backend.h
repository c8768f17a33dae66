/* The one interface every compute device implements. Model forward passes call these operations and
 * never touch activation memory themselves: activations (`float *`) live in memory the backend
 * allocated (host memory for the CPU, device memory for CUDA), so a forward pass runs unchanged on
 * any device. Everything shaped as "[n, dim]" is row-major with the token index outermost.
 *
 * Adding a device means implementing ts_backend_ops; nothing above backend/ changes. */
#ifndef TS_BACKEND_BACKEND_H
#define TS_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "base/draw.h"

#include "base/error.h"
#include "quant/dtype.h"

typedef struct ts_backend ts_backend;

/* Arithmetic precision of a device backend (the CPU computes in float32). */
typedef enum ts_precision {
    TS_PRECISION_FP32 = 0, /* exact: float32 arithmetic everywhere, float32 KV cache */
    TS_PRECISION_BF16,     /* matrix products of prefill and batches in bf16 on tensor cores, f16 KV cache */
    TS_PRECISION_FP16,
} ts_precision;
typedef struct ts_kv_store ts_kv_store;

/* A weight matrix [rows = output features, cols = input features] in one of the ts_dtype layouts.
 * `host` points at the bytes in host memory (usually inside a memory-mapped file); a backend may
 * attach its own copy (device memory, repacked tiles) in `prepared`. */
typedef struct ts_weight {
    ts_dtype dtype;
    int64_t rows;
    int64_t cols;
    const void *host;
    size_t row_bytes;
    void *prepared;            /* backend-private; released by ops->release_weight */
    const ts_backend *prepared_by;
    /* set by prepare_weight where the backend computes from its own copy and never reads host again (the
     * CPU backend's repacked layouts): a loader that converted host may then free it */
    int host_unused;
} ts_weight;

/* One sequence taking part in a forward step. Its tokens are contiguous in the step's token list;
 * token first_token + i sits at position start_pos + i and may attend to positions 0..start_pos + i.
 * blocks is the sequence's KV block table (block ids in the backend's KV store). */
typedef struct ts_seq_view {
    int32_t first_token;
    int32_t n_tokens;
    int32_t start_pos;
    int32_t n_blocks;
    const int32_t *blocks;
} ts_seq_view;

/* A forward step: the tokens of one or more sequences (prefill chunks and decode tokens mixed). */
typedef struct ts_step {
    int32_t n_tokens;
    const int32_t *tokens;    /* host memory */
    const int32_t *positions; /* host memory */
    int32_t n_seqs;
    const ts_seq_view *seqs;
    int32_t n_logits;          /* rows of the step whose logits are wanted */
    const int32_t *logit_rows; /* host memory, indexes into the step's tokens */
    ts_kv_store *host_kv;      /* a split model's KV store for its host layers (NULL otherwise) */
} ts_step;

typedef struct ts_kv_layout {
    int32_t num_layers;
    int32_t num_kv_heads;
    int32_t head_dim;
    int32_t block_tokens; /* tokens per KV block */
    int32_t num_blocks;
} ts_kv_layout;

/* Rotary embedding parameters, precomputed per model: inv_freq has head_dim / 2 entries (host). */
typedef struct ts_rope {
    int32_t head_dim;
    const float *inv_freq;
    float attention_factor; /* multiplies cos and sin (1 for the supported kinds) */
} ts_rope;

/* Heads that one qk_norm_rope call rotates: x [n, heads, head_dim], token rows `stride` floats apart,
 * each head RMS-normalized with norm_weight [head_dim] first (NULL: no norm). */
typedef struct ts_rope_heads {
    float *x;
    int heads, stride;
    const float *norm_weight;
} ts_rope_heads;

/* One mixture-of-experts block: a router [num_experts, hidden] and per-expert gate/up/down. */
typedef struct ts_moe {
    const ts_weight *router;
    const ts_weight *gate; /* arrays of num_experts weights */
    const ts_weight *up;
    const ts_weight *down;
    int32_t num_experts;
    int32_t top_k;
    int32_t norm_topk_prob;
    int32_t hidden;
    int32_t inner;
} ts_moe;

typedef struct ts_backend_stats {
    uint64_t weight_bytes;  /* bytes this backend holds for prepared weights */
    uint64_t buffer_bytes;  /* activations, scratch and KV store */
} ts_backend_stats;

/* Ceilings measured on the device itself, for benchmarks to report against. */
typedef struct ts_roofline {
    double read_gbps;      /* memory bandwidth in GB/s (bytes read, plus bytes written for a copy) */
    double matmul_tflops;  /* dense bf16 matrix rate in TFLOP/s; 0 where not measured */
    char method[160];
} ts_roofline;

typedef struct ts_backend_ops {
    /* Memory for activations, vectors and scratch (zero-filled). */
    void *(*alloc)(ts_backend *be, size_t bytes, ts_error *err);
    void (*free)(ts_backend *be, void *p);
    void (*to_host)(ts_backend *be, void *dst_host, const void *src, size_t bytes);
    void (*from_host)(ts_backend *be, void *dst, const void *src_host, size_t bytes);

    /* Makes a weight usable by this backend (upload, repack); may be a no-op. */
    int (*prepare_weight)(ts_backend *be, ts_weight *w, ts_error *err);
    void (*release_weight)(ts_backend *be, ts_weight *w);

    ts_kv_store *(*kv_create)(ts_backend *be, const ts_kv_layout *layout, ts_error *err);
    void (*kv_destroy)(ts_backend *be, ts_kv_store *kv);

    /* Announces the step the following operations belong to, so that a device backend can upload its
     * tokens, positions and block tables once; the host arrays stay valid until the step ends. NULL on
     * backends that read host memory directly. */
    void (*begin_step)(ts_backend *be, const ts_step *step);

    /* out[i] = table[tokens[i]] (dequantized); tokens in host memory. */
    void (*embed)(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, float *out);
    /* x[i] += table[ids[i]]: learned position embeddings. */
    void (*embed_add)(ts_backend *be, const ts_weight *table, const int32_t *ids, int n, float *x);
    /* y[n, rows] = x[n, cols] . W^T (+ bias[rows] when bias is not NULL). */
    void (*matmul)(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias);
    /* out[r] = x[r] / rms(x[r]) * weight, for `rows` rows of `dim`. */
    void (*rmsnorm)(ts_backend *be, const float *x, const float *weight, int rows, int dim, float eps, float *out);
    void (*layernorm)(ts_backend *be, const float *x, const float *weight, const float *bias, int rows, int dim,
                      float eps, float *out);
    /* Rotates the first rope->head_dim dims of each head (half-split "neox" pairing, as Hugging Face does);
     * x is [n, heads, head_dim] with row stride `stride` floats between tokens. */
    void (*rope)(ts_backend *be, float *x, int n, int heads, int stride, const int32_t *positions,
                 const ts_rope *rope);
    /* Writes k and v of the step's tokens into the KV store at their positions, then computes causal
     * attention of q over each sequence's cached keys. q: [n, n_heads, hd] with row stride q_stride;
     * k, v: [n, n_kv_heads, hd] with row stride kv_stride; out: [n, n_heads * hd] contiguous. */
    void (*attention)(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q, int q_stride,
                      const float *k, const float *v, int kv_stride, int n_heads, float scale, float *out);
    /* out = silu(gate) * up, elementwise over count values; gate/up rows may be strided: gate and up are
     * [rows, inner] with row stride in_stride, out is [rows, inner] contiguous. */
    void (*silu_mul)(ts_backend *be, const float *gate, const float *up, int rows, int inner, int in_stride,
                     float *out);
    void (*gelu)(ts_backend *be, float *x, size_t count, int tanh_approx);
    void (*add)(ts_backend *be, float *x, const float *y, size_t count);
    /* dst[i] = src[rows[i]] for rows in host memory. */
    void (*gather_rows)(ts_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst);
    /* out[n, hidden] = mixture-of-experts FFN of x[n, hidden]. */
    void (*moe)(ts_backend *be, const ts_moe *moe, const float *x, int n, float *out);
    /* Waits for queued work (a no-op on synchronous backends). */
    void (*sync)(ts_backend *be);
    void (*stats)(ts_backend *be, ts_backend_stats *out);
    void (*destroy)(ts_backend *be);
    /* Measures the device's ceilings (takes about a second); may be NULL. */
    void (*roofline)(ts_backend *be, ts_roofline *out);
    /* out_host[r] = index of the largest of x[r][0..dim) (lowest index on ties), for greedy decoding
     * without moving the logits off the device; ends the step like to_host. May be NULL. */
    void (*argmax_rows)(ts_backend *be, const float *x, int rows, int dim, int32_t *out_host);

    /* Fused forms of the operations above, for devices where each launch costs more than the work
     * (decode on a GPU). Each may be NULL: model/fused.c then runs the unfused sequence.
     * ys[i] = x . ws[i]^T (+ biases[i]) for count <= 3 weights that read the same x (q, k, v; gate, up). */
    void (*matmul_many)(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n,
                        float *const *ys, const float *const *biases);
    /* x += y, then out = rmsnorm(x) * weight, for `rows` rows of `dim`. */
    void (*add_rmsnorm)(ts_backend *be, float *x, const float *y, const float *weight, int rows, int dim, float eps,
                        float *out);
    /* The queries' and the keys' per-head RMSNorm and rotary embedding in one pass, in place: for each of
     * q and k, rmsnorm (where norm_weight is set) followed by rope. */
    void (*qk_norm_rope)(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float eps,
                         const int32_t *positions, const ts_rope *rope);
    /* out_host[r] = the token draws[r] picks from logits x[r][0..dim) after its penalties (entries
     * pen_first.. of penalties; see ts_draw_candidates; greedy rows: the largest, lowest index on ties),
     * without moving the logits off the device; x may be overwritten; ends the step like to_host. May be
     * NULL: the host then samples. */
    void (*sample_rows)(ts_backend *be, float *x, int rows, int dim, const ts_draw *draws, const ts_penalty *penalties,
                        int n_penalties, int32_t *out_host);
    /* A block's output projection, the residual add after it and the norm before the next block:
     * x += in . w^T (+ bias), then out = rmsnorm(x) * norm_weight, for n rows of w->rows. proj
     * [n, w->rows] is scratch the backend may use for in . w^T. */
    void (*matmul_add_rmsnorm)(ts_backend *be, const ts_weight *w, const float *in, int n, const float *bias, float *x,
                               const float *norm_weight, float eps, float *out, float *proj);
    /* qk_norm_rope of q and k, then attention of the step (q and k may be left as they came: only out is
     * the result). v [n, k->heads * head_dim] with k's stride. */
    void (*rope_attention)(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const ts_rope_heads *q,
                           const ts_rope_heads *k, const float *v, int n_heads, float scale, float eps,
                           const int32_t *positions, const ts_rope *rope, float *out);
    /* The first half of a SwiGLU block: a = silu(x . gate^T) * (x . up^T), for n rows of gate->rows; b
     * [n, gate->rows] is scratch the backend may use for x . up^T. The caller reads a only as the input of
     * the block's down projection, the next operation, so a backend may leave it in the form that product
     * reads (CUDA at prefill sizes under bf16 writes only a bf16 copy). */
    void (*gate_up_silu)(ts_backend *be, const ts_weight *gate, const ts_weight *up, const float *x, int n, float *a,
                         float *b);
    /* Optional hint, no result: the next products of the step multiply these weights (count <= 3) by n
     * tokens' activations. A backend may prepare them meanwhile: CUDA dequantizes them for cuBLAS on a
     * second stream while the attention runs. NULL where a backend has no use for it. */
    void (*stage_products)(ts_backend *be, int count, const ts_weight *const *ws, int n);
    /* Optional: y [n, sum of ws[k]->rows] = x . [ws[0]; ws[1]; ...]^T (+ biases[k]), as if the weights
     * (count <= 3, one width) were stacked into one matrix: each row of y holds ws[0]'s outputs, then
     * ws[1]'s, and so on. Returns 0 having done nothing where the backend would rather multiply them
     * one by one at n tokens (the caller then uses matmul_many). NULL where it never would. */
    int (*matmul_concat)(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n, float *y,
                         const float *const *biases);
    /* Optional: the head of a greedy step, matmul (y [n, w->rows] = x . w^T) then argmax_rows of y into
     * out_host, where the backend may pick the tokens inside the product. Ends the step like to_host. */
    void (*matmul_argmax)(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, int32_t *out_host);
    /* Optional: embed (x [n, table->cols] = table[tokens]), then out = rmsnorm(x) * weight (the first layer's
     * norm), where the backend can do both in one pass. */
    void (*embed_rmsnorm)(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, const float *weight,
                          float eps, float *x, float *out);
} ts_backend_ops;

struct ts_backend {
    const ts_backend_ops *ops;
    char name[64];        /* "cpu", "cuda" */
    char description[256]; /* "cpu avx512 (16 threads)", "cuda NVIDIA H100 80GB HBM3" */
    void *impl;
};

#endif

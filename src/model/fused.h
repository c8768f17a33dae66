/* The fused operations of ts_backend_ops, called by forward passes: a backend that implements one
 * runs it in one pass; for one that does not, the same result comes from the unfused operations. */
#ifndef TS_MODEL_FUSED_H
#define TS_MODEL_FUSED_H

#include "backend/backend.h"

/* ys[i] = x . ws[i]^T (+ biases[i], where biases and biases[i] are not NULL), i < count <= 3. */
void ts_fused_matmul_many(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n,
                          float *const *ys, const float *const *biases);
/* x += y; out = rmsnorm(x) * weight. */
void ts_fused_add_rmsnorm(ts_backend *be, float *x, const float *y, const float *weight, int rows, int dim, float eps,
                          float *out);
/* x += in . w^T (+ bias); out = rmsnorm(x) * norm_weight; proj is scratch for [n, w->rows]. */
void ts_fused_matmul_add_rmsnorm(ts_backend *be, const ts_weight *w, const float *in, int n, const float *bias,
                                 float *x, const float *norm_weight, float eps, float *out, float *proj);
/* Per-head RMSNorm (skipped where norm_weight is NULL), then RoPE, of q and of k, in place. */
void ts_fused_qk_norm_rope(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float eps,
                           const int32_t *positions, const ts_rope *rope);

/* qk_norm_rope of q and k, then the step's attention into out (q and k may be left unrotated). */
void ts_fused_rope_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const ts_rope_heads *q,
                             const ts_rope_heads *k, const float *v, int n_heads, float scale, float eps,
                             const ts_rope *rope, float *out);

/* a = silu(x . gate^T) * (x . up^T); b is scratch for [n, gate->rows]. */
void ts_fused_gate_up_silu(ts_backend *be, const ts_weight *gate, const ts_weight *up, const float *x, int n, float *a,
                           float *b);

#endif

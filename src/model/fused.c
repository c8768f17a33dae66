#include "model/fused.h"

void ts_fused_matmul_many(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n,
                          float *const *ys, const float *const *biases) {
    if (be->ops->matmul_many) {
        be->ops->matmul_many(be, count, ws, x, n, ys, biases);
        return;
    }
    for (int i = 0; i < count; i++) be->ops->matmul(be, ws[i], x, n, ys[i], biases ? biases[i] : NULL);
}

void ts_fused_add_rmsnorm(ts_backend *be, float *x, const float *y, const float *weight, int rows, int dim, float eps,
                          float *out) {
    if (be->ops->add_rmsnorm) {
        be->ops->add_rmsnorm(be, x, y, weight, rows, dim, eps, out);
        return;
    }
    be->ops->add(be, x, y, (size_t)rows * (size_t)dim);
    be->ops->rmsnorm(be, x, weight, rows, dim, eps, out);
}

void ts_fused_matmul_add_rmsnorm(ts_backend *be, const ts_weight *w, const float *in, int n, const float *bias,
                                 float *x, const float *norm_weight, float eps, float *out, float *proj) {
    if (be->ops->matmul_add_rmsnorm) {
        be->ops->matmul_add_rmsnorm(be, w, in, n, bias, x, norm_weight, eps, out, proj);
        return;
    }
    be->ops->matmul(be, w, in, n, proj, bias);
    ts_fused_add_rmsnorm(be, x, proj, norm_weight, n, (int)w->rows, eps, out);
}

void ts_fused_qk_norm_rope(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float eps,
                           const int32_t *positions, const ts_rope *rope) {
    if (be->ops->qk_norm_rope) {
        be->ops->qk_norm_rope(be, q, k, n, eps, positions, rope);
        return;
    }
    const ts_rope_heads *both[2] = {q, k};
    for (int i = 0; i < 2; i++) {
        const ts_rope_heads *h = both[i];
        /* the per-head norm treats a token's heads as contiguous rows of head_dim */
        if (h->norm_weight && h->stride == h->heads * rope->head_dim)
            be->ops->rmsnorm(be, h->x, h->norm_weight, n * h->heads, rope->head_dim, eps, h->x);
        else if (h->norm_weight)
            for (int t = 0; t < n; t++) {
                float *row = h->x + (size_t)t * (size_t)h->stride;
                be->ops->rmsnorm(be, row, h->norm_weight, h->heads, rope->head_dim, eps, row);
            }
        be->ops->rope(be, h->x, n, h->heads, h->stride, positions, rope);
    }
}

void ts_fused_rope_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const ts_rope_heads *q,
                             const ts_rope_heads *k, const float *v, int n_heads, float scale, float eps,
                             const ts_rope *rope, float *out) {
    if (be->ops->rope_attention) {
        be->ops->rope_attention(be, kv, layer, step, q, k, v, n_heads, scale, eps, step->positions, rope, out);
        return;
    }
    ts_fused_qk_norm_rope(be, q, k, step->n_tokens, eps, step->positions, rope);
    be->ops->attention(be, kv, layer, step, q->x, q->stride, k->x, v, k->stride, n_heads, scale, out);
}

void ts_fused_gate_up_silu(ts_backend *be, const ts_weight *gate, const ts_weight *up, const float *x, int n, float *a,
                           float *b) {
    if (be->ops->gate_up_silu) {
        be->ops->gate_up_silu(be, gate, up, x, n, a, b);
        return;
    }
    const ts_weight *ws[2] = {gate, up};
    float *const ys[2] = {a, b};
    ts_fused_matmul_many(be, 2, ws, x, n, ys, NULL);
    be->ops->silu_mul(be, a, b, n, (int)gate->rows, (int)gate->rows, a);
}

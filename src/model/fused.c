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

void ts_fused_norm_rope(ts_backend *be, float *x, int n, int heads, int stride, const float *norm_weight, float eps,
                        const int32_t *positions, const ts_rope *rope) {
    if (be->ops->norm_rope) {
        be->ops->norm_rope(be, x, n, heads, stride, norm_weight, eps, positions, rope);
        return;
    }
    /* the per-head norm treats x as n * heads contiguous rows of head_dim: q and k are packed so */
    if (norm_weight) be->ops->rmsnorm(be, x, norm_weight, n * heads, rope->head_dim, eps, x);
    be->ops->rope(be, x, n, heads, stride, positions, rope);
}

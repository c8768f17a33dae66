/* Mixture-of-experts on the GPU. The router's logits come back to the host (n x experts floats) where
 * the softmax and top-k choice are made exactly as on the CPU; then, per expert with tokens, its rows
 * are gathered, run through gate/up/down on the GPU, and added back with their routing weights. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/moe_route.h"

__global__ void scatter_add_kernel(float *out, const float *y, const int32_t *rows, const float *weights, int dim) {
    int i = blockIdx.x;
    float w = weights[i];
    float *o = out + (size_t)rows[i] * dim;
    const float *yi = y + (size_t)i * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) o[d] += w * yi[d];
}

__global__ void gather_dev_kernel(const float *src, const int32_t *rows, int dim, float *dst) {
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    float *d = dst + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}

typedef struct {
    float *logits, *xin, *g, *u, *y, *w;
    int32_t *rows;
    size_t cap_tokens;
} moe_scratch;

static int ensure(cuda_impl *im, moe_scratch *s, size_t n, const ts_moe *m) {
    if (n <= s->cap_tokens) return 0;
    cudaFree(s->logits);
    cudaFree(s->xin);
    cudaFree(s->g);
    cudaFree(s->u);
    cudaFree(s->y);
    cudaFree(s->w);
    cudaFree(s->rows);
    memset(s, 0, sizeof *s);
    size_t cap = n * 2;
    if (cuda_check(im, cudaMalloc((void **)&s->logits, cap * m->num_experts * sizeof(float)), "moe scratch") ||
        cuda_check(im, cudaMalloc((void **)&s->xin, cap * m->hidden * sizeof(float)), "moe scratch") ||
        cuda_check(im, cudaMalloc((void **)&s->g, cap * m->inner * sizeof(float)), "moe scratch") ||
        cuda_check(im, cudaMalloc((void **)&s->u, cap * m->inner * sizeof(float)), "moe scratch") ||
        cuda_check(im, cudaMalloc((void **)&s->y, cap * m->hidden * sizeof(float)), "moe scratch") ||
        cuda_check(im, cudaMalloc((void **)&s->w, cap * sizeof(float)), "moe scratch") ||
        cuda_check(im, cudaMalloc((void **)&s->rows, cap * sizeof(int32_t)), "moe scratch"))
        return -1;
    s->cap_tokens = cap;
    return 0;
}

void cuda_moe(ts_backend *be, const ts_moe *m, const float *x, int n, float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    cuda_graph_abort(im, "mixture-of-experts routing goes through the host");
    im->graphs_disabled = 1;
    static __thread moe_scratch s;
    int E = m->num_experts, K = m->top_k, H = m->hidden, I = m->inner;
    if (ensure(im, &s, (size_t)n * (K > 1 ? K : 1), m) != 0) return;
    cuda_matmul_fp32(be, m->router, x, n, s.logits, NULL);
    float *lg = (float *)malloc((size_t)n * E * sizeof(float));
    int32_t *sel = (int32_t *)malloc((size_t)n * K * sizeof(int32_t));
    float *selw = (float *)malloc((size_t)n * K * sizeof(float));
    int32_t *rows = (int32_t *)malloc((size_t)n * K * sizeof(int32_t));
    float *roww = (float *)malloc((size_t)n * K * sizeof(float));
    cudaMemcpyAsync(lg, s.logits, (size_t)n * E * sizeof(float), cudaMemcpyDeviceToHost, im->stream);
    cudaMemsetAsync(out, 0, (size_t)n * H * sizeof(float), im->stream);
    cudaStreamSynchronize(im->stream);
    ts_moe_route(lg, n, E, K, m->norm_topk_prob, sel, selw);
    for (int e = 0; e < E; e++) {
        int cnt = ts_moe_tokens_of(e, sel, selw, n, K, rows, roww);
        if (!cnt) continue;
        cudaMemcpyAsync(s.rows, rows, (size_t)cnt * sizeof(int32_t), cudaMemcpyHostToDevice, im->stream);
        cudaMemcpyAsync(s.w, roww, (size_t)cnt * sizeof(float), cudaMemcpyHostToDevice, im->stream);
        gather_dev_kernel<<<cnt, 128, 0, im->stream>>>(x, s.rows, H, s.xin);
        cuda_matmul(be, &m->gate[e], s.xin, cnt, s.g, NULL);
        cuda_matmul(be, &m->up[e], s.xin, cnt, s.u, NULL);
        cuda_silu_mul(be, s.g, s.u, cnt, I, I, s.g);
        cuda_matmul(be, &m->down[e], s.g, cnt, s.y, NULL);
        scatter_add_kernel<<<cnt, 128, 0, im->stream>>>(out, s.y, s.rows, s.w, H);
        /* the host arrays are reused for the next expert: wait for the copies */
        cudaStreamSynchronize(im->stream);
    }
    CUDA_CHECK_LAUNCH(im, "moe");
    free(lg);
    free(sel);
    free(selw);
    free(rows);
    free(roww);
}

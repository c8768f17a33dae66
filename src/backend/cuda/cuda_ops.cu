/* Element-wise and row-wise operations: norms, rotary embedding, activations, residual adds, row
 * gathers. Reductions accumulate in float32 with a block-wide tree. */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_quant.cuh"

__device__ __forceinline__ float block_sum(float v, float *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < nw; i++) total += shared[i];
    return total;
}

#define NORM_HELD 8

/* Element i of a norm's output row `row` (of `rows`, `dim` wide): the float and the forms the next product
 * reads (cuda_qact: int8 groups, which whole warps store together, and the 16-bit copy). */
__device__ __forceinline__ void store_norm_output(float v, int row, int i, int dim, int rows, float *out, int8_t *xq,
                                                  float2 *xs, int nibbles, void *dense, int dense_kind) {
    out[(size_t)row * dim + i] = v;
    if (xq) qact_store_group(v, ((int64_t)row * dim + i) / 32, threadIdx.x % 32, nibbles, xq, xs);
    if (dense) qact_store_dense(dense, dense_kind, row, i, dim, rows, v);
}

/* out = rmsnorm(x) * w per row; with y, the residual add comes first in the same pass (x += y, written
 * back). Without y, x is only read. With xq, out is also quantized for the next product (cuda_qact):
 * each warp of the last loop holds one group of 32 (dim and the block size are multiples of 32). */
__global__ void rmsnorm_kernel(float *x, const float *y, const float *w, int dim, float eps, float *out, int8_t *xq,
                               float2 *xs, int nibbles, void *dense, int dense_kind) {
    pdl_wait();
    __shared__ float red[32];
    float *xr = x + (size_t)blockIdx.x * dim;
    const float *yr = y ? y + (size_t)blockIdx.x * dim : NULL;
    /* rows of up to NORM_HELD * blockDim elements stay in registers between the two passes */
    float held[NORM_HELD], wv[NORM_HELD];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NORM_HELD; k++) {
        int i = threadIdx.x + k * blockDim.x;
        held[k] = wv[k] = 0.0f;
        if (i < dim) {
            float v = xr[i];
            wv[k] = w[i];
            if (yr) xr[i] = v = v + yr[i];
            held[k] = v;
            ss += v * v;
        }
    }
    for (int i = threadIdx.x + NORM_HELD * blockDim.x; i < dim; i += blockDim.x) {
        float v = xr[i];
        if (yr) xr[i] = v = v + yr[i];
        ss += v * v;
    }
    ss = block_sum(ss, red);
    float inv = rsqrtf(ss / (float)dim + eps);
#pragma unroll
    for (int k = 0; k < NORM_HELD; k++) {
        int i = threadIdx.x + k * blockDim.x;
        if (i >= dim) break; /* whole warps leave together: dim is a multiple of 32 whenever xq is set */
        store_norm_output(wv[k] * (held[k] * inv), blockIdx.x, i, dim, gridDim.x, out, xq, xs, nibbles, dense, dense_kind);
    }
    for (int i = threadIdx.x + NORM_HELD * blockDim.x; i < dim; i += blockDim.x)
        store_norm_output(w[i] * (xr[i] * inv), blockIdx.x, i, dim, gridDim.x, out, xq, xs, nibbles, dense, dense_kind);
}

/* The 16-bit copy of four consecutive outputs, row-major (cuda_qact.dense kinds 1 and 2). */
__device__ __forceinline__ void store_dense4(void *dense, int kind, size_t i, float4 v) {
    if (kind == 1) {
        __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
        *(uint2 *)((__nv_bfloat16 *)dense + i) = make_uint2(*(uint32_t *)&a, *(uint32_t *)&b);
    } else if (kind == 2) {
        __half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
        *(uint2 *)((__half *)dense + i) = make_uint2(*(uint32_t *)&a, *(uint32_t *)&b);
    }
}

/* rmsnorm_kernel for prefill-sized batches (no int8 form; the 16-bit copy, if any, row-major): runs of 4
 * elements a thread, rows of up to WIDE_HELD runs a thread held in registers, 256 threads a row. One
 * element a thread in 1024-thread blocks moved 1.9 TB/s (an 8B prefill of 512 tokens: 18.7 us a norm). */
#define WIDE_THREADS 256
#define WIDE_HELD 4
__device__ __forceinline__ float4 add4(float4 a, float4 b) { return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w); }

__global__ void __launch_bounds__(WIDE_THREADS) rmsnorm_wide_kernel(float *x, const float *y, const float *w, int dim,
                                                                    float eps, float *out, void *dense, int dense_kind) {
    pdl_wait();
    __shared__ float red[32];
    const int n4 = dim / 4;
    const size_t row = (size_t)blockIdx.x * dim;
    float4 *xr = (float4 *)(x + row);
    const float4 *yr = y ? (const float4 *)(y + row) : NULL;
    float4 held[WIDE_HELD];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < WIDE_HELD; k++) {
        const int i = threadIdx.x + k * WIDE_THREADS;
        held[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i < n4) {
            float4 v = xr[i];
            if (yr) xr[i] = v = add4(v, yr[i]);
            held[k] = v;
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
    }
    for (int i = threadIdx.x + WIDE_HELD * WIDE_THREADS; i < n4; i += WIDE_THREADS) {
        float4 v = xr[i];
        if (yr) xr[i] = v = add4(v, yr[i]);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    const float inv = rsqrtf(block_sum(ss, red) / (float)dim + eps);
    const float4 *w4 = (const float4 *)w;
    float4 *o = (float4 *)(out + row);
    auto emit = [&](int i, float4 v) {
        const float4 wv = w4[i];
        const float4 r = make_float4(wv.x * (v.x * inv), wv.y * (v.y * inv), wv.z * (v.z * inv), wv.w * (v.w * inv));
        o[i] = r;
        store_dense4(dense, dense_kind, row + 4 * (size_t)i, r);
    };
#pragma unroll
    for (int k = 0; k < WIDE_HELD; k++) {
        const int i = threadIdx.x + k * WIDE_THREADS;
        if (i < n4) emit(i, held[k]);
    }
    for (int i = threadIdx.x + WIDE_HELD * WIDE_THREADS; i < n4; i += WIDE_THREADS) emit(i, xr[i]);
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__global__ void layernorm_kernel(const float *x, const float *w, const float *b, int dim, float eps, float *out) {
    pdl_wait();
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *o = out + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i];
    float mean = block_sum(s, red) / (float)dim;
    float v = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) v += (xr[i] - mean) * (xr[i] - mean);
    float inv = rsqrtf(block_sum(v, red) / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = (xr[i] - mean) * inv * w[i] + b[i];
}

static int norm_threads(int dim) {
    int t = 32;
    while (t < dim && t < 1024) t *= 2;
    return t;
}

/* out = rmsnorm(x (+= y where y is set)) * w, with the forms of out the next product reads. */
static void launch_rmsnorm(cuda_impl *im, float *x, const float *y, const float *w, int rows, int dim, float eps,
                           float *out) {
    if (rows <= 0) return;
    cuda_qact q = cuda_qact_begin(im, out, rows, dim);
    if (rows > DP4A_MAX_TOKENS && dim % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(w) && aligned16(out))
        cuda_launch(im, rmsnorm_wide_kernel, dim3(rows), dim3(WIDE_THREADS), 0, x, y, w, dim, eps, out, q.dense, q.dense_kind);
    else
        cuda_launch(im, rmsnorm_kernel, dim3(rows), dim3(norm_threads(dim)), 0, x, y, w, dim, eps, out, q.xq, q.xs,
                    q.nibbles, q.dense, q.dense_kind);
    CUDA_CHECK_LAUNCH(im, y ? "add_rmsnorm" : "rmsnorm");
}

void cuda_rmsnorm(ts_backend *be, const float *x, const float *w, int rows, int dim, float eps, float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    launch_rmsnorm(im, (float *)x, NULL, w, rows, dim, eps, out); /* without y, x is only read */
}

void cuda_add_rmsnorm(ts_backend *be, float *x, const float *y, const float *w, int rows, int dim, float eps,
                      float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    launch_rmsnorm(im, x, y, w, rows, dim, eps, out);
}

/* embed_kernel and rmsnorm_kernel in one launch, a block a token: its threads decode the row's groups of 32
 * into shared memory (a group a thread, 33 floats apart so that the stores do not share banks) and x, then
 * normalize the row from there in rmsnorm_kernel's order (the same sums, the same outputs). */
template <int DT>
__global__ void embed_rmsnorm_kernel(cuda_weight w, const int32_t *ids, const float *nw, float eps, float *x,
                                     float *out, int8_t *xq, float2 *xs, int nibbles, void *dense, int dense_kind) {
    extern __shared__ float row[]; /* [dim / 32][33] */
    __shared__ float red[32];
    pdl_wait();
    const int t = blockIdx.x, dim = (int)w.cols, groups = dim / 32;
    const int64_t id = ids[t];
    const bool known = id >= 0 && id < w.rows; /* the host checked the step's tokens; zeros otherwise */
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
        float v[32];
        if (known) decode_group<DT>(w, id, g, v);
#pragma unroll
        for (int k = 0; k < 32; k++) row[g * 33 + k] = known ? v[k] : 0.0f;
    }
    __syncthreads();
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = row[(i / 32) * 33 + i % 32];
        x[(size_t)t * dim + i] = v;
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss, red) / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) /* whole warps: dim is a multiple of 32 */
        store_norm_output(nw[i] * (row[(i / 32) * 33 + i % 32] * inv), t, i, dim, gridDim.x, out, xq, xs, nibbles, dense,
                          dense_kind);
}

/* The first layer's norm in the embedding's launch, for decode-sized steps (rmsnorm_wide_kernel serves
 * prefill) and rows that fit in shared memory; otherwise the two operations. H200, 0.6B decode: the norm
 * was a launch of 3.8 us marginal after the 2.6 us embedding. */
void cuda_embed_rmsnorm(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, const float *weight,
                        float eps, float *x, float *out) {
    cuda_impl *im = cuda_of(be);
    const cuda_weight *cw = (const cuda_weight *)table->prepared;
    const int dim = (int)table->cols;
    const size_t smem = (size_t)(dim / 32) * 33 * sizeof(float);
    if (im->embed_norm_off || !cw || !cw->gpu_supported || dim % 32 != 0 || smem > 48 * 1024 || n > DP4A_MAX_TOKENS) {
        cuda_embed(be, table, tokens, n, x);
        cuda_rmsnorm(be, x, weight, n, dim, eps, out);
        return;
    }
    CUDA_SKIP_IF_REPLAYING(im);
    if (n <= 0) return;
    const int32_t *dids = cuda_step_array(be, tokens, n);
    if (!dids) return;
    cuda_qact q = cuda_qact_begin(im, out, n, dim);
#define EN(DT)                                                                                                  \
    cuda_launch(im, embed_rmsnorm_kernel<DT>, dim3(n), dim3(norm_threads(dim)), smem, *cw, dids, weight, eps, x, out, \
                q.xq, q.xs, q.nibbles, q.dense, q.dense_kind)
    TS_CUDA_DISPATCH_DTYPE(cw->dtype, EN)
#undef EN
    CUDA_CHECK_LAUNCH(im, "embedding and norm");
}

void cuda_settle_norm(cuda_impl *im) {
    cuda_norm_due d = im->norm_due;
    im->norm_due.out = NULL;
    launch_rmsnorm(im, d.x, NULL, d.weight, d.rows, d.dim, d.eps, d.out);
}

void cuda_layernorm(ts_backend *be, const float *x, const float *w, const float *b, int rows, int dim, float eps,
                    float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    if (rows <= 0) return;
    cuda_launch(im, layernorm_kernel, dim3(rows), dim3(norm_threads(dim)), 0, x, w, b, dim, eps, out);
    CUDA_CHECK_LAUNCH(im, "layernorm");
}

/* The model's RoPE frequencies on the device (uploaded when they change). */
const float *cuda_device_inv_freq(cuda_impl *im, const ts_rope *rope) {
    int half = rope->head_dim / 2;
    if (im->inv_freq_host != rope->inv_freq || im->inv_freq_n != half) {
        if (im->inv_freq) cudaFree(im->inv_freq);
        im->inv_freq = NULL;
        im->inv_freq_host = NULL;
        if (cuda_check(im, cudaMalloc((void **)&im->inv_freq, (size_t)half * sizeof(float)), "rope frequencies")) return NULL;
        cudaMemcpy(im->inv_freq, rope->inv_freq, (size_t)half * sizeof(float), cudaMemcpyHostToDevice);
        im->inv_freq_host = rope->inv_freq;
        im->inv_freq_n = half;
    }
    return im->inv_freq;
}

/* Rotary embedding of the heads of q and then k (one launch for both: each launch of a decode step costs
 * more than this work), each head preceded by Qwen3's per-head RMSNorm where its weight is given; one
 * warp per (token, head): the head's sum of squares is reduced across the warp before any lane writes.
 * cos/sin in float32 of the float32 angle. */
#define NORM_ROPE_WARPS 4
__global__ void norm_rope_kernel(ts_rope_heads q, ts_rope_heads k, float eps, const int32_t *positions,
                                 const float *inv_freq, int head_dim, float factor) {
    pdl_wait();
    int t = blockIdx.x, h = blockIdx.y * NORM_ROPE_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (h >= q.heads + k.heads) return;
    const int is_q = h < q.heads;
    if (!is_q) h -= q.heads;
    float *v = (is_q ? q.x : k.x) + (size_t)t * (is_q ? q.stride : k.stride) + (size_t)h * head_dim;
    const float *w = is_q ? q.norm_weight : k.norm_weight;
    int half = head_dim / 2;
    float inv = 1.0f;
    if (w) {
        float ss = 0.0f;
        for (int i = lane; i < head_dim; i += 32) ss += v[i] * v[i];
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        inv = rsqrtf(ss / (float)head_dim + eps);
    }
    float pos = (float)positions[t];
    for (int i = lane; i < half; i += 32) {
        float a = v[i], b = v[i + half];
        if (w) {
            a = w[i] * (a * inv);
            b = w[i + half] * (b * inv);
        }
        float s, c;
        sincosf(pos * inv_freq[i], &s, &c);
        c *= factor;
        s *= factor;
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
    }
}

static void launch_norm_rope(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float eps,
                             const int32_t *positions, const ts_rope *rope) {
    cuda_impl *im = cuda_of(be);
    if (n <= 0) return;
    const float *inv_freq = cuda_device_inv_freq(im, rope);
    const int32_t *dpos = cuda_step_array(be, positions, n);
    if (!dpos || !inv_freq) return;
    ts_rope_heads none = {NULL, 0, 0, NULL};
    const ts_rope_heads kk = k ? *k : none;
    dim3 grid((unsigned)n, (unsigned)((q->heads + kk.heads + NORM_ROPE_WARPS - 1) / NORM_ROPE_WARPS));
    cuda_launch(im, norm_rope_kernel, grid, dim3(32 * NORM_ROPE_WARPS), 0, *q, kk, eps, dpos, inv_freq, rope->head_dim,
                rope->attention_factor);
    CUDA_CHECK_LAUNCH(im, "norm_rope");
}

void cuda_qk_norm_rope(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float eps,
                       const int32_t *positions, const ts_rope *rope) {
    CUDA_SKIP_IF_REPLAYING(cuda_of(be));
    launch_norm_rope(be, q, k, n, eps, positions, rope);
}

void cuda_rope(ts_backend *be, float *x, int n, int heads, int stride, const int32_t *positions, const ts_rope *rope) {
    CUDA_SKIP_IF_REPLAYING(cuda_of(be));
    const ts_rope_heads h = {x, heads, stride, NULL};
    launch_norm_rope(be, &h, NULL, n, 0.0f, positions, rope);
}

/* With xq, out is also quantized for the next product: inner is then a multiple of 32, so every warp
 * holds one whole group of one row. */
__global__ void silu_mul_kernel(const float *gate, const float *up, int rows, int inner, int in_stride, float *out,
                                int8_t *xq, float2 *xs, int nibbles, void *dense, int dense_kind) {
    pdl_wait();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * inner) return;
    size_t r = i / inner, c = i % inner;
    float g = gate[r * in_stride + c];
    float v = g / (1.0f + expf(-g)) * up[r * in_stride + c];
    out[i] = v;
    if (xq) qact_store_group(v, (int64_t)(i / 32), threadIdx.x % 32, nibbles, xq, xs);
    if (dense) qact_store_dense(dense, dense_kind, (int64_t)r, (int64_t)c, inner, rows, v);
}

/* silu_mul_kernel for prefill-sized batches: block (row, run of 1024), runs of 4 a thread, no 64-bit
 * division (one element a thread and a 64-bit division for its row: 2.4 TB/s, 36 us a layer of an 8B
 * prefill of 512 tokens). */
__global__ void silu_mul_wide_kernel(const float *gate, const float *up, int inner, int in_stride, float *out, void *dense,
                                     int dense_kind) {
    pdl_wait();
    const int c = (int)(blockIdx.y * WIDE_THREADS + threadIdx.x) * 4;
    if (c >= inner) return;
    const size_t r = blockIdx.x;
    const float4 g = *(const float4 *)(gate + r * in_stride + c), u = *(const float4 *)(up + r * in_stride + c);
    const float4 v = make_float4(g.x / (1.0f + expf(-g.x)) * u.x, g.y / (1.0f + expf(-g.y)) * u.y,
                                 g.z / (1.0f + expf(-g.z)) * u.z, g.w / (1.0f + expf(-g.w)) * u.w);
    *(float4 *)(out + r * inner + c) = v;
    store_dense4(dense, dense_kind, r * inner + c, v);
}

/* silu(gate) * up of bf16 products, 8 elements a thread (16-byte loads and stores), into the bf16 copy the
 * down projection reads; into the floats of out only where that copy had no room. */
__global__ void silu_mul_bf16_kernel(const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int inner, __nv_bfloat16 *dense,
                                     float *out) {
    pdl_wait();
    const int c = (int)(blockIdx.y * WIDE_THREADS + threadIdx.x) * 8;
    if (c >= inner) return;
    const size_t i = (size_t)blockIdx.x * inner + c;
    const uint4 gw = *(const uint4 *)(gate + i), uw = *(const uint4 *)(up + i);
    const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)&gw, *u2 = (const __nv_bfloat162 *)&uw;
    float v[8];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 g = __bfloat1622float2(g2[k]), u = __bfloat1622float2(u2[k]);
        v[2 * k] = g.x / (1.0f + expf(-g.x)) * u.x;
        v[2 * k + 1] = g.y / (1.0f + expf(-g.y)) * u.y;
    }
    if (dense) {
        uint4 packed;
        __nv_bfloat162 *p2 = (__nv_bfloat162 *)&packed;
#pragma unroll
        for (int k = 0; k < 4; k++) p2[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        *(uint4 *)(dense + i) = packed;
    } else {
        *(float4 *)(out + i) = make_float4(v[0], v[1], v[2], v[3]);
        *(float4 *)(out + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
    }
}

void cuda_silu_mul_bf16(cuda_impl *im, const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int rows, int inner, float *out) {
    if (rows <= 0) return;
    cuda_qact q = cuda_qact_begin(im, out, rows, inner);
    __nv_bfloat16 *dense = q.dense && q.dense_kind == 1 ? (__nv_bfloat16 *)q.dense : NULL;
    if (!dense) im->qact.src = NULL;
    dim3 grid((unsigned)rows, (unsigned)((inner + 8 * WIDE_THREADS - 1) / (8 * WIDE_THREADS)));
    cuda_launch(im, silu_mul_bf16_kernel, grid, dim3(WIDE_THREADS), 0, gate, up, inner, dense, out);
    if (dense) im->qact.src_unwritten = 1;
    CUDA_CHECK_LAUNCH(im, "silu_mul");
}

__global__ void widen_bf16_kernel(const __nv_bfloat16 *in, float *out, size_t n) {
    pdl_wait();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat162float(in[i]);
}

void cuda_qact_materialize(cuda_impl *im, const float *x) {
    cuda_qact *q = &im->qact;
    size_t n = (size_t)q->rows * (size_t)q->cols;
    /* any float of the unwritten rows, not only their start */
    if (!x || !q->src || !q->src_unwritten || x < q->src || x >= q->src + n) return;
    cuda_launch(im, widen_bf16_kernel, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, (const __nv_bfloat16 *)q->dense,
                (float *)q->src, n);
    q->src_unwritten = 0;
    CUDA_CHECK_LAUNCH(im, "materialize");
}

void cuda_silu_mul(ts_backend *be, const float *gate, const float *up, int rows, int inner, int in_stride, float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    size_t total = (size_t)rows * inner;
    if (!total) return;
    cuda_qact q = cuda_qact_begin(im, out, rows, inner);
    if (rows > DP4A_MAX_TOKENS && inner % 4 == 0 && in_stride % 4 == 0 && aligned16(gate) && aligned16(up) &&
        aligned16(out)) {
        dim3 grid((unsigned)rows, (unsigned)((inner + 4 * WIDE_THREADS - 1) / (4 * WIDE_THREADS)));
        cuda_launch(im, silu_mul_wide_kernel, grid, dim3(WIDE_THREADS), 0, gate, up, inner, in_stride, out, q.dense,
                    q.dense_kind);
        CUDA_CHECK_LAUNCH(im, "silu_mul");
        return;
    }
    cuda_launch(im, silu_mul_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256), 0, gate, up, rows, inner,
                in_stride, out, q.xq, q.xs, q.nibbles, q.dense, q.dense_kind);
    CUDA_CHECK_LAUNCH(im, "silu_mul");
}

__global__ void gelu_kernel(float *x, size_t count, int tanh_approx) {
    pdl_wait();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float v = x[i];
    if (tanh_approx) x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    else x[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
}

void cuda_gelu(ts_backend *be, float *x, size_t count, int tanh_approx) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    if (!count) return;
    cuda_launch(im, gelu_kernel, dim3((unsigned)((count + 255) / 256)), dim3(256), 0, x, count, tanh_approx);
    CUDA_CHECK_LAUNCH(im, "gelu");
}

__global__ void add_kernel(float *x, const float *y, size_t count) {
    pdl_wait();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] += y[i];
}

void cuda_add(ts_backend *be, float *x, const float *y, size_t count) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    if (!count) return;
    cuda_launch(im, add_kernel, dim3((unsigned)((count + 255) / 256)), dim3(256), 0, x, y, count);
    CUDA_CHECK_LAUNCH(im, "add");
}

__global__ void gather_kernel(const float *src, const int32_t *rows, int dim, float *dst) {
    pdl_wait();
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    float *d = dst + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}

void cuda_gather_rows(ts_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    if (n <= 0) return;
    const int32_t *drows = cuda_step_array(be, rows, n);
    if (!drows) return;
    cuda_launch(im, gather_kernel, dim3(n), dim3(256), 0, src, drows, dim, dst);
    CUDA_CHECK_LAUNCH(im, "gather");
}

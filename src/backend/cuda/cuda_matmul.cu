/* Weights on the GPU and the products with them. Decode (up to GEMV_MAX_TOKENS tokens, DP4A_MAX_TOKENS
 * with int8 activations and integer dot products for 4- and 8-bit weights under bf16/fp16) is a
 * matrix-vector kernel that streams each weight row once per pass, decoding it in registers; larger
 * batches and prefill dequantize row panels into scratch (float32, or bf16/fp16 under reduced precision) and call
 * cuBLAS. Weights whose layout has no kernel run on the CPU fallback, logged once. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_batch16.cuh"
#include "backend/cuda/cuda_quant.cuh"
#include "quant/float16.h"
#include "quant/k_scales.h"

#define GEMV_WARPS 4
/* Bytes of dequantized weight per cuBLAS call. Panels small enough to stay in L2 (16-64 MB) measured
 * slower on an 8B prefill (narrower products): one panel holds a whole matrix of that size. */
#define GEMM_PANEL_BYTES (256u << 20)

static const char *dtype_name(ts_dtype t) {
    static const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k", "q8_k", "iq4_nl", "iq4_xs"};
    return (int)t >= 0 && (int)t < (int)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

static int gpu_has_kernel(ts_dtype t) {
    switch (t) {
    case TS_DTYPE_F32: case TS_DTYPE_F16: case TS_DTYPE_BF16: case TS_DTYPE_Q8_0: case TS_DTYPE_Q4_0:
    case TS_DTYPE_Q4_1: case TS_DTYPE_Q4_K: case TS_DTYPE_Q5_K: case TS_DTYPE_Q6_K: case TS_DTYPE_IQ4_NL:
    case TS_DTYPE_IQ4_XS: return 1;
    default: return 0;
    }
}

static int device_alloc(cuda_impl *im, void **p, size_t bytes, int mapped) {
    if (!mapped) return cuda_check(im, cudaMalloc(p, bytes ? bytes : 16), "weight allocation");
    void *host = NULL;
    if (cuda_check(im, cudaHostAlloc(&host, bytes ? bytes : 16, cudaHostAllocMapped | cudaHostAllocWriteCombined),
                   "mapped host allocation"))
        return 1;
    return cuda_check(im, cudaHostGetDevicePointer(p, host, 0), "mapped host pointer");
}

static void device_free(void *p, int mapped) {
    if (!p) return;
    if (!mapped) {
        cudaFree(p);
        return;
    }
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) == cudaSuccess && a.hostPointer) cudaFreeHost(a.hostPointer);
}

static int upload(cuda_impl *im, void *dst, const void *src, size_t bytes) {
    return cuda_check(im, cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "weight upload");
}

/* 16 GGUF-order nibbles (byte j: elements j and j + 16) -> natural order (byte k: elements 2k, 2k + 1). */
static void natural_nibbles(const uint8_t *src, uint8_t *dst) {
    uint8_t e[32];
    for (int j = 0; j < 16; j++) {
        e[j] = src[j] & 0x0f;
        e[j + 16] = src[j] >> 4;
    }
    for (int k = 0; k < 16; k++) dst[k] = (uint8_t)(e[2 * k] | (e[2 * k + 1] << 4));
}

/* Q4_0/IQ4_NL/Q4_1/Q8_0/Q4_K/IQ4_XS blocks -> quants [rows][...] in natural order and scales (and minimums)
 * [rows][cols / 32], Q4_1's fp16 scale and minimum side by side. The super-block types keep their fp16
 * factors once per 8 groups beside each group's codes for them (Q4_K: __half2 (d, dmin) and the (scale,
 * minimum) byte pair of a group; IQ4_XS: __half d and an int8 sub-scale), so that group_scale and
 * group_scale_min form exactly the float products the CPU decodes with and the GPU reads about as many
 * bytes as the file holds (Q4_K 4.625 bits a weight, IQ4_XS 4.31). */
static int repack_blocks(cuda_impl *im, const ts_weight *w, cuda_weight *cw) {
    int64_t groups = w->cols / 32;
    size_t qbytes_per_group = w->dtype == TS_DTYPE_Q8_0 ? 32 : 16;
    cw->dtype = w->dtype;
    cw->q_row_bytes = (size_t)groups * qbytes_per_group;
    const int xs = cw->dtype == TS_DTYPE_IQ4_XS, qk = cw->dtype == TS_DTYPE_Q4_K;
    /* scale elements a row and their size (see group_scale_min) */
    int64_t sgroups = xs || qk ? groups / 8 : groups;
    size_t selem = qk || cw->dtype == TS_DTYPE_Q4_1 ? 2 * sizeof(uint16_t) : sizeof(uint16_t);
    size_t qbytes = cw->q_row_bytes * (size_t)w->rows, sbytes = (size_t)sgroups * (size_t)w->rows * selem;
    size_t cbytes = (size_t)groups * (size_t)w->rows * (qk ? 2 : xs ? 1 : 0); /* per-group codes */
    int mapped = cw->host_mapped;
    if (device_alloc(im, (void **)&cw->q, qbytes, mapped) || device_alloc(im, (void **)&cw->scale, sbytes, mapped))
        return -1;
    if (xs && device_alloc(im, (void **)&cw->sub_scale, cbytes, mapped)) return -1;
    if (qk && device_alloc(im, (void **)&cw->k_codes, cbytes, mapped)) return -1;
    cw->bytes = qbytes + sbytes + cbytes;
    /* repack a panel of rows at a time on the host, then copy */
    int64_t panel = (int64_t)(64u << 20) / (int64_t)(cw->q_row_bytes + 8 * groups) + 1;
    uint8_t *hq = (uint8_t *)malloc(cw->q_row_bytes * (size_t)panel);
    uint16_t *hs16 = (uint16_t *)malloc((size_t)groups * panel * 2 * sizeof(uint16_t)); /* at most two halves a group */
    uint8_t *hc = (uint8_t *)malloc((size_t)groups * panel * 2); /* the per-group codes */
    int rc = (hq && hs16 && hc) ? 0 : -1;
    for (int64_t r0 = 0; rc == 0 && r0 < w->rows; r0 += panel) {
        int64_t nr = w->rows - r0 < panel ? w->rows - r0 : panel;
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *src = (const uint8_t *)w->host + (size_t)(r0 + r) * w->row_bytes;
            for (int64_t g = 0; g < groups; g++) {
                uint8_t *dq = hq + (size_t)r * cw->q_row_bytes + (size_t)g * qbytes_per_group;
                size_t si = (size_t)r * groups + g;
                if (w->dtype == TS_DTYPE_Q8_0) {
                    const ts_block_q8_0 *b = (const ts_block_q8_0 *)src + g;
                    hs16[si] = b->d;
                    memcpy(dq, b->qs, 32);
                } else if (w->dtype == TS_DTYPE_Q4_0 || w->dtype == TS_DTYPE_IQ4_NL) { /* same block layout */
                    const ts_block_q4_0 *b = (const ts_block_q4_0 *)src + g;
                    hs16[si] = b->d;
                    natural_nibbles(b->qs, dq);
                } else if (xs) { /* group g is sub-block g % 8 of block g / 8 */
                    const ts_block_iq4_xs *b = (const ts_block_iq4_xs *)src + g / 8;
                    if (g % 8 == 0) hs16[(size_t)r * sgroups + g / 8] = b->d;
                    hc[si] = (uint8_t)(int8_t)ts_iq4_xs_sub_scale(b, (int)(g % 8));
                    natural_nibbles(b->qs + 16 * (g % 8), dq);
                } else if (w->dtype == TS_DTYPE_Q4_1) {
                    const ts_block_q4_1 *b = (const ts_block_q4_1 *)src + g;
                    hs16[2 * si] = b->d;
                    hs16[2 * si + 1] = b->m;
                    natural_nibbles(b->qs, dq);
                } else { /* Q4_K: group g is sub-block g % 8 of block g / 8 */
                    const ts_block_q4_k *b = (const ts_block_q4_k *)src + g / 8;
                    int sub = (int)(g % 8), sc, mn;
                    ts_k_scale_min(sub, b->scales, &sc, &mn);
                    if (sub == 0) {
                        hs16[2 * ((size_t)r * sgroups + g / 8)] = b->d;
                        hs16[2 * ((size_t)r * sgroups + g / 8) + 1] = b->dmin;
                    }
                    hc[2 * si] = (uint8_t)sc;
                    hc[2 * si + 1] = (uint8_t)mn;
                    const uint8_t *q = b->qs + 32 * (sub / 2);
                    int shift = (sub & 1) * 4;
                    for (int k = 0; k < 16; k++)
                        dq[k] = (uint8_t)(((q[2 * k] >> shift) & 0x0f) | (((q[2 * k + 1] >> shift) & 0x0f) << 4));
                }
            }
        }
        size_t per_row = cbytes / (size_t)w->rows;
        rc = upload(im, cw->q + (size_t)r0 * cw->q_row_bytes, hq, cw->q_row_bytes * (size_t)nr) ||
             upload(im, (uint8_t *)cw->scale + (size_t)r0 * sgroups * selem, hs16, (size_t)sgroups * nr * selem) ||
             (xs && upload(im, cw->sub_scale + (size_t)r0 * per_row, hc, per_row * (size_t)nr)) ||
             (qk && upload(im, cw->k_codes + (size_t)r0 * per_row, hc, per_row * (size_t)nr))
                 ? -1 : 0;
    }
    free(hq);
    free(hs16);
    free(hc);
    return rc;
}

static void make_dense_copy(cuda_impl *im, const ts_weight *w, cuda_weight *cw);

int cuda_prepare_weight(ts_backend *be, ts_weight *w, ts_error *err) {
    cuda_impl *im = cuda_of(be);
    cuda_weight *cw = (cuda_weight *)calloc(1, sizeof *cw);
    cw->dtype = w->dtype;
    cw->rows = w->rows;
    cw->cols = w->cols;
    cw->host_mapped = im->opt.unified_memory;
    cw->gpu_supported = gpu_has_kernel(w->dtype) && w->cols % 32 == 0;
    w->prepared = cw;
    w->prepared_by = be;
    if (!cw->gpu_supported) {
        CUDA_WARN_ONCE(im, 0, "cuda: weights of type %s (or rows of %lld values) have no GPU kernel; those products run on the CPU",
                       dtype_name(w->dtype), (long long)w->cols);
        if (!im->opt.cpu_fallback) {
            snprintf(err->message, sizeof err->message,
                     "cuda: no GPU kernel for %s weights and the CPU fallback is disabled", dtype_name(w->dtype));
            return -1;
        }
        return 0;
    }
    int rc;
    if (w->dtype == TS_DTYPE_Q4_0 || w->dtype == TS_DTYPE_Q4_1 || w->dtype == TS_DTYPE_Q8_0 || w->dtype == TS_DTYPE_Q4_K ||
        grid4(w->dtype)) {
        rc = repack_blocks(im, w, cw);
    } else {
        cw->q_row_bytes = w->row_bytes;
        cw->bytes = w->row_bytes * (size_t)w->rows;
        rc = device_alloc(im, (void **)&cw->q, cw->bytes, cw->host_mapped) || upload(im, cw->q, w->host, cw->bytes) ? -1 : 0;
    }
    if (rc != 0) {
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        snprintf(err->message, sizeof err->message, "cuda: cannot place a %lld x %lld %s weight (%zu bytes; %zu of %zu free): %s",
                 (long long)w->rows, (long long)w->cols, dtype_name(w->dtype), cw->bytes, free_b, total,
                 im->last_error);
        return -1;
    }
    im->weight_bytes += cw->bytes;
    make_dense_copy(im, w, cw);
    return 0;
}

void cuda_release_weight(ts_backend *be, ts_weight *w) {
    cuda_impl *im = cuda_of(be);
    cuda_weight *cw = (cuda_weight *)w->prepared;
    if (!cw) return;
    cuda_settle_due(im);
    cuda_stage_forget(im, cw);
    im->mem_generation++;
    device_free(cw->q, cw->host_mapped);
    device_free(cw->scale, cw->host_mapped);
    device_free(cw->sub_scale, cw->host_mapped);
    device_free(cw->k_codes, cw->host_mapped);
    if (cw->dense) cudaFree(cw->dense);
    im->weight_bytes -= cw->bytes;
    free(cw);
    w->prepared = NULL;
    w->prepared_by = NULL;
}

/* The end of every matrix-vector kernel: each token's per-lane partial sums of one row are added across
 * the warp and lane 0 writes y[t][row] (+ bias). Returns the last token's output (in every lane). */
template <int N>
__device__ __forceinline__ float store_row_sums(const float (&acc)[N], int lane, float *y, int64_t rows, int64_t row,
                                                const float *bias) {
    float out = 0.0f;
#pragma unroll
    for (int t = 0; t < N; t++) {
        float s = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        out = s + (bias ? bias[row] : 0.0f);
        if (lane == 0) y[(size_t)t * rows + row] = out;
    }
    return out;
}

/* One warp per row; each lane takes groups of 32 weights lane, lane + 32, ...; N tokens at once. */
template <int DT, int N>
__global__ void gemv_kernel(cuda_weight w, const float *__restrict__ x, float *__restrict__ y,
                            const float *__restrict__ bias) {
    pdl_wait();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t row = (int64_t)blockIdx.x * GEMV_WARPS + warp;
    if (row >= w.rows) return;
    int groups = (int)(w.cols / 32);
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = 0.0f;
    for (int g = lane; g < groups; g += 32) {
        float v[32];
        decode_group<DT>(w, row, g, v);
#pragma unroll
        for (int t = 0; t < N; t++) {
            const float4 *xp = (const float4 *)(x + (size_t)t * w.cols) + g * 8;
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float4 xv = __ldg(xp + j);
                s = fmaf(v[4 * j], xv.x, s);
                s = fmaf(v[4 * j + 1], xv.y, s);
                s = fmaf(v[4 * j + 2], xv.z, s);
                s = fmaf(v[4 * j + 3], xv.w, s);
            }
            acc[t] += s;
        }
    }
    store_row_sums<N>(acc, lane, y, w.rows, row, bias);
}

/* Matrix-vector products for the layouts that dominate decode (floats, Q8_0, Q4_0, Q4_1, and Q4_K and the
 * grid types as repacked). A warp walks its row in chunks of 256 elements; lane l takes elements 4l..4l+3
 * and 128+4l..128+4l+3 of each chunk, so both the weight loads and the activation loads of a warp are
 * contiguous (coalesced) and activations are read once per chunk. UNROLL chunks are loaded before
 * any is used, to keep enough bytes in flight. */
template <int DT>
struct quad_pair {
    /* raw bytes of two runs of 4 elements */
    uint32_t a[DT == TS_DTYPE_F32 ? 4 : DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16 ? 2 : 1];
    uint32_t b[DT == TS_DTYPE_F32 ? 4 : DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16 ? 2 : 1];
    float da, db, ma, mb;
};

/* The scale and offset of the group holding element e of a row (unpack_quad's d and m). */
template <int DT>
__device__ __forceinline__ void quad_scale(const cuda_weight &w, int64_t row_index, int64_t e, float *d, float *m) {
    if (DT == TS_DTYPE_Q8_0 || DT == TS_DTYPE_Q4_0 || has_min(DT) || grid4(DT)) {
        size_t si = (size_t)row_index * (w.cols / 32) + e / 32;
        group_scale_min<DT>(w, si, d, m);
    }
}

template <int DT>
__device__ __forceinline__ void load_quad(const cuda_weight &w, const uint8_t *row, int64_t row_index, int64_t e,
                                          uint32_t *out, float *d, float *m) {
    if (DT == TS_DTYPE_F32) {
        uint4 u = __ldg((const uint4 *)(row + e * 4));
        out[0] = u.x; out[1] = u.y; out[2] = u.z; out[3] = u.w;
    } else if (DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16) {
        uint2 u = __ldg((const uint2 *)(row + e * 2));
        out[0] = u.x; out[1] = u.y;
    } else if (DT == TS_DTYPE_Q8_0) {
        out[0] = __ldg((const uint32_t *)(row + e));
    } else {
        out[0] = __ldg((const uint16_t *)(row + e / 2));
    }
    quad_scale<DT>(w, row_index, e, d, m);
}

template <int DT>
__device__ __forceinline__ void unpack_quad(const uint32_t *r, float d, float m, float v[4]) {
    if (DT == TS_DTYPE_F32) {
        for (int i = 0; i < 4; i++) v[i] = __uint_as_float(r[i]);
    } else if (DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16) {
        for (int i = 0; i < 2; i++) {
            uint16_t lo = (uint16_t)(r[i] & 0xffff), hi = (uint16_t)(r[i] >> 16);
            v[2 * i] = DT == TS_DTYPE_F16 ? h2f(lo) : bf2f(lo);
            v[2 * i + 1] = DT == TS_DTYPE_F16 ? h2f(hi) : bf2f(hi);
        }
    } else if (DT == TS_DTYPE_Q8_0) {
        for (int i = 0; i < 4; i++) v[i] = d * (float)(int8_t)(r[0] >> (8 * i));
    } else if (grid4(DT)) {
        uint32_t q = iq4_nl_levels4(r[0] & 0xffff);
        for (int i = 0; i < 4; i++) v[i] = d * (float)(int8_t)(q >> (8 * i));
    } else {
        for (int i = 0; i < 4; i++) v[i] = d * (float)((r[0] >> (4 * i)) & 0x0f) + m;
    }
}

template <int DT, int N, int UNROLL>
__global__ void gemv_coalesced_kernel(cuda_weight w, const float *__restrict__ x, float *__restrict__ y,
                                      const float *__restrict__ bias) {
    pdl_wait();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t row = (int64_t)blockIdx.x * GEMV_WARPS + warp;
    if (row >= w.rows) return;
    const uint8_t *rowp = w.q + (size_t)row * w.q_row_bytes;
    const int64_t cols = w.cols;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = 0.0f;
    for (int64_t c0 = 0; c0 < cols; c0 += 256 * UNROLL) {
        quad_pair<DT> r[UNROLL];
        bool va[UNROLL], vb[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int64_t ea = c0 + 256 * u + 4 * lane, eb = ea + 128;
            va[u] = ea < cols;
            vb[u] = eb < cols;
            if (va[u]) load_quad<DT>(w, rowp, row, ea, r[u].a, &r[u].da, &r[u].ma);
            if (vb[u]) load_quad<DT>(w, rowp, row, eb, r[u].b, &r[u].db, &r[u].mb);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int64_t ea = c0 + 256 * u + 4 * lane, eb = ea + 128;
            float wa[4], wb[4];
            if (va[u]) unpack_quad<DT>(r[u].a, r[u].da, r[u].ma, wa);
            if (vb[u]) unpack_quad<DT>(r[u].b, r[u].db, r[u].mb, wb);
#pragma unroll
            for (int t = 0; t < N; t++) {
                const float *xt = x + (size_t)t * cols;
                if (va[u]) {
                    float4 xa = __ldg((const float4 *)(xt + ea));
                    acc[t] = fmaf(wa[0], xa.x, fmaf(wa[1], xa.y, fmaf(wa[2], xa.z, fmaf(wa[3], xa.w, acc[t]))));
                }
                if (vb[u]) {
                    float4 xb = __ldg((const float4 *)(xt + eb));
                    acc[t] = fmaf(wb[0], xb.x, fmaf(wb[1], xb.y, fmaf(wb[2], xb.z, fmaf(wb[3], xb.w, acc[t]))));
                }
            }
        }
    }
    store_row_sums<N>(acc, lane, y, w.rows, row, bias);
}

/* Integer matrix-vector products for the 4- and 8-bit layouts under bf16/fp16 precision. The float
 * kernel above spends about five instructions per weight (unpack, scale, convert, multiply-add) and
 * reads four bytes of activation per weight, which limits it to a fraction of the memory bandwidth.
 * Here the activations are first quantized to int8 per group of 32 (scale dx and the sum of the
 * quantized values), so one __dp4a multiplies four weights by four activations:
 *   sum_i (d q_i + m) x_i  ~=  dx * (d * sum_i q_i xq_i  +  m * sum_i xq_i)
 * Both terms use the quantized activations so that their rounding errors are weighted by the real
 * weights d q_i + m (centred near 0), not by the raw 4-bit codes 0..15.
 * For 4-bit layouts each run of 8 activations is stored even elements first (0 2 4 6 1 3 5 7), the
 * order in which a word's low and high nibbles hold the weights, so no weight shuffling is needed. */
/* One warp per group of 32 activations: xq [n][cols] int8, xs [n][groups] {scale, sum of xq}. */
__global__ void quantize_act_kernel(const float *__restrict__ x, int64_t total_groups, int nibbles,
                                    int8_t *__restrict__ xq, float2 *__restrict__ xs) {
    pdl_wait();
    int64_t gi = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (gi >= total_groups) return;
    /* rows are whole groups: element gi*32+lane of the [n][cols] array */
    qact_store_group(x[gi * 32 + threadIdx.x % 32], gi, threadIdx.x % 32, nibbles, xq, xs);
}

static size_t qact_bytes(int rows, int64_t cols, size_t *xs_offset) {
    size_t qbytes = (size_t)rows * (size_t)cols;
    *xs_offset = (qbytes + 15) & ~(size_t)15;
    return *xs_offset + (size_t)rows * (size_t)(cols / 32) * sizeof(float2) + 16;
}

cuda_qact cuda_qact_begin(cuda_impl *im, const float *src, int rows, int64_t cols) {
    cuda_qact q;
    memset(&q, 0, sizeof q);
    im->qact.src = NULL;
    if (im->opt.precision == TS_PRECISION_FP32 || rows < 1) return q;
    const int bf16 = im->opt.precision == TS_PRECISION_BF16;
    if (rows > DP4A_MAX_TOKENS) {
        void *buf = cuda_scratch(im, &im->act_scratch, &im->act_scratch_bytes, (size_t)rows * (size_t)cols * 2);
        if (!buf) return q;
        return im->qact = cuda_qact_dense(src, rows, cols, buf, bf16 ? 1 : 2);
    }
    if (im->float_gemv || cols % 32) return q;
    /* the fragment order only where the batch kernel can read it; the int8 form otherwise */
    if (im->qact_frag && cuda_batch16_takes(im, rows, cols)) {
        void *buf = cuda_scratch(im, &im->batch16_act, &im->batch16_act_bytes, (size_t)(rows + 7) / 8 * 8 * (size_t)cols * 2);
        if (!buf) return q;
        return im->qact = cuda_qact_dense(src, rows, cols, buf, bf16 ? 3 : 4);
    }
    size_t xs_off, need = qact_bytes(rows, cols, &xs_off);
    uint8_t *buf = (uint8_t *)cuda_scratch(im, &im->xq_scratch, &im->xq_scratch_bytes, need);
    if (!buf) return q;
    q.src = src;
    q.rows = rows;
    q.cols = cols;
    q.nibbles = im->qact_nibbles;
    q.xq = (int8_t *)buf;
    q.xs = (float2 *)(buf + xs_off);
    q.buffer = buf;
    im->qact = q;
    return q;
}

/* Up to three weights that read the same activations (q, k, v; gate, up) in one launch: blocks
 * [first_block[k], first_block[k + 1]) work on weight k. */
struct dp4a_targets {
    cuda_weight w[MAX_PRODUCT_TARGETS];
    float *y[MAX_PRODUCT_TARGETS];
    const float *bias[MAX_PRODUCT_TARGETS];
    unsigned first_block[MAX_PRODUCT_TARGETS + 1];
    argmax_sink pick; /* gemv_dp4a_pick_kernel: the greedy head's choice */
};

/* How a launch of the integer kernel takes part in a fused output projection + residual add + RMSNorm
 * (cuda_norm_due): as its producer (res_x set) or as the product that reads the norm's output (in_partials
 * set). Tokens are those of the launch's pass. */
struct norm_link {
    float *res_x;             /* producer: the residual [N][rows], updated in place */
    const float *res_weight;  /* the next norm's weight [rows] */
    float *res_partials;      /* [N][rows / 32] sums of squares of the updated residual */
    int8_t *res_xq;           /* [N][rows] int8 groups of weight * residual */
    float2 *res_xs;
    int res_nibbles;
    const float *in_partials; /* reader: [N][cols / 32], as written by the producer */
    const float *in_x, *in_weight; /* the residual and the norm's weight, to write the float output */
    float *in_out;            /* [N][cols] */
    float eps;
};

/* 1/rms of token t of a due norm, the same in every warp (the partials are added in one fixed order). */
__device__ __forceinline__ float due_inv_rms(const norm_link &nl, int t, int64_t dim, int lane) {
    int parts = (int)(dim / 32);
    float s = 0.0f;
    for (int p = lane; p < parts; p += 32) s += __ldg(nl.in_partials + (size_t)t * parts + p);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return rsqrtf(s / (float)dim + nl.eps);
}

/* The float output of a due norm, out = weight * (x / rms), which other operations read: each block of
 * the reading product writes its share (rms as in due_inv_rms; elements of a warp share a token). */
template <int N>
__device__ __forceinline__ void finish_due_norm(const norm_link &nl, int64_t dim, int lane) {
    size_t total = (size_t)N * (size_t)dim, warps = (size_t)gridDim.x * (blockDim.x / 32);
    size_t warp = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    for (size_t base = warp * 32; base < total; base += warps * 32) {
        int t = (int)(base / (size_t)dim); /* dim is a multiple of 32: a run of 32 is one token's */
        float inv = due_inv_rms(nl, t, dim, lane);
        size_t i = base + lane;
        nl.in_out[i] = __ldg(nl.in_weight + i % (size_t)dim) * (nl.in_x[i] * inv);
    }
}

/* acc[r][t] = the lane's part of the product of row row0 + r of w with token t: R rows a warp share each
 * activation load. */
__host__ __device__ constexpr int dp4a_groups_per_lane(int dt) { return dt == TS_DTYPE_Q8_0 ? 2 : 4; }

template <int DT, int N, int R, int U, typename AfterWait>
__device__ __forceinline__ void dp4a_accumulate(const cuda_weight &w, int64_t row0, int lane,
                                                const int8_t *__restrict__ xq, const float2 *__restrict__ xs,
                                                float (&acc)[R][N], AfterWait after_wait) {
    constexpr int WB = DT == TS_DTYPE_Q8_0 ? 32 : 16; /* quant bytes per group */
    const int groups = (int)(w.cols / 32);
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) acc[r][t] = 0.0f;
    /* U groups per lane per pass (dp4a_groups_per_lane), all loads issued before any arithmetic: a warp
     * needs several hundred bytes in flight to cover memory latency on the narrower matrices, whose grids
     * fill one wave */
    int4 wq[U][R][WB / 16];
    float d[U][R], m[U][R];
    auto load_pass = [&](int g0) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            int g = min(g0 + 32 * u, groups - 1); /* lanes past the end reload the last group, unused */
#pragma unroll
            for (int r = 0; r < R; r++) {
                int64_t row = row0 + r < w.rows ? row0 + r : w.rows - 1; /* a partial last warp recomputes a row */
                const int4 *p = (const int4 *)(w.q + (size_t)row * w.q_row_bytes + (size_t)g * WB);
#pragma unroll
                for (int v = 0; v < WB / 16; v++) wq[u][r][v] = load_weight(p + v);
                size_t si = (size_t)row * groups + g;
                group_scale_min<DT>(w, si, &d[u][r], &m[u][r]);
            }
        }
    };
    /* The weights do not depend on the kernels before this one: under programmatic dependent launch the
     * first pass's loads (whole rows of 4096 4-bit weights) are in flight while the previous kernel
     * finishes, instead of starting after it. Only the activations wait. */
    load_pass(lane); /* clamped to the last group where the row is shorter */
    pdl_wait();
    after_wait(); /* the caller's loads of what earlier kernels wrote, beside the first activations' */
    /* unrolled: a row of several passes (the 8B's 12288-wide down projection has three) gets its next
     * pass's loads scheduled among this one's products. H200, same run, decode tok/s after 128-token
     * prompts: 8B batch 1 594.9, 599.9 -> 607.3, 611.4; 0.6B (one pass a row) 1815, 1818 -> 1837, 1824 */
#pragma unroll 2
    for (int g0 = lane; g0 < groups; g0 += 32 * U) {
        if (g0 != lane) load_pass(g0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            int g = g0 + 32 * u;
            if (g >= groups) break;
#pragma unroll
            for (int t = 0; t < N; t++) {
                const int4 *xp = (const int4 *)(xq + (size_t)t * w.cols + (size_t)g * 32);
                int4 xa = __ldg(xp), xb = __ldg(xp + 1);
                float2 sx = __ldg(xs + (size_t)t * groups + g);
                int xw[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int s = 0;
                    if (DT == TS_DTYPE_Q8_0) {
                        const int4 lo = wq[u][r][0], hi = wq[u][r][(WB / 16) - 1];
                        int ww[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
                        for (int e = 0; e < 8; e++) s = __dp4a(ww[e], xw[e], s);
                    } else {
                        int ww[4] = {wq[u][r][0].x, wq[u][r][0].y, wq[u][r][0].z, wq[u][r][0].w};
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            uint32_t lo = ww[e] & 0x0f0f0f0f, hi = (ww[e] >> 4) & 0x0f0f0f0f;
                            if (grid4(DT)) { /* indices -> signed grid levels, no offset */
                                lo = iq4_nl_levels4_bytes(lo);
                                hi = iq4_nl_levels4_bytes(hi);
                            }
                            s = __dp4a((int)lo, xw[2 * e], s);
                            s = __dp4a((int)hi, xw[2 * e + 1], s);
                        }
                    }
                    acc[r][t] = fmaf(sx.x, fmaf(d[u][r], (float)s, m[u][r] * sx.y), acc[r][t]);
                }
            }
        }
    }
}

/* A block's part of the greedy choice of a one-token head product (argmax_sink): its best key into a
 * slot, then, in the block that finishes last, the slots folded into pick.best and every slot and the
 * count zeroed. All threads of the block call it, with their warp's best key (0: none). */
__device__ __forceinline__ void argmax_fold(const argmax_sink &pick, unsigned long long best, unsigned n_blocks) {
    __shared__ unsigned long long warp_best[GEMV_WARPS];
    __shared__ unsigned prior;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_best[warp] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long b = 0;
        for (int w = 0; w < GEMV_WARPS; w++) b = warp_best[w] > b ? warp_best[w] : b;
        if (b) atomicMax(pick.slots + blockIdx.x % ARGMAX_SLOTS, b);
        __threadfence(); /* the slot's key before the count */
        prior = atomicAdd(pick.count, 1u);
    }
    __syncthreads();
    if (prior != n_blocks - 1) return;
    __threadfence();
    unsigned long long b = 0;
    for (int i = threadIdx.x; i < ARGMAX_SLOTS; i += blockDim.x) {
        const unsigned long long v = __ldcg(pick.slots + i);
        b = v > b ? v : b;
        pick.slots[i] = 0;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long v = __shfl_xor_sync(0xffffffffu, b, o);
        b = v > b ? v : b;
    }
    __syncthreads(); /* warp_best is read above by thread 0 only, before the count */
    if (lane == 0) warp_best[warp] = b;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 0; w < GEMV_WARPS; w++) b = warp_best[w] > b ? warp_best[w] : b;
        *pick.best = b;
        *pick.count = 0;
    }
}

/* R rows per warp, U groups a lane per pass; GEMV_WARPS warps a block. DUE: x is a due norm's output (nl's
 * in_ fields): the rows scale by each token's 1/rms and the launch writes the norm's float output. */
template <int DT, int N, int R, int U, bool DUE>
__global__ void gemv_dp4a_kernel(dp4a_targets tg, const int8_t *__restrict__ xq, const float2 *__restrict__ xs,
                                 norm_link nl) {
    int k = blockIdx.x >= tg.first_block[1] ? (blockIdx.x >= tg.first_block[2] ? 2 : 1) : 0;
    const cuda_weight &w = k == 0 ? tg.w[0] : k == 1 ? tg.w[1] : tg.w[2];
    float *__restrict__ y = k == 0 ? tg.y[0] : k == 1 ? tg.y[1] : tg.y[2];
    const float *__restrict__ bias = k == 0 ? tg.bias[0] : k == 1 ? tg.bias[1] : tg.bias[2];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t row0 = ((int64_t)(blockIdx.x - tg.first_block[k]) * GEMV_WARPS + warp) * R;
    if (row0 >= w.rows) {
        pdl_wait();
        if (DUE) finish_due_norm<N>(nl, w.cols, lane);
        return;
    }
    float acc[R][N];
    /* (the due norm's loads stay after the main loop: issued beside the activations, into registers, shared
     * memory or by cp.async, they took this kernel from 72 to 96-112 registers and cost q/k/v and gate/up
     * more than the trip to L2 they save; docs/cuda-notes.md v18) */
    dp4a_accumulate<DT, N, R, U>(w, row0, lane, xq, xs, acc, [] {});
    if (DUE) {
        /* the activations were weight * residual: every row scales by the token's 1/rms */
#pragma unroll
        for (int t = 0; t < N; t++) {
            float inv = due_inv_rms(nl, t, w.cols, lane);
#pragma unroll
            for (int r = 0; r < R; r++) acc[r][t] *= inv;
        }
        finish_due_norm<N>(nl, w.cols, lane);
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        if (row0 + r < w.rows) store_row_sums<N>(acc[r], lane, y, w.rows, row0 + r, bias);
}

/* gemv_dp4a_kernel for one token of one weight (a greedy step's head) that also picks the largest output
 * (argmax_fold into tg.pick). Its blocks stride over the weight's tiles of GEMV_WARPS * R rows (tiles:
 * tg.first_block[1]), one resident wave of them: with a block a tile, the 8B head's 18992 blocks each
 * waited on the count's atomic before leaving (H200, 8B decode: 602-607 tok/s with the argmax launch
 * apart, 592-595 with a block a tile). */
template <int DT, int R, int U, bool DUE>
__global__ void gemv_dp4a_pick_kernel(dp4a_targets tg, const int8_t *__restrict__ xq, const float2 *__restrict__ xs,
                                      norm_link nl) {
    const cuda_weight &w = tg.w[0];
    float *__restrict__ y = tg.y[0];
    const float *__restrict__ bias = tg.bias[0];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    unsigned long long best = 0;
    float inv = 1.0f;
    bool have_inv = false;
    for (unsigned tile = blockIdx.x; tile < tg.first_block[1]; tile += gridDim.x) {
        const int64_t row0 = ((int64_t)tile * GEMV_WARPS + warp) * R;
        if (row0 >= w.rows) break;
        float acc[R][1];
        dp4a_accumulate<DT, 1, R, U>(w, row0, lane, xq, xs, acc, [] {});
        if (DUE && !have_inv) { /* after the wait in dp4a_accumulate: the producer wrote the partials */
            inv = due_inv_rms(nl, 0, w.cols, lane);
            have_inv = true;
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (row0 + r >= w.rows) break;
            if (DUE) acc[r][0] *= inv;
            /* the stored logit is the one compared */
            const unsigned long long key = argmax_key(store_row_sums<1>(acc[r], lane, y, w.rows, row0 + r, bias),
                                                      (int)(row0 + r));
            best = key > best ? key : best;
        }
    }
    pdl_wait(); /* a warp without rows has not waited yet */
    if (DUE) finish_due_norm<1>(nl, w.cols, lane);
    argmax_fold(tg.pick, best, gridDim.x);
}

/* The producer of a fused output projection (see norm_link): a block of 16 warps holds 32 rows (R = 2),
 * one int8 group of the residual, and adds them to it. */
template <int DT, int N>
__global__ void __launch_bounds__(512) gemv_dp4a_residual_norm_kernel(cuda_weight w, const float *__restrict__ bias,
                                                                      const int8_t *__restrict__ xq,
                                                                      const float2 *__restrict__ xs, norm_link nl) {
    constexpr int R = 2;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t groups_out = w.rows / 32, row = (int64_t)blockIdx.x * 32 + lane;
    /* what the finish reads, loaded early: the norm's weight and the bias before the wait (weights), token
     * `warp`'s residual right after it (earlier kernels write it), beside the first activations. Loaded
     * after the main loop, the residual was one more trip to L2 at the end of every output projection:
     * H100, 8B o_proj 5.65 -> 3.66 us a layer, down 12.8 -> 11.5 (marginal times, scripts/gpu/ktrace.c). */
    const float wn = __ldg(nl.res_weight + row), b = bias ? bias[row] : 0.0f;
    float x_own = 0.0f;
    float acc[R][N];
    dp4a_accumulate<DT, N, R, dp4a_groups_per_lane(DT)>(w, ((int64_t)blockIdx.x * 16 + warp) * R, lane, xq, xs, acc, [&] {
        if (warp < N) x_own = nl.res_x[(size_t)warp * w.rows + row];
    });
    __shared__ float sums[32][N]; /* [row within the block][token] */
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) sums[warp * R + r][t] = v;
        }
    __syncthreads();
    /* warp t: token t's residual add, its sum of squares, int8 groups of weight * residual */
    for (int t = warp; t < N; t += 16) {
        size_t i = (size_t)t * w.rows + row;
        float v = (t == warp ? x_own : nl.res_x[i]) + (sums[lane][t] + b);
        nl.res_x[i] = v;
        float ss = v * v;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) nl.res_partials[(size_t)t * groups_out + blockIdx.x] = ss;
        qact_store_group(wn * v, (int64_t)t * groups_out + blockIdx.x, lane, nl.res_nibbles,
                         nl.res_xq, nl.res_xs);
    }
}

/* Batched decode of 4-bit weights on the tensor cores: mma.sync m16n8k32 multiplies a 16-row tile of
 * one group of 32 weights (codes 0..15 as int8) by the int8 activations of 8 tokens, exactly; the
 * group's scale (and minimum) then apply in float as in the dp4a kernel, so a block's column of tokens
 * costs the same memory traffic whether it holds 1 or 32 tokens. Block = 16 rows; its MMA_WARPS warps
 * take every MMA_WARPS-th group (split-K) and add their partial tiles in shared memory at the end.
 * K slots of the fragments: slot 4t + i is the low nibble of byte 4t + i of the group (element 8t + 2i),
 * slot 16 + 4t + i its high nibble (element 8t + 2i + 1), which is where the nibble-ordered activations
 * keep those elements (qact_store_group): one 32-bit load each for weights and activations. */
#define MMA_WARPS 8
/* Four groups' loads in flight per warp with one block per SM (all registers it wants, no spills)
 * measured 10 % faster at 32 tokens than two groups with two blocks per SM (ncu: L1-bound, and the
 * 128-register cap of two blocks spilled); 4-warp blocks were slower. */
#define MMA_UNROLL 4
#define MMA_MT 2 /* 16-row tiles per block: each activation fragment serves MMA_MT * 16 rows */
#define MMA_MIN_BLOCKS 1
#define MMA_ROWS (16 * MMA_MT)

__device__ __forceinline__ void mma_s8_16x8x32(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%11,%12,%13};"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0), "r"(0), "r"(0), "r"(0));
#else
    c[0] = c[1] = c[2] = c[3] = 0; /* never launched below sm_80 */
#endif
}

template <int DT, int NT>
__global__ void __launch_bounds__(32 * MMA_WARPS, MMA_MIN_BLOCKS)
    gemm_mma_q4_kernel(dp4a_targets tg, const int8_t *__restrict__ xq, const float2 *__restrict__ xs, int n_tok) {
    pdl_wait();
    __shared__ float red[MMA_WARPS][MMA_ROWS][NT * 8];
    int k = blockIdx.x >= tg.first_block[1] ? (blockIdx.x >= tg.first_block[2] ? 2 : 1) : 0;
    const cuda_weight &w = k == 0 ? tg.w[0] : k == 1 ? tg.w[1] : tg.w[2];
    float *__restrict__ y = k == 0 ? tg.y[0] : k == 1 ? tg.y[1] : tg.y[2];
    const float *__restrict__ bias = k == 0 ? tg.bias[0] : k == 1 ? tg.bias[1] : tg.bias[2];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const int64_t row0 = (int64_t)(blockIdx.x - tg.first_block[k]) * MMA_ROWS;
    const int groups = (int)(w.cols / 32);
    /* this thread's weight rows (gid and gid + 8 of each tile; a missing row repeats the last), as 32-bit
     * offsets (the launcher keeps matrices of 4 GiB or more away): 64-bit pointers made the kernel spill */
    uint32_t woff[MMA_MT][2], soff[MMA_MT][2];
#pragma unroll
    for (int mt = 0; mt < MMA_MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int64_t row = min(row0 + 16 * mt + gid + 8 * h, w.rows - 1);
            woff[mt][h] = (uint32_t)((size_t)row * w.q_row_bytes + 4 * tig);
            soff[mt][h] = (uint32_t)((size_t)row * groups);
        }
    float acc[MMA_MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MMA_MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[mt][nt][j] = 0.0f;
    for (int g0 = warp; g0 < groups; g0 += MMA_WARPS * MMA_UNROLL) {
        uint32_t wv[MMA_UNROLL][MMA_MT][2];
        float d[MMA_UNROLL][MMA_MT][2], m[MMA_UNROLL][MMA_MT][2];
#pragma unroll
        for (int u = 0; u < MMA_UNROLL; u++) {
            int g = min(g0 + MMA_WARPS * u, groups - 1); /* past the end: reloaded, unused */
#pragma unroll
            for (int mt = 0; mt < MMA_MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    wv[u][mt][h] = __ldg((const uint32_t *)(w.q + woff[mt][h] + (size_t)g * 16));
                    /* Q4_0's minimum is -8 d, IQ4_NL has none: computed where used rather than held */
                    group_scale_min<DT>(w, soff[mt][h] + g, &d[u][mt][h], &m[u][mt][h]);
                }
        }
#pragma unroll
        for (int u = 0; u < MMA_UNROLL; u++) {
            int g = g0 + MMA_WARPS * u;
            if (g >= groups) break;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const uint32_t *xp = (const uint32_t *)(xq + (size_t)min(nt * 8 + gid, n_tok - 1) * w.cols +
                                                        (size_t)g * 32 + 8 * tig);
                uint32_t b0 = __ldg(xp), b1 = __ldg(xp + 1);
                float2 s0 = __ldg(xs + (size_t)min(nt * 8 + 2 * tig, n_tok - 1) * groups + g);
                float2 s1 = __ldg(xs + (size_t)min(nt * 8 + 2 * tig + 1, n_tok - 1) * groups + g);
#pragma unroll
                for (int mt = 0; mt < MMA_MT; mt++) {
                    uint32_t a[4] = {wv[u][mt][0] & 0x0f0f0f0fu, wv[u][mt][1] & 0x0f0f0f0fu,
                                     (wv[u][mt][0] >> 4) & 0x0f0f0f0fu, (wv[u][mt][1] >> 4) & 0x0f0f0f0fu};
                    if (grid4(DT)) /* codes -> signed grid levels (no offset term below) */
#pragma unroll
                        for (int i = 0; i < 4; i++) a[i] = iq4_nl_levels4_bytes(a[i]);
                    int c[4];
                    mma_s8_16x8x32(c, a, b0, b1);
                    /* c0, c1: row gid, tokens 2t, 2t + 1; c2, c3: row gid + 8 */
                    float dm0 = d[u][mt][0], dm1 = d[u][mt][1];
                    float mm0 = has_min(DT) ? m[u][mt][0] : DT == TS_DTYPE_Q4_0 ? -8.0f * dm0 : 0.0f;
                    float mm1 = has_min(DT) ? m[u][mt][1] : DT == TS_DTYPE_Q4_0 ? -8.0f * dm1 : 0.0f;
                    acc[mt][nt][0] = fmaf(s0.x, fmaf(dm0, (float)c[0], mm0 * s0.y), acc[mt][nt][0]);
                    acc[mt][nt][1] = fmaf(s1.x, fmaf(dm0, (float)c[1], mm0 * s1.y), acc[mt][nt][1]);
                    acc[mt][nt][2] = fmaf(s0.x, fmaf(dm1, (float)c[2], mm1 * s0.y), acc[mt][nt][2]);
                    acc[mt][nt][3] = fmaf(s1.x, fmaf(dm1, (float)c[3], mm1 * s1.y), acc[mt][nt][3]);
                }
            }
        }
    }
#pragma unroll
    for (int mt = 0; mt < MMA_MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++) red[warp][16 * mt + gid + 8 * (j / 2)][nt * 8 + 2 * tig + (j % 2)] = acc[mt][nt][j];
    __syncthreads();
    for (int i = threadIdx.x; i < MMA_ROWS * NT * 8; i += blockDim.x) {
        int r = i / (NT * 8), t = i % (NT * 8);
        int64_t row = row0 + r;
        if (row >= w.rows || t >= n_tok) continue;
        float sum = 0.0f;
#pragma unroll
        for (int wp = 0; wp < MMA_WARPS; wp++) sum += red[wp][r][t];
        y[(size_t)t * w.rows + row] = sum + (bias ? bias[row] : 0.0f);
    }
}

/* Whether a product of n tokens with w takes the integer kernels. Beyond GEMV_MAX_TOKENS a weight with
 * a dense bf16/fp16 copy (--gpu-dense-cache) goes to cuBLAS instead, which is faster on that copy. */
static int uses_dp4a(const cuda_impl *im, const cuda_weight *w, int n, int force_fp32) {
    ts_dtype t = w->dtype;
    return !force_fp32 && !im->float_gemv && im->opt.precision != TS_PRECISION_FP32 && n <= DP4A_MAX_TOKENS &&
           (n <= GEMV_MAX_TOKENS || !w->dense) &&
           (t == TS_DTYPE_Q4_0 || has_min(t) || t == TS_DTYPE_Q8_0 || grid4(t));
}

/* Whether a product of n tokens with w runs through cuBLAS (gemm_path), as matmul_impl chooses. */
static int takes_gemm(const cuda_impl *im, const cuda_weight *w, int n, int force_fp32) {
    return n > GEMV_MAX_TOKENS && !uses_dp4a(im, w, n, force_fp32);
}

static void gemm_product(cuda_impl *im, const cuda_weight *cw, const float *x, int n, void *y, int force_fp32,
                         float beta, cudaDataType_t yt);

#define DP4A_ROWS 2

/* The tensor-core kernel addresses a matrix with 32-bit offsets. */
static int offsets_fit_32(const cuda_weight *w) {
    return (size_t)w->rows * w->q_row_bytes < ((size_t)1 << 32) && (size_t)w->rows * (size_t)(w->cols / 32) < ((size_t)1 << 32);
}

/* Whether a product of n tokens with these weights (integer-kernel layouts, one width) runs in passes of
 * the int8 matrix-vector kernel rather than on the tensor cores: the kernel that fused output
 * projections produce for and whose reads finish a due norm. */
static int all_batch16(const cuda_impl *im, int count, const cuda_weight *const *ws, int n) {
    int batch16 = 1;
    for (int k = 0; k < count; k++) batch16 = batch16 && cuda_batch16_eligible(im, ws[k], n);
    return batch16;
}

static int dp4a_passes_take(const cuda_impl *im, int count, const cuda_weight *const *ws, int n) {
    if (all_batch16(im, count, ws, n)) return 0;
    int fit = 1;
    for (int k = 0; k < count; k++) fit = fit && offsets_fit_32(ws[k]);
    return !(ws[0]->dtype != TS_DTYPE_Q8_0 && im->code_arch >= 800 && n >= im->mma_min_tokens && fit);
}

/* x's int8 form for the integer kernels: the one its producer wrote, or quantized here. */
static int dp4a_input(cuda_impl *im, const float *x, int n, int64_t cols, int nibbles, int8_t **xq, float2 **xs) {
    const cuda_qact *pre = &im->qact;
    if (pre->src == x && !pre->dense && pre->rows == n && pre->cols == cols && pre->nibbles == nibbles &&
        pre->buffer == im->xq_scratch) {
        *xq = pre->xq; /* the producer of x already wrote its int8 form */
        *xs = pre->xs;
        return 0;
    }
    int64_t total_groups = (int64_t)n * (cols / 32);
    size_t xs_off, need = qact_bytes(n, cols, &xs_off);
    uint8_t *buf = (uint8_t *)cuda_scratch(im, &im->xq_scratch, &im->xq_scratch_bytes, need);
    if (!buf) return -1;
    *xq = (int8_t *)buf;
    *xs = (float2 *)(buf + xs_off);
    cuda_launch(im, quantize_act_kernel, dim3((unsigned)((total_groups * 32 + 255) / 256)), dim3(256), 0, x,
                total_groups, nibbles, *xq, *xs);
    /* later products of the same x (unfused q, k, v) reuse it */
    im->qact = {x, n, cols, nibbles, *xq, *xs, buf, NULL, 0, 0};
    return 0;
}

/* At most `want` blocks of a GEMV_WARPS-warp kernel: as many as are resident on the GPU at once. */
template <typename Kernel>
static unsigned resident_blocks(cuda_impl *im, Kernel kernel, unsigned want) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * GEMV_WARPS, 0) != cudaSuccess || per_sm < 1)
        per_sm = 1;
    const unsigned wave = (unsigned)per_sm * (unsigned)im->prop.multiProcessorCount;
    return wave < want ? wave : want;
}

/* Quantizes x once, then one launch over the rows of all `count` weights (same layout and width). Where x
 * is a due norm's output (cuda_norm_due; the caller checked that this product can read it), its int8
 * form is the producer's and the launch finishes the norm. */
template <int DT>
static void launch_gemv_dp4a(cuda_impl *im, int count, const cuda_weight *const *ws, const float *x, int n,
                             float *const *ys, const float *const *biases) {
    const int64_t cols = ws[0]->cols;
    const int nibbles = DT != TS_DTYPE_Q8_0;
    im->qact_nibbles = nibbles;
    im->qact_frag = 0;
    int8_t *xq;
    float2 *xs;
    norm_link nl;
    memset(&nl, 0, sizeof nl);
    const cuda_norm_due due = im->norm_due;
    if (due.out && due.out == x) {
        im->norm_due.out = NULL;
        xq = due.xq;
        xs = due.xs;
        nl.in_partials = due.partials;
        nl.in_x = due.x;
        nl.in_weight = due.weight;
        nl.in_out = due.out;
        nl.eps = due.eps;
    } else if (dp4a_input(im, x, n, cols, nibbles, &xq, &xs) != 0) {
        return;
    }
    /* A single token's rows of at most 32 groups give each lane one group: the wide kernel's other three load
     * slots would only reload the last group. Such rows go one group a lane, 2 rows a warp, or 4 for the
     * largest matrices. H200, 0.6B (1024-wide rows) decode at batch 1, marginal us (scripts/gpu/ktrace.c):
     * the head (151936 rows) 41.6 -> 33.3 at 4 rows a warp (41.2 at 2, 49.1 at 8); q/k/v 2.43 -> 2.24 and
     * gate/up 2.44 -> 2.31 at 2 (2.57 and 2.83 at 4) */
    const int narrow_rows = n == 1 && cols <= 1024 ? (ws[0]->rows >= 32768 ? 4 : 2) : 0;
    const int rows_per_block = GEMV_WARPS * (narrow_rows ? narrow_rows : DP4A_ROWS);
    dp4a_targets tg;
    memset(&tg, 0, sizeof tg);
    unsigned blocks = 0;
    for (int k = 0; k < MAX_PRODUCT_TARGETS; k++) {
        tg.first_block[k] = blocks;
        if (k >= count) continue;
        tg.w[k] = *ws[k];
        tg.bias[k] = biases ? biases[k] : NULL;
        blocks += (unsigned)((ws[k]->rows + rows_per_block - 1) / rows_per_block);
    }
    tg.first_block[MAX_PRODUCT_TARGETS] = blocks;
    if (!dp4a_passes_take(im, count, ws, n)) {
        /* 4-bit weights: the tensor-core kernel takes up to 32 tokens in one pass over the weights */
        dp4a_targets mt = tg;
        unsigned mblocks = 0;
        for (int k = 0; k < MAX_PRODUCT_TARGETS; k++) {
            mt.first_block[k] = mblocks;
            mt.y[k] = k < count ? ys[k] : NULL;
            if (k < count) mblocks += (unsigned)((ws[k]->rows + MMA_ROWS - 1) / MMA_ROWS);
        }
        mt.first_block[MAX_PRODUCT_TARGETS] = mblocks;
        switch ((n + 7) / 8) {
#define MMA_CASE(NT)                                                                                           \
    case NT:                                                                                                   \
        cuda_launch(im, gemm_mma_q4_kernel<DT, NT>, dim3(mblocks), dim3(32 * MMA_WARPS), 0, mt, xq, xs, n); \
        break;
            MMA_CASE(1) MMA_CASE(2) MMA_CASE(3) MMA_CASE(4)
#undef MMA_CASE
        }
        return;
    }
    /* Otherwise a batch goes in passes of 16 tokens (then 8 or fewer); each pass reads the weights once. */
    for (int t0 = 0; t0 < n;) {
        int take = n - t0 >= 16 ? 16 : n - t0 > 8 ? 8 : n - t0;
        for (int k = 0; k < count; k++) tg.y[k] = ys[k] + (size_t)t0 * (size_t)ws[k]->rows;
        const int8_t *pxq = xq + (size_t)t0 * (size_t)cols;
        const float2 *pxs = xs + (size_t)t0 * (size_t)(cols / 32);
        constexpr int U_WIDE = dp4a_groups_per_lane(DT);
        /* a greedy step's head (cuda_matmul_argmax): one token of one weight, at 4 rows a warp (narrow) or
         * the wide kernel's */
        const bool pick = im->head_argmax_want && count == 1 && n == 1 && (narrow_rows == 4 || !narrow_rows);
        if (pick) {
            im->head_argmax_used = 1;
            tg.pick = im->head_argmax;
#define PICK_LAUNCH(R, U, D)                                                                                  \
    cuda_launch(im, gemv_dp4a_pick_kernel<DT, R, U, D>,                                                       \
                dim3(resident_blocks(im, gemv_dp4a_pick_kernel<DT, R, U, D>, blocks)), dim3(32 * GEMV_WARPS), 0, tg, \
                pxq, pxs, nl)
#define PICK_CASE(R, U)                   \
    if (nl.in_partials)                   \
        PICK_LAUNCH(R, U, true);          \
    else                                  \
        PICK_LAUNCH(R, U, false);
            if (narrow_rows) {
                PICK_CASE(4, 1)
            } else {
                PICK_CASE(DP4A_ROWS, U_WIDE)
            }
#undef PICK_CASE
#undef PICK_LAUNCH
            break;
        }
        if (narrow_rows) {
#define NARROW_CASE(R)                                                                                              \
    case R:                                                                                                         \
        if (nl.in_partials)                                                                                         \
            cuda_launch(im, gemv_dp4a_kernel<DT, 1, R, 1, true>, dim3(blocks), dim3(32 * GEMV_WARPS), 0, tg, pxq,    \
                        pxs, nl);                                                                                   \
        else                                                                                                        \
            cuda_launch(im, gemv_dp4a_kernel<DT, 1, R, 1, false>, dim3(blocks), dim3(32 * GEMV_WARPS), 0, tg, pxq,   \
                        pxs, nl);                                                                                   \
        break;
            switch (narrow_rows) { NARROW_CASE(2) NARROW_CASE(4) }
#undef NARROW_CASE
            break; /* one token: one pass */
        }
        switch (take) { /* a due norm has at most FUSED_NORM_MAX_TOKENS tokens: one pass of 8 or fewer */
#define DP4A_CASE(N)                                                                                                \
    case N:                                                                                                         \
        if (nl.in_partials)                                                                                         \
            cuda_launch(im, gemv_dp4a_kernel<DT, N, DP4A_ROWS, U_WIDE, true>, dim3(blocks), dim3(32 * GEMV_WARPS),  \
                        0, tg, pxq, pxs, nl);                                                                       \
        else                                                                                                        \
            cuda_launch(im, gemv_dp4a_kernel<DT, N, DP4A_ROWS, U_WIDE, false>, dim3(blocks), dim3(32 * GEMV_WARPS), \
                        0, tg, pxq, pxs, nl);                                                                       \
        break;
            DP4A_CASE(1) DP4A_CASE(2) DP4A_CASE(3) DP4A_CASE(4) DP4A_CASE(5) DP4A_CASE(6) DP4A_CASE(7) DP4A_CASE(8)
#undef DP4A_CASE
        case 16:
            cuda_launch(im, gemv_dp4a_kernel<DT, 16, DP4A_ROWS, U_WIDE, false>, dim3(blocks), dim3(32 * GEMV_WARPS), 0, tg, pxq,
                        pxs, nl);
            break;
        }
        t0 += take;
    }
}

/* The producer of a fused output projection: x += in . w^T (+ bias), with the next norm due (see
 * cuda_norm_due). w has whole groups of 32 rows and n <= FUSED_NORM_MAX_TOKENS (one pass). */
#define FUSED_NORM_MAX_TOKENS 8
template <int DT>
static void launch_fused_projection(cuda_impl *im, const cuda_weight *w, const float *in, int n, const float *bias,
                                    float *x, const float *norm_weight, float eps, float *out) {
    const int nibbles = DT != TS_DTYPE_Q8_0;
    im->qact_nibbles = nibbles;
    im->qact_frag = 0;
    int8_t *xq;
    float2 *xs;
    if (dp4a_input(im, in, n, w->cols, nibbles, &xq, &xs) != 0) return;
    /* the output's int8 form goes apart from xq_scratch, which this launch reads */
    size_t xs_off, need = qact_bytes(n, w->rows, &xs_off);
    uint8_t *obuf = (uint8_t *)cuda_scratch(im, &im->norm_xq, &im->norm_xq_bytes, need);
    float *partials = (float *)cuda_scratch(im, (void **)&im->norm_partials, &im->norm_partials_bytes,
                                            (size_t)n * (size_t)(w->rows / 32) * sizeof(float));
    if (!obuf || !partials) return;
    const unsigned blocks = (unsigned)(w->rows / 32);
    norm_link nl;
    memset(&nl, 0, sizeof nl);
    nl.res_x = x;
    nl.res_weight = norm_weight;
    nl.res_partials = partials;
    nl.res_xq = (int8_t *)obuf;
    nl.res_xs = (float2 *)(obuf + xs_off);
    nl.res_nibbles = nibbles;
    switch (n) {
#define PRODUCER_CASE(N)                                                                                            \
    case N:                                                                                                         \
        cuda_launch(im, gemv_dp4a_residual_norm_kernel<DT, N>, dim3(blocks), dim3(512), 0, *w, bias,                \
                    (const int8_t *)xq, (const float2 *)xs, nl);                                                    \
        break;
        PRODUCER_CASE(1) PRODUCER_CASE(2) PRODUCER_CASE(3) PRODUCER_CASE(4) PRODUCER_CASE(5) PRODUCER_CASE(6)
        PRODUCER_CASE(7) PRODUCER_CASE(8)
#undef PRODUCER_CASE
    }
    cuda_norm_due due = cuda_norm_due_of(out, x, norm_weight, eps, n, (int)w->rows, partials);
    due.nibbles = nibbles;
    due.xq = nl.res_xq;
    due.xs = nl.res_xs;
    cuda_leave_norm_due(im, &due);
}

static void dispatch_gemv_dp4a(cuda_impl *im, int count, const cuda_weight *const *ws, const float *x, int n,
                               float *const *ys, const float *const *biases) {
    if (all_batch16(im, count, ws, n)) {
        cuda_batch16_matmul(im, count, ws, x, n, ys, biases);
        return;
    }
    if (ws[0]->dtype == TS_DTYPE_Q4_0) launch_gemv_dp4a<TS_DTYPE_Q4_0>(im, count, ws, x, n, ys, biases);
    else if (ws[0]->dtype == TS_DTYPE_Q4_1) launch_gemv_dp4a<TS_DTYPE_Q4_1>(im, count, ws, x, n, ys, biases);
    else if (ws[0]->dtype == TS_DTYPE_Q4_K) launch_gemv_dp4a<TS_DTYPE_Q4_K>(im, count, ws, x, n, ys, biases);
    else if (ws[0]->dtype == TS_DTYPE_IQ4_NL) launch_gemv_dp4a<TS_DTYPE_IQ4_NL>(im, count, ws, x, n, ys, biases);
    else if (ws[0]->dtype == TS_DTYPE_IQ4_XS) launch_gemv_dp4a<TS_DTYPE_IQ4_XS>(im, count, ws, x, n, ys, biases);
    else launch_gemv_dp4a<TS_DTYPE_Q8_0>(im, count, ws, x, n, ys, biases);
}

/* A due norm whose output x is about to be read: the product of these weights finishes it if it reads
 * the producer's form (passes of the integer kernel over its element order, or the batch kernel on its
 * 16-bit copy); anything else runs the norm first. */
static void settle_unless_read_by(cuda_impl *im, int count, const cuda_weight *const *ws, const float *x, int n) {
    const cuda_norm_due *d = &im->norm_due;
    if (!d->out) return;
    if (d->dense) { /* the batch kernel's producer: only that kernel reads its form */
        int gpu = count >= 1;
        for (int k = 0; gpu && k < count; k++) gpu = ws[k] && ws[k]->gpu_supported && uses_dp4a(im, ws[k], n, 0);
        if (!(d->out == x && gpu && cuda_batch16_reads_due(im, count, ws, n))) cuda_settle_norm(im);
        return;
    }
    int ok = d->out == x && d->rows == n && count >= 1;
    for (int k = 0; ok && k < count; k++)
        ok = ws[k] && ws[k]->gpu_supported && uses_dp4a(im, ws[k], n, 0) && ws[k]->dtype == ws[0]->dtype &&
             ws[k]->cols == d->dim;
    ok = ok && (ws[0]->dtype != TS_DTYPE_Q8_0) == d->nibbles && dp4a_passes_take(im, count, ws, n);
    if (!ok) cuda_settle_norm(im);
}

void cuda_matmul_add_rmsnorm(ts_backend *be, const ts_weight *w, const float *in, int n, const float *bias, float *x,
                             const float *norm_weight, float eps, float *out, float *proj) {
    cuda_impl *im = cuda_of(be);
    CUDA_PRODUCT_BEGIN(im);
    if (n <= 0) return;
    cuda_settle_due(im);
    const cuda_weight *cw = (const cuda_weight *)w->prepared;
    if (cw && cw->gpu_supported && uses_dp4a(im, cw, n, 0) && cuda_batch16_fuses_norm(im, cw, n)) {
        cuda_batch16_residual_norm(im, cw, in, n, bias, x, norm_weight, eps, out);
        CUDA_CHECK_LAUNCH(im, "matmul_add_rmsnorm");
        return;
    }
    int fused = !im->fuse_norm_off && cw && cw->gpu_supported && uses_dp4a(im, cw, n, 0) &&
                n <= FUSED_NORM_MAX_TOKENS && n <= im->fuse_max_tokens && cw->rows % 32 == 0 &&
                dp4a_passes_take(im, 1, &cw, n);
    if (!fused && !bias && cw && cw->gpu_supported && takes_gemm(im, cw, n, 0)) {
        /* cuBLAS adds the product to the residual itself (beta 1): the norm then reads x alone */
        gemm_product(im, cw, in, n, x, 0, 1.0f, CUDA_R_32F);
        cuda_rmsnorm(be, x, norm_weight, n, (int)w->rows, eps, out);
        return;
    }
    if (!fused) {
        cuda_matmul(be, w, in, n, proj, bias);
        cuda_add_rmsnorm(be, x, proj, norm_weight, n, (int)w->rows, eps, out);
        return;
    }
    if (cw->dtype == TS_DTYPE_Q4_0) launch_fused_projection<TS_DTYPE_Q4_0>(im, cw, in, n, bias, x, norm_weight, eps, out);
    else if (cw->dtype == TS_DTYPE_Q4_1) launch_fused_projection<TS_DTYPE_Q4_1>(im, cw, in, n, bias, x, norm_weight, eps, out);
    else if (cw->dtype == TS_DTYPE_Q4_K) launch_fused_projection<TS_DTYPE_Q4_K>(im, cw, in, n, bias, x, norm_weight, eps, out);
    else if (cw->dtype == TS_DTYPE_IQ4_NL) launch_fused_projection<TS_DTYPE_IQ4_NL>(im, cw, in, n, bias, x, norm_weight, eps, out);
    else if (cw->dtype == TS_DTYPE_IQ4_XS) launch_fused_projection<TS_DTYPE_IQ4_XS>(im, cw, in, n, bias, x, norm_weight, eps, out);
    else launch_fused_projection<TS_DTYPE_Q8_0>(im, cw, in, n, bias, x, norm_weight, eps, out);
    CUDA_CHECK_LAUNCH(im, "matmul_add_rmsnorm");
}

/* Rows [r0, r0 + nr) of the weight into a dense row-major panel of OUT elements, one group of 32 a
 * thread: block (row, run of 128 groups), so no thread divides a 64-bit index. */
template <int DT, typename OUT>
__global__ void dequant_kernel(cuda_weight w, int64_t r0, OUT *out) {
    int g = (int)(blockIdx.y * blockDim.x + threadIdx.x);
    if (g >= (int)(w.cols / 32)) return;
    int64_t r = blockIdx.x;
    float v[32];
    decode_group<DT>(w, r0 + r, g, v);
    OUT *o = out + r * w.cols + (int64_t)g * 32;
#pragma unroll
    for (int k = 0; k < 32; k++) {
        if constexpr (sizeof(OUT) == 4) o[k] = v[k];
        else o[k] = OUT(v[k]);
    }
}

template <typename OUT>
__global__ void convert_kernel(const float *in, OUT *out, size_t n) {
    pdl_wait();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = OUT(in[i]);
}

/* y [n, rows] with row stride ldy += bias [rows] */
__global__ void bias_kernel(float *y, const float *bias, int64_t rows, int n, int64_t ldy) {
    pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * n) y[(i / rows) * ldy + i % rows] += bias[i % rows];
}

template <int DT>
static void launch_gemv(cuda_impl *im, const cuda_weight &w, const float *x, int n, float *y, const float *bias) {
    dim3 grid((unsigned)((w.rows + GEMV_WARPS - 1) / GEMV_WARPS)), block(32 * GEMV_WARPS);
    constexpr bool fast = DT == TS_DTYPE_F32 || DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16 || DT == TS_DTYPE_Q8_0 ||
                          DT == TS_DTYPE_Q4_0 || has_min(DT) || grid4(DT);
    constexpr int FT = fast ? DT : TS_DTYPE_F32;
    constexpr int U = (FT == TS_DTYPE_F32) ? 1 : (FT == TS_DTYPE_F16 || FT == TS_DTYPE_BF16) ? 2 : 4;
    switch (n) {
#define GEMV_CASE(N)                                                                       \
    case N:                                                                                \
        if (fast) cuda_launch(im, gemv_coalesced_kernel<FT, N, U>, grid, block, 0, w, x, y, bias); \
        else cuda_launch(im, gemv_kernel<DT, N>, grid, block, 0, w, x, y, bias);             \
        break;
        GEMV_CASE(1) GEMV_CASE(2) GEMV_CASE(3) GEMV_CASE(4) GEMV_CASE(5) GEMV_CASE(6) GEMV_CASE(7) GEMV_CASE(8)
#undef GEMV_CASE
    }
}

/* One thread per 4 consecutive elements: rows of float weights that are not whole runs of 8. */
template <int DT, typename OUT>
__global__ void dequant_quad_kernel(cuda_weight w, int64_t r0, int64_t nr, OUT *out) {
    int64_t quads = w.cols / 4;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nr * quads) return;
    int64_t r = i / quads, e = (i % quads) * 4;
    uint32_t raw[DT == TS_DTYPE_F32 ? 4 : 2];
    float d = 0.0f, m = 0.0f, v[4];
    load_quad<DT>(w, w.q + (size_t)(r0 + r) * w.q_row_bytes, r0 + r, e, raw, &d, &m);
    unpack_quad<DT>(raw, d, m, v);
    OUT *o = out + r * w.cols + e;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if constexpr (sizeof(OUT) == 4) o[k] = v[k];
        else o[k] = OUT(v[k]);
    }
}

/* Rows of the layouts load_quad reads, 8 consecutive elements a thread: block (row, run of 1024
 * elements), so a warp reads a contiguous run of quants (one word of 8 codes where they are 4-bit) and
 * writes 512 contiguous bytes of 16-bit output in 16-byte stores, and no thread divides a 64-bit index.
 * Up to DEQUANT_PARTS weights of one layout in one launch (the q, k and v of matmul_concat: k and v alone
 * are too small to reach the copy rate, 5.2 us each for an 8B's 1024 x 4096 at 2.1 TB/s; the three in
 * one launch 19.4 us against 23.9). The first version (one thread per 4 elements, the flat index divided
 * by the row length) moved 2.1 TB/s on an H200, this one 3.4-3.6 TB/s. Measured and not kept: four rows
 * a thread (5 % slower); two rows and 512 threads a block (10 % faster back to back in a microbenchmark,
 * no faster inside a prefill, 0.6B prefill slower); a persistent grid, 32 elements a thread (slower). */
#define DEQUANT_THREADS 128
#define DEQUANT_PARTS 3
struct dequant_parts {
    cuda_weight w[DEQUANT_PARTS];
    int64_t r0[DEQUANT_PARTS], nr[DEQUANT_PARTS];
    void *out[DEQUANT_PARTS];
    unsigned first_block[DEQUANT_PARTS]; /* each part's first blockIdx.x: blocks take one row each */
    int count;
};

template <typename OUT>
__device__ __forceinline__ void store_oct(OUT *o, const float (&v)[8]) {
    if constexpr (sizeof(OUT) == 4) {
        ((float4 *)o)[0] = make_float4(v[0], v[1], v[2], v[3]);
        ((float4 *)o)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        uint4 packed;
        uint32_t *p = (uint32_t *)&packed;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            OUT lo = OUT(v[2 * k]), hi = OUT(v[2 * k + 1]);
            p[k] = (uint32_t)*(const uint16_t *)&lo | ((uint32_t)*(const uint16_t *)&hi << 16);
        }
        *(uint4 *)o = packed;
    }
}

template <int DT, typename OUT>
__global__ void __launch_bounds__(DEQUANT_THREADS) dequant_oct_kernel(const __grid_constant__ dequant_parts job) {
    constexpr int WORDS = DT == TS_DTYPE_F32 ? 4 : DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16 ? 2 : 1;
    int p = job.count - 1;
    while (p > 0 && blockIdx.x < job.first_block[p]) p--;
    const cuda_weight &w = job.w[p];
    const int64_t e = ((int64_t)blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (e >= w.cols) return;
    const int64_t local = blockIdx.x - job.first_block[p], row = job.r0[p] + local;
    const uint8_t *rowp = w.q + (size_t)row * w.q_row_bytes;
    uint32_t raw[2][WORDS];
    float d = 0.0f, m = 0.0f, v[8];
    if (DT == TS_DTYPE_Q4_0 || has_min(DT) || grid4(DT)) {
        uint32_t word = __ldg((const uint32_t *)(rowp + e / 2));
        raw[0][0] = word & 0xffffu;
        raw[1][0] = word >> 16;
        quad_scale<DT>(w, row, e, &d, &m);
    } else {
        load_quad<DT>(w, rowp, row, e, raw[0], &d, &m);
        load_quad<DT>(w, rowp, row, e + 4, raw[1], &d, &m);
    }
    unpack_quad<DT>(raw[0], d, m, v);
    unpack_quad<DT>(raw[1], d, m, v + 4);
    store_oct<OUT>((OUT *)job.out[p] + local * w.cols + e, v);
}

/* The layouts load_quad reads (dequant_oct_kernel, dequant_quad_kernel). */
static constexpr bool oct_layout(int t) {
    return t == TS_DTYPE_F32 || t == TS_DTYPE_F16 || t == TS_DTYPE_BF16 || t == TS_DTYPE_Q8_0 || t == TS_DTYPE_Q4_0 ||
           has_min(t) || grid4(t);
}

/* One launch of dequant_oct_kernel for the job's parts (one layout, rows whole runs of 8). */
template <int DT>
static void launch_dequant_oct(dequant_parts &job, int out_kind, cudaStream_t stream) {
    unsigned blocks = 0;
    int64_t widest = 0;
    for (int p = 0; p < job.count; p++) {
        job.first_block[p] = blocks;
        blocks += (unsigned)job.nr[p];
        if (job.w[p].cols > widest) widest = job.w[p].cols;
    }
    if (blocks == 0) return;
    /* a block covers a whole row up to 8 * DEQUANT_THREADS elements, in whole warps */
    int threads = (int)((widest / 8 + 31) / 32 * 32);
    if (threads > DEQUANT_THREADS) threads = DEQUANT_THREADS;
    dim3 grid(blocks, (unsigned)((widest + 8 * threads - 1) / (8 * threads)));
    if (out_kind == 0) dequant_oct_kernel<DT, float><<<grid, threads, 0, stream>>>(job);
    else if (out_kind == 1) dequant_oct_kernel<DT, __nv_bfloat16><<<grid, threads, 0, stream>>>(job);
    else dequant_oct_kernel<DT, __half><<<grid, threads, 0, stream>>>(job);
}

template <int DT>
static void launch_dequant(const cuda_weight &w, int64_t r0, int64_t nr, void *out, int out_kind, cudaStream_t stream) {
    constexpr bool quad = oct_layout(DT);
    if (nr <= 0) return;
    if (quad && w.cols % 8 == 0) {
        constexpr int QT = quad ? DT : TS_DTYPE_F32;
        dequant_parts job = {};
        job.w[0] = w;
        job.r0[0] = r0;
        job.nr[0] = nr;
        job.out[0] = out;
        job.count = 1;
        launch_dequant_oct<QT>(job, out_kind, stream);
        return;
    }
    if (quad) { /* float weights whose rows are not whole runs of 8 */
        constexpr int QT = quad ? DT : TS_DTYPE_F32;
        int64_t items = nr * (w.cols / 4);
        unsigned blocks = (unsigned)((items + 255) / 256);
        if (out_kind == 0) dequant_quad_kernel<QT, float><<<blocks, 256, 0, stream>>>(w, r0, nr, (float *)out);
        else if (out_kind == 1) dequant_quad_kernel<QT, __nv_bfloat16><<<blocks, 256, 0, stream>>>(w, r0, nr, (__nv_bfloat16 *)out);
        else dequant_quad_kernel<QT, __half><<<blocks, 256, 0, stream>>>(w, r0, nr, (__half *)out);
        return;
    }
    dim3 grid((unsigned)nr, (unsigned)((w.cols / 32 + 127) / 128));
    if (out_kind == 0) dequant_kernel<DT, float><<<grid, 128, 0, stream>>>(w, r0, (float *)out);
    else if (out_kind == 1) dequant_kernel<DT, __nv_bfloat16><<<grid, 128, 0, stream>>>(w, r0, (__nv_bfloat16 *)out);
    else dequant_kernel<DT, __half><<<grid, 128, 0, stream>>>(w, r0, (__half *)out);
}

/* Whole weights into their own outputs: one launch for those of one oct layout, else one each. */
static void dequantize_many(const cuda_weight *const *ws, void *const *outs, int count, int out_kind, cudaStream_t stream) {
    int one_oct = count >= 1 && count <= DEQUANT_PARTS;
    for (int k = 0; one_oct && k < count; k++)
        one_oct = ws[k]->dtype == ws[0]->dtype && oct_layout(ws[k]->dtype) && ws[k]->cols % 8 == 0;
    if (!one_oct) {
        for (int k = 0; k < count; k++) cuda_dequantize(ws[k], outs[k], out_kind, stream);
        return;
    }
    dequant_parts job = {};
    for (int k = 0; k < count; k++) {
        job.w[k] = *ws[k];
        job.r0[k] = 0;
        job.nr[k] = ws[k]->rows;
        job.out[k] = outs[k];
    }
    job.count = count;
#define DQ(DT) launch_dequant_oct<oct_layout(DT) ? DT : TS_DTYPE_F32>(job, out_kind, stream)
    TS_CUDA_DISPATCH_DTYPE(ws[0]->dtype, DQ)
#undef DQ
}

void cuda_dequantize(const cuda_weight *w, void *out, int kind, cudaStream_t stream) {
#define DQ(DT) launch_dequant<DT>(*w, 0, w->rows, out, kind, stream)
    TS_CUDA_DISPATCH_DTYPE(w->dtype, DQ)
#undef DQ
}

/* Optional dense copy for prefill and batched decode: cuBLAS reads it directly instead of
 * dequantizing the weight at every product (more memory, fewer bytes moved per product). */
static void make_dense_copy(cuda_impl *im, const ts_weight *w, cuda_weight *cw) {
    if (!(im->opt.dense_cache && im->opt.precision != TS_PRECISION_FP32 && w->dtype != TS_DTYPE_BF16 &&
          w->dtype != TS_DTYPE_F16 && !cw->host_mapped))
        return;
    size_t dense = (size_t)w->rows * w->cols * 2;
    if (cudaMalloc(&cw->dense, dense) == cudaSuccess) {
        cuda_dequantize(cw, cw->dense, im->opt.precision == TS_PRECISION_BF16 ? 1 : 2, im->stream);
        cudaStreamSynchronize(im->stream);
        cw->bytes += dense;
        im->weight_bytes += dense;
    } else {
        cudaGetLastError();
        cw->dense = NULL;
        CUDA_WARN_ONCE(im, 1, "cuda: no room for dense weight copies; prefill dequantizes on the fly");
    }
}

/* x [n, cols] in the form cuBLAS reads for `kind`: the 16-bit copy that x's producer wrote (or the
 * conversion for the previous product of the same x), else converted here. NULL when scratch is short. */
static const void *gemm_input(cuda_impl *im, const float *x, int n, int64_t cols, int kind, int force_fp32) {
    if (kind == 0) return x;
    const cuda_qact *pre = &im->qact;
    if (pre->src == x && pre->dense && pre->dense_kind == kind && pre->rows == n && pre->cols == cols &&
        pre->buffer == im->act_scratch)
        return pre->dense;
    size_t cnt = (size_t)n * cols;
    void *xs = cuda_scratch(im, &im->act_scratch, &im->act_scratch_bytes, cnt * 2);
    if (!xs) return NULL;
    unsigned blocks = (unsigned)((cnt + 255) / 256);
    if (kind == 1) cuda_launch(im, convert_kernel<__nv_bfloat16>, dim3(blocks), dim3(256), 0, x, (__nv_bfloat16 *)xs, cnt);
    else cuda_launch(im, convert_kernel<__half>, dim3(blocks), dim3(256), 0, x, (__half *)xs, cnt);
    if (!force_fp32) im->qact = cuda_qact_dense(x, n, cols, xs, kind);
    return xs;
}

/* Y[n, rows] (row stride ldy) = X . W^T + beta * Y for a dense row-major W [rows, cols] of `kind`. In
 * cuBLAS's column-major view: Y^T = W . X^T, and W row-major is W^T column-major. */
static int gemm_call(cuda_impl *im, const void *wp, int64_t rows, int64_t cols, const void *xin, int n, void *y,
                     int64_t ldy, int kind, float beta, cudaDataType_t yt) {
    cudaDataType_t dt = kind == 0 ? CUDA_R_32F : kind == 1 ? CUDA_R_16BF : CUDA_R_16F;
    const float alpha = 1.0f;
    cublasStatus_t st = cublasGemmEx(im->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, n, (int)cols, &alpha, wp, dt,
                                     (int)cols, xin, dt, (int)cols, &beta, y, yt, (int)ldy, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT);
    if (st == CUBLAS_STATUS_SUCCESS) return 0;
    cuda_log(im, 0, "cuda: cuBLAS GEMM failed (status %d) for a %lld x %lld product with %d rows", (int)st,
             (long long)rows, (long long)cols, n);
    return -1;
}

/* y = x . W^T (+ y where beta is 1) through cuBLAS on dequantized panels of W; y of type yt (float32, or
 * bf16 for the SwiGLU products). */
static void gemm_path(cuda_impl *im, cuda_weight w, const float *x, int n, void *y, int force_fp32, float beta,
                      cudaDataType_t yt) {
    const size_t y_elem = yt == CUDA_R_32F ? 4 : 2;
    int kind = cuda_gemm_kind(im, force_fp32);
    size_t elem = kind == 0 ? 4 : 2;
    const void *xin = gemm_input(im, x, n, w.cols, kind, force_fp32);
    if (!xin) return;
    if (!w.dense && cuda_gemm_reads_stored(&w, kind)) w.dense = w.q;
    int64_t panel = (int64_t)(GEMM_PANEL_BYTES / ((size_t)w.cols * elem));
    if (panel < 64) panel = 64;
    if (panel > w.rows || w.dense) panel = w.rows;
    void *wp = w.dense ? w.dense : cuda_scratch(im, &im->gemm_scratch, &im->gemm_scratch_bytes, (size_t)panel * w.cols * elem);
    if (!wp) return;
    for (int64_t r0 = 0; r0 < w.rows; r0 += panel) {
        int64_t nr = w.rows - r0 < panel ? w.rows - r0 : panel;
#define DQ(DT) launch_dequant<DT>(w, r0, nr, wp, kind, im->stream)
        if (!w.dense) TS_CUDA_DISPATCH_DTYPE(w.dtype, DQ)
#undef DQ
        if (gemm_call(im, wp, nr, w.cols, xin, n, (char *)y + (size_t)r0 * y_elem, w.rows, kind, beta, yt) != 0) return;
    }
}

static void cpu_fallback_matmul(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    cuda_impl *im = cuda_of(be);
    cuda_graph_abort(im, "a product fell back to the CPU");
    im->graphs_disabled = 1;
    ts_backend *cpu = im->opt.cpu_fallback;
    size_t xin = (size_t)n * w->cols * sizeof(float), yout = (size_t)n * w->rows * sizeof(float);
    float *hx = (float *)malloc(xin), *hy = (float *)malloc(yout), *hb = NULL;
    if (bias) {
        hb = (float *)malloc((size_t)w->rows * sizeof(float));
        cudaMemcpyAsync(hb, bias, (size_t)w->rows * sizeof(float), cudaMemcpyDeviceToHost, im->stream);
    }
    cudaMemcpyAsync(hx, x, xin, cudaMemcpyDeviceToHost, im->stream);
    cudaStreamSynchronize(im->stream);
    /* the CPU sees the host weight unprepared: its prepared slot holds the GPU's bookkeeping */
    ts_weight host_w = *w;
    host_w.prepared = NULL;
    host_w.prepared_by = NULL;
    cpu->ops->matmul(cpu, &host_w, hx, n, hy, hb);
    cudaMemcpyAsync(y, hy, yout, cudaMemcpyHostToDevice, im->stream);
    cudaStreamSynchronize(im->stream);
    free(hx);
    free(hy);
    free(hb);
}

static void matmul_impl(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias,
                        int force_fp32);

/* gemm_path on the weight's 16-bit copy where cuda_stage.cu dequantized it ahead. */
static void gemm_product(cuda_impl *im, const cuda_weight *cw, const float *x, int n, void *y, int force_fp32,
                         float beta, cudaDataType_t yt) {
    cuda_weight wv = *cw;
    const void *staged = force_fp32 || im->opt.precision == TS_PRECISION_FP32 ? NULL : cuda_staged_take(im, cw);
    if (staged) wv.dense = (void *)staged;
    gemm_path(im, wv, x, n, y, force_fp32, beta, yt);
    if (staged) cuda_staged_release(im, cw);
}

static void launch_bias(cuda_impl *im, float *y, const float *bias, int64_t rows, int n, int64_t ldy) {
    int64_t total = (int64_t)n * rows;
    cuda_launch(im, bias_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256), 0, y, bias, rows, n, ldy);
}

void cuda_matmul(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    matmul_impl(be, w, x, n, y, bias, 0);
}

/* Mixture-of-experts routers decide which experts run: a bf16 rounding can swap two experts of almost
 * equal score and change the output far more than the rounding itself, so routers stay in float32. */
void cuda_matmul_fp32(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    matmul_impl(be, w, x, n, y, bias, 1);
}

static void matmul_impl(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias,
                        int force_fp32) {
    cuda_impl *im = cuda_of(be);
    CUDA_PRODUCT_BEGIN(im);
    const cuda_weight *cw = (const cuda_weight *)w->prepared;
    if (n <= 0) return;
    if (force_fp32) cuda_settle_due(im);
    else settle_unless_read_by(im, 1, &cw, x, n);
    if (!cw || !cw->gpu_supported) {
        cuda_qact_materialize(im, x);
        im->qact.src = NULL;
        cpu_fallback_matmul(be, w, x, n, y, bias);
        return;
    }
    if (uses_dp4a(im, cw, n, force_fp32)) {
        dispatch_gemv_dp4a(im, 1, &cw, x, n, &y, &bias);
    } else if (n <= GEMV_MAX_TOKENS) {
#define GV(DT) launch_gemv<DT>(im, *cw, x, n, y, bias)
        TS_CUDA_DISPATCH_DTYPE(cw->dtype, GV)
#undef GV
    } else {
        gemm_product(im, cw, x, n, y, force_fp32, 0.0f, CUDA_R_32F);
        if (bias) launch_bias(im, y, bias, cw->rows, n, cw->rows);
    }
    if (im->qact.src == y) im->qact.src = NULL;
    CUDA_CHECK_LAUNCH(im, "matmul");
}

/* Weights that read the same activations: one quantization of x and one launch where the integer
 * kernel applies to all of them, one product after another otherwise. */
void cuda_matmul_many(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n, float *const *ys,
                      const float *const *biases) {
    cuda_impl *im = cuda_of(be);
    CUDA_PRODUCT_BEGIN(im);
    const cuda_weight *cws[MAX_PRODUCT_TARGETS];
    int together = count >= 1 && count <= MAX_PRODUCT_TARGETS && n >= 1 && n <= DP4A_MAX_TOKENS;
    for (int k = 0; together && k < count; k++) {
        cws[k] = (const cuda_weight *)ws[k]->prepared;
        together = cws[k] && cws[k]->gpu_supported && uses_dp4a(im, cws[k], n, 0) && cws[k]->dtype == cws[0]->dtype &&
                   cws[k]->cols == cws[0]->cols;
    }
    if (!together) {
        for (int k = 0; k < count; k++) cuda_matmul(be, ws[k], x, n, ys[k], biases ? biases[k] : NULL);
        return;
    }
    settle_unless_read_by(im, count, cws, x, n);
    dispatch_gemv_dp4a(im, count, cws, x, n, ys, biases);
    for (int k = 0; k < count; k++)
        if (im->qact.src == ys[k]) im->qact.src = NULL;
    CUDA_CHECK_LAUNCH(im, "matmul");
}

/* Products that read the same x as one cuBLAS call on the weights dequantized one under another: the
 * k and v projections of a GQA model are too narrow alone to fill the GPU at prefill sizes (8B, 512
 * tokens: 12.7 us each in 64 x 64 tiles, at about 330 TFLOP/s, q 25.7 us at 670). */
int cuda_matmul_concat(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n, float *y,
                       const float *const *biases) {
    cuda_impl *im = cuda_of(be);
    if (im->concat_off || count < 1 || count > MAX_PRODUCT_TARGETS || n <= 0) return 0;
    const int kind = cuda_gemm_kind(im, 0);
    const size_t elem = kind == 0 ? 4 : 2;
    const cuda_weight *cws[MAX_PRODUCT_TARGETS];
    int64_t total = 0;
    for (int k = 0; k < count; k++) {
        cws[k] = ws[k]->prepared_by == be ? (const cuda_weight *)ws[k]->prepared : NULL;
        /* weights cuBLAS reads as stored would have to be copied: their own products cost nothing more */
        if (!cws[k] || !cws[k]->gpu_supported || !takes_gemm(im, cws[k], n, 0) ||
            cuda_gemm_reads_stored(cws[k], kind) || cws[k]->cols != cws[0]->cols)
            return 0;
        total += cws[k]->rows;
    }
    const int64_t cols = cws[0]->cols;
    if ((size_t)total * (size_t)cols * elem > GEMM_PANEL_BYTES) return 0;
    if (im->replaying) return 1;
    settle_unless_read_by(im, count, cws, x, n);
    const void *xin = gemm_input(im, x, n, cols, kind, 0);
    char *wp = (char *)cuda_scratch(im, &im->gemm_scratch, &im->gemm_scratch_bytes, (size_t)total * cols * elem);
    if (!xin || !wp) return 1; /* cuda_scratch logged the failure, as gemm_path would */
    void *outs[MAX_PRODUCT_TARGETS];
    int64_t r0 = 0;
    for (int k = 0; k < count; k++) {
        outs[k] = wp + (size_t)r0 * cols * elem;
        r0 += cws[k]->rows;
    }
    dequantize_many(cws, outs, count, kind, im->stream);
    if (gemm_call(im, wp, total, cols, xin, n, y, total, kind, 0.0f, CUDA_R_32F) == 0) {
        r0 = 0;
        for (int k = 0; k < count; k++) {
            if (biases && biases[k]) launch_bias(im, y + r0, biases[k], cws[k]->rows, n, total);
            r0 += cws[k]->rows;
        }
    }
    if (im->qact.src == y) im->qact.src = NULL;
    CUDA_CHECK_LAUNCH(im, "matmul_concat");
    return 1;
}

/* A SwiGLU block at prefill sizes under bf16: cuBLAS writes both products in bf16 into b (half the bytes of
 * float32, and bf16 is what HF's bf16 models compute them in), and the SiLU kernel writes only the bf16 copy
 * of a that the down projection reads (a is left unwritten, as gate_up_silu's contract allows). 8B prefill
 * of 512 tokens: the SiLU-gate 20.9 us a layer with float32 products and output. */
static int swiglu_bf16(cuda_impl *im, const cuda_weight *const *cws, const float *x, int n, float *a, float *b) {
    if (im->swiglu16_off || im->opt.precision != TS_PRECISION_BF16 || n <= DP4A_MAX_TOKENS) return 0;
    for (int k = 0; k < 2; k++)
        if (!cws[k] || !cws[k]->gpu_supported || !takes_gemm(im, cws[k], n, 0)) return 0;
    const int64_t inner = cws[0]->rows;
    if (cws[1]->rows != inner || inner % 8 != 0 || ((uintptr_t)b & 15) != 0) return 0;
    settle_unless_read_by(im, 2, cws, x, n);
    __nv_bfloat16 *g = (__nv_bfloat16 *)b, *u = g + (size_t)n * inner; /* b holds 2 n inner halves */
    gemm_product(im, cws[0], x, n, g, 0, 0.0f, CUDA_R_16BF);
    gemm_product(im, cws[1], x, n, u, 0, 0.0f, CUDA_R_16BF);
    cuda_silu_mul_bf16(im, g, u, n, (int)inner, a);
    return 1;
}

/* A SwiGLU block's gate and up products and silu(gate) * up: one paired launch of the batch kernel where it
 * takes them, the products and silu_mul otherwise. */
void cuda_gate_up_silu(ts_backend *be, const ts_weight *gate, const ts_weight *up, const float *x, int n, float *a,
                       float *b) {
    cuda_impl *im = cuda_of(be);
    CUDA_PRODUCT_BEGIN(im);
    if (n <= 0) return;
    const cuda_weight *cws[2] = {(const cuda_weight *)gate->prepared, (const cuda_weight *)up->prepared};
    int paired = 1;
    for (int k = 0; k < 2; k++) paired = paired && cws[k] && cws[k]->gpu_supported && uses_dp4a(im, cws[k], n, 0);
    if (!paired && swiglu_bf16(im, cws, x, n, a, b)) {
        CUDA_CHECK_LAUNCH(im, "gate_up_silu");
        return;
    }
    if (!paired || !cuda_batch16_pairs_swiglu(im, cws[0], cws[1], n)) {
        const ts_weight *ws[2] = {gate, up};
        float *const ys[2] = {a, b};
        cuda_matmul_many(be, 2, ws, x, n, ys, NULL);
        cuda_silu_mul(be, a, b, n, (int)gate->rows, (int)gate->rows, a);
        return;
    }
    settle_unless_read_by(im, 2, cws, x, n);
    cuda_batch16_swiglu(im, cws[0], cws[1], x, n, a);
    CUDA_CHECK_LAUNCH(im, "gate_up_silu");
}

/* Row lookups share the group decoder: table rows become float32 activations. */
template <int DT>
__global__ void embed_kernel(cuda_weight w, const int32_t *ids, int n, float *out, int add) {
    pdl_wait();
    int t = blockIdx.x;
    int groups = (int)(w.cols / 32);
    int64_t id = ids[t];
    if (id < 0 || id >= w.rows) return;
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
        float v[32];
        decode_group<DT>(w, id, g, v);
        float *o = out + (size_t)t * w.cols + (size_t)g * 32;
#pragma unroll
        for (int k = 0; k < 32; k++) o[k] = add ? o[k] + v[k] : v[k];
    }
}

static void embed_common(ts_backend *be, const ts_weight *table, const int32_t *ids, int n, float *out, int add) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    const cuda_weight *cw = (const cuda_weight *)table->prepared;
    const int32_t *dids = cuda_step_array(be, ids, n);
    if (!dids) return;
    if (!cw || !cw->gpu_supported) {
        /* rare: an embedding table of a type without a kernel; do it on the host */
        cuda_graph_abort(im, "an embedding fell back to the CPU");
        im->graphs_disabled = 1;
        ts_backend *cpu = im->opt.cpu_fallback;
        float *h = (float *)malloc((size_t)n * table->cols * sizeof(float));
        if (add) cudaMemcpy(h, out, (size_t)n * table->cols * sizeof(float), cudaMemcpyDeviceToHost);
        ts_weight host_t = *table;
        host_t.prepared = NULL;
        host_t.prepared_by = NULL;
        if (add) cpu->ops->embed_add(cpu, &host_t, ids, n, h);
        else cpu->ops->embed(cpu, &host_t, ids, n, h);
        cudaMemcpy(out, h, (size_t)n * table->cols * sizeof(float), cudaMemcpyHostToDevice);
        free(h);
        return;
    }
#define EM(DT) cuda_launch(im, embed_kernel<DT>, dim3(n), dim3(64), 0, *cw, dids, n, out, add)
    TS_CUDA_DISPATCH_DTYPE(cw->dtype, EM)
#undef EM
    CUDA_CHECK_LAUNCH(im, "embedding");
}

void cuda_embed(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, float *out) {
    embed_common(be, table, tokens, n, out, 0);
}

void cuda_embed_add(ts_backend *be, const ts_weight *table, const int32_t *ids, int n, float *x) {
    embed_common(be, table, ids, n, x, 1);
}

/* Attention over the paged KV cache. The step's keys and values are first written into their blocks;
 * then one thread block per (token, head) scores every cached position (a warp per position, lanes
 * across head_dim, so cache rows are read coalesced), takes the softmax in shared memory and sums the
 * values. Keys and values are stored as float32 (exact mode) or half. */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

#define ATTN_THREADS 256

template <typename T>
__device__ __forceinline__ float ld(const T *p) {
    if constexpr (sizeof(T) == 4) return *p;
    else return __half2float(*p);
}

template <typename T>
__global__ void kv_write_kernel(T *kc, T *vc, const float *k, const float *v, int kv_stride, int row_elems,
                                const int32_t *token_seq, const int32_t *seq_first, const int32_t *seq_start,
                                const int32_t *seq_block_off, const int32_t *block_table, int block_tokens) {
    int t = blockIdx.x;
    int s = token_seq[t];
    int pos = seq_start[s] + (t - seq_first[s]);
    int block = block_table[seq_block_off[s] + pos / block_tokens];
    size_t base = ((size_t)block * block_tokens + pos % block_tokens) * row_elems;
    for (int i = threadIdx.x; i < row_elems; i += blockDim.x) {
        float kv = k[(size_t)t * kv_stride + i], vv = v[(size_t)t * kv_stride + i];
        if constexpr (sizeof(T) == 4) {
            kc[base + i] = kv;
            vc[base + i] = vv;
        } else {
            kc[base + i] = __float2half(kv);
            vc[base + i] = __float2half(vv);
        }
    }
}

template <typename T>
__global__ void attention_kernel(const T *kc, const T *vc, const float *q, int q_stride, float *out, int n_heads,
                                 int n_kv, int head_dim, float scale, const int32_t *token_seq, const int32_t *seq_first,
                                 const int32_t *seq_start, const int32_t *seq_block_off, const int32_t *block_table,
                                 int block_tokens) {
    extern __shared__ float smem[];
    float *qs = smem;             /* head_dim */
    float *sc = smem + head_dim;  /* positions */
    __shared__ float red[32];
    int t = blockIdx.x, h = blockIdx.y;
    int s = token_seq[t];
    int pos = seq_start[s] + (t - seq_first[s]);
    int kvh = h / (n_heads / n_kv);
    int row_elems = n_kv * head_dim;
    const int32_t *blocks = block_table + seq_block_off[s];
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) qs[i] = q[(size_t)t * q_stride + (size_t)h * head_dim + i];
    __syncthreads();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    float local_max = -INFINITY;
    for (int p = warp; p <= pos; p += nw) {
        const T *kr = kc + ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems +
                      (size_t)kvh * head_dim;
        float d = 0.0f;
        for (int i = lane; i < head_dim; i += 32) d += qs[i] * ld(kr + i);
        for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        d *= scale;
        if (lane == 0) sc[p] = d;
        local_max = fmaxf(local_max, d);
    }
    /* block max */
    if (lane == 0) red[warp] = local_max;
    __syncthreads();
    float mx = -INFINITY;
    for (int i = 0; i < nw; i++) mx = fmaxf(mx, red[i]);
    __syncthreads();
    float local_sum = 0.0f;
    for (int p = threadIdx.x; p <= pos; p += blockDim.x) {
        float e = expf(sc[p] - mx);
        sc[p] = e;
        local_sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) local_sum += __shfl_xor_sync(0xffffffffu, local_sum, o);
    if (lane == 0) red[warp] = local_sum;
    __syncthreads();
    float sum = 0.0f;
    for (int i = 0; i < nw; i++) sum += red[i];
    float inv = 1.0f / sum;
    /* values: thread groups of head_dim threads split the positions, then combine */
    int groups = blockDim.x / head_dim;
    if (groups < 1) groups = 1;
    float *partial = sc + pos + 1; /* groups * head_dim floats */
    int gidx = threadIdx.x / head_dim, d = threadIdx.x % head_dim;
    if (blockDim.x >= head_dim) {
        float acc = 0.0f;
        if (gidx < groups)
            for (int p = gidx; p <= pos; p += groups) {
                const T *vr = vc + ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems +
                              (size_t)kvh * head_dim;
                acc += sc[p] * ld(vr + d);
            }
        if (gidx < groups) partial[gidx * head_dim + d] = acc;
        __syncthreads();
        if (threadIdx.x < head_dim) {
            float total = 0.0f;
            for (int g = 0; g < groups; g++) total += partial[g * head_dim + threadIdx.x];
            out[(size_t)t * n_heads * head_dim + (size_t)h * head_dim + threadIdx.x] = total * inv;
        }
    } else {
        for (int dd = threadIdx.x; dd < head_dim; dd += blockDim.x) {
            float acc = 0.0f;
            for (int p = 0; p <= pos; p++) {
                const T *vr = vc + ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems +
                              (size_t)kvh * head_dim;
                acc += sc[p] * ld(vr + dd);
            }
            out[(size_t)t * n_heads * head_dim + (size_t)h * head_dim + dd] = acc * inv;
        }
    }
}

void cuda_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q, int q_stride,
                    const float *k, const float *v, int kv_stride, int n_heads, float scale, float *out) {
    cuda_impl *im = cuda_of(be);
    cuda_step *st = &im->step;
    if (st->host != step) {
        cuda_log(im, 0, "cuda: attention called outside its step (begin_step missing)");
        return;
    }
    const ts_kv_layout *l = &kv->layout;
    int row = l->num_kv_heads * l->head_dim;
    int head_dim = l->head_dim;
    size_t elem = kv->half ? 2 : 4;
    char *kbase = (char *)kv->k + (size_t)layer * kv->layer_elems * elem;
    char *vbase = (char *)kv->v + (size_t)layer * kv->layer_elems * elem;
    int threads = 256;
    int groups = threads / head_dim > 0 ? threads / head_dim : 1;
    size_t smem = ((size_t)head_dim + st->max_pos + (size_t)groups * head_dim) * sizeof(float);
    static size_t configured = 0;
    if (smem > 48 * 1024 && smem > configured) {
        int max_optin = im->prop.sharedMemPerBlockOptin;
        if (smem > (size_t)max_optin) {
            cuda_log(im, 0, "cuda: attention over %d positions needs %zu bytes of shared memory; the GPU allows %d",
                     st->max_pos, smem, max_optin);
            return;
        }
        cudaFuncSetAttribute(attention_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_optin);
        cudaFuncSetAttribute(attention_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_optin);
        configured = (size_t)max_optin;
    }
    dim3 grid(st->n_tokens, n_heads);
    if (kv->half) {
        kv_write_kernel<__half><<<st->n_tokens, 128, 0, im->stream>>>((__half *)kbase, (__half *)vbase, k, v, kv_stride, row,
                                                                       st->token_seq, st->seq_first, st->seq_start,
                                                                       st->seq_block_off, st->block_table, l->block_tokens);
        attention_kernel<__half><<<grid, threads, smem, im->stream>>>(
            (const __half *)kbase, (const __half *)vbase, q, q_stride, out, n_heads, l->num_kv_heads, head_dim, scale,
            st->token_seq, st->seq_first, st->seq_start, st->seq_block_off, st->block_table, l->block_tokens);
    } else {
        kv_write_kernel<float><<<st->n_tokens, 128, 0, im->stream>>>((float *)kbase, (float *)vbase, k, v, kv_stride, row,
                                                                      st->token_seq, st->seq_first, st->seq_start,
                                                                      st->seq_block_off, st->block_table, l->block_tokens);
        attention_kernel<float><<<grid, threads, smem, im->stream>>>(
            (const float *)kbase, (const float *)vbase, q, q_stride, out, n_heads, l->num_kv_heads, head_dim, scale,
            st->token_seq, st->seq_first, st->seq_start, st->seq_block_off, st->block_table, l->block_tokens);
    }
    CUDA_CHECK_LAUNCH(im, "attention");
}

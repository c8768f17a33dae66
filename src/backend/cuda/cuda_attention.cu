/* Attention over the paged KV cache. The step's keys and values are first written into their blocks;
 * then split-K ("flash-decoding") blocks each take a chunk of positions of one (token, head) with an
 * online softmax, and a combine kernel merges the chunks. Cache rows are read with lanes across
 * head_dim, so loads are coalesced. Keys and values are float32 (exact mode) or half. */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"


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

#define ATT_WARPS 4
#define ATT_CHUNK 128 /* positions one block scores */
#define ATT_UNROLL 4

/* Flash-decoding: block (token, head, split) runs an online softmax over its chunk of positions, one
 * warp per position stride, lanes across head_dim; partial (max, sum, unnormalised output) go to
 * scratch and attn_combine merges the splits. Loads of ATT_UNROLL positions are issued together. */
template <typename T, int HPL>
__global__ void attn_partial(const T *kc, const T *vc, const float *q, int q_stride, int n_heads, int n_kv, int hd,
                             float scale, const int32_t *token_seq, const int32_t *seq_first, const int32_t *seq_start,
                             const int32_t *seq_block_off, const int32_t *block_table, int block_tokens, int n_splits,
                             float *part_o, float *part_ml) {
    __shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
    __shared__ float sm_o[ATT_WARPS][32 * HPL];
    int t = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int s = token_seq[t];
    int pos = seq_start[s] + (t - seq_first[s]);
    int p0 = split * ATT_CHUNK, p1 = min(p0 + ATT_CHUNK, pos + 1);
    int kvh = h / (n_heads / n_kv);
    size_t row_elems = (size_t)n_kv * hd;
    const int32_t *blocks = block_table + seq_block_off[s];
    float qv[HPL], o[HPL];
#pragma unroll
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        qv[i] = d < hd ? q[(size_t)t * q_stride + (size_t)h * hd + d] * scale : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int pb = p0 + warp * ATT_UNROLL; pb < p1; pb += ATT_WARPS * ATT_UNROLL) {
        float dot[ATT_UNROLL];
        size_t base[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            int p = min(pb + u, p1 - 1);
            base[u] = ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems + (size_t)kvh * hd;
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < HPL; i++) {
                int d = lane + 32 * i;
                if (d < hd) acc += qv[i] * ld(kc + base[u] + d);
            }
            dot[u] = acc;
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++)
            for (int off = 16; off > 0; off >>= 1) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], off);
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            if (pb + u >= p1) break;
            float m_new = fmaxf(m, dot[u]);
            float c = expf(m - m_new), e = expf(dot[u] - m_new);
            l = l * c + e;
#pragma unroll
            for (int i = 0; i < HPL; i++) {
                int d = lane + 32 * i;
                o[i] = o[i] * c + (d < hd ? e * ld(vc + base[u] + d) : 0.0f);
            }
            m = m_new;
        }
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < HPL; i++) sm_o[warp][lane + 32 * i] = o[i];
    __syncthreads();
    if (warp != 0) return;
    float M = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm_m[w]);
    float L = 0.0f, f[ATT_WARPS];
    for (int w = 0; w < ATT_WARPS; w++) {
        f[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M);
        L += sm_l[w] * f[w];
    }
    size_t idx = ((size_t)t * n_heads + h) * n_splits + split;
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        if (d >= hd) continue;
        float acc = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) acc += sm_o[w][d] * f[w];
        part_o[idx * hd + d] = acc;
    }
    if (lane == 0) {
        part_ml[2 * idx] = M;
        part_ml[2 * idx + 1] = L;
    }
}

__global__ void attn_combine(const float *part_o, const float *part_ml, int n_heads, int hd, int n_splits, float *out) {
    int t = blockIdx.x, h = blockIdx.y;
    size_t base = ((size_t)t * n_heads + h) * n_splits;
    float M = -INFINITY;
    for (int sp = 0; sp < n_splits; sp++) M = fmaxf(M, part_ml[2 * (base + sp)]);
    float L = 0.0f;
    for (int sp = 0; sp < n_splits; sp++) {
        float m = part_ml[2 * (base + sp)];
        if (m != -INFINITY) L += part_ml[2 * (base + sp) + 1] * expf(m - M);
    }
    float inv = 1.0f / L;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int sp = 0; sp < n_splits; sp++) {
            float m = part_ml[2 * (base + sp)];
            if (m != -INFINITY) acc += part_o[(base + sp) * hd + d] * expf(m - M);
        }
        out[(size_t)t * n_heads * hd + (size_t)h * hd + d] = acc * inv;
    }
}

template <typename T>
static void launch_attention(cuda_impl *im, const T *kbase, const T *vbase, const float *q, int q_stride, float *out,
                             int n_heads, int n_kv, int hd, float scale, int block_tokens) {
    cuda_step *st = &im->step;
    int n_splits = (st->max_pos + ATT_CHUNK - 1) / ATT_CHUNK;
    /* graph replays reuse the grid: round the split count up to a power of two */
    int splits = 1;
    while (splits < n_splits) splits *= 2;
    size_t parts = (size_t)st->n_tokens * n_heads * splits;
    float *part_o = (float *)cuda_scratch(im, &im->attn_scratch, &im->attn_scratch_bytes, parts * (hd + 2) * sizeof(float));
    if (!part_o) return;
    float *part_ml = part_o + parts * hd;
    dim3 grid(st->n_tokens, n_heads, splits);
#define ATT(HPL)                                                                                                   \
    attn_partial<T, HPL><<<grid, 32 * ATT_WARPS, 0, im->stream>>>(kbase, vbase, q, q_stride, n_heads, n_kv, hd, scale, \
                                                                  st->token_seq, st->seq_first, st->seq_start,      \
                                                                  st->seq_block_off, st->block_table, block_tokens, \
                                                                  splits, part_o, part_ml)
    if (hd <= 32) ATT(1);
    else if (hd <= 64) ATT(2);
    else if (hd <= 128) ATT(4);
    else if (hd <= 256) ATT(8);
    else {
        cuda_log(im, 0, "cuda: head_dim %d is larger than the attention kernel supports (256)", hd);
        return;
    }
#undef ATT
    attn_combine<<<dim3(st->n_tokens, n_heads), 128, 0, im->stream>>>(part_o, part_ml, n_heads, hd, splits, out);
}

void cuda_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q, int q_stride,
                    const float *k, const float *v, int kv_stride, int n_heads, float scale, float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    cuda_step *st = &im->step;
    if (st->host != step) {
        cuda_log(im, 0, "cuda: attention called outside its step (begin_step missing)");
        return;
    }
    const ts_kv_layout *l = &kv->layout;
    int row = l->num_kv_heads * l->head_dim;
    size_t elem = kv->half ? 2 : 4;
    char *kbase = (char *)kv->k + (size_t)layer * kv->layer_elems * elem;
    char *vbase = (char *)kv->v + (size_t)layer * kv->layer_elems * elem;
    if (kv->half) {
        kv_write_kernel<__half><<<st->n_tokens, 128, 0, im->stream>>>((__half *)kbase, (__half *)vbase, k, v, kv_stride, row,
                                                                       st->token_seq, st->seq_first, st->seq_start,
                                                                       st->seq_block_off, st->block_table, l->block_tokens);
        launch_attention<__half>(im, (const __half *)kbase, (const __half *)vbase, q, q_stride, out, n_heads,
                                 l->num_kv_heads, l->head_dim, scale, l->block_tokens);
    } else {
        kv_write_kernel<float><<<st->n_tokens, 128, 0, im->stream>>>((float *)kbase, (float *)vbase, k, v, kv_stride, row,
                                                                      st->token_seq, st->seq_first, st->seq_start,
                                                                      st->seq_block_off, st->block_table, l->block_tokens);
        launch_attention<float>(im, (const float *)kbase, (const float *)vbase, q, q_stride, out, n_heads,
                                l->num_kv_heads, l->head_dim, scale, l->block_tokens);
    }
    CUDA_CHECK_LAUNCH(im, "attention");
}

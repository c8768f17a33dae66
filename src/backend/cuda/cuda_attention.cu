/* Attention over the paged KV cache. Decode tokens go to split-K ("flash-decoding") blocks that each
 * take a share of the positions of one (token, head) with an online softmax; the last split to finish
 * merges them. Prefill sequences go to a tiled kernel. Cache rows are read with lanes across head_dim,
 * so loads are coalesced. Keys and values are float32 (exact mode) or half. In a pure decode step the
 * split-K kernel also stores the step's keys and values; otherwise kv_write_kernel does first. */
#include <math.h>
#include <string.h>

#include <cooperative_groups.h>

#include "backend/cuda/cuda_common.cuh"


__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ float ld(const T *p) {
    return to_float(*p);
}

/* Two floats as the halves of one 32-bit word, lo first (an mma fragment element pair, a cache pair). */
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

template <typename T>
__global__ void kv_write_kernel(T *kc, T *vc, const float *k, const float *v, int kv_stride, int row_elems,
                                const int32_t *token_seq, const int32_t *seq_first, const int32_t *seq_start,
                                const int32_t *seq_block_off, const int32_t *block_table, int block_tokens) {
    pdl_wait();
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

/* kv_write_kernel for rows of runs of 4 (float4 loads, 8- or 16-byte stores; a prefill step's cache rows),
 * the rows loaded before the chain of table lookups that places them: one element a thread after the
 * lookups took 7.0 us for 512 tokens of an 8B model (0.9 TB/s), this 4.1 us. Row elements up to 4 *
 * KV_WRITE_HELD * 128. */
#define KV_WRITE_HELD 4
template <typename T>
__global__ void __launch_bounds__(128) kv_write_quad_kernel(T *kc, T *vc, const float *k, const float *v, int kv_stride,
                                                            int row_elems, const int32_t *token_seq, const int32_t *seq_first,
                                                            const int32_t *seq_start, const int32_t *seq_block_off,
                                                            const int32_t *block_table, int block_tokens) {
    pdl_wait();
    const int t = blockIdx.x, quads = row_elems / 4;
    float4 kr[KV_WRITE_HELD], vr[KV_WRITE_HELD];
#pragma unroll
    for (int j = 0; j < KV_WRITE_HELD; j++) {
        const int i = threadIdx.x + j * 128;
        if (i < quads) {
            kr[j] = *(const float4 *)(k + (size_t)t * kv_stride + 4 * i);
            vr[j] = *(const float4 *)(v + (size_t)t * kv_stride + 4 * i);
        }
    }
    const int s = token_seq[t];
    const int pos = seq_start[s] + (t - seq_first[s]);
    const int block = block_table[seq_block_off[s] + pos / block_tokens];
    const size_t base = ((size_t)block * block_tokens + pos % block_tokens) * row_elems;
#pragma unroll
    for (int j = 0; j < KV_WRITE_HELD; j++) {
        const int i = threadIdx.x + j * 128;
        if (i >= quads) continue;
        if constexpr (sizeof(T) == 4) {
            *(float4 *)(kc + base + 4 * i) = kr[j];
            *(float4 *)(vc + base + 4 * i) = vr[j];
        } else {
            *(uint2 *)(kc + base + 4 * i) = make_uint2(pack_half2(kr[j].x, kr[j].y), pack_half2(kr[j].z, kr[j].w));
            *(uint2 *)(vc + base + 4 * i) = make_uint2(pack_half2(vr[j].x, vr[j].y), pack_half2(vr[j].z, vr[j].w));
        }
    }
}

/* Where a split-K attention block gets its inputs and leaves its results. */
struct attn_io {
    /* Pure decode steps (one token per sequence): the step's own keys and values, read from here for
     * the token's own position and written into the cache by one block per KV head; NULL: already in
     * the cache (kv_write_kernel). */
    const float *k_new, *v_new;
    int kv_stride;
    float *part_o, *part_ml; /* per split: unnormalised output, (max, sum) */
    unsigned *done;          /* per (token, head): splits finished; the last one merges and resets it */
    float *out;
    int8_t *xq;              /* optional int8 form of out for the next product (cuda_qact) */
    float2 *xs;
    int nibbles;
    void *dense;             /* optional 16-bit copy of out (cuda_qact.dense) of rows x cols */
    int dense_kind, rows;
    /* rope set: q and the step's own keys arrive as the projections left them, and the kernel applies
     * the per-head RMSNorm (where q_norm / k_norm are set) and the rotary embedding itself (qk_norm_rope's
     * arithmetic), in registers: the rotation pairs d and d + head_dim / 2 sit in one lane when head_dim
     * is 32 * HPL */
    int rope;
    const float *q_norm, *k_norm, *inv_freq;
    float eps, rope_factor;
    /* the splits of a (token, head) are one thread block cluster: they merge through shared memory
     * instead of part_o / done */
    int cluster;
};

/* The rotation of one position for a lane's pairs (elements lane + 32 i and lane + 32 (i + HPL / 2)),
 * scaled. It depends on the position alone, so the decode kernel computes it before waiting for q. */
template <int HPL>
struct rope_angles {
    float cs[HPL > 1 ? HPL / 2 : 1], sn[HPL > 1 ? HPL / 2 : 1];
};

template <int HPL>
__device__ __forceinline__ rope_angles<HPL> rope_at(const attn_io &io, int pos, int lane) {
    rope_angles<HPL> a;
#pragma unroll
    for (int i = 0; i < HPL / 2; i++) {
        sincosf((float)pos * __ldg(io.inv_freq + lane + 32 * i), &a.sn[i], &a.cs[i]);
        a.cs[i] *= io.rope_factor;
        a.sn[i] *= io.rope_factor;
    }
    return a;
}

/* x (a head, lanes across head_dim: element lane + 32 i) normalized by w (when set) and rotated. */
template <int HPL>
__device__ __forceinline__ void norm_rope_regs(float (&x)[HPL], const float *w, const attn_io &io,
                                               const rope_angles<HPL> &ang, int lane) {
    constexpr int H2 = HPL / 2, HD = 32 * HPL;
    if (w) {
        float ss = 0.0f;
#pragma unroll
        for (int i = 0; i < HPL; i++) ss += x[i] * x[i];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        float inv = rsqrtf(ss / (float)HD + io.eps);
#pragma unroll
        for (int i = 0; i < HPL; i++) x[i] = __ldg(w + lane + 32 * i) * (x[i] * inv);
    }
#pragma unroll
    for (int i = 0; i < H2; i++) {
        float a = x[i], b = x[i + H2];
        x[i] = a * ang.cs[i] - b * ang.sn[i];
        x[i + H2] = b * ang.cs[i] + a * ang.sn[i];
    }
}

/* The step's own key of a token's KV head as the cache holds it: rotated (and normalized) under io.rope. */
template <int HPL>
__device__ __forceinline__ void own_key(const attn_io &io, const float *k_own, int hd, const rope_angles<HPL> &ang,
                                        int lane, float (&kr)[HPL]) {
#pragma unroll
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        kr[i] = d < hd ? k_own[d] : 0.0f;
    }
    if (io.rope) norm_rope_regs<HPL>(kr, io.k_norm, io, ang, lane);
}

/* Folds one position's score and value row into a lane's running softmax state. */
template <int HPL>
__device__ __forceinline__ void online_step(float dot, const float *vrow_f, float &m, float &l, float (&o)[HPL],
                                            int lane, int hd) {
    float m_new = fmaxf(m, dot);
    float c = expf(m - m_new), e = expf(dot - m_new);
    l = l * c + e;
#pragma unroll
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        o[i] = o[i] * c + (d < hd ? e * vrow_f[i] : 0.0f);
    }
    m = m_new;
}

/* Writes one (token, head) output row from warp 0 (lanes across head_dim) and its int8 groups. */
template <int HPL>
__device__ __forceinline__ void store_head(const attn_io &io, int t, int h, int n_heads, int hd, int lane,
                                           const float (&acc)[HPL], float inv) {
    size_t base = (size_t)t * n_heads * hd + (size_t)h * hd;
    float v[HPL];
#pragma unroll
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        v[i] = acc[i] * inv;
        if (d < hd) io.out[base + d] = v[i];
        if (io.dense && d < hd) qact_store_dense(io.dense, io.dense_kind, t, (int64_t)h * hd + d, (int64_t)n_heads * hd, io.rows, v[i]);
    }
    /* head_dim is a multiple of 32 whenever xq is set: lanes of pass i hold one whole group */
    if (io.xq && hd == 32 * HPL) {
        qact_store_groups<HPL>(v, (int64_t)(base / 32), lane, io.nibbles, io.xq, io.xs);
    } else if (io.xq) {
#pragma unroll
        for (int i = 0; i < HPL; i++)
            if (32 * i < hd) qact_store_group(v[i], (int64_t)((base + 32 * i) / 32), lane, io.nibbles, io.xq, io.xs);
    }
}

/* The step's own key and value rows (hd elements at k_own, v_own) into the cache at dst, by the block's
 * threads; every block of the step reads them from k_own/v_own, not from the cache. */
template <typename T>
__device__ __forceinline__ void store_own_kv(T *kc_w, T *vc_w, size_t dst, const float *k_own, const float *v_own, int hd) {
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        if constexpr (sizeof(T) == 4) {
            kc_w[dst + d] = k_own[d];
            vc_w[dst + d] = v_own[d];
        } else {
            kc_w[dst + d] = __float2half(k_own[d]);
            vc_w[dst + d] = __float2half(v_own[d]);
        }
    }
}

template <typename T>
__device__ __forceinline__ void store_elem(T *dst, float v) {
    if constexpr (sizeof(T) == 4) *dst = v;
    else *dst = __float2half(v);
}

/* One split's unnormalised output (lanes across head_dim) and its (max, sum) into slot idx of the scratch. */
template <int HPL>
__device__ __forceinline__ void store_split(const attn_io &io, size_t idx, int hd, int lane, const float (&acc)[HPL],
                                            float M, float L) {
#pragma unroll
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        if (d < hd) io.part_o[idx * hd + d] = acc[i];
    }
    if (lane == 0) {
        io.part_ml[2 * idx] = M;
        io.part_ml[2 * idx + 1] = L;
    }
}

/* The softmax merge of n_splits partials into acc (lanes across head_dim), returning their softmax sum:
 * ml(sp, 0) and ml(sp, 1) are split sp's (max, sum), o(sp, d) element d of its unnormalised output. Lanes
 * find the largest split maximum together; the sums then run over splits in order, several at a time (the
 * loads are independent, so unrolling keeps them in flight together). One function for both places the
 * partials live, so that the two merges give the same results. */
template <int HPL, int MAX_SPLITS = 0, typename ML, typename O>
__device__ __forceinline__ float fold_splits(int n_splits, int hd, int lane, float (&acc)[HPL], ML ml, O o) {
    float M = -INFINITY;
    for (int sp = lane; sp < n_splits; sp += 32) M = fmaxf(M, ml(sp, 0));
    for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
    float L = 0.0f;
#pragma unroll
    for (int i = 0; i < HPL; i++) acc[i] = 0.0f;
    auto add_split = [&](int sp) {
        float ms = ml(sp, 0), ls = ml(sp, 1);
        float c = ms == -INFINITY ? 0.0f : expf(ms - M);
        L += ls * c;
#pragma unroll
        for (int i = 0; i < HPL; i++) {
            int d = lane + 32 * i;
            if (d < hd) acc[i] += o(sp, d) * c;
        }
    };
    if constexpr (MAX_SPLITS > 0) { /* at most MAX_SPLITS: unrolled whole, every split's loads and exp at once */
#pragma unroll
        for (int sp = 0; sp < MAX_SPLITS; sp++)
            if (sp < n_splits) add_split(sp);
    } else {
#pragma unroll 8
        for (int sp = 0; sp < n_splits; sp++) add_split(sp);
    }
    return L;
}

/* The last split of a (token, head) pair merges all n_splits partials from the scratch buffers. */
template <int HPL>
__device__ __forceinline__ float merge_splits(const attn_io &io, size_t pair, int n_splits, int hd, int lane,
                                              float (&acc)[HPL]) {
    const float *pml = io.part_ml + 2 * pair * n_splits, *po = io.part_o + pair * n_splits * hd;
    return fold_splits<HPL>(
        n_splits, hd, lane, acc, [&](int sp, int j) { return __ldcg(pml + 2 * sp + j); },
        [&](int sp, int d) { return __ldcg(po + (size_t)sp * hd + d); });
}

#define ATT_MAX_CLUSTER 8 /* the portable cluster size: io.cluster only up to 8 splits */
/* Every block of a cluster arrives on the cluster barrier when it starts (relaxed: nothing to publish) and
 * waits on it before writing another block's shared memory, which may only be written once that block
 * runs; by then the wait returns at once. */
__device__ __forceinline__ void cluster_arrive_started() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}

/* The splits of a (token, head) as one cluster (io.cluster): every block's warp 0 writes its unnormalised
 * output and (max, sum) into the first block's shared memory, and after one cluster barrier the first
 * block merges them from there with fold_splits, as the scratch path does, so the results are the same.
 * Against that path, no fence, no atomic and no round trip through L2 between the last split and the
 * output: at batch 1 the merge is on the critical path of every layer. The first block once read the
 * partials from the others' shared memory instead, a chain of remote loads a split, and a second barrier
 * kept the others alive meanwhile: globaltimer stamps on an H200 put that at 2.4 + 0.35 us of the 5.5 us
 * an 8B or 0.6B batch-1 attention block ran after its wait. All threads of every block of the cluster
 * must call this, and must have called cluster_arrive_started first. */
template <int HPL>
__device__ __forceinline__ void cluster_merge(const attn_io &io, int warp, int lane, int hd, const float (&acc)[HPL],
                                              float M, float L, int n_splits, int t, int h, int n_heads) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    __shared__ float cl_o[ATT_MAX_CLUSTER][32 * HPL], cl_ml[ATT_MAX_CLUSTER][2];
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned rank = cluster.block_rank();
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); /* every block has started (cluster_arrive_started) */
    if (warp == 0) {
        float *o = cluster.map_shared_rank(&cl_o[rank][0], 0);
#pragma unroll
        for (int i = 0; i < HPL; i++) o[lane + 32 * i] = acc[i];
        if (lane == 0) {
            float *ml = cluster.map_shared_rank(&cl_ml[rank][0], 0);
            ml[0] = M;
            ml[1] = L;
        }
    }
    cluster.sync(); /* the partials are in the first block's shared memory; the others may leave */
    if (rank == 0 && warp == 0) {
        float sum[HPL];
        float Lx = fold_splits<HPL, ATT_MAX_CLUSTER>(
            n_splits, hd, lane, sum, [&](int r, int j) { return cl_ml[r][j]; }, [&](int r, int d) { return cl_o[r][d]; });
        store_head<HPL>(io, t, h, n_heads, hd, lane, sum, 1.0f / Lx);
    }
#else
    (void)io, (void)warp, (void)lane, (void)hd, (void)acc, (void)M, (void)L, (void)n_splits, (void)t, (void)h, (void)n_heads;
#endif
}


/* A warp's ATT_UNROLL cache rows from position pb on (clamped to p_end - 1), as stored: keys and values
 * of its KV head, lanes across head_dim. */
template <typename T, int HPL>
__device__ __forceinline__ void load_cache_rows(const T *kc, const T *vc, const int32_t *blocks, int block_tokens,
                                                size_t row_elems, int kvh, int hd, int pb, int p_end, int lane,
                                                T (&kr)[ATT_UNROLL][HPL], T (&vr)[ATT_UNROLL][HPL]) {
#pragma unroll
    for (int u = 0; u < ATT_UNROLL; u++) {
        int p = min(pb + u, p_end - 1);
        size_t base = ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems + (size_t)kvh * hd;
#pragma unroll
        for (int i = 0; i < HPL; i++) {
            int d = lane + 32 * i;
            kr[u][i] = d < hd ? kc[base + d] : T(0.0f);
            vr[u][i] = d < hd ? vc[base + d] : T(0.0f);
        }
    }
}

/* Flash-decoding: block (token, head, split) runs an online softmax over its share of the token's
 * positions, one warp per position stride, lanes across head_dim. With one split the block writes the
 * output; otherwise partial (max, sum, unnormalised output) go to scratch and the split that finishes
 * last for its (token, head) merges them, so no second launch is needed. */
template <typename T, int HPL>
__global__ void attn_partial(const T *kc_all, const T *vc_all, T *kc_w, T *vc_w, const float *q, int q_stride,
                             int n_heads, int n_kv, int hd, float scale, const int32_t *token_seq,
                             const int32_t *seq_first, const int32_t *seq_start, const int32_t *seq_block_off,
                             const int32_t *block_table, int block_tokens, int n_splits, const int32_t *token_list,
                             attn_io io) {
    __shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
    __shared__ float sm_o[ATT_WARPS][32 * HPL];
    const T *kc = kc_all, *vc = vc_all;
    /* Until pdl_wait, only what the step's earlier kernels do not write: the step's tables (uploaded
     * before its first kernel) and, in a pure decode step, the cache rows before the token's own
     * position (stored by earlier steps). Under dependent launch the walk through the tables and the
     * first pass's rows then overlap the projection that produces q, k and v. */
    if (io.cluster) cluster_arrive_started();
    int t = token_list ? token_list[blockIdx.x] : blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int s = token_seq[t];
    int pos = seq_start[s] + (t - seq_first[s]);
    int group = n_heads / n_kv, kvh = h / group;
    size_t row_elems = (size_t)n_kv * hd;
    const int32_t *blocks = block_table + seq_block_off[s];
    const float *k_own = io.k_new ? io.k_new + (size_t)t * io.kv_stride + (size_t)kvh * hd : NULL;
    const float *v_own = io.k_new ? io.v_new + (size_t)t * io.kv_stride + (size_t)kvh * hd : NULL;
    int chunk = (pos + n_splits) / n_splits; /* ceil((pos + 1) / n_splits) */
    int p0 = split * chunk, p1 = min(p0 + chunk, pos + 1);
    int p1_cache = k_own ? min(p1, pos) : p1; /* the own position comes from k_own */
    T kr[ATT_UNROLL][HPL], vr[ATT_UNROLL][HPL];
    int pb = p0 + warp * ATT_UNROLL;
    bool early = k_own && pb < p1_cache; /* rows below pos only: otherwise kv_write_kernel just stored pos */
    if (early) load_cache_rows<T, HPL>(kc, vc, blocks, block_tokens, row_elems, kvh, hd, pb, p1_cache, lane, kr, vr);
    rope_angles<HPL> ang = {};
    if (io.rope) ang = rope_at<HPL>(io, pos, lane);
    pdl_wait();
    float qv[HPL], o[HPL];
#pragma unroll
    for (int i = 0; i < HPL; i++) {
        int d = lane + 32 * i;
        qv[i] = d < hd ? q[(size_t)t * q_stride + (size_t)h * hd + d] : 0.0f;
        o[i] = 0.0f;
    }
    if (io.rope) norm_rope_regs<HPL>(qv, io.q_norm, io, ang, lane);
#pragma unroll
    for (int i = 0; i < HPL; i++) qv[i] *= scale;
    float m = -INFINITY, l = 0.0f;
    for (; pb < p1_cache; pb += ATT_WARPS * ATT_UNROLL) {
        if (!early) load_cache_rows<T, HPL>(kc, vc, blocks, block_tokens, row_elems, kvh, hd, pb, p1_cache, lane, kr, vr);
        early = false;
        float dot[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < HPL; i++) acc += qv[i] * to_float(kr[u][i]);
            dot[u] = acc;
        }
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++)
            for (int off = 16; off > 0; off >>= 1) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], off);
        /* the pass's rows folded at once: one rescale by the pass's maximum, then their exponentials side
         * by side (one online_step a row made a chain of ATT_UNROLL dependent exponentials and rescales) */
        float m_new = m;
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++)
            if (pb + u < p1_cache) m_new = fmaxf(m_new, dot[u]);
        const float c = expf(m - m_new);
        l *= c;
#pragma unroll
        for (int i = 0; i < HPL; i++) o[i] *= c;
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            if (pb + u >= p1_cache) break;
            const float e = expf(dot[u] - m_new);
            l += e;
#pragma unroll
            for (int i = 0; i < HPL; i++)
                if (lane + 32 * i < hd) o[i] += e * to_float(vr[u][i]);
        }
        m = m_new;
    }
    if (k_own && p1 == pos + 1 && p0 <= pos && warp == ATT_WARPS - 1) {
        float dot = 0.0f, vn[HPL], kn[HPL];
        own_key<HPL>(io, k_own, hd, ang, lane, kn);
        /* the token's own key (normalized and rotated) and value into the cache, once per KV head, by the
         * warp that has them in registers; no block of this step reads them from there. (The first split
         * stored them before and paid a second own_key before its q on the path to the merge.) */
        const bool store = h % group == 0;
        const size_t dst =
            ((size_t)blocks[pos / block_tokens] * block_tokens + pos % block_tokens) * row_elems + (size_t)kvh * hd;
#pragma unroll
        for (int i = 0; i < HPL; i++) {
            int d = lane + 32 * i;
            dot += qv[i] * kn[i];
            vn[i] = d < hd ? v_own[d] : 0.0f;
            if (store && d < hd) {
                store_elem(kc_w + dst + d, kn[i]);
                store_elem(vc_w + dst + d, vn[i]);
            }
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        online_step<HPL>(dot, vn, m, l, o, lane, hd);
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < HPL; i++) sm_o[warp][lane + 32 * i] = o[i];
    __syncthreads();
    float M = -INFINITY, L = 0.0f, acc[HPL] = {};
    if (warp == 0) {
        for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm_m[w]);
        float f[ATT_WARPS];
        for (int w = 0; w < ATT_WARPS; w++) {
            f[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M);
            L += sm_l[w] * f[w];
        }
#pragma unroll
        for (int i = 0; i < HPL; i++) {
            int d = lane + 32 * i;
            if (d < hd)
                for (int w = 0; w < ATT_WARPS; w++) acc[i] += sm_o[w][d] * f[w];
        }
    }
    if (io.cluster) {
        cluster_merge<HPL>(io, warp, lane, hd, acc, M, L, n_splits, t, h, n_heads);
        return;
    }
    if (warp != 0) return;
    if (n_splits == 1) {
        store_head<HPL>(io, t, h, n_heads, hd, lane, acc, 1.0f / L);
        return;
    }
    size_t pair = (size_t)blockIdx.x * n_heads + h;
    store_split<HPL>(io, pair * n_splits + split, hd, lane, acc, M, L);
    /* publish the partial, then count it; the block that completes the count merges every split */
    __threadfence();
    __syncwarp();
    unsigned prior = 0;
    if (lane == 0) prior = atomicAdd(io.done + pair, 1u);
    prior = __shfl_sync(0xffffffffu, prior, 0);
    if (prior != (unsigned)n_splits - 1) return;
    if (lane == 0) io.done[pair] = 0; /* ready for the next step (and graph replays) */
    __threadfence();
    L = merge_splits<HPL>(io, pair, n_splits, hd, lane, acc);
    store_head<HPL>(io, t, h, n_heads, hd, lane, acc, 1.0f / L);
}

/* DPL consecutive elements of a cache row as floats, in one load (8 bytes for 4 halves). */
template <typename T, int DPL>
__device__ __forceinline__ void load_row_part(const T *p, float (&f)[DPL]) {
    if constexpr (sizeof(T) == 2 && DPL % 2 == 0) {
        __half2 h[DPL / 2];
        if constexpr (DPL == 2) *(uint32_t *)h = *(const uint32_t *)p;
        else if constexpr (DPL == 4) *(uint2 *)h = *(const uint2 *)p;
        else *(uint4 *)h = *(const uint4 *)p;
#pragma unroll
        for (int i = 0; i < DPL / 2; i++) {
            float2 v = __half22float2(h[i]);
            f[2 * i] = v.x;
            f[2 * i + 1] = v.y;
        }
    } else if constexpr (sizeof(T) == 4 && DPL % 4 == 0) {
#pragma unroll
        for (int i = 0; i < DPL; i += 4) {
            float4 v = *(const float4 *)(p + i);
            f[i] = v.x;
            f[i + 1] = v.y;
            f[i + 2] = v.z;
            f[i + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < DPL; i++) f[i] = ld(p + i);
    }
}

/* The end of a grouped decode attention block (attn_decode_gqa, attn_decode_mma): its W warps left their
 * (max, sum, unnormalised output) per query head in shared memory (sm_o rows in dim order); warp w merges
 * heads w, w + W, ... over the warps, then writes the output (one split) or its split's partials, and the
 * block completing a (token, KV head)'s count of splits merges them. All threads must call this. */
template <int DPL, int W, int GS>
__device__ __forceinline__ void attn_block_finish(const attn_io &io, const float (&sm_m)[W][GS], const float (&sm_l)[W][GS],
                                                  const float (&sm_o)[W][GS][32 * DPL], int G, int t, int kvh,
                                                  int n_heads, int n_kv, int n_splits, int split) {
    constexpr int HD = 32 * DPL;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int g = warp; g < G; g += W) {
        float acc[DPL], L = 0.0f, M = -INFINITY;
        for (int w = 0; w < W; w++) M = fmaxf(M, sm_m[w][g]);
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[i] = 0.0f;
        for (int w = 0; w < W; w++) {
            float f = sm_m[w][g] == -INFINITY ? 0.0f : __expf(sm_m[w][g] - M);
            L += sm_l[w][g] * f;
#pragma unroll
            for (int i = 0; i < DPL; i++) acc[i] += sm_o[w][g][lane + 32 * i] * f;
        }
        const int h = kvh * G + g;
        if (n_splits == 1) store_head<DPL>(io, t, h, n_heads, HD, lane, acc, 1.0f / L);
        else store_split<DPL>(io, ((size_t)blockIdx.x * n_heads + h) * n_splits + split, HD, lane, acc, M, L);
    }
    if (n_splits == 1) return;
    /* publish the partials, then count this split; the block completing the count merges every split */
    __threadfence();
    __syncthreads();
    __shared__ unsigned prior;
    const size_t counter = (size_t)blockIdx.x * n_kv + kvh;
    if (threadIdx.x == 0) prior = atomicAdd(io.done + counter, 1u);
    __syncthreads();
    if (prior != (unsigned)n_splits - 1) return;
    if (threadIdx.x == 0) io.done[counter] = 0;
    __threadfence();
    for (int g = warp; g < G; g += W) {
        const int h = kvh * G + g;
        float acc[DPL];
        const float L = merge_splits<DPL>(io, (size_t)blockIdx.x * n_heads + h, n_splits, HD, lane, acc);
        store_head<DPL>(io, t, h, n_heads, HD, lane, acc, 1.0f / L);
    }
}

/* Split-K decode attention for batches, one block per (token, KV head, split) serving all G query heads
 * of the KV head: each key and value row is read once for the G heads (attn_partial reads it once per
 * query head), in one vector load per lane (lane l holds elements DPL l .. DPL l + DPL - 1). Measured
 * 74 us a layer for attn_partial at 32 tokens of 8B (docs/cuda-notes.md). Same contract as
 * attn_partial: the step's own key/value rows come from io.k_new and are stored by one block (here split 0). */
#define GQA_WARPS 8
template <typename T, int DPL, int G>
__global__ void __launch_bounds__(32 * GQA_WARPS)
    attn_decode_gqa(const T *kc, const T *vc, T *kc_w, T *vc_w, const float *q, int q_stride, int n_heads, int n_kv,
                    float scale, const int32_t *token_seq, const int32_t *seq_first, const int32_t *seq_start,
                    const int32_t *seq_block_off, const int32_t *block_table, int block_tokens, int n_splits,
                    const int32_t *token_list, attn_io io) {
    constexpr int HD = 32 * DPL;
    /* rows a warp takes per pass (and holds twice: this pass and the next). Four where the query and
     * output registers are few; where they are many (8B: G 4, DPL 4) four rows took 161 registers and one
     * block a multiprocessor: measured on an H200, 8B batch 32 5.44k tok/s with four against 5.97k with two,
     * 0.6B (G 2) 18.4k against 17.1k */
    constexpr int U = G * DPL <= 8 ? 4 : 2;
    __shared__ float sm_m[GQA_WARPS][G], sm_l[GQA_WARPS][G];
    __shared__ __align__(16) float sm_o[GQA_WARPS][G][HD];
    const int t = token_list ? token_list[blockIdx.x] : blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int s = token_seq[t], pos = seq_start[s] + (t - seq_first[s]);
    const size_t row_elems = (size_t)n_kv * HD;
    const int32_t *blocks = block_table + seq_block_off[s];
    const float *k_own = io.k_new ? io.k_new + (size_t)t * io.kv_stride + (size_t)kvh * HD : NULL;
    const float *v_own = io.k_new ? io.v_new + (size_t)t * io.kv_stride + (size_t)kvh * HD : NULL;
    const int chunk = (pos + n_splits) / n_splits;
    const int p0 = split * chunk, p1 = min(p0 + chunk, pos + 1);
    const int p1_cache = k_own ? min(p1, pos) : p1;
    /* as in attn_partial: the tables and, in a pure decode step, the first pass's rows before the wait */
    float kf[U][DPL], vf[U][DPL];
    auto load_pass = [&](int pb, float (&kx)[U][DPL], float (&vx)[U][DPL]) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            int p = min(pb + u, p1_cache - 1);
            size_t base = ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems +
                          (size_t)kvh * HD + DPL * lane;
            load_row_part<T, DPL>(kc + base, kx[u]);
            load_row_part<T, DPL>(vc + base, vx[u]);
        }
    };
    int pb = p0 + warp * U;
    bool early = k_own && pb < p1_cache;
    if (early) load_pass(pb, kf, vf);
    pdl_wait();
    if (k_own && split == 0)
        store_own_kv(kc_w, vc_w,
                     ((size_t)blocks[pos / block_tokens] * block_tokens + pos % block_tokens) * row_elems + (size_t)kvh * HD,
                     k_own, v_own, HD);
    float qv[G][DPL], o[G][DPL], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        const float *qr = q + (size_t)t * q_stride + (size_t)(kvh * G + g) * HD + DPL * lane;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            qv[g][i] = qr[i] * scale;
            o[g][i] = 0.0f;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    /* the first n rows of a pass at once: their G x n dot products reduce across the lanes together and
     * the running maximum moves once, so a pass is not a chain of n shuffle reductions and rescales */
    auto fold = [&](const float (&kx)[U][DPL], const float (&vx)[U][DPL], int n) {
        float dot[U][G];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int g = 0; g < G; g++) {
                dot[u][g] = 0.0f;
#pragma unroll
                for (int i = 0; i < DPL; i++) dot[u][g] = fmaf(qv[g][i], kx[u][i], dot[u][g]);
            }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int g = 0; g < G; g++) dot[u][g] += __shfl_xor_sync(0xffffffffu, dot[u][g], off);
#pragma unroll
        for (int g = 0; g < G; g++) {
            float m_new = m[g];
#pragma unroll
            for (int u = 0; u < U; u++)
                if (u < n) m_new = fmaxf(m_new, dot[u][g]);
            const float c = __expf(m[g] - m_new);
            l[g] *= c;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[g][i] *= c;
#pragma unroll
            for (int u = 0; u < U; u++)
                if (u < n) {
                    const float e = __expf(dot[u][g] - m_new);
                    l[g] += e;
#pragma unroll
                    for (int i = 0; i < DPL; i++) o[g][i] = fmaf(e, vx[u][i], o[g][i]);
                }
            m[g] = m_new;
        }
    };
    /* the next pass's rows are loaded before this pass is folded: a warp has a pass in flight while it
     * computes instead of waiting a full memory latency every pass */
    if (!early && pb < p1_cache) load_pass(pb, kf, vf);
    for (; pb < p1_cache; pb += GQA_WARPS * U) {
        float kn[U][DPL], vn[U][DPL];
        const bool more = pb + GQA_WARPS * U < p1_cache;
        if (more) load_pass(pb + GQA_WARPS * U, kn, vn);
        fold(kf, vf, min(U, p1_cache - pb));
        if (more) {
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int i = 0; i < DPL; i++) {
                    kf[u][i] = kn[u][i];
                    vf[u][i] = vn[u][i];
                }
        }
    }
    if (k_own && p1 == pos + 1 && p0 <= pos && warp == GQA_WARPS - 1) {
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                kf[u][i] = u == 0 ? k_own[DPL * lane + i] : 0.0f;
                vf[u][i] = u == 0 ? v_own[DPL * lane + i] : 0.0f;
            }
        fold(kf, vf, 1);
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        if (lane == 0) {
            sm_m[warp][g] = m[g];
            sm_l[warp][g] = l[g];
        }
#pragma unroll
        for (int i = 0; i < DPL; i++) sm_o[warp][g][DPL * lane + i] = o[g][i];
    }
    __syncthreads();
    attn_block_finish<DPL, GQA_WARPS, G>(io, sm_m, sm_l, sm_o, G, t, kvh, n_heads, n_kv, n_splits, split);
}

#define TILE_ROWS 64 /* query rows (tokens x query heads of one KV head) per tiled block */
#define TILE_KEYS 32

/* Prefill: one block per (query tile, KV head). The tile's query rows are every query head of the KV
 * head for TILE_ROWS / group consecutive tokens of one sequence, so each key/value row loaded into
 * shared memory serves all of them; scores, online softmax and the output accumulate in shared memory. */
template <typename T>
__global__ void attn_tiled(const T *kc, const T *vc, const float *q, int q_stride, float *out, int n_heads, int n_kv,
                           int hd, float scale, const int32_t *seq_first, const int32_t *seq_len, const int32_t *seq_start,
                           const int32_t *seq_block_off, const int32_t *block_table, int block_tokens,
                           const int32_t *tile_seq, const int32_t *tile_token, int tile_tokens) {
    pdl_wait();
    extern __shared__ float sm[];
    const int group = n_heads / n_kv, kvh = blockIdx.y, hdp = hd + 1;
    float *Qs = sm;                        /* TILE_ROWS x hd */
    float *Os = Qs + TILE_ROWS * hd;       /* TILE_ROWS x hd */
    float *Ks = Os + TILE_ROWS * hd;       /* TILE_KEYS x (hd + 1): padded against bank conflicts */
    float *Vs = Ks + TILE_KEYS * hdp;      /* TILE_KEYS x hd */
    float *S = Vs + TILE_KEYS * hd;        /* TILE_ROWS x TILE_KEYS */
    float *row_m = S + TILE_ROWS * TILE_KEYS, *row_l = row_m + TILE_ROWS, *row_c = row_l + TILE_ROWS;
    int *row_pos = (int *)(row_c + TILE_ROWS);
    int s = tile_seq[blockIdx.x], t0 = tile_token[blockIdx.x];
    int nq = min(tile_tokens, seq_first[s] + seq_len[s] - t0);
    int rows = nq * group;
    int pos0 = seq_start[s] + (t0 - seq_first[s]);
    const int32_t *blocks = block_table + seq_block_off[s];
    size_t row_elems = (size_t)n_kv * hd;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
        int r = i / hd, d = i % hd, qi = r / group, hh = r % group;
        Qs[i] = q[(size_t)(t0 + qi) * q_stride + (size_t)(kvh * group + hh) * hd + d] * scale;
        Os[i] = 0.0f;
    }
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        row_m[r] = -INFINITY;
        row_l[r] = 0.0f;
        row_pos[r] = pos0 + r / group;
    }
    int last = pos0 + nq - 1;
    for (int k0 = 0; k0 <= last; k0 += TILE_KEYS) {
        int nk = min(TILE_KEYS, last + 1 - k0);
        __syncthreads();
        for (int i = threadIdx.x; i < nk * hd; i += blockDim.x) {
            int j = i / hd, d = i % hd, p = k0 + j;
            size_t base = ((size_t)blocks[p / block_tokens] * block_tokens + p % block_tokens) * row_elems + (size_t)kvh * hd;
            Ks[j * hdp + d] = ld(kc + base + d);
            Vs[j * hd + d] = ld(vc + base + d);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < rows * TILE_KEYS; i += blockDim.x) {
            int r = i / TILE_KEYS, j = i % TILE_KEYS, p = k0 + j;
            float v = -INFINITY;
            if (j < nk && p <= row_pos[r]) {
                const float *qr = Qs + r * hd, *kr = Ks + j * hdp;
                float acc = 0.0f;
                for (int d = 0; d < hd; d++) acc = fmaf(qr[d], kr[d], acc);
                v = acc;
            }
            S[i] = v;
        }
        __syncthreads();
        for (int r = warp; r < rows; r += nw) {
            float v = S[r * TILE_KEYS + lane];
            float mt = v;
            for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            float m_old = row_m[r], m_new = fmaxf(m_old, mt);
            float p = v == -INFINITY ? 0.0f : expf(v - m_new);
            float sum = p;
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            S[r * TILE_KEYS + lane] = p;
            if (lane == 0) {
                float c = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
                row_c[r] = c;
                row_l[r] = row_l[r] * c + sum;
                row_m[r] = m_new;
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
            int r = i / hd, d = i % hd;
            float acc = Os[i] * row_c[r];
            const float *pr = S + r * TILE_KEYS;
            for (int j = 0; j < nk; j++) acc = fmaf(pr[j], Vs[j * hd + d], acc);
            Os[i] = acc;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
        int r = i / hd, d = i % hd, qi = r / group, hh = r % group;
        out[(size_t)(t0 + qi) * n_heads * hd + (size_t)(kvh * group + hh) * hd + d] = Os[i] / row_l[r];
    }
}

/* Prefill on the tensor cores (half KV cache): flash attention with mma.sync m16n8k16 (fp16 inputs,
 * float32 accumulation). Block (tile of 16 tokens of one sequence, KV head, slice of its query heads):
 * each warp owns one query head's 16 rows; keys and values pass through shared memory 32 rows at a
 * time and serve every query head of the KV head. Fragment layouts (PTX ISA, m16n8k16): A row g / g + 8,
 * columns 2t, 2t + 1 (+ 8); B rows 2t, 2t + 1 (+ 8), column g; C rows g / g + 8, columns 2t, 2t + 1,
 * where g = lane / 4 and t = lane % 4. The score accumulators of two 8-key tiles are the A fragment of
 * the probabilities, so P never leaves registers. The next 32 keys load (cp.async) while the current
 * ones are used; key fragments come from ldmatrix, value fragments from ldmatrix.trans (the value
 * matrix is the B operand with keys as its K index, so a transposing load serves it directly); scores
 * are kept in base 2 (q pre-scaled by log2 e) and masked only where a step reaches past the tile's
 * first position; blocks take the longest tiles (a sequence's last) first. Before these (one buffer,
 * element loads of values, every step masked, tiles in order): 81 us a layer of an 8B prefill of 512
 * tokens on an H200, 12 % of the prefill. */
#define MMA_TILE_TOKENS 16
#define MMA_ATT_WARPS 4
#define MMA_KEYS 32

__device__ __forceinline__ void mma_f16_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* 16 bytes global -> shared without passing through registers; src_bytes 0 writes zeros. */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;");
#endif
}

template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(PENDING));
#endif
}

/* Four 8x8 half matrices; lanes 8i..8i+7 give the row addresses of matrix i. */
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half *row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned a = (unsigned)__cvta_generic_to_shared(row);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
#endif
}

/* 2^x in one instruction (2^-inf = 0); the scores it takes are within a few units of their row's maximum */
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

template <int HD>
__global__ void __launch_bounds__(32 * MMA_ATT_WARPS)
    attn_prefill_mma(const __half *kc, const __half *vc, const float *q, int q_stride, float *out, int n_heads, int n_kv,
                     float scale, const int32_t *seq_first, const int32_t *seq_len, const int32_t *seq_start,
                     const int32_t *seq_block_off, const int32_t *block_table, int block_tokens,
                     const int32_t *tile_seq, const int32_t *tile_token, void *dense, int dense_kind) {
    pdl_wait();
    constexpr int KC = HD / 16, NT = HD / 8, KS = HD + 8; /* row stride padded against bank conflicts */
    __shared__ __align__(16) __half Ks[2][MMA_KEYS][KS];
    __shared__ __align__(16) __half Vs[2][MMA_KEYS][KS];
    const int group = n_heads / n_kv, kvh = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int hh = blockIdx.z * MMA_ATT_WARPS + warp;
    const bool active = hh < group;
    const int h = kvh * group + min(hh, group - 1);
    const int tile = gridDim.x - 1 - blockIdx.x;
    const int s = tile_seq[tile], t0 = tile_token[tile];
    const int nq = min(MMA_TILE_TOKENS, seq_first[s] + seq_len[s] - t0);
    const int pos0 = seq_start[s] + (t0 - seq_first[s]), last = pos0 + nq - 1;
    const int32_t *blocks = block_table + seq_block_off[s];
    const size_t row_elems = (size_t)n_kv * HD;
    /* thread i copies 16 bytes (column c) of rows i / (HD / 8) + LOAD_STEP * k of each chunk */
    constexpr int PER_ROW = HD / 8, LOAD_STEP = 32 * MMA_ATT_WARPS / PER_ROW;
    const int bt_shift = (block_tokens & (block_tokens - 1)) == 0 ? __ffs(block_tokens) - 1 : -1;
    const int load_row = threadIdx.x / PER_ROW, load_col = (threadIdx.x % PER_ROW) * 8;
    auto load_keys = [&](int buf, int k0) {
#pragma unroll
        for (int j = load_row; j < MMA_KEYS; j += LOAD_STEP) {
            const int p = k0 + j, bytes = p <= last ? 16 : 0;
            size_t base = 0;
            if (bytes) {
                const int blk = bt_shift >= 0 ? p >> bt_shift : p / block_tokens;
                base = ((size_t)blocks[blk] * block_tokens + (p - blk * block_tokens)) * row_elems + (size_t)kvh * HD + load_col;
            }
            cp_async16(&Ks[buf][j][load_col], kc + base, bytes);
            cp_async16(&Vs[buf][j][load_col], vc + base, bytes);
        }
        cp_async_commit();
    };
    load_keys(0, 0);
    const float qscale = scale * 1.4426950408889634f; /* log2 e: exp2 of base-2 scores */
    uint32_t qa[KC][4];
    {
        /* rows g and g + 8 of the tile, neighbouring columns a pair (one 8-byte load where aligned) */
        const float *qrow[2] = {q + (size_t)(t0 + min(g, nq - 1)) * q_stride + (size_t)h * HD + 2 * t,
                                q + (size_t)(t0 + min(g + 8, nq - 1)) * q_stride + (size_t)h * HD + 2 * t};
        const bool paired = ((uintptr_t)q & 7) == 0 && (q_stride & 1) == 0;
        float2 qv[KC][4];
#pragma unroll
        for (int kc = 0; kc < KC; kc++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float *qr = qrow[i & 1] + kc * 16 + ((i & 2) ? 8 : 0);
                qv[kc][i] = paired ? *(const float2 *)qr : make_float2(qr[0], qr[1]);
            }
#pragma unroll
        for (int kc = 0; kc < KC; kc++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int r = (i & 1) ? g + 8 : g;
                qa[kc][i] = r < nq ? pack_half2(qv[kc][i].x * qscale, qv[kc][i].y * qscale) : 0u;
            }
    }
    const int qpos[2] = {pos0 + g, pos0 + g + 8};
    const int mi = lane / 8, mr = lane % 8; /* the ldmatrix matrix and row this lane addresses */
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++) o[nt][j] = 0.0f;
    const int n_chunks = last / MMA_KEYS + 1;
    for (int ci = 0; ci < n_chunks; ci++) {
        const int buf = ci & 1, k0 = ci * MMA_KEYS;
        if (ci + 1 < n_chunks) {
            load_keys(buf ^ 1, k0 + MMA_KEYS);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (active) {
            /* S = Q K^T for the chunk's 32 keys: four 8-key tiles, each a chain over the head dims */
            float sc[4][4];
#pragma unroll
            for (int n4 = 0; n4 < 4; n4++)
#pragma unroll
                for (int j = 0; j < 4; j++) sc[n4][j] = 0.0f;
#pragma unroll
            for (int kc2 = 0; kc2 < KC; kc2 += 2)
#pragma unroll
                for (int n4 = 0; n4 < 4; n4++) {
                    uint32_t kb[4];
                    ldmatrix_x4<false>(kb, &Ks[buf][8 * n4 + mr][8 * mi + kc2 * 16]);
                    mma_f16_16x8x16(sc[n4], qa[kc2], kb[0], kb[1]);
                    mma_f16_16x8x16(sc[n4], qa[kc2 + 1], kb[2], kb[3]);
                }
            float mx[2] = {-INFINITY, -INFINITY};
            if (k0 + MMA_KEYS - 1 > pos0) { /* some key of the chunk lies past a row's position */
#pragma unroll
                for (int n4 = 0; n4 < 4; n4++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        int key = k0 + 8 * n4 + 2 * t + (j & 1);
                        if (key > qpos[j >> 1] || key > last) sc[n4][j] = -INFINITY;
                    }
            }
#pragma unroll
            for (int n4 = 0; n4 < 4; n4++)
#pragma unroll
                for (int j = 0; j < 4; j++) mx[j >> 1] = fmaxf(mx[j >> 1], sc[n4][j]);
            float corr[2], base[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int row = 0; row < 2; row++) {
                mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 1));
                mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xffffffffu, mx[row], 2));
                float m_new = fmaxf(m[row], mx[row]);
                base[row] = m_new == -INFINITY ? 0.0f : m_new; /* a row with no key yet: exp2(-inf) = 0 */
                corr[row] = fast_exp2(m[row] - base[row]);
                m[row] = m_new;
            }
#pragma unroll
            for (int n4 = 0; n4 < 4; n4++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    sc[n4][j] = fast_exp2(sc[n4][j] - base[j >> 1]);
                    sum[j >> 1] += sc[n4][j];
                }
#pragma unroll
            for (int row = 0; row < 2; row++) {
                sum[row] += __shfl_xor_sync(0xffffffffu, sum[row], 1);
                sum[row] += __shfl_xor_sync(0xffffffffu, sum[row], 2);
                l[row] = l[row] * corr[row] + sum[row];
            }
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                o[nt][0] *= corr[0];
                o[nt][1] *= corr[0];
                o[nt][2] *= corr[1];
                o[nt][3] *= corr[1];
            }
            /* O += P V: two 16-key steps, the score tiles as A fragments */
#pragma unroll
            for (int k2 = 0; k2 < 2; k2++) {
                const uint32_t pa[4] = {pack_half2(sc[2 * k2][0], sc[2 * k2][1]), pack_half2(sc[2 * k2][2], sc[2 * k2][3]),
                                        pack_half2(sc[2 * k2 + 1][0], sc[2 * k2 + 1][1]),
                                        pack_half2(sc[2 * k2 + 1][2], sc[2 * k2 + 1][3])};
                const __half *vr = &Vs[buf][16 * k2 + mr + 8 * (mi & 1)][8 * (mi >> 1)];
#pragma unroll
                for (int nt = 0; nt < NT; nt += 2) {
                    uint32_t vb[4];
                    ldmatrix_x4<true>(vb, vr + nt * 8);
                    mma_f16_16x8x16(o[nt], pa, vb[0], vb[1]);
                    mma_f16_16x8x16(o[nt + 1], pa, vb[2], vb[3]);
                }
            }
        }
        __syncthreads(); /* the next chunk's load reuses this buffer */
    }
    if (!active) return;
    /* each lane holds pairs of neighbouring columns of rows g and g + 8; dense is row-major (kind 1 bf16,
     * 2 fp16) */
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = g + 8 * half;
        if (r >= nq) continue;
        const float inv = 1.0f / l[half];
        const size_t row0 = (size_t)(t0 + r) * n_heads * HD + (size_t)h * HD + 2 * t;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const float v0 = o[nt][2 * half] * inv, v1 = o[nt][2 * half + 1] * inv;
            const size_t i = row0 + nt * 8;
            out[i] = v0;
            out[i + 1] = v1;
            if (dense_kind == 1) *(__nv_bfloat162 *)((__nv_bfloat16 *)dense + i) = __floats2bfloat162_rn(v0, v1);
            else if (dense_kind == 2) *(__half2 *)((__half *)dense + i) = __floats2half2_rn(v0, v1);
        }
    }
}

/* Grouped decode attention on the tensor cores (half cache, head_dim 32/64/128, up to 8 query heads a KV
 * head): block (token, KV head, split), each warp takes 16 positions at a time. Scores S = Q K^T with the
 * G query heads as the rows of m16n8k16 tiles (rows G..15 zero) and 8 positions a tile as columns; P
 * stays in registers as the A fragment of O += P V (as in attn_prefill_mma). The mma's K index is only a
 * summation index, so head dims and positions go to lanes in whichever order makes every load one
 * contiguous run: for S, lane (g, t) of step kc holds dims 32 (kc / 2) + 8 t + 4 (kc % 2) + 0..3 of q and of
 * key row g (one 16-byte load covers two steps); for O, output column n of tile nt is dim n NTD + nt, so a
 * lane's value operands are one run of NTD halves of each of its four value rows. The float kernel
 * (attn_decode_gqa) spends a shuffle reduction per key row and query head; with this one (and one wave of
 * splits, cuda_attention_splits) 8B batch 32 decodes 10.6 % faster on an H200, 36 % after 1024-token
 * prompts (docs/cuda-notes.md v13). Under io.rope (head_dim 64 or 128) it also applies the q/k norms and
 * the rotary embedding, as attn_partial does for single tokens. */
#define DEC_MMA_WARPS 4
#define DEC_MMA_MAX_GROUP 8
#define DEC_MMA_TABLE 256 /* block table entries a block keeps in shared memory (4096 positions of 16) */

/* n halves (n a multiple of 4) at p, as n / 2 words. */
template <int N>
__device__ __forceinline__ void load_halves(const __half *p, uint32_t (&w)[N / 2]) {
    if constexpr (N % 8 == 0) {
#pragma unroll
        for (int i = 0; i < N / 8; i++) {
            uint4 u = *(const uint4 *)(p + 8 * i);
            w[4 * i] = u.x, w[4 * i + 1] = u.y, w[4 * i + 2] = u.z, w[4 * i + 3] = u.w;
        }
    } else {
        uint2 u = *(const uint2 *)p;
        w[0] = u.x, w[1] = u.y;
    }
}

/* n floats at p (n a multiple of 4, p 16-byte aligned) rounded to halves, as n / 2 words: the own row as the
 * cache stores it. */
template <int N>
__device__ __forceinline__ void halves_of(const float *p, uint32_t (&w)[N / 2]) {
#pragma unroll
    for (int i = 0; i < N / 4; i++) {
        float4 f = *(const float4 *)(p + 4 * i);
        w[2 * i] = pack_half2(f.x, f.y);
        w[2 * i + 1] = pack_half2(f.z, f.w);
    }
}

template <int HD>
__global__ void __launch_bounds__(32 * DEC_MMA_WARPS)
    attn_decode_mma(const __half *kc, const __half *vc, __half *kc_w, __half *vc_w, const float *q, int q_stride,
                    int n_heads, int n_kv, float scale, const int32_t *token_seq, const int32_t *seq_first,
                    const int32_t *seq_start, const int32_t *seq_block_off, const int32_t *block_table,
                    int block_tokens, int n_splits, const int32_t *token_list, attn_io io) {
    constexpr int KJ = HD / 32, KC = HD / 16, NTD = HD / 8, W = DEC_MMA_WARPS, DPL = HD / 32;
    __shared__ float sm_m[W][DEC_MMA_MAX_GROUP], sm_l[W][DEC_MMA_MAX_GROUP];
    __shared__ __align__(16) float sm_o[W][DEC_MMA_MAX_GROUP][HD];
    const int G = n_heads / n_kv;
    const int t = token_list ? token_list[blockIdx.x] : blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int s = token_seq[t], pos = seq_start[s] + (t - seq_first[s]);
    const size_t row_elems = (size_t)n_kv * HD;
    const int32_t *blocks = block_table + seq_block_off[s];
    const int bt_shift = (block_tokens & (block_tokens - 1)) == 0 ? __ffs(block_tokens) - 1 : -1;
    const float *k_own = io.k_new ? io.k_new + (size_t)t * io.kv_stride + (size_t)kvh * HD : NULL;
    const float *v_own = io.k_new ? io.v_new + (size_t)t * io.kv_stride + (size_t)kvh * HD : NULL;
    const int chunk = (pos + n_splits) / n_splits;
    const int p0 = split * chunk, p1 = min(p0 + chunk, pos + 1);
    /* io.rope (head_dim 64 or 128): q and the own key arrive as the projections left them; they are normalized
     * and rotated here with qk_norm_rope's arithmetic, the angles of the position computed once a block */
    __shared__ float sm_cs[HD / 2], sm_sn[HD / 2];
    __shared__ __align__(16) float sm_key[HD];
    if (io.rope)
        for (int d = threadIdx.x; d < HD / 2; d += blockDim.x) {
            float sn, cs;
            sincosf((float)pos * __ldg(io.inv_freq + d), &sn, &cs);
            sm_cs[d] = cs * io.rope_factor;
            sm_sn[d] = sn * io.rope_factor;
        }
    const float *key_own = k_own; /* the own key as the cache stores it (rotated under io.rope) */
    /* the split's entries of the block table, in shared memory where they fit: a row's address then costs
     * no memory latency of its own before the row's */
    __shared__ int32_t sm_table[DEC_MMA_TABLE];
    const int b_first = p0 / block_tokens, b_count = p1 > p0 ? (p1 - 1) / block_tokens - b_first + 1 : 0;
    const bool table_shared = b_count <= DEC_MMA_TABLE;
    if (table_shared)
        for (int i = threadIdx.x; i < b_count; i += blockDim.x) sm_table[i] = blocks[b_first + i];
    __syncthreads();
    auto cache_row = [&](int p) -> size_t {
        const int b = bt_shift >= 0 ? p >> bt_shift : p / block_tokens, in = p - b * block_tokens;
        const int32_t blk = table_shared && b >= b_first && b - b_first < b_count ? sm_table[b - b_first] : blocks[b];
        return ((size_t)blk * block_tokens + in) * row_elems + (size_t)kvh * HD;
    };
    /* key rows (two tiles of 8 positions, lane g's row) and value rows (positions 2 tq, 2 tq + 1 of each tile)
     * of the 16 positions from pb; positions past p1 are zero, the own position's come from k_own / v_own as
     * the cache stores them (half) */
    uint4 kr[2][KJ];
    uint32_t vr[4][NTD / 2];
    auto load_step = [&](int pb) {
#pragma unroll
        for (int n2 = 0; n2 < 2; n2++) {
            const int p = pb + 8 * n2 + g;
#pragma unroll
            for (int j = 0; j < KJ; j++) kr[n2][j] = make_uint4(0u, 0u, 0u, 0u);
            if (p >= p1) continue;
            if (k_own && p == pos) {
#pragma unroll
                for (int j = 0; j < KJ; j++) {
                    uint32_t w[4];
                    halves_of<8>(key_own + 32 * j + 8 * tq, w);
                    kr[n2][j] = make_uint4(w[0], w[1], w[2], w[3]);
                }
            } else {
                const __half *r = kc + cache_row(p) + 8 * tq;
#pragma unroll
                for (int j = 0; j < KJ; j++) kr[n2][j] = *(const uint4 *)(r + 32 * j);
            }
        }
#pragma unroll
        for (int v = 0; v < 4; v++) {
            const int p = pb + 8 * (v >> 1) + 2 * tq + (v & 1);
#pragma unroll
            for (int i = 0; i < NTD / 2; i++) vr[v][i] = 0u;
            if (p >= p1) continue;
            if (k_own && p == pos) halves_of<NTD>(v_own + g * NTD, vr[v]);
            else load_halves<NTD>(vc + cache_row(p) + g * NTD, vr[v]);
        }
    };
    /* in a pure decode step the rows before the token's own position were stored by earlier steps: a warp's
     * first 16 load before the wait for the kernel that produces q (dependent launch) */
    int pb = p0 + 16 * warp;
    const bool early = k_own && pb + 16 <= pos;
    if (early) load_step(pb);
    pdl_wait();
    if (io.rope && k_own) {
        if (warp == 0) { /* attn_partial's own_key, lanes across head_dim, with the block's angles */
            rope_angles<DPL> ang;
#pragma unroll
            for (int i = 0; i < DPL / 2; i++) {
                ang.cs[i] = sm_cs[lane + 32 * i];
                ang.sn[i] = sm_sn[lane + 32 * i];
            }
            float kx[DPL];
            own_key<DPL>(io, k_own, HD, ang, lane, kx);
#pragma unroll
            for (int i = 0; i < DPL; i++) sm_key[lane + 32 * i] = kx[i];
        }
        __syncthreads();
        key_own = sm_key;
    }
    if (k_own && split == 0) store_own_kv(kc_w, vc_w, cache_row(pos), key_own, v_own, HD);
    /* the A fragments of q (rows g < G: query head kvh G + g, scaled), a1 = a3 = 0; lane (g, t) holds dims
     * 32 j + 8 t + 0..7 of its head, so under io.rope a rotation pair (j, j + KJ / 2) is its own */
    uint32_t qa[KC][2];
    {
        const float *qr = q + (size_t)t * q_stride + (size_t)(kvh * G + min(g, G - 1)) * HD + 8 * tq;
        float x[KJ][8];
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            float4 a = *(const float4 *)(qr + 32 * j), b = *(const float4 *)(qr + 32 * j + 4);
            x[j][0] = a.x, x[j][1] = a.y, x[j][2] = a.z, x[j][3] = a.w;
            x[j][4] = b.x, x[j][5] = b.y, x[j][6] = b.z, x[j][7] = b.w;
        }
        if (io.rope) {
            if (io.q_norm) { /* the head's dims are in the four lanes of its g */
                float ss = 0.0f;
#pragma unroll
                for (int j = 0; j < KJ; j++)
#pragma unroll
                    for (int e = 0; e < 8; e++) ss += x[j][e] * x[j][e];
                ss += __shfl_xor_sync(0xffffffffu, ss, 1);
                ss += __shfl_xor_sync(0xffffffffu, ss, 2);
                const float inv = rsqrtf(ss / (float)HD + io.eps);
#pragma unroll
                for (int j = 0; j < KJ; j++)
#pragma unroll
                    for (int e = 0; e < 8; e++) x[j][e] = __ldg(io.q_norm + 32 * j + 8 * tq + e) * (x[j][e] * inv);
            }
#pragma unroll
            for (int j = 0; j < KJ / 2; j++)
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    const int d = 32 * j + 8 * tq + e;
                    const float a = x[j][e], b = x[j + KJ / 2][e];
                    x[j][e] = a * sm_cs[d] - b * sm_sn[d];
                    x[j + KJ / 2][e] = b * sm_cs[d] + a * sm_sn[d];
                }
        }
        const bool on = g < G;
#pragma unroll
        for (int j = 0; j < KJ; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                qa[2 * j + h][0] = on ? pack_half2(x[j][4 * h] * scale, x[j][4 * h + 1] * scale) : 0u;
                qa[2 * j + h][1] = on ? pack_half2(x[j][4 * h + 2] * scale, x[j][4 * h + 3] * scale) : 0u;
            }
    }
    float m = -INFINITY, l = 0.0f, o[NTD][4];
#pragma unroll
    for (int nt = 0; nt < NTD; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++) o[nt][j] = 0.0f;
    for (bool loaded = early; pb < p1; pb += 16 * W, loaded = false) {
        if (!loaded) load_step(pb);
        float sc[2][4];
#pragma unroll
        for (int n2 = 0; n2 < 2; n2++) {
#pragma unroll
            for (int j = 0; j < 4; j++) sc[n2][j] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KC; kk++) {
                const uint32_t a[4] = {qa[kk][0], 0u, qa[kk][1], 0u};
                const uint4 &k4 = kr[n2][kk / 2];
                mma_f16_16x8x16(sc[n2], a, (kk & 1) ? k4.z : k4.x, (kk & 1) ? k4.w : k4.y);
            }
        }
        /* row g's online softmax over the 16 columns (positions past p1 masked) */
        float mx = -INFINITY;
#pragma unroll
        for (int n2 = 0; n2 < 2; n2++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                if (pb + 8 * n2 + 2 * tq + j >= p1) sc[n2][j] = -INFINITY;
                mx = fmaxf(mx, sc[n2][j]);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m, mx), corr = m == -INFINITY ? 0.0f : expf(m - m_new);
        m = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n2 = 0; n2 < 2; n2++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                sc[n2][j] = sc[n2][j] == -INFINITY ? 0.0f : expf(sc[n2][j] - m_new);
                sum += sc[n2][j];
            }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        l = l * corr + sum;
        const uint32_t pa[4] = {pack_half2(sc[0][0], sc[0][1]), 0u, pack_half2(sc[1][0], sc[1][1]), 0u};
#pragma unroll
        for (int nt = 0; nt < NTD; nt++) {
            const unsigned sel = (nt & 1) ? 0x7632u : 0x5410u;
            o[nt][0] *= corr;
            o[nt][1] *= corr;
            mma_f16_16x8x16(o[nt], pa, __byte_perm(vr[0][nt / 2], vr[1][nt / 2], sel),
                            __byte_perm(vr[2][nt / 2], vr[3][nt / 2], sel));
        }
    }
    /* every warp's state of its heads into shared memory (dims as attn_decode_gqa's tail reads them) */
    if (g < G) {
        if (tq == 0) {
            sm_m[warp][g] = m;
            sm_l[warp][g] = l;
        }
#pragma unroll
        for (int nt = 0; nt < NTD; nt++) {
            sm_o[warp][g][(2 * tq) * NTD + nt] = o[nt][0];
            sm_o[warp][g][(2 * tq + 1) * NTD + nt] = o[nt][1];
        }
    }
    __syncthreads();
    attn_block_finish<DPL, W, DEC_MMA_MAX_GROUP>(io, sm_m, sm_l, sm_o, G, t, kvh, n_heads, n_kv, n_splits, split);
}

/* Whether a batch's decode attention (takes_gqa) runs on the tensor cores (attn_decode_mma) rather than on
 * attn_decode_gqa: a half cache, head_dim 32/64/128, and running code with mma.sync (sm_80 on). The launch,
 * the choice of splits and the fused rotation all ask this. */
static int takes_decode_mma(const cuda_impl *im, int half_cache, int hd) {
    return half_cache && !im->att_mma_off && im->code_arch >= 800 && (hd == 32 || hd == 64 || hd == 128);
}

int cuda_attention_batch_slots(cuda_impl *im, int half_cache, int hd) {
    if (!takes_decode_mma(im, half_cache, hd)) return 0;
    int per_sm = 0;
    cudaError_t err = hd == 32    ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_decode_mma<32>, 32 * DEC_MMA_WARPS, 0)
                      : hd == 64 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_decode_mma<64>, 32 * DEC_MMA_WARPS, 0)
                                 : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_decode_mma<128>, 32 * DEC_MMA_WARPS, 0);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return per_sm * im->prop.multiProcessorCount;
}

static size_t tiled_smem_bytes(int hd) {
    return ((size_t)2 * TILE_ROWS * hd + (size_t)TILE_KEYS * (hd + 1) + (size_t)TILE_KEYS * hd +
            (size_t)TILE_ROWS * TILE_KEYS + 4 * TILE_ROWS) * sizeof(float);
}

/* The per-head norms and rotary embedding that the decode kernel applies itself (attn_io.rope). */
struct qk_rope {
    const float *q_norm, *k_norm, *inv_freq;
    float eps, factor;
};

/* Whether the decode tokens of a step go to the grouped kernel (attn_decode_gqa) rather than attn_partial. */
static int takes_gqa(const cuda_impl *im, int decode_tokens, int hd, int group) {
    return decode_tokens >= GQA_MIN_TOKENS && !im->gqa_off && (hd == 32 || hd == 64 || hd == 128) &&
           (group == 2 || group == 4 || group == 8);
}

template <typename T>
static void launch_attention(cuda_impl *im, T *kbase, T *vbase, const float *q, int q_stride, const float *k,
                             const float *v, int kv_stride, float *out, int n_heads, int n_kv, int hd, float scale,
                             int block_tokens, const qk_rope *rope) {
    cuda_step *st = &im->step;
    int group = n_heads / n_kv;
    /* prefill sequences: tiles of MMA_TILE_TOKENS tokens for the tensor-core kernel (half cache, head_dim
     * 32, 64 or 128), else the float tiled kernel's TILE_ROWS / group tokens. begin_step cuts tiles
     * before it knows the model: a step cut for another shape is cut again here, so that a process's
     * first prefill runs the kernels every later one runs (it took split-K before, and its logits
     * differed from the same request's later: the same seed drew another text) */
    int mma = sizeof(T) == 2 && im->code_arch >= 800 && (hd == 32 || hd == 64 || hd == 128);
    int want = mma ? MMA_TILE_TOKENS : group <= TILE_ROWS ? TILE_ROWS / group : 0;
    if (want > 0 && st->tile_tokens != want) {
        st->tile_group = group;
        st->tile_tokens = want;
        if (st->n_tiles > 0) cuda_recut_tiles(im);
    }
    int tiled = st->n_tiles > 0 && want > 0 && (mma || tiled_smem_bytes(hd) <= (size_t)im->prop.sharedMemPerBlockOptin);
    /* one token per sequence: the split-K kernel writes the cache rows itself */
    int pure_decode = st->n_tokens == st->n_seqs && !(st->n_tiles > 0 && tiled);
    const int row_elems = n_kv * hd;
    if (!pure_decode && row_elems % 4 == 0 && row_elems <= 4 * KV_WRITE_HELD * 128 && kv_stride % 4 == 0 &&
        ((uintptr_t)k & 15) == 0 && ((uintptr_t)v & 15) == 0)
        cuda_launch(im, kv_write_quad_kernel<T>, dim3(st->n_tokens), dim3(128), 0, kbase, vbase, k, v, kv_stride,
                    row_elems, st->token_seq, st->seq_first, st->seq_start, st->seq_block_off, st->block_table,
                    block_tokens);
    else if (!pure_decode)
        cuda_launch(im, kv_write_kernel<T>, dim3(st->n_tokens), dim3(128), 0, kbase, vbase, k, v, kv_stride, row_elems,
                    st->token_seq, st->seq_first, st->seq_start, st->seq_block_off, st->block_table, block_tokens);
    if (st->n_tiles > 0 && tiled && mma) {
        dim3 grid(st->n_tiles, n_kv, (group + MMA_ATT_WARPS - 1) / MMA_ATT_WARPS);
        /* a step of prefill only: the kernel writes every row, and with it the 16-bit copy cuBLAS reads
         * for the output projection (which a conversion kernel wrote before) */
        cuda_qact qa = {};
        if (st->n_decode == 0 && st->n_tokens > DP4A_MAX_TOKENS) qa = cuda_qact_begin(im, out, st->n_tokens, (int64_t)n_heads * hd);
#define PREFILL(HD)                                                                                              \
    cuda_launch(im, attn_prefill_mma<HD>, grid, dim3(32 * MMA_ATT_WARPS), 0, (const __half *)kbase,              \
                (const __half *)vbase, q, q_stride, out, n_heads, n_kv, scale, st->seq_first, st->seq_len,       \
                st->seq_start, st->seq_block_off, st->block_table, block_tokens, st->tile_seq, st->tile_token,   \
                qa.dense, qa.dense_kind)
        if (hd == 32) PREFILL(32);
        else if (hd == 64) PREFILL(64);
        else PREFILL(128);
#undef PREFILL
    } else if (st->n_tiles > 0 && tiled) {
        size_t smem = tiled_smem_bytes(hd);
        static int configured = 0;
        if (!configured) {
            cudaFuncSetAttribute(attn_tiled<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, im->prop.sharedMemPerBlockOptin);
            cudaFuncSetAttribute(attn_tiled<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, im->prop.sharedMemPerBlockOptin);
            configured = 1;
        }
        cuda_launch(im, attn_tiled<T>, dim3(st->n_tiles, n_kv), dim3(256), smem, kbase, vbase, q, q_stride, out,
                    n_heads, n_kv, hd, scale, st->seq_first, st->seq_len, st->seq_start, st->seq_block_off,
                    st->block_table, block_tokens, st->tile_seq, st->tile_token, st->tile_tokens);
    }
    /* decode tokens (and every token when the tiled kernel does not apply): split-K */
    const int32_t *list = tiled ? st->decode_tokens : NULL;
    int count = tiled ? st->n_decode : st->n_tokens;
    if (count == 0) return;
    im->att_heads = n_heads; /* graph_begin keys the next steps' graphs by the split count with it */
    int splits = cuda_attention_splits(im, st->max_pos, st->n_tokens);
    size_t pairs = (size_t)count * n_heads, parts = pairs * splits;
    attn_io io;
    memset(&io, 0, sizeof io);
    io.out = out;
    if (rope) { /* the caller checked that this step takes attn_partial or attn_decode_mma (rope_attention_fusable) */
        io.rope = 1;
        io.q_norm = rope->q_norm;
        io.k_norm = rope->k_norm;
        io.inv_freq = rope->inv_freq;
        io.eps = rope->eps;
        io.rope_factor = rope->factor;
    }
    if (pure_decode) {
        io.k_new = k;
        io.v_new = v;
        io.kv_stride = kv_stride;
    }
    if (splits > 1) {
        io.part_o = (float *)cuda_scratch(im, &im->attn_scratch, &im->attn_scratch_bytes, parts * (hd + 2) * sizeof(float));
        io.done = cuda_counters(im, &im->attn_done, &im->attn_done_bytes, (size_t)pairs);
        if (!io.part_o || !io.done) return;
        io.part_ml = io.part_o + parts * hd;
    }
    if (count == st->n_tokens && count <= DP4A_MAX_TOKENS && hd % 32 == 0) {
        cuda_qact qa = cuda_qact_begin(im, out, count, (int64_t)n_heads * hd);
        io.xq = qa.xq;
        io.xs = qa.xs;
        io.nibbles = qa.nibbles;
        io.dense = qa.dense;
        io.dense_kind = qa.dense_kind;
        io.rows = count;
    }
    /* batches: the GQA kernels (head_dim 32/64/128, 2, 4 or 8 query heads per KV head), on the tensor
     * cores where the cache is half */
    if (takes_gqa(im, count, hd, group) && takes_decode_mma(im, sizeof(T) == 2, hd)) {
        dim3 g2(count, n_kv, splits);
#define DEC_MMA(HD)                                                                                              \
    cuda_launch(im, attn_decode_mma<HD>, g2, dim3(32 * DEC_MMA_WARPS), 0, (const __half *)kbase,                \
                (const __half *)vbase, (__half *)kbase, (__half *)vbase, q, q_stride, n_heads, n_kv, scale,      \
                st->token_seq, st->seq_first, st->seq_start, st->seq_block_off, st->block_table, block_tokens, \
                splits, list, io)
        if (hd == 32) DEC_MMA(32);
        else if (hd == 64) DEC_MMA(64);
        else DEC_MMA(128);
#undef DEC_MMA
        return;
    }
    if (takes_gqa(im, count, hd, group)) {
        dim3 g2(count, n_kv, splits);
#define GQA(DPL, G)                                                                                          \
    cuda_launch(im, attn_decode_gqa<T, DPL, G>, g2, dim3(32 * GQA_WARPS), 0, kbase, vbase, kbase, vbase, q,      \
                q_stride, n_heads, n_kv, scale, st->token_seq, st->seq_first, st->seq_start, st->seq_block_off, \
                st->block_table, block_tokens, splits, list, io)
#define GQA_HD(DPL) \
    if (group == 2) GQA(DPL, 2); else if (group == 4) GQA(DPL, 4); else GQA(DPL, 8);
        if (hd == 32) { GQA_HD(1) }
        else if (hd == 64) { GQA_HD(2) }
        else { GQA_HD(4) }
#undef GQA_HD
#undef GQA
        return;
    }
    dim3 grid(count, n_heads, splits);
    if (hd > 256) {
        cuda_log(im, 0, "cuda: head_dim %d is larger than the attention kernel supports (256)", hd);
        return;
    }
    /* up to ATT_MAX_CLUSTER splits (the portable cluster size, and the partials cluster_merge has room
     * for) merge inside their cluster, for steps of up to
     * att_cluster tokens: measured on an H100 (8B Q4_0, 128-token prompts), batch 1 447 -> 463 tok/s and
     * 0.6B 1507 -> 1579, but batch 4 1030 -> 984 and 0.6B 3513 -> 3220. A launch the device refuses turns
     * clusters off and runs the scratch merge. */
    io.cluster = count <= im->att_cluster && splits > 1 && splits <= ATT_MAX_CLUSTER;
    for (;;) {
        cudaError_t err;
#define ATT(HPL)                                                                                                    \
    err = cuda_launch_ex(im, dim3(1, 1, io.cluster ? (unsigned)splits : 1u), attn_partial<T, HPL>, grid, dim3(32 * ATT_WARPS), 0, \
                         kbase, vbase, kbase, vbase, q, q_stride, n_heads, n_kv, hd, scale, st->token_seq,          \
                         st->seq_first, st->seq_start, st->seq_block_off, st->block_table, block_tokens, splits,    \
                         list, io)
        if (hd <= 32) ATT(1);
        else if (hd <= 64) ATT(2);
        else if (hd <= 128) ATT(4);
        else ATT(8);
#undef ATT
        if (err == cudaSuccess || !io.cluster) return;
        (void)cudaGetLastError();
        cuda_log(im, 1, "cuda: decode attention as thread block clusters refused (%s); merging splits through memory",
                 cudaGetErrorString(err));
        im->att_cluster = 0;
        io.cluster = 0;
    }
}

static void attention_impl(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q,
                           int q_stride, const float *k, const float *v, int kv_stride, int n_heads, float scale,
                           float *out, const qk_rope *rope) {
    cuda_impl *im = cuda_of(be);
    cuda_step *st = &im->step;
    if (st->host != step) {
        cuda_log(im, 0, "cuda: attention called outside its step (begin_step missing)");
        return;
    }
    const ts_kv_layout *l = &kv->layout;
    size_t elem = kv->half ? 2 : 4;
    char *kbase = (char *)kv->k + (size_t)layer * kv->layer_elems * elem;
    char *vbase = (char *)kv->v + (size_t)layer * kv->layer_elems * elem;
    if (kv->half)
        launch_attention<__half>(im, (__half *)kbase, (__half *)vbase, q, q_stride, k, v, kv_stride, out, n_heads,
                                 l->num_kv_heads, l->head_dim, scale, l->block_tokens, rope);
    else
        launch_attention<float>(im, (float *)kbase, (float *)vbase, q, q_stride, k, v, kv_stride, out, n_heads,
                                l->num_kv_heads, l->head_dim, scale, l->block_tokens, rope);
    CUDA_CHECK_LAUNCH(im, "attention");
}

void cuda_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q, int q_stride,
                    const float *k, const float *v, int kv_stride, int n_heads, float scale, float *out) {
    CUDA_SKIP_IF_REPLAYING(cuda_of(be));
    attention_impl(be, kv, layer, step, q, q_stride, k, v, kv_stride, n_heads, scale, out, NULL);
}

/* Whether launch_attention runs this step through attn_partial with the step's own keys (a pure decode
 * step the grouped kernel does not take) at a head size whose rotation pairs share a lane. */
static int rope_attention_fusable(const cuda_impl *im, const ts_kv_store *kv, int n_heads, const ts_rope *rope) {
    const cuda_step *st = &im->step;
    int hd = kv->layout.head_dim, group = n_heads / kv->layout.num_kv_heads;
    const int gqa = takes_gqa(im, st->n_tokens, hd, group);
    /* attn_partial (single tokens) or, for batches, attn_decode_mma; not the float grouped kernel */
    const int kernel_rotates = gqa ? takes_decode_mma(im, kv->half, hd) && hd != 32
                                   : st->n_tokens <= im->fuse_max_tokens && (hd == 64 || hd == 128 || hd == 256);
    return !im->fuse_norm_off && kernel_rotates && st->n_tokens == st->n_seqs && st->n_tiles == 0 && rope->head_dim == hd;
}

void cuda_rope_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const ts_rope_heads *q,
                         const ts_rope_heads *k, const float *v, int n_heads, float scale, float eps,
                         const int32_t *positions, const ts_rope *rope, float *out) {
    cuda_impl *im = cuda_of(be);
    CUDA_SKIP_IF_REPLAYING(im);
    const float *inv_freq = rope_attention_fusable(im, kv, n_heads, rope) ? cuda_device_inv_freq(im, rope) : NULL;
    if (!inv_freq) {
        cuda_qk_norm_rope(be, q, k, step->n_tokens, eps, positions, rope);
        cuda_attention(be, kv, layer, step, q->x, q->stride, k->x, v, k->stride, n_heads, scale, out);
        return;
    }
    const qk_rope r = {q->norm_weight, k->norm_weight, inv_freq, eps, rope->attention_factor};
    attention_impl(be, kv, layer, step, q->x, q->stride, k->x, v, k->stride, n_heads, scale, out, &r);
}

/* Batched decode (6-32 tokens) of 4-bit weights on the tensor cores in bf16 (fp16 under fp16
 * precision): mma.sync m16n8k16 with the weights unpacked to 16-bit values in registers and the group
 * scale (and minimum) applied to the weights before the product, so the accumulators run over the
 * whole K without a per-group epilogue. The earlier int8 kernel (cuda_matmul.cu) spent most of its
 * time on per-group float corrections and narrow scattered loads; here every load is a full sector.
 *
 * Layout of the work: a block owns BW_ROWS rows and a contiguous range of K; its warps are BW_RS row
 * sets of BW_MT 16-row tiles times BW_KS slices of that range (a warp takes every BW_KS-th chunk of 64
 * columns), and add their partial tiles in shared memory in a fixed order. A matrix may also be split
 * along K across blocks (kparts, chosen by estimated time: choose_kparts); the parts of a row range add
 * in K order, either inside a thread block cluster (bw_cluster_merge) or through global memory, where
 * the last block to finish adds them, so results do not depend on timing or on the merge.
 *
 * The finishing stores of a tile (bw_finish) also do the work of the small operations around a layer's
 * products: an output projection adds its tile to the residual and leaves the next RMSNorm due (bw_norm),
 * the products reading that norm scale by each token's 1/rms, and gate/up run paired, finishing with
 * silu(gate) * up. Each saves a launch whose cost was its latency, not its bytes.
 *
 * K order inside a chunk: lane t of a row reads the 8 bytes at 8t, i.e. elements 16t..16t+15 (byte b
 * holds elements 2b and 2b+1 in its low and high nibble). Masking a 32-bit word with 0x000F000F
 * after a shift of 4p gives the pair of elements (p, p + 4) of that word as two 16-bit lanes, which
 * is what one register of an A fragment holds. The mma's K index is only a summation index, so the
 * activations are stored in the matching order (qact_store_dense) and no weight is moved. */
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/cuda_batch16.cuh"

/* Shape of the work, measured on an H100 at 32 tokens of 8B (docs/cuda-notes.md, v7): 32-row blocks of
 * 8 K-sliced warps, two blocks per SM (5.3-5.4k tok/s) beat 128-row blocks of 4 row sets x 2 slices
 * (4.4k), 64-row blocks (4.7k), 4 or 16 slices (4.7k, 5.0k) and 16-row warps (4.8k). Small blocks
 * spread each matrix evenly over the SMs with fewer K parts. Overridable to measure others. */
#ifndef BW_MT
#define BW_MT 2  /* 16-row tiles per warp: each activation fragment serves 32 rows */
#define BW_RS 1  /* row sets per block (warps reading the same activation chunk) */
#define BW_KS 8  /* K slices per block */
#define BW_MIN_BLOCKS 2
#endif
#define BW_ROWS (16 * BW_MT * BW_RS)
#define BW_WARPS (BW_RS * BW_KS)
/* tokens a warp takes at most in the norm's per-token work (one tile of NT * 8 tokens over the warps) */
#define BW_TOKENS_PER_WARP(NT) (((NT) * 8 + BW_WARPS - 1) / BW_WARPS)
/* row stride of the block's reduction tiles in shared memory: 4 more than a tile's rows keeps a warp's 32
 * stores of its accumulators in 32 different banks */
#define BW_RED_STRIDE (BW_ROWS + 4)
#define BW_MAX_KPARTS 8

/* How a launch takes part in a fused output projection + residual add + RMSNorm (cuda_norm_due with a
 * dense form): as its producer (res_x set: one weight, rows in blocks of 32, y unused) or as a product
 * that reads the norm's output (in_partials set). */
struct bw_norm {
    float *res_x;             /* producer: the residual [n][rows], updated in place */
    const float *res_weight;  /* the next norm's weight [rows] */
    float *res_partials;      /* [n][rows / 32] sums of squares of the updated residual */
    void *res_dense;          /* weight * residual in the fragment order (qact_store_dense kind 3 + F16) */
    const float *in_partials; /* reader: [n][cols / 32], as written by the producer */
    const float *in_x, *in_weight; /* the residual and the norm's weight, to write the float output */
    float *in_out;            /* [n][cols] */
    float eps;
};

struct bw_targets {
    cuda_weight w[MAX_PRODUCT_TARGETS];
    float *y[MAX_PRODUCT_TARGETS];
    const float *bias[MAX_PRODUCT_TARGETS];
    float *part[MAX_PRODUCT_TARGETS];      /* [kparts][n_tok][rows] partial sums when kparts > 1 */
    unsigned *done[MAX_PRODUCT_TARGETS];   /* per row block: parts finished (reset by the last) */
    unsigned first_block[MAX_PRODUCT_TARGETS + 1];
    int kparts;
    int cluster; /* the kparts blocks of a row block are a thread block cluster and merge in shared memory */
    bw_norm norm;
    void *swiglu_dense; /* paired launches (gate w[0], up w[1]): silu(gate) * up in the fragment order, where
                           the batch kernel can read it (else NULL) */
};

/* The two 16-bit formats: bf16 (precision bf16) and fp16. MAGIC | c is the 16-bit value BIAS + c
 * for a 4-bit code c, exactly. */
template <int F16>
struct bw_fmt;
template <>
struct bw_fmt<0> {
    typedef __nv_bfloat162 v2;
    static constexpr uint32_t MAGIC = 0x43004300u; /* 128.0 */
    static constexpr float BIAS = 128.0f;
    static __device__ __forceinline__ v2 splat(float f) { return __float2bfloat162_rn(f); }
};
template <>
struct bw_fmt<1> {
    typedef __half2 v2;
    static constexpr uint32_t MAGIC = 0x64006400u; /* 1024.0 */
    static constexpr float BIAS = 1024.0f;
    static __device__ __forceinline__ v2 splat(float f) { return __float2half2_rn(f); }
};

/* IQ4_NL's grid (IQ4_NL and IQ4_XS weights) as the kernel's 16-bit values: the 8 codes of a word (nibble i:
 * element i) become the four A-fragment registers pair[p] = (element p, element p + 4), the same pairs the
 * masks give the linear types. Each level's encoding is looked up a byte at a time, four codes at once, as
 * iq4_nl_levels4 does (byte permutes over the two 8-entry halves of a table, a third choosing by the code's
 * bit 3); the tables hold the low and high bytes of the 16 levels (-127 ... 113) in bf16 or fp16, where all
 * of them are exact. About 1.5 times the instructions of the masks. */
template <int F16>
__device__ __forceinline__ void bw_grid_pairs(uint32_t word, uint32_t (&pair)[4]) {
    constexpr uint32_t L0 = F16 ? 0x103080f0u : 0x82a6d0feu, L1 = F16 ? 0x00806020u : 0x20b00c44u;
    constexpr uint32_t L2 = F16 ? 0xc0408000u : 0x18c85080u, L3 = F16 ? 0x109050a0u : 0xe2b28a54u;
    constexpr uint32_t H0 = F16 ? 0xd4d5d6d7u : 0xc2c2c2c2u, H1 = F16 ? 0xc9cdd0d2u : 0xc1c1c2c2u;
    constexpr uint32_t H2 = F16 ? 0x504e4a3cu : 0x4241413fu, H3 = F16 ? 0x57555452u : 0x42424242u;
    uint32_t lo[2], hi[2];
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const uint32_t sel = q ? word >> 16 : word & 0xffffu;
        const uint32_t s3 = sel & 0x7777u, pick = 0x3210u | ((sel & 0x8888u) >> 1);
        lo[q] = __byte_perm(__byte_perm(L0, L1, s3), __byte_perm(L2, L3, s3), pick);
        hi[q] = __byte_perm(__byte_perm(H0, H1, s3), __byte_perm(H2, H3, s3), pick);
    }
    const uint32_t a01 = __byte_perm(lo[0], hi[0], 0x5140u), a23 = __byte_perm(lo[0], hi[0], 0x7362u);
    const uint32_t b01 = __byte_perm(lo[1], hi[1], 0x5140u), b23 = __byte_perm(lo[1], hi[1], 0x7362u);
    pair[0] = __byte_perm(a01, b01, 0x5410u);
    pair[1] = __byte_perm(a01, b01, 0x7632u);
    pair[2] = __byte_perm(a23, b23, 0x5410u);
    pair[3] = __byte_perm(a23, b23, 0x7632u);
}

template <int F16>
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (F16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* x [n][cols] float -> 16-bit B fragments, one element per thread, in the order qact_store_dense defines
 * (the order producers of activations write too); tokens past n up to the tile are zero. */
template <int F16>
__global__ void bw_act_kernel(const float *__restrict__ x, int n, int64_t cols, int64_t elements, void *__restrict__ out) {
    pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= elements) return;
    int64_t row = i / cols, col = i % cols;
    qact_store_dense(out, 3 + F16, row, col, cols, n, row < n ? x[i] : 0.0f);
}

/* Element (token t, row r) of a block's tile: its warps' K slices added in slice order (both merges of K
 * parts start from this sum, which keeps their results equal). */
template <int NT>
__device__ __forceinline__ float bw_slice_sum(const float *red, int t, int r) {
    constexpr int RS = BW_RED_STRIDE;
    float sum = 0.0f;
#pragma unroll
    for (int s = 0; s < BW_KS; s++) sum += red[(s * NT * 8 + t) * RS + r];
    return sum;
}

/* Where the sums of a block's finished tile are: its own slices (one K part), the K parts in global
 * memory (the last block of a row block adds them), or the slice sums of the blocks of its cluster. */
enum { BW_FROM_SLICES, BW_FROM_PARTS, BW_FROM_CLUSTER };

/* Element (token t, row r) of a row block's tile over all K, added in K order whatever the source. */
template <int NT>
__device__ __forceinline__ float bw_tile_sum(int from, float *red, const float *part, int kparts, int n_tok, int64_t rows,
                                             int64_t base, int t, int r) {
    if (from == BW_FROM_SLICES) return bw_slice_sum<NT>(red, t, r);
    float sum = 0.0f;
    if (from == BW_FROM_PARTS) {
        for (int p = 0; p < kparts; p++) sum += __ldcg(part + ((size_t)p * n_tok + t) * rows + base + r);
        return sum;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    for (int p = 0; p < kparts; p++) sum += *cluster.map_shared_rank(red + t * BW_RED_STRIDE + r, p);
#endif
    return sum;
}

/* The stores of a row block's tile; `share` of `shares` (the blocks of a cluster share the tile, others
 * hold all of it). A plain product writes y (scaled by each token's 1/rms where its input was a due norm,
 * inv_rms); the producer of a fused output projection adds the tile to the residual, and its warps, one
 * token each with a row a lane, write the next norm's partial sums and the 16-bit weight * residual. */
template <int F16, int NT, bool PAIRED>
__device__ __forceinline__ void bw_finish(const bw_targets &tg, int64_t rows, float *__restrict__ y, const float *__restrict__ bias,
                                          int from, float *red, const float *part, int n_tok, int64_t rblock, int share,
                                          int shares, const float *inv_rms) {
    const int64_t base = rblock * BW_ROWS;
    const bw_norm &nl = tg.norm;
    if (PAIRED) {
        /* rows: the tile's row space (both weights); the tile's rows 0-15 are gate rows 16 rblock.., 16-31 the
         * same rows of up. The arithmetic is the unpaired launch's and silu_mul_kernel's, in their order. */
        const int64_t inner = rows / 2;
        for (int i = threadIdx.x + share * blockDim.x; i < 16 * NT * 8; i += shares * blockDim.x) {
            const int r = i % 16, t = i / 16;
            if (t >= n_tok) continue;
            const int64_t col = rblock * 16 + r;
            float g = bw_tile_sum<NT>(from, red, part, tg.kparts, n_tok, rows, base, t, r);
            float u = bw_tile_sum<NT>(from, red, part, tg.kparts, n_tok, rows, base, t, r + 16);
            if (inv_rms) {
                g *= inv_rms[t];
                u *= inv_rms[t];
            }
            g += 0.0f; /* as the unpaired launch adds its absent bias: -0.0 becomes +0.0 alike */
            u += 0.0f;
            const float v = g / (1.0f + expf(-g)) * u;
            y[(size_t)t * inner + col] = v;
            if (tg.swiglu_dense) qact_store_dense(tg.swiglu_dense, 3 + F16, t, col, inner, n_tok, v);
        }
        return;
    }
    if (nl.res_x) {
        static_assert(BW_ROWS == 32, "the producer's warps hold one row a lane");
        const int lane = threadIdx.x % 32, first = threadIdx.x / 32 + share * BW_WARPS, step = shares * BW_WARPS;
        const int64_t row = base + lane; /* rows come in whole blocks of 32 */
        /* a warp's tokens: their residuals load together */
        float xv[BW_TOKENS_PER_WARP(NT)];
#pragma unroll
        for (int j = 0; j < BW_TOKENS_PER_WARP(NT); j++) {
            const int t = first + j * step;
            xv[j] = t < n_tok ? nl.res_x[(size_t)t * rows + row] : 0.0f;
        }
        const float wn = __ldg(nl.res_weight + row), b = bias ? bias[row] : 0.0f;
#pragma unroll
        for (int j = 0; j < BW_TOKENS_PER_WARP(NT); j++) {
            const int t = first + j * step;
            if (t >= n_tok) break;
            const float v = xv[j] + (bw_tile_sum<NT>(from, red, part, tg.kparts, n_tok, rows, base, t, lane) + b);
            nl.res_x[(size_t)t * rows + row] = v;
            float ss = v * v;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            if (lane == 0) nl.res_partials[(size_t)t * (rows / 32) + rblock] = ss;
            qact_store_dense(nl.res_dense, 3 + F16, t, row, rows, n_tok, wn * v);
        }
        return;
    }
    for (int i = threadIdx.x + share * blockDim.x; i < BW_ROWS * NT * 8; i += shares * blockDim.x) {
        int r = i % BW_ROWS, t = i / BW_ROWS; /* neighbouring threads: neighbouring rows of y */
        if (base + r >= rows || t >= n_tok) continue;
        float sum = bw_tile_sum<NT>(from, red, part, tg.kparts, n_tok, rows, base, t, r);
        if (inv_rms) sum *= inv_rms[t];
        y[(size_t)t * rows + base + r] = sum + (bias ? bias[base + r] : 0.0f);
    }
}

/* The K parts of a row block as one cluster (tg.cluster): every block sums its slices (in place of its
 * first slice: each thread reads and writes only its own elements there), then block p finishes the p-th
 * share of the tile, adding the blocks' sums in K order, the order of the global merge: same results,
 * without the partial sums' round trip through L2, the fence and the count. All threads of every block of
 * the cluster must call this. */
template <int F16, int NT, bool PAIRED>
__device__ __forceinline__ void bw_cluster_merge(const bw_targets &tg, float *red, int64_t rows, int n_tok, int64_t rblock,
                                                 int kpart, float *__restrict__ y, const float *__restrict__ bias,
                                                 const float *inv_rms) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int RS = BW_RED_STRIDE, TILE = BW_ROWS * NT * 8;
    for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
        int r = i % BW_ROWS, t = i / BW_ROWS;
        red[t * RS + r] = bw_slice_sum<NT>(red, t, r);
    }
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    cluster.sync();
    bw_finish<F16, NT, PAIRED>(tg, rows, y, bias, BW_FROM_CLUSTER, red, NULL, n_tok, rblock, kpart, tg.kparts, inv_rms);
    cluster.sync(); /* no block leaves while another may still read its shared memory */
#else
    (void)tg, (void)red, (void)rows, (void)n_tok, (void)rblock, (void)kpart, (void)y, (void)bias, (void)inv_rms;
#endif
}

/* A due norm's 1/rms of each token from the producer's partial sums (the same in every block: the partials
 * are added in one fixed order); a warp's tokens load together. Then its float output weight * (x / rms),
 * which other operations may read: every block of the reading launch writes its share. Both before the
 * main loop, while its first weights load. */
template <int NT>
__device__ __forceinline__ void bw_due_norm(const bw_norm &nl, int64_t dim, int n_tok, float *inv_rms) {
    const int parts = (int)(dim / 32), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    constexpr int TW = BW_TOKENS_PER_WARP(NT);
    float s[TW];
#pragma unroll
    for (int j = 0; j < TW; j++) s[j] = 0.0f;
#pragma unroll 4
    for (int p = lane; p < parts; p += 32)
#pragma unroll
        for (int j = 0; j < TW; j++) s[j] += __ldg(nl.in_partials + (size_t)min(warp + BW_WARPS * j, n_tok - 1) * parts + p);
#pragma unroll
    for (int j = 0; j < TW; j++) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s[j] += __shfl_xor_sync(0xffffffffu, s[j], o);
        if (lane == 0 && warp + BW_WARPS * j < n_tok) inv_rms[warp + BW_WARPS * j] = rsqrtf(s[j] / (float)dim + nl.eps);
    }
    __syncthreads();
    const size_t total = (size_t)n_tok * (size_t)dim, warps = (size_t)gridDim.x * BW_WARPS;
    for (size_t b = ((size_t)blockIdx.x * BW_WARPS + warp) * 32; b < total; b += warps * 32) {
        size_t i = b + lane; /* dim is a multiple of 64: a run of 32 is one token's */
        nl.in_out[i] = __ldg(nl.in_weight + i % (size_t)dim) * (nl.in_x[i] * inv_rms[b / (size_t)dim]);
    }
}

/* PAIRED: gate (w[0]) and up (w[1]) of a SwiGLU block in one launch, a block's first 16-row tile of gate
 * rows and its second of the same rows of up, finishing with silu(gate) * up into y[0]. */
template <int DT, int F16, int NT, bool PAIRED>
__global__ void __launch_bounds__(32 * BW_RS * BW_KS, BW_MIN_BLOCKS)
    gemm_bw_kernel(bw_targets tg, const uint4 *__restrict__ xa, int n_tok) {
    typedef typename bw_fmt<F16>::v2 v2;
    extern __shared__ float red[]; /* [BW_KS][NT * 8][BW_ROWS + 4]: the stores below hit 32 different banks */
    constexpr int RS = BW_RED_STRIDE;
    __shared__ int last_part;
    int k = blockIdx.x >= tg.first_block[1] ? (blockIdx.x >= tg.first_block[2] ? 2 : 1) : 0;
    const cuda_weight &w = k == 0 ? tg.w[0] : k == 1 ? tg.w[1] : tg.w[2];
    const unsigned local = blockIdx.x - tg.first_block[k];
    const int kparts = tg.kparts, kpart = (int)(local % (unsigned)kparts);
    const int64_t rblock = local / (unsigned)kparts;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const int rs = warp % BW_RS, ks = warp / BW_RS;
    const int groups = (int)(w.cols / 32), chunks = groups / 2;
    const int cbeg = (int)((int64_t)chunks * kpart / kparts), cend = (int)((int64_t)chunks * (kpart + 1) / kparts);
    static_assert(!PAIRED || (BW_MT == 2 && BW_RS == 1), "paired blocks hold one 16-row tile of each weight");
    const int64_t row0 = PAIRED ? rblock * 16 : rblock * BW_ROWS + 16 * BW_MT * rs;
    const int64_t trows = PAIRED ? 2 * w.rows : w.rows; /* rows of the tile space */
    /* 32-bit offsets (the launcher keeps larger matrices away): 64-bit ones cost registers */
    uint32_t woff[BW_MT][2], soff[BW_MT][2];
#pragma unroll
    for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int64_t row = PAIRED ? row0 + gid + 8 * h : min(row0 + 16 * mt + gid + 8 * h, w.rows - 1);
            woff[mt][h] = (uint32_t)((size_t)row * w.q_row_bytes + 8 * tig);
            soff[mt][h] = (uint32_t)((size_t)row * groups + (tig >> 1)); /* lanes 0-1: even group, 2-3: odd */
        }
    float acc[BW_MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[mt][nt][j] = 0.0f;
    const v2 bias2 = bw_fmt<F16>::splat(bw_fmt<F16>::BIAS + (DT == TS_DTYPE_Q4_0 ? 8.0f : 0.0f));
    /* the weights and scales of the next chunk are loaded while this one is multiplied: a warp
     * otherwise waits a full DRAM latency per chunk (measured 1.25 TB/s at 32 tokens without it) */
    uint2 wq[BW_MT][2], wq_next[BW_MT][2];
    float d[BW_MT][2], m[BW_MT][2], d_next[BW_MT][2], m_next[BW_MT][2];
    auto load_weights = [&](int c, uint2 (&q)[BW_MT][2], float (&dd)[BW_MT][2], float (&mm)[BW_MT][2]) {
#pragma unroll
        for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const cuda_weight &wm = PAIRED ? tg.w[mt] : w;
                q[mt][h] = load_weight((const uint2 *)(wm.q + woff[mt][h] + (size_t)c * 32));
                group_scale_min<DT>(wm, soff[mt][h] + 2 * c, &dd[mt][h], &mm[mt][h]);
            }
    };
    /* activations: registers 0-3 of the next chunk are loaded once steps 0-1 have used this chunk's,
     * 4-7 after steps 2-3, so they arrive during the multiplications without more registers */
    uint4 xb[NT][2];
    auto load_acts = [&](int c, int j) {
#pragma unroll
        for (int nt = 0; nt < NT; nt++) xb[nt][j] = __ldg(xa + ((size_t)(c * NT + nt) * 2 + j) * 32 + lane);
    };
    /* the weights do not depend on earlier kernels: their first loads are in flight before the wait for
     * the previous kernel to finish (programmatic dependent launch), the activations' after it */
    if (cbeg + ks < cend) load_weights(cbeg + ks, wq, d, m);
    pdl_wait();
    if (cbeg + ks < cend) {
        load_acts(cbeg + ks, 0);
        load_acts(cbeg + ks, 1);
    }
    __shared__ float inv_rms[BW_MAX_TOKENS];
    const bool due = tg.norm.in_partials != NULL;
    if (due) bw_due_norm<NT>(tg.norm, w.cols, n_tok, inv_rms);
    /* the chunk loop unrolled: the next chunk's loads and address arithmetic interleave with this one's
     * products, and the weights' double buffer needs no copies. H200 microbenchmark, Q4_0, us, rolled /
     * unrolled 2 / 4: 32 tokens gate/up 37.9 / 35.7 / 39.0, down 18.3 / 17.7 / 19.1, the head 240.5 /
     * 225.7 / 247.3; 16 tokens gate/up 32.4 / 31.0 / 28.7, the head 202.3 / 190.0 / 173.2 */
    constexpr int CHUNK_UNROLL = NT <= 2 ? 4 : 2;
#pragma unroll CHUNK_UNROLL
    for (int c = cbeg + ks; c < cend; c += BW_KS) {
        const int c_next = c + BW_KS < cend ? c + BW_KS : c;
        load_weights(c_next, wq_next, d_next, m_next);
        v2 d2[BW_MT][2], m2[BW_MT][2];
#pragma unroll
        for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                d2[mt][h] = bw_fmt<F16>::splat(d[mt][h]);
                m2[mt][h] = bw_fmt<F16>::splat(m[mt][h]);
            }
        uint32_t gp[BW_MT][2][4]; /* grid types: this word's four pairs (word x for s 0-1, y for 2-3) */
#pragma unroll
        for (int s = 0; s < 4; s++) {
            if (grid4(DT) && (s == 0 || s == 2))
#pragma unroll
                for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
                    for (int h = 0; h < 2; h++) bw_grid_pairs<F16>(s == 0 ? wq[mt][h].x : wq[mt][h].y, gp[mt][h]);
            uint32_t b[NT][2];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const uint4 &u = xb[nt][s / 2];
                b[nt][0] = (s & 1) ? u.z : u.x;
                b[nt][1] = (s & 1) ? u.w : u.y;
            }
#pragma unroll
            for (int mt = 0; mt < BW_MT; mt++) {
                uint32_t a[4];
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    /* a0, a1: pair 2s of rows gid, gid + 8; a2, a3: pair 2s + 1 */
                    const int h = r & 1, p = 2 * s + (r >> 1);
                    v2 v;
                    if (grid4(DT)) {
                        v = __hmul2(*(v2 *)&gp[mt][h][p & 3], d2[mt][h]);
                    } else {
                        const uint32_t word = p < 4 ? wq[mt][h].x : wq[mt][h].y;
                        uint32_t raw = ((word >> (4 * (p & 3))) & 0x000f000fu) | bw_fmt<F16>::MAGIC;
                        v = __hsub2(*(v2 *)&raw, bias2); /* the code (minus 8 for Q4_0), exactly */
                        v = has_min(DT) ? __hfma2(v, d2[mt][h], m2[mt][h]) : __hmul2(v, d2[mt][h]);
                    }
                    a[r] = *(uint32_t *)&v;
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) mma_16x8x16<F16>(acc[mt][nt], a, b[nt][0], b[nt][1]);
            }
            if (s & 1) load_acts(c_next, s / 2);
        }
#pragma unroll
        for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                wq[mt][h] = wq_next[mt][h];
                d[mt][h] = d_next[mt][h];
                m[mt][h] = m_next[mt][h];
            }
    }
    /* c0, c1: row gid, tokens 2t, 2t + 1; c2, c3: row gid + 8 */
#pragma unroll
    for (int mt = 0; mt < BW_MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int r = 16 * BW_MT * rs + 16 * mt + gid + 8 * (j / 2), t = nt * 8 + 2 * tig + (j % 2);
                red[(ks * NT * 8 + t) * RS + r] = acc[mt][nt][j];
            }
    __syncthreads();
    float *__restrict__ y = k == 0 ? tg.y[0] : k == 1 ? tg.y[1] : tg.y[2];
    const float *__restrict__ bias = k == 0 ? tg.bias[0] : k == 1 ? tg.bias[1] : tg.bias[2];
    if (tg.cluster) {
        bw_cluster_merge<F16, NT, PAIRED>(tg, red, trows, n_tok, rblock, kpart, y, bias, due ? inv_rms : NULL);
        return;
    }
    float *part = kparts > 1 ? (k == 0 ? tg.part[0] : k == 1 ? tg.part[1] : tg.part[2]) : NULL;
    if (!part) {
        bw_finish<F16, NT, PAIRED>(tg, trows, y, bias, BW_FROM_SLICES, red, NULL, n_tok, rblock, 0, 1, due ? inv_rms : NULL);
        return;
    }
    const int64_t base = rblock * BW_ROWS;
    for (int i = threadIdx.x; i < BW_ROWS * NT * 8; i += blockDim.x) {
        int r = i % BW_ROWS, t = i / BW_ROWS;
        if (base + r >= trows || t >= n_tok) continue;
        part[((size_t)kpart * n_tok + t) * trows + base + r] = bw_slice_sum<NT>(red, t, r);
    }
    /* the last part of this row block to finish adds all parts in order */
    __threadfence();
    __syncthreads();
    unsigned *done = k == 0 ? tg.done[0] : k == 1 ? tg.done[1] : tg.done[2];
    if (threadIdx.x == 0) {
        unsigned before = atomicAdd(done + rblock, 1u);
        last_part = before == (unsigned)kparts - 1;
        if (last_part) done[rblock] = 0; /* ready for the next launch */
    }
    __syncthreads();
    if (!last_part) return;
    __threadfence();
    bw_finish<F16, NT, PAIRED>(tg, trows, y, bias, BW_FROM_PARTS, red, part, n_tok, rblock, 0, 1, due ? inv_rms : NULL);
}

/* Calls CALL(DT, F16) for the layouts the kernel reads (cuda_batch16_eligible's), at the precision's format. */
#define BW_DISPATCH(dtype, f16, CALL)                                                   \
    do {                                                                                \
        switch (dtype) {                                                                \
        case TS_DTYPE_Q4_0: if (f16) CALL(TS_DTYPE_Q4_0, 1); else CALL(TS_DTYPE_Q4_0, 0); break;       \
        case TS_DTYPE_IQ4_NL: if (f16) CALL(TS_DTYPE_IQ4_NL, 1); else CALL(TS_DTYPE_IQ4_NL, 0); break; \
        case TS_DTYPE_IQ4_XS: if (f16) CALL(TS_DTYPE_IQ4_XS, 1); else CALL(TS_DTYPE_IQ4_XS, 0); break; \
        case TS_DTYPE_Q4_K: if (f16) CALL(TS_DTYPE_Q4_K, 1); else CALL(TS_DTYPE_Q4_K, 0); break;       \
        default: if (f16) CALL(TS_DTYPE_Q4_1, 1); else CALL(TS_DTYPE_Q4_1, 0); break;  \
        }                                                                               \
    } while (0)

int cuda_batch16_takes(const cuda_impl *im, int n, int64_t cols) {
    if (im->batch16_off || im->code_arch < 800 || n < im->batch16_min_tokens || n > BW_MAX_TOKENS) return 0;
    if (im->opt.precision != TS_PRECISION_BF16 && im->opt.precision != TS_PRECISION_FP16) return 0;
    return cols % 64 == 0 && cols / 64 >= BW_KS;
}

int cuda_batch16_eligible(const cuda_impl *im, const cuda_weight *w, int n) {
    if (!cuda_batch16_takes(im, n, w->cols)) return 0;
    if (w->dtype != TS_DTYPE_Q4_0 && !has_min(w->dtype) && !grid4(w->dtype)) return 0;
    /* 32-bit offsets in the kernel */
    return (size_t)w->rows * w->q_row_bytes < ((size_t)1 << 32) && (size_t)w->rows * (size_t)(w->cols / 32) < ((size_t)1 << 31);
}

/* K parts per row block: the count with the least estimated time. Blocks run in waves of `slots` (the
 * SMs times the blocks that fit on one, for this kernel at this batch); a block costs a start (its first
 * loads, the reduction, the stores), the merge of K parts if any (about 2 chunks' time inside a cluster, 4
 * through global memory), and one memory latency per chunk its warps walk in turn. Units: one chunk's
 * latency (about 1 us). Fitted to an H100 at 8-32 tokens (docs/cuda-notes.md v12): splitting a narrow
 * matrix into parts that overflow one wave measured up to twice as slow as one part per row block (q/k/v
 * at 32 tokens, 768 blocks: 22.1 us, 192: 11.7 us). */
static int choose_kparts(int slots, unsigned row_blocks, int chunks, int cluster) {
    const double start = 3.0, merge = cluster ? 2.0 : 4.0;
    int best = 1;
    double best_time = 1e30;
    for (int s = 1; s <= BW_MAX_KPARTS && chunks / s >= BW_KS; s++) {
        unsigned blocks = row_blocks * (unsigned)s, waves = (blocks + (unsigned)slots - 1) / (unsigned)slots;
        int chunks_per_part = (chunks + s - 1) / s, per_warp = (chunks_per_part + BW_KS - 1) / BW_KS;
        double time = (double)waves * (start + (s > 1 ? merge : 0.0) + per_warp);
        if (time < best_time - 0.01) {
            best_time = time;
            best = s;
        }
    }
    return best;
}

/* Blocks of gemm_bw_kernel<DT, F16, NT> that fit on all SMs at once; sets the kernel's shared memory
 * limit on first use. */
template <int DT, int F16, int NT, bool PAIRED>
static int bw_slots(cuda_impl *im, size_t smem) {
    static int blocks_per_sm; /* per instantiation; the device is the same for the process */
    if (!blocks_per_sm) {
        cudaFuncSetAttribute(gemm_bw_kernel<DT, F16, NT, PAIRED>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        int b = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemm_bw_kernel<DT, F16, NT, PAIRED>, 32 * BW_RS * BW_KS, smem) !=
                cudaSuccess ||
            b < 1)
            b = BW_MIN_BLOCKS;
        blocks_per_sm = b;
        cuda_log(im, 3, "batch kernel at %d tokens: %d blocks a multiprocessor", NT * 8, b);
    }
    return blocks_per_sm * im->prop.multiProcessorCount;
}

/* (more shared memory would leave less L1 for the activations that the blocks of an SM read in turn: 4 KB
 * more a block for the cluster merge's sums made 16-token gate/up 30.2 -> 35.3 us on an H100) */
static size_t bw_smem(int nt) { return (size_t)BW_KS * nt * 8 * BW_RED_STRIDE * sizeof(float); }

/* PAIRED: ws = {gate, up}, ys[0] = silu(gate) * up, also written to swiglu_dense in the fragment order. */
template <int DT, int F16, bool PAIRED>
static void launch_typed(cuda_impl *im, int count, const cuda_weight *const *ws, const float *x, int n,
                         float *const *ys, const float *const *biases, const bw_norm *norm, void *swiglu_dense) {
    const int64_t cols = ws[0]->cols;
    const int nt_count = (n + 7) / 8, chunks = (int)(cols / 64);
    const int64_t elements = (int64_t)nt_count * 8 * cols; /* whole tiles of 8 tokens */
    im->qact_frag = 1; /* producers of the next activations write them in fragment order */
    const cuda_qact *pre = &im->qact;
    const cuda_norm_due due = im->norm_due;
    bw_norm nl;
    memset(&nl, 0, sizeof nl);
    if (norm) nl = *norm;
    uint32_t *xa;
    if (due.out && due.out == x && due.dense) {
        /* x is a due norm's output (cuda_batch16_reads_due checked the shape): the producer's 16-bit
         * weight * residual, each token's sums scaled by its 1/rms here; this launch writes x itself */
        im->norm_due.out = NULL;
        xa = (uint32_t *)due.dense;
        nl.in_partials = due.partials;
        nl.in_x = due.x;
        nl.in_weight = due.weight;
        nl.in_out = due.out;
        nl.eps = due.eps;
    } else if (pre->src == x && pre->dense && pre->dense_kind == 3 + F16 && pre->rows == n && pre->cols == cols &&
               (pre->buffer == im->batch16_act || pre->buffer == im->swiglu_act)) {
        xa = (uint32_t *)pre->dense; /* written by the producer of x (rows past n: stale, and only their
                                        own output columns, which are not stored, see them) */
    } else {
        xa = (uint32_t *)cuda_scratch(im, &im->batch16_act, &im->batch16_act_bytes, (size_t)elements * 2);
        if (!xa) return;
        cuda_launch(im, bw_act_kernel<F16>, dim3((unsigned)((elements + 255) / 256)), dim3(256), 0, x, n, cols, elements,
                    (void *)xa);
        im->qact = cuda_qact_dense(x, n, cols, xa, 3 + F16); /* later products of the same x reuse it */
    }
    bw_targets tg;
    memset(&tg, 0, sizeof tg);
    unsigned row_blocks = 0;
    if (PAIRED) row_blocks = (unsigned)(ws[0]->rows / 16);
    else
        for (int k = 0; k < count; k++) row_blocks += (unsigned)((ws[k]->rows + BW_ROWS - 1) / BW_ROWS);
    int slots = 0;
    switch (nt_count) {
    case 1: slots = bw_slots<DT, F16, 1, PAIRED>(im, bw_smem(1)); break;
    case 2: slots = bw_slots<DT, F16, 2, PAIRED>(im, bw_smem(2)); break;
    case 3: slots = bw_slots<DT, F16, 3, PAIRED>(im, bw_smem(3)); break;
    default: slots = bw_slots<DT, F16, 4, PAIRED>(im, bw_smem(4)); break;
    }
    /* clusters hold all K parts of a row block until the slowest is done; at 8 tokens, where more blocks fit
     * an SM and K parts are most used, that measured slower than the global merge (H100, 8B batch 8: 2117
     * against 2357 tok/s; batch 16 3878 against 3811, batch 32 6214 against 6094) */
    const int may_cluster = im->batch16_cluster && n > 8;
    tg.kparts = choose_kparts(slots, row_blocks, chunks, may_cluster);
    if (im->batch16_kparts > 0) tg.kparts = min(min(im->batch16_kparts, BW_MAX_KPARTS), chunks / BW_KS);
    tg.cluster = tg.kparts > 1 && may_cluster;
    if (tg.kparts > 1 && !tg.cluster) {
        size_t part_floats = 0;
        for (int k = 0; k < count; k++) part_floats += (size_t)tg.kparts * n * (size_t)ws[k]->rows;
        float *part = (float *)cuda_scratch(im, &im->batch16_part, &im->batch16_part_bytes, part_floats * sizeof(float));
        unsigned *done = cuda_counters(im, &im->batch16_done, &im->batch16_done_bytes, row_blocks);
        if (!part || !done) return;
        for (int k = 0; k < (PAIRED ? 1 : count); k++) { /* paired: one tile space of both weights' rows */
            tg.part[k] = part;
            tg.done[k] = done;
            part += (size_t)tg.kparts * n * (size_t)ws[k]->rows;
            done += (ws[k]->rows + BW_ROWS - 1) / BW_ROWS;
        }
    }
    unsigned blocks = 0;
    for (int k = 0; k < MAX_PRODUCT_TARGETS; k++) {
        tg.first_block[k] = blocks;
        if (k >= count) continue;
        tg.w[k] = *ws[k];
        tg.y[k] = PAIRED && k ? NULL : ys[k];
        tg.bias[k] = biases ? biases[k] : NULL;
        if (PAIRED && k == 0) blocks = row_blocks * (unsigned)tg.kparts; /* all blocks are "target 0" */
        if (!PAIRED) blocks += (unsigned)((ws[k]->rows + BW_ROWS - 1) / BW_ROWS) * (unsigned)tg.kparts;
    }
    tg.first_block[MAX_PRODUCT_TARGETS] = blocks;
    tg.norm = nl;
    tg.swiglu_dense = swiglu_dense;
    const dim3 cluster(tg.cluster ? (unsigned)tg.kparts : 1u, 1, 1);
    cudaError_t err = cudaSuccess;
    switch (nt_count) {
#define BW_CASE(NT)                                                                                            \
    case NT:                                                                                                   \
        err = cuda_launch_ex(im, cluster, gemm_bw_kernel<DT, F16, NT, PAIRED>, dim3(blocks),                  \
                             dim3(32 * BW_RS * BW_KS), bw_smem(NT), tg, (const uint4 *)xa, n);                 \
        break;
        BW_CASE(1) BW_CASE(2) BW_CASE(3) BW_CASE(4)
#undef BW_CASE
    }
    if (err != cudaSuccess && tg.cluster) {
        /* a device or driver that refuses the cluster launch: merge through global memory from now on */
        (void)cudaGetLastError();
        cuda_log(im, 1, "cuda: batch products' K parts as thread block clusters refused (%s); merging them through memory",
                 cudaGetErrorString(err));
        im->batch16_cluster = 0;
        if (nl.in_partials) im->norm_due = due; /* the retry reads it again */
        launch_typed<DT, F16, PAIRED>(im, count, ws, x, n, ys, biases, norm, swiglu_dense);
    } else if (err != cudaSuccess) {
        cuda_check(im, err, "batch product launch");
    }
}

template <int DT, int F16>
static void launch_residual_norm(cuda_impl *im, const cuda_weight *w, const float *in, int n, const float *bias, float *x,
                                 const float *norm_weight, float eps, float *out) {
    const int nt_count = (n + 7) / 8;
    /* apart from batch16_act, which this launch may read as its input */
    void *dense = cuda_scratch(im, &im->norm_dense, &im->norm_dense_bytes, (size_t)nt_count * 8 * (size_t)w->rows * 2);
    float *partials = (float *)cuda_scratch(im, (void **)&im->norm_partials, &im->norm_partials_bytes,
                                            (size_t)n * (size_t)(w->rows / 32) * sizeof(float));
    if (!dense || !partials) return;
    bw_norm nl;
    memset(&nl, 0, sizeof nl);
    nl.res_x = x;
    nl.res_weight = norm_weight;
    nl.res_partials = partials;
    nl.res_dense = dense;
    float *no_y = NULL;
    launch_typed<DT, F16, false>(im, 1, &w, in, n, &no_y, &bias, &nl, NULL);
    cuda_norm_due due = cuda_norm_due_of(out, x, norm_weight, eps, n, (int)w->rows, partials);
    due.dense = dense;
    due.dense_kind = 3 + F16;
    cuda_leave_norm_due(im, &due);
}

void cuda_batch16_matmul(cuda_impl *im, int count, const cuda_weight *const *ws, const float *x, int n,
                         float *const *ys, const float *const *biases) {
    int f16 = im->opt.precision == TS_PRECISION_FP16;
#define BW_MATMUL(DT, F) launch_typed<DT, F, false>(im, count, ws, x, n, ys, biases, NULL, NULL)
    BW_DISPATCH(ws[0]->dtype, f16, BW_MATMUL);
#undef BW_MATMUL
}

int cuda_batch16_fuses_norm(const cuda_impl *im, const cuda_weight *w, int n) {
    /* the norm's 16-bit form is in the fragment order, whole chunks of 64: only where a reader can take it */
    return !im->fuse_norm_off && w->rows % 32 == 0 && cuda_batch16_eligible(im, w, n) && cuda_batch16_takes(im, n, w->rows);
}

void cuda_batch16_residual_norm(cuda_impl *im, const cuda_weight *w, const float *in, int n, const float *bias, float *x,
                                const float *norm_weight, float eps, float *out) {
    int f16 = im->opt.precision == TS_PRECISION_FP16;
#define BW_RESIDUAL(DT, F) launch_residual_norm<DT, F>(im, w, in, n, bias, x, norm_weight, eps, out)
    BW_DISPATCH(w->dtype, f16, BW_RESIDUAL);
#undef BW_RESIDUAL
}

int cuda_batch16_reads_due(const cuda_impl *im, int count, const cuda_weight *const *ws, int n) {
    const cuda_norm_due *d = &im->norm_due;
    if (!d->dense || d->rows != n || count < 1 || d->dense_kind != 3 + (im->opt.precision == TS_PRECISION_FP16)) return 0;
    for (int k = 0; k < count; k++)
        if (!cuda_batch16_eligible(im, ws[k], n) || ws[k]->dtype != ws[0]->dtype || ws[k]->cols != d->dim) return 0;
    return 1;
}

int cuda_batch16_pairs_swiglu(const cuda_impl *im, const cuda_weight *gate, const cuda_weight *up, int n) {
    return !im->fuse_silu_off && gate->rows == up->rows && gate->cols == up->cols && gate->dtype == up->dtype &&
           gate->rows % 16 == 0 && cuda_batch16_eligible(im, gate, n) && cuda_batch16_eligible(im, up, n);
}

void cuda_batch16_swiglu(cuda_impl *im, const cuda_weight *gate, const cuda_weight *up, const float *x, int n, float *out) {
    const int nt_count = (n + 7) / 8;
    /* apart from batch16_act, which this launch may read as its input; the fragment order holds whole
     * chunks of 64 columns */
    void *dense = NULL;
    if (cuda_batch16_takes(im, n, gate->rows)) {
        dense = cuda_scratch(im, &im->swiglu_act, &im->swiglu_act_bytes, (size_t)nt_count * 8 * (size_t)gate->rows * 2);
        if (!dense) return;
    }
    const cuda_weight *ws[2] = {gate, up};
    float *ys[2] = {out, NULL};
    const int f16 = im->opt.precision == TS_PRECISION_FP16;
#define BW_SWIGLU(DT, F) launch_typed<DT, F, true>(im, 2, ws, x, n, ys, NULL, NULL, dense)
    BW_DISPATCH(gate->dtype, f16, BW_SWIGLU);
#undef BW_SWIGLU
    /* the down projection reads out in this form (launch_typed may have registered x's) */
    if (dense) im->qact = cuda_qact_dense(out, n, gate->rows, dense, 3 + f16);
    else im->qact.src = NULL;
}

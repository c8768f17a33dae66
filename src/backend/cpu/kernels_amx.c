/* The AMX kernel table: the AVX-512 table, with products of more than 8 tokens on AMX tiles.
 *  - Integer weights: a 16-row block decoded in signed mode (unified.h: 64 bytes per 4 values,
 *    exactly the tile B layout; offsets already subtracted) against 16 tokens of quantized
 *    activations (tile A, read in place with the activation row stride; a last partial tile reads
 *    the padding rows that ts_mm_args guarantees) by TDPBSSD, one block per tile product because
 *    every block has its own scales; the int32 tile is then scaled into float accumulators with
 *    AVX-512 while the next products run.
 *  - BF16 weights, opt-in reduced precision (activations rounded to bf16): TDPBF16PS over the
 *    TS_PACK_AMX_BF16 layout, 2 row groups x 2 token tiles per step.
 * Fewer than 16 tokens (decode) use the AVX-512 kernels. Tile state is configured per call and
 * released afterwards; the Linux permission request was made by cpu_features. */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels_x86.h"
#include "backend/cpu/mm_unified.h"
#include "backend/cpu/pack.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

_Static_assert(sizeof(tile_config) == 64, "AMX tile configuration is 64 bytes");

/* GCC 12 does not treat ldtilecfg as reading its operand and drops the stores that fill it; the
 * empty asm tells it the whole configuration is read. */
static void load_config(const tile_config *c) {
    __asm__ volatile("" : : "m"(*c) : "memory");
    _tile_loadconfig(c);
}

/* ---- integer weights ---- */

/* Tiles 0, 1: int32 results (16 tokens x 16 rows); 2, 3: activations (16 tokens x B bytes);
 * 4, 5: decoded weights (B / 4 rows of 16 rows x 4 bytes). */
static void config_int8(int B) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 2; i++) {
        c.rows[i] = 16, c.colsb[i] = 64;
        c.rows[2 + i] = 16, c.colsb[2 + i] = (uint16_t)B;
        c.rows[4 + i] = (uint8_t)(B / 4), c.colsb[4 + i] = 64;
    }
    load_config(&c);
}

typedef struct {
    const uint8_t *act; /* row of the tile's first token */
    size_t stride;
    int64_t cols;
} act_view;

ALWAYS_INLINE void epilogue(const int32_t *c, const uint8_t *u, const act_view *av, int64_t g, __m512 *facc,
                            const int B, const int has_min) {
    __m512 sc = _mm512_load_ps((const float *)(u + B * 16));
    __m512 mb = has_min ? _mm512_load_ps((const float *)(u + B * 16 + 64)) : _mm512_setzero_ps();
    size_t d_off = (size_t)av->cols + (size_t)(B == 32 ? g : g >> 1) * 4;
    size_t s_off = B == 32 ? (size_t)av->cols + (size_t)av->cols / 32 * 4 + (size_t)g * 4
                           : (size_t)av->cols + (size_t)av->cols / 32 * 8 + (size_t)g * 2;
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        const uint8_t *row = av->act + (size_t)t * av->stride;
        float dx;
        memcpy(&dx, row + d_off, 4);
        __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t));
        if (has_min) {
            /* Types with minimums have no offset (their values are unsigned and fit int8). */
            int xs;
            if (B == 32) {
                int32_t x32;
                memcpy(&x32, row + s_off, 4);
                xs = x32;
            } else {
                int16_t x16;
                memcpy(&x16, row + s_off, 2);
                xs = x16;
            }
            v = _mm512_fmadd_ps(v, sc, _mm512_mul_ps(mb, _mm512_set1_ps((float)xs)));
            facc[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(dx), facc[t]);
        } else {
            facc[t] = _mm512_fmadd_ps(v, _mm512_mul_ps(sc, _mm512_set1_ps(dx)), facc[t]);
        }
    }
}

#define ISSUE(C, A, W, blk)                                                                                            \
    do {                                                                                                               \
        _tile_loadd(A, av.act + (size_t)(ub0 + (blk)) * B, (long)av.stride);                                          \
        _tile_loadd(W, ub + (size_t)(blk) * ubytes, 64);                                                               \
        _tile_zero(C);                                                                                                 \
        _tile_dpbssd(C, A, W);                                                                                         \
    } while (0)

/* 16 tokens x 16 rows over decoded blocks [0, nblk), of which the first n_valid tokens are stored:
 * two result tiles alternate, so the products of the next two blocks run while the current two are
 * scaled. */
ALWAYS_INLINE void tile16(const uint8_t *ub, int64_t nblk, const uint8_t *act, size_t astride, int64_t cols,
                          int64_t ub0, int t0, int n_valid, float *acc, size_t acc_stride, const int accumulate,
                          const int B, const int has_min) {
    const size_t ubytes = (size_t)B * 16 + 128;
    act_view av = {act + (size_t)t0 * astride, astride, cols};
    int32_t cbuf[2][256] __attribute__((aligned(64)));
    __m512 facc[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        facc[t] = accumulate && t < n_valid ? _mm512_loadu_ps(acc + acc_stride * (size_t)t) : _mm512_setzero_ps();
    if (nblk > 0) ISSUE(0, 2, 4, 0);
    if (nblk > 1) ISSUE(1, 3, 5, 1);
    for (int64_t b = 0; b < nblk; b += 2) {
        int second = b + 1 < nblk;
        _tile_stored(0, cbuf[0], 64);
        if (second) _tile_stored(1, cbuf[1], 64);
        if (b + 2 < nblk) ISSUE(0, 2, 4, b + 2);
        if (b + 3 < nblk) ISSUE(1, 3, 5, b + 3);
        epilogue(cbuf[0], ub + (size_t)b * ubytes, &av, ub0 + b, facc, B, has_min);
        if (second) epilogue(cbuf[1], ub + (size_t)(b + 1) * ubytes, &av, ub0 + b + 1, facc, B, has_min);
    }
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        if (t < n_valid) _mm512_storeu_ps(acc + acc_stride * (size_t)t, facc[t]);
}

/* acc: 16 floats per token, accumulated into; out: the product's own rows (out_stride floats apart),
 * overwritten, so that prefill writes its results once instead of through a copy. */
#define TILE16_VARIANT(NAME, BLOCK, HAS_MIN)                                                                           \
    static void NAME(const uint8_t *ub, int64_t n, const uint8_t *a, size_t s, int64_t c, int64_t u0, int t0, int nv, \
                     float *acc) {                                                                                     \
        tile16(ub, n, a, s, c, u0, t0, nv, acc, 16, 1, BLOCK, HAS_MIN);                                                \
    }                                                                                                                  \
    static void NAME##_to(const uint8_t *ub, int64_t n, const uint8_t *a, size_t s, int64_t c, int t0, int nv,        \
                          float *out, size_t out_stride) {                                                             \
        tile16(ub, n, a, s, c, 0, t0, nv, out, out_stride, 0, BLOCK, HAS_MIN);                                         \
    }
TILE16_VARIANT(tile16_b32, 32, 0)
TILE16_VARIANT(tile16_b32m, 32, 1)
TILE16_VARIANT(tile16_b16, 16, 0)

static void amx_kernel(const uint8_t *ub, int64_t nblk, const ts_unified_desc *ud, const uint8_t *act, size_t astride,
                       int64_t cols, int64_t ub0, int t0, int n_tok, float *acc) {
    config_int8(ud->block);
    for (int t = 0; t < n_tok; t += 16) {
        int nv = n_tok - t < 16 ? n_tok - t : 16;
        float *a = acc + (size_t)16 * t;
        if (ud->block == 16) tile16_b16(ub, nblk, act, astride, cols, ub0, t0 + t, nv, a);
        else if (ud->has_min) tile16_b32m(ub, nblk, act, astride, cols, ub0, t0 + t, nv, a);
        else tile16_b32(ub, nblk, act, astride, cols, ub0, t0 + t, nv, a);
    }
    _tile_release();
}

static void amx_kernel_to(const uint8_t *ub, size_t group_stride, int n_groups, int64_t nblk, const ts_unified_desc *ud,
                          const uint8_t *act, size_t astride, int64_t cols, int t0, int n_tok, float *out,
                          size_t out_stride) {
    config_int8(ud->block);
    for (int t = 0; t < n_tok; t += 16) {
        int nv = n_tok - t < 16 ? n_tok - t : 16;
        for (int g = 0; g < n_groups; g++) {
            const uint8_t *u = ub + group_stride * (size_t)g;
            float *o = out + out_stride * (size_t)t + (size_t)16 * g;
            if (ud->block == 16) tile16_b16_to(u, nblk, act, astride, cols, t0 + t, nv, o, out_stride);
            else if (ud->has_min) tile16_b32m_to(u, nblk, act, astride, cols, t0 + t, nv, o, out_stride);
            else tile16_b32_to(u, nblk, act, astride, cols, t0 + t, nv, o, out_stride);
        }
    }
    _tile_release();
}

static void decode_packed(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                          uint8_t *dst) {
    (void)row_bytes;
    (void)nrows;
    ts_avx512_decode_packed(t, src, nb0, nb1, 0, dst);
}

static void decode_packed_signed(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                                 uint8_t *dst) {
    (void)row_bytes;
    (void)nrows;
    ts_avx512_decode_packed(t, src, nb0, nb1, 1, dst);
}

/* Streaming (up to 8 tokens) stays on AVX-512; more tokens go to the tiles. */
static const ts_uni_impl g_uni = {.decode = decode_packed,
                                  .kernel = ts_avx512_uni_kernel,
                                  .signed_vals = 0,
                                  .tile_tokens = 8,
                                  .gemv_tokens = 8,
                                  .gemm_decode = decode_packed_signed,
                                  .gemm_kernel = amx_kernel,
                                  .gemm_kernel_to = amx_kernel_to,
                                  .gemm_signed_vals = 1,
                                  .gemm_tile_tokens = TS_UNI_MAX_TILE,
                                  .fused_gemv = ts_avx512_fused_gemv};

static void mm_packed(const ts_mm_args *a) { ts_mm_unified(a, 1, &g_uni); }
static void mm_raw(const ts_mm_args *a) { ts_mm_unified(a, 0, &g_uni); }

/* ---- BF16 weights with bf16 activations (opt-in) ---- */

/* Tiles 0..3: fp32 results (tokens x 16 rows), 4, 5: activations (tokens x 32 bf16), 6, 7: weights
 * (16 column pairs x 16 rows x 2 bf16). */
static void config_bf16(int tok_rows) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 4; i++) c.rows[i] = (uint8_t)tok_rows, c.colsb[i] = 64;
    for (int i = 4; i < 6; i++) c.rows[i] = (uint8_t)tok_rows, c.colsb[i] = 64;
    for (int i = 6; i < 8; i++) c.rows[i] = 16, c.colsb[i] = 64;
    load_config(&c);
}

static void store_tile_rows(const ts_mm_args *a, const float *c, int t0, int ntok, int64_t row0) {
    int nrows = a->r1 - row0 < 16 ? (int)(a->r1 - row0) : 16;
    for (int t = 0; t < ntok; t++) {
        float *y = a->y + (size_t)(t0 + t) * a->y_stride + (size_t)row0;
        for (int r = 0; r < nrows; r++) y[r] = c[16 * t + r] + (a->bias ? a->bias[row0 + r] : 0.0f);
    }
}

/* One step: up to 2 token tiles (rows tok_rows each) x up to 2 row groups. */
static void bf16_step(const ts_mm_args *a, int t0, int two_tok, int tok_rows, int64_t g0, int two_grp) {
    const uint8_t *act0 = a->act + (size_t)t0 * a->act_stride;
    const uint8_t *act1 = act0 + (size_t)tok_rows * a->act_stride;
    const uint8_t *w0 = a->w + (size_t)g0 * a->w_stride, *w1 = w0 + a->w_stride;
    long as = (long)a->act_stride;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t k = 0; k < a->cols; k += 32) {
        _tile_loadd(4, act0 + 2 * k, as);
        _tile_loadd(6, w0 + (size_t)k * 32, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (two_grp) {
            _tile_loadd(7, w1 + (size_t)k * 32, 64);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (two_tok) {
            _tile_loadd(5, act1 + 2 * k, as);
            _tile_dpbf16ps(2, 5, 6);
            if (two_grp) _tile_dpbf16ps(3, 5, 7);
        }
    }
    float c[256] __attribute__((aligned(64)));
    _tile_stored(0, c, 64);
    store_tile_rows(a, c, t0, tok_rows, g0 * 16);
    if (two_grp) {
        _tile_stored(1, c, 64);
        store_tile_rows(a, c, t0, tok_rows, (g0 + 1) * 16);
    }
    if (two_tok) {
        _tile_stored(2, c, 64);
        store_tile_rows(a, c, t0 + tok_rows, tok_rows, g0 * 16);
        if (two_grp) {
            _tile_stored(3, c, 64);
            store_tile_rows(a, c, t0 + tok_rows, tok_rows, (g0 + 1) * 16);
        }
    }
}

/* a->cols is a multiple of 32 (ts_cpu_matmul_prepare packs only such weights for this path). */
static void mm_bf16_reduced(const ts_mm_args *a) {
    int64_t g_begin = a->r0 / 16, g_end = (a->r1 + 15) / 16;
    int full = a->n_tok / 16 * 16, rest = a->n_tok - full;
    if (full) {
        config_bf16(16);
        for (int t0 = 0; t0 < full; t0 += 32)
            for (int64_t g = g_begin; g < g_end; g += 2) bf16_step(a, t0, t0 + 16 < full, 16, g, g + 1 < g_end);
    }
    if (rest) {
        config_bf16(rest);
        for (int64_t g = g_begin; g < g_end; g += 2) bf16_step(a, full, 0, rest, g, g + 1 < g_end);
    }
    _tile_release();
}

const ts_cpu_kernels ts_cpu_kernels_amx = {
    .name = "amx",
    .required = TS_CPU_AVX2 | TS_CPU_AVX512F | TS_CPU_AVX512_VNNI | TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16,
    .quantize_act = ts_avx512_quantize_act,
    .mm =
        {
            [TS_DTYPE_F32] = ts_avx512_mm_f32,
            [TS_DTYPE_F16] = ts_avx512_mm_f16,
            [TS_DTYPE_BF16] = ts_avx512_mm_bf16,
            [TS_DTYPE_Q8_0] = mm_raw,
            [TS_DTYPE_Q4_0] = mm_raw,
            [TS_DTYPE_Q4_1] = mm_raw,
            [TS_DTYPE_Q4_K] = mm_raw,
            [TS_DTYPE_Q5_K] = mm_raw,
            [TS_DTYPE_Q6_K] = mm_raw,
            [TS_DTYPE_IQ4_NL] = mm_raw,
            [TS_DTYPE_IQ4_XS] = mm_raw,
        },
    .mm_packed =
        {
            [TS_DTYPE_Q8_0] = mm_packed,
            [TS_DTYPE_Q4_0] = mm_packed,
            [TS_DTYPE_IQ4_NL] = mm_packed,
            [TS_DTYPE_IQ4_XS] = mm_packed,
            [TS_DTYPE_Q4_1] = mm_packed,
            [TS_DTYPE_Q4_K] = mm_packed,
            [TS_DTYPE_Q5_K] = mm_packed,
            [TS_DTYPE_Q6_K] = mm_packed,
        },
    .mm_bf16_reduced = mm_bf16_reduced,
    TS_AVX512_HELPERS,
};

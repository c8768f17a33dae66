/* The AVX-512 kernel table (F, BW, VL, DQ with VNNI): activation quantization, decoders from the
 * packed layouts (pack.h) to the unified form, the vpdpbusd micro-kernel over 16 rows x up to 8
 * tokens, float-weight products (F32, F16, BF16 against float32 activations, float32 accumulation),
 * and vector helpers. Compiled with AVX-512 flags; only called when the CPU has them. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels_x86.h"
#include "backend/cpu/mm_unified.h"
#include "backend/cpu/pack.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization (bit-identical to ts_act_quantize_ref) ---- */

void ts_avx512_quantize_act(const float *x, int64_t cols, void *row) {
    int64_t nb = cols / TS_ACT_BLOCK;
    int8_t *q = (int8_t *)row;
    float *d = (float *)ts_act_d(row, cols);
    int32_t *s32 = (int32_t *)ts_act_sum32(row, cols);
    int16_t *s16 = (int16_t *)ts_act_sum16(row, cols);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++) {
        __m512 x0 = _mm512_loadu_ps(x + b * 32), x1 = _mm512_loadu_ps(x + b * 32 + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, x0), _mm512_andnot_ps(sign, x1)));
        if (!(amax >= 1e-30f)) {
            memset(q + b * 32, 0, 32);
            d[b] = 0.0f;
            s32[b] = 0;
            s16[2 * b] = s16[2 * b + 1] = 0;
            continue;
        }
        __m512 id = _mm512_set1_ps(127.0f / amax);
        d[b] = amax / 127.0f;
        /* cvtps rounds to nearest even, as nearbyintf does in the default rounding mode. */
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
        _mm_storeu_si128((__m128i *)(q + b * 32), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + b * 32 + 16), _mm512_cvtsepi32_epi8(q1));
        int a = _mm512_reduce_add_epi32(q0), c = _mm512_reduce_add_epi32(q1);
        s16[2 * b] = (int16_t)a;
        s16[2 * b + 1] = (int16_t)c;
        s32[b] = a + c;
    }
}

/* ---- decoders: one packed native block of a 16-row group -> unified blocks ---- */

ALWAYS_INLINE __m512 load_f16x16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

ALWAYS_INLINE __m512 load_u8x16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

ALWAYS_INLINE void put_scales(uint8_t *u, int B, __m512 scale, __m512 mb) {
    _mm512_store_ps((float *)(u + B * 16), scale);
    _mm512_store_ps((float *)(u + B * 16 + 64), mb);
}

/* Four slices of packed nibbles -> low nibbles to slices 0..3, high nibbles to slices 4..7. Each index
 * becomes levels[index] where a level table is given (a byte shuffle), else index - sub (the offset,
 * in signed mode). */
ALWAYS_INLINE void nibbles_to_block(const uint8_t *q, uint8_t *u, int sub, const __m128i *levels) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), vs = _mm512_set1_epi8((char)sub);
    const __m512i table = levels ? _mm512_broadcast_i32x4(*levels) : _mm512_setzero_si512();
    for (int s = 0; s < 4; s++) {
        __m512i v = _mm512_loadu_si512(q + 64 * s);
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        _mm512_store_si512(u + 64 * s, levels ? _mm512_shuffle_epi8(table, lo) : _mm512_sub_epi8(lo, vs));
        _mm512_store_si512(u + 64 * (4 + s), levels ? _mm512_shuffle_epi8(table, hi) : _mm512_sub_epi8(hi, vs));
    }
}

/* IQ4_NL's grid levels as bytes: signed, or plus 128 (the type's offset in the unified form). */
ALWAYS_INLINE __m128i iq4_nl_levels(int signed_out) {
    __m128i v = _mm_loadu_si128((const __m128i *)ts_iq4_nl_values);
    return signed_out ? v : _mm_xor_si128(v, _mm_set1_epi8((char)0x80));
}

/* Stored values are q + 128; signed mode restores q. */
static void dec_q8_0(const uint8_t *p, uint8_t *u, int signed_out) {
    const __m512i flip = _mm512_set1_epi8(signed_out ? (char)0x80 : 0);
    for (int s = 0; s < 8; s++) _mm512_store_si512(u + 64 * s, _mm512_xor_si512(_mm512_loadu_si512(p + 32 + 64 * s), flip));
    put_scales(u, 32, load_f16x16(p), _mm512_setzero_ps());
}

static void dec_q4_0(const uint8_t *p, uint8_t *u, int signed_out) {
    nibbles_to_block(p + 32, u, signed_out ? 8 : 0, NULL);
    put_scales(u, 32, load_f16x16(p), _mm512_setzero_ps());
}

/* IQ4_NL: Q4_0's packing with indices into the grid. */
static void dec_iq4_nl(const uint8_t *p, uint8_t *u, int signed_out) {
    const __m128i levels = iq4_nl_levels(signed_out);
    nibbles_to_block(p + 32, u, 0, &levels);
    put_scales(u, 32, load_f16x16(p), _mm512_setzero_ps());
}

/* IQ4_XS: eight IQ4_NL blocks whose scales are d times a signed 6-bit sub-scale (exact in float). */
static void dec_iq4_xs(const uint8_t *p, uint8_t *u, int signed_out) {
    const __m128i levels = iq4_nl_levels(signed_out);
    const __m512 d = load_f16x16(p);
    for (int j = 0; j < 8; j++) {
        __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 32 + 16 * j))));
        nibbles_to_block(p + 160 + 256 * j, u + 640 * j, 0, &levels);
        put_scales(u + 640 * j, 32, _mm512_mul_ps(d, sc), _mm512_setzero_ps());
    }
}

static void dec_q4_1(const uint8_t *p, uint8_t *u) {
    nibbles_to_block(p + 64, u, 0, NULL);
    put_scales(u, 32, load_f16x16(p), load_f16x16(p + 32));
}

/* Q4_K and Q5_K: chunk c of 32 qs bytes holds sub-block 2c in low nibbles and 2c + 1 in high ones. */
static void dec_qk45(const uint8_t *p, uint8_t *u, int has_qh) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    const __m512 neg = _mm512_set1_ps(-0.0f);
    __m512 d = load_f16x16(p), dmin = load_f16x16(p + 32);
    for (int j = 0; j < 8; j++) {
        __m512 scale = _mm512_mul_ps(d, load_u8x16_ps(p + 64 + 16 * j));
        __m512 mb = _mm512_xor_ps(_mm512_mul_ps(dmin, load_u8x16_ps(p + 192 + 16 * j)), neg);
        put_scales(u + 640 * j, 32, scale, mb);
    }
    for (int c = 0; c < 4; c++) {
        uint8_t *lo = u + 640 * (2 * c), *hi = u + 640 * (2 * c + 1);
        for (int s = 0; s < 8; s++) {
            __m512i v = _mm512_loadu_si512(p + 320 + 64 * (8 * c + s));
            __m512i vl = _mm512_and_si512(v, m4), vh = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            if (has_qh) {
                /* Bit j of qh byte l is the fifth bit of value l of sub-block j; move it to bit 4. */
                __m512i h = _mm512_loadu_si512(p + 2368 + 64 * s);
                int jl = 2 * c, jh = 2 * c + 1;
                __m512i hl = jl <= 4 ? _mm512_slli_epi16(h, (unsigned)(4 - jl)) : _mm512_srli_epi16(h, (unsigned)(jl - 4));
                __m512i hh = jh <= 4 ? _mm512_slli_epi16(h, (unsigned)(4 - jh)) : _mm512_srli_epi16(h, (unsigned)(jh - 4));
                vl = _mm512_or_si512(vl, _mm512_and_si512(hl, bit4));
                vh = _mm512_or_si512(vh, _mm512_and_si512(hh, bit4));
            }
            _mm512_store_si512(lo + 64 * s, vl);
            _mm512_store_si512(hi + 64 * s, vh);
        }
    }
}

/* Q6_K: for half h and 4-value slice ls of l = 0..31, ql slices 16h + ls (values l, l + 64) and
 * 16h + 8 + ls (values l + 32, l + 96) and qh slice 8h + ls give four 6-bit values. Decoded blocks
 * are 16 values: value e lands in block e / 16, slice (e % 16) / 4. */
static void dec_q6_k(const uint8_t *p, uint8_t *u, int signed_out) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i vs = _mm512_set1_epi8(signed_out ? 32 : 0);
    __m512 d = load_f16x16(p);
    for (int s = 0; s < 16; s++) {
        __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 32 + 16 * s))));
        put_scales(u + 384 * s, 16, _mm512_mul_ps(d, sc), _mm512_setzero_ps());
    }
    for (int h = 0; h < 2; h++) {
        for (int ls = 0; ls < 8; ls++) {
            __m512i qa = _mm512_loadu_si512(p + 288 + 64 * (16 * h + ls));
            __m512i qb = _mm512_loadu_si512(p + 288 + 64 * (16 * h + 8 + ls));
            __m512i qh = _mm512_loadu_si512(p + 2336 + 64 * (8 * h + ls));
            __m512i v0 = _mm512_or_si512(_mm512_and_si512(qa, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
            __m512i v1 = _mm512_or_si512(_mm512_and_si512(qb, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30));
            __m512i v2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qa, 4), m4), _mm512_and_si512(qh, m30));
            __m512i v3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qb, 4), m4),
                                         _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30));
            int blk = 8 * h + ls / 4, slice = ls % 4;
            _mm512_store_si512(u + 384 * blk + 64 * slice, _mm512_sub_epi8(v0, vs));
            _mm512_store_si512(u + 384 * (blk + 2) + 64 * slice, _mm512_sub_epi8(v1, vs));
            _mm512_store_si512(u + 384 * (blk + 4) + 64 * slice, _mm512_sub_epi8(v2, vs));
            _mm512_store_si512(u + 384 * (blk + 6) + 64 * slice, _mm512_sub_epi8(v3, vs));
        }
    }
}

/* Streaming weights from memory: prefetch this far ahead of the block being decoded. */
#define PREFETCH_BYTES 2048

void ts_avx512_decode_packed(ts_dtype t, const uint8_t *group, int64_t nb0, int64_t nb1, int signed_out, uint8_t *dst) {
    size_t bb = ts_pack_block_bytes(TS_PACK_I16, t);
    const uint8_t *p = group + (size_t)nb0 * bb;
    for (int64_t nb = nb0; nb < nb1; nb++, p += bb) {
        for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)(p + PREFETCH_BYTES + o), _MM_HINT_T0);
        switch (t) {
        case TS_DTYPE_Q8_0: dec_q8_0(p, dst, signed_out); dst += 640; break;
        case TS_DTYPE_Q4_0: dec_q4_0(p, dst, signed_out); dst += 640; break;
        case TS_DTYPE_IQ4_NL: dec_iq4_nl(p, dst, signed_out); dst += 640; break;
        case TS_DTYPE_IQ4_XS: dec_iq4_xs(p, dst, signed_out); dst += 8 * 640; break;
        case TS_DTYPE_Q4_1: dec_q4_1(p, dst); dst += 640; break;
        case TS_DTYPE_Q4_K: dec_qk45(p, dst, 0); dst += 8 * 640; break;
        case TS_DTYPE_Q5_K: dec_qk45(p, dst, 1); dst += 8 * 640; break;
        case TS_DTYPE_Q6_K: dec_q6_k(p, dst, signed_out); dst += 16 * 384; break;
        default: return;
        }
    }
}

static void decode_packed(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                          uint8_t *dst) {
    (void)row_bytes;
    (void)nrows;
    ts_avx512_decode_packed(t, src, nb0, nb1, 0, dst);
}

/* ---- the micro-kernel: 16 rows (one vector) x T tokens over decoded blocks ---- */

ALWAYS_INLINE void uk_body(const uint8_t *ub, int64_t nblk, int off, const uint8_t *act, size_t astride, int64_t cols,
                           int64_t ub0, int t0, float *acc, const int T, const int B, const int has_min) {
    const int8_t *xq[8];
    const float *xd[8];
    const int32_t *x32[8];
    const int16_t *x16[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const uint8_t *row = act + (size_t)(t0 + t) * astride;
        xq[t] = ts_act_q(row);
        xd[t] = ts_act_d(row, cols);
        x32[t] = ts_act_sum32(row, cols);
        x16[t] = ts_act_sum16(row, cols);
    }
    __m512 facc[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) facc[t] = _mm512_loadu_ps(acc + 16 * t);
    const size_t ubytes = (size_t)B * 16 + 128;
    for (int64_t b = 0; b < nblk; b++) {
        const uint8_t *u = ub + (size_t)b * ubytes;
        int64_t g = ub0 + b;
        __m512i ia[8];
        int xs[8];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            xs[t] = B == 32 ? x32[t][g] : x16[t][g];
            ia[t] = _mm512_set1_epi32(-off * xs[t]);
        }
#pragma GCC unroll 8
        for (int s = 0; s < B / 4; s++) {
            __m512i w = _mm512_load_si512(u + 64 * s);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                int32_t xv;
                memcpy(&xv, xq[t] + g * B + 4 * s, 4);
                ia[t] = _mm512_dpbusd_epi32(ia[t], w, _mm512_set1_epi32(xv));
            }
        }
        __m512 sc = _mm512_load_ps((const float *)(u + B * 16));
        __m512 mb = has_min ? _mm512_load_ps((const float *)(u + B * 16 + 64)) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512 v = _mm512_cvtepi32_ps(ia[t]);
            v = has_min ? _mm512_fmadd_ps(v, sc, _mm512_mul_ps(mb, _mm512_set1_ps((float)xs[t]))) : _mm512_mul_ps(v, sc);
            float dx = B == 32 ? xd[t][g] : xd[t][g >> 1];
            facc[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(dx), facc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(acc + 16 * t, facc[t]);
}

#define UK_VARIANT(T, NAME, B, HAS_MIN)                                                                                 \
    static void NAME##_##T(const uint8_t *ub, int64_t n, int off, const uint8_t *a, size_t s, int64_t c, int64_t u0,   \
                           int t0, float *acc) {                                                                       \
        uk_body(ub, n, off, a, s, c, u0, t0, acc, T, B, HAS_MIN);                                                     \
    }
#define UK_VARIANTS(T)                                                                                                 \
    UK_VARIANT(T, uk32, 32, 0)                                                                                         \
    UK_VARIANT(T, uk32m, 32, 1)                                                                                        \
    UK_VARIANT(T, uk16, 16, 0)
UK_VARIANTS(1)
UK_VARIANTS(2)
UK_VARIANTS(3)
UK_VARIANTS(4)
UK_VARIANTS(5)
UK_VARIANTS(6)
UK_VARIANTS(7)
UK_VARIANTS(8)

typedef void (*uk_fn)(const uint8_t *, int64_t, int, const uint8_t *, size_t, int64_t, int64_t, int, float *);
#define UK_SET(NAME) {NAME##_1, NAME##_2, NAME##_3, NAME##_4, NAME##_5, NAME##_6, NAME##_7, NAME##_8}
/* By block form: 32 values, 32 with minimums, 16 values; then by tokens - 1. */
static const uk_fn g_uk[3][8] = {UK_SET(uk32), UK_SET(uk32m), UK_SET(uk16)};

void ts_avx512_uni_kernel(const uint8_t *ub, int64_t nblk, const ts_unified_desc *ud, const uint8_t *act, size_t astride,
                          int64_t cols, int64_t ub0, int t0, int n_tok, float *acc) {
    const uk_fn *set = g_uk[ud->block == 16 ? 2 : ud->has_min ? 1 : 0];
    for (int i = 0; i < n_tok; i += 8) {
        int nt = n_tok - i < 8 ? n_tok - i : 8;
        set[nt - 1](ub, nblk, ud->off, act, astride, cols, ub0, t0 + i, acc + 16 * i);
    }
}

/* Decode-time products for Q4_0, Q8_0 and IQ4_NL straight from the packed slices: the same integer sums and the
 * same float steps as decode + uk_body (so results are identical), without the decoded copy. */
/* kind: 0 Q8_0, 1 Q4_0, 2 IQ4_NL (Q4_0's packing; a byte shuffle turns indices into grid values + 128). */
ALWAYS_INLINE void fused_q4q8_body(const int kind, const uint8_t *group, int64_t n_native, const uint8_t *act,
                                   size_t astride, int64_t cols, const int T, float *acc) {
    const int8_t *xq[8];
    const float *xd[8];
    const int32_t *x32[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const uint8_t *row = act + (size_t)t * astride;
        xq[t] = ts_act_q(row);
        xd[t] = ts_act_d(row, cols);
        x32[t] = ts_act_sum32(row, cols);
    }
    __m512 facc[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) facc[t] = _mm512_loadu_ps(acc + 16 * t);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const int q4 = kind != 0;
    const size_t bb = q4 ? 288 : 544;
    const int off = kind == 1 ? 8 : 128;
    const __m512i grid = kind == 2 ? _mm512_broadcast_i32x4(iq4_nl_levels(0)) : _mm512_setzero_si512();
    for (int64_t g = 0; g < n_native; g++) {
        const uint8_t *p = group + (size_t)g * bb;
        _mm_prefetch((const char *)(p + PREFETCH_BYTES), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_BYTES + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_BYTES + 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_BYTES + 192), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_BYTES + 256), _MM_HINT_T0);
        __m512i ia[8];
        int xs[8];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            xs[t] = x32[t][g];
            ia[t] = _mm512_set1_epi32(-off * xs[t]);
        }
        if (q4) {
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++) {
                __m512i v = _mm512_loadu_si512(p + 32 + 64 * s);
                __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                if (kind == 2) {
                    lo = _mm512_shuffle_epi8(grid, lo);
                    hi = _mm512_shuffle_epi8(grid, hi);
                }
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) {
                    int32_t a, b;
                    memcpy(&a, xq[t] + g * 32 + 4 * s, 4);
                    memcpy(&b, xq[t] + g * 32 + 16 + 4 * s, 4);
                    ia[t] = _mm512_dpbusd_epi32(ia[t], lo, _mm512_set1_epi32(a));
                    ia[t] = _mm512_dpbusd_epi32(ia[t], hi, _mm512_set1_epi32(b));
                }
            }
        } else {
#pragma GCC unroll 8
            for (int s = 0; s < 8; s++) {
                __m512i w = _mm512_loadu_si512(p + 32 + 64 * s);
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) {
                    int32_t a;
                    memcpy(&a, xq[t] + g * 32 + 4 * s, 4);
                    ia[t] = _mm512_dpbusd_epi32(ia[t], w, _mm512_set1_epi32(a));
                }
            }
        }
        __m512 sc = load_f16x16(p);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(ia[t]), sc);
            facc[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(xd[t][g]), facc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(acc + 16 * t, facc[t]);
}

#define FUSED_VARIANT(T)                                                                                           \
    static void fused_q4_##T(const uint8_t *g, int64_t n, const uint8_t *a, size_t s, int64_t c, float *acc) {  \
        fused_q4q8_body(1, g, n, a, s, c, T, acc);                                                              \
    }                                                                                                           \
    static void fused_iq4_##T(const uint8_t *g, int64_t n, const uint8_t *a, size_t s, int64_t c, float *acc) { \
        fused_q4q8_body(2, g, n, a, s, c, T, acc);                                                              \
    }                                                                                                           \
    static void fused_q8_##T(const uint8_t *g, int64_t n, const uint8_t *a, size_t s, int64_t c, float *acc) {  \
        fused_q4q8_body(0, g, n, a, s, c, T, acc);                                                              \
    }
FUSED_VARIANT(1)
FUSED_VARIANT(2)
FUSED_VARIANT(3)
FUSED_VARIANT(4)
FUSED_VARIANT(5)
FUSED_VARIANT(6)
FUSED_VARIANT(7)
FUSED_VARIANT(8)

typedef void (*fused_fn)(const uint8_t *, int64_t, const uint8_t *, size_t, int64_t, float *);
static const fused_fn g_fused[3][8] = {
    {fused_q4_1, fused_q4_2, fused_q4_3, fused_q4_4, fused_q4_5, fused_q4_6, fused_q4_7, fused_q4_8},
    {fused_q8_1, fused_q8_2, fused_q8_3, fused_q8_4, fused_q8_5, fused_q8_6, fused_q8_7, fused_q8_8},
    {fused_iq4_1, fused_iq4_2, fused_iq4_3, fused_iq4_4, fused_iq4_5, fused_iq4_6, fused_iq4_7, fused_iq4_8}};

int ts_avx512_fused_gemv(ts_dtype t, const uint8_t *group, int64_t n_native, const uint8_t *act, size_t astride,
                         int64_t cols, int n_tok, float *acc) {
    if ((t != TS_DTYPE_Q4_0 && t != TS_DTYPE_Q8_0 && t != TS_DTYPE_IQ4_NL) || n_tok < 1 || n_tok > 8) return -1;
    g_fused[t == TS_DTYPE_Q4_0 ? 0 : t == TS_DTYPE_Q8_0 ? 1 : 2][n_tok - 1](group, n_native, act, astride, cols, acc);
    return 0;
}

static const ts_uni_impl g_uni = {.decode = decode_packed,
                                  .kernel = ts_avx512_uni_kernel,
                                  .signed_vals = 0,
                                  .tile_tokens = 8,
                                  .gemv_tokens = 8,
                                  .fused_gemv = ts_avx512_fused_gemv};

static void mm_packed(const ts_mm_args *a) { ts_mm_unified(a, 1, &g_uni); }
static void mm_raw(const ts_mm_args *a) { ts_mm_unified(a, 0, &g_uni); }

/* ---- float weights: R rows x T tokens of dot products, 16 columns a step ---- */

enum { WF32, WF16, WBF16 };

ALWAYS_INLINE __m512 load_w(const int dt, const uint8_t *p, int64_t k, __mmask16 m) {
    if (dt == WF32) return _mm512_maskz_loadu_ps(m, p + 4 * k);
    __m256i h = _mm256_maskz_loadu_epi16(m, p + 2 * k);
    if (dt == WF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE void mmf_tile(const ts_mm_args *a, int64_t r, int t0, const int R, const int T, const int dt) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[i][t] = _mm512_setzero_ps();
    const float *x[4];
    const uint8_t *w[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) x[t] = (const float *)(a->act + (size_t)(t0 + t) * a->act_stride);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) w[i] = a->w + (size_t)(r + i) * a->w_stride;
    int64_t k = 0;
    for (; k + 16 <= a->cols; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w[i], k, 0xffff);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_loadu_ps(x[t] + k);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
        }
    }
    if (k < a->cols) {
        __mmask16 m = (__mmask16)((1u << (a->cols - k)) - 1);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w[i], k, m);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x[t] + k);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            a->y[(size_t)(t0 + t) * a->y_stride + (size_t)(r + i)] =
                _mm512_reduce_add_ps(acc[i][t]) + (a->bias ? a->bias[r + i] : 0.0f);
}

#define MMF_VARIANTS(DT, NAME)                                                                                         \
    void NAME(const ts_mm_args *a) {                                                                            \
        for (int64_t r = a->r0; r < a->r1; r += 4) {                                                                   \
            int full = a->r1 - r >= 4;                                                                                 \
            for (int t0 = 0; t0 < a->n_tok; t0 += 4) {                                                                 \
                int nt = a->n_tok - t0 < 4 ? a->n_tok - t0 : 4;                                                        \
                if (full) {                                                                                            \
                    switch (nt) {                                                                                      \
                    case 1: mmf_tile(a, r, t0, 4, 1, DT); break;                                                       \
                    case 2: mmf_tile(a, r, t0, 4, 2, DT); break;                                                       \
                    case 3: mmf_tile(a, r, t0, 4, 3, DT); break;                                                       \
                    default: mmf_tile(a, r, t0, 4, 4, DT); break;                                                      \
                    }                                                                                                  \
                } else {                                                                                               \
                    for (int64_t rr = r; rr < a->r1; rr++) {                                                           \
                        switch (nt) {                                                                                  \
                        case 1: mmf_tile(a, rr, t0, 1, 1, DT); break;                                                  \
                        case 2: mmf_tile(a, rr, t0, 1, 2, DT); break;                                                  \
                        case 3: mmf_tile(a, rr, t0, 1, 3, DT); break;                                                  \
                        default: mmf_tile(a, rr, t0, 1, 4, DT); break;                                                 \
                        }                                                                                              \
                    }                                                                                                  \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }
MMF_VARIANTS(WF32, ts_avx512_mm_f32)
MMF_VARIANTS(WF16, ts_avx512_mm_f16)
MMF_VARIANTS(WBF16, ts_avx512_mm_bf16)

/* ---- vector helpers ---- */

ALWAYS_INLINE __mmask16 tail_mask(int64_t left) { return (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1); }

float ts_avx512_dot_f32(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void ts_avx512_axpy_f32(float a, const float *x, float *y, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

void ts_avx512_scale_f32(float a, float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* exp(x) = 2^n e^r with |r| <= ln2 / 2, e^r by its degree-7 Taylor polynomial (truncation below
 * 1e-8 relative), ln2 split in two for an exact-enough reduction; scalef handles over/underflow. */
ALWAYS_INLINE __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.8f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

float ts_avx512_softmax_exp_f32(float *x, int64_t n, float max) {
    __m512 vmax = _mm512_set1_ps(max), sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* s[j] += scale * q . k_j for 8 keys, the queries across the lanes of qt (head_dim x 16). Eight
 * keys at a time keep their row pointers in registers. */
ALWAYS_INLINE void attn_scores8(const float *qt, const float *const *kp, int hd, __m512 *s) {
    const float *k0 = kp[0], *k1 = kp[1], *k2 = kp[2], *k3 = kp[3], *k4 = kp[4], *k5 = kp[5], *k6 = kp[6], *k7 = kp[7];
    for (int d = 0; d < hd; d++) {
        __m512 q = _mm512_load_ps(qt + d * TS_ATTN_LANES);
        s[0] = _mm512_fmadd_ps(_mm512_set1_ps(k0[d]), q, s[0]);
        s[1] = _mm512_fmadd_ps(_mm512_set1_ps(k1[d]), q, s[1]);
        s[2] = _mm512_fmadd_ps(_mm512_set1_ps(k2[d]), q, s[2]);
        s[3] = _mm512_fmadd_ps(_mm512_set1_ps(k3[d]), q, s[3]);
        s[4] = _mm512_fmadd_ps(_mm512_set1_ps(k4[d]), q, s[4]);
        s[5] = _mm512_fmadd_ps(_mm512_set1_ps(k5[d]), q, s[5]);
        s[6] = _mm512_fmadd_ps(_mm512_set1_ps(k6[d]), q, s[6]);
        s[7] = _mm512_fmadd_ps(_mm512_set1_ps(k7[d]), q, s[7]);
    }
}

#define ATTN_PV8(o, dd)                                                                                                \
    do {                                                                                                               \
        o = _mm512_fmadd_ps(p[0], _mm512_set1_ps(v0[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[1], _mm512_set1_ps(v1[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[2], _mm512_set1_ps(v2[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[3], _mm512_set1_ps(v3[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[4], _mm512_set1_ps(v4[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[5], _mm512_set1_ps(v5[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[6], _mm512_set1_ps(v6[dd]), o);                                                          \
        o = _mm512_fmadd_ps(p[7], _mm512_set1_ps(v7[dd]), o);                                                          \
    } while (0)

/* ot[d] = ot[d] * alpha + sum_j p[j] v_j[d] for 8 values rows; eight dimensions at a time so that
 * eight independent FMA chains hide the FMA latency. */
ALWAYS_INLINE void attn_values8(float *ot, const float *const *vp, const __m512 *p, __m512 alpha, int hd) {
    const float *v0 = vp[0], *v1 = vp[1], *v2 = vp[2], *v3 = vp[3], *v4 = vp[4], *v5 = vp[5], *v6 = vp[6], *v7 = vp[7];
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
        float *o = ot + d * TS_ATTN_LANES;
        __m512 a0 = _mm512_mul_ps(_mm512_load_ps(o), alpha), a1 = _mm512_mul_ps(_mm512_load_ps(o + 16), alpha);
        __m512 a2 = _mm512_mul_ps(_mm512_load_ps(o + 32), alpha), a3 = _mm512_mul_ps(_mm512_load_ps(o + 48), alpha);
        __m512 a4 = _mm512_mul_ps(_mm512_load_ps(o + 64), alpha), a5 = _mm512_mul_ps(_mm512_load_ps(o + 80), alpha);
        __m512 a6 = _mm512_mul_ps(_mm512_load_ps(o + 96), alpha), a7 = _mm512_mul_ps(_mm512_load_ps(o + 112), alpha);
        ATTN_PV8(a0, d);
        ATTN_PV8(a1, d + 1);
        ATTN_PV8(a2, d + 2);
        ATTN_PV8(a3, d + 3);
        ATTN_PV8(a4, d + 4);
        ATTN_PV8(a5, d + 5);
        ATTN_PV8(a6, d + 6);
        ATTN_PV8(a7, d + 7);
        _mm512_store_ps(o, a0);
        _mm512_store_ps(o + 16, a1);
        _mm512_store_ps(o + 32, a2);
        _mm512_store_ps(o + 48, a3);
        _mm512_store_ps(o + 64, a4);
        _mm512_store_ps(o + 80, a5);
        _mm512_store_ps(o + 96, a6);
        _mm512_store_ps(o + 112, a7);
    }
    for (; d < hd; d++) {
        __m512 a = _mm512_mul_ps(_mm512_load_ps(ot + d * TS_ATTN_LANES), alpha);
        ATTN_PV8(a, d);
        _mm512_store_ps(ot + d * TS_ATTN_LANES, a);
    }
}

/* Attention with the queries across the 16 lanes (qt, ot: head_dim x 16, transposed once per task),
 * so that every key costs head_dim FMAs on full vectors, the online softmax (running maximum m, sum
 * l, rescale alpha) is vectorized across queries and no horizontal sums are needed. Keys go 16 at
 * a time, in two halves of 8; the causal mask is a per-key lane mask. Finite -1e30 stands for "no
 * score yet" so that fully masked lanes never compute inf - inf. */
void ts_avx512_attention_tile_f32(const ts_attn_tile *t) {
    const int hd = t->head_dim, nq = t->nq;
    float *qt = t->scratch, *ot = t->scratch + (size_t)hd * TS_ATTN_LANES;
    int32_t last[TS_ATTN_LANES];
    int lim = 0;
    for (int i = 0; i < TS_ATTN_LANES; i++) {
        last[i] = i < nq ? t->q_last[i] : -1;
        if (last[i] + 1 > lim) lim = last[i] + 1;
    }
    for (int d = 0; d < hd; d++) {
        for (int i = 0; i < TS_ATTN_LANES; i++) qt[d * TS_ATTN_LANES + i] = i < nq ? t->q[i][d] * t->scale : 0.0f;
        _mm512_store_ps(ot + d * TS_ATTN_LANES, _mm512_setzero_ps());
    }
    const __m512i vlast = _mm512_loadu_si512(last);
    const __m512 none = _mm512_set1_ps(-1e30f);
    __m512 m = none, l = _mm512_setzero_ps();
    for (int j0 = 0; j0 < lim; j0 += 16) {
        const float *kp[16], *vp[16];
        __mmask16 mask[16];
        for (int j = 0; j < 16; j++) {
            int p = j0 + j < lim ? j0 + j : lim - 1;
            kp[j] = t->k[p];
            vp[j] = t->v[p];
            mask[j] = _mm512_cmpge_epi32_mask(vlast, _mm512_set1_epi32(j0 + j));
        }
        __m512 s[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) s[j] = _mm512_setzero_ps();
        attn_scores8(qt, kp, hd, s);
        if (j0 + 8 < lim) attn_scores8(qt, kp + 8, hd, s + 8);
        __m512 mx = none;
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) mx = _mm512_mask_max_ps(mx, mask[j], mx, s[j]);
        __m512 m_new = _mm512_max_ps(m, mx);
        __m512 alpha = exp512(_mm512_sub_ps(m, m_new));
        m = m_new;
        l = _mm512_mul_ps(l, alpha);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            s[j] = _mm512_maskz_mov_ps(mask[j], exp512(_mm512_sub_ps(s[j], m_new)));
            l = _mm512_add_ps(l, s[j]);
        }
        attn_values8(ot, vp, s, alpha, hd);
        if (j0 + 8 < lim) attn_values8(ot, vp + 8, s + 8, _mm512_set1_ps(1.0f), hd);
    }
    float inv[TS_ATTN_LANES];
    _mm512_storeu_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(l, _mm512_set1_ps(1e-30f))));
    for (int i = 0; i < nq; i++)
        for (int d = 0; d < hd; d++) t->out[i][d] = ot[d * TS_ATTN_LANES + i] * inv[i];
}

/* The 16 horizontal sums of v[0..15] as one vector (lane j = sum of v[j]): pairs, then quads within
 * 128-bit lanes, then across the four 128-bit lanes. */
ALWAYS_INLINE __m512 hsum16(const __m512 *v) {
    __m512 t[8], u[4];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        t[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        u[k] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 x01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 x23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Decode attention: the keys of a 16-key tile across the lanes. Each query's 16 scores come from 16
 * independent partial dot products and one transposing sum (no per-key horizontal sum and its
 * latency), the online softmax runs on that vector, and the value rows are added into the output 16
 * dimensions at a time with the output in registers for the whole tile (not loaded and stored per
 * key). Every query attends to the same positions (one token). The query heads of a GQA group take
 * each tile in turn, so the tile's 16 key and value rows come from L1 for all but the first (one query
 * at a time over all positions read them from L2 again for every head: decode after a 512-token prompt
 * ran at 71 % of the bandwidth bound against 88 % after 128 tokens, 2 cores). Each query's arithmetic
 * is the same in the same order as before. */
#define DECODE_PREFETCH_FROM 256 /* positions */
void ts_avx512_attention_decode_f32(const ts_attn_tile *t) {
    const int hd = t->head_dim, n = t->q_last[0] + 1, nq = t->nq;
    const int chunks = (hd + 15) / 16;
    const __mmask16 tail = (__mmask16)((hd % 16) ? (1u << (hd % 16)) - 1 : 0xffff);
    float m[TS_ATTN_LANES], l[TS_ATTN_LANES];
    for (int i = 0; i < nq; i++) {
        float *o = t->scratch + (size_t)i * hd; /* query i's running (unnormalized) output */
        for (int c = 0; c < chunks; c++) _mm512_mask_storeu_ps(o + 16 * c, c == chunks - 1 ? tail : 0xffff, _mm512_setzero_ps());
        m[i] = -1e30f;
        l[i] = 0.0f;
    }
    float p[16] __attribute__((aligned(64)));
    for (int j0 = 0; j0 < n; j0 += 16) {
        const int nk = n - j0 < 16 ? n - j0 : 16;
        const __mmask16 valid = (__mmask16)(nk == 16 ? 0xffff : (1u << nk) - 1);
        /* the next tile's rows: one position's row of a KV head is 512 bytes in every 4 KB page of the
         * cache, which the hardware prefetchers do not follow. Over short contexts the prefetches cost more
         * than they bring (2 cores, 0.6B: -1.5 % after 128 tokens, +2-5 % after 512 and 1024). */
        const int ahead = n > DECODE_PREFETCH_FROM ? n : 0;
        for (int j = j0 + 16; j < j0 + 32 && j < ahead; j++)
            for (int b = 0; b < hd; b += 16) {
                _mm_prefetch((const char *)(t->k[j] + b), _MM_HINT_T0);
                _mm_prefetch((const char *)(t->v[j] + b), _MM_HINT_T0);
            }
        for (int i = 0; i < nq; i++) {
            const float *q = t->q[i];
            float *o = t->scratch + (size_t)i * hd;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
            for (int c = 0; c < chunks; c++) {
                __mmask16 mk = c == chunks - 1 ? tail : 0xffff;
                __m512 qv = _mm512_maskz_loadu_ps(mk, q + 16 * c);
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++) {
                    const float *kr = t->k[j0 + (j < nk ? j : nk - 1)];
                    acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, kr + 16 * c), acc[j]);
                }
            }
            __m512 s = _mm512_mul_ps(hsum16(acc), _mm512_set1_ps(t->scale));
            float mx = _mm512_mask_reduce_max_ps(valid, s);
            float m_new = mx > m[i] ? mx : m[i];
            float alpha = expf(m[i] - m_new);
            __m512 e = _mm512_maskz_mov_ps(valid, exp512(_mm512_sub_ps(s, _mm512_set1_ps(m_new))));
            l[i] = l[i] * alpha + _mm512_reduce_add_ps(e);
            m[i] = m_new;
            _mm512_store_ps(p, e);
            const __m512 va = _mm512_set1_ps(alpha);
            int c = 0;
            for (; c + 4 <= chunks; c += 4) {
                __m512 o0 = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * c), va);
                __m512 o1 = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * c + 16), va);
                __m512 o2 = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * c + 32), va);
                const __mmask16 m3 = c + 3 == chunks - 1 ? tail : 0xffff;
                __m512 o3 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m3, o + 16 * c + 48), va);
                for (int j = 0; j < nk; j++) {
                    const float *vr = t->v[j0 + j] + 16 * c;
                    __m512 pj = _mm512_set1_ps(p[j]);
                    o0 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr), o0);
                    o1 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr + 16), o1);
                    o2 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr + 32), o2);
                    o3 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m3, vr + 48), o3);
                }
                _mm512_storeu_ps(o + 16 * c, o0);
                _mm512_storeu_ps(o + 16 * c + 16, o1);
                _mm512_storeu_ps(o + 16 * c + 32, o2);
                _mm512_mask_storeu_ps(o + 16 * c + 48, m3, o3);
            }
            for (; c < chunks; c++) {
                const __mmask16 mk = c == chunks - 1 ? tail : 0xffff;
                __m512 o0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, o + 16 * c), va);
                for (int j = 0; j < nk; j++)
                    o0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(mk, t->v[j0 + j] + 16 * c), o0);
                _mm512_mask_storeu_ps(o + 16 * c, mk, o0);
            }
        }
    }
    for (int i = 0; i < nq; i++) {
        const float *o = t->scratch + (size_t)i * hd;
        const __m512 inv = _mm512_set1_ps(1.0f / l[i]);
        for (int c = 0; c < chunks; c++) {
            __mmask16 mk = c == chunks - 1 ? tail : 0xffff;
            _mm512_mask_storeu_ps(t->out[i] + 16 * c, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, o + 16 * c), inv));
        }
    }
}

float ts_avx512_sum_squares_f32(const float *x, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        s0 = _mm512_fmadd_ps(a, a, s0);
        s1 = _mm512_fmadd_ps(b, b, s1);
    }
    for (; i < n; i += 16) {
        __m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        s0 = _mm512_fmadd_ps(a, a, s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void ts_avx512_rmsnorm_apply_f32(const float *x, const float *weight, float inv_rms, float *out, int64_t n) {
    __m512 s = _mm512_set1_ps(inv_rms);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, weight + i), v));
    }
}

void ts_avx512_silu_mul_f32(const float *gate, const float *up, float *out, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-0.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, exp512(_mm512_xor_ps(g, neg))));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

const ts_cpu_kernels ts_cpu_kernels_avx512 = {
    .name = "avx512",
    .required = TS_CPU_AVX2 | TS_CPU_AVX512F | TS_CPU_AVX512_VNNI,
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
    TS_AVX512_HELPERS,
};

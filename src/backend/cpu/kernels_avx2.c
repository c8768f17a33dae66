/* The 256-bit kernel tables: `avx2` (AVX2 + FMA + F16C; int8 dot products through vpmaddubsw and
 * vpmaddwd) and `avx_vnni` (the same plus AVX-VNNI's vpdpbusd on 256-bit vectors, as on CPUs that have
 * it without AVX-512). Decoders from the packed layouts to the unified form, the micro-kernel
 * (kernels_avx2_uk.h), float-weight products and vector helpers. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels_x86.h"
#include "backend/cpu/kernels_mmf_tiles.h"
#include "backend/cpu/mm_unified.h"
#include "backend/cpu/pack.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef void (*uk_fn)(const uint8_t *, int64_t, int, const uint8_t *, size_t, int64_t, int64_t, int, float *);

ALWAYS_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ALWAYS_INLINE int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

ALWAYS_INLINE float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- activation quantization (bit-identical to ts_act_quantize_ref) ---- */

static void quantize_act(const float *x, int64_t cols, void *row) {
    int64_t nb = cols / TS_ACT_BLOCK;
    int8_t *q = (int8_t *)row;
    float *d = (float *)ts_act_d(row, cols);
    int32_t *s32 = (int32_t *)ts_act_sum32(row, cols);
    int16_t *s16 = (int16_t *)ts_act_sum16(row, cols);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < nb; b++) {
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + b * 32 + 8 * i);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        float amax = hmax8(m);
        if (!(amax >= 1e-30f)) {
            memset(q + b * 32, 0, 32);
            d[b] = 0.0f;
            s32[b] = 0;
            s16[2 * b] = s16[2 * b + 1] = 0;
            continue;
        }
        __m256 id = _mm256_set1_ps(127.0f / amax);
        d[b] = amax / 127.0f;
        __m256i qi[4];
        for (int i = 0; i < 4; i++) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
        __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]), p16b = _mm256_packs_epi32(qi[2], qi[3]);
        __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), order);
        _mm256_storeu_si256((__m256i *)(q + b * 32), p8);
        int a = hsum8i(_mm256_add_epi32(qi[0], qi[1])), c = hsum8i(_mm256_add_epi32(qi[2], qi[3]));
        s16[2 * b] = (int16_t)a;
        s16[2 * b + 1] = (int16_t)c;
        s32[b] = a + c;
    }
}

/* ---- decoders (same unified blocks as the AVX-512 ones, 32 bytes at a time) ---- */

ALWAYS_INLINE void put_scales8(uint8_t *u, int B, int half, __m256 scale, __m256 mb) {
    _mm256_store_ps((float *)(u + B * 16) + 8 * half, scale);
    _mm256_store_ps((float *)(u + B * 16 + 64) + 8 * half, mb);
}

ALWAYS_INLINE __m256 load_f16x8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
ALWAYS_INLINE __m256 load_u8x8_ps(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

ALWAYS_INLINE void copy64(uint8_t *dst, const uint8_t *src) {
    _mm256_store_si256((__m256i *)dst, _mm256_loadu_si256((const __m256i *)src));
    _mm256_store_si256((__m256i *)(dst + 32), _mm256_loadu_si256((const __m256i *)(src + 32)));
}

/* Packed nibbles -> low nibbles to slices 0..3, high nibbles to slices 4..7; each index becomes
 * levels[index] where a level table is given (a byte shuffle). */
ALWAYS_INLINE void nibbles_to_block(const uint8_t *q, uint8_t *u, const __m128i *levels) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i table = levels ? _mm256_broadcastsi128_si256(*levels) : _mm256_setzero_si256();
    for (int s = 0; s < 8; s++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * s));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        int slice = s / 2, part = s % 2;
        _mm256_store_si256((__m256i *)(u + 64 * slice + 32 * part), levels ? _mm256_shuffle_epi8(table, lo) : lo);
        _mm256_store_si256((__m256i *)(u + 64 * (4 + slice) + 32 * part), levels ? _mm256_shuffle_epi8(table, hi) : hi);
    }
}

static void dec_q8_0(const uint8_t *p, uint8_t *u) {
    for (int s = 0; s < 8; s++) copy64(u + 64 * s, p + 32 + 64 * s);
    for (int h = 0; h < 2; h++) put_scales8(u, 32, h, load_f16x8(p + 16 * h), _mm256_setzero_ps());
}

static void dec_q4_0(const uint8_t *p, uint8_t *u) {
    nibbles_to_block(p + 32, u, NULL);
    for (int h = 0; h < 2; h++) put_scales8(u, 32, h, load_f16x8(p + 16 * h), _mm256_setzero_ps());
}

/* IQ4_NL: Q4_0's packing with indices into the grid, looked up as grid value + 128 (the type's offset). */
static void dec_iq4_nl(const uint8_t *p, uint8_t *u) {
    const __m128i levels = _mm_xor_si128(_mm_loadu_si128((const __m128i *)ts_iq4_nl_values), _mm_set1_epi8((char)0x80));
    nibbles_to_block(p + 32, u, &levels);
    for (int h = 0; h < 2; h++) put_scales8(u, 32, h, load_f16x8(p + 16 * h), _mm256_setzero_ps());
}

/* IQ4_XS: eight IQ4_NL blocks whose scales are d times a signed 6-bit sub-scale (exact in float). */
static void dec_iq4_xs(const uint8_t *p, uint8_t *u) {
    const __m128i levels = _mm_xor_si128(_mm_loadu_si128((const __m128i *)ts_iq4_nl_values), _mm_set1_epi8((char)0x80));
    for (int h = 0; h < 2; h++) {
        __m256 d = load_f16x8(p + 16 * h);
        for (int j = 0; j < 8; j++) {
            __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 32 + 16 * j + 8 * h))));
            put_scales8(u + 640 * j, 32, h, _mm256_mul_ps(d, sc), _mm256_setzero_ps());
        }
    }
    for (int j = 0; j < 8; j++) nibbles_to_block(p + 160 + 256 * j, u + 640 * j, &levels);
}

static void dec_q4_1(const uint8_t *p, uint8_t *u) {
    nibbles_to_block(p + 64, u, NULL);
    for (int h = 0; h < 2; h++) put_scales8(u, 32, h, load_f16x8(p + 16 * h), load_f16x8(p + 32 + 16 * h));
}

ALWAYS_INLINE __m256i shift_bit_to_4(__m256i h, int j) {
    return j <= 4 ? _mm256_slli_epi16(h, 4 - j) : _mm256_srli_epi16(h, j - 4);
}

static void dec_qk45(const uint8_t *p, uint8_t *u, int has_qh) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    const __m256 neg = _mm256_set1_ps(-0.0f);
    for (int h = 0; h < 2; h++) {
        __m256 d = load_f16x8(p + 16 * h), dmin = load_f16x8(p + 32 + 16 * h);
        for (int j = 0; j < 8; j++) {
            __m256 scale = _mm256_mul_ps(d, load_u8x8_ps(p + 64 + 16 * j + 8 * h));
            __m256 mb = _mm256_xor_ps(_mm256_mul_ps(dmin, load_u8x8_ps(p + 192 + 16 * j + 8 * h)), neg);
            put_scales8(u + 640 * j, 32, h, scale, mb);
        }
    }
    for (int c = 0; c < 4; c++) {
        uint8_t *lo = u + 640 * (2 * c), *hi = u + 640 * (2 * c + 1);
        for (int s = 0; s < 16; s++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(p + 320 + 64 * (8 * c) + 32 * s));
            __m256i vl = _mm256_and_si256(v, m4), vh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (has_qh) {
                __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 2368 + 32 * s));
                vl = _mm256_or_si256(vl, _mm256_and_si256(shift_bit_to_4(qh, 2 * c), bit4));
                vh = _mm256_or_si256(vh, _mm256_and_si256(shift_bit_to_4(qh, 2 * c + 1), bit4));
            }
            _mm256_store_si256((__m256i *)(lo + 32 * s), vl);
            _mm256_store_si256((__m256i *)(hi + 32 * s), vh);
        }
    }
}

static void dec_q6_k(const uint8_t *p, uint8_t *u) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        __m256 d = load_f16x8(p + 16 * h);
        for (int s = 0; s < 16; s++) {
            __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 32 + 16 * s + 8 * h))));
            put_scales8(u + 384 * s, 16, h, _mm256_mul_ps(d, sc), _mm256_setzero_ps());
        }
    }
    for (int h = 0; h < 2; h++) {
        for (int ls = 0; ls < 8; ls++) {
            for (int part = 0; part < 2; part++) {
                __m256i qa = _mm256_loadu_si256((const __m256i *)(p + 288 + 64 * (16 * h + ls) + 32 * part));
                __m256i qb = _mm256_loadu_si256((const __m256i *)(p + 288 + 64 * (16 * h + 8 + ls) + 32 * part));
                __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 2336 + 64 * (8 * h + ls) + 32 * part));
                __m256i v0 = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                __m256i v1 = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                __m256i v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(qh, m30));
                __m256i v3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                int blk = 8 * h + ls / 4;
                size_t o = (size_t)64 * (ls % 4) + (size_t)32 * part;
                _mm256_store_si256((__m256i *)(u + 384 * blk + o), v0);
                _mm256_store_si256((__m256i *)(u + 384 * (blk + 2) + o), v1);
                _mm256_store_si256((__m256i *)(u + 384 * (blk + 4) + o), v2);
                _mm256_store_si256((__m256i *)(u + 384 * (blk + 6) + o), v3);
            }
        }
    }
}

#define PREFETCH_BYTES 2048

static void decode_packed(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                          uint8_t *dst) {
    (void)row_bytes;
    (void)nrows;
    size_t bb = ts_pack_block_bytes(TS_PACK_I16, t);
    const uint8_t *p = src + (size_t)nb0 * bb;
    for (int64_t nb = nb0; nb < nb1; nb++, p += bb) {
        for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)(p + PREFETCH_BYTES + o), _MM_HINT_T0);
        switch (t) {
        case TS_DTYPE_Q8_0: dec_q8_0(p, dst); dst += 640; break;
        case TS_DTYPE_Q4_0: dec_q4_0(p, dst); dst += 640; break;
        case TS_DTYPE_IQ4_NL: dec_iq4_nl(p, dst); dst += 640; break;
        case TS_DTYPE_IQ4_XS: dec_iq4_xs(p, dst); dst += 8 * 640; break;
        case TS_DTYPE_Q4_1: dec_q4_1(p, dst); dst += 640; break;
        case TS_DTYPE_Q4_K: dec_qk45(p, dst, 0); dst += 8 * 640; break;
        case TS_DTYPE_Q5_K: dec_qk45(p, dst, 1); dst += 8 * 640; break;
        case TS_DTYPE_Q6_K: dec_q6_k(p, dst); dst += 16 * 384; break;
        default: return;
        }
    }
}

/* ---- micro-kernels ---- */

/* vpmaddubsw adds pairs of u8 x s8 products into saturating int16: exact while values are below 64
 * (2 * 63 * 127 < 32767), which holds for every type but Q8_0's q + 128. */
ALWAYS_INLINE __m256i dot_maddubs(__m256i acc, __m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(w, x);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Q8_0: back to signed q, then |q| x (x with q's sign): pairs stay within 2 * 128 * 127. */
ALWAYS_INLINE __m256i dot_wide_maddubs(__m256i acc, __m256i w, __m256i x) {
    __m256i q = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

#define UK_PREFIX avx2_
#define UK_DOT dot_maddubs
#define UK_WIDE_DOT dot_wide_maddubs
#define UK_ATTR
#define UK_NEEDS_WIDE 1
#include "backend/cpu/kernels_avx2_uk.h"
#undef UK_PREFIX
#undef UK_DOT
#undef UK_ATTR
#undef UK_NEEDS_WIDE

__attribute__((target("avxvnni"))) ALWAYS_INLINE __m256i dot_vnni(__m256i acc, __m256i w, __m256i x) {
    return _mm256_dpbusd_avx_epi32(acc, w, x);
}

#define UK_PREFIX vnni_
#define UK_DOT dot_vnni
#define UK_ATTR __attribute__((target("avxvnni")))
#define UK_NEEDS_WIDE 0
#include "backend/cpu/kernels_avx2_uk.h"
#undef UK_PREFIX
#undef UK_DOT
#undef UK_WIDE_DOT
#undef UK_ATTR
#undef UK_NEEDS_WIDE

static const ts_uni_impl g_uni_avx2 = {
    .decode = decode_packed, .kernel = avx2_kernel, .signed_vals = 0, .tile_tokens = 4, .gemv_tokens = 8};
static const ts_uni_impl g_uni_vnni = {
    .decode = decode_packed, .kernel = vnni_kernel, .signed_vals = 0, .tile_tokens = 4, .gemv_tokens = 8};

static void mm_packed_avx2(const ts_mm_args *a) { ts_mm_unified(a, 1, &g_uni_avx2); }
static void mm_raw_avx2(const ts_mm_args *a) { ts_mm_unified(a, 0, &g_uni_avx2); }
static void mm_packed_vnni(const ts_mm_args *a) { ts_mm_unified(a, 1, &g_uni_vnni); }
static void mm_raw_vnni(const ts_mm_args *a) { ts_mm_unified(a, 0, &g_uni_vnni); }

/* ---- float weights: 4 rows x 2 tokens per tile, 8 columns a step, scalar tail ---- */

enum { WF32, WF16, WBF16 };

ALWAYS_INLINE __m256 load_w(const int dt, const uint8_t *p, int64_t k) {
    if (dt == WF32) return _mm256_loadu_ps((const float *)p + k);
    __m128i h = _mm_loadu_si128((const __m128i *)(p + 2 * k));
    if (dt == WF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float load_w1(const int dt, const uint8_t *p, int64_t k) {
    uint16_t h;
    if (dt == WF32) {
        float f;
        memcpy(&f, p + 4 * k, 4);
        return f;
    }
    memcpy(&h, p + 2 * k, 2);
    if (dt == WF16) return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

ALWAYS_INLINE void mmf_tile(const ts_mm_args *a, int64_t r, int t0, const int R, const int T, const int dt) {
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
    const float *x[2];
    const uint8_t *w[4];
#pragma GCC unroll 2
    for (int t = 0; t < T; t++) x[t] = (const float *)(a->act + (size_t)(t0 + t) * a->act_stride);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) w[i] = a->w + (size_t)(r + i) * a->w_stride;
    int64_t k = 0;
    for (; k + 8 <= a->cols; k += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w[i], k);
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps(x[t] + k);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
        }
    }
#pragma GCC unroll 2
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            float s = hsum8(acc[i][t]);
            for (int64_t kk = k; kk < a->cols; kk++) s += load_w1(dt, w[i], kk) * x[t][kk];
            a->y[(size_t)(t0 + t) * a->y_stride + (size_t)(r + i)] = s + (a->bias ? a->bias[r + i] : 0.0f);
        }
}

TS_MMF_TILES_4X2(WF32, mm_f32)
TS_MMF_TILES_4X2(WF16, mm_f16)
TS_MMF_TILES_4X2(WBF16, mm_bf16)

/* ---- vector helpers (scalar tails) ---- */

static float dot_f32(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_f32(float a, const float *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void scale_f32(float a, float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(va, _mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] *= a;
}

/* exp as in the AVX-512 table, with 2^n built in the exponent field: inputs are clamped to
 * [-87.3, 88.3] so that 2^n stays a normal float (results below 1.2e-38 become that value). */
ALWAYS_INLINE __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float softmax_exp_f32(float *x, int64_t n, float max) {
    __m256 vmax = _mm256_set1_ps(max), sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float s = hsum8(sum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        s += x[i];
    }
    return s;
}

static float sum_squares_f32(const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(a, a, s0);
    }
    float s = hsum8(s0);
    for (; i < n; i++) s += x[i] * x[i];
    return s;
}

static void rmsnorm_apply_f32(const float *x, const float *weight, float inv_rms, float *out, int64_t n) {
    __m256 s = _mm256_set1_ps(inv_rms);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), s)));
    for (; i < n; i++) out[i] = weight[i] * (x[i] * inv_rms);
}

static void silu_mul_f32(const float *gate, const float *up, float *out, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_xor_ps(g, neg))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* The 8 horizontal sums of v[0..7] as one vector (lane j = sum of v[j]): pairs and quads within each
 * 128-bit half, then the two halves added. */
ALWAYS_INLINE __m256 hsum8_each(const __m256 *v) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Lanes below `count` (0..8) set: the mask of maskload/maskstore. */
ALWAYS_INLINE __m256i lanes_below(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Decode attention as the AVX-512 table's, 8 keys a tile across the lanes (16 accumulators would not fit
 * the 16 ymm registers): each query's 8 scores from 8 partial dot products and one transposing sum, the
 * online softmax on that vector, value rows added 32 dimensions at a time with the output in registers
 * for the tile; the query heads of a GQA group take each tile in turn (its rows from L1 after the first).
 * Without it (and without a tile kernel) attention ran one dot product and one horizontal sum per key:
 * with AVX-512 hidden on a 2-core EPYC, decode after 1024 tokens 35 tok/s, 49 with it (docs/cpu-notes.md). */
static void attention_decode_f32(const ts_attn_tile *t) {
    const int hd = t->head_dim, n = t->q_last[0] + 1, nq = t->nq;
    const int chunks = (hd + 7) / 8;
    const __m256i tail = lanes_below(hd - 8 * (chunks - 1)); /* the last chunk's lanes */
    float m[TS_ATTN_LANES], l[TS_ATTN_LANES];
    for (int i = 0; i < nq; i++) {
        float *o = t->scratch + (size_t)i * hd; /* query i's running (unnormalized) output */
        for (int c = 0; c < chunks; c++) _mm256_maskstore_ps(o + 8 * c, c == chunks - 1 ? tail : lanes_below(8), _mm256_setzero_ps());
        m[i] = -1e30f;
        l[i] = 0.0f;
    }
    float sv[8] __attribute__((aligned(32))), p[8] __attribute__((aligned(32)));
    for (int j0 = 0; j0 < n; j0 += 8) {
        const int nk = n - j0 < 8 ? n - j0 : 8;
        const __m256i valid = lanes_below(nk);
        for (int i = 0; i < nq; i++) {
            const float *q = t->q[i];
            float *o = t->scratch + (size_t)i * hd;
            __m256 acc[8];
            for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
            for (int c = 0; c < chunks; c++) {
                const __m256i mk = c == chunks - 1 ? tail : lanes_below(8);
                const __m256 qv = _mm256_maskload_ps(q + 8 * c, mk);
                for (int j = 0; j < 8; j++) {
                    const float *kr = t->k[j0 + (j < nk ? j : nk - 1)];
                    acc[j] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kr + 8 * c, mk), acc[j]);
                }
            }
            const __m256 s = _mm256_mul_ps(hsum8_each(acc), _mm256_set1_ps(t->scale));
            _mm256_store_ps(sv, s);
            float mx = sv[0];
            for (int j = 1; j < nk; j++) mx = sv[j] > mx ? sv[j] : mx;
            const float m_new = mx > m[i] ? mx : m[i];
            const float alpha = expf(m[i] - m_new);
            const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(s, _mm256_set1_ps(m_new))), _mm256_castsi256_ps(valid));
            _mm256_store_ps(p, e);
            float sum = 0.0f;
            for (int j = 0; j < nk; j++) sum += p[j];
            l[i] = l[i] * alpha + sum;
            m[i] = m_new;
            const __m256 va = _mm256_set1_ps(alpha);
            int c = 0;
            for (; c + 4 <= chunks; c += 4) {
                const __m256i m3 = c + 3 == chunks - 1 ? tail : lanes_below(8);
                __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c), va);
                __m256 o1 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c + 8), va);
                __m256 o2 = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * c + 16), va);
                __m256 o3 = _mm256_mul_ps(_mm256_maskload_ps(o + 8 * c + 24, m3), va);
                for (int j = 0; j < nk; j++) {
                    const float *vr = t->v[j0 + j] + 8 * c;
                    const __m256 pj = _mm256_set1_ps(p[j]);
                    o0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr), o0);
                    o1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8), o1);
                    o2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 16), o2);
                    o3 = _mm256_fmadd_ps(pj, _mm256_maskload_ps(vr + 24, m3), o3);
                }
                _mm256_storeu_ps(o + 8 * c, o0);
                _mm256_storeu_ps(o + 8 * c + 8, o1);
                _mm256_storeu_ps(o + 8 * c + 16, o2);
                _mm256_maskstore_ps(o + 8 * c + 24, m3, o3);
            }
            for (; c < chunks; c++) {
                const __m256i mk = c == chunks - 1 ? tail : lanes_below(8);
                __m256 o0 = _mm256_mul_ps(_mm256_maskload_ps(o + 8 * c, mk), va);
                for (int j = 0; j < nk; j++)
                    o0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_maskload_ps(t->v[j0 + j] + 8 * c, mk), o0);
                _mm256_maskstore_ps(o + 8 * c, mk, o0);
            }
        }
    }
    for (int i = 0; i < nq; i++) {
        const float *o = t->scratch + (size_t)i * hd;
        const __m256 inv = _mm256_set1_ps(1.0f / l[i]);
        for (int c = 0; c < chunks; c++) {
            const __m256i mk = c == chunks - 1 ? tail : lanes_below(8);
            _mm256_maskstore_ps(t->out[i] + 8 * c, mk, _mm256_mul_ps(_mm256_maskload_ps(o + 8 * c, mk), inv));
        }
    }
}

/* Prefill attention as the AVX-512 table's, queries across the 8 lanes: a task's queries (up to
 * TS_ATTN_LANES) in passes of 8, each pass over its keys with every key costing head_dim FMAs on full
 * vectors, the online softmax vectorized across the queries and the causal mask a per-key lane mask.
 * qt and ot (head_dim x 8, the pass's queries transposed and its running output) live in the task's
 * scratch. Finite -1e30 stands for "no score yet" and masked probabilities are cleared, not
 * exponentiated (exp256 clamps its input). */
static void attention_tile_pass(const ts_attn_tile *t, int q0, int count, float *qt, float *ot) {
    const int hd = t->head_dim;
    int32_t last[8] __attribute__((aligned(32)));
    int lim = 0;
    for (int i = 0; i < 8; i++) {
        last[i] = i < count ? t->q_last[q0 + i] : -1;
        if (last[i] + 1 > lim) lim = last[i] + 1;
    }
    for (int d = 0; d < hd; d++) {
        for (int i = 0; i < 8; i++) qt[d * 8 + i] = i < count ? t->q[q0 + i][d] * t->scale : 0.0f;
        _mm256_store_ps(ot + d * 8, _mm256_setzero_ps());
    }
    const __m256i vlast = _mm256_load_si256((const __m256i *)last);
    const __m256 none = _mm256_set1_ps(-1e30f);
    __m256 m = none, l = _mm256_setzero_ps();
    for (int j0 = 0; j0 < lim; j0 += 8) {
        const float *kp[8], *vp[8];
        __m256 valid[8], s[8];
        for (int j = 0; j < 8; j++) {
            const int p = j0 + j < lim ? j0 + j : lim - 1;
            kp[j] = t->k[p];
            vp[j] = t->v[p];
            valid[j] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vlast, _mm256_set1_epi32(j0 + j - 1)));
            s[j] = _mm256_setzero_ps();
        }
        for (int d = 0; d < hd; d++) {
            const __m256 q = _mm256_load_ps(qt + d * 8);
            for (int j = 0; j < 8; j++) s[j] = _mm256_fmadd_ps(_mm256_set1_ps(kp[j][d]), q, s[j]);
        }
        __m256 mx = none;
        for (int j = 0; j < 8; j++) {
            s[j] = _mm256_blendv_ps(none, s[j], valid[j]);
            mx = _mm256_max_ps(mx, s[j]);
        }
        const __m256 m_new = _mm256_max_ps(m, mx);
        const __m256 alpha = exp256(_mm256_sub_ps(m, m_new));
        m = m_new;
        l = _mm256_mul_ps(l, alpha);
        for (int j = 0; j < 8; j++) {
            s[j] = _mm256_and_ps(exp256(_mm256_sub_ps(s[j], m_new)), valid[j]);
            l = _mm256_add_ps(l, s[j]);
        }
        for (int d = 0; d < hd; d++) {
            __m256 o = _mm256_mul_ps(_mm256_load_ps(ot + d * 8), alpha);
            for (int j = 0; j < 8; j++) o = _mm256_fmadd_ps(s[j], _mm256_set1_ps(vp[j][d]), o);
            _mm256_store_ps(ot + d * 8, o);
        }
    }
    float inv[8] __attribute__((aligned(32)));
    _mm256_store_ps(inv, _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_max_ps(l, _mm256_set1_ps(1e-30f))));
    for (int i = 0; i < count; i++)
        for (int d = 0; d < hd; d++) t->out[q0 + i][d] = ot[d * 8 + i] * inv[i];
}

static void attention_tile_f32(const ts_attn_tile *t) {
    /* scratch holds 2 x head_dim x TS_ATTN_LANES floats, 64-byte aligned */
    float *qt = t->scratch, *ot = t->scratch + (size_t)t->head_dim * 8;
    for (int q0 = 0; q0 < t->nq; q0 += 8) attention_tile_pass(t, q0, t->nq - q0 < 8 ? t->nq - q0 : 8, qt, ot);
}

#define AVX2_COMMON                                                                                                    \
    .quantize_act = quantize_act, .dot_f32 = dot_f32, .axpy_f32 = axpy_f32, .scale_f32 = scale_f32,                    \
    .softmax_exp_f32 = softmax_exp_f32, .sum_squares_f32 = sum_squares_f32, .rmsnorm_apply_f32 = rmsnorm_apply_f32,    \
    .silu_mul_f32 = silu_mul_f32, .attention_tile_f32 = attention_tile_f32, .attention_decode_f32 = attention_decode_f32

#define AVX2_TABLE(RAW, PACKED)                                                                                        \
    .mm = {[TS_DTYPE_F32] = mm_f32, [TS_DTYPE_F16] = mm_f16, [TS_DTYPE_BF16] = mm_bf16, [TS_DTYPE_Q8_0] = RAW,         \
           [TS_DTYPE_Q4_0] = RAW,   [TS_DTYPE_Q4_1] = RAW,   [TS_DTYPE_Q4_K] = RAW,     [TS_DTYPE_Q5_K] = RAW,         \
           [TS_DTYPE_Q6_K] = RAW,   [TS_DTYPE_IQ4_NL] = RAW, [TS_DTYPE_IQ4_XS] = RAW},                                 \
    .mm_packed = {[TS_DTYPE_Q8_0] = PACKED, [TS_DTYPE_Q4_0] = PACKED, [TS_DTYPE_Q4_1] = PACKED,                        \
                  [TS_DTYPE_Q4_K] = PACKED, [TS_DTYPE_Q5_K] = PACKED, [TS_DTYPE_Q6_K] = PACKED,                        \
                  [TS_DTYPE_IQ4_NL] = PACKED, [TS_DTYPE_IQ4_XS] = PACKED}

const ts_cpu_kernels ts_cpu_kernels_avx2 = {
    .name = "avx2",
    .required = TS_CPU_AVX2,
    AVX2_COMMON,
    AVX2_TABLE(mm_raw_avx2, mm_packed_avx2),
};

const ts_cpu_kernels ts_cpu_kernels_avx_vnni = {
    .name = "avx_vnni",
    .required = TS_CPU_AVX2 | TS_CPU_AVX_VNNI,
    AVX2_COMMON,
    AVX2_TABLE(mm_raw_vnni, mm_packed_vnni),
};

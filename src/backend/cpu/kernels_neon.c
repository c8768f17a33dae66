/* The NEON kernel table (ARMv8.2 with the dot-product extension): activation quantization, an SDOT
 * micro-kernel over unified blocks decoded from raw GGUF rows in signed mode (values minus their
 * offset, so that s8 x s8 products need no correction), float-weight products and vector helpers.
 * Weights are not repacked on ARM: the plain C decoder feeds the kernel. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_mmf_tiles.h"
#include "backend/cpu/mm_unified.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization (bit-identical to ts_act_quantize_ref) ---- */

static void quantize_act(const float *x, int64_t cols, void *row) {
    int64_t nb = cols / TS_ACT_BLOCK;
    int8_t *q = (int8_t *)row;
    float *d = (float *)ts_act_d(row, cols);
    int32_t *s32 = (int32_t *)ts_act_sum32(row, cols);
    int16_t *s16 = (int16_t *)ts_act_sum16(row, cols);
    for (int64_t b = 0; b < nb; b++) {
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(x + b * 32 + 4 * i);
            m = vmaxq_f32(m, vabsq_f32(v[i]));
        }
        float amax = vmaxvq_f32(m);
        if (!(amax >= 1e-30f)) {
            memset(q + b * 32, 0, 32);
            d[b] = 0.0f;
            s32[b] = 0;
            s16[2 * b] = s16[2 * b + 1] = 0;
            continue;
        }
        float32x4_t id = vdupq_n_f32(127.0f / amax);
        d[b] = amax / 127.0f;
        int32x4_t qi[8];
        /* FCVTNS rounds to nearest with ties to even, as nearbyintf does by default. */
        for (int i = 0; i < 8; i++) qi[i] = vcvtnq_s32_f32(vmulq_f32(v[i], id));
        for (int i = 0; i < 8; i += 2) {
            int16x8_t h = vcombine_s16(vqmovn_s32(qi[i]), vqmovn_s32(qi[i + 1]));
            vst1_s8(q + b * 32 + 4 * i, vqmovn_s16(h));
        }
        int a = vaddvq_s32(vaddq_s32(vaddq_s32(qi[0], qi[1]), vaddq_s32(qi[2], qi[3])));
        int c = vaddvq_s32(vaddq_s32(vaddq_s32(qi[4], qi[5]), vaddq_s32(qi[6], qi[7])));
        s16[2 * b] = (int16_t)a;
        s16[2 * b + 1] = (int16_t)c;
        s32[b] = a + c;
    }
}

/* ---- micro-kernel: 16 rows (four 4-row quarters) x T tokens, signed decoded values ---- */

ALWAYS_INLINE void uk_body(const uint8_t *ub, int64_t nblk, const uint8_t *act, size_t astride, int64_t cols,
                           int64_t ub0, int t0, float *acc, const int T, const int B, const int has_min) {
    const int8_t *xq[2];
    const float *xd[2];
    const int32_t *x32[2];
    const int16_t *x16[2];
    for (int t = 0; t < T; t++) {
        const uint8_t *row = act + (size_t)(t0 + t) * astride;
        xq[t] = ts_act_q(row);
        xd[t] = ts_act_d(row, cols);
        x32[t] = ts_act_sum32(row, cols);
        x16[t] = ts_act_sum16(row, cols);
    }
    float32x4_t facc[2][4];
    for (int t = 0; t < T; t++)
        for (int h = 0; h < 4; h++) facc[t][h] = vld1q_f32(acc + 16 * t + 4 * h);
    const size_t ubytes = (size_t)B * 16 + 128;
    for (int64_t b = 0; b < nblk; b++) {
        const uint8_t *u = ub + (size_t)b * ubytes;
        int64_t g = ub0 + b;
        int32x4_t ia[2][4];
        for (int t = 0; t < T; t++)
            for (int h = 0; h < 4; h++) ia[t][h] = vdupq_n_s32(0);
        for (int s = 0; s < B / 4; s += 4) {
            /* Four slices at once: x holds their 4-byte groups in lanes 0..3. */
            int8x16_t x[2];
            for (int t = 0; t < T; t++) x[t] = vld1q_s8(xq[t] + g * B + 4 * s);
#define SLICE(k)                                                                                                       \
    do {                                                                                                               \
        const int8_t *wp = (const int8_t *)(u + 64 * (s + k));                                                         \
        int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16), w2 = vld1q_s8(wp + 32), w3 = vld1q_s8(wp + 48);           \
        for (int t = 0; t < T; t++) {                                                                                  \
            ia[t][0] = vdotq_laneq_s32(ia[t][0], w0, x[t], k);                                                         \
            ia[t][1] = vdotq_laneq_s32(ia[t][1], w1, x[t], k);                                                         \
            ia[t][2] = vdotq_laneq_s32(ia[t][2], w2, x[t], k);                                                         \
            ia[t][3] = vdotq_laneq_s32(ia[t][3], w3, x[t], k);                                                         \
        }                                                                                                              \
    } while (0)
            SLICE(0);
            SLICE(1);
            SLICE(2);
            SLICE(3);
#undef SLICE
        }
        const float *sc = (const float *)(u + B * 16), *mb = sc + 16;
        for (int t = 0; t < T; t++) {
            int xs = B == 32 ? x32[t][g] : x16[t][g];
            float32x4_t dx = vdupq_n_f32(B == 32 ? xd[t][g] : xd[t][g >> 1]);
            for (int h = 0; h < 4; h++) {
                float32x4_t v = vmulq_f32(vcvtq_f32_s32(ia[t][h]), vld1q_f32(sc + 4 * h));
                if (has_min) v = vfmaq_f32(v, vld1q_f32(mb + 4 * h), vdupq_n_f32((float)xs));
                facc[t][h] = vfmaq_f32(facc[t][h], v, dx);
            }
        }
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < 4; h++) vst1q_f32(acc + 16 * t + 4 * h, facc[t][h]);
}

static void kernel(const uint8_t *ub, int64_t nblk, const ts_unified_desc *ud, const uint8_t *act, size_t astride,
                   int64_t cols, int64_t ub0, int t0, int n_tok, float *acc) {
    for (int i = 0; i < n_tok; i += 2) {
        int two = n_tok - i >= 2;
        float *a = acc + 16 * i;
        if (ud->block == 16) {
            if (two) uk_body(ub, nblk, act, astride, cols, ub0, t0 + i, a, 2, 16, 0);
            else uk_body(ub, nblk, act, astride, cols, ub0, t0 + i, a, 1, 16, 0);
        } else if (ud->has_min) {
            if (two) uk_body(ub, nblk, act, astride, cols, ub0, t0 + i, a, 2, 32, 1);
            else uk_body(ub, nblk, act, astride, cols, ub0, t0 + i, a, 1, 32, 1);
        } else {
            if (two) uk_body(ub, nblk, act, astride, cols, ub0, t0 + i, a, 2, 32, 0);
            else uk_body(ub, nblk, act, astride, cols, ub0, t0 + i, a, 1, 32, 0);
        }
    }
}

static const ts_uni_impl g_uni = {
    .decode = NULL, .kernel = kernel, .signed_vals = 1, .tile_tokens = 8, .gemv_tokens = 8};

static void mm_raw(const ts_mm_args *a) { ts_mm_unified(a, 0, &g_uni); }

/* ---- float weights: 4 rows x 2 tokens, 4 columns a step, scalar tail ---- */

enum { WF32, WF16, WBF16 };

ALWAYS_INLINE float32x4_t load_w(const int dt, const uint8_t *p, int64_t k) {
    if (dt == WF32) return vld1q_f32((const float *)p + k);
    uint16x4_t h = vld1_u16((const uint16_t *)p + k);
    if (dt == WF16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

ALWAYS_INLINE float load_w1(const int dt, const uint8_t *p, int64_t k) {
    if (dt == WF32) {
        float f;
        memcpy(&f, p + 4 * k, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * k, 2);
    if (dt == WF16) return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

ALWAYS_INLINE void mmf_tile(const ts_mm_args *a, int64_t r, int t0, const int R, const int T, const int dt) {
    float32x4_t acc[4][2];
    for (int i = 0; i < R; i++)
        for (int t = 0; t < T; t++) acc[i][t] = vdupq_n_f32(0.0f);
    const float *x[2];
    const uint8_t *w[4];
    for (int t = 0; t < T; t++) x[t] = (const float *)(a->act + (size_t)(t0 + t) * a->act_stride);
    for (int i = 0; i < R; i++) w[i] = a->w + (size_t)(r + i) * a->w_stride;
    int64_t k = 0;
    for (; k + 4 <= a->cols; k += 4) {
        float32x4_t wv[4];
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w[i], k);
        for (int t = 0; t < T; t++) {
            float32x4_t xv = vld1q_f32(x[t] + k);
            for (int i = 0; i < R; i++) acc[i][t] = vfmaq_f32(acc[i][t], wv[i], xv);
        }
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < R; i++) {
            float s = vaddvq_f32(acc[i][t]);
            for (int64_t kk = k; kk < a->cols; kk++) s += load_w1(dt, w[i], kk) * x[t][kk];
            a->y[(size_t)(t0 + t) * a->y_stride + (size_t)(r + i)] = s + (a->bias ? a->bias[r + i] : 0.0f);
        }
}

TS_MMF_TILES_4X2(WF32, mm_f32)
TS_MMF_TILES_4X2(WF16, mm_f16)
TS_MMF_TILES_4X2(WBF16, mm_bf16)

/* ---- vector helpers ---- */

static float dot_f32(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_f32(float a, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static void scale_f32(float a, float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), a));
    for (; i < n; i++) x[i] *= a;
}

/* exp as in the x86 tables: 2^n e^r, degree-7 Taylor polynomial, inputs clamped to [-87.3, 88.3]. */
ALWAYS_INLINE float32x4_t exp4(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.3f)), vdupq_n_f32(-87.3f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187045e-06f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

static float softmax_exp_f32(float *x, int64_t n, float max) {
    float32x4_t vmax = vdupq_n_f32(max), sum = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vmax));
        vst1q_f32(x + i, e);
        sum = vaddq_f32(sum, e);
    }
    float s = vaddvq_f32(sum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        s += x[i];
    }
    return s;
}

static float sum_squares_f32(const float *x, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t a = vld1q_f32(x + i);
        s0 = vfmaq_f32(s0, a, a);
    }
    float s = vaddvq_f32(s0);
    for (; i < n; i++) s += x[i] * x[i];
    return s;
}

static void rmsnorm_apply_f32(const float *x, const float *weight, float inv_rms, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vmulq_f32(vld1q_f32(weight + i), vmulq_n_f32(vld1q_f32(x + i), inv_rms)));
    for (; i < n; i++) out[i] = weight[i] * (x[i] * inv_rms);
}

static void silu_mul_f32(const float *gate, const float *up, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = vld1q_f32(gate + i);
        float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g))));
        vst1q_f32(out + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

const ts_cpu_kernels ts_cpu_kernels_neon = {
    .name = "neon",
    .required = TS_CPU_NEON | TS_CPU_DOTPROD,
    .quantize_act = quantize_act,
    .mm =
        {
            [TS_DTYPE_F32] = mm_f32,
            [TS_DTYPE_F16] = mm_f16,
            [TS_DTYPE_BF16] = mm_bf16,
            [TS_DTYPE_Q8_0] = mm_raw,
            [TS_DTYPE_Q4_0] = mm_raw,
            [TS_DTYPE_Q4_1] = mm_raw,
            [TS_DTYPE_Q4_K] = mm_raw,
            [TS_DTYPE_Q5_K] = mm_raw,
            [TS_DTYPE_Q6_K] = mm_raw,
            [TS_DTYPE_IQ4_NL] = mm_raw,
            [TS_DTYPE_IQ4_XS] = mm_raw,
        },
    .dot_f32 = dot_f32,
    .axpy_f32 = axpy_f32,
    .scale_f32 = scale_f32,
    .softmax_exp_f32 = softmax_exp_f32,
    .sum_squares_f32 = sum_squares_f32,
    .rmsnorm_apply_f32 = rmsnorm_apply_f32,
    .silu_mul_f32 = silu_mul_f32,
};

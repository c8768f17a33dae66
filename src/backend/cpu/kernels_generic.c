/* The plain C kernel table: the reference that every ISA table is tested against, and the fallback
 * on CPUs without a vector table. It follows the GGUF block semantics literally (one weight row and
 * one activation row at a time, integer block sums, float scales) and accumulates in double so that
 * it is a precise oracle; speed is not its concern. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "quant/k_scales.h"
#include "backend/cpu/kernels.h"
#include "quant/float16.h"

/* Blocks whose largest magnitude is below this are stored as zeros: their reciprocal scale would
 * overflow, and every table must treat them the same way. */
#define ACT_TINY 1e-30f

void ts_act_quantize_ref(const float *x, int64_t cols, void *row) {
    int64_t nb = cols / TS_ACT_BLOCK;
    int8_t *q = (int8_t *)row;
    float *d = (float *)ts_act_d(row, cols);
    int32_t *s32 = (int32_t *)ts_act_sum32(row, cols);
    int16_t *s16 = (int16_t *)ts_act_sum16(row, cols);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * TS_ACT_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < TS_ACT_BLOCK; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
        }
        int8_t *qb = q + b * TS_ACT_BLOCK;
        if (!(amax >= ACT_TINY)) {
            memset(qb, 0, TS_ACT_BLOCK);
            d[b] = 0.0f;
            s32[b] = 0;
            s16[2 * b] = s16[2 * b + 1] = 0;
            continue;
        }
        float id = 127.0f / amax;
        d[b] = amax / 127.0f;
        int sum[2] = {0, 0};
        for (int j = 0; j < TS_ACT_BLOCK; j++) {
            float v = nearbyintf(xb[j] * id);
            int qi = v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v;
            qb[j] = (int8_t)qi;
            sum[j / 16] += qi;
        }
        s32[b] = sum[0] + sum[1];
        s16[2 * b] = (int16_t)sum[0];
        s16[2 * b + 1] = (int16_t)sum[1];
    }
}

/* ---- float weights ---- */

static double dot_f32_row(const float *w, const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t k = 0; k < n; k++) acc += (double)w[k] * (double)x[k];
    return acc;
}

static double dot_f16_row(const uint16_t *w, const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t k = 0; k < n; k++) acc += (double)ts_f16_to_f32(w[k]) * (double)x[k];
    return acc;
}

static double dot_bf16_row(const uint16_t *w, const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t k = 0; k < n; k++) acc += (double)ts_bf16_to_f32(w[k]) * (double)x[k];
    return acc;
}

/* ---- quantized weights against act_quant.h rows; `b` indexes 32-value activation blocks ---- */

static double dot_q8_0_row(const ts_block_q8_0 *w, const void *act, int64_t cols) {
    const int8_t *xq = ts_act_q(act);
    const float *xd = ts_act_d(act, cols);
    double acc = 0.0;
    for (int64_t b = 0; b < cols / 32; b++) {
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += (int32_t)w[b].qs[j] * xq[b * 32 + j];
        acc += (double)(ts_f16_to_f32(w[b].d) * xd[b]) * isum;
    }
    return acc;
}

/* Q4_0 and IQ4_NL share a block layout (fp16 scale, 16 bytes of 4-bit indices: low nibbles elements
 * 0..15, high nibbles 16..31) and differ only in the value an index stands for. */
static const int8_t g_q4_0_levels[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};

/* The integer sum of one such block's 32 values with 32 activation values. */
static int32_t isum_4bit(const uint8_t qs[16], const int8_t levels[16], const int8_t *x) {
    int32_t isum = 0;
    for (int j = 0; j < 16; j++) {
        isum += levels[qs[j] & 0x0f] * x[j];
        isum += levels[qs[j] >> 4] * x[j + 16];
    }
    return isum;
}

static double dot_4bit_row(const ts_block_q4_0 *w, const int8_t levels[16], const void *act, int64_t cols) {
    const int8_t *xq = ts_act_q(act);
    const float *xd = ts_act_d(act, cols);
    double acc = 0.0;
    for (int64_t b = 0; b < cols / 32; b++)
        acc += (double)(ts_f16_to_f32(w[b].d) * xd[b]) * isum_4bit(w[b].qs, levels, xq + b * 32);
    return acc;
}

/* IQ4_XS: IQ4_NL's nibble order and grid in sub-block j of 32, each with scale d * sub_scale(j). */
static double dot_iq4_xs_row(const ts_block_iq4_xs *w, const void *act, int64_t cols) {
    const int8_t *xq = ts_act_q(act);
    const float *xd = ts_act_d(act, cols);
    double acc = 0.0;
    for (int64_t i = 0; i < cols / 256; i++) {
        float d = ts_f16_to_f32(w[i].d);
        for (int j = 0; j < 8; j++) {
            const int64_t b = i * 8 + j;
            int32_t isum = isum_4bit(w[i].qs + 16 * j, ts_iq4_nl_values, xq + b * 32);
            acc += (double)(d * (float)ts_iq4_xs_sub_scale(&w[i], j) * xd[b]) * isum;
        }
    }
    return acc;
}

static double dot_q4_1_row(const ts_block_q4_1 *w, const void *act, int64_t cols) {
    const int8_t *xq = ts_act_q(act);
    const float *xd = ts_act_d(act, cols);
    const int32_t *xs = ts_act_sum32(act, cols);
    double acc = 0.0;
    for (int64_t b = 0; b < cols / 32; b++) {
        const int8_t *x = xq + b * 32;
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) isum += (w[b].qs[j] & 0x0f) * x[j] + (w[b].qs[j] >> 4) * x[j + 16];
        acc += (double)(ts_f16_to_f32(w[b].d) * xd[b]) * isum + (double)(ts_f16_to_f32(w[b].m) * xd[b]) * xs[b];
    }
    return acc;
}

/* Q4_K and Q5_K: sub-block j of super-block i is activation block 8i + j; value = d*sc*q - dmin*m, q the
 * low nibble (j even) or high nibble (j odd) of qs, with bit j of qh as its fifth bit for Q5_K (qh NULL for
 * Q4_K). Adds super-block i's eight sub-blocks to *acc in order. */
static void dot_k45_superblock(float d, float dmin, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                               const void *act, int64_t cols, int64_t i, double *acc) {
    const int8_t *xq = ts_act_q(act);
    const float *xd = ts_act_d(act, cols);
    const int32_t *xs = ts_act_sum32(act, cols);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        ts_k_scale_min(j, scales, &sc, &m);
        const uint8_t *q = qs + (j / 2) * 32;
        int shift = (j & 1) * 4;
        int64_t b = i * 8 + j;
        const int8_t *x = xq + b * 32;
        int32_t isum = 0;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 0x0f;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            isum += v * x[l];
        }
        *acc += (double)xd[b] * ((double)(d * (float)sc) * isum - (double)(dmin * (float)m) * xs[b]);
    }
}

static double dot_q4_k_row(const ts_block_q4_k *w, const void *act, int64_t cols) {
    double acc = 0.0;
    for (int64_t i = 0; i < cols / 256; i++)
        dot_k45_superblock(ts_f16_to_f32(w[i].d), ts_f16_to_f32(w[i].dmin), w[i].scales, w[i].qs, NULL, act, cols, i, &acc);
    return acc;
}

static double dot_q5_k_row(const ts_block_q5_k *w, const void *act, int64_t cols) {
    double acc = 0.0;
    for (int64_t i = 0; i < cols / 256; i++)
        dot_k45_superblock(ts_f16_to_f32(w[i].d), ts_f16_to_f32(w[i].dmin), w[i].scales, w[i].qs, w[i].qh, act, cols, i,
                           &acc);
    return acc;
}

/* Q6_K: 16 sub-blocks of 16 values with int8 scales; value = d * sc * (q - 32). Element e of the
 * super-block: half h = e / 128, quarter p = (e % 128) / 32, l = e % 32; its low 4 bits are in
 * ql[64h + l + 32 (p & 1)] (high nibble when p >= 2) and its high 2 bits at qh[32h + l] >> 2p. */
static double dot_q6_k_row(const ts_block_q6_k *w, const void *act, int64_t cols) {
    const int8_t *xq = ts_act_q(act);
    const float *xd = ts_act_d(act, cols);
    double acc = 0.0;
    for (int64_t i = 0; i < cols / 256; i++) {
        float d = ts_f16_to_f32(w[i].d);
        for (int s = 0; s < 16; s++) {
            int32_t isum = 0;
            for (int e = s * 16; e < s * 16 + 16; e++) {
                int h = e / 128, p = (e % 128) / 32, l = e % 32;
                int lo = (w[i].ql[64 * h + l + 32 * (p & 1)] >> (p >= 2 ? 4 : 0)) & 0x0f;
                int hi = (w[i].qh[32 * h + l] >> (2 * p)) & 3;
                isum += ((lo | (hi << 4)) - 32) * xq[i * 256 + e];
            }
            acc += (double)xd[i * 8 + s / 2] * (double)(d * (float)w[i].scales[s]) * isum;
        }
    }
    return acc;
}

static double dot_row(ts_dtype t, const uint8_t *w, const uint8_t *act, int64_t cols) {
    switch (t) {
    case TS_DTYPE_F32: return dot_f32_row((const float *)w, (const float *)act, cols);
    case TS_DTYPE_F16: return dot_f16_row((const uint16_t *)w, (const float *)act, cols);
    case TS_DTYPE_BF16: return dot_bf16_row((const uint16_t *)w, (const float *)act, cols);
    case TS_DTYPE_Q8_0: return dot_q8_0_row((const ts_block_q8_0 *)w, act, cols);
    case TS_DTYPE_Q4_0: return dot_4bit_row((const ts_block_q4_0 *)w, g_q4_0_levels, act, cols);
    case TS_DTYPE_Q4_1: return dot_q4_1_row((const ts_block_q4_1 *)w, act, cols);
    case TS_DTYPE_Q4_K: return dot_q4_k_row((const ts_block_q4_k *)w, act, cols);
    case TS_DTYPE_Q5_K: return dot_q5_k_row((const ts_block_q5_k *)w, act, cols);
    case TS_DTYPE_Q6_K: return dot_q6_k_row((const ts_block_q6_k *)w, act, cols);
    case TS_DTYPE_IQ4_NL: return dot_4bit_row((const ts_block_q4_0 *)w, ts_iq4_nl_values, act, cols);
    case TS_DTYPE_IQ4_XS: return dot_iq4_xs_row((const ts_block_iq4_xs *)w, act, cols);
    default: return 0.0;
    }
}

static void mm_generic(const ts_mm_args *a) {
    for (int64_t r = a->r0; r < a->r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_stride;
        float b = a->bias ? a->bias[r] : 0.0f;
        for (int t = 0; t < a->n_tok; t++) {
            const uint8_t *x = a->act + (size_t)t * a->act_stride;
            a->y[(size_t)t * a->y_stride + (size_t)r] = (float)dot_row(a->dtype, w, x, a->cols) + b;
        }
    }
}

/* ---- vector helpers ---- */

static float dot_f32_ref(const float *a, const float *b, int64_t n) { return (float)dot_f32_row(a, b, n); }

static void axpy_f32_ref(float a, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale_f32_ref(float a, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

static float softmax_exp_f32_ref(float *x, int64_t n, float max) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return (float)sum;
}

static float sum_squares_f32_ref(const float *x, int64_t n) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    return (float)ss;
}

static void rmsnorm_apply_f32_ref(const float *x, const float *weight, float inv_rms, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = weight[i] * (x[i] * inv_rms);
}

static void silu_mul_f32_ref(const float *gate, const float *up, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* Each query on its own: scores (once, kept), their maximum, exponentials and the weighted sum of
 * values, in double. */
static void attention_tile_f32_ref(const ts_attn_tile *t) {
    const int hd = t->head_dim;
    double *buf = malloc(((size_t)t->n_keys + (size_t)hd) * sizeof(double));
    for (int i = 0; i < t->nq; i++) {
        if (!buf) {
            memset(t->out[i], 0, (size_t)hd * sizeof(float));
            continue;
        }
        double *score = buf, *o = buf + t->n_keys;
        int n = t->q_last[i] + 1;
        double mx = -INFINITY, sum = 0.0;
        for (int p = 0; p < n; p++) {
            score[p] = (double)t->scale * dot_f32_row(t->q[i], t->k[p], hd);
            if (score[p] > mx) mx = score[p];
        }
        memset(o, 0, (size_t)hd * sizeof(double));
        for (int p = 0; p < n; p++) {
            double e = exp(score[p] - mx);
            sum += e;
            for (int d = 0; d < hd; d++) o[d] += e * t->v[p][d];
        }
        for (int d = 0; d < hd; d++) t->out[i][d] = (float)(o[d] / sum);
    }
    free(buf);
}

const ts_cpu_kernels ts_cpu_kernels_generic = {
    .name = "generic",
    .required = 0,
    .quantize_act = ts_act_quantize_ref,
    .mm =
        {
            [TS_DTYPE_F32] = mm_generic,
            [TS_DTYPE_F16] = mm_generic,
            [TS_DTYPE_BF16] = mm_generic,
            [TS_DTYPE_Q8_0] = mm_generic,
            [TS_DTYPE_Q4_0] = mm_generic,
            [TS_DTYPE_Q4_1] = mm_generic,
            [TS_DTYPE_Q4_K] = mm_generic,
            [TS_DTYPE_Q5_K] = mm_generic,
            [TS_DTYPE_Q6_K] = mm_generic,
            [TS_DTYPE_IQ4_NL] = mm_generic,
            [TS_DTYPE_IQ4_XS] = mm_generic,
        },
    .dot_f32 = dot_f32_ref,
    .axpy_f32 = axpy_f32_ref,
    .scale_f32 = scale_f32_ref,
    .softmax_exp_f32 = softmax_exp_f32_ref,
    .sum_squares_f32 = sum_squares_f32_ref,
    .rmsnorm_apply_f32 = rmsnorm_apply_f32_ref,
    .silu_mul_f32 = silu_mul_f32_ref,
    .attention_tile_f32 = attention_tile_f32_ref,
    .attention_decode_f32 = attention_tile_f32_ref,
};

#include "quant/dequantize.h"

#include <string.h>

#include "quant/float16.h"
#include "quant/k_scales.h"

static void deq_q8_0(const ts_block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = ts_f16_to_f32(b[i].d);
        for (int j = 0; j < TS_QK8_0; j++) y[i * TS_QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

static void deq_q4_0(const ts_block_q4_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = ts_f16_to_f32(b[i].d);
        float *o = y + i * TS_QK4_0;
        for (int j = 0; j < TS_QK4_0 / 2; j++) {
            o[j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
            o[j + TS_QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void deq_q4_1(const ts_block_q4_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = ts_f16_to_f32(b[i].d), m = ts_f16_to_f32(b[i].m);
        float *o = y + i * TS_QK4_1;
        for (int j = 0; j < TS_QK4_1 / 2; j++) {
            o[j] = d * (float)(b[i].qs[j] & 0x0f) + m;
            o[j + TS_QK4_1 / 2] = d * (float)(b[i].qs[j] >> 4) + m;
        }
    }
}

static void deq_q4_k(const ts_block_q4_k *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = ts_f16_to_f32(b[i].d), dmin = ts_f16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int j = 0; j < TS_QK_K; j += 64) {
            int sc, m;
            ts_k_scale_min(is, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            ts_k_scale_min(is + 1, b[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void deq_q5_k(const ts_block_q5_k *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = ts_f16_to_f32(b[i].d), dmin = ts_f16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < TS_QK_K; j += 64) {
            int sc, m;
            ts_k_scale_min(is, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            ts_k_scale_min(is + 1, b[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void deq_q6_k(const ts_block_q6_k *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = ts_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int n = 0; n < TS_QK_K; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * (float)q1;
                y[l + 32] = d * sc[is + 2] * (float)q2;
                y[l + 64] = d * sc[is + 4] * (float)q3;
                y[l + 96] = d * sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

static void deq_q8_k(const ts_block_q8_k *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < TS_QK_K; j++) y[i * TS_QK_K + j] = b[i].d * (float)b[i].qs[j];
}

void ts_dequantize_row(ts_dtype t, const void *src, float *dst, int64_t n) {
    int64_t nb = n / ts_dtype_get(t)->block_size;
    switch (t) {
    case TS_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case TS_DTYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ts_f16_to_f32(s[i]);
        break;
    }
    case TS_DTYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ts_bf16_to_f32(s[i]);
        break;
    }
    case TS_DTYPE_Q8_0: deq_q8_0(src, dst, nb); break;
    case TS_DTYPE_Q4_0: deq_q4_0(src, dst, nb); break;
    case TS_DTYPE_Q4_1: deq_q4_1(src, dst, nb); break;
    case TS_DTYPE_Q4_K: deq_q4_k(src, dst, nb); break;
    case TS_DTYPE_Q5_K: deq_q5_k(src, dst, nb); break;
    case TS_DTYPE_Q6_K: deq_q6_k(src, dst, nb); break;
    case TS_DTYPE_Q8_K: deq_q8_k(src, dst, nb); break;
    case TS_DTYPE_IQ4_NL: {
        const ts_block_iq4_nl *b = src;
        for (int64_t i = 0; i < nb; i++, dst += TS_QK4_NL) {
            float d = ts_f16_to_f32(b[i].d);
            for (int k = 0; k < TS_QK4_NL / 2; k++) {
                dst[k] = d * (float)ts_iq4_nl_values[b[i].qs[k] & 0x0f];
                dst[k + TS_QK4_NL / 2] = d * (float)ts_iq4_nl_values[b[i].qs[k] >> 4];
            }
        }
        break;
    }
    case TS_DTYPE_IQ4_XS: {
        const ts_block_iq4_xs *b = src;
        for (int64_t i = 0; i < nb; i++) {
            float d = ts_f16_to_f32(b[i].d);
            for (int j = 0; j < 8; j++, dst += 32) {
                float dl = d * (float)ts_iq4_xs_sub_scale(&b[i], j);
                const uint8_t *qs = b[i].qs + 16 * j;
                for (int k = 0; k < 16; k++) {
                    dst[k] = dl * (float)ts_iq4_nl_values[qs[k] & 0x0f];
                    dst[k + 16] = dl * (float)ts_iq4_nl_values[qs[k] >> 4];
                }
            }
        }
        break;
    }
    default: break;
    }
}

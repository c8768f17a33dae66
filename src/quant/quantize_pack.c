/* Bit packing of quantized levels and K-quant scales into GGUF's block layouts. */
#include "quant/float16.h"
#include "quant/quantize_internal.h"

void ts_k_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[TS_K_SCALE_SIZE]) {
    for (int j = 0; j < 4; j++) {
        out[j] = ls[j];
        out[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; j++) {
        out[j + 4] = (uint8_t)((ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4));
        out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
        out[j] |= (uint8_t)((lm[j] >> 4) << 6);
    }
}

void ts_pack_q4_32_levels(const uint8_t L[32], uint8_t qs[16]) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

void ts_pack_q4_k_levels(const uint8_t L[TS_QK_K], uint8_t qs[TS_QK_K / 2]) {
    for (int j = 0; j < TS_QK_K; j += 64, qs += 32)
        for (int l = 0; l < 32; l++) qs[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

void ts_pack_q5_k_levels(const uint8_t L[TS_QK_K], uint8_t qh[TS_QK_K / 8], uint8_t qs[TS_QK_K / 2]) {
    memset(qh, 0, TS_QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < TS_QK_K; n += 64, qs += 32) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            qs[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
}

void ts_q6_k_requantize(const float *x, ts_block_q6_k *y, int8_t L[TS_QK_K]) {
    for (int j = 0; j < TS_QK_K / 16; j++) {
        float d = ts_f16_to_f32(y->d) * y->scales[j];
        if (d == 0.0f) continue;
        for (int ii = 0; ii < 16; ii++) {
            int l = ts_nearest_int(x[16 * j + ii] / d);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            L[16 * j + ii] = (int8_t)(l + 32);
        }
    }
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < TS_QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = L[j + l] & 0xf, q2 = L[j + l + 32] & 0xf;
            const uint8_t q3 = L[j + l + 64] & 0xf, q4 = L[j + l + 96] & 0xf;
            ql[l] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
    }
}

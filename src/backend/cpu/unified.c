/* Descriptors of the decoded block form and the plain C decoder from raw GGUF rows (unified.h). */
#include "backend/cpu/unified.h"

#include <string.h>

#include "quant/k_scales.h"
#include "quant/float16.h"

static const ts_unified_desc g_desc[TS_DTYPE_COUNT] = {
    [TS_DTYPE_Q8_0] = {32, 128, 0, 32},
    [TS_DTYPE_Q4_0] = {32, 8, 0, 32},
    [TS_DTYPE_Q4_1] = {32, 0, 1, 32},
    [TS_DTYPE_Q4_K] = {32, 0, 1, 256},
    [TS_DTYPE_Q5_K] = {32, 0, 1, 256},
    [TS_DTYPE_Q6_K] = {16, 32, 0, 256},
    [TS_DTYPE_IQ4_NL] = {32, 128, 0, 32}, /* grid values + 128, as Q8_0's */
    [TS_DTYPE_IQ4_XS] = {32, 128, 0, 256},
};

const ts_unified_desc *ts_unified_desc_of(ts_dtype t) {
    if ((int)t < 0 || t >= TS_DTYPE_COUNT || g_desc[t].block == 0) return NULL;
    return &g_desc[t];
}

/* One native block of one row: values (offset included), and per decoded block scale and mb. */
static void decode_native(ts_dtype t, const uint8_t *blk, int *v, float *scale, float *mb) {
    switch (t) {
    case TS_DTYPE_Q8_0: {
        const ts_block_q8_0 *b = (const ts_block_q8_0 *)blk;
        for (int k = 0; k < 32; k++) v[k] = b->qs[k] + 128;
        scale[0] = ts_f16_to_f32(b->d);
        mb[0] = 0.0f;
        break;
    }
    case TS_DTYPE_Q4_0: {
        const ts_block_q4_0 *b = (const ts_block_q4_0 *)blk;
        for (int k = 0; k < 16; k++) {
            v[k] = b->qs[k] & 0x0f;
            v[k + 16] = b->qs[k] >> 4;
        }
        scale[0] = ts_f16_to_f32(b->d);
        mb[0] = 0.0f;
        break;
    }
    case TS_DTYPE_Q4_1: {
        const ts_block_q4_1 *b = (const ts_block_q4_1 *)blk;
        for (int k = 0; k < 16; k++) {
            v[k] = b->qs[k] & 0x0f;
            v[k + 16] = b->qs[k] >> 4;
        }
        scale[0] = ts_f16_to_f32(b->d);
        mb[0] = ts_f16_to_f32(b->m);
        break;
    }
    case TS_DTYPE_Q4_K:
    case TS_DTYPE_Q5_K: {
        const uint8_t *scales, *qs, *qh = NULL;
        uint16_t d16, dmin16;
        if (t == TS_DTYPE_Q4_K) {
            const ts_block_q4_k *b = (const ts_block_q4_k *)blk;
            d16 = b->d, dmin16 = b->dmin, scales = b->scales, qs = b->qs;
        } else {
            const ts_block_q5_k *b = (const ts_block_q5_k *)blk;
            d16 = b->d, dmin16 = b->dmin, scales = b->scales, qs = b->qs, qh = b->qh;
        }
        float d = ts_f16_to_f32(d16), dmin = ts_f16_to_f32(dmin16);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ts_k_scale_min(j, scales, &sc, &m);
            scale[j] = d * (float)sc;
            mb[j] = -(dmin * (float)m);
            for (int l = 0; l < 32; l++) {
                int q = (qs[(j / 2) * 32 + l] >> ((j & 1) * 4)) & 0x0f;
                if (qh) q |= ((qh[l] >> j) & 1) << 4;
                v[j * 32 + l] = q;
            }
        }
        break;
    }
    case TS_DTYPE_Q6_K: {
        const ts_block_q6_k *b = (const ts_block_q6_k *)blk;
        float d = ts_f16_to_f32(b->d);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, p = (e % 128) / 32, l = e % 32;
            int lo = (b->ql[64 * h + l + 32 * (p & 1)] >> (p >= 2 ? 4 : 0)) & 0x0f;
            int hi = (b->qh[32 * h + l] >> (2 * p)) & 3;
            v[e] = lo | (hi << 4);
        }
        for (int s = 0; s < 16; s++) {
            scale[s] = d * (float)b->scales[s];
            mb[s] = 0.0f;
        }
        break;
    }
    case TS_DTYPE_IQ4_NL: {
        const ts_block_iq4_nl *b = (const ts_block_iq4_nl *)blk;
        for (int k = 0; k < 16; k++) {
            v[k] = ts_iq4_nl_values[b->qs[k] & 0x0f] + 128;
            v[k + 16] = ts_iq4_nl_values[b->qs[k] >> 4] + 128;
        }
        scale[0] = ts_f16_to_f32(b->d);
        mb[0] = 0.0f;
        break;
    }
    case TS_DTYPE_IQ4_XS: {
        const ts_block_iq4_xs *b = (const ts_block_iq4_xs *)blk;
        float d = ts_f16_to_f32(b->d);
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = b->qs + 16 * j;
            for (int k = 0; k < 16; k++) {
                v[32 * j + k] = ts_iq4_nl_values[qs[k] & 0x0f] + 128;
                v[32 * j + k + 16] = ts_iq4_nl_values[qs[k] >> 4] + 128;
            }
            scale[j] = d * (float)ts_iq4_xs_sub_scale(b, j);
            mb[j] = 0.0f;
        }
        break;
    }
    default: break;
    }
}

void ts_unified_decode_raw(ts_dtype t, const uint8_t *w, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                           int signed_vals, uint8_t *dst) {
    const ts_unified_desc *ud = ts_unified_desc_of(t);
    if (!ud) return;
    int B = ud->block, per_native = ud->native / B;
    size_t ubytes = ts_unified_block_bytes(B);
    size_t native_bytes = (size_t)ts_dtype_get(t)->block_bytes;
    int v[256];
    float scale[16], mb[16];
    for (int64_t nb = nb0; nb < nb1; nb++) {
        uint8_t *out = dst + (size_t)(nb - nb0) * (size_t)per_native * ubytes;
        memset(out, 0, (size_t)per_native * ubytes);
        for (int r = 0; r < nrows; r++) {
            decode_native(t, w + (size_t)r * row_bytes + (size_t)nb * native_bytes, v, scale, mb);
            for (int u = 0; u < per_native; u++) {
                uint8_t *ub = out + (size_t)u * ubytes;
                for (int k = 0; k < B; k++) {
                    int val = v[u * B + k];
                    ub[(k / 4) * 64 + r * 4 + (k % 4)] = (uint8_t)(signed_vals ? (val - ud->off) : val);
                }
                float *us = (float *)(ub + (size_t)B * TS_UNI_ROWS);
                us[r] = scale[u];
                us[16 + r] = mb[u];
            }
        }
    }
}

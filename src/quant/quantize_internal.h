/* Helpers shared by the reference and the error-minimising quantizers: rounding as ggml does it, and
 * packing of levels and 6-bit scales into the K-quant block layouts. Private to src/quant. */
#ifndef TS_QUANT_QUANTIZE_INTERNAL_H
#define TS_QUANT_QUANTIZE_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/dtype.h"

/* Round to nearest, ties to even, through the float mantissa (valid for |v| < 2^22); the same
 * rounding ggml's quantizers use, which roundf (ties away from zero) would not reproduce. */
static inline int ts_nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* The element of largest magnitude (the first of equal ones), 0 when all are 0; its magnitude in *amax. */
static inline float ts_max_magnitude(const float *x, int64_t n, float *amax) {
    float max = 0.0f, a = 0.0f;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > a) {
            a = fabsf(x[i]);
            max = x[i];
        }
    *amax = a;
    return max;
}

/* The index of the IQ4_NL grid level nearest v (v already divided by the block's scale). */
static inline int ts_iq4_nl_nearest(float v) {
    int best = 0;
    float be = fabsf(v - (float)ts_iq4_nl_values[0]);
    for (int j = 1; j < 16; j++) {
        float e = fabsf(v - (float)ts_iq4_nl_values[j]);
        if (e < be) {
            be = e;
            best = j;
        }
    }
    return best;
}

/* Packs eight 6-bit scales and eight 6-bit minimums into the 12 bytes of Q4_K/Q5_K. */
void ts_k_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[TS_K_SCALE_SIZE]);
/* 32 levels 0..15 into the nibble order of Q4_0, Q4_1 and IQ4_NL (byte j: level j low, level j + 16 high). */
void ts_pack_q4_32_levels(const uint8_t L[32], uint8_t qs[16]);
/* 256 levels 0..15 into Q4_K's nibble order (groups of 64: low nibbles first 32, high the next). */
void ts_pack_q4_k_levels(const uint8_t L[TS_QK_K], uint8_t qs[TS_QK_K / 2]);
/* 256 levels 0..31 into Q5_K's nibbles and high-bit plane. */
void ts_pack_q5_k_levels(const uint8_t L[TS_QK_K], uint8_t qh[TS_QK_K / 8], uint8_t qs[TS_QK_K / 2]);
/* Given a Q6_K block whose d and scales are set, recomputes the levels of x against them (L is
 * scratch holding the levels used where a group's scale is zero) and packs ql/qh. */
void ts_q6_k_requantize(const float *x, ts_block_q6_k *y, int8_t L[TS_QK_K]);

/* Error-minimising quantizers (quantize_search.c). `w` holds one weight per element of the row
 * (NULL: built from the values themselves). */
void ts_search_q4_1(const float *x, ts_block_q4_1 *y, int64_t nb, const float *w);
void ts_search_q4_k(const float *x, ts_block_q4_k *y, int64_t nb, const float *w);
void ts_search_q5_k(const float *x, ts_block_q5_k *y, int64_t nb, const float *w);
void ts_search_q6_k(const float *x, ts_block_q6_k *y, int64_t nb, const float *w);
void ts_search_q4_0(const float *x, ts_block_q4_0 *y, int64_t nb, const float *w);
void ts_search_iq4_nl(const float *x, ts_block_iq4_nl *y, int64_t nb, const float *w);
void ts_search_iq4_xs(const float *x, ts_block_iq4_xs *y, int64_t nb, const float *w);

#endif

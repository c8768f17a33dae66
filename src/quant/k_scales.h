/* Unpacking of the 12 scale bytes of Q4_K and Q5_K super-blocks: eight 6-bit scales and eight 6-bit
 * minimums, one pair per 32-value sub-block (as GGUF stores them). */
#ifndef TS_QUANT_K_SCALES_H
#define TS_QUANT_K_SCALES_H

#include <stdint.h>

static inline void ts_k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

#endif

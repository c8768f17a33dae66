/* The quantized activation row that every integer dot product reads: one format for all quantized
 * weight types. A row of cols values (cols a multiple of 32) is
 *
 *   int8  q[cols]          q = round_half_even(x * (127 / amax)) per 32-block, in [-127, 127]
 *   float d[cols / 32]     block scale amax / 127 (0 for an all-zero block)
 *   int32 sum32[cols / 32] sum of the block's q (for weight offsets and minimums)
 *   int16 sum16[cols / 16] sums of each 16-value half block (Q6_K's 16-wide sub-blocks)
 *
 * padded to a multiple of 64 bytes. Scales are float32 rather than GGUF's fp16 (more accurate, no
 * conversion in the inner loops) and are per 32 values also for K-quant weights, whose 32-wide
 * sub-block scales then apply directly; the K-quants' Q8_K partner is not needed. */
#ifndef TS_BACKEND_CPU_ACT_QUANT_H
#define TS_BACKEND_CPU_ACT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define TS_ACT_BLOCK 32

static inline size_t ts_act_row_bytes(int64_t cols) {
    size_t nb = (size_t)cols / TS_ACT_BLOCK;
    size_t raw = (size_t)cols + nb * (4 + 4 + 4);
    return (raw + 63) & ~(size_t)63;
}

static inline const int8_t *ts_act_q(const void *row) { return (const int8_t *)row; }
static inline const float *ts_act_d(const void *row, int64_t cols) {
    return (const float *)((const uint8_t *)row + cols);
}
static inline const int32_t *ts_act_sum32(const void *row, int64_t cols) {
    return (const int32_t *)((const uint8_t *)row + cols + (size_t)cols / TS_ACT_BLOCK * 4);
}
static inline const int16_t *ts_act_sum16(const void *row, int64_t cols) {
    return (const int16_t *)((const uint8_t *)row + cols + (size_t)cols / TS_ACT_BLOCK * 8);
}

/* The plain C quantizer (the reference); tables provide faster ones with identical output. */
void ts_act_quantize_ref(const float *x, int64_t cols, void *row);

#endif

/* The decoded form that every SIMD integer kernel computes on, whatever the weight type. Sixteen
 * weight rows are decoded together, block by block; a decoded block of B values (B = 32, or 16 for
 * Q6_K's 16-wide sub-blocks) is
 *
 *   uint8 v[B / 4][16][4]   value k of row r at v[k / 4][r][k % 4] (the "VNNI" order: one 32-bit lane
 *                           per row holds 4 consecutive values, so a 64-byte vector is 16 rows)
 *   float scale[16]         per-row block scale
 *   float mb[16]            per-row block minimum term (types with minimums; zero otherwise)
 *
 * and the block contributes  dx * (scale * (sum_k v_k x_k - off * xsum) + mb * xsum)  to each row,
 * where x are the activation's int8 values, dx its block scale and xsum the sum of its x (act_quant.h).
 * `off` is the type's value offset (Q4_0: 8, Q8_0: 128 because stored values are q + 128, Q6_K: 32),
 * applied as an integer so the integer sum equals the reference's exactly. In signed mode (for
 * s8 x s8 dot products) the decoder subtracts `off` itself and v holds int8.
 *
 * This file also decodes raw GGUF rows into this form in plain C: the path for weights that were
 * not repacked (pack.h), and for the NEON table. */
#ifndef TS_BACKEND_CPU_UNIFIED_H
#define TS_BACKEND_CPU_UNIFIED_H

#include <stddef.h>
#include <stdint.h>

#include "quant/dtype.h"

#define TS_UNI_ROWS 16

typedef struct ts_unified_desc {
    int block;       /* B: values per decoded block (32 or 16) */
    int off;         /* value offset removed as an integer */
    int has_min;     /* mb is meaningful */
    int native;      /* values per native block of the dtype (32 or 256) */
} ts_unified_desc;

/* NULL for float types. */
const ts_unified_desc *ts_unified_desc_of(ts_dtype t);

static inline size_t ts_unified_block_bytes(int block) { return (size_t)block * TS_UNI_ROWS + 128; }

/* Decodes native blocks [nb0, nb1) of `nrows` (<= 16) raw rows into decoded blocks at dst; missing
 * rows are zero. signed_vals: store v - off as int8 (off is then 0 for the kernel). */
void ts_unified_decode_raw(ts_dtype t, const uint8_t *w, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                           int signed_vals, uint8_t *dst);

#endif

/* Builds the repacked layouts described in pack.h from raw GGUF rows (plain C, run once per weight). */
#include "backend/cpu/pack.h"

#include <string.h>

#include "quant/k_scales.h"

#define ROWS 16

/* Byte j of a row's array stored at slice j / 4, lane r, byte j % 4. */
static inline size_t slice_pos(int j, int r) { return (size_t)(j / 4) * 64 + (size_t)r * 4 + (size_t)(j % 4); }

size_t ts_pack_block_bytes(ts_pack_kind kind, ts_dtype t) {
    if (kind != TS_PACK_I16) return 0;
    switch (t) {
    case TS_DTYPE_Q8_0: return 544;
    case TS_DTYPE_Q4_0:
    case TS_DTYPE_IQ4_NL: return 288;
    case TS_DTYPE_Q4_1: return 320;
    case TS_DTYPE_Q4_K: return 2368;
    case TS_DTYPE_Q5_K: return 2880;
    case TS_DTYPE_Q6_K: return 3360;
    case TS_DTYPE_IQ4_XS: return 2208;
    default: return 0;
    }
}

size_t ts_pack_group_bytes(ts_pack_kind kind, ts_dtype t, int64_t cols) {
    if (kind == TS_PACK_AMX_BF16) return t == TS_DTYPE_BF16 ? (size_t)((cols + 1) / 2) * 64 : 0;
    size_t bb = ts_pack_block_bytes(kind, t);
    if (!bb) return 0;
    return (size_t)(cols / ts_dtype_get(t)->block_size) * bb;
}

size_t ts_pack_bytes(ts_pack_kind kind, ts_dtype t, int64_t rows, int64_t cols) {
    return (size_t)((rows + ROWS - 1) / ROWS) * ts_pack_group_bytes(kind, t, cols);
}

static void put_f16(uint8_t *dst, int r, uint16_t v) { memcpy(dst + 2 * r, &v, 2); }

static void pack_block(ts_dtype t, const uint8_t *src, int r, uint8_t *dst) {
    switch (t) {
    case TS_DTYPE_Q8_0: {
        const ts_block_q8_0 *b = (const ts_block_q8_0 *)src;
        put_f16(dst, r, b->d);
        for (int j = 0; j < 32; j++) dst[32 + slice_pos(j, r)] = (uint8_t)b->qs[j] ^ 0x80;
        break;
    }
    case TS_DTYPE_Q4_0:
    case TS_DTYPE_IQ4_NL: { /* same block layout; the decoders map the indices through the grid */
        const ts_block_q4_0 *b = (const ts_block_q4_0 *)src;
        put_f16(dst, r, b->d);
        for (int j = 0; j < 16; j++) dst[32 + slice_pos(j, r)] = b->qs[j];
        break;
    }
    case TS_DTYPE_Q4_1: {
        const ts_block_q4_1 *b = (const ts_block_q4_1 *)src;
        put_f16(dst, r, b->d);
        put_f16(dst + 32, r, b->m);
        for (int j = 0; j < 16; j++) dst[64 + slice_pos(j, r)] = b->qs[j];
        break;
    }
    case TS_DTYPE_Q4_K:
    case TS_DTYPE_Q5_K: {
        /* Q5_K begins with the same fields as Q4_K, then qh before qs. */
        const ts_block_q4_k *b4 = (const ts_block_q4_k *)src;
        const ts_block_q5_k *b5 = (const ts_block_q5_k *)src;
        const uint8_t *scales = t == TS_DTYPE_Q4_K ? b4->scales : b5->scales;
        const uint8_t *qs = t == TS_DTYPE_Q4_K ? b4->qs : b5->qs;
        put_f16(dst, r, t == TS_DTYPE_Q4_K ? b4->d : b5->d);
        put_f16(dst + 32, r, t == TS_DTYPE_Q4_K ? b4->dmin : b5->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ts_k_scale_min(j, scales, &sc, &m);
            dst[64 + j * 16 + r] = (uint8_t)sc;
            dst[192 + j * 16 + r] = (uint8_t)m;
        }
        for (int j = 0; j < 128; j++) dst[320 + slice_pos(j, r)] = qs[j];
        if (t == TS_DTYPE_Q5_K)
            for (int j = 0; j < 32; j++) dst[2368 + slice_pos(j, r)] = b5->qh[j];
        break;
    }
    case TS_DTYPE_IQ4_XS: {
        const ts_block_iq4_xs *b = (const ts_block_iq4_xs *)src;
        put_f16(dst, r, b->d);
        for (int j = 0; j < 8; j++) {
            dst[32 + j * 16 + r] = (uint8_t)(int8_t)ts_iq4_xs_sub_scale(b, j);
            for (int k = 0; k < 16; k++) dst[160 + 256 * j + slice_pos(k, r)] = b->qs[16 * j + k];
        }
        break;
    }
    case TS_DTYPE_Q6_K: {
        const ts_block_q6_k *b = (const ts_block_q6_k *)src;
        put_f16(dst, r, b->d);
        for (int s = 0; s < 16; s++) dst[32 + s * 16 + r] = (uint8_t)b->scales[s];
        for (int j = 0; j < 128; j++) dst[288 + slice_pos(j, r)] = b->ql[j];
        for (int j = 0; j < 64; j++) dst[2336 + slice_pos(j, r)] = b->qh[j];
        break;
    }
    default: break;
    }
}

void ts_pack_groups(ts_pack_kind kind, ts_dtype t, const uint8_t *src, size_t row_bytes, int64_t rows, int64_t cols,
                    int64_t g0, int64_t g1, uint8_t *dst) {
    size_t gbytes = ts_pack_group_bytes(kind, t, cols);
    if (!gbytes) return;
    for (int64_t g = g0; g < g1; g++) {
        uint8_t *gd = dst + (size_t)g * gbytes;
        memset(gd, 0, gbytes);
        int nrows = rows - g * ROWS < ROWS ? (int)(rows - g * ROWS) : ROWS;
        if (kind == TS_PACK_AMX_BF16) {
            for (int r = 0; r < nrows; r++) {
                const uint8_t *row = src + (size_t)(g * ROWS + r) * row_bytes;
                for (int64_t k = 0; k < cols; k++)
                    memcpy(gd + (size_t)(k / 2) * 64 + (size_t)r * 4 + (size_t)(k % 2) * 2, row + 2 * k, 2);
            }
            continue;
        }
        size_t bb = ts_pack_block_bytes(kind, t), native = (size_t)ts_dtype_get(t)->block_bytes;
        int64_t nblocks = cols / ts_dtype_get(t)->block_size;
        for (int r = 0; r < nrows; r++) {
            const uint8_t *row = src + (size_t)(g * ROWS + r) * row_bytes;
            for (int64_t b = 0; b < nblocks; b++) pack_block(t, row + (size_t)b * native, r, gd + (size_t)b * bb);
        }
    }
}

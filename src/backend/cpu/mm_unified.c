/* Group loop, decode scheduling and output of the SIMD integer products (mm_unified.h). */
#include "backend/cpu/mm_unified.h"

#include <string.h>

#define ACC_BYTES ((size_t)TS_UNI_MAX_TILE * TS_UNI_ROWS * sizeof(float))
/* Values decoded per run when streaming (few tokens): the decoded run (about 20 bytes a value for
 * 16 rows) stays in L1 while every token reads it. */
#define GEMV_RUN_VALUES 512

size_t ts_mm_unified_scratch_bytes(int64_t cols) {
    /* Q6_K's 16-value blocks are the largest decoded form: 384 bytes per 16 values. */
    size_t decoded = (size_t)(cols / 16) * ts_unified_block_bytes(16);
    return ACC_BYTES + TS_UNI_GEMM_GROUPS * ((decoded + 63) & ~(size_t)63) + 64;
}

void ts_uni_decode_raw_unsigned(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                                uint8_t *dst) {
    ts_unified_decode_raw(t, src, row_bytes, nrows, nb0, nb1, 0, dst);
}

void ts_uni_decode_raw_signed(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                              uint8_t *dst) {
    ts_unified_decode_raw(t, src, row_bytes, nrows, nb0, nb1, 1, dst);
}

static void store_rows(const ts_mm_args *a, int64_t row0, int nrows, int t0, int n_tok, const float *acc) {
    for (int i = 0; i < n_tok; i++) {
        float *y = a->y + (size_t)(t0 + i) * a->y_stride + (size_t)row0;
        const float *s = acc + (size_t)i * TS_UNI_ROWS;
        /* 16 floats at most: an inline loop, not a call per token. */
        if (a->bias)
            for (int r = 0; r < nrows; r++) y[r] = s[r] + a->bias[row0 + r];
        else
            for (int r = 0; r < nrows; r++) y[r] = s[r];
    }
}

void ts_mm_unified(const ts_mm_args *a, int packed, const ts_uni_impl *impl) {
    const ts_unified_desc *ud = ts_unified_desc_of(a->dtype);
    if (!ud || a->n_tok <= 0 || a->r1 <= a->r0) return;
    float *acc = (float *)a->scratch;
    uint8_t *dec = (uint8_t *)a->scratch + ACC_BYTES;
    int per_native = ud->native / ud->block;
    int64_t n_native = a->cols / ud->native;
    int64_t run = GEMV_RUN_VALUES / ud->native;
    if (run < 1) run = 1;
    int gemm = a->n_tok > impl->gemv_tokens && impl->gemm_kernel;
    int tile = gemm ? impl->gemm_tile_tokens : impl->tile_tokens;
    ts_uni_kernel_fn kernel = gemm ? impl->gemm_kernel : impl->kernel;
    int signed_vals = gemm ? impl->gemm_signed_vals : impl->signed_vals;
    ts_uni_decode_fn decode = packed ? (gemm ? impl->gemm_decode : impl->decode)
                                     : (signed_vals ? ts_uni_decode_raw_signed : ts_uni_decode_raw_unsigned);

    for (int64_t row0 = a->r0; row0 < a->r1; row0 += TS_UNI_ROWS) {
        int nrows = a->r1 - row0 < TS_UNI_ROWS ? (int)(a->r1 - row0) : TS_UNI_ROWS;
        const uint8_t *src = packed ? a->w + (size_t)(row0 / TS_UNI_ROWS) * a->w_stride : a->w + (size_t)row0 * a->w_stride;
        if (a->n_tok <= impl->gemv_tokens && packed && impl->fused_gemv) {
            memset(acc, 0, (size_t)a->n_tok * TS_UNI_ROWS * sizeof(float));
            if (impl->fused_gemv(a->dtype, src, n_native, a->act, a->act_stride, a->cols, a->n_tok, acc) == 0) {
                store_rows(a, row0, nrows, 0, a->n_tok, acc);
                continue;
            }
        }
        if (a->n_tok <= impl->gemv_tokens) {
            memset(acc, 0, (size_t)a->n_tok * TS_UNI_ROWS * sizeof(float));
            for (int64_t nb = 0; nb < n_native; nb += run) {
                int64_t nb1 = nb + run < n_native ? nb + run : n_native;
                decode(a->dtype, src, a->w_stride, nrows, nb, nb1, dec);
                for (int t0 = 0; t0 < a->n_tok; t0 += tile) {
                    int nt = a->n_tok - t0 < tile ? a->n_tok - t0 : tile;
                    kernel(dec, (nb1 - nb) * per_native, ud, a->act, a->act_stride, a->cols, nb * per_native, t0,
                                 nt, acc + (size_t)t0 * TS_UNI_ROWS);
                }
            }
            store_rows(a, row0, nrows, 0, a->n_tok, acc);
        } else {
            if (gemm && impl->gemm_kernel_to && !a->bias && nrows == TS_UNI_ROWS) {
                /* up to TS_UNI_GEMM_GROUPS whole groups decoded side by side, then all tokens over them */
                size_t gbytes = ((size_t)(n_native * per_native) * ts_unified_block_bytes(ud->block) + 63) & ~(size_t)63;
                int ng = 1;
                while (ng < TS_UNI_GEMM_GROUPS && row0 + (int64_t)(ng + 1) * TS_UNI_ROWS <= a->r1) ng++;
                for (int i = 0; i < ng; i++) {
                    const uint8_t *gsrc = packed ? src + (size_t)i * a->w_stride : src + (size_t)i * TS_UNI_ROWS * a->w_stride;
                    decode(a->dtype, gsrc, a->w_stride, TS_UNI_ROWS, 0, n_native, dec + (size_t)i * gbytes);
                }
                impl->gemm_kernel_to(dec, gbytes, ng, n_native * per_native, ud, a->act, a->act_stride, a->cols, 0,
                                     a->n_tok, a->y + (size_t)row0, a->y_stride);
                row0 += (int64_t)(ng - 1) * TS_UNI_ROWS; /* the loop adds the last group's 16 */
                continue;
            }
            decode(a->dtype, src, a->w_stride, nrows, 0, n_native, dec);
            for (int t0 = 0; t0 < a->n_tok; t0 += tile) {
                int nt = a->n_tok - t0 < tile ? a->n_tok - t0 : tile;
                memset(acc, 0, (size_t)nt * TS_UNI_ROWS * sizeof(float));
                kernel(dec, n_native * per_native, ud, a->act, a->act_stride, a->cols, 0, t0, nt, acc);
                store_rows(a, row0, nrows, t0, nt, acc);
            }
        }
    }
}

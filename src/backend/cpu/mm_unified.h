/* The loop structure shared by the SIMD integer products: for each 16-row group, decode weight
 * blocks into the unified.h form and hand them to the table's micro-kernel together with a tile of
 * tokens. Decode (few tokens) decodes a short run of blocks at a time into an L1-sized buffer and
 * runs all tokens over it, so weights stream from memory once; prefill decodes a whole group once and
 * reuses it for every tile of tokens. Only the decoder and the micro-kernel differ between tables. */
#ifndef TS_BACKEND_CPU_MM_UNIFIED_H
#define TS_BACKEND_CPU_MM_UNIFIED_H

#include "backend/cpu/kernels.h"
#include "backend/cpu/unified.h"

/* Decodes native blocks [nb0, nb1) of one 16-row group. For packed weights `src` is the group and
 * row_bytes/nrows are unused; for raw weights `src` is the group's first row. */
typedef void (*ts_uni_decode_fn)(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0,
                                 int64_t nb1, uint8_t *dst);

/* acc[i][16] += the products of decoded blocks [0, nblk) (global decoded-block index ub0 + b) with
 * activation rows t0 + i for i < n_tok. */
typedef void (*ts_uni_kernel_fn)(const uint8_t *ub, int64_t nblk, const ts_unified_desc *ud, const uint8_t *act,
                                 size_t act_stride, int64_t cols, int64_t ub0, int t0, int n_tok, float *acc);

/* One table's pair of decoder and micro-kernel for streaming (few tokens), and optionally another
 * pair for many tokens (gemm_*, e.g. tiles that want signed values). */
typedef struct ts_uni_impl {
    ts_uni_decode_fn decode;
    ts_uni_kernel_fn kernel;
    int signed_vals;  /* mode of the raw decoder feeding `kernel` */
    int tile_tokens;  /* tokens the kernel takes per call (at most TS_UNI_MAX_TILE) */
    int gemv_tokens;  /* up to this many tokens, blocks are decoded in short runs */
    ts_uni_decode_fn gemm_decode; /* NULL: decode/kernel serve every token count */
    ts_uni_kernel_fn gemm_kernel;
    /* Optional: gemm_kernel over all blocks of n_groups decoded groups (group_stride bytes apart) for
     * tokens [t0, t0 + n_tok), writing each group's 16 outputs per token straight into out + 16 * group
     * (token rows out_stride floats apart) instead of accumulating into the scratch. Given several
     * groups, it runs every group for one tile of tokens before the next, so the tokens' activations
     * stay in L1 while the decoded weights stream. */
    void (*gemm_kernel_to)(const uint8_t *ub, size_t group_stride, int n_groups, int64_t nblk,
                           const ts_unified_desc *ud, const uint8_t *act, size_t act_stride, int64_t cols, int t0,
                           int n_tok, float *out, size_t out_stride);
    int gemm_signed_vals;
    int gemm_tile_tokens;
    /* Optional: decode and multiply in one pass for packed weights and few tokens (acc[n_tok][16] +=
     * over all n_native blocks of the group), returning 0 when it handled the type. It computes exactly
     * what decode + kernel compute, without writing the decoded form. */
    int (*fused_gemv)(ts_dtype t, const uint8_t *group, int64_t n_native, const uint8_t *act, size_t act_stride,
                      int64_t cols, int n_tok, float *acc);
} ts_uni_impl;

#define TS_UNI_MAX_TILE 64
/* Groups decoded at once for gemm_kernel_to (the scratch holds this many). */
#define TS_UNI_GEMM_GROUPS 8

/* Scratch bytes this needs per thread for rows of `cols` values. */
size_t ts_mm_unified_scratch_bytes(int64_t cols);

void ts_mm_unified(const ts_mm_args *a, int packed, const ts_uni_impl *impl);

/* The plain C decoder adapted to ts_uni_decode_fn (unsigned values; signed variant for s8 x s8). */
void ts_uni_decode_raw_unsigned(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                                uint8_t *dst);
void ts_uni_decode_raw_signed(ts_dtype t, const uint8_t *src, size_t row_bytes, int nrows, int64_t nb0, int64_t nb1,
                              uint8_t *dst);

#endif

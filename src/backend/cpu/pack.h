/* Repacked weight layouts, built once when a weight is prepared. Rows are grouped by 16 (the last
 * group padded with zero rows) so that one 64-byte vector holds the same 4 values of 16 rows, which
 * is what the int8 dot-product instructions (vpdpbusd, AMX tiles) consume.
 *
 * TS_PACK_I16 (integer types, used by the x86 tables). A group stores its native blocks in order;
 * "slices" are 16 rows x 4 bytes (64 bytes), slice s holding bytes 4s..4s+3 of each row's array:
 *   Q8_0: fp16 d[16] | 8 slices of qs ^ 0x80 (values stored as q + 128, unsigned)         544 bytes
 *   Q4_0: fp16 d[16] | 4 slices of qs                                                     288
 *   IQ4_NL: as Q4_0 (grid indices in place of values)                                    288
 *   Q4_1: fp16 d[16] | fp16 m[16] | 4 slices of qs                                        320
 *   Q4_K: fp16 d[16] | fp16 dmin[16] | u8 sc[8][16] | u8 m[8][16] | 32 slices of qs       2368
 *   Q5_K: as Q4_K | 8 slices of qh                                                        2880
 *   Q6_K: fp16 d[16] | i8 sc[16][16] | 32 slices of ql | 16 slices of qh                  3360
 *   IQ4_XS: fp16 d[16] | i8 sub-scale[8][16] | per sub-block, 4 slices of qs              2208
 * TS_PACK_AMX_BF16 (BF16 weights for AMX tiles): per pair of columns, 16 rows x 2 bf16 (64 bytes);
 * an odd last column is padded with zero. */
#ifndef TS_BACKEND_CPU_PACK_H
#define TS_BACKEND_CPU_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "quant/dtype.h"

typedef enum ts_pack_kind {
    TS_PACK_NONE = 0,
    TS_PACK_I16 = 1,
    TS_PACK_AMX_BF16 = 2,
} ts_pack_kind;

/* Bytes of one packed native block of a 16-row group (0 when the dtype has no such layout). */
size_t ts_pack_block_bytes(ts_pack_kind kind, ts_dtype t);
/* Bytes between consecutive 16-row groups; 0 when unsupported. */
size_t ts_pack_group_bytes(ts_pack_kind kind, ts_dtype t, int64_t cols);
size_t ts_pack_bytes(ts_pack_kind kind, ts_dtype t, int64_t rows, int64_t cols);
/* Packs groups [g0, g1) of a raw row-major weight (rows x cols, row_bytes apart) into dst, which
 * holds the whole packed weight. Safe to call for disjoint group ranges from several threads. */
void ts_pack_groups(ts_pack_kind kind, ts_dtype t, const uint8_t *src, size_t row_bytes, int64_t rows, int64_t cols,
                    int64_t g0, int64_t g1, uint8_t *dst);

#endif

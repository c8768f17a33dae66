/* Reference conversion of any ts_dtype row to float32. Plain C, the ground truth that optimized
 * kernels are tested against; also used for embedding lookups and for re-quantization. */
#ifndef TS_QUANT_DEQUANTIZE_H
#define TS_QUANT_DEQUANTIZE_H

#include <stdint.h>

#include "quant/dtype.h"

/* n must be a multiple of the type's block size. */
void ts_dequantize_row(ts_dtype t, const void *src, float *dst, int64_t n);

#endif

/* Float32 -> storage type conversion: the reference quantizers (bit-compatible with ggml's
 * quantize_row_*_ref, so files we write match llama.cpp's byte for byte), the error-minimising
 * quantizers used for tessera's own int4/int8 schemes, and whole-tensor conversion between any two
 * types. Pure computation, no I/O. */
#ifndef TS_QUANT_QUANTIZE_H
#define TS_QUANT_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "quant/dtype.h"

/* Reference quantization of one row of n values (n a multiple of the type's block size), exactly as
 * ggml's quantize_row_<type>_ref computes it. F32/F16/BF16 are plain conversions (round to nearest
 * even). */
void ts_quantize_row(ts_dtype t, const float *src, void *dst, int64_t n);

/* Error-minimising quantization of one row: searches each group's scale (and minimum) for the least
 * squared error, weighted by `importance` (one non-negative weight per column, e.g. the mean squared
 * activation of that input; NULL weighs every column alike). Q4_0, Q4_1, Q4_K, Q5_K and Q6_K are
 * searched; Q8_0, Q8_K and the float types use the reference quantizer. Deterministic; the output is
 * a valid block of the type (any GGUF reader decodes it), just not byte-identical to llama.cpp's. */
void ts_quantize_row_best(ts_dtype t, const float *src, void *dst, int64_t n, const float *importance);

/* Converts a rows x cols tensor of any type to any type with the error-minimising quantizer (the
 * one quantize-on-load uses). A quantized source is dequantized row by row first; importance is NULL
 * or cols weights. cols must be a multiple of both types' block sizes (checked). n_threads <= 1 runs
 * on the caller's thread. About 20 ns per weight per core for Q4_K, 4 for Q4_0. */
int ts_quantize_tensor(ts_dtype dst_type, const void *src, ts_dtype src_type, int64_t rows, int64_t cols,
                       void *dst, const float *importance, int n_threads, ts_error *err);

/* Same with the reference quantizer: byte-identical to llama.cpp's quantize without an imatrix. */
int ts_quantize_tensor_ref(ts_dtype dst_type, const void *src, ts_dtype src_type, int64_t rows, int64_t cols,
                           void *dst, int n_threads, ts_error *err);

/* Sum over elements of importance-weighted squared error between a float row and its quantized form;
 * used by tests and by `tessera quantize` to report error. */
double ts_quant_row_sq_error(ts_dtype t, const float *src, int64_t n, const float *importance);

#endif

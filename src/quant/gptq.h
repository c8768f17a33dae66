/* Calibrated quantization (GPTQ, Frantar et al. 2022): a matrix W [rows, cols] whose inputs x have the
 * second-moment matrix H = sum x x^T (from a forward pass over calibration text) is quantized one input
 * column at a time; the rounding error of a column is spread over the columns not yet quantized so that
 * the error of the layer's output, (W - Q) H (W - Q)^T, stays small rather than the error of each
 * weight. Each block's scale (Q4_K: its scales and minimums) is searched by the ordinary quantizer when
 * the block's first column comes up, on the weights as the updates have left them; the output is
 * plain blocks of the type, which any GGUF reader decodes. Pure computation, no I/O. */
#ifndef TS_QUANT_GPTQ_H
#define TS_QUANT_GPTQ_H

#include <stdint.h>

#include "base/error.h"
#include "quant/dtype.h"

typedef struct ts_gptq_options {
    /* Added to H's diagonal as a fraction of its mean: keeps H invertible where inputs are (nearly)
     * collinear, at the price of a weaker correction. 0.01 is the usual value. */
    double damp;
    /* Columns in order of decreasing H diagonal (the inputs with the most energy first, while the
     * most columns remain to absorb their error). */
    int act_order;
} ts_gptq_options;

void ts_gptq_options_init(ts_gptq_options *o);

/* Whether ts_gptq_quantize can produce type t (IQ4_NL, Q4_0, Q4_K). */
int ts_gptq_supported(ts_dtype t);

/* Quantizes w (float32, rows x cols, row-major) to type t into dst (rows * ts_dtype_row_bytes(t, cols)
 * bytes) against h (cols x cols, symmetric, row-major; any positive multiple of X^T X). Columns whose
 * input never varies (h diagonal 0) are quantized as zero-input columns: their weights never matter.
 * n_threads <= 1 runs on the caller's thread. Fails (with the reason) on unsupported types, shapes
 * that do not fill whole blocks, or an H that stays singular after damping. */
int ts_gptq_quantize(ts_dtype t, const float *w, int64_t rows, int64_t cols, const double *h,
                     const ts_gptq_options *opt, void *dst, int n_threads, ts_error *err);

/* The pieces, for tests. ts_gptq_inverse_factor writes the upper triangular u (n x n, row-major,
 * float) with u^T u = (h + damping)^-1, the factor whose row j carries column j's error forward. */
int ts_gptq_inverse_factor(const double *h, int64_t n, double damp, float *u, ts_error *err);
/* Column j of x has been quantized to q: moves its error onto x[j+1..n) through row j of u. */
void ts_gptq_feedback(float *x, const float *u, int64_t n, int64_t j, float q);

#endif

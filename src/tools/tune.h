/* End-to-end tuning of a quantized model against its float original (`tessera quantize --calibration
 * TEXT --tune-steps N`). GPTQ (quant/gptq.h) fits each matrix to its own inputs; what it cannot see is
 * how the errors of all matrices add up at the output. Here the student (the quantized model: its codes
 * fixed) and the teacher (the float model) both run over windows of calibration text, and Adam moves the
 * student's float16 block scales (d, and the minimum's scale where the type has one: Q4_0, IQ4_NL, Q8_0,
 * Q4_1, Q4_K, Q5_K, Q6_K, IQ4_XS) and RMSNorm weights to lower the KL divergence of its next-token distributions
 * from the teacher's, through a full backward pass. Codes, types and file size stay the same: a tuned
 * file is an ordinary GGUF file.
 *
 * Measured on tiny-code (tests/quant/README.md): GPTQ int4 +2.24 % perplexity; 200 steps of tuning on top
 * of it +1.65 %; IQ4_XS down_proj (4.463 bits a weight), 500 steps over 1M tokens of the standard library
 * +0.91 %. Tuning the rounding as well (latent weights through a straight-
 * through estimator) added under 0.05 points in the same measurement and is not done. */
#ifndef TS_TOOLS_TUNE_H
#define TS_TOOLS_TUNE_H

#include <stdint.h>

#include "base/error.h"
#include "format/model_config.h"
#include "format/tensor_table.h"
#include "quant/dtype.h"

typedef struct ts_tune_options {
    int steps;            /* Adam steps; each sees windows_per_step windows */
    int windows_per_step; /* default 4 */
    int ctx;              /* tokens a window (default 512) */
    double lr;            /* Adam's step size for log-scales and norm weights (default 1e-3) */
    int threads;          /* 0: all cores */
    int shuffle;          /* visit the windows in a fixed shuffled order rather than the text's (the default) */
    int exact_scales;     /* tests: keep the scales in float32 (no float16 rounding), so that gradients
                             match finite differences */
    int quiet;            /* no progress lines on stdout */
} ts_tune_options;

void ts_tune_options_init(ts_tune_options *o);

/* A tensor of the quantized model as the converter holds it before writing: HF name, storage type and
 * bytes (modified in place: scales of tuned blocks, float32 norm weights). */
typedef struct ts_tune_tensor {
    const char *name;
    ts_dtype dtype;
    void *data;
    int64_t rows, cols; /* vectors: rows = 1 */
} ts_tune_tensor;

typedef struct ts_tune_report {
    int tuned_matrices; /* matrices whose block scales were tuned */
    int fixed_matrices; /* quantized matrices of types without scales the tuner knows, kept as they were */
    int tuned_norms;
    double kl_first, kl_last; /* mean KL a token over the first and the last step's windows */
} ts_tune_report;

/* The order in which the tuning's steps visit `windows` windows, as a new array (NULL when out of memory):
 * the text's, or shuffled (a fixed permutation, the same on every run). In the text's order a step's
 * windows, and the steps around it, come from one source file. */
int64_t *ts_tune_window_order(int64_t windows, int shuffle);

/* Tunes `student` in place against the float `teacher` table (a Hugging Face checkpoint's tensors, any
 * float or quantized type) over ids[0..n) in windows of opt->ctx. Dense Llama, Qwen2 and Qwen3 models. */
int ts_tune_quantized(const ts_model_config *cfg, const ts_tensor_table *teacher, ts_tune_tensor *student, int n_student,
                      const int32_t *ids, int64_t n, const ts_tune_options *opt, ts_tune_report *rep, ts_error *err);

/* For tests: the loss (mean KL a token, in nats) of the student over one window of n tokens and its
 * gradient with respect to every parameter: the log multipliers of tuned blocks (matrices in layer
 * order q, k, v, o, gate, up, down, then the embedding and an untied head), then the norm weights
 * (each layer's input, post-attention, q and k norms, then the final norm). params: NULL for the
 * student as given (all multipliers 1); params_out (may be NULL) receives the parameters used; grads
 * may be NULL. Call with all three NULL to learn *n_params. */
int ts_tune_loss_and_grads(const ts_model_config *cfg, const ts_tensor_table *teacher, ts_tune_tensor *student,
                           int n_student, const int32_t *ids, int n, const ts_tune_options *opt, const float *params,
                           float *params_out, double *loss, float *grads, int64_t *n_params, ts_error *err);

#endif

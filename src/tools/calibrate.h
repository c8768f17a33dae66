/* Calibration statistics for `tessera quantize --calibration`: a float32 forward pass of the model on
 * the CPU over calibration text, recording for every linear layer the second-moment matrix of its
 * inputs, H = sum over tokens of x x^T (what GPTQ weighs a matrix's error with; see quant/gptq.h). The
 * tied embedding's matrix is recorded as the output head it also is (its inputs: the final normed
 * hidden states). */
#ifndef TS_TOOLS_CALIBRATE_H
#define TS_TOOLS_CALIBRATE_H

#include <stdint.h>

#include "base/error.h"

typedef struct ts_hessian {
    char name[192]; /* the weight's tensor name, Hugging Face spelling ("model.layers.0.mlp.down_proj.weight") */
    int64_t cols;
    double *h;      /* cols x cols, row-major, symmetric */
    int64_t tokens; /* how many input rows were summed */
} ts_hessian;

typedef struct ts_hessian_set {
    ts_hessian *items;
    int count;
} ts_hessian_set;

/* Loads the model at path (a Hugging Face directory or GGUF file) with float32 weights on a CPU backend
 * of `threads` threads (0: all cores) and runs ids[0..n) through it in windows of ctx tokens, each from
 * position 0. Dense llama-family models only (Llama, Qwen2, Qwen3). */
int ts_calibrate_hessians(const char *path, const int32_t *ids, int64_t n, int ctx, int threads, ts_hessian_set *out,
                          ts_error *err);

const ts_hessian *ts_hessian_find(const ts_hessian_set *s, const char *name);
void ts_hessian_set_free(ts_hessian_set *s);

#endif

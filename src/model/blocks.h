/* Blocks shared by the decoder architectures: the llama-family attention block (q/k/v projections with
 * optional biases and per-head q/k RMSNorm, RoPE, cached causal attention, output projection) and the
 * SwiGLU MLP. Each reads the normalised input from m->s->xn. Without next_norm it leaves its output in
 * m->s->proj; with it, the output is added to the residual m->s->x and m->s->xn becomes
 * rmsnorm(x) * next_norm, the next block's input (one fused operation on devices that have it). */
#ifndef TS_MODEL_BLOCKS_H
#define TS_MODEL_BLOCKS_H

#include "model/model.h"

void ts_block_rope_attention(ts_model *m, const ts_layer *L, int layer, ts_kv_store *kv, const ts_step *step,
                             const float *next_norm);
void ts_block_swiglu(ts_model *m, const ts_layer *L, int n, const float *next_norm);

/* Binds q/k/v/o (+ biases, + q/k norms) of a llama-family layer named `prefix` ("model.layers.3."). */
int ts_bind_rope_attention(ts_model *m, ts_layer *L, int layer, const char *prefix, ts_error *err);
/* Binds gate/up/down of a dense SwiGLU MLP named `prefix` ("model.layers.3.mlp."). */
int ts_bind_swiglu(ts_model *m, ts_layer *L, int layer, const char *prefix, ts_error *err);

#endif

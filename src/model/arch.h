/* The architecture implementations and the pieces they share. */
#ifndef TS_MODEL_ARCH_H
#define TS_MODEL_ARCH_H

#include "model/model.h"

extern const ts_arch_impl ts_llama_impl;     /* llama, qwen2, qwen3 */
extern const ts_arch_impl ts_qwen3_moe_impl; /* qwen3_moe */
extern const ts_arch_impl ts_gpt2_impl;      /* gpt2 */

/* Makes the next weights bind to the host side of a split model (host = 1) or to its device. */
void ts_bind_on(ts_model *m, int host);
/* Embedding, final norm and (untied) head of the llama family. */
int ts_bind_llama_common(ts_model *m, ts_error *err);
void ts_llama_final_norm(ts_model *m, const float *x, int rows, float *out);
void ts_llama_layers(ts_model *m, ts_kv_store *kv, const ts_step *step, ts_layer_probe probe, void *pctx);

const ts_arch_impl *ts_arch_impl_for(ts_arch arch);

#endif

/* Writing checkpoints: a tensor table (Hugging Face names) converted tensor by tensor to the storage
 * types a quantization scheme chooses, into a llama.cpp-compatible GGUF file; and float tables into a
 * Hugging Face directory (safetensors). Used by `tessera quantize` and `tessera synth`. */
#ifndef TS_TOOLS_CONVERT_H
#define TS_TOOLS_CONVERT_H

#include "format/model_config.h"
#include "format/tensor_table.h"
#include "quant/scheme.h"
#include "tokenizer/vocab_spec.h"

/* The role a tensor plays (for the scheme) and its layer (-1 outside the layers), from its name. */
ts_weight_role ts_tensor_role(const char *hf_name, int *layer);

int ts_convert_to_gguf(const char *out_path, const ts_model_config *cfg, const ts_tensor_table *table,
                       const ts_vocab_spec *vocab, const ts_quant_scheme *scheme, int threads, const char *name,
                       ts_quant_budget *budget, ts_error *err);

/* Float tensors only (F32/F16/BF16); writes out_dir/model.safetensors atomically. */
int ts_write_safetensors(const char *path, const ts_tensor_table *table, ts_error *err);

#endif

/* A checkpoint as data: configuration, tensors (Hugging Face names, row-major shapes) and, for GGUF
 * files, the vocabulary. Used by the model loader and by tools that convert files. */
#ifndef TS_MODEL_CHECKPOINT_H
#define TS_MODEL_CHECKPOINT_H

#include "format/model_config.h"
#include "format/tensor_table.h"
#include "tokenizer/vocab_spec.h"

int ts_checkpoint_is_gguf(const char *path);
/* path: a directory with config.json and safetensors (generation_config.json's end-of-sequence tokens are
 * merged), or a .gguf file (vocab, when not NULL, receives its vocabulary). */
int ts_checkpoint_read(const char *path, ts_model_config *cfg, ts_tensor_table *table, ts_vocab_spec *vocab,
                       ts_error *err);

#endif

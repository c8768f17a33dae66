/* Synthetic checkpoints: random weights of a real model's shape (from its config.json), named as a
 * Hugging Face checkpoint would name them, for benchmarks of models nobody can download here.
 * Quantized types get random quants with scales sized so activations stay in a sane range. */
#ifndef TS_TOOLS_SYNTH_H
#define TS_TOOLS_SYNTH_H

#include <stdint.h>

#include "format/model_config.h"
#include "format/tensor_table.h"

/* Fills table (heap-owned tensors) for cfg with matrices of weight_type (vectors are float32). */
int ts_synth_table(const ts_model_config *cfg, ts_dtype weight_type, uint64_t seed, int threads,
                   ts_tensor_table *table, ts_error *err);

#endif

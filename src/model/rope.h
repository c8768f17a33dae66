/* Rotary position embedding frequencies for the supported RoPE kinds (default, linear, llama3). */
#ifndef TS_MODEL_ROPE_H
#define TS_MODEL_ROPE_H

#include "format/model_config.h"

/* Fills inv_freq[head_dim / 2] as Hugging Face computes it (float32). */
void ts_rope_inv_freq(const ts_model_config *c, float *inv_freq);

#endif

/* Running a single sequence through a model over the paged KV cache: prefill in chunks and
 * incremental decode. The server's engine batches many sequences; tools (run, logits, perplexity,
 * bench) and tests use this direct path. */
#ifndef TS_RUNTIME_SEQUENCE_H
#define TS_RUNTIME_SEQUENCE_H

#include "model/model.h"
#include "runtime/kv_cache.h"

/* Appends ids[0..n) to the sequence (positions continue from s->num_tokens). When all_logits,
 * logits receives n rows of vocab values; otherwise only the last token's row. */
int ts_seq_forward(ts_model *m, ts_kv_cache *c, ts_kv_seq *s, const int32_t *ids, int n, int all_logits,
                   float *logits, ts_error *err);

/* The KV cache of a model: num_blocks blocks of block_tokens positions, on the model's backend and,
 * for a split model, on its host backend too. */
int ts_kv_cache_init_model(ts_kv_cache *c, ts_model *m, int block_tokens, int num_blocks, ts_error *err);

/* A KV cache big enough for `sequences` sequences of `tokens` each. */
int ts_kv_cache_init_for(ts_kv_cache *c, ts_model *m, int tokens, int sequences, ts_error *err);

#endif

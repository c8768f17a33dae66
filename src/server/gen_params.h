/* What a client asks of one generation, whatever the protocol: token budget, sampling, stop strings,
 * log-probabilities. The reader takes the field names both protocols share (OpenAI's, which Triton's
 * vLLM backend also uses, plus the TensorRT-LLM spellings random_seed and stop_words) from one JSON
 * object and reports a wrong field by the name the client wrote. */
#ifndef TS_SERVER_GEN_PARAMS_H
#define TS_SERVER_GEN_PARAMS_H

#include <jansson.h>

#include "runtime/sampler.h"
#include "server/api_error.h"

#define TS_GEN_MAX_STOPS 16
#define TS_GEN_MAX_STOP_BYTES 512

typedef struct ts_gen_params {
    int max_tokens; /* 0: up to the context */
    ts_sampling_params sampling;
    int logprobs;   /* report each token's log-probability (and sampling.top_logprobs alternatives) */
    char *stops[TS_GEN_MAX_STOPS];
    int n_stops;
    int ignore_eos;
    int skip_special; /* leave special tokens out of the text (default 1) */
    int32_t stop_token_ids[8]; /* extra tokens that end generation (a chat template's end of turn) */
    int n_stop_token_ids;
} ts_gen_params;

void ts_gen_params_init(ts_gen_params *p);
void ts_gen_params_free(ts_gen_params *p);
/* Adds a stop string (copied); empty ones are ignored. */
int ts_gen_params_add_stop(ts_gen_params *p, const char *s, size_t len, const char *name, ts_api_error *e);

/* Reads max_tokens (or max_completion_tokens, max_new_tokens), temperature, top_p, top_k, min_p,
 * repetition_penalty, presence_penalty, frequency_penalty, seed (or random_seed), stop (or stop_words;
 * a string or a list of strings), ignore_eos, skip_special_tokens. `prefix` goes before each field
 * name in errors ("parameters." for KServe); NULL for none. Unknown fields are ignored. */
int ts_gen_params_read(const json_t *obj, const char *prefix, ts_gen_params *p, ts_api_error *e);

#endif

/* Choosing the next token from logits: penalties (repetition over prompt and output, presence and
 * frequency over the output), temperature, top-k, top-p, min-p, then a draw from a per-sequence
 * random stream (the same seed gives the same tokens). Temperature 0 is greedy. Log-probabilities
 * reported to clients are those of the model's raw distribution. */
#ifndef TS_RUNTIME_SAMPLER_H
#define TS_RUNTIME_SAMPLER_H

#include <stdint.h>

#include "base/argmax.h"

typedef struct ts_sampling_params {
    float temperature;        /* 0: greedy */
    int top_k;                /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off (Hugging Face semantics) */
    float presence_penalty;   /* 0: off (OpenAI semantics) */
    float frequency_penalty;  /* 0: off */
    int has_seed;
    uint64_t seed;
    int top_logprobs; /* how many alternatives to report, 0..20 */
} ts_sampling_params;

#define TS_MAX_TOP_LOGPROBS 20

typedef struct ts_token_logprobs {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_tokens[TS_MAX_TOP_LOGPROBS];
    float top_logprobs[TS_MAX_TOP_LOGPROBS];
} ts_token_logprobs;

typedef struct ts_sampler ts_sampler;

void ts_sampling_params_init(ts_sampling_params *p); /* greedy, no penalties */
ts_sampler *ts_sampler_create(const ts_sampling_params *p, const int32_t *prompt, int n_prompt);
void ts_sampler_free(ts_sampler *s);
/* Picks a token; logits (vocab values) are modified in place. lp may be NULL. */
int32_t ts_sampler_sample(ts_sampler *s, float *logits, int vocab, ts_token_logprobs *lp);
/* True when the sampler always picks the largest logit (greedy, no penalties): the device may choose. */
int ts_sampler_is_greedy(const ts_sampler *s);
/* Records a generated token (for the penalties). */
void ts_sampler_accept(ts_sampler *s, int32_t token);

#endif

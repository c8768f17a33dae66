/* Choosing the next token from logits: penalties (repetition over prompt and output, presence and
 * frequency over the output), temperature, top-k, top-p, min-p, then a draw from a per-sequence
 * random stream (the same seed gives the same tokens). Temperature 0 is greedy. Log-probabilities
 * reported to clients are those of the model's raw distribution. */
#ifndef TS_RUNTIME_SAMPLER_H
#define TS_RUNTIME_SAMPLER_H

#include <stdint.h>

#include "base/argmax.h"
#include "base/draw.h"

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

/* Fills d for the sampler's next choice, drawing u from the sequence's stream exactly as
 * ts_sampler_sample would; its penalties are the ts_sampler_penalties entries (pen_first is the caller's). */
void ts_sampler_device_draw(ts_sampler *s, ts_draw *d);
/* The tokens the penalties change: at most ts_sampler_penalty_count(s) entries written to out; returns how
 * many (0 without penalties). */
int ts_sampler_penalty_count(const ts_sampler *s);
int ts_sampler_penalties(const ts_sampler *s, ts_penalty *out);

/* The tokens a non-greedy draw chooses among: the scaled logits z = (logit - max) / temperature within
 * the candidate window, largest first (lowest index on ties), cut by top-k, then top-p, then min-p.
 * Returns how many (>= 1): their ids in cand[0..n), z[token] for each (both hold vocab entries). Token
 * cand[i] has weight exp(z); the draw takes the first whose running weight exceeds u times their sum. */
int ts_draw_candidates(const ts_draw *d, const float *logits, int vocab, int32_t *cand, float *z);
/* Records a generated token (for the penalties). */
void ts_sampler_accept(ts_sampler *s, int32_t token);

#endif

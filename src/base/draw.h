/* One token draw: what a device needs to choose a token where the logits are (ts_backend_ops.sample_rows).
 * The sampler (runtime/sampler.h) defines the choice: its penalties first, then ts_draw_candidates gives
 * the tokens and weights the draw is made among. */
#ifndef TS_BASE_DRAW_H
#define TS_BASE_DRAW_H

#include <stdint.h>

/* Candidates are the tokens whose scaled logit is within this of the best: below, a token's probability
 * is under e^-30 of the best's and cannot change a top-p or min-p cut. */
#define TS_DRAW_WINDOW 30.0f

typedef struct ts_draw {
    float temperature; /* <= 0: the largest logit (lowest index on ties); top_k 1 too */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    double u;          /* uniform in [0, 1) from the sequence's random stream */
    float repetition_penalty; /* 1: off */
    int pen_first, pen_count; /* this row's entries of the step's ts_penalty array */
} ts_draw;

/* A token whose logit a sequence's penalties change: divided by the repetition penalty (multiplied where
 * negative), then lowered by sub (presence + frequency x its count in the output; 0 when not in it). */
typedef struct ts_penalty {
    int32_t token;
    float sub;
} ts_penalty;

#ifdef __CUDACC__
#define TS_DRAW_FN __host__ __device__ static inline
#else
#define TS_DRAW_FN static inline
#endif

/* A logit after its penalties (repetition_penalty 1: none; sub as ts_penalty's): the one step the host's
 * sampler and a device both apply. */
TS_DRAW_FN float ts_penalized(float logit, float repetition_penalty, float sub) {
    if (repetition_penalty != 1.0f) logit = logit > 0 ? logit / repetition_penalty : logit * repetition_penalty;
    return sub != 0.0f ? logit - sub : logit;
}

#endif

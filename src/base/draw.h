/* One token draw without penalties: what a device needs to choose a token where the logits are
 * (ts_backend_ops.sample_rows). The sampler (runtime/sampler.h) defines the choice: ts_draw_candidates
 * gives the tokens and weights it is made among. */
#ifndef TS_BASE_DRAW_H
#define TS_BASE_DRAW_H

typedef struct ts_draw {
    float temperature; /* <= 0: the largest logit (lowest index on ties); top_k 1 too */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    double u;          /* uniform in [0, 1) from the sequence's random stream */
} ts_draw;

#endif

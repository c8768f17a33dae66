/* Perplexity of a model on a text: the tokens are cut into non-overlapping windows of ctx tokens, each
 * window is scored from its own start (token i predicted from tokens 0..i-1 of the same window), and
 * the mean negative log-likelihood over all scored tokens is exponentiated. */
#ifndef TS_TOOLS_PERPLEXITY_H
#define TS_TOOLS_PERPLEXITY_H

#include <stdint.h>

#include "model/model.h"

typedef struct ts_perplexity_result {
    double perplexity;
    double nll_sum;
    int64_t tokens_scored;
    int windows;
    double seconds;
} ts_perplexity_result;

/* skip_first: tokens at the start of each window that are context only, not scored (0 scores from
 * the window's start; llama.cpp's perplexity tool uses ctx / 2 and only whole windows). */
int ts_perplexity(ts_model *m, const int32_t *ids, int64_t n, int ctx, int skip_first, ts_perplexity_result *out,
                  ts_error *err);

#endif

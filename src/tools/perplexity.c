#include "tools/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "runtime/sequence.h"

int ts_perplexity(ts_model *m, const int32_t *ids, int64_t n, int ctx, int skip_first, ts_perplexity_result *out,
                  ts_error *err) {
    memset(out, 0, sizeof *out);
    if (ctx < 2) return ts_fail(err, "perplexity needs windows of at least 2 tokens");
    if (n < 2) return ts_fail(err, "perplexity needs at least 2 tokens of text; got %lld", (long long)n);
    size_t vocab = (size_t)m->cfg.vocab_size;
    float *logits = malloc((size_t)ctx * vocab * sizeof(float));
    if (!logits) return ts_fail(err, "out of memory for %d x %zu logits", ctx, vocab);
    ts_kv_cache cache;
    if (ts_kv_cache_init_for(&cache, m, ctx, 1, err) != 0) {
        free(logits);
        return -1;
    }
    double t0 = ts_now_seconds();
    int rc = 0;
    for (int64_t start = 0; start + 1 < n && rc == 0; start += ctx) {
        int len = (int)(n - start < ctx ? n - start : ctx);
        if (len < 2 || (skip_first > 0 && len < ctx)) break;
        ts_kv_seq seq;
        ts_kv_seq_init(&seq);
        rc = ts_seq_forward(m, &cache, &seq, ids + start, len, 1, logits, err);
        ts_kv_seq_release(&cache, &seq);
        for (int i = skip_first > 0 ? skip_first - 1 : 0; rc == 0 && i + 1 < len; i++) {
            const float *row = logits + (size_t)i * vocab;
            float mx = row[0];
            for (size_t k = 1; k < vocab; k++) mx = row[k] > mx ? row[k] : mx;
            double sum = 0.0;
            for (size_t k = 0; k < vocab; k++) sum += exp((double)row[k] - mx);
            out->nll_sum += (double)mx + log(sum) - (double)row[ids[start + i + 1]];
            out->tokens_scored++;
        }
        out->windows++;
    }
    out->seconds = ts_now_seconds() - t0;
    out->perplexity = out->tokens_scored ? exp(out->nll_sum / (double)out->tokens_scored) : NAN;
    ts_kv_cache_destroy(&cache);
    free(logits);
    return rc;
}

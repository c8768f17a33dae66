#include "runtime/sequence.h"

#include <stdlib.h>

#define CLI_BLOCK_TOKENS 16

int ts_kv_cache_init_model(ts_kv_cache *c, ts_model *m, int block_tokens, int num_blocks, ts_error *err) {
    ts_kv_layout l = ts_model_kv_layout(m, block_tokens, num_blocks);
    if (ts_kv_cache_init(c, m->dev_be, &l, err) != 0) return -1;
    if (m->split > 0) {
        ts_kv_layout h = ts_model_host_kv_layout(m, block_tokens, num_blocks);
        if (ts_kv_cache_add_host(c, m->host_be, &h, err) != 0) {
            ts_kv_cache_destroy(c);
            return -1;
        }
    }
    return 0;
}

int ts_kv_cache_init_for(ts_kv_cache *c, ts_model *m, int tokens, int sequences, ts_error *err) {
    int per_seq = (tokens + CLI_BLOCK_TOKENS - 1) / CLI_BLOCK_TOKENS;
    return ts_kv_cache_init_model(c, m, CLI_BLOCK_TOKENS, per_seq * (sequences > 0 ? sequences : 1), err);
}

int ts_seq_forward(ts_model *m, ts_kv_cache *c, ts_kv_seq *s, const int32_t *ids, int n, int all_logits,
                   float *logits, ts_error *err) {
    if (n <= 0) return ts_fail(err, "nothing to run: the sequence is empty");
    if (ts_kv_seq_reserve(c, s, s->num_tokens + n, err) != 0) return -1;
    int chunk = m->opt.max_step_tokens;
    int32_t *positions = malloc((size_t)chunk * sizeof(int32_t));
    int32_t *rows = malloc((size_t)chunk * sizeof(int32_t));
    if (!positions || !rows) {
        free(positions);
        free(rows);
        return ts_fail(err, "out of memory");
    }
    int rc = 0;
    size_t vocab = (size_t)m->cfg.vocab_size;
    for (int off = 0; off < n && rc == 0; off += chunk) {
        int len = n - off < chunk ? n - off : chunk;
        for (int i = 0; i < len; i++) {
            positions[i] = s->num_tokens + i;
            rows[i] = i;
        }
        int last_chunk = off + len == n;
        ts_seq_view view = {.first_token = 0, .n_tokens = len, .start_pos = s->num_tokens,
                            .n_blocks = s->num_blocks, .blocks = s->blocks};
        ts_step step = {.n_tokens = len, .tokens = ids + off, .positions = positions, .n_seqs = 1, .seqs = &view,
                        .host_kv = c->host_store};
        if (all_logits) {
            step.n_logits = len;
            step.logit_rows = rows;
        } else if (last_chunk) {
            rows[0] = len - 1;
            step.n_logits = 1;
            step.logit_rows = rows;
        }
        float *out = all_logits ? logits + (size_t)off * vocab : logits;
        rc = ts_model_forward(m, c->store, &step, out, NULL, NULL, err);
        if (rc == 0) s->num_tokens += len;
    }
    free(positions);
    free(rows);
    return rc;
}
